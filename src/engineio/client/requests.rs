//! The work the client asks of its driver (HTTP requests, streams), and
//! the HTTP requests of the polling transport: their target (path, the
//! application's query, `EIO`, `transport`, the cache buster, the sid) and
//! headers.

use bytes::{Bytes, BytesMut};

use super::Client;
use crate::{
    engineio::TransportKind,
    entropy::Entropy,
    http::{self, Method, RequestHead},
};

/// Names one HTTP request or one stream the client asked the driver for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// An HTTP request for the driver to perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Method, target (path and query) and headers, `Host` and (for a
    /// POST) `Content-Type` and `Content-Length` included.
    pub head: RequestHead,
    /// The body (empty for a GET).
    pub body: Bytes,
}

impl HttpRequest {
    /// The method.
    pub fn method(&self) -> &Method {
        &self.head.method
    }

    /// Serialises the request as HTTP/1.1 bytes, ready for a connection.
    pub fn encode(&self, out: &mut BytesMut) {
        self.head.encode(out);
        out.extend_from_slice(&self.body);
    }
}

/// The driver could not complete a request: no connection, a broken one,
/// or an unreadable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("request failed: {message}")]
pub struct RequestFailed {
    /// What went wrong, for people.
    pub message: String,
}

impl RequestFailed {
    /// A failure described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        RequestFailed {
            message: message.into(),
        }
    }
}

/// Work for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientTransmit {
    /// Perform this HTTP request on a connection to the server and give the
    /// answer (or the failure) to [`Client::handle_response`] with `id`.
    Request {
        /// The request's name.
        id: RequestId,
        /// What to send.
        request: HttpRequest,
    },
    /// The answer to this request is no longer wanted: the driver may
    /// abandon it (and drop its connection). Answers given anyway are
    /// ignored.
    CancelRequest {
        /// The request.
        id: RequestId,
    },
    /// Open a stream (TCP, or TLS) to the server for a WebSocket. Its
    /// bytes follow as [`StreamData`](Self::StreamData); what the server
    /// sends goes to [`Client::handle_stream_input`]; if it cannot be
    /// opened, call [`Client::handle_stream_error`].
    OpenStream {
        /// The stream's name.
        id: RequestId,
    },
    /// Write these bytes on the stream.
    StreamData {
        /// The stream.
        id: RequestId,
        /// The bytes.
        data: Bytes,
    },
    /// Close the stream, after writing everything before this.
    CloseStream {
        /// The stream.
        id: RequestId,
    },
}

impl Client {
    pub(super) fn next_id(&mut self) -> RequestId {
        self.next_id += 1;
        RequestId(self.next_id)
    }

    /// `{path}?{app query}&EIO=4&transport=..[&t=..][&sid=..]`.
    pub(super) fn target(&mut self, kind: TransportKind) -> String {
        let mut t = String::with_capacity(self.config.path.len() + 64);
        t.push_str(&self.config.path);
        t.push('?');
        for (k, v) in &self.config.query {
            t.push_str(&http::percent_encode(k));
            t.push('=');
            t.push_str(&http::percent_encode(v));
            t.push('&');
        }
        t.push_str("EIO=4&transport=");
        t.push_str(kind.as_str());
        if kind == TransportKind::Polling && self.config.timestamp_requests {
            t.push_str("&t=");
            t.push_str(&self.random_string());
        }
        if let Some(sid) = &self.sid {
            t.push_str("&sid=");
            t.push_str(&http::percent_encode(sid));
        }
        t
    }

    /// Eight characters of `[0-9a-z]`, like the official cache buster.
    fn random_string(&mut self) -> String {
        let mut raw = [0u8; 8];
        self.entropy.fill(&mut raw);
        raw.iter()
            .map(|b| char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[(*b % 36) as usize]))
            .collect()
    }

    pub(super) fn request(&mut self, method: Method, body: Bytes) -> HttpRequest {
        let target = self.target(TransportKind::Polling);
        let mut head = RequestHead::new(method.clone(), target)
            .with_header("Host", &self.config.host)
            .with_header("Accept", "*/*");
        if method == Method::Post {
            head.headers
                .push("Content-Type", "text/plain;charset=UTF-8");
            head.headers.push("Content-Length", body.len().to_string());
        }
        for (n, v) in self.config.headers.iter() {
            head.headers.push(n, v);
        }
        HttpRequest { head, body }
    }
}
