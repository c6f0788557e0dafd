//! What WebSocket subscribers speak inside the WebSocket (`--protocol`): plain WebSocket
//! (tickcast and most peers), Socket.IO 4 and Action Cable. Frames per protocol, with captures:
//! `benches/peers/README.md`, "Protocols the load generator must speak".
//!
//! A protocol is data ([`Spec`]): the route, the upgrade's extra headers, the opening exchange
//! after the `101` (wait for each [`Signal`] in turn, send what answers it; the subscriber is
//! open after the last one), the answer to the server's keepalive; and one parser
//! ([`Session::parse`]) that tells what a frame is: a delivery (the published body, unwrapped),
//! a step of the opening, a keepalive, a refusal, a goodbye, another control frame, or junk.
//! Sans-IO and without accounting: both receive paths (tokio-uring reads in
//! `scenarios/rate.rs`, the raw ring in `io/wsring.rs`) and `idle` account every frame through
//! `io::account`, so a protocol changes nothing else: a delivery goes to the same `Deliveries`
//! as a plain WebSocket message, and latency is measured from the stamp's scheduled time the
//! same way.
//!
//! Socket.IO and Action Cable carry the published body as a JSON *string*; it is unescaped
//! (into a buffer of the session, reused) before the stamp is looked for, so the body accounted
//! is byte for byte the one published.

use crate::plan::Protocol;

/// A step of a protocol's opening, announced by a server frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Engine.IO open packet, `0{"sid":...,"pingInterval":...}`.
    EngineOpen,
    /// Socket.IO CONNECT answered, `40{"sid":...}`: the socket joined its namespace (and the
    /// server's rooms).
    NamespaceJoined,
    /// Action Cable `{"type":"welcome"}`.
    Welcome,
    /// Action Cable `{"identifier":...,"type":"confirm_subscription"}`.
    Confirmed,
}

/// What one frame from the server is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A published message: the body as published (unescaped when the protocol wraps it in a
    /// JSON string).
    Delivery(&'a [u8]),
    /// A step of the opening (a control frame once open).
    Signal(Signal),
    /// The server's keepalive; answered with [`Spec::ping_reply`] when the protocol wants one.
    Ping,
    /// The subscription was refused (`reject_subscription`, Socket.IO CONNECT_ERROR).
    Refused,
    /// The server says it is leaving (Engine.IO close, Socket.IO DISCONNECT, Action Cable
    /// `disconnect`); the WebSocket close follows.
    Leaving,
    /// Any other frame the protocol defines.
    Control,
    /// Not a frame of this protocol.
    Malformed,
}

/// One protocol, as data.
#[derive(Debug)]
pub struct Spec {
    /// The route subscribers upgrade on (the load generator adds `channels=...` to its query).
    pub path: &'static str,
    /// Headers added to the upgrade request.
    pub upgrade_headers: &'static [(&'static str, &'static str)],
    /// The opening after the `101`: wait for each signal in turn and send its message (if
    /// any); the subscriber counts as open once the last signal arrived.
    pub open: &'static [(Signal, Option<&'static [u8]>)],
    /// What answers the server's keepalive ([`Frame::Ping`]), if anything.
    pub ping_reply: Option<&'static [u8]>,
}

/// The Action Cable channel subscribed to (the peer's `BroadcastChannel`), as the `identifier`
/// string of the subscribe command.
pub const CABLE_IDENTIFIER: &str = r#"{"channel":"BroadcastChannel"}"#;
const CABLE_SUBSCRIBE: &[u8] =
    br#"{"command":"subscribe","identifier":"{\"channel\":\"BroadcastChannel\"}"}"#;

const WS: Spec = Spec { path: "/ws", upgrade_headers: &[], open: &[], ping_reply: None };

const SOCKET_IO: Spec = Spec {
    // Straight to WebSocket, no long-polling first.
    path: "/socket.io/?EIO=4&transport=websocket",
    upgrade_headers: &[],
    // The open packet, then CONNECT to the main namespace `/` (`4` message + `0` CONNECT).
    open: &[(Signal::EngineOpen, Some(b"40")), (Signal::NamespaceJoined, None)],
    // Engine.IO v4: the server pings (`2`) every pingInterval; a pong (`3`) is due within
    // pingTimeout.
    ping_reply: Some(b"3"),
};

