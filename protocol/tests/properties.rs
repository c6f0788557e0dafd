//! Property tests: round trips and split-anywhere invariance.

use bytes::Bytes;
use proptest::prelude::*;
use tickcast_protocol::envelope::{Data, envelope_len, parse_envelope, write_envelope};
use tickcast_protocol::frame::{HeaderStatus, MAX_HEADER_LEN, decode_header, encode_header, server_frame};
use tickcast_protocol::http::{HeaderLimits, parse_request};
use tickcast_protocol::mask::{MaskImpl, apply_mask, apply_mask_scalar};
use tickcast_protocol::utf8::Utf8Validator;
use tickcast_protocol::{Limits, Message, MessageDecoder, OpCode, ProtocolError, Role};

/// A message as a sequence of (masked) frames: data split into fragments, with control frames
/// interleaved between fragments.
#[derive(Debug, Clone)]
enum Item {
    Data { text: bool, fragments: Vec<Vec<u8>>, pings: Vec<Vec<u8>> },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        (
            any::<bool>(),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..4),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..126), 0..3),
        )
            .prop_map(|(text, fragments, pings)| {
                // Text: make each fragment valid UTF-8 as a whole message (lossy-replace).
                let fragments = if text {
                    let s = String::from_utf8_lossy(&fragments.concat()).into_owned();
                    let b = s.into_bytes();
                    let n = fragments.len();
                    let cut = |i: usize| b.len() * i / n;
                    (0..n).map(|i| b[cut(i)..cut(i + 1)].to_vec()).collect()
                } else {
                    fragments
                };
                Item::Data { text, fragments, pings }
            }),
        prop::collection::vec(any::<u8>(), 0..126).prop_map(Item::Ping),
        prop::collection::vec(any::<u8>(), 0..126).prop_map(Item::Pong),
    ]
}

