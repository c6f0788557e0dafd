//! A channel's history ring: the most recent published messages, bounded by a count and by
//! the memory they hold, so `since` recovery, polling and long-polling can read them.

use std::collections::VecDeque;
use std::sync::Arc;

use super::channel::Published;

/// Bounds of one channel's history. Both apply; whichever is reached first evicts the oldest.
///
/// The defaults (1024 messages, 1 MiB) are sized for recovery, not archiving: a ticker symbol
/// at a few messages per second keeps several minutes, enough for a client to reconnect after
/// a network blip, and a busy channel at 1,000 msg/s still keeps about a second, enough for a
/// reconnect on a healthy network. The byte bound caps a channel of large messages (64 KiB
/// each would otherwise hold 64 MiB); with 128-byte messages the count bound is the one that
/// bites (~300 KiB with the per-entry overhead). The server-wide worst case is
/// `max_channels × bytes`, which is why `max_channels` is bounded too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Most messages kept. 0 keeps none (every `since` beyond the live stream becomes a gap).
    pub messages: usize,
    /// Most bytes kept, counted as [`Published::retained_bytes`] (frame plus bookkeeping).
    pub bytes: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self { messages: 1024, bytes: 1 << 20 }
    }
}

/// The missing inclusive range `from..=to` of a channel's sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// First missing seq.
    pub from: u64,
    /// Last missing seq (inclusive).
    pub to: u64,
}

/// Messages with consecutive seqs, oldest first.
///
/// INVARIANT: `ring[i].seq() == ring[0].seq() + i`, `bytes` is the sum of the entries'
/// `retained_bytes()`, and after every `push` both limits hold.
#[derive(Debug)]
pub(crate) struct History {
    ring: VecDeque<Arc<Published>>,
    bytes: usize,
    limits: HistoryLimits,
}

impl History {
    pub(crate) fn new(limits: HistoryLimits) -> Self {
        // Grow on demand: most channels never fill their ring, and pre-sizing 1024 slots for
        // each of thousands of channels would cost memory for nothing.
        Self { ring: VecDeque::new(), bytes: 0, limits }
    }

    /// Appends the next message (its seq must follow the newest one's), evicting the oldest
    /// until both limits hold. A message larger than the byte budget is not kept at all.
    pub(crate) fn push(&mut self, msg: &Arc<Published>) {
        if let Some(last) = self.ring.back()
            && last.seq() + 1 != msg.seq()
        {
            // A jump in seqs (an externally sequenced channel skipped some): keep the ring
            // contiguous so replay can index it, at the cost of older entries.
            debug_assert!(msg.seq() > last.seq(), "history seqs must increase");
            self.clear();
        }
        let size = msg.retained_bytes();
        if self.limits.messages == 0 || size > self.limits.bytes {
            self.clear();
            return;
        }
        while self.ring.len() >= self.limits.messages || self.bytes + size > self.limits.bytes {
            match self.ring.pop_front() {
                Some(old) => self.bytes -= old.retained_bytes(),
                None => break,
            }
        }
        self.bytes += size;
        self.ring.push_back(Arc::clone(msg));
        debug_assert!(self.ring.len() <= self.limits.messages && self.bytes <= self.limits.bytes);
    }

    fn clear(&mut self) {
        self.ring.clear();
        self.bytes = 0;
    }

    /// Oldest seq held.
    pub(crate) fn first_seq(&self) -> Option<u64> {
        self.ring.front().map(|m| m.seq())
    }

    /// Number of messages held.
    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }

    /// Bytes held (see [`Published::retained_bytes`]).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends the held messages with `since < seq <= upto` to `out`, oldest first. `last_seq`
    /// is the channel's newest assigned seq. Returns the part of `since+1..=min(upto,
    /// last_seq)` that history no longer holds, if any: it always precedes what is returned.
    pub(crate) fn replay(
        &self,
        since: u64,
        upto: u64,
        last_seq: u64,
        out: &mut Vec<Arc<Published>>,
    ) -> Option<Gap> {
        let upto = upto.min(last_seq);
        if since >= upto {
            return None;
        }
        let want = since + 1;
        let first = self.first_seq().unwrap_or(last_seq + 1);
        let gap = (first > want).then(|| Gap { from: want, to: upto.min(first - 1) });
        if first <= upto {
            let start = (want.max(first) - first) as usize;
            let end = (upto - first) as usize + 1;
            out.extend(self.ring.range(start..end.min(self.ring.len())).cloned());
        }
        gap
    }
}
