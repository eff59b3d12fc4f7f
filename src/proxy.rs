//! The proxy: one request through three phases, one error exit, one access line.
//!
//! [`Proxy::handle`] runs [`Proxy::serve`], which reads as the request's path:
//!
//! 1. the **request phase** ([`crate::request::admit`]): shape, route, caller, rate limit, integration,
//!    authorisation — an [`Admitted`](crate::request::admit::Admitted) request, or an answer the proxy
//!    gives itself;
//! 2. the **upstream phase** ([`crate::upstream::region`], [`crate::upstream::exchange`]): the region, the body
//!    plan, credentials, the signed request, the store's answer;
//! 3. the **response phase** ([`crate::response::respond`]): errors rebuilt, documents taken out of the
//!    integration, everything else streamed.
//!
//! Any phase's [`Error`] becomes S3's XML in one place, CORS and protective headers are added
//! to every answer, and every request is logged once, when its body is done, in a span
//! carrying its request id. Headers are never logged.

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use http::{Method, Request, Response, StatusCode, header};
use tracing::Instrument;

use crate::config::Config;
use crate::net::limits::RateLimiter;
use crate::observe::access::{CountingBody, LineGate, LoggedBody, RequestLog, Seen};
use crate::observe::metrics::{Metrics, method_label};
use crate::request::admit::{Admission, Audience, Gate};
use crate::request::tenants::Change;
use crate::response::cache::Lookup;
use crate::s3::body::{self, BoxError, ProxyBody};
use crate::s3::error::Error;
use crate::upstream::exchange::Exchange;
use crate::upstream::state::State;

/// Everything a request needs. The configuration-derived part is a [`State`] swapped whole on
/// reload; requests in flight keep the state they started with.
pub struct Proxy {
    state: RwLock<Arc<State>>,
    request_ids: RequestIds,
    /// When the process started: ListBuckets' creation date for every logical bucket.
    started: SystemTime,
    /// Request counters and histograms, for `/metrics`.
    pub metrics: Arc<Metrics>,
    rate_limiter: RateLimiter,
    /// Successful config reloads.
    pub reloads: AtomicU64,
    /// Config reloads refused (the old config stays).
    pub reload_failures: AtomicU64,
    /// The live sources' counters, and whether each has loaded once (readiness waits).
    pub sources: Arc<crate::observe::metrics::SourceStats>,
    /// The object cache (`[server.cache] memory`), if configured; it lives as long as the
    /// process (a reload keeps it, and a changed budget takes effect on restart).
    pub cache: Option<crate::response::cache::ObjectCache>,
}

/// A request's access line until its answer is ready. A client that leaves first makes hyper
/// drop the request's future, and this with it: the store's request is cancelled by the same
/// drop, and the line is written then, with nginx's 499 ("client closed request"),
/// `complete=false` and the bytes that had moved.
struct Pending {
    request_id: String,
    method: &'static str,
    client_ip: Option<std::net::IpAddr>,
    started: Instant,
    bytes_in: Arc<AtomicU64>,
    gate: Arc<LineGate>,
    metrics: Arc<Metrics>,
    seen: Seen,
    /// Who the answer is for: its CORS rules, and whether it is private.
    audience: Audience,
    answered: bool,
}

/// The status and code an abandoned request is logged with.
const CLIENT_CLOSED_REQUEST: (u16, &str) = (499, "ClientClosedRequest");

impl Pending {
    /// The line of the answer about to be sent (`code`: the proxy's own error, if it is one).
    fn answer(&mut self, status: u16, code: Option<&'static str>) -> RequestLog {
        self.answered = true;
        self.log(status, code)
    }

