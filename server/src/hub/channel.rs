//! One channel: its sequencer state, history ring and latest message, and the encoded form of
//! a published message that every subscriber on every core shares.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use bytes::Bytes;
use tickcast_protocol::envelope::{Data, ws_envelope_frame};
use tickcast_protocol::position::{Epoch, Position};

use super::history::{Gap, History, HistoryLimits};

/// A sequenced message, encoded once. Every inbox, history ring and send queue holds the same
/// `Arc<Published>` (or a clone of its `Bytes`): fan-out never copies the message.
#[derive(Debug)]
pub struct Published {
    channel: Arc<str>,
    channel_id: u32,
    seq: u64,
    /// The history `seq` belongs to (the channel's epoch when it was sequenced).
    epoch: Epoch,
    ts_us: u64,
    ws_frame: Bytes,
    json: Bytes,
    /// The SSE event, encoded by the first worker that has an SSE subscriber for it (most
    /// messages never need one), then shared like the frame.
    sse: OnceLock<Bytes>,
}

/// Memory an entry holds besides its frame bytes: the `Published` itself and its `Arc`
/// counters, plus the `Bytes` shared header (pointer, capacity, refcount, rounded up).
const ENTRY_OVERHEAD: usize = size_of::<Published>() + 2 * size_of::<usize>() + 32;

impl Published {
    /// Encodes the envelope once, as a complete WebSocket text frame; `json` is a view into
    /// the same allocation (no second copy).
    fn encode(channel: &Channel, seq: u64, ts_us: u64, data: &Data<'_>) -> Arc<Self> {
        let (channel_id, epoch) = (channel.id, channel.epoch);
        let channel = &channel.name;
        let ws_frame = ws_envelope_frame(channel, seq, ts_us, data);
        // Server frames are unmasked: the header is 2, 4 or 10 bytes by the 7-bit length code.
        let head_len = match ws_frame[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        let json = ws_frame.slice(head_len..);
        Arc::new(Self {
            channel: Arc::clone(channel),
            channel_id,
            seq,
            epoch,
            ts_us,
            ws_frame,
            json,
            sse: OnceLock::new(),
        })
    }

    /// The channel's name.
    pub fn channel(&self) -> &Arc<str> {
        &self.channel
    }

    /// The channel's dense id (see [`Channel::id`]).
    pub fn channel_id(&self) -> u32 {
        self.channel_id
    }

    /// The message's position in its channel (1 for the first).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Server time when sequenced, µs since the Unix epoch.
    pub fn ts_us(&self) -> u64 {
        self.ts_us
    }

    /// The envelope as a complete server text frame: clone it into send queues.
    pub fn ws_frame(&self) -> &Bytes {
        &self.ws_frame
    }

    /// The envelope JSON alone (for SSE and polling), sharing the frame's allocation.
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    /// The history this message belongs to.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// This message's position: its seq in its epoch.
    pub fn position(&self) -> Position {
        Position { seq: self.seq, epoch: Some(self.epoch) }
    }

    /// The envelope as an SSE event (`id: <channel>:<seq>@<epoch>`, `data: <envelope>`),
    /// encoded once. Streams of several channels send it under an id of their own
    /// (`crate::sse`).
    pub fn sse_event(&self) -> &Bytes {
        self.sse.get_or_init(|| {
            tickcast_protocol::fallback::message_event(&self.channel, self.seq, Some(self.epoch), &self.json)
        })
    }

    /// Approximate memory this message holds: what history limits count.
    pub fn retained_bytes(&self) -> usize {
        self.ws_frame.len() + ENTRY_OVERHEAD
    }
}

/// Counters of one channel, read on scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// The newest assigned seq (0 before the first publish).
    pub last_seq: u64,
    /// Messages published on this channel.
    pub publishes: u64,
    /// Messages held by history.
    pub history_messages: usize,
    /// Bytes held by history.
    pub history_bytes: usize,
}

/// What the channel lock protects: everything that must change atomically with a publish.
#[derive(Debug)]
pub(crate) struct State {
    /// The sequencer: the seq the next local publish gets. Starts at 1.
    next_seq: u64,
    publishes: u64,
    history: History,
    latest: Option<Arc<Published>>,
}

/// A channel. Shared by all workers (`Arc<Channel>`); created by the [`Hub`](super::Hub).
#[derive(Debug)]
pub struct Channel {
    name: Arc<str>,
    id: u32,
    /// The history's epoch: seqs count from 1 within it.
    epoch: Epoch,
    state: Mutex<State>,
}

