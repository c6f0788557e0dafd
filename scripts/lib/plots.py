#!/usr/bin/env python3
"""Plots for a scripts/bench.sh output directory, drawn by `tickcast-report` (SVG):

* latency-<clients>-<rate>.svg: latency percentile distribution per transport, from the runs'
  `.hgrm` files, on a logarithmic latency axis (WebSocket's milliseconds and 1 s polling in one
  plot: on a linear axis the fast rows would lie flat on zero);
* cpu-per-delivery.svg and deliveries.svg: server CPU per million deliveries and deliveries/s
  against clients, one line per transport.

    plots.py OUT_DIR BIN_DIR
"""
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from summarize import transport_rows  # noqa: E402


def commands(out, tool):
    """(svg name, tickcast-report arguments) of every plot the runs in `out` allow."""
    rows = transport_rows(out)
    by_run = defaultdict(list)
    for r in rows:
        by_run[(r["clients"], r["rate"])].append(r)
    plots = []
    for (clients, rate), runs in sorted(by_run.items()):
        series = []
        for r in runs:
            f = out / f"transport-{r['transport']}-{clients}-{rate:g}.hgrm"
            if f.exists() and f.stat().st_size > 0:
                series.append(f"{r['transport']}={f}")
        if series:
            svg = out / f"latency-{clients}-{rate:g}.svg"
            plots.append((svg.name, [str(tool), "plot-latency", "--log-y", "--out", str(svg), "--title",
                                     f"Delivery latency, {clients:,} clients, {rate:g} msg/s", *series]))
    for key, svg_name, label in (("cpu_per_m", "cpu-per-delivery.svg", "server CPU-s per 1M deliveries"),
                                 ("deliveries_per_s", "deliveries.svg", "deliveries per second")):
        lines = defaultdict(list)
        for r in rows:
            if r[key] is not None:
                lines[f"{r['transport']} @ {r['rate']:g}/s"].append((r["clients"], r[key]))
        series = [f"{name}=" + ",".join(f"{x}:{y:.4g}" for x, y in sorted(pts))
                  for name, pts in sorted(lines.items()) if len(pts) >= 2]
        if series:
            plots.append((svg_name, [str(tool), "plot-xy", "--out", str(out / svg_name), "--title", label,
                                     "--x-label", "clients", "--y-label", label, "--log-x", *series]))
    return plots


def main():
    out, bin_dir = Path(sys.argv[1]), Path(sys.argv[2])
    tool = bin_dir / "tickcast-report"
    if not tool.exists():
        print(f"plots: {tool} not built (cargo build --release -p tickcast-report)")
        return 0
    written = []
    for svg, args in commands(out, tool):
        subprocess.run(args, check=True)
        written.append(svg)
    print("plots: " + (", ".join(written) if written else "none (too few runs)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
