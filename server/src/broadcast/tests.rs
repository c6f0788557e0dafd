//! The worker's channel side without a ring: a hub, one worker's inbox, a slab of connections.

use std::collections::BTreeMap;

use super::*;
use crate::hub::HubConfig;
use clap::Parser;
use tickcast_protocol::Limits;
use tickcast_protocol::http::HeaderLimits;
use tickcast_protocol::position::Position;

struct World {
    hub: Arc<Hub>,
    b: Broadcast,
    conns: Vec<Conn>,
    dirty: Vec<u32>,
    stats: WorkerStats,
}

impl World {
    fn new(args: &[&str], conns: usize) -> Self {
        let mut argv = vec!["tickcast"];
        argv.extend_from_slice(args);
        let config = Arc::new(Config::try_parse_from(argv).unwrap().validate().unwrap());
        let hub_config = HubConfig {
            history: crate::hub::HistoryLimits { messages: config.history, bytes: config.history_bytes },
            ..HubConfig::default()
        };
        let (hub, mut inboxes) = Hub::new(1, hub_config).unwrap();
        let b = Broadcast::new(Arc::clone(&hub), inboxes.remove(0), config);
        Self {
            hub,
            b,
            conns: crate::fanout::tests::subscribers(conns),
            dirty: Vec::new(),
            stats: WorkerStats::default(),
        }
    }

    fn op(&mut self, slot: u32, op: ClientOp) {
        let metrics = |_| String::new();
        let env = Env {
            header_limits: HeaderLimits { max_bytes: 1024, max_headers: 16 },
            echo_limits: Limits { max_frame: 1024, max_message: 1024 },
            ws_limits: Limits { max_frame: 1024, max_message: 1024 },
            max_body: 1024,
            send_queue_limit: 1 << 20,
            stats: &self.stats,
            metrics: &metrics,
            publish: None,
            http: &crate::http::HttpOptions::default(),
        };
        let mut w = Work { conns: &mut self.conns, dirty: &mut self.dirty, stats: &self.stats };
        self.b.run_ops(slot, vec![Op::Client(op)], &env, &mut w);
    }

    fn drain(&mut self) {
        let mut w = Work { conns: &mut self.conns, dirty: &mut self.dirty, stats: &self.stats };
        self.b.drain(&mut w);
    }

    fn publish(&self, channel: &str, n: u64) {
        for i in 0..n {
            self.hub.publish(channel, Data::Json(i.to_string().as_bytes()), 1).unwrap();
        }
    }

    /// Everything queued for a connection, as JSON, emptying its queue.
    fn take(&mut self, slot: usize) -> Vec<serde_json::Value> {
        let q = &mut self.conns[slot].sendq;
        let bytes: Vec<u8> = q.segments().flat_map(|s| s.iter().copied()).collect();
        q.advance(bytes.len());
        let mut out = Vec::new();
        let mut dec = tickcast_protocol::MessageDecoder::new(
            tickcast_protocol::Role::Client,
            Limits { max_frame: 1 << 20, max_message: 1 << 20 },
        );
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (used, msg) = dec.decode(rest).unwrap();
            rest = &rest[used..];
            if let Some(tickcast_protocol::Message::Text(t)) = msg {
                out.push(serde_json::from_slice(&t).unwrap());
            }
        }
        out
    }
}

fn subscribe(channels: &[&str], since: &[(&str, u64)]) -> ClientOp {
    ClientOp::Subscribe {
        id: None,
        channels: channels.iter().map(|c| c.to_string()).collect(),
        since: since.iter().map(|(c, s)| (c.to_string(), Position::seq(*s))).collect::<BTreeMap<_, _>>(),
    }
}

fn seqs(msgs: &[serde_json::Value]) -> Vec<u64> {
    msgs.iter().filter(|m| m.get("type").is_none()).map(|m| m["seq"].as_u64().unwrap()).collect()
}

