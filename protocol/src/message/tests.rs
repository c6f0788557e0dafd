use super::*;
use crate::frame::{encode_header, write_client_frame};
use ProtocolError as E;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked client frame with explicit FIN, opcode and payload.
fn frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut head = [0; MAX_HEADER_LEN];
    let n = encode_header(&mut head, fin, opcode, Some(MASK), payload.len() as u64);
    let mut out = head[..n].to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], MASK, 0);
    out
}

fn server() -> MessageDecoder {
    MessageDecoder::new(Role::Server, Limits::default())
}

/// Feeds all of `input`, collecting messages; stops at the first error.
fn decode_all(dec: &mut MessageDecoder, mut input: &[u8]) -> Result<Vec<Message>, ProtocolError> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (used, msg) = dec.decode(input)?;
        assert!(used > 0 || msg.is_some(), "no progress");
        input = &input[used..];
        out.extend(msg);
    }
    Ok(out)
}

fn one(input: &[u8]) -> Result<Vec<Message>, ProtocolError> {
    decode_all(&mut server(), input)
}

#[test]
fn rfc_masked_hello() {
    let bytes = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    assert_eq!(one(&bytes), Ok(vec![Message::Text(Bytes::from_static(b"Hello"))]));
    // Unmasked frames from the RFC, decoded by a client.
    let mut client = MessageDecoder::new(Role::Client, Limits::default());
    let frag =
        [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f, 0x89, 0x05, b'H', b'e', b'l', b'l', b'o'];
    assert_eq!(
        decode_all(&mut client, &frag),
        Ok(vec![Message::Text(Bytes::from_static(b"Hello")), Message::Ping(Bytes::from_static(b"Hello"))])
    );
}

#[test]
fn stops_after_each_message() {
    let mut input = frame(true, OpCode::Binary, b"one");
    input.extend(frame(true, OpCode::Text, b"two"));
    let mut dec = server();
    let (used, msg) = dec.decode(&input).unwrap();
    assert_eq!((used, msg), (9, Some(Message::Binary(Bytes::from_static(b"one")))));
    assert!(dec.is_idle());
    let (used, msg) = dec.decode(&input[9..]).unwrap();
    assert_eq!((used, msg), (9, Some(Message::Text(Bytes::from_static(b"two")))));
}

#[test]
fn fragments_with_interleaved_control_frames() {
    let mut input = frame(false, OpCode::Text, "κό".as_bytes());
    input.extend(frame(true, OpCode::Ping, b"p1"));
    input.extend(frame(false, OpCode::Continuation, b""));
    input.extend(frame(true, OpCode::Pong, b""));
    input.extend(frame(true, OpCode::Continuation, "σμε".as_bytes()));
    input.extend(frame(true, OpCode::Close, b"\x03\xe8bye"));
    let expect = vec![
        Message::Ping(Bytes::from_static(b"p1")),
        Message::Pong(Bytes::new()),
        Message::Text(Bytes::from("κόσμε")),
        Message::Close(Some(CloseFrame { code: CloseCode::NORMAL, reason: "bye".into() })),
    ];
    assert_eq!(one(&input), Ok(expect.clone()));
    // Byte by byte gives the same.
    let mut dec = server();
    let mut got = Vec::new();
    for b in &input {
        let (used, msg) = dec.decode(std::slice::from_ref(b)).unwrap();
        assert_eq!(used, 1);
        got.extend(msg);
    }
    assert_eq!(got, expect);
    assert!(dec.is_idle());
}

#[test]
fn empty_messages() {
    assert_eq!(one(&frame(true, OpCode::Text, b"")), Ok(vec![Message::Text(Bytes::new())]));
    assert_eq!(one(&frame(true, OpCode::Close, b"")), Ok(vec![Message::Close(None)]));
    let mut input = frame(false, OpCode::Binary, b"");
    input.extend(frame(true, OpCode::Continuation, b""));
    assert_eq!(one(&input), Ok(vec![Message::Binary(Bytes::new())]));
}

#[test]
fn fragmentation_errors() {
    assert_eq!(one(&frame(true, OpCode::Continuation, b"x")), Err(E::UnexpectedContinuation));
    let mut input = frame(false, OpCode::Text, b"a");
    input.extend(frame(true, OpCode::Text, b"b"));
    assert_eq!(one(&input), Err(E::ExpectedContinuation));
    let mut input = frame(false, OpCode::Binary, b"a");
    input.extend(frame(true, OpCode::Binary, b"b"));
    assert_eq!(one(&input), Err(E::ExpectedContinuation));
}

#[test]
fn close_frame_rules() {
    let close = |p: &[u8]| one(&frame(true, OpCode::Close, p));
    assert_eq!(close(b"\x03"), Err(E::InvalidClosePayload));
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        assert_eq!(close(&code.to_be_bytes()), Err(E::InvalidCloseCode(code)), "{code}");
    }
    for code in [1000u16, 1003, 1007, 1014, 3000, 4999] {
        let want = Message::Close(Some(CloseFrame { code: CloseCode(code), reason: String::new() }));
        assert_eq!(close(&code.to_be_bytes()), Ok(vec![want]));
    }
    assert_eq!(close(b"\x03\xe8\xff"), Err(E::InvalidCloseReason));
    assert_eq!(E::InvalidCloseReason.close_code(), CloseCode(1007));
}

