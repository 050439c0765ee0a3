//! End-to-end load generator for Socket.IO servers over WebSocket, built on
//! wsio's own client machine (`wsio::ws::Connection`, with
//! `socketio::Packet::encode` for the events) and driven from one thread (a
//! smol `LocalExecutor`: one small task per connection, one shared read
//! buffer). It talks to any server with the behaviour of the `conformance`
//! example (`message` -> `message-back` to the sender, `emit-all` -> `all` to
//! everyone): wsio's, `benches/peers/node-server.js`,
//! `benches/peers/socketioxide`. Used by `scripts/bench-e2e.sh`.
//!
//! ```text
//! loadgen connect --port P [--server-pid PID] [--conns 2000] [--concurrency 100] [--hold SECS]
//! loadgen echo    --port P [--server-pid PID] [--clients 50] [--depth 8] [--duration 10] [--size 64]
//! loadgen fanout  --port P [--server-pid PID] [--receivers 1000] [--window 4] [--duration 10] [--size 64]
//! common: [--host 127.0.0.1] [--timeout 30] [--port2 P2] [--redis-pid PID]
//!         [--unordered]  (loopback addresses only)
//! ```
//!
//! Each run prints ONE JSON line. Every payload is checked byte for byte and
//! every message counted: `lost` and `corrupted` must be 0 and `ok` true.
//! A socket's answers must come in the order of what caused them, unless
//! `--unordered` (for servers that run one client's event handlers
//! concurrently, such as socketioxide on a multi-thread runtime): then each
//! must come exactly once, in any order; `reordered` counts those that
//! came before an earlier one.
//! With `--server-pid`, the server's CPU time (utime + stime of
//! /proc/PID/stat, all threads) over the measured window is divided by the
//! work done, which stays meaningful when this generator is the bottleneck;
//! `connect` also reads the server's VmRSS before and after.
//!
//! Two nodes of one cluster (`scripts/bench-cluster.sh`): with `--port2`,
//! every other socket (the 2nd, 4th, ...) connects to that port instead
//! (the first, the fanout's sender, stays on `--port`); `--server-pid
//! PID1,PID2` sums the CPU time (and RSS) of both server processes (the
//! fanout also reports each one's, `server_cpu_s_each`), and
//! `--redis-pid` reports the CPU time of a third process (the Redis server
//! between the nodes) apart, as `redis_cpu_s` and per unit of work.
//!
//! * `connect`: N connections, at most `--concurrency` in progress; the
//!   latency of one runs from the TCP connect to the server's `40{"sid"}`.
//!   They stay open (answering heartbeats) for `--hold` seconds, then each
//!   one sends a `message` and must get it back: a dropped or dead
//!   connection counts as lost.
//! * `echo`: C clients each keep `--depth` `message`s in flight for
//!   `--duration` seconds, then drain; round trip per message.
//! * `fanout`: N sockets, one of which also sends `emit-all`, keeping at
//!   most `--window` broadcasts not yet delivered to all N; delivery
//!   latency from the send to each socket's `all`.

#[path = "loadgen/client.rs"]
mod client;
#[path = "loadgen/report.rs"]
mod report;

use std::{
    cell::RefCell,
    collections::VecDeque,
    net::{IpAddr, SocketAddr},
    rc::Rc,
    time::{Duration, Instant},
};

use client::{Failure, SioClient};
use report::{CpuWindow, Samples, rss_kib};
use serde_json::{Value as Json, json};
use smol::{
    LocalExecutor, Timer,
    channel::{self, Receiver, Sender},
    future,
    lock::Semaphore,
};

/// Command-line options: `--name value`.
struct Args(Vec<String>);

impl Args {
    fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.0.iter().position(|a| a == name) {
            Some(i) => match self.0.get(i + 1).and_then(|v| v.parse().ok()) {
                Some(v) => v,
                None => die(&format!("{name} needs a valid value")),
            },
            None => default,
        }
    }
}

fn die(msg: &str) -> ! {
    eprintln!("loadgen: {msg}");
    std::process::exit(2);
}

