//! Bodies stream: a 1 GiB object passes through the proxy binary while its memory stays flat.
//! The upstream is s3s-fs (SigV4-verifying) over a directory, so the object is written to disk
//! directly instead of uploaded.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::io::Write;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use s3_signing_proxy::lab::demo::EmbeddedStore;

use crate::support::*;

const GIB: u64 = 1 << 30;
const RSS_BOUND: u64 = 64 << 20;

fn pattern(offset: u64) -> u8 {
    (offset % 251) as u8
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_streams_through_while_proxy_memory_stays_flat() {
    let dir = TempDir::new("stream");
    let store_root = dir.0.join("store");
    std::fs::create_dir_all(store_root.join("big-media")).unwrap();
    {
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(store_root.join("big-media/large.bin")).unwrap(),
        );
        let chunk: Vec<u8> = (0..251 * 4096).map(pattern).collect();
        let mut written = 0;
        while written < GIB {
            let n = chunk.len().min((GIB - written) as usize);
            file.write_all(&chunk[..n]).unwrap();
            written += n as u64;
        }
    }
    let store = EmbeddedStore::start(&store_root, None, None).await.unwrap();
    let big = IntegrationFixture::new("big", "big-media")
        .set("endpoint", store.endpoint())
        .set("public", true)
        .static_keys(&store.access_key_id, "BIG_STORE_SECRET");
    let config = fixtures::config(fixtures::settings("listen = \"LISTEN\""), &[big], &[]);
    let proxy = ProxyProcess::spawn(
        &dir.0,
        &config,
        &[("BIG_STORE_SECRET", &store.secret_access_key)],
    )
    .await;
    let idle_rss = proxy.peak_rss();

    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .get(proxy.url("/big/large.bin").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-length"],
        GIB.to_string().as_str()
    );
    let (received, mismatches) = read_pattern(response.into_body(), 0).await;
    assert_eq!(received, GIB);
    assert_eq!(mismatches, 0, "every byte arrives as stored");

    let peak = proxy.peak_rss();
    eprintln!(
        "proxy RSS: idle {} MiB, peak {} MiB after 1 GiB",
        idle_rss >> 20,
        peak >> 20
    );
    assert!(
        peak < RSS_BOUND,
        "proxy peak RSS {} MiB exceeds {} MiB",
        peak >> 20,
        RSS_BOUND >> 20
    );
}

/// A body of `total` pattern bytes produced 1 MiB at a time, never held whole.
struct PatternBody {
    sent: u64,
    total: u64,
}

impl http_body::Body for PatternBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.sent >= self.total {
            return std::task::Poll::Ready(None);
        }
        let length = (1u64 << 20).min(self.total - self.sent);
        let chunk: Vec<u8> = (self.sent..self.sent + length).map(pattern).collect();
        self.sent += length;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(chunk)))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.total - self.sent)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_upload_streams_through_while_proxy_memory_stays_flat() {
    let (_dir, store_root, _store, proxy) =
        uploads_proxy("upload", "uploads", ("AKUPLOADER", "uploader-secret")).await;

    // Signed as an SDK signs a streamed upload: UNSIGNED-PAYLOAD with its Content-Length.
    let mut request = http::Request::new(());
    *request.method_mut() = http::Method::PUT;
    *request.uri_mut() = proxy.url("/big/large%20upload.bin").parse().unwrap();
    let headers = request.headers_mut();
    headers.insert("host", proxy.address.to_string().parse().unwrap());
    headers.insert("content-length", GIB.to_string().parse().unwrap());
    sign_as_client(&mut request, "AKUPLOADER", "uploader-secret");
    let (parts, ()) = request.into_parts();
    let request = http::Request::from_parts(
        parts,
        PatternBody {
            sent: 0,
            total: GIB,
        },
    );

    let client: Client<_, PatternBody> = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // The object landed under the prefix, whole.
    let stored = store_root.join("big-media/uploads/large upload.bin");
    assert_stored_pattern(&stored);

    let peak = proxy.peak_rss();
    eprintln!("proxy RSS after a 1 GiB upload: peak {} MiB", peak >> 20);
    assert!(
        peak < RSS_BOUND,
        "proxy peak RSS {} MiB exceeds {} MiB",
        peak >> 20,
        RSS_BOUND >> 20
    );
}

/// A form around `pattern` bytes: the fields and file head, the file streamed 1 MiB at a time,
/// the closing boundary.
struct FormPatternBody {
    prefix: Option<Bytes>,
    file: PatternBody,
    suffix: Option<Bytes>,
}

