//! Channels, sequencing, history and the cross-core fan-out of published messages.
//!
//! One [`Hub`] is shared by every worker (`Arc<Hub>`). A publish, from any thread:
//!
//! 1. finds or creates the channel (`name -> Arc<Channel>`, dense `u32` ids, at most
//!    `max_channels`);
//! 2. under the channel's lock: assigns the next seq, encodes the envelope **once** into an
//!    `Arc<Published>` (a complete WebSocket frame; the JSON alone is a view of the same
//!    bytes), appends it to the channel's history ring and pushes the same `Arc` into every
//!    worker's inbox, so every core sees a channel's messages in the same order;
//! 3. after releasing the lock, wakes each worker (coalesced: one eventfd write per drain).
//!
//! Workers drain their [`InboxReceiver`], track per channel what they drained in
//! [`WorkerChannels`] (which makes `since` recovery exact, see [`local`]) and clone
//! `Published::ws_frame` into their subscribers' send queues.
//!
//! Nothing here reads a clock: time comes in as `ts_us`, so tests are deterministic.
//!
//! # The sequencer seam
//!
//! Today each channel sequences locally (`next_seq` under its lock). With several nodes
//! (DESIGN: "Coming later"), a broker assigns seqs instead: publishes are forwarded to it, and
//! the broker's consumer thread hands each sequenced message to
//! [`Hub::publish_sequenced`], which takes the same path as a local publish minus the
//! assignment (encode, history, inboxes). Everything downstream of the seq assignment is
//! shared, so recovery and ordering work the same on every node.

#![warn(missing_docs)]

pub mod channel;
pub mod history;
pub mod inbox;
pub mod local;
pub mod pattern;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::{Arc, PoisonError, RwLock};

use tickcast_protocol::envelope::{Data, ErrorCode};
use tickcast_protocol::position::Epoch;

pub use channel::{Channel, ChannelStats, Published, Resume};
pub use history::{Gap, HistoryLimits};
pub use inbox::{DEFAULT_INBOX_CAPACITY, InboxReceiver};
pub use local::{Observed, Replay, WorkerChannels};
pub use pattern::{NameError, Pattern, PatternError, validate_name};

use channel::SeqSource;
use inbox::InboxSender;

/// Hub settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubConfig {
    /// Most channels that may exist (they are never removed). Default 10,000: with the
    /// default history that bounds history memory at ~10 GiB in the worst case (every channel
    /// full of large messages) and ~3.5 GiB with 128-byte messages; lower it, or the history
    /// bytes, on small machines.
    pub max_channels: usize,
    /// Per-channel history bounds.
    pub history: HistoryLimits,
    /// Messages each worker's inbox holds before publishes to it are dropped (and recovered
    /// from history, see [`inbox`]).
    pub inbox_capacity: usize,
    /// The epoch of every channel's history (`docs/protocol.md`, "Positions"): `None` picks a
    /// random one, so a restarted server never passes its new seqs off as the old run's.
    pub epoch: Option<Epoch>,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            max_channels: 10_000,
            history: HistoryLimits::default(),
            inbox_capacity: DEFAULT_INBOX_CAPACITY,
            epoch: None,
        }
    }
}

/// Where a publish landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The channel's id.
    pub channel_id: u32,
    /// The seq assigned.
    pub seq: u64,
}

/// Why a channel could not be found or created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelError {
    /// Not a valid channel name.
    InvalidName(NameError),
    /// The hub holds `max` channels already.
    TooManyChannels {
        /// The limit.
        max: usize,
    },
}

impl ChannelError {
    /// The wire error code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidName(_) => ErrorCode::InvalidChannel,
            // No wire code fits better: it is a server-side limit, not the client's fault.
            Self::TooManyChannels { .. } => ErrorCode::Internal,
        }
    }
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidName(e) => e.fmt(f),
            Self::TooManyChannels { max } => {
                write!(f, "the server holds its maximum of {max} channels; use an existing channel")
            }
        }
    }
}

impl std::error::Error for ChannelError {}

/// Why a publish failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishError {
    /// The channel is invalid or could not be created.
    Channel(ChannelError),
    /// An externally assigned seq was not newer than the channel's last one.
    StaleSequence {
        /// The seq offered.
        seq: u64,
        /// The lowest seq the channel accepts.
        next: u64,
    },
}

