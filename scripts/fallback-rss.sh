#!/usr/bin/env bash
# Memory of the HTTP fallbacks: N idle SSE streams and N parked long-polls held by ONE worker
# (pinned to one core), with the server's RSS per client. Writes results/<date>-fallback-rss/.
#
#   scripts/fallback-rss.sh [steps]      (default 1000,5000: cumulative client counts)
#
# Environment: BENCH_BIN (a prebuilt tickcast; else CARGO_TARGET_DIR/release), SERVER_CPU,
# LOADGEN_CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-1000,5000}"
SERVER_CPU="${SERVER_CPU:-0}"
LOADGEN_CPU="${LOADGEN_CPU:-1}"
out="results/$(date +%Y-%m-%d)-fallback-rss"
mkdir -p "$out"
# shellcheck source=lib/run.sh
source scripts/lib/run.sh

[ -n "${BENCH_BIN:-}" ] || cargo build --release --locked -p tickcast-server
BIN="$(release_bin)"
describe_machine >"$out/machine.txt"
: >"$out/results.jsonl"
for kind in sse longpoll; do
  start_server "tickcast-$kind" "$BIN/tickcast" --listen 127.0.0.1:@PORT@ --threads 1 --no-feed --log warn
  taskset -c "$LOADGEN_CPU" python3 scripts/lib/hold_http_clients.py --port "$PORT" --pid "$SERVER_PID" \
    --kind "$kind" --clients "$steps" | tee -a "$out/results.jsonl"
  stop_server
done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(f"{out}/results.jsonl")]
lines = ["| transport | clients held | server RSS | RSS per client | marginal RSS per client |",
         "|---|---:|---:|---:|---:|"]
for r in rows:
    lines.append(f"| {r['kind']} | {r['clients']:,} | {r['rss_held_kib'] / 1024:.1f} MiB | "
                 f"{r['rss_per_client_bytes']:,} B | {r['marginal_per_client_bytes']:,} B |")
table = "\n".join(lines)
open(f"{out}/report.md", "w").write(
    "# Idle SSE streams and parked long-polls on one worker\n\n" + open(f"{out}/machine.txt").read()
    + "\n" + table + "\n\nMarginal = RSS growth per client between steps (leaves out one-time growth).\n")
print(table)
PY
echo "wrote $out/"
