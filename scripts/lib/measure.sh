# Helpers of scripts/capacity.sh and scripts/sweep.sh, on top of scripts/lib/run.sh (source that
# first: it keeps the PIDs and stops them on exit or Ctrl-C).
# Expects: $out, $BIN, $SERVER_CPU, $LOADGEN_CPU.

# Every command a script runs is appended here, so a run can be reproduced by hand.
log_cmd() { printf '%s\n' "$*" >>"$out/commands.txt"; }

# start_logged NAME SERVER-ARGS... : start_server with tickcast, the command logged.
start_tickcast() {
  local name="$1"; shift
  log_cmd "taskset -c $SERVER_CPU $BIN/tickcast --listen 127.0.0.1:@PORT@ $*"
  start_server "$name" "$BIN/tickcast" --listen "127.0.0.1:@PORT@" "$@"
}

# lg NAME ARGS... : the pinned load generator against the current server, its table in
# $out/NAME.txt; a failed run is recorded in $out/failed.txt and the script goes on.
lg() {
  local name="$1"; shift
  log_cmd "taskset -c $LOADGEN_CPU $BIN/tickcast-loadgen $* --url http://127.0.0.1:\$PORT"
  # Start in a quiet moment of both cores (bounded by QUIET_WAIT seconds, 0 = don't wait).
  if [ "${QUIET_WAIT:-0}" != 0 ]; then
    printf '%s: ' "$name" >>"$out/quiet.txt"
    interruptible python3 scripts/lib/wait_quiet.py "$SERVER_CPU,$LOADGEN_CPU" "$QUIET_WAIT" 15 >>"$out/quiet.txt"
  fi
  # Both cores' busy time and the server's own CPU before and after: what other work took.
  python3 scripts/lib/cpu_snapshot.py "$SERVER_PID" "$SERVER_CPU" "$LOADGEN_CPU" >"$out/$name.cpu.jsonl"
  if ! loadgen "$@" --url "http://127.0.0.1:$PORT" >"$out/$name.txt" 2>&1; then
    echo "    $name: the load generator failed (see $out/$name.txt)" >&2
    echo "$name" >>"$out/failed.txt"
  fi
  python3 scripts/lib/cpu_snapshot.py "$SERVER_PID" "$SERVER_CPU" "$LOADGEN_CPU" >>"$out/$name.cpu.jsonl"
}

# interruptible CMD... : in the background under `wait`, so a signal to the script is handled at
# once (bash runs traps only between foreground commands), and cleanup stops it too.
interruptible() {
  "$@" &
  local pid=$!
  pids+=("$pid")
  wait "$pid"
}

# bg_pinned CPU CMD... : any other client, pinned, in the background under `wait` (so a signal
# interrupts it at once and cleanup stops it).
bg_pinned() {
  local cpu="$1"; shift
  taskset -c "$cpu" "$@" &
  local pid=$!
  pids+=("$pid")
  wait "$pid"
}

# How busy the machine is (scripts/lib/noise.py: per-CPU busy % and the busiest processes over
# half a second, kernel TCP memory against net.ipv4.tcp_mem); says so loudly when the kernel is
# throttling every socket.
note_noise() {
  local line i
  line="$(python3 scripts/lib/noise.py "$1" --window "${NOISE_WINDOW:-0.5}")"
  # Another user's sockets can hold the kernel past its TCP memory pressure threshold, which
  # throttles ours too: wait for it to clear, at most a minute, then go on and say so.
  for i in $(seq 12); do
    case "$line" in *WARNING*) ;; *) break ;; esac
    [ "$i" = 1 ] && echo "    kernel TCP memory under pressure (other users' sockets): waiting up to 60 s" >&2
    sleep 5
    line="$(python3 scripts/lib/noise.py "$1" --window "${NOISE_WINDOW:-0.5}")"
  done
  echo "$line" >>"$out/noise.txt"
  case "$line" in *WARNING*) echo "    $line" >&2 ;; esac
}

# Builds (unless BENCH_BIN is set) the server, the load generator and the report tool.
build_bins() {
  if [ -z "${BENCH_BIN:-}" ]; then
    echo "==> building (release): tickcast, tickcast-loadgen, tickcast-report"
    cargo build --release --locked -p tickcast-server -p tickcast-loadgen -p tickcast-report
  fi
  BIN="$(release_bin)"
  local b missing=()
  for b in tickcast tickcast-loadgen tickcast-report; do
    [ -x "$BIN/$b" ] || missing+=("$BIN/$b")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "missing binaries: ${missing[*]} (build them, or point BENCH_BIN at them)" >&2
    exit 1
  fi
}

# check_outputs FILE... : fails loudly if an expected output is missing or empty.
check_outputs() {
  local f missing=()
  for f in "$@"; do
    [ -s "$f" ] || missing+=("$f")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "missing outputs: ${missing[*]}" >&2
    return 1
  fi
}

# scrape NAME : the current server's /metrics, summed over workers, into $out/NAME.metrics.json.
scrape() {
  python3 scripts/lib/scrape_metrics.py "$PORT" >"$out/$1.metrics.json" 2>/dev/null \
    || echo "    $1: could not read /metrics" >&2
}

# noisy NAME : true when other processes took more than NOISY_MAX (default 0.2) of the server's
# core during run NAME; the run is then worth repeating.
noisy() {
  local share
  share="$(python3 scripts/lib/lgresult.py other-work "$out" "$1")"
  python3 -c "import sys; sys.exit(0 if float('$share') > float('${NOISY_MAX:-0.2}') else 1)"
}

# with_retries NAME CMD... : runs CMD (a function that starts a server and runs NAME); while other
# processes took too much of the server's core, runs it again, at most RETRIES (2) more times.
with_retries() {
  local name="$1" attempt; shift
  "$@"
  for attempt in $(seq "${RETRIES:-2}"); do
    noisy "$name" || return 0
    echo "    $name: other processes took $(python3 scripts/lib/lgresult.py other-work "$out" "$name") of the server's core: again ($attempt)"
    echo "$name: rerun $attempt (other work $(python3 scripts/lib/lgresult.py other-work "$out" "$name"))" >>"$out/quiet.txt"
    "$@"
  done
}
