#!/usr/bin/env bash
# scripts/bench.sh [quick|full] — builds in release mode, runs the benchmarks that exist so far
# side by side with the peers, prints summary tables and writes results/<date>-<mode>/ (one
# JSON per run, the summaries as markdown, the machine description).
#
#   quick (default)  echo round trips at 1 and 1,000 clients and idle memory at 10,000 and
#                    50,000 connections (tickcast vs tokio-tungstenite), then the broadcast
#                    comparison of scripts/compare.sh (tickcast, Bun, Node ws, tokio-tungstenite,
#                    a bare write loop): about 5 minutes on a 2-core machine
#   full             the same with longer runs and 100,000 idle connections
#
# The server is pinned to one core and the load generator to another (taskset), and every
# process this script starts is stopped by its PID when it ends, also on Ctrl-C.
# Environment: SERVER_CPU (default 0), LOADGEN_CPU (default 1), BENCH_OUT (output directory),
# BENCH_BIN (use prebuilt binaries from this directory instead of building).
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-quick}"
case "$mode" in
  quick) echo_secs=8; hold=5s; big_idle=50000 ;;
  full) echo_secs=30; hold=15s; big_idle=100000 ;;
  -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
  *) echo "usage: scripts/bench.sh [quick|full]" >&2; exit 2 ;;
esac

cpus=$(nproc)
SERVER_CPU="${SERVER_CPU:-0}"
LOADGEN_CPU="${LOADGEN_CPU:-$(( cpus > 1 ? 1 : 0 ))}"
if [ "$SERVER_CPU" = "$LOADGEN_CPU" ]; then
  echo "bench.sh: warning: only one CPU: server and load generator share it; figures will say so" >&2
fi

stamp="$(date +%Y-%m-%d)"
out="${BENCH_OUT:-results/$stamp-$mode}"
mkdir -p "$out"
# shellcheck source=scripts/lib/run.sh
source scripts/lib/run.sh
check_prereqs cargo taskset python3

if [ -n "${BENCH_BIN:-}" ]; then
  BIN="$BENCH_BIN" # prebuilt binaries (tickcast, tickcast-loadgen, peer-tokio-tungstenite)
else
  echo "==> building (release)"
  cargo build --release --locked -p tickcast-server -p tickcast-loadgen -p peer-tokio-tungstenite -p peer-bare
  BIN="$PWD/target/release"
fi


servers=(tickcast peer)
server_cmd() {
  case "$1" in
    tickcast) echo "$BIN/tickcast --listen 127.0.0.1:@PORT@ --threads ${2:-1} --no-feed --log warn" ;;
    peer) echo "$BIN/peer-tokio-tungstenite --listen 127.0.0.1:@PORT@ --threads 1" ;;
  esac
}

echo "==> echo round trips (128 B), ${echo_secs}s per run"
for clients in 1 1000; do
  for s in "${servers[@]}"; do
    # shellcheck disable=SC2046
    start_server "echo-$s-$clients" $(server_cmd "$s")
    echo "    $s, $clients client(s)"
    loadgen echo --url "http://127.0.0.1:$PORT" --clients "$clients" --connect-rate 5000 \
      --duration "${echo_secs}s" --size 128 --server-pid "$SERVER_PID" \
      --json "$out/echo-$s-$clients.json" >"$out/echo-$s-$clients.txt" 2>&1
    stop_server
  done
done

echo "==> idle connections: server RSS growth per connection (hold $hold)"
idle_run() { # name server-threads clients warm(0|1)
  local name="$1" threads="$2" clients="$3" warm="$4" kind="${1%%-*}"
  # shellcheck disable=SC2046
  start_server "$name" $(server_cmd "$kind" "$threads")
  if [ "$warm" = 1 ]; then
    # Cycle the receive buffer ring once (a fixed per-worker cost), so the figure is the growth
    # per connection of a server that has been serving, not its first page faults.
    loadgen echo --url "http://127.0.0.1:$PORT" --clients 8 --duration 1s --size 64 >/dev/null 2>&1
  fi
  echo "    $name: $clients connections"
  loadgen idle --url "http://127.0.0.1:$PORT" --clients "$clients" --connect-rate 10000 \
    --source-ips 127.0.0.1-127.0.0.40 --hold "$hold" --server-pid "$SERVER_PID" \
    --json "$out/idle-$name.json" >"$out/idle-$name.txt" 2>&1
  stop_server
}
idle_run tickcast-cold 1 10000 0
idle_run tickcast-10k 1 10000 1
idle_run tickcast-big 3 "$big_idle" 1
idle_run peer-10k 1 10000 1

describe_machine >"$out/machine.txt"

python3 scripts/summarize.py "$out" | tee "$out/summary.md"

# The broadcast comparison (its own summary, in $out/compare/). Node peers need node and npm.
peers="tickcast,bun,node-ws,tokio-tungstenite,bare"
if ! command -v npm >/dev/null 2>&1; then
  echo "bench.sh: node/npm not found: the Bun and Node ws peers are left out" >&2
  peers="tickcast,tokio-tungstenite,bare"
fi
BENCH_BIN="$BIN" BENCH_OUT="$out/compare" SERVER_CPU="$SERVER_CPU" LOADGEN_CPU="$LOADGEN_CPU" \
  scripts/compare.sh "$mode" --servers "$peers"
echo "==> wrote $out/"
