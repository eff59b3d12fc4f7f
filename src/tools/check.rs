//! `s3-signing-proxy check`: the "Check connection" button of an integration page, as a
//! command. For each integration: obtain credentials, HeadBucket, list one key under the
//! prefix and, with `--write` on a read-write integration, put and delete a small probe object.
//! Every step prints a row; a failing one names the AWS error code and a hint.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::config::{Access, Buckets, Config, Integration};
use crate::proxy::Proxy;
use crate::s3::error::Error;
use crate::s3::route::Operation;
use crate::upstream::probe::{self, ProbeAnswer};
use crate::upstream::state::State;

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
    /// For a failed step, a stable code for what to fix.
    pub hint: Option<Hint>,
}

/// What to fix for a failed step, as a stable code a platform can key its own help text on
/// (`check --json`). The codes never change meaning; new ones may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// STS refused AssumeRole: the role's trust policy does not name the proxy's identity, or
    /// the ExternalId differs from the one in it (STS answers both the same way).
    TrustPolicy,
    /// STS does not accept the proxy's own keys.
    ProxyKeys,
    /// STS could not be reached.
    StsUnreachable,
    /// STS is throttling the account.
    StsThrottled,
    /// Credentials could not be obtained for another reason.
    Credentials,
    /// The bucket is in another region than the integration says.
    Region,
    /// The store's endpoint could not be reached.
    Endpoint,
    /// No such bucket.
    Bucket,
    /// The credentials may not list the bucket.
    ListPermission,
    /// The credentials may not put objects under the prefix.
    PutPermission,
    /// The credentials may not delete objects under the prefix.
    DeletePermission,
    /// The bucket's objects are encrypted with a KMS key the credentials may not use.
    Kms,
    /// The store does not accept the integration's keys.
    StoreKeys,
    /// The store refused the session token.
    SessionToken,
    /// Anything else: the detail names the store's error code.
    Other,
    /// The candidate integration itself is invalid (`POST /integrations/check`): the detail
    /// names the setting.
    Spec,
}

impl Hint {
    /// The code as `check --json` writes it.
    pub fn code(self) -> &'static str {
        match self {
            Hint::TrustPolicy => "trust-policy",
            Hint::ProxyKeys => "proxy-keys",
            Hint::StsUnreachable => "sts-unreachable",
            Hint::StsThrottled => "sts-throttled",
            Hint::Credentials => "credentials",
            Hint::Region => "region",
            Hint::Endpoint => "endpoint",
            Hint::Bucket => "bucket",
            Hint::ListPermission => "list-permission",
            Hint::PutPermission => "put-permission",
            Hint::DeletePermission => "delete-permission",
            Hint::Kms => "kms",
            Hint::StoreKeys => "store-keys",
            Hint::SessionToken => "session-token",
            Hint::Other => "other",
            Hint::Spec => "spec",
        }
    }
}

/// A failed step: what to fix, as a code and in words.
#[derive(Debug)]
pub struct Failure {
    hint: Hint,
    detail: String,
}

impl Failure {
    fn new(hint: Hint, detail: String) -> Self {
        Failure { hint, detail }
    }
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
    Ok(run_on(&proxy.state(), &integrations, write).await)
}

/// Runs the checks of `integrations` with `state`'s credential cache, upstream pool and
/// region cache: `check` builds its own state from the file, the admin listener's
/// `POST /integrations/check` uses the serving one for a candidate integration.
pub async fn run_on(state: &State, integrations: &[Arc<Integration>], write: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    for integration in integrations {
        check_integration(state, integration, write, &mut rows).await;
    }
    rows
}

