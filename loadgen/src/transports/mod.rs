//! Client transports. WebSocket first; SSE, long-polling and polling share the HTTP client in
//! `http.rs` (the publisher uses it today).

pub mod http;
pub mod ws;
