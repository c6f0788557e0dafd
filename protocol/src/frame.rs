//! Frame headers (RFC 6455 §5.2): incremental, allocation-free decoding that validates every rule
//! of the header, and encoders for server (unmasked) and client (masked) frames.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{CloseCode, ProtocolError};
use crate::mask::apply_mask;

/// Which side of the connection is decoding (or encoding). A `Server` decodes masked client
/// frames and encodes unmasked ones; a `Client` does the opposite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The accepting side.
    Server,
    /// The connecting side.
    Client,
}

/// A frame opcode (§5.2). Reserved opcodes are rejected when decoding.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    /// Continuation of a fragmented message.
    Continuation = 0,
    /// First frame of a text message.
    Text = 1,
    /// First frame of a binary message.
    Binary = 2,
    /// Close control frame.
    Close = 8,
    /// Ping control frame.
    Ping = 9,
    /// Pong control frame.
    Pong = 10,
}

impl OpCode {
    /// The opcode for a 4-bit value, `None` for the reserved ones.
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::Continuation),
            1 => Some(Self::Text),
            2 => Some(Self::Binary),
            8 => Some(Self::Close),
            9 => Some(Self::Ping),
            10 => Some(Self::Pong),
            _ => None,
        }
    }

    /// Control frames (close, ping, pong) have the high bit of the opcode set (§5.5).
    pub const fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the last frame of a message.
    pub fin: bool,
    /// RSV1–3 as a 3-bit value (0b100 is RSV1). Always 0 from [`decode_header`] for now.
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present on client-to-server frames.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
}

/// The longest possible header: 2 bytes + 8-byte extended length + 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// Largest payload of a control frame (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Result of [`decode_header`] on input that broke no rule.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderStatus {
    /// The header is complete and occupies the first `header_len` bytes of the input.
    Complete {
        /// The header.
        header: FrameHeader,
        /// Its encoded length.
        header_len: usize,
    },
    /// The input ends inside the header; nothing was consumed.
    Incomplete {
        /// At least this many more bytes are needed (exact once the length byte is known).
        needed: usize,
    },
}

/// Decodes a frame header from the start of `buf`.
///
/// Every rule of §5.2 that a header alone can break is checked, in a fixed order and as soon as
/// the byte carrying it is available (so a split input gives the same result as a whole one):
/// RSV bits (no extension is negotiated yet), reserved opcodes, fragmented control frames,
/// masking by role, control payloads over 125 bytes, non-minimal lengths, 64-bit lengths with the
/// top bit set, and `max_frame_len`.
///
/// Inlined: the fast path is small, and inlining lets the caller keep the result in registers
/// (a call plus the stored result cost about as much as the decoding itself).
#[inline(always)]
pub fn decode_header(buf: &[u8], role: Role, max_frame_len: u64) -> Result<HeaderStatus, ProtocolError> {
    // Fast path for the common case: a complete, well-formed header with a 7- or 16-bit length.
    // The rules are folded into one test with non-short-circuit `&` (few branches); anything
    // unusual takes the step-by-step path, which finds the first rule broken.
    if let Some(&[b0, b1]) = buf.first_chunk::<2>() {
        let len7 = b1 & 0x7F;
        let masked = b1 & 0x80 != 0;
        let fin = b0 & 0x80 != 0;
        let control = b0 & 0x08 != 0;
        let opcode = OPCODES[usize::from(b0 & 0x0F)];
        let usual = (b0 & 0x70 == 0)
            & (masked == matches!(role, Role::Server))
            & (!control | (fin & (len7 <= MAX_CONTROL_PAYLOAD as u8)))
            & (len7 <= 126);
        let ext = if len7 == 126 { 2 } else { 0 };
        let header_len = 2 + ext + 4 * usize::from(masked);
        if let (true, Some(head), Some(opcode)) = (usual, buf.get(..header_len), opcode) {
            let payload_len = match head {
                [_, _, a, b, ..] if ext == 2 => u64::from(u16::from_be_bytes([*a, *b])),
                _ => u64::from(len7),
            };
            let mask = match head.last_chunk::<4>() {
                Some(m) if masked => Some(*m),
                _ => None,
            };
            if (payload_len >= 126 || ext == 0) & (payload_len <= max_frame_len) {
                return Ok(HeaderStatus::Complete {
                    header: FrameHeader { fin, rsv: 0, opcode, mask, payload_len },
                    header_len,
                });
            }
        }
    }
    decode_header_slow(buf, role, max_frame_len)
}