/// What every scenario shares.
struct Common {
    addr: SocketAddr,
    /// `--port2`: where every other socket connects.
    addr2: Option<SocketAddr>,
    /// The server's pid, or several separated by commas.
    pid: Option<String>,
    /// `--unordered`: a socket's answers may come in any order.
    unordered: bool,
    /// `--redis-pid`: a process measured apart.
    redis_pid: Option<String>,
    /// Bound on waiting for the last answers after the measured window.
    timeout: Duration,
    size: usize,
}

/// Errors worth reporting: counted, the first few kept.
#[derive(Default)]
struct Errors {
    count: u64,
    first: Vec<String>,
}

impl Errors {
    fn add(&mut self, what: &str, f: &Failure) {
        self.count += 1;
        if self.first.len() < 5 {
            self.first.push(format!("{what}: {f}"));
        }
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(scenario) = argv.first().cloned() else {
        die("usage: loadgen connect|echo|fanout --port P [options]; see the file's docs");
    };
    let args = Args(argv);
    let host: IpAddr = args.get("--host", IpAddr::from([127, 0, 0, 1]));
    if !host.is_loopback() {
        die("only loopback addresses may be loaded");
    }
    let port: u16 = args.get("--port", 0);
    if port == 0 {
        die("--port is required");
    }
    let pid: String = args.get("--server-pid", String::new());
    if !pid.is_empty() && pid.split(',').any(|p| p.parse::<u32>().is_err()) {
        die("--server-pid takes a pid or pids separated by commas");
    }
    let redis_pid: u32 = args.get("--redis-pid", 0);
    let port2: u16 = args.get("--port2", 0);
    let common = Common {
        addr: SocketAddr::new(host, port),
        addr2: (port2 != 0).then(|| SocketAddr::new(host, port2)),
        pid: (!pid.is_empty()).then(|| pid.clone()),
        redis_pid: (redis_pid != 0).then(|| redis_pid.to_string()),
        unordered: args.0.iter().any(|a| a == "--unordered"),
        timeout: Duration::from_secs(args.get("--timeout", 30)),
        size: args.get("--size", 64),
    };
    let ex = Rc::new(LocalExecutor::new());
    let run = {
        let ex = ex.clone();
        async move {
            match scenario.as_str() {
                "connect" => connect(&ex, &common, &args).await,
                "echo" => echo(&ex, &common, &args).await,
                "fanout" => fanout(&ex, &common, &args).await,
                other => die(&format!("unknown scenario {other}")),
            }
        }
    };
    let mut out = smol::block_on(ex.run(run));
    out["server_pid"] = match pid.parse::<u32>() {
        Ok(p) => json!(p),
        Err(_) if pid.is_empty() => json!(0),
        Err(_) => json!(pid),
    };
    println!("{out}");
}

/// The filler that makes every payload `--size` bytes long, give or take
/// the digits in front of it.
fn filler(size: usize) -> Rc<str> {
    let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..size)
        .map(|i| alphabet[(i * 7 + 3) % alphabet.len()] as char)
        .collect::<String>()
        .into()
}

fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

fn per_unit_us(cpu: Option<f64>, units: u64) -> Json {
    match cpu {
        Some(s) if units > 0 => json!(round(s * 1e6 / units as f64, 3)),
        _ => Json::Null,
    }
}

/// The argument of a `42["<name>","<arg>"]` message, if it is one.
fn event_arg<'a>(t: &'a str, name: &str) -> Option<&'a str> {
    let rest = t.strip_prefix("42[\"")?.strip_prefix(name)?;
    rest.strip_prefix("\",\"")?.strip_suffix("\"]")
}

/// Splits `<n>:<rest>`.
fn split_num(s: &str) -> Option<(u64, &str)> {
    let (n, rest) = s.split_once(':')?;
    Some((n.parse().ok()?, rest))
}

/// Which numbered answers one socket has had: in order only, or (with
/// `--unordered`) in any order, each once.
#[derive(Default)]
struct Order {
    /// Every answer below this one came.
    next: u64,
    /// Answers that came ahead of `next`.
    ahead: std::collections::BTreeSet<u64>,
    unordered: bool,
}

