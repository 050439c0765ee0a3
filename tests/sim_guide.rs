//! The complete example of docs/simulation.md: testing an application's own
//! Socket.IO handlers under loss, partitions and a server restart. Keep the
//! two in step.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use wsio::{
    engineio,
    sim::{self, Network},
    socketio::{self, ClientConfig, ClientEvent, Event, Value},
};

/// The application under test: a guest book. Clients `sign` with a name
/// and an id; the server stores each signature once (ids make retries
/// harmless), acknowledges it, and tells everyone the new count.
#[derive(Default)]
struct GuestBook {
    /// Server state (kept across restarts, like a database would be).
    signatures: BTreeMap<u64, String>,
    /// What the clients saw: acknowledged ids, and per client the counts
    /// announced.
    acked: BTreeSet<u64>,
    counts: BTreeMap<usize, Vec<u64>>,
}

impl sim::App<socketio::Server, socketio::Client> for GuestBook {
    fn server_event(&mut self, _now: Instant, io: &mut socketio::Server, ev: Event) {
        if let Event::Event {
            socket,
            name,
            args,
            ack,
        } = ev
        {
            if name == "sign" {
                let (Some(id), Some(who)) = (args[0]["id"].as_u64(), args[0]["name"].as_str())
                else {
                    return;
                };
                self.signatures.entry(id).or_insert_with(|| who.to_owned());
                if let Some(ack) = ack {
                    let _ = io.ack(socket, ack, vec![Value::from(id)]);
                }
                let count = self.signatures.len() as u64;
                let _ = io.of("/").emit("count", vec![Value::from(count)]);
            }
        }
    }

    fn client_event(
        &mut self,
        _now: Instant,
        client: usize,
        _c: &mut socketio::Client,
        ev: ClientEvent,
    ) {
        match ev {
            ClientEvent::Ack { args, .. } => {
                if let Some(id) = args[0].as_u64() {
                    self.acked.insert(id);
                }
            }
            ClientEvent::Event { name, args, .. } if name == "count" => {
                self.counts
                    .entry(client)
                    .or_default()
                    .push(args[0].as_u64().unwrap_or(0));
            }
            _ => {}
        }
    }
}

fn new_server(now: Instant, rng: &mut sim::Rng) -> socketio::Server {
    let engine = engineio::Config::default()
        .path("/socket.io/")
        .ping_interval(Duration::from_millis(500))
        .ping_timeout(Duration::from_millis(500));
    socketio::Server::new(
        socketio::Config::default().engine(engine),
        Box::new(rng.fork()),
        now,
    )
}

fn new_client(now: Instant, rng: &mut sim::Rng) -> socketio::Client {
    let config = ClientConfig::new("guestbook.test")
        .reconnection_delay(Duration::from_millis(200))
        .reconnection_delay_max(Duration::from_secs(1));
    let mut c = socketio::Client::new(config, Box::new(rng.fork()), now);
    c.socket(now, "/", None)
        .expect("a fresh client accepts a socket");
    c
}

/// One seeded run: three guests sign 30 times between them while the
/// network drops connections, one guest is cut off for two seconds, and
/// the server restarts. Every acknowledged signature must be stored, no id
/// twice, and the counts each guest hears must never go down.
fn guest_book_survives(seed: u64) {
    let config = sim::Config::new(seed)
        .latency(Duration::from_millis(5))
        .jitter(Duration::from_millis(10))
        .reset_rate(0.001);
    let mut net = Network::new(config, new_server);
    for _ in 0..3 {
        net.add_client(new_client);
    }
    net.partition_in(Duration::from_secs(1), 2, Duration::from_secs(2));
    net.restart_server_in(Duration::from_secs(3));

    let mut app = GuestBook::default();
    for id in 0..30u64 {
        net.run_for(Duration::from_millis(150), &mut app);
        let guest = (id % 3) as usize;
        let now = net.now();
        let root = net.client(guest).nsp("/").expect("root socket");
        let sig = Value::object([
            ("id", Value::from(id)),
            ("name", Value::from(format!("guest {guest}"))),
        ]);
        let _ = net.client(guest).emit_with_ack(
            now,
            root,
            "sign",
            vec![sig],
            Some(Duration::from_secs(5)),
        );
    }
    net.set_reset_rate(0.0);
    net.run_for(Duration::from_secs(10), &mut app);

    for id in &app.acked {
        assert!(
            app.signatures.contains_key(id),
            "seed {seed}: signature {id} acknowledged but not stored"
        );
    }
    // Signatures sent while disconnected wait in the send buffer and go out
    // on reconnection. Those written to a connection that has already died
    // (cut off, or the server restarted) are lost until the heartbeat
    // notices, up to a second later, as with the official client without
    // retries: a bound, not an exact count. Over seeds 0..400 the fewest
    // stored was 18 of 30, so half is a safe floor; the run of seeds below
    // must never lose an acknowledged one (checked above).
    assert!(
        app.signatures.len() >= 15,
        "seed {seed}: only {} signatures stored",
        app.signatures.len()
    );
    for (client, counts) in &app.counts {
        assert!(
            counts.windows(2).all(|w| w[0] <= w[1]),
            "seed {seed}: client {client} saw counts {counts:?}"
        );
    }
}

#[test]
fn guest_book_under_loss_partitions_and_a_restart() {
    for seed in 0..50 {
        guest_book_survives(seed);
    }
}
