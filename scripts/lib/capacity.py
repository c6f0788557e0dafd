#!/usr/bin/env python3
"""The report of scripts/capacity.sh: reads its output directory, writes summary.json (every
figure), calibration.json (the inputs of `tickcast-report plan`, schema in docs/capacity.md),
report.md and the SVG plots (with tickcast-report).

    capacity.py OUT_DIR MODE TICKCAST_REPORT_BIN SLO
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import lgresult as lr  # noqa: E402

SCHEMA = "tickcast-capacity/1"


def machine_info(out):
    info = {}
    for line in (out / "machine.txt").read_text().splitlines():
        if ": " in line:
            k, v = line.split(": ", 1)
            info[k] = v
    return info


def idle_runs(out):
    rows = []
    for p in sorted(out.glob("idle-*-t*.json")):
        if p.name.endswith(".slab.json"):
            continue
        doc = lr.read(p)
        if doc is None:
            continue
        s = doc["summary"]
        threads = int(p.stem.rsplit("-t", 1)[1])
        server = s.get("server") or {}
        opened = (s.get("connections") or {}).get("opened") or 0
        row = {"file": p.name, "clients": s["clients"], "held": opened, "threads": threads,
               "loadgen_processes": (s.get("loadgen") or {}).get("workers"), "warnings": s.get("warnings") or []}
        if server.get("rss_held_bytes") is not None and opened:
            row["rss_before_bytes"] = server["rss_before_bytes"]
            row["rss_held_bytes"] = server["rss_held_bytes"]
            row["rss_per_connection"] = server["rss_per_connection_bytes"]
            # Both ends of every loopback connection are in this machine's kernel: half is the
            # server's.
            row["tcp_mem_per_connection"] = (server.get("tcp_mem_per_connection_bytes") or 0.0) / 2
        slab = p.with_name(p.stem + ".slab.json")
        if slab.exists() and opened:
            sj = json.loads(slab.read_text())
            row["slab_per_connection"] = (sj["peak"]["slab_bytes"] - sj["baseline"]["slab_bytes"]) / opened / 2
        rows.append(row)
    return sorted(rows, key=lambda r: r["held"])


def http_runs(out):
    rows = []
    for kind in ("sse", "longpoll"):
        p = out / f"http-{kind}.jsonl"
        if p.exists():
            rows += [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return rows


def step_row(doc):
    """One ramp step (a whole result document with the search's `step` verdict) as a table row."""
    s, v = doc["summary"], lr.step(doc)
    return {"rate": v.get("rate") or 0.0, "clients": v.get("clients", s["clients"]),
            "offered_per_s": (v.get("rate") or 0.0) * v.get("clients", s["clients"]),
            "deliveries_per_s": (s.get("messages") or {}).get("deliveries_per_s") or 0.0,
            "delivered_ratio": v.get("delivered_ratio") or 0.0,
            "p50_ms": lr.latency_ms(s, "p50"), "p99_ms": lr.latency_ms(s, "p99"), "max_ms": lr.latency_ms(s, "max"),
            "server_util": lr.server_share(s), "loadgen_util": (s.get("loadgen") or {}).get("busy_share") or 0.0,
            "busy": lr.busy(s), "cpu_per_delivery_s": lr.cpu_per_delivery_s(s), "ok": bool(v.get("ok")),
            "reason": v.get("reason")}


def ramp(out):
    steps = lr.steps(lr.load(out / "ramp.json"))
    rows = [step_row(st) for st in steps]
    good = [r for r in rows if r["ok"]]
    best = max(good, key=lambda r: r["deliveries_per_s"]) if good else None
    failed = next((r for r in rows if not r["ok"]), None)
    if failed is None:
        stop = "every step passed (max steps reached): a lower bound"
        server_limited = False
    else:
        stop = failed["reason"] or "failed"
        # A step that failed while the load generator was busy does not show the server's limit.
        server_limited = not failed["busy"]
    return steps, rows, best, stop, server_limited


def cost(out, name):
    """One cost run's figures from its summary, or None when it left no result."""
    doc = lr.read(out / f"{name}.json")
    if doc is None:
        return None
    s = doc["summary"]
    m, server = s.get("messages") or {}, s.get("server") or {}
    f = {"file": f"{name}.json", "clients": s["clients"], "size": s.get("message_bytes"),
         "rate": lr.planned(doc)["per_second"], "published": m.get("published") or 0,
         "delivered": m.get("delivered") or 0, "deliveries_per_s": m.get("deliveries_per_s") or 0.0,
         "requests": (s.get("requests") or {}).get("count") or 0,
         "server_cpu_s": server.get("cpu_s"), "server_util": lr.server_share(s),
         "cpu_per_delivery_s": lr.cpu_per_delivery_s(s),
         "received_bytes_per_delivery": (s.get("wire") or {}).get("received_bytes_per_delivery"),
         "loadgen_util": (s.get("loadgen") or {}).get("busy_share") or 0.0,
         "p50_ms": lr.latency_ms(s, "p50"), "p99_ms": lr.latency_ms(s, "p99"), "warnings": s.get("warnings") or []}
    f["other_server"], f["other_loadgen"] = lr.other_work(out, name, s)
    f["metrics"] = lr.metrics(out / f"{name}.metrics.json")
    return f


def storm_figures(out):
    s = lr.summary(out / "storm.json")
    c = s.get("connections") or {}
    return {"clients": s["clients"], "connected": c.get("opened") or 0,
            "connect_s": (s.get("durations_s") or {}).get("connect") or 0.0,
            "connects_per_s": c.get("opened_per_s"), "busy": lr.busy(s),
            "loadgen_util": (s.get("loadgen") or {}).get("busy_share") or 0.0,
            "connect_p99_ms": lr.latency_ms(s, "p99", "connect"),
            "handshake_p99_ms": lr.latency_ms(s, "p99", "handshake"),
            "other": lr.other_work(out, "storm", s)}


def slope(points):
    """Least squares b of y = a + b x."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def contention(f):
    """A note for an input measured while other processes took part of the server's core."""
    share = f.get("other_server") if f else None
    if share is None or share <= 0.2:
        return None
    return (f"other processes took {share * 100:.0f} % of the server's core during this run (shared machine): "
            "sharing a core makes the server batch more, so this cost is likely understated")


def inp(value, unit, at, src, bytes_=None, note=None):
    if value is None and unit == "CPU-s":
        # The summary has no CPU per delivery when the server's CPU read zero ticks (a run
        # shorter than the clock's resolution, as in smoke mode): plan needs a number.
        value = 0.0
        note = "; ".join(n for n in (note, "not measured: the server's CPU in this run was below the clock's "
                                             "resolution (summary figure null), taken as 0") if n)
    d = {"value": value, "unit": unit, "at": at, "from": src}
    if bytes_ is not None:
        d["bytes"] = bytes_
    if note:
        d["note"] = note
    return d


def main():
    out, mode, report_bin, slo = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    m = machine_info(out)
    noise = lr.noise(out)
    noise_text = lr.noise_summary(noise)
    if lr.quiet_summary(out):
        noise_text += "; " + lr.quiet_summary(out)
    src = str(out)

    idle = idle_runs(out)
    http = http_runs(out)
    steps, ramp_rows, best, stop, server_limited = ramp(out)
    ramp_other = lr.other_work(out, "ramp")[0]
    ws_runs = sorted((p.stem for p in out.glob("cost-ws-*.json") if p.stem[len("cost-ws-"):].isdigit()),
                     key=lambda n: int(n.rsplit("-", 1)[1]))
    costs = {n: cost(out, n) for n in ws_runs + ["cost-sse", "cost-longpoll", "cost-poll", "cost-publish"]}
    storm = storm_figures(out)

    # --- calibration -------------------------------------------------------------------------
    ws128 = costs["cost-ws-128"]
    load_at = lambda f: f"{f['clients']} clients x {f['rate'] or 0:.0f} msg/s"  # noqa: E731
    sizes = [(int(n.rsplit("-", 1)[1]), f["cpu_per_delivery_s"]) for n, f in costs.items()
             if n.startswith("cost-ws-") and f and f["cpu_per_delivery_s"] is not None]
    b = max(0.0, slope(sizes))
    inputs = {}
    inputs["ws_cpu_s_per_delivery"] = inp(ws128["cpu_per_delivery_s"], "CPU-s", load_at(ws128) + ", 128 B",
                                          f"{src}/cost-ws-128.json: summary.server.cpu_s_per_million_deliveries",
                                          128, contention(ws128))
    inputs["cpu_s_per_byte"] = inp(b, "CPU-s", "WebSocket, " + ", ".join(f"{s} B" for s, _ in sizes),
                                   f"{src}/cost-ws-*.json: least-squares slope of CPU per delivery over size",
                                   note="; ".join(n for n in (["clamped at 0"] if slope(sizes) < 0 else [])
                                                  + [contention(costs[f"cost-ws-{x}"]) for x, _ in sizes]
                                                  if n) or None)
    for t in ("sse", "longpoll"):
        f = costs[f"cost-{t}"]
        inputs[f"{t}_cpu_s_per_delivery"] = inp(f["cpu_per_delivery_s"], "CPU-s", load_at(f) + ", 128 B",
                                                f"{src}/cost-{t}.json: summary.server.cpu_s_per_million_deliveries",
                                                128, contention(f))
    poll = costs["cost-poll"]
    per_req = poll["server_cpu_s"] / poll["requests"] if poll["requests"] else None
    inputs["poll_cpu_s_per_request"] = inp(
        per_req, "CPU-s", load_at(poll) + f", 128 B, 1 s poll interval ({poll['delivered'] / max(poll['requests'], 1):.1f} messages per answer)",
        f"{src}/cost-poll.json: summary.server.cpu_s / summary.requests.count", note=contention(poll))
    pub = costs["cost-publish"]
    inputs["cpu_s_per_publish"] = inp(pub["server_cpu_s"] / max(pub["published"], 1), "CPU-s",
                                      f"1 subscriber, {pub['rate'] or 0:.0f} HTTP publishes/s",
                                      f"{src}/cost-publish.json: summary.server.cpu_s / publishes (its one delivery included)",
                                      note=contention(pub))
    overhead = ws128["received_bytes_per_delivery"]
    inputs["wire_overhead_bytes"] = inp(overhead - 128 if overhead is not None else None, "B",
                                        "WebSocket frame + JSON envelope",
                                        f"{src}/cost-ws-128.json: summary.wire.received_bytes_per_delivery - 128")
    big = max((r for r in idle if r.get("rss_per_connection") is not None), key=lambda r: r["held"], default=None)
    one = next((r for r in idle if r["threads"] == 1 and r.get("rss_before_bytes")), None)
    if one:
        inputs["process_base_rss_bytes"] = inp(one["rss_before_bytes"], "B", "1 worker, before any client",
                                               f"{src}/{one['file']}: server RSS before")
    if big:
        inputs["ws_rss_bytes_per_connection"] = inp(
            big["rss_per_connection"], "B", f"{big['held']} idle connections, {big['threads']} workers",
            f"{src}/{big['file']}: server RSS growth / connections")
        kernel = max(0.0, big.get("slab_per_connection", 0.0)) + max(0.0, big.get("tcp_mem_per_connection", 0.0))
        inputs["kernel_bytes_per_connection"] = inp(
            kernel, "B", f"{big['held']} idle connections",
            f"{src}/{big['file'].replace('.json', '.slab.json')}: /proc/meminfo Slab growth / connections / 2 (+ socket buffers)",
            note="both ends of each loopback connection are in this kernel: halved; the machine's other "
                 "activity moves Slab too")
    extra = 4 * 1024 * 1024
    if one and big and big["threads"] > 1:
        extra = max(extra, (big["rss_before_bytes"] - one["rss_before_bytes"]) / (big["threads"] - 1) + extra)
    inputs["worker_fixed_bytes"] = inp(extra, "B", "per worker",
                                       "configuration: --buf-count 1024 x --buf-size 4KiB receive buffers (touched as the ring "
                                       f"cycles), plus the measured RSS-before growth per extra worker ({src}/idle-*.json)")
    for kind in ("sse", "longpoll"):
        rows = [r for r in http if r["kind"] == kind]
        if rows:
            last = max(rows, key=lambda r: r["clients"])
            inputs[f"{kind}_rss_bytes_per_connection"] = inp(
                last["rss_per_client_bytes"], "B", f"{last['clients']} idle clients, 1 worker",
                f"{src}/http-{kind}.jsonl: server RSS growth / clients")
    nofile = int(m.get("mode", "").rsplit("RLIMIT_NOFILE ", 1)[-1]) if "RLIMIT_NOFILE" in m.get("mode", "") else 20000
    inputs["connections_per_worker"] = inp(min(nofile, 20000), "connections", "",
                                           "configuration: a ring's direct-descriptor table is capped at RLIMIT_NOFILE "
                                           f"({nofile} here)")
    storm_rate = storm["connects_per_s"]
    inputs["connects_per_s_per_core"] = inp(
        storm_rate, "connections/s", f"{storm['connected']} WebSocket connections opened unpaced",
        f"{src}/storm.json: summary.connections.opened_per_s",
        note=("the load generator was busy: a lower bound" if storm["busy"] else None))
    if best:
        lg_note = ("; the load generator was above 85 % of its core at this step: it may have been the limit"
                   if best["loadgen_util"] > 0.85 else "")
        note = ("server-limited: the next step broke the SLO" + lg_note if server_limited
                else f"a lower bound: the run stopped because {stop}; the server's core was "
                     f"{(best['server_util'] or 0) * 100:.0f} % busy at this step" + lg_note)
        inputs["slo_deliveries_per_s_per_core"] = inp(
            best["deliveries_per_s"], "deliveries/s",
            f"p99 <= {slo}, {best['clients']} subscribers x {best['rate']:.0f} msg/s, 128 B",
            f"{src}/ramp.json: last passing step (summary.messages.deliveries_per_s)", 128, note)
    calibration = {"schema": SCHEMA, "machine": m.get("machine", "?"), "commit": m.get("commit", ""),
                   "date": m.get("date", ""), "run": src, "noise": noise_text, "inputs": inputs}
    (out / "calibration.json").write_text(json.dumps(calibration, indent=2) + "\n")

    summary = {"mode": mode, "machine": m, "noise": noise, "idle": idle, "http": http, "ramp": ramp_rows,
               "ramp_stop": stop, "costs": {k: {kk: vv for kk, vv in v.items() if kk != "pct"} for k, v in costs.items() if v},
               "storm": storm}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    # --- plots -------------------------------------------------------------------------------
    def plot(*args):
        subprocess.run([report_bin, *args], check=True, stdout=subprocess.DEVNULL)

    plot("plot-xy", "--out", str(out / "ramp-p99.svg"), "--title",
         f"Ramp: {ramp_rows[0]['clients']} WebSocket subscribers, 128 B, one server core",
         "--x-label", "offered deliveries/s", "--y-label", "latency (ms)", "--",
         "p99=" + ",".join(f"{r['offered_per_s']:.0f}:{r['p99_ms'] or 0:.3f}" for r in ramp_rows),
         "p50=" + ",".join(f"{r['offered_per_s']:.0f}:{r['p50_ms'] or 0:.3f}" for r in ramp_rows))
    plot("plot-xy", "--out", str(out / "ramp-cpu.svg"), "--title", "Ramp: CPU of each side (100 % = one core)",
         "--x-label", "offered deliveries/s", "--y-label", "CPU (% of one core)", "--",
         "server=" + ",".join(f"{r['offered_per_s']:.0f}:{(r['server_util'] or 0) * 100:.1f}" for r in ramp_rows),
         "load generator=" + ",".join(f"{r['offered_per_s']:.0f}:{r['loadgen_util'] * 100:.1f}" for r in ramp_rows))
    tmp = out / "tmp-steps"
    tmp.mkdir(exist_ok=True)
    specs = []
    for i, (step, row) in enumerate(zip(steps, ramp_rows)):
        p = tmp / f"step-{i}.json"
        p.write_text(json.dumps(step))
        specs.append(f"{row['offered_per_s'] / 1000:.0f}k/s{'' if row['ok'] else ' (failed)'}={p}")
    plot("plot-latency", "--out", str(out / "ramp-latency.svg"), "--title",
         "Ramp: delivery latency by step (offered deliveries/s)", "--", *specs)
    shutil.rmtree(tmp)
    specs = [f"{n[5:]}={out / (n + '.hgrm')}" for n, f in costs.items() if f and n != "cost-publish"]
    # WebSocket's milliseconds beside 1 s polling: a log axis keeps every line readable.
    plot("plot-latency", "--log-y", "--out", str(out / "cost-latency.svg"), "--title",
         f"Delivery latency, {ws128['clients']} subscribers x {ws128['rate'] or 0:.0f} msg/s",
         "--", *specs)
    xy = ["ws=" + ",".join(f"{r['held']}:{r['rss_per_connection']:.0f}" for r in idle if r.get("rss_per_connection") is not None)]
    for kind in ("sse", "longpoll"):
        pts = [r for r in http if r["kind"] == kind]
        if pts:
            xy.append(f"{kind}=" + ",".join(f"{r['clients']}:{r['rss_per_client_bytes']}" for r in pts))
    plot("plot-xy", "--out", str(out / "idle-rss.svg"), "--title", "Server RSS per idle connection",
         "--x-label", "connections held", "--y-label", "bytes per connection", "--log-x", "--", *xy)

    # --- report.md ---------------------------------------------------------------------------
    r = [f"# Capacity of one tickcast core ({out.name}, {mode})", ""]
    r += [f"- {k}: {v}" for k, v in m.items()]
    r += [f"- noise: {noise_text}", ""]
    r += ["Server pinned to one core (`taskset`), the load generator to the other. Every figure is the load "
          "generator's (the `summary` of each run's JSON): deliveries/s are delivered messages / the measured "
          "seconds; server CPU per delivery = the server's CPU-seconds of the measured phase and the drain "
          "after it / deliveries.", ""]
    r += ["## Idle WebSocket connections", "",
          lr.table(["connections held", "server workers", "load generator processes", "RSS / conn",
                    "kernel slab / conn (server half)", "socket buffers / conn", "warnings"],
                   [[f"{x['held']:,} of {x['clients']:,}", x["threads"], x["loadgen_processes"],
                     f"{x.get('rss_per_connection', 0):,.0f} B", f"{x.get('slab_per_connection', 0):,.0f} B",
                     f"{x.get('tcp_mem_per_connection', 0):,.0f} B", "; ".join(lr.short_warning(w) for w in x["warnings"])] for x in idle])]
    if big:
        r += [f"Most held in this run: **{big['held']:,}** connections ({big['threads']} workers on one core). "
              "This is where the mode stopped, not the machine's limit (which is memory and ephemeral ports: "
              "40 source addresses x ~28,000 ports here).", ""]
    if http:
        r += ["## Idle SSE streams and parked long-polls (one worker)", "",
              lr.table(["transport", "clients", "RSS / client", "marginal RSS / client"],
                       [[x["kind"], f"{x['clients']:,}", f"{x['rss_per_client_bytes']:,} B",
                         f"{x['marginal_per_client_bytes']:,} B"] for x in http])]
    r += [f"## Deliveries/s under p99 <= {slo} (ramp, 128 B, one channel)", "",
          lr.table(["msg/s", "subscribers", "deliveries/s", "delivered", "p50", "p99", "server CPU",
                    "CPU / delivery", "load generator CPU", "verdict"],
                   [[f"{x['rate']:.0f}", x["clients"], f"{x['deliveries_per_s']:,.0f}",
                     f"{x['delivered_ratio'] * 100:.1f} %", lr.ms(x["p50_ms"]), lr.ms(x["p99_ms"]),
                     lr.pct(x["server_util"]), lr.us(x["cpu_per_delivery_s"]),
                     lr.pct(x["loadgen_util"]) + (" *" if x["loadgen_util"] > 0.85 else ""),
                     x["reason"] or "ok"] for x in ramp_rows])]
    busy_from = next((x for x in ramp_rows if x["loadgen_util"] > 0.85), None)
    if busy_from:
        r += [f"\\* The load generator used more than 85 % of its core over the measured phase from "
              f"{busy_from['deliveries_per_s']:,.0f} deliveries/s on (summary.loadgen.busy_share): from there on "
              "it may have been the limit, not the server.", ""]
    if best:
        r += [f"Highest passing step: **{best['deliveries_per_s']:,.0f} deliveries/s** at p99 {lr.ms(best['p99_ms'])} "
              f"(server core {lr.pct(best['server_util'])} busy). The ramp stopped because: {stop}."
              + ("" if server_limited else " So this is a lower bound of one core's capacity, not its limit."), ""]
    else:
        r += [f"No step passed ({stop}).", ""]
    r += [f"Other processes took {lr.pct(ramp_other)} of the server's core over the whole ramp "
          "(from /proc/stat; the steps are not measured one by one).", ""]
    r += ["![ramp p99](ramp-p99.svg) ![ramp cpu](ramp-cpu.svg) ![ramp latency](ramp-latency.svg)", ""]
    r += ["## Server CPU per delivery at a moderate load", "",
          lr.table(["run", "subscribers x msg/s", "size", "deliveries/s", "p50", "p99", "server CPU",
                    "CPU / delivery", "CPU / request", "frames / send", "load generator CPU",
                    "other work on server / load generator core", "warnings"],
                   [[n[5:], f"{f['clients']} x {f['rate'] or 0:.0f}",
                     f"{f.get('size', '')}", f"{f['deliveries_per_s']:,.0f}", lr.ms(f["p50_ms"]), lr.ms(f["p99_ms"]),
                     lr.pct(f["server_util"]), lr.us(f["cpu_per_delivery_s"]),
                     lr.us(f["server_cpu_s"] / f["requests"]) if n in ("cost-poll", "cost-longpoll") and f["requests"] and f["server_cpu_s"] else "-",
                     lr.frames_per_send(f["metrics"]), lr.pct(f["loadgen_util"]),
                     f"{lr.pct(f['other_server'])} / {lr.pct(f['other_loadgen'])}",
                     "; ".join(lr.short_warning(w) for w in f["warnings"])] for n, f in costs.items() if f])]
    r += [f"Size slope b = {b * 1e9:.3f} ns per byte (least squares over {', '.join(str(s) for s, _ in sizes)} B).", "",
          "![latency by transport](cost-latency.svg) ![idle rss](idle-rss.svg)", ""]
    r += ["## Connection storm", "",
          f"{storm['connected']:,} of {storm['clients']:,} WebSocket connections opened unpaced in "
          f"{storm['connect_s']:.2f} s: **{storm_rate or 0:,.0f} connections/s** on one server core "
          f"(load generator {lr.pct(storm['loadgen_util'])} busy; other processes took {lr.pct(storm['other'][0])} of the "
          f"server's core); TCP connect p99 {lr.ms(storm['connect_p99_ms'])}, "
          f"handshake p99 {lr.ms(storm['handshake_p99_ms'])}.", ""]
    r += ["## Calibration (results/capacity-calibration.json)", "",
          lr.table(["input", "value", "unit", "measured at", "from"],
                   [[k, f"{v['value']:.4g}" if v["value"] is not None else "-", v["unit"], v["at"], v["from"]]
                    for k, v in inputs.items()])]
    (out / "report.md").write_text("\n".join(r))


if __name__ == "__main__":
    main()