impl Order {
    fn new(unordered: bool) -> Order {
        Order {
            unordered,
            ..Order::default()
        }
    }

    /// Whether answer `seq` is a good one now (else it is a duplicate, out
    /// of order when order is required, or unknown: never counted twice).
    /// Returns `Some(reordered)` when good.
    fn accept(&mut self, seq: u64) -> Option<bool> {
        if seq == self.next {
            self.next += 1;
            while self.ahead.remove(&self.next) {
                self.next += 1;
            }
            Some(false)
        } else if self.unordered && seq > self.next && self.ahead.insert(seq) {
            Some(true)
        } else {
            if !self.unordered {
                self.next += 1;
            }
            None
        }
    }
}

/// Waits until `f` finishes or `limit` passes; true if it finished.
async fn within<F: std::future::Future<Output = ()>>(limit: Duration, f: F) -> bool {
    future::or(
        async {
            f.await;
            true
        },
        async {
            Timer::after(limit).await;
            false
        },
    )
    .await
}

/// How the connection attempts of `connect` went.
struct Connected {
    latencies: Samples,
    ok: u64,
    failed: u64,
    last: Option<Instant>,
    errors: Errors,
}

// ----- connect -----------------------------------------------------------

#[derive(Default)]
struct ConnectStats {
    dropped: u64,
    pongs: u64,
    checked: u64,
    corrupted: u64,
    other: u64,
}

