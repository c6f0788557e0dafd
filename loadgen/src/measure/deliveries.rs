//! What a subscriber does with each message it receives, whatever the transport: find the
//! load generator's stamp (inside tickcast's envelope or bare), account it per (channel, seq),
//! record its latency (or, for conflated channels, its staleness), and tell the server's
//! control messages (`gap` notices above all) apart from deliveries.
//!
//! WebSocket frames, SSE `data:` fields and the elements of a poll answer's `messages` all end
//! up in `Deliveries::on_message`, so every transport is measured by the same rules.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tickcast_protocol::envelope::Control;

use crate::measure::loss::{Arrival, SeqTracker};
use crate::measure::stamp;
use crate::measure::tally::ThreadStats;

/// Shared by the publisher and every subscriber of a worker in a windowed (`saturate`) run: the
/// publisher may run at most `window` messages ahead of what the subscribers received.
#[derive(Debug)]
pub struct WindowState {
    /// Distinct deliveries (plus messages announced lost by `gap` notices) so far.
    pub delivered: AtomicU64,
    /// Open subscriptions (client x channel).
    pub subscriptions: AtomicU64,
    /// Wake the waiting publisher once `delivered` reaches this (`NOT_WAITING` when it is not
    /// waiting). It lives on a thread of its own: a wakeup that cannot open its window would be a
    /// context switch on the subscribers' core for nothing (in `saturate`, one per batch of
    /// receives: about 15 % of that core).
    pub wake_at: AtomicU64,
    pub notify: tokio::sync::Notify,
}

impl Default for WindowState {
    fn default() -> Self {
        WindowState {
            delivered: AtomicU64::new(0),
            subscriptions: AtomicU64::new(0),
            wake_at: AtomicU64::new(WindowState::NOT_WAITING),
            notify: tokio::sync::Notify::new(),
        }
    }
}

impl WindowState {
    pub const NOT_WAITING: u64 = u64::MAX;

    fn acknowledge(&self, n: u64) {
        // SeqCst with the publisher's store of `wake_at` and its load of `delivered` afterwards:
        // of a delivery and the publisher going to sleep, at least one sees the other.
        let delivered = self.delivered.fetch_add(n, Ordering::SeqCst) + n;
        if delivered >= self.wake_at.load(Ordering::SeqCst) {
            self.notify.notify_one();
        }
    }
}

/// One subscriber's accounting.
pub struct Deliveries {
    /// Subscribed channel indices, and one tracker per channel (same order).
    channels: Vec<usize>,
    trackers: Vec<SeqTracker>,
    staleness: bool,
    window: Option<Arc<WindowState>>,
    /// Where this subscriber's last stamp was (`stamp::parse_near`).
    stamp_at: usize,
    /// Per channel (same order): a `reset` came and no stamp since. The seqs the next stamp
    /// skips were lost with the old history, and the notice announced them.
    reset_pending: Vec<bool>,
    /// Those skipped ranges: (channel position, from, to).
    reset_windows: Vec<(usize, u64, u64)>,
}

/// What one message turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A stamped delivery on one of our channels (first arrival of its seq).
    Delivery,
    /// A stamped message seen before.
    Duplicate,
    /// A `gap` notice announcing this many messages that will never come.
    Gap {
        announced: u64,
    },
    /// A `reset` notice: the subscription's position belonged to a history that is gone.
    Reset,
    Control,
    /// Not the load generator's and not a control message (a server feed, another publisher).
    Unstamped,
    Malformed,
}

impl Deliveries {
    pub fn new(channels: Vec<usize>, staleness: bool, window: Option<Arc<WindowState>>) -> Self {
        let trackers = channels.iter().map(|_| SeqTracker::new()).collect();
        if let Some(w) = &window {
            w.subscriptions.fetch_add(channels.len() as u64, Ordering::Relaxed);
        }
        let reset_pending = vec![false; channels.len()];
        Deliveries {
            channels,
            trackers,
            staleness,
            window,
            stamp_at: 1,
            reset_pending,
            reset_windows: Vec::new(),
        }
    }

