#!/usr/bin/env bash
# scripts/sweep.sh [smoke|quick|full] — per-core tuning sweeps: each server setting against
# deliveries/s, latency and server CPU per delivery, side by side in one run under the same load
# (a fresh server per setting, pinned to one core; the load generator pinned to the other):
#
#   rate      5,000 WebSocket subscribers x 20 msg/s (100k deliveries/s, 128 B): --threads 1/2,
#             --pin, --ring-entries 256/4096/16384 (32768 passes the flag check but the kernel
#             refuses its 4x completion queue: EINVAL), --sqpoll
#   saturate  1,000 subscribers, window of 64 messages (queues back up): --max-iovecs 1/8/64,
#             --send-queue-limit 2KiB/16KiB/1MiB
#   echo      1,000 clients, closed-loop 128 B round trips (receive-heavy): --buf-count 128/1024/8192,
#             --buf-size 1KiB/4KiB/16KiB
#
#   smoke   tiny counts; every setting's server is started (its flags checked), two per sweep are
#           also measured; well under 30 s once built; checks the outputs;
#           writes to a temporary directory (removed on success; BENCH_OUT keeps it)
#   quick   6 s per setting, one pass: about 3 minutes; results/<date>-sweep/
#   full    15 s per setting, 10,000 subscribers for `rate`, two interleaved passes (a b c a b c):
#           results/<date>-sweep-full/
#
# Writes one JSON, .hgrm percentile file and /metrics snapshot per setting, report.md and SVG plots
# (tickcast-report). The machine is shared: each run starts when both pinned cores are quiet
# (waiting at most QUIET_WAIT s), and is repeated (at most RETRIES times: 1, full 2; fresh server) when
# other processes took more than NOISY_MAX of the server's core during it. Environment: SERVER_CPU (0), LOADGEN_CPU (1), BENCH_OUT, BENCH_BIN
# (prebuilt tickcast, tickcast-loadgen, tickcast-report).
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-quick}"
case "$mode" in
  smoke) dur=200ms; rounds=1; NOISE_WINDOW=0.1; rate_clients=20; rate_rate=20; sat_clients=10; echo_clients=10; per_group=2 ;;
  quick) dur=6s; rounds=1; rate_clients=5000; rate_rate=20; sat_clients=1000; echo_clients=1000; per_group=99 ;;
  full) dur=15s; rounds=2; rate_clients=10000; rate_rate=10; sat_clients=1000; echo_clients=1000; per_group=99 ;;
  -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
  *) echo "usage: scripts/sweep.sh [smoke|quick|full]" >&2; exit 2 ;;
esac

# Settings per sweep: "LABEL|SERVER FLAGS|PARAMETER=VALUE (for the plots)". The first is the
# baseline (the defaults). A setting without --threads runs with --threads 1.
rate_rows=(
  "defaults (--threads 1)||ring-entries=4096"
  "--pin|--pin|"
  "--threads 2|--threads 2|threads=2"
  "--threads 2 --pin|--threads 2 --pin|"
  "--ring-entries 256|--ring-entries 256|ring-entries=256"
  "--ring-entries 16384|--ring-entries 16384|ring-entries=16384"
  "--sqpoll (1000 ms idle)|--sqpoll|"
)
sat_rows=(
  "defaults (--max-iovecs 64, --send-queue-limit 1MiB)||max-iovecs=64"
  "--max-iovecs 1|--max-iovecs 1|max-iovecs=1"
  "--max-iovecs 8|--max-iovecs 8|max-iovecs=8"
  "--send-queue-limit 16KiB|--send-queue-limit 16KiB|send-queue-limit=16384"
  "--send-queue-limit 2KiB|--send-queue-limit 2KiB|send-queue-limit=2048"
)
echo_rows=(
  "defaults (--buf-count 1024, --buf-size 4KiB)||buf-count=1024"
  "--buf-count 128|--buf-count 128|buf-count=128"
  "--buf-count 8192|--buf-count 8192|buf-count=8192"
  "--buf-size 1KiB|--buf-size 1KiB|buf-size=1024"
  "--buf-size 16KiB|--buf-size 16KiB|buf-size=16384"
)

# Each load generator run waits (at most QUIET_WAIT seconds) until both cores are quiet: the
# machine is shared. smoke does not wait.
QUIET_WAIT="${QUIET_WAIT:-$([ "$mode" = smoke ] && echo 0 || echo 10)}"
RETRIES="${RETRIES:-$(case "$mode" in smoke) echo 0 ;; full) echo 2 ;; *) echo 1 ;; esac)}"
SERVER_CPU="${SERVER_CPU:-0}"
LOADGEN_CPU="${LOADGEN_CPU:-$(( $(nproc) > 1 ? 1 : 0 ))}"
started=$SECONDS
if [ "$mode" = smoke ]; then
  out="${BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/tickcast-sweep-smoke.XXXXXX")}"
