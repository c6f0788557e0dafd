//! Runs one worker's share of a plan: `plan.threads` threads, each with its own tokio-uring
//! runtime (thread per core), each owning a contiguous range of the worker's clients.
//!
//! Phases, driven by `Control` (set by the coordinator, in this process or over a pipe):
//! connecting (clients open on the plan's connect schedule) -> running from `t0` (the common
//! start, wall clock) -> stopping. Statistics live in each thread (no atomics or locks on the
//! per-message path); a ticker task publishes a snapshot every `TICK` for progress reports.
//!
//! What the threads run is the scenarios layer's `Driver`, handed down once: the engine names no
//! scenario and no transport. `coordinator.rs` runs a whole plan over workers (`workers.rs`:
//! threads of this process, or child processes speaking JSON lines).

pub mod coordinator;
pub mod workers;

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::task::JoinHandle;

use crate::measure::stats::{Counters, Hist};
use crate::measure::tally::{Tally, ThreadStats};
use crate::plan::{Plan, Slice, split};
use crate::time::now_ns;

/// A task of a load thread (tokio-uring tasks are not `Send`).
pub type LocalTask = Pin<Box<dyn Future<Output = ()>>>;

/// What the engine runs, picked once per run by the scenarios layer (`scenarios::DRIVER`): the
/// engine owns threads, phases and control, and knows no scenario or transport.
pub trait Driver: Sync {
    /// Called once per load thread that has clients, before they start: the thread's own
    /// tasks (awaited with the clients), e.g. a receive ring shared by its connections.
    fn start_thread(&self, ctx: &Rc<Ctx>, phase: &watch::Receiver<Phase>) -> Vec<JoinHandle<()>>;
    /// Client `index` (global): opens, runs the scenario until stopped, accounts into
    /// `ctx.stats`; calls `ready.finished()` once its opening ended, either way.
    fn client(
        &self,
        ctx: Rc<Ctx>,
        index: u64,
        permit: OwnedSemaphorePermit,
        ready: Rc<ReadyCounter>,
        phase: watch::Receiver<Phase>,
    ) -> LocalTask;
    /// The publisher, on its own thread of the first worker.
    fn publisher(&self, ctx: Rc<Ctx>, phase: watch::Receiver<Phase>) -> LocalTask;
}

/// How often threads publish progress snapshots and look at `Control`.
const TICK: Duration = Duration::from_millis(20);
/// Workers report at least this often, so the coordinator's progress line is never stale.
const PROGRESS_MAX: Duration = Duration::from_millis(100);
/// A run that has not been stopped this long after its planned end stops by itself.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Opening one connection (TCP connect + upgrade) may take at most this long.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

pub use crate::phase::Phase;

/// Commands from the coordinator, shared by all threads of a worker.
#[derive(Debug, Default)]
pub struct Control {
    t0_ns: AtomicU64,
    stop: AtomicBool,
}

impl Control {
    pub fn start(&self, t0_ns: u64) {
        self.t0_ns.store(t0_ns.max(1), Ordering::Release);
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    pub fn phase(&self) -> Phase {
        if self.stop.load(Ordering::Acquire) {
            return Phase::Stopping;
        }
        match self.t0_ns.load(Ordering::Acquire) {
            0 => Phase::Connecting,
            t0_ns => Phase::Running { t0_ns },
        }
    }
}

/// A worker's messages to the coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// Cumulative counters and the latency recorded since the previous progress event.
    Progress {
        worker: usize,
        counters: Box<Counters>,
        interval: Hist,
    },
    /// Every client of this worker finished opening (successfully or not).
    Ready {
        worker: usize,
    },
    /// The publisher (first worker) sent its last message: the measured phase ends at `end_ns`
    /// (wall clock; the schedule's end, or earlier when `--count` or a failure ended it).
    PublishEnded {
        worker: usize,
        end_ns: u64,
    },
    /// After its last send, the publisher has nothing outstanding: every publish answered and,
    /// in a windowed run, every accepted message delivered (or announced lost) to every
    /// subscriber. A windowed run's drain ends here.
    Settled {
        worker: usize,
    },
    Done(Box<Tally>),
    Failed {
        worker: usize,
        error: String,
    },
}

