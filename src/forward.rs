//! Forwarding: sends the signed request upstream and streams the answer back.
//!
//! One pooled `hyper` client (rustls on ring, HTTP/1.1 and HTTP/2 by ALPN) serves every
//! integration. Its resolver answers `localhost` and `*.localhost` with 127.0.0.1 itself
//! (RFC 6761), so virtual-host style works against a local store with no `/etc/hosts` edits.
//! Response bodies are handed back frame by frame: nothing is collected, and an upstream error
//! mid-body stays an error so the client sees an aborted transfer, not a short clean one.
//! Response headers are allow-listed: entity and S3 metadata headers pass, hop-by-hop headers,
//! cookies and the upstream's CORS headers do not.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, Request, Response, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::rt::TokioExecutor;

use crate::body::{self, ProxyBody};
use crate::error::Error;

type Connector = hyper_rustls::HttpsConnector<HttpConnector<LoopbackResolver>>;

/// The upstream HTTP client, shared by every request.
#[derive(Clone)]
pub struct Upstream {
    client: Client<Connector, ProxyBody>,
}

impl Upstream {
    pub fn new() -> Result<Self, rustls::Error> {
        let mut http = HttpConnector::new_with_resolver(LoopbackResolver::default());
        http.enforce_http(false);
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build(https);
        Ok(Upstream { client })
    }

    /// Sends the request and returns the upstream's response with its headers filtered and its
    /// body streaming.
    pub async fn send(
        &self,
        request: Request<ProxyBody>,
        integration: &str,
    ) -> Result<Response<ProxyBody>, Error> {
        let response = self.client.request(request).await.map_err(|error| {
            tracing::warn!(%integration, error = %error_chain(&error), "upstream request failed");
            Error::UpstreamUnreachable {
                integration: integration.to_string(),
            }
        })?;
        let (mut parts, incoming) = response.into_parts();
        parts.headers = filter_response_headers(&parts.headers);
        Ok(Response::from_parts(parts, body::stream(incoming)))
    }
}

/// Response headers a client may see. Hop-by-hop headers (RFC 9110 §7.6.1) are never on the
/// list; the proxy will set its own CORS headers, so the upstream's are dropped too.
fn forwardable_response_header(name: &HeaderName) -> bool {
    const EXACT: &[HeaderName] = &[
        header::ACCEPT_RANGES,
        header::CACHE_CONTROL,
        header::CONTENT_DISPOSITION,
        header::CONTENT_ENCODING,
        header::CONTENT_LANGUAGE,
        header::CONTENT_LENGTH,
        header::CONTENT_RANGE,
        header::CONTENT_TYPE,
        header::DATE,
        header::ETAG,
        header::EXPIRES,
        header::LAST_MODIFIED,
        header::RETRY_AFTER,
    ];
    let text = name.as_str();
    EXACT.contains(name) || (text.starts_with("x-amz-") && text != "x-amz-security-token")
}

fn filter_response_headers(upstream: &HeaderMap) -> HeaderMap {
    // Headers named by `Connection` are hop-by-hop even when otherwise allowed.
    let named_by_connection: Vec<String> = upstream
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .collect();
    let mut kept = HeaderMap::with_capacity(upstream.len());
    for (name, value) in upstream {
        if forwardable_response_header(name)
            && !named_by_connection.iter().any(|n| n == name.as_str())
        {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// System DNS, except that `localhost` and `*.localhost` are loopback (RFC 6761). Test stores
/// bind IPv4 only, so the answer is 127.0.0.1 rather than whatever `/etc/hosts` lists first.
#[derive(Clone)]
pub struct LoopbackResolver {
    system: GaiResolver,
}

impl Default for LoopbackResolver {
    fn default() -> Self {
        LoopbackResolver {
            system: GaiResolver::new(),
        }
    }
}

type Addresses = std::vec::IntoIter<SocketAddr>;

impl tower_service::Service<Name> for LoopbackResolver {
    type Response = Addresses;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Addresses, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.system.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        if host == "localhost" || host.ends_with(".localhost") {
            let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
            return Box::pin(async move { Ok(vec![loopback].into_iter()) });
        }
        let lookup = self.system.call(name);
        Box::pin(async move { Ok(lookup.await?.collect::<Vec<_>>().into_iter()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use tower_service::Service;

    #[test]
    fn hop_by_hop_cookies_and_cors_headers_are_dropped() {
        let mut upstream = HeaderMap::new();
        for (name, value) in [
            ("content-length", "10"),
            ("etag", "\"abc\""),
            ("x-amz-request-id", "REQ"),
            ("x-amz-meta-owner", "me"),
            ("x-amz-security-token", "leak"),
            ("connection", "keep-alive, x-amz-meta-owner"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("set-cookie", "a=b"),
            ("access-control-allow-origin", "*"),
            ("server", "AmazonS3"),
        ] {
            upstream.append(name, HeaderValue::from_static(value));
        }
        let kept = filter_response_headers(&upstream);
        let mut names: Vec<&str> = kept.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-length", "etag", "x-amz-request-id"]);
    }

    #[tokio::test]
    async fn localhost_names_resolve_to_ipv4_loopback() {
        let mut resolver = LoopbackResolver::default();
        for host in ["localhost", "my-bucket.localhost", "A.B.LOCALHOST."] {
            let name: Name = host.parse().expect("name");
            let addresses: Vec<SocketAddr> = resolver.call(name).await.expect("resolves").collect();
            assert_eq!(
                addresses,
                vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
                "{host}"
            );
        }
    }
}
