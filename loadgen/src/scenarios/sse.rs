//! `rate` subscribers on Server-Sent Events: `GET /sse?channels=...`; each `message` event's
//! data goes to `Deliveries`, each `gap` event counts as a gap notice. When the server ends the
//! stream during the run, the client reconnects with `Last-Event-ID` (the last seq per channel,
//! `a:12,b:3`), a bounded number of times in a row.

use std::net::IpAddr;

use tokio::sync::{OwnedSemaphorePermit, watch};

use crate::engine::{Ctx, OPEN_TIMEOUT, Phase, ReadyCounter, wait_stopping};
use crate::io::sse::{Parser, SseClient};
use crate::measure::deliveries::Deliveries;
use crate::wire::poll::Since;

/// Reconnects in a row (without an event in between) before giving up.
const RECONNECTS_MAX: u32 = 5;
/// Pause before reconnecting.
const RECONNECT_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

pub async fn run(
    ctx: &Ctx,
    index: u64,
    source: Option<IpAddr>,
    permit: OwnedSemaphorePermit,
    ready: &ReadyCounter,
    mut phase: watch::Receiver<Phase>,
) {
    let (_, path) = super::subscription(ctx, index);
    let target = &ctx.plan.target;
    let opened = tokio::time::timeout(OPEN_TIMEOUT, SseClient::open(target, &path, source, None)).await;
    let client = super::opened_client(ctx, opened);
    drop(permit);
    ready.finished();
    let Some(mut client) = client else {
        return;
    };
    ctx.stats.borrow_mut().tally.counters.requests += 1;
    let mut deliveries = super::deliveries(ctx, index);
    let mut parser = Parser::default();
    let mut since = Since::default();
    let mut failures = 0;
    let cut_off = loop {
        let read = tokio::select! {
            biased;
            () = wait_stopping(&mut phase) => break false,
            read = client.read() => read,
        };
        let now = client.last_read_ns;
        let (bytes_in, bytes_out) = client.take_bytes();
        let ended = {
            let mut stats = ctx.stats.borrow_mut();
            stats.tally.counters.bytes_received += bytes_in;
            stats.tally.counters.bytes_sent += bytes_out;
            match read {
                Ok(0) => true,
                Ok(_) => {
                    let fed = parser.feed(client.decoded(), |event, id| {
                        on_event(&mut deliveries, &mut stats, &mut since, event, id, now);
                    });
                    if fed.is_err() {
                        stats.tally.counters.malformed += 1;
                    }
                    failures = 0;
                    fed.is_err()
                }
                Err(_) => {
                    stats.tally.counters.malformed += 1;
                    true
                }
            }
        };
        if !ended {
            continue;
        }
        // The stream ended during the run: resume where it stopped.
        client.close();
        let resumed = loop {
            failures += 1;
            if failures > RECONNECTS_MAX {
                break None;
            }
            tokio::time::sleep(RECONNECT_PAUSE).await;
            if *phase.borrow() == Phase::Stopping {
                break None;
            }
            let last = if since.0.is_empty() { parser.last_id.clone() } else { Some(since.to_query()) };
            parser = parser.resumed();
            {
                let mut stats = ctx.stats.borrow_mut();
                stats.tally.counters.reconnects += 1;
                stats.tally.counters.requests += 1;
            }
            let open = SseClient::open(target, &path, source, last.as_deref());
            if let Ok(Ok((c, _))) = tokio::time::timeout(OPEN_TIMEOUT, open).await {
                break Some(c);
            }
        };
        match resumed {
            Some(c) => client = c,
            None => {
                deliveries.finish(&mut ctx.stats.borrow_mut());
                finish(ctx, true);
                return;
            }
        }
    };
    let (bytes_in, bytes_out) = client.take_bytes();
    client.close();
    let mut stats = ctx.stats.borrow_mut();
    stats.tally.counters.bytes_received += bytes_in;
    stats.tally.counters.bytes_sent += bytes_out;
    deliveries.finish(&mut stats);
    drop(stats);
    finish(ctx, cut_off);
}

fn on_event(
    deliveries: &mut Deliveries,
    stats: &mut crate::measure::tally::ThreadStats,
    since: &mut Since,
    event: crate::io::sse::Event,
    id: Option<&str>,
    now: u64,
) {
    // `id:` is the stream's position on each of its channels (`a:12@E,b:3@E`).
    if let Some(id) = id {
        since.absorb_id(id);
    }
    match event.kind.as_str() {
        "gap" => {
            deliveries.on_gap_notice(stats, &event.data);
        }
        "reset" => {
            deliveries.on_reset_notice(stats, &event.data);
        }
        _ => {
            deliveries.on_message(stats, &event.data, now);
        }
    }
}

fn finish(ctx: &Ctx, cut_off: bool) {
    if cut_off {
        ctx.stats.borrow_mut().tally.counters.disconnected += 1;
    }
}
