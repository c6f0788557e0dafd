//! A connection's subscribe and unsubscribe operations: attaching to channels and patterns
//! with the replay (or reset, or snapshot) each position asks for, the `subscribed` ack, and
//! an SSE stream's ids (`crate::sse`).

use std::collections::BTreeMap;
use std::sync::Arc;

use tickcast_protocol::envelope::{Control, ErrorCode};
use tickcast_protocol::position::Position;

use super::{Broadcast, SubscribeError, Work, channel_names, error};
use crate::conn::{Conn, Env, Phase};
use crate::fanout::{self, SubRef};
use crate::hub::{Channel, Pattern, Published, Resume};
use crate::metrics;
use crate::sendq::{FrameMeta, SlowConsumerPolicy};

/// A replay (or snapshot) to deliver once the `subscribed` ack is queued, so the client reads
/// the ack first and then everything after the `since` it gave.
pub(super) struct PendingReplay {
    slot: u32,
    policy: SlowConsumerPolicy,
    /// The client's position named another epoch: told first.
    reset: Option<Control>,
    gap: Option<Control>,
    msgs: Vec<Arc<Published>>,
}

/// A channel a subscribe attached: where live delivery continues, and where the client stands
/// (what it has; the replay fills the difference).
struct Attached {
    channel: Arc<Channel>,
    live_after: u64,
    start: u64,
}

impl Broadcast {
    pub(super) fn subscribe(
        &mut self,
        slot: u32,
        id: Option<u64>,
        names: Vec<String>,
        since: &BTreeMap<String, Position>,
        env: &Env<'_>,
        w: &mut Work<'_>,
    ) {
        let mut acked = Vec::with_capacity(names.len());
        let mut seqs = BTreeMap::new();
        let mut epochs = BTreeMap::new();
        let mut attached = Vec::new();
        for name in names {
            let result = if name.contains('*') {
                self.subscribe_pattern(slot, &name, since, &mut attached, w)
            } else {
                self.subscribe_channel(slot, &name, since.get(&name).copied(), w).map(|a| {
                    seqs.insert(name.clone(), a.live_after);
                    epochs.insert(name.clone(), a.channel.epoch());
                    attached.push(a);
                })
            };
            match result {
                Ok(()) => acked.push(name),
                Err(reply) => w.conns[slot as usize].reply(&reply(id), env),
            }
        }
        if !acked.is_empty() {
            let ack = Control::Subscribed { id, channels: acked, seq: seqs, epoch: epochs };
            w.conns[slot as usize].reply(&ack, env);
        }
        self.start_sse_ids(slot, &attached, w);
        self.deliver_pending(w);
    }

    /// An SSE stream of several channels (or a pattern) gets ids that carry its position on
    /// each (`crate::sse`), starting where the client stands.
    fn start_sse_ids(&mut self, slot: u32, attached: &[Attached], w: &mut Work<'_>) {
        let conn = &mut w.conns[slot as usize];
        let Some(subs) = conn.subs.as_deref_mut() else { return };
        if conn.phase != Phase::Sse || (subs.channels.len() < 2 && subs.patterns.is_empty()) {
            return;
        }
        let ids = subs.sse_ids.get_or_insert_with(Default::default);
        let mut notice = None;
        for a in attached {
            let position = Position { seq: a.start, epoch: Some(a.channel.epoch()) };
            notice = notice.or(ids.start(a.channel.id(), a.channel.name(), position));
        }
        if let Some(notice) = notice {
            let bytes = conn.control_bytes(&notice);
            conn.sendq.push_unbounded(bytes);
        }
    }

    /// Delivers the replays and snapshots queued by `attach`.
    fn deliver_pending(&mut self, w: &mut Work<'_>) {
        let names = channel_names(&self.hub);
        let mut t = w.targets(self.config.send_queue_limit, &names);
        for p in self.pending.drain(..) {
            let conn = &mut t.conns[p.slot as usize];
            if let Some(reset) = p.reset {
                conn.sendq.push_unbounded(conn.control_bytes(&reset));
                metrics::inc(&t.stats.reset_notices);
            }
            if let Some(gap) = p.gap {
                conn.sendq.push_unbounded(conn.control_bytes(&gap));
                metrics::inc(&t.stats.gap_notices);
            }
            for m in &p.msgs {
                let meta = FrameMeta { channel_id: m.channel_id(), seq: m.seq() };
                let frame = fanout::frame_for(&mut t.conns[p.slot as usize], m);
                fanout::deliver(&mut t, p.slot, frame, meta, p.policy);
            }
        }
    }

    fn check_limit(&self, conn: &Conn) -> Result<(), SubscribeError> {
        let count = conn.subs.as_ref().map_or(0, |s| s.count());
        if count >= self.config.max_subscriptions {
            let limit = self.config.max_subscriptions;
            return Err(Box::new(move |id| {
                error(
                    id,
                    ErrorCode::TooManySubscriptions,
                    format!("at most {limit} subscriptions per connection"),
                )
            }));
        }
        Ok(())
    }

