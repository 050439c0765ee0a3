//! Incremental head parsing.
//!
//! `httparse` is stateless: it parses a complete head from the start of a
//! buffer. Calling it on every read of a head dripped one byte at a time would
//! be quadratic (tungstenite CVE-2023-43669), so [`HeadParser`] first finds the
//! blank line that ends the head, remembering how far it has looked, and calls
//! `httparse` once.

use bytes::{BufMut, BytesMut};

use super::{Headers, HttpError};

/// Limits on a head; both answered with 431.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest head accepted, request line and blank line included.
    pub max_head_size: usize,
    /// Most header fields accepted.
    pub max_headers: usize,
}

impl Default for Limits {
    /// 16 KiB and 64 fields, like Node's defaults (16 KiB, and far fewer
    /// fields than the 2000 that ws CVE-2024-37890 exploited).
    fn default() -> Self {
        Limits {
            max_head_size: 16 * 1024,
            max_headers: 64,
        }
    }
}

/// An HTTP method.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    /// Any other token.
    Other(String),
}

impl Method {
    /// The method's token, as on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Other(s) => s,
        }
    }

    fn from_token(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            other => Method::Other(other.to_owned()),
        }
    }
}

/// A request line and its headers.
///
/// Build one by hand to feed a request parsed by another HTTP stack:
///
/// ```
/// use wsio::http::{Method, RequestHead};
/// let req = RequestHead::new(Method::Get, "/socket.io/?EIO=4&transport=polling")
///     .with_header("Host", "localhost");
/// assert_eq!(req.path(), "/socket.io/");
/// assert_eq!(req.query().get("EIO"), Some("4"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The request target as sent (path and query).
    pub target: String,
    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
    /// The header fields.
    pub headers: Headers,
}

impl RequestHead {
    /// A request with no headers, HTTP/1.1.
    pub fn new(method: Method, target: impl Into<String>) -> Self {
        RequestHead {
            method,
            target: target.into(),
            version: 1,
            headers: Headers::new(),
        }
    }

    /// Adds a header field (builder style).
    pub fn with_header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push(name, value);
        self
    }

    /// The path part of the target.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The raw query part of the target, without `?`.
    pub fn raw_query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// The decoded query.
    pub fn query(&self) -> super::Query {
        super::Query::parse(self.raw_query())
    }

    /// Serialises the head (with its blank line).
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(self.target.len() + 64);
        out.put_slice(self.method.as_str().as_bytes());
        out.put_u8(b' ');
        out.put_slice(self.target.as_bytes());
        out.put_slice(if self.version == 0 {
            b" HTTP/1.0\r\n"
        } else {
            b" HTTP/1.1\r\n"
        });
        encode_headers(&self.headers, out);
    }
}

/// A status line and its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The header fields.
    pub headers: Headers,
}

impl ResponseHead {
    /// A response with the standard reason phrase and no headers.
    pub fn new(status: u16) -> Self {
        ResponseHead {
            status,
            reason: reason_phrase(status).to_owned(),
            headers: Headers::new(),
        }
    }

    /// Adds a header field (builder style).
    pub fn with_header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push(name, value);
        self
    }

    /// Serialises the head (with its blank line).
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(64 + self.reason.len());
        out.put_slice(b"HTTP/1.1 ");
        let mut code = [b'0'; 3];
        let s = self.status.min(999);
        code[0] += (s / 100) as u8;
        code[1] += (s / 10 % 10) as u8;
        code[2] += (s % 10) as u8;
        out.put_slice(&code);
        out.put_u8(b' ');
        out.put_slice(self.reason.as_bytes());
        out.put_slice(b"\r\n");
        encode_headers(&self.headers, out);
    }
}

