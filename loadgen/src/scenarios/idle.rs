//! `idle` (and the tail of `connect`): hold the connection, answer pings, until the run stops.

use tokio::sync::watch;

use crate::engine::{Ctx, Phase, wait_stopping};
use crate::transports::ws::WsClient;

pub async fn run(ctx: &Ctx, mut client: WsClient, mut phase: watch::Receiver<Phase>) {
    let cut_off = loop {
        tokio::select! {
            biased;
            () = wait_stopping(&mut phase) => break false,
            incoming = client.next() => match incoming {
                Ok(Some(_message)) => ctx.stats.borrow_mut().counters.messages_received += 1,
                Ok(None) | Err(_) => break true,
            },
        }
    };
    if !cut_off {
        client.close().await;
    }
    super::finish(ctx, &client, cut_off);
}
