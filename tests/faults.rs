//! Faults no real server can be told to produce, injected by hand-written servers: an upstream
//! that resets mid-body (seen by HTTP/1 and HTTP/2 clients) or before its headers, and a client that gives up halfway through an
//! upload (against s3s-fs, which verifies signatures and stores objects on disk).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use s3_signing_proxy::lab::demo::EmbeddedStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// A store that reads a request head, writes `answer`, then resets the connection.
async fn resetting_store(answer: Vec<u8>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut head = vec![0; 16 * 1024];
                let _ = socket.read(&mut head).await;
                let _ = socket.write_all(&answer).await;
                let _ = socket.flush().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                // RST instead of FIN: the peer sees a reset, not a clean close.
                let _ = socket.set_zero_linger();
                drop(socket);
            });
        }
    });
    address
}

async fn proxy_for(store: SocketAddr) -> RunningProxy {
    proxy_with(store, false).await
}

const FAULT_CLIENT: &str = "AKFAULTLISTER";
const FAULT_CLIENT_SECRET: &str = "fault-client-secret-77ab";

/// [`proxy_for`], the integration read-write when `read_write`.
async fn proxy_with(store: SocketAddr, read_write: bool) -> RunningProxy {
    let mut faulty = IntegrationFixture::new("faulty", "faulty-bucket")
        .set("endpoint", format!("http://{store}"))
        .set("public", true)
        .static_keys("AKFAULT", "FAULT_SECRET");
    if read_write {
        faulty = faulty.set("access", "read-write");
    }
    let client = ClientFixture::new(
        FAULT_CLIENT,
        "FAULT_CLIENT_SECRET",
        &["faulty"],
        "read-write",
    );
    let config = fixtures::config(listen_anywhere(), &[faulty], &[client]);
    let secrets = std::collections::BTreeMap::from([
        ("FAULT_SECRET".to_string(), "fault-secret".to_string()),
        (
            "FAULT_CLIENT_SECRET".to_string(),
            FAULT_CLIENT_SECRET.to_string(),
        ),
    ]);
    start_proxy(&config, &secrets).await
}

/// GETs `url`; the status, the bytes received, whether the body ended cleanly, and the
/// proxy's request id.
async fn fetch_to_end(url: &str) -> (StatusCode, usize, bool, String) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .request(Request::get(url).body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let request_id = response
        .headers()
        .get("x-amz-request-id")
        .map(|id| id.to_str().unwrap().to_string())
        .unwrap_or_default();
    let mut body = response.into_body();
    let mut received = 0;
    loop {
        match body.frame().await {
            None => return (status, received, true, request_id),
            Some(Err(_)) => return (status, received, false, request_id),
            Some(Ok(frame)) => received += frame.data_ref().map_or(0, |d| d.len()),
        }
    }
}

/// GETs `path` over h2c; the status, the bytes received and how the stream ended.
async fn fetch_over_h2(
    proxy: SocketAddr,
    path: &str,
) -> (StatusCode, usize, Result<(), h2::Error>) {
    let socket = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let (send, connection) = h2::client::handshake(socket).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut send = send.ready().await.unwrap();
    let request = Request::get(format!("http://{proxy}{path}"))
        .body(())
        .unwrap();
    let (response, _) = send.send_request(request, true).unwrap();
    let response = response.await.unwrap();
    let status = response.status();
    let mut body = response.into_body();
    let mut received = 0;
    while let Some(data) = body.data().await {
        match data {
            Ok(data) => {
                received += data.len();
                let _ = body.flow_control().release_capacity(data.len());
            }
            Err(e) => return (status, received, Err(e)),
        }
    }
    (status, received, Ok(()))
}

#[tokio::test]
async fn a_store_document_cut_off_midway_is_a_502_with_the_stores_request_id() {
    // A listing promised at 2,000 bytes, broken off after 150: the store's fault.
    let listing = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>faulty-bucket</Name><Prefix></Prefix><KeyCount>3</KeyCount>";
    let mut answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\nContent-Type: application/xml\r\nx-amz-request-id: STORE-REQ-CUT-1\r\n\r\n".to_vec();
    answer.extend_from_slice(&listing[..150]);
    let store = resetting_store(answer).await;
    let proxy = proxy_for(store).await;
    let mut request = Request::get(proxy.url("/faulty?list-type=2"))
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    sign_as_client(&mut request, FAULT_CLIENT, FAULT_CLIENT_SECRET);
    let listed = send(request).await;
    assert_eq!(
        (listed.status, listed.error_code().as_str()),
        (StatusCode::BAD_GATEWAY, "BadGateway"),
        "{}",
        listed.text()
    );
    let id = listed.headers["x-amz-request-id"].to_str().unwrap();
    let line = wait_for_access_line(id).await;
    assert!(line.contains("status=502"), "{line}");
    assert!(
        line.contains("upstream_request_id=\"STORE-REQ-CUT-1\""),
        "{line}"
    );
}

