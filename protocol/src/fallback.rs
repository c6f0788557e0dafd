//! The HTTP fallback transports' wire formats (`docs/protocol.md`): Server-Sent Events, and the
//! JSON answer of `/poll` and `/longpoll`. Like the WebSocket envelope frame, a message's SSE
//! event is encoded once and the same bytes go to every SSE subscriber.

use bytes::{BufMut, Bytes, BytesMut};

use crate::envelope::Control;
use crate::http::{write_header, write_status_line};
use crate::position::{Epoch, Position, write_position};

pub use crate::position::parse_positions;

/// Most bytes of an SSE `id:` that carries a stream's position on every channel. A
/// reconnecting EventSource sends it back as `Last-Event-ID`, which must fit the server's
/// request head limit with room for the URL.
pub const SSE_ID_MAX: usize = 1024;

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

/// A published message as one SSE event: `id: <channel>:<seq>[@<epoch>]`, `data: <envelope>`.
/// The `id` is what a client sends back as `Last-Event-ID` to resume after this message; on a
/// stream of one channel it resumes the whole stream.
pub fn message_event(channel: &str, seq: u64, epoch: Option<Epoch>, envelope: &[u8]) -> Bytes {
    let mut id = Vec::with_capacity(channel.len() + 40);
    write_position(&mut id, channel, Position { seq, epoch });
    let mut out = BytesMut::with_capacity(envelope.len() + id.len() + 16);
    out.put_slice(b"id: ");
    out.put_slice(&id);
    out.put_u8(b'\n');
    put_data(&mut out, envelope);
    out.freeze()
}

/// A message event of [`message_event`] with another `id:`: the positions of every channel of
/// one stream (`a:12@E,b:3@E`, see [`write_stream_id`]). The `data:` part is copied from the
/// shared event, already checked for line breaks.
pub fn event_with_id(id: &[u8], shared_event: &[u8]) -> Bytes {
    let data = shared_event.iter().position(|&b| b == b'\n').map_or(shared_event, |i| &shared_event[i + 1..]);
    let mut out = BytesMut::with_capacity(id.len() + data.len() + 5);
    out.put_slice(b"id: ");
    out.put_slice(id);
    out.put_u8(b'\n');
    out.put_slice(data);
    out.freeze()
}

/// Writes a stream's position on each of its channels in the text form (`a:12@E,b:3@E`),
/// the `id` a stream of several channels gives its events.
pub fn write_stream_id<'a>(out: &mut Vec<u8>, positions: impl IntoIterator<Item = (&'a str, Position)>) {
    for (i, (channel, position)) in positions.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_position(out, channel, position);
    }
}

