//! The limits that protect a public listener: slow heads, the rate limit (per key, per
//! address, and for the client a trusted balancer or the PROXY protocol names), a stalled
//! store, and heads or targets over their size.
// This file reads raw HTTP answers off a socket. .clippy.toml's ban on editing text is for the
// proxy's own code.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// Asserts that `took` shows the configured timeout acting, not the default: nearer the one
/// than the other. These timeouts are kept by the runtime's timers (hyper's, tokio's) and the
/// kernel's, not the proxy's clock, so only real time shows them; the bound is half the gap
/// between the two, not a speed claim.
fn assert_configured_timeout(took: Duration, configured: Duration, default: Duration) {
    assert!(
        took < (configured + default) / 2,
        "{took:?}: the default {default:?} acted, not the configured {configured:?}"
    );
}

fn config_with_limits(limits: &str, integration: &str) -> String {
    format!("[server]\nlisten = \"127.0.0.1:0\"\n[server.limits]\n{limits}\n{integration}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_while_others_are_served() {
    let moto = moto();
    let config = config_with_limits(
        "header_read_timeout = \"2s\"",
        &static_reader_integration(
            "acme",
            &format!("bucket = \"{}\"", moto.tenant_a.bucket),
            &moto.endpoint(),
        ),
    );
    let proxy = start_proxy(&config, &secrets(moto)).await;
    let mut slow = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
    let started = Instant::now();
    let slow_client = tokio::spawn(async move {
        let request = b"GET /acme/owner.txt HTTP/1.1\r\nHost: proxy\r\nX-Padding: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        for byte in request {
            if slow.write_all(&[*byte]).await.is_err() {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("the whole slow request was accepted");
    });
    // Others are served meanwhile.
    for _ in 0..3 {
        let fetched = get(&proxy.url("/acme/owner.txt")).await;
        assert_eq!(fetched.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let cut_after = tokio::time::timeout(Duration::from_secs(15), slow_client)
        .await
        .expect("the slow client was never cut off")
        .unwrap();
    assert_configured_timeout(cut_after, Duration::from_secs(2), Duration::from_secs(10));
}

#[tokio::test]
async fn a_refused_caller_is_served_again_once_a_token_is_back() {
    let proxy = proxy_with_limits("rate_limit = 1\nrate_limit_burst = 1").await;
    let url = proxy.url("/acme/owner.txt");
    assert_eq!(get(&url).await.status, StatusCode::OK);
    let refused = get(&url).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers["retry-after"], "1");
    // One token a second: a second later (on the proxy's clock) one request, not two.
    proxy.clock.advance(Duration::from_secs(1));
    assert_eq!(get(&url).await.status, StatusCode::OK);
    assert_eq!(get(&url).await.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn over_the_rate_limit_callers_get_429_slowdown() {
    let moto = moto();
    let dir = TempDir::new("ops-rate");
    let config = format!(
        "[server]\nlisten = \"LISTEN\"\n{}",
        static_reader_integration(
            "acme",
            &format!("bucket = \"{}\"", moto.tenant_a.bucket),
            &moto.endpoint(),
        )
    );
    let mut env = moto_env(moto);
    // Set through the environment, as a container would.
    env.push(("S3SP_SERVER__LIMITS__RATE_LIMIT", "1".to_string()));
    env.push(("S3SP_SERVER__LIMITS__RATE_LIMIT_BURST", "3".to_string()));
    let proxy = ProxyProcess::spawn_with(
        &dir.0,
        &config,
        &env_refs(&env),
        &["--log-format", "logfmt"],
    )
    .await;
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..6 {
        let fetched = get(&proxy.url("/acme/owner.txt")).await;
        statuses.push(fetched.status.as_u16());
        if fetched.status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(fetched);
        }
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert_eq!(&statuses[3..], &[429, 429, 429], "{statuses:?}");
    let refused = refused.unwrap();
    assert_eq!(refused.error_code(), "SlowDown");
    assert!(refused.headers.contains_key("retry-after"));
    // The refusals are in the logfmt access lines.
    let refusals = |log: &str| {
        log.lines()
            .filter(|l| l.contains("target=access") && l.contains(" status=429 "))
            .filter(|l| l.contains(" code=SlowDown ") && l.contains(" integration=-"))
            .count()
    };
    eventually("three refusals logged", || {
        (refusals(&proxy.log()) >= 3).then_some(())
    })
    .await;
    assert_eq!(refusals(&proxy.log()), 3, "{}", proxy.log());
}

#[tokio::test]
async fn a_stalled_upstream_gets_504_and_huge_heads_get_431() {
    let stall = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stall_address = stall.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            let (socket, _) = stall.accept().await.unwrap();
            open.push(socket);
        }
    });
    let integration = IntegrationFixture::new("stalled", "stalled-bucket")
        .set("endpoint", format!("http://{stall_address}"))
        .set("public", true)
        .static_keys("AKSTALL", "STALL_SECRET")
        .toml();
    let config = config_with_limits(
        "upstream_first_byte_timeout = \"500ms\"\nmax_headers = 50",
        &integration,
    );
    let secrets = std::collections::BTreeMap::from([(
        "STALL_SECRET".to_string(),
        "stall-secret".to_string(),
    )]);
    let proxy = start_proxy(&config, &secrets).await;
    let started = Instant::now();
    let fetched = get(&proxy.url("/stalled/key")).await;
    assert_eq!(fetched.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(fetched.error_code(), "RequestTimeout");
    let (configured, default) = (Duration::from_millis(500), Duration::from_secs(30));
    assert_configured_timeout(started.elapsed(), configured, default);

    let mut raw = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
    let mut head = "GET /stalled/key HTTP/1.1\r\nHost: proxy\r\n".to_string();
    for i in 0..80 {
        head.push_str(&format!("x-filler-{i}: v\r\n"));
    }
    head.push_str("\r\n");
    raw.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 64];
    let n = raw.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    // A head over max_header_bytes (16 KiB) but within the body buffer that hyper reads it
    // into is refused by the proxy itself, in S3's words.
    let mut raw = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
    let big = format!(
        "GET /stalled/key HTTP/1.1\r\nHost: proxy\r\nx-big: {}\r\nConnection: close\r\n\r\n",
        "v".repeat(20_000)
    );
    raw.write_all(big.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    raw.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(
        answer.contains("<Code>RequestHeaderSectionTooLarge</Code>"),
        "{answer}"
    );

    let long = format!("/stalled/{}", "k".repeat(9000));
    let refused = get(&proxy.url(&long)).await;
    assert_eq!(refused.status, StatusCode::URI_TOO_LONG);
    assert_eq!(refused.error_code(), "RequestURITooLong");
    held.abort();
}

/// The answer's status line to a GET whose head has `count` header fields in all.
async fn status_line_with_headers(proxy: &RunningProxy, count: usize) -> String {
    let mut raw = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
    let mut head = "GET /no-such-bucket/key HTTP/1.1\r\nHost: proxy\r\n".to_string();
    for i in 1..count - 1 {
        head.push_str(&format!("x-filler-{i}: v\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    raw.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    raw.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_header_count_allows_100_fields_and_refuses_101() {
    let config = config_with_limits(
        "",
        &static_reader_integration(
            "counted",
            "bucket = \"counted-bucket\"",
            "http://127.0.0.1:9",
        ),
    );
    let secrets = std::collections::BTreeMap::from([(
        "STATIC_READER_SECRET".to_string(),
        "unused".to_string(),
    )]);
    let proxy = start_proxy(&config, &secrets).await;
    // 100 fields reach the proxy, which finds no such bucket; 101 are refused by the parser.
    assert_eq!(
        status_line_with_headers(&proxy, 100).await,
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        status_line_with_headers(&proxy, 101).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
}

/// Sends a GET for `path` from the local address `from` (any 127.x.y.z is loopback), after
/// `preamble` (a PROXY protocol header, or nothing); the status, or `None` when the proxy
/// closed the connection without answering.
async fn get_from(
    from: std::net::IpAddr,
    proxy: std::net::SocketAddr,
    preamble: &[u8],
    path: &str,
    headers: &[(&str, &str)],
) -> Option<u16> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::new(from, 0)).unwrap();
    let mut stream = socket.connect(proxy).await.unwrap();
    let mut request = preamble.to_vec();
    request.extend_from_slice(
        format!("GET {path} HTTP/1.1\r\nHost: p\r\nConnection: close\r\n").as_bytes(),
    );
    for (name, value) in headers {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let _ = stream.write_all(&request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer));
    assert!(read.await.is_ok(), "no answer and no close within 5 s");
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// The `client_ip` values of the access lines, in order.
fn logged_client_ips(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("target=access"))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("client_ip=")))
        .map(str::to_string)
        .collect()
}

/// One token per caller, refilled every 100 s: a second request from a caller is refused.
const ONE_REQUEST_EACH: &str = "[server.limits]\nrate_limit = 0.01\nrate_limit_burst = 1\n";

/// The binary with `server_line` in `[server]`, [`ONE_REQUEST_EACH`], logfmt lines and a public
/// `acme` integration on moto.
async fn limited_public_proxy(dir: &TempDir, server_line: &str) -> ProxyProcess {
    let moto = moto();
    let config = format!(
        "[server]\nlisten = \"LISTEN\"\n{server_line}\n{ONE_REQUEST_EACH}{}",
        static_reader_integration(
            "acme",
            &format!("bucket = \"{}\"", moto.tenant_a.bucket),
            &moto.endpoint(),
        )
    );
    let env = moto_env(moto);
    ProxyProcess::spawn_with(
        &dir.0,
        &config,
        &env_refs(&env),
        &["--log-format", "logfmt"],
    )
    .await
}

#[tokio::test]
async fn behind_a_trusted_balancer_the_forwarded_client_is_limited_and_logged() {
    let dir = TempDir::new("ops-forwarded");
    let proxy = limited_public_proxy(&dir, "trusted_proxies = [\"127.0.0.1/32\"]").await;
    let balancer: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let stranger: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let path = "/acme/owner.txt";
    let xff = |client| [("X-Forwarded-For", client)];
    let statuses = [
        // From the trusted balancer: each forwarded client has its own bucket, and the
        // spoofed left-most entry of the second request is not who is counted.
        get_from(balancer, proxy.address, b"", path, &xff("203.0.113.1")).await,
        get_from(
            balancer,
            proxy.address,
            b"",
            path,
            &xff("6.6.6.6, 203.0.113.2"),
        )
        .await,
        get_from(balancer, proxy.address, b"", path, &xff("203.0.113.1")).await,
        // From a peer nobody trusts: its header is ignored and the peer itself is counted.
        get_from(stranger, proxy.address, b"", path, &xff("203.0.113.3")).await,
        get_from(stranger, proxy.address, b"", path, &xff("203.0.113.4")).await,
    ];
    assert_eq!(
        statuses,
        [Some(200), Some(200), Some(429), Some(200), Some(429)]
    );
    eventually("five access lines", || {
        (logged_client_ips(&proxy.log()).len() >= 5).then_some(())
    })
    .await;
    assert_eq!(
        logged_client_ips(&proxy.log()),
        [
            "203.0.113.1",
            "203.0.113.2",
            "203.0.113.1",
            "127.0.0.2",
            "127.0.0.2"
        ]
    );
}

#[tokio::test]
async fn with_the_proxy_protocol_on_the_header_names_the_client_and_is_required() {
    let dir = TempDir::new("ops-proxy-protocol");
    let proxy = limited_public_proxy(
        &dir,
        "proxy_protocol = true\ntrusted_proxies = [\"127.0.0.1/32\"]",
    )
    .await;
    let local: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let stranger: std::net::IpAddr = "127.0.0.3".parse().unwrap();
    let path = "/acme/owner.txt";
    let v1 = b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 443\r\n";
    // v2: PROXY over TCP/IPv4 from 198.51.100.8:40001.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[198, 51, 100, 8, 127, 0, 0, 1, 0x9c, 0x41, 0x01, 0xbb]);
    let statuses = [
        get_from(local, proxy.address, v1, path, &[]).await,
        get_from(local, proxy.address, v1, path, &[]).await,
        get_from(local, proxy.address, &v2, path, &[]).await,
        // The balancer's connection without a header is closed unanswered.
        get_from(local, proxy.address, b"", path, &[]).await,
        get_from(local, proxy.address, b"PROXY TCP4 nonsense\r\n", path, &[]).await,
        // A peer that is not a listed balancer cannot claim an address: closed, in either
        // version. Without a header it is served as itself.
        get_from(
            stranger,
            proxy.address,
            b"PROXY TCP4 198.51.100.9 127.0.0.1 40000 443\r\n",
            path,
            &[],
        )
        .await,
        get_from(stranger, proxy.address, &v2, path, &[]).await,
        get_from(stranger, proxy.address, b"", path, &[]).await,
    ];
    assert_eq!(
        statuses,
        [
            Some(200),
            Some(429),
            Some(200),
            None,
            None,
            None,
            None,
            Some(200)
        ]
    );
    let expected = ["198.51.100.7", "198.51.100.7", "198.51.100.8", "127.0.0.3"];
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while logged_client_ips(&proxy.log()).len() < expected.len()
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(logged_client_ips(&proxy.log()), expected);
}

/// The acme integration on moto's tenant A, behind `limits`.
async fn proxy_with_limits(limits: &str) -> RunningProxy {
    let moto = moto();
    let config = config_with_limits(
        limits,
        &static_reader_integration(
            "acme",
            &format!("bucket = \"{}\"", moto.tenant_a.bucket),
            &moto.endpoint(),
        ),
    );
    start_proxy(&config, &secrets(moto)).await
}

/// Reads one whole answer (its head, then `Content-Length` bytes) off `socket`; its status
/// line.
async fn read_answer(socket: &mut tokio::net::TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = socket.read(&mut buffer).await.unwrap();
        assert!(n > 0, "closed before a whole answer");
        answer.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&answer).to_string();
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let length: usize = text[..end]
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        if answer.len() >= end + 4 + length {
            return text.lines().next().unwrap().to_string();
        }
    }
}

/// Reads until the peer closes the connection; the time that took.
async fn closed_after(socket: &mut tokio::net::TcpStream) -> Duration {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while !matches!(socket.read(&mut buffer).await, Ok(0) | Err(_)) {}
    });
    closed.await.expect("the proxy never closed the connection");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_idle_timeout_and_a_busy_one_is_not() {
    let proxy = proxy_with_limits("idle_timeout = \"1s\"").await;
    // Silent from the start.
    let mut idle = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
    // Busy: a request every 400 ms for 2 s keeps it open past the timeout.
    let mut busy = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
    let idle_closed = tokio::spawn(async move { closed_after(&mut idle).await });
    let request = b"GET /acme/owner.txt HTTP/1.1\r\nHost: proxy\r\n\r\n";
    for _ in 0..5 {
        busy.write_all(request).await.unwrap();
        assert_eq!(read_answer(&mut busy).await, "HTTP/1.1 200 OK");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let idle_for = idle_closed.await.unwrap();
    assert_configured_timeout(idle_for, Duration::from_secs(1), Duration::from_secs(60));
    // Then the busy one idles, and goes too.
    closed_after(&mut busy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_max_connections_wait_until_one_closes() {
    let proxy = proxy_with_limits("max_connections = 2").await;
    let request = b"GET /acme/owner.txt HTTP/1.1\r\nHost: proxy\r\n\r\n";
    let mut answer = vec![0u8; 64 * 1024];
    // Two connections, served, then held open.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut socket = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
        socket.write_all(request).await.unwrap();
        assert_eq!(read_answer(&mut socket).await, "HTTP/1.1 200 OK");
        held.push(socket);
    }
    // A third connects (the kernel's queue takes it) but is not served while both are held.
    let mut third = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
    third.write_all(request).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(500), third.read(&mut answer)).await;
    assert!(
        waited.is_err(),
        "a third connection was served over the cap"
    );
    // One goes: the third is served.
    drop(held.pop());
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut answer))
        .await
        .expect("the third connection was never served")
        .unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_never_accepts_is_502_after_upstream_connect_timeout() {
    // A listener that never accepts, its queue filled: the kernel drops further SYNs, so a
    // connection to it hangs in connect, as to a host that does not answer.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let store = listener.local_addr().unwrap();
    let mut filling = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(connection)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(store),
        )
        .await
        {
            filling.push(connection);
        }
    }
    assert!(!filling.is_empty(), "the queue took no connection");
    let moto = moto();
    let config = config_with_limits(
        "upstream_connect_timeout = \"1s\"",
        &static_reader_integration("acme", "bucket = \"never\"", &format!("http://{store}")),
    );
    let proxy = start_proxy(&config, &secrets(moto)).await;
    let started = Instant::now();
    let fetched = get(&proxy.url("/acme/owner.txt")).await;
    let took = started.elapsed();
    assert_eq!(
        fetched.status,
        StatusCode::BAD_GATEWAY,
        "{}",
        fetched.text()
    );
    assert_eq!(fetched.error_code(), "BadGateway");
    // It waited for the connection (a refusal would be at once), and gave up when told.
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert_configured_timeout(took, Duration::from_secs(1), Duration::from_secs(5));
    drop(listener);
}