/// A store that reads each request head and never answers; counts the connections the
/// proxy opened and those it has since closed (seen as the end of the stream).
async fn silent_store() -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (opened, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let counters = (opened.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counters.0.fetch_add(1, Ordering::SeqCst);
            let closed = counters.1.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0; 64 * 1024];
                while matches!(socket.read(&mut buffer).await, Ok(n) if n > 0) {}
                closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (address, opened, closed)
}

#[tokio::test]
async fn a_client_that_leaves_before_the_store_answers_cancels_the_request_and_is_logged() {
    let (store, opened, closed) = silent_store().await;
    let proxy = proxy_with(store, true).await;
    // Downloads whose clients go away before any answer, and uploads sent whole whose
    // clients go away while the store has not answered.
    let (gets, puts) = (5, 3);
    let mut sockets = Vec::new();
    for i in 0..gets {
        let mut socket = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
        let head = format!("GET /faulty/abandoned-{i}.bin HTTP/1.1\r\nHost: p\r\n\r\n");
        socket.write_all(head.as_bytes()).await.unwrap();
        sockets.push(socket);
    }
    let mut uploads = Vec::new();
    for i in 0..puts {
        let body = vec![b'u'; 64 * 1024];
        let mut request = Request::put(proxy.url(&format!("/faulty/abandoned-upload-{i}.bin")))
            .header("content-length", body.len())
            .body(http_body_util::Full::new(Bytes::from(body)))
            .unwrap();
        sign_as_client(&mut request, FAULT_CLIENT, FAULT_CLIENT_SECRET);
        uploads.push(tokio::spawn(send(request)));
    }
    let clients = gets + puts;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while opened.load(Ordering::SeqCst) < clients && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if opened.load(Ordering::SeqCst) < clients {
        for upload in uploads {
            if upload.is_finished() {
                let answer = upload.await.unwrap();
                panic!(
                    "an upload was answered: {} {}",
                    answer.status,
                    answer.text()
                );
            }
        }
        panic!("not every request reached the store");
    }
    let left = std::time::Instant::now();
    drop(sockets);
    uploads.iter().for_each(|upload| upload.abort());
    // Every store connection is closed within a second of its client leaving.
    while closed.load(Ordering::SeqCst) < clients && left.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        closed.load(Ordering::SeqCst),
        clients,
        "store connections still open after 1 s"
    );
    // And each request has its access line, marked as abandoned (nginx's 499), with the
    // bytes that had moved.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let log = std::fs::read_to_string(test_log()).unwrap_or_default();
        let lines: Vec<String> = log
            .lines()
            .filter(|line| line.contains(" access: ") && line.contains("status=499"))
            .filter(|line| line.contains("integration=\"faulty\""))
            .map(str::to_string)
            .collect();
        if lines.len() >= clients || std::time::Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(lines.len(), clients, "{lines:#?}");
    for line in &lines {
        assert!(
            line.contains("complete=false") && line.contains("code=\"ClientClosedRequest\""),
            "{line}"
        );
    }
    let uploaded = lines
        .iter()
        .filter(|line| line.contains("method=\"PUT\"") && line.contains("bytes_in=65536"))
        .count();
    assert_eq!(uploaded, puts, "{lines:#?}");
}

#[tokio::test]
async fn an_upstream_reset_mid_body_aborts_the_clients_transfer() {
    let mut sized = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
    sized.extend(std::iter::repeat_n(b'x', 1000));
    let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n".to_vec();
    chunked.extend(std::iter::repeat_n(b'y', 1000));
    chunked.extend(b"\r\n");
    for (kind, answer) in [("content-length", sized), ("chunked", chunked)] {
        let proxy = proxy_for(resetting_store(answer).await).await;
        let (status, received, clean, request_id) =
            fetch_to_end(&proxy.url("/faulty/key.bin")).await;
        assert_eq!(status, StatusCode::OK, "{kind}");
        assert!(
            !clean,
            "{kind}: a reset upstream looked like a complete body"
        );
        assert!(received <= 1000, "{kind}: {received}");
        // Its access line says the transfer did not complete, with the bytes that moved.
        let line = eventually("the reset request's access line", || {
            std::fs::read_to_string(test_log())
                .unwrap_or_default()
                .lines()
                .find(|line| line.contains(&format!("request_id={request_id} ")))
                .map(str::to_string)
        })
        .await;
        assert!(line.contains("status=200"), "{kind}: {line}");
        assert!(line.contains("complete=false"), "{kind}: {line}");
        assert!(
            line.contains(&format!("bytes_out={received} ")),
            "{kind}: {line}"
        );
        // Over HTTP/2 the same reset reaches the client as RST_STREAM, never END_STREAM.
        let (status, received, ended) = fetch_over_h2(proxy.address, "/faulty/key.bin").await;
        assert_eq!(status, StatusCode::OK, "{kind}, h2");
        let Err(reset) = ended else {
            panic!("{kind}: an HTTP/2 stream ended cleanly after a reset");
        };
        assert!(reset.is_reset(), "{kind}: {reset:?}");
        assert!(received <= 1000, "{kind}, h2: {received}");
        // The proxy keeps serving.
        assert_eq!(
            get(&proxy.url("/nobody/x")).await.error_code(),
            "NoSuchBucket"
        );
    }
}

