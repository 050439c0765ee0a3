//! The blocking client's connections: plain TCP, or TLS around it (with
//! the `tls` feature).

use std::{
    io::{self, Write},
    net::{Shutdown, TcpStream},
};

#[cfg(feature = "tls")]
use std::sync::Arc;

use super::{ClientError, ClientOptions};
use crate::http::Url;

/// How connections are made secure.
#[derive(Clone)]
pub(super) enum WireConfig {
    Plain,
    #[cfg(feature = "tls")]
    Tls(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    ),
}

impl WireConfig {
    pub(super) fn new(u: &Url, options: &ClientOptions) -> Result<WireConfig, ClientError> {
        if !u.secure {
            let _ = options;
            return Ok(WireConfig::Plain);
        }
        #[cfg(feature = "tls")]
        {
            let config = match &options.tls {
                Some(c) => c.clone(),
                None => default_tls_config()?,
            };
            let name = rustls::pki_types::ServerName::try_from(u.host.clone())
                .map_err(|e| ClientError::Tls(e.to_string()))?;
            Ok(WireConfig::Tls(config, name))
        }
        #[cfg(not(feature = "tls"))]
        Err(ClientError::Url(format!(
            "{}:{} is secure: build wsio with the `tls` feature",
            u.host, u.port
        )))
    }
}

/// rustls with the ring provider and the webpki roots.
#[cfg(feature = "tls")]
pub fn default_tls_config() -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ClientError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

pub(super) enum Wire {
    Plain,
    #[cfg(feature = "tls")]
    Tls(Box<rustls::ClientConnection>),
}

impl Wire {
    pub(super) fn new(config: &WireConfig) -> io::Result<Wire> {
        match config {
            WireConfig::Plain => Ok(Wire::Plain),
            #[cfg(feature = "tls")]
            WireConfig::Tls(c, name) => {
                let mut conn = rustls::ClientConnection::new(c.clone(), name.clone())
                    .map_err(io::Error::other)?;
                // What the machine hands over is already bounded by its own
                // limits; a full rustls buffer would refuse writes made
                // before the handshake completes.
                conn.set_buffer_limit(None);
                Ok(Wire::Tls(Box::new(conn)))
            }
        }
    }

    /// Writes application bytes (encrypted if need be).
    pub(super) fn write(&mut self, stream: &mut TcpStream, data: &[u8]) -> io::Result<()> {
        match self {
            Wire::Plain => stream.write_all(data),
            #[cfg(feature = "tls")]
            Wire::Tls(c) => {
                c.writer().write_all(data)?;
                Self::flush_tls(c, stream)
            }
        }
    }

    #[cfg(feature = "tls")]
    fn flush_tls(c: &mut rustls::ClientConnection, stream: &mut TcpStream) -> io::Result<()> {
        while c.wants_write() {
            c.write_tls(stream)?;
        }
        Ok(())
    }

    /// Turns bytes read into application bytes (and answers the TLS
    /// handshake on `stream`).
    pub(super) fn read(
        &mut self,
        stream: Option<&mut TcpStream>,
        data: Vec<u8>,
    ) -> io::Result<Vec<u8>> {
        match self {
            Wire::Plain => {
                let _ = stream;
                Ok(data)
            }
            #[cfg(feature = "tls")]
            Wire::Tls(c) => {
                use std::io::Read as _;
                let mut input = &data[..];
                let mut out = Vec::new();
                while !input.is_empty() {
                    c.read_tls(&mut input)?;
                    c.process_new_packets().map_err(io::Error::other)?;
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        match c.reader().read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => out.extend_from_slice(&buf[..n]),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e),
                        }
                    }
                }
                if let Some(s) = stream {
                    Self::flush_tls(c, s)?;
                }
                Ok(out)
            }
        }
    }

    pub(super) fn close(&mut self, stream: &mut TcpStream) {
        #[cfg(feature = "tls")]
        if let Wire::Tls(c) = self {
            c.send_close_notify();
            let _ = Self::flush_tls(c, stream);
        }
        let _ = stream.flush();
        let _ = stream.shutdown(Shutdown::Both);
    }
}
