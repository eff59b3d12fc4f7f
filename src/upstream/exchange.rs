//! The upstream phase: the body the store will get (streamed, aws-chunked decoded, or a
//! document the proxy wrote), the integration's credentials, the signed request, and the
//! store's answer.
//!
//! [`sign`] is the one way an upstream request is signed, and [`send_signed`] the one way it
//! is signed and sent: for a client's request ([`exchange`]), for `check`'s probes
//! (`upstream::probe`), form uploads and region discovery. What a client's request becomes
//! before it is signed is decided once, by [`plan`], which `explain` runs too.

use std::sync::Arc;
use std::time::SystemTime;

use http::{Response, header};

use crate::config::{Delivery, Integration};
use crate::request::admit::Admitted;
use crate::request::integration::{Integrations, Target};
use crate::s3::body::{self, BoxError, ProxyBody};
use crate::s3::error::Error;
use crate::s3::route::{Operation, Route};
use crate::s3::sigv4::ContentSha256;
use crate::s3::xml::MAX_DOCUMENT;
use crate::upstream::forward::Answer;
use crate::upstream::sign::{
    Payload, UpstreamParts, presigned_get_url, signed_request, upstream_uri,
};
use crate::upstream::state::State;

/// What the store answered, with what the response phase needs to read it.
pub enum Exchange {
    /// `delivery = "redirect"`: a 307 to an upstream presigned URL; nothing was sent.
    Redirect(Response<ProxyBody>),
    Answered(Box<Answered>),
}

pub struct Answered {
    pub response: Response<ProxyBody>,
    /// How long the store took to answer with headers.
    pub latency: std::time::Duration,
    pub route: Route,
    pub target: Target,
    /// The query the store got (the listing scoped to the prefix).
    pub query: Vec<(String, String)>,
    pub credentials: aws_credential_types::Credentials,
}

/// What an upstream request carries and how it is signed: its query, and the rest of it
/// ([`UpstreamParts`]: the operation, the headers the guard lets through, the proxy's own
/// headers, the body and what the signature says of it).
pub struct Signing<'a> {
    pub query: &'a [(String, String)],
    pub parts: UpstreamParts,
}

impl<'a> Signing<'a> {
    /// A bodiless request.
    pub fn plain(operation: Operation, query: &'a [(String, String)]) -> Self {
        Signing {
            query,
            parts: UpstreamParts {
                operation,
                client_headers: http::HeaderMap::new(),
                extra_headers: Vec::new(),
                body: body::empty(),
                payload: Payload::Unsigned,
            },
        }
    }
}

/// Signs `signing` for `target` with `credentials`, in the headers: every upstream request
/// (a presigned redirect aside) is signed here.
pub fn sign(
    target: &Target,
    signing: Signing<'_>,
    credentials: &aws_credential_types::Credentials,
) -> Result<http::Request<ProxyBody>, Error> {
    signed_request(
        upstream_uri(target, signing.query)?,
        signing.parts,
        credentials,
        target.integration.region.signing_name(),
        SystemTime::now(),
    )
}

/// Signs a request for `target` with its integration's credentials and sends it.
pub async fn send_signed(
    state: &State,
    target: &Target,
    signing: Signing<'_>,
) -> Result<Answer, Error> {
    let credentials = state.credentials.credentials(&target.integration).await?;
    send_with(state, target, signing, &credentials).await
}

async fn send_with(
    state: &State,
    target: &Target,
    signing: Signing<'_>,
    credentials: &aws_credential_types::Credentials,
) -> Result<Answer, Error> {
    let integration = &target.integration;
    let request = sign(target, signing, credentials)?;
    state
        .upstream
        .send(request, &integration.name, integration.ca_file.as_deref())
        .await
}

/// What an admitted request becomes before it is signed: the listing scoped to the prefix,
/// the copy source rewritten, and the body's plan. Decided by the proxy alone: no credentials
/// yet, nothing sent.
pub struct Planned {
    pub route: Route,
    pub target: Target,
    /// The query the store gets.
    pub query: Vec<(String, String)>,
    /// The rest of the request, as it is signed.
    pub parts: UpstreamParts,
}

