use std::sync::Arc;

use super::*;
use crate::conn::Phase;
use crate::http::Endpoint;
use crate::hub::{Hub, HubConfig};
use tickcast_protocol::envelope::Data;

/// A slab of `n` open `/ws` connections.
pub(crate) fn subscribers(n: usize) -> Vec<Conn> {
    (0..n)
        .map(|_| {
            let mut c = Conn::default();
            c.open(0);
            c.phase = Phase::Open(Endpoint::Ws);
            c
        })
        .collect()
}

fn published(hub: &Hub, channel: &str, text: &str) -> Arc<Published> {
    hub.publish(channel, Data::Text(text), 1).unwrap();
    hub.channel(channel).unwrap().latest().unwrap()
}

fn no_names(_: u32) -> Option<Arc<str>> {
    None
}

#[test]
fn delivers_to_live_subscribers_once_and_forgets_closed_ones() {
    let (hub, _inboxes) = Hub::new(1, HubConfig::default()).unwrap();
    let mut conns = subscribers(4);
    let mut subs = Subscribers::default();
    let msg = published(&hub, "c", "one");
    for (slot, conn) in conns.iter().enumerate() {
        assert!(
            subs.add(
                msg.channel_id(),
                SubRef { slot: slot as u32, generation: conn.generation, live_after: 0 }
            )
        );
    }
    assert!(!subs.add(msg.channel_id(), SubRef { slot: 0, generation: conns[0].generation, live_after: 0 }));
    // Slot 3 closes and is reused by a new connection (new generation); slot 2 replayed
    // up to seq 1 already.
    conns[3].release();
    conns[3].open(0);
    conns[3].phase = Phase::Open(Endpoint::Ws);
    subs.remove(msg.channel_id(), 2, conns[2].generation);
    subs.add(msg.channel_id(), SubRef { slot: 2, generation: conns[2].generation, live_after: 1 });
    let stats = WorkerStats::default();
    let mut dirty = Vec::new();
    let mut t = Targets {
        conns: &mut conns,
        dirty: &mut dirty,
        stats: &stats,
        send_queue_limit: 1 << 20,
        names: &no_names,
    };
    subs.fan_out(&msg, SlowConsumerPolicy::DropOldest, &mut t);
    assert_eq!(dirty, vec![0, 1]);
    let queued: Vec<usize> = conns.iter().map(|c| c.sendq.frame_count()).collect();
    assert_eq!(queued, vec![1, 1, 0, 0]);
    assert_eq!(subs.count(msg.channel_id()), 3, "the closed connection's entry is gone");
    // The frame is the message's one encoding, shared: same bytes, same allocation.
    let sent: Vec<&[u8]> = conns[0].sendq.segments().collect();
    assert_eq!(sent[0].as_ptr(), msg.ws_frame().as_ptr());
}

#[test]
fn prefix_subscriptions_pick_up_channels_created_later() {
    let (hub, _inboxes) = Hub::new(1, HubConfig::default()).unwrap();
    let mut conns = subscribers(2);
    let mut subs = Subscribers::default();
    subs.add_pattern(Pattern::parse("ticker.*", false).unwrap(), 1, conns[1].generation);
    let stats = WorkerStats::default();
    let mut dirty = Vec::new();
    let msg = published(&hub, "ticker.NEW", "x");
    let other = published(&hub, "news.x", "y");
    let mut t = Targets {
        conns: &mut conns,
        dirty: &mut dirty,
        stats: &stats,
        send_queue_limit: 1 << 20,
        names: &no_names,
    };
    subs.fan_out(&msg, SlowConsumerPolicy::DropOldest, &mut t);
    subs.fan_out(&other, SlowConsumerPolicy::DropOldest, &mut t);
    assert_eq!(conns[1].sendq.frame_count(), 1);
    assert_eq!(conns[0].sendq.frame_count(), 0);
    assert!(subs.remove_pattern("ticker.*", 1, conns[1].generation));
}
