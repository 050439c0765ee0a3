#!/usr/bin/env bash
# scripts/autobahn.sh: run the Autobahn|Testsuite (RFC 6455 conformance) against
# wsio's WebSocket examples, in both roles, and summarise the JSON report.
#
# Usage:
#   scripts/autobahn.sh [server|client|both|setup]      (default: both)
#
#   server  Autobahn `wstest -m fuzzingclient` drives our echo server
#           (AUTOBAHN_SERVER_CMD, default: cargo run --release --example ws_echo
#           -- --port 9001, on ws::Config::default() accepting permessage-deflate).
#           Report: target/autobahn/server/
#   client  Autobahn `wstest -m fuzzingserver` listens on 127.0.0.1:9002 and our
#           client (AUTOBAHN_CLIENT_CMD, default: cargo run --release --example
#           ws_client -- --autobahn ws://127.0.0.1:9002, offering
#           permessage-deflate) runs getCaseCount, every runCase (echoing),
#           then updateReports?agent=wsio.
#           Report: target/autobahn/client/
#   setup   only install the tools (python2.7 + wstest virtualenv), run nothing.
#
# Environment (all optional):
#   AUTOBAHN_CASES          JSON list or comma list of case patterns (default:
#                           1-10, and of permessage-deflate (12.*, 13.*) the
#                           cases of 16-byte, 4 KiB and fragmented 8 KiB
#                           messages of every data set and every offer, plus
#                           128 KiB binary messages: CI's share of the suite,
#                           about a minute per role; wstest matches a pattern
#                           with `*` as a prefix, hence the `$`).
#   AUTOBAHN_WHOLE=1        the whole suite, 1-13 (517 cases per role; about
#                           17 minutes per role on a busy 2-vCPU host): cases
#                           `*` and a run timeout of 3600 s unless
#                           AUTOBAHN_CASES / AUTOBAHN_RUN_TIMEOUT say otherwise.
#                           Last results: docs/autobahn.md.
#   AUTOBAHN_EXCLUDE_CASES  JSON/comma list (default: none)
#   AUTOBAHN_SERVER_CMD     shell command starting the echo server on AUTOBAHN_SERVER_PORT
#   AUTOBAHN_CLIENT_CMD     shell command running the client against AUTOBAHN_CLIENT_PORT
#   AUTOBAHN_SERVER_PORT    default 9001     AUTOBAHN_CLIENT_PORT   default 9002
#   AUTOBAHN_AGENT          agent name (fuzzingclient spec, and the agent the
#                           client-role report must contain); default wsio
#   AUTOBAHN_REPORT_DIR     default <repo>/target/autobahn
#   AUTOBAHN_STARTUP_TIMEOUT seconds to wait for a listening port (default 120)
#   AUTOBAHN_RUN_TIMEOUT    seconds allowed for one role's test run (default 480)
#   AUTOBAHN_STRICT_CLOSE=1 also fail when a case's closing behaviour is FAILED
#   AUTOBAHN_PYTHON2        use this python2.7 interpreter instead of Debian's
#                           /usr/bin/python2.7 (skips the apt step)
#   WSIO_TOOLS              tool cache (default ~/.cache/wsio-tools); the
#                           virtualenv lives in $WSIO_TOOLS/autobahn-venv
#
# Exit status: 0 when every selected role ran, produced a report with the
# expected number of cases, and no case's behaviour is FAILED; non-zero otherwise.
#
# Why Debian bullseye: `wstest` (PyPI autobahntestsuite 25.10.1, built on
# autobahn 0.10.9 / Twisted 19.10) is Python 2.7 code and runs on nothing newer.
# Debian 12 bookworm ships no python2.7 at all; Debian 11 bullseye is the last
# release that has it (2.7.18-8+deb11u1). So on bookworm this script adds
# bullseye as an extra apt source on the same mirror the machine already uses,
# with an apt preferences file that pins every bullseye package to -1 (never
# installed) except the python2.7 packages and the two bullseye-only libraries
# they link against (libssl1.1, libffi7, installable beside bookworm's libssl3 /
# libffi8). Before installing, it simulates the install (apt-get -s) and aborts
# if anything would be upgraded, downgraded or removed, or if any other package
# would come from bullseye. python2.7-dev is needed because wsaccel (pulled in by
# autobahn[accelerate]) has no cp27 wheel and is compiled with gcc.
# The 2.7 virtualenv is made by `virtualenv<20.22` (the last line that can still
# create Python 2.7 environments; it seeds pip 20.3.4), installed with the
# machine's python3 pip into $WSIO_TOOLS/virtualenv-py3 (not into site-packages).
# Every py2.7 dependency is pinned in scripts/autobahn/requirements-py27.txt.
#
# Everything is idempotent: the apt step is skipped when python2.7 and its
# headers are installed, the virtualenv is rebuilt only when missing or when
# requirements-py27.txt changed. Only processes this script started are killed
# (each runs in its own session/process group; trap on EXIT).
set -euo pipefail

