#!/usr/bin/env python3
"""Samples the kernel's slab memory (/proc/meminfo Slab, SUnreclaim) and the socket count
(/proc/net/sockstat) every --interval seconds for at most --seconds, and rewrites --out after
every sample with the first sample (baseline) and the peak, so stopping it at any time leaves a
result. Socket structures (tcp_sock, inode, file) live in slab, not in /proc/net/sockstat's
"mem" (socket buffer pages) nor in any process's RSS.

    slab_sampler.py --out FILE.json --seconds 60 [--interval 0.5]
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import procfs  # noqa: E402


def sample():
    s = procfs.meminfo_bytes("Slab", "SUnreclaim", "MemAvailable")
    s["tcp_inuse"] = procfs.sockstat_tcp()["inuse"]
    s["t"] = time.time()
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--interval", type=float, default=0.5)
    args = ap.parse_args()
    baseline = sample()
    peak = baseline
    end = time.time() + args.seconds
    n = 1
    while time.time() < end:
        time.sleep(args.interval)
        s = sample()
        n += 1
        if s["slab_bytes"] > peak["slab_bytes"]:
            peak = s
        with open(args.out, "w") as f:
            json.dump({"baseline": baseline, "peak": peak, "samples": n}, f)


if __name__ == "__main__":
    main()
