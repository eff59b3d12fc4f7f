//! Signing: the upstream request for a [`Target`], signed with SigV4 for its real endpoint.
//!
//! The upstream URL follows the integration's addressing style (virtual-host or path, AWS or a
//! custom endpoint), and its path is the upstream key encoded once, every byte except
//! `A-Z a-z 0-9 - _ . ~ /` as `%XX`, which is how S3 canonicalises it. Only an allow-list of the
//! client's headers is copied (ranges and conditions); the client's `Authorization`, cookies and
//! `x-amz-*` headers never are. The payload is signed as `UNSIGNED-PAYLOAD`.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri, header};

use crate::body::ProxyBody;
use crate::config::{Addressing, Scheme};
use crate::error::Error;
use crate::integration::Target;
use crate::route::Operation;
use crate::sigv4::{encode_key, encode_query};

/// Client headers a read may carry upstream. Everything else is dropped.
const READ_HEADERS: &[&str] = &[
    "range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "x-amz-checksum-mode",
    // GetObjectAttributes: which attributes, and a page of the part list.
    "x-amz-object-attributes",
    "x-amz-max-parts",
    "x-amz-part-number-marker",
];

/// Client headers a write may carry upstream: content description, conditions, ACLs, tags,
/// metadata, checksums, encryption and copy options. `x-amz-copy-source` is rewritten by
/// `integration`, never copied.
const WRITE_HEADERS: &[&str] = &[
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "expires",
    "if-match",
    "if-none-match",
    "x-amz-acl",
    "x-amz-checksum-algorithm",
    "x-amz-copy-source-if-match",
    "x-amz-copy-source-if-modified-since",
    "x-amz-copy-source-if-none-match",
    "x-amz-copy-source-if-unmodified-since",
    "x-amz-copy-source-range",
    "x-amz-metadata-directive",
    "x-amz-sdk-checksum-algorithm",
    "x-amz-storage-class",
    "x-amz-tagging",
    "x-amz-tagging-directive",
    "x-amz-website-redirect-location",
];
const WRITE_HEADER_PREFIXES: &[&str] = &[
    "x-amz-meta-",
    "x-amz-grant-",
    "x-amz-checksum-",
    "x-amz-server-side-encryption",
    "x-amz-object-lock-",
];

fn forwarded(operation: Operation, name: &HeaderName) -> bool {
    let name = name.as_str();
    if operation.is_write() {
        WRITE_HEADERS.contains(&name) || WRITE_HEADER_PREFIXES.iter().any(|p| name.starts_with(p))
    } else {
        READ_HEADERS.contains(&name)
    }
}

/// What the upstream signature says about the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// `UNSIGNED-PAYLOAD`: reads, and writes whose client did not hash the body.
    Unsigned,
    /// The client's own SHA-256 of the body, passed on so the upstream checks it end to end.
    Sha256(String),
}

impl Payload {
    /// The payload a client's `x-amz-content-sha256` asks for. Streaming (aws-chunked) bodies
    /// are not served yet.
    pub fn from_client(headers: &HeaderMap) -> Result<Payload, Error> {
        match headers.get("x-amz-content-sha256").map(|v| v.to_str()) {
            None => Ok(Payload::Unsigned),
            Some(Ok("UNSIGNED-PAYLOAD")) => Ok(Payload::Unsigned),
            Some(Ok(hash)) if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(Payload::Sha256(hash.to_ascii_lowercase()))
            }
            Some(Ok(streaming)) if streaming.starts_with("STREAMING-") => {
                Err(Error::NotImplemented {
                    operation: format!("aws-chunked uploads ({streaming})"),
                })
            }
            Some(_) => Err(Error::InvalidArgument {
                reason: "x-amz-content-sha256 must be a SHA-256 hex digest or UNSIGNED-PAYLOAD"
                    .to_string(),
            }),
        }
    }
}

/// Where the request goes: the URL and the `Host` header that is signed.
pub fn upstream_uri(target: &Target, query: &[(String, String)]) -> Result<Uri, Error> {
    let integration = &target.integration;
    let key = encode_key(&target.key);
    let (scheme, authority, path) = match (&integration.endpoint, integration.addressing) {
        (None, Addressing::VirtualHost) => (
            Scheme::Https,
            format!("{}.s3.{}.amazonaws.com", target.bucket, integration.region),
            format!("/{key}"),
        ),
        (None, Addressing::Path) => (
            Scheme::Https,
            format!("s3.{}.amazonaws.com", integration.region),
            bucket_path(&target.bucket, &key),
        ),
        (Some(endpoint), Addressing::VirtualHost) => (
            endpoint.scheme,
            format!("{}.{}", target.bucket, endpoint.authority()),
            format!("/{key}"),
        ),
        (Some(endpoint), Addressing::Path) => (
            endpoint.scheme,
            endpoint.authority(),
            bucket_path(&target.bucket, &key),
        ),
    };
    let mut uri = format!("{}://{authority}{path}", scheme.as_str());
    for (index, (name, value)) in query.iter().enumerate() {
        uri.push(if index == 0 { '?' } else { '&' });
        uri.push_str(&encode_query(name));
        uri.push('=');
        uri.push_str(&encode_query(value));
    }
    uri.parse().map_err(|error| Error::Internal {
        detail: format!("the upstream URL did not parse: {error}"),
    })
}

