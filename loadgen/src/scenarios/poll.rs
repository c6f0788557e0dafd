//! `rate` subscribers on polling (`GET /poll`) and long-polling (`GET /longpoll`), one
//! keep-alive connection per client, one request at a time.
//!
//! * Opening = TCP connect + a priming request without `since` (long-poll: `timeout=0`) whose
//!   answer only tells where to resume (`next`); what it carries is history, not deliveries.
//! * `poll` is open loop: client `i`'s request `k` is due at `t0 + (i / clients + k) *
//!   interval`, fixed by the plan. A request due while the previous answer is still
//!   outstanding goes out as soon as that answer arrives (`polls_late`; missed slots are
//!   skipped, not bunched). Latency is measured from the publish schedule, so the wait until
//!   the next poll is part of it and a slow server shows up as latency.
//! * `longpoll` sends the next request as soon as an answer arrives; the time between an answer
//!   and the next request is recorded as `exposure` (messages published then wait for it).
//!
//! Answers are parsed by `wire::poll` (tolerant; a malformed or non-200 answer is counted
//! as `malformed` and skipped). Every byte both ways counts, HTTP heads included.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, watch};

use crate::engine::{Ctx, OPEN_TIMEOUT, Phase, ReadyCounter, instant_at, wait_running, wait_stopping};
use crate::io::http::{HttpClient, get_request};
use crate::io::ws::OpenTimes;
use crate::measure::deliveries::Deliveries;
use crate::plan::{Target, Transport};
use crate::wire::poll::{self as answer, Since};

/// Reconnects in a row before giving up on a client.
const RECONNECTS_MAX: u32 = 5;
/// Pause after a failed long-poll answer, so an erroring server is not hammered.
const ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The request path of the next poll.
fn poll_path(base: &str, since: &Since, longpoll_timeout: Option<u64>) -> String {
    let mut path = base.to_string();
    let query = since.to_query();
    if !query.is_empty() {
        path.push_str(&format!("&since={query}"));
    }
    if let Some(t) = longpoll_timeout {
        path.push_str(&format!("&timeout={t}"));
    }
    path
}

async fn open(
    target: &Target,
    source: Option<IpAddr>,
    path: &str,
    longpoll: bool,
) -> anyhow::Result<((HttpClient, Since), OpenTimes)> {
    let began = Instant::now();
    let mut client = HttpClient::connect(target, source).await?;
    let connected = Instant::now();
    let mut since = Since::default();
    let mut request = Vec::new();
    get_request(&mut request, target, &poll_path(path, &since, longpoll.then_some(0)), "");
    client.send(request).await.0?;
    let (status, body) =
        client.read_response().await?.ok_or_else(|| anyhow::anyhow!("server closed the priming poll"))?;
    anyhow::ensure!(status == 200, "priming poll answered {status}");
    since.advance(&answer::parse(&body)?);
    Ok(((client, since), OpenTimes::until_now(began, connected)))
}

pub async fn run(
    ctx: &Ctx,
    index: u64,
    source: Option<IpAddr>,
    permit: OwnedSemaphorePermit,
    ready: &ReadyCounter,
    mut phase: watch::Receiver<Phase>,
) {
    let plan = &ctx.plan;
    let longpoll = plan.workload.transport == Transport::Longpoll;
    let (subs, path) = super::subscription(ctx, index);
    let opened = tokio::time::timeout(OPEN_TIMEOUT, open(&plan.target, source, &path, longpoll)).await;
    let client = super::opened_client(ctx, opened);
    drop(permit);
    ready.finished();
    let Some((mut client, mut since)) = client else {
        return;
    };
    ctx.stats.borrow_mut().tally.counters.requests += 1;
    // Subscribed channels the priming answer did not place start from the beginning.
    for &c in &subs {
        if !since.0.contains_key(&plan.workload.channels[c]) {
            since.raise(&plan.workload.channels[c], tickcast_protocol::position::Position::seq(0));
        }
    }
    let mut deliveries = super::deliveries(ctx, index);
    let cut_off = match wait_running(&mut phase).await {
        Some(t0_ns) => {
            let at = Resume { source, path: &path };
            poll_loop(ctx, index, &mut client, &mut since, &mut deliveries, &mut phase, t0_ns, at).await
        }
        None => false,
    };
    let mut stats = ctx.stats.borrow_mut();
    stats.tally.counters.bytes_received += client.bytes_received;
    stats.tally.counters.bytes_sent += client.bytes_sent;
    deliveries.finish(&mut stats);
    if cut_off {
        stats.tally.counters.disconnected += 1;
    }
}

/// Where a client polls from and what: reconnects use the same source address.
struct Resume<'a> {
    source: Option<IpAddr>,
    path: &'a str,
}