#[tokio::test]
async fn an_upstream_reset_before_headers_is_502() {
    let proxy = proxy_for(resetting_store(Vec::new()).await).await;
    let fetched = get(&proxy.url("/faulty/key.bin")).await;
    assert_eq!(fetched.status, StatusCode::BAD_GATEWAY);
    assert_eq!(fetched.error_code(), "BadGateway");
}

/// A store that answers the first request on each connection and keeps the connection open,
/// then hangs up when the next request on it arrives: a server closing an idle connection just
/// as the proxy reuses it. Counts connections and requests.
async fn closing_store(connections: Arc<AtomicUsize>, requests: Arc<AtomicUsize>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            connections.fetch_add(1, Ordering::SeqCst);
            let requests = requests.clone();
            tokio::spawn(async move {
                let mut head = vec![0; 16 * 1024];
                for answered in 0.. {
                    match socket.read(&mut head).await {
                        Ok(n) if n > 0 => requests.fetch_add(1, Ordering::SeqCst),
                        _ => return,
                    };
                    if answered > 0 {
                        return;
                    }
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstored";
                    if socket.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

#[tokio::test]
async fn a_get_on_a_pooled_connection_the_upstream_closed_is_sent_once_more() {
    let (connections, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let store = closing_store(connections.clone(), requests.clone()).await;
    let proxy = proxy_for(store).await;
    for round in 0..3 {
        let fetched = get(&proxy.url("/faulty/key.bin")).await;
        assert_eq!(
            fetched.status,
            StatusCode::OK,
            "round {round}: {}",
            fetched.text()
        );
        assert_eq!(fetched.text(), "stored");
    }
    // Rounds 2 and 3 each met a connection that closed under them and went again on a new
    // one: three connections, five requests seen.
    assert_eq!(connections.load(Ordering::SeqCst), 3);
    assert_eq!(requests.load(Ordering::SeqCst), 5);
    // A store that resets every connection before answering is still 502 (one replay only).
    let proxy = proxy_for(resetting_store(Vec::new()).await).await;
    assert_eq!(
        get(&proxy.url("/faulty/key.bin")).await.status,
        StatusCode::BAD_GATEWAY
    );
}

const UPLOADER: &str = "AKUPLOADER";
const UPLOADER_SECRET: &str = "uploader-secret-0af3";

/// Sends a client-signed PUT of `size` bytes, but only `sent` of them before hanging up (all
/// of them when `sent == size`); returns the status line when the upload completed.
async fn upload(proxy: SocketAddr, key: &str, size: usize, sent: usize) -> Option<String> {
    let mut request = Request::builder()
        .method(Method::PUT)
        .uri(format!("http://{proxy}/media/{key}"))
        .header(header::HOST, proxy.to_string())
        .header(header::CONTENT_LENGTH, size)
        .body(())
        .unwrap();
    sign_as_client(&mut request, UPLOADER, UPLOADER_SECRET);
    let mut head = format!("PUT /media/{key} HTTP/1.1\r\n");
    for (name, value) in request.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    head.push_str("\r\n");
    let mut socket = tokio::net::TcpStream::connect(proxy).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'u'; 64 * 1024];
    let mut written = 0;
    while written < sent {
        let n = chunk.len().min(sent - written);
        socket.write_all(&chunk[..n]).await.unwrap();
        written += n;
    }
    if sent < size {
        tokio::time::sleep(Duration::from_millis(200)).await;
        socket.set_zero_linger().unwrap();
        return None;
    }
    let mut answer = vec![0; 1024];
    let n = socket.read(&mut answer).await.unwrap();
    Some(
        String::from_utf8_lossy(&answer[..n])
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_abandoning_an_upload_leaves_no_object() {
    let dir = TempDir::new("faults-upload");
    let root = dir.0.join("store");
    std::fs::create_dir_all(root.join("media")).unwrap();
    let store = EmbeddedStore::start(&root, None, None).await.unwrap();
    let media = IntegrationFixture::new("media", "media")
        .set("endpoint", store.endpoint())
        .set("access", "read-write")
        .static_keys(&store.access_key_id, "STORE_SECRET");
    let uploader = ClientFixture::new(UPLOADER, "UPLOADER_SECRET", &["media"], "read-write");
    let config = fixtures::config(listen_anywhere(), &[media], &[uploader]);
    let secrets = std::collections::BTreeMap::from([
        ("STORE_SECRET".to_string(), store.secret_access_key.clone()),
        ("UPLOADER_SECRET".to_string(), UPLOADER_SECRET.to_string()),
    ]);
    let proxy = start_proxy(&config, &secrets).await;
    let size = 4 << 20;

    // The control: a whole upload lands.
    let status = upload(proxy.address, "whole.bin", size, size)
        .await
        .unwrap();
    assert!(status.contains("200"), "{status}");
    assert_eq!(
        std::fs::metadata(root.join("media/whole.bin"))
            .unwrap()
            .len(),
        size as u64
    );

    // Half an upload, then the client hangs up: nothing is stored.
    assert!(
        upload(proxy.address, "half.bin", size, size / 2)
            .await
            .is_none()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !root.join("media/half.bin").exists(),
        "a partial object was stored"
    );
}
