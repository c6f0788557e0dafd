//! A connection's send queue: shared, refcounted frames waiting to be written, bounded in bytes.
//!
//! Frames are `Bytes` clones (a refcount, never a copy of the payload). The queue hands out
//! iovecs for everything queued (up to a cap) so one vectored send carries it all, and on
//! completion advances by however many bytes the kernel took, resuming mid-frame after a partial
//! send. The frames stay in the queue, alive, until a completion says they were written: the
//! iovecs given to the kernel point into them.

use std::collections::VecDeque;

use bytes::Bytes;

/// Refused push: the queue would exceed its byte limit.
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow;

#[derive(Default)]
pub struct SendQueue {
    frames: VecDeque<Bytes>,
    /// Bytes of `frames[0]` already written by earlier partial sends.
    /// INVARIANT: `head_offset < frames[0].len()` when `frames` is non-empty, else 0.
    head_offset: usize,
    /// Unwritten bytes in the queue (all frames, minus `head_offset`).
    pending: usize,
}

impl SendQueue {
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Unwritten bytes queued.
    pub fn pending_bytes(&self) -> usize {
        self.pending
    }

    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// Queues a frame unless that would take the queue past `limit` bytes. An empty queue takes
    /// any one frame, so a frame larger than the limit (bounded by the message size limit) can
    /// still be sent: the queue never holds more than `limit` plus one frame. Empty frames are
    /// ignored (they would produce zero-length iovecs and no progress).
    pub fn push(&mut self, frame: Bytes, limit: usize) -> Result<(), Overflow> {
        if frame.is_empty() {
            return Ok(());
        }
        if self.pending > 0 && self.pending + frame.len() > limit {
            return Err(Overflow);
        }
        self.push_unbounded(frame);
        Ok(())
    }

    /// Queues a frame regardless of the limit: for the few small frames the protocol itself
    /// must send (close, pong) and that are bounded by the protocol, not by the peer.
    pub fn push_unbounded(&mut self, frame: Bytes) {
        if frame.is_empty() {
            return;
        }
        self.pending += frame.len();
        self.frames.push_back(frame);
    }

    /// Drops every frame not yet (partly) written, keeping a partly written head frame so the
    /// byte stream stays well-formed. Returns the number of frames dropped.
    pub fn clear_unstarted(&mut self) -> usize {
        let keep = usize::from(self.head_offset > 0);
        let dropped = self.frames.len().saturating_sub(keep);
        self.frames.truncate(keep);
        self.pending = self.frames.front().map_or(0, |f| f.len() - self.head_offset);
        if self.frames.is_empty() {
            // Release the ring buffer's memory: an idle connection holds no allocation.
            self.frames = VecDeque::new();
        }
        dropped
    }

    /// Fills `iov` with the unwritten bytes, in order; returns how many entries were used.
    /// The pointers stay valid while the frames remain queued, i.e. until [`Self::advance`].
    pub fn fill_iovecs(&self, iov: &mut [libc::iovec]) -> usize {
        let mut n = 0;
        for (slot, rest) in iov.iter_mut().zip(self.segments()) {
            *slot = libc::iovec { iov_base: rest.as_ptr() as *mut libc::c_void, iov_len: rest.len() };
            n += 1;
        }
        n
    }

    /// The unwritten bytes, frame by frame (the head frame without its written prefix).
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> {
        self.frames.iter().enumerate().map(|(i, f)| if i == 0 { &f[self.head_offset..] } else { &f[..] })
    }

    /// Records that the kernel wrote `written` bytes from the front; drops finished frames.
    /// `written` larger than what is pending is a caller bug; it is clamped, and asserted in debug.
    pub fn advance(&mut self, mut written: usize) {
        debug_assert!(written <= self.pending, "advance past the queued bytes");
        written = written.min(self.pending);
        self.pending -= written;
        while written > 0 {
            let Some(front) = self.frames.front() else { break };
            let rest = front.len() - self.head_offset;
            if written >= rest {
                written -= rest;
                self.frames.pop_front();
                self.head_offset = 0;
            } else {
                self.head_offset += written;
                written = 0;
            }
        }
        if self.frames.is_empty() && self.frames.capacity() > 8 {
            // A burst grew the ring; give the memory back once drained.
            self.frames = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What one vectored send of at most `cap` iovecs would offer the kernel.
    fn iov_bytes(q: &SendQueue, cap: usize) -> Vec<u8> {
        let mut iov = vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; cap];
        let n = q.fill_iovecs(&mut iov);
        let segments: Vec<&[u8]> = q.segments().take(n).collect();
        for (v, s) in iov[..n].iter().zip(&segments) {
            assert_eq!((v.iov_base as *const u8, v.iov_len), (s.as_ptr(), s.len()));
        }
        segments.concat()
    }

    #[test]
    fn limit_is_enforced() {
        let mut q = SendQueue::default();
        assert_eq!(q.push(Bytes::from_static(b"12345"), 8), Ok(()));
        assert_eq!(q.push(Bytes::from_static(b"6789"), 8), Err(Overflow));
        let mut empty = SendQueue::default();
        assert_eq!(empty.push(Bytes::from_static(b"larger than the limit"), 8), Ok(()));
        assert_eq!(q.pending_bytes(), 5);
        q.push_unbounded(Bytes::from_static(b"close"));
        assert_eq!(q.pending_bytes(), 10);
    }

    #[test]
    fn partial_sends_resume_mid_frame() {
        let mut q = SendQueue::default();
        q.push(Bytes::from_static(b"hello"), 100).unwrap();
        q.push(Bytes::from_static(b" world"), 100).unwrap();
        q.advance(3);
        assert_eq!(iov_bytes(&q, 8), b"lo world");
        q.advance(4);
        assert_eq!(iov_bytes(&q, 8), b"orld");
        assert_eq!(q.frame_count(), 1);
        q.advance(4);
        assert!(q.is_empty());
        assert_eq!(q.pending_bytes(), 0);
    }

    #[test]
    fn clear_keeps_partly_written_head() {
        let mut q = SendQueue::default();
        for f in [&b"abc"[..], b"def", b"ghi"] {
            q.push(Bytes::copy_from_slice(f), 100).unwrap();
        }
        q.advance(1);
        assert_eq!(q.clear_unstarted(), 2);
        assert_eq!(iov_bytes(&q, 8), b"bc");
        q.advance(2);
        assert_eq!(q.clear_unstarted(), 0);
        assert!(q.is_empty());
    }

    proptest! {
        /// Whatever the frame sizes, iovec cap and partial-write sizes, the bytes handed to the
        /// kernel, concatenated, are exactly the queued stream.
        #[test]
        fn stream_is_preserved(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..20),
                               cap in 1usize..6, cuts in proptest::collection::vec(1usize..50, 1..50)) {
            let mut q = SendQueue::default();
            let mut expected = Vec::new();
            for f in &frames {
                expected.extend_from_slice(f);
                q.push(Bytes::copy_from_slice(f), usize::MAX).unwrap();
            }
            let mut written = Vec::new();
            let mut cuts = cuts.into_iter().cycle();
            while !q.is_empty() {
                let offered = iov_bytes(&q, cap);
                prop_assert!(!offered.is_empty());
                let n = cuts.next().unwrap().min(offered.len());
                written.extend_from_slice(&offered[..n]);
                q.advance(n);
                prop_assert_eq!(q.pending_bytes(), expected.len() - written.len());
            }
            prop_assert_eq!(written, expected);
        }
    }
}
