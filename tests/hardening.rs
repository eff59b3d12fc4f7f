//! What a shared origin must refuse or neutralise, against moto with IAM auth enforced:
//! upstream error documents reduced to their code, the proxy's refused credentials answered as
//! the proxy's own error, redirects never followed, ACL headers that would publish objects,
//! ambiguous `x-amz-*` headers, and tenant HTML that would run script with the proxy's origin.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const WRITER: &str = "AKHARDWRITER";
const WRITER_SECRET: &str = "hard-writer-secret-91";

async fn boto3_as_writer(proxy: &RunningProxy, op: serde_json::Value) -> serde_json::Value {
    let endpoint = format!("http://127.0.0.1:{}", proxy.address.port());
    boto3_as(&endpoint, (WRITER, WRITER_SECRET), "path", op).await
}

/// Tenant A read-only as `acme` (prefix `labelling`), tenant W read-write as `uploads`, both
/// behind a request counter; a read-write client for `uploads`.
async fn start(s3: &PassThrough, uploads_extra: &str) -> RunningProxy {
    let moto = moto();
    let writer = ClientFixture::new(WRITER, "WRITER_SECRET", &["uploads", "acme"], "read-write");
    let config = format!(
        "{}{}{}{}",
        sts_section(moto, &moto.endpoint(), ""),
        role_integration(
            "acme",
            &moto.tenant_a,
            &s3.endpoint(),
            "path",
            &moto.tenant_a.external_id,
            "prefix = \"labelling\""
        ),
        role_integration(
            "uploads",
            &moto.tenant_w,
            &s3.endpoint(),
            "path",
            &moto.tenant_w.external_id,
            &format!("access = \"read-write\"\n{uploads_extra}")
        ),
        ClientFixture::toml(&[writer]),
    );
    let mut secrets = secrets(moto);
    secrets.insert("WRITER_SECRET".into(), WRITER_SECRET.into());
    start_proxy(&config, &secrets).await
}

#[tokio::test]
async fn upstream_errors_keep_their_code_but_not_the_real_bucket_or_prefix() {
    let moto = moto();
    let s3 = PassThrough::start(moto.address()).await;
    let proxy = start(&s3, "").await;
    let missing = get(&proxy.url("/acme/no-such-key.txt")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_code(), "NoSuchKey");
    let text = missing.text();
    assert!(!text.contains(&moto.tenant_a.bucket), "{text}");
    assert!(!text.contains("labelling/"), "{text}");
    assert_eq!(missing.headers["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn refused_proxy_credentials_are_the_proxys_own_503_without_signing_material() {
    let moto = moto();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{}",
        static_reader_integration(
            "acme",
            &format!("bucket = \"{}\"", moto.tenant_a.bucket),
            &moto.endpoint()
        )
    );
    let mut secrets = secrets(moto);
    secrets.insert(
        "STATIC_READER_SECRET".into(),
        "not-the-secret-moto-issued".into(),
    );
    let proxy = start_proxy(&config, &secrets).await;
    let refused = get(&proxy.url("/acme/owner.txt")).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.error_code(), "ServiceUnavailable");
    assert!(refused.headers.contains_key("retry-after"));
    let text = refused.text();
    for leaked in [
        "StringToSign",
        "CanonicalRequest",
        "SignatureProvided",
        moto.static_reader.access_key_id.as_str(),
    ] {
        assert!(!text.contains(leaked), "{leaked} in {text}");
    }
}

