//! Properties of the Engine.IO server and client under a simulated network,
//! each checked over many seeds (`WSIO_SIM_SEEDS=N` for a longer sweep,
//! `WSIO_SIM_SEED=S` to replay one).

mod common;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use common::sim::{for_seeds, tracing};
use wsio::{
    engineio::{
        self, ClientConfig, ClientEvent, ClientState, CloseReason, Data, Event, Sid, TransportKind,
        TransportMode,
    },
    sim::{self, Network},
};

fn server_config() -> engineio::Config {
    engineio::Config::default()
        .ping_interval(Duration::from_millis(300))
        .ping_timeout(Duration::from_millis(200))
}

fn mode(i: u64) -> TransportMode {
    match i % 3 {
        0 => TransportMode::PollingThenUpgrade,
        1 => TransportMode::WebSocketOnly,
        _ => TransportMode::PollingOnly,
    }
}

/// Every client sends numbered messages; the server echoes them. Each side
/// records what it got, per session.
#[derive(Default)]
struct Echo {
    /// Per server session: the numbers received, in order.
    server_got: HashMap<Sid, Vec<u64>>,
    /// Per client: the numbers echoed back, per session (a new session
    /// starts a new list).
    client_got: HashMap<usize, Vec<Vec<u64>>>,
    closes: Vec<(Instant, Sid, CloseReason)>,
    client_closes: HashMap<usize, (Instant, CloseReason)>,
}

fn number(d: &Data) -> u64 {
    match d {
        Data::Text(t) => t.parse().unwrap_or(u64::MAX),
        Data::Binary(b) => u64::from_be_bytes(b[..8].try_into().unwrap_or([0xff; 8])),
    }
}

impl sim::App<engineio::Server, engineio::Client> for Echo {
    fn server_event(&mut self, now: Instant, server: &mut engineio::Server, ev: Event) {
        match ev {
            Event::Open { sid, .. } => {
                self.server_got.insert(sid, Vec::new());
            }
            Event::Message { sid, data } => {
                self.server_got.entry(sid).or_default().push(number(&data));
                let _ = server.send(sid, data);
            }
            Event::Close { sid, reason } => self.closes.push((now, sid, reason)),
            _ => {}
        }
    }

    fn client_event(
        &mut self,
        now: Instant,
        client: usize,
        _: &mut engineio::Client,
        ev: ClientEvent,
    ) {
        match ev {
            ClientEvent::Open { .. } => self.client_got.entry(client).or_default().push(Vec::new()),
            ClientEvent::Message(d) => {
                if let Some(last) = self.client_got.entry(client).or_default().last_mut() {
                    last.push(number(&d));
                }
            }
            ClientEvent::Close { reason, .. } => {
                self.client_closes.insert(client, (now, reason));
            }
            _ => {}
        }
    }
}

/// Whether `got` is `0, 1, 2, ...` with no gap, repeat or reordering.
fn is_prefix_sequence(got: &[u64]) -> bool {
    got.iter().enumerate().all(|(i, n)| *n == i as u64)
}

fn echo_run(
    seed: u64,
    faults: bool,
) -> Result<(Echo, Network<engineio::Server, engineio::Client>), String> {
    let mut config = sim::Config::new(seed)
        .latency(Duration::from_millis(1 + seed % 20))
        .jitter(Duration::from_millis(seed % 7))
        .max_chunk(1 + (seed as usize % 5) * 300)
        .trace(tracing());
    if faults {
        config = config.reset_rate(0.0005);
    }
    let mut net = Network::new(config, |now, rng| {
        engineio::Server::new(server_config(), Box::new(rng.fork()), now)
    });
    let clients = 2 + (seed % 3) as usize;
    for i in 0..clients {
        let m = mode(seed + i as u64);
        net.add_client(move |now, rng| {
            engineio::Client::new(ClientConfig::new("sim").mode(m), Box::new(rng.fork()), now)
        });
    }
    if faults && seed % 4 == 0 {
        net.restart_server_in(Duration::from_millis(700 + seed % 500));
    }
    if faults && seed % 5 == 1 {
        net.partition_in(
            Duration::from_millis(400),
            0,
            Duration::from_millis(100 + seed % 900),
        );
    }
    let mut app = Echo::default();
    let mut next = vec![0u64; clients];
    // Sends at random moments for 2 s of virtual time, then lets it drain.
    for _ in 0..40 {
        let step = Duration::from_millis(net.rng().below(100));
        net.run_for(step, &mut app);
        let c = net.rng().below(clients as u64) as usize;
        if net.client(c).state() == ClientState::Open {
            let n = next[c];
            let data: Data = if n % 4 == 3 {
                Data::Binary(n.to_be_bytes().to_vec().into())
            } else {
                n.to_string().into()
            };
            let now = net.now();
            if net.client(c).send(now, data).is_ok() {
                next[c] += 1;
            }
        }
    }
    net.run_for(Duration::from_secs(2), &mut app);
    if tracing() {
        eprintln!("{}", net.trace());
    }
    Ok((app, net))
}

