//! A worker's subscriber table and the fan-out of drained messages to its connections.
//!
//! Every connection a worker owns that subscribes to a channel has a [`SubRef`] in that
//! channel's list here. Fanning a message out is a walk over that list: each live subscriber's
//! send queue gets a clone of the message's one encoded frame (a refcount increment, never a
//! copy) and the connection is marked for this turn's flush. Entries of closed connections are
//! dropped lazily (their slot's generation no longer matches) during the walk, and by a periodic
//! sweep for quiet channels, so closing a connection costs nothing here.

use bytes::Bytes;

use crate::conn::{Conn, Phase};
use crate::http::Endpoint;
use crate::hub::{Pattern, Published};
use crate::metrics::{self, WorkerStats};
use crate::sendq::{FrameMeta, SlowConsumerPolicy};
use crate::sse::SseFrame;

/// One subscription of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubRef {
    pub slot: u32,
    pub generation: u32,
    /// Deliver only messages with a higher seq (what replay already covered, or what the client
    /// said it has).
    pub live_after: u64,
}

/// A prefix subscription (`ticker.*`) of one connection: applied to channels this worker sees
/// for the first time after the subscription was made.
#[derive(Clone, Debug)]
struct PatternSub {
    pattern: Pattern,
    slot: u32,
    generation: u32,
}

fn pattern_text(p: &Pattern) -> String {
    match p {
        Pattern::Exact(name) => name.to_string(),
        Pattern::Prefix(prefix) => format!("{prefix}*"),
    }
}

/// Per worker: channel id -> subscribers, and the prefix subscriptions.
#[derive(Default)]
pub struct Subscribers {
    /// Indexed by channel id (dense, bounded by the hub's channel limit).
    by_channel: Vec<Vec<SubRef>>,
    /// Channel ids that prefix subscriptions have been matched against.
    matched: Vec<bool>,
    patterns: Vec<PatternSub>,
}

/// What a fan-out needs besides the message.
pub struct Targets<'a> {
    pub conns: &'a mut [Conn],
    /// Slots with something queued this turn (flushed at the end of the turn).
    pub dirty: &'a mut Vec<u32>,
    pub stats: &'a WorkerStats,
    pub send_queue_limit: usize,
    /// Channel names by id, for gap notices about dropped messages of other channels.
    pub names: &'a dyn Fn(u32) -> Option<std::sync::Arc<str>>,
}

impl Subscribers {
    /// Subscribes a connection to a channel. Returns false if it already was.
    pub fn add(&mut self, channel_id: u32, sub: SubRef) -> bool {
        let list = self.list_mut(channel_id);
        if list.iter().any(|s| s.slot == sub.slot && s.generation == sub.generation) {
            return false;
        }
        list.push(sub);
        true
    }

    /// Unsubscribes a connection from a channel. Returns whether it was subscribed.
    pub fn remove(&mut self, channel_id: u32, slot: u32, generation: u32) -> bool {
        let Some(list) = self.by_channel.get_mut(channel_id as usize) else { return false };
        let before = list.len();
        list.retain(|s| !(s.slot == slot && s.generation == generation));
        before != list.len()
    }

    pub fn add_pattern(&mut self, pattern: Pattern, slot: u32, generation: u32) {
        self.patterns.push(PatternSub { pattern, slot, generation });
    }

    /// Removes a connection's prefix subscription; returns whether it had it.
    pub fn remove_pattern(&mut self, pattern: &str, slot: u32, generation: u32) -> bool {
        let before = self.patterns.len();
        self.patterns.retain(|p| {
            !(p.slot == slot && p.generation == generation && pattern_text(&p.pattern) == pattern)
        });
        before != self.patterns.len()
    }

    /// Slots of the live subscribers of a channel.
    pub fn subscribers(&self, channel_id: u32, conns: &[Conn]) -> Vec<u32> {
        self.by_channel.get(channel_id as usize).map_or_else(Vec::new, |list| {
            list.iter()
                .filter(|s| {
                    conns
                        .get(s.slot as usize)
                        .is_some_and(|c| c.in_use && c.generation == s.generation && c.is_subscriber())
                })
                .map(|s| s.slot)
                .collect()
        })
    }

    /// Subscribers of a channel (for tests and metrics).
    pub fn count(&self, channel_id: u32) -> usize {
        self.by_channel.get(channel_id as usize).map_or(0, Vec::len)
    }

