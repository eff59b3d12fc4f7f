//! The admin listener, on its own address: `/healthz` (the process answers), `/readyz` (the
//! config is loaded, the listeners are up and the proxy's own STS identity works),
//! `/integrations` (each integration's credentials as the cache knows them: valid, failing
//! with its error, or not used yet; never fetched here), `/integrations/{name}`,
//! `POST /integrations/check` (the integration page's Check connection; see
//! [`integrations`]), `/metrics` (Prometheus text format) and `POST /explain` (how a request
//! described in the body would be handled; see [`crate::tools::explain`]). None of these is
//! served on the public listener.
//!
//! Readiness never asks for integration credentials: with 10,000 integrations that would be
//! 10,000 AssumeRole calls per replica per probe, and one customer's broken role would take
//! a shared fleet out of its load balancer.

mod integrations;

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::config::{AdminAccess, CredentialSource};
use crate::observe::metrics::{counter, family, gauge, label};
use crate::ops::source::Shared;
use crate::proxy::Proxy;
use crate::s3::body::{self, ProxyBody};

/// `/readyz` waits this long for STS to confirm the proxy's own identity.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the admin endpoints until `shutdown`.
pub async fn run(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    catalog: Shared,
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
        let catalog = catalog.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let proxy = proxy.clone();
            let catalog = catalog.clone();
            async move { Ok::<_, std::convert::Infallible>(handle(&proxy, &catalog, request).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

async fn handle(
    proxy: &Proxy,
    catalog: &Shared,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let probe = matches!(request.uri().path(), "/healthz" | "/readyz");
    if !probe
        && let Err((status, reason)) = admit(&proxy.state().tenants.config.server.admin, &request)
    {
        tracing::warn!(
            status = status.as_u16(),
            method = %request.method(),
            path = request.uri().path(),
            reason,
            "admin request refused"
        );
        let mut refused = text(status, format!("{reason}\n"));
        if status == StatusCode::UNAUTHORIZED {
            refused.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        return refused;
    }
    match request.uri().path() {
        "/explain" => return explain(proxy, request).await,
        "/integrations/check" => return integrations::check(proxy, request).await,
        "/cache/purge" => return purge(proxy, request).await,
        _ => {}
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".to_string());
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".to_string()),
        // `?partial` (what earlier versions' deployments probe) is the same answer.
        "/readyz" => readiness(proxy).await,
        "/integrations" => text(StatusCode::OK, integrations::list(proxy)),
        path if path.starts_with("/integrations/") => {
            let name = path.strip_prefix("/integrations/").unwrap_or_default();
            integrations::show(proxy, catalog, name)
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
            "not found: /healthz, /readyz, /integrations, /integrations/{name}, /metrics, \
             POST /explain, POST /integrations/check\n"
                .to_string(),
        ),
    }
}

/// What every admin request but the probes (`/healthz`, `/readyz`, which reveal and change
/// nothing) must show, so that a web page an operator visits cannot drive the listener: the
/// operator's browser reaches it (localhost, `kubectl port-forward`), and `POST /explain`
/// with `send` acts as any issued client.
/// - `Host` names an IP literal, `localhost` or an `admin_hosts` name (421 otherwise): a page
///   that rebinds its own name to this address still sends its own name;
/// - no `Origin`, and `Sec-Fetch-Site` absent, `none` or `same-origin` (403): browsers send
///   these on every cross-site request, operators' tools and Prometheus never do;
/// - the bearer token, when one is configured (401);
/// - a `POST` body is `application/json` (415): the one type a page cannot send across sites
///   without a preflight, which this listener never answers.
fn admit(
    access: &AdminAccess,
    request: &Request<Incoming>,
) -> Result<(), (StatusCode, &'static str)> {
    let headers = request.headers();
    let host = request
        .uri()
        .authority()
        .map(|authority| authority.host().to_string())
        .or_else(|| {
            let value = headers.get(header::HOST)?.to_str().ok()?;
            let authority: http::uri::Authority = value.parse().ok()?;
            Some(authority.host().to_string())
        })
        .ok_or((StatusCode::BAD_REQUEST, "a Host header is required"))?;
    if !host_allowed(&host, &access.hosts) {
        return Err((
            StatusCode::MISDIRECTED_REQUEST,
            "this host name is not served here: use an IP address, localhost or a name in \
             [server] admin_hosts",
        ));
    }
    let cross_site = headers.contains_key(header::ORIGIN)
        || headers
            .get("sec-fetch-site")
            .is_some_and(|site| site != "none" && site != "same-origin");
    if cross_site {
        return Err((
            StatusCode::FORBIDDEN,
            "the admin listener does not serve web pages' requests",
        ));
    }
    if let Some(token) = &access.token {
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
            .unwrap_or_default();
        if !crate::s3::sigv4::constant_time_eq(sent, token.expose().as_bytes()) {
            return Err((
                StatusCode::UNAUTHORIZED,
                "this endpoint needs Authorization: Bearer <admin token>",
            ));
        }
    }
    if request.method() == Method::POST && !is_json(headers.get(header::CONTENT_TYPE)) {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST bodies are Content-Type: application/json",
        ));
    }
    Ok(())
}

/// An IP literal (`127.0.0.1`, `[::1]`), `localhost`, or one of the configured names.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let literal = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(&host);
    literal.parse::<std::net::IpAddr>().is_ok() || host == "localhost" || allowed.contains(&host)
}

/// Whether a `Content-Type` is `application/json` (parameters such as `charset` allowed).
fn is_json(value: Option<&http::HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// The most an `/explain` request document may hold.
const EXPLAIN_BODY_LIMIT: usize = 64 * 1024;

/// What `POST /explain` is sent: the request to explain, and how far to go.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainRequest {
    method: String,
    /// A path (`/acme/key`) or a URL, as the client sends it.
    url: String,
    /// `Name: value` lines.
    #[serde(default)]
    headers: Vec<String>,
    client: Option<String>,
    #[serde(default)]
    offline: bool,
    #[serde(default)]
    send: bool,
    /// The client's canonical request, to compare on SignatureDoesNotMatch.
    compare: Option<String>,
}

/// `POST /explain` (`?json` for JSON): `explain` for a request described in the body.
async fn explain(proxy: &Proxy, request: Request<Incoming>) -> Response<ProxyBody> {
    if request.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "POST only\n".to_string());
    }
    let json = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "json"));
    let body = match read_body(request, EXPLAIN_BODY_LIMIT).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let asked: ExplainRequest = match serde_json::from_slice(&body) {
        Ok(asked) => asked,
        Err(error) => return text(StatusCode::BAD_REQUEST, format!("the document: {error}\n")),
    };
    let listen = proxy.state().tenants.config.server.listen;
    let explained = async {
        let request =
            crate::tools::explain::request(&asked.method, &asked.url, &asked.headers, listen)?;
        let options = crate::tools::explain::Options {
            client: asked.client,
            offline: asked.offline,
            send: asked.send,
            compare: asked.compare,
        };
        crate::tools::explain::explain(proxy, request, &options).await
    };
    match explained.await {
        Ok(explanation) if json => {
            let mut response = text(
                StatusCode::OK,
                crate::tools::explain::render_json(&explanation),
            );
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(JSON));
            response
        }
        Ok(explanation) => text(StatusCode::OK, crate::tools::explain::render(&explanation)),
        Err(problem) => text(StatusCode::BAD_REQUEST, format!("{problem}\n")),
    }
}

