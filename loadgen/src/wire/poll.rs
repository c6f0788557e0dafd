//! The JSON answers of `/poll` and `/longpoll`, in one small module so the shape is easy to
//! adapt when the server's endpoints land (docs/protocol.md marks them planned).
//!
//! Assumed shape (docs/protocol.md):
//!
//! ```json
//! {"messages":[<envelope>...],"gaps":[<gap>...],"resets":[<reset>...],"next":{"a":15,"b":3},"epoch":{"a":"E","b":"E"}}
//! ```
//!
//! Parsed tolerantly: every field is optional and unknown fields are ignored; `messages`
//! elements are kept as raw JSON (an envelope, or whatever was published); `next` maps a
//! channel to the seq to send as `since` next time, `epoch` to the history that seq belongs to
//! (sent back with it, so that a restarted server answers with a `reset` instead of starting
//! the channel over silently). Without `next`, the client derives it from the `channel`/`seq`
//! of the envelopes it got.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use tickcast_protocol::position::{Epoch, Position, parse_positions, write_position};

/// One poll answer, borrowing from the body.
#[derive(Debug, Default, Deserialize)]
pub struct PollAnswer<'a> {
    #[serde(default, borrow)]
    pub messages: Vec<&'a RawValue>,
    #[serde(default, borrow)]
    pub gaps: Vec<&'a RawValue>,
    #[serde(default, borrow)]
    pub resets: Vec<&'a RawValue>,
    #[serde(default)]
    pub next: BTreeMap<String, u64>,
    #[serde(default)]
    pub epoch: BTreeMap<String, Epoch>,
}

pub fn parse(body: &[u8]) -> Result<PollAnswer<'_>, serde_json::Error> {
    serde_json::from_slice(body)
}

/// Where a client resumes: the last position (seq, and the epoch it belongs to when the server
/// said) it has seen per channel.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Since(pub BTreeMap<String, Position>);

impl Since {
    /// Takes the answer's positions: `next` (with `epoch`) when given, else the highest
    /// envelope seq seen per channel. Positions never move backwards within an epoch.
    pub fn advance(&mut self, answer: &PollAnswer<'_>) {
        #[derive(Deserialize)]
        struct Envelope<'a> {
            #[serde(borrow)]
            channel: std::borrow::Cow<'a, str>,
            seq: u64,
        }
        if answer.next.is_empty() {
            for m in &answer.messages {
                if let Ok(p) = serde_json::from_str::<Envelope<'_>>(m.get()) {
                    self.raise(&p.channel, Position::seq(p.seq));
                }
            }
        }
        for (channel, &seq) in &answer.next {
            self.raise(channel, Position { seq, epoch: answer.epoch.get(channel).copied() });
        }
    }

    /// Advances `channel` to `position` unless it is already further in the same epoch; a
    /// position of another epoch (the server restarted and said so) replaces it.
    pub fn raise(&mut self, channel: &str, position: Position) {
        match self.0.get_mut(channel) {
            Some(p) if position.epoch.is_some() && p.epoch.is_some() && p.epoch != position.epoch => {
                *p = position
            }
            Some(p) => {
                p.seq = p.seq.max(position.seq);
                p.epoch = position.epoch.or(p.epoch);
            }
            None => {
                self.0.insert(channel.to_string(), position);
            }
        }
    }

    /// Takes every position an SSE event's id carries (`a:12@E,b:3@E`; a stream of one channel
    /// names that one); an id that is not in that form is ignored.
    pub fn absorb_id(&mut self, id: &str) {
        let mut positions = BTreeMap::new();
        if parse_positions(id, &mut positions).is_ok() {
            for (channel, position) in positions {
                self.raise(&channel, position);
            }
        }
    }

    /// `a:12@E,b:3` (the `since` query parameter and SSE's `Last-Event-ID`); empty when unknown.
    pub fn to_query(&self) -> String {
        let mut out = Vec::new();
        for (i, (channel, position)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_position(&mut out, channel, *position);
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_shape() {
        let body = br#"{"messages":[{"channel":"a","seq":13,"ts":1,"data":{"x":1}},{"channel":"a","seq":14,"ts":2,"data":"s"}],
            "gaps":[{"type":"gap","channel":"b","from":1,"to":2}],"next":{"a":14,"b":2},"extra":true}"#;
        let answer = parse(body).unwrap();
        assert_eq!(answer.messages.len(), 2);
        assert_eq!(answer.gaps.len(), 1);
        let mut since = Since::default();
        since.advance(&answer);
        assert_eq!(since.to_query(), "a:14,b:2");
        since.raise("a", Position::seq(3));
        assert_eq!(since.0["a"].seq, 14);
    }

    #[test]
    fn epochs_travel_with_positions_and_a_new_epoch_replaces_the_old() {
        let body =
            br#"{"messages":[],"gaps":[],"resets":[{"type":"reset","channel":"a","epoch":"F","seq":2}],
            "next":{"a":2,"b":7},"epoch":{"a":"F","b":"E"}}"#;
        let answer = parse(body).unwrap();
        assert_eq!(answer.resets.len(), 1);
        let mut since = Since::default();
        since.absorb_id("a:40@E,b:6@E");
        assert_eq!(since.to_query(), "a:40@E,b:6@E");
        since.advance(&answer);
        assert_eq!(since.to_query(), "a:2@F,b:7@E", "a restarted in epoch F: its seq went back");
        since.absorb_id("not an id");
        since.absorb_id("b:5@E");
        assert_eq!(since.0["b"].seq, 7, "never back within an epoch");
    }

    #[test]
    fn tolerant() {
        let answer = parse(br#"{"messages":[{"channel":"c:x","seq":9,"ts":1,"data":1}]}"#).unwrap();
        let mut since = Since::default();
        since.advance(&answer);
        assert_eq!(since.to_query(), "c:x:9");
        assert!(parse(b"{}").unwrap().messages.is_empty());
        assert!(parse(b"[1]").is_err());
        assert!(parse(br#"{"messages":3}"#).is_err());
        assert!(parse(b"not json").is_err());
    }
}