impl http_body::Body for FormPatternBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if let Some(prefix) = self.prefix.take() {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(prefix))));
        }
        match std::pin::Pin::new(&mut self.file).poll_frame(context) {
            std::task::Poll::Ready(None) => std::task::Poll::Ready(
                self.suffix
                    .take()
                    .map(|suffix| Ok(http_body::Frame::data(suffix))),
            ),
            other => other,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_form_upload_is_stored_whole_while_proxy_memory_stays_flat() {
    let secret = "form-page-secret-0123456789";
    let (_dir, store_root, _store, proxy) =
        uploads_proxy("form-upload", "forms", ("AKFORMPAGE", secret)).await;
    let post = presigned_post(
        &proxy.url(""),
        ("AKFORMPAGE", secret),
        "big",
        "uploads/${filename}",
        600,
        serde_json::json!({}),
        serde_json::json!([
            ["starts-with", "$key", "uploads/"],
            ["content-length-range", 1, GIB]
        ]),
    )
    .await;
    let fields = post_fields(&post);
    let (content_type, prefix, suffix) = form_framing(&fields, "whole gigabyte.bin");
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(post["url"].as_str().unwrap())
        .header("content-type", content_type)
        .body(FormPatternBody {
            prefix: Some(Bytes::from(prefix)),
            file: PatternBody {
                sent: 0,
                total: GIB,
            },
            suffix: Some(Bytes::from(suffix)),
        })
        .unwrap();
    let client: Client<_, FormPatternBody> = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let etag = response.headers().get("etag").cloned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    // 1 GiB in 8 MiB parts.
    assert_eq!(
        etag.unwrap().to_str().unwrap().rsplit('-').next(),
        Some("128\"")
    );

    // On the store, under the integration's prefix and the policy's, every byte as sent.
    let stored = store_root.join("big-media/forms/uploads/whole gigabyte.bin");
    assert_stored_pattern(&stored);

    let peak = proxy.peak_rss();
    eprintln!(
        "proxy RSS after a 1 GiB form upload: peak {} MiB",
        peak >> 20
    );
    assert!(
        peak < RSS_BOUND,
        "proxy peak RSS {} MiB exceeds {} MiB",
        peak >> 20,
        RSS_BOUND >> 20
    );
}

/// A proxy process in front of s3s-fs: integration `big` (bucket `big-media`, `prefix`,
/// read-write) and one read-write client with `client`'s key and secret. Returns the temporary
/// directory, the store's root, the store and the proxy.
async fn uploads_proxy(
    label: &str,
    prefix: &str,
    client: (&str, &str),
) -> (TempDir, std::path::PathBuf, EmbeddedStore, ProxyProcess) {
    store_proxy(label, prefix, client, ("", "")).await
}

/// [`uploads_proxy`] with `extra` settings (TOML) of `[server]` (its tables, such as
/// `[limits]`, included) and of the integration.
async fn store_proxy(
    label: &str,
    prefix: &str,
    client: (&str, &str),
    extra: (&str, &str),
) -> (TempDir, std::path::PathBuf, EmbeddedStore, ProxyProcess) {
    let dir = TempDir::new(label);
    let store_root = dir.0.join("store");
    std::fs::create_dir_all(store_root.join("big-media")).unwrap();
    let store = EmbeddedStore::start(&store_root, None, None).await.unwrap();
    let mut server = fixtures::settings(extra.0);
    server.insert("listen".into(), "LISTEN".into());
    let big = IntegrationFixture::new("big", "big-media")
        .set("prefix", prefix)
        .set("endpoint", store.endpoint())
        .set("access", "read-write")
        .with(fixtures::settings(extra.1))
        .static_keys(&store.access_key_id, "BIG_STORE_SECRET");
    let uploader = ClientFixture::new(client.0, "CLIENT_SECRET", &["big"], "read-write");
    let config = fixtures::config(server, &[big], &[uploader]);
    let proxy = ProxyProcess::spawn(
        &dir.0,
        &config,
        &[
            ("BIG_STORE_SECRET", &store.secret_access_key),
            ("CLIENT_SECRET", client.1),
        ],
    )
    .await;
    (dir, store_root, store, proxy)
}

/// The stored file is `GIB` pattern bytes, every one as sent.
fn assert_stored_pattern(stored: &std::path::Path) {
    assert_eq!(std::fs::metadata(stored).unwrap().len(), GIB);
    let mut file = std::fs::File::open(stored).unwrap();
    let mut buffer = vec![0u8; 1 << 20];
    let (mut offset, mut mismatches) = (0u64, 0u64);
    loop {
        let n = std::io::Read::read(&mut file, &mut buffer).unwrap();
        if n == 0 {
            break;
        }
        mismatches += buffer[..n]
            .iter()
            .enumerate()
            .filter(|(i, b)| **b != pattern(offset + *i as u64))
            .count() as u64;
        offset += n as u64;
    }
    assert_eq!(mismatches, 0, "every byte stored as sent");
}

/// The `s3sp_wide_transfers` gauge on the proxy's `/metrics`.
async fn wide_transfers(proxy: &ProxyProcess) -> i64 {
    let metrics = get(&proxy.admin_url("/metrics")).await.text();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("s3sp_wide_transfers "))
        .expect("the gauge is listed")
        .parse()
        .unwrap()
}

