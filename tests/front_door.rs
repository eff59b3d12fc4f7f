//! The signed front door with stock clients: boto3 (both addressing styles), the AWS CLI, curl
//! and presigned URLs reach private integrations with proxy-issued keys, each only where it is
//! bound; every rejection has S3's own error code and never reaches the upstream. Also CORS and
//! redirect delivery.
// This file tampers with signed URLs as text on purpose. .clippy.toml's ban on editing text is
// for the proxy's own code.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::{Duration, SystemTime};

use http::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

const CLIENT_A: &str = "AKPROXYCLIENTA";
const CLIENT_A_SECRET: &str = "client-a-secret-9f8e7d";
const CLIENT_B: &str = "AKPROXYCLIENTB";
const CLIENT_B_SECRET: &str = "client-b-secret-1a2b3c";
const APP_ORIGIN: &str = "http://app.localhost:3000";

/// Private integrations `acme` (tenant A) and `beta` (tenant B) behind a counting pass-through,
/// client A bound to `acme` by name, client B to tenant B's bucket by bucket name.
struct FrontDoor {
    proxy: RunningProxy,
    s3: PassThrough,
}

impl FrontDoor {
    async fn start() -> FrontDoor {
        FrontDoor::start_with("").await
    }

    /// With `server_extra` settings in `[server]`.
    async fn start_with(server_extra: &str) -> FrontDoor {
        let moto = moto();
        let s3 = PassThrough::start(moto.address()).await;
        let private = format!("public = false\ncors_origins = [\"{APP_ORIGIN}\"]");
        let clients = ClientFixture::toml(&[
            ClientFixture::new(CLIENT_A, "CLIENT_A_SECRET", &["acme"], "read-only"),
            ClientFixture::new(
                CLIENT_B,
                "CLIENT_B_SECRET",
                &[&moto.tenant_b.bucket],
                "read-only",
            ),
        ]);
        let acme = role_integration(
            "acme",
            &moto.tenant_a,
            &s3.endpoint(),
            "path",
            &moto.tenant_a.external_id,
            &private,
        );
        let beta = role_integration(
            "beta",
            &moto.tenant_b,
            &s3.endpoint(),
            "path",
            &moto.tenant_b.external_id,
            &private,
        );
        let config = format!(
            "[server]\nbase_domain = \"localhost\"\n{server_extra}\n{}{acme}{beta}{clients}",
            sts_section(moto, &moto.endpoint(), ""),
        );
        let mut secrets = secrets(moto);
        secrets.insert("CLIENT_A_SECRET".into(), CLIENT_A_SECRET.into());
        secrets.insert("CLIENT_B_SECRET".into(), CLIENT_B_SECRET.into());
        FrontDoor {
            proxy: start_proxy(&config, &secrets).await,
            s3,
        }
    }