#[test]
fn utf8_fails_fast_across_frames_and_reads() {
    // Autobahn 6.4.1: the invalid sequence arrives in the second fragment; the decoder fails
    // there, before the final fragment exists.
    let mut input = frame(false, OpCode::Text, "κόσμε".as_bytes());
    input.extend(frame(false, OpCode::Continuation, b"\xf4\x90\x80\x80"));
    assert_eq!(one(&input), Err(E::InvalidUtf8));
    // Within one frame split across reads: fails on the read carrying the bad byte.
    let f = frame(true, OpCode::Text, b"abc\xed\xa0\x80 and more text follows");
    let mut dec = server();
    assert!(dec.decode(&f[..6 + 4]).is_ok()); // header + "abc\xed"
    assert_eq!(dec.decode(&f[10..11]), Err(E::InvalidUtf8));
    // Incomplete code point at the end of the message.
    assert_eq!(one(&frame(true, OpCode::Text, b"ok\xe2\x82")), Err(E::InvalidUtf8));
    // Valid code point split across fragments.
    let mut input = frame(false, OpCode::Text, b"\xe2\x82");
    input.extend(frame(true, OpCode::Continuation, b"\xac"));
    assert_eq!(one(&input), Ok(vec![Message::Text(Bytes::from("€"))]));
}

#[test]
fn limits() {
    let limits = Limits { max_frame: 10, max_message: 15 };
    let mut dec = MessageDecoder::new(Role::Server, limits);
    assert_eq!(decode_all(&mut dec, &frame(true, OpCode::Binary, &[0; 11])), Err(E::FrameTooLarge));
    let mut input = frame(false, OpCode::Binary, &[0; 10]);
    input.extend(frame(true, OpCode::Continuation, &[0; 6]));
    let mut dec = MessageDecoder::new(Role::Server, limits);
    assert_eq!(decode_all(&mut dec, &input), Err(E::MessageTooLarge));
    assert_eq!(E::MessageTooLarge.close_code(), CloseCode::MESSAGE_TOO_BIG);
    // Control frames do not count towards the message.
    let mut input = frame(false, OpCode::Binary, &[0; 10]);
    input.extend(frame(true, OpCode::Ping, &[0; 10]));
    input.extend(frame(true, OpCode::Continuation, &[0; 5]));
    let mut dec = MessageDecoder::new(Role::Server, limits);
    assert_eq!(decode_all(&mut dec, &input).map(|m| m.len()), Ok(2));
}

#[test]
fn errors_poison_and_release() {
    let mut dec = server();
    let mut input = frame(false, OpCode::Binary, b"held");
    input.extend([0x81, 0x05]); // unmasked client frame
    assert_eq!(decode_all(&mut dec, &input), Err(E::UnmaskedClientFrame));
    assert_eq!(dec.buffered_len(), 0);
    assert_eq!(dec.decode(b""), Err(E::UnmaskedClientFrame));
    assert_eq!(dec.decode(&frame(true, OpCode::Text, b"x")), Err(E::UnmaskedClientFrame));
    // Header errors surface through the decoder too.
    assert_eq!(one(&[0xC1]), Err(E::ReservedBitsSet));
    assert_eq!(one(&[0x83]), Err(E::UnknownOpcode(3)));
    let mut client = MessageDecoder::new(Role::Client, Limits::default());
    assert_eq!(client.decode(&frame(true, OpCode::Text, b"x")), Err(E::MaskedServerFrame));
}

#[test]
fn idle_decoder_is_small_and_holds_nothing() {
    assert!(size_of::<MessageDecoder>() <= 64, "{}", size_of::<MessageDecoder>());
    let mut dec = server();
    assert!(dec.is_idle());
    let f = frame(true, OpCode::Text, b"hello");
    // Partial header, then partial payload: not idle, bytes buffered.
    dec.decode(&f[..3]).unwrap();
    assert!(!dec.is_idle());
    assert_eq!(dec.buffered_len(), 3);
    dec.decode(&f[3..8]).unwrap();
    assert_eq!(dec.buffered_len(), 2);
    let (_, msg) = dec.decode(&f[8..]).unwrap();
    let Some(Message::Text(text)) = msg else { panic!() };
    assert_eq!(&text[..], b"hello");
    assert!(dec.is_idle());
    assert_eq!(dec.buffered_len(), 0);
    // A whole frame in one read: the message's buffer is exactly its payload.
    let (_, msg) = dec.decode(&frame(true, OpCode::Binary, &[7; 100])).unwrap();
    assert_eq!(msg, Some(Message::Binary(Bytes::from(vec![7; 100]))));
    assert!(dec.is_idle());
    // A ping inside a fragmented message leaves the message's bytes in place.
    let mut input = frame(false, OpCode::Binary, b"ab");
    input.extend(frame(true, OpCode::Ping, b"p"));
    let (used, msg) = dec.decode(&input).unwrap();
    assert_eq!((used, msg), (input.len(), Some(Message::Ping(Bytes::from_static(b"p")))));
    assert!(!dec.is_idle());
    assert_eq!(dec.buffered_len(), 2);
}

#[test]
fn client_frames_round_trip() {
    let mut v = Vec::new();
    write_client_frame(&mut v, OpCode::Binary, &[1; 300], [9, 8, 7, 6]);
    assert_eq!(one(&v), Ok(vec![Message::Binary(Bytes::from(vec![1; 300]))]));
}
