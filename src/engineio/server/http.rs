//! The server's HTTP side: raw HTTP/1.1 connections (heads, bodies,
//! keep-alive and pipelining), the dispatch of engine requests by the
//! official server's checks, and every response it writes (CORS headers,
//! the JSON error bodies, the answers to requests it refuses).
//!
//! # Theory of operation
//!
//! ```text
//!   Head ──head parsed──► Body ──body complete──► Busy ──answered, keep-alive──► Head
//!     │                                             └──answered, close──► (removed)
//!     ├──upgrade to WebSocket on the engine path──► a WebSocket connection
//!     └──bad head or body──► error answer, (removed)
//! ```
//!
//! A raw connection carries one request at a time. While it is `Busy` (a
//! poll held for packets, or a request handed to the application) bytes of
//! a pipelined request wait in its read buffer, and are read at the end of
//! the turn in which the answer goes out. An embedded request (one parsed
//! by another HTTP server) is always `Busy` until answered, then removed.
//!
//! Timers, one deadline per raw connection: a request's head must arrive
//! within `head_timeout` and the whole request within `request_timeout`,
//! both counted from its first byte (a new connection's first request from
//! the connection's start), else it is answered 408 and the connection
//! closed; between requests a connection may wait `keep_alive_timeout`,
//! then it is closed. A `Busy` connection has no deadline of its own.
//!
//! A request with both `Content-Length` and `Transfer-Encoding` is read by
//! its chunked framing and answered, then its connection is closed (RFC
//! 9112 section 6.1: it may be an attempt to smuggle a request past a proxy
//! that reads the other framing).

use bytes::{Buf, Bytes, BytesMut};
use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::{Conn, ConnKind, Server, Target, session::Transport};
use crate::{
    engineio::{CloseReason, ConnId, ErrorCode, Event, Sid, Transmit, TransportKind},
    http::{
        HeadParser, HttpError, Method, RequestHead, ResponseHead,
        body::{BodyReader, Framing},
    },
    machine::later,
};
use std::time::Instant;

#[derive(Debug)]
pub(super) enum HttpState {
    /// Reading a request head.
    Head,
    /// Reading its body.
    Body {
        head: Box<RequestHead>,
        reader: BodyReader,
    },
    /// A request is being answered (held poll, or the application's turn).
    Busy { head: Box<RequestHead> },
}

#[derive(Debug)]
pub(super) struct HttpConn {
    pub(super) rbuf: BytesMut,
    pub(super) parser: HeadParser,
    pub(super) state: HttpState,
    /// When the request being read began (its first byte, or the
    /// connection's start).
    pub(super) started: Instant,
    /// Waiting for the next request after a response, nothing read yet.
    pub(super) idle: bool,
    /// When the connection times out in its present state.
    pub(super) deadline: Option<Instant>,
    /// The deadline entered in the server's timer heap.
    pub(super) scheduled: Option<Instant>,
}

impl Server {
    pub(super) fn resume_http(&mut self, now: Instant) {
        while let Some(conn) = self.resume.pop() {
            self.process_http(now, conn);
        }
    }

