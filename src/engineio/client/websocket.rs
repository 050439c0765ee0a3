//! The WebSocket transport: the client runs the WebSocket protocol over a
//! connection the driver opens, one packet per message; WebSockets it no
//! longer uses finish their close handshakes on their own.

use std::{collections::VecDeque, time::Instant};

use super::{Client, ClientError, ClientTransmit, Phase, Transport};
use crate::{
    engineio::{CloseReason, ConnId, TransportKind, frame},
    ws,
};

/// A WebSocket over a connection of its own.
#[derive(Debug)]
pub(super) struct WsStream {
    pub(super) conn: ConnId,
    pub(super) ws: Box<ws::Connection>,
    /// Until the open packet (or `3probe`) arrives.
    pub(super) deadline: Option<Instant>,
}

/// Which stream an input is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Which {
    Main,
    Probe,
    Retired(usize),
}

impl Client {
    pub(super) fn open_ws(&mut self, now: Instant) -> WsStream {
        let conn = self.new_conn_id();
        let target = self.target(TransportKind::WebSocket);
        let mut request = ws::ClientRequest::new(self.config.host.clone(), target);
        request.headers = self.config.headers.clone();
        let ws = Box::new(ws::Connection::client(
            self.config.ws,
            request,
            self.entropy.fork(),
        ));
        let mut stream = WsStream {
            conn,
            ws,
            deadline: Some(now + self.config.request_timeout),
        };
        self.transmits.push_back(ClientTransmit::Connect { conn });
        drain_ws(&mut stream, now, &mut self.transmits);
        stream
    }

    pub(super) fn find_stream(&self, conn: ConnId) -> Option<Which> {
        if matches!(&self.transport, Some(Transport::WebSocket(s)) if s.conn == conn) {
            return Some(Which::Main);
        }
        if self.probe.as_ref().is_some_and(|p| p.stream.conn == conn) {
            return Some(Which::Probe);
        }
        self.retired
            .iter()
            .position(|s| s.conn == conn)
            .map(Which::Retired)
    }

    pub(super) fn stream_mut(&mut self, which: Which) -> Option<&mut WsStream> {
        match which {
            Which::Main => match &mut self.transport {
                Some(Transport::WebSocket(s)) => Some(s),
                _ => None,
            },
            Which::Probe => self.probe.as_mut().map(|p| &mut p.stream),
            Which::Retired(i) => self.retired.get_mut(i),
        }
    }

    /// Acts on what the WebSocket on `conn` produced after an input or a
    /// timeout. The stream is looked up again after each event: a probe may
    /// become the main transport half-way, and its next events are then the
    /// session's.
    pub(super) fn process_stream(&mut self, now: Instant, conn: ConnId) {
        loop {
            let Some(which) = self.find_stream(conn) else {
                return;
            };
            let Some(s) = self.stream_mut(which) else {
                return;
            };
            let Some(ev) = s.ws.poll_event(now) else {
                break;
            };
            match which {
                Which::Main => self.on_main_ws_event(now, ev),
                Which::Probe => self.on_probe_ws_event(now, ev),
                Which::Retired(_) => {}
            }
        }
        if let Some(Which::Retired(i)) = self.find_stream(conn) {
            if let Some(s) = self.retired.get_mut(i) {
                if drain_ws(s, now, &mut self.transmits) {
                    self.retired.remove(i);
                }
            }
        }
    }

    fn on_main_ws_event(&mut self, now: Instant, ev: ws::Event) {
        match ev {
            ws::Event::Message(m) => match frame::decode(m) {
                Ok(p) => self.on_packet(now, p),
                Err(e) => self.close_session(now, CloseReason::ParseError, Some(e.into()), true),
            },
            ws::Event::Closed(c) => {
                let (reason, error) = ws_close_cause(c);
                self.close_session(now, reason, Some(error), false);
            }
            ws::Event::Open { .. } | ws::Event::Ping(_) | ws::Event::Pong(_) => {}
            ws::Event::Upgrade(_) => {}
        }
    }

    /// Lets a WebSocket we no longer use finish its close handshake.
    pub(super) fn retire(&mut self, now: Instant, mut s: WsStream) {
        match s.ws.state() {
            ws::State::Connecting => {
                self.transmits
                    .push_back(ClientTransmit::Close { conn: s.conn });
                return;
            }
            ws::State::Open => {
                // No status code, as the official client's close() sends.
                let _ = s.ws.close_with(now, None);
            }
            ws::State::Closing | ws::State::Closed => {}
        }
        // Its remaining events (a last message, its close) are not heard.
        while s.ws.poll_event(now).is_some() {}
        s.deadline = None;
        if !drain_ws(&mut s, now, &mut self.transmits) {
            self.retired.push(s);
        }
    }

    /// Ends every input and command: moves the WebSockets' output to the
    /// transmit queue, and once the session is over, lets the idle HTTP
    /// connections go.
    pub(super) fn after_turn(&mut self, now: Instant) {
        if self.phase == Phase::Closed {
            self.close_idle();
        }
        let mut streams: Vec<&mut WsStream> = Vec::new();
        if let Some(Transport::WebSocket(s)) = &mut self.transport {
            streams.push(s);
        }
        if let Some(p) = &mut self.probe {
            streams.push(&mut p.stream);
        }
        for s in streams {
            drain_ws(s, now, &mut self.transmits);
        }
        let transmits = &mut self.transmits;
        self.retired.retain_mut(|s| {
            while s.ws.poll_event(now).is_some() {}
            !drain_ws(s, now, transmits)
        });
    }
}

/// Moves a WebSocket's bytes to `out`; true once it asked for its
/// connection to close.
pub(super) fn drain_ws(s: &mut WsStream, now: Instant, out: &mut VecDeque<ClientTransmit>) -> bool {
    let mut closed = false;
    while let Some(t) = s.ws.poll_transmit(now) {
        match t {
            ws::Transmit::Data(data) => out.push_back(ClientTransmit::Data { conn: s.conn, data }),
            ws::Transmit::Close => {
                closed = true;
                out.push_back(ClientTransmit::Close { conn: s.conn });
            }
        }
    }
    closed
}

/// Why a WebSocket transport ended, as the official client reports it: a
/// close (with or without a close frame) is `transport close`; a failure
/// is `transport error`.
pub(super) fn ws_close_cause(c: ws::Closed) -> (CloseReason, ClientError) {
    match c.error {
        Some(e) => (CloseReason::TransportError, ClientError::WebSocket(e)),
        None => (
            CloseReason::TransportClose,
            ClientError::WebSocketClosed(c.code.0),
        ),
    }
}
