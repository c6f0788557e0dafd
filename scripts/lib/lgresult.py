"""Figures from tickcast-loadgen's --json results and --percentiles files (stdlib only), shared by
scripts/lib/capacity.py and scripts/lib/sweep.py.

Rates and CPU shares are per second of the *configured* measured phase (plan.stop.duration).
The server's CPU per delivery counts the drain after the phase too (drain_cpu_seconds): the
deliveries counted include the ones made then.

    lgresult.py other-work OUT NAME     prints the share of the server's core other processes
                                        took during run NAME (0..1), for the scripts' reruns
"""
import json
import re
from pathlib import Path


def load(path):
    return json.loads(Path(path).read_text())


def duration_s(result):
    d = result["plan"]["stop"]["duration"]
    return d["secs"] + d["nanos"] / 1e9


def figures(result, txt=None):
    """The figures every table uses, from one run's result (a dict)."""
    c = result["totals"]["counters"]
    loss = result.get("loss") or {}
    server = result.get("server") or {}
    run = result.get("run_seconds") or 0.0
    dur = duration_s(result) or run
    delivered = loss.get("delivered", 0)
    cpu = server.get("cpu_seconds")
    f = {
        "clients": result["plan"]["clients"]["count"],
        "size": result["plan"]["workload"].get("message_bytes"),
        "connected": c["connected"],
        "duration_s": dur,
        "run_s": run,
        "delivered": delivered,
        "deliveries_per_s": delivered / dur if dur else 0.0,
        "published": c.get("publish_ok", 0),
        "received": c["messages_received"],
        "bytes_received": c["bytes_received"],
        "requests": c.get("requests", 0),
        "gap_announced": c.get("gap_announced", 0),
        "disconnected": c.get("disconnected", 0),
        "server_cpu_s": cpu,
        "cpu_per_delivery_s": ((cpu + (server.get("drain_cpu_seconds") or 0.0)) / delivered
                               if cpu is not None and delivered else None),
        # The measured phase's CPU over its configured length.
        "server_util": cpu / dur if cpu is not None and dur else None,
        # A connect storm has no measured phase: its whole wall time counts.
        "loadgen_util": ((result.get("loadgen_run_cpu_seconds") or 0.0) / dur if run > 0.05 and dur else
                         (result.get("loadgen_cpu_seconds") or 0.0) / (result.get("wall_seconds") or 1.0)),
        "warnings": result.get("warnings") or [],
        "connect_s": result.get("connect_seconds") or 0.0,
    }
    if txt and Path(txt).exists():
        m = re.search(r"delivered (\d+) of (\d+) expected", Path(txt).read_text())
        if m:
            f["expected"] = int(m.group(2))
    return f


def loadgen_busy(f):
    return any(w.startswith("LOAD GENERATOR WAS BUSY") for w in f["warnings"]) or f["loadgen_util"] > 0.85


def percentiles(path):
    """[(value_ms, percentile)] of a --percentiles file."""
    rows = []
    if not Path(path).exists():
        return rows
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#"):
            try:
                rows.append((float(parts[0]), float(parts[1])))
            except ValueError:
                pass
    return rows


def at(rows, p):
    """The value (ms) at percentile p (0..1) of percentiles() rows, or None."""
    for v, q in rows:
        if q >= p:
            return v
    return rows[-1][0] if rows else None


def ms(v):
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:.0f} ms"
    if v >= 1:
        return f"{v:.2f} ms"
    return f"{v * 1000:.0f} µs"


def us(seconds):
    return "-" if seconds is None else f"{seconds * 1e6:.2f} µs"


def pct(x):
    return "-" if x is None else f"{x * 100:.0f} %"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out) + "\n"


def noise(out):
    p = Path(out) / "noise.txt"
    return p.read_text().strip().splitlines() if p.exists() else []


def load_range(lines):
    """'load average 1.2 3.4 5.6' lines -> (lowest, highest) 1-minute load average."""
    loads = [float(m.group(1)) for m in (re.search(r"load average ([\d.]+)", l) for l in lines) if m]
    return (min(loads), max(loads)) if loads else (None, None)


