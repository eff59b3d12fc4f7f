//! Uploads to a store that stops reading after each request head: the proxy's RSS while 1,000
//! of them are stalled, and again 30 s after their clients have gone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::processes::{self, Killed};

/// A store on `port` that reads each request head a byte at a time and then never reads
/// again; counts the heads it has read.
pub async fn stalling_store(port: u16) -> Arc<AtomicUsize> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let heads = Arc::new(AtomicUsize::new(0));
    let counter = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if !matches!(socket.read(&mut byte).await, Ok(1)) {
                        return;
                    }
                    head.push(byte[0]);
                }
                counter.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
                drop(socket);
            });
        }
    });
    heads
}

/// One signed PUT of `size` bytes to `url` on a raw socket, written until the socket blocks
/// for good; ends when aborted.
async fn stalled_upload(proxy: SocketAddr, path: String, size: usize) {
    let mut request = http::Request::put(format!("http://{proxy}{path}"))
        .header("content-length", size)
        .body(())
        .unwrap();
    crate::load::sign(&mut request);
    let mut head = format!("PUT {path} HTTP/1.1\r\nhost: {proxy}\r\n");
    for (name, value) in request.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    head.push_str("\r\n");
    let Ok(mut socket) = tokio::net::TcpStream::connect(proxy).await else {
        return;
    };
    // Reset when aborted: a closing client's FIN would wait behind its unsent body, which
    // the proxy (backpressured) is not reading.
    #[allow(deprecated)]
    let _ = socket.set_linger(Some(Duration::ZERO));
    let chunk = vec![b's'; 64 * 1024];
    let mut left = size;
    let _ = socket.write_all(head.as_bytes()).await;
    while left > 0 {
        let n = left.min(chunk.len());
        if socket.write_all(&chunk[..n]).await.is_err() {
            return;
        }
        left -= n;
    }
    std::future::pending::<()>().await;
}

/// RSS (MiB) of `proxy` (serving the stalling store as its `sink` integration on `port`)
/// before, with `uploads` stalled 8 MiB uploads, and 30 s after their clients went away.
pub async fn rss(proxy: &Killed, port: u16, heads: &AtomicUsize, uploads: usize) -> [f64; 3] {
    let idle = processes::rss_mib(proxy.pid());
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let tasks: Vec<_> = (0..uploads)
        .map(|i| {
            tokio::spawn(stalled_upload(
                address,
                format!("/sink/stalled-{i}"),
                8 << 20,
            ))
        })
        .collect();
    for _ in 0..1200 {
        if heads.load(Ordering::SeqCst) >= uploads {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Until the proxy's memory stops growing.
    let mut stalled = processes::rss_mib(proxy.pid());
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = processes::rss_mib(proxy.pid());
        if now <= stalled + 0.25 {
            break;
        }
        stalled = now;
    }
    tasks.iter().for_each(|task| task.abort());
    tokio::time::sleep(Duration::from_secs(30)).await;
    [idle, stalled, processes::rss_mib(proxy.pid())]
}