    /// Accounts one message that arrived at `arrival_ns` (wall clock).
    pub fn on_message(&mut self, stats: &mut ThreadStats, payload: &[u8], arrival_ns: u64) -> Kind {
        stats.tally.counters.messages_received += 1;
        let kind = match stamp::parse_near(payload, &mut self.stamp_at) {
            Some(s) => self.on_stamp(stats, s, arrival_ns),
            None => classify_other(stats, payload),
        };
        match kind {
            Kind::Reset => self.on_reset(stats),
            Kind::Gap { .. } | Kind::Control => {}
            Kind::Malformed => stats.tally.counters.malformed += 1,
            Kind::Unstamped => stats.tally.counters.messages_unstamped += 1,
            Kind::Delivery | Kind::Duplicate => {}
        }
        if let Kind::Gap { announced } = kind {
            self.acknowledge_gap(announced);
        }
        kind
    }

    /// A gap notice that came on its own (an SSE `gap` event, a poll answer's `gaps`): its JSON
    /// needs `from` and `to`; anything else in it is ignored.
    pub fn on_gap_notice(&mut self, stats: &mut ThreadStats, payload: &[u8]) -> Kind {
        #[derive(serde::Deserialize)]
        struct GapNotice {
            from: u64,
            to: u64,
        }
        match serde_json::from_slice::<GapNotice>(payload) {
            Ok(g) => {
                let announced = count_gap(stats, g.from, g.to);
                self.acknowledge_gap(announced);
                Kind::Gap { announced }
            }
            Err(_) => {
                stats.tally.counters.malformed += 1;
                Kind::Malformed
            }
        }
    }

    /// A reset notice that came on its own (an SSE `reset` event, a poll answer's `resets`).
    pub fn on_reset_notice(&mut self, stats: &mut ThreadStats, payload: &[u8]) -> Kind {
        match serde_json::from_slice::<Control>(payload) {
            Ok(Control::Reset { .. }) => {
                self.on_reset(stats);
                Kind::Reset
            }
            _ => {
                stats.tally.counters.malformed += 1;
                Kind::Malformed
            }
        }
    }

    /// The server restarted (a restart resets every channel of the embedded hub, so every
    /// channel of this subscriber is marked, whichever the notice names): what the next stamp
    /// of each skips was lost with the old history, announced.
    fn on_reset(&mut self, stats: &mut ThreadStats) {
        stats.tally.counters.reset_notices += 1;
        self.reset_pending.fill(true);
    }

    fn acknowledge_gap(&self, announced: u64) {
        if let Some(w) = &self.window {
            // Announced loss will never arrive: it must not hold the window shut.
            w.acknowledge(announced);
        }
    }

    fn on_stamp(&mut self, stats: &mut ThreadStats, s: stamp::Stamp, arrival_ns: u64) -> Kind {
        let Some(i) = self.channels.iter().position(|&c| c as u64 == s.src) else {
            return Kind::Unstamped;
        };
        if s.seq == 0 {
            return Kind::Malformed;
        }
        let before = self.trackers[i].max();
        let arrival = self.trackers[i].record(s.seq);
        if std::mem::take(&mut self.reset_pending[i]) && s.seq > before + 1 {
            self.reset_windows.push((i, before + 1, s.seq - 1));
        }
        if arrival == Arrival::Duplicate {
            return Kind::Duplicate;
        }
        if self.staleness {
            if let Arrival::AfterGap { skipped } = arrival {
                stats.tally.counters.superseded += skipped;
            }
            stats.record("staleness", arrival_ns.saturating_sub(s.t_ns), true);
        } else {
            stats.record("latency", arrival_ns.saturating_sub(s.t_ns), true);
        }
        if let Some(w) = &self.window {
            w.acknowledge(1);
        }
        Kind::Delivery
    }

