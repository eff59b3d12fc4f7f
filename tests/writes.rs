//! Writes through the proxy against moto with IAM auth enforced: objects land under the
//! integration's prefix, multipart uploads by the AWS CLI round-trip byte for byte, copies stay
//! inside one integration, and every write without read-write on both sides is refused before
//! the upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use http::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

const WRITER: &str = "AKPROXYWRITER";
const WRITER_SECRET: &str = "writer-secret-5e6f";
const READER: &str = "AKPROXYREADER";
const READER_SECRET: &str = "reader-secret-7a8b";

struct Writes {
    proxy: RunningProxy,
    s3: PassThrough,
}

impl Writes {
    async fn start() -> Writes {
        let moto = moto();
        let s3 = PassThrough::start(moto.address()).await;
        let w = &moto.tenant_w;
        let uploads = role_integration(
            "w-uploads",
            w,
            &s3.endpoint(),
            "path",
            &w.external_id,
            "public = false\naccess = \"read-write\"\nprefix = \"uploads\"",
        );
        // The same bucket without a prefix, read-only: shows where writes really landed.
        let root = role_integration(
            "w-root",
            w,
            &s3.endpoint(),
            "path",
            &w.external_id,
            "public = false",
        );
        let acme = role_integration(
            "acme",
            &moto.tenant_a,
            &s3.endpoint(),
            "path",
            &moto.tenant_a.external_id,
            "public = true",
        );
        // Tenant A's seeded bucket seen through a prefix: its listing must show only that.
        let labelling = role_integration(
            "acme-labelling",
            &moto.tenant_a,
            &s3.endpoint(),
            "path",
            &moto.tenant_a.external_id,
            "public = false\nprefix = \"labelling\"",
        );
        let everything = ["w-uploads", "w-root", "acme", "acme-labelling"];
        let clients = ClientFixture::toml(&[
            ClientFixture::new(WRITER, "WRITER_SECRET", &everything, "read-write"),
            ClientFixture::new(READER, "READER_SECRET", &["w-uploads"], "read-only"),
        ]);
        let config = format!(
            "{}{uploads}{root}{acme}{labelling}{clients}",
            sts_section(moto, &moto.endpoint(), "")
        );
        let mut secrets = secrets(moto);
        secrets.insert("WRITER_SECRET".into(), WRITER_SECRET.into());
        secrets.insert("READER_SECRET".into(), READER_SECRET.into());
        Writes {
            proxy: start_proxy(&config, &secrets).await,
            s3,
        }
    }

