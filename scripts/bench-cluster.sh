#!/usr/bin/env bash
# Cross-node fanout through Redis: wsio nodes (`conformance --driver tokio
# --redis URL --node-name a|b`) side by side with Node nodes
# (benches/peers/node-server.js --redis URL: socket.io 4.8.4 with
# @socket.io/redis-adapter 8.3.0), driven by `examples/loadgen.rs fanout`.
#
#   scripts/bench-cluster.sh [--runs N] [--only wsio,node] [--receivers 1000]
#                            [--window 4] [--duration 5] [--shared-cores] [--report]
#   scripts/bench-cluster.sh --redis-fanout 2,10,100
#
# Per run and kind, a fresh `redis-server` on a free loopback port (no
# persistence; stopped by its PID) and two topologies, each on fresh nodes:
#   1node: one node joined to Redis, every socket on it;
#   2node: two nodes behind the Redis, the receivers spread over both
#          (every other socket on node b), the sender on node a: each
#          broadcast is delivered on a, published once, received by b
#          from Redis and delivered there.
#   idle:  two nodes, 10 sockets, all on node a: node b's CPU per
#          broadcast is what receiving one costs a node that has no socket
#          for it (every node pays it for every broadcast of the cluster).
# The nodes are pinned to CPU 0, the load generator and Redis to CPU 1
# (--shared-cores: everything on CPUs 0 and 1). Reported: deliveries/s,
# server CPU per delivery summed over the nodes (utime+stime of every
# thread), Redis CPU per broadcast apart. Raw JSON lines go to
# target/bench-cluster/results.jsonl. Exits non-zero if a delivery was lost
# or corrupted.
#
# --redis-fanout K,...: Redis alone, the input of the many-node model
# (docs/scaling.md): K subscriber connections (the nodes) on one Redis, a
# publisher pipelining 150-byte PUBLISHes to `socket.io#/#` (a broadcast's
# size), and Redis's CPU per publish and per message delivered to a
# subscriber, with the redis-adapter's `PSUBSCRIBE socket.io#/#*`, a plain
# `SUBSCRIBE`, and the sharded adapter's `SSUBSCRIBE`/`SPUBLISH`. Redis on
# CPU 1, the Python clients on CPU 0.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=1
ONLY="wsio,node"
RECEIVERS=1000 WINDOW=4 DURATION=5 SIZE=64
NODE_CPUS=0 LOADGEN_CPUS=1
REPORT=0
REDIS_FANOUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    --receivers) RECEIVERS="$2"; shift 2 ;;
    --window) WINDOW="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --shared-cores) NODE_CPUS=0,1 LOADGEN_CPUS=0,1; shift ;;
    --report) REPORT=1; shift ;;
    --redis-fanout) REDIS_FANOUT="$2"; shift 2 ;;
    -h | --help) sed -n '2,35p' "$0"; exit 0 ;;
    *) echo "bench-cluster: unknown argument $1" >&2; exit 2 ;;
  esac
done

OUT=target/bench-cluster
RESULTS="$OUT/results.jsonl"
if [ -n "$REDIS_FANOUT" ]; then
  command -v redis-server >/dev/null || { echo "bench-cluster: redis-server is missing" >&2; exit 1; }
  mkdir -p "$OUT"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  taskset -c 1 redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no --loglevel warning >"$OUT/redis.log" 2>&1 &
  rpid=$!
  trap 'kill "$rpid" 2>/dev/null || true' EXIT
  sleep 0.5
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%d %H:%M') UTC" >&2
  IFS=, read -r -a KS <<<"$REDIS_FANOUT"
  for k in "${KS[@]}"; do
    for mode in psubscribe subscribe ssubscribe; do
      taskset -c 0 python3 - "$port" "$rpid" "$k" "$mode" <<'PY'
import json, selectors, socket, sys, threading, time

def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / 100.0

def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)

