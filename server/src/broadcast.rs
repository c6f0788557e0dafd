//! A worker's side of channels: drain the worker's inbox and fan messages out to its
//! subscribers (WebSocket and SSE), wake its parked long-polls, and carry out its connections'
//! subscribe / unsubscribe / publish operations.
//!
//! No ring here: the worker hands in its connection slab and flush list, so the whole
//! publish -> inbox -> subscriber queue path runs (and is tested) without io_uring.

use std::sync::Arc;

use tickcast_protocol::envelope::{ClientOp, Control, Data, ErrorCode};

use crate::config::Config;
use crate::conn::{Conn, ConnSubs, Env, Op, Phase};
use crate::fanout::{Subscribers, Targets};
use crate::http::Decision;
use crate::hub::{Channel, Gap, Hub, InboxReceiver, Observed, Pattern, Published, WorkerChannels};
use crate::metrics::{self, WorkerStats};
use crate::poll;
use crate::sendq::SlowConsumerPolicy;

/// Most messages drained from the inbox per loop turn (the rest wait one turn, so a flood of
/// publishes cannot starve the worker's sockets).
const DRAIN_PER_TURN: usize = 16_384;

/// A parked long-poll's interest in one channel. Entries of a connection's earlier long-polls
/// (another `round`) or of closed connections are stale and dropped when met.
#[derive(Clone, Copy, Debug)]
struct Parked {
    slot: u32,
    generation: u32,
    round: u32,
    /// Wake for seqs above this.
    since: u64,
}

pub struct Broadcast {
    hub: Arc<Hub>,
    /// Parked long-polls by channel id.
    parked: Vec<Vec<Parked>>,
    /// Long-polls with news this turn, answered by the worker after the drain.
    woken: Vec<u32>,
    pending: Vec<subscribe::PendingReplay>,
    inbox: InboxReceiver,
    channels: WorkerChannels,
    subs: Subscribers,
    config: Arc<Config>,
    client_publish: Vec<Pattern>,
    /// Slow-consumer policy per channel id, resolved from the rules once per channel.
    policies: Vec<Option<SlowConsumerPolicy>>,
    msgs: Vec<Arc<Published>>,
    /// Commit times (µs) of the messages fanned out this turn, for the fan-out histogram.
    fanned_ts: Vec<u64>,
    replay: Vec<Arc<Published>>,
    inbox_dropped_seen: u64,
}

/// The worker state an operation or a fan-out touches.
pub struct Work<'a> {
    pub conns: &'a mut [Conn],
    pub dirty: &'a mut Vec<u32>,
    pub stats: &'a WorkerStats,
}

impl Work<'_> {
    /// The fan-out's view of this work: the same slab and flush list.
    fn targets<'t>(
        &'t mut self,
        send_queue_limit: usize,
        names: &'t dyn Fn(u32) -> Option<Arc<str>>,
    ) -> Targets<'t> {
        Targets { conns: self.conns, dirty: self.dirty, stats: self.stats, send_queue_limit, names }
    }
}

/// Channel names by id (for gap notices about other channels' dropped messages).
fn channel_names(hub: &Hub) -> impl Fn(u32) -> Option<Arc<str>> + '_ {
    |id| hub.channel_by_id(id).map(|c| Arc::clone(c.name()))
}

