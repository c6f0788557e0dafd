//! `idle` (and the tail of `connect`): hold the connection, answer pings (WebSocket pings, and
//! the protocol's own keepalives), until the run stops.

use tickcast_protocol::frame::OpCode;
use tokio::sync::watch;

use crate::engine::{Ctx, Phase, wait_stopping};
use crate::io::account;
use crate::io::ws::WsClient;
use crate::wire::session::Session;

pub async fn run(ctx: &Ctx, mut client: WsClient, mut session: Session, mut phase: watch::Receiver<Phase>) {
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
        let reply = account::frame(
            &mut session,
            message.text,
            client.payload(&message),
            None,
            &mut ctx.stats.borrow_mut(),
            now,
        );
        if let Some(reply) = reply {
            match client.writer.send(OpCode::Text, reply).await {
                Ok(sent) => ctx.stats.borrow_mut().tally.counters.bytes_sent += sent as u64,
                Err(_) => break true,
            }
        }
    };
    if !cut_off {
        client.close().await;
    }
    super::finish(ctx, &client, cut_off);
}
