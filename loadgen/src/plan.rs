//! A run described as data: who connects how (clients), what they do on which schedule
//! (workload), and when it ends (stop). Every scenario is a `Plan`; worker processes receive the
//! same `Plan` (as JSON) plus their slice of the clients.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the clients do once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Hold connections open, answering pings.
    Idle,
    /// Round trips through `/echo`.
    Echo,
    /// Connection storm: connect, handshake, close.
    Connect,
    /// Subscribers receive what a publisher sends at a fixed rate.
    Rate,
}

/// When events (connections, messages) are due.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// As fast as allowed (connections: up to `connect_concurrency` in flight).
    Unpaced,
    /// Closed loop: the next event waits for the previous one's answer.
    ClosedLoop,
    /// Open loop: event `k` (0-based) is due at `k / per_second` after the start, whether or
    /// not earlier ones were answered. Latency is measured from the due time.
    Open { per_second: f64 },
    /// Windowed (`saturate`): publish as fast as the subscribers keep up, with at most `window`
    /// messages published but not yet delivered to every subscriber of their channel.
    Windowed { window: u64 },
}

impl Schedule {
    /// Time after the start at which event `k` is due; `None` for unscheduled kinds.
    pub fn due(&self, k: u64) -> Option<Duration> {
        match *self {
            Schedule::Open { per_second } if per_second > 0.0 => {
                Some(Duration::from_secs_f64(k as f64 / per_second))
            }
            _ => None,
        }
    }

    /// Splits an open-loop schedule evenly over `parts` independent executors.
    pub fn share(&self, parts: usize) -> Schedule {
        match *self {
            Schedule::Open { per_second } => Schedule::Open { per_second: per_second / parts.max(1) as f64 },
            other => other,
        }
    }

    /// Events due by `elapsed` (how many of 0..n have `due(k) <= elapsed`).
    pub fn due_by(&self, elapsed: Duration) -> Option<u64> {
        match *self {
            Schedule::Open { per_second } if per_second > 0.0 => {
                Some((elapsed.as_secs_f64() * per_second).floor() as u64 + 1)
            }
            _ => None,
        }
    }
}

/// How the table prints a schedule: `open 50/s`, `windowed 8`, `closed loop`, `unpaced`.
impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Unpaced => f.write_str("unpaced"),
            Schedule::ClosedLoop => f.write_str("closed loop"),
            Schedule::Open { per_second } => write!(f, "open {per_second}/s"),
            Schedule::Windowed { window } => write!(f, "windowed {window}"),
        }
    }
}

/// When the measured phase ends: whichever limit comes first. `duration` is always set, so
/// every run is bounded in time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stop {
    pub duration: Duration,
    /// Messages per client (echo) or published in all (rate).
    pub count: Option<u64>,
    /// Rate: `--drain`, how long subscribers may keep receiving after publishing ended
    /// (default: see `Plan::drain`).
    #[serde(default)]
    pub drain: Option<Duration>,
}

/// The server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub addr: SocketAddr,
    /// Path and query of the WebSocket (or SSE/poll) request, e.g. `/echo` or `/ws?channels=a`.
    pub path: String,
}

