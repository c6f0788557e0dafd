#!/usr/bin/env bash
# Comparison peers (benches/peers/README.md): install what is missing, start one in the foreground.
#
#   scripts/peers.sh install [NAME...]   install the peers named (default: all) from the registries
#   scripts/peers.sh start NAME PORT     exec the peer NAME on 127.0.0.1:PORT in the foreground
#   scripts/peers.sh list                the peer names, one a line
#   scripts/peers.sh protocol NAME       ws | socketio | actioncable | none (what a client speaks)
#   scripts/peers.sh version NAME        the versions actually installed, one line
#   scripts/peers.sh status NAME         "ok", or why the peer cannot run here (exit 1)
#
# NAME: node-ws | bun | socketio | bare | tokio-tungstenite | websocket-ruby | actioncable |
#       django-channels | ratchet
# Node peers: npm ci from the committed lock (npm registry). Ruby peers and redis-server: Debian
# packages (apt-get, only when missing). django-channels: pip into benches/peers/django-channels/.venv
# from PyPI. Rust peers: cargo build --release into $CARGO_TARGET_DIR (default: target/).
# Pin the server yourself: `taskset -c 0 scripts/peers.sh start bun 9004` (exec keeps the PID;
# a peer's redis-server runs pinned the same way and is stopped when the peer exits).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$ROOT/benches/peers"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
NODE_PEERS=(node-ws bun socketio)
RUST_PEERS=(bare tokio-tungstenite)
DEBIAN_PEERS=(websocket-ruby actioncable)
PYTHON_PEERS=(django-channels)
OTHER_PEERS=(ratchet)
ALL_PEERS=("${NODE_PEERS[@]}" "${RUST_PEERS[@]}" "${DEBIAN_PEERS[@]}" "${PYTHON_PEERS[@]}" "${OTHER_PEERS[@]}")

# Debian packages per peer (bookworm: ruby 3.1, ruby-websocket 1.2.9, ruby-eventmachine 1.3~pre,
# ruby-actioncable/railties 6.1.7.10, puma 5.6.5, ruby-redis 4.8.0, redis-server 7.0.15).
APT_websocket_ruby=(ruby ruby-websocket ruby-eventmachine)
APT_actioncable=(ruby ruby-actioncable ruby-railties puma ruby-redis redis-server)
APT_django_channels=(redis-server)

RATCHET_REASON="Ratchet (cboden/ratchet) and its ReactPHP dependencies are published only on Packagist, \
Composer's registry, which this machine cannot reach; Debian packages PHP and Composer but neither Ratchet, \
ratchet/rfc6455 nor react/socket or react/event-loop (only php-react-promise)"

die() { echo "peers.sh: $*" >&2; exit 1; }

usage() {
    sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

known() {
    local n
    for n in "${ALL_PEERS[@]}"; do [[ "$n" == "$1" ]] && return 0; done
    return 1
}

# ---------------------------------------------------------------------------------------- Node

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
        socketio) [[ -f "$PEERS/socketio/node_modules/socket.io/package.json" &&
            -f "$PEERS/socketio/node_modules/socket.io-client/package.json" ]] ;;
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

node_pkg_version() { # DIR PACKAGE
    node -p "require('$PEERS/$1/node_modules/$2/package.json').version" 2>/dev/null || echo '?'
}

# ---------------------------------------------------------------------------------------- Rust

rust_bin() {
    case "$1" in
        bare) echo "$TARGET_DIR/release/peer-bare" ;;
        tokio-tungstenite) echo "$TARGET_DIR/release/peer-tokio-tungstenite" ;;
    esac
}

install_rust_peers() {
    (cd "$ROOT" && cargo build --release --locked -p peer-bare -p peer-tokio-tungstenite)
}

# -------------------------------------------------------------------------------------- Debian

apt_packages() { # NAME -> the Debian packages it needs
    case "$1" in
        websocket-ruby) printf '%s\n' "${APT_websocket_ruby[@]}" ;;
        actioncable) printf '%s\n' "${APT_actioncable[@]}" ;;
        django-channels) printf '%s\n' "${APT_django_channels[@]}" ;;
    esac
}

