//! The final human-readable summary.

use std::fmt::Write;

use super::progress::fmt_ns;
use crate::coordinator::RunResult;
use crate::plan::Scenario;
use crate::stats::Hist;

const QUANTILES: [(&str, f64); 6] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("p99.99", 0.9999), ("max", 1.0)];

/// One histogram as a table row.
pub fn hist_row(name: &str, h: &Hist) -> String {
    let mut row = format!("| {name:<10} | {:>10} |", h.len());
    for (_, q) in QUANTILES {
        let _ = write!(row, " {:>9} |", fmt_ns(h.at(q)));
    }
    row
}

pub fn render(r: &RunResult) -> String {
    let mut out = String::new();
    let p = &r.plan;
    let c = &r.totals.counters;
    let _ = writeln!(
        out,
        "\n{:?} against {} (path {}), {} clients, {} worker(s) x {} thread(s)",
        p.scenario,
        p.target.authority(),
        p.target.path,
        p.clients.count,
        p.workers.max(1),
        p.threads
    );
    let _ = writeln!(
        out,
        "opened {} of {} in {:.2}s ({:.0} conn/s); failed: {} TCP, {} handshake; cut off {}",
        c.connected,
        c.connect_attempts,
        r.connect_seconds,
        c.connected as f64 / r.connect_seconds.max(1e-9),
        c.connect_failed,
        c.handshake_failed,
        c.disconnected
    );
    if r.run_seconds > 0.0 {
        // Rates over the measured phase: what arrived in the drain was published in it.
        let s = r.run_seconds;
        let drain = if r.drain_seconds > 0.0 {
            format!(" (then {:.2}s drain)", r.drain_seconds)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "measured {:.2}s{drain}: sent {} ({:.0}/s), received {} ({:.0}/s), {:.1} MB/s in; pings answered {}",
            s,
            c.messages_sent,
            c.messages_sent as f64 / s,
            c.messages_received,
            c.messages_received as f64 / s,
            c.bytes_received as f64 / s / 1e6,
            c.pings_received
        );
    }
    if p.scenario == Scenario::Rate {
        rate_lines(&mut out, r);
    }
    let _ = writeln!(
        out,
        "\n| histogram  |      count |{}",
        QUANTILES.iter().map(|(n, _)| format!(" {n:>9} |")).collect::<String>()
    );
    let _ = writeln!(out, "|---|---:|{}", "---:|".repeat(QUANTILES.len()));
    for (name, h) in &r.totals.hists {
        let _ = writeln!(out, "{}", hist_row(name, h));
    }
    if let Some(s) = &r.server {
        let _ = writeln!(out, "\nserver pid {}:", s.pid);
        let _ = writeln!(
            out,
            "  before: RSS {} KiB, PSS {} KiB; kernel TCP memory {} KiB ({} TCP sockets)",
            s.before.rss_bytes / 1024,
            s.before.pss_bytes / 1024,
            s.before.tcp_mem_bytes / 1024,
            s.before.tcp_inuse
        );
        if let Some(h) = &s.held {
            let n = c.connected.saturating_sub(c.disconnected).max(1);
            let _ = writeln!(
                out,
                "  held:   RSS {} KiB, PSS {} KiB; kernel TCP memory {} KiB ({} TCP sockets)",
                h.rss_bytes / 1024,
                h.pss_bytes / 1024,
                h.tcp_mem_bytes / 1024,
                h.tcp_inuse
            );
            let _ = writeln!(
                out,
                "  per connection ({n} held): RSS {:.0} B, PSS {:.0} B, kernel TCP memory (both ends) {:.0} B",
                h.rss_bytes.saturating_sub(s.before.rss_bytes) as f64 / n as f64,
                h.pss_bytes.saturating_sub(s.before.pss_bytes) as f64 / n as f64,
                h.tcp_mem_bytes.saturating_sub(s.before.tcp_mem_bytes) as f64 / n as f64
            );
        }
        if s.cpu_seconds > 0.0 && c.messages_received > 0 {
            // Per message: the drain's work (late arrivals) belongs to the messages too.
            let deliveries = c.messages_received.max(1) as f64;
            let _ = writeln!(
                out,
                "  CPU {:.2}s during the measured phase (+{:.2}s in the drain): {:.2} CPU-seconds per million messages received",
                s.cpu_seconds,
                s.drain_cpu_seconds,
                (s.cpu_seconds + s.drain_cpu_seconds) / deliveries * 1e6
            );
        }
    }
    let _ =
        writeln!(out, "load generator CPU: {:.2}s over {:.2}s wall", r.loadgen_cpu_seconds, r.wall_seconds);
    if r.run_seconds > 0.0 {
        let cpu = r.loadgen_run_cpu_seconds + r.loadgen_drain_cpu_seconds;
        let per_million = if c.messages_received > 0 {
            format!(
                "; {:.2} CPU-seconds per million messages received",
                cpu / c.messages_received as f64 * 1e6
            )
        } else {
            String::new()
        };
        // The busy share is the measured phase's alone: the drain is mostly idle.
        let _ = writeln!(
            out,
            "  measured phase: {:.2}s = {:.0}% of one core{per_million}",
            r.loadgen_run_cpu_seconds,
            100.0 * r.loadgen_run_cpu_seconds / r.run_seconds,
        );
        if r.drain_seconds > 0.0 {
            let _ = writeln!(
                out,
                "  drain: {:.2}s CPU over {:.2}s",
                r.loadgen_drain_cpu_seconds, r.drain_seconds
            );
        }
    }
    for w in &r.warnings {
        let _ = writeln!(out, "WARNING: {w}");
    }
    out
}

