//! One worker: one thread, one io_uring, its own listeners and connections.
//!
//! A loop turn runs its phases in a fixed order, so nothing re-enters and work batches
//! naturally: wait (submit + wait for at least one completion or the next tick) -> reap every
//! completion -> fire due timers -> publish recycled receive buffers -> re-arm receives ->
//! flush (one vectored send per connection with queued frames).
//!
//! Connections live in a slab indexed by their io_uring direct descriptor, so the descriptor is
//! the slot and no process file-table entry is used per connection.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fixed, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};
use tickcast_protocol::CloseCode;
use tickcast_protocol::http::HeaderLimits;
use tickcast_protocol::message::Limits;

use super::bufring::BufRing;
use super::sendpool::{NO_SEND_BUF, SendPool};
use super::timer::{self, TimerWheel};
use super::token::{OpKind, Token};
use crate::broadcast::{Broadcast, Work};
use crate::config::Config;
use crate::conn::{Conn, Env, Phase};
use crate::http::HttpOptions;
use crate::hub::{Hub, InboxReceiver};
use crate::metrics::{self, WorkerStats};
use crate::publish::PublishGate;
use crate::{SHUTDOWN_GRACEFUL, SHUTDOWN_NOW, Shared};

/// Timer granularity. Deadlines here are seconds long; 100 ms keeps wake-ups rare.
const TICK: Duration = Duration::from_millis(100);
const WHEEL_SLOTS: usize = 1024;
const BUFFER_GROUP: u16 = 0;
/// Idle vectored-send buffers a worker keeps for reuse (about 1 KiB each at 64 iovecs).
const SEND_BUFS_KEPT: usize = 256;
/// Subscriber lists drop entries of closed connections as they are walked; quiet channels are
/// swept this often (100 ticks = 10 s).
const SWEEP_TICKS: u64 = 100;

/// Wall-clock time in µs since the Unix epoch (envelope timestamps; 0 if the clock is broken).
fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// What a worker needs from `main`.
pub struct WorkerSetup {
    pub index: usize,
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
    pub listeners: Vec<OwnedFd>,
    /// Size of the direct-descriptor table (connections plus headroom for refusals).
    pub table_size: u32,
    /// Most connections this worker serves; more are refused with 503.
    pub max_connections: usize,
    pub cpu: Option<usize>,
    pub hub: Arc<Hub>,
    pub inbox: InboxReceiver,
    /// Per listener: bound to a loopback address (its peers may publish without a token).
    pub loopback: Vec<bool>,
}

pub struct Worker {
    index: usize,
    broadcast: Broadcast,
    loopback: Vec<bool>,
    wake_armed: bool,
    /// Wall-clock time read once per loop turn (envelope timestamps), µs since the epoch.
    now_us: u64,
    ws_limits: Limits,
    ring: IoUring,
    bufs: BufRing,
    conns: Vec<Conn>,
    sends: SendPool,
    dirty: Vec<u32>,
    rearm: Vec<u32>,
    cqes: Vec<cqueue::Entry>,
    wheel: TimerWheel,
    fired: Vec<timer::Entry>,
    listeners: Vec<OwnedFd>,
    accept_armed: Vec<bool>,
    open_conns: usize,
    max_connections: usize,
    config: Arc<Config>,
    shared: Arc<Shared>,
    start: Instant,
    now_tick: u64,
    header_limits: HeaderLimits,
    echo_limits: Limits,
    http: Arc<HttpOptions>,
    /// Long-polls woken by this turn's drain (scratch).
    woken: Vec<u32>,
    /// Set once shutdown began: when the worker stops waiting for clients.
    shutdown_deadline: Option<Instant>,
    /// After a failed accept (e.g. a full descriptor table), accepts are re-armed from this tick.
    accept_retry_tick: u64,
}

