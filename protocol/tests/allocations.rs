//! The decoder's hot path allocates nothing but the message's own buffer, and an idle decoder
//! holds no heap memory. A counting global allocator (this test binary only) checks it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use tickcast_protocol::frame::write_client_frame;
use tickcast_protocol::{Limits, Message, MessageDecoder, OpCode, Role};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to the system allocator, only counting allocations.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCS.load(Ordering::Relaxed);
    let out = f();
    (ALLOCS.load(Ordering::Relaxed) - before, out)
}

#[test]
fn one_allocation_per_message_and_none_when_idle() {
    let mut wire = Vec::new();
    write_client_frame(&mut wire, OpCode::Text, br#"{"type":"subscribe","channels":["a"]}"#, [1, 2, 3, 4]);
    write_client_frame(&mut wire, OpCode::Ping, b"", [1, 2, 3, 4]);
    write_client_frame(&mut wire, OpCode::Binary, &[9; 1000], [5, 6, 7, 8]);
    let mut dec = MessageDecoder::new(Role::Server, Limits::default());
    assert!(dec.is_idle());
    let mut rest = &wire[..];
    let mut counts = Vec::new();
    while !rest.is_empty() {
        let (allocs, result) = allocations_during(|| dec.decode(rest));
        let (used, msg) = result.unwrap();
        rest = &rest[used..];
        counts.push((allocs, msg.map(|m| matches!(m, Message::Ping(_)))));
        assert!(dec.is_idle(), "a decoder between messages holds no allocation");
    }
    // Text: exactly its buffer; empty ping: nothing; binary: exactly its buffer.
    assert_eq!(counts, [(1, Some(false)), (0, Some(true)), (1, Some(false))]);
    println!("size_of::<MessageDecoder>() = {}", size_of::<MessageDecoder>());
    assert!(size_of::<MessageDecoder>() <= 64);
}
