//! The live progress line: rewritten in place on a terminal, one plain line per period
//! otherwise (logs, CI). Also keeps each period's latency histogram for `--hlog`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::stats::{Counters, Hist};

/// One period of the interval log.
#[derive(Debug, Clone)]
pub struct Interval {
    /// Start, relative to the run's start.
    pub start: Duration,
    pub length: Duration,
    pub hist: Hist,
}

pub struct Progress {
    period: Duration,
    started: Instant,
    last: Instant,
    last_counters: Counters,
    current: Hist,
    pub intervals: Vec<Interval>,
    tty: bool,
    quiet: bool,
    clients: u64,
}

impl Progress {
    pub fn new(period: Duration, clients: u64, quiet: bool) -> Self {
        let now = Instant::now();
        Progress {
            period,
            started: now,
            last: now,
            last_counters: Counters::default(),
            current: Hist::new(),
            intervals: Vec::new(),
            tty: std::io::stderr().is_terminal(),
            quiet,
            clients,
        }
    }

    pub fn add_interval(&mut self, hist: &Hist) {
        self.current.merge(hist);
    }

    /// Prints when a period has passed.
    pub fn tick(&mut self, latest: &[Counters], ready: usize, workers: usize) {
        if self.last.elapsed() < self.period {
            return;
        }
        self.emit(latest, ready, workers);
    }

    pub fn finish(&mut self, latest: &[Counters]) {
        self.emit(latest, 0, 0);
        if self.tty && !self.quiet {
            eprintln!();
        }
    }

    fn emit(&mut self, latest: &[Counters], ready: usize, workers: usize) {
        let now = Instant::now();
        let seconds = (now - self.last).as_secs_f64().max(1e-9);
        let mut total = Counters::default();
        for c in latest {
            total.merge(c);
        }
        let hist = std::mem::take(&mut self.current);
        let line = format!(
            "[{:>6.1}s] open {}/{} failed {} | sent {:.0}/s recv {:.0}/s {:.1} MB/s | {}{}",
            (now - self.started).as_secs_f64(),
            total.connected - total.disconnected.min(total.connected),
            self.clients,
            total.connect_failed + total.handshake_failed,
            (total.messages_sent - self.last_counters.messages_sent) as f64 / seconds,
            (total.messages_received - self.last_counters.messages_received) as f64 / seconds,
            (total.bytes_received - self.last_counters.bytes_received) as f64 / seconds / 1e6,
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
            if workers > 0 && ready < workers {
                format!(" (workers ready {ready}/{workers})")
            } else {
                String::new()
            },
        );
        if !hist.is_empty() {
            self.intervals.push(Interval { start: self.last - self.started, length: now - self.last, hist });
        }
        self.last = now;
        self.last_counters = total;
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
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
    use super::fmt_ns;

    #[test]
    fn units() {
        assert_eq!(fmt_ns(12), "12ns");
        assert_eq!(fmt_ns(12_345), "12.3µs");
        assert_eq!(fmt_ns(1_234_567), "1.23ms");
        assert_eq!(fmt_ns(2_500_000_000), "2.50s");
    }
}
