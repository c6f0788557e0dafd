//! Per-worker counters, written only by their own worker (plain load + store, no locked
//! read-modify-write on the hot path) and summed when `/metrics` is scraped.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// One worker's counters, padded to its own cache lines so workers never share a line.
#[repr(align(128))]
#[derive(Default)]
pub struct WorkerStats {
    /// Open connections (all phases), a gauge.
    pub connections: AtomicU64,
    /// Connections upgraded to WebSocket and still open, a gauge.
    pub websockets: AtomicU64,
    /// Open SSE streams, a gauge.
    pub sse_streams: AtomicU64,
    /// Long-polls parked waiting for news, a gauge.
    pub longpolls: AtomicU64,
    pub accepted: AtomicU64,
    /// Refused with 503 because of `--max-connections`.
    pub refused: AtomicU64,
    pub accept_errors: AtomicU64,
    pub closed: AtomicU64,
    pub handshakes: AtomicU64,
    pub handshake_failures: AtomicU64,
    pub http_requests: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub slow_consumer_closes: AtomicU64,
    /// Times a connection stopped reading because its replies backed up (echo backpressure).
    pub read_pauses: AtomicU64,
    pub handshake_timeouts: AtomicU64,
    pub idle_timeouts: AtomicU64,
    pub close_timeouts: AtomicU64,
    pub pings_sent: AtomicU64,
    pub messages_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub sends: AtomicU64,
    pub recv_rearms: AtomicU64,
    pub loop_turns: AtomicU64,
    /// Messages accepted from this worker's publishers (HTTP and WebSocket).
    pub publishes: AtomicU64,
    /// Broadcast frames offered to subscribers' queues.
    pub deliveries: AtomicU64,
    /// Messages dropped from slow consumers' queues (drop-oldest), each reported in a gap notice.
    pub dropped_messages: AtomicU64,
    pub gap_notices: AtomicU64,
    /// Reset notices sent: a client's position named another epoch (a restart).
    pub reset_notices: AtomicU64,
    /// Poll answers refused with 503: the worker's answer budget was full.
    pub answers_refused: AtomicU64,
    /// Older queued messages replaced by newer ones of the same channel (conflate).
    pub conflated_messages: AtomicU64,
    /// Channel subscriptions (including prefix ones) held by this worker's connections.
    pub subscriptions: AtomicU64,
    /// Messages this worker's inbox could not take (recovered from history).
    pub inbox_dropped: AtomicU64,
}

/// Adds to a counter owned by the calling worker. Single writer, so a plain load and store is
/// exact, and cheaper than a locked add.
#[inline]
pub fn add(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

#[inline]
pub fn inc(counter: &AtomicU64) {
    add(counter, 1);
}

#[inline]
pub fn dec(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed).saturating_sub(1), Ordering::Relaxed);
}

type Field = fn(&WorkerStats) -> &AtomicU64;

