//! A rewritten body stays bound to its signature. The proxy reads a client's DeleteObjects or
//! CompleteMultipartUpload document and sends one of its own, so every digest the client sent
//! for its body is checked first: for SigV2 and presigned requests a signed `Content-MD5` may
//! be all that binds the body. Each signing form is captured by botocore's own signers
//! (`sign_request.py`) and replayed with another body; the effect is read on moto with the
//! tenant's own role, and the pass-through shows refused replays never reach it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::json;

use crate::support::*;

const WRITER: &str = "AKPROXYMD5WRITER";
const WRITER_SECRET: &str = "md5-writer-secret-4c3b2a";
const FORMS: [&str; 4] = ["v4-header", "v4-query", "v2-header", "v2-query"];

struct Bound {
    proxy: RunningProxy,
    s3: PassThrough,
}

/// Tenant W's bucket through the prefix `md5/`, read-write for one client that may sign
/// SigV2 as well as SigV4.
async fn start() -> Bound {
    let moto = moto();
    let s3 = PassThrough::start(moto.address()).await;
    let w = &moto.tenant_w;
    let integration = role_integration(
        "md5",
        w,
        &s3.endpoint(),
        "path",
        &w.external_id,
        "public = false\naccess = \"read-write\"\nprefix = \"md5\"",
    );
    let writer = ClientFixture::new(WRITER, "MD5_WRITER_SECRET", &["md5"], "read-write");
    let config = format!(
        "{}{integration}{}",
        sts_section(moto, &moto.endpoint(), ""),
        ClientFixture::toml(&[writer])
    );
    let mut secrets = secrets(moto);
    secrets.insert("MD5_WRITER_SECRET".into(), WRITER_SECRET.into());
    Bound {
        proxy: start_proxy(&config, &secrets).await,
        s3,
    }
}

