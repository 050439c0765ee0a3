//! UTF-8 for text messages: a validated byte type, and a validator that
//! checks a message piece by piece and fails on the first byte that can no
//! longer start valid text (RFC 6455 section 8.1, Autobahn section 6).
#![allow(unsafe_code)]

use std::{fmt, ops::Deref};

use bytes::Bytes;

/// Bytes that are valid UTF-8: a text message's payload, shared without a
/// copy.
///
/// ```
/// use wsio::ws::Utf8Bytes;
/// let t = Utf8Bytes::from("héllo");
/// assert_eq!(t.as_str(), "héllo");
/// assert!(Utf8Bytes::try_from(bytes::Bytes::from_static(b"\xff")).is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Wraps bytes already checked by the caller.
    ///
    /// Only the crate's validator calls this; it is the one place that
    /// vouches for the invariant.
    pub(crate) fn from_validated(b: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&b).is_ok());
        Utf8Bytes(b)
    }

    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor either validated the bytes or took them
        // from a `str`; the bytes are immutable afterwards.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Gives up the UTF-8 guarantee.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&'static str> for Utf8Bytes {
    fn from(s: &'static str) -> Self {
        Utf8Bytes(Bytes::from_static(s.as_bytes()))
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Utf8Bytes(Bytes::from(s))
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = std::str::Utf8Error;
    fn try_from(b: Bytes) -> Result<Self, Self::Error> {
        std::str::from_utf8(&b)?;
        Ok(Utf8Bytes(b))
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Validates UTF-8 fed in arbitrary pieces.
#[derive(Debug, Default, Clone)]
pub(crate) struct Validator {
    // An incomplete sequence carried over from the previous piece.
    partial: [u8; 4],
    partial_len: u8,
}

impl Validator {
    /// Checks the next piece; `false` as soon as the text so far cannot be
    /// the start of valid UTF-8.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> bool {
        if self.partial_len > 0 {
            let have = self.partial_len as usize;
            let need = width(self.partial[0]).saturating_sub(have);
            let take = need.min(data.len());
            self.partial[have..have + take].copy_from_slice(&data[..take]);
            let len = have + take;
            data = &data[take..];
            match std::str::from_utf8(&self.partial[..len]) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_none() => {
                    self.partial_len = len as u8;
                    return true;
                }
                Err(_) => return false,
            }
        }
        match std::str::from_utf8(data) {
            Ok(_) => true,
            Err(e) => match e.error_len() {
                Some(_) => false,
                None => {
                    let tail = &data[e.valid_up_to()..];
                    self.partial[..tail.len()].copy_from_slice(tail);
                    self.partial_len = tail.len() as u8;
                    true
                }
            },
        }
    }

    /// Whether the text fed so far ends on a character boundary.
    pub(crate) fn is_complete(&self) -> bool {
        self.partial_len == 0
    }
}

fn width(first: u8) -> usize {
    match first {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_split_everywhere(bytes: &[u8]) -> (bool, bool) {
        let whole = std::str::from_utf8(bytes).is_ok();
        let mut v = Validator::default();
        let streamed = bytes.iter().all(|b| v.feed(std::slice::from_ref(b))) && v.is_complete();
        (whole, streamed)
    }

    #[test]
    fn streaming_agrees_with_std() {
        let cases: &[&[u8]] = &[
            "κόσμε".as_bytes(),
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
            b"\xf4\x90\x80\x80",
            b"\xf0\x9f\x98\x80",
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"abc\xf0\x9f",
        ];
        for c in cases {
            let (whole, streamed) = check_split_everywhere(c);
            assert_eq!(whole, streamed, "{c:?}");
        }
    }

    #[test]
    fn fails_fast_on_an_invalid_prefix() {
        let mut v = Validator::default();
        assert!(v.feed(b"ok \xf4"));
        // 0xF4 0x90 can never begin a valid sequence (above U+10FFFF).
        assert!(!v.feed(b"\x90"));
    }
}
