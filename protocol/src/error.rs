//! Close codes (RFC 6455 §7.4) and protocol errors, one variant per rule of the RFC, so mapping an
//! error to the close code that fails the connection is a single `match`.

use std::fmt;

/// A WebSocket close status code (RFC 6455 §7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: no status code was present. Reported locally, never sent on the wire.
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: the connection was closed without a close frame. Never sent on the wire.
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: a message's data was inconsistent with its type (invalid UTF-8 in a text message).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: the message violates the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a frame or message is too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected the server to negotiate an extension.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later (used for overload and slow consumers).
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: bad gateway.
    pub const BAD_GATEWAY: Self = Self(1014);

    /// Whether this code may appear in a close frame on the wire (§7.4.1, §7.4.2 and the IANA
    /// registry): 1000–1003, 1007–1014 and the application/private range 3000–4999. Everything
    /// else (1004–1006, 1015, below 1000, 1016–2999, 5000 and above) is invalid.
    pub const fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A violation of RFC 6455 by the peer (or of a configured limit). The connection must be failed
/// with [`ProtocolError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// RSV1–3 set without a negotiated extension (§5.2).
    ReservedBitsSet,
    /// Opcode 3–7 or 0xB–0xF (§5.2).
    UnknownOpcode(u8),
    /// A control frame with a payload longer than 125 bytes (§5.5).
    ControlFrameTooLong,
    /// A control frame without FIN (§5.5).
    FragmentedControlFrame,
    /// A 64-bit payload length with the most significant bit set (§5.2).
    LengthTopBitSet,
    /// A payload length not encoded in the minimal number of bytes (§5.2).
    NonMinimalLength,
    /// A client frame without a mask (§5.1): the server must fail the connection.
    UnmaskedClientFrame,
    /// A server frame with a mask (§5.1): the client must fail the connection.
    MaskedServerFrame,
    /// A frame larger than the configured maximum frame size (1009).
    FrameTooLarge,
    /// A message larger than the configured maximum message size (1009).
    MessageTooLarge,
    /// A continuation frame with no fragmented message in progress (§5.4).
    UnexpectedContinuation,
    /// A new text/binary frame while a fragmented message is still in progress (§5.4).
    ExpectedContinuation,
    /// A text message that is not valid UTF-8 (§8.1), detected as early as possible.
    InvalidUtf8,
    /// A close frame with a 1-byte payload (§5.5.1).
    InvalidClosePayload,
    /// A close frame with a status code that may not be sent (§7.4).
    InvalidCloseCode(u16),
    /// A close frame whose reason is not valid UTF-8 (§5.5.1).
    InvalidCloseReason,
}

impl ProtocolError {
    /// The close code to fail the connection with (§7.4.1).
    pub const fn close_code(&self) -> CloseCode {
        match self {
            Self::InvalidUtf8 | Self::InvalidCloseReason => CloseCode::INVALID_PAYLOAD,
            Self::FrameTooLarge | Self::MessageTooLarge => CloseCode::MESSAGE_TOO_BIG,
            Self::ReservedBitsSet
            | Self::UnknownOpcode(_)
            | Self::ControlFrameTooLong
            | Self::FragmentedControlFrame
            | Self::LengthTopBitSet
            | Self::NonMinimalLength
            | Self::UnmaskedClientFrame
            | Self::MaskedServerFrame
            | Self::UnexpectedContinuation
            | Self::ExpectedContinuation
            | Self::InvalidClosePayload
            | Self::InvalidCloseCode(_) => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedBitsSet => f.write_str("reserved bits set without a negotiated extension"),
            Self::UnknownOpcode(op) => write!(f, "unknown opcode {op:#x}"),
            Self::ControlFrameTooLong => f.write_str("control frame payload longer than 125 bytes"),
            Self::FragmentedControlFrame => f.write_str("fragmented control frame"),
            Self::LengthTopBitSet => f.write_str("64-bit payload length with the top bit set"),
            Self::NonMinimalLength => f.write_str("payload length not minimally encoded"),
            Self::UnmaskedClientFrame => f.write_str("unmasked frame from a client"),
            Self::MaskedServerFrame => f.write_str("masked frame from a server"),
            Self::FrameTooLarge => f.write_str("frame too large"),
            Self::MessageTooLarge => f.write_str("message too large"),
            Self::UnexpectedContinuation => f.write_str("continuation frame without a message"),
            Self::ExpectedContinuation => f.write_str("new message inside a fragmented message"),
            Self::InvalidUtf8 => f.write_str("invalid UTF-8 in a text message"),
            Self::InvalidClosePayload => f.write_str("close frame with a 1-byte payload"),
            Self::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            Self::InvalidCloseReason => f.write_str("close reason is not valid UTF-8"),
        }
    }
}

impl std::error::Error for ProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendable_close_codes_follow_section_7_4() {
        let valid = |c: u16| CloseCode(c).is_sendable();
        for c in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014] {
            assert!(valid(c), "{c}");
        }
        for c in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert!(!valid(c), "{c}");
        }
        assert!(valid(3000) && valid(3999) && valid(4000) && valid(4999));
    }

    #[test]
    fn close_code_mapping() {
        assert_eq!(ProtocolError::InvalidUtf8.close_code(), CloseCode(1007));
        assert_eq!(ProtocolError::InvalidCloseReason.close_code(), CloseCode(1007));
        assert_eq!(ProtocolError::MessageTooLarge.close_code(), CloseCode(1009));
        assert_eq!(ProtocolError::FrameTooLarge.close_code(), CloseCode(1009));
        assert_eq!(ProtocolError::UnknownOpcode(3).close_code(), CloseCode(1002));
        assert_eq!(ProtocolError::InvalidCloseCode(1005).close_code(), CloseCode(1002));
        assert_eq!(ProtocolError::UnknownOpcode(3).to_string(), "unknown opcode 0x3");
    }
}