impl PublishError {
    /// The wire error code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Channel(e) => e.code(),
            Self::StaleSequence { .. } => ErrorCode::Internal,
        }
    }
}

impl From<ChannelError> for PublishError {
    fn from(e: ChannelError) -> Self {
        Self::Channel(e)
    }
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Channel(e) => e.fmt(f),
            Self::StaleSequence { seq, next } => {
                write!(f, "seq {seq} is stale: the channel expects {next} or later")
            }
        }
    }
}

impl std::error::Error for PublishError {}

/// Hub-wide counters, computed on scrape (nothing shared is written per publish).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Channels that exist.
    pub channels: usize,
    /// Messages published, over all channels.
    pub publishes: u64,
    /// Messages held by all history rings.
    pub history_messages: usize,
    /// Bytes held by all history rings.
    pub history_bytes: usize,
    /// Messages waiting in all inboxes.
    pub inbox_depth: usize,
    /// Messages dropped on full inboxes (per worker, summed).
    pub inbox_dropped: u64,
}

#[derive(Debug, Default)]
struct Registry {
    by_name: HashMap<Arc<str>, Arc<Channel>>,
    /// INVARIANT: `by_id[i].id() == i`.
    by_id: Vec<Arc<Channel>>,
}

/// The channel registry and the publishing end of every worker's inbox.
#[derive(Debug)]
pub struct Hub {
    registry: RwLock<Registry>,
    inboxes: Box<[InboxSender]>,
    config: HubConfig,
    /// The epoch every channel of this hub starts its history in.
    epoch: Epoch,
}

impl Hub {
    /// A hub for `workers` workers, with one inbox each (index `i` for worker `i`). Fails
    /// only if an eventfd cannot be created (descriptor limit).
    pub fn new(workers: usize, config: HubConfig) -> io::Result<(Arc<Self>, Vec<InboxReceiver>)> {
        let mut senders = Vec::with_capacity(workers);
        let mut receivers = Vec::with_capacity(workers);
        for index in 0..workers {
            let (tx, rx) = inbox::inbox(index, config.inbox_capacity)?;
            senders.push(tx);
            receivers.push(rx);
        }
        let config = HubConfig { max_channels: config.max_channels.min(u32::MAX as usize), ..config };
        let epoch = config.epoch.unwrap_or_else(|| Epoch::from_random(rand::random()));
        let hub = Self { registry: RwLock::default(), inboxes: senders.into(), config, epoch };
        Ok((Arc::new(hub), receivers))
    }

    /// The settings.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// The epoch this hub's channels start their history in.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The channel `name`, created if it does not exist yet.
    pub fn channel(&self, name: &str) -> Result<Arc<Channel>, ChannelError> {
        if let Some(channel) = self.get(name) {
            return Ok(channel);
        }
        validate_name(name).map_err(ChannelError::InvalidName)?;
        let mut registry = self.registry.write().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have created it between the read and the write lock.
        if let Some(channel) = registry.by_name.get(name) {
            return Ok(Arc::clone(channel));
        }
        if registry.by_id.len() >= self.config.max_channels {
            return Err(ChannelError::TooManyChannels { max: self.config.max_channels });
        }
        let name: Arc<str> = name.into();
        let id = registry.by_id.len() as u32;
        let channel = Arc::new(Channel::new(Arc::clone(&name), id, self.config.history, self.epoch));
        registry.by_name.insert(name, Arc::clone(&channel));
        registry.by_id.push(Arc::clone(&channel));
        Ok(channel)
    }

    /// The channel `name` if it exists.
    pub fn get(&self, name: &str) -> Option<Arc<Channel>> {
        self.registry.read().unwrap_or_else(PoisonError::into_inner).by_name.get(name).cloned()
    }

    /// The channel with this id, if it exists.
    pub fn channel_by_id(&self, id: u32) -> Option<Arc<Channel>> {
        self.registry.read().unwrap_or_else(PoisonError::into_inner).by_id.get(id as usize).cloned()
    }

