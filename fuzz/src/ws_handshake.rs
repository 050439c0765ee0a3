//! The WebSocket opening handshake on arbitrary bytes.
//!
//! * `validate_request` on heads parsed from arbitrary bytes: an accepted
//!   request has a valid key and distinct token subprotocols, and the 101
//!   reply it builds parses back and satisfies `ClientRequest::verify`; a
//!   refused one builds an error reply that parses back with its status.
//! * `ClientRequest::verify` on arbitrary responses (optionally behind a
//!   valid 101 prefix, so the later checks are reached): success means 101,
//!   the right accept key, and an offered subprotocol.
//! * `Connection::server` and `Connection::client` fed arbitrary bytes
//!   (optionally behind a valid request / 101 reply, which reaches the frame
//!   reader), whole and split at arbitrary points: the checked invariants of
//!   `common` hold, and both feeds give the same bytes, events and state.
//! * permessage-deflate negotiation (RFC 7692): arbitrary
//!   `Sec-WebSocket-Extensions` values go to `parse_extensions`, to a server
//!   (`accept_offer`, and in the valid request's head) and to a client
//!   (`Offer::verify`, and in the valid 101's head), each side with
//!   arbitrary settings. Whatever a server accepts is a well-formed answer
//!   within the offer; what a client accepts stays within what it offered;
//!   a client's own offer, accepted by a server, verifies to the same
//!   parameters, and is always accepted by a server that wants compression.

use arbitrary::Arbitrary;
use bytes::BytesMut;
use wsio::{
    entropy::SeededEntropy,
    http::{HeadParser, Limits, ResponseHead},
    ws::{
        Accept, ClientRequest, Config, Connection, Event, HandshakeError,
        deflate::{ClientWindow, DeflateConfig, EXTENSION_NAME, accept_offer, parse_extensions},
        handshake::{accept_key, validate_request},
    },
};

use crate::{
    common::{Checked, Decision},
    ws_connection::DeflateIn,
};

const PROTOCOLS: [&str; 4] = ["chat", "superchat", "v1.json", "x"];

#[derive(Arbitrary, Debug)]
pub enum Prefix {
    /// The bytes as they are.
    Raw,
    /// A valid handshake first (a request for the server, the matching 101
    /// reply for the client), then the bytes.
    Valid,
    /// A valid handshake whose head is left open, so the bytes add headers.
    OpenHead,
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    prefix: Prefix,
    /// Subprotocols the client offers (indices into a fixed list).
    offered: Vec<u8>,
    /// An arbitrary key for `verify`; `None`: a well-formed one.
    key: Option<String>,
    decision: Decision,
    /// Cut points for the split feed.
    cuts: Vec<u16>,
    eof: bool,
    seed: u64,
    small_limits: Option<(u8, u8)>,
    /// `Sec-WebSocket-Extensions` values: in the valid request and in the
    /// valid 101 (those without CR or LF), and on their own.
    extensions: Vec<Vec<u8>>,
    server_deflate: Option<DeflateIn>,
    client_deflate: Option<DeflateIn>,
    data: Vec<u8>,
}

/// Runs the checks on one input.
pub fn run(input: Input) {
    let mut offered: Vec<String> = Vec::new();
    for &i in &input.offered {
        let p = PROTOCOLS[usize::from(i) % PROTOCOLS.len()].to_owned();
        if !offered.contains(&p) {
            offered.push(p);
        }
    }
    let limits = input
        .small_limits
        .map_or(Limits::default(), |(s, h)| Limits {
            max_head_size: usize::from(s) * 8,
            max_headers: usize::from(h % 32),
        });

    check_validate(&input, &offered);
    check_verify(&input, &offered);
    check_negotiation(&input);
    check_server(&input, &offered, limits);
    check_client(&input, &offered, limits);
}

fn deflate_config(d: Option<DeflateIn>) -> DeflateConfig {
    d.map_or_else(DeflateConfig::default, DeflateIn::build)
}

/// The extension values that can go in a head.
fn header_values(input: &Input) -> impl Iterator<Item = &[u8]> {
    input
        .extensions
        .iter()
        .map(Vec::as_slice)
        .filter(|v| !v.contains(&b'\r') && !v.contains(&b'\n'))
}

