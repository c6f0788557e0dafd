//! Capacity searches built from `rate` runs: `ramp` steps the publish rate or the number of
//! clients until a step breaks the SLO (`--slo-p99`) or stops delivering, and reports the last
//! good step; `saturate` doubles the rate until delivery stops tracking it, then bisects, and
//! reports the highest sustained deliveries per second.
//!
//! Each step is a complete run of its own plan (connect, measure, stop): slower than moving one
//! set of connections from step to step, but every step is measured exactly like a `rate` run.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cli::Outputs;
use crate::engine::coordinator::Observe;
use crate::plan::{Plan, Schedule};
use crate::report::progress::fmt_ns;
use crate::result::summary::Verdict;
use crate::result::{RunResult, SCHEMA, Summary, Threshold, WarningKind};

/// A step passes only if at least this share of the expected deliveries arrived.
pub const DELIVERED_MIN: f64 = 0.99;
/// A step fails if more than this share of its publishes was refused or never answered (they
/// are not expected, so a server refusing under load must not pass on what it accepted).
pub const UNACCEPTED_MAX: f64 = 0.01;
/// Bisection steps after `saturate` found a failing rate.
const BISECT_STEPS: usize = 4;

/// What changes from step to step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Stepping {
    /// Publish rate `start + k * step` (messages/s).
    Rate { start: f64, step: f64 },
    /// Clients `start + k * step`.
    Clients { start: u64, step: u64 },
}

/// One step's figures and verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepOutcome {
    pub rate: f64,
    pub clients: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    pub delivered_ratio: f64,
    pub deliveries_per_second: f64,
    pub ok: bool,
    /// Why the step failed.
    pub reason: Option<String>,
    pub result: RunResult,
}

/// Judges a finished rate run against the SLO.
pub fn judge(r: &RunResult, slo_p99: Option<Duration>) -> StepOutcome {
    let latency = r.totals.hists.get("latency").cloned().unwrap_or_default();
    let expected = r.totals.expected();
    let delivered_ratio = if expected == 0 { 0.0 } else { r.loss.delivered as f64 / expected as f64 };
    let p99_ns = latency.at(0.99);
    let c = &r.totals.counters;
    let unaccepted = c.publish_refused + c.publish_unanswered;
    let mut reason = None;
    if delivered_ratio < DELIVERED_MIN {
        reason = Some(format!("delivered {:.1}% of expected", delivered_ratio * 100.0));
    } else if unaccepted as f64 > r.totals.published as f64 * UNACCEPTED_MAX {
        reason = Some(format!("{unaccepted} of {} publishes refused or unanswered", r.totals.published));
    } else if let Some(slo) = slo_p99
        && p99_ns > slo.as_nanos() as u64
    {
        reason = Some(format!("p99 {} > SLO {}", fmt_ns(p99_ns), fmt_ns(slo.as_nanos() as u64)));
    } else if r.warnings.iter().any(|w| w.kind == WarningKind::LoadgenBusy) {
        reason = Some("the load generator was busy: inconclusive".into());
    }
    StepOutcome {
        rate: match r.plan.workload.schedule {
            Schedule::Open { per_second } => per_second,
            _ => 0.0,
        },
        clients: r.plan.clients.count,
        p50_ns: latency.at(0.5),
        p99_ns,
        max_ns: latency.at(1.0),
        delivered_ratio,
        // The one definition of deliveries per second (the summary's).
        deliveries_per_second: Summary::of(r, &[]).messages.deliveries_per_s.unwrap_or(0.0),
        ok: reason.is_none(),
        reason,
        result: r.clone(),
    }
}

fn with_rate(base: &Plan, rate: f64) -> Plan {
    let mut plan = base.clone();
    plan.workload.schedule = Schedule::Open { per_second: rate };
    plan
}

fn step_plan(base: &Plan, stepping: Stepping, k: usize) -> Plan {
    match stepping {
        Stepping::Rate { start, step } => with_rate(base, start + k as f64 * step),
        Stepping::Clients { start, step } => {
            let mut plan = base.clone();
            plan.clients.count = start + k as u64 * step;
            plan
        }
    }
}

fn run_step(
    plan: &Plan,
    observe: &Observe,
    slo: Option<Duration>,
    quiet: bool,
) -> anyhow::Result<StepOutcome> {
    let r = super::run::run(plan, observe.clone(), &Outputs::default(), quiet)?;
    let outcome = judge(&r, slo);
    if !quiet {
        eprintln!("{}", step_line(&outcome));
    }
    Ok(outcome)
}

