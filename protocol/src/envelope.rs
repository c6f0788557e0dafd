//! The JSON envelope around published data, and the control messages of the wire API
//! (documented in `docs/protocol.md`).
//!
//! The server encodes an envelope once per published message, straight into the buffer that
//! becomes the shared frame, with no intermediate allocation: [`envelope_len`] gives the exact
//! size first. The load generator parses envelopes without copying (`data` stays raw JSON).

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::decimal::{decimal_len, put_u64};
use crate::frame::{MAX_HEADER_LEN, OpCode, encode_header};
use crate::position::{Epoch, Position};

/// The payload of a published message.
#[derive(Debug, Clone, Copy)]
pub enum Data<'a> {
    /// Already-valid JSON, written as is. The caller guarantees validity (the server validates
    /// once at publish time, not per subscriber).
    Json(&'a [u8]),
    /// Text, written as a JSON string (escaped).
    Text(&'a str),
}

const PREFIX: &[u8] = br#"{"channel":"#;
const SEQ: &[u8] = br#","seq":"#;
const TS: &[u8] = br#","ts":"#;
const DATA: &[u8] = br#","data":"#;

/// The exact length [`write_envelope`] writes.
pub fn envelope_len(channel: &str, seq: u64, ts_us: u64, data: &Data<'_>) -> usize {
    let data_len = match data {
        Data::Json(raw) => raw.len(),
        Data::Text(text) => json_string_len(text),
    };
    PREFIX.len()
        + json_string_len(channel)
        + SEQ.len()
        + decimal_len(seq)
        + TS.len()
        + decimal_len(ts_us)
        + DATA.len()
        + data_len
        + 1
}

/// Writes `{"channel":"…","seq":N,"ts":µs,"data":…}`. `ts_us` is the server time in
/// microseconds since the Unix epoch when the message was sequenced.
pub fn write_envelope(out: &mut impl BufMut, channel: &str, seq: u64, ts_us: u64, data: &Data<'_>) {
    out.put_slice(PREFIX);
    write_json_string(out, channel);
    out.put_slice(SEQ);
    put_u64(out, seq);
    out.put_slice(TS);
    put_u64(out, ts_us);
    out.put_slice(DATA);
    match data {
        Data::Json(raw) => out.put_slice(raw),
        Data::Text(text) => write_json_string(out, text),
    }
    out.put_u8(b'}');
}

/// The envelope as a complete server text frame, in one allocation of exactly its size.
pub fn ws_envelope_frame(channel: &str, seq: u64, ts_us: u64, data: &Data<'_>) -> Bytes {
    let len = envelope_len(channel, seq, ts_us, data);
    let mut head = [0; MAX_HEADER_LEN];
    let head_len = encode_header(&mut head, true, OpCode::Text, None, len as u64);
    let mut out = BytesMut::with_capacity(head_len + len);
    out.put_slice(&head[..head_len]);
    write_envelope(&mut out, channel, seq, ts_us, data);
    debug_assert_eq!(out.len(), head_len + len, "envelope_len disagrees with write_envelope");
    out.freeze()
}

/// A parsed envelope; `channel` and `data` borrow from the input where possible.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    /// The channel.
    #[serde(borrow)]
    pub channel: Cow<'a, str>,
    /// The channel's sequence number of this message.
    pub seq: u64,
    /// Server time when sequenced, µs since the Unix epoch.
    pub ts: u64,
    /// The data, as raw JSON.
    #[serde(borrow)]
    pub data: &'a RawValue,
}

