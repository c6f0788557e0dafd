//! The publisher of `rate` and `saturate`: one task on a thread of its own in the first worker
//! (`loadgen-0-pub`, sharing the process's CPU affinity), so it keeps its schedule to within
//! tens of microseconds on an idle machine instead of tokio's millisecond timer wheel.
//!
//! Message `k` goes to channel `k mod n` (see `channels.rs`) stamped with that channel's
//! sequence number and its send time: the *scheduled* time on an open-loop schedule (so a stall
//! shows up as latency), the actual time in a windowed run (`saturate`, where there is no
//! schedule to keep). It leaves over one of two sinks, both of which never wait for an answer
//! before the next send (answers are counted by a reader task):
//!
//! * HTTP keep-alive, `POST /publish/<channel>` pipelined (`--publisher http`), or not
//!   (`--publisher http-pool`: a pool of keep-alive connections, one request outstanding on
//!   each);
//! * a WebSocket on `/ws`, `{"type":"publish","channel":..,"data":..,"id":k}` control messages,
//!   answered by `published` (ok) or `error` (refused).
//!
//! Every answer is matched to its message index `k` (pipelined answers come in send order, a
//! pooled connection has one request outstanding, WebSocket answers carry the `id`): the refused
//! ones and those never answered are reported by index, so that their (channel, seq) count
//! neither as expected deliveries nor as loss (`accepted.rs`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tickcast_protocol::frame::OpCode;
use tokio::sync::watch;

use crate::engine::{Ctx, Phase, instant_at, wait_running, wait_stopping};
use crate::io::http::{HttpConn, post_request};
use crate::io::ws::{WsClient, WsWriter};
use crate::measure::accepted::Ranges;
use crate::measure::deliveries::WindowState;
use crate::measure::stamp::{self, Stamp};
use crate::plan::{Publisher, Schedule, Target};
use crate::time::{SPIN_MAX_NS, now_ns};

/// Route of the WebSocket publisher.
pub const WS_PUBLISH_PATH: &str = "/ws";
/// A windowed publisher re-checks the window at least this often (silent loss never
/// acknowledges, so a notification may never come).
const WINDOW_RECHECK: Duration = Duration::from_millis(20);
/// After the last send, answers in flight may take this long (whatever the drain).
const ANSWER_WAIT: Duration = Duration::from_secs(2);
/// How often the publisher looks again whether everything was answered (and delivered).
const SETTLE_RECHECK: Duration = Duration::from_millis(5);

/// The server's answers, matched to message indices (shared by the sender and the readers).
#[derive(Default)]
struct Answers {
    ok: Cell<u64>,
    refused: Cell<u64>,
    /// Indices of the messages sent and not answered yet, in send order.
    outstanding: RefCell<VecDeque<u64>>,
    /// Indices of the refused messages.
    refused_ks: RefCell<Ranges>,
}

enum Sink {
    Http(HttpConn, Vec<u8>),
    Pool(HttpPool),
    Ws(WsWriter),
}

/// Most connections of `--publisher http-pool`.
const POOL_MAX: usize = 32;
/// How long a pooled send waits for a connection to become free before giving up.
const POOL_WAIT_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    Idle,
    Busy,
    /// Closed or failed: not used again.
    Dead,
}

/// A pooled connection's state, and the message its outstanding request carries.
struct PoolConn {
    state: Cell<ConnState>,
    k: Cell<u64>,
}

