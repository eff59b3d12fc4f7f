//! A real browser against the demo: headless Chromium loads the page from the proxy, the image
//! (a private object behind a presigned proxy URL) renders, the video seeks to its middle
//! through Range requests, and CORS lets an allowed origin fetch while blocking another. And
//! signed policies: a gallery page reads a prefix with cookies only, its second load comes
//! from the browser's cache, and everything outside the policy is refused.
// This file edits cookies and policies as text on purpose (tampering a signed value).
// .clippy.toml's ban on editing text is for the proxy's own code.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use http::{Method, StatusCode};
use std::process::{Command, Stdio};

use crate::support::*;

struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serves a blank page on a loopback port, as another web application would; returns its origin.
async fn blank_page_origin() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    serve_app(listener, BLANK_PAGE.to_string()).await;
    origin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_renders_plays_seeks_and_enforces_cors_in_chromium() {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "Chromium is missing: run scripts/test, which installs it"
    );
    let allowed_origin = blank_page_origin().await;
    let blocked_origin = blank_page_origin().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = test_logs().join(format!("{}-{}-demo.log", test_binary(), std::process::id()));
    let _demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_s3-signing-proxy"))
            .args([
                "demo",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--cors-origin",
                &allowed_origin,
            ])
            .env("RUST_LOG", TRACE_FILTER)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("demo log"))
            .spawn()
            .expect("start the demo"),
    );
    let mut up = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(up, "the demo did not start");

    let page = format!("http://127.0.0.1:{port}/demo/index.html");
    let seen = drive_chromium(
        "browser_check.js",
        &[&page, &allowed_origin, &blocked_origin],
    )
    .await;

    assert!(
        seen["image"]["naturalWidth"].as_f64().unwrap() > 0.0,
        "{seen}"
    );
    assert!(
        seen["image"]["src"]
            .as_str()
            .unwrap()
            .contains("X-Amz-Signature="),
        "{seen}"
    );
    let (seek_to, now) = (
        seen["video"]["seekTo"].as_f64().unwrap(),
        seen["video"]["currentTime"].as_f64().unwrap(),
    );
    assert!(
        seek_to > 1.0 && now > seek_to,
        "the video played past the seek point: {seen}"
    );
    assert_eq!(seen["allowed"]["status"], 206, "{seen}");
    assert_eq!(seen["allowed"]["bytes"], 4, "{seen}");
    assert_eq!(seen["blocked"]["blocked"], true, "{seen}");

    // The second view, in a context with nothing cached: it renders, plays and seeks again,
    // and every private media request of it (the image, the video's ranges) is answered by
    // the proxy's cache without the store.
    assert!(
        seen["second"]["image"]["naturalWidth"].as_f64().unwrap() > 0.0,
        "{seen}"
    );
    let second = &seen["second"]["video"];
    assert!(
        second["currentTime"].as_f64().unwrap() > second["seekTo"].as_f64().unwrap(),
        "{seen}"
    );
    let media_lines = |text: &str| -> (Vec<String>, Vec<String>) {
        let access: Vec<&str> = text
            .lines()
            .filter(|line| line.contains("request_id="))
            .collect();
        let marker = access
            .iter()
            .position(|line| line.contains("second-load-marker"));
        let private = |lines: &[&str]| -> Vec<String> {
            lines
                .iter()
                .filter(|line| line.contains("integration=\"demo-private\""))
                .map(|line| line.to_string())
                .collect()
        };
        match marker {
            Some(at) => (private(&access[..at]), private(&access[at + 1..])),
            None => (private(&access), Vec::new()),
        }
    };
    let (first_view, second_view) = eventually("the second view's access lines", || {
        let (first, second) = media_lines(&std::fs::read_to_string(&log).unwrap_or_default());
        (second.len() >= 2).then_some((first, second))
    })
    .await;
    assert!(
        first_view
            .iter()
            .any(|line| line.contains("cache=\"miss\"")),
        "{first_view:#?}"
    );
    for line in &second_view {
        assert!(line.contains("cache=\"hit\""), "{line}\n{second_view:#?}");
    }
}

/// What another application's origin serves at `/`.
const BLANK_PAGE: &str = "<!doctype html><title>another app</title>";

/// A 1×1 GIF.
const GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xFF, 0xFF, 0xFF, 0x21, 0xF9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2C, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3B,
];
const APP_KEY: &str = "AKGALLERYAPP";
const APP_SECRET: &str = "gallery-app-secret-0123456789";
const PHOTOS: usize = 20;

/// A private integration `gallery` on s3s-fs, a read-write client key for the application,
/// and the gallery's images uploaded through the proxy with that key (cacheable for an hour).
struct Gallery {
    /// The integration's name (each test its own, as they share one log).
    name: &'static str,
    _dir: TempDir,
    store: s3_signing_proxy::lab::demo::EmbeddedStore,
    proxy: RunningProxy,
}