/// Polls until the run stops; returns whether the server cut the client off for good.
#[allow(clippy::too_many_arguments)]
async fn poll_loop(
    ctx: &Ctx,
    index: u64,
    client: &mut HttpClient,
    since: &mut Since,
    deliveries: &mut Deliveries,
    phase: &mut watch::Receiver<Phase>,
    t0_ns: u64,
    at: Resume<'_>,
) -> bool {
    let path = at.path;
    let plan = &ctx.plan;
    let longpoll = plan.workload.transport == Transport::Longpoll;
    let interval_ns = plan.workload.poll.interval.as_nanos().max(1) as u64;
    let offset_ns = (interval_ns as u128 * index as u128 / plan.clients.count.max(1) as u128) as u64;
    let timeout = longpoll.then_some(plan.workload.poll.longpoll_timeout.as_secs());
    let mut k = 0u64;
    let mut last_answer_ns = None::<u64>;
    let mut request = Vec::new();
    let mut failures = 0;
    loop {
        if !longpoll {
            // The first poll waits for its slot (the priming answer came before the start);
            // later ones are ready when the previous answer has been handled, i.e. now.
            let ready_ns = if k == 0 { 0 } else { crate::time::now_ns() };
            let slot = next_slot(ready_ns, t0_ns + offset_ns, interval_ns, k);
            if slot.late {
                ctx.stats.borrow_mut().tally.counters.polls_late += 1;
            } else {
                tokio::select! {
                    biased;
                    () = wait_stopping(phase) => return false,
                    () = tokio::time::sleep_until(instant_at(slot.due_ns)) => {}
                }
            }
            k = slot.next_k;
        }
        get_request(&mut request, &plan.target, &poll_path(path, since, timeout), "");
        let sent_ns = crate::time::now_ns();
        if let Some(answered) = last_answer_ns {
            ctx.stats.borrow_mut().record("exposure", sent_ns.saturating_sub(answered), false);
        }
        let (sent, buf) = client.send(std::mem::take(&mut request)).await;
        request = buf;
        let response = match sent {
            Ok(()) => tokio::select! {
                biased;
                () = wait_stopping(phase) => return false,
                response = client.read_response() => response,
            },
            Err(e) => Err(e.into()),
        };
        ctx.stats.borrow_mut().tally.counters.requests += 1;
        let (status, body) = match response {
            Ok(Some(answer)) => answer,
            Ok(None) | Err(_) => {
                // The connection ended: reconnect (keep-alive connections may be closed by
                // the server at any time), a bounded number of times in a row.
                failures += 1;
                if failures > RECONNECTS_MAX || *phase.borrow() == Phase::Stopping {
                    return failures > RECONNECTS_MAX;
                }
                ctx.stats.borrow_mut().tally.counters.reconnects += 1;
                tokio::time::sleep(ERROR_PAUSE).await;
                if let Ok(c) = HttpClient::connect(&plan.target, at.source).await {
                    let old = std::mem::replace(client, c);
                    client.bytes_received += old.bytes_received;
                    client.bytes_sent += old.bytes_sent;
                }
                continue;
            }
        };
        failures = 0;
        last_answer_ns = longpoll.then_some(client.last_read_ns);
        let now = client.last_read_ns;
        if !on_answer(ctx, deliveries, since, status, &body, now) && longpoll {
            tokio::time::sleep(ERROR_PAUSE).await;
        }
    }
}

/// When an open-loop poll goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    /// Send at this time (wall clock ns)...
    due_ns: u64,
    /// ... or at once: the previous answer arrived after this poll was due.
    late: bool,
    /// The slot index of the poll after this one.
    next_k: u64,
}

/// The poll after slot `k - 1`, ready to go at `now_ns` (the previous answer has been handled),
/// for slots `first_ns + k * interval_ns`. A poll whose
/// slot passed while the previous answer was outstanding is late and leaves at once; slots that
/// passed meanwhile are skipped, so polls never bunch up. (Only the previous answer makes a poll
/// late: the timer's own slack, about a millisecond, is in the latency, not counted here.)
fn next_slot(now_ns: u64, first_ns: u64, interval_ns: u64, k: u64) -> Slot {
    let due_ns = first_ns + k * interval_ns;
    if now_ns <= due_ns {
        return Slot { due_ns, late: false, next_k: k + 1 };
    }
    let passed = (now_ns - first_ns) / interval_ns;
    Slot { due_ns: now_ns, late: true, next_k: passed + 1 }
}

/// Accounts one answer; `false` if it was unusable.
fn on_answer(
    ctx: &Ctx,
    deliveries: &mut Deliveries,
    since: &mut Since,
    status: u16,
    body: &[u8],
    now: u64,
) -> bool {
    let mut stats = ctx.stats.borrow_mut();
    let parsed = if status == 200 { answer::parse(body).ok() } else { None };
    let Some(answer) = parsed else {
        stats.tally.counters.malformed += 1;
        return false;
    };
    if answer.messages.is_empty() {
        stats.tally.counters.empty_responses += 1;
    }
    // Resets first: the messages after them are the new history's.
    for r in &answer.resets {
        deliveries.on_reset_notice(&mut stats, r.get().as_bytes());
    }
    for m in &answer.messages {
        deliveries.on_message(&mut stats, m.get().as_bytes(), now);
    }
    for g in &answer.gaps {
        deliveries.on_gap_notice(&mut stats, g.get().as_bytes());
    }
    since.advance(&answer);
    true
}

#[cfg(test)]
mod tests {
    use super::{Slot, next_slot};

    #[test]
    fn a_poll_waits_for_its_slot_and_is_late_only_after_a_slow_answer() {
        // Slots at 1000, 1100, 1200, ...: the answer to poll 0 came at 1050, poll 1 waits.
        assert_eq!(next_slot(1050, 1000, 100, 1), Slot { due_ns: 1100, late: false, next_k: 2 });
        // Exactly on time is not late.
        assert_eq!(next_slot(1100, 1000, 100, 1), Slot { due_ns: 1100, late: false, next_k: 2 });
        // The answer to poll 0 came at 1101: poll 1 leaves at once, late; poll 2 keeps its slot.
        assert_eq!(next_slot(1101, 1000, 100, 1), Slot { due_ns: 1101, late: true, next_k: 2 });
        // It came at 1350: slots 1 to 3 passed; one late poll now, the next at slot 4 (1400).
        assert_eq!(next_slot(1350, 1000, 100, 1), Slot { due_ns: 1350, late: true, next_k: 4 });
        assert_eq!(next_slot(1360, 1000, 100, 4), Slot { due_ns: 1400, late: false, next_k: 5 });
    }
}
