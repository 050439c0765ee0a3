//! The HTTP/1.1 connections of the polling transport: requests written on
//! them, answers read back, and keep-alive reuse.
//!
//! # Theory of operation
//!
//! ```text
//!  (new) ──request──► Busy ──whole answer, kept alive──► Idle ──next request──► Busy
//!                      │  └──whole answer, `Connection: close`─► closed
//!                      └──cancelled, timed out, bad answer, the end of the connection──► closed
//!  Idle ──idle_timeout, or the session is over──► closed
//! ```
//!
//! A connection carries one request at a time. A request goes on the
//! connection that went idle last (the one the server is least likely to
//! have dropped), or on a new one the driver is asked to open. The answer
//! is read with [`ResponseReader`]: its head, then the body framed by
//! `Content-Length`, `chunked` or the end of the connection. A connection
//! whose answer keeps it alive (no `Connection: close`, nothing after the
//! answer) waits for the next request, at most
//! [`ClientConfig::idle_timeout`](super::ClientConfig::idle_timeout) (the
//! server may be closing it: Node closes idle ones after 5 s); any other is
//! closed. Abandoning a request closes its connection, as a browser aborts
//! one.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::{Client, ClientError, ClientTransmit, Phase};
use crate::{
    engineio::{
        ConnId,
        compression::{self, ContentEncoding, DecodeBodyError},
    },
    http::{
        HttpError, Limits, Method, ResponseHead,
        client::{ResponseReader, keeps_alive},
    },
};

/// Largest answer body read (a polling payload), as it comes and, when it
/// comes gzip- or deflate-encoded, once decoded.
pub(super) const MAX_BODY: usize = 64 << 20;

/// The body of an answer as the server meant it: a gzip- or
/// deflate-encoded one (`httpCompression`) decoded, under [`MAX_BODY`]
/// decoded too, which inflating stops at (a small body cannot make a large
/// buffer).
pub(super) fn decode_body(head: &ResponseHead, body: Bytes) -> Result<Bytes, ClientError> {
    let bad = |why| ClientError::BadResponse(HttpError::BadBody(why));
    let coding = ContentEncoding::parse(head.headers.get("content-encoding"))
        .map_err(|()| bad("a Content-Encoding other than gzip or deflate"))?;
    let Some(coding) = coding else {
        return Ok(body);
    };
    compression::decompress(&body, coding, MAX_BODY).map_err(|e| match e {
        DecodeBodyError::TooLarge => ClientError::BadResponse(HttpError::BodyTooLarge(MAX_BODY)),
        DecodeBodyError::Invalid => bad("invalid gzip or deflate data"),
    })
}

/// What a request in flight is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// The polling GET (or the handshake).
    Poll,
    /// A POST of the write buffer.
    Post,
    /// The close packet a closing session POSTs; its answer is not awaited.
    Goodbye,
    /// A handshake abandoned by `close`: a session it opens is closed.
    LateHandshake,
}

/// The answer to a request, or why there is none.
pub(super) type Answer = Result<(ResponseHead, Bytes), ClientError>;

#[derive(Debug)]
pub(super) struct HttpConn {
    pub(super) id: ConnId,
    /// The request in flight; `None` while idle.
    pub(super) purpose: Option<Purpose>,
    /// Busy: when the answer is due (never, for a held poll); idle: when
    /// the connection is let go.
    pub(super) deadline: Option<Instant>,
    /// When it last went idle.
    idle_since: Option<Instant>,
    reader: ResponseReader,
    rbuf: BytesMut,
}

impl Client {
    /// Writes a request on the connection that went idle last, or on a new
    /// one; returns the connection.
    pub(super) fn send_request(
        &mut self,
        now: Instant,
        purpose: Purpose,
        method: Method,
        body: &[u8],
        deadline: Option<Instant>,
    ) -> ConnId {
        self.expire_idle(now);
        let data = self.request(method, body);
        let idle = self
            .http
            .iter_mut()
            .filter(|c| c.purpose.is_none())
            .max_by_key(|c| c.idle_since);
        let conn = match idle {
            Some(c) => {
                c.purpose = Some(purpose);
                c.deadline = deadline;
                c.id
            }
            None => {
                let id = self.new_conn_id();
                self.transmits
                    .push_back(ClientTransmit::Connect { conn: id });
                self.http.push(HttpConn {
                    id,
                    purpose: Some(purpose),
                    deadline,
                    idle_since: None,
                    reader: ResponseReader::new(Limits::default(), MAX_BODY),
                    rbuf: BytesMut::new(),
                });
                id
            }
        };
        self.transmits
            .push_back(ClientTransmit::Data { conn, data });
        conn
    }

    /// The request on `conn` is no longer wanted: its connection goes.
    pub(super) fn cancel_request(&mut self, conn: ConnId) {
        self.close_http(conn);
    }

