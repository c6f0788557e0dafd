#!/usr/bin/env bash
# scripts/bench.sh [quick|full|peers] — the README's main command. Builds in release mode,
# starts tickcast pinned to one core, drives it from the load generator pinned to another,
# prints the summary table and writes results/<date>-<mode>/ (per run: the load generator's
# JSON, which summary.md is made from, its printed report NAME.txt for people, and NAME.hgrm,
# the latency percentile distribution; summary.md; plots when the report tool is built).
#
#   quick (default)  WebSocket vs SSE vs long-polling vs polling (every 1 s and every 100 ms)
#                    at 1,000 and 10,000 clients, 10 msg/s of 128 B: about 5 minutes on
#                    the reference 2-core machine (10 runs of 6 s, each with its own server
#                    start, connect, drain and quiet wait; as measured on a fresh machine)
#   full             the same at 1,000 / 10,000 / 50,000 clients and 1 / 10 / 100 msg/s, longer
#                    runs, then echo round trips and idle memory, then `peers`: about 30 minutes
#   peers            the broadcast workloads against the peers (Bun, Node ws, tokio-tungstenite,
#                    a bare write loop) with ratios to tickcast (scripts/compare.sh)
#
# The load generator publishes every message itself (HTTP keep-alive POST /publish) and stamps
# it with its scheduled send time: latency = receive - schedule, so a stalled server shows as
# latency, never as fewer samples. Every process this script starts is stopped by its PID when
# it ends, also on Ctrl-C.
# Environment: SERVER_CPU (default 0), LOADGEN_CPU (default 1), BENCH_OUT (output directory),
# BENCH_BIN (prebuilt binaries instead of building; else CARGO_TARGET_DIR/release), BENCH_SECS (seconds per run),
# BENCH_CLIENTS (client counts, e.g. "100"), BENCH_TRANSPORTS (e.g. "ws,sse"), QUIET_WAIT
# (seconds each run may wait for both pinned cores to be quiet first, default 10; see quiet.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-quick}"
case "$mode" in
  quick) secs=6; clients="1000 10000"; rates="10" ;;
  full) secs=20; clients="1000 10000 50000"; rates="1 10 100" ;;
  peers) ;;
  -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
  *) echo "usage: scripts/bench.sh [quick|full|peers]" >&2; exit 2 ;;
esac
secs="${BENCH_SECS:-${secs:-6}}"
clients="${BENCH_CLIENTS:-${clients:-}}"
transports="${BENCH_TRANSPORTS:-ws,sse,longpoll,poll-1s,poll-100ms}"

cpus=$(nproc)
SERVER_CPU="${SERVER_CPU:-0}"
LOADGEN_CPU="${LOADGEN_CPU:-$(( cpus > 1 ? 1 : 0 ))}"
if [ "$SERVER_CPU" = "$LOADGEN_CPU" ]; then
  echo "bench.sh: warning: only one CPU: server and load generator share it; figures will say so" >&2
fi

out="${BENCH_OUT:-results/$(date +%Y-%m-%d)-$mode}"
mkdir -p "$out"
# shellcheck source=scripts/lib/run.sh
source scripts/lib/run.sh
check_prereqs cargo taskset python3

if [ -n "${BENCH_BIN:-}" ]; then
  BIN="$BENCH_BIN"
else
  echo "==> building (release)"
  cargo build --release --locked -p tickcast-server -p tickcast-loadgen -p peer-tokio-tungstenite \
    -p peer-bare -p tickcast-report 2>/dev/null ||
    cargo build --release --locked -p tickcast-server -p tickcast-loadgen -p peer-tokio-tungstenite -p peer-bare
  BIN="$(release_bin)"
fi

if [ "$mode" = peers ]; then
  peers="tickcast,bun,node-ws,tokio-tungstenite,bare"
  command -v npm >/dev/null 2>&1 || {
    echo "bench.sh: node/npm not found: the Bun and Node ws peers are left out" >&2
    peers="tickcast,tokio-tungstenite,bare"
  }
  BENCH_BIN="$BIN" BENCH_OUT="$out" SERVER_CPU="$SERVER_CPU" LOADGEN_CPU="$LOADGEN_CPU" \
    scripts/compare.sh quick --servers "$peers"
  exit 0
fi

