//! Per-worker counters, written only by their own worker (plain load + store, no locked
//! read-modify-write on the hot path) and summed when `/metrics` is scraped.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// From a message's commit in the hub to the flush that handed this worker's frames of it
    /// to the kernel.
    pub fanout_latency: Histogram,
}

/// Upper bounds (µs) of the latency histograms' buckets: 100 µs to 5 s, about 2.5x apart.
pub const LATENCY_BUCKETS_US: [u64; 12] =
    [100, 250, 1_000, 2_500, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 5_000_000];

/// A latency histogram with fixed buckets, written by one worker (plain stores, no allocation)
/// and read on scrape.
#[derive(Default)]
pub struct Histogram {
    /// Per bucket of `LATENCY_BUCKETS_US`, then one for larger values (not cumulative).
    counts: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one value in µs.
    #[inline]
    pub fn record(&self, us: u64) {
        let bucket = LATENCY_BUCKETS_US.iter().position(|&le| us <= le).unwrap_or(LATENCY_BUCKETS_US.len());
        add(&self.counts[bucket], 1);
        add(&self.sum_us, us);
    }
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

/// The exposition format of a scrape: Prometheus's classic text format unless the scraper
/// asks for OpenMetrics (`Accept: application/openmetrics-text`, as Prometheus itself does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: counters typed by their `_total` name, no `# EOF`.
    Classic,
    /// `application/openmetrics-text; version=1.0.0`: counter families without `_total`,
    /// info metrics, and `# EOF` at the end.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for (`None`: classic).
    pub fn negotiate(accept: Option<&[u8]>) -> Self {
        let asks = accept.is_some_and(|a| {
            a.split(|&b| b == b',').any(|item| {
                let item = String::from_utf8_lossy(item);
                let mut parts = item.split(';').map(str::trim);
                let wanted =
                    parts.next().is_some_and(|t| t.eq_ignore_ascii_case("application/openmetrics-text"));
                // `q=0` means "not acceptable".
                wanted && !parts.any(|p| p.replace(' ', "") == "q=0")
            })
        });
        if asks { Self::OpenMetrics } else { Self::Classic }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Classic => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The process as the standard `process_*` metrics describe it, sampled at scrape time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Process {
    pub resident_memory_bytes: u64,
    pub cpu_seconds: f64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub start_time_seconds: f64,
}

/// The build: `tickcast_build_info{version, commit, io}`.
#[derive(Clone, Copy, Debug)]
pub struct Build {
    pub version: &'static str,
    pub commit: &'static str,
    pub io: &'static str,
}

impl Build {
    /// This binary (`commit` from the build, `unknown` outside a git checkout).
    pub fn current() -> Self {
        Self { version: env!("CARGO_PKG_VERSION"), commit: env!("TICKCAST_COMMIT"), io: "uring" }
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a family.
fn family(out: &mut String, format: Format, name: &str, kind: &str, help: &str) {
    // OpenMetrics names a counter family without its `_total` suffix; the classic format
    // types the sample's own name.
    let family = match (format, kind) {
        (Format::OpenMetrics, "counter") => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    };
    let _ = writeln!(out, "# HELP {family} {help}");
    let _ = writeln!(out, "# TYPE {family} {kind}");
}

/// Writes one histogram family, one series per worker (label `worker`), in seconds.
fn histogram<'a>(
    out: &mut String,
    format: Format,
    name: &str,
    help: &str,
    workers: impl Iterator<Item = &'a Histogram>,
) {
    family(out, format, name, "histogram", help);
    for (i, h) in workers.enumerate() {
        let mut cumulative = 0;
        for (b, count) in h.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = LATENCY_BUCKETS_US
                .get(b)
                .map_or_else(|| "+Inf".to_owned(), |&us| (us as f64 / 1e6).to_string());
            let _ = writeln!(out, "{name}_bucket{{worker=\"{i}\",le=\"{le}\"}} {cumulative}");
        }
        let sum = h.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{worker=\"{i}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{worker=\"{i}\"}} {cumulative}");
    }
}

/// Renders every worker's counters (one sample per worker, label `worker`), the hub's channels
/// and history, the process and the build, in `format`.
pub fn render(
    workers: &[WorkerStats],
    hub: &crate::hub::HubStats,
    process: &Process,
    build: &Build,
    format: Format,
) -> String {
    let mut out = String::with_capacity(METRICS.len() * (96 + 48 * workers.len()) + 1024);
    for (name, kind, help, field) in METRICS {
        family(&mut out, format, name, kind, help);
        for (i, w) in workers.iter().enumerate() {
            let _ = writeln!(out, "{name}{{worker=\"{i}\"}} {}", field(w).load(Ordering::Relaxed));
        }
    }
    histogram(
        &mut out,
        format,
        "tickcast_fanout_latency_seconds",
        "From a message's commit in the hub to the flush handing this worker's frames of it to the kernel",
        workers.iter().map(|w| &w.fanout_latency),
    );
    let hub_rows: [(&str, &str, &str, u64); 5] = [
        ("tickcast_channels", "gauge", "Channels that exist (all workers share them)", hub.channels as u64),
        (
            "tickcast_history_messages",
            "gauge",
            "Messages held by the channels' history rings",
            hub.history_messages as u64,
        ),
        (
            "tickcast_history_bytes",
            "gauge",
            "Bytes held by the channels' history rings",
            hub.history_bytes as u64,
        ),
        (
            "tickcast_channel_publishes_total",
            "counter",
            "Messages sequenced, over all channels",
            hub.publishes,
        ),
        ("tickcast_inbox_depth", "gauge", "Messages waiting in the workers' inboxes", hub.inbox_depth as u64),
    ];
    for (name, kind, help, value) in hub_rows {
        family(&mut out, format, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    let p = process;
    let process_rows: [(&str, &str, &str, f64); 5] = [
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            p.resident_memory_bytes as f64,
        ),
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            p.cpu_seconds,
        ),
        ("process_open_fds", "gauge", "Number of open file descriptors.", p.open_fds as f64),
        ("process_max_fds", "gauge", "Maximum number of open file descriptors.", p.max_fds as f64),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            p.start_time_seconds,
        ),
    ];
    for (name, kind, help, value) in process_rows {
        family(&mut out, format, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    let kind = if format == Format::OpenMetrics { "info" } else { "gauge" };
    let name = if format == Format::OpenMetrics { "tickcast_build" } else { "tickcast_build_info" };
    let _ = writeln!(out, "# HELP {name} The running build: version, git commit, I/O backend.");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(
        out,
        "tickcast_build_info{{version=\"{}\",commit=\"{}\",io=\"{}\"}} 1",
        build.version, build.commit, build.io
    );
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build() -> Build {
        Build { version: "1.2.3", commit: "abc", io: "uring" }
    }

    #[test]
    fn renders_each_worker_in_either_format() {
        let workers = [WorkerStats::default(), WorkerStats::default()];
        inc(&workers[1].accepted);
        add(&workers[1].accepted, 2);
        let process = Process { resident_memory_bytes: 4096, cpu_seconds: 1.5, ..Process::default() };
        let hub = crate::hub::HubStats { channels: 3, ..Default::default() };
        let text = render(&workers, &hub, &process, &build(), Format::Classic);
        assert!(text.contains("tickcast_accepted_total{worker=\"0\"} 0\n"));
        assert!(text.contains("tickcast_accepted_total{worker=\"1\"} 3\n"));
        assert!(text.contains("# TYPE tickcast_accepted_total counter\n"), "{text}");
        assert!(text.contains("# TYPE tickcast_connections gauge\n"), "{text}");
        assert!(text.contains("process_resident_memory_bytes 4096\n"));
        assert!(text.contains("process_cpu_seconds_total 1.5\n"));
        assert!(text.contains("# TYPE tickcast_build_info gauge\n"));
        assert!(text.contains("tickcast_build_info{version=\"1.2.3\",commit=\"abc\",io=\"uring\"} 1\n"));
        assert!(!text.contains("# EOF"));
        assert!(text.contains("tickcast_channels 3\n"));
        let om = render(&workers, &hub, &process, &build(), Format::OpenMetrics);
        assert!(om.contains("# TYPE tickcast_accepted counter\n"), "{om}");
        assert!(om.contains("tickcast_accepted_total{worker=\"1\"} 3\n"));
        assert!(om.contains("# TYPE process_cpu_seconds counter\n"));
        assert!(om.contains("# TYPE tickcast_build info\n"));
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn every_metric_is_documented() {
        let doc = include_str!("../../docs/metrics.md");
        let text =
            render(&[], &crate::hub::HubStats::default(), &Process::default(), &build(), Format::Classic);
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap_or_default();
            assert!(doc.contains(&format!("`{name}`")), "{name} is missing from docs/metrics.md");
        }
    }

    #[test]
    fn histograms_are_cumulative_in_seconds() {
        let workers = [WorkerStats::default()];
        for us in [50, 100, 101, 3_000, 7_000_000] {
            workers[0].fanout_latency.record(us);
        }
        let text = render(
            &workers,
            &crate::hub::HubStats::default(),
            &Process::default(),
            &build(),
            Format::Classic,
        );
        let name = "tickcast_fanout_latency_seconds";
        assert!(text.contains(&format!("# TYPE {name} histogram\n")), "{text}");
        assert!(text.contains(&format!("{name}_bucket{{worker=\"0\",le=\"0.0001\"}} 2\n")), "{text}");
        assert!(text.contains(&format!("{name}_bucket{{worker=\"0\",le=\"0.00025\"}} 3\n")));
        assert!(text.contains(&format!("{name}_bucket{{worker=\"0\",le=\"0.01\"}} 4\n")));
        assert!(text.contains(&format!("{name}_bucket{{worker=\"0\",le=\"5\"}} 4\n")));
        assert!(text.contains(&format!("{name}_bucket{{worker=\"0\",le=\"+Inf\"}} 5\n")));
        assert!(text.contains(&format!("{name}_count{{worker=\"0\"}} 5\n")));
        assert!(text.contains(&format!("{name}_sum{{worker=\"0\"}} 7.003251\n")), "{text}");
    }

    #[test]
    fn negotiates_openmetrics_only_when_asked() {
        let ask = |a: &str| Format::negotiate(Some(a.as_bytes()));
        assert_eq!(Format::negotiate(None), Format::Classic);
        assert_eq!(ask("text/plain"), Format::Classic);
        assert_eq!(ask("*/*"), Format::Classic);
        let prometheus =
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.1";
        assert_eq!(ask(prometheus), Format::OpenMetrics);
        assert_eq!(ask("Application/OpenMetrics-Text"), Format::OpenMetrics);
        assert_eq!(ask("application/openmetrics-text; q=0, text/plain"), Format::Classic);
        assert!(
            Format::OpenMetrics.content_type().starts_with("application/openmetrics-text; version=1.0.0")
        );
    }

    #[test]
    fn dec_saturates() {
        let c = AtomicU64::new(0);
        dec(&c);
        assert_eq!(c.load(Ordering::Relaxed), 0);
    }
}