    pub(super) fn process_http(&mut self, now: Instant, conn: ConnId) {
        // Nothing more is read while the socket is full.
        if self.held.is_blocked(conn) {
            return;
        }
        loop {
            let Some(h) = self.conns.get_mut(&conn).and_then(Conn::http_mut) else {
                return;
            };
            if h.idle && !h.rbuf.is_empty() {
                // The next request's first byte: its clock starts.
                h.idle = false;
                h.started = now;
                h.deadline = Some(later(now, self.config.head_timeout));
                self.schedule(Target::Conn(conn));
                continue;
            }
            match &mut h.state {
                HttpState::Busy { .. } => return,
                HttpState::Head => match h.parser.parse_request(&h.rbuf) {
                    Ok(None) => return,
                    Err(e) => return self.http_error(conn, e, None),
                    Ok(Some((head, used))) => {
                        h.rbuf.advance(used);
                        let head = Box::new(head);
                        if self.is_engine_path(&head)
                            && head.headers.has_token("upgrade", "websocket")
                        {
                            return self.on_raw_upgrade(now, conn, head);
                        }
                        let framing = match Framing::of_request(&head.headers) {
                            Ok(f) => f,
                            Err(e) => return self.http_error(conn, e, Some(&head)),
                        };
                        let reader = match BodyReader::new(framing, self.config.max_payload) {
                            Ok(r) => r,
                            Err(e) => return self.http_error(conn, e, Some(&head)),
                        };
                        let request_timeout = self.config.request_timeout;
                        if let Some(h) = self.conns.get_mut(&conn).and_then(Conn::http_mut) {
                            h.state = HttpState::Body { head, reader };
                            h.deadline = Some(later(h.started, request_timeout));
                            self.schedule(Target::Conn(conn));
                        }
                    }
                },
                HttpState::Body { reader, head } => match reader.read(&mut h.rbuf) {
                    Ok(None) => return,
                    Err(e) => {
                        let head = head.clone();
                        return self.http_error(conn, e, Some(&head));
                    }
                    Ok(Some(body)) => {
                        let HttpState::Body { head, .. } =
                            std::mem::replace(&mut h.state, HttpState::Head)
                        else {
                            return;
                        };
                        h.state = HttpState::Busy { head: head.clone() };
                        h.deadline = None;
                        if h.rbuf.is_empty() {
                            h.rbuf = BytesMut::new();
                        }
                        self.on_request(now, conn, head, body);
                    }
                },
            }
        }
    }

    /// A prefix match on the target, as the official server does, less the
    /// paths left to the application.
    pub(super) fn is_engine_path(&self, head: &RequestHead) -> bool {
        head.target.starts_with(&self.config.path)
            && !self.config.bypass.iter().any(|p| p == head.path())
    }

    /// A head or body the HTTP layer refuses: answer and close (the rest
    /// of an unread body cannot be skipped safely).
    fn http_error(&mut self, conn: ConnId, e: HttpError, head: Option<&RequestHead>) {
        let mut res = ResponseHead::new(e.status());
        let body = if let HttpError::BodyTooLarge(_) = e {
            // The official server answers an oversized POST with an empty
            // 413 that carries the CORS headers.
            if let (Some(cors), Some(head)) =
                (&self.config.cors, head.filter(|h| self.is_engine_path(h)))
            {
                cors.apply(head, &mut res);
            }
            Bytes::new()
        } else {
            res.headers.push("Content-Type", "text/plain");
            Bytes::from(format!("{e}\n"))
        };
        self.write_raw(conn, res, body, true);
    }

    pub(super) fn on_request(
        &mut self,
        now: Instant,
        conn: ConnId,
        head: Box<RequestHead>,
        body: Bytes,
    ) {
        if !self.is_engine_path(&head) {
            self.events.push_back(Event::Request { conn, head, body });
            return;
        }
        if head.method == Method::Options {
            if let Some(cors) = &self.config.cors {
                let res = cors.preflight(&head);
                return self.write_response(now, conn, res, Bytes::new());
            }
        }
        let query = head.query();
        let transport = match self.check_transport(query.get("transport")) {
            Ok(t) => t,
            Err(code) => return self.reply_error(now, conn, code, None),
        };
        if has_invalid_header_char(head.headers.get("origin")) {
            return self.reply_error(now, conn, ErrorCode::BadRequest, None);
        }
        if let Some(sid) = query.get("sid") {
            let Some(sid) = Sid::parse(sid).filter(|s| self.sessions.contains_key(s)) else {
                return self.reply_error(now, conn, ErrorCode::UnknownSid, None);
            };
            if self.sessions.get(&sid).map(|s| s.transport.kind()) != Some(transport) {
                return self.reply_error(now, conn, ErrorCode::BadRequest, None);
            }
            return match head.method {
                Method::Get => self.on_poll(now, sid, conn),
                Method::Post => self.on_data(now, sid, conn, &head, body),
                _ => self.write_response(now, conn, ResponseHead::new(500), Bytes::new()),
            };
        }
        if head.method != Method::Get {
            return self.reply_error(now, conn, ErrorCode::BadHandshakeMethod, None);
        }
        if transport == TransportKind::WebSocket {
            return self.reply_error(now, conn, ErrorCode::BadRequest, None);
        }
        if let Some(Err(message)) = self.allow_request.as_ref().map(|f| f(&head)) {
            return self.reply_error(now, conn, ErrorCode::Forbidden, Some(message));
        }
        if query.get("EIO") != Some("4") {
            return self.reply_error(now, conn, ErrorCode::UnsupportedProtocolVersion, None);
        }
        if self.sessions.len() >= self.config.max_sessions {
            let res = ResponseHead::new(503).with_header("Content-Type", "application/json");
            let body = error_body(ErrorCode::BadRequest, "Too many sessions");
            return self.write_response(now, conn, res, body);
        }
        let peer = self.conns.get(&conn).and_then(|c| c.peer);
        let sid = self.open_session(now, Transport::Polling { get: None }, *head, peer);
        self.on_poll(now, sid, conn);
    }

