//! Query strings (`?channels=a,b&since=a:12`) and the refusal their mistakes get: shared by
//! the HTTP router and the poll transports, below both.

use tickcast_protocol::envelope::ErrorCode;

/// A refusal, as an HTTP status with a JSON error.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: ErrorCode,
    pub message: String,
}

/// Decodes a query value (`%2C`, `%3A`, `%2A`, ...; `+` is a space). `None` for an escape
/// that is not `%` and two hex digits (the `percent-encoding` crate would pass it through
/// as is) or for bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let valid = bytes
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'%')
        .all(|(i, _)| bytes.get(i + 1..i + 3).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)));
    if !valid {
        return None;
    }
    // `+` first, so an escaped `%2B` stays a plus.
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced).decode_utf8().ok().map(|v| v.into_owned())
}

/// A query string's `key=value` pairs, values percent-decoded.
pub fn query_pairs(query: &str) -> Result<Vec<(&str, String)>, Refusal> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value).ok_or_else(|| Refusal {
                status: 400,
                code: ErrorCode::BadRequest,
                message: format!("bad percent-escape in the {key} parameter"),
            })?;
            Ok((key, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Cb%3A3").as_deref(), Some("a,b:3"));
        assert_eq!(percent_decode("a+b%2Bc").as_deref(), Some("a b+c"), "+ is a space, %2B a plus");
        assert_eq!(percent_decode("%C3%a9").as_deref(), Some("\u{e9}"), "either case, UTF-8");
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("").as_deref(), Some(""));
        for bad in ["%", "%2", "a%zz", "%+f", "%-1", "%ff", "%C3", "x%2"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }
}