    /// Adds this subscriber's per-channel totals to the thread's.
    pub fn finish(self, stats: &mut ThreadStats) {
        // What each subscription skipped across a reset; with no stamp since, everything after
        // its last one (the coordinator knows how much was published).
        for &(i, from, to) in &self.reset_windows {
            stats.tally.reset_missed.add_range(self.channels[i], from, to);
        }
        for (i, tracker) in self.trackers.iter().enumerate() {
            if self.reset_pending[i] {
                stats.tally.reset_missed.add_tail(self.channels[i], tracker.max() + 1);
            }
        }
        for (c, tracker) in self.channels.iter().zip(&self.trackers) {
            // The tail is settled by the coordinator, which knows how many were published.
            let mut totals = tracker.finish(0);
            if self.staleness {
                // Conflation skips values on purpose: superseded (counted on arrival), not lost.
                totals.missing = 0;
                totals.gaps = 0;
                totals.reordered = 0;
            }
            stats.tally.loss.merge(&totals);
            stats.tally.missed.add(*c, tracker);
            stats.tally.streams += 1;
            stats.tally.seq_max_sum += tracker.max();
            if stats.tally.subscriptions.len() <= *c {
                stats.tally.subscriptions.resize(c + 1, 0);
            }
            stats.tally.subscriptions[*c] += 1;
        }
        if let Some(w) = &self.window {
            w.subscriptions.fetch_sub(self.channels.len() as u64, Ordering::Relaxed);
        }
    }
}

/// A message without a stamp: a control message (tagged by `type`), something else, or junk.
fn classify_other(stats: &mut ThreadStats, payload: &[u8]) -> Kind {
    if !payload.windows(6).any(|w| w == b"\"type\"") {
        return Kind::Unstamped;
    }
    match serde_json::from_slice::<Control>(payload) {
        Ok(Control::Gap { from, to, .. }) => Kind::Gap { announced: count_gap(stats, from, to) },
        Ok(Control::Reset { .. }) => Kind::Reset,
        Ok(_) => {
            stats.tally.counters.control_messages += 1;
            Kind::Control
        }
        Err(_) => Kind::Malformed,
    }
}

