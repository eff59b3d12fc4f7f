//! Configuration: a TOML file parsed once, at start-up, into typed values.
//!
//! Later code never sees a raw string that could still be invalid: an [`Integration`] carries a
//! parsed [`Endpoint`], an [`Addressing`] style and a [`CredentialSource`]. Loading checks the
//! whole file and reports *every* problem, each naming the file, the integration and the field,
//! before the proxy refuses to start. Secrets are never inline: they are read through a
//! [`SecretLookup`] (the process environment in production, a map in tests) or from a file.

mod build;
mod clock;
mod credential_source;
mod env;
mod fields;
mod fragment;
mod integration_entry;
mod problems;
mod raw;
mod secret;
#[cfg(test)]
mod tests;
pub mod tls;

pub use clock::Clock;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::tls::TlsFiles;

pub use build::{Bindings, BucketName, bucket_name};
pub use env::ENV_PREFIX;
pub use fields::{check_bucket_name, parse_duration, parse_endpoint};
pub use fragment::Fragment;
use problems::Problems;
use raw::RawConfig;
pub use secret::{ProcessEnv, Secret, SecretLookup};

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`: listeners, TLS and limits.
    pub server: ServerConfig,
    /// `[sts]`: how the proxy assumes roles.
    pub sts: StsConfig,
    /// Every `[[integration]]`, in file order.
    pub integrations: Vec<Arc<Integration>>,
    /// Every `[[client]]`: keys the proxy issues.
    pub clients: Vec<ClientConfig>,
    /// `[source]`: where more integrations and clients come from, live.
    pub source: SourceConfig,
    /// The time the proxy decides by (not a setting: the system's, unless a test moves it).
    pub clock: Clock,
}

/// `[source]`: integrations and clients kept outside the main file, applied as they change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceConfig {
    /// A directory of `*.toml` files, each holding `[[integration]]` and `[[client]]` tables
    /// (relative to the main file's directory).
    pub directory: Option<std::path::PathBuf>,
    /// The PostgreSQL connection URL, read from the variable or file the operator named.
    pub postgres_url: Option<Secret>,
    /// CA certificates (PEM) trusted for the database's TLS certificate, besides the webpki
    /// roots (a private CA, Amazon RDS's bundle).
    pub postgres_ca_file: Option<std::path::PathBuf>,
    /// How often everything is read again from the database, besides on each (re)connect.
    pub resync_interval: Duration,
    /// Whether the database's rows are all read at start (`true`), or each is fetched by its
    /// key when a request first names it.
    pub preload: bool,
    /// With `preload = false`: how many fetched integrations and clients are kept.
    pub cache_entries: u64,
    /// With `preload = false`: how long a name the database does not hold is believed absent.
    pub absent_for: Duration,
}

/// Keys the proxy issues to an SDK client or URL signer, and where they lead.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The key id clients sign with.
    pub access_key_id: String,
    /// Its secret, from the environment or a file.
    pub secret_access_key: Secret,
    /// (integration name, one bucket of it or all of it).
    pub bindings: Vec<(String, Option<String>)>,
    /// Whether the client may write, within its bindings.
    pub access: Access,
}

/// How a verified GET is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The proxy streams the object.
    Stream,
    /// `307` to an upstream presigned URL valid this long (the bytes skip the proxy).
    Redirect {
        /// How long the upstream URL is valid.
        expires: Duration,
    },
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Where the proxy accepts requests.
    pub listen: SocketAddr,
    /// Where `/healthz`, `/readyz` and `/metrics` are served; `None`: nowhere.
    pub admin_listen: Option<SocketAddr>,
    /// Who may use the admin listener besides IP literals and `localhost`.
    pub admin: AdminAccess,
    /// With `media.example.com`, `{name}.media.example.com/{key}` is the same as `/{name}/{key}`.
    pub base_domain: Option<String>,
    /// TLS on the public listener (PEM files, re-read when they change).
    pub tls: Option<TlsFiles>,
    /// `[server.limits]`.
    pub limits: Limits,
    /// Whether clients may sign with SigV2 (on by default; off answers S3's 400).
    pub sigv2: bool,
    /// The `SameSite` attribute of signed-policy cookies (`cookie_same_site`).
    pub cookie_same_site: SameSite,
    /// Where the client's own address comes from behind load balancers.
    pub front: FrontProxies,
    /// `[server.cache] memory`: the object cache's budget in bytes (`None`: no cache).
    pub cache_memory: Option<u64>,
    /// `[server.cache] chunk`: the size of the aligned chunks ranges are kept in (1 MiB).
    pub cache_chunk: u64,
    /// `[server.cache] disk` and `disk_size`: the object cache's second tier, a directory and
    /// its budget in bytes.
    pub cache_disk: Option<(std::path::PathBuf, u64)>,
}

/// What the admin listener asks of a request, so that a web page an operator visits cannot
/// drive it (the admin listener checks each request against it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminAccess {
    /// Host names, lower case, that `Host` may name besides IP literals and `localhost`
    /// (`admin_hosts`): a page's DNS-rebound name is in neither.
    pub hosts: Vec<String>,
    /// With `admin_token_env` / `admin_token_file`: every endpoint but `/healthz` and
    /// `/readyz` asks for `Authorization: Bearer` this token.
    pub token: Option<Secret>,
}

/// A cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SameSite {
    /// Sent on same-site requests and top-level navigations: pages on the platform's own
    /// domain load images with it, another site's page does not.
    #[default]
    Lax,
    /// Sent only on requests from the proxy's own site.
    Strict,
    /// Sent on cross-site requests too (browsers then require `Secure`).
    None,
}

impl SameSite {
    /// The attribute's value as `Set-Cookie` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        }
    }
}

/// Load balancers and proxies in front of the public listener. The client address they report
/// feeds the rate limit, a signed policy's `ip` and the access line, never routing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrontProxies {
    /// Peers whose forwarding header is believed (`trusted_proxies`); none by default.
    pub trusted: Vec<IpNet>,
    /// Which header a trusted peer reports the client in (`client_ip_header`).
    pub header: ForwardedHeader,
    /// Every connection from a `trusted` peer starts with a PROXY protocol (v1 or v2) header
    /// (`proxy_protocol`), and one without is closed; another peer's connection that starts
    /// with one is closed too, and the rest are served as their own address.
    pub proxy_protocol: bool,
}

/// The header a trusted front proxy writes the client's address in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, most balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

/// An address range: `10.0.0.0/8`, `fd00::/8`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    /// The range's first address (host bits cleared).
    pub address: std::net::IpAddr,
    /// The number of leading bits that must match.
    pub prefix: u8,
}

impl IpNet {
    /// Parses `address/prefix` (or one address), as the config writes ranges.
    pub fn parse(text: &str) -> Result<IpNet, String> {
        fields::parse_ip_net(text)
    }

    /// Whether `address` is in the range (an IPv4-mapped IPv6 address is not an IPv4 one).
    pub fn contains(&self, address: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        match (self.address, address) {
            (IpAddr::V4(net), IpAddr::V4(address)) => mask_matches(
                u32::from(net).into(),
                u32::from(address).into(),
                self.prefix,
                32,
            ),
            (IpAddr::V6(net), IpAddr::V6(address)) => {
                mask_matches(u128::from(net), u128::from(address), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix` of `width` bits of `a` and `b` agree.