    async fn boto3(&self, key: &str, secret: &str, op: serde_json::Value) -> serde_json::Value {
        boto3_as(&self.endpoint(), (key, secret), "path", op).await
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.proxy.address.port())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_delete_round_trip_lands_under_the_prefix() {
    let writes = Writes::start().await;
    let key = "dir/awkward key+1 ü.txt";
    let data = "written through the proxy\n";
    let put = writes
        .boto3(WRITER, WRITER_SECRET, json!({"op": "put", "bucket": "w-uploads", "object": key, "data": data, "metadata": {"owner": "tenant-w"}}))
        .await;
    assert!(put["etag"].is_string(), "{put}");
    let back = writes
        .boto3(
            WRITER,
            WRITER_SECRET,
            json!({"op": "get", "bucket": "w-uploads", "object": key}),
        )
        .await;
    assert_eq!(back["body"], data);
    let meta = writes
        .boto3(
            WRITER,
            WRITER_SECRET,
            json!({"op": "head_meta", "bucket": "w-uploads", "object": key}),
        )
        .await;
    assert_eq!(meta["metadata"], json!({"owner": "tenant-w"}));
    // Upstream, the key is the prefix followed by the client's key.
    let upstream = writes
        .boto3(
            WRITER,
            WRITER_SECRET,
            json!({"op": "get", "bucket": "w-root", "object": format!("uploads/{key}")}),
        )
        .await;
    assert_eq!(upstream["body"], data);

    let deleted = writes
        .boto3(
            WRITER,
            WRITER_SECRET,
            json!({"op": "delete", "bucket": "w-uploads", "object": key}),
        )
        .await;
    assert_eq!(deleted["status"], 204, "{deleted}");
    let gone = writes
        .boto3(
            WRITER,
            WRITER_SECRET,
            json!({"op": "get", "bucket": "w-uploads", "object": key}),
        )
        .await;
    assert_eq!(gone, json!({"status": 404, "code": "NoSuchKey"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_read_write_on_both_sides_and_are_refused_before_the_upstream() {
    let writes = Writes::start().await;
    let before = writes.s3.requests();
    let put = |key: &'static str, secret: &'static str, bucket: &'static str| {
        writes.boto3(
            key,
            secret,
            json!({"op": "put", "bucket": bucket, "object": "refused.txt", "data": "x"}),
        )
    };
    // A read-only client on a read-write integration; a read-write client on read-only ones.
    for (key, secret, bucket) in [
        (READER, READER_SECRET, "w-uploads"),
        (WRITER, WRITER_SECRET, "w-root"),
        (WRITER, WRITER_SECRET, "acme"),
    ] {
        assert_eq!(
            put(key, secret, bucket).await,
            json!({"status": 403, "code": "AccessDenied"}),
            "{key} {bucket}"
        );
    }
    let anonymous = request(
        Method::PUT,
        &writes.proxy.url("/acme/anonymous.txt"),
        &[("content-length", "0")],
    )
    .await;
    assert_eq!(
        (anonymous.status, anonymous.error_code().as_str()),
        (StatusCode::FORBIDDEN, "AccessDenied")
    );
    let create_bucket = request(
        Method::PUT,
        &writes.proxy.url("/new-bucket"),
        &[("content-length", "0")],
    )
    .await;
    assert_eq!(
        (create_bucket.status, create_bucket.error_code().as_str()),
        (StatusCode::FORBIDDEN, "AccessDenied")
    );
    let delete_bucket = request(Method::DELETE, &writes.proxy.url("/w-uploads"), &[]).await;
    assert_eq!(delete_bucket.error_code(), "AccessDenied");
    assert_eq!(
        writes.s3.requests(),
        before,
        "no refused write reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cli_multipart_upload_and_download_are_byte_identical() {
    let writes = Writes::start().await;
    let dir = TempDir::new("multipart");
    let source = dir.0.join("source.bin");
    // 20 MiB: over the CLI's 8 MiB threshold, so it uploads in parts and downloads in ranges.
    let mut state: u32 = 0x1234_5678;
    let bytes: Vec<u8> = (0..20 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect();
    std::fs::write(&source, &bytes).unwrap();
    let endpoint = writes.endpoint();
    let aws = |args: &[&str]| {
        let mut command = aws_cli_as(&dir.0, &endpoint, (WRITER, WRITER_SECRET));
        command.args(args);
        command
    };
    let source_text = source.display().to_string();
    let up = aws(&["s3", "cp", &source_text, "s3://w-uploads/big/file one.bin"])
        .output()
        .await
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let target = dir.0.join("back.bin").display().to_string();
    let down = aws(&["s3", "cp", "s3://w-uploads/big/file one.bin", &target])
        .output()
        .await
        .unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let back = std::fs::read(&target).unwrap();
    assert_eq!(back.len(), bytes.len());
    assert!(back == bytes, "the object came back byte-identical");
    // It was a multipart object: its ETag says how many parts.
    let head = aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "w-uploads",
        "--key",
        "big/file one.bin",
    ])
    .output()
    .await
    .unwrap();
    let head: serde_json::Value = serde_json::from_slice(&head.stdout).unwrap();
    assert!(
        head["ETag"].as_str().unwrap().contains('-'),
        "multipart ETag: {head}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_stay_inside_one_integration() {
    let writes = Writes::start().await;
    let put = writes
        .boto3(WRITER, WRITER_SECRET, json!({"op": "put", "bucket": "w-uploads", "object": "original.txt", "data": "copy me\n"}))
        .await;
    assert!(put["etag"].is_string(), "{put}");
    let copied = writes
        .boto3(
            WRITER,
            WRITER_SECRET,
            json!({"op": "copy", "bucket": "w-uploads", "object": "copies/copy 1.txt", "source_bucket": "w-uploads", "source_object": "original.txt"}),
        )
        .await;
    assert_eq!(copied["status"], 200, "{copied}");
    let back = writes
        .boto3(
            WRITER,
            WRITER_SECRET,
            json!({"op": "get", "bucket": "w-uploads", "object": "copies/copy 1.txt"}),
        )
        .await;
    assert_eq!(back["body"], "copy me\n");

    let before = writes.s3.requests();
    let across = writes
        .boto3(
            WRITER,
            WRITER_SECRET,
            json!({"op": "copy", "bucket": "w-uploads", "object": "stolen.txt", "source_bucket": "acme", "source_object": "owner.txt"}),
        )
        .await;
    assert_eq!(across, json!({"status": 501, "code": "NotImplemented"}));
    assert_eq!(
        writes.s3.requests(),
        before,
        "the refused copy never reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_show_only_the_integrations_keys_with_the_prefix_stripped() {
    let writes = Writes::start().await;
    let moto = moto();
    let mut expected: Vec<String> = moto.awkward_keys.clone();
    expected.sort();
    for (version, page_size, encoding) in [
        (2, 1000, None),
        (2, 3, None),
        (1, 4, None),
        (2, 5, Some("url")),
    ] {
        let mut op = json!({"op": "list", "bucket": "acme-labelling", "version": version, "page_size": page_size});
        if let Some(encoding) = encoding {
            op["encoding"] = json!(encoding);
        }
        let listed = writes.boto3(WRITER, WRITER_SECRET, op).await;
        let mut keys: Vec<String> =
            serde_json::from_value(listed["keys"].clone()).unwrap_or_else(|_| panic!("{listed}"));
        if encoding.is_some() {
            // Asked for explicitly, URL-encoded keys come back as they are: decode them here.
            keys = keys
                .iter()
                .map(|k| {
                    percent_encoding::percent_decode_str(k)
                        .decode_utf8()
                        .unwrap()
                        .into_owned()
                })
                .collect();
        }
        keys.sort();
        assert_eq!(
            keys, expected,
            "v{version} page {page_size} {encoding:?}: {listed}"
        );
        assert_eq!(
            listed["names"],
            json!(["acme-labelling"]),
            "the real bucket name never shows"
        );
        if page_size < 10 {
            assert!(
                listed["pages"].as_u64().unwrap() > 2,
                "continuation round-trips: {listed}"
            );
        }
    }
    let folders = writes
        .boto3(WRITER, WRITER_SECRET, json!({"op": "list", "bucket": "acme-labelling", "prefix": "unicode/", "delimiter": "/"}))
        .await;
    assert_eq!(
        folders["prefixes"],
        json!(["unicode/ünïcødé/"]),
        "{folders}"
    );
    assert_eq!(folders["keys"], json!([]));

    // The AWS CLI's `ls` sees the same tree.
    let dir = TempDir::new("ls");
    let ls = aws_cli_as(&dir.0, &writes.endpoint(), (WRITER, WRITER_SECRET))
        .args(["s3", "ls", "s3://acme-labelling/", "--recursive"])
        .output()
        .await
        .unwrap();
    let listing = String::from_utf8_lossy(&ls.stdout);
    assert!(
        ls.status.success(),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    assert_eq!(listing.lines().count(), expected.len(), "{listing}");
    assert!(listing.contains(" unicode/ünïcødé/日本語.txt"), "{listing}");
    assert!(!listing.contains("labelling"), "{listing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_objects_maps_keys_under_the_prefix_and_back() {
    let writes = Writes::start().await;
    for key in ["batch/one.txt", "batch/two & three.txt", "batch/keep.txt"] {
        let put = writes
            .boto3(
                WRITER,
                WRITER_SECRET,
                json!({"op": "put", "bucket": "w-uploads", "object": key, "data": key}),
            )
            .await;
        assert!(put["etag"].is_string(), "{put}");
    }
    let deleted = writes
        .boto3(
            WRITER,
            WRITER_SECRET,
            json!({"op": "delete_many", "bucket": "w-uploads", "objects": ["batch/one.txt", "batch/two & three.txt"]}),
        )
        .await;
    assert_eq!(
        deleted["deleted"],
        json!(["batch/one.txt", "batch/two & three.txt"]),
        "{deleted}"
    );
    assert_eq!(deleted["errors"], json!([]));
    let left = writes
        .boto3(
            WRITER,
            WRITER_SECRET,
            json!({"op": "list", "bucket": "w-uploads", "prefix": "batch/"}),
        )
        .await;
    assert_eq!(left["keys"], json!(["batch/keep.txt"]), "{left}");
    // The upstream keys were the prefixed ones.
    let upstream = writes
        .boto3(
            WRITER,
            WRITER_SECRET,
            json!({"op": "list", "bucket": "w-root", "prefix": "uploads/batch/"}),
        )
        .await;
    assert_eq!(
        upstream["keys"],
        json!(["uploads/batch/keep.txt"]),
        "{upstream}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_bucket_and_location_are_answered_for_the_logical_bucket() {
    let writes = Writes::start().await;
    let before = writes.s3.requests();
    let head = writes
        .boto3(
            WRITER,
            WRITER_SECRET,
            json!({"op": "head_bucket", "bucket": "w-uploads"}),
        )
        .await;
    assert_eq!(head, json!({"status": 200, "region": "us-east-1"}));
    let location = writes
        .boto3(
            WRITER,
            WRITER_SECRET,
            json!({"op": "location", "bucket": "w-uploads"}),
        )
        .await;
    assert_eq!(location, json!({"status": 200, "location": null}));
    let unbound = writes
        .boto3(
            READER,
            READER_SECRET,
            json!({"op": "head_bucket", "bucket": "acme"}),
        )
        .await;
    assert_eq!(unbound["status"], 403, "{unbound}");
    assert_eq!(
        writes.s3.requests(),
        before,
        "answered without the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_s3_sync_round_trips_a_tree_with_awkward_names() {
    let writes = Writes::start().await;
    let dir = TempDir::new("sync");
    let local = dir.0.join("local");
    let names = [
        "plain.txt",
        "with space.txt",
        "plus+sign.txt",
        "percent%20literal.txt",
        "semi;colon,comma.txt",
        "nested/ünïcødé/日本語.txt",
        "nested/deeper/emoji 😀.txt",
    ];
    for name in names {
        let path = local.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("contents of {name}\n")).unwrap();
        // moto keeps whole seconds of LastModified; a file written in the same second as its
        // upload would look newer than it, and the second sync would upload it again.
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap();
    }
    let endpoint = writes.endpoint();
    let aws = |args: &[&str]| {
        let mut command = aws_cli_as(&dir.0, &endpoint, (WRITER, WRITER_SECRET));
        command.args(args);
        command
    };
    let local_text = local.display().to_string();
    let up = aws(&["s3", "sync", &local_text, "s3://w-uploads/synced/"])
        .output()
        .await
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&up.stdout)
            .matches("upload:")
            .count(),
        names.len()
    );

    // A second sync finds nothing to do: the listing maps back to exactly these keys.
    let again = aws(&["s3", "sync", &local_text, "s3://w-uploads/synced/"])
        .output()
        .await
        .unwrap();
    assert!(again.status.success());
    assert_eq!(
        String::from_utf8_lossy(&again.stdout)
            .matches("upload:")
            .count(),
        0,
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );

    let back = dir.0.join("back");
    let back_text = back.display().to_string();
    let down = aws(&["s3", "sync", "s3://w-uploads/synced/", &back_text])
        .output()
        .await
        .unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    for name in names {
        assert_eq!(
            std::fs::read_to_string(back.join(name)).unwrap_or_default(),
            format!("contents of {name}\n"),
            "{name}"
        );
    }
}

/// Uploads `chunks` as an SDK does with `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, signed by
/// aws-sigv4 (the seed in the headers, then every chunk); `tamper` flips a byte of the last
/// data chunk after signing.
async fn aws_chunked_put(writes: &Writes, key: &str, chunks: &[&[u8]], tamper: bool) -> Fetched {
    aws_chunked_put_framed(writes, key, chunks, tamper, true).await
}

/// [`aws_chunked_put`], with the body framed by `Content-Length` or, as the AWS SDK for
/// JavaScript and the AWS C++ SDK (pyarrow) send it, by `Transfer-Encoding: chunked` with no
/// `Content-Length` at all.
async fn aws_chunked_put_framed(
    writes: &Writes,
    key: &str,
    chunks: &[&[u8]],
    tamper: bool,
    content_length: bool,
) -> Fetched {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    const MODE: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
    let decoded: usize = chunks.iter().map(|c| c.len()).sum();
    // Every chunk header is `{hex size};chunk-signature={64 hex}\r\n`, data, `\r\n`.
    let encoded: usize = chunks
        .iter()
        .chain(std::iter::once(&&b""[..]))
        .map(|c| format!("{:x}", c.len()).len() + ";chunk-signature=".len() + 64 + 2 + c.len() + 2)
        .sum();
    // Keys here need no escaping; S3 signers encode paths once, as the proxy canonicalises.
    let url = writes.proxy.url(&format!("/w-uploads/{key}"));
    let host = writes.proxy.address.to_string();
    let mut headers = vec![
        ("host", host.clone()),
        ("content-encoding", "aws-chunked".to_string()),
        ("x-amz-decoded-content-length", decoded.to_string()),
    ];
    if content_length {
        headers.push(("content-length", encoded.to_string()));
    }
    let time = std::time::SystemTime::now();
    let identity =
        aws_credential_types::Credentials::new(WRITER, WRITER_SECRET, None, None, "t").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = aws_sigv4::http_request::PayloadChecksumKind::XAmzSha256;
    settings.percent_encoding_mode = aws_sigv4::http_request::PercentEncodingMode::Single;
    settings.uri_path_normalization_mode =
        aws_sigv4::http_request::UriPathNormalizationMode::Disabled;
    let params = s3_signing_params(&identity, time, settings);
    let signable = SignableRequest::new(
        "PUT",
        &url,
        headers.iter().map(|(n, v)| (*n, v.as_str())),
        SignableBody::Precomputed(MODE.to_string()),
    )
    .unwrap();
    let (instructions, seed) = sign(signable, &params.into()).unwrap().into_parts();
    let mut request = http::Request::new(());
    *request.method_mut() = Method::PUT;
    *request.uri_mut() = url.parse().unwrap();
    for (name, value) in &headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    instructions.apply_to_request_http1x(&mut request);

    let chunk_params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(time)
        .settings(())
        .build()
        .unwrap();
    let mut previous = seed;
    let mut wire = Vec::new();
    for chunk in chunks.iter().chain(std::iter::once(&&b""[..])) {
        let signature = aws_sigv4::sign::v4::sign_chunk(
            &bytes::Bytes::copy_from_slice(chunk),
            &previous,
            &chunk_params,
        )
        .unwrap()
        .signature()
        .to_string();
        wire.extend(format!("{:x};chunk-signature={signature}\r\n", chunk.len()).bytes());
        let start = wire.len();
        wire.extend_from_slice(chunk);
        if tamper && !chunk.is_empty() && std::ptr::eq(*chunk, *chunks.last().unwrap()) {
            wire[start] ^= 0x20;
        }
        wire.extend_from_slice(b"\r\n");
        previous = signature;
    }
    assert_eq!(wire.len(), encoded);

    if !content_length {
        request
            .headers_mut()
            .insert("transfer-encoding", "chunked".parse().unwrap());
    }
    let (parts, ()) = request.into_parts();
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let response = client
        .request(http::Request::from_parts(
            parts,
            http_body_util::Full::new(bytes::Bytes::from(wire)),
        ))
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    Fetched {
        status,
        headers,
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_chunked_uploads_are_verified_and_a_tampered_one_leaves_no_object() {
    let writes = Writes::start().await;
    let chunks: [&[u8]; 3] = [&[b'a'; 65536], &[b'b'; 65536], b"the end\n"];
    let stored = aws_chunked_put(&writes, "chunked/good.bin", &chunks, false).await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.text());
    let back = writes
        .boto3(
            WRITER,
            WRITER_SECRET,
            json!({"op": "head", "bucket": "w-uploads", "object": "chunked/good.bin"}),
        )
        .await;
    assert_eq!(back, json!({"status": 200, "length": 65536 * 2 + 8}));
    let tail = writes
        .boto3(WRITER, WRITER_SECRET, json!({"op": "get", "bucket": "w-uploads", "object": "chunked/good.bin", "range": "bytes=131068-"}))
        .await;
    assert_eq!(tail["body"], "bbbbthe end\n");

    // Framed without a Content-Length, as the JavaScript and C++ SDKs send it: the decoded
    // length comes from x-amz-decoded-content-length.
    let unframed =
        aws_chunked_put_framed(&writes, "chunked/no-length.bin", &chunks, false, false).await;
    assert_eq!(unframed.status, StatusCode::OK, "{}", unframed.text());
    let back = writes
        .boto3(
            WRITER,
            WRITER_SECRET,
            json!({"op": "head", "bucket": "w-uploads", "object": "chunked/no-length.bin"}),
        )
        .await;
    assert_eq!(back, json!({"status": 200, "length": 65536 * 2 + 8}));

    let refused = aws_chunked_put(&writes, "chunked/tampered.bin", &chunks, true).await;
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (StatusCode::FORBIDDEN, "SignatureDoesNotMatch")
    );
    let absent = writes
        .boto3(
            WRITER,
            WRITER_SECRET,
            json!({"op": "head", "bucket": "w-uploads", "object": "chunked/tampered.bin"}),
        )
        .await;
    assert_eq!(absent["status"], 404, "no object was created: {absent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_checksum_modes_both_upload() {
    let writes = Writes::start().await;
    for mode in ["when_supported", "when_required"] {
        let key = format!("checksums/{mode}.txt");
        let data = format!("uploaded with request_checksum_calculation={mode}\n");
        let put = writes
            .boto3(WRITER, WRITER_SECRET, json!({"op": "put", "bucket": "w-uploads", "object": key, "data": data, "checksums": mode}))
            .await;
        assert!(put["etag"].is_string(), "{mode}: {put}");
        let back = writes
            .boto3(
                WRITER,
                WRITER_SECRET,
                json!({"op": "get", "bucket": "w-uploads", "object": key}),
            )
            .await;
        assert_eq!(back["body"], data.as_str(), "{mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_listings_and_abort_show_the_logical_bucket_and_key() {
    let writes = Writes::start().await;
    let seen = writes
        .boto3(WRITER, WRITER_SECRET, json!({"op": "multipart_abort", "bucket": "w-uploads", "object": "parts/in progress.bin"}))
        .await;
    assert_eq!(
        seen["created"],
        json!({"bucket": "w-uploads", "key": "parts/in progress.bin"}),
        "{seen}"
    );
    assert_eq!(
        seen["parts"],
        json!({"bucket": "w-uploads", "key": "parts/in progress.bin", "count": 1}),
        "{seen}"
    );
    assert_eq!(seen["uploads"], json!(["parts/in progress.bin"]), "{seen}");
    assert_eq!(seen["after_abort"], 0, "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_attributes_are_read_under_the_prefix_by_readers_and_writers() {
    let writes = Writes::start().await;
    let put = writes
        .boto3(
            WRITER,
            WRITER_SECRET,
            json!({"op": "put", "bucket": "w-uploads", "object": "attributes/a.txt", "data": "twelve bytes"}),
        )
        .await;
    assert_eq!(put["status"], 200, "{put}");
    for (key, secret) in [(WRITER, WRITER_SECRET), (READER, READER_SECRET)] {
        let attributes = writes
            .boto3(
                key,
                secret,
                json!({"op": "attributes", "bucket": "w-uploads", "object": "attributes/a.txt"}),
            )
            .await;
        assert_eq!(attributes["status"], 200, "{key}: {attributes}");
        assert_eq!(attributes["size"], 12, "{key}: {attributes}");
        assert_eq!(
            attributes["etag"].as_str().map(|e| e.trim_matches('"')),
            put["etag"].as_str().map(|e| e.trim_matches('"'))
        );
    }
    // The same object seen from the bucket's root: the prefix was applied once.
    let root = writes
        .boto3(
            WRITER,
            WRITER_SECRET,
            json!({"op": "attributes", "bucket": "w-root", "object": "uploads/attributes/a.txt"}),
        )
        .await;
    assert_eq!(root["size"], 12, "{root}");
    let outside = writes
        .boto3(
            WRITER,
            WRITER_SECRET,
            json!({"op": "attributes", "bucket": "w-uploads", "object": "uploads/attributes/a.txt"}),
        )
        .await;
    assert_eq!(outside["status"], 404, "{outside}");
}
