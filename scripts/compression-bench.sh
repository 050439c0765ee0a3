#!/usr/bin/env bash
# scripts/compression-bench.sh: end-to-end cost of compression, wsio against
# the official Node packages, measured from outside by
# tests/node/compress-bench.js: bytes on the wire and server CPU per echoed
# 1 KiB JSON message, server memory per idle connection that has used
# compression (BENCHMARKS.md, "Compression").
#
# Usage: scripts/compression-bench.sh [MESSAGES] [IDLE]   (default 5000 200)
#
# Servers, each on a free port, one at a time:
#   ws   wsio   ws_echo (release; permessage-deflate on)
#   ws   node   tests/node/ws-peer.js server --deflate (npm ws, perMessageDeflate: true)
#   sio  wsio   conformance --compress --ping-interval 1000 (release)
#   sio  node   tests/node/sio-compress-check.js server (socket.io, perMessageDeflate: true)
# and each WebSocket pair once more without compression (--no-deflate).
# Every server runs with MALLOC_MMAP_THRESHOLD_=65536, so the compression
# state (made of blocks of 64 KiB and more) is mapped and unmapped on its
# own and the resident memory shows what a server holds, not what its heap
# once grew to. Needs `npm ci --prefix tests/node`. Prints one JSON line
# per run.
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${1:-5000}
IDLE=${2:-200}
export MALLOC_MMAP_THRESHOLD_=65536

cargo build --release --example ws_echo --example conformance >&2

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# start LOG CMD...: runs CMD in the background, waits for READY PORT; sets PORT, PID.
start() {
  local log=$1
  shift
  # Emptied here, not by the child's redirection: a log left by an earlier
  # run must not be read for this one's port.
  : >"$log"
  "$@" >>"$log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  for _ in $(seq 1 100); do
    PORT=$(sed -n 's/^READY \([0-9]*\).*/\1/p' "$log" | head -n1)
    [ -n "$PORT" ] && return
    sleep 0.1
  done
  echo "compression-bench: $* did not start (see $log)" >&2
  exit 1
}

stop() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }

bench() {
  local mode=$1 url=$2
  shift 2
  (cd tests/node && node compress-bench.js "$mode" "$url" --pid "$PID" \
    --messages "$MESSAGES" --idle "$IDLE" "$@")
}

tmp=$(mktemp -d)
for flag in "" --no-deflate; do
  start "$tmp/ws_echo.log" target/release/examples/ws_echo --port 0
  bench ws "ws://127.0.0.1:$PORT/" $flag
  stop
  start "$tmp/ws-peer.log" node tests/node/ws-peer.js server --port 0 --deflate
  bench ws "ws://127.0.0.1:$PORT/" $flag
  stop
done
# A heartbeat of 1 s, so that the idle connections see one within the pause.
start "$tmp/conformance.log" target/release/examples/conformance --port 0 --compress \
  --ping-interval 1000 --ping-timeout 5000
bench sio "http://127.0.0.1:$PORT" --settle 4000
stop
start "$tmp/sio.log" node tests/node/sio-compress-check.js server --port 0
bench sio "http://127.0.0.1:$PORT" --settle 4000
stop
rm -rf "$tmp"
