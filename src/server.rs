//! The server: accepts connections and runs each request through the proxy's steps.
//!
//! [`Proxy::handle`] reads top to bottom: route the request, resolve its integration (and check
//! the caller may go there), get credentials, sign, forward. Any step's [`Error`] becomes an S3
//! XML response in one place, and every request is logged once, in a span carrying its request
//! id, method, logical bucket, integration and status. Headers are never logged.
//! [`run`] is the accept loop; it stops on the shutdown future and lets in-flight requests finish.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use http::{Method, Request, Response, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::body::BoxError;
use crate::body::{self, ProxyBody};
use crate::config::{Config, Delivery, Integration};
use crate::credentials::{CredentialCache, sdk_http_client};
use crate::error::Error;
use crate::forward::Upstream;
use crate::front_door::Clients;
use crate::integration::Integrations;
use crate::rewrite::{KeyEncoding, MAX_DOCUMENT};
use crate::route::{Operation, route};
use crate::sign::{UpstreamParts, presigned_get_url, signed_request, upstream_uri};

/// Slow clients get this long to send a request's headers (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests may run on after shutdown was asked for.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// Everything a request needs, built once from the config and shared by all connections.
pub struct Proxy {
    base_domain: Option<String>,
    clients: Clients,
    integrations: Integrations,
    credentials: CredentialCache,
    upstream: Upstream,
    request_ids: RequestIds,
}

impl Proxy {
    pub fn new(config: &Config) -> std::io::Result<Self> {
        Ok(Proxy {
            base_domain: config.server.base_domain.clone(),
            clients: Clients::new(&config.clients),
            integrations: Integrations::new(&config.integrations),
            credentials: CredentialCache::new(config.sts.clone(), sdk_http_client()),
            upstream: Upstream::new().map_err(std::io::Error::other)?,
            request_ids: RequestIds::default(),
        })
    }

    /// Serves one request; never fails: errors become S3 XML responses.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<ProxyBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let request_id = self.request_ids.next();
        let span = tracing::info_span!(
            "request",
            id = %request_id,
            method = %request.method(),
            client = tracing::field::Empty,
            bucket = tracing::field::Empty,
            integration = tracing::field::Empty,
        );
        async move {
            let started = Instant::now();
            let is_head = request.method() == Method::HEAD;
            let origin = request.headers().get(header::ORIGIN).cloned();
            let mut cors_for = None;
            let mut response = match self.forward(request, &mut cors_for).await {
                Ok(response) => response,
                Err(error) => {
                    let status = error.status();
                    if status.is_server_error() {
                        tracing::warn!(code = error.code(), %error, detail = ?error, "proxy error");
                    } else {
                        tracing::info!(code = error.code(), %error, "request refused");
                    }
                    error.into_response(&request_id, is_head)
                }
            };
            if let Some(integration) = cors_for {
                let cors = crate::cors::response_headers(&integration, origin.as_ref());
                for (name, value) in &cors {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            let upstream_request_id = response
                .headers()
                .get("x-amz-request-id")
                .and_then(|v| v.to_str().ok())
                .filter(|id| *id != request_id)
                .unwrap_or("-");
            tracing::info!(
                status = response.status().as_u16(),
                upstream_request_id,
                duration_ms = started.elapsed().as_millis() as u64,
                "request finished"
            );
            response
        }
        .instrument(span)
        .await
    }

    /// The steps of a request, top to bottom. `cors_for` is set as soon as the integration is
    /// known, so that even a refusal carries its CORS headers.
    async fn forward<B>(
        &self,
        request: Request<B>,
        cors_for: &mut Option<Arc<Integration>>,
    ) -> Result<Response<ProxyBody>, Error>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
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
            self.base_domain.as_deref(),
            request.headers().contains_key("x-amz-copy-source"),
        )?;
        let span = tracing::Span::current();
        span.record("bucket", route.name.as_str());
        *cors_for = self.integrations.integration(&route.name).cloned();

        if route.operation == Operation::Preflight {
            let integration = cors_for.as_ref().ok_or_else(|| Error::NoSuchBucket {
                name: route.name.clone(),
            })?;
            return crate::cors::preflight(integration, request.headers());
        }

        let (caller, chunk_signing) = self.clients.identify(
            request.method(),
            request.uri(),
            request.headers(),
            SystemTime::now(),
        )?;
        span.record("client", caller.key_id());

