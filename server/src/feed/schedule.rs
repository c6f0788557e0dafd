//! A fixed publish schedule on virtual time (nanoseconds since the feed started).

/// Message `k` (0-based) is due at `k / rate` seconds. Computed from `k`, never accumulated,
/// so rounding cannot drift.
///
/// A feed thread that falls behind (a stalled machine) catches up in batches of at most
/// [`Schedule::max_batch`] per call, and if it is more than [`Schedule::MAX_LAG_NS`] behind
/// it skips the backlog: a burst of stale prices helps nobody. Skipped messages are counted.
#[derive(Debug, Clone)]
pub struct Schedule {
    interval_ns: f64,
    /// Messages taken so far: the next one is `k`.
    k: u64,
    max_batch: u64,
    skipped: u64,
}

impl Schedule {
    /// How far behind the schedule may fall before the backlog is skipped.
    pub const MAX_LAG_NS: u64 = 1_000_000_000;

    /// A schedule of `rate` messages per second (`rate` > 0, as `FeedSpec` guarantees).
    pub fn new(rate: f64) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 { rate } else { 1.0 };
        // A batch is 100 ms worth of messages: catching up never floods subscribers with
        // more than that at once.
        let max_batch = ((rate / 10.0).ceil() as u64).max(1);
        Self { interval_ns: 1e9 / rate, k: 0, max_batch, skipped: 0 }
    }

    /// When message `k` is due.
    fn due_ns(&self, k: u64) -> u64 {
        (k as f64 * self.interval_ns) as u64
    }

    /// When the next message is due.
    pub fn next_due_ns(&self) -> u64 {
        self.due_ns(self.k)
    }

    /// How many messages to publish now (at most `max_batch`); advances the schedule.
    pub fn take_due(&mut self, now_ns: u64) -> u64 {
        let mut n = 0;
        while n < self.max_batch && self.next_due_ns() <= now_ns {
            self.k += 1;
            n += 1;
        }
        if now_ns.saturating_sub(self.next_due_ns()) > Self::MAX_LAG_NS {
            // Jump to the first message due after `now`.
            let target = (now_ns as f64 / self.interval_ns).floor() as u64 + 1;
            self.skipped += target.saturating_sub(self.k);
            self.k = target.max(self.k);
        }
        n
    }

    /// Most messages one call of `take_due` returns.
    pub fn max_batch(&self) -> u64 {
        self.max_batch
    }

    /// Messages skipped because the feed fell too far behind.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}