deb_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

deb_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null | sed 's/^[0-9]*://' || echo '?'; }

apt_install() { # PACKAGE... : installs those missing (apt-get update once if a package is unknown)
    local missing=() p
    for p in "$@"; do deb_installed "$p" || missing+=("$p"); done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} (Debian package names) yourself"
    [[ $(id -u) -eq 0 ]] || die "installing ${missing[*]} needs root (apt-get)"
    echo "peers.sh: apt-get install ${missing[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    fi
}

debian_ready() { # NAME
    local p
    while read -r p; do deb_installed "$p" || return 1; done < <(apt_packages "$1")
}

# -------------------------------------------------------------------------------------- Python

VENV="$PEERS/django-channels/.venv"

python_ready() {
    [[ -x "$VENV/bin/daphne" && -f "$VENV/.requirements" ]] &&
        cmp -s "$VENV/.requirements" "$PEERS/django-channels/requirements.txt"
}

install_django_channels() {
    apt_install "${APT_django_channels[@]}"
    if python_ready; then
        echo "peers.sh: django-channels already installed"
        return 0
    fi
    local py
    py="$(command -v python3)" || die "python3 not found (3.10+ is needed for django-channels)"
    if [[ ! -x "$VENV/bin/pip" ]]; then
        echo "peers.sh: python3 -m venv benches/peers/django-channels/.venv"
        if ! "$py" -m venv "$VENV"; then
            # Debian's own python3 keeps venv/ensurepip in a package of its own.
            rm -rf "$VENV"
            apt_install python3-venv
            "$py" -m venv "$VENV"
        fi
    fi
    echo "peers.sh: pip install -r benches/peers/django-channels/requirements.txt (PyPI)"
    "$VENV/bin/pip" install --disable-pip-version-check --no-input -q -r "$PEERS/django-channels/requirements.txt"
    cp "$PEERS/django-channels/requirements.txt" "$VENV/.requirements"
}

venv_version() { # DIST
    "$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || echo '?'
}

# --------------------------------------------------------------------------------------- Redis

# start_redis NAME PORT: a redis-server for this peer only, on a Unix socket (no TCP port),
# nothing persisted. It is this process's child with a parent-death signal: `exec` makes this
# process the server, so redis-server gets SIGTERM when the server exits, however it exits.
# Sets REDIS_SOCK.
start_redis() {
    REDIS_SOCK="${TMPDIR:-/tmp}/tickcast-peer-$1-$2.redis.sock"
    rm -f "$REDIS_SOCK"
    setpriv --pdeathsig TERM redis-server --port 0 --unixsocket "$REDIS_SOCK" --unixsocketperm 700 \
        --save '' --appendonly no --loglevel warning --dir "${TMPDIR:-/tmp}" --maxclients 10000 >&2 &
    local _
    for _ in $(seq 100); do
        if [[ -S "$REDIS_SOCK" ]] && redis-cli -s "$REDIS_SOCK" ping >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.05
    done
    die "redis-server did not start on $REDIS_SOCK"
}

# ------------------------------------------------------------------------------------ commands

install_one() {
    case "$1" in
        node-ws | bun | socketio) install_node_peer "$1" ;;
        bare | tokio-tungstenite) install_rust_peers ;;
        websocket-ruby | actioncable)
            # shellcheck disable=SC2046
            apt_install $(apt_packages "$1")
            echo "peers.sh: $1 ready (Debian packages: $(apt_packages "$1" | tr '\n' ' '))"
            ;;
        django-channels) install_django_channels ;;
        ratchet)
            echo "peers.sh: ratchet cannot be installed here: $(ratchet_reason)" >&2
            return 1
            ;;
        *) die "unknown peer '$1' (${ALL_PEERS[*]})" ;;
    esac
}

