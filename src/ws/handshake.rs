//! The opening handshake (RFC 6455 section 4): checks on both sides, the
//! accept key, subprotocol selection.
//!
//! These are plain functions so an HTTP server that parsed the request itself
//! (hyper, axum) can validate it and build the 101 reply, then hand the
//! upgraded stream to [`Connection::server_upgraded`](super::Connection::server_upgraded).

use base64::Engine as _;
use bytes::BytesMut;

use super::deflate::{self, Accepted, DeflateConfig, NegotiationError, Offer, Params};
use crate::http::{Headers, HttpError, Method, RequestHead, ResponseHead};

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why a handshake failed. On the server side each carries the HTTP status
/// to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The head could not be parsed or crossed a limit.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The request method is not GET.
    #[error("the upgrade request method must be GET")]
    MethodNotGet,
    /// HTTP/1.0 cannot upgrade.
    #[error("the upgrade request must be HTTP/1.1 or later")]
    HttpVersion,
    /// `Upgrade` does not list `websocket`.
    #[error("missing or invalid Upgrade header")]
    NoUpgradeHeader,
    /// `Connection` does not list `Upgrade`.
    #[error("missing or invalid Connection header")]
    NoConnectionHeader,
    /// `Sec-WebSocket-Version` is not 13 (answered with 426).
    #[error("unsupported WebSocket version")]
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` is missing or not 16 bytes of base64.
    #[error("missing or invalid Sec-WebSocket-Key")]
    BadKey,
    /// `Sec-WebSocket-Protocol` is malformed or repeats a protocol.
    #[error("invalid Sec-WebSocket-Protocol")]
    BadProtocolHeader,
    /// The application refused the request with this status.
    #[error("refused by the application with status {0}")]
    Refused(u16),
    /// Client: the server did not answer 101.
    #[error("the server answered {0} instead of 101")]
    UnexpectedStatus(u16),
    /// Client: `Sec-WebSocket-Accept` does not match the key sent.
    #[error("the server's Sec-WebSocket-Accept does not match")]
    BadAccept,
    /// Client: the server chose a subprotocol that was not offered.
    #[error("the server chose a subprotocol that was not offered")]
    UnexpectedProtocol,
    /// Client: the server chose an extension that was not offered.
    #[error("the server chose an extension that was not offered")]
    UnexpectedExtension,
    /// `Sec-WebSocket-Extensions` is malformed (server, with compression
    /// enabled: answered 400), or the server's permessage-deflate answer
    /// breaks RFC 7692 (client).
    #[error(transparent)]
    Extension(#[from] NegotiationError),
    /// The connection ended during the handshake.
    #[error("the connection ended during the handshake")]
    Eof,
    /// The head did not arrive within
    /// [`Config::head_timeout`](crate::ws::Config::head_timeout)
    /// (answered with 408).
    #[error("the handshake's head did not arrive in time")]
    Timeout,
}

impl HandshakeError {
    /// The HTTP status a server answers with.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::Http(e) => e.status(),
            HandshakeError::MethodNotGet => 405,
            HandshakeError::UnsupportedVersion => 426,
            HandshakeError::Refused(s) => *s,
            HandshakeError::Timeout => 408,
            _ => 400,
        }
    }

    /// The reply a server sends: the status, a short text body, and for 426
    /// the version it speaks.
    pub fn response(&self) -> (ResponseHead, &'static str) {
        let status = self.status();
        let mut head = ResponseHead::new(status);
        match self {
            HandshakeError::UnsupportedVersion => head.headers.push("Sec-WebSocket-Version", "13"),
            HandshakeError::MethodNotGet => head.headers.push("Allow", "GET"),
            _ => {}
        }
        let body = match self {
            HandshakeError::UnsupportedVersion => "Unsupported WebSocket version: use 13\n",
            HandshakeError::Http(HttpError::HeadTooLarge(_) | HttpError::TooManyHeaders(_)) => {
                "Request header fields too large\n"
            }
            HandshakeError::Timeout => "Request timeout\n",
            _ => "Bad WebSocket upgrade request\n",
        };
        (head, body)
    }
}

/// Serialises an error reply with its body and `Connection: close`.
pub(crate) fn encode_error_response(head: ResponseHead, body: &str, out: &mut BytesMut) {
    let head = head
        .with_header("Connection", "close")
        .with_header("Content-Type", "text/plain")
        .with_header("Content-Length", body.len().to_string());
    head.encode(out);
    out.extend_from_slice(body.as_bytes());
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`.
///
/// ```
/// // The example of RFC 6455 section 1.3.
/// assert_eq!(wsio::ws::handshake::accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

