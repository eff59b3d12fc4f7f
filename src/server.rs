//! The server: accepts connections and runs each request through the proxy's steps.
//!
//! [`Proxy::handle`] reads top to bottom: route the request, resolve its integration (and check
//! the caller may go there), get credentials, sign, forward. Any step's [`Error`] becomes an S3
//! XML response in one place, and every request is logged once, in a span carrying its request
//! id, method, logical bucket, integration and status. Headers are never logged.
//! [`run`] is the accept loop; it stops on the shutdown future and lets in-flight requests finish.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use http::{Method, Request, Response, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::access::{CountingBody, LoggedBody, RequestLog};
use crate::body::BoxError;
use crate::body::{self, ProxyBody};
use crate::config::{Config, Delivery, Integration, Limits};
use crate::credentials::{CredentialCache, sdk_http_client};
use crate::documents::{Jail, KeyEncoding, UpstreamDocument};
use crate::error::Error;
use crate::forward::Upstream;
use crate::front_door::{Authentication, Caller, Clients};
use crate::integration::{Integrations, Target};
use crate::limits::RateLimiter;
use crate::metrics::{Metrics, method_label};
use crate::route::{Operation, route};
use crate::sign::{UpstreamParts, presigned_get_url, signed_request, upstream_uri};
use crate::xml::MAX_DOCUMENT;

/// Everything a request needs. The configuration-derived part is a [`State`] swapped whole on
/// reload; requests in flight keep the state they started with.
pub struct Proxy {
    state: RwLock<Arc<State>>,
    request_ids: RequestIds,
    /// When the process started: ListBuckets' creation date for every logical bucket.
    started: SystemTime,
    pub metrics: Arc<Metrics>,
    rate_limiter: RateLimiter,
    /// Regions discovered for `region = "auto"` integrations: (endpoint, bucket) → region.
    regions: Mutex<HashMap<(String, String), String>>,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
}

/// One loaded configuration, ready to serve.
pub struct State {
    pub config: Arc<Config>,
    clients: Clients,
    integrations: Integrations,
    pub credentials: Arc<CredentialCache>,
    upstream: Arc<Upstream>,
}

impl State {
    fn new(config: Config, previous: Option<&State>) -> std::io::Result<Self> {
        // Credentials stay cached across a reload when STS is reached the same way: their keys
        // are whole identities, so a changed or removed integration cannot reuse another's.
        let credentials = match previous {
            Some(previous) if previous.credentials.serves(&config.sts) => {
                previous.credentials.clone()
            }
            _ => Arc::new(CredentialCache::new(config.sts.clone(), sdk_http_client())),
        };
        let upstream = match previous {
            Some(previous) if previous.upstream.fits(&config.server.limits) => {
                previous.upstream.forget_ca_bundles();
                previous.upstream.clone()
            }
            _ => Arc::new(Upstream::new(&config.server.limits).map_err(std::io::Error::other)?),
        };
        Ok(State {
            clients: Clients::new(&config.clients).with_sigv2(config.server.sigv2),
            integrations: Integrations::new(&config.integrations),
            credentials,
            upstream,
            config: Arc::new(config),
        })
    }

    fn limits(&self) -> &Limits {
        &self.config.server.limits
    }
}

/// What the log line of a request says besides its status.
#[derive(Default)]
struct Seen {
    client: Option<String>,
    bucket: Option<String>,
    integration: Option<String>,
    upstream_status: Option<u16>,
    /// The store's error code and its own request id, when it answered with an error.
    upstream_code: Option<String>,
    upstream_request_id: Option<String>,
}

