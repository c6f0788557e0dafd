//! Per-worker inboxes: how a published message reaches every core, and how the core learns
//! there is something to read.
//!
//! Each worker has one bounded `crossbeam_channel` of `Arc<Published>` and one eventfd. A
//! publisher pushes (never blocks), then wakes the worker at most once per drain:
//!
//! ```text
//! publisher: push(msg);  if !pending.swap(true) { write(eventfd, 1) }
//! worker:    (ring sees the eventfd readable)  begin_drain(): pending.swap(false);  drain(..)
//! ```
//!
//! No lost wake-up: `begin_drain` clears `pending` *before* reading the queue. A push that
//! the drain misses happened after the clear in `pending`'s modification order, so its
//! publisher (or an earlier one after the clear) finds `pending == false` and writes the
//! eventfd again. A push that precedes the clear is visible to the drain: the swaps are
//! `AcqRel` read-modify-writes, so the push happens-before the drain's reads.
//!
//! # Bound policy
//!
//! Bounded, with drop on full. Publishing must never block a worker thread (a worker that
//! publishes for its client could otherwise wait on another worker that waits on it), and an
//! unbounded queue lets one stalled worker grow memory without limit. A bounded crossbeam
//! channel is also an array allocated once, so a push never allocates (the unbounded one
//! allocates a block every 31 messages per inbox).
//!
//! When an inbox is full the message is not pushed to *that* worker and its `dropped`
//! counter grows. Loss is still never silent: the worker sees a jump in the channel's seqs
//! when it drains the next message (`WorkerChannels::observe`) and fills the hole from the
//! channel's history, or sends `gap` notices for what history no longer holds. A full inbox
//! means a worker stopped draining for `capacity` publishes (65,536 by default: tens of ms
//! at a million publishes per second), so this is an overload path, not a normal one.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

use super::channel::Published;
use crate::runtime::sys;

/// Default inbox capacity in messages per worker (16 bytes a slot: 1 MiB per worker).
pub const DEFAULT_INBOX_CAPACITY: usize = 1 << 16;

/// State shared by an inbox's publishers and its worker. Aligned to its own cache lines so
/// one worker's `pending` flag does not share a line with another's.
#[repr(align(128))]
#[derive(Debug)]
struct Shared {
    /// A wake-up was written to the eventfd and the worker has not begun draining since.
    pending: AtomicBool,
    /// Messages not pushed because the inbox was full.
    dropped: AtomicU64,
    eventfd: OwnedFd,
}

impl Shared {
    /// Writes the eventfd unless a wake-up is already pending.
    fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            // The only failures are EAGAIN (the counter would pass 2^64-2, i.e. billions of
            // unread wake-ups: the worker is woken already) and EBADF (a bug: the fd lives
            // as long as `self`). Neither can be handled better by the publisher.
            let result = sys::eventfd_signal(&self.eventfd);
            debug_assert!(result.is_ok(), "eventfd write failed: {result:?}");
        }
    }
}

/// The publishing end of one worker's inbox, held by the hub.
#[derive(Debug)]
pub(crate) struct InboxSender {
    tx: Sender<Arc<Published>>,
    shared: Arc<Shared>,
}

impl InboxSender {
    /// Pushes a reference to `msg` without blocking. On a full inbox the message is dropped
    /// for this worker and counted (see the module docs).
    pub(crate) fn push(&self, msg: &Arc<Published>) {
        match self.tx.try_send(Arc::clone(msg)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The worker is gone (shutting down): nobody left to deliver to.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Wakes the worker unless a wake-up is already pending (coalescing).
    pub(crate) fn wake(&self) {
        self.shared.wake();
    }

    /// Messages dropped on a full inbox.
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Messages waiting.
    pub(crate) fn len(&self) -> usize {
        self.tx.len()
    }
}

/// A worker's end of its inbox. Owned by that worker.
#[derive(Debug)]
pub struct InboxReceiver {
    rx: Receiver<Arc<Published>>,
    shared: Arc<Shared>,
    index: usize,
}

impl InboxReceiver {
    /// The worker this inbox belongs to (0-based, as passed to `Hub::new`).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The eventfd that becomes readable when messages arrive. Non-blocking and
    /// close-on-exec; owned by the inbox (do not close it). A ring should wait on it with a
    /// (multishot) poll and then call [`read_eventfd`](Self::read_eventfd), or read it with
    /// a read op: note that io_uring honours `O_NONBLOCK`, so a read op on an empty counter
    /// completes with `-EAGAIN` instead of waiting.
    pub fn eventfd(&self) -> RawFd {
        self.shared.eventfd.as_raw_fd()
    }

    /// Reads and resets the eventfd counter: the number of wake-ups written since the last
    /// read (0 if none). Optional for a ring that reads the eventfd itself.
    pub fn read_eventfd(&self) -> io::Result<u64> {
        sys::eventfd_read(&self.shared.eventfd)
    }

    /// Call once per wake-up, before [`drain`](Self::drain): re-enables wake-ups, so a
    /// publish that races with the drain wakes the worker again instead of being stranded.
    pub fn begin_drain(&self) {
        self.shared.pending.swap(false, Ordering::AcqRel);
    }

    /// Moves up to `max` messages into `out` (per channel in seq order) and returns how many.
    /// If it stops at `max` with more waiting, it re-arms the wake-up itself, so the rest is
    /// never stranded until the next publish: the eventfd fires again and the next loop turn
    /// continues.
    pub fn drain(&self, out: &mut Vec<Arc<Published>>, max: usize) -> usize {
        for n in 0..max {
            match self.rx.try_recv() {
                Ok(msg) => out.push(msg),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return n,
            }
        }
        if !self.rx.is_empty() {
            self.shared.wake();
        }
        max
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Messages this worker missed because its inbox was full (see the module docs).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

/// Creates the inbox of worker `index`.
pub(crate) fn inbox(index: usize, capacity: usize) -> io::Result<(InboxSender, InboxReceiver)> {
    let shared = Arc::new(Shared {
        pending: AtomicBool::new(false),
        dropped: AtomicU64::new(0),
        eventfd: sys::eventfd()?,
    });
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    Ok((InboxSender { tx, shared: Arc::clone(&shared) }, InboxReceiver { rx, shared, index }))
}
