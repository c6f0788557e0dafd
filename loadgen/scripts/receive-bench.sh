#!/usr/bin/env bash
# The load generator's own receive benchmark (issue 6): tickcast-trivial-sender on one core, the
# load generator as a pure receiver (`rate --publisher none`) on the other, side by side for
# each load generator binary given, one run each per round. Prints each run's table lines that
# matter and how busy the load generator's core was with *other* work meanwhile (noise).
#
#   loadgen/scripts/receive-bench.sh BATCH RATE_PER_CONN CLIENTS DURATION ROUNDS LG_BIN [LG_BIN...]
#
# e.g. 1 frame per segment, 200 x 1,000 = 200,000 msg/s, 10 s, 2 rounds, one binary:
#   loadgen/scripts/receive-bench.sh 1 200 1000 10s 2 target/release/tickcast-loadgen
# Extra load generator flags: LG_ARGS="--ws-receiver tokio". Cores: SENDER_CPU (0), LG_CPU (1).
# Extra sender flags: SENDER_ARGS="--size 256". A binary named tickcast-lean-client (the lean
# tokio reference client) is run with its own flags.
set -euo pipefail
batch=$1 rate=$2 clients=$3 duration=$4 rounds=$5
shift 5
sender_cpu=${SENDER_CPU:-0} lg_cpu=${LG_CPU:-1}
here="$(cd "$(dirname "$0")/../.." && pwd)"
sender="${SENDER:-$here/target/release/tickcast-trivial-sender}"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"

# Busy and total jiffies of one CPU from /proc/stat.
cpu_jiffies() { awk -v c="cpu$1" '$1==c {b=$2+$3+$4+$7+$8+$9; t=b+$5+$6; print b, t}' /proc/stat; }
# CPU jiffies (user + system) a process used.
proc_jiffies() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Waits (at most QUIET_WAIT seconds, default 30) until both CPUs were under 15 % busy over a
# second; prints how busy they were at the start of the run either way.
wait_quiet() {
  local tries=0 b0 t0 b1 t1 c0 c1
  while :; do
    read -r b0 t0 < <(cpu_jiffies 0); read -r b1 t1 < <(cpu_jiffies 1)
    local s0=$(( $(proc_jiffies "$sender_pid") ))
    sleep 1
    read -r c0 x0 < <(cpu_jiffies 0); read -r c1 x1 < <(cpu_jiffies 1)
    local s1=$(( $(proc_jiffies "$sender_pid") ))
    # The idle sender's own timer work is not noise.
    local busy0=$(( (c0 - b0 - (s1 - s0)) * 100 / (x0 - t0) )) busy1=$(( (c1 - b1) * 100 / (x1 - t1) ))
    if { [ "$busy0" -lt 15 ] && [ "$busy1" -lt 15 ]; } || [ "$tries" -ge "${QUIET_WAIT:-30}" ]; then
      quiet="before: CPU0 ${busy0}% CPU1 ${busy1}% busy with others (waited ${tries}s)"
      return
    fi
    tries=$((tries + 1))
  done
}

taskset -c "$sender_cpu" "$sender" --listen "127.0.0.1:$port" --rate-per-conn "$rate" --batch "$batch" \
  --max-duration 600s ${SENDER_ARGS:-} >/dev/null &
sender_pid=$!
trap 'kill "$sender_pid" 2>/dev/null || true' EXIT
sleep 0.5
echo "# batch $batch, $rate msg/s per connection, $clients connections, $duration; sender on CPU $sender_cpu, load generator on CPU $lg_cpu; $(nproc) CPUs; $(uname -r)"
for round in $(seq 1 "$rounds"); do
  for lg in "$@"; do
    wait_quiet
    read -r b0 t0 < <(cpu_jiffies "$lg_cpu")
    read -r sb0 st0 < <(cpu_jiffies "$sender_cpu")
    sj0=$(proc_jiffies "$sender_pid")
    load0="$(cut -d' ' -f1 /proc/loadavg)"
    if [ "$(basename "$lg")" = tickcast-lean-client ]; then
      # The lean tokio reference client: same lines printed, its own flags.
      out="$(timeout 300 taskset -c "$lg_cpu" "$lg" --connect "127.0.0.1:$port" --clients "$clients" \
        --duration "$duration" 2>&1)"
    else
      out="$(timeout 300 taskset -c "$lg_cpu" "$lg" rate --publisher none --url "http://127.0.0.1:$port" --path / \
        --clients "$clients" --connect-rate 10000 --duration "$duration" --quiet ${LG_ARGS:-} 2>&1)"
    fi
    read -r b1 t1 < <(cpu_jiffies "$lg_cpu")
    read -r sb1 st1 < <(cpu_jiffies "$sender_cpu")
    sj1=$(proc_jiffies "$sender_pid")
    load1="$(cut -d' ' -f1 /proc/loadavg)"
    sender_share=$(( (sj1 - sj0) * 100 / (st1 - st0) ))
    others0=$(( (sb1 - sb0 - (sj1 - sj0)) * 100 / (st1 - st0) ))
    [ "$others0" -lt 0 ] && others0=0
    # The measured phase's share of one core, and the whole run's CPU seconds and wall time.
    phase="$(grep -o 'measured phase: .*' <<<"$out" || true)"
    received="$(grep -o 'received [0-9]* ([0-9]*/s)' <<<"$out" || true)"
    cpu_line="$(grep -o 'load generator CPU: [0-9.]*s over [0-9.]*s wall' <<<"$out" || true)"
    lg_cpu_s="$(sed -E 's/.*CPU: ([0-9.]+)s over ([0-9.]+)s wall/\1/' <<<"$cpu_line")"
    core_busy_s="$(awk -v b="$((b1 - b0))" 'BEGIN {printf "%.2f", b / 100}')"
    core_wall_s="$(awk -v t="$((t1 - t0))" 'BEGIN {printf "%.2f", t / 100}')"
    others="$(awk -v c="$core_busy_s" -v l="${lg_cpu_s:-0}" -v w="$core_wall_s" 'BEGIN {o=c-l; if (o<0) o=0; printf "%.0f", 100*o/w}')"
    echo "round $round $(basename "$lg") ${LG_ARGS:-}: $received; $phase"
    echo "    noise: others on CPU $lg_cpu ~${others}%, on CPU $sender_cpu ~${others0}% (sender ${sender_share}%); load avg $load0 -> $load1; $quiet"
    grep -q 'WARNING\|warning' <<<"$out" && grep -i 'warning' <<<"$out" | sed 's/^/    /' || true
  done
done
