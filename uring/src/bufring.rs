//! A provided buffer ring (`IORING_REGISTER_PBUF_RING`): the kernel picks a free buffer for each
//! multishot receive when data arrives, so an idle connection holds no read buffer at all.
//!
//! # Safety contract (stated once; every `unsafe` below relies on it)
//!
//! Two regions are shared with the kernel: the *descriptor ring* (`entries` [`BufRingEntry`]s,
//! page aligned, whose first entry also holds the shared tail) and the *buffer memory*
//! (`entries * buf_size` bytes). Who may touch what, when:
//!
//! 1. **Descriptors.** The kernel reads the entries between its head and the published tail;
//!    we write only entries at or past the published tail ([`BufRing::recycle`]) and make them
//!    visible with one release store of the tail ([`BufRing::publish`]).
//! 2. **Buffers.** A buffer belongs to the kernel from the moment its descriptor is published
//!    until a completion names its id (`IORING_CQE_F_BUFFER`). From that completion until it is
//!    recycled it belongs to us alone: a buffer id is valid exactly once per completion that
//!    carries it. [`BufRing::take`] turns that id into a [`Taken`] borrow that recycles on drop,
//!    so the id cannot be recycled while its bytes are borrowed, nor used after.
//! 3. **Lifetime.** The kernel may write into buffer memory as long as the group is registered
//!    on a live ring. The memory is therefore freed only after [`BufRing::unregister`] succeeded
//!    (after it, the kernel selects none of these buffers; armed receives fail with `ENOBUFS`).
//!    A `BufRing` dropped while still registered **leaks** its memory rather than free memory
//!    the kernel could still write: correct whatever the order in which its owner's fields drop.
//!    Owners unregister in their own `Drop`, before anything else goes.
//!
//! # Use (server and load generator alike)
//!
//! ```ignore
//! let mut bufs = BufRing::new(&ring.submitter(), BGID, 4096, 4096)?;       // registered, all published
//! // arm: opcode::RecvMulti::new(fd, BGID) (or RecvMsgMulti)
//! // for each completion:
//! if let Some(buf) = unsafe { bufs.take(cqe.flags(), cqe.result().max(0) as usize) } {
//!     parse(&buf);                 // the bytes the kernel wrote; recycled when `buf` drops
//! }
//! bufs.publish();                  // once per batch of completions
//! // Drop of the owner:
//! let _ = bufs.unregister(&ring.submitter());   // then the memory can go
//! ```

use std::io;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::cqueue;
use io_uring::types::BufRingEntry;

use crate::mmap::Mmap;

/// A provided buffer ring registered under one buffer group id.
#[derive(Debug)]
pub struct BufRing {
    /// The descriptor ring shared with the kernel (page aligned, as required). Freed only
    /// once unregistered (contract 3), hence `ManuallyDrop`.
    ring: ManuallyDrop<Mmap>,
    /// `entries * buf_size` bytes of buffer memory (freed like `ring`).
    buffers: ManuallyDrop<Mmap>,
    entries: u16,
    buf_size: usize,
    /// Our tail: entries written, maybe not yet published.
    tail: u16,
    bgid: u16,
    /// The group is registered: the kernel may still write into `buffers` (contract 3).
    registered: bool,
}

