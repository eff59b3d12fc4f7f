//! Against SeaweedFS, a real local store that encodes and normalises listings as S3 does
//! (moto does neither): URL-encoded listings with spaces and pluses, a store that reads `//`
//! in a prefix as `/`, and the DeleteObjects attack, each checked on the store itself.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::json;

use crate::support::*;

const CLIENT: &str = "AKPROXYLOCALSTORE";
const CLIENT_SECRET: &str = "local-store-client-secret-9c1d";

/// The store's bucket under the prefix `jail`, read-write, and whole (`whole`), read-only,
/// with its static keys.
async fn start() -> RunningProxy {
    let store = seaweedfs();
    let on_the_store = |name: &str| {
        IntegrationFixture::new(name, &store.bucket)
            .set("endpoint", store.endpoint())
            .set("addressing", "path")
            .static_keys(&store.keys.access_key_id, "STORE_SECRET")
    };
    let jail = on_the_store("jail")
        .set("prefix", "jail")
        .set("access", "read-write");
    let client = ClientFixture::new(CLIENT, "CLIENT_SECRET", &["jail", "whole"], "read-write");
    let config = fixtures::config(
        toml::Table::new(),
        &[jail, on_the_store("whole")],
        &[client],
    );
    let secrets = std::collections::BTreeMap::from([
        (
            "STORE_SECRET".to_string(),
            store.keys.secret_access_key.clone(),
        ),
        ("CLIENT_SECRET".to_string(), CLIENT_SECRET.to_string()),
    ]);
    start_proxy(&config, &secrets).await
}

