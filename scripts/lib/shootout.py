#!/usr/bin/env python3
"""Helpers of scripts/shootout.sh (stdlib only).

  shootout.py smoke-check RUN_JSON NAME
      exit 0 when a smoke run delivered every expected message (and some were expected)
  shootout.py steps RAMP_JSON PREFIX REPORT_TOOL SLO_P95_MS STEP
      for every step of a `tickcast-loadgen ramp --json` file: PREFIX-<clients>.result.json (the
      step's result) and PREFIX-<clients>.step.json (its figures; p95, which the summary does not
      carry, from the step's latency histogram by `tickcast-report percentile`). STEP > 0: prints
      the clients of the next step to run for the
      p95 SLO (when the ramp stopped on its p99 SLO alone and that step's p95 was within the p95
      SLO), or nothing. STEP = 0 (a one-step ramp): prints "pass" or "fail" for the p95 SLO.
  shootout.py report RAW_DIR MD JSON "PEERS..." [SVG LOADGEN_REPORT_TOOL]
      results/shootout.md and .json from the raw runs (and the SVG plot when a tool is given)
"""
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lgresult as lr  # noqa: E402

DELIVERED_MIN = 0.99  # as the load generator's ramp (loadgen/src/search.rs)
# What the load generator speaks to the stacks that are not plain WebSocket (scripts/shootout.sh,
# peer_args).
PROTOCOL_NOTES = {
    "socketio": "Socket.IO 4 over WebSocket (`--protocol socketio`)",
    "actioncable": "Action Cable, actioncable-v1-json (`--protocol actioncable`), published without "
                   "pipelining (`--publisher http-pool`: puma 5.6.5 answers pipelined requests with 400 or drops them)",
}
ORDER = ["tickcast", "bun", "bare", "tokio-tungstenite", "node-ws", "websocket-ruby", "django-channels",
         "socketio", "actioncable", "ratchet"]


# ------------------------------------------------------------------------------ small readers

def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


fmt_ms, fmt_num = lr.fmt_ms, lr.num


def delivery_totals(runs):
    """Deliveries and expected deliveries summed over rounds, and the loss in percent."""
    delivered = sum(r["delivered"] for r in runs)
    expected = sum(r["expected"] for r in runs)
    return delivered, expected, (expected - delivered) / expected * 100 if expected else 0


median = lr.median


# ------------------------------------------------------------------------------ smoke-check

def smoke_check(run_json, name):
    doc = lr.read(run_json)
    if not doc:
        print(f"    {name}: no result (see {run_json[:-5]}.txt)", file=sys.stderr)
        return 1
    s, loss = doc["summary"], doc.get("loss") or {}
    m = s["messages"]
    # Duplicates and reordering are not in the summary: the result's `loss` block has them.
    ok = lr.all_delivered(s) and loss.get("duplicates", 0) == 0
    print(f"{name} smoke: {s['clients']} clients, delivered {m['delivered']} of {m['expected']} expected"
          f" ({loss.get('reordered', 0)} reordered){'' if ok else ' FAILED'}")
    return 0 if ok else 1


# ------------------------------------------------------------------------------ steps

def percentile_ms(tool, result_json, q):
    """The latency at quantile q of a result's histogram, by tickcast-report (µs there), in ms."""
    try:
        out = subprocess.run([tool, "percentile", "--at", str(q), result_json], capture_output=True, text=True,
                             check=False)
        return float(out.stdout.strip()) / 1000.0 if out.returncode == 0 else None
    except (OSError, ValueError):
        return None


def p99_only(s, verdict):
    """The search failed the step on its p99 SLO alone. The search judges, in order: delivery
    (DELIVERED_MIN), refused publishes, p99, a busy load generator; with delivery, publishing
    and the load generator fine, a failed step failed on p99."""
    return (not verdict.get("ok") and (verdict.get("delivered_ratio") or 0.0) >= DELIVERED_MIN
            and "publish_refused" not in lr.kinds(s) and not lr.busy(s))