/// A request's body, at most `limit` bytes (413 beyond).
async fn read_body(request: Request<Incoming>, limit: usize) -> Result<Bytes, Response<ProxyBody>> {
    let limited = http_body_util::Limited::new(request.into_body(), limit);
    match http_body_util::BodyExt::collect(limited).await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => Err(text(StatusCode::PAYLOAD_TOO_LARGE, format!("{error}\n"))),
    }
}

const JSON: &str = "application/json";

/// A JSON answer.
fn json(status: StatusCode, document: &serde_json::Value) -> Response<ProxyBody> {
    let mut response = text(status, format!("{document:#}\n"));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(JSON));
    response
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

/// Ready when the proxy's own identity works, if any integration needs it to call STS (an
/// all-static config, MinIO's say, is ready at once). The answer is cached by the credential
/// cache, so probes cost at most one STS call a minute.
async fn readiness(proxy: &Proxy) -> Response<ProxyBody> {
    if proxy.sources.loading.load(Ordering::Relaxed) > 0 {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the database source has not loaded yet\n".to_string(),
        );
    }
    let state = proxy.state();
    let total = state.tenants.integrations.len();
    let needs_sts = state
        .tenants
        .integrations
        .all()
        .any(|i| !matches!(i.credentials, CredentialSource::Static(_)));
    if !needs_sts {
        return text(
            StatusCode::OK,
            format!("ready: {total} integration(s), all with static keys\n"),
        );
    }
    let identity = tokio::time::timeout(READY_TIMEOUT, state.credentials.check_identity()).await;
    match identity {
        Ok(Ok(arn)) => text(
            StatusCode::OK,
            format!("ready: {total} integration(s); the proxy's identity is {arn}\n"),
        ),
        Ok(Err(reason)) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: STS does not accept the proxy's own identity: {reason}\n"),
        ),
        Err(_) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: STS did not confirm the proxy's identity within 10s\n".to_string(),
        ),
    }
}

