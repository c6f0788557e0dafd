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
    // Fast path: the load generator's own payload, unwrapped, starts with `{"lg":[`.
    let start = if message.get(1..1 + MARKER.len()) == Some(MARKER) {
        1 + MARKER.len()
    } else {
        find(message, MARKER)? + MARKER.len()
    };
    let mut fields = [0u64; 3];
    let mut rest = &message[start..];
    for (i, field) in fields.iter_mut().enumerate() {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 20 {
            return None;
        }
        let mut value: u64 = 0;
        for &b in &rest[..digits] {
            value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        }
        *field = value;
        let separator = if i == 2 { b']' } else { b',' };
        if rest.get(digits) != Some(&separator) {
            return None;
        }
        rest = &rest[digits + 1..];
    }
    Some(Stamp { seq: fields[0], t_ns: fields[1], src: fields[2] })
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
    fn found_inside_an_envelope() {
        let msg = br#"{"channel":"a","seq":9,"ts":1,"data":{"lg":[3,4,5],"pad":""}}"#;
        assert_eq!(parse(msg), Some(Stamp { seq: 3, t_ns: 4, src: 5 }));
        assert_eq!(parse(b"{\"lg\":[1,2]}"), None);
        assert_eq!(parse(b"x\"l\"\"lg\":[1,2,3]"), Some(Stamp { seq: 1, t_ns: 2, src: 3 }));
        assert_eq!(parse(b"hello"), None);
    }
}
