//! The session: the handshake (the open packet), the heartbeat, the write
//! buffer and how it reaches the transport, and the close.

use std::time::{Duration, Instant};

use super::{
    Client, ClientError, ClientEvent, ClientTransmit, Transport, TransportMode,
    polling::{batch_len, encode_packets},
    upgrade::{Probe, ProbeStage},
    websocket::{drain_ws, ws_send},
};
use crate::engineio::{CloseReason, Data, Packet, PacketType, TransportKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Opening,
    Open,
    Closed,
}

/// The session parameters from the open packet.
#[derive(Debug, Clone)]
pub(super) struct Params {
    pub(super) ping_interval: Duration,
    pub(super) ping_timeout: Duration,
    pub(super) max_payload: Option<usize>,
}

impl Client {
    pub(super) fn on_packet(&mut self, now: Instant, p: Packet) {
        match self.phase {
            Phase::Closed => {}
            Phase::Opening => match (&p.kind, &p.data) {
                (PacketType::Open, Data::Text(t)) => {
                    let text = t.as_str().to_owned();
                    self.on_open(now, &text);
                }
                _ => {
                    let e = ClientError::BadHandshake("the first packet is not an open packet");
                    self.close_session(now, CloseReason::ParseError, Some(e), false);
                }
            },
            Phase::Open => match p.kind {
                PacketType::Close => {
                    self.close_session(now, CloseReason::TransportClose, None, false)
                }
                PacketType::Ping => {
                    self.reset_ping(now);
                    self.write_buffer.push_back(Packet::new(PacketType::Pong));
                    self.flush(now);
                }
                PacketType::Message => self.events.push_back(ClientEvent::Message(p.data)),
                PacketType::Open | PacketType::Pong | PacketType::Upgrade | PacketType::Noop => {}
            },
        }
    }

    fn on_open(&mut self, now: Instant, json: &str) {
        let h = match parse_open(json) {
            Ok(h) => h,
            Err(e) => {
                let e = ClientError::BadHandshake(e);
                return self.close_session(now, CloseReason::ParseError, Some(e), false);
            }
        };
        self.phase = Phase::Open;
        self.sid = Some(h.sid.clone());
        self.params = Some(Params {
            ping_interval: h.ping_interval,
            ping_timeout: h.ping_timeout,
            max_payload: h.max_payload,
        });
        let kind = match &mut self.transport {
            Some(Transport::WebSocket(s)) => {
                s.deadline = None;
                TransportKind::WebSocket
            }
            _ => TransportKind::Polling,
        };
        let offers_ws = h.upgrades.iter().any(|u| u == "websocket");
        self.events.push_back(ClientEvent::Open {
            sid: h.sid,
            upgrades: h.upgrades,
            ping_interval: h.ping_interval,
            ping_timeout: h.ping_timeout,
            max_payload: h.max_payload,
            transport: kind,
        });
        self.reset_ping(now);
        self.flush(now);
        if self.config.mode == TransportMode::PollingThenUpgrade
            && kind == TransportKind::Polling
            && offers_ws
            && !self.close_requested
        {
            let stream = self.open_ws(now);
            self.probe = Some(Probe {
                stream,
                stage: ProbeStage::Connecting,
            });
        }
        self.maybe_finish_close(now);
    }

    fn reset_ping(&mut self, now: Instant) {
        if let Some(p) = &self.params {
            self.ping_deadline = Some(now + p.ping_interval + p.ping_timeout);
        }
    }

    /// Hands buffered packets to the transport, if it can take them.
    pub(super) fn flush(&mut self, now: Instant) {
        if self.phase != Phase::Open
            || self.write_buffer.is_empty()
            || self
                .probe
                .as_ref()
                .is_some_and(|p| p.stage == ProbeStage::Pausing)
        {
            return;
        }
        match &mut self.transport {
            Some(Transport::Polling(p)) => {
                if p.post.is_some() || p.pausing {
                    return;
                }
                let max = self.params.as_ref().and_then(|p| p.max_payload);
                let n = batch_len(self.write_buffer.iter(), max);
                let body = encode_packets(self.write_buffer.iter().take(n));
                self.in_flight = n;
                self.send_post(now, body);
            }
            Some(Transport::WebSocket(s)) => {
                for p in self.write_buffer.drain(..) {
                    // The queue is drained into our transmits after every
                    // call, so the WebSocket's own limit is never reached.
                    let _ = ws_send(&mut s.ws, &p);
                }
                self.queued_messages = 0;
                drain_ws(s, &mut self.transmits);
            }
            None => {}
        }
    }

