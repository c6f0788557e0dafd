#!/usr/bin/env python3
"""The one reader of /proc for the scripts (stdlib only): CPU time per core, a process's CPU
ticks and RSS, kernel slab and TCP memory, the load average. The load generator measures the
server itself (`--server-pid`: summary.server); this covers what the scripts watch around it.

    procfs.py rss PID               the process's RSS in KiB (0 when it is gone)
    procfs.py ticks PID             its CPU ticks, utime + stime of all threads (0 when gone)
    procfs.py busy CPU              the busy ticks of one CPU since boot
    procfs.py clk-tck               ticks per second
    procfs.py loadavg               the 1, 5 and 15-minute load averages
    procfs.py rss-peak PID FILE [MAX_SECONDS]
                                    samples the RSS every 0.2 s while PID lives (at most
                                    MAX_SECONDS, default 900), rewriting FILE with the peak (KiB)
"""
import os
import sys
import time


def cpu_times():
    """{cpu number as text: (busy ticks, total ticks)}; busy = user + nice + system + irq +
    softirq + steal (guest time is already inside user and nice), total = busy + idle + iowait."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0].startswith("cpu") and parts[0][3:].isdigit():
                v = [int(x) for x in parts[1:9]] + [0] * (8 - len(parts[1:9]))
                busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
                out[parts[0][3:]] = (busy, busy + v[3] + v[4])
    return out


def stat_fields(pid):
    """(comm, fields after the command name) of /proc/PID/stat, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()


def pid_ticks(pid):
    """utime + stime of every thread of PID, or None when it is gone."""
    s = stat_fields(pid)
    return None if s is None else int(s[1][11]) + int(s[1][12])


def all_pid_ticks():
    """{pid: (comm, ticks)} of every process."""
    out = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            s = stat_fields(pid)
            if s is not None:
                out[pid] = (s[0], int(s[1][11]) + int(s[1][12]))
    return out


def rss_kib(pid):
    """VmRSS of PID in KiB, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def meminfo_bytes(*keys):
    """{key lower-cased + "_bytes": value} of /proc/meminfo lines (kB there)."""
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            if k in keys:
                out[k.lower() + "_bytes"] = int(v.split()[0]) * 1024
    return out


def sockstat_tcp():
    """/proc/net/sockstat's TCP line as {field: int} (inuse, orphan, tw, alloc, mem in pages)."""
    with open("/proc/net/sockstat") as f:
        parts = next(line for line in f if line.startswith("TCP:")).split()[1:]
    return {parts[i]: int(parts[i + 1]) for i in range(0, len(parts) - 1, 2)}


def tcp_mem_pages():
    """net.ipv4.tcp_mem: (low, pressure, high) in pages."""
    with open("/proc/sys/net/ipv4/tcp_mem") as f:
        return tuple(int(x) for x in f.read().split())


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def clk_tck():
    return os.sysconf("SC_CLK_TCK")


def rss_peak(pid, path, max_seconds=900.0):
    """Samples PID's RSS every 0.2 s while it lives (bounded), rewriting `path` with the peak."""
    peak, end = 0, time.monotonic() + max_seconds
    while time.monotonic() < end:
        rss = rss_kib(pid)
        if rss is None:
            break
        if rss > peak:
            peak = rss
            with open(path, "w") as f:
                f.write(f"{peak}\n")
        time.sleep(0.2)


def main(argv):
    cmd, args = (argv[0], argv[1:]) if argv else ("", [])
    if cmd == "rss" and len(args) == 1:
        print(rss_kib(args[0]) or 0)
    elif cmd == "ticks" and len(args) == 1:
        print(pid_ticks(args[0]) or 0)
    elif cmd == "busy" and len(args) == 1:
        print(cpu_times()[args[0]][0])
    elif cmd == "clk-tck" and not args:
        print(clk_tck())
    elif cmd == "loadavg" and not args:
        print(" ".join(loadavg()))
    elif cmd == "rss-peak" and len(args) in (2, 3):
        rss_peak(args[0], args[1], float(args[2]) if len(args) == 3 else 900.0)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
