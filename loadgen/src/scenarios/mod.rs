//! What each client does. `client` opens the connection the same way for every scenario (for
//! WebSocket subscribers: the upgrade, then the `--protocol`'s opening), then hands it to the
//! scenario's loop.

pub mod echo;
pub mod idle;
pub mod poll;
pub mod publish;
pub mod rate;
pub mod ring;
pub mod run;
pub mod search;
pub mod sse;

use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::task::JoinHandle;

use crate::engine::{Ctx, Driver, LocalTask, OPEN_TIMEOUT, Phase, ReadyCounter};
use crate::io::account;
use crate::io::ws::{OpenTimes, WsClient};
use crate::measure::deliveries::{Deliveries, WindowState};
use crate::plan::{Scenario, Schedule, Transport};
use crate::wire::session::{Opening, Session};
use tickcast_protocol::frame::OpCode;

/// The scenarios as the engine runs them.
pub static DRIVER: Scenarios = Scenarios;

/// Every scenario, picked per client from the plan; the engine sees only `Driver`.
pub struct Scenarios;

impl Driver for Scenarios {
    fn start_thread(&self, ctx: &Rc<Ctx>, phase: &watch::Receiver<Phase>) -> Vec<JoinHandle<()>> {
        ring::start_thread(ctx, phase).into_iter().collect()
    }

    fn client(
        &self,
        ctx: Rc<Ctx>,
        index: u64,
        permit: OwnedSemaphorePermit,
        ready: Rc<ReadyCounter>,
        phase: watch::Receiver<Phase>,
    ) -> LocalTask {
        Box::pin(client(ctx, index, permit, ready, phase))
    }

    fn publisher(&self, ctx: Rc<Ctx>, phase: watch::Receiver<Phase>) -> LocalTask {
        Box::pin(publish::publisher(ctx, phase))
    }
}

/// One client: open (bounded by `OPEN_TIMEOUT`), record how long it took, run the scenario.
pub async fn client(
    ctx: Rc<Ctx>,
    index: u64,
    permit: OwnedSemaphorePermit,
    ready: Rc<ReadyCounter>,
    phase: watch::Receiver<Phase>,
) {
    let plan = &ctx.plan;
    let ips = &plan.clients.source_ips;
    let source = (!ips.is_empty()).then(|| ips[(index % ips.len() as u64) as usize]);
    if plan.scenario == Scenario::Rate {
        match plan.workload.transport {
            Transport::Ws => {}
            Transport::Sse => return sse::run(&ctx, index, source, permit, &ready, phase).await,
            Transport::Poll | Transport::Longpoll => {
                return poll::run(&ctx, index, source, permit, &ready, phase).await;
            }
        }
    }
    let path = match plan.scenario {
        Scenario::Rate => subscription(&ctx, index).1,
        _ => plan.target.path.clone(),
    };
    let target = crate::plan::Target { path, ..plan.target.clone() };
    let opened = tokio::time::timeout(OPEN_TIMEOUT, open_ws(&ctx, &target, source));
    let client = opened_client(&ctx, opened.await);
    drop(permit);
    ready.finished();
    let Some((client, session)) = client else {
        return;
    };
    match plan.scenario {
        Scenario::Idle | Scenario::Connect => idle::run(&ctx, client, session, phase).await,
        Scenario::Echo => echo::run(&ctx, index, client, phase).await,
        Scenario::Rate => {
            let deliveries = deliveries(&ctx, index);
            // The thread's receive ring takes the connection over when there is one.
            let handed = match ring::of(&ctx) {
                Some(ring) => {
                    ring.borrow_mut().adopt(&mut ctx.stats.borrow_mut(), client, deliveries, session)
                }
                None => Some((client, deliveries, session)),
            };
            if let Some((client, deliveries, session)) = handed {
                rate::subscriber(&ctx, client, deliveries, session, phase).await
            }
        }
    }
}