/// A valid client upgrade request, awaiting the application's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The whole request head (path, query, origin, cookies...).
    pub head: RequestHead,
    /// The subprotocols offered, in the client's order of preference.
    pub protocols: Vec<String>,
    /// The extension offers, as sent (`permessage-deflate; client_max_window_bits`).
    pub extensions: Vec<String>,
    key: String,
}

impl UpgradeRequest {
    /// The `Origin` header, which browsers always send: the application
    /// decides whether to accept it.
    pub fn origin(&self) -> Option<&str> {
        self.head.headers.get_str("origin")
    }

    /// The client's `Sec-WebSocket-Key`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The first offered protocol that `supported` also lists.
    pub fn select_protocol(&self, supported: &[&str]) -> Option<String> {
        self.protocols
            .iter()
            .find(|p| supported.contains(&p.as_str()))
            .cloned()
    }

    /// Negotiates permessage-deflate (RFC 7692) under `config`: the
    /// parameters and the `Sec-WebSocket-Extensions` value of the 101 reply
    /// (see [`deflate::accept_offer`]), or `None` to go on uncompressed. An
    /// embedding HTTP server adds that header to [`response`](Self::response)
    /// and hands the parameters to
    /// [`Connection::with_deflate`](super::Connection::with_deflate).
    ///
    /// The values of the request's fields are parsed as sent (a quoted
    /// parameter may hold a comma), not as [`extensions`](Self::extensions)
    /// splits them. A malformed header is an error (answer 400) only when
    /// `config` enables compression; otherwise it is not read.
    ///
    /// ```
    /// use wsio::http::{Method, RequestHead};
    /// use wsio::ws::{deflate::DeflateConfig, handshake::validate_request};
    /// let req = RequestHead::new(Method::Get, "/")
    ///     .with_header("Upgrade", "websocket")
    ///     .with_header("Connection", "Upgrade")
    ///     .with_header("Sec-WebSocket-Version", "13")
    ///     .with_header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
    ///     .with_header("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits");
    /// let up = validate_request(req).unwrap();
    /// let config = DeflateConfig::default().enabled(true);
    /// let agreed = up.negotiate_deflate(&config).unwrap().unwrap();
    /// assert_eq!(agreed.response, "permessage-deflate");
    /// assert_eq!(up.negotiate_deflate(&DeflateConfig::default()), Ok(None));
    /// ```
    pub fn negotiate_deflate(
        &self,
        config: &DeflateConfig,
    ) -> Result<Option<Accepted>, HandshakeError> {
        Ok(deflate::accept_offer(
            config,
            self.head.headers.get_all("sec-websocket-extensions"),
        )?)
    }

    /// The 101 reply accepting this request with `accept`'s choices.
    pub fn response(&self, accept: &Accept) -> ResponseHead {
        let mut head = ResponseHead::new(101)
            .with_header("Upgrade", "websocket")
            .with_header("Connection", "Upgrade")
            .with_header("Sec-WebSocket-Accept", accept_key(&self.key));
        if let Some(p) = &accept.protocol {
            head.headers.push("Sec-WebSocket-Protocol", p);
        }
        for (n, v) in accept.headers.iter() {
            head.headers.push(n, v);
        }
        head
    }
}

/// The application's answer to an [`UpgradeRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accept {
    /// The chosen subprotocol: one of those offered, or none.
    pub protocol: Option<String>,
    /// Extra headers for the 101 reply (`Set-Cookie`...).
    pub headers: Headers,
    /// permessage-deflate for this connection, in place of the
    /// connection's [`Config::deflate`](super::Config::deflate): to turn
    /// it on or off, or change its parameters, for one client. `None`
    /// keeps the connection's.
    pub deflate: Option<DeflateConfig>,
}

impl Accept {
    /// Accepts with no subprotocol.
    pub fn new() -> Self {
        Accept::default()
    }

    /// Chooses a subprotocol (builder style).
    pub fn protocol(mut self, p: impl Into<String>) -> Self {
        self.protocol = Some(p.into());
        self
    }