/// Steps until one fails or `max_steps` ran.
pub fn ramp(
    base: &Plan,
    stepping: Stepping,
    max_steps: usize,
    slo_p99: Option<Duration>,
    observe: &Observe,
    quiet: bool,
) -> anyhow::Result<Vec<StepOutcome>> {
    let mut steps = Vec::new();
    for k in 0..max_steps.max(1) {
        let outcome = run_step(&step_plan(base, stepping, k), observe, slo_p99, quiet)?;
        let ok = outcome.ok;
        steps.push(outcome);
        if !ok {
            break;
        }
    }
    Ok(steps)
}

/// Doubles the rate from `start` until a step fails, then bisects between the last good and the
/// first failing rate.
pub fn saturate(
    base: &Plan,
    start: f64,
    max_steps: usize,
    observe: &Observe,
    quiet: bool,
) -> anyhow::Result<Vec<StepOutcome>> {
    let mut steps = Vec::new();
    let (mut good, mut bad) = (None::<f64>, None::<f64>);
    let mut rate = start;
    for _ in 0..max_steps.max(1) {
        let outcome = run_step(&with_rate(base, rate), observe, None, quiet)?;
        let ok = outcome.ok;
        steps.push(outcome);
        if ok {
            good = Some(rate);
            rate *= 2.0;
        } else {
            bad = Some(rate);
            break;
        }
    }
    if let (Some(mut lo), Some(mut hi)) = (good, bad) {
        for _ in 0..BISECT_STEPS {
            let mid = (lo + hi) / 2.0;
            let outcome = run_step(&with_rate(base, mid), observe, None, quiet)?;
            if outcome.ok {
                lo = mid;
            } else {
                hi = mid;
            }
            steps.push(outcome);
        }
    }
    Ok(steps)
}

/// The last passing step, if any.
pub fn last_good(steps: &[StepOutcome]) -> Option<&StepOutcome> {
    steps.iter().filter(|s| s.ok).max_by(|a, b| a.deliveries_per_second.total_cmp(&b.deliveries_per_second))
}

pub fn step_line(s: &StepOutcome) -> String {
    format!(
        "| {:>10.0} | {:>8} | {:>10.0} | {:>6.2}% | {:>9} | {:>9} | {:>9} | {} |",
        s.rate,
        s.clients,
        s.deliveries_per_second,
        s.delivered_ratio * 100.0,
        fmt_ns(s.p50_ns),
        fmt_ns(s.p99_ns),
        fmt_ns(s.max_ns),
        s.reason.as_deref().unwrap_or("ok")
    )
}

pub fn render(steps: &[StepOutcome], what: &str) -> String {
    let mut out = String::from(
        "\n|  rate (/s) |  clients | deliveries/s | delivered |      p50 |      p99 |      max | verdict |\n\
         |---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for s in steps {
        out.push_str(&step_line(s));
        out.push('\n');
    }
    match last_good(steps) {
        Some(s) => out.push_str(&format!(
            "\n{what}: {:.0} deliveries/s ({} clients x {:.0} msg/s), p99 {}\n",
            s.deliveries_per_second,
            s.clients,
            s.rate,
            fmt_ns(s.p99_ns)
        )),
        None => out.push_str(&format!("\n{what}: no step passed\n")),
    }
    out
}

/// One step in a `--json` file of `ramp` or `saturate --search`: the run's own object (its
/// keys, `schema`, `summary`) and the step's verdict.
#[derive(Debug, Serialize)]
pub struct StepFile<'a> {
    pub schema: u32,
    #[serde(flatten)]
    pub result: &'a RunResult,
    pub summary: Summary,
    pub step: StepVerdict<'a>,
}

/// A step's verdict (`step` in its object).
#[derive(Debug, Serialize)]
pub struct StepVerdict<'a> {
    pub rate: f64,
    pub clients: u64,
    pub ok: bool,
    pub reason: Option<&'a str>,
    pub delivered_ratio: f64,
}

/// The `--json` file of a search: the summary of the whole search (the best step's figures
/// under the search's name, with the verdict, judged against `limits`) and every step.
#[derive(Debug, Serialize)]
pub struct StepsFile<'a> {
    pub schema: u32,
    pub summary: Option<Summary>,
    pub steps: Vec<StepFile<'a>>,
}

