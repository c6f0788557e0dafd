#!/usr/bin/env bash
# Runs every check the project has: formatting, lints, unit/integration/property tests.
# Installs what the tests need when it is missing. `.ci/run` calls this script.
set -euo pipefail
cd "$(dirname "$0")/.."

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

step "cargo test --workspace"
cargo test --workspace --locked
