#!/usr/bin/env bash
# Run the official Engine.IO protocol test suite (the `test-suite/` folder of
# socketio/engine.io-protocol) against an already-running server.
#
#   scripts/eio-suite.sh [PORT]          (default 3000)
#
# The server must listen on 127.0.0.1:PORT and serve a raw Engine.IO echo on
# /engine.io/ with pingInterval 300, pingTimeout 200, maxPayload 1000000 and
# CORS "*" (the `conformance` example, or tests/node/sio-server.js).
#
# Where the suite comes from, first match wins:
#   EIO_SUITE_NPM  an npm package spec (name@version or tarball) that ships the
#                  suite. None is published on the npm registry today, so this
#                  is empty by default and nothing is looked up.
#   EIO_SUITE_DIR  a local copy: either the engine.io-protocol checkout or its
#                  test-suite/ folder (must contain test-suite.js).
# If neither gives a suite, the script prints why and exits with code 3, so CI
# can fall back to the project's own equivalent cases.
#
# Other knobs: EIO_SUITE_HOST (default 127.0.0.1), EIO_SUITE_REPORTER (mocha
# reporter, default spec), EIO_SUITE_KEEP=1 keeps the temporary directory,
# EIO_SUITE_TIMEOUT (seconds for the whole run, default 300).
#
# Exit codes: 0 all tests passed; 1 a test failed or the run broke;
# 2 bad usage or server not reachable; 3 suite not available;
# 4 installing the suite's npm dependencies failed.
set -euo pipefail

NAME="eio-suite"
PORT="${1:-3000}"
HOST="${EIO_SUITE_HOST:-127.0.0.1}"
REPORTER="${EIO_SUITE_REPORTER:-spec}"
RUN_TIMEOUT="${EIO_SUITE_TIMEOUT:-300}"
# The suite's own lock file pins these; used only when the copy has no lock.
PINNED_DEPS=(mocha@9.2.1 chai@4.3.6 chai-string@1.5.0 node-fetch@3.2.0 ws@8.5.0)

say() { printf '%s: %s\n' "$NAME" "$*" >&2; }

case "$PORT" in
  ''|*[!0-9]*) say "usage: $0 [PORT]"; exit 2 ;;
esac
for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || { say "$tool is required"; exit 2; }
done

if ! (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
  say "no server listening on $HOST:$PORT (start it first)"
  exit 2
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/eio-suite.XXXXXX")"
# shellcheck disable=SC2317  # called through the EXIT trap
cleanup() {
  if [ "${EIO_SUITE_KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
SUITE="$WORK/suite"

# --- 1. obtain the suite -----------------------------------------------------
obtained=""
if [ -n "${EIO_SUITE_NPM:-}" ]; then
  say "fetching $EIO_SUITE_NPM from the npm registry"
  if (cd "$WORK" && npm pack --silent "$EIO_SUITE_NPM" >pack.out 2>pack.err); then
    tarball="$WORK/$(tail -n1 "$WORK/pack.out")"
    mkdir -p "$WORK/pkg"
    tar -xzf "$tarball" -C "$WORK/pkg"
    for cand in "$WORK/pkg/package/test-suite" "$WORK/pkg/package"; do
      if [ -f "$cand/test-suite.js" ]; then cp -R "$cand" "$SUITE"; obtained="npm:$EIO_SUITE_NPM"; break; fi
    done
    [ -n "$obtained" ] || say "$EIO_SUITE_NPM holds no test-suite.js"
  else
    say "npm pack $EIO_SUITE_NPM failed: $(tail -n1 "$WORK/pack.err" 2>/dev/null)"
  fi
fi
if [ -z "$obtained" ] && [ -n "${EIO_SUITE_DIR:-}" ]; then
  for cand in "$EIO_SUITE_DIR/test-suite" "$EIO_SUITE_DIR"; do
    if [ -f "$cand/test-suite.js" ]; then
      mkdir -p "$SUITE"
      # the suite's own files only, never a node_modules folder
      (cd "$cand" && find . -maxdepth 1 -type f -exec cp {} "$SUITE/" \;)
      obtained="dir:$cand"
      break
    fi
  done
  [ -n "$obtained" ] || say "EIO_SUITE_DIR=$EIO_SUITE_DIR holds no test-suite.js"
fi
if [ -z "$obtained" ]; then
  say "the official Engine.IO test suite is not available:"
  say "  it is not published on the npm registry; set EIO_SUITE_DIR to a local"
  say "  copy of socketio/engine.io-protocol (or its test-suite/ folder)."
  say "SKIPPED (exit 3): use the project's own equivalent cases instead"
  exit 3
fi
say "suite from $obtained"

# --- 2. install its dependencies (pinned) ---------------------------------------
[ -f "$SUITE/package.json" ] || printf '{"name":"eio-suite","private":true,"type":"module"}\n' >"$SUITE/package.json"
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
say "running against http://$HOST:$PORT/engine.io/"
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
