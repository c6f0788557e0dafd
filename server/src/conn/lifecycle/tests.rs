//! Lifecycle policy on virtual ticks: a small driver plays the worker's part (one deadline per
//! connection, entries as hints) with no ring and no clock.

use super::*;
use crate::http::Endpoint;

const T: Timeouts = Timeouts { handshake: 50, idle: 300, pong: 100, close: 20, sse_heartbeat: 150 };

#[test]
fn ticks_round_down_but_never_to_zero() {
    let tick = Duration::from_millis(100);
    assert_eq!(ticks(Duration::from_secs(30), tick), 300);
    assert_eq!(ticks(Duration::from_millis(250), tick), 2);
    assert_eq!(ticks(Duration::ZERO, tick), 1);
}

#[test]
fn phase_changes_set_the_deadline_of_the_new_phase() {
    let ws = Phase::Open(Endpoint::Ws);
    let cases = [
        (Phase::Http, ws, Some(300), Some(Gauge::WebSocket)),
        (Phase::Http, Phase::Open(Endpoint::Echo), Some(300), Some(Gauge::WebSocket)),
        (Phase::Http, Phase::Sse, Some(150), Some(Gauge::Sse)),
        (Phase::Http, Phase::LongPoll, Some(42), None),
        (Phase::LongPoll, Phase::Http, Some(50), None),
        (ws, Phase::Closing, Some(20), None),
        (ws, Phase::Draining, Some(20), None),
        (Phase::Http, Phase::Draining, Some(20), None),
        (Phase::Closing, Phase::Draining, Some(20), None),
        (ws, Phase::Teardown, None, None),
        (ws, ws, None, None),
    ];
    for (before, after, deadline, entered) in cases {
        assert_eq!(
            on_phase_change(&T, before, after, 42),
            Change { deadline, entered },
            "{before:?} -> {after:?}"
        );
    }
}

#[test]
fn a_keep_alive_connection_between_requests_restarts_its_handshake_clock() {
    let restart = Change { deadline: Some(50), entered: None };
    assert_eq!(on_input(&T, Phase::Http, Phase::Http, true, 0), restart);
    assert_eq!(on_input(&T, Phase::Http, Phase::Http, false, 0), Change::default(), "half a request");
    assert_eq!(on_input(&T, Phase::Http, Phase::Sse, true, 0).entered, Some(Gauge::Sse));
}

#[test]
fn stale_entries_are_ignored() {
    let conn = TimerView { phase: Phase::Http, deadline_tick: 80, last_rx_tick: 0, ping_outstanding: false };
    assert_eq!(on_timer(&T, conn, 50, 50), OnTimer::Ignore, "superseded");
    assert_eq!(on_timer(&T, conn, 80, 80), OnTimer::Abort(Expired::Handshake));
    let gone = TimerView { phase: Phase::Teardown, deadline_tick: 80, ..conn };
    assert_eq!(on_timer(&T, gone, 80, 80), OnTimer::Ignore);
}

/// The worker's part for one WebSocket connection: its deadline, its last input, its ping.
struct Driver {
    conn: TimerView,
    /// Timer-wheel entries (due ticks), hints only.
    entries: Vec<u64>,
    pings: u32,
}

impl Driver {
    fn open(now: u64) -> Self {
        let conn = TimerView {
            phase: Phase::Open(Endpoint::Ws),
            deadline_tick: now + T.idle,
            last_rx_tick: now,
            ping_outstanding: false,
        };
        Self { conn, entries: vec![now + T.idle], pings: 0 }
    }

    fn set_deadline(&mut self, due: u64) {
        self.conn.deadline_tick = due;
        self.entries.push(due);
    }

    /// Input: only the connection's own fields change, never the wheel.
    fn input(&mut self, now: u64) {
        self.conn.last_rx_tick = now;
        self.conn.ping_outstanding = false;
    }

    /// Fires every entry due by `now`; returns the abort, if any.
    fn advance(&mut self, now: u64) -> Option<Expired> {
        let (due, later): (Vec<u64>, Vec<u64>) = self.entries.iter().partition(|&&d| d <= now);
        self.entries = later;
        for at in due {
            match on_timer(&T, self.conn, at, now) {
                OnTimer::Ignore => {}
                OnTimer::Rearm(due) => self.set_deadline(due),
                OnTimer::Ping => {
                    self.pings += 1;
                    self.conn.ping_outstanding = true;
                    let change = after_keepalive(&T, OnTimer::Ping, self.conn.phase, self.conn.phase);
                    self.set_deadline(now + change.deadline.unwrap());
                }
                OnTimer::Abort(why) => return Some(why),
                other => panic!("unexpected {other:?} for a WebSocket"),
            }
        }
        None
    }
}

#[test]
fn an_active_connection_is_rearmed_lazily_and_never_pinged() {
    let mut d = Driver::open(0);
    for now in 1..=1000 {
        if now % 100 == 0 {
            d.input(now);
        }
        assert_eq!(d.advance(now), None, "at {now}");
    }
    assert_eq!(d.pings, 0);
    assert!(d.entries.len() <= 1, "one live entry at a time: {:?}", d.entries);
}

#[test]
fn a_silent_connection_is_pinged_then_dropped_after_the_pong_timeout() {
    let mut d = Driver::open(0);
    for now in 1..300 {
        assert_eq!(d.advance(now), None);
    }
    assert_eq!(d.advance(300), None);
    assert_eq!(d.pings, 1, "pinged when the idle timeout ran out");
    for now in 301..400 {
        assert_eq!(d.advance(now), None, "waits for the pong until tick 400 ({now})");
    }
    assert_eq!(d.advance(400), Some(Expired::Idle));
}

#[test]
fn a_pong_in_time_keeps_the_connection() {
    let mut d = Driver::open(0);
    assert_eq!(d.advance(300), None);
    d.input(350); // any input answers the ping
    assert_eq!(d.advance(400), None, "the pong deadline re-arms for last input + idle");
    assert_eq!(d.conn.deadline_tick, 650);
    assert_eq!(d.advance(650), None);
    assert_eq!(d.pings, 2);
}

#[test]
fn other_phases_fire_their_own_action() {
    let view = |phase| TimerView { phase, deadline_tick: 10, last_rx_tick: 0, ping_outstanding: false };
    assert_eq!(on_timer(&T, view(Phase::Sse), 10, 10), OnTimer::Heartbeat);
    assert_eq!(on_timer(&T, view(Phase::LongPoll), 10, 10), OnTimer::AnswerPoll);
    assert_eq!(on_timer(&T, view(Phase::Closing), 10, 10), OnTimer::Abort(Expired::Close));
    assert_eq!(on_timer(&T, view(Phase::Draining), 10, 10), OnTimer::Abort(Expired::Close));
    let hb = after_keepalive(&T, OnTimer::Heartbeat, Phase::Sse, Phase::Sse);
    assert_eq!(hb.deadline, Some(150));
    // A heartbeat that overflowed the queue closed the stream: the close deadline instead.
    let closed = after_keepalive(&T, OnTimer::Heartbeat, Phase::Sse, Phase::Draining);
    assert_eq!(closed.deadline, Some(20));
}

#[test]
fn connections_past_the_limit_are_refused() {
    assert_eq!(admit(&T, 10, 10), Admission::Serve { deadline: 50 });
    assert_eq!(admit(&T, 11, 10), Admission::Refuse { deadline: 20 });
}
