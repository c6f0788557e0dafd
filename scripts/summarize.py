#!/usr/bin/env python3
"""Summarize a scripts/bench.sh output directory as markdown tables (stdlib only).

Reads the load generator's JSON (memory, CPU, counts) and its text report (percentiles), so the
figures are exactly the ones the load generator printed.
"""
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))
from shootout import fmt_ms, median, to_ms  # noqa: E402



def server_cpu(data):
    """The server's CPU seconds for every delivery counted: the measured phase and the drain
    after it (where the last messages of the phase are still being delivered)."""
    server = data.get("server") or {}
    cpu = server.get("cpu_seconds")
    return None if cpu is None else cpu + (server.get("drain_cpu_seconds") or 0.0)

def percentiles(txt_path, hist):
    """p50/p99/p99.9/max of one histogram row of the load generator's text table."""
    for line in Path(txt_path).read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == hist and len(cells) >= 8:
            return {"count": cells[1], "p50": cells[2], "p90": cells[3], "p99": cells[4],
                    "p99.9": cells[5], "max": cells[7]}
    return None


def warnings(data):
    return "; ".join(data.get("warnings") or []) or ""


def echo_table(out):
    rows = []
    for path in sorted(out.glob("echo-*.json")):
        name = path.stem  # echo-<server>-<clients>
        _, server, clients = name.split("-", 2)
        data = json.loads(path.read_text())
        p = percentiles(path.with_suffix(".txt"), "rtt") or {}
        run = data.get("run_seconds") or 0
        received = data["totals"]["counters"]["messages_received"]
        cpu = server_cpu(data)
        cpu_per_m = f"{cpu / received * 1e6:.2f}" if cpu and received else "-"
        lg = data.get("loadgen_run_cpu_seconds") or 0
        rows.append((int(clients), server, p.get("p50", "-"), p.get("p99", "-"), p.get("p99.9", "-"),
                     p.get("max", "-"), f"{received / run:,.0f}" if run else "-", cpu_per_m,
                     f"{lg / run * 100:.0f} %" if run else "-", warnings(data)))
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
        data = json.loads(path.read_text())
        server = data.get("server") or {}
        before, held = server.get("before"), server.get("held")
        clients = data["plan"]["clients"]["count"]
        opened = data["totals"]["counters"]["connected"]
        if not before or not held or not opened:
            rows.append((path.stem[5:], clients, opened, "-", "-", "-", warnings(data)))
            continue
        rss = (held["rss_bytes"] - before["rss_bytes"]) / opened
        anon = (held.get("anon_bytes", 0) - before.get("anon_bytes", 0)) / opened
        tcp = (held.get("tcp_mem_bytes", 0) - before.get("tcp_mem_bytes", 0)) / opened
        rows.append((path.stem[5:], clients, opened, f"{rss:,.0f} B", f"{anon:,.0f} B",
                     f"{tcp:,.0f} B", warnings(data)))
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


def delivered(txt_path):
    """(delivered, expected) from the load generator's text report."""
    m = re.search(r"delivered (\d+) of (\d+) expected", Path(txt_path).read_text())
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)


def sustained(txt_path):
    m = re.search(r"sustained \(window \d+\): ([\d.,]+) deliveries/s", Path(txt_path).read_text())
    return m.group(1) if m else "-"


def run_figures(path):
    """What every broadcast run reports: its JSON, text report, latency percentiles, delivered
    and expected counts, measured seconds, messages received, server and load generator CPU."""
    data = json.loads(path.read_text())
    txt = path.with_suffix(".txt")
    got, expected = delivered(txt)
    return {"data": data, "txt": txt, "p": percentiles(txt, "latency") or {}, "got": got,
            "expected": expected, "run": data.get("run_seconds") or 0,
            "received": data["totals"]["counters"]["messages_received"],
            "cpu": server_cpu(data),
            "lg": data.get("loadgen_run_cpu_seconds") or 0}


# A broadcast run's file stem: SCENARIO-SERVER, or SCENARIO-SERVER-rN for round N of several.
ROUND = re.compile(r"^(?P<server>.+?)(?:-r(?P<round>\d+))?$")


def broadcast_title(plan):
    """The table's title from the plan of one of its runs."""
    clients = plan["clients"]["count"]
    schedule = plan["workload"]["schedule"]
    if schedule.get("kind") == "windowed":
        return f"{clients:,} subscribers, saturated (window of {schedule.get('window')} messages)"
    return (f"{clients:,} subscribers x {schedule.get('per_second', 0):g} msg/s "
            f"({plan['workload']['message_bytes']} B)")


