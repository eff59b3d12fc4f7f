//! Load and soak (not in CI; `scripts/soak` runs it): for `SOAK_SECONDS` (default 60), at once
//! - `SOAK_CLIENTS` (1000) keep-alive clients loop over 1 KiB objects,
//! - `SOAK_DOWNLOADS` (64) slow readers download a `SOAK_LARGE_MIB` (256) MiB object over and
//!   over, reading 1 MiB then pausing 50 ms,
//! - `SOAK_IDLE` (500) connections are opened and left idle,
//!
//! through the proxy binary in front of nginx. It reports successes, errors (anything but 200,
//! counting clean 503 shedding apart), the proxy's peak RSS and peak open file descriptors.
// Tests may search and edit text freely; .clippy.toml's ban is for the proxy's own code.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a load test fails loudly

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

// The e2e bench's processes: nginx, the child handle, ports. Soak uses some of them.
#[allow(dead_code)]
#[path = "e2e/processes.rs"]
mod processes;

use processes::{Killed, free_port, start_nginx, wait_for};

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn start_proxy(work: &Path, store_port: u16, port: u16) -> Killed {
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[server.limits]
rate_limit = 0
max_connections = 4000
idle_timeout = "5m"
[[integration]]
name = "soak"
bucket = "soak-bucket"
region = "us-east-1"
endpoint = "http://127.0.0.1:{store_port}"
public = true
[integration.credentials]
access_key_id = "AKIDSOAK"
secret_access_key_env = "SOAK_STORE_SECRET"
"#
    );
    let config_path = work.join("proxy.toml");
    std::fs::write(&config_path, config).unwrap();
    Killed(
        Command::new(env!("CARGO_BIN_EXE_s3-signing-proxy"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("SOAK_STORE_SECRET", "not-checked-by-nginx")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the proxy"),
    )
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    shed: AtomicU64,
    errors: AtomicU64,
    downloads: AtomicU64,
    download_errors: AtomicU64,
}

fn sample(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    (rss, fds)
}

#[tokio::main]
async fn main() {
    let seconds = setting("SOAK_SECONDS", 60);
    let clients = setting("SOAK_CLIENTS", 1000);
    let downloads = setting("SOAK_DOWNLOADS", 64);
    let idle = setting("SOAK_IDLE", 500);
    let large_mib = setting("SOAK_LARGE_MIB", 256);

    let work = std::env::temp_dir().join(format!("s3sp-soak-{}", std::process::id()));
    let root = work.join("root");
    std::fs::create_dir_all(root.join("soak-bucket")).unwrap();
    for i in 0..1000 {
        std::fs::write(
            root.join(format!("soak-bucket/small-{i}.bin")),
            vec![b's'; 1024],
        )
        .unwrap();
    }
    {
        use std::io::Write;
        let mut file = std::fs::File::create(root.join("soak-bucket/large.bin")).unwrap();
        let chunk = vec![b'L'; 1 << 20];
        for _ in 0..large_mib {
            file.write_all(&chunk).unwrap();
        }
    }
    let store_port = free_port();
    let _nginx = start_nginx(&root, &work, store_port);
    wait_for(store_port).await;
    let proxy_port = free_port();
    let proxy = start_proxy(&work, store_port, proxy_port);
    let pid = proxy.pid();
    wait_for(proxy_port).await;
    println!(
        "soak: {seconds}s, {clients} keep-alive clients on 1 KiB objects, {downloads} slow \
         {large_mib} MiB downloads, {idle} idle connections"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let base = format!("http://127.0.0.1:{proxy_port}/soak");
    let mut tasks = Vec::new();

    let mut idle_sockets = Vec::new();
    for _ in 0..idle {
        if let Ok(socket) = tokio::net::TcpStream::connect(("127.0.0.1", proxy_port)).await {
            idle_sockets.push(socket);
        }
    }
    let small_client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(usize::MAX)
        .build_http();
    for worker in 0..clients {
        let (client, stop, tally, base) = (
            small_client.clone(),
            stop.clone(),
            tally.clone(),
            base.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = worker;
            while !stop.load(Ordering::Relaxed) {
                let url = format!("{base}/small-{}.bin", n % 1000);
                n += 7;
                match client.get(url.parse().unwrap()).await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let body = response.into_body().collect().await;
                        match (status, body) {
                            (200, Ok(_)) => tally.ok.fetch_add(1, Ordering::Relaxed),
                            (503, _) => tally.shed.fetch_add(1, Ordering::Relaxed),
                            _ => tally.errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    Err(_) => {
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let large_client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    for _ in 0..downloads {
        let (client, stop, tally, url) = (
            large_client.clone(),
            stop.clone(),
            tally.clone(),
            format!("{base}/large.bin"),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(response) = client.get(url.parse().unwrap()).await else {
                    tally.download_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let mut body = response.into_body();
                let mut since_pause = 0;
                let mut complete = false;
                loop {
                    match body.frame().await {
                        None => {
                            complete = true;
                            break;
                        }
                        Some(Err(_)) => break,
                        Some(Ok(frame)) => {
                            since_pause += frame.data_ref().map_or(0, |d| d.len());
                            if since_pause >= 1 << 20 {
                                since_pause = 0;
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                        }
                    }
                }
                if complete {
                    tally.downloads.fetch_add(1, Ordering::Relaxed);
                } else if !stop.load(Ordering::Relaxed) {
                    tally.download_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    let started = Instant::now();
    let mut peak_fds = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (_, fds) = sample(pid);
        peak_fds = peak_fds.max(fds);
    }
    stop.store(true, Ordering::Relaxed);
    let (peak_rss, _) = sample(pid);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    let idle_open = idle_sockets.len();
    drop(idle_sockets);
    let ok = tally.ok.load(Ordering::Relaxed);
    println!(
        "small GETs: {ok} ok ({:.0}/s), {} shed with 503, {} errors",
        ok as f64 / seconds as f64,
        tally.shed.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed)
    );
    println!(
        "large downloads: {} complete, {} failed",
        tally.downloads.load(Ordering::Relaxed),
        tally.download_errors.load(Ordering::Relaxed)
    );
    println!("idle connections held: {idle_open}");
    println!("proxy peak RSS {peak_rss} MiB, peak open file descriptors {peak_fds}");
    let _ = std::fs::remove_dir_all(&work);
}
