use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tickcast_protocol::envelope::parse_envelope;
use tickcast_protocol::frame::{HeaderStatus, OpCode, Role, decode_header};

use super::*;

fn make_hub(workers: usize, history: HistoryLimits, inbox_capacity: usize) -> (Arc<Hub>, Vec<InboxReceiver>) {
    Hub::new(workers, HubConfig { max_channels: 100, history, inbox_capacity, epoch: None }).unwrap()
}

fn json(text: &str) -> Data<'_> {
    Data::Json(text.as_bytes())
}

fn drain_all(inbox: &InboxReceiver) -> Vec<Arc<Published>> {
    let mut out = Vec::new();
    inbox.begin_drain();
    while inbox.drain(&mut out, 1000) == 1000 {}
    out
}

fn seqs(msgs: &[Arc<Published>]) -> Vec<u64> {
    msgs.iter().map(|m| m.seq()).collect()
}

#[test]
fn publish_sequences_from_one_and_encodes_once() {
    let (hub, inboxes) = make_hub(2, HistoryLimits::default(), 64);
    let r1 = hub.publish("ticker.AAPL", json(r#"{"p":1}"#), 1_000).unwrap();
    let r2 = hub.publish("ticker.AAPL", Data::Text("hi \"you\""), 2_000).unwrap();
    let other = hub.publish("news.tech", json("3"), 3_000).unwrap();
    assert_eq!((r1.channel_id, r1.seq), (0, 1));
    assert_eq!((r2.channel_id, r2.seq), (0, 2));
    assert_eq!((other.channel_id, other.seq), (1, 1));

    let a = drain_all(&inboxes[0]);
    let b = drain_all(&inboxes[1]);
    assert_eq!(a.len(), 3);
    for (x, y) in a.iter().zip(&b) {
        assert!(Arc::ptr_eq(x, y), "every inbox gets the same Arc");
    }
    let m = &a[1];
    assert_eq!((&**m.channel(), m.channel_id(), m.seq(), m.ts_us()), ("ticker.AAPL", 0, 2, 2_000));
    let env = parse_envelope(m.json()).unwrap();
    assert_eq!(
        (&*env.channel, env.seq, env.ts, env.data.get()),
        ("ticker.AAPL", 2, 2_000, r#""hi \"you\"""#)
    );

    // The frame is a complete server text frame whose payload is `json`, in one allocation.
    let frame = m.ws_frame();
    let HeaderStatus::Complete { header, header_len } = decode_header(frame, Role::Client, u64::MAX).unwrap()
    else {
        panic!("incomplete frame header");
    };
    assert!(header.fin && header.opcode == OpCode::Text && header.mask.is_none());
    assert_eq!(header.payload_len, m.json().len() as u64);
    assert_eq!(&frame[header_len..], &m.json()[..]);
    assert_eq!(frame.as_ptr_range().end, m.json().as_ptr_range().end, "json is a view of the frame");
}

#[test]
fn long_payloads_get_the_right_header_length() {
    let (hub, _inboxes) = make_hub(1, HistoryLimits::default(), 8);
    for len in [100, 126, 200, 70_000] {
        let text = "x".repeat(len);
        hub.publish("big", Data::Text(&text), 0).unwrap();
        let m = hub.get("big").unwrap().latest().unwrap();
        assert_eq!(parse_envelope(m.json()).unwrap().data.get().len(), len + 2);
        assert_eq!(
            m.ws_frame().len() - m.json().len(),
            if len + 40 < 126 {
                2
            } else if len < 65_000 {
                4
            } else {
                10
            }
        );
    }
}

#[test]
fn bad_names_and_the_channel_limit_are_errors_not_panics() {
    let (hub, _inboxes) = Hub::new(1, HubConfig { max_channels: 2, ..HubConfig::default() }).unwrap();
    for name in ["", "a b", "é", &"x".repeat(129), "a*"] {
        let err = hub.publish(name, json("1"), 0).unwrap_err();
        assert!(matches!(err, PublishError::Channel(ChannelError::InvalidName(_))), "{name:?}");
        assert_eq!(err.code(), ErrorCode::InvalidChannel);
    }
    assert_eq!(hub.channel("a").unwrap().id(), 0);
    assert_eq!(hub.channel("b").unwrap().id(), 1);
    assert_eq!(hub.channel("a").unwrap().id(), 0, "found, not created again");
    let err = hub.publish("c", json("1"), 0).unwrap_err();
    assert_eq!(err, PublishError::Channel(ChannelError::TooManyChannels { max: 2 }));
    assert!(err.to_string().contains("maximum of 2 channels"));
    assert_eq!(hub.channel_by_id(1).unwrap().name().as_ref(), "b");
    assert!(hub.channel_by_id(2).is_none());
    assert_eq!(hub.stats().channels, 2);
}

#[test]
fn history_is_bounded_by_count_and_bytes() {
    let (hub, _inboxes) = make_hub(1, HistoryLimits { messages: 4, bytes: 1 << 20 }, 64);
    for i in 0..10 {
        hub.publish("c", json(&i.to_string()), 0).unwrap();
    }
    let c = hub.get("c").unwrap();
    let s = c.stats();
    assert_eq!((s.last_seq, s.publishes, s.history_messages), (10, 10, 4));

    // Each entry of a 1000-byte text costs ~1,200 bytes: a 4,000-byte budget keeps 3.
    let (hub, _inboxes) = make_hub(1, HistoryLimits { messages: 100, bytes: 4_000 }, 64);
    let text = "y".repeat(1000);
    for _ in 0..10 {
        hub.publish("c", Data::Text(&text), 0).unwrap();
    }
    let c = hub.get("c").unwrap();
    assert_eq!(c.stats().history_messages, 3);
    assert!(c.stats().history_bytes <= 4_000);
    assert!(c.stats().history_bytes > 3 * 1_000);
    // A message over the whole budget is not kept, and nothing older survives it either.
    hub.publish("c", Data::Text(&"z".repeat(5_000)), 0).unwrap();
    assert_eq!(c.stats().history_messages, 0);
    assert_eq!(c.latest().unwrap().seq(), 11, "latest is kept apart from history");
    let mut out = Vec::new();
    assert_eq!(c.replay(9, 11, &mut out), Some(Gap { from: 10, to: 11 }));
    assert!(out.is_empty());
}

#[test]
fn replay_returns_the_range_and_the_gap_before_it() {
    let (hub, _inboxes) = make_hub(1, HistoryLimits { messages: 5, bytes: 1 << 20 }, 64);
    let c = hub.channel("c").unwrap();
    let mut out = Vec::new();
    assert_eq!(c.replay(0, 10, &mut out), None, "nothing published");
    for i in 0..12 {
        hub.publish("c", json(&i.to_string()), 0).unwrap();
    }
    // History holds 8..=12.
    let mut case = |since, upto| {
        out.clear();
        let gap = c.replay(since, upto, &mut out);
        (gap, seqs(&out))
    };
    assert_eq!(case(9, 12), (None, vec![10, 11, 12]));
    assert_eq!(case(9, 11), (None, vec![10, 11]));
    assert_eq!(case(7, 100), (None, vec![8, 9, 10, 11, 12]), "upto clamps to the newest");
    assert_eq!(case(0, 12), (Some(Gap { from: 1, to: 7 }), vec![8, 9, 10, 11, 12]));
    assert_eq!(case(3, 9), (Some(Gap { from: 4, to: 7 }), vec![8, 9]));
    assert_eq!(case(2, 5), (Some(Gap { from: 3, to: 5 }), vec![]));
    assert_eq!(case(12, 12), (None, vec![]));
    assert_eq!(case(20, 12), (None, vec![]));
    assert_eq!(case(u64::MAX, u64::MAX), (None, vec![]));
}

#[test]
fn prefix_patterns_find_existing_channels() {
    let (hub, _inboxes) = make_hub(1, HistoryLimits::default(), 8);
    for name in ["ticker.AAPL", "ticker.MSFT", "tickers.X", "news.tech", "ticker.a.b"] {
        hub.channel(name).unwrap();
    }
    let names = |p: &str| -> Vec<String> {
        hub.channels_matching(&Pattern::parse(p, true).unwrap())
            .iter()
            .map(|c| c.name().to_string())
            .collect()
    };
    assert_eq!(names("ticker.*"), ["ticker.AAPL", "ticker.MSFT", "ticker.a.b"]);
    assert_eq!(names("news.tech"), ["news.tech"]);
    assert!(names("news.sports").is_empty());
    assert!(hub.get("news.sports").is_none(), "matching does not create");
    assert_eq!(names("*").len(), 5);
}

#[test]
fn a_burst_wakes_a_worker_once() {
    let (hub, inboxes) = make_hub(2, HistoryLimits::default(), 1024);
    assert_eq!(inboxes[0].read_eventfd().unwrap(), 0);
    for i in 0..100 {
        hub.publish("c", json(&i.to_string()), 0).unwrap();
    }
    for inbox in &inboxes {
        assert_eq!(inbox.read_eventfd().unwrap(), 1, "one wake-up for 100 publishes");
        assert_eq!(inbox.len(), 100);
    }
    // Until the worker begins a drain, further publishes do not write the eventfd again.
    hub.publish("c", json("1"), 0).unwrap();
    assert_eq!(inboxes[0].read_eventfd().unwrap(), 0);
    assert_eq!(drain_all(&inboxes[0]).len(), 101);
    hub.publish("c", json("1"), 0).unwrap();
    assert_eq!(inboxes[0].read_eventfd().unwrap(), 1, "a publish after the drain wakes again");
    assert_ne!(inboxes[0].eventfd(), inboxes[1].eventfd());
}

#[test]
fn a_drain_that_stops_at_max_wakes_itself_again() {
    let (hub, inboxes) = make_hub(1, HistoryLimits::default(), 1024);
    let inbox = &inboxes[0];
    let items: Vec<(&str, Data<'_>)> = (0..10).map(|_| ("c", json("0"))).collect();
    let mut results = Vec::new();
    hub.publish_batch(&items, 5, &mut results);
    assert_eq!(results.iter().map(|r| r.unwrap().seq).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    assert_eq!(inbox.read_eventfd().unwrap(), 1, "a batch wakes once");
    let mut out = Vec::new();
    inbox.begin_drain();
    assert_eq!(inbox.drain(&mut out, 4), 4);
    assert_eq!(inbox.read_eventfd().unwrap(), 1, "more is waiting: re-armed");
    inbox.begin_drain();
    assert_eq!(inbox.drain(&mut out, 6), 6);
    assert_eq!(inbox.read_eventfd().unwrap(), 0, "exactly drained: nothing left, no wake-up");
    assert_eq!(seqs(&out), (1..=10).collect::<Vec<_>>());
}

#[test]
fn a_full_inbox_drops_and_the_worker_recovers_from_history() {
    let (hub, inboxes) = make_hub(1, HistoryLimits { messages: 6, bytes: 1 << 20 }, 3);
    let inbox = &inboxes[0];
    let mut wc = WorkerChannels::new();
    for i in 0..5 {
        hub.publish("c", json(&i.to_string()), 0).unwrap();
    }
    assert_eq!((inbox.len(), inbox.dropped()), (3, 2));
    assert_eq!(hub.stats().inbox_dropped, 2);
    let drained = drain_all(inbox);
    assert!(drained.iter().all(|m| wc.observe(m) == Observed::Next));
    // 4 and 5 were dropped; 6 arrives live and reveals the hole.
    hub.publish("c", json("6"), 0).unwrap();
    let six = drain_all(inbox);
    assert_eq!(wc.observe(&six[0]), Observed::After { missing: Gap { from: 4, to: 5 } });
    let c = hub.get("c").unwrap();
    let mut fill = Vec::new();
    assert_eq!(c.replay(3, 5, &mut fill), None);
    assert_eq!(seqs(&fill), [4, 5]);

    // All of the later messages dropped: `recover` catches up without waiting for more.
    for i in 0..6 {
        hub.publish("c", json(&i.to_string()), 0).unwrap(); // 7..=12, 10..=12 dropped
    }
    let mut out = Vec::new();
    assert_eq!(wc.recover(&c, &mut out), None);
    assert_eq!(seqs(&out), [7, 8, 9, 10, 11, 12]);
    let late = drain_all(inbox);
    assert!(late.iter().all(|m| wc.observe(m) == Observed::Stale), "already delivered by recover");
    assert_eq!(wc.last_seen(c.id()), 12);
    assert_eq!(wc.latest(c.id()).unwrap().seq(), 12);
}

#[test]
fn externally_sequenced_messages_keep_order_and_report_holes() {
    let (hub, inboxes) = make_hub(1, HistoryLimits::default(), 64);
    assert_eq!(hub.publish_sequenced("c", 1, json("1"), 0).unwrap().seq, 1);
    assert_eq!(hub.publish_sequenced("c", 2, json("2"), 0).unwrap().seq, 2);
    let stale = hub.publish_sequenced("c", 2, json("2"), 0).unwrap_err();
    assert_eq!(stale, PublishError::StaleSequence { seq: 2, next: 3 });
    assert!(hub.publish_sequenced("c", u64::MAX, json("0"), 0).is_err());
    assert_eq!(hub.publish_sequenced("c", 7, json("7"), 0).unwrap().seq, 7);
    assert_eq!(hub.publish("c", json("8"), 0).unwrap().seq, 8, "local publishes continue after");
    let mut wc = WorkerChannels::new();
    let got: Vec<Observed> = drain_all(&inboxes[0]).iter().map(|m| wc.observe(m)).collect();
    assert_eq!(got[2], Observed::After { missing: Gap { from: 3, to: 6 } });
    let mut out = Vec::new();
    let c = hub.get("c").unwrap();
    assert_eq!(c.replay(0, 8, &mut out), Some(Gap { from: 1, to: 6 }), "history restarted at the jump");
    assert_eq!(seqs(&out), [7, 8]);
}

#[test]
fn snapshot_and_since_beyond_what_the_worker_drained() {
    let (hub, inboxes) = make_hub(1, HistoryLimits::default(), 64);
    let c = hub.channel("c").unwrap();
    let mut wc = WorkerChannels::new();
    assert!(wc.latest(c.id()).is_none());
    for i in 0..3 {
        hub.publish("c", json(&i.to_string()), 0).unwrap();
    }
    for m in drain_all(&inboxes[0]) {
        wc.observe(&m);
    }
    hub.publish("c", json("4"), 0).unwrap(); // seq 4, still in the inbox
    assert_eq!(c.latest().unwrap().seq(), 4);
    assert_eq!(wc.latest(c.id()).unwrap().seq(), 3, "the worker's snapshot cannot duplicate seq 4");
    let mut out = Vec::new();
    // The client saw up to 4 elsewhere: replay nothing, and skip 4 when it comes live.
    assert_eq!(wc.replay_since(&c, 4, &mut out), Replay { gap: None, live_after: 4, start: 4 });
    // A since from a previous server run: start live.
    assert_eq!(wc.replay_since(&c, 1_000, &mut out), Replay { gap: None, live_after: 4, start: 4 });
    assert!(out.is_empty());
    assert_eq!(wc.replay_since(&c, 1, &mut out), Replay { gap: None, live_after: 3, start: 1 });
    assert_eq!(seqs(&out), [2, 3]);
}

/// What a simulated connection received: a message, or a gap notice.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Item {
    Msg(u64),
    Gap(u64, u64),
}

struct SimConn {
    since: u64,
    live_after: u64,
    items: Vec<Item>,
}

struct SimWorker {
    inbox: InboxReceiver,
    dropped_seen: u64,
    channels: WorkerChannels,
    conns: Vec<SimConn>,
}

impl SimWorker {
    fn deliver(&mut self, msg: &Arc<Published>) {
        for conn in &mut self.conns {
            if msg.seq() > conn.live_after {
                conn.items.push(Item::Msg(msg.seq()));
            }
        }
    }

    /// One drain of up to `max`, handling holes the way a worker must.
    fn drain(&mut self, hub: &Hub, max: usize) {
        let mut batch = Vec::new();
        self.inbox.begin_drain();
        self.inbox.drain(&mut batch, max);
        for msg in &batch {
            match self.channels.observe(msg) {
                Observed::Next => self.deliver(msg),
                Observed::Stale => {}
                Observed::After { missing } => {
                    let channel = hub.channel_by_id(msg.channel_id()).unwrap();
                    let mut fill = Vec::new();
                    let gap = channel.replay(missing.from - 1, missing.to, &mut fill);
                    self.deliver_fill(gap, &fill);
                    self.deliver(msg);
                }
            }
        }
        // Messages dropped after the last one drained reveal themselves only through the
        // counter: catch up from history.
        if self.inbox.dropped() > self.dropped_seen {
            self.dropped_seen = self.inbox.dropped();
            let channel = hub.channel("c").unwrap();
            let mut fill = Vec::new();
            let gap = self.channels.recover(&channel, &mut fill);
            self.deliver_fill(gap, &fill);
        }
    }

    fn deliver_fill(&mut self, gap: Option<Gap>, fill: &[Arc<Published>]) {
        if let Some(gap) = gap {
            for conn in &mut self.conns {
                // Clipped: a connection that subscribed past part of it has those.
                let from = gap.from.max(conn.live_after + 1);
                if from <= gap.to {
                    conn.items.push(Item::Gap(from, gap.to));
                }
            }
        }
        for m in fill {
            self.deliver(m);
        }
    }

    fn subscribe(&mut self, channel: &Channel, since: u64) {
        let mut out = Vec::new();
        let replay = self.channels.replay_since(channel, since, &mut out);
        let mut items: Vec<Item> = replay.gap.map(|g| Item::Gap(g.from, g.to)).into_iter().collect();
        items.extend(out.iter().map(|m| Item::Msg(m.seq())));
        let since = since.min(channel.last_seq());
        self.conns.push(SimConn { since, live_after: replay.live_after, items });
    }
}

/// Random interleavings of publishes, partial drains and subscriptions with `since` on two
/// workers: every connection ends with every seq after its `since` exactly once, in order,
/// each either delivered or covered by a gap notice, and gaps only where history lost data.
fn simulate(seed: u64, history: usize, inbox_capacity: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (hub, inboxes) = make_hub(2, HistoryLimits { messages: history, bytes: 1 << 20 }, inbox_capacity);
    let channel = hub.channel("c").unwrap();
    let mut workers: Vec<SimWorker> = inboxes
        .into_iter()
        .map(|inbox| SimWorker { inbox, dropped_seen: 0, channels: WorkerChannels::new(), conns: Vec::new() })
        .collect();
    for _ in 0..400 {
        let w = rng.random_range(0..workers.len());
        match rng.random_range(0..10) {
            0..=4 => {
                hub.publish("c", json("0"), 0).unwrap();
            }
            5..=7 => workers[w].drain(&hub, rng.random_range(1..6)),
            _ => {
                let since = rng.random_range(0..=channel.last_seq() + 2);
                workers[w].subscribe(&channel, since);
            }
        }
    }
    for w in &mut workers {
        w.drain(&hub, usize::MAX);
    }
    let last = channel.last_seq();
    for (wi, w) in workers.iter().enumerate() {
        for conn in &w.conns {
            let mut expanded = Vec::new();
            for item in &conn.items {
                match *item {
                    Item::Msg(s) => expanded.push(s),
                    Item::Gap(from, to) => {
                        assert!(from <= to);
                        expanded.extend(from..=to);
                    }
                }
            }
            let want: Vec<u64> = (conn.since + 1..=last).collect();
            assert_eq!(expanded, want, "seed {seed}, worker {wi}, since {}: {:?}", conn.since, conn.items);
            if inbox_capacity >= 400 && history >= 400 {
                assert!(conn.items.iter().all(|i| matches!(i, Item::Msg(_))), "no gap with ample history");
            }
        }
    }
}

#[test]
fn recovery_has_no_gap_and_no_duplicate_across_interleavings() {
    for seed in 0..200 {
        simulate(seed, 1024, 1024); // everything retained
        simulate(seed, 8, 1024); // history evicts: gaps on old `since`
        simulate(seed, 8, 4); // inboxes overflow too
    }
}

#[test]
fn per_channel_order_is_the_same_on_every_inbox_with_concurrent_publishers() {
    let (hub, inboxes) = make_hub(3, HistoryLimits::default(), 1 << 16);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let hub = Arc::clone(&hub);
            std::thread::spawn(move || {
                for i in 0..2_000 {
                    let name = if i % 2 == 0 { "even" } else { "odd" };
                    hub.publish(name, json(&t.to_string()), i).unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let orders: Vec<Vec<(u32, u64)>> =
        inboxes.iter().map(|i| drain_all(i).iter().map(|m| (m.channel_id(), m.seq())).collect()).collect();
    for order in &orders {
        assert_eq!(order.len(), 8_000);
        let mut last = std::collections::HashMap::new();
        for &(id, seq) in order {
            let prev = last.insert(id, seq).unwrap_or(0);
            assert_eq!(seq, prev + 1, "consecutive per channel");
        }
    }
    assert_eq!(hub.stats().publishes, 8_000);
}

#[test]
fn no_wake_up_is_lost_under_a_race() {
    const N: u64 = 20_000;
    let (hub, mut inboxes) = make_hub(1, HistoryLimits { messages: 16, bytes: 1 << 20 }, 1 << 16);
    let inbox = inboxes.pop().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let worker = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let (mut got, mut wakes, mut out) = (0u64, 0u64, Vec::new());
            while got < N && Instant::now() < deadline {
                // Only a wake-up entitles the worker to look: a lost one stalls it here.
                if inbox.read_eventfd().unwrap() == 0 {
                    std::thread::yield_now();
                    continue;
                }
                wakes += 1;
                inbox.begin_drain();
                out.clear();
                // A small max exercises the self re-arm too.
                inbox.drain(&mut out, 7);
                for (i, m) in out.iter().enumerate() {
                    assert_eq!(m.seq(), got + 1 + i as u64);
                }
                got += out.len() as u64;
            }
            done.store(true, Ordering::Relaxed);
            (got, wakes)
        })
    };
    let mut rng = StdRng::seed_from_u64(9);
    for i in 0..N {
        hub.publish("c", json("1"), i).unwrap();
        if rng.random_range(0..64) == 0 {
            std::thread::yield_now();
        }
    }
    let (got, wakes) = worker.join().unwrap();
    assert!(done.load(Ordering::Relaxed));
    assert_eq!(got, N, "a wake-up was lost: the worker stalled with messages waiting");
    assert!(wakes <= N, "{wakes} wake-ups");
}
