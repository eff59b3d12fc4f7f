//! The loads the bench puts on a store, straight or through the proxy.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;
pub type UploadClient = Client<HttpConnector, Full<Bytes>>;

pub const CLIENT_KEY: &str = "AKBENCHCLIENT";
pub const CLIENT_SECRET: &str = "bench-client-secret";

pub fn http_client(connections: usize) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(connections)
        .build_http()
}

pub fn upload_client() -> UploadClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Downloads `url` and counts its bytes without keeping them.
pub async fn download(client: &HttpClient, url: &str) -> u64 {
    let response = client.get(url.parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let mut body = response.into_body();
    let mut bytes = 0;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.unwrap().data_ref() {
            bytes += data.len() as u64;
        }
    }
    bytes
}

/// The status of a GET of `url`, its body read to the end.
pub async fn status(client: &HttpClient, url: &str) -> u16 {
    let response = client.get(url.parse().unwrap()).await.unwrap();
    let status = response.status().as_u16();
    http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();
    status
}

/// MiB/s of `streams` concurrent downloads of `url`.
pub async fn downloads(client: &HttpClient, url: &str, streams: usize) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_string());
            tokio::spawn(async move { download(&client, &url).await })
        })
        .collect();
    let mut bytes = 0;
    for task in tasks {
        bytes += task.await.unwrap();
    }
    bytes as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64()
}

/// A presigned GET URL for `url`, as an application backend mints one with a client key.
pub fn presigned(url: &str) -> String {
    let credentials =
        aws_credential_types::Credentials::new(CLIENT_KEY, CLIENT_SECRET, None, None, "bench");
    s3_signing_proxy::upstream::sign::presigned_get_url(
        url.parse().unwrap(),
        &credentials,
        "us-east-1",
        std::time::SystemTime::now(),
        Duration::from_secs(3600),
    )
    .unwrap()
    .to_string()
}

/// Signs `request` with the bench client's key, as an SDK signs for the proxy.
pub fn sign(request: &mut http::Request<()>) {
    let credentials =
        aws_credential_types::Credentials::new(CLIENT_KEY, CLIENT_SECRET, None, None, "bench");
    s3_signing_proxy::upstream::sign::sign_request(
        request,
        &credentials,
        "us-east-1",
        std::time::SystemTime::now(),
    )
    .unwrap();
}

/// PUTs `body` to `url`, signed with the bench client's key when `signed` (the proxy checks
/// it; the sink does not). The body is shared, not copied, between uploads.
pub async fn upload(client: &UploadClient, url: &str, body: Bytes, signed: bool) {
    let mut request = http::Request::new(());
    *request.method_mut() = http::Method::PUT;
    *request.uri_mut() = url.parse().unwrap();
    let authority = request.uri().authority().unwrap().to_string();
    let headers = request.headers_mut();
    headers.insert("host", authority.parse().unwrap());
    headers.insert("content-length", body.len().into());
    if signed {
        sign(&mut request);
    }
    let (parts, ()) = request.into_parts();
    let response = client
        .request(http::Request::from_parts(parts, Full::new(body)))
        .await
        .unwrap();
    let status = response.status();
    assert!(status.is_success(), "{url}: {status}");
    let _ = response.into_body().collect().await;
}

/// MiB/s of `streams` concurrent PUTs of `body`.
pub async fn uploads(
    client: &UploadClient,
    url: &str,
    body: &Bytes,
    streams: usize,
    signed: bool,
) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|stream| {
            let url = format!("{url}-{stream}");
            let (client, body) = (client.clone(), body.clone());
            tokio::spawn(async move { upload(&client, &url, body, signed).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (body.len() * streams) as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64()
}

/// What a run of small GETs gave.
pub struct SmallRun {
    pub per_second: f64,
    pub p99: Duration,
}

/// `requests` GETs of 1 KiB objects over `connections` connections, cycling through `urls`.
pub async fn small_gets(
    client: &HttpClient,
    urls: Arc<Vec<String>>,
    requests: usize,
    connections: usize,
) -> SmallRun {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (client, next, urls) = (client.clone(), next.clone(), urls.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(requests / connections + 1);
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= requests {
                        return latencies;
                    }
                    let sent = Instant::now();
                    let bytes = download(&client, &urls[n % urls.len()]).await;
                    latencies.push(sent.elapsed());
                    assert_eq!(bytes, 1024);
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(requests);
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    SmallRun {
        per_second: requests as f64 / elapsed.as_secs_f64(),
        p99: latencies[latencies.len() * 99 / 100],
    }
}
