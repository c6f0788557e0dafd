#!/usr/bin/env python3
"""Holds N idle SSE streams or N parked long-polls against a tickcast server and reports the
server's RSS per held client (from /proc), checked against the server's own gauges.

    hold_http_clients.py --port P --pid PID --kind sse|longpoll --clients 1000,5000 [--channels K]

Clients are added in cumulative steps; for each step it prints one JSON line with the RSS
per held client and the marginal RSS per client since the previous step (which leaves out the
server's one-time growth: allocator arenas, the first pages of its tables). Plain sockets, no
dependencies: an independent client.
"""
import argparse
import json
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import procfs  # noqa: E402


def rss_kib(pid):
    rss = procfs.rss_kib(pid)
    if rss is None:
        raise RuntimeError(f"no VmRSS for {pid} (the server is gone)")
    return rss


def metric(port, name):
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    total = 0
    for line in data.decode().splitlines():
        if line.startswith(name + "{"):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--kind", choices=["sse", "longpoll"], required=True)
    ap.add_argument("--clients", default="1000", help="cumulative steps, e.g. 1000,5000")
    ap.add_argument("--channels", type=int, default=10, help="distinct channels the clients spread over")
    args = ap.parse_args()

    gauge = {"sse": "tickcast_sse_connections", "longpoll": "tickcast_longpolls_parked"}[args.kind]
    steps = [int(n) for n in args.clients.split(",")]
    before = rss_kib(args.pid)
    prev_n, prev_rss = 0, before
    socks = []
    try:
        for n in steps:
            while len(socks) < n:
                i = len(socks)
                ch = f"idle.{i % args.channels}"
                path = f"/sse?channels={ch}" if args.kind == "sse" else f"/longpoll?channels={ch}&timeout=60"
                s = socket.create_connection(("127.0.0.1", args.port), 10)
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                socks.append(s)
            deadline = time.time() + 30
            held = 0
            while time.time() < deadline:
                held = metric(args.port, gauge)
                if held >= n:
                    break
                time.sleep(0.1)
            if held < n:
                print(f"only {held} of {n} {args.kind} clients registered", file=sys.stderr)
                sys.exit(1)
            time.sleep(0.5)
            rss = rss_kib(args.pid)
            print(json.dumps({
                "kind": args.kind,
                "clients": n,
                "held": held,
                "rss_before_kib": before,
                "rss_held_kib": rss,
                "rss_per_client_bytes": round((rss - before) * 1024 / n),
                "marginal_per_client_bytes": round((rss - prev_rss) * 1024 / (n - prev_n)),
            }), flush=True)
            prev_n, prev_rss = n, rss
    finally:
        for s in socks:
            s.close()

if __name__ == "__main__":
    main()
