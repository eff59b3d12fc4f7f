//! The upstream phase's steps: the region, credentials, and the request the store would get.

use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::Credentials;

use super::{Explanation, Options, Outcome, redact};
use crate::auth::front_door::Authentication;
use crate::config::{CredentialSource, Integration};
use crate::request::admit::Admitted;
use crate::upstream::exchange;
use crate::upstream::state::State;

/// The region (discovered unless offline), what the config answers once it is known, the
/// request planned as the proxy plans it, credentials (fetched unless offline), then the
/// request signed as the proxy signs it ([`exchange::plan`], [`exchange::sign`]): the
/// proxy's order and its own functions.
pub(super) async fn upstream_phase(
    state: &State,
    mut admitted: Admitted<()>,
    options: &Options,
    explanation: &mut Explanation,
) {
    if !options.offline {
        match state.regions.resolve(state, admitted.target.clone()).await {
            Ok(target) => admitted.target = target,
            Err(error) => {
                explanation.refuse("region", &error);
                return;
            }
        }
    }
    let integration = admitted.target.integration.clone();
    if crate::request::answers::after_region(admitted.route.operation, &integration).is_some() {
        let what = format!(
            "from the integration's config, in region {}",
            integration.region.signing_name()
        );
        explanation.answered("config", &what);
        return;
    }
    let client_headers = admitted.request.headers().clone();
    let presigned = admitted.verified.authentication == Authentication::Presigned;
    let admitted = Box::new(Admitted {
        request: admitted
            .request
            .map(|()| http_body_util::Empty::<bytes::Bytes>::new()),
        route: admitted.route,
        verified: admitted.verified,
        target: admitted.target,
    });
    let planned = match exchange::plan(state, admitted).await {
        Ok(planned) => planned,
        Err(error) => {
            explanation.refuse("upstream request", &error);
            return;
        }
    };
    let Some(credentials) = credentials(state, &integration, options, explanation).await else {
        return;
    };
    match upstream_request(planned, &credentials, &client_headers, presigned) {
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
    integration: &Arc<Integration>,
    options: &Options,
    explanation: &mut Explanation,
) -> Option<Credentials> {
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
    planned: exchange::Planned,
    credentials: &Credentials,
    client_headers: &http::HeaderMap,
    presigned: bool,
) -> Result<Vec<(&'static str, String)>, crate::s3::error::Error> {
    let region = planned.target.integration.region.signing_name().to_string();
    let signing = exchange::Signing {
        query: &planned.query,
        parts: planned.parts,
    };
    let request = exchange::sign(&planned.target, signing, credentials)?;
    let (canonical, string_to_sign) = crate::upstream::sign::signing_view(&request, &region)?;
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
    let dropped = dropped_headers(client_headers, request.headers());
    if !dropped.is_empty() {
        facts.push(("dropped headers", dropped.join(", ")));
    }
    facts.push(("canonical request", redact(&canonical)));
    facts.push(("string to sign", string_to_sign));
    if presigned {
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