#[test]
fn messages_arrive_in_order_exactly_once_per_session() {
    for_seeds(
        "messages_arrive_in_order_exactly_once_per_session",
        "sim_engineio",
        300,
        |seed| {
            let (app, mut net) = echo_run(seed, false)?;
            // No faults: every session stays up and everything comes back.
            for (sid, got) in &app.server_got {
                if !is_prefix_sequence(got) {
                    return Err(format!("server session {sid}: {got:?}"));
                }
            }
            for c in 0..net.client_count() {
                if net.client(c).state() != ClientState::Open {
                    return Err(format!(
                        "client {c} is {:?} without any fault",
                        net.client(c).state()
                    ));
                }
                let sessions = app.client_got.get(&c).cloned().unwrap_or_default();
                if sessions.len() != 1 || !is_prefix_sequence(&sessions[0]) {
                    return Err(format!("client {c} echoes: {sessions:?}"));
                }
            }
            let sent: usize = app.server_got.values().map(Vec::len).sum();
            let echoed: usize = app.client_got.values().flatten().map(Vec::len).sum();
            if sent != echoed {
                return Err(format!(
                    "{sent} received by the server, {echoed} echoed back"
                ));
            }
            Ok(())
        },
    );
}

#[test]
fn with_resets_restarts_and_partitions_sessions_never_reorder_or_repeat() {
    for_seeds(
        "with_resets_restarts_and_partitions_sessions_never_reorder_or_repeat",
        "sim_engineio",
        500,
        |seed| {
            let (app, mut net) = echo_run(seed, true)?;
            // Closed, every client lets go of every connection it opened,
            // and the server of its ends.
            let now = net.now();
            for c in 0..net.client_count() {
                net.client(c).close(now);
            }
            net.set_reset_rate(0.0);
            net.run_for(Duration::from_secs(30), &mut ());
            for c in 0..net.client_count() {
                if !net.client(c).is_finished() {
                    return Err(format!("client {c} is not finished: {:?}", net.client(c)));
                }
            }
            if net.open_connections() != 0 {
                if tracing() {
                    eprintln!("{}", net.trace());
                }
                return Err(format!("{} connections left open", net.open_connections()));
            }
            for (sid, got) in &app.server_got {
                // Within one session: a gapless prefix of what was sent (a
                // session may die with messages in flight, never skip one).
                if !got.windows(2).all(|w| w[1] == w[0] + 1) {
                    return Err(format!("server session {sid}: {got:?}"));
                }
            }
            for (c, sessions) in &app.client_got {
                for s in sessions {
                    if !s.windows(2).all(|w| w[1] == w[0] + 1) {
                        return Err(format!("client {c} session echoes {s:?}"));
                    }
                }
            }
            Ok(())
        },
    );
}

/// An idle client behind a partition: the server drops it exactly one
/// interval and one timeout after the last pong it got, and the client
/// gives up on the server one interval and one timeout after the last ping.
#[test]
fn heartbeat_timeouts_fire_exactly_when_configured() {
    for_seeds(
        "heartbeat_timeouts_fire_exactly_when_configured",
        "sim_engineio",
        200,
        |seed| {
            let latency = Duration::from_millis(1 + seed % 30);
            let config = sim::Config::new(seed).latency(latency).trace(tracing());
            let mut net = Network::new(config, |now, rng| {
                engineio::Server::new(server_config(), Box::new(rng.fork()), now)
            });
            let m = mode(seed);
            net.add_client(move |now, rng| {
                engineio::Client::new(ClientConfig::new("sim").mode(m), Box::new(rng.fork()), now)
            });
            let mut app = Echo::default();
            net.run_for(Duration::from_millis(1000 + seed % 1000), &mut app);
            // Cut the client off; from now on nothing crosses.
            let cut = net.now();
            net.partition_in(Duration::ZERO, 0, Duration::from_secs(10));
            net.run_for(Duration::from_secs(3), &mut app);
            let (closed_at, _, reason) = *app
                .closes
                .first()
                .ok_or("the server never closed the session")?;
            if reason != CloseReason::PingTimeout {
                return Err(format!("server closed with {reason}"));
            }
            let (client_closed_at, client_reason) = *app
                .client_closes
                .get(&0)
                .ok_or("the client never gave up")?;
            if client_reason != CloseReason::PingTimeout {
                return Err(format!("client closed with {client_reason}"));
            }
            let (i, t) = (Duration::from_millis(300), Duration::from_millis(200));
            let (last_rx, last_tx) = net.last_delivery(0);
            let (last_rx, last_tx) = (
                last_rx.ok_or("nothing reached the server")?,
                last_tx.ok_or("nothing reached the client")?,
            );
            if m == TransportMode::WebSocketOnly {
                // All an idle WebSocket client sends is pongs and all it gets is
                // pings: the deadlines follow from them exactly.
                if closed_at != last_rx + i + t {
                    return Err(format!(
                        "server closed {:?} after the last pong, not {:?}",
                        closed_at - last_rx,
                        i + t
                    ));
                }
                if client_closed_at != last_tx + i + t {
                    return Err(format!(
                        "client gave up {:?} after the last ping, not {:?}",
                        client_closed_at - last_tx,
                        i + t
                    ));
                }
            }
            // In every mode: nobody gives up before the configuration allows,
            // nor later than it says (latency l: a ping in flight at the cut).
            let l = latency;
            let (sw, cw) = (closed_at - cut, client_closed_at - cut);
            if sw > i + t || sw + 2 * l < t {
                return Err(format!("server closed {sw:?} after the cut"));
            }
            if cw > i + t || cw + 2 * l < t {
                return Err(format!("client gave up {cw:?} after the cut"));
            }
            Ok(())
        },
    );
}