async fn gallery(name: &'static str, app_origin: &str) -> Gallery {
    gallery_with(name, app_origin, "").await
}

/// [`gallery`] with `server` settings in `[server]`.
async fn gallery_with(name: &'static str, app_origin: &str, server: &str) -> Gallery {
    let dir = TempDir::new("gallery");
    let store = s3_signing_proxy::lab::demo::EmbeddedStore::start(&dir.0, None, None)
        .await
        .unwrap();
    store.create_bucket("gallery-bucket").unwrap();
    let gallery = IntegrationFixture::new(name, "gallery-bucket")
        .set("endpoint", store.endpoint())
        .set("access", "read-write")
        .set("cors_origins", vec![app_origin])
        .static_keys(&store.access_key_id, "STORE_SECRET");
    let app = ClientFixture::new(APP_KEY, "APP_SECRET", &[name], "read-write");
    let config = fixtures::config(fixtures::settings(server), &[gallery], &[app]);
    let secrets = std::collections::BTreeMap::from([
        ("STORE_SECRET".to_string(), store.secret_access_key.clone()),
        ("APP_SECRET".to_string(), APP_SECRET.to_string()),
    ]);
    let gallery = Gallery {
        name,
        _dir: dir,
        store,
        proxy: start_proxy(&config, &secrets).await,
    };
    let keys = (0..PHOTOS)
        .map(|i| format!("photos/img-{i}.gif"))
        .chain(["private/secret.gif".to_string()]);
    for key in keys {
        let put = client_put(&gallery, &key, GIF).await;
        assert_eq!(put.status, StatusCode::OK, "{key}: {}", put.text());
    }
    gallery
}

/// A PutObject through the proxy, signed with the application's key.
async fn client_put(gallery: &Gallery, key: &str, body: &[u8]) -> Fetched {
    let mut put = http::Request::builder()
        .method(Method::PUT)
        .uri(gallery.proxy.url(&format!("/{}/{key}", gallery.name)))
        .header("content-type", "image/gif")
        .header("cache-control", "max-age=3600")
        .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
            body,
        )))
        .unwrap();
    sign_as_client(&mut put, APP_KEY, APP_SECRET);
    send(put).await
}

/// A signed policy for `document`, as `S3SP-*` cookies.
fn policy_cookie(document: &str, secret: &str, key_id: &str) -> String {
    let (text, signature) = s3_signing_proxy::auth::policy::sign(secret, document).unwrap();
    register_secrets([&signature]);
    format!("S3SP-Policy={text}; S3SP-Signature={signature}; S3SP-Key-Id={key_id}")
}

fn expires_in(seconds: u64) -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + seconds
}

/// The number of access lines of successful gallery requests so far.
fn gallery_reads() -> usize {
    let path = test_log();
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|line| {
            line.contains(" access: ")
                && line.contains("bucket=gallery ")
                && line.contains("method=\"GET\"")
                && line.contains("status=200 ")
        })
        .count()
}