impl Target {
    /// Parses `http://HOST[:PORT][/PATH]` (or `ws://`), with an optional path that `path`
    /// overrides. HOST is a name (resolved here, first address) or an IP address, `[v6]`
    /// included; any address is accepted: pointing a load generator at a server is its job.
    pub fn parse(url: &str, path: Option<&str>) -> anyhow::Result<Target> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("ws://"))
            .ok_or_else(|| anyhow::anyhow!("--url must start with http:// or ws://: {url}"))?;
        let (authority, url_path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = split_authority(authority)
            .ok_or_else(|| anyhow::anyhow!("--url {url}: expected HOST[:PORT] after the scheme"))?;
        // `[::1]` in a URL, `::1` to the resolver.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addr = (bare, port)
            .to_socket_addrs()
            .map_err(|e| anyhow::anyhow!("--url {url}: cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("--url {url}: {host} has no address"))?;
        let path = match path {
            Some(p) => p.to_string(),
            None if !url_path.is_empty() => url_path.to_string(),
            None => "/".to_string(),
        };
        Ok(Target { host, port, addr, path })
    }

    /// `Host` header value.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// `host:port`, `host` (port 80), `[v6]:port` or `[v6]`; `None` when empty or the port is bad.
fn split_authority(authority: &str) -> Option<(String, u16)> {
    let (host, port) = match authority.rsplit_once(':') {
        // A bare IPv6 address in brackets has colons inside, none after the bracket.
        Some((h, p)) if !p.ends_with(']') => (h, p.parse().ok()?),
        _ => (authority, 80),
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// Who connects, how fast, from where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clients {
    pub count: u64,
    /// Connection pacing over the whole run (split over workers and threads).
    pub connect: Schedule,
    /// Connections being set up at once, per thread.
    pub connect_concurrency: usize,
    /// Client `i` binds to `source_ips[i % len]` (empty: let the kernel choose).
    pub source_ips: Vec<IpAddr>,
    /// Read buffer per connection.
    pub read_buf_bytes: usize,
}

/// What happens once connected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Echo: per client. Rate: the publisher's schedule.
    pub schedule: Schedule,
    pub message_bytes: usize,
    /// Rate: the channels published to (round robin, see `channels.rs`) and subscribed to.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Rate: channels each subscriber subscribes to.
    #[serde(default = "one")]
    pub channels_per_client: usize,
    /// Rate: who publishes.
    #[serde(default)]
    pub publisher: Publisher,
    /// Rate: how subscribers receive.
    #[serde(default)]
    pub transport: Transport,
    /// Rate with `poll`/`longpoll`: request cadence and hold time.
    #[serde(default)]
    pub poll: PollPlan,
    /// Conflated channels: report the age of each value when it arrives (`staleness`), and
    /// count skipped sequence numbers as superseded rather than lost.
    #[serde(default)]
    pub staleness: bool,
    /// Rate with `ws`: how subscribers read (the raw io_uring ring, or tokio-uring reads).
    #[serde(default)]
    pub ws_receiver: WsReceiver,
    /// Rate with the `ws` ring: where a message's arrival time comes from.
    #[serde(default)]
    pub arrival: Arrival,
    /// WebSocket subscribers (rate with `ws`, idle, connect): the protocol spoken over the
    /// WebSocket (`wire/session.rs`).
    #[serde(default)]
    pub protocol: Protocol,
}

/// What WebSocket subscribers speak inside the WebSocket (`--protocol`). Each protocol's steps
/// (route, upgrade headers, opening exchange, keepalive answer, how a delivery is unwrapped)
/// are data in `wire/session.rs`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Plain WebSocket: every text frame is a message (tickcast, most peers).
    #[default]
    Ws,
    /// Socket.IO 4 (Engine.IO v4, Socket.IO protocol v5) over WebSocket.
    #[value(name = "socketio")]
    SocketIo,
    /// Action Cable (`actioncable-v1-json`), subscribed to one channel.
    #[value(name = "actioncable")]
    ActionCable,
}

/// Where the ring receiver's arrival times come from (`--arrival`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    /// The kernel's receive timestamp of the segment that completed the message
    /// (`SO_TIMESTAMPNS`): when the data reached this machine, whatever this process was busy
    /// with. The load generator's own reading delay is reported apart (`read_delay`).
    #[default]
    Kernel,
    /// The time this process read the data (one clock read per batch of receives): includes
    /// the load generator's own queueing, as the tokio-uring transports measure.
    User,
}

/// How WebSocket subscribers of `rate` read (`--ws-receiver`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WsReceiver {
    /// One raw io_uring per thread: multishot recv into a provided buffer ring, frames parsed
    /// in place (`io/wsring.rs`).
    #[default]
    Ring,
    /// One tokio-uring read per wake-up and connection (`io/ws.rs`).
    Tokio,
}

fn one() -> usize {
    1
}

/// How subscribers receive (`--transport`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// WebSocket: `GET /ws?channels=...`, one text frame per envelope.
    #[default]
    Ws,
    /// Server-Sent Events: `GET /sse?channels=...`, reconnecting with `Last-Event-ID`.
    Sse,
    /// Long-polling: `GET /longpoll?channels=...&since=...&timeout=...`, the next request as
    /// soon as an answer arrives.
    Longpoll,
    /// Polling: `GET /poll?channels=...&since=...` every `--poll-interval`, open loop.
    Poll,
}

impl Transport {
    /// The route subscribers use by default.
    pub fn default_path(self) -> &'static str {
        match self {
            Transport::Ws => "/ws",
            Transport::Sse => "/sse",
            Transport::Longpoll => "/longpoll",
            Transport::Poll => "/poll",
        }
    }
}

/// Polling parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PollPlan {
    /// `poll`: a client's requests are due every `interval` (each client at its own phase).
    pub interval: Duration,
    /// `longpoll`: the `timeout` the server may hold a request (whole seconds on the wire).
    pub longpoll_timeout: Duration,
}

impl Default for PollPlan {
    fn default() -> Self {
        PollPlan { interval: Duration::from_secs(1), longpoll_timeout: Duration::from_secs(25) }
    }
}

