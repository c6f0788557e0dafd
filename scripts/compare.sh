#!/usr/bin/env bash
# scripts/compare.sh [quick|full|smoke] [--rounds N] [--servers tickcast,bun,node-ws,tokio-tungstenite,bare]
#
# The broadcast workloads, side by side in one run, every server pinned to the same core and
# driven by the same load generator on the other: 128-byte messages published over HTTP to one
# channel, subscribers on WebSocket.
#   fanout-1k    1,000 subscribers x 50 msg/s: latency p50/p99, server CPU per delivery
#   saturate-1k  1,000 subscribers, a window of 8 unacknowledged messages: deliveries/s
#   fanout-10k   10,000 subscribers x 10 msg/s: latency, loss
# quick: 10 s runs, 1 round (about 3.5 minutes for the five servers); full: 30 s runs, 2 rounds.
# smoke: 2 s runs of 50 / 50 / 300 subscribers, 2 rounds (the script itself, for CI).
# --rounds N: every server runs every workload N times, interleaved (round 1 of all, then round
# 2...), so a noisy minute does not land on one server; the summary gives medians and ranges.
# Writes results/<date>-compare-<mode>/ (JSON per run, which summary.md is made from; the printed
# report NAME.txt for people). Peers are installed from the registries by scripts/peers.sh when
# missing. Environment: BENCH_BIN (prebuilt binaries; else CARGO_TARGET_DIR/release), BENCH_OUT,
# SERVER_CPU, LOADGEN_CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="quick"
rounds=""
servers="tickcast,bun,node-ws,tokio-tungstenite,bare"
usage="usage: scripts/compare.sh [quick|full|smoke] [--rounds N] [--servers a,b]"
while [ $# -gt 0 ]; do
  case "$1" in
    quick|full|smoke) mode="$1" ;;
    --servers|--rounds)
      [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
      if [ "$1" = --servers ]; then servers="$2"; else rounds="$2"; fi
      shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
  shift
done
case "$mode" in
  quick) secs=10; rounds="${rounds:-1}"; c1k=1000; c10k=10000 ;;
  full) secs=30; rounds="${rounds:-2}"; c1k=1000; c10k=10000 ;;
  smoke) secs=2; rounds="${rounds:-2}"; c1k=50; c10k=300 ;;
esac
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --rounds wants a positive whole number, not '$rounds'" >&2; exit 2; }

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
  BIN="$(release_bin)"
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
  # One round: SCENARIO-SERVER; several: SCENARIO-SERVER-rN (scripts/summarize.py groups them).
  local name="$scenario-$s"
  [ "$rounds" -gt 1 ] && name="$name-r$round"
  # shellcheck disable=SC2046
  start_server "$name" $(server_cmd "$s")
  echo "    $scenario: $s"
  loadgen "$@" --url "http://127.0.0.1:$PORT" --size 128 --channels bench --connect-rate 5000 \
    --server-pid "$SERVER_PID" --json "$out/$name.json" >"$out/$name.txt" 2>&1 || true
  stop_server
}

echo "==> broadcast comparison ($mode, ${secs}s per run, $rounds round(s)): ${names[*]}"
for round in $(seq 1 "$rounds"); do
  [ "$rounds" -gt 1 ] && echo "  round $round of $rounds"
  for s in "${names[@]}"; do run fanout-1k "$s" rate --clients "$c1k" --rate 50 --duration "${secs}s"; done
  for s in "${names[@]}"; do run saturate-1k "$s" saturate --clients "$c1k" --window 8 --duration "${secs}s"; done
  for s in "${names[@]}"; do
    run fanout-10k "$s" rate --clients "$c10k" --rate 10 --duration "${secs}s" --source-ips 127.0.0.1-127.0.0.40
  done
done
describe_machine >"$out/machine.txt"
python3 scripts/summarize.py "$out" | tee "$out/summary.md"
echo "==> wrote $out/"
