//! The tokio-uring runtime the load threads run on must not release a buffer while the kernel
//! can still write into it, even when the runtime shuts down with the read still in flight.
//!
//! tokio-uring 0.5's driver, when dropped, freed the buffers of operations whose futures had been
//! dropped *before* their cancellation completed: a socket read armed at shutdown could then
//! land in freed heap memory (the load generator's "corrupted double-linked list" crash, about
//! one connection storm in ten). The workspace patches the crate (`loadgen/vendor/tokio-uring`,
//! see its TICKCAST-PATCH.md); this test fails without that patch.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_uring::buf::{IoBuf, IoBufMut};

const LEN: usize = 64;
const PATTERN: u8 = 0xAA;

/// A read buffer whose memory is never freed (so the test can look at it afterwards). When the
/// runtime releases it, it fills itself with `PATTERN` and makes data arrive for the read that
/// used it: if that read is still in flight, the kernel writes the data over the pattern.
struct TrackedBuf {
    ptr: *mut u8,
    init: usize,
    /// The far end of the socket being read.
    peer: TcpStream,
    released: Arc<AtomicBool>,
}

// SAFETY: `ptr` points to `LEN` bytes that are never freed or moved (leaked below), so the
// pointer is stable for the buffer's whole life, and `init <= LEN` bytes of it are initialized.
unsafe impl IoBuf for TrackedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr
    }

    fn bytes_init(&self) -> usize {
        self.init
    }

    fn bytes_total(&self) -> usize {
        LEN
    }
}

// SAFETY: as for `IoBuf`: the `LEN` bytes behind `ptr` stay valid and in place.
unsafe impl IoBufMut for TrackedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }

    unsafe fn set_init(&mut self, pos: usize) {
        self.init = self.init.max(pos);
    }
}

impl Drop for TrackedBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr` points to `LEN` leaked bytes; nothing else accesses them from user space.
        unsafe { std::ptr::write_bytes(self.ptr, PATTERN, LEN) };
        self.released.store(true, Ordering::SeqCst);
        // Data for the read: if it is still armed, the kernel copies this into the buffer (at the
        // latest when this thread next enters the kernel, e.g. in the sleep below).
        let _ = self.peer.write_all(b"late data");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_runtime_dropped_with_a_read_in_flight_keeps_its_buffer_until_the_read_ends() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (peer, _) = listener.accept().unwrap();
    let memory: &'static mut [u8; LEN] = Box::leak(Box::new([0u8; LEN]));
    let ptr = memory.as_mut_ptr();
    let released = Arc::new(AtomicBool::new(false));
    let buf = TrackedBuf { ptr, init: 0, peer, released: released.clone() };

    let runtime = tokio_uring::Runtime::new(&tokio_uring::builder()).unwrap();
    runtime.block_on(async move {
        let stream = tokio_uring::net::TcpStream::from_std(client);
        // The read is submitted and stays armed (nothing is sent): its task is still pending when
        // `block_on` returns, and is dropped with the runtime.
        tokio_uring::spawn(async move {
            let (result, _buf) = stream.read(buf).await;
            let _ = result;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
    drop(runtime);

    assert!(released.load(Ordering::SeqCst), "the runtime kept the buffer");
    // SAFETY: the leaked bytes are still allocated; the runtime (and its ring) is gone, so no
    // one writes them any more.
    let after = unsafe { std::slice::from_raw_parts(ptr, LEN) };
    assert!(
        after.iter().all(|&b| b == PATTERN),
        "the kernel wrote into the buffer after the runtime released it: {:?}",
        String::from_utf8_lossy(after)
    );
}
