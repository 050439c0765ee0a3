#!/usr/bin/env bash
# The fuzz smoke run of CI: the same verdict every time on the same commit.
#
# First the named tests of tests/findings.rs; then for every target
# `cargo fuzz list` names:
#   1. replay: every committed seed (seeds/<target>/) and every finding
#      (findings/, all of them, whichever target found them) run once
#      (-runs=0), so a regression fails on every run;
#   2. explore: RUNS executions (default 50000, the seeds' own included) from
#      those inputs with a fixed -seed, into a scratch corpus, so nothing in
#      the repo changes. A fixed number of runs, never a time limit: the work
#      done does not depend on the machine's speed.
# Targets run side by side, one per CPU. Exits non-zero if a target fails to
# build, has no committed seeds, crashes, hangs (an input over 30 s), or
# leaks on a committed input. Crashing inputs land in fuzz/artifacts/<target>/,
# logs in fuzz/target/smoke/. The last lines printed sum up each target with
# the deterministic counters only (runs, coverage, features, corpus, new
# units), so two runs of one commit print the same summary (README.md says
# why).
#
# Usage: fuzz/smoke.sh [RUNS]
#   FUZZ_SANITIZER=none   skip AddressSanitizer (faster; wsio is safe Rust
#                         but for a few audited unsafe blocks, see README.md)
#   FUZZ_SEED=N           another exploration seed (default 1)
#   FUZZ_TARGETS="a b"    only these targets
#   FUZZ_JOBS=N           targets run at a time (default: the CPU count);
#                         the verdict and summary do not depend on it
#
# The toolchain may be stable: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass the -Z
# flags it needs. libFuzzer needs a C++ compiler.
set -euo pipefail

RUNS="${1:-50000}"
SEED="${FUZZ_SEED:-1}"
SANITIZER="${FUZZ_SANITIZER:-address}"
JOBS="${FUZZ_JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)}"
CARGO_FUZZ_VERSION="0.13.2"
# libFuzzer options shared by both steps. -timeout is generous so that only
# a real hang fails, on any machine.
OPTIONS=(-timeout=30 -rss_limit_mb=4096 -print_final_stats=1)

cd "$(dirname "$0")"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "smoke: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
export RUSTC_BOOTSTRAP=1

# The findings' named tests first (a plain test build, no libFuzzer): some
# check the library straight, beyond what replaying their inputs shows, and
# one finding has no input file.
cargo test --test findings
cargo fuzz build --sanitizer "$SANITIZER"
if [ -n "${FUZZ_TARGETS:-}" ]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    mapfile -t targets < <(cargo fuzz list)
fi

logs=target/smoke
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$logs" findings

# The final "DONE" line's counters, without the machine-dependent exec/s and
# rss.
counters() {
    grep -E '^#[0-9]+[[:space:]]+DONE' "$1" | tail -n 1 |
        sed -E 's/^#([0-9]+)[[:space:]]+DONE[[:space:]]+/runs: \1 /; s/[[:space:]]+exec\/s:.*//'
}