else
  out="${BENCH_OUT:-results/$(date +%Y-%m-%d)-sweep$([ "$mode" = full ] && echo -full || true)}"
fi
mkdir -p "$out"
: >"$out/commands.txt"; : >"$out/noise.txt"; rm -f "$out/failed.txt"
printf 'sweep\tindex\tlabel\tflags\tparam\n' >"$out/rows.tsv"
# shellcheck source=scripts/lib/run.sh
source scripts/lib/run.sh
# shellcheck source=scripts/lib/measure.sh
source scripts/lib/measure.sh
check_prereqs cargo taskset python3 ps
if [ "$SERVER_CPU" = "$LOADGEN_CPU" ]; then
  echo "sweep.sh: warning: one CPU only: the server and the load generator share it" >&2
fi
build_bins
describe_machine >"$out/machine.txt"
echo "mode: $mode; $dur per setting, $rounds pass(es)" >>"$out/machine.txt"
echo "==> tuning sweeps ($mode, $dur per setting) -> $out"

# one SWEEP INDEX ROUND ROW LOADGEN-ARGS... : a fresh server with the row's flags, one run.
one() {
  local sweep="$1" i="$2" round="$3" row="$4"; shift 4
  local label flags name
  label="${row%%|*}"; flags="${row#*|}"; flags="${flags%%|*}"
  [[ "$flags" == *--threads* ]] || flags="--threads 1 $flags"
  name="$sweep-$i-r$round"
  # shellcheck disable=SC2086
  start_tickcast "$name" --no-feed --log warn $flags
  echo "    $sweep [$round] $label"
  lg "$name" "$@" --server-pid "$SERVER_PID" --json "$out/$name.json" --percentiles "$out/$name.hgrm"
  scrape "$name"
  stop_server
}

sweep() { # SWEEP ROWS-ARRAY-NAME LOADGEN-ARGS...
  local sweep="$1" rows_name="$2"; shift 2
  local -n rows="$rows_name"
  local i round n=${#rows[@]}
  [ "$n" -gt "$per_group" ] && n="$per_group"
  for i in $(seq 0 $(( n - 1 ))); do
    local row="${rows[$i]}" flags param
    flags="${row#*|}"; param="${flags#*|}"; flags="${flags%%|*}"
    printf '%s\t%s\t%s\t%s\t%s\n' "$sweep" "$i" "${row%%|*}" "$flags" "$param" >>"$out/rows.tsv"
  done
  note_noise "$sweep"
  # smoke: the settings not measured still start a server, so every flag set is checked.
  for i in $(seq "$n" $(( ${#rows[@]} - 1 ))); do
    local flags="${rows[$i]#*|}"; flags="${flags%%|*}"
    [[ "$flags" == *--threads* ]] || flags="--threads 1 $flags"
    # shellcheck disable=SC2086
    start_tickcast "$sweep-$i-start" --no-feed --log warn $flags
    echo "    $sweep: ${rows[$i]%%|*} starts"
    stop_server
  done
  for round in $(seq 1 "$rounds"); do
    for i in $(seq 0 $(( n - 1 ))); do
      with_retries "$sweep-$i-r$round" one "$sweep" "$i" "$round" "${rows[$i]}" "$@"
    done
  done
}

sweep rate rate_rows rate --clients "$rate_clients" --rate "$rate_rate" --size 128 --channels bench \
  --connect-rate 10000 --duration "$dur"
sweep saturate sat_rows saturate --clients "$sat_clients" --window 64 --size 128 --channels bench \
  --connect-rate 5000 --duration "$dur"
sweep echo echo_rows echo --clients "$echo_clients" --size 128 --connect-rate 5000 --duration "$dur"
note_noise "end"

echo "==> report"
python3 scripts/lib/sweep.py "$out" "$mode" "$BIN/tickcast-report" "$rounds"
{
  echo
  echo "## Reproduce"
  echo
  echo "\`scripts/sweep.sh $mode\` (ports differ per run; \$PORT and \$SERVER_PID are the server's):"
  echo
  echo '```sh'
  cat "$out/commands.txt"
  echo '```'
} >>"$out/report.md"

check_outputs "$out/report.md" "$out/summary.json" "$out/rate-latency.svg" "$out/saturate-latency.svg" \
  "$out/echo-latency.svg"
if [ -s "$out/failed.txt" ]; then
  echo "sweep.sh: some runs failed: $(tr '\n' ' ' <"$out/failed.txt")" >&2
  exit 1
fi
sed -n '1,/^## Reproduce/p' "$out/report.md" | head -n -1
echo "==> $(( SECONDS - started )) s; wrote $out/ (reproduce: scripts/sweep.sh $mode; each command is in $out/commands.txt)"
if [ "$mode" = smoke ] && [ -z "${BENCH_OUT:-}" ]; then
  rm -rf "$out"
  echo "sweep.sh smoke: ok"
fi
