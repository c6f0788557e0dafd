#!/usr/bin/env bash
# Runs every check the project has: formatting, lints, unit/integration/property tests.
# Installs what the tests need when it is missing. `.ci/run` calls this script.
set -euo pipefail
cd "$(dirname "$0")/.."
# release_bin: the release binaries' directory (CARGO_TARGET_DIR honoured).
# shellcheck source=scripts/lib/run.sh
source scripts/lib/run.sh
target="${CARGO_TARGET_DIR:-target}"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "protocol crate is sans-IO (no runtime or socket crates in its dependencies)"
if cargo tree -p tickcast-protocol -e normal --prefix none --locked | grep -E '^(io-uring|libc|tokio|mio|socket2) ' ; then
  echo "tickcast-protocol must not depend on I/O crates" >&2
  exit 1
fi

# The scripts' Python (result readers, report tables) over hand-written fixture results
# (scripts/tests/fixtures/, schema 2 as docs/loadgen.md documents it). Stdlib only.
step "python3 -m unittest discover -s scripts/tests"
python3 -m unittest discover -s scripts/tests

step "cargo test --workspace (the load generator's end-to-end tests apart, below)"
cargo test --workspace --locked --exclude tickcast-loadgen
cargo test -p tickcast-loadgen --locked --lib --bins --test http_transports

# The load generator's end-to-end tests, together in one process, and the regression test of the
# tokio-uring heap corruption they used to show (a runtime dropped with a read in flight freed its
# buffer; the workspace patches the crate: loadgen/vendor/tokio-uring/TICKCAST-PATCH.md).
step "load generator end-to-end tests"
cargo test -p tickcast-loadgen --locked --test e2e --test uring_shutdown

# The load generator's Socket.IO and Action Cable subscribers against the real peers
# (loadgen/tests/peers.rs). A peer that is not installed is skipped with a message; the Socket.IO
# peer is installed here from npm (as the shootout smoke below does) and required, so its test
# cannot be skipped silently. Action Cable runs when its Debian packages are there.
# SHOOTOUT_SMOKE=0 (no Node.js) skips the install and the requirement.
step "load generator against the Socket.IO and Action Cable peers"
peers_required=""
if [ "${SHOOTOUT_SMOKE:-1}" != 0 ]; then
  scripts/peers.sh install socketio
  peers_required="socketio"
fi
TICKCAST_PEERS_REQUIRED="$peers_required" cargo test -p tickcast-loadgen --locked --test peers

# The benchmark scripts at tiny scale: every transport end to end through bench.sh, its
# summary and (when built) its plots. Seconds, not minutes.
step "benchmark scripts, smoke run (20 clients, 1 s per transport)"
cargo build --release --locked -p tickcast-server -p tickcast-loadgen -p tickcast-report
smoke_out="$target/bench-smoke"
rm -rf "$smoke_out"
QUIET_WAIT=0 BENCH_SECS=1 BENCH_CLIENTS=20 BENCH_OUT="$smoke_out" BENCH_BIN="$(release_bin)" scripts/bench.sh quick
# Every transport delivered every expected message: from the results' JSON, not the tables.
for t in ws sse longpoll poll-1s poll-100ms; do
  python3 scripts/lib/lgresult.py all-delivered "$smoke_out/transport-$t-20-10.json" || {
    echo "bench.sh smoke run: $t did not deliver every message (see $smoke_out/)" >&2
    exit 1
  }
done

# The broadcast comparison behind the README's table, at tiny scale and two rounds (medians and
# ranges in its summary), against the bare write loop: every run delivers everything (~40 s).
step "compare.sh, smoke run (tickcast and bare, 2 rounds)"
cargo build --release --locked -p peer-bare
compare_out="$target/compare-smoke"
rm -rf "$compare_out"
BENCH_BIN="$(release_bin)" BENCH_OUT="$compare_out" scripts/compare.sh smoke --servers tickcast,bare
for s in tickcast bare; do
  runs=("$compare_out"/*-"$s"-r[12].json)
  { [ "${#runs[@]}" = 6 ] && python3 scripts/lib/lgresult.py all-delivered "${runs[@]}"; } || {
    echo "compare.sh smoke run: $s did not deliver every message in all three workloads, both rounds (see $compare_out/)" >&2
    exit 1
  }
done
grep -q "medians of 2 rounds" "$compare_out/summary.md" || {
  echo "compare.sh smoke run: the summary does not combine the two rounds (see $compare_out/)" >&2
  exit 1
}

# The capacity and tuning-sweep scripts at tiny scale: every phase and setting starts, and
# their reports and calibration are written (about 20 s each).
step "capacity.sh and sweep.sh, smoke runs"
BENCH_BIN="$(release_bin)" scripts/capacity.sh smoke
BENCH_BIN="$(release_bin)" scripts/sweep.sh smoke

# The light shootout peers (Node ws, Socket.IO): each starts and every message reaches a few
# clients (installed from npm when missing). SHOOTOUT_SMOKE=0 skips it.
if [ "${SHOOTOUT_SMOKE:-1}" != 0 ]; then
  step "shootout smoke: Node ws and Socket.IO peers"
  scripts/shootout.sh smoke
fi

# The demo page in a real browser (Debian's headless Chromium, installed when missing) on
# every transport and the automatic fallback; screenshots in target/e2e-browser/.
# E2E_BROWSER=0 skips it.
if [ "${E2E_BROWSER:-1}" != 0 ]; then
  step "demo page in headless Chromium (ws, sse, longpoll, poll, fallback, sse-resume, reset)"
  scripts/e2e-browser.sh
fi

# RFC 6455 conformance: the Autobahn|Testsuite against /echo, every non-compression case, strict
# (NON-STRICT counts as a failure). Runs when the suite is present beside the project
# (../shared/autobahn); AUTOBAHN=0 skips it.
autobahn_dir="$(cd .. && pwd)/shared/autobahn"
if [ "${AUTOBAHN:-1}" != 0 ] && [ -x "$autobahn_dir/run.sh" ]; then
  step "Autobahn|Testsuite against /echo (cases 1-7, 9, 10; strict)"
  export AUTOBAHN_VENV="${AUTOBAHN_VENV:-${TMPDIR:-/tmp}/autobahn-testsuite-py3}"
  if [ ! -x "$AUTOBAHN_VENV/bin/wstest" ]; then
    "$autobahn_dir/setup.sh" "$AUTOBAHN_VENV"
  fi
  cargo build --release --locked -p tickcast-server
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  "$(release_bin)/tickcast" --listen "127.0.0.1:$port" --threads 1 --log warn &
  server_pid=$!
  trap 'kill "$server_pid" 2>/dev/null || true' EXIT
  "$autobahn_dir/run.sh" --fail-on FAILED,NON-STRICT,UNIMPLEMENTED --out "$target/autobahn" \
    "ws://127.0.0.1:$port/echo" "1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*"
  kill "$server_pid"
  wait "$server_pid" || { echo "tickcast did not exit cleanly after the suite" >&2; exit 1; }
  trap - EXIT
else
  echo "(Autobahn|Testsuite not found at $autobahn_dir: conformance run skipped)"
fi
