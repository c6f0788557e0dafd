//! The live progress line. On a terminal: an `indicatif` bar on stderr, redrawn in place (clients
//! opened while connecting, then the measured phase's elapsed share of its planned duration),
//! with the figures of the last period beside it. Otherwise (logs, CI): one plain line per period.
//! Also keeps each period's latency histogram for `--hlog`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::measure::stats::{Counters, Hist};

/// A bar moves at least this often.
const BAR_STEP: Duration = Duration::from_millis(100);
/// The coordinator wakes for progress at most this often, whatever `--progress-interval` says.
const PERIOD_MIN: Duration = Duration::from_millis(10);

/// One period of the interval log.
#[derive(Debug, Clone)]
pub struct Interval {
    /// Start, relative to the run's start.
    pub start: Duration,
    pub length: Duration,
    pub hist: Hist,
}

/// Where progress goes.
enum Output {
    /// `--quiet`: nowhere.
    Quiet,
    /// Not a terminal: a plain line per period.
    Lines,
    /// A terminal: a bar redrawn in place.
    Bar(ProgressBar),
}

/// What the run is doing, as the bar shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connecting,
    /// The measured phase, planned to last this long (drain included).
    Running(Duration),
    Stopping,
}

pub struct Progress {
    period: Duration,
    started: Instant,
    last: Instant,
    last_counters: Counters,
    current: Hist,
    pub intervals: Vec<Interval>,
    output: Output,
    clients: u64,
    stage: Stage,
    running_since: Option<Instant>,
}

impl Progress {
    pub fn new(period: Duration, clients: u64, quiet: bool) -> Self {
        let output = if quiet {
            Output::Quiet
        } else if std::io::stderr().is_terminal() {
            Output::Bar(new_bar(ProgressDrawTarget::stderr(), clients))
        } else {
            Output::Lines
        };
        Self::with_output(period, clients, output)
    }

    /// A progress bar drawn to `target` (tests: `ProgressDrawTarget::hidden()`).
    pub fn with_bar(period: Duration, clients: u64, target: ProgressDrawTarget) -> Self {
        Self::with_output(period, clients, Output::Bar(new_bar(target, clients)))
    }

    fn with_output(period: Duration, clients: u64, output: Output) -> Self {
        let now = Instant::now();
        Progress {
            period,
            started: now,
            last: now,
            last_counters: Counters::default(),
            current: Hist::new(),
            intervals: Vec::new(),
            output,
            clients,
            stage: Stage::Connecting,
            running_since: None,
        }
    }

    /// The bar, when progress is drawn as one.
    pub fn bar(&self) -> Option<&ProgressBar> {
        match &self.output {
            Output::Bar(bar) => Some(bar),
            _ => None,
        }
    }

    /// The run moved on: the bar switches from clients opened to time elapsed.
    pub fn set_stage(&mut self, stage: Stage) {
        if stage == self.stage {
            return;
        }
        self.stage = stage;
        if let Stage::Running(_) = stage {
            self.running_since = Some(Instant::now());
        }
        if let Output::Bar(bar) = &self.output {
            match stage {
                Stage::Connecting => {}
                Stage::Running(planned) => {
                    bar.set_prefix("running");
                    bar.set_length(planned.as_millis().max(1) as u64);
                    bar.set_position(0);
                }
                Stage::Stopping => {
                    bar.set_prefix("stopping");
                    if let Some(len) = bar.length() {
                        bar.set_position(len);
                    }
                }
            }
        }
    }

    /// When `tick` next has something to do: the end of the current period (at least
    /// `PERIOD_MIN` after the last), and for a bar its next step.
    pub fn next_due(&self, now: Instant) -> Instant {
        let period_end = self.last + self.period.max(PERIOD_MIN);
        match self.output {
            Output::Bar(_) => period_end.min(now + BAR_STEP),
            Output::Quiet | Output::Lines => period_end,
        }
    }

    pub fn add_interval(&mut self, hist: &Hist) {
        self.current.merge(hist);
    }

    /// Moves the bar; prints the period's figures when a period has passed.
    pub fn tick(&mut self, latest: &[Counters], ready: usize, workers: usize) {
        if let Output::Bar(bar) = &self.output {
            match (self.stage, self.running_since) {
                (Stage::Connecting, _) => bar.set_position(open_now(latest)),
                (Stage::Running(planned), Some(since)) => {
                    bar.set_position(since.elapsed().min(planned).as_millis() as u64)
                }
                _ => {}
            }
        }
        if self.last.elapsed() < self.period {
            return;
        }
        self.emit(latest, ready, workers);
    }

    pub fn finish(&mut self, latest: &[Counters]) {
        self.emit(latest, 0, 0);
        if let Output::Bar(bar) = &self.output {
            bar.finish();
        }
    }

    fn emit(&mut self, latest: &[Counters], ready: usize, workers: usize) {
        let now = Instant::now();
        let mut total = Counters::default();
        for c in latest {
            total.merge(c);
        }
        let hist = std::mem::take(&mut self.current);
        let figures = Figures {
            elapsed: now - self.started,
            period: now - self.last,
            clients: self.clients,
            ready,
            workers,
        };
        let line = figures.line(&total, &self.last_counters, &hist);
        if !hist.is_empty() {
            self.intervals.push(Interval { start: self.last - self.started, length: now - self.last, hist });
        }
        self.last = now;
        self.last_counters = total;
        match &self.output {
            Output::Quiet => {}
            Output::Lines => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{line}");
                let _ = err.flush();
            }
            Output::Bar(bar) => bar.set_message(line),
        }
    }
}

