//! `explain` and the proxy agree: a generated set of requests (every caller kind against
//! refusals at each step, the proxy's own answers, and forwarded requests) is explained and
//! then sent through the same in-process proxy. What explain says the client gets is what it
//! gets, and "forwarded to the store" is said exactly when the store is contacted.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::BTreeMap;

use http::Request;
use s3_signing_proxy::tools::explain::{Options, explain};

use crate::support::{
    ClientFixture, IntegrationFixture, PassThrough, TempDir, fixtures, presign, register_secrets,
    sign_as_client,
};

/// Two integrations on one store (a private read-write one with CORS rules, a public one),
/// and a read-only and a read-write client bound to the first.
fn config(endpoint: &str, store_key: &str) -> String {
    let on_store = |name: &str, prefix: &str| {
        IntegrationFixture::new(name, "media")
            .set("prefix", prefix)
            .set("endpoint", endpoint)
            .static_keys(store_key, "STORE_SECRET")
    };
    fixtures::config(
        toml::Table::new(),
        &[
            on_store("acme", "tenant-a/")
                .set("access", "read-write")
                .set("cors_origins", vec!["https://app.example"]),
            on_store("open", "public/").set("public", true),
        ],
        &[
            ClientFixture::new("AKREADER", "CLIENT_SECRET", &["acme"], "read-only"),
            ClientFixture::new("AKWRITER", "CLIENT_SECRET", &["acme"], "read-write"),
        ],
    )
}

const CLIENT_SECRET: &str = "explain-agrees-client-secret";
const HOST: &str = "proxy.test";

/// Who sends a request.
#[derive(Debug, Clone, Copy)]
enum Caller {
    Anonymous,
    Reader,
    Writer,
    /// A known key with the wrong secret.
    WrongSecret,
    /// The reader's presigned URL.
    Presigned,
    /// A signed policy for `/acme/hello*`, in cookies.
    Policy,
}

/// A signed policy for `/acme/hello*`, valid for ten minutes, as (policy, signature).
fn policy() -> (String, String) {
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let document = format!(r#"{{"resource":"/acme/hello*","expires":{expires}}}"#);
    let signed = s3_signing_proxy::auth::policy::sign(CLIENT_SECRET, &document).unwrap();
    register_secrets([&signed.1]);
    signed
}

/// A request: its method, path and query, and headers.
type Shape = (&'static str, String, Vec<(&'static str, String)>);

/// The requests.
fn requests() -> Vec<Shape> {
    let none = Vec::new;
    vec![
        ("GET", "/acme/hello.txt".into(), none()),
        ("GET", "/acme/missing.txt".into(), none()),
        ("HEAD", "/acme/hello.txt".into(), none()),
        ("GET", "/open/page.txt".into(), none()),
        (
            "PUT",
            "/acme/new.txt".into(),
            vec![("content-length", "0".into())],
        ),
        ("PUT", "/acme/no-length.txt".into(), none()),
        ("DELETE", "/acme/gone.txt".into(), none()),
        ("GET", "/acme?list-type=2".into(), none()),
        ("GET", "/acme?uploads".into(), none()),
        ("GET", "/".into(), none()),
        ("HEAD", "/acme".into(), none()),
        ("GET", "/acme?location".into(), none()),
        ("PUT", "/acme".into(), none()),
        ("PUT", "/elsewhere".into(), none()),
        ("GET", "/nowhere/key".into(), none()),
        ("GET", "/acme/a/../b".into(), none()),
        ("GET", format!("/acme/{}", "k".repeat(9000)), none()),
        (
            "GET",
            "/acme/hello.txt?response-content-type=text/html".into(),
            none(),
        ),
        (
            "PUT",
            "/acme/acl.txt".into(),
            vec![
                ("x-amz-acl", "public-read".into()),
                ("content-length", "0".into()),
            ],
        ),
        (
            "PUT",
            "/acme/copy.txt".into(),
            vec![("x-amz-copy-source", "acme/hello.txt".into())],
        ),
        (
            "PUT",
            "/acme/escape.txt".into(),
            vec![("x-amz-copy-source", "media/elsewhere/secret.txt".into())],
        ),
        (
            "POST",
            "/acme?delete".into(),
            vec![("content-length", "0".into())],
        ),
        (
            "OPTIONS",
            "/acme/hello.txt".into(),
            vec![
                ("origin", "https://app.example".into()),
                ("access-control-request-method", "GET".into()),
            ],
        ),
        (
            "OPTIONS",
            "/acme/hello.txt".into(),
            vec![
                ("origin", "https://evil.example".into()),
                ("access-control-request-method", "GET".into()),
            ],
        ),
        {
            let (text, signature) = policy();
            let query =
                format!("S3SP-Policy={text}&S3SP-Signature={signature}&S3SP-Key-Id=AKREADER");
            ("GET", format!("/acme/_session?{query}"), none())
        },
        (
            "GET",
            "/acme/hello.txt".into(),
            vec![(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKREADER/x".into(),
            )],
        ),
    ]
}

