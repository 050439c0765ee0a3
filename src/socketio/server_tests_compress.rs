//! `compress(false)` from an emit to the engine: on a WebSocket with
//! permessage-deflate those packets leave uncompressed, the others by size.

use super::*;
use crate::ws::deflate::DeflateConfig;

/// A client on `/` whose WebSocket offers permessage-deflate, to a server
/// that accepts it.
fn deflate_peer(h: &mut H) -> Peer {
    let conn = h.io.accept(h.now, None);
    let mut ws = ws::Connection::client(
        ws::Config::default().deflate(DeflateConfig::default().enabled(true)),
        ClientRequest::new("localhost", "/socket.io/?EIO=4&transport=websocket"),
        Box::new(SeededEntropy::new(conn.0)),
    );
    while let Some(ws::Transmit::Data(b)) = ws.poll_transmit(h.now) {
        h.io.handle_input(h.now, conn, &b);
    }
    let mut p = Peer {
        conn,
        ws,
        got: Vec::new(),
        closed: false,
    };
    h.sync(&mut p);
    assert!(p.ws.deflate_params().is_some(), "permessage-deflate agreed");
    h.text(&mut p, "40");
    p.got.clear();
    p
}

/// The RSV bits of the frames waiting for `p`.
fn rsv(h: &H, p: &Peer) -> Vec<u8> {
    let mut out = Vec::new();
    let mut wire = h.out.get(&p.conn).map_or(&[][..], |b| &b[..]);
    while let Ok(Some((head, n))) = ws::frame::decode_header(wire) {
        out.push(head.rsv);
        wire = &wire[n + head.len as usize..];
    }
    out
}

#[test]
fn compress_false_sends_uncompressed_on_a_compressing_websocket() {
    let engine = suite_config()
        .engine
        .per_message_deflate(DeflateConfig::default().enabled(true));
    let mut h = H::new(suite_config().engine(engine));
    let mut p = deflate_peer(&mut h);
    let id = h.connections()[0];
    let big = Value::from("hello there, how are you? ".repeat(100));
    let args = || vec![big.clone()];
    h.io.emit_compressed(id, "e", args(), false).unwrap();
    h.io.emit(id, "e", args()).unwrap();
    h.io.of("/").compress(false).emit("e", args()).unwrap();
    h.io.of("/").emit("e", args()).unwrap();
    h.io.of("/")
        .compress(false)
        .emit_with_ack(h.now, Duration::from_secs(5), "e", args())
        .unwrap();
    // Small packets go as they are anyway.
    h.io.emit(id, "small", vec![]).unwrap();
    h.pump();
    assert_eq!(rsv(&h, &p), [0, 4, 0, 4, 0, 0]);
    h.sync(&mut p);
    let texts = p.texts();
    assert_eq!(texts.len(), 6);
    let event = format!("42[\"e\",{}]", big.to_json());
    assert!(texts[..4].iter().all(|t| *t == event), "{texts:?}");
    assert!(texts[4].starts_with("420[\"e\""), "{}", texts[4]);
}