impl Proxy {
    pub fn new(config: Config) -> std::io::Result<Self> {
        Ok(Proxy {
            state: RwLock::new(Arc::new(State::new(config, None)?)),
            request_ids: RequestIds::default(),
            started: SystemTime::now(),
            metrics: Arc::new(Metrics::default()),
            rate_limiter: RateLimiter::default(),
            regions: Mutex::new(HashMap::new()),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
        })
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
        if config.server.listen != previous.config.server.listen
            || config.server.admin_listen != previous.config.server.admin_listen
        {
            tracing::warn!("listen addresses changed in the config: they take effect on restart");
        }
        let fresh = Arc::new(State::new(config, Some(&previous))?);
        match self.state.write() {
            Ok(mut state) => *state = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        self.reloads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Serves one request; never fails: errors become S3 XML responses. `peer` identifies
    /// anonymous callers to the rate limit.
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
        let method = method_label(request.method());
        let span = tracing::info_span!("request", id = %request_id);
        let bytes_in = Arc::new(AtomicU64::new(0));
        let request = request.map(|body| CountingBody::new(body, bytes_in.clone()));
        async move {
            let started = Instant::now();
            let is_head = request.method() == Method::HEAD;
            let origin = request.headers().get(header::ORIGIN).cloned();
            let mut cors_for = None;
            let mut seen = Seen::default();
            let result = self
                .forward(&state, request, peer, &request_id, &mut cors_for, &mut seen)
                .await;
            let (mut response, code) = match result {
                Ok(response) => (response, None),
                Err(error) => {
                    let status = error.status();
                    if status.is_server_error() {
                        tracing::warn!(code = error.code(), %error, detail = ?error, "proxy error");
                    } else {
                        tracing::debug!(code = error.code(), %error, "request refused");
                    }
                    let code = error.code();
                    // A refused request shape may hide a second request in its body: whatever
                    // follows on this connection is not read.
                    let close = matches!(error, Error::InvalidRequest { .. });
                    let mut response = error.into_response(&request_id, is_head);
                    if close {
                        response
                            .headers_mut()
                            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
                    }
                    (response, Some(code))
                }
            };
            if let Some(integration) = &cors_for {
                let cors = crate::cors::response_headers(integration, origin.as_ref());
                for (name, value) in &cors {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            crate::guard::protect(response.headers_mut(), cors_for.as_deref());
            // The client sees the proxy's request id, the one its log line carries; the
            // store's own ids are on that line (upstream_request_id), never in the answer.
            let headers = response.headers_mut();
            headers.remove("x-amz-id-2");
            if let Ok(value) = http::HeaderValue::from_str(&request_id) {
                headers.insert("x-amz-request-id", value);
            }
            let log = RequestLog {
                request_id,
                method,
                client: seen.client.unwrap_or_else(|| "-".to_string()),
                bucket: seen.bucket.unwrap_or_else(|| "-".to_string()),
                integration: seen.integration,
                status: response.status().as_u16(),
                code,
                upstream_status: seen.upstream_status,
                upstream_code: seen.upstream_code,
                upstream_request_id: seen.upstream_request_id,
                started,
                bytes_in,
                metrics: self.metrics.clone(),
            };
            response.map(|body| body::stream(LoggedBody::new(body, log)))
        }
        .instrument(span)
        .await
    }

    /// The integration with its region known: for `region = "auto"`, the bucket's region is
    /// asked of the bucket once (HeadBucket's `x-amz-bucket-region`) and remembered.
    async fn with_region(&self, state: &State, target: Target) -> Result<Target, Error> {
        if !target.integration.region_is_auto() {
            return Ok(target);
        }
        let endpoint = target
            .integration
            .endpoint
            .as_ref()
            .map(|e| e.url())
            .unwrap_or_default();
        let key = (endpoint, target.bucket.clone());
        let known = self.regions.lock().ok().and_then(|r| r.get(&key).cloned());
        let region = match known {
            Some(region) => region,
            None => {
                let region = discover_region(state, &target).await?;
                tracing::info!(integration = %target.integration.name, bucket = %target.bucket,
                    %region, "discovered the bucket's region");
                if let Ok(mut regions) = self.regions.lock() {
                    regions.insert(key, region.clone());
                }
                region
            }
        };
        let mut integration = (*target.integration).clone();
        integration.region = region;
        Ok(Target {
            integration: Arc::new(integration),
            ..target
        })
    }

    /// The steps of a request, top to bottom. `cors_for` is set as soon as the integration is
    /// known, so that even a refusal carries its CORS headers.
    async fn forward<B>(
        &self,
        state: &State,
        mut request: Request<B>,
        peer: Option<SocketAddr>,
        request_id: &str,
        cors_for: &mut Option<Arc<Integration>>,
        seen: &mut Seen,
    ) -> Result<Response<ProxyBody>, Error>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let limits = state.limits();
        let target_length = request
            .uri()
            .path_and_query()
            .map_or(0, |p| p.as_str().len());
        if target_length > limits.max_uri_bytes {
            return Err(Error::UriTooLong {
                limit: limits.max_uri_bytes,
            });
        }
        crate::guard::check_request_shape(&request)?;
        crate::guard::check_request_headers(request.headers())?;
        let host = request.uri().authority().map(|a| a.as_str()).or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        let route = route(
            request.method(),
            host,
            request.uri().path(),
            request.uri().query(),
            state.config.server.base_domain.as_deref(),
        )?;
        seen.bucket = Some(route.name.clone());
        *cors_for = state.integrations.integration(&route.name).cloned();

        if route.operation == Operation::Preflight {
            let integration = cors_for.as_ref().ok_or_else(|| Error::NoSuchBucket {
                name: route.name.clone(),
            })?;
            return crate::cors::preflight(integration, request.headers());
        }

        let virtual_bucket =
            crate::route::name_from_host(host, state.config.server.base_domain.as_deref());
        let verified = state.clients.identify(
            request.method(),
            request.uri(),
            request.headers(),
            SystemTime::now(),
            virtual_bucket.as_deref(),
        )?;
        if verified.authentication == Authentication::Anonymous {
            // Nobody vouches for an anonymous caller's `x-amz-*` headers: none goes further.
            strip_amz_headers(request.headers_mut());
        }
        let mut route = route;
        route.operation = route
            .operation
            .with_copy_source(verified.signed("x-amz-copy-source"));
        let caller = &verified.caller;
        seen.client = Some(caller.key_id().to_string());
        if let Some(limit) = limits.rate_limit {
            let who = match (caller.key_id(), peer) {
                ("-", Some(peer)) => peer.ip().to_string(),
                (key_id, _) => key_id.to_string(),
            };
            if let Err(wait) = self.rate_limiter.check(&who, limit) {
                self.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
                return Err(Error::SlowDown {
                    retry_after_seconds: wait.as_secs().max(1),
                });
            }
        }

        match route.operation {
            Operation::ListBuckets => return list_buckets(state, caller, self.started),
            Operation::CreateBucket if cors_for.is_none() => {
                return Err(Error::AccessDenied {
                    reason: "buckets are provisioned in the proxy's configuration, not by clients"
                        .to_string(),
                });
            }
            _ => {}
        }

        let target = state.integrations.resolve(&route, caller)?;
        seen.integration = Some(target.integration.name.clone());

        let target = match route.operation {
            // Cheap answers first: HeadBucket needs no region.
            Operation::HeadBucket if !target.integration.region_is_auto() => {
                return Ok(head_bucket(&target.integration));
            }
            // The caller may write here (`resolve` checked): the bucket is as good as its own.
            Operation::CreateBucket => return Err(Error::BucketAlreadyOwnedByYou),
            _ => self.with_region(state, target).await?,
        };
        let integration = &target.integration;
        if route.operation.is_write() {
            crate::guard::check_acl_headers(request.headers(), integration)?;
        }
        if route.operation == Operation::GetObject {
            // A link a browser can follow: no header of the caller's own is needed.
            let browser_reachable = matches!(
                verified.authentication,
                Authentication::Anonymous | Authentication::Presigned
            );
            crate::guard::check_type_override(&route.query, browser_reachable, integration)?;
        }
        match route.operation {
            Operation::HeadBucket => return Ok(head_bucket(integration)),
            Operation::GetBucketLocation => return Ok(bucket_location(integration)),
            _ => {}
        }
        let mut query = route.query.clone();
        if matches!(
            route.operation,
            Operation::ListObjects | Operation::ListObjectsV2 | Operation::ListMultipartUploads
        ) {
            scope_listing(&mut query, &integration.prefix);
        }

        let mut extra_headers = Vec::new();
        if matches!(
            route.operation,
            Operation::CopyObject | Operation::UploadPartCopy
        ) {
            let source = request
                .headers()
                .get("x-amz-copy-source")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| Error::InvalidArgument {
                    reason: "x-amz-copy-source is not visible ASCII".to_string(),
                })?;
            let rewritten = state.integrations.copy_source(source, &target)?;
            let value = http::HeaderValue::from_str(&rewritten).map_err(|_| Error::Internal {
                detail: "the rewritten copy source is not a header value".to_string(),
            })?;
            extra_headers.push((http::HeaderName::from_static("x-amz-copy-source"), value));
        }
        let (mut parts, client_body) = request.into_parts();
        // Set by an aws-chunked decoder that refused the body, so the answer names the cause.
        let verdict: crate::chunked::Verdict = Default::default();
        let (body, payload) = if route.operation.has_client_document() {
            let (document, headers, payload) = state
                .client_document(route.operation, client_body, &parts.headers, integration)
                .await?;
            parts.headers = headers;
            (body::full(document), payload)
        } else if route.operation.has_body() {
            let streaming = parts
                .headers
                .get("x-amz-content-sha256")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("STREAMING-"));
            // S3 needs the length up front; the body itself streams through. An aws-chunked
            // body may come without one (Transfer-Encoding: chunked, as the JavaScript and C++
            // SDKs send it): its decoded length is x-amz-decoded-content-length.
            if !streaming && !parts.headers.contains_key(header::CONTENT_LENGTH) {
                return Err(Error::MissingContentLength);
            }
            if streaming {
                let (decoded, headers) = chunked_upload(
                    client_body,
                    &parts.headers,
                    verified.chunk_signing,
                    verdict.clone(),
                )?;
                parts.headers = headers;
                (decoded, crate::sign::Payload::Unsigned)
            } else {
                (
                    body::stream(client_body),
                    crate::sign::Payload::from_client(&parts.headers)?,
                )
            }
        } else {
            (body::empty(), crate::sign::Payload::Unsigned)
        };
        // Every check is done: only now are credentials fetched and the upstream contacted.
        let credentials = state.credentials.credentials(integration).await?;
        let uri = upstream_uri(&target, &query)?;

        if let (Delivery::Redirect { expires }, Operation::GetObject) =
            (integration.delivery, route.operation)
        {
            let location = presigned_get_url(
                uri,
                &credentials,
                &integration.region,
                SystemTime::now(),
                expires,
            )?;
            return redirect(&location);
        }

        let upstream_request = signed_request(
            uri,
            UpstreamParts {
                operation: route.operation,
                client_headers: &parts.headers,
                extra_headers,
                body,
                payload,
            },
            &credentials,
            &integration.region,
            SystemTime::now(),
        )?;
        let answer = match state
            .upstream
            .send(
                upstream_request,
                &integration.name,
                integration.ca_file.as_deref(),
            )
            .await
        {
            Ok(answer) => answer,
            Err(error) => {
                let refused = verdict.lock().ok().and_then(|mut v| v.take());
                return Err(refused.unwrap_or(error));
            }
        };
        self.metrics
            .upstream_latency(&integration.name, answer.latency);
        let mut response = answer.response;
        seen.upstream_status = Some(response.status().as_u16());
        let status = response.status();
        // What no message the client sees may name: the real bucket, the prefix, the proxy's
        // access key id and session token.
        let mut hidden = vec![
            target.bucket.as_str(),
            credentials.access_key_id(),
            credentials.session_token().unwrap_or_default(),
        ];
        if !integration.prefix.is_empty() {
            hidden.push(integration.prefix.as_str());
        }
        if (status.is_client_error() || status.is_server_error() || status.is_redirection())
            && status != http::StatusCode::NOT_MODIFIED
            && route.operation != Operation::HeadObject
        {
            seen.upstream_request_id = ["x-amz-request-id", "x-amzn-requestid"]
                .iter()
                .find_map(|name| response.headers().get(*name)?.to_str().ok())
                .map(str::to_string);
            let upstream_request_id = seen.upstream_request_id.clone().unwrap_or_default();
            match crate::guard::sanitize_error(response, &hidden, request_id).await? {
                crate::guard::UpstreamError::Clean {
                    response: clean,
                    code,
                    store_request_id,
                } => {
                    seen.upstream_code = Some(code);
                    if seen.upstream_request_id.is_none() {
                        seen.upstream_request_id = store_request_id;
                    }
                    response = clean;
                }
                crate::guard::UpstreamError::CredentialsRefused { code } => {
                    seen.upstream_code = Some(code.clone());
                    tracing::warn!(integration = %integration.name, %code, %upstream_request_id,
                        "the upstream refused the proxy's credentials");
                    state
                        .credentials_refused(&target.integration, &target.bucket, &code)
                        .await;
                    return Err(Error::UpstreamRefusedCredentials {
                        integration: integration.name.clone(),
                    });
                }
            }
            return Ok(response);
        }
        if response.status().is_success() && answers_with_document(route.operation) {
            let encoding = if query
                .iter()
                .any(|(n, v)| n == "encoding-type" && v == "url")
            {
                KeyEncoding::Url
            } else {
                KeyEncoding::Plain
            };
            let client_prefix = match route.operation {
                Operation::ListObjects
                | Operation::ListObjectsV2
                | Operation::ListMultipartUploads => route
                    .query
                    .iter()
                    .find(|(n, _)| n == "prefix")
                    .map_or("", |(_, v)| v.as_str()),
                _ => "",
            };
            let jail = Jail {
                prefix: &integration.prefix,
                logical_bucket: &route.name,
                encoding,
                client_prefix,
                client_markers: &route.query,
                hidden: &hidden,
                request_id,
            };
            return rewrite_response(response, &jail, &integration.name).await;
        }
        Ok(response)
    }
}