async fn connect(ex: &Rc<LocalExecutor<'static>>, c: &Common, args: &Args) -> Json {
    let n: u64 = args.get("--conns", 2000);
    let concurrency: usize = args.get("--concurrency", 100);
    let hold: u64 = args.get("--hold", 0);
    let pid = c.pid.as_deref();
    let rss0 = pid.and_then(rss_kib);
    let sem = Rc::new(Semaphore::new(concurrency.max(1)));
    let conn = Rc::new(RefCell::new(Connected {
        latencies: Samples::default(),
        ok: 0,
        failed: 0,
        last: None,
        errors: Errors::default(),
    }));
    let stats = Rc::new(RefCell::new(ConnectStats::default()));
    let (ready_tx, ready_rx) = channel::unbounded::<()>();
    let (stop_tx, stop_rx) = channel::bounded::<()>(1);
    let fill = filler(c.size);
    let cpu = CpuWindow::start(pid);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let (sem, conn, stats, ready_tx, stop_rx, fill) = (
            sem.clone(),
            conn.clone(),
            stats.clone(),
            ready_tx.clone(),
            stop_rx.clone(),
            fill.clone(),
        );
        let addr = c.addr;
        tasks.push(ex.spawn(async move {
            let permit = sem.acquire().await;
            let t0 = Instant::now();
            let client = SioClient::connect(addr, i).await;
            let t1 = Instant::now();
            drop(permit);
            let mut client = {
                let mut cs = conn.borrow_mut();
                match client {
                    Ok(cl) => {
                        cs.latencies.push(t1 - t0);
                        cs.ok += 1;
                        cs.last = Some(t1);
                        cl
                    }
                    Err(e) => {
                        cs.failed += 1;
                        cs.errors.add("connect", &e);
                        let _ = ready_tx.try_send(());
                        return;
                    }
                }
            };
            let _ = ready_tx.try_send(());
            // Idle, answering heartbeats, until told to check.
            loop {
                let next = future::or(async { Some(client.next_text().await) }, async {
                    let _ = stop_rx.recv().await;
                    None
                });
                match next.await {
                    Some(Ok(_)) => stats.borrow_mut().other += 1,
                    Some(Err(e)) => {
                        stats.borrow_mut().dropped += 1;
                        conn.borrow_mut().errors.add("idle", &e);
                        return;
                    }
                    None => break,
                }
            }
            // Still alive: one message there and back.
            let payload = format!("{i}:{fill}");
            if let Err(e) = client.emit("message", payload.clone()) {
                conn.borrow_mut().errors.add("check", &e);
                return;
            }
            loop {
                match client.next_text().await {
                    Ok(t) => match event_arg(&t, "message-back") {
                        Some(p) => {
                            let mut st = stats.borrow_mut();
                            if p == payload {
                                st.checked += 1;
                            } else {
                                st.corrupted += 1;
                            }
                            st.pongs += client.pongs;
                            break;
                        }
                        None => stats.borrow_mut().other += 1,
                    },
                    Err(e) => {
                        conn.borrow_mut().errors.add("check", &e);
                        return;
                    }
                }
            }
        }));
    }
    drop(ready_tx);
    // Every attempt finished (or the time bound passed).
    let all_tried = within(c.timeout + Duration::from_secs(n / 100), async {
        for _ in 0..n {
            if ready_rx.recv().await.is_err() {
                break;
            }
        }
    })
    .await;
    let used = cpu.stop();
    let (ok, failed, last) = {
        let cs = conn.borrow();
        (cs.ok, cs.failed, cs.last)
    };
    let connect_wall = last.map_or(used.wall, |l| (l - start).as_secs_f64());
    // Let the server settle (its `auth` emits), then weigh it.
    Timer::after(Duration::from_secs(1)).await;
    let rss1 = pid.and_then(rss_kib);
    let mut rss_hold = None;
    if hold > 0 {
        Timer::after(Duration::from_secs(hold)).await;
        rss_hold = pid.and_then(rss_kib);
    }
    drop(stop_tx);
    let checked_in_time = within(c.timeout, async {
        for t in tasks {
            t.await;
        }
    })
    .await;
    let st = stats.borrow();
    let mut cs = conn.borrow_mut();
    cs.latencies.sort();
    let lost = n - st.checked - st.corrupted;
    let per_conn = |r: Option<u64>| match (rss0, r) {
        (Some(a), Some(b)) if ok > 0 => json!(round((b as f64 - a as f64) / ok as f64, 2)),
        _ => Json::Null,
    };
    json!({
        "scenario": "connect",
        "conns": n,
        "concurrency": concurrency,
        "connected": ok,
        "failed": failed,
        "connects_per_s": round(ok as f64 / connect_wall, 1),
        "connect_p50_us": round(cs.latencies.percentile_us(50.0), 1),
        "connect_p99_us": round(cs.latencies.percentile_us(99.0), 1),
        "wall_s": round(connect_wall, 3),
        "server_cpu_s": used.server.map(|s| round(s, 3)),
        "server_sys_s": used.server_sys.map(|s| round(s, 3)),
        "server_cpu_us_per_connect": per_unit_us(used.server, ok),
        "loadgen_cpu_s": used.loadgen.map(|s| round(s, 3)),
        "server_rss_before_kib": rss0,
        "server_rss_after_kib": rss1,
        "server_rss_per_conn_kib": per_conn(rss1),
        "hold_s": hold,
        "server_rss_after_hold_kib": rss_hold,
        "server_rss_per_conn_after_hold_kib": per_conn(rss_hold),
        "dropped": st.dropped,
        "pongs": st.pongs,
        "checked": st.checked,
        "lost": lost,
        "corrupted": st.corrupted,
        "errors": cs.errors.count,
        "first_errors": cs.errors.first,
        "ok": all_tried && checked_in_time && failed == 0 && st.dropped == 0 && lost == 0
            && st.corrupted == 0 && cs.errors.count == 0,
    })
}

/// Connects `n` clients, at most `concurrency` at a time, before any
/// measurement starts.
async fn connect_all(
    ex: &Rc<LocalExecutor<'static>>,
    c: &Common,
    n: u64,
    seed: u64,
) -> Result<Vec<SioClient>, String> {
    let sem = Rc::new(Semaphore::new(100));
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let sem = sem.clone();
        let addr = match c.addr2 {
            Some(a2) if i % 2 == 1 => a2,
            _ => c.addr,
        };
        tasks.push(ex.spawn(async move {
            let _permit = sem.acquire().await;
            SioClient::connect(addr, seed + i).await
        }));
    }
    let mut clients = Vec::with_capacity(n as usize);
    let mut failure = None;
    let done = within(c.timeout, async {
        for t in tasks {
            match t.await {
                Ok(cl) => clients.push(cl),
                Err(e) => {
                    failure.get_or_insert_with(|| e.to_string());
                }
            }
        }
    })
    .await;
    match (done, failure) {
        (true, None) => Ok(clients),
        (_, Some(e)) => Err(format!("connect failed: {e}")),
        (false, None) => Err("connecting timed out".into()),
    }
}

