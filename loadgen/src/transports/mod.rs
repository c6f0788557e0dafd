//! Client transports: WebSocket (`ws.rs`), and over plain HTTP/1.1 (`http.rs`, chunked bodies
//! in `chunked.rs`): Server-Sent Events (`sse.rs`) and the JSON answers of polling and
//! long-polling (`poll.rs`). The per-transport subscriber loops are in `scenarios/`.

pub mod chunked;
pub mod http;
pub mod poll;
pub mod sse;
pub mod ws;
pub mod wsring;
