//! `httpCompression` on polling responses and `perMessageDeflate` on the
//! WebSocket transport.

use std::io::Read;

use super::*;
use crate::{
    engineio::{HttpCompression, Packet, SharedPacket},
    ws::deflate::DeflateConfig,
};

fn deflate_on() -> DeflateConfig {
    DeflateConfig::default().enabled(true)
}

/// What the official client sends: a JSON-like message over 1 KiB.
fn big_text() -> String {
    let mut s = String::from("[\"message\"");
    while s.len() < 3000 {
        s.push_str(",{\"user\":\"someone\",\"text\":\"hello there\"}");
    }
    s.push(']');
    s
}

fn gunzip(body: &[u8]) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(body)
        .read_to_string(&mut s)
        .unwrap();
    s
}

fn inflate_zlib(body: &[u8]) -> String {
    let mut s = String::new();
    flate2::read::ZlibDecoder::new(body)
        .read_to_string(&mut s)
        .unwrap();
    s
}

impl H {
    /// A polling GET for `sid` with these headers, after the server queued
    /// `text` for it.
    fn poll_with(&mut self, sid: &str, text: &str, headers: &[(&str, &str)]) -> Resp {
        let sid = Sid::parse(sid).unwrap();
        self.server.send_text(sid, text).unwrap();
        let conn = self.send(
            "GET",
            &format!("/engine.io/?EIO=4&transport=polling&sid={sid}"),
            headers,
            b"",
        );
        self.response(conn).unwrap()
    }

    /// A WebSocket client with its own config (compression offered or not).
    fn ws_connect_with(&mut self, target: &str, config: ws::Config) -> WsPeer {
        let conn = self.server.accept(self.now, None);
        let ws = ws::Connection::client(
            config,
            ClientRequest::new("localhost", target),
            Box::new(SeededEntropy::new(conn.0)),
        );
        let mut peer = WsPeer {
            conn,
            ws,
            messages: vec![],
            closed: None,
        };
        self.ws_sync(&mut peer);
        peer
    }
}

