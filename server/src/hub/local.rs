//! Per-worker bookkeeping: how far each channel has been drained on this worker, which is
//! what makes `since` recovery exact.
//!
//! # No gap, no duplicate
//!
//! Every message is pushed into every worker's inbox under its channel's lock, so each inbox
//! holds a channel's messages in seq order. A worker records, per channel, the last seq it
//! drained (`last_seen`). To subscribe a connection with `since`:
//!
//! 1. replay `since < seq <= last_seen` from the channel's history
//!    ([`WorkerChannels::replay_since`]), with a `gap` first for what history lost;
//!    live delivery to this connection starts after `max(since, last_seen)`;
//! 2. add the connection to the worker's subscriber list;
//! 3. deliver live what the worker drains next: all of it has `seq > last_seen`.
//!
//! Steps 1–3 happen on the worker thread between two drains, so `last_seen` cannot move in
//! between: each seq is delivered exactly once, in order. `subscribed.seq` is `live_after`.
//!
//! If the worker's inbox overflowed (see `inbox`), [`WorkerChannels::observe`] reports the
//! jump when the next message of the channel is drained, and [`WorkerChannels::recover`]
//! catches up a channel whose later messages were all dropped; both fill from history.

use std::sync::Arc;

use super::channel::{Channel, Published};
use super::history::Gap;

/// What [`WorkerChannels::observe`] makes of a drained message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// The next seq of its channel: deliver it.
    Next,
    /// Already delivered on this worker (after a [`WorkerChannels::recover`]): skip it.
    Stale,
    /// Seqs were skipped (the inbox overflowed, or an external sequencer jumped): deliver
    /// `channel.replay(missing.from - 1, missing.to, ..)` (and its gap, if any) first, then
    /// this message; as always, each subscription takes only seqs above its `live_after`
    /// (clip the gap notice to them too).
    After {
        /// The seqs this worker's inbox did not carry.
        missing: Gap,
    },
}

/// What [`WorkerChannels::replay_since`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    /// Send this `gap` notice first: history no longer holds these seqs.
    pub gap: Option<Gap>,
    /// Deliver live messages with `seq > live_after` only (and report it as
    /// `subscribed.seq`).
    pub live_after: u64,
    /// Where the client stands: the position it gave, as the replay read it (clamped to
    /// the channel's newest seq). The replay and live messages take it on from there.
    pub start: u64,
}

#[derive(Debug, Default, Clone)]
struct Entry {
    last_seen: u64,
    latest: Option<Arc<Published>>,
}

/// Per channel id, what this worker has drained. One per worker, owned by its thread.
#[derive(Debug, Default)]
pub struct WorkerChannels {
    /// Indexed by channel id (dense), grown on demand.
    entries: Vec<Entry>,
}

impl WorkerChannels {
    /// Empty: no channel drained yet (every `last_seen` is 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a message drained from the inbox; call for each, in drain order.
    pub fn observe(&mut self, msg: &Arc<Published>) -> Observed {
        let entry = self.entry_mut(msg.channel_id());
        let seq = msg.seq();
        if seq <= entry.last_seen {
            return Observed::Stale;
        }
        let expected = entry.last_seen + 1;
        entry.last_seen = seq;
        entry.latest = Some(Arc::clone(msg));
        if seq == expected {
            Observed::Next
        } else {
            Observed::After { missing: Gap { from: expected, to: seq - 1 } }
        }
    }

    /// The last seq of `channel_id` drained on this worker (0 if none).
    pub fn last_seen(&self, channel_id: u32) -> u64 {
        self.entries.get(channel_id as usize).map_or(0, |e| e.last_seen)
    }

    /// The last message of `channel_id` drained on this worker: the snapshot to send a new
    /// subscriber of a conflated channel. Unlike `Channel::latest` it can never also arrive
    /// live afterwards.
    pub fn latest(&self, channel_id: u32) -> Option<&Arc<Published>> {
        self.entries.get(channel_id as usize).and_then(|e| e.latest.as_ref())
    }

    /// The replay for a connection subscribing with `since` on this worker: messages
    /// `since < seq <= last_seen` into `out`, the gap history could not fill, and the seq
    /// after which the subscription takes live messages.
    ///
    /// `live_after` exceeds `last_seen` when the client has seen more than this worker has
    /// drained (it read them through another worker): live messages up to it must be skipped
    /// for this subscription, or the client would get them twice. A `since` beyond the
    /// channel's newest seq (a client of an earlier server run, say) means "start live".
    pub fn replay_since(&self, channel: &Channel, since: u64, out: &mut Vec<Arc<Published>>) -> Replay {
        let last_seen = self.last_seen(channel.id());
        let since = since.min(channel.last_seq().max(last_seen));
        let gap = channel.replay(since, last_seen, out);
        Replay { gap, live_after: since.max(last_seen), start: since }
    }

    /// Catches `channel` up to its newest seq from history, for when the inbox dropped
    /// messages (`InboxReceiver::dropped` grew) and no later message may come to reveal it.
    /// Appends what to deliver to `out` and returns the gap history could not fill. Later
    /// inbox copies of these messages then observe as [`Observed::Stale`].
    pub fn recover(&mut self, channel: &Channel, out: &mut Vec<Arc<Published>>) -> Option<Gap> {
        let start = out.len();
        let since = self.last_seen(channel.id());
        let gap = channel.replay(since, u64::MAX, out);
        let entry = self.entry_mut(channel.id());
        if let Some(newest) = out[start..].last() {
            entry.last_seen = newest.seq();
            entry.latest = Some(Arc::clone(newest));
        } else if let Some(gap) = gap {
            entry.last_seen = gap.to;
        }
        gap
    }

    fn entry_mut(&mut self, channel_id: u32) -> &mut Entry {
        let index = channel_id as usize;
        if index >= self.entries.len() {
            // Ids are dense and bounded by the hub's channel limit, so this stays small.
            self.entries.resize(index + 1, Entry::default());
        }
        &mut self.entries[index]
    }
}
