#!/usr/bin/env bash
# scripts/capacity.sh [smoke|quick|full] — the limits of one tickcast server core on this machine,
# and the calibration `tickcast-report plan` estimates from (docs/capacity.md):
#
#   idle    most idle WebSocket connections held, and the server's RSS per connection
#           (tickcast-loadgen idle; one load generator process per 18,000 clients and 40 source
#           addresses get past the 20,000-descriptor cap; the server gets one worker per 18,000
#           connections, since a ring's descriptor table holds RLIMIT_NOFILE of them)
#   http    RSS per idle SSE stream and per parked long-poll (scripts/lib/hold_http_clients.py)
#   ramp    most deliveries/s under a p99 SLO (tickcast-loadgen ramp: 1,000 subscribers, the
#           publish rate stepped until p99 > SLO, loss, or a busy load generator)
#   cost    server CPU per delivery at a moderate load: WebSocket at 128 B, 4 KiB, 16 KiB; SSE,
#           long-poll, poll; CPU per publish
#   storm   connection storm: connections/s and handshake latency (tickcast-loadgen connect)
#
# The server is pinned to one core (SERVER_CPU, default 0), --threads 1 unless the connections
# need more workers; the load generator to the other (LOADGEN_CPU, default 1).
#
#   smoke   tiny counts, well under 30 s once built: runs every step and checks the outputs;
#           writes to a temporary directory (removed on success; BENCH_OUT keeps it)
#   quick   about 4 minutes: results/<date>-capacity/ and results/capacity-calibration.json
#   full    longer steps, up to 150,000 connections: results/<date>-capacity-full/ (and the
#           calibration)
#
# Environment: SERVER_CPU, LOADGEN_CPU, BENCH_OUT (output directory), BENCH_BIN (prebuilt
# tickcast, tickcast-loadgen, tickcast-report), SLO_P99 (default 50ms). The machine is shared:
# each run starts when both pinned cores are quiet (waiting at most QUIET_WAIT s, default 10),
# and a cost run is repeated (at most RETRIES times, fresh server) when other processes took
# more than NOISY_MAX (0.2) of the server's core during it (RETRIES: 1, full 2).
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-quick}"
case "$mode" in
  smoke)
    idle_small=200; idle_big="400:2"; hold=500ms; idle_rate=0; warm=""; NOISE_WINDOW=0.1
    http_steps="20,60"
    ramp_clients=10; ramp_start=100; ramp_step=100; ramp_steps=1; ramp_dur=200ms
    cost_clients=10; cost_rate=50; cost_dur=200ms; pub_rate=200; sizes="128"
    storm=200 ;;
  quick)
    idle_small=10000; idle_big="50000:3"; hold=5s; idle_rate=10000; warm=1s
    http_steps="2000,10000"
    ramp_clients=1000; ramp_start=50; ramp_step=150; ramp_steps=8; ramp_dur=3s
    cost_clients=1000; cost_rate=50; cost_dur=5s; pub_rate=2000; sizes="128 4096 16384"
    storm=10000 ;;
  full)
    idle_small=10000; idle_big="50000:3 100000:6 150000:9"; hold=10s; idle_rate=10000; warm=1s
    http_steps="5000,10000,18000"
    ramp_clients=1000; ramp_start=50; ramp_step=75; ramp_steps=16; ramp_dur=10s
    cost_clients=1000; cost_rate=50; cost_dur=15s; pub_rate=2000; sizes="128 1024 4096 16384"
    storm=18000 ;;
  -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
  *) echo "usage: scripts/capacity.sh [smoke|quick|full]" >&2; exit 2 ;;
esac
# Each load generator run waits (at most QUIET_WAIT seconds) until both cores are quiet: the
# machine is shared. smoke does not wait.
QUIET_WAIT="${QUIET_WAIT:-$([ "$mode" = smoke ] && echo 0 || echo 10)}"
RETRIES="${RETRIES:-$(case "$mode" in smoke) echo 0 ;; full) echo 2 ;; *) echo 1 ;; esac)}"
slo="${SLO_P99:-50ms}"

