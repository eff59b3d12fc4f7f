//! CORS, answered by the proxy for each integration, so customers need no CORS rules on their
//! buckets (the upstream's own CORS headers are dropped by `forward`).
//!
//! A preflight (`OPTIONS`) never reaches the upstream: it is allowed when the `Origin` is one of
//! the integration's `cors_origins` and the method is one the integration's access permits.
//! Actual responses (and the proxy's own errors, so a page can read them) carry
//! `Access-Control-Allow-Origin` for allowed origins only, always with `Vary: Origin`.

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use crate::config::{Access, Integration};
use crate::s3::body::{self, ProxyBody};
use crate::s3::error::Error;

/// Response headers a page may read: what media players and S3 clients look at.
const EXPOSED: &str = "ETag, Content-Range, Accept-Ranges, Content-Length, Content-Type, Last-Modified, x-amz-request-id, x-amz-version-id";
/// Request headers a page may send.
const ALLOWED_REQUEST_HEADERS: &[&str] = &[
    "authorization",
    "cache-control",
    "content-md5",
    "content-type",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-unmodified-since",
    "range",
];
const PREFLIGHT_MAX_AGE: &str = "600";

fn methods(access: Access) -> &'static str {
    match access {
        Access::ReadOnly => "GET, HEAD",
        Access::ReadWrite => "GET, HEAD, PUT, POST, DELETE",
    }
}

/// The `Access-Control-Allow-Origin` value for `origin`, if the integration allows it.
fn allow_origin(integration: &Integration, origin: &HeaderValue) -> Option<HeaderValue> {
    let origin_text = origin.to_str().ok()?;
    integration.cors_origins.iter().find_map(|allowed| {
        if allowed == "*" {
            Some(HeaderValue::from_static("*"))
        } else if allowed.eq_ignore_ascii_case(origin_text) {
            Some(origin.clone())
        } else {
            None
        }
    })
}

/// A listed origin's pages may send cookies (a signed policy's) with their fetches; a
/// wildcard origin never: `*` with credentials would let any site read with a user's cookies.
fn allow_credentials(headers: &mut HeaderMap, allowed_origin: &HeaderValue) {
    if allowed_origin != "*" {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

/// Headers added to an actual response for a request from `origin`. `Vary: Origin` is always
/// there, so a shared cache never serves one origin's answer to another.
pub fn response_headers(integration: &Integration, origin: Option<&HeaderValue>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if integration.cors_origins.is_empty() {
        return headers;
    }
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(allowed) = origin.and_then(|origin| allow_origin(integration, origin)) {
        allow_credentials(&mut headers, &allowed);
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED),
        );
    }
    headers
}

