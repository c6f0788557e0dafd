//! Send arguments (msghdr + iovec array) for vectored sends in flight.
//!
//! The kernel reads them until the send completes, so each lives in its own `Box` (a stable
//! address) and is lent to exactly one in-flight send. Connections hold none while idle, and a
//! burst that needed many at once does not pin that memory forever: past `keep_free` idle
//! buffers, released ones are freed.

/// `Conn::send_slot` when the send in flight uses no pooled buffer (a single-frame send).
pub const NO_SEND_BUF: u32 = u32::MAX;

pub struct SendBuf {
    pub msg: libc::msghdr,
    pub iov: Box<[libc::iovec]>,
}

pub struct SendPool {
    bufs: Vec<Option<Box<SendBuf>>>,
    /// Indices holding an idle buffer.
    free: Vec<u32>,
    /// Indices whose buffer was freed (reused before the Vec grows).
    vacant: Vec<u32>,
    iov_cap: usize,
    keep_free: usize,
}

impl SendPool {
    pub fn new(iov_cap: usize, keep_free: usize) -> Self {
        Self { bufs: Vec::new(), free: Vec::new(), vacant: Vec::new(), iov_cap, keep_free }
    }

    pub fn iov_cap(&self) -> usize {
        self.iov_cap
    }

    /// Lends a buffer; it stays at its address until [`Self::release`].
    pub fn acquire(&mut self) -> u32 {
        if let Some(i) = self.free.pop() {
            return i;
        }
        let iov = vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; self.iov_cap];
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
        if self.free.len() < self.keep_free {
            self.free.push(index);
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
        let mut pool = SendPool::new(4, 2);
        let ids: Vec<u32> = (0..10).map(|_| pool.acquire()).collect();
        let addr = std::ptr::from_ref(pool.get_mut(ids[3])) as usize;
        pool.acquire(); // growth must not move lent buffers
        assert_eq!(std::ptr::from_ref(pool.get_mut(ids[3])) as usize, addr);
        for id in ids {
            pool.release(id);
        }
        assert_eq!(pool.allocated(), 3, "only keep_free idle buffers (+1 still lent) stay allocated");
        let again = pool.acquire();
        assert_eq!(pool.get_mut(again).iov.len(), 4);
    }
}
