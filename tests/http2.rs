//! HTTP/2 abuse: the stream limit the proxy advertises, and a rapid-reset flood (streams opened
//! and cancelled at once) that must end the abusive connection while others are served.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};

use crate::support::*;

async fn h2_connect(address: std::net::SocketAddr) -> h2::client::SendRequest<Bytes> {
    let socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let (send, connection) = h2::client::handshake(socket).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send
}

fn get(address: std::net::SocketAddr, path: &str) -> Request<()> {
    Request::get(format!("http://{address}{path}"))
        .body(())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_serves_with_a_stream_limit_and_survives_a_rapid_reset_flood() {
    let moto = moto();
    let s3 = PassThrough::start(moto.address()).await;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.limits]\nrate_limit = 0\n{}",
        static_reader_integration(
            "acme",
            &format!("bucket = \"{}\"", moto.tenant_a.bucket),
            &s3.endpoint(),
        )
    );
    let proxy = start_proxy(&config, &secrets(moto)).await;

    let send = h2_connect(proxy.address).await;
    let mut ready = send.clone().ready().await.unwrap();
    let (response, _) = ready
        .send_request(get(proxy.address, "/acme/owner.txt"), true)
        .unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(ready.current_max_send_streams(), 256);

    // Open and cancel streams as fast as possible on one connection.
    let mut flood = h2_connect(proxy.address).await;
    let mut opened = 0;
    let mut cut_off = false;
    for _ in 0..20_000 {
        match flood.clone().ready().await {
            Ok(mut ready) => {
                match ready.send_request(get(proxy.address, "/acme/owner.txt"), true) {
                    Ok((_, mut stream)) => {
                        stream.send_reset(h2::Reason::CANCEL);
                        opened += 1;
                    }
                    Err(_) => {
                        cut_off = true;
                        break;
                    }
                }
            }
            Err(_) => {
                cut_off = true;
                break;
            }
        }
        flood = flood.clone();
    }
    assert!(cut_off, "the server let {opened} rapid resets through");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reached = s3.requests();
    println!("rapid reset: connection ended after {opened} streams; {reached} reached S3");
    assert!(reached < 2_000, "{reached} cancelled requests reached S3");

    // Others are still served, over HTTP/2 and HTTP/1.1.
    let mut again = h2_connect(proxy.address).await.ready().await.unwrap();
    let (response, _) = again
        .send_request(get(proxy.address, "/acme/owner.txt"), true)
        .unwrap();
    assert_eq!(response.await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        crate::support::get(&proxy.url("/acme/owner.txt"))
            .await
            .status,
        StatusCode::OK
    );
}