/// Serves `html` at every path but `/`, which is blank: another application's origin.
async fn serve_app(listener: tokio::net::TcpListener, html: String) {
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut request = [0u8; 4096];
                let read = stream.read(&mut request).await.unwrap_or(0);
                let blank = request[..read].starts_with(b"GET / ");
                let page = if blank { BLANK_PAGE.to_string() } else { html };
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_cookies_load_a_gallery_in_chromium_and_the_second_load_is_cached() {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "Chromium is missing: run scripts/test, which installs it"
    );
    let app = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_origin = format!("http://{}", app.local_addr().unwrap());
    let gallery = gallery("gallery", &app_origin).await;
    let proxy_origin = gallery.proxy.url("");
    let images: String = (0..PHOTOS)
        .map(|i| format!("<img id=\"img-{i}\" src=\"{proxy_origin}/gallery/photos/img-{i}.gif\">"))
        .collect();
    let html = format!(
        "<!doctype html><title>gallery</title>{images}<img id=\"outside\" src=\"{proxy_origin}/gallery/private/secret.gif\">"
    );
    serve_app(app, html).await;
    let (text, signature) = s3_signing_proxy::auth::policy::sign(
        APP_SECRET,
        &format!(
            r#"{{"resource":"/gallery/photos/*","expires":{}}}"#,
            expires_in(600)
        ),
    )
    .unwrap();
    register_secrets([&signature]);
    let session_url = format!(
        "{proxy_origin}/gallery/_session?S3SP-Policy={text}&S3SP-Signature={signature}&S3SP-Key-Id={APP_KEY}"
    );
    let reads_before = gallery_reads();

    let seen = drive_chromium(
        "cookie_gallery.js",
        &[&app_origin, &proxy_origin, &session_url],
    )
    .await;

    assert_eq!(seen["session"]["status"], 204, "{seen}");
    let cookies = seen["cookies"].as_array().unwrap();
    assert_eq!(cookies.len(), 3, "{seen}");
    for cookie in cookies {
        assert_eq!(cookie["path"], "/gallery/", "{seen}");
        assert_eq!(cookie["httpOnly"], true, "{seen}");
        assert_eq!(cookie["sameSite"], "Lax", "{seen}");
    }
    for load in ["first", "second"] {
        for image in seen[load]["images"].as_array().unwrap() {
            let width = image["width"].as_u64().unwrap();
            if image["id"] == "outside" {
                assert_eq!(
                    width, 0,
                    "{load}: the image outside the policy rendered: {seen}"
                );
            } else {
                assert_eq!(width, 1, "{load}: {image} did not render: {seen}");
            }
        }
    }
    let from_network = |load: &str| {
        seen[load]["responses"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == 200 && r["cached"] == false)
            .count()
    };
    assert_eq!(from_network("first"), PHOTOS, "{seen}");
    assert_eq!(from_network("second"), 0, "{seen}");
    // The proxy agrees: each image was read through it once, on the first load.
    assert_eq!(gallery_reads() - reads_before, PHOTOS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_policies_read_only_what_they_name_and_nothing_else() {
    let gallery = gallery("album", "https://app.example.com").await;
    let url = |path: &str| gallery.proxy.url(path);
    let inside = url("/album/photos/img-1.gif");
    let policy = format!(
        r#"{{"resource":"/album/photos/*","expires":{}}}"#,
        expires_in(600)
    );
    let cookie = policy_cookie(&policy, APP_SECRET, APP_KEY);

    let read = request(Method::GET, &inside, &[("cookie", &cookie)]).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text());
    assert_eq!(read.body.as_ref(), GIF);
    // For this browser's cache only; a shared cache may not keep it.
    assert_eq!(read.headers["cache-control"], "private, max-age=3600");
    let head = request(Method::HEAD, &inside, &[("cookie", &cookie)]).await;
    assert_eq!(head.status, StatusCode::OK);
    // The same three values as query parameters.
    let query = cookie.replace("; ", "&");
    let by_query = get(&format!("{inside}?{query}")).await;
    assert_eq!(by_query.status, StatusCode::OK, "{}", by_query.text());

    let refusals = [
        (
            url("/album/private/secret.gif"),
            cookie.clone(),
            "AccessDenied",
        ),
        (
            url("/album/photos%2F..%2Fprivate%2Fsecret.gif"),
            cookie.clone(),
            "AccessDenied",
        ),
        (
            url("/album?list-type=2&prefix=photos/"),
            cookie.clone(),
            "AccessDenied",
        ),
        (
            inside.clone(),
            policy_cookie(
                &format!(
                    r#"{{"resource":"/album/photos/*","expires":{}}}"#,
                    expires_in(0) - 5
                ),
                APP_SECRET,
                APP_KEY,
            ),
            "AccessDenied",
        ),
        (
            inside.clone(),
            policy_cookie(&policy, "another-secret-0123456789", APP_KEY),
            "SignatureDoesNotMatch",
        ),
        (
            inside.clone(),
            policy_cookie(&policy, APP_SECRET, "AKNOBODY"),
            "InvalidAccessKeyId",
        ),
        (
            inside.clone(),
            {
                // The policy widened after signing: its signature no longer matches.
                let wide = policy_cookie(&policy.replace("photos/*", "*"), APP_SECRET, APP_KEY);
                let signature = cookie.split("; ").nth(1).unwrap();
                let mut parts: Vec<&str> = wide.split("; ").collect();
                parts[1] = signature;
                parts.join("; ")
            },
            "SignatureDoesNotMatch",
        ),
    ];
    for (target, cookie, code) in refusals {
        let refused = request(Method::GET, &target, &[("cookie", &cookie)]).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{target}: {}",
            refused.text()
        );
        assert_eq!(refused.error_code(), code, "{target}: {}", refused.text());
        let id = refused.headers["x-amz-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        let line = wait_for_access_line(&id).await;
        assert!(
            line.contains("upstream_status=-1"),
            "{target} reached the store: {line}"
        );
    }

    // A cookie never authorises a write: the object on the store is unchanged.
    let put = request(Method::PUT, &inside, &[("cookie", &cookie)]).await;
    assert_eq!(put.status, StatusCode::FORBIDDEN, "{}", put.text());
    assert_eq!(put.error_code(), "AccessDenied");
    let delete = request(Method::DELETE, &inside, &[("cookie", &cookie)]).await;
    assert_eq!(delete.status, StatusCode::FORBIDDEN, "{}", delete.text());
    let stored = gallery.store.root.join("gallery-bucket/photos/img-1.gif");
    assert_eq!(std::fs::read(stored).unwrap(), GIF);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_path_sets_scoped_cookies_and_redirects_on_this_origin_only() {
    let gallery = gallery("shelf", "https://app.example.com").await;
    let (text, signature) = s3_signing_proxy::auth::policy::sign(
        APP_SECRET,
        &format!(
            r#"{{"resource":"/shelf/photos/*","expires":{}}}"#,
            expires_in(600)
        ),
    )
    .unwrap();
    register_secrets([&signature]);
    let session = gallery.proxy.url(&format!(
        "/shelf/_session?S3SP-Policy={text}&S3SP-Signature={signature}&S3SP-Key-Id={APP_KEY}"
    ));
    let answer = get(&format!("{session}&next=%2Fshelf%2Fphotos%2Fimg-1.gif")).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text());
    assert_eq!(answer.headers["location"], "/shelf/photos/img-1.gif");
    assert_eq!(answer.headers["cache-control"], "private, no-store");
    let cookies: Vec<&str> = answer
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect();
    assert_eq!(cookies.len(), 3, "{cookies:?}");
    let (policy_cookie, attributes) = cookies[0].split_once("; Max-Age=").unwrap();
    assert_eq!(policy_cookie, format!("S3SP-Policy={text}; Path=/shelf/"));
    let (max_age, attributes) = attributes.split_once("; ").unwrap();
    assert_eq!(attributes, "HttpOnly; SameSite=Lax");
    let max_age: u64 = max_age.parse().unwrap();
    assert!((590..=600).contains(&max_age), "{max_age}");
    assert!(cookies[1].starts_with(&format!("S3SP-Signature={signature}; Path=/shelf/;")));
    assert!(cookies[2].starts_with(&format!("S3SP-Key-Id={APP_KEY}; Path=/shelf/;")));
    // Plain HTTP on loopback: not `Secure`, so a developer's browser keeps them.
    assert!(cookies.iter().all(|c| !c.contains("Secure")), "{cookies:?}");
    // Behind nginx on the same host, as README's example (a trusted balancer on loopback
    // terminating TLS): `Secure`, unless it says the browser spoke plain HTTP.
    let behind = gallery_with(
        "shelf",
        "https://app.example.com",
        "trusted_proxies = [\"127.0.0.1/32\"]",
    )
    .await;
    let behind_session = behind.proxy.url(&format!(
        "/shelf/_session?S3SP-Policy={text}&S3SP-Signature={signature}&S3SP-Key-Id={APP_KEY}"
    ));
    for (proto, secure) in [
        (None, true),
        (Some("https"), true),
        (Some("http"), false),
        (Some("http, https"), true),
    ] {
        let headers: Vec<(&str, &str)> = proto
            .map(|proto| ("x-forwarded-proto", proto))
            .into_iter()
            .collect();
        let answer = request(Method::GET, &behind_session, &headers).await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.text());
        let set: Vec<&str> = answer
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|value| value.to_str().unwrap())
            .collect();
        assert_eq!(set.len(), 3, "{set:?}");
        assert!(
            set.iter().all(|c| c.contains("; Secure") == secure),
            "{proto:?}: {set:?}"
        );
    }
    // The cookies it set read the object `next` names.
    let cookie_header = cookies
        .iter()
        .map(|c| c.split(';').next().unwrap())
        .collect::<Vec<_>>()
        .join("; ");
    let read = request(
        Method::GET,
        &gallery.proxy.url("/shelf/photos/img-1.gif"),
        &[("cookie", &cookie_header)],
    )
    .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text());

    for next in [
        "https%3A%2F%2Fevil.example%2F",
        "%2F%2Fevil.example",
        "%2F%5Cevil.example",
    ] {
        let refused = get(&format!("{session}&next={next}")).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{next}");
        assert!(refused.headers.get("set-cookie").is_none());
    }
    // Without a policy in the query (cookies are not enough) there is no session.
    let cookies_only = request(
        Method::GET,
        &gallery.proxy.url("/shelf/_session"),
        &[("cookie", &cookie_header)],
    )
    .await;
    assert_eq!(cookies_only.status, StatusCode::FORBIDDEN);
    // `_session` is reserved: no client may write an object there.
    let put = client_put(&gallery, "_session", b"shadow").await;
    assert_eq!(put.status, StatusCode::BAD_REQUEST, "{}", put.text());
    assert_eq!(put.error_code(), "InvalidArgument");
    assert!(put.text().contains("reserved"), "{}", put.text());
    assert!(!gallery.store.root.join("gallery-bucket/_session").exists());
}