/// What a client's position means in a channel's current history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// No position: start with the next message.
    Live,
    /// Continue after this seq of the current epoch (a position without an epoch is taken as
    /// the current epoch's, as clients did before epochs).
    After(u64),
    /// The position belongs to another epoch: announce a `reset`, then deliver the current
    /// epoch from its start (what history holds of it).
    Reset,
}

impl Channel {
    pub(crate) fn new(name: Arc<str>, id: u32, limits: HistoryLimits, epoch: Epoch) -> Self {
        let state = State { next_seq: 1, publishes: 0, history: History::new(limits), latest: None };
        Self { name, id, epoch, state: Mutex::new(state) }
    }

    /// The epoch of the channel's history.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// What `position` (a client's, if it gave one) means in this channel's history.
    pub fn resume(&self, position: Option<Position>) -> Resume {
        match position {
            None => Resume::Live,
            Some(Position { epoch: Some(epoch), .. }) if epoch != self.epoch => Resume::Reset,
            Some(Position { seq, .. }) => Resume::After(seq),
        }
    }

    /// The `reset` notice for a client whose position named another epoch.
    pub fn reset_notice(&self) -> tickcast_protocol::envelope::Control {
        let seq = self.last_seq();
        tickcast_protocol::envelope::Control::Reset { channel: self.name.to_string(), epoch: self.epoch, seq }
    }

    /// The name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// A dense id (0, 1, 2, ... in creation order, never reused): index per-worker tables
    /// with it instead of hashing names.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Locks the state. A panic while the lock was held cannot leave it half-updated in a way
    /// that matters (each field is replaced whole), so poisoning is ignored rather than
    /// turned into a panic on every later publish.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The newest assigned seq (0 before the first publish).
    pub fn last_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }

    /// The newest message, for a conflated channel's snapshot. It may be newer than what a
    /// worker has drained from its inbox: see `WorkerChannels::latest` for the snapshot that
    /// cannot duplicate a live message.
    pub fn latest(&self) -> Option<Arc<Published>> {
        self.lock().latest.clone()
    }

    /// Appends to `out` the messages with `since < seq <= upto` that history holds, oldest
    /// first, and returns the range history no longer holds (`since+1..`), if any. `upto`
    /// is clamped to the newest assigned seq; `since >= upto` returns nothing.
    ///
    /// No gap and no duplicate across the switch to live delivery: pass as `upto` the last
    /// seq this worker drained from its inbox for this channel (`WorkerChannels::last_seen`).
    /// Every message of the channel is pushed into every inbox in seq order, under the
    /// channel lock, so everything after `upto` is still in this worker's inbox and arrives
    /// live; everything up to it comes from here or is reported as the gap.
    pub fn replay(&self, since: u64, upto: u64, out: &mut Vec<Arc<Published>>) -> Option<Gap> {
        let state = self.lock();
        state.history.replay(since, upto, state.next_seq - 1, out)
    }

    /// Counters.
    pub fn stats(&self) -> ChannelStats {
        let state = self.lock();
        ChannelStats {
            last_seq: state.next_seq - 1,
            publishes: state.publishes,
            history_messages: state.history.len(),
            history_bytes: state.history.bytes(),
        }
    }
}

/// Where a message's seq comes from: the seam a shared (multi-node) sequencer plugs into.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SeqSource {
    /// This node assigns the channel's next seq (single node).
    Local,
    /// Another party (a broker) already assigned it; it must be newer than the last one.
    External(u64),
}

/// Why an externally sequenced message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stale {
    pub(crate) next: u64,
}

impl State {
    /// Sequences, encodes once and records one message. The caller holds the channel lock and
    /// pushes the result into every inbox before releasing it.
    pub(crate) fn commit(
        &mut self,
        channel: &Channel,
        source: SeqSource,
        data: &Data<'_>,
        ts_us: u64,
    ) -> Result<Arc<Published>, Stale> {
        let seq = match source {
            SeqSource::Local => self.next_seq,
            // u64::MAX is refused so `next_seq` cannot overflow.
            SeqSource::External(seq) if seq >= self.next_seq && seq < u64::MAX => seq,
            SeqSource::External(_) => return Err(Stale { next: self.next_seq }),
        };
        self.next_seq = seq + 1;
        self.publishes += 1;
        let msg = Published::encode(channel, seq, ts_us, data);
        self.history.push(&msg);
        self.latest = Some(Arc::clone(&msg));
        Ok(msg)
    }
}