fn build(caller: Caller, (method, target, headers): &Shape) -> Request<()> {
    let target = match caller {
        Caller::Presigned => {
            let url = presign(
                method.parse().unwrap(),
                &format!("http://{HOST}{target}"),
                "AKREADER",
                CLIENT_SECRET,
            );
            url.strip_prefix(&format!("http://{HOST}"))
                .unwrap()
                .to_string()
        }
        _ => target.clone(),
    };
    let mut builder = Request::builder()
        .method(*method)
        .uri(format!("http://{HOST}{target}"))
        .header("host", HOST);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    let mut request = builder.body(()).unwrap();
    match caller {
        Caller::Reader => sign_as_client(&mut request, "AKREADER", CLIENT_SECRET),
        Caller::Writer => sign_as_client(&mut request, "AKWRITER", CLIENT_SECRET),
        Caller::WrongSecret => sign_as_client(&mut request, "AKREADER", "not-the-secret-at-all"),
        Caller::Policy => {
            let (text, signature) = policy();
            let cookie =
                format!("S3SP-Policy={text}; S3SP-Signature={signature}; S3SP-Key-Id=AKREADER");
            request
                .headers_mut()
                .insert("cookie", cookie.parse().unwrap());
        }
        Caller::Anonymous | Caller::Presigned => {}
    }
    // A client sends the path and query; `Host` names the proxy.
    let path = request.uri().path_and_query().unwrap().as_str().to_string();
    *request.uri_mut() = path.parse().unwrap();
    request
}

/// What `explain` says of each generated request is what the proxy does with it.
#[tokio::test]
async fn explain_and_the_proxy_agree_on_every_generated_request() {
    let dir = TempDir::new("explain-agrees");
    let root = dir.0.join("store");
    std::fs::create_dir_all(root.join("media/tenant-a")).unwrap();
    std::fs::create_dir_all(root.join("media/public")).unwrap();
    std::fs::write(root.join("media/tenant-a/hello.txt"), b"hello\n").unwrap();
    std::fs::write(root.join("media/public/page.txt"), b"page\n").unwrap();
    let store = s3_signing_proxy::lab::demo::EmbeddedStore::start(&root, None, None)
        .await
        .unwrap();
    let counted = PassThrough::start(store.address).await;
    let config = config(&counted.endpoint(), &store.access_key_id);
    let secrets = BTreeMap::from([
        ("STORE_SECRET".to_string(), store.secret_access_key.clone()),
        ("CLIENT_SECRET".to_string(), CLIENT_SECRET.to_string()),
    ]);
    register_secrets(secrets.values());
    let config = s3_signing_proxy::Config::parse(&config, "explain config", &secrets).unwrap();
    let proxy = s3_signing_proxy::Proxy::new(config).unwrap();

    let options = Options {
        send: true,
        ..Options::default()
    };
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let callers = [
        Caller::Anonymous,
        Caller::Reader,
        Caller::Writer,
        Caller::WrongSecret,
        Caller::Presigned,
        Caller::Policy,
    ];
    for caller in callers {
        for shape in requests() {
            // A signed policy in the query stays out of the test's own SigV4 signing, whose
            // TRACE log would show it.
            let signs = !matches!(caller, Caller::Anonymous | Caller::Policy);
            if signs && shape.1.contains("S3SP-Signature") {
                continue;
            }
            let request = build(caller, &shape);
            let before = counted.requests();
            let explanation = explain(&proxy, request, &options).await.unwrap();
            let contacted = counted.requests() - before;
            let what = format!("{caller:?} {} {}: {explanation:#?}", shape.0, shape.1);
            let sent = explanation
                .steps
                .iter()
                .find(|step| step.name == "sent")
                .unwrap_or_else(|| panic!("no sent step: {what}"));
            let fact = |name: &str| {
                sent.facts
                    .iter()
                    .find(|(fact, _)| *fact == name)
                    .map(|(_, value)| value.clone())
            };
            let status: u16 = fact("status").unwrap().parse().unwrap();
            let answer = explanation.answer.as_str();
            let kind = match answer {
                "forwarded to the store" => {
                    assert_eq!(contacted, 1, "forwarded once: {what}");
                    "forwarded".to_string()
                }
                "answered by the proxy" => {
                    assert_eq!(contacted, 0, "the proxy answers itself: {what}");
                    assert!(status < 400, "an answer, not a refusal: {what}");
                    let step = explanation.steps.iter().rev().nth(1).unwrap();
                    format!("answered at {}", step.name)
                }
                refusal => {
                    assert_eq!(contacted, 0, "a refusal never reaches the store: {what}");
                    match fact("error") {
                        Some(code) => assert_eq!(refusal, format!("{status} {code}"), "{what}"),
                        // A HEAD's answer has no body to name its code in.
                        None => {
                            assert_eq!(shape.0, "HEAD", "{what}");
                            assert!(refusal.starts_with(&format!("{status} ")), "{what}");
                        }
                    }
                    let step = explanation
                        .steps
                        .iter()
                        .find(|step| {
                            step.outcome == s3_signing_proxy::tools::explain::Outcome::Refused
                        })
                        .unwrap_or_else(|| panic!("a refusal names its step: {what}"));
                    format!("refused at {}", step.name)
                }
            };
            *kinds.entry(kind).or_default() += 1;
        }
    }
    eprintln!("{kinds:#?}");
    // The set reaches every step explain can name a refusal or an answer at.
    for kind in [
        "forwarded",
        "answered at config",
        "answered at service",
        "answered at cors",
        "answered at session",
        "refused at shape",
        "refused at route",
        "refused at front door",
        "refused at policy",
        "refused at integration",
        "refused at authorisation",
        "refused at guard",
        "refused at config",
        "refused at cors",
        "refused at upstream request",
    ] {
        assert!(
            kinds.contains_key(kind),
            "no request was {kind}: {kinds:#?}"
        );
    }
    assert!(kinds["forwarded"] >= 15, "{kinds:#?}");
}
