//! The load generator's message stamp.
//!
//! Every message the load generator sends (echo payloads, published messages) is a JSON object
//! that starts with `{"lg":[SEQ,T_NS,SRC]` and is padded to the requested size:
//!
//! * `SEQ`: the sender's sequence number (1, 2, ...), used for loss / duplicate / reorder
//!   accounting;
//! * `T_NS`: the *scheduled* send time, wall-clock nanoseconds since the epoch (see `time.rs`);
//! * `SRC`: the sending stream (a publisher or a client id).
//!
//! A server may wrap the payload (tickcast's envelope puts it under `"data"`), so `parse` finds
//! the stamp anywhere in the message rather than at offset 0.

/// A parsed stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub seq: u64,
    pub t_ns: u64,
    pub src: u64,
}

const MARKER: &[u8] = b"\"lg\":[";

/// Writes a stamped JSON message of at least `size_bytes` bytes (exactly that size when it is
/// larger than the stamp itself) into `out` (cleared first).
pub fn write(out: &mut Vec<u8>, stamp: Stamp, size_bytes: usize) {
    use std::io::Write;
    out.clear();
    let _ = write!(out, "{{\"lg\":[{},{},{}],\"pad\":\"", stamp.seq, stamp.t_ns, stamp.src);
    let closing = 2; // `"}`
    let pad = size_bytes.saturating_sub(out.len() + closing);
    out.resize(out.len() + pad, b'x');
    out.extend_from_slice(b"\"}");
}

/// Finds and parses the stamp in `message`, if there is one.
pub fn parse(message: &[u8]) -> Option<Stamp> {
    parse_near(message, &mut 1)
}

/// `parse`, looking first where the previous message of the same stream had its stamp
/// (`*hint`, updated): a server's envelope puts it at the same offset message after message,
/// so the search (a scan from quote to quote) is the exception. At 1.5 M messages/s the scan
/// was the load generator's costliest function of its own. A message whose marker occurs twice
/// (not valid for a stamp, which appears once) may be read at either.
pub fn parse_near(message: &[u8], hint: &mut usize) -> Option<Stamp> {
    let at = if message.get(*hint..hint.saturating_add(MARKER.len())) == Some(MARKER) {
        *hint
    } else {
        let at = find(message, MARKER)?;
        *hint = at;
        at
    };
    let rest = &message[at + MARKER.len()..];
    let (seq, used) = number(rest, b',')?;
    let rest = &rest[used..];
    let (t_ns, used) = number(rest, b',')?;
    let (src, _) = number(&rest[used..], b']')?;
    Some(Stamp { seq, t_ns, src })
}

/// A decimal number of 1 to 20 digits at the start of `bytes`, followed by `separator`: the
/// number and the bytes it and the separator take. One pass; `None` on overflow.
fn number(bytes: &[u8], separator: u8) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    let mut digits = 0;
    for &b in bytes.iter().take(21) {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        // 19 digits always fit in a u64; the 20th may not.
        value = if digits < 19 {
            value * 10 + u64::from(d)
        } else {
            value.checked_mul(10)?.checked_add(u64::from(d))?
        };
        digits += 1;
    }
    if digits == 0 || digits > 20 || bytes.get(digits) != Some(&separator) {
        return None;
    }
    Some((value, digits + 1))
}

/// First occurrence of `needle` (non-empty): candidates are found by its first byte.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while let Some(i) = haystack[from..].iter().position(|&b| b == first) {
        let at = from + i;
        if haystack[at + 1..].starts_with(rest) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_size() {
        let stamp = Stamp { seq: 42, t_ns: 1_700_000_000_123_456_789, src: 7 };
        let mut out = Vec::new();
        for size in [0, 10, 64, 128, 4096] {
            write(&mut out, stamp, size);
            assert!(out.len() >= size);
            if size > 64 {
                assert_eq!(out.len(), size);
            }
            assert_eq!(parse(&out), Some(stamp));
            let _: serde_json::Value = serde_json::from_slice(&out).unwrap();
        }
    }

    #[test]
    fn a_hint_finds_the_same_stamp_as_a_search() {
        let envelope =
            |seq: u64| format!(r#"{{"channel":"a","seq":{seq},"data":{{"lg":[{seq},4,5],"pad":""}}}}"#);
        let mut hint = 1;
        for seq in [9, 10, 99, 100, 7] {
            let msg = envelope(seq);
            assert_eq!(parse_near(msg.as_bytes(), &mut hint), parse(msg.as_bytes()));
            assert_eq!(parse_near(msg.as_bytes(), &mut hint), Some(Stamp { seq, t_ns: 4, src: 5 }));
            assert_eq!(&msg.as_bytes()[hint..hint + MARKER.len()], MARKER);
        }
        // Hints past the end, or pointing into anything else, fall back to the search.
        for mut hint in [0, 3, 40, 1_000, usize::MAX] {
            assert_eq!(
                parse_near(envelope(3).as_bytes(), &mut hint),
                Some(Stamp { seq: 3, t_ns: 4, src: 5 })
            );
        }
        let mut hint = 20;
        assert_eq!(parse_near(b"hello", &mut hint), None);
        assert_eq!(hint, 20, "a message without a stamp leaves the hint alone");
    }

    #[test]
    fn found_inside_an_envelope() {
        let msg = br#"{"channel":"a","seq":9,"ts":1,"data":{"lg":[3,4,5],"pad":""}}"#;
        assert_eq!(parse(msg), Some(Stamp { seq: 3, t_ns: 4, src: 5 }));
        assert_eq!(parse(b"{\"lg\":[1,2]}"), None);
        assert_eq!(parse(b"x\"l\"\"lg\":[1,2,3]"), Some(Stamp { seq: 1, t_ns: 2, src: 3 }));
        assert_eq!(parse(b"hello"), None);
    }

    #[test]
    fn numbers_at_the_limits() {
        let max = u64::MAX;
        let text = format!("{{\"lg\":[{max},0,{max}]}}");
        assert_eq!(parse(text.as_bytes()), Some(Stamp { seq: max, t_ns: 0, src: max }));
        for bad in [
            "{\"lg\":[18446744073709551616,1,1]}",  // u64::MAX + 1
            "{\"lg\":[000000000000000000001,1,1]}", // 21 digits
            "{\"lg\":[,1,1]}",
            "{\"lg\":[1,1,1,1]}",
            "{\"lg\":[1;1,1]}",
            "{\"lg\":[1,1,1",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(
            parse(b"{\"lg\":[00000000000000000001,2,3]}"),
            Some(Stamp { seq: 1, t_ns: 2, src: 3 }),
            "20 digits with leading zeros"
        );
    }
}