fn metrics(proxy: &Proxy) -> String {
    let state = proxy.state();
    let mut out = String::new();
    proxy.metrics.render(&mut out);
    credential_metrics(&mut out, &state.credentials.stats);
    gauge(
        &mut out,
        "s3sp_integrations",
        "Integrations in the configuration now in force.",
        state.tenants.integrations.len() as i64,
    );
    gauge(
        &mut out,
        "s3sp_max_connections",
        "The client connections the proxy accepts at once (max_connections).",
        state.limits().max_connections as i64,
    );
    gauge(
        &mut out,
        "s3sp_wide_transfers",
        "Downloads whose store answers are read body_buffer_bytes at a time now (at most wide_transfers).",
        state.upstream.wide_in_use() as i64,
    );
    gauge(
        &mut out,
        "s3sp_buffered_body_bytes",
        "Body bytes held between reading and writing: uploads on their way to the stores, downloads on their way to the clients, form upload parts (at most max_buffered_body_bytes).",
        state.upstream.budget().in_use() as i64,
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
    source_metrics(&mut out, &proxy.sources);
    if let Some(lazy) = &state.tenants.lazy {
        on_demand_metrics(&mut out, lazy);
    }
    if let Some(cache) = &proxy.cache {
        cache_metrics(&mut out, cache);
    }
    expiry_metrics(&mut out, &state);
    out
}

/// The live sources' counters (`[source]`).
fn source_metrics(out: &mut String, sources: &crate::observe::metrics::SourceStats) {
    counter(
        out,
        "s3sp_source_parts_applied_total",
        "Files of the directory source and rows of the database source applied.",
        sources.applied.load(Ordering::Relaxed),
    );
    counter(
        out,
        "s3sp_source_parts_refused_total",
        "Files and rows refused (invalid, or a name another part defines); their previous version stays.",
        sources.refused.load(Ordering::Relaxed),
    );
    gauge(
        out,
        "s3sp_source_database_up",
        "Whether the database source's connection is up (1) or being retried (0).",
        sources.database_up.load(Ordering::Relaxed),
    );
    counter(
        out,
        "s3sp_source_database_failures_total",
        "Database connections that failed or were lost.",
        sources.database_failures.load(Ordering::Relaxed),
    );
}

/// The object cache's counts by integration, its weight and its evictions.
fn cache_metrics(out: &mut String, cache: &crate::response::cache::ObjectCache) {
    let (counts, weight, evictions) = cache.stats();
    type Pick = fn(&crate::response::cache::Counts) -> u64;
    let families: [(&str, &str, Pick); 5] = [
        (
            "s3sp_cache_hits_total",
            "Answers served from the object cache.",
            |c| c.hits,
        ),
        (
            "s3sp_cache_misses_total",
            "Cacheable GETs fetched from the store.",
            |c| c.misses,
        ),
        (
            "s3sp_cache_revalidations_total",
            "Stale entries the store confirmed unchanged (304).",
            |c| c.revalidations,
        ),
        (
            "s3sp_cache_served_bytes_total",
            "Body bytes served from the object cache: egress the store did not send.",
            |c| c.bytes_served,
        ),
        (
            "s3sp_cache_disk_reads_total",
            "Entries the disk tier gave back to memory ([server.cache] disk).",
            |c| c.disk_reads,
        ),
    ];
    for (name, help, pick) in families {
        family(out, name, "counter", &format!("{help} By integration."));
        for (integration, count) in &counts {
            let _ = writeln!(
                out,
                "{name}{{integration=\"{}\"}} {}",
                label(integration),
                pick(count)
            );
        }
    }
    gauge(
        out,
        "s3sp_cache_bytes",
        "What the object cache holds now, weighed in bytes (at most [server.cache] memory).",
        i64::try_from(weight).unwrap_or(i64::MAX),
    );
    counter(
        out,
        "s3sp_cache_evictions_total",
        "Entries the object cache evicted to stay within its memory.",
        evictions,
    );
}

/// What `POST /cache/purge` is sent.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Purge {
    integration: String,
    /// A key as clients name it (the integration's prefix is added); absent: all its entries.
    key: Option<String>,
}

