//! `tickcast-loadgen`: see `docs/loadgen.md`.

use clap::Parser;
use tickcast_loadgen::cli::{Cli, Command, plan_of};
use tickcast_loadgen::coordinator::Observe;
use tickcast_loadgen::search::Stepping;
use tickcast_loadgen::{report, search};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Worker => tickcast_loadgen::workers::worker_main(),
        Command::Merge { files, out } => merge(files, out),
        Command::Ramp { rate, rate_step, clients_step, max_steps, slo_p99, .. } => {
            let (plan, common) = plan_of(&cli.command)?;
            let stepping = if *clients_step > 0 {
                Stepping::Clients { start: plan.clients.count, step: *clients_step }
            } else {
                Stepping::Rate { start: *rate, step: *rate_step }
            };
            let observe = Observe { server_pid: common.server_pid, worker_exe: None };
            let steps = search::ramp(&plan, stepping, *max_steps, *slo_p99, &observe, common.quiet)?;
            finish_search(&steps, "capacity (last good step)", &common.out)
        }
        Command::Saturate { rate, max_steps, search: true, .. } => {
            let (plan, common) = plan_of(&cli.command)?;
            let observe = Observe { server_pid: common.server_pid, worker_exe: None };
            let steps = search::saturate(&plan, *rate, *max_steps, &observe, common.quiet)?;
            finish_search(&steps, "highest sustained rate", &common.out)
        }
        command => {
            let (plan, common) = plan_of(command)?;
            let observe = Observe { server_pid: common.server_pid, worker_exe: None };
            let result = tickcast_loadgen::run(&plan, observe, &common.out, common.quiet)?;
            print!("{}", report::table::render(&result));
            Ok(())
        }
    }
}

fn finish_search(
    steps: &[search::StepOutcome],
    what: &str,
    out: &tickcast_loadgen::cli::Outputs,
) -> anyhow::Result<()> {
    print!("{}", search::render(steps, what));
    if let Some(path) = &out.json {
        std::fs::write(path, serde_json::to_vec_pretty(steps)?)?;
    }
    if let (Some(path), Some(best)) = (&out.percentiles, search::last_good(steps)) {
        let h = best.result.totals.hists.get("latency").cloned().unwrap_or_default();
        report::files::write_percentiles(path, &h)?;
    }
    Ok(())
}

fn merge(files: &[std::path::PathBuf], out: &tickcast_loadgen::cli::Outputs) -> anyhow::Result<()> {
    anyhow::ensure!(!files.is_empty(), "merge needs at least one --json result file");
    let mut merged = report::files::read_json(&files[0])?;
    for path in &files[1..] {
        let other = report::files::read_json(path)?;
        anyhow::ensure!(
            other.plan.scenario == merged.plan.scenario,
            "{} is a {:?} run, not {:?}",
            path.display(),
            other.plan.scenario,
            merged.plan.scenario
        );
        tickcast_loadgen::coordinator::merge_into(&mut merged, &other);
    }
    tickcast_loadgen::write_outputs(&merged, out)?;
    print!("{}", report::table::render(&merged));
    Ok(())
}
