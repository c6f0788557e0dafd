//! Client transports: WebSocket (`ws.rs`), and over plain HTTP/1.1 (`http.rs`, chunked bodies
//! in `chunked.rs`): Server-Sent Events (`sse.rs`) and the JSON answers of polling and
//! long-polling (`poll.rs`). What WebSocket subscribers speak inside the WebSocket (plain,
//! Socket.IO, Action Cable): `protocol.rs`. The per-transport subscriber loops are in `scenarios/`.

pub mod chunked;
pub mod http;
pub mod poll;
pub mod protocol;
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
