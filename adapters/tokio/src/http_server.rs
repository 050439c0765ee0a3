//! An HTTP/1.1 server for a tower service (an axum `Router` carrying the
//! [`SocketIoLayer`](crate::SocketIoLayer), say) with the limits a public
//! server needs and `axum::serve` does not set: a request head must arrive
//! within [`HEAD_TIMEOUT`] (hyper's timer is off unless given one, so a
//! head sent a byte a second would hold its connection for ever), and
//! accept errors (out of descriptors or memory) are logged once per burst
//! and backed off instead of spun on.

use std::{convert::Infallible, error::Error as StdError, io, time::Duration};

use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};

/// How long a client may take to send a request head: the core's
/// `engineio::Config::head_timeout` default, as hyper's.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Serves `service` on `listener`, one task per connection (upgrades
/// included), until the task is dropped.
pub async fn serve_http<S, B>(listener: tokio::net::TcpListener, service: S) -> io::Result<()>
where
    S: tower_service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let mut backoff = BACKOFF_MIN;
    let mut failed = 0u64;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                if failed > 0 {
                    log::warn!("wsio: accepting again after {failed} failed accepts");
                    failed = 0;
                }
                backoff = BACKOFF_MIN;
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(service.clone());
                tokio::spawn(async move {
                    let mut http = hyper::server::conn::http1::Builder::new();
                    http.timer(TokioTimer::new())
                        .header_read_timeout(HEAD_TIMEOUT);
                    let _ = http
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
            Err(e) => {
                if failed == 0 {
                    log::warn!("wsio: accept failed ({e}); backing off and retrying");
                }
                failed += 1;
                if !matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}
