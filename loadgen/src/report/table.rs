//! The final human-readable summary, rendered from the typed `Summary` (every computed figure
//! comes from there) and the result's raw counters.

use std::fmt::Write;

use super::progress::fmt_ns;
use crate::plan::{Protocol, Schedule};
use crate::result::summary::{HistSummary, Summary};
use crate::result::{RunResult, THRESHOLD_EXIT};

const COLUMNS: [&str; 6] = ["p50", "p90", "p99", "p99.9", "p99.99", "max"];

/// Microseconds as `fmt_ns` prints them (`-` when there is no figure).
fn fmt_us(us: Option<f64>) -> String {
    us.map_or_else(|| "-".to_string(), |us| fmt_ns((us * 1e3).round() as u64))
}

/// One histogram as a table row.
pub fn hist_row(name: &str, h: &HistSummary) -> String {
    let mut row = format!("| {name:<10} | {:>10} |", h.count);
    for v in [h.p50_us, h.p90_us, h.p99_us, h.p99_9_us, h.p99_99_us, h.max_us] {
        let _ = write!(row, " {:>9} |", fmt_us(v));
    }
    row
}

/// The table of a result judged against no threshold.
pub fn render(r: &RunResult) -> String {
    render_summary(r, &Summary::of(r, &[]))
}

pub fn render_summary(r: &RunResult, s: &Summary) -> String {
    let mut out = String::new();
    let p = &r.plan;
    let c = &r.totals.counters;
    let _ = writeln!(
        out,
        "\n{} against {} (path {}), {} clients, {} worker(s) x {} thread(s)",
        s.scenario,
        p.target.authority(),
        p.target.path,
        s.clients,
        p.workers.max(1),
        p.threads
    );
    let k = &s.connections;
    let _ = writeln!(
        out,
        "opened {} of {} in {:.2}s ({:.0} conn/s); failed: {} TCP, {} handshake; cut off {}",
        k.opened,
        k.attempted,
        s.durations_s.connect,
        k.opened_per_s.unwrap_or(0.0),
        k.failed_tcp,
        k.failed_handshake,
        k.cut_off
    );
    let m = &s.messages;
    if s.durations_s.measured > 0.0 {
        // Rates over the measured phase: what arrived in the drain was published in it.
        let drain = if s.durations_s.drain > 0.0 {
            format!(" (then {:.2}s drain)", s.durations_s.drain)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "measured {:.2}s{drain}: sent {} ({:.0}/s), received {} ({:.0}/s), {:.1} MB/s in; pings answered {}",
            s.durations_s.measured,
            m.sent,
            m.sent_per_s.unwrap_or(0.0),
            m.received,
            m.received_per_s.unwrap_or(0.0),
            s.wire.received_bytes_per_s.unwrap_or(0.0) / 1e6,
            c.pings_received
        );
    }
    if p.scenario == crate::plan::Scenario::Rate {
        rate_lines(&mut out, r, s);
    }
    let header: String = COLUMNS.iter().map(|n| format!(" {n:>9} |")).collect();
    let _ = writeln!(out, "\n| histogram  |      count |{header}");
    let _ = writeln!(out, "|---|---:|{}", "---:|".repeat(COLUMNS.len()));
    for (name, h) in &s.histograms {
        let _ = writeln!(out, "{}", hist_row(name, h));
    }
    server_lines(&mut out, s);
    loadgen_lines(&mut out, s);
    for w in &s.warnings {
        let _ = writeln!(out, "WARNING: {}", w.message);
    }
    out.push_str(&threshold_block(s));
    out
}

