//! The admin listener cannot be driven by a web page an operator visits. `POST /explain` with
//! `send` acts as any issued client, and an operator's browser reaches the admin port
//! (localhost, `kubectl port-forward`): a cross-site request (an `Origin`, a cross-site
//! `Sec-Fetch-Site`), a body that is not JSON, a `Host` that is not an IP literal, `localhost`
//! or an `admin_hosts` name (DNS rebinding), and, when a token is configured, a request
//! without it are all refused; the object the request would have deleted stays on the store.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;

use crate::support::*;

const STORED: &str = "admin-store/media/tenant-a";
const CLIENT_SECRET: &str = "admin-port-client-secret-0d1e";
const TOKEN: &str = "admin-port-token-6f5e4d3c2b1a";

/// The proxy's config: a read-write integration under `tenant-a/` of the store at
/// `endpoint` (static keys `store_key`) and one read-write client; the admin listener answers
/// only `proxy-admin.internal`, and takes `token_env`'s token when one is named.
fn admin_config(endpoint: &str, store_key: &str, token_env: Option<&str>) -> String {
    let mut server = toml::Table::new();
    server.insert("listen".into(), "LISTEN".into());
    server.insert("admin_listen".into(), "ADMIN".into());
    server.insert("admin_hosts".into(), vec!["proxy-admin.internal"].into());
    if let Some(token_env) = token_env {
        server.insert("admin_token_env".into(), token_env.into());
    }
    let acme = IntegrationFixture::new("acme", "media")
        .set("prefix", "tenant-a/")
        .set("endpoint", endpoint)
        .set("access", "read-write")
        .static_keys(store_key, "PANEL_STORE_SECRET");
    let writer = ClientFixture::new(
        "AKPANELWRITER",
        "PANEL_CLIENT_SECRET",
        &["acme"],
        "read-write",
    );
    fixtures::config(server, &[acme], &[writer])
}

struct Admin {
    dir: TempDir,
    proxy: ProxyProcess,
    _store: s3_signing_proxy::lab::demo::EmbeddedStore,
}

impl Admin {
    /// An embedded store holding `victim.txt` under the prefix, and the proxy in front of it
    /// with the admin token in `token_env`, if named.
    async fn start(label: &str, token_env: Option<&str>) -> Admin {
        let dir = TempDir::new(label);
        let root = dir.0.join("admin-store");
        std::fs::create_dir_all(dir.0.join(STORED)).unwrap();
        std::fs::write(dir.0.join(STORED).join("victim.txt"), b"keep me\n").unwrap();
        let store = s3_signing_proxy::lab::demo::EmbeddedStore::start(&root, None, None)
            .await
            .unwrap();
        let endpoint = format!("http://{}", store.address);
        let config = admin_config(&endpoint, &store.access_key_id, token_env);
        register_secrets([
            &store.secret_access_key,
            &CLIENT_SECRET.to_string(),
            &TOKEN.to_string(),
        ]);
        let proxy = ProxyProcess::spawn(
            &dir.0,
            &config,
            &[
                ("PANEL_STORE_SECRET", store.secret_access_key.as_str()),
                ("PANEL_CLIENT_SECRET", CLIENT_SECRET),
                ("PANEL_TOKEN", TOKEN),
            ],
        )
        .await;
        Admin {
            dir,
            proxy,
            _store: store,
        }
    }

    fn victim_exists(&self) -> bool {
        self.dir.0.join(STORED).join("victim.txt").exists()
    }

    /// `POST /explain` asking to DELETE the victim as the issued writer, with `headers`.
    async fn delete_through_explain(&self, headers: &[(&str, &str)]) -> Fetched {
        let mut builder = http::Request::post(self.proxy.admin_url("/explain"));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        send(builder.body(Full::new(Bytes::from(DELETE_VICTIM))).unwrap()).await
    }
}