    /// Ends a close requested by [`close`](Self::close) once nothing is
    /// left to deliver.
    pub(super) fn maybe_finish_close(&mut self, now: Instant) {
        if !self.close_requested
            || self.phase != Phase::Open
            || !self.write_buffer.is_empty()
            || self
                .probe
                .as_ref()
                .is_some_and(|p| p.stage == ProbeStage::Pausing)
        {
            return;
        }
        self.close_session(now, CloseReason::ForcedClose, None, true);
    }

    /// Ends the session: the event, then the transports wind down. With
    /// `farewell`, an open polling transport POSTs a close packet, as the
    /// official client does when it closes one.
    pub(super) fn close_session(
        &mut self,
        now: Instant,
        reason: CloseReason,
        error: Option<ClientError>,
        farewell: bool,
    ) {
        if self.phase == Phase::Closed {
            return;
        }
        let was_open = self.phase == Phase::Open;
        self.phase = Phase::Closed;
        self.ping_deadline = None;
        self.write_buffer.clear();
        self.in_flight = 0;
        self.queued_messages = 0;
        match self.transport.take() {
            Some(Transport::Polling(p)) => {
                // A second POST next to one in flight is refused by the
                // official server: say goodbye only on a free slot. The
                // server then releases the held poll (with a noop); cutting
                // it first would make the close a transport error there.
                if farewell && was_open && p.post.is_none() {
                    self.push_post(encode_packets([&Packet::new(PacketType::Close)]));
                } else {
                    for r in [p.get, p.post].into_iter().flatten() {
                        self.transmits
                            .push_back(ClientTransmit::CancelRequest { id: r.id });
                    }
                }
            }
            Some(Transport::WebSocket(s)) => self.retire(now, s),
            None => {}
        }
        if let Some(p) = self.probe.take() {
            self.retire(now, p.stream);
        }
        self.events.push_back(ClientEvent::Close { reason, error });
    }
}

/// The open packet's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OpenInfo {
    pub(super) sid: String,
    pub(super) upgrades: Vec<String>,
    pub(super) ping_interval: Duration,
    pub(super) ping_timeout: Duration,
    pub(super) max_payload: Option<usize>,
}

