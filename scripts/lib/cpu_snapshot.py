#!/usr/bin/env python3
"""One JSON line: jiffies of the given CPUs (busy, total) from /proc/stat and the CPU ticks of a
process (utime + stime of all its threads), for "how much of the server's core went to other
work during this run" (scripts/lib/lgresult.py: other_work).

    cpu_snapshot.py PID CPU [CPU...]
"""
import json
import sys
import time


def main():
    pid, cpus = sys.argv[1], [f"cpu{c}" for c in sys.argv[2:]]
    out = {"t": time.time(), "hz": 100, "cpus": {}}
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts[0] in cpus:
                vals = list(map(int, parts[1:]))
                idle = vals[3] + vals[4]
                out["cpus"][parts[0][3:]] = [sum(vals) - idle, sum(vals)]
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out["pid_ticks"] = int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        out["pid_ticks"] = None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