/// Builds the ring with the best setup the kernel offers, falling back step by step.
fn build_ring(config: &Config) -> io::Result<(IoUring, &'static str)> {
    let entries = config.ring_entries;
    let cq = entries.saturating_mul(4);
    if let Some(idle_ms) = config.sqpoll {
        let ring =
            IoUring::builder().setup_cqsize(cq).setup_sqpoll(idle_ms).setup_single_issuer().build(entries);
        return match ring {
            Ok(r) => Ok((r, "sqpoll+single_issuer")),
            Err(e) => Err(io::Error::new(e.kind(), format!("SQPOLL ring setup failed: {e}"))),
        };
    }
    type Apply = fn(&mut io_uring::Builder);
    let attempts: [(&'static str, Apply); 3] = [
        ("single_issuer+defer_taskrun", |b| {
            b.setup_single_issuer().setup_defer_taskrun();
        }),
        ("coop_taskrun", |b| {
            b.setup_coop_taskrun().setup_taskrun_flag();
        }),
        ("plain", |_| {}),
    ];
    let mut last_err = None;
    for (i, (name, apply)) in attempts.iter().enumerate() {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(cq).setup_submit_all();
        apply(&mut builder);
        match builder.build(entries) {
            Ok(ring) => {
                if i > 0 {
                    tracing::warn!(mode = name, "kernel lacks the preferred ring setup; fell back");
                }
                return Ok((ring, name));
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no ring setup worked")))
}

impl Worker {
    pub fn new(setup: WorkerSetup) -> io::Result<Self> {
        if let Some(cpu) = setup.cpu {
            super::sys::pin_current_thread(cpu)?;
        }
        let config = setup.config;
        let (ring, mode) = build_ring(&config)?;
        ring.submitter().register_files_sparse(setup.table_size).map_err(|e| {
            io::Error::new(e.kind(), format!("registering {} direct descriptors: {e}", setup.table_size))
        })?;
        let bufs = BufRing::new(&ring.submitter(), BUFFER_GROUP, config.buf_count, config.buf_size)
            .map_err(|e| io::Error::new(e.kind(), format!("registering the provided buffer ring: {e}")))?;
        tracing::debug!(worker = setup.index, mode, table = setup.table_size, "worker ring ready");
        let listeners = setup.listeners;
        let echo = config.echo_max_message;
        let ws_limits = Limits { max_frame: config.max_frame as u64, max_message: config.max_message };
        Ok(Self {
            index: setup.index,
            broadcast: Broadcast::new(setup.hub, setup.inbox, Arc::clone(&config)),
            loopback: setup.loopback,
            wake_armed: false,
            now_us: 0,
            ws_limits,
            ring,
            bufs,
            // Reserved, not touched: pages are faulted in only as slots are used, and the slab
            // never moves (no realloc copy) however many connections arrive.
            conns: Vec::with_capacity(setup.table_size as usize),
            sends: SendPool::new(config.max_iovecs, SEND_BUFS_KEPT),
            dirty: Vec::new(),
            rearm: Vec::new(),
            cqes: Vec::with_capacity(1024),
            wheel: TimerWheel::new(WHEEL_SLOTS, 0),
            fired: Vec::new(),
            accept_armed: vec![false; listeners.len()],
            listeners,
            open_conns: 0,
            max_connections: setup.max_connections,
            header_limits: HeaderLimits {
                max_bytes: config.max_header_bytes,
                max_headers: config.max_headers,
            },
            echo_limits: Limits { max_frame: echo as u64, max_message: echo },
            http: Arc::new(config.http_options()),
            woken: Vec::new(),
            config,
            shared: setup.shared,
            start: Instant::now(),
            now_tick: 0,
            shutdown_deadline: None,
            accept_retry_tick: 0,
        })
    }

    fn stats(&self) -> &WorkerStats {
        &self.shared.stats[self.index]
    }

    fn ticks(&self, d: Duration) -> u64 {
        (d.as_millis() / TICK.as_millis()).max(1) as u64
    }

    /// Queues an SQE, submitting first if the submission queue is full.
    ///
    /// Every caller guarantees that memory the entry points to (msghdr, iovecs and the buffers
    /// they reference) stays valid and unmoved until the entry's completion is reaped.
    fn push(&mut self, sqe: squeue::Entry) {
        loop {
            // SAFETY: per this function's contract, everything `sqe` references outlives the op.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                tracing::error!(worker = self.index, "submit failed while the SQ was full: {e}");
            }
        }
    }

    fn arm_accept(&mut self, listener: usize) {
        let fd = io_uring::types::Fd(self.listeners[listener].as_raw_fd());
        let token = Token::new(OpKind::Accept, listener as u32, 0).encode();
        // Multishot accept straight into the direct-descriptor table.
        let sqe = opcode::AcceptMulti::new(fd).allocate_file_index(true).build().user_data(token);
        self.push(sqe);
        self.accept_armed[listener] = true;
    }

    /// A multishot poll on the inbox eventfd: publishers on other threads wake this ring.
    fn arm_wake(&mut self) {
        let fd = io_uring::types::Fd(self.broadcast.eventfd());
        let token = Token::new(OpKind::Wake, 0, 0).encode();
        let sqe = opcode::PollAdd::new(fd, libc::POLLIN as u32).multi(true).build().user_data(token);
        self.push(sqe);
        self.wake_armed = true;
    }

    /// Fans out what publishers sent this worker (checked every turn: an empty inbox costs a
    /// failed pop; the eventfd only ends the wait), then answers the long-polls it woke.
    fn drain_inbox(&mut self) {
        let mut work =
            Work { conns: &mut self.conns, dirty: &mut self.dirty, stats: &self.shared.stats[self.index] };
        self.broadcast.drain(&mut work);
        let mut woken = std::mem::take(&mut self.woken);
        self.broadcast.take_woken(&mut woken);
        for slot in woken.drain(..) {
            self.answer_poll(slot, false);
        }
        self.woken = woken;
    }

    /// Answers a parked long-poll (woken, or `timed_out`), then serves what was pipelined
    /// behind it.
    fn answer_poll(&mut self, slot: u32, timed_out: bool) {
        let owner = self.env_owner(slot);
        owner.run(|env| {
            let before = self.conns[slot as usize].phase;
            let stats = &self.shared.stats[self.index];
            let mut work = Work { conns: &mut self.conns, dirty: &mut self.dirty, stats };
            self.broadcast.answer_poll(slot, timed_out, env, &mut work);
            self.after_input(slot, before, env);
        });
        self.reconcile(slot);
    }

    /// What an [`Env`] borrows, cloned out of the worker so that the worker itself stays free
    /// to change while a connection processes input.
    fn env_owner(&self, slot: u32) -> EnvOwner {
        EnvOwner {
            shared: Arc::clone(&self.shared),
            config: Arc::clone(&self.config),
            hub: Arc::clone(self.broadcast.hub()),
            http: Arc::clone(&self.http),
            index: self.index,
            loopback: self.conns.get(slot as usize).is_some_and(|c| c.loopback),
            now_us: self.now_us,
            header_limits: self.header_limits,
            echo_limits: self.echo_limits,
            ws_limits: self.ws_limits,
        }
    }

    fn arm_recv(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if conn.recv_armed || conn.read_paused || conn.phase == Phase::Teardown {
            return;
        }
        conn.recv_armed = true;
        let token = Token::new(OpKind::Recv, slot, conn.generation).encode();
        let sqe = opcode::RecvMulti::new(Fixed(slot), BUFFER_GROUP).build().user_data(token);
        self.push(sqe);
    }

    fn set_deadline(&mut self, slot: u32, after: Duration) {
        let due = self.now_tick + self.ticks(after);
        let conn = &mut self.conns[slot as usize];
        conn.deadline_tick = due;
        let generation = conn.generation;
        self.wheel.insert(slot, generation, due);
    }

    /// Runs the event loop until shutdown completes.
    pub fn run(mut self) -> io::Result<()> {
        for i in 0..self.listeners.len() {
            self.arm_accept(i);
        }
        self.arm_wake();
        loop {
            self.wait()?;
            self.now_us = now_us();
            self.reap();
            self.drain_inbox();
            self.advance_timers();
            if self.check_shutdown() {
                break;
            }
            self.bufs.publish();
            self.rearm_receives();
            self.flush();
            metrics::inc(&self.stats().loop_turns);
        }
        tracing::debug!(worker = self.index, "worker stopped");
        Ok(())
    }

    /// Submits what is queued and waits for a completion or the next timer tick.
    fn wait(&mut self) -> io::Result<()> {
        let elapsed = self.start.elapsed();
        let next_tick = TICK * (self.now_tick as u32 + 1);
        let wait = next_tick.saturating_sub(elapsed).max(Duration::from_micros(100));
        let ts = Timespec::new().sec(wait.as_secs()).nsec(wait.subsec_nanos());
        let args = SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(io::Error::new(e.kind(), format!("io_uring_enter: {e}"))),
        }
    }

    fn reap(&mut self) {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.extend(self.ring.completion());
        for cqe in cqes.drain(..) {
            self.dispatch(&cqe);
        }
        self.cqes = cqes;
    }

    fn dispatch(&mut self, cqe: &cqueue::Entry) {
        let Some(token) = Token::decode(cqe.user_data()) else {
            tracing::warn!(
                worker = self.index,
                user_data = cqe.user_data(),
                "completion with a foreign token"
            );
            return;
        };
        match token.kind {
            OpKind::Accept => self.on_accept(token.slot as usize, cqe.result(), cqe.flags()),
            OpKind::Recv => self.on_recv(token, cqe.result(), cqe.flags()),
            OpKind::Send => self.on_send(token, cqe.result()),
            OpKind::Close => self.on_close(token),
            OpKind::Wake => {
                self.broadcast.on_wake();
                if !cqueue::more(cqe.flags()) {
                    self.wake_armed = false;
                }
            }
            // Outcomes show up on the ops they affect (EOF, ECANCELED) or in timeouts.
            OpKind::Shutdown | OpKind::Cancel | OpKind::CancelAccept => {}
        }
    }

    /// The slot a completion refers to, if it still holds the same connection.
    fn live(&self, token: Token) -> Option<u32> {
        self.live_slot(token.slot, token.generation)
    }

    fn live_slot(&self, slot: u32, generation: u32) -> Option<u32> {
        let conn = self.conns.get(slot as usize)?;
        (conn.in_use && conn.generation == generation).then_some(slot)
    }

    fn on_accept(&mut self, listener: usize, result: i32, flags: u32) {
        if !cqueue::more(flags) {
            // (The list is empty once shutdown released the listeners.)
            if let Some(armed) = self.accept_armed.get_mut(listener) {
                *armed = false;
            }
        }
        if result < 0 {
            if result != -libc::ECANCELED {
                metrics::inc(&self.stats().accept_errors);
                // E.g. ENFILE: the descriptor table is full. Retry on the next tick, not the
                // next turn (which would spin), and log once per tick at most.
                if self.accept_retry_tick <= self.now_tick {
                    tracing::warn!(
                        worker = self.index,
                        "accept failed: {} (retrying in {} ms)",
                        io::Error::from_raw_os_error(-result),
                        TICK.as_millis()
                    );
                }
                self.accept_retry_tick = self.now_tick + 1;
            }
            return;
        }
        let slot = result as u32;
        if self.shutdown_deadline.is_some() {
            // Raced with shutdown: nobody is going to serve it.
            self.push(
                opcode::Close::new(Fixed(slot))
                    .build()
                    .user_data(Token::new(OpKind::Close, slot, u32::MAX).encode()),
            );
            return;
        }
        if self.conns.len() <= slot as usize {
            self.conns.resize_with(slot as usize + 1, Conn::default);
        }
        if self.conns[slot as usize].in_use {
            // The kernel reused this descriptor, so our close of its previous owner completed
            // even though we have not reaped that completion yet.
            self.finish_close(slot);
        }
        let now = self.now_tick;
        self.conns[slot as usize].open(now);
        self.conns[slot as usize].loopback = self.loopback.get(listener).copied().unwrap_or(false);
        self.open_conns += 1;
        let stats = &self.shared.stats[self.index];
        metrics::inc(&stats.accepted);
        metrics::inc(&stats.connections);
        if self.open_conns > self.max_connections {
            metrics::inc(&stats.refused);
            let mut out = Vec::with_capacity(160);
            tickcast_protocol::http::write_response(
                &mut out,
                503,
                &[("Retry-After", "1")],
                b"server at connection limit\n",
                false,
            );
            let conn = &mut self.conns[slot as usize];
            conn.sendq.push_unbounded(out.into());
            conn.phase = Phase::Draining;
            self.set_deadline(slot, self.config.close_timeout);
        } else {
            self.set_deadline(slot, self.config.handshake_timeout);
        }
        self.arm_recv(slot);
        self.reconcile(slot);
    }

    fn on_recv(&mut self, token: Token, result: i32, flags: u32) {
        let bid = cqueue::buffer_select(flags);
        let live = self.live(token);
        if let Some(slot) = live {
            if !cqueue::more(flags) {
                let conn = &mut self.conns[slot as usize];
                conn.recv_armed = false;
                conn.cancel_sent = false; // a cancel, if any, was for this receive
            }
            if result > 0 {
                if let Some(bid) = bid {
                    self.deliver(slot, bid, result as usize);
                }
            } else if result == 0 {
                // Peer closed its side: nothing more will come, and it will read nothing more.
                self.conns[slot as usize].abort();
            } else if result == -libc::ENOBUFS {
                // The buffer ring ran dry for a moment; re-armed after buffers are recycled.
                metrics::inc(&self.shared.stats[self.index].recv_rearms);
            } else if result != -libc::ECANCELED {
                self.conns[slot as usize].abort();
            }
            let conn = &self.conns[slot as usize];
            if !conn.recv_armed && !conn.read_paused && conn.phase != Phase::Teardown {
                self.rearm.push(slot);
            }
            self.reconcile(slot);
        }
        if let Some(bid) = bid {
            self.bufs.recycle(bid);
        }
    }

    /// Hands received bytes to the connection's state machine.
    fn deliver(&mut self, slot: u32, bid: u16, len: usize) {
        let owner = self.env_owner(slot);
        owner.run(|env| {
            let data = self.bufs.buffer_mut(bid, len);
            let conn = &mut self.conns[slot as usize];
            let before = conn.phase;
            conn.last_rx_tick = self.now_tick;
            conn.ping_outstanding = false;
            conn.on_data(data, env);
            self.after_input(slot, before, env);
        });
    }

    /// After a connection processed input: carries out the operations it parsed, and the
    /// deadlines and gauges of its phase change.
    fn after_input(&mut self, slot: u32, before: Phase, env: &Env<'_>) {
        let conn = &mut self.conns[slot as usize];
        if !conn.ops.is_empty() {
            let ops = conn.take_ops();
            let stats = &self.shared.stats[self.index];
            let mut work = Work { conns: &mut self.conns, dirty: &mut self.dirty, stats };
            self.broadcast.run_ops(slot, ops, env, &mut work);
        }
        let conn = &self.conns[slot as usize];
        let after = conn.phase;
        if before == Phase::Http && after == Phase::Http && conn.buffered_bytes() == 0 {
            // A keep-alive connection between requests: the handshake timeout restarts as its
            // idle timeout (only a request left half-sent runs out the clock).
            self.set_deadline(slot, self.config.handshake_timeout);
        }
        self.on_phase_change(slot, before, after);
    }

    /// Deadlines and gauges that follow a phase transition.
    fn on_phase_change(&mut self, slot: u32, before: Phase, after: Phase) {
        if before == after {
            return;
        }
        let stats = &self.shared.stats[self.index];
        match (before, after) {
            (Phase::Http, Phase::Open(_)) => {
                metrics::inc(&stats.handshakes);
                metrics::inc(&stats.websockets);
                self.conns[slot as usize].upgraded = true;
                self.set_deadline(slot, self.config.idle_timeout);
            }
            (Phase::Http, Phase::Sse) => {
                metrics::inc(&stats.sse_streams);
                self.conns[slot as usize].sse = true;
                self.set_deadline(slot, self.config.sse_heartbeat);
            }
            (_, Phase::LongPoll) => {
                let timeout = self.conns[slot as usize].poll.as_ref().map_or(Duration::ZERO, |p| p.timeout);
                self.set_deadline(slot, timeout);
            }
            // Answered; the keep-alive connection waits for its next request.
            (Phase::LongPoll, Phase::Http) => self.set_deadline(slot, self.config.handshake_timeout),
            (_, Phase::Closing | Phase::Draining) => self.set_deadline(slot, self.config.close_timeout),
            _ => {}
        }
    }

    fn on_send(&mut self, token: Token, result: i32) {
        let Some(slot) = self.live(token) else {
            // Cannot happen: a slot is freed only after its send completed.
            tracing::error!(worker = self.index, ?token, "send completion for a freed slot");
            return;
        };
        let conn = &mut self.conns[slot as usize];
        conn.send_inflight = false;
        let send_slot = conn.send_slot;
        let stats = &self.shared.stats[self.index];
        metrics::inc(&stats.sends);
        if result >= 0 {
            conn.sendq.advance(result as usize);
            metrics::add(&stats.bytes_out, result as u64);
            if conn.read_paused && conn.sendq.pending_bytes() <= self.config.send_queue_limit / 2 {
                conn.read_paused = false;
                if !conn.recv_armed && conn.phase != Phase::Teardown {
                    self.rearm.push(slot);
                }
            }
        } else {
            // EPIPE, ECONNRESET...: the peer is gone.
            conn.abort();
        }
        if conn.phase == Phase::Teardown {
            conn.abort(); // drops the queue now that the kernel no longer reads it
        }
        if send_slot != NO_SEND_BUF {
            self.sends.release(send_slot);
        }
        self.reconcile(slot);
    }

    fn on_close(&mut self, token: Token) {
        if self.live(token).is_some() {
            self.finish_close(token.slot);
        }
    }

    fn finish_close(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        let stats = &self.shared.stats[self.index];
        if conn.upgraded {
            metrics::dec(&stats.websockets);
        }
        if conn.sse {
            metrics::dec(&stats.sse_streams);
        }
        if conn.poll.is_some() {
            metrics::dec(&stats.longpolls); // closed while parked
        }
        let subs = conn.subs.take();
        conn.release();
        self.broadcast.release(subs, &self.shared.stats[self.index]);
        self.open_conns -= 1;
        let stats = &self.shared.stats[self.index];
        metrics::inc(&stats.closed);
        metrics::dec(&stats.connections);
    }

    /// Turns a connection's state into the ring ops it needs next. Called after every event.
    fn reconcile(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        match conn.phase {
            Phase::Teardown => {
                if conn.recv_armed && !conn.cancel_sent {
                    conn.cancel_sent = true;
                    let recv = Token::new(OpKind::Recv, slot, conn.generation).encode();
                    let token = Token::new(OpKind::Cancel, slot, conn.generation).encode();
                    self.push(
                        opcode::AsyncCancel2::new(CancelBuilder::user_data(recv)).build().user_data(token),
                    );
                    return;
                }
                if !conn.recv_armed && !conn.send_inflight && !conn.close_sent {
                    conn.close_sent = true;
                    let token = Token::new(OpKind::Close, slot, conn.generation).encode();
                    self.push(opcode::Close::new(Fixed(slot)).build().user_data(token));
                }
                return;
            }
            Phase::Draining if conn.sendq.is_empty() && !conn.send_inflight && !conn.shutdown_sent => {
                // Everything said: send FIN, keep reading until the peer's EOF (or the close
                // timeout), so unread input never turns our close into a reset.
                conn.shutdown_sent = true;
                let token = Token::new(OpKind::Shutdown, slot, conn.generation).encode();
                self.push(opcode::Shutdown::new(Fixed(slot), libc::SHUT_WR).build().user_data(token));
            }
            _ => {}
        }
        let conn = &mut self.conns[slot as usize];
        if conn.read_paused && conn.recv_armed && !conn.cancel_sent {
            // Backpressure: stop the multishot receive; re-armed when the queue drains.
            conn.cancel_sent = true;
            let recv = Token::new(OpKind::Recv, slot, conn.generation).encode();
            let token = Token::new(OpKind::Cancel, slot, conn.generation).encode();
            self.push(opcode::AsyncCancel2::new(CancelBuilder::user_data(recv)).build().user_data(token));
        }
        let conn = &mut self.conns[slot as usize];
        if !conn.sendq.is_empty() && !conn.send_inflight && !conn.dirty {
            conn.dirty = true;
            self.dirty.push(slot);
        }
    }

    fn rearm_receives(&mut self) {
        let mut rearm = std::mem::take(&mut self.rearm);
        for slot in rearm.drain(..) {
            self.arm_recv(slot);
        }
        self.rearm = rearm;
        if !self.wake_armed {
            self.arm_wake();
        }
        if self.shutdown_deadline.is_none() && self.now_tick >= self.accept_retry_tick {
            for i in 0..self.listeners.len() {
                if !self.accept_armed[i] {
                    self.arm_accept(i);
                }
            }
        }
    }

    /// One vectored send per connection with queued frames.
    fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for slot in dirty.drain(..) {
            let conn = &mut self.conns[slot as usize];
            conn.dirty = false;
            if conn.send_inflight || conn.sendq.is_empty() || conn.phase == Phase::Teardown {
                continue;
            }
            self.start_send(slot);
        }
        self.dirty = dirty;
    }

    /// Starts the one send in flight for a connection: a plain send for a single queued frame
    /// (no extra memory), else a vectored send with every queued frame (up to the iovec cap).
    ///
    /// The kernel reads the frames until completion: they stay in the queue until then (the
    /// queue only changes in `on_send`), and the msghdr/iovecs stay lent from the pool.
    fn start_send(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        let token = Token::new(OpKind::Send, slot, conn.generation).encode();
        conn.send_inflight = true;
        let sqe = if conn.sendq.frame_count() == 1 || self.sends.iov_cap() == 1 {
            conn.send_slot = NO_SEND_BUF;
            let (ptr, len) = conn.sendq.start_single().unwrap_or((std::ptr::null(), 0));
            opcode::Send::new(Fixed(slot), ptr, len as u32).flags(libc::MSG_NOSIGNAL).build().user_data(token)
        } else {
            let send_slot = self.sends.acquire();
            let buf = self.sends.get_mut(send_slot);
            let n = conn.sendq.fill_iovecs(&mut buf.iov);
            buf.msg.msg_iov = buf.iov.as_mut_ptr();
            buf.msg.msg_iovlen = n;
            conn.send_slot = send_slot;
            let msg: *const libc::msghdr = &buf.msg;
            opcode::SendMsg::new(Fixed(slot), msg).flags(libc::MSG_NOSIGNAL as u32).build().user_data(token)
        };
        self.push(sqe);
    }

    fn advance_timers(&mut self) {
        let now_tick = (self.start.elapsed().as_millis() / TICK.as_millis()) as u64;
        if now_tick <= self.now_tick {
            return;
        }
        if now_tick / SWEEP_TICKS != self.now_tick / SWEEP_TICKS {
            self.broadcast.sweep(&self.conns);
        }
        self.now_tick = now_tick;
        let mut fired = std::mem::take(&mut self.fired);
        self.wheel.advance(now_tick, &mut fired);
        for entry in fired.drain(..) {
            self.on_timer(entry);
        }
        self.fired = fired;
    }

    fn on_timer(&mut self, entry: timer::Entry) {
        let Some(slot) = self.live_slot(entry.slot, entry.generation) else { return };
        let conn = &self.conns[slot as usize];
        if conn.deadline_tick != entry.due_tick {
            return; // superseded by a later deadline
        }
        let stats = &self.shared.stats[self.index];
        match conn.phase {
            Phase::Http => {
                metrics::inc(&stats.handshake_timeouts);
                self.conns[slot as usize].abort();
            }
            Phase::Open(_) => {
                let idle = self.ticks(self.config.idle_timeout);
                if conn.last_rx_tick + idle > self.now_tick {
                    // Activity since this was armed: push the deadline out (lazy re-arm).
                    let due = conn.last_rx_tick + idle;
                    let generation = conn.generation;
                    self.conns[slot as usize].deadline_tick = due;
                    self.wheel.insert(slot, generation, due);
                    return;
                }
                if conn.ping_outstanding {
                    metrics::inc(&stats.idle_timeouts);
                    self.conns[slot as usize].abort();
                } else {
                    let owner = self.env_owner(slot);
                    let (before, after) = owner.run(|env| {
                        let conn = &mut self.conns[slot as usize];
                        let before = conn.phase;
                        conn.ping(env);
                        (before, conn.phase)
                    });
                    if before == after {
                        self.set_deadline(slot, self.config.pong_timeout);
                    } else {
                        self.on_phase_change(slot, before, after);
                    }
                }
            }
            Phase::Sse => {
                let owner = self.env_owner(slot);
                let after = owner.run(|env| {
                    let conn = &mut self.conns[slot as usize];
                    conn.heartbeat(env);
                    conn.phase
                });
                if after == Phase::Sse {
                    self.set_deadline(slot, self.config.sse_heartbeat);
                } else {
                    self.on_phase_change(slot, Phase::Sse, after);
                }
            }
            Phase::LongPoll => return self.answer_poll(slot, true),
            Phase::Closing | Phase::Draining => {
                metrics::inc(&stats.close_timeouts);
                self.conns[slot as usize].abort();
            }
            Phase::Teardown => return,
        }
        self.reconcile(slot);
    }

    /// Begins or continues shutdown; true when the worker should exit.
    fn check_shutdown(&mut self) -> bool {
        let state = self.shared.shutdown.load(Ordering::Acquire);
        if state >= SHUTDOWN_NOW {
            return true;
        }
        if state < SHUTDOWN_GRACEFUL {
            return false;
        }
        match self.shutdown_deadline {
            None => {
                self.shutdown_deadline = Some(Instant::now() + self.config.shutdown_timeout);
                self.begin_shutdown();
            }
            Some(deadline) if Instant::now() >= deadline => {
                tracing::warn!(
                    worker = self.index,
                    open = self.open_conns,
                    "shutdown timeout: dropping remaining connections"
                );
                return true;
            }
            Some(_) => {}
        }
        self.open_conns == 0
    }

    fn begin_shutdown(&mut self) {
        for i in 0..self.listeners.len() {
            let accept = Token::new(OpKind::Accept, i as u32, 0).encode();
            let token = Token::new(OpKind::CancelAccept, i as u32, 0).encode();
            self.push(opcode::AsyncCancel2::new(CancelBuilder::user_data(accept)).build().user_data(token));
        }
        // The cancelled accepts hold their own file references; our descriptors can go now.
        self.listeners.clear();
        self.accept_armed.clear();
        for slot in 0..self.conns.len() as u32 {
            let conn = &mut self.conns[slot as usize];
            if !conn.in_use {
                continue;
            }
            let before = conn.phase;
            conn.start_close(CloseCode::GOING_AWAY, "server shutting down");
            let after = conn.phase;
            self.on_phase_change(slot, before, after);
            self.reconcile(slot);
        }
    }
}

/// The values an [`Env`] borrows (see `Worker::env_owner`).
struct EnvOwner {
    shared: Arc<Shared>,
    config: Arc<Config>,
    hub: Arc<Hub>,
    http: Arc<HttpOptions>,
    index: usize,
    loopback: bool,
    now_us: u64,
    header_limits: HeaderLimits,
    echo_limits: Limits,
    ws_limits: Limits,
}

impl EnvOwner {
    /// Runs `f` with the connection environment built from these values.
    fn run<R>(&self, f: impl FnOnce(&Env<'_>) -> R) -> R {
        let stats = &self.shared.stats[self.index];
        let metrics_fn = || metrics::render(&self.shared.stats);
        let gate = PublishGate {
            hub: &self.hub,
            token: self.config.publish_token.as_deref(),
            loopback: self.loopback,
            now_us: self.now_us,
            max_batch: self.config.max_batch,
            stats,
        };
        let env = Env {
            header_limits: self.header_limits,
            echo_limits: self.echo_limits,
            ws_limits: self.ws_limits,
            max_body: self.config.max_body,
            send_queue_limit: self.config.send_queue_limit,
            stats,
            metrics: &metrics_fn,
            publish: Some(&gate),
            http: &self.http,
        };
        f(&env)
    }
}
