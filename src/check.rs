//! `s3-signing-proxy check`: the "Check connection" button of an integration page, as a
//! command. For each integration: obtain credentials, HeadBucket, list one key under the
//! prefix and, with `--write` on a read-write integration, put and delete a small probe object.
//! Every step prints a row; a failing one names the AWS error code and a hint.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::config::{Access, Buckets, Config, Integration};
use crate::error::Error;
use crate::exchange::ProbeAnswer;
use crate::proxy::Proxy;
use crate::route::Operation;
use crate::state::State;

/// One row of the report.
#[derive(Debug, Clone)]
pub struct Row {
    /// The integration's name.
    pub integration: String,
    /// What was checked (`credentials`, `region`, `list`, …).
    pub step: &'static str,
    /// Passed, failed, or `None` when skipped.
    pub ok: Option<bool>,
    /// What was found, or what to fix.
    pub detail: String,
}

/// Runs the checks; `only` limits them to one integration.
pub async fn run(config: Config, only: Option<&str>, write: bool) -> Result<Vec<Row>, String> {
    let integrations: Vec<Arc<Integration>> = config
        .integrations
        .iter()
        .filter(|i| only.is_none_or(|name| i.name == name))
        .cloned()
        .collect();
    if integrations.is_empty() {
        return Err(match only {
            Some(name) => format!("no integration is named {name}"),
            None => "the configuration has no integrations".to_string(),
        });
    }
    let proxy = Proxy::new(config).map_err(|e| e.to_string())?;
    let state = proxy.state();
    let mut rows = Vec::new();
    for integration in integrations {
        check_integration(&state, &integration, write, &mut rows).await;
    }
    Ok(rows)
}

/// One integration's rows: credentials, then per bucket its region, reads and writes.
async fn check_integration(
    state: &State,
    integration: &Arc<Integration>,
    write: bool,
    rows: &mut Vec<Row>,
) {
    let mut report = Report {
        integration: &integration.name,
        rows,
    };
    if !check_credentials(state, integration, &mut report).await {
        return;
    }
    let buckets = match &integration.buckets {
        Buckets::Scoped(bucket) => vec![bucket.clone()],
        Buckets::Permitted(list) => list.clone(),
    };
    for bucket in buckets {
        let Some(resolved) = check_region(state, integration, &bucket, &mut report).await else {
            continue;
        };
        check_reads(state, &resolved, &bucket, &mut report).await;
        if write {
            check_writes(state, &resolved, &bucket, &mut report).await;
        }
    }
}

/// The rows of one integration's report.
struct Report<'a> {
    integration: &'a str,
    rows: &'a mut Vec<Row>,
}

impl Report<'_> {
    fn push(&mut self, step: &'static str, ok: Option<bool>, detail: String) {
        self.rows.push(Row {
            integration: self.integration.to_string(),
            step,
            ok,
            detail,
        });
    }

    /// A passed step with what was found, or a failed one with its hint.
    fn outcome(&mut self, step: &'static str, outcome: Result<String, String>) {
        match outcome {
            Ok(found) => self.push(step, Some(true), found),
            Err(hint) => self.push(step, Some(false), hint),
        }
    }
}

/// Whether credentials were obtained (the other steps need them).
async fn check_credentials(
    state: &State,
    integration: &Arc<Integration>,
    report: &mut Report<'_>,
) -> bool {
    match state.credentials.credentials(integration).await {
        Ok(credentials) => {
            let lifetime = credentials
                .expiry()
                .and_then(|e| e.duration_since(SystemTime::now()).ok())
                .map(|left| format!(", valid for {}m", left.as_secs() / 60))
                .unwrap_or_default();
            let found = format!("{}{lifetime}", describe_source(integration));
            report.push("credentials", Some(true), found);
            true
        }
        Err(error) => {
            report.push("credentials", Some(false), credentials_hint(&error));
            false
        }
    }
}