/// Answers a preflight without the upstream.
pub fn preflight(
    integration: &Integration,
    request_headers: &HeaderMap,
) -> Result<Response<ProxyBody>, Error> {
    let refused = |why: &str| Error::AccessDenied {
        reason: format!("CORSResponse: This CORS request is not allowed ({why})"),
    };
    let origin = request_headers
        .get(header::ORIGIN)
        .ok_or_else(|| refused("no Origin"))?;
    let allowed_origin =
        allow_origin(integration, origin).ok_or_else(|| refused("origin not allowed"))?;
    let method = request_headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| m.to_str().ok())
        .ok_or_else(|| refused("no Access-Control-Request-Method"))?;
    let allowed_methods = methods(integration.access);
    if !allowed_methods.split(", ").any(|m| m == method) {
        return Err(refused("method not allowed"));
    }
    let requested: Vec<String> = request_headers
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    let allowed_header = |h: &String| {
        ALLOWED_REQUEST_HEADERS.contains(&h.as_str())
            || (h.starts_with("x-amz-") && h != "x-amz-security-token")
    };
    if let Some(bad) = requested.iter().find(|h| !allowed_header(h)) {
        return Err(refused(&format!("header {bad} not allowed")));
    }

    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    allow_credentials(headers, &allowed_origin);
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed_origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(allowed_methods),
    );
    if !requested.is_empty()
        && let Ok(value) = HeaderValue::from_str(&requested.join(", "))
    {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
    }
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Addressing, Buckets, CredentialSource, Delivery};

    fn integration(origins: &[&str], access: Access) -> Integration {
        Integration {
            name: "media".to_string(),
            buckets: Buckets::Scoped("media-bucket".to_string()),
            prefix: String::new(),
            region: crate::config::Region::Named("us-east-1".to_string()),
            endpoint: None,
            ca_file: None,
            addressing: Addressing::Path,
            access,
            public: false,
            allow_unusual_keys: false,
            allow_acl_headers: false,
            active_content: crate::config::ActiveContent::Sandbox,
            credentials: CredentialSource::DefaultChain,
            cors_origins: origins.iter().map(|o| o.to_string()).collect(),
            delivery: Delivery::Stream,
            cache: None,
        }
    }

    fn preflight_headers(origin: &str, method: &str, headers: Option<&str>) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        map.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_str(method).unwrap(),
        );
        if let Some(headers) = headers {
            map.insert(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                HeaderValue::from_str(headers).unwrap(),
            );
        }
        map
    }

    #[test]
    fn preflight_allows_listed_origins_and_methods_by_access() {
        let read_only = integration(&["https://app.example.com"], Access::ReadOnly);
        let ok = preflight(
            &read_only,
            &preflight_headers(
                "https://app.example.com",
                "GET",
                Some("Range, If-None-Match"),
            ),
        )
        .expect("allowed");
        assert_eq!(
            ok.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert_eq!(
            ok.headers()[header::ACCESS_CONTROL_ALLOW_METHODS],
            "GET, HEAD"
        );
        assert_eq!(
            ok.headers()[header::ACCESS_CONTROL_ALLOW_CREDENTIALS],
            "true"
        );
        assert_eq!(
            ok.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "range, if-none-match"
        );
        assert_eq!(ok.headers()[header::VARY], "Origin");
        for (origin, method, headers) in [
            ("https://evil.example.com", "GET", None),
            ("https://app.example.com", "PUT", None),
            (
                "https://app.example.com",
                "GET",
                Some("x-amz-security-token"),
            ),
            ("https://app.example.com", "GET", Some("cookie")),
        ] {
            let refused = preflight(&read_only, &preflight_headers(origin, method, headers));
            assert_eq!(
                refused.map(|_| ()).map_err(|e| e.code()),
                Err("AccessDenied"),
                "{origin} {method}"
            );
        }
        let read_write = integration(&["https://app.example.com"], Access::ReadWrite);
        assert!(
            preflight(
                &read_write,
                &preflight_headers("https://app.example.com", "PUT", None)
            )
            .is_ok()
        );
    }

    #[test]
    fn responses_echo_only_allowed_origins() {
        let media = integration(&["https://app.example.com"], Access::ReadOnly);
        let allowed = response_headers(
            &media,
            Some(&HeaderValue::from_static("https://app.example.com")),
        );
        assert_eq!(
            allowed[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert!(
            allowed[header::ACCESS_CONTROL_EXPOSE_HEADERS]
                .to_str()
                .unwrap()
                .contains("Content-Range")
        );
        let other = response_headers(
            &media,
            Some(&HeaderValue::from_static("https://evil.example.com")),
        );
        assert!(other.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert_eq!(other[header::VARY], "Origin");
        let no_cors = response_headers(&integration(&[], Access::ReadOnly), None);
        assert!(no_cors.is_empty());
    }

    #[test]
    fn credentials_are_allowed_for_listed_origins_never_with_a_wildcard() {
        let origin = HeaderValue::from_static("https://app.example.com");
        let listed = integration(&["https://app.example.com"], Access::ReadOnly);
        let headers = response_headers(&listed, Some(&origin));
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        let mut public = integration(&["*"], Access::ReadOnly);
        public.public = true;
        let headers = response_headers(&public, Some(&origin));
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(
            headers
                .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
                .is_none()
        );
        let preflight_answer = preflight(
            &public,
            &preflight_headers("https://x.example", "GET", None),
        )
        .expect("allowed");
        assert!(
            preflight_answer
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
                .is_none()
        );
    }
}