fn mask_matches(a: u128, b: u128, prefix: u8, width: u32) -> bool {
    let prefix = u32::from(prefix).min(width);
    if prefix == 0 {
        return true;
    }
    let shift = width - prefix;
    (a >> shift) == (b >> shift)
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
    /// The most a connection reads ahead of the other side of a transfer, in bytes: the size of
    /// a body chunk read from a client or from the store (by the first
    /// [`Limits::wide_transfers`] downloads at once). Each transfer holds about two of these;
    /// larger reads cost fewer system calls per byte.
    pub body_buffer_bytes: usize,
    /// Downloads (GETs) at once whose store responses are read `body_buffer_bytes` at a time;
    /// any more, and every other request, read [`Limits::narrow_body_buffer`] at a time, so
    /// many concurrent large downloads stay within a bounded memory while a few still move at
    /// full speed.
    pub wide_transfers: usize,
    /// Upload body bytes read from clients and not yet written to the store, across all
    /// requests: at this total the proxy stops reading upload bodies (TCP backpressure) until
    /// the stores take some.
    pub max_buffered_body_bytes: usize,
    /// A client must send a request's headers within this time (slowloris).
    pub header_read_timeout: Duration,
    /// A connection with no bytes moving either way for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; further ones wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Connecting to the upstream store.
    pub upstream_connect_timeout: Duration,
    /// From sending a request upstream to its response headers.
    pub upstream_first_byte_timeout: Duration,
    /// How long in-flight requests may finish after SIGTERM/SIGINT.
    pub shutdown_deadline: Duration,
    /// Requests per second per client (access key id; anonymous callers by IP address).
    pub rate_limit: Option<RateLimit>,
}

