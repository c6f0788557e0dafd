#!/usr/bin/env bash
# Browser end-to-end test of the demo page: Debian's headless Chromium, driven by playwright-core
# (scripts/e2e-browser/, pinned by its package-lock), against a real tickcast with its feeds.
# For each transport (ws, sse, longpoll, poll) it loads /?transport=X and checks that the page
# runs on X and shows live prices and headlines; then it loads / with the WebSocket pointed at a
# closed port and checks that the page falls back to SSE; then a bare EventSource on two
# channels must resume both after its connection is cut (sse-resume), and the page must reload
# channels the server says were reset (reset). Screenshots go to
# $CARGO_TARGET_DIR/e2e-browser/ (default target/e2e-browser/).
#
#   scripts/e2e-browser.sh [ws|sse|longpoll|poll|fallback|sse-resume|reset ...]   (default: all)
#
# Installs what is missing (Debian's chromium; playwright-core with npm ci). Exits non-zero on
# any failure; the server is stopped on exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
out="$target_dir/e2e-browser"
driver_dir="scripts/e2e-browser"
chromium_bin="${CHROMIUM:-}"

step() { printf '\n==> %s\n' "$*"; }
fail() { echo "e2e-browser: $*" >&2; exit 1; }

# --- what the test needs --------------------------------------------------------------------

if [ -z "$chromium_bin" ]; then
  chromium_bin="$(command -v chromium || command -v chromium-browser || true)"
fi
if [ -z "$chromium_bin" ]; then
  step "installing Debian's chromium"
  [ "$(id -u)" = 0 ] || fail "chromium is missing and installing it needs root (apt-get install chromium)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  chromium_bin="$(command -v chromium)" || fail "apt-get installed no chromium binary"
fi

command -v node >/dev/null && command -v npm >/dev/null || fail "node and npm are needed (Node.js 20 or later)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || fail "Node.js $(node --version) is too old: playwright-core needs 20 or later"

# npm ci when playwright-core is missing or not the version the lock pins.
wanted="$(node -p "require('./$driver_dir/package-lock.json').packages['node_modules/playwright-core'].version")"
have="$(node -p "try { require('./$driver_dir/node_modules/playwright-core/package.json').version } catch { '' }")"
if [ "$have" != "$wanted" ]; then
  step "installing playwright-core $wanted (npm ci)"
  (cd "$driver_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi

step "cargo build --release -p tickcast-server"
cargo build --release --locked -p tickcast-server

# --- the server -----------------------------------------------------------------------------

mkdir -p "$out"
rm -f "$out"/*.png
log="$out/server.log"
server_pid=""
driver_pid=""
# stop PID: SIGTERM, up to 5 s to exit (the driver closes Chromium, the server its clients),
# then SIGKILL.
stop() {
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 50); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  if [ -n "$driver_pid" ]; then stop "$driver_pid"; fi
  if [ -n "$server_pid" ]; then stop "$server_pid"; fi
}
trap cleanup EXIT
trap 'echo "e2e-browser: interrupted" >&2; exit 130' INT TERM

step "starting tickcast (ticker 50 symbols at 200 msg/s, news 5 msg/s)"
# Port 0: the server picks a free port and logs it, so no other process can take it between
# a probe and the bind.
"$target_dir/release/tickcast" --listen 127.0.0.1:0 --threads 1 --log info \
  --feed ticker:symbols=50,rate=200 --feed news:rate=5 >"$log" 2>&1 &
server_pid=$!
port=""
for _ in $(seq 100); do # at most 10 s
  port="$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n1)"
  [ -n "$port" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$log" >&2; fail "tickcast exited at start"; }
  sleep 0.1
done
[ -n "$port" ] || { cat "$log" >&2; fail "tickcast did not log its port within 10 s"; }
curl -fsS --max-time 5 "http://127.0.0.1:$port/healthz" >/dev/null || fail "tickcast does not answer /healthz"
echo "tickcast on 127.0.0.1:$port (pid $server_pid)"

# --- the browser ----------------------------------------------------------------------------

step "headless Chromium ($("$chromium_bin" --version 2>/dev/null | head -n1))"
# The driver bounds every wait itself; the timeout is a backstop. It runs in the background so
# that a signal reaches the trap at once.
timeout --kill-after=5 100 node "$driver_dir/run.mjs" --base "http://127.0.0.1:$port" --out "$out" \
  --chromium "$chromium_bin" "$@" &
driver_pid=$!
status=0
wait "$driver_pid" || status=$?
driver_pid=""
if ! kill -0 "$server_pid" 2>/dev/null; then
  tail -n 20 "$log" >&2
  fail "tickcast died during the test"
fi
if [ "$status" != 0 ]; then
  [ "$status" = 124 ] && echo "e2e-browser: the browser driver ran out of time (100 s)" >&2
  echo "server log: $log; screenshots: $out/" >&2
  exit "$status"
fi
echo "screenshots: $out/"