/// `POST /cache/purge` with `{"integration": "acme", "key": "photos/cat.jpg"}` (the key is
/// optional): drops the entries, and says how many.
async fn purge(proxy: &Proxy, request: Request<Incoming>) -> Response<ProxyBody> {
    if request.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "POST only\n".to_string());
    }
    let Some(cache) = &proxy.cache else {
        return text(
            StatusCode::NOT_FOUND,
            "no object cache: [server.cache] memory is not set\n".to_string(),
        );
    };
    let body = match read_body(request, EXPLAIN_BODY_LIMIT).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let asked: Purge = match serde_json::from_slice(&body) {
        Ok(asked) => asked,
        Err(error) => return text(StatusCode::BAD_REQUEST, format!("the document: {error}\n")),
    };
    let state = proxy.state();
    let Some(integration) = state.tenants.integrations.integration(&asked.integration) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("no integration is named {}\n", asked.integration),
        );
    };
    let key = match &asked.key {
        None => None,
        Some(key) => match state.tenants.integrations.upstream_key(&integration, key) {
            Ok(upstream) => Some(upstream),
            Err(error) => return text(StatusCode::BAD_REQUEST, format!("{error}\n")),
        },
    };
    let purged = cache.purge(&integration.name, key.as_deref());
    json(StatusCode::OK, &serde_json::json!({ "purged": purged }))
}

/// With `[source] preload = false`: the database's answers by key, and what is held.
fn on_demand_metrics(out: &mut String, lazy: &crate::request::lazy::Lazy) {
    counter(
        out,
        "s3sp_source_lookups_total",
        "Integrations and clients fetched by key from the database (preload = false).",
        lazy.queries.load(Ordering::Relaxed),
    );
    counter(
        out,
        "s3sp_source_lookups_absent_total",
        "Of those, the keys the database does not hold (each remembered for absent_for).",
        lazy.absent.load(Ordering::Relaxed),
    );
    let (integrations, clients) = lazy.held();
    family(
        out,
        "s3sp_source_fetched_entries",
        "gauge",
        "Integrations and clients fetched on demand and held now (at most cache_entries each).",
    );
    let _ = writeln!(
        out,
        "s3sp_source_fetched_entries{{kind=\"integration\"}} {integrations}\n\
         s3sp_source_fetched_entries{{kind=\"client\"}} {clients}"
    );
}

/// The credential cache's counters.
fn credential_metrics(out: &mut String, stats: &crate::upstream::credentials::CredentialStats) {
    counter(
        out,
        "s3sp_sts_calls_total",
        "Credential fetches (STS AssumeRole or the default chain).",
        stats.calls.load(Ordering::Relaxed),
    );
    counter(
        out,
        "s3sp_sts_failures_total",
        "Credential fetches that failed.",
        stats.failures.load(Ordering::Relaxed),
    );
    counter(
        out,
        "s3sp_sts_throttled_total",
        "Credential fetches STS refused as throttled (Throttling).",
        stats.throttled.load(Ordering::Relaxed),
    );
    counter(
        out,
        "s3sp_credential_cache_hits_total",
        "Requests whose credentials came from the cache.",
        stats.cache_hits.load(Ordering::Relaxed),
    );
    counter(
        out,
        "s3sp_credential_invalidations_total",
        "Cached credentials dropped because the store refused them.",
        stats.invalidations.load(Ordering::Relaxed),
    );
    counter(
        out,
        "s3sp_credential_invalidations_debounced_total",
        "Store refusals that did not drop credentials: the identity's were dropped within the debounce period.",
        stats.invalidations_debounced.load(Ordering::Relaxed),
    );
}

/// Seconds until each integration's cached credentials expire, for those that have any, and
/// whether obtaining or renewing them is failing, for those the proxy has asked for.
fn expiry_metrics(out: &mut String, state: &crate::upstream::state::State) {
    use crate::upstream::credentials::CredentialState;
    let now = state.tenants.config.clock.now();
    let mut expiry_lines = String::new();
    let mut failing_lines = String::new();
    for integration in state.tenants.integrations.sorted() {
        let name = label(&integration.name);
        if let Some(expiry) = state.credentials.expiry(integration) {
            let seconds = match expiry.duration_since(now) {
                Ok(left) => left.as_secs() as i64,
                Err(past) => -(past.duration().as_secs() as i64),
            };
            let _ = writeln!(
                expiry_lines,
                "s3sp_credentials_expiry_seconds{{integration=\"{name}\"}} {seconds}"
            );
        }
        let failing = match state.credentials.state(integration) {
            CredentialState::Static | CredentialState::NotUsedYet => continue,
            CredentialState::Valid {
                refresh_failing, ..
            } => refresh_failing,
            CredentialState::Failing(_) => true,
        };
        let _ = writeln!(
            failing_lines,
            "s3sp_credentials_failing{{integration=\"{name}\"}} {}",
            u8::from(failing)
        );
    }
    family(
        out,
        "s3sp_credentials_expiry_seconds",
        "gauge",
        "Seconds until the integration's cached credentials expire (absent: static or not yet fetched).",
    );
    out.push_str(&expiry_lines);
    family(
        out,
        "s3sp_credentials_failing",
        "gauge",
        "1 while obtaining or renewing the integration's credentials fails (absent: static or not yet asked for).",
    );
    out.push_str(&failing_lines);
}
