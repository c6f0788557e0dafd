//! The worker's listeners: multishot accepts kept armed, retried a tick after a failure, and
//! cancelled at shutdown.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use io_uring::cqueue;

use super::core::TICK;
use super::ctx::Ctx;
use super::submit::Ring;
use crate::metrics;

pub struct Listeners {
    fds: Vec<OwnedFd>,
    /// Per listener: its multishot accept is armed.
    armed: Vec<bool>,
    /// After a failed accept (e.g. a full descriptor table), accepts are re-armed from this tick.
    retry_tick: u64,
}

impl Listeners {
    pub fn new(fds: Vec<OwnedFd>) -> Self {
        Self { armed: vec![false; fds.len()], fds, retry_tick: 0 }
    }

    /// Arms every accept that ended (none after [`Self::close`]).
    pub fn arm(&mut self, ring: &mut Ring, now_tick: u64) {
        if now_tick < self.retry_tick {
            return;
        }
        for (i, fd) in self.fds.iter().enumerate() {
            if !self.armed[i] {
                ring.accept(fd.as_raw_fd(), i as u32);
                self.armed[i] = true;
            }
        }
    }

    /// An accept completion on listener `index`: the new direct descriptor, if any.
    pub fn on_accept(
        &mut self,
        index: usize,
        result: i32,
        flags: u32,
        now_tick: u64,
        ctx: &Ctx,
    ) -> Option<u32> {
        if !cqueue::more(flags) {
            // (The list is empty once shutdown released the listeners.)
            if let Some(armed) = self.armed.get_mut(index) {
                *armed = false;
            }
        }
        if result >= 0 {
            return Some(result as u32);
        }
        if result != -libc::ECANCELED {
            metrics::inc(&ctx.stats().accept_errors);
            // E.g. ENFILE: the descriptor table is full. Retry on the next tick, not the next
            // turn (which would spin), and log once per tick at most.
            if self.retry_tick <= now_tick {
                let err = io::Error::from_raw_os_error(-result);
                tracing::warn!(
                    worker = ctx.index,
                    "accept failed: {err} (retrying in {} ms)",
                    TICK.as_millis()
                );
            }
            self.retry_tick = now_tick + 1;
        }
        None
    }

    /// Cancels the accepts and closes the listeners (shutdown).
    pub fn close(&mut self, ring: &mut Ring) {
        for i in 0..self.fds.len() {
            ring.cancel_accept(i as u32);
        }
        // The cancelled accepts hold their own file references; our descriptors can go now.
        self.fds.clear();
        self.armed.clear();
    }
}
