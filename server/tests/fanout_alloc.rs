//! Proof of "encode once, copy never": fanning one message out to 10,000 subscribers performs
//! no allocation per subscriber (only the warm-up message sizes each queue's small ring once).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use tickcast_protocol::envelope::Data;
use tickcast_server::conn::{Conn, Phase};
use tickcast_server::fanout::{SubRef, Subscribers, Targets};
use tickcast_server::http::Endpoint;
use tickcast_server::hub::{Hub, HubConfig};
use tickcast_server::metrics::WorkerStats;
use tickcast_server::sendq::SlowConsumerPolicy;

/// Counts allocations made by the current thread while counting is on.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours, passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as ours, passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn counted<R>(f: impl FnOnce() -> R) -> (R, u64) {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, COUNT.with(Cell::get))
}

#[test]
fn fan_out_allocates_nothing_per_subscriber() {
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
    let mut subs = Subscribers::default();
    let channel = hub.channel("ticker.X").unwrap();
    for (slot, c) in conns.iter().enumerate() {
        subs.add(channel.id(), SubRef { slot: slot as u32, generation: c.generation, live_after: 0 });
    }
    let stats = WorkerStats::default();
    let names = |_: u32| -> Option<Arc<str>> { None };
    let mut dirty = Vec::with_capacity(SUBSCRIBERS);
    let payload = format!("{{\"p\":\"{}\"}}", "x".repeat(100)); // a 128-byte-class message
    for round in 0..3 {
        hub.publish("ticker.X", Data::Json(payload.as_bytes()), 1).unwrap();
        let msg = channel.latest().unwrap();
        let ((), allocations) = counted(|| {
            let mut t = Targets {
                conns: &mut conns,
                dirty: &mut dirty,
                stats: &stats,
                send_queue_limit: 1 << 20,
                names: &names,
            };
            subs.fan_out(&msg, SlowConsumerPolicy::DropOldest, &mut t);
        });
        assert_eq!(dirty.len(), SUBSCRIBERS);
        // Every subscriber holds the same bytes: a refcount, not a copy.
        assert!(conns.iter().all(|c| c.sendq.segments().next().unwrap().as_ptr() == msg.ws_frame().as_ptr()));
        if round == 0 {
            // The first message gives each empty queue its small ring, once.
            assert!(
                allocations <= SUBSCRIBERS as u64 + 16,
                "{allocations} allocations for the first message"
            );
        } else {
            assert!(
                allocations <= 2,
                "{allocations} allocations fanning one message out to {SUBSCRIBERS} subscribers"
            );
        }
        // The sends complete: queues drain but keep their ring for the next message.
        for slot in dirty.drain(..) {
            let c = &mut conns[slot as usize];
            c.io.send = tickcast_server::conn::io::Send::Idle; // flushed
            let n = c.sendq.pending_bytes();
            c.sendq.advance(n);
        }
    }
}
