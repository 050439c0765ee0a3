//! HTTP/1.1 heads: an incremental parser with limits, serialisation, and
//! query strings.
//!
//! Only what the upper layers need: the WebSocket opening handshake and, for
//! Engine.IO, long-polling requests. Bodies are framed by [`body`].

pub mod body;
pub mod client;
mod head;
mod headers;
mod query;
mod url;

pub use head::{HeadParser, Limits, Method, RequestHead, ResponseHead, reason_phrase};
pub use headers::Headers;
pub use query::{Query, decode as percent_decode, encode as percent_encode};
pub use url::Url;

/// Why a peer's HTTP head was refused; each carries the status to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The head is not valid HTTP/1.x.
    #[error("malformed HTTP head: {0}")]
    Malformed(&'static str),
    /// The head is longer than [`Limits::max_head_size`].
    #[error("HTTP head larger than {0} bytes")]
    HeadTooLarge(usize),
    /// The head has more headers than [`Limits::max_headers`].
    #[error("more than {0} HTTP headers")]
    TooManyHeaders(usize),
    /// A body is framed in a way we cannot read (bad length or chunk size).
    #[error("bad HTTP body framing: {0}")]
    BadBody(&'static str),
    /// A body is larger than the configured limit.
    #[error("HTTP body larger than {0} bytes")]
    BodyTooLarge(usize),
}

impl HttpError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed(_) | HttpError::BadBody(_) => 400,
            HttpError::HeadTooLarge(_) | HttpError::TooManyHeaders(_) => 431,
            HttpError::BodyTooLarge(_) => 413,
        }
    }
}
