//! The application API on tokio, against wsio's own blocking client: the
//! event stream with a handle, acks awaited as futures (answered and timed
//! out), typed arguments, and a graceful shutdown.

use std::time::Duration;

use wsio::{
    blocking::{Client, ClientOptions},
    socketio::{ClientDisconnectReason, ClientEvent, Config, DisconnectReason, Event, Value},
};
use wsio_tokio::AckError;

/// The next event named `name` (others are skipped), within 5 s.
fn expect(client: &mut Client, name: &str) -> (Vec<Value>, Option<u64>) {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < until {
        match client.next_event(Some(Duration::from_millis(100))) {
            Ok(Some(ClientEvent::Event {
                name: n, args, ack, ..
            })) if n == name => return (args, ack),
            Ok(_) => {}
            Err(e) => panic!("client: {e}"),
        }
    }
    panic!("no {name:?} within 5 s");
}

#[tokio::test(flavor = "current_thread")]
async fn events_handle_acks_typed_and_shutdown() {
    let mut server = wsio_tokio::bind("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    let port = server.local_addr().unwrap().port();
    let handle = server.handle();
    let mut events = server.events();
    let served = tokio::spawn(server);

    let client = std::thread::spawn(move || {
        let mut c = Client::connect(
            &format!("http://127.0.0.1:{port}"),
            ClientOptions::new().reconnection(false),
        )
        .unwrap();
        c.emit("ask", vec![Value::from("q")]).unwrap();
        // The server's question, answered.
        let (args, ack) = expect(&mut c, "question");
        assert_eq!(args, vec![Value::from("q")]);
        c.ack(c.nsp(), ack.expect("an ack id"), vec![Value::from(42)])
            .unwrap();
        assert_eq!(expect(&mut c, "answer").0, vec![Value::from(42)]);
        // Typed arguments: a tuple is an argument list.
        assert_eq!(
            expect(&mut c, "typed").0,
            vec![Value::from(1), Value::from("two")]
        );
        // A question left unanswered times out on the server.
        let _ = expect(&mut c, "unanswered");
        assert_eq!(expect(&mut c, "timed-out").0, vec![Value::from(true)]);
        // The shutdown closes the connection.
        let until = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            assert!(std::time::Instant::now() < until, "no disconnect");
            if let Ok(Some(ClientEvent::Disconnect { reason, .. })) =
                c.next_event(Some(Duration::from_millis(100)))
            {
                assert_eq!(reason, ClientDisconnectReason::TransportClose);
                break;
            }
        }
    });

    let mut socket = None;
    let mut shutdown_seen = false;
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("events within 10 s")
    {
        match ev {
            Event::Connection { socket: s, .. } => socket = Some(s),
            Event::Event {
                socket: s,
                name,
                args,
                ..
            } if name == "ask" => {
                let answer = handle
                    .emit_with_ack(s, "question", args, Duration::from_secs(2))
                    .await
                    .unwrap();
                handle.emit(s, "answer", answer).await.unwrap();
                handle.emit_typed(s, "typed", &(1, "two")).await.unwrap();
                let lost = handle
                    .emit_with_ack(s, "unanswered", vec![], Duration::from_millis(200))
                    .await;
                assert_eq!(lost, Err(AckError::Timeout));
                handle
                    .emit(s, "timed-out", vec![Value::from(true)])
                    .await
                    .unwrap();
                // Give the client a moment to read it, then shut down.
                tokio::time::sleep(Duration::from_millis(200)).await;
                handle.shutdown().await.unwrap();
            }
            Event::Disconnect { reason, .. } => {
                assert_eq!(reason, DisconnectReason::ServerShuttingDown);
                shutdown_seen = true;
            }
            _ => {}
        }
    }
    assert!(socket.is_some());
    assert!(shutdown_seen, "the socket left with 'server shutting down'");
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("the server returns after its shutdown")
        .unwrap()
        .unwrap();
    tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap();
    // Commands after the end say so.
    assert!(handle.emit(socket.unwrap(), "x", vec![]).await.is_err());
}