SERVER_CPU="${SERVER_CPU:-0}"
LOADGEN_CPU="${LOADGEN_CPU:-$(( $(nproc) > 1 ? 1 : 0 ))}"
started=$SECONDS
if [ "$mode" = smoke ]; then
  out="${BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/tickcast-capacity-smoke.XXXXXX")}"
else
  out="${BENCH_OUT:-results/$(date +%Y-%m-%d)-capacity$([ "$mode" = full ] && echo -full || true)}"
fi
mkdir -p "$out"
: >"$out/commands.txt"; : >"$out/noise.txt"; rm -f "$out/failed.txt"
# shellcheck source=scripts/lib/run.sh
source scripts/lib/run.sh
# shellcheck source=scripts/lib/measure.sh
source scripts/lib/measure.sh
check_prereqs cargo taskset python3 ps
if [ "$SERVER_CPU" = "$LOADGEN_CPU" ]; then
  echo "capacity.sh: warning: one CPU only: the server and the load generator share it" >&2
fi
build_bins

describe_machine >"$out/machine.txt"
echo "mode: $mode; SLO p99 $slo; RLIMIT_NOFILE $(ulimit -n)" >>"$out/machine.txt"
echo "==> capacity ($mode) -> $out"
note_noise "start"

# --- idle WebSocket connections -------------------------------------------------------------
# A server that served before: the buffer ring is cycled once (8 echo clients, 1 s), so the
# growth measured is per connection, not the ring's first page faults.
idle_run() { # CLIENTS THREADS LOADGEN-PROCESSES
  local clients="$1" threads="$2" workers="$3" name="idle-$1-t$2"
  start_tickcast "$name" --threads "$threads" --no-feed --log warn
  [ -z "$warm" ] || lg "$name-warm" echo --clients 8 --duration "$warm" --size 64
  echo "    idle: $clients connections, server --threads $threads, $workers load generator process(es)"
  # Kernel slab (socket structures) while the connections are held, from a bounded sampler.
  local hold_s
  case "$hold" in *ms) hold_s=1 ;; *s) hold_s="${hold%s}" ;; *) hold_s="$hold" ;; esac
  local bound=$(( hold_s + 10 + (idle_rate > 0 ? clients / idle_rate : 2) ))
  log_cmd "python3 scripts/lib/slab_sampler.py --out $name.slab.json --seconds $bound &"
  python3 scripts/lib/slab_sampler.py --out "$out/$name.slab.json" --seconds "$bound" &
  local sampler=$!
  pids+=("$sampler")
  lg "$name" idle --clients "$clients" --workers "$workers" --connect-rate "$idle_rate" \
    --source-ips 127.0.0.1-127.0.0.40 --hold "$hold" --server-pid "$SERVER_PID" --json "$out/$name.json"
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  stop_server
}
note_noise "idle"
idle_run "$idle_small" 1 1
for step in $idle_big; do
  clients="${step%%:*}"
  # One load generator process per 18,000 clients (20,000 descriptors each), at least two.
  workers=$(( (clients + 17999) / 18000 )); workers=$(( workers < 2 ? 2 : workers ))
  idle_run "$clients" "${step##*:}" "$workers"
done

# --- idle SSE streams and parked long-polls (one worker) ------------------------------------
note_noise "http"
for kind in sse longpoll; do
  start_tickcast "http-$kind" --threads 1 --no-feed --log warn
  echo "    http: $kind clients $http_steps"
  log_cmd "taskset -c $LOADGEN_CPU python3 scripts/lib/hold_http_clients.py --port \$PORT --pid \$SERVER_PID --kind $kind --clients $http_steps"
  bg_pinned "$LOADGEN_CPU" python3 scripts/lib/hold_http_clients.py --port "$PORT" --pid "$SERVER_PID" \
    --kind "$kind" --clients "$http_steps" >"$out/http-$kind.jsonl" 2>"$out/http-$kind.err" \
    || { echo "    http-$kind failed (see $out/http-$kind.err)" >&2; echo "http-$kind" >>"$out/failed.txt"; }
  stop_server
done

