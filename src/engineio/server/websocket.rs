//! The WebSocket transport: the engine's checks on an upgrade request, the
//! WebSocket connections themselves (a session's transport, or the probe
//! of an upgrade from polling), and packets as frames, one per message.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::{
    Conn, ConnKind, Packets, Server, Target, flag_dirty, http::has_invalid_header_char,
    session::Transport, ws_message,
};
use crate::{
    engineio::{
        CloseReason, ConnId, ErrorCode, Packet, Sid, Transmit, TransportKind, UsageError, frame,
    },
    http::{Method, RequestHead, ResponseHead},
    ws,
};

impl Server {
    /// Writes packets as frames, one each. While the socket is full, past
    /// the bound (what is held for the connection and its WebSocket's send
    /// queue) the connection is dropped and the session it carries ends;
    /// so it is past the WebSocket's own limit.
    pub(super) fn ws_send_all(
        &mut self,
        conn: ConnId,
        packets: Packets<'_>,
    ) -> Result<(), UsageError> {
        let held = self.held.bytes(conn);
        let max = self.config.max_send_queue;
        let Some(WsConn { ws, dirty, .. }) = self.conns.get_mut(&conn).and_then(Conn::ws_mut)
        else {
            return Err(UsageError::BufferFull);
        };
        let waiting = held + ws.buffered_amount();
        if self.held.is_blocked(conn) && waiting > 0 && waiting + packets.ws_len() > max {
            self.abort_conn(conn, CloseReason::SendQueueFull);
            return Err(UsageError::BufferFull);
        }
        // The entry is at hand: no second lookup through `mark_dirty`.
        flag_dirty(dirty, &mut self.dirty, Target::Conn(conn));
        let sent = match packets {
            Packets::Shared([one]) => {
                with_compress(ws, one.compress, |ws| ws.send_encoded(&one.frame))
            }
            Packets::Shared(many) => {
                many.chunk_by(|a, b| a.compress == b.compress)
                    .try_for_each(|run| {
                        with_compress(ws, run.iter().all(|p| p.compress), |ws| {
                            ws.send_encoded_batch(run.iter().map(|p| &p.frame))
                        })
                    })
            }
            Packets::Plain([one], c) => with_compress(ws, c, |ws| frame::send(ws, one)),
            Packets::Plain(many, c) => with_compress(ws, c, |ws| {
                ws.send_batch(&many.iter().map(ws_message).collect::<Vec<_>>())
            }),
            Packets::Text(t, c) => with_compress(ws, c, |ws| frame::send_text(ws, t)),
        };
        match sent {
            Ok(()) => Ok(()),
            Err(ws::UsageError::SendQueueFull) => {
                self.abort_conn(conn, CloseReason::SendQueueFull);
                Err(UsageError::BufferFull)
            }
            Err(_) => Err(UsageError::BufferFull),
        }
    }

    pub(super) fn ws_send(&mut self, conn: ConnId, packet: &Packet) {
        // Only the server's own packets come here (probe answer, open
        // packet, packets held during an upgrade): past the bound the
        // connection is dropped.
        let _ = self.ws_send_all(conn, Packets::Plain(std::slice::from_ref(packet), true));
    }

    pub(super) fn on_raw_upgrade(&mut self, now: Instant, conn: ConnId, head: Box<RequestHead>) {
        match self.check_upgrade(&head) {
            Err((res, body)) => self.write_raw(conn, res, body, true),
            Ok(checked) => {
                let mut out = BytesMut::new();
                self.upgrade_response(&checked).encode(&mut out);
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                let ConnKind::Http(h) = &mut c.kind else {
                    return;
                };
                let leftover = std::mem::take(&mut h.rbuf);
                self.transmits.push_back(Transmit::Data {
                    conn,
                    data: out.freeze(),
                });
                c.kind = ConnKind::Ws(WsConn::new(self.ws_config));
                self.start_ws_transport(now, conn, checked);
                if !leftover.is_empty() {
                    self.input(now, conn, &leftover);
                }
            }
        }
    }