/// Reads the open packet's JSON:
/// `{"sid":..,"upgrades":[..],"pingInterval":..,"pingTimeout":..,"maxPayload":..}`.
pub(super) fn parse_open(s: &str) -> Result<OpenInfo, &'static str> {
    let json::Value::Object(fields) = json::parse(s).ok_or("the open packet is not JSON")? else {
        return Err("the open packet is not a JSON object");
    };
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v);
    let sid = match get("sid") {
        Some(json::Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err("missing sid"),
    };
    let upgrades = match get("upgrades") {
        None | Some(json::Value::Null) => Vec::new(),
        Some(json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| match v {
                json::Value::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        Some(_) => return Err("upgrades is not an array"),
    };
    let millis = |k: &str| match get(k) {
        Some(json::Value::Number(n)) if n.is_finite() && *n >= 0.0 => {
            Some(Duration::from_millis(n.min(u32::MAX as f64) as u64))
        }
        _ => None,
    };
    let ping_interval = millis("pingInterval").ok_or("missing pingInterval")?;
    let ping_timeout = millis("pingTimeout").ok_or("missing pingTimeout")?;
    let max_payload = match get("maxPayload") {
        Some(json::Value::Number(n)) if n.is_finite() && *n > 0.0 => {
            Some(n.min(usize::MAX as f64) as usize)
        }
        _ => None,
    };
    Ok(OpenInfo {
        sid,
        upgrades,
        ping_interval,
        ping_timeout,
        max_payload,
    })
}

/// Just enough JSON for the open packet (the crate has no JSON dependency):
/// every value is parsed, with a depth limit, so no input can panic.
pub(super) mod json {
    #[derive(Debug, Clone, PartialEq)]
    pub(in crate::engineio::client) enum Value {
        Null,
        Bool(bool),
        Number(f64),
        String(String),
        Array(Vec<Value>),
        Object(Vec<(String, Value)>),
    }

    const MAX_DEPTH: usize = 32;

    pub(in crate::engineio::client) fn parse(s: &str) -> Option<Value> {
        let mut p = Parser {
            b: s.as_bytes(),
            i: 0,
        };
        let v = p.value(0)?;
        p.ws();
        (p.i == p.b.len()).then_some(v)
    }

    struct Parser<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn peek(&self) -> Option<u8> {
            self.b.get(self.i).copied()
        }

        fn ws(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.i += 1;
            }
        }

        fn eat(&mut self, c: u8) -> Option<()> {
            self.ws();
            (self.peek()? == c).then(|| self.i += 1)
        }

        fn lit(&mut self, word: &[u8], v: Value) -> Option<Value> {
            let end = self.i.checked_add(word.len())?;
            (self.b.get(self.i..end)? == word).then(|| {
                self.i = end;
                v
            })
        }

        fn value(&mut self, depth: usize) -> Option<Value> {
            if depth > MAX_DEPTH {
                return None;
            }
            self.ws();
            match self.peek()? {
                b'{' => {
                    self.i += 1;
                    let mut fields = Vec::new();
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        return Some(Value::Object(fields));
                    }
                    loop {
                        self.ws();
                        let k = self.string()?;
                        self.eat(b':')?;
                        let v = self.value(depth + 1)?;
                        fields.push((k, v));
                        self.ws();
                        match self.peek()? {
                            b',' => self.i += 1,
                            b'}' => {
                                self.i += 1;
                                return Some(Value::Object(fields));
                            }
                            _ => return None,
                        }
                    }
                }
                b'[' => {
                    self.i += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                        return Some(Value::Array(items));
                    }
                    loop {
                        items.push(self.value(depth + 1)?);
                        self.ws();
                        match self.peek()? {
                            b',' => self.i += 1,
                            b']' => {
                                self.i += 1;
                                return Some(Value::Array(items));
                            }
                            _ => return None,
                        }
                    }
                }
                b'"' => self.string().map(Value::String),
                b't' => self.lit(b"true", Value::Bool(true)),
                b'f' => self.lit(b"false", Value::Bool(false)),
                b'n' => self.lit(b"null", Value::Null),
                b'-' | b'0'..=b'9' => self.number(),
                _ => None,
            }
        }

        fn number(&mut self) -> Option<Value> {
            let start = self.i;
            while matches!(
                self.peek(),
                Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
            ) {
                self.i += 1;
            }
            let text = std::str::from_utf8(self.b.get(start..self.i)?).ok()?;
            text.parse::<f64>().ok().map(Value::Number)
        }

        fn hex4(&mut self) -> Option<u32> {
            let end = self.i.checked_add(4)?;
            let h = std::str::from_utf8(self.b.get(self.i..end)?).ok()?;
            let v = u32::from_str_radix(h, 16).ok()?;
            self.i = end;
            Some(v)
        }

        fn string(&mut self) -> Option<String> {
            if self.peek()? != b'"' {
                return None;
            }
            self.i += 1;
            let mut out = Vec::new();
            loop {
                let c = self.peek()?;
                self.i += 1;
                match c {
                    b'"' => return String::from_utf8(out).ok(),
                    b'\\' => {
                        let e = self.peek()?;
                        self.i += 1;
                        let ch = match e {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'u' => {
                                let hi = self.hex4()?;
                                let code = if (0xD800..0xDC00).contains(&hi)
                                    && self.b.get(self.i..self.i + 2) == Some(b"\\u")
                                {
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    if !(0xDC00..0xE000).contains(&lo) {
                                        return None;
                                    }
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else {
                                    hi
                                };
                                char::from_u32(code).unwrap_or('\u{FFFD}')
                            }
                            _ => return None,
                        };
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    c if c < 0x20 => return None,
                    c => out.push(c),
                }
            }
        }
    }
}
