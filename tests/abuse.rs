//! A raw-socket corpus of abusive request shapes: smuggling (CL+TE, odd or repeated lengths and
//! codings, chunk-extension floods), absolute-form targets and CONNECT, hosts pointing
//! elsewhere, oversized heads, NUL/CR/LF where they do not belong. Each gets a 4xx or a closed
//! connection, none reaches the upstream, and the proxy keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// Sends `raw` on a fresh connection; the status code of the answer, or `None` when the
/// connection was closed without one.
async fn send_raw(address: std::net::SocketAddr, raw: &[u8]) -> Option<u16> {
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    // A peer may close before reading everything; that is a fine outcome too.
    let _ = socket.write_all(raw).await;
    let mut answer = Vec::new();
    let mut buffer = vec![0; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buffer[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer and no close within 5 s");
    let text = String::from_utf8_lossy(&answer);
    let status = text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    Some(status)
}

fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let mut cases: Vec<(&'static str, Vec<u8>)> = vec![
        (
            "CL and TE together",
            b"POST /acme/owner.txt?uploads HTTP/1.1\r\nHost: p\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /acme/owner.txt HTTP/1.1\r\nHost: p\r\n\r\n".to_vec(),
        ),
        (
            "signed Content-Length",
            b"PUT /acme/x HTTP/1.1\r\nHost: p\r\nContent-Length: +5\r\n\r\nhello".to_vec(),
        ),
        (
            "two different Content-Lengths",
            b"PUT /acme/x HTTP/1.1\r\nHost: p\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec(),
        ),
        // (Two *equal* Content-Lengths are folded into one by hyper, as RFC 9110 allows: not
        // a smuggling shape, so not here.)
        (
            "chunked, identity",
            b"PUT /acme/x HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "two Transfer-Encodings",
            b"GET /acme/owner.txt HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "chunked GET body",
            b"GET /acme/owner.txt HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "absolute-form target",
            b"GET http://evil.example/acme/owner.txt HTTP/1.1\r\nHost: evil.example\r\n\r\n".to_vec(),
        ),
        (
            "no Host",
            b"GET /acme/owner.txt HTTP/1.1\r\n\r\n".to_vec(),
        ),
        (
            "two Hosts",
            b"GET /acme/owner.txt HTTP/1.1\r\nHost: p\r\nHost: acme.p\r\n\r\n".to_vec(),
        ),
        (
            "CONNECT",
            b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n".to_vec(),
        ),
        (
            "NUL in the path",
            b"GET /acme/own\0er.txt HTTP/1.1\r\nHost: p\r\n\r\n".to_vec(),
        ),
        (
            "encoded NUL in the key",
            b"GET /acme/own%00er.txt HTTP/1.1\r\nHost: p\r\n\r\n".to_vec(),
        ),
        (
            "encoded CR LF in the key",
            b"GET /acme/a%0d%0aX-Injected:%201 HTTP/1.1\r\nHost: p\r\n\r\n".to_vec(),
        ),
        (
            "bare CR in a header",
            b"GET /acme/owner.txt HTTP/1.1\r\nHost: p\r\nX-A: a\rb\r\n\r\n".to_vec(),
        ),
        (
            "space before the colon",
            b"GET /acme/owner.txt HTTP/1.1\r\nHost: p\r\nContent-Length : 5\r\n\r\nhello".to_vec(),
        ),
        (
            "obsolete line folding",
            b"GET /acme/owner.txt HTTP/1.1\r\nHost: p\r\nX-A: a\r\n b\r\n\r\n".to_vec(),
        ),
        (
            "HTTP/1.0 with a chunked body",
            b"POST /acme/owner.txt?uploads HTTP/1.0\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "unknown method",
            b"PROPFIND /acme/owner.txt HTTP/1.1\r\nHost: p\r\n\r\n".to_vec(),
        ),
        (
            "TRACE",
            b"TRACE /acme/owner.txt HTTP/1.1\r\nHost: p\r\n\r\n".to_vec(),
        ),
    ];
    // 20,000 chunk extensions on a PUT: hyper caps extension bytes.
    let mut flood =
        b"PUT /acme/x HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n1".to_vec();
    for _ in 0..20_000 {
        flood.extend_from_slice(b";ext=value");
    }
    flood.extend_from_slice(b"\r\na\r\n0\r\n\r\n");
    cases.push(("chunk-extension flood", flood));
    let mut big = b"GET /acme/owner.txt HTTP/1.1\r\nHost: p\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 64 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    cases.push(("a 64 KiB header", big));
    let mut many = b"GET /acme/owner.txt HTTP/1.1\r\nHost: p\r\n".to_vec();
    for i in 0..500 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    cases.push(("500 headers", many));
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abusive_requests_get_a_4xx_or_a_closed_connection_and_never_reach_s3() {
    let moto = moto();
    let s3 = PassThrough::start(moto.address()).await;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{}",
        static_reader_integration(
            "acme",
            &format!("bucket = \"{}\"", moto.tenant_a.bucket),
            &s3.endpoint(),
        )
    );
    let proxy = start_proxy(&config, &secrets(moto)).await;
    for (name, raw) in corpus() {
        let status = send_raw(proxy.address, &raw).await;
        assert!(
            status.is_none_or(|s| (400..500).contains(&s)),
            "{name}: answered {status:?}"
        );
        assert_eq!(s3.requests(), 0, "{name} reached S3");
    }
    // Still serving, and only from the configured upstream whatever the request claims.
    let fetched = request(
        http::Method::GET,
        &proxy.url("/acme/owner.txt"),
        &[
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "host=evil.example;proto=https"),
        ],
    )
    .await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.text(), "tenant a\n");
    assert_eq!(s3.requests(), 1);
}
