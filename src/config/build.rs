//! From the file as written to typed values: the server, limits, STS and clients, every
//! problem collected with its place.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::credential_source::build_credentials;
use super::fields::{parse_endpoint, parse_ip_net, parse_size};
use super::integration_entry::build_integration;
use super::problems::{Problems, parse_access, parse_setting_duration};
use super::raw::{RawClient, RawConfig, RawLimits, RawServer, RawSource, RawSts};
use super::secret::{SecretLookup, read_secret};
use super::{
    AdminAccess, BaseCredentials, Buckets, ClientConfig, Config, CredentialSource, ForwardedHeader,
    FrontProxies, Integration, Limits, RateLimit, SameSite, ServerConfig, SourceConfig, StsConfig,
};
use crate::config::tls::TlsFiles;

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Checks the whole file; `problems` collects what is wrong.
pub(super) fn build_config(
    raw: RawConfig,
    problems: &mut Problems<'_>,
    secrets: &dyn SecretLookup,
) -> Config {
    let server = build_server(raw.server, problems, secrets);
    let sts = build_sts(raw.sts, problems, secrets);
    let source = build_source(raw.source.unwrap_or_default(), problems, secrets);
    let mut integrations = Vec::new();
    for (index, raw_integration) in raw.integrations.into_iter().enumerate() {
        if let Some(integration) = build_integration(index, raw_integration, problems, secrets) {
            integrations.push(Arc::new(integration));
        }
    }
    check_names_unique(&integrations, problems);
    let bindable = Bindings::new(&integrations, false);
    let clients = raw
        .clients
        .into_iter()
        .enumerate()
        .filter_map(|(index, raw)| build_client(index, raw, &bindable, problems, secrets))
        .collect();
    Config {
        server,
        sts,
        integrations,
        clients,
        source,
        clock: super::Clock::default(),
    }
}

/// `[source]`: a directory of integration files, a PostgreSQL database, or both.
fn build_source(
    raw: RawSource,
    problems: &mut Problems<'_>,
    secrets: &dyn SecretLookup,
) -> SourceConfig {
    let names_database = raw.postgres_url_env.is_some() || raw.postgres_url_file.is_some();
    let postgres_url = match (&raw.postgres_url_env, &raw.postgres_url_file) {
        (None, None) => None,
        _ => read_secret(
            "postgres_url",
            (None, raw.postgres_url_env, raw.postgres_url_file),
            "[source]",
            problems,
            secrets,
        ),
    };
    let resync_interval = parse_setting_duration(
        raw.resync_interval.as_deref(),
        Duration::from_secs(300),
        "[source]",
        "resync_interval",
        problems,
    );
    let postgres_ca_file = raw.postgres_ca_file.map(PathBuf::from);
    if let Some(path) = &postgres_ca_file
        && let Err(problem) = super::tls::read_ca_file(path)
    {
        problems.add("[source]", "postgres_ca_file", problem);
    }
    let preload = raw.preload.unwrap_or(true);
    if !preload && !names_database {
        problems.add(
            "[source]",
            "preload",
            "`preload = false` fetches rows on demand: it needs postgres_url_env or _file",
        );
    }
    let cache_entries = raw.cache_entries.unwrap_or(100_000);
    if cache_entries == 0 {
        problems.add("[source]", "cache_entries", "must be at least 1");
    }
    let absent_for = parse_setting_duration(
        raw.absent_for.as_deref(),
        Duration::from_secs(5),
        "[source]",
        "absent_for",
        problems,
    );
    SourceConfig {
        directory: raw.directory.map(PathBuf::from),
        postgres_url,
        postgres_ca_file,
        resync_interval,
        preload,
        cache_entries,
        absent_for,
    }
}

/// The default `[server.cache] chunk`.
const CACHE_CHUNK: u64 = 1 << 20;