const DELETE_VICTIM: &str =
    r#"{"method": "DELETE", "url": "/acme/victim.txt", "client": "AKPANELWRITER", "send": true}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_rebound_and_non_json_requests_are_refused_and_change_nothing() {
    let admin = Admin::start("admin-port-refusals", None).await;
    let port = admin
        .proxy
        .admin_url("")
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let json = ("content-type", "application/json");
    type Refusal<'a> = (&'a str, Vec<(&'a str, String)>, StatusCode);
    let refusals: [Refusal; 6] = [
        (
            "a page's simple POST",
            vec![
                ("content-type", "text/plain;charset=UTF-8".into()),
                ("origin", "http://attacker.example".into()),
            ],
            StatusCode::FORBIDDEN,
        ),
        (
            "an Origin with a JSON body",
            vec![(json.0, json.1.into()), ("origin", "null".into())],
            StatusCode::FORBIDDEN,
        ),
        (
            "a cross-site fetch without Origin",
            vec![
                (json.0, json.1.into()),
                ("sec-fetch-site", "cross-site".into()),
            ],
            StatusCode::FORBIDDEN,
        ),
        (
            "a text body",
            vec![("content-type", "text/plain".into())],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "a rebound host name",
            vec![
                (json.0, json.1.into()),
                ("host", format!("attacker.example:{port}")),
            ],
            StatusCode::MISDIRECTED_REQUEST,
        ),
        (
            "a name that only ends like a listed one",
            vec![
                (json.0, json.1.into()),
                ("host", format!("evil-proxy-admin.internal:{port}")),
            ],
            StatusCode::MISDIRECTED_REQUEST,
        ),
    ];
    for (what, headers, status) in refusals {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let refused = admin.delete_through_explain(&headers).await;
        assert_eq!(refused.status, status, "{what}: {}", refused.text());
        assert!(admin.victim_exists(), "{what} deleted the object");
    }
    // Reading is refused to a rebound page as well: it would learn every integration.
    let rebound = request(
        http::Method::GET,
        &admin.proxy.admin_url("/integrations"),
        &[("host", "attacker.example")],
    )
    .await;
    assert_eq!(rebound.status, StatusCode::MISDIRECTED_REQUEST);

    // The operator's own requests are served: by IP, by `localhost`, by a listed name.
    for host in [
        None,
        Some(format!("localhost:{port}")),
        Some(format!("PROXY-ADMIN.internal:{port}")),
    ] {
        let mut headers = vec![("content-type", "application/json")];
        let host_header;
        if let Some(host) = &host {
            host_header = host.clone();
            headers.push(("host", host_header.as_str()));
        }
        let listed = request(
            http::Method::GET,
            &admin.proxy.admin_url("/integrations"),
            &headers,
        )
        .await;
        assert_eq!(listed.status, StatusCode::OK, "{host:?}: {}", listed.text());
    }
    let sent = admin.delete_through_explain(&[json]).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text());
    assert!(sent.text().contains("204"), "{}", sent.text());
    assert!(!admin.victim_exists(), "the operator's own request is sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_every_endpoint_but_the_probes_asks_for_it() {
    let admin = Admin::start("admin-port-token", Some("PANEL_TOKEN")).await;
    for path in ["/healthz", "/readyz"] {
        let probe = get(&admin.proxy.admin_url(path)).await;
        assert_eq!(probe.status, StatusCode::OK, "{path}: {}", probe.text());
    }
    let bearer = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {}", TOKEN.to_uppercase());
    for path in ["/metrics", "/integrations"] {
        for (what, authorization) in [("none", None), ("wrong", Some(wrong.as_str()))] {
            let headers: Vec<(&str, &str)> = authorization
                .map(|a| ("authorization", a))
                .into_iter()
                .collect();
            let refused = request(http::Method::GET, &admin.proxy.admin_url(path), &headers).await;
            assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{path} {what}");
            assert_eq!(refused.headers["www-authenticate"], "Bearer");
        }
        let served = request(
            http::Method::GET,
            &admin.proxy.admin_url(path),
            &[("authorization", &bearer)],
        )
        .await;
        assert_eq!(served.status, StatusCode::OK, "{path}");
    }
    let json = ("content-type", "application/json");
    let refused = admin.delete_through_explain(&[json]).await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        refused.text()
    );
    assert!(admin.victim_exists());
    let sent = admin
        .delete_through_explain(&[json, ("authorization", &bearer)])
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text());
    assert!(!admin.victim_exists());
    let log = admin.proxy.log();
    assert!(!log.contains(TOKEN), "the token is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_in_chromium_cannot_send_through_explain() {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "Chromium is missing: run scripts/test, which installs it"
    );
    let admin = Admin::start("admin-port-chromium", None).await;
    let fired = drive_chromium(
        "cross_site_post.js",
        &[&admin.proxy.admin_url("/explain"), DELETE_VICTIM],
    )
    .await;
    assert_eq!(fired["fired"], true, "{fired}");
    // A no-cors fetch resolves once the answer has arrived: the proxy has seen and refused it.
    assert!(admin.victim_exists(), "the page deleted the object");
    // Log lines are flushed within 50 ms: wait for the refusal's, with a deadline.
    let refused_line = |log: &str| {
        log.lines()
            .any(|line| line.contains("admin request refused") && line.contains("403"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !refused_line(&admin.proxy.log()) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        refused_line(&admin.proxy.log()),
        "the page's request reached the admin port and was refused: {}",
        admin.proxy.log()
    );
}
