//! HTTP heads and bodies on arbitrary bytes.
//!
//! * `HeadParser::parse_request` / `parse_response`: the result is the same
//!   whether the buffer is fed whole or grown through arbitrary cut points;
//!   the byte count is within the input; a parser that returned a head parses
//!   the next one exactly like a fresh parser; a parsed head re-encodes to a
//!   head that parses back to itself.
//! * `BodyReader`: any framing and limit, input arriving in arbitrary pieces:
//!   it only ever consumes from the front of its input, never more than is
//!   there, and never returns a body larger than its limit (or of another
//!   length than a `Content-Length`).

use std::fmt::Debug;

use arbitrary::Arbitrary;
use bytes::BytesMut;
use wsio::http::{
    HeadParser, HttpError, Limits,
    body::{BodyReader, Framing},
};

#[derive(Arbitrary, Debug)]
enum FramingCase {
    Length(u64),
    SmallLength(u16),
    Chunked,
    UntilClose,
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    /// `None`: the default limits.
    limits: Option<(u16, u8)>,
    /// Where the growing buffer is cut before the head is fed whole.
    head_cuts: Vec<u16>,
    framing: FramingCase,
    /// `None`: a large limit.
    body_limit: Option<u16>,
    /// Sizes of the pieces the body arrives in (cycled; 0 means the rest).
    body_pieces: Vec<u8>,
    data: Vec<u8>,
}

/// Runs the checks on one input.
pub fn run(input: Input) {
    let limits = match input.limits {
        None => Limits::default(),
        Some((size, headers)) => Limits {
            max_head_size: usize::from(size),
            max_headers: usize::from(headers),
        },
    };
    let data = &input.data[..];

    let req = check_head(limits, data, &input.head_cuts, |p, b| p.parse_request(b));
    if let Ok(Some((head, used))) = &req {
        let mut out = BytesMut::new();
        head.encode(&mut out);
        let reparse =
            HeadParser::new(roomy(limits, out.len(), head.headers.len())).parse_request(&out);
        assert_eq!(
            reparse,
            Ok(Some((head.clone(), out.len()))),
            "request round trip"
        );
        // The body a request head announces, read from what follows it.
        if let Ok(framing) = wsio::http::body::Framing::of_request(&head.headers) {
            read_body(framing, 1 << 20, &data[*used..], &input.body_pieces);
        }
        // Path and query helpers never panic.
        let _ = (head.path(), head.query());
    }

    let res = check_head(limits, data, &input.head_cuts, |p, b| p.parse_response(b));
    if let Ok(Some((head, used))) = &res {
        let mut out = BytesMut::new();
        head.encode(&mut out);
        let reparse =
            HeadParser::new(roomy(limits, out.len(), head.headers.len())).parse_response(&out);
        assert_eq!(
            reparse,
            Ok(Some((head.clone(), out.len()))),
            "response round trip"
        );
        if let Ok(framing) = Framing::of_response(head.status, &head.headers) {
            read_body(framing, 1 << 20, &data[*used..], &input.body_pieces);
        }
    }

    // The body reader on its own, on the raw bytes.
    let framing = match input.framing {
        FramingCase::Length(n) => Framing::Length(n),
        FramingCase::SmallLength(n) => Framing::Length(u64::from(n)),
        FramingCase::Chunked => Framing::Chunked,
        FramingCase::UntilClose => Framing::UntilClose,
    };
    let limit = input.body_limit.map_or(1 << 20, usize::from);
    read_body(framing, limit, data, &input.body_pieces);

    // Percent-decoding and query parsing of arbitrary text never panic.
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = wsio::http::Query::parse(s);
        let enc = wsio::http::percent_encode(s);
        assert_eq!(wsio::http::percent_decode(&enc), s, "percent round trip");
        if let Some(u) = wsio::http::Url::parse(s) {
            let _ = u.host_header();
            assert!(u.target.starts_with('/'), "{u:?}");
        }
    }
}