def step_figures(step, prefix, tool, slo_p95_ms, source):
    s, verdict = step["summary"], lr.step(step)
    clients = verdict.get("clients", s["clients"])
    base = f"{prefix}-{clients}"
    Path(f"{base}.result.json").write_text(json.dumps(step))
    measured = (s.get("durations_s") or {}).get("measured")
    server_cpu = (s.get("server") or {}).get("cpu_s")
    fig = {
        "server_cpu_pct": server_cpu / measured * 100 if server_cpu is not None and measured else None,
        "loadgen_cpu_pct": ((s.get("loadgen") or {}).get("busy_share") or 0) * 100,
        "cut_off": (s.get("connections") or {}).get("cut_off") or 0,
        "clients": clients, "rate": verdict.get("rate"), "source": source,
        "ok": bool(verdict.get("ok")), "reason": verdict.get("reason"), "p99_only": p99_only(s, verdict),
        "delivered_ratio": verdict.get("delivered_ratio") or 0.0,
        "deliveries_per_second": (s.get("messages") or {}).get("deliveries_per_s") or 0.0,
        "p50_ms": lr.latency_ms(s, "p50"), "p95_ms": percentile_ms(tool, f"{base}.result.json", 0.95),
        "p99_ms": lr.latency_ms(s, "p99"), "max_ms": lr.latency_ms(s, "max"),
        "busy": lr.busy(s),
        "warnings": [w.get("message") or w.get("kind") for w in s.get("warnings") or []],
    }
    fig["p95_failure"] = p95_failure(fig, slo_p95_ms)
    fig["p95_pass"] = fig["p95_failure"] is None
    Path(f"{base}.step.json").write_text(json.dumps(fig, indent=1))
    return fig


def steps(ramp_json, prefix, tool, slo_p95_ms, step):
    doc = lr.read(ramp_json)
    if not doc or not lr.steps(doc):
        print(f"no ramp result in {ramp_json}", file=sys.stderr)
        return 1 if step == 0 else 0
    source = "ramp" if step > 0 else "p95-step"
    figs = [step_figures(s, prefix, tool, slo_p95_ms, source) for s in lr.steps(doc)]
    last = figs[-1]
    if step == 0:
        print("pass" if last["p95_pass"] else "fail")
        return 0
    if not last["ok"] and last["p99_only"] and last["p95_pass"]:
        print(last["clients"] + step)
    return 0


# ------------------------------------------------------------------------------ report

def run_figures(raw, name):
    """One rate or saturate run: what the table needs, from its result's summary."""
    doc = lr.read(raw / f"{name}.json")
    if not doc:
        return None
    s, loss = doc["summary"], doc.get("loss") or {}
    env = read_json(raw / f"{name}.env.json") or {}
    m, server = s["messages"], s.get("server") or {}
    delivered, expected = m["delivered"], m["expected"]
    plan = lr.planned(doc)
    planned_s = (s.get("durations_s") or {}).get("planned")
    scheduled = round(plan["per_second"] * planned_s) if plan["per_second"] and planned_s else None
    # Per delivery: the measured phase and the drain after it (deliveries made then count too).
    cpu = server.get("cpu_s")
    cpu = None if cpu is None else cpu + (server.get("drain_cpu_s") or 0.0)
    connections = s.get("connections") or {}
    clients = s["clients"]
    fig = {
        "clients": clients,
        "published": m.get("published"), "scheduled": scheduled,
        "delivered": delivered, "expected": expected,
        "loss": (expected - delivered) / expected if expected else None,
        # Not in the summary: the result's `loss` block has them.
        "reordered": loss.get("reordered", 0), "duplicates": loss.get("duplicates", 0),
        "p50_ms": lr.latency_ms(s, "p50"), "p99_ms": lr.latency_ms(s, "p99"), "max_ms": lr.latency_ms(s, "max"),
        "sustained_per_s": m.get("sustained_per_s"),
        "deliveries_per_s": m.get("deliveries_per_s"),
        "server_cpu_s": cpu,
        "cpu_per_m": server.get("cpu_s_per_million_deliveries"),
        "connect_failed": (connections.get("failed_tcp") or 0) + (connections.get("failed_handshake") or 0),
        "loadgen_cpu_pct": ((s.get("loadgen") or {}).get("busy_share") or 0) * 100,
        "warnings": [w.get("message") or w.get("kind") for w in s.get("warnings") or []],
    }
    try:
        before = int((raw / f"{name}.rss-before").read_text())
        peak = int((raw / f"{name}.rss-peak").read_text())
        fig["rss_before_kib"], fig["rss_peak_kib"] = before, peak
        fig["rss_per_conn"] = (peak - before) * 1024 / clients
    except (OSError, ValueError):
        fig["rss_per_conn"] = None
    if env:
        tck, wall = env["clk_tck"], env["wall"] or 1
        fig["redis_cpu_s"] = env["redis_ticks"] / tck if env.get("redis") else None
        fig["redis_cpu_per_m"] = (fig["redis_cpu_s"] / delivered * 1e6
                                  if fig["redis_cpu_s"] is not None and delivered else None)
        other = (env["server_core_busy_ticks"] - env["server_ticks"] - env["redis_ticks"]) / tck
        fig["other_on_server_core_pct"] = max(0.0, other / wall * 100)
        lg = (s.get("loadgen") or {}).get("cpu_s") or 0
        fig["other_on_loadgen_core_pct"] = max(0.0, (env["loadgen_core_busy_ticks"] / tck - lg) / wall * 100)
        fig["server_core_busy_pct"] = env["server_core_busy_ticks"] / tck / wall * 100
    return fig