/// A token bucket: a steady rate and the burst above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests per second, refilled continuously.
    pub per_second: f64,
    /// Requests allowed at once after a quiet spell.
    pub burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            body_buffer_bytes: 400 * 1024,
            wide_transfers: 8,
            max_buffered_body_bytes: 256 * 1024 * 1024,
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

impl Limits {
    /// What the store's answer to a download beyond the first [`Limits::wide_transfers`], or to
    /// any other request, is read in: 64 KiB, or `body_buffer_bytes` if that is smaller.
    pub fn narrow_body_buffer(&self) -> usize {
        self.body_buffer_bytes.min(64 * 1024)
    }
}

/// `[sts]`.
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
    /// Obtain every integration's credentials at start and after each reload, at most this
    /// many STS calls a second (`warm_up_per_second`); `None`: each when first needed.
    pub warm_up_per_second: Option<f64>,
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

/// An access key pair, and a session token for temporary keys.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StaticKeys {
    /// The key id, not secret (it is logged).
    pub access_key_id: String,
    /// The secret key.
    pub secret_access_key: Secret,
    /// The session token of temporary keys.
    pub session_token: Option<Secret>,
}

impl fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKeys")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// How an integration obtains the credentials it signs upstream requests with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CredentialSource {
    /// Fixed keys (MinIO, a dedicated IAM user).
    Static(StaticKeys),
    /// STS `AssumeRole` into the customer's role, with the ExternalId the customer set.
    AssumeRole {
        /// The customer's role.
        role_arn: String,
        /// The ExternalId the customer's trust policy asks for.
        external_id: Option<String>,
        /// `RoleSessionName`, seen in the customer's CloudTrail.
        session_name: String,
    },
    /// The proxy's own identity from the standard AWS chain.
    DefaultChain,
}

impl CredentialSource {
    /// Where the credentials come from, for people: `static keys AKID…`, `assumed <the role
    /// ARN, as built>`, or `the proxy's own identity`. Never a secret.
    pub fn describe(&self) -> String {
        match self {
            CredentialSource::Static(keys) => format!("static keys {}", keys.access_key_id),
            CredentialSource::AssumeRole { role_arn, .. } => format!("assumed {role_arn}"),
            CredentialSource::DefaultChain => "the proxy's own identity".to_string(),
        }
    }
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

/// What a caller may do within what it reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// GET, HEAD and listings.
    ReadOnly,
    /// Also PUT, DELETE and multipart uploads.
    ReadWrite,
}

impl Access {
    /// As the config spells it: `read-only` or `read-write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::ReadOnly => "read-only",
            Access::ReadWrite => "read-write",
        }
    }
}

/// An endpoint's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP (local stores).
    Http,
    /// HTTPS.
    Https,
}