# One target, both steps. Its verdict goes to $scratch/<target>.result: the
# summary line, and "FAILED (...)" first when it failed.
smoke_target() {
    local target=$1 seeds="seeds/$1" result="$scratch/$1.result" status
    local fail=""
    mkdir -p "$seeds"
    # A target without seeds would explore from nothing, and its replay would
    # check nothing: it fails until seeds are committed (README.md says how).
    if [ -z "$(find "$seeds" -type f -size +0 -print -quit)" ]; then
        echo "smoke: $target FAILED: no seeds in fuzz/$seeds/"
        fail="no seeds"
    fi
    local n_inputs
    n_inputs=$(find "$seeds" findings -type f | wc -l)

    echo "smoke: $target: replaying $n_inputs seeds and findings"
    set +e
    cargo fuzz run --sanitizer "$SANITIZER" "$target" "$seeds" findings -- \
        -runs=0 "${OPTIONS[@]}" >"$logs/$target-replay.log" 2>&1
    status=$?
    set -e
    if [ "$status" -ne 0 ]; then
        echo "smoke: $target FAILED replaying a committed input (status $status, see fuzz/$logs/$target-replay.log)"
        tail -n 40 "$logs/$target-replay.log"
        printf 'FAILED (replay)\n%s: replay FAILED\n' "$target" >"$result"
        return
    fi

    # The seeds are named in sorted order with -seed_inputs: libFuzzer would
    # read a directory in the file system's order, which differs between
    # machines and changes which mutations run. New inputs go to an empty
    # scratch corpus. -use_cmp=0: the operands of traced comparisons (time
    # stamps among them) differ from run to run, and mutations drawn from
    # them would too. -detect_leaks=0: libFuzzer runs an input again to look
    # for a leak when it counted more mallocs than frees, which now and then
    # happens to one input and not the next time, and shifts every later
    # run; the replay above still checks each committed input for leaks.
    # -reload=0: libFuzzer rereads its corpus directory every second and
    # runs the files it does not know, and it forgets some it wrote itself
    # (a reduced seed reduced again keeps its file), so how many it finds
    # and runs, every later run shifted, depends on the machine's speed.
    local work="$scratch/$target" list
    mkdir -p "$work/corpus"
    list=$(find "$seeds" findings -type f -size +0 | LC_ALL=C sort | paste -sd, -)
    local explore=(-runs="$RUNS" -seed="$SEED" -use_cmp=0 -detect_leaks=0 -reload=0)
    if [ -n "$list" ]; then
        printf '%s' "$list" >"$work/seeds.txt"
        explore+=(-seed_inputs=@"$work/seeds.txt")
    fi
    echo "smoke: $target: exploring $RUNS runs, -seed=$SEED"
    set +e
    cargo fuzz run --sanitizer "$SANITIZER" "$target" "$work/corpus" -- \
        "${explore[@]}" "${OPTIONS[@]}" >"$logs/$target-explore.log" 2>&1
    status=$?
    set -e
    if [ "$status" -ne 0 ]; then
        echo "smoke: $target FAILED exploring (status $status, see fuzz/$logs/$target-explore.log, fuzz/artifacts/$target/)"
        grep -E "panicked|SUMMARY|Test unit written" "$logs/$target-explore.log" || true
        tail -n 40 "$logs/$target-explore.log"
        printf 'FAILED (explore)\n%s: explore FAILED\n' "$target" >"$result"
        return
    fi
    local new_units
    new_units=$(sed -nE 's/^stat::new_units_added:[[:space:]]*//p' "$logs/$target-explore.log")
    {
        [ -z "$fail" ] || echo "FAILED ($fail)"
        echo "$target: replayed $n_inputs; $(counters "$logs/$target-explore.log") new: $new_units"
    } >"$result"
}

# Targets run side by side, JOBS at a time: each is its own libFuzzer
# process with its own seed and inputs, so the order they run in, or what
# runs beside them, changes nothing but the wall time.
echo "smoke: ${#targets[@]} targets, $JOBS at a time, -runs=$RUNS -seed=$SEED"
started=$SECONDS
running=0
for target in "${targets[@]}"; do
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    smoke_target "$target" &
    running=$((running + 1))
done
wait

failed=()
summary=()
for target in "${targets[@]}"; do
    result="$scratch/$target.result"
    if [ ! -s "$result" ]; then
        failed+=("$target (no result)")
        summary+=("$target: no result")
        continue
    fi
    verdict=$(head -n 1 "$result")
    if [[ "$verdict" == FAILED* ]]; then
        failed+=("$target ${verdict#FAILED }")
    fi
    summary+=("$(tail -n 1 "$result")")
done

echo
echo "smoke: summary (sanitizer $SANITIZER, -runs=$RUNS, -seed=$SEED)"
printf '  %s\n' "${summary[@]}"
echo "smoke: replay and exploration took $((SECONDS - started)) s"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "smoke: FAILED: ${failed[*]}"
    exit 1
fi
echo "smoke: all ${#targets[@]} targets passed"
