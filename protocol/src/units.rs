//! Durations and byte sizes as people type them on a command line: one grammar for the server's
//! and the load generator's flags, so `250us` or `64KiB` mean the same thing to both.
//!
//! * durations: a number (integer or decimal) and a unit `us`/`µs`, `ms`, `s`, `m`/`min`, `h`;
//!   a bare number is seconds. At most [`DURATION_MAX`] (366 days), so `Instant + d` never
//!   overflows a deadline and no flag can make the process panic.
//! * sizes: a whole number and a unit `B`, `KiB`, `MiB`, `GiB` (binary; `K`, `KB`, `M`, `MB`,
//!   `G`, `GB` are read the same way, case-insensitively); a bare number is bytes.

use core::time::Duration;

/// The longest duration any flag takes.
pub const DURATION_MAX: Duration = Duration::from_secs(366 * 24 * 3600);

/// Parses `30s`, `500ms`, `250us`, `2m`, `1h` or a bare number of seconds (`1.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 10s, 250ms, 2m, 500us"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown duration unit {other:?} in {text:?}: use us, ms, s, m or h")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("invalid duration {text:?}"));
    }
    // `from_secs_f64` would panic on a number too large for a `Duration`; the bound also keeps
    // deadlines and schedules far from overflowing an `Instant`.
    if seconds > DURATION_MAX.as_secs_f64() {
        return Err(format!("duration {text:?} is too long (at most 366 days)"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("duration {text:?} is too long"))
}

/// Parses `4096`, `64KiB`, `1MiB`, `2GiB` (binary multiples; `k`/`kb` read as KiB).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: usize =
        number.parse().map_err(|_| format!("invalid size {text:?}: expected e.g. 4096, 64KiB, 1MiB"))?;
    let multiple = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("invalid size unit in {text:?}: use B, KiB, MiB or GiB")),
    };
    value.checked_mul(multiple).ok_or_else(|| format!("size {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration(" 500ms ").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("250µs").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("2min").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "x", "3 parsecs", "-1s", "1..2s", "ms", "99999999999999999999999h", "9000000000h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_duration("8784h").unwrap(), DURATION_MAX);
        assert!(parse_duration("8785h").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("4096B").unwrap(), 4096);
        assert_eq!(parse_size("64KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert_eq!(parse_size("1 MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("2GB").unwrap(), 2 << 30);
        for bad in
            ["", "KiB", "1.5MiB", "-1", "12 parsecs", "99999999999999999999999", "18446744073709551615GiB"]
        {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }
}
