//! Runs a plan: starts the workers, waits until every client is open, starts the measured
//! phase at a common `t0`, stops it, samples the server, merges every worker's result.

use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use crate::engine::workers::{Command, WorkerHandle, spawn_child, spawn_local};
use crate::engine::{Driver, WorkerEvent};
use crate::measure::accepted::{self, Missed};
use crate::measure::loss::LossTotals;
use crate::measure::procfs::{self, MemSample};
use crate::measure::stats::Counters;
use crate::measure::tally::Tally;
use crate::plan::{Plan, Scenario};
use crate::report::progress::{Progress, Stage};
use crate::result::{RunResult, ServerReport, Warning, WarningKind};
use crate::time::now_ns;

/// Delay between "every client is open" and `t0`, so every worker sees the start in time.
const START_DELAY: Duration = Duration::from_millis(200);
/// How long after the start an idle run first samples the server's memory.
const IDLE_SETTLE: Duration = Duration::from_secs(1);
/// An idle run samples the server's memory this often while the clients are held.
const MEM_SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// The coordinator sleeps at most this long when nothing is due (a safety net: every deadline it
/// keeps is computed, and workers' events wake it).
const WAKE_MAX: Duration = Duration::from_secs(1);

/// How to run beyond the plan itself.
#[derive(Debug, Clone, Default)]
pub struct Observe {
    /// The server under test, for /proc sampling.
    pub server_pid: Option<u32>,
    /// The binary worker processes run (`tickcast-loadgen`); default: this executable.
    pub worker_exe: Option<std::path::PathBuf>,
}

