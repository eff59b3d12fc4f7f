//! The processes the bench runs and what it reads of them from `/proc`: nginx as the store,
//! a discarding sink for uploads, and the proxy under a given config.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

/// A child process killed when the bench is done with it.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // SIGTERM first: nginx's master then stops its worker, which a SIGKILL would orphan.
        let terminated = Command::new("kill")
            .arg(self.0.id().to_string())
            .status()
            .is_ok_and(|status| status.success());
        for _ in 0..200 {
            if !terminated || matches!(self.0.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Killed {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn nginx_binary() -> PathBuf {
    for candidate in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("nginx is not installed: run scripts/bench or scripts/soak, which install it");
}

/// nginx serving `root` as `/{bucket}/{key}`, one worker with room for the soak's thousands of
/// connections.
pub fn start_nginx(root: &Path, work: &Path, port: u16) -> Killed {
    let server = format!(
        "server {{ listen 127.0.0.1:{port}; root {root}; }}",
        root = root.display()
    );
    nginx(work, "nginx", &server)
}

/// nginx as a reverse proxy in front of the store on `store`: it relays requests and bodies as
/// the proxy does, with kept-alive store connections, but neither checks nor signs anything. What
/// it costs is what relaying alone costs on this machine, a reference for the proxy's figures.
pub fn start_nginx_relay(work: &Path, port: u16, store: u16) -> Killed {
    let server = format!(
        "upstream store {{ server 127.0.0.1:{store}; keepalive 128; }}\n  \
         server {{ listen 127.0.0.1:{port};\n    location / {{ proxy_pass http://store;\n      \
         proxy_http_version 1.1; proxy_set_header Connection \"\";\n      \
         proxy_buffering off; proxy_request_buffering off;\n      \
         proxy_buffer_size 256k; proxy_buffers 4 256k; proxy_busy_buffers_size 512k; }} }}"
    );
    nginx(work, "relay", &server)
}

/// An nginx with one worker and `server` in its `http` block, its files named `name` in `work`.
fn nginx(work: &Path, name: &str, server: &str) -> Killed {
    let files = work.join(name);
    std::fs::create_dir_all(&files).unwrap();
    let config = format!(
        "daemon off;\nworker_processes 1;\nworker_rlimit_nofile 16384;\npid {files}/nginx.pid;\n\
         error_log {files}/error.log;\nevents {{ worker_connections 8192; }}\n\
         http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n\
           client_body_temp_path {files}/body;\n  proxy_temp_path {files}/proxy;\n  fastcgi_temp_path {files}/fastcgi;\n\
           uwsgi_temp_path {files}/uwsgi;\n  scgi_temp_path {files}/scgi;\n\
           client_max_body_size 0;\n  {server}\n}}\n",
        files = files.display(),
    );
    let config_path = files.join("nginx.conf");
    std::fs::write(&config_path, config).unwrap();
    let child = Command::new(nginx_binary())
        .arg("-c")
        .arg(&config_path)
        .arg("-e")
        .arg(files.join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    Killed(child)
}

/// The one worker of the nginx whose master is `master`.
pub fn nginx_worker(master: u32) -> u32 {
    for _ in 0..200 {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if stat_fields(pid).get(1).and_then(|p| p.parse::<u32>().ok()) == Some(master) {
                return pid;
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nginx started no worker");
}

/// A store for uploads that reads each body to its end, discards it and answers 200: what is
/// measured is the proxy, not a disk.
pub fn start_sink(port: u16) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        |request: http::Request<hyper::body::Incoming>| async move {
                            let mut body = request.into_body();
                            while let Some(frame) = body.frame().await {
                                if frame.is_err() {
                                    break;
                                }
                            }
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                Empty::<Bytes>::new(),
                            ))
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
}

/// The proxy serving `config`, with its stderr in `work/{name}.log`.
pub fn start_proxy(work: &Path, name: &str, config: &str, client_secret: &str) -> Killed {
    // `BENCH_PROXY` runs another build, to compare two against the same baseline.
    let binary = std::env::var_os("BENCH_PROXY")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_s3-signing-proxy").into());
    start_proxy_build(work, name, config, client_secret, &binary)
}

/// [`start_proxy`] with the proxy binary at `binary`.
pub fn start_proxy_build(
    work: &Path,
    name: &str,
    config: &str,
    client_secret: &str,
    binary: &std::ffi::OsStr,
) -> Killed {
    let config_path = work.join(format!("{name}.toml"));
    std::fs::write(&config_path, config).unwrap();
    let log = std::fs::File::create(work.join(format!("{name}.log"))).unwrap();
    let child = Command::new(binary)
        .args(["serve", "--config"])
        .arg(&config_path)
        .env(
            "BENCH_STORE_SECRET",
            "bench-secret-not-checked-by-the-store",
        )
        .env("BENCH_CLIENT_SECRET", client_secret)
        // The access line is on, in the default format, as it is by default: its cost is part
        // of the figure.
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the proxy");
    Killed(child)
}

/// Waits until something accepts on `port`, and says how long that took.
pub async fn wait_for(port: u16) -> Duration {
    let started = Instant::now();
    for _ in 0..4000 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("nothing listens on {port}");
}

/// Waits until `log` has `count` lines containing `needle`, and says how long that took.
pub async fn wait_for_line(log: &Path, needle: &str, count: usize) -> Duration {
    let started = Instant::now();
    // Five minutes: a 10,000-integration reload under valgrind (`scripts/count`) takes more
    // than one.
    for _ in 0..60_000 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().filter(|l| l.contains(needle)).count() >= count {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{} never said {needle:?}", log.display());
}

fn stat_fields(pid: u32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name is in parentheses and may hold spaces: fields start after its `)`.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    after.split_whitespace().map(str::to_string).collect()
}

/// The CPU time `pid` has used, user and system, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let fields = stat_fields(pid);
    // After the command: state, ppid, … utime is field 14 and stime 15 of the whole line.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .unwrap_or(0)
}

/// The process's peak resident set since it started or since [`reset_peak_rss`], in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    status_kib(pid, "VmHWM:") as f64 / 1024.0
}

/// Its resident set now, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    status_kib(pid, "VmRSS:") as f64 / 1024.0
}

/// Starts a new peak: the kernel resets VmHWM to the current RSS.
pub fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}