#[test]
fn polling_responses_are_compressed_as_the_client_accepts() {
    let mut h = H::suite();
    let sid = h.open_polling();
    let text = big_text();
    let payload = format!("4{text}");

    let r = h.poll_with(&sid, &text, &[("Accept-Encoding", "gzip, deflate, br")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=UTF-8"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r.body.len() < payload.len() / 4, "{}", r.body.len());
    assert_eq!(gunzip(&r.body), payload);

    let r = h.poll_with(&sid, &text, &[("Accept-Encoding", "deflate")]);
    assert_eq!(r.header("content-encoding"), Some("deflate"));
    assert_eq!(inflate_zlib(&r.body), payload);

    // No Accept-Encoding, a coding we do not make, or a small body: as is.
    for headers in [&[][..], &[("Accept-Encoding", "br, identity")][..]] {
        let r = h.poll_with(&sid, &text, headers);
        assert_eq!(r.header("content-encoding"), None);
        assert_eq!(r.text(), payload);
    }
    let r = h.poll_with(&sid, "small", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.text(), "4small");

    // A POST's "ok" and the handshake are never worth it.
    let r = h.request("GET", "/engine.io/?EIO=4&transport=polling", b"");
    assert_eq!(r.header("content-encoding"), None);
}

#[test]
fn http_compression_can_be_turned_off_or_tuned() {
    let text = big_text();
    for (hc, coded) in [
        (None, false),
        (Some(HttpCompression::default().threshold(10_000)), false),
        (
            Some(HttpCompression::default().threshold(10).level(1)),
            true,
        ),
    ] {
        let mut h = H::new(suite_config().http_compression(hc));
        let sid = h.open_polling();
        let r = h.poll_with(&sid, &text, &[("Accept-Encoding", "gzip")]);
        assert_eq!(r.header("content-encoding").is_some(), coded, "{hc:?}");
        let body = if coded {
            gunzip(&r.body)
        } else {
            r.text().to_owned()
        };
        assert_eq!(body, format!("4{text}"));
    }
}

#[test]
fn per_message_deflate_is_off_by_default() {
    let mut h = H::suite();
    let client = ws::Config::default().deflate(deflate_on());
    let p = h.ws_connect_with("/engine.io/?EIO=4&transport=websocket", client);
    assert_eq!(p.ws.state(), ws::State::Open);
    assert_eq!(p.ws.deflate_params(), None);
}

#[test]
fn per_message_deflate_compresses_both_ways() {
    let mut h = H::new(suite_config().per_message_deflate(deflate_on()));
    let client = ws::Config::default().deflate(deflate_on());
    let mut p = h.ws_connect_with("/engine.io/?EIO=4&transport=websocket", client);
    assert!(p.ws.deflate_params().is_some());
    let text = big_text();
    // The echo comes back compressed: look at the server's bytes first.
    p.ws.send(ws::Message::text(format!("4{text}"))).unwrap();
    while let Some(ws::Transmit::Data(b)) = p.ws.poll_transmit(h.now) {
        h.server.handle_input(h.now, p.conn, &b);
    }
    h.pump();
    let wire = h.out.get(&p.conn).unwrap().clone();
    let (head, _) = ws::frame::decode_header(&wire).unwrap().unwrap();
    assert_eq!((head.opcode, head.rsv), (ws::OpCode::Text, 4));
    assert!(head.len < 1000, "{}", head.len);
    h.ws_sync(&mut p);
    assert_eq!(texts(&p).last(), Some(&format!("4{text}")));
    // A client that does not offer it still connects, uncompressed.
    let p = h.ws_connect_with(
        "/engine.io/?EIO=4&transport=websocket",
        ws::Config::default(),
    );
    assert_eq!(p.ws.state(), ws::State::Open);
    assert_eq!(p.ws.deflate_params(), None);
}

#[test]
fn shared_packets_are_compressed_per_connection() {
    let mut h = H::new(suite_config().per_message_deflate(deflate_on()));
    h.echo = false;
    let client = ws::Config::default().deflate(deflate_on());
    let mut a = h.ws_connect_with("/engine.io/?EIO=4&transport=websocket", client);
    let mut b = h.ws_connect_with(
        "/engine.io/?EIO=4&transport=websocket",
        ws::Config::default(),
    );
    let sids: Vec<Sid> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Open { sid, .. } => Some(*sid),
            _ => None,
        })
        .collect();
    let text = big_text();
    let shared = SharedPacket::new(Packet::message(text.clone()));
    for sid in &sids {
        h.server.send_shared(*sid, &shared).unwrap();
    }
    h.pump();
    let sizes: Vec<usize> = [&a, &b]
        .iter()
        .map(|p| h.out.get(&p.conn).map_or(0, BytesMut::len))
        .collect();
    assert!(sizes[0] < 1000 && sizes[1] > 3000, "{sizes:?}");
    h.ws_sync(&mut a);
    h.ws_sync(&mut b);
    assert_eq!(texts(&a).last(), Some(&format!("4{text}")));
    assert_eq!(texts(&b).last(), Some(&format!("4{text}")));
}

#[test]
fn a_malformed_offer_is_refused_only_when_compression_is_on() {
    let upgrade = |h: &mut H| {
        let conn = h.send(
            "GET",
            "/engine.io/?EIO=4&transport=websocket",
            &[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Extensions", "permessage-deflate; x=\"a b\""),
            ],
            b"",
        );
        let buf = h.out.get(&conn).unwrap();
        let (head, _) = HeadParser::new(Limits::default())
            .parse_response(buf)
            .unwrap()
            .unwrap();
        head.status
    };
    assert_eq!(upgrade(&mut H::suite()), 101);
    let mut h = H::new(suite_config().per_message_deflate(deflate_on()));
    assert_eq!(upgrade(&mut h), 400);
}

#[test]
fn quiet_websockets_give_compression_state_back_at_the_heartbeat() {
    // The decompressor goes too only if the client compresses each message
    // on its own, which the server may impose.
    let deflate = deflate_on().client_no_context_takeover(true);
    let mut h = H::new(suite_config().per_message_deflate(deflate));
    let client = ws::Config::default().deflate(deflate_on());
    let mut p = h.ws_connect_with("/engine.io/?EIO=4&transport=websocket", client);
    h.ws_text(&mut p, &format!("4{}", big_text()));
    let conn = p.conn;
    let held = |h: &mut H| match h.server.conns.get_mut(&conn).map(|c| &c.kind) {
        Some(ConnKind::Ws(w)) => w.ws.holds_compression_state(),
        _ => panic!("no WebSocket"),
    };
    assert!(held(&mut h));
    // The first heartbeat after the message keeps it (the connection was
    // busy); the one after that, with only pings and pongs, releases it.
    for _ in 0..2 {
        h.advance(300);
        h.ws_sync(&mut p);
        let pongs = texts(&p).iter().filter(|t| *t == "2").count();
        for _ in 0..pongs {
            h.ws_text(&mut p, "3");
        }
        p.messages.clear();
    }
    assert!(!held(&mut h));
    // And it still works.
    h.ws_text(&mut p, &format!("4{}", big_text()));
    assert_eq!(texts(&p).last(), Some(&format!("4{}", big_text())));
}