port, pid, k, mode = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
m = max(20_000, 2_000_000 // k) // 100 * 100
channel = b"socket.io#/#"
payload = bytes((i * 7 + 3) % 26 + 97 for i in range(150))
sub_cmd, push, pub_cmd = {
    "psubscribe": (resp(b"PSUBSCRIBE", channel + b"*"), resp(b"pmessage", channel + b"*", channel, payload), b"PUBLISH"),
    "subscribe": (resp(b"SUBSCRIBE", channel), resp(b"message", channel, payload), b"PUBLISH"),
    "ssubscribe": (resp(b"SSUBSCRIBE", channel), resp(b"smessage", channel, payload), b"SPUBLISH"),
}[mode]
subs = []
for _ in range(k):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(sub_cmd)
    s.recv(4096)
    s.setblocking(False)
    subs.append(s)
want = len(push) * m * k
got = [0]

def reader():
    sel = selectors.DefaultSelector()
    for s in subs:
        sel.register(s, selectors.EVENT_READ)
    limit = time.time() + 120
    while got[0] < want and time.time() < limit:
        for key, _ in sel.select(timeout=1):
            try:
                got[0] += len(key.fileobj.recv(1 << 20))
            except BlockingIOError:
                pass

pub = socket.create_connection(("127.0.0.1", port))
batch = resp(pub_cmd, channel, payload) * 100
c0, t0 = cpu(pid), time.time()
th = threading.Thread(target=reader)
th.start()
for _ in range(m // 100):
    pub.sendall(batch)
    buf = b""
    while buf.count(b"\r\n") < 100:
        buf += pub.recv(65536)
th.join()
wall, used = time.time() - t0, cpu(pid) - c0
print(json.dumps({"mode": mode, "subscribers": k, "publishes": m, "size": 150,
                  "complete": got[0] >= want, "wall_s": round(wall, 3),
                  "publishes_per_s": round(m / wall),
                  "redis_cpu_s": round(used, 3),
                  "redis_cpu_us_per_publish": round(used * 1e6 / m, 2),
                  "redis_cpu_us_per_delivery": round(used * 1e6 / m / k, 3)}))
PY
    done
  done | tee "$OUT/redis-fanout.jsonl"
  exit 0
fi
if [ "$REPORT" = 0 ]; then

command -v redis-server >/dev/null || {
  echo "bench-cluster: redis-server is missing (apt-get install -y redis-server)" >&2
  exit 1
}
command -v taskset >/dev/null || { echo "bench-cluster: taskset is missing (util-linux)" >&2; exit 1; }
case ",$ONLY," in
  *,node,*)
    command -v node >/dev/null || { echo "bench-cluster: node is missing" >&2; exit 1; }
    if [ ! -d tests/node/node_modules/@socket.io/redis-adapter ]; then
      echo "bench-cluster: installing the pinned Node peers (npm ci --prefix tests/node)" >&2
      npm ci --prefix tests/node --no-audit --no-fund >/dev/null
    fi
    ;;
esac
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "bench-cluster: building (release)" >&2
cargo build --release --example conformance --example loadgen >&2
LOADGEN=target/release/examples/loadgen
mkdir -p "$OUT"
: >"$RESULTS"

PIDS=()
stop_all() {
  local p
  for p in "${PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  PIDS=()
}
trap stop_all EXIT
trap 'stop_all; exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

REDIS_PID="" REDIS_URL=""
start_redis() {
  local port
  port=$(free_port)
  taskset -c "$LOADGEN_CPUS" redis-server --port "$port" --bind 127.0.0.1 --save "" \
    --appendonly no --daemonize no --loglevel warning >"$OUT/redis.log" 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  REDIS_URL="redis://127.0.0.1:$port"
  for _ in $(seq 1 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2).close()" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "bench-cluster: redis-server did not listen on $port; its log:" >&2
  cat "$OUT/redis.log" >&2
  exit 1
}

# start_node KIND NAME: sets NODE_PID, NODE_PORT.
NODE_PID="" NODE_PORT=""
start_node() {
  local kind="$1" name="$2" log="$OUT/$1-$2.log"
  case "$kind" in
    wsio) set -- target/release/examples/conformance --driver tokio --ping-interval 25000 \
      --ping-timeout 20000 --redis "$REDIS_URL" --node-name "$name" ;;
    node) set -- node benches/peers/node-server.js --redis "$REDIS_URL" ;;
  esac
  : >"$log"
  taskset -c "$NODE_CPUS" "$@" --port 0 >"$log" 2>&1 &
  NODE_PID=$!
  PIDS+=("$NODE_PID")
  for _ in $(seq 1 200); do
    if grep -q '^READY ' "$log"; then
      NODE_PORT=$(awk '/^READY /{print $2; exit}' "$log")
      return 0
    fi
    kill -0 "$NODE_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench-cluster: $kind node $name did not start; its log:" >&2
  cat "$log" >&2
  exit 1
}

