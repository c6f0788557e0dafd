#!/usr/bin/env python3
"""The report of scripts/sweep.sh: one table per sweep (every setting side by side, against the
baseline), summary.json, and SVG plots with tickcast-report.

    sweep.py OUT_DIR MODE TICKCAST_REPORT_BIN PASSES
"""
import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import lgresult as lr  # noqa: E402

TITLES = {
    "rate": "Fixed-rate broadcast (threads, pinning, ring size, SQPOLL)",
    "saturate": "Saturated broadcast, window of 64 messages (vectored sends, send queue limit)",
    "echo": "Echo round trips, closed loop (receive buffers)",
}


def run(out, name):
    """One setting's figures from its result's summary (None when the run left no result)."""
    doc = lr.read(out / f"{name}.json")
    if doc is None:
        return None
    s = doc["summary"]
    m = s.get("messages") or {}
    f = {"clients": s["clients"], "size": s.get("message_bytes"),
         "duration_s": (s.get("durations_s") or {}).get("planned"),
         "deliveries_per_s": m.get("deliveries_per_s"), "gap_announced": m.get("gap_announced"),
         "p50_ms": lr.latency_ms(s, "p50"), "p99_ms": lr.latency_ms(s, "p99"),
         "server_util": lr.server_share(s), "cpu_per_delivery_s": lr.cpu_per_delivery_s(s),
         "loadgen_util": (s.get("loadgen") or {}).get("busy_share"),
         "busy": lr.busy(s), "warnings": s.get("warnings") or []}
    f["other_server"], f["other_loadgen"] = lr.other_work(out, name, s)
    mx = lr.metrics(out / f"{name}.metrics.json")
    f["frames_per_send"] = (mx["tickcast_frames_sent_total"] / mx["tickcast_sends_total"]
                            if mx.get("tickcast_sends_total") else None)
    f["recv_rearms"] = mx.get("tickcast_recv_rearms_total")
    f["dropped"] = mx.get("tickcast_dropped_messages_total")
    f["slow_closes"] = mx.get("tickcast_slow_consumer_closes_total")
    f["loop_turns"] = mx.get("tickcast_loop_turns_total")
    if s.get("scenario") == "echo":
        # Echo counts round trips (the messages received back), not broadcast deliveries.
        _, f["deliveries_per_s"], cpu_per_m = lr.round_trips(s)
        f["cpu_per_delivery_s"] = cpu_per_m / 1e6 if cpu_per_m is not None else None
    return f


def combine(passes):
    """Mean of the passes, and the spread of deliveries/s and CPU per delivery."""
    passes = [p for p in passes if p]
    if not passes:
        return None
    c = dict(passes[0])
    for k in ("deliveries_per_s", "p50_ms", "p99_ms", "server_util", "cpu_per_delivery_s", "loadgen_util",
              "frames_per_send", "gap_announced", "recv_rearms", "dropped", "slow_closes", "other_server",
              "other_loadgen"):
        vals = [p[k] for p in passes if p.get(k) is not None]
        c[k] = statistics.mean(vals) if vals else None
        c[k + "_all"] = vals
    c["busy"] = any(p["busy"] for p in passes)
    # One of each kind over the passes (the same warning in every pass is one cell entry).
    c["warnings"] = list({w.get("kind"): w for p in passes for w in p["warnings"]}.values())
    return c


def rel(v, base):
    if v is None or not base:
        return ""
    return f" ({(v / base - 1) * 100:+.0f} %)"


def spread(c, key, fmt):
    vals = c.get(key + "_all") or []
    return "" if len(vals) < 2 else " [" + " / ".join(fmt(v) for v in vals) + "]"


