//! The read path end to end, against moto with IAM auth enforced: tenants read their own objects
//! through assumed roles, never each other's; every addressing style and awkward key fetches the
//! right bytes; ranges and conditions pass through; refused requests never reach the upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use http::{Method, StatusCode};

use crate::support::*;

/// A proxy with tenant A's integration (path style, plus a prefixed one) and tenant B's, STS
/// and S3 both straight to moto.
async fn tenant_proxy() -> RunningProxy {
    let moto = moto();
    let endpoint = moto.endpoint();
    let config = format!(
        "{}{}{}{}",
        sts_section(moto, &endpoint, ""),
        role_integration(
            "acme",
            &moto.tenant_a,
            &endpoint,
            "path",
            &moto.tenant_a.external_id,
            ""
        ),
        // Same bucket and role, under a prefix; reached by its name only (the bucket is shared).
        role_integration(
            "acme-labelling",
            &moto.tenant_a,
            &endpoint,
            "path",
            &moto.tenant_a.external_id,
            "prefix = \"labelling\"",
        ),
        role_integration(
            "beta",
            &moto.tenant_b,
            &endpoint,
            "path",
            &moto.tenant_b.external_id,
            ""
        ),
    );
    start_proxy(&config, &secrets(moto)).await
}

#[tokio::test]
async fn each_tenant_reads_its_own_objects_through_its_assumed_role() {
    let proxy = tenant_proxy().await;
    let a = get(&proxy.url("/acme/owner.txt")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.text(), "tenant a\n");
    let b = get(&proxy.url("/beta/owner.txt")).await;
    assert_eq!(b.status, StatusCode::OK, "{}", b.text());
    assert_eq!(b.text(), "tenant b\n");
}

#[tokio::test]
async fn a_scoped_bucket_name_routes_like_the_integration_name() {
    let moto = moto();
    let endpoint = moto.endpoint();
    let config = acme_config(&endpoint, &endpoint, "");
    let proxy = start_proxy(&config, &secrets(moto)).await;
    // s3://tenant-a-media/owner.txt maps to /tenant-a-media/owner.txt as is.
    let fetched = get(&proxy.url(&format!("/{}/owner.txt", moto.tenant_a.bucket))).await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text());
    assert_eq!(fetched.text(), "tenant a\n");
}

#[tokio::test]
async fn a_default_integration_reaches_each_permitted_bucket_by_its_name() {
    let moto = moto();
    let endpoint = moto.endpoint();
    let buckets = format!(
        "default = true\nbuckets = [\"{}\", \"{}\"]",
        moto.tenant_a.bucket, moto.tenant_b.bucket
    );
    let config = format!(
        "{}{}",
        sts_section(moto, &endpoint, ""),
        static_reader_integration("static-default", &buckets, &endpoint),
    );
    let proxy = start_proxy(&config, &secrets(moto)).await;
    let a = get(&proxy.url(&format!("/{}/owner.txt", moto.tenant_a.bucket))).await;
    assert_eq!(
        (a.status, a.text().as_str()),
        (StatusCode::OK, "tenant a\n")
    );
    // The static reader's IAM policy covers only bucket A: moto refuses B, and the proxy passes
    // S3's own error through unchanged.
    let b = get(&proxy.url(&format!("/{}/owner.txt", moto.tenant_b.bucket))).await;
    assert_eq!(b.status, StatusCode::FORBIDDEN, "{}", b.text());
    assert_eq!(b.error_code(), "AccessDenied");
}

