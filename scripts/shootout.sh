#!/usr/bin/env bash
# scripts/shootout.sh [quick|full|smoke] [--peers a,b,...]
#
# Issue #9: one broadcast workload, every stack, the same load generator and core pinning,
# tickcast in the same table. 128-byte messages published over HTTP (POST /publish/bench) to
# one channel; every stack on CPU $SERVER_CPU (default 0), the load generator on $LOADGEN_CPU
# (default 1); a fresh server per run; peers interleaved across rounds.
#   rate       1,000 subscribers x 50 msg/s: delivered, p50/p99/max, server CPU per delivery,
#              RSS per connection (full: also 10,000 x 10 msg/s)
#   saturate   1,000 subscribers, window of 8 unacknowledged messages: sustained deliveries/s
#   capacity   subscribers stepped at 5 msg/s (`tickcast-loadgen ramp --clients-step`): the
#              most with p99 <= 50 ms (the ramp's own --slo-p99), and the most with
#              p95 <= 250 ms (ramp has no p95 SLO: p95 is read from each step's histogram and
#              the steps past the p99 break are run one at a time, see results/shootout.md)
# quick: 2 rounds of 4 s runs, ramp 500..18,500 clients in steps of 3,000, 3 s each: < 10 min.
# full:  3 rounds of 10 s runs, ramp steps of 1,500, 5 s each.
# smoke: seconds; each peer starts and a few clients get every message through the load
#        generator (20 clients, 20 messages); Socket.IO also through socket.io-client
#        (smoke.js: long-polling and upgrading clients too), Action Cable also through a
#        websocket-ruby client (smoke.rb). Default peers node-ws,socketio.
# Peers: tickcast bun node-ws tokio-tungstenite websocket-ruby django-channels bare (plain
# WebSocket), socketio and actioncable (the load generator speaks their protocols:
# --protocol socketio|actioncable; Action Cable is published to without pipelining,
# --publisher http-pool, which its puma needs), all driven the same way, and ratchet (a row
# with the reason it has no figures). Missing peers are installed first (scripts/peers.sh install).
# Writes results/shootout.md and results/shootout.json (SHOOTOUT_MD / SHOOTOUT_JSON override),
# results/shootout.svg when $BIN/tickcast-report exists; raw runs in $CARGO_TARGET_DIR/shootout/.
# Environment: SERVER_CPU, LOADGEN_CPU, SHOOTOUT_BIN (prebuilt binaries, tickcast-report among them for p95; no cargo build),
# SHOOTOUT_RAW (raw output directory); to try the script itself: SHOOTOUT_SECS, SHOOTOUT_ROUNDS,
# SHOOTOUT_RAMP=C0,STEP,STEPS,SECS. Every process started is stopped by its PID on exit,
# also on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="quick"
peers_arg=""
while [ $# -gt 0 ]; do
  case "$1" in
    quick|full|smoke) mode="$1" ;;
    --peers) peers_arg="${2:?--peers needs a list}"; shift ;;
    --peers=*) peers_arg="${1#--peers=}" ;;
    -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: scripts/shootout.sh [quick|full|smoke] [--peers a,b,...]" >&2; exit 2 ;;
  esac
  shift
done

ALL_PEERS="tickcast,bun,node-ws,tokio-tungstenite,websocket-ruby,django-channels,bare,socketio,actioncable,ratchet"
case "$mode" in
  quick) secs=4; rounds=2; ramp_secs=3; ramp_c0=500; ramp_step=3000; ramp_steps=7; big=0 ;;
  full) secs=10; rounds=3; ramp_secs=5; ramp_c0=500; ramp_step=1500; ramp_steps=13; big=1 ;;
  smoke) ;;
esac
# For trying the script itself: shorter runs, fewer rounds, another ramp ("C0,STEP,STEPS,SECS").
secs="${SHOOTOUT_SECS:-${secs:-}}"
rounds="${SHOOTOUT_ROUNDS:-${rounds:-}}"
if [ -n "${SHOOTOUT_RAMP:-}" ]; then IFS=, read -r ramp_c0 ramp_step ramp_steps ramp_secs <<<"$SHOOTOUT_RAMP"; fi
[ -n "$peers_arg" ] || peers_arg=$([ "$mode" = smoke ] && echo "node-ws,socketio" || echo "$ALL_PEERS")
IFS=, read -r -a PEERS <<<"$peers_arg"

