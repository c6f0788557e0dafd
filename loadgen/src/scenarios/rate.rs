//! `rate` subscribers on WebSocket: `GET /ws?channels=...` (or the `--protocol`'s route),
//! every frame accounted through the protocol's `Session` by `Deliveries` (latency from the
//! stamp's scheduled time, loss per (channel, seq), the server's `gap` notices). The publisher is
//! in `publish.rs`; SSE and polling subscribers in `sse.rs` and `poll.rs`.

use tickcast_protocol::frame::OpCode;
use tokio::sync::watch;

use crate::engine::{Ctx, Phase, wait_stopping};
use crate::io::account;
use crate::io::ws::WsClient;
use crate::measure::deliveries::Deliveries;
use crate::wire::session::Session;

pub async fn subscriber(
    ctx: &Ctx,
    mut client: WsClient,
    mut deliveries: Deliveries,
    mut session: Session,
    mut phase: watch::Receiver<Phase>,
) {
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
        let bytes = client.take_bytes_received();
        let reply = {
            let mut stats = ctx.stats.borrow_mut();
            stats.tally.counters.bytes_received += bytes;
            account::frame(
                &mut session,
                message.text,
                client.payload(&message),
                Some(&mut deliveries),
                &mut stats,
                now,
            )
        };
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
    deliveries.finish(&mut ctx.stats.borrow_mut());
    super::finish(ctx, &client, cut_off);
}
