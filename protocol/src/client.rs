//! The client side's frame reading and masking, shared by every client of the load generator
//! (its tokio-uring reader and its io_uring receive ring).
//!
//! [`ClientReader`] is sans-IO and zero-copy: fed the bytes received so far, it reports one
//! frame and how many bytes it used, or that it needs more; an unfragmented message's payload is
//! a range of the caller's own input (nothing copied), and only a fragmented message is
//! assembled, in the reader's buffer. Server frames are unmasked (§5.1), so nothing is unmasked
//! here. [`MaskKeys`] makes the masks of the frames a client sends (§5.3): unpredictable to
//! intermediaries, from a seed the caller draws (this crate has no randomness of its own).

use core::ops::Range;

use crate::error::ProtocolError;
use crate::frame::{HeaderStatus, OpCode, Role, decode_header};

/// Where a message's payload is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// This range of the input given to [`ClientReader::read`] (an unfragmented message).
    Input(Range<usize>),
    /// [`ClientReader::assembled`] (the fragments of a message, joined).
    Assembled,
}

/// What one frame from the server is to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// A whole data message.
    Message {
        /// A text (not binary) message.
        text: bool,
        /// Its payload.
        payload: Payload,
    },
    /// A fragment of a message, kept until its last one arrives.
    Fragment,
    /// A ping; its payload is this range of the input (answer with a pong carrying it).
    Ping(Range<usize>),
    /// A pong.
    Pong,
    /// The server closes; its close payload is this range of the input (the status code in its
    /// first two bytes, when it sent one).
    Close(Range<usize>),
}

/// The outcome of one [`ClientReader::read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientRead {
    /// A frame, which used the first `used` bytes of the input.
    Frame {
        /// The frame.
        frame: ClientFrame,
        /// Bytes of the input it took (header and payload).
        used: usize,
    },
    /// The input holds no complete frame: call again with at least `needed` more bytes.
    Incomplete {
        /// At least this many more bytes are needed.
        needed: usize,
    },
}

/// Reads the frames a server sends, one at a time (see the module documentation).
#[derive(Debug, Default)]
pub struct ClientReader {
    /// The fragments of the message in progress, joined.
    fragments: Vec<u8>,
    /// Whether a fragmented message is in progress, and whether it is text.
    fragment_text: Option<bool>,
}

impl ClientReader {
    /// Reads one frame from the start of `input`; frames larger than `max_frame_len` are an
    /// error as soon as their header arrives. A data frame with FIN set while a fragmented
    /// message is in progress ends that message's assembly and stands alone.
    pub fn read(&mut self, input: &[u8], max_frame_len: u64) -> Result<ClientRead, ProtocolError> {
        let (header, header_len) = match decode_header(input, Role::Client, max_frame_len)? {
            HeaderStatus::Complete { header, header_len } => (header, header_len),
            HeaderStatus::Incomplete { needed } => return Ok(ClientRead::Incomplete { needed }),
        };
        // `decode_header` bounded the length by `max_frame_len`; a length beyond the address
        // space can never be complete.
        let len = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
        let used = header_len.saturating_add(len);
        if input.len() < used {
            return Ok(ClientRead::Incomplete { needed: used - input.len() });
        }
        let range = header_len..used;
        let frame = match header.opcode {
            OpCode::Text | OpCode::Binary if header.fin => {
                self.fragment_text = None;
                ClientFrame::Message { text: header.opcode == OpCode::Text, payload: Payload::Input(range) }
            }
            OpCode::Text | OpCode::Binary => {
                self.fragments.clear();
                self.fragments.extend_from_slice(&input[range]);
                self.fragment_text = Some(header.opcode == OpCode::Text);
                ClientFrame::Fragment
            }
            OpCode::Continuation => {
                let text = self.fragment_text.ok_or(ProtocolError::UnexpectedContinuation)?;
                self.fragments.extend_from_slice(&input[range]);
                if header.fin {
                    self.fragment_text = None;
                    ClientFrame::Message { text, payload: Payload::Assembled }
                } else {
                    ClientFrame::Fragment
                }
            }
            OpCode::Ping => ClientFrame::Ping(range),
            OpCode::Pong => ClientFrame::Pong,
            OpCode::Close => ClientFrame::Close(range),
        };
        Ok(ClientRead::Frame { frame, used })
    }

    /// The last fragmented message, joined (valid until the next `read`).
    pub fn assembled(&self) -> &[u8] {
        &self.fragments
    }

    /// The bytes of `payload`, where `input` is the input of the `read` that returned it.
    pub fn payload<'a>(&'a self, input: &'a [u8], payload: &Payload) -> &'a [u8] {
        match payload {
            Payload::Input(range) => &input[range.clone()],
            Payload::Assembled => &self.fragments,
        }
    }
}