/// A fenced block of the user docs (README.md, docs/) that contains `marker`.
fn readme_block(language: &str, marker: &str) -> String {
    let readme = user_docs();
    readme
        .split(&format!("```{language}\n"))
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap().to_string())
        .find(|block| block.contains(marker))
        .unwrap_or_else(|| panic!("the docs have no {language} block with {marker}"))
}

/// The docs' Python and JavaScript signers, as written, mint cookies the proxy accepts for
/// the prefix and refuses outside it; `sign-policy`'s example runs too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readmes_policy_signers_mint_cookies_the_proxy_accepts() {
    let gallery = gallery("readme", "https://app.example.com").await;
    let python = format!(
        "{}\nimport sys\nc = sign_policy(sys.argv[1], sys.argv[2], '/readme/photos/*')\nprint('; '.join(f'{{k}}={{v}}' for k, v in c.items()))\n",
        readme_block("python", "def sign_policy")
    );
    let js = format!(
        "{}\nconst [k, s] = process.argv.slice(-2);\nconst c = signPolicy(k, s, '/readme/photos/*');\nconsole.log(Object.entries(c).map(([k, v]) => `${{k}}=${{v}}`).join('; '));\n",
        readme_block("js", "function signPolicy")
    );
    for (program, flag, source) in [("python3", "-c", python), ("node", "-e", js)] {
        let output = tokio::process::Command::new(program)
            .args([flag, &source, APP_KEY, APP_SECRET])
            .output()
            .await
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            output.status.success(),
            "{program}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let cookie = String::from_utf8(output.stdout).unwrap().trim().to_string();
        let inside = gallery.proxy.url("/readme/photos/img-3.gif");
        let read = request(Method::GET, &inside, &[("cookie", &cookie)]).await;
        assert_eq!(read.status, StatusCode::OK, "{program}: {}", read.text());
        assert_eq!(read.body.as_ref(), GIF);
        let outside = gallery.proxy.url("/readme/private/secret.gif");
        let refused = request(Method::GET, &outside, &[("cookie", &cookie)]).await;
        assert_eq!(refused.error_code(), "AccessDenied", "{program}");
    }

    let example = user_docs()
        .lines()
        .find(|line| line.starts_with("s3-signing-proxy sign-policy "))
        .expect("README has a sign-policy example")
        .to_string();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_s3-signing-proxy"))
        .args(example.split_whitespace().skip(1))
        .current_dir(repo_root())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let policy = text
        .lines()
        .find_map(|line| line.strip_prefix("S3SP-Policy="))
        .expect("a policy line");
    let parsed = s3_signing_proxy::auth::policy::parse(policy).unwrap();
    assert_eq!(parsed.name, "acme-media");
    assert!(parsed.covers("labelling/a.png") && !parsed.covers("other/a.png"));
    assert!(
        text.contains("/acme-media/_session?S3SP-Policy=")
            && text.contains("&next=%2Facme%2Dmedia%2Flabelling%2Findex%2Ehtml"),
        "{text}"
    );
}

