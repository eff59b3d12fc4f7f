//! The one error type of the request path, and the one place it becomes an S3 XML response.
//!
//! Every step of a request (`route`, `integration`, `credentials`, `sign`, `forward`) returns
//! [`Error`]; `server` turns it into a response with [`Error::into_response`]. Each variant is
//! mapped to its S3 error code and HTTP status by an exhaustive match, so a new variant forces a
//! decision on both. Messages are written for the caller and never carry secrets, signatures or
//! the upstream's credentials.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::s3::body::{self, ProxyBody};
use crate::s3::xml::{Element, Writer};

/// The header every answer carries the proxy's request id in.
pub(crate) const X_AMZ_REQUEST_ID: http::HeaderName =
    http::HeaderName::from_static("x-amz-request-id");

/// Why the proxy itself refused or failed a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The logical bucket names no integration or permitted bucket.
    #[error("The specified bucket does not exist or is not served by this proxy: {name}")]
    NoSuchBucket {
        /// The logical bucket as requested.
        name: String,
    },

    /// CreateBucket on a bucket the caller may already write to: what S3 answers its owner.
    #[error("Your previous request to create the named bucket succeeded and you already own it.")]
    BucketAlreadyOwnedByYou,

    /// SigV2 is switched off (`[server] sigv2 = false`); S3's answer where it is unsupported.
    #[error(
        "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."
    )]
    SignatureVersionNotSupported,

    /// The bucket part of the locator is not a valid bucket name (e.g. an encoded `/`).
    #[error("The specified bucket name is not valid: {reason}")]
    InvalidBucketName {
        /// Why, in words the caller may see.
        reason: String,
    },

    /// A malformed argument (S3's catch-all for bad input).
    #[error("{reason}")]
    InvalidArgument {
        /// Why, in words the caller may see.
        reason: String,
    },

    /// The `Authorization` header cannot be parsed.
    #[error("{reason}")]
    AuthorizationHeaderMalformed {
        /// Why, in words the caller may see.
        reason: String,
    },

    /// A presigned URL's `X-Amz-*` parameters are missing or malformed.
    #[error("{reason}")]
    AuthorizationQueryParametersError {
        /// Why, in words the caller may see.
        reason: String,
    },

    /// The access key id is not one the proxy issued.
    #[error("The AWS Access Key Id you provided does not exist in our records.")]
    InvalidAccessKeyId,

    /// The recomputed signature differs from the one sent.
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your key and signing method."
    )]
    SignatureDoesNotMatch,

    /// The request's time is more than 15 minutes from the proxy's.
    #[error("The difference between the request time and the current time is too large.")]
    RequestTimeTooSkewed,

    /// The caller may not do this here.
    #[error("Access Denied: {reason}")]
    AccessDenied {
        /// Why, in words the caller may see.
        reason: String,
    },

    /// The object key is malformed or not allowed by the integration.
    #[error("Invalid object key: {reason}")]
    InvalidKey {
        /// Why, in words the caller may see.
        reason: String,
    },

    /// The key under the integration's prefix is longer than S3 allows.
    #[error("Your key is too long: the upstream key would be {length} bytes, the limit is 1024")]
    KeyTooLong {
        /// The upstream key's length, in bytes.
        length: usize,
    },

    /// An XML request body that cannot be read; `detail` says why, for the log.
    #[error(
        "The XML you provided was not well-formed or did not validate against our published schema."
    )]
    MalformedXML {
        /// What went wrong, for the log only.
        detail: String,
    },

    /// A body whose digest differs from the one the client sent (and perhaps signed).
    #[error("The {header} you specified did not match what we received.")]
    BadDigest {
        /// The header that carried the digest.
        header: &'static str,
    },

    /// A digest header whose value is not the base64 of a digest of its kind.
    #[error("The {header} you specified is not valid.")]
    InvalidDigest {
        /// The header that carried it.
        header: &'static str,
    },

    /// An aws-chunked body shorter or longer than its declared decoded length.
    #[error("You did not provide the number of bytes specified by the Content-Length HTTP header.")]
    IncompleteBody,

    /// A form upload whose body is not well-formed multipart/form-data.
    #[error("The body of your POST request is not well-formed multipart/form-data: {reason}")]
    MalformedPostRequest {
        /// What is wrong, in words the caller may see.
        reason: String,
    },

    /// An upload larger than its policy's `content-length-range` allows.
    #[error("Your proposed upload exceeds the maximum allowed size")]
    EntityTooLarge,

    /// An upload smaller than its policy's `content-length-range` allows.
    #[error("Your proposed upload is smaller than the minimum allowed size")]
    EntityTooSmall,

    /// A body-carrying request without `Content-Length`.
    #[error("You must provide the Content-Length HTTP header.")]
    MissingContentLength,

    /// A `Range` outside the object (answered from the object cache).
    #[error("The requested range is not satisfiable")]
    InvalidRange,

    /// A request shape S3 itself would refuse.
    #[error("{reason}")]
    InvalidRequest {
        /// Why, in words the caller may see.
        reason: String,
    },

    /// The method is not allowed on this resource.
    #[error("The specified method is not allowed against this resource: {method}")]
    MethodNotAllowed {
        /// The method as sent.
        method: String,
    },

    /// A valid S3 operation the proxy does not serve (yet).
    #[error("{operation} is not implemented by this proxy")]
    NotImplemented {
        /// The operation's name.
        operation: String,
    },

    /// The integration's credentials could not be obtained (STS refused or unreachable).
    #[error("The proxy could not obtain credentials for integration {integration}: {reason}")]
    CredentialsUnavailable {
        /// The integration's name.
        integration: String,
        /// Why, in words the caller may see.
        reason: String,
    },

    /// An integration or client fetched on demand could not be read from the platform's
    /// database (`[source] preload = false`): it is neither known nor known to be absent.
    #[error("The proxy could not read {what} from its integration source; retry shortly")]
    SourceUnavailable {
        /// `integration NAME` or `client KEY`.
        what: String,
    },

    /// The upstream could not be reached or failed before sending a response.
    #[error("The upstream store for integration {integration} could not be reached")]
    UpstreamUnreachable {
        /// The integration's name.
        integration: String,
    },

    /// The store's answer broke off before the document the proxy reads was whole (a reset,
    /// a body shorter than its length): the store's fault, as an unreachable store is.
    #[error("The upstream store for integration {integration} broke off its answer")]
    UpstreamBroken {
        /// The integration's name.
        integration: String,
        /// What went wrong, for the log only.
        detail: String,
    },

    /// The upstream refused the proxy's own credentials (its code is logged, not shown).
    #[error(
        "The upstream store refused the proxy's credentials for integration {integration}. Please try again."
    )]
    UpstreamRefusedCredentials {
        /// The integration's name.
        integration: String,
    },

    /// The upstream sent no response headers within the configured time.
    #[error(
        "The upstream store for integration {integration} did not answer in time. Please try again."
    )]
    UpstreamTimeout {
        /// The integration's name.
        integration: String,
    },

    /// The caller is over its request rate.
    #[error("Please reduce your request rate.")]
    SlowDown {
        /// Sent as `Retry-After`.
        retry_after_seconds: u64,
    },

    /// The request target is longer than the configured limit.
    #[error("The request URI is longer than {limit} bytes.")]
    UriTooLong {
        /// The configured `max_uri_bytes`.
        limit: usize,
    },

    /// The request line and headers are longer than `max_header_bytes`.
    #[error("Your request's header section exceeds the maximum allowed size of {limit} bytes.")]
    HeadersTooLarge {
        /// The configured `max_header_bytes`.
        limit: usize,
    },

    /// A bug or an impossible state; details go to the log only.
    #[error("We encountered an internal error. Please try again.")]
    Internal {
        /// What went wrong, for the log only.
        detail: String,
    },
}

