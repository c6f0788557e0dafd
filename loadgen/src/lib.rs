//! `tickcast-loadgen` as a library: the binary is a thin CLI over `run`, and tests drive the
//! same code against in-process servers.
//!
//! A run is data (`plan::Plan`: clients + workload schedule + stop condition), executed by
//! `coordinator::run` over worker threads or processes (`engine`, `workers`), summarised and
//! judged by `result`, rendered by `report`.

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
pub mod result;
pub mod scenarios;
pub mod search;
pub mod stamp;
pub mod stats;
pub mod time;
pub mod transports;
pub mod workers;

use cli::Outputs;
use coordinator::Observe;
use plan::Plan;
use result::{RunResult, Summary};

/// Runs `plan`, prints the progress line unless `quiet`, writes the requested files.
pub fn run(plan: &Plan, observe: Observe, out: &Outputs, quiet: bool) -> anyhow::Result<RunResult> {
    let mut progress = report::progress::Progress::new(plan.progress_interval, plan.clients.count, quiet);
    let result = coordinator::run(plan, observe, &mut progress)?;
    write_outputs(&result, out)?;
    if let Some(path) = &out.hlog {
        report::files::write_hlog(path, result::main_metric(plan), &progress.intervals)?;
    }
    Ok(result)
}

/// The summary of `result` judged against the thresholds of `out`.
pub fn summarize(result: &RunResult, out: &Outputs) -> Summary {
    Summary::of(result, &out.checks.thresholds())
}

/// Writes `--json` and `--percentiles`; returns the summary the JSON holds.
pub fn write_outputs(result: &RunResult, out: &Outputs) -> anyhow::Result<Summary> {
    let summary = summarize(result, out);
    if let Some(path) = &out.json {
        report::files::write_json(path, result, &summary)?;
    }
    if let Some(path) = &out.percentiles {
        let metric = result::main_metric(&result.plan);
        let h = result.totals.hists.get(metric).cloned().unwrap_or_default();
        report::files::write_percentiles(path, &h)?;
    }
    Ok(summary)
}