impl Scheme {
    /// `http` or `https`.
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
    /// HTTP or HTTPS.
    pub scheme: Scheme,
    /// The host name or address, lower case.
    pub host: String,
    /// The port, when not the scheme's own.
    pub port: Option<u16>,
}

impl Endpoint {
    /// `host[:port]`, as it goes in the `Host` header.
    pub fn authority(&self) -> String {
        let mut authority = String::with_capacity(self.host.len() + 6);
        self.push_authority(&mut authority);
        authority
    }

    /// Appends `host[:port]` to `out`.
    pub fn push_authority(&self, out: &mut String) {
        out.push_str(&self.host);
        if let Some(port) = self.port {
            out.push(':');
            out.push_str(itoa::Buffer::new().format(port));
        }
    }

    /// `scheme://host[:port]`.
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
    /// The logical bucket name callers use.
    pub name: String,
    /// The real bucket or buckets it reaches.
    pub buckets: Buckets,
    /// Empty, or a directory ending in `/`: upstream keys are always `prefix + key`.
    pub prefix: String,
    /// The bucket's region, or `auto`: discovered once from the bucket itself.
    pub region: Region,
    /// A custom S3-compatible endpoint; `None` means AWS.
    pub endpoint: Option<Endpoint>,
    /// Extra CA certificates (PEM) trusted for this integration's endpoint, besides the
    /// system's roots: private MinIO/Ceph.
    pub ca_file: Option<PathBuf>,
    /// Virtual-host or path style upstream.
    pub addressing: Addressing,
    /// What callers may do here.
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
    /// How upstream requests get their credentials.
    pub credentials: CredentialSource,
    /// Browser origins allowed by CORS: exact `scheme://host[:port]`, or `*` (public only).
    pub cors_origins: Vec<String>,
    /// Whether GETs are streamed or redirected.
    pub delivery: Delivery,
    /// Whether and how long its objects are kept in the object cache (`cache_ttl`).
    pub cache: Option<CachePolicy>,
}

/// An integration's use of the object cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// How long an entry is served without asking the store (`cache_ttl`).
    pub ttl: Duration,
    /// The largest object kept (`cache_max_object`, default 64 MiB).
    pub max_object: u64,
    /// How long past its TTL an entry still answers when its revalidation fails (the store's
    /// 5xx, an unreachable store, refused credentials): `cache_stale_if_error`, default 0 (off).
    pub stale_if_error: Duration,
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

/// Where an integration's bucket lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Region {
    /// Given in the file (`us-west-2`), or discovered for [`Region::Auto`].
    Named(String),
    /// `region = "auto"`: asked of the bucket once, before anything is signed for it.
    Auto,
}

/// The region S3 answers any bucket's HeadBucket in (with the bucket's own region), and the
/// one STS is called in for a [`Region::Auto`] integration.
pub const DISCOVERY_REGION: &str = "us-east-1";

impl Region {
    /// The region to sign with and call STS in: the named one, or [`DISCOVERY_REGION`] while
    /// `auto` is not yet resolved.
    pub fn signing_name(&self) -> &str {
        match self {
            Region::Named(name) => name,
            Region::Auto => DISCOVERY_REGION,
        }
    }
}

impl Region {
    /// As the config spells it: the name, or `auto`.
    pub fn as_str(&self) -> &str {
        match self {
            Region::Named(name) => name,
            Region::Auto => "auto",
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Integration {
    /// Whether the region is still to be discovered.
    pub fn region_is_auto(&self) -> bool {
        self.region == Region::Auto
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
    /// Each problem, naming the file, the place and the field.
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
    /// assert_eq!(config.integrations[0].region.to_string(), "eu-west-1");
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
            if let Err(reason) = env::apply_override(&mut table, name, value) {
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
            inline_secrets: false,
        };
        let config = build::build_config(raw, &mut problems, secrets);
        if problems.list.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                problems: problems.list,
            })
        }
    }
}