fn error(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Control {
    Control::Error { id, code, message: message.into() }
}

impl Broadcast {
    pub fn new(hub: Arc<Hub>, inbox: InboxReceiver, config: Arc<Config>) -> Self {
        // Validated at startup (Config::validate).
        let client_publish = config.client_publish_patterns().unwrap_or_default();
        Self {
            hub,
            parked: Vec::new(),
            woken: Vec::new(),
            pending: Vec::new(),
            inbox,
            channels: WorkerChannels::new(),
            subs: Subscribers::default(),
            config,
            client_publish,
            policies: Vec::new(),
            msgs: Vec::new(),
            fanned_ts: Vec::new(),
            replay: Vec::new(),
            inbox_dropped_seen: 0,
        }
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The eventfd publishers write to wake this worker.
    pub fn eventfd(&self) -> std::os::fd::RawFd {
        self.inbox.eventfd()
    }

    /// Consumes a wake-up (the eventfd's counter).
    pub fn on_wake(&self) {
        let _ = self.inbox.read_eventfd();
    }

    fn policy(&mut self, channel_id: u32, name: &str) -> SlowConsumerPolicy {
        let index = channel_id as usize;
        if index >= self.policies.len() {
            self.policies.resize(index + 1, None);
        }
        *self.policies[index].get_or_insert_with(|| self.config.policy_for(name))
    }

    /// Drains the inbox and fans every message out to this worker's subscribers.
    pub fn drain(&mut self, w: &mut Work<'_>) {
        self.inbox.begin_drain();
        let mut msgs = std::mem::take(&mut self.msgs);
        self.inbox.drain(&mut msgs, DRAIN_PER_TURN);
        for msg in msgs.drain(..) {
            // Timed from the hub's commit to this turn's flush (`record_fanout`), for messages
            // this worker has subscribers of.
            if self.subs.count(msg.channel_id()) > 0 {
                self.fanned_ts.push(msg.ts_us());
            }
            match self.channels.observe(&msg) {
                Observed::Next => self.fan_out(&msg, w),
                Observed::Stale => {}
                Observed::After { missing } => {
                    // The inbox dropped some of this channel's messages: fill from history.
                    self.fill(&msg, missing, w);
                    self.fan_out(&msg, w);
                }
            }
        }
        self.msgs = msgs;
        let dropped = self.inbox.dropped();
        if dropped > self.inbox_dropped_seen {
            metrics::add(&w.stats.inbox_dropped, dropped - self.inbox_dropped_seen);
            self.inbox_dropped_seen = dropped;
            self.recover_all(w);
        }
    }

    fn fan_out(&mut self, msg: &Published, w: &mut Work<'_>) {
        self.wake_parked(msg, w.conns);
        let policy = self.policy(msg.channel_id(), msg.channel());
        let names = channel_names(&self.hub);
        let mut t = w.targets(self.config.send_queue_limit, &names);
        self.subs.fan_out(msg, policy, &mut t);
    }

    /// Wakes the long-polls parked on `msg`'s channel that have not seen it. A woken poll's
    /// entries go: it is answered this turn (or parked afresh, see [`Broadcast::answer_poll`]).
    fn wake_parked(&mut self, msg: &Published, conns: &[Conn]) {
        let Some(list) = self.parked.get_mut(msg.channel_id() as usize) else { return };
        if list.is_empty() {
            return;
        }
        let woken = &mut self.woken;
        list.retain(|p| {
            if !is_parked(conns, p) {
                return false;
            }
            if msg.seq() <= p.since {
                return true; // it already has this one (this worker lags the history)
            }
            woken.push(p.slot);
            false
        });
    }

    /// Parks the long-poll in `slot`'s `Conn::poll` on each of its channels.
    fn park(&mut self, slot: u32, w: &mut Work<'_>) {
        let conn = &w.conns[slot as usize];
        let Some(request) = conn.poll.as_ref() else { return };
        for crate::poll::PollChannel { channel, since, .. } in &request.channels {
            let index = channel.id() as usize;
            if index >= self.parked.len() {
                self.parked.resize_with(index + 1, Vec::new);
            }
            let entry = Parked { slot, generation: conn.generation, round: conn.park_round, since: *since };
            self.parked[index].push(entry);
        }
    }

    /// Records, for each message fanned out this turn, the time from its commit in the hub to
    /// `now_us` (the flush that handed its frames to the kernel).
    pub fn record_fanout(&mut self, now_us: u64, latency: &metrics::Histogram) {
        for ts in self.fanned_ts.drain(..) {
            latency.record(now_us.saturating_sub(ts));
        }
    }

    /// Whether messages were fanned out this turn (their latency is still to be recorded).
    pub fn fanned(&self) -> bool {
        !self.fanned_ts.is_empty()
    }

    /// The long-polls woken since the last call (a slot may appear twice).
    pub fn take_woken(&mut self, into: &mut Vec<u32>) {
        into.append(&mut self.woken);
    }

    /// Answers the long-poll parked in `slot` from history: when it has news, or when its
    /// deadline passed (`timed_out`: then even an empty answer goes). Woken without news (a
    /// message this worker drained late, which the client already had), it is parked again.
    pub fn answer_poll(&mut self, slot: u32, timed_out: bool, env: &Env<'_>, w: &mut Work<'_>) {
        let conn = &mut w.conns[slot as usize];
        if conn.phase != Phase::LongPoll {
            return; // answered already (woken twice), or closed
        }
        let Some(request) = conn.poll.as_ref() else { return };
        let answer = poll::answer(request, env.http.poll_limits, &mut self.replay);
        self.replay.clear();
        if !answer.has_news && !timed_out {
            conn.park_round = conn.park_round.wrapping_add(1); // the old entries go stale
            self.park(slot, w);
            return;
        }
        metrics::dec(&w.stats.longpolls);
        match crate::http::poll_response(request, answer, &env.http.answer_budget, w.stats) {
            Decision::RespondParts { parts, keep_alive } => conn.answer_poll(parts, keep_alive, env),
            Decision::Respond { response, keep_alive } => conn.answer_poll(vec![response], keep_alive, env),
            _ => {}
        }
        mark_dirty(conn, slot, w.dirty);
    }

    /// Delivers what history still holds of `missing` (and a gap notice for the rest).
    fn fill(&mut self, msg: &Published, missing: Gap, w: &mut Work<'_>) {
        let Some(channel) = self.hub.channel_by_id(msg.channel_id()) else { return };
        let mut replay = std::mem::take(&mut self.replay);
        let gap = channel.replay(missing.from - 1, missing.to, &mut replay);
        if let Some(gap) = gap {
            self.notify_gap(&channel, gap, w);
        }
        for m in replay.drain(..) {
            self.fan_out(&m, w);
        }
        self.replay = replay;
    }

    /// After inbox drops, catches every channel this worker serves up from history.
    fn recover_all(&mut self, w: &mut Work<'_>) {
        let mut replay = std::mem::take(&mut self.replay);
        for channel in self.hub.channels_matching(&Pattern::Prefix("".into())) {
            if self.subs.count(channel.id()) == 0 {
                continue;
            }
            if let Some(gap) = self.channels.recover(&channel, &mut replay) {
                self.notify_gap(&channel, gap, w);
            }
            for m in replay.drain(..) {
                self.fan_out(&m, w);
            }
        }
        self.replay = replay;
    }

    /// Tells every subscriber of a channel about seqs nobody can deliver any more.
    fn notify_gap(&mut self, channel: &Channel, gap: Gap, w: &mut Work<'_>) {
        let notice = Control::Gap { channel: channel.name().to_string(), from: gap.from, to: gap.to };
        for slot in self.subs.subscribers(channel.id(), w.conns) {
            let conn = &mut w.conns[slot as usize];
            conn.sendq.push_unbounded(conn.control_bytes(&notice));
            metrics::inc(&w.stats.gap_notices);
            mark_dirty(conn, slot, w.dirty);
        }
    }

    /// Carries out a connection's operations, in order, answering each.
    pub fn run_ops(&mut self, slot: u32, ops: Vec<Op>, env: &Env<'_>, w: &mut Work<'_>) {
        for op in ops {
            match op {
                Op::Client(ClientOp::Subscribe { id, channels, since }) => {
                    self.subscribe(slot, id, channels, &since, env, w)
                }
                Op::Client(ClientOp::Unsubscribe { id, channels }) => {
                    self.unsubscribe(slot, id, channels, env, w)
                }
                Op::Client(ClientOp::Publish { id, channel, data }) => {
                    let reply = self.client_publish(id, &channel, &data, env);
                    w.conns[slot as usize].reply(&reply, env);
                }
                Op::Park => {
                    metrics::inc(&w.stats.longpolls);
                    self.park(slot, w);
                    break; // what follows waits for the answer
                }
            }
            if !w.conns[slot as usize].is_subscriber() {
                break; // closed meanwhile (e.g. its replies overflowed)
            }
        }
        mark_dirty(&mut w.conns[slot as usize], slot, w.dirty);
    }

    fn client_publish(
        &self,
        id: Option<u64>,
        channel: &str,
        data: &serde_json::value::RawValue,
        env: &Env<'_>,
    ) -> Control {
        if !self.client_publish.iter().any(|p| p.matches(channel)) {
            return error(id, ErrorCode::Forbidden, "publishing to this channel is not allowed for clients");
        }
        let now_us = env.publish.map_or(0, |g| g.now_us);
        match self.hub.publish(channel, Data::Json(data.get().as_bytes()), now_us) {
            Ok(receipt) => {
                metrics::inc(&env.stats.publishes);
                Control::Published { id, channel: channel.to_owned(), seq: receipt.seq }
            }
            Err(e) => error(id, e.code(), e.to_string()),
        }
    }

    /// Forgets a released connection's subscriptions (entries go lazily; the gauge now).
    pub fn release(&mut self, subs: Option<Box<ConnSubs>>, stats: &WorkerStats) {
        if let Some(subs) = subs {
            for _ in 0..subs.count() {
                metrics::dec(&stats.subscriptions);
            }
        }
    }

    /// Drops subscriber and parked entries of closed connections and answered long-polls
    /// (periodically, for quiet channels).
    pub fn sweep(&mut self, conns: &[Conn]) {
        self.subs.sweep(conns);
        for list in &mut self.parked {
            list.retain(|p| is_parked(conns, p));
        }
    }
}

/// Whether a parked entry still belongs to a waiting long-poll.
fn is_parked(conns: &[Conn], p: &Parked) -> bool {
    conns.get(p.slot as usize).is_some_and(|c| {
        c.in_use && c.generation == p.generation && c.phase == Phase::LongPoll && c.park_round == p.round
    })
}

/// A subscribe failure, made into an error reply once the request id is known.
type SubscribeError = Box<dyn Fn(Option<u64>) -> Control>;

fn mark_dirty(conn: &mut Conn, slot: u32, dirty: &mut Vec<u32>) {
    if !conn.sendq.is_empty() && conn.mark_for_flush() {
        dirty.push(slot);
    }
}

mod subscribe;

#[cfg(test)]
mod tests;