// ----- echo --------------------------------------------------------------

#[derive(Default)]
struct EchoStats {
    sent: u64,
    received: u64,
    corrupted: u64,
    reordered: u64,
    other: u64,
    rtt: Samples,
    last: Option<Instant>,
    errors: Errors,
}

async fn echo(ex: &Rc<LocalExecutor<'static>>, c: &Common, args: &Args) -> Json {
    let n: u64 = args.get("--clients", 50);
    let depth: u64 = args.get("--depth", 8).max(1);
    let duration = Duration::from_secs_f64(args.get("--duration", 10.0));
    let max_per_client: u64 = args.get("--max-msgs", u64::MAX);
    let clients = match connect_all(ex, c, n, 1_000_000).await {
        Ok(cl) => cl,
        Err(e) => return json!({"scenario": "echo", "ok": false, "error": e}),
    };
    let stats = Rc::new(RefCell::new(EchoStats::default()));
    let fill = filler(c.size);
    let cpu = CpuWindow::start(c.pid.as_deref());
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        let (stats, fill) = (stats.clone(), fill.clone());
        let unordered = c.unordered;
        tasks.push(ex.spawn(async move {
            // Send times of the answers from `order.next` on.
            let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(depth as usize);
            let (mut next, mut recv) = (0u64, 0u64);
            let mut order = Order::new(unordered);
            let prefix = format!("{i}:");
            let payload = |seq: u64| format!("{i}:{seq}:{fill}");
            let result: Result<(), Failure> = async {
                while next < depth.min(max_per_client) {
                    client.emit("message", payload(next))?;
                    sent_at.push_back(Instant::now());
                    next += 1;
                }
                while recv < next {
                    let t = client.next_text().await?;
                    let now = Instant::now();
                    let Some(p) = event_arg(&t, "message-back") else {
                        stats.borrow_mut().other += 1;
                        continue;
                    };
                    let base = order.next;
                    let seq = p
                        .strip_prefix(&prefix)
                        .and_then(split_num)
                        .filter(|&(seq, rest)| rest == &*fill && seq < next)
                        .map(|(seq, _)| seq);
                    let mut st = stats.borrow_mut();
                    match seq.and_then(|seq| Some((seq, order.accept(seq)?))) {
                        Some((seq, reordered)) => {
                            st.received += 1;
                            st.reordered += u64::from(reordered);
                            let k = usize::try_from(seq - base).unwrap_or(usize::MAX);
                            if let Some(t0) = sent_at.get(k) {
                                st.rtt.push(now - *t0);
                            }
                        }
                        None => {
                            st.corrupted += 1;
                            if !unordered {
                                order.next = base + 1;
                            }
                        }
                    }
                    for _ in base..order.next {
                        sent_at.pop_front();
                    }
                    st.last = Some(now);
                    drop(st);
                    recv += 1;
                    if now < deadline && next < max_per_client {
                        client.emit("message", payload(next))?;
                        sent_at.push_back(Instant::now());
                        next += 1;
                    }
                }
                Ok(())
            }
            .await;
            let mut st = stats.borrow_mut();
            st.sent += next;
            if let Err(e) = result {
                st.errors.add("echo", &e);
            }
        }));
    }
    let finished = within(duration + c.timeout, async {
        for t in tasks {
            t.await;
        }
    })
    .await;
    let used = cpu.stop();
    let mut st = stats.borrow_mut();
    let wall = st.last.map_or(used.wall, |l| (l - start).as_secs_f64());
    st.rtt.sort();
    // Unfinished tasks never added what they sent: count what came back.
    let lost = st.sent.saturating_sub(st.received + st.corrupted);
    json!({
        "scenario": "echo",
        "clients": n,
        "depth": depth,
        "size": c.size,
        "duration_s": round(wall, 3),
        "sent": st.sent,
        "received": st.received,
        "lost": lost,
        "corrupted": st.corrupted,
        "reordered": st.reordered,
        "msgs_per_s": round(st.received as f64 / wall, 1),
        "rtt_p50_us": round(st.rtt.percentile_us(50.0), 1),
        "rtt_p99_us": round(st.rtt.percentile_us(99.0), 1),
        "server_cpu_s": used.server.map(|s| round(s, 3)),
        "server_sys_s": used.server_sys.map(|s| round(s, 3)),
        "server_cpu_us_per_msg": per_unit_us(used.server, st.received),
        "loadgen_cpu_s": used.loadgen.map(|s| round(s, 3)),
        "errors": st.errors.count,
        "first_errors": st.errors.first,
        "ok": finished && lost == 0 && st.corrupted == 0 && st.errors.count == 0 && st.received > 0,
    })
}