    pub(super) fn check_transport(&self, t: Option<&str>) -> Result<TransportKind, ErrorCode> {
        match t {
            Some("polling") if self.config.polling => Ok(TransportKind::Polling),
            Some("websocket") if self.config.websocket => Ok(TransportKind::WebSocket),
            _ => Err(ErrorCode::UnknownTransport),
        }
    }

    fn reply_error(
        &mut self,
        now: Instant,
        conn: ConnId,
        code: ErrorCode,
        message: Option<String>,
    ) {
        let body = error_body(code, message.as_deref().unwrap_or(code.message()));
        let res = ResponseHead::new(code.status()).with_header("Content-Type", "application/json");
        self.write_response(now, conn, res, body);
    }

    /// Answers the request on `conn`, with the CORS headers the official
    /// server's middleware adds to every answer but a preflight's (which
    /// carries its own).
    pub(super) fn write_response(
        &mut self,
        now: Instant,
        conn: ConnId,
        mut res: ResponseHead,
        body: Bytes,
    ) {
        self.polls.remove(&conn);
        if let Some(cors) = &self.config.cors {
            if res.headers.get("access-control-allow-origin").is_none() && res.status != 204 {
                if let Some(head) = self.request_head(conn) {
                    cors.apply(head, &mut res);
                }
            }
        }
        match self.conns.get(&conn).map(|c| &c.kind) {
            Some(ConnKind::Embedded { .. }) => {
                self.conns.remove(&conn);
                self.transmits.push_back(Transmit::Response {
                    conn,
                    head: res,
                    body,
                });
            }
            Some(ConnKind::Http(h)) => {
                let close = match &h.state {
                    HttpState::Busy { head } => !keep_alive(head),
                    _ => true,
                };
                self.write_raw(conn, res, body, close);
                if !close {
                    let (idle, head) = (self.config.keep_alive_timeout, self.config.head_timeout);
                    if let Some(h) = self.conns.get_mut(&conn).and_then(Conn::http_mut) {
                        h.state = HttpState::Head;
                        h.started = now;
                        h.idle = h.rbuf.is_empty();
                        h.deadline = Some(later(now, if h.idle { idle } else { head }));
                        // A pipelined request may be waiting; read it once
                        // this turn ends (not here: no recursion per request).
                        if !h.rbuf.is_empty() {
                            self.resume.push(conn);
                        }
                        self.schedule(Target::Conn(conn));
                    }
                }
            }
            _ => {}
        }
    }

    pub(super) fn request_head(&self, conn: ConnId) -> Option<&RequestHead> {
        match self.conns.get(&conn).map(|c| &c.kind) {
            Some(ConnKind::Http(HttpConn {
                state: HttpState::Busy { head } | HttpState::Body { head, .. },
                ..
            })) => Some(head),
            Some(ConnKind::Embedded { head }) => Some(head),
            _ => None,
        }
    }