/// The RSV bits of each frame the server wrote to `conn` since the last
/// sync.
fn rsv_of(h: &H, conn: ConnId) -> Vec<u8> {
    let mut rsv = Vec::new();
    let mut wire = h.out.get(&conn).map_or(&[][..], |b| &b[..]);
    while let Ok(Some((head, hlen))) = ws::frame::decode_header(wire) {
        rsv.push(head.rsv);
        wire = &wire[hlen + head.len as usize..];
    }
    rsv
}

#[test]
fn a_packet_sent_uncompressed_goes_as_it_is_on_the_websocket() {
    let mut h = H::new(suite_config().per_message_deflate(deflate_on()));
    h.echo = false;
    let client = ws::Config::default().deflate(deflate_on());
    let mut p = h.ws_connect_with("/engine.io/?EIO=4&transport=websocket", client);
    h.ws_sync(&mut p);
    let sid = h
        .events
        .iter()
        .find_map(|e| match e {
            Event::Open { sid, .. } => Some(*sid),
            _ => None,
        })
        .unwrap();
    let text = big_text();
    let s = &mut h.server;
    s.send_text_compressed(sid, &text, false).unwrap();
    s.send_text(sid, &text).unwrap();
    s.send_all_compressed(sid, &[Packet::message(text.clone())], false)
        .unwrap();
    s.send_all_compressed(sid, &[Packet::message(text.clone())], true)
        .unwrap();
    let shared = SharedPacket::new(Packet::message(text.clone()));
    let plain = shared.clone().compress(false);
    assert!(shared.may_compress() && !plain.may_compress());
    s.send_shared(sid, &plain).unwrap();
    s.send_shared(sid, &shared).unwrap();
    // A batch of both kinds keeps each packet's choice, in order.
    let mixed = [plain.clone(), plain, shared.clone(), shared];
    s.send_shared_all(sid, &mixed).unwrap();
    h.pump();
    assert_eq!(rsv_of(&h, p.conn), [0, 4, 0, 4, 0, 4, 0, 0, 4, 4]);
    h.ws_sync(&mut p);
    let got: Vec<_> = texts(&p)
        .into_iter()
        .filter(|t| t.starts_with('4'))
        .collect();
    assert_eq!(got, vec![format!("4{text}"); 10]);
}

#[test]
fn a_polling_response_is_compressed_only_if_some_packet_in_it_may_be() {
    let mut h = H::suite();
    let sid_text = h.open_polling();
    let sid = Sid::parse(&sid_text).unwrap();
    let text = big_text();
    let gzip = [("Accept-Encoding", "gzip")];
    let poll = |h: &mut H| {
        let target = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
        let conn = h.send("GET", &target, &gzip, b"");
        h.response(conn).unwrap()
    };

    // Nothing in it may be compressed: as it is, however large.
    h.server.send_text_compressed(sid, &text, false).unwrap();
    h.server
        .send_all_compressed(sid, &[Packet::message(text.clone())], false)
        .unwrap();
    h.server
        .send_shared(
            sid,
            &SharedPacket::new(Packet::message(text.clone())).compress(false),
        )
        .unwrap();
    let r = poll(&mut h);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.text(), vec![format!("4{text}"); 3].join("\x1e"));

    // One small packet that may be makes the whole response compressed,
    // as the official server decides.
    h.server.send_text_compressed(sid, &text, false).unwrap();
    h.server.send_text(sid, "hi").unwrap();
    let r = poll(&mut h);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&r.body), format!("4{text}\x1e4hi"));

    // The choice went with that response.
    h.server.send_text_compressed(sid, &text, false).unwrap();
    let r = poll(&mut h);
    assert_eq!(r.header("content-encoding"), None);
}
