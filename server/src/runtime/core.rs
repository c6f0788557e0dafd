//! A worker's connections and what happens to them between ring operations: input handed to
//! the state machine, the operations it parsed, deadlines and gauges (by the policy in
//! `conn::lifecycle`), fired timers, long-polls, and the slot's release. No ring here: the
//! worker reconciles the ops a connection needs after each of these calls.

use std::time::Duration;

use tickcast_protocol::CloseCode;

use super::ctx::Ctx;
use super::timer::{self, TimerWheel};
use super::token::Token;
use crate::broadcast::{Broadcast, Work};
use crate::conn::lifecycle::{self, Admission, Change, Expired, Gauge, OnTimer};
use crate::conn::{Conn, Env, Phase};
use crate::metrics;

/// Timer granularity. Deadlines here are seconds long; 100 ms keeps wake-ups rare.
pub const TICK: Duration = Duration::from_millis(100);
const WHEEL_SLOTS: usize = 1024;
/// Subscriber lists drop entries of closed connections as they are walked; quiet channels are
/// swept this often (100 ticks = 10 s).
const SWEEP_TICKS: u64 = 100;

pub struct Core {
    /// Indexed by direct descriptor: the descriptor is the slot.
    pub conns: Vec<Conn>,
    pub broadcast: Broadcast,
    /// Slots to flush this turn (see `Conn::mark_for_flush`).
    pub dirty: Vec<u32>,
    /// Slots whose receive is to be armed this turn (see `conn::io::Recv::Queued`).
    pub rearm: Vec<u32>,
    pub wheel: TimerWheel,
    pub fired: Vec<timer::Entry>,
    /// Long-polls woken by this turn's drain (scratch).
    pub woken: Vec<u32>,
    pub now_tick: u64,
    pub open_conns: usize,
    /// Most connections this worker serves; more are refused with 503.
    pub max_connections: usize,
}

impl Core {
    pub fn new(broadcast: Broadcast, table_size: u32, max_connections: usize) -> Self {
        Self {
            // Reserved, not touched: pages are faulted in only as slots are used, and the slab
            // never moves (no realloc copy) however many connections arrive.
            conns: Vec::with_capacity(table_size as usize),
            broadcast,
            dirty: Vec::new(),
            rearm: Vec::new(),
            wheel: TimerWheel::new(WHEEL_SLOTS, 0),
            fired: Vec::new(),
            woken: Vec::new(),
            now_tick: 0,
            open_conns: 0,
            max_connections,
        }
    }

    /// The slot a completion refers to, if it still holds the same connection.
    pub fn live(&self, token: Token) -> Option<u32> {
        self.live_slot(token.slot, token.generation)
    }

    pub fn live_slot(&self, slot: u32, generation: u32) -> Option<u32> {
        self.conns.get(slot as usize).is_some_and(|c| c.is_current(generation)).then_some(slot)
    }

    fn set_deadline(&mut self, slot: u32, ticks: u64) {
        let due = self.now_tick + ticks;
        let conn = &mut self.conns[slot as usize];
        conn.deadline_tick = due;
        self.wheel.insert(slot, conn.generation, due);
    }

    /// Carries out a lifecycle decision: the gauge entered, the new deadline.
    fn apply(&mut self, ctx: &Ctx, slot: u32, change: Change) {
        if let Some(gauge) = change.entered {
            let stats = ctx.stats();
            match gauge {
                Gauge::WebSocket => {
                    metrics::inc(&stats.handshakes);
                    metrics::inc(&stats.websockets);
                }
                Gauge::Sse => metrics::inc(&stats.sse_streams),
            }
            self.conns[slot as usize].gauge = Some(gauge);
        }
        if let Some(ticks) = change.deadline {
            self.set_deadline(slot, ticks);
        }
    }

    /// Makes `slot` (a descriptor just accepted on `listener`) a new connection, or refuses
    /// it with a 503 past the worker's limit.
    pub fn open(&mut self, ctx: &Ctx, slot: u32, listener: usize) {
        if self.conns.len() <= slot as usize {
            self.conns.resize_with(slot as usize + 1, Conn::default);
        }
        if self.conns[slot as usize].in_use {
            // The kernel reused this descriptor, so our close of its previous owner completed
            // even though we have not reaped that completion yet.
            self.finish_close(ctx, slot);
        }
        let conn = &mut self.conns[slot as usize];
        conn.open(self.now_tick);
        conn.loopback = ctx.loopback.get(listener).copied().unwrap_or(false);
        self.open_conns += 1;
        let stats = ctx.stats();
        metrics::inc(&stats.accepted);
        metrics::inc(&stats.connections);
        let deadline = match lifecycle::admit(&ctx.timeouts, self.open_conns, self.max_connections) {
            Admission::Serve { deadline } => deadline,
            Admission::Refuse { deadline } => {
                metrics::inc(&stats.refused);
                self.conns[slot as usize].refuse_over_capacity();
                deadline
            }
        };
        self.set_deadline(slot, deadline);
    }

    /// Hands received bytes to the connection's state machine.
    pub fn input(&mut self, ctx: &Ctx, slot: u32, data: &[u8]) {
        let loopback = self.conns[slot as usize].loopback;
        ctx.with_env(loopback, |env| {
            let conn = &mut self.conns[slot as usize];
            let before = conn.phase;
            conn.last_rx_tick = self.now_tick;
            conn.ping_outstanding = false;
            let data = conn.transport.inbound(data);
            conn.on_data(data, env);
            self.after_input(ctx, env, slot, before);
        });
    }

