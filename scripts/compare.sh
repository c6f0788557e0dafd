#!/usr/bin/env bash
# scripts/compare.sh [quick|full] [--servers tickcast,bun,node-ws,tokio-tungstenite,bare]
#
# The broadcast workloads, side by side in one run, every server pinned to the same core and
# driven by the same load generator on the other: 128-byte messages published over HTTP to one
# channel, subscribers on WebSocket.
#   fanout-1k    1,000 subscribers x 50 msg/s: latency p50/p99, server CPU per delivery
#   saturate-1k  1,000 subscribers, a window of 8 unacknowledged messages: deliveries/s
#   fanout-10k   10,000 subscribers x 10 msg/s: latency, loss
# Writes results/<date>-compare-<mode>/ (JSON per run, summary.md). Peers are installed from
# the registries by scripts/peers.sh when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="quick"
servers="tickcast,bun,node-ws,tokio-tungstenite,bare"
while [ $# -gt 0 ]; do
  case "$1" in
    quick|full) mode="$1" ;;
    --servers) servers="$2"; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "usage: scripts/compare.sh [quick|full] [--servers a,b]" >&2; exit 2 ;;
  esac
  shift
done
secs=$([ "$mode" = full ] && echo 30 || echo 10)

SERVER_CPU="${SERVER_CPU:-0}"
LOADGEN_CPU="${LOADGEN_CPU:-$(( $(nproc) > 1 ? 1 : 0 ))}"
out="${BENCH_OUT:-results/$(date +%Y-%m-%d)-compare-$mode}"
mkdir -p "$out"
# shellcheck source=scripts/lib/run.sh
source scripts/lib/run.sh
check_prereqs cargo taskset python3

if [ -n "${BENCH_BIN:-}" ]; then
  BIN="$BENCH_BIN"
else
  echo "==> building (release)"
  cargo build --release --locked -p tickcast-server -p tickcast-loadgen -p peer-tokio-tungstenite -p peer-bare
  BIN="$PWD/target/release"
fi
IFS=, read -r -a names <<<"$servers"
for s in "${names[@]}"; do
  case "$s" in
    node-ws|bun)
      command -v npm >/dev/null || { echo "compare.sh: $s needs node and npm" >&2; exit 1; }
      [ -d "benches/peers/$s/node_modules" ] || CARGO_TARGET_DIR="$(dirname "$BIN")" scripts/peers.sh install "$s" ;;
  esac
done

server_cmd() {
  case "$1" in
    tickcast) echo "$BIN/tickcast --listen 127.0.0.1:@PORT@ --threads 1 --no-feed --log warn" ;;
    bare) echo "$BIN/peer-bare --port @PORT@" ;;
    tokio-tungstenite) echo "$BIN/peer-tokio-tungstenite --listen 127.0.0.1:@PORT@ --threads 1" ;;
    node-ws|bun) echo "scripts/peers.sh start $1 @PORT@" ;;
    *) echo "compare.sh: unknown server $1" >&2; exit 2 ;;
  esac
}

run() { # scenario server args...
  local scenario="$1" s="$2"; shift 2
  # shellcheck disable=SC2046
  start_server "$scenario-$s" $(server_cmd "$s")
  echo "    $scenario: $s"
  loadgen "$@" --url "http://127.0.0.1:$PORT" --size 128 --channels bench --connect-rate 5000 \
    --server-pid "$SERVER_PID" --json "$out/$scenario-$s.json" >"$out/$scenario-$s.txt" 2>&1 || true
  stop_server
}

echo "==> broadcast comparison ($mode, ${secs}s per run): ${names[*]}"
for s in "${names[@]}"; do run fanout-1k "$s" rate --clients 1000 --rate 50 --duration "${secs}s"; done
for s in "${names[@]}"; do run saturate-1k "$s" saturate --clients 1000 --window 8 --duration "${secs}s"; done
for s in "${names[@]}"; do
  run fanout-10k "$s" rate --clients 10000 --rate 10 --duration "${secs}s" --source-ips 127.0.0.1-127.0.0.40
done
describe_machine >"$out/machine.txt"
python3 scripts/summarize.py "$out" | tee "$out/summary.md"
echo "==> wrote $out/"