#[tokio::test]
async fn an_upstream_redirect_is_never_followed() {
    // A store that redirects every request to another host, which counts what reaches it.
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere_address = elsewhere.local_addr().unwrap();
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = reached.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = elsewhere.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let redirector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirector_address = redirector.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = redirector.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0; 8192];
                let _ = socket.read(&mut buffer).await;
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{elsewhere_address}/stolen\r\nContent-Length: 0\r\n\r\n"
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    let moved = IntegrationFixture::new("moved", "moved-bucket")
        .set("endpoint", format!("http://{redirector_address}"))
        .set("public", true)
        .static_keys("AKMOVED", "MOVED_SECRET");
    let config = fixtures::config(listen_anywhere(), &[moved], &[]);
    let secrets = std::collections::BTreeMap::from([(
        "MOVED_SECRET".to_string(),
        "moved-secret".to_string(),
    )]);
    let proxy = start_proxy(&config, &secrets).await;
    let answer = get(&proxy.url("/moved/key.txt")).await;
    assert_eq!(answer.status, StatusCode::TEMPORARY_REDIRECT);
    assert!(!answer.headers.contains_key("location"));
    // The proxy answers once its exchange with the store is over: a redirect it followed
    // would have reached the target before this answer.
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_headers_that_publish_objects_are_refused_before_the_upstream() {
    let moto = moto();
    let s3 = PassThrough::start(moto.address()).await;
    let proxy = start(&s3, "").await;
    let before = s3.requests();
    for acl in ["public-read", "public-read-write", "authenticated-read"] {
        let put = boto3_as_writer(
            &proxy,
            json!({"op": "put", "bucket": "uploads", "object": "acl.txt", "data": "x", "acl": acl}),
        )
        .await;
        assert_eq!(put["code"], "AccessDenied", "{acl}: {put}");
    }
    assert_eq!(s3.requests(), before, "a refused write reached S3");
    let owner = boto3_as_writer(
        &proxy,
        json!({"op": "put", "bucket": "uploads", "object": "acl.txt", "data": "x", "acl": "bucket-owner-full-control"}),
    )
    .await;
    assert!(owner["etag"].is_string(), "{owner}");
    let everyone = "http://acs.amazonaws.com/groups/global/AllUsers READ";
    let grants = store_acl(&moto.tenant_w, "acl.txt").await;
    assert!(!grants.iter().any(|g| g == everyone), "{grants:?}");

    // An integration that allows them passes them on: the store made the object public.
    let open = start(&s3, "allow_acl_headers = true").await;
    let public = boto3_as_writer(
        &open,
        json!({"op": "put", "bucket": "uploads", "object": "acl.txt", "data": "x", "acl": "public-read"}),
    )
    .await;
    assert!(public["etag"].is_string(), "{public}");
    let grants = store_acl(&moto.tenant_w, "acl.txt").await;
    assert!(grants.iter().any(|g| g == everyone), "{grants:?}");
}

