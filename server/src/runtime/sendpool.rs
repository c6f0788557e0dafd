//! Send arguments (msghdr + iovec array) for vectored sends in flight.
//!
//! The kernel reads them until the send completes, so each lives in its own `Box` (a stable
//! address) and is lent to exactly one in-flight send. Connections hold none while idle, and a
//! burst that needed many at once does not pin that memory forever: past `keep_free` idle
//! buffers of a size, released ones are freed.
//!
//! Buffers come in a few sizes (4, 16, then `--max-iovecs` iovecs), and a send takes the
//! smallest that holds the frames it has queued: under load every connection may have a send
//! in flight, and most carry a few frames, so a full-size array each (about 1 KiB at 64 iovecs)
//! would be the largest part of a busy connection's memory.

/// `Conn::send_slot` when the send in flight uses no pooled buffer (a single-frame send).
pub const NO_SEND_BUF: u32 = u32::MAX;

/// The smaller sizes, in iovecs; the largest is the pool's `iov_cap`.
const SMALL_SIZES: [usize; 2] = [4, 16];

pub struct SendBuf {
    pub msg: libc::msghdr,
    pub iov: Box<[libc::iovec]>,
}

pub struct SendPool {
    bufs: Vec<Option<Box<SendBuf>>>,
    /// Per size (index into `sizes`): indices holding an idle buffer of that size.
    free: Vec<Vec<u32>>,
    /// Indices whose buffer was freed (reused before the Vec grows).
    vacant: Vec<u32>,
    /// Iovecs per buffer, smallest first; the last is `iov_cap`.
    sizes: Vec<usize>,
    keep_free: usize,
}

impl SendPool {
    pub fn new(iov_cap: usize, keep_free: usize) -> Self {
        let iov_cap = iov_cap.max(1);
        let mut sizes: Vec<usize> = SMALL_SIZES.iter().copied().filter(|&s| s < iov_cap).collect();
        sizes.push(iov_cap);
        let free = vec![Vec::new(); sizes.len()];
        Self { bufs: Vec::new(), free, vacant: Vec::new(), sizes, keep_free }
    }

    pub fn iov_cap(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }

    /// Lends a buffer with room for `frames` iovecs (at most `iov_cap`); it stays at its
    /// address until [`Self::release`].
    pub fn acquire(&mut self, frames: usize) -> u32 {
        let class = self.sizes.iter().position(|&s| s >= frames).unwrap_or(self.sizes.len() - 1);
        if let Some(i) = self.free[class].pop() {
            return i;
        }
        let iov = vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; self.sizes[class]];
        // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
        let msg: libc::msghdr = unsafe { std::mem::zeroed() };
        let buf = Some(Box::new(SendBuf { msg, iov: iov.into_boxed_slice() }));
        match self.vacant.pop() {
            Some(i) => {
                self.bufs[i as usize] = buf;
                i
            }
            None => {
                self.bufs.push(buf);
                (self.bufs.len() - 1) as u32
            }
        }
    }

    pub fn get_mut(&mut self, index: u32) -> &mut SendBuf {
        self.bufs[index as usize].as_deref_mut().expect("send buffer lent out")
    }

    /// Takes a buffer back once its send completed.
    pub fn release(&mut self, index: u32) {
        let len = self.bufs[index as usize].as_ref().map_or(0, |b| b.iov.len());
        let class = self.sizes.iter().position(|&s| s == len).unwrap_or(self.sizes.len() - 1);
        if self.free[class].len() < self.keep_free {
            self.free[class].push(index);
        } else {
            self.bufs[index as usize] = None;
            self.vacant.push(index);
        }
    }

    /// Buffers currently allocated (lent or idle).
    pub fn allocated(&self) -> usize {
        self.bufs.len() - self.vacant.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_keep_their_address_and_idle_ones_are_trimmed() {
        let mut pool = SendPool::new(64, 2);
        let ids: Vec<u32> = (0..10).map(|_| pool.acquire(64)).collect();
        let addr = std::ptr::from_ref(pool.get_mut(ids[3])) as usize;
        pool.acquire(64); // growth must not move lent buffers
        assert_eq!(std::ptr::from_ref(pool.get_mut(ids[3])) as usize, addr);
        for id in ids {
            pool.release(id);
        }
        assert_eq!(pool.allocated(), 3, "only keep_free idle buffers (+1 still lent) stay allocated");
        let again = pool.acquire(64);
        assert_eq!(pool.get_mut(again).iov.len(), 64);
    }

    #[test]
    fn a_send_takes_the_smallest_buffer_that_holds_its_frames() {
        let mut pool = SendPool::new(64, 8);
        let len = |pool: &mut SendPool, frames| {
            let id = pool.acquire(frames);
            let n = pool.get_mut(id).iov.len();
            pool.release(id);
            n
        };
        assert_eq!(len(&mut pool, 2), 4);
        assert_eq!(len(&mut pool, 4), 4);
        assert_eq!(len(&mut pool, 5), 16);
        assert_eq!(len(&mut pool, 17), 64);
        assert_eq!(len(&mut pool, 1000), 64, "at most --max-iovecs");
        // Each size is reused, not reallocated.
        assert_eq!(pool.allocated(), 3);
        // A cap below the small sizes: one size only.
        let mut small = SendPool::new(3, 8);
        assert_eq!(len(&mut small, 2), 3);
        assert_eq!(small.iov_cap(), 3);
    }
}