    /// One channel, with optional replay from the client's position.
    fn subscribe_channel(
        &mut self,
        slot: u32,
        name: &str,
        since: Option<Position>,
        w: &mut Work<'_>,
    ) -> Result<Attached, SubscribeError> {
        let channel = self.hub.channel(name).map_err(|e| -> SubscribeError {
            let (code, message) = (e.code(), e.to_string());
            Box::new(move |id| error(id, code, message.clone()))
        })?;
        let conn = &w.conns[slot as usize];
        if conn.subs.as_ref().is_some_and(|s| s.channels.contains(&channel.id())) {
            let last = self.channels.last_seen(channel.id()); // already subscribed
            return Ok(Attached { channel, live_after: last, start: last });
        }
        self.check_limit(conn)?;
        let generation = conn.generation;
        let (live_after, start) = self.attach(slot, generation, &channel, since);
        let conn = &mut w.conns[slot as usize];
        conn.subs.get_or_insert_with(Box::default).channels.push(channel.id());
        metrics::inc(&w.stats.subscriptions);
        Ok(Attached { channel, live_after, start })
    }

    /// Adds the subscriber entry and queues its replay (or conflation snapshot) for delivery
    /// right after the ack, so it gets every message after its position exactly once. A
    /// position from another epoch gets a `reset` notice and the current epoch from its
    /// start. Returns the seq live delivery continues after, and where the client stands.
    fn attach(
        &mut self,
        slot: u32,
        generation: u32,
        channel: &Channel,
        since: Option<Position>,
    ) -> (u64, u64) {
        let policy = self.policy(channel.id(), channel.name());
        let mut msgs = Vec::new();
        let (mut reset, mut gap) = (None, None);
        let resume = channel.resume(since);
        let (live_after, start) = match resume {
            Resume::After(_) | Resume::Reset => {
                let since = match resume {
                    Resume::After(seq) => seq,
                    _ => {
                        reset = Some(channel.reset_notice());
                        0
                    }
                };
                let r = self.channels.replay_since(channel, since, &mut msgs);
                gap = r.gap.map(|g| Control::Gap {
                    channel: channel.name().to_string(),
                    from: g.from,
                    to: g.to,
                });
                (r.live_after, r.start)
            }
            Resume::Live => {
                if policy == SlowConsumerPolicy::Conflate
                    && let Some(latest) = self.channels.latest(channel.id())
                {
                    msgs.push(Arc::clone(latest)); // a conflated channel's snapshot
                }
                let last = self.channels.last_seen(channel.id());
                (last, last)
            }
        };
        if reset.is_some() || gap.is_some() || !msgs.is_empty() {
            self.pending.push(PendingReplay { slot, policy, reset, gap, msgs });
        }
        self.subs.add(channel.id(), SubRef { slot, generation, live_after });
        (live_after, start)
    }

    /// A prefix pattern: every existing matching channel now (live), new ones as they appear.
    /// Existing channels it matches resume from their position in `since`, if the client gave
    /// one (an SSE stream's `Last-Event-ID` names them), else start live.
    fn subscribe_pattern(
        &mut self,
        slot: u32,
        text: &str,
        since: &BTreeMap<String, Position>,
        attached: &mut Vec<Attached>,
        w: &mut Work<'_>,
    ) -> Result<(), SubscribeError> {
        let pattern = Pattern::parse(text, false).map_err(|e| -> SubscribeError {
            let (code, message) = (e.code(), e.to_string());
            Box::new(move |id| error(id, code, message.clone()))
        })?;
        let conn = &w.conns[slot as usize];
        if conn.subs.as_ref().is_some_and(|s| s.patterns.iter().any(|p| p == text)) {
            return Ok(());
        }
        self.check_limit(conn)?;
        let generation = conn.generation;
        for channel in self.hub.channels_matching(&pattern) {
            self.subs.mark_matched(channel.id());
            if !w.conns[slot as usize].subs.as_ref().is_some_and(|s| s.channels.contains(&channel.id())) {
                let position = since.get(channel.name().as_ref()).copied();
                let (live_after, start) = self.attach(slot, generation, &channel, position);
                attached.push(Attached { channel, live_after, start });
            }
        }
        self.subs.add_pattern(pattern, slot, generation);
        w.conns[slot as usize].subs.get_or_insert_with(Box::default).patterns.push(text.to_owned());
        metrics::inc(&w.stats.subscriptions);
        Ok(())
    }

    pub(super) fn unsubscribe(
        &mut self,
        slot: u32,
        id: Option<u64>,
        names: Vec<String>,
        env: &Env<'_>,
        w: &mut Work<'_>,
    ) {
        let generation = w.conns[slot as usize].generation;
        let mut removed = Vec::new();
        for name in names {
            let subs = w.conns[slot as usize].subs.get_or_insert_with(Box::default);
            let found = if name.contains('*') {
                let before = subs.patterns.len();
                subs.patterns.retain(|p| p != &name);
                let had = before != subs.patterns.len();
                if had {
                    self.subs.remove_pattern(&name, slot, generation);
                    // The channels the pattern brought in go with it; channels also
                    // subscribed by name stay.
                    if let Ok(pattern) = Pattern::parse(&name, false) {
                        for channel in self.hub.channels_matching(&pattern) {
                            if !subs.channels.contains(&channel.id()) {
                                self.subs.remove(channel.id(), slot, generation);
                            }
                        }
                    }
                }
                had
            } else if let Some(channel) = self.hub.get(&name) {
                let had = subs.channels.contains(&channel.id());
                subs.channels.retain(|&c| c != channel.id());
                self.subs.remove(channel.id(), slot, generation);
                had
            } else {
                false
            };
            if found {
                metrics::dec(&w.stats.subscriptions);
                removed.push(name);
            }
        }
        w.conns[slot as usize].reply(&Control::Unsubscribed { id, channels: removed }, env);
    }
}