    /// Sets [`deflate`](Self::deflate) (builder style).
    pub fn deflate(mut self, config: DeflateConfig) -> Self {
        self.deflate = Some(config);
        self
    }
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

/// Checks a client's upgrade request (section 4.2.1).
///
/// ```
/// use wsio::http::{Method, RequestHead};
/// use wsio::ws::handshake::validate_request;
/// let req = RequestHead::new(Method::Get, "/chat")
///     .with_header("Upgrade", "websocket")
///     .with_header("Connection", "keep-alive, Upgrade")
///     .with_header("Sec-WebSocket-Version", "13")
///     .with_header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
///     .with_header("Sec-WebSocket-Protocol", "chat, superchat");
/// let up = validate_request(req).unwrap();
/// assert_eq!(up.protocols, ["chat", "superchat"]);
/// ```
pub fn validate_request(head: RequestHead) -> Result<UpgradeRequest, HandshakeError> {
    if head.method != Method::Get {
        return Err(HandshakeError::MethodNotGet);
    }
    if head.version < 1 {
        return Err(HandshakeError::HttpVersion);
    }
    let h = &head.headers;
    if !h.has_token("upgrade", "websocket") {
        return Err(HandshakeError::NoUpgradeHeader);
    }
    if !h.has_token("connection", "upgrade") {
        return Err(HandshakeError::NoConnectionHeader);
    }
    if h.get("sec-websocket-version").map(<[u8]>::trim_ascii) != Some(b"13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = h
        .get_str("sec-websocket-key")
        .map(str::trim)
        .filter(|k| {
            k.len() == 24
                && base64::engine::general_purpose::STANDARD
                    .decode(k)
                    .is_ok_and(|d| d.len() == 16)
        })
        .ok_or(HandshakeError::BadKey)?
        .to_owned();
    let mut protocols: Vec<String> = Vec::new();
    for item in h
        .get_all("sec-websocket-protocol")
        .flat_map(|v| v.split(|&c| c == b','))
    {
        let item = item.trim_ascii();
        let name = std::str::from_utf8(item).map_err(|_| HandshakeError::BadProtocolHeader)?;
        if !is_token(item) || protocols.iter().any(|p| p == name) {
            return Err(HandshakeError::BadProtocolHeader);
        }
        protocols.push(name.to_owned());
    }
    let extensions = h
        .tokens("sec-websocket-extensions")
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect();
    Ok(UpgradeRequest {
        head,
        protocols,
        extensions,
        key,
    })
}

/// What a client asks for when it opens a WebSocket.
///
/// ```
/// let req = wsio::ws::ClientRequest::new("example.com:8080", "/chat").protocol("chat");
/// assert_eq!(req.protocols, ["chat"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    /// The `Host` header value.
    pub host: String,
    /// The request target: path and query.
    pub target: String,
    /// Subprotocols to offer, most preferred first.
    pub protocols: Vec<String>,
    /// Extra headers (`Origin`, `Cookie`, `Authorization`...).
    pub headers: Headers,
}

impl ClientRequest {
    /// A request for `target` on `host`.
    pub fn new(host: impl Into<String>, target: impl Into<String>) -> Self {
        ClientRequest {
            host: host.into(),
            target: target.into(),
            protocols: Vec::new(),
            headers: Headers::new(),
        }
    }

    /// Offers a subprotocol (builder style).
    pub fn protocol(mut self, p: impl Into<String>) -> Self {
        self.protocols.push(p.into());
        self
    }

    /// Adds a header (builder style).
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push(name, value);
        self
    }

    /// The request head for a given `Sec-WebSocket-Key`.
    pub fn head(&self, key: &str) -> RequestHead {
        let mut head = RequestHead::new(Method::Get, self.target.clone())
            .with_header("Host", &self.host)
            .with_header("Upgrade", "websocket")
            .with_header("Connection", "Upgrade")
            .with_header("Sec-WebSocket-Key", key)
            .with_header("Sec-WebSocket-Version", "13");
        if !self.protocols.is_empty() {
            head.headers
                .push("Sec-WebSocket-Protocol", self.protocols.join(", "));
        }
        for (n, v) in self.headers.iter() {
            head.headers.push(n, v);
        }
        head
    }

    /// Checks the server's reply (section 4.2.2 step 5 and 4.1): the chosen
    /// subprotocol, if any. No extension was offered, so any is an error.
    pub fn verify(&self, key: &str, res: &ResponseHead) -> Result<Option<String>, HandshakeError> {
        self.verify_with_offer(key, res, None)
            .map(|(protocol, _)| protocol)
    }

