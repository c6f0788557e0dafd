//! Built-in synthetic feeds, so a server with no publisher still has live channels:
//!
//! * `ticker:symbols=500,rate=2000`: random-walk prices on `ticker.<SYMBOL>`, `rate`
//!   messages per second in total over all symbols (each message updates one symbol picked
//!   at random): `{"symbol":"AAPL","price":187.23,"change":-0.12}`;
//! * `news:rate=5`: generated headlines on `news.<topic>` for a handful of topics:
//!   `{"topic":"markets","headline":"..."}`.
//!
//! Both accept `seed=N` (a fixed seed makes the sequence of messages reproducible). Every
//! feed runs on ONE thread ([`spawn_feeds`]) on a fixed schedule: message `k` of a feed is
//! due at `k / rate` after the start (no drift), late messages are caught up in bounded
//! batches, and the thread sleeps between due times.

#![warn(missing_docs)]

use std::fmt;
use std::io::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use rand::rngs::StdRng;
use tickcast_protocol::envelope::Data;

use crate::hub::{Channel, Hub};

mod news;
mod schedule;
mod ticker;

pub use news::{NewsFeed, TOPICS};
pub use schedule::Schedule;
pub use ticker::{TickerFeed, ticker_symbols};

/// Most symbols a ticker feed may have (each is a channel).
pub const MAX_SYMBOLS: usize = 100_000;
/// Highest rate a feed may have, messages per second.
pub const MAX_RATE: f64 = 1_000_000.0;

/// What a feed produces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FeedKind {
    /// Random-walk prices over `symbols` symbols.
    Ticker {
        /// Number of symbols (channels `ticker.<SYMBOL>`).
        symbols: usize,
    },
    /// Headlines over [`TOPICS`] (channels `news.<topic>`).
    News,
}

/// A parsed `--feed` argument.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeedSpec {
    /// The feed.
    pub kind: FeedKind,
    /// Messages per second, over all of the feed's channels.
    pub rate: f64,
    /// Seed of the feed's random numbers; `None` picks one at start.
    pub seed: Option<u64>,
}

impl FeedSpec {
    /// `ticker:symbols=500,rate=2000`.
    pub const DEFAULT_TICKER: Self =
        Self { kind: FeedKind::Ticker { symbols: 500 }, rate: 2000.0, seed: None };
    /// `news:rate=5`.
    pub const DEFAULT_NEWS: Self = Self { kind: FeedKind::News, rate: 5.0, seed: None };
}

/// Why a feed spec did not parse; the message names the spec and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedSpecError {
    spec: String,
    reason: String,
}

impl fmt::Display for FeedSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid feed '{}': {} (expected e.g. ticker:symbols=500,rate=2000 or news:rate=5)",
            self.spec, self.reason
        )
    }
}

impl std::error::Error for FeedSpecError {}

impl FromStr for FeedSpec {
    type Err = FeedSpecError;

    /// `kind[:key=value[,key=value]...]`; omitted keys take the defaults above.
    fn from_str(spec: &str) -> Result<Self, FeedSpecError> {
        let fail = |reason: String| FeedSpecError { spec: clip(spec, 200), reason };
        let (kind, params) = spec.split_once(':').unwrap_or((spec, ""));
        let mut out = match kind.trim() {
            "ticker" => Self::DEFAULT_TICKER,
            "news" => Self::DEFAULT_NEWS,
            other => {
                return Err(fail(format!("unknown feed kind '{}' (known: ticker, news)", clip(other, 40))));
            }
        };
        for param in params.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, value)) = param.split_once('=') else {
                return Err(fail(format!("'{}' is not key=value", clip(param, 40))));
            };
            match (key.trim(), &mut out.kind) {
                ("rate", _) => out.rate = parse_rate(value.trim()).map_err(fail)?,
                ("seed", _) => {
                    out.seed = Some(
                        value
                            .trim()
                            .parse()
                            .map_err(|_| fail(format!("seed '{}' is not a u64", clip(value, 40))))?,
                    )
                }
                ("symbols", FeedKind::Ticker { symbols }) => {
                    *symbols = parse_symbols(value.trim()).map_err(fail)?
                }
                (key, _) => {
                    return Err(fail(format!(
                        "unknown parameter '{}' for a {} feed",
                        clip(key, 40),
                        kind.trim()
                    )));
                }
            }
        }
        Ok(out)
    }
}