impl BufRing {
    /// Allocates `entries` buffers of `buf_size` bytes, registers them under group `bgid` and
    /// hands them all to the kernel. `entries` must be a power of two (at most 32768).
    pub fn new(
        submitter: &io_uring::Submitter<'_>,
        bgid: u16,
        entries: u16,
        buf_size: usize,
    ) -> io::Result<Self> {
        if !entries.is_power_of_two() || entries > 1 << 15 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("buffer ring size {entries} is not a power of two up to 32768"),
            ));
        }
        if buf_size == 0 || u32::try_from(buf_size).is_err() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "buffer size must be 1..4 GiB"));
        }
        let ring = Mmap::new(usize::from(entries) * std::mem::size_of::<BufRingEntry>())?;
        let buffers = Mmap::new(usize::from(entries) * buf_size)?;
        // SAFETY: `ring` is a page-aligned mapping of exactly `entries` BufRingEntry slots; it is
        // freed only after the group is unregistered (contract 3: `registered` is set below;
        // if registering fails, nothing was registered and the maps may go).
        unsafe { submitter.register_buf_ring_with_flags(ring.as_ptr() as u64, entries, bgid, 0)? };
        let (ring, buffers) = (ManuallyDrop::new(ring), ManuallyDrop::new(buffers));
        let mut this = Self { ring, buffers, entries, buf_size, tail: 0, bgid, registered: true };
        for bid in 0..entries {
            this.recycle(bid);
        }
        this.publish();
        Ok(this)
    }

    /// The buffer group id to name in receive SQEs.
    pub fn bgid(&self) -> u16 {
        self.bgid
    }

    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// The buffer a completion carries (`None` if its flags name none), its first `len` bytes
    /// (clamped to the buffer size) lent until the returned [`Taken`] drops, which recycles it.
    ///
    /// # Safety
    ///
    /// `cqe_flags` are the flags of a completion reaped from the ring this group is registered
    /// on, and this is the first `take` for that completion (contract 2: the kernel is done
    /// with the buffer and nobody else holds it).
    pub unsafe fn take(&mut self, cqe_flags: u32, len: usize) -> Option<Taken<'_>> {
        let bid = cqueue::buffer_select(cqe_flags)? & (self.entries - 1);
        let len = len.min(self.buf_size);
        Some(Taken { ring: self, bid, len })
    }

    /// Gives buffer `bid` back to the kernel (visible after the next [`Self::publish`]).
    fn recycle(&mut self, bid: u16) {
        let mask = self.entries - 1;
        let index = usize::from(self.tail & mask);
        let bid = bid & mask;
        // SAFETY: index < entries, inside the descriptor ring; this entry is past the published
        // tail, so the kernel does not read it (contract 1).
        let entry = unsafe { &mut *self.ring.as_ptr().cast::<BufRingEntry>().add(index) };
        // SAFETY: bid < entries, so the address lies inside `buffers`.
        let addr = unsafe { self.buffers.as_ptr().add(usize::from(bid) * self.buf_size) };
        entry.set_addr(addr as u64);
        entry.set_len(self.buf_size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes recycled buffers to the kernel (one release store; call once per batch).
    pub fn publish(&mut self) {
        // SAFETY: the ring base is valid; `tail` points at the shared tail inside entry 0.
        let tail = unsafe { BufRingEntry::tail(self.ring.as_ptr().cast::<BufRingEntry>()) };
        // SAFETY: the tail is a naturally aligned u16 the kernel reads concurrently; a release
        // store makes the entries written before it visible first (contract 1).
        let tail = unsafe { AtomicU16::from_ptr(tail.cast_mut()) };
        tail.store(self.tail, Ordering::Release);
    }

    /// Unregisters the group: the kernel selects none of these buffers afterwards, so the
    /// memory is freed when this value drops (contract 3). On error it stays registered.
    pub fn unregister(&mut self, submitter: &io_uring::Submitter<'_>) -> io::Result<()> {
        if self.registered {
            submitter.unregister_buf_ring(self.bgid)?;
            self.registered = false;
        }
        Ok(())
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.registered {
            return; // contract 3: the kernel may still write here; leak rather than free it
        }
        // SAFETY: both mappings are dropped exactly once, here, and never used afterwards.
        unsafe {
            ManuallyDrop::drop(&mut self.buffers);
            ManuallyDrop::drop(&mut self.ring);
        }
    }
}

/// A received buffer, ours until dropped (then recycled to the kernel). Derefs to its bytes.
#[derive(Debug)]
pub struct Taken<'a> {
    ring: &'a mut BufRing,
    bid: u16,
    len: usize,
}

impl Taken<'_> {
    /// The buffer id (for diagnostics).
    pub fn bid(&self) -> u16 {
        self.bid
    }
}

impl Deref for Taken<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let start = usize::from(self.bid) * self.ring.buf_size;
        // SAFETY: bid < entries and len <= buf_size, so the range lies inside `buffers`; the
        // buffer is ours until this value drops (contract 2).
        unsafe { std::slice::from_raw_parts(self.ring.buffers.as_ptr().add(start), self.len) }
    }
}

impl DerefMut for Taken<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let start = usize::from(self.bid) * self.ring.buf_size;
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow of the buffer.
        unsafe { std::slice::from_raw_parts_mut(self.ring.buffers.as_ptr().add(start), self.len) }
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        self.ring.recycle(self.bid);
    }
}

#[cfg(test)]
mod tests;
