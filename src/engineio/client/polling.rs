//! The long-polling transport: one GET always in flight (the server holds
//! it until it has packets), and the write buffer POSTed one payload at a
//! time, as much of it as fits the server's `maxPayload`.
//!
//! # Theory of operation
//!
//! Each of the two slots, `get` and `post`, is empty or holds the
//! connection of one request in flight (`http.rs` carries them). The GET is
//! sent again as soon as its answer is read, unless an upgrade is pausing
//! polling; the POST slot takes the next batch once the last one is
//! answered. The handshake GET and every POST must be answered within the
//! request timeout; a later GET waits as long as the server holds it (the
//! heartbeat bounds that).

use std::{borrow::Borrow, time::Instant};

use super::{
    Client, ClientError, Phase, Transport,
    http::{Answer, Purpose, decode_body},
};
use crate::{
    engineio::{
        CloseReason, ConnId, Data, Packet, PacketType, decode_payload, encode_payload,
        open::OpenPacket,
    },
    http::Method,
};

#[derive(Debug)]
pub(super) struct Polling {
    pub(super) get: Option<ConnId>,
    pub(super) post: Option<ConnId>,
    /// An upgrade is pausing polling: no new GET.
    pub(super) pausing: bool,
}

impl Client {
    pub(super) fn polling_mut(&mut self) -> Option<&mut Polling> {
        match &mut self.transport {
            Some(Transport::Polling(p)) => Some(p),
            _ => None,
        }
    }

    /// Whether the GET or the POST in flight is past its deadline.
    pub(super) fn polling_expired(&self, now: Instant) -> bool {
        let Some(Transport::Polling(p)) = &self.transport else {
            return false;
        };
        self.http.iter().any(|c| {
            (p.get == Some(c.id) || p.post == Some(c.id)) && c.deadline.is_some_and(|d| d <= now)
        })
    }

    pub(super) fn send_get(&mut self, now: Instant) {
        if self.polling_mut().is_none() {
            return;
        }
        // The handshake must be answered in time; later polls are held by
        // the server and bounded by the heartbeat.
        let deadline = (self.phase == Phase::Opening).then(|| now + self.config.request_timeout);
        let conn = self.send_request(now, Purpose::Poll, Method::Get, &[], deadline);
        if let Some(p) = self.polling_mut() {
            p.get = Some(conn);
        }
    }

    /// POSTs a close packet, whose answer is not awaited (but for a while,
    /// to let the connection go cleanly).
    pub(super) fn post_goodbye(&mut self, now: Instant) {
        let body = encode_payload(&[Packet::new(PacketType::Close)]);
        let deadline = Some(now + self.config.request_timeout);
        self.send_request(now, Purpose::Goodbye, Method::Post, &body, deadline);
    }

    pub(super) fn send_post(&mut self, now: Instant, body: &[u8]) {
        let deadline = Some(now + self.config.request_timeout);
        let conn = self.send_request(now, Purpose::Post, Method::Post, body, deadline);
        if let Some(p) = self.polling_mut() {
            p.post = Some(conn);
        }
    }

    /// The body of a 200 answer, decoded if it came compressed. Any other
    /// answer, or none, or a body that cannot be decoded, ends the session
    /// with `transport error`.
    fn accepted(&mut self, now: Instant, answer: Answer) -> Option<bytes::Bytes> {
        let error = match answer {
            Ok((head, body)) if head.status == 200 => match decode_body(&head, body) {
                Ok(body) => return Some(body),
                Err(e) => e,
            },
            Ok((head, _)) => ClientError::HttpStatus(head.status),
            Err(e) => e,
        };
        self.close_session(now, CloseReason::TransportError, Some(error), false);
        None
    }

    pub(super) fn on_poll_response(&mut self, now: Instant, answer: Answer) {
        let Some(body) = self.accepted(now, answer) else {
            return;
        };
        let (packets, error) = decode_payload(body);
        for p in packets {
            if self.phase == Phase::Closed {
                return;
            }
            self.on_packet(now, p);
        }
        if self.phase == Phase::Closed {
            return;
        }
        if let Some(e) = error {
            return self.close_session(now, CloseReason::ParseError, Some(e.into()), true);
        }
        if self.phase == Phase::Opening {
            let e = ClientError::BadHandshake("the first poll carried no open packet");
            return self.close_session(now, CloseReason::ParseError, Some(e), false);
        }
        if let Some(Transport::Polling(p)) = &self.transport {
            if !p.pausing && p.get.is_none() {
                self.send_get(now);
            }
        }
        self.check_paused(now);
    }

    pub(super) fn on_post_response(&mut self, now: Instant, answer: Answer) {
        if self.accepted(now, answer).is_none() {
            return;
        }
        let n = self.in_flight.min(self.write_buffer.len());
        for q in self.write_buffer.drain(..n) {
            if q.packet.kind == PacketType::Message {
                self.queued_messages = self.queued_messages.saturating_sub(1);
            }
        }
        self.in_flight = 0;
        self.check_paused(now);
        self.flush(now);
        self.maybe_finish_close(now);
    }

    /// The answer to a handshake abandoned by [`close`](Self::close): a
    /// session it opened is closed at once.
    pub(super) fn on_late_handshake(&mut self, now: Instant, answer: Answer) {
        let Ok((head, body)) = answer else { return };
        if head.status != 200 {
            return;
        }
        let Ok(body) = decode_body(&head, body) else {
            return;
        };
        let (packets, _) = decode_payload(body);
        let Some(open) = packets.first().filter(|p| p.kind == PacketType::Open) else {
            return;
        };
        let Data::Text(t) = &open.data else { return };
        if let Ok(h) = OpenPacket::parse(t.as_str()) {
            self.sid = Some(h.sid);
            self.post_goodbye(now);
        }
    }
}

/// The packets from the front that fit one payload of at most `max`
/// bytes; always at least one (a packet over the limit goes alone and the
/// server refuses it).
pub(super) fn batch<P: Borrow<Packet>>(packets: &[P], max: Option<usize>) -> &[P] {
    let mut total = 0usize;
    let mut n = 0;
    for p in packets {
        let add = p.borrow().encoded_len() + usize::from(n > 0);
        if n > 0 && max.is_some_and(|m| total.saturating_add(add) > m) {
            break;
        }
        total = total.saturating_add(add);
        n += 1;
    }
    packets.get(..n).unwrap_or(packets)
}
