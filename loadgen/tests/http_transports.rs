//! SSE, long-polling and polling subscribers against a small hand-written mock of tickcast's
//! planned HTTP routes (docs/protocol.md): `POST /publish/<channel>`, `GET /sse`, `GET /poll`,
//! `GET /longpoll`. The mock keeps every message per channel (so `since` and `Last-Event-ID`
//! replay works) and can misbehave on purpose: end SSE streams early, replace a message by a
//! `gap` notice, answer polls with junk, refuse publishes or leave them unanswered. Every run is
//! small and bounded (a few seconds).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tickcast_loadgen::cli::{Cli, Outputs, plan_of};
use tickcast_loadgen::engine::coordinator::Observe;
use tickcast_loadgen::result::RunResult;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

#[derive(Default, Clone, Copy)]
struct Misbehave {
    /// End a fresh SSE stream (one without Last-Event-ID) after this many events.
    sse_close_after: Option<usize>,
    /// Channel `a`'s message with this seq goes out as a `gap` notice instead (SSE and poll).
    gap_seq: Option<u64>,
    /// Every n-th poll answer is junk.
    junk_every: Option<u64>,
    /// Every n-th publish is refused (`503`, not kept).
    refuse_every: Option<u64>,
    /// From the n-th publish on, none is answered; each is kept (published) or dropped.
    unanswered_from: Option<(u64, bool)>,
}

struct Mock {
    history: std::sync::Mutex<HashMap<String, Vec<String>>>,
    published: Notify,
    polls: AtomicU64,
    publishes: AtomicU64,
    misbehave: Misbehave,
}

struct Server {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

fn start(misbehave: Misbehave) -> Server {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let mock = Arc::new(Mock {
        history: Default::default(),
        published: Notify::new(),
        polls: AtomicU64::new(0),
        publishes: AtomicU64::new(0),
        misbehave,
    });
    runtime.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let mock = mock.clone();
            tokio::spawn(async move {
                let _ = serve(stream, &mock).await;
            });
        }
    });
    Server { addr, _runtime: runtime }
}

fn query<'a>(target: &'a str, key: &str) -> Option<&'a str> {
    let q = target.split_once('?')?.1;
    q.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// `a:12,b:3` -> map (also the Last-Event-ID form).
fn positions(text: &str) -> HashMap<String, u64> {
    text.split(',')
        .filter_map(|p| p.rsplit_once(':'))
        .filter_map(|(c, s)| Some((c.to_string(), s.parse().ok()?)))
        .collect()
}

async fn serve(mut stream: TcpStream, mock: &Mock) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    loop {
        let (head_len, method, target, length, last_id) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            if let httparse::Status::Complete(n) = req.parse(&buf)? {
                let header = |name: &str| {
                    req.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).into_owned())
                };
                let length = header("content-length").map_or(0, |v| v.parse().unwrap_or(0));
                break (
                    n,
                    req.method.unwrap().to_string(),
                    req.path.unwrap().to_string(),
                    length,
                    header("last-event-id"),
                );
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        };
        while buf.len() < head_len + length {
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
        let body = buf[head_len..head_len + length].to_vec();
        buf.drain(..head_len + length);
        let path = target.split('?').next().unwrap_or_default();
        let channels: Vec<String> =
            query(&target, "channels").unwrap_or_default().split(',').map(str::to_string).collect();
        let answer = match (method.as_str(), path) {
            ("POST", p) if p.starts_with("/publish/") => {
                let n = mock.publishes.fetch_add(1, Ordering::Relaxed) + 1;
                let m = mock.misbehave;
                if let Some((from, keep)) = m.unanswered_from
                    && n >= from
                {
                    if keep {
                        publish(mock, &p["/publish/".len()..], &body);
                    }
                    continue;
                }
                if m.refuse_every.is_some_and(|every| n.is_multiple_of(every)) {
                    let refusal = br#"{"error":{"code":"overloaded","message":"try later"}}"#;
                    let head = format!(
                        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\n\r\n",
                        refusal.len()
                    );
                    stream.write_all(head.as_bytes()).await?;
                    stream.write_all(refusal).await?;
                    continue;
                }
                publish(mock, &p["/publish/".len()..], &body)
            }
            ("GET", "/sse") => return sse(stream, mock, &channels, last_id).await,
            ("GET", "/poll") | ("GET", "/longpoll") => {
                let since = positions(query(&target, "since").unwrap_or_default());
                let wait = if path == "/longpoll" {
                    Duration::from_secs(query(&target, "timeout").map_or(25, |t| t.parse().unwrap_or(25)))
                } else {
                    Duration::ZERO
                };
                let n = mock.polls.fetch_add(1, Ordering::Relaxed) + 1;
                if mock.misbehave.junk_every.is_some_and(|every| n.is_multiple_of(every)) {
                    "{nope".to_string()
                } else {
                    poll(mock, &channels, since, wait).await
                }
            }
            _ => {
                stream.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").await?;
                continue;
            }
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(answer.as_bytes()).await?;
    }
}