/// State shared by a worker's threads.
struct Shared {
    control: Arc<Control>,
    publishing: Arc<PublishSignals>,
    snapshots: Mutex<Vec<Counters>>,
    interval: Mutex<Hist>,
    threads_ready: AtomicUsize,
    threads_done: AtomicUsize,
}

/// Per-thread context handed to every client task.
pub struct Ctx {
    pub plan: Plan,
    pub worker: usize,
    pub thread: usize,
    pub stats: Rc<RefCell<ThreadStats>>,
    /// Executors sharing the connect schedule (workers x threads).
    pub executors: usize,
    pub is_publisher: bool,
    /// Windowed runs: deliveries acknowledged to the publisher (shared by the worker's threads).
    pub window: Arc<crate::measure::deliveries::WindowState>,
    /// What the scenario keeps per thread (the receive ring of `rate --transport ws`), set by
    /// `Driver::start_thread`; the engine never looks inside.
    pub thread_state: RefCell<Option<Rc<dyn Any>>>,
    /// What the publisher tells its worker about the end of publishing.
    pub publishing: Arc<PublishSignals>,
}

/// What a thread's `Ctx` is made of: sent to the thread, which makes its `Ctx` there (a `Ctx`
/// holds thread-local state and is not `Send`).
struct Seed {
    plan: Plan,
    worker: usize,
    thread: usize,
    executors: usize,
    is_publisher: bool,
    window: Arc<crate::measure::deliveries::WindowState>,
    publishing: Arc<PublishSignals>,
}

impl Seed {
    fn into_ctx(self) -> Ctx {
        Ctx {
            plan: self.plan,
            worker: self.worker,
            thread: self.thread,
            stats: Rc::default(),
            executors: self.executors,
            is_publisher: self.is_publisher,
            window: self.window,
            thread_state: RefCell::new(None),
            publishing: self.publishing,
        }
    }
}

/// The publisher's word to its worker (and through it to the coordinator), read every `TICK`.
#[derive(Debug, Default)]
pub struct PublishSignals {
    /// Wall-clock end of the publishing phase; 0 while publishing.
    ended_ns: AtomicU64,
    /// Nothing outstanding after the last send (see `WorkerEvent::Settled`).
    settled: AtomicBool,
}

impl PublishSignals {
    /// Publishing ended at `end_ns` (wall clock).
    pub fn ended(&self, end_ns: u64) {
        self.ended_ns.store(end_ns.max(1), Ordering::Release);
    }

    /// Nothing published is outstanding any more.
    pub fn settled(&self) {
        self.settled.store(true, Ordering::Release);
    }

    fn ended_ns(&self) -> Option<u64> {
        match self.ended_ns.load(Ordering::Acquire) {
            0 => None,
            ns => Some(ns),
        }
    }
}