fn encode_headers(h: &Headers, out: &mut BytesMut) {
    for (n, v) in h.iter() {
        out.reserve(n.len() + v.len() + 4);
        out.put_slice(n);
        out.put_slice(b": ");
        out.put_slice(v);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
}

/// The standard reason phrase of the statuses wsio sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Finds and parses one head at the start of a growing buffer.
///
/// Feed it the same buffer after each read; it scans each byte once. After a
/// head is returned, the parser is ready for the next one (call with the
/// buffer's remaining bytes).
///
/// ```
/// use wsio::http::{HeadParser, Limits};
/// let mut p = HeadParser::new(Limits::default());
/// let req = b"GET /chat HTTP/1.1\r\nHost: a\r\n\r\nrest";
/// assert!(p.parse_request(&req[..10]).unwrap().is_none());
/// let (head, used) = p.parse_request(req).unwrap().unwrap();
/// assert_eq!(head.target, "/chat");
/// assert_eq!(&req[used..], b"rest");
/// ```
#[derive(Debug, Clone)]
pub struct HeadParser {
    limits: Limits,
    scanned: usize,
}

impl HeadParser {
    /// A parser with the given limits.
    pub fn new(limits: Limits) -> Self {
        HeadParser { limits, scanned: 0 }
    }

    /// Bytes scanned so far without finding the end of the head.
    pub fn scanned(&self) -> usize {
        self.scanned
    }

    /// The length of the head (through its blank line) if `buf` holds it all.
    fn find_end(&mut self, buf: &[u8]) -> Result<Option<usize>, HttpError> {
        let mut i = self.scanned;
        loop {
            let Some(off) = buf
                .get(i..)
                .and_then(|s| s.iter().position(|&b| b == b'\n'))
            else {
                self.scanned = buf.len();
                break;
            };
            let nl = i + off;
            match (buf.get(nl + 1), buf.get(nl + 2)) {
                (Some(b'\n'), _) => return self.found(nl + 2),
                (Some(b'\r'), Some(b'\n')) => return self.found(nl + 3),
                (None, _) | (Some(b'\r'), None) => {
                    // Undecided until more bytes come: look here again.
                    self.scanned = nl;
                    break;
                }
                _ => i = nl + 1,
            }
        }
        if buf.len() > self.limits.max_head_size {
            return Err(HttpError::HeadTooLarge(self.limits.max_head_size));
        }
        Ok(None)
    }

    fn found(&mut self, end: usize) -> Result<Option<usize>, HttpError> {
        self.scanned = 0;
        if end > self.limits.max_head_size {
            return Err(HttpError::HeadTooLarge(self.limits.max_head_size));
        }
        Ok(Some(end))
    }

    /// Parses a request head at the start of `buf`: `Ok(None)` until it is
    /// complete, then the head and the number of bytes it used.
    pub fn parse_request(&mut self, buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HttpError> {
        let Some(end) = self.find_end(buf)? else {
            return Ok(None);
        };
        let mut raw = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        let mut req = httparse::Request::new(&mut raw);
        match req.parse(&buf[..end]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(HttpError::Malformed("incomplete head")),
            Err(e) => return Err(map_err(e, self.limits)),
        }
        let headers = collect(req.headers);
        let head = RequestHead {
            method: Method::from_token(req.method.unwrap_or("")),
            target: req.path.unwrap_or("").to_owned(),
            version: req.version.unwrap_or(1),
            headers,
        };
        Ok(Some((head, end)))
    }

    /// Parses a response head at the start of `buf`, like
    /// [`parse_request`](Self::parse_request).
    pub fn parse_response(
        &mut self,
        buf: &[u8],
    ) -> Result<Option<(ResponseHead, usize)>, HttpError> {
        let Some(end) = self.find_end(buf)? else {
            return Ok(None);
        };
        let mut raw = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        let mut res = httparse::Response::new(&mut raw);
        match res.parse(&buf[..end]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(HttpError::Malformed("incomplete head")),
            Err(e) => return Err(map_err(e, self.limits)),
        }
        let head = ResponseHead {
            status: res.code.unwrap_or(0),
            reason: res.reason.unwrap_or("").to_owned(),
            headers: collect(res.headers),
        };
        Ok(Some((head, end)))
    }
}

fn collect(raw: &[httparse::Header<'_>]) -> Headers {
    let bytes = raw.iter().map(|h| h.name.len() + h.value.len()).sum();
    let mut headers = Headers::with_capacity(bytes, raw.len());
    for h in raw {
        headers.push(h.name, h.value);
    }
    headers
}

fn map_err(e: httparse::Error, limits: Limits) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders(limits.max_headers),
        httparse::Error::HeaderName => HttpError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => HttpError::Malformed("invalid header value"),
        httparse::Error::NewLine => HttpError::Malformed("invalid line ending"),
        httparse::Error::Status => HttpError::Malformed("invalid status"),
        httparse::Error::Token => HttpError::Malformed("invalid token"),
        httparse::Error::Version => HttpError::Malformed("invalid HTTP version"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] =
        b"GET /chat?x=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\r\n";

    #[test]
    fn every_strict_prefix_is_partial() {
        for n in 0..REQ.len() {
            let mut p = HeadParser::new(Limits::default());
            assert_eq!(p.parse_request(&REQ[..n]), Ok(None), "prefix {n}");
        }
    }

    #[test]
    fn byte_at_a_time_is_linear_and_correct() {
        let mut p = HeadParser::new(Limits::default());
        let mut got = None;
        for n in 0..=REQ.len() {
            if let Some(r) = p.parse_request(&REQ[..n]).unwrap() {
                got = Some(r);
                break;
            }
            // Never rescans more than a few bytes from where it stopped.
            assert!(p.scanned() + 3 >= n, "scanned {} of {n}", p.scanned());
        }
        let (head, used) = got.unwrap();
        assert_eq!(used, REQ.len());
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.path(), "/chat");
        assert_eq!(head.headers.get_str("upgrade"), Some("websocket"));
    }

    #[test]
    fn bare_lf_heads_are_accepted() {
        let mut p = HeadParser::new(Limits::default());
        let (h, n) = p
            .parse_request(b"GET / HTTP/1.1\nHost: a\n\nX")
            .unwrap()
            .unwrap();
        assert_eq!((h.target.as_str(), n), ("/", 24));
    }

    #[test]
    fn limits_answer_431() {
        let limits = Limits {
            max_head_size: 64,
            max_headers: 2,
        };
        let mut p = HeadParser::new(limits);
        let long = [b'a'; 65];
        assert_eq!(p.parse_request(&long).unwrap_err().status(), 431);
        let mut p = HeadParser::new(limits);
        let many = b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
        let e = p.parse_request(many).unwrap_err();
        assert_eq!(e, HttpError::TooManyHeaders(2));
        assert_eq!(e.status(), 431);
    }

    #[test]
    fn garbage_is_400() {
        let mut p = HeadParser::new(Limits::default());
        let e = p.parse_request(b"\x00\x01 / HTTP/1.1\r\n\r\n").unwrap_err();
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn response_round_trip() {
        let head = ResponseHead::new(101).with_header("Upgrade", "websocket");
        let mut out = BytesMut::new();
        head.encode(&mut out);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
        );
        let (parsed, n) = HeadParser::new(Limits::default())
            .parse_response(&out)
            .unwrap()
            .unwrap();
        assert_eq!((parsed, n), (head, out.len()));
    }
}