/// At most `max` characters of `s`, for echoing user input in errors.
fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn parse_rate(value: &str) -> Result<f64, String> {
    let shown = clip(value, 40);
    match value.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 && rate <= MAX_RATE => Ok(rate),
        Ok(_) => Err(format!("rate '{shown}' must be > 0 and <= {MAX_RATE} messages/s")),
        Err(_) => Err(format!("rate '{shown}' is not a number")),
    }
}

fn parse_symbols(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_SYMBOLS).contains(&n) => Ok(n),
        _ => Err(format!("symbols '{}' must be an integer from 1 to {MAX_SYMBOLS}", clip(value, 40))),
    }
}

/// A feed's generator and the channels it publishes on (index = the generator's choice).
enum Generator {
    Ticker(TickerFeed),
    News(NewsFeed),
}

impl Generator {
    /// Writes the next message into `out`; returns the index of its channel.
    fn next(&mut self, out: &mut Vec<u8>) -> usize {
        match self {
            Self::Ticker(t) => t.next(out),
            Self::News(n) => n.next(out),
        }
    }
}

struct Running {
    generator: Generator,
    /// `None` where the channel could not be created (hub full): those messages are skipped.
    channels: Vec<Option<Arc<Channel>>>,
    schedule: Schedule,
}

impl Running {
    fn new(hub: &Hub, spec: &FeedSpec) -> Self {
        let seed = spec.seed.unwrap_or_else(|| rand::rng().random());
        let (generator, names): (Generator, Vec<String>) = match spec.kind {
            FeedKind::Ticker { symbols } => {
                let feed = TickerFeed::new(symbols, seed);
                let names = feed.symbols().iter().map(|s| format!("ticker.{s}")).collect();
                (Generator::Ticker(feed), names)
            }
            FeedKind::News => {
                (Generator::News(NewsFeed::new(seed)), TOPICS.iter().map(|t| format!("news.{t}")).collect())
            }
        };
        let channels = names
            .iter()
            .map(|name| match hub.channel(name) {
                Ok(channel) => Some(channel),
                Err(e) => {
                    tracing::warn!(channel = %name, "feed channel not created: {e}");
                    None
                }
            })
            .collect();
        Self { generator, channels, schedule: Schedule::new(spec.rate) }
    }
}

/// Longest sleep between checks of the stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);
/// Shortest sleep: at high rates, publish what is due in batches rather than waking for each
/// message (at most 1 ms late, far below what a synthetic feed needs).
const MIN_SLEEP: Duration = Duration::from_millis(1);

/// Runs `specs` on one thread until `stop` is set (it returns within ~50 ms of it).
///
/// # Panics
///
/// If the OS cannot create a thread (as `std::thread::spawn`).
pub fn spawn_feeds(hub: Arc<Hub>, specs: Vec<FeedSpec>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("tickcast-feeds".into())
        .spawn(move || run_feeds(&hub, &specs, &stop))
        .expect("spawning the feed thread")
}

fn run_feeds(hub: &Hub, specs: &[FeedSpec], stop: &AtomicBool) {
    let mut feeds: Vec<Running> = specs.iter().map(|spec| Running::new(hub, spec)).collect();
    let mut buf = Vec::with_capacity(256);
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now_ns = start.elapsed().as_nanos() as u64;
        for feed in &mut feeds {
            let due = feed.schedule.take_due(now_ns);
            for _ in 0..due {
                buf.clear();
                let index = feed.generator.next(&mut buf);
                if let Some(Some(channel)) = feed.channels.get(index) {
                    hub.publish_to(channel, Data::Json(&buf), wall_clock_us());
                }
            }
        }
        let next_ns = feeds.iter().map(|f| f.schedule.next_due_ns()).min().unwrap_or(u64::MAX);
        let wait = Duration::from_nanos(next_ns.saturating_sub(start.elapsed().as_nanos() as u64));
        std::thread::sleep(wait.clamp(MIN_SLEEP, STOP_POLL));
    }
}

/// Now, in µs since the Unix epoch (0 if the clock is before it).
fn wall_clock_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Writes `cents` as a decimal amount with two places (`-0.05`, `187.23`).
fn write_cents(out: &mut Vec<u8>, cents: i64) {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{sign}{}.{:02}", abs / 100, abs % 100);
}

/// A small random helper shared by the generators.
fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

#[cfg(test)]
mod tests;