    /// Serialises a response on a raw connection.
    pub(super) fn write_raw(
        &mut self,
        conn: ConnId,
        mut res: ResponseHead,
        body: Bytes,
        close: bool,
    ) {
        if res.headers.get("content-length").is_none() && res.status != 204 && res.status != 304 {
            res.headers.push("Content-Length", body.len().to_string());
        }
        if close {
            res.headers.push("Connection", "close");
        } else if let secs @ 1.. = self.config.keep_alive_timeout.as_secs() {
            // Node's agent lets its idle sockets go a second before this
            // hint (by default it waits 5 s, as long as we do): without it,
            // a client may reuse a connection just as we close it.
            res.headers.push("Keep-Alive", format!("timeout={secs}"));
        }
        let mut out = BytesMut::with_capacity(256 + body.len().min(16 * 1024));
        res.encode(&mut out);
        if body.len() <= 16 * 1024 {
            out.extend_from_slice(&body);
            self.transmits.push_back(Transmit::Data {
                conn,
                data: out.freeze(),
            });
        } else {
            self.transmits.push_back(Transmit::Data {
                conn,
                data: out.freeze(),
            });
            self.transmits
                .push_back(Transmit::Data { conn, data: body });
        }
        if close {
            self.conns.remove(&conn);
            self.transmits.push_back(Transmit::Close { conn });
        }
    }

    /// A raw connection's deadline came: an unfinished request is
    /// answered 408, an idle keep-alive connection closed; either way the
    /// connection ends (at once if its socket is full).
    pub(super) fn http_timeout(&mut self, now: Instant, conn: ConnId) {
        let Some(h) = self.conns.get(&conn).and_then(|c| match &c.kind {
            ConnKind::Http(h) => Some(h),
            _ => None,
        }) else {
            return;
        };
        if h.deadline.is_none_or(|d| d > now) {
            return;
        }
        let idle = h.idle || matches!(h.state, HttpState::Busy { .. });
        if self.held.is_blocked(conn) {
            self.abort_conn(conn, CloseReason::TransportError);
        } else if idle {
            self.drop_conn(now, conn);
        } else {
            let res = ResponseHead::new(408).with_header("Content-Type", "text/plain");
            self.write_raw(conn, res, Bytes::from_static(b"request timeout\n"), true);
        }
    }

    /// A connection went away: a held poll or a probe transport takes its
    /// session's failure with it.
    pub(super) fn drop_conn(&mut self, now: Instant, conn: ConnId) {
        if self.held.is_blocked(conn) {
            // Nothing it holds can be written now.
            return self.abort_conn(conn, CloseReason::TransportError);
        }
        if self.conns.remove(&conn).is_none() {
            return;
        }
        if let Some(sid) = self.polls.remove(&conn) {
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.transport = Transport::Polling { get: None };
            }
            self.end_session(now, sid, CloseReason::TransportError);
        }
        self.transmits.push_back(Transmit::Close { conn });
    }
}

fn keep_alive(head: &RequestHead) -> bool {
    if head.headers.has_token("connection", "close") {
        return false;
    }
    // RFC 9112 section 6.1: answered, then closed.
    if head.headers.get("transfer-encoding").is_some()
        && head.headers.get("content-length").is_some()
    {
        return false;
    }
    head.version >= 1 || head.headers.has_token("connection", "keep-alive")
}

/// Node refuses origins with control characters (its `checkInvalidHeaderChar`).
pub(super) fn has_invalid_header_char(v: Option<&[u8]>) -> bool {
    v.is_some_and(|v| v.iter().any(|&c| (c < 32 && c != b'\t') || c == 127))
}

/// The body of a refused engine request, `{"code":N,"message":"..."}`, as
/// the official server writes it with `JSON.stringify`.
fn error_body(code: ErrorCode, message: &str) -> Bytes {
    struct ErrorBody<'a> {
        code: ErrorCode,
        message: &'a str,
    }
    impl Serialize for ErrorBody<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut o = serializer.serialize_struct("ErrorBody", 2)?;
            o.serialize_field("code", &(self.code as u8))?;
            o.serialize_field("message", self.message)?;
            o.end()
        }
    }
    // A number and a string: serialising cannot fail.
    Bytes::from(serde_json::to_vec(&ErrorBody { code, message }).unwrap_or_default())
}
