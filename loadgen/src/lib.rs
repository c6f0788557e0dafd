//! `tickcast-loadgen` as a library: the binary is a thin CLI over `run`, and tests drive the
//! same code against in-process servers.
//!
//! A run is data (`plan::Plan`: clients + workload schedule + stop condition), executed by
//! `coordinator::run` over worker threads or processes (`engine`, `workers`), reported by
//! `report`.

pub mod accepted;
pub mod channels;
pub mod cli;
pub mod coordinator;
pub mod deliveries;
pub mod engine;
pub mod loss;
pub mod net;
pub mod plan;
pub mod procfs;
pub mod report;
pub mod scenarios;
pub mod search;
pub mod stamp;
pub mod stats;
pub mod time;
pub mod transports;
pub mod workers;

use cli::Outputs;
use coordinator::{Observe, RunResult};
use plan::Plan;

/// Runs `plan`, prints the progress line unless `quiet`, writes the requested files.
pub fn run(plan: &Plan, observe: Observe, out: &Outputs, quiet: bool) -> anyhow::Result<RunResult> {
    let mut progress = report::progress::Progress::new(plan.progress_interval, plan.clients.count, quiet);
    let result = coordinator::run(plan, observe, &mut progress)?;
    let metric = report::main_metric(plan);
    write_outputs(&result, out)?;
    if let Some(path) = &out.hlog {
        report::files::write_hlog(path, metric, &progress.intervals)?;
    }
    Ok(result)
}

/// Writes `--json` and `--percentiles`.
pub fn write_outputs(result: &RunResult, out: &Outputs) -> anyhow::Result<()> {
    if let Some(path) = &out.json {
        report::files::write_json(path, result)?;
    }
    if let Some(path) = &out.percentiles {
        let metric = report::main_metric(&result.plan);
        let h = result.totals.hists.get(metric).cloned().unwrap_or_default();
        report::files::write_percentiles(path, &h)?;
    }
    Ok(())
}