/// Builds the `--json` file of `steps`; `scenario` is `ramp` or `saturate`.
pub fn steps_file<'a>(steps: &'a [StepOutcome], scenario: &str, limits: &[Threshold]) -> StepsFile<'a> {
    let files: Vec<StepFile<'a>> = steps
        .iter()
        .map(|s| StepFile {
            schema: SCHEMA,
            result: &s.result,
            summary: Summary::of(&s.result, &[]),
            step: StepVerdict {
                rate: s.rate,
                clients: s.clients,
                ok: s.ok,
                reason: s.reason.as_deref(),
                delivered_ratio: s.delivered_ratio,
            },
        })
        .collect();
    let best = steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.ok)
        .max_by(|a, b| a.1.deliveries_per_second.total_cmp(&b.1.deliveries_per_second));
    // Without a passing step the summary describes the last one (and says none passed).
    let shown = best.map(|(i, _)| i).or(steps.len().checked_sub(1));
    let summary = shown.map(|i| {
        let mut summary = Summary::of(&steps[i].result, limits);
        summary.scenario = scenario.to_string();
        summary.verdict = Some(Verdict {
            steps: steps.len(),
            passed_steps: steps.iter().filter(|s| s.ok).count(),
            best_step: best.map(|(i, _)| i),
            rate: best.map(|(_, s)| s.rate),
            clients: best.map(|(_, s)| s.clients),
            stopped_by: steps.iter().find(|s| !s.ok).and_then(|s| s.reason.clone()),
        });
        summary
    });
    StepsFile { schema: SCHEMA, summary, steps: files }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, plan_of};

    fn base() -> Plan {
        let cli = <Cli as clap::Parser>::try_parse_from(["lg", "rate", "--rate", "100", "--clients", "10"])
            .unwrap();
        plan_of(&cli.command).unwrap().0
    }

    /// 10 subscribers, `published` messages, `refused` of them refused, every accepted one
    /// delivered, in 1 s.
    fn refusing(published: u64, refused: u64) -> RunResult {
        let totals = crate::measure::tally::Tally {
            published,
            subscriptions: vec![10],
            unaccepted_expected: 10 * refused,
            counters: crate::measure::stats::Counters {
                publish_ok: published - refused,
                publish_refused: refused,
                ..Default::default()
            },
            ..Default::default()
        };
        let loss =
            crate::measure::loss::LossTotals { delivered: 10 * (published - refused), ..Default::default() };
        RunResult {
            plan: base(),
            totals,
            loss,
            connect_seconds: 0.1,
            run_seconds: 1.0,
            drain_seconds: 1.0,
            loadgen_cpu_seconds: 0.1,
            loadgen_run_cpu_seconds: 0.1,
            loadgen_drain_cpu_seconds: 0.0,
            wall_seconds: 2.1,
            server: None,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn a_ramp_file_summarises_its_best_step() {
        let steps = vec![judge(&refusing(1000, 0), None), judge(&refusing(1000, 20), None)];
        let limits = [Threshold::Loss { max: 0 }];
        let file = steps_file(&steps, "ramp", &limits);
        let json = serde_json::to_value(&file).unwrap();
        assert_eq!(json["schema"], 2);
        assert_eq!(json["summary"]["scenario"], "ramp");
        assert_eq!(json["summary"]["verdict"]["best_step"], 0);
        assert_eq!(json["summary"]["verdict"]["passed_steps"], 1);
        assert_eq!(json["summary"]["messages"]["deliveries_per_s"], 10_000.0);
        assert_eq!(json["summary"]["passed"], true);
        assert_eq!(json["steps"].as_array().unwrap().len(), 2);
        assert_eq!(json["steps"][1]["step"]["ok"], false);
        assert_eq!(json["steps"][1]["summary"]["scenario"], "rate");
        assert!(json["steps"][0]["totals"]["counters"].is_object(), "{}", json["steps"][0]);
    }

    #[test]
    fn a_step_whose_publishes_are_refused_fails() {
        let ok = judge(&refusing(1000, 10), None);
        assert!(ok.ok, "{:?}", ok.reason);
        assert_eq!(ok.delivered_ratio, 1.0);
        let refused = judge(&refusing(1000, 20), None);
        assert_eq!(refused.reason.as_deref(), Some("20 of 1000 publishes refused or unanswered"));
    }

    #[test]
    fn steps_change_one_thing() {
        let b = base();
        let p = step_plan(&b, Stepping::Rate { start: 100.0, step: 50.0 }, 2);
        assert_eq!(p.workload.schedule, Schedule::Open { per_second: 200.0 });
        assert_eq!(p.clients.count, 10);
        let p = step_plan(&b, Stepping::Clients { start: 10, step: 5 }, 3);
        assert_eq!(p.clients.count, 25);
        assert_eq!(p.workload.schedule, b.workload.schedule);
    }
}
