//! The `id:` of an SSE stream of several channels.
//!
//! A browser's `EventSource` reconnects by itself and sends back only the id of the last event
//! it saw (`Last-Event-ID`). On a stream of one channel the shared event's id
//! (`channel:seq@epoch`) is enough. On a stream of several channels (or a prefix pattern) every
//! event's id carries the stream's position on *each* of its channels (`a:12@E,b:3@E`), so the
//! last id alone resumes all of them exactly. Such an event is made for its connection: the id
//! line followed by a copy of the shared event's `data:` line (one allocation per delivery,
//! on streams of several channels only; single-channel streams keep sharing the event).
//!
//! Ids are bounded ([`SSE_ID_MAX`]): a stream whose positions no longer fit is told so once
//! (a `resume_limited` notice) and falls back to the shared events, whose ids name their own
//! channel only.

use std::sync::Arc;

use bytes::Bytes;
use tickcast_protocol::envelope::Control;
use tickcast_protocol::fallback::{self, SSE_ID_MAX};
use tickcast_protocol::position::Position;

use crate::hub::Published;

/// One channel of the stream and the stream's position in it.
#[derive(Debug)]
struct Entry {
    channel_id: u32,
    name: Arc<str>,
    position: Position,
}

/// A stream's position on each of its channels, in the order they joined the stream.
#[derive(Debug, Default)]
pub struct SseIds {
    entries: Vec<Entry>,
    /// Bytes of the id text (`a:12@E,b:3@E`).
    id_len: usize,
    /// The positions no longer fit an id: events carry their own channel's position only.
    limited: bool,
    /// Reused for building ids (empty between calls).
    scratch: Vec<u8>,
}

/// The frame to queue for one message on a stream.
#[derive(Debug)]
pub enum SseFrame {
    /// The stream's own event (its id resumes every channel).
    Own(Bytes),
    /// The shared event.
    Shared,
    /// The shared event, and before it, once, the `resume_limited` notice to send.
    SharedAfterNotice(Control),
}

impl SseIds {
    /// Records where the stream starts in a channel: the position the client has. Returns the
    /// notice to send when this made the stream's ids too long.
    pub fn start(&mut self, channel_id: u32, name: &Arc<str>, position: Position) -> Option<Control> {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.channel_id == channel_id) {
            entry.position = position;
            self.id_len = self.measure();
            return self.check_limit();
        }
        self.entries.push(Entry { channel_id, name: Arc::clone(name), position });
        self.id_len = self.measure();
        self.check_limit()
    }

    /// The frame for `msg`, after recording it as the stream's position in its channel (a
    /// message of a channel the stream did not have yet, through a prefix pattern, adds it).
    pub fn frame(&mut self, msg: &Published) -> SseFrame {
        if self.limited {
            return SseFrame::Shared;
        }
        let position = msg.position();
        let notice = match self.entries.iter_mut().find(|e| e.channel_id == msg.channel_id()) {
            Some(entry) => {
                // Never back: a conflation snapshot may be older than where the stream starts.
                if entry.position.epoch != position.epoch || entry.position.seq < position.seq {
                    entry.position = position;
                    self.id_len = self.measure();
                }
                None
            }
            None => self.start(msg.channel_id(), msg.channel(), position),
        };
        if let Some(notice) = notice {
            return SseFrame::SharedAfterNotice(notice);
        }
        let mut id = std::mem::take(&mut self.scratch);
        fallback::write_stream_id(&mut id, self.entries.iter().map(|e| (&*e.name, e.position)));
        let event = fallback::event_with_id(&id, msg.sse_event());
        id.clear();
        self.scratch = id;
        SseFrame::Own(event)
    }

    /// Whether ids carry every channel (false once the stream was told otherwise).
    pub fn is_complete(&self) -> bool {
        !self.limited
    }

    /// Bytes of the id text, counted without writing it.
    fn measure(&self) -> usize {
        let commas = self.entries.len().saturating_sub(1);
        commas + self.entries.iter().map(|e| position_len(&e.name, e.position)).sum::<usize>()
    }

    fn check_limit(&mut self) -> Option<Control> {
        if self.limited || self.id_len <= SSE_ID_MAX {
            return None;
        }
        self.limited = true;
        self.entries = Vec::new();
        self.scratch = Vec::new();
        Some(Control::ResumeLimited {
            message: format!(
                "this stream's positions no longer fit an event id ({SSE_ID_MAX} bytes): from now on \
                 an event's id names its own channel only; keep the last seq per channel and \
                 reconnect with since="
            ),
        })
    }
}

