//! The long-polling transport: one GET always in flight (the server holds
//! it until it has packets), and the write buffer POSTed one payload at a
//! time, as much of it as fits the server's `maxPayload`.
//!
//! # Theory of operation
//!
//! Each of the two slots, `get` and `post`, is empty or holds one request
//! in flight. The GET is sent again as soon as its answer is read, unless
//! an upgrade is pausing polling; the POST slot takes the next batch once
//! the last one is answered. The handshake GET and every POST must be
//! answered within the request timeout; a later GET waits as long as the
//! server holds it (the heartbeat bounds that).

use std::time::Instant;

use bytes::Bytes;

use super::{
    Client, ClientError, ClientTransmit, RequestFailed, RequestId, Transport, session::Phase,
};
use crate::{
    engineio::{
        CloseReason, Data, Packet, PacketType, decode_payload, encode_payload, open::OpenPacket,
    },
    http::{Method, ResponseHead},
};

/// A request in flight.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    pub(super) id: RequestId,
    pub(super) deadline: Option<Instant>,
}

#[derive(Debug)]
pub(super) struct Polling {
    pub(super) get: Option<Pending>,
    pub(super) post: Option<Pending>,
    /// An upgrade is pausing polling: no new GET.
    pub(super) pausing: bool,
}

impl Client {
    pub(super) fn send_get(&mut self, now: Instant) {
        let id = self.next_id();
        let request = self.request(Method::Get, Bytes::new());
        // The handshake must be answered in time; later polls are held by
        // the server and bounded by the heartbeat.
        let deadline = (self.phase == Phase::Opening).then(|| now + self.config.request_timeout);
        if let Some(Transport::Polling(p)) = &mut self.transport {
            p.get = Some(Pending { id, deadline });
            self.transmits
                .push_back(ClientTransmit::Request { id, request });
        }
    }

    /// Queues a POST of `body`; the caller records it as pending (or not,
    /// for a farewell whose answer is not awaited).
    pub(super) fn push_post(&mut self, body: Bytes) -> RequestId {
        let id = self.next_id();
        let request = self.request(Method::Post, body);
        self.transmits
            .push_back(ClientTransmit::Request { id, request });
        id
    }

    pub(super) fn send_post(&mut self, now: Instant, body: Bytes) {
        let id = self.push_post(body);
        let deadline = Some(now + self.config.request_timeout);
        if let Some(Transport::Polling(p)) = &mut self.transport {
            p.post = Some(Pending { id, deadline });
        }
    }

    /// The body of a 200 answer. Any other answer, or a failed request,
    /// ends the session with `transport error`.
    fn accepted(
        &mut self,
        now: Instant,
        response: Result<(ResponseHead, Bytes), RequestFailed>,
    ) -> Option<Bytes> {
        let error = match response {
            Ok((head, body)) if head.status == 200 => return Some(body),
            Ok((head, _)) => ClientError::HttpStatus(head.status),
            Err(e) => e.into(),
        };
        self.close_session(now, CloseReason::TransportError, Some(error), false);
        None
    }

    pub(super) fn on_poll_response(
        &mut self,
        now: Instant,
        response: Result<(ResponseHead, Bytes), RequestFailed>,
    ) {
        let Some(body) = self.accepted(now, response) else {
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

    pub(super) fn on_post_response(
        &mut self,
        now: Instant,
        response: Result<(ResponseHead, Bytes), RequestFailed>,
    ) {
        if self.accepted(now, response).is_none() {
            return;
        }
        let n = self.in_flight.min(self.write_buffer.len());
        for p in self.write_buffer.drain(..n) {
            if p.kind == PacketType::Message {
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
    pub(super) fn on_late_handshake(
        &mut self,
        response: Result<(ResponseHead, Bytes), RequestFailed>,
    ) {
        let Ok((head, body)) = response else { return };
        if head.status != 200 {
            return;
        }
        let (packets, _) = decode_payload(body);
        let Some(open) = packets.first().filter(|p| p.kind == PacketType::Open) else {
            return;
        };
        let Data::Text(t) = &open.data else { return };
        if let Ok(h) = OpenPacket::parse(t.as_str()) {
            self.sid = Some(h.sid);
            self.push_post(encode_payload(&[Packet::new(PacketType::Close)]));
        }
    }
}

/// The packets from the front that fit one payload of at most `max`
/// bytes; always at least one (a packet over the limit goes alone and the
/// server refuses it).
pub(super) fn batch(packets: &[Packet], max: Option<usize>) -> &[Packet] {
    let mut total = 0usize;
    let mut n = 0;
    for p in packets {
        let add = p.encoded_len() + usize::from(n > 0);
        if n > 0 && max.is_some_and(|m| total.saturating_add(add) > m) {
            break;
        }
        total = total.saturating_add(add);
        n += 1;
    }
    packets.get(..n).unwrap_or(packets)
}
