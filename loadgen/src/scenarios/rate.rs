//! `rate`: one publisher sends stamped messages on a fixed open-loop schedule over HTTP
//! keep-alive (`POST /publish/<channel>`, pipelined, so a slow answer never delays the next
//! send); every subscriber measures delivery latency = receive time - *scheduled* send time and
//! accounts loss by sequence number.

use std::cell::Cell;
use std::rc::Rc;

use tokio::sync::watch;

use crate::engine::{Ctx, Phase, instant_at, wait_running, wait_stopping};
use crate::loss::SeqTracker;
use crate::stamp::{self, Stamp};
use crate::time::now_ns;
use crate::transports::http::{HttpConn, post_request};
use crate::transports::ws::WsClient;

/// Publisher stream id carried in the stamp.
const PUBLISHER_SRC: u64 = 0;

pub async fn publisher(ctx: Rc<Ctx>, mut phase: watch::Receiver<Phase>) {
    let plan = &ctx.plan;
    let conn = match HttpConn::connect(&plan.target).await {
        Ok(conn) => conn,
        Err(_) => {
            ctx.stats.borrow_mut().counters.publish_failed += 1;
            return;
        }
    };
    let ok = Rc::new(Cell::new(0u64));
    let failed = Rc::new(Cell::new(0u64));
    let reader = {
        let (ok, failed) = (ok.clone(), failed.clone());
        tokio_uring::spawn(HttpConn::read_responses(conn.stream.clone(), move |head| {
            if (200..300).contains(&head.status) {
                ok.set(ok.get() + 1);
            } else {
                failed.set(failed.get() + 1);
            }
        }))
    };
    let Some(t0_ns) = wait_running(&mut phase).await else {
        return;
    };
    let end_ns = t0_ns + plan.stop.duration.as_nanos() as u64;
    let limit = plan.stop.count.unwrap_or(u64::MAX);
    let path = format!("/publish/{}", plan.workload.channel);
    let (mut body, mut request) = (Vec::new(), Vec::new());
    let (mut sent, mut late, mut bytes) = (0u64, 0u64, 0u64);
    for k in 0..limit {
        let due_ns = t0_ns + plan.workload.schedule.due(k).unwrap_or_default().as_nanos() as u64;
        if due_ns >= end_ns || *phase.borrow() == Phase::Stopping {
            break;
        }
        tokio::time::sleep_until(instant_at(due_ns)).await;
        if now_ns() > due_ns + 1_000_000 {
            late += 1;
        }
        let s = Stamp { seq: k + 1, t_ns: due_ns, src: PUBLISHER_SRC };
        stamp::write(&mut body, s, plan.workload.message_bytes);
        post_request(&mut request, &plan.target, &path, &body);
        let (result, buf) = conn.send(std::mem::take(&mut request)).await;
        request = buf;
        if result.is_err() {
            break;
        }
        sent += 1;
        bytes += request.len() as u64;
    }
    // Give the answers in flight a moment, bounded.
    let drain_until = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while ok.get() + failed.get() < sent && tokio::time::Instant::now() < drain_until {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    reader.abort();
    let mut stats = ctx.stats.borrow_mut();
    stats.published += sent;
    stats.counters.messages_sent += sent;
    stats.counters.bytes_sent += bytes;
    stats.counters.sends_late += late;
    stats.counters.publish_ok += ok.get();
    stats.counters.publish_failed += failed.get() + (sent - (ok.get() + failed.get()).min(sent));
}

pub async fn subscriber(ctx: &Ctx, mut client: WsClient, mut phase: watch::Receiver<Phase>) {
    let mut tracker = SeqTracker::new();
    let cut_off = loop {
        let incoming = tokio::select! {
            biased;
            () = wait_stopping(&mut phase) => break false,
            incoming = client.next() => incoming,
        };
        let Ok(Some(message)) = incoming else {
            break true;
        };
        let now = client.last_read_ns;
        let stamp = stamp::parse(client.payload(&message));
        let bytes = client.take_bytes_received();
        let mut stats = ctx.stats.borrow_mut();
        stats.counters.messages_received += 1;
        stats.counters.bytes_received += bytes;
        match stamp {
            Some(s) if s.src == PUBLISHER_SRC => {
                stats.record("latency", now.saturating_sub(s.t_ns), true);
                tracker.record(s.seq);
            }
            _ => stats.counters.messages_unstamped += 1,
        }
    };
    if !cut_off {
        client.close().await;
    }
    let mut stats = ctx.stats.borrow_mut();
    // The tail is settled by the coordinator, which knows how many were published.
    stats.loss.merge(&tracker.finish(0));
    stats.streams += 1;
    stats.seq_max_sum += tracker.max();
    drop(stats);
    super::finish(ctx, &client, cut_off);
}
