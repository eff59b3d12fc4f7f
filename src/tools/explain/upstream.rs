//! The upstream phase's steps: credentials, the region, and the request the store would get.

use std::time::SystemTime;

use aws_credential_types::Credentials;

use super::{Admitted, Explanation, Options, Outcome, redact};
use crate::config::CredentialSource;
use crate::upstream::sign::{Payload, UpstreamParts};
use crate::upstream::state::State;

/// The region (discovered unless offline), what the config answers once it is known,
/// credentials (fetched unless offline), then the upstream request as it would be signed: the
/// proxy's order.
pub(super) async fn upstream_phase(
    state: &State,
    admitted: Admitted,
    options: &Options,
    explanation: &mut Explanation,
) {
    let integration = &admitted.target.integration;
    let resolved = if options.offline {
        integration.clone()
    } else {
        match state
            .resolve_region(integration, &admitted.target.bucket)
            .await
        {
            Ok(resolved) => resolved,
            Err(error) => {
                explanation.refuse("region", &error);
                return;
            }
        }
    };
    let target = crate::request::integration::Target {
        integration: resolved,
        ..admitted.target.clone()
    };
    if crate::request::answers::after_region(admitted.route.operation, &target.integration)
        .is_some()
    {
        let what = format!(
            "from the integration's config, in region {}",
            target.integration.region.signing_name()
        );
        explanation.answered("config", &what);
        return;
    }
    let Some(credentials) = credentials(state, &admitted, options, explanation).await else {
        return;
    };
    match upstream_request(state, &admitted, &target, &credentials) {
        Ok(facts) => {
            explanation.step("upstream request", Outcome::Passed, facts);
            explanation.answer = "forwarded to the store".to_string();
        }
        Err(error) => explanation.refuse("upstream request", &error),
    }
}

/// The integration's credentials: described from the cache offline, else obtained.
async fn credentials(
    state: &State,
    admitted: &Admitted,
    options: &Options,
    explanation: &mut Explanation,
) -> Option<Credentials> {
    let integration = &admitted.target.integration;
    let mut facts = vec![
        ("source", integration.credentials.describe()),
        (
            "cache",
            state
                .credentials
                .state(integration)
                .describe(SystemTime::now()),
        ),
    ];
    if options.offline {
        if let CredentialSource::Static(keys) = &integration.credentials {
            facts.push(("access key id", keys.access_key_id.clone()));
        }
        explanation.step("credentials", Outcome::Skipped, facts);
        // Offline, the upstream request is signed with a placeholder: its shape is what counts.
        return Some(Credentials::new(
            "OFFLINEPLACEHOLDER",
            "offline",
            None,
            None,
            "explain",
        ));
    }
    match state.credentials.credentials(integration).await {
        Ok(credentials) => {
            facts.push(("access key id", credentials.access_key_id().to_string()));
            if let Some(left) = credentials
                .expiry()
                .and_then(|e| e.duration_since(SystemTime::now()).ok())
            {
                facts.push(("expires in", format!("{}m", left.as_secs() / 60)));
            }
            explanation.step("credentials", Outcome::Passed, facts);
            Some(credentials)
        }
        Err(error) => {
            explanation.refuse("credentials", &error);
            if let Some(step) = explanation.steps.last_mut() {
                step.facts.extend(facts);
            }
            None
        }
    }
}

/// The request the store would get: its URL, `Host`, the client headers the guard drops, and
/// the canonical request and string to sign (the session token redacted).
fn upstream_request(
    state: &State,
    admitted: &Admitted,
    target: &crate::request::integration::Target,
    credentials: &Credentials,
) -> Result<Vec<(&'static str, String)>, crate::s3::error::Error> {
    let route = &admitted.route;
    let mut query = route.query.clone();
    if route.operation.is_listing() {
        crate::upstream::exchange::scope_listing(&mut query, &target.integration.prefix);
    }
    let headers = admitted.request.headers();
    let extra_headers =
        crate::upstream::exchange::copy_source(state, route.operation, headers, target)?;
    let region = target.integration.region.signing_name();
    let request = crate::upstream::sign::signed_request(
        crate::upstream::sign::upstream_uri(target, &query)?,
        UpstreamParts {
            operation: route.operation,
            client_headers: headers,
            extra_headers,
            body: crate::s3::body::empty(),
            payload: Payload::from_client(headers).unwrap_or(Payload::Unsigned),
        },
        credentials,
        region,
        SystemTime::now(),
    )?;
    let (canonical, string_to_sign) = crate::upstream::sign::signing_view(&request, region)?;
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map_or_else(
            || {
                request
                    .uri()
                    .authority()
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            },
            str::to_string,
        );
    let mut facts = vec![
        ("method", request.method().to_string()),
        ("url", request.uri().to_string()),
        ("host", host),
    ];
    let dropped = dropped_headers(headers, request.headers());
    if !dropped.is_empty() {
        facts.push(("dropped headers", dropped.join(", ")));
    }
    facts.push(("canonical request", redact(&canonical)));
    facts.push(("string to sign", string_to_sign));
    if admitted.verified.authentication == crate::auth::front_door::Authentication::Presigned {
        facts.push((
            "note",
            "the client's own signature is not forwarded".to_string(),
        ));
    }
    Ok(facts)
}

/// The client's headers the upstream request does not carry (its own signature's aside).
fn dropped_headers(client: &http::HeaderMap, upstream: &http::HeaderMap) -> Vec<String> {
    const SIGNATURE: [&str; 4] = [
        "authorization",
        "x-amz-date",
        "x-amz-content-sha256",
        "x-amz-security-token",
    ];
    let mut dropped: Vec<String> = client
        .keys()
        .map(|name| name.as_str())
        .filter(|name| !SIGNATURE.contains(name) && !upstream.contains_key(*name))
        .map(str::to_string)
        .collect();
    dropped.dedup();
    dropped
}