    /// The engine's checks on a WebSocket request, then the WebSocket
    /// handshake's own. A refusal is the reply to send.
    pub(super) fn check_upgrade(
        &self,
        head: &RequestHead,
    ) -> Result<CheckedUpgrade, (ResponseHead, Bytes)> {
        let query = head.query();
        let abort = |code: ErrorCode, message: Option<String>| {
            // The official server answers every refused upgrade 400 with a
            // text body, not JSON.
            let message = message.unwrap_or_else(|| code.message().to_owned());
            let res = ResponseHead::new(400).with_header("Content-type", "text/html");
            (res, Bytes::from(message))
        };
        if !self.is_engine_path(head) {
            return Err((ResponseHead::new(404), Bytes::new()));
        }
        let transport = self
            .check_transport(query.get("transport"))
            .map_err(|c| abort(c, None))?;
        if has_invalid_header_char(head.headers.get("origin")) {
            return Err(abort(ErrorCode::BadRequest, None));
        }
        let sid = match query.get("sid") {
            Some(s) => Some(
                Sid::parse(s)
                    .filter(|s| self.sessions.contains_key(s))
                    .ok_or_else(|| abort(ErrorCode::UnknownSid, None))?,
            ),
            None => {
                if head.method != Method::Get {
                    return Err(abort(ErrorCode::BadHandshakeMethod, None));
                }
                if let Some(Err(m)) = self.allow_request.as_ref().map(|f| f(head)) {
                    return Err(abort(ErrorCode::Forbidden, Some(m)));
                }
                if query.get("EIO") != Some("4") {
                    return Err(abort(ErrorCode::UnsupportedProtocolVersion, None));
                }
                None
            }
        };
        if transport != TransportKind::WebSocket {
            // Polling does not take upgraded connections.
            return Err(abort(ErrorCode::BadRequest, None));
        }
        if sid.is_none() && self.sessions.len() >= self.config.max_sessions {
            return Err((
                ResponseHead::new(503),
                Bytes::from_static(b"Too many sessions"),
            ));
        }
        let refuse = |e: ws::HandshakeError| {
            let (res, body) = e.response();
            (res, Bytes::from_static(body.as_bytes()))
        };
        let request = ws::handshake::validate_request(head.clone()).map_err(refuse)?;
        // perMessageDeflate: a malformed offer is refused (400) only when
        // it is on, as npm `ws` does.
        let deflate = request
            .negotiate_deflate(&self.ws_config.deflate)
            .map_err(refuse)?;
        Ok(CheckedUpgrade {
            request,
            sid,
            deflate,
        })
    }

    pub(super) fn upgrade_response(&self, checked: &CheckedUpgrade) -> ResponseHead {
        let mut res = checked.request.response(&ws::Accept::new());
        if let Some(agreed) = &checked.deflate {
            res.headers
                .push("Sec-WebSocket-Extensions", &agreed.response);
        }
        if let Some(cors) = &self.config.cors {
            cors.apply(&checked.request.head, &mut res);
        }
        res
    }

    pub(super) fn start_ws_transport(
        &mut self,
        now: Instant,
        conn: ConnId,
        checked: CheckedUpgrade,
    ) {
        if let Some(agreed) = &checked.deflate {
            if let Some(w) = self.conns.get_mut(&conn).and_then(Conn::ws_mut) {
                *w.ws = ws::Connection::server_upgraded(self.ws_config).with_deflate(agreed.params);
            }
        }
        match checked.sid {
            None => {
                let peer = self.conns.get(&conn).and_then(|c| c.peer);
                let sid =
                    self.open_session(now, Transport::WebSocket(conn), checked.request.head, peer);
                if let Some(w) = self.conns.get_mut(&conn).and_then(Conn::ws_mut) {
                    w.sid = Some(sid);
                }
                // The open packet waits in the buffer: send it as a frame.
                if let Some(s) = self.sessions.get_mut(&sid) {
                    let buffered = s.take_buffer();
                    for p in &buffered {
                        self.ws_send(conn, p);
                    }
                }
            }
            Some(sid) => {
                let Some(s) = self.sessions.get_mut(&sid) else {
                    return self.close_ws(now, conn);
                };
                if !self.config.allow_upgrades
                    || !s.start_upgrade(conn, now + self.config.upgrade_timeout)
                {
                    return self.close_ws(now, conn);
                }
                if let Some(w) = self.conns.get_mut(&conn).and_then(Conn::ws_mut) {
                    w.sid = Some(sid);
                }
                self.schedule(Target::Session(sid));
            }
        }
    }

    /// At a heartbeat: a WebSocket that sent and received no compressed
    /// message since the last one gives its compression state back.
    pub(super) fn ws_heartbeat(&mut self, conn: ConnId) {
        if let Some(w) = self.conns.get_mut(&conn).and_then(Conn::ws_mut) {
            w.ws.release_idle_compression();
        }
    }

    pub(super) fn close_ws(&mut self, now: Instant, conn: ConnId) {
        if let Some(w) = self.conns.get_mut(&conn).and_then(Conn::ws_mut) {
            w.sid = None;
            // The official server's close frame has no status code; if the
            // WebSocket is already closing, that handshake finishes it.
            let _ = w.ws.close_with(now, None);
            self.after_ws(now, conn);
        }
    }

