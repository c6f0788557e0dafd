//! Reports: the live progress line, the final table, JSON, HdrHistogram percentile files and
//! interval logs, and warnings about what the figures do *not* show.

pub mod files;
pub mod progress;
pub mod table;

use crate::coordinator::RunResult;
use crate::plan::Scenario;

/// Above this share of its cores, the load generator may itself have been the limit.
const SELF_CPU_WARN: f64 = 0.85;
/// Below this share of the expected deliveries, throughput did not track the offered rate.
const DELIVERY_WARN: f64 = 0.99;

/// The histogram that is the scenario's headline.
pub fn main_metric(plan: &crate::plan::Plan) -> &'static str {
    match plan.scenario {
        Scenario::Echo => "rtt",
        Scenario::Rate if plan.workload.staleness => "staleness",
        Scenario::Rate => "latency",
        Scenario::Connect | Scenario::Idle => "handshake",
    }
}

/// Warnings about the run's validity, loudest first.
pub fn warnings(r: &RunResult) -> Vec<String> {
    let mut out = Vec::new();
    let processes = r.plan.workers.max(1) as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let threads = (r.plan.threads.max(1) as f64 * processes).min(cores);
    let (cpu, seconds) = if r.run_seconds > 0.0 {
        (r.loadgen_run_cpu_seconds, r.run_seconds)
    } else {
        (r.loadgen_cpu_seconds, r.wall_seconds)
    };
    if seconds > 0.0 {
        let share = cpu / (seconds * threads);
        if share > SELF_CPU_WARN {
            out.push(format!(
                "LOAD GENERATOR WAS BUSY: it used {:.0}% of its {} thread(s); it may have been the \
                 bottleneck, not the server (add --threads/--workers or pin it to its own core)",
                share * 100.0,
                threads
            ));
        }
    }
    let c = &r.totals.counters;
    if c.connect_failed + c.handshake_failed > 0 {
        out.push(format!(
            "{} connection(s) failed to open ({} TCP, {} handshake)",
            c.connect_failed + c.handshake_failed,
            c.connect_failed,
            c.handshake_failed
        ));
    }
    if c.disconnected > 0 {
        out.push(format!("{} connection(s) were cut off during the run", c.disconnected));
    }
    if r.plan.scenario == Scenario::Rate {
        let expected = r.totals.expected();
        if expected > 0 && (r.loss.delivered as f64) < expected as f64 * DELIVERY_WARN {
            out.push(format!(
                "DELIVERY DID NOT TRACK THE OFFERED RATE: {} of {} expected deliveries ({:.1}%); \
                 latency figures describe an unsustainable load",
                r.loss.delivered,
                expected,
                100.0 * r.loss.delivered as f64 / expected as f64
            ));
        }
    }
    if c.malformed > 0 {
        out.push(format!(
            "{} malformed answer(s) or event(s) from the server were counted and skipped",
            c.malformed
        ));
    }
    if r.plan.scenario == Scenario::Rate && c.publish_refused + c.publish_unanswered > 0 {
        out.push(format!(
            "{} of {} publish(es) were refused and {} never answered by the server: their messages are \
             neither expected nor counted as loss",
            c.publish_refused, r.totals.published, c.publish_unanswered
        ));
    }
    let silent = r.loss.lost().saturating_sub(c.gap_announced);
    if r.plan.scenario == Scenario::Rate && silent > 0 && !r.plan.workload.staleness {
        out.push(format!("{silent} message(s) were lost SILENTLY (no gap notice announced them)"));
    }
    if c.receives_unstamped * 100 > c.messages_received {
        out.push(format!(
            "{} receive(s) had no kernel timestamp (more than 1 % of the messages): their messages \
             are dated by the load generator's clock, its own queueing included",
            c.receives_unstamped
        ));
    }
    if c.sends_late > 0 && c.messages_sent > 0 {
        let late = c.sends_late as f64 / c.messages_sent as f64;
        if late > 0.01 {
            out.push(format!(
                "{:.1}% of sends left more than 1 ms after their scheduled time (latency is still \
                 measured from the schedule)",
                late * 100.0
            ));
        }
    }
    out
}