def run_name(file_name):
    """ROUND-SCENARIO-PEER.json (the runs of run_one in shootout.sh) -> (round, scenario, peer),
    else None (env, step and result files beside them)."""
    stem = file_name[:-len(".json")] if file_name.endswith(".json") else ""
    r, _, rest = stem.partition("-")
    for scenario in ("rate-1k", "saturate-1k", "rate-10k"):
        peer = rest[len(scenario) + 1:] if rest.startswith(scenario + "-") else ""
        if r.isdigit() and peer and "." not in peer:
            return int(r), scenario, peer
    return None


class Bound:
    """A capacity figure that may be a bound: '=' exact, '>=' (the ramp ended while passing),
    '<' (the first step failed), '?' (no data)."""

    def __init__(self, value, kind, why=""):
        self.value, self.kind, self.why = value, kind, why

    def text(self):
        if self.kind == "?":
            return "-"
        prefix = {"=": "", ">=": "≥ ", "<": "< "}[self.kind]
        return f"{prefix}{self.value:,}"

    def as_json(self):
        return {"value": self.value, "bound": self.kind, "why": self.why}


def p95_failure(s, slo_p95_ms=250.0):
    """Why a step fails the p95 SLO, in the order of the load generator's own judge (delivery,
    latency, busy load generator), or None."""
    if s["delivered_ratio"] < DELIVERED_MIN:
        return f"delivered {s['delivered_ratio'] * 100:.1f}% of expected"
    if s["p95_ms"] is None:
        return "no p95 (no latency histogram)"
    if s["p95_ms"] > slo_p95_ms:
        return f"p95 {fmt_ms(s['p95_ms'])} > SLO {slo_p95_ms:g} ms"
    if s["busy"]:
        return "the load generator was busy: inconclusive"
    return None


def walk(seq, failure):
    """The last step before the first failing one, as a Bound."""
    good = None
    for s in seq:
        why = failure(s)
        if why is None:
            good = s
            continue
        inconclusive = "busy" in why
        if good is None:
            return Bound(s["clients"], "<", f"first step ({s['clients']:,}) failed: {why}")
        return Bound(good["clients"], ">=" if inconclusive else "=", f"next step ({s['clients']:,}) failed: {why}")
    if good is None:
        return Bound(None, "?", "no step")
    return Bound(good["clients"], ">=", "every step passed (end of the range)")


