#!/usr/bin/env python3
"""Summarize a scripts/bench.sh (or compare.sh) output directory as markdown tables (stdlib only).

Every figure comes from the `summary` of the load generator's `--json` files
(scripts/lib/lgresult.py), so the tables show exactly the figures the load generator computed;
the only other inputs are the scripts' own RSS samples (NAME.rss-before, NAME.rss-peak).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))
import lgresult as lr  # noqa: E402


def echo_table(out):
    rows = []
    for path in sorted(out.glob("echo-*.json")):
        _, server, clients = path.stem.split("-", 2)  # echo-<server>-<clients>
        doc = lr.read(path)
        if doc is None:
            rows.append((int(clients), server, "no result", "", "", "", "", "", "", ""))
            continue
        s = doc["summary"]
        _, per_s, cpu_per_m = lr.round_trips(s)
        rtt = [fmt_latency(lr.latency_ms(s, key, "rtt")) for key in ("p50", "p99", "p99_9", "max")]
        rows.append((int(clients), server, *rtt, lr.num(per_s), lr.num(cpu_per_m, ".2f"),
                     lr.pct((s.get("loadgen") or {}).get("busy_share")), lr.full_warnings(s)))
    if not rows:
        return ""
    lines = ["### Echo round trips, 128-byte messages, closed loop",
             "",
             "| clients | server | p50 | p99 | p99.9 | max | round trips/s | server CPU-s per 1M | load generator CPU | warnings |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in sorted(rows):
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines) + "\n"


def idle_table(out):
    rows = []
    for path in sorted(out.glob("idle-*.json")):
        doc = lr.read(path)
        if doc is None:
            rows.append((path.stem[5:], "-", "no result", "-", "-", "-", ""))
            continue
        s = doc["summary"]
        server = s.get("server") or {}
        opened = (s.get("connections") or {}).get("opened") or 0
        rows.append((path.stem[5:], f"{s['clients']:,}", f"{opened:,}",
                     lr.num(server.get("rss_per_connection_bytes"), ",.0f", " B"),
                     lr.num(server.get("anon_per_connection_bytes"), ",.0f", " B"),
                     lr.num(server.get("tcp_mem_per_connection_bytes"), ",.0f", " B"), lr.full_warnings(s)))
    if not rows:
        return ""
    lines = ["### Idle WebSocket connections: server memory growth per connection",
             "",
             "| run | clients | held | RSS / conn | anonymous / conn | kernel TCP / conn (both ends) | warnings |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    notes = ("\n`cold`: a fresh server, so the growth includes the first use of its receive buffer"
             " ring (a fixed per-worker cost of `--buf-count` x `--buf-size`, 4 MiB by default);"
             " the others cycle that ring once before connecting. `big`: 3 workers (each ring's"
             " direct-descriptor table holds at most RLIMIT_NOFILE = 20,000 connections here).\n")
    return "\n".join(lines) + "\n" + notes


def split_round(rest):
    """A broadcast run's file stem after SCENARIO-: SERVER, or SERVER-rN for round N of several."""
    server, _, last = rest.rpartition("-r")
    return (server, int(last)) if server and last.isdigit() else (rest, None)


def broadcast_title(doc):
    """The table's title from one of its runs."""
    s, plan = doc["summary"], lr.planned(doc)
    if plan["saturated"]:
        return f"{s['clients']:,} subscribers, saturated (window of {plan['window']} messages)"
    return f"{s['clients']:,} subscribers x {plan['per_second'] or 0:g} msg/s ({s['message_bytes']} B)"


def broadcast_run(path):
    """One run's figures, as numbers (None where the run has none)."""
    doc = lr.read(path)
    if doc is None:
        return None
    s = doc["summary"]
    m = s.get("messages") or {}
    cpu = lr.cpu_per_delivery_s(s)
    sustained = m.get("sustained_per_s")
    rate = m.get("deliveries_per_s")
    return {"doc": doc, "got": m.get("delivered"), "expected": m.get("expected"),
            "p50": lr.latency_ms(s, "p50"), "p99": lr.latency_ms(s, "p99"), "p99.9": lr.latency_ms(s, "p99_9"),
            "rate": rate, "sustained": sustained, "throughput": sustained if sustained is not None else rate,
            "cpu_per_m": cpu * 1e6 if cpu is not None else None,
            "lg": (s.get("loadgen") or {}).get("busy_share")}