/// A polling client and an upgraded one hear the same broadcast sequence.
#[test]
fn polling_and_upgraded_sessions_see_the_same_packets() {
    struct Broadcast {
        got: HashMap<usize, Vec<u64>>,
        sids: Vec<Sid>,
    }
    impl sim::App<engineio::Server, engineio::Client> for Broadcast {
        fn server_event(&mut self, _: Instant, _: &mut engineio::Server, ev: Event) {
            if let Event::Open { sid, .. } = ev {
                self.sids.push(sid);
            }
        }
        fn client_event(
            &mut self,
            _: Instant,
            c: usize,
            _: &mut engineio::Client,
            ev: ClientEvent,
        ) {
            if let ClientEvent::Message(d) = ev {
                self.got.entry(c).or_default().push(number(&d));
            }
        }
    }
    for_seeds(
        "polling_and_upgraded_sessions_see_the_same_packets",
        "sim_engineio",
        200,
        |seed| {
            let config = sim::Config::new(seed)
                .latency(Duration::from_millis(1 + seed % 15))
                .max_chunk(1 + seed as usize % 700);
            let mut net = Network::new(config, |now, rng| {
                engineio::Server::new(server_config(), Box::new(rng.fork()), now)
            });
            for m in [
                TransportMode::PollingOnly,
                TransportMode::PollingThenUpgrade,
                TransportMode::WebSocketOnly,
            ] {
                net.add_client(move |now, rng| {
                    engineio::Client::new(
                        ClientConfig::new("sim").mode(m),
                        Box::new(rng.fork()),
                        now,
                    )
                });
            }
            let mut app = Broadcast {
                got: HashMap::new(),
                sids: Vec::new(),
            };
            net.run_until_cond(Duration::from_secs(1), &mut app, |n| {
                n.server().session_count() == 3
            });
            // Broadcast while the upgrade may be under way.
            for n in 0..60u64 {
                let sids = app.sids.clone();
                for sid in sids {
                    let data: Data = if n % 5 == 0 {
                        Data::Binary(n.to_be_bytes().to_vec().into())
                    } else {
                        n.to_string().into()
                    };
                    net.server().send(sid, data).map_err(|e| e.to_string())?;
                }
                let step = Duration::from_millis(net.rng().below(20));
                net.run_for(step, &mut app);
            }
            net.run_for(Duration::from_secs(1), &mut app);
            let want: Vec<u64> = (0..60).collect();
            for c in 0..3 {
                if app.got.get(&c) != Some(&want) {
                    return Err(format!("client {c} got {:?}", app.got.get(&c)));
                }
            }
            if net.client(1).transport() != Some(TransportKind::WebSocket) {
                return Err("the upgrading client did not end on WebSocket".into());
            }
            Ok(())
        },
    );
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let config = sim::Config::new(seed)
            .trace(true)
            .jitter(Duration::from_millis(3))
            .max_chunk(50);
        let mut net = Network::new(config, |now, rng| {
            engineio::Server::new(server_config(), Box::new(rng.fork()), now)
        });
        net.add_client(|now, rng| {
            engineio::Client::new(ClientConfig::new("sim"), Box::new(rng.fork()), now)
        });
        let mut app = Echo::default();
        net.run_for(Duration::from_millis(200), &mut app);
        let now = net.now();
        net.client(0).send(now, "hello").unwrap();
        net.run_for(Duration::from_millis(800), &mut app);
        net.trace().to_owned()
    };
    let (x, y) = (run(11), run(11));
    assert!(x.len() > 1000, "the trace records the run");
    assert_eq!(x, y);
    assert_ne!(x, run(12));
}
