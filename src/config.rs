//! Configuration: a TOML file parsed once, at start-up, into typed values.
//!
//! Later code never sees a raw string that could still be invalid: an [`Integration`] carries a
//! parsed [`Endpoint`], an [`Addressing`] style and a [`CredentialSource`]. Loading checks the
//! whole file and reports *every* problem, each naming the file, the integration and the field,
//! before the proxy refuses to start. Secrets are never inline: they are read through a
//! [`SecretLookup`] (the process environment in production, a map in tests) or from a file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::tls::TlsFiles;

/// A secret value (secret access key, session token). Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that signs with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(** redacted **)")
    }
}

/// Where `*_env` settings are looked up: the environment in production, a map in tests.
pub trait SecretLookup {
    fn var(&self, name: &str) -> Option<String>;
}

/// Reads `*_env` settings from the process environment.
pub struct ProcessEnv;

impl SecretLookup for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl SecretLookup for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub sts: StsConfig,
    pub integrations: Vec<Arc<Integration>>,
    pub clients: Vec<ClientConfig>,
}

/// Keys the proxy issues to an SDK client or URL signer, and where they lead.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// (integration name, one bucket of it or all of it).
    pub bindings: Vec<(String, Option<String>)>,
    pub access: Access,
}

/// How a verified GET is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The proxy streams the object.
    Stream,
    /// `307` to an upstream presigned URL valid this long (the bytes skip the proxy).
    Redirect { expires: Duration },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Where the proxy accepts requests.
    pub listen: SocketAddr,
    /// Where `/healthz`, `/readyz` and `/metrics` are served; `None`: nowhere.
    pub admin_listen: Option<SocketAddr>,
    /// With `media.example.com`, `{name}.media.example.com/{key}` is the same as `/{name}/{key}`.
    pub base_domain: Option<String>,
    /// TLS on the public listener (PEM files, re-read when they change).
    pub tls: Option<TlsFiles>,
    pub limits: Limits,
    /// Whether clients may sign with SigV2 (on by default; off answers S3's 400).
    pub sigv2: bool,
}

/// Protective limits, each with a default safe for a public listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Request line plus headers, in bytes (HTTP/1) / the header list size (HTTP/2).
    pub max_header_bytes: usize,
    /// Number of request headers.
    pub max_headers: usize,
    /// Length of the request target (path and query), in bytes.
    pub max_uri_bytes: usize,
    /// A client must send a request's headers within this time (slowloris).
    pub header_read_timeout: Duration,
    /// A connection with no bytes moving either way for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; further ones wait in the kernel's accept queue.
    pub max_connections: usize,
    pub upstream_connect_timeout: Duration,
    /// From sending a request upstream to its response headers.
    pub upstream_first_byte_timeout: Duration,
    /// How long in-flight requests may finish after SIGTERM/SIGINT.
    pub shutdown_deadline: Duration,
    /// Requests per second per client (access key id; anonymous callers by IP address).
    pub rate_limit: Option<RateLimit>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_first_byte_timeout: Duration::from_secs(30),
            shutdown_deadline: Duration::from_secs(30),
            rate_limit: Some(RateLimit {
                per_second: 1000.0,
                burst: 2000,
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StsConfig {
    /// A custom STS endpoint (moto, MinIO); `None` means AWS's regional endpoint.
    pub endpoint: Option<Endpoint>,
    /// Cached credentials are renewed this long before they expire.
    pub refresh_before_expiry: Duration,
    /// The lifetime asked for in `AssumeRole` (`DurationSeconds`).
    pub duration: Duration,
    /// The identity the proxy calls STS with.
    pub credentials: BaseCredentials,
}

/// The identity the proxy itself uses: for STS calls, and for integrations with
/// `source = "default-chain"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BaseCredentials {
    /// The standard AWS chain: environment, profile, web identity, ECS, IMDS.
    DefaultChain,
    /// Fixed keys from the configuration's secret sources.
    Static(StaticKeys),
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StaticKeys {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

impl fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKeys")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl std::hash::Hash for Secret {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// How an integration obtains the credentials it signs upstream requests with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CredentialSource {
    /// Fixed keys (MinIO, a dedicated IAM user).
    Static(StaticKeys),
    /// STS `AssumeRole` into the customer's role, with the ExternalId the customer set.
    AssumeRole {
        role_arn: String,
        external_id: Option<String>,
        session_name: String,
    },
    /// The proxy's own identity from the standard AWS chain.
    DefaultChain,
}

/// Which buckets an integration reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Buckets {
    /// Only this bucket (`bucket = "…"`); the integration's name implies it.
    Scoped(String),
    /// Any of these (`buckets = [...]` with `default = true`): the role is used for all
    /// buckets it is permitted to reach, each addressed by its own name.
    Permitted(Vec<String>),
}

/// How the upstream URL names the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// `https://{bucket}.s3.{region}.amazonaws.com/{key}` or `{bucket}.{endpoint host}`.
    VirtualHost,
    /// `https://s3.{region}.amazonaws.com/{bucket}/{key}` or `{endpoint}/{bucket}/{key}`.
    Path,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A parsed `scheme://host[:port]` with no path, query or credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub scheme: Scheme,
    pub host: String,
    pub port: Option<u16>,
}

impl Endpoint {
    /// `host[:port]`, as it goes in the `Host` header.
    pub fn authority(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.authority())
    }
}

impl std::hash::Hash for Scheme {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

/// One customer's integration: where its objects live and how the proxy may reach them.
#[derive(Debug, Clone)]
pub struct Integration {
    pub name: String,
    pub buckets: Buckets,
    /// Empty, or a directory ending in `/`: upstream keys are always `prefix + key`.
    pub prefix: String,
    /// The bucket's region, or `auto`: discovered once from the bucket itself.
    pub region: String,
    pub endpoint: Option<Endpoint>,
    /// Extra CA certificates (PEM) trusted for this integration's endpoint, besides the
    /// system's roots: private MinIO/Ceph.
    pub ca_file: Option<PathBuf>,
    pub addressing: Addressing,
    pub access: Access,
    /// Anonymous GET/HEAD are allowed.
    pub public: bool,
    /// Keys with `.`/`..` segments or empty segments are passed on instead of refused.
    pub allow_unusual_keys: bool,
    /// Clients may send `x-amz-acl` beyond the private/bucket-owner canned ACLs,
    /// `x-amz-grant-*` and `x-amz-website-redirect-location`.
    pub allow_acl_headers: bool,
    /// How objects of types a browser runs (HTML, SVG, XML, JavaScript) are served.
    pub active_content: ActiveContent,
    pub credentials: CredentialSource,
    /// Browser origins allowed by CORS: exact `scheme://host[:port]`, or `*` (public only).
    pub cors_origins: Vec<String>,
    pub delivery: Delivery,
}

/// Serving tenant content from the proxy's one origin: an HTML or SVG object rendered inline
/// would run its script with that origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveContent {
    /// `Content-Security-Policy: sandbox` on active types: they render, scripts do not run and
    /// the document gets an opaque origin (the default).
    Sandbox,
    /// `Content-Disposition: attachment` on active types: browsers download them.
    Attachment,
    /// Served as they are (for an operator's own pages, like the demo's).
    Allow,
}