const ACTION_CABLE: Spec = Spec {
    path: "/cable",
    // As @rails/actioncable offers it; the server selects actioncable-v1-json.
    upgrade_headers: &[("Sec-WebSocket-Protocol", "actioncable-v1-json, actioncable-unsupported")],
    open: &[(Signal::Welcome, Some(CABLE_SUBSCRIBE)), (Signal::Confirmed, None)],
    // Pings every 3 s need no answer.
    ping_reply: None,
};

impl Protocol {
    pub fn spec(self) -> &'static Spec {
        match self {
            Protocol::Ws => &WS,
            Protocol::SocketIo => &SOCKET_IO,
            Protocol::ActionCable => &ACTION_CABLE,
        }
    }
}

/// A subscriber's protocol state: which protocol, and the buffer bodies are unescaped into.
#[derive(Debug)]
pub struct Session {
    pub protocol: Protocol,
    scratch: Vec<u8>,
}

impl Session {
    pub fn new(protocol: Protocol) -> Session {
        Session { protocol, scratch: Vec::new() }
    }

    pub fn spec(&self) -> &'static Spec {
        self.protocol.spec()
    }

    /// What the frame `payload` (a text frame when `text`) is.
    pub fn parse<'a>(&'a mut self, text: bool, payload: &'a [u8]) -> Frame<'a> {
        match self.protocol {
            // Every data frame is a message; `Deliveries` tells tickcast's control messages apart.
            Protocol::Ws => Frame::Delivery(payload),
            // Neither peer sends binary frames; Socket.IO's binary attachments are not decoded.
            _ if !text => Frame::Malformed,
            Protocol::SocketIo => socket_io(payload, &mut self.scratch),
            Protocol::ActionCable => action_cable(payload, &mut self.scratch),
        }
    }
}

/// Where a subscriber is in its protocol's opening.
#[derive(Debug, Default)]
pub struct Opening {
    step: usize,
}

/// What the opening asks for after a frame.
#[derive(Debug, PartialEq, Eq)]
pub struct OpenStep {
    /// Send this to the server.
    pub send: Option<&'static [u8]>,
    /// The protocol confirmed the subscription: the subscriber is open.
    pub open: bool,
}

impl Opening {
    /// True once the protocol confirmed the subscription (at once for plain WebSocket).
    pub fn is_open(&self, session: &Session) -> bool {
        self.step >= session.spec().open.len()
    }

    /// Feeds one frame received during the opening; `Err` when the server refused, left or
    /// spoke another protocol. (`io::account::opening_frame` counts it.)
    pub fn on_frame(
        &mut self,
        session: &mut Session,
        text: bool,
        payload: &[u8],
    ) -> anyhow::Result<OpenStep> {
        let spec = session.spec();
        if self.is_open(session) {
            return Ok(OpenStep { send: None, open: true });
        }
        let protocol = session.protocol;
        let frame = session.parse(text, payload);
        match frame {
            Frame::Signal(s) if s == spec.open[self.step].0 => {
                let send = spec.open[self.step].1;
                self.step += 1;
                Ok(OpenStep { send, open: self.step >= spec.open.len() })
            }
            Frame::Ping => Ok(OpenStep { send: spec.ping_reply, open: false }),
            Frame::Control => Ok(OpenStep { send: None, open: false }),
            Frame::Refused => anyhow::bail!("{protocol}: the server refused the subscription"),
            Frame::Leaving => anyhow::bail!("{protocol}: the server left during the opening"),
            other => anyhow::bail!(
                "{protocol}: unexpected frame while waiting for {:?}: {other:?} ({})",
                spec.open[self.step].0,
                String::from_utf8_lossy(&payload[..payload.len().min(120)])
            ),
        }
    }
}

// ------------------------------------------------------------------------------ Socket.IO

