//! Bodies stream: a 1 GiB object passes through the proxy binary while its memory stays flat.
//! The upstream is s3s-fs (SigV4-verifying) over a directory, so the object is written to disk
//! directly instead of uploaded.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::io::Write;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use s3_signing_proxy::demo::EmbeddedStore;
use support::*;

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
    let config = format!(
        r#"
[server]
listen = "LISTEN"
[[integration]]
name = "big"
bucket = "big-media"
region = "us-east-1"
endpoint = "{endpoint}"
public = true
[integration.credentials]
access_key_id = "{key}"
secret_access_key_env = "BIG_STORE_SECRET"
"#,
        endpoint = store.endpoint(),
        key = store.access_key_id,
    );
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
    let mut body = response.into_body();
    let mut received: u64 = 0;
    let mut mismatches = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("the transfer completes");
        if let Some(data) = frame.data_ref() {
            for (i, byte) in data.iter().enumerate() {
                if *byte != pattern(received + i as u64) {
                    mismatches += 1;
                }
            }
            received += data.len() as u64;
        }
    }
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