/// The `region` value that asks the proxy to discover the bucket's region.
pub const AUTO_REGION: &str = "auto";

impl Integration {
    pub fn region_is_auto(&self) -> bool {
        self.region == AUTO_REGION
    }

    /// Whether the integration may reach this (real) bucket.
    pub fn permits_bucket(&self, bucket: &str) -> bool {
        match &self.buckets {
            Buckets::Scoped(own) => own == bucket,
            Buckets::Permitted(list) => list.iter().any(|b| b == bucket),
        }
    }
}

/// Every problem found in one configuration file.
#[derive(Debug)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem(s)):",
            self.problems.len()
        )?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

// ---- the file as written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    sts: RawSts,
    #[serde(default, rename = "integration")]
    integrations: Vec<RawIntegration>,
    #[serde(default, rename = "client")]
    clients: Vec<RawClient>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    access_key_id: Option<String>,
    secret_access_key_env: Option<String>,
    secret_access_key_file: Option<String>,
    integrations: Option<Vec<String>>,
    access: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    admin_listen: Option<String>,
    base_domain: Option<String>,
    tls: Option<RawTls>,
    limits: Option<RawLimits>,
    sigv2: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: String,
    key: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_header_bytes: Option<usize>,
    max_headers: Option<usize>,
    max_uri_bytes: Option<usize>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connections: Option<usize>,
    upstream_connect_timeout: Option<String>,
    upstream_first_byte_timeout: Option<String>,
    shutdown_deadline: Option<String>,
    /// Requests per second per client; 0 turns the limit off.
    rate_limit: Option<f64>,
    rate_limit_burst: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSts {
    endpoint: Option<String>,
    refresh_before_expiry: Option<String>,
    duration: Option<String>,
    credentials: Option<RawCredentials>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntegration {
    name: Option<String>,
    bucket: Option<String>,
    buckets: Option<Vec<String>>,
    #[serde(default)]
    default: bool,
    prefix: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
    ca_file: Option<String>,
    addressing: Option<String>,
    access: Option<String>,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    allow_unusual_keys: bool,
    #[serde(default)]
    allow_acl_headers: bool,
    active_content: Option<String>,
    cors_origins: Option<Vec<String>>,
    delivery: Option<String>,
    redirect_expires: Option<String>,
    credentials: Option<RawCredentials>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    role_arn: Option<String>,
    external_id: Option<String>,
    session_name: Option<String>,
    access_key_id: Option<String>,
    secret_access_key_env: Option<String>,
    secret_access_key_file: Option<String>,
    session_token_env: Option<String>,
    source: Option<String>,
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_SESSION_NAME: &str = "s3-signing-proxy";

impl Config {
    /// Reads and validates a configuration file, looking secrets up in the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            problems: vec![format!("{}: cannot read: {error}", path.display())],
        })?;
        let overrides: Vec<(String, String)> = std::env::vars()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        Config::parse_with_overrides(&text, &path.display().to_string(), &ProcessEnv, &overrides)
    }

    /// Like [`Config::parse`], with `S3SP_…` settings laid over the file: `S3SP_SERVER__LISTEN`
    /// sets `[server] listen`, `S3SP_SERVER__LIMITS__RATE_LIMIT` sets `[server.limits]
    /// rate_limit`, and `S3SP_INTEGRATION__ACME_MEDIA__REGION` the `region` of integration
    /// `acme-media` (names upper-cased, `-` as `_`; an index works too). Values are read as
    /// TOML (`50`, `true`, `["a"]`) or else taken as a string.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use s3_signing_proxy::config::Config;
    ///
    /// let text = r#"
    ///     [[integration]]
    ///     name = "acme-media"
    ///     bucket = "media"
    ///     region = "us-east-1"
    ///     [integration.credentials]
    ///     source = "default-chain"
    /// "#;
    /// let overrides = [
    ///     ("S3SP_SERVER__LISTEN".to_string(), "0.0.0.0:8443".to_string()),
    ///     ("S3SP_INTEGRATION__ACME_MEDIA__REGION".to_string(), "eu-west-1".to_string()),
    /// ];
    /// let config = Config::parse_with_overrides(text, "f.toml", &BTreeMap::new(), &overrides)
    ///     .expect("valid");
    /// assert_eq!(config.server.listen.to_string(), "0.0.0.0:8443");
    /// assert_eq!(config.integrations[0].region, "eu-west-1");
    /// ```
    pub fn parse_with_overrides(
        text: &str,
        origin: &str,
        secrets: &dyn SecretLookup,
        overrides: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        if overrides.is_empty() {
            return Config::parse(text, origin, secrets);
        }
        let mut table: toml::Table =
            text.parse().map_err(|error: toml::de::Error| ConfigError {
                problems: vec![format!("{origin}: {}", error.to_string().trim_end())],
            })?;
        let mut problems = Vec::new();
        for (name, value) in overrides {
            if let Err(reason) = apply_override(&mut table, name, value) {
                problems.push(format!("{origin}: environment variable {name}: {reason}"));
            }
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        let raw: RawConfig =
            toml::Value::Table(table)
                .try_into()
                .map_err(|error: toml::de::Error| ConfigError {
                    problems: vec![format!(
                        "{origin} (with S3SP_ overrides): {}",
                        error.to_string().trim_end()
                    )],
                })?;
        Config::build_checked(raw, origin, secrets)
    }

    /// Parses and validates configuration text; `origin` names it in error messages and
    /// `secrets` answers `*_env` settings.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use s3_signing_proxy::config::{Addressing, Config};
    ///
    /// let text = r#"
    ///     [[integration]]
    ///     name = "local"
    ///     bucket = "media"
    ///     region = "us-east-1"
    ///     endpoint = "http://127.0.0.1:9000"
    ///     [integration.credentials]
    ///     access_key_id = "minioadmin"
    ///     secret_access_key_env = "MINIO_SECRET"
    /// "#;
    /// let secrets = BTreeMap::from([("MINIO_SECRET".to_string(), "s3cr3t".to_string())]);
    /// let config = Config::parse(text, "example.toml", &secrets).expect("valid");
    /// assert_eq!(config.integrations[0].addressing, Addressing::Path);
    ///
    /// let error = Config::parse(text, "example.toml", &BTreeMap::new()).expect_err("no secret");
    /// assert!(error.to_string().contains(
    ///     "example.toml: integration \"local\": credentials: field `secret_access_key_env`"
    /// ));
    /// ```
    pub fn parse(
        text: &str,
        origin: &str,
        secrets: &dyn SecretLookup,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|error| ConfigError {
            problems: vec![format!("{origin}: {}", error.to_string().trim_end())],
        })?;
        Config::build_checked(raw, origin, secrets)
    }

    fn build_checked(
        raw: RawConfig,
        origin: &str,
        secrets: &dyn SecretLookup,
    ) -> Result<Config, ConfigError> {
        let mut problems = Problems {
            origin,
            list: Vec::new(),
        };
        let config = build(raw, &mut problems, secrets);
        if problems.list.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                problems: problems.list,
            })
        }
    }
}