    fn log(&mut self, status: u16, code: Option<&'static str>) -> RequestLog {
        let seen = std::mem::take(&mut self.seen);
        RequestLog {
            request_id: std::mem::take(&mut self.request_id),
            method: self.method,
            client: seen.client.unwrap_or_else(|| "-".to_string()),
            client_ip: self.client_ip,
            bucket: seen.bucket.unwrap_or_else(|| "-".to_string()),
            integration: seen.integration,
            status,
            code,
            upstream_status: seen.upstream_status,
            upstream_code: seen.upstream_code,
            upstream_request_id: seen.upstream_request_id,
            cache: seen.cache,
            started: self.started,
            bytes_in: self.bytes_in.clone(),
            gate: self.gate.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.answered {
            let (status, code) = CLIENT_CLOSED_REQUEST;
            crate::observe::access::abandoned(self.log(status, Some(code)));
        }
    }
}

impl Proxy {
    /// A proxy serving `config`; nothing is fetched until the first request.
    pub fn new(config: Config) -> std::io::Result<Self> {
        let (chunk, disk) = (
            config.server.cache_chunk,
            config.server.cache_disk.is_some(),
        );
        let cache = config.server.cache_memory.map(|memory| {
            let clock = config.clock.clone();
            crate::response::cache::ObjectCache::new(memory, chunk, disk, clock)
        });
        Ok(Proxy {
            cache,
            state: RwLock::new(Arc::new(State::new(config, None)?)),
            request_ids: RequestIds::default(),
            started: SystemTime::now(),
            metrics: Arc::new(Metrics::default()),
            rate_limiter: RateLimiter::default(),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            sources: Default::default(),
        })
    }

    /// Opens the object cache's disk tier, when `[server.cache] disk` names one: before
    /// serving, so a directory the proxy cannot use stops it at start.
    pub async fn open_disk_cache(&self) -> std::io::Result<()> {
        let disk = self.state().tenants.config.server.cache_disk.clone();
        match (&self.cache, disk) {
            (Some(cache), Some((directory, size))) => {
                cache.open_disk(&directory, size).await.map_err(|error| {
                    std::io::Error::other(format!(
                        "[server.cache] disk {}: {error}",
                        directory.display()
                    ))
                })
            }
            _ => Ok(()),
        }
    }