#[test]
fn since_across_undrained_messages_has_no_gap_and_no_duplicate() {
    let mut w = World::new(&["--no-feed"], 1);
    w.publish("c", 5);
    w.drain(); // the worker has seen 1..=5
    w.publish("c", 3); // 6..=8 still in the inbox
    w.op(0, subscribe(&["c"], &[("c", 2)]));
    let ack = w.take(0);
    assert_eq!(ack[0]["type"], "subscribed");
    assert_eq!(ack[0]["seq"]["c"], 5, "live after what this worker drained");
    assert_eq!(seqs(&ack), vec![3, 4, 5], "replay comes right after the ack");
    w.drain();
    w.publish("c", 2);
    w.drain();
    assert_eq!(seqs(&w.take(0)), vec![6, 7, 8, 9, 10]);
    assert_eq!(w.stats.subscriptions.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn subscription_limit_and_unsubscribe() {
    let mut w = World::new(&["--no-feed", "--max-subscriptions", "2"], 1);
    w.op(0, subscribe(&["a", "b", "c.*"], &[]));
    let replies = w.take(0);
    assert_eq!(replies[0]["code"], "too_many_subscriptions");
    assert_eq!(replies[1]["channels"], serde_json::json!(["a", "b"]));
    w.op(0, ClientOp::Unsubscribe { id: Some(4), channels: vec!["a".into(), "zzz".into()] });
    let replies = w.take(0);
    assert_eq!(replies[0], serde_json::json!({"type": "unsubscribed", "id": 4, "channels": ["a"]}));
    w.publish("a", 1);
    w.publish("b", 1);
    w.drain();
    let got = w.take(0);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["channel"], "b");
}

#[test]
fn released_connections_stop_receiving_and_are_swept() {
    let mut w = World::new(&["--no-feed"], 2);
    w.op(0, subscribe(&["c"], &[]));
    w.op(1, subscribe(&["c"], &[]));
    w.take(0);
    w.take(1);
    let subs = w.conns[1].subs.take();
    w.conns[1].release();
    w.b.release(subs, &w.stats);
    w.b.sweep(&w.conns);
    w.publish("c", 1);
    w.drain();
    assert_eq!(seqs(&w.take(0)), vec![1]);
    assert!(w.conns[1].sendq.is_empty());
    assert_eq!(w.stats.subscriptions.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn unsubscribing_a_pattern_stops_its_channels_but_not_named_ones() {
    let mut w = World::new(&["--no-feed"], 1);
    w.publish("t.a", 1);
    w.publish("t.b", 1);
    w.drain();
    w.op(0, subscribe(&["t.*", "t.b"], &[]));
    w.take(0);
    w.publish("t.a", 1);
    w.publish("t.b", 1);
    w.publish("t.c", 1); // created after the pattern subscription
    w.drain();
    let got: Vec<String> = w.take(0).iter().map(|m| m["channel"].as_str().unwrap().to_owned()).collect();
    assert_eq!(got, vec!["t.a", "t.b", "t.c"]);
    w.op(0, ClientOp::Unsubscribe { id: None, channels: vec!["t.*".into()] });
    assert_eq!(w.take(0)[0]["channels"], serde_json::json!(["t.*"]));
    w.publish("t.a", 1);
    w.publish("t.b", 1);
    w.publish("t.c", 1);
    w.drain();
    let got: Vec<String> = w.take(0).iter().map(|m| m["channel"].as_str().unwrap().to_owned()).collect();
    assert_eq!(got, vec!["t.b"], "only the channel subscribed by name remains");
}

#[test]
fn a_position_of_another_epoch_gets_a_reset_and_this_epoch_from_its_start() {
    let mut w = World::new(&["--no-feed"], 2);
    w.publish("c", 3);
    w.drain();
    let epoch = w.hub.epoch();
    let other = tickcast_protocol::position::Epoch::parse("previous-run").unwrap();
    let since = |seq, epoch| [("c".to_owned(), Position { seq, epoch: Some(epoch) })].into();
    let op = |since| ClientOp::Subscribe { id: Some(1), channels: vec!["c".into()], since };
    // The same epoch: as before, nothing but what is newer.
    w.op(0, op(since(2, epoch)));
    let got = w.take(0);
    assert_eq!(got[0]["epoch"]["c"], epoch.as_str(), "the ack names the epoch");
    assert_eq!(seqs(&got), vec![3]);
    // A position from another run, beyond this one's head: reset, then 1..=3, then live.
    w.op(1, op(since(500, other)));
    let got = w.take(1);
    assert_eq!(got[0]["type"], "subscribed");
    assert_eq!(got[1], serde_json::json!({"type":"reset","channel":"c","epoch":epoch.as_str(),"seq":3}));
    assert_eq!(seqs(&got), vec![1, 2, 3]);
    w.publish("c", 1);
    w.drain();
    assert_eq!(seqs(&w.take(1)), vec![4]);
    assert_eq!(w.stats.reset_notices.load(std::sync::atomic::Ordering::Relaxed), 1);
}

/// An SSE stream's events as (id, data) pairs, emptying its queue.
fn sse_events(w: &mut World, slot: usize) -> Vec<(String, serde_json::Value)> {
    let q = &mut w.conns[slot].sendq;
    let bytes: Vec<u8> = q.segments().flat_map(|s| s.iter().copied()).collect();
    q.advance(bytes.len());
    let text = String::from_utf8(bytes).unwrap();
    let mut out = Vec::new();
    for event in text.split("\n\n").filter(|e| !e.is_empty()) {
        let field =
            |name: &str| event.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim_start().to_owned());
        let data = field("data:").map_or(serde_json::Value::Null, |d| serde_json::from_str(&d).unwrap());
        out.push((field("id:").unwrap_or_default(), data));
    }
    out
}

#[test]
fn sse_ids_resume_every_channel_of_a_stream() {
    let mut w = World::new(&["--no-feed"], 2);
    w.conns[0].phase = Phase::Sse;
    w.conns[1].phase = Phase::Sse;
    w.publish("a", 2);
    w.publish("b", 1);
    w.drain();
    let e = w.hub.epoch();
    // Two channels: every event's id carries both positions, replay included.
    w.op(0, subscribe(&["a", "b"], &[("a", 1)]));
    w.op(1, subscribe(&["a"], &[]));
    let got = sse_events(&mut w, 0);
    assert_eq!(got[0].1["type"], "subscribed");
    assert_eq!(got[1].0, format!("a:2@{e},b:1@{e}"), "the replayed a:2");
    w.publish("b", 1);
    w.publish("a", 1);
    w.drain();
    let ids: Vec<String> = sse_events(&mut w, 0).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, [format!("a:2@{e},b:2@{e}"), format!("a:3@{e},b:2@{e}")]);
    // One channel: the shared event, whose id is that channel's position.
    let got = sse_events(&mut w, 1);
    assert_eq!(got.last().unwrap().0, format!("a:3@{e}"));
}
