//! Ten thousand Socket.IO clients on one server, on the virtual clock: how
//! long one simulated second takes, to show that timers and routing scale.
//!
//! `cargo run --release --example sim_scale -- [--clients 10000] [--seconds 60]`
//!
//! Every client connects over WebSocket, joins `/`, and pings are every 5 s;
//! each second, 1% of the clients emit and the server echoes.

use std::time::{Duration, Instant};

use wsio::{
    engineio::{self, TransportMode},
    sim::{self, Network},
    socketio::{self, ClientConfig, Event, Value},
};

struct Echo {
    echoed: u64,
}

impl sim::App<socketio::Server, socketio::Client> for Echo {
    fn server_event(&mut self, _: Instant, io: &mut socketio::Server, ev: Event) {
        if let Event::Event {
            socket, name, args, ..
        } = ev
        {
            if name == "message" {
                self.echoed += 1;
                let _ = io.emit(socket, "message-back", args);
            }
        }
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let clients = arg("--clients", 10_000) as usize;
    let seconds = arg("--seconds", 60);
    let mut net = Network::new(
        sim::Config::new(1)
            .latency(Duration::from_millis(2))
            .max_chunk(1 << 16),
        |now, rng| {
            let engine = engineio::Config::default()
                .path("/socket.io/")
                .ping_interval(Duration::from_secs(5))
                .ping_timeout(Duration::from_secs(5));
            let config = socketio::Config::default()
                .engine(engine)
                .connect_timeout(Duration::from_secs(30));
            socketio::Server::new(config, Box::new(rng.fork()), now)
        },
    );
    let started = Instant::now();
    for _ in 0..clients {
        net.add_client(|now, rng| {
            let config = ClientConfig::new("sim").mode(TransportMode::WebSocketOnly);
            let mut c = socketio::Client::new(config, Box::new(rng.fork()), now);
            c.socket(now, "/", None).expect("root socket");
            c
        });
    }
    let mut app = Echo { echoed: 0 };
    net.run_for(Duration::from_secs(2), &mut app);
    let connected = net.server().sockets("/").len();
    let setup = started.elapsed();
    let started = Instant::now();
    for _ in 0..seconds {
        for _ in 0..clients / 100 {
            let c = net.rng().below(clients as u64) as usize;
            let now = net.now();
            if let Some(root) = net.client(c).nsp("/") {
                let _ = net
                    .client(c)
                    .emit(now, root, "message", vec![Value::from("hi")]);
            }
        }
        net.run_for(Duration::from_secs(1), &mut app);
    }
    let wall = started.elapsed();
    let still = net.server().sockets("/").len();
    println!(
        "{{\"clients\":{clients},\"connected\":{connected},\"still_connected\":{still},\"simulated_s\":{seconds},\"setup_ms\":{},\"ms_per_simulated_s\":{:.1},\"echoed\":{}}}",
        setup.as_millis(),
        wall.as_secs_f64() * 1000.0 / seconds as f64,
        app.echoed
    );
    assert_eq!(still, clients, "no client may drop on a quiet network");
}
