//! The typed summary of a run: every figure the table prints and scripts read, computed here
//! once (docs/loadgen.md documents each key). Durations are seconds, latencies microseconds,
//! sizes bytes; a figure that does not apply is `None` (JSON `null`), never absent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::thresholds::{self, Threshold, ThresholdOutcome};
use super::warnings::{Warning, busy_share};
use super::{RunResult, main_metric};
use crate::measure::stats::Hist;
use crate::plan::{Protocol, Publisher, Scenario, Schedule, Transport};

/// The quantiles every histogram reports, with their key stems (`p99_9` -> `p99_9_us`).
pub const QUANTILES: [(&str, f64); 5] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999), ("p99_99", 0.9999)];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub scenario: String,
    pub target: String,
    pub transport: String,
    pub protocol: String,
    pub clients: u64,
    pub message_bytes: Option<u64>,
    pub durations_s: Durations,
    pub connections: Connections,
    pub messages: Messages,
    pub wire: Wire,
    pub requests: Requests,
    pub loadgen: Loadgen,
    pub server: Option<Server>,
    pub histograms: BTreeMap<String, HistSummary>,
    pub main_histogram: String,
    pub warnings: Vec<Warning>,
    pub thresholds: Vec<ThresholdOutcome>,
    /// Every threshold held (true when there are none).
    pub passed: bool,
    /// `ramp` and `saturate --search`: the search's verdict; `None` for a single run.
    pub verdict: Option<Verdict>,
}

/// What a search (`ramp`, `saturate --search`) found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub steps: usize,
    pub passed_steps: usize,
    /// Index in `steps` of the passing step with the most deliveries per second.
    pub best_step: Option<usize>,
    /// Its publish rate (messages/s) and clients.
    pub rate: Option<f64>,
    pub clients: Option<u64>,
    /// Why the first failing step failed.
    pub stopped_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Durations {
    pub connect: f64,
    pub planned: f64,
    pub measured: f64,
    pub drain: f64,
    pub wall: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connections {
    pub attempted: u64,
    pub opened: u64,
    pub failed_tcp: u64,
    pub failed_handshake: u64,
    pub cut_off: u64,
    pub opened_per_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Messages {
    pub published: u64,
    pub sent: u64,
    pub received: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    /// Lost and announced by neither a `gap` nor a `reset`.
    pub lost_silently: u64,
    pub gap_announced: u64,
    /// `reset` notices received (the server restarted: positions of another epoch).
    pub reset_notices: u64,
    /// Lost with the old history across a reset, announced by it.
    pub reset_announced: u64,
    pub publish_refused: u64,
    pub publish_unanswered: u64,
    /// Delivered / measured seconds: the one definition of deliveries per second.
    pub deliveries_per_s: Option<f64>,
    /// `saturate` (windowed): the sustained deliveries per second; `None` elsewhere.
    pub sustained_per_s: Option<f64>,
    /// Published / measured seconds.
    pub published_per_s: Option<f64>,
    /// Sent / measured seconds.
    pub sent_per_s: Option<f64>,
    /// Received / measured seconds.
    pub received_per_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wire {
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub received_bytes_per_delivery: Option<f64>,
    pub sent_bytes_per_delivery: Option<f64>,
    /// Bytes received / measured seconds.
    pub received_bytes_per_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Requests {
    pub count: u64,
    /// Over the measured phase and its drain.
    pub per_s: Option<f64>,
    pub empty: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Loadgen {
    pub threads: usize,
    pub workers: usize,
    pub cpu_s: f64,
    pub measured_cpu_s: f64,
    pub drain_cpu_s: f64,
    /// Measured CPU / (measured seconds x threads used); the `loadgen_busy` warning's figure.
    pub busy_share: Option<f64>,
    /// (Measured + drain CPU) / messages received x 1e6.
    pub cpu_s_per_million_received: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Server {
    pub pid: u32,
    pub cpu_s: f64,
    pub drain_cpu_s: f64,
    /// (cpu_s + drain_cpu_s) / delivered x 1e6.
    pub cpu_s_per_million_deliveries: Option<f64>,
    /// (cpu_s + drain_cpu_s) / messages received x 1e6 (echo and feeds count receives).
    pub cpu_s_per_million_received: Option<f64>,
    /// cpu_s / measured seconds: the share of one core the server used over the measured phase.
    pub cpu_share: Option<f64>,
    pub rss_before_bytes: u64,
    pub rss_held_bytes: Option<u64>,
    pub rss_per_connection_bytes: Option<f64>,
    pub pss_before_bytes: u64,
    pub pss_held_bytes: Option<u64>,
    pub pss_per_connection_bytes: Option<f64>,
    pub anon_before_bytes: u64,
    pub anon_held_bytes: Option<u64>,
    pub anon_per_connection_bytes: Option<f64>,
    pub tcp_mem_before_bytes: u64,
    pub tcp_mem_held_bytes: Option<u64>,
    pub tcp_mem_per_connection_bytes: Option<f64>,
    pub tcp_sockets_before: u64,
    pub tcp_sockets_held: Option<u64>,
    /// Connections the held sample is divided by (opened minus cut off, at least 1).
    pub connections_held: u64,
}

/// One histogram in microseconds; every figure `None` when it recorded nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistSummary {
    pub count: u64,
    pub min_us: Option<f64>,
    pub mean_us: Option<f64>,
    pub p50_us: Option<f64>,
    pub p90_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p99_9_us: Option<f64>,
    pub p99_99_us: Option<f64>,
    pub max_us: Option<f64>,
}

const NS_PER_US: f64 = 1e3;

impl HistSummary {
    pub fn of(h: &Hist) -> HistSummary {
        let us = |ns: u64| (!h.is_empty()).then_some(ns as f64 / NS_PER_US);
        let [p50, p90, p99, p99_9, p99_99] = QUANTILES.map(|(_, q)| us(h.at(q)));
        HistSummary {
            count: h.len(),
            min_us: us(h.0.min()),
            mean_us: (!h.is_empty()).then(|| h.0.mean() / NS_PER_US),
            p50_us: p50,
            p90_us: p90,
            p99_us: p99,
            p99_9_us: p99_9,
            p99_99_us: p99_99,
            max_us: us(h.at(1.0)),
        }
    }

    /// The value at a quantile key stem (`p99_9`) or `max`, in microseconds.
    pub fn get(&self, stem: &str) -> Option<f64> {
        match stem {
            "p50" => self.p50_us,
            "p90" => self.p90_us,
            "p99" => self.p99_us,
            "p99_9" => self.p99_9_us,
            "p99_99" => self.p99_99_us,
            "max" => self.max_us,
            "min" => self.min_us,
            "mean" => self.mean_us,
            _ => None,
        }
    }
}

/// `x / over`, or `None` when `over` is not positive.
fn per(x: f64, over: f64) -> Option<f64> {
    (over > 0.0).then(|| x / over)
}

/// The scenario as typed on the command line (`saturate` is a windowed `rate`).
pub fn scenario_name(r: &RunResult) -> &'static str {
    match (r.plan.scenario, r.plan.workload.schedule) {
        (Scenario::Rate, Schedule::Windowed { .. }) => "saturate",
        (Scenario::Rate, _) => "rate",
        (Scenario::Echo, _) => "echo",
        (Scenario::Idle, _) => "idle",
        (Scenario::Connect, _) => "connect",
    }
}

pub fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Ws => "ws",
        Transport::Sse => "sse",
        Transport::Longpoll => "longpoll",
        Transport::Poll => "poll",
    }
}

pub fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Ws => "tickcast",
        Protocol::SocketIo => "socketio",
        Protocol::ActionCable => "actioncable",
    }
}

