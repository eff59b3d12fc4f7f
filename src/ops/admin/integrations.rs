//! The integration page's endpoints: `GET /integrations` (every integration's credentials as
//! the cache knows them), `GET /integrations/{name}` (one integration's source, version and
//! credentials) and `POST /integrations/check` (the "Check connection" button: a candidate
//! integration checked by [`crate::tools::check::run_on`], the code `check` runs, and never
//! saved).

use std::fmt::Write as _;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::config::{Fragment, ProcessEnv};
use crate::ops::source::{Shared, lock};
use crate::proxy::Proxy;
use crate::s3::body::ProxyBody;
use crate::tools::check;

use super::{JSON, json, read_body, text};

/// The most a candidate integration's document may hold.
const CANDIDATE_LIMIT: usize = 64 * 1024;

/// The name a candidate is checked under when `?name=` does not give one.
const CANDIDATE_NAME: &str = "candidate";

/// One line per integration: its credentials as the cache knows them, never fetched here.
pub(super) fn list(proxy: &Proxy) -> String {
    let state = proxy.state();
    let now = state.tenants.config.clock.now();
    let mut out = String::new();
    for integration in state.tenants.integrations.sorted() {
        let line = state.credentials.state(integration).describe(now);
        let _ = writeln!(out, "{}: {line}", integration.name);
    }
    out
}

/// `GET /integrations/{name}`: where the integration comes from (the main file, a file of the
/// directory source, a database row), the version in force (a row's `updated_at`, a file's
/// content hash) and its credentials, as JSON.
pub(super) fn show(proxy: &Proxy, catalog: &Shared, name: &str) -> Response<ProxyBody> {
    let state = proxy.state();
    let Some(integration) = state.tenants.integrations.integration(name) else {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "no integration named {name} is in force (with preload = false: fetched yet)\n"
            ),
        );
    };
    let (source, version) = match lock(catalog).integration_origin(name) {
        Some((origin, part)) => (origin.to_string(), part.version.clone()),
        // Only what was fetched on demand (`preload = false`) is in force outside the catalog.
        None => (
            format!("postgres:integration:{name} (fetched on demand)"),
            String::new(),
        ),
    };
    let credentials = state
        .credentials
        .state(&integration)
        .describe(state.tenants.config.clock.now());
    json(
        StatusCode::OK,
        &serde_json::json!({
            "name": integration.name,
            "source": source,
            "version": version,
            "credentials": credentials,
        }),
    )
}

/// `POST /integrations/check[?write=true][&name=N]`: the body is one integration as a
/// database row's `spec` (JSON, the main file's keys, secrets inline). It is validated by the
/// rules every source uses, then checked with the serving proxy's own identity and caches, and
/// the answer is `check --json`'s document. A candidate that does not validate gets the same
/// document with one failed `spec` step per problem.
pub(super) async fn check(proxy: &Proxy, request: Request<Incoming>) -> Response<ProxyBody> {
    if request.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "POST only\n".to_string());
    }
    let query = request.uri().query().unwrap_or_default().to_string();
    let mut write = false;
    let mut name = CANDIDATE_NAME.to_string();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "write" => write = matches!(value, "" | "true" | "1"),
            "name" if crate::config::check_bucket_name(value).is_ok() => {
                name = value.to_string();
            }
            _ => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("unknown or invalid parameter `{key}`: use write=true and name=N\n"),
                );
            }
        }
    }
    let body = match read_body(request, CANDIDATE_LIMIT).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let spec: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(error) => return text(StatusCode::BAD_REQUEST, format!("the document: {error}\n")),
    };
    let rows = match candidate(&name, &spec) {
        Ok(integration) => check::run_on(&proxy.state(), &[integration], write).await,
        Err(problems) => check::refused(&name, &problems),
    };
    let mut response = text(StatusCode::OK, check::render_json(&rows));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(JSON),
    );
    response
}

/// The candidate as an integration, or its problems. Its secrets are inline: a setting that
/// reads a variable or a file (`*_env`, `*_file`) would read the proxy's own, so it is refused.
fn candidate(
    name: &str,
    spec: &serde_json::Value,
) -> Result<Arc<crate::config::Integration>, Vec<String>> {
    let mut reads = Vec::new();
    local_reads(spec, "", &mut reads);
    if !reads.is_empty() {
        return Err(reads
            .into_iter()
            .map(|setting| {
                format!(
                    "`{setting}` would read the proxy's own environment or files: a candidate \
                     carries its secrets inline"
                )
            })
            .collect());
    }
    let origin = format!("candidate {name}");
    let fragment = Fragment::integration_row(name, &spec.to_string(), &origin, &ProcessEnv)
        .map_err(|error| error.problems)?;
    fragment
        .integrations
        .into_iter()
        .next()
        .ok_or_else(|| vec!["the document defines no integration".to_string()])
}

/// The settings in `value` (at any depth) whose name ends in `_env` or `_file`.
fn local_reads(value: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                let setting = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if key.ends_with("_env") || key.ends_with("_file") {
                    out.push(setting.clone());
                }
                local_reads(inner, &setting, out);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                local_reads(item, path, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_read_the_proxys_environment_or_files_are_refused() {
        let spec = serde_json::json!({
            "bucket": "b",
            "ca_file": "/etc/ssl/private/key.pem",
            "credentials": {"access_key_id": "AK", "secret_access_key_env": "AWS_SECRET"},
        });
        let problems = candidate("acme", &spec).expect_err("refused");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("`ca_file`"), "{problems:?}");
        assert!(
            problems[1].contains("`credentials.secret_access_key_env`"),
            "{problems:?}"
        );
    }

    #[test]
    fn an_inline_candidate_validates_and_a_bad_one_names_its_setting() {
        let good = serde_json::json!({
            "bucket": "media-bucket",
            "region": "eu-west-1",
            "credentials": {
                "role_arn": "arn:aws:iam::123456789012:role/acme",
                "external_id": "ext-1",
            },
        });
        let integration = candidate("acme", &good).expect("valid");
        assert_eq!(integration.name, "acme");
        let bad = serde_json::json!({"bucket": "Not_A_Bucket", "region": "eu-west-1"});
        let problems = candidate("acme", &bad).expect_err("refused");
        assert!(
            problems.iter().any(|p| p.contains("bucket")),
            "{problems:?}"
        );
    }
}
