//! The upgrade from polling to WebSocket, as `engine.io-client` does it.
//!
//! # Theory of operation
//!
//! ```text
//!   Connecting ──WebSocket open, 2probe sent──► AwaitPong ──3probe──► Pausing
//!   Pausing ──no GET or POST in flight: 5 sent──► the WebSocket is the transport
//!   any stage ──other answer, failure, timeout──► abandoned, polling goes on
//! ```
//!
//! A WebSocket opens with the sid and sends `2probe`. On `3probe` polling
//! pauses: no new GET, nothing written, and the requests in flight complete
//! (the server releases the held GET with a noop). Then `5` switches the
//! session over and the write buffer leaves on the WebSocket: no packet is
//! lost or sent twice. Polling's connections are closed.

use std::time::Instant;

use super::{
    Client, ClientError, ClientEvent, Phase, Transport,
    websocket::{WsStream, drain_ws, ws_close_cause},
};
use crate::{
    engineio::{Data, Packet, PacketType, frame},
    ws,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProbeStage {
    /// The WebSocket handshake is under way.
    Connecting,
    /// `2probe` sent.
    AwaitPong,
    /// `3probe` received: waiting for polling to pause.
    Pausing,
}

#[derive(Debug)]
pub(super) struct Probe {
    pub(super) stream: WsStream,
    pub(super) stage: ProbeStage,
}

impl Client {
    /// Whether `3probe` has come and the transport is pausing for the
    /// switch: nothing is written until it is done or abandoned.
    pub(super) fn upgrade_pausing(&self) -> bool {
        self.probe
            .as_ref()
            .is_some_and(|p| p.stage == ProbeStage::Pausing)
    }

    pub(super) fn on_probe_ws_event(&mut self, now: Instant, ev: ws::Event) {
        let Some(stage) = self.probe.as_ref().map(|p| p.stage) else {
            return;
        };
        match (ev, stage) {
            (ws::Event::Open { .. }, ProbeStage::Connecting) => {
                if let Some(p) = self.probe.as_mut() {
                    let _ = frame::send(
                        &mut p.stream.ws,
                        &Packet::with_text(PacketType::Ping, "probe"),
                    );
                    p.stage = ProbeStage::AwaitPong;
                }
            }
            (ws::Event::Message(m), ProbeStage::AwaitPong) => match frame::decode(m) {
                Ok(p)
                    if p.kind == PacketType::Pong
                        && matches!(&p.data, Data::Text(t) if t.as_str() == "probe") =>
                {
                    if let Some(p) = self.probe.as_mut() {
                        p.stage = ProbeStage::Pausing;
                        p.stream.deadline = None;
                    }
                    if let Some(Transport::Polling(p)) = &mut self.transport {
                        p.pausing = true;
                    }
                    self.check_paused(now);
                }
                _ => self.probe_failed(now, ClientError::BadProbe),
            },
            // A conforming server sends nothing else before the switch;
            // deliver it rather than lose it.
            (ws::Event::Message(m), ProbeStage::Pausing) => match frame::decode(m) {
                Ok(p) => self.on_packet(now, p),
                Err(e) => self.probe_failed(now, e.into()),
            },
            (ws::Event::Closed(c), _) => {
                let (_, error) = ws_close_cause(c);
                self.probe_failed(now, error);
            }
            _ => {}
        }
    }

    /// Polling has paused for an upgrade once no request is in flight:
    /// switch to the WebSocket, send `5`, then the buffer.
    pub(super) fn check_paused(&mut self, now: Instant) {
        if self.phase != Phase::Open || !self.upgrade_pausing() {
            return;
        }
        let Some(Transport::Polling(p)) = &self.transport else {
            return;
        };
        if p.get.is_some() || p.post.is_some() {
            return;
        }
        let Some(probe) = self.probe.take() else {
            return;
        };
        let mut stream = probe.stream;
        let _ = frame::send(&mut stream.ws, &Packet::new(PacketType::Upgrade));
        self.transport = Some(Transport::WebSocket(stream));
        self.events.push_back(ClientEvent::Upgrade);
        self.flush(now);
        if let Some(Transport::WebSocket(s)) = &mut self.transport {
            drain_ws(s, now, &mut self.transmits);
        }
        // Polling is over: its kept-alive connections go.
        self.close_idle();
        self.maybe_finish_close(now);
    }

    /// Abandons the probe; polling goes on.
    pub(super) fn probe_failed(&mut self, now: Instant, error: ClientError) {
        let Some(probe) = self.probe.take() else {
            return;
        };
        self.retire(now, probe.stream);
        self.events.push_back(ClientEvent::UpgradeFailed(error));
        if self.phase != Phase::Open {
            return;
        }
        if let Some(Transport::Polling(p)) = &mut self.transport {
            if p.pausing {
                p.pausing = false;
                if p.get.is_none() {
                    self.send_get(now);
                }
            }
        }
        self.flush(now);
        self.maybe_finish_close(now);
    }
}