impl Summary {
    /// Computes every figure of `r` and judges it against `limits`.
    pub fn of(r: &RunResult, limits: &[Threshold]) -> Summary {
        let p = &r.plan;
        let c = &r.totals.counters;
        let measured = r.run_seconds;
        let delivered = r.loss.delivered;
        let sends_messages = matches!(p.scenario, Scenario::Echo)
            || (p.scenario == Scenario::Rate && p.workload.publisher != Publisher::None);
        let mut summary = Summary {
            scenario: scenario_name(r).to_string(),
            target: format!("http://{}{}", p.target.authority(), p.target.path),
            transport: transport_name(p.workload.transport).to_string(),
            protocol: protocol_name(p.workload.protocol).to_string(),
            clients: p.clients.count,
            message_bytes: sends_messages.then_some(p.workload.message_bytes as u64),
            durations_s: Durations {
                connect: r.connect_seconds,
                planned: p.stop.duration.as_secs_f64(),
                measured,
                drain: r.drain_seconds,
                wall: r.wall_seconds,
            },
            connections: Connections {
                attempted: c.connect_attempts,
                opened: c.connected,
                failed_tcp: c.connect_failed,
                failed_handshake: c.handshake_failed,
                cut_off: c.disconnected,
                opened_per_s: per(c.connected as f64, r.connect_seconds),
            },
            messages: messages(r, measured),
            wire: Wire {
                bytes_received: c.bytes_received,
                bytes_sent: c.bytes_sent,
                received_bytes_per_delivery: per(c.bytes_received as f64, delivered as f64),
                sent_bytes_per_delivery: per(c.bytes_sent as f64, delivered as f64),
                received_bytes_per_s: per(c.bytes_received as f64, measured),
            },
            requests: Requests {
                count: c.requests,
                per_s: per(c.requests as f64, measured + r.drain_seconds),
                empty: c.empty_responses,
            },
            loadgen: Loadgen {
                threads: p.threads,
                workers: p.workers,
                cpu_s: r.loadgen_cpu_seconds,
                measured_cpu_s: r.loadgen_run_cpu_seconds,
                drain_cpu_s: r.loadgen_drain_cpu_seconds,
                busy_share: busy_share(r),
                cpu_s_per_million_received: per(
                    (r.loadgen_run_cpu_seconds + r.loadgen_drain_cpu_seconds) * 1e6,
                    c.messages_received as f64,
                ),
            },
            server: server(r),
            histograms: r.totals.hists.iter().map(|(k, h)| (k.clone(), HistSummary::of(h))).collect(),
            main_histogram: main_metric(p).to_string(),
            warnings: r.warnings.clone(),
            thresholds: Vec::new(),
            passed: true,
            verdict: None,
        };
        summary.thresholds = thresholds::evaluate(limits, &summary);
        summary.passed = summary.thresholds.iter().all(|t| t.passed);
        summary
    }

