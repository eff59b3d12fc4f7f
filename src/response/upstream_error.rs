//! Upstream error documents, rebuilt: a store's error can echo signing material
//! (`StringToSign`, `CanonicalRequest`, the access key id) and the real bucket and prefix, so
//! the client gets a document the proxy wrote from the error's code alone.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::s3::body::{self, ProxyBody};
use crate::s3::documents::{code_of, error_document};
use crate::s3::error::Error;
use crate::s3::xml::{Element, MAX_DOCUMENT, Writer};

/// Upstream error codes that mean the proxy's own credentials were refused: the client's
/// request was fine.
const CREDENTIAL_CODES: &[&str] = &[
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
];

/// Whether an S3 error code says the proxy's own credentials were refused.
pub fn is_credentials_code(code: &str) -> bool {
    CREDENTIAL_CODES.contains(&code.trim())
}

/// What an upstream error document becomes.
pub enum UpstreamError {
    /// A clean S3 error document with the upstream's status; its code and the store's own
    /// request id (from the document) are kept for the log.
    Clean {
        response: Response<ProxyBody>,
        code: String,
        store_request_id: Option<String>,
    },
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
    request_id: &str,
) -> Result<UpstreamError, Error> {
    let (mut parts, upstream_body) = response.into_parts();
    let document = body::collect_capped(upstream_body, MAX_DOCUMENT)
        .await
        .unwrap_or_default();
    // Whatever the store wrote, the client gets a document the proxy wrote: a HEAD's empty
    // body, or a broken document, becomes the status's default code.
    let error = crate::s3::xml::parse(&document)
        .ok()
        .and_then(find_error)
        .unwrap_or_else(|| Element::parent("Error", Vec::new()));
    let code = code_of(&error).unwrap_or_else(|| default_code(parts.status).to_string());
    if CREDENTIAL_CODES.contains(&code.as_str()) {
        return Ok(UpstreamError::CredentialsRefused { code });
    }
    let store_request_id = crate::s3::documents::request_id_of(&error);
    let clean = Writer::document(&error_document(&error, code.clone(), hidden, request_id));
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(clean.len()));
    parts.headers.remove(header::CONTENT_ENCODING);
    Ok(UpstreamError::Clean {
        response: Response::from_parts(parts, body::full(Bytes::from(clean))),
        code,
        store_request_id,
    })
}

/// The `<Error>` element of an error document: the root, or (as some stores write it) one
/// wrapped in `<ErrorResponse>`.
fn find_error(root: Element) -> Option<Element> {
    if root.name == "Error" {
        return Some(root);
    }
    root.children.into_iter().find_map(|child| {
        if child.name == "Error" {
            Some(child)
        } else {
            child.children.into_iter().find(|c| c.name == "Error")
        }
    })
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

    #[tokio::test]
    async fn upstream_error_documents_lose_everything_but_code_and_a_safe_message() {
        let document = "<Error><Code>AccessDenied</Code><Message>Access Denied for real-bucket/tenant/x</Message>\
            <AWSAccessKeyId>ASIAPROXY</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256 …</StringToSign>\
            <CanonicalRequest>x-amz-security-token:FQoTOKEN</CanonicalRequest><RequestId>UP1</RequestId></Error>";
        let mut response = Response::new(body::full(Bytes::from(document)));
        *response.status_mut() = StatusCode::FORBIDDEN;
        let UpstreamError::Clean {
            response: clean,
            code,
            store_request_id,
        } = sanitize_error(response, &["real-bucket", "tenant/"], "PROXY1")
            .await
            .expect("sanitised")
        else {
            panic!("not a credentials error");
        };
        assert_eq!(clean.status(), StatusCode::FORBIDDEN);
        assert_eq!(code, "AccessDenied");
        assert_eq!(store_request_id.as_deref(), Some("UP1"));
        let text = body::collect_capped(clean.into_body(), 4096)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&text);
        assert!(text.contains("<Code>AccessDenied</Code>"), "{text}");
        assert!(text.contains("<RequestId>PROXY1</RequestId>"), "{text}");
        for leaked in [
            "real-bucket",
            "ASIAPROXY",
            "FQoTOKEN",
            "StringToSign",
            "Canonical",
            "UP1",
        ] {
            assert!(!text.contains(leaked), "{leaked} in {text}");
        }

        let refused =
            "<Error><Code>SignatureDoesNotMatch</Code><StringToSign>x</StringToSign></Error>";
        let mut response = Response::new(body::full(Bytes::from(refused)));
        *response.status_mut() = StatusCode::FORBIDDEN;
        assert!(matches!(
            sanitize_error(response, &[], "PROXY2").await,
            Ok(UpstreamError::CredentialsRefused { code }) if code == "SignatureDoesNotMatch"
        ));
    }
}