ROLE=${1:-both}
case "$ROLE" in
  server|client|both|setup) ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [server|client|both|setup]" >&2; exit 2 ;;
esac

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONF_DIR=$REPO_ROOT/scripts/autobahn
REQ_FILE=$CONF_DIR/requirements-py27.txt
TOOLS=${WSIO_TOOLS:-$HOME/.cache/wsio-tools}
VENV=$TOOLS/autobahn-venv
VENV_HELPER=$TOOLS/virtualenv-py3
PY27=${AUTOBAHN_PYTHON2:-/usr/bin/python2.7}
REPORT_ROOT=${AUTOBAHN_REPORT_DIR:-$REPO_ROOT/target/autobahn}
SERVER_PORT=${AUTOBAHN_SERVER_PORT:-9001}
CLIENT_PORT=${AUTOBAHN_CLIENT_PORT:-9002}
AGENT=${AUTOBAHN_AGENT:-wsio}
DEFAULT_SERVER_CMD="cargo run --release --example ws_echo -- --port $SERVER_PORT"
DEFAULT_CLIENT_CMD="cargo run --release --example ws_client -- --autobahn ws://127.0.0.1:$CLIENT_PORT"
SERVER_CMD=${AUTOBAHN_SERVER_CMD:-$DEFAULT_SERVER_CMD}
CLIENT_CMD=${AUTOBAHN_CLIENT_CMD:-$DEFAULT_CLIENT_CMD}
if [ "${AUTOBAHN_WHOLE:-0}" = 1 ]; then
  DEFAULT_CASES='["*"]'
  DEFAULT_RUN_TIMEOUT=3600
else
  DEFAULT_CASES='["1.*","2.*","3.*","4.*","5.*","6.*","7.*","9.*","10.*","12.*.1$","12.*.5$","12.*.11$","12.2.10","13.*.1$","13.*.5$","13.*.11$"]'
  DEFAULT_RUN_TIMEOUT=480
fi
CASES=${AUTOBAHN_CASES:-$DEFAULT_CASES}
EXCLUDE_CASES=${AUTOBAHN_EXCLUDE_CASES:-'[]'}
STARTUP_TIMEOUT=${AUTOBAHN_STARTUP_TIMEOUT:-120}
RUN_TIMEOUT=${AUTOBAHN_RUN_TIMEOUT:-$DEFAULT_RUN_TIMEOUT}

# Packages allowed to come from bullseye (everything else there is pinned to -1).
BULLSEYE_ALLOWED="python2.7 python2.7-minimal python2.7-dev libpython2.7 libpython2.7-minimal libpython2.7-stdlib libpython2.7-dev libssl1.1 libffi7"
APT_SOURCE_FILE=/etc/apt/sources.list.d/wsio-bullseye.sources
APT_PIN_FILE=/etc/apt/preferences.d/wsio-bullseye-python2

