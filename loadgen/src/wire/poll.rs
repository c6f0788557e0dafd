//! The JSON answers of `/poll` and `/longpoll`, in one small module so the shape is easy to
//! adapt when the server's endpoints land (docs/protocol.md marks them planned).
//!
//! Assumed shape (docs/protocol.md):
//!
//! ```json
//! {"messages":[<envelope>...],"gaps":[<gap>...],"next":{"a":15,"b":3}}
//! ```
//!
//! Parsed tolerantly: every field is optional and unknown fields are ignored; `messages`
//! elements are kept as raw JSON (an envelope, or whatever was published); `next` maps a
//! channel to the seq to send as `since` next time. Without `next`, the client derives it from
//! the `channel`/`seq` of the envelopes it got.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

/// One poll answer, borrowing from the body.
#[derive(Debug, Default, Deserialize)]
pub struct PollAnswer<'a> {
    #[serde(default, borrow)]
    pub messages: Vec<&'a RawValue>,
    #[serde(default, borrow)]
    pub gaps: Vec<&'a RawValue>,
    #[serde(default)]
    pub next: BTreeMap<String, u64>,
}

pub fn parse(body: &[u8]) -> Result<PollAnswer<'_>, serde_json::Error> {
    serde_json::from_slice(body)
}

/// Where a client resumes: the last seq it has seen per channel.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Since(pub BTreeMap<String, u64>);

impl Since {
    /// Takes the answer's positions: `next` when given, else the highest envelope seq seen per
    /// channel. Positions never move backwards.
    pub fn advance(&mut self, answer: &PollAnswer<'_>) {
        #[derive(Deserialize)]
        struct Position<'a> {
            #[serde(borrow)]
            channel: std::borrow::Cow<'a, str>,
            seq: u64,
        }
        if answer.next.is_empty() {
            for m in &answer.messages {
                if let Ok(p) = serde_json::from_str::<Position<'_>>(m.get()) {
                    self.raise(&p.channel, p.seq);
                }
            }
        }
        for (channel, &seq) in &answer.next {
            self.raise(channel, seq);
        }
    }

    /// Advances `channel` to `seq` unless it is already further.
    pub fn raise(&mut self, channel: &str, seq: u64) {
        match self.0.get_mut(channel) {
            Some(v) => *v = (*v).max(seq),
            None => {
                self.0.insert(channel.to_string(), seq);
            }
        }
    }

    /// `a:12,b:3` (the `since` query parameter and SSE's `Last-Event-ID`); empty when unknown.
    pub fn to_query(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|(c, s)| format!("{c}:{s}")).collect();
        parts.join(",")
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
        since.raise("a", 3);
        assert_eq!(since.0["a"], 14);
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