/// An upstream answer read whole (small: probes and their error documents).
pub struct ProbeAnswer {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

impl State {
    /// Sends one request of the proxy's own upstream (not a client's): `check` uses it to
    /// probe an integration. `key` is relative to the prefix; `content` is the body of a PUT.
    pub async fn probe(
        &self,
        integration: &Arc<Integration>,
        bucket: &str,
        key: &str,
        operation: Operation,
        query: &[(String, String)],
        content: bytes::Bytes,
    ) -> Result<ProbeAnswer, Error> {
        use sha2::Digest;
        // A bucket-level probe (HeadBucket, a listing) names no key: its prefix is in `query`.
        let key = if operation.is_bucket_level() {
            String::new()
        } else {
            format!("{}{key}", integration.prefix)
        };
        let target = Target {
            integration: integration.clone(),
            bucket: bucket.to_string(),
            key,
        };
        let credentials = self.credentials.credentials(integration).await?;
        let mut headers = http::HeaderMap::new();
        let (body, payload) = if operation.has_body() {
            headers.insert(
                header::CONTENT_LENGTH,
                http::HeaderValue::from(content.len()),
            );
            let hash = hex::encode(sha2::Sha256::digest(&content));
            (body::full(content), crate::sign::Payload::Sha256(hash))
        } else {
            (body::empty(), crate::sign::Payload::Unsigned)
        };
        let request = signed_request(
            upstream_uri(&target, query)?,
            UpstreamParts {
                operation,
                client_headers: &headers,
                extra_headers: Vec::new(),
                body,
                payload,
            },
            &credentials,
            &integration.region,
            SystemTime::now(),
        )?;
        let answer = self
            .upstream
            .send(request, &integration.name, integration.ca_file.as_deref())
            .await?;
        let (parts, response_body) = answer.response.into_parts();
        let body = body::collect_capped(response_body, MAX_DOCUMENT)
            .await
            .unwrap_or_default();
        Ok(ProbeAnswer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// A store refused a request with a credentials code. Drop the identity's cached
    /// credentials only when they are plausibly the cause, at most once per identity per
    /// debounce period: an expired or unknown token or key says so itself, while a
    /// `SignatureDoesNotMatch` may be about the request (a store that signs some queries
    /// differently), so it counts only when a fresh, plain listing signed with the same
    /// credentials is refused the same way.
    async fn credentials_refused(&self, integration: &Arc<Integration>, bucket: &str, code: &str) {
        if !self.credentials.may_invalidate(integration) {
            return;
        }
        let about_the_credentials = match code {
            "SignatureDoesNotMatch" => {
                let query = [
                    ("list-type".to_string(), "2".to_string()),
                    ("max-keys".to_string(), "0".to_string()),
                    ("prefix".to_string(), integration.prefix.clone()),
                ];
                let confirmation = self
                    .probe(
                        integration,
                        bucket,
                        "",
                        Operation::ListObjectsV2,
                        &query,
                        bytes::Bytes::new(),
                    )
                    .await;
                match confirmation {
                    Ok(answer) => crate::xml::parse(&answer.body).is_ok_and(|error| {
                        error
                            .children
                            .iter()
                            .any(|c| c.name == "Code" && crate::guard::is_credentials_code(&c.text))
                    }),
                    Err(_) => false,
                }
            }
            _ => true,
        };
        if about_the_credentials {
            tracing::warn!(integration = %integration.name, %code,
                "the store refuses the proxy's credentials; fetching new ones");
            self.credentials.invalidate(integration).await;
        }
    }

    /// The region to use for `integration` in `bucket`: its own, or discovered for `auto`.
    pub async fn resolve_region(
        &self,
        integration: &Arc<Integration>,
        bucket: &str,
    ) -> Result<Arc<Integration>, Error> {
        if !integration.region_is_auto() {
            return Ok(integration.clone());
        }
        let target = Target {
            integration: integration.clone(),
            bucket: bucket.to_string(),
            key: String::new(),
        };
        let region = discover_region(self, &target).await?;
        let mut resolved = (**integration).clone();
        resolved.region = region;
        Ok(Arc::new(resolved))
    }

    /// Reads a client's XML body (capped), checks it against the client's signed hash, parses
    /// it, puts every key it names under the prefix, and returns the document the proxy wrote
    /// in its place with the headers that now describe it. Client bytes never reach the store.
    async fn client_document<B>(
        &self,
        operation: Operation,
        client_body: B,
        client_headers: &http::HeaderMap,
        integration: &Integration,
    ) -> Result<(bytes::Bytes, http::HeaderMap, crate::sign::Payload), Error>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        use sha2::Digest;
        let document = body::collect_capped(body::stream(client_body), MAX_DOCUMENT)
            .await
            .map_err(|error| Error::MalformedXML {
                detail: format!("the body could not be read whole: {error}"),
            })?;
        if let crate::sign::Payload::Sha256(signed) =
            crate::sign::Payload::from_client(client_headers)?
            && hex::encode(sha2::Sha256::digest(&document)) != signed
        {
            return Err(Error::BadDigest);
        }
        let written = match operation {
            Operation::DeleteObjects => crate::documents::DeleteRequest::parse(&document)?
                .jail(|key| self.integrations.upstream_key(integration, key))?
                .to_xml(),
            Operation::CompleteMultipartUpload => {
                crate::documents::CompleteRequest::parse(&document)?.to_xml()
            }
            other => {
                return Err(Error::Internal {
                    detail: format!("{other:?} has no client document"),
                });
            }
        };
        // The body is the proxy's: the client's length and checksums described the old one.
        let mut headers = http::HeaderMap::new();
        for (name, value) in client_headers {
            let describes_old_body = name == header::CONTENT_LENGTH
                || name == "content-md5"
                || (operation == Operation::DeleteObjects
                    && name.as_str().starts_with("x-amz-checksum-"))
                || name == "x-amz-sdk-checksum-algorithm";
            if !describes_old_body {
                headers.append(name.clone(), value.clone());
            }
        }
        let md5 = aws_smithy_types::base64::encode(md5::Md5::digest(written.as_bytes()));
        let sha256 = hex::encode(sha2::Sha256::digest(written.as_bytes()));
        headers.insert(
            header::CONTENT_LENGTH,
            http::HeaderValue::from(written.len()),
        );
        headers.insert(
            "content-md5",
            http::HeaderValue::from_str(&md5).map_err(|error| Error::Internal {
                detail: format!("an MD5 digest is not a header value: {error}"),
            })?,
        );
        Ok((
            bytes::Bytes::from(written),
            headers,
            crate::sign::Payload::Sha256(sha256),
        ))
    }
}

/// Asks the bucket its region: a HeadBucket signed for us-east-1, whose answer (200, or the
/// 301/400/403 of a bucket elsewhere) carries `x-amz-bucket-region`.
async fn discover_region(state: &State, target: &Target) -> Result<String, Error> {
    let mut probe = (*target.integration).clone();
    probe.region = "us-east-1".to_string();
    let probe = Target {
        integration: Arc::new(probe),
        bucket: target.bucket.clone(),
        key: String::new(),
    };
    let credentials = state.credentials.credentials(&probe.integration).await?;
    let request = signed_request(
        upstream_uri(&probe, &[])?,
        UpstreamParts {
            operation: Operation::HeadBucket,
            client_headers: &http::HeaderMap::new(),
            extra_headers: Vec::new(),
            body: body::empty(),
            payload: crate::sign::Payload::Unsigned,
        },
        &credentials,
        "us-east-1",
        SystemTime::now(),
    )?;
    let answer = state
        .upstream
        .send(
            request,
            &probe.integration.name,
            probe.integration.ca_file.as_deref(),
        )
        .await?;
    let region = answer
        .response
        .headers()
        .get("x-amz-bucket-region")
        .and_then(|v| v.to_str().ok())
        .filter(|r| {
            !r.is_empty()
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        .map(str::to_string);
    region.ok_or_else(|| {
        tracing::warn!(integration = %target.integration.name, status = answer.response.status().as_u16(),
            "the bucket did not name its region");
        Error::UpstreamUnreachable {
            integration: target.integration.name.clone(),
        }
    })
}

/// Wraps an aws-chunked upload body in its decoder and returns the headers that describe the
/// decoded object: its real length, no aws-chunked encoding, no trailer announcement.
fn chunked_upload<B>(
    client_body: B,
    headers: &http::HeaderMap,
    chunk_signing: Option<crate::chunked::ChunkSigning>,
    verdict: crate::chunked::Verdict,
) -> Result<(ProxyBody, http::HeaderMap), Error>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mode = text("x-amz-content-sha256").unwrap_or_default();
    let signing = match mode {
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" | "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" => {
            Some(chunk_signing.ok_or_else(|| Error::AccessDenied {
                reason:
                    "signed aws-chunked bodies need a request signed in its headers".to_string(),
            })?)
        }
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER" => None,
        other => {
            return Err(Error::NotImplemented {
                operation: format!("aws-chunked uploads of kind {other}"),
            });
        }
    };
    let trailer = text("x-amz-trailer");
    if mode.ends_with("-TRAILER") && trailer.is_none() {
        return Err(Error::InvalidRequest {
            reason: format!("{mode} needs an x-amz-trailer header"),
        });
    }
    let decoded_length: u64 = text("x-amz-decoded-content-length")
        .and_then(|v| v.parse().ok())
        .ok_or(Error::MissingContentLength)?;
    let decoder = crate::chunked::AwsChunked::new(
        body::stream(client_body),
        signing,
        trailer,
        decoded_length,
        verdict,
    )?;
    let mut forwarded = http::HeaderMap::new();
    for (name, value) in headers {
        let describes_encoding = name == header::CONTENT_LENGTH
            || name == header::CONTENT_ENCODING
            || name == "x-amz-decoded-content-length"
            || name == "x-amz-trailer"
            || name == "x-amz-sdk-checksum-algorithm";
        if !describes_encoding {
            forwarded.append(name.clone(), value.clone());
        }
    }
    // Any other content coding the object itself has stays.
    let codings: Vec<&str> = text("content-encoding")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    if !codings.is_empty()
        && let Ok(value) = http::HeaderValue::from_str(&codings.join(", "))
    {
        forwarded.insert(header::CONTENT_ENCODING, value);
    }
    forwarded.insert(
        header::CONTENT_LENGTH,
        http::HeaderValue::from(decoded_length),
    );
    Ok((body::stream(decoder), forwarded))
}

/// Removes every `x-amz-*` header.
fn strip_amz_headers(headers: &mut http::HeaderMap) {
    let amz: Vec<http::HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-amz-"))
        .cloned()
        .collect();
    for name in amz {
        headers.remove(name);
    }
}

/// Operations whose successful answer is an XML document naming keys or the bucket.
fn answers_with_document(operation: Operation) -> bool {
    matches!(
        operation,
        Operation::ListObjects
            | Operation::ListObjectsV2
            | Operation::ListMultipartUploads
            | Operation::ListParts
            | Operation::GetObjectAttributes
            | Operation::CreateMultipartUpload
            | Operation::CompleteMultipartUpload
            | Operation::DeleteObjects
            | Operation::CopyObject
            | Operation::UploadPartCopy
    )
}

/// Puts a listing under the integration's prefix: `prefix` always starts with it, and the
/// markers a client sends (relative keys) become upstream keys.
fn scope_listing(query: &mut Vec<(String, String)>, prefix: &str) {
    if prefix.is_empty() {
        return;
    }
    if !query.iter().any(|(name, _)| name == "prefix") {
        query.push(("prefix".to_string(), String::new()));
    }
    for (name, value) in query.iter_mut() {
        let relative_key = name == "prefix"
            || (matches!(name.as_str(), "start-after" | "marker" | "key-marker")
                && !value.is_empty());
        if relative_key {
            *value = format!("{prefix}{value}");
        }
    }
    query.sort();
}

/// Reads a (small, capped) upstream document, takes the integration out of it and writes it
/// anew.
async fn rewrite_response(
    response: Response<ProxyBody>,
    jail: &Jail<'_>,
    integration: &str,
) -> Result<Response<ProxyBody>, Error> {
    let (mut parts, upstream_body) = response.into_parts();
    let document = body::collect_capped(upstream_body, MAX_DOCUMENT)
        .await
        .map_err(|error| Error::Internal {
            detail: format!("an upstream document could not be read: {error}"),
        })?;
    let rewritten = UpstreamDocument::parse(&document)?.rewrite(jail)?;
    if rewritten.dropped > 0 {
        tracing::warn!(%integration, dropped = rewritten.dropped,
            "the upstream listed entries beyond the prefix the client asked for; they were dropped");
    }
    parts.headers.insert(
        header::CONTENT_LENGTH,
        http::HeaderValue::from(rewritten.document.len()),
    );
    parts.headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    parts.headers.remove(header::CONTENT_ENCODING);
    Ok(Response::from_parts(
        parts,
        body::full(bytes::Bytes::from(rewritten.document)),
    ))
}

/// HeadBucket: the caller may reach this bucket; it is in the integration's region.
fn head_bucket(integration: &Integration) -> Response<ProxyBody> {
    let mut response = Response::new(body::empty());
    if let Ok(region) = http::HeaderValue::from_str(&integration.region) {
        response.headers_mut().insert("x-amz-bucket-region", region);
    }
    response
}

/// ListBuckets: the logical buckets the caller may reach; an anonymous caller that may reach
/// none is refused, as S3 refuses an anonymous ListBuckets.
fn list_buckets(
    state: &State,
    caller: &Caller,
    created: SystemTime,
) -> Result<Response<ProxyBody>, Error> {
    let names = state.integrations.reachable(caller);
    if names.is_empty() && matches!(caller, Caller::Anonymous) {
        return Err(Error::AccessDenied {
            reason: "Access Denied".to_string(),
        });
    }
    let owner = match caller {
        Caller::Anonymous => "anonymous",
        Caller::Client(client) => client.access_key_id.as_str(),
    };
    let document = crate::documents::bucket_list(owner, &names, created);
    let mut response = Response::new(body::full(bytes::Bytes::from(document)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    Ok(response)
}

/// GetBucketLocation, as S3 answers it (`us-east-1` is the empty constraint).
fn bucket_location(integration: &Integration) -> Response<ProxyBody> {
    let constraint = if integration.region == "us-east-1" {
        ""
    } else {
        integration.region.as_str()
    };
    let document =
        crate::xml::Writer::document(&crate::xml::Element::text("LocationConstraint", constraint));
    let mut response = Response::new(body::full(bytes::Bytes::from(document)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    response
}

/// `307 Temporary Redirect` to an upstream presigned URL; never cached past its validity.
fn redirect(location: &http::Uri) -> Result<Response<ProxyBody>, Error> {
    let location =
        http::HeaderValue::from_str(&location.to_string()).map_err(|_| Error::Internal {
            detail: "the presigned URL is not a header value".to_string(),
        })?;
    let mut response = Response::new(body::empty());
    *response.status_mut() = http::StatusCode::TEMPORARY_REDIRECT;
    response.headers_mut().insert(header::LOCATION, location);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, http::HeaderValue::from(0));
    Ok(response)
}

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
        format!("{:016X}", mixed ^ (mixed >> 29))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

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