def capacity(raw, peer):
    steps_ = [s for s in (read_json(f) for f in raw.glob(f"step-{peer}-*.step.json")) if s]
    steps_.sort(key=lambda s: s["clients"])
    ramp = [s for s in steps_ if s["source"] == "ramp"]
    if not ramp:
        return steps_, Bound(None, "?", "no ramp result"), Bound(None, "?", "no ramp result")
    p99 = walk(ramp, lambda s: None if s["ok"] else s["reason"])
    p95 = walk(steps_, p95_failure)
    return steps_, p99, p95


def ratio_bound(tc, peer):
    """tickcast / peer for capacity bounds, as text."""
    if tc.kind == "?" or peer.kind == "?" or not tc.value or not peer.value:
        return "-"
    r = fmt_ratio(tc.value / peer.value)
    if tc.kind == "=" and peer.kind == "=":
        return r
    if tc.kind in ("=", ">=") and peer.kind == "<":
        return f"> {r}"
    if tc.kind == ">=" and peer.kind == "=":
        return f"≥ {r}"
    if tc.kind == "=" and peer.kind == ">=":
        return f"≤ {r}"
    return "n/a (both reached the end of the range)" if tc.kind == peer.kind == ">=" else "?"


def fmt_ratio(r):
    return f"{r:.1f}×" if r >= 0.95 else f"{r:.2g}×"


def ratio(a, b):
    return fmt_ratio(a / b) if a and b else "-"


