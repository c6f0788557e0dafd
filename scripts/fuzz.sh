#!/usr/bin/env bash
# Runs every cargo-fuzz target of tickcast-protocol for a bounded time.
#
#   scripts/fuzz.sh [seconds-per-target] [target...]     (default: 60 s, every target)
#
# Only stable Rust is installed. cargo-fuzz needs nightly flags (-Zsanitizer=address), so the
# build runs with RUSTC_BOOTSTRAP=1, which lets stable rustc accept them. Each target starts
# from its committed seeds (fuzz/seeds/<target>/) plus the local corpus (fuzz/corpus/<target>/,
# git-ignored, where libFuzzer adds what it finds). Crashes land in fuzz/artifacts/<target>/
# and make this script fail.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${1:-60}"
shift || true

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi

for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t"
  printf '\n==> fuzzing %s for %ss\n' "$t" "$secs"
  # -rss_limit_mb bounds memory; -max_len keeps inputs near real frame/handshake sizes.
  cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -max_len=8192 -rss_limit_mb=2048 -print_final_stats=1
done
