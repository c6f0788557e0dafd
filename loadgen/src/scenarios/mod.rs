//! What each client does. `client` opens the connection the same way for every scenario, then
//! hands it to the scenario's loop.

pub mod echo;
pub mod idle;
pub mod rate;

use std::rc::Rc;

use tokio::sync::{OwnedSemaphorePermit, watch};

use crate::engine::{Ctx, OPEN_TIMEOUT, Phase, ReadyCounter};
use crate::plan::Scenario;
use crate::transports::ws::WsClient;

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
    ctx.stats.borrow_mut().counters.connect_attempts += 1;
    let opened =
        tokio::time::timeout(OPEN_TIMEOUT, WsClient::open(&plan.target, source, plan.clients.read_buf_bytes))
            .await;
    drop(permit);
    let client = {
        let mut stats = ctx.stats.borrow_mut();
        match opened {
            Ok(Ok((client, times))) => {
                stats.counters.connected += 1;
                let connect_is_main = plan.scenario == Scenario::Connect;
                stats.record("connect", times.connect_ns, false);
                stats.record("handshake", times.handshake_ns, connect_is_main);
                Some(client)
            }
            Ok(Err(e)) => {
                if e.downcast_ref::<std::io::Error>().is_some() {
                    stats.counters.connect_failed += 1;
                } else {
                    stats.counters.handshake_failed += 1;
                }
                None
            }
            Err(_elapsed) => {
                stats.counters.connect_failed += 1;
                None
            }
        }
    };
    ready.finished();
    let Some(client) = client else {
        return;
    };
    match plan.scenario {
        Scenario::Idle | Scenario::Connect => idle::run(&ctx, client, phase).await,
        Scenario::Echo => echo::run(&ctx, index, client, phase).await,
        Scenario::Rate => rate::subscriber(&ctx, client, phase).await,
    }
}

/// Counts the bytes a client received and whether it was cut off before the end.
pub fn finish(ctx: &Ctx, client: &WsClient, cut_off: bool) {
    let mut stats = ctx.stats.borrow_mut();
    stats.counters.bytes_received += client.bytes_received;
    stats.counters.pings_received += client.pings_received;
    if cut_off {
        stats.counters.disconnected += 1;
    }
}