/// Plans an admitted request whose region is known ([`Planned`]).
pub async fn plan<B>(state: &State, admitted: Box<Admitted<B>>) -> Result<Planned, Error>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let Admitted {
        route,
        verified,
        target,
        request,
    } = *admitted;
    let integration = target.integration.clone();
    let mut query = route.query.clone();
    if route.operation.is_listing() {
        scope_listing(&mut query, &integration.prefix);
    }
    let extra_headers = copy_source(state, route.operation, request.headers(), &target)?;
    let (parts, client_body) = request.into_parts();
    let client_body = charged(state, route.operation, &parts.extensions, client_body);
    let (body, headers, payload) = body_plan(
        route.operation,
        client_body,
        parts.headers,
        verified.chunk_signing,
        (&state.tenants.integrations, &integration),
    )
    .await?;
    let parts = UpstreamParts {
        operation: route.operation,
        client_headers: headers,
        extra_headers,
        body,
        payload,
    };
    Ok(Planned {
        route,
        target,
        query,
        parts,
    })
}

/// Runs the upstream phase for an admitted request whose region is known. Every check is
/// done: only now are credentials fetched and the store contacted.
pub async fn exchange<B>(state: &State, admitted: Box<Admitted<B>>) -> Result<Exchange, Error>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let Planned {
        route,
        target,
        query,
        parts,
    } = plan(state, admitted).await?;
    let integration = &target.integration;
    let credentials = state.credentials.credentials(integration).await?;
    if let (Delivery::Redirect { expires }, Operation::GetObject) =
        (integration.delivery, route.operation)
    {
        let location = presigned_get_url(
            upstream_uri(&target, &query)?,
            &credentials,
            integration.region.signing_name(),
            SystemTime::now(),
            expires,
        )?;
        return crate::request::answers::redirect(&location).map(Exchange::Redirect);
    }
    let signing = Signing {
        query: &query,
        parts,
    };
    let answer = send_with(state, &target, signing, &credentials).await?;
    Ok(Exchange::Answered(Box::new(Answered {
        response: answer.response,
        latency: answer.latency,
        route,
        target,
        query,
        credentials,
    })))
}

/// A request body, charged to the upload budget until the store has it and read from its
/// client connection as fast as the store takes it (`window`: the connection's, set by the
/// server for HTTP/1 requests with a body).
fn charged<B>(
    state: &State,
    operation: Operation,
    extensions: &http::Extensions,
    client_body: B,
) -> ProxyBody
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    if !operation.has_body() {
        return body::stream(client_body);
    }
    let window = extensions
        .get::<Arc<crate::net::limits::ReadWindow>>()
        .cloned();
    body::stream(
        state
            .upstream
            .budget()
            .upload(body::stream(client_body), window),
    )
}

/// CopyObject and UploadPartCopy: the signed `x-amz-copy-source`, rewritten to the real
/// bucket and prefixed key (and refused outside the integration).
pub(crate) fn copy_source(
    state: &State,
    operation: Operation,
    headers: &http::HeaderMap,
    target: &Target,
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, Error> {
    if !matches!(operation, Operation::CopyObject | Operation::UploadPartCopy) {
        return Ok(Vec::new());
    }
    let source = headers
        .get("x-amz-copy-source")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::InvalidArgument {
            reason: "x-amz-copy-source is not visible ASCII".to_string(),
        })?;
    let rewritten = state.tenants.integrations.copy_source(source, target)?;
    let value = http::HeaderValue::from_str(&rewritten).map_err(|error| Error::Internal {
        detail: format!("the rewritten copy source is not a header value: {error}"),
    })?;
    Ok(vec![(
        http::HeaderName::from_static("x-amz-copy-source"),
        value,
    )])
}