// ----- fanout ------------------------------------------------------------

#[derive(Default)]
struct FanoutStats {
    sent: u64,
    /// Per broadcast: when it was sent, and how many sockets still wait.
    sent_at: Vec<Instant>,
    remaining: Vec<u32>,
    completed: u64,
    delivered: u64,
    corrupted: u64,
    reordered: u64,
    other: u64,
    latency: Samples,
    last: Option<Instant>,
    errors: Errors,
}

impl FanoutStats {
    /// Checks one `all` at a socket that has had the broadcasts `order`
    /// says. Returns true when a broadcast just reached its last socket.
    fn on_text(&mut self, t: &str, order: &mut Order, fill: &str) -> bool {
        let Some(p) = event_arg(t, "all") else {
            self.other += 1;
            return false;
        };
        let now = Instant::now();
        self.last = Some(now);
        let good = match split_num(p) {
            Some((seq, rest)) if rest == fill && (seq as usize) < self.sent_at.len() => {
                order.accept(seq).map(|reordered| (seq, reordered))
            }
            Some(_) | None => {
                if !order.unordered {
                    order.next += 1;
                }
                None
            }
        };
        match good {
            Some((seq, reordered)) => {
                self.reordered += u64::from(reordered);
                self.delivered += 1;
                self.latency.push(now - self.sent_at[seq as usize]);
                let r = &mut self.remaining[seq as usize];
                *r -= 1;
                if *r == 0 {
                    self.completed += 1;
                    return true;
                }
                false
            }
            None => {
                // Out of order, unknown, or altered: never a delivery.
                self.corrupted += 1;
                false
            }
        }
    }
}