/// boto3's `generate_presigned_post` for `key` in the logical bucket `bucket`, through the
/// proxy with the application's key.
async fn boto3_post(
    proxy: &RunningProxy,
    bucket: &str,
    key: &str,
    expires_in: i64,
    fields: serde_json::Value,
    conditions: serde_json::Value,
) -> serde_json::Value {
    let signer = (APP_KEY, APP_SECRET);
    presigned_post(
        &proxy.url(""),
        signer,
        bucket,
        key,
        expires_in,
        fields,
        conditions,
    )
    .await
}

/// A multipart/form-data body of `fields` (in order), then the file.
fn form_body(fields: &[(String, String)], file_name: &str, file: &[u8]) -> (String, Vec<u8>) {
    let (content_type, mut body, suffix) = form_framing(fields, file_name);
    body.extend_from_slice(file);
    body.extend_from_slice(&suffix);
    (content_type, body)
}

/// Posts a presigned POST's fields (with `extra` after them) and a file, as a browser would.
async fn post_form(
    post: &serde_json::Value,
    extra: &[(&str, &str)],
    file_name: &str,
    file: &[u8],
) -> Fetched {
    let mut fields = post_fields(post);
    fields.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    let (content_type, body) = form_body(&fields, file_name, file);
    let request = http::Request::builder()
        .method(Method::POST)
        .uri(post["url"].as_str().unwrap())
        .header("content-type", content_type)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    send(request).await
}

