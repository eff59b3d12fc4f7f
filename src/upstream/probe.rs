//! What the proxy asks the store of its own accord, signed with an integration's credentials:
//! `check`'s probes, and the response phase's test of whether refused credentials are at
//! fault. Sent through [`send_signed`], as every request is.

use std::sync::Arc;

use http::header;

use crate::config::Integration;
use crate::request::integration::Target;
use crate::s3::body;
use crate::s3::error::Error;
use crate::s3::route::Operation;
use crate::s3::xml::MAX_DOCUMENT;
use crate::upstream::exchange::{Signing, send_signed};
use crate::upstream::sign::Payload;
use crate::upstream::state::State;

/// An upstream answer read whole (small: probes and their error documents).
pub struct ProbeAnswer {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

/// ListObjectsV2 of at most `max_keys` keys under the integration's prefix: `check`'s
/// list step, and the respond phase's test of whether refused credentials are at fault.
pub async fn listing(
    state: &State,
    integration: &Arc<Integration>,
    bucket: &str,
    max_keys: u32,
) -> Result<ProbeAnswer, Error> {
    let query = [
        ("list-type".to_string(), "2".to_string()),
        ("max-keys".to_string(), max_keys.to_string()),
        ("prefix".to_string(), integration.prefix.clone()),
    ];
    probe(
        state,
        integration,
        bucket,
        "",
        Operation::ListObjectsV2,
        &query,
        bytes::Bytes::new(),
    )
    .await
}

/// Sends one request of the proxy's own upstream (not a client's): `check` uses it to
/// probe an integration. `key` is relative to the prefix; `content` is the body of a PUT.
pub async fn probe(
    state: &State,
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
    let mut signing = Signing::plain(operation, query);
    if operation.has_body() {
        signing.parts.client_headers.insert(
            header::CONTENT_LENGTH,
            http::HeaderValue::from(content.len()),
        );
        signing.parts.payload = Payload::Sha256(hex::encode(sha2::Sha256::digest(&content)));
        signing.parts.body = body::full(content);
    }
    let answer = send_signed(state, &target, signing).await?;
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