    /// After a connection processed input: carries out the operations it parsed, then the
    /// deadlines and gauges of its phase change.
    fn after_input(&mut self, ctx: &Ctx, env: &Env<'_>, slot: u32, before: Phase) {
        let conn = &mut self.conns[slot as usize];
        if !conn.ops.is_empty() {
            let ops = conn.take_ops();
            let mut work = Work { conns: &mut self.conns, dirty: &mut self.dirty, stats: ctx.stats() };
            self.broadcast.run_ops(slot, ops, env, &mut work);
        }
        let conn = &self.conns[slot as usize];
        let longpoll = conn.poll.as_ref().map_or(0, |p| lifecycle::ticks(p.timeout, TICK));
        let between_requests = conn.buffered_bytes() == 0;
        let change = lifecycle::on_input(&ctx.timeouts, before, conn.phase, between_requests, longpoll);
        self.apply(ctx, slot, change);
    }

    /// Fans out what publishers sent this worker (checked every turn: an empty inbox costs a
    /// failed pop; the eventfd only ends the wait); the long-polls it woke are left in `woken`.
    pub fn drain_inbox(&mut self, ctx: &Ctx) {
        let mut work = Work { conns: &mut self.conns, dirty: &mut self.dirty, stats: ctx.stats() };
        self.broadcast.drain(&mut work);
        self.broadcast.take_woken(&mut self.woken);
    }

    /// Answers a parked long-poll (woken, or `timed_out`), then serves what was pipelined
    /// behind it.
    pub fn answer_poll(&mut self, ctx: &Ctx, slot: u32, timed_out: bool) {
        let loopback = self.conns[slot as usize].loopback;
        ctx.with_env(loopback, |env| {
            let before = self.conns[slot as usize].phase;
            let mut work = Work { conns: &mut self.conns, dirty: &mut self.dirty, stats: ctx.stats() };
            self.broadcast.answer_poll(slot, timed_out, env, &mut work);
            self.after_input(ctx, env, slot, before);
        });
    }

    /// Moves time to `now_tick`, leaving the due timer entries in `fired`; false if no tick
    /// passed.
    pub fn advance(&mut self, now_tick: u64) -> bool {
        if now_tick <= self.now_tick {
            return false;
        }
        if now_tick / SWEEP_TICKS != self.now_tick / SWEEP_TICKS {
            self.broadcast.sweep(&self.conns);
            super::sys::release_freed_memory();
        }
        self.now_tick = now_tick;
        self.wheel.advance(now_tick, &mut self.fired);
        true
    }

    /// A fired timer entry; returns the slot if its connection may need ops now.
    pub fn on_timer(&mut self, ctx: &Ctx, entry: timer::Entry) -> Option<u32> {
        let slot = self.live_slot(entry.slot, entry.generation)?;
        let conn = &mut self.conns[slot as usize];
        let stats = ctx.stats();
        match lifecycle::on_timer(&ctx.timeouts, conn.timer_view(), entry.due_tick, self.now_tick) {
            OnTimer::Ignore => return None,
            OnTimer::Rearm(due) => {
                conn.deadline_tick = due;
                self.wheel.insert(slot, entry.generation, due);
                return None;
            }
            OnTimer::Abort(why) => {
                metrics::inc(match why {
                    Expired::Handshake => &stats.handshake_timeouts,
                    Expired::Idle => &stats.idle_timeouts,
                    Expired::Close => &stats.close_timeouts,
                });
                conn.abort();
            }
            action @ (OnTimer::Ping | OnTimer::Heartbeat) => {
                let before = conn.phase;
                ctx.with_env(conn.loopback, |env| match action {
                    OnTimer::Ping => conn.ping(env),
                    _ => conn.heartbeat(env),
                });
                let change = lifecycle::after_keepalive(&ctx.timeouts, action, before, conn.phase);
                self.apply(ctx, slot, change);
            }
            OnTimer::AnswerPoll => self.answer_poll(ctx, slot, true),
        }
        Some(slot)
    }

    /// Starts a server-initiated close for shutdown (close 1001 to WebSocket clients).
    pub fn close_for_shutdown(&mut self, ctx: &Ctx, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        let before = conn.phase;
        conn.start_close(CloseCode::GOING_AWAY, "server shutting down");
        let change = lifecycle::on_phase_change(&ctx.timeouts, before, conn.phase, 0);
        self.apply(ctx, slot, change);
    }

    /// The connection's descriptor is closed: release its slot, gauges and subscriptions.
    pub fn finish_close(&mut self, ctx: &Ctx, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        let stats = ctx.stats();
        match conn.gauge {
            Some(Gauge::WebSocket) => metrics::dec(&stats.websockets),
            Some(Gauge::Sse) => metrics::dec(&stats.sse_streams),
            None => {}
        }
        if conn.poll.is_some() {
            metrics::dec(&stats.longpolls); // closed while parked
        }
        let subs = conn.subs.take();
        conn.release();
        self.broadcast.release(subs, stats);
        self.open_conns -= 1;
        metrics::inc(&stats.closed);
        metrics::dec(&stats.connections);
    }
}