/// Environment variables with this prefix override settings of the file.
pub const ENV_PREFIX: &str = "S3SP_";

/// Sets the setting `name` (`S3SP_A__B__C`) to `value` in the parsed file.
fn apply_override(table: &mut toml::Table, name: &str, value: &str) -> Result<(), String> {
    let path: Vec<String> = name
        .strip_prefix(ENV_PREFIX)
        .unwrap_or(name)
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    if path.iter().any(String::is_empty) {
        return Err("not of the form S3SP_SECTION__SETTING".to_string());
    }
    let value = match format!("v = {value}").parse::<toml::Table>() {
        Ok(mut parsed) => parsed
            .remove("v")
            .unwrap_or(toml::Value::String(value.to_string())),
        Err(_) => toml::Value::String(value.to_string()),
    };
    let (last, parents) = path.split_last().ok_or("names no setting")?;
    let mut current = table;
    let mut segments = parents.iter();
    while let Some(segment) = segments.next() {
        let entry = current
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(next) => next,
            toml::Value::Array(items) => {
                let selector = segments
                    .next()
                    .ok_or_else(|| format!("`{segment}` is a list: name an entry of it"))?;
                select_entry(items, selector)
                    .ok_or_else(|| format!("no [[{segment}]] entry is named `{selector}`"))?
            }
            _ => return Err(format!("`{segment}` is not a section")),
        };
    }
    current.insert(last.clone(), value);
    Ok(())
}

/// The entry of a `[[integration]]`/`[[client]]` list named (or numbered) by `selector`.
fn select_entry<'a>(items: &'a mut [toml::Value], selector: &str) -> Option<&'a mut toml::Table> {
    let normalise = |text: &str| text.to_ascii_lowercase().replace('-', "_");
    let position = items.iter().position(|item| {
        ["name", "access_key_id"].iter().any(|field| {
            item.get(field)
                .and_then(toml::Value::as_str)
                .is_some_and(|n| normalise(n) == normalise(selector))
        })
    });
    let index = position.or_else(|| selector.parse::<usize>().ok())?;
    items.get_mut(index)?.as_table_mut()
}

/// Collects problems, each prefixed with the file and the place in it.
struct Problems<'a> {
    origin: &'a str,
    list: Vec<String>,
}

impl Problems<'_> {
    fn add(&mut self, place: &str, field: &str, message: impl fmt::Display) {
        self.list.push(format!(
            "{}: {place}: field `{field}`: {message}",
            self.origin
        ));
    }
}