    /// Existing channels the pattern covers, in id order (for prefix subscriptions with
    /// `since`). An exact pattern does not create its channel. Costs a scan of every
    /// channel's name for a prefix: fine per subscribe, not per message.
    pub fn channels_matching(&self, pattern: &Pattern) -> Vec<Arc<Channel>> {
        let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
        match pattern {
            Pattern::Exact(name) => registry.by_name.get(&**name).cloned().into_iter().collect(),
            Pattern::Prefix(_) => {
                registry.by_id.iter().filter(|c| pattern.matches(c.name())).cloned().collect()
            }
        }
    }

    /// Publishes `data` on `channel` (created if needed) at server time `ts_us` (µs since
    /// the Unix epoch). `data` must already be what it claims (valid JSON for `Data::Json`).
    pub fn publish(&self, channel: &str, data: Data<'_>, ts_us: u64) -> Result<Receipt, PublishError> {
        let channel = self.channel(channel)?;
        Ok(self.publish_to(&channel, data, ts_us))
    }

    /// Publishes on a channel already looked up (feeds keep their channels: no name lookup,
    /// no registry lock per message).
    pub fn publish_to(&self, channel: &Channel, data: Data<'_>, ts_us: u64) -> Receipt {
        let receipt = self.commit(channel, SeqSource::Local, &data, ts_us);
        self.wake_all();
        // A local seq is always accepted.
        receipt.unwrap_or(Receipt { channel_id: channel.id(), seq: 0 })
    }

    /// The sequencer seam (see the module docs): takes in a message whose seq another party
    /// assigned. `seq` must be newer than the channel's last; a jump past `last + 1` is
    /// reported to workers as a hole (see `Observed::After`) and restarts history.
    pub fn publish_sequenced(
        &self,
        channel: &str,
        seq: u64,
        data: Data<'_>,
        ts_us: u64,
    ) -> Result<Receipt, PublishError> {
        let channel = self.channel(channel)?;
        let receipt = self.commit(&channel, SeqSource::External(seq), &data, ts_us);
        self.wake_all();
        receipt.map_err(|stale| PublishError::StaleSequence { seq, next: stale.next })
    }

    /// Publishes several messages (one result each, in order, into `out`) and wakes the
    /// workers once for all of them. Messages for the same channel get consecutive seqs in
    /// the order given.
    pub fn publish_batch(
        &self,
        items: &[(&str, Data<'_>)],
        ts_us: u64,
        out: &mut Vec<Result<Receipt, PublishError>>,
    ) {
        out.reserve(items.len());
        for (name, data) in items {
            let result = self.channel(name).map_err(PublishError::from).map(|channel| {
                let receipt = self.commit(&channel, SeqSource::Local, data, ts_us);
                receipt.unwrap_or(Receipt { channel_id: channel.id(), seq: 0 })
            });
            out.push(result);
        }
        self.wake_all();
    }

    /// Sequences, encodes, records and pushes one message, all under the channel lock, so
    /// every inbox receives the channel's messages in seq order.
    fn commit(
        &self,
        channel: &Channel,
        source: SeqSource,
        data: &Data<'_>,
        ts_us: u64,
    ) -> Result<Receipt, channel::Stale> {
        let mut state = channel.lock();
        let msg = state.commit(channel, source, data, ts_us)?;
        for inbox in &self.inboxes {
            inbox.push(&msg);
        }
        drop(state);
        Ok(Receipt { channel_id: channel.id(), seq: msg.seq() })
    }

    /// Wakes every worker that has no wake-up pending (an atomic swap each; a syscall only
    /// for a worker that drained since its last wake-up). Done outside the channel lock.
    fn wake_all(&self) {
        for inbox in &self.inboxes {
            inbox.wake();
        }
    }

    /// Counters, summed over channels and inboxes (takes each channel's lock briefly).
    pub fn stats(&self) -> HubStats {
        let channels: Vec<Arc<Channel>> =
            self.registry.read().unwrap_or_else(PoisonError::into_inner).by_id.clone();
        let mut stats = HubStats { channels: channels.len(), ..HubStats::default() };
        for channel in &channels {
            let c = channel.stats();
            stats.publishes += c.publishes;
            stats.history_messages += c.history_messages;
            stats.history_bytes += c.history_bytes;
        }
        for inbox in &self.inboxes {
            stats.inbox_depth += inbox.len();
            stats.inbox_dropped += inbox.dropped();
        }
        stats
    }
}
