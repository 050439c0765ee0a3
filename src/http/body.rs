//! Message bodies: `Content-Length` and `chunked` framing, with a size limit
//! checked before the excess is buffered.

use bytes::{Buf, Bytes, BytesMut};

use super::{Headers, HttpError};

/// How a body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

impl Framing {
    /// The framing of a request body: chunked, a length, or empty.
    pub fn of_request(headers: &Headers) -> Result<Framing, HttpError> {
        Self::from_headers(headers, Framing::Length(0))
    }

    /// The framing of a response body (`status` decides bodiless replies).
    pub fn of_response(status: u16, headers: &Headers) -> Result<Framing, HttpError> {
        if status == 101 || status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok(Framing::Length(0));
        }
        Self::from_headers(headers, Framing::UntilClose)
    }

    fn from_headers(headers: &Headers, otherwise: Framing) -> Result<Framing, HttpError> {
        if let Some(last) = headers.tokens("transfer-encoding").last() {
            // RFC 9112 6.3: chunked must be the final coding, and it wins over
            // Content-Length (which a smuggler would pair it with).
            return if last.eq_ignore_ascii_case(b"chunked") {
                Ok(Framing::Chunked)
            } else {
                Err(HttpError::BadBody("unsupported transfer coding"))
            };
        }
        let mut len = None;
        for v in headers.get_all("content-length") {
            let n = std::str::from_utf8(v.trim_ascii())
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(HttpError::BadBody("invalid Content-Length"))?;
            if len.is_some_and(|l| l != n) {
                return Err(HttpError::BadBody("conflicting Content-Length"));
            }
            len = Some(n);
        }
        Ok(len.map_or(otherwise, Framing::Length))
    }
}

#[derive(Debug)]
enum State {
    Length(u64),
    ChunkSize { line: usize },
    ChunkData(u64),
    ChunkDataEnd,
    Trailer { line: usize },
    UntilClose,
    Done,
}

/// Reads one body out of a connection's input buffer.
///
/// ```
/// use bytes::BytesMut;
/// use wsio::http::body::{BodyReader, Framing};
/// let mut r = BodyReader::new(Framing::Chunked, 100).unwrap();
/// let mut input = BytesMut::from(&b"3\r\nabc\r\n0\r\n\r\nnext"[..]);
/// assert_eq!(r.read(&mut input).unwrap().unwrap(), "abc");
/// assert_eq!(&input[..], b"next");
/// ```
#[derive(Debug)]
pub struct BodyReader {
    state: State,
    limit: usize,
    body: BytesMut,
}

/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

impl BodyReader {
    /// A reader for a body of the given framing, refusing more than `limit`
    /// bytes. A declared length over the limit is refused at once.
    pub fn new(framing: Framing, limit: usize) -> Result<BodyReader, HttpError> {
        let state = match framing {
            Framing::Length(n) if n > limit as u64 => return Err(HttpError::BodyTooLarge(limit)),
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize { line: 0 },
            Framing::UntilClose => State::UntilClose,
        };
        Ok(BodyReader {
            state,
            limit,
            body: BytesMut::new(),
        })
    }

    /// Consumes body bytes from the front of `input`; returns the whole body
    /// once it is complete. Bytes after the body stay in `input`.
    pub fn read(&mut self, input: &mut BytesMut) -> Result<Option<Bytes>, HttpError> {
        loop {
            match &mut self.state {
                State::Done => return Ok(Some(std::mem::take(&mut self.body).freeze())),
                State::Length(n) => {
                    let take = (*n).min(input.len() as u64) as usize;
                    if self.body.is_empty() && take as u64 == *n {
                        // The whole body is here: hand out the input's own bytes.
                        self.body = input.split_to(take);
                    } else {
                        self.body.extend_from_slice(&input[..take]);
                        input.advance(take);
                    }
                    *n -= take as u64;
                    if *n > 0 {
                        return Ok(None);
                    }
                    self.state = State::Done;
                }
                State::UntilClose => {
                    self.push(&input[..])?;
                    input.clear();
                    return Ok(None);
                }
                State::ChunkSize { line } | State::Trailer { line } => {
                    let Some(nl) = input[*line..].iter().position(|&b| b == b'\n') else {
                        *line = input.len();
                        if *line > MAX_LINE {
                            return Err(HttpError::BadBody("chunk line too long"));
                        }
                        return Ok(None);
                    };
                    if *line + nl > MAX_LINE {
                        // However the line arrived, whole or in pieces.
                        return Err(HttpError::BadBody("chunk line too long"));
                    }
                    let raw = input.split_to(*line + nl + 1);
                    let text = raw[..raw.len() - 1]
                        .strip_suffix(b"\r")
                        .unwrap_or(&raw[..raw.len() - 1]);
                    self.state = if matches!(self.state, State::Trailer { .. }) {
                        if text.is_empty() {
                            State::Done
                        } else {
                            State::Trailer { line: 0 }
                        }
                    } else {
                        match parse_chunk_size(text)? {
                            0 => State::Trailer { line: 0 },
                            n if n.saturating_add(self.body.len() as u64) > self.limit as u64 => {
                                return Err(HttpError::BodyTooLarge(self.limit));
                            }
                            n => State::ChunkData(n),
                        }
                    };
                }
                State::ChunkData(n) => {
                    let take = (*n).min(input.len() as u64) as usize;
                    self.body.extend_from_slice(&input[..take]);
                    input.advance(take);
                    *n -= take as u64;
                    if *n > 0 {
                        return Ok(None);
                    }
                    self.state = State::ChunkDataEnd;
                }
                State::ChunkDataEnd => {
                    match input.first() {
                        None => return Ok(None),
                        Some(b'\n') => input.advance(1),
                        Some(b'\r') => match input.get(1) {
                            None => return Ok(None),
                            Some(b'\n') => input.advance(2),
                            Some(_) => return Err(HttpError::BadBody("missing CRLF after chunk")),
                        },
                        Some(_) => return Err(HttpError::BadBody("missing CRLF after chunk")),
                    }
                    self.state = State::ChunkSize { line: 0 };
                }
            }
        }
    }

