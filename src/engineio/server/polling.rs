//! The long-polling transport: a GET is held until the session has packets
//! (or a heartbeat, an upgrade's noop, the end of the session) and answers
//! with all of them in one payload; a POST carries the client's packets.

use std::time::Instant;

use bytes::Bytes;

use super::{
    Server,
    session::{Session, Transport},
};
use crate::{
    engineio::{CloseReason, ConnId, Packet, Sid, compression, decode_payload, encode_payload},
    http::{RequestHead, ResponseHead},
};

impl Server {
    pub(super) fn on_poll(&mut self, now: Instant, sid: Sid, conn: ConnId) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let Transport::Polling { get } = &mut s.transport else {
            return;
        };
        if get.is_some() {
            // Two polls at once: the official server fails the session
            // ("overlap from client"), then refuses the second.
            self.end_session(now, sid, CloseReason::TransportError);
            return self.write_response(now, conn, ResponseHead::new(400), Bytes::new());
        }
        *get = Some(conn);
        self.polls.insert(conn, sid);
        if s.probe_answered() {
            s.queue_noop();
        }
        if !s.buffer.is_empty() || s.closing.is_some() {
            self.flush_polling(now, sid);
        }
    }

    pub(super) fn on_data(
        &mut self,
        now: Instant,
        sid: Sid,
        conn: ConnId,
        head: &RequestHead,
        body: Bytes,
    ) {
        if head.headers.get("content-type") == Some(b"application/octet-stream") {
            // Binary payloads are an Engine.IO v3 feature ("invalid content").
            self.end_session(now, sid, CloseReason::TransportError);
            return self.write_response(now, conn, ResponseHead::new(400), Bytes::new());
        }
        let (packets, error) = decode_payload(body);
        for p in packets {
            if !self.sessions.contains_key(&sid) {
                break;
            }
            self.on_packet(now, sid, p);
        }
        if error.is_some() && self.sessions.contains_key(&sid) {
            self.end_session(now, sid, CloseReason::ParseError);
        }
        let res = ResponseHead::new(200)
            .with_header("Content-Type", "text/html")
            .with_header("cache-control", "no-store");
        self.write_response(now, conn, res, Bytes::from_static(b"ok"));
    }

    /// Answers the pending GET with everything buffered (or, once a
    /// closing session is drained, with a noop and the close packet).
    pub(super) fn flush_polling(&mut self, now: Instant, sid: Sid) {
        let Some((conn, packets, compress, end)) =
            self.sessions.get_mut(&sid).and_then(Session::take_poll)
        else {
            return;
        };
        self.answer_poll(now, conn, &packets, compress);
        if end {
            self.end_session(now, sid, CloseReason::ForcedClose);
        }
    }

    /// Answers the GET `conn` with a payload of `packets`, compressed as
    /// the request accepts if it is large enough and `compress` (some
    /// packet in it may be; the server's own packets may, as in the
    /// official server) says so (`httpCompression`).
    pub(super) fn answer_poll(
        &mut self,
        now: Instant,
        conn: ConnId,
        packets: &[Packet],
        compress: bool,
    ) {
        let mut head = polling_head();
        // The handshake's answer (a request without `sid`) sets the cookie,
        // as the official server's "headers" hook does; a handshake over
        // WebSocket gets none there either.
        if let (Some(cookie), Some(sid)) = (&self.config.cookie, self.polls.get(&conn)) {
            let first = self
                .request_head(conn)
                .is_some_and(|h| h.query().get("sid").is_none());
            if first {
                head.headers.push("Set-Cookie", cookie.header(sid.as_str()));
            }
        }
        let mut body = encode_payload(packets);
        if let Some(hc) = self.config.http_compression.filter(|_| compress) {
            let coding = (body.len() >= hc.threshold)
                .then(|| self.request_head(conn))
                .flatten()
                .and_then(|req| compression::negotiate(req.headers.get("accept-encoding")));
            if let Some(z) =
                coding.and_then(|c| Some((c, compression::compress(&body, c, hc.level)?)))
            {
                head.headers.push("Content-Encoding", z.0.as_str());
                body = z.1;
            }
        }
        self.write_response(now, conn, head, body);
    }
}

/// The head of a polling response.
pub(super) fn polling_head() -> ResponseHead {
    ResponseHead::new(200)
        .with_header("Content-Type", "text/plain; charset=UTF-8")
        .with_header("cache-control", "no-store")
}
