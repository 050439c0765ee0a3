//! The client side of HTTP/1.1: reading responses off a connection.
//!
//! Requests are written with [`RequestHead::encode`](super::RequestHead::encode)
//! followed by the body; [`ResponseReader`] reads the answers back, one after
//! another on a keep-alive connection.

use bytes::{Bytes, BytesMut};

use super::{
    HeadParser, HttpError, Limits, ResponseHead,
    body::{BodyReader, Framing},
};

/// Reads responses from the front of a connection's input buffer: the head,
/// then the body framed by `Content-Length`, `chunked`, or the end of the
/// connection.
///
/// ```
/// use bytes::BytesMut;
/// use wsio::http::{Limits, client::ResponseReader};
/// let mut r = ResponseReader::new(Limits::default(), 1 << 20);
/// let mut input = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..]);
/// let (head, body) = r.read(&mut input).unwrap().unwrap();
/// assert_eq!((head.status, &body[..]), (200, &b"ok"[..]));
/// assert!(input.is_empty());
/// ```
#[derive(Debug)]
pub struct ResponseReader {
    limits: Limits,
    max_body: usize,
    parser: HeadParser,
    body: Option<(ResponseHead, BodyReader)>,
}

impl ResponseReader {
    /// A reader refusing heads beyond `limits` and bodies over `max_body`
    /// bytes.
    pub fn new(limits: Limits, max_body: usize) -> Self {
        ResponseReader {
            limits,
            max_body,
            parser: HeadParser::new(limits),
            body: None,
        }
    }

    /// Consumes bytes of one response from the front of `input`: `Ok(None)`
    /// until it is complete, then its head and whole body. Bytes after it
    /// stay in `input`, and the reader is ready for the next response.
    pub fn read(
        &mut self,
        input: &mut BytesMut,
    ) -> Result<Option<(ResponseHead, Bytes)>, HttpError> {
        if self.body.is_none() {
            let Some((head, used)) = self.parser.parse_response(input)? else {
                return Ok(None);
            };
            let _ = input.split_to(used);
            let framing = Framing::of_response(head.status, &head.headers)?;
            let reader = BodyReader::new(framing, self.max_body)?;
            self.body = Some((head, reader));
        }
        let Some((_, reader)) = self.body.as_mut() else {
            return Ok(None);
        };
        match reader.read(input)? {
            None => Ok(None),
            Some(body) => Ok(self.body.take().map(|(head, _)| (head, body))),
        }
    }

    /// The connection ended: the response, if its body was delimited by
    /// the end of the connection (or was already complete).
    pub fn finish(&mut self) -> Result<(ResponseHead, Bytes), HttpError> {
        match self.body.take() {
            Some((head, mut reader)) => Ok((head, reader.finish()?)),
            None => Err(HttpError::Malformed("connection closed before a response")),
        }
    }

    /// Whether a response has started arriving (its head, or part of it).
    pub fn in_progress(&self) -> bool {
        self.body.is_some() || self.parser.scanned() > 0
    }

    /// Forgets any partial response (the connection is being dropped).
    pub fn reset(&mut self) {
        self.parser = HeadParser::new(self.limits);
        self.body = None;
    }
}

/// Whether the connection may carry another request after `head`: not when
/// the server said `Connection: close`.
pub fn keeps_alive(head: &ResponseHead) -> bool {
    !head.headers.has_token("connection", "close")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_split(input: &[u8], step: usize) -> Vec<(u16, Bytes)> {
        let mut r = ResponseReader::new(Limits::default(), 1000);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            while let Some((h, b)) = r.read(&mut buf).unwrap() {
                out.push((h.status, b));
            }
        }
        out
    }

    #[test]
    fn keep_alive_responses_in_any_split() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc\
HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n\
HTTP/1.1 204 No Content\r\n\r\n";
        let want = vec![
            (200, Bytes::from_static(b"abc")),
            (400, Bytes::from_static(b"{}")),
            (204, Bytes::new()),
        ];
        for step in 1..=input.len() {
            assert_eq!(read_split(input, step), want, "step {step}");
        }
    }

    #[test]
    fn body_until_close_and_limits() {
        let mut r = ResponseReader::new(Limits::default(), 5);
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\n\r\nabc"[..]);
        assert_eq!(r.read(&mut buf), Ok(None));
        assert!(r.in_progress());
        let (h, b) = r.finish().unwrap();
        assert_eq!((h.status, &b[..]), (200, &b"abc"[..]));
        assert!(!r.in_progress());
        assert!(r.finish().is_err());

        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n"[..]);
        assert_eq!(r.read(&mut buf).unwrap_err().status(), 413);
        r.reset();
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab"[..]);
        assert!(r.read(&mut buf).unwrap().is_some());
    }

    #[test]
    fn connection_close_is_seen() {
        let h = ResponseHead::new(200).with_header("Connection", "Close");
        assert!(!keeps_alive(&h));
        assert!(keeps_alive(&ResponseHead::new(200)));
    }
}