    /// The configuration now in force.
    pub fn state(&self) -> Arc<State> {
        match self.state.read() {
            Ok(state) => state.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swaps in a new configuration: new requests see it, requests in flight finish on theirs.
    pub fn reload(&self, config: Config) -> std::io::Result<()> {
        let previous = self.state();
        if config.server.listen != previous.tenants.config.server.listen
            || config.server.admin_listen != previous.tenants.config.server.admin_listen
        {
            tracing::warn!("listen addresses changed in the config: they take effect on restart");
        }
        self.swap(config, &previous)?;
        self.reloads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Builds the state for `config` from `previous` (keeping its caches), puts it in force
    /// and starts the warm-up of every integration.
    fn swap(&self, config: Config, previous: &State) -> std::io::Result<()> {
        let fresh = State::new(config, Some(previous))?;
        self.put(fresh);
        let state = self.state();
        self.warm_up(state.tenants.integrations.all().cloned().collect());
        Ok(())
    }

    /// Puts `fresh` in force: the next request sees it.
    fn put(&self, fresh: State) {
        match self.state.write() {
            Ok(mut state) => *state = Arc::new(fresh),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(fresh),
        }
    }

    /// From now on, integrations and clients the tables do not hold are fetched on demand by
    /// `lazy` (`[source] preload = false`); the state keeps it across reloads.
    pub fn fetch_on_demand(&self, lazy: Arc<crate::request::lazy::Lazy>) {
        let previous = self.state();
        let tenants = previous.tenants.changed(&Change::default());
        self.put(State::with_tenants(
            &previous,
            tenants.with_lazy(Some(lazy)),
        ));
    }

    /// Applies what a live source changed: the next request sees the changed integrations and
    /// clients, requests in flight finish on theirs, and nothing else is rebuilt (the tables
    /// share every untouched entry with the previous ones; the credential cache, upstream
    /// pool and region cache stay). The caller holds the catalog's lock, so two sources'
    /// changes never race.
    pub fn apply_change(&self, change: &Change) {
        if change.is_empty() {
            return;
        }
        let previous = self.state();
        self.put(State::with_tenants(
            &previous,
            previous.tenants.changed(change),
        ));
        self.sources.published.fetch_add(1, Ordering::Relaxed);
        let added = change.integrations.values().flatten().cloned().collect();
        self.warm_up(added);
    }

    /// With `[sts] warm_up_per_second`, starts obtaining `integrations`' credentials in the
    /// background; otherwise each is obtained when a request first needs it.
    pub fn warm_up(&self, integrations: Vec<Arc<crate::config::Integration>>) {
        let state = self.state();
        if let Some(per_second) = state.tenants.config.sts.warm_up_per_second
            && !integrations.is_empty()
        {
            state.credentials.warm_up(integrations, per_second);
        }
    }

    /// What the request phase needs from the proxy besides the state.
    pub(crate) fn gate(&self) -> Gate<'_> {
        Gate {
            rate_limiter: &self.rate_limiter,
            metrics: &self.metrics,
            started: self.started,
        }
    }

    /// Serves one request; never fails: errors become S3 XML responses. `peer` (or the client
    /// behind it, when it is a trusted front proxy) identifies anonymous callers to the rate
    /// limit, and is logged.
    pub async fn handle<B>(
        &self,
        request: Request<B>,
        peer: Option<SocketAddr>,
    ) -> Response<ProxyBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let state = self.state();
        let request_id = self.request_ids.next();
        let peer = crate::net::peer::Peer::of(
            &state.tenants.config.server.front,
            peer.map(|peer| peer.ip()),
            request.headers(),
        );
        let span = tracing::info_span!("request", id = %request_id);
        let mut pending = Pending {
            method: method_label(request.method()),
            client_ip: peer.client,
            started: Instant::now(),
            bytes_in: Arc::new(AtomicU64::new(0)),
            gate: LineGate::new(),
            metrics: self.metrics.clone(),
            seen: Seen::default(),
            audience: Audience::default(),
            request_id,
            answered: false,
        };
        let (bytes_in, gate) = (pending.bytes_in.clone(), pending.gate.clone());
        let request = request.map(|body| CountingBody::new(body, bytes_in, gate));
        async move {
            let is_head = request.method() == Method::HEAD;
            let origin = request.headers().get(header::ORIGIN).cloned();
            let result = self
                .serve(
                    &state,
                    request,
                    peer,
                    &pending.request_id,
                    (&mut pending.seen, &mut pending.audience),
                )
                .await;
            let (mut response, code) = match result {
                Ok(response) => (response, None),
                Err(error) => {
                    let code = error.code();
                    (refusal(error, &pending.request_id, is_head), Some(code))
                }
            };
            finish_headers(
                &mut response,
                &pending.audience,
                origin.as_ref(),
                &pending.request_id,
            );
            let log = pending.answer(response.status().as_u16(), code);
            response.map(|body| body::stream(LoggedBody::new(body, log)))
        }
        .instrument(span)
        .await
    }

    /// A request's three phases, in order.
    async fn serve<B>(
        &self,
        state: &State,
        request: Request<B>,
        peer: crate::net::peer::Peer,
        request_id: &str,
        (seen, audience): (&mut Seen, &mut Audience),
    ) -> Result<Response<ProxyBody>, Error>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        // The request phase: who, what, where, and may they. Names fetched on demand are
        // fetched first, so the phase itself reads only tables.
        if let Some(lazy) = &state.tenants.lazy {
            let names = crate::request::admit::named(&state.tenants, &request);
            lazy.prepare(state.tenants.tables(), names).await?;
        }
        let gate = self.gate();
        let admitted = match crate::request::admit::admit(
            &state.tenants,
            request,
            peer,
            &gate,
            (&mut *seen, audience),
            &mut (),
        )? {
            Admission::Answered(response) => return Ok(response),
            Admission::Form(form) => {
                let (route, request) = *form;
                let integration = state.tenants.integrations.integration(&route.name);
                let request = request.map(crate::s3::body::stream);
                let form = crate::form::post_object(state, route, request, seen);
                let answer = Box::pin(form).await;
                // Which key the form wrote is in its body: all the integration's entries go.
                if let (Some(cache), Some(integration)) = (&self.cache, integration) {
                    cache.written(&crate::response::cache::Write::unnamed(&integration));
                }
                return answer;
            }
            Admission::Forward(admitted) => admitted,
        };

        Box::pin(self.upstream_phase(state, admitted, request_id, seen)).await
    }

