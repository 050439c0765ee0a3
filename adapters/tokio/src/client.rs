//! The clients on tokio: [`connect`] (Socket.IO) and [`connect_websocket`],
//! over [`TokioConnector`] (TCP, and TLS with rustls under the `tls`
//! feature).

use std::{io, sync::Arc};

#[cfg(feature = "tls")]
use tokio_rustls::{TlsConnector, rustls};
use wsio::{
    socketio::ClientEvent,
    ws::{ClientRequest, Config},
};
use wsio_adapter::{
    Client, ClientError, ClientOptions, Events, WebSocket, WsError,
    runtime::{Connecting, Connector, Sleep, Stream},
};

use crate::{TokioSleep, TokioStream};

/// Opens the clients' connections on tokio: TCP, with TLS around it for
/// `https://` and `wss://` (feature `tls`; by default trusting Mozilla's
/// roots, or the configuration given to `with_tls`).
#[derive(Clone, Default)]
pub struct TokioConnector {
    #[cfg(feature = "tls")]
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for TokioConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokioConnector").finish_non_exhaustive()
    }
}

impl TokioConnector {
    /// A connector; with the `tls` feature, secure URLs trust the webpki
    /// roots.
    pub fn new() -> TokioConnector {
        TokioConnector {
            #[cfg(feature = "tls")]
            tls: default_tls_config().map(TlsConnector::from),
        }
    }

    /// A connector whose secure connections use `config`.
    #[cfg(feature = "tls")]
    pub fn with_tls(config: Arc<rustls::ClientConfig>) -> TokioConnector {
        TokioConnector {
            tls: Some(TlsConnector::from(config)),
        }
    }
}

/// rustls with the ring provider and the webpki roots.
#[cfg(feature = "tls")]
pub fn default_tls_config() -> Option<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Some(Arc::new(config))
}

impl Connector for TokioConnector {
    fn connect(&self, host: &str, port: u16, secure: bool) -> Connecting {
        let host = host.to_owned();
        #[cfg(feature = "tls")]
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            if !secure {
                return Ok(Box::new(TokioStream(tcp)) as Box<dyn Stream>);
            }
            #[cfg(feature = "tls")]
            {
                let tls = tls.ok_or_else(|| io::Error::other("no TLS configuration"))?;
                let name = rustls::pki_types::ServerName::try_from(host)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let stream = tls.connect(name, tcp).await?;
                Ok(Box::new(TokioStream(stream)) as Box<dyn Stream>)
            }
            #[cfg(not(feature = "tls"))]
            {
                drop(tcp);
                Err(io::Error::other(
                    "https:// and wss:// need wsio-tokio's `tls` feature",
                ))
            }
        })
    }

    fn sleep(&self) -> Box<dyn Sleep> {
        Box::new(TokioSleep::new())
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
    wsio_adapter::client::connect(
        Arc::new(connector),
        |driver| {
            tokio::spawn(driver);
        },
        url,
        options,
    )
    .await
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
    WebSocket::connect(connector, url, config, customize).await
}
