//! A provided buffer ring (IORING_REGISTER_PBUF_RING): the kernel picks a free buffer for each
//! multishot receive, so an idle connection holds no read buffer at all. Buffers go back to the
//! ring as soon as their bytes are parsed; the new tail is published once per loop turn.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

use super::sys::Mmap;

pub struct BufRing {
    /// The ring of `entries` descriptors shared with the kernel (page aligned, as required).
    ring: Mmap,
    /// `entries * buf_size` bytes of buffer memory.
    buffers: Mmap,
    entries: u16,
    buf_size: usize,
    /// Our tail: entries written but maybe not yet published.
    tail: u16,
    pub bgid: u16,
}

impl BufRing {
    /// Allocates and registers a ring of `entries` buffers of `buf_size` bytes under group `bgid`.
    pub fn new(
        submitter: &io_uring::Submitter<'_>,
        bgid: u16,
        entries: u16,
        buf_size: usize,
    ) -> io::Result<Self> {
        assert!(entries.is_power_of_two(), "buffer ring size must be a power of two");
        let ring = Mmap::new(usize::from(entries) * std::mem::size_of::<BufRingEntry>())?;
        let buffers = Mmap::new(usize::from(entries) * buf_size)?;
        // SAFETY: `ring` is a page-aligned mapping of exactly `entries` BufRingEntry slots and it
        // lives as long as this BufRing, which the worker drops only after the ring itself.
        unsafe { submitter.register_buf_ring_with_flags(ring.as_ptr() as u64, entries, bgid, 0)? };
        let mut this = Self { ring, buffers, entries, buf_size, tail: 0, bgid };
        for bid in 0..entries {
            this.recycle(bid);
        }
        this.publish();
        Ok(this)
    }

    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// The first `len` bytes of buffer `bid`, as filled by the kernel.
    ///
    /// The caller must own `bid` (taken from a completion and not yet recycled); `len` is clamped
    /// to the buffer size.
    pub fn buffer_mut(&mut self, bid: u16, len: usize) -> &mut [u8] {
        let bid = usize::from(bid) & (usize::from(self.entries) - 1);
        let len = len.min(self.buf_size);
        // SAFETY: bid < entries, so the range lies inside `buffers`; the kernel is done with the
        // buffer (its completion was reaped) and it is not handed back until `recycle`, and the
        // returned borrow of `self` prevents recycling while the slice is alive.
        unsafe { std::slice::from_raw_parts_mut(self.buffers.as_ptr().add(bid * self.buf_size), len) }
    }

    /// Gives buffer `bid` back to the kernel (visible after the next [`Self::publish`]).
    pub fn recycle(&mut self, bid: u16) {
        let mask = self.entries - 1;
        let index = usize::from(self.tail & mask);
        let bid = bid & mask;
        // SAFETY: index < entries, inside the ring mapping. The kernel only reads entries between
        // its head and the published tail, and this one is past the published tail.
        let entry = unsafe { &mut *self.ring.as_ptr().cast::<BufRingEntry>().add(index) };
        // SAFETY: bid < entries, so the address lies inside `buffers`.
        entry.set_addr(unsafe { self.buffers.as_ptr().add(usize::from(bid) * self.buf_size) } as u64);
        entry.set_len(self.buf_size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes recycled buffers to the kernel.
    pub fn publish(&mut self) {
        // SAFETY: the ring base is valid; `tail` points at the shared tail field inside entry 0.
        let tail = unsafe { BufRingEntry::tail(self.ring.as_ptr().cast::<BufRingEntry>()) };
        // SAFETY: the tail is a naturally aligned u16 the kernel reads concurrently; an atomic
        // release store makes the entries written before it visible first.
        let tail = unsafe { AtomicU16::from_ptr(tail.cast_mut()) };
        tail.store(self.tail, Ordering::Release);
    }
}