/// Who publishes in a `rate` run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Publisher {
    /// The load generator, over HTTP keep-alive `POST /publish/<channel>`, pipelined on one
    /// connection.
    #[default]
    Http,
    /// The same requests without pipelining: each on a keep-alive connection with no request
    /// outstanding, another connection (at most 32) when all are busy. For servers that
    /// mishandle pipelined requests (puma 5, under the Action Cable peer); requests on different
    /// connections may be handled out of order.
    #[serde(rename = "http-pool")]
    #[value(name = "http-pool")]
    HttpPool,
    /// The load generator, over a WebSocket (`GET /ws`) sending `{"type":"publish",...}`
    /// control messages; the server answers each with `published` (or `error`).
    Ws,
    /// Nobody here: the server's own feed (or a trivial sender) produces the messages; the
    /// subscribers only receive, count and time what carries a stamp.
    None,
}

/// As on the command line: `ws`, `socketio`, `actioncable`.
impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Ws => "ws",
            Protocol::SocketIo => "socketio",
            Protocol::ActionCable => "actioncable",
        })
    }
}

/// As on the command line: `http`, `http-pool`, `ws`, `none`.
impl std::fmt::Display for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Publisher::Http => "http",
            Publisher::HttpPool => "http-pool",
            Publisher::Ws => "ws",
            Publisher::None => "none",
        })
    }
}

/// A complete run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub scenario: Scenario,
    pub target: Target,
    pub clients: Clients,
    pub workload: Workload,
    pub stop: Stop,
    /// io_uring runtimes (threads) per process.
    pub threads: usize,
    /// Processes (1: everything in this process).
    pub workers: usize,
    /// Progress report period.
    pub progress_interval: Duration,
}

/// The clients one worker process runs: global indices `first..first + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    pub worker: usize,
    pub first: u64,
    pub count: u64,
}

/// Rate: subscribers keep receiving this long after the publisher's last scheduled send.
pub const DRAIN: Duration = Duration::from_millis(1000);
/// Windowed rate (`saturate`): subscribers keep receiving at most this long after the last
/// publish, until everything published has arrived.
pub const WINDOWED_DRAIN_MAX: Duration = Duration::from_secs(5);

impl Plan {
    /// How long subscribers keep receiving after the measured (publishing) phase, to collect
    /// late arrivals: `--drain`, else `DRAIN` after an open-loop publisher of this load
    /// generator, at most `WINDOWED_DRAIN_MAX` after a windowed one (see `drain_ends_early`);
    /// nothing without a publisher (everything received then belongs to the measured phase).
    pub fn drain(&self) -> Duration {
        if self.scenario != Scenario::Rate {
            return Duration::ZERO;
        }
        match (self.stop.drain, self.workload.publisher, self.workload.schedule) {
            (Some(drain), _, _) => drain,
            (None, Publisher::None, _) => Duration::ZERO,
            (None, _, Schedule::Windowed { .. }) => WINDOWED_DRAIN_MAX,
            (None, _, _) => DRAIN,
        }
    }

    /// Whether the drain ends as soon as the publisher has nothing outstanding: in a windowed
    /// run the publisher sees every subscriber's deliveries (one process), so it knows.
    pub fn drain_ends_early(&self) -> bool {
        matches!(self.workload.schedule, Schedule::Windowed { .. })
    }

    /// Splits the clients as evenly as possible over `self.workers` processes.
    pub fn slices(&self) -> Vec<Slice> {
        split(self.clients.count, self.workers.max(1))
            .into_iter()
            .enumerate()
            .map(|(worker, (first, count))| Slice { worker, first, count })
            .collect()
    }
}

/// Splits `n` items into `parts` contiguous `(first, count)` ranges whose sizes differ by <= 1.
pub fn split(n: u64, parts: usize) -> Vec<(u64, u64)> {
    let parts = parts.max(1) as u64;
    (0..parts)
        .map(|i| {
            let first = n * i / parts;
            let end = n * (i + 1) / parts;
            (first, end - first)
        })
        .collect()
}

