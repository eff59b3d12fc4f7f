//! The binary as an operator meets it: config errors at start-up name the file, the integration
//! and the field and exit non-zero; every proxy error's request id is in the log line.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::process::Command;

use crate::support::*;

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
    keep_output(&output);
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

/// README's `explain` example, word for word.
#[test]
fn readmes_explain_example_explains() {
    let readme = user_docs();
    let example = readme
        .lines()
        .find(|line| line.starts_with("s3-signing-proxy explain "))
        .expect("README has an explain example");
    let args: Vec<&str> = example.split_whitespace().skip(1).collect();
    let output = Command::new(env!("CARGO_BIN_EXE_s3-signing-proxy"))
        .args(&args)
        .current_dir(repo_root())
        .output()
        .unwrap();
    keep_output(&output);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("client AKPLATFORMBACKEND"), "{text}");
    assert!(text.contains("labelling/photo.jpg"), "{text}");
    assert!(text.contains("answer: forwarded to the store"), "{text}");
}

#[tokio::test]
async fn the_request_id_of_an_error_is_in_its_log_line_and_no_secret_is() {
    let dir = TempDir::new("cli-log");
    let local = IntegrationFixture::new("local", "local-bucket")
        .set("endpoint", "http://127.0.0.1:9")
        .static_keys("AKIDLOGTEST", "LOG_TEST_SECRET");
    let config = &fixtures::config(fixtures::settings("listen = \"LISTEN\""), &[local], &[]);
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
    eventually("the refusal's log line", || {
        let log = proxy.log();
        log.lines()
            .any(|l| l.contains(&id) && l.contains("NoSuchBucket"))
            .then_some(())
    })
    .await;
    let log = proxy.log();
    for leaked in [secret, "client-signature", "AKIDCLIENT"] {
        assert!(!log.contains(leaked), "{leaked} appears in the log:\n{log}");
    }
}

/// A config for `explain`: a private read-write integration on a store at `endpoint` (static
/// keys), and a read-only and a read-write client bound to it; the listeners as given.
fn explained(endpoint: &str, store_key: &str, (listen, admin): (&str, &str)) -> String {
    let mut server = toml::Table::new();
    server.insert("listen".into(), listen.into());
    server.insert("admin_listen".into(), admin.into());
    let acme = IntegrationFixture::new("acme", "media")
        .set("prefix", "tenant-a/")
        .set("endpoint", endpoint)
        .set("access", "read-write")
        .static_keys(store_key, "EXPLAIN_STORE_SECRET");
    let client = |key: &str, access: &str| {
        ClientFixture::new(key, "EXPLAIN_CLIENT_SECRET", &["acme"], access)
    };
    fixtures::config(
        server,
        &[acme],
        &[
            client("AKREADER", "read-only"),
            client("AKWRITER", "read-write"),
        ],
    )
}

const CLIENT_SECRET: &str = "explain-client-secret-not-to-print";

/// [`explained`] with a store nobody listens on, written to `dir`, for `explain --offline`.
fn offline_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("explain.toml");
    let config = explained(
        "http://127.0.0.1:9",
        "STOREKEY",
        ("127.0.0.1:8080", "127.0.0.1:8081"),
    );
    std::fs::write(&path, config).unwrap();
    path
}

