//! The HTTP fallback transports' wire formats (`docs/protocol.md`): Server-Sent Events, and the
//! JSON answer of `/poll` and `/longpoll`. Like the WebSocket envelope frame, a message's SSE
//! event is encoded once and the same bytes go to every SSE subscriber.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};

use crate::envelope::{Control, write_u64};
use crate::http::{write_header, write_status_line};

/// An SSE comment line: keeps proxies and idle timers from closing a quiet stream.
pub const SSE_HEARTBEAT: &[u8] = b":\n\n";

/// The stream's opening: how long a client's EventSource waits before reconnecting, in ms.
pub const SSE_RETRY: &[u8] = b"retry: 2000\n\n";

/// Appends a JSON text as the `data:` of an event. Raw CR and LF can only be insignificant
/// whitespace in valid JSON (inside strings they are escaped), but they would end the SSE
/// field: they become spaces, which leaves the JSON's meaning unchanged.
fn put_data(out: &mut BytesMut, json: &[u8]) {
    out.put_slice(b"data: ");
    let mut run = 0;
    for (i, &b) in json.iter().enumerate() {
        if b == b'\n' || b == b'\r' {
            out.put_slice(&json[run..i]);
            out.put_u8(b' ');
            run = i + 1;
        }
    }
    out.put_slice(&json[run..]);
    out.put_slice(b"\n\n");
}

/// A published message as one SSE event: `id: <channel>:<seq>`, `data: <envelope>`. The `id`
/// is what a client sends back as `Last-Event-ID` to resume after this message.
pub fn message_event(channel: &str, seq: u64, envelope: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(envelope.len() + channel.len() + 40);
    out.put_slice(b"id: ");
    out.put_slice(channel.as_bytes());
    out.put_u8(b':');
    let mut digits = Vec::with_capacity(20);
    write_u64(&mut digits, seq);
    out.put_slice(&digits);
    out.put_u8(b'\n');
    put_data(&mut out, envelope);
    out.freeze()
}

/// A control message as an SSE event named by its type (`event: subscribed`, `event: gap`,
/// `event: error`, ...), with the same JSON as on WebSocket for data.
pub fn control_event(control: &Control) -> Bytes {
    let kind = match control {
        Control::Subscribed { .. } => "subscribed",
        Control::Unsubscribed { .. } => "unsubscribed",
        Control::Published { .. } => "published",
        Control::Gap { .. } => "gap",
        Control::Error { .. } => "error",
    };
    let json = control.to_json();
    let mut out = BytesMut::with_capacity(json.len() + 32);
    out.put_slice(b"event: ");
    out.put_slice(kind.as_bytes());
    out.put_u8(b'\n');
    put_data(&mut out, &json);
    out.freeze()
}

/// The head of an event-stream response. The body runs until the server closes the
/// connection (HTTP/1.1 allows a response delimited by close, RFC 9112 §6.3), so a message's
/// event bytes need no per-connection chunk framing and stay shared.
pub fn write_sse_head(out: &mut Vec<u8>, extra_headers: &[(&str, &str)]) {
    write_status_line(out, 200);
    write_header(out, "Content-Type", b"text/event-stream; charset=utf-8");
    // Both stop intermediaries (nginx, CDNs) from buffering the stream or caching it.
    write_header(out, "Cache-Control", b"no-cache, no-transform");
    write_header(out, "X-Accel-Buffering", b"no");
    for (name, value) in extra_headers {
        write_header(out, name, value.as_bytes());
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
}

/// Parses positions in the `since` / `Last-Event-ID` form: `a:12,b:3` (a channel name may
/// itself contain `:`, the seq is after the last one). Empty items are skipped.
pub fn parse_positions(value: &str, into: &mut BTreeMap<String, u64>) -> Result<(), String> {
    for item in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let (channel, seq) = item
            .rsplit_once(':')
            .and_then(|(c, n)| Some((c, n.parse::<u64>().ok()?)))
            .ok_or_else(|| format!("positions are channel:seq pairs, got {:?}", clip(item)))?;
        into.insert(channel.to_owned(), seq);
    }
    Ok(())
}