#[tokio::test]
async fn a_wrong_external_id_gives_a_clear_error_and_no_object() {
    let moto = moto();
    let endpoint = moto.endpoint();
    let config = format!(
        "{}{}",
        sts_section(moto, &endpoint, ""),
        role_integration(
            "acme",
            &moto.tenant_a,
            &endpoint,
            "path",
            "not-the-external-id",
            ""
        ),
    );
    let proxy = start_proxy(&config, &secrets(moto)).await;
    let fetched = get(&proxy.url("/acme/owner.txt")).await;
    assert_eq!(fetched.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(fetched.error_code(), "ServiceUnavailable");
    let text = fetched.text();
    assert!(
        text.contains("integration acme") && text.contains("AccessDenied"),
        "{text}"
    );
    assert!(!text.contains("tenant a"), "no object content: {text}");
    assert!(
        !text.contains("not-the-external-id"),
        "the ExternalId is not echoed: {text}"
    );
    assert!(fetched.headers.contains_key("x-amz-request-id"));
}

#[tokio::test]
async fn a_role_pointed_at_another_tenants_bucket_is_denied_by_the_store() {
    let moto = moto();
    let endpoint = moto.endpoint();
    // A misconfigured integration: tenant A's role pointed at tenant B's bucket.
    let config = format!(
        "{}{}",
        sts_section(moto, &endpoint, ""),
        IntegrationFixture::tenant("misrouted", &moto.tenant_b, &endpoint)
            .role(&moto.tenant_a.role_arn, &moto.tenant_a.external_id)
            .toml(),
    );
    let proxy = start_proxy(&config, &secrets(moto)).await;
    // moto denies A's role on B's bucket (the role policy), and the proxy passes that on.
    let denied = get(&proxy.url("/misrouted/owner.txt")).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.text());
    assert_eq!(denied.error_code(), "AccessDenied");
    assert!(!denied.text().contains("tenant b"));
}

#[tokio::test]
async fn no_route_leads_out_of_an_integrations_bucket() {
    let moto = moto();
    let s3 = PassThrough::start(moto.address()).await;
    let config = acme_config(&moto.endpoint(), &s3.endpoint(), "");
    let proxy = start_proxy(&config, &secrets(moto)).await;
    let own = get(&proxy.url("/acme/owner.txt")).await;
    assert_eq!(own.text(), "tenant a\n");
    let before = s3.requests();
    assert_eq!(before, 1);
    for path in [
        "/acme/..%2Ftenant-b-media%2Fowner.txt",
        "/acme/%2E%2E/tenant-b-media/owner.txt",
        "/acme//tenant-b-media/owner.txt",
        "/acme%2Ftenant-b-media/owner.txt",
        "/acme%2F..%2Ftenant-b-media/owner.txt",
        "/tenant-b-media/owner.txt",
        "/beta/owner.txt",
    ] {
        let refused = get(&proxy.url(path)).await;
        assert!(
            refused.status.is_client_error(),
            "{path}: {}",
            refused.status
        );
        assert!(!refused.text().contains("tenant b"), "{path}");
    }
    assert_eq!(
        s3.requests(),
        before,
        "refused requests never reach the upstream"
    );
}

#[tokio::test]
async fn path_virtual_host_and_custom_endpoint_fetch_the_same_objects() {
    let moto = moto();
    let endpoint = moto.endpoint();
    let virtual_host_endpoint = format!("http://localhost:{}", moto.port);
    let config = format!(
        "{}{}{}{}",
        sts_section(moto, &endpoint, ""),
        role_integration(
            "by-path",
            &moto.tenant_a,
            &endpoint,
            "path",
            &moto.tenant_a.external_id,
            ""
        ),
        // {bucket}.localhost:PORT: the proxy resolves *.localhost to loopback itself.
        role_integration(
            "by-host",
            &moto.tenant_a,
            &virtual_host_endpoint,
            "virtual-host",
            &moto.tenant_a.external_id,
            "",
        ),
        static_reader_integration(
            "by-static-keys",
            &format!("bucket = \"{}\"", moto.tenant_a.bucket),
            &endpoint,
        ),
    );
    let proxy = start_proxy(&config, &secrets(moto)).await;
    for name in ["by-path", "by-host", "by-static-keys"] {
        for key in ["owner.txt", "unicode/ünïcødé/日本語.txt", "with space.txt"] {
            let fetched = get(&proxy.url(&format!("/{name}/{}", encode(key)))).await;
            assert_eq!(
                fetched.status,
                StatusCode::OK,
                "{name} {key}: {}",
                fetched.text()
            );
            let expected = if key == "owner.txt" {
                b"tenant a\n".to_vec()
            } else {
                body_for(key)
            };
            assert_eq!(fetched.body.as_ref(), expected.as_slice(), "{name} {key}");
        }
    }
}

