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

use crate::config::{Addressing, Scheme};
use crate::request::integration::Target;
use crate::s3::body::ProxyBody;
use crate::s3::error::Error;
use crate::s3::route::Operation;
use crate::s3::sigv4::{Fold, encode_key, encode_query, push_header_line};

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
        use crate::s3::sigv4::ContentSha256;
        match ContentSha256::of(headers) {
            ContentSha256::Absent | ContentSha256::Unsigned => Ok(Payload::Unsigned),
            ContentSha256::Sha256(hash) => Ok(Payload::Sha256(hash.to_ascii_lowercase())),
            ContentSha256::Streaming(streaming) => Err(Error::NotImplemented {
                operation: format!("aws-chunked uploads ({streaming})"),
            }),
            ContentSha256::Other(_) | ContentSha256::NotText => Err(Error::InvalidArgument {
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
    let scheme = integration
        .endpoint
        .as_ref()
        .map_or(Scheme::Https, |e| e.scheme);
    let virtual_host = integration.addressing == Addressing::VirtualHost;
    // Written piece by piece into one buffer: this runs for every request.
    let mut uri = String::with_capacity(96 + target.bucket.len() + key.len());
    uri.push_str(scheme.as_str());
    uri.push_str("://");
    if virtual_host {
        uri.push_str(&target.bucket);
        uri.push('.');
    }
    match &integration.endpoint {
        None => {
            uri.push_str("s3.");
            uri.push_str(integration.region.as_str());
            uri.push_str(".amazonaws.com");
        }
        Some(endpoint) => endpoint.push_authority(&mut uri),
    }
    // Virtual-host style: `/{key}`. Path style: `/{bucket}/{key}`, or `/{bucket}` for a
    // bucket-level request (no key).
    if !virtual_host {
        uri.push('/');
        uri.push_str(&target.bucket);
    }
    if virtual_host || !key.is_empty() {
        uri.push('/');
        uri.push_str(&key);
    }
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

/// What goes upstream besides the URL: the client's headers (filtered here), headers the proxy
/// sets itself (a rewritten copy source), the body and what the signature says about it.
pub struct UpstreamParts {
    /// The S3 operation being sent.
    pub operation: Operation,
    /// The client's headers; only the allowed ones are copied.
    pub client_headers: HeaderMap,
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
    parts: UpstreamParts,
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
    for (name, value) in &parts.client_headers {
        // One value each: S3 accepts no repeated Range, condition or metadata header.
        if forwarded(parts.operation, name) && !headers.contains_key(name) {
            headers.insert(name.clone(), value.clone());
        }
    }
    for (name, value) in parts.extra_headers {
        headers.insert(name, value);
    }
    let payload_hash = match &parts.payload {
        Payload::Unsigned => UNSIGNED_PAYLOAD,
        Payload::Sha256(hash) => hash.as_str(),
    };
    sign_in_headers(&mut request, credentials, region, now, payload_hash)?;
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
    sign_in_headers(request, credentials, region, now, UNSIGNED_PAYLOAD)
}

/// The payload hash of a body the signature does not cover.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// The signing headers' names, made once at compile time: inserting by `&str` parses the name
/// on every request.
const X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
const X_AMZ_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");
const X_AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");
/// Headers left out of the signature, as aws-sigv4 leaves them out: the signature itself, and
/// headers proxies and CDNs change on the way.
const UNSIGNED_HEADERS: [&str; 4] = [
    "authorization",
    "user-agent",
    "x-amzn-trace-id",
    "transfer-encoding",
];

/// Signs `request` in its headers, exactly as aws-sigv4 does with [`signing_settings`] (a test
/// compares the two on generated requests), but with the signing key from the process-wide
/// cache rather than derived again for every request.
fn sign_in_headers<B>(
    request: &mut Request<B>,
    credentials: &Credentials,
    region: &str,
    now: SystemTime,
    payload_hash: &str,
) -> Result<(), Error> {
    let date_time = crate::s3::sigv4::format_amz_date(now);
    let scope = s3_scope(&date_time, region);
    let headers = request.headers_mut();
    headers.insert(X_AMZ_DATE, header_value(&date_time)?);
    headers.insert(X_AMZ_CONTENT_SHA256, header_value(payload_hash)?);
    if let Some(token) = credentials.session_token() {
        headers.insert(X_AMZ_SECURITY_TOKEN, header_value(token)?);
    }
    let (canonical, signed_headers) = canonical_request(request, payload_hash)?;
    let key = crate::s3::sigv4::cached_signing_key(credentials.secret_access_key(), &scope);
    let signature = crate::s3::sigv4::signature(&key, &date_time, &scope, &canonical);
    let authorization = [
        crate::s3::sigv4::ALGORITHM,
        " Credential=",
        credentials.access_key_id(),
        "/",
        &scope,
        ", SignedHeaders=",
        &signed_headers,
        ", Signature=",
        &signature,
    ]
    .concat();
    let headers = request.headers_mut();
    headers.insert(header::AUTHORIZATION, header_value(&authorization)?);
    for value in headers.values_mut() {
        // Keeps the Authorization header and session token out of any debug output.
        value.set_sensitive(true);
    }
    Ok(())
}

/// The canonical request and string to sign of a request [`signed_request`] signed, computed
/// again from the request itself, for `explain`. They hold the session token, if any.
pub(crate) fn signing_view<B>(
    request: &Request<B>,
    region: &str,
) -> Result<(String, String), Error> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (date_time, payload_hash) = (header("x-amz-date"), header("x-amz-content-sha256"));
    let scope = s3_scope(&date_time, region);
    let (canonical, _) = canonical_request(request, &payload_hash)?;
    let string_to_sign = crate::s3::sigv4::string_to_sign(&date_time, &scope, &canonical);
    Ok((canonical, string_to_sign))
}

/// The credential scope of an S3 signature made at `date_time` (`YYYYMMDDTHHMMSSZ`) in `region`.
fn s3_scope(date_time: &str, region: &str) -> String {
    let day = date_time.get(..8).unwrap_or_default();
    [day, "/", region, "/s3/aws4_request"].concat()
}

fn header_value(text: &str) -> Result<HeaderValue, Error> {
    HeaderValue::from_str(text).map_err(|error| Error::Internal {
        detail: format!("a signing header is not a header value: {error}"),
    })
}

/// `Host` for a request without one: the authority, without the scheme's default port.
fn default_host(uri: &Uri) -> Result<&str, Error> {
    let authority = uri.authority().ok_or_else(|| Error::Internal {
        detail: "an upstream request without an authority".to_string(),
    })?;
    let default_port = matches!(
        (uri.scheme_str(), authority.port_u16()),
        (Some("http"), Some(80)) | (Some("https"), Some(443))
    );
    Ok(if default_port {
        authority.host()
    } else {
        authority.as_str()
    })
}

/// The canonical request of an upstream request, and its signed header names.
fn canonical_request<B>(
    request: &Request<B>,
    payload_hash: &str,
) -> Result<(String, String), Error> {
    let uri = request.uri();
    let pairs = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .map(|(name, value)| {
            (
                encode_query(&name).into_owned(),
                encode_query(&value).into_owned(),
            )
        })
        .collect();
    let mut out =
        crate::s3::sigv4::start_canonical_request(request.method().as_str(), uri.path(), pairs);
    let mut names: Vec<&str> = request
        .headers()
        .keys()
        .map(HeaderName::as_str)
        .filter(|name| !UNSIGNED_HEADERS.contains(name))
        .collect();
    // Without a `Host` header, hyper sends the authority: that is what is signed.
    let host = if request.headers().contains_key(header::HOST) {
        None
    } else {
        names.push("host");
        Some(default_host(uri)?)
    };
    names.sort_unstable();
    for name in &names {
        if let (Some(host), "host") = (&host, *name) {
            push_header_line(&mut out, name, [host], Fold::Spaces);
            continue;
        }
        let values = request.headers().get_all(*name);
        for value in &values {
            value.to_str().map_err(|error| Error::InvalidRequest {
                reason: format!("A forwarded header is not visible ASCII: {error}"),
            })?;
        }
        let texts = values
            .iter()
            .map(|value| value.to_str().unwrap_or_default());
        push_header_line(&mut out, name, texts, Fold::Spaces);
    }
    let signed_headers = names.join(";");
    crate::s3::sigv4::finish_canonical_request(&mut out, &signed_headers, payload_hash);
    Ok((out, signed_headers))
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

    /// A small deterministic generator, so a failure names its case and repeats.
    struct Cases(u64);

    impl Cases {
        fn next(&mut self, below: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % below.max(1)
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.next(from.len())]
        }
    }

    /// The request as aws-sigv4 signs it with the proxy's settings: the reference.
    fn reference_signed(
        request: &mut Request<()>,
        credentials: &Credentials,
        region: &str,
        now: SystemTime,
        payload_hash: &str,
    ) {
        let body = if payload_hash == UNSIGNED_PAYLOAD {
            SignableBody::UnsignedPayload
        } else {
            SignableBody::Precomputed(payload_hash.to_string())
        };
        apply_signature(request, credentials, region, now, signing_settings(), body)
            .expect("reference signs");
    }

    #[test]
    fn the_cached_key_signer_writes_what_aws_sigv4_writes() {
        let mut cases = Cases(0x5eed);
        let words = [
            "a",
            "frame 0001.png",
            "x+y",
            "ünï/cødé",
            "~tilde",
            "%41",
            "",
            "a=b&c",
            "space  two",
        ];
        let header_values = [
            "bytes=0-99",
            "  padded   value  ",
            "\"etag\"",
            "a,b",
            "text/plain",
        ];
        let header_names = [
            "range",
            "if-match",
            "content-type",
            "x-amz-meta-note",
            "user-agent",
            "transfer-encoding",
            "x-amzn-trace-id",
            "content-length",
        ];
        let mut compared = 0;
        for case in 0..2000 {
            let path = format!(
                "/{}/{}",
                encode_key(cases.pick(&words)),
                encode_key(cases.pick(&words))
            );
            let mut query = String::new();
            for at in 0..cases.next(4) {
                if at > 0 {
                    query.push('&');
                }
                query.push_str(&encode_query(cases.pick(&words)));
                query.push('=');
                query.push_str(&encode_query(cases.pick(&words)));
            }
            let authority = cases.pick(&[
                "s3.us-west-2.amazonaws.com",
                "127.0.0.1:9000",
                "b.s3.amazonaws.com:443",
            ]);
            let scheme = if authority.ends_with(":443") {
                "https"
            } else {
                "http"
            };
            let target = if query.is_empty() {
                format!("{scheme}://{authority}{path}")
            } else {
                format!("{scheme}://{authority}{path}?{query}")
            };
            let uri: Uri = target.parse().expect("uri");
            let mut request = Request::new(());
            *request.method_mut() =
                [http::Method::GET, http::Method::PUT, http::Method::HEAD][cases.next(3)].clone();
            *request.uri_mut() = uri;
            if cases.next(2) == 0 {
                let host = HeaderValue::from_str(authority).expect("host");
                request.headers_mut().insert(header::HOST, host);
            }
            for _ in 0..cases.next(5) {
                let name = HeaderName::from_static(cases.pick(&header_names));
                let value = HeaderValue::from_static(cases.pick(&header_values));
                request.headers_mut().append(name, value);
            }
            let token = (cases.next(2) == 0).then(|| "session/token+value=".repeat(3));
            let credentials = Credentials::new(
                "ASIAEXAMPLE",
                cases.pick(&["secret-one", "secret/two+"]),
                token,
                None,
                "test",
            );
            let region = cases.pick(&["us-east-1", "eu-west-1"]);
            let now = SystemTime::UNIX_EPOCH
                + std::time::Duration::from_secs(cases.next(4_000_000_000) as u64);
            let payload_hash = cases.pick(&[
                UNSIGNED_PAYLOAD,
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ]);
            let mut ours = Request::new(());
            *ours.method_mut() = request.method().clone();
            *ours.uri_mut() = request.uri().clone();
            *ours.headers_mut() = request.headers().clone();
            sign_in_headers(&mut ours, &credentials, region, now, payload_hash).expect("signs");
            reference_signed(&mut request, &credentials, region, now, payload_hash);
            for name in [
                "authorization",
                "x-amz-date",
                "x-amz-content-sha256",
                "x-amz-security-token",
                "host",
            ] {
                assert_eq!(
                    ours.headers().get(name),
                    request.headers().get(name),
                    "case {case}: {name} for {} {}",
                    request.method(),
                    request.uri()
                );
            }
            compared += 1;
        }
        assert_eq!(compared, 2000);
    }

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
                cache: None,
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
            client_headers: client,
            extra_headers: Vec::new(),
            body: crate::s3::body::empty(),
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