fn clip(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Writes a `/poll` or `/longpoll` answer:
/// `{"messages":[<envelope>...],"gaps":[<gap>...],"next":{"a":15,"b":3}}`. `messages` are
/// envelopes (JSON as encoded once at publish time), `gaps` are `(channel, from, to)`, `next`
/// the position per channel to send back as `since`.
pub fn write_poll_answer<'a>(
    out: &mut Vec<u8>,
    messages: impl IntoIterator<Item = &'a [u8]>,
    gaps: &[(&str, u64, u64)],
    next: impl IntoIterator<Item = (&'a str, u64)>,
) {
    out.extend_from_slice(br#"{"messages":["#);
    for (i, m) in messages.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(m);
    }
    out.extend_from_slice(br#"],"gaps":["#);
    for (i, &(channel, from, to)) in gaps.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let gap = Control::Gap { channel: channel.to_owned(), from, to };
        out.extend_from_slice(&gap.to_json());
    }
    out.extend_from_slice(br#"],"next":{"#);
    for (i, (channel, seq)) in next.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Valid channel names need no escaping; anything else is escaped by serde.
        out.extend_from_slice(&serde_json::to_vec(channel).unwrap_or_default());
        out.push(b':');
        write_u64(out, seq);
    }
    out.extend_from_slice(b"}}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::ErrorCode;

    #[test]
    fn message_event_format() {
        let e = message_event("ticker.AAPL", 42, br#"{"channel":"ticker.AAPL","seq":42}"#);
        assert_eq!(&e[..], b"id: ticker.AAPL:42\ndata: {\"channel\":\"ticker.AAPL\",\"seq\":42}\n\n");
        // Pretty-printed JSON stays one data line, and the same JSON.
        let e = message_event("a", 1, b"{\r\n  \"x\": [1,\n2]\n}");
        assert_eq!(&e[..], b"id: a:1\ndata: {    \"x\": [1, 2] }\n\n");
        let data = std::str::from_utf8(&e[14..e.len() - 2]).unwrap();
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["x"][1], 2);
    }

    #[test]
    fn control_events() {
        let gap = control_event(&Control::Gap { channel: "a".into(), from: 3, to: 9 });
        assert_eq!(
            &gap[..],
            b"event: gap\ndata: {\"type\":\"gap\",\"channel\":\"a\",\"from\":3,\"to\":9}\n\n"
        );
        let err =
            control_event(&Control::Error { id: None, code: ErrorCode::Forbidden, message: "no".into() });
        assert!(err.starts_with(b"event: error\ndata: {\"type\":\"error\""));
    }

    #[test]
    fn sse_head() {
        let mut out = Vec::new();
        write_sse_head(&mut out, &[("Access-Control-Allow-Origin", "*")]);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Type: text/event-stream"));
        assert!(text.contains("X-Accel-Buffering: no\r\n"));
        assert!(text.contains("Access-Control-Allow-Origin: *\r\n"));
        assert!(!text.contains("Content-Length"));
        assert!(text.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn positions() {
        let mut p = BTreeMap::new();
        parse_positions("a:12, news:eu:3,,", &mut p).unwrap();
        assert_eq!(p.get("a"), Some(&12));
        assert_eq!(p.get("news:eu"), Some(&3));
        assert!(parse_positions("a", &mut p).is_err());
        assert!(parse_positions("a:-1", &mut p).is_err());
        assert!(parse_positions("a:x", &mut p).is_err());
    }

    #[test]
    fn poll_answer() {
        let mut out = Vec::new();
        let msgs: [&[u8]; 2] = [br#"{"seq":1}"#, br#"{"seq":2}"#];
        write_poll_answer(&mut out, msgs, &[("b", 1, 4)], [("a", 2), ("b", 5)]);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["messages"][1]["seq"], 2);
        assert_eq!(v["gaps"][0]["to"], 4);
        assert_eq!(v["next"]["b"], 5);
        out.clear();
        write_poll_answer(&mut out, [], &[], []);
        assert_eq!(&out[..], br#"{"messages":[],"gaps":[],"next":{}}"#);
    }
}
