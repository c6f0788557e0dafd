//! The I/O layer: client connections and what they read. WebSocket over tokio-uring (`ws.rs`)
//! and the raw io_uring receive path (`wsring.rs`, on the provided buffer ring and the kernel
//! timestamps of the `tickcast-uring` crate, which the server shares); plain HTTP/1.1
//! (`http.rs`) and Server-Sent Events (`sse.rs`); sockets (`net.rs`). Frames and events are handed to the caller's sink (`account.rs`: the
//! accounting of `measure`); nothing here knows a scenario or the engine.

pub mod account;
pub mod http;
pub mod net;
pub mod sse;
pub mod ws;
pub mod wsring;

/// Reads once into the spare capacity of `rx` (appending), after making room for at least
/// `min_spare` bytes. Returns the bytes read (0 at end of stream). tokio-uring reads take
/// ownership of the buffer, hence the take-and-put-back.
pub(crate) async fn read_append(
    stream: &tokio_uring::net::TcpStream,
    rx: &mut Vec<u8>,
    min_spare: usize,
) -> std::io::Result<usize> {
    use tokio_uring::buf::BoundedBuf;
    if rx.capacity() - rx.len() < min_spare {
        rx.reserve(min_spare);
    }
    let buf = std::mem::take(rx);
    let (len, cap) = (buf.len(), buf.capacity());
    let (result, slice) = stream.read(buf.slice(len..cap)).await;
    *rx = slice.into_inner();
    result
}