    /// Like [`verify`](Self::verify), for a request that carried `offer`
    /// (its [`header_value`](Offer::header_value) in
    /// `Sec-WebSocket-Extensions`): also the permessage-deflate parameters
    /// the server accepted, or `None` if it declined (RFC 7692 section 7).
    pub fn verify_with_offer(
        &self,
        key: &str,
        res: &ResponseHead,
        offer: Option<&Offer>,
    ) -> Result<(Option<String>, Option<Params>), HandshakeError> {
        if res.status != 101 {
            return Err(HandshakeError::UnexpectedStatus(res.status));
        }
        let h = &res.headers;
        if !h.has_token("upgrade", "websocket") {
            return Err(HandshakeError::NoUpgradeHeader);
        }
        if !h.has_token("connection", "upgrade") {
            return Err(HandshakeError::NoConnectionHeader);
        }
        if h.get_str("sec-websocket-accept").map(str::trim) != Some(accept_key(key).as_str()) {
            return Err(HandshakeError::BadAccept);
        }
        let params = match offer {
            Some(offer) => offer.verify(h.get_all("sec-websocket-extensions"))?,
            None if h.tokens("sec-websocket-extensions").next().is_some() => {
                return Err(HandshakeError::UnexpectedExtension);
            }
            None => None,
        };
        let mut chosen = h.tokens("sec-websocket-protocol");
        let protocol = match (chosen.next(), chosen.next()) {
            (None, _) => None,
            (Some(p), None) => {
                let p = String::from_utf8_lossy(p);
                if self.protocols.iter().any(|o| *o == p) {
                    Some(p.into_owned())
                } else {
                    return Err(HandshakeError::UnexpectedProtocol);
                }
            }
            _ => return Err(HandshakeError::UnexpectedProtocol),
        };
        Ok((protocol, params))
    }
}

/// A new random `Sec-WebSocket-Key` from 16 bytes of entropy.
pub fn generate_key(entropy: &mut dyn crate::entropy::Entropy) -> String {
    let mut raw = [0u8; 16];
    entropy.fill(&mut raw);
    base64::engine::general_purpose::STANDARD.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> RequestHead {
        RequestHead::new(Method::Get, "/")
            .with_header("Host", "x")
            .with_header("Upgrade", "WebSocket")
            .with_header("Connection", "Upgrade")
            .with_header("Sec-WebSocket-Version", "13")
            .with_header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
    }

    #[test]
    fn client_and_server_agree() {
        let client = ClientRequest::new("x", "/").protocol("b").protocol("a");
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let up = validate_request(client.head(key)).unwrap();
        let proto = up.select_protocol(&["a", "b"]);
        assert_eq!(proto.as_deref(), Some("b"));
        let res = up.response(&Accept {
            protocol: proto,
            ..Accept::default()
        });
        assert_eq!(client.verify(key, &res), Ok(Some("b".into())));
        assert_eq!(
            client.verify("AAAAAAAAAAAAAAAAAAAAAA==", &res),
            Err(HandshakeError::BadAccept)
        );
    }

    #[test]
    fn server_checks_and_statuses() {
        let cases: Vec<(RequestHead, u16)> = vec![
            (
                RequestHead {
                    method: Method::Post,
                    ..request()
                },
                405,
            ),
            (
                RequestHead {
                    version: 0,
                    ..request()
                },
                400,
            ),
            (
                RequestHead::new(Method::Get, "/").with_header("Connection", "upgrade"),
                400,
            ),
            (request().with_header("Sec-WebSocket-Protocol", "a, a"), 400),
            (request().with_header("Sec-WebSocket-Protocol", "a b"), 400),
        ];
        for (req, status) in cases {
            assert_eq!(
                validate_request(req.clone()).unwrap_err().status(),
                status,
                "{req:?}"
            );
        }
        let mut bad_version = request();
        bad_version.headers = Headers::new();
        for (n, v) in request().headers.iter() {
            let v = if n.eq_ignore_ascii_case(b"sec-websocket-version") {
                &b"8"[..]
            } else {
                v
            };
            bad_version.headers.push(n, v);
        }
        let e = validate_request(bad_version).unwrap_err();
        assert_eq!(e.status(), 426);
        assert_eq!(
            e.response().0.headers.get_str("sec-websocket-version"),
            Some("13")
        );
    }

    #[test]
    fn thousands_of_spaces_in_protocol_are_linear() {
        // ws CVE-2021-32640: a regex went quadratic on this.
        let value = format!("a{}b", " ".repeat(100_000));
        let e = validate_request(request().with_header("Sec-WebSocket-Protocol", value));
        assert_eq!(e.unwrap_err(), HandshakeError::BadProtocolHeader);
    }
}