async fn fanout(ex: &Rc<LocalExecutor<'static>>, c: &Common, args: &Args) -> Json {
    let n: u64 = args.get("--receivers", 1000).max(1);
    let window: u64 = args.get("--window", 4).max(1);
    let unordered = c.unordered;
    let duration = Duration::from_secs_f64(args.get("--duration", 10.0));
    let clients = match connect_all(ex, c, n, 2_000_000).await {
        Ok(cl) => cl,
        Err(e) => return json!({"scenario": "fanout", "ok": false, "error": e}),
    };
    let stats = Rc::new(RefCell::new(FanoutStats::default()));
    let fill = filler(c.size);
    let (wake_tx, wake_rx): (Sender<()>, Receiver<()>) = channel::bounded(1);
    let (done_tx, done_rx) = channel::bounded::<()>(1);
    let cpu = CpuWindow::start(c.pid.as_deref());
    // With several servers, each one's share too.
    let each: Vec<CpuWindow> = match c.pid.as_deref() {
        Some(pids) if pids.contains(',') => {
            pids.split(',').map(|p| CpuWindow::start(Some(p))).collect()
        }
        _ => Vec::new(),
    };
    let redis_cpu = CpuWindow::start(c.redis_pid.as_deref());
    let start = Instant::now();
    let deadline = start + duration;
    let mut clients = clients.into_iter();
    let Some(mut sender) = clients.next() else {
        return json!({"scenario": "fanout", "ok": false, "error": "no clients"});
    };
    let mut tasks = Vec::new();
    for mut client in clients {
        let (stats, fill, wake_tx) = (stats.clone(), fill.clone(), wake_tx.clone());
        tasks.push(ex.spawn(async move {
            let mut order = Order::new(unordered);
            loop {
                match client.next_text().await {
                    Ok(t) => {
                        if stats.borrow_mut().on_text(&t, &mut order, &fill) {
                            let _ = wake_tx.try_send(());
                        }
                    }
                    Err(e) => {
                        stats.borrow_mut().errors.add("receiver", &e);
                        return;
                    }
                }
            }
        }));
    }
    {
        let (stats, fill) = (stats.clone(), fill.clone());
        tasks.push(ex.spawn(async move {
            let mut order = Order::new(unordered);
            let n32 = u32::try_from(n).unwrap_or(u32::MAX);
            let result: Result<(), Failure> = async {
                loop {
                    let now = Instant::now();
                    {
                        let mut st = stats.borrow_mut();
                        while now < deadline && st.sent - st.completed < window {
                            let seq = st.sent;
                            sender.emit("emit-all", format!("{seq}:{fill}"))?;
                            st.sent_at.push(Instant::now());
                            st.remaining.push(n32);
                            st.sent += 1;
                        }
                        if now >= deadline && st.completed == st.sent {
                            return Ok(());
                        }
                    }
                    sender.flush().await?;
                    let got = future::or(async { Some(sender.next_text().await) }, async {
                        let _ = wake_rx.recv().await;
                        None
                    })
                    .await;
                    if let Some(t) = got {
                        let t = t?;
                        stats.borrow_mut().on_text(&t, &mut order, &fill);
                    }
                }
            }
            .await;
            if let Err(e) = result {
                stats.borrow_mut().errors.add("sender", &e);
            }
            let _ = done_tx.try_send(());
        }));
    }
    // Past the deadline, wake the sender now and then so it sees the time.
    let ticker = ex.spawn({
        let wake_tx = wake_tx.clone();
        async move {
            loop {
                Timer::after(Duration::from_millis(50)).await;
                let _ = wake_tx.try_send(());
            }
        }
    });
    let finished = within(duration + c.timeout, async {
        let _ = done_rx.recv().await;
    })
    .await;
    drop(ticker);
    let used = cpu.stop();
    let used_each: Vec<Option<f64>> = each
        .iter()
        .map(|w| w.stop().server.map(|s| round(s, 3)))
        .collect();
    let redis_used = redis_cpu.stop();
    let mut st = stats.borrow_mut();
    let wall = st.last.map_or(used.wall, |l| (l - start).as_secs_f64());
    st.latency.sort();
    let expected = st.sent * n;
    let lost = expected.saturating_sub(st.delivered + st.corrupted);
    drop(tasks);
    json!({
        "scenario": "fanout",
        "receivers": n,
        "window": window,
        "size": c.size,
        "duration_s": round(wall, 3),
        "broadcasts": st.sent,
        "expected": expected,
        "delivered": st.delivered,
        "lost": lost,
        "corrupted": st.corrupted,
        "reordered": st.reordered,
        "deliveries_per_s": round(st.delivered as f64 / wall, 1),
        "latency_p50_us": round(st.latency.percentile_us(50.0), 1),
        "latency_p99_us": round(st.latency.percentile_us(99.0), 1),
        "server_cpu_s": used.server.map(|s| round(s, 3)),
        "server_sys_s": used.server_sys.map(|s| round(s, 3)),
        "server_cpu_us_per_delivery": per_unit_us(used.server, st.delivered),
        "server_cpu_s_each": used_each,
        "redis_cpu_s": redis_used.server.map(|s| round(s, 3)),
        "redis_cpu_us_per_broadcast": per_unit_us(redis_used.server, st.sent),
        "loadgen_cpu_s": used.loadgen.map(|s| round(s, 3)),
        "errors": st.errors.count,
        "first_errors": st.errors.first,
        "ok": finished && lost == 0 && st.corrupted == 0 && st.errors.count == 0 && st.delivered > 0,
    })
}
