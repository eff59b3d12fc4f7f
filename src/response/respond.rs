//! The response phase: what the client gets of the store's answer.
//!
//! An error is rebuilt from its code alone, with the proxy's request id
//! ([`crate::response::upstream_error::sanitize_error`]); a refusal of the proxy's own credentials drops them (once
//! it is plausibly about them) and answers 503. A document that names keys or the bucket is
//! parsed, taken out of the integration and written anew ([`crate::s3::documents`]). Everything
//! else streams through as the store sent it.

use std::sync::Arc;

use aws_credential_types::Credentials;
use http::{Response, header};

use crate::config::Integration;
use crate::observe::access::Seen;
use crate::request::integration::Target;
use crate::response::upstream_error::UpstreamError;
use crate::s3::body::{self, ProxyBody};
use crate::s3::documents::{Jail, KeyEncoding, UpstreamDocument};
use crate::s3::error::Error;
use crate::s3::route::Operation;
use crate::s3::xml::MAX_DOCUMENT;
use crate::upstream::exchange::{Answered, Exchange};
use crate::upstream::state::State;

/// Runs the response phase for the store's answer to a request.
pub async fn answer(
    state: &State,
    exchange: Exchange,
    request_id: &str,
    seen: &mut Seen,
) -> Result<Response<ProxyBody>, Error> {
    let answered = match exchange {
        Exchange::Redirect(response) => return Ok(response),
        Exchange::Answered(answered) => answered,
    };
    seen.upstream_status = Some(answered.response.status().as_u16());
    let status = answered.response.status();
    let is_error =
        (status.is_client_error() || status.is_server_error() || status.is_redirection())
            && status != http::StatusCode::NOT_MODIFIED
            && answered.route.operation != Operation::HeadObject;
    if is_error {
        // Boxed, as the error path's future (it may fetch credentials again) is large.
        return Box::pin(upstream_error(state, answered, request_id, seen)).await;
    }
    if status.is_success() && answers_with_document(answered.route.operation) {
        seen.upstream_request_id = store_request_id(answered.response.headers());
        return Box::pin(rewrite_document(answered, request_id)).await;
    }
    Ok(answered.response)
}

/// What no message the client sees may name: the real bucket, the prefix, the proxy's access
/// key id and session token.
fn hidden<'a>(target: &'a Target, credentials: &'a Credentials) -> Vec<&'a str> {
    let mut hidden = vec![
        target.bucket.as_str(),
        credentials.access_key_id(),
        credentials.session_token().unwrap_or_default(),
    ];
    if !target.integration.prefix.is_empty() {
        hidden.push(target.integration.prefix.as_str());
    }
    hidden
}

/// The store's own id for its answer, from its headers (for the log line only).
pub(crate) fn store_request_id(headers: &http::HeaderMap) -> Option<String> {
    ["x-amz-request-id", "x-amzn-requestid"]
        .iter()
        .find_map(|name| headers.get(*name)?.to_str().ok())
        .map(str::to_string)
}

async fn upstream_error(
    state: &State,
    answered: Box<Answered>,
    request_id: &str,
    seen: &mut Seen,
) -> Result<Response<ProxyBody>, Error> {
    seen.upstream_request_id = store_request_id(answered.response.headers());
    let Answered {
        response,
        target,
        credentials,
        ..
    } = *answered;
    let integration = &target.integration;
    let hidden = hidden(&target, &credentials);
    match crate::response::upstream_error::sanitize_error(response, &hidden, request_id).await? {
        UpstreamError::Clean {
            response,
            code,
            store_request_id,
        } => {
            seen.upstream_code = Some(code);
            if seen.upstream_request_id.is_none() {
                seen.upstream_request_id = store_request_id;
            }
            Ok(response)
        }
        UpstreamError::CredentialsRefused { code } => {
            tracing::warn!(integration = %integration.name, %code,
                upstream_request_id = seen.upstream_request_id.as_deref().unwrap_or("-"),
                "the upstream refused the proxy's credentials");
            seen.upstream_code = Some(code.clone());
            credentials_refused(state, integration, &target.bucket, &code).await;
            Err(Error::UpstreamRefusedCredentials {
                integration: integration.name.clone(),
            })
        }
    }
}