/// `/{bucket}/{key}`, or `/{bucket}` for a bucket-level request (no key).
fn bucket_path(bucket: &str, encoded_key: &str) -> String {
    if encoded_key.is_empty() {
        format!("/{bucket}")
    } else {
        format!("/{bucket}/{encoded_key}")
    }
}

/// What goes upstream besides the URL: the client's headers (filtered here), headers the proxy
/// sets itself (a rewritten copy source), the body and what the signature says about it.
pub struct UpstreamParts<'a> {
    /// The S3 operation being sent.
    pub operation: Operation,
    /// The client's headers; only the allowed ones are copied.
    pub client_headers: &'a HeaderMap,
    /// Headers the proxy sets itself.
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// The body to stream upstream.
    pub body: ProxyBody,
    /// What the signature says about the body.
    pub payload: Payload,
}

/// Builds the upstream request with the allowed client headers, then signs it.
pub fn signed_request(
    uri: Uri,
    parts: UpstreamParts<'_>,
    credentials: &Credentials,
    region: &str,
    now: SystemTime,
) -> Result<Request<ProxyBody>, Error> {
    let mut request = Request::new(parts.body);
    *request.method_mut() = parts.operation.method();
    let host = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.insert(
        header::HOST,
        HeaderValue::from_str(&host).map_err(|error| Error::Internal {
            detail: format!("the upstream host is not a header value: {error}"),
        })?,
    );
    for (name, value) in parts.client_headers {
        // One value each: S3 accepts no repeated Range, condition or metadata header.
        if forwarded(parts.operation, name) && !headers.contains_key(name) {
            headers.insert(name.clone(), value.clone());
        }
    }
    for (name, value) in parts.extra_headers {
        headers.insert(name, value);
    }
    let body = match &parts.payload {
        Payload::Unsigned => SignableBody::UnsignedPayload,
        Payload::Sha256(hash) => SignableBody::Precomputed(hash.clone()),
    };
    apply_signature(
        &mut request,
        credentials,
        region,
        now,
        signing_settings(),
        body,
    )?;
    Ok(request)
}

/// A presigned GET URL for `uri`, valid for `expires`: the redirect target of
/// `delivery = "redirect"`. Like every S3 presigned URL it carries the access key id (and the
/// session token of temporary credentials) but never the secret.
pub fn presigned_get_url(
    uri: Uri,
    credentials: &Credentials,
    region: &str,
    now: SystemTime,
    expires: std::time::Duration,
) -> Result<Uri, Error> {
    let mut request = Request::new(());
    *request.uri_mut() = uri;
    let host = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    request.headers_mut().insert(
        header::HOST,
        HeaderValue::from_str(&host).map_err(|error| Error::Internal {
            detail: format!("the upstream host is not a header value: {error}"),
        })?,
    );
    let mut settings = signing_settings();
    settings.signature_location = aws_sigv4::http_request::SignatureLocation::QueryParams;
    settings.expires_in = Some(expires);
    settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    apply_signature(
        &mut request,
        credentials,
        region,
        now,
        settings,
        SignableBody::UnsignedPayload,
    )?;
    Ok(request.into_parts().0.uri)
}

fn signing_settings() -> SigningSettings {
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings
}

/// Adds `x-amz-date`, `x-amz-content-sha256`, `x-amz-security-token` and `Authorization`.
pub fn sign_request<B>(
    request: &mut Request<B>,
    credentials: &Credentials,
    region: &str,
    now: SystemTime,
) -> Result<(), Error> {
    apply_signature(
        request,
        credentials,
        region,
        now,
        signing_settings(),
        SignableBody::UnsignedPayload,
    )
}

