#!/usr/bin/env bash
# Run an official protocol test suite (the `test-suite/` folder of
# socketio/engine.io-protocol or socketio/socket.io-protocol) against an
# already-running server.
#
#   scripts/protocol-suite.sh eio|sio [PORT]          (default 3000)
#
# The server must listen on 127.0.0.1:PORT and serve /engine.io/ (eio) or
# /socket.io/ (sio) with pingInterval 300, pingTimeout 200, maxPayload 1000000
# and CORS "*" (the `conformance` example, or tests/node/sio-server.js).
#
# Where the suite comes from, first match wins (X is EIO or SIO):
#   X_SUITE_NPM  an npm package spec (name@version or tarball) that ships the
#                suite. None is published on the npm registry today, so this
#                is empty by default and nothing is looked up.
#   X_SUITE_DIR  a local copy: either the protocol repository's checkout or
#                its test-suite/ folder (must contain test-suite.js).
# If neither gives a suite, the script prints why and exits with code 3, so CI
# can fall back to the project's own equivalent cases.
#
# Other knobs: X_SUITE_HOST (default 127.0.0.1), X_SUITE_REPORTER (mocha
# reporter, default spec), X_SUITE_KEEP=1 keeps the temporary directory,
# X_SUITE_TIMEOUT (seconds for the whole run, default 300).
#
# Exit codes: 0 all tests passed; 1 a test failed or the run broke;
# 2 bad usage or server not reachable; 3 suite not available;
# 4 installing the suite's npm dependencies failed.
set -euo pipefail

case "${1:-}" in
  eio) P=EIO PROTOCOL=Engine.IO REPO=engine.io-protocol MOUNT=/engine.io/ ;;
  sio) P=SIO PROTOCOL=Socket.IO REPO=socket.io-protocol MOUNT=/socket.io/ ;;
  *) echo "usage: $0 eio|sio [PORT]" >&2; exit 2 ;;
esac
NAME="$1-suite"
PORT="${2:-3000}"
# X_SUITE_* of the chosen suite (empty when unset).
knob() { local v="${P}_SUITE_$1"; printf '%s' "${!v:-}"; }
HOST="$(knob HOST)"; HOST="${HOST:-127.0.0.1}"
REPORTER="$(knob REPORTER)"; REPORTER="${REPORTER:-spec}"
RUN_TIMEOUT="$(knob TIMEOUT)"; RUN_TIMEOUT="${RUN_TIMEOUT:-300}"
SUITE_NPM="$(knob NPM)"
SUITE_DIR="$(knob DIR)"
# The suite's own lock file pins these; used only when the copy has no lock.
PINNED_DEPS=(mocha@9.2.1 chai@4.3.6 chai-string@1.5.0 node-fetch@3.2.0 ws@8.5.0)

say() { printf '%s: %s\n' "$NAME" "$*" >&2; }

case "$PORT" in
  ''|*[!0-9]*) say "usage: $0 eio|sio [PORT]"; exit 2 ;;
esac
for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || { say "$tool is required"; exit 2; }
done

if ! (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
  say "no server listening on $HOST:$PORT (start it first)"
  exit 2
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/$NAME.XXXXXX")"
# shellcheck disable=SC2317  # called through the EXIT trap
cleanup() {
  if [ "$(knob KEEP)" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
SUITE="$WORK/suite"

# --- 1. obtain the suite -----------------------------------------------------
obtained=""
if [ -n "$SUITE_NPM" ]; then
  say "fetching $SUITE_NPM from the npm registry"
  if (cd "$WORK" && npm pack --silent "$SUITE_NPM" >pack.out 2>pack.err); then
    tarball="$WORK/$(tail -n1 "$WORK/pack.out")"
    mkdir -p "$WORK/pkg"
    tar -xzf "$tarball" -C "$WORK/pkg"
    for cand in "$WORK/pkg/package/test-suite" "$WORK/pkg/package"; do
      if [ -f "$cand/test-suite.js" ]; then cp -R "$cand" "$SUITE"; obtained="npm:$SUITE_NPM"; break; fi
    done
    [ -n "$obtained" ] || say "$SUITE_NPM holds no test-suite.js"
  else
    say "npm pack $SUITE_NPM failed: $(tail -n1 "$WORK/pack.err" 2>/dev/null)"
  fi
fi
if [ -z "$obtained" ] && [ -n "$SUITE_DIR" ]; then
  for cand in "$SUITE_DIR/test-suite" "$SUITE_DIR"; do
    if [ -f "$cand/test-suite.js" ]; then
      mkdir -p "$SUITE"
      # the suite's own files only, never a node_modules folder
      (cd "$cand" && find . -maxdepth 1 -type f -exec cp {} "$SUITE/" \;)
      obtained="dir:$cand"
      break
    fi
  done
  [ -n "$obtained" ] || say "${P}_SUITE_DIR=$SUITE_DIR holds no test-suite.js"
fi
if [ -z "$obtained" ]; then
  say "the official $PROTOCOL test suite is not available:"
  say "  it is not published on the npm registry; set ${P}_SUITE_DIR to a local"
  say "  copy of socketio/$REPO (or its test-suite/ folder)."
  say "SKIPPED (exit 3): use the project's own equivalent cases instead"
  exit 3
fi
say "suite from $obtained"

# --- 2. install its dependencies (pinned) ---------------------------------------
[ -f "$SUITE/package.json" ] || printf '{"name":"%s","private":true,"type":"module"}\n' "$NAME" >"$SUITE/package.json"
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
if [ -f "$SUITE/package-lock.json" ]; then
  install=(npm ci --no-audit --no-fund --loglevel=error)
else
  install=(npm install --no-audit --no-fund --loglevel=error --no-save "${PINNED_DEPS[@]}")
fi
if ! (cd "$SUITE" && "${install[@]}") >"$WORK/install.log" 2>&1; then
  cat "$WORK/install.log" >&2
  say "installing the suite's dependencies failed"
  exit 4
fi

# --- 3. point it at our server ------------------------------------------------------
# The suite hard-codes http://localhost:3000; only that URL is changed.
if ! grep -q 'http://localhost:3000' "$SUITE/test-suite.js"; then
  say "test-suite.js has no http://localhost:3000 URL to patch; running it unchanged"
fi
sed -i "s#http://localhost:3000#http://$HOST:$PORT#g" "$SUITE/test-suite.js"

# --- 4. run it ------------------------------------------------------------------------
say "running against http://$HOST:$PORT$MOUNT"
set +e
(cd "$SUITE" && timeout "$RUN_TIMEOUT" node node_modules/mocha/bin/mocha --exit \
  --reporter "$REPORTER" test-suite.js) 2>&1 | tee "$WORK/mocha.log"
status=${PIPESTATUS[0]}
set -e

passing=$(sed -n 's/^ *\([0-9][0-9]*\) passing.*/\1/p' "$WORK/mocha.log" | tail -n1)
failing=$(sed -n 's/^ *\([0-9][0-9]*\) failing.*/\1/p' "$WORK/mocha.log" | tail -n1)
echo "$NAME: ${passing:-0} passed, ${failing:-0} failed"
if [ "$status" -eq 124 ]; then say "timed out after ${RUN_TIMEOUT}s"; fi
if [ "$status" -ne 0 ] || [ -z "$passing" ] || [ "${failing:-0}" != 0 ]; then
  exit 1
fi
exit 0