/// The masks of a client's frames: xorshift64* from a seed. Masks must be unpredictable to
/// intermediaries, not cryptographically strong (§10.3); seed each connection from the OS RNG.
#[derive(Debug, Clone)]
pub struct MaskKeys {
    state: u64,
}

impl MaskKeys {
    /// A generator seeded with `seed` (any value: zero is made non-zero).
    pub fn new(seed: u64) -> MaskKeys {
        MaskKeys { state: seed | 1 }
    }

    /// The next mask.
    pub fn next_key(&mut self) -> [u8; 4] {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        ((x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32).to_le_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_header;

    fn frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut head = [0; 14];
        let n = encode_header(&mut head, fin, opcode, None, payload.len() as u64);
        [&head[..n], payload].concat()
    }

    /// Every frame of `wire`, read from whatever pieces it arrives in.
    fn read_all(wire: &[u8], cut: usize) -> Vec<(ClientFrame, Vec<u8>)> {
        let mut reader = ClientReader::default();
        let mut pending = wire[..cut].to_vec();
        let mut rest = &wire[cut..];
        let mut out = Vec::new();
        loop {
            match reader.read(&pending, 1 << 20).unwrap() {
                ClientRead::Frame { frame, used } => {
                    let bytes = match &frame {
                        ClientFrame::Message { payload, .. } => reader.payload(&pending, payload).to_vec(),
                        ClientFrame::Ping(r) | ClientFrame::Close(r) => pending[r.clone()].to_vec(),
                        _ => Vec::new(),
                    };
                    out.push((frame, bytes));
                    pending.drain(..used);
                }
                ClientRead::Incomplete { needed } if !rest.is_empty() => {
                    assert!(needed >= 1);
                    pending.extend_from_slice(rest);
                    rest = &[];
                }
                ClientRead::Incomplete { .. } => return out,
            }
        }
    }

    #[test]
    fn frames_split_anywhere_read_the_same() {
        let wire = [
            frame(true, OpCode::Text, b"hello"),
            frame(false, OpCode::Binary, b"ab"),
            frame(true, OpCode::Ping, b"p"),
            frame(false, OpCode::Continuation, b"cd"),
            frame(true, OpCode::Continuation, b"ef"),
            frame(true, OpCode::Close, &1000u16.to_be_bytes()),
        ]
        .concat();
        for cut in 0..=wire.len() {
            let frames = read_all(&wire, cut);
            let kinds: Vec<_> = frames.iter().map(|(f, b)| (f.clone(), b.clone())).collect();
            assert_eq!(kinds.len(), 6, "cut {cut}");
            assert!(
                matches!(&kinds[0], (ClientFrame::Message { text: true, payload: Payload::Input(_) }, b) if b == b"hello")
            );
            assert_eq!(kinds[1].0, ClientFrame::Fragment);
            assert!(matches!(&kinds[2], (ClientFrame::Ping(_), b) if b == b"p"));
            assert_eq!(kinds[3].0, ClientFrame::Fragment);
            assert_eq!(
                kinds[4],
                (ClientFrame::Message { text: false, payload: Payload::Assembled }, b"abcdef".to_vec())
            );
            assert!(matches!(&kinds[5], (ClientFrame::Close(_), b) if b == &1000u16.to_be_bytes()));
        }
    }

    #[test]
    fn protocol_errors_are_errors() {
        let mut reader = ClientReader::default();
        let lone = frame(true, OpCode::Continuation, b"x");
        assert_eq!(reader.read(&lone, 1 << 20), Err(ProtocolError::UnexpectedContinuation));
        // Masked by the server.
        let mut head = [0; 14];
        let n = encode_header(&mut head, true, OpCode::Text, Some([1, 2, 3, 4]), 1);
        assert_eq!(reader.read(&head[..n], 1 << 20), Err(ProtocolError::MaskedServerFrame));
        let big = frame(true, OpCode::Binary, &[0; 100]);
        assert_eq!(reader.read(&big, 99), Err(ProtocolError::FrameTooLarge));
        assert_eq!(reader.read(&big[..50], 1 << 20), Ok(ClientRead::Incomplete { needed: 52 }));
    }

    #[test]
    fn masks_follow_the_seed() {
        let (mut a, mut b) = (MaskKeys::new(7), MaskKeys::new(7));
        let keys: Vec<[u8; 4]> = (0..4).map(|_| a.next_key()).collect();
        assert_eq!(keys, (0..4).map(|_| b.next_key()).collect::<Vec<_>>());
        assert_ne!(keys[0], keys[1]);
        assert_ne!(MaskKeys::new(0).next_key(), [0; 4]);
    }
}
