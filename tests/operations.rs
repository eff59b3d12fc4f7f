//! Running it in production: readiness, metrics, access logs, the `check` command, reloads,
//! graceful shutdown, the bucket's region asked once, and TLS (with certificate reload and a
//! private upstream CA). The limits that protect a public listener are in `limits`.
// This file strips a redaction marker from log text before searching it. .clippy.toml's ban on
// editing text is for the proxy's own code.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use s3_signing_proxy::lab::demo::EmbeddedStore;

use crate::support::*;

/// The config of a binary proxy with an admin listener and moto's tenant A as `acme`.
fn acme_with_admin(extra_integrations: &str) -> String {
    let moto = moto();
    format!(
        "[server]\nlisten = \"LISTEN\"\nadmin_listen = \"ADMIN\"\n{}{}",
        acme_config(&moto.endpoint(), &moto.endpoint(), ""),
        extra_integrations
    )
}

/// Polls `url` until `done` holds for its answer, for at most `limit`.
async fn wait_for(url: &str, limit: Duration, done: impl Fn(&Fetched) -> bool) -> Fetched {
    let started = Instant::now();
    loop {
        let fetched = get(url).await;
        if done(&fetched) || started.elapsed() > limit {
            return fetched;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of the metric line that starts with `series` (name and labels), if present.
/// Waits up to ten seconds for `needle` in the proxy's log.
async fn wait_for_log(proxy: &ProxyProcess, needle: &str) {
    let started = Instant::now();
    while !proxy.log().contains(needle) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no {needle:?} in {}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_role_shows_on_integrations_not_readyz_and_reloads_take_effect() {
    let moto = moto();
    let dir = TempDir::new("ops-ready");
    let wrong = role_integration(
        "wrong",
        &moto.tenant_b,
        &moto.endpoint(),
        "path",
        "not-the-external-id",
        "",
    );
    let env = moto_env(moto);
    let proxy = ProxyProcess::spawn(&dir.0, &acme_with_admin(&wrong), &env_refs(&env)).await;
    // A SIGHUP as soon as the port answers reloads, rather than finding no handler yet and
    // ending the process (the handler is in place before the listener binds).
    proxy.signal("HUP");
    wait_for_log(&proxy, "configuration reloaded").await;

    let health = get(&proxy.admin_url("/healthz")).await;
    assert_eq!(health.status, StatusCode::OK);
    // One tenant's broken role does not make the replica unready; /integrations names it
    // once a request has needed its credentials.
    let ready = get(&proxy.admin_url("/readyz")).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    let page = get(&proxy.admin_url("/integrations")).await.text();
    assert!(page.contains("wrong: not used yet"), "{page}");
    assert_eq!(
        get(&proxy.url("/wrong/owner.txt")).await.error_code(),
        "ServiceUnavailable"
    );
    assert_eq!(
        get(&proxy.url("/acme/owner.txt")).await.status,
        StatusCode::OK
    );
    let page = get(&proxy.admin_url("/integrations")).await.text();
    assert!(page.contains("wrong: failing: "), "{page}");
    assert!(page.contains("AccessDenied"), "{page}");
    assert!(page.contains("acme: ok, valid for"), "{page}");

    // The config file changes: `wrong` is gone, `acme-too` is new.
    let added = role_integration(
        "acme-too",
        &moto.tenant_a,
        &moto.endpoint(),
        "path",
        &moto.tenant_a.external_id,
        "",
    );
    let sts_calls = |metrics: &str| metric(metrics, "s3sp_sts_calls_total").unwrap();
    let calls_before = sts_calls(&get(&proxy.admin_url("/metrics")).await.text());
    proxy.rewrite_config(&acme_with_admin(&added));
    // Polling the new integration (not /readyz, which would ask STS about `wrong` again until
    // the reload lands) shows the reload: acme-too is acme's identity, so its credentials
    // come from the cache the reload kept.
    let added_ok = wait_for(
        &proxy.url("/acme-too/owner.txt"),
        Duration::from_secs(15),
        |f| f.status == StatusCode::OK,
    )
    .await;
    assert_eq!(added_ok.status, StatusCode::OK, "{}", added_ok.text());
    assert_eq!(added_ok.text(), "tenant a\n");
    let calls_after = sts_calls(&get(&proxy.admin_url("/metrics")).await.text());
    assert_eq!(
        calls_after, calls_before,
        "the reload dropped cached credentials"
    );
    let ready = get(&proxy.admin_url("/readyz")).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    assert_eq!(
        get(&proxy.url("/wrong/owner.txt")).await.error_code(),
        "NoSuchBucket"
    );

    // An invalid config on SIGHUP is refused; the previous one keeps serving.
    proxy.rewrite_config("[server]\nlisten = \"LISTEN\"\nadmin_listen = \"ADMIN\"\n[[integration]]\nname = \"broken\"\n");
    proxy.signal("HUP");
    wait_for_log(&proxy, "new configuration refused").await;
    assert_eq!(
        get(&proxy.url("/acme-too/owner.txt")).await.status,
        StatusCode::OK
    );
    let metrics = get(&proxy.admin_url("/metrics")).await.text();
    assert!(metric(&metrics, "s3sp_config_reload_failures_total").unwrap() >= 1.0);
    assert!(metric(&metrics, "s3sp_config_reloads_total").unwrap() >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_and_json_access_lines_carry_each_request_without_secrets() {
    let moto = moto();
    let dir = TempDir::new("ops-metrics");
    let mut env = moto_env(moto);
    env.push(("RUST_LOG", "trace".to_string()));
    let proxy = ProxyProcess::spawn_with(
        &dir.0,
        &acme_with_admin(""),
        &env_refs(&env),
        &["--log-format", "json"],
    )
    .await;
    let before = get(&proxy.admin_url("/metrics")).await.text();
    let ok_series = "s3sp_requests_total{integration=\"acme\",method=\"GET\",status=\"2xx\"}";
    let bytes_series = "s3sp_response_bytes_total{integration=\"acme\"}";
    assert_eq!(metric(&before, ok_series), None);

    let mut served = 0;
    for _ in 0..3 {
        let fetched = get(&proxy.url("/acme/owner.txt")).await;
        assert_eq!(fetched.status, StatusCode::OK);
        served += fetched.body.len();
    }
    assert_eq!(
        get(&proxy.url("/nobody/x")).await.status,
        StatusCode::NOT_FOUND
    );
    // The answers went before their lines and counts: wait for the last request's count.
    let metrics = proxy.admin_url("/metrics");
    wait_for_metric(&metrics, ok_series, 3.0).await;
    let not_found = "s3sp_requests_total{integration=\"-\",method=\"GET\",status=\"4xx\"}";
    let after = wait_for_metric(&metrics, not_found, 1.0).await;
    assert_eq!(metric(&after, ok_series), Some(3.0), "{after}");
    assert_eq!(metric(&after, bytes_series), Some(served as f64), "{after}");
    assert!(
        metric(
            &after,
            "s3sp_requests_total{integration=\"-\",method=\"GET\",status=\"4xx\"}"
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(metric(&after, "s3sp_sts_calls_total"), Some(1.0), "{after}");
    assert!(metric(&after, "s3sp_credential_cache_hits_total").unwrap() >= 2.0);
    assert_eq!(
        metric(
            &after,
            "s3sp_upstream_latency_seconds_count{integration=\"acme\"}"
        ),
        Some(3.0)
    );
    let expiry = metric(
        &after,
        "s3sp_credentials_expiry_seconds{integration=\"acme\"}",
    )
    .unwrap();
    assert!(expiry > 600.0 && expiry <= 3600.0, "{expiry}");
    assert!(metric(&after, "s3sp_open_connections").is_some());

    // One JSON access line per request, with its fields.
    let access_lines = |log: &str| -> Vec<serde_json::Value> {
        log.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|v| v["target"] == "access")
            .collect()
    };
    eventually("four access lines", || {
        (access_lines(&proxy.log()).len() >= 4).then_some(())
    })
    .await;
    let log = proxy.log();
    let access = access_lines(&log);
    assert_eq!(access.len(), 4, "{log}");
    let first = &access[0];
    assert_eq!(first["method"], "GET");
    assert_eq!(first["integration"], "acme");
    assert_eq!(first["status"], 200);
    assert_eq!(first["upstream_status"], 200);
    assert_eq!(first["bytes_out"], served as u64 / 3);
    assert_eq!(first["complete"], true);
    assert_eq!(first["client"], "-");
    assert_eq!(first["request_id"].as_str().unwrap().len(), 16);
    assert!(first["duration_ms"].is_u64());
    assert_eq!(access[3]["code"], "NoSuchBucket");

    // Even at TRACE, no secret, session token or signature of the proxy's is in the log.
    for (_, secret) in &env {
        if secret != "trace" {
            assert!(!log.contains(secret.as_str()), "a secret is in the log");
        }
    }
    // moto's session tokens start with FQoGZXIvYXdz; aws-sigv4's TRACE canonical request
    // names the token header with its value redacted, which is fine.
    let unredacted = log
        .to_ascii_lowercase()
        .replace("x-amz-security-token:** redacted", "");
    for marker in ["x-amz-security-token:", "FQoGZXIvYXdz", "Signature="] {
        let marker = marker.to_ascii_lowercase();
        let leaking: Vec<String> = unredacted
            .lines()
            .filter(|line| line.contains(&marker))
            .map(|line| line.chars().take(300).collect())
            .collect();
        assert!(leaking.is_empty(), "{marker} is in the log: {leaking:#?}");
    }
}

/// Runs the binary's `check` with `args` on a config; returns (exit code, stdout).
async fn check(dir: &std::path::Path, config: &str, args: &[&str]) -> (i32, String) {
    let path = dir.join("check.toml");
    std::fs::write(&path, config).unwrap();
    let env = moto_env(moto());
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_s3-signing-proxy"))
        .arg("check")
        .arg("--config")
        .arg(&path)
        .args(args)
        .envs(env.iter().map(|(n, v)| (*n, v.as_str())))
        .output()
        .await
        .unwrap();
    keep_output(&output);
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn row<'a>(report: &'a str, integration: &str, step: &str) -> &'a str {
    report
        .lines()
        .find(|line| {
            let mut words = line.split_whitespace();
            words.next() == Some(integration) && words.next() == Some(step)
        })
        .unwrap_or_else(|| panic!("no {integration} {step} row in\n{report}"))
}

#[tokio::test]
async fn check_reports_what_works_and_why_the_rest_does_not() {
    let moto = moto();
    let dir = TempDir::new("ops-check");
    let endpoint = moto.endpoint();
    let config = format!(
        "{}{}{}{}{}",
        acme_config(&endpoint, &endpoint, ""),
        role_integration(
            "wrong-id",
            &moto.tenant_a,
            &endpoint,
            "path",
            "ext-wrong",
            ""
        ),
        // Tenant A's role, pointed at tenant B's bucket: it may not list it.
        IntegrationFixture::tenant("not-mine", &moto.tenant_b, &endpoint)
            .role(&moto.tenant_a.role_arn, &moto.tenant_a.external_id)
            .toml(),
        role_integration(
            "writer",
            &moto.tenant_w,
            &endpoint,
            "path",
            &moto.tenant_w.external_id,
            "access = \"read-write\""
        ),
        IntegrationFixture::tenant("found", &moto.tenant_a, &endpoint)
            .set("region", "auto")
            .toml(),
    );
    // Tenant A's role may only read: as a read-write integration, its put is refused.
    let config = format!(
        "{config}{}",
        role_integration(
            "no-put",
            &moto.tenant_a,
            &endpoint,
            "path",
            &moto.tenant_a.external_id,
            "access = \"read-write\""
        )
    );
    let (code, report) = check(&dir.0, &config, &["--write"]).await;
    assert_eq!(code, 1, "{report}");
    assert!(
        row(&report, "acme", "credentials").contains(" ok "),
        "{report}"
    );
    assert!(
        row(&report, "acme", "head-bucket").contains(" ok "),
        "{report}"
    );
    assert!(
        row(&report, "acme", "list").contains("keys present"),
        "{report}"
    );
    assert!(
        row(&report, "acme", "write").contains("skipped"),
        "{report}"
    );
    let wrong = row(&report, "wrong-id", "credentials");
    assert!(
        wrong.contains("FAILED") && wrong.contains("ExternalId"),
        "{report}"
    );
    assert!(wrong.contains("AccessDenied"), "{report}");
    let not_mine = row(&report, "not-mine", "head-bucket");
    assert!(not_mine.contains("FAILED"), "{report}");
    assert!(not_mine.contains("s3:ListBucket"), "{report}");
    assert!(not_mine.contains(&moto.tenant_b.bucket), "{report}");
    assert!(row(&report, "writer", "put").contains(" ok "), "{report}");
    assert!(
        row(&report, "writer", "delete").contains(" ok "),
        "{report}"
    );
    assert!(
        row(&report, "found", "region").contains("us-east-1"),
        "{report}"
    );
    assert!(row(&report, "found", "list").contains(" ok "), "{report}");
    assert!(report.contains("check(s) failed"), "{report}");
    assert!(row(&report, "no-put", "put").contains("FAILED"), "{report}");

    // The same report for machines: every step an object, each failure with its hint code.
    let (code, json) = check(&dir.0, &config, &["--write", "--json"]).await;
    assert_eq!(code, 1, "{json}");
    let json: serde_json::Value = serde_json::from_str(&json).expect("check --json is JSON");
    assert_eq!(json["ok"], false);
    let hint = |integration: &str, step: &str| {
        let check = json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["integration"] == integration && c["step"] == step)
            .unwrap_or_else(|| panic!("no {integration} {step} in {json:#}"));
        (
            check["result"].as_str().unwrap().to_string(),
            check["hint"].as_str().map(str::to_string),
        )
    };
    let failed = |code: &str| ("failed".to_string(), Some(code.to_string()));
    assert_eq!(hint("acme", "list"), ("ok".to_string(), None));
    assert_eq!(hint("acme", "write"), ("skipped".to_string(), None));
    assert_eq!(hint("wrong-id", "credentials"), failed("trust-policy"));
    assert_eq!(hint("not-mine", "head-bucket"), failed("list-permission"));
    assert_eq!(hint("no-put", "put"), failed("put-permission"));
    let failures = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["result"] == "failed")
        .count();
    assert_eq!(json["failed"], failures);

    let (code, report) = check(&dir.0, &config, &["--integration", "acme"]).await;
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("need no CORS rules"), "{report}");
    assert!(!report.contains("wrong-id"), "{report}");
}

/// A store holding one `size`-byte object `media/big.bin`, and the proxy config reaching it.
async fn big_object_store(dir: &std::path::Path, size: usize) -> (EmbeddedStore, Vec<u8>) {
    let root = dir.join("store");
    std::fs::create_dir_all(root.join("media")).unwrap();
    let content: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    std::fs::File::create(root.join("media/big.bin"))
        .unwrap()
        .write_all(&content)
        .unwrap();
    std::fs::write(root.join("media/small.txt"), b"small\n").unwrap();
    let store = EmbeddedStore::start(&root, None, None).await.unwrap();
    (store, content)
}

fn store_integration(name: &str, store: &EmbeddedStore) -> String {
    IntegrationFixture::new(name, "media")
        .set("endpoint", store.endpoint())
        .set("public", true)
        .static_keys(&store.access_key_id, "STORE_SECRET")
        .toml()
}

/// A download held in flight: its first MiB is read, `started` says so, and nothing more is
/// read (the rest waits in the connection) until `gate` opens; then it is read to the end.
/// The bytes, and whether it ended cleanly.
async fn held_download(
    url: String,
    started: tokio::sync::oneshot::Sender<()>,
    gate: tokio::sync::oneshot::Receiver<()>,
) -> (Vec<u8>, bool) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .request(Request::get(url).body(Empty::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut received = Vec::new();
    let mut waiting = Some((started, gate));
    loop {
        match body.frame().await {
            None => return (received, true),
            Some(Err(_)) => return (received, false),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    received.extend_from_slice(&data);
                }
                if received.len() >= 1 << 20
                    && let Some((started, gate)) = waiting.take()
                {
                    let _ = started.send(());
                    let _ = gate.await;
                }
            }
        }
    }
}

/// Starts a [`held_download`] of `url`; returns once its first MiB arrived, with the task and
/// the gate that lets it finish.
async fn download_in_flight(
    url: String,
) -> (
    tokio::task::JoinHandle<(Vec<u8>, bool)>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (started, in_flight) = tokio::sync::oneshot::channel();
    let (open, gate) = tokio::sync::oneshot::channel();
    let download = tokio::spawn(held_download(url, started, gate));
    in_flight.await.expect("the download started");
    (download, open)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_removing_an_integration_does_not_cut_its_download() {
    let dir = TempDir::new("ops-reload");
    let (store, content) = big_object_store(&dir.0, 24 << 20).await;
    let config = |names: &[&str]| {
        let mut text = "[server]\nlisten = \"LISTEN\"\nadmin_listen = \"ADMIN\"\n".to_string();
        for name in names {
            text.push_str(&store_integration(name, &store));
        }
        text
    };
    let secret = store.secret_access_key.clone();
    let proxy = ProxyProcess::spawn(
        &dir.0,
        &config(&["old"]),
        &[("STORE_SECRET", secret.as_str())],
    )
    .await;
    // 24 MiB, held in flight until the reload is done.
    let (download, open) = download_in_flight(proxy.url("/old/big.bin")).await;
    proxy.rewrite_config(&config(&["new"]));
    let added = wait_for(&proxy.url("/new/small.txt"), Duration::from_secs(15), |f| {
        f.status == StatusCode::OK
    })
    .await;
    assert_eq!(added.text(), "small\n");
    assert_eq!(
        get(&proxy.url("/old/small.txt")).await.error_code(),
        "NoSuchBucket"
    );
    assert!(
        !download.is_finished(),
        "the download ended before the reload"
    );
    open.send(()).unwrap();
    let (received, clean) = download.await.unwrap();
    assert!(clean, "the download was cut");
    assert!(received == content, "the download's bytes differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_long_download_finish_then_exits_zero() {
    let dir = TempDir::new("ops-drain");
    let (store, content) = big_object_store(&dir.0, 16 << 20).await;
    let config = format!(
        "[server]\nlisten = \"LISTEN\"\n{}",
        store_integration("media", &store)
    );
    let secret = store.secret_access_key.clone();
    let mut proxy =
        ProxyProcess::spawn(&dir.0, &config, &[("STORE_SECRET", secret.as_str())]).await;
    let (download, open) = download_in_flight(proxy.url("/media/big.bin")).await;
    proxy.signal("TERM");
    // New connections are refused soon after.
    let started = Instant::now();
    while tokio::net::TcpStream::connect(proxy.address).await.is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still accepting"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !download.is_finished(),
        "the download ended before SIGTERM took effect"
    );
    open.send(()).unwrap();
    let (received, clean) = download.await.unwrap();
    assert!(
        clean && received == content,
        "the in-flight download was cut"
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = proxy.child.wait().unwrap();
        (status, proxy.log())
    })
    .await
    .unwrap();
    assert!(status.0.success(), "exit {:?}: {}", status.0, status.1);
}

#[tokio::test]
async fn region_auto_is_asked_of_the_bucket_once_and_used() {
    let moto = moto();
    let counted = PassThrough::start(moto.address()).await;
    let integration = IntegrationFixture::tenant("found", &moto.tenant_a, &counted.endpoint())
        .set("region", "auto")
        .toml();
    let config = format!("{}{integration}", sts_section(moto, &moto.endpoint(), ""));
    let proxy = start_proxy(&config, &secrets(moto)).await;
    for _ in 0..3 {
        let fetched = get(&proxy.url("/found/owner.txt")).await;
        assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text());
        assert_eq!(fetched.text(), "tenant a\n");
    }
    // One HeadBucket to learn the region, then the three GETs.
    assert_eq!(counted.requests(), 4);
    // The region stays known: the next GET is one request.
    assert_eq!(
        get(&proxy.url("/found/owner.txt")).await.status,
        StatusCode::OK
    );
    assert_eq!(counted.requests(), 5);
}

/// GETs `url` over TLS trusting the webpki roots plus `ca`; the HTTP version and body.
async fn tls_get(
    url: &str,
    ca: Option<&rustls::pki_types::CertificateDer<'static>>,
) -> Result<(http::Version, StatusCode, Bytes), String> {
    let extra: Vec<_> = ca.into_iter().cloned().collect();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(s3_signing_proxy::config::tls::client_config(&extra).unwrap())
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let response = client
        .request(
            Request::builder()
                .method(Method::GET)
                .uri(url)
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .map_err(|e| format!("{e:?}"))?;
    let version = response.version();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok((version, status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_end_to_end_with_certificate_reload_and_a_private_upstream_ca() {
    let moto = moto();
    let dir = TempDir::new("ops-tls");
    let (cert, key, ca_pem, ca) = certificate_authority();
    let cert_path = dir.0.join("cert.pem");
    let key_path = dir.0.join("key.pem");
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&key_path, &key).unwrap();
    let client_secret = "tls-client-secret";
    let config = format!(
        r#"[server]
listen = "LISTEN"
[server.tls]
cert = "{cert}"
key = "{key}"
{integration}{client}"#,
        client = ClientFixture::toml(&[ClientFixture::new(
            "AKTLSCLIENT",
            "TLS_CLIENT_SECRET",
            &["acme"],
            "read-only"
        )]),
        cert = cert_path.display(),
        key = key_path.display(),
        integration = static_reader_integration(
            "acme",
            &format!("bucket = \"{}\"", moto.tenant_a.bucket),
            &moto.endpoint(),
        ),
    );
    let mut env = moto_env(moto);
    env.push(("TLS_CLIENT_SECRET", client_secret.to_string()));
    let proxy = ProxyProcess::spawn(&dir.0, &config, &env_refs(&env)).await;
    let url = format!("https://{}/acme/owner.txt", proxy.address);

    let (version, status, body) = tls_get(&url, Some(&ca)).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(version, http::Version::HTTP_2, "ALPN picks h2");
    assert_eq!(&body[..], b"tenant a\n");
    let untrusted = tls_get(&url, None).await;
    assert!(untrusted.is_err(), "a client without the CA connected");

    // A second proxy reaches the first as an https endpoint, trusting its CA through ca_file.
    let ca_path = dir.0.join("ca.pem");
    std::fs::write(&ca_path, ca_pem).unwrap();
    let chained = |ca_file: Option<&std::path::Path>| {
        let mut chained = IntegrationFixture::new("chained", "acme")
            .set(
                "endpoint",
                format!("https://localhost:{}", proxy.address.port()),
            )
            .set("public", true)
            .static_keys("AKTLSCLIENT", "TLS_CLIENT_SECRET");
        if let Some(ca_file) = ca_file {
            chained = chained.set("ca_file", ca_file.display().to_string());
        }
        fixtures::config(listen_anywhere(), &[chained], &[])
    };
    let secrets = std::collections::BTreeMap::from([(
        "TLS_CLIENT_SECRET".to_string(),
        client_secret.to_string(),
    )]);
    let trusting = start_proxy(&chained(Some(&ca_path)), &secrets).await;
    let fetched = get(&trusting.url("/chained/owner.txt")).await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text());
    assert_eq!(fetched.text(), "tenant a\n");
    let distrusting = start_proxy(&chained(None), &secrets).await;
    let refused = get(&distrusting.url("/chained/owner.txt")).await;
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY);

    // New certificate files are picked up without a restart.
    let (cert2, key2, _, ca2) = certificate_authority();
    std::fs::write(&key_path, &key2).unwrap();
    std::fs::write(&cert_path, &cert2).unwrap();
    let started = Instant::now();
    loop {
        if let Ok((_, status, _)) = tls_get(&url, Some(&ca2)).await {
            assert_eq!(status, StatusCode::OK);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the new certificate was not served: {}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        tls_get(&url, Some(&ca)).await.is_err(),
        "the old certificate is still served"
    );
}

/// boto3 sends its CRC checksum as an aws-chunked trailer only over HTTPS: over the proxy's TLS
/// listener the upload arrives aws-chunked (its framing counted in the access line's bytes in),
/// is decoded as it streams with its trailer checked, and the store gets the plain body with
/// its real length (read off a pass-through in front of moto).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_over_tls_uploads_with_a_checksum_trailer() {
    let moto = moto();
    let s3 = PassThrough::start(moto.address()).await;
    let dir = TempDir::new("ops-tls-trailer");
    let (cert, key, ca_pem, _) = certificate_authority();
    let [cert_path, key_path, ca_path] = ["cert.pem", "key.pem", "ca.pem"].map(|f| dir.0.join(f));
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&key_path, &key).unwrap();
    std::fs::write(&ca_path, &ca_pem).unwrap();
    let client_secret = "tls-trailer-secret-41c9";
    let tenant = &moto.tenant_w;
    let config = format!(
        "[server]\nlisten = \"LISTEN\"\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n{}{}{}",
        cert_path.display(),
        key_path.display(),
        sts_section(moto, &moto.endpoint(), ""),
        role_integration(
            "trailers",
            tenant,
            &s3.endpoint(),
            "path",
            &tenant.external_id,
            "access = \"read-write\"\npublic = false\nprefix = \"tls-trailers/\"",
        ),
        ClientFixture::toml(&[ClientFixture::new(
            "AKTLSTRAILER",
            "TRAILER_SECRET",
            &["trailers"],
            "read-write"
        )]),
    );
    register_secrets([&client_secret.to_string()]);
    let mut env = moto_env(moto);
    env.push(("TRAILER_SECRET", client_secret.to_string()));
    let proxy = ProxyProcess::spawn(&dir.0, &config, &env_refs(&env)).await;
    let data = "checked by its trailer\n".repeat(1000);
    let put = boto3(serde_json::json!({
        "endpoint": format!("https://localhost:{}", proxy.address.port()),
        "verify": ca_path.display().to_string(),
        "key": "AKTLSTRAILER", "secret": client_secret,
        "op": "put", "bucket": "trailers", "object": "note.txt", "data": data,
    }))
    .await;
    assert!(put["etag"].is_string(), "{put}\n{}", proxy.log());
    let line = eventually("the upload's access line", || {
        proxy
            .log()
            .lines()
            .find(|line| line.contains("access") && line.contains("method=\"PUT\""))
            .map(str::to_string)
    })
    .await;
    let bytes_in: usize = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("bytes_in="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(bytes_in > data.len(), "not aws-chunked: {line}");
    let received = s3.received.lock().unwrap().clone();
    let (_, headers) = received
        .iter()
        .rev()
        .find(|(path, _)| path.ends_with("/tls-trailers/note.txt"))
        .expect("the PUT reached the store");
    let names: Vec<&str> = headers.keys().map(|name| name.as_str()).collect();
    assert!(
        !headers.contains_key("x-amz-trailer")
            && !headers.contains_key("x-amz-decoded-content-length")
            && headers
                .get("content-encoding")
                .is_none_or(|v| !v.to_str().unwrap().contains("aws-chunked")),
        "{names:?}"
    );
    assert_eq!(headers["content-length"], data.len().to_string());
    assert_eq!(headers["x-amz-content-sha256"], "UNSIGNED-PAYLOAD");
    let stored = store_objects_under(tenant, "tls-trailers/").await;
    assert_eq!(
        stored["tls-trailers/note.txt"]["size"],
        data.len(),
        "{stored}"
    );
    let back = boto3(serde_json::json!({
        "endpoint": format!("https://localhost:{}", proxy.address.port()),
        "verify": ca_path.display().to_string(),
        "key": "AKTLSTRAILER", "secret": client_secret,
        "op": "get", "bucket": "trailers", "object": "note.txt",
    }))
    .await;
    assert!(
        back["body"] == data.as_str(),
        "the object read back differs"
    );
}