fn new_bar(target: ProgressDrawTarget, clients: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(clients.max(1)), target);
    let style = ProgressStyle::with_template("{spinner} {prefix:>10} [{bar:20}] {wide_msg}")
        .expect("a valid template")
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix("connecting");
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Connections open now (opened, less those cut off).
fn open_now(latest: &[Counters]) -> u64 {
    let mut total = Counters::default();
    for c in latest {
        total.merge(c);
    }
    total.connected - total.disconnected.min(total.connected)
}

/// What one progress line says besides the counters.
struct Figures {
    elapsed: Duration,
    period: Duration,
    clients: u64,
    ready: usize,
    workers: usize,
}

impl Figures {
    /// `[  12.0s] open 100/100 failed 0 | sent 0/s recv 20000/s 3.1 MB/s | p50 .. p99 .. max ..`
    fn line(&self, total: &Counters, last: &Counters, hist: &Hist) -> String {
        let seconds = self.period.as_secs_f64().max(1e-9);
        format!(
            "[{:>6.1}s] open {}/{} failed {} | sent {:.0}/s recv {:.0}/s {:.1} MB/s | {}{}",
            self.elapsed.as_secs_f64(),
            total.connected - total.disconnected.min(total.connected),
            self.clients,
            total.connect_failed + total.handshake_failed,
            total.messages_sent.saturating_sub(last.messages_sent) as f64 / seconds,
            total.messages_received.saturating_sub(last.messages_received) as f64 / seconds,
            total.bytes_received.saturating_sub(last.bytes_received) as f64 / seconds / 1e6,
            if hist.is_empty() {
                "-".to_string()
            } else {
                format!(
                    "p50 {} p99 {} max {}",
                    fmt_ns(hist.at(0.5)),
                    fmt_ns(hist.at(0.99)),
                    fmt_ns(hist.at(1.0))
                )
            },
            if self.workers > 0 && self.ready < self.workers {
                format!(" (workers ready {}/{})", self.ready, self.workers)
            } else {
                String::new()
            },
        )
    }
}

/// `1234567` ns -> `1.23ms`.
pub fn fmt_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e3 {
        format!("{ns:.0}ns")
    } else if ns < 1e6 {
        format!("{:.1}µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2}ms", ns / 1e6)
    } else {
        format!("{:.2}s", ns / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(connected: u64, received: u64) -> Counters {
        Counters {
            connected,
            messages_received: received,
            bytes_received: received * 100,
            ..Counters::default()
        }
    }

    #[test]
    fn a_line_gives_rates_over_the_period_and_the_latency() {
        let figures = Figures {
            elapsed: Duration::from_secs(3),
            period: Duration::from_secs(2),
            clients: 10,
            ready: 1,
            workers: 2,
        };
        let mut hist = Hist::new();
        hist.record_ns(2_000_000);
        let line = figures.line(&counters(8, 5000), &counters(8, 1000), &hist);
        assert!(
            line.starts_with("[   3.0s] open 8/10 failed 0 | sent 0/s recv 2000/s 0.2 MB/s | p50 2.00ms"),
            "{line}"
        );
        assert!(line.ends_with("(workers ready 1/2)"), "{line}");
        let quiet = figures.line(&counters(8, 5000), &counters(8, 5000), &Hist::new());
        assert!(quiet.contains("recv 0/s") && quiet.contains("| -"), "{quiet}");
    }

    #[test]
    fn the_bar_follows_clients_then_time_and_keeps_the_last_figures() {
        let mut p = Progress::with_bar(Duration::ZERO, 10, ProgressDrawTarget::hidden());
        p.tick(&[counters(3, 0), counters(4, 0)], 0, 2);
        let bar = p.bar().unwrap().clone();
        assert_eq!((bar.position(), bar.length()), (7, Some(10)));
        assert_eq!(bar.prefix(), "connecting");
        p.set_stage(Stage::Running(Duration::from_secs(60)));
        assert_eq!((bar.position(), bar.length()), (0, Some(60_000)));
        assert_eq!(bar.prefix(), "running");
        p.tick(&[counters(10, 40)], 2, 2);
        assert!(bar.position() < 60_000);
        assert!(bar.message().contains("open 10/10"), "{}", bar.message());
        // A period's latency goes to the line and to the interval log.
        let mut hist = Hist::new();
        hist.record_ns(1_500);
        p.add_interval(&hist);
        p.tick(&[counters(10, 45)], 2, 2);
        assert!(bar.message().contains("p50 1.5µs"), "{}", bar.message());
        assert_eq!(p.intervals.len(), 1);
        p.set_stage(Stage::Stopping);
        assert_eq!(bar.position(), 60_000);
        p.finish(&[counters(10, 50)]);
        assert!(bar.is_finished());
    }

    #[test]
    fn the_next_wake_up_is_the_period_or_the_bar_step() {
        let lines = Progress::with_output(Duration::from_secs(1), 1, Output::Lines);
        let now = Instant::now();
        assert_eq!(lines.next_due(now), lines.last + Duration::from_secs(1));
        let bar = Progress::with_bar(Duration::from_secs(1), 1, ProgressDrawTarget::hidden());
        assert!(bar.next_due(now) <= now + BAR_STEP);
        // A zero period does not turn into a busy loop.
        let zero = Progress::with_output(Duration::ZERO, 1, Output::Quiet);
        assert_eq!(zero.next_due(now), zero.last + PERIOD_MIN);
    }

    #[test]
    fn units() {
        assert_eq!(fmt_ns(12), "12ns");
        assert_eq!(fmt_ns(12_345), "12.3µs");
        assert_eq!(fmt_ns(1_234_567), "1.23ms");
        assert_eq!(fmt_ns(2_500_000_000), "2.50s");
    }
}