/// `OpCode::from_u8` as a table: one load instead of a chain of compares on the fast path.
const OPCODES: [Option<OpCode>; 16] = {
    let mut table = [None; 16];
    let mut i = 0;
    while i < 16 {
        table[i] = OpCode::from_u8(i as u8);
        i += 1;
    }
    table
};

/// The step-by-step decoder: incomplete input, 64-bit lengths and every error.
#[inline(never)]
fn decode_header_slow(buf: &[u8], role: Role, max_frame_len: u64) -> Result<HeaderStatus, ProtocolError> {
    let Some(&b0) = buf.first() else {
        return Ok(HeaderStatus::Incomplete { needed: 2 });
    };
    if b0 & 0x70 != 0 {
        return Err(ProtocolError::ReservedBitsSet);
    }
    let fin = b0 & 0x80 != 0;
    let raw_op = b0 & 0x0F;
    let Some(opcode) = OpCode::from_u8(raw_op) else {
        return Err(ProtocolError::UnknownOpcode(raw_op));
    };
    if opcode.is_control() && !fin {
        return Err(ProtocolError::FragmentedControlFrame);
    }
    let Some(&b1) = buf.get(1) else {
        return Ok(HeaderStatus::Incomplete { needed: 1 });
    };
    let masked = b1 & 0x80 != 0;
    match (role, masked) {
        (Role::Server, false) => return Err(ProtocolError::UnmaskedClientFrame),
        (Role::Client, true) => return Err(ProtocolError::MaskedServerFrame),
        _ => {}
    }
    let len7 = b1 & 0x7F;
    if opcode.is_control() && len7 > MAX_CONTROL_PAYLOAD as u8 {
        return Err(ProtocolError::ControlFrameTooLong);
    }
    let ext_len = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let header_len = 2 + ext_len + if masked { 4 } else { 0 };
    let Some(rest) = buf.get(2..header_len) else {
        return Ok(HeaderStatus::Incomplete { needed: header_len - buf.len() });
    };
    let (ext, mask_bytes) = rest.split_at(ext_len);
    let payload_len = match *ext {
        [a, b] => {
            let len = u64::from(u16::from_be_bytes([a, b]));
            if len < 126 {
                return Err(ProtocolError::NonMinimalLength);
            }
            len
        }
        [a, b, c, d, e, f, g, h] => {
            let len = u64::from_be_bytes([a, b, c, d, e, f, g, h]);
            if len >> 63 != 0 {
                return Err(ProtocolError::LengthTopBitSet);
            }
            if len <= 0xFFFF {
                return Err(ProtocolError::NonMinimalLength);
            }
            len
        }
        _ => u64::from(len7),
    };
    if payload_len > max_frame_len {
        return Err(ProtocolError::FrameTooLarge);
    }
    let mask = match *mask_bytes {
        [a, b, c, d] => Some([a, b, c, d]),
        _ => None,
    };
    Ok(HeaderStatus::Complete { header: FrameHeader { fin, rsv: 0, opcode, mask, payload_len }, header_len })
}

/// Length of the header [`encode_header`] writes for this payload length.
pub const fn header_len(payload_len: u64, masked: bool) -> usize {
    let base = if payload_len < 126 {
        2
    } else if payload_len <= 0xFFFF {
        4
    } else {
        10
    };
    if masked { base + 4 } else { base }
}

/// Writes a frame header (minimal length encoding) and returns its length.
pub fn encode_header(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload_len: u64,
) -> usize {
    out[0] = (u8::from(fin) << 7) | opcode as u8;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut n = if payload_len < 126 {
        out[1] = mask_bit | payload_len as u8;
        2
    } else if payload_len <= 0xFFFF {
        out[1] = mask_bit | 126;
        out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        4
    } else {
        debug_assert!(payload_len >> 63 == 0, "payload length overflows 63 bits");
        out[1] = mask_bit | 127;
        out[2..10].copy_from_slice(&payload_len.to_be_bytes());
        10
    };
    if let Some(m) = mask {
        out[n..n + 4].copy_from_slice(&m);
        n += 4;
    }
    n
}

