//! Runs one worker's share of a plan: `plan.threads` threads, each with its own tokio-uring
//! runtime (thread per core), each owning a contiguous range of the worker's clients.
//!
//! Phases, driven by `Control` (set by the coordinator, in this process or over a pipe):
//! connecting (clients open on the plan's connect schedule) -> running from `t0` (the common
//! start, wall clock) -> stopping. Statistics live in each thread (no atomics or locks on the
//! per-message path); a ticker task publishes a snapshot every `TICK` for progress reports.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::accepted::{Missed, Ranges};
use crate::loss::LossTotals;
use crate::plan::{Plan, Slice, split};
use crate::stats::{Counters, Hist, Hists, merge_hists};
use crate::time::now_ns;

/// How often threads publish progress snapshots and look at `Control`.
const TICK: Duration = Duration::from_millis(20);
/// Workers report at least this often, so the coordinator's progress line is never stale.
const PROGRESS_MAX: Duration = Duration::from_millis(100);
/// A run that has not been stopped this long after its planned end stops by itself.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Opening one connection (TCP connect + upgrade) may take at most this long.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// The phase every client follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    /// Measure from `t0_ns` (wall clock).
    Running {
        t0_ns: u64,
    },
    Stopping,
}

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
    Done(Box<WorkerResult>),
    Failed {
        worker: usize,
        error: String,
    },
}

/// Everything one worker measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    pub worker: usize,
    pub counters: Counters,
    pub hists: Hists,
    /// Loss totals without the tail (see `seq_max_sum`).
    pub loss: LossTotals,
    /// Subscriber streams tracked (clients x publishers).
    pub streams: u64,
    /// Sum over streams of the highest sequence received: with the publisher's count `p`,
    /// `streams * p - seq_max_sum` messages were lost at the tail.
    pub seq_max_sum: u64,
    /// Messages the publisher(s) of this worker sent.
    pub published: u64,
    /// Of those, the ones the server refused, as ranges of message indices (0-based, see
    /// `channels::route`).
    #[serde(default, skip_serializing_if = "Ranges::is_empty")]
    pub refused: Ranges,
    /// Of those, the ones the server never answered.
    #[serde(default, skip_serializing_if = "Ranges::is_empty")]
    pub unanswered: Ranges,
    /// Which seqs the subscriptions missed; the coordinator settles the refused and unanswered
    /// publishes against it, then drops it.
    #[serde(default, skip_serializing_if = "Missed::is_empty")]
    pub missed: Missed,
    /// Deliveries not expected because their publish was refused or unanswered (subscriptions
    /// of a channel x such publishes on it), set by the coordinator; `expected` leaves them out.
    #[serde(default)]
    pub unaccepted_expected: u64,
    /// Subscriber streams per channel index (with `published`, the expected deliveries).
    #[serde(default)]
    pub subscriptions: Vec<u64>,
    /// Channels the publisher spread its messages over (0: unknown, as many as subscribed).
    #[serde(default)]
    pub published_channels: usize,
    /// CPU seconds (user + system) this worker process used; 0 when not a separate process.
    pub cpu_seconds: f64,
    /// The part of `cpu_seconds` spent in the measured phase (from the start command to the end
    /// of publishing).
    pub run_cpu_seconds: f64,
    /// The part of `cpu_seconds` spent in the drain (from the end of publishing to the stop).
    #[serde(default)]
    pub drain_cpu_seconds: f64,
}

impl WorkerResult {
    pub fn merge(&mut self, o: &WorkerResult) {
        self.counters.merge(&o.counters);
        merge_hists(&mut self.hists, &o.hists);
        self.loss.merge(&o.loss);
        self.streams += o.streams;
        self.seq_max_sum += o.seq_max_sum;
        self.published += o.published;
        self.refused.merge(&o.refused);
        self.unanswered.merge(&o.unanswered);
        self.missed.merge(&o.missed);
        self.unaccepted_expected += o.unaccepted_expected;
        self.published_channels = self.published_channels.max(o.published_channels);
        add_counts(&mut self.subscriptions, &o.subscriptions);
        self.cpu_seconds += o.cpu_seconds;
        self.run_cpu_seconds += o.run_cpu_seconds;
        self.drain_cpu_seconds += o.drain_cpu_seconds;
    }
}