        let target = self.integrations.resolve(&route, &caller)?;
        let integration = &target.integration;
        span.record("integration", integration.name.as_str());

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
            let rewritten = self.integrations.copy_source(source, &target)?;
            let value = http::HeaderValue::from_str(&rewritten).map_err(|_| Error::Internal {
                detail: "the rewritten copy source is not a header value".to_string(),
            })?;
            extra_headers.push((http::HeaderName::from_static("x-amz-copy-source"), value));
        }
        let (mut parts, client_body) = request.into_parts();
        // Set by an aws-chunked decoder that refused the body, so the answer names the cause.
        let verdict: crate::chunked::Verdict = Default::default();
        let (body, payload) = if route.operation == Operation::DeleteObjects {
            let (document, headers, payload) = self
                .delete_objects_body(client_body, &parts.headers, integration)
                .await?;
            parts.headers = headers;
            (body::full(document), payload)
        } else if route.operation.has_body() {
            // S3 needs the length up front; the body itself streams through.
            if !parts.headers.contains_key(header::CONTENT_LENGTH) {
                return Err(Error::MissingContentLength);
            }
            let streaming = parts
                .headers
                .get("x-amz-content-sha256")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("STREAMING-"));
            if streaming {
                let (decoded, headers) =
                    chunked_upload(client_body, &parts.headers, chunk_signing, verdict.clone())?;
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
        let credentials = self.credentials.credentials(integration).await?;
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
        let response = match self
            .upstream
            .send(upstream_request, &integration.name)
            .await
        {
            Ok(response) => response,
            Err(error) => {
                let refused = verdict.lock().ok().and_then(|mut v| v.take());
                return Err(refused.unwrap_or(error));
            }
        };
        if response.status().is_success() && names_keys(route.operation) {
            let encoding = if query
                .iter()
                .any(|(n, v)| n == "encoding-type" && v == "url")
            {
                KeyEncoding::Url
            } else {
                KeyEncoding::Plain
            };
            let listing = ListingContext {
                prefix: &integration.prefix,
                logical_bucket: &route.name,
                encoding,
                client_query: &route.query,
            };
            return rewrite_response(response, listing).await;
        }
        Ok(response)
    }

    /// Reads a DeleteObjects document (capped), checks it against the client's signed hash,
    /// puts every key under the prefix, and returns it with the headers that now describe it.
    async fn delete_objects_body<B>(
        &self,
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
            .map_err(|_| Error::MalformedXML)?;
        if let crate::sign::Payload::Sha256(signed) =
            crate::sign::Payload::from_client(client_headers)?
            && hex::encode(sha2::Sha256::digest(&document)) != signed
        {
            return Err(Error::BadDigest);
        }
        let text = std::str::from_utf8(&document).map_err(|_| Error::MalformedXML)?;
        let rewritten = crate::rewrite::delete_request(text, &integration.prefix, |key| {
            self.integrations.upstream_key(integration, key).map(|_| ())
        })?;
        // The body changed: the client's length and checksums describe the old one.
        let mut headers = http::HeaderMap::new();
        for (name, value) in client_headers {
            let describes_old_body = name == header::CONTENT_LENGTH
                || name == "content-md5"
                || name.as_str().starts_with("x-amz-checksum-")
                || name == "x-amz-sdk-checksum-algorithm";
            if !describes_old_body {
                headers.append(name.clone(), value.clone());
            }
        }
        let md5 = aws_smithy_types::base64::encode(md5::Md5::digest(rewritten.as_bytes()));
        let sha256 = hex::encode(sha2::Sha256::digest(rewritten.as_bytes()));
        headers.insert(
            header::CONTENT_LENGTH,
            http::HeaderValue::from(rewritten.len()),
        );
        headers.insert(
            "content-md5",
            http::HeaderValue::from_str(&md5).map_err(|_| Error::Internal {
                detail: "an MD5 digest is not a header value".to_string(),
            })?,
        );
        Ok((
            bytes::Bytes::from(rewritten),
            headers,
            crate::sign::Payload::Sha256(sha256),
        ))
    }
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

/// Operations whose response documents name keys or the bucket.
fn names_keys(operation: Operation) -> bool {
    matches!(
        operation,
        Operation::ListObjects
            | Operation::ListObjectsV2
            | Operation::ListMultipartUploads
            | Operation::ListParts
            | Operation::CreateMultipartUpload
            | Operation::CompleteMultipartUpload
            | Operation::DeleteObjects
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

/// Reads a (small, capped) response document and rewrites its keys and bucket name.
/// What a response document is rewritten against.
struct ListingContext<'a> {
    prefix: &'a str,
    logical_bucket: &'a str,
    encoding: KeyEncoding,
    /// The query as the client sent it (markers are echoed from here).
    client_query: &'a [(String, String)],
}

async fn rewrite_response(
    response: Response<ProxyBody>,
    listing: ListingContext<'_>,
) -> Result<Response<ProxyBody>, Error> {
    let (mut parts, upstream_body) = response.into_parts();
    let document = body::collect_capped(upstream_body, MAX_DOCUMENT)
        .await
        .map_err(|_| Error::Internal {
            detail: "an upstream listing could not be read".to_string(),
        })?;
    let text = std::str::from_utf8(&document).map_err(|_| Error::Internal {
        detail: "an upstream listing is not UTF-8".to_string(),
    })?;
    let rewritten = crate::rewrite::response(
        text,
        listing.prefix,
        listing.logical_bucket,
        listing.encoding,
        listing.client_query,
    )?;
    parts.headers.insert(
        header::CONTENT_LENGTH,
        http::HeaderValue::from(rewritten.len()),
    );
    Ok(Response::from_parts(
        parts,
        body::full(bytes::Bytes::from(rewritten)),
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

/// GetBucketLocation, as S3 answers it (`us-east-1` is the empty constraint).
fn bucket_location(integration: &Integration) -> Response<ProxyBody> {
    let constraint = if integration.region == "us-east-1" {
        String::new()
    } else {
        crate::error::xml_escape(&integration.region)
    };
    let document = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{constraint}</LocationConstraint>"
    );
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

/// Accepts connections on `listener` until `shutdown` completes, then waits (up to a deadline)
/// for in-flight requests to finish.
pub async fn run(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
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
        let proxy = proxy.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let proxy = proxy.clone();
            async move { Ok::<_, std::convert::Infallible>(proxy.handle(request).await) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, error = %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_DEADLINE) => {
            tracing::warn!("in-flight requests still running at the drain deadline");
        }
    }
    Ok(())
}

/// Binds the configured address and serves until `shutdown`; returns the bound address through
/// `on_bound` first (tests bind port 0).
pub async fn serve(
    config: &Config,
    shutdown: impl Future<Output = ()>,
    on_bound: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let proxy = Arc::new(Proxy::new(config)?);
    let listener = TcpListener::bind(config.server.listen).await?;
    on_bound(listener.local_addr()?);
    run(listener, proxy, shutdown).await
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
