//! Lifecycle policy: which deadline a connection runs against in each phase, what happens
//! when it fires, and whether a new connection is served at all. Pure: time is a tick count
//! passed in (`now`), and the worker carries out the decisions (timer wheel, gauges, ops).
//!
//! Each connection has one current deadline (`Conn::deadline_tick`); timer-wheel entries that
//! do not match it are stale. Activity does not touch the wheel: an idle deadline that fires on
//! a connection active since is re-armed for `last_rx + idle` (lazy re-arm).

use std::time::Duration;

use tickcast_protocol::http as proto_http;

use super::{Conn, Phase};
use crate::config::Config;

/// The deadlines of every phase, in timer ticks (each at least one tick).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// A request's head and body (and a keep-alive connection's wait between requests).
    pub handshake: u64,
    /// A WebSocket's silence before we ping it.
    pub idle: u64,
    /// The ping's answer (any input counts).
    pub pong: u64,
    /// Our close frame's answer, or the peer's EOF after our FIN.
    pub close: u64,
    pub sse_heartbeat: u64,
}

/// Ticks covering `d` (at least one: a zero timeout fires on the next tick).
pub fn ticks(d: Duration, tick: Duration) -> u64 {
    (d.as_millis() / tick.as_millis().max(1)).max(1) as u64
}

impl Timeouts {
    pub fn new(config: &Config, tick: Duration) -> Self {
        Self {
            handshake: ticks(config.handshake_timeout, tick),
            idle: ticks(config.idle_timeout, tick),
            pong: ticks(config.pong_timeout, tick),
            close: ticks(config.close_timeout, tick),
            sse_heartbeat: ticks(config.sse_heartbeat, tick),
        }
    }
}

/// The gauge a connection is counted in until it is released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gauge {
    /// Completed a WebSocket handshake (also counted as a handshake).
    WebSocket,
    Sse,
}

/// What a phase change (or input that changed nothing) asks of the worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// A new deadline, in ticks from now.
    pub deadline: Option<u64>,
    /// Entered a counted kind of connection.
    pub entered: Option<Gauge>,
}

/// Deadlines and gauges after a connection processed input (or a long-poll was answered):
/// `between_requests` is a keep-alive connection in `Http` holding no partial request, whose
/// handshake timeout restarts as its idle timeout (only a request left half-sent runs out the
/// clock); `longpoll` the timeout of a long-poll just parked, in ticks.
pub fn on_input(t: &Timeouts, before: Phase, after: Phase, between_requests: bool, longpoll: u64) -> Change {
    if before == Phase::Http && after == Phase::Http && between_requests {
        return Change { deadline: Some(t.handshake), entered: None };
    }
    on_phase_change(t, before, after, longpoll)
}

/// Deadlines and gauges that follow a phase transition.
pub fn on_phase_change(t: &Timeouts, before: Phase, after: Phase, longpoll: u64) -> Change {
    if before == after {
        return Change::default();
    }
    let (deadline, entered) = match (before, after) {
        (Phase::Http, Phase::Open(_)) => (t.idle, Some(Gauge::WebSocket)),
        (Phase::Http, Phase::Sse) => (t.sse_heartbeat, Some(Gauge::Sse)),
        (_, Phase::LongPoll) => (longpoll, None),
        // Answered; the keep-alive connection waits for its next request.
        (Phase::LongPoll, Phase::Http) => (t.handshake, None),
        (_, Phase::Closing | Phase::Draining) => (t.close, None),
        _ => return Change::default(),
    };
    Change { deadline: Some(deadline), entered }
}

/// Why a connection was given up on (each is counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expired {
    Handshake,
    /// No answer to our ping.
    Idle,
    Close,
}

/// What a fired timer entry means for its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnTimer {
    /// Stale (superseded by a later deadline) or nothing to do.
    Ignore,
    /// Active since the deadline was set: the new deadline tick (lazy re-arm).
    Rearm(u64),
    Abort(Expired),
    /// Silent too long: ping it (then [`after_keepalive`]).
    Ping,
    /// Keep the SSE stream alive (then [`after_keepalive`]).
    Heartbeat,
    /// The long-poll's time is up: answer it, empty if need be.
    AnswerPoll,
}

/// The timer state of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerView {
    pub phase: Phase,
    pub deadline_tick: u64,
    pub last_rx_tick: u64,
    pub ping_outstanding: bool,
}

/// Decides what the timer entry due at `due_tick` does, at `now` (ticks).
pub fn on_timer(t: &Timeouts, conn: TimerView, due_tick: u64, now: u64) -> OnTimer {
    if conn.deadline_tick != due_tick {
        return OnTimer::Ignore; // superseded by a later deadline
    }
    match conn.phase {
        Phase::Http => OnTimer::Abort(Expired::Handshake),
        Phase::Open(_) if conn.last_rx_tick + t.idle > now => OnTimer::Rearm(conn.last_rx_tick + t.idle),
        Phase::Open(_) if conn.ping_outstanding => OnTimer::Abort(Expired::Idle),
        Phase::Open(_) => OnTimer::Ping,
        Phase::Sse => OnTimer::Heartbeat,
        Phase::LongPoll => OnTimer::AnswerPoll,
        Phase::Closing | Phase::Draining => OnTimer::Abort(Expired::Close),
        Phase::Teardown => OnTimer::Ignore,
    }
}

/// After a ping or heartbeat was queued: the next deadline (pong or heartbeat), unless
/// queueing it changed the phase (a slow consumer being closed), which sets its own.
pub fn after_keepalive(t: &Timeouts, action: OnTimer, before: Phase, after: Phase) -> Change {
    if before != after {
        return on_phase_change(t, before, after, 0);
    }
    let deadline = if action == OnTimer::Heartbeat { t.sse_heartbeat } else { t.pong };
    Change { deadline: Some(deadline), entered: None }
}

/// Whether a connection just accepted is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Served: it has the handshake timeout to send its request.
    Serve { deadline: u64 },
    /// Past the worker's limit: answered 503 and closed (within the close timeout).
    Refuse { deadline: u64 },
}

/// `open` counts the new connection.
pub fn admit(t: &Timeouts, open: usize, max: usize) -> Admission {
    if open > max {
        Admission::Refuse { deadline: t.close }
    } else {
        Admission::Serve { deadline: t.handshake }
    }
}

/// The connection's side: its timer state, and the refusal past the limit.
impl Conn {
    /// Its timer state (the input of [`on_timer`]).
    pub fn timer_view(&self) -> TimerView {
        TimerView {
            phase: self.phase,
            deadline_tick: self.deadline_tick,
            last_rx_tick: self.last_rx_tick,
            ping_outstanding: self.ping_outstanding,
        }
    }

    /// Refuses a connection past the worker's limit: a 503 (retry in a second), then close.
    pub fn refuse_over_capacity(&mut self) {
        let mut out = Vec::with_capacity(160);
        proto_http::write_response(
            &mut out,
            503,
            &[("Retry-After", "1")],
            b"server at connection limit\n",
            false,
        );
        self.sendq.push_unbounded(out.into());
        self.phase = Phase::Draining;
    }
}

#[cfg(test)]
mod tests;
