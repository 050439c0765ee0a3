#!/usr/bin/env bash
# Runs every test of the crate on a fresh machine: installs the pinned real
# peers first (the official npm packages from tests/node/package-lock.json
# and examples/chat/package-lock.json, Debian's Chromium for the browser
# test and redis-server for the cluster tests, Python websockets from tests/python/requirements.txt), then `cargo test`
# (unit, doc, cross-layer, simulation and interop tests, for the core and the
# adapter crates). Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "test.sh: Node.js 20 and npm are required (the interop peers are npm packages)" >&2
  exit 2
fi
stamp=tests/node/node_modules/.wsio-lock
if [ ! -f "$stamp" ] || ! cmp -s tests/node/package-lock.json "$stamp"; then
  echo "test.sh: npm ci --prefix tests/node" >&2
  npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
  cp tests/node/package-lock.json "$stamp"
fi

stamp=examples/chat/node_modules/.wsio-lock
if [ ! -f "$stamp" ] || ! cmp -s examples/chat/package-lock.json "$stamp"; then
  echo "test.sh: npm ci --prefix examples/chat (the chat page's official client)" >&2
  npm ci --prefix examples/chat --no-audit --no-fund --loglevel=error
  cp examples/chat/package-lock.json "$stamp"
fi

# The browser test drives Debian's Chromium.
if ! command -v chromium >/dev/null; then
  echo "test.sh: installing chromium (apt)" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium
fi

# The cluster tests start Debian's redis-server (tests/cluster_redis.rs).
if ! command -v redis-server >/dev/null; then
  echo "test.sh: installing redis-server (apt)" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q redis-server
fi

py=target/py-venv/bin/python
if ! "$py" -c 'import websockets' 2>/dev/null; then
  echo "test.sh: creating target/py-venv with tests/python/requirements.txt" >&2
  python3 -m venv target/py-venv
  target/py-venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi
export WSIO_PYTHON="$PWD/$py"

# The whole workspace: the core and its runtime adapters (adapters/*).
cargo test --workspace "$@"
