//! Clocks and durations.
//!
//! Every timestamp carried in a message is wall-clock nanoseconds since the Unix epoch
//! (`now_ns`): publisher and subscribers may live in different worker processes on the same
//! machine, and the wall clock is the one clock they share. Intervals measured inside one task
//! use `Instant`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest a precise wait spins (after sleeping until this long before its due time).
pub const SPIN_MAX_NS: u64 = 200_000;

/// Wall-clock nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Blocks the calling thread until wall-clock `due_ns`: sleeps with an absolute
/// `clock_nanosleep(CLOCK_REALTIME)` (no timer wheel, no rounding to milliseconds) until
/// `spin_ns` before it, then spins on the clock. The spin is bounded: at most `spin_ns` after a
/// timely wake-up, and never more than `spin_ns` + 1 ms whatever the clock does. Returns at once
/// when `due_ns` has passed.
pub fn wait_until_ns(due_ns: u64, spin_ns: u64) {
    let spin_ns = spin_ns.min(SPIN_MAX_NS);
    let wake_ns = due_ns.saturating_sub(spin_ns);
    // Bounded: each turn either sleeps until `wake_ns` or is interrupted by a signal.
    for _ in 0..16 {
        if now_ns() >= wake_ns {
            break;
        }
        let request = rustix::thread::Timespec {
            tv_sec: (wake_ns / 1_000_000_000) as i64,
            tv_nsec: (wake_ns % 1_000_000_000) as i64,
        };
        let _ = rustix::thread::clock_nanosleep_absolute(rustix::thread::ClockId::Realtime, &request);
    }
    let spin_limit = Instant::now() + Duration::from_nanos(spin_ns + 1_000_000);
    while now_ns() < due_ns && Instant::now() < spin_limit {
        std::hint::spin_loop();
    }
}

/// Parses `30s`, `500ms`, `2m`, `1h`, `250us` or a bare number of seconds (`1.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("invalid duration {text:?}"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown duration unit {other:?} in {text:?}")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("invalid duration {text:?}"));
    }
    // A bound keeps `Instant + duration` (deadlines, schedules) far from overflowing, and
    // `from_secs_f64` would panic on a number too large for a `Duration`.
    if seconds > DURATION_MAX.as_secs_f64() {
        return Err(format!("duration {text:?} is too long (at most 366 days)"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("duration {text:?} is too long"))
}

/// The longest duration any flag takes.
const DURATION_MAX: Duration = Duration::from_secs(366 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("99999999999999999999999h").is_err());
        // Long enough to overflow an `Instant` deadline: refused, not a panic later.
        assert!(parse_duration("9000000000h").is_err());
        assert_eq!(parse_duration("8784h").unwrap(), DURATION_MAX);
        assert!(parse_duration("8785h").is_err());
    }

    #[test]
    fn precise_wait_is_on_time_and_bounded() {
        // Passed due times return at once.
        let began = Instant::now();
        wait_until_ns(now_ns() - 1_000_000, SPIN_MAX_NS);
        assert!(began.elapsed() < Duration::from_millis(5));
        // A due time 3 ms ahead: never early; late only by scheduling noise (generous bound for
        // a shared machine).
        let mut late_max = 0;
        for _ in 0..5 {
            let due = now_ns() + 3_000_000;
            wait_until_ns(due, SPIN_MAX_NS);
            let now = now_ns();
            assert!(now >= due, "woke {} ns early", due - now);
            late_max = late_max.max(now - due);
        }
        assert!(late_max < 20_000_000, "late by {late_max} ns");
    }
}