/// Runs `slice` of `plan` on `plan.threads` threads; calls `emit` with progress and readiness;
/// returns when every client has finished.
pub fn run_worker(
    plan: &Plan,
    slice: Slice,
    control: Arc<Control>,
    emit: &(dyn Fn(WorkerEvent) + Sync),
    driver: &'static dyn Driver,
) -> Tally {
    let threads = plan.threads.max(1);
    // The publisher (first worker only) gets a thread of its own, so its schedule is kept with
    // blocking high-resolution sleeps and never waits behind the subscribers' work (see
    // `scenarios/publish.rs`). It inherits the process's CPU affinity: with `taskset -c 1` it
    // shares the load generator's core, where it sleeps between sends.
    let has_publisher = slice.worker == 0
        && plan.scenario == crate::plan::Scenario::Rate
        && plan.workload.publisher != crate::plan::Publisher::None;
    let all_threads = threads + usize::from(has_publisher);
    let publishing = Arc::new(PublishSignals::default());
    let shared = Arc::new(Shared {
        control,
        publishing: publishing.clone(),
        snapshots: Mutex::new(vec![Counters::default(); all_threads]),
        interval: Mutex::new(Hist::new()),
        threads_ready: AtomicUsize::new(0),
        threads_done: AtomicUsize::new(0),
    });
    let window = Arc::new(crate::measure::deliveries::WindowState::default());
    let parts = split(slice.count, threads);
    let mut handles: Vec<_> = parts
        .into_iter()
        .enumerate()
        .map(|(thread, (first, count))| {
            let ctx = Seed {
                plan: plan.clone(),
                worker: slice.worker,
                thread,
                executors: plan.workers.max(1) * threads,
                is_publisher: false,
                window: window.clone(),
                publishing: publishing.clone(),
            };
            let shared = shared.clone();
            let first = slice.first + first;
            std::thread::Builder::new()
                .name(format!("loadgen-{}-{thread}", slice.worker))
                .spawn(move || {
                    let out = tokio_uring::builder().entries(4096).start(thread_main(
                        driver,
                        Rc::new(ctx.into_ctx()),
                        first,
                        count,
                        shared.clone(),
                    ));
                    shared.threads_done.fetch_add(1, Ordering::AcqRel);
                    out
                })
                .expect("spawning a load thread")
        })
        .collect();
    if has_publisher {
        let ctx = Seed {
            plan: plan.clone(),
            worker: slice.worker,
            thread: threads,
            executors: plan.workers.max(1) * threads,
            is_publisher: true,
            window: window.clone(),
            publishing: publishing.clone(),
        };
        let shared = shared.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("loadgen-{}-pub", slice.worker))
                .spawn(move || {
                    let out = tokio_uring::builder().entries(256).start(publisher_main(
                        driver,
                        Rc::new(ctx.into_ctx()),
                        shared.clone(),
                    ));
                    shared.threads_done.fetch_add(1, Ordering::AcqRel);
                    out
                })
                .expect("spawning the publisher thread"),
        );
    }

    let mut ready_sent = false;
    let (mut ended_sent, mut settled_sent) = (false, false);
    let mut last_progress = Instant::now();
    loop {
        std::thread::sleep(TICK);
        if !ready_sent && shared.threads_ready.load(Ordering::Acquire) == threads {
            ready_sent = true;
            emit(WorkerEvent::Ready { worker: slice.worker });
        }
        if !ended_sent && let Some(end_ns) = shared.publishing.ended_ns() {
            ended_sent = true;
            emit(WorkerEvent::PublishEnded { worker: slice.worker, end_ns });
        }
        // After `PublishEnded` (the coordinator ends the measured phase before the drain).
        if ended_sent && !settled_sent && shared.publishing.settled.load(Ordering::Acquire) {
            settled_sent = true;
            emit(WorkerEvent::Settled { worker: slice.worker });
        }
        let done = shared.threads_done.load(Ordering::Acquire) == all_threads;
        if done || last_progress.elapsed() >= plan.progress_interval.min(PROGRESS_MAX) {
            last_progress = Instant::now();
            emit(progress(&shared, slice.worker));
        }
        if done {
            break;
        }
    }
    let mut result = Tally { worker: slice.worker, ..Tally::default() };
    for handle in handles {
        let stats = handle.join().expect("load thread panicked");
        result.merge(&stats.tally);
    }
    result.published_channels = plan.workload.channels.len();
    result
}

fn progress(shared: &Shared, worker: usize) -> WorkerEvent {
    let mut counters = Counters::default();
    for c in shared.snapshots.lock().expect("poisoned").iter() {
        counters.merge(c);
    }
    let interval = std::mem::take(&mut *shared.interval.lock().expect("poisoned"));
    WorkerEvent::Progress { worker, counters: Box::new(counters), interval }
}

async fn thread_main(
    driver: &'static dyn Driver,
    ctx: Rc<Ctx>,
    first: u64,
    count: u64,
    shared: Arc<Shared>,
) -> ThreadStats {
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let ticker = tokio_uring::spawn(ticker(ctx.clone(), shared.clone(), phase_tx));
    if count == 0 {
        shared.threads_ready.fetch_add(1, Ordering::AcqRel);
    }
    let mut tasks = Vec::with_capacity(count as usize + 1);
    if count > 0 {
        tasks.extend(driver.start_thread(&ctx, &phase_rx));
    }
    let schedule = ctx.plan.clients.connect.share(ctx.executors);
    let permits = Arc::new(tokio::sync::Semaphore::new(ctx.plan.clients.connect_concurrency.max(1)));
    let began = tokio::time::Instant::now();
    let ready = Rc::new(ReadyCounter { remaining: RefCell::new(count), shared: shared.clone() });
    for k in 0..count {
        if let Some(due) = schedule.due(k) {
            tokio::time::sleep_until(began + due).await;
        }
        let permit = permits.clone().acquire_owned().await.expect("semaphore never closed");
        if *phase_rx.borrow() == Phase::Stopping {
            ready.finished();
            continue;
        }
        tasks.push(tokio_uring::spawn(driver.client(
            ctx.clone(),
            first + k,
            permit,
            ready.clone(),
            phase_rx.clone(),
        )));
    }
    for task in tasks {
        let _ = task.await;
    }
    ticker.abort();
    let _ = ticker.await;
    publish_snapshot(&ctx, &shared);
    let mut stats = ctx.stats.take();
    stats.fold();
    stats
}

