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

pub use tickcast_protocol::units::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

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
