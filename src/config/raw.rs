//! The file as written: serde shapes, every field optional, unknown fields refused.

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) sts: RawSts,
    #[serde(default, rename = "integration")]
    pub(super) integrations: Vec<RawIntegration>,
    #[serde(default, rename = "client")]
    pub(super) clients: Vec<RawClient>,
    pub(super) source: Option<RawSource>,
}

/// `[source]`: where integrations and clients come from besides this file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub(super) directory: Option<String>,
    pub(super) postgres_url_env: Option<String>,
    pub(super) postgres_url_file: Option<String>,
    pub(super) postgres_ca_file: Option<String>,
    pub(super) resync_interval: Option<String>,
    pub(super) preload: Option<bool>,
    pub(super) cache_entries: Option<u64>,
    pub(super) absent_for: Option<String>,
}

/// A file of the directory source: integrations and clients only.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFragment {
    #[serde(default, rename = "integration")]
    pub(super) integrations: Vec<RawIntegration>,
    #[serde(default, rename = "client")]
    pub(super) clients: Vec<RawClient>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    pub(super) access_key_id: Option<String>,
    /// Inline: only in a database row (see `Problems::inline_secrets`).
    pub(super) secret_access_key: Option<String>,
    pub(super) secret_access_key_env: Option<String>,
    pub(super) secret_access_key_file: Option<String>,
    pub(super) integrations: Option<Vec<String>>,
    pub(super) access: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
    pub(super) admin_listen: Option<String>,
    pub(super) admin_hosts: Option<Vec<String>>,
    pub(super) admin_token_env: Option<String>,
    pub(super) admin_token_file: Option<String>,
    pub(super) base_domain: Option<String>,
    pub(super) tls: Option<RawTls>,
    pub(super) limits: Option<RawLimits>,
    pub(super) sigv2: Option<bool>,
    pub(super) trusted_proxies: Option<Vec<String>>,
    pub(super) client_ip_header: Option<String>,
    #[serde(default)]
    pub(super) proxy_protocol: bool,
    pub(super) cookie_same_site: Option<String>,
    pub(super) cache: Option<RawCache>,
}

/// `[server.cache]`: the object cache's budget.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    pub(super) memory: String,
    pub(super) chunk: Option<String>,
    pub(super) disk: Option<String>,
    pub(super) disk_size: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: String,
    pub(super) key: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_header_bytes: Option<usize>,
    pub(super) max_headers: Option<usize>,
    pub(super) max_uri_bytes: Option<usize>,
    pub(super) body_buffer_bytes: Option<usize>,
    pub(super) wide_transfers: Option<usize>,
    pub(super) max_buffered_body_bytes: Option<usize>,
    pub(super) header_read_timeout: Option<String>,
    pub(super) idle_timeout: Option<String>,
    pub(super) max_connections: Option<usize>,
    pub(super) upstream_connect_timeout: Option<String>,
    pub(super) upstream_first_byte_timeout: Option<String>,
    pub(super) shutdown_deadline: Option<String>,
    /// Requests per second per client; 0 turns the limit off.
    pub(super) rate_limit: Option<f64>,
    pub(super) rate_limit_burst: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSts {
    pub(super) endpoint: Option<String>,
    pub(super) refresh_before_expiry: Option<String>,
    pub(super) duration: Option<String>,
    pub(super) warm_up_per_second: Option<f64>,
    pub(super) credentials: Option<RawCredentials>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIntegration {
    pub(super) name: Option<String>,
    pub(super) bucket: Option<String>,
    pub(super) buckets: Option<Vec<String>>,
    #[serde(default)]
    pub(super) default: bool,
    pub(super) prefix: Option<String>,
    pub(super) region: Option<String>,
    pub(super) endpoint: Option<String>,
    pub(super) ca_file: Option<String>,
    pub(super) addressing: Option<String>,
    pub(super) access: Option<String>,
    #[serde(default)]
    pub(super) public: bool,
    #[serde(default)]
    pub(super) allow_unusual_keys: bool,
    #[serde(default)]
    pub(super) allow_acl_headers: bool,
    pub(super) active_content: Option<String>,
    pub(super) cors_origins: Option<Vec<String>>,
    pub(super) delivery: Option<String>,
    pub(super) redirect_expires: Option<String>,
    pub(super) cache_ttl: Option<String>,
    pub(super) cache_max_object: Option<String>,
    pub(super) cache_stale_if_error: Option<String>,
    pub(super) credentials: Option<RawCredentials>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCredentials {
    pub(super) role_arn: Option<String>,
    pub(super) account_id: Option<String>,
    pub(super) role_name: Option<String>,
    pub(super) partition: Option<String>,
    pub(super) external_id: Option<String>,
    pub(super) session_name: Option<String>,
    pub(super) access_key_id: Option<String>,
    /// Inline: only in a database row.
    pub(super) secret_access_key: Option<String>,
    pub(super) secret_access_key_env: Option<String>,
    pub(super) secret_access_key_file: Option<String>,
    pub(super) session_token_env: Option<String>,
    pub(super) source: Option<String>,
}