log() { printf '[autobahn] %s\n' "$*" >&2; }
die() { printf '[autobahn] ERROR: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi

# --------------------------------------------------------------------------
# Process bookkeeping: every background command runs under setsid, so its PID
# is also its process-group id; cleanup signals exactly those groups.
# --------------------------------------------------------------------------
PGIDS=()
# shellcheck disable=SC2329  # invoked by the EXIT trap
cleanup() {
  local pid alive
  for pid in "${PGIDS[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for _ in $(seq 1 50); do
    alive=0
    for pid in "${PGIDS[@]}"; do
      if kill -0 -- "-$pid" 2>/dev/null; then alive=1; fi
    done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${PGIDS[@]}"; do
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  PGIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_bg LOGFILE COMMAND: start COMMAND (a shell string) in a new session,
# output to LOGFILE; sets BG_PID.
start_bg() {
  local logfile=$1 cmd=$2
  setsid bash -c "$cmd" >"$logfile" 2>&1 </dev/null &
  BG_PID=$!
  PGIDS+=("$BG_PID")
}

# stop_bg PID: terminate one process group started by start_bg.
stop_bg() {
  local pid=$1
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 -- "-$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local keep=() p
  for p in "${PGIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PGIDS=("${keep[@]+"${keep[@]}"}")
}

port_listening() {
  local port=$1
  if command -v ss >/dev/null 2>&1; then
    [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
  fi
}

# wait_port PORT PID TIMEOUT: wait until PORT listens; fail if PID dies first.
wait_port() {
  local port=$1 pid=$2 timeout=$3 start=$SECONDS
  while ! port_listening "$port"; do
    kill -0 "$pid" 2>/dev/null || return 1
    [ $((SECONDS - start)) -lt "$timeout" ] || return 1
    sleep 0.2
  done
}

# wait_bounded PID TIMEOUT LOGFILE: wait for PID (a start_bg group leader) with a
# deadline, printing wstest progress now and then. Sets WAIT_RC (124 = timeout).
wait_bounded() {
  local pid=$1 timeout=$2 logfile=$3 start=$SECONDS last=$SECONDS n
  while kill -0 "$pid" 2>/dev/null; do
    if [ $((SECONDS - start)) -ge "$timeout" ]; then
      log "timeout after ${timeout}s; stopping"
      stop_bg "$pid"
      WAIT_RC=124
      return
    fi
    if grep -q 'will run 0 test cases' "$logfile" 2>/dev/null; then
      log "wstest selected zero test cases (AUTOBAHN_CASES=$CASES); stopping"
      stop_bg "$pid"
      WAIT_RC=125
      return
    fi
    if [ $((SECONDS - last)) -ge 30 ]; then
      last=$SECONDS
      n=$(grep -c 'Running test case ID' "$logfile" 2>/dev/null || true)
      log "  ... $((SECONDS - start))s, ${n:-0} cases started"
    fi
    sleep 0.5
  done
  WAIT_RC=0
  wait "$pid" || WAIT_RC=$?
  local keep=() p
  for p in "${PGIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PGIDS=("${keep[@]+"${keep[@]}"}")
}

# --------------------------------------------------------------------------
# Tool installation
# --------------------------------------------------------------------------
detect_mirror() {
  if [ -n "${AUTOBAHN_DEBIAN_MIRROR:-}" ]; then echo "$AUTOBAHN_DEBIAN_MIRROR"; return; fi
  python3 - <<'PY'
import glob, re
# deb822 sources: the first URI of a stanza whose Suites lists a plain (non
# -security) Debian suite; then one-line sources.list entries; else the default.
def deb822():
    for path in sorted(glob.glob('/etc/apt/sources.list.d/*.sources')):
        if path.endswith('wsio-bullseye.sources'):
            continue
        try:
            text = open(path).read()
        except OSError:
            continue
        for stanza in re.split(r'\n\s*\n', text):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith('#') or ':' not in line or line[0].isspace():
                    continue
                k, v = line.split(':', 1)
                fields[k.strip().lower()] = v.split()
            if 'deb' not in fields.get('types', []) or 'enabled' in fields and fields['enabled'] == ['no']:
                continue
            uris = fields.get('uris', [])
            suites = fields.get('suites', [])
            if uris and any(s in ('bookworm', 'trixie', 'bullseye', 'stable', 'oldstable') for s in suites) \
                    and '/debian' in uris[0] and 'security' not in uris[0]:
                return uris[0]
def oneline():
    for path in ['/etc/apt/sources.list'] + sorted(glob.glob('/etc/apt/sources.list.d/*.list')):
        try:
            lines = open(path).read().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = re.sub(r'\[[^]]*\]', '', line).split()
            if len(parts) >= 3 and parts[0] == 'deb' and '/debian' in parts[1] \
                    and 'security' not in parts[1] and not parts[2].endswith(('-security', '-updates', '-backports')):
                return parts[1]
print(deb822() or oneline() or 'http://deb.debian.org/debian')
PY
}

python27_ok() {
  "$PY27" -c 'import sys, ssl, os; from distutils.sysconfig import get_python_inc; sys.exit(0 if sys.version_info[:2] == (2, 7) and os.path.exists(os.path.join(get_python_inc(), "Python.h")) else 1)' 2>/dev/null
}

ensure_python27() {
  if python27_ok; then
    log "python2.7 (with headers) present: $PY27"
    return
  fi
  [ -z "${AUTOBAHN_PYTHON2:-}" ] || die "AUTOBAHN_PYTHON2=$PY27 is not a working python2.7 with headers"
  command -v apt-get >/dev/null || die "no python2.7 and no apt-get; set AUTOBAHN_PYTHON2"
  local codename=""
  # shellcheck disable=SC1091
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  local pkgs="python2.7 python2.7-dev"
  command -v gcc >/dev/null || pkgs="$pkgs gcc libc6-dev"

  if [ "$codename" != "bullseye" ]; then
    local mirror
    mirror=$(detect_mirror)
    log "adding Debian bullseye (python2.7 only, pinned) from $mirror"
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [ -f "$keyring" ] || die "missing $keyring (package debian-archive-keyring)"
    printf 'Types: deb\nURIs: %s\nSuites: bullseye\nComponents: main\nSigned-By: %s\n' \
      "$mirror" "$keyring" | "${SUDO[@]}" tee "$APT_SOURCE_FILE" >/dev/null
    {
      echo "# Added by wsio scripts/autobahn.sh: bullseye is used ONLY for python2.7"
      echo "# (needed by the Autobahn testsuite); nothing else may come from it."
      echo "Package: *"
      echo "Pin: release n=bullseye"
      echo "Pin-Priority: -1"
      echo
      echo "Package: $BULLSEYE_ALLOWED"
      echo "Pin: release n=bullseye"
      echo "Pin-Priority: 500"
    } | "${SUDO[@]}" tee "$APT_PIN_FILE" >/dev/null
  fi
  log "apt-get update"
  "${SUDO[@]}" apt-get update -qq >/dev/null || die "apt-get update failed"

  # Dry run first: refuse to touch any already-installed package.
  local sim bad
  # shellcheck disable=SC2086
  sim=$(LC_ALL=C "${SUDO[@]}" apt-get -s install --no-install-recommends $pkgs 2>&1) \
    || { printf '%s\n' "$sim" >&2; die "apt-get -s install failed"; }
  bad=$(printf '%s\n' "$sim" | grep -E '^(Remv|Purg) |^Inst [^ ]+ \[' || true)
  if [ -n "$bad" ]; then
    printf '%s\n' "$bad" >&2
    die "installing python2.7 would upgrade/downgrade/remove the packages above; refusing"
  fi
  local p name
  while read -r p; do
    name=${p%%:*}
    case " $BULLSEYE_ALLOWED " in *" $name "*) ;; *)
      die "package $name would come from bullseye; refusing (pinning broken?)" ;;
    esac
  done < <(printf '%s\n' "$sim" | grep '^Inst ' | grep -E 'Debian:11\.|bullseye' | grep -v ',' | awk '{print $2}')
  log "installing: $(printf '%s\n' "$sim" | awk '/^Inst /{printf "%s ", $2}')"
  mkdir -p "$TOOLS"
  # shellcheck disable=SC2086
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs \
    >"$TOOLS/apt-install.log" 2>&1 \
    || { tail -n 30 "$TOOLS/apt-install.log" >&2; die "apt-get install failed"; }
  python27_ok || die "python2.7 still not usable at $PY27"
}

ensure_wstest() {
  local want have=""
  want=$( { sha256sum "$REQ_FILE"; echo "$PY27"; } | sha256sum | cut -c1-64)
  [ -f "$VENV/.wsio-stamp" ] && have=$(cat "$VENV/.wsio-stamp")
  if [ "$want" = "$have" ] && [ -x "$VENV/bin/wstest" ] && "$VENV/bin/python" -c 'import autobahntestsuite' 2>/dev/null; then
    log "wstest already installed in $VENV"
    return
  fi
  ensure_python27
  mkdir -p "$TOOLS"
  if ! PYTHONPATH="$VENV_HELPER" python3 -c 'import virtualenv, sys; sys.exit(0 if virtualenv.__version__ < "20.22" else 1)' 2>/dev/null; then
    log "installing virtualenv<20.22 into $VENV_HELPER (python3 pip --target)"
    rm -rf "$VENV_HELPER"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check --no-warn-script-location \
      --target "$VENV_HELPER" 'virtualenv<20.22' || die "pip install virtualenv failed"
  fi
  log "creating python2.7 virtualenv $VENV"
  rm -rf "$VENV"
  PYTHONPATH="$VENV_HELPER" python3 -m virtualenv -q --no-periodic-update \
    --app-data "$TOOLS/virtualenv-appdata" -p "$PY27" "$VENV" || die "virtualenv failed"
  if ! "$VENV/bin/python" -m pip --version 2>/dev/null | grep -q '^pip 20\.3\.4 '; then
    "$VENV/bin/python" -m pip install -q 'pip==20.3.4'
  fi
  log "installing autobahntestsuite (scripts/autobahn/requirements-py27.txt)"
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_PYTHON_VERSION_WARNING=1 \
    "$VENV/bin/python" -m pip install -q --no-cache-dir -r "$REQ_FILE" \
    || die "pip install of autobahntestsuite failed"
  "$VENV/bin/wstest" --autobahnversion >/dev/null 2>&1 || die "wstest does not start"
  echo "$want" >"$VENV/.wsio-stamp"
  log "wstest installed: $("$VENV/bin/wstest" --autobahnversion 2>&1 | tr '\n' ' ')"
}

# --------------------------------------------------------------------------
# Spec + summary helpers (python3)
# --------------------------------------------------------------------------
# make_spec TEMPLATE OUT OUTDIR URL [AGENT]
make_spec() {
  CASES="$CASES" EXCLUDE_CASES="$EXCLUDE_CASES" python3 - "$@" <<'PY'
import json, os, sys
template, out, outdir, url = sys.argv[1:5]
agent = sys.argv[5] if len(sys.argv) > 5 else None
def patterns(s):
    s = s.strip()
    if s.startswith('['):
        return [str(x) for x in json.loads(s)]
    return [x.strip() for x in s.split(',') if x.strip()]
spec = json.load(open(template))
spec['outdir'] = outdir
spec['cases'] = patterns(os.environ['CASES'])
spec['exclude-cases'] = patterns(os.environ['EXCLUDE_CASES'])
if 'servers' in spec:
    spec['servers'] = [dict(spec['servers'][0], agent=agent, url=url)]
else:
    spec['url'] = url
json.dump(spec, open(out, 'w'), indent=2)
PY
}

# summarize ROLE INDEX_JSON EXPECTED_CASES AGENT: prints counts, returns non-zero on failure.
summarize() {
  STRICT_CLOSE="${AUTOBAHN_STRICT_CLOSE:-0}" python3 - "$@" <<'PY'
import json, os, sys
role, index, expected, agent = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
strict_close = os.environ.get('STRICT_CLOSE') == '1'
def key(cid):
    return [int(x) if x.isdigit() else x for x in cid.split('.')]
if not os.path.exists(index):
    print('[%s] FAIL: no report at %s' % (role, index)); sys.exit(1)
data = json.load(open(index))
if agent not in data:
    print('[%s] FAIL: agent %r not in report (agents: %s)' % (role, agent, ', '.join(sorted(data)) or 'none'))
    sys.exit(1)
cases = data[agent]
order = ['OK', 'NON-STRICT', 'INFORMATIONAL', 'UNIMPLEMENTED', 'FAILED']
counts = dict((b, 0) for b in order)
for c in cases.values():
    counts[c['behavior']] = counts.get(c['behavior'], 0) + 1
print('[%s] agent=%s cases=%d  %s' % (role, agent, len(cases),
      '  '.join('%s=%d' % (b, n) for b, n in counts.items())))
bad = [(cid, c['behavior']) for cid, c in cases.items() if c['behavior'] != 'OK']
for cid, b in sorted(bad, key=lambda x: key(x[0])):
    print('[%s]   %-8s %s' % (role, cid, b))
close_bad = [(cid, c.get('behaviorClose')) for cid, c in cases.items()
             if c.get('behaviorClose') not in ('OK', 'INFORMATIONAL')]
if close_bad:
    print('[%s] closing behaviour not OK in %d case(s):' % (role, len(close_bad)))
    for cid, b in sorted(close_bad, key=lambda x: key(x[0])):
        print('[%s]   %-8s close=%s' % (role, cid, b))
rc = 0
if len(cases) == 0:
    print('[%s] FAIL: zero cases in report' % role); rc = 1
if expected.isdigit() and int(expected) != len(cases):
    print('[%s] FAIL: expected %s cases, report has %d' % (role, expected, len(cases))); rc = 1
if counts.get('FAILED'):
    print('[%s] FAIL: %d FAILED case(s)' % (role, counts['FAILED'])); rc = 1
if strict_close and any(b == 'FAILED' for _, b in close_bad):
    print('[%s] FAIL: closing behaviour FAILED (AUTOBAHN_STRICT_CLOSE=1)' % role); rc = 1
sys.exit(rc)
PY
}

check_port_free() {
  if port_listening "$1"; then
    die "port $1 is already in use; stop whatever listens there (or set AUTOBAHN_${2}_PORT)"
  fi
}

prebuild() {
  local examples=()
  case "$ROLE" in server|both) [ "$SERVER_CMD" = "$DEFAULT_SERVER_CMD" ] && examples+=(--example ws_echo) ;; esac
  case "$ROLE" in client|both) [ "$CLIENT_CMD" = "$DEFAULT_CLIENT_CMD" ] && examples+=(--example ws_client) ;; esac
  if [ "${#examples[@]}" -gt 0 ]; then
    log "cargo build --release ${examples[*]}"
    (cd "$REPO_ROOT" && cargo build --release "${examples[@]}") || die "cargo build failed"
  fi
}

