//! Bytes for the server targets, built by hand: HTTP requests of the
//! Engine.IO kind (well-formed, with arbitrary methods, sids, queries,
//! headers and bodies) and masked WebSocket frames of any shape; and a
//! reader that checks what a server writes back on a connection (HTTP
//! responses that parse, polling payloads that decode, then the frames of
//! an upgraded connection through a client `ws::Connection`).

use std::{
    ops::ControlFlow,
    time::{Duration, Instant},
};

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use wsio::{
    engineio::{DecodeError, Packet, PacketType, Sid, decode_payload, encode_payload},
    entropy::SeededEntropy,
    http::{HeadParser, Limits, RequestHead, client::ResponseReader},
    machine::drain,
    ws::{self, Connection, Error},
};

/// Every Engine.IO packet type, for picking one from a fuzzed byte.
pub(crate) const TYPES: [PacketType; 7] = [
    PacketType::Open,
    PacketType::Close,
    PacketType::Ping,
    PacketType::Pong,
    PacketType::Message,
    PacketType::Upgrade,
    PacketType::Noop,
];

/// An Engine.IO packet of any type, text or binary.
#[derive(Arbitrary, Debug, Clone)]
pub enum EioPacket {
    Text {
        kind: u8,
        text: String,
    },
    Binary(Vec<u8>),
    Ping,
    Pong,
    /// `2probe`.
    Probe,
    /// `5`.
    Upgrade,
    Close,
}