fn build(raw: RawConfig, problems: &mut Problems<'_>, secrets: &dyn SecretLookup) -> Config {
    let listen_text = raw.server.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text.parse().unwrap_or_else(|_| {
        problems.add(
            "[server]",
            "listen",
            format!("`{listen_text}` is not an address like 127.0.0.1:8080"),
        );
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    let base_domain = raw.server.base_domain.map(|domain| {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() || domain.contains(['/', ':', ' ']) {
            problems.add(
                "[server]",
                "base_domain",
                "must be a DNS name like media.example.com (no scheme, port or path)",
            );
        }
        domain
    });

    let admin_listen = raw.server.admin_listen.and_then(|text| {
        text.parse()
            .map_err(|_| {
                problems.add(
                    "[server]",
                    "admin_listen",
                    format!("`{text}` is not an address like 127.0.0.1:9090"),
                )
            })
            .ok()
    });
    if admin_listen.is_some_and(|admin| admin == listen && listen.port() != 0) {
        problems.add("[server]", "admin_listen", "must differ from `listen`");
    }
    let tls = raw.server.tls.map(|raw| TlsFiles {
        cert: PathBuf::from(raw.cert),
        key: PathBuf::from(raw.key),
    });
    if let Some(files) = &tls
        && let Err(error) = crate::tls::read_certified_key(files)
    {
        problems.add("[server.tls]", "cert", error);
    }
    let limits = build_limits(raw.server.limits.unwrap_or_default(), problems);

    let sts = build_sts(raw.sts, problems, secrets);

    let mut integrations = Vec::new();
    for (index, raw_integration) in raw.integrations.into_iter().enumerate() {
        if let Some(integration) = build_integration(index, raw_integration, problems, secrets) {
            integrations.push(Arc::new(integration));
        }
    }
    check_names_unique(&integrations, problems);
    let clients = raw
        .clients
        .into_iter()
        .enumerate()
        .filter_map(|(index, raw)| build_client(index, raw, &integrations, problems, secrets))
        .collect();

    Config {
        server: ServerConfig {
            listen,
            admin_listen,
            base_domain,
            tls,
            limits,
            sigv2: raw.server.sigv2.unwrap_or(true),
        },
        sts,
        integrations,
        clients,
    }
}

fn build_limits(raw: RawLimits, problems: &mut Problems<'_>) -> Limits {
    let place = "[server.limits]";
    let defaults = Limits::default();
    let mut duration = |text: Option<String>, default: Duration, field: &str| {
        let value = parse_setting_duration(text.as_deref(), default, place, field, problems);
        if value.is_zero() {
            problems.add(place, field, "must be more than 0");
        }
        value
    };
    let header_read_timeout = duration(
        raw.header_read_timeout,
        defaults.header_read_timeout,
        "header_read_timeout",
    );
    let idle_timeout = duration(raw.idle_timeout, defaults.idle_timeout, "idle_timeout");
    let upstream_connect_timeout = duration(
        raw.upstream_connect_timeout,
        defaults.upstream_connect_timeout,
        "upstream_connect_timeout",
    );
    let upstream_first_byte_timeout = duration(
        raw.upstream_first_byte_timeout,
        defaults.upstream_first_byte_timeout,
        "upstream_first_byte_timeout",
    );
    let shutdown_deadline = duration(
        raw.shutdown_deadline,
        defaults.shutdown_deadline,
        "shutdown_deadline",
    );
    let mut count = |value: Option<usize>, default: usize, min: usize, field: &str| {
        let value = value.unwrap_or(default);
        if value < min {
            problems.add(place, field, format!("must be at least {min}"));
        }
        value
    };
    // hyper needs room for at least 8 KiB of request head.
    let max_header_bytes = count(
        raw.max_header_bytes,
        defaults.max_header_bytes,
        8192,
        "max_header_bytes",
    );
    let max_headers = count(raw.max_headers, defaults.max_headers, 8, "max_headers");
    let max_uri_bytes = count(
        raw.max_uri_bytes,
        defaults.max_uri_bytes,
        256,
        "max_uri_bytes",
    );
    let max_connections = count(
        raw.max_connections,
        defaults.max_connections,
        1,
        "max_connections",
    );
    let rate_limit = match raw.rate_limit {
        None => defaults.rate_limit,
        Some(0.0) => None,
        Some(rate) if rate.is_finite() && rate > 0.0 => Some(RateLimit {
            per_second: rate,
            burst: raw
                .rate_limit_burst
                .unwrap_or_else(|| (rate * 2.0).ceil().min(f64::from(u32::MAX)) as u32)
                .max(1),
        }),
        Some(_) => {
            problems.add(
                place,
                "rate_limit",
                "must be a positive number, or 0 for none",
            );
            None
        }
    };
    Limits {
        max_header_bytes,
        max_headers,
        max_uri_bytes,
        header_read_timeout,
        idle_timeout,
        max_connections,
        upstream_connect_timeout,
        upstream_first_byte_timeout,
        shutdown_deadline,
        rate_limit,
    }
}

fn build_sts(raw: RawSts, problems: &mut Problems<'_>, secrets: &dyn SecretLookup) -> StsConfig {
    let place = "[sts]";
    let endpoint = raw.endpoint.and_then(|text| {
        parse_endpoint(&text)
            .map_err(|e| problems.add(place, "endpoint", e))
            .ok()
    });
    let refresh_before_expiry = parse_setting_duration(
        raw.refresh_before_expiry.as_deref(),
        Duration::from_secs(5 * 60),
        place,
        "refresh_before_expiry",
        problems,
    );
    let duration = parse_setting_duration(
        raw.duration.as_deref(),
        Duration::from_secs(3600),
        place,
        "duration",
        problems,
    );
    // AWS's limits for AssumeRole's DurationSeconds.
    if !(900..=43_200).contains(&duration.as_secs()) {
        problems.add(
            place,
            "duration",
            "must be between 15m and 12h (AWS's limits for AssumeRole)",
        );
    }
    if refresh_before_expiry >= duration {
        problems.add(
            place,
            "refresh_before_expiry",
            "must be shorter than `duration`, or credentials would be renewed on every request",
        );
    }
    let credentials = match raw.credentials {
        None => BaseCredentials::DefaultChain,
        Some(raw) => match build_credentials(raw, place, problems, secrets) {
            Some(CredentialSource::Static(keys)) => BaseCredentials::Static(keys),
            Some(CredentialSource::DefaultChain) | None => BaseCredentials::DefaultChain,
            Some(CredentialSource::AssumeRole { .. }) => {
                problems.add(
                    place,
                    "credentials",
                    "the proxy's own STS identity is static keys or `source = \"default-chain\"`",
                );
                BaseCredentials::DefaultChain
            }
        },
    };
    // A session token means the proxy's own keys are a role session already: assuming a role
    // with them is role chaining, which AWS caps at one hour.
    if let BaseCredentials::Static(keys) = &credentials
        && keys.session_token.is_some()
        && duration > Duration::from_secs(3600)
    {
        problems.add(
            place,
            "duration",
            "must be at most 1h when [sts.credentials] has a session token (AWS's limit for chained role sessions)",
        );
    }
    StsConfig {
        endpoint,
        refresh_before_expiry,
        duration,
        credentials,
    }
}

fn build_integration(
    index: usize,
    raw: RawIntegration,
    problems: &mut Problems<'_>,
    secrets: &dyn SecretLookup,
) -> Option<Integration> {
    let name = raw.name.unwrap_or_default();
    let place = if name.is_empty() {
        format!("integration #{}", index + 1)
    } else {
        format!("integration \"{name}\"")
    };
    let before = problems.list.len();

    if name.is_empty() {
        problems.add(&place, "name", "is required");
    } else if let Err(reason) = check_bucket_name(&name) {
        problems.add(
            &place,
            "name",
            format!("is used as a logical bucket name in URLs and {reason}"),
        );
    }

    let buckets = match (raw.bucket, raw.buckets, raw.default) {
        (Some(bucket), None, false) => Some(Buckets::Scoped(bucket)),
        (None, Some(list), true) if !list.is_empty() => Some(Buckets::Permitted(list)),
        (None, Some(_), true) => {
            problems.add(&place, "buckets", "must name at least one bucket");
            None
        }
        (None, Some(_), false) => {
            problems.add(
                &place,
                "default",
                "`buckets = [...]` needs `default = true`",
            );
            None
        }
        (Some(_), _, true) | (Some(_), Some(_), _) => {
            problems.add(
                &place,
                "bucket",
                "give either `bucket` (only this bucket) or `buckets` with `default = true` \
                 (every permitted bucket), not both",
            );
            None
        }
        (None, None, _) => {
            problems.add(
                &place,
                "bucket",
                "is required (or `buckets` with `default = true`)",
            );
            None
        }
    };
    if let Some(buckets) = &buckets {
        let list: Vec<&String> = match buckets {
            Buckets::Scoped(bucket) => vec![bucket],
            Buckets::Permitted(list) => list.iter().collect(),
        };
        for bucket in list {
            if let Err(reason) = check_bucket_name(bucket) {
                problems.add(&place, "bucket", format!("`{bucket}` {reason}"));
            }
        }
    }

    let prefix = match raw.prefix {
        None => String::new(),
        Some(prefix) => match check_prefix(&prefix) {
            Ok(prefix) => prefix,
            Err(reason) => {
                problems.add(&place, "prefix", reason);
                String::new()
            }
        },
    };

    let region = match raw.region {
        None => {
            problems.add(&place, "region", "is required (e.g. \"us-east-1\")");
            String::new()
        }
        Some(region) if region == AUTO_REGION => region,
        Some(region)
            if !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
        {
            region
        }
        Some(region) => {
            problems.add(
                &place,
                "region",
                format!("`{region}` is not a region name like us-west-2"),
            );
            region
        }
    };

    let endpoint = raw.endpoint.and_then(|text| {
        parse_endpoint(&text)
            .map_err(|reason| problems.add(&place, "endpoint", reason))
            .ok()
    });

    let ca_file = raw.ca_file.map(PathBuf::from);
    if let Some(path) = &ca_file {
        if endpoint.as_ref().is_none_or(|e| e.scheme != Scheme::Https) {
            problems.add(
                &place,
                "ca_file",
                "is for an `https://` endpoint (AWS is verified against the system's roots)",
            );
        } else if let Err(error) = crate::tls::read_ca_file(path) {
            problems.add(&place, "ca_file", error);
        }
    }

    let addressing = match raw.addressing.as_deref() {
        None if endpoint.is_some() => Addressing::Path,
        None => Addressing::VirtualHost,
        Some("path") => Addressing::Path,
        Some("virtual-host") => Addressing::VirtualHost,
        Some(other) => {
            problems.add(
                &place,
                "addressing",
                format!("`{other}` is not \"virtual-host\" or \"path\""),
            );
            Addressing::Path
        }
    };
    if let (Addressing::VirtualHost, Some(Buckets::Scoped(bucket))) = (addressing, &buckets)
        && bucket.contains('.')
        && endpoint.as_ref().is_none_or(|e| e.scheme == Scheme::Https)
    {
        problems.add(
            &place,
            "addressing",
            "a bucket name with dots cannot be reached virtual-host style over TLS (its name \
             breaks the certificate match); use addressing = \"path\"",
        );
    }

    let access = parse_access(raw.access.as_deref(), &place, problems);
    let active_content = match raw.active_content.as_deref() {
        None | Some("sandbox") => ActiveContent::Sandbox,
        Some("attachment") => ActiveContent::Attachment,
        Some("allow") => ActiveContent::Allow,
        Some(other) => {
            problems.add(
                &place,
                "active_content",
                format!("`{other}` is not \"sandbox\", \"attachment\" or \"allow\""),
            );
            ActiveContent::Sandbox
        }
    };

    let cors_origins = raw.cors_origins.unwrap_or_default();
    for origin in &cors_origins {
        if origin == "*" {
            if !raw.public {
                problems.add(
                    &place,
                    "cors_origins",
                    "`*` is only for public integrations; list the exact origins",
                );
            }
        } else if let Err(reason) = check_origin(origin) {
            problems.add(&place, "cors_origins", reason);
        }
    }

    let delivery = match raw.delivery.as_deref() {
        None | Some("stream") => Delivery::Stream,
        Some("redirect") => Delivery::Redirect {
            expires: parse_setting_duration(
                raw.redirect_expires.as_deref(),
                Duration::from_secs(300),
                &place,
                "redirect_expires",
                problems,
            ),
        },
        Some(other) => {
            problems.add(
                &place,
                "delivery",
                format!("`{other}` is not \"stream\" or \"redirect\""),
            );
            Delivery::Stream
        }
    };
    if let Delivery::Redirect { expires } = delivery
        && !(1..=MAX_PRESIGN_SECONDS).contains(&expires.as_secs())
    {
        problems.add(&place, "redirect_expires", "must be between 1s and 7 days");
    }

    let credentials = match raw.credentials {
        None => {
            problems.add(
                &place,
                "credentials",
                "is required: [integration.credentials] with role_arn, access_key_id or source",
            );
            None
        }
        Some(raw) => build_credentials(raw, &format!("{place}: credentials"), problems, secrets),
    };

    if problems.list.len() > before {
        return None;
    }
    Some(Integration {
        name,
        buckets: buckets?,
        prefix,
        region,
        endpoint,
        ca_file,
        addressing,
        access,
        public: raw.public,
        allow_unusual_keys: raw.allow_unusual_keys,
        allow_acl_headers: raw.allow_acl_headers,
        active_content,
        credentials: credentials?,
        cors_origins,
        delivery,
    })
}

fn parse_access(text: Option<&str>, place: &str, problems: &mut Problems<'_>) -> Access {
    match text {
        None | Some("read-only") => Access::ReadOnly,
        Some("read-write") => Access::ReadWrite,
        Some(other) => {
            problems.add(
                place,
                "access",
                format!("`{other}` is not \"read-only\" or \"read-write\""),
            );
            Access::ReadOnly
        }
    }
}

/// The longest an S3 presigned URL may live.
const MAX_PRESIGN_SECONDS: u64 = 7 * 24 * 3600;

/// `https://app.example.com[:port]`: what a browser sends as `Origin`.
fn check_origin(origin: &str) -> Result<(), String> {
    let endpoint = parse_endpoint(origin)
        .map_err(|_| format!("`{origin}` is not an origin like https://app.example.com"))?;
    if endpoint.url() != origin.to_ascii_lowercase() {
        return Err(format!(
            "`{origin}` must be written as a browser sends it: scheme://host[:port], lower case, no `/`"
        ));
    }
    Ok(())
}

fn build_client(
    index: usize,
    raw: RawClient,
    integrations: &[Arc<Integration>],
    problems: &mut Problems<'_>,
    secrets: &dyn SecretLookup,
) -> Option<ClientConfig> {
    let access_key_id = raw.access_key_id.unwrap_or_default();
    let place = if access_key_id.is_empty() {
        format!("client #{}", index + 1)
    } else {
        format!("client \"{access_key_id}\"")
    };
    let before = problems.list.len();
    if access_key_id.len() < 3 || !access_key_id.chars().all(|c| c.is_ascii_alphanumeric()) {
        problems.add(
            &place,
            "access_key_id",
            "must be 3 or more letters and digits",
        );
    }
    let secret = read_secret(
        raw.secret_access_key_env,
        raw.secret_access_key_file,
        &place,
        problems,
        secrets,
    );
    let access = parse_access(raw.access.as_deref(), &place, problems);
    let names = raw.integrations.unwrap_or_default();
    if names.is_empty() {
        problems.add(
            &place,
            "integrations",
            "must name at least one integration or bucket",
        );
    }
    let mut bindings = Vec::new();
    for name in &names {
        match bind(name, integrations) {
            Ok(binding) => bindings.push(binding),
            Err(reason) => problems.add(&place, "integrations", reason),
        }
    }
    if problems.list.len() > before {
        return None;
    }
    Some(ClientConfig {
        access_key_id,
        secret_access_key: secret?,
        bindings,
        access,
    })
}

/// What a client's `integrations` entry grants: an integration by name (all of it), a bucket
/// scoped by one integration (all of that integration), or one bucket a default integration
/// permits (that bucket only).
fn bind(name: &str, integrations: &[Arc<Integration>]) -> Result<(String, Option<String>), String> {
    if integrations.iter().any(|i| i.name == name) {
        return Ok((name.to_string(), None));
    }
    let scoped: Vec<&Arc<Integration>> = integrations
        .iter()
        .filter(|i| i.buckets == Buckets::Scoped(name.to_string()))
        .collect();
    match scoped.as_slice() {
        [only] => return Ok((only.name.clone(), None)),
        [] => {}
        _ => {
            return Err(format!(
                "bucket `{name}` is shared by several integrations; name the integration"
            ));
        }
    }
    integrations
        .iter()
        .find(|i| matches!(&i.buckets, Buckets::Permitted(list) if list.iter().any(|b| b == name)))
        .map(|i| (i.name.clone(), Some(name.to_string())))
        .ok_or_else(|| format!("`{name}` is not an integration or a bucket of one"))
}

fn build_credentials(
    raw: RawCredentials,
    place: &str,
    problems: &mut Problems<'_>,
    secrets: &dyn SecretLookup,
) -> Option<CredentialSource> {
    let kinds = [
        raw.role_arn.is_some(),
        raw.access_key_id.is_some(),
        raw.source.is_some(),
    ]
    .iter()
    .filter(|given| **given)
    .count();
    if kinds != 1 {
        problems.add(
            place,
            "role_arn",
            "give exactly one of `role_arn` (STS AssumeRole), `access_key_id` (static keys) or \
             `source = \"default-chain\"`",
        );
        return None;
    }

    if let Some(role_arn) = raw.role_arn {
        let mut ok = true;
        if let Err(reason) = check_role_arn(&role_arn) {
            problems.add(place, "role_arn", reason);
            ok = false;
        }
        for (field, given) in [
            ("secret_access_key_env", raw.secret_access_key_env.is_some()),
            (
                "secret_access_key_file",
                raw.secret_access_key_file.is_some(),
            ),
            ("session_token_env", raw.session_token_env.is_some()),
        ] {
            if given {
                problems.add(place, field, "does not go with `role_arn`");
                ok = false;
            }
        }
        if let Some(external_id) = &raw.external_id
            && (external_id.len() < 2
                || external_id.len() > 1224
                || !external_id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@:/-_".contains(c)))
        {
            problems.add(
                place,
                "external_id",
                "must be 2-1224 characters of letters, digits and +=,.@:/-_ (AWS's rule)",
            );
            ok = false;
        }
        let session_name = raw
            .session_name
            .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_string());
        if session_name.len() < 2
            || session_name.len() > 64
            || !session_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(c))
        {
            problems.add(
                place,
                "session_name",
                "must be 2-64 characters of letters, digits and +=,.@-_ (AWS's rule)",
            );
            ok = false;
        }
        return ok.then_some(CredentialSource::AssumeRole {
            role_arn,
            external_id: raw.external_id,
            session_name,
        });
    }

    for (field, given) in [
        ("external_id", raw.external_id.is_some()),
        ("session_name", raw.session_name.is_some()),
    ] {
        if given {
            problems.add(place, field, "only goes with `role_arn`");
        }
    }

    if let Some(source) = raw.source {
        if source != "default-chain" {
            problems.add(
                place,
                "source",
                format!("`{source}` is not \"default-chain\""),
            );
            return None;
        }
        return Some(CredentialSource::DefaultChain);
    }

    let access_key_id = raw.access_key_id.unwrap_or_default();
    if access_key_id.is_empty() || !access_key_id.chars().all(|c| c.is_ascii_alphanumeric()) {
        problems.add(place, "access_key_id", "must be letters and digits");
    }
    let secret = read_secret(
        raw.secret_access_key_env,
        raw.secret_access_key_file,
        place,
        problems,
        secrets,
    );
    let session_token = match raw.session_token_env {
        None => None,
        Some(var) => match secrets.var(&var) {
            Some(value) if !value.is_empty() => Some(Secret::new(value)),
            _ => {
                problems.add(
                    place,
                    "session_token_env",
                    format!("environment variable `{var}` is not set"),
                );
                None
            }
        },
    };
    Some(CredentialSource::Static(StaticKeys {
        access_key_id,
        secret_access_key: secret?,
        session_token,
    }))
}

/// A secret from an environment variable or a file: exactly one of the two, never inline.
fn read_secret(
    env: Option<String>,
    file: Option<String>,
    place: &str,
    problems: &mut Problems<'_>,
    secrets: &dyn SecretLookup,
) -> Option<Secret> {
    match (env, file) {
        (Some(var), None) => match secrets.var(&var) {
            Some(value) if !value.is_empty() => Some(Secret::new(value)),
            _ => {
                problems.add(
                    place,
                    "secret_access_key_env",
                    format!("environment variable `{var}` is not set"),
                );
                None
            }
        },
        (None, Some(file)) => match std::fs::read_to_string(&file) {
            Ok(value) if !value.trim().is_empty() => Some(Secret::new(value.trim())),
            Ok(_) => {
                problems.add(
                    place,
                    "secret_access_key_file",
                    format!("`{file}` is empty"),
                );
                None
            }
            Err(error) => {
                problems.add(
                    place,
                    "secret_access_key_file",
                    format!("cannot read `{file}`: {error}"),
                );
                None
            }
        },
        _ => {
            problems.add(
                place,
                "secret_access_key_env",
                "give exactly one of `secret_access_key_env` or `secret_access_key_file` \
                 (secrets are never written inline)",
            );
            None
        }
    }
}

/// Logical names must be unambiguous. An integration's name is its own: no other integration
/// may use it as a name or a bucket. A bucket scoped by several integrations (one bucket, one
/// prefix per tenant) is simply not a logical name: each is reached by its integration's name.
/// A bucket permitted by two default integrations is ambiguous and refused.
fn check_names_unique(integrations: &[Arc<Integration>], problems: &mut Problems<'_>) {
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    for integration in integrations {
        if let Some(other) = names.insert(&integration.name, &integration.name) {
            problems.add(
                &format!("integration \"{}\"", integration.name),
                "name",
                format!("is already the name of integration \"{other}\""),
            );
        }
    }
    let mut permitted_by: BTreeMap<&str, &str> = BTreeMap::new();
    for integration in integrations {
        let place = format!("integration \"{}\"", integration.name);
        let buckets: Vec<&String> = match &integration.buckets {
            Buckets::Scoped(bucket) => vec![bucket],
            Buckets::Permitted(list) => list.iter().collect(),
        };
        for bucket in buckets {
            if let Some(owner) = names.get(bucket.as_str())
                && *owner != integration.name
            {
                problems.add(
                    &place,
                    "bucket",
                    format!("`{bucket}` is the name of integration \"{owner}\"; rename one"),
                );
            }
        }
        if let Buckets::Permitted(list) = &integration.buckets {
            for bucket in list {
                if let Some(other) = permitted_by.insert(bucket, &integration.name) {
                    problems.add(
                        &place,
                        "buckets",
                        format!(
                            "`{bucket}` is also permitted by default integration \"{other}\"; \
                             a request for it would be ambiguous"
                        ),
                    );
                }
            }
        }
    }
}

/// S3's bucket naming rules (also applied to integration names, which share the URL space).
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    if !(3..=63).contains(&name.len()) {
        return Err("must be 3-63 characters long".to_string());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err("may contain only lowercase letters, digits, `.` and `-`".to_string());
    }
    let first_last_ok =
        |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !first_last_ok(name.bytes().next()) || !first_last_ok(name.bytes().last()) {
        return Err("must begin and end with a letter or digit".to_string());
    }
    if name.contains("..") {
        return Err("must not contain `..`".to_string());
    }
    Ok(())
}