# --------------------------------------------------------------------------
# Roles
# --------------------------------------------------------------------------
run_server_role() {
  local out=$REPORT_ROOT/server t0=$SECONDS
  log "=== role server: wstest fuzzingclient -> ws://127.0.0.1:$SERVER_PORT"
  check_port_free "$SERVER_PORT" SERVER
  rm -rf "$out"; mkdir -p "$out"
  make_spec "$CONF_DIR/fuzzingclient.json" "$REPORT_ROOT/fuzzingclient.json" "$out" \
    "ws://127.0.0.1:$SERVER_PORT" "$AGENT"
  log "starting testee server: $SERVER_CMD"
  start_bg "$REPORT_ROOT/testee-server.log" "cd '$REPO_ROOT' && $SERVER_CMD"
  local spid=$BG_PID
  if ! wait_port "$SERVER_PORT" "$spid" "$STARTUP_TIMEOUT"; then
    tail -n 30 "$REPORT_ROOT/testee-server.log" >&2 || true
    die "testee server did not listen on $SERVER_PORT within ${STARTUP_TIMEOUT}s"
  fi
  log "running wstest -m fuzzingclient (log: $REPORT_ROOT/wstest-fuzzingclient.log)"
  start_bg "$REPORT_ROOT/wstest-fuzzingclient.log" \
    "cd '$REPORT_ROOT' && PYTHONUNBUFFERED=1 exec '$VENV/bin/wstest' -m fuzzingclient -s '$REPORT_ROOT/fuzzingclient.json'"
  wait_bounded "$BG_PID" "$RUN_TIMEOUT" "$REPORT_ROOT/wstest-fuzzingclient.log"
  local wrc=$WAIT_RC
  if ! kill -0 "$spid" 2>/dev/null; then
    log "WARNING: testee server exited during the run (see $REPORT_ROOT/testee-server.log)"
  fi
  stop_bg "$spid"
  [ "$wrc" -eq 0 ] || { tail -n 20 "$REPORT_ROOT/wstest-fuzzingclient.log" >&2; log "wstest exited with $wrc"; }
  local expected
  expected=$(sed -n 's/.*will run \([0-9]*\) test cases.*/\1/p' "$REPORT_ROOT/wstest-fuzzingclient.log" | head -n1)
  local rc=0
  summarize server "$out/index.json" "${expected:-?}" "$AGENT" || rc=1
  [ "$wrc" -eq 0 ] || rc=1
  log "role server: $((SECONDS - t0))s, report $out/index.html"
  return $rc
}

