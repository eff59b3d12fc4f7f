//! The proxy binary as an operator runs it, and the temporary directories its tests use.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "s3sp-test-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The proxy binary running `serve --config`, as an operator runs it; killed when dropped.
pub struct ProxyProcess {
    pub child: Child,
    pub address: SocketAddr,
    /// Where `ADMIN` in the config put the admin listener.
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    pub stderr_path: PathBuf,
}

/// A loopback address nobody listens on yet.
pub fn free_address() -> SocketAddr {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl ProxyProcess {
    /// Writes `config` (whose `[server] listen` must be `LISTEN`) and starts the binary with
    /// `env`; returns once it accepts connections.
    pub async fn spawn(dir: &std::path::Path, config: &str, env: &[(&str, &str)]) -> ProxyProcess {
        ProxyProcess::spawn_with(dir, config, env, &[]).await
    }

    /// Like [`ProxyProcess::spawn`], with extra command-line `args` before `serve`; `ADMIN` in
    /// the config becomes a free address for the admin listener.
    pub async fn spawn_with(
        dir: &std::path::Path,
        config: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> ProxyProcess {
        let address = free_address();
        let admin = free_address();
        let config_path = dir.join("proxy.toml");
        std::fs::write(
            &config_path,
            config
                .replace("LISTEN", &address.to_string())
                .replace("ADMIN", &admin.to_string()),
        )
        .expect("config");
        // At TRACE, kept after the test in target/test-logs/ for scripts/test's secrets check.
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let stderr_path = crate::support::test_logs().join(format!(
            "{}-{}-binary-{}.log",
            crate::support::test_binary(),
            std::process::id(),
            STARTED.fetch_add(1, Ordering::SeqCst)
        ));
        let stderr = std::fs::File::create(&stderr_path).expect("log file");
        // Owned by `process` from the start, so a failed start still kills and reaps the child.
        let process = ProxyProcess {
            child: Command::new(env!("CARGO_BIN_EXE_s3-signing-proxy"))
                .args(args)
                .args(["serve", "--config"])
                .arg(&config_path)
                .env("RUST_LOG", crate::support::TRACE_FILTER)
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("start the proxy binary"),
            address,
            admin,
            config_path,
            stderr_path,
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(address).await.is_ok() {
                return process;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the proxy did not start: {}", process.log());
    }

    /// Replaces the config file (same `LISTEN`/`ADMIN` substitution) as config management
    /// does, write then rename; the proxy notices the change.
    pub fn rewrite_config(&self, config: &str) {
        let text = config
            .replace("LISTEN", &self.address.to_string())
            .replace("ADMIN", &self.admin.to_string());
        let staged = self.config_path.with_extension("staged");
        std::fs::write(&staged, text).expect("staged config");
        std::fs::rename(&staged, &self.config_path).expect("config replaced");
    }

    /// Sends a signal (`HUP`, `TERM`) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name}");
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }

    /// How many file descriptors the process holds open (sockets among them).
    pub fn open_descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .expect("the proxy's descriptors")
            .count()
    }

    /// Resident memory now (VmRSS), in bytes.
    pub fn rss(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    fn status_bytes(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .expect("status field");
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .expect("value")
            .parse()
            .expect("number");
        kib * 1024
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `secrets(moto)` as environment variables for [`ProxyProcess::spawn`] (names leaked: a few
/// per test).
pub fn moto_env(moto: &crate::support::Moto) -> Vec<(&'static str, String)> {
    crate::support::secrets(moto)
        .into_iter()
        .map(|(name, value)| -> (&'static str, String) {
            (Box::leak(name.into_boxed_str()), value)
        })
        .collect()
}

/// `env` borrowed as [`ProxyProcess::spawn`] takes it.
pub fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(n, v)| (*n, v.as_str())).collect()
}