/// `[server.cache] memory`, the object cache's budget (1 MiB or more), and `chunk`, the size
/// of the chunks ranges are kept in (64 KiB to 64 MiB).
fn build_cache(raw: Option<super::raw::RawCache>, problems: &mut Problems<'_>) -> Cache {
    let Some(cache) = raw else {
        return (None, CACHE_CHUNK, None);
    };
    let chunk = match cache.chunk.as_deref().map(|text| (text, parse_size(text))) {
        None => CACHE_CHUNK,
        Some((_, Some(bytes))) if ((64 << 10)..=(64 << 20)).contains(&bytes) => bytes,
        Some((text, _)) => {
            let reason = format!("`{text}` is not a size from 64KiB to 64MiB, like \"1MiB\"");
            problems.add("[server.cache]", "chunk", reason);
            CACHE_CHUNK
        }
    };
    let disk = build_cache_disk(cache.disk, cache.disk_size, problems);
    match parse_size(&cache.memory) {
        Some(bytes) if bytes >= 1 << 20 => (Some(bytes), chunk, disk),
        _ => {
            problems.add(
                "[server.cache]",
                "memory",
                format!(
                    "`{}` is not a size of 1MiB or more, like \"512MiB\"",
                    cache.memory
                ),
            );
            (None, chunk, None)
        }
    }
}

/// `[server.cache]`: the memory budget, the chunk size and the disk tier.
type Cache = (Option<u64>, u64, Option<(std::path::PathBuf, u64)>);

/// `disk` and `disk_size`: both or neither; a size of 64MiB or more.
fn build_cache_disk(
    disk: Option<String>,
    size: Option<String>,
    problems: &mut Problems<'_>,
) -> Option<(std::path::PathBuf, u64)> {
    let place = "[server.cache]";
    match (disk, size) {
        (None, None) => None,
        (Some(_), None) => {
            problems.add(place, "disk_size", "`disk` needs a budget, like \"50GiB\"");
            None
        }
        (None, Some(_)) => {
            problems.add(
                place,
                "disk",
                "`disk_size` is set without a `disk` directory",
            );
            None
        }
        (Some(directory), Some(text)) => match parse_size(&text) {
            Some(bytes) if bytes >= 64 << 20 => Some((directory.into(), bytes)),
            _ => {
                let reason = format!("`{text}` is not a size of 64MiB or more, like \"50GiB\"");
                problems.add(place, "disk_size", reason);
                None
            }
        },
    }
}