/// The publisher's own thread: its ticker (progress, `Control`) and the publisher task.
async fn publisher_main(driver: &'static dyn Driver, ctx: Rc<Ctx>, shared: Arc<Shared>) -> ThreadStats {
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let ticker = tokio_uring::spawn(ticker(ctx.clone(), shared.clone(), phase_tx));
    driver.publisher(ctx.clone(), phase_rx).await;
    ticker.abort();
    let _ = ticker.await;
    publish_snapshot(&ctx, &shared);
    let mut stats = ctx.stats.take();
    stats.fold();
    stats
}

/// Counts down the clients still opening; marks the thread ready at zero.
pub struct ReadyCounter {
    remaining: RefCell<u64>,
    shared: Arc<Shared>,
}

impl ReadyCounter {
    pub fn finished(&self) {
        let mut remaining = self.remaining.borrow_mut();
        *remaining -= 1;
        if *remaining == 0 {
            self.shared.threads_ready.fetch_add(1, Ordering::AcqRel);
        }
    }
}

fn publish_snapshot(ctx: &Ctx, shared: &Shared) {
    let mut stats = ctx.stats.borrow_mut();
    shared.snapshots.lock().expect("poisoned")[ctx.thread] = stats.tally.counters;
    let interval = std::mem::take(&mut stats.interval);
    shared.interval.lock().expect("poisoned").merge(&interval);
}

/// Every tick: publish a snapshot, follow `Control`, and stop a run that overstays its plan.
async fn ticker(ctx: Rc<Ctx>, shared: Arc<Shared>, phase_tx: watch::Sender<Phase>) {
    let mut tick = tokio::time::interval(TICK);
    let run_limit_ns = (ctx.plan.stop.duration + ctx.plan.drain() + STOP_GRACE).as_nanos() as u64;
    loop {
        tick.tick().await;
        publish_snapshot(&ctx, &shared);
        let mut phase = shared.control.phase();
        if let Phase::Running { t0_ns } = phase
            && now_ns() > t0_ns + run_limit_ns
        {
            phase = Phase::Stopping;
        }
        if *phase_tx.borrow() != phase {
            let _ = phase_tx.send(phase);
        }
    }
}

/// Waits until the run starts (the start command arrived *and* its `t0` has come, so every
/// client of every worker starts together); `None` if it is stopped first.
pub async fn wait_running(phase: &mut watch::Receiver<Phase>) -> Option<u64> {
    loop {
        let current = *phase.borrow_and_update();
        match current {
            Phase::Running { t0_ns } => {
                tokio::time::sleep_until(instant_at(t0_ns)).await;
                return Some(t0_ns);
            }
            Phase::Stopping => return None,
            Phase::Connecting => {}
        }
        if phase.changed().await.is_err() {
            return None;
        }
    }
}

/// Resolves when the run is stopping.
pub async fn wait_stopping(phase: &mut watch::Receiver<Phase>) {
    loop {
        if *phase.borrow_and_update() == Phase::Stopping {
            return;
        }
        if phase.changed().await.is_err() {
            return;
        }
    }
}

/// The local `Instant` that corresponds to wall-clock `t_ns`.
pub fn instant_at(t_ns: u64) -> tokio::time::Instant {
    let now_wall = now_ns();
    let now = tokio::time::Instant::now();
    if t_ns >= now_wall {
        now + Duration::from_nanos(t_ns - now_wall)
    } else {
        now.checked_sub(Duration::from_nanos(now_wall - t_ns)).unwrap_or(now)
    }
}