    /// Closes an HTTP connection and forgets it.
    fn close_http(&mut self, conn: ConnId) {
        if let Some(i) = self.http.iter().position(|c| c.id == conn) {
            self.http.swap_remove(i);
            self.transmits.push_back(ClientTransmit::Close { conn });
        }
    }

    /// Lets go of the idle connections past their time.
    fn expire_idle(&mut self, now: Instant) {
        let expired: Vec<ConnId> = self
            .http
            .iter()
            .filter(|c| c.purpose.is_none() && c.deadline.is_some_and(|d| d <= now))
            .map(|c| c.id)
            .collect();
        for conn in expired {
            self.close_http(conn);
        }
    }

    /// Gives the request on `conn` a deadline (its answer is no longer
    /// needed, only waited for a while).
    pub(super) fn bound_request(&mut self, conn: ConnId, deadline: Instant) {
        if let Some(c) = self.http.iter_mut().find(|c| c.id == conn) {
            c.deadline = Some(c.deadline.map_or(deadline, |d| d.min(deadline)));
        }
    }

    /// Closes every idle connection: nothing will be asked of them.
    pub(super) fn close_idle(&mut self) {
        let idle: Vec<ConnId> = self
            .http
            .iter()
            .filter(|c| c.purpose.is_none())
            .map(|c| c.id)
            .collect();
        for conn in idle {
            self.close_http(conn);
        }
    }

    /// Bytes from HTTP connection `conn`; false if it is not one.
    pub(super) fn http_input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) -> bool {
        let Some(c) = self.http.iter_mut().find(|c| c.id == conn) else {
            return false;
        };
        let Some(purpose) = c.purpose.take() else {
            // Bytes while no request is out: the connection is out of step.
            self.close_http(conn);
            return true;
        };
        c.rbuf.extend_from_slice(bytes);
        match c.reader.read(&mut c.rbuf) {
            Ok(None) => c.purpose = Some(purpose),
            Ok(Some((head, body))) => {
                if keeps_alive(&head) && c.rbuf.is_empty() {
                    c.deadline = now.checked_add(self.config.idle_timeout);
                    c.idle_since = Some(now);
                } else {
                    self.close_http(conn);
                }
                self.answered(now, conn, purpose, Ok((head, body)));
            }
            Err(e) => {
                self.close_http(conn);
                self.answered(now, conn, purpose, Err(ClientError::BadResponse(e)));
            }
        }
        true
    }

    /// HTTP connection `conn` ended: cleanly (`error` is `None`, and an
    /// answer delimited by the end is complete), or failed. False if it is
    /// not one.
    pub(super) fn http_end(&mut self, now: Instant, conn: ConnId, error: Option<&str>) -> bool {
        let Some(i) = self.http.iter().position(|c| c.id == conn) else {
            return false;
        };
        let mut c = self.http.swap_remove(i);
        if error.is_none() {
            // Our side goes too.
            self.transmits.push_back(ClientTransmit::Close { conn });
        }
        if let Some(purpose) = c.purpose {
            let answer = match error {
                Some(e) => Err(ClientError::ConnectionFailed(e.to_owned())),
                // An answer framed by the end is whole now; any other is cut.
                None => c.reader.finish().map_err(|_| ClientError::ConnectionClosed),
            };
            self.answered(now, conn, purpose, answer);
        }
        true
    }

    /// The timers of the HTTP connections: idle ones let go, and once the
    /// session is over, requests whose answers were left to come in their
    /// own time. (While it is on, polling's requests are timed by the
    /// session, which fails when one is late.)
    pub(super) fn http_timeouts(&mut self, now: Instant) {
        self.expire_idle(now);
        if self.phase != Phase::Closed {
            return;
        }
        let late: Vec<ConnId> = self
            .http
            .iter()
            .filter(|c| c.purpose.is_some() && c.deadline.is_some_and(|d| d <= now))
            .map(|c| c.id)
            .collect();
        for conn in late {
            self.close_http(conn);
        }
    }

    /// The earliest deadline of the HTTP connections.
    pub(super) fn http_deadline(&self) -> Option<Instant> {
        self.http.iter().filter_map(|c| c.deadline).min()
    }

    fn answered(&mut self, now: Instant, conn: ConnId, purpose: Purpose, answer: Answer) {
        match purpose {
            Purpose::Poll | Purpose::Post if self.phase == Phase::Closed => {}
            Purpose::Poll => {
                if self.polling_mut().is_some_and(|p| p.get == Some(conn)) {
                    if let Some(p) = self.polling_mut() {
                        p.get = None;
                    }
                    self.on_poll_response(now, answer);
                }
            }
            Purpose::Post => {
                if self.polling_mut().is_some_and(|p| p.post == Some(conn)) {
                    if let Some(p) = self.polling_mut() {
                        p.post = None;
                    }
                    self.on_post_response(now, answer);
                }
            }
            Purpose::Goodbye => {}
            Purpose::LateHandshake => self.on_late_handshake(now, answer),
        }
    }
}