def main():
    out, mode, report_bin = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    rows = list(csv.DictReader((out / "rows.tsv").read_text().splitlines(), delimiter="\t"))
    machine = (out / "machine.txt").read_text().strip().splitlines()
    noise = lr.noise(out)
    rounds = int(sys.argv[4])

    summary = {"mode": mode, "machine": machine, "noise": noise, "sweeps": {}}
    md = [f"# Tuning sweeps ({out.name}, {mode})", ""]
    md += [f"- {line}" for line in machine]
    quiet = lr.quiet_summary(out)
    md += [f"- noise: {lr.noise_summary(noise)}" + (f"; {quiet}" if quiet else ""), ""]
    md += ["Every setting runs on a fresh server pinned to one core, the load generator pinned to the other, "
           "the same load for every setting of a sweep. deliveries/s = delivered (echo: round trips) / the "
           "measured seconds. CPU / delivery = the server's CPU-seconds of the measured phase and the drain after "
           "it / deliveries (lower is better); every figure is the load generator's (each run's JSON `summary`). Frames / send, receive re-arms and drops come from the server's /metrics after the run. "
           f"{'Values are the mean of ' + str(rounds) + ' interleaved passes, each pass in brackets.' if rounds > 1 else 'One pass.'} "
           "A load generator above 85 % of its core (marked *) may itself have been the limit. \"Other work\" is the "
           "share of each pinned core that went to processes other than ours during the run (from /proc/stat): "
           "a setting measured while another process took its core is not comparable with its neighbours.", ""]
    for sweep in ("rate", "saturate", "echo"):
        srows = [r for r in rows if r["sweep"] == sweep]
        if not srows:
            continue
        results = []
        for r in srows:
            c = combine([run(out, f"{sweep}-{r['index']}-r{k}") for k in range(1, rounds + 1)])
            results.append((r, c))
        base = results[0][1] or {}
        summary["sweeps"][sweep] = [{"label": r["label"], "flags": r["flags"], "param": r["param"],
                                     **({k: v for k, v in c.items()} if c else {})} for r, c in results]
        first = next((c for _, c in results if c), None)
        load = ""
        if first:
            load = f"{first['clients']:,} clients, {first['size']} B, {first['duration_s']:g} s per setting"
        md += [f"## {TITLES[sweep]}", "", load, ""]
        table = []
        for r, c in results:
            if not c:
                table.append([r["label"], "failed"] + [""] * 10)
                continue
            table.append([
                r["label"],
                f"{c['deliveries_per_s']:,.0f}{rel(c['deliveries_per_s'], base.get('deliveries_per_s'))}"
                + spread(c, "deliveries_per_s", lambda v: f"{v / 1000:.0f}k"),
                lr.ms(c["p50_ms"]), lr.ms(c["p99_ms"]) + spread(c, "p99_ms", lr.ms),
                lr.pct(c["server_util"]),
                lr.us(c["cpu_per_delivery_s"]) + rel(c["cpu_per_delivery_s"], base.get("cpu_per_delivery_s"))
                + spread(c, "cpu_per_delivery_s", lambda v: f"{v * 1e6:.2f}"),
                "-" if c["frames_per_send"] is None else f"{c['frames_per_send']:.2f}",
                f"{c['gap_announced'] or 0:,.0f}" if sweep != "echo" else f"{c['recv_rearms'] or 0:,.0f}",
                lr.pct(c["loadgen_util"]) + (" *" if c["busy"] else ""),
                f"{lr.pct(c['other_server'])} / {lr.pct(c['other_loadgen'])}",
                "; ".join(lr.short_warning(w) for w in c["warnings"]),
            ])
        md += [lr.table(["setting", "deliveries/s" if sweep != "echo" else "round trips/s", "p50", "p99",
                         "server CPU", "CPU / delivery", "frames / send",
                         "lost to gap notices" if sweep != "echo" else "receive re-arms",
                         "load generator CPU", "other work on server / load generator core", "warnings"], table)]
        # Latency distributions of the first pass.
        specs = [f"{r['label']}={out / (sweep + '-' + r['index'] + '-r1.hgrm')}" for r, c in results
                 if c and (out / f"{sweep}-{r['index']}-r1.hgrm").exists()
                 and (out / f"{sweep}-{r['index']}-r1.hgrm").stat().st_size]
        if specs:
            subprocess.run([report_bin, "plot-latency", "--out", str(out / f"{sweep}-latency.svg"), "--title",
                            f"{TITLES[sweep]}: latency", "--", *specs], check=True, stdout=subprocess.DEVNULL)
            md += [f"![{sweep} latency]({sweep}-latency.svg)", ""]
        # One plot per numeric parameter: CPU per delivery against its value.
        params = {}
        for r, c in results:
            if r["param"] and c and c["cpu_per_delivery_s"] is not None:
                k, v = r["param"].split("=")
                params.setdefault(k, []).append((float(v), c))
        for k, pts in params.items():
            if len(pts) < 2:
                continue
            pts.sort()
            unit = "round trips/s" if sweep == "echo" else "deliveries/s"
            for suffix, ylabel, fmt in (
                ("cpu", "server CPU per delivery (µs)", lambda c: f"{c['cpu_per_delivery_s'] * 1e6:.4f}"),
                ("throughput", unit, lambda c: f"{c['deliveries_per_s']:.0f}"),
            ):
                svg = f"{sweep}-{k}-{suffix}.svg"
                subprocess.run([report_bin, "plot-xy", "--out", str(out / svg),
                                f"--title=--{k}: {ylabel} ({sweep} sweep)", f"--x-label=--{k}",
                                f"--y-label={ylabel}", "--log-x", "--",
                                f"{sweep}=" + ",".join(f"{x:g}:{fmt(c)}" for x, c in pts)],
                               check=True, stdout=subprocess.DEVNULL)
                md += [f"![{k} {suffix}]({svg})"]
            md += [""]

    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "report.md").write_text("\n".join(md))


if __name__ == "__main__":
    main()