/// Runs `plan`; `progress` prints (and logs) while it runs.
pub fn run(
    plan: &Plan,
    driver: &'static dyn Driver,
    observe: Observe,
    progress: &mut Progress,
) -> anyhow::Result<RunResult> {
    tickcast_uring::raise_nofile_limit();
    let server_before = observe.server_pid.map(procfs::mem_sample).transpose()?;
    let (tx, rx) = crossbeam_channel::unbounded();
    let slices = plan.slices();
    let mut workers: Vec<Box<dyn WorkerHandle>> = Vec::with_capacity(slices.len());
    for slice in &slices {
        workers.push(if plan.workers <= 1 {
            spawn_local(plan, *slice, tx.clone(), driver)
        } else {
            spawn_child(plan, *slice, tx.clone(), observe.worker_exe.as_deref())?
        });
    }
    drop(tx);
    let began = Instant::now();
    let connect_deadline = began + connect_budget(plan);
    let n = workers.len();
    let mut state = RunState::default();
    let mut latest = vec![Counters::default(); n];
    let mut results: Vec<Tally> = Vec::new();
    let mut warnings = Vec::new();
    let mut finished = 0;
    while finished < n {
        // Block until an event arrives or the next thing this loop does is due. A short fixed
        // timeout here woke the coordinator 100 times a second, and each blocking receive of
        // crossbeam spins and calls `sched_yield` before it parks: about 1-2 % of the core the
        // load generator measures on.
        let samples_memory = observe.server_pid.is_some();
        let wake = next_wake(plan, &state, &*progress, Instant::now(), connect_deadline, samples_memory);
        match rx.recv_deadline(wake) {
            Ok(WorkerEvent::Progress { worker, counters, interval }) => {
                latest[worker] = *counters;
                progress.add_interval(&interval);
            }
            Ok(WorkerEvent::Ready { .. }) => state.ready += 1,
            Ok(WorkerEvent::PublishEnded { end_ns, .. }) => {
                if let (Some(t0), Some(end)) = (state.t0, state.measure_end) {
                    let published_for = Duration::from_nanos(end_ns.saturating_sub(state.t0_ns));
                    state.measure_end = Some(end.min(t0 + published_for));
                }
            }
            Ok(WorkerEvent::Settled { .. }) => state.settled = true,
            Ok(WorkerEvent::Done(result)) => {
                finished += 1;
                latest[result.worker] = result.counters;
                results.push(*result);
            }
            Ok(WorkerEvent::Failed { worker, error }) => {
                finished += 1;
                let message = format!("worker {worker} failed: {error}");
                warnings.push(Warning::new(WarningKind::WorkerFailed, message, &[("worker", worker as f64)]));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        if state.ready == n && state.t0.is_none() && !state.stopped {
            state.connect_seconds = began.elapsed().as_secs_f64();
            if plan.scenario == Scenario::Connect {
                broadcast(&mut workers, Command::Stop);
                state.stopped = true;
                progress.set_stage(Stage::Stopping);
            } else {
                let t0 = now + START_DELAY;
                let t0_ns = now_ns() + START_DELAY.as_nanos() as u64;
                broadcast(&mut workers, Command::Start { t0_ns });
                state.t0 = Some(t0);
                state.t0_ns = t0_ns;
                state.measure_end = Some(t0 + plan.stop.duration);
                progress.set_stage(Stage::Running(START_DELAY + plan.stop.duration + plan.drain()));
                state.server_cpu_start = observe.server_pid.map(server_cpu);
                state.self_cpu_start = procfs::self_cpu_seconds();
            }
        }
        if state.t0.is_none() && !state.stopped && now >= connect_deadline {
            let message = format!(
                "only {} of {} workers had opened every client after {:.0}s; stopped",
                state.ready,
                n,
                connect_budget(plan).as_secs_f64()
            );
            let figures = [("workers_ready", state.ready as f64), ("workers", n as f64)];
            warnings.push(Warning::new(WarningKind::ConnectIncomplete, message, &figures));
            broadcast(&mut workers, Command::Stop);
            state.stopped = true;
            progress.set_stage(Stage::Stopping);
        }
        if let (Some(t0), Some(pid)) = (state.t0, observe.server_pid)
            && plan.scenario == Scenario::Idle
            && !state.stopped
            && now >= t0 + IDLE_SETTLE.min(plan.stop.duration / 2)
            && state.next_mem_sample.is_none_or(|t| now >= t)
        {
            state.held = procfs::mem_sample(pid).ok().or(state.held);
            state.next_mem_sample = Some(now + MEM_SAMPLE_EVERY);
        }
        if let Some(end) = state.measure_end
            && now >= end
            && state.stop_at.is_none()
            && !state.stopped
        {
            // The measured phase is over; the drain only collects late arrivals.
            state.end_measured(end, observe.server_pid);
            broadcast(&mut workers, Command::Measured);
            state.stop_at = Some(end + plan.drain());
        }
        // A windowed run's drain ends as soon as nothing published is outstanding.
        let drained = state.settled && plan.drain_ends_early();
        if let Some(stop_at) = state.stop_at
            && (now >= stop_at || drained)
            && !state.stopped
        {
            broadcast(&mut workers, Command::Stop);
            state.stopped = true;
            progress.set_stage(Stage::Stopping);
            state.end_drain(now, observe.server_pid);
        }
        progress.tick(&latest, state.ready, n);
    }
    // Every client finished on its own (e.g. `--count` reached) before the planned stop.
    if state.t0.is_some() && !state.stopped {
        let now = Instant::now();
        if state.stop_at.is_none() {
            state.end_measured(now, observe.server_pid);
        }
        state.end_drain(now, observe.server_pid);
    }
    for worker in &mut workers {
        worker.wait();
    }
    progress.finish(&latest);
    let mut totals = Tally::default();
    for r in &results {
        totals.merge(r);
    }
    let loss = settle_loss(&mut totals, plan.workload.staleness, &mut warnings);
    if plan.workers <= 1 {
        totals.cpu_seconds = 0.0;
    }
    let loadgen_cpu_seconds = totals.cpu_seconds + procfs::self_cpu_seconds();
    let (totals_run_cpu, totals_drain_cpu) = (totals.run_cpu_seconds, totals.drain_cpu_seconds);
    let server = observe.server_pid.zip(server_before).map(|(pid, before)| {
        let [start, measured, end] = state.server_cpu;
        let (cpu_seconds, drain_cpu_seconds) = match (start, measured, end) {
            (Some(a), Some(m), Some(b)) => (m - a, b - m),
            _ => (0.0, 0.0),
        };
        ServerReport { pid, before, held: state.held, cpu_seconds, drain_cpu_seconds }
    });
    let mut result = RunResult {
        plan: plan.clone(),
        totals,
        loss,
        connect_seconds: state.connect_seconds,
        run_seconds: state.run_seconds,
        drain_seconds: state.drain_seconds,
        loadgen_cpu_seconds,
        loadgen_run_cpu_seconds: state.self_cpu_run + totals_run_cpu,
        loadgen_drain_cpu_seconds: state.self_cpu_drain + totals_drain_cpu,
        wall_seconds: began.elapsed().as_secs_f64(),
        server,
        warnings,
    };
    result.derive_warnings();
    Ok(result)
}

/// Loss over the accepted publishes: the tails (published after a subscription's last delivery)
/// from the publisher's count, then the refused and unanswered publishes taken out of the
/// expected deliveries, the holes and the tails (`accepted.rs`).
fn settle_loss(totals: &mut Tally, staleness: bool, warnings: &mut Vec<Warning>) -> LossTotals {
    let mut loss = totals.loss;
    let tails = totals.expected_published().saturating_sub(totals.seq_max_sum);
    let unaccepted = [&totals.refused, &totals.unanswered];
    let settled = accepted::settle(&unaccepted, totals.channels(), &totals.subscriptions, &totals.missed);
    // What subscriptions skipped across a reset was lost with the old history and announced,
    // except the publishes the server refused or never answered (not the server's to lose).
    let channels = totals.channels();
    let published = totals.published;
    let across_resets =
        totals.reset_missed.total(|c| crate::measure::channels::published_on(c, published, channels));
    let refused_in_resets = accepted::unaccepted_in(&unaccepted, channels, &totals.reset_missed);
    totals.counters.reset_announced = across_resets.saturating_sub(refused_in_resets);
    totals.reset_missed = Missed::default();
    totals.unaccepted_expected = settled.unexpected;
    loss.tail_missing = tails.saturating_sub(settled.tails);
    if staleness {
        // Conflation: a skipped value counted as superseded, not as missing.
        totals.counters.superseded = totals.counters.superseded.saturating_sub(settled.holes);
    } else {
        loss.missing = loss.missing.saturating_sub(settled.holes);
    }
    loss.delivered = loss.delivered.saturating_sub(settled.delivered);
    loss.delivered_unaccepted += settled.delivered;
    if settled.unexpected > 0 && totals.missed.untracked > 0 {
        let message = format!(
            "{} missed message(s) were only counted, not kept (subscriptions with more than {} holes): \
             refused or unanswered publishes among them count as loss",
            totals.missed.untracked,
            crate::measure::loss::MISSED_RANGES_MAX
        );
        let figures = [("messages", totals.missed.untracked as f64)];
        warnings.push(Warning::new(WarningKind::UntrackedMisses, message, &figures));
    }
    // Spent, and possibly large: the settled figures stay.
    totals.missed = Missed::default();
    loss
}

#[derive(Default)]
struct RunState {
    ready: usize,
    t0: Option<Instant>,
    t0_ns: u64,
    /// When the measured phase ends: `t0` + duration, or earlier when the publisher says so.
    measure_end: Option<Instant>,
    /// Set once the measured phase ended: the end of the drain.
    stop_at: Option<Instant>,
    /// The publisher has nothing outstanding (`WorkerEvent::Settled`).
    settled: bool,
    stopped: bool,
    connect_seconds: f64,
    run_seconds: f64,
    drain_seconds: f64,
    held: Option<MemSample>,
    next_mem_sample: Option<Instant>,
    /// The server's CPU seconds at the start, the end of the measured phase and the stop.
    server_cpu_start: Option<f64>,
    server_cpu: [Option<f64>; 3],
    self_cpu_start: f64,
    self_cpu_run: f64,
    self_cpu_drain: f64,
}

impl RunState {
    /// The measured phase ended at `end`: its length, and the CPU it took.
    fn end_measured(&mut self, end: Instant, server_pid: Option<u32>) {
        self.run_seconds = self.t0.map_or(0.0, |t0| end.saturating_duration_since(t0).as_secs_f64());
        self.server_cpu = [self.server_cpu_start, server_pid.map(server_cpu), None];
        self.self_cpu_run = procfs::self_cpu_seconds() - self.self_cpu_start;
        self.measure_end = Some(end);
    }

    /// The drain ended (the run stops) at `now`.
    fn end_drain(&mut self, now: Instant, server_pid: Option<u32>) {
        let end = self.measure_end.unwrap_or(now);
        self.drain_seconds = now.saturating_duration_since(end).as_secs_f64();
        self.server_cpu[2] = server_pid.map(server_cpu);
        self.self_cpu_drain = procfs::self_cpu_seconds() - self.self_cpu_start - self.self_cpu_run;
    }
}

/// When the coordinator's loop next has something to do without an event: the progress line,
/// the connect deadline, an idle run's memory sample, the stop.
fn next_wake(
    plan: &Plan,
    state: &RunState,
    progress: &Progress,
    now: Instant,
    connect_deadline: Instant,
    samples_memory: bool,
) -> Instant {
    let mut wake = (now + WAKE_MAX).min(progress.next_due(now));
    if state.stopped {
        return wake;
    }
    match state.t0 {
        None => wake = wake.min(connect_deadline),
        Some(t0) => {
            if plan.scenario == Scenario::Idle && samples_memory {
                let first = t0 + IDLE_SETTLE.min(plan.stop.duration / 2);
                wake = wake.min(state.next_mem_sample.unwrap_or(first).max(first));
            }
        }
    }
    match (state.stop_at, state.measure_end) {
        (Some(stop_at), _) => wake = wake.min(stop_at),
        (None, Some(end)) => wake = wake.min(end),
        (None, None) => {}
    }
    wake
}

/// How long opening every client may take: the connect schedule plus a margin.
fn connect_budget(plan: &Plan) -> Duration {
    let paced = match plan.clients.connect {
        crate::plan::Schedule::Open { per_second } if per_second > 0.0 => {
            Duration::from_secs_f64(plan.clients.count as f64 / per_second)
        }
        _ => Duration::ZERO,
    };
    paced + Duration::from_secs(60)
}

fn server_cpu(pid: u32) -> f64 {
    procfs::cpu_seconds(pid).map(|(u, s)| u + s).unwrap_or(0.0)
}

fn broadcast(workers: &mut [Box<dyn WorkerHandle>], cmd: Command) {
    for w in workers.iter_mut() {
        w.command(cmd);
    }
}