/// (name, type, help, field): the single table `/metrics` is rendered from.
const METRICS: &[(&str, &str, &str, Field)] = &[
    ("tickcast_connections", "gauge", "Open connections", |s| &s.connections),
    ("tickcast_websocket_connections", "gauge", "Open WebSocket connections", |s| &s.websockets),
    ("tickcast_sse_connections", "gauge", "Open SSE streams", |s| &s.sse_streams),
    ("tickcast_longpolls_parked", "gauge", "Long-polls waiting for news", |s| &s.longpolls),
    ("tickcast_accepted_total", "counter", "Connections accepted", |s| &s.accepted),
    ("tickcast_refused_total", "counter", "Connections refused with 503 (max connections)", |s| &s.refused),
    ("tickcast_accept_errors_total", "counter", "Failed accepts", |s| &s.accept_errors),
    ("tickcast_closed_total", "counter", "Connections closed", |s| &s.closed),
    ("tickcast_handshakes_total", "counter", "WebSocket handshakes completed", |s| &s.handshakes),
    ("tickcast_handshake_failures_total", "counter", "Rejected handshakes and bad requests", |s| {
        &s.handshake_failures
    }),
    ("tickcast_http_requests_total", "counter", "Plain HTTP requests served", |s| &s.http_requests),
    ("tickcast_protocol_errors_total", "counter", "Connections failed for a protocol error", |s| {
        &s.protocol_errors
    }),
    ("tickcast_slow_consumer_closes_total", "counter", "Connections closed over the send-queue limit", |s| {
        &s.slow_consumer_closes
    }),
    (
        "tickcast_read_pauses_total",
        "counter",
        "Reads paused until queued replies drained (backpressure)",
        |s| &s.read_pauses,
    ),
    ("tickcast_handshake_timeouts_total", "counter", "Connections dropped for a slow handshake", |s| {
        &s.handshake_timeouts
    }),
    ("tickcast_idle_timeouts_total", "counter", "Connections dropped for an unanswered ping", |s| {
        &s.idle_timeouts
    }),
    ("tickcast_close_timeouts_total", "counter", "Connections dropped for an unanswered close", |s| {
        &s.close_timeouts
    }),
    ("tickcast_pings_sent_total", "counter", "Server pings sent to idle clients", |s| &s.pings_sent),
    ("tickcast_messages_received_total", "counter", "WebSocket messages received", |s| &s.messages_in),
    ("tickcast_frames_sent_total", "counter", "Frames queued for sending", |s| &s.frames_out),
    ("tickcast_received_bytes_total", "counter", "Bytes received", |s| &s.bytes_in),
    ("tickcast_sent_bytes_total", "counter", "Bytes sent", |s| &s.bytes_out),
    ("tickcast_sends_total", "counter", "Send operations completed", |s| &s.sends),
    ("tickcast_recv_rearms_total", "counter", "Multishot receives re-armed (buffer ring ran dry)", |s| {
        &s.recv_rearms
    }),
    (
        "tickcast_publishes_total",
        "counter",
        "Messages published through this worker (HTTP and WebSocket)",
        |s| &s.publishes,
    ),
    (
        "tickcast_deliveries_total",
        "counter",
        "Messages delivered: queued to WebSocket/SSE subscribers, or in poll answers",
        |s| &s.deliveries,
    ),
    (
        "tickcast_dropped_messages_total",
        "counter",
        "Messages dropped from slow consumers (drop-oldest)",
        |s| &s.dropped_messages,
    ),
    ("tickcast_gap_notices_total", "counter", "Gap notices sent", |s| &s.gap_notices),
    (
        "tickcast_answers_refused_total",
        "counter",
        "Poll answers refused with 503 (the worker's --answer-budget was full)",
        |s| &s.answers_refused,
    ),
    (
        "tickcast_reset_notices_total",
        "counter",
        "Reset notices sent (a client's position belonged to another epoch)",
        |s| &s.reset_notices,
    ),
    (
        "tickcast_conflated_messages_total",
        "counter",
        "Queued messages superseded by newer ones (conflate)",
        |s| &s.conflated_messages,
    ),
    ("tickcast_subscriptions", "gauge", "Channel subscriptions held", |s| &s.subscriptions),
    (
        "tickcast_inbox_dropped_total",
        "counter",
        "Messages the worker inbox could not take (recovered)",
        |s| &s.inbox_dropped,
    ),
    ("tickcast_loop_turns_total", "counter", "Event loop turns", |s| &s.loop_turns),
];

/// One scrape's values, owned, so `prometheus-client` can encode them with one sample per
/// worker (label `worker`).
#[derive(Debug)]
struct Snapshot {
    rows: Vec<(&'static str, &'static str, &'static str, Vec<u64>)>,
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, kind, help, values) in &self.rows {
            if *kind == "counter" {
                // prometheus-client appends `_total` to counter names itself.
                let base = name.strip_suffix("_total").unwrap_or(name);
                let mut metric = encoder.encode_descriptor(base, help, None, MetricType::Counter)?;
                for (i, v) in values.iter().enumerate() {
                    let labels = [("worker", i.to_string())];
                    ConstCounter::new(*v).encode(metric.encode_family(&labels)?)?;
                }
            } else {
                let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                for (i, v) in values.iter().enumerate() {
                    let labels = [("worker", i.to_string())];
                    ConstGauge::new(i64::try_from(*v).unwrap_or(i64::MAX))
                        .encode(metric.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

/// Renders every worker's counters in the Prometheus text format, one sample per worker.
pub fn render(workers: &[WorkerStats]) -> String {
    let rows = METRICS
        .iter()
        .map(|(name, kind, help, field)| {
            (*name, *kind, *help, workers.iter().map(|w| field(w).load(Ordering::Relaxed)).collect())
        })
        .collect();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot { rows }));
    let mut out = String::with_capacity(METRICS.len() * (96 + 48 * workers.len()));
    // Writing into a String cannot fail.
    let _ = text::encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_worker() {
        let workers = [WorkerStats::default(), WorkerStats::default()];
        inc(&workers[1].accepted);
        add(&workers[1].accepted, 2);
        let text = render(&workers);
        assert!(text.contains("tickcast_accepted_total{worker=\"0\"} 0\n"));
        assert!(text.contains("tickcast_accepted_total{worker=\"1\"} 3\n"));
        assert!(text.contains("# TYPE tickcast_connections gauge\n"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn dec_saturates() {
        let c = AtomicU64::new(0);
        dec(&c);
        assert_eq!(c.load(Ordering::Relaxed), 0);
    }
}
