# Shared by the benchmark scripts: process bookkeeping (every PID we start is stopped on exit,
# also on Ctrl-C), free ports, pinned servers, the machine description.
# Expects: $out (output directory), $SERVER_CPU, $LOADGEN_CPU, $BIN (binaries).

# The directory of the release binaries, as an absolute path: BENCH_BIN when it is set, else
# cargo's own (CARGO_TARGET_DIR honoured, relative to the checkout like cargo takes it).
release_bin() {
  local dir="${BENCH_BIN:-${CARGO_TARGET_DIR:-target}/release}"
  case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
  echo "$dir"
}

pids=()
cleanup() {
  local pid
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

# start_server NAME CMD... : runs CMD pinned to $SERVER_CPU (the token @PORT@ is replaced by a
# free port), waits until the port accepts; sets SERVER_PID and PORT.
start_server() {
  local name="$1"; shift
  PORT="$(free_port)"
  local cmd=("$@")
  cmd=("${cmd[@]//@PORT@/$PORT}")
  taskset -c "$SERVER_CPU" "${cmd[@]}" >"$out/$name.server.log" 2>&1 &
  SERVER_PID=$!
  pids+=("$SERVER_PID")
  local _
  for _ in $(seq 150); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      break
    fi
    sleep 0.1
  done
  echo "$name did not start (see $out/$name.server.log)" >&2
  exit 1
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}

# Runs the load generator pinned; in the background plus `wait`, so a signal to this script
# (not only a terminal's Ctrl-C to the whole group) interrupts at once and cleanup stops it too.
loadgen() {
  taskset -c "$LOADGEN_CPU" "$BIN/tickcast-loadgen" "$@" --quiet &
  local pid=$!
  pids+=("$pid")
  wait "$pid"
}

describe_machine() {
  echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs, kernel $(uname -r)"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')"
  echo "date: $(date -u +%FT%TZ)"
  echo "pinning: server on CPU $SERVER_CPU, load generator on CPU $LOADGEN_CPU"
}

check_prereqs() {
  local missing=() tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "missing prerequisites: ${missing[*]}" >&2
    echo "  (cargo: https://rustup.rs; taskset: util-linux; python3, node/npm from your distribution)" >&2
    exit 1
  fi
}
