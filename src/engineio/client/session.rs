//! The session: the handshake (the open packet), the heartbeat, the write
//! buffer and how it reaches the transport, and the close.
//!
//! # Theory of operation
//!
//! The session's phases, `Opening`, `Open` and `Closed`, are drawn at the
//! top of `client.rs`; the open packet moves it from the first to the
//! second, and `close_session` is the one way to the last.
//!
//! Sends wait in the write buffer until the transport takes them: over
//! polling, one POST at a time carries as many as fit `maxPayload`, and
//! leaves the buffer once the server has answered it; over WebSocket they
//! leave at once, one message each. Nothing is written while an upgrade
//! pauses the transport. A ping resets the heartbeat, which allows
//! `pingInterval + pingTimeout` until the next.

use std::time::{Duration, Instant};

use super::{
    Client, ClientError, ClientEvent, Phase, Queued, Transport, TransportMode,
    polling::batch,
    upgrade::{Probe, ProbeStage},
    websocket::drain_ws,
};
use crate::engineio::{
    CloseReason, Data, Packet, PacketType, TransportKind, encode_payload, frame, open::OpenPacket,
};

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
                    self.write_buffer.push_back(Queued {
                        packet: Packet::new(PacketType::Pong),
                        compress: true,
                    });
                    self.flush(now);
                }
                PacketType::Message => self.events.push_back(ClientEvent::Message(p.data)),
                PacketType::Open | PacketType::Pong | PacketType::Upgrade | PacketType::Noop => {}
            },
        }
    }

    fn on_open(&mut self, now: Instant, json: &str) {
        let h = match OpenPacket::parse(json) {
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
        if self.phase != Phase::Open || self.write_buffer.is_empty() || self.upgrade_pausing() {
            return;
        }
        match &mut self.transport {
            Some(Transport::Polling(p)) => {
                if p.post.is_some() || p.pausing {
                    return;
                }
                let max = self.params.as_ref().and_then(|p| p.max_payload);
                let batch = batch(self.write_buffer.make_contiguous(), max);
                self.in_flight = batch.len();
                let body = encode_payload(batch);
                self.send_post(now, &body);
            }
            // A full socket takes nothing more: packets wait here, where
            // `max_buffered_packets` bounds them.
            Some(Transport::WebSocket(s)) if self.held.is_blocked(s.conn) => {}
            Some(Transport::WebSocket(s)) => {
                for q in self.write_buffer.drain(..) {
                    // The queue is drained into our transmits after every
                    // call, so the WebSocket's own limit is never reached.
                    if !q.compress {
                        s.ws.set_compress(false);
                    }
                    let _ = frame::send(&mut s.ws, &q.packet);
                    if !q.compress {
                        s.ws.set_compress(true);
                    }
                }
                self.queued_messages = 0;
                drain_ws(s, now, &mut self.transmits);
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
            || self.upgrade_pausing()
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
                    self.post_goodbye(now);
                    if let Some(get) = p.get {
                        self.bound_request(get, now + self.config.request_timeout);
                    }
                } else {
                    for conn in [p.get, p.post].into_iter().flatten() {
                        self.cancel_request(conn);
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
