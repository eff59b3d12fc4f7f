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

async fn check_integration(
    state: &State,
    integration: &Arc<Integration>,
    write: bool,
    rows: &mut Vec<Row>,
) {
    let name = integration.name.clone();
    let row = |step, ok, detail: String| Row {
        integration: name.clone(),
        step,
        ok,
        detail,
    };
    let buckets = match &integration.buckets {
        Buckets::Scoped(bucket) => vec![bucket.clone()],
        Buckets::Permitted(list) => list.clone(),
    };
    match state.credentials.credentials(integration).await {
        Ok(credentials) => {
            let lifetime = credentials
                .expiry()
                .and_then(|e| e.duration_since(SystemTime::now()).ok())
                .map(|left| format!(", valid for {}m", left.as_secs() / 60))
                .unwrap_or_default();
            rows.push(row(
                "credentials",
                Some(true),
                format!("{}{lifetime}", describe_source(integration)),
            ));
        }
        Err(error) => {
            rows.push(row("credentials", Some(false), credentials_hint(&error)));
            return;
        }
    }
    for bucket in buckets {
        let integration = match state.resolve_region(integration, &bucket).await {
            Ok(resolved) => {
                if integration.region_is_auto() {
                    rows.push(row(
                        "region",
                        Some(true),
                        format!("{bucket} is in {}", resolved.region),
                    ));
                }
                resolved
            }
            Err(error) => {
                rows.push(row(
                    "region",
                    Some(false),
                    format!("{bucket}: could not discover its region: {error}"),
                ));
                continue;
            }
        };
        let head = state
            .probe(
                &integration,
                &bucket,
                "",
                Operation::HeadBucket,
                &[],
                Bytes::new(),
            )
            .await;
        rows.push(
            match verdict(&head, &integration, &bucket, "s3:ListBucket") {
                Ok(()) => row(
                    "head-bucket",
                    Some(true),
                    format!("{bucket} ({})", integration.region),
                ),
                Err(hint) => row("head-bucket", Some(false), hint),
            },
        );
        let query = vec![
            ("list-type".to_string(), "2".to_string()),
            ("max-keys".to_string(), "1".to_string()),
            ("prefix".to_string(), integration.prefix.clone()),
        ];
        let list = state
            .probe(
                &integration,
                &bucket,
                "",
                Operation::ListObjectsV2,
                &query,
                Bytes::new(),
            )
            .await;
        rows.push(
            match verdict(&list, &integration, &bucket, "s3:ListBucket") {
                Ok(()) => {
                    let listed = list
                        .as_ref()
                        .map(|a| String::from_utf8_lossy(&a.body).matches("<Key>").count())
                        .unwrap_or(0);
                    let under = if integration.prefix.is_empty() {
                        "in the bucket".to_string()
                    } else {
                        format!("under {}", integration.prefix)
                    };
                    let found = if listed == 0 {
                        "no keys yet"
                    } else {
                        "keys present"
                    };
                    row("list", Some(true), format!("{found} {under}"))
                }
                Err(hint) => row("list", Some(false), hint),
            },
        );
        if !write {
            continue;
        }
        if integration.access != Access::ReadWrite {
            rows.push(row(
                "write",
                None,
                "skipped: the integration is read-only".to_string(),
            ));
            continue;
        }
        let probe_key = format!(".s3-signing-proxy-check-{}", probe_suffix());
        let put = state
            .probe(
                &integration,
                &bucket,
                &probe_key,
                Operation::PutObject,
                &[],
                Bytes::from_static(b"s3-signing-proxy connection check\n"),
            )
            .await;
        match verdict(&put, &integration, &bucket, "s3:PutObject") {
            Ok(()) => {
                rows.push(row(
                    "put",
                    Some(true),
                    format!("{}{probe_key}", integration.prefix),
                ));
                let delete = state
                    .probe(
                        &integration,
                        &bucket,
                        &probe_key,
                        Operation::DeleteObject,
                        &[],
                        Bytes::new(),
                    )
                    .await;
                rows.push(
                    match verdict(&delete, &integration, &bucket, "s3:DeleteObject") {
                        Ok(()) => row("delete", Some(true), "probe object removed".to_string()),
                        Err(hint) => row("delete", Some(false), hint),
                    },
                );
            }
            Err(hint) => rows.push(row("put", Some(false), hint)),
        }
    }
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
            return Err(format!(
                "{} ({}): the endpoint {} could not be reached",
                error.code(),
                error,
                integration
                    .endpoint
                    .as_ref()
                    .map(|e| e.url())
                    .unwrap_or_else(|| "of AWS S3".to_string())
            ));
        }
    };
    if answer.status.is_success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&answer.body);
    let code =
        between(&text, "<Code>", "</Code>").unwrap_or_else(|| match answer.status.as_u16() {
            301 => "PermanentRedirect".to_string(),
            403 => "AccessDenied".to_string(),
            404 => "NoSuchBucket".to_string(),
            _ => format!("HTTP {}", answer.status.as_u16()),
        });
    let actual_region = answer
        .headers
        .get("x-amz-bucket-region")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| between(&text, "<Region>", "</Region>"));
    let mut hint = String::new();
    match (code.as_str(), &actual_region) {
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
            let _ = write!(hint, "{code} (HTTP {})", answer.status.as_u16());
        }
    }
    Err(hint)
}

fn between(text: &str, open: &str, close: &str) -> Option<String> {
    let (_, rest) = text.split_once(open)?;
    let (inner, _) = rest.split_once(close)?;
    Some(inner.to_string())
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