/// A prefix is a directory: `tenant` becomes `tenant/`, so key `-x` can never reach a sibling
/// `tenant-x`.
fn check_prefix(prefix: &str) -> Result<String, String> {
    if prefix.starts_with('/') {
        return Err("must not start with `/` (S3 keys have no leading slash)".to_string());
    }
    if prefix.chars().any(char::is_control) {
        return Err("must not contain control characters".to_string());
    }
    if prefix
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err("must not contain `.` or `..` segments".to_string());
    }
    if prefix.contains("//") {
        return Err("must not contain empty segments (`//`)".to_string());
    }
    if prefix.is_empty() || prefix.ends_with('/') {
        Ok(prefix.to_string())
    } else {
        Ok(format!("{prefix}/"))
    }
}

fn check_role_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let well_formed = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|name| !name.is_empty());
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "`{arn}` is not an IAM role ARN like arn:aws:iam::111122223333:role/Name"
        ))
    }
}

/// Parses `http://host:port` or `https://host[:port]`; no path, query or user info.
pub fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|_| format!("`{text}` is not a URL like http://127.0.0.1:9000"))?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::Http,
        Some("https") => Scheme::Https,
        _ => return Err(format!("`{text}` must start with http:// or https://")),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("`{text}` has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("`{text}` must not carry credentials"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("`{text}` must not have a path or query"));
    }
    Ok(Endpoint {
        scheme,
        host: authority.host().to_ascii_lowercase(),
        port: authority.port_u16(),
    })
}

