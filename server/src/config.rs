//! Command line and environment configuration. Every flag has an environment variable of the same
//! name (`TICKCAST_` + upper snake case) and a default chosen for a broadcast server; the reasons
//! and measured effects are in `docs/tuning.md`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::feed::FeedSpec;
use crate::hub::Pattern;
use crate::sendq::SlowConsumerPolicy;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `PATTERN=POLICY`: a slow-consumer policy for the channels a pattern matches.
#[derive(Debug, Clone)]
pub struct PolicyRule {
    pub pattern: Pattern,
    pub policy: SlowConsumerPolicy,
}

fn parse_policy_rule(s: &str) -> Result<PolicyRule, String> {
    let (pattern, policy) = s
        .split_once('=')
        .ok_or_else(|| format!("expected PATTERN=POLICY (e.g. ticker.*=conflate), got {s:?}"))?;
    let pattern = Pattern::parse(pattern.trim(), true).map_err(|e| e.to_string())?;
    let policy = <SlowConsumerPolicy as clap::ValueEnum>::from_str(policy.trim(), true)
        .map_err(|_| format!("unknown policy {policy:?}: use disconnect, drop-oldest or conflate"))?;
    Ok(PolicyRule { pattern, policy })
}

pub use tickcast_protocol::units::{parse_duration, parse_size};

