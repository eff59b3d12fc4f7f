//! End-to-end benchmark: the same downloads straight from a local store and through the proxy,
//! in one run, reported as proxied/direct ratios (these machines are too noisy for absolute
//! figures to mean much), plus the proxy's peak RSS.
//!
//! The store is nginx serving a temp dir laid out as `/{bucket}/{key}`: it moves GB/s on
//! loopback, so the proxy, not the store, is what the ratios measure (nginx ignores the
//! signatures, which is fine for a speed figure). `scripts/bench` installs nginx and runs this.
//!
//! Environment: `BENCH_LARGE_MIB` (default 256), `BENCH_LARGE_ROUNDS` (3), `BENCH_SMALL_OBJECTS`
//! (1000), `BENCH_SMALL_REQUESTS` (20000), `BENCH_CONCURRENCY` (32).
// Tests may search and edit text freely; .clippy.toml's ban is for the proxy's own code.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fails loudly

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;
type UploadClient = Client<HttpConnector, Full<Bytes>>;

const CLIENT_KEY: &str = "AKBENCHCLIENT";
const CLIENT_SECRET: &str = "bench-client-secret";

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nginx_binary() -> PathBuf {
    for candidate in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("nginx is not installed: run scripts/bench, which installs it");
}

fn start_nginx(root: &Path, work: &Path, port: u16) -> Killed {
    let config = format!(
        "daemon off;\nworker_processes 1;\npid {work}/nginx.pid;\nerror_log {work}/nginx-error.log;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n\
           client_body_temp_path {work}/body;\n  proxy_temp_path {work}/proxy;\n  fastcgi_temp_path {work}/fastcgi;\n\
           uwsgi_temp_path {work}/uwsgi;\n  scgi_temp_path {work}/scgi;\n\
           client_max_body_size 0;\n\
           server {{ listen 127.0.0.1:{port}; root {root}; dav_methods PUT; create_full_put_path on; }}\n}}\n",
        work = work.display(),
        root = root.display(),
    );
    let config_path = work.join("nginx.conf");
    std::fs::write(&config_path, config).unwrap();
    let child = Command::new(nginx_binary())
        .arg("-c")
        .arg(&config_path)
        .arg("-e")
        .arg(work.join("nginx-error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    Killed(child)
}

fn start_proxy(work: &Path, store_port: u16, port: u16) -> Killed {
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[server.limits]
# One client hammering on purpose: no rate limit here.
rate_limit = 0
[[integration]]
name = "bench"
bucket = "bench-bucket"
region = "us-east-1"
endpoint = "http://127.0.0.1:{store_port}"
public = true
access = "read-write"
[integration.credentials]
access_key_id = "AKIDBENCH"
secret_access_key_env = "BENCH_STORE_SECRET"

[[client]]
access_key_id = "{CLIENT_KEY}"
secret_access_key_env = "BENCH_CLIENT_SECRET"
integrations = ["bench"]
access = "read-write"
"#
    );
    let config_path = work.join("proxy.toml");
    std::fs::write(&config_path, config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_s3-signing-proxy"))
        .args(["serve", "--config"])
        .arg(&config_path)
        .env("BENCH_STORE_SECRET", "bench-secret-not-checked-by-nginx")
        .env("BENCH_CLIENT_SECRET", CLIENT_SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the proxy");
    Killed(child)
}

async fn wait_for(port: u16) {
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on {port}");
}

fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

/// Downloads `url` and counts its bytes without keeping them.
async fn download(client: &HttpClient, url: &str) -> u64 {
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

/// Large-object throughput in MiB/s: `rounds` sequential downloads of one object.
async fn large_throughput(client: &HttpClient, url: &str, rounds: usize) -> f64 {
    download(client, url).await; // warm the page cache and the connection
    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..rounds {
        bytes += download(client, url).await;
    }
    bytes as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64()
}

/// PUTs `body` to `url`, signed with the bench client's key when `signed` (the proxy checks
/// it; nginx does not). The body is shared, not copied, between uploads.
async fn upload(client: &UploadClient, url: &str, body: Bytes, signed: bool) {
    let mut request = http::Request::new(());
    *request.method_mut() = http::Method::PUT;
    *request.uri_mut() = url.parse().unwrap();
    let authority = request.uri().authority().unwrap().to_string();
    request
        .headers_mut()
        .insert("host", authority.parse().unwrap());
    request
        .headers_mut()
        .insert("content-length", body.len().into());
    if signed {
        let credentials =
            aws_credential_types::Credentials::new(CLIENT_KEY, CLIENT_SECRET, None, None, "bench");
        s3_signing_proxy::sign::sign_request(
            &mut request,
            &credentials,
            "us-east-1",
            std::time::SystemTime::now(),
        )
        .unwrap();
    }
    let (parts, ()) = request.into_parts();
    let response = client
        .request(http::Request::from_parts(parts, Full::new(body)))
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    let _ = response.into_body().collect().await;
}

/// Upload throughput in MiB/s: `parts` concurrent PUTs of `body` each, `rounds` times.
async fn upload_throughput(
    client: &UploadClient,
    url_for: impl Fn(usize) -> String,
    body: &Bytes,
    parts: usize,
    rounds: usize,
    signed: bool,
) -> f64 {
    let started = Instant::now();
    for _ in 0..rounds {
        let uploads: Vec<_> = (0..parts)
            .map(|part| {
                let (client, url, body) = (client.clone(), url_for(part + 1), body.clone());
                tokio::spawn(async move { upload(&client, &url, body, signed).await })
            })
            .collect();
        for upload in uploads {
            upload.await.unwrap();
        }
    }
    (body.len() * parts * rounds) as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64()
}

/// Small-object request rate: `concurrency` workers sharing `requests` GETs.
async fn small_rate(
    client: &HttpClient,
    base: &str,
    objects: usize,
    requests: usize,
    concurrency: usize,
) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next, base) = (client.clone(), next.clone(), base.to_string());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= requests {
                        return;
                    }
                    let bytes =
                        download(&client, &format!("{base}/small/{:05}.bin", n % objects)).await;
                    assert_eq!(bytes, 1024);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    requests as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test harness probes
    }
    let large_mib = setting("BENCH_LARGE_MIB", 256);
    let rounds = setting("BENCH_LARGE_ROUNDS", 3);
    let objects = setting("BENCH_SMALL_OBJECTS", 1000);
    let requests = setting("BENCH_SMALL_REQUESTS", 20_000);
    let concurrency = setting("BENCH_CONCURRENCY", 32);

    let work = std::env::temp_dir().join(format!("s3sp-bench-{}", std::process::id()));
    let root = work.join("root");
    let bucket = root.join("bench-bucket");
    std::fs::create_dir_all(bucket.join("small")).unwrap();
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    {
        use std::io::Write;
        let mut file = std::fs::File::create(bucket.join("large.bin")).unwrap();
        for _ in 0..large_mib {
            file.write_all(&chunk).unwrap();
        }
    }
    for n in 0..objects {
        std::fs::write(bucket.join(format!("small/{n:05}.bin")), &chunk[..1024]).unwrap();
    }

    // nginx's workers drop root: let them write uploads into the bench's own temp tree.
    for path in [&work, &root, &bucket] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
    }

    let store_port = free_port();
    let proxy_port = free_port();
    let _nginx = start_nginx(&root, &work, store_port);
    let proxy = start_proxy(&work, store_port, proxy_port);
    wait_for(store_port).await;
    wait_for(proxy_port).await;

    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build_http();
    let direct = format!("http://127.0.0.1:{store_port}/bench-bucket");
    let proxied = format!("http://127.0.0.1:{proxy_port}/bench");

    println!(
        "s3-signing-proxy end-to-end benchmark (store: nginx on loopback; 2 cores shared by client, proxy and store)"
    );
    let large_direct = large_throughput(&client, &format!("{direct}/large.bin"), rounds).await;
    let large_proxied = large_throughput(&client, &format!("{proxied}/large.bin"), rounds).await;
    println!(
        "large object ({large_mib} MiB x {rounds}): direct {large_direct:.0} MiB/s, proxied {large_proxied:.0} MiB/s, ratio {:.2}",
        large_proxied / large_direct
    );
    let small_direct = small_rate(&client, &direct, objects, requests, concurrency).await;
    let small_proxied = small_rate(&client, &proxied, objects, requests, concurrency).await;
    println!(
        "small objects (1 KiB, {requests} GETs, {concurrency} concurrent): direct {small_direct:.0} req/s, proxied {small_proxied:.0} req/s, ratio {:.2}",
        small_proxied / small_direct
    );
    let uploads: UploadClient = Client::builder(TokioExecutor::new()).build_http();
    let large_body = Bytes::from(std::fs::read(bucket.join("large.bin")).unwrap());
    let up_direct = upload_throughput(
        &uploads,
        |_| format!("{direct}/up/large.bin"),
        &large_body,
        1,
        rounds,
        false,
    )
    .await;
    let up_proxied = upload_throughput(
        &uploads,
        |_| format!("{proxied}/up/large.bin"),
        &large_body,
        1,
        rounds,
        true,
    )
    .await;
    println!(
        "upload, one object ({large_mib} MiB x {rounds}): direct {up_direct:.0} MiB/s, proxied {up_proxied:.0} MiB/s, ratio {:.2}",
        up_proxied / up_direct
    );
    let part_body = large_body.slice(..large_body.len() / 4);
    let part_url = |base: &str, part: usize| {
        format!("{base}/up/multipart-{part}.bin?partNumber={part}&uploadId=bench")
    };
    let parts_direct = upload_throughput(
        &uploads,
        |p| part_url(&direct, p),
        &part_body,
        4,
        rounds,
        false,
    )
    .await;
    let parts_proxied = upload_throughput(
        &uploads,
        |p| part_url(&proxied, p),
        &part_body,
        4,
        rounds,
        true,
    )
    .await;
    println!(
        "upload, 4 parts of {} MiB in parallel (x {rounds}): direct {parts_direct:.0} MiB/s, proxied {parts_proxied:.0} MiB/s, ratio {:.2}",
        large_mib / 4,
        parts_proxied / parts_direct
    );
    println!("proxy peak RSS: {} MiB", peak_rss_mib(proxy.0.id()));
    drop(proxy);
    let _ = std::fs::remove_dir_all(&work);
}
