//! What a multi-tenant origin must refuse or neutralise: ambiguous `x-amz-*` headers, ACL
//! headers that would publish a tenant's objects, active content (HTML, SVG) running script
//! with the proxy's origin, and upstream error documents that echo signing material or the real
//! bucket and prefix.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use crate::body::{self, ProxyBody};
use crate::config::{ActiveContent, Integration};
use crate::error::{Error, xml_escape};
use crate::rewrite::MAX_DOCUMENT;

/// Canned ACLs that keep an object private to the bucket's owner (what cross-account writers
/// send); every other `x-amz-acl` needs `allow_acl_headers`.
const PRIVATE_ACLS: &[&str] = &["private", "bucket-owner-read", "bucket-owner-full-control"];

/// Refuses request shapes used for smuggling or to aim the proxy elsewhere, whatever the
/// HTTP parser let through: an absolute-form target over HTTP/1 (the upstream comes only from
/// the config), both `Content-Length` and `Transfer-Encoding`, repeated `Content-Length`, any
/// transfer coding but a single `chunked`, and a body on a method that takes none.
pub fn check_request_shape<B>(request: &http::Request<B>) -> Result<(), Error> {
    let refuse = |reason: &str| {
        Err(Error::InvalidRequest {
            reason: reason.to_string(),
        })
    };
    if request.version() <= http::Version::HTTP_11 && request.uri().scheme().is_some() {
        return refuse("absolute-form request targets are not served");
    }
    let headers = request.headers();
    let lengths = headers.get_all(header::CONTENT_LENGTH).iter().count();
    let codings: Vec<&HeaderValue> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    if lengths > 1 {
        return refuse("Content-Length is repeated");
    }
    let bodiless = matches!(
        *request.method(),
        http::Method::GET | http::Method::HEAD | http::Method::DELETE | http::Method::OPTIONS
    );
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() != "0");
    if bodiless && (!codings.is_empty() || declared_length) {
        return refuse("this method takes no request body");
    }
    if !codings.is_empty() {
        if lengths > 0 {
            return refuse("Content-Length and Transfer-Encoding together");
        }
        let only_chunked = codings.len() == 1
            && codings[0]
                .to_str()
                .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        if !only_chunked {
            return refuse("the only transfer coding served is a single chunked");
        }
    }
    Ok(())
}

/// Refuses `x_amz_*` header names (some servers fold `_` into `-`, making two spellings of one
/// header) and repeated `x-amz-*` headers (which value would count is ambiguous).
pub fn check_request_headers(headers: &HeaderMap) -> Result<(), Error> {
    for name in headers.keys() {
        let text = name.as_str();
        if text.starts_with("x_amz") || text.starts_with("x-amz_") {
            return Err(Error::InvalidArgument {
                reason: format!("header {text} is not allowed: use x-amz- with hyphens"),
            });
        }
        if text.starts_with("x-amz-") && headers.get_all(name).iter().nth(1).is_some() {
            return Err(Error::InvalidArgument {
                reason: format!("header {text} is repeated"),
            });
        }
    }
    Ok(())
}

/// Refuses ACL headers that would share objects beyond the bucket's owner, unless the
/// integration allows them.
pub fn check_acl_headers(headers: &HeaderMap, integration: &Integration) -> Result<(), Error> {
    if integration.allow_acl_headers {
        return Ok(());
    }
    for (name, value) in headers {
        let text = name.as_str();
        let refused = match text {
            "x-amz-acl" => value
                .to_str()
                .map(|acl| !PRIVATE_ACLS.contains(&acl.trim()))
                .unwrap_or(true),
            "x-amz-website-redirect-location" => true,
            _ => text.starts_with("x-amz-grant-"),
        };
        if refused {
            return Err(Error::AccessDenied {
                reason: format!(
                    "{text} is not allowed on integration {}; objects stay private to the bucket's owner",
                    integration.name
                ),
            });
        }
    }
    Ok(())
}

/// Whether a browser would run script in a document of this type.
pub fn is_active_type(content_type: &str) -> bool {
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    matches!(
        media_type.as_str(),
        "text/html"
            | "application/xhtml+xml"
            | "image/svg+xml"
            | "text/xml"
            | "application/xml"
            | "text/xsl"
            | "application/xslt+xml"
            | "text/javascript"
            | "application/javascript"
            | "application/ecmascript"
            | "text/ecmascript"
            | "multipart/x-mixed-replace"
    )
}

/// Refuses a `response-content-type` override to an active type on a browser-reachable
/// request (anonymous or presigned): it would turn any object into a page of the origin.
pub fn check_type_override(
    query: &[(String, String)],
    browser_reachable: bool,
    integration: &Integration,
) -> Result<(), Error> {
    if !browser_reachable || integration.active_content == ActiveContent::Allow {
        return Ok(());
    }
    let active = query
        .iter()
        .any(|(name, value)| name == "response-content-type" && is_active_type(value));
    if active {
        return Err(Error::AccessDenied {
            reason: "response-content-type may not name a type browsers run script in".to_string(),
        });
    }
    Ok(())
}

/// Headers every answer carries, and the integration's treatment of active content.
pub fn protect(headers: &mut HeaderMap, integration: Option<&Integration>) {
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    let Some(integration) = integration else {
        return;
    };
    let active = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_active_type);
    if !active {
        return;
    }
    match integration.active_content {
        ActiveContent::Sandbox => {
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("sandbox"),
            );
        }
        ActiveContent::Attachment => {
            headers.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment"),
            );
        }
        ActiveContent::Allow => {}
    }
}