    /// Drops the entries of connections that are gone. Bounded by the table's size; the worker
    /// calls it every few seconds so quiet channels do not keep entries of closed connections.
    pub fn sweep(&mut self, conns: &[Conn]) {
        let live = |slot: u32, generation: u32| {
            conns
                .get(slot as usize)
                .is_some_and(|c| c.in_use && c.generation == generation && c.is_subscriber())
        };
        for list in &mut self.by_channel {
            list.retain(|s| live(s.slot, s.generation));
        }
        self.patterns.retain(|p| live(p.slot, p.generation));
    }

    fn list_mut(&mut self, channel_id: u32) -> &mut Vec<SubRef> {
        let index = channel_id as usize;
        if index >= self.by_channel.len() {
            self.by_channel.resize_with(index + 1, Vec::new);
        }
        &mut self.by_channel[index]
    }

    /// The first time this worker fans out a channel, prefix subscriptions made before the
    /// channel existed pick it up (from this message on).
    fn match_patterns(&mut self, msg: &Published) {
        let index = msg.channel_id() as usize;
        if self.matched.get(index).copied().unwrap_or(false) {
            return;
        }
        if index >= self.matched.len() {
            self.matched.resize(index + 1, false);
        }
        self.matched[index] = true;
        if self.patterns.is_empty() {
            return;
        }
        let name = msg.channel();
        let live_after = msg.seq() - 1;
        let new: Vec<SubRef> = self
            .patterns
            .iter()
            .filter(|p| p.pattern.matches(name))
            .map(|p| SubRef { slot: p.slot, generation: p.generation, live_after })
            .collect();
        for sub in new {
            self.add(msg.channel_id(), sub);
        }
    }

    /// Marks a channel as already matched against the current patterns (a new prefix
    /// subscription subscribes to existing channels itself).
    pub fn mark_matched(&mut self, channel_id: u32) {
        let index = channel_id as usize;
        if index >= self.matched.len() {
            self.matched.resize(index + 1, false);
        }
        self.matched[index] = true;
    }

    /// Delivers `msg` to every subscriber of its channel on this worker.
    pub fn fan_out(&mut self, msg: &Published, policy: SlowConsumerPolicy, t: &mut Targets<'_>) {
        self.match_patterns(msg);
        let Some(list) = self.by_channel.get_mut(msg.channel_id() as usize) else { return };
        let meta = FrameMeta { channel_id: msg.channel_id(), seq: msg.seq() };
        let ws_frame = msg.ws_frame();
        let mut delivered = 0u64;
        list.retain(|sub| {
            let Some(conn) = t.conns.get(sub.slot as usize) else { return false };
            if !conn.in_use || conn.generation != sub.generation {
                return false; // the connection is gone: drop the entry now
            }
            // One look at the phase: still a subscriber, and which wire format it reads.
            let sse = match conn.phase {
                Phase::Open(Endpoint::Ws) => false,
                Phase::Sse => true,
                _ => return false,
            };
            if meta.seq <= sub.live_after {
                return true;
            }
            delivered += 1;
            let frame = if sse { frame_for(&mut t.conns[sub.slot as usize], msg) } else { ws_frame.clone() };
            deliver(t, sub.slot, frame, meta, policy);
            true
        });
        metrics::add(&t.stats.deliveries, delivered);
    }
}

/// The bytes that carry `msg` to this connection: the shared frame (WebSocket) or SSE event,
/// or for an SSE stream of several channels its own event (`crate::sse`).
pub fn frame_for(conn: &mut Conn, msg: &Published) -> Bytes {
    if conn.phase != Phase::Sse {
        return msg.ws_frame().clone();
    }
    let Some(ids) = conn.subs.as_deref_mut().and_then(|s| s.sse_ids.as_mut()) else {
        return msg.sse_event().clone();
    };
    match ids.frame(msg) {
        SseFrame::Own(event) => event,
        SseFrame::Shared => msg.sse_event().clone(),
        SseFrame::SharedAfterNotice(notice) => {
            let bytes = conn.control_bytes(&notice);
            conn.sendq.push_unbounded(bytes);
            msg.sse_event().clone()
        }
    }
}

/// Offers one frame to the connection in `slot` and marks it for this turn's flush.
pub fn deliver(t: &mut Targets<'_>, slot: u32, frame: Bytes, meta: FrameMeta, policy: SlowConsumerPolicy) {
    let Some(conn) = t.conns.get_mut(slot as usize) else { return };
    conn.offer_broadcast(frame, meta, policy, t.send_queue_limit, t.stats, t.names);
    if conn.mark_for_flush() {
        t.dirty.push(slot);
    }
}

#[cfg(test)]
pub(crate) mod tests;
