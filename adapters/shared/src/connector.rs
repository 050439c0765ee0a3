//! The clients' connector, written once for every runtime.
//!
//! A runtime crate says how to open a TCP connection, wrap it (plain or in
//! TLS) as a [`Stream`], make a timer and spawn the Socket.IO client's
//! driver ([`ClientRuntime`]); [`RuntimeConnector`] does the rest: which
//! URLs need TLS, the server name checked, the default roots, and the
//! errors when TLS is missing. `wsio_tokio::TokioConnector` and
//! `wsio_smol::SmolConnector` are this connector on their runtimes.

use std::{future::Future, io, marker::PhantomData, sync::Arc};

use wsio::{
    socketio::ClientEvent,
    ws::{ClientRequest, Config},
};

use crate::{
    Client, ClientDriver, ClientError, ClientOptions, Events, WebSocket, WsError,
    runtime::{Connecting, Connector, Sleep, Stream},
};

/// What a runtime gives the clients: TCP connections (and TLS around them,
/// feature `tls`), timers, and a task for the Socket.IO client's driver.
pub trait ClientRuntime: Send + Sync + 'static {
    /// The crate that implements it, for error messages (`"wsio-tokio"`).
    const CRATE: &'static str;
    /// The connector's name as `Debug` shows it (`"TokioConnector"`).
    const CONNECTOR: &'static str;
    /// Whether the runtime crate was built with TLS (it implements
    /// [`tls`](Self::tls)).
    const TLS: bool;
    /// A TCP connection of the runtime.
    type Tcp: Send + 'static;
    /// Opens a TCP connection to `host:port`, Nagle's algorithm off.
    fn tcp(host: String, port: u16) -> impl Future<Output = io::Result<Self::Tcp>> + Send;
    /// A TCP connection as a [`Stream`], as it is.
    fn plain(tcp: Self::Tcp) -> Box<dyn Stream>;
    /// TLS over `tcp` with `config`, the server's certificate checked for
    /// `name`. Without an implementation, secure URLs fail.
    #[cfg(feature = "tls")]
    fn tls(
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
        tcp: Self::Tcp,
    ) -> impl Future<Output = io::Result<Box<dyn Stream>>> + Send {
        drop((config, name, tcp));
        std::future::ready(Err(no_tls(Self::CRATE)))
    }
    /// A timer, not armed until reset.
    fn sleep() -> Box<dyn Sleep>;
    /// Runs the Socket.IO client's driver as a task of its own.
    fn spawn(driver: ClientDriver);
}

fn no_tls(krate: &str) -> io::Error {
    io::Error::other(format!("https:// and wss:// need {krate}'s `tls` feature"))
}

/// rustls with the ring provider, trusting Mozilla's roots (webpki-roots).
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

/// Opens the clients' connections on the runtime `R`: TCP, with TLS around
/// it for `https://` and `wss://` (feature `tls` of the runtime's crate; by
/// default trusting Mozilla's roots, or the configuration given to
/// `with_tls`). [`Default`] has no TLS configuration; [`new`](Self::new)
/// has the default one.
pub struct RuntimeConnector<R> {
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ClientConfig>>,
    runtime: PhantomData<fn() -> R>,
}

impl<R> Clone for RuntimeConnector<R> {
    fn clone(&self) -> Self {
        RuntimeConnector {
            #[cfg(feature = "tls")]
            tls: self.tls.clone(),
            runtime: PhantomData,
        }
    }
}

impl<R> Default for RuntimeConnector<R> {
    fn default() -> Self {
        RuntimeConnector {
            #[cfg(feature = "tls")]
            tls: None,
            runtime: PhantomData,
        }
    }
}

impl<R: ClientRuntime> std::fmt::Debug for RuntimeConnector<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(R::CONNECTOR).finish_non_exhaustive()
    }
}

impl<R: ClientRuntime> RuntimeConnector<R> {
    /// A connector; when the runtime has TLS, secure URLs trust the
    /// webpki roots.
    pub fn new() -> Self {
        RuntimeConnector {
            #[cfg(feature = "tls")]
            tls: if R::TLS { default_tls_config() } else { None },
            runtime: PhantomData,
        }
    }

    /// A connector whose secure connections use `config`.
    #[cfg(feature = "tls")]
    pub fn with_tls(config: Arc<rustls::ClientConfig>) -> Self {
        RuntimeConnector {
            tls: Some(config),
            runtime: PhantomData,
        }
    }

    /// Connects a Socket.IO client through this connector (see
    /// [`crate::client::connect`]), its driver spawned on the runtime.
    pub async fn connect_socketio(
        self,
        url: &str,
        options: ClientOptions,
    ) -> Result<(Client, Events<ClientEvent>), ClientError> {
        crate::client::connect(Arc::new(self), R::spawn, url, options).await
    }

    /// Opens a WebSocket through this connector (see
    /// [`WebSocket::connect`]).
    pub async fn connect_websocket(
        &self,
        url: &str,
        config: Config,
        customize: impl FnOnce(ClientRequest) -> ClientRequest,
    ) -> Result<WebSocket, WsError> {
        WebSocket::connect(self, url, config, customize).await
    }
}

impl<R: ClientRuntime> Connector for RuntimeConnector<R> {
    fn connect(&self, host: &str, port: u16, secure: bool) -> Connecting {
        #[cfg(feature = "tls")]
        let tls = self.tls.clone();
        let host = host.to_owned();
        Box::pin(async move {
            if !secure {
                return Ok(R::plain(R::tcp(host, port).await?));
            }
            if !R::TLS {
                return Err(no_tls(R::CRATE));
            }
            #[cfg(feature = "tls")]
            {
                let config = tls.ok_or_else(|| io::Error::other("no TLS configuration"))?;
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let tcp = R::tcp(host, port).await?;
                R::tls(config, name, tcp).await
            }
            #[cfg(not(feature = "tls"))]
            Err(no_tls(R::CRATE))
        })
    }

    fn sleep(&self) -> Box<dyn Sleep> {
        R::sleep()
    }
}