    /// Handles what a WebSocket produced after an input or timeout. While
    /// its socket is full nothing is decoded (its answers could not be
    /// written), unless it has closed.
    pub(super) fn after_ws(&mut self, now: Instant, conn: ConnId) {
        if self.held.is_blocked(conn)
            && self
                .conns
                .get_mut(&conn)
                .and_then(Conn::ws_mut)
                .is_some_and(|w| w.ws.state() != ws::State::Closed)
        {
            return self.mark_dirty(Target::Conn(conn));
        }
        loop {
            let Some(w) = self.conns.get_mut(&conn).and_then(Conn::ws_mut) else {
                return;
            };
            let Some(ev) = w.ws.poll_event(now) else {
                break;
            };
            let Some(sid) = w.sid else { continue };
            let Some(s) = self.sessions.get(&sid) else {
                continue;
            };
            let active = matches!(s.transport, Transport::WebSocket(c) if c == conn);
            let probe = s.upgrade.as_ref().is_some_and(|u| u.conn == conn);
            match ev {
                ws::Event::Message(m) => match (frame::decode(m), active, probe) {
                    (Ok(p), true, _) => self.on_packet(now, sid, p),
                    (Ok(p), false, true) => self.on_probe_packet(now, sid, conn, p),
                    (Err(_), true, _) => self.end_session(now, sid, CloseReason::ParseError),
                    (Err(_), false, true) => self.cancel_upgrade(now, sid),
                    _ => {}
                },
                ws::Event::Closed(c) => {
                    if active {
                        let reason = if c.error.is_some() {
                            CloseReason::TransportError
                        } else {
                            CloseReason::TransportClose
                        };
                        self.end_session(now, sid, reason);
                    } else if probe {
                        if let Some(s) = self.sessions.get_mut(&sid) {
                            s.upgrade = None;
                        }
                        self.schedule(Target::Session(sid));
                    }
                }
                _ => {}
            }
        }
        self.mark_dirty(Target::Conn(conn));
    }

    /// Moves a WebSocket's output to the transmit queue and re-arms its
    /// timer. A WebSocket whose socket is full keeps its output (where it
    /// counts against the bound); closed, it is dropped at once.
    pub(super) fn drain_ws(&mut self, now: Instant, conn: ConnId) {
        let blocked = self.held.is_blocked(conn);
        let Some(w) = self.conns.get_mut(&conn).and_then(Conn::ws_mut) else {
            return;
        };
        w.dirty = false;
        if blocked {
            if w.ws.state() == ws::State::Closed {
                return self.abort_conn(conn, CloseReason::TransportError);
            }
            return self.schedule(Target::Conn(conn));
        }
        let mut closed = false;
        while let Some(t) = w.ws.poll_transmit(now) {
            match t {
                ws::Transmit::Data(data) => self.transmits.push_back(Transmit::Data { conn, data }),
                ws::Transmit::Close => {
                    closed = true;
                    self.transmits.push_back(Transmit::Close { conn });
                }
            }
        }
        if closed {
            self.conns.remove(&conn);
        } else {
            self.schedule(Target::Conn(conn));
        }
    }
}

pub(super) struct CheckedUpgrade {
    request: ws::UpgradeRequest,
    sid: Option<Sid>,
    /// permessage-deflate, as agreed with the client.
    deflate: Option<ws::deflate::Accepted>,
}

/// A connection speaking WebSocket: a session's transport, or the probe of
/// an upgrade.
#[derive(Debug)]
pub(super) struct WsConn {
    pub(super) ws: Box<ws::Connection>,
    /// The session it carries or probes for; `None` once it is let go.
    pub(super) sid: Option<Sid>,
    /// Listed for the next flush.
    pub(super) dirty: bool,
    /// The deadline entered in the server's timer heap.
    pub(super) scheduled: Option<Instant>,
}

impl WsConn {
    pub(super) fn new(config: ws::Config) -> Self {
        WsConn {
            ws: Box::new(ws::Connection::server_upgraded(config)),
            sid: None,
            dirty: false,
            scheduled: None,
        }
    }
}

/// Runs a send with compression allowed or not (permessage-deflate, when
/// negotiated, still goes by size when allowed).
fn with_compress<T>(
    ws: &mut ws::Connection,
    on: bool,
    send: impl FnOnce(&mut ws::Connection) -> T,
) -> T {
    if on {
        return send(ws);
    }
    ws.set_compress(false);
    let sent = send(ws);
    ws.set_compress(true);
    sent
}
