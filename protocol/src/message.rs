//! Message assembly (RFC 6455 §5.4–§5.5): frames in, messages out.
//!
//! [`MessageDecoder`] is a sans-IO state machine: the caller feeds whatever bytes a read
//! returned, and gets back how many were consumed and, at most, one message. It enforces the
//! fragmentation rules, the close-frame rules (§5.5.1, §7.4), UTF-8 validity of text (failing
//! fast, §8.1) and the configured size limits, and maps every violation to a [`ProtocolError`].

use std::mem;

use bytes::Bytes;

use crate::error::{CloseCode, ProtocolError};
use crate::frame::{FrameHeader, HeaderStatus, MAX_HEADER_LEN, OpCode, Role, decode_header};
use crate::mask::apply_mask;
use crate::utf8::Utf8Validator;

/// Size limits for incoming frames and messages.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest accepted frame payload, in bytes (default 64 KiB). Larger frames fail with 1009
    /// as soon as their header arrives, before any payload is buffered.
    pub max_frame: u64,
    /// Largest accepted message (sum of its frames' payloads), in bytes (default 64 KiB); 1009.
    pub max_message: usize,
}

impl Default for Limits {
    /// 64 KiB for both: clients of a broadcast server send small control messages, and the limit
    /// bounds the memory a connection can make the server hold (the payload is buffered until
    /// the message completes). Raise it for `/echo` conformance runs (Autobahn sends 16 MiB).
    fn default() -> Self {
        Self { max_frame: 64 * 1024, max_message: 64 * 1024 }
    }
}

/// A close frame's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code (always [`CloseCode::is_sendable`] when decoded).
    pub code: CloseCode,
    /// The reason, valid UTF-8, at most 123 bytes.
    pub reason: String,
}

/// A complete message (or control frame).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message; the bytes are valid UTF-8.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping; answer with a pong carrying the same payload.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// A close frame: `None` when it carried no payload (report [`CloseCode::NO_STATUS`]).
    Close(Option<CloseFrame>),
}

/// What the decoder is in the middle of. The header scratch and the current frame's state are
/// never needed at the same time, which keeps the decoder small.
#[derive(Clone, Copy, Debug)]
enum State {
    /// Between frames; `len` bytes of a header that spans reads are in `buf`.
    /// INVARIANT: `len < MAX_HEADER_LEN`.
    Header { buf: [u8; MAX_HEADER_LEN], len: u8 },
    /// Inside a frame's payload.
    Payload(Frame),
}

#[derive(Clone, Copy, Debug)]
struct Frame {
    /// Payload bytes still to come. `u32` suffices: the decoder clamps limits to `u32::MAX`.
    remaining: u32,
    /// Mask key, already rotated to the offset of the next payload byte.
    mask: Option<[u8; 4]>,
    opcode: OpCode,
    fin: bool,
    /// Payload length of a control frame (≤ 125), whose bytes follow the message's in `buf`.
    control_len: u8,
}

/// The kind of the fragmented data message in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Partial {
    None,
    Text,
    Binary,
}

/// Decodes frames into messages. One per connection; see [`MessageDecoder::decode`].
#[derive(Debug)]
pub struct MessageDecoder {
    /// Payload of the message in progress, then (while a control frame interleaved in a
    /// fragmented message is being read) that control frame's payload.
    /// INVARIANT: empty with no capacity whenever the decoder is idle.
    buf: Vec<u8>,
    state: State,
    max_frame: u32,
    max_message: u32,
    utf8: Utf8Validator,
    partial: Partial,
    role: Role,
    /// Set on the first error: the connection is being failed, every later call repeats it.
    poisoned: Option<ProtocolError>,
}

const START: State = State::Header { buf: [0; MAX_HEADER_LEN], len: 0 };

