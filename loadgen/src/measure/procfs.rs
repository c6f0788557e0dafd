//! What `/proc` says about the server under test and about the load generator itself.

use serde::{Deserialize, Serialize};

/// Memory of one process and of the kernel's TCP stack at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MemSample {
    /// `/proc/PID/status` VmRSS, bytes.
    pub rss_bytes: u64,
    /// `/proc/PID/smaps_rollup` Pss, bytes (0 if unreadable).
    pub pss_bytes: u64,
    /// `/proc/PID/smaps_rollup` Anonymous, bytes (0 if unreadable).
    pub anon_bytes: u64,
    /// `/proc/net/sockstat` `TCP: ... mem N` (pages) converted to bytes: memory the kernel holds
    /// in TCP socket buffers, all sockets of the network namespace (both ends of loopback).
    pub tcp_mem_bytes: u64,
    /// `/proc/net/sockstat` `TCP: inuse N`.
    pub tcp_inuse: u64,
}

const PAGE_BYTES: u64 = 4096;

/// Samples `pid`'s memory and the kernel's TCP memory.
pub fn mem_sample(pid: u32) -> anyhow::Result<MemSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_bytes = kib_field(&status, "VmRSS:").unwrap_or(0) * 1024;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let (tcp_inuse, tcp_mem_pages) = parse_sockstat(&sockstat);
    Ok(MemSample {
        rss_bytes,
        pss_bytes: kib_field(&rollup, "Pss:").unwrap_or(0) * 1024,
        anon_bytes: kib_field(&rollup, "Anonymous:").unwrap_or(0) * 1024,
        tcp_mem_bytes: tcp_mem_pages * PAGE_BYTES,
        tcp_inuse,
    })
}

/// `Name:   1234 kB` -> 1234.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse().ok()
}

/// `TCP: inuse 5 orphan 0 tw 0 alloc 7 mem 3` -> (inuse, mem pages).
pub fn parse_sockstat(text: &str) -> (u64, u64) {
    let Some(line) = text.lines().find(|l| l.starts_with("TCP:")) else {
        return (0, 0);
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    let field = |name: &str| {
        words
            .iter()
            .position(|w| *w == name)
            .and_then(|i| words.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("inuse"), field("mem"))
}

/// CPU time of a process in seconds (user, system), from `/proc/PID/stat` (all its threads).
pub fn cpu_seconds(pid: u32) -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat_cpu(&stat).ok_or_else(|| anyhow::anyhow!("unexpected /proc/{pid}/stat format"))
}

/// Clock ticks per second for `/proc/PID/stat`; 100 on every Linux configuration in practice.
const CLK_TCK: f64 = 100.0;

pub fn parse_stat_cpu(stat: &str) -> Option<(f64, f64)> {
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at indices 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime / CLK_TCK, stime / CLK_TCK))
}

/// This process's CPU seconds (user + system), all threads.
pub fn self_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id()).map(|(u, s)| u + s).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockstat_line() {
        let text = "sockets: used 290\nTCP: inuse 5 orphan 0 tw 2 alloc 7 mem 13\nUDP: inuse 1 mem 0\n";
        assert_eq!(parse_sockstat(text), (5, 13));
        assert_eq!(parse_sockstat(""), (0, 0));
    }

    #[test]
    fn stat_with_odd_command_name() {
        let stat = "1234 (we ird) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0";
        assert_eq!(parse_stat_cpu(stat), Some((2.5, 0.75)));
    }

    #[test]
    fn own_process_is_readable() {
        let s = mem_sample(std::process::id()).unwrap();
        assert!(s.rss_bytes > 0);
        assert!(self_cpu_seconds() >= 0.0);
    }
}