/// Opens a WebSocket client: the upgrade (with the protocol's headers), then the protocol's
/// own opening (`wire/session.rs`) until it confirms the subscription. Only then is the
/// client open: it counts towards "every client is open", which starts the measured phase.
async fn open_ws(
    ctx: &Ctx,
    target: &crate::plan::Target,
    source: Option<std::net::IpAddr>,
) -> anyhow::Result<((WsClient, Session), OpenTimes)> {
    let mut session = Session::new(ctx.plan.workload.protocol);
    let spec = session.spec();
    let (mut client, mut times) =
        WsClient::open(target, source, ctx.plan.clients.read_buf_bytes, spec.upgrade_headers).await?;
    let mut opening = Opening::default();
    if !opening.is_open(&session) {
        let began = std::time::Instant::now();
        subscribe(ctx, &mut client, &mut session, &mut opening)
            .await
            // Not an I/O error: a failure of the protocol's opening counts as a failed handshake.
            .map_err(|e| anyhow::anyhow!("{} opening: {e:#}", session.protocol))?;
        times.subscribe_ns = Some(began.elapsed().as_nanos() as u64);
    }
    Ok(((client, session), times))
}

/// Runs the protocol's opening exchange on an upgraded client.
async fn subscribe(
    ctx: &Ctx,
    client: &mut WsClient,
    session: &mut Session,
    opening: &mut Opening,
) -> anyhow::Result<()> {
    loop {
        let Some(message) = client.next().await? else {
            anyhow::bail!("the server closed before confirming the subscription");
        };
        let step = account::opening_frame(
            opening,
            session,
            message.text,
            client.payload(&message),
            &mut ctx.stats.borrow_mut(),
        )?;
        if let Some(send) = step.send {
            let sent = client.writer.send(OpCode::Text, send).await?;
            ctx.stats.borrow_mut().tally.counters.bytes_sent += sent as u64;
        }
        if step.open {
            return Ok(());
        }
    }
}

/// Counts an attempt to open a connection (any transport) and its outcome; the client if it
/// opened.
pub fn opened_client<T>(
    ctx: &Ctx,
    opened: Result<anyhow::Result<(T, OpenTimes)>, tokio::time::error::Elapsed>,
) -> Option<T> {
    let mut stats = ctx.stats.borrow_mut();
    stats.tally.counters.connect_attempts += 1;
    match opened {
        Ok(Ok((client, times))) => {
            stats.tally.counters.connected += 1;
            let connect_is_main = ctx.plan.scenario == Scenario::Connect;
            stats.record("connect", times.connect_ns, false);
            stats.record("handshake", times.handshake_ns, connect_is_main);
            if let Some(ns) = times.subscribe_ns {
                stats.record("subscribe", ns, false);
            }
            Some(client)
        }
        Ok(Err(e)) => {
            if e.downcast_ref::<std::io::Error>().is_some() {
                stats.tally.counters.connect_failed += 1;
            } else {
                stats.tally.counters.handshake_failed += 1;
            }
            None
        }
        Err(_elapsed) => {
            stats.tally.counters.connect_failed += 1;
            None
        }
    }
}

/// Client `index`'s channels (indices) and its request path: the plan's path with
/// `channels=<names>` added, unless the path names channels itself.
pub fn subscription(ctx: &Ctx, index: u64) -> (Vec<usize>, String) {
    let w = &ctx.plan.workload;
    let subs = crate::measure::channels::for_client(index, w.channels.len(), w.channels_per_client);
    let path = &ctx.plan.target.path;
    if path.contains("channels=") || subs.is_empty() {
        return (subs, path.clone());
    }
    let names: Vec<&str> = subs.iter().map(|&c| w.channels[c].as_str()).collect();
    (subs.clone(), crate::measure::channels::with_channels(path, &names))
}

/// A subscriber's accounting for client `index`.
pub fn deliveries(ctx: &Ctx, index: u64) -> Deliveries {
    let subs = subscription(ctx, index).0;
    let window: Option<Arc<WindowState>> =
        matches!(ctx.plan.workload.schedule, Schedule::Windowed { .. }).then(|| ctx.window.clone());
    Deliveries::new(subs, ctx.plan.workload.staleness, window)
}

/// Counts the bytes a client received and whether it was cut off before the end.
pub fn finish(ctx: &Ctx, client: &WsClient, cut_off: bool) {
    let mut stats = ctx.stats.borrow_mut();
    stats.tally.counters.bytes_received += client.bytes_received;
    stats.tally.counters.pings_received += client.pings_received;
    if cut_off {
        stats.tally.counters.disconnected += 1;
    }
}
