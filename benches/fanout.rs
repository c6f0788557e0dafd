//! In-process cost of fanning one 128-byte message out to 10,000 subscribers' send queues on
//! one core (the encode happened once, at publish): the per-subscriber work is a refcount
//! increment, a queue push and a flush-list mark. Reported per message; divide by 10,000 for
//! the cost per subscriber (criterion's throughput line shows subscribers per second).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tickcast_protocol::envelope::Data;
use tickcast_server::conn::{Conn, Phase};
use tickcast_server::fanout::{SubRef, Subscribers, Targets};
use tickcast_server::http::Endpoint;
use tickcast_server::hub::{Hub, HubConfig};
use tickcast_server::metrics::WorkerStats;
use tickcast_server::sendq::SlowConsumerPolicy;

fn fan_out(c: &mut Criterion) {
    const SUBSCRIBERS: usize = 10_000;
    let (hub, _inboxes) = Hub::new(1, HubConfig::default()).unwrap();
    let mut conns: Vec<Conn> = (0..SUBSCRIBERS)
        .map(|_| {
            let mut c = Conn::default();
            c.open(0);
            c.phase = Phase::Open(Endpoint::Ws);
            c
        })
        .collect();
    let channel = hub.channel("ticker.AAPL").unwrap();
    let mut subs = Subscribers::default();
    for (slot, c) in conns.iter().enumerate() {
        subs.add(channel.id(), SubRef { slot: slot as u32, generation: c.generation, live_after: 0 });
    }
    // A 128-byte envelope: {"channel":"ticker.AAPL","seq":N,"ts":...,"data":{...}}.
    let data = br#"{"symbol":"AAPL","price":187.23,"change":-0.12,"volume":1234567}"#;
    hub.publish("ticker.AAPL", Data::Json(data), 1_764_000_000_000_000).unwrap();
    let msg = channel.latest().unwrap();
    println!("frame: {} bytes", msg.ws_frame().len());
    let stats = WorkerStats::default();
    let names = |_: u32| -> Option<Arc<str>> { None };
    let mut dirty = Vec::with_capacity(SUBSCRIBERS);

    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(SUBSCRIBERS as u64));
    group.bench_function("one message to 10k subscribers", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let mut t = Targets {
                    conns: &mut conns,
                    dirty: &mut dirty,
                    stats: &stats,
                    send_queue_limit: 1 << 20,
                    names: &names,
                };
                subs.fan_out(&msg, SlowConsumerPolicy::DropOldest, &mut t);
                total += start.elapsed();
                // What the send completions do, untimed: the queues drain for the next round.
                for slot in dirty.drain(..) {
                    let c = &mut conns[slot as usize];
                    c.io.send = tickcast_server::conn::io::Send::Idle; // flushed
                    let n = c.sendq.pending_bytes();
                    c.sendq.advance(n);
                }
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