impl MessageDecoder {
    /// A decoder for the side `role` (a server decodes masked client frames). Limits above
    /// 4 GiB are clamped to 4 GiB.
    pub fn new(role: Role, limits: Limits) -> Self {
        Self {
            buf: Vec::new(),
            state: START,
            max_frame: u32::try_from(limits.max_frame).unwrap_or(u32::MAX),
            max_message: u32::try_from(limits.max_message).unwrap_or(u32::MAX),
            utf8: Utf8Validator::new(),
            partial: Partial::None,
            role,
            poisoned: None,
        }
    }

    /// Feeds bytes from the wire.
    ///
    /// Consumes as much of `input` as it can (payload bytes are copied into the decoder's buffer
    /// and unmasked there) and stops right after the first complete message. Returns the number
    /// of bytes consumed and the message, if one completed: call again with `input[consumed..]`
    /// until everything is consumed. A partial header is kept in a small inline array, so every
    /// byte is always consumed unless a message completes first.
    ///
    /// On `Err` the connection must be failed with `err.close_code()`; the decoder is poisoned
    /// and returns the same error from then on. After a `Close` message the peer must send
    /// nothing more; the caller should stop feeding the decoder.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Message>), ProtocolError> {
        if let Some(err) = &self.poisoned {
            return Err(err.clone());
        }
        let result = self.decode_inner(input);
        if let Err(err) = &result {
            self.poisoned = Some(err.clone());
            self.buf = Vec::new();
        }
        result
    }

    /// True when no partial frame or message is held; the decoder then owns no heap memory.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Header { len: 0, .. })
            && self.partial == Partial::None
            && self.buf.capacity() == 0
    }

    /// Bytes held for a partial header, frame or message.
    pub fn buffered_len(&self) -> usize {
        let header = match self.state {
            State::Header { len, .. } => usize::from(len),
            State::Payload(_) => 0,
        };
        self.buf.len() + header
    }

    fn decode_inner(&mut self, input: &[u8]) -> Result<(usize, Option<Message>), ProtocolError> {
        let mut pos = 0;
        loop {
            // INVARIANT: pos <= input.len().
            let rest = input.get(pos..).unwrap_or_default();
            let message = match self.state {
                State::Header { buf, len } => {
                    let (used, header) = self.read_header(buf, len, rest)?;
                    pos += used;
                    match header {
                        Some(header) => self.start_frame(header)?,
                        None => return Ok((pos, None)),
                    }
                }
                State::Payload(frame) => {
                    if rest.is_empty() {
                        return Ok((pos, None));
                    }
                    let (used, message) = self.read_payload(frame, rest)?;
                    pos += used;
                    message
                }
            };
            if message.is_some() {
                return Ok((pos, message));
            }
        }
    }

    /// Decodes a header from the scratch bytes plus `rest`. Returns the bytes of `rest` used,
    /// and the header when complete (otherwise all of `rest` was stashed in the scratch).
    fn read_header(
        &mut self,
        mut scratch: [u8; MAX_HEADER_LEN],
        len: u8,
        rest: &[u8],
    ) -> Result<(usize, Option<FrameHeader>), ProtocolError> {
        let max = u64::from(self.max_frame);
        let have = usize::from(len);
        if have == 0 {
            // Common case: the whole header is in this read; decode it in place.
            if let HeaderStatus::Complete { header, header_len } = decode_header(rest, self.role, max)? {
                return Ok((header_len, Some(header)));
            }
        }
        let take = (MAX_HEADER_LEN - have).min(rest.len());
        scratch[have..have + take].copy_from_slice(&rest[..take]);
        match decode_header(&scratch[..have + take], self.role, max)? {
            HeaderStatus::Complete { header, header_len } => Ok((header_len - have, Some(header))),
            HeaderStatus::Incomplete { .. } => {
                // An incomplete header is shorter than MAX_HEADER_LEN, so all of `rest` fit.
                self.state = State::Header { buf: scratch, len: (have + take) as u8 };
                Ok((take, None))
            }
        }
    }

    /// Applies the fragmentation rules and limits to a new frame, and completes it at once when
    /// its payload is empty.
    fn start_frame(&mut self, header: FrameHeader) -> Result<Option<Message>, ProtocolError> {
        let len = header.payload_len; // <= max_frame <= u32::MAX, checked by decode_header.
        let mut control_len = 0;
        match header.opcode {
            op if op.is_control() => control_len = len as u8, // <= 125, checked too.
            OpCode::Continuation if self.partial == Partial::None => {
                return Err(ProtocolError::UnexpectedContinuation);
            }
            OpCode::Continuation => {}
            _ if self.partial != Partial::None => return Err(ProtocolError::ExpectedContinuation),
            op => {
                self.partial = if op == OpCode::Text { Partial::Text } else { Partial::Binary };
            }
        }
        if !header.opcode.is_control() && self.buf.len() as u64 + len > u64::from(self.max_message) {
            return Err(ProtocolError::MessageTooLarge);
        }
        let frame = Frame {
            remaining: len as u32,
            mask: header.mask,
            opcode: header.opcode,
            fin: header.fin,
            control_len,
        };
        self.state = State::Payload(frame);
        if len == 0 { self.finish_frame(frame) } else { Ok(None) }
    }

    /// Copies and unmasks as much of the current frame's payload as `rest` holds.
    fn read_payload(
        &mut self,
        mut frame: Frame,
        rest: &[u8],
    ) -> Result<(usize, Option<Message>), ProtocolError> {
        let take = rest.len().min(frame.remaining as usize);
        let chunk = &rest[..take];
        if self.buf.capacity() == 0 {
            // First bytes of a message: an exact allocation when the whole frame is here, so
            // the message's `Bytes` takes the allocation over without copying or reallocating.
            self.buf.reserve_exact(take);
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(chunk);
        let fresh = &mut self.buf[start..];
        if let Some(mask) = frame.mask {
            apply_mask(fresh, mask, 0);
            frame.mask = Some(rotate(mask, take));
        }
        if frame.opcode.is_control() {
            // Validated when complete.
        } else if self.partial == Partial::Text {
            self.utf8.feed(fresh)?;
        }
        frame.remaining -= take as u32;
        self.state = State::Payload(frame);
        let message = if frame.remaining == 0 { self.finish_frame(frame)? } else { None };
        Ok((take, message))
    }

    /// The frame's payload is complete: emit a control message, or the data message if FIN.
    fn finish_frame(&mut self, frame: Frame) -> Result<Option<Message>, ProtocolError> {
        self.state = START;
        if frame.opcode.is_control() {
            let start = self.buf.len() - usize::from(frame.control_len);
            let payload = if start == 0 {
                Bytes::from(mem::take(&mut self.buf))
            } else {
                let p = Bytes::copy_from_slice(&self.buf[start..]);
                self.buf.truncate(start);
                p
            };
            return control_message(frame.opcode, payload).map(Some);
        }
        if !frame.fin {
            return Ok(None);
        }
        let data = Bytes::from(mem::take(&mut self.buf));
        let partial = mem::replace(&mut self.partial, Partial::None);
        if partial == Partial::Text {
            self.utf8.finish()?;
            Ok(Some(Message::Text(data)))
        } else {
            Ok(Some(Message::Binary(data)))
        }
    }
}

/// The mask key as seen from `n` bytes further into the payload.
fn rotate(mask: [u8; 4], n: usize) -> [u8; 4] {
    let p = n & 3;
    [mask[p], mask[(p + 1) & 3], mask[(p + 2) & 3], mask[(p + 3) & 3]]
}

fn control_message(opcode: OpCode, payload: Bytes) -> Result<Message, ProtocolError> {
    Ok(match opcode {
        OpCode::Ping => Message::Ping(payload),
        OpCode::Pong => Message::Pong(payload),
        _ => Message::Close(parse_close(&payload)?),
    })
}

/// Validates a close payload (§5.5.1): empty, or a sendable code plus a UTF-8 reason.
pub fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::InvalidClosePayload),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_sendable() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok(Some(CloseFrame { code, reason: reason.to_owned() }))
        }
    }
}

#[cfg(test)]
mod tests;
