#!/usr/bin/env bash
# End-to-end load benchmark: wsio's `conformance` example (`wsio`: on its
# epoll driver; `wsio-tokio`: the same machine on `--driver tokio`) side by
# side with socketioxide (benches/peers/socketioxide) and the official Node
# socket.io (benches/peers/node-server.js), all with the same two events and
# a 25 s / 20 s heartbeat, driven by `examples/loadgen.rs` over WebSocket.
#
#   scripts/bench-e2e.sh [--runs N] [--quick] [--shared-cores]
#                        [--only wsio,wsio-tokio,socketioxide,node,floor]
#                        [--hold-servers wsio,wsio-tokio,socketioxide,node,floor]
#                        [--report]
#
# More servers for --only / --hold-servers (scale-out, docs/scaling.md):
# `wsio-w1` and `wsio-w2` (`--driver tokio --workers 1|2`) and
# `socketioxide-mt2` (the peer on tokio's multi-thread runtime, 2 workers;
# it runs a client's event handlers concurrently, so its answers are
# checked with the load generator's `--unordered`: each once, any order).
#
# Each server in turn is started on 127.0.0.1 pinned to CPU 0 (taskset -c 0),
# the load generator on CPU 1 (--shared-cores: both on CPUs 0 and 1, for
# servers of several threads); per run each server is started fresh and
# gets `connect`, `echo` and `fanout`. Then, for the --hold-servers (default
# all four), 10,000 connections are held for 60 s with heartbeats. Prints
# one markdown table (medians of the runs; each wsio/peer ratio is the median
# of the per-run ratios, which cancels drift in the machine's load) for
# BENCHMARKS.md; the raw JSON lines go to target/bench-e2e/results.jsonl
# (--report prints the table again from that file). Every step has a time bound;
# the whole run takes about 16 minutes (--quick: about 3). Exits non-zero
# if any run lost or corrupted a message or dropped a connection.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=3
QUICK=0
REPORT=0
ONLY="wsio,wsio-tokio,socketioxide,node"
HOLD_SERVERS="wsio,wsio-tokio,socketioxide,node"
SERVER_CPUS=0 LOADGEN_CPUS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --report) REPORT=1; shift ;;
    --only) ONLY="$2"; shift 2 ;;
    --hold-servers) HOLD_SERVERS="$2"; shift 2 ;;
    --shared-cores) SERVER_CPUS=0,1 LOADGEN_CPUS=0,1; shift ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "bench-e2e: unknown argument $1" >&2; exit 2 ;;
  esac
done

# Scenario sizes (see examples/loadgen.rs for what each one measures).
CONNS=10000 CONCURRENCY=100
ECHO_CLIENTS=50 ECHO_DEPTH=8 DURATION=10 SIZE=64
FANOUT_RECEIVERS=1000 FANOUT_WINDOW=4
HOLD_CONNS=10000 HOLD_SECS=60
if [ "$QUICK" = 1 ]; then
  RUNS=1 CONNS=1000 DURATION=2 HOLD_CONNS=1000 HOLD_SECS=5
fi

OUT=target/bench-e2e
RESULTS="$OUT/results.jsonl"
if [ "$REPORT" = 0 ]; then

# --- tools -----------------------------------------------------------------
if ! command -v taskset >/dev/null; then
  echo "bench-e2e: installing util-linux (taskset)"
  apt-get install -y util-linux >/dev/null
fi
command -v node >/dev/null || { echo "bench-e2e: node is missing (Node 20: apt-get install nodejs npm)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "bench-e2e: python3 is missing" >&2; exit 1; }
if [ ! -d tests/node/node_modules/socket.io ]; then
  echo "bench-e2e: installing the pinned Node peers (npm ci --prefix tests/node)"
  npm ci --prefix tests/node >/dev/null
fi
# The load generator and each server hold HOLD_CONNS sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((HOLD_CONNS + 500)) ]; then
  echo "bench-e2e: open-file limit $(ulimit -n) is below $((HOLD_CONNS + 500)); raise it" >&2
  exit 1
fi

echo "bench-e2e: building (release)" >&2
cargo build --release --example conformance --example loadgen >&2
case ",$ONLY,$HOLD_SERVERS," in
  *,socketioxide,* | *,socketioxide-mt2,*) (cd benches/peers/socketioxide && cargo build --release --locked >&2) ;;
esac
case ",$ONLY,$HOLD_SERVERS," in
  *,floor,*) (cd benches/peers/floor && cargo build --release --locked >&2) ;;
esac
LOADGEN=target/release/examples/loadgen

mkdir -p "$OUT"
: >"$RESULTS"

# --- servers ---------------------------------------------------------------
SERVER_PID=""
SERVER_PORT=""
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM

