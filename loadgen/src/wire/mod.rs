//! Sans-IO client-side parsing: what the server's bytes mean, with no socket, clock or
//! accounting. The protocol spoken inside the WebSocket (`session.rs`), the answers of polling
//! and long-polling (`poll.rs`), chunked bodies (`chunked.rs`).

pub mod chunked;
pub mod poll;
pub mod session;
