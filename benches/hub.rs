//! Criterion benchmarks of the hub's publish path: sequencing, encoding the envelope once,
//! appending to history and pushing the shared message into every worker's inbox.
//!
//! Run: `cargo bench -p tickcast-server --bench hub -- --warm-up-time 1 --measurement-time 3`
//!
//! Inboxes are drained in the loop every `DRAIN_EVERY` publishes (as a worker drains once per
//! loop turn), so the measured cost includes the workers' side of the queue, the history
//! eviction of a full ring, and the coalesced wake-ups (one eventfd write per inbox per drain).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tickcast_protocol::envelope::Data;
use tickcast_server::hub::{Hub, HubConfig, InboxReceiver, Published};

const DRAIN_EVERY: u64 = 64;

fn payload_128() -> String {
    let p = format!(r#"{{"symbol":"AAPL","price":187.23,"pad":"{}"}}"#, "x".repeat(128 - 41));
    assert_eq!(p.len(), 128);
    p
}

fn drain(inboxes: &[InboxReceiver], out: &mut Vec<Arc<Published>>) {
    for inbox in inboxes {
        let _ = inbox.read_eventfd();
        inbox.begin_drain();
        inbox.drain(out, usize::MAX);
        out.clear();
    }
}

fn publish(c: &mut Criterion) {
    let payload = payload_128();
    let mut g = c.benchmark_group("hub_publish_128B");
    g.throughput(Throughput::Elements(1));
    for workers in [2usize, 8] {
        let (hub, inboxes) = Hub::new(workers, HubConfig::default()).unwrap();
        let channel = hub.channel("ticker.AAPL").unwrap();
        let mut out = Vec::with_capacity(DRAIN_EVERY as usize);
        let mut i = 0u64;
        g.bench_with_input(BenchmarkId::new("publish_to", workers), &workers, |b, _| {
            b.iter(|| {
                let receipt = hub.publish_to(&channel, Data::Json(black_box(payload.as_bytes())), i);
                i += 1;
                if i.is_multiple_of(DRAIN_EVERY) {
                    drain(&inboxes, &mut out);
                }
                receipt
            })
        });
        let mut i = 0u64;
        g.bench_with_input(BenchmarkId::new("publish_by_name", workers), &workers, |b, _| {
            b.iter(|| {
                let receipt = hub.publish(black_box("ticker.AAPL"), Data::Json(payload.as_bytes()), i);
                i += 1;
                if i.is_multiple_of(DRAIN_EVERY) {
                    drain(&inboxes, &mut out);
                }
                receipt
            })
        });
        // Every publish wakes every worker (a worker that drains after each message): the
        // upper bound of the wake-up cost, an eventfd write per inbox per publish.
        let mut i = 0u64;
        g.bench_with_input(BenchmarkId::new("publish_drain_each", workers), &workers, |b, _| {
            b.iter(|| {
                let receipt = hub.publish_to(&channel, Data::Json(payload.as_bytes()), i);
                i += 1;
                drain(&inboxes, &mut out);
                receipt
            })
        });
    }
    g.finish();
}

criterion_group!(benches, publish);
criterion_main!(benches);