fn publish(mock: &Mock, channel: &str, body: &[u8]) -> String {
    let mut history = mock.history.lock().unwrap();
    let list = history.entry(channel.to_string()).or_default();
    let seq = list.len() as u64 + 1;
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros();
    let data = String::from_utf8_lossy(body);
    list.push(format!(r#"{{"channel":"{channel}","seq":{seq},"ts":{ts},"data":{data}}}"#));
    drop(history);
    mock.published.notify_waiters();
    format!(r#"{{"type":"published","channel":"{channel}","seq":{seq}}}"#)
}

fn is_gap(mock: &Mock, channel: &str, seq: u64) -> bool {
    channel == "a" && mock.misbehave.gap_seq == Some(seq)
}

/// Everything after `since` on `channels`: (channel, seq, envelope).
fn newer(mock: &Mock, channels: &[String], since: &HashMap<String, u64>) -> Vec<(String, u64, String)> {
    let history = mock.history.lock().unwrap();
    let mut out = Vec::new();
    for c in channels {
        let from = since.get(c).copied().unwrap_or(0) as usize;
        for (i, env) in history.get(c).map(|l| &l[from.min(l.len())..]).unwrap_or_default().iter().enumerate()
        {
            out.push((c.clone(), (from + i + 1) as u64, env.clone()));
        }
    }
    out
}

fn heads(mock: &Mock, channels: &[String]) -> HashMap<String, u64> {
    let history = mock.history.lock().unwrap();
    channels.iter().map(|c| (c.clone(), history.get(c).map_or(0, |l| l.len() as u64))).collect()
}

async fn poll(mock: &Mock, channels: &[String], since: HashMap<String, u64>, wait: Duration) -> String {
    let since = if since.is_empty() { heads(mock, channels) } else { since };
    let deadline = tokio::time::Instant::now() + wait;
    let found = loop {
        let notified = mock.published.notified();
        let found = newer(mock, channels, &since);
        if !found.is_empty() || tokio::time::Instant::now() >= deadline {
            break found;
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    };
    let mut next = since.clone();
    let (mut messages, mut gaps) = (Vec::new(), Vec::new());
    for (c, seq, env) in found {
        next.insert(c.clone(), seq);
        if is_gap(mock, &c, seq) {
            gaps.push(format!(r#"{{"type":"gap","channel":"{c}","from":{seq},"to":{seq}}}"#));
        } else {
            messages.push(env);
        }
    }
    let next: Vec<String> = next.iter().map(|(c, s)| format!(r#""{c}":{s}"#)).collect();
    format!(
        r#"{{"messages":[{}],"gaps":[{}],"next":{{{}}}}}"#,
        messages.join(","),
        gaps.join(","),
        next.join(",")
    )
}

async fn sse(
    mut stream: TcpStream,
    mock: &Mock,
    channels: &[String],
    last_id: Option<String>,
) -> anyhow::Result<()> {
    let resumed = last_id.is_some();
    let mut at = match &last_id {
        Some(id) => positions(id),
        None => heads(mock, channels),
    };
    stream
        .write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
        )
        .await?;
    let mut events = 0;
    loop {
        let notified = mock.published.notified();
        let mut out = String::new();
        for (c, seq, env) in newer(mock, channels, &at) {
            at.insert(c.clone(), seq);
            if is_gap(mock, &c, seq) {
                out.push_str(&format!(
                    "id: {c}:{seq}\nevent: gap\ndata: {{\"channel\":\"{c}\",\"from\":{seq},\"to\":{seq}}}\n\n"
                ));
            } else {
                out.push_str(&format!("id: {c}:{seq}\nevent: message\ndata: {env}\n\n"));
            }
            events += 1;
            if !resumed && mock.misbehave.sse_close_after.is_some_and(|n| events >= n) {
                stream.write_all(format!("{:x}\r\n{out}\r\n0\r\n\r\n", out.len()).as_bytes()).await?;
                return Ok(());
            }
        }
        if !out.is_empty() {
            stream.write_all(format!("{:x}\r\n{out}\r\n", out.len()).as_bytes()).await?;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
    }
}

fn run(server: &Server, args: &[&str]) -> RunResult {
    run_observed(server, args, Observe::default())
}

fn run_observed(server: &Server, args: &[&str], observe: Observe) -> RunResult {
    let url = format!("http://{}", server.addr);
    let mut all = vec!["tickcast-loadgen", "rate", "--url", &url, "--duration", "1s"];
    all.extend_from_slice(args);
    let cli = <Cli as clap::Parser>::try_parse_from(all).unwrap();
    let plan = plan_of(&cli.command).unwrap().0;
    tickcast_loadgen::run(&plan, observe, &Outputs::default(), true).unwrap()
}

fn assert_complete(r: &RunResult) {
    let expected = r.totals.expected();
    assert!(r.totals.published >= 150, "published {}", r.totals.published);
    assert_eq!(r.totals.counters.publish_ok, r.totals.published);
    assert_eq!(
        r.loss.delivered + r.totals.counters.gap_announced,
        expected,
        "{:?} {:?}",
        r.loss,
        r.totals.counters
    );
    assert_eq!(r.loss.duplicates, 0, "{:?}", r.loss);
    assert_eq!(r.totals.counters.disconnected, 0);
}

#[test]
fn sse_reconnects_with_last_event_id_and_counts_gap_notices() {
    let server = start(Misbehave { sse_close_after: Some(40), gap_seq: Some(10), ..Misbehave::default() });
    let r = run(&server, &SSE_TWO_CHANNELS);
    assert_complete(&r);
    let c = r.totals.counters;
    assert_eq!(r.totals.streams, 8);
    // Every client's first stream ended after 40 events; Last-Event-ID resumed it with no loss.
    assert_eq!(c.reconnects, 4, "{c:?}");
    assert_eq!((c.gap_notices, c.gap_announced), (4, 4), "{c:?}");
    assert_eq!(r.loss.missing, 4, "the announced gap is the only loss: {:?}", r.loss);
    assert!(r.totals.hists["latency"].at(0.5) < 100_000_000);
    assert!(c.bytes_received as f64 / r.loss.delivered as f64 > 128.0);
}

#[test]
fn poll_is_open_loop_and_its_latency_includes_the_wait() {
    let server = start(Misbehave { junk_every: Some(7), gap_seq: Some(5), ..Misbehave::default() });
    let r = run(
        &server,
        &[
            "--transport",
            "poll",
            "--poll-interval",
            "100ms",
            "--clients",
            "3",
            "--rate",
            "200",
            "--channels",
            "a",
        ],
    );
    assert_complete(&r);
    let c = r.totals.counters;
    // 3 clients x (1 s run + 1 s drain) / 100 ms, plus the priming polls.
    assert!((45..=66).contains(&c.requests), "{c:?}");
    assert!(c.malformed >= 5, "junk answers are counted, not fatal: {c:?}");
    assert_eq!(c.gap_notices, 3);
    let latency = &r.totals.hists["latency"];
    // Uniformly spread over the 100 ms between polls (longer after a junk answer).
    assert!(latency.at(0.5) > 20_000_000 && latency.at(0.5) < 120_000_000, "p50 {}", latency.at(0.5));
    assert!(latency.at(1.0) >= 90_000_000, "max {}", latency.at(1.0));
}

#[test]
fn longpoll_delivers_everything_and_records_exposure() {
    let server = start(Misbehave::default());
    let r = run(
        &server,
        &[
            "--transport",
            "longpoll",
            "--clients",
            "3",
            "--rate",
            "200",
            "--channels",
            "a,b,c",
            "--channels-per-client",
            "2",
        ],
    );
    assert_complete(&r);
    assert_eq!(r.loss.lost(), 0);
    let c = r.totals.counters;
    assert!(c.requests > 20, "{c:?}");
    assert!(r.totals.hists["exposure"].len() > 20);
    assert!(r.totals.hists["latency"].at(0.99) < 200_000_000);
}

const SSE_TWO_CHANNELS: [&str; 10] = [
    "--transport",
    "sse",
    "--clients",
    "4",
    "--rate",
    "200",
    "--channels",
    "a,b",
    "--channels-per-client",
    "2",
];

/// The server refuses every fifth publish (`503`, on both channels) and leaves every publish
/// from the 151st on unanswered (and undelivered). Those are holes and a tail in every
/// subscription's sequence numbers, but not loss: the table and the JSON say how many publishes
/// were refused and unanswered, and loss counts only what the server accepted. (They used to
/// show as silent loss.)
#[test]
fn refused_and_unanswered_publishes_are_reported_apart_not_as_loss() {
    let misbehave =
        Misbehave { refuse_every: Some(5), unanswered_from: Some((151, false)), ..Misbehave::default() };
    let r = run(&start(misbehave), &SSE_TWO_CHANNELS);
    assert_refused_and_unanswered_not_lost(&r);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["totals"]["counters"]["publish_refused"], 30);
    assert!(json["totals"]["refused"].is_array() && json["totals"].get("missed").is_none(), "{json}");
    // The same over two worker processes: the publisher's refusals and the subscriptions' holes
    // meet in the coordinator.
    let mut args = SSE_TWO_CHANNELS.to_vec();
    args.extend(["--workers", "2"]);
    let observe =
        Observe { server_pid: None, worker_exe: Some(env!("CARGO_BIN_EXE_tickcast-loadgen").into()) };
    let r = run_observed(&start(misbehave), &args, observe);
    assert_eq!(r.plan.workers, 2);
    assert!(r.warnings.iter().all(|w| !w.message.contains("worker")), "{:?}", r.warnings);
    assert_refused_and_unanswered_not_lost(&r);
}

fn assert_refused_and_unanswered_not_lost(r: &RunResult) {
    let c = r.totals.counters;
    assert!(r.totals.published >= 190, "{c:?}");
    assert_eq!((c.publish_ok, c.publish_refused), (120, 30), "{c:?}");
    assert_eq!(c.publish_unanswered, r.totals.published - 150, "{c:?}");
    assert_eq!(r.totals.refused.len() + r.totals.unanswered.len(), r.totals.published - 120);
    // Every accepted publish reached the 4 subscriptions of its channel; nothing else expected.
    assert_eq!(r.totals.expected(), 4 * 120, "{:?}", r.totals.subscriptions);
    assert_eq!(r.loss.delivered, 4 * 120, "{:?}", r.loss);
    assert_eq!((r.loss.lost(), r.loss.delivered_unaccepted), (0, 0), "{:?}", r.loss);
    assert!(
        r.warnings.iter().all(|w| !w.message.contains("SILENTLY") && !w.message.contains("DELIVERY")),
        "{:?}",
        r.warnings
    );
    assert!(r.warnings.iter().any(|w| w.message.contains("refused")), "{:?}", r.warnings);
    let table = tickcast_loadgen::report::table::render(r);
    let line = format!("publish refused 30, publish unanswered {}", c.publish_unanswered);
    assert!(table.contains(&line) && table.contains("lost 0 ("), "{table}");
}

/// Publishes the server took but never answered: not expected, yet delivered, and counted
/// apart, neither as delivered nor as loss.
#[test]
fn unanswered_publishes_delivered_anyway_are_counted_apart() {
    let server = start(Misbehave { unanswered_from: Some((101, true)), ..Misbehave::default() });
    let r = run(&server, &SSE_TWO_CHANNELS);
    let c = r.totals.counters;
    assert_eq!((c.publish_ok, c.publish_refused), (100, 0), "{c:?}");
    assert_eq!(c.publish_unanswered, r.totals.published - 100, "{c:?}");
    assert_eq!(r.loss.delivered, 4 * 100, "{:?}", r.loss);
    assert_eq!(r.loss.delivered_unaccepted, 4 * c.publish_unanswered, "{:?}", r.loss);
    assert_eq!(r.loss.lost(), 0, "{:?}", r.loss);
    assert!(tickcast_loadgen::report::table::render(&r).contains("delivered anyway"));
}