/// A complete, unfragmented server frame (header + payload) in one exact-size allocation.
pub fn server_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(header_len(payload.len() as u64, false) + payload.len());
    write_server_frame(&mut out, opcode, payload);
    out.freeze()
}

/// Appends a complete, unfragmented, unmasked frame to `out`.
pub fn write_server_frame(out: &mut BytesMut, opcode: OpCode, payload: &[u8]) {
    debug_assert!(!opcode.is_control() || payload.len() <= MAX_CONTROL_PAYLOAD);
    let mut head = [0; MAX_HEADER_LEN];
    let n = encode_header(&mut head, true, opcode, None, payload.len() as u64);
    out.reserve(n + payload.len());
    out.put_slice(&head[..n]);
    out.put_slice(payload);
}

/// Appends a complete, unfragmented frame masked with `mask`. The caller supplies the (random)
/// mask, which keeps this crate free of randomness and its tests deterministic.
pub fn write_client_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], mask: [u8; 4]) {
    debug_assert!(!opcode.is_control() || payload.len() <= MAX_CONTROL_PAYLOAD);
    let mut head = [0; MAX_HEADER_LEN];
    let n = encode_header(&mut head, true, opcode, Some(mask), payload.len() as u64);
    out.reserve(n + payload.len());
    out.extend_from_slice(&head[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
}

/// A close frame payload: the 2-byte code followed by `reason`, truncated on a char boundary so
/// the payload fits the 125 bytes of a control frame.
pub fn close_payload(code: CloseCode, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::with_capacity(2 + end);
    out.extend_from_slice(&code.0.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..end]);
    out
}

/// A server close frame with `code` and `reason` (truncated to fit).
pub fn server_close_frame(code: CloseCode, reason: &str) -> Bytes {
    server_frame(OpCode::Close, &close_payload(code, reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProtocolError as E;

    const MAX: u64 = u64::MAX >> 1;

    fn complete(buf: &[u8], role: Role) -> (FrameHeader, usize) {
        match decode_header(buf, role, MAX) {
            Ok(HeaderStatus::Complete { header, header_len }) => (header, header_len),
            other => panic!("expected a complete header, got {other:?}"),
        }
    }

    #[test]
    fn rfc_5_7_examples() {
        // A single-frame unmasked text message "Hello".
        let (h, n) = complete(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], Role::Client);
        assert_eq!((h.fin, h.opcode, h.mask, h.payload_len, n), (true, OpCode::Text, None, 5, 2));
        // A single-frame masked text message "Hello".
        let masked = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let (h, n) = complete(&masked, Role::Server);
        assert_eq!((h.mask, h.payload_len, n), (Some([0x37, 0xfa, 0x21, 0x3d]), 5, 6));
        let mut payload = masked[6..].to_vec();
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(payload, b"Hello");
        // A fragmented unmasked text message: "Hel" + "lo".
        let (h, _) = complete(&[0x01, 0x03, 0x48, 0x65, 0x6c], Role::Client);
        assert_eq!((h.fin, h.opcode), (false, OpCode::Text));
        let (h, _) = complete(&[0x80, 0x02, 0x6c, 0x6f], Role::Client);
        assert_eq!((h.fin, h.opcode), (true, OpCode::Continuation));
        // Unmasked ping "Hello", masked pong "Hello".
        let (h, _) = complete(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], Role::Client);
        assert_eq!(h.opcode, OpCode::Ping);
        let pong = [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        assert_eq!(complete(&pong, Role::Server).0.opcode, OpCode::Pong);
        // 256 bytes binary in a single unmasked frame; 64 KiB likewise.
        let (h, n) = complete(&[0x82, 0x7E, 0x01, 0x00], Role::Client);
        assert_eq!((h.payload_len, n), (256, 4));
        let big = [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00];
        let (h, n) = complete(&big, Role::Client);
        assert_eq!((h.payload_len, n), (65536, 10));
    }

    #[test]
    fn encoder_reproduces_rfc_bytes() {
        assert_eq!(&server_frame(OpCode::Text, b"Hello")[..], b"\x81\x05Hello");
        let mut v = Vec::new();
        write_client_frame(&mut v, OpCode::Text, b"Hello", [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(v, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        let f = server_frame(OpCode::Binary, &[0; 256]);
        assert_eq!(&f[..4], [0x82, 0x7E, 0x01, 0x00]);
        assert_eq!(f.len(), 260);
        let f = server_frame(OpCode::Binary, &[0; 65536]);
        assert_eq!(&f[..10], [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn incomplete_headers_say_what_they_need() {
        let full = [0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        for cut in 0..full.len() {
            let needed = match decode_header(&full[..cut], Role::Server, MAX) {
                Ok(HeaderStatus::Incomplete { needed }) => needed,
                other => panic!("{cut}: {other:?}"),
            };
            let exact = if cut < 2 { 2 - cut } else { full.len() - cut };
            assert_eq!(needed, exact, "cut {cut}");
        }
        assert_eq!(complete(&full, Role::Server).1, 14);
    }

    #[test]
    fn error_vectors() {
        let err = |buf: &[u8], role| decode_header(buf, role, 1 << 20).unwrap_err();
        for rsv in [0x10, 0x20, 0x40, 0x70] {
            assert_eq!(err(&[0x81 | rsv], Role::Client), E::ReservedBitsSet);
        }
        for op in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(err(&[0x80 | op], Role::Client), E::UnknownOpcode(op));
        }
        for op in [8, 9, 10] {
            assert_eq!(err(&[op], Role::Client), E::FragmentedControlFrame);
            assert_eq!(err(&[0x80 | op, 126], Role::Client), E::ControlFrameTooLong);
            assert_eq!(err(&[0x80 | op, 0xFE], Role::Server), E::ControlFrameTooLong);
        }
        assert_eq!(err(&[0x81, 0x05], Role::Server), E::UnmaskedClientFrame);
        assert_eq!(err(&[0x81, 0x85], Role::Client), E::MaskedServerFrame);
        assert_eq!(err(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0], Role::Client), E::LengthTopBitSet);
        assert_eq!(err(&[0x82, 126, 0, 125], Role::Client), E::NonMinimalLength);
        assert_eq!(err(&[0x82, 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF], Role::Client), E::NonMinimalLength);
        assert_eq!(err(&[0x82, 127, 0, 0, 0, 0, 0, 0x10, 0, 1], Role::Client), E::FrameTooLarge);
        // 125-byte control frames are fine; the limit applies to data frames equally.
        assert!(decode_header(&[0x89, 125], Role::Client, 0).is_err());
        assert!(decode_header(&[0x89, 125], Role::Client, 125).is_ok());
    }

    #[test]
    fn close_payload_truncates_on_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes
        let p = close_payload(CloseCode::GOING_AWAY, &reason);
        assert!(p.len() <= 125);
        assert_eq!(&p[..2], &1001u16.to_be_bytes());
        assert!(std::str::from_utf8(&p[2..]).is_ok());
        assert_eq!(p.len(), 124); // 61 two-byte chars
        let f = server_close_frame(CloseCode::NORMAL, "bye");
        assert_eq!(&f[..], b"\x88\x05\x03\xe8bye");
    }

    /// The fast path must agree with the step-by-step decoder on every input.
    #[test]
    fn fast_path_agrees_with_slow_path() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..200_000u32 {
            let mut buf = [0u8; MAX_HEADER_LEN];
            for b in &mut buf {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            // Bias towards valid headers so the fast path is taken often.
            buf[0] &= if i % 2 == 0 { 0x8F } else { 0xFF };
            if i % 3 == 0 {
                buf[1] = (buf[1] & 0x80) | [5, 125, 126, 127][i as usize % 4];
            }
            let len = (state >> 8) as usize % (MAX_HEADER_LEN + 1);
            let max = [0, 125, 126, 1 << 16, MAX][(state >> 16) as usize % 5];
            for role in [Role::Server, Role::Client] {
                let fast = decode_header(&buf[..len], role, max);
                assert_eq!(fast, decode_header_slow(&buf[..len], role, max), "{buf:?} {len}");
            }
        }
    }

    #[test]
    fn header_len_matches_encoder() {
        for len in [0, 125, 126, 65535, 65536, 1 << 40] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut out = [0; MAX_HEADER_LEN];
                let n = encode_header(&mut out, true, OpCode::Binary, mask, len);
                assert_eq!(n, header_len(len, mask.is_some()));
                let role = if mask.is_some() { Role::Server } else { Role::Client };
                let (h, hl) = complete(&out[..n], role);
                assert_eq!((h.payload_len, h.mask, hl), (len, mask, n));
            }
        }
    }
}
