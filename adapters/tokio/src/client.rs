//! The clients on tokio: [`connect`] (Socket.IO) and [`connect_websocket`],
//! over [`TokioConnector`] (TCP, and TLS with rustls under the `tls`
//! feature): `wsio_adapter`'s connector on tokio's sockets.

use std::io;
#[cfg(feature = "tls")]
use std::sync::Arc;

#[cfg(feature = "tls")]
use tokio_rustls::{TlsConnector, rustls};
use wsio::{
    socketio::ClientEvent,
    ws::{ClientRequest, Config},
};
use wsio_adapter::{
    Client, ClientDriver, ClientError, ClientOptions, ClientRuntime, Events, RuntimeConnector,
    WebSocket, WsError,
    runtime::{Sleep, Stream},
};

use crate::{TokioSleep, TokioStream};

/// Opens the clients' connections on tokio: TCP, with TLS around it for
/// `https://` and `wss://` (feature `tls`; by default trusting Mozilla's
/// roots, or the configuration given to `with_tls`).
pub type TokioConnector = RuntimeConnector<TokioRuntime>;

/// tokio as the clients' runtime: what [`TokioConnector`] opens
/// connections, times and spawns with.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioRuntime;

impl ClientRuntime for TokioRuntime {
    const CRATE: &'static str = "wsio-tokio";
    const CONNECTOR: &'static str = "TokioConnector";
    const TLS: bool = cfg!(feature = "tls");
    type Tcp = tokio::net::TcpStream;

    async fn tcp(host: String, port: u16) -> io::Result<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    fn plain(tcp: tokio::net::TcpStream) -> Box<dyn Stream> {
        Box::new(TokioStream(tcp))
    }

    #[cfg(feature = "tls")]
    async fn tls(
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
        tcp: tokio::net::TcpStream,
    ) -> io::Result<Box<dyn Stream>> {
        let stream = TlsConnector::from(config).connect(name, tcp).await?;
        Ok(Box::new(TokioStream(stream)))
    }

    fn sleep() -> Box<dyn Sleep> {
        Box::new(TokioSleep::new())
    }

    fn spawn(driver: ClientDriver) {
        tokio::spawn(driver);
    }
}

/// Connects a Socket.IO client (see [`wsio_adapter::client::connect`]);
/// its driver runs as a tokio task. Gives the handle on the URL's
/// namespace and the stream of events.
///
/// ```no_run
/// use std::time::Duration;
/// use wsio::socketio::{ClientEvent, Value};
/// use wsio_tokio::ClientOptions;
///
/// # async fn demo() -> Result<(), wsio_tokio::ClientError> {
/// let (io, mut events) = wsio_tokio::connect("http://127.0.0.1:3000", ClientOptions::new()).await?;
/// io.emit("chat", vec![Value::from("hello")]).await?;
/// let answer = io.emit_with_ack("ping", vec![], Duration::from_secs(5)).await?;
/// while let Some(event) = events.next().await {
///     if let ClientEvent::Event { name, args, .. } = event {
///         println!("{name} {args:?}");
///     }
/// }
/// io.close().await?;
/// # Ok(()) }
/// ```
pub async fn connect(
    url: &str,
    options: ClientOptions,
) -> Result<(Client, Events<ClientEvent>), ClientError> {
    connect_with(TokioConnector::new(), url, options).await
}

/// Like [`connect`], through a given connector (a TLS configuration of
/// the application's own).
pub async fn connect_with(
    connector: TokioConnector,
    url: &str,
    options: ClientOptions,
) -> Result<(Client, Events<ClientEvent>), ClientError> {
    connector.connect_socketio(url, options).await
}

/// Opens a WebSocket to a `ws://` or `wss://` URL with the default
/// config.
pub async fn connect_websocket(url: &str) -> Result<WebSocket, WsError> {
    connect_websocket_with(&TokioConnector::new(), url, Config::default(), |r| r).await
}

/// Opens a WebSocket through a given connector; `customize` may add
/// subprotocols or headers to the request.
pub async fn connect_websocket_with(
    connector: &TokioConnector,
    url: &str,
    config: Config,
    customize: impl FnOnce(ClientRequest) -> ClientRequest,
) -> Result<WebSocket, WsError> {
    connector.connect_websocket(url, config, customize).await
}
