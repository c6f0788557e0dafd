#!/usr/bin/env python3
"""One line on how busy this machine is right now, for the benchmark reports:

    PHASE: load average 1.2 1.0 0.9; CPU busy cpu0 12 %, cpu1 80 %; busiest: rustc 95 %, ...;
    kernel TCP memory 1.2 MiB (pressure at 1.5 GiB)

CPU figures are measured over --window seconds (not ps's lifetime averages). Kernel TCP memory
is machine-wide: other users' sockets count, and past net.ipv4.tcp_mem's pressure threshold
the kernel throttles every TCP socket, ours included; the line then starts with WARNING.

    noise.py PHASE [--window 0.5]
"""
import os
import sys
import time


def cpu_times():
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                parts = line.split()
                vals = list(map(int, parts[1:]))
                idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
                out[parts[0]] = (sum(vals), idle)
    return out


def proc_times():
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[pid] = (comm, int(fields[11]) + int(fields[12]))
    return out


def main():
    phase = sys.argv[1] if len(sys.argv) > 1 else "now"
    window = float(sys.argv[sys.argv.index("--window") + 1]) if "--window" in sys.argv else 0.5
    c0, p0 = cpu_times(), proc_times()
    time.sleep(window)
    c1, p1 = cpu_times(), proc_times()
    busy = []
    for cpu in sorted(c1, key=lambda c: int(c[3:])):
        total = c1[cpu][0] - c0[cpu][0]
        idle = c1[cpu][1] - c0[cpu][1]
        busy.append(f"{cpu} {100 * (total - idle) / total:.0f} %" if total else f"{cpu} ?")
    hz = os.sysconf("SC_CLK_TCK")
    procs = []
    for pid, (comm, t) in p1.items():
        if pid in p0 and pid != str(os.getpid()):
            share = (t - p0[pid][1]) / hz / window * 100
            if share >= 5:
                procs.append((share, comm))
    procs.sort(reverse=True)
    busiest = ", ".join(f"{comm} {share:.0f} %" for share, comm in procs[:4]) or "none above 5 %"
    with open("/proc/net/sockstat") as f:
        tcp = next(line for line in f if line.startswith("TCP:")).split()
    pages = int(tcp[tcp.index("mem") + 1])
    with open("/proc/sys/net/ipv4/tcp_mem") as f:
        _, pressure, limit = map(int, f.read().split())
    mib = lambda p: p * 4096 / 2**20  # noqa: E731
    tcp_note = f"kernel TCP memory {mib(pages):.1f} MiB (pressure at {mib(pressure):.0f} MiB, limit {mib(limit):.0f} MiB)"
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    warn = "WARNING: kernel TCP memory past the pressure threshold, every socket is throttled; " if pages >= pressure else ""
    print(f"{phase}: {warn}load average {load}; CPU busy {', '.join(busy)}; busiest: {busiest}; {tcp_note}")


if __name__ == "__main__":
    main()
