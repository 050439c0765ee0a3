//! Embedding in hyper 1.x and axum 0.8: a tower layer that gives the
//! machine's path (`/socket.io/`: polling requests and WebSocket upgrades)
//! to the machine and every other request to the app.
//!
//! The conversions between `http` types and wsio's heads live here; the
//! machine answers a request as it would on a raw connection, and an
//! upgraded stream (`hyper::upgrade`) is handed to the same loop as a TCP
//! connection would be.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Either, Full, Limited};
use hyper_util::rt::TokioIo;
use wsio::http::{Method, RequestHead, ResponseHead};
use wsio_adapter::{Embed, Handle, IntoMachine, Options, Server, machine::under};

use crate::{TokioSleep, TokioStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A server with no listener of its own, and the layer that feeds it from
/// an app. Spawn the server (`tokio::spawn(server)`), add the layer to the
/// app (`Router::layer`, or `ServiceBuilder` for plain hyper).
///
/// ```no_run
/// use axum::{Router, routing::get};
///
/// # async fn demo() -> std::io::Result<()> {
/// let (layer, server) = wsio_tokio::embed(wsio::socketio::Config::default())?;
/// let server = server.on_event(|io, ev, _now| { /* the application */ });
/// tokio::spawn(server);
/// let app = Router::new().route("/", get(|| async { "hello" })).layer(layer);
/// let listener = wsio_tokio::listen("127.0.0.1:3000").await?;
/// // `axum::serve` works too; this one also times out slow request heads.
/// wsio_tokio::serve_http(listener, app).await
/// # }
/// ```
pub fn embed<I>(machine: I) -> io::Result<Embedded<I::Machine>>
where
    I: IntoMachine,
    I::Machine: Embed,
{
    let machine = machine.into_machine()?;
    let paths: Arc<[String]> = machine.paths().into();
    let server = Server::with_options(
        machine,
        None,
        Box::new(TokioSleep::new()),
        Options::default(),
    );
    let layer = SocketIoLayer {
        handle: server.handle(),
        paths,
        max_body: 2 << 20,
    };
    Ok((layer, server))
}

/// What [`embed`] gives: the layer, and the server to spawn.
pub type Embedded<M> = (SocketIoLayer<M>, Server<M>);

/// The tower layer of [`embed`].
pub struct SocketIoLayer<M> {
    handle: Handle<M>,
    paths: Arc<[String]>,
    max_body: usize,
}

impl<M> Clone for SocketIoLayer<M> {
    fn clone(&self) -> Self {
        SocketIoLayer {
            handle: self.handle.clone(),
            paths: self.paths.clone(),
            max_body: self.max_body,
        }
    }
}

impl<M> std::fmt::Debug for SocketIoLayer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketIoLayer")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl<M> SocketIoLayer<M> {
    /// The largest request body read for the machine (the machine applies
    /// its own, smaller `max_payload` within it). Default 2 MiB.
    pub fn max_body(mut self, n: usize) -> Self {
        self.max_body = n;
        self
    }
}

impl<M, S> tower_layer::Layer<S> for SocketIoLayer<M> {
    type Service = SocketIoService<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        SocketIoService {
            inner,
            handle: self.handle.clone(),
            paths: self.paths.clone(),
            max_body: self.max_body,
        }
    }
}

/// The service of [`SocketIoLayer`].
pub struct SocketIoService<S, M> {
    inner: S,
    handle: Handle<M>,
    paths: Arc<[String]>,
    max_body: usize,
}

impl<S: Clone, M> Clone for SocketIoService<S, M> {
    fn clone(&self) -> Self {
        SocketIoService {
            inner: self.inner.clone(),
            handle: self.handle.clone(),
            paths: self.paths.clone(),
            max_body: self.max_body,
        }
    }
}

impl<S, M> std::fmt::Debug for SocketIoService<S, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketIoService")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl<S, M, B, ResB> tower_service::Service<Request<B>> for SocketIoService<S, M>
where
    S: tower_service::Service<Request<B>, Response = Response<ResB>>,
    S::Future: Send + 'static,
    M: Embed,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<Either<Full<Bytes>, ResB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let path = req.uri().path();
        if !self.paths.iter().any(|p| under(p, path)) {
            let fut = self.inner.call(req);
            return Box::pin(async move { fut.await.map(|r| r.map(Either::Right)) });
        }
        let (handle, max_body) = (self.handle.clone(), self.max_body);
        Box::pin(async move { Ok(answer(handle, req, max_body).await.map(Either::Left)) })
    }
}

/// The machine's answer to one request.
async fn answer<M: Embed, B>(
    handle: Handle<M>,
    req: Request<B>,
    max_body: usize,
) -> Response<Full<Bytes>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = req.into_parts();
    let head = request_head(&parts);
    let upgrade = head.headers.has_token("upgrade", "websocket");
    if upgrade {
        let on_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
        let verdict = handle
            .upgrade(move |m, now| m.handle_upgrade(now, head, None))
            .await;
        return match verdict {
            Ok(Ok((conn, res))) => {
                let Some(on_upgrade) = on_upgrade else {
                    let _ = handle.gone(conn).await;
                    return status(StatusCode::INTERNAL_SERVER_ERROR);
                };
                tokio::spawn(async move {
                    match on_upgrade.await {
                        Ok(up) => {
                            let stream = TokioStream(TokioIo::new(up));
                            let _ = handle.attach(conn, Box::new(stream)).await;
                        }
                        Err(_) => {
                            let _ = handle.gone(conn).await;
                        }
                    }
                });
                response(res, Bytes::new())
            }
            Ok(Err((res, body))) => response(res, body),
            Err(_) => status(StatusCode::SERVICE_UNAVAILABLE),
        };
    }
    let body = match Limited::new(body, max_body).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return status(StatusCode::PAYLOAD_TOO_LARGE),
    };
    match handle
        .request(move |m, now| m.handle_request(now, head, body, None))
        .await
    {
        Ok((res, body)) => response(res, body),
        Err(_) => status(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// wsio's head of an `http` request.
fn request_head(parts: &http::request::Parts) -> RequestHead {
    let method = match parts.method {
        http::Method::GET => Method::Get,
        http::Method::HEAD => Method::Head,
        http::Method::POST => Method::Post,
        http::Method::PUT => Method::Put,
        http::Method::DELETE => Method::Delete,
        http::Method::OPTIONS => Method::Options,
        http::Method::PATCH => Method::Patch,
        ref other => Method::Other(other.as_str().to_owned()),
    };
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut head = RequestHead::new(method, target);
    for (name, value) in &parts.headers {
        head.headers.push(name.as_str(), value.as_bytes());
    }
    head
}

/// An `http` response from wsio's head. Framing is the embedding server's:
/// the machine's `Content-Length`, `Transfer-Encoding` and (but for an
/// upgrade) `Connection` are left to it.
fn response(head: ResponseHead, body: Bytes) -> Response<Full<Bytes>> {
    let upgrade = head.status == 101;
    let mut res = Response::new(Full::new(body));
    *res.status_mut() =
        StatusCode::from_u16(head.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = res.headers_mut();
    for (name, value) in head.headers.iter() {
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            continue;
        };
        if name == http::header::CONTENT_LENGTH
            || name == http::header::TRANSFER_ENCODING
            || (name == http::header::CONNECTION && !upgrade)
        {
            continue;
        }
        headers.append(name, value);
    }
    res
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = code;
    res
}