RATE_CLIENTS=1000 RATE=50 WINDOW=8 RAMP_RATE=5 SLO_P99=50ms SLO_P95_MS=250
BIG_CLIENTS=10000 BIG_RATE=10
SERVER_CPU="${SERVER_CPU:-0}"
LOADGEN_CPU="${LOADGEN_CPU:-$(( $(nproc) > 1 ? 1 : 0 ))}"
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$PWD/$TARGET_DIR" ;; esac
out="${SHOOTOUT_RAW:-$TARGET_DIR/shootout/$mode}"
rm -rf "$out"
mkdir -p "$out"
# shellcheck source=scripts/lib/run.sh
source scripts/lib/run.sh
check_prereqs cargo taskset python3
HELP=scripts/lib/shootout.py
export CARGO_TARGET_DIR="$TARGET_DIR"

if [ -n "${SHOOTOUT_BIN:-}" ]; then
  BIN="$SHOOTOUT_BIN"
elif [ "$mode" = smoke ] && [ -x "$(release_bin)/tickcast-loadgen" ]; then
  BIN="$(release_bin)"
else
  echo "==> building (release)"
  cargo build --release --locked -p tickcast-server -p tickcast-loadgen -p tickcast-report -p peer-tokio-tungstenite \
    -p peer-bare
  BIN="$(release_bin)"
fi

protocol() { [ "$1" = tickcast ] && echo ws || scripts/peers.sh protocol "$1"; }

# The load generator's subscriber protocol (and publisher) for a stack.
peer_args() {
  case "$(protocol "$1")" in
    socketio) echo "--protocol socketio" ;;
    # puma 5.6.5 answers pipelined requests with 400 or drops them (docs/loadgen.md).
    actioncable) echo "--protocol actioncable --publisher http-pool" ;;
  esac
}

# ---------------------------------------------------------------------------------- installs
echo "==> peers: ${PEERS[*]}"
declare -A UNAVAILABLE=()
for p in "${PEERS[@]}"; do
  [ "$p" = tickcast ] && continue
  if ! scripts/peers.sh protocol "$p" >/dev/null 2>&1; then
    echo "shootout.sh: unknown peer $p (known: $ALL_PEERS)" >&2; exit 2
  fi
  if ! status=$(scripts/peers.sh status "$p" 2>&1); then
    if [ "$p" = ratchet ]; then UNAVAILABLE[$p]="$status"; continue; fi
    echo "    installing $p ($status)"
    if ! scripts/peers.sh install "$p" >"$out/install-$p.log" 2>&1; then
      UNAVAILABLE[$p]="install failed: $(tail -1 "$out/install-$p.log")"
      echo "    $p: ${UNAVAILABLE[$p]}" >&2
    fi
  fi
done
{
  for p in "${PEERS[@]}"; do
    if [ "$p" = tickcast ]; then
      echo "tickcast	tickcast $(git describe --always --dirty 2>/dev/null || echo '?') (--threads 1)"
    else
      echo "$p	$(scripts/peers.sh version "$p" 2>/dev/null || echo '?')"
    fi
  done
} >"$out/versions.tsv"

server_cmd() {
  case "$1" in
    tickcast) echo "$BIN/tickcast --listen 127.0.0.1:@PORT@ --threads 1 --no-feed --log warn" ;;
    *) echo "scripts/peers.sh start $1 @PORT@" ;;
  esac
}

# start_peer NAME LOG: like run.sh's start_server, but a peer that does not come up (60 s:
# Rails and Django boot slowly on a busy core) makes its row say so instead of ending the run.
start_peer() {
  local name="$1" log="$2" cmd _
  PORT="$(free_port)"
  # shellcheck disable=SC2207
  cmd=($(server_cmd "$name"))
  cmd=("${cmd[@]//@PORT@/$PORT}")
  taskset -c "$SERVER_CPU" "${cmd[@]}" >"$log" 2>&1 &
  SERVER_PID=$!
  pids+=("$SERVER_PID")
  for _ in $(seq 600); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null; then
      return 0
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "    $name did not start (see $log)" >&2
  stop_server
  return 1
}

# The peer's redis-server (a child of the server), if it has one.
redis_pid() { { ps -o pid=,comm= --ppid "$SERVER_PID" 2>/dev/null || true; } | awk '$2 == "redis-server" {print $1; exit}'; }
# /proc through one reader (scripts/lib/procfs.py).
proc_ticks() { python3 scripts/lib/procfs.py ticks "$1"; }
cpu_busy() { python3 scripts/lib/procfs.py busy "$1"; }
rss_kib() { python3 scripts/lib/procfs.py rss "$1"; }
# PID FILE: peak VmRSS (KiB) every 0.2 s while PID lives (bounded: 15 min)
rss_sampler() { python3 scripts/lib/procfs.py rss-peak "$1" "$2" 900; }