/// Parses `250ms`, `90s`, `5m`, `1h` (or a plain number of seconds).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: u64 = number.parse().ok()?;
    if unit == "ms" {
        return Some(Duration::from_millis(number));
    }
    let seconds = match unit {
        "s" => number,
        "m" => number.checked_mul(60)?,
        "h" => number.checked_mul(3600)?,
        _ => return None,
    };
    Some(Duration::from_secs(seconds))
}

fn parse_setting_duration(
    text: Option<&str>,
    default: Duration,
    place: &str,
    field: &str,
    problems: &mut Problems<'_>,
) -> Duration {
    match text {
        None => default,
        Some(text) => parse_duration(text).unwrap_or_else(|| {
            problems.add(
                place,
                field,
                format!("`{text}` is not a duration like 90s, 5m or 1h"),
            );
            default
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> BTreeMap<String, String> {
        BTreeMap::from([("MINIO_SECRET".to_string(), "minio-secret".to_string())])
    }

    const GOOD: &str = r#"
        [server]
        listen = "127.0.0.1:0"
        base_domain = "media.example.com"

        [sts]
        endpoint = "http://127.0.0.1:5000"
        refresh_before_expiry = "5m"
        duration = "1h"

        [[integration]]
        name = "acme-media"
        bucket = "acme-prod-media"
        prefix = "labelling"
        region = "us-west-2"
        [integration.credentials]
        role_arn = "arn:aws:iam::111122223333:role/Integration"
        external_id = "acme-external-id"

        [[integration]]
        name = "local"
        bucket = "local-bucket"
        region = "us-east-1"
        endpoint = "http://127.0.0.1:9000"
        public = true
        [integration.credentials]
        access_key_id = "minioadmin"
        secret_access_key_env = "MINIO_SECRET"

        [[integration]]
        name = "kolena-default"
        default = true
        buckets = ["bucket-one", "bucket-two"]
        region = "eu-west-1"
        [integration.credentials]
        source = "default-chain"
    "#;

    #[test]
    fn parses_a_full_config_into_typed_values() {
        let config = Config::parse(GOOD, "good.toml", &secrets()).expect("valid");
        assert_eq!(
            config.server.base_domain.as_deref(),
            Some("media.example.com")
        );
        assert_eq!(config.sts.duration, Duration::from_secs(3600));
        let acme = &config.integrations[0];
        assert_eq!(acme.prefix, "labelling/", "a prefix is a directory");
        assert_eq!(acme.addressing, Addressing::VirtualHost);
        assert!(matches!(
            &acme.credentials,
            CredentialSource::AssumeRole { session_name, external_id: Some(id), .. }
                if session_name == DEFAULT_SESSION_NAME && id == "acme-external-id"
        ));
        let local = &config.integrations[1];
        assert_eq!(
            local.addressing,
            Addressing::Path,
            "custom endpoints default to path style"
        );
        assert_eq!(
            local.endpoint.as_ref().map(Endpoint::url).as_deref(),
            Some("http://127.0.0.1:9000")
        );
        match &local.credentials {
            CredentialSource::Static(keys) => {
                assert_eq!(keys.secret_access_key.expose(), "minio-secret");
                assert!(!format!("{keys:?}").contains("minio-secret"));
            }
            other => panic!("expected static keys, got {other:?}"),
        }
        assert_eq!(
            config.integrations[2].buckets,
            Buckets::Permitted(vec!["bucket-one".into(), "bucket-two".into()])
        );
    }

    #[test]
    fn reports_every_problem_with_file_integration_and_field() {
        let text = r#"
            [[integration]]
            name = "Bad_Name"
            bucket = "ok-bucket"
            region = "us-east-1"
            [integration.credentials]
            role_arn = "arn:aws:iam::12:role/x"

            [[integration]]
            name = "second"
            bucket = "other-bucket"
            region = "us-east-1"
            addressing = "sideways"
            [integration.credentials]
            access_key_id = "AK"
            secret_access_key_env = "UNSET_VARIABLE"
        "#;
        let error = Config::parse(text, "bad.toml", &secrets()).expect_err("invalid");
        let all = error.to_string();
        assert!(
            all.contains("bad.toml: integration \"Bad_Name\": field `name`"),
            "{all}"
        );
        assert!(
            all.contains("integration \"Bad_Name\": credentials: field `role_arn`"),
            "{all}"
        );
        assert!(
            all.contains("integration \"second\": field `addressing`"),
            "{all}"
        );
        assert!(
            all.contains("integration \"second\": credentials: field `secret_access_key_env`: environment variable `UNSET_VARIABLE` is not set"),
            "{all}"
        );
        assert_eq!(error.problems.len(), 4, "{all}");
    }

    #[test]
    fn sts_durations_keep_to_aws_limits() {
        let sts = |duration: &str, token: bool| {
            let token = if token {
                "session_token_env = \"TOKEN\"\n"
            } else {
                ""
            };
            format!(
                "[sts]\nduration = \"{duration}\"\n[sts.credentials]\naccess_key_id = \"AK\"\nsecret_access_key_env = \"MINIO_SECRET\"\n{token}"
            )
        };
        let mut secrets = secrets();
        secrets.insert("TOKEN".to_string(), "session-token".to_string());
        for (duration, token, problem) in [
            ("10m", false, Some("must be between 15m and 12h")),
            ("13h", false, Some("must be between 15m and 12h")),
            ("12h", false, None),
            ("1h", true, None),
            (
                "2h",
                true,
                Some("must be at most 1h when [sts.credentials] has a session token"),
            ),
        ] {
            let outcome = Config::parse(&sts(duration, token), "sts.toml", &secrets);
            match (problem, outcome) {
                (None, Ok(config)) => assert_eq!(
                    Some(config.sts.duration),
                    parse_duration(duration),
                    "{duration}"
                ),
                (Some(problem), Err(error)) => {
                    let all = error.to_string();
                    assert!(all.contains("sts.toml: [sts]: field `duration`"), "{all}");
                    assert!(all.contains(problem), "{duration}, token {token}: {all}");
                }
                (expected, outcome) => {
                    panic!("{duration}, token {token}: expected {expected:?}, got {outcome:?}")
                }
            }
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_the_file_named() {
        let error = Config::parse("[server]\nlisten_on = \"x\"\n", "typo.toml", &secrets())
            .expect_err("unknown key");
        let text = error.to_string();
        assert!(
            text.contains("typo.toml") && text.contains("listen_on"),
            "{text}"
        );
    }

    #[test]
    fn an_integration_name_cannot_be_another_integrations_bucket() {
        let text = r#"
            [[integration]]
            name = "one"
            bucket = "shared-bucket"
            region = "us-east-1"
            [integration.credentials]
            source = "default-chain"

            [[integration]]
            name = "shared-bucket"
            bucket = "another"
            region = "us-east-1"
            [integration.credentials]
            source = "default-chain"
        "#;
        let error = Config::parse(text, "dup.toml", &secrets()).expect_err("conflict");
        assert!(
            error
                .to_string()
                .contains("`shared-bucket` is the name of integration \"shared-bucket\""),
            "{error}"
        );
    }

    #[test]
    fn two_default_integrations_cannot_permit_one_bucket() {
        let text = r#"
            [[integration]]
            name = "first"
            default = true
            buckets = ["data-bucket"]
            region = "us-east-1"
            [integration.credentials]
            source = "default-chain"

            [[integration]]
            name = "second"
            default = true
            buckets = ["data-bucket", "other-bucket"]
            region = "us-east-1"
            [integration.credentials]
            source = "default-chain"
        "#;
        let error = Config::parse(text, "dup.toml", &secrets()).expect_err("ambiguous");
        assert!(
            error
                .to_string()
                .contains("also permitted by default integration \"first\""),
            "{error}"
        );
    }

    #[test]
    fn tenants_may_share_a_bucket_under_their_own_prefixes() {
        let text = r#"
            [[integration]]
            name = "tenant-a"
            bucket = "shared-bucket"
            prefix = "a/"
            region = "us-east-1"
            [integration.credentials]
            source = "default-chain"

            [[integration]]
            name = "tenant-b"
            bucket = "shared-bucket"
            prefix = "b/"
            region = "us-east-1"
            [integration.credentials]
            source = "default-chain"
        "#;
        assert!(Config::parse(text, "shared.toml", &secrets()).is_ok());
    }

    #[test]
    fn clients_bind_to_integrations_or_single_permitted_buckets() {
        let mut secrets = secrets();
        secrets.insert("CLIENT_SECRET".into(), "client-secret".into());
        let text = format!(
            "{GOOD}{}",
            r#"
            [[client]]
            access_key_id = "AKCLIENT1"
            secret_access_key_env = "CLIENT_SECRET"
            integrations = ["acme-media", "local-bucket", "bucket-two"]
            access = "read-write"
            "#
        );
        let config = Config::parse(&text, "clients.toml", &secrets).expect("valid");
        let client = &config.clients[0];
        assert_eq!(
            client.bindings,
            vec![
                ("acme-media".to_string(), None),
                ("local".to_string(), None),
                ("kolena-default".to_string(), Some("bucket-two".to_string())),
            ]
        );
        assert_eq!(client.access, Access::ReadWrite);
        assert!(!format!("{client:?}").contains("client-secret"));

        let unknown = format!(
            "{GOOD}{}",
            r#"
            [[client]]
            access_key_id = "AKCLIENT2"
            secret_access_key = "inline-secret"
            integrations = ["nowhere"]
            "#
        );
        let error = Config::parse(&unknown, "clients.toml", &secrets).expect_err("invalid");
        assert!(
            error
                .to_string()
                .contains("unknown field `secret_access_key`"),
            "{error}"
        );
        let unknown = unknown.replace(
            "secret_access_key = \"inline-secret\"",
            "secret_access_key_env = \"CLIENT_SECRET\"",
        );
        let error = Config::parse(&unknown, "clients.toml", &secrets).expect_err("invalid");
        assert!(
            error.to_string().contains(
                "client \"AKCLIENT2\": field `integrations`: `nowhere` is not an integration"
            ),
            "{error}"
        );
    }

    #[test]
    fn cors_wildcards_are_for_public_integrations_only() {
        let private = GOOD.replace(
            "prefix = \"labelling\"",
            "prefix = \"labelling\"\ncors_origins = [\"*\", \"https://App.example.com/\"]",
        );
        let error = Config::parse(&private, "cors.toml", &secrets()).expect_err("invalid");
        let text = error.to_string();
        assert!(
            text.contains("`*` is only for public integrations"),
            "{text}"
        );
        assert!(
            text.contains("must be written as a browser sends it"),
            "{text}"
        );
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        assert!(check_bucket_name("my-bucket.v2").is_ok());
        for bad in [
            "ab",
            "Upper",
            "-dash",
            "dash-",
            "a..b",
            "has_underscore",
            "slash/x",
        ] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_and_endpoints_parse() {
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("5 minutes"), None);
        assert!(parse_endpoint("ftp://x").is_err());
        assert!(parse_endpoint("http://user:pw@host:9000").is_err());
        assert!(parse_endpoint("http://host:9000/path").is_err());
        let endpoint = parse_endpoint("https://S3.Example.com").expect("valid");
        assert_eq!(endpoint.authority(), "s3.example.com");
    }

    #[test]
    fn prefixes_are_directories() {
        assert_eq!(check_prefix("tenant").as_deref(), Ok("tenant/"));
        assert_eq!(check_prefix("a/b/").as_deref(), Ok("a/b/"));
        assert!(check_prefix("/abs").is_err());
        assert!(check_prefix("a/../b").is_err());
    }
}
