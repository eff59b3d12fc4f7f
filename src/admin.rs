//! The admin listener, on its own address: `/healthz` (the process answers), `/readyz` (the
//! config is loaded and every integration's credentials can be obtained, the failing ones
//! named; `/readyz?partial` reports them without failing) and `/metrics` (Prometheus text
//! format).

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::body::{self, ProxyBody};
use crate::metrics::{counter, family, gauge, label};
use crate::proxy::Proxy;

/// `/readyz` waits this long for any one integration's credentials.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the admin endpoints until `shutdown`.
pub async fn run(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::warn!(%error, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let proxy = proxy.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let proxy = proxy.clone();
            async move { Ok::<_, std::convert::Infallible>(handle(&proxy, &request).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

async fn handle(proxy: &Proxy, request: &Request<Incoming>) -> Response<ProxyBody> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".to_string());
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".to_string()),
        "/readyz" => {
            let partial = request
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "partial"));
            readiness(proxy, partial).await
        }
        "/metrics" => {
            let mut response = text(StatusCode::OK, metrics(proxy));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /healthz, /readyz, /metrics\n".to_string(),
        ),
    }
}

fn text(status: StatusCode, content: String) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(Bytes::from(content)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Asks for every integration's credentials at once (cached ones answer at once). With
/// `partial`, failing integrations are reported but do not make the proxy unready: one
/// customer's broken role should not take a shared fleet out of its load balancer.
async fn readiness(proxy: &Proxy, partial: bool) -> Response<ProxyBody> {
    let state = proxy.state();
    let mut checks = tokio::task::JoinSet::new();
    for integration in &state.config.integrations {
        let credentials = state.credentials.clone();
        let integration = integration.clone();
        checks.spawn(async move {
            let outcome =
                tokio::time::timeout(READY_TIMEOUT, credentials.credentials(&integration)).await;
            let problem = match outcome {
                Ok(Ok(_)) => None,
                Ok(Err(error)) => Some(error.to_string()),
                Err(_) => Some("credentials not obtained within 10s".to_string()),
            };
            (integration.name.clone(), problem)
        });
    }
    let mut failing = Vec::new();
    while let Some(joined) = checks.join_next().await {
        match joined {
            Ok((_, None)) => {}
            Ok((name, Some(problem))) => failing.push(format!("{name}: {problem}")),
            Err(_) => failing.push("a readiness check panicked".to_string()),
        }
    }
    failing.sort();
    let total = state.config.integrations.len();
    if failing.is_empty() {
        text(
            StatusCode::OK,
            format!("ready: {total} integration(s) have credentials\n"),
        )
    } else {
        let mut report = format!(
            "not ready: {} of {total} integration(s) cannot get credentials\n",
            failing.len()
        );
        for line in failing {
            let _ = writeln!(report, "  {line}");
        }
        let status = if partial {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        text(status, report)
    }
}

fn metrics(proxy: &Proxy) -> String {
    let state = proxy.state();
    let mut out = String::new();
    proxy.metrics.render(&mut out);
    let stats = &state.credentials.stats;
    counter(
        &mut out,
        "s3sp_sts_calls_total",
        "Credential fetches (STS AssumeRole or the default chain).",
        stats.calls.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "s3sp_sts_failures_total",
        "Credential fetches that failed.",
        stats.failures.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "s3sp_credential_cache_hits_total",
        "Requests whose credentials came from the cache.",
        stats.cache_hits.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "s3sp_credential_invalidations_total",
        "Cached credentials dropped because the store refused them.",
        stats.invalidations.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "s3sp_credential_invalidations_debounced_total",
        "Store refusals that did not drop credentials: the identity's were dropped within the debounce period.",
        stats.invalidations_debounced.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "s3sp_integrations",
        "Integrations in the configuration now in force.",
        state.config.integrations.len() as i64,
    );
    counter(
        &mut out,
        "s3sp_config_reloads_total",
        "Configurations loaded after the first.",
        proxy.reloads.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "s3sp_config_reload_failures_total",
        "Reloads refused because the new configuration was invalid.",
        proxy.reload_failures.load(Ordering::Relaxed),
    );
    family(
        &mut out,
        "s3sp_credentials_expiry_seconds",
        "gauge",
        "Seconds until the integration's cached credentials expire (absent: static or not yet fetched).",
    );
    let now = SystemTime::now();
    for integration in &state.config.integrations {
        if let Some(expiry) = state.credentials.expiry(integration) {
            let seconds = match expiry.duration_since(now) {
                Ok(left) => left.as_secs() as i64,
                Err(past) => -(past.duration().as_secs() as i64),
            };
            let _ = writeln!(
                out,
                "s3sp_credentials_expiry_seconds{{integration=\"{}\"}} {seconds}",
                label(&integration.name)
            );
        }
    }
    out
}