#[tokio::test]
async fn awkward_keys_fetch_byte_for_byte_with_and_without_a_prefix() {
    let moto = moto();
    let proxy = tenant_proxy().await;
    assert!(moto.awkward_keys.len() >= 10);
    for key in &moto.awkward_keys {
        let fetched = get(&proxy.url(&format!("/acme/{}", encode(key)))).await;
        assert_eq!(
            fetched.status,
            StatusCode::OK,
            "{key:?}: {}",
            fetched.text()
        );
        assert_eq!(fetched.body.as_ref(), body_for(key).as_slice(), "{key:?}");

        let prefixed = get(&proxy.url(&format!("/acme-labelling/{}", encode(key)))).await;
        assert_eq!(
            prefixed.status,
            StatusCode::OK,
            "prefixed {key:?}: {}",
            prefixed.text()
        );
        let mut expected = b"prefixed:".to_vec();
        expected.extend(body_for(key));
        assert_eq!(
            prefixed.body.as_ref(),
            expected.as_slice(),
            "prefixed {key:?}"
        );
    }
    // Keys that only differ in encoding are the same key: `+` is a plus, `%2B` too.
    let plus = get(&proxy.url("/acme/plus+sign.txt")).await;
    assert_eq!(plus.body.as_ref(), body_for("plus+sign.txt").as_slice());
    // The prefix is a directory: `labelling` never reaches the sibling `labelling-other/`.
    let sibling = get(&proxy.url("/acme-labelling/-other/secret.txt")).await;
    assert_eq!(sibling.status, StatusCode::NOT_FOUND);
    assert_eq!(sibling.error_code(), "NoSuchKey");
}

#[tokio::test]
async fn the_virtual_host_front_door_names_the_integration_in_the_host() {
    let moto = moto();
    let endpoint = moto.endpoint();
    let config = format!(
        "[server]\nbase_domain = \"media.test\"\n{}",
        acme_config(&endpoint, &endpoint, "")
    );
    let proxy = start_proxy(&config, &secrets(moto)).await;
    let host = format!("acme.media.test:{}", proxy.address.port());
    let fetched = request(Method::GET, &proxy.url("/owner.txt"), &[("host", &host)]).await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text());
    assert_eq!(fetched.text(), "tenant a\n");
    let unknown = request(
        Method::GET,
        &proxy.url("/owner.txt"),
        &[("host", "nope.media.test")],
    )
    .await;
    assert_eq!(unknown.error_code(), "NoSuchBucket");
}