/// The `rate`/`saturate` lines: loss per (channel, seq), the server's gap notices apart from
/// silent loss, and what each delivered message cost on the wire.
fn rate_lines(out: &mut String, r: &RunResult, s: &Summary) {
    let w = &r.plan.workload;
    let c = &r.totals.counters;
    let l = &r.loss;
    let m = &s.messages;
    let protocol =
        if w.protocol == Protocol::Ws { String::new() } else { format!(" (protocol {})", s.protocol) };
    let _ = writeln!(
        out,
        "transport {}{protocol}, publisher {}, {} channel(s), {} per client, schedule {}",
        s.transport,
        w.publisher,
        w.channels.len(),
        w.channels_per_client,
        w.schedule
    );
    // Refused and unanswered publishes are neither expected nor loss (`accepted.rs`).
    let no_connection = if c.publish_failed > c.publish_refused + c.publish_unanswered {
        ", the publisher could not connect"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "published {} ({} ok, publish refused {}, publish unanswered {}{no_connection}); delivered {} of {} \
         expected; lost {} (holes {}, tail {}; announced by {} gap notice(s): {}, by {} reset notice(s): {}, \
         silent: {}), \
         duplicates {}, reordered {}",
        m.published,
        c.publish_ok,
        m.publish_refused,
        m.publish_unanswered,
        m.delivered,
        m.expected,
        m.lost,
        l.missing,
        l.tail_missing,
        c.gap_notices,
        m.gap_announced,
        m.reset_notices,
        m.reset_announced,
        m.lost_silently,
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
    if s.durations_s.measured > 0.0 {
        if let (Schedule::Windowed { window }, Some(sustained)) = (w.schedule, m.sustained_per_s) {
            let _ = writeln!(
                out,
                "sustained (window {window}): {sustained:.0} deliveries/s, {:.0} messages published/s",
                m.published_per_s.unwrap_or(0.0)
            );
        }
        if s.requests.count > 0 {
            let _ = writeln!(
                out,
                "HTTP requests {} ({:.0}/s over the run and its drain); empty answers {}; late polls {}; reconnects {}",
                s.requests.count,
                s.requests.per_s.unwrap_or(0.0),
                s.requests.empty,
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
    if let (Some(received), Some(sent)) = (s.wire.received_bytes_per_delivery, s.wire.sent_bytes_per_delivery)
    {
        // Subscribers' bytes both ways (the polling transports' requests included); the
        // publisher's are counted apart (`bytes_published`).
        let _ = writeln!(
            out,
            "bytes on the wire per delivered message ({}, HTTP/WebSocket overhead included): {received:.1} received, {sent:.1} sent",
            s.transport
        );
    }
}

fn server_lines(out: &mut String, s: &Summary) {
    let Some(v) = &s.server else { return };
    let _ = writeln!(out, "\nserver pid {}:", v.pid);
    let _ = writeln!(
        out,
        "  before: RSS {} KiB, PSS {} KiB; kernel TCP memory {} KiB ({} TCP sockets)",
        v.rss_before_bytes / 1024,
        v.pss_before_bytes / 1024,
        v.tcp_mem_before_bytes / 1024,
        v.tcp_sockets_before
    );
    if let (Some(rss), Some(pss), Some(tcp), Some(sockets)) =
        (v.rss_held_bytes, v.pss_held_bytes, v.tcp_mem_held_bytes, v.tcp_sockets_held)
    {
        let _ = writeln!(
            out,
            "  held:   RSS {} KiB, PSS {} KiB; kernel TCP memory {} KiB ({} TCP sockets)",
            rss / 1024,
            pss / 1024,
            tcp / 1024,
            sockets
        );
        let _ = writeln!(
            out,
            "  per connection ({} held): RSS {:.0} B, PSS {:.0} B, kernel TCP memory (both ends) {:.0} B",
            v.connections_held,
            v.rss_per_connection_bytes.unwrap_or(0.0),
            v.pss_per_connection_bytes.unwrap_or(0.0),
            v.tcp_mem_per_connection_bytes.unwrap_or(0.0)
        );
    }
    if let Some(per_million) = v.cpu_s_per_million_received {
        // Per message: the drain's work (late arrivals) belongs to the messages too.
        let _ = writeln!(
            out,
            "  CPU {:.2}s during the measured phase (+{:.2}s in the drain): {per_million:.2} CPU-seconds per million messages received",
            v.cpu_s, v.drain_cpu_s
        );
    }
}

fn loadgen_lines(out: &mut String, s: &Summary) {
    let l = &s.loadgen;
    let d = &s.durations_s;
    let _ = writeln!(out, "load generator CPU: {:.2}s over {:.2}s wall", l.cpu_s, d.wall);
    if d.measured <= 0.0 {
        return;
    }
    let per_million = l
        .cpu_s_per_million_received
        .map(|v| format!("; {v:.2} CPU-seconds per million messages received"))
        .unwrap_or_default();
    // The busy share is the measured phase's alone: the drain is mostly idle.
    let _ = writeln!(
        out,
        "  measured phase: {:.2}s = {:.0}% of one core{per_million}",
        l.measured_cpu_s,
        100.0 * l.measured_cpu_s / d.measured,
    );
    if d.drain > 0.0 {
        let _ = writeln!(out, "  drain: {:.2}s CPU over {:.2}s", l.drain_cpu_s, d.drain);
    }
}

/// The thresholds block that ends the table: one line per threshold, then the verdict (empty
/// without thresholds).
pub fn threshold_block(s: &Summary) -> String {
    let mut out = String::new();
    if s.thresholds.is_empty() {
        return out;
    }
    let _ = writeln!(out, "\nthresholds:");
    for t in &s.thresholds {
        let (value, limit) = if t.unit == "us" {
            (fmt_us(t.value), fmt_us(Some(t.limit)))
        } else {
            (
                t.value.map_or_else(|| "-".to_string(), |v| format!("{v:.0}")),
                format!("{:.0} {}", t.limit, t.unit),
            )
        };
        let verdict = if t.passed { "ok" } else { "FAILED" };
        let _ = writeln!(out, "  {:<24} {value:>10} (limit {limit}): {verdict}", t.name);
    }
    let failed: Vec<&str> = s.thresholds.iter().filter(|t| !t.passed).map(|t| t.name.as_str()).collect();
    if failed.is_empty() {
        let _ = writeln!(out, "every threshold held");
    } else {
        let _ = writeln!(out, "THRESHOLDS FAILED: {} (exit {THRESHOLD_EXIT})", failed.join(", "));
    }
    out
}