    /// The upstream phase and the response phase of an admitted request, with the object
    /// cache between them.
    async fn upstream_phase<B>(
        &self,
        state: &State,
        mut admitted: Box<crate::request::admit::Admitted<B>>,
        request_id: &str,
        seen: &mut Seen,
    ) -> Result<Response<ProxyBody>, Error>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        // The upstream phase: the bucket's region, then (unless the proxy can answer from the
        // config) credentials, the signed request and the store's answer.
        admitted.target = state.regions.resolve(state, admitted.target).await?;
        let operation = admitted.route.operation;
        if let Some(answer) =
            crate::request::answers::after_region(operation, admitted.integration())
        {
            return Ok(answer);
        }
        let plan = match self.consult_cache(&mut admitted, seen).await {
            Ok(plan) => plan,
            Err(hit) => return Ok(*hit),
        };
        let cache = self.cache.as_ref();
        let integration = admitted.target.integration.clone();
        let write = crate::response::cache::Write::of(&admitted.route, &admitted.target);
        let exchange = crate::upstream::exchange::exchange(state, admitted).await;
        if let (Some(cache), Some(write)) = (cache, &write) {
            cache.written(write);
        }
        if let (Some(cache), Plan::Revalidate(_, entry)) = (cache, &plan)
            && let Some(status) = failed(&exchange)
            && let Some(stale) = cache.stale_if_error(&integration, entry, status)
        {
            seen.cache = Some("stale-if-error");
            return Ok(stale);
        }
        let exchange = exchange?;
        if let Exchange::Answered(answered) = &exchange {
            self.metrics
                .upstream_latency(&answered.target.integration.name, answered.latency);
        }
        if let (Some(cache), Plan::Revalidate(key, entry), Exchange::Answered(answered)) =
            (cache, &plan, &exchange)
            && answered.response.status() == StatusCode::NOT_MODIFIED
        {
            seen.cache = Some("revalidated");
            return Ok(cache.refreshed(&integration, key.clone(), entry));
        }

        // The response phase: what the client gets of it.
        let response = crate::response::respond::answer(state, exchange, request_id, seen).await?;
        Ok(match (cache, plan) {
            (Some(cache), Plan::Fill(key, guard)) => {
                seen.cache = Some("miss");
                cache.fill(&integration, (key, guard), false, response)
            }
            (Some(cache), Plan::Revalidate(key, _)) => {
                seen.cache = Some("stale");
                cache.fill(&integration, (key, None), true, response)
            }
            (Some(cache), Plan::Ranged(fetch)) => {
                seen.cache = Some("miss");
                cache.fill_ranged(&integration, fetch, response)
            }
            (Some(_), Plan::Bypass) if integration.cache.is_some() => {
                seen.cache = Some("bypass");
                crate::response::cache::with_status(response, "fwd=bypass")
            }
            _ => response,
        })
    }

    /// What the object cache makes of an admitted request: a hit (`Err`, the answer), or the
    /// plan for the store's answer; a revalidation adds `If-None-Match` to the request.
    async fn consult_cache<B>(
        &self,
        admitted: &mut crate::request::admit::Admitted<B>,
        seen: &mut Seen,
    ) -> Result<Plan, Box<Response<ProxyBody>>> {
        let Some(cache) = &self.cache else {
            return Ok(Plan::Bypass);
        };
        let target = &admitted.target;
        let headers = admitted.request.headers();
        let found = (target.bucket.as_str(), target.key.as_str());
        let lookup = cache
            .lookup(&admitted.route, &target.integration, found, headers)
            .await;
        Ok(match lookup {
            Lookup::Hit(response) => {
                seen.cache = Some("hit");
                return Err(Box::new(response));
            }
            Lookup::Revalidate(key, entry) => {
                if let Some(etag) = entry.etag() {
                    admitted
                        .request
                        .headers_mut()
                        .insert(header::IF_NONE_MATCH, etag.clone());
                }
                Plan::Revalidate(key, entry)
            }
            Lookup::Miss(key, guard) => Plan::Fill(key, guard),
            Lookup::Ranged(fetch) => {
                let range = fetch.upstream_range();
                admitted.request.headers_mut().insert(header::RANGE, range);
                Plan::Ranged(fetch)
            }
            Lookup::Bypass => Plan::Bypass,
        })
    }
}

/// What the object cache does with a request that goes to the store.
enum Plan {
    /// Keep the answer (other misses for the object wait while the guard lives).
    Fill(
        crate::response::cache::Key,
        Option<crate::response::cache::FillGuard>,
    ),
    /// The store was asked whether the entry changed.
    Revalidate(
        crate::response::cache::Key,
        Arc<crate::response::cache::Entry>,
    ),
    /// The store was asked for the aligned span around the client's range.
    Ranged(Box<crate::response::cache::Fetch>),
    Bypass,
}

