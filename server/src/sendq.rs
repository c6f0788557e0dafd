//! A connection's send queue: shared, refcounted frames waiting to be written, bounded in bytes.
//!
//! Frames are `Bytes` clones (a refcount, never a copy of the payload). The queue hands out
//! iovecs for everything queued (up to a cap) so one vectored send carries it all, and on
//! completion advances by however many bytes the kernel took, resuming mid-frame after a partial
//! send. The frames stay in the queue, alive, until a completion says they were written: the
//! iovecs given to the kernel point into them.
//!
//! Broadcast frames carry their channel and sequence number, so that a slow consumer can be
//! handled by policy: disconnect, drop the oldest queued messages (reporting the exact gaps), or
//! conflate (keep only the newest queued message per channel).

use std::collections::VecDeque;

use bytes::Bytes;

/// Refused push: the queue would exceed its byte limit.
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow;

/// What to do when a broadcast frame does not fit a connection's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SlowConsumerPolicy {
    /// Close the connection with 1013 (try again later): the client reconnects with `since`.
    #[default]
    Disconnect,
    /// Drop the oldest queued messages and tell the client exactly which (a `gap` notice).
    DropOldest,
    /// Keep only the newest queued message per channel (tickers: only the latest price matters).
    Conflate,
}

/// Where a broadcast frame belongs: its channel (a hub id) and sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameMeta {
    pub channel_id: u32,
    pub seq: u64,
}

/// Messages a drop-oldest removed from one channel: exactly `from..=to` (a channel may have
/// several ranges in one drop when frames in flight sat between them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub channel_id: u32,
    pub from: u64,
    pub to: u64,
}

/// The result of offering a broadcast frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Queued; nothing was lost.
    Queued,
    /// Queued after dropping the oldest queued messages listed (one entry per channel).
    QueuedAfterDrops(Vec<Dropped>),
    /// Queued after removing this many older messages of channels that have a newer one queued.
    QueuedAfterConflating(usize),
    /// Does not fit, even after applying the policy: the connection must be closed.
    Overflow,
}

struct Entry {
    bytes: Bytes,
    /// `None` for frames that must never be dropped (handshake, pong, close, notices).
    meta: Option<FrameMeta>,
}

#[derive(Default)]
pub struct SendQueue {
    frames: VecDeque<Entry>,
    /// Bytes of `frames[0]` already written by earlier partial sends.
    /// INVARIANT: `head_offset < frames[0].bytes.len()` when `frames` is non-empty, else 0.
    head_offset: usize,
    /// Unwritten bytes in the queue (all frames, minus `head_offset`).
    pending: usize,
    /// Leading frames handed to the kernel by the send in flight: until it completes they are
    /// neither dropped, conflated nor preceded by anything new.
    /// INVARIANT: `in_flight <= frames.len()`.
    in_flight: usize,
}