# fanout KIND RUN TOPOLOGY LOADGEN-ARGS...
fanout() {
  local kind="$1" run="$2" topo="$3"
  shift 3
  local line
  line=$(timeout 300 taskset -c "$LOADGEN_CPUS" "$LOADGEN" fanout --receivers "${RECV:-$RECEIVERS}" \
    --window "$WINDOW" --duration "$DURATION" --size "$SIZE" --redis-pid "$REDIS_PID" "$@") || true
  [ -n "$line" ] || line='{"scenario":"fanout","ok":false,"error":"no output"}'
  echo "{\"server\":\"$kind\",\"topology\":\"$topo\",\"run\":$run,\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"result\":$line}" >>"$RESULTS"
  echo "  $kind $topo run $run: $(echo "$line" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("ok" if d.get("ok") else "NOT OK", {k: d[k] for k in ("deliveries_per_s","server_cpu_us_per_delivery","redis_cpu_us_per_broadcast","latency_p50_us","lost","corrupted","error","first_errors") if k in d})')" >&2
}

IFS=, read -r -a KINDS <<<"$ONLY"
for run in $(seq 1 "$RUNS"); do
  for kind in "${KINDS[@]}"; do
    start_redis
    start_node "$kind" a
    a_pid=$NODE_PID a_port=$NODE_PORT
    sleep 1
    fanout "$kind" "$run" 1node --port "$a_port" --server-pid "$a_pid"
    stop_all
    sleep 1
    start_redis
    start_node "$kind" a
    a_pid=$NODE_PID a_port=$NODE_PORT
    start_node "$kind" b
    b_pid=$NODE_PID b_port=$NODE_PORT
    sleep 1
    fanout "$kind" "$run" 2node --port "$a_port" --port2 "$b_port" --server-pid "$a_pid,$b_pid"
    sleep 1
    RECV=10 fanout "$kind" "$run" idle --port "$a_port" --server-pid "$a_pid,$b_pid"
    stop_all
    sleep 1
  done
done
fi

python3 - "$RESULTS" "$NODE_CPUS" "$LOADGEN_CPUS" <<'PY'
import datetime, json, os, statistics, sys

path = sys.argv[1]
rows = [json.loads(l) for l in open(path)]
cols = []
for r in rows:
    if (r["server"], r["topology"]) not in cols:
        cols.append((r["server"], r["topology"]))

for r in rows:
    x = r["result"]
    each, b = x.get("server_cpu_s_each") or [], x.get("broadcasts")
    if r["topology"] == "idle" and len(each) == 2 and each[1] is not None and b:
        x["idle_node_us_per_broadcast"] = each[1] * 1e6 / b

def med(col, key):
    vals = [r["result"].get(key) for r in rows if (r["server"], r["topology"]) == col]
    vals = [v for v in vals if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None

def fmt(v, f):
    return "–" if v is None else f.format(v)

ran = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)
loads = sorted({r.get("loadavg", "?") for r in rows})
print(f"Date: {ran:%Y-%m-%d %H:%M} UTC (end of the run); nodes on CPU {sys.argv[2]}, "
      f"load generator and Redis on CPU {sys.argv[3]}; load average at each run: {', '.join(loads)}.")
print()
print("| | " + " | ".join(f"{s} {t}" for s, t in cols) + " |")
print("|" + "---|" * (len(cols) + 1))
for key, label, f in [
    ("deliveries_per_s", "deliveries/s", "{:,.0f}"),
    ("latency_p50_us", "delivery latency p50 (µs)", "{:,.0f}"),
    ("latency_p99_us", "delivery latency p99 (µs)", "{:,.0f}"),
    ("server_cpu_us_per_delivery", "server CPU per delivery, all nodes (µs)", "{:,.2f}"),
    ("redis_cpu_us_per_broadcast", "Redis CPU per broadcast (µs)", "{:,.1f}"),
    ("idle_node_us_per_broadcast", "idle node b: CPU per broadcast received (µs)", "{:,.1f}"),
    ("broadcasts", "broadcasts", "{:,.0f}"),
    ("lost", "lost", "{:,.0f}"),
    ("corrupted", "corrupted", "{:,.0f}"),
]:
    print(f"| {label} | " + " | ".join(fmt(med(c, key), f) for c in cols) + " |")
ok = all(r["result"].get("ok") for r in rows)
sys.exit(0 if ok else 1)
PY