start_server() {
  local name="$1" log="$OUT/$1.log"
  case "$name" in
    wsio) set -- target/release/examples/conformance --driver epoll --ping-interval 25000 --ping-timeout 20000 ;;
    wsio-tokio) set -- target/release/examples/conformance --driver tokio --ping-interval 25000 --ping-timeout 20000 ;;
    wsio-w1 | wsio-w2) set -- target/release/examples/conformance --driver tokio --workers "${name#wsio-w}" \
      --ping-interval 25000 --ping-timeout 20000 ;;
    socketioxide) set -- benches/peers/socketioxide/target/release/socketioxide-peer ;;
    socketioxide-mt2) set -- benches/peers/socketioxide/target/release/socketioxide-peer --threads 2 ;;
    node) set -- node benches/peers/node-server.js ;;
    # Not in the defaults: the same checks answered with precomputed frames
    # on the `epoll` driver's loop, no HTTP parser, no Engine.IO/Socket.IO
    # machine (benches/peers/floor).
    floor) set -- benches/peers/floor/target/release/floor-peer ;;
  esac
  : >"$log"
  taskset -c "$SERVER_CPUS" "$@" --port 0 >"$log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 200); do
    if grep -q '^READY ' "$log"; then
      SERVER_PORT=$(awk '/^READY /{print $2; exit}' "$log")
      return 0
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench-e2e: $name did not start; its log:" >&2
  cat "$log" >&2
  exit 1
}

# loadgen SERVER RUN SCENARIO ARGS...: one run, its JSON line tagged and kept.
loadgen() {
  local name="$1" run="$2" scenario="$3"
  shift 3
  [ "$name" != socketioxide-mt2 ] || set -- "$@" --unordered
  local line
  line=$(timeout 300 taskset -c "$LOADGEN_CPUS" "$LOADGEN" "$scenario" --port "$SERVER_PORT" \
    --server-pid "$SERVER_PID" "$@") || true
  if [ -z "$line" ]; then
    line="{\"scenario\":\"$scenario\",\"ok\":false,\"error\":\"no output\"}"
  fi
  echo "{\"server\":\"$name\",\"run\":$run,\"result\":$line}" >>"$RESULTS"
  echo "  $name run $run $scenario: $(echo "$line" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("ok" if d.get("ok") else "NOT OK", {k: d[k] for k in ("connects_per_s","msgs_per_s","deliveries_per_s","server_cpu_us_per_connect","server_cpu_us_per_msg","server_cpu_us_per_delivery","server_rss_per_conn_kib","lost","corrupted","reordered","dropped","error") if k in d})')" >&2
}

IFS=, read -r -a SERVERS <<<"$ONLY"
IFS=, read -r -a HOLDERS <<<"$HOLD_SERVERS"
for run in $(seq 1 "$RUNS"); do
  for name in "${SERVERS[@]}"; do
    start_server "$name"
    loadgen "$name" "$run" connect --conns "$CONNS" --concurrency "$CONCURRENCY" --size "$SIZE"
    sleep 1
    loadgen "$name" "$run" echo --clients "$ECHO_CLIENTS" --depth "$ECHO_DEPTH" \
      --duration "$DURATION" --size "$SIZE"
    sleep 1
    loadgen "$name" "$run" fanout --receivers "$FANOUT_RECEIVERS" --window "$FANOUT_WINDOW" \
      --duration "$DURATION" --size "$SIZE"
    stop_server
    sleep 1
  done
done
for name in "${HOLDERS[@]}"; do
  [ -n "$name" ] || continue
  start_server "$name"
  loadgen "$name" 0 connect --conns "$HOLD_CONNS" --concurrency 200 --hold "$HOLD_SECS" --size "$SIZE"
  stop_server
  sleep 2
done
fi

# --- the table ---------------------------------------------------------------
python3 - "$RESULTS" "$SERVER_CPUS" "$LOADGEN_CPUS" <<'PY'
import json, os, statistics, subprocess, sys, datetime, platform

path = sys.argv[1]
rows = [json.loads(l) for l in open(path)]
runs = max([r["run"] for r in rows] + [0])
servers = []
for r in rows:
    if r["server"] not in servers:
        servers.append(r["server"])