fn check_negotiation(input: &Input) {
    let values = || input.extensions.iter().map(Vec::as_slice);
    let server = deflate_config(input.server_deflate);
    let client = deflate_config(input.client_deflate);
    if let Ok(exts) = parse_extensions(values()) {
        for e in &exts {
            assert!(!e.name.is_empty(), "an extension without a name");
        }
    }
    // A server's answer to arbitrary offers.
    match accept_offer(&server, values()) {
        Ok(Some(a)) => {
            assert!(server.enabled);
            let p = a.params;
            for bits in [p.server_max_window_bits, p.client_max_window_bits] {
                assert!((8..=15).contains(&bits), "window {bits}");
            }
            assert!(p.server_max_window_bits <= server.server_max_window_bits);
            assert!(p.client_max_window_bits <= server.client_max_window_bits);
            let answer = parse_extensions([a.response.as_bytes()]).expect("our answer parses");
            assert_eq!(answer.len(), 1);
            assert_eq!(answer[0].name, EXTENSION_NAME);
        }
        Ok(None) => {}
        Err(_) => assert!(server.enabled, "a disabled server read the header"),
    }
    // A client's own offer, answered by a server: the same parameters.
    if let Some(offer) = client.offer() {
        let value = offer.header_value();
        match accept_offer(&server, [value.as_bytes()]) {
            Ok(Some(a)) => assert_eq!(
                offer.verify([a.response.as_bytes()]),
                Ok(Some(a.params)),
                "{value} answered {}",
                a.response
            ),
            Ok(None) => assert!(!server.enabled, "{value} declined"),
            Err(e) => panic!("our offer {value} is malformed: {e}"),
        }
        // Arbitrary answers stay within the offer.
        if let Ok(Some(p)) = offer.verify(values()) {
            if let Some(bits) = offer.server_max_window_bits {
                assert!(p.server_max_window_bits <= bits);
            }
            if let ClientWindow::AtMost(bits) = offer.client_max_window_bits {
                assert!(p.client_max_window_bits <= bits);
            }
            assert!(!offer.server_no_context_takeover || p.server_no_context_takeover);
            assert!(!offer.client_no_context_takeover || p.client_no_context_takeover);
            for bits in [p.server_max_window_bits, p.client_max_window_bits] {
                assert!((8..=15).contains(&bits), "window {bits}");
            }
        }
    }
}

fn request_prefix(prefix: &Prefix, offered: &[String], extensions: &[&[u8]]) -> Vec<u8> {
    let mut req = ClientRequest::new("localhost", "/chat?x=1");
    for p in offered {
        req = req.protocol(p.clone());
    }
    for e in extensions {
        req = req.header("Sec-WebSocket-Extensions", e);
    }
    let mut out = BytesMut::new();
    req.head("dGhlIHNhbXBsZSBub25jZQ==").encode(&mut out);
    let mut v = out.to_vec();
    match prefix {
        Prefix::Raw => Vec::new(),
        Prefix::Valid => v,
        Prefix::OpenHead => {
            v.truncate(v.len() - 2);
            v
        }
    }
}

fn check_validate(input: &Input, offered: &[String]) {
    let exts: Vec<&[u8]> = header_values(input).collect();
    let mut bytes = request_prefix(&input.prefix, offered, &exts);
    bytes.extend_from_slice(&input.data);
    let Ok(Some((head, _))) = HeadParser::new(Limits::default()).parse_request(&bytes) else {
        return;
    };
    match validate_request(head.clone()) {
        Ok(up) => {
            assert_eq!(up.head, head);
            let server = deflate_config(input.server_deflate);
            match up.negotiate_deflate(&server) {
                Ok(Some(_)) => assert!(server.enabled),
                Ok(None) => {}
                Err(e) => {
                    assert!(server.enabled, "{e:?} with compression off");
                    assert_eq!(e.status(), 400);
                }
            }
            assert_eq!(up.key().len(), 24);
            for (i, p) in up.protocols.iter().enumerate() {
                assert!(
                    !p.is_empty() && !p.contains([' ', ',', '\t']),
                    "protocol {p:?}"
                );
                assert!(!up.protocols[..i].contains(p), "repeated protocol {p:?}");
            }
            let chosen = up.protocols.first().cloned();
            let accept = chosen
                .clone()
                .map_or_else(Accept::new, |p| Accept::new().protocol(p));
            let res = up.response(&accept);
            let mut out = BytesMut::new();
            res.encode(&mut out);
            let (parsed, n) = HeadParser::new(Limits::default())
                .parse_response(&out)
                .expect("our 101 parses")
                .expect("complete");
            assert_eq!((&parsed, n), (&res, out.len()));
            let client = ClientRequest {
                protocols: up.protocols.clone(),
                ..ClientRequest::new("h", "/")
            };
            assert_eq!(
                client.verify(up.key(), &parsed),
                Ok(chosen),
                "our own 101 refused"
            );
        }
        Err(e) => {
            let status = e.status();
            assert!([400, 405, 426, 431].contains(&status), "{e:?} -> {status}");
            let (res, body) = e.response();
            assert_eq!(res.status, status);
            assert!(!body.is_empty());
            let mut out = BytesMut::new();
            res.encode(&mut out);
            let (parsed, _) = HeadParser::new(Limits::default())
                .parse_response(&out)
                .expect("our error reply parses")
                .expect("complete");
            assert_eq!(parsed, res);
        }
    }
}