/// An Engine.IO v4 packet (one per WebSocket frame): type digit, then data.
fn socket_io<'a>(payload: &'a [u8], scratch: &'a mut Vec<u8>) -> Frame<'a> {
    let Some((&kind, data)) = payload.split_first() else {
        return Frame::Malformed;
    };
    match kind {
        // open: `0{"sid":...}`
        b'0' if data.first() == Some(&b'{') => Frame::Signal(Signal::EngineOpen),
        b'1' => Frame::Leaving,
        // ping (`2`, or `2probe` while upgrading from polling)
        b'2' => Frame::Ping,
        // pong, upgrade, noop
        b'3' | b'5' | b'6' => Frame::Control,
        b'4' => socket_io_packet(data, scratch),
        _ => Frame::Malformed,
    }
}

/// A Socket.IO v5 packet: type digit, [`/namespace,`], [ack id], [JSON data].
fn socket_io_packet<'a>(packet: &'a [u8], scratch: &'a mut Vec<u8>) -> Frame<'a> {
    let Some((&kind, mut rest)) = packet.split_first() else {
        return Frame::Malformed;
    };
    if rest.first() == Some(&b'/') {
        // Another namespace than `/` (not used here): `/name,` precedes the data.
        rest = match rest.iter().position(|&b| b == b',') {
            Some(i) => &rest[i + 1..],
            None => &[],
        };
    }
    match kind {
        // CONNECT answered: `{"sid":...}`
        b'0' if rest.first() == Some(&b'{') => Frame::Signal(Signal::NamespaceJoined),
        b'1' => Frame::Leaving,
        b'2' => {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            match event_argument(&rest[digits..]) {
                Some(arg) => Frame::Delivery(json::string_or_raw(arg, scratch)),
                None => Frame::Malformed,
            }
        }
        // ACK
        b'3' => Frame::Control,
        // CONNECT_ERROR
        b'4' => Frame::Refused,
        // BINARY_EVENT, BINARY_ACK: attachments (binary frames) are not decoded.
        _ => Frame::Malformed,
    }
}

/// The first argument of an event's `["name", arg, ...]` (empty when there is none).
fn event_argument(array: &[u8]) -> Option<&[u8]> {
    let mut i = json::ws(array, 0);
    if array.get(i) != Some(&b'[') {
        return None;
    }
    i = json::ws(array, i + 1);
    if array.get(i) != Some(&b'"') {
        return None;
    }
    i = json::ws(array, i + json::string_end(&array[i..])?);
    match array.get(i)? {
        b']' => Some(&[]),
        b',' => {
            let start = json::ws(array, i + 1);
            let end = start + json::value_end(&array[start..])?;
            Some(&array[start..end])
        }
        _ => None,
    }
}

// ------------------------------------------------------------------------------ Action Cable

/// An Action Cable frame: a JSON object with `type` (welcome, ping, confirm_subscription,
/// reject_subscription, disconnect), or a delivery `{"identifier":...,"message":...}`.
fn action_cable<'a>(payload: &'a [u8], scratch: &'a mut Vec<u8>) -> Frame<'a> {
    let mut kind: Option<&[u8]> = None;
    let mut message: Option<&[u8]> = None;
    let well_formed = json::members(payload, |key, value| match key {
        b"type" => kind = Some(value),
        b"message" => message = Some(value),
        _ => {}
    });
    if !well_formed {
        return Frame::Malformed;
    }
    match (kind, message) {
        (Some(kind), _) => match kind {
            br#""welcome""# => Frame::Signal(Signal::Welcome),
            br#""confirm_subscription""# => Frame::Signal(Signal::Confirmed),
            br#""reject_subscription""# => Frame::Refused,
            br#""ping""# => Frame::Ping,
            br#""disconnect""# => Frame::Leaving,
            _ => Frame::Control,
        },
        (None, Some(message)) => Frame::Delivery(json::string_or_raw(message, scratch)),
        (None, None) => Frame::Malformed,
    }
}

// ------------------------------------------------------------------------------ JSON scanning

