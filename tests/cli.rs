//! The binary as an operator meets it: config errors at start-up name the file, the integration
//! and the field and exit non-zero; every proxy error's request id is in the log line.
// Tests may search and edit text freely; .clippy.toml's ban is for the proxy's own code.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::process::Command;

use support::*;

const BROKEN: &str = r#"
[server]
listen = "127.0.0.1:0"

[[integration]]
name = "acme-media"
bucket = "acme-prod-media"
region = "us-west-2"
addressing = "diagonal"
[integration.credentials]
role_arn = "arn:aws:iam::1111:role/Integration"

[[integration]]
name = "minio"
bucket = "local"
region = "us-east-1"
endpoint = "127.0.0.1:9000"
[integration.credentials]
access_key_id = "minioadmin"
secret_access_key_env = "S3SP_TEST_UNSET_SECRET"
"#;

fn run(args: &[&str], config: &std::path::Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_s3-signing-proxy"))
        .args(args)
        .arg(config)
        .env_remove("S3SP_TEST_UNSET_SECRET")
        .output()
        .expect("run the binary");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn config_errors_name_file_integration_and_field_and_exit_non_zero() {
    let dir = TempDir::new("cli");
    let path = dir.0.join("broken.toml");
    std::fs::write(&path, BROKEN).unwrap();
    for args in [&["serve", "--config"][..], &["check-config"][..]] {
        let (code, stderr) = run(args, &path);
        assert_ne!(code, 0, "{args:?}");
        let file = path.display().to_string();
        for expected in [
            format!("{file}: integration \"acme-media\": field `addressing`"),
            format!("{file}: integration \"acme-media\": credentials: field `role_arn`"),
            format!("{file}: integration \"minio\": field `endpoint`"),
            format!("{file}: integration \"minio\": credentials: field `secret_access_key_env`"),
        ] {
            assert!(
                stderr.contains(&expected),
                "{args:?}: missing {expected:?} in\n{stderr}"
            );
        }
    }
}

#[test]
fn a_valid_config_checks_clean() {
    let (code, stderr) = run(&["check-config"], &repo_root().join("config/example.toml"));
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test]
async fn the_request_id_of_an_error_is_in_its_log_line_and_no_secret_is() {
    let dir = TempDir::new("cli-log");
    let config = r#"
[server]
listen = "LISTEN"
[[integration]]
name = "local"
bucket = "local-bucket"
region = "us-east-1"
endpoint = "http://127.0.0.1:9"
[integration.credentials]
access_key_id = "AKIDLOGTEST"
secret_access_key_env = "LOG_TEST_SECRET"
"#;
    let secret = "log-test-secret-do-not-print";
    let proxy = ProxyProcess::spawn(&dir.0, config, &[("LOG_TEST_SECRET", secret)]).await;
    let refused = get(&proxy.url("/nowhere/key.txt")).await;
    assert_eq!(refused.error_code(), "NoSuchBucket");
    let id = refused.headers["x-amz-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let denied = request(
        http::Method::GET,
        &proxy.url("/local/key.txt"),
        &[(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/x, Signature=client-signature",
        )],
    )
    .await;
    assert_eq!(denied.error_code(), "AuthorizationHeaderMalformed");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = proxy.log();
    let line = log
        .lines()
        .find(|l| l.contains(&id) && l.contains("NoSuchBucket"));
    assert!(line.is_some(), "no log line with request id {id}:\n{log}");
    for leaked in [secret, "client-signature", "AKIDCLIENT"] {
        assert!(!log.contains(leaked), "{leaked} appears in the log:\n{log}");
    }
}
