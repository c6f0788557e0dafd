"""Reads tickcast-loadgen's `--json` results (schema 2, documented key by key in docs/loadgen.md)
for every script and report helper (stdlib only).

Every figure comes from the result's `summary`, computed once by the load generator: latency
percentiles from `summary.histograms.<name>` (µs), deliveries/s from `summary.messages`, CPU per
delivery from `summary.server`, warnings by their `kind`. Nothing here parses the load
generator's printed report. What this module adds is formatting (ms, %, tables) and the few
figures the summary does not carry (marked "not in the summary" where they are made).

    lgresult.py other-work OUT NAME     prints the share of the server's core other processes
                                        took during run NAME (0..1), for the scripts' reruns
    lgresult.py all-delivered FILE...   exit 0 when every result delivered every expected
                                        message (and some were expected); one line per file
"""
import json
import statistics
import sys
from pathlib import Path

SCHEMA = 2
# A load generator above this share of its threads' CPU may have been the limit itself.
BUSY_SHARE = 0.85
# Short forms of the warning kinds (summary.warnings[].kind) for table cells; the full message
# goes in the notes under a table.
SHORT = {
    "loadgen_busy": "LOAD GENERATOR BUSY",
    "connect_failed": "connections failed",
    "cut_off": "connections cut off",
    "delivery_behind": "delivery fell behind",
    "malformed": "malformed messages",
    "publish_refused": "publishes refused",
    "silent_loss": "SILENT LOSS",
    "unstamped_receives": "unstamped receives",
    "sends_late": "sends late",
}


class ResultError(ValueError):
    """A file that is not a schema-2 result of the load generator."""


# ------------------------------------------------------------------------------ reading

def load(path):
    """The whole result document of one `--json` file (a run, or a ramp with `steps`)."""
    try:
        doc = json.loads(Path(path).read_text())
    except ValueError as e:
        raise ResultError(f"{path}: not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("summary"), dict):
        raise ResultError(f"{path}: not a tickcast-loadgen result of schema {SCHEMA} (no `summary`)")
    return doc


def read(path):
    """load(), or None when the file is missing or is not a result (a run that failed)."""
    try:
        return load(path)
    except (OSError, ResultError):
        return None


def summary(path):
    """The `summary` of one result file (the common case)."""
    return load(path)["summary"]


def steps(doc):
    """A ramp's steps, each a whole result document (with its own `summary`, and `step`: the
    search's verdict on it), in order."""
    return doc.get("steps") or []


def step(doc):
    """The search's verdict on one step: {rate, clients, ok, reason, delivered_ratio}. (A step's
    own summary has no thresholds: the search judges it, and says so here.)"""
    return doc.get("step") or {}


def planned(doc):
    """What the run was asked to do that the summary does not say: the publish schedule of the
    plan (messages per second of a fixed rate, the window of a saturated run)."""
    schedule = (((doc.get("plan") or {}).get("workload") or {}).get("schedule")) or {}
    return {"per_second": schedule.get("per_second"), "window": schedule.get("window"),
            "saturated": schedule.get("kind") == "windowed"}


# ------------------------------------------------------------------------------ figures

def hist(s, name=None):
    """One histogram's figures (count, min_us, ..., max_us); the run's main one by default;
    {} when the run recorded none of that name."""
    return (s.get("histograms") or {}).get(name or s.get("main_histogram") or "latency") or {}


def latency_ms(s, key, name=None):
    """A latency figure in milliseconds: key "p50", "p99", "p99_9", "max", ... of a histogram;
    None when the run has no such figure."""
    v = hist(s, name).get(f"{key}_us")
    return None if v is None else v / 1000.0


def delivered_ratio(s):
    m = s.get("messages") or {}
    return m["delivered"] / m["expected"] if m.get("expected") else None


def all_delivered(s):
    """Every expected message delivered, some expected, no connection lost on the way."""
    m, c = s.get("messages") or {}, s.get("connections") or {}
    return bool(m.get("expected")) and m.get("delivered") == m["expected"] and not (
        c.get("failed_tcp") or c.get("failed_handshake"))


def cpu_per_delivery_s(s):
    """The server's CPU-seconds per delivery (measured phase and drain), or None."""
    v = (s.get("server") or {}).get("cpu_s_per_million_deliveries")
    return None if v is None else v / 1e6


def server_share(s):
    """The server's CPU over the measured phase as a share of one core."""
    return (s.get("server") or {}).get("cpu_share")


def round_trips(s):
    """Echo: round trips completed, their rate, and the server's CPU-seconds per million of them
    (echo has no deliveries: its round trips are the messages received back)."""
    m = s.get("messages") or {}
    return (m.get("received") or 0, m.get("received_per_s"),
            (s.get("server") or {}).get("cpu_s_per_million_received"))


def kinds(s):
    return [w.get("kind") for w in s.get("warnings") or []]


def busy(s):
    """The load generator said it was busy, or used more than BUSY_SHARE of its threads."""
    return "loadgen_busy" in kinds(s) or ((s.get("loadgen") or {}).get("busy_share") or 0) > BUSY_SHARE


def short_warning(w):
    return SHORT.get(w.get("kind"), w.get("kind") or "warning")


def short_warnings(s):
    return "; ".join(short_warning(w) for w in s.get("warnings") or [])


def full_warnings(s):
    return "; ".join(w.get("message") or w.get("kind", "") for w in s.get("warnings") or [])


def failed_thresholds(s):
    return [t for t in s.get("thresholds") or [] if not t.get("passed")]


def verdict(s):
    """Why a run (or ramp step) did not pass, or None when it passed: the thresholds it broke,
    else a busy load generator (inconclusive)."""
    if s.get("passed", True) and not failed_thresholds(s):
        return None
    failed = [f"{t['name']} {fmt_value(t.get('value'), t.get('unit'))} over the limit "
              f"{fmt_value(t.get('limit'), t.get('unit'))}" for t in failed_thresholds(s)]
    if failed:
        return "; ".join(failed)
    if busy(s):
        return "the load generator was busy: inconclusive"
    return "failed"


# ------------------------------------------------------------------------------ formatting

def ms(v):
    """Milliseconds for the capacity and sweep reports."""
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:.0f} ms"
    if v >= 1:
        return f"{v:.2f} ms"
    return f"{v * 1000:.0f} µs"


