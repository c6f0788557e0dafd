//! The seam where TLS goes: between the receive buffer and the parser, and between the send
//! queue and the send op. Today the connection's bytes are its wire bytes ([`Plain`], a
//! zero-sized pass-through), so both directions cost nothing.
//!
//! TLS (rustls as a sans-IO layer, the next issue) replaces `Plain` with a per-connection
//! session and fills in the two methods:
//! * [`Plain::inbound`]: feed the received ciphertext to the session (`read_tls`,
//!   `process_new_packets`) and give the parser the plaintext it yields (the handshake's
//!   records produce output of their own to queue);
//! * [`Plain::outbound`]: encrypt the turn's queued frames into as few records as fit, into a
//!   per-connection ciphertext buffer the send then carries. Frames stay encoded once and
//!   shared; only the encryption is per connection.

use crate::sendq::SendQueue;

/// No transport layer: the wire bytes are the protocol's bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl Plain {
    /// Received wire bytes -> the bytes the parser reads.
    #[inline]
    pub fn inbound<'a>(&mut self, wire: &'a [u8]) -> &'a [u8] {
        wire
    }

    /// Whether the next send carries an iovec per frame (more than one frame queued and room
    /// for more than one iovec) or a single buffer.
    #[inline]
    pub fn vectored(&self, queue: &SendQueue, iov_cap: usize) -> bool {
        queue.frame_count() > 1 && iov_cap > 1
    }

    /// The queued frames -> one buffer for a plain send (the first frame's unwritten part).
    /// The memory stays in `queue` until the send's completion advances it.
    #[inline]
    pub fn outbound_single(&mut self, queue: &mut SendQueue) -> (*const u8, usize) {
        queue.start_single().unwrap_or((std::ptr::null(), 0))
    }

    /// The queued frames -> `iov`, one entry per frame; returns the entries used. The memory
    /// stays in `queue` until the send's completion advances it.
    #[inline]
    pub fn outbound_vectored(&mut self, queue: &mut SendQueue, iov: &mut [libc::iovec]) -> usize {
        queue.fill_iovecs(iov)
    }
}
