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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import procfs  # noqa: E402


def main():
    phase = sys.argv[1] if len(sys.argv) > 1 else "now"
    window = float(sys.argv[sys.argv.index("--window") + 1]) if "--window" in sys.argv else 0.5
    c0, p0 = procfs.cpu_times(), procfs.all_pid_ticks()
    time.sleep(window)
    c1, p1 = procfs.cpu_times(), procfs.all_pid_ticks()
    busy = []
    for cpu in sorted(c1, key=int):
        total = c1[cpu][1] - c0[cpu][1]
        busy_ticks = c1[cpu][0] - c0[cpu][0]
        busy.append(f"cpu{cpu} {100 * busy_ticks / total:.0f} %" if total else f"cpu{cpu} ?")
    hz = procfs.clk_tck()
    procs = []
    for pid, (comm, t) in p1.items():
        if pid in p0 and pid != str(os.getpid()):
            share = (t - p0[pid][1]) / hz / window * 100
            if share >= 5:
                procs.append((share, comm))
    procs.sort(reverse=True)
    busiest = ", ".join(f"{comm} {share:.0f} %" for share, comm in procs[:4]) or "none above 5 %"
    pages = procfs.sockstat_tcp()["mem"]
    _, pressure, limit = procfs.tcp_mem_pages()
    mib = lambda p: p * 4096 / 2**20  # noqa: E731
    tcp_note = f"kernel TCP memory {mib(pages):.1f} MiB (pressure at {mib(pressure):.0f} MiB, limit {mib(limit):.0f} MiB)"
    load = " ".join(procfs.loadavg())
    warn = "WARNING: kernel TCP memory past the pressure threshold, every socket is throttled; " if pages >= pressure else ""
    print(f"{phase}: {warn}load average {load}; CPU busy {', '.join(busy)}; busiest: {busiest}; {tcp_note}")


if __name__ == "__main__":
    main()