/// The `rate`/`saturate` lines: loss per (channel, seq), the server's gap notices apart from
/// silent loss, and what each delivered message cost on the wire.
fn rate_lines(out: &mut String, r: &RunResult) {
    let p = &r.plan;
    let w = &p.workload;
    let c = &r.totals.counters;
    let l = &r.loss;
    let expected = r.totals.expected();
    let protocol = match w.protocol {
        crate::plan::Protocol::Ws => String::new(),
        other => format!(" (protocol {other:?})"),
    };
    let _ = writeln!(
        out,
        "transport {:?}{protocol}, publisher {:?}, {} channel(s), {} per client, schedule {:?}",
        w.transport,
        w.publisher,
        w.channels.len(),
        w.channels_per_client,
        w.schedule
    );
    let silent = l.lost().saturating_sub(c.gap_announced);
    // Refused and unanswered publishes are neither expected nor loss (`accepted.rs`).
    let no_connection = if c.publish_failed > c.publish_refused + c.publish_unanswered {
        ", the publisher could not connect"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "published {} ({} ok, publish refused {}, publish unanswered {}{no_connection}); delivered {} of {} \
         expected; lost {} (holes {}, tail {}; announced by {} gap notice(s): {}, silent: {}), \
         duplicates {}, reordered {}",
        r.totals.published,
        c.publish_ok,
        c.publish_refused,
        c.publish_unanswered,
        l.delivered,
        expected,
        l.lost(),
        l.missing,
        l.tail_missing,
        c.gap_notices,
        c.gap_announced,
        silent,
        l.duplicates,
        l.reordered
    );
    if l.delivered_unaccepted > 0 {
        let _ = writeln!(
            out,
            "delivered anyway: {} deliveries of refused or unanswered publishes (neither delivered nor lost above)",
            l.delivered_unaccepted
        );
    }
    if w.staleness {
        let _ =
            writeln!(out, "conflated: {} value(s) superseded before they arrived (not loss)", c.superseded);
    }
    if r.run_seconds > 0.0 {
        if let crate::plan::Schedule::Windowed { window } = w.schedule {
            let seconds = r.run_seconds.max(1e-9);
            let _ = writeln!(
                out,
                "sustained (window {window}): {:.0} deliveries/s, {:.0} messages published/s",
                l.delivered as f64 / seconds,
                r.totals.published as f64 / seconds
            );
        }
        if c.requests > 0 {
            let _ = writeln!(
                out,
                "HTTP requests {} ({:.0}/s over the run and its drain); empty answers {}; late polls {}; reconnects {}",
                c.requests,
                c.requests as f64 / (r.run_seconds + r.drain_seconds),
                c.empty_responses,
                c.polls_late,
                c.reconnects
            );
        }
    }
    if c.malformed + c.control_messages > 0 {
        let _ = writeln!(
            out,
            "malformed answers/events {}; control messages {}",
            c.malformed, c.control_messages
        );
    }
    if l.delivered > 0 {
        // Subscribers' bytes both ways (the polling transports' requests included); the
        // publisher's are counted apart (`bytes_published`).
        let _ = writeln!(
            out,
            "bytes on the wire per delivered message ({:?}, HTTP/WebSocket overhead included): {:.1} received, {:.1} sent",
            w.transport,
            c.bytes_received as f64 / l.delivered as f64,
            c.bytes_sent as f64 / l.delivered as f64
        );
    }
}