/// Parses `127.0.0.1-127.0.0.40`, `127.0.0.1,127.0.0.2` or a single address. Any address of
/// this host (binding says so clearly when one is not); unspecified and multicast ones are
/// refused here.
pub fn parse_source_ips(text: &str) -> anyhow::Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (Ipv4Addr, Ipv4Addr) = (a.trim().parse()?, b.trim().parse()?);
            let (a, b) = (u32::from(a), u32::from(b));
            anyhow::ensure!(a <= b && b - a < 65_536, "bad address range {part}");
            out.extend((a..=b).map(|v| IpAddr::V4(Ipv4Addr::from(v))));
        } else {
            out.push(part.parse()?);
        }
    }
    for ip in &out {
        anyhow::ensure!(
            !ip.is_unspecified() && !ip.is_multicast(),
            "source address {ip} cannot be a connection's own address"
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_schedule() {
        let s = Schedule::Open { per_second: 1000.0 };
        assert_eq!(s.due(0), Some(Duration::ZERO));
        assert_eq!(s.due(1500), Some(Duration::from_millis(1500)));
        assert_eq!(s.due_by(Duration::from_millis(10)), Some(11));
        assert_eq!(s.share(4), Schedule::Open { per_second: 250.0 });
        assert_eq!(Schedule::ClosedLoop.due(3), None);
        assert_eq!(Schedule::Unpaced.share(3), Schedule::Unpaced);
    }

    #[test]
    fn split_is_even_and_complete() {
        let parts = split(10, 3);
        assert_eq!(parts, vec![(0, 3), (3, 3), (6, 4)]);
        for (n, k) in [(0u64, 1usize), (1, 4), (50_000, 3), (7, 7)] {
            let parts = split(n, k);
            assert_eq!(parts.len(), k);
            assert_eq!(parts.iter().map(|p| p.1).sum::<u64>(), n);
            let mut next = 0;
            for (first, count) in parts {
                assert_eq!(first, next);
                next += count;
            }
        }
    }

    #[test]
    fn source_ips() {
        let ips = parse_source_ips("127.0.0.1-127.0.0.40").unwrap();
        assert_eq!(ips.len(), 40);
        assert_eq!(ips[39], "127.0.0.40".parse::<IpAddr>().unwrap());
        assert_eq!(parse_source_ips("127.0.0.2, 127.0.0.3").unwrap().len(), 2);
        assert_eq!(parse_source_ips("10.0.0.1").unwrap().len(), 1);
        assert!(parse_source_ips("0.0.0.0").is_err());
        assert!(parse_source_ips("224.0.0.1").is_err());
        assert!(parse_source_ips("127.0.0.9-127.0.0.1").is_err());
    }

    #[test]
    fn target_parsing() {
        let t = Target::parse("http://127.0.0.1:9001", Some("/echo")).unwrap();
        assert_eq!(t.port, 9001);
        assert_eq!(t.path, "/echo");
        let t = Target::parse("ws://localhost:9/ws?channels=a", None).unwrap();
        assert_eq!(t.path, "/ws?channels=a");
        assert_eq!(t.authority(), "localhost:9");
        assert!(Target::parse("https://127.0.0.1:1", None).is_err());
        // Any address: a remote server is what a load generator is for.
        let t = Target::parse("http://192.0.2.7:8080/ws", None).unwrap();
        assert_eq!((t.addr, t.path.as_str()), ("192.0.2.7:8080".parse().unwrap(), "/ws"));
        let t = Target::parse("ws://[::1]:9/x", None).unwrap();
        assert_eq!((t.addr.port(), t.authority().as_str()), (9, "[::1]:9"));
        assert_eq!(Target::parse("http://127.0.0.1", None).unwrap().port, 80);
        assert!(Target::parse("http://:80", None).is_err());
        assert!(Target::parse("http://127.0.0.1:http", None).is_err());
        assert!(Target::parse("http://no-such-host.invalid:80", None).is_err());
    }

    #[test]
    fn plan_round_trips_as_json() {
        let plan = Plan {
            scenario: Scenario::Echo,
            target: Target::parse("http://127.0.0.1:9001", Some("/echo")).unwrap(),
            clients: Clients {
                count: 10,
                connect: Schedule::Open { per_second: 100.0 },
                connect_concurrency: 8,
                source_ips: parse_source_ips("127.0.0.1-127.0.0.2").unwrap(),
                read_buf_bytes: 4096,
            },
            workload: Workload {
                schedule: Schedule::ClosedLoop,
                message_bytes: 128,
                channels: vec!["bench".into()],
                channels_per_client: 1,
                publisher: Publisher::Http,
                transport: Transport::Sse,
                poll: PollPlan::default(),
                staleness: false,
                ws_receiver: WsReceiver::Tokio,
                arrival: Arrival::default(),
                protocol: Protocol::SocketIo,
            },
            stop: Stop { duration: Duration::from_secs(1), count: Some(5), drain: None },
            threads: 1,
            workers: 2,
            progress_interval: Duration::from_secs(1),
        };
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
        assert_eq!(plan.slices().len(), 2);
        // Echo has nothing to drain; a rate run drains after its publisher, not without one.
        assert_eq!(plan.drain(), Duration::ZERO);
        let mut rate = Plan { scenario: Scenario::Rate, ..plan };
        assert_eq!(rate.drain(), DRAIN);
        assert!(!rate.drain_ends_early());
        rate.workload.schedule = Schedule::Windowed { window: 8 };
        assert_eq!(rate.drain(), WINDOWED_DRAIN_MAX);
        assert!(rate.drain_ends_early());
        rate.stop.drain = Some(Duration::from_millis(300));
        assert_eq!(rate.drain(), Duration::from_millis(300));
        rate.stop.drain = None;
        rate.workload.publisher = Publisher::None;
        assert_eq!(rate.drain(), Duration::ZERO);
    }
}