#[tokio::test]
async fn repeated_or_underscored_amz_headers_are_refused() {
    let moto = moto();
    let s3 = PassThrough::start(moto.address()).await;
    let proxy = start(&s3, "").await;
    let before = s3.requests();
    let mut raw = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
    raw.write_all(
        b"GET /acme/owner.txt HTTP/1.1\r\nHost: proxy\r\nx-amz-date: a\r\nx-amz-date: b\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("<Code>InvalidArgument</Code>"), "{answer}");
    let underscored = request(
        Method::GET,
        &proxy.url("/acme/owner.txt"),
        &[("x_amz_acl", "public-read")],
    )
    .await;
    assert_eq!(underscored.status, StatusCode::BAD_REQUEST);
    assert_eq!(s3.requests(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_html_never_runs_script_with_the_proxys_origin() {
    let moto = moto();
    let s3 = PassThrough::start(moto.address()).await;
    let proxy = start(&s3, "public = true").await;
    let page = "<html><script>document.cookie</script></html>";
    for (key, content_type) in [("page.html", "text/html"), ("art.svg", "image/svg+xml")] {
        let put = boto3_as_writer(
            &proxy,
            json!({"op": "put", "bucket": "uploads", "object": key, "data": page, "content_type": content_type}),
        )
        .await;
        assert!(put["etag"].is_string(), "{put}");
        let served = get(&proxy.url(&format!("/uploads/{key}"))).await;
        assert_eq!(served.status, StatusCode::OK);
        assert_eq!(
            served.headers["content-security-policy"], "sandbox",
            "{key}"
        );
        assert_eq!(served.headers["x-content-type-options"], "nosniff");
    }
    // Attachment mode makes browsers download it instead.
    let attaching = start(&s3, "public = true\nactive_content = \"attachment\"").await;
    let served = get(&attaching.url("/uploads/page.html")).await;
    assert_eq!(served.headers["content-disposition"], "attachment");

    // A plain text object may not be turned into a page by an anonymous override.
    let before = s3.requests();
    let overridden = get(&proxy.url("/uploads/page.html?response-content-type=text%2Fhtml")).await;
    assert_eq!(overridden.status, StatusCode::FORBIDDEN);
    assert_eq!(overridden.error_code(), "AccessDenied");
    assert_eq!(s3.requests(), before);
    let passive = get(&proxy.url("/uploads/page.html?response-content-type=text%2Fplain")).await;
    assert_eq!(passive.status, StatusCode::OK);
}

/// A store that verifies nothing and refuses GETs of `refused.txt` with
/// `SignatureDoesNotMatch`, as a store does for a request shape it signs differently. With
/// `credentials_bad`, it refuses listings the same way (the credentials themselves are bad);
/// otherwise it answers them with an empty listing. Counts the listings it was asked for.
async fn refusing_store(credentials_bad: bool) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use http_body_util::Full;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let listings = Arc::new(AtomicUsize::new(0));
    let counted = listings.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let listings = counted.clone();
            let service = hyper::service::service_fn(
                move |request: http::Request<hyper::body::Incoming>| {
                    let listing = request
                        .uri()
                        .query()
                        .is_some_and(|q| q.contains("list-type=2"));
                    if listing {
                        listings.fetch_add(1, Ordering::SeqCst);
                    }
                    let refused = !listing || credentials_bad;
                    let (status, body) = if refused {
                        (
                            403,
                            "<Error><Code>SignatureDoesNotMatch</Code><Message>no</Message></Error>",
                        )
                    } else {
                        (
                            200,
                            "<ListBucketResult><Name>refusing</Name><KeyCount>0</KeyCount></ListBucketResult>",
                        )
                    };
                    let response = http::Response::builder()
                        .status(status)
                        .header("content-type", "application/xml")
                        .body(Full::new(bytes::Bytes::from_static(body.as_bytes())))
                        .unwrap();
                    async move { Ok::<_, std::convert::Infallible>(response) }
                },
            );
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    (address, listings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_refusals_cannot_be_turned_into_sts_calls() {
    let moto = moto();
    for credentials_bad in [false, true] {
        let sts = PassThrough::start(moto.address()).await;
        let (store, listings) = refusing_store(credentials_bad).await;
        let config = format!(
            "{}{}",
            sts_section(moto, &sts.endpoint(), ""),
            role_integration(
                "refusing",
                &moto.tenant_a,
                &format!("http://{store}"),
                "path",
                &moto.tenant_a.external_id,
                ""
            )
        );
        let proxy = start_proxy(&config, &secrets(moto)).await;
        for _ in 0..20 {
            let refused = get(&proxy.url("/refusing/refused.txt")).await;
            assert_eq!(
                refused.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{}",
                refused.text()
            );
        }
        // A refusal of one request's shape is confirmed against a plain listing once and
        // drops nothing; refusals of the credentials themselves drop them once, and the next
        // nineteen within the debounce period drop nothing.
        let (expected_calls, expected_listings) = if credentials_bad { (2, 1) } else { (1, 1) };
        assert_eq!(
            sts.assume_role_calls(),
            expected_calls,
            "credentials bad: {credentials_bad}"
        );
        assert_eq!(listings.load(Ordering::SeqCst), expected_listings);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_the_store_answers_early_is_logged_when_it_ends() {
    // A sink: it answers 200 as soon as it has the head, then reads no body until the test
    // opens its gate, and counts what it reads.
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_address = sink.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let sink_gate = gate.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = sink.accept().await {
            let (counter, gate) = (counter.clone(), sink_gate.clone());
            tokio::spawn(async move {
                let mut buffer = vec![0; 64 * 1024];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let answer = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                let _ = socket.write_all(answer.as_bytes()).await;
                drop(gate.acquire().await);
                while let Ok(n) = socket.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                    counter.fetch_add(n, Ordering::SeqCst);
                }
            });
        }
    });
    let sink = IntegrationFixture::new("sink", "sink-bucket")
        .set("endpoint", format!("http://{sink_address}"))
        .set("access", "read-write")
        .static_keys("AKSINK", "SINK_SECRET");
    let writer = ClientFixture::new("AKWRITER", "WRITER_SECRET", &["sink"], "read-write");
    let config = fixtures::config(listen_anywhere(), &[sink], &[writer]);
    let secrets = std::collections::BTreeMap::from([
        ("SINK_SECRET".to_string(), "sink-secret".to_string()),
        ("WRITER_SECRET".to_string(), "writer-secret".to_string()),
    ]);
    let proxy = start_proxy(&config, &secrets).await;
    // More than loopback's socket buffers (4 MiB to send, 6 MiB to receive) and the proxy's
    // body buffers hold together: the upload cannot all be sent before the sink reads.
    let size = 32 << 20;
    let mut request = http::Request::builder()
        .method(Method::PUT)
        .uri(proxy.url("/sink/big.bin"))
        .header("content-length", size)
        .body(http_body_util::Full::new(bytes::Bytes::from(vec![
            7u8;
            size
        ])))
        .unwrap();
    sign_as_client(&mut request, "AKWRITER", "writer-secret");
    let answer = send(request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let request_id = answer.headers["x-amz-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    // The answer came before the body went up. A request answered after it is logged while
    // the upload's line still waits for the body's end (lines are written in the order they
    // end).
    let later = get(&proxy.url("/no-such-integration/key")).await;
    let later_id = later.headers["x-amz-request-id"].to_str().unwrap();
    wait_for_access_line(later_id).await;
    assert_eq!(
        access_line(&request_id),
        None,
        "logged before the body ended"
    );
    // The sink reads: the line then counts all of the body.
    gate.add_permits(1);
    let line = wait_for_access_line(&request_id).await;
    assert!(line.contains(&format!(" bytes_in={size} ")), "{line}");
    // The line is written once the proxy has sent the whole body; the sink reads the last of
    // it off its socket a moment later.
    eventually("the sink read the body", || {
        (received.load(Ordering::SeqCst) >= size - 64 * 1024).then_some(())
    })
    .await;
}