/// Limits that let a re-encoded head through.
fn roomy(limits: Limits, len: usize, headers: usize) -> Limits {
    Limits {
        max_head_size: limits.max_head_size.max(len),
        max_headers: limits.max_headers.max(headers),
    }
}

type Parsed<H> = Result<Option<(H, usize)>, HttpError>;

/// Parses `data` whole with a fresh parser, and again as a buffer growing
/// through `cuts`, and checks both agree. Returns the whole-buffer result.
fn check_head<H: PartialEq + Debug>(
    limits: Limits,
    data: &[u8],
    cuts: &[u16],
    parse: impl Fn(&mut HeadParser, &[u8]) -> Parsed<H>,
) -> Parsed<H> {
    let whole = parse(&mut HeadParser::new(limits), data);
    if let Ok(Some((_, used))) = &whole {
        assert!(
            *used > 0 && *used <= data.len(),
            "used {used} of {}",
            data.len()
        );
        assert!(*used <= limits.max_head_size, "used {used} over the limit");
    }

    let mut points: Vec<usize> = cuts
        .iter()
        .map(|&c| usize::from(c) % (data.len() + 1))
        .collect();
    points.sort_unstable();
    points.push(data.len());
    let mut parser = HeadParser::new(limits);
    let mut split = Ok(None);
    for &cut in &points {
        match parse(&mut parser, &data[..cut]) {
            Ok(None) => assert!(parser.scanned() <= cut, "scanned past the buffer"),
            other => {
                split = other;
                break;
            }
        }
    }
    assert_eq!(whole, split, "whole vs split at {points:?}");

    // After a head, the same parser reads the next one like a fresh parser.
    if let Ok(Some((_, used))) = &split {
        let rest = &data[*used..];
        let again = parse(&mut parser, rest);
        let fresh = parse(&mut HeadParser::new(limits), rest);
        assert_eq!(again, fresh, "pipelined head");
    }
    whole
}

/// Feeds `data` to a body reader in pieces and checks its bookkeeping.
fn read_body(framing: Framing, limit: usize, data: &[u8], pieces: &[u8]) {
    let Ok(mut reader) = BodyReader::new(framing, limit) else {
        // Refused at once only for a declared length over the limit.
        assert!(matches!(framing, Framing::Length(n) if n > limit as u64));
        return;
    };
    let mut buf = BytesMut::new();
    let mut fed = 0usize;
    let mut consumed = 0usize;
    let mut sizes = pieces.iter().copied().cycle();
    let mut done = false;
    while fed < data.len() || fed == 0 {
        let n = match sizes.next() {
            None | Some(0) => data.len() - fed,
            Some(n) => usize::from(n).min(data.len() - fed),
        };
        buf.extend_from_slice(&data[fed..fed + n]);
        fed += n;
        let before = buf.clone();
        let r = reader.read(&mut buf);
        // Only the front of the input is ever taken.
        assert!(buf.len() <= before.len(), "input grew");
        let took = before.len() - buf.len();
        assert_eq!(&before[took..], &buf[..], "consumed from the middle");
        consumed += took;
        assert!(consumed <= fed, "consumed {consumed} of {fed}");
        match r {
            Ok(Some(body)) => {
                check_body(framing, limit, body.len());
                done = true;
                break;
            }
            Ok(None) => {}
            Err(_) => {
                done = true;
                break;
            }
        }
        if fed == data.len() {
            break;
        }
    }
    if !done && let Ok(body) = reader.finish() {
        assert!(
            matches!(framing, Framing::UntilClose | Framing::Length(0)),
            "finish gave a body for {framing:?}"
        );
        check_body(framing, limit, body.len());
    }
}

fn check_body(framing: Framing, limit: usize, len: usize) {
    assert!(len <= limit, "body of {len} over the limit {limit}");
    if let Framing::Length(n) = framing {
        assert_eq!(len as u64, n, "body length");
    }
}