# measured NAME ARGS...: one load generator run against the running server, with the server's
# RSS (before, peak), the CPU of its redis-server, and how busy both cores were meanwhile.
measured() {
  local name="$1"; shift
  local redis r0 s0 c0 l0 t0 sampler
  redis=$(redis_pid)
  r0=$([ -n "$redis" ] && proc_ticks "$redis" || echo 0)
  s0=$(proc_ticks "$SERVER_PID"); c0=$(cpu_busy "$SERVER_CPU"); l0=$(cpu_busy "$LOADGEN_CPU"); t0=$(date +%s.%N)
  rss_kib "$SERVER_PID" >"$out/$name.rss-before"
  rss_sampler "$SERVER_PID" "$out/$name.rss-peak" &
  sampler=$!
  pids+=("$sampler")
  loadgen "$@" --url "http://127.0.0.1:$PORT" --size 128 --channels bench \
    --server-pid "$SERVER_PID" --json "$out/$name.json" >"$out/$name.txt" 2>&1 || true
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  local r1 s1 c1 l1 t1
  r1=$([ -n "$redis" ] && proc_ticks "$redis" || echo 0)
  s1=$(proc_ticks "$SERVER_PID"); c1=$(cpu_busy "$SERVER_CPU"); l1=$(cpu_busy "$LOADGEN_CPU"); t1=$(date +%s.%N)
  printf '{"clk_tck":%s,"wall":%s,"server_ticks":%s,"redis_ticks":%s,"server_core_busy_ticks":%s,"loadgen_core_busy_ticks":%s,"redis":%s}\n' \
    "$(python3 scripts/lib/procfs.py clk-tck)" "$(awk -v a="$t1" -v b="$t0" 'BEGIN {printf "%.3f", a - b}')" "$((s1 - s0))" "$((r1 - r0))" "$((c1 - c0))" "$((l1 - l0))" \
    "$([ -n "$redis" ] && echo true || echo false)" >"$out/$name.env.json"
}

# ---------------------------------------------------------------------------------- smoke
if [ "$mode" = smoke ]; then
  failed=0
  for p in "${PEERS[@]}"; do
    if [ -n "${UNAVAILABLE[$p]:-}" ]; then echo "    $p: SKIPPED: ${UNAVAILABLE[$p]}" >&2; failed=1; continue; fi
    if ! start_peer "$p" "$out/smoke-$p.server.log"; then failed=1; continue; fi
    rc=0
    # The stack's own client first (polling and upgrading Socket.IO clients, a Ruby Action Cable
    # client), then the load generator: 20 subscribers, 20 messages, every one delivered.
    case "$(protocol "$p")" in
      socketio)
        (cd benches/peers/socketio && timeout 30 taskset -c "$LOADGEN_CPU" node smoke.js "$PORT" 20 20) &
        pids+=($!); wait $! || rc=$?
        ;;
      actioncable)
        (cd benches/peers/actioncable && timeout 40 taskset -c "$LOADGEN_CPU" ruby smoke.rb "$PORT" 20 20) &
        pids+=($!); wait $! || rc=$?
        ;;
    esac
    # shellcheck disable=SC2046
    loadgen rate --url "http://127.0.0.1:$PORT" $(peer_args "$p") --clients 20 --rate 20 --duration 1s \
      --channels bench --json "$out/smoke-$p.json" >"$out/smoke-$p.txt" 2>&1 || rc=$?
    python3 "$HELP" smoke-check "$out/smoke-$p.json" "$p" || rc=1
    stop_server
    [ "$rc" -eq 0 ] || { echo "    $p: smoke FAILED (see $out/smoke-$p.*)" >&2; failed=1; }
  done
  [ "$failed" -eq 0 ] && echo "shootout smoke: every peer delivered every message (${PEERS[*]})"
  exit "$failed"
fi

# ---------------------------------------------------------------------------------- benchmark
DRIVEN=()
for p in "${PEERS[@]}"; do
  [ -z "${UNAVAILABLE[$p]:-}" ] && [ "$(protocol "$p")" != none ] && DRIVEN+=("$p")
done
{
  describe_machine
  echo "mode: $mode ($rounds round(s) of ${secs}s runs; ramp ${ramp_c0}+k*${ramp_step} clients x ${RAMP_RATE} msg/s, ${ramp_secs}s steps)"
  echo "load before: $(python3 scripts/lib/procfs.py loadavg)"
} >"$out/machine.txt"
for p in "${!UNAVAILABLE[@]}"; do printf '%s\t%s\n' "$p" "${UNAVAILABLE[$p]}"; done >"$out/unavailable.tsv"
started=$(date +%s)

