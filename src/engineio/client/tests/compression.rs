//! Compressed long-polling: the client asks for gzip or deflate answers
//! and decodes them, within the same limit as a plain body.

use std::io::Write;

use flate2::{Compression, write::GzEncoder, write::ZlibEncoder};

use super::*;
use crate::http::HttpError;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A 200 answer with this `Content-Encoding` and body.
fn encoded_answer(c: &mut Client, now: Instant, conn: ConnId, coding: &str, body: &[u8]) {
    let mut out = BytesMut::new();
    ResponseHead::new(200)
        .with_header("Content-Type", "text/plain; charset=UTF-8")
        .with_header("Content-Encoding", coding)
        .with_header("Content-Length", body.len().to_string())
        .encode(&mut out);
    out.extend_from_slice(body);
    c.handle_input(now, conn, &out);
}

/// A polling-only client past its handshake; the connection of its poll.
fn polling_client(now: Instant) -> (Client, ConnId) {
    let mut c = Client::new(
        client_config(TransportMode::PollingOnly),
        Box::new(SeededEntropy::new(1)),
        now,
    );
    let get = take_request(&mut c);
    answer(
        &mut c,
        now,
        get,
        &open_packet("abcdefghijklmnopqrst", false),
    );
    let poll = take_request(&mut c);
    events(&mut c);
    (c, poll)
}

fn json(n: usize) -> String {
    let mut s = String::from("[");
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!("{{\"id\":{i},\"user\":\"user{}\"}},", i % 7));
        i += 1;
    }
    s.push(']');
    s
}

#[test]
fn polling_requests_ask_for_gzip_or_deflate_unless_told_not_to() {
    let now = Instant::now();
    let accept = |config: ClientConfig| {
        let mut c = Client::new(config, Box::new(SeededEntropy::new(1)), now);
        let t = drain(&mut c);
        let (head, _) = request_of(&t[1]).expect("a request");
        head.headers
            .get_all("accept-encoding")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect::<Vec<_>>()
    };
    let base = || client_config(TransportMode::PollingOnly);
    assert_eq!(accept(base()), ["gzip, deflate"]);
    assert!(accept(base().http_compression(false)).is_empty());
    // The application's own header is the only one.
    assert_eq!(accept(base().header("Accept-Encoding", "gzip")), ["gzip"]);
    // POSTs ask too (the server answers them "ok", never compressed).
    let (mut c, _) = polling_client(now);
    c.send(now, text("x")).unwrap();
    let t = drain(&mut c);
    let (head, _) = request_of(t.last().unwrap()).expect("a POST");
    assert_eq!(head.method, Method::Post);
    assert_eq!(
        head.headers.get_str("accept-encoding"),
        Some("gzip, deflate")
    );
}

#[test]
fn gzip_and_deflate_answers_are_decoded() {
    let now = Instant::now();
    let big = json(5000);
    let payload = format!("4{big}\u{1e}4small");
    for (coding, body) in [
        ("gzip", gzip(payload.as_bytes())),
        ("x-gzip", gzip(payload.as_bytes())),
        ("deflate", zlib(payload.as_bytes())),
        ("identity", payload.clone().into_bytes()),
    ] {
        let (mut c, poll) = polling_client(now);
        encoded_answer(&mut c, now, poll, coding, &body);
        assert_eq!(
            events(&mut c),
            [
                ClientEvent::Message(text(&big)),
                ClientEvent::Message(text("small"))
            ],
            "{coding}"
        );
        // Polling goes on.
        assert_eq!(kinds(&drain(&mut c)), ["GET polling"], "{coding}");
    }
}

#[test]
fn bad_or_unknown_encodings_end_the_session() {
    let now = Instant::now();
    let good = gzip(b"4hello");
    for (coding, body, why) in [
        (
            "gzip",
            good[..good.len() - 3].to_vec(),
            "invalid gzip or deflate data",
        ),
        ("deflate", good.clone(), "invalid gzip or deflate data"),
        (
            "br",
            good.clone(),
            "a Content-Encoding other than gzip or deflate",
        ),
    ] {
        let (mut c, poll) = polling_client(now);
        encoded_answer(&mut c, now, poll, coding, &body);
        assert_eq!(
            events(&mut c),
            [ClientEvent::Close {
                reason: CloseReason::TransportError,
                error: Some(ClientError::BadResponse(HttpError::BadBody(why)))
            }],
            "{coding}"
        );
    }
}

#[test]
fn a_small_answer_that_inflates_past_64_mib_ends_the_session() {
    let now = Instant::now();
    // 64 MiB and one byte of a packet, about 64 KiB compressed.
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(b"4").unwrap();
    let zeros = vec![b'0'; 1 << 20];
    for _ in 0..64 {
        e.write_all(&zeros).unwrap();
    }
    let bomb = e.finish().unwrap();
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let (mut c, poll) = polling_client(now);
    encoded_answer(&mut c, now, poll, "gzip", &bomb);
    assert_eq!(
        events(&mut c),
        [ClientEvent::Close {
            reason: CloseReason::TransportError,
            error: Some(ClientError::BadResponse(HttpError::BodyTooLarge(64 << 20)))
        }]
    );
}

#[test]
fn against_the_wsio_server_large_answers_cross_compressed() {
    let big = json(20_000);
    for ask in [true, false] {
        let config = client_config(TransportMode::PollingOnly).http_compression(ask);
        let mut n = Net::new(server_config(), config);
        n.open();
        let before = n.from_server;
        let now = n.now;
        for _ in 0..3 {
            n.client.send(now, text(&big)).unwrap();
        }
        n.until(ms(1000), |n| n.received().len() == 3);
        assert_eq!(n.received(), vec![text(&big); 3]);
        let wrote = n.from_server - before;
        if ask {
            assert!(wrote < big.len(), "{wrote} bytes for 3 x {}", big.len());
        } else {
            assert!(wrote > 3 * big.len(), "{wrote} bytes for 3 x {}", big.len());
        }
    }
}
