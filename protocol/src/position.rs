//! Positions in a channel: a seq, and the epoch of the history it belongs to.
//!
//! A channel's seqs count from 1 within one *epoch*: one history of that channel. The embedded
//! hub starts a new epoch for every channel when the server starts (seqs start again at 1
//! after a restart); a broker keeps a channel's epoch for as long as its history lives. A
//! position from another epoch names a message of a history that no longer exists: the server
//! answers it with a `reset` notice instead of guessing (`docs/protocol.md`, "Positions").
//!
//! The text form, used by `since=`, `Last-Event-ID` and the SSE `id:`, is
//! `channel:seq[@epoch]`, comma-separated for several channels. Channel names may contain `:`
//! (the seq is after the last one) but never `@` or `,`, so the form is unambiguous.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Most bytes of an epoch.
pub const EPOCH_MAX_LEN: usize = 16;

/// The id of one history of a channel: 1 to 16 bytes of `[A-Za-z0-9_-]` (safe unescaped in
/// URLs, JSON and SSE ids). Copy, no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch {
    len: u8,
    bytes: [u8; EPOCH_MAX_LEN],
}

impl Epoch {
    /// Parses an epoch; `None` if `text` is empty, too long, or has another character.
    pub fn parse(text: &str) -> Option<Self> {
        let ok = (1..=EPOCH_MAX_LEN).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return None;
        }
        let mut bytes = [0; EPOCH_MAX_LEN];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Some(Self { len: text.len() as u8, bytes })
    }

    /// An epoch from 64 random bits: 8 characters of a 32-letter alphabet (40 bits kept; two
    /// runs of one server share an epoch with odds of 1 in 10^12).
    pub fn from_random(bits: u64) -> Self {
        const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
        let mut bytes = [0; EPOCH_MAX_LEN];
        for (i, b) in bytes.iter_mut().take(8).enumerate() {
            *b = ALPHABET[((bits >> (i * 5)) & 31) as usize];
        }
        Self { len: 8, bytes }
    }

    /// The epoch's text.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored (checked by `parse`, chosen by `from_random`).
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Epoch({})", self.as_str())
    }
}

impl Serialize for Epoch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Epoch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom("an epoch is 1-16 of [A-Za-z0-9_-]"))
    }
}

/// Where a client stands in a channel: the last seq it has, and (when it knows it) the epoch
/// that seq belongs to. A position without an epoch is taken as the current epoch's (what
/// clients did before epochs existed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The last seq the client has (0: none yet).
    pub seq: u64,
    /// The history the seq belongs to.
    pub epoch: Option<Epoch>,
}

impl Position {
    /// A position without an epoch.
    pub fn seq(seq: u64) -> Self {
        Self { seq, epoch: None }
    }
}

/// Parses positions in the text form `a:12@k3x9m2q7,b:3` into `into` (a later item for the
/// same channel wins). Empty items are skipped. The error names the item.
pub fn parse_positions(value: &str, into: &mut BTreeMap<String, Position>) -> Result<(), String> {
    for item in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let (at, epoch) = match item.split_once('@') {
            Some((at, epoch)) => {
                let epoch = Epoch::parse(epoch)
                    .ok_or_else(|| format!("an epoch is 1-16 of [A-Za-z0-9_-], got {:?}", clip(item)))?;
                (at, Some(epoch))
            }
            None => (item, None),
        };
        let (channel, seq) = at
            .rsplit_once(':')
            .and_then(|(c, n)| Some((c, n.parse::<u64>().ok()?)))
            .filter(|(c, _)| !c.is_empty())
            .ok_or_else(|| format!("positions are channel:seq[@epoch] items, got {:?}", clip(item)))?;
        into.insert(channel.to_owned(), Position { seq, epoch });
    }
    Ok(())
}

/// Appends one position in the text form (`a:12@k3x9m2q7`).
pub fn write_position(out: &mut Vec<u8>, channel: &str, position: Position) {
    out.extend_from_slice(channel.as_bytes());
    out.push(b':');
    crate::decimal::write_u64(out, position.seq);
    if let Some(epoch) = position.epoch {
        out.push(b'@');
        out.extend_from_slice(epoch.as_str().as_bytes());
    }
}

fn clip(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs() {
        let e = Epoch::parse("k3x9m2q7").unwrap();
        assert_eq!(e.as_str(), "k3x9m2q7");
        assert_eq!(e.to_string(), "k3x9m2q7");
        assert_eq!(Epoch::parse("A_b-9").unwrap().as_str(), "A_b-9");
        for bad in ["", "a b", "x@y", "é", "12345678901234567"] {
            assert!(Epoch::parse(bad).is_none(), "{bad:?}");
        }
        let r = Epoch::from_random(u64::MAX);
        assert_eq!(r.as_str().len(), 8);
        assert_eq!(Epoch::parse(r.as_str()), Some(r));
        assert_ne!(Epoch::from_random(1), Epoch::from_random(2));
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, "\"k3x9m2q7\"");
        assert_eq!(serde_json::from_str::<Epoch>(&json).unwrap(), e);
        assert!(serde_json::from_str::<Epoch>("\"a,b\"").is_err());
    }

    #[test]
    fn positions_parse_with_and_without_epochs() {
        let mut p = BTreeMap::new();
        parse_positions("a:12, news:eu:3@E1,,b:0@zz", &mut p).unwrap();
        assert_eq!(p["a"], Position::seq(12));
        assert_eq!(p["news:eu"], Position { seq: 3, epoch: Epoch::parse("E1") });
        assert_eq!(p["b"], Position { seq: 0, epoch: Epoch::parse("zz") });
        for bad in ["a", "a:-1", "a:x", ":3", "a:1@", "a:1@x y", "a@e:1", "a:1@e@f"] {
            assert!(parse_positions(bad, &mut BTreeMap::new()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn positions_round_trip() {
        let mut out = Vec::new();
        write_position(&mut out, "news:eu", Position { seq: 41, epoch: Epoch::parse("k3") });
        out.push(b',');
        write_position(&mut out, "a", Position::seq(7));
        assert_eq!(out, b"news:eu:41@k3,a:7");
        let mut p = BTreeMap::new();
        parse_positions(std::str::from_utf8(&out).unwrap(), &mut p).unwrap();
        assert_eq!(p["news:eu"].seq, 41);
        assert_eq!(p["a"], Position::seq(7));
    }
}
