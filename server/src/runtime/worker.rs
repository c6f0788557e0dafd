//! One worker: one thread, one io_uring, its own listeners and connections. This file is the
//! loop and the completion dispatch; ops are built in `submit`, resources set up in `setup`,
//! connection work done in `core`, and the decisions taken by pure modules (`conn::io` says
//! which ops a connection needs, `conn::lifecycle` its deadlines).
//!
//! A loop turn runs its phases in a fixed order, so nothing re-enters and work batches
//! naturally: wait (submit + wait for at least one completion or the next tick) -> reap every
//! completion -> drain the inbox -> fire due timers -> shutdown check -> publish recycled
//! receive buffers -> re-arm receives and accepts -> flush (one send per listed connection).

use std::io;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use io_uring::cqueue;
use tickcast_uring::BufRing;

use super::accept::Listeners;
use super::core::{Core, TICK};
use super::ctx::{self, Ctx};
use super::sendpool::{NO_SEND_BUF, SendPool};
use super::setup::{self, WorkerSetup};
use super::shutdown::{Shutdown, Step};
use super::submit::Ring;
use super::token::{OpKind, Token};
use crate::broadcast::Broadcast;
use crate::conn::io::next_ops;
use crate::metrics;

/// Idle vectored-send buffers a worker keeps for reuse (about 1 KiB each at 64 iovecs).
const SEND_BUFS_KEPT: usize = 256;

pub struct Worker {
    ctx: Ctx,
    core: Core,
    /// INVARIANT: the ring is dropped before the memory it points into: the buffer ring
    /// (written by receives), the send pool and the connections' queues (read by sends).
    /// `Drop for Worker` drops it first, whatever the order of these fields.
    ring: ManuallyDrop<Ring>,
    bufs: BufRing,
    sends: SendPool,
    cqes: Vec<cqueue::Entry>,
    listeners: Listeners,
    wake_armed: bool,
    start: Instant,
    shutdown: Shutdown,
}

impl Worker {
    pub fn new(setup: WorkerSetup) -> io::Result<Self> {
        if let Some(cpu) = setup.cpu {
            super::sys::pin_current_thread(cpu)?;
        }
        let config = setup.config;
        let (ring, bufs) = setup::ring(&config, setup.table_size, setup.index)?;
        let ctx =
            Ctx::new(setup.index, Arc::clone(&config), setup.shared, Arc::clone(&setup.hub), setup.loopback);
        let broadcast = Broadcast::new(setup.hub, setup.inbox, Arc::clone(&config));
        Ok(Self {
            ctx,
            core: Core::new(broadcast, setup.table_size, setup.max_connections),
            ring: ManuallyDrop::new(ring),
            bufs,
            sends: SendPool::new(config.max_iovecs, SEND_BUFS_KEPT),
            cqes: Vec::with_capacity(1024),
            listeners: Listeners::new(setup.listeners),
            wake_armed: false,
            start: Instant::now(),
            shutdown: Shutdown::default(),
        })
    }

    /// Runs the event loop until shutdown completes.
    pub fn run(mut self) -> io::Result<()> {
        self.rearm();
        loop {
            self.wait()?;
            self.ctx.now_us = ctx::now_us();
            self.reap();
            self.drain_inbox();
            self.advance_timers();
            if self.check_shutdown() {
                break;
            }
            self.bufs.publish();
            self.rearm_receives();
            self.flush();
            if self.core.broadcast.fanned() {
                // Commit -> flush of this turn's messages: one clock read per turn that had any.
                let stats = &self.ctx.shared.stats[self.ctx.index];
                self.core.broadcast.record_fanout(ctx::now_us(), &stats.fanout_latency);
            }
            metrics::inc(&self.ctx.stats().loop_turns);
        }
        tracing::debug!(worker = self.ctx.index, "worker stopped");
        Ok(())
    }

