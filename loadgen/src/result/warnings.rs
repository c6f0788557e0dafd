//! Warnings about what a run's figures do *not* show, as data: a kind to match on (never the
//! text), the sentence people read, and the numbers behind it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::RunResult;
use crate::plan::Scenario;

/// Above this share of its cores, the load generator may itself have been the limit.
pub const SELF_CPU_WARN: f64 = 0.85;
/// Below this share of the expected deliveries, throughput did not track the offered rate.
pub const DELIVERY_WARN: f64 = 0.99;

/// What a warning is about (`kind` in the JSON, `--fail-on-warning KIND` on the command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum WarningKind {
    /// The load generator used more than 85 % of its threads: it may have been the limit.
    LoadgenBusy,
    /// Connections failed to open (TCP or handshake).
    ConnectFailed,
    /// Connections ended before the run did.
    CutOff,
    /// `rate`: fewer than 99 % of the expected deliveries arrived.
    DeliveryBehind,
    /// Answers or events from the server that could not be parsed.
    Malformed,
    /// Publishes the server refused or never answered.
    PublishRefused,
    /// Messages lost without a gap notice.
    SilentLoss,
    /// More than 1 % of the receives had no kernel timestamp.
    UnstampedReceives,
    /// More than 1 % of the sends left over 1 ms late.
    SendsLate,
    /// A worker process or thread failed.
    WorkerFailed,
    /// Not every client opened within the connect budget.
    ConnectIncomplete,
    /// Missed messages beyond what a subscription keeps were only counted.
    UntrackedMisses,
    /// A warning read from an older result file (text only).
    Other,
}

impl WarningKind {
    /// Whether the warning follows from the figures (so a merge derives it again) rather than
    /// recording an event of the run.
    pub fn is_derived(self) -> bool {
        !matches!(self, Self::WorkerFailed | Self::ConnectIncomplete | Self::UntrackedMisses | Self::Other)
    }

    /// The name used in the JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::LoadgenBusy => "loadgen_busy",
            Self::ConnectFailed => "connect_failed",
            Self::CutOff => "cut_off",
            Self::DeliveryBehind => "delivery_behind",
            Self::Malformed => "malformed",
            Self::PublishRefused => "publish_refused",
            Self::SilentLoss => "silent_loss",
            Self::UnstampedReceives => "unstamped_receives",
            Self::SendsLate => "sends_late",
            Self::WorkerFailed => "worker_failed",
            Self::ConnectIncomplete => "connect_incomplete",
            Self::UntrackedMisses => "untracked_misses",
            Self::Other => "other",
        }
    }
}

/// One warning: `{"kind": "loadgen_busy", "message": "...", "share": 0.93}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "Repr")]
pub struct Warning {
    pub kind: WarningKind,
    /// The sentence printed after `WARNING:`.
    pub message: String,
    /// The numbers behind it, as extra keys of the object.
    #[serde(flatten)]
    pub figures: BTreeMap<String, f64>,
}

impl Warning {
    pub fn new(kind: WarningKind, message: String, figures: &[(&str, f64)]) -> Warning {
        let figures = figures.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        Warning { kind, message, figures }
    }
}

/// Result files written before warnings were typed hold plain strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum Repr {
    Typed {
        kind: WarningKind,
        message: String,
        #[serde(flatten)]
        figures: BTreeMap<String, f64>,
    },
    Text(String),
}

impl From<Repr> for Warning {
    fn from(repr: Repr) -> Warning {
        match repr {
            Repr::Typed { kind, message, figures } => Warning { kind, message, figures },
            Repr::Text(message) => Warning { kind: WarningKind::Other, message, figures: BTreeMap::new() },
        }
    }
}

/// The load generator's threads in use: threads x processes, at most the machine's cores.
pub fn threads_used(r: &RunResult) -> f64 {
    let processes = r.plan.workers.max(1) as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    (r.plan.threads.max(1) as f64 * processes).min(cores)
}

/// The load generator's CPU over the measured phase per thread in use (over the whole run when
/// nothing was measured); `None` when no time passed.
pub fn busy_share(r: &RunResult) -> Option<f64> {
    let (cpu, seconds) = if r.run_seconds > 0.0 {
        (r.loadgen_run_cpu_seconds, r.run_seconds)
    } else {
        (r.loadgen_cpu_seconds, r.wall_seconds)
    };
    (seconds > 0.0).then(|| cpu / (seconds * threads_used(r)))
}