def report(raw, md_path, json_path, peers, svg, tool):
    raw = Path(raw)
    peers = [p for p in ORDER if p in peers] + [p for p in peers if p not in ORDER]
    versions = {}
    if (raw / "versions.tsv").exists():
        for line in (raw / "versions.tsv").read_text().splitlines():
            name, _, v = line.partition("\t")
            versions[name] = v
    unavailable = {}
    if (raw / "unavailable.tsv").exists():
        for line in (raw / "unavailable.tsv").read_text().splitlines():
            name, _, why = line.partition("\t")
            unavailable[name] = why
    machine = (raw / "machine.txt").read_text().splitlines() if (raw / "machine.txt").exists() else []

    scenarios = {}
    for f in sorted(raw.glob("*-*-*.json")):
        run = run_name(f.name)
        if not run:
            continue
        r, scenario, peer = run
        fig = run_figures(raw, f.name[:-5])
        if fig:
            scenarios.setdefault(scenario, {}).setdefault(peer, []).append((r, fig))

    result = {"machine": machine, "peers": {}, "method": {}}
    driven = []
    for p in peers:
        entry = {"version": versions.get(p, "?")}
        if p in unavailable:
            entry["status"] = f"not installable here: {unavailable[p]}"
        else:
            entry["status"] = "measured"
            if p in PROTOCOL_NOTES:
                entry["protocol"] = PROTOCOL_NOTES[p]
            driven.append(p)
            for scenario, by_peer in scenarios.items():
                runs = sorted(by_peer.get(p, []), key=lambda x: x[0])
                entry[scenario] = {"rounds": [dict(f, round=r) for r, f in runs]}
            st, p99, p95 = capacity(raw, p)
            entry["capacity"] = {"steps": st, "max_subscribers_p99_50ms": p99.as_json(),
                                 "max_subscribers_p95_250ms": p95.as_json()}
            entry["_bounds"] = (p99, p95)
        result["peers"][p] = entry

    def med(p, scenario, key):
        runs = result["peers"][p].get(scenario, {}).get("rounds", [])
        return median([r.get(key) for r in runs])

    def per_round(p, scenario, key, fmt):
        runs = result["peers"][p].get(scenario, {}).get("rounds", [])
        vals = [fmt(r.get(key)) for r in runs]
        return " / ".join(vals) if vals else "-"

    lines = []
    w = lines.append
    w("# Shootout: one broadcast workload, every stack (issue #9)")
    w("")
    w("Generated by `scripts/shootout.sh` from the runs in its raw directory; figures are the load")
    w("generator's (`tickcast-loadgen`), the same binary and the same pinning for every stack.")
    w("")
    for line in machine:
        w(f"- {line}")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    if head and not any(head in line for line in machine):
        w(f"- report text generated by commit {head} from the same raw runs")
    w("")
    w("**Read ratios between stacks of the same run, not absolute values: the machine is shared.**")
    w("The column *other load* says how busy each core was with work that was neither the stack")
    w("nor the load generator (from `/proc/stat` over each run), the measure of that noise.")
    others = [(f.get("other_on_server_core_pct"), f.get("other_on_loadgen_core_pct"))
              for by_peer in scenarios.values() for runs in by_peer.values() for _, f in runs]
    srv = [a for a, _ in others if a is not None]
    lgc = [b for _, b in others if b is not None]
    if srv and lgc:
        w(f"In this run, over {len(srv)} fixed-rate and saturated runs: other work took a median of"
          f" {statistics.median(srv):.0f} % (at most {max(srv):.0f} %) of the stacks' core and"
          f" {statistics.median(lgc):.0f} % (at most {max(lgc):.0f} %) of the load generator's.")
        w("The capacity steps are single runs and have no such figure: one noisy step can end a ramp early.")
    w("")
    w("## Fixed rate: 1,000 subscribers × 50 msg/s (50,000 deliveries/s), 128 B")
    w("")
    w("Median of the rounds (each round's value after the slash where it matters). Latency from each")
    w("message's scheduled publish time to its arrival. CPU: the stack's process over the measured")
    w("phase (`--server-pid`), per million deliveries; *+ redis*: its redis-server over the whole run.")
    w("RSS per connection: (peak RSS during the run − RSS before any client) / 1,000.")
    w("Where a stack answered the publisher so slowly that it fell behind its schedule, the cell says")
    w("how many of the scheduled messages were published at all; loss counts against those (the")
    w("late sends' latency still counts from their scheduled time).")
    w("")
    w("| stack | version | delivered (loss) | p50 | p99 | max | CPU-s / M deliveries | RSS / connection | other load: stack core, loadgen core |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for p in peers:
        e = result["peers"][p]
        if p not in driven:
            w(f"| {p} | {e['version']} | {e['status']} | | | | | | |")
            continue
        runs = e.get("rate-1k", {}).get("rounds", [])
        if not runs:
            w(f"| {p} | {e['version']} | no run (did not start?) | | | | | | |")
            continue
        delivered, expected, loss = delivery_totals(runs)
        cpu = per_round(p, "rate-1k", "cpu_per_m", lambda v: fmt_num(v, ".2f"))
        redis = med(p, "rate-1k", "redis_cpu_per_m")
        if redis is not None:
            cpu += f" (+ redis {redis:.2f})"
        other = (f"{fmt_num(med(p, 'rate-1k', 'other_on_server_core_pct'), '.0f', ' %')}, "
                 f"{fmt_num(med(p, 'rate-1k', 'other_on_loadgen_core_pct'), '.0f', ' %')}")
        reordered = sum(r["reordered"] for r in runs)
        reordered = f", {reordered:,} reordered" if reordered else ""
        published = sum(r.get("published") or 0 for r in runs)
        scheduled = sum(r.get("scheduled") or 0 for r in runs)
        if scheduled and published < 0.99 * scheduled:
            # The publisher fell behind its schedule (the stack answered its POSTs too slowly):
            # the expected deliveries are those of the messages actually published.
            reordered += f"; published {published:,} of {scheduled:,} scheduled"
        w(f"| {p} | {e['version']} | {delivered:,} of {expected:,} ({loss:.2f} %{reordered}) | "
          f"{per_round(p, 'rate-1k', 'p50_ms', fmt_ms)} | {per_round(p, 'rate-1k', 'p99_ms', fmt_ms)} | "
          f"{fmt_ms(med(p, 'rate-1k', 'max_ms'))} | {cpu} | "
          f"{fmt_num(med(p, 'rate-1k', 'rss_per_conn'), ',.0f', ' B')} | {other} |")
    w("")

    if any("rate-10k" in result["peers"][p] for p in driven):
        w("## Fixed rate: 10,000 subscribers × 10 msg/s (100,000 deliveries/s), 128 B")
        w("")
        w("| stack | delivered (loss) | p50 | p99 | max | CPU-s / M deliveries | RSS / connection |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        for p in driven:
            runs = result["peers"][p].get("rate-10k", {}).get("rounds", [])
            if not runs:
                continue
            delivered, expected, loss = delivery_totals(runs)
            w(f"| {p} | {delivered:,} of {expected:,} ({loss:.2f} %) | "
              f"{per_round(p, 'rate-10k', 'p50_ms', fmt_ms)} | {per_round(p, 'rate-10k', 'p99_ms', fmt_ms)} | "
              f"{fmt_ms(med(p, 'rate-10k', 'max_ms'))} | {per_round(p, 'rate-10k', 'cpu_per_m', lambda v: fmt_num(v, '.2f'))} | "
              f"{fmt_num(med(p, 'rate-10k', 'rss_per_conn'), ',.0f', ' B')} |")
        w("")

    w("## Saturated: 1,000 subscribers, at most 8 messages unacknowledged")
    w("")
    w("The publisher sends as fast as every subscriber keeps up (`saturate --window 8`); latency is")
    w("measured from the actual send. Deliveries/s: the load generator's *sustained* figure.")
    w("")
    w("| stack | deliveries/s | p50 | p99 | max | CPU-s / M deliveries | loss |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    for p in driven:
        runs = result["peers"][p].get("saturate-1k", {}).get("rounds", [])
        if not runs:
            w(f"| {p} | no run | | | | | |")
            continue
        delivered, expected, loss = delivery_totals(runs)
        w(f"| {p} | {per_round(p, 'saturate-1k', 'sustained_per_s', lambda v: fmt_num(v))} | "
          f"{fmt_ms(med(p, 'saturate-1k', 'p50_ms'))} | {fmt_ms(med(p, 'saturate-1k', 'p99_ms'))} | "
          f"{fmt_ms(med(p, 'saturate-1k', 'max_ms'))} | "
          f"{per_round(p, 'saturate-1k', 'cpu_per_m', lambda v: fmt_num(v, '.2f'))} | {loss:.2f} % |")
    w("")

    w("## Capacity: most subscribers within a latency SLO, 5 msg/s of 128 B")
    w("")
    w("Each step is a complete run (connect every client, measure, close). p99 ≤ 50 ms: the last")
    w("step that `tickcast-loadgen ramp --clients-step ... --slo-p99 50ms` passed (≥ 99 % delivered,")
    w("p99 within the SLO, load generator not busy). p95 ≤ 250 ms: `ramp` has no p95 SLO, so p95 is")
    w("read from each step's latency histogram (`tickcast-report percentile --at 0.95`), and where")
    w("the ramp stopped on p99 alone the next steps ran one by one (`ramp --max-steps 1`) until p95")
    w("> 250 ms, < 99 % delivered or a busy load generator. ≥: the range ended (or the load generator")
    w("was the limit) first; <: the first step already failed. A single-process server holds at most")
    w("~20,000 connections here (20,000 open files per process), which caps the range.")
    w("")
    per_delivery = [s["loadgen_cpu_pct"] / 100 / s["deliveries_per_second"] * 1e6
                    for p in driven for s in result["peers"][p]["capacity"]["steps"]
                    if s.get("loadgen_cpu_pct") and s["deliveries_per_second"] > 5000]
    if per_delivery:
        us = statistics.median(per_delivery)
        w(f"**The load generator's share.** In these steps it spent a median of {us:.1f} µs of its core per")
        w("delivery, and it reads one publish's frames one after another: the last subscriber's frame")
        w(f"waits ≈ N × {us:.1f} µs for the load generator alone, ≈ {3500 * us / 1000:.0f} ms at 3,500 subscribers and"
          f" ≈ {6500 * us / 1000:.0f} ms at 6,500.")
        w(f"From about {50_000 / us:,.0f} subscribers a p99 ≤ 50 ms is out of reach for any stack with one load")
        w("generator core, so that column tells stacks apart only below that. More load generator cores (or")
        w("hosts) would move the bound; this machine has two.")
        w("")
    w("| stack | max subscribers, p99 ≤ 50 ms | why it stopped | max subscribers, p95 ≤ 250 ms | why it stopped |")
    w("|---|---:|---|---:|---|")
    for p in driven:
        p99, p95 = result["peers"][p]["_bounds"]
        w(f"| {p} | {p99.text()} | {p99.why} | {p95.text()} | {p95.why} |")
    w("")
    w("<details><summary>every step</summary>")
    w("")
    w("Stack and load generator CPU: % of one core over the step's measured phase.")
    w("")
    w("| stack | clients | delivered | deliveries/s | p50 | p95 | p99 | max | stack CPU | load generator CPU | verdict |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for p in driven:
        for s in result["peers"][p]["capacity"]["steps"]:
            verdict = "ok" if s["ok"] else (s["reason"] or "")
            if s["source"] == "p95-step":
                verdict = ("p95 ok" if s["p95_pass"] else s["p95_failure"]) + " (one-step run past the p99 break)"
            elif not s["ok"] and s["p95_pass"]:
                verdict += "; p95 ok"
            if s["busy"]:
                verdict += " (load generator busy)"
            if s.get("cut_off"):
                verdict += f"; {s['cut_off']} connection(s) cut off"
            w(f"| {p} | {s['clients']:,} | {s['delivered_ratio'] * 100:.2f} % | {s['deliveries_per_second']:,.0f} | "
              f"{fmt_ms(s['p50_ms'])} | {fmt_ms(s['p95_ms'])} | {fmt_ms(s['p99_ms'])} | {fmt_ms(s['max_ms'])} | "
              f"{fmt_num(s.get('server_cpu_pct'), '.0f', ' %')} | {fmt_num(s.get('loadgen_cpu_pct'), '.0f', ' %')} | {verdict} |")
    w("")
    w("</details>")
    w("")

    if "tickcast" in driven:
        w("## tickcast's ratio to each stack")
        w("")
        w("Higher is better for tickcast in every column: its deliveries/s and subscribers over the")
        w("stack's; the stack's CPU per delivery, RSS per connection and fixed-rate p99 over tickcast's.")
        w("")
        w("| stack | deliveries/s (saturated) | CPU per delivery (fixed rate) | CPU per delivery (saturated) | RSS / connection | p99 (fixed rate) | subscribers, p99 ≤ 50 ms | subscribers, p95 ≤ 250 ms |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|")
        t99, t95 = result["peers"]["tickcast"]["_bounds"]
        ratios = {}
        for p in driven:
            if p == "tickcast":
                continue
            p99, p95 = result["peers"][p]["_bounds"]
            row = {
                "deliveries_saturated": ratio(med("tickcast", "saturate-1k", "sustained_per_s"), med(p, "saturate-1k", "sustained_per_s")),
                "cpu_per_delivery_rate": ratio(med(p, "rate-1k", "cpu_per_m"), med("tickcast", "rate-1k", "cpu_per_m")),
                "cpu_per_delivery_saturated": ratio(med(p, "saturate-1k", "cpu_per_m"), med("tickcast", "saturate-1k", "cpu_per_m")),
                "rss_per_connection": ratio(med(p, "rate-1k", "rss_per_conn"), med("tickcast", "rate-1k", "rss_per_conn")),
                "p99_rate": ratio(med(p, "rate-1k", "p99_ms"), med("tickcast", "rate-1k", "p99_ms")),
                "subscribers_p99_50ms": ratio_bound(t99, p99),
                "subscribers_p95_250ms": ratio_bound(t95, p95),
            }
            ratios[p] = row
            w(f"| {p} | " + " | ".join(row.values()) + " |")
        result["tickcast_ratios"] = ratios
        w("")
        w("A CPU ratio does not count the redis-server of the stacks that need one (its own CPU is")
        w("in the fixed-rate table).")
        w("")

    w("## Stacks that are not plain WebSocket")
    w("")
    w("Driven like the others (same publisher route, same workloads); the load generator speaks their")
    w("protocol inside the WebSocket, and a subscriber counts as open on the protocol's own confirmation")
    w("(`40{...}`, `confirm_subscription`). Their deliveries carry the published body as a JSON string,")
    w("unescaped before the stamp is read, so latency is measured from the same scheduled send time.")
    w("Protocol frames (open packets, confirmations, pings) are control messages, not deliveries.")
    w("Action Cable 6.1 delivers out of order by design (a 4-thread worker pool per server): late")
    w("arrivals are counted as reordered, not lost.")
    w("")
    for p in driven:
        if p in PROTOCOL_NOTES:
            w(f"- **{p}**: {PROTOCOL_NOTES[p]}.")
    w("")
    w("## Stacks without figures")
    w("")
    for p in peers:
        e = result["peers"][p]
        if p not in driven:
            w(f"- **{p}** ({e['version']}): {e['status']}.")
    w("- Peer details, install paths and the protocols' frames: `benches/peers/README.md`.")
    w("")

    w("## What the load generator does not do yet")
    w("")
    w("- `ramp` judges p99 only (`--slo-p99`): no p95 (or any other percentile) SLO; the p95 column is")
    w("  computed here from the steps' histograms, with one-step ramps past the p99 break.")
    w("- Ramp steps reconnect every client (a step's connections are not kept for the next one).")
    w("- Socket.IO subscribers speak WebSocket only (no long-polling, no upgrade), on the main")
    w("  namespace; binary attachments are not decoded. Action Cable subscribers subscribe to one")
    w("  channel.")
    w("")

    notes = []
    for p in driven:
        for scenario in ("rate-1k", "saturate-1k", "rate-10k"):
            for r in result["peers"][p].get(scenario, {}).get("rounds", []):
                for warning in r["warnings"]:
                    notes.append(f"- {p}, {scenario}, round {r['round']}: {warning}")
    if notes:
        w("## Warnings from the load generator")
        w("")
        lines.extend(notes)
        w("")

    svg_note = ""
    if svg and tool and Path(tool).exists():
        series = []
        for p in driven:
            pts = [(s["clients"], s["p95_ms"]) for s in result["peers"][p]["capacity"]["steps"] if s["p95_ms"] is not None]
            if pts:
                series.append(f"{p}=" + ",".join(f"{x}:{y:.3f}" for x, y in pts))
        if series:
            cmd = [tool, "plot-xy", "--out", svg, "--title", "p95 delivery latency vs subscribers (5 msg/s, 128 B)",
                   "--x-label", "subscribers", "--y-label", "p95 latency (ms)"] + series
            rc = subprocess.run(cmd, check=False).returncode
            svg_note = f"![p95 latency vs subscribers]({Path(svg).name})" if rc == 0 else ""
    if svg_note:
        lines.insert(lines.index("## Capacity: most subscribers within a latency SLO, 5 msg/s of 128 B") + 1, "\n" + svg_note)

    for p in driven:
        del result["peers"][p]["_bounds"]
    result["method"] = {
        "message_bytes": 128, "channel": "bench (one)", "publisher": "HTTP keep-alive POST /publish/bench, pipelined",
        "rate_1k": "1000 subscribers x 50 msg/s", "saturate_1k": "1000 subscribers, window 8",
        "rate_10k": "10000 subscribers x 10 msg/s (full mode)",
        "capacity": "clients stepped at 5 msg/s; p99 <= 50 ms by ramp --slo-p99; p95 <= 250 ms from step histograms",
        "protocols": PROTOCOL_NOTES,
    }
    Path(md_path).write_text("\n".join(lines) + "\n")
    Path(json_path).write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


def main(argv):
    if len(argv) >= 3 and argv[0] == "smoke-check":
        return smoke_check(argv[1], argv[2])
    if len(argv) >= 6 and argv[0] == "steps":
        return steps(argv[1], argv[2], argv[3], float(argv[4]), int(argv[5]))
    if len(argv) >= 5 and argv[0] == "report":
        svg = argv[5] if len(argv) > 5 else ""
        tool = argv[6] if len(argv) > 6 else ""
        return report(argv[1], argv[2], argv[3], argv[4].split(), svg, tool)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
