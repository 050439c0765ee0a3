#!/usr/bin/env bash
# Runs the official protocol suites (engine.io-protocol and socket.io-protocol
# `test-suite/`) against the `conformance` example, once per driver.
#
#   scripts/conformance.sh [PORT]     (default 3000, which the suites expect)
#
# CONFORMANCE_DRIVERS picks the drivers (default: every one the example has:
# epoll tokio axum smol blocking).
#
# The suites are not published on npm; scripts/protocol-suite.sh takes a local
# copy from EIO_SUITE_DIR / SIO_SUITE_DIR. Without one they exit 3 and this
# script says so: every test of both suites also exists as a Rust test
# (`suite_*` in src/engineio/server/tests.rs and src/socketio/server_tests.rs), which
# `cargo test` runs. Any other failure fails this script.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${1:-3000}"
DRIVERS="${CONFORMANCE_DRIVERS:-epoll tokio axum smol blocking}"

cargo build --release --example conformance

server=""
stop() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
  fi
}
trap stop EXIT

status=0
for driver in $DRIVERS; do
  ./target/release/examples/conformance --port "$PORT" --driver "$driver" &
  server=$!
  up=""
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then up=1; break; fi
    sleep 0.1
  done
  if [ -z "$up" ]; then
    echo "conformance: the $driver driver did not start"; status=1; stop; continue
  fi
  for suite in eio sio; do
    set +e
    scripts/protocol-suite.sh "$suite" "$PORT"
    code=$?
    set -e
    case "$code" in
      0) echo "conformance: $suite suite passed on the $driver driver" ;;
      3) echo "conformance: $suite suite not available here (see above); its cases ran as Rust tests (suite_*)" ;;
      *) echo "conformance: $suite suite FAILED on the $driver driver (exit $code)"; status=1 ;;
    esac
  done
  stop
done
exit "$status"