impl WorkerResult {
    /// Deliveries expected: every subscription receives what was published on its channel and
    /// accepted by the server.
    pub fn expected(&self) -> u64 {
        self.expected_published().saturating_sub(self.unaccepted_expected)
    }

    /// Deliveries of everything published, accepted or not.
    pub fn expected_published(&self) -> u64 {
        let channels = self.channels();
        self.subscriptions
            .iter()
            .enumerate()
            .map(|(c, &subs)| subs * crate::channels::published_on(c, self.published, channels))
            .sum()
    }

    /// Channels the publisher spread its messages over.
    pub fn channels(&self) -> usize {
        match self.published_channels {
            0 => self.subscriptions.len().max(1),
            n => n,
        }
    }
}

/// Adds `from` to `into` element by element (growing `into` as needed).
pub fn add_counts(into: &mut Vec<u64>, from: &[u64]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
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
    pub stats: RefCell<ThreadStats>,
    /// Executors sharing the connect schedule (workers x threads).
    pub executors: usize,
    pub is_publisher: bool,
    /// Windowed runs: deliveries acknowledged to the publisher (shared by the worker's threads).
    pub window: Arc<crate::deliveries::WindowState>,
    /// The thread's fast WebSocket receive ring (`rate --transport ws --ws-receiver ring`).
    pub ring: RefCell<Option<crate::transports::wsring::RingReceiver>>,
    /// What the publisher tells its worker about the end of publishing.
    pub publishing: Arc<PublishSignals>,
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

/// What one thread records. Borrowed briefly, never across an `.await`.
#[derive(Debug, Default)]
pub struct ThreadStats {
    pub counters: Counters,
    pub hists: Hists,
    /// The scenario's main latency since the last tick.
    pub interval: Hist,
    pub loss: LossTotals,
    pub streams: u64,
    pub seq_max_sum: u64,
    pub published: u64,
    /// The publisher's refused and unanswered publishes (message indices).
    pub refused: Ranges,
    pub unanswered: Ranges,
    /// What this thread's subscriptions missed, per (channel, seq).
    pub missed: Missed,
    /// Subscriber streams per channel index.
    pub subscriptions: Vec<u64>,
    /// Clients that finished opening (either way).
    pub opened: u64,
    /// `latency`, recorded once per delivered message, kept out of `hists` (no map lookup per
    /// message) until `fold`.
    latency: Hist,
    /// `read_delay`: how long received data waited in the kernel before this load generator
    /// read it (receives stamped by the kernel only), folded like `latency`.
    pub read_delay: Hist,
}

impl ThreadStats {
    /// Records `ns` into histogram `name` (and into the interval histogram when `main`).
    pub fn record(&mut self, name: &str, ns: u64, main: bool) {
        if name == "latency" {
            self.latency.record_ns(ns);
        } else {
            match self.hists.get_mut(name) {
                Some(h) => h.record_ns(ns),
                None => self.hists.entry(name.to_string()).or_default().record_ns(ns),
            }
        }
        if main {
            self.interval.record_ns(ns);
        }
    }

    /// Moves what `record` kept apart into `hists`; call before reading `hists`.
    pub fn fold(&mut self) {
        if !self.latency.is_empty() {
            let latency = std::mem::take(&mut self.latency);
            self.hists.entry("latency".to_string()).or_default().merge(&latency);
        }
        if !self.read_delay.is_empty() {
            let read_delay = std::mem::take(&mut self.read_delay);
            self.hists.entry("read_delay".to_string()).or_default().merge(&read_delay);
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
) -> WorkerResult {
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
    let window = Arc::new(crate::deliveries::WindowState::default());
    let parts = split(slice.count, threads);
    let mut handles: Vec<_> = parts
        .into_iter()
        .enumerate()
        .map(|(thread, (first, count))| {
            let ctx = Ctx {
                plan: plan.clone(),
                worker: slice.worker,
                thread,
                stats: RefCell::new(ThreadStats::default()),
                executors: plan.workers.max(1) * threads,
                is_publisher: false,
                window: window.clone(),
                ring: RefCell::new(None),
                publishing: publishing.clone(),
            };
            let shared = shared.clone();
            let first = slice.first + first;
            std::thread::Builder::new()
                .name(format!("loadgen-{}-{thread}", slice.worker))
                .spawn(move || {
                    let out = tokio_uring::builder().entries(4096).start(thread_main(
                        Rc::new(ctx),
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
        let ctx = Ctx {
            plan: plan.clone(),
            worker: slice.worker,
            thread: threads,
            stats: RefCell::new(ThreadStats::default()),
            executors: plan.workers.max(1) * threads,
            is_publisher: true,
            window: window.clone(),
            ring: RefCell::new(None),
            publishing: publishing.clone(),
        };
        let shared = shared.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("loadgen-{}-pub", slice.worker))
                .spawn(move || {
                    let out = tokio_uring::builder()
                        .entries(256)
                        .start(publisher_main(Rc::new(ctx), shared.clone()));
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
    let mut result = WorkerResult { worker: slice.worker, ..WorkerResult::default() };
    for handle in handles {
        let stats = handle.join().expect("load thread panicked");
        result.counters.merge(&stats.counters);
        merge_hists(&mut result.hists, &stats.hists);
        result.loss.merge(&stats.loss);
        result.streams += stats.streams;
        result.seq_max_sum += stats.seq_max_sum;
        result.published += stats.published;
        result.refused.merge(&stats.refused);
        result.unanswered.merge(&stats.unanswered);
        result.missed.merge(&stats.missed);
        add_counts(&mut result.subscriptions, &stats.subscriptions);
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

async fn thread_main(ctx: Rc<Ctx>, first: u64, count: u64, shared: Arc<Shared>) -> ThreadStats {
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let ticker = tokio_uring::spawn(ticker(ctx.clone(), shared.clone(), phase_tx));
    if count == 0 {
        shared.threads_ready.fetch_add(1, Ordering::AcqRel);
    }
    let mut tasks = Vec::with_capacity(count as usize + 1);
    let w = &ctx.plan.workload;
    if count > 0
        && ctx.plan.scenario == crate::plan::Scenario::Rate
        && w.transport == crate::plan::Transport::Ws
        && w.ws_receiver == crate::plan::WsReceiver::Ring
    {
        match crate::transports::wsring::RingReceiver::new(
            w.arrival == crate::plan::Arrival::Kernel,
            !matches!(w.schedule, crate::plan::Schedule::Windowed { .. }),
        ) {
            Ok(ring) => {
                *ctx.ring.borrow_mut() = Some(ring);
                tasks.push(tokio_uring::spawn(crate::transports::wsring::drive(
                    ctx.clone(),
                    phase_rx.clone(),
                )));
            }
            Err(e) => eprintln!("warning: no io_uring receive ring ({e}); reading with tokio-uring"),
        }
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
        tasks.push(tokio_uring::spawn(crate::scenarios::client(
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
async fn publisher_main(ctx: Rc<Ctx>, shared: Arc<Shared>) -> ThreadStats {
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let ticker = tokio_uring::spawn(ticker(ctx.clone(), shared.clone(), phase_tx));
    crate::scenarios::publish::publisher(ctx.clone(), phase_rx).await;
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
    shared.snapshots.lock().expect("poisoned")[ctx.thread] = stats.counters;
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