/// Counts one gap notice for `from..=to`; returns how many messages it announced.
fn count_gap(stats: &mut ThreadStats, from: u64, to: u64) -> u64 {
    let n = if to >= from { (to - from).saturating_add(1) } else { 0 };
    stats.tally.counters.gap_notices += 1;
    stats.tally.counters.gap_announced += n;
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::stamp::Stamp;

    fn stamped(channel: &str, seq: u64, src: u64, t_ns: u64) -> Vec<u8> {
        let mut data = Vec::new();
        stamp::write(&mut data, Stamp { seq, t_ns, src }, 64);
        let mut out = format!(r#"{{"channel":"{channel}","seq":{seq},"ts":1,"data":"#).into_bytes();
        out.extend_from_slice(&data);
        out.push(b'}');
        out
    }

    #[test]
    fn per_channel_accounting_and_gap_notices() {
        let mut stats = ThreadStats::default();
        let mut d = Deliveries::new(vec![2, 5], false, None);
        assert_eq!(d.on_message(&mut stats, &stamped("c2", 1, 2, 100), 150), Kind::Delivery);
        assert_eq!(d.on_message(&mut stats, &stamped("c5", 1, 5, 100), 180), Kind::Delivery);
        assert_eq!(d.on_message(&mut stats, &stamped("c5", 3, 5, 100), 180), Kind::Delivery);
        assert_eq!(d.on_message(&mut stats, &stamped("c5", 3, 5, 100), 180), Kind::Duplicate);
        // A channel this client did not subscribe to.
        assert_eq!(d.on_message(&mut stats, &stamped("c1", 1, 1, 100), 180), Kind::Unstamped);
        let gap = br#"{"type":"gap","channel":"c5","from":2,"to":2}"#;
        assert_eq!(d.on_message(&mut stats, gap, 200), Kind::Gap { announced: 1 });
        let sub = br#"{"type":"subscribed","channels":["c2"],"seq":{"c2":0}}"#;
        assert_eq!(d.on_message(&mut stats, sub, 200), Kind::Control);
        assert_eq!(d.on_message(&mut stats, br#"{"type":"gap","from":"x"}"#, 200), Kind::Malformed);
        assert_eq!(d.on_message(&mut stats, b"\x00\xffjunk", 200), Kind::Unstamped);
        d.finish(&mut stats);
        let c = stats.tally.counters;
        assert_eq!((c.gap_notices, c.gap_announced, c.control_messages, c.malformed), (1, 1, 1, 1));
        assert_eq!(stats.tally.loss.delivered, 3);
        assert_eq!(stats.tally.loss.duplicates, 1);
        assert_eq!(stats.tally.loss.missing, 1);
        assert_eq!(stats.tally.streams, 2);
        assert_eq!(stats.tally.seq_max_sum, 4);
        assert_eq!(stats.tally.subscriptions, vec![0, 0, 1, 0, 0, 1]);
        stats.fold();
        assert_eq!(stats.tally.hists["latency"].len(), 3);
    }

    #[test]
    fn what_a_reset_skips_is_announced_and_refused_publishes_are_taken_out() {
        use crate::measure::accepted::{Ranges, unaccepted_in};
        let mut stats = ThreadStats::default();
        // Channel 0: 1 and 2 arrive, the server restarts, 6 is the first after the reset.
        // Channel 1: 1 arrives, the server restarts, nothing after (a tail).
        let mut d = Deliveries::new(vec![0, 1], false, None);
        d.on_message(&mut stats, &stamped("a", 1, 0, 10), 20);
        d.on_message(&mut stats, &stamped("a", 2, 0, 10), 20);
        d.on_message(&mut stats, &stamped("b", 1, 1, 10), 20);
        let reset = br#"{"type":"reset","channel":"a","epoch":"E2","seq":0}"#;
        assert_eq!(d.on_reset_notice(&mut stats, reset), Kind::Reset);
        assert_eq!(d.on_message(&mut stats, reset, 30), Kind::Reset, "over WebSocket too");
        assert_eq!(d.on_message(&mut stats, &stamped("a", 6, 0, 10), 40), Kind::Delivery);
        assert_eq!(
            d.on_message(&mut stats, &stamped("a", 8, 0, 10), 40),
            Kind::Delivery,
            "not after a reset"
        );
        assert_eq!(d.on_reset_notice(&mut stats, b"{}"), Kind::Malformed);
        d.finish(&mut stats);
        assert_eq!(stats.tally.counters.reset_notices, 2);
        // The publisher got to seq 8 on a and 4 on b: a skipped 3..=5 across the reset (and 7
        // later, not announced), b everything after 1.
        let last = |c: usize| [8, 4][c];
        assert_eq!(stats.tally.reset_missed.total(last), 3 + 3);
        // Message indices (2 channels): a's seq 4 is index 6, b's seq 3 is index 5; both refused.
        let mut refused = Ranges::default();
        refused.insert(6);
        refused.insert(5);
        assert_eq!(unaccepted_in(&[&refused], 2, &stats.tally.reset_missed), 2);
    }

    #[test]
    fn deliveries_wake_the_publisher_only_at_its_threshold() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        // Whether a wakeup is pending (a permit `notify_one` left for the next waiter).
        let woken = |w: &WindowState| {
            rt.block_on(async { tokio::time::timeout(std::time::Duration::ZERO, w.notify.notified()).await })
                .is_ok()
        };
        let w = WindowState::default();
        w.acknowledge(10);
        assert!(!woken(&w), "nobody waits: no wakeup");
        w.wake_at.store(15, Ordering::SeqCst);
        w.acknowledge(4);
        assert!(!woken(&w), "14 of 15: the window cannot open yet");
        w.acknowledge(1);
        assert!(woken(&w), "15: the window opens");
    }

    #[test]
    fn staleness_counts_superseded_values_not_loss() {
        let mut stats = ThreadStats::default();
        let window = Arc::new(WindowState::default());
        let mut d = Deliveries::new(vec![0], true, Some(window.clone()));
        d.on_message(&mut stats, &stamped("a", 1, 0, 10), 20);
        d.on_message(&mut stats, &stamped("a", 4, 0, 10), 30);
        assert_eq!(window.delivered.load(Ordering::Relaxed), 2);
        d.finish(&mut stats);
        assert_eq!(stats.tally.counters.superseded, 2);
        assert_eq!(stats.tally.loss.lost(), 0);
        stats.fold();
        assert_eq!(stats.tally.hists["staleness"].len(), 2);
        assert_eq!(window.subscriptions.load(Ordering::Relaxed), 0);
    }
}