/// A control message as an SSE event named by its type (`event: subscribed`, `event: gap`,
/// `event: error`, ...), with the same JSON as on WebSocket for data.
pub fn control_event(control: &Control) -> Bytes {
    let kind = match control {
        Control::Subscribed { .. } => "subscribed",
        Control::Unsubscribed { .. } => "unsubscribed",
        Control::Published { .. } => "published",
        Control::Gap { .. } => "gap",
        Control::Reset { .. } => "reset",
        Control::ResumeLimited { .. } => "resume_limited",
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

/// What a `/poll` or `/longpoll` answer starts with; the envelopes follow, comma-separated,
/// then [`write_poll_answer_end`]. Servers send the envelopes as the shared bytes they
/// already are, between these two owned pieces.
pub const POLL_ANSWER_START: &[u8] = br#"{"messages":["#;

/// Writes a `/poll` or `/longpoll` answer in one buffer:
/// `{"messages":[<envelope>...],"gaps":[<gap>...],"resets":[<reset>...],"next":{"a":15,"b":3},
/// "epoch":{"a":"E","b":"E"}}`. `messages` are envelopes (JSON as encoded once at publish
/// time), `gaps` are `(channel, from, to)`, `resets` the channels whose position named another
/// epoch (`resets` appears only when there are some), `next` the position per channel to send
/// back as `since`, with its epoch.
pub fn write_poll_answer<'a>(
    out: &mut Vec<u8>,
    messages: impl IntoIterator<Item = &'a [u8]>,
    gaps: &[(&str, u64, u64)],
    resets: &[Control],
    next: impl IntoIterator<Item = (&'a str, Position)>,
) {
    out.extend_from_slice(POLL_ANSWER_START);
    for (i, m) in messages.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(m);
    }
    write_poll_answer_end(out, gaps, resets, next);
}

/// Writes what follows a poll answer's envelopes (see [`write_poll_answer`]).
pub fn write_poll_answer_end<'a>(
    out: &mut Vec<u8>,
    gaps: &[(&str, u64, u64)],
    resets: &[Control],
    next: impl IntoIterator<Item = (&'a str, Position)>,
) {
    out.extend_from_slice(br#"],"gaps":["#);
    for (i, &(channel, from, to)) in gaps.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let gap = Control::Gap { channel: channel.to_owned(), from, to };
        out.extend_from_slice(&gap.to_json());
    }
    out.push(b']');
    if !resets.is_empty() {
        out.extend_from_slice(br#","resets":["#);
        for (i, reset) in resets.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&reset.to_json());
        }
        out.push(b']');
    }
    let next: Vec<(&str, Position)> = next.into_iter().collect();
    out.extend_from_slice(br#","next":{"#);
    for (i, (channel, position)) in next.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Valid channel names need no escaping; anything else is escaped by serde.
        out.extend_from_slice(&serde_json::to_vec(channel).unwrap_or_default());
        out.push(b':');
        crate::decimal::write_u64(out, position.seq);
    }
    out.push(b'}');
    let mut epochs = next.iter().filter_map(|(c, p)| Some((c, p.epoch?))).peekable();
    if epochs.peek().is_some() {
        out.extend_from_slice(br#","epoch":{"#);
        for (i, (channel, epoch)) in epochs.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&serde_json::to_vec(channel).unwrap_or_default());
            out.extend_from_slice(b":\"");
            out.extend_from_slice(epoch.as_str().as_bytes());
            out.push(b'"');
        }
        out.push(b'}');
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::ErrorCode;

    #[test]
    fn message_event_format() {
        let e = message_event("ticker.AAPL", 42, None, br#"{"channel":"ticker.AAPL","seq":42}"#);
        assert_eq!(&e[..], b"id: ticker.AAPL:42\ndata: {\"channel\":\"ticker.AAPL\",\"seq\":42}\n\n");
        let e = message_event("a", 7, Epoch::parse("k3x9"), b"{}");
        assert_eq!(&e[..], b"id: a:7@k3x9\ndata: {}\n\n");
        // The same data under a stream's own id.
        let mut id = Vec::new();
        let (a, b) = (Position { seq: 7, epoch: Epoch::parse("k3x9") }, Position::seq(3));
        write_stream_id(&mut id, [("a", a), ("news:eu", b)]);
        assert_eq!(id, b"a:7@k3x9,news:eu:3");
        assert_eq!(&event_with_id(&id, &e)[..], b"id: a:7@k3x9,news:eu:3\ndata: {}\n\n");
        // Pretty-printed JSON stays one data line, and the same JSON.
        let e = message_event("a", 1, None, b"{\r\n  \"x\": [1,\n2]\n}");
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
    fn poll_answer() {
        let mut out = Vec::new();
        let msgs: [&[u8]; 2] = [br#"{"seq":1}"#, br#"{"seq":2}"#];
        let e = Epoch::parse("k3x9");
        let next = [("a", Position { seq: 2, epoch: e }), ("b", Position { seq: 5, epoch: e })];
        write_poll_answer(&mut out, msgs, &[("b", 1, 4)], &[], next);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["messages"][1]["seq"], 2);
        assert_eq!(v["gaps"][0]["to"], 4);
        assert_eq!(v["next"]["b"], 5);
        assert_eq!(v["epoch"]["a"], "k3x9");
        assert!(v.get("resets").is_none());
        out.clear();
        write_poll_answer(&mut out, [], &[], &[], []);
        assert_eq!(&out[..], br#"{"messages":[],"gaps":[],"next":{}}"#);
        out.clear();
        let reset = Control::Reset { channel: "a".into(), epoch: e.unwrap(), seq: 2 };
        write_poll_answer(&mut out, [], &[], &[reset], [("a", Position::seq(0))]);
        assert_eq!(
            &out[..],
            br#"{"messages":[],"gaps":[],"resets":[{"type":"reset","channel":"a","epoch":"k3x9","seq":2}],"next":{"a":0}}"#
        );
    }
}
