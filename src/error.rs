//! Whose fault an error is, split the same way at every layer, and one
//! error type for drivers that just want `?`.
//!
//! Every error type of the crate answers [`fault`](Error::fault) with one of
//! four [`Fault`]s. A driver logs and counts by fault, not by type: a
//! [`Fault::Peer`] or [`Fault::Limit`] costs only the connection it came on
//! and is not a bug here; a [`Fault::Caller`] is a bug in the code that made
//! the call (nothing was sent); a [`Fault::Transport`] is the network or the
//! system underneath.
//!
//! | type | [`Fault::Peer`] | [`Fault::Limit`] | [`Fault::Caller`] | [`Fault::Transport`] |
//! |---|---|---|---|---|
//! | [`http::HttpError`] | `Malformed`, `BadBody` | `HeadTooLarge`, `TooManyHeaders`, `BodyTooLarge` | | |
//! | [`ws::FrameError`], [`ws::ProtocolError`] | all | | | |
//! | [`ws::LimitError`] | | all | | |
//! | [`ws::HandshakeError`] | the rest | `Http` over a limit | | `Eof`, `Timeout` |
//! | [`ws::deflate::NegotiationError`] | all | | | |
//! | [`ws::deflate::InflateError`] | `InvalidData` | `TooLarge` | | |
//! | [`ws::deflate::CompressError`] | | | | all (the compressor failed) |
//! | [`ws::Error`] | `Protocol` | `Limit` | | `CloseTimeout`, `Compress` |
//! | [`ws::UsageError`] | | | all | |
//! | [`engineio::DecodeError`] | all | | | |
//! | [`engineio::UsageError`], [`engineio::ClientUsageError`] | | | all | |
//! | [`engineio::ClientError`] | `HttpStatus`, `WebSocketClosed`, `Decode`, `BadHandshake`, `BadProbe` | `BadResponse` over a limit | | `ConnectionClosed`, `ConnectionFailed`, `Timeout` |
//! | [`socketio::DecodeError`] | the rest | `TooManyAttachments`, `Msgpack(TooDeep)` | | |
//! | [`socketio::msgpack::MsgpackError`] | the rest | `TooDeep` | | |
//! | [`socketio::UsageError`], [`socketio::ClientUsageError`] | | | all | |
//! | [`socketio::TypedError`] | | | all (the types asked for) | |
//! | [`entropy::EntropyUnavailable`] | | | | all |
//! | [`blocking::Error`], [`blocking::ClientError`] | `Closed` by the peer, `Refused` | | `Usage`, `Url`, `Closed` (the client's own close) | `Io`, `Tls`, `ConnectFailed`, timeouts, `AckLost` |
//!
//! Errors that wrap another (`ws::Error::Handshake`, `engineio::ClientError::WebSocket`,
//! `socketio::UsageError::Engine`...) take the fault of what they wrap.
//! Timeouts are [`Fault::Transport`]: a silent peer and a dead network look
//! the same from here.

use crate::{blocking, engineio, entropy, http, socketio, ws};

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The peer broke the protocol or refused us: its connection ends.
    Peer,
    /// The peer crossed a configured limit: its connection ends.
    Limit,
    /// The caller misused an API (wrong time, bad argument, unknown id):
    /// nothing was sent.
    Caller,
    /// The connection or the system underneath: I/O errors, connections
    /// that failed, closed early or went silent past a timeout, resources
    /// the OS refused.
    Transport,
}