/// Just enough JSON to find a value without building a tree: where a value ends, the members of
/// an object, a string's contents.
mod json {
    /// The first index at or after `i` that is not JSON whitespace.
    pub fn ws(s: &[u8], mut i: usize) -> usize {
        while matches!(s.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        i
    }

    /// Length of the string literal at the start of `s` (`s[0] == b'"'`), quotes included.
    pub fn string_end(s: &[u8]) -> Option<usize> {
        let mut i = 1;
        while let Some(off) = s.get(i..)?.iter().position(|&b| b == b'"' || b == b'\\') {
            i += off;
            if s[i] == b'"' {
                return Some(i + 1);
            }
            i += 2;
        }
        None
    }

    /// Length of the value at the start of `s` (no leading whitespace).
    pub fn value_end(s: &[u8]) -> Option<usize> {
        match *s.first()? {
            b'"' => string_end(s),
            b'{' | b'[' => {
                let mut depth = 0usize;
                let mut i = 0;
                while i < s.len() {
                    match s[i] {
                        b'"' => {
                            i += string_end(&s[i..])?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return Some(i + 1);
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                None
            }
            _ => {
                let n = s
                    .iter()
                    .position(|b| matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r'))
                    .unwrap_or(s.len());
                (n > 0).then_some(n)
            }
        }
    }

    /// Calls `member(key, value)` for every member of the object `s` (keys without their
    /// quotes, values as raw JSON); false when `s` is not one object.
    pub fn members<'a>(s: &'a [u8], mut member: impl FnMut(&'a [u8], &'a [u8])) -> bool {
        let mut i = ws(s, 0);
        if s.get(i) != Some(&b'{') {
            return false;
        }
        i = ws(s, i + 1);
        if s.get(i) == Some(&b'}') {
            return ws(s, i + 1) == s.len();
        }
        loop {
            if s.get(i) != Some(&b'"') {
                return false;
            }
            let Some(len) = string_end(&s[i..]) else { return false };
            let key = &s[i + 1..i + len - 1];
            i = ws(s, i + len);
            if s.get(i) != Some(&b':') {
                return false;
            }
            i = ws(s, i + 1);
            let Some(len) = s.get(i..).and_then(value_end) else { return false };
            member(key, &s[i..i + len]);
            i = ws(s, i + len);
            match s.get(i) {
                Some(b',') => i = ws(s, i + 1),
                Some(b'}') => return ws(s, i + 1) == s.len(),
                _ => return false,
            }
        }
    }

    /// The contents of `value` when it is a string literal: borrowed when it has no escape,
    /// else unescaped into `scratch`. Any other value (an object, a number), or a string with a
    /// bad escape, is returned as it is: raw JSON, where a stamp is still found.
    pub fn string_or_raw<'a>(value: &'a [u8], scratch: &'a mut Vec<u8>) -> &'a [u8] {
        let Some(inner) = value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")) else {
            return value;
        };
        if !inner.contains(&b'\\') {
            return inner;
        }
        match unescape(inner, scratch) {
            Some(()) => scratch,
            None => value,
        }
    }

    /// Unescapes the contents of a JSON string into `out` (cleared first). Lone surrogates
    /// become U+FFFD.
    pub fn unescape(inner: &[u8], out: &mut Vec<u8>) -> Option<()> {
        out.clear();
        let mut i = 0;
        while let Some(off) = inner[i..].iter().position(|&b| b == b'\\') {
            out.extend_from_slice(&inner[i..i + off]);
            i += off + 1;
            let c = *inner.get(i)?;
            i += 1;
            let byte = match c {
                b'"' | b'\\' | b'/' => c,
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'u' => {
                    let mut code = hex4(inner.get(i..i + 4)?)?;
                    i += 4;
                    if (0xd800..0xdc00).contains(&code)
                        && inner.get(i..i + 2) == Some(b"\\u")
                        && let Some(low) = inner.get(i + 2..i + 6).and_then(hex4)
                        && (0xdc00..0xe000).contains(&low)
                    {
                        code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
                        i += 6;
                    }
                    let ch = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
                    out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                    continue;
                }
                _ => return None,
            };
            out.push(byte);
        }
        out.extend_from_slice(&inner[i..]);
        Some(())
    }

    fn hex4(h: &[u8]) -> Option<u32> {
        if !h.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    }
}

#[cfg(test)]
mod tests;