/// `--publisher http-pool`: keep-alive connections with at most one request outstanding each
/// (no pipelining); a new connection when every one is busy, up to `POOL_MAX`.
struct HttpPool {
    conns: Vec<(HttpConn, Rc<PoolConn>)>,
    request: Vec<u8>,
    answers: Rc<Answers>,
    freed: Rc<tokio::sync::Notify>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl HttpPool {
    /// A connection with no request outstanding (opened if needed).
    async fn idle(&mut self, ctx: &Ctx) -> std::io::Result<usize> {
        let give_up = tokio::time::Instant::now() + POOL_WAIT_MAX;
        loop {
            if let Some(i) = self.conns.iter().position(|(_, s)| s.state.get() == ConnState::Idle) {
                return Ok(i);
            }
            if self.conns.iter().filter(|(_, s)| s.state.get() != ConnState::Dead).count() < POOL_MAX {
                return self.add(ctx).await;
            }
            let freed = self.freed.clone();
            if tokio::time::timeout_at(give_up, freed.notified()).await.is_err() {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
        }
    }

    async fn add(&mut self, ctx: &Ctx) -> std::io::Result<usize> {
        let conn = HttpConn::connect(&ctx.plan.target).await?;
        let state = Rc::new(PoolConn { state: Cell::new(ConnState::Idle), k: Cell::new(0) });
        let (stream, answers, freed, reader_state) =
            (conn.stream.clone(), self.answers.clone(), self.freed.clone(), state.clone());
        self.readers.push(tokio_uring::spawn(async move {
            let _ = HttpConn::read_responses(stream, |head| {
                // One request outstanding per connection: the answer is to its message.
                answers.answer(Some(reader_state.k.get()), accepted(head.status));
                reader_state.state.set(ConnState::Idle);
                freed.notify_one();
            })
            .await;
            reader_state.state.set(ConnState::Dead);
        }));
        self.conns.push((conn, state));
        Ok(self.conns.len() - 1)
    }

    async fn send(&mut self, ctx: &Ctx, path: &str, body: &[u8], k: u64) -> std::io::Result<usize> {
        let i = self.idle(ctx).await?;
        post_request(&mut self.request, &ctx.plan.target, path, body);
        let (conn, state) = &self.conns[i];
        state.k.set(k);
        let state = &state.state;
        state.set(ConnState::Busy);
        let (result, buf) = conn.send(std::mem::take(&mut self.request)).await;
        self.request = buf;
        if result.is_err() {
            state.set(ConnState::Dead);
        }
        result.map(|()| self.request.len())
    }
}

impl Drop for HttpPool {
    fn drop(&mut self) {
        self.readers.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

impl Answers {
    /// Message `k` is about to be sent (registered first: its answer may be read before the
    /// send completes).
    fn sending(&self, k: u64) {
        self.outstanding.borrow_mut().push_back(k);
    }

    /// Sending message `k` failed: no answer will come.
    fn unsent(&self, k: u64) {
        let mut outstanding = self.outstanding.borrow_mut();
        if let Some(i) = outstanding.iter().rposition(|&o| o == k) {
            outstanding.remove(i);
        }
    }

    /// An answer to message `k`, or (`None`) to the oldest outstanding one (answers in send
    /// order); `ok` when the server accepted it. An answer to nothing outstanding is ignored.
    fn answer(&self, k: Option<u64>, ok: bool) {
        let mut outstanding = self.outstanding.borrow_mut();
        let k = match k {
            None => outstanding.pop_front(),
            Some(k) => outstanding.iter().position(|&o| o == k).and_then(|i| outstanding.remove(i)),
        };
        let Some(k) = k else { return };
        if ok {
            self.ok.set(self.ok.get() + 1);
        } else {
            self.refused.set(self.refused.get() + 1);
            self.refused_ks.borrow_mut().insert(k);
        }
    }

    fn all_answered(&self) -> bool {
        self.outstanding.borrow().is_empty()
    }
}

/// An HTTP status the server accepted a publish with.
fn accepted(status: u16) -> bool {
    (200..300).contains(&status)
}

/// What a WebSocket publisher's answer says: `Some((id, ok))` for `published` (ok) or `error`
/// (refused), with the `id` the publish carried if the answer repeats it; `None` for anything
/// else (e.g. a peer's broadcast to the publisher's own connection).
fn ws_answer(payload: &[u8]) -> Option<(Option<u64>, bool)> {
    let ok = if contains(payload, br#""type":"published""#) {
        true
    } else if contains(payload, br#""type":"error""#) {
        false
    } else {
        return None;
    };
    const ID: &[u8] = br#""id":"#;
    let id = payload.windows(ID.len()).position(|w| w == ID).and_then(|at| {
        let digits = payload[at + ID.len()..].trim_ascii_start();
        let digits = &digits[..digits.iter().position(|b| !b.is_ascii_digit()).unwrap_or(digits.len())];
        std::str::from_utf8(digits).ok()?.parse::<u64>().ok()
    });
    Some((id, ok))
}

impl Sink {
    /// Sends message `k` (WebSocket `id` k + 1); returns the bytes written.
    async fn send(&mut self, ctx: &Ctx, channel: &str, body: &[u8], k: u64) -> std::io::Result<usize> {
        match self {
            Sink::Http(conn, request) => {
                post_request(request, &ctx.plan.target, &format!("/publish/{channel}"), body);
                let (result, buf) = conn.send(std::mem::take(request)).await;
                *request = buf;
                result.map(|()| request.len())
            }
            Sink::Pool(pool) => pool.send(ctx, &format!("/publish/{channel}"), body, k).await,
            Sink::Ws(writer) => {
                let id = k + 1;
                let mut op = Vec::with_capacity(body.len() + 64);
                op.extend_from_slice(
                    format!(r#"{{"type":"publish","id":{id},"channel":"{channel}","data":"#).as_bytes(),
                );
                op.extend_from_slice(body);
                op.push(b'}');
                writer.send(OpCode::Text, &op).await
            }
        }
    }
}

/// Connects the sink and starts its answer reader.
async fn open(ctx: &Ctx, answers: Rc<Answers>) -> anyhow::Result<(Sink, tokio::task::JoinHandle<()>)> {
    let plan = &ctx.plan;
    match plan.workload.publisher {
        Publisher::Ws => {
            let target = Target { path: WS_PUBLISH_PATH.to_string(), ..plan.target.clone() };
            let (mut client, _) = WsClient::open(&target, None, 64 * 1024, &[]).await?;
            let writer = client.split_writer();
            let reader = tokio_uring::spawn(async move {
                while let Ok(Some(msg)) = client.next().await {
                    if let Some((id, ok)) = ws_answer(client.payload(&msg)) {
                        // Sent as `id` k + 1; an answer without one is to the oldest publish.
                        answers.answer(id.and_then(|id| id.checked_sub(1)), ok);
                    }
                }
            });
            Ok((Sink::Ws(writer), reader))
        }
        Publisher::HttpPool => {
            let mut pool = HttpPool {
                conns: Vec::new(),
                request: Vec::new(),
                answers,
                freed: Rc::new(tokio::sync::Notify::new()),
                readers: Vec::new(),
            };
            // The first connection now, like the pipelined publisher's.
            pool.add(ctx).await?;
            Ok((Sink::Pool(pool), tokio_uring::spawn(async {})))
        }
        Publisher::Http | Publisher::None => {
            let conn = HttpConn::connect(&plan.target).await?;
            let stream = conn.stream.clone();
            let reader = tokio_uring::spawn(async move {
                // Pipelined: answers come in the order of the requests.
                let _ = HttpConn::read_responses(stream, move |head| {
                    answers.answer(None, accepted(head.status));
                })
                .await;
            });
            Ok((Sink::Http(conn, Vec::new()), reader))
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub async fn publisher(ctx: Rc<Ctx>, mut phase: watch::Receiver<Phase>) {
    let answers = Rc::new(Answers::default());
    let (mut sink, reader) = match open(&ctx, answers.clone()).await {
        Ok(opened) => opened,
        Err(_) => {
            ctx.stats.borrow_mut().tally.counters.publish_failed += 1;
            return;
        }
    };
    let Some(t0_ns) = wait_running(&mut phase).await else {
        reader.abort();
        return;
    };
    let plan = &ctx.plan;
    let end_ns = t0_ns + plan.stop.duration.as_nanos() as u64;
    let limit = plan.stop.count.unwrap_or(u64::MAX);
    let names = &plan.workload.channels;
    let mut body = Vec::new();
    let (mut sent, mut late, mut bytes) = (0u64, 0u64, 0u64);
    // Spin at most 1/8 of the period (and at most SPIN_MAX_NS) before each send, so a fast
    // schedule does not turn into a busy loop on the core the subscribers share.
    let spin_ns = match plan.workload.schedule {
        Schedule::Open { per_second } if per_second > 0.0 => ((1e9 / per_second) as u64 / 8).min(SPIN_MAX_NS),
        _ => 0,
    };
    // When publishing ended (wall clock), if before the loop ran out of messages.
    let mut ended_ns = None;
    for k in 0..limit {
        if *phase.borrow() == Phase::Stopping {
            ended_ns = Some(now_ns());
            break;
        }
        let t_ns = match plan.workload.schedule {
            Schedule::Windowed { window } => {
                if !wait_window(&ctx, k, window, &answers.refused, &mut phase, end_ns).await {
                    ended_ns = Some(now_ns().min(end_ns));
                    break;
                }
                now_ns()
            }
            schedule => {
                let due_ns = t0_ns + schedule.due(k).unwrap_or_default().as_nanos() as u64;
                if due_ns >= end_ns {
                    ended_ns = Some(end_ns);
                    break;
                }
                wait_due(due_ns, spin_ns).await;
                let lag_ns = now_ns().saturating_sub(due_ns);
                if lag_ns > 1_000_000 {
                    late += 1;
                }
                ctx.stats.borrow_mut().record("send_lag", lag_ns, false);
                due_ns
            }
        };
        let (c, seq) = crate::measure::channels::route(k, names.len());
        stamp::write(&mut body, Stamp { seq, t_ns, src: c as u64 }, plan.workload.message_bytes);
        let channel = names.get(c).map_or("bench", String::as_str);
        answers.sending(k);
        match sink.send(&ctx, channel, &body, k).await {
            Ok(n) => {
                sent += 1;
                bytes += n as u64;
            }
            Err(_) => {
                answers.unsent(k);
                ended_ns = Some(now_ns());
                break;
            }
        }
    }
    // `--count` reached: an open-loop phase lasts until the next message would have been due (so
    // rates over it are the schedule's), a windowed one until now.
    let ended_ns = ended_ns.unwrap_or_else(|| match plan.workload.schedule.due(limit) {
        Some(due) => (t0_ns + due.as_nanos() as u64).min(end_ns),
        None => now_ns().min(end_ns),
    });
    // The measured phase ends here; the subscribers' drain only collects late arrivals.
    ctx.publishing.ended(ended_ns);
    // Settle: wait for the answers in flight (at most `ANSWER_WAIT`) and, in a windowed run,
    // for every accepted message to reach every subscriber: then the coordinator may end the
    // drain at once. Until the coordinator stops the run (its drain is bounded), a windowed
    // publisher keeps waiting for deliveries.
    let windowed = matches!(plan.workload.schedule, Schedule::Windowed { .. });
    let answer_deadline = tokio::time::Instant::now() + ANSWER_WAIT;
    let mut settled = false;
    loop {
        let answered = answers.all_answered();
        if !settled && answered && (!windowed || all_delivered(&ctx, sent, answers.refused.get())) {
            settled = true;
            ctx.publishing.settled();
        }
        let stopping = *phase.borrow() == Phase::Stopping;
        if answered && (settled || stopping) {
            break;
        }
        if tokio::time::Instant::now() >= answer_deadline && (settled || stopping || !windowed) {
            break;
        }
        tokio::time::sleep(SETTLE_RECHECK).await;
    }
    reader.abort();
    let (ok, refused) = (answers.ok.get(), answers.refused.get());
    let mut unanswered = Ranges::default();
    for &k in answers.outstanding.borrow().iter() {
        unanswered.insert(k);
    }
    let mut stats = ctx.stats.borrow_mut();
    stats.tally.published += sent;
    stats.tally.counters.messages_sent += sent;
    stats.tally.counters.bytes_published += bytes;
    stats.tally.counters.sends_late += late;
    stats.tally.counters.publish_ok += ok;
    stats.tally.counters.publish_refused += refused;
    stats.tally.counters.publish_unanswered += unanswered.len();
    stats.tally.counters.publish_failed += refused + unanswered.len();
    stats.tally.refused.merge(&answers.refused_ks.borrow());
    stats.tally.unanswered.merge(&unanswered);
}

/// Waits until wall-clock `due_ns`, precisely. This task has a thread of its own (see
/// `engine::run_worker`), so it may block: far from the due time it awaits tokio's timer (which
/// rounds up to whole milliseconds) so its reader and ticker tasks run; the last `COARSE_MARGIN`
/// it sleeps with an absolute `clock_nanosleep` and spins the final `spin_ns` (bounded, see
/// `time::wait_until_ns`).
async fn wait_due(due_ns: u64, spin_ns: u64) {
    const COARSE_MARGIN_NS: u64 = 2_000_000;
    if due_ns > now_ns() + COARSE_MARGIN_NS {
        tokio::time::sleep_until(instant_at(due_ns - COARSE_MARGIN_NS)).await;
    }
    crate::time::wait_until_ns(due_ns, spin_ns);
}

/// Messages fully delivered so far (to every subscriber of their channel, or announced lost), as
/// far as the subscribers' deliveries tell with subscriptions spread evenly over the channels;
/// `None` when nobody subscribes (nothing to wait for).
fn messages_delivered(ctx: &Ctx) -> Option<u64> {
    let w = &ctx.window;
    let subs = w.subscriptions.load(Ordering::Relaxed);
    (subs > 0).then(|| messages_of(w.delivered.load(Ordering::SeqCst), subs, channel_count(ctx)))
}

fn channel_count(ctx: &Ctx) -> u64 {
    ctx.plan.workload.channels.len().max(1) as u64
}

/// Whole messages that `delivered` deliveries make, `subs` subscriptions spread evenly over
/// `channels` channels (`subs` > 0).
fn messages_of(delivered: u64, subs: u64, channels: u64) -> u64 {
    (delivered as u128 * channels as u128 / subs as u128).min(u64::MAX as u128) as u64
}

/// The fewest deliveries that make `messages` whole messages: the inverse of `messages_of`.
fn deliveries_for(messages: u64, subs: u64, channels: u64) -> u64 {
    (messages as u128 * subs as u128).div_ceil(channels as u128).min(u64::MAX as u128) as u64
}

/// Windowed: every one of `published` messages but the `refused` ones reached its subscribers.
fn all_delivered(ctx: &Ctx, published: u64, refused: u64) -> bool {
    messages_delivered(ctx).is_none_or(|d| d.saturating_add(refused) >= published)
}

/// Windowed schedule: waits until message `k` may go, i.e. at most `window` messages are
/// published but not yet delivered to every subscriber. Deliveries are counted over all
/// subscriptions, so "messages outstanding" = (expected deliveries - delivered) / subscriptions
/// per message, with subscriptions spread evenly over the channels. `false`: the run ended.
async fn wait_window(
    ctx: &Ctx,
    k: u64,
    window: u64,
    refused: &Cell<u64>,
    phase: &mut watch::Receiver<Phase>,
    end_ns: u64,
) -> bool {
    let w = &ctx.window;
    // A refused publish will never be delivered: it does not hold the window.
    let may_send = || {
        k < window || messages_delivered(ctx).is_none_or(|d| k - window <= d.saturating_add(refused.get()))
    };
    loop {
        if now_ns() >= end_ns {
            return false;
        }
        if may_send() {
            return true;
        }
        let notified = w.notify.notified();
        // Wake when the deliveries open the window. (Subscriptions that change meanwhile, or a
        // refusal answered meanwhile, are seen at `WINDOW_RECHECK` at the latest.)
        let short = (k - window).saturating_sub(refused.get());
        let subs = w.subscriptions.load(Ordering::Relaxed);
        w.wake_at.store(deliveries_for(short, subs, channel_count(ctx)), Ordering::SeqCst);
        if may_send() {
            w.wake_at.store(WindowState::NOT_WAITING, Ordering::Relaxed);
            return true;
        }
        tokio::select! {
            () = notified => {}
            () = wait_stopping(phase) => return false,
            () = tokio::time::sleep(WINDOW_RECHECK) => {}
        }
        w.wake_at.store(WindowState::NOT_WAITING, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_wakes_the_publisher_at_the_first_delivery_that_opens_it() {
        for (subs, channels) in [(1000, 1), (1000, 3), (7, 2), (1, 1), (3, 5), (999_983, 10)] {
            for messages in [0u64, 1, 2, 9, 1_000, 123_457] {
                let at = deliveries_for(messages, subs, channels);
                assert!(messages_of(at, subs, channels) >= messages, "{subs} {channels} {messages}");
                if at > 0 {
                    assert!(messages_of(at - 1, subs, channels) < messages, "{subs} {channels} {messages}");
                }
            }
        }
        // Saturates instead of overflowing.
        assert_eq!(deliveries_for(u64::MAX, 10, 1), u64::MAX);
    }

    #[test]
    fn pipelined_answers_match_messages_in_send_order() {
        let a = Answers::default();
        for k in 0..6 {
            a.sending(k);
        }
        for ok in [true, false, true, true, false] {
            a.answer(None, ok);
        }
        // Message 5 was never answered; an answer to nothing outstanding is ignored.
        assert_eq!((a.ok.get(), a.refused.get()), (3, 2));
        assert_eq!(a.refused_ks.borrow().0, vec![[1, 1], [4, 4]]);
        assert_eq!(a.outstanding.borrow().iter().copied().collect::<Vec<_>>(), vec![5]);
        assert!(!a.all_answered());
        a.unsent(5);
        a.answer(None, false);
        assert!(a.all_answered());
        assert_eq!(a.refused.get(), 2);
    }

    #[test]
    fn answers_by_index_in_any_order() {
        let a = Answers::default();
        for k in 10..14 {
            a.sending(k);
        }
        a.answer(Some(12), false);
        a.answer(Some(10), true);
        a.answer(Some(12), true); // twice: ignored
        a.answer(Some(99), false); // not ours
        assert_eq!((a.ok.get(), a.refused.get()), (1, 1));
        assert_eq!(a.refused_ks.borrow().0, vec![[12, 12]]);
        assert_eq!(a.outstanding.borrow().iter().copied().collect::<Vec<_>>(), vec![11, 13]);
    }

    #[test]
    fn websocket_answers() {
        let published = br#"{"type":"published","id":3,"channel":"a","seq":8}"#;
        assert_eq!(ws_answer(published), Some((Some(3), true)));
        let error = br#"{"type":"error","id":4,"code":"forbidden","message":"no"}"#;
        assert_eq!(ws_answer(error), Some((Some(4), false)));
        assert_eq!(ws_answer(br#"{"type":"published","channel":"a","seq":1}"#), Some((None, true)));
        assert_eq!(ws_answer(br#"{"type":"published", "pid":9, "id": 12}"#), Some((Some(12), true)));
        assert_eq!(ws_answer(br#"{"type":"error","id":"x"}"#), Some((None, false)));
        assert_eq!(ws_answer(br#"{"lg":[1,2,3]}"#), None);
        assert_eq!(ws_answer(br#"{"type":"subscribed","id":1}"#), None);
    }
}