#[tokio::test]
async fn ranges_and_conditions_pass_through_and_head_has_no_body() {
    let proxy = tenant_proxy().await;
    let url = proxy.url("/acme/media/ranged.bin");
    let pattern = |i: usize| ((i * 7 + 3) % 251) as u8;

    let head = request(Method::HEAD, &url, &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["content-length"], "1048576");
    assert!(head.body.is_empty());
    let etag = head.headers["etag"].to_str().unwrap().to_string();
    let last_modified = head.headers["last-modified"].to_str().unwrap().to_string();

    let partial = request(Method::GET, &url, &[("range", "bytes=1000-1999")]).await;
    assert_eq!(partial.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(partial.headers["content-range"], "bytes 1000-1999/1048576");
    let expected: Vec<u8> = (1000..2000).map(pattern).collect();
    assert_eq!(partial.body.as_ref(), expected.as_slice());

    let suffix = request(Method::GET, &url, &[("range", "bytes=-10")]).await;
    assert_eq!(suffix.status, StatusCode::PARTIAL_CONTENT);
    let expected: Vec<u8> = ((1 << 20) - 10..1 << 20).map(pattern).collect();
    assert_eq!(suffix.body.as_ref(), expected.as_slice());

    let not_modified = request(Method::GET, &url, &[("if-none-match", &etag)]).await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert!(not_modified.body.is_empty());

    let not_modified_since =
        request(Method::GET, &url, &[("if-modified-since", &last_modified)]).await;
    assert_eq!(not_modified_since.status, StatusCode::NOT_MODIFIED);

    let failed = request(Method::GET, &url, &[("if-match", "\"0123456789abcdef\"")]).await;
    assert_eq!(failed.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(failed.error_code(), "PreconditionFailed");

    let matched = request(Method::GET, &url, &[("if-match", &etag)]).await;
    assert_eq!(matched.status, StatusCode::OK);
    assert_eq!(matched.body.len(), 1 << 20);
}

#[tokio::test]
async fn upstream_errors_keep_their_code_and_name_the_proxys_request_id() {
    let proxy = tenant_proxy().await;
    let missing = get(&proxy.url("/acme/no/such/key.txt")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_code(), "NoSuchKey");
    // The id in the document is the one in the header, and it is the proxy's (16 hex digits),
    // so a client's error leads to the proxy's log line.
    let header = missing.headers["x-amz-request-id"].to_str().unwrap();
    let text = missing.text();
    let in_document = text
        .split_once("<RequestId>")
        .and_then(|(_, rest)| rest.split_once("</RequestId>"))
        .map(|(id, _)| id)
        .unwrap_or_else(|| panic!("no RequestId in {text}"));
    assert_eq!(in_document, header);
    assert_eq!(header.len(), 16, "{header}");
    assert!(header.bytes().all(|b| b.is_ascii_hexdigit()), "{header}");
    assert!(!missing.headers.contains_key("x-amz-id-2"));
    // Its log line carries the store's code and the store's own request id.
    let line = wait_for_access_line(header).await;
    assert!(line.contains("upstream_code=\"NoSuchKey\""), "{line}");
    assert!(line.contains("upstream_request_id=\""), "{line}");
    assert!(!line.contains("upstream_request_id=\"-\""), "{line}");

    // A success is the proxy's id too.
    let found = get(&proxy.url("/acme/owner.txt")).await;
    let id = found.headers["x-amz-request-id"].to_str().unwrap();
    assert_ne!(id, header);
    assert_eq!(id.len(), 16, "{id}");
}

/// What reached the store is read off a pass-through in front of it: none of the client's
/// cookies, credentials or `x-amz-*` headers, only the proxy's own signing headers.
#[tokio::test]
async fn client_credentials_cookies_and_amz_headers_are_not_forwarded() {
    let moto = moto();
    let s3 = PassThrough::start(moto.address()).await;
    let config = acme_config(&moto.endpoint(), &s3.endpoint(), "");
    let proxy = start_proxy(&config, &secrets(moto)).await;
    // (A client's Authorization is verified by the front door, see tests/front_door.rs.)
    let fetched = request(
        Method::GET,
        &proxy.url("/acme/owner.txt"),
        &[
            ("x-amz-security-token", "client-supplied-token"),
            ("x-amz-date", "20000101T000000Z"),
            ("cookie", "session=abc"),
            ("x-amz-request-payer", "requester"),
            ("x-amz-copy-source", "/acme/elsewhere.txt"),
            ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
            ("x-amz-expected-bucket-owner", "999999999999"),
        ],
    )
    .await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text());
    assert_eq!(fetched.text(), "tenant a\n");
    for name in fetched.headers.keys() {
        assert_ne!(name.as_str(), "x-amz-security-token");
        assert_ne!(name.as_str(), "set-cookie");
    }
    let received = s3.received.lock().unwrap().clone();
    let (_, headers) = received
        .iter()
        .find(|(path, _)| path.ends_with("/owner.txt"))
        .expect("the GET reached the store");
    assert!(!headers.contains_key("cookie"), "{headers:?}");
    let amz: Vec<&str> = headers
        .keys()
        .map(|name| name.as_str())
        .filter(|name| name.starts_with("x-amz-"))
        .collect();
    for name in &amz {
        assert!(
            ["x-amz-date", "x-amz-content-sha256", "x-amz-security-token"].contains(name),
            "{name} reached the store: {headers:?}"
        );
    }
    assert!(
        amz.contains(&"x-amz-security-token"),
        "the proxy's own token: {headers:?}"
    );
    assert_ne!(headers["x-amz-security-token"], "client-supplied-token");
    assert_ne!(headers["x-amz-date"], "20000101T000000Z");
    let authorization = headers["authorization"].to_str().unwrap();
    assert!(
        authorization.contains("Credential=ASIA"),
        "signed with assumed-role keys"
    );
}

#[tokio::test]
async fn proxy_errors_are_s3_xml_and_never_reach_the_upstream() {
    let moto = moto();
    let s3 = PassThrough::start(moto.address()).await;
    let sts = PassThrough::start(moto.address()).await;
    let config = format!(
        "{}{}",
        acme_config(&sts.endpoint(), &s3.endpoint(), ""),
        IntegrationFixture::new("private", "private-bucket")
            .set("endpoint", s3.endpoint())
            .set(
                "credentials",
                toml::Table::from_iter([(
                    "role_arn".to_string(),
                    toml::Value::from("arn:aws:iam::123456789012:role/tenant-a-reader"),
                )]),
            )
            .toml(),
    );
    let proxy = start_proxy(&config, &secrets(moto)).await;
    let cases: &[(Method, &str, u16, &str)] = &[
        (Method::GET, "/nobody/key", 404, "NoSuchBucket"),
        (Method::GET, "/private/key", 403, "AccessDenied"),
        (Method::PUT, "/acme/key", 403, "AccessDenied"),
        (Method::DELETE, "/acme/key", 403, "AccessDenied"),
        (Method::POST, "/acme/key?restore", 501, "NotImplemented"),
        (Method::PUT, "/new-bucket", 403, "AccessDenied"),
        (Method::PATCH, "/acme/key", 405, "MethodNotAllowed"),
        (Method::GET, "/acme/a/../b", 400, "InvalidArgument"),
        (Method::GET, "/acme/a%00b", 400, "InvalidArgument"),
        (Method::GET, "/acme/a%ZZ", 400, "InvalidArgument"),
        (Method::GET, "/acme/key?acl", 501, "NotImplemented"),
        // Listing needs a client, even on a public integration.
        (Method::GET, "/acme/", 403, "AccessDenied"),
        (Method::GET, "/acme?policy", 501, "NotImplemented"),
        (Method::GET, "/Bad_Bucket/key", 400, "InvalidBucketName"),
    ];
    for (method, path, status, code) in cases {
        let fetched = request(method.clone(), &proxy.url(path), &[]).await;
        assert_eq!(
            fetched.status.as_u16(),
            *status,
            "{method} {path}: {}",
            fetched.text()
        );
        assert_eq!(fetched.error_code(), *code, "{method} {path}");
        assert_eq!(fetched.headers["content-type"], "application/xml");
        let id = fetched.headers["x-amz-request-id"].to_str().unwrap();
        assert!(
            fetched
                .text()
                .contains(&format!("<RequestId>{id}</RequestId>"))
        );
    }
    let head = request(Method::HEAD, &proxy.url("/nobody/key"), &[]).await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    assert!(head.body.is_empty());
    assert_eq!(s3.requests(), 0, "no refused request reached S3");
    assert_eq!(sts.requests(), 0, "no refused request fetched credentials");
}
