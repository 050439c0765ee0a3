//! Compressed long-polling (the official server's `httpCompression`): a
//! polling response of at least a threshold is sent gzip- or
//! deflate-encoded, whichever the request's `Accept-Encoding` prefers, and
//! the client decodes what comes back so.
//!
//! The choice follows the npm `negotiator` package the official server
//! uses (through `accepts`): the highest `q` wins, then an exact name over
//! `*`, then the order of the header, then gzip before deflate; `q=0`
//! refuses; no header means no compression. `deflate` is the zlib format
//! (RFC 1950), as Node's `zlib.createDeflate` writes it.

use std::io::{Read, Write};

use bytes::Bytes;
use flate2::{
    Compression, GzBuilder,
    read::{GzDecoder, ZlibDecoder},
    write::ZlibEncoder,
};

/// How polling responses are compressed (Engine.IO's `httpCompression`).
///
/// ```
/// let c = wsio::engineio::HttpCompression::default().threshold(4096);
/// assert_eq!((c.threshold, c.level), (4096, 6));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpCompression {
    /// Bodies shorter than this are sent as they are. Default 1,024 bytes,
    /// as the official server.
    pub threshold: usize,
    /// zlib level, 0 (store) to 9. Default 6, Node's.
    pub level: u32,
}

impl Default for HttpCompression {
    fn default() -> Self {
        HttpCompression {
            threshold: 1024,
            level: 6,
        }
    }
}

impl HttpCompression {
    /// Sets [`threshold`](Self::threshold).
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }
    /// Sets [`level`](Self::level), clamped to 0..=9.
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.min(9);
        self
    }
}

/// A content coding of polling responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContentEncoding {
    Gzip,
    Deflate,
}

impl ContentEncoding {
    /// The name in `Content-Encoding`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ContentEncoding::Gzip => "gzip",
            ContentEncoding::Deflate => "deflate",
        }
    }

    /// The coding a `Content-Encoding` value names (`identity` and none
    /// are `Ok(None)`); anything else is refused.
    pub(crate) fn parse(value: Option<&[u8]>) -> Result<Option<ContentEncoding>, ()> {
        let Some(v) = value.map(<[u8]>::trim_ascii) else {
            return Ok(None);
        };
        if v.eq_ignore_ascii_case(b"gzip") || v.eq_ignore_ascii_case(b"x-gzip") {
            Ok(Some(ContentEncoding::Gzip))
        } else if v.eq_ignore_ascii_case(b"deflate") {
            Ok(Some(ContentEncoding::Deflate))
        } else if v.is_empty() || v.eq_ignore_ascii_case(b"identity") {
            Ok(None)
        } else {
            Err(())
        }
    }
}

/// One element of `Accept-Encoding`.
struct Spec<'a> {
    name: &'a str,
    q: f64,
    /// Its position in the header.
    at: usize,
}

/// What `negotiator` makes of an element, `name[;params]`: its `q`
/// parameter as JavaScript's `parseFloat` reads it (1 when absent).
fn parse_spec(part: &str, at: usize) -> Option<Spec<'_>> {
    let part = part.trim();
    let end = part
        .find(|c: char| c.is_whitespace() || c == ';')
        .unwrap_or(part.len());
    let (name, rest) = part.split_at(end);
    if name.is_empty() {
        return None;
    }
    let rest = rest.trim_start();
    let params = match rest.strip_prefix(';') {
        Some(p) => p,
        None if rest.is_empty() => "",
        None => return None,
    };
    let mut q = 1.0;
    if !params.is_empty() {
        for p in params.split(';') {
            let mut kv = p.trim().splitn(2, '=');
            if kv.next() == Some("q") {
                q = parse_float(kv.next().unwrap_or(""));
                break;
            }
        }
    }
    Some(Spec { name, q, at })
}

/// JavaScript's `parseFloat`: the longest number at the start of `s`
/// (after white space), or NaN.
fn parse_float(s: &str) -> f64 {
    let s = s.trim_start();
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i = 1;
    }
    if s.get(i..).is_some_and(|r| r.starts_with("Infinity")) {
        return if b.first() == Some(&b'-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    let mut any = digits(&mut i);
    if b.get(i) == Some(&b'.') {
        let mut j = i + 1;
        if digits(&mut j) || any {
            any = true;
            i = j;
        }
    }
    if !any {
        return f64::NAN;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if digits(&mut j) {
            i = j;
        }
    }
    s.get(..i).and_then(|n| n.parse().ok()).unwrap_or(f64::NAN)
}

/// Whether a JavaScript difference is truthy (neither 0 nor NaN).
fn truthy(d: f64) -> bool {
    d != 0.0 && !d.is_nan()
}

/// The coding to answer a request with, from its `Accept-Encoding`, as
/// `accepts(req).encodings(["gzip", "deflate"])` picks it.
pub(crate) fn negotiate(accept: Option<&[u8]>) -> Option<ContentEncoding> {
    let accept = std::str::from_utf8(accept?).ok()?;
    let specs: Vec<Spec<'_>> = accept
        .split(',')
        .enumerate()
        .filter_map(|(at, part)| parse_spec(part, at))
        .collect();
    // For each coding: (q, exact, order in the header, order offered).
    let mut best: Option<(f64, u8, f64, usize, ContentEncoding)> = None;
    for (index, coding) in [ContentEncoding::Gzip, ContentEncoding::Deflate]
        .into_iter()
        .enumerate()
    {
        let (mut s, mut q, mut o) = (0u8, 0.0f64, -1.0f64);
        for spec in &specs {
            let exact = spec.name.eq_ignore_ascii_case(coding.as_str());
            if !exact && spec.name != "*" {
                continue;
            }
            let ss = u8::from(exact);
            let d_s = f64::from(s) - f64::from(ss);
            let d_q = q - spec.q;
            let d_o = o - spec.at as f64;
            let d = if truthy(d_s) {
                d_s
            } else if truthy(d_q) {
                d_q
            } else {
                d_o
            };
            if d < 0.0 {
                (s, q, o) = (ss, spec.q, spec.at as f64);
            }
        }
        // `q > 0` fails for NaN too.
        if q.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            continue;
        }
        let better = match best {
            None => true,
            Some((bq, bs, bo, bi, _)) => {
                let d_q = bq - q;
                let d_s = f64::from(bs) - f64::from(s);
                let d_o = o - bo;
                let d_i = index as f64 - bi as f64;
                let d = [d_q, d_s, d_o, d_i].into_iter().find(|d| truthy(*d));
                d.is_some_and(|d| d < 0.0)
            }
        };
        if better {
            best = Some((q, s, o, index, coding));
        }
    }
    best.map(|b| b.4)
}

