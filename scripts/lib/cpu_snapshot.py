#!/usr/bin/env python3
"""One JSON line: jiffies of the given CPUs (busy, total) and the CPU ticks of a process (utime +
stime of all its threads), for "how much of the server's core went to other work during this
run" (scripts/lib/lgresult.py: other_work). /proc is read by procfs.py.

    cpu_snapshot.py PID CPU [CPU...]
"""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import procfs  # noqa: E402


def main():
    pid, cpus = sys.argv[1], sys.argv[2:]
    times = procfs.cpu_times()
    out = {"t": time.time(), "hz": procfs.clk_tck(), "cpus": {c: list(times[c]) for c in cpus if c in times},
           "pid_ticks": procfs.pid_ticks(pid)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