/// Reads `body` to its end, counting bytes that differ from the pattern.
async fn read_pattern(mut body: hyper::body::Incoming, mut received: u64) -> (u64, u64) {
    let mut mismatches = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.expect("the transfer completes").data_ref() {
            for (i, byte) in data.iter().enumerate() {
                if *byte != pattern(received + i as u64) {
                    mismatches += 1;
                }
            }
            received += data.len() as u64;
        }
    }
    (received, mismatches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_beyond_the_wide_ones_read_narrow_and_slots_come_back() {
    const SIZE: u64 = 48 << 20;
    let (_dir, store_root, _store, proxy) = store_proxy(
        "wide",
        "wide",
        ("AKWIDEUPLOADER", "wide-uploader-secret"),
        (
            "admin_listen = \"ADMIN\"\n[limits]\nwide_transfers = 1",
            "public = true",
        ),
    )
    .await;
    let objects = store_root.join("big-media/wide");
    std::fs::create_dir_all(&objects).unwrap();
    let object: Vec<u8> = (0..SIZE).map(pattern).collect();
    std::fs::write(objects.join("object.bin"), object).unwrap();
    assert_eq!(wide_transfers(&proxy).await, 0, "nothing in flight yet");

    // Two downloads at once, each started (headers and a first frame read), then held: one
    // holds the only wide slot, the other went narrow.
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut started = Vec::new();
    for _ in 0..2 {
        let response = client
            .get(proxy.url("/big/object.bin").parse().unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(
            first[..],
            (0..first.len() as u64).map(pattern).collect::<Vec<_>>()[..]
        );
        started.push((body, first.len() as u64));
    }
    assert_eq!(
        wide_transfers(&proxy).await,
        1,
        "one slot, held by one transfer"
    );

    // Both read to the end, every byte as stored, whichever way they were read upstream.
    let reads = started
        .into_iter()
        .map(|(body, received)| tokio::spawn(read_pattern(body, received)));
    for read in reads {
        assert_eq!(read.await.unwrap(), (SIZE, 0));
    }
    assert_eq!(
        wide_transfers(&proxy).await,
        0,
        "finished transfers give the slot back"
    );

    // A download the client abandons midway gives its slot back too.
    let response = client
        .get(proxy.url("/big/object.bin").parse().unwrap())
        .await
        .unwrap();
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    assert_eq!(wide_transfers(&proxy).await, 1);
    drop(body);
    drop(client);
    let mut held = 1;
    for _ in 0..100 {
        held = wide_transfers(&proxy).await;
        if held == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(held, 0, "an abandoned transfer gives its slot back");

    // An upload in flight, its body half sent, takes no slot: its answer is a few bytes.
    let (more, body) = GatedBody::new();
    let mut request = http::Request::new(());
    *request.method_mut() = http::Method::PUT;
    *request.uri_mut() = proxy.url("/big/uploaded.bin").parse().unwrap();
    let headers = request.headers_mut();
    headers.insert("host", proxy.address.to_string().parse().unwrap());
    headers.insert("content-length", (2u64 << 20).to_string().parse().unwrap());
    sign_as_client(&mut request, "AKWIDEUPLOADER", "wide-uploader-secret");
    let (parts, ()) = request.into_parts();
    let uploader: Client<_, GatedBody> = Client::builder(TokioExecutor::new()).build_http();
    let upload = tokio::spawn(uploader.request(http::Request::from_parts(parts, body)));
    more.send(Bytes::from(vec![7u8; 1 << 20])).await.unwrap();
    for _ in 0..10 {
        assert_eq!(wide_transfers(&proxy).await, 0, "an upload holds no slot");
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    more.send(Bytes::from(vec![7u8; 1 << 20])).await.unwrap();
    drop(more);
    let response = upload.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let stored = std::fs::metadata(objects.join("uploaded.bin")).unwrap();
    assert_eq!(stored.len(), 2 << 20, "the upload landed whole");
}

/// A request body sent a chunk at a time as the test hands them over, ending when the sender
/// is dropped.
struct GatedBody(tokio::sync::mpsc::Receiver<Bytes>);

impl GatedBody {
    fn new() -> (tokio::sync::mpsc::Sender<Bytes>, GatedBody) {
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        (sender, GatedBody(receiver))
    }
}

impl http_body::Body for GatedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(context)
            .map(|chunk| chunk.map(|bytes| Ok(http_body::Frame::data(bytes))))
    }
}