/// Parses an envelope.
pub fn parse_envelope(bytes: &[u8]) -> Result<Envelope<'_>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Server → client control messages, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control {
    /// The connection now receives these channels. `seq` gives, per channel, the last sequence
    /// number assigned before the subscription took effect: live messages follow it (after any
    /// replay requested with `since`).
    Subscribed {
        /// Echo of the request's `id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// The channels.
        channels: Vec<String>,
        /// Last assigned seq per channel.
        #[serde(default)]
        seq: BTreeMap<String, u64>,
        /// The epoch of each channel in `seq`: the history those seqs belong to.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        epoch: BTreeMap<String, Epoch>,
    },
    /// The connection no longer receives these channels.
    Unsubscribed {
        /// Echo of the request's `id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// The channels.
        channels: Vec<String>,
    },
    /// A publish was accepted and sequenced.
    Published {
        /// Echo of the request's `id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// The channel.
        channel: String,
        /// The sequence number assigned.
        seq: u64,
    },
    /// Messages `from..=to` of `channel` will never be delivered to this connection (history no
    /// longer holds them, or the connection was too slow and they were dropped).
    Gap {
        /// The channel.
        channel: String,
        /// First missing seq.
        from: u64,
        /// Last missing seq (inclusive).
        to: u64,
    },
    /// The position the client gave for `channel` belongs to another history of it (another
    /// epoch: the server restarted, or the broker lost the channel). What the client built from
    /// the old history is stale: it should reload. The channel is now at `epoch`, newest seq
    /// `seq`; what history holds of this epoch follows (from seq 1, or a `gap` first).
    Reset {
        /// The channel.
        channel: String,
        /// The channel's current epoch.
        epoch: Epoch,
        /// The newest seq of the current epoch when the notice was made.
        seq: u64,
    },
    /// This SSE stream has more channels than its event ids can carry (the id of an event
    /// names only that event's channel from now on): `Last-Event-ID` alone can no longer resume
    /// every channel exactly; keep the last position per channel and reconnect with `since=`.
    ResumeLimited {
        /// Human-readable detail.
        message: String,
    },
    /// A request failed; the connection stays open.
    Error {
        /// Echo of the request's `id`, when the failed request had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
}

/// The `code` of an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or not an object with a known `type` and the fields it needs.
    BadRequest,
    /// A channel name outside `[A-Za-z0-9._:-]{1,128}`.
    InvalidChannel,
    /// Publishing (or this channel) is not allowed for this connection.
    Forbidden,
    /// The connection has reached its subscription limit.
    TooManySubscriptions,
    /// The published data exceeds the limit.
    PayloadTooLarge,
    /// The connection sends requests too fast.
    RateLimited,
    /// The server cannot take this request now (a memory budget is full); try again later.
    Overloaded,
    /// Anything else, including codes added after this version.
    #[serde(other)]
    Internal,
}

impl Control {
    /// The control message as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing these types (strings, integers, maps with string keys) cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Client → server operations, tagged by `type`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientOp {
    /// Start receiving `channels`; `since` asks for a replay of the messages after the given
    /// seq of a channel (from history, or a `gap` notice for what history lost).
    Subscribe {
        /// Correlation id, echoed in the reply.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// The channels.
        channels: Vec<String>,
        /// Last position seen per channel: a seq, or `{"seq":N,"epoch":"E"}`.
        #[serde(skip_serializing_if = "BTreeMap::is_empty", serialize_with = "serialize_since")]
        since: BTreeMap<String, Position>,
    },
    /// Stop receiving `channels`.
    Unsubscribe {
        /// Correlation id, echoed in the reply.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// The channels.
        channels: Vec<String>,
    },
    /// Publish `data` (any JSON value) on `channel`, when allowed.
    Publish {
        /// Correlation id, echoed in the reply.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// The channel.
        channel: String,
        /// The data, raw JSON.
        data: Box<RawValue>,
    },
}

/// All fields any operation has; serde cannot put a `RawValue` inside an internally tagged
/// enum, so [`ClientOp::parse`] goes through this flat form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlatOp {
    #[serde(rename = "type")]
    kind: String,
    id: Option<u64>,
    channels: Option<Vec<String>>,
    since: Option<BTreeMap<String, SinceValue>>,
    channel: Option<String>,
    data: Option<Box<RawValue>>,
}

