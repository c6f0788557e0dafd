//! `/poll` and `/longpoll`: answers built from the channels' history rings.
//!
//! A poll names channels and, per channel, the last seq the client has (`since`). The answer
//! carries every retained message after it (oldest first, up to a batch limit shared fairly
//! between the channels), a `gap` for what history no longer holds, and `next`: the positions
//! to ask from next time. A long-poll with nothing to answer yet is parked on its worker (see
//! `broadcast`) until a message of one of its channels arrives or its deadline passes; neither
//! costs a thread or a timer syscall.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use tickcast_protocol::envelope::ErrorCode;
use tickcast_protocol::fallback;
use tickcast_protocol::position::Position;

use crate::hub::{Channel, Hub, Published, Resume};
use crate::query::Refusal;

/// One channel of a poll and the position to answer from.
#[derive(Debug)]
pub struct PollChannel {
    pub channel: Arc<Channel>,
    /// The answer starts after this seq of the channel's current epoch.
    pub since: u64,
    /// The client's position named another epoch: the answer carries a `reset` for it (and
    /// starts the current epoch from its beginning).
    pub reset: bool,
}

/// A validated poll: channels with the position to answer from.
#[derive(Debug)]
pub struct PollRequest {
    pub channels: Vec<PollChannel>,
    /// How long a long-poll may wait (already capped); zero for `/poll`.
    pub timeout: Duration,
    /// Keep the connection open after the answer.
    pub keep_alive: bool,
    /// Extra response headers (CORS), owned: a parked poll answers later.
    pub headers: Vec<(&'static str, String)>,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal { status: 400, code, message: message.into() }
}

/// Limits a poll is checked against.
#[derive(Debug, Clone, Copy)]
pub struct PollLimits {
    pub max_channels: usize,
    pub default_timeout: Duration,
    pub max_timeout: Duration,
}

/// Parses `timeout=N` (seconds, integer or decimal).
fn parse_timeout(value: &str) -> Option<Duration> {
    let secs: f64 = value.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// Validates a poll's query: `channels` (names only: prefix patterns need a stream, since a
/// poll must name what it resumes), `since`, and for long-polls `timeout`. Channels are
/// created on first use, as for subscriptions.
pub fn parse(
    query: Option<&str>,
    hub: &Hub,
    limits: PollLimits,
    longpoll: bool,
) -> Result<PollRequest, Refusal> {
    let mut names: Vec<String> = Vec::new();
    let mut since = BTreeMap::new();
    let mut timeout = if longpoll { limits.default_timeout } else { Duration::ZERO };
    for (key, value) in crate::query::query_pairs(query.unwrap_or(""))? {
        match key {
            "channels" => names.extend(value.split(',').filter(|c| !c.is_empty()).map(str::to_owned)),
            "since" => {
                fallback::parse_positions(&value, &mut since).map_err(|m| refuse(ErrorCode::BadRequest, m))?
            }
            "timeout" if longpoll => {
                timeout = parse_timeout(&value)
                    .ok_or_else(|| refuse(ErrorCode::BadRequest, "timeout is a number of seconds"))?;
            }
            _ => {}
        }
    }
    if names.is_empty() {
        return Err(refuse(ErrorCode::BadRequest, "name the channels: ?channels=a,b"));
    }
    names.sort_unstable();
    names.dedup();
    if names.len() > limits.max_channels {
        let message = format!("at most {} channels per request", limits.max_channels);
        return Err(refuse(ErrorCode::TooManySubscriptions, message));
    }
    let mut channels = Vec::with_capacity(names.len());
    for name in &names {
        if name.contains('*') {
            return Err(refuse(
                ErrorCode::BadRequest,
                "prefix patterns need a stream (/ws or /sse); a poll names its channels",
            ));
        }
        let channel =
            hub.channel(name).map_err(|e| Refusal { status: 400, code: e.code(), message: e.to_string() })?;
        // Without a position the channel starts live: the answer only tells where it stands.
        // A position of another epoch (a restarted server's) gets a reset and this epoch
        // from its start. One without an epoch beyond the newest seq (a client from before
        // epochs, of an earlier run) starts live, as it always did.
        let last = channel.last_seq();
        let (from, reset) = match channel.resume(since.get(name).copied()) {
            Resume::Live => (last, false),
            Resume::After(seq) => (seq.min(last), false),
            Resume::Reset => (0, true),
        };
        channels.push(PollChannel { channel, since: from, reset });
    }
    Ok(PollRequest {
        channels,
        timeout: timeout.min(limits.max_timeout),
        keep_alive: true,
        headers: Vec::new(),
    })
}

/// How much one answer may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerLimits {
    /// Most envelopes.
    pub messages: usize,
    /// Most bytes of envelopes (one larger message still goes alone, so a client always
    /// makes progress).
    pub bytes: usize,
}

impl Default for AnswerLimits {
    fn default() -> Self {
        Self { messages: 1000, bytes: 256 << 10 }
    }
}

/// Bytes of poll answers a worker may have queued to clients that do not read them, all
/// answers together (`--answer-budget`). A hostile client can ask for up to
/// `--max-answer-bytes` per request and never read: this bounds what all of them hold.
#[derive(Debug, Clone)]
pub struct AnswerBudget {
    queued: Arc<AtomicU64>,
    limit: u64,
}

impl AnswerBudget {
    pub fn new(limit: usize) -> Self {
        Self { queued: Arc::default(), limit: limit as u64 }
    }