    /// The connection ended: the body if it was delimited by the close.
    pub fn finish(&mut self) -> Result<Bytes, HttpError> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(std::mem::take(&mut self.body).freeze())
            }
            _ => Err(HttpError::BadBody("connection closed inside the body")),
        }
    }

    fn push(&mut self, data: &[u8]) -> Result<(), HttpError> {
        if self.body.len() + data.len() > self.limit {
            return Err(HttpError::BodyTooLarge(self.limit));
        }
        self.body.extend_from_slice(data);
        Ok(())
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, HttpError> {
    let bad = HttpError::BadBody("invalid chunk size");
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or(&[])
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(bad);
    }
    digits.iter().try_fold(0u64, |acc, &c| {
        let d = (c as char).to_digit(16).ok_or(bad.clone())?;
        Ok(acc << 4 | u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(
        framing: Framing,
        limit: usize,
        input: &[u8],
        step: usize,
    ) -> Result<Option<Bytes>, HttpError> {
        let mut r = BodyReader::new(framing, limit)?;
        let mut buf = BytesMut::new();
        for piece in input.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            if let Some(b) = r.read(&mut buf)? {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }

    #[test]
    fn chunked_in_any_split() {
        let input =
            b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n";
        for step in 1..input.len() {
            let b = read_all(Framing::Chunked, 1000, input, step)
                .unwrap()
                .unwrap();
            assert_eq!(&b[..], b"Wikipedia in\r\n\r\nchunks.", "step {step}");
        }
    }

    #[test]
    fn length_limits_are_checked_before_buffering() {
        assert_eq!(
            BodyReader::new(Framing::Length(11), 10)
                .unwrap_err()
                .status(),
            413
        );
        let e = read_all(Framing::Chunked, 10, b"b\r\n", 1).unwrap_err();
        assert_eq!(e.status(), 413);
        assert_eq!(
            read_all(Framing::Chunked, 10, b"zz\r\n", 4)
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            read_all(Framing::Length(3), 10, b"abcd", 1)
                .unwrap()
                .unwrap(),
            "abc"
        );
    }

    #[test]
    fn an_over_long_chunk_line_is_refused_however_it_arrives() {
        // Found by fuzzing: the limit used to be checked only while the
        // line was incomplete.
        let mut input = b"1;".to_vec();
        input.extend(std::iter::repeat_n(b'a', 5000));
        input.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        for step in [input.len(), 4200, 1] {
            let e = read_all(Framing::Chunked, 1 << 20, &input, step).unwrap_err();
            assert_eq!(e, HttpError::BadBody("chunk line too long"), "step {step}");
        }
    }

    #[test]
    fn framing_from_headers() {
        let mut h = Headers::new();
        h.push("Content-Length", "5");
        h.push("content-length", "6");
        assert!(Framing::of_request(&h).is_err());
        let mut h = Headers::new();
        h.push("Transfer-Encoding", "gzip, chunked");
        h.push("Content-Length", "6");
        assert_eq!(Framing::of_request(&h), Ok(Framing::Chunked));
        assert_eq!(Framing::of_request(&Headers::new()), Ok(Framing::Length(0)));
        assert_eq!(
            Framing::of_response(200, &Headers::new()),
            Ok(Framing::UntilClose)
        );
    }
}