/// Warnings that follow from the figures, loudest first.
pub fn derive(r: &RunResult) -> Vec<Warning> {
    let mut out = Vec::new();
    if let Some(share) = busy_share(r)
        && share > SELF_CPU_WARN
    {
        let threads = threads_used(r);
        out.push(Warning::new(
            WarningKind::LoadgenBusy,
            format!(
                "LOAD GENERATOR WAS BUSY: it used {:.0}% of its {} thread(s); it may have been the \
                 bottleneck, not the server (add --threads/--workers or pin it to its own core)",
                share * 100.0,
                threads
            ),
            &[("share", share), ("threads", threads)],
        ));
    }
    connection_warnings(r, &mut out);
    delivery_warnings(r, &mut out);
    timing_warnings(r, &mut out);
    out
}

fn connection_warnings(r: &RunResult, out: &mut Vec<Warning>) {
    let c = &r.totals.counters;
    if c.connect_failed + c.handshake_failed > 0 {
        out.push(Warning::new(
            WarningKind::ConnectFailed,
            format!(
                "{} connection(s) failed to open ({} TCP, {} handshake)",
                c.connect_failed + c.handshake_failed,
                c.connect_failed,
                c.handshake_failed
            ),
            &[("failed_tcp", c.connect_failed as f64), ("failed_handshake", c.handshake_failed as f64)],
        ));
    }
    if c.disconnected > 0 {
        out.push(Warning::new(
            WarningKind::CutOff,
            format!("{} connection(s) were cut off during the run", c.disconnected),
            &[("connections", c.disconnected as f64)],
        ));
    }
}

fn delivery_warnings(r: &RunResult, out: &mut Vec<Warning>) {
    let c = &r.totals.counters;
    let rate = r.plan.scenario == Scenario::Rate;
    let expected = r.totals.expected();
    if rate && expected > 0 && (r.loss.delivered as f64) < expected as f64 * DELIVERY_WARN {
        let share = r.loss.delivered as f64 / expected as f64;
        out.push(Warning::new(
            WarningKind::DeliveryBehind,
            format!(
                "DELIVERY DID NOT TRACK THE OFFERED RATE: {} of {} expected deliveries ({:.1}%); \
                 latency figures describe an unsustainable load",
                r.loss.delivered,
                expected,
                100.0 * share
            ),
            &[("delivered", r.loss.delivered as f64), ("expected", expected as f64), ("share", share)],
        ));
    }
    if c.malformed > 0 {
        out.push(Warning::new(
            WarningKind::Malformed,
            format!(
                "{} malformed answer(s) or event(s) from the server were counted and skipped",
                c.malformed
            ),
            &[("count", c.malformed as f64)],
        ));
    }
    if rate && c.publish_refused + c.publish_unanswered > 0 {
        out.push(Warning::new(
            WarningKind::PublishRefused,
            format!(
                "{} of {} publish(es) were refused and {} never answered by the server: their messages are \
                 neither expected nor counted as loss",
                c.publish_refused, r.totals.published, c.publish_unanswered
            ),
            &[("refused", c.publish_refused as f64), ("unanswered", c.publish_unanswered as f64)],
        ));
    }
    let silent = r.loss.lost().saturating_sub(c.gap_announced + c.reset_announced);
    if rate && silent > 0 && !r.plan.workload.staleness {
        out.push(Warning::new(
            WarningKind::SilentLoss,
            format!("{silent} message(s) were lost SILENTLY (no gap or reset notice announced them)"),
            &[("messages", silent as f64)],
        ));
    }
}

fn timing_warnings(r: &RunResult, out: &mut Vec<Warning>) {
    let c = &r.totals.counters;
    if c.receives_unstamped * 100 > c.messages_received {
        out.push(Warning::new(
            WarningKind::UnstampedReceives,
            format!(
                "{} receive(s) had no kernel timestamp (more than 1 % of the messages): their messages \
                 are dated by the load generator's clock, its own queueing included",
                c.receives_unstamped
            ),
            &[("receives", c.receives_unstamped as f64)],
        ));
    }
    if c.sends_late > 0 && c.messages_sent > 0 {
        let late = c.sends_late as f64 / c.messages_sent as f64;
        if late > 0.01 {
            out.push(Warning::new(
                WarningKind::SendsLate,
                format!(
                    "{:.1}% of sends left more than 1 ms after their scheduled time (latency is still \
                     measured from the schedule)",
                    late * 100.0
                ),
                &[("share", late), ("sends", c.sends_late as f64)],
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_and_legacy_warnings_read_back() {
        let w = Warning::new(WarningKind::LoadgenBusy, "busy".into(), &[("share", 0.93)]);
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(json, r#"{"kind":"loadgen_busy","message":"busy","share":0.93}"#);
        assert_eq!(serde_json::from_str::<Warning>(&json).unwrap(), w);
        let old: Warning = serde_json::from_str(r#""worker 1 failed: x""#).unwrap();
        assert_eq!(old.kind, WarningKind::Other);
        assert!(!old.kind.is_derived());
        assert!(WarningKind::SilentLoss.is_derived());
    }
}