# --- deliveries/s under the SLO --------------------------------------------------------------
note_noise "ramp"
ramp_once() {
  start_tickcast ramp --threads 1 --no-feed --log warn
  echo "    ramp: $ramp_clients subscribers, rate $ramp_start + k x $ramp_step msg/s, p99 <= $slo"
  lg ramp ramp --clients "$ramp_clients" --connect-rate 5000 --rate "$ramp_start" --rate-step "$ramp_step" \
    --max-steps "$ramp_steps" --slo-p99 "$slo" --duration "$ramp_dur" --size 128 --channels bench \
    --server-pid "$SERVER_PID" --json "$out/ramp.json" --percentiles "$out/ramp.hgrm"
  stop_server
}
RETRIES=$(( RETRIES > 0 ? 1 : 0 )) with_retries ramp ramp_once  # the ramp is long: once at most

# --- CPU per delivery, per transport and size; CPU per publish -------------------------------
note_noise "cost"
cost_run() { # NAME ARGS...
  with_retries "$1" cost_once "$@"
}
cost_once() { # NAME ARGS...
  local name="$1"; shift
  start_tickcast "$name" --threads 1 --no-feed --log warn
  echo "    cost: $name"
  lg "$name" rate --connect-rate 5000 --duration "$cost_dur" --channels bench --server-pid "$SERVER_PID" \
    --json "$out/$name.json" --percentiles "$out/$name.hgrm" "$@"
  scrape "$name"
  stop_server
}
for size in $sizes; do
  cost_run "cost-ws-$size" --clients "$cost_clients" --rate "$cost_rate" --size "$size"
done
for t in sse longpoll poll; do
  cost_run "cost-$t" --clients "$cost_clients" --rate "$cost_rate" --size 128 --transport "$t"
done
cost_run cost-publish --clients 1 --rate "$pub_rate" --size 128

# --- connection storm -------------------------------------------------------------------------
note_noise "storm"
start_tickcast storm --threads 1 --no-feed --log warn
echo "    storm: $storm connections, unpaced"
lg storm connect --clients "$storm" --source-ips 127.0.0.1-127.0.0.40 --json "$out/storm.json" \
  --percentiles "$out/storm.hgrm"
stop_server
note_noise "end"

# --- report, calibration, plots, plan examples ------------------------------------------------
echo "==> report"
calibration="$out/calibration.json"
python3 scripts/lib/capacity.py "$out" "$mode" "$BIN/tickcast-report" "$slo"
if [ "$mode" != smoke ]; then
  cp "$calibration" results/capacity-calibration.json
fi
{
  echo
  echo "## Plan examples (tickcast-report plan with this calibration)"
  for args in "--clients 10000 --rate 10 --size 128" "--clients 100000 --rate 5 --size 256" \
    "--clients 50000 --rate 2 --size 1024 --transport sse" \
    "--clients 20000 --rate 1 --size 512 --transport poll --poll-interval 2"; do
    echo
    echo "\`tickcast-report plan $args\`"
    echo
    echo '```'
    # shellcheck disable=SC2086
    "$BIN/tickcast-report" plan $args --calibration "$calibration" | sed -n '/^CPU/,$p'
    echo '```'
  done
  echo
  echo "## Reproduce"
  echo
  echo "\`scripts/capacity.sh $mode\` (ports differ per run; \$PORT and \$SERVER_PID are the server's):"
  echo
  echo '```sh'
  cat "$out/commands.txt"
  echo '```'
} >>"$out/report.md"

expected=("$out/report.md" "$out/summary.json" "$calibration" "$out/ramp.json" "$out/storm.json"
  "$out/ramp-p99.svg" "$out/ramp-latency.svg" "$out/cost-latency.svg" "$out/idle-rss.svg")
check_outputs "${expected[@]}"
if [ -s "$out/failed.txt" ]; then
  echo "capacity.sh: some runs failed: $(tr '\n' ' ' <"$out/failed.txt")" >&2
  exit 1
fi
sed -n '1,/^## Plan examples/p' "$out/report.md" | head -n -1
echo "==> $(( SECONDS - started )) s; wrote $out/ (reproduce: scripts/capacity.sh $mode; each command is in $out/commands.txt)"
if [ "$mode" = smoke ] && [ -z "${BENCH_OUT:-}" ]; then
  rm -rf "$out"
  echo "capacity.sh smoke: ok"
fi
