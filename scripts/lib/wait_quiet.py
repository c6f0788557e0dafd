#!/usr/bin/env python3
"""Waits until the given CPUs are quiet (each at most THRESHOLD % busy over half a second), for at
most MAX_SECONDS; prints how long it waited and whether it gave up. On a machine shared with
other users' benchmarks this starts each run in a quiet moment; what happens during the run is
measured separately (cpu_snapshot.py).

    wait_quiet.py CPUS MAX_SECONDS [THRESHOLD]      e.g. wait_quiet.py 0,1 30 10
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procfs import cpu_times as busy  # noqa: E402


def main():
    cpus = sys.argv[1].split(",")
    limit = float(sys.argv[2])
    threshold = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
    start = time.time()
    while True:
        a = busy()
        time.sleep(0.5)
        b = busy()
        shares = {c: 100 * (b[c][0] - a[c][0]) / max(1, b[c][1] - a[c][1]) for c in cpus}
        waited = time.time() - start
        if all(v <= threshold for v in shares.values()):
            print(f"quiet after {waited:.1f} s")
            return
        if waited >= limit:
            print(f"not quiet after {waited:.1f} s (" + ", ".join(f"cpu{c} {v:.0f} %" for c, v in shares.items()) + ")")
            return


if __name__ == "__main__":
    main()
