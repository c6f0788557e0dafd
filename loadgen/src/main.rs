//! `tickcast-loadgen`: see `docs/loadgen.md`.
//!
//! Exit codes: 0 when the run finished and every threshold held, 3 when a threshold failed
//! (`result::THRESHOLD_EXIT`), 2 for a usage error (clap), 1 for any other failure.

use std::process::ExitCode;

use clap::Parser;
use tickcast_loadgen::cli::{Cli, Command, Outputs, plan_of};
use tickcast_loadgen::engine::coordinator::Observe;
use tickcast_loadgen::report;
use tickcast_loadgen::result::summary::scenario_name;
use tickcast_loadgen::result::{Summary, THRESHOLD_EXIT};
use tickcast_loadgen::scenarios::search;
use tickcast_loadgen::scenarios::search::Stepping;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Worker => {
            tickcast_loadgen::engine::workers::worker_main(&tickcast_loadgen::scenarios::DRIVER)
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Merge { files, out } => merge(files, out),
        Command::Ramp { rate, rate_step, clients_step, max_steps, slo_p99, .. } => {
            let (plan, common) = plan_of(&cli.command)?;
            refuse_hlog(&common.out, "ramp")?;
            let stepping = if *clients_step > 0 {
                Stepping::Clients { start: plan.clients.count, step: *clients_step }
            } else {
                Stepping::Rate { start: *rate, step: *rate_step }
            };
            let observe = Observe { server_pid: common.server_pid, worker_exe: None };
            let steps = search::ramp(&plan, stepping, *max_steps, *slo_p99, &observe, common.quiet)?;
            finish_search(&steps, "ramp", "capacity (last good step)", &common.out)
        }
        Command::Saturate { rate, max_steps, search: true, .. } => {
            let (plan, common) = plan_of(&cli.command)?;
            refuse_hlog(&common.out, "saturate --search")?;
            let observe = Observe { server_pid: common.server_pid, worker_exe: None };
            let steps = search::saturate(&plan, *rate, *max_steps, &observe, common.quiet)?;
            finish_search(&steps, "saturate", "highest sustained rate", &common.out)
        }
        command => {
            let (plan, common) = plan_of(command)?;
            let observe = Observe { server_pid: common.server_pid, worker_exe: None };
            let result = tickcast_loadgen::run(&plan, observe, &common.out, common.quiet)?;
            let summary = tickcast_loadgen::summarize(&result, &common.out);
            print!("{}", report::table::render_summary(&result, &summary));
            Ok(exit_code(&summary))
        }
    }
}

/// A search runs many steps; an interval log of one of them would mislead (`merge` has none
/// either).
fn refuse_hlog(out: &Outputs, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(out.hlog.is_none(), "{what} runs several steps: --hlog takes one run (use rate)");
    Ok(())
}

fn exit_code(summary: &Summary) -> ExitCode {
    if summary.passed { ExitCode::SUCCESS } else { ExitCode::from(THRESHOLD_EXIT) }
}

fn finish_search(
    steps: &[search::StepOutcome],
    scenario: &str,
    what: &str,
    out: &Outputs,
) -> anyhow::Result<ExitCode> {
    print!("{}", search::render(steps, what));
    let file = search::steps_file(steps, scenario, &out.checks.thresholds());
    if let Some(path) = &out.json {
        report::files::write_pretty(path, &file)?;
    }
    if let (Some(path), Some(best)) = (&out.percentiles, search::last_good(steps)) {
        let h = best.result.totals.hists.get("latency").cloned().unwrap_or_default();
        report::files::write_percentiles(path, &h)?;
    }
    match &file.summary {
        Some(summary) => {
            print!("{}", report::table::threshold_block(summary));
            Ok(exit_code(summary))
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

fn merge(files: &[std::path::PathBuf], out: &Outputs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(!files.is_empty(), "merge needs at least one --json result file");
    anyhow::ensure!(out.hlog.is_none(), "merge has no interval log to write (--hlog takes one run)");
    let mut merged = report::files::read_json(&files[0])?;
    for path in &files[1..] {
        let other = report::files::read_json(path)?;
        let (theirs, ours) = (scenario_name(&other), scenario_name(&merged));
        anyhow::ensure!(
            other.plan.scenario == merged.plan.scenario,
            "{} is a {theirs} run, not {ours}",
            path.display()
        );
        merged.merge(&other);
    }
    let summary = tickcast_loadgen::write_outputs(&merged, out)?;
    print!("{}", report::table::render_summary(&merged, &summary));
    Ok(exit_code(&summary))
}
