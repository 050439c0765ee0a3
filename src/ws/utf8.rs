//! UTF-8 for text messages: a validated byte type, and a validator that
//! checks a message piece by piece and fails on the first byte that can no
//! longer start valid text (RFC 6455 section 8.1, Autobahn section 6).
#![allow(unsafe_code)]

use std::{
    fmt,
    ops::{Bound, Deref, RangeBounds},
};

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
    /// Wraps bytes already checked by the caller: only `ws`, whose
    /// validator has just accepted them, calls this. Other layers use the
    /// checked constructors and [`slice`](Self::slice).
    pub(super) fn from_validated(b: Bytes) -> Self {
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

    /// The text in `range`, sharing these bytes without a copy, or `None`
    /// if `range` is out of bounds or cuts a character. Checking costs
    /// two byte comparisons, however long the text.
    ///
    /// ```
    /// use wsio::ws::Utf8Bytes;
    /// let t = Utf8Bytes::from("4héllo");
    /// assert_eq!(t.slice(1..).unwrap(), "héllo");
    /// assert_eq!(t.slice(..3), None); // inside 'é'
    /// assert_eq!(t.slice(4..9), None); // past the end
    /// ```
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Option<Utf8Bytes> {
        let start = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n.checked_add(1)?,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&n) => n.checked_add(1)?,
            Bound::Excluded(&n) => n,
            Bound::Unbounded => self.0.len(),
        };
        let text = self.as_str();
        if start > end || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            return None;
        }
        // A range of valid UTF-8 between character boundaries is valid UTF-8.
        Some(Utf8Bytes(self.0.slice(start..end)))
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

