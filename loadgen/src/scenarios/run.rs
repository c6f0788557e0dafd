//! One run from the command line's point of view: the plan run with every scenario, then the
//! files asked for, each written from the one summary.

use crate::cli::Outputs;
use crate::engine::coordinator::Observe;
use crate::plan::Plan;
use crate::report;
use crate::result::{self, RunResult, Summary};

/// Runs `plan`, prints the progress line unless `quiet`, writes the requested files.
pub fn run(plan: &Plan, observe: Observe, out: &Outputs, quiet: bool) -> anyhow::Result<RunResult> {
    let mut progress = report::progress::Progress::new(plan.progress_interval, plan.clients.count, quiet);
    let result = crate::engine::coordinator::run(plan, &super::DRIVER, observe, &mut progress)?;
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