def broadcast_run(path):
    """One run's figures, as numbers (None where the run has none)."""
    f = run_figures(path)
    p, run, received, cpu = f["p"], f["run"], f["received"], f["cpu"]
    sus = sustained(f["txt"])
    sus = float(sus.replace(",", "")) if sus != "-" else None
    return {"plan": f["data"]["plan"], "got": f["got"], "expected": f["expected"],
            "p50": to_ms(p.get("p50")), "p99": to_ms(p.get("p99")), "p99.9": to_ms(p.get("p99.9")),
            "rate": received / run if run else None, "sustained": sus,
            "throughput": sus if sus is not None else (received / run if run else None),
            "cpu_per_m": cpu / received * 1e6 if cpu and received else None,
            "lg": f["lg"] / run * 100 if run else None}


def fmt_latency(ms):
    """Milliseconds as the tables print them; under a millisecond in microseconds."""
    if ms is not None and ms < 1:
        return f"{ms * 1e3:.1f} µs" if ms < 0.01 else f"{ms * 1e3:.0f} µs"
    return fmt_ms(ms)


def spread(runs, key, show, with_range=False):
    """The median of `key` over the runs, and (`with_range`) its range when there are several."""
    values = [r[key] for r in runs if r[key] is not None]
    if not values:
        return "-"
    text = show(median(values))
    if not with_range or len(values) < 2:
        return text
    return f"{text} ({show(min(values))} to {show(max(values))})"


def broadcast_table(out, scenario, title):
    """One row per server: the median over its rounds (and the range, when there are several),
    deliveries summed over them."""
    runs = {}
    for path in sorted(out.glob(f"{scenario}-*.json")):
        server = ROUND.match(path.stem[len(scenario) + 1:])["server"]
        runs.setdefault(server, []).append(broadcast_run(path))
    if not runs:
        return ""
    title = broadcast_title(next(iter(runs.values()))[0]["plan"]) if title is None else title
    rows = []
    for server, rs in runs.items():
        got = [r["got"] for r in rs if r["got"] is not None]
        expected = sum(r["expected"] or 0 for r in rs)
        rows.append({"server": server, "runs": rs, "rounds": len(rs),
                     "delivered": f"{sum(got) / expected * 100:.1f} %" if got and expected else "-",
                     "cpu_per_m": median([r["cpu_per_m"] for r in rs]),
                     "throughput": median([r["throughput"] for r in rs])})
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
                 spread(rs, "cpu_per_m", lambda v: f"{v:.2f}", True), spread(rs, "lg", lambda v: f"{v:.0f} %"),
                 advantage(r)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def wire_bytes(txt_path):
    m = re.search(r"bytes on the wire per delivered message \([^)]*\): ([\d.]+) received, ([\d.]+) sent",
                  Path(txt_path).read_text())
    return (float(m.group(1)), float(m.group(2))) if m else (None, None)


def http_requests_per_s(txt_path):
    m = re.search(r"HTTP requests \d+ \(([\d.]+)/s", Path(txt_path).read_text())
    return float(m.group(1)) if m else None


TRANSPORT_ORDER = {"ws": 0, "sse": 1, "longpoll": 2, "poll-1s": 3, "poll-100ms": 4}


def transport_rows(out):
    """One dict per transport-<label>-<clients>-<rate> run (also used by plots.py)."""
    rows = []
    for path in sorted(out.glob("transport-*.json")):
        label, clients, rate = path.stem[len("transport-"):].rsplit("-", 2)
        f = run_figures(path)
        p, got, expected, run, received, cpu, txt = (f["p"], f["got"], f["expected"], f["run"],
                                                     f["received"], f["cpu"], f["txt"])
        rx, tx = wire_bytes(txt)
        before = out / f"{path.stem}.rss-before"
        peak = out / f"{path.stem}.rss-peak"
        rss = None
        if before.exists() and peak.exists():
            rss = (int(peak.read_text()) - int(before.read_text())) * 1024 / int(clients)
        lg = f["lg"]
        rows.append({
            "transport": label, "clients": int(clients), "rate": float(rate),
            "p50": p.get("p50", "-"), "p99": p.get("p99", "-"), "p99.9": p.get("p99.9", "-"),
            "delivered": got, "expected": expected,
            "deliveries_per_s": received / run if run else None,
            "wire_bytes": (rx or 0) + (tx or 0) if rx is not None else None,
            "cpu_per_m": cpu / received * 1e6 if cpu and received else None,
            "rss_per_client": rss,
            "requests_per_s": http_requests_per_s(txt),
            "loadgen_cpu": lg / run * 100 if run else None,
            "warnings": warnings(f["data"]),
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
            r["transport"], f"{r['clients']:,}", f"{r['rate']:g}", r["p50"], r["p99"], r["p99.9"], ratio,
            fmt(r["deliveries_per_s"], ",.0f"), fmt(r["wire_bytes"], ".0f"), fmt(r["requests_per_s"], ",.0f"),
            fmt(r["cpu_per_m"], ".2f"), fmt(r["rss_per_client"], ",.0f", " B"), fmt(r["loadgen_cpu"], ".0f", " %"),
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