    fn path_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.proxy.address.port())
    }

    fn virtual_endpoint(&self) -> String {
        format!("http://localhost:{}", self.proxy.address.port())
    }

    async fn boto3(
        &self,
        style: &str,
        key: &str,
        secret: &str,
        op: serde_json::Value,
    ) -> serde_json::Value {
        let endpoint = if style == "virtual" {
            self.virtual_endpoint()
        } else {
            self.path_endpoint()
        };
        boto3_as(&endpoint, (key, secret), style, op).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_reads_with_issued_keys_in_both_addressing_styles() {
    let door = FrontDoor::start().await;
    for style in ["path", "virtual"] {
        let get = door
            .boto3(
                style,
                CLIENT_A,
                CLIENT_A_SECRET,
                json!({"op": "get", "bucket": "acme", "object": "owner.txt"}),
            )
            .await;
        assert_eq!(get, json!({"status": 200, "body": "tenant a\n"}), "{style}");
        let head = door
            .boto3(
                style,
                CLIENT_A,
                CLIENT_A_SECRET,
                json!({"op": "head", "bucket": "acme", "object": "owner.txt"}),
            )
            .await;
        assert_eq!(head, json!({"status": 200, "length": 9}), "{style}");
        let range = door
            .boto3(
                style,
                CLIENT_A,
                CLIENT_A_SECRET,
                json!({"op": "get", "bucket": "acme", "object": "owner.txt", "range": "bytes=0-5"}),
            )
            .await;
        assert_eq!(range, json!({"status": 206, "body": "tenant"}), "{style}");
        for key in [
            "unicode/ünïcødé/日本語.txt",
            "plus+sign.txt",
            "question?mark#hash.txt",
            "dir/trailing/",
        ] {
            let get = door
                .boto3(
                    style,
                    CLIENT_A,
                    CLIENT_A_SECRET,
                    json!({"op": "get", "bucket": "acme", "object": key}),
                )
                .await;
            let expected = String::from_utf8(body_for(key)).unwrap();
            assert_eq!(get["status"], 200, "{style} {key}: {get}");
            assert_eq!(
                get["body"].as_str().map(|b| b.as_bytes().to_vec()),
                Some(latin1(&expected)),
                "{style} {key}"
            );
        }
    }
    // Client B is bound by bucket name; the integration name reaches the same place.
    let b = door
        .boto3(
            "path",
            CLIENT_B,
            CLIENT_B_SECRET,
            json!({"op": "get", "bucket": "beta", "object": "owner.txt"}),
        )
        .await;
    assert_eq!(b, json!({"status": 200, "body": "tenant b\n"}));
}

/// What `s3_client.py` prints for bytes it decoded as latin-1, as UTF-8 bytes.
fn latin1(text: &str) -> Vec<u8> {
    text.bytes()
        .map(char::from)
        .collect::<String>()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cli_copies_and_heads_objects() {
    let door = FrontDoor::start().await;
    let dir = TempDir::new("aws-cli");
    let aws = |args: Vec<String>| {
        let mut command = aws_cli_as(&dir.0, &door.path_endpoint(), (CLIENT_A, CLIENT_A_SECRET));
        command.args(args);
        command
    };
    let target = dir.0.join("owner.txt");
    let copy = aws(vec![
        "s3".into(),
        "cp".into(),
        "s3://acme/owner.txt".into(),
        target.display().to_string(),
    ])
    .output()
    .await
    .unwrap();
    assert!(
        copy.status.success(),
        "{}",
        String::from_utf8_lossy(&copy.stderr)
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "tenant a\n");

    let head = aws([
        "s3api",
        "head-object",
        "--bucket",
        "acme",
        "--key",
        "media/ranged.bin",
    ]
    .map(String::from)
    .to_vec())
    .output()
    .await
    .unwrap();
    assert!(
        head.status.success(),
        "{}",
        String::from_utf8_lossy(&head.stderr)
    );
    let head: serde_json::Value = serde_json::from_slice(&head.stdout).unwrap();
    assert_eq!(head["ContentLength"], 1 << 20);

    let denied = aws(vec![
        "s3".into(),
        "cp".into(),
        "s3://beta/owner.txt".into(),
        "-".into(),
    ])
    .output()
    .await
    .unwrap();
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
}

#[tokio::test]
async fn curl_signs_with_aws_sigv4() {
    let door = FrontDoor::start().await;
    let output = tokio::process::Command::new("curl")
        .args(["-s", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
        .arg(format!("{CLIENT_A}:{CLIENT_A_SECRET}"))
        .arg(door.proxy.url("/acme/owner.txt"))
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "tenant a\n");
    let wrong = tokio::process::Command::new("curl")
        .args(["-s", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
        .arg(format!("{CLIENT_A}:not-the-secret"))
        .arg(door.proxy.url("/acme/owner.txt"))
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&wrong.stdout).contains("<Code>SignatureDoesNotMatch</Code>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_work_with_ranges_and_are_refused_when_tampered_or_expired() {
    let door = FrontDoor::start().await;
    let presign = |object: &str, expires: u64| {
        door.boto3(
            "path",
            CLIENT_A,
            CLIENT_A_SECRET,
            json!({"op": "presign", "bucket": "acme", "object": object, "expires": expires}),
        )
    };
    let url = presign("media/ranged.bin", 300).await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let whole = get(&url).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(whole.body.len(), 1 << 20);
    let part = request(Method::GET, &url, &[("range", "bytes=10-19")]).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.body.as_ref(),
        (10..20)
            .map(|i: usize| ((i * 7 + 3) % 251) as u8)
            .collect::<Vec<_>>()
            .as_slice()
    );

    let before = door.s3.requests();
    let tampered = get(&url.replace("ranged.bin", "owner.txt")).await;
    assert_eq!(
        (tampered.status, tampered.error_code().as_str()),
        (StatusCode::FORBIDDEN, "SignatureDoesNotMatch")
    );
    let too_long = get(&url.replace("X-Amz-Expires=300", "X-Amz-Expires=604801")).await;
    assert_eq!(
        (too_long.status, too_long.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "AuthorizationQueryParametersError")
    );
    let short = presign("owner.txt", 1).await["url"]
        .as_str()
        .unwrap()
        .to_string();
    // The proxy's clock two seconds on: the one-second URL has expired, without waiting.
    door.proxy.clock.advance(Duration::from_secs(2));
    let expired = get(&short).await;
    assert_eq!(
        (expired.status, expired.error_code().as_str()),
        (StatusCode::FORBIDDEN, "AccessDenied")
    );
    assert!(
        expired.text().contains("Request has expired"),
        "{}",
        expired.text()
    );
    assert_eq!(
        door.s3.requests(),
        before,
        "refused presigned requests never reach the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv2_signatures_verify_with_the_same_bindings_and_expiry() {
    let door = FrontDoor::start().await;
    let v2 =
        |style: &'static str, key: &'static str, secret: &'static str, op: serde_json::Value| {
            let mut op = op;
            op.as_object_mut()
                .unwrap()
                .insert("signature".into(), json!("s3"));
            door.boto3(style, key, secret, op)
        };
    for style in ["path", "virtual"] {
        let got = v2(
            style,
            CLIENT_A,
            CLIENT_A_SECRET,
            json!({"op": "get", "bucket": "acme", "object": "plus+sign.txt"}),
        )
        .await;
        assert_eq!(got["status"], 200, "{style}: {got}");
        let listed = v2(
            style,
            CLIENT_A,
            CLIENT_A_SECRET,
            json!({"op": "list", "bucket": "acme", "prefix": "unicode/"}),
        )
        .await;
        assert_eq!(
            listed["keys"],
            json!(["unicode/ünïcødé/日本語.txt"]),
            "{style}: {listed}"
        );
    }
    // ListBuckets signs the service's resource, `/` (boto3's and s3cmd's `ls`).
    let buckets = v2(
        "path",
        CLIENT_A,
        CLIENT_A_SECRET,
        json!({"op": "list_buckets", "bucket": ""}),
    )
    .await;
    assert_eq!(buckets["status"], 200, "{buckets}");
    assert_eq!(buckets["names"], json!(["acme"]), "{buckets}");
    let before = door.s3.requests();
    // Bound to beta only: acme is refused, as with SigV4.
    let other = v2(
        "path",
        CLIENT_B,
        CLIENT_B_SECRET,
        json!({"op": "get", "bucket": "acme", "object": "owner.txt"}),
    )
    .await;
    assert_eq!(other, json!({"status": 403, "code": "AccessDenied"}));
    let wrong = v2(
        "path",
        CLIENT_A,
        CLIENT_B_SECRET,
        json!({"op": "get", "bucket": "acme", "object": "owner.txt"}),
    )
    .await;
    assert_eq!(
        wrong,
        json!({"status": 403, "code": "SignatureDoesNotMatch"})
    );
    let unknown = v2(
        "path",
        "AKNOBODY",
        CLIENT_A_SECRET,
        json!({"op": "get", "bucket": "acme", "object": "owner.txt"}),
    )
    .await;
    assert_eq!(
        unknown,
        json!({"status": 403, "code": "InvalidAccessKeyId"})
    );
    assert_eq!(
        door.s3.requests(),
        before,
        "refused requests never reach the upstream"
    );

    // The query form, as boto3's presigner and `s3cmd signurl` make it.
    let presign = |object: &'static str, expires: u64| {
        v2(
            "path",
            CLIENT_A,
            CLIENT_A_SECRET,
            json!({"op": "presign", "bucket": "acme", "object": object, "expires": expires}),
        )
    };
    let url = presign("media/ranged.bin", 300).await["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        url.contains("AWSAccessKeyId=") && url.contains("Signature="),
        "{url}"
    );
    let part = request(Method::GET, &url, &[("range", "bytes=10-19")]).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT, "{}", part.text());
    assert_eq!(part.body.len(), 10);
    let before_query_refusals = door.s3.requests();
    let tampered = get(&url.replace("ranged.bin", "owner.txt")).await;
    assert_eq!(
        (tampered.status, tampered.error_code().as_str()),
        (StatusCode::FORBIDDEN, "SignatureDoesNotMatch")
    );
    let expires = url
        .split(['?', '&'])
        .find_map(|pair| pair.strip_prefix("Expires="))
        .unwrap()
        .to_string();
    let far = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 8 * 24 * 3600;
    let too_long =
        get(&url.replace(&format!("Expires={expires}"), &format!("Expires={far}"))).await;
    assert_eq!(
        (too_long.status, too_long.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "AuthorizationQueryParametersError")
    );
    let short = presign("owner.txt", 1).await["url"]
        .as_str()
        .unwrap()
        .to_string();
    // The proxy's clock two seconds on: the one-second URL has expired, without waiting.
    door.proxy.clock.advance(Duration::from_secs(2));
    let expired = get(&short).await;
    assert_eq!(
        (expired.status, expired.error_code().as_str()),
        (StatusCode::FORBIDDEN, "AccessDenied")
    );
    // Both forms at once is two mechanisms.
    let both = request(
        Method::GET,
        &url,
        &[("authorization", "AWS AKPROXYCLIENTA:x")],
    )
    .await;
    assert_eq!(both.error_code(), "InvalidArgument");
    assert_eq!(
        door.s3.requests(),
        before_query_refusals,
        "refused SigV2 requests never reach the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sigv2_off_both_forms_are_refused_never_taken_as_anonymous() {
    // Refused as SigV2 (400), not taken for an anonymous request (which would be a 403).
    let door = FrontDoor::start_with("sigv2 = false").await;
    let header = door
        .boto3(
            "path",
            CLIENT_A,
            CLIENT_A_SECRET,
            json!({"op": "get", "bucket": "acme", "object": "owner.txt", "signature": "s3"}),
        )
        .await;
    assert_eq!(header, json!({"status": 400, "code": "InvalidRequest"}));
    let url = door
        .boto3(
            "path",
            CLIENT_A,
            CLIENT_A_SECRET,
            json!({"op": "presign", "bucket": "acme", "object": "owner.txt", "signature": "s3"}),
        )
        .await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let presigned = get(&url).await;
    assert_eq!(presigned.status, StatusCode::BAD_REQUEST);
    assert!(
        presigned.text().contains("Please use AWS4-HMAC-SHA256"),
        "{}",
        presigned.text()
    );
    // SigV4 still works.
    let v4 = door
        .boto3(
            "path",
            CLIENT_A,
            CLIENT_A_SECRET,
            json!({"op": "get", "bucket": "acme", "object": "owner.txt"}),
        )
        .await;
    assert_eq!(v4["status"], 200, "{v4}");
}

/// Signs a GET for the proxy as a client would, at `time`.
async fn signed_get(
    door: &FrontDoor,
    path: &str,
    key: &str,
    secret: &str,
    time: SystemTime,
) -> Fetched {
    let mut unsent = http::Request::new(());
    *unsent.uri_mut() = door.proxy.url(path).parse().unwrap();
    let host = door.proxy.address.to_string();
    unsent.headers_mut().insert("host", host.parse().unwrap());
    let credentials = aws_credential_types::Credentials::new(key, secret, None, None, "test");
    s3_signing_proxy::upstream::sign::sign_request(&mut unsent, &credentials, "us-east-1", time)
        .unwrap();
    let headers: Vec<(String, String)> = unsent
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    request(Method::GET, &door.proxy.url(path), &headers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rejection_has_its_s3_code_and_never_reaches_the_upstream() {
    let door = FrontDoor::start().await;
    let now = SystemTime::now();
    let ok = signed_get(&door, "/acme/owner.txt", CLIENT_A, CLIENT_A_SECRET, now).await;
    assert_eq!(
        (ok.status, ok.text().as_str()),
        (StatusCode::OK, "tenant a\n")
    );
    let before = door.s3.requests();

    let cases = [
        (
            signed_get(
                &door,
                "/acme/owner.txt",
                "AKUNKNOWNKEY",
                CLIENT_A_SECRET,
                now,
            )
            .await,
            "InvalidAccessKeyId",
        ),
        (
            signed_get(&door, "/acme/owner.txt", CLIENT_A, "wrong-secret", now).await,
            "SignatureDoesNotMatch",
        ),
        (
            signed_get(
                &door,
                "/acme/owner.txt",
                CLIENT_A,
                CLIENT_A_SECRET,
                now - Duration::from_secs(16 * 60),
            )
            .await,
            "RequestTimeTooSkewed",
        ),
        (
            signed_get(
                &door,
                "/acme/owner.txt",
                CLIENT_A,
                CLIENT_A_SECRET,
                now + Duration::from_secs(16 * 60),
            )
            .await,
            "RequestTimeTooSkewed",
        ),
        (
            get(&door.proxy.url("/acme/owner.txt")).await,
            "AccessDenied",
        ),
        (
            request(
                Method::GET,
                &door.proxy.url("/acme/owner.txt"),
                &[("authorization", "AWS AKID:c2lnbmF0dXJl")],
            )
            .await,
            // SigV2 with no date to check.
            "AccessDenied",
        ),
    ];
    for (fetched, code) in cases {
        assert_eq!(fetched.error_code(), code, "{}", fetched.text());
        assert_eq!(
            fetched.status.as_u16(),
            if code == "InvalidArgument" { 400 } else { 403 }
        );
    }
    // A signature made for one request does not carry over to another path.
    let signed = signed_get(&door, "/acme/owner.txt", CLIENT_A, CLIENT_A_SECRET, now).await;
    assert_eq!(signed.status, StatusCode::OK);
    assert_eq!(
        door.s3.requests(),
        before + 1,
        "only the valid request reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_bound_to_a_cannot_reach_b_by_any_route() {
    let door = FrontDoor::start().await;
    let moto = moto();
    let before = door.s3.requests();
    // By B's integration name and by B's scoped bucket name, path style and host style.
    for (style, bucket) in [
        ("path", "beta"),
        ("path", moto.tenant_b.bucket.as_str()),
        ("virtual", "beta"),
    ] {
        let denied = door
            .boto3(
                style,
                CLIENT_A,
                CLIENT_A_SECRET,
                json!({"op": "get", "bucket": bucket, "object": "owner.txt"}),
            )
            .await;
        assert_eq!(
            denied,
            json!({"status": 403, "code": "AccessDenied"}),
            "{style} {bucket}"
        );
    }
    // A Host header naming B on a path inside A, an encoded slash, dot segments: each stays
    // inside A or is refused.
    let now = SystemTime::now();
    for path in [
        "/acme/..%2Fbeta%2Fowner.txt",
        "/beta%2Fowner.txt",
        "/acme%2F..%2Fbeta/owner.txt",
    ] {
        let refused = signed_get(&door, path, CLIENT_A, CLIENT_A_SECRET, now).await;
        assert!(
            refused.status.is_client_error(),
            "{path}: {}",
            refused.status
        );
        assert!(!refused.text().contains("tenant b"), "{path}");
    }
    let host_b = format!("beta.localhost:{}", door.proxy.address.port());
    let forged_host = request(
        Method::GET,
        &door.proxy.url("/owner.txt"),
        &[("host", &host_b)],
    )
    .await;
    assert_eq!(forged_host.error_code(), "AccessDenied");
    assert_eq!(door.s3.requests(), before, "the upstream saw none of it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_answered_by_the_proxy_for_allowed_origins_only() {
    let door = FrontDoor::start().await;
    let target = door.proxy.url("/acme/media/ranged.bin");
    let preflight = |origin: &'static str| {
        let target = target.clone();
        async move {
            let headers = [
                ("origin", origin),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "range"),
            ];
            request(Method::OPTIONS, &target, &headers).await
        }
    };
    let allowed = preflight(APP_ORIGIN).await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(allowed.headers["access-control-allow-origin"], APP_ORIGIN);
    assert_eq!(allowed.headers["access-control-allow-methods"], "GET, HEAD");
    assert_eq!(allowed.headers["access-control-allow-headers"], "range");
    let refused = preflight("http://evil.localhost:3000").await;
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (StatusCode::FORBIDDEN, "AccessDenied")
    );
    assert!(!refused.headers.contains_key("access-control-allow-origin"));
    assert_eq!(door.s3.requests(), 0, "preflights never reach the upstream");

    let url = door
        .boto3(
            "path",
            CLIENT_A,
            CLIENT_A_SECRET,
            json!({"op": "presign", "bucket": "acme", "object": "media/ranged.bin"}),
        )
        .await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let from_app = request(
        Method::GET,
        &url,
        &[("origin", APP_ORIGIN), ("range", "bytes=0-99")],
    )
    .await;
    assert_eq!(from_app.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(from_app.headers["access-control-allow-origin"], APP_ORIGIN);
    assert_eq!(from_app.headers["vary"], "Origin");
    let exposed = from_app.headers["access-control-expose-headers"]
        .to_str()
        .unwrap();
    for name in [
        "ETag",
        "Content-Range",
        "Accept-Ranges",
        "Content-Length",
        "x-amz-request-id",
    ] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }
    // moto answers with `Access-Control-Allow-Origin: *`; the proxy replaces it.
    let from_elsewhere = request(
        Method::GET,
        &url,
        &[("origin", "http://evil.localhost:3000")],
    )
    .await;
    assert_eq!(from_elsewhere.status, StatusCode::OK);
    assert!(
        !from_elsewhere
            .headers
            .contains_key("access-control-allow-origin")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_delivery_answers_with_a_working_upstream_presigned_url() {
    let dir = TempDir::new("redirect");
    let store = s3_signing_proxy::lab::demo::EmbeddedStore::start(&dir.0, None, None)
        .await
        .unwrap();
    store.create_bucket("big-media").unwrap();
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    store
        .put_object(
            "big-media",
            "video/clip one.mp4",
            "video/mp4",
            bytes.clone().into(),
        )
        .await
        .unwrap();
    let config = IntegrationFixture::new("big", "big-media")
        .set("endpoint", store.endpoint())
        .set("public", true)
        .set("delivery", "redirect")
        .set("redirect_expires", "2m")
        .static_keys(&store.access_key_id, "STORE_SECRET")
        .toml();
    let secrets = std::collections::BTreeMap::from([(
        "STORE_SECRET".to_string(),
        store.secret_access_key.clone(),
    )]);
    let proxy = start_proxy(&config, &secrets).await;
    let redirect = get(&proxy.url("/big/video/clip%20one.mp4")).await;
    assert_eq!(redirect.status, StatusCode::TEMPORARY_REDIRECT);
    let location = redirect.headers["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!(
            "{}/big-media/video/clip%20one.mp4?",
            store.endpoint()
        )),
        "{location}"
    );
    assert!(location.contains("X-Amz-Expires=120"), "{location}");
    assert!(!location.contains(&store.secret_access_key));
    // s3s-fs verifies the presigned signature: the bytes come straight from the store.
    let direct = get(&location).await;
    assert_eq!(direct.status, StatusCode::OK, "{}", direct.text());
    assert_eq!(direct.body.as_ref(), bytes.as_slice());
    let ranged = request(Method::GET, &location, &[("range", "bytes=1000-1009")]).await;
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.body.as_ref(), &bytes[1000..1010]);
    // HEAD is still answered by the proxy itself.
    let head = request(Method::HEAD, &proxy.url("/big/video/clip%20one.mp4"), &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["content-length"], "100000");
}
