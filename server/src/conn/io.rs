//! A connection's I/O state: what it has in flight on the ring, as three small enums, and
//! [`next_ops`], the one pure function that says which ops it needs next. The worker calls it
//! after every event and submits what it returns; nothing else decides when to arm, cancel,
//! shut down or close.
//!
//! Teardown order (the invariants the tests below pin):
//! 1. an armed receive is cancelled first (once), and its final completion awaited;
//! 2. a send in flight is awaited (the kernel reads the queue's frames until it completes);
//! 3. then the descriptor is closed, exactly once;
//! 4. the slot is released when the close completes (`Conn::release` resets this state). A
//!    late completion of a previous connection never reaches this state: its token's
//!    generation no longer matches the slot's (`Conn::is_current`).

use super::{Conn, Phase};

/// The connection's multishot receive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Recv {
    /// None armed.
    #[default]
    Idle,
    /// On the worker's re-arm list: armed in this turn's re-arm phase (after the buffer ring
    /// got its recycled buffers back), unless reading is no longer wanted by then.
    Queued,
    /// Armed: its final completion (without `MORE`) has not arrived.
    Armed,
    /// Armed and a cancel was submitted; waiting for its final completion.
    Cancelling,
}

/// The connection's one send in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Send {
    #[default]
    Idle,
    /// On this turn's flush list.
    Listed,
    /// In flight; `pooled` is the send-pool buffer (msghdr + iovecs) it uses, or
    /// `runtime::sendpool::NO_SEND_BUF` for a single-frame send.
    InFlight { pooled: u32 },
}

/// How far the connection's descriptor is closed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Close {
    #[default]
    Open,
    /// `shutdown(SHUT_WR)` submitted: our FIN follows the last queued byte.
    WriteShut,
    /// The close is submitted; the slot is released when it completes.
    Closing,
}

/// Everything a connection has in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoState {
    pub recv: Recv,
    pub send: Send,
    pub close: Close,
}

/// Where the connection's life is heading, from its phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// Reading and writing.
    Serve,
    /// All is said: flush, send FIN, read until EOF.
    Drain,
    /// Given up: cancel, wait, close.
    Teardown,
}

/// What the connection wants, besides its goal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wants {
    pub goal: Goal,
    /// Frames are queued.
    pub output: bool,
    /// Input is wanted (not paused by backpressure).
    pub read: bool,
}

/// The ops to start now. Several may be set at once (e.g. FIN and a cancel).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ops {
    /// Put the connection on the re-arm list (armed in the re-arm phase).
    pub arm_recv: bool,
    pub cancel_recv: bool,
    /// Put the connection on this turn's flush list.
    pub list_send: bool,
    pub shutdown: bool,
    pub close: bool,
}

/// The ops a connection needs next, given what it has in flight and what it wants.
pub fn next_ops(io: &IoState, wants: Wants) -> Ops {
    let mut ops = Ops::default();
    let recv_in_kernel = matches!(io.recv, Recv::Armed | Recv::Cancelling);
    let send_in_flight = matches!(io.send, Send::InFlight { .. });
    if wants.goal == Goal::Teardown {
        if io.recv == Recv::Armed {
            ops.cancel_recv = true; // the close waits for the receive's final completion
        } else if !recv_in_kernel && !send_in_flight && io.close != Close::Closing {
            ops.close = true;
        }
        return ops;
    }
    if wants.goal == Goal::Drain && !wants.output && !send_in_flight && io.close == Close::Open {
        // Everything said: FIN, and keep reading until the peer's EOF (or the close timeout),
        // so unread input never turns our close into a reset.
        ops.shutdown = true;
    }
    match io.recv {
        Recv::Armed if !wants.read => ops.cancel_recv = true, // backpressure: stop reading
        Recv::Idle if wants.read => ops.arm_recv = true,
        _ => {}
    }
    ops.list_send = wants.output && io.send == Send::Idle;
    ops
}

impl IoState {
    /// Records `ops` as submitted (or listed).
    pub fn begin(&mut self, ops: Ops) {
        if ops.arm_recv {
            self.recv = Recv::Queued;
        }
        if ops.cancel_recv {
            self.recv = Recv::Cancelling;
        }
        if ops.list_send {
            self.send = Send::Listed;
        }
        if ops.shutdown {
            self.close = Close::WriteShut;
        }
        if ops.close {
            self.close = Close::Closing;
        }
    }

    /// The re-arm phase reached a queued receive: true if it is to be armed now (and it is
    /// recorded as armed); otherwise it goes back to idle.
    pub fn arm_now(&mut self, read: bool) -> bool {
        if self.recv != Recv::Queued {
            return false; // armed already, or the slot changed hands
        }
        self.recv = if read { Recv::Armed } else { Recv::Idle };
        read
    }

    /// The flush phase reached a listed connection: true if a send is to start now (the caller
    /// then records it with [`Self::sending`]); otherwise it leaves the list.
    pub fn flush_now(&mut self, wants: Wants) -> bool {
        if self.send != Send::Listed {
            return false;
        }
        self.send = Send::Idle;
        wants.output && wants.goal != Goal::Teardown
    }

    pub fn sending(&mut self, pooled: u32) {
        self.send = Send::InFlight { pooled };
    }

    /// The receive's final completion (no `MORE` flag) arrived: nothing is armed any more.
    pub fn recv_ended(&mut self) {
        if matches!(self.recv, Recv::Armed | Recv::Cancelling) {
            self.recv = Recv::Idle;
        }
    }

    /// The send completed; returns its pooled buffer, if it had one.
    pub fn send_done(&mut self) -> Option<u32> {
        match std::mem::take(&mut self.send) {
            Send::InFlight { pooled } => Some(pooled),
            other => {
                self.send = other;
                None
            }
        }
    }

    pub fn send_in_flight(&self) -> bool {
        matches!(self.send, Send::InFlight { .. })
    }

    /// Marks the connection for this turn's flush, unless it is listed already or a send is
    /// in flight (its completion lists it again); true when the caller must add it to the list.
    pub fn mark_for_flush(&mut self) -> bool {
        if self.send == Send::Idle {
            self.send = Send::Listed;
            return true;
        }
        false
    }
}

/// The connection's side: what it wants, and what a send completion does to it.
impl Conn {
    /// What the connection wants from the ring now (the input of [`next_ops`]).
    pub fn wants(&self) -> Wants {
        let goal = match self.phase {
            Phase::Teardown => Goal::Teardown,
            Phase::Draining => Goal::Drain,
            _ => Goal::Serve,
        };
        Wants { goal, output: !self.sendq.is_empty(), read: !self.read_paused && goal != Goal::Teardown }
    }

    /// Marks the connection for this turn's flush; true when the caller must put its slot on
    /// the flush list (not listed yet, no send in flight: its completion lists it again).
    #[inline]
    pub fn mark_for_flush(&mut self) -> bool {
        self.io.mark_for_flush()
    }

    /// A send completed with `result` (bytes written, or `-errno`): the queue moves on, and
    /// reading resumes once replies drained to half the limit. Returns the bytes written.
    pub fn on_sent(&mut self, result: i32, send_queue_limit: usize) -> usize {
        let Ok(written) = usize::try_from(result) else {
            self.abort(); // EPIPE, ECONNRESET...: the peer is gone
            return 0;
        };
        self.sendq.advance(written);
        if self.read_paused && self.sendq.pending_bytes() <= send_queue_limit / 2 {
            self.read_paused = false;
        }
        if self.phase == Phase::Teardown {
            self.abort(); // drops the queue now that the kernel no longer reads it
        }
        written
    }
}

#[cfg(test)]
mod tests;
