//! The client machines a [`Network`](super::Network) can drive.

use std::time::Instant;

use bytes::Bytes;

use crate::{
    engineio::{self, ClientTransmit, RequestFailed, RequestId},
    http::ResponseHead,
    socketio,
};

/// A client: HTTP requests and byte streams, as the Engine.IO client asks a
/// driver for them.
pub trait ClientMachine {
    /// What the application hears.
    type Event;
    /// The answer to a request.
    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        response: Result<(ResponseHead, Bytes), RequestFailed>,
    );
    /// Bytes from a stream.
    fn handle_stream_input(&mut self, now: Instant, id: RequestId, bytes: &[u8]);
    /// A stream ended cleanly.
    fn handle_stream_eof(&mut self, now: Instant, id: RequestId);
    /// A stream failed.
    fn handle_stream_error(&mut self, now: Instant, id: RequestId);
    /// Time passed.
    fn handle_timeout(&mut self, now: Instant);
    /// Output.
    fn poll_transmit(&mut self) -> Option<ClientTransmit>;
    /// Events.
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// The next deadline.
    fn poll_timeout(&self) -> Option<Instant>;
}

impl ClientMachine for engineio::Client {
    type Event = engineio::ClientEvent;
    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        response: Result<(ResponseHead, Bytes), RequestFailed>,
    ) {
        engineio::Client::handle_response(self, now, id, response)
    }
    fn handle_stream_input(&mut self, now: Instant, id: RequestId, bytes: &[u8]) {
        engineio::Client::handle_stream_input(self, now, id, bytes)
    }
    fn handle_stream_eof(&mut self, now: Instant, id: RequestId) {
        engineio::Client::handle_stream_eof(self, now, id)
    }
    fn handle_stream_error(&mut self, now: Instant, id: RequestId) {
        engineio::Client::handle_stream_error(self, now, id)
    }
    fn handle_timeout(&mut self, now: Instant) {
        engineio::Client::handle_timeout(self, now)
    }
    fn poll_transmit(&mut self) -> Option<ClientTransmit> {
        engineio::Client::poll_transmit(self)
    }
    fn poll_event(&mut self) -> Option<engineio::ClientEvent> {
        engineio::Client::poll_event(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        engineio::Client::poll_timeout(self)
    }
}

impl ClientMachine for socketio::Client {
    type Event = socketio::ClientEvent;
    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        response: Result<(ResponseHead, Bytes), RequestFailed>,
    ) {
        socketio::Client::handle_response(self, now, id, response)
    }
    fn handle_stream_input(&mut self, now: Instant, id: RequestId, bytes: &[u8]) {
        socketio::Client::handle_stream_input(self, now, id, bytes)
    }
    fn handle_stream_eof(&mut self, now: Instant, id: RequestId) {
        socketio::Client::handle_stream_eof(self, now, id)
    }
    fn handle_stream_error(&mut self, now: Instant, id: RequestId) {
        socketio::Client::handle_stream_error(self, now, id)
    }
    fn handle_timeout(&mut self, now: Instant) {
        socketio::Client::handle_timeout(self, now)
    }
    fn poll_transmit(&mut self) -> Option<ClientTransmit> {
        socketio::Client::poll_transmit(self)
    }
    fn poll_event(&mut self) -> Option<socketio::ClientEvent> {
        socketio::Client::poll_event(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        socketio::Client::poll_timeout(self)
    }
}