/// The integration with `bucket`'s region known (a row only when it was discovered).
async fn check_region(
    state: &State,
    integration: &Arc<Integration>,
    bucket: &str,
    report: &mut Report<'_>,
) -> Option<Arc<Integration>> {
    match state.resolve_region(integration, bucket).await {
        Ok(resolved) => {
            if integration.region_is_auto() {
                let found = format!("{bucket} is in {}", resolved.region);
                report.push("region", Some(true), found);
            }
            Some(resolved)
        }
        Err(error) => {
            let hint = format!("{bucket}: could not discover its region: {error}");
            report.push("region", Some(false), hint);
            None
        }
    }
}

/// HeadBucket, and a listing of one key under the prefix.
async fn check_reads(
    state: &State,
    integration: &Arc<Integration>,
    bucket: &str,
    report: &mut Report<'_>,
) {
    let head = state
        .probe(
            integration,
            bucket,
            "",
            Operation::HeadBucket,
            &[],
            Bytes::new(),
        )
        .await;
    let found = format!("{bucket} ({})", integration.region);
    report.outcome(
        "head-bucket",
        verdict(&head, integration, bucket, "s3:ListBucket").map(|()| found),
    );
    let list = state.probe_listing(integration, bucket, 1).await;
    report.outcome(
        "list",
        verdict(&list, integration, bucket, "s3:ListBucket")
            .map(|()| listed(&list, &integration.prefix)),
    );
}

/// "keys present under tenant/", read from the listing document.
fn listed(list: &Result<ProbeAnswer, Error>, prefix: &str) -> String {
    let any = list
        .as_ref()
        .ok()
        .and_then(|answer| crate::xml::parse(&answer.body).ok())
        .is_some_and(|root| root.children.iter().any(|c| c.name == "Contents"));
    let found = if any { "keys present" } else { "no keys yet" };
    if prefix.is_empty() {
        format!("{found} in the bucket")
    } else {
        format!("{found} under {prefix}")
    }
}

/// With `--write` on a read-write integration: put a small probe object, then delete it.
async fn check_writes(
    state: &State,
    integration: &Arc<Integration>,
    bucket: &str,
    report: &mut Report<'_>,
) {
    if integration.access != Access::ReadWrite {
        let why = "skipped: the integration is read-only".to_string();
        report.push("write", None, why);
        return;
    }
    let probe_key = format!(".s3-signing-proxy-check-{}", probe_suffix());
    let content = Bytes::from_static(b"s3-signing-proxy connection check\n");
    let put = state
        .probe(
            integration,
            bucket,
            &probe_key,
            Operation::PutObject,
            &[],
            content,
        )
        .await;
    if let Err(hint) = verdict(&put, integration, bucket, "s3:PutObject") {
        report.push("put", Some(false), hint);
        return;
    }
    let found = format!("{}{probe_key}", integration.prefix);
    report.push("put", Some(true), found);
    let delete = state
        .probe(
            integration,
            bucket,
            &probe_key,
            Operation::DeleteObject,
            &[],
            Bytes::new(),
        )
        .await;
    report.outcome(
        "delete",
        verdict(&delete, integration, bucket, "s3:DeleteObject")
            .map(|()| "probe object removed".to_string()),
    );
}

fn describe_source(integration: &Integration) -> String {
    match &integration.credentials {
        crate::config::CredentialSource::Static(keys) => {
            format!("static keys {}", keys.access_key_id)
        }
        crate::config::CredentialSource::AssumeRole { role_arn, .. } => {
            format!("assumed {role_arn}")
        }
        crate::config::CredentialSource::DefaultChain => "the proxy's own identity".to_string(),
    }
}

fn probe_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}")
}

