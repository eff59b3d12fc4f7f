//! A throwaway PostgreSQL cluster for the sources tests and the bench: Debian's `initdb` and
//! `postgres`, on a loopback port, its data in a directory the caller names (`target/` for the
//! tests), never a system service. Shared by path with `benches/e2e`, so it uses nothing of
//! the tests' own support module. As root (CI), the server
//! runs as the `postgres` user, which Debian's package creates. It can be stopped and started
//! again on the same port and data, as a database that goes away and comes back.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

pub struct Postgres {
    pub port: u16,
    data: PathBuf,
    log: PathBuf,
    bin: PathBuf,
    server: Mutex<Option<Child>>,
}

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("PostgreSQL's binaries (scripts/test installs Debian's postgresql)")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// A command run as the server's user: `postgres` when we are root (the process itself
/// changes user, so signals sent to the child reach the server).
fn as_server_user(program: PathBuf) -> Command {
    use std::os::unix::process::CommandExt as _;
    let mut command = Command::new(program);
    if is_root() {
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, "postgres"])
                .output()
                .expect("id postgres");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("postgres user (Debian's package makes it)")
        };
        command.uid(id("-u")).gid(id("-g"));
    }
    command
}

impl Postgres {
    /// initdb into `data` (emptied first) and start the server, its log appended to `log`.
    pub fn start_in(data: PathBuf, log: PathBuf) -> Postgres {
        let bin = bin_dir();
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).expect("data dir");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&data)
                .status();
            assert!(status.is_ok_and(|s| s.success()), "chown the data dir");
        }
        let initdb = as_server_user(bin.join("initdb"))
            .args(["-A", "trust", "-U", "s3sp", "-E", "UTF8", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .output()
            .expect("initdb");
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let postgres = Postgres {
            port,
            data,
            log,
            bin,
            server: Mutex::new(None),
        };
        postgres.resume();
        postgres
    }

    /// Puts `cert_pem` and `key_pem` where the server reads its TLS certificate and key
    /// (`server.crt`, `server.key` in the data directory, the server's own, mode 0600); `ssl =
    /// on` and a reload then turn TLS on.
    pub fn install_certificate(&self, cert_pem: &str, key_pem: &str) {
        use std::os::unix::fs::PermissionsExt as _;
        for (name, text) in [("server.crt", cert_pem), ("server.key", key_pem)] {
            let path = self.data.join(name);
            std::fs::write(&path, text).expect("certificate file");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .expect("mode 0600");
            if is_root() {
                let status = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&path)
                    .status();
                assert!(status.is_ok_and(|s| s.success()), "chown {name}");
            }
        }
    }

    /// `postgres://…` for the proxy and the test's own client.
    pub fn url(&self) -> String {
        format!("postgres://s3sp@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's log (its stderr), appended to by each start.
    pub fn log_path(&self) -> PathBuf {
        self.log.clone()
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn resume(&self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log");
        let child = as_server_user(self.bin.join("postgres"))
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.data)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        *self.server.lock().expect("server") = Some(child);
        // Listening is not ready: pg_isready asks the server itself.
        for _ in 0..400 {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status();
            if ready.is_ok_and(|status| status.success()) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("postgres did not start");
    }

    /// Stops the server at once (as a crash or a failover would), ending every connection.
    pub fn pause(&self) {
        if let Some(mut child) = self.server.lock().expect("server").take() {
            // SIGINT: "fast" shutdown, every session ended; through `kill` since runuser
            // passes signals on to the server.
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// A client connection for the test's own statements.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .expect("connect to postgres");
        tokio::spawn(connection);
        client
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.pause();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