# Server RSS while a run holds its clients: the peak of samples taken every 200 ms (procfs.py).
rss_sampler() { # pid file
  python3 scripts/lib/procfs.py rss-peak "$1" "$2"
}

# A fresh server per run (pinned to one core); enough workers for the descriptor tables:
# each ring holds at most RLIMIT_NOFILE (20,000 here) connections.
transport_run() { # transport-label clients rate
  local label="$1" n="$2" rate="$3" transport interval="1s"
  case "$label" in
    poll-*) transport=poll; interval="${label#poll-}" ;;
    *) transport="$label" ;;
  esac
  local threads=$(( n / 18000 + 1 ))
  local name="transport-$label-$n-$rate"
  # Start in a quiet moment of both pinned cores (the machine may be shared): QUIET_WAIT s at most.
  printf '%s: ' "$name" >>"$out/quiet.txt"
  python3 scripts/lib/wait_quiet.py "$SERVER_CPU,$LOADGEN_CPU" "${QUIET_WAIT:-10}" 15 >>"$out/quiet.txt"
  start_server "$name" "$BIN/tickcast" --listen 127.0.0.1:@PORT@ --threads "$threads" --no-feed --log warn
  python3 scripts/lib/procfs.py rss "$SERVER_PID" >"$out/$name.rss-before"
  rss_sampler "$SERVER_PID" "$out/$name.rss-peak" &
  local sampler=$!
  pids+=("$sampler")
  echo "    $label: $n clients, $rate msg/s"
  local extra=()
  [ "$n" -gt 5000 ] && extra+=(--source-ips 127.0.0.1-127.0.0.40)
  # `--arrival user`: every transport's arrival is when the load generator read the message
  # (only the WebSocket ring has the kernel's timestamps), so the transports compare alike.
  loadgen rate --url "http://127.0.0.1:$PORT" --clients "$n" --rate "$rate" --size 128 --arrival user \
    --duration "${secs}s" --transport "$transport" --poll-interval "$interval" --connect-rate 20000 \
    "${extra[@]}" --server-pid "$SERVER_PID" --json "$out/$name.json" \
    --percentiles "$out/$name.hgrm" >"$out/$name.txt" 2>&1 || echo "      (run failed: see $out/$name.txt)"
  stop_server
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
}

describe_machine >"$out/machine.txt"
IFS=, read -r -a labels <<<"$transports"
echo "==> WebSocket vs SSE vs long-polling vs polling ($mode, ${secs}s per run)"
for rate in $rates; do
  for n in $clients; do
    for label in "${labels[@]}"; do
      transport_run "$label" "$n" "$rate"
    done
  done
done
python3 scripts/summarize.py "$out" | tee "$out/summary.md"
python3 scripts/lib/plots.py "$out" "$BIN" || echo "(plots skipped: see above)"

if [ "$mode" = full ]; then
  echo "==> echo round trips and idle memory"
  for n in 1 1000; do
    start_server "echo-tickcast-$n" "$BIN/tickcast" --listen 127.0.0.1:@PORT@ --threads 1 --no-feed --log warn
    loadgen echo --url "http://127.0.0.1:$PORT" --clients "$n" --connect-rate 5000 --duration "${secs}s" \
      --size 128 --server-pid "$SERVER_PID" --json "$out/echo-tickcast-$n.json" >"$out/echo-tickcast-$n.txt" 2>&1
    stop_server
  done
  for n in 10000 100000; do
    threads=$(( n / 18000 + 1 ))
    start_server "idle-tickcast-$n" "$BIN/tickcast" --listen 127.0.0.1:@PORT@ --threads "$threads" --no-feed --log warn
    loadgen idle --url "http://127.0.0.1:$PORT" --clients "$n" --connect-rate 10000 \
      --source-ips 127.0.0.1-127.0.0.40 --hold 15s --server-pid "$SERVER_PID" \
      --json "$out/idle-tickcast-$n.json" >"$out/idle-tickcast-$n.txt" 2>&1
    stop_server
  done
  python3 scripts/summarize.py "$out" >"$out/summary.md"
  BENCH_OUT="$out/peers" BENCH_BIN="$BIN" scripts/bench.sh peers
fi
echo "==> wrote $out/ (reproduce: scripts/bench.sh $mode)"