install() {
    local names=("$@") n failed=()
    [[ ${#names[@]} -gt 0 ]] || names=("${ALL_PEERS[@]}")
    local rust_done=0
    for n in "${names[@]}"; do
        known "$n" || die "unknown peer '$n' (${ALL_PEERS[*]})"
        if [[ "$n" == bare || "$n" == tokio-tungstenite ]]; then
            [[ $rust_done -eq 1 ]] && continue
            rust_done=1
        fi
        if [[ "$n" == ratchet ]]; then
            # Not an error for "install everything": the row stays, with the reason.
            echo "peers.sh: ratchet skipped: $(ratchet_reason)" >&2
            [[ $# -gt 0 ]] && failed+=(ratchet)
            continue
        fi
        install_one "$n" || failed+=("$n")
    done
    [[ ${#failed[@]} -eq 0 ]] || die "not installed: ${failed[*]}"
}

# Tries what the registries offer for Ratchet, every time (cheap): Debian, then Composer.
ratchet_reason() {
    local deb=""
    if command -v apt-cache >/dev/null; then
        deb="$(apt-cache policy php-cboden-ratchet php-ratchet php-react-socket 2>/dev/null | grep -c 'Candidate: [0-9]' || true)"
    fi
    if [[ "${deb:-0}" != 0 ]]; then
        echo "a Debian package of Ratchet appeared; this script does not use it yet"
        return 0
    fi
    if command -v composer >/dev/null; then
        local out tmp verdict
        tmp="$(mktemp -d)"
        out="$(cd "$tmp" && timeout 20 composer show --all --no-interaction cboden/ratchet 2>&1 || true)"
        rm -rf "$tmp"
        case "$out" in
            *"could not be downloaded"* | *getaddrinfo* | *"Could not resolve"*) verdict="its registry could not be reached" ;;
            *"name "*cboden/ratchet*) verdict="the registry answered: this script needs updating to use it" ;;
            "") verdict="no answer in 20 s" ;;
            *) verdict="$(printf '%s' "$out" | grep -m1 -v '^ *$' | cut -c1-120)" ;;
        esac
        echo "$RATCHET_REASON (tried \`composer show --all cboden/ratchet\` $(date -u +%F): $verdict)"
    else
        echo "$RATCHET_REASON"
    fi
}

status() {
    local name="${1:-}"
    known "$name" || die "unknown peer '$name'"
    case "$name" in
        node-ws | bun | socketio) node_installed "$name" || { echo "not installed (npm ci)"; return 1; } ;;
        bare | tokio-tungstenite) [[ -x "$(rust_bin "$name")" ]] || { echo "not built"; return 1; } ;;
        websocket-ruby | actioncable) debian_ready "$name" || { echo "Debian packages missing"; return 1; } ;;
        django-channels) debian_ready "$name" && python_ready || { echo "not installed (venv)"; return 1; } ;;
        ratchet) ratchet_reason; return 1 ;;
    esac
    echo ok
}

protocol() {
    case "${1:-}" in
        socketio) echo socketio ;;
        actioncable) echo actioncable ;;
        ratchet) echo none ;;
        *) known "${1:-}" || die "unknown peer '${1:-}'"; echo ws ;;
    esac
}

version() {
    local name="${1:-}"
    case "$name" in
        node-ws) echo "ws $(node_pkg_version node-ws ws), Node.js $(node --version 2>/dev/null | tr -d v)" ;;
        bun) echo "Bun $("$(bun_bin)" --version 2>/dev/null || echo '?')" ;;
        socketio) echo "socket.io $(node_pkg_version socketio socket.io) (engine.io $(node_pkg_version socketio engine.io), ws $(node_pkg_version socketio ws)), Node.js $(node --version 2>/dev/null | tr -d v)" ;;
        bare) echo "peer-bare (workspace crate)" ;;
        tokio-tungstenite)
            echo "tokio-tungstenite $(awk '/^name = "tokio-tungstenite"$/ {getline; gsub(/version = |"/, ""); print; exit}' "$ROOT/Cargo.lock")"
            ;;
        websocket-ruby)
            echo "websocket-ruby $(deb_version ruby-websocket), EventMachine $(deb_version ruby-eventmachine), Ruby $(ruby -e 'print RUBY_VERSION' 2>/dev/null || echo '?') (Debian)"
            ;;
        actioncable)
            echo "Action Cable $(deb_version ruby-actioncable), puma $(deb_version puma), redis-server $(deb_version redis-server) (Debian)"
            ;;
        django-channels)
            echo "channels $(venv_version channels), daphne $(venv_version daphne), channels_redis $(venv_version channels_redis), Django $(venv_version Django), redis-server $(deb_version redis-server)"
            ;;
        ratchet) echo "Ratchet (not installable here)" ;;
        *) die "unknown peer '$name'" ;;
    esac
}

