//! Why a message is not a msgpack packet.

/// Why a message is not a msgpack packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum MsgpackError {
    /// The message ends inside a value, or declares a length the rest
    /// of it cannot hold.
    #[error("truncated")]
    Truncated,
    /// Bytes follow the packet's value.
    #[error("trailing bytes")]
    TrailingBytes,
    /// The never-used marker `0xc1`.
    #[error("reserved marker 0xc1")]
    ReservedMarker,
    /// Arrays and maps nested deeper than the limit.
    #[error("nested too deep")]
    TooDeep,
    /// A map key that is not a string, number, boolean, nil or
    /// `undefined`.
    #[error("unsupported map key")]
    UnsupportedKey,
    /// The message is one value, but not a map.
    #[error("not a map")]
    NotAMap,
}