fn check_verify(input: &Input, offered: &[String]) {
    let key = input
        .key
        .clone()
        .unwrap_or_else(|| "dGhlIHNhbXBsZSBub25jZQ==".to_owned());
    let mut bytes = match input.prefix {
        Prefix::Raw => Vec::new(),
        Prefix::Valid | Prefix::OpenHead => {
            // A correct 101 whose head the data continues.
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
                accept_key(&key)
            )
            .into_bytes()
        }
    };
    bytes.extend_from_slice(&input.data);
    let Ok(Some((res, _))) = HeadParser::new(Limits::default()).parse_response(&bytes) else {
        return;
    };
    let client = ClientRequest {
        protocols: offered.to_vec(),
        ..ClientRequest::new("h", "/")
    };
    match client.verify(&key, &res) {
        Ok(chosen) => {
            assert_eq!(res.status, 101);
            assert!(res.headers.has_token("upgrade", "websocket"));
            assert!(res.headers.has_token("connection", "upgrade"));
            let got = res.headers.get_str("sec-websocket-accept").map(str::trim);
            assert_eq!(got, Some(accept_key(&key).as_str()));
            if let Some(p) = chosen {
                assert!(offered.contains(&p), "chose {p:?}, offered {offered:?}");
            }
        }
        Err(HandshakeError::UnexpectedStatus(s)) => assert_ne!(s, 101),
        Err(_) => {}
    }
}

/// Feeds `bytes` to a fresh connection made by `make`, split at `cuts`,
/// then EOF if asked; returns the checked connection.
fn feed(
    make: &dyn Fn() -> Connection,
    name: &'static str,
    decision: Decision,
    pieces: &[&[u8]],
    eof: bool,
    preset_open: bool,
) -> Checked {
    let now = crate::base_instant();
    let mut c = Checked::new(make(), name, decision);
    c.opened = preset_open;
    c.pump(now, |_| {});
    for p in pieces {
        c.conn.handle_input(now, p);
        c.pump(now, |_| {});
    }
    if eof {
        c.conn.handle_eof(now);
        c.pump(now, |_| {});
        assert!(c.closed.is_some(), "{name}: no Closed after EOF");
        assert!(c.tcp_closed, "{name}: no Transmit::Close after EOF");
    }
    c
}

fn pieces<'a>(data: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|&c| usize::from(c) % (data.len() + 1))
        .collect();
    points.sort_unstable();
    points.push(data.len());
    let mut out = Vec::new();
    let mut at = 0;
    for p in points {
        out.push(&data[at..p]);
        at = p;
    }
    out
}

/// Whole and split feeds must tell the same story. Only the time of the
/// close deadline could differ, and it is the same `now` for all calls
/// except that each run has its own, so events are compared as they are.
fn same_story(a: &Checked, b: &Checked) {
    assert_eq!(a.wire, b.wire, "{}: bytes differ whole vs split", a.name);
    assert_eq!(
        a.events, b.events,
        "{}: events differ whole vs split",
        a.name
    );
    assert_eq!(a.conn.state(), b.conn.state(), "{}: state differs", a.name);
    assert_eq!(a.tcp_closed, b.tcp_closed);
}