run_client_role() {
  local out=$REPORT_ROOT/client t0=$SECONDS
  log "=== role client: wstest fuzzingserver on ws://127.0.0.1:$CLIENT_PORT"
  check_port_free "$CLIENT_PORT" CLIENT
  rm -rf "$out"; mkdir -p "$out"
  make_spec "$CONF_DIR/fuzzingserver.json" "$REPORT_ROOT/fuzzingserver.json" "$out" \
    "ws://127.0.0.1:$CLIENT_PORT"
  start_bg "$REPORT_ROOT/wstest-fuzzingserver.log" \
    "cd '$REPORT_ROOT' && PYTHONUNBUFFERED=1 exec '$VENV/bin/wstest' -m fuzzingserver --webport 0 -s '$REPORT_ROOT/fuzzingserver.json'"
  local wpid=$BG_PID
  if ! wait_port "$CLIENT_PORT" "$wpid" "$STARTUP_TIMEOUT"; then
    tail -n 30 "$REPORT_ROOT/wstest-fuzzingserver.log" >&2 || true
    die "wstest fuzzingserver did not listen on $CLIENT_PORT"
  fi
  if grep -q 'will run 0 test cases' "$REPORT_ROOT/wstest-fuzzingserver.log"; then
    die "wstest selected zero test cases (AUTOBAHN_CASES=$CASES)"
  fi
  log "running testee client: $CLIENT_CMD (log: $REPORT_ROOT/testee-client.log)"
  start_bg "$REPORT_ROOT/testee-client.log" "cd '$REPO_ROOT' && $CLIENT_CMD"
  wait_bounded "$BG_PID" "$RUN_TIMEOUT" "$REPORT_ROOT/wstest-fuzzingserver.log"
  local crc=$WAIT_RC
  # updateReports writes the report synchronously; give a straggler a moment.
  for _ in $(seq 1 50); do
    grep -q 'Report generation complete' "$REPORT_ROOT/wstest-fuzzingserver.log" && break
    sleep 0.2
  done
  stop_bg "$wpid"
  [ "$crc" -eq 0 ] || { tail -n 20 "$REPORT_ROOT/testee-client.log" >&2; log "testee client exited with $crc"; }
  local expected
  expected=$(sed -n 's/.*will run \([0-9]*\) test cases.*/\1/p' "$REPORT_ROOT/wstest-fuzzingserver.log" | head -n1)
  local rc=0
  summarize client "$out/index.json" "${expected:-?}" "$AGENT" || rc=1
  [ "$crc" -eq 0 ] || rc=1
  log "role client: $((SECONDS - t0))s, report $out/index.html"
  return $rc
}

# --------------------------------------------------------------------------
ensure_wstest
[ "$ROLE" = setup ] && exit 0
mkdir -p "$REPORT_ROOT"
REPORT_ROOT=$(cd "$REPORT_ROOT" && pwd)
prebuild

status=0
case "$ROLE" in
  server) run_server_role || status=1 ;;
  client) run_client_role || status=1 ;;
  both)   run_server_role || status=1
          run_client_role || status=1 ;;
esac
if [ "$status" -eq 0 ]; then log "PASS ($ROLE)"; else log "FAIL ($ROLE)"; fi
exit "$status"
