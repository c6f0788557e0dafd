//! Channel names and subscription patterns.
//!
//! Names are what `tickcast_protocol::envelope::is_valid_channel` accepts: 1–128 bytes of
//! `[A-Za-z0-9._:-]`. [`validate_name`] agrees with it exactly (it calls it first) and only
//! works out *why* a name is bad, so the error a client gets says what to fix.
//!
//! A [`Pattern`] is either an exact name or a prefix subscription:
//!
//! * `ticker.*` matches every channel that starts with `ticker.` and has at least one more
//!   byte: `ticker.AAPL`, `ticker.x.y`, but not `ticker.` itself nor `tickers.A`.
//! * The part before `*` must be a valid name prefix ending with a separator, `.` or `:`
//!   (`news:*`). `tick*` is refused: a prefix that stops mid-word would match unrelated
//!   channels (`tickets`), which is rarely what the client meant.
//! * `*` alone matches every channel. It is only accepted when the caller allows it (a
//!   server-wide firehose is costly), otherwise the error says so.
//! * `*` anywhere else (`a.*.b`, `**`) is refused: matching is a prefix test, nothing more.

use std::fmt;

use tickcast_protocol::envelope::{ErrorCode, is_valid_channel};

/// Longest channel name, in bytes (the protocol's limit).
pub const MAX_NAME_LEN: usize = 128;

/// Why a channel name is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A byte outside `[A-Za-z0-9._:-]`.
    InvalidByte {
        /// Byte offset of the first offending byte.
        position: usize,
        /// The byte.
        byte: u8,
    },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const RULE: &str = "channel names are 1-128 bytes of [A-Za-z0-9._:-]";
        match *self {
            Self::Empty => write!(f, "empty channel name ({RULE})"),
            Self::TooLong { len } => write!(f, "channel name is {len} bytes long ({RULE})"),
            Self::InvalidByte { position, byte } if byte.is_ascii_graphic() || byte == b' ' => {
                write!(f, "character '{}' at byte {position} is not allowed ({RULE})", byte as char)
            }
            Self::InvalidByte { position, byte } => {
                write!(f, "byte 0x{byte:02x} at byte {position} is not allowed ({RULE})")
            }
        }
    }
}

impl std::error::Error for NameError {}

/// Checks a channel name; the error says what is wrong with it.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if is_valid_channel(name) {
        return Ok(());
    }
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    match name.bytes().position(|b| !is_name_byte(b)) {
        Some(position) => Err(NameError::InvalidByte { position, byte: name.as_bytes()[position] }),
        // Unreachable while `is_valid_channel` keeps its documented rule; refuse rather
        // than accept a name the protocol crate rejects.
        None => Err(NameError::InvalidByte { position: 0, byte: name.as_bytes()[0] }),
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
}

/// Why a subscription pattern is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternError {
    /// An exact name that is not a valid channel name.
    Name(NameError),
    /// The prefix before `*` contains a byte channel names cannot have.
    InvalidPrefix(NameError),
    /// The prefix is so long that no channel could match it.
    PrefixTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// `*` somewhere other than at the very end, or more than once.
    MisplacedWildcard {
        /// Byte offset of the offending `*`.
        position: usize,
    },
    /// The prefix does not end with `.` or `:` (e.g. `tick*`).
    PrefixWithoutSeparator,
    /// `*` alone (every channel) and the server does not allow it.
    AllChannelsNotAllowed,
}

impl PatternError {
    /// The wire error code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::AllChannelsNotAllowed => ErrorCode::Forbidden,
            _ => ErrorCode::InvalidChannel,
        }
    }
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(e) => e.fmt(f),
            Self::InvalidPrefix(e) => write!(f, "invalid prefix before '*': {e}"),
            Self::PrefixTooLong { len } => {
                write!(
                    f,
                    "prefix before '*' is {len} bytes; at most {} can match a channel",
                    MAX_NAME_LEN - 1
                )
            }
            Self::MisplacedWildcard { position } => write!(
                f,
                "'*' at byte {position}: a wildcard is only allowed once, at the end, after '.' or ':' \
                 (e.g. ticker.*)"
            ),
            Self::PrefixWithoutSeparator => {
                f.write_str("a prefix subscription must end with '.*' or ':*' (e.g. ticker.*)")
            }
            Self::AllChannelsNotAllowed => {
                f.write_str("subscribing to every channel ('*') is not allowed here")
            }
        }
    }
}

impl std::error::Error for PatternError {}

/// What a subscription names: one channel, or every channel under a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// Exactly this channel.
    Exact(Box<str>),
    /// Every channel whose name starts with this prefix and is longer than it. The empty
    /// prefix (`*`) matches every channel.
    Prefix(Box<str>),
}

