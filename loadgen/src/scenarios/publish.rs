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
//!   answered by `published` (ok) or `error` (failed).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tickcast_protocol::frame::OpCode;
use tokio::sync::watch;

use crate::engine::{Ctx, Phase, instant_at, wait_running, wait_stopping};
use crate::plan::{Publisher, Schedule, Target};
use crate::stamp::{self, Stamp};
use crate::time::{SPIN_MAX_NS, now_ns};
use crate::transports::http::{HttpConn, post_request};
use crate::transports::ws::{WsClient, WsWriter};

/// Route of the WebSocket publisher.
pub const WS_PUBLISH_PATH: &str = "/ws";
/// A windowed publisher re-checks the window at least this often (silent loss never
/// acknowledges, so a notification may never come).
const WINDOW_RECHECK: Duration = Duration::from_millis(20);
/// After the last send, answers in flight may take this long (whatever the drain).
const ANSWER_WAIT: Duration = Duration::from_secs(2);
/// How often the publisher looks again whether everything was answered (and delivered).
const SETTLE_RECHECK: Duration = Duration::from_millis(5);

/// Answers counted by the reader task.
#[derive(Default)]
struct Answers {
    ok: Cell<u64>,
    failed: Cell<u64>,
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

/// `--publisher http-pool`: keep-alive connections with at most one request outstanding each
/// (no pipelining); a new connection when every one is busy, up to `POOL_MAX`.
struct HttpPool {
    conns: Vec<(HttpConn, Rc<Cell<ConnState>>)>,
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
            if let Some(i) = self.conns.iter().position(|(_, s)| s.get() == ConnState::Idle) {
                return Ok(i);
            }
            if self.conns.iter().filter(|(_, s)| s.get() != ConnState::Dead).count() < POOL_MAX {
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
        let state = Rc::new(Cell::new(ConnState::Idle));
        let (stream, answers, freed, reader_state) =
            (conn.stream.clone(), self.answers.clone(), self.freed.clone(), state.clone());
        self.readers.push(tokio_uring::spawn(async move {
            let _ = HttpConn::read_responses(stream, |head| {
                answers.count(head.status);
                reader_state.set(ConnState::Idle);
                freed.notify_one();
            })
            .await;
            reader_state.set(ConnState::Dead);
        }));
        self.conns.push((conn, state));
        Ok(self.conns.len() - 1)
    }

    async fn send(&mut self, ctx: &Ctx, path: &str, body: &[u8]) -> std::io::Result<usize> {
        let i = self.idle(ctx).await?;
        post_request(&mut self.request, &ctx.plan.target, path, body);
        let (conn, state) = &self.conns[i];
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
    fn count(&self, status: u16) {
        if (200..300).contains(&status) {
            self.ok.set(self.ok.get() + 1);
        } else {
            self.failed.set(self.failed.get() + 1);
        }
    }
}

impl Sink {
    /// Sends one message; returns the bytes written.
    async fn send(&mut self, ctx: &Ctx, channel: &str, body: &[u8], id: u64) -> std::io::Result<usize> {
        match self {
            Sink::Http(conn, request) => {
                post_request(request, &ctx.plan.target, &format!("/publish/{channel}"), body);
                let (result, buf) = conn.send(std::mem::take(request)).await;
                *request = buf;
                result.map(|()| request.len())
            }
            Sink::Pool(pool) => pool.send(ctx, &format!("/publish/{channel}"), body).await,
            Sink::Ws(writer) => {
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
                    let payload = client.payload(&msg);
                    if contains(payload, br#""type":"published""#) {
                        answers.ok.set(answers.ok.get() + 1);
                    } else if contains(payload, br#""type":"error""#) {
                        answers.failed.set(answers.failed.get() + 1);
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
                let _ = HttpConn::read_responses(stream, move |head| {
                    answers.count(head.status);
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
            ctx.stats.borrow_mut().counters.publish_failed += 1;
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
                if !wait_window(&ctx, k, window, &mut phase, end_ns).await {
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
        let (c, seq) = crate::channels::route(k, names.len());
        stamp::write(&mut body, Stamp { seq, t_ns, src: c as u64 }, plan.workload.message_bytes);
        let channel = names.get(c).map_or("bench", String::as_str);
        match sink.send(&ctx, channel, &body, k + 1).await {
            Ok(n) => {
                sent += 1;
                bytes += n as u64;
            }
            Err(_) => {
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
        let answered = answers.ok.get() + answers.failed.get() >= sent;
        if !settled && answered && (!windowed || all_delivered(&ctx, sent, answers.failed.get())) {
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
    let (ok, failed) = (answers.ok.get(), answers.failed.get());
    let mut stats = ctx.stats.borrow_mut();
    stats.published += sent;
    stats.counters.messages_sent += sent;
    stats.counters.bytes_published += bytes;
    stats.counters.sends_late += late;
    stats.counters.publish_ok += ok;
    stats.counters.publish_failed += failed + sent.saturating_sub(ok + failed);
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
    let subs = w.subscriptions.load(Ordering::Relaxed) as u128;
    let delivered = w.delivered.load(Ordering::Relaxed) as u128;
    let channels = ctx.plan.workload.channels.len().max(1) as u128;
    (subs > 0).then(|| (delivered * channels / subs).min(u64::MAX as u128) as u64)
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
    phase: &mut watch::Receiver<Phase>,
    end_ns: u64,
) -> bool {
    let w = &ctx.window;
    let channels = ctx.plan.workload.channels.len().max(1) as u128;
    let may_send = || {
        let subs = w.subscriptions.load(Ordering::Relaxed) as u128;
        let delivered = w.delivered.load(Ordering::Relaxed) as u128;
        k < window || (k - window) as u128 * subs <= delivered * channels
    };
    loop {
        if now_ns() >= end_ns {
            return false;
        }
        if may_send() {
            return true;
        }
        let notified = w.notify.notified();
        w.waiting.store(true, Ordering::Release);
        if may_send() {
            w.waiting.store(false, Ordering::Release);
            return true;
        }
        tokio::select! {
            () = notified => {}
            () = wait_stopping(phase) => return false,
            () = tokio::time::sleep(WINDOW_RECHECK) => {}
        }
        w.waiting.store(false, Ordering::Release);
    }
}