/// tickcast: a thread-per-core io_uring WebSocket broadcast server.
#[derive(Parser, Debug, Clone)]
#[command(name = "tickcast", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on (repeatable). Every worker thread gets its own SO_REUSEPORT listener
    /// per address. Port 0 picks a free port, shared by all workers.
    #[arg(long = "listen", env = "TICKCAST_LISTEN", value_delimiter = ',', default_value = "127.0.0.1:8080")]
    pub listen: Vec<SocketAddr>,

    /// Worker threads, each with its own io_uring, listeners and connections.
    /// Default: the number of CPUs this process may run on.
    #[arg(long, env = "TICKCAST_THREADS")]
    pub threads: Option<usize>,

    /// Pin worker N to the N-th CPU this process may run on.
    #[arg(long, env = "TICKCAST_PIN")]
    pub pin: bool,

    /// Submission queue entries per ring (the completion queue gets 4x). Power of two, 8 to 16384.
    #[arg(long, env = "TICKCAST_RING_ENTRIES", default_value_t = 4096)]
    pub ring_entries: u32,

    /// Use a kernel SQ polling thread per ring; the value is its idle time in ms before it sleeps.
    #[arg(long, env = "TICKCAST_SQPOLL", num_args = 0..=1, default_missing_value = "1000")]
    pub sqpoll: Option<u32>,

    /// Receive buffers per worker in the provided buffer ring (power of two, at most 32768).
    #[arg(long, env = "TICKCAST_BUF_COUNT", default_value_t = 1024)]
    pub buf_count: u16,

    /// Size of each receive buffer.
    #[arg(long, env = "TICKCAST_BUF_SIZE", default_value = "4KiB", value_parser = parse_size)]
    pub buf_size: usize,

    /// Most iovecs (queued frames) carried by one vectored send.
    #[arg(long, env = "TICKCAST_MAX_IOVECS", default_value_t = 64)]
    pub max_iovecs: usize,

    /// Bytes a connection may have queued for sending before it is treated as a slow consumer
    /// (closed with 1013 and counted).
    #[arg(long, env = "TICKCAST_SEND_QUEUE_LIMIT", default_value = "1MiB", value_parser = parse_size)]
    pub send_queue_limit: usize,

    /// Most concurrent connections, over all workers; connections past it get a 503 and are
    /// closed. Default: as many as the workers' descriptor tables hold. Each worker's
    /// direct-descriptor table is capped by the kernel at RLIMIT_NOFILE (minus a little headroom
    /// for refusals): add workers to hold more.
    #[arg(long, env = "TICKCAST_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Largest frame a client may send (1009 past it).
    #[arg(long, env = "TICKCAST_MAX_FRAME", default_value = "64KiB", value_parser = parse_size)]
    pub max_frame: usize,

    /// Largest message a client may send (1009 past it).
    #[arg(long, env = "TICKCAST_MAX_MESSAGE", default_value = "64KiB", value_parser = parse_size)]
    pub max_message: usize,

    /// Largest message (and frame) on the /echo endpoint, which conformance suites and round-trip
    /// measurements use with large payloads.
    #[arg(long, env = "TICKCAST_ECHO_MAX_MESSAGE", default_value = "16MiB", value_parser = parse_size)]
    pub echo_max_message: usize,

    /// Most bytes in a request head (431 past it).
    #[arg(long, env = "TICKCAST_MAX_HEADER_BYTES", default_value = "8KiB", value_parser = parse_size)]
    pub max_header_bytes: usize,

    /// Most header lines in a request (431 past it).
    #[arg(long, env = "TICKCAST_MAX_HEADERS", default_value_t = 32)]
    pub max_headers: usize,

    /// Time a new connection has to complete its HTTP request or handshake.
    #[arg(long, env = "TICKCAST_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// Silence from a client after which the server pings it.
    #[arg(long, env = "TICKCAST_IDLE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Time a client has to answer a server ping (with any frame) before it is dropped.
    #[arg(long, env = "TICKCAST_PONG_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub pong_timeout: Duration,

    /// Time the peer has to answer our close frame (and to close TCP) before we drop it.
    #[arg(long, env = "TICKCAST_CLOSE_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub close_timeout: Duration,

    /// On SIGINT/SIGTERM: time given to clients to complete the close handshake before exit.
    #[arg(long, env = "TICKCAST_SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Listen backlog per listener.
    #[arg(long, env = "TICKCAST_BACKLOG", default_value_t = 4096)]
    pub backlog: i32,

    /// Built-in feed (repeatable): `ticker:symbols=500,rate=2000` (random-walk prices on
    /// `ticker.<SYMBOL>`, rate = messages/s over all symbols) or `news:rate=5` (headlines on
    /// `news.<topic>`). Default: both, unless --no-feed.
    #[arg(long = "feed", env = "TICKCAST_FEED", value_delimiter = ';')]
    pub feeds: Vec<String>,

    /// Run no built-in feed.
    #[arg(long, env = "TICKCAST_NO_FEED", conflicts_with = "feeds")]
    pub no_feed: bool,

    /// Messages kept per channel for recovery with `since` / `Last-Event-ID`.
    #[arg(long, env = "TICKCAST_HISTORY", default_value_t = 1024)]
    pub history: usize,

    /// Bytes of history kept per channel (whichever of --history and this is reached first).
    #[arg(long, env = "TICKCAST_HISTORY_BYTES", default_value = "1MiB", value_parser = parse_size)]
    pub history_bytes: usize,

    /// Most channels the server holds (publishing or subscribing to a new one fails past it).
    #[arg(long, env = "TICKCAST_MAX_CHANNELS", default_value_t = 10_000)]
    pub max_channels: usize,

    /// Most subscriptions (channels and prefix patterns) per connection.
    #[arg(long, env = "TICKCAST_MAX_SUBSCRIPTIONS", default_value_t = 256)]
    pub max_subscriptions: usize,

    /// What happens to a subscriber whose send queue is full: close it with 1013, drop the
    /// oldest queued messages (with a `gap` notice), or keep only the newest per channel.
    #[arg(long, env = "TICKCAST_SLOW_CONSUMER", value_enum, default_value = "drop-oldest")]
    pub slow_consumer: SlowConsumerPolicy,

    /// Per-channel override of --slow-consumer (repeatable), e.g. `ticker.*=conflate`; the
    /// first matching rule wins.
    #[arg(long = "slow-consumer-rule", env = "TICKCAST_SLOW_CONSUMER_RULES", value_delimiter = ';', value_parser = parse_policy_rule)]
    pub slow_consumer_rules: Vec<PolicyRule>,

    /// Let WebSocket clients publish (`{"type":"publish"}`) to channels matching this pattern
    /// (repeatable; `*` for every channel). Default: clients cannot publish.
    #[arg(long = "allow-client-publish", env = "TICKCAST_ALLOW_CLIENT_PUBLISH", value_delimiter = ';')]
    pub client_publish: Vec<String>,

    /// Bearer token required by `POST /publish` (and client publishing). Without it, only
    /// connections on loopback listeners may publish.
    #[arg(long, env = "TICKCAST_PUBLISH_TOKEN", hide_env_values = true)]
    pub publish_token: Option<String>,

    /// Largest request body (`POST /publish`); 413 past it.
    #[arg(long, env = "TICKCAST_MAX_BODY", default_value = "64KiB", value_parser = parse_size)]
    pub max_body: usize,

    /// Most messages in one batch publish.
    #[arg(long, env = "TICKCAST_MAX_BATCH", default_value_t = 1000)]
    pub max_batch: usize,

    /// Let pages from this origin read /sse, /poll, /longpoll and /publish answers (CORS;
    /// repeatable, or `*` for any origin). Default: same-origin only.
    #[arg(long = "cors-origin", env = "TICKCAST_CORS_ORIGIN", value_delimiter = ';')]
    pub cors_origins: Vec<String>,

    /// Comment line sent on a quiet SSE stream this often, so proxies and clients keep it open.
    #[arg(long, env = "TICKCAST_SSE_HEARTBEAT", default_value = "15s", value_parser = parse_duration)]
    pub sse_heartbeat: Duration,

    /// Longest a long-poll may wait for news (a larger `timeout=` is capped to it).
    #[arg(long, env = "TICKCAST_LONGPOLL_MAX_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub longpoll_max_timeout: Duration,

    /// Most messages in one /poll or /longpoll answer (the rest come with the next request).
    #[arg(long, env = "TICKCAST_POLL_BATCH", default_value_t = 1000)]
    pub poll_batch: usize,

    /// Most bytes of envelopes in one /poll or /longpoll answer: a client far behind catches
    /// up in answers of this size, each `next` continuing where the last stopped (one message
    /// larger than this still goes, alone). Bounds what one request makes the server hold.
    #[arg(long, env = "TICKCAST_MAX_ANSWER_BYTES", default_value = "256KiB", value_parser = parse_size)]
    pub max_answer_bytes: usize,

    /// Bytes of /poll and /longpoll answers a worker holds for clients that have not read them
    /// yet, all together; past it new answers get `503` with `Retry-After: 1`
    /// (`tickcast_answers_refused_total`). Bounds what clients that ask and never read cost.
    #[arg(long, env = "TICKCAST_ANSWER_BUDGET", default_value = "64MiB", value_parser = parse_size)]
    pub answer_budget: usize,

    /// Log filter (tracing EnvFilter syntax), e.g. `info`, `tickcast=debug`. An invalid filter
    /// is a startup error.
    #[arg(long, env = "TICKCAST_LOG", default_value = "info")]
    pub log: String,

    /// Log lines as text (for people) or JSON (one object per line with timestamp, level,
    /// thread (the worker: `tickcast-wN`) and fields, for log shippers).
    #[arg(long, env = "TICKCAST_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Config {
    /// The HTTP side's settings.
    pub fn http_options(&self) -> crate::http::HttpOptions {
        crate::http::HttpOptions {
            cors_origins: self.cors_origins.clone(),
            max_subscriptions: self.max_subscriptions,
            poll_limits: crate::poll::AnswerLimits {
                messages: self.poll_batch,
                bytes: self.max_answer_bytes,
            },
            // One per call: each worker resolves its options once, and has its own budget.
            answer_budget: crate::poll::AnswerBudget::new(self.answer_budget),
            longpoll_default_timeout: Duration::from_secs(25).min(self.longpoll_max_timeout),
            longpoll_max_timeout: self.longpoll_max_timeout,
        }
    }

    /// Checks cross-field rules and fills in derived defaults.
    pub fn validate(mut self) -> Result<Self, String> {
        let threads = match self.threads {
            Some(0) => return Err("--threads must be at least 1".into()),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        self.threads = Some(threads);
        // The completion queue gets 4x the entries, and the kernel caps it at 65,536.
        if !self.ring_entries.is_power_of_two() || !(8..=16384).contains(&self.ring_entries) {
            return Err("--ring-entries must be a power of two in 8..=16384 (the completion queue gets 4x, at most 65,536)".into());
        }
        if !self.buf_count.is_power_of_two() || self.buf_count > 32768 {
            return Err("--buf-count must be a power of two, at most 32768".into());
        }
        if !(256..=1 << 20).contains(&self.buf_size) {
            return Err("--buf-size must be between 256 B and 1 MiB".into());
        }
        if !(1..=1024).contains(&self.max_iovecs) {
            return Err("--max-iovecs must be in 1..=1024 (the kernel's UIO_MAXIOV)".into());
        }
        if self.send_queue_limit < 1024 {
            return Err("--send-queue-limit must be at least 1 KiB".into());
        }
        if self.poll_batch == 0 {
            return Err("--poll-batch must be at least 1".into());
        }
        if self.sse_heartbeat < Duration::from_millis(100) {
            return Err("--sse-heartbeat must be at least 100ms".into());
        }
        if let Some(bad) = self.cors_origins.iter().find(|o| o.is_empty() || o.contains(['\r', '\n', ' '])) {
            return Err(format!("--cors-origin {bad:?} is not an origin (e.g. https://example.com, or *)"));
        }
        if self.max_connections == Some(0) {
            return Err("--max-connections must be at least 1".into());
        }
        if self.max_frame == 0 || self.max_message == 0 || self.echo_max_message == 0 {
            return Err("message and frame limits must be positive".into());
        }
        if self.max_header_bytes < 256 || self.max_headers < 4 {
            return Err("--max-header-bytes must be >= 256 and --max-headers >= 4".into());
        }
        if self.listen.is_empty() {
            return Err("at least one --listen address is needed".into());
        }
        if self.history == 0 || self.max_channels == 0 || self.max_subscriptions == 0 || self.max_batch == 0 {
            return Err(
                "--history, --max-channels, --max-subscriptions and --max-batch must be positive".into()
            );
        }
        self.feed_specs()?;
        self.client_publish_patterns()?;
        Ok(self)
    }

    /// The built-in feeds to run.
    pub fn feed_specs(&self) -> Result<Vec<FeedSpec>, String> {
        if self.no_feed {
            return Ok(Vec::new());
        }
        if self.feeds.is_empty() {
            return Ok(vec![FeedSpec::DEFAULT_TICKER, FeedSpec::DEFAULT_NEWS]);
        }
        self.feeds.iter().map(|f| f.parse::<FeedSpec>().map_err(|e| format!("--feed {f:?}: {e}"))).collect()
    }

    /// Channels WebSocket clients may publish to.
    pub fn client_publish_patterns(&self) -> Result<Vec<Pattern>, String> {
        self.client_publish
            .iter()
            .map(|p| Pattern::parse(p, true).map_err(|e| format!("--allow-client-publish {p:?}: {e}")))
            .collect()
    }

    /// The slow-consumer policy of a channel.
    pub fn policy_for(&self, channel: &str) -> SlowConsumerPolicy {
        self.slow_consumer_rules
            .iter()
            .find(|r| r.pattern.matches(channel))
            .map_or(self.slow_consumer, |r| r.policy)
    }

    /// Worker thread count (after [`Config::validate`]).
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("3 parsecs").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("1 parsec").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn defaults_validate() {
        let cfg = Config::try_parse_from(["tickcast"]).unwrap().validate().unwrap();
        assert!(cfg.threads() >= 1);
        assert_eq!(cfg.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
        let bad = Config::try_parse_from(["tickcast", "--buf-count", "1000"]).unwrap();
        assert!(bad.validate().is_err());
        // 4 x 32768 completion entries is more than the kernel gives a ring.
        let bad = Config::try_parse_from(["tickcast", "--ring-entries", "32768"]).unwrap();
        assert!(bad.validate().unwrap_err().contains("16384"));
        for bad in [["--poll-batch", "0"], ["--sse-heartbeat", "10ms"], ["--cors-origin", "a b"]] {
            let cfg = Config::try_parse_from(["tickcast", bad[0], bad[1]]).unwrap();
            assert!(cfg.validate().is_err(), "{bad:?}");
        }
        assert_eq!(cfg.feed_specs().unwrap().len(), 2);
    }

    #[test]
    fn channel_rules() {
        let cfg = Config::try_parse_from([
            "tickcast",
            "--slow-consumer",
            "disconnect",
            "--slow-consumer-rule",
            "ticker.*=conflate",
            "--feed",
            "news:rate=1",
        ])
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(cfg.policy_for("ticker.AAPL"), SlowConsumerPolicy::Conflate);
        assert_eq!(cfg.policy_for("news.x"), SlowConsumerPolicy::Disconnect);
        assert_eq!(cfg.feed_specs().unwrap().len(), 1);
        assert!(Config::try_parse_from(["tickcast", "--slow-consumer-rule", "ticker.*=fast"]).is_err());
        assert!(Config::try_parse_from(["tickcast", "--slow-consumer-rule", "tick*=conflate"]).is_err());
        let bad_feed = Config::try_parse_from(["tickcast", "--feed", "weather:rate=1"]).unwrap();
        assert!(bad_feed.validate().is_err());
    }
}