    /// Bytes of answers queued and not yet sent (or dropped).
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Takes `len` bytes if they fit (the first answer always does); they come back when the
    /// returned guard drops: when the answer's last byte was sent, or its queue dropped.
    fn take(&self, len: usize) -> Option<BudgetGuard> {
        let len = len as u64;
        let queued = self.queued.load(Ordering::Relaxed);
        if queued > 0 && queued + len > self.limit {
            return None;
        }
        self.queued.fetch_add(len, Ordering::Relaxed);
        Some(BudgetGuard { queued: Arc::clone(&self.queued), len, end: Vec::new() })
    }
}

impl Default for AnswerBudget {
    fn default() -> Self {
        Self::new(64 << 20)
    }
}

/// The last piece of a queued answer: gives the answer's bytes back to the budget when it
/// drops, that is when everything before it was sent too (or the connection went).
struct BudgetGuard {
    queued: Arc<AtomicU64>,
    len: u64,
    end: Vec<u8>,
}

impl AsRef<[u8]> for BudgetGuard {
    fn as_ref(&self) -> &[u8] {
        &self.end
    }
}

impl Drop for BudgetGuard {
    fn drop(&mut self) {
        self.queued.fetch_sub(self.len, Ordering::Relaxed);
    }
}

/// Envelopes smaller than this are copied into the answer's own buffer; larger ones are sent
/// as the history's shared bytes (a reference costs about as much as a small copy).
const SHARE_MIN: usize = 256;

/// An answer's body as buffers to send in order: owned pieces (the JSON around the
/// envelopes, small envelopes) and the history's shared envelopes, never copied.
#[derive(Debug, Default)]
struct Parts {
    parts: Vec<Bytes>,
    owned: Vec<u8>,
    len: usize,
}

impl Parts {
    fn owned(&mut self, bytes: &[u8]) {
        self.owned.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    fn envelope(&mut self, json: &Bytes) {
        if json.len() < SHARE_MIN {
            return self.owned(json);
        }
        if !self.owned.is_empty() {
            self.parts.push(Bytes::from(std::mem::take(&mut self.owned)));
        }
        self.parts.push(json.clone());
        self.len += json.len();
    }
}

/// An answer ready to send.
#[derive(Debug)]
pub struct Answer {
    /// The body's pieces but the last (see [`Parts`]); `parts[0]` is left empty for the
    /// response head.
    parts: Vec<Bytes>,
    /// The body's last piece (it carries the budget's guard once queued).
    end: Vec<u8>,
    /// Bytes of the body.
    pub body_len: usize,
    /// Envelopes in the answer.
    pub messages: usize,
    /// Whether it has anything besides positions (messages or gaps): a long-poll waits until
    /// it has.
    pub has_news: bool,
}

impl Answer {
    /// The answer as buffers to queue, `head` (the response head) first, if the worker's
    /// budget has room for it; `None` when it has not (answer 503).
    pub fn into_response(mut self, head: Vec<u8>, budget: &AnswerBudget) -> Option<Vec<Bytes>> {
        let mut guard = budget.take(head.len() + self.body_len)?;
        guard.end = self.end;
        self.parts[0] = Bytes::from(head);
        self.parts.push(Bytes::from_owner(guard));
        Some(self.parts)
    }

