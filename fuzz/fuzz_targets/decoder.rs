//! The frame/message decoder. The first bytes choose the role and two split points; the rest is
//! the wire. No input may panic, and splitting the input anywhere must not change the result
//! (same messages, same error).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickcast_protocol::frame::decode_header;
use tickcast_protocol::{Limits, Message, MessageDecoder, ProtocolError, Role};

fn run(role: Role, chunks: &[&[u8]]) -> (Vec<Message>, Option<ProtocolError>) {
    let limits = Limits { max_frame: 4096, max_message: 8192 };
    let mut dec = MessageDecoder::new(role, limits);
    let mut out = Vec::new();
    for chunk in chunks {
        let mut rest = *chunk;
        loop {
            match dec.decode(rest) {
                Ok((used, msg)) => {
                    assert!(used <= rest.len());
                    rest = &rest[used..];
                    let done = msg.is_none();
                    out.extend(msg);
                    if rest.is_empty() && done {
                        break;
                    }
                }
                Err(e) => {
                    assert_eq!(dec.decode(b"x"), Err(e.clone()), "decoder must stay poisoned");
                    return (out, Some(e));
                }
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let [flags, a, b, wire @ ..] = data else { return };
    let role = if flags & 1 == 0 { Role::Server } else { Role::Client };
    let _ = decode_header(wire, role, u64::from(*a) << 8);
    let whole = run(role, &[wire]);
    let (i, j) = (usize::from(*a) % (wire.len() + 1), usize::from(*b) % (wire.len() + 1));
    let (i, j) = (i.min(j), i.max(j));
    let split = run(role, &[&wire[..i], &wire[i..j], &wire[j..]]);
    assert_eq!(whole, split);
    for m in &whole.0 {
        if let Message::Text(t) = m {
            assert!(std::str::from_utf8(t).is_ok());
        }
    }
});