def med(server, scenario, key):
    vals = [r["result"].get(key) for r in rows
            if r["server"] == server and r["run"] > 0 and r["result"].get("scenario") == scenario]
    vals = [v for v in vals if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None

def ratio(server, other, scenario, key):
    """The median over runs of server's value / other's value in the same run."""
    rs = []
    for run in range(1, runs + 1):
        a = [r["result"].get(key) for r in rows if r["server"] == server and r["run"] == run
             and r["result"].get("scenario") == scenario]
        b = [r["result"].get(key) for r in rows if r["server"] == other and r["run"] == run
             and r["result"].get("scenario") == scenario]
        if a and b and isinstance(a[0], (int, float)) and isinstance(b[0], (int, float)) and b[0]:
            rs.append(a[0] / b[0])
    return statistics.median(rs) if rs else None

def hold(server, key):
    for r in rows:
        if r["server"] == server and r["run"] == 0:
            return r["result"].get(key)
    return None

metrics = [
    ("connect", "connects_per_s", "connects/s", "{:,.0f}", "higher"),
    ("connect", "connect_p50_us", "connect latency p50 (ms)", "ms", "lower"),
    ("connect", "connect_p99_us", "connect latency p99 (ms)", "ms", "lower"),
    ("connect", "server_cpu_us_per_connect", "server CPU per connect (µs)", "{:,.1f}", "lower"),
    ("connect", "server_rss_per_conn_kib", "server RSS per idle connection (KiB)", "{:,.1f}", "lower"),
    ("echo", "msgs_per_s", "echo msgs/s", "{:,.0f}", "higher"),
    ("echo", "rtt_p50_us", "echo round trip p50 (ms)", "ms", "lower"),
    ("echo", "rtt_p99_us", "echo round trip p99 (ms)", "ms", "lower"),
    ("echo", "server_cpu_us_per_msg", "server CPU per echoed message (µs)", "{:,.2f}", "lower"),
    ("fanout", "deliveries_per_s", "fanout deliveries/s", "{:,.0f}", "higher"),
    ("fanout", "latency_p50_us", "fanout delivery latency p50 (ms)", "ms", "lower"),
    ("fanout", "latency_p99_us", "fanout delivery latency p99 (ms)", "ms", "lower"),
    ("fanout", "server_cpu_us_per_delivery", "server CPU per delivery (µs)", "{:,.2f}", "lower"),
]

def fmt(v, f):
    if v is None:
        return "–"
    if f == "ms":
        return "{:,.2f}".format(v / 1000.0)
    return f.format(v)

others = [s for s in servers if s != "wsio"]
head = ["", *servers] + ([f"wsio / {o}" for o in others] if "wsio" in servers else [])
out = []
model = "unknown"
try:
    for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if l.startswith("Model name:"):
            model = l.split(":", 1)[1].strip()
except OSError:
    pass
cpus = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
mem = "?"
for l in open("/proc/meminfo"):
    if l.startswith("MemTotal:"):
        mem = "%.0f GiB" % (int(l.split()[1]) / 1024 / 1024)
ran = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)
out.append(f"Date: {ran:%Y-%m-%d %H:%M} UTC (end of the run). "
           f"Machine: {model}, {cpus} CPUs, {mem}, Linux {platform.release()}. "
           f"Medians of {runs} run(s) (ratios: median of the per-run ratios); "
           f"server on CPU {sys.argv[2]}, load generator on CPU {sys.argv[3]}.")
out.append("")
out.append("| " + " | ".join(head) + " |")
out.append("|" + "---|" * len(head))
for scen, key, label, f, _ in metrics:
    vals = [med(s, scen, key) for s in servers]
    cells = [fmt(v, f) for v in vals]
    if "wsio" in servers:
        for o in others:
            q = ratio("wsio", o, scen, key)
            cells.append("{:.2f}x".format(q) if q is not None else "–")
    out.append(f"| {label} | " + " | ".join(cells) + " |")

# Losses over every run.
bad = []
for s in servers:
    lost = sum(r["result"].get("lost", 0) or 0 for r in rows if r["server"] == s)
    corrupted = sum(r["result"].get("corrupted", 0) or 0 for r in rows if r["server"] == s)
    dropped = sum(r["result"].get("dropped", 0) or 0 for r in rows if r["server"] == s)
    notok = sum(1 for r in rows if r["server"] == s and not r["result"].get("ok"))
    bad.append((s, lost, corrupted, dropped, notok))
cells = [f"{l} / {c} / {d}" + ("" if n == 0 else f" ({n} runs not ok)") for _, l, c, d, n in bad]
out.append("| lost / corrupted / dropped (all runs) | " + " | ".join(cells)
           + (" |" + " |" * len(others) if "wsio" in servers else " |"))

held = [s for s in servers if hold(s, "conns") is not None]
if held:
    out.append("")
    hconns = hold(held[0], "conns")
    hsecs = hold(held[0], "hold_s")
    out.append(f"{hconns:,} connections held {hsecs} s (heartbeat 25 s / 20 s), then one message each:")
    out.append("")
    out.append("| | " + " | ".join(held) + " |")
    out.append("|" + "---|" * (len(held) + 1))
    for key, label, f in [
        ("connected", "connected", "{:,}"),
        ("connects_per_s", "connects/s", "{:,.0f}"),
        ("server_rss_per_conn_kib", "server RSS per connection after connecting (KiB)", "{:,.2f}"),
        ("server_rss_per_conn_after_hold_kib", f"server RSS per connection after {hsecs} s (KiB)", "{:,.2f}"),
        ("server_rss_after_hold_kib", "server RSS at the end (KiB)", "{:,}"),
        ("pongs", "heartbeats answered", "{:,}"),
        ("dropped", "dropped", "{:,}"),
        ("checked", "answered the final message", "{:,}"),
        ("lost", "lost", "{:,}"),
    ]:
        out.append(f"| {label} | " + " | ".join(fmt(hold(s, key), f) for s in held) + " |")
print("\n".join(out))
ok = all(l == 0 and c == 0 and d == 0 and n == 0 for _, l, c, d, n in bad)
sys.exit(0 if ok else 1)
PY