fn check_server(input: &Input, offered: &[String], limits: Limits) {
    let exts: Vec<&[u8]> = header_values(input).collect();
    let mut bytes = request_prefix(&input.prefix, offered, &exts);
    bytes.extend_from_slice(&input.data);
    let config = Config::default()
        .head_limits(limits)
        .deflate(deflate_config(input.server_deflate));
    let make = || Connection::server(config);
    let whole = feed(&make, "server", input.decision, &[&bytes], input.eof, false);
    let split = feed(
        &make,
        "server",
        input.decision,
        &pieces(&bytes, &input.cuts),
        input.eof,
        false,
    );
    same_story(&whole, &split);
    if whole.conn.deflate_params().is_some() {
        assert!(config.deflate.enabled);
        let wire = String::from_utf8_lossy(&whole.wire);
        assert!(wire.contains("\r\nSec-WebSocket-Extensions: permessage-deflate"));
    }
    // Values an HTTP head can carry, in a head of a usual size, which a
    // server without compression does not read and one with it refuses
    // only when malformed.
    let benign = exts
        .iter()
        .all(|v| v.iter().all(|&c| c == b'\t' || (0x20..0x7f).contains(&c)))
        && exts.iter().map(|v| v.len() + 32).sum::<usize>() < 2048;
    let malformed = parse_extensions(exts.iter().copied()).is_err();
    if input.prefix_is_valid()
        && limits == Limits::default()
        && benign
        && !(malformed && config.deflate.enabled)
    {
        assert!(
            whole.upgrade_seen,
            "valid request not reported: {:?}",
            whole.events
        );
    }
    if whole.rejected || (whole.upgrade_seen && !whole.opened) {
        assert!(!whole.events.iter().any(|e| matches!(e, Event::Message(_))));
    }

    // The same bytes on a connection another HTTP stack upgraded.
    let make = || Connection::server_upgraded(config);
    let whole = feed(
        &make,
        "upgraded server",
        input.decision,
        &[&input.data],
        input.eof,
        true,
    );
    let split = feed(
        &make,
        "upgraded server",
        input.decision,
        &pieces(&input.data, &input.cuts),
        input.eof,
        true,
    );
    same_story(&whole, &split);
}

fn check_client(input: &Input, offered: &[String], limits: Limits) {
    let config = Config::default()
        .head_limits(limits)
        .deflate(deflate_config(input.client_deflate));
    let seed = input.seed;
    let offered = offered.to_vec();
    let make = move || {
        let mut req = ClientRequest::new("localhost", "/");
        for p in &offered {
            req = req.protocol(p.clone());
        }
        Connection::client(config, req, Box::new(SeededEntropy::new(seed)))
    };
    // The key the client sent, to build a valid reply.
    let mut probe = make();
    let Some(wsio::ws::Transmit::Data(request)) = probe.poll_transmit(crate::base_instant()) else {
        panic!("client sent no request");
    };
    let (head, _) = HeadParser::new(Limits::default())
        .parse_request(&request)
        .expect("client request parses")
        .expect("complete");
    let up = validate_request(head).expect("client request is valid");

    let mut bytes = match input.prefix {
        Prefix::Raw => Vec::new(),
        Prefix::Valid | Prefix::OpenHead => {
            let mut res = ResponseHead::new(101);
            res.headers.push("Upgrade", "websocket");
            res.headers.push("Connection", "Upgrade");
            res.headers
                .push("Sec-WebSocket-Accept", accept_key(up.key()));
            for e in header_values(input) {
                res.headers.push("Sec-WebSocket-Extensions", e);
            }
            let mut out = BytesMut::new();
            res.encode(&mut out);
            if matches!(input.prefix, Prefix::OpenHead) {
                out.truncate(out.len() - 2);
            }
            out.to_vec()
        }
    };
    bytes.extend_from_slice(&input.data);
    let whole = feed(&make, "client", input.decision, &[&bytes], input.eof, false);
    let split = feed(
        &make,
        "client",
        input.decision,
        &pieces(&bytes, &input.cuts),
        input.eof,
        false,
    );
    same_story(&whole, &split);
    if whole.conn.deflate_params().is_some() {
        assert!(
            config.deflate.enabled,
            "compression the client did not offer"
        );
    }
    let answered = header_values(input).next().is_some();
    if input.prefix_is_valid() && limits == Limits::default() && !answered {
        assert!(whole.opened, "valid 101 not accepted: {:?}", whole.events);
    }

    let seed = input.seed;
    let make = move || Connection::client_upgraded(config, Box::new(SeededEntropy::new(seed)));
    let whole = feed(
        &make,
        "upgraded client",
        input.decision,
        &[&input.data],
        input.eof,
        true,
    );
    let split = feed(
        &make,
        "upgraded client",
        input.decision,
        &pieces(&input.data, &input.cuts),
        input.eof,
        true,
    );
    same_story(&whole, &split);
}

impl Input {
    fn prefix_is_valid(&self) -> bool {
        matches!(self.prefix, Prefix::Valid)
    }
}
