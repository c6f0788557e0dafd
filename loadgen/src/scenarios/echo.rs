//! `echo`: stamped messages to `/echo`, round trip time from the *scheduled* send time.
//!
//! Closed loop (default): send, wait for the echo, send the next. Open loop (`--rate` per
//! client): a sender task sends message `k` at `t0 + k / rate` whatever happened to earlier
//! ones, and the receiver measures from that scheduled time, so a stalled server shows up as
//! latency rather than as fewer samples.

use std::rc::Rc;

use tickcast_protocol::frame::OpCode;
use tokio::sync::watch;

use crate::engine::{Ctx, Phase, instant_at, wait_running, wait_stopping};
use crate::io::ws::{WsClient, WsWriter};
use crate::measure::loss::SeqTracker;
use crate::measure::stamp::{self, Stamp};
use crate::plan::Schedule;
use crate::time::now_ns;

pub async fn run(ctx: &Ctx, index: u64, mut client: WsClient, mut phase: watch::Receiver<Phase>) {
    let Some(t0_ns) = wait_running(&mut phase).await else {
        client.close().await;
        return super::finish(ctx, &client, false);
    };
    let plan = &ctx.plan;
    let end_ns = t0_ns + plan.stop.duration.as_nanos() as u64;
    let limit = plan.stop.count.unwrap_or(u64::MAX);
    let mut tracker = SeqTracker::new();
    let cut_off = match plan.workload.schedule {
        Schedule::Open { .. } => {
            let writer = client.split_writer();
            let sender = tokio_uring::spawn(open_loop_sender(
                Rc::new(ctx_view(ctx)),
                writer,
                index,
                t0_ns,
                end_ns,
                limit,
            ));
            let cut_off = receive(ctx, index, &mut client, &mut tracker, &mut phase, None).await;
            sender.abort();
            if let Ok(sent) = sender.await {
                ctx.stats.borrow_mut().tally.counters.merge(&sent);
            }
            cut_off
        }
        _ => closed_loop(ctx, index, &mut client, &mut tracker, &mut phase, end_ns, limit).await,
    };
    if !cut_off {
        client.close().await;
    }
    let mut stats = ctx.stats.borrow_mut();
    stats.tally.loss.merge(&tracker.finish(tracker.max()));
    drop(stats);
    super::finish(ctx, &client, cut_off);
}

/// What the open-loop sender needs from the context (it runs in its own task).
struct SenderView {
    schedule: Schedule,
    message_bytes: usize,
}

fn ctx_view(ctx: &Ctx) -> SenderView {
    SenderView { schedule: ctx.plan.workload.schedule, message_bytes: ctx.plan.workload.message_bytes }
}

/// Sends on schedule until `end_ns` or `limit` messages; returns its counters.
async fn open_loop_sender(
    view: Rc<SenderView>,
    mut writer: WsWriter,
    index: u64,
    t0_ns: u64,
    end_ns: u64,
    limit: u64,
) -> crate::measure::stats::Counters {
    let mut counters = crate::measure::stats::Counters::default();
    let mut buf = Vec::with_capacity(view.message_bytes + 64);
    for k in 0..limit {
        let due = view.schedule.due(k).unwrap_or_default();
        let due_ns = t0_ns + due.as_nanos() as u64;
        if due_ns >= end_ns {
            break;
        }
        tokio::time::sleep_until(instant_at(due_ns)).await;
        if now_ns() > due_ns + 1_000_000 {
            counters.sends_late += 1;
        }
        let s = Stamp { seq: k + 1, t_ns: due_ns, src: index };
        stamp::write(&mut buf, s, view.message_bytes);
        match writer.send(OpCode::Text, &buf).await {
            Ok(n) => {
                counters.messages_sent += 1;
                counters.bytes_sent += n as u64;
            }
            Err(_) => break,
        }
    }
    counters
}

async fn closed_loop(
    ctx: &Ctx,
    index: u64,
    client: &mut WsClient,
    tracker: &mut SeqTracker,
    phase: &mut watch::Receiver<Phase>,
    end_ns: u64,
    limit: u64,
) -> bool {
    let size = ctx.plan.workload.message_bytes;
    let mut buf = Vec::with_capacity(size + 64);
    for seq in 1..=limit {
        let t_ns = now_ns();
        if t_ns >= end_ns {
            break;
        }
        let s = Stamp { seq, t_ns, src: index };
        stamp::write(&mut buf, s, size);
        match client.writer.send(OpCode::Text, &buf).await {
            Ok(n) => {
                let mut stats = ctx.stats.borrow_mut();
                stats.tally.counters.messages_sent += 1;
                stats.tally.counters.bytes_sent += n as u64;
            }
            Err(_) => return true,
        }
        if receive(ctx, index, client, tracker, phase, Some(seq)).await {
            return true;
        }
        if *phase.borrow() == Phase::Stopping {
            break;
        }
    }
    false
}

/// Receives echoes until `until_seq` comes back (closed loop) or the run stops; returns whether
/// the connection was cut off.
async fn receive(
    ctx: &Ctx,
    index: u64,
    client: &mut WsClient,
    tracker: &mut SeqTracker,
    phase: &mut watch::Receiver<Phase>,
    until_seq: Option<u64>,
) -> bool {
    loop {
        let incoming = tokio::select! {
            biased;
            () = wait_stopping(phase) => return false,
            incoming = client.next() => incoming,
        };
        let Ok(Some(message)) = incoming else {
            return true;
        };
        let now = client.last_read_ns;
        let stamp = stamp::parse(client.payload(&message));
        let bytes = client.take_bytes_received();
        let mut stats = ctx.stats.borrow_mut();
        stats.tally.counters.messages_received += 1;
        stats.tally.counters.bytes_received += bytes;
        match stamp {
            Some(s) if s.src == index => {
                stats.record("rtt", now.saturating_sub(s.t_ns), true);
                tracker.record(s.seq);
                if until_seq == Some(s.seq) {
                    return false;
                }
            }
            _ => stats.tally.counters.messages_unstamped += 1,
        }
    }
}
