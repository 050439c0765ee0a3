#!/usr/bin/env bash
# Runs the official protocol suites (engine.io-protocol and socket.io-protocol
# `test-suite/`) against the `conformance` example.
#
#   scripts/conformance.sh [PORT]     (default 3000, which the suites expect)
#
# The suites are not published on npm; scripts/{eio,sio}-suite.sh take a local
# copy from EIO_SUITE_DIR / SIO_SUITE_DIR. Without one they exit 3 and this
# script says so: every test of both suites also exists as a Rust test
# (`suite_*` in src/engineio/server/tests.rs and src/socketio/server_tests.rs), which
# `cargo test` runs. Any other failure fails this script.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${1:-3000}"

cargo build --release --example conformance
./target/release/examples/conformance --port "$PORT" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
  sleep 0.1
done

status=0
for suite in eio sio; do
  set +e
  "scripts/$suite-suite.sh" "$PORT"
  code=$?
  set -e
  case "$code" in
    0) echo "conformance: $suite suite passed" ;;
    3) echo "conformance: $suite suite not available here (see above); its cases ran as Rust tests (suite_*)" ;;
    *) echo "conformance: $suite suite FAILED (exit $code)"; status=1 ;;
  esac
done
exit "$status"