    /// The body in one buffer (tests).
    #[cfg(test)]
    pub fn body(&self) -> Vec<u8> {
        let mut out: Vec<u8> = self.parts.iter().flat_map(|p| p.iter().copied()).collect();
        out.extend_from_slice(&self.end);
        out
    }
}

/// Builds the answer for `req` from history, within `limits` over all channels (each channel
/// gets an equal share of the messages and bytes left, in order, so one busy channel cannot
/// starve the others; `next` continues exactly where the answer stopped). `scratch` is reused
/// between calls.
pub fn answer(req: &PollRequest, limits: AnswerLimits, scratch: &mut Vec<Arc<Published>>) -> Answer {
    scratch.clear();
    let mut gaps = Vec::new();
    let mut resets = Vec::new();
    let mut next = Vec::with_capacity(req.channels.len());
    let mut left = limits.messages.max(1);
    let mut left_bytes = limits.bytes;
    for (i, PollChannel { channel, since, reset }) in req.channels.iter().enumerate() {
        if *reset {
            resets.push(channel.reset_notice());
        }
        let remaining = req.channels.len() - i;
        let (share, byte_share) = (left.div_ceil(remaining), left_bytes.div_ceil(remaining));
        let start = scratch.len();
        // Everything retained, cut to the share after: a gap does not count against the
        // batch, so a client far behind learns the whole gap at once.
        let gap = channel.replay(*since, u64::MAX, scratch);
        let (keep, bytes) = fitting(&scratch[start..], share, byte_share, start == 0);
        scratch.truncate(start + keep);
        left -= keep;
        left_bytes = left_bytes.saturating_sub(bytes);
        let mut position = scratch[start..].last().map_or(*since, |m| m.seq());
        if let Some(gap) = gap {
            gaps.push((channel.name().as_ref(), gap.from, gap.to));
            position = position.max(gap.to);
        }
        next.push((channel.name().as_ref(), Position { seq: position, epoch: Some(channel.epoch()) }));
    }
    let mut body = Parts { parts: vec![Bytes::new()], ..Parts::default() };
    body.owned(fallback::POLL_ANSWER_START);
    for (i, m) in scratch.iter().enumerate() {
        if i > 0 {
            body.owned(b",");
        }
        body.envelope(m.json());
    }
    // The owned bytes not yet in a part become the start of the last piece.
    let mut end = std::mem::take(&mut body.owned);
    let before = end.len();
    fallback::write_poll_answer_end(&mut end, &gaps, &resets, next);
    let body_len = body.len + (end.len() - before);
    let has_news = !scratch.is_empty() || !gaps.is_empty() || !resets.is_empty();
    Answer { parts: body.parts, end, body_len, messages: scratch.len(), has_news }
}

/// How many of `msgs` fit `count` messages and `bytes` bytes (with their separators), and
/// their bytes. The first message of an answer goes even if it alone is larger.
fn fitting(msgs: &[Arc<Published>], count: usize, bytes: usize, answer_empty: bool) -> (usize, usize) {
    let mut used = 0;
    for (i, m) in msgs.iter().take(count).enumerate() {
        let size = m.json().len() + 1;
        if used + size > bytes && !(answer_empty && i == 0) {
            return (i, used);
        }
        used += size;
    }
    (msgs.len().min(count), used)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{HistoryLimits, HubConfig};
    use tickcast_protocol::envelope::Data;
    use tickcast_protocol::position::Epoch;

    fn hub(history: usize) -> Arc<Hub> {
        let config = HubConfig {
            history: HistoryLimits { messages: history, bytes: 1 << 20 },
            epoch: Epoch::parse("E1"),
            ..HubConfig::default()
        };
        Hub::new(1, config).unwrap().0
    }

    const LIMITS: PollLimits = PollLimits {
        max_channels: 4,
        default_timeout: Duration::from_secs(25),
        max_timeout: Duration::from_secs(60),
    };

    fn most(messages: usize) -> AnswerLimits {
        AnswerLimits { messages, ..AnswerLimits::default() }
    }

    fn json(body: &[u8]) -> serde_json::Value {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn answers_from_history_with_gaps_and_positions() {
        let hub = hub(4);
        for i in 0..6 {
            hub.publish("a", Data::Json(format!("{i}").as_bytes()), 1).unwrap();
        }
        hub.publish("b", Data::Text("x"), 1).unwrap();
        let req = parse(Some("channels=a,b&since=a:0,b:0"), &hub, LIMITS, false).unwrap();
        let a = answer(&req, most(100), &mut Vec::new());
        let v = json(&a.body());
        // History holds a:3..=6; 1..=2 are a gap.
        assert_eq!(v["gaps"], serde_json::json!([{"type":"gap","channel":"a","from":1,"to":2}]));
        let seqs: Vec<_> =
            v["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [3, 4, 5, 6, 1]);
        assert_eq!(v["next"], serde_json::json!({"a": 6, "b": 1}));
        assert!(a.has_news);
        assert_eq!(a.messages, 5);

        // No position: starts live. A position past the newest (a restart): live too.
        let req = parse(Some("channels=a,b&since=b:99"), &hub, LIMITS, false).unwrap();
        let v = json(&answer(&req, most(100), &mut Vec::new()).body());
        let epochs = serde_json::json!({"a": "E1", "b": "E1"});
        assert_eq!(
            v,
            serde_json::json!({"messages": [], "gaps": [], "next": {"a": 6, "b": 1}, "epoch": epochs})
        );
        // The same position in this epoch: nothing new. In another epoch: a reset, then this
        // epoch from its start (what history holds of it, after a gap).
        let req = parse(Some("channels=a,b&since=a:99@E1,b:1@E1"), &hub, LIMITS, false).unwrap();
        let a = answer(&req, most(100), &mut Vec::new());
        assert!(!a.has_news);
        let req = parse(Some("channels=a,b&since=a:500@E0,b:1@E1"), &hub, LIMITS, false).unwrap();
        let a = answer(&req, most(100), &mut Vec::new());
        assert!(a.has_news);
        let v = json(&a.body());
        assert_eq!(v["resets"], serde_json::json!([{"type":"reset","channel":"a","epoch":"E1","seq":6}]));
        assert_eq!(v["gaps"], serde_json::json!([{"type":"gap","channel":"a","from":1,"to":2}]));
        let seqs: Vec<_> =
            v["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [3, 4, 5, 6]);
        assert_eq!(v["next"], serde_json::json!({"a": 6, "b": 1}));
    }

    #[test]
    fn batch_is_shared_between_channels() {
        let hub = hub(100);
        for _ in 0..10 {
            hub.publish("a", Data::Text("x"), 1).unwrap();
            hub.publish("b", Data::Text("y"), 1).unwrap();
        }
        let req = parse(Some("channels=a,b&since=a:0,b:0"), &hub, LIMITS, false).unwrap();
        let v = json(&answer(&req, most(5), &mut Vec::new()).body());
        assert_eq!(v["messages"].as_array().unwrap().len(), 5);
        assert_eq!(v["next"], serde_json::json!({"a": 3, "b": 2}));
        // Asking again from `next` continues exactly where it stopped.
        let req = parse(Some("channels=a,b&since=a:3,b:2"), &hub, LIMITS, false).unwrap();
        let v = json(&answer(&req, most(100), &mut Vec::new()).body());
        assert_eq!(v["messages"][0]["seq"], 4);
        assert_eq!(v["next"], serde_json::json!({"a": 10, "b": 10}));
    }

    #[test]
    fn answers_are_bounded_in_bytes_and_continue_where_they_stopped() {
        let hub = hub(100);
        let text = "x".repeat(60);
        for _ in 0..10 {
            hub.publish("a", Data::Text(&text), 1).unwrap();
        }
        let size = hub.get("a").unwrap().latest().unwrap().json().len() + 1;
        let limits = AnswerLimits { messages: 1000, bytes: 3 * size + 5 };
        let mut since = 0;
        let mut answers = 0;
        while since < 10 {
            let req = parse(Some(&format!("channels=a&since=a:{since}")), &hub, LIMITS, false).unwrap();
            let a = answer(&req, limits, &mut Vec::new());
            assert!(a.body().len() <= limits.bytes + 200, "{} bytes", a.body().len());
            let v = json(&a.body());
            let seqs: Vec<u64> =
                v["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
            assert_eq!(seqs, ((since + 1)..=(since + 3).min(10)).collect::<Vec<_>>());
            since = v["next"]["a"].as_u64().unwrap();
            answers += 1;
        }
        assert_eq!(answers, 4, "10 messages in answers of 3");
        // A message larger than the limit still goes, alone: the client always gets further.
        let tiny = AnswerLimits { messages: 1000, bytes: 10 };
        let req = parse(Some("channels=a&since=a:0"), &hub, LIMITS, false).unwrap();
        let v = json(&answer(&req, tiny, &mut Vec::new()).body());
        assert_eq!(v["messages"].as_array().unwrap().len(), 1);
        assert_eq!(v["next"]["a"], 1);
    }

    #[test]
    fn answers_share_the_history_s_envelopes_and_hold_the_budget_until_sent() {
        let hub = hub(100);
        let big = "x".repeat(1000);
        for _ in 0..3 {
            hub.publish("a", Data::Text(&big), 1).unwrap();
        }
        hub.publish("a", Data::Text("small"), 1).unwrap();
        let req = parse(Some("channels=a&since=a:0"), &hub, LIMITS, false).unwrap();
        let a = answer(&req, most(100), &mut Vec::new());
        let body_len = a.body_len;
        assert_eq!(a.body().len(), body_len);
        let history: Vec<*const u8> = {
            let mut out = Vec::new();
            hub.get("a").unwrap().replay(0, u64::MAX, &mut out);
            out.iter().map(|m| m.json().as_ptr()).collect()
        };
        let budget = AnswerBudget::new(2 * (4 + body_len) + 100);
        let parts = a.into_response(b"HEAD".to_vec(), &budget).unwrap();
        // The three large envelopes are the history's own bytes; the small one was copied.
        let shared = parts.iter().filter(|p| history.contains(&p.as_ptr())).count();
        assert_eq!(shared, 3);
        assert_eq!(parts.iter().map(Bytes::len).sum::<usize>(), 4 + body_len);
        assert_eq!(budget.queued(), (4 + body_len) as u64);
        // A second answer does not fit while the first is queued; it does once it is gone.
        let again = || answer(&req, most(100), &mut Vec::new()).into_response(b"HEAD".to_vec(), &budget);
        let second = again().expect("the budget holds two");
        assert!(again().is_none(), "a third does not fit");
        drop(parts);
        drop(second);
        assert_eq!(budget.queued(), 0);
        // One answer larger than the whole budget still goes when nothing else is queued.
        let tiny = AnswerBudget::new(10);
        assert!(answer(&req, most(100), &mut Vec::new()).into_response(Vec::new(), &tiny).is_some());
    }

    #[test]
    fn refusals() {
        let hub = hub(4);
        let bad = |q: &str| parse(Some(q), &hub, LIMITS, true).unwrap_err();
        assert_eq!(bad("since=a:1").code, ErrorCode::BadRequest);
        assert_eq!(bad("channels=a&since=a:x").code, ErrorCode::BadRequest);
        assert_eq!(bad("channels=ticker.*").code, ErrorCode::BadRequest);
        assert_eq!(bad("channels=a%20b").code, ErrorCode::InvalidChannel);
        assert_eq!(bad("channels=a,b,c,d,e").code, ErrorCode::TooManySubscriptions);
        assert_eq!(bad("channels=a&timeout=-1").code, ErrorCode::BadRequest);
        assert_eq!(bad("channels=a&timeout=soon").code, ErrorCode::BadRequest);
        assert_eq!(bad("channels=%zz").status, 400);
        let capped = parse(Some("channels=a&timeout=3600"), &hub, LIMITS, true).unwrap();
        assert_eq!(capped.timeout, Duration::from_secs(60));
        let default = parse(Some("channels=a&since=a:0"), &hub, LIMITS, true).unwrap();
        assert_eq!(default.timeout, Duration::from_secs(25));
        assert_eq!(default.channels[0].since, 0);
    }
}