def fmt_latency(ms):
    """Milliseconds as the tables print them; under a millisecond in microseconds."""
    if ms is not None and ms < 1:
        return f"{ms * 1e3:.1f} µs" if ms < 0.01 else f"{ms * 1e3:.0f} µs"
    return lr.fmt_ms(ms)


def spread(runs, key, show, with_range=False):
    """The median of `key` over the runs, and (`with_range`) its range when there are several."""
    values = [r[key] for r in runs if r[key] is not None]
    if not values:
        return "-"
    text = show(lr.median(values))
    if not with_range or len(values) < 2:
        return text
    return f"{text} ({show(min(values))} to {show(max(values))})"


def broadcast_table(out, scenario, title):
    """One row per server: the median over its rounds (and the range, when there are several),
    deliveries summed over them."""
    runs = {}
    for path in sorted(out.glob(f"{scenario}-*.json")):
        server, _ = split_round(path.stem[len(scenario) + 1:])
        run = broadcast_run(path)
        if run is not None:
            runs.setdefault(server, []).append(run)
    if not runs:
        return ""
    title = broadcast_title(next(iter(runs.values()))[0]["doc"]) if title is None else title
    rows = []
    for server, rs in runs.items():
        got = [r["got"] for r in rs if r["got"] is not None]
        expected = sum(r["expected"] or 0 for r in rs)
        rows.append({"server": server, "runs": rs, "rounds": len(rs),
                     "delivered": f"{sum(got) / expected * 100:.1f} %" if got and expected else "-",
                     "cpu_per_m": lr.median([r["cpu_per_m"] for r in rs]),
                     "throughput": lr.median([r["throughput"] for r in rs])})
    # tickcast's advantage, from the same run: the peer's CPU per delivery over tickcast's, and
    # (saturated) tickcast's deliveries/s over the peer's; medians over the rounds.
    base = next((r for r in rows if r["server"] == "tickcast"), None)
    saturated = scenario.startswith("saturate")

    def advantage(r):
        if base is None or r is base:
            return "-"
        if saturated:
            ok = base["throughput"] and r["throughput"]
            return f"{base['throughput'] / r['throughput']:.2f}x deliveries/s" if ok else "-"
        ok = base["cpu_per_m"] and r["cpu_per_m"]
        return f"{r['cpu_per_m'] / base['cpu_per_m']:.2f}x less CPU" if ok else "-"

    rounds = max(r["rounds"] for r in rows)
    note = f" (medians of {rounds} rounds; p99, sustained and CPU with their range)" if rounds > 1 else ""
    lines = [f"### {title}{note}", "",
             "| server | p50 | p99 | p99.9 | delivered | deliveries/s | sustained (window) | server CPU-s per 1M deliveries | load generator CPU | tickcast vs this |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        rs = r["runs"]
        cells = [r["server"], spread(rs, "p50", fmt_latency), spread(rs, "p99", fmt_latency, True),
                 spread(rs, "p99.9", fmt_latency), r["delivered"], spread(rs, "rate", lambda v: f"{v:,.0f}"),
                 spread(rs, "sustained", lambda v: f"{v:,.0f}", True),
                 spread(rs, "cpu_per_m", lambda v: f"{v:.2f}", True), spread(rs, "lg", lr.pct),
                 advantage(r)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


TRANSPORT_ORDER = {"ws": 0, "sse": 1, "longpoll": 2, "poll-1s": 3, "poll-100ms": 4}


def rss_per_client(out, stem, clients):
    """The server's peak RSS during the run minus its RSS before, per client (bench.sh's
    samples, procfs.py), or None."""
    try:
        before = int((out / f"{stem}.rss-before").read_text())
        peak = int((out / f"{stem}.rss-peak").read_text())
    except (OSError, ValueError):
        return None
    return (peak - before) * 1024 / clients


def transport_rows(out):
    """One dict per transport-<label>-<clients>-<rate> run (also used by plots.py)."""
    rows = []
    for path in sorted(out.glob("transport-*.json")):
        label, clients, rate = path.stem[len("transport-"):].rsplit("-", 2)
        doc = lr.read(path)
        s = doc["summary"] if doc else {}
        m, wire = s.get("messages") or {}, s.get("wire") or {}
        rx, tx = wire.get("received_bytes_per_delivery"), wire.get("sent_bytes_per_delivery")
        cpu = lr.cpu_per_delivery_s(s)
        rows.append({
            "transport": label, "clients": int(clients), "rate": float(rate),
            "p50": lr.latency_ms(s, "p50"), "p99": lr.latency_ms(s, "p99"), "p99.9": lr.latency_ms(s, "p99_9"),
            "delivered": m.get("delivered"), "expected": m.get("expected"),
            "deliveries_per_s": m.get("deliveries_per_s"),
            "wire_bytes": rx + (tx or 0) if rx is not None else None,
            "cpu_per_m": cpu * 1e6 if cpu is not None else None,
            "rss_per_client": rss_per_client(out, path.stem, int(clients)),
            "requests_per_s": (s.get("requests") or {}).get("per_s") if s.get("transport") in ("poll", "longpoll") else None,
            "loadgen_cpu": (s.get("loadgen") or {}).get("busy_share"),
            "warnings": lr.full_warnings(s) if doc else f"no result (see {path.stem}.txt)",
        })
    rows.sort(key=lambda r: (r["rate"], r["clients"], TRANSPORT_ORDER.get(r["transport"], 9)))
    return rows


def fmt(v, spec, unit=""):
    return "-" if v is None else f"{v:{spec}}{unit}"


def transport_table(out):
    rows = transport_rows(out)
    if not rows:
        return ""
    lines = ["### WebSocket vs SSE vs long-polling vs polling (128-byte messages, one channel)",
             "",
             "| transport | clients | msg/s | p50 | p99 | p99.9 | delivered | deliveries/s | wire bytes / msg | HTTP requests/s | server CPU-s per 1M | server RSS / client | load generator CPU |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for r in rows:
        ratio = (f"{r['delivered'] / r['expected'] * 100:.1f} %"
                 if r["delivered"] is not None and r["expected"] else "-")
        lines.append("| " + " | ".join([
            r["transport"], f"{r['clients']:,}", f"{r['rate']:g}", fmt_latency(r["p50"]), fmt_latency(r["p99"]),
            fmt_latency(r["p99.9"]), ratio,
            fmt(r["deliveries_per_s"], ",.0f"), fmt(r["wire_bytes"], ".0f"), fmt(r["requests_per_s"], ",.0f"),
            fmt(r["cpu_per_m"], ".2f"), fmt(r["rss_per_client"], ",.0f", " B"), lr.pct(r["loadgen_cpu"]),
        ]) + " |")
        if r["warnings"]:
            notes.append(f"- {r['transport']} x {r['clients']:,} at {r['rate']:g} msg/s: {r['warnings']}")
    text = "\n".join(lines) + "\n"
    text += ("\nLatency is measured from each message's scheduled publish time to its arrival, so"
             " polling's wait for the next poll is included. Wire bytes count both directions"
             " (requests and HTTP/WebSocket framing included). RSS per client: the server's peak"
             " RSS during the run minus its RSS before, per client.\n")
    if notes:
        text += "\nWarnings from the load generator:\n\n" + "\n".join(notes) + "\n"
    return text


def main():
    out = Path(sys.argv[1])
    machine = (out / "machine.txt").read_text() if (out / "machine.txt").exists() else ""
    print(f"## Benchmark results ({out.name})\n")
    for line in machine.splitlines():
        print(f"- {line}")
    print()
    tables = (
        transport_table(out),
        broadcast_table(out, "fanout-1k", None),
        broadcast_table(out, "saturate-1k", None),
        broadcast_table(out, "fanout-10k", None),
        echo_table(out),
        idle_table(out),
    )
    for table in tables:
        if table:
            print(table)


if __name__ == "__main__":
    main()