run_one() { # ROUND SCENARIO PEER
  local r="$1" scenario="$2" p="$3" name="$1-$2-$3"
  start_peer "$p" "$out/$name.server.log" || { echo "did not start" >"$out/$name.failed"; return 0; }
  echo "    round $r $scenario: $p"
  local args
  read -r -a args <<<"$(peer_args "$p")"
  case "$scenario" in
    rate-1k) measured "$name" rate --clients "$RATE_CLIENTS" --rate "$RATE" --duration "${secs}s" --connect-rate 5000 "${args[@]}" ;;
    saturate-1k) measured "$name" saturate --clients "$RATE_CLIENTS" --window "$WINDOW" --duration "${secs}s" --connect-rate 5000 "${args[@]}" ;;
    rate-10k) measured "$name" rate --clients "$BIG_CLIENTS" --rate "$BIG_RATE" --duration "${secs}s" --connect-rate 5000 \
      --source-ips 127.0.0.1-127.0.0.40 "${args[@]}" ;;
  esac
  stop_server
}

scenarios=(rate-1k saturate-1k)
[ "$big" = 1 ] && scenarios+=(rate-10k)
n=${#DRIVEN[@]}
for r in $(seq 1 "$rounds"); do
  echo "==> round $r of $rounds"
  for s in "${scenarios[@]}"; do
    # Rotate the order every round, so no peer always runs first or right after the same one.
    for i in $(seq 0 $((n - 1))); do
      run_one "$r" "$s" "${DRIVEN[$(( (i + r - 1) % n ))]}"
    done
  done
done

# Capacity: the ramp with the p99 SLO, then (when it stopped on p99 alone) single steps past it
# until p95 > 250 ms, delivery < 99 % or a busy load generator.
ramp_args=(--rate "$RAMP_RATE" --duration "${ramp_secs}s" --connect-rate 10000 --source-ips 127.0.0.1-127.0.0.40)
echo "==> capacity ramps (${RAMP_RATE} msg/s, $ramp_c0 + k x $ramp_step clients, at most $ramp_steps steps)"
for p in "${DRIVEN[@]}"; do
  start_peer "$p" "$out/ramp-$p.server.log" || { echo "did not start" >"$out/ramp-$p.failed"; continue; }
  echo "    ramp: $p"
  read -r -a args <<<"$(peer_args "$p")"
  loadgen ramp --clients "$ramp_c0" --clients-step "$ramp_step" --max-steps "$ramp_steps" --slo-p99 "$SLO_P99" \
    "${ramp_args[@]}" "${args[@]}" --url "http://127.0.0.1:$PORT" --size 128 --channels bench --server-pid "$SERVER_PID" \
    --json "$out/ramp-$p.json" >"$out/ramp-$p.txt" 2>&1 || true
  next=$(python3 "$HELP" steps "$out/ramp-$p.json" "$out/step-$p" "$BIN/tickcast-report" "$SLO_P95_MS" "$ramp_step" \
    2>>"$out/ramp-$p.txt") || next=""
  last=$((ramp_c0 + (ramp_steps - 1) * ramp_step))
  while [ -n "$next" ] && [ "$next" -le "$last" ]; do
    echo "    ramp (p95 <= ${SLO_P95_MS} ms): $p at $next clients"
    kill -0 "$SERVER_PID" 2>/dev/null || break
    loadgen ramp --clients "$next" --max-steps 1 "${ramp_args[@]}" "${args[@]}" --url "http://127.0.0.1:$PORT" --size 128 \
      --channels bench --server-pid "$SERVER_PID" --json "$out/ramp95-$p-$next.json" >"$out/ramp95-$p-$next.txt" 2>&1 || true
    ok=$(python3 "$HELP" steps "$out/ramp95-$p-$next.json" "$out/step-$p" "$BIN/tickcast-report" "$SLO_P95_MS" 0 \
      2>>"$out/ramp-$p.txt") || ok=""
    [ "$ok" = pass ] || break
    next=$((next + ramp_step))
  done
  stop_server
done

echo "load after: $(python3 scripts/lib/procfs.py loadavg); took $(( $(date +%s) - started )) s" >>"$out/machine.txt"
report="$BIN/tickcast-report"
md="${SHOOTOUT_MD:-results/shootout.md}"
json="${SHOOTOUT_JSON:-results/shootout.json}"
svg=""
[ -x "$report" ] && svg="${md%.md}.svg"
python3 "$HELP" report "$out" "$md" "$json" "${PEERS[*]}" "$svg" "$report"
echo "==> wrote $md and $json${svg:+ and $svg} (raw runs: $out/)"
