//! A real browser against the demo: headless Chromium loads the page from the proxy, the image
//! (a private object behind a presigned proxy URL) renders, the video seeks to its middle
//! through Range requests, and CORS lets an allowed origin fetch while blocking another.
// Tests may search and edit text freely; .clippy.toml's ban is for the proxy's own code.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::process::{Command, Stdio};

use support::*;

struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serves a blank page on a loopback port, as another web application would; returns its origin.
async fn blank_page_origin() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let page = "<!doctype html><title>another app</title>";
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    origin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_renders_plays_seeks_and_enforces_cors_in_chromium() {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "Chromium is missing: run scripts/test, which installs it"
    );
    let allowed_origin = blank_page_origin().await;
    let blocked_origin = blank_page_origin().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_s3-signing-proxy"))
            .args([
                "demo",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--cors-origin",
                &allowed_origin,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the demo"),
    );
    let mut up = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(up, "the demo did not start");

    let output = tokio::process::Command::new("node")
        .arg(repo_root().join("tests/support/browser_check.js"))
        .args([
            &format!("http://127.0.0.1:{port}/demo/index.html"),
            &allowed_origin,
            &blocked_origin,
        ])
        .env("NODE_PATH", repo_root().join(".browser/node_modules"))
        .output()
        .await
        .expect("run node");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    assert!(
        seen["image"]["naturalWidth"].as_f64().unwrap() > 0.0,
        "{seen}"
    );
    assert!(
        seen["image"]["src"]
            .as_str()
            .unwrap()
            .contains("X-Amz-Signature="),
        "{seen}"
    );
    let (seek_to, now) = (
        seen["video"]["seekTo"].as_f64().unwrap(),
        seen["video"]["currentTime"].as_f64().unwrap(),
    );
    assert!(
        seek_to > 1.0 && now > seek_to,
        "the video played past the seek point: {seen}"
    );
    assert_eq!(seen["allowed"]["status"], 206, "{seen}");
    assert_eq!(seen["allowed"]["bytes"], 4, "{seen}");
    assert_eq!(seen["blocked"]["blocked"], true, "{seen}");
}
