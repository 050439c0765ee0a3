//! Properties of Socket.IO clients and server under a simulated network
//! with resets, partitions that heal and server restarts, each checked over
//! many seeds (`WSIO_SIM_SEEDS=N` for a longer sweep, `WSIO_SIM_SEED=S` to
//! replay one with `WSIO_SIM_TRACE=1`).

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use common::sim::{for_seeds, tracing};
use wsio::{
    engineio::{self, TransportMode},
    sim::{self, Network},
    socketio::{self, ClientConfig, ClientEvent, Event, NspId, SocketId, Value},
};

fn server(now: Instant, rng: &mut sim::Rng) -> socketio::Server {
    let engine = engineio::Config::default()
        .path("/socket.io/")
        .ping_interval(Duration::from_millis(300))
        .ping_timeout(Duration::from_millis(200));
    let config = socketio::Config::default()
        .engine(engine)
        .connect_timeout(Duration::from_secs(1));
    socketio::Server::new(config, Box::new(rng.fork()), now)
}

fn client_config(i: usize, seed: u64) -> ClientConfig {
    let mode = match (seed + i as u64) % 3 {
        0 => TransportMode::PollingThenUpgrade,
        1 => TransportMode::WebSocketOnly,
        _ => TransportMode::PollingOnly,
    };
    ClientConfig::new("sim")
        .mode(mode)
        .reconnection_delay(Duration::from_millis(100))
        .reconnection_delay_max(Duration::from_millis(500))
        .timeout(Duration::from_secs(1))
}

/// What the application saw, on both sides.
#[derive(Default)]
struct App {
    /// Server side: socket -> client index (from the auth payload).
    owner: HashMap<SocketId, usize>,
    /// Server side: per client, every number received, in order.
    got: BTreeMap<usize, Vec<u64>>,
    /// Client side: per client, broadcast numbers received, in order.
    broadcasts: BTreeMap<usize, Vec<u64>>,
    /// Client side: per client, outcomes of each ack id.
    ack_outcomes: BTreeMap<(usize, u64), Vec<&'static str>>,
    /// Client side: when each client last connected `/`.
    connected_at: BTreeMap<usize, Instant>,
}

impl sim::App<socketio::Server, socketio::Client> for App {
    fn server_event(&mut self, _: Instant, io: &mut socketio::Server, ev: Event) {
        match ev {
            Event::Connection { socket, auth, .. } => {
                if let Some(c) = auth["c"].as_u64() {
                    self.owner.insert(socket, c as usize);
                    let _ = io.join(socket, "all");
                }
            }
            Event::Event {
                socket,
                name,
                args,
                ack,
            } if name == "num" => {
                let Some(&c) = self.owner.get(&socket) else {
                    return;
                };
                let n = args[0].as_u64().unwrap_or(u64::MAX);
                self.got.entry(c).or_default().push(n);
                if let Some(id) = ack {
                    let _ = io.ack(socket, id, vec![Value::from(n)]);
                }
            }
            Event::Disconnect { socket, .. } => {
                self.owner.remove(&socket);
            }
            _ => {}
        }
    }

    fn client_event(&mut self, now: Instant, c: usize, _: &mut socketio::Client, ev: ClientEvent) {
        match ev {
            ClientEvent::Connect { .. } => {
                self.connected_at.insert(c, now);
            }
            ClientEvent::Event { name, args, .. } if name == "b" => {
                self.broadcasts
                    .entry(c)
                    .or_default()
                    .push(args[0].as_u64().unwrap_or(u64::MAX));
            }
            ClientEvent::Ack { id, .. } => {
                self.ack_outcomes.entry((c, id)).or_default().push("ack")
            }
            ClientEvent::AckTimeout { id, .. } => self
                .ack_outcomes
                .entry((c, id))
                .or_default()
                .push("timeout"),
            ClientEvent::AckLost { id, .. } => {
                self.ack_outcomes.entry((c, id)).or_default().push("lost")
            }
            _ => {}
        }
    }
}

