//! The proxy configs the bench serves: one integration, or one among thousands.

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use crate::load::CLIENT_KEY;
use crate::processes::Killed;

/// `bench` (anonymous reads from nginx, client writes), `sink` (uploads to the discarding
/// sink), and `extra` more integrations on their own prefixes of the same bucket.
pub fn proxy(port: u16, store: u16, sink: u16, extra: usize) -> String {
    // `BENCH_BODY_BUFFER` and `BENCH_WIDE_TRANSFERS` set `[server.limits]`
    // `body_buffer_bytes` and `wide_transfers`, to weigh throughput against memory; unset,
    // the proxy's defaults.
    let setting = |variable: &str, field: &str| {
        std::env::var(variable)
            .map(|value| format!("{field} = {value}\n"))
            .unwrap_or_default()
    };
    let buffer = setting("BENCH_BODY_BUFFER", "body_buffer_bytes")
        + &setting("BENCH_WIDE_TRANSFERS", "wide_transfers");
    let mut config = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[server.limits]
# One client hammering on purpose: no rate limit here.
rate_limit = 0
{buffer}

[[integration]]
name = "bench"
bucket = "bench-bucket"
region = "us-east-1"
endpoint = "http://127.0.0.1:{store}"
public = true
access = "read-write"
[integration.credentials]
access_key_id = "AKIDBENCH"
secret_access_key_env = "BENCH_STORE_SECRET"

[[integration]]
name = "sink"
bucket = "bench-bucket"
region = "us-east-1"
endpoint = "http://127.0.0.1:{sink}"
access = "read-write"
[integration.credentials]
access_key_id = "AKIDBENCH"
secret_access_key_env = "BENCH_STORE_SECRET"

[[client]]
access_key_id = "{CLIENT_KEY}"
secret_access_key_env = "BENCH_CLIENT_SECRET"
integrations = ["bench", "sink"]
access = "read-write"
"#
    );
    for n in 0..extra {
        write!(
            config,
            r#"
[[integration]]
name = "tenant-{n:05}"
bucket = "bench-bucket"
prefix = "tenants/{n:05}/"
region = "us-east-1"
endpoint = "http://127.0.0.1:{store}"
access = "read-write"
[integration.credentials]
access_key_id = "AKIDTENANT{n:05}"
secret_access_key_env = "BENCH_STORE_SECRET"
"#
        )
        .unwrap();
    }
    config
}

/// `count` clients, each bound to five of the `tenant-NNNNN` integrations.
pub fn clients(count: usize, integrations: usize) -> String {
    let tenants = integrations.saturating_sub(1).max(1);
    let mut config = String::new();
    for n in 0..count {
        let bound: Vec<String> = (0..5)
            .map(|i| format!("\"tenant-{:05}\"", (n * 5 + i) % tenants))
            .collect();
        write!(
            config,
            r#"
[[client]]
access_key_id = "AKCLIENT{n:05}"
secret_access_key_env = "BENCH_CLIENT_SECRET"
integrations = [{}]
access = "read-only"
"#,
            bound.join(", ")
        )
        .unwrap();
    }
    config
}

/// Sends the proxy SIGHUP and says how long it took to log that the config was reloaded.
pub async fn reload(proxy: &Killed, log: &Path) -> Duration {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    crate::processes::wait_for_line(log, "configuration reloaded", 1).await
}