/// A request as botocore signs it in `form` over `signed_body` (with its Content-MD5 unless
/// `content_md5` is false): the URL and the headers, to be sent with any body.
async fn capture(
    form: &str,
    method: &str,
    url: &str,
    signed_body: &str,
    content_md5: bool,
) -> (String, Vec<(String, String)>) {
    let signed = python_json(
        "sign_request.py",
        json!({
            "key": WRITER, "secret": WRITER_SECRET, "form": form, "method": method,
            "url": url, "body": signed_body, "content_md5": content_md5,
        }),
    )
    .await;
    let headers = signed["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, value)| (name.clone(), value.as_str().unwrap().to_string()))
        .collect();
    (signed["url"].as_str().unwrap().to_string(), headers)
}

async fn send_with(method: Method, url: &str, headers: &[(String, String)], body: &str) -> Fetched {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let request = builder
        .header("content-length", body.len())
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    send(request).await
}

fn delete_document(key: &str) -> String {
    format!("<Delete><Object><Key>{key}</Key></Object></Delete>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_delete_objects_body_is_refused_in_every_signing_form() {
    let bound = start().await;
    let w = &moto().tenant_w;
    for form in FORMS {
        let (keep, victim) = (format!("keep-{form}.txt"), format!("victim-{form}.txt"));
        store_put(w, &format!("md5/{keep}"), "signed for deletion").await;
        store_put(w, &format!("md5/{victim}"), "never signed for").await;
        let (url, headers) = capture(
            form,
            "POST",
            &bound.proxy.url("/md5/?delete"),
            &delete_document(&keep),
            true,
        )
        .await;
        if form == "v4-query" {
            assert!(url.contains("content-md5"), "Content-MD5 is signed: {url}");
        }
        let before = bound.s3.requests();
        let replay = send_with(Method::POST, &url, &headers, &delete_document(&victim)).await;
        assert_eq!(
            (replay.status, replay.error_code().as_str()),
            (StatusCode::BAD_REQUEST, "BadDigest"),
            "{form}: {}",
            replay.text()
        );
        assert_eq!(
            bound.s3.requests(),
            before,
            "{form}: a replay never reaches the store"
        );

        // The body that was signed is served: the refusal above is the digest's, not the form's.
        let original = send_with(Method::POST, &url, &headers, &delete_document(&keep)).await;
        assert_eq!(
            original.status,
            StatusCode::OK,
            "{form}: {}",
            original.text()
        );
        let objects = store_objects_under(w, "md5/").await;
        assert!(
            objects.get(format!("md5/{victim}")).is_some(),
            "{form}: {objects}"
        );
        assert!(
            objects.get(format!("md5/{keep}")).is_none(),
            "{form}: {objects}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_objects_bound_by_nothing_is_refused_as_s3_refuses_it() {
    let bound = start().await;
    let w = &moto().tenant_w;
    store_put(w, "md5/unbound.txt", "stays").await;
    let before = bound.s3.requests();
    for form in ["v2-header", "v2-query", "v4-query", "v4-header"] {
        let (url, headers) = capture(
            form,
            "POST",
            &bound.proxy.url("/md5/?delete"),
            &delete_document("unbound.txt"),
            false,
        )
        .await;
        let answer = send_with(
            Method::POST,
            &url,
            &headers,
            &delete_document("unbound.txt"),
        )
        .await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (StatusCode::BAD_REQUEST, "InvalidRequest"),
            "{form}: {}",
            answer.text()
        );
        assert!(answer.text().contains("Content-MD5"), "{}", answer.text());
    }
    // A checksum header binds it as well as Content-MD5 does; a wrong one is BadDigest.
    let body = delete_document("unbound.txt");
    let mut crc = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32IsoHdlc);
    crc.update(body.as_bytes());
    let good = aws_smithy_types::base64::encode((crc.finalize() as u32).to_be_bytes());
    let wrong = aws_smithy_types::base64::encode(((crc.finalize() as u32) ^ 1).to_be_bytes());
    let with_crc = |value: &str| {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(bound.proxy.url("/md5/?delete"))
            .header("content-length", body.len())
            .header("x-amz-checksum-crc32", value)
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        sign_as_client(&mut request, WRITER, WRITER_SECRET);
        request
    };
    let refused = send(with_crc(&wrong)).await;
    assert_eq!(refused.error_code(), "BadDigest", "{}", refused.text());
    assert_eq!(
        bound.s3.requests(),
        before,
        "refusals never reach the store"
    );
    assert!(
        store_objects_under(w, "md5/")
            .await
            .get("md5/unbound.txt")
            .is_some()
    );
    let served = send(with_crc(&good)).await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.text());
    assert!(
        store_objects_under(w, "md5/")
            .await
            .get("md5/unbound.txt")
            .is_none()
    );
}

/// Starts a multipart upload through the proxy with a 5 MiB part and a small one, and returns
/// its upload id and the parts' ETags.
async fn two_part_upload(bound: &Bound, key: &str) -> (String, Vec<String>) {
    let signed = |method: Method, path: String, body: Vec<u8>| {
        let mut request = Request::builder()
            .method(method)
            .uri(bound.proxy.url(&path))
            .header("content-length", body.len())
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        sign_as_client(&mut request, WRITER, WRITER_SECRET);
        send(request)
    };
    let created = signed(Method::POST, format!("/md5/{key}?uploads"), Vec::new()).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let text = created.text();
    let upload_id = text
        .split_once("<UploadId>")
        .and_then(|(_, rest)| rest.split_once("</UploadId>"))
        .unwrap()
        .0
        .to_string();
    let mut etags = Vec::new();
    for (number, body) in [(1, vec![b'a'; 5 << 20]), (2, b"the last part".to_vec())] {
        let part = signed(
            Method::PUT,
            format!("/md5/{key}?partNumber={number}&uploadId={upload_id}"),
            body,
        )
        .await;
        assert_eq!(part.status, StatusCode::OK, "{}", part.text());
        etags.push(part.headers["etag"].to_str().unwrap().to_string());
    }
    (upload_id, etags)
}

fn complete_document(etags: &[String]) -> String {
    let parts: String = etags
        .iter()
        .enumerate()
        .map(|(i, etag)| {
            format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{etag}</ETag></Part>",
                i + 1
            )
        })
        .collect();
    format!("<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_multipart_upload_replayed_with_fewer_parts_is_refused() {
    let bound = start().await;
    let w = &moto().tenant_w;
    for form in ["v2-header", "v4-query"] {
        let key = format!("complete-{form}.bin");
        let (upload_id, etags) = two_part_upload(&bound, &key).await;
        let url = bound.proxy.url(&format!("/md5/{key}?uploadId={upload_id}"));
        let (url, headers) = capture(form, "POST", &url, &complete_document(&etags), true).await;
        let before = bound.s3.requests();
        let truncated = send_with(
            Method::POST,
            &url,
            &headers,
            &complete_document(&etags[..1]),
        )
        .await;
        assert_eq!(
            (truncated.status, truncated.error_code().as_str()),
            (StatusCode::BAD_REQUEST, "BadDigest"),
            "{form}: {}",
            truncated.text()
        );
        assert_eq!(bound.s3.requests(), before, "{form}");
        assert!(
            store_objects_under(w, "md5/")
                .await
                .get(format!("md5/{key}"))
                .is_none()
        );

        let whole = send_with(Method::POST, &url, &headers, &complete_document(&etags)).await;
        assert_eq!(whole.status, StatusCode::OK, "{form}: {}", whole.text());
        let objects = store_objects_under(w, "md5/").await;
        assert_eq!(
            objects[format!("md5/{key}")]["size"],
            (5 << 20) + "the last part".len(),
            "{form}: the whole object, both parts"
        );
    }
}
