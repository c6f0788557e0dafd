//! `tickcast-protocol`: a sans-IO implementation of RFC 6455 (WebSocket) plus the small HTTP and
//! envelope codecs shared by tickcast's server and load generator.
//!
//! Nothing here touches a socket, a clock or a runtime: bytes in, bytes or messages out.
//!
//! * [`http`]: parse a request head incrementally, write small responses, decode chunked bodies.
//! * [`client`]: the client side's zero-copy frame reader and mask keys.
//! * [`handshake`]: the opening handshake, server and client sides (§4).
//! * [`frame`]: frame header decoding/encoding (§5.2).
//! * [`mask`]: payload masking, scalar and SIMD (§5.3).
//! * [`utf8`]: incremental UTF-8 validation (§8.1).
//! * [`message`]: message assembly, fragmentation, close frames, limits (§5.4, §5.5, §7.4).
//! * [`envelope`]: the JSON envelope and control messages of tickcast's wire API.
//! * [`fallback`]: the SSE events and poll answers of the HTTP fallback transports.
//! * [`position`]: positions in a channel (seq and epoch) and their text form.
//! * [`units`]: durations and byte sizes as the command lines take them.
//!
//! `unsafe` appears only in [`mask`], each block with the invariant it relies on.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod client;
mod decimal;
pub mod envelope;
pub mod error;
pub mod fallback;
pub mod frame;
pub mod handshake;
pub mod http;
pub mod mask;
pub mod message;
pub mod position;
pub mod units;
pub mod utf8;

pub use error::{CloseCode, ProtocolError};
pub use frame::{FrameHeader, OpCode, Role};
pub use message::{CloseFrame, Limits, Message, MessageDecoder};