fn credentials_hint(error: &Error) -> String {
    let text = error.to_string();
    let hint = if text.contains("AccessDenied") {
        "STS refused AssumeRole (AccessDenied): check that the role's trust policy names this \
         proxy's identity and that `external_id` matches the one in it; a wrong ExternalId looks \
         exactly like this"
    } else if text.contains("InvalidClientTokenId") || text.contains("SignatureDoesNotMatch") {
        "STS does not accept the proxy's own keys ([sts.credentials]): the key id is unknown or \
         the secret is wrong"
    } else if text.contains("could not be reached") || text.contains("in time") {
        "STS could not be reached: check [sts] endpoint and the network"
    } else if text.contains("Throttling") {
        "STS is throttling this account: try again later"
    } else {
        "credentials could not be obtained"
    };
    format!("{hint} ({text})")
}

/// `Ok` for a 2xx answer; else a hint naming the S3 error code.
fn verdict(
    answer: &Result<ProbeAnswer, Error>,
    integration: &Integration,
    bucket: &str,
    permission: &str,
) -> Result<(), String> {
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            let endpoint = integration
                .endpoint
                .as_ref()
                .map(|e| e.url())
                .unwrap_or_else(|| "of AWS S3".to_string());
            return Err(format!(
                "{} ({error}): the endpoint {endpoint} could not be reached",
                error.code()
            ));
        }
    };
    if answer.status.is_success() {
        return Ok(());
    }
    let (code, actual_region) = error_details(answer);
    Err(hint(
        &code,
        actual_region.as_deref(),
        answer.status.as_u16(),
        (integration, bucket, permission),
    ))
}

/// The S3 error code (or one implied by a bodiless status) and the bucket's region, from the
/// answer's headers and its error document.
fn error_details(answer: &ProbeAnswer) -> (String, Option<String>) {
    let document = crate::xml::parse(&answer.body).ok();
    let field = |name: &str| {
        let root = document.as_ref()?;
        let child = root.children.iter().find(|c| c.name == name)?;
        Some(child.text.clone())
    };
    let code = field("Code").unwrap_or_else(|| match answer.status.as_u16() {
        301 => "PermanentRedirect".to_string(),
        403 => "AccessDenied".to_string(),
        404 => "NoSuchBucket".to_string(),
        status => format!("HTTP {status}"),
    });
    let region = answer
        .headers
        .get("x-amz-bucket-region")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| field("Region"));
    (code, region)
}

/// What to change for a failing step.
fn hint(
    code: &str,
    actual_region: Option<&str>,
    status: u16,
    (integration, bucket, permission): (&Integration, &str, &str),
) -> String {
    let mut hint = String::new();
    match (code, actual_region) {
        (_, Some(region)) if region != integration.region.signing_name() => {
            let _ = write!(
                hint,
                "{code}: the bucket is in {region}, not {}: set region = \"{region}\" (or \"auto\")",
                integration.region
            );
        }
        (
            "PermanentRedirect"
            | "AuthorizationHeaderMalformed"
            | "IllegalLocationConstraintException",
            _,
        ) => {
            let _ = write!(
                hint,
                "{code}: the bucket is in another region than {}: set region = \"auto\" or the right one",
                integration.region
            );
        }
        ("AccessDenied", _) => {
            let resource = if permission == "s3:ListBucket" {
                format!("arn:aws:s3:::{bucket}")
            } else {
                format!("arn:aws:s3:::{bucket}/{}*", integration.prefix)
            };
            let _ = write!(
                hint,
                "AccessDenied: the credentials may not {permission} on {resource}; add it to the \
                 role's policy (and the bucket policy, if it has one)"
            );
        }
        ("NoSuchBucket", _) => {
            let _ = write!(hint, "NoSuchBucket: no bucket {bucket}: check `bucket`");
        }
        ("InvalidAccessKeyId" | "SignatureDoesNotMatch", _) => {
            let _ = write!(
                hint,
                "{code}: the store does not accept these keys: check the access key id and secret"
            );
        }
        ("ExpiredToken" | "InvalidToken", _) => {
            let _ = write!(hint, "{code}: the session token was refused");
        }
        _ => {
            let _ = write!(hint, "{code} (HTTP {})", status);
        }
    }
    hint
}

