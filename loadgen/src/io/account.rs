//! The accounting of what a WebSocket subscriber reads: the protocol's verdict on a frame
//! (`wire::session`, sans-IO) handed to the thread's sink (`measure`): deliveries to
//! `Deliveries`, everything else counted as a control message or as malformed.

use crate::measure::deliveries::Deliveries;
use crate::measure::tally::ThreadStats;
use crate::wire::session::{Frame, OpenStep, Opening, Session};

/// Accounts one frame received once open: a delivery goes to `deliveries` (or, without
/// them, as in `idle`, only counts as received); every other frame counts as a control
/// message, or as malformed. Returns what to send back, if anything.
pub fn frame(
    session: &mut Session,
    text: bool,
    payload: &[u8],
    deliveries: Option<&mut Deliveries>,
    stats: &mut ThreadStats,
    arrival_ns: u64,
) -> Option<&'static [u8]> {
    let ping_reply = session.spec().ping_reply;
    match session.parse(text, payload) {
        Frame::Delivery(body) => {
            match deliveries {
                Some(d) => {
                    d.on_message(stats, body, arrival_ns);
                }
                None => stats.tally.counters.messages_received += 1,
            }
            None
        }
        Frame::Malformed => {
            stats.tally.counters.messages_received += 1;
            stats.tally.counters.malformed += 1;
            None
        }
        frame => {
            stats.tally.counters.messages_received += 1;
            stats.tally.counters.control_messages += 1;
            if frame == Frame::Ping { ping_reply } else { None }
        }
    }
}

/// One frame received during the protocol's opening: counted as received, and as a control
/// message when it is a step of the opening, a keepalive or another control frame (a frame
/// after the opening is complete is left to `frame`).
pub fn opening_frame(
    opening: &mut Opening,
    session: &mut Session,
    text: bool,
    payload: &[u8],
    stats: &mut ThreadStats,
) -> anyhow::Result<OpenStep> {
    if opening.is_open(session) {
        return Ok(OpenStep { send: None, open: true });
    }
    stats.tally.counters.messages_received += 1;
    let step = opening.on_frame(session, text, payload)?;
    stats.tally.counters.control_messages += 1;
    Ok(step)
}
