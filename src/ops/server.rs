//! The server: accepts connections (HTTP/1.1 and h2c, or TLS with ALPN), bounds them (the
//! connection limit, header timeouts, the idle timeout) and hands each request to
//! [`Proxy::handle`]. Nothing here knows S3. [`run`] stops on the shutdown future and lets
//! in-flight requests finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;

use crate::config::Limits;
use crate::net::limits::ActivityIo;
use crate::proxy::Proxy;
use crate::s3::body::BoxError;

/// Accepts connections on `listener` until `shutdown` completes, then waits (up to the
/// configured deadline) for in-flight requests to finish. With `tls`, connections are TLS
/// (HTTP/2 or HTTP/1.1 by ALPN); without, HTTP/1.1 and h2c.
pub async fn run(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = proxy.state().limits().clone();
    let proxy_protocol = proxy.state().tenants.config.server.front.proxy_protocol;
    let builder = Arc::new(http_builder(&limits));
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = accept(&listener) => match accepted {
                Some(connection) => connection,
                None => continue,
            },
            () = &mut shutdown => break,
        };
        let connection = Connection {
            proxy: proxy.clone(),
            builder: builder.clone(),
            tls: tls.clone(),
            limits: limits.clone(),
            proxy_protocol,
            peer,
        };
        tokio::spawn(connection.serve(stream, graceful.watcher(), permit));
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_deadline) => {
            tracing::warn!("in-flight requests still running at the shutdown deadline");
        }
    }
    Ok(())
}

/// The header count hyper's HTTP/1 parser allows when not told otherwise.
const HYPER_MAX_HEADERS: usize = 100;

/// HTTP/1.1 and HTTP/2 with the configured header limits and timeouts.
fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // The read buffer holds the request head and then body chunks: sized for the body, with
        // `max_header_bytes` checked on the parsed head (`admit`).
        .max_buf_size(limits.body_buffer_bytes.max(limits.max_header_bytes));
    // At hyper's own default hyper parses into a fixed array on the stack, rather than a
    // vector it fills for each request head; over either, the answer is the same 431.
    if limits.max_headers != HYPER_MAX_HEADERS {
        builder.http1().max_headers(limits.max_headers);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256);
    builder
}

/// The next connection; `None` after a failed accept (out of file descriptors and the like),
/// having backed off instead of spinning.
async fn accept(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok(connection) => Some(connection),
        Err(error) => {
            tracing::warn!(%error, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// One accepted connection and what serving it needs.
struct Connection {
    proxy: Arc<Proxy>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    /// Every connection starts with a PROXY protocol header naming the client.
    proxy_protocol: bool,
    /// The socket's peer; the client a PROXY header names, once it is read.
    peer: SocketAddr,
}

impl Connection {
    /// Serves the connection until it ends or idles out, holding its slot of the limit.
    async fn serve(
        mut self,
        mut stream: TcpStream,
        watcher: Watcher,
        _permit: OwnedSemaphorePermit,
    ) {
        let _ = stream.set_nodelay(true);
        if self.proxy_protocol && !self.read_proxy_header(&mut stream).await {
            return;
        }
        let metrics = self.proxy.metrics.clone();
        metrics.open_connections.fetch_add(1, Ordering::Relaxed);
        metrics.connections_total.fetch_add(1, Ordering::Relaxed);
        let window = crate::net::limits::ReadWindow::unlimited();
        let reset = crate::net::limits::reset_by_client(&stream);
        let (stream, last_activity) = crate::net::limits::ActivityIo::new(stream, window.clone());
        let idle = crate::net::limits::idle(last_activity, self.limits.idle_timeout);
        let peer = self.peer;
        tokio::select! {
            result = self.serve_http(stream, window, watcher) => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
            }
            () = idle => tracing::debug!(%peer, "idle connection closed"),
            () = reset => tracing::debug!(%peer, "the client reset the connection"),
        }
        metrics.open_connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// With the PROXY protocol on: a trusted balancer's header names the client (a connection
    /// of its own without one is refused); any other peer that sends one is refused, since it
    /// could claim any address, and otherwise is served as itself. `false`: close it.
    async fn read_proxy_header(&mut self, stream: &mut TcpStream) -> bool {
        let deadline = self.limits.header_read_timeout;
        let front = &self.proxy.state().tenants.config.server.front;
        if !crate::net::peer::trusts(front, self.peer.ip()) {
            let sent = tokio::time::timeout(
                deadline,
                crate::net::proxy_protocol::starts_with_header(stream),
            );
            return match sent.await {
                Ok(Ok(false)) => true,
                Ok(Ok(true)) => {
                    tracing::warn!(peer = %self.peer, "a PROXY header from an untrusted peer: connection refused");
                    false
                }
                Ok(Err(_)) | Err(_) => false,
            };
        }
        let header = crate::net::proxy_protocol::read_header(stream);
        match tokio::time::timeout(deadline, header).await {
            Ok(Ok(source)) => {
                self.peer = source.unwrap_or(self.peer);
                true
            }
            Ok(Err(error)) => {
                tracing::debug!(peer = %self.peer, %error, "connection refused");
                false
            }
            Err(_) => {
                tracing::debug!(peer = %self.peer, "no PROXY header in time: connection refused");
                false
            }
        }
    }

    /// HTTP over the plain stream, or over TLS once the handshake is done in time.
    /// An HTTP/1 request with a body learns the connection's read window, which an upload
    /// sets while its store lags ([`crate::net::budget`]); HTTP/2 has its own flow control.
    async fn serve_http(
        self,
        stream: ActivityIo<TcpStream>,
        window: Arc<crate::net::limits::ReadWindow>,
        watcher: Watcher,
    ) -> Result<(), BoxError> {
        let proxy = self.proxy.clone();
        let peer = self.peer;
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            use http_body::Body as _;
            if request.version() <= http::Version::HTTP_11 && !request.body().is_end_stream() {
                request.extensions_mut().insert(window.clone());
            }
            let proxy = proxy.clone();
            async move { Ok::<_, std::convert::Infallible>(proxy.handle(request, Some(peer)).await) }
        });
        let Some(acceptor) = self.tls else {
            let connection = self
                .builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service);
            return watcher.watch(connection.into_owned()).await;
        };
        let handshake =
            tokio::time::timeout(self.limits.header_read_timeout, acceptor.accept(stream));
        let stream = match handshake.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(error.into()),
            Err(_) => return Err("TLS handshake timed out".into()),
        };
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service);
        watcher.watch(connection.into_owned()).await
    }
}
