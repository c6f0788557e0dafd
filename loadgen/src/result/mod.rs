//! A finished run as data: what the coordinator measured (`RunResult`, merged losslessly across
//! processes and hosts), the figures computed from it once (`summary`), what they do not show
//! (`warnings`) and whether they met the user's limits (`thresholds`).
//!
//! This layer sits between the engine that produces a result and the report that renders it:
//! it imports neither.

pub mod summary;
pub mod thresholds;
pub mod warnings;

use serde::{Deserialize, Serialize};

use crate::measure::loss::LossTotals;
use crate::measure::procfs::MemSample;
use crate::measure::tally::Tally;
use crate::plan::{Plan, Scenario};
pub use summary::Summary;
pub use thresholds::{THRESHOLD_EXIT, Threshold, ThresholdOutcome};
pub use warnings::{Warning, WarningKind};

/// The version of the `--json` file's shape (`schema` key; documented in docs/loadgen.md).
pub const SCHEMA: u32 = 2;

/// The server as seen through /proc.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerReport {
    pub pid: u32,
    /// Before any client connected.
    pub before: MemSample,
    /// While every client was held open (idle: the last sample of the hold).
    pub held: Option<MemSample>,
    /// CPU seconds during the measured phase.
    pub cpu_seconds: f64,
    /// CPU seconds during the drain after it (the tail of the work for the messages of the
    /// measured phase).
    #[serde(default)]
    pub drain_cpu_seconds: f64,
}

/// One run's complete result: the plan, the merged measurements, and what they mean.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub plan: Plan,
    pub totals: Tally,
    /// Loss including the tail (messages published after a subscriber's last one), over the
    /// publishes the server accepted.
    pub loss: LossTotals,
    /// From the first connection attempt until every client was open.
    pub connect_seconds: f64,
    /// The measured phase: from `t0` to the end of publishing (rate), or of the planned
    /// duration; rates and the load generator's busy share are over this.
    pub run_seconds: f64,
    /// After the measured phase, how long subscribers kept receiving late arrivals (the drain).
    #[serde(default)]
    pub drain_seconds: f64,
    /// CPU seconds of every load-generator process (coordinator included), whole run.
    pub loadgen_cpu_seconds: f64,
    /// CPU seconds of every load-generator process during the measured phase.
    pub loadgen_run_cpu_seconds: f64,
    /// CPU seconds of every load-generator process during the drain.
    #[serde(default)]
    pub loadgen_drain_cpu_seconds: f64,
    /// Wall time of the whole run (connecting included).
    pub wall_seconds: f64,
    pub server: Option<ServerReport>,
    /// Every warning, loudest first: what happened during the run (a worker failed, ...) and
    /// what the figures show about their own validity (`warnings::derive`).
    pub warnings: Vec<Warning>,
}

impl RunResult {
    /// Recomputes the warnings derived from the figures (after the figures changed, e.g. by a
    /// merge), keeping those that recorded events of the run.
    pub fn derive_warnings(&mut self) {
        self.warnings.retain(|w| !w.kind.is_derived());
        let derived = warnings::derive(self);
        self.warnings.extend(derived);
    }

    /// Merges another run (another process or host) into this one: counters, histograms and
    /// loss add up; clients add up; times take the longer; CPU adds up; the warnings derived
    /// from the figures are derived again from the sums.
    pub fn merge(&mut self, other: &RunResult) {
        self.totals.merge(&other.totals);
        self.loss.merge(&other.loss);
        self.plan.clients.count += other.plan.clients.count;
        self.plan.workers += other.plan.workers;
        self.connect_seconds = self.connect_seconds.max(other.connect_seconds);
        self.run_seconds = self.run_seconds.max(other.run_seconds);
        self.drain_seconds = self.drain_seconds.max(other.drain_seconds);
        self.wall_seconds = self.wall_seconds.max(other.wall_seconds);
        self.loadgen_cpu_seconds += other.loadgen_cpu_seconds;
        self.loadgen_run_cpu_seconds += other.loadgen_run_cpu_seconds;
        self.loadgen_drain_cpu_seconds += other.loadgen_drain_cpu_seconds;
        self.warnings.extend(other.warnings.iter().filter(|w| !w.kind.is_derived()).cloned());
        self.derive_warnings();
    }
}

/// The histogram that is the scenario's headline.
pub fn main_metric(plan: &Plan) -> &'static str {
    match plan.scenario {
        Scenario::Echo => "rtt",
        Scenario::Rate if plan.workload.staleness => "staleness",
        Scenario::Rate => "latency",
        Scenario::Connect | Scenario::Idle => "handshake",
    }
}

/// What a `--json` file holds: the result (every key it always had), the schema version and
/// the typed summary.
#[derive(Debug, Serialize)]
pub struct ResultFile<'a> {
    pub schema: u32,
    #[serde(flatten)]
    pub result: &'a RunResult,
    pub summary: &'a Summary,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, plan_of};

    fn result(disconnected: u64, warnings: Vec<Warning>) -> RunResult {
        let cli = <Cli as clap::Parser>::try_parse_from(["lg", "rate", "--rate", "100"]).unwrap();
        let mut totals = Tally::default();
        totals.counters.disconnected = disconnected;
        RunResult {
            plan: plan_of(&cli.command).unwrap().0,
            totals,
            loss: LossTotals::default(),
            connect_seconds: 0.1,
            run_seconds: 1.0,
            drain_seconds: 0.0,
            loadgen_cpu_seconds: 0.0,
            loadgen_run_cpu_seconds: 0.0,
            loadgen_drain_cpu_seconds: 0.0,
            wall_seconds: 1.2,
            server: None,
            warnings,
        }
    }

    #[test]
    fn a_merge_derives_the_warnings_again_from_the_sums() {
        let failed = Warning::new(WarningKind::WorkerFailed, "worker 1 failed: x".into(), &[("worker", 1.0)]);
        let stale = Warning::new(WarningKind::LoadgenBusy, "busy".into(), &[("share", 0.9)]);
        let mut a = result(1, vec![failed.clone(), stale]);
        a.merge(&result(2, Vec::new()));
        let kinds: Vec<WarningKind> = a.warnings.iter().map(|w| w.kind).collect();
        // The event stays; the busy warning of one file is not the sum's; the cut-offs add up.
        assert_eq!(kinds, [WarningKind::WorkerFailed, WarningKind::CutOff]);
        assert_eq!(a.warnings[1].figures["connections"], 3.0);
        assert_eq!(a.totals.counters.disconnected, 3);
    }
}
