//! Close codes and close frame payloads (RFC 6455 sections 5.5.1 and 7.4).

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::ProtocolError;

/// A close status code.
///
/// ```
/// use wsio::ws::CloseCode;
/// assert!(CloseCode::NORMAL.is_valid_on_wire());
/// assert!(!CloseCode::ABNORMAL.is_valid_on_wire()); // only ever reported locally
/// assert!(CloseCode(4000).is_valid_on_wire());      // private use
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page left).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// 1005: the close frame had no status code (never sent).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection ended without a close frame (never sent).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a text message that is not UTF-8, or similar bad data.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a policy was violated.
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: a message too big to process.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client needed an extension the server did not negotiate.
    pub const EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later.
    pub const TRY_AGAIN: CloseCode = CloseCode(1013);

    /// Whether a close frame may carry this code (section 7.4.1 and the IANA
    /// registry): 1000–1003, 1007–1014, and 3000–4999.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The payload of a close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason; at most 123 bytes of UTF-8 on the wire.
    pub reason: String,
}

impl CloseFrame {
    /// A close frame with a code and a reason.
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        CloseFrame {
            code,
            reason: reason.into(),
        }
    }

    /// Parses a close payload: `None` for an empty one (no status code).
    pub fn decode(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
        match payload {
            [] => Ok(None),
            [_] => Err(ProtocolError::BadClosePayload),
            [hi, lo, reason @ ..] => {
                let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
                if !code.is_valid_on_wire() {
                    return Err(ProtocolError::BadCloseCode(code.0));
                }
                let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
                Ok(Some(CloseFrame::new(code, reason)))
            }
        }
    }

    /// The frame payload: the code, then the reason cut to fit 125 bytes at a
    /// character boundary.
    pub fn encode(&self) -> Bytes {
        let mut cut = self.reason.len().min(123);
        while !self.reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut b = BytesMut::with_capacity(2 + cut);
        b.put_u16(self.code.0);
        b.put_slice(&self.reason.as_bytes()[..cut]);
        b.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_validity_matches_autobahn_section_7() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(CloseCode(ok).is_valid_on_wire(), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode(bad).is_valid_on_wire(), "{bad}");
        }
    }

    #[test]
    fn decode_and_encode() {
        assert_eq!(CloseFrame::decode(&[]), Ok(None));
        assert_eq!(
            CloseFrame::decode(&[3]),
            Err(ProtocolError::BadClosePayload)
        );
        assert_eq!(
            CloseFrame::decode(&[3, 0xE8, 0xFF]),
            Err(ProtocolError::InvalidUtf8)
        );
        let f = CloseFrame::new(CloseCode(4000), "é".repeat(70));
        let enc = f.encode();
        assert_eq!(enc.len(), 124);
        assert_eq!(
            CloseFrame::decode(&enc).unwrap().unwrap().reason,
            "é".repeat(61)
        );
    }
}
