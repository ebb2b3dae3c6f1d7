#!/usr/bin/env bash
# A short run of every fuzz target from its seed corpus (FUZZ_SECONDS each,
# default 5), as CI runs it after the tests. The long runs are in FUZZING.md.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# The machine has the stable toolchain; cargo fuzz needs its sanitizer flags.
export RUSTC_BOOTSTRAP=1
cargo fuzz build --dev
for target in $(cargo fuzz list); do
    scratch=$(mktemp -d)
    if ! cargo fuzz run --dev "$target" "$scratch" "corpus/$target" -- \
        -max_total_time="${FUZZ_SECONDS:-5}" >"$scratch.log" 2>&1; then
        tail -n 60 "$scratch.log" >&2
        echo "fuzz smoke: $target failed (the input is in fuzz/artifacts/$target)" >&2
        exit 1
    fi
    echo "fuzz smoke: $target: $(grep -E '^Done' "$scratch.log")"
    rm -rf "$scratch" "$scratch.log"
done
