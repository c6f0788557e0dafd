//! `next_ops` on tables of states, and teardown driven by a model of the kernel's completions
//! (no ring).

use super::*;
use crate::conn::Conn;

const SERVE: Wants = Wants { goal: Goal::Serve, output: false, read: true };

fn io(recv: Recv, send: Send, close: Close) -> IoState {
    IoState { recv, send, close }
}

const RECVS: [Recv; 4] = [Recv::Idle, Recv::Queued, Recv::Armed, Recv::Cancelling];
const SENDS: [Send; 3] = [Send::Idle, Send::Listed, Send::InFlight { pooled: 3 }];
const CLOSES: [Close; 3] = [Close::Open, Close::WriteShut, Close::Closing];
const GOALS: [Goal; 3] = [Goal::Serve, Goal::Drain, Goal::Teardown];

/// Every state x every want: the safety rules hold whatever the combination.
#[test]
fn no_op_is_ever_started_twice_or_out_of_order() {
    for recv in RECVS {
        for send in SENDS {
            for close in CLOSES {
                for goal in GOALS {
                    for (output, read) in [(false, false), (false, true), (true, false), (true, true)] {
                        let state = io(recv, send, close);
                        let ops = next_ops(&state, Wants { goal, output, read });
                        let at = format!("{state:?} {goal:?} output={output} read={read}: {ops:?}");
                        let in_kernel = matches!(recv, Recv::Armed | Recv::Cancelling);
                        let in_flight = matches!(send, Send::InFlight { .. });
                        assert!(!ops.close || (!in_kernel && !in_flight && close != Close::Closing), "{at}");
                        assert!(!ops.cancel_recv || recv == Recv::Armed, "{at}");
                        assert!(!ops.arm_recv || (recv == Recv::Idle && read), "{at}");
                        assert!(!ops.list_send || (send == Send::Idle && output), "{at}");
                        assert!(!ops.shutdown || (close == Close::Open && !in_flight && !output), "{at}");
                        if goal == Goal::Teardown {
                            assert!(!ops.arm_recv && !ops.list_send && !ops.shutdown, "{at}");
                        } else {
                            assert!(!ops.close, "only teardown closes: {at}");
                        }
                        if goal == Goal::Serve {
                            assert!(!ops.shutdown, "{at}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn serving_arms_once_and_lists_once() {
    let mut state = IoState::default();
    let ops = next_ops(&state, Wants { output: true, ..SERVE });
    assert_eq!(ops, Ops { arm_recv: true, list_send: true, ..Ops::default() });
    state.begin(ops);
    assert_eq!(next_ops(&state, Wants { output: true, ..SERVE }), Ops::default(), "queued and listed");
    assert!(state.arm_now(true));
    assert_eq!(state.recv, Recv::Armed);
    assert!(!state.arm_now(true), "a stale re-arm entry arms nothing");
    assert!(state.flush_now(Wants { output: true, ..SERVE }));
    state.sending(7);
    assert!(!state.mark_for_flush(), "a send in flight lists the connection when it completes");
    assert_eq!(state.send_done(), Some(7));
    assert_eq!(state.send_done(), None);
    assert!(state.mark_for_flush());
    assert!(!state.mark_for_flush(), "listed once per turn");
}

#[test]
fn backpressure_cancels_then_rearms_after_the_final_completion() {
    let mut state = io(Recv::Armed, Send::Idle, Close::Open);
    let paused = Wants { read: false, ..SERVE };
    let ops = next_ops(&state, paused);
    assert_eq!(ops, Ops { cancel_recv: true, ..Ops::default() });
    state.begin(ops);
    assert_eq!(next_ops(&state, paused), Ops::default(), "one cancel");
    // Unpaused before the cancel's completion: nothing until the receive has ended.
    assert_eq!(next_ops(&state, SERVE), Ops::default());
    state.recv_ended();
    assert_eq!(next_ops(&state, SERVE), Ops { arm_recv: true, ..Ops::default() });
    // Still paused when it ended: stays idle.
    assert_eq!(next_ops(&state, paused), Ops::default());
    // Queued, then paused before the re-arm phase: back to idle, not armed.
    state.begin(next_ops(&state, SERVE));
    assert!(!state.arm_now(false));
    assert_eq!(state.recv, Recv::Idle);
}

#[test]
fn draining_sends_fin_once_after_the_queue_is_out() {
    let drain = Wants { goal: Goal::Drain, output: true, read: true };
    let mut state = io(Recv::Armed, Send::InFlight { pooled: 0 }, Close::Open);
    assert_eq!(next_ops(&state, drain), Ops::default(), "frames still queued");
    assert_eq!(next_ops(&state, Wants { output: false, ..drain }), Ops::default(), "a send in flight");
    state.send_done();
    let ops = next_ops(&state, Wants { output: false, ..drain });
    assert_eq!(ops, Ops { shutdown: true, ..Ops::default() });
    state.begin(ops);
    assert_eq!(next_ops(&state, Wants { output: false, ..drain }), Ops::default(), "one FIN");
    assert_eq!(state.recv, Recv::Armed, "and reading goes on until EOF");
}

/// A model of the kernel: which ops are outstanding, and how many closes were submitted.
#[derive(Default)]
struct Kernel {
    recv: bool,
    send: bool,
    closes: u32,
    released: bool,
}

/// Runs `next_ops` and "submits" what it returns, as the worker does after every event.
fn reconcile(state: &mut IoState, kernel: &mut Kernel, wants: Wants) {
    let ops = next_ops(state, wants);
    state.begin(ops);
    if ops.close {
        assert!(!kernel.recv && !kernel.send, "closed with ops outstanding");
        kernel.closes += 1;
    }
}

#[test]
fn teardown_cancels_waits_closes_once_and_releases_in_any_completion_order() {
    let teardown = Wants { goal: Goal::Teardown, output: true, read: true };
    for recv_first in [true, false] {
        let mut state = io(Recv::Armed, Send::InFlight { pooled: 1 }, Close::WriteShut);
        let mut kernel = Kernel { recv: true, send: true, ..Kernel::default() };
        reconcile(&mut state, &mut kernel, teardown);
        assert_eq!(state.recv, Recv::Cancelling, "the receive is cancelled first");
        for step in 0..2 {
            if (step == 0) == recv_first {
                kernel.recv = false;
                state.recv_ended();
            } else {
                kernel.send = false;
                assert_eq!(state.send_done(), Some(1));
            }
            reconcile(&mut state, &mut kernel, teardown);
            // Extra events (a timer, a late wake) reconcile again: still one close.
            reconcile(&mut state, &mut kernel, teardown);
        }
        assert_eq!(kernel.closes, 1, "closed exactly once (recv first: {recv_first})");
        assert_eq!(state.close, Close::Closing);
        // The close completes: the slot is released (fresh state), and the next connection
        // in the slot starts from nothing in flight.
        let mut conn = Conn::default();
        conn.open(0);
        conn.io = state;
        conn.release();
        kernel.released = true;
        assert_eq!(conn.io, IoState::default());
        assert!(kernel.released);
    }
}

#[test]
fn teardown_with_a_queued_receive_closes_at_once() {
    let teardown = Wants { goal: Goal::Teardown, output: false, read: false };
    let mut state = io(Recv::Queued, Send::Listed, Close::Open);
    let ops = next_ops(&state, teardown);
    assert_eq!(ops, Ops { close: true, ..Ops::default() }, "nothing is in the kernel");
    state.begin(ops);
    assert!(!state.arm_now(false), "the re-arm phase drops it");
    assert!(!state.flush_now(teardown), "the flush phase drops it");
    assert_eq!(state.send, Send::Idle);
}

#[test]
fn late_completions_of_a_previous_connection_are_not_its_successors() {
    let mut conn = Conn::default();
    conn.open(0);
    let old = conn.generation;
    assert!(conn.is_current(old));
    conn.release();
    assert!(!conn.is_current(old), "a released slot matches no token");
    conn.open(5);
    assert!(conn.is_current(conn.generation));
    assert!(!conn.is_current(old), "a completion of the slot's previous connection is ignored");
}