/// The body the store gets, the headers that describe it, and how it is signed: a document
/// the proxy wrote (DeleteObjects, CompleteMultipartUpload), an aws-chunked body decoded as
/// it streams, a plain body streamed, or none.
async fn body_plan<B>(
    operation: Operation,
    client_body: B,
    headers: http::HeaderMap,
    chunk_signing: Option<crate::s3::chunked::ChunkSigning>,
    (integrations, integration): (&Integrations, &Integration),
) -> Result<(ProxyBody, http::HeaderMap, Payload), Error>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    if operation.has_client_document() {
        let document = client_document(operation, client_body, &headers, integrations, integration);
        let (document, headers, payload) = Box::pin(document).await?;
        return Ok((body::full(document), headers, payload));
    }
    if !operation.has_body() {
        return Ok((body::empty(), headers, Payload::Unsigned));
    }
    if let ContentSha256::Streaming(_) = ContentSha256::of(&headers) {
        // An aws-chunked body may come without a length (Transfer-Encoding: chunked, as the
        // JavaScript and C++ SDKs send it): its decoded length is x-amz-decoded-content-length.
        let (decoded, headers) = chunked_upload(client_body, &headers, chunk_signing)?;
        return Ok((decoded, headers, Payload::Unsigned));
    }
    // S3 needs the length up front; the body itself streams through.
    if !headers.contains_key(header::CONTENT_LENGTH) {
        return Err(Error::MissingContentLength);
    }
    let payload = Payload::from_client(&headers)?;
    Ok((body::stream(client_body), headers, payload))
}

/// Reads a client's XML body (capped), checks it against the client's signed hash, parses
/// it, puts every key it names under the prefix, and returns the document the proxy wrote
/// in its place with the headers that now describe it. Client bytes never reach the store.
async fn client_document<B>(
    operation: Operation,
    client_body: B,
    client_headers: &http::HeaderMap,
    integrations: &Integrations,
    integration: &Integration,
) -> Result<(bytes::Bytes, http::HeaderMap, Payload), Error>
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
    check_document_digests(operation, client_headers, &document)?;
    let written = match operation {
        Operation::DeleteObjects => crate::s3::documents::DeleteRequest::parse(&document)?
            .jail(|key| integrations.upstream_key(integration, key))?
            .to_xml(),
        Operation::CompleteMultipartUpload => {
            crate::s3::documents::CompleteRequest::parse(&document)?.to_xml()
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
        Payload::Sha256(sha256),
    ))
}

/// Checks a client document against every digest its client sent for it, before anything
/// reads it: the proxy sends a document of its own instead, and for a SigV2 or presigned
/// request a `Content-MD5` may be all that binds the body to the signature. `x-amz-checksum-*`
/// describe the body of a DeleteObjects, but the finished object of a
/// CompleteMultipartUpload (where they go on to the store as they are). A DeleteObjects bound
/// by nothing at all is refused, as S3 refuses it.
fn check_document_digests(
    operation: Operation,
    headers: &http::HeaderMap,
    document: &[u8],
) -> Result<(), Error> {
    use sha2::Digest;
    let payload_hash = match Payload::from_client(headers)? {
        Payload::Sha256(signed) => {
            if hex::encode(sha2::Sha256::digest(document)) != signed {
                return Err(Error::BadDigest {
                    header: "x-amz-content-sha256",
                });
            }
            true
        }
        Payload::Unsigned => false,
    };
    let digests = crate::s3::digest::check_sent(headers, &["content-md5"], document)?
        + match operation {
            Operation::DeleteObjects => crate::s3::digest::check_sent(
                headers,
                &crate::s3::digest::CHECKSUM_HEADERS,
                document,
            )?,
            _ => 0,
        };
    if operation == Operation::DeleteObjects && !payload_hash && digests == 0 {
        return Err(Error::InvalidRequest {
            reason: "Missing required header for this request: Content-MD5".to_string(),
        });
    }
    Ok(())
}

/// Wraps an aws-chunked upload body in its decoder and returns the headers that describe the
/// decoded object: its real length, no aws-chunked encoding, no trailer announcement.
fn chunked_upload<B>(
    client_body: B,
    headers: &http::HeaderMap,
    chunk_signing: Option<crate::s3::chunked::ChunkSigning>,
) -> Result<(ProxyBody, http::HeaderMap), Error>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mode = ContentSha256::of(headers).text().unwrap_or_default();
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
    let decoder = crate::s3::chunked::AwsChunked::new(
        body::stream(client_body),
        signing,
        trailer,
        decoded_length,
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

/// Puts a listing under the integration's prefix: `prefix` always starts with it, and the
/// markers a client sends (relative keys) become upstream keys.
pub(crate) fn scope_listing(query: &mut Vec<(String, String)>, prefix: &str) {
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