/// A store refused a request with a credentials code. Drop the identity's cached
/// credentials only when they are plausibly the cause, at most once per identity per
/// debounce period: an expired or unknown token or key says so itself, while a
/// `SignatureDoesNotMatch` may be about the request (a store that signs some queries
/// differently), so it counts only when a fresh, plain listing signed with the same
/// credentials is refused the same way.
pub(crate) async fn credentials_refused(
    state: &State,
    integration: &Arc<Integration>,
    bucket: &str,
    code: &str,
) {
    if !state.credentials.may_invalidate(integration) {
        return;
    }
    let about_the_credentials = match code {
        "SignatureDoesNotMatch" => {
            let confirmation = crate::upstream::probe::listing(state, integration, bucket, 0).await;
            match confirmation {
                Ok(answer) => crate::s3::xml::parse(&answer.body).is_ok_and(|error| {
                    error.children.iter().any(|c| {
                        c.name == "Code"
                            && crate::response::upstream_error::is_credentials_code(&c.text)
                    })
                }),
                Err(_) => false,
            }
        }
        _ => true,
    };
    if about_the_credentials {
        tracing::warn!(integration = %integration.name, %code,
            "the store refuses the proxy's credentials; fetching new ones");
        state.credentials.invalidate(integration).await;
    }
}

/// Operations whose successful answer is an XML document naming keys or the bucket.
fn answers_with_document(operation: Operation) -> bool {
    operation.is_listing()
        || matches!(
            operation,
            Operation::ListParts
                | Operation::GetObjectAttributes
                | Operation::CreateMultipartUpload
                | Operation::CompleteMultipartUpload
                | Operation::DeleteObjects
                | Operation::CopyObject
                | Operation::UploadPartCopy
        )
}

/// Reads a (small, capped) upstream document, takes the integration out of it and writes it
/// anew.
async fn rewrite_document(
    answered: Box<Answered>,
    request_id: &str,
) -> Result<Response<ProxyBody>, Error> {
    let Answered {
        response,
        route,
        target,
        query,
        credentials,
        ..
    } = *answered;
    let hidden = hidden(&target, &credentials);
    let integration = &target.integration;
    let encoding = if query
        .iter()
        .any(|(n, v)| n == "encoding-type" && v == "url")
    {
        KeyEncoding::Url
    } else {
        KeyEncoding::Plain
    };
    let client_prefix = if route.operation.is_listing() {
        route
            .query
            .iter()
            .find(|(n, _)| n == "prefix")
            .map_or("", |(_, v)| v.as_str())
    } else {
        ""
    };
    let jail = Jail {
        prefix: &integration.prefix,
        logical_bucket: &route.name,
        encoding,
        client_prefix,
        client_markers: &route.query,
        hidden: &hidden,
        request_id,
    };
    let (mut parts, upstream_body) = response.into_parts();
    let document = body::collect_capped(upstream_body, MAX_DOCUMENT)
        .await
        .map_err(|error| Error::UpstreamBroken {
            integration: integration.name.clone(),
            detail: format!("an upstream document could not be read whole: {error}"),
        })?;
    let rewritten = UpstreamDocument::parse(&document)?.rewrite(&jail)?;
    if rewritten.dropped > 0 {
        tracing::warn!(integration = %integration.name, dropped = rewritten.dropped,
            "the upstream listed entries beyond the prefix the client asked for; they were dropped");
    }
    parts.headers.insert(
        header::CONTENT_LENGTH,
        http::HeaderValue::from(rewritten.document.len()),
    );
    parts.headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    parts.headers.remove(header::CONTENT_ENCODING);
    Ok(Response::from_parts(
        parts,
        body::full(bytes::Bytes::from(rewritten.document)),
    ))
}
