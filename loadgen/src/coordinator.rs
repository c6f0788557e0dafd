//! Runs a plan: starts the workers, waits until every client is open, starts the measured
//! phase at a common `t0`, stops it, samples the server, merges every worker's result.

use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use serde::{Deserialize, Serialize};

use crate::engine::{WorkerEvent, WorkerResult};
use crate::loss::LossTotals;
use crate::plan::{Plan, Scenario};
use crate::procfs::{self, MemSample};
use crate::report::progress::{Progress, Stage};
use crate::stats::Counters;
use crate::time::now_ns;
use crate::workers::{Command, WorkerHandle, spawn_child, spawn_local};

/// Delay between "every client is open" and `t0`, so every worker sees the start in time.
const START_DELAY: Duration = Duration::from_millis(200);
/// Rate: subscribers keep receiving this long after the publisher's last scheduled send.
const DRAIN: Duration = Duration::from_millis(1000);
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
}

/// One run's complete result: the plan, the merged measurements, and what they mean.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub plan: Plan,
    pub totals: WorkerResult,
    /// Loss including the tail (messages published after a subscriber's last one).
    pub loss: LossTotals,
    /// From the first connection attempt until every client was open.
    pub connect_seconds: f64,
    /// The measured phase.
    pub run_seconds: f64,
    /// CPU seconds of every load-generator process (coordinator included), whole run.
    pub loadgen_cpu_seconds: f64,
    /// CPU seconds of every load-generator process during the measured phase.
    pub loadgen_run_cpu_seconds: f64,
    /// Wall time of the whole run (connecting included).
    pub wall_seconds: f64,
    pub server: Option<ServerReport>,
    pub warnings: Vec<String>,
}

/// Runs `plan`; `progress` prints (and logs) while it runs.
pub fn run(plan: &Plan, observe: Observe, progress: &mut Progress) -> anyhow::Result<RunResult> {
    crate::net::raise_nofile_limit();
    let server_before = observe.server_pid.map(procfs::mem_sample).transpose()?;
    let (tx, rx) = crossbeam_channel::unbounded();
    let slices = plan.slices();
    let mut workers: Vec<Box<dyn WorkerHandle>> = Vec::with_capacity(slices.len());
    for slice in &slices {
        workers.push(if plan.workers <= 1 {
            spawn_local(plan, *slice, tx.clone())
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
    let mut results: Vec<WorkerResult> = Vec::new();
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
            Ok(WorkerEvent::Done(result)) => {
                finished += 1;
                latest[result.worker] = result.counters;
                results.push(*result);
            }
            Ok(WorkerEvent::Failed { worker, error }) => {
                finished += 1;
                warnings.push(format!("worker {worker} failed: {error}"));
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
                let drain = if plan.scenario == Scenario::Rate { DRAIN } else { Duration::ZERO };
                state.t0 = Some(t0);
                state.stop_at = Some(t0 + plan.stop.duration + drain);
                progress.set_stage(Stage::Running(START_DELAY + plan.stop.duration + drain));
                state.server_cpu_start = observe.server_pid.map(server_cpu);
                state.self_cpu_start = procfs::self_cpu_seconds();
            }
        }
        if state.t0.is_none() && !state.stopped && now >= connect_deadline {
            warnings.push(format!(
                "only {} of {} workers had opened every client after {:?}; stopped",
                state.ready,
                n,
                connect_budget(plan)
            ));
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
        if let Some(stop_at) = state.stop_at
            && now >= stop_at
            && !state.stopped
        {
            broadcast(&mut workers, Command::Stop);
            state.stopped = true;
            progress.set_stage(Stage::Stopping);
            state.run_seconds = state.t0.map_or(0.0, |t0| (now - t0).as_secs_f64());
            state.server_cpu_end = observe.server_pid.map(server_cpu);
            state.self_cpu_run = procfs::self_cpu_seconds() - state.self_cpu_start;
        }
        progress.tick(&latest, state.ready, n);
    }
    // Every client finished on its own (e.g. `--count` reached) before the planned stop.
    if let Some(t0) = state.t0
        && !state.stopped
    {
        state.run_seconds = t0.elapsed().as_secs_f64();
        state.server_cpu_end = observe.server_pid.map(server_cpu);
        state.self_cpu_run = procfs::self_cpu_seconds() - state.self_cpu_start;
    }
    for worker in &mut workers {
        worker.wait();
    }
    progress.finish(&latest);
    let mut totals = WorkerResult::default();
    for r in &results {
        totals.merge(r);
    }
    let mut loss = totals.loss;
    loss.tail_missing = totals.expected().saturating_sub(totals.seq_max_sum);
    if plan.workers <= 1 {
        totals.cpu_seconds = 0.0;
    }
    let loadgen_cpu_seconds = totals.cpu_seconds + procfs::self_cpu_seconds();
    let totals_run_cpu = totals.run_cpu_seconds;
    let server = observe.server_pid.zip(server_before).map(|(pid, before)| ServerReport {
        pid,
        before,
        held: state.held,
        cpu_seconds: match (state.server_cpu_start, state.server_cpu_end) {
            (Some(a), Some(b)) => b - a,
            _ => 0.0,
        },
    });
    let mut result = RunResult {
        plan: plan.clone(),
        totals,
        loss,
        connect_seconds: state.connect_seconds,
        run_seconds: state.run_seconds,
        loadgen_cpu_seconds,
        loadgen_run_cpu_seconds: state.self_cpu_run + totals_run_cpu,
        wall_seconds: began.elapsed().as_secs_f64(),
        server,
        warnings,
    };
    result.warnings.extend(crate::report::warnings(&result));
    Ok(result)
}

#[derive(Default)]
struct RunState {
    ready: usize,
    t0: Option<Instant>,
    stop_at: Option<Instant>,
    stopped: bool,
    connect_seconds: f64,
    run_seconds: f64,
    held: Option<MemSample>,
    next_mem_sample: Option<Instant>,
    server_cpu_start: Option<f64>,
    server_cpu_end: Option<f64>,
    self_cpu_start: f64,
    self_cpu_run: f64,
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
    if let Some(stop_at) = state.stop_at {
        wake = wake.min(stop_at);
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

/// Merges another run (another process or host) into `into`: counters, histograms and loss
/// add up; clients add up; times take the longer; CPU adds up.
pub fn merge_into(into: &mut RunResult, other: &RunResult) {
    into.totals.merge(&other.totals);
    into.loss.merge(&other.loss);
    into.plan.clients.count += other.plan.clients.count;
    into.plan.workers += other.plan.workers;
    into.connect_seconds = into.connect_seconds.max(other.connect_seconds);
    into.run_seconds = into.run_seconds.max(other.run_seconds);
    into.wall_seconds = into.wall_seconds.max(other.wall_seconds);
    into.loadgen_cpu_seconds += other.loadgen_cpu_seconds;
    into.loadgen_run_cpu_seconds += other.loadgen_run_cpu_seconds;
    into.warnings.extend(other.warnings.iter().cloned());
}