start() {
    local name="${1:-}" port="${2:-}"
    [[ -n "$name" && -n "$port" ]] || usage 2
    [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
    known "$name" || die "unknown peer '$name' (${ALL_PEERS[*]})"
    # 10,000+ subscribers need more descriptors than the usual soft limit.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    # No library debug output (the `debug` package behind socket.io reads DEBUG).
    unset DEBUG
    case "$name" in
        node-ws)
            node_installed node-ws || die "node-ws is not installed: run scripts/peers.sh install node-ws"
            cd "$PEERS/node-ws"
            NODE_ENV=production exec node server.js "$port"
            ;;
        bun)
            local bun
            bun="$(bun_bin)" || die "bun is not installed: run scripts/peers.sh install bun"
            cd "$PEERS/bun"
            NODE_ENV=production exec "$bun" server.ts "$port"
            ;;
        socketio)
            node_installed socketio || die "socketio is not installed: run scripts/peers.sh install socketio"
            cd "$PEERS/socketio"
            NODE_ENV=production exec node server.js "$port"
            ;;
        bare | tokio-tungstenite)
            local bin
            bin="$(rust_bin "$name")"
            [[ -x "$bin" ]] || die "$bin not built: run scripts/peers.sh install $name (CARGO_TARGET_DIR=$TARGET_DIR)"
            if [[ "$name" == bare ]]; then
                exec "$bin" --port "$port"
            else
                exec "$bin" --listen "127.0.0.1:$port"
            fi
            ;;
        websocket-ruby)
            debian_ready websocket-ruby || die "websocket-ruby is not installed: run scripts/peers.sh install websocket-ruby"
            cd "$PEERS/websocket-ruby"
            exec ruby server.rb "$port"
            ;;
        actioncable)
            debian_ready actioncable || die "actioncable is not installed: run scripts/peers.sh install actioncable"
            start_redis actioncable "$port"
            cd "$PEERS/actioncable"
            # Single mode (no cluster workers: one core), the generated puma.rb's 5 threads.
            REDIS_URL="unix://$REDIS_SOCK" RAILS_ENV=production RACK_ENV=production RAILS_LOG_TO_STDOUT=1 \
                exec puma --environment production --bind "tcp://127.0.0.1:$port" --threads 5:5 config.ru
            ;;
        django-channels)
            debian_ready django-channels && python_ready ||
                die "django-channels is not installed: run scripts/peers.sh install django-channels"
            start_redis django-channels "$port"
            cd "$PEERS/django-channels"
            # -v 0: no access log (daphne writes one line per request to stdout at the default 1).
            REDIS_URL="unix://$REDIS_SOCK" DJANGO_SETTINGS_MODULE=peer.settings PYTHONDONTWRITEBYTECODE=1 \
                exec "$VENV/bin/daphne" -v 0 -b 127.0.0.1 -p "$port" peer.asgi:application
            ;;
        ratchet) die "ratchet cannot run here: $(ratchet_reason)" ;;
    esac
}

case "${1:-}" in
    install) shift; install "$@" ;;
    start) shift; start "$@" ;;
    list) printf '%s\n' "${ALL_PEERS[@]}" ;;
    protocol) shift; protocol "$@" ;;
    version) shift; version "$@" ;;
    status) shift; status "$@" ;;
    -h | --help | help) usage 0 ;;
    *) usage 2 ;;
esac