/// Upstream error codes that mean the proxy's own credentials were refused: the client's
/// request was fine.
const CREDENTIAL_CODES: &[&str] = &[
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
];

/// What an upstream error document becomes.
pub enum UpstreamError {
    /// A clean S3 error document with the upstream's status and code.
    Clean(Response<ProxyBody>),
    /// The upstream refused the proxy's credentials (its code is kept for the log).
    CredentialsRefused { code: String },
}

/// Rebuilds an upstream error document from its `Code` alone (plus a `Message` that names
/// none of `hidden`: the real bucket, prefix, access key id, session token), dropping
/// `CanonicalRequest`, `StringToSign`, `SignatureProvided`, `AWSAccessKeyId`, `Key`,
/// `BucketName` and the rest.
pub async fn sanitize_error(
    response: Response<ProxyBody>,
    hidden: &[&str],
) -> Result<UpstreamError, Error> {
    let (mut parts, upstream_body) = response.into_parts();
    let document = body::collect_capped(upstream_body, MAX_DOCUMENT)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&document);
    let element = |name: &str| {
        let (_, rest) = text.split_once(&format!("<{name}>"))?;
        let (inner, _) = rest.split_once(&format!("</{name}>"))?;
        Some(inner.to_string())
    };
    let code = element("Code")
        .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'))
        .unwrap_or_else(|| default_code(parts.status).to_string());
    if CREDENTIAL_CODES.contains(&code.as_str()) {
        return Ok(UpstreamError::CredentialsRefused { code });
    }
    let message = element("Message")
        .filter(|m| {
            hidden
                .iter()
                .filter(|h| h.len() >= 3)
                .all(|h| !m.contains(h))
        })
        .unwrap_or_else(|| format!("The upstream store answered {code}."));
    let request_id = element("RequestId").unwrap_or_default();
    let clean = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><RequestId>{}</RequestId></Error>",
        xml_escape(&code),
        xml_escape(&message),
        xml_escape(&request_id),
    );
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(clean.len()));
    parts.headers.remove(header::CONTENT_ENCODING);
    Ok(UpstreamError::Clean(Response::from_parts(
        parts,
        body::full(Bytes::from(clean)),
    )))
}

fn default_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        301 => "PermanentRedirect",
        304 => "NotModified",
        400 => "BadRequest",
        403 => "AccessDenied",
        404 => "NotFound",
        412 => "PreconditionFailed",
        416 => "InvalidRange",
        500 => "InternalError",
        503 => "SlowDown",
        _ => "UpstreamError",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ambiguous_amz_headers_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-meta-a", HeaderValue::from_static("1"));
        assert!(check_request_headers(&headers).is_ok());
        headers.append("x-amz-meta-a", HeaderValue::from_static("2"));
        assert!(check_request_headers(&headers).is_err());
        let mut underscored = HeaderMap::new();
        underscored.insert("x_amz_acl", HeaderValue::from_static("public-read"));
        assert!(check_request_headers(&underscored).is_err());
    }

    #[test]
    fn active_types_are_recognised_with_parameters_and_case() {
        for active in [
            "text/html",
            "Text/HTML; charset=utf-8",
            "image/svg+xml",
            "application/xml",
        ] {
            assert!(is_active_type(active), "{active}");
        }
        for passive in [
            "image/png",
            "video/mp4",
            "text/plain",
            "application/octet-stream",
        ] {
            assert!(!is_active_type(passive), "{passive}");
        }
    }

    #[tokio::test]
    async fn upstream_error_documents_lose_everything_but_code_and_a_safe_message() {
        let document = "<Error><Code>AccessDenied</Code><Message>Access Denied for real-bucket/tenant/x</Message>\
            <AWSAccessKeyId>ASIAPROXY</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256 …</StringToSign>\
            <CanonicalRequest>x-amz-security-token:FQoTOKEN</CanonicalRequest><RequestId>UP1</RequestId></Error>";
        let mut response = Response::new(body::full(Bytes::from(document)));
        *response.status_mut() = StatusCode::FORBIDDEN;
        let UpstreamError::Clean(clean) = sanitize_error(response, &["real-bucket", "tenant/"])
            .await
            .expect("sanitised")
        else {
            panic!("not a credentials error");
        };
        assert_eq!(clean.status(), StatusCode::FORBIDDEN);
        let text = body::collect_capped(clean.into_body(), 4096)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&text);
        assert!(text.contains("<Code>AccessDenied</Code>"), "{text}");
        assert!(text.contains("<RequestId>UP1</RequestId>"), "{text}");
        for leaked in [
            "real-bucket",
            "ASIAPROXY",
            "FQoTOKEN",
            "StringToSign",
            "Canonical",
        ] {
            assert!(!text.contains(leaked), "{leaked} in {text}");
        }

        let refused =
            "<Error><Code>SignatureDoesNotMatch</Code><StringToSign>x</StringToSign></Error>";
        let mut response = Response::new(body::full(Bytes::from(refused)));
        *response.status_mut() = StatusCode::FORBIDDEN;
        assert!(matches!(
            sanitize_error(response, &[]).await,
            Ok(UpstreamError::CredentialsRefused { code }) if code == "SignatureDoesNotMatch"
        ));
    }
}
