//! One tally type for everything measured (`Tally`), merged one way: from each thread's
//! `ThreadStats` into its worker's tally, from the workers' into the run's.

use serde::{Deserialize, Serialize};

use crate::measure::accepted::{Missed, Ranges};
use crate::measure::loss::LossTotals;
use crate::measure::stats::{Counters, Hist, Hists, merge_hists};

/// Everything measured, by a thread, a worker or the whole run: the one tally, merged one way
/// (`merge`) from threads into workers and from workers into the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tally {
    pub worker: usize,
    pub counters: Counters,
    pub hists: Hists,
    /// Loss totals without the tail (see `seq_max_sum`).
    pub loss: LossTotals,
    /// Subscriber streams tracked (clients x publishers).
    pub streams: u64,
    /// Sum over streams of the highest sequence received: with the publisher's count `p`,
    /// `streams * p - seq_max_sum` messages were lost at the tail.
    pub seq_max_sum: u64,
    /// Messages the publisher(s) of this worker sent.
    pub published: u64,
    /// Of those, the ones the server refused, as ranges of message indices (0-based, see
    /// `channels::route`).
    #[serde(default, skip_serializing_if = "Ranges::is_empty")]
    pub refused: Ranges,
    /// Of those, the ones the server never answered.
    #[serde(default, skip_serializing_if = "Ranges::is_empty")]
    pub unanswered: Ranges,
    /// Which seqs the subscriptions missed; the coordinator settles the refused and unanswered
    /// publishes against it, then drops it.
    #[serde(default, skip_serializing_if = "Missed::is_empty")]
    pub missed: Missed,
    /// The seqs each subscription missed across a `reset` (its history ended with a server
    /// restart): `counters.reset_announced` counts them all; the coordinator takes out the
    /// refused and unanswered publishes among them.
    #[serde(default, skip_serializing_if = "Missed::is_empty")]
    pub reset_missed: Missed,
    /// Deliveries not expected because their publish was refused or unanswered (subscriptions
    /// of a channel x such publishes on it), set by the coordinator; `expected` leaves them out.
    #[serde(default)]
    pub unaccepted_expected: u64,
    /// Subscriber streams per channel index (with `published`, the expected deliveries).
    #[serde(default)]
    pub subscriptions: Vec<u64>,
    /// Channels the publisher spread its messages over (0: unknown, as many as subscribed).
    #[serde(default)]
    pub published_channels: usize,
    /// CPU seconds (user + system) this worker process used; 0 when not a separate process.
    pub cpu_seconds: f64,
    /// The part of `cpu_seconds` spent in the measured phase (from the start command to the end
    /// of publishing).
    pub run_cpu_seconds: f64,
    /// The part of `cpu_seconds` spent in the drain (from the end of publishing to the stop).
    #[serde(default)]
    pub drain_cpu_seconds: f64,
}

impl Tally {
    pub fn merge(&mut self, o: &Tally) {
        self.counters.merge(&o.counters);
        merge_hists(&mut self.hists, &o.hists);
        self.loss.merge(&o.loss);
        self.streams += o.streams;
        self.seq_max_sum += o.seq_max_sum;
        self.published += o.published;
        self.refused.merge(&o.refused);
        self.unanswered.merge(&o.unanswered);
        self.missed.merge(&o.missed);
        self.reset_missed.merge(&o.reset_missed);
        self.unaccepted_expected += o.unaccepted_expected;
        self.published_channels = self.published_channels.max(o.published_channels);
        add_counts(&mut self.subscriptions, &o.subscriptions);
        self.cpu_seconds += o.cpu_seconds;
        self.run_cpu_seconds += o.run_cpu_seconds;
        self.drain_cpu_seconds += o.drain_cpu_seconds;
    }
}

impl Tally {
    /// Deliveries expected: every subscription receives what was published on its channel and
    /// accepted by the server.
    pub fn expected(&self) -> u64 {
        self.expected_published().saturating_sub(self.unaccepted_expected)
    }

    /// Deliveries of everything published, accepted or not.
    pub fn expected_published(&self) -> u64 {
        let channels = self.channels();
        self.subscriptions
            .iter()
            .enumerate()
            .map(|(c, &subs)| subs * crate::measure::channels::published_on(c, self.published, channels))
            .sum()
    }

    /// Channels the publisher spread its messages over.
    pub fn channels(&self) -> usize {
        match self.published_channels {
            0 => self.subscriptions.len().max(1),
            n => n,
        }
    }
}

/// Adds `from` to `into` element by element (growing `into` as needed).
pub fn add_counts(into: &mut Vec<u64>, from: &[u64]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

/// What one thread records. Borrowed briefly, never across an `.await`.
#[derive(Debug, Default)]
pub struct ThreadStats {
    /// What the thread adds to its worker's tally (`Tally::merge`).
    pub tally: Tally,
    /// The scenario's main latency since the last tick.
    pub interval: Hist,
    /// Clients that finished opening (either way).
    pub opened: u64,
    /// `latency`, recorded once per delivered message, kept out of `hists` (no map lookup per
    /// message) until `fold`.
    latency: Hist,
    /// `read_delay`: how long received data waited in the kernel before this load generator
    /// read it (receives stamped by the kernel only), folded like `latency`.
    pub read_delay: Hist,
}

impl ThreadStats {
    /// Records `ns` into histogram `name` (and into the interval histogram when `main`).
    pub fn record(&mut self, name: &str, ns: u64, main: bool) {
        if name == "latency" {
            self.latency.record_ns(ns);
        } else {
            match self.tally.hists.get_mut(name) {
                Some(h) => h.record_ns(ns),
                None => self.tally.hists.entry(name.to_string()).or_default().record_ns(ns),
            }
        }
        if main {
            self.interval.record_ns(ns);
        }
    }

    /// Moves what `record` kept apart into `hists`; call before reading `hists`.
    pub fn fold(&mut self) {
        if !self.latency.is_empty() {
            let latency = std::mem::take(&mut self.latency);
            self.tally.hists.entry("latency".to_string()).or_default().merge(&latency);
        }
        if !self.read_delay.is_empty() {
            let read_delay = std::mem::take(&mut self.read_delay);
            self.tally.hists.entry("read_delay".to_string()).or_default().merge(&read_delay);
        }
    }
}
