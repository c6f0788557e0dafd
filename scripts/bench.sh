#!/usr/bin/env bash
# scripts/bench.sh [quick|full] — builds in release mode, runs the benchmarks that exist so far
# side by side with the tokio-tungstenite peer, prints a summary table and writes
# results/<date>-<mode>/ (one JSON per run, the summary as markdown, the machine description).
#
#   quick (default)  echo round trips at 1 and 1,000 clients; idle memory at 10,000 and 50,000
#                    connections (about 3 minutes on a 2-core machine)
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

missing=()
for tool in cargo taskset python3 curl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench.sh: missing prerequisites: ${missing[*]}" >&2
  echo "  (cargo: https://rustup.rs; taskset: util-linux; python3 and curl from your distribution)" >&2
  exit 1
fi
cpus=$(nproc)
SERVER_CPU="${SERVER_CPU:-0}"
LOADGEN_CPU="${LOADGEN_CPU:-$(( cpus > 1 ? 1 : 0 ))}"
if [ "$SERVER_CPU" = "$LOADGEN_CPU" ]; then
  echo "bench.sh: warning: only one CPU: server and load generator share it; figures will say so" >&2
fi

if [ -n "${BENCH_BIN:-}" ]; then
  BIN="$BENCH_BIN" # prebuilt binaries (tickcast, tickcast-loadgen, peer-tokio-tungstenite)
else
  echo "==> building (release)"
  cargo build --release --locked -p tickcast-server -p tickcast-loadgen -p peer-tokio-tungstenite
  BIN="$PWD/target/release"
fi

stamp="$(date +%Y-%m-%d)"
out="${BENCH_OUT:-results/$stamp-$mode}"
mkdir -p "$out"

# Every background PID we start; all stopped on exit, whatever the reason.
pids=()
cleanup() {
  for pid in "${pids[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_server NAME CMD... : starts it pinned, waits for its port; sets SERVER_PID and PORT.
start_server() {
  local name="$1"; shift
  PORT="$(free_port)"
  local cmd=("$@")
  cmd=("${cmd[@]//@PORT@/$PORT}")
  taskset -c "$SERVER_CPU" "${cmd[@]}" >"$out/$name.server.log" 2>&1 &
  SERVER_PID=$!
  pids+=("$SERVER_PID")
  for _ in $(seq 100); do
    if curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null || \
       python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "bench.sh: $name did not start (see $out/$name.server.log)" >&2
  exit 1
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}

loadgen() { taskset -c "$LOADGEN_CPU" "$BIN/tickcast-loadgen" "$@" --quiet; }

servers=(tickcast peer)
server_cmd() {
  case "$1" in
    tickcast) echo "$BIN/tickcast --listen 127.0.0.1:@PORT@ --threads ${2:-1} --log warn" ;;
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

{
  echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs, kernel $(uname -r)"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')"
  echo "date: $(date -u +%FT%TZ)"
  echo "pinning: server on CPU $SERVER_CPU, load generator on CPU $LOADGEN_CPU"
} >"$out/machine.txt"

python3 scripts/summarize.py "$out" | tee "$out/summary.md"
echo "==> wrote $out/"