def metrics(path):
    """The server's /metrics summed over workers (scrape_metrics.py), or {}."""
    p = Path(path)
    return json.loads(p.read_text()) if p.exists() and p.stat().st_size else {}


def frames_per_send(m):
    sends = m.get("tickcast_sends_total")
    return f"{m.get('tickcast_frames_sent_total', 0) / sends:.2f}" if sends else "-"


def short_warning(w):
    """The load generator's warnings, shortened for a table cell."""
    m = re.match(r"([\d.]+)% of sends left more than 1 ms", w)
    if m:
        return f"{m.group(1)} % of sends > 1 ms late"
    if w.startswith("LOAD GENERATOR WAS BUSY"):
        return "LOAD GENERATOR BUSY"
    return w if len(w) <= 80 else w[:77] + "..."


def noise_summary(lines):
    """One sentence from noise.txt lines (scripts/lib/noise.py)."""
    lo, hi = load_range(lines)
    if lo is None:
        return "not recorded"
    text = (f"1-minute load average {lo:.2f} to {hi:.2f} at the phase starts (2 CPUs shared with other "
            f"engineers' builds and benchmarks; per phase in noise.txt)")
    pressured = [l.split(":", 1)[0] for l in lines if "WARNING" in l]
    if pressured:
        text += (f"; KERNEL TCP MEMORY WAS PAST ITS PRESSURE THRESHOLD at the start of: {', '.join(pressured)} "
                 "(other users' sockets; the kernel then throttles every socket): figures from those phases "
                 "are not trustworthy")
    return text


def quiet_summary(out):
    """How many runs started on quiet cores (quiet.txt of wait_quiet.py), or ''."""
    p = Path(out) / "quiet.txt"
    if not p.exists():
        return ""
    lines = [l for l in p.read_text().splitlines() if "quiet after" in l]
    reruns = sum(1 for l in p.read_text().splitlines() if ": rerun" in l)
    quiet = sum(1 for l in lines if ": quiet after" in l)
    text = f"{quiet} of {len(lines)} runs started with both pinned cores quiet (<= 15 % busy)"
    if quiet < len(lines):
        text += "; the others started anyway after waiting QUIET_WAIT seconds for it"
    if reruns:
        text += f"; {reruns} run(s) repeated because other processes took more than a fifth of the server's core"
    return text + " (quiet.txt)"


def other_work(out, name, result=None):
    """(server core, load generator core): the share of each pinned core that went to other
    processes during a run, from the cpu_snapshot.py lines around it; None when unknown. The
    load generator's own CPU comes from its result (all its processes)."""
    p = Path(out) / f"{name}.cpu.jsonl"
    if not p.exists():
        return None, None
    lines = [json.loads(l) for l in p.read_text().splitlines() if l.strip()]
    if len(lines) < 2:
        return None, None
    a, b = lines[0], lines[-1]
    hz = a.get("hz", 100)
    cpus = list(a["cpus"])
    def share(cpu, own_ticks):
        busy = b["cpus"][cpu][0] - a["cpus"][cpu][0]
        total = b["cpus"][cpu][1] - a["cpus"][cpu][1]
        return max(0.0, (busy - own_ticks) / total) if total > 0 else None
    server = None
    if a.get("pid_ticks") is not None and b.get("pid_ticks") is not None and cpus:
        server = share(cpus[0], b["pid_ticks"] - a["pid_ticks"])
    loadgen = None
    if isinstance(result, dict) and len(cpus) > 1 and cpus[1] != cpus[0]:
        loadgen = share(cpus[1], (result.get("loadgen_cpu_seconds") or 0.0) * hz)
    return server, loadgen


if __name__ == "__main__":
    import sys
    if sys.argv[1:2] == ["other-work"]:
        out, name = sys.argv[2], sys.argv[3]
        p = Path(out) / f"{name}.json"
        server, _ = other_work(out, name, load(p) if p.exists() else None)
        print(f"{server:.3f}" if server is not None else "0")