/// Bytes of `channel:seq[@epoch]`.
fn position_len(channel: &str, position: Position) -> usize {
    let digits = position.seq.checked_ilog10().map_or(1, |d| d as usize + 1);
    channel.len() + 1 + digits + position.epoch.map_or(0, |e| 1 + e.as_str().len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{Hub, HubConfig};
    use tickcast_protocol::envelope::Data;
    use tickcast_protocol::position::Epoch;

    fn hub() -> Arc<Hub> {
        let epoch = Epoch::parse("E");
        Hub::new(1, HubConfig { epoch, ..HubConfig::default() }).unwrap().0
    }

    fn published(hub: &Hub, channel: &str) -> Arc<Published> {
        hub.publish(channel, Data::Text("x"), 1).unwrap();
        let channel = hub.get(channel).unwrap();
        channel.latest().unwrap()
    }

    fn text(frame: SseFrame) -> String {
        let SseFrame::Own(bytes) = frame else { panic!("{frame:?}") };
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn ids_carry_every_channel_of_the_stream() {
        let hub = hub();
        let (a, b) = (hub.channel("a").unwrap(), hub.channel("b").unwrap());
        let mut ids = SseIds::default();
        let e = Epoch::parse("E");
        assert!(ids.start(a.id(), a.name(), Position { seq: 0, epoch: e }).is_none());
        assert!(ids.start(b.id(), b.name(), Position { seq: 0, epoch: e }).is_none());
        let m = published(&hub, "a");
        let event = text(ids.frame(&m));
        assert!(event.starts_with("id: a:1@E,b:0@E\ndata: {\"channel\":\"a\",\"seq\":1,"), "{event}");
        assert!(event.ends_with("}\n\n"));
        let m = published(&hub, "b");
        assert!(text(ids.frame(&m)).starts_with("id: a:1@E,b:1@E\n"));
        // A channel met through a pattern joins the id; an older message does not move it back.
        let c = published(&hub, "news.x");
        assert!(text(ids.frame(&c)).starts_with("id: a:1@E,b:1@E,news.x:1@E\n"));
        let a2 = published(&hub, "a");
        assert!(text(ids.frame(&a2)).starts_with("id: a:2@E,"));
        assert!(text(ids.frame(&m)).starts_with("id: a:2@E,b:1@E,"));
        assert!(ids.is_complete());
        let mut text = Vec::new();
        fallback::write_stream_id(&mut text, ids.entries.iter().map(|e| (&*e.name, e.position)));
        assert_eq!(ids.measure(), text.len());
    }

    #[test]
    fn ids_that_would_pass_the_limit_fall_back_with_one_notice() {
        let hub = hub();
        let mut ids = SseIds::default();
        let mut notices = 0;
        for i in 0..200 {
            let name = format!("channel.with.a.long.name.{i:03}");
            let channel = hub.channel(&name).unwrap();
            if ids.start(channel.id(), channel.name(), Position::seq(0)).is_some() {
                notices += 1;
            }
        }
        assert_eq!(notices, 1);
        assert!(!ids.is_complete());
        let m = published(&hub, "channel.with.a.long.name.000");
        assert!(matches!(ids.frame(&m), SseFrame::Shared));

        // Growing past it through a pattern: the notice comes with the frame, once.
        let mut ids = SseIds::default();
        let mut seen = 0;
        for i in 0..200 {
            let m = published(&hub, &format!("channel.with.a.long.name.{i:03}"));
            match ids.frame(&m) {
                SseFrame::SharedAfterNotice(Control::ResumeLimited { .. }) => seen += 1,
                SseFrame::Own(bytes) => assert!(bytes.len() < SSE_ID_MAX + 200),
                _ => {}
            }
        }
        assert_eq!(seen, 1);
    }
}
