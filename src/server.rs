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
use tokio::net::TcpListener;

use crate::config::Config;
use crate::proxy::Proxy;

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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let proxy_for_service = proxy.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let proxy = proxy_for_service.clone();
            async move { Ok::<_, std::convert::Infallible>(proxy.handle(request, Some(peer)).await) }
        });
        let (stream, last_activity) = crate::limits::ActivityIo::new(stream);
        let metrics = proxy.metrics.clone();
        metrics.open_connections.fetch_add(1, Ordering::Relaxed);
        metrics.connections_total.fetch_add(1, Ordering::Relaxed);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let idle = crate::limits::idle(last_activity, limits.idle_timeout);
            let serve = async {
                match tls {
                    None => {
                        let connection =
                            builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        watcher.watch(connection.into_owned()).await
                    }
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout(
                            limits.header_read_timeout,
                            acceptor.accept(stream),
                        );
                        let stream = match handshake.await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(error)) => return Err(error.into()),
                            Err(_) => return Err("TLS handshake timed out".into()),
                        };
                        let connection =
                            builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        watcher.watch(connection.into_owned()).await
                    }
                }
            };
            tokio::select! {
                result = serve => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                }
                () = idle => tracing::debug!(%peer, "idle connection closed"),
            }
            metrics.open_connections.fetch_sub(1, Ordering::Relaxed);
        });
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

/// Binds the configured address and serves until `shutdown`; returns the bound address through
/// `on_bound` first (tests bind port 0).
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()>,
    on_bound: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let listen = config.server.listen;
    let proxy = Arc::new(Proxy::new(config)?);
    let listener = TcpListener::bind(listen).await?;
    on_bound(listener.local_addr()?);
    run(listener, proxy, None, shutdown).await
}
