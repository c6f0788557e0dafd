//! Sans-IO client-side parsing: what the server's bytes mean, with no socket, clock or
//! accounting. The protocol spoken inside the WebSocket (`session.rs`), the answers of polling
//! and long-polling (`poll.rs`). (Chunked bodies and WebSocket frames are read by the protocol
//! crate's `http::ChunkedDecoder` and `client::ClientReader`, shared with the server.)

pub mod poll;
pub mod session;
