//! Publishing allocates a small, fixed number of times per message, whatever the number of
//! workers: the message is encoded once and every inbox gets a refcount, never a copy.
//!
//! A counting global allocator (this test binary only) counts allocations on this thread
//! while publishing. Expected per publish: the frame buffer, the `Bytes` shared header (the
//! `json` view promotes the frame to a shared buffer) and the `Arc<Published>`: 3. The
//! bounded inboxes are arrays allocated once, so pushing into them allocates nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use tickcast_protocol::envelope::Data;
use tickcast_server::hub::{HistoryLimits, Hub, HubConfig, InboxReceiver, Published};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note_alloc() {
    // `try_with`: thread-locals may be gone while a thread shuts down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every method forwards to `System` unchanged; counting touches only const-initialized
// thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation goes there).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        // SAFETY: as for `dealloc`, and the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations per publish, averaged over `n` publishes of a 128-byte JSON payload to one
/// channel, after a warm-up that fills history to its steady state. Inboxes are drained
/// every 64 publishes into a buffer reserved up front, like a worker's loop turn would.
fn allocs_per_publish(workers: usize, n: u64) -> f64 {
    let config =
        HubConfig { history: HistoryLimits { messages: 1024, bytes: 1 << 20 }, ..HubConfig::default() };
    let (hub, inboxes) = Hub::new(workers, config).unwrap();
    let payload = format!(r#"{{"symbol":"AAPL","price":187.23,"pad":"{}"}}"#, "x".repeat(128 - 41));
    assert_eq!(payload.len(), 128);
    let channel = hub.channel("ticker.AAPL").unwrap();
    let mut out: Vec<Arc<Published>> = Vec::with_capacity(64 * workers + 64);
    let drain = |out: &mut Vec<Arc<Published>>, inboxes: &[InboxReceiver]| {
        for inbox in inboxes {
            let _ = inbox.read_eventfd();
            inbox.begin_drain();
            inbox.drain(out, usize::MAX);
        }
        out.clear();
    };
    for i in 0..2_000u64 {
        hub.publish_to(&channel, Data::Json(payload.as_bytes()), i);
        if i % 64 == 63 {
            drain(&mut out, &inboxes);
        }
    }
    drain(&mut out, &inboxes);

    COUNTING.with(|c| c.set(true));
    ALLOCS.with(|a| a.set(0));
    for i in 0..n {
        hub.publish_to(&channel, Data::Json(payload.as_bytes()), i);
        if i % 64 == 63 {
            drain(&mut out, &inboxes);
        }
    }
    COUNTING.with(|c| c.set(false));
    let allocs = ALLOCS.with(Cell::get);
    drain(&mut out, &inboxes);
    allocs as f64 / n as f64
}

#[test]
fn publish_allocates_a_fixed_amount_independent_of_workers() {
    let four = allocs_per_publish(4, 10_000);
    let one = allocs_per_publish(1, 10_000);
    let sixteen = allocs_per_publish(16, 10_000);
    eprintln!("allocations per publish: 1 worker {one:.3}, 4 workers {four:.3}, 16 workers {sixteen:.3}");
    assert!(four <= 4.0, "{four} allocations per publish with 4 workers");
    assert!((sixteen - one).abs() < 0.01, "allocations grow with workers: {one} vs {sixteen}");
}

#[test]
fn publishing_by_name_allocates_no_more() {
    // The name lookup borrows `&str` against `Arc<str>` keys: no allocation for it.
    let (hub, _inboxes) = Hub::new(2, HubConfig::default()).unwrap();
    hub.publish("news.tech", Data::Json(b"1"), 0).unwrap();
    COUNTING.with(|c| c.set(true));
    ALLOCS.with(|a| a.set(0));
    for i in 0..100 {
        hub.publish("news.tech", Data::Json(b"1"), i).unwrap();
    }
    COUNTING.with(|c| c.set(false));
    let per = ALLOCS.with(Cell::get) as f64 / 100.0;
    // History grows (VecDeque doubling) during these first 100: a few extra, amortized.
    assert!(per <= 3.2, "{per} allocations per publish by name");
}