/// The report as an aligned table, a summary line and the CORS note.
pub fn render(rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|r| r.integration.len())
        .max()
        .unwrap_or(0)
        .max("INTEGRATION".len());
    let mut out = format!(
        "{:width$}  {:12}  {:7}  DETAIL\n",
        "INTEGRATION", "STEP", "RESULT"
    );
    for row in rows {
        let result = match row.ok {
            Some(true) => "ok",
            Some(false) => "FAILED",
            None => "skipped",
        };
        let _ = writeln!(
            out,
            "{:width$}  {:12}  {:7}  {}",
            row.integration, row.step, result, row.detail
        );
    }
    let failed = rows.iter().filter(|r| r.ok == Some(false)).count();
    if failed == 0 {
        out.push_str(
            "\nall checks passed. Browsers reach these buckets through the proxy: the buckets \
             need no CORS rules.\n",
        );
    } else {
        let _ = writeln!(out, "\n{failed} check(s) failed");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, StatusCode};

    fn integration(region: &str) -> Integration {
        Integration {
            name: "acme".to_string(),
            buckets: Buckets::Scoped("acme-media".to_string()),
            prefix: "labelling/".to_string(),
            region: crate::config::Region::Named(region.to_string()),
            endpoint: None,
            ca_file: None,
            addressing: crate::config::Addressing::VirtualHost,
            access: Access::ReadWrite,
            public: false,
            allow_unusual_keys: false,
            allow_acl_headers: false,
            active_content: crate::config::ActiveContent::Sandbox,
            credentials: crate::config::CredentialSource::DefaultChain,
            cors_origins: Vec::new(),
            delivery: crate::config::Delivery::Stream,
        }
    }

    fn answer(status: u16, region: Option<&str>, body: &str) -> Result<ProbeAnswer, Error> {
        let mut headers = HeaderMap::new();
        if let Some(region) = region {
            headers.insert(
                "x-amz-bucket-region",
                HeaderValue::from_str(region).expect("header"),
            );
        }
        Ok(ProbeAnswer {
            status: StatusCode::from_u16(status).expect("status"),
            headers,
            body: Bytes::from(body.to_string()),
        })
    }

    #[test]
    fn a_bucket_in_another_region_names_the_right_one() {
        let hint = verdict(
            &answer(301, Some("eu-west-1"), ""),
            &integration("us-east-1"),
            "acme-media",
            "s3:ListBucket",
        )
        .expect_err("fails");
        assert!(hint.contains("set region = \"eu-west-1\""), "{hint}");
    }

    #[test]
    fn access_denied_names_the_permission_and_the_exact_resource() {
        let body = "<Error><Code>AccessDenied</Code></Error>";
        let list = verdict(
            &answer(403, None, body),
            &integration("us-east-1"),
            "acme-media",
            "s3:ListBucket",
        )
        .expect_err("fails");
        assert!(
            list.contains("s3:ListBucket on arn:aws:s3:::acme-media;"),
            "{list}"
        );
        let put = verdict(
            &answer(403, None, body),
            &integration("us-east-1"),
            "acme-media",
            "s3:PutObject",
        )
        .expect_err("fails");
        assert!(
            put.contains("s3:PutObject on arn:aws:s3:::acme-media/labelling/*"),
            "{put}"
        );
    }

    #[test]
    fn success_passes_and_the_report_counts_failures() {
        assert!(
            verdict(
                &answer(200, Some("us-east-1"), ""),
                &integration("us-east-1"),
                "acme-media",
                "s3:ListBucket"
            )
            .is_ok()
        );
        let rows = vec![
            Row {
                integration: "acme".to_string(),
                step: "list",
                ok: Some(true),
                detail: "keys present".to_string(),
            },
            Row {
                integration: "acme".to_string(),
                step: "put",
                ok: Some(false),
                detail: "AccessDenied".to_string(),
            },
        ];
        let report = render(&rows);
        assert!(report.contains("FAILED"), "{report}");
        assert!(report.contains("1 check(s) failed"), "{report}");
    }
}
