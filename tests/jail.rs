//! The jail against a tenant who attacks it: DeleteObjects bodies spelled every way an XML
//! parser reads, `x-amz-*` headers nobody signed, and active content on the shared origin.
//! Every effect is checked on the store itself with the tenant's own role, not only by the
//! status the proxy answers. Runs against moto with IAM auth enforced, in a bucket of its own
//! (tenant j's), so the whole-bucket listings that look for an escaped write see no other
//! test's objects.
// This file tampers with a signed URL as text on purpose. .clippy.toml's ban on editing text is
// for the proxy's own code.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;

use crate::support::*;

const WRITER: &str = "AKPROXYJAILWRITER";
const WRITER_SECRET: &str = "jail-writer-secret-41d7";

/// One bucket, two tenants under two prefixes; the client may write only the first.
async fn start() -> RunningProxy {
    let moto = moto();
    let w = &moto.tenant_j;
    let tenant = role_integration(
        "tenant",
        w,
        &moto.endpoint(),
        "path",
        &w.external_id,
        "public = true\naccess = \"read-write\"\nprefix = \"tenant-prefix\"",
    );
    let other = role_integration(
        "other",
        w,
        &moto.endpoint(),
        "path",
        &w.external_id,
        "public = false\naccess = \"read-write\"\nprefix = \"other-tenant\"",
    );
    let clients = ClientFixture::toml(&[ClientFixture::new(
        WRITER,
        "WRITER_SECRET",
        &["tenant"],
        "read-write",
    )]);
    let config = format!(
        "{}{tenant}{other}{clients}",
        sts_section(moto, &moto.endpoint(), "")
    );
    let mut secrets = secrets(moto);
    secrets.insert("WRITER_SECRET".into(), WRITER_SECRET.into());
    start_proxy(&config, &secrets).await
}

