//! Counters and HDR histograms: recorded per thread, merged per process, serialised (HdrHistogram
//! V2, base64) between processes, merged again by the coordinator or by `merge`.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

/// Largest value a histogram holds: one hour in nanoseconds. Larger values saturate.
pub const HIST_MAX_NS: u64 = 3_600_000_000_000;
/// Significant decimal digits kept.
pub const HIST_SIGFIG: u8 = 3;

/// A latency histogram in nanoseconds.
#[derive(Debug, Clone)]
pub struct Hist(pub Histogram<u64>);

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl Hist {
    pub fn new() -> Self {
        Hist(Histogram::new_with_bounds(1, HIST_MAX_NS, HIST_SIGFIG).expect("valid bounds"))
    }

    pub fn record_ns(&mut self, ns: u64) {
        self.0.saturating_record(ns.clamp(1, HIST_MAX_NS));
    }

    pub fn merge(&mut self, other: &Hist) {
        // Same bounds everywhere, so addition cannot fail; saturate rather than panic if a
        // foreign file disagrees.
        if self.0.add(&other.0).is_err() {
            for v in other.0.iter_recorded() {
                self.0.saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value at `quantile` (0..=1), in nanoseconds.
    pub fn at(&self, quantile: f64) -> u64 {
        self.0.value_at_quantile(quantile)
    }

    pub fn to_base64(&self) -> String {
        let mut bytes = Vec::new();
        V2Serializer::new().serialize(&self.0, &mut bytes).expect("serialising into a Vec cannot fail");
        STANDARD.encode(bytes)
    }

    pub fn from_base64(text: &str) -> anyhow::Result<Self> {
        let bytes = STANDARD.decode(text)?;
        let h: Histogram<u64> = Deserializer::new().deserialize(&mut bytes.as_slice())?;
        let mut out = Hist::new();
        out.merge(&Hist(h));
        Ok(out)
    }
}

impl Serialize for Hist {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for Hist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Hist::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

/// Named histograms: `connect` (TCP connect), `handshake` (upgrade request to 101), `rtt` (echo
/// round trip from the scheduled send), `latency` (delivery: receive minus scheduled publish).
pub type Hists = BTreeMap<String, Hist>;

pub fn merge_hists(into: &mut Hists, from: &Hists) {
    for (name, h) in from {
        into.entry(name.clone()).or_default().merge(h);
    }
}

/// Event counters, all monotonic, all summed on merge.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    pub connect_attempts: u64,
    pub connected: u64,
    pub connect_failed: u64,
    pub handshake_failed: u64,
    /// Connections that ended before the run did (server close, reset, protocol error).
    pub disconnected: u64,
    pub messages_sent: u64,
    pub messages_received: u64,
    /// Received messages that carried no load-generator stamp (e.g. server feeds, notices).
    pub messages_unstamped: u64,
    /// Receives of the WebSocket ring with `--arrival kernel` that carried no kernel timestamp
    /// (the kernel switches stamping on a moment after the first socket asks): their messages
    /// are dated by the load generator's clock.
    pub receives_unstamped: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub pings_received: u64,
    pub publish_ok: u64,
    /// Publishes that failed: refused, unanswered, or the publisher could not connect.
    pub publish_failed: u64,
    /// Publishes the server refused (a non-2xx answer, a WebSocket `error`).
    pub publish_refused: u64,
    /// Publishes sent and never answered (by the end of the run).
    pub publish_unanswered: u64,
    /// Sends that left later than scheduled by more than 1 ms (open-loop schedule lag).
    pub sends_late: u64,
    /// The server's `gap` notices, and the messages they announced as never coming.
    pub gap_notices: u64,
    pub gap_announced: u64,
    /// The server's `reset` notices (a position of another epoch: the server restarted), and
    /// the messages lost with the old history that they announced (refused publishes apart;
    /// settled by the coordinator).
    pub reset_notices: u64,
    pub reset_announced: u64,
    /// Other control messages received (`subscribed`, `published`, `error`, ...).
    pub control_messages: u64,
    /// Answers or events that could not be parsed (bad HTTP, JSON, SSE): counted, skipped.
    pub malformed: u64,
    /// HTTP requests sent by polling transports (poll, longpoll; SSE (re)connects).
    pub requests: u64,
    /// Poll/longpoll answers with no message in them.
    pub empty_responses: u64,
    /// Polls sent later than their due time (the previous answer was still outstanding).
    pub polls_late: u64,
    /// SSE streams re-opened with `Last-Event-ID` after the server ended them.
    pub reconnects: u64,
    /// Bytes the publisher wrote (requests or frames), apart from the subscribers' `bytes_sent`.
    pub bytes_published: u64,
    /// Conflated channels (`--staleness`): values skipped because a newer one superseded them.
    pub superseded: u64,
}

impl Counters {
    pub fn merge(&mut self, o: &Counters) {
        self.connect_attempts += o.connect_attempts;
        self.connected += o.connected;
        self.connect_failed += o.connect_failed;
        self.handshake_failed += o.handshake_failed;
        self.disconnected += o.disconnected;
        self.messages_sent += o.messages_sent;
        self.messages_received += o.messages_received;
        self.messages_unstamped += o.messages_unstamped;
        self.receives_unstamped += o.receives_unstamped;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        self.pings_received += o.pings_received;
        self.publish_ok += o.publish_ok;
        self.publish_failed += o.publish_failed;
        self.publish_refused += o.publish_refused;
        self.publish_unanswered += o.publish_unanswered;
        self.sends_late += o.sends_late;
        self.gap_notices += o.gap_notices;
        self.gap_announced += o.gap_announced;
        self.reset_notices += o.reset_notices;
        self.reset_announced += o.reset_announced;
        self.control_messages += o.control_messages;
        self.malformed += o.malformed;
        self.requests += o.requests;
        self.empty_responses += o.empty_responses;
        self.polls_late += o.polls_late;
        self.reconnects += o.reconnects;
        self.superseded += o.superseded;
        self.bytes_published += o.bytes_published;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_merge_and_serialisation() {
        let mut a = Hist::new();
        let mut b = Hist::new();
        for v in 1..=1000u64 {
            a.record_ns(v * 1000);
            b.record_ns(v * 1_000_000);
        }
        let b = Hist::from_base64(&b.to_base64()).unwrap();
        assert_eq!(b.len(), 1000);
        a.merge(&b);
        assert_eq!(a.len(), 2000);
        let p50 = a.at(0.5);
        assert!((990_000..=1_010_000).contains(&p50), "p50 {p50}");
        assert!(a.at(1.0) >= 999_000_000);
        let json = serde_json::to_string(&a).unwrap();
        let back: Hist = serde_json::from_str(&json).unwrap();
        assert_eq!(back.len(), 2000);
        assert_eq!(back.at(0.99), a.at(0.99));
    }

    #[test]
    fn saturates_instead_of_failing() {
        let mut h = Hist::new();
        h.record_ns(0);
        h.record_ns(u64::MAX);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn named_merge() {
        let mut into = Hists::new();
        let mut from = Hists::new();
        from.entry("rtt".into()).or_default().record_ns(5);
        merge_hists(&mut into, &from);
        merge_hists(&mut into, &from);
        assert_eq!(into["rtt"].len(), 2);
    }
}