fn push_frame(out: &mut Vec<u8>, fin: bool, op: OpCode, payload: &[u8], mask: [u8; 4]) {
    let mut head = [0; MAX_HEADER_LEN];
    let n = encode_header(&mut head, fin, op, Some(mask), payload.len() as u64);
    out.extend_from_slice(&head[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
}

/// Encodes items as client frames; returns the bytes and the messages they must decode to.
fn encode(items: &[Item], mask: [u8; 4]) -> (Vec<u8>, Vec<Message>) {
    let mut wire = Vec::new();
    let mut expect = Vec::new();
    for it in items {
        match it {
            Item::Ping(p) => {
                push_frame(&mut wire, true, OpCode::Ping, p, mask);
                expect.push(Message::Ping(Bytes::from(p.clone())));
            }
            Item::Pong(p) => {
                push_frame(&mut wire, true, OpCode::Pong, p, mask);
                expect.push(Message::Pong(Bytes::from(p.clone())));
            }
            Item::Data { text, fragments, pings } => {
                for (i, f) in fragments.iter().enumerate() {
                    let op = match (i, text) {
                        (0, true) => OpCode::Text,
                        (0, false) => OpCode::Binary,
                        _ => OpCode::Continuation,
                    };
                    push_frame(&mut wire, i + 1 == fragments.len(), op, f, mask);
                    if let Some(p) = pings.get(i).filter(|_| i + 1 < fragments.len()) {
                        push_frame(&mut wire, true, OpCode::Ping, p, mask);
                        expect.push(Message::Ping(Bytes::from(p.clone())));
                    }
                }
                let all = Bytes::from(fragments.concat());
                expect.push(if *text { Message::Text(all) } else { Message::Binary(all) });
            }
        }
    }
    (wire, expect)
}

fn decode_chunks(chunks: &[&[u8]]) -> Result<Vec<Message>, ProtocolError> {
    let limits = Limits { max_frame: 1 << 20, max_message: 1 << 20 };
    let mut dec = MessageDecoder::new(Role::Server, limits);
    let mut out = Vec::new();
    for chunk in chunks {
        let mut rest = *chunk;
        loop {
            let (used, msg) = dec.decode(rest)?;
            rest = &rest[used..];
            out.extend(msg);
            if rest.is_empty() {
                break;
            }
        }
    }
    assert!(dec.is_idle());
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn messages_round_trip_whatever_the_split(
        items in prop::collection::vec(item(), 1..5),
        mask in any::<[u8; 4]>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let (wire, expect) = encode(&items, mask);
        prop_assert_eq!(decode_chunks(&[&wire]), Ok(expect.clone()));
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&wire[last..p]);
            last = p;
        }
        chunks.push(&wire[last..]);
        prop_assert_eq!(decode_chunks(&chunks), Ok(expect));
    }

    #[test]
    fn every_single_split_point(items in prop::collection::vec(item(), 1..3), mask in any::<[u8; 4]>()) {
        let (wire, expect) = encode(&items, mask);
        for cut in 0..=wire.len() {
            prop_assert_eq!(decode_chunks(&[&wire[..cut], &wire[cut..]]), Ok(expect.clone()));
        }
    }

    #[test]
    fn header_round_trip(fin in any::<bool>(), op in 0usize..6, mask in any::<Option<[u8; 4]>>(),
                         len in prop_oneof![0u64..200, 200u64..70000, 65536u64..(u64::MAX >> 1)]) {
        let ops = [OpCode::Continuation, OpCode::Text, OpCode::Binary, OpCode::Close, OpCode::Ping, OpCode::Pong];
        let opcode = ops[op];
        let len = if opcode.is_control() { len % 126 } else { len };
        let fin = fin || opcode.is_control();
        let mut out = [0; MAX_HEADER_LEN];
        let n = encode_header(&mut out, fin, opcode, mask, len);
        let role = if mask.is_some() { Role::Server } else { Role::Client };
        for cut in 0..n {
            let st = decode_header(&out[..cut], role, u64::MAX);
            prop_assert!(matches!(st, Ok(HeaderStatus::Incomplete { .. })), "{:?}", st);
        }
        let Ok(HeaderStatus::Complete { header, header_len }) = decode_header(&out[..n], role, u64::MAX) else {
            return Err(TestCaseError::fail("incomplete"));
        };
        prop_assert_eq!((header.fin, header.opcode, header.mask, header.payload_len, header_len), (fin, opcode, mask, len, n));
    }

    #[test]
    fn decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512), client in any::<bool>()) {
        let role = if client { Role::Client } else { Role::Server };
        let mut dec = MessageDecoder::new(role, Limits::default());
        let mut rest = &bytes[..];
        while let Ok((used, msg)) = dec.decode(rest) {
            rest = &rest[used..];
            if rest.is_empty() && msg.is_none() { break; }
        }
    }

    #[test]
    fn server_frames_decode(payload in prop::collection::vec(any::<u8>(), 0..70000)) {
        let frame = server_frame(OpCode::Binary, &payload);
        let mut dec = MessageDecoder::new(Role::Client, Limits { max_frame: 1 << 20, max_message: 1 << 20 });
        let (used, msg) = dec.decode(&frame).unwrap();
        prop_assert_eq!(used, frame.len());
        prop_assert_eq!(msg, Some(Message::Binary(Bytes::from(payload))));
    }

    #[test]
    fn mask_fast_equals_scalar(data in prop::collection::vec(any::<u8>(), 0..5000), mask in any::<[u8; 4]>(),
                               phase in 0usize..8, offset in 0usize..64) {
        let offset = offset.min(data.len());
        let mut a = data.clone();
        let mut b = data.clone();
        apply_mask_scalar(&mut a[offset..], mask, phase);
        apply_mask(&mut b[offset..], mask, phase);
        prop_assert_eq!(&a, &b);
        for imp in [MaskImpl::Portable, MaskImpl::Sse2, MaskImpl::Avx2, MaskImpl::Avx512] {
            let mut c = data.clone();
            imp.apply(&mut c[offset..], mask, phase);
            prop_assert_eq!(&a, &c);
        }
    }

    #[test]
    fn utf8_agrees_with_std_whatever_the_split(bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            any::<String>().prop_map(String::into_bytes),
        ], cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4)) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut v = Utf8Validator::new();
        let mut last = 0;
        let mut result = Ok(());
        for p in points.into_iter().chain([bytes.len()]) {
            result = result.and_then(|()| v.feed(&bytes[last..p]));
            last = p;
        }
        let result = result.and_then(|()| v.finish());
        prop_assert_eq!(result.is_ok(), std::str::from_utf8(&bytes).is_ok());
    }

    #[test]
    fn envelope_round_trip(channel in "\\PC{0,40}", text in any::<String>(), seq in any::<u64>(), ts in any::<u64>()) {
        let data = Data::Text(&text);
        let mut out = Vec::new();
        write_envelope(&mut out, &channel, seq, ts, &data);
        prop_assert_eq!(out.len(), envelope_len(&channel, seq, ts, &data));
        let env = parse_envelope(&out).unwrap();
        prop_assert_eq!((&*env.channel, env.seq, env.ts), (channel.as_str(), seq, ts));
        prop_assert_eq!(serde_json::from_str::<String>(env.data.get()).unwrap(), text);
    }

    #[test]
    fn http_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_request(&bytes, &HeaderLimits::default());
        let mut prefixed = b"GET / HTTP/1.1\r\n".to_vec();
        prefixed.extend_from_slice(&bytes);
        let _ = parse_request(&prefixed, &HeaderLimits { max_bytes: 100, max_headers: 3 });
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_chunking(
        body in prop::collection::vec(any::<u8>(), 0..600),
        sizes in prop::collection::vec(1usize..200, 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        use tickcast_protocol::http::decode_chunked;
        let mut wire = Vec::new();
        let mut rest = &body[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].min(rest.len());
            wire.extend_from_slice(format!("{n:X}\r\n").as_bytes());
            wire.extend_from_slice(&rest[..n]);
            wire.extend_from_slice(b"\r\n");
            rest = &rest[n..];
            i += 1;
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        let mut out = Vec::new();
        prop_assert_eq!(decode_chunked(&wire, 600, &mut out), Ok(Some(wire.len())));
        prop_assert_eq!(&out, &body);
        let cut = cut.index(wire.len());
        prop_assert_eq!(decode_chunked(&wire[..cut], 600, &mut out), Ok(None));
        if !body.is_empty() {
            let small = decode_chunked(&wire, body.len() - 1, &mut out);
            prop_assert_eq!(small, Err(tickcast_protocol::http::HttpError::BodyTooLarge));
        }
    }
}