    /// The main histogram's summary (empty when it recorded nothing).
    pub fn main(&self) -> Option<&HistSummary> {
        self.histograms.get(&self.main_histogram)
    }
}

fn messages(r: &RunResult, measured: f64) -> Messages {
    let c = &r.totals.counters;
    let delivered = r.loss.delivered;
    let lost = r.loss.lost();
    let windowed =
        matches!(r.plan.workload.schedule, Schedule::Windowed { .. }) && r.plan.scenario == Scenario::Rate;
    let deliveries_per_s = per(delivered as f64, measured);
    Messages {
        published: r.totals.published,
        sent: c.messages_sent,
        received: c.messages_received,
        expected: r.totals.expected(),
        delivered,
        lost,
        lost_silently: lost.saturating_sub(c.gap_announced + c.reset_announced),
        gap_announced: c.gap_announced,
        reset_notices: c.reset_notices,
        reset_announced: c.reset_announced,
        publish_refused: c.publish_refused,
        publish_unanswered: c.publish_unanswered,
        deliveries_per_s,
        sustained_per_s: if windowed { deliveries_per_s } else { None },
        published_per_s: per(r.totals.published as f64, measured),
        sent_per_s: per(c.messages_sent as f64, measured),
        received_per_s: per(c.messages_received as f64, measured),
    }
}

fn server(r: &RunResult) -> Option<Server> {
    let s = r.server.as_ref()?;
    let c = &r.totals.counters;
    let n = c.connected.saturating_sub(c.disconnected).max(1);
    let held = s.held.as_ref();
    let per_conn = |before: u64, held: Option<u64>| held.map(|h| h.saturating_sub(before) as f64 / n as f64);
    let cpu = s.cpu_seconds + s.drain_cpu_seconds;
    let measured_cpu = s.cpu_seconds > 0.0;
    Some(Server {
        pid: s.pid,
        cpu_s: s.cpu_seconds,
        drain_cpu_s: s.drain_cpu_seconds,
        cpu_s_per_million_deliveries: per(cpu * 1e6, r.loss.delivered as f64).filter(|_| measured_cpu),
        cpu_s_per_million_received: per(cpu * 1e6, c.messages_received as f64).filter(|_| measured_cpu),
        cpu_share: per(s.cpu_seconds, r.run_seconds),
        rss_before_bytes: s.before.rss_bytes,
        rss_held_bytes: held.map(|h| h.rss_bytes),
        rss_per_connection_bytes: per_conn(s.before.rss_bytes, held.map(|h| h.rss_bytes)),
        pss_before_bytes: s.before.pss_bytes,
        pss_held_bytes: held.map(|h| h.pss_bytes),
        pss_per_connection_bytes: per_conn(s.before.pss_bytes, held.map(|h| h.pss_bytes)),
        anon_before_bytes: s.before.anon_bytes,
        anon_held_bytes: held.map(|h| h.anon_bytes),
        anon_per_connection_bytes: per_conn(s.before.anon_bytes, held.map(|h| h.anon_bytes)),
        tcp_mem_before_bytes: s.before.tcp_mem_bytes,
        tcp_mem_held_bytes: held.map(|h| h.tcp_mem_bytes),
        tcp_mem_per_connection_bytes: per_conn(s.before.tcp_mem_bytes, held.map(|h| h.tcp_mem_bytes)),
        tcp_sockets_before: s.before.tcp_inuse,
        tcp_sockets_held: held.map(|h| h.tcp_inuse),
        connections_held: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_figures_in_microseconds() {
        let mut h = Hist::new();
        for v in 1..=1000u64 {
            h.record_ns(v * 1000);
        }
        let s = HistSummary::of(&h);
        assert_eq!(s.count, 1000);
        let p50 = s.p50_us.unwrap();
        assert!((499.0..=501.0).contains(&p50), "p50 {p50}");
        assert!(s.p99_us.unwrap() >= 989.0 && s.p99_us.unwrap() <= 991.0, "{s:?}");
        assert!(s.max_us.unwrap() >= 999.0);
        assert_eq!(s.get("p99"), s.p99_us);
        let empty = HistSummary::of(&Hist::new());
        assert_eq!((empty.count, empty.p99_us, empty.max_us), (0, None, None));
    }
}