/// `[server]`: the listeners, the virtual-host domain, TLS and the limits.
fn build_server(
    raw: RawServer,
    problems: &mut Problems<'_>,
    secrets: &dyn SecretLookup,
) -> ServerConfig {
    let place = "[server]";
    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text.parse().unwrap_or_else(|_| {
        problems.add(
            place,
            "listen",
            format!("`{listen_text}` is not an address like 127.0.0.1:8080"),
        );
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    let base_domain = raw.base_domain.map(|domain| {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() || domain.contains(['/', ':', ' ']) {
            problems.add(
                place,
                "base_domain",
                "must be a DNS name like media.example.com (no scheme, port or path)",
            );
        }
        domain
    });
    let admin_listen = raw.admin_listen.and_then(|text| {
        text.parse()
            .map_err(|_| {
                problems.add(
                    place,
                    "admin_listen",
                    format!("`{text}` is not an address like 127.0.0.1:9090"),
                )
            })
            .ok()
    });
    if admin_listen.is_some_and(|admin| admin == listen && listen.port() != 0) {
        problems.add(place, "admin_listen", "must differ from `listen`");
    }
    let tls = raw.tls.map(|raw| TlsFiles {
        cert: PathBuf::from(raw.cert),
        key: PathBuf::from(raw.key),
    });
    if let Some(files) = &tls
        && let Err(error) = crate::config::tls::read_certified_key(files)
    {
        problems.add("[server.tls]", "cert", error);
    }
    let admin = build_admin_access(
        raw.admin_hosts,
        raw.admin_token_env,
        raw.admin_token_file,
        problems,
        secrets,
    );
    let (cache_memory, cache_chunk, cache_disk) = build_cache(raw.cache, problems);
    ServerConfig {
        cache_memory,
        cache_chunk,
        cache_disk,
        listen,
        admin_listen,
        admin,
        base_domain,
        tls,
        limits: build_limits(raw.limits.unwrap_or_default(), problems),
        sigv2: raw.sigv2.unwrap_or(true),
        cookie_same_site: build_same_site(raw.cookie_same_site, problems),
        front: build_front(
            raw.trusted_proxies,
            raw.client_ip_header,
            raw.proxy_protocol,
            problems,
        ),
    }
}

/// `admin_hosts` and the admin token (`admin_token_env` / `admin_token_file`, optional).
fn build_admin_access(
    hosts: Option<Vec<String>>,
    token_env: Option<String>,
    token_file: Option<String>,
    problems: &mut Problems<'_>,
    secrets: &dyn SecretLookup,
) -> AdminAccess {
    let place = "[server]";
    let hosts = hosts
        .unwrap_or_default()
        .into_iter()
        .map(|host| host.trim_end_matches('.').to_ascii_lowercase())
        .filter(|host| {
            let valid = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !valid {
                problems.add(
                    place,
                    "admin_hosts",
                    format!("`{host}` is not a host name (no scheme, port or path)"),
                );
            }
            valid
        })
        .collect();
    let token = (token_env.is_some() || token_file.is_some())
        .then(|| {
            read_secret(
                "admin_token",
                (None, token_env, token_file),
                place,
                problems,
                secrets,
            )
        })
        .flatten();
    if token
        .as_ref()
        .is_some_and(|token| token.expose().len() < 16)
    {
        problems.add(
            place,
            "admin_token_env",
            "the token must be 16 characters or more",
        );
    }
    AdminAccess { hosts, token }
}

/// `cookie_same_site`: `lax` (the default), `strict` or `none`.
fn build_same_site(text: Option<String>, problems: &mut Problems<'_>) -> SameSite {
    match text.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("lax") => SameSite::Lax,
        Some("strict") => SameSite::Strict,
        Some("none") => SameSite::None,
        Some(_) => {
            problems.add(
                "[server]",
                "cookie_same_site",
                "must be \"lax\", \"strict\" or \"none\"",
            );
            SameSite::Lax
        }
    }
}

/// `trusted_proxies`, `client_ip_header` and `proxy_protocol`: who may report the client.
fn build_front(
    trusted_proxies: Option<Vec<String>>,
    client_ip_header: Option<String>,
    proxy_protocol: bool,
    problems: &mut Problems<'_>,
) -> FrontProxies {
    let place = "[server]";
    let trusted: Vec<super::IpNet> = trusted_proxies
        .unwrap_or_default()
        .iter()
        .filter_map(|text| {
            parse_ip_net(text)
                .map_err(|reason| problems.add(place, "trusted_proxies", reason))
                .ok()
        })
        .collect();
    let header = match client_ip_header.as_deref() {
        None | Some("x-forwarded-for") => ForwardedHeader::XForwardedFor,
        Some("forwarded") => ForwardedHeader::Forwarded,
        Some(other) => {
            problems.add(
                place,
                "client_ip_header",
                format!("`{other}` is not \"x-forwarded-for\" or \"forwarded\""),
            );
            ForwardedHeader::XForwardedFor
        }
    };
    if proxy_protocol && trusted.is_empty() {
        problems.add(
            place,
            "trusted_proxies",
            "`proxy_protocol = true` needs the balancers' addresses here: a PROXY header is \
             believed from them only",
        );
    }
    FrontProxies {
        trusted,
        header,
        proxy_protocol,
    }
}

/// `[server.limits]`, each missing one at its default.
fn build_limits(raw: RawLimits, problems: &mut Problems<'_>) -> Limits {
    let defaults = Limits::default();
    let mut limits = Limits {
        rate_limit: rate_limit(&raw, defaults.rate_limit, problems),
        ..defaults
    };
    limit_times(&raw, &mut limits, problems);
    limit_sizes(&raw, &mut limits, problems);
    limits
}

/// The timeouts and deadlines of `[server.limits]`, none of them zero.
fn limit_times(raw: &RawLimits, limits: &mut Limits, problems: &mut Problems<'_>) {
    let mut set = |text: &Option<String>, value: &mut Duration, field: &str| {
        let place = "[server.limits]";
        *value = parse_setting_duration(text.as_deref(), *value, place, field, problems);
        if value.is_zero() {
            problems.add(place, field, "must be more than 0");
        }
    };
    set(
        &raw.header_read_timeout,
        &mut limits.header_read_timeout,
        "header_read_timeout",
    );
    set(&raw.idle_timeout, &mut limits.idle_timeout, "idle_timeout");
    set(
        &raw.upstream_connect_timeout,
        &mut limits.upstream_connect_timeout,
        "upstream_connect_timeout",
    );
    set(
        &raw.upstream_first_byte_timeout,
        &mut limits.upstream_first_byte_timeout,
        "upstream_first_byte_timeout",
    );
    set(
        &raw.shutdown_deadline,
        &mut limits.shutdown_deadline,
        "shutdown_deadline",
    );
}

/// The sizes and counts of `[server.limits]`, each at least its floor.
fn limit_sizes(raw: &RawLimits, limits: &mut Limits, problems: &mut Problems<'_>) {
    let mut set = |given: Option<usize>, value: &mut usize, min: usize, field: &str| {
        *value = given.unwrap_or(*value);
        if *value < min {
            problems.add("[server.limits]", field, format!("must be at least {min}"));
        }
    };
    // hyper needs room for at least 8 KiB of request head.
    let head = &mut limits.max_header_bytes;
    set(raw.max_header_bytes, head, 8192, "max_header_bytes");
    set(raw.max_headers, &mut limits.max_headers, 8, "max_headers");
    set(
        raw.max_uri_bytes,
        &mut limits.max_uri_bytes,
        256,
        "max_uri_bytes",
    );
    // hyper's own floor for a connection's buffer.
    let buffer = &mut limits.body_buffer_bytes;
    set(raw.body_buffer_bytes, buffer, 8192, "body_buffer_bytes");
    let wide = &mut limits.wide_transfers;
    set(raw.wide_transfers, wide, 0, "wide_transfers");
    let connections = &mut limits.max_connections;
    set(raw.max_connections, connections, 1, "max_connections");
    // Room for one client read of every size the proxy makes.
    let buffered = &mut limits.max_buffered_body_bytes;
    set(
        raw.max_buffered_body_bytes,
        buffered,
        1 << 20,
        "max_buffered_body_bytes",
    );
}

/// `rate_limit` (0: none) and `rate_limit_burst` (twice the rate unless given).
fn rate_limit(
    raw: &RawLimits,
    default: Option<RateLimit>,
    problems: &mut Problems<'_>,
) -> Option<RateLimit> {
    match raw.rate_limit {
        None => default,
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
                "[server.limits]",
                "rate_limit",
                "must be a positive number, or 0 for none",
            );
            None
        }
    }
}