/// One boto3 call as the client, in bucket `jail` unless `op` names another.
async fn as_client(proxy: &RunningProxy, mut op: serde_json::Value) -> serde_json::Value {
    if let Some(fields) = op.as_object_mut() {
        fields.entry("bucket").or_insert_with(|| "jail".into());
    }
    let endpoint = format!("http://127.0.0.1:{}", proxy.address.port());
    boto3_as(&endpoint, (CLIENT, CLIENT_SECRET), "path", op).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_encoded_listings_keep_spaces_and_pluses_apart() {
    let store = seaweedfs();
    let proxy = start().await;
    store.put("jail/enc/a b+c.txt", "spaced").await;
    // boto3 asks for encoding-type=url itself and decodes what it gets: the store writes the
    // space as `+` and the plus as `%2B`.
    let listed = as_client(&proxy, json!({"op": "list", "prefix": "enc/"})).await;
    assert_eq!(listed["keys"], json!(["enc/a b+c.txt"]), "{listed}");
    let got = as_client(&proxy, json!({"op": "get", "object": "enc/a b+c.txt"})).await;
    assert_eq!(got["body"], "spaced", "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_encoded_listing_echoes_the_clients_own_prefix() {
    let store = seaweedfs();
    let proxy = start().await;
    store.put("jail/echo/a b+c.txt", "spaced").await;
    // The prefix as the client meant it, as its query spells it, and as the listing must
    // write it back (ceph's s3-tests: a bare `%` answered 500, `a%41` came back `aA` and
    // `a b+c` as `a b c`).
    for (prefix, query, echoed, keys) in [
        ("echo/a%", "echo%2Fa%25", "echo/a%25", 0),
        ("echo/a%41", "echo%2Fa%2541", "echo/a%2541", 0),
        ("echo/a b+c", "echo%2Fa%20b%2Bc", "echo/a%20b%2Bc", 1),
    ] {
        let mut request = Request::builder()
            .uri(proxy.url(&format!(
                "/jail?list-type=2&encoding-type=url&prefix={query}"
            )))
            .body(Full::new(Bytes::new()))
            .unwrap();
        sign_as_client(&mut request, CLIENT, CLIENT_SECRET);
        let listed = send(request).await;
        assert_eq!(listed.status, StatusCode::OK, "{prefix}: {}", listed.text());
        let text = listed.text();
        assert!(
            text.contains(&format!("<Prefix>{echoed}</Prefix>")),
            "{prefix}: {text}"
        );
        assert_eq!(text.matches("<Key>").count(), keys, "{prefix}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_reads_double_slashes_as_one_cannot_widen_a_listing() {
    let store = seaweedfs();
    let proxy = start().await;
    store.put("jail/b/a/r", "r").await;
    store.put("jail/g", "g").await;
    for prefix in ["/", "b//"] {
        let listed = as_client(&proxy, json!({"op": "list", "prefix": prefix})).await;
        assert_eq!(listed["keys"], json!([]), "prefix {prefix:?}: {listed}");
        assert_eq!(listed["prefixes"], json!([]), "prefix {prefix:?}: {listed}");
    }
    // The same listing with a prefix the store reads as it is still answers.
    let listed = as_client(&proxy, json!({"op": "list", "prefix": "b/"})).await;
    assert_eq!(listed["keys"], json!(["b/a/r"]), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_objects_spelled_to_escape_stays_in_the_prefix_on_a_real_store() {
    let store = seaweedfs();
    let proxy = start().await;
    store.put("outside.txt", "outside the prefix").await;
    store.put("jail/victim/x.txt", "inside").await;
    for body in [
        "<Delete><Object><Key >outside.txt</Key ></Object></Delete>",
        "<Delete><Object><Key\t>outside.txt</Key\t></Object></Delete>",
        "\u{FEFF}<Delete><Object><Key>outside.txt</Key></Object></Delete>",
        "<Delete><Object><Key>../outside.txt</Key></Object></Delete>",
    ] {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(proxy.url("/jail?delete"))
            .header("content-length", body.len())
            .header("content-md5", content_md5(body.as_bytes()))
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        sign_as_client(&mut request, CLIENT, CLIENT_SECRET);
        let answer = send(request).await;
        assert!(
            answer.status == StatusCode::OK || answer.status == StatusCode::BAD_REQUEST,
            "{body:?}: {} {}",
            answer.status,
            answer.text()
        );
    }
    let keys = store.keys().await;
    assert!(keys.contains(&"outside.txt".to_string()), "{keys:?}");
    // And a well-formed request deletes what it names, under the prefix.
    let deleted = as_client(
        &proxy,
        json!({"op": "delete_many", "objects": ["victim/x.txt"]}),
    )
    .await;
    assert_eq!(deleted["deleted"], json!(["victim/x.txt"]), "{deleted}");
    let keys = store.keys().await;
    assert!(!keys.contains(&"jail/victim/x.txt".to_string()), "{keys:?}");
    assert!(keys.contains(&"outside.txt".to_string()), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_attributes_are_read_inside_the_prefix_and_without_one() {
    let store = seaweedfs();
    let proxy = start().await;
    store.put("jail/attributes.txt", "twelve bytes").await;
    let jailed = as_client(
        &proxy,
        json!({"op": "attributes", "object": "attributes.txt"}),
    )
    .await;
    let whole = as_client(
        &proxy,
        json!({"op": "attributes", "bucket": "whole", "object": "jail/attributes.txt"}),
    )
    .await;
    // The store answers the same object the same way, whichever way the proxy reached it.
    assert_eq!(jailed, whole);
    assert_eq!(jailed["status"], 200, "{jailed}");
    assert_eq!(jailed["size"], 12, "{jailed}");
    let missing = as_client(&proxy, json!({"op": "attributes", "object": "absent.txt"})).await;
    assert_eq!(missing["status"], 404, "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_buckets_names_what_the_client_may_reach_and_create_bucket_is_already_done() {
    let proxy = start().await;
    let listed = as_client(&proxy, json!({"op": "list_buckets"})).await;
    assert_eq!(listed["names"], json!(["jail", "whole"]), "{listed}");
    assert_eq!(listed["dated"], true, "{listed}");
    assert_eq!(listed["owner"], CLIENT, "{listed}");
    // No integration is public: an anonymous ListBuckets is refused.
    let anonymous = request(Method::GET, &proxy.url("/"), &[]).await;
    assert_eq!(
        anonymous.status,
        StatusCode::FORBIDDEN,
        "{}",
        anonymous.text()
    );

    // rclone's CreateBucket before an upload: the bucket is already the caller's.
    let created = as_client(&proxy, json!({"op": "create_bucket"})).await;
    assert_eq!(
        created,
        json!({"status": 409, "code": "BucketAlreadyOwnedByYou"})
    );
    // Not where the client may only read, nor for anyone anonymous.
    let read_only = as_client(&proxy, json!({"op": "create_bucket", "bucket": "whole"})).await;
    assert_eq!(read_only["code"], "AccessDenied", "{read_only}");
    let anonymous = request(Method::PUT, &proxy.url("/jail"), &[]).await;
    assert_eq!(anonymous.status, StatusCode::FORBIDDEN);
    // Other bucket writes stay refused.
    for (method, target, status, code) in [
        (
            Method::DELETE,
            "/jail",
            StatusCode::FORBIDDEN,
            "AccessDenied",
        ),
        (
            Method::PUT,
            "/jail?versioning",
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
        ),
    ] {
        let mut refused = Request::builder()
            .method(method.clone())
            .uri(proxy.url(target))
            .body(Full::new(Bytes::new()))
            .unwrap();
        sign_as_client(&mut refused, CLIENT, CLIENT_SECRET);
        let refused = send(refused).await;
        assert_eq!(
            (refused.status, refused.error_code()),
            (status, code.to_string()),
            "{method} {target}: {}",
            refused.text()
        );
    }
}