/// The status of an exchange that failed on the store's side or before reaching it (a 5xx
/// answer, an unreachable store, credentials STS refused): what `cache_stale_if_error` covers.
fn failed(exchange: &Result<Exchange, Error>) -> Option<StatusCode> {
    let status = match exchange {
        Ok(Exchange::Answered(answered)) => answered.response.status(),
        Ok(_) => return None,
        Err(error) => error.status(),
    };
    status.is_server_error().then_some(status)
}

/// The one error exit: the error logged (a server error as a warning with its detail) and
/// rendered as S3's XML with the request id.
fn refusal(error: Error, request_id: &str, is_head: bool) -> Response<ProxyBody> {
    let status = error.status();
    if status.is_server_error() {
        tracing::warn!(code = error.code(), %error, detail = ?error, "proxy error");
    } else {
        tracing::debug!(code = error.code(), %error, "request refused");
    }
    // A refused request shape may hide a second request in its body: whatever follows on
    // this connection is not read.
    let close = matches!(error, Error::InvalidRequest { .. });
    let mut response = error.into_response(request_id, is_head);
    if close {
        response
            .headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    response
}

/// What every answer carries: the integration's CORS headers, the protective headers, and the
/// proxy's request id (the store's own ids are on the log line, never in the answer).
fn finish_headers(
    response: &mut Response<ProxyBody>,
    audience: &Audience,
    origin: Option<&http::HeaderValue>,
    request_id: &str,
) {
    if let Some(integration) = &audience.cors {
        let cors = crate::request::cors::response_headers(integration, origin);
        for (name, value) in &cors {
            response.headers_mut().insert(name, value.clone());
        }
    }
    crate::response::protect::protect(response.headers_mut(), audience.cors.as_deref());
    if audience.private {
        crate::response::protect::keep_private(response.headers_mut());
    }
    let headers = response.headers_mut();
    headers.remove(X_AMZ_ID_2);
    if let Ok(value) = http::HeaderValue::from_str(request_id) {
        headers.insert(crate::s3::error::X_AMZ_REQUEST_ID, value);
    }
}

/// The store's second request id, which never reaches the client.
const X_AMZ_ID_2: http::HeaderName = http::HeaderName::from_static("x-amz-id-2");

/// S3-style request ids: 16 upper-case hex digits, unique per process and unguessable across
/// restarts.
struct RequestIds {
    seed: u64,
    counter: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or_default(),
        );
        RequestIds {
            seed: hasher.finish(),
            counter: AtomicU64::new(0),
        }
    }
}

impl RequestIds {
    fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // A bijective mix of the counter keeps ids unique while not revealing request counts.
        let mixed = (n ^ self.seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let id = mixed ^ (mixed >> 29);
        let mut text = String::with_capacity(16);
        for nibble in (0..16).rev() {
            text.push(char::from(
                b"0123456789ABCDEF"[(id >> (nibble * 4)) as usize & 0xF],
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hyper moves each request's future into place, so its size is paid on every request. The
    /// rare paths (an STS call, region discovery, an upstream error, a client document, a form
    /// upload) are boxed where they start; unboxed, the STS call alone made it 31 KiB.
    #[tokio::test]
    async fn a_requests_future_stays_small() {
        let config = crate::config::Config::parse(
            r#"
            [[integration]]
            name = "acme"
            bucket = "acme-bucket"
            region = "us-east-1"
            [integration.credentials]
            source = "default-chain"
            "#,
            "small.toml",
            &std::collections::BTreeMap::new(),
        )
        .expect("valid");
        let proxy = Proxy::new(config).expect("proxy");
        let request = Request::new(http_body_util::Empty::<bytes::Bytes>::new());
        let future = proxy.handle(request, None);
        let size = std::mem::size_of_val(&future);
        assert!(size <= 8 * 1024, "a request's future takes {size} bytes");
    }

    #[test]
    fn request_ids_are_unique_and_s3_shaped() {
        let ids = RequestIds::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = ids.next();
            assert_eq!(id.len(), 16);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            );
            assert!(seen.insert(id));
        }
    }
}