/// `[sts]`: the endpoint, lifetimes and the proxy's own identity.
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
        Some(raw) => match build_credentials(raw, place, None, problems, secrets) {
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
    let warm_up_per_second = raw.warm_up_per_second.filter(|rate| {
        let valid = rate.is_finite() && *rate > 0.0 && *rate <= 1000.0;
        if !valid {
            problems.add(place, "warm_up_per_second", "must be between 0 and 1000");
        }
        valid
    });
    StsConfig {
        endpoint,
        refresh_before_expiry,
        duration,
        credentials,
        warm_up_per_second,
    }
}

/// The `index`th `[[client]]`: keys the proxy issues, and the integrations they reach.
pub(super) fn build_client(
    index: usize,
    raw: RawClient,
    bindable: &Bindings,
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
        "secret_access_key",
        (
            raw.secret_access_key,
            raw.secret_access_key_env,
            raw.secret_access_key_file,
        ),
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
        match bindable.bind(name) {
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

/// Where a client's `integrations` entries point, indexed once for all clients (a config may
/// have 10,000 integrations and thousands of clients; a source reads 20,000 client rows
/// against one index).
#[derive(Default)]
pub struct Bindings {
    names: std::collections::HashSet<String>,
    /// Integrations by the bucket they scope (one bucket, one prefix per tenant).
    scoped: std::collections::HashMap<String, Vec<String>>,
    /// The first default integration permitting each bucket.
    permitted: std::collections::HashMap<String, String>,
    /// Whether a name that is no integration or bucket in sight is kept as an integration's
    /// name (a source's client may name an integration another file or row holds, or will).
    unknown_as_name: bool,
}

impl Bindings {
    /// Indexes `integrations`; with `unknown_as_name`, a name none of them answers to binds
    /// as an integration's name (the sources' rule), else it is a problem (the main file's).
    pub fn new<'a>(
        integrations: impl IntoIterator<Item = &'a Arc<Integration>>,
        unknown_as_name: bool,
    ) -> Self {
        let mut bindings = Bindings {
            unknown_as_name,
            ..Bindings::default()
        };
        for integration in integrations {
            bindings.names.insert(integration.name.clone());
            match &integration.buckets {
                Buckets::Scoped(bucket) => bindings
                    .scoped
                    .entry(bucket.clone())
                    .or_default()
                    .push(integration.name.clone()),
                Buckets::Permitted(list) => {
                    for bucket in list {
                        bindings
                            .permitted
                            .entry(bucket.clone())
                            .or_insert_with(|| integration.name.clone());
                    }
                }
            }
        }
        bindings
    }

    /// What a client's `integrations` entry grants: an integration by name (all of it), a
    /// bucket scoped by one integration (all of that integration), or one bucket a default
    /// integration permits (that bucket only).
    fn bind(&self, name: &str) -> Result<(String, Option<String>), String> {
        if self.names.contains(name) {
            return Ok((name.to_string(), None));
        }
        let scoped = self
            .scoped
            .get(name)
            .map(|owners| (owners.len(), owners.first()));
        match bucket_name(scoped, self.permitted.get(name)) {
            BucketName::Scoped(only) => Ok((only.to_string(), None)),
            BucketName::Shared => Err(format!(
                "bucket `{name}` is shared by several integrations; name the integration"
            )),
            BucketName::Permitted(integration) => {
                Ok((integration.to_string(), Some(name.to_string())))
            }
            BucketName::Unknown if self.unknown_as_name => Ok((name.to_string(), None)),
            BucketName::Unknown => {
                Err(format!("`{name}` is not an integration or a bucket of one"))
            }
        }
    }
}

/// What a bucket's own name means as a logical name, given the integrations scoped to it
/// (how many, and the first) and the first default integration permitting it.
#[derive(Debug, PartialEq, Eq)]
pub enum BucketName<T> {
    /// The one integration scoped to it: all of that integration.
    Scoped(T),
    /// Several integrations scope it (one bucket, one prefix per tenant): no logical name;
    /// each is reached by its integration's name.
    Shared,
    /// No integration scopes it, and a default integration permits it: that bucket only.
    Permitted(T),
    /// Neither.
    Unknown,
}

/// The rule for a bucket's own name ([`BucketName`]): the client bindings read at load and
/// the served table (`request::integration::Integrations`) both decide by it.
pub fn bucket_name<T>(
    scoped: Option<(usize, Option<T>)>,
    first_permitting: Option<T>,
) -> BucketName<T> {
    match scoped {
        Some((1, Some(only))) => BucketName::Scoped(only),
        Some((count, _)) if count > 1 => BucketName::Shared,
        _ => first_permitting.map_or(BucketName::Unknown, BucketName::Permitted),
    }
}

/// Logical names must be unambiguous. An integration's name is its own: no other integration
/// may use it as a name or a bucket. A bucket scoped by several integrations (one bucket, one
/// prefix per tenant) is simply not a logical name: each is reached by its integration's name.
/// A bucket permitted by two default integrations is ambiguous and refused.
pub(super) fn check_names_unique(integrations: &[Arc<Integration>], problems: &mut Problems<'_>) {
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
