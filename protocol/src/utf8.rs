//! Incremental UTF-8 validation for text messages that arrive in fragments and reads.
//!
//! The bulk goes through `simdutf8`. A code point split between two pieces is kept in a 3-byte
//! buffer and completed from the next piece. Validation fails as soon as the bytes seen can no
//! longer start a valid sequence (§8.1 "fail fast"): a truncated but still possible sequence
//! (e.g. `F0 9F`) is accepted until more arrives, an impossible one (e.g. `ED A0`, a surrogate,
//! or `F4 90`, beyond U+10FFFF) fails at once. `simdutf8::compat` reports exactly that
//! distinction through `error_len()`, like `std::str::from_utf8`.

use crate::error::ProtocolError;

/// Validates a UTF-8 byte stream fed in arbitrary pieces.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    /// The start of an incomplete code point carried over from the previous piece.
    /// INVARIANT: `pending_len <= 3`, and `pending[..pending_len]` is a valid, incomplete prefix.
    pending: [u8; 3],
    pending_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub const fn new() -> Self {
        Self { pending: [0; 3], pending_len: 0 }
    }

    /// Validates the next piece of the message.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), ProtocolError> {
        if self.pending_len > 0 {
            bytes = self.complete_pending(bytes)?;
            if self.pending_len > 0 {
                return Ok(()); // `bytes` was used up and the code point is still incomplete.
            }
        }
        if simdutf8::basic::from_utf8(bytes).is_ok() {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => self.keep(bytes.get(e.valid_up_to()..)),
            Err(_) => Err(ProtocolError::InvalidUtf8),
        }
    }

    /// Ends the message: an incomplete code point at the end is an error.
    pub fn finish(&mut self) -> Result<(), ProtocolError> {
        let incomplete = self.pending_len > 0;
        self.reset();
        if incomplete { Err(ProtocolError::InvalidUtf8) } else { Ok(()) }
    }

    /// Forgets any pending bytes (start of a new message).
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }

    /// Whether an incomplete code point is pending.
    pub fn is_pending(&self) -> bool {
        self.pending_len > 0
    }

    /// Stores an incomplete trailing sequence (at most 3 bytes by the UTF-8 rules).
    fn keep(&mut self, tail: Option<&[u8]>) -> Result<(), ProtocolError> {
        match tail {
            Some(tail) if tail.len() <= 3 => {
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len() as u8;
                Ok(())
            }
            _ => Err(ProtocolError::InvalidUtf8),
        }
    }

    /// Completes the pending code point from the front of `bytes`; returns the rest.
    fn complete_pending<'a>(&mut self, bytes: &'a [u8]) -> Result<&'a [u8], ProtocolError> {
        let have = usize::from(self.pending_len);
        let mut tmp = [0u8; 4];
        tmp[..have].copy_from_slice(&self.pending[..have]);
        let take = sequence_len(tmp[0]).saturating_sub(have).min(bytes.len());
        tmp[have..have + take].copy_from_slice(&bytes[..take]);
        match std::str::from_utf8(&tmp[..have + take]) {
            Ok(_) => {
                self.pending_len = 0;
                Ok(&bytes[take..])
            }
            Err(e) if e.error_len().is_none() => {
                // Still incomplete, so `take == bytes.len()`: everything was consumed.
                self.keep(Some(&tmp[..have + take]))?;
                Ok(&[])
            }
            Err(_) => Err(ProtocolError::InvalidUtf8),
        }
    }
}

/// Length of the sequence a (valid) lead byte starts. Pending bytes always start with a valid
/// multi-byte lead byte, so only 2, 3 and 4 occur; anything else maps to 4, which is harmless.
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(pieces: &[&[u8]]) -> Result<(), ProtocolError> {
        let mut v = Utf8Validator::new();
        for p in pieces {
            v.feed(p)?;
        }
        v.finish()
    }

    #[test]
    fn split_code_points_at_every_byte() {
        let text = "aé€😀z κόσμε".as_bytes();
        for cut in 0..=text.len() {
            for cut2 in cut..=text.len() {
                let r = feed_all(&[&text[..cut], &text[cut..cut2], &text[cut2..]]);
                assert_eq!(r, Ok(()), "{cut} {cut2}");
            }
        }
        // One byte at a time.
        let mut v = Utf8Validator::new();
        for b in text {
            v.feed(std::slice::from_ref(b)).unwrap();
        }
        v.finish().unwrap();
    }

    #[test]
    fn fails_fast_on_impossible_prefixes() {
        // Autobahn 6.4.x style: the error is reported on the piece that makes it impossible,
        // before the message ends.
        for (ok, bad) in [
            (&b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"[..], &b"\xf4\x90\x80\x80"[..]),
            (b"", b"\xed\xa0"),
            (b"abc", b"\xf5"),
            (b"", b"\xc0"),
            (b"\xf4", b"\x90"),
            (b"\xed", b"\xa0\x80"),
            (b"\xe0", b"\x80"),
            (b"\xf0", b"\x8f"),
        ] {
            let mut v = Utf8Validator::new();
            v.feed(ok).unwrap();
            assert_eq!(v.feed(bad), Err(ProtocolError::InvalidUtf8), "{ok:?} {bad:?}");
        }
    }

    #[test]
    fn incomplete_at_end_fails_on_finish() {
        let mut v = Utf8Validator::new();
        v.feed(b"ok\xf0\x9f").unwrap();
        assert!(v.is_pending());
        assert_eq!(v.finish(), Err(ProtocolError::InvalidUtf8));
        assert!(!v.is_pending());
        v.feed(b"\xe2\x82").unwrap();
        v.feed(b"\xac").unwrap();
        v.finish().unwrap();
    }
}
