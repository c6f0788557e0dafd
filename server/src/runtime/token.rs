//! `user_data` tokens: every submitted op carries its kind, the connection slot it belongs to and
//! that slot's generation, so a completion that arrives after the slot was reused is recognised
//! and ignored instead of touching the new connection.

/// What a completion is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpKind {
    /// Multishot accept; the slot field holds the listener index.
    Accept = 1,
    /// Multishot receive into the provided buffer ring.
    Recv = 2,
    /// Vectored send of the connection's queue.
    Send = 3,
    /// `shutdown(SHUT_WR)` after the last frame of a closing connection.
    Shutdown = 4,
    /// Cancellation of a connection's receive before its descriptor is closed.
    Cancel = 5,
    /// Close of the connection's direct descriptor.
    Close = 6,
    /// Cancellation of a listener's accept during shutdown (slot = listener index).
    CancelAccept = 7,
    /// Multishot poll of the inbox eventfd: publishers woke this worker.
    Wake = 8,
}

impl OpKind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Accept,
            2 => Self::Recv,
            3 => Self::Send,
            4 => Self::Shutdown,
            5 => Self::Cancel,
            6 => Self::Close,
            7 => Self::CancelAccept,
            8 => Self::Wake,
            _ => return None,
        })
    }
}

/// Generations are kept to 24 bits so kind + generation + slot fit one `u64`.
pub const GENERATION_MASK: u32 = 0x00ff_ffff;

/// A decoded `user_data` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: OpKind,
    pub generation: u32,
    pub slot: u32,
}

impl Token {
    pub fn new(kind: OpKind, slot: u32, generation: u32) -> Self {
        Self { kind, generation: generation & GENERATION_MASK, slot }
    }

    /// Layout: kind (8 bits) | generation (24 bits) | slot (32 bits). Zero is never produced
    /// (kinds start at 1), so a zeroed SQE's completion cannot be mistaken for one of ours.
    pub fn encode(self) -> u64 {
        (self.kind as u64) << 56 | u64::from(self.generation & GENERATION_MASK) << 32 | u64::from(self.slot)
    }

    /// `None` for values we never submit (e.g. a zeroed SQE).
    pub fn decode(user_data: u64) -> Option<Self> {
        let kind = OpKind::from_u8((user_data >> 56) as u8)?;
        Some(Self { kind, generation: (user_data >> 32) as u32 & GENERATION_MASK, slot: user_data as u32 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for kind in [OpKind::Accept, OpKind::Recv, OpKind::Send, OpKind::Close, OpKind::CancelAccept] {
            for (slot, generation) in [(0, 0), (19_999, 7), (u32::MAX, GENERATION_MASK)] {
                let t = Token::new(kind, slot, generation);
                assert_eq!(Token::decode(t.encode()), Some(t));
            }
        }
    }

    #[test]
    fn generation_wraps_within_mask() {
        let t = Token::new(OpKind::Recv, 3, GENERATION_MASK + 2);
        assert_eq!(t.generation, 1);
        assert_eq!(Token::decode(t.encode()).unwrap().generation, 1);
    }

    #[test]
    fn foreign_values_rejected() {
        assert_eq!(Token::decode(0), None);
        assert_eq!(Token::decode(u64::MAX), None);
    }
}