/// A drained queue keeps this many slots: a subscriber's queue is reused message after message
/// without allocating, and an idle connection keeps at most this small ring.
const KEEP_CAPACITY: usize = 8;

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
        if !self.fits(frame.len(), limit) {
            return Err(Overflow);
        }
        self.push_entry(Entry { bytes: frame, meta: None });
        Ok(())
    }

    /// Queues a frame regardless of the limit: for the few small frames the protocol itself
    /// must send (close, pong, notices) and that are bounded by the protocol, not by the peer.
    pub fn push_unbounded(&mut self, frame: Bytes) {
        if !frame.is_empty() {
            self.push_entry(Entry { bytes: frame, meta: None });
        }
    }

    /// Queues a frame ahead of everything not yet started (after a partly written head): for a
    /// notice that must precede the frames still queued.
    pub fn push_front_unbounded(&mut self, frame: Bytes) {
        if frame.is_empty() {
            return;
        }
        let at = self.first_unsent();
        self.pending += frame.len();
        self.frames.insert(at, Entry { bytes: frame, meta: None });
    }

    /// Offers a broadcast frame, applying `policy` when it does not fit within `limit`.
    pub fn offer(
        &mut self,
        frame: Bytes,
        meta: FrameMeta,
        policy: SlowConsumerPolicy,
        limit: usize,
    ) -> Offer {
        if frame.is_empty() {
            return Offer::Queued;
        }
        let len = frame.len();
        let entry = Entry { bytes: frame, meta: Some(meta) };
        if self.fits(len, limit) {
            self.push_entry(entry);
            return Offer::Queued;
        }
        match policy {
            SlowConsumerPolicy::Disconnect => Offer::Overflow,
            SlowConsumerPolicy::DropOldest => {
                // Drop down to half the limit, not just enough for this frame: a consumer
                // that is behind stays behind, and dropping on every message would turn one
                // gap into a gap notice per message.
                let dropped = self.drop_oldest(limit / 2, len);
                if !self.fits(len, limit) {
                    return Offer::Overflow; // only undroppable frames are queued
                }
                self.push_entry(entry);
                Offer::QueuedAfterDrops(dropped)
            }
            SlowConsumerPolicy::Conflate => {
                self.push_entry(entry);
                let removed = self.conflate();
                if self.pending > limit.max(len) {
                    return Offer::Overflow; // more distinct channels than the queue holds
                }
                Offer::QueuedAfterConflating(removed)
            }
        }
    }

    fn fits(&self, len: usize, limit: usize) -> bool {
        self.pending == 0 || self.pending + len <= limit
    }

    fn push_entry(&mut self, entry: Entry) {
        self.pending += entry.bytes.len();
        self.frames.push_back(entry);
    }

    /// Index of the first frame neither in flight nor partly written.
    fn first_unsent(&self) -> usize {
        self.in_flight.max(usize::from(self.head_offset > 0))
    }

    /// Whether frame `i` may be removed: a broadcast frame not in flight, not partly written.
    fn droppable(&self, i: usize) -> Option<FrameMeta> {
        if i < self.first_unsent() {
            return None;
        }
        self.frames[i].meta
    }

    /// Removes the oldest droppable frames until `pending + incoming <= target`.
    fn drop_oldest(&mut self, target: usize, incoming: usize) -> Vec<Dropped> {
        let mut dropped: Vec<Dropped> = Vec::new();
        let mut i = 0;
        while i < self.frames.len() && self.pending + incoming > target {
            let Some(meta) = self.droppable(i) else {
                i += 1;
                continue;
            };
            let entry = self.frames.remove(i).expect("index checked");
            self.pending -= entry.bytes.len();
            // Extend this channel's latest range when contiguous; otherwise start a new one
            // (frames skipped earlier while in flight can make a channel's drops discontiguous).
            match dropped.iter_mut().rev().find(|d| d.channel_id == meta.channel_id) {
                Some(d) if d.to + 1 == meta.seq => d.to = meta.seq,
                _ => dropped.push(Dropped { channel_id: meta.channel_id, from: meta.seq, to: meta.seq }),
            }
        }
        dropped
    }

    /// Keeps only the newest droppable frame of each channel; returns how many were removed.
    /// Bounded by the queue length (itself bounded by the byte limit).
    fn conflate(&mut self) -> usize {
        let mut newest: Vec<u32> = Vec::new(); // channels seen, scanning from the newest frame
        let mut keep = vec![true; self.frames.len()];
        for i in (0..self.frames.len()).rev() {
            if let Some(meta) = self.droppable(i) {
                if newest.contains(&meta.channel_id) {
                    keep[i] = false;
                } else {
                    newest.push(meta.channel_id);
                }
            }
        }
        let before = self.frames.len();
        let mut index = 0;
        let mut removed_bytes = 0;
        self.frames.retain(|e| {
            let k = keep[index];
            index += 1;
            if !k {
                removed_bytes += e.bytes.len();
            }
            k
        });
        self.pending -= removed_bytes;
        before - self.frames.len()
    }

    /// Drops every frame not yet (partly) written, keeping a partly written head frame so the
    /// byte stream stays well-formed. Returns the number of frames dropped.
    pub fn clear_unstarted(&mut self) -> usize {
        let keep = self.first_unsent();
        let dropped = self.frames.len().saturating_sub(keep);
        self.frames.truncate(keep);
        self.pending = self.frames.iter().map(|f| f.bytes.len()).sum::<usize>() - self.head_offset;
        if self.frames.is_empty() {
            self.frames = VecDeque::new();
        }
        dropped
    }

    /// Starts a send: fills `iov` with the unwritten bytes, in order, and marks those frames
    /// in flight; returns how many entries were used. The pointers stay valid, and the frames
    /// untouched, until the send's completion is passed to [`Self::advance`].
    pub fn fill_iovecs(&mut self, iov: &mut [libc::iovec]) -> usize {
        let mut n = 0;
        for (slot, rest) in iov.iter_mut().zip(self.segments()) {
            *slot = libc::iovec { iov_base: rest.as_ptr() as *mut libc::c_void, iov_len: rest.len() };
            n += 1;
        }
        self.in_flight = n;
        n
    }

    /// Starts a send of the first frame alone (its unwritten part), marking it in flight.
    pub fn start_single(&mut self) -> Option<(*const u8, usize)> {
        let head = self.segments().next().map(|s| (s.as_ptr(), s.len()))?;
        self.in_flight = 1;
        Some(head)
    }

    /// The unwritten bytes, frame by frame (the head frame without its written prefix).
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> {
        self.frames
            .iter()
            .enumerate()
            .map(|(i, f)| if i == 0 { &f.bytes[self.head_offset..] } else { &f.bytes[..] })
    }

    /// Completes the send in flight: the kernel wrote `written` bytes from the front; finished
    /// frames are dropped. `written` larger than what is pending is a caller bug; it is clamped,
    /// and asserted in debug.
    pub fn advance(&mut self, mut written: usize) {
        debug_assert!(written <= self.pending, "advance past the queued bytes");
        self.in_flight = 0;
        written = written.min(self.pending);
        self.pending -= written;
        while written > 0 {
            let Some(front) = self.frames.front() else { break };
            let rest = front.bytes.len() - self.head_offset;
            if written >= rest {
                written -= rest;
                self.frames.pop_front();
                self.head_offset = 0;
            } else {
                self.head_offset += written;
                written = 0;
            }
        }
        if self.frames.is_empty() && self.frames.capacity() > KEEP_CAPACITY {
            // A burst grew the ring; give the memory back once drained.
            self.frames = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests;