def fmt_value(v, unit):
    if v is None:
        return "-"
    if unit == "us":
        return fmt_ms(v / 1000.0)
    return f"{v:g}{' ' + unit if unit else ''}"


def fmt_ms(v):
    """Milliseconds as the summary and shootout tables print them."""
    if v is None:
        return "-"
    if v >= 1000:
        return f"{v / 1000:.2f} s"
    if v >= 100:
        return f"{v:.0f} ms"
    if v >= 10:
        return f"{v:.1f} ms"
    return f"{v:.2f} ms"


def us(seconds):
    return "-" if seconds is None else f"{seconds * 1e6:.2f} µs"


def pct(x):
    return "-" if x is None else f"{x * 100:.0f} %"


def num(v, spec=",.0f", unit=""):
    return "-" if v is None else f"{v:{spec}}{unit}"


def median(values):
    """The median of the values that are not None, or None."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------ run directories

def noise(out):
    p = Path(out) / "noise.txt"
    return p.read_text().strip().splitlines() if p.exists() else []


def load_range(lines):
    """noise.py's 'PHASE: load average 1.2 3.4 5.6; ...' lines -> (lowest, highest) 1-minute
    load average (our own lines, not the load generator's)."""
    loads = []
    for line in lines:
        _, found, rest = line.partition("load average ")
        if found and rest.split():
            try:
                loads.append(float(rest.split()[0].rstrip(";")))
            except ValueError:
                pass
    return (min(loads), max(loads)) if loads else (None, None)


def metrics(path):
    """The server's /metrics summed over workers (scrape_metrics.py), or {}."""
    p = Path(path)
    return json.loads(p.read_text()) if p.exists() and p.stat().st_size else {}


def frames_per_send(m):
    sends = m.get("tickcast_sends_total")
    return f"{m.get('tickcast_frames_sent_total', 0) / sends:.2f}" if sends else "-"


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


def other_work(out, name, s=None):
    """(server core, load generator core): the share of each pinned core that went to other
    processes during a run, from the cpu_snapshot.py lines around it; None when unknown. The
    load generator's own CPU comes from its summary `s` (all its processes)."""
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
        busy_ticks = b["cpus"][cpu][0] - a["cpus"][cpu][0]
        total = b["cpus"][cpu][1] - a["cpus"][cpu][1]
        return max(0.0, (busy_ticks - own_ticks) / total) if total > 0 else None

    server = None
    if a.get("pid_ticks") is not None and b.get("pid_ticks") is not None and cpus:
        server = share(cpus[0], b["pid_ticks"] - a["pid_ticks"])
    loadgen = None
    if s is not None and len(cpus) > 1 and cpus[1] != cpus[0]:
        loadgen = share(cpus[1], ((s.get("loadgen") or {}).get("cpu_s") or 0.0) * hz)
    return server, loadgen


def main(argv):
    if argv[:1] == ["other-work"] and len(argv) == 3:
        out, name = argv[1], argv[2]
        doc = read(Path(out) / f"{name}.json")
        server, _ = other_work(out, name, doc["summary"] if doc else None)
        print(f"{server:.3f}" if server is not None else "0")
        return 0
    if argv[:1] == ["all-delivered"] and len(argv) > 1:
        ok = True
        for path in argv[1:]:
            doc = read(path)
            m = (doc or {}).get("summary", {}).get("messages") or {}
            good = doc is not None and all_delivered(doc["summary"])
            ok &= good
            print(f"{path}: delivered {m.get('delivered', '-')} of {m.get('expected', '-')} expected"
                  f"{'' if good else ' FAILED'}")
        return 0 if ok else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