impl ClientOp {
    /// Parses an operation. `Err` carries the error reply to send.
    pub fn parse(bytes: &[u8]) -> Result<Self, Control> {
        let bad = |id, message: &str| Control::Error {
            id,
            code: ErrorCode::BadRequest,
            message: message.to_owned(),
        };
        let op: FlatOp = serde_json::from_slice(bytes).map_err(|e| bad(None, &e.to_string()))?;
        let id = op.id;
        match (op.kind.as_str(), op.channels, op.channel, op.data) {
            ("subscribe", Some(channels), None, None) => {
                let since = op.since.unwrap_or_default().into_iter().map(|(c, v)| (c, v.into())).collect();
                Ok(Self::Subscribe { id, channels, since })
            }
            ("unsubscribe", Some(channels), None, None) if op.since.is_none() => {
                Ok(Self::Unsubscribe { id, channels })
            }
            ("publish", None, Some(channel), Some(data)) if op.since.is_none() => {
                Ok(Self::Publish { id, channel, data })
            }
            ("subscribe" | "unsubscribe" | "publish", ..) => {
                Err(bad(id, "missing or unexpected fields for this type"))
            }
            _ => Err(bad(id, "unknown type")),
        }
    }

    /// The operation as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A `since` value on the wire: a bare seq (no epoch, as before epochs existed) or
/// `{"seq":N,"epoch":"E"}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum SinceValue {
    Seq(u64),
    Position {
        seq: u64,
        #[serde(default)]
        epoch: Option<Epoch>,
    },
}

impl From<SinceValue> for Position {
    fn from(v: SinceValue) -> Self {
        match v {
            SinceValue::Seq(seq) => Position::seq(seq),
            SinceValue::Position { seq, epoch } => Position { seq, epoch },
        }
    }
}

fn serialize_since<S: serde::Serializer>(
    since: &BTreeMap<String, Position>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    #[derive(Serialize)]
    struct WithEpoch<'a> {
        seq: u64,
        epoch: &'a Epoch,
    }
    let mut map = s.serialize_map(Some(since.len()))?;
    for (channel, position) in since {
        match &position.epoch {
            None => map.serialize_entry(channel, &position.seq)?,
            Some(epoch) => map.serialize_entry(channel, &WithEpoch { seq: position.seq, epoch })?,
        }
    }
    map.end()
}

/// Whether `name` is a valid channel name: 1–128 bytes of `[A-Za-z0-9._:-]`. Such names need
/// no JSON escaping and are safe in URLs and metrics labels.
pub fn is_valid_channel(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The escape sequence of a byte that JSON strings must escape, or `None`.
fn escape(b: u8) -> Option<&'static [u8]> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    static CONTROL: [[u8; 6]; 32] = {
        let mut t = [[0u8; 6]; 32];
        let mut i = 0;
        while i < 32 {
            t[i] = [b'\\', b'u', b'0', b'0', HEX[i >> 4], HEX[i & 15]];
            i += 1;
        }
        t
    };
    match b {
        b'"' => Some(b"\\\""),
        b'\\' => Some(b"\\\\"),
        b'\n' => Some(b"\\n"),
        b'\r' => Some(b"\\r"),
        b'\t' => Some(b"\\t"),
        0x08 => Some(b"\\b"),
        0x0C => Some(b"\\f"),
        0..=0x1F => Some(&CONTROL[b as usize]),
        _ => None,
    }
}

/// Length of `s` as a JSON string, quotes included.
fn json_string_len(s: &str) -> usize {
    2 + s.bytes().map(|b| escape(b).map_or(1, <[u8]>::len)).sum::<usize>()
}

/// Writes `s` as a JSON string: unescaped runs are copied in one go.
fn write_json_string(out: &mut impl BufMut, s: &str) {
    out.put_u8(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(esc) = escape(b) {
            out.put_slice(&bytes[run..i]);
            out.put_slice(esc);
            run = i + 1;
        }
    }
    out.put_slice(&bytes[run..]);
    out.put_u8(b'"');
}

#[cfg(test)]
mod tests;