    /// Submits what is queued and waits for a completion or the next timer tick.
    fn wait(&mut self) -> io::Result<()> {
        let next_tick = TICK * (self.core.now_tick as u32 + 1);
        let wait = next_tick.saturating_sub(self.start.elapsed()).max(Duration::from_micros(100));
        self.ring.submit_and_wait(wait)
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
                worker = self.ctx.index,
                user_data = cqe.user_data(),
                "completion with a foreign token"
            );
            return;
        };
        match token.kind {
            OpKind::Accept => self.on_accept(token.slot as usize, cqe.result(), cqe.flags()),
            OpKind::Recv => self.on_recv(token, cqe.result(), cqe.flags()),
            OpKind::Send => self.on_send(token, cqe.result()),
            OpKind::Close => {
                if let Some(slot) = self.core.live(token) {
                    self.core.finish_close(&self.ctx, slot);
                }
            }
            OpKind::Wake => {
                self.core.broadcast.on_wake();
                self.wake_armed &= cqueue::more(cqe.flags());
            }
            // Outcomes show up on the ops they affect (EOF, ECANCELED) or in timeouts.
            OpKind::Shutdown | OpKind::Cancel | OpKind::CancelAccept => {}
        }
    }

    fn on_accept(&mut self, listener: usize, result: i32, flags: u32) {
        let now_tick = self.core.now_tick;
        let Some(slot) = self.listeners.on_accept(listener, result, flags, now_tick, &self.ctx) else {
            return;
        };
        if self.shutdown.started() {
            self.ring.close(slot, u32::MAX); // raced with shutdown: nobody is going to serve it
            return;
        }
        self.core.open(&self.ctx, slot, listener);
        self.reconcile(slot);
    }

    fn on_recv(&mut self, token: Token, result: i32, flags: u32) {
        // SAFETY: `flags` are those of a completion just reaped from this ring, taken once.
        // The buffer goes back to the ring when `taken` drops, live connection or not.
        let mut taken = unsafe { self.bufs.take(flags, result.max(0) as usize) };
        let Some(slot) = self.core.live(token) else { return };
        let conn = &mut self.core.conns[slot as usize];
        if !cqueue::more(flags) {
            conn.io.recv_ended();
        }
        match result {
            1.. => {
                if let Some(data) = taken.as_deref_mut() {
                    self.core.input(&self.ctx, slot, data);
                }
            }
            // Peer closed its side: nothing more will come, and it will read nothing more.
            0 => conn.abort(),
            // The buffer ring ran dry for a moment; re-armed after buffers are recycled.
            e if e == -libc::ENOBUFS => metrics::inc(&self.ctx.stats().recv_rearms),
            e if e == -libc::ECANCELED => {}
            _ => conn.abort(),
        }
        drop(taken);
        self.reconcile(slot);
    }

    fn on_send(&mut self, token: Token, result: i32) {
        let Some(slot) = self.core.live(token) else {
            // Cannot happen: a slot is freed only after its send completed.
            tracing::error!(worker = self.ctx.index, ?token, "send completion for a freed slot");
            return;
        };
        let conn = &mut self.core.conns[slot as usize];
        let pooled = conn.io.send_done();
        let stats = self.ctx.stats();
        metrics::inc(&stats.sends);
        let written = conn.on_sent(result, self.ctx.config.send_queue_limit);
        metrics::add(&stats.bytes_out, written as u64);
        if let Some(pooled) = pooled.filter(|&p| p != NO_SEND_BUF) {
            self.sends.release(pooled);
        }
        self.reconcile(slot);
    }

    /// Turns a connection's state into the ops it needs next ([`next_ops`]), and starts them.
    /// Called after every event that may have changed it.
    fn reconcile(&mut self, slot: u32) {
        let conn = &mut self.core.conns[slot as usize];
        if !conn.in_use {
            return; // released: nothing of it is left in the kernel
        }
        let ops = next_ops(&conn.io, conn.wants());
        conn.io.begin(ops);
        let generation = conn.generation;
        if ops.cancel_recv {
            self.ring.cancel_recv(slot, generation);
        }
        if ops.shutdown {
            self.ring.shutdown(slot, generation);
        }
        if ops.close {
            self.ring.close(slot, generation);
        }
        if ops.arm_recv {
            self.core.rearm.push(slot);
        }
        if ops.list_send {
            self.core.dirty.push(slot);
        }
    }

    fn drain_inbox(&mut self) {
        self.core.drain_inbox(&self.ctx);
        let mut woken = std::mem::take(&mut self.core.woken);
        for slot in woken.drain(..) {
            self.core.answer_poll(&self.ctx, slot, false);
            self.reconcile(slot);
        }
        self.core.woken = woken;
    }

    fn advance_timers(&mut self) {
        let now_tick = (self.start.elapsed().as_millis() / TICK.as_millis()) as u64;
        if !self.core.advance(now_tick) {
            return;
        }
        let mut fired = std::mem::take(&mut self.core.fired);
        for entry in fired.drain(..) {
            if let Some(slot) = self.core.on_timer(&self.ctx, entry) {
                self.reconcile(slot);
            }
        }
        self.core.fired = fired;
    }

    /// Arms the receives queued this turn (after the buffer ring got its buffers back), the
    /// wake-up poll and the accepts.
    fn rearm_receives(&mut self) {
        let mut rearm = std::mem::take(&mut self.core.rearm);
        for slot in rearm.drain(..) {
            let conn = &mut self.core.conns[slot as usize];
            if conn.io.arm_now(conn.wants().read) {
                self.ring.recv(slot, conn.generation);
            }
        }
        self.core.rearm = rearm;
        self.rearm();
    }

    fn rearm(&mut self) {
        if !self.wake_armed {
            self.ring.poll_wake(self.core.broadcast.eventfd());
            self.wake_armed = true;
        }
        self.listeners.arm(&mut self.ring, self.core.now_tick);
    }

    /// One send per listed connection: a plain send for a single queued frame (no extra
    /// memory), else a vectored send with every queued frame (up to the iovec cap).
    fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.core.dirty);
        for slot in dirty.drain(..) {
            let conn = &mut self.core.conns[slot as usize];
            if !conn.io.flush_now(conn.wants()) {
                continue;
            }
            let generation = conn.generation;
            if conn.transport.vectored(&conn.sendq, self.sends.iov_cap()) {
                let pooled = self.sends.acquire(conn.sendq.frame_count());
                let buf = self.sends.get_mut(pooled);
                let n = conn.transport.outbound_vectored(&mut conn.sendq, &mut buf.iov);
                buf.msg.msg_iov = buf.iov.as_mut_ptr();
                buf.msg.msg_iovlen = n;
                conn.io.sending(pooled);
                // SAFETY: the msghdr and iovecs stay lent from the pool, and the frames in the
                // queue, until `on_send` (submit.rs contract 1).
                unsafe { self.ring.send_msg(slot, generation, &raw const buf.msg) };
            } else {
                let (ptr, len) = conn.transport.outbound_single(&mut conn.sendq);
                conn.io.sending(NO_SEND_BUF);
                // SAFETY: the frame stays in the queue until `on_send` (submit.rs contract 1).
                unsafe { self.ring.send(slot, generation, ptr, len) };
            }
        }
        self.core.dirty = dirty;
    }

    /// Begins or continues shutdown; true when the worker should exit.
    fn check_shutdown(&mut self) -> bool {
        let flag = self.ctx.shared.shutdown.load(Ordering::Acquire);
        match self.shutdown.step(flag, Instant::now, self.ctx.config.shutdown_timeout) {
            Step::Run => false,
            Step::Exit => true,
            Step::TimedOut => {
                let open = self.core.open_conns;
                tracing::warn!(
                    worker = self.ctx.index,
                    open,
                    "shutdown timeout: dropping remaining connections"
                );
                true
            }
            Step::Begin => {
                self.listeners.close(&mut self.ring);
                for slot in 0..self.core.conns.len() as u32 {
                    if self.core.conns[slot as usize].in_use {
                        self.core.close_for_shutdown(&self.ctx, slot);
                        self.reconcile(slot);
                    }
                }
                self.core.open_conns == 0
            }
            Step::Wait => self.core.open_conns == 0,
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // The kernel stops selecting receive buffers; then the ring goes (and with it every
        // op still reading our memory) before any field it points into (see `ring`).
        let _ = self.bufs.unregister(&self.ring.submitter());
        // SAFETY: `ring` is dropped exactly once, here, and not used afterwards (`Drop` of
        // the remaining fields does not touch it).
        unsafe { ManuallyDrop::drop(&mut self.ring) };
    }
}