/// Runs `explain` on `config` with `args`; returns (exit code, stdout + stderr).
fn explain(config: &std::path::Path, store_secret: &str, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_s3-signing-proxy"))
        .args(["explain", "--config"])
        .arg(config)
        .args(args)
        .env("EXPLAIN_STORE_SECRET", store_secret)
        .env("EXPLAIN_CLIENT_SECRET", CLIENT_SECRET)
        .env("RUST_LOG", "trace")
        .output()
        .expect("run the binary");
    keep_output(&output);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

/// The line of `step` in an explanation, and the facts indented under it.
fn step(explanation: &str, name: &str) -> String {
    let mut lines = explanation
        .lines()
        .skip_while(|line| !(line.starts_with(name) && line[name.len()..].starts_with(' ')));
    let mut found = lines
        .next()
        .unwrap_or_else(|| panic!("no {name} step in\n{explanation}"))
        .to_string();
    for line in lines.take_while(|line| line.starts_with(' ')) {
        found.push('\n');
        found.push_str(line);
    }
    found
}

/// `explain --offline` names the step and the rule behind each kind of refusal, and the
/// upstream request of an allowed one; nothing secret is in any of it.
#[test]
fn explain_names_the_step_and_rule_of_each_refusal() {
    let dir = TempDir::new("cli-explain");
    let path = offline_config(&dir.0);
    let store_secret = "explain-store-secret-not-to-print";
    let cases: [(&[&str], &str, &str, &str); 7] = [
        (
            &["GET", "/nowhere/key"],
            "integration",
            "404 NoSuchBucket",
            "",
        ),
        (
            &["GET", "/acme/key"],
            "authorisation",
            "403 AccessDenied",
            "does not allow anonymous",
        ),
        (
            &["--client", "AKREADER", "PUT", "/acme/key"],
            "authorisation",
            "403 AccessDenied",
            "may only read",
        ),
        (
            &["--client", "AKREADER", "GET", "/acme/a/../b"],
            "integration",
            "400 InvalidArgument",
            "`..` segments",
        ),
        (
            &[
                "-H",
                "Authorization: AWS4-HMAC-SHA256 Credential=AKREADER/x, Signature=s",
                "GET",
                "/acme/key",
            ],
            "front door",
            "400 AuthorizationHeaderMalformed",
            "",
        ),
        (
            &[
                "-H",
                "x-amz-acl: public-read",
                "--client",
                "AKWRITER",
                "PUT",
                "/acme/key",
            ],
            "guard",
            "403 AccessDenied",
            "",
        ),
        (
            &["GET", &format!("/acme/{}", "k".repeat(9000))],
            "shape",
            "414",
            "",
        ),
    ];
    let mut outputs = String::new();
    for (args, name, error, reason) in cases {
        let mut all = vec!["--offline"];
        all.extend_from_slice(args);
        let (code, text) = explain(&path, store_secret, &all);
        assert_eq!(code, 0, "{text}");
        let refused = step(&text, name);
        assert!(refused.contains("REFUSED"), "{args:?}: {name}\n{text}");
        assert!(refused.contains(error), "{args:?}: {error}\n{text}");
        assert!(refused.contains(reason), "{args:?}: {reason}\n{text}");
        outputs.push_str(&text);
    }

    // What the config answers itself, as the proxy does: HeadBucket and GetBucketLocation
    // once the region is known (no credentials, no store), and CreateBucket from a client that
    // may write there before any header check.
    for args in [["HEAD", "/acme"], ["GET", "/acme?location"]] {
        let mut all = vec!["--offline", "--client", "AKREADER"];
        all.extend_from_slice(&args);
        let (_, text) = explain(&path, store_secret, &all);
        let answered = step(&text, "config");
        assert!(answered.contains("in region us-east-1"), "{args:?}\n{text}");
        assert!(
            text.contains("answer: answered by the proxy"),
            "{args:?}\n{text}"
        );
        assert!(!text.contains("upstream request"), "{args:?}\n{text}");
    }
    let (_, text) = explain(
        &path,
        store_secret,
        &["--offline", "--client", "AKWRITER", "PUT", "/acme"],
    );
    assert!(
        step(&text, "config").contains("409 BucketAlreadyOwnedByYou"),
        "{text}"
    );
    outputs.push_str(&text);

    // An allowed read: the integration, the rule, and the upstream request as it would be sent.
    let (code, text) = explain(
        &path,
        store_secret,
        &[
            "--offline",
            "--client",
            "AKREADER",
            "GET",
            "/acme/photos/cat.jpg",
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        step(&text, "integration").contains("tenant-a/photos/cat.jpg"),
        "{text}"
    );
    assert!(
        step(&text, "authorisation").contains("bound to integration acme"),
        "{text}"
    );
    let upstream = step(&text, "upstream request");
    assert!(
        upstream.contains("http://127.0.0.1:9/media/tenant-a/photos/cat.jpg"),
        "{text}"
    );
    assert!(
        upstream.contains("GET\n        /media/tenant-a/photos/cat.jpg"),
        "{text}"
    );
    assert!(text.contains("answer: forwarded to the store"), "{text}");
    outputs.push_str(&text);
    for secret in [store_secret, CLIENT_SECRET, "Signature="] {
        assert!(!outputs.contains(secret), "{secret} is in the output");
    }
}

/// A request signed with the wrong secret: the front door shows the canonical request and
/// string to sign it computed, and where a client's own canonical request differs from it.
#[test]
fn a_wrong_signature_shows_the_proxys_canonical_request_and_the_first_difference() {
    let dir = TempDir::new("cli-explain-sig");
    let path = offline_config(&dir.0);
    let mut request = http::Request::builder()
        .method("GET")
        .uri("/acme/key.txt")
        .header("host", "127.0.0.1:8080")
        .body(())
        .unwrap();
    sign_as_client(&mut request, "AKREADER", "not-the-secret");
    let header = |name: &str| format!("{name}: {}", request.headers()[name].to_str().unwrap());
    let signed: Vec<String> = ["authorization", "x-amz-date", "x-amz-content-sha256"]
        .iter()
        .map(|name| header(name))
        .collect();
    // The client's canonical request as its SDK logged it, with one header's value changed
    // on the way (say, by a rewriting front proxy).
    let theirs = format!(
        "GET\n/acme/key.txt\n\nhost:example.com\nx-amz-content-sha256:UNSIGNED-PAYLOAD\nx-amz-date:{}\n\nhost;x-amz-content-sha256;x-amz-date\nUNSIGNED-PAYLOAD\n",
        request.headers()["x-amz-date"].to_str().unwrap()
    );
    std::fs::write(dir.0.join("theirs.txt"), theirs).unwrap();
    let compare = dir.0.join("theirs.txt");
    let mut args = vec!["--offline", "--compare", compare.to_str().unwrap()];
    for header in &signed {
        args.extend(["-H", header.as_str()]);
    }
    args.extend(["GET", "/acme/key.txt"]);
    let (code, text) = explain(&path, "store-secret", &args);
    assert_eq!(code, 0, "{text}");
    let refused = step(&text, "front door");
    assert!(refused.contains("403 SignatureDoesNotMatch"), "{text}");
    assert!(refused.contains("AKREADER"), "{text}");
    assert!(refused.contains("canonical request:"), "{text}");
    assert!(refused.contains("host:127.0.0.1:8080"), "{text}");
    assert!(refused.contains("string to sign:"), "{text}");
    assert!(
        refused.contains(
            r#"line 4: the proxy has "host:127.0.0.1:8080", the client has "host:example.com""#
        ),
        "{text}"
    );
    let signature = request.headers()["authorization"].to_str().unwrap();
    let signature = signature.rsplit_once("Signature=").unwrap().1;
    assert!(!text.contains(signature), "the signature is in the output");
    assert!(!text.contains(CLIENT_SECRET), "the secret is in the output");
}

/// The admin listener's `POST /explain`, with `send`: the request goes through the proxy to a
/// real store, whose answer is shown; the public listener knows no such path.
#[tokio::test]
async fn admin_explain_sends_the_request_and_shows_the_stores_answer() {
    let dir = TempDir::new("cli-explain-admin");
    let root = dir.0.join("store");
    std::fs::create_dir_all(root.join("media/tenant-a")).unwrap();
    std::fs::write(root.join("media/tenant-a/hello.txt"), b"hello\n").unwrap();
    let store = s3_signing_proxy::lab::demo::EmbeddedStore::start(&root, None, None)
        .await
        .unwrap();
    let config = explained(
        &format!("http://{}", store.address),
        &store.access_key_id,
        ("LISTEN", "ADMIN"),
    );
    let proxy = ProxyProcess::spawn(
        &dir.0,
        &config,
        &[
            ("EXPLAIN_STORE_SECRET", store.secret_access_key.as_str()),
            ("EXPLAIN_CLIENT_SECRET", CLIENT_SECRET),
        ],
    )
    .await;
    let ask = |url: &str| {
        serde_json::json!({"method": "GET", "url": url, "client": "AKREADER", "send": true})
            .to_string()
    };
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let mut answers = Vec::new();
    for url in ["/acme/hello.txt", "/acme/missing.txt"] {
        let response = client
            .request(
                http::Request::post(proxy.admin_url("/explain?json"))
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::from(ask(url)))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let sent = json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == "sent")
            .cloned()
            .unwrap_or_else(|| panic!("no sent step: {json:#}"));
        answers.push((
            sent["facts"]["status"].clone(),
            sent["facts"]["error"].clone(),
        ));
        assert!(
            !body
                .windows(CLIENT_SECRET.len())
                .any(|w| w == CLIENT_SECRET.as_bytes())
        );
        let store_secret = store.secret_access_key.as_bytes();
        assert!(!body.windows(store_secret.len()).any(|w| w == store_secret));
    }
    assert_eq!(
        answers[0],
        (serde_json::json!("200"), serde_json::Value::Null)
    );
    assert_eq!(
        answers[1],
        (serde_json::json!("404"), serde_json::json!("NoSuchKey"))
    );
    let public = request(http::Method::POST, &proxy.url("/explain"), &[]).await;
    assert_eq!(
        (public.status, public.error_code()),
        (http::StatusCode::BAD_REQUEST, "InvalidArgument".to_string()),
        "the public listener must not explain: there it is a form upload without a form"
    );
    assert!(!public.text().contains("answer:"), "{}", public.text());
}