impl EioPacket {
    pub fn build(&self) -> Packet {
        match self {
            EioPacket::Text { kind, text } => {
                Packet::with_text(TYPES[usize::from(*kind) % TYPES.len()], text.clone())
            }
            EioPacket::Binary(b) => Packet::message(b.clone()),
            EioPacket::Ping => Packet::new(PacketType::Ping),
            EioPacket::Pong => Packet::new(PacketType::Pong),
            EioPacket::Probe => Packet::with_text(PacketType::Ping, "probe"),
            EioPacket::Upgrade => Packet::new(PacketType::Upgrade),
            EioPacket::Close => Packet::new(PacketType::Close),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum MethodIn {
    Get,
    Post,
    Options,
    Put,
    Head,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum PathIn {
    /// The server's path.
    Engine,
    /// A path under it handed to the application.
    Bypass,
    /// Another path.
    Other,
    Arbitrary(String),
}

#[derive(Arbitrary, Debug, Clone)]
pub enum SidIn {
    None,
    /// The n-th sid the server ever opened (any, if none yet).
    Known(u8),
    /// A well-formed sid the server never gave.
    Unknown,
    Arbitrary(String),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum TransportIn {
    Polling,
    WebSocket,
    Missing,
    Other,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum BodyIn {
    None,
    Payload(Vec<EioPacket>),
    Raw(Vec<u8>),
}

/// A request the Engine.IO way; `upgrade` adds the WebSocket handshake
/// headers.
#[derive(Arbitrary, Debug, Clone)]
pub struct Req {
    pub method: MethodIn,
    pub path: PathIn,
    pub sid: SidIn,
    pub transport: TransportIn,
    pub eio: Option<u8>,
    pub extra_query: Option<String>,
    pub upgrade: bool,
    pub http10: bool,
    /// `Connection: keep-alive` / `close`.
    pub connection: Option<bool>,
    pub origin: Option<String>,
    /// `application/octet-stream` if true, `text/plain` if false.
    pub octet_stream: Option<bool>,
    pub body: BodyIn,
    pub chunked: bool,
}

impl Req {
    /// The request's bytes. `path` is the server's (with its trailing
    /// slash), `bypass` a path under it the application serves.
    pub fn encode(&self, path: &str, bypass: &str, sids: &[Sid], seed: u64) -> Vec<u8> {
        let method = match self.method {
            MethodIn::Get => "GET",
            MethodIn::Post => "POST",
            MethodIn::Options => "OPTIONS",
            MethodIn::Put => "PUT",
            MethodIn::Head => "HEAD",
        };
        let target_path = match &self.path {
            PathIn::Engine => path.to_owned(),
            PathIn::Bypass => bypass.to_owned(),
            PathIn::Other => "/elsewhere".to_owned(),
            PathIn::Arbitrary(s) => format!("/{}", clean(s)),
        };
        let mut query: Vec<String> = Vec::new();
        if let Some(e) = self.eio {
            query.push(format!("EIO={}", if e < 200 { 4 } else { e % 10 }));
        }
        match self.transport {
            TransportIn::Polling => query.push("transport=polling".into()),
            TransportIn::WebSocket => query.push("transport=websocket".into()),
            TransportIn::Missing => {}
            TransportIn::Other => query.push("transport=flash".into()),
        }
        match &self.sid {
            SidIn::None => {}
            SidIn::Known(i) => {
                if let Some(s) = sids.get(usize::from(*i) % sids.len().max(1)) {
                    query.push(format!("sid={s}"));
                }
            }
            SidIn::Unknown => {
                let s = Sid::generate(&mut SeededEntropy::new(seed ^ 0x5eed));
                query.push(format!("sid={s}"));
            }
            SidIn::Arbitrary(s) => query.push(format!("sid={}", clean(s))),
        }
        if let Some(q) = &self.extra_query {
            query.push(clean(q));
        }
        let mut out = format!(
            "{method} {target_path}?{} HTTP/1.{}\r\nHost: localhost\r\n",
            query.join("&"),
            if self.http10 { 0 } else { 1 }
        );
        if self.upgrade {
            out.push_str(
                "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
            );
        } else if let Some(keep) = self.connection {
            out.push_str(if keep {
                "Connection: keep-alive\r\n"
            } else {
                "Connection: close\r\n"
            });
        }
        if let Some(o) = &self.origin {
            // Control characters are kept (the server refuses them), line
            // breaks are not (they would end the head).
            let o: String = o
                .chars()
                .filter(|c| *c != '\r' && *c != '\n')
                .take(32)
                .collect();
            out.push_str(&format!("Origin: {o}\r\n"));
        }
        match self.octet_stream {
            Some(true) => out.push_str("Content-Type: application/octet-stream\r\n"),
            Some(false) => out.push_str("Content-Type: text/plain;charset=UTF-8\r\n"),
            None => {}
        }
        let body: Vec<u8> = match &self.body {
            BodyIn::None => Vec::new(),
            BodyIn::Payload(p) => {
                let packets: Vec<Packet> = p.iter().take(8).map(EioPacket::build).collect();
                if packets.is_empty() {
                    Vec::new()
                } else {
                    encode_payload(&packets).to_vec()
                }
            }
            BodyIn::Raw(b) => b.iter().take(256).copied().collect(),
        };
        let mut out = out.into_bytes();
        if self.chunked && !body.is_empty() {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
            out.extend_from_slice(&body);
            out.extend_from_slice(b"\r\n0\r\n\r\n");
        } else {
            if !body.is_empty() || matches!(self.method, MethodIn::Post) {
                out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&body);
        }
        out
    }

    /// The request parsed, as an embedding HTTP server would give it.
    pub fn head_and_body(
        &self,
        path: &str,
        bypass: &str,
        sids: &[Sid],
        seed: u64,
    ) -> Option<(RequestHead, Bytes)> {
        let raw = self.encode(path, bypass, sids, seed);
        let (head, used) = HeadParser::new(Limits::default())
            .parse_request(&raw)
            .ok()??;
        let mut rest = BytesMut::from(&raw[used..]);
        let framing = wsio::http::body::Framing::of_request(&head.headers).ok()?;
        let mut reader = wsio::http::body::BodyReader::new(framing, 1 << 20).ok()?;
        let body = reader.read(&mut rest).ok()??;
        Some((head, body))
    }
}

/// Text usable in a request line: no spaces, no control characters.
fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .take(32)
        .collect()
}

/// A WebSocket frame from a client (masked), of any shape.
#[derive(Arbitrary, Debug, Clone)]
pub enum FrameIn {
    /// One Engine.IO packet as a whole text (or binary) frame.
    Packet(EioPacket),
    /// A text message in two fragments, cut at `cut`.
    Fragmented {
        text: String,
        cut: u8,
    },
    Ping(Vec<u8>),
    Close {
        code: Option<u16>,
        reason: String,
    },
    /// Any header bits and payload.
    Raw {
        fin: bool,
        rsv: u8,
        opcode: u8,
        masked: bool,
        payload: Vec<u8>,
    },
}

impl FrameIn {
    pub fn encode(&self, key: [u8; 4]) -> Vec<u8> {
        match self {
            FrameIn::Packet(p) => {
                let p = p.build();
                match &p.data {
                    wsio::engineio::Data::Binary(b) => frame(true, 0, 2, Some(key), b),
                    wsio::engineio::Data::Text(t) => {
                        let mut payload = vec![p.kind.as_char()];
                        payload.extend_from_slice(t.as_bytes());
                        frame(true, 0, 1, Some(key), &payload)
                    }
                }
            }
            FrameIn::Fragmented { text, cut } => {
                let b = text.as_bytes();
                let cut = usize::from(*cut).min(b.len());
                let mut out = frame(false, 0, 1, Some(key), &b[..cut]);
                out.extend(frame(true, 0, 0, Some(key), &b[cut..]));
                out
            }
            FrameIn::Ping(p) => frame(true, 0, 9, Some(key), &p[..p.len().min(125)]),
            FrameIn::Close { code, reason } => {
                let mut payload = Vec::new();
                if let Some(c) = code {
                    payload.extend_from_slice(&c.to_be_bytes());
                    payload.extend(reason.bytes().take(100));
                }
                frame(true, 0, 8, Some(key), &payload)
            }
            FrameIn::Raw {
                fin,
                rsv,
                opcode,
                masked,
                payload,
            } => frame(
                *fin,
                rsv & 7,
                opcode & 15,
                masked.then_some(key),
                &payload[..payload.len().min(512)],
            ),
        }
    }
}

/// One frame: header, optional masking key, payload (masked with it).
pub fn frame(fin: bool, rsv: u8, opcode: u8, key: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let m = if key.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(m | n as u8),
        n @ 126..=0xffff => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match key {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// What a client sees of one server connection: HTTP responses, then
/// (after a 101, or from the start for a connection the server upgraded
/// itself) WebSocket frames, read by a client connection whose own output
/// (close replies, pongs) goes back to the server.
pub enum Reader {
    Http {
        reader: Box<ResponseReader>,
        buf: BytesMut,
    },
    Ws(Box<Connection>),
}

impl Reader {
    pub fn http() -> Reader {
        Reader::Http {
            reader: Box::new(ResponseReader::new(Limits::default(), 64 << 20)),
            buf: BytesMut::new(),
        }
    }

    pub fn ws(seed: u64) -> Reader {
        let config = ws::Config::default()
            .max_message_size(64 << 20)
            .max_frame_size(64 << 20)
            .close_timeout(Duration::from_secs(3600));
        Reader::Ws(Box::new(Connection::client_upgraded(
            config,
            Box::new(SeededEntropy::new(seed)),
        )))
    }

    /// Reads what the server wrote; returns the bytes the client answers
    /// with, and each Engine.IO packet it received over WebSocket (`Err`
    /// for a text frame that is not one: the server never sends that).
    /// Panics on a response that does not parse, a polling payload that does
    /// not decode, or frames a client must refuse.
    pub fn read(
        &mut self,
        now: Instant,
        data: &[u8],
        seed: u64,
        name: &str,
    ) -> (Vec<Bytes>, Vec<Result<Packet, DecodeError>>) {
        let mut answer = Vec::new();
        let mut packets = Vec::new();
        let mut upgraded = None;
        match self {
            Reader::Http { reader, buf } => {
                buf.extend_from_slice(data);
                loop {
                    match reader.read(buf) {
                        Ok(None) => break,
                        Ok(Some((head, body))) => {
                            let polling = head
                                .headers
                                .get("content-type")
                                .is_some_and(|c| c == b"text/plain; charset=UTF-8");
                            if head.status == 200 && polling {
                                let (_, err) = decode_payload(body.clone());
                                assert_eq!(err, None, "{name}: polling payload {body:?}");
                            }
                            if head.status == 101 {
                                upgraded = Some(std::mem::take(buf));
                                break;
                            }
                        }
                        Err(e) => panic!("{name}: server response does not parse: {e:?} {buf:?}"),
                    }
                }
            }
            Reader::Ws(c) => {
                c.handle_input(now, data);
            }
        }
        if let Some(rest) = upgraded {
            *self = Reader::ws(seed);
            if let Reader::Ws(c) = self {
                c.handle_input(now, &rest);
            }
        }
        if let Reader::Ws(c) = self {
            drain(
                &mut **c,
                now,
                |_, t| {
                    if let ws::Transmit::Data(b) = t {
                        answer.push(b);
                    }
                    ControlFlow::Continue(())
                },
                |_, ev| match ev {
                    ws::Event::Message(ws::Message::Text(t)) => {
                        packets.push(Packet::decode_text(t));
                    }
                    ws::Event::Message(ws::Message::Binary(b)) => {
                        packets.push(Ok(Packet::decode_binary(b)));
                    }
                    ws::Event::Closed(c) => {
                        if let Some(e) = &c.error {
                            assert!(
                                matches!(e, Error::CloseTimeout),
                                "{name}: the server's frames fail a client: {e:?}"
                            );
                        }
                    }
                    _ => {}
                },
            );
        }
        (answer, packets)
    }
}