/// `body` encoded with `coding` at `level`, as Node's zlib streams write
/// it (a gzip header with no name or time, OS "Unix").
pub(crate) fn compress(body: &[u8], coding: ContentEncoding, level: u32) -> Option<Bytes> {
    let out = Vec::with_capacity(body.len() / 4 + 64);
    let level = Compression::new(level.min(9));
    let out = match coding {
        ContentEncoding::Gzip => {
            let mut e = GzBuilder::new().operating_system(3).write(out, level);
            e.write_all(body).ok()?;
            e.finish().ok()?
        }
        ContentEncoding::Deflate => {
            let mut e = ZlibEncoder::new(out, level);
            e.write_all(body).ok()?;
            e.finish().ok()?
        }
    };
    Some(Bytes::from(out))
}

/// Why a compressed body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeBodyError {
    /// It decodes to more than the limit.
    TooLarge,
    /// It is not valid data of its coding.
    Invalid,
}

/// Decodes a body sent with `coding`, reading at most `limit` bytes of
/// output (one more says it is too large), so a small body cannot make a
/// large buffer.
pub(crate) fn decompress(
    body: &[u8],
    coding: ContentEncoding,
    limit: usize,
) -> Result<Bytes, DecodeBodyError> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let read = match coding {
        ContentEncoding::Gzip => GzDecoder::new(body).take(cap).read_to_end(&mut out),
        ContentEncoding::Deflate => ZlibDecoder::new(body).take(cap).read_to_end(&mut out),
    };
    read.map_err(|_| DecodeBodyError::Invalid)?;
    if out.len() > limit {
        return Err(DecodeBodyError::TooLarge);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_as_the_official_server_reads_it() {
        use ContentEncoding::{Deflate, Gzip};
        let cases: &[(Option<&str>, Option<ContentEncoding>)] = &[
            (None, None),
            (Some(""), None),
            (Some("identity"), None),
            (Some("br"), None),
            (Some("gzip, deflate, br, zstd"), Some(Gzip)),
            (Some("deflate, gzip"), Some(Deflate)),
            (Some("deflate;q=0.5, gzip;q=0.8"), Some(Gzip)),
            (Some("gzip;q=0.5, deflate"), Some(Deflate)),
            (Some("*"), Some(Gzip)),
            (Some("*;q=0.5, deflate"), Some(Deflate)),
            (Some("gzip;q=0, *"), Some(Deflate)),
            (Some("gzip;q=0"), None),
            (Some("GZIP"), Some(Gzip)),
            (Some("gzip;q=abc, deflate;q=0.1"), Some(Deflate)),
            (Some("gzip ;q=0.2, deflate;q=0.1"), Some(Gzip)),
            (Some("gzip x, deflate"), Some(Deflate)),
            (Some(" , ,gzip"), Some(Gzip)),
            (Some("gzip;level=1;q=0.3, deflate;q=0.2"), Some(Gzip)),
            (Some("gzip;q=.5, deflate;q=0.4"), Some(Gzip)),
            (Some("gzip;q=1e-1, deflate;q=0.2"), Some(Deflate)),
        ];
        for (header, want) in cases {
            assert_eq!(negotiate(header.map(str::as_bytes)), *want, "{header:?}");
        }
    }

    #[test]
    fn round_trips_and_limits() {
        let body = "4hello world ".repeat(500).into_bytes();
        for coding in [ContentEncoding::Gzip, ContentEncoding::Deflate] {
            let z = compress(&body, coding, 6).unwrap();
            assert!(z.len() < body.len() / 10);
            assert_eq!(&decompress(&z, coding, body.len()).unwrap()[..], &body[..]);
            assert_eq!(
                decompress(&z, coding, body.len() - 1),
                Err(DecodeBodyError::TooLarge)
            );
            assert_eq!(
                decompress(&z[..z.len() / 2], coding, body.len()),
                Err(DecodeBodyError::Invalid)
            );
        }
        let gz = compress(b"x", ContentEncoding::Gzip, 6).unwrap();
        assert_eq!(&gz[..10], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
        let zlib = compress(b"x", ContentEncoding::Deflate, 6).unwrap();
        assert_eq!(&zlib[..2], [0x78, 0x9c]);
        assert_eq!(
            ContentEncoding::parse(Some(b" GZIP ")),
            Ok(Some(ContentEncoding::Gzip))
        );
        assert_eq!(ContentEncoding::parse(None), Ok(None));
        assert_eq!(ContentEncoding::parse(Some(b"br")), Err(()));
    }
}
