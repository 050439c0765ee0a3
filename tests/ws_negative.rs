//! Malformed input against the WebSocket server: each case gets its HTTP
//! status or close code, first on the bare machine, then over real TCP
//! against a running server that must keep serving everyone else.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    ops::ControlFlow,
    thread,
    time::{Duration, Instant},
};

use wsio::{
    blocking::WebSocket,
    http::HeadParser,
    machine::drain,
    ws::{Accept, CloseCode, Config, Connection, Event, Message, Transmit, frame},
};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn request_with(extra: &str) -> Vec<u8> {
    format!(
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
    )
    .into_bytes()
}

fn raw_request(head: &str) -> Vec<u8> {
    head.replace('\n', "\r\n").into_bytes()
}

/// A masked client frame with a fixed key.
fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    let mask = [0x11, 0x22, 0x33, 0x44];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Status(u16),
    Close(u16),
}

struct Case {
    name: &'static str,
    /// Sent after a valid handshake when `handshake` is true, else alone.
    handshake: bool,
    input: Vec<u8>,
    expect: Expect,
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// The limits the table is written against (small, to keep it fast).
fn config() -> Config {
    Config::default()
        .max_frame_size(64 * 1024)
        .max_message_size(128 * 1024)
        .max_fragments(1000)
}

fn cases() -> Vec<Case> {
    use Expect::*;
    let h = |name, input, code| Case {
        name,
        handshake: false,
        input,
        expect: Status(code),
    };
    let f = |name, input, code| Case {
        name,
        handshake: true,
        input,
        expect: Close(code),
    };
    let many_headers: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let empty_fragments = {
        let mut v = frame(0x01, b"");
        for _ in 0..2000 {
            v.extend(frame(0x00, b""));
        }
        v
    };
    let mut huge_len = vec![0x82, 0xFF];
    huge_len.extend_from_slice(&(1u64 << 40).to_be_bytes());
    huge_len.extend_from_slice(&[1, 2, 3, 4]);
    let mut msb_len = vec![0x82, 0xFF];
    msb_len.extend_from_slice(&(1u64 << 63).to_be_bytes());
    msb_len.extend_from_slice(&[1, 2, 3, 4]);
    let mut unmasked = vec![0x81, 0x02];
    unmasked.extend_from_slice(b"hi");
    vec![
        h(
            "POST upgrade",
            raw_request(
                "POST / HTTP/1.1\nHost: x\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Version: 13\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n\n",
            ),
            405,
        ),
        h(
            "HTTP/1.0",
            raw_request(
                "GET / HTTP/1.0\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Version: 13\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n\n",
            ),
            400,
        ),
        h(
            "no Upgrade header",
            raw_request(
                "GET / HTTP/1.1\nHost: x\nConnection: Upgrade\nSec-WebSocket-Version: 13\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n\n",
            ),
            400,
        ),
        h(
            "Upgrade: h2c",
            raw_request(
                "GET / HTTP/1.1\nHost: x\nUpgrade: h2c\nConnection: Upgrade\nSec-WebSocket-Version: 13\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n\n",
            ),
            400,
        ),
        h(
            "no Connection: Upgrade",
            raw_request(
                "GET / HTTP/1.1\nHost: x\nUpgrade: websocket\nConnection: keep-alive\nSec-WebSocket-Version: 13\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n\n",
            ),
            400,
        ),
        h(
            "version 8",
            raw_request(
                "GET / HTTP/1.1\nHost: x\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Version: 8\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n\n",
            ),
            426,
        ),
        h(
            "no version",
            raw_request(
                "GET / HTTP/1.1\nHost: x\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n\n",
            ),
            426,
        ),
        h(
            "no key",
            raw_request(
                "GET / HTTP/1.1\nHost: x\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Version: 13\n\n",
            ),
            400,
        ),
        h(
            "key not base64",
            raw_request(
                "GET / HTTP/1.1\nHost: x\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Version: 13\nSec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!!!\n\n",
            ),
            400,
        ),
        h(
            "key of 15 bytes",
            raw_request(
                "GET / HTTP/1.1\nHost: x\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Version: 13\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\n\n",
            ),
            400,
        ),
        h(
            "protocol with 50,000 spaces (ws CVE-2021-32640)",
            request_with(&format!(
                "Sec-WebSocket-Protocol: a{}b\r\n",
                " ".repeat(50_000).chars().take(15_000).collect::<String>()
            )),
            400,
        ),
        h(
            "duplicate subprotocol",
            request_with("Sec-WebSocket-Protocol: chat, chat\r\n"),
            400,
        ),
        h(
            "100 headers (ws CVE-2024-37890)",
            request_with(&many_headers),
            431,
        ),
        h(
            "head over 16 KiB (tungstenite CVE-2023-43669)",
            request_with(&format!("X-Long: {}\r\n", "a".repeat(20_000))),
            431,
        ),
        h(
            "garbage request line",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
            400,
        ),
        h(
            "NUL in header name",
            raw_request("GET / HTTP/1.1\nHo\0st: x\n\n"),
            400,
        ),
        f("unmasked client frame", unmasked, 1002),
        f("RSV1 without extension", frame(0xC1, b"hi"), 1002),
        f("RSV2", frame(0xA1, b"hi"), 1002),
        f("RSV3", frame(0x91, b"hi"), 1002),
        f("reserved data opcode 3", frame(0x83, b""), 1002),
        f("reserved control opcode 0xB", frame(0x8B, b""), 1002),
        f("fragmented ping", frame(0x09, b"x"), 1002),
        f("ping of 126 bytes", frame(0x89, &[0; 126]), 1002),
        f("close payload of one byte", frame(0x88, &[3]), 1002),
        f(
            "close code 999",
            frame(0x88, &close_payload(999, b"")),
            1002,
        ),
        f(
            "close code 1005",
            frame(0x88, &close_payload(1005, b"")),
            1002,
        ),
        f(
            "close code 1006",
            frame(0x88, &close_payload(1006, b"")),
            1002,
        ),
        f(
            "close code 2000",
            frame(0x88, &close_payload(2000, b"")),
            1002,
        ),
        f(
            "close code 5000",
            frame(0x88, &close_payload(5000, b"")),
            1002,
        ),
        f(
            "close reason not UTF-8",
            frame(0x88, &close_payload(1000, b"\xff")),
            1007,
        ),
        f("text not UTF-8", frame(0x81, b"ok\xc0\xafok"), 1007),
        f(
            "text ends mid-character",
            frame(0x81, "é".as_bytes().split_at(1).0),
            1007,
        ),
        f(
            "invalid UTF-8 in the second fragment",
            cat(&[
                frame(0x01, b"fine"),
                frame(0x00, b"\xf4\x90"),
                frame(0x80, b"more"),
            ]),
            1007,
        ),
        f("continuation with no message", frame(0x80, b"x"), 1002),
        f(
            "text inside a fragmented message",
            cat(&[frame(0x01, b"a"), frame(0x81, b"b")]),
            1002,
        ),
        f("64-bit length with MSB set", msb_len, 1002),
        f(
            "2^40-byte declared length (rust-websocket CVE-2022-35922)",
            huge_len,
            1009,
        ),
        f(
            "frame over max_frame_size",
            frame(0x82, &vec![0; 64 * 1024 + 1]),
            1009,
        ),
        f(
            "fragments over max_message_size",
            cat(&[
                frame(0x02, &vec![0; 60_000]),
                frame(0x00, &vec![0; 60_000]),
                frame(0x80, &vec![0; 60_000]),
            ]),
            1009,
        ),
        f(
            "2000 empty fragments (ws CVE-2026-48779)",
            empty_fragments,
            1009,
        ),
    ]
}

/// What the server wrote: an HTTP status, or the code of its close frame.
fn outcome(output: &[u8], after_handshake: bool) -> Option<Expect> {
    let mut rest = output;
    if after_handshake || output.starts_with(b"HTTP/") {
        let (head, used) = HeadParser::new(Default::default())
            .parse_response(output)
            .ok()??;
        if head.status != 101 {
            return Some(Expect::Status(head.status));
        }
        rest = &output[used..];
    }
    while let Ok(Some((h, n))) = frame::decode_header(rest) {
        let payload = rest.get(n..n + h.len as usize)?;
        if h.opcode == frame::OpCode::Close {
            return Some(Expect::Close(u16::from_be_bytes([payload[0], payload[1]])));
        }
        rest = &rest[n + h.len as usize..];
    }
    None
}

#[test]
fn at_least_thirty_cases() {
    assert!(cases().len() >= 30, "{}", cases().len());
}

#[test]
fn each_case_on_the_bare_machine() {
    for case in cases() {
        for step in [usize::MAX, 1] {
            let now = Instant::now();
            let mut s = Connection::server(config());
            let mut out = Vec::new();
            let mut input = if case.handshake {
                request_with("")
            } else {
                vec![]
            };
            input.extend_from_slice(&case.input);
            let mut closed = false;
            for piece in input.chunks(step.min(input.len()).max(1)) {
                s.handle_input(now, piece);
                drain(
                    &mut s,
                    now,
                    |_, t| {
                        match t {
                            Transmit::Data(b) => out.extend_from_slice(&b),
                            Transmit::Close => closed = true,
                        }
                        ControlFlow::Continue(())
                    },
                    |s, ev| {
                        if let Event::Upgrade(_) = ev {
                            s.accept(now, Accept::new()).unwrap();
                        }
                    },
                );
            }
            assert_eq!(
                outcome(&out, case.handshake),
                Some(case.expect),
                "{} (step {step})",
                case.name
            );
            // Framing errors end TCP at once; others wait for the peer's close.
            if let Expect::Status(_) = case.expect {
                assert!(closed, "{}: the connection must end", case.name);
            }
        }
    }
}

#[test]
fn client_rejects_masked_server_frames_and_bad_accept() {
    use wsio::{entropy::SeededEntropy, ws::ClientRequest};
    let now = Instant::now();
    let mut c = Connection::client(
        config(),
        ClientRequest::new("x", "/"),
        Box::new(SeededEntropy::new(1)),
    );
    let Some(Transmit::Data(req)) = c.poll_transmit(now) else {
        panic!()
    };
    let key = String::from_utf8_lossy(&req)
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ").map(str::to_owned))
        .unwrap();
    let accept = wsio::ws::handshake::accept_key(&key);
    let mut input = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").into_bytes();
    input.extend(frame(0x81, b"masked"));
    c.handle_input(now, &input);
    let mut code = None;
    while let Some(ev) = c.poll_event(now) {
        if let Event::Closed(cl) = ev {
            code = Some(cl.code);
        }
    }
    assert_eq!(code, Some(CloseCode::PROTOCOL));

    let mut c = Connection::client(
        config(),
        ClientRequest::new("x", "/"),
        Box::new(SeededEntropy::new(1)),
    );
    c.poll_transmit(now);
    c.handle_input(now, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n");
    assert!(matches!(c.poll_event(now), Some(Event::Closed(cl)) if cl.error.is_some()));
    assert_eq!(c.poll_transmit(now), Some(Transmit::Close));
}

/// A threaded echo server on the blocking driver.
fn spawn_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let Ok(mut ws) =
                    WebSocket::accept_with(stream, config().max_send_queue(256 * 1024), |_| {
                        Ok(Accept::new())
                    })
                else {
                    return;
                };
                while let Ok(m) = ws.read() {
                    if ws.send(m).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

fn read_all(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn echo_works(port: u16) {
    let mut ws = WebSocket::connect(&format!("ws://127.0.0.1:{port}/")).unwrap();
    ws.send(Message::text("still here")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("still here"));
}

#[test]
fn each_case_over_tcp_and_the_server_keeps_serving() {
    let port = spawn_server();
    let mut bystander = WebSocket::connect(&format!("ws://127.0.0.1:{port}/")).unwrap();
    for case in cases() {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        if case.handshake {
            s.write_all(&request_with("")).unwrap();
        }
        // The server may stop reading early; later writes may fail.
        let _ = s.write_all(&case.input);
        if let Expect::Close(_) = case.expect {
            // Answer the server's close as a well-behaved peer would.
            let _ = s.write_all(&frame(0x88, &close_payload(1000, b"")));
        }
        let out = read_all(&mut s);
        assert_eq!(
            outcome(&out, case.handshake),
            Some(case.expect),
            "{}",
            case.name
        );
        bystander.send(Message::text(case.name)).unwrap();
        assert_eq!(bystander.read().unwrap(), Message::text(case.name));
    }
    echo_works(port);
}

#[test]
fn a_header_dripped_byte_by_byte_is_refused_in_linear_time() {
    // tungstenite CVE-2023-43669: re-parsing on every read was quadratic.
    let port = spawn_server();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    let head = request_with(&format!("X-Long: {}\r\n", "a".repeat(17_000)));
    let started = Instant::now();
    for chunk in head.chunks(16) {
        if s.write_all(chunk).is_err() {
            break;
        }
    }
    let out = read_all(&mut s);
    assert_eq!(outcome(&out, false), Some(Expect::Status(431)));
    assert!(started.elapsed() < Duration::from_secs(10));
    echo_works(port);
}

#[test]
fn a_peer_that_never_reads_cannot_grow_server_memory() {
    // ws-rs CVE-2020-35896. The server's send queue is capped at 256 KiB;
    // its driver blocks on a full socket instead of buffering, and then
    // stops reading, so our writes stall instead of piling up in memory.
    let port = spawn_server();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(&request_with("")).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let msg = frame(0x82, &vec![7u8; 60_000]);
    let mut sent = 0usize;
    while sent < 1 << 30 {
        if s.write_all(&msg).is_err() {
            break;
        }
        sent += msg.len();
    }
    assert!(
        sent < 1 << 30,
        "the server kept reading {sent} bytes it could not echo"
    );
    echo_works(port);
}
