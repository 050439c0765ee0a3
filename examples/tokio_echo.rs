//! Socket.IO on tokio in a dozen lines: an echo with rooms.
//!
//! `cargo run --example tokio_echo` then connect the official client to
//! http://127.0.0.1:3000: `echo` comes back with an ack, `join` puts the
//! socket in a room, `say` goes to everyone in the socket's rooms.

use wsio::socketio::{Config, Event, Value};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let server = wsio_tokio::bind("127.0.0.1:3000", Config::default()).await?;
    println!("READY {}", server.local_addr().map_or(0, |a| a.port()));
    server
        .on_event(|io, ev, _now| {
            let Event::Event {
                socket,
                name,
                args,
                ack,
            } = ev
            else {
                return;
            };
            let room = args.first().and_then(Value::as_str).map(str::to_owned);
            let _ = match (name.as_str(), room, ack) {
                ("join", Some(room), _) => io.join(socket, &room),
                ("say", _, _) => io
                    .rooms(socket)
                    .iter()
                    .try_for_each(|room| io.of("/").to(room).emit("said", args.clone()).map(drop)),
                (_, _, Some(id)) => io.ack(socket, id, args),
                _ => io.emit(socket, &name, args),
            };
        })
        .await
}