fn apply_signature<B>(
    request: &mut Request<B>,
    credentials: &Credentials,
    region: &str,
    now: SystemTime,
    settings: SigningSettings,
    body: SignableBody<'_>,
) -> Result<(), Error> {
    let signing_failed = |stage: &str, error: &dyn std::fmt::Display| Error::Internal {
        detail: format!("SigV4 signing failed while {stage}: {error}"),
    };
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|error| signing_failed("building parameters", &error))?
        .into();
    let uri = request.uri().to_string();
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| Ok((name.as_str(), value.to_str()?)))
        .collect::<Result<Vec<_>, http::header::ToStrError>>()
        .map_err(|error| Error::InvalidRequest {
            reason: format!("A forwarded header is not visible ASCII: {error}"),
        })?;
    let signable = SignableRequest::new(request.method().as_str(), &uri, headers.into_iter(), body)
        .map_err(|error| signing_failed("reading the request", &error))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|error| signing_failed("signing", &error))?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    for value in request.headers_mut().values_mut() {
        // Keeps the Authorization header and session token out of any debug output.
        value.set_sensitive(true);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Access, Buckets, CredentialSource, Delivery, Endpoint, Integration};
    use std::sync::Arc;

    fn target(endpoint: Option<Endpoint>, addressing: Addressing, key: &str) -> Target {
        Target {
            integration: Arc::new(Integration {
                name: "acme".to_string(),
                buckets: Buckets::Scoped("acme-bucket".to_string()),
                prefix: String::new(),
                region: crate::config::Region::Named("us-west-2".to_string()),
                endpoint,
                ca_file: None,
                addressing,
                access: Access::ReadOnly,
                public: true,
                allow_unusual_keys: false,
                allow_acl_headers: false,
                active_content: crate::config::ActiveContent::Sandbox,
                credentials: CredentialSource::DefaultChain,
                cors_origins: Vec::new(),
                delivery: Delivery::Stream,
            }),
            bucket: "acme-bucket".to_string(),
            key: key.to_string(),
        }
    }

    #[test]
    fn addressing_styles_place_the_bucket() {
        let minio = Some(Endpoint {
            scheme: Scheme::Http,
            host: "localhost".to_string(),
            port: Some(9000),
        });
        let cases = [
            (
                None,
                Addressing::VirtualHost,
                "https://acme-bucket.s3.us-west-2.amazonaws.com/a/b",
            ),
            (
                None,
                Addressing::Path,
                "https://s3.us-west-2.amazonaws.com/acme-bucket/a/b",
            ),
            (
                minio.clone(),
                Addressing::Path,
                "http://localhost:9000/acme-bucket/a/b",
            ),
            (
                minio,
                Addressing::VirtualHost,
                "http://acme-bucket.localhost:9000/a/b",
            ),
        ];
        for (endpoint, addressing, expected) in cases {
            let uri = upstream_uri(&target(endpoint, addressing, "a/b"), &[]).expect("uri");
            assert_eq!(uri.to_string(), expected);
        }
    }

    #[test]
    fn keys_are_encoded_once_as_s3_canonicalises_them() {
        let uri = upstream_uri(
            &target(None, Addressing::Path, "a b+c%d=e&f~g;h,i*j'k(l)m/ü/"),
            &[(
                "response-content-type".to_string(),
                "text/plain; a=b".to_string(),
            )],
        )
        .expect("uri");
        assert_eq!(
            uri.path(),
            "/acme-bucket/a%20b%2Bc%25d%3De%26f~g%3Bh%2Ci%2Aj%27k%28l%29m/%C3%BC/"
        );
        assert_eq!(
            uri.query(),
            Some("response-content-type=text%2Fplain%3B%20a%3Db")
        );
    }

    #[test]
    fn only_allowed_client_headers_reach_the_upstream_and_it_is_signed() {
        let mut client = HeaderMap::new();
        client.insert(header::RANGE, HeaderValue::from_static("bytes=0-9"));
        client.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("AWS4-HMAC-SHA256 client"),
        );
        client.insert(header::COOKIE, HeaderValue::from_static("session=1"));
        client.insert("x-amz-acl", HeaderValue::from_static("public-read"));
        client.insert(
            "x-amz-security-token",
            HeaderValue::from_static("client-token"),
        );
        let credentials =
            Credentials::new("AKIDEXAMPLE", "secret", Some("token".into()), None, "t");
        let uri = upstream_uri(&target(None, Addressing::VirtualHost, "k"), &[]).expect("uri");
        let parts = UpstreamParts {
            operation: Operation::GetObject,
            client_headers: &client,
            extra_headers: Vec::new(),
            body: crate::body::empty(),
            payload: Payload::Unsigned,
        };
        let request = signed_request(
            uri,
            parts,
            &credentials,
            "us-west-2",
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
        )
        .expect("signed");
        let headers = request.headers();
        assert_eq!(headers[header::RANGE], "bytes=0-9");
        assert_eq!(
            headers[header::HOST],
            "acme-bucket.s3.us-west-2.amazonaws.com"
        );
        assert!(headers.get(header::COOKIE).is_none());
        assert!(headers.get("x-amz-acl").is_none());
        assert_eq!(headers["x-amz-security-token"], "token");
        assert_eq!(headers["x-amz-content-sha256"], "UNSIGNED-PAYLOAD");
        assert_eq!(headers["x-amz-date"], "20231114T221320Z");
        let authorization = headers[header::AUTHORIZATION].to_str().expect("ascii");
        assert!(
            authorization.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-west-2/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature="
            ),
            "{authorization}"
        );
        assert!(headers[header::AUTHORIZATION].is_sensitive());
    }
}