impl Pattern {
    /// Parses `ticker.AAPL`, `ticker.*` or (when `allow_all`) `*`. See the module docs.
    pub fn parse(text: &str, allow_all: bool) -> Result<Self, PatternError> {
        let Some(star) = text.find('*') else {
            validate_name(text).map_err(PatternError::Name)?;
            return Ok(Self::Exact(text.into()));
        };
        if star + 1 != text.len() {
            // Report the `*` that is out of place: the first one if it is not last, else
            // there is more than one and the first is the culprit too.
            return Err(PatternError::MisplacedWildcard { position: star });
        }
        let prefix = &text[..star];
        if prefix.is_empty() {
            return if allow_all {
                Ok(Self::Prefix("".into()))
            } else {
                Err(PatternError::AllChannelsNotAllowed)
            };
        }
        if prefix.len() >= MAX_NAME_LEN {
            return Err(PatternError::PrefixTooLong { len: prefix.len() });
        }
        validate_name(prefix).map_err(PatternError::InvalidPrefix)?;
        if !prefix.ends_with(['.', ':']) {
            return Err(PatternError::PrefixWithoutSeparator);
        }
        Ok(Self::Prefix(prefix.into()))
    }

    /// Whether `channel` (a valid name) is covered by this pattern.
    pub fn matches(&self, channel: &str) -> bool {
        match self {
            Self::Exact(name) => **name == *channel,
            Self::Prefix(prefix) => channel.len() > prefix.len() && channel.starts_with(&**prefix),
        }
    }

    /// Whether this is a prefix (wildcard) pattern.
    pub fn is_prefix(&self) -> bool {
        matches!(self, Self::Prefix(_))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_agree_with_the_protocol_rule() {
        let long = "a".repeat(129);
        let max = "a".repeat(128);
        for name in ["", "a", "ticker.AAPL", "news:eu", "a b", "é", "x/y", &long, &max, "a*", "A-Z_0.9:"] {
            assert_eq!(validate_name(name).is_ok(), is_valid_channel(name), "{name:?}");
        }
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name(&long), Err(NameError::TooLong { len: 129 }));
        assert_eq!(validate_name("ab c"), Err(NameError::InvalidByte { position: 2, byte: b' ' }));
        let e = validate_name("a\u{1}").unwrap_err().to_string();
        assert!(e.contains("0x01") && e.contains("[A-Za-z0-9._:-]"), "{e}");
        assert!(validate_name("a/b").unwrap_err().to_string().contains("'/' at byte 1"));
    }

    #[test]
    fn exact_and_prefix_patterns() {
        let exact = Pattern::parse("ticker.AAPL", false).unwrap();
        assert_eq!(exact, Pattern::Exact("ticker.AAPL".into()));
        assert!(exact.matches("ticker.AAPL") && !exact.matches("ticker.AAPLX"));

        let prefix = Pattern::parse("ticker.*", false).unwrap();
        assert!(prefix.is_prefix());
        assert!(prefix.matches("ticker.AAPL"));
        assert!(prefix.matches("ticker.x.y"));
        assert!(!prefix.matches("ticker."));
        assert!(!prefix.matches("tickers.A"));
        assert!(!prefix.matches("news.x"));
        assert_eq!(prefix.to_string(), "ticker.*");

        assert!(Pattern::parse("news:*", false).unwrap().matches("news:eu"));
    }

    #[test]
    fn all_channels_only_when_allowed() {
        assert_eq!(Pattern::parse("*", false), Err(PatternError::AllChannelsNotAllowed));
        assert_eq!(PatternError::AllChannelsNotAllowed.code(), ErrorCode::Forbidden);
        let all = Pattern::parse("*", true).unwrap();
        assert!(all.matches("a") && all.matches("ticker.AAPL"));
        assert_eq!(all.to_string(), "*");
    }

    #[test]
    fn bad_patterns_say_what_to_fix() {
        let cases: &[(&str, PatternError)] = &[
            ("tick*", PatternError::PrefixWithoutSeparator),
            ("a.*.b", PatternError::MisplacedWildcard { position: 2 }),
            ("a.**", PatternError::MisplacedWildcard { position: 2 }),
            ("*a", PatternError::MisplacedWildcard { position: 0 }),
            ("", PatternError::Name(NameError::Empty)),
            ("a b.*", PatternError::InvalidPrefix(NameError::InvalidByte { position: 1, byte: b' ' })),
        ];
        for (text, want) in cases {
            let got = Pattern::parse(text, true).unwrap_err();
            assert_eq!(got, *want, "{text:?}");
            assert_eq!(got.code(), ErrorCode::InvalidChannel);
            assert!(!got.to_string().is_empty());
        }
        let long_prefix = format!("{}.*", "a".repeat(127));
        assert_eq!(Pattern::parse(&long_prefix, true), Err(PatternError::PrefixTooLong { len: 128 }));
        let ok_prefix = format!("{}.*", "a".repeat(126));
        assert!(Pattern::parse(&ok_prefix, true).is_ok());
        assert!(PatternError::PrefixWithoutSeparator.to_string().contains("ticker.*"));
    }

    #[test]
    fn never_panics_on_odd_input() {
        for text in ["*", "**", ".*", ":*", "é*", "é.*", "\u{0}*", "a\u{10FFFF}.*", "*é"] {
            let _ = Pattern::parse(text, true);
            let _ = Pattern::parse(text, false);
        }
        assert!(Pattern::parse(".*", false).unwrap().matches(".a"));
    }
}