/// A signed request as an SDK sends it, with `extra` headers added after signing (unsigned).
async fn signed(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    unsigned: &[(&str, &str)],
) -> Fetched {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder
        .header("content-length", body.len())
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    sign_as_client(&mut request, WRITER, WRITER_SECRET);
    for (name, value) in unsigned {
        let name: http::HeaderName = name.parse().unwrap();
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    send(request).await
}

async fn delete_objects(proxy: &RunningProxy, body: &[u8]) -> Fetched {
    let md5 = content_md5(body);
    signed(
        Method::POST,
        &proxy.url("/tenant?delete"),
        &[("content-md5", &md5)],
        body,
        &[],
    )
    .await
}

fn exists(objects: &serde_json::Value, key: &str) -> bool {
    objects.get(key).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_objects_cannot_name_a_key_outside_the_prefix_however_it_is_spelled() {
    let proxy = start().await;
    let w = &moto().tenant_j;
    store_put(w, "other-tenant/secret.txt", "the other tenant's").await;
    store_put(w, "root.txt", "at the bucket root").await;
    store_put(w, "tenant-prefix/mine.txt", "the tenant's own").await;

    // Spellings a real XML parser reads as <Key>: each must mean a key under the prefix.
    let readable = [
        "<Delete><Object><Key >other-tenant/secret.txt</Key ></Object></Delete>",
        "<Delete><Object><Key\t>other-tenant/secret.txt</Key\t></Object></Delete>",
        "<Delete><Object><Key\n>root.txt</Key\n></Object></Delete>",
        "\u{FEFF}<Delete><Object><Key>root.txt</Key></Object></Delete>",
        "<Delete><Object><Key><![CDATA[other-tenant/secret.txt]]></Key></Object></Delete>",
        "<Delete><Object><Key>&#114;oot.txt</Key></Object></Delete>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Object><Key>root.txt</Key></Object></Delete>",
    ];
    let mut served = 0;
    for body in readable {
        let answer = delete_objects(&proxy, body.as_bytes()).await;
        assert_eq!(answer.status, StatusCode::OK, "{body:?}: {}", answer.text());
        let text = answer.text();
        assert!(
            !text.contains("tenant-prefix") && !text.contains(&w.bucket),
            "{text}"
        );
        served += 1;
    }
    // Spellings S3's schema does not have, and keys the URL check refuses: all refused whole.
    let refused = [
        "<Delete><Object><Key id=\"x\">root.txt</Key></Object></Delete>",
        "<s3:Delete xmlns:s3=\"http://s3.amazonaws.com/doc/2006-03-01/\"><s3:Object><s3:Key>root.txt</s3:Key></s3:Object></s3:Delete>",
        "<Delete xmlns:s3=\"urn:x\"><Object><Key>root.txt</Key></Object></Delete>",
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><Delete><Object><Key>root.txt</Key></Object></Delete>",
        "<!DOCTYPE Delete [<!ENTITY k \"root.txt\">]><Delete><Object><Key>&k;</Key></Object></Delete>",
        "<Delete><Object><Key>mine.txt</Key><Key>root.txt</Key></Object></Delete>",
        "<Delete><Object><Key>../root.txt</Key></Object></Delete>",
        "<Delete><Object><Key>/root.txt</Key></Object></Delete>",
        "<Delete><Object><Key>a</Key></Object><Object><Key>x/../../root.txt</Key></Object></Delete>",
        "<Delete><Object><Key>root.txt</Object></Delete>",
    ];
    for body in refused {
        let answer = delete_objects(&proxy, body.as_bytes()).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body:?}: {}",
            answer.text()
        );
        assert!(
            ["MalformedXML", "InvalidArgument"].contains(&answer.error_code().as_str()),
            "{body:?}: {}",
            answer.text()
        );
    }
    let objects = store_objects(w).await;
    for key in [
        "other-tenant/secret.txt",
        "root.txt",
        "tenant-prefix/mine.txt",
    ] {
        assert!(
            exists(&objects, key),
            "{key} is gone from the store: {objects}"
        );
    }

    // A well-formed request in any spelling still deletes the tenant's own key.
    let answer = delete_objects(
        &proxy,
        b"<Delete><Quiet>false</Quiet><Object><Key >mine.txt</Key ></Object></Delete>",
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert!(
        answer.text().contains("<Key>mine.txt</Key>"),
        "{}",
        answer.text()
    );
    let objects = store_objects(w).await;
    assert!(!exists(&objects, "tenant-prefix/mine.txt"), "{objects}");
    assert!(exists(&objects, "other-tenant/secret.txt") && exists(&objects, "root.txt"));
    assert_eq!(served, readable.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_amz_headers_are_refused_and_change_nothing_on_the_store() {
    let proxy = start().await;
    let w = &moto().tenant_j;
    store_put(w, "tenant-prefix/private/secret.txt", "the secret").await;

    // A presigned upload URL with an unsigned copy source: S3 refuses it, and so do we.
    let upload = presign(
        Method::PUT,
        &proxy.url("/tenant/uploads/a.txt"),
        WRITER,
        WRITER_SECRET,
    );
    let mut request = Request::builder()
        .method(Method::PUT)
        .uri(&upload)
        .header("content-length", 0)
        .header("x-amz-copy-source", "/tenant/private/secret.txt")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = send(request).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text());
    assert_eq!(answer.error_code(), "AccessDenied");
    assert!(
        answer.text().contains("x-amz-copy-source"),
        "{}",
        answer.text()
    );

    // The same URL used as meant still uploads.
    request = Request::builder()
        .method(Method::PUT)
        .uri(&upload)
        .header("content-length", 6)
        .body(Full::new(Bytes::from_static(b"upload")))
        .unwrap();
    let answer = send(request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());

    // A header-signed PUT replayed with an added copy source, storage class, metadata, tags.
    for (name, value) in [
        ("x-amz-copy-source", "/tenant/private/secret.txt"),
        ("x-amz-storage-class", "GLACIER"),
        ("x-amz-meta-planted", "yes"),
        ("x-amz-tagging", "planted=yes"),
    ] {
        let answer = signed(
            Method::PUT,
            &proxy.url("/tenant/replayed.txt"),
            &[],
            b"",
            &[(name, value)],
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{name}: {}",
            answer.text()
        );
        assert_eq!(answer.error_code(), "AccessDenied", "{name}");
    }

    // A presigned UploadPart cannot become UploadPartCopy.
    let created = signed(
        Method::POST,
        &proxy.url("/tenant/parts.bin?uploads"),
        &[],
        b"",
        &[],
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let text = created.text();
    let upload_id = text
        .split_once("<UploadId>")
        .and_then(|(_, rest)| rest.split_once("</UploadId>"))
        .map(|(id, _)| id.to_string())
        .expect("an upload id");
    let part = presign(
        Method::PUT,
        &proxy.url(&format!(
            "/tenant/parts.bin?partNumber=1&uploadId={upload_id}"
        )),
        WRITER,
        WRITER_SECRET,
    );
    let request = Request::builder()
        .method(Method::PUT)
        .uri(&part)
        .header("content-length", 0)
        .header("x-amz-copy-source", "/tenant/private/secret.txt")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = send(request).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text());

    // Signed, the same headers take effect: the refusals above were about the signature.
    let answer = signed(
        Method::PUT,
        &proxy.url("/tenant/signed-meta.txt"),
        &[("x-amz-meta-agreed", "yes")],
        b"meta",
        &[],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());

    let objects = store_objects(w).await;
    assert_eq!(
        objects["tenant-prefix/uploads/a.txt"]["body"], "upload",
        "{objects}"
    );
    assert!(!exists(&objects, "tenant-prefix/replayed.txt"), "{objects}");
    assert_eq!(
        objects["tenant-prefix/signed-meta.txt"]["metadata"]["agreed"], "yes",
        "{objects}"
    );
    for (key, object) in objects.as_object().unwrap() {
        assert_ne!(object["storage_class"], "GLACIER", "{key}");
        assert!(object["metadata"].get("planted").is_none(), "{key}");
        assert!(object["tags"].get("planted").is_none(), "{key}");
        if key != "tenant-prefix/private/secret.txt" {
            assert_ne!(
                object["body"], "the secret",
                "{key} holds a copy of the secret"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_amz_headers_are_dropped_and_active_types_are_sandboxed() {
    let proxy = start().await;
    let w = &moto().tenant_j;
    store_put(w, "tenant-prefix/page.txt", "<script>alert(1)</script>").await;

    // An anonymous reader's copy source makes no copy: an anonymous PUT is still refused.
    let answer = request(
        Method::PUT,
        &proxy.url("/tenant/copied.txt"),
        &[
            ("x-amz-copy-source", "/tenant/page.txt"),
            ("content-length", "0"),
        ],
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text());
    let answer = request(
        Method::GET,
        &proxy.url("/tenant/page.txt"),
        &[("x-amz-copy-source", "/tenant/page.txt")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());

    // Types a browser runs script in, however they are spelled, get the sandbox. Uploaded by
    // the tenant's client, served to anonymous readers.
    for content_type in [
        "text/plain, text/html",
        "application/rss+xml",
        "application/mathml+xml",
        "Text/HTML ; charset=utf-8",
    ] {
        let answer = signed(
            Method::PUT,
            &proxy.url("/tenant/active.bin"),
            &[("content-type", content_type)],
            b"<html><script>alert(1)</script></html>",
            &[],
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        let served = get(&proxy.url("/tenant/active.bin")).await;
        assert_eq!(served.status, StatusCode::OK);
        assert_eq!(
            served
                .headers
                .get("content-security-policy")
                .map(|v| v.to_str().unwrap()),
            Some("sandbox"),
            "{content_type} served as {:?}",
            served.headers.get("content-type")
        );
    }
    let plain = get(&proxy.url("/tenant/page.txt")).await;
    assert!(plain.headers.get("content-security-policy").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presigned_url_with_an_encoded_parameter_name_is_still_browser_reachable() {
    let proxy = start().await;
    let w = &moto().tenant_j;
    store_put(w, "tenant-prefix/override.txt", "hello").await;
    // Percent-encoding a parameter name changes nothing the verifier reads, so the
    // response-content-type override check must see a presigned request all the same.
    let url = presign(
        Method::GET,
        &proxy.url("/tenant/override.txt?response-content-type=text%2Fhtml"),
        WRITER,
        WRITER_SECRET,
    );
    let encoded = url.replace("X-Amz-Signature=", "X-Amz-%53ignature=");
    assert_ne!(url, encoded);
    for url in [url, encoded] {
        let answer = get(&url).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{url}: {}",
            answer.text()
        );
        assert_eq!(answer.error_code(), "AccessDenied");
    }
}
