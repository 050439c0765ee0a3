#!/usr/bin/env bash
# Builds every fuzz target of wsio and runs each for N seconds (default 30),
# one after the other. Exits non-zero if any target crashes, times out on an
# input, or fails to build. Usage: fuzz/smoke.sh [SECONDS]
#
# The toolchain may be stable: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass the
# -Z flags it needs. Set FUZZ_SANITIZER=none for a faster, uninstrumented
# run (wsio is safe Rust but for an audited `from_utf8_unchecked` and, in
# ws::mask, the calls of its AVX2 loops after the CPU check and one set_len
# over bytes the masked copy has just written).
set -euo pipefail

SECONDS_PER_TARGET="${1:-30}"
CARGO_FUZZ_VERSION="0.13.2"
SANITIZER="${FUZZ_SANITIZER:-address}"

cd "$(dirname "$0")"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "smoke: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
export RUSTC_BOOTSTRAP=1

cargo fuzz build --sanitizer "$SANITIZER"

failed=()
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    echo "smoke: $target for ${SECONDS_PER_TARGET}s"
    set +e
    cargo fuzz run --sanitizer "$SANITIZER" "$target" "corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=4096 \
        -print_final_stats=1 >"fuzz-$target.log" 2>&1
    status=$?
    set -e
    grep -E "^(stat::number_of_executed_units|stat::average_exec_per_sec|Done)|panicked|SUMMARY|Test unit written" \
        "fuzz-$target.log" || true
    if [ "$status" -ne 0 ]; then
        echo "smoke: $target FAILED with status $status (see fuzz/fuzz-$target.log, fuzz/artifacts/$target/)"
        tail -n 40 "fuzz-$target.log"
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "smoke: crashes in: ${failed[*]}"
    exit 1
fi
echo "smoke: all targets ran ${SECONDS_PER_TARGET}s without a crash"