impl Error {
    /// S3's error code for this error, as in `<Code>`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NoSuchBucket { .. } => "NoSuchBucket",
            Error::InvalidBucketName { .. } => "InvalidBucketName",
            Error::BucketAlreadyOwnedByYou => "BucketAlreadyOwnedByYou",
            Error::SignatureVersionNotSupported => "InvalidRequest",
            Error::AccessDenied { .. } => "AccessDenied",
            Error::InvalidKey { .. } | Error::InvalidArgument { .. } => "InvalidArgument",
            Error::AuthorizationHeaderMalformed { .. } => "AuthorizationHeaderMalformed",
            Error::AuthorizationQueryParametersError { .. } => "AuthorizationQueryParametersError",
            Error::InvalidAccessKeyId => "InvalidAccessKeyId",
            Error::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            Error::RequestTimeTooSkewed => "RequestTimeTooSkewed",
            Error::KeyTooLong { .. } => "KeyTooLongError",
            Error::InvalidRequest { .. } => "InvalidRequest",
            Error::MissingContentLength => "MissingContentLength",
            Error::InvalidRange => "InvalidRange",
            Error::MalformedXML { .. } => "MalformedXML",
            Error::BadDigest { .. } => "BadDigest",
            Error::InvalidDigest { .. } => "InvalidDigest",
            Error::IncompleteBody => "IncompleteBody",
            Error::MalformedPostRequest { .. } => "MalformedPOSTRequest",
            Error::EntityTooLarge => "EntityTooLarge",
            Error::EntityTooSmall => "EntityTooSmall",
            Error::MethodNotAllowed { .. } => "MethodNotAllowed",
            Error::NotImplemented { .. } => "NotImplemented",
            Error::CredentialsUnavailable { .. } | Error::SourceUnavailable { .. } => {
                "ServiceUnavailable"
            }
            Error::UpstreamUnreachable { .. } | Error::UpstreamBroken { .. } => "BadGateway",
            Error::UpstreamTimeout { .. } => "RequestTimeout",
            Error::UpstreamRefusedCredentials { .. } => "ServiceUnavailable",
            Error::SlowDown { .. } => "SlowDown",
            Error::UriTooLong { .. } => "RequestURITooLong",
            Error::HeadersTooLarge { .. } => "RequestHeaderSectionTooLarge",
            Error::Internal { .. } => "InternalError",
        }
    }

    /// The HTTP status S3 uses for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::NoSuchBucket { .. } => StatusCode::NOT_FOUND,
            Error::InvalidBucketName { .. }
            | Error::InvalidKey { .. }
            | Error::InvalidArgument { .. }
            | Error::AuthorizationHeaderMalformed { .. }
            | Error::AuthorizationQueryParametersError { .. }
            | Error::MalformedXML { .. }
            | Error::BadDigest { .. }
            | Error::InvalidDigest { .. }
            | Error::IncompleteBody
            | Error::MalformedPostRequest { .. }
            | Error::EntityTooLarge
            | Error::EntityTooSmall
            | Error::KeyTooLong { .. }
            | Error::SignatureVersionNotSupported
            | Error::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Error::BucketAlreadyOwnedByYou => StatusCode::CONFLICT,
            Error::AccessDenied { .. }
            | Error::InvalidAccessKeyId
            | Error::SignatureDoesNotMatch
            | Error::RequestTimeTooSkewed => StatusCode::FORBIDDEN,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::MissingContentLength => StatusCode::LENGTH_REQUIRED,
            Error::InvalidRange => StatusCode::RANGE_NOT_SATISFIABLE,
            Error::NotImplemented { .. } => StatusCode::NOT_IMPLEMENTED,
            Error::CredentialsUnavailable { .. } | Error::SourceUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::UpstreamUnreachable { .. } | Error::UpstreamBroken { .. } => {
                StatusCode::BAD_GATEWAY
            }
            Error::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::UpstreamRefusedCredentials { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::SlowDown { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Error::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Error::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Renders the error as S3 does: an XML `<Error>` document with the request id, which is
    /// also sent as `x-amz-request-id` so a caller can quote it and an operator can grep for it.
    /// A HEAD response carries the same status and headers but no body, as S3's does.
    pub fn into_response(self, request_id: &str, is_head: bool) -> Response<ProxyBody> {
        let retry_after = match &self {
            Error::SlowDown {
                retry_after_seconds,
            } => Some(*retry_after_seconds),
            Error::CredentialsUnavailable { .. }
            | Error::SourceUnavailable { .. }
            | Error::UpstreamTimeout { .. }
            | Error::UpstreamRefusedCredentials { .. } => Some(5),
            _ => None,
        };
        let document = Writer::document(&Element::parent(
            "Error",
            vec![
                Element::text("Code", self.code()),
                Element::text("Message", self.to_string()),
                Element::text("RequestId", request_id),
            ],
        ));
        let length = document.len();
        let body = if is_head {
            body::empty()
        } else {
            body::full(Bytes::from(document))
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        if let Ok(value) = HeaderValue::from_str(request_id) {
            headers.insert(X_AMZ_REQUEST_ID, value);
        }
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn renders_s3_xml_with_request_id() {
        let error = Error::NoSuchBucket {
            name: "a<b".to_string(),
        };
        let response = error.into_response("REQ123", false);
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()["x-amz-request-id"], "REQ123");
        let body = response.into_body().collect().await.map(|b| b.to_bytes());
        let text =
            String::from_utf8(body.map(|b| b.to_vec()).unwrap_or_default()).unwrap_or_default();
        assert!(text.contains("<Code>NoSuchBucket</Code>"), "{text}");
        assert!(text.contains("a&lt;b"), "{text}");
        assert!(text.contains("<RequestId>REQ123</RequestId>"), "{text}");
    }

    #[test]
    fn head_errors_have_no_body_but_keep_status() {
        let response = Error::AccessDenied {
            reason: "x".to_string(),
        }
        .into_response("R", true);
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(http_body::Body::is_end_stream(response.body()));
    }
}