fn strictly_increasing(v: &[u64]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

/// One run: clients emit numbered events (some with acks) and the server
/// broadcasts numbered events, through faults, then a quiet period.
fn run(seed: u64) -> Result<(), String> {
    let faults = seed % 4 != 3;
    let mut config = sim::Config::new(seed)
        .latency(Duration::from_millis(1 + seed % 25))
        .jitter(Duration::from_millis(seed % 5))
        .max_chunk(1 + (seed as usize * 7) % 900)
        .trace(tracing());
    if faults {
        config = config.reset_rate(0.0003);
    }
    let mut net = Network::new(config, server);
    let clients = 2 + (seed % 3) as usize;
    for i in 0..clients {
        let cfg = client_config(i, seed);
        net.add_client(move |now, rng| {
            let mut c = socketio::Client::new(cfg, Box::new(rng.fork()), now);
            let auth = Value::object([("c", Value::from(i))]);
            c.socket(now, "/", Some(auth)).expect("root socket");
            c
        });
    }
    // Faults during the first 3 s.
    if faults {
        if seed % 2 == 0 {
            net.restart_server_in(Duration::from_millis(800 + seed % 1200));
        }
        for c in 0..clients {
            if (seed + c as u64) % 3 == 0 {
                let at = Duration::from_millis(300 + (seed * 13 + c as u64 * 101) % 2000);
                let len = Duration::from_millis(50 + (seed * 7 + c as u64) % 1500);
                net.partition_in(at, c, len);
            }
        }
    }
    let mut app = App::default();
    let mut next = vec![0u64; clients];
    let mut broadcast = 0u64;
    let mut acks = Vec::new();
    let step = |net: &mut Network<socketio::Server, socketio::Client>,
                app: &mut App,
                next: &mut Vec<u64>,
                acks: &mut Vec<(usize, u64)>| {
        let d = Duration::from_millis(net.rng().below(80));
        net.run_for(d, app);
        let c = net.rng().below(clients as u64) as usize;
        let now = net.now();
        let root: NspId = net.client(c).nsp("/").expect("the root socket");
        let n = next[c];
        let with_ack = net.rng().chance(0.3);
        let r = if with_ack {
            net.client(c)
                .emit_with_ack(
                    now,
                    root,
                    "num",
                    vec![Value::from(n)],
                    Some(Duration::from_secs(2)),
                )
                .map(|id| acks.push((c, id)))
        } else {
            net.client(c).emit(now, root, "num", vec![Value::from(n)])
        };
        if r.is_ok() {
            next[c] += 1;
        }
    };
    for _ in 0..60 {
        step(&mut net, &mut app, &mut next, &mut acks);
        if net.rng().chance(0.2) {
            let _ = net
                .server()
                .of("/")
                .to("all")
                .emit("b", vec![Value::from(broadcast)]);
            broadcast += 1;
        }
    }
    // Quiet: every partition has healed; everyone must be back within the
    // backoff bound (a stuck attempt's timeout, then the longest delay).
    net.set_reset_rate(0.0);
    let healed = net.now() + Duration::from_secs(3);
    net.run_until(healed, &mut app);
    let bound = Duration::from_millis(1000 + 750 + 200);
    let back = net.run_until_cond(bound, &mut app, |n| {
        (0..clients).all(|c| {
            n.client(c)
                .nsp("/")
                .is_some_and(|root| n.client(c).is_connected(root))
        })
    });
    if !back {
        let states: Vec<_> = (0..clients).map(|c| net.client(c).state()).collect();
        return Err(format!(
            "not all clients reconnected within {bound:?} of the quiet period: {states:?}"
        ));
    }
    // After the faults: every emit and every broadcast arrives, once.
    let first_quiet: Vec<u64> = next.clone();
    let first_broadcast = broadcast;
    for _ in 0..20 {
        step(&mut net, &mut app, &mut next, &mut acks);
        let _ = net
            .server()
            .of("/")
            .to("all")
            .emit("b", vec![Value::from(broadcast)]);
        broadcast += 1;
    }
    net.run_for(Duration::from_secs(3), &mut app);
    if tracing() {
        eprintln!("{}", net.trace());
    }

    for (c, got) in &app.got {
        if !strictly_increasing(got) {
            return Err(format!("client {c}: the server got {got:?}"));
        }
        let tail: Vec<u64> = got
            .iter()
            .copied()
            .filter(|n| *n >= first_quiet[*c])
            .collect();
        let want: Vec<u64> = (first_quiet[*c]..next[*c]).collect();
        if tail != want {
            return Err(format!(
                "client {c}: after the faults the server got {tail:?}, not {want:?}"
            ));
        }
    }
    for c in 0..clients {
        let b = app.broadcasts.get(&c).cloned().unwrap_or_default();
        if !strictly_increasing(&b) {
            return Err(format!("client {c}: broadcasts {b:?}"));
        }
        let tail: Vec<u64> = b
            .iter()
            .copied()
            .filter(|n| *n >= first_broadcast)
            .collect();
        let want: Vec<u64> = (first_broadcast..broadcast).collect();
        if tail != want {
            return Err(format!(
                "client {c}: quiet broadcasts {tail:?}, not {want:?}"
            ));
        }
    }
    for (c, id) in &acks {
        let outcomes = app
            .ack_outcomes
            .get(&(*c, *id))
            .cloned()
            .unwrap_or_default();
        if outcomes.len() != 1 {
            return Err(format!(
                "client {c} ack {id}: {outcomes:?} (exactly one answer, timeout or loss)"
            ));
        }
    }
    // Closed, every client (and every engine it had) lets go of every
    // connection it opened.
    let now = net.now();
    for c in 0..clients {
        net.client(c).close(now);
    }
    net.run_for(Duration::from_secs(30), &mut app);
    if net.open_connections() != 0 {
        return Err(format!(
            "{} connections left open after the close",
            net.open_connections()
        ));
    }
    Ok(())
}

#[test]
fn under_faults_emits_acks_broadcasts_and_reconnection_behave() {
    for_seeds(
        "under_faults_emits_acks_broadcasts_and_reconnection_behave",
        "sim_socketio",
        400,
        run,
    );
}

/// A client whose connection dies silently (no FIN, no reset): the server
/// notices by its heartbeat, the client by its own, and it comes back on a
/// new connection, with what it emitted meanwhile.
#[test]
fn half_open_connections_are_detected_and_recovered() {
    for_seeds(
        "half_open_connections_are_detected_and_recovered",
        "sim_socketio",
        150,
        |seed| {
            let config = sim::Config::new(seed)
                .latency(Duration::from_millis(1 + seed % 20))
                .trace(tracing());
            let mut net = Network::new(config, server);
            for i in 0..2 {
                let cfg = client_config(i, seed);
                net.add_client(move |now, rng| {
                    let mut c = socketio::Client::new(cfg, Box::new(rng.fork()), now);
                    c.socket(now, "/", Some(Value::object([("c", Value::from(i))])))
                        .expect("root socket");
                    c
                });
            }
            let mut app = App::default();
            net.run_for(Duration::from_millis(800 + seed % 700), &mut app);
            let cut = net.now();
            net.half_open_in(Duration::ZERO, 0);
            // Emits during the silence wait in the client's send buffer (or are
            // lost with the dead connection if it still looked alive).
            let mut sent = Vec::new();
            for n in 0..10u64 {
                net.run_for(Duration::from_millis(150), &mut app);
                let now = net.now();
                let root = net.client(0).nsp("/").expect("root");
                if net
                    .client(0)
                    .emit(now, root, "num", vec![Value::from(n)])
                    .is_ok()
                {
                    sent.push(n);
                }
            }
            let (i, t) = (Duration::from_millis(300), Duration::from_millis(200));
            let detect = i + t + Duration::from_millis(50);
            let bound = cut + detect + Duration::from_millis(750 + 1000 + 200);
            let back =
                net.run_until_cond(bound.saturating_duration_since(net.now()), &mut app, |n| {
                    n.client(0)
                        .nsp("/")
                        .is_some_and(|r| n.client(0).is_connected(r))
                });
            if !back {
                if tracing() {
                    eprintln!("{}", net.trace());
                }
                return Err(format!(
                    "client 0 not back by {:?} after the cut ({:?})",
                    bound - cut,
                    net.client(0).state()
                ));
            }
            net.run_for(Duration::from_secs(2), &mut app);
            let got = app.got.get(&0).cloned().unwrap_or_default();
            if !strictly_increasing(&got) {
                return Err(format!("server got {got:?}"));
            }
            // Whatever the client emitted after it noticed reaches the server.
            if let Some(last) = sent.last() {
                if !got.contains(last) {
                    return Err(format!(
                        "the last emit {last} never arrived: server got {got:?}"
                    ));
                }
            }
            // The other client never noticed anything.
            if !net
                .client(1)
                .nsp("/")
                .is_some_and(|r| net.client(1).is_connected(r))
            {
                return Err("client 1 was disturbed".into());
            }
            Ok(())
        },
    );
}

/// A client behind a slow link gets every broadcast, in order, once; the
/// others are not held back by it. (Its backlog stays within what the
/// heartbeat tolerates: a link slower than that is a dead link.)
#[test]
fn a_slow_reader_does_not_hold_back_the_others() {
    for_seeds(
        "a_slow_reader_does_not_hold_back_the_others",
        "sim_socketio",
        100,
        |seed| {
            let config = sim::Config::new(seed)
                .latency(Duration::from_millis(2))
                .trace(tracing());
            let mut net = Network::new(config, |now, rng| {
                let engine = engineio::Config::default()
                    .path("/socket.io/")
                    .ping_interval(Duration::from_millis(2000))
                    .ping_timeout(Duration::from_millis(2000));
                socketio::Server::new(
                    socketio::Config::default().engine(engine),
                    Box::new(rng.fork()),
                    now,
                )
            });
            for i in 0..3 {
                let mut cfg = client_config(i, seed);
                // Polling answers as they are: the padding would compress
                // to nothing and the slow reader would not be slow.
                cfg.engine = cfg.engine.http_compression(false);
                net.add_client(move |now, rng| {
                    let mut c = socketio::Client::new(cfg, Box::new(rng.fork()), now);
                    c.socket(now, "/", Some(Value::object([("c", Value::from(i))])))
                        .expect("root socket");
                    c
                });
            }
            let mut app = App::default();
            net.run_until_cond(Duration::from_secs(2), &mut app, |n| {
                n.server().sockets("/").len() == 3
            });
            net.slow_reader(0, 20_000);
            let pad = "x".repeat(400);
            for n in 0..40u64 {
                let _ = net
                    .server()
                    .of("/")
                    .to("all")
                    .emit("b", vec![Value::from(n), Value::from(pad.as_str())]);
            }
            net.run_for(Duration::from_millis(200), &mut app);
            for c in [1, 2] {
                let got = app.broadcasts.get(&c).cloned().unwrap_or_default();
                if got != (0..40).collect::<Vec<_>>() {
                    return Err(format!("fast client {c} got {got:?} after 200 ms"));
                }
            }
            let slow_early = app.broadcasts.get(&0).map_or(0, Vec::len);
            if slow_early >= 40 {
                return Err("the slow reader was not slow".into());
            }
            // 40 x ~420 B at 20 kB/s: under a second; heartbeats keep it alive.
            net.run_for(Duration::from_secs(3), &mut app);
            let got = app.broadcasts.get(&0).cloned().unwrap_or_default();
            if got != (0..40).collect::<Vec<_>>() {
                return Err(format!("slow client got {got:?}"));
            }
            Ok(())
        },
    );
}

/// Connection state recovery, seen from the application: when each socket
/// joined its rooms, and what each client received.
#[derive(Default)]
struct RecoveryApp {
    /// Server side: when each socket first connected (and joined its
    /// rooms).
    joined: HashMap<String, Instant>,
    /// Client side: the id of each client's first connection.
    first_sid: BTreeMap<usize, String>,
    /// Client side: per client, the broadcast numbers received, in order.
    got: BTreeMap<usize, Vec<u64>>,
    /// Client side: connections after the first that were not recovered.
    not_recovered: Vec<String>,
    /// Client side: how many times each client connected.
    connects: BTreeMap<usize, usize>,
}

/// The rooms of client `c`.
fn rooms_of(c: usize) -> [String; 2] {
    ["all".to_owned(), format!("g{}", c % 2)]
}

impl sim::App<socketio::Server, socketio::Client> for RecoveryApp {
    fn server_event(&mut self, now: Instant, io: &mut socketio::Server, ev: Event) {
        if let Event::Connection {
            socket,
            auth,
            recovered,
            ..
        } = ev
        {
            let Some(c) = auth["c"].as_u64().map(|c| c as usize) else {
                return;
            };
            self.joined.entry(socket.to_string()).or_insert(now);
            if !recovered {
                for r in rooms_of(c) {
                    let _ = io.join(socket, &r);
                }
            }
            // Something with an offset at once, so that a client that
            // loses its connection soon after can still come back.
            let _ = io.emit(socket, "welcome", vec![]);
        }
    }

    fn client_event(&mut self, _: Instant, c: usize, _: &mut socketio::Client, ev: ClientEvent) {
        match ev {
            ClientEvent::Connect { sid, recovered, .. } => {
                self.first_sid.entry(c).or_insert(sid);
                let n = self.connects.entry(c).or_default();
                *n += 1;
                if *n > 1 && !recovered {
                    self.not_recovered
                        .push(format!("client {c}: connection {n} not recovered"));
                }
            }
            ClientEvent::Event { name, args, .. } if name == "b" => {
                self.got
                    .entry(c)
                    .or_default()
                    .push(args[0].as_u64().unwrap_or(u64::MAX));
            }
            _ => {}
        }
    }
}

/// Under random resets and partitions shorter than the recovery window, a
/// client with recovery on receives every broadcast addressed to its rooms
/// once it joined them, exactly once and in order: what it missed while
/// away comes when it reconnects.
///
/// The client comes back only after the server has noticed that it went:
/// its shortest reconnection delay (600 ms) is longer than the server's
/// heartbeat (300 + 200 ms). A server hears of a reset WebSocket or a
/// reset long-poll at once, but of a polling connection that dropped
/// between two requests only by its heartbeat, and a client that comes
/// back before then gets a new session (as with the official server).
#[test]
fn with_recovery_every_broadcast_of_its_rooms_arrives_exactly_once() {
    for_seeds(
        "with_recovery_every_broadcast_of_its_rooms_arrives_exactly_once",
        "sim_socketio",
        300,
        recovery_run,
    );
}

fn recovery_run(seed: u64) -> Result<(), String> {
    let parser = if seed % 2 == 0 {
        socketio::Parser::Default
    } else {
        socketio::Parser::Msgpack
    };
    let config = sim::Config::new(seed)
        .latency(Duration::from_millis(1 + seed % 25))
        .jitter(Duration::from_millis(seed % 5))
        .max_chunk(1 + (seed as usize * 7) % 900)
        .reset_rate(0.0005)
        .trace(tracing());
    let mut net = Network::new(config, move |now, rng| {
        let engine = engineio::Config::default()
            .path("/socket.io/")
            .ping_interval(Duration::from_millis(300))
            .ping_timeout(Duration::from_millis(200));
        let recovery =
            socketio::RecoveryConfig::default().max_disconnection_duration(Duration::from_secs(10));
        let config = socketio::Config::default()
            .engine(engine)
            .connect_timeout(Duration::from_secs(1))
            .recovery(Some(recovery))
            .parser(parser);
        socketio::Server::new(config, Box::new(rng.fork()), now)
    });
    let clients = 2 + (seed % 3) as usize;
    for i in 0..clients {
        let cfg = client_config(i, seed)
            .parser(parser)
            .reconnection_delay(Duration::from_millis(1000))
            .randomization_factor(0.4)
            .reconnection_delay_max(Duration::from_millis(2000));
        net.add_client(move |now, rng| {
            let mut c = socketio::Client::new(cfg, Box::new(rng.fork()), now);
            c.socket(now, "/", Some(Value::object([("c", Value::from(i))])))
                .expect("root socket");
            c
        });
    }
    for c in 0..clients {
        if (seed + c as u64) % 2 == 0 {
            let at = Duration::from_millis(300 + (seed * 13 + c as u64 * 101) % 3000);
            let len = Duration::from_millis(50 + (seed * 7 + c as u64) % 2000);
            net.partition_in(at, c, len);
        }
    }
    let mut app = RecoveryApp::default();
    // Each broadcast: its number, when, to which rooms, except which.
    let mut sent: Vec<(u64, Instant, Vec<String>, Vec<String>)> = Vec::new();
    let targets: [(&[&str], &[&str]); 5] = [
        (&["all"], &[]),
        (&["g0"], &[]),
        (&["g1"], &[]),
        (&[], &["g1"]),
        (&["g0", "g1"], &["g0"]),
    ];
    for n in 0..120u64 {
        let d = Duration::from_millis(net.rng().below(60));
        net.run_for(d, &mut app);
        let (rooms, except) = targets[net.rng().below(targets.len() as u64) as usize];
        let now = net.now();
        let server = net.server();
        let mut b = server.of("/");
        for r in rooms {
            b = b.to(r);
        }
        for r in except {
            b = b.except(r);
        }
        let _ = b.emit("b", vec![Value::from(n)]);
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        sent.push((n, now, owned(rooms), owned(except)));
    }
    // Quiet: everything heals, and everyone comes back.
    net.set_reset_rate(0.0);
    net.run_for(Duration::from_secs(8), &mut app);
    if tracing() {
        eprintln!("{}", net.trace());
    }
    if let Some(why) = app.not_recovered.first() {
        return Err(why.clone());
    }
    for c in 0..clients {
        let Some(&since) = app.first_sid.get(&c).and_then(|s| app.joined.get(s)) else {
            return Err(format!("client {c} never connected"));
        };
        let mine = rooms_of(c);
        let want: Vec<u64> = sent
            .iter()
            .filter(|(_, at, rooms, except)| {
                *at >= since
                    && (rooms.is_empty() || rooms.iter().any(|r| mine.contains(r)))
                    && !except.iter().any(|r| mine.contains(r))
            })
            .map(|(n, ..)| *n)
            .collect();
        let got = app.got.get(&c).cloned().unwrap_or_default();
        if got != want {
            return Err(format!(
                "client {c} ({} connections) got {got:?}, not {want:?}",
                app.connects.get(&c).copied().unwrap_or(0)
            ));
        }
    }
    Ok(())
}