/// `b` as text, for bytes the crate's validator has just accepted.
pub(super) fn str_from_validated(b: &[u8]) -> &str {
    debug_assert!(std::str::from_utf8(b).is_ok());
    // SAFETY: only called on bytes that `validate` accepted and that have
    // not changed since (the caller holds the only borrow).
    unsafe { std::str::from_utf8_unchecked(b) }
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
///
/// A small automaton over the grammar of RFC 3629 section 4: its state is
/// what the next byte may be, so it rejects at the first byte that no valid
/// text could continue with, and carries over a character cut between
/// pieces at no cost. ASCII runs are checked eight bytes at a time.
#[derive(Debug, Default, Clone)]
pub(crate) struct Validator {
    state: State,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum State {
    /// Between characters.
    #[default]
    Accept = 0,
    /// One continuation byte (80–BF) to go.
    Tail1,
    /// Two to go.
    Tail2,
    /// Three to go.
    Tail3,
    /// After E0: A0–BF, then one more (no overlong forms).
    E0,
    /// After ED: 80–9F, then one more (no surrogates).
    Ed,
    /// After F0: 90–BF, then two more (no overlong forms).
    F0,
    /// After F4: 80–8F, then two more (nothing above U+10FFFF).
    F4,
    /// Invalid: stays invalid.
    Reject,
}

const STATES: [State; 9] = [
    State::Accept,
    State::Tail1,
    State::Tail2,
    State::Tail3,
    State::E0,
    State::Ed,
    State::F0,
    State::F4,
    State::Reject,
];

/// The grammar, one byte at a time; the tables below are computed from it.
const fn step(state: State, b: u8) -> State {
    use State::*;
    let tail = b >= 0x80 && b <= 0xBF;
    match state {
        Accept => match b {
            0x00..=0x7F => Accept,
            0xC2..=0xDF => Tail1,
            0xE0 => E0,
            0xE1..=0xEC | 0xEE..=0xEF => Tail2,
            0xED => Ed,
            0xF0 => F0,
            0xF1..=0xF3 => Tail3,
            0xF4 => F4,
            _ => Reject,
        },
        Tail1 if tail => Accept,
        Tail2 if tail => Tail1,
        Tail3 if tail => Tail2,
        E0 if b >= 0xA0 && b <= 0xBF => Tail1,
        Ed if b >= 0x80 && b <= 0x9F => Tail1,
        F0 if b >= 0x90 && b <= 0xBF => Tail2,
        F4 if b >= 0x80 && b <= 0x8F => Tail2,
        _ => Reject,
    }
}

/// The automaton as one `u64` per byte: the six bits at `6 * state` hold
/// `6 * next state`, so a step is a shift and a mask. Computed at compile
/// time from [`step`]; nine states fit in 54 bits.
const SHIFT_TABLE: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut b = 0;
    while b < 256 {
        let mut word = 0u64;
        let mut s = 0;
        while s < STATES.len() {
            let next = step(STATES[s], b as u8) as u64;
            word |= (next * 6) << (s * 6);
            s += 1;
        }
        t[b] = word;
        b += 1;
    }
    t
};

const ACCEPT: u64 = State::Accept as u64 * 6;
const REJECT: u64 = State::Reject as u64 * 6;

impl Validator {
    /// Checks the next piece; `false` if the text so far cannot be the
    /// start of valid UTF-8 (rejection is final, so it is checked once per
    /// piece: a piece is one frame's bytes, or what arrived of it).
    pub(crate) fn feed(&mut self, data: &[u8]) -> bool {
        let mut state = self.state as u64 * 6;
        // Text that starts with ASCII skips it a word at a time.
        let start = if state == ACCEPT {
            ascii_prefix(data)
        } else {
            0
        };
        // A shift by `state` uses only its low six bits (`wrapping_shr`
        // masks the amount, as the shift instruction does), so the bits
        // above them need no clearing between steps; four steps per turn.
        let step = |state: u64, b: u8| SHIFT_TABLE[b as usize].wrapping_shr(state as u32);
        let mut quads = data[start..].chunks_exact(4);
        for q in &mut quads {
            state = step(step(step(step(state, q[0]), q[1]), q[2]), q[3]);
        }
        for &b in quads.remainder() {
            state = step(state, b);
        }
        let state = state & 63;
        self.state = STATES[(state / 6) as usize];
        state != REJECT
    }

    /// Whether the text fed so far ends on a character boundary.
    pub(crate) fn is_complete(&self) -> bool {
        self.state == State::Accept
    }
}

/// Whether `data` is valid UTF-8 on its own (a whole text message in one
/// frame): the automaton of [`Validator`], without carrying state.
#[inline]
pub(crate) fn validate(data: &[u8]) -> bool {
    let mut v = Validator::default();
    v.feed(data) && v.is_complete()
}

/// The length of the all-ASCII prefix, found 8 bytes at a time.
fn ascii_prefix(data: &[u8]) -> usize {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    for w in data.chunks_exact(8) {
        let v = u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        if v & HIGH != 0 {
            break;
        }
        i += 8;
    }
    while i < data.len() && data[i] < 0x80 {
        i += 1;
    }
    i
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
    fn agrees_with_std_on_every_short_sequence() {
        // Every 1- and 2-byte sequence, and every 3-byte one starting with a
        // lead byte, whole and split at each point.
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for a in 0..=255u8 {
            cases.push(vec![a]);
            for b in 0..=255u8 {
                cases.push(vec![a, b]);
                if a >= 0xC0 {
                    for c in [0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF] {
                        cases.push(vec![a, b, c]);
                        cases.push(vec![a, b, c, 0x80]);
                    }
                }
            }
        }
        for c in &cases {
            let want = std::str::from_utf8(c).is_ok();
            for cut in 0..=c.len() {
                let mut v = Validator::default();
                let ok = v.feed(&c[..cut]) && v.feed(&c[cut..]) && v.is_complete();
                assert_eq!(ok, want, "{c:x?} cut at {cut}");
            }
            // A prefix is rejected exactly when std says no text starts so.
            let mut v = Validator::default();
            let prefix_ok = v.feed(c);
            let std_prefix = match std::str::from_utf8(c) {
                Ok(_) => true,
                Err(e) => e.error_len().is_none(),
            };
            assert_eq!(prefix_ok, std_prefix, "{c:x?}");
        }
    }

    #[test]
    fn slices_only_on_character_boundaries() {
        let t = Utf8Bytes::from("aé€😀z");
        let text = t.as_str();
        for start in 0..=text.len() + 1 {
            for end in 0..=text.len() + 1 {
                let want = text.get(start..end);
                let got = t.slice(start..end);
                assert_eq!(got.as_deref(), want, "{start}..{end}");
                if let Some(g) = got.filter(|g| !g.is_empty()) {
                    // Shared, not copied.
                    assert_eq!(g.as_bytes().as_ptr(), t.as_bytes()[start..].as_ptr());
                }
            }
        }
        assert_eq!(t.slice(..).unwrap(), text);
        assert_eq!(t.slice(1..=2).unwrap(), "é");
        assert_eq!(t.slice(..=1), None);
        assert_eq!(t.slice(..=usize::MAX), None);
        assert_eq!(
            t.slice((
                std::ops::Bound::Excluded(usize::MAX),
                std::ops::Bound::Unbounded
            )),
            None
        );
    }

    #[test]
    fn fails_fast_on_an_invalid_prefix() {
        let mut v = Validator::default();
        assert!(v.feed(b"ok \xf4"));
        // 0xF4 0x90 can never begin a valid sequence (above U+10FFFF).
        assert!(!v.feed(b"\x90"));
    }
}
