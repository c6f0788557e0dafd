//! The provided buffer ring of the receive path (`wsring.rs`): memory shared with the kernel,
//! from which multishot receives take a buffer only when data arrives. Kept apart so that it can
//! move to the shared `tickcast-uring` crate as it is.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;
use io_uring::types::BufRingEntry;

/// Buffers in the ring (power of two) and their size: 16 MiB per load thread.
pub const BUF_COUNT: u16 = 4096;
pub const BUF_SIZE: usize = 4096;
pub const BUFFER_GROUP: u16 = 0;
/// One page; buffer memory is a `Vec` of them, so it is page aligned and the receiver stays
/// `Send` (it is built with the thread's `Ctx`, before the thread starts).
#[repr(C, align(4096))]
#[derive(Clone, Copy)]
struct Page([u8; 4096]);

/// Memory shared with the kernel: the ring of buffer descriptors and the buffers.
pub struct BufRing {
    ring: Vec<Page>,
    buffers: Vec<Page>,
    tail: u16,
}

impl BufRing {
    pub fn new(ring: &IoUring) -> io::Result<BufRing> {
        let ring_bytes = usize::from(BUF_COUNT) * std::mem::size_of::<BufRingEntry>();
        let mut this = BufRing {
            ring: vec![Page([0; 4096]); ring_bytes.div_ceil(4096)],
            buffers: vec![Page([0; 4096]); usize::from(BUF_COUNT) * BUF_SIZE / 4096],
            tail: 0,
        };
        // SAFETY: `this.ring` is a page-aligned allocation of at least BUF_COUNT entries; it is
        // never reallocated, and it outlives the registration: `RingReceiver::drop` unregisters
        // the group (or leaks the memory) before it is freed.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                this.ring.as_mut_ptr() as u64,
                BUF_COUNT,
                BUFFER_GROUP,
                0,
            )?
        };
        for bid in 0..BUF_COUNT {
            this.recycle(bid);
        }
        this.publish();
        Ok(this)
    }

    /// The first `len` bytes of buffer `bid`. The caller owns `bid`: it came with a completion
    /// and has not been recycled yet.
    pub fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        let bid = usize::from(bid & (BUF_COUNT - 1));
        let len = len.min(BUF_SIZE);
        // SAFETY: bid < BUF_COUNT so the range lies inside `buffers`; the kernel finished writing
        // it (its completion was reaped) and gets it back only through `recycle`, which needs
        // `&mut self` and so cannot run while this borrow lives.
        unsafe { std::slice::from_raw_parts(self.buffers.as_ptr().cast::<u8>().add(bid * BUF_SIZE), len) }
    }

    /// Hands buffer `bid` back to the kernel (visible after `publish`).
    pub fn recycle(&mut self, bid: u16) {
        let bid = bid & (BUF_COUNT - 1);
        let index = usize::from(self.tail & (BUF_COUNT - 1));
        // SAFETY: index < BUF_COUNT, inside the ring allocation; the kernel reads only entries
        // between its head and the published tail, and this one is past the published tail.
        let entry = unsafe { &mut *self.ring.as_mut_ptr().cast::<BufRingEntry>().add(index) };
        // SAFETY: bid < BUF_COUNT, so the address lies inside `buffers`.
        let addr = unsafe { self.buffers.as_mut_ptr().cast::<u8>().add(usize::from(bid) * BUF_SIZE) };
        entry.set_addr(addr as u64);
        entry.set_len(BUF_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    pub fn publish(&mut self) {
        // SAFETY: the ring base is valid; the shared tail lives inside entry 0 (resv field).
        let tail = unsafe { BufRingEntry::tail(self.ring.as_ptr().cast::<BufRingEntry>()) };
        // SAFETY: the tail is a naturally aligned u16 the kernel reads concurrently; a release
        // store publishes the entries written before it.
        let tail = unsafe { AtomicU16::from_ptr(tail.cast_mut()) };
        tail.store(self.tail, Ordering::Release);
    }

    /// Never frees the memory: for when the kernel may still write into it (the group could
    /// not be unregistered).
    pub fn leak(&mut self) {
        std::mem::forget(std::mem::take(&mut self.buffers));
        std::mem::forget(std::mem::take(&mut self.ring));
    }
}