/// The report of a candidate that never reached the checks: one failed `spec` row per
/// problem, so a platform's page shows them as it shows a failed check.
pub fn refused(integration: &str, problems: &[String]) -> Vec<Row> {
    problems
        .iter()
        .map(|problem| Row {
            integration: integration.to_string(),
            step: "spec",
            ok: Some(false),
            detail: problem.clone(),
            hint: Some(Hint::Spec),
        })
        .collect()
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
        self.row(step, ok, detail, None);
    }

    fn fail(&mut self, step: &'static str, failure: Failure) {
        self.row(step, Some(false), failure.detail, Some(failure.hint));
    }

    fn row(&mut self, step: &'static str, ok: Option<bool>, detail: String, hint: Option<Hint>) {
        self.rows.push(Row {
            integration: self.integration.to_string(),
            step,
            ok,
            detail,
            hint,
        });
    }

    /// A passed step with what was found, or a failed one with its hint.
    fn outcome(&mut self, step: &'static str, outcome: Result<String, Failure>) {
        match outcome {
            Ok(found) => self.push(step, Some(true), found),
            Err(failure) => self.fail(step, failure),
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
            let found = format!("{}{lifetime}", integration.credentials.describe());
            report.push("credentials", Some(true), found);
            true
        }
        Err(error) => {
            report.fail("credentials", credentials_hint(&error));
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
    match crate::upstream::region::resolve_region(state, integration, bucket).await {
        Ok(resolved) => {
            if integration.region_is_auto() {
                let found = format!("{bucket} is in {}", resolved.region);
                report.push("region", Some(true), found);
            }
            Some(resolved)
        }
        Err(error) => {
            let detail = format!("{bucket}: could not discover its region: {error}");
            report.fail("region", Failure::new(Hint::Region, detail));
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
    let head = probe::probe(
        state,
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
    let list = probe::listing(state, integration, bucket, 1).await;
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
        .and_then(|answer| crate::s3::xml::parse(&answer.body).ok())
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
    let put = probe::probe(
        state,
        integration,
        bucket,
        &probe_key,
        Operation::PutObject,
        &[],
        content,
    )
    .await;
    if let Err(failure) = verdict(&put, integration, bucket, "s3:PutObject") {
        report.fail("put", failure);
        return;
    }
    let found = format!("{}{probe_key}", integration.prefix);
    report.push("put", Some(true), found);
    let delete = probe::probe(
        state,
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

fn probe_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}")
}

fn credentials_hint(error: &Error) -> Failure {
    let text = error.to_string();
    let (hint, words) = if text.contains("AccessDenied") {
        (
            Hint::TrustPolicy,
            "STS refused AssumeRole (AccessDenied): check that the role's trust policy names \
             this proxy's identity and that `external_id` matches the one in it; a wrong \
             ExternalId looks exactly like this",
        )
    } else if text.contains("InvalidClientTokenId") || text.contains("SignatureDoesNotMatch") {
        (
            Hint::ProxyKeys,
            "STS does not accept the proxy's own keys ([sts.credentials]): the key id is \
             unknown or the secret is wrong",
        )
    } else if text.contains("could not be reached") || text.contains("in time") {
        (
            Hint::StsUnreachable,
            "STS could not be reached: check [sts] endpoint and the network",
        )
    } else if text.contains("Throttling") {
        (
            Hint::StsThrottled,
            "STS is throttling this account: try again later",
        )
    } else {
        (Hint::Credentials, "credentials could not be obtained")
    };
    Failure::new(hint, format!("{words} ({text})"))
}

/// `Ok` for a 2xx answer; else a hint naming the S3 error code.
fn verdict(
    answer: &Result<ProbeAnswer, Error>,
    integration: &Integration,
    bucket: &str,
    permission: &str,
) -> Result<(), Failure> {
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            let endpoint = integration
                .endpoint
                .as_ref()
                .map(|e| e.url())
                .unwrap_or_else(|| "of AWS S3".to_string());
            let detail = format!(
                "{} ({error}): the endpoint {endpoint} could not be reached",
                error.code()
            );
            return Err(Failure::new(Hint::Endpoint, detail));
        }
    };
    if answer.status.is_success() {
        return Ok(());
    }
    let details = error_details(answer);
    Err(hint(
        &details,
        answer.status.as_u16(),
        (integration, bucket, permission),
    ))
}

/// What an error answer says: its S3 code (or one implied by a bodiless status), its message,
/// and the bucket's region.
struct ErrorDetails {
    code: String,
    message: String,
    region: Option<String>,
}

/// The details of an error answer, from its headers and its error document.
fn error_details(answer: &ProbeAnswer) -> ErrorDetails {
    let document = crate::s3::xml::parse(&answer.body).ok();
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
    ErrorDetails {
        code,
        message: field("Message").unwrap_or_default(),
        region,
    }
}

/// What to change for a failing step.
fn hint(
    details: &ErrorDetails,
    status: u16,
    (integration, bucket, permission): (&Integration, &str, &str),
) -> Failure {
    let code = details.code.as_str();
    let wrong_region = details
        .region
        .as_deref()
        .filter(|region| *region != integration.region.signing_name());
    if let Some(region) = wrong_region {
        let detail = format!(
            "{code}: the bucket is in {region}, not {}: set region = \"{region}\" (or \"auto\")",
            integration.region
        );
        return Failure::new(Hint::Region, detail);
    }
    let (hint, detail) = match code {
        "PermanentRedirect"
        | "AuthorizationHeaderMalformed"
        | "IllegalLocationConstraintException" => (
            Hint::Region,
            format!(
                "{code}: the bucket is in another region than {}: set region = \"auto\" or the right one",
                integration.region
            ),
        ),
        "AccessDenied" | "KMS.AccessDeniedException" if mentions_kms(&details.message) => (
            Hint::Kms,
            format!(
                "{code}: the bucket's objects are encrypted with a KMS key these credentials may \
                 not use: allow kms:Decrypt and kms:GenerateDataKey on it in the role's policy \
                 and the key's policy ({})",
                details.message
            ),
        ),
        "AccessDenied" => access_denied(integration, bucket, permission),
        "NoSuchBucket" => (
            Hint::Bucket,
            format!("NoSuchBucket: no bucket {bucket}: check `bucket`"),
        ),
        "InvalidAccessKeyId" | "SignatureDoesNotMatch" => (
            Hint::StoreKeys,
            format!(
                "{code}: the store does not accept these keys: check the access key id and secret"
            ),
        ),
        "ExpiredToken" | "InvalidToken" => (
            Hint::SessionToken,
            format!("{code}: the session token was refused"),
        ),
        _ => (Hint::Other, format!("{code} (HTTP {status})")),
    };
    Failure::new(hint, detail)
}

fn mentions_kms(message: &str) -> bool {
    message.contains("KMS") || message.contains("kms:")
}

/// AccessDenied on a probe: the permission it needs, on the exact resource.
fn access_denied(integration: &Integration, bucket: &str, permission: &str) -> (Hint, String) {
    let (hint, resource) = match permission {
        "s3:ListBucket" => (Hint::ListPermission, format!("arn:aws:s3:::{bucket}")),
        "s3:PutObject" => (
            Hint::PutPermission,
            format!("arn:aws:s3:::{bucket}/{}*", integration.prefix),
        ),
        _ => (
            Hint::DeletePermission,
            format!("arn:aws:s3:::{bucket}/{}*", integration.prefix),
        ),
    };
    let detail = format!(
        "AccessDenied: the credentials may not {permission} on {resource}; add it to the role's \
         policy (and the bucket policy, if it has one)"
    );
    (hint, detail)
}

/// The report as one JSON document, for tools: `ok`, how many steps `failed`, and `checks`, one
/// object per integration and step with its `result` (`ok`, `failed` or `skipped`), `detail`
/// and, when it failed, a stable `hint` code ([`Hint::code`]).
pub fn render_json(rows: &[Row]) -> String {
    let checks: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let result = match row.ok {
                Some(true) => "ok",
                Some(false) => "failed",
                None => "skipped",
            };
            serde_json::json!({
                "integration": row.integration,
                "step": row.step,
                "result": result,
                "detail": row.detail,
                "hint": row.hint.map(Hint::code),
            })
        })
        .collect();
    let failed = rows.iter().filter(|r| r.ok == Some(false)).count();
    let report = serde_json::json!({ "ok": failed == 0, "failed": failed, "checks": checks });
    format!("{report:#}\n")
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
            cache: None,
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
        assert_eq!(hint.hint, Hint::Region);
        assert!(
            hint.detail.contains("set region = \"eu-west-1\""),
            "{hint:?}"
        );
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
        assert_eq!(list.hint, Hint::ListPermission);
        assert!(
            list.detail
                .contains("s3:ListBucket on arn:aws:s3:::acme-media;"),
            "{list:?}"
        );
        let put = verdict(
            &answer(403, None, body),
            &integration("us-east-1"),
            "acme-media",
            "s3:PutObject",
        )
        .expect_err("fails");
        assert_eq!(put.hint, Hint::PutPermission);
        assert!(
            put.detail
                .contains("s3:PutObject on arn:aws:s3:::acme-media/labelling/*"),
            "{put:?}"
        );
    }

    /// S3 answers a read of an SSE-KMS object the role may not decrypt with AccessDenied and a
    /// message naming KMS; no test store produces that on demand, so the document is S3's shape.
    #[test]
    fn a_kms_refusal_is_told_from_a_missing_s3_permission() {
        let body = "<Error><Code>AccessDenied</Code><Message>User: arn:aws:sts::111122223333:\
                    assumed-role/Integration/s3sp is not authorized to perform: kms:Decrypt on \
                    the resource associated with this ciphertext because the resource does not \
                    exist in this Region, no resource-based policies allow access, or a \
                    resource-based policy explicitly denies access</Message></Error>";
        let kms = verdict(
            &answer(403, None, body),
            &integration("us-east-1"),
            "acme-media",
            "s3:ListBucket",
        )
        .expect_err("fails");
        assert_eq!(kms.hint, Hint::Kms);
        assert!(kms.detail.contains("kms:Decrypt"), "{kms:?}");
        let plain = verdict(
            &answer(404, None, "<Error><Code>NoSuchBucket</Code></Error>"),
            &integration("us-east-1"),
            "acme-media",
            "s3:ListBucket",
        )
        .expect_err("fails");
        assert_eq!(plain.hint, Hint::Bucket);
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
                hint: None,
            },
            Row {
                integration: "acme".to_string(),
                step: "put",
                ok: Some(false),
                detail: "AccessDenied".to_string(),
                hint: Some(Hint::PutPermission),
            },
        ];
        let report = render(&rows);
        assert!(report.contains("FAILED"), "{report}");
        assert!(report.contains("1 check(s) failed"), "{report}");
        let json: serde_json::Value = serde_json::from_str(&render_json(&rows)).expect("JSON");
        assert_eq!(json["ok"], false);
        assert_eq!(json["failed"], 1);
        assert_eq!(json["checks"][0]["result"], "ok");
        assert_eq!(json["checks"][0]["hint"], serde_json::Value::Null);
        assert_eq!(json["checks"][1]["hint"], "put-permission");
    }
}
