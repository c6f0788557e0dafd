#!/usr/bin/env bash
# Comparison peers (benches/peers/README.md): install what is missing, start one in the foreground.
#
#   scripts/peers.sh install             npm ci in each Node peer dir (npm registry only), build peer-bare
#   scripts/peers.sh start NAME PORT     exec the peer NAME on 127.0.0.1:PORT in the foreground
#   scripts/peers.sh list                the peer names
#
# NAME: node-ws | bun | bare | tokio-tungstenite
# Rust peers are built with `cargo build --release` into $CARGO_TARGET_DIR (default: target/).
# Pin the server yourself: `taskset -c 0 scripts/peers.sh start bun 9004` (exec keeps the PID).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$ROOT/benches/peers"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
NODE_PEERS=(node-ws bun)
RUST_PEERS=(bare tokio-tungstenite)

die() { echo "peers.sh: $*" >&2; exit 1; }

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

# The bun binary: the npm package `bun` links bin/bun.exe to the platform package's binary in
# its postinstall; fall back to the platform package itself when scripts did not run.
bun_bin() {
    local dir="$PEERS/bun/node_modules"
    local c
    for c in "$dir/bun/bin/bun.exe" "$dir/@oven/bun-linux-x64/bin/bun" "$dir/@oven/bun-linux-x64-baseline/bin/bun" \
        "$dir/@oven/bun-linux-aarch64/bin/bun"; do
        if [[ -x "$c" ]] && "$c" --version >/dev/null 2>&1; then
            echo "$c"
            return 0
        fi
    done
    return 1
}

node_installed() {
    case "$1" in
        node-ws) [[ -f "$PEERS/node-ws/node_modules/ws/package.json" ]] ;;
        bun) bun_bin >/dev/null ;;
    esac
}

install_node_peer() {
    local name="$1"
    command -v npm >/dev/null || die "npm not found (Node.js 18+ and npm are needed for $name)"
    if node_installed "$name"; then
        echo "peers.sh: $name already installed"
        return 0
    fi
    echo "peers.sh: npm ci in benches/peers/$name"
    (cd "$PEERS/$name" && npm ci --no-audit --no-fund --registry=https://registry.npmjs.org/)
    if [[ "$name" == bun ]] && ! bun_bin >/dev/null; then
        # npm may skip install scripts it was not told to allow; bun's postinstall only links
        # the platform binary, which the fallback in bun_bin() finds without it.
        (cd "$PEERS/bun" && node node_modules/bun/install.js) || true
        bun_bin >/dev/null || die "bun: no working binary under $PEERS/bun/node_modules (see README)"
    fi
}

rust_bin() {
    case "$1" in
        bare) echo "$TARGET_DIR/release/peer-bare" ;;
        tokio-tungstenite) echo "$TARGET_DIR/release/peer-tokio-tungstenite" ;;
    esac
}

install_rust_peers() {
    (cd "$ROOT" && cargo build --release -p peer-bare -p peer-tokio-tungstenite)
}

install() {
    local n
    for n in "${NODE_PEERS[@]}"; do install_node_peer "$n"; done
    install_rust_peers
}

start() {
    local name="${1:-}" port="${2:-}"
    [[ -n "$name" && -n "$port" ]] || usage 2
    [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
    # 10,000+ subscribers need more descriptors than the usual soft limit.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    case "$name" in
        node-ws)
            node_installed node-ws || die "node-ws is not installed: run scripts/peers.sh install"
            cd "$PEERS/node-ws"
            NODE_ENV=production exec node server.js "$port"
            ;;
        bun)
            local bun
            bun="$(bun_bin)" || die "bun is not installed: run scripts/peers.sh install"
            cd "$PEERS/bun"
            NODE_ENV=production exec "$bun" server.ts "$port"
            ;;
        bare | tokio-tungstenite)
            local bin
            bin="$(rust_bin "$name")"
            [[ -x "$bin" ]] || die "$bin not built: run scripts/peers.sh install (CARGO_TARGET_DIR=$TARGET_DIR)"
            if [[ "$name" == bare ]]; then
                exec "$bin" --port "$port"
            else
                exec "$bin" --listen "127.0.0.1:$port"
            fi
            ;;
        *) die "unknown peer '$name' (node-ws, bun, bare, tokio-tungstenite)" ;;
    esac
}

case "${1:-}" in
    install) install ;;
    start) shift; start "$@" ;;
    list) printf '%s\n' "${NODE_PEERS[@]}" "${RUST_PEERS[@]}" ;;
    -h | --help | help) usage 0 ;;
    *) usage 2 ;;
esac