/// The files under the gallery store's bucket, relative to it.
fn stored_files(gallery: &Gallery) -> Vec<String> {
    let mut out = files_under(&gallery.store.root.join("gallery-bucket"));
    out.retain(|path| !path.starts_with('.') && !path.contains("/."));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_submits_forms_from_both_sdks_and_the_files_land_under_the_prefix() {
    let app = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_origin = format!("http://{}", app.local_addr().unwrap());
    serve_app(app, "<!doctype html><title>done</title>".to_string()).await;
    let gallery = gallery("forms", &app_origin).await;
    let encoded_gif = aws_smithy_types::base64::encode(GIF);
    let boto3 = boto3_post(
        &gallery.proxy,
        "forms",
        "uploads/${filename}",
        600,
        serde_json::json!({ "success_action_redirect": format!("{app_origin}/done") }),
        serde_json::json!([
            ["starts-with", "$key", "uploads/"],
            ["content-length-range", 1, 1048576],
            { "success_action_redirect": format!("{app_origin}/done") }
        ]),
    )
    .await;
    let proxy_origin = gallery.proxy.url("");
    for (file_name, mode) in [("from-js-sdk.gif", "sdk"), ("from-boto3.gif", "fields")] {
        let mut args = vec![app_origin.as_str(), file_name, &encoded_gif, mode];
        let boto3_fields = boto3.to_string();
        if mode == "sdk" {
            args.extend([proxy_origin.as_str(), "forms", APP_KEY, APP_SECRET]);
        } else {
            args.push(&boto3_fields);
        }
        let seen = drive_chromium("form_upload.js", &args).await;
        let landed = seen["landed"].as_str().unwrap();
        assert!(
            landed.starts_with(&format!(
                "{app_origin}/done?bucket=forms&key=uploads%2F{file_name}&etag="
            )),
            "{mode}: {seen}"
        );
        // On the store, under the prefix the policy named, with the bytes the browser sent.
        let stored = gallery
            .store
            .root
            .join(format!("gallery-bucket/uploads/{file_name}"));
        assert_eq!(std::fs::read(&stored).unwrap(), GIF, "{mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_uploads_meet_every_condition_or_leave_no_object() {
    let gallery = gallery("posts", "https://app.example.com").await;
    let before = stored_files(&gallery);
    let conditions = serde_json::json!([
        ["starts-with", "$key", "uploads/"],
        ["content-length-range", 1, 100],
        { "success_action_status": "201" }
    ]);
    let fields = serde_json::json!({ "success_action_status": "201" });
    let post = boto3_post(
        &gallery.proxy,
        "posts",
        "uploads/${filename}",
        600,
        fields.clone(),
        conditions.clone(),
    )
    .await;

    let stored = post_form(&post, &[], "ok.gif", GIF).await;
    assert_eq!(stored.status, StatusCode::CREATED, "{}", stored.text());
    let text = stored.text();
    let document = roxmltree::Document::parse(&text).unwrap();
    let text_of = |name: &str| {
        document
            .descendants()
            .find(|node| node.has_tag_name(name))
            .and_then(|node| node.text())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(text_of("Bucket"), "posts");
    assert_eq!(text_of("Key"), "uploads/ok.gif");
    assert_eq!(
        std::fs::read(gallery.store.root.join("gallery-bucket/uploads/ok.gif")).unwrap(),
        GIF
    );
    let after_success = stored_files(&gallery);

    let outside = boto3_post(
        &gallery.proxy,
        "posts",
        "private/${filename}",
        600,
        fields.clone(),
        serde_json::json!([["starts-with", "$key", ""], { "success_action_status": "201" }]),
    )
    .await;
    let climbing = boto3_post(
        &gallery.proxy,
        "posts",
        "uploads/../../escape/${filename}",
        600,
        fields.clone(),
        conditions.clone(),
    )
    .await;
    let expired = boto3_post(
        &gallery.proxy,
        "posts",
        "uploads/${filename}",
        -60,
        fields.clone(),
        conditions.clone(),
    )
    .await;
    let mut tampered = post.clone();
    tampered["fields"]["key"] = serde_json::Value::from("elsewhere/${filename}");
    let big = vec![7u8; 101];
    type Case<'a> = (
        &'a str,
        &'a serde_json::Value,
        Vec<(&'a str, &'a str)>,
        &'a [u8],
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "a key outside starts-with",
            &tampered,
            vec![],
            GIF,
            "AccessDenied",
        ),
        (
            "a file over the range",
            &post,
            vec![],
            &big,
            "EntityTooLarge",
        ),
        ("an empty file", &post, vec![], b"", "EntityTooSmall"),
        (
            "a field the policy does not name",
            &post,
            vec![("x-amz-meta-planted", "1")],
            GIF,
            "AccessDenied",
        ),
        ("an expired policy", &expired, vec![], GIF, "AccessDenied"),
        ("a `..` key", &climbing, vec![], GIF, "InvalidArgument"),
    ];
    for (what, post, extra, file, code) in cases {
        let refused = post_form(post, &extra, "bad.gif", file).await;
        assert!(!refused.status.is_success(), "{what}: {}", refused.text());
        assert_eq!(refused.error_code(), code, "{what}: {}", refused.text());
        let id = refused.headers["x-amz-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        let line = wait_for_access_line(&id).await;
        assert!(
            line.contains("upstream_status=-1"),
            "{what} reached the store: {line}"
        );
    }
    // A form's final key meets the URL key's rules: `${filename}` cannot make the key the
    // proxy reserves, nor a dot segment.
    let bare = boto3_post(
        &gallery.proxy,
        "posts",
        "${filename}",
        600,
        fields.clone(),
        serde_json::json!([["starts-with", "$key", ""], { "success_action_status": "201" }]),
    )
    .await;
    for file_name in ["_session", ".."] {
        let refused = post_form(&bare, &[], file_name, GIF).await;
        assert_eq!(
            (refused.status, refused.error_code().as_str()),
            (StatusCode::BAD_REQUEST, "InvalidArgument"),
            "{file_name}: {}",
            refused.text()
        );
    }
    // A policy signed with another secret, and one whose document was changed after signing.
    let mut wrong_key = post.clone();
    wrong_key["fields"]["x-amz-signature"] = serde_json::Value::from("0".repeat(64));
    let mut widened = post.clone();
    let policy =
        aws_smithy_types::base64::decode(post["fields"]["policy"].as_str().unwrap()).unwrap();
    let policy = String::from_utf8(policy)
        .unwrap()
        .replacen("uploads/", "", 1);
    widened["fields"]["policy"] = serde_json::Value::from(aws_smithy_types::base64::encode(policy));
    for (what, post) in [
        ("a wrong signature", &wrong_key),
        ("a widened policy", &widened),
    ] {
        let refused = post_form(post, &[], "bad.gif", GIF).await;
        assert_eq!(
            refused.error_code(),
            "SignatureDoesNotMatch",
            "{what}: {}",
            refused.text()
        );
    }
    // The outside key is allowed by its own policy but lands in the integration all the same:
    // the bucket has no prefix here, so it is stored, under its own key.
    let landed = post_form(&outside, &[], "o.gif", GIF).await;
    assert_eq!(landed.status, StatusCode::CREATED, "{}", landed.text());
    let mut expected = after_success.clone();
    expected.push("private/o.gif".to_string());
    expected.sort();
    assert_eq!(
        stored_files(&gallery),
        expected,
        "a refused form left an object"
    );
    assert!(before.len() < after_success.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_upload_larger_than_a_part_buffer_is_stored_whole() {
    let gallery = gallery("large", "https://app.example.com").await;
    let post = boto3_post(
        &gallery.proxy,
        "large",
        "uploads/${filename}",
        600,
        serde_json::json!({}),
        serde_json::json!([["starts-with", "$key", "uploads/"]]),
    )
    .await;
    let file: Vec<u8> = (0..20 * 1024 * 1024 + 12_345u32)
        .map(|i| (i % 251) as u8)
        .collect();
    let stored = post_form(&post, &[], "big.bin", &file).await;
    assert_eq!(stored.status, StatusCode::NO_CONTENT, "{}", stored.text());
    let etag = stored.headers["etag"].to_str().unwrap();
    assert!(etag.ends_with("-3\""), "three parts: {etag}");
    assert_eq!(
        std::fs::read(gallery.store.root.join("gallery-bucket/uploads/big.bin")).unwrap(),
        file
    );
}

/// The docs' form-upload example, as written, with an `s3` client on the proxy: its fields
/// post a file that lands under `uploads/`, and a file over its size range is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readmes_form_upload_example_posts_a_file() {
    let gallery = gallery("acme-media", "https://app.example.com").await;
    let example = readme_block("python", "generate_presigned_post");
    let program = format!(
        "import json, sys\nimport boto3\nfrom botocore.config import Config\ns3 = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3], region_name='us-east-1', config=Config(signature_version='s3v4', s3={{'addressing_style': 'path'}}))\n{example}\nprint(json.dumps(post))\n"
    );
    let output = tokio::process::Command::new(repo_root().join(".clients/venv/bin/python"))
        .args(["-c", &program, &gallery.proxy.url(""), APP_KEY, APP_SECRET])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let post: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let stored = post_form(&post, &[], "readme.gif", GIF).await;
    assert_eq!(stored.status, StatusCode::NO_CONTENT, "{}", stored.text());
    assert_eq!(
        std::fs::read(gallery.store.root.join("gallery-bucket/uploads/readme.gif")).unwrap(),
        GIF
    );
    let empty = post_form(&post, &[], "empty.gif", b"").await;
    assert_eq!(empty.error_code(), "EntityTooSmall", "{}", empty.text());
}

/// A form body whose file is `file_len` bytes of one repeated chunk, counting what the client
/// handed to the connection: what the server read, plus what the socket buffers hold.
struct StreamedForm {
    pieces: std::collections::VecDeque<bytes::Bytes>,
    chunk: bytes::Bytes,
    file_left: usize,
    suffix: Option<bytes::Bytes>,
    sent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    length: u64,
}

impl http_body::Body for StreamedForm {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let next = if let Some(piece) = self.pieces.pop_front() {
            Some(piece)
        } else if self.file_left > 0 {
            let take = self.file_left.min(self.chunk.len());
            self.file_left -= take;
            Some(self.chunk.slice(..take))
        } else {
            self.suffix.take()
        };
        if let Some(piece) = &next {
            self.sent
                .fetch_add(piece.len(), std::sync::atomic::Ordering::SeqCst);
        }
        std::task::Poll::Ready(next.map(|piece| Ok(http_body::Frame::data(piece))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.length)
    }
}

/// Every file under `root`, relative to it.
fn files_under(root: &std::path::Path) -> Vec<String> {
    fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// A file larger than `content-length-range` is cut off while it streams: the proxy answers
/// EntityTooLarge as soon as the file passes the range, whether the excess comes within the
/// first part buffer (the store never contacted) or after a multipart upload began (aborted:
/// nothing is left on the store, not even parts). The answer reaches the client although it is
/// still sending (the proxy reads and drops the rest for a while rather than resetting).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_uploads_over_the_range_are_cut_off_mid_stream_and_leave_nothing() {
    let gallery = gallery("cutoff", "https://app.example.com").await;
    let before = files_under(&gallery.store.root);
    const MIB: usize = 1 << 20;
    let file_len = 128 * MIB;
    let cases = [
        ("over the range within the first part", MIB, false),
        ("over the range after the first part", 12 * MIB, true),
    ];
    for (what, max, past_first_part) in cases.iter().copied() {
        let post = boto3_post(
            &gallery.proxy,
            "cutoff",
            "uploads/${filename}",
            600,
            serde_json::json!({}),
            serde_json::json!([
                ["starts-with", "$key", "uploads/"],
                ["content-length-range", 1, max]
            ]),
        )
        .await;
        let fields = post_fields(&post);
        let (content_type, prefix, suffix) = form_framing(&fields, "big.bin");
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let body = StreamedForm {
            length: (prefix.len() + file_len + suffix.len()) as u64,
            pieces: std::collections::VecDeque::from([bytes::Bytes::from(prefix)]),
            chunk: bytes::Bytes::from(vec![b'x'; 64 << 10]),
            file_left: file_len,
            suffix: Some(bytes::Bytes::from(suffix)),
            sent: sent.clone(),
        };
        let request = http::Request::builder()
            .method(Method::POST)
            .uri(post["url"].as_str().unwrap())
            .header("content-type", content_type)
            .body(body)
            .unwrap();
        let client: hyper_util::client::legacy::Client<_, StreamedForm> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let response = client.request(request).await.expect("an answer");
        // What the client had sent when the answer came (it may go on sending: the proxy reads
        // and drops the rest for a few seconds, so the answer is not lost to a reset).
        let sent = sent.load(std::sync::atomic::Ordering::SeqCst);
        let status = response.status();
        let id = response.headers()["x-amz-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        let text = http_body_util::BodyExt::collect(response.into_body())
            .await
            .map(|body| String::from_utf8_lossy(&body.to_bytes()).into_owned())
            .unwrap_or_default();
        eprintln!(
            "{what}: answered {status} after {} MiB of {} MiB",
            sent / MIB,
            file_len / MIB
        );
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {text}");
        assert!(
            text.contains("<Code>EntityTooLarge</Code>"),
            "{what}: {text}"
        );
        // Where the proxy stopped is read off the store, not the client (which may go on sending
        // while the proxy reads and drops the rest): the first was refused within the first
        // part buffer (8 MiB), so the store was never contacted, as it would have been had the
        // proxy read on; the second read past it, so its first part had gone to the store as
        // the first of a multipart upload, which was aborted (the store's last answer, 204).
        let line = wait_for_access_line(&id).await;
        let upstream = if past_first_part {
            "upstream_status=204"
        } else {
            "upstream_status=-1"
        };
        assert!(line.contains(upstream), "{what}: {line}");
    }
    // Nothing landed, and no multipart upload's parts stayed behind.
    let after = eventually("the store back as it was", || {
        let after = files_under(&gallery.store.root);
        (after == before).then_some(after)
    })
    .await;
    assert_eq!(after, before);
}