/// Any error of this crate, for code that just wants `?`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An HTTP head or body.
    #[error(transparent)]
    Http(#[from] http::HttpError),
    /// A WebSocket connection ended in error.
    #[error(transparent)]
    Ws(#[from] ws::Error),
    /// A WebSocket command misused.
    #[error(transparent)]
    WsUsage(#[from] ws::UsageError),
    /// An Engine.IO packet or payload.
    #[error(transparent)]
    EngineIoDecode(#[from] engineio::DecodeError),
    /// An Engine.IO server command misused.
    #[error(transparent)]
    EngineIoUsage(#[from] engineio::UsageError),
    /// An Engine.IO client's transport or probe.
    #[error(transparent)]
    EngineIoClient(#[from] engineio::ClientError),
    /// An Engine.IO client command misused.
    #[error(transparent)]
    EngineIoClientUsage(#[from] engineio::ClientUsageError),
    /// A Socket.IO packet.
    #[error(transparent)]
    SocketIoDecode(#[from] socketio::DecodeError),
    /// A Socket.IO server command misused.
    #[error(transparent)]
    SocketIoUsage(#[from] socketio::UsageError),
    /// A Socket.IO client command misused.
    #[error(transparent)]
    SocketIoClientUsage(#[from] socketio::ClientUsageError),
    /// Arguments that do not fit the types asked for.
    #[error(transparent)]
    Typed(#[from] socketio::TypedError),
    /// The OS has no randomness to give.
    #[error(transparent)]
    Entropy(#[from] entropy::EntropyUnavailable),
    /// The blocking WebSocket.
    #[error(transparent)]
    BlockingWs(#[from] blocking::Error),
    /// The blocking Socket.IO client.
    #[error(transparent)]
    BlockingClient(#[from] blocking::ClientError),
    /// A socket or file.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Whose fault it is.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Http(e) => e.fault(),
            Error::Ws(e) => e.fault(),
            Error::WsUsage(e) => e.fault(),
            Error::EngineIoDecode(e) => e.fault(),
            Error::EngineIoUsage(e) => e.fault(),
            Error::EngineIoClient(e) => e.fault(),
            Error::EngineIoClientUsage(e) => e.fault(),
            Error::SocketIoDecode(e) => e.fault(),
            Error::SocketIoUsage(e) => e.fault(),
            Error::SocketIoClientUsage(e) => e.fault(),
            Error::Typed(e) => e.fault(),
            Error::Entropy(e) => e.fault(),
            Error::BlockingWs(e) => e.fault(),
            Error::BlockingClient(e) => e.fault(),
            Error::Io(_) => Fault::Transport,
        }
    }
}

impl From<ws::HandshakeError> for Error {
    fn from(e: ws::HandshakeError) -> Self {
        Error::Ws(e.into())
    }
}

impl From<ws::ProtocolError> for Error {
    fn from(e: ws::ProtocolError) -> Self {
        Error::Ws(e.into())
    }
}

impl From<ws::LimitError> for Error {
    fn from(e: ws::LimitError) -> Self {
        Error::Ws(e.into())
    }
}

/// One fault for every value of a type.
macro_rules! all {
    ($fault:ident: $($t:ty),+ $(,)?) => {$(
        impl $t {
            /// Whose fault it is (see [`crate::error`]).
            pub fn fault(&self) -> Fault {
                Fault::$fault
            }
        }
    )+};
}

all!(Peer: ws::FrameError, ws::ProtocolError, ws::deflate::NegotiationError, engineio::DecodeError);
all!(Limit: ws::LimitError);
all!(
    Caller: ws::UsageError,
    engineio::UsageError,
    engineio::ClientUsageError,
    socketio::ClientUsageError,
    socketio::TypedError,
);
all!(Transport: ws::deflate::CompressError, entropy::EntropyUnavailable);

impl http::HttpError {
    /// Whose fault it is (see [`crate::error`]).
    pub fn fault(&self) -> Fault {
        use http::HttpError::*;
        match self {
            Malformed(_) | BadBody(_) => Fault::Peer,
            HeadTooLarge(_) | TooManyHeaders(_) | BodyTooLarge(_) => Fault::Limit,
        }
    }
}

impl ws::HandshakeError {
    /// Whose fault it is (see [`crate::error`]).
    pub fn fault(&self) -> Fault {
        match self {
            ws::HandshakeError::Http(e) => e.fault(),
            ws::HandshakeError::Eof | ws::HandshakeError::Timeout => Fault::Transport,
            _ => Fault::Peer,
        }
    }
}

impl ws::deflate::InflateError {
    /// Whose fault it is (see [`crate::error`]).
    pub fn fault(&self) -> Fault {
        match self {
            ws::deflate::InflateError::TooLarge { .. } => Fault::Limit,
            ws::deflate::InflateError::InvalidData => Fault::Peer,
        }
    }
}

impl ws::Error {
    /// Whose fault it is (see [`crate::error`]).
    pub fn fault(&self) -> Fault {
        match self {
            ws::Error::Handshake(e) => e.fault(),
            ws::Error::Protocol(e) => e.fault(),
            ws::Error::Limit(e) => e.fault(),
            ws::Error::CloseTimeout | ws::Error::Compress(_) => Fault::Transport,
        }
    }
}

impl engineio::ClientError {
    /// Whose fault it is (see [`crate::error`]).
    pub fn fault(&self) -> Fault {
        use engineio::ClientError::*;
        match self {
            BadResponse(e) => e.fault(),
            WebSocket(e) => e.fault(),
            Decode(e) => e.fault(),
            HttpStatus(_) | WebSocketClosed(_) | BadHandshake(_) | BadProbe => Fault::Peer,
            ConnectionClosed | ConnectionFailed(_) | Timeout => Fault::Transport,
        }
    }
}

impl socketio::msgpack::MsgpackError {
    /// Whose fault it is (see [`crate::error`]).
    pub fn fault(&self) -> Fault {
        match self {
            socketio::msgpack::MsgpackError::TooDeep => Fault::Limit,
            _ => Fault::Peer,
        }
    }
}

impl socketio::DecodeError {
    /// Whose fault it is (see [`crate::error`]).
    pub fn fault(&self) -> Fault {
        match self {
            socketio::DecodeError::TooManyAttachments => Fault::Limit,
            socketio::DecodeError::Msgpack(e) => e.fault(),
            _ => Fault::Peer,
        }
    }
}

impl socketio::UsageError {
    /// Whose fault it is (see [`crate::error`]).
    pub fn fault(&self) -> Fault {
        match self {
            socketio::UsageError::Engine(e) => e.fault(),
            _ => Fault::Caller,
        }
    }
}

impl blocking::Error {
    /// Whose fault it is (see [`crate::error`]).
    pub fn fault(&self) -> Fault {
        match self {
            blocking::Error::Io(_) => Fault::Transport,
            blocking::Error::Usage(e) => e.fault(),
            blocking::Error::Url(_) => Fault::Caller,
            blocking::Error::Entropy(e) => e.fault(),
            blocking::Error::Closed(c) => c.error.as_ref().map_or(Fault::Peer, ws::Error::fault),
        }
    }
}

impl blocking::ClientError {
    /// Whose fault it is (see [`crate::error`]).
    pub fn fault(&self) -> Fault {
        use blocking::ClientError::*;
        match self {
            Url(_) | Closed => Fault::Caller,
            Usage(e) => e.fault(),
            Entropy(e) => e.fault(),
            Refused(_) => Fault::Peer,
            Tls(_) | ConnectFailed(_) | Timeout | AckTimeout | AckLost | Io(_) => Fault::Transport,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_errors_take_the_fault_of_what_they_wrap() {
        let limit = http::HttpError::HeadTooLarge(9000);
        let e: Error = ws::HandshakeError::Http(limit.clone()).into();
        assert_eq!(e.fault(), Fault::Limit);
        let e: Error = engineio::ClientError::BadResponse(limit).into();
        assert_eq!(e.fault(), Fault::Limit);
        let e: Error = engineio::ClientError::ConnectionClosed.into();
        assert_eq!(e.fault(), Fault::Transport);
        let e: Error = engineio::ClientError::HttpStatus(400).into();
        assert_eq!(e.fault(), Fault::Peer);
        let e: Error =
            socketio::DecodeError::Msgpack(socketio::msgpack::MsgpackError::TooDeep).into();
        assert_eq!(e.fault(), Fault::Limit);
        let e: Error = socketio::UsageError::Engine(engineio::UsageError::BufferFull).into();
        assert_eq!(e.fault(), Fault::Caller);
        let e: Error = ws::Error::CloseTimeout.into();
        assert_eq!(e.fault(), Fault::Transport);
        let e: Error = std::io::Error::from(std::io::ErrorKind::ConnectionReset).into();
        assert_eq!(e.fault(), Fault::Transport);
    }

    #[test]
    fn question_mark_lifts_every_layer() {
        fn handshake() -> Result<(), Error> {
            Err(ws::HandshakeError::BadKey)?
        }
        fn usage() -> Result<(), Error> {
            Err(socketio::ClientUsageError::NotConnected)?
        }
        assert_eq!(handshake().unwrap_err().fault(), Fault::Peer);
        assert_eq!(usage().unwrap_err().fault(), Fault::Caller);
    }
}
