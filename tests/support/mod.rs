//! Shared test setup: real backends on loopback, the proxy in-process, and a plain HTTP client.
//!
//! - [`moto`] starts moto (S3 + STS + IAM, IAM auth enforced) once per test binary, provisioned
//!   by `moto_server.py`; it exits when the test process does.
//! - [`PassThrough`] sits in front of moto, counts what reaches it (all requests, AssumeRole
//!   calls) and can be told to fail (an STS outage no real server produces on demand).
//! - [`start_proxy`] runs the proxy in-process on an ephemeral port from config text.
//! - [`get`] sends a request with an exact, pre-encoded path and returns status, headers, body.
#![allow(
    dead_code,
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used
)] // shared by every test file; tests fail loudly

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use s3_signing_proxy::Config;

pub mod fixtures;
mod pass_through;
mod postgres;
mod process;

pub use fixtures::{ClientFixture, IntegrationFixture, listen_anywhere};
pub use pass_through::{PassThrough, StsFault};
pub use postgres::Postgres;
pub use process::{ProxyProcess, TempDir, env_refs, free_address, moto_env};

/// What `moto_server.py` provisioned.
pub struct Moto {
    pub port: u16,
    pub proxy_user: Keys,
    pub static_reader: Keys,
    pub admin: Keys,
    pub tenant_a: Tenant,
    pub tenant_b: Tenant,
    /// May read and write its own bucket.
    pub tenant_w: Tenant,
    /// A read-write tenant whose bucket only `tests/jail.rs` uses.
    pub tenant_j: Tenant,
    pub awkward_keys: Vec<String>,
    _process: Child,
}

#[derive(Clone)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
}

#[derive(Clone)]
pub struct Tenant {
    pub bucket: String,
    pub role_arn: String,
    pub external_id: String,
}

impl Moto {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// The body `moto_server.py` stored under `key` (mirrors its `body_for`).
pub fn body_for(key: &str) -> Vec<u8> {
    format!("object:{key}\n").repeat(3).into_bytes()
}

/// What users read: README.md, then every page under `docs/` (by name), as one text. Tests
/// find the examples they run here, wherever a page keeps them.
pub fn user_docs() -> String {
    let root = repo_root();
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    let mut text = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    for page in pages {
        text.push('\n');
        text.push_str(&std::fs::read_to_string(&page).expect("a docs page"));
    }
    text
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python that has moto installed: `scripts/test` makes `.venv`.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("S3SP_TEST_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = repo_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/test, which installs moto[server] there",
        venv.display()
    );
    venv
}

/// Starts one of the store scripts in `tests/support`, which prints one line of JSON
/// describing what it started and serves until its standard input closes (when the test
/// process exits), so no server outlives the tests.
fn start_server(script: &str, args: &[&str]) -> (Child, serde_json::Value) {
    let mut process = Command::new(python())
        .arg(repo_root().join("tests/support").join(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {script}: {e}"));
    let stdout = process.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{script}'s description: {e}"));
    let description =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{script} printed {line:?}: {e}"));
    (process, description)
}

/// moto, started and provisioned once per test binary.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        let (process, v) = start_server("moto_server.py", &[]);
        let keys = |v: &serde_json::Value| Keys {
            access_key_id: v["access_key_id"].as_str().expect("key").to_string(),
            secret_access_key: v["secret_access_key"].as_str().expect("secret").to_string(),
        };
        let tenant = |v: &serde_json::Value| Tenant {
            bucket: v["bucket"].as_str().expect("bucket").to_string(),
            role_arn: v["role_arn"].as_str().expect("arn").to_string(),
            external_id: v["external_id"].as_str().expect("external id").to_string(),
        };
        Moto {
            port: v["port"].as_u64().expect("port") as u16,
            proxy_user: keys(&v["proxy_user"]),
            static_reader: keys(&v["static_reader"]),
            admin: keys(&v["admin"]),
            tenant_a: tenant(&v["tenants"]["a"]),
            tenant_b: tenant(&v["tenants"]["b"]),
            tenant_w: tenant(&v["tenants"]["w"]),
            tenant_j: tenant(&v["tenants"]["j"]),
            awkward_keys: v["awkward_keys"]
                .as_array()
                .expect("keys")
                .iter()
                .map(|k| k.as_str().expect("key").to_string())
                .collect(),
            _process: process,
        }
    })
}

/// SeaweedFS, a MinIO-class local store that verifies SigV4 and encodes and normalises
/// listings as S3 does, started once per test binary by `seaweedfs_server.py` with one bucket.
pub struct SeaweedFs {
    pub port: u16,
    pub bucket: String,
    pub keys: Keys,
    _process: Child,
}

impl SeaweedFs {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every key in the bucket, listed straight from the store with its own keys.
    pub async fn keys(&self) -> Vec<String> {
        let listed = boto3(serde_json::json!({
            "endpoint": self.endpoint(), "key": self.keys.access_key_id,
            "secret": self.keys.secret_access_key, "style": "path",
            "op": "list", "bucket": self.bucket,
        }))
        .await;
        serde_json::from_value(listed["keys"].clone()).unwrap_or_else(|e| panic!("{listed}: {e}"))
    }

    /// Stores `data` under `key`, straight on the store.
    pub async fn put(&self, key: &str, data: &str) {
        let put = boto3(serde_json::json!({
            "endpoint": self.endpoint(), "key": self.keys.access_key_id,
            "secret": self.keys.secret_access_key, "style": "path",
            "op": "put", "bucket": self.bucket, "object": key, "data": data,
        }))
        .await;
        assert_eq!(put["status"], 200, "{put}");
    }
}

pub fn seaweedfs() -> &'static SeaweedFs {
    static SEAWEEDFS: OnceLock<SeaweedFs> = OnceLock::new();
    SEAWEEDFS.get_or_init(|| {
        let keys = Keys {
            access_key_id: "SWTESTSTOREKEY".to_string(),
            secret_access_key: "seaweedfs-store-secret-6b2e".to_string(),
        };
        register_secrets([&keys.secret_access_key]);
        let bucket = "local-store".to_string();
        let (process, v) = start_server(
            "seaweedfs_server.py",
            &[&bucket, &keys.access_key_id, &keys.secret_access_key],
        );
        SeaweedFs {
            port: v["port"].as_u64().expect("port") as u16,
            bucket,
            keys,
            _process: process,
        }
    })
}

/// The secrets a test config's `*_env` settings name.
pub fn secrets(moto: &Moto) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "PROXY_USER_SECRET".to_string(),
            moto.proxy_user.secret_access_key.clone(),
        ),
        (
            "STATIC_READER_SECRET".to_string(),
            moto.static_reader.secret_access_key.clone(),
        ),
    ])
}

/// The `[sts]` section that makes the proxy call `sts_endpoint` as moto's proxy user.
pub fn sts_section(moto: &Moto, sts_endpoint: &str, extra: &str) -> String {
    format!(
        r#"
[sts]
endpoint = "{sts_endpoint}"
{extra}
[sts.credentials]
access_key_id = "{key}"
secret_access_key_env = "PROXY_USER_SECRET"
"#,
        key = moto.proxy_user.access_key_id
    )
}

/// An assumed-role integration for a tenant, path or virtual-host `addressing`, public unless
/// `extra` (more settings, as TOML) says otherwise.
pub fn role_integration(
    name: &str,
    tenant: &Tenant,
    endpoint: &str,
    addressing: &str,
    external_id: &str,
    extra: &str,
) -> String {
    IntegrationFixture::tenant(name, tenant, endpoint)
        .set("addressing", addressing)
        .role(&tenant.role_arn, external_id)
        .with(fixtures::settings(extra))
        .toml()
}

/// The most common test config: STS at `sts_endpoint` (with `sts_extra` settings) and tenant A's
/// integration `acme`, path style, at `s3_endpoint`.
pub fn acme_config(sts_endpoint: &str, s3_endpoint: &str, sts_extra: &str) -> String {
    let moto = moto();
    format!(
        "{}{}",
        sts_section(moto, sts_endpoint, sts_extra),
        role_integration(
            "acme",
            &moto.tenant_a,
            s3_endpoint,
            "path",
            &moto.tenant_a.external_id,
            ""
        ),
    )
}

/// A public integration signing with moto's static-keys reader; `buckets` is the TOML that
/// names its bucket(s), e.g. `bucket = "x"` or `default = true\nbuckets = [...]`.
pub fn static_reader_integration(name: &str, buckets: &str, endpoint: &str) -> String {
    IntegrationFixture::named(name)
        .with(fixtures::settings(buckets))
        .set("endpoint", endpoint)
        .set("public", true)
        .static_keys(&moto().static_reader.access_key_id, "STATIC_READER_SECRET")
        .toml()
}

/// The proxy, running in-process until dropped.
pub struct RunningProxy {
    pub address: SocketAddr,
    /// The proxy's clock: `advance` it instead of sleeping until something expires.
    pub clock: s3_signing_proxy::config::Clock,
    /// The proxy itself: what it knows (its credential cache, its state) without a port.
    pub proxy: std::sync::Arc<s3_signing_proxy::Proxy>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RunningProxy {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Where every test binary writes the proxy's TRACE log and the secrets it used, for
/// `scripts/test` to grep the one for the other after the whole suite ran.
pub fn test_logs() -> PathBuf {
    let dir = repo_root().join("target/test-logs");
    std::fs::create_dir_all(&dir).expect("target/test-logs");
    dir
}

/// The file this test binary's in-process proxies log to.
pub fn test_log() -> PathBuf {
    test_logs().join(format!("{}-{}.log", test_binary(), std::process::id()))
}

/// Keeps what a run of the proxy binary (`check`, `explain`, `sign-policy`, …) printed in
/// target/test-logs/, for scripts/test's secrets check.
pub fn keep_output(output: &std::process::Output) {
    use std::io::Write;
    let path = test_logs().join(format!(
        "{}-{}-commands.log",
        test_binary(),
        std::process::id()
    ));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("commands log");
    let mut text = output.stdout.clone();
    text.extend_from_slice(&output.stderr);
    file.write_all(&text).expect("commands log written");
}

/// Polls `probe` every 20 ms until it returns `Some`, for at most 5 s (then panics, naming
/// `what`): for what a proxy writes a moment after the answer (access lines, metrics).
pub async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The value of the series `series` (name and labels) in a Prometheus text answer.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// Polls the admin `metrics_url` until `series` reaches at least `value` (5 s at most); the
/// whole answer then.
pub async fn wait_for_metric(metrics_url: &str, series: &str, value: f64) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = get(metrics_url).await.text();
        if metric(&text, series).is_some_and(|now| now >= value) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series} did not reach {value} within 5 s:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The in-process proxy's access line for `request_id`, once written.
pub fn access_line(request_id: &str) -> Option<String> {
    let log = std::fs::read_to_string(test_log()).ok()?;
    log.lines()
        .find(|line| {
            line.contains(" access: ") && line.contains(&format!("request_id={request_id} "))
        })
        .map(str::to_string)
}

/// [`access_line`], waited for: lines are flushed within 50 ms of the request body's end, which
/// for a refused form upload comes after up to 5 s of lingering; this polls until the line is
/// there or 15 s have passed (then it panics, naming the id).
pub async fn wait_for_access_line(request_id: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if let Some(line) = access_line(request_id) {
            return line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access line for request {request_id} within 15 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub fn test_binary() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "tests".to_string())
}

/// Signs `request` as an SDK signs a request to the proxy with a key the proxy issued:
/// SigV4 for us-east-1, now, with `UNSIGNED-PAYLOAD`.
pub fn sign_as_client<B>(request: &mut Request<B>, access_key_id: &str, secret: &str) {
    let credentials =
        aws_credential_types::Credentials::new(access_key_id, secret, None, None, "test");
    s3_signing_proxy::upstream::sign::sign_request(
        request,
        &credentials,
        "us-east-1",
        std::time::SystemTime::now(),
    )
    .expect("signed");
}

/// The `Content-MD5` header value of `body`.
pub fn content_md5(body: &[u8]) -> String {
    use md5::Digest;
    aws_smithy_types::base64::encode(md5::Md5::digest(body))
}

/// Records secrets this run handed to a proxy: none may appear in any log or output.
pub fn register_secrets<'a>(secrets: impl IntoIterator<Item = &'a String>) {
    use std::io::Write;
    // Tests in one binary run on several threads: each call writes its lines in one `write_all`
    // under a lock, so two calls never interleave into a joined line and an empty one (an empty
    // pattern would match every line of every log).
    static WRITING: Mutex<()> = Mutex::new(());
    let lines: String = secrets
        .into_iter()
        // Short values would match by chance; every test secret is longer.
        .filter(|secret| secret.len() >= 12)
        .map(|secret| format!("{secret}\n"))
        .collect();
    let _writing = WRITING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let path = test_logs().join(format!("{}-{}.secrets", test_binary(), std::process::id()));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(lines.as_bytes()))
        .expect("secrets recorded");
}

/// What every proxy in the suite logs, in-process or as a binary: TRACE for the proxy and the
/// AWS SDK, INFO for the HTTP and TLS machinery below them and for the demo's embedded store
/// (s3s logs every request it receives, signature and all, at DEBUG: the store's log, not the
/// proxy's).
pub const TRACE_FILTER: &str = "trace,hyper=info,hyper_util=info,h2=info,rustls=info,tokio=info,runtime=info,moka=info,s3s=info";

/// Sends in-process proxies' logs, at TRACE for the proxy and the AWS SDK, to a file.
fn trace_to_file() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let file = std::fs::File::create(test_log()).expect("log file");
        let filter = tracing_subscriber::EnvFilter::new(TRACE_FILTER);
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .try_init();
    });
}

pub async fn start_proxy(config_text: &str, secrets: &BTreeMap<String, String>) -> RunningProxy {
    trace_to_file();
    register_secrets(secrets.values());
    let config = Config::parse(config_text, "test config", secrets)
        .unwrap_or_else(|e| panic!("{e}\n{config_text}"));
    start_proxy_with(config).await
}

pub async fn start_proxy_with(mut config: Config) -> RunningProxy {
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.listen = listen;
    let clock = config.clock.clone();
    let proxy = std::sync::Arc::new(s3_signing_proxy::Proxy::new(config).expect("proxy"));
    proxy.open_disk_cache().await.expect("disk cache");
    let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = proxy.clone();
    tokio::spawn(async move {
        s3_signing_proxy::ops::server::run(listener, serving, None, async {
            let _ = stopped.await;
        })
        .await
        .expect("proxy serves");
    });
    RunningProxy {
        address,
        clock,
        proxy,
        stop: Some(stop),
    }
}

/// A response with its body read in full (test objects are small).
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Fetched {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `<Code>` of an S3 XML error body.
    pub fn error_code(&self) -> String {
        let text = self.text();
        text.split_once("<Code>")
            .and_then(|(_, rest)| rest.split_once("</Code>"))
            .map(|(code, _)| code.to_string())
            .unwrap_or_else(|| format!("(no <Code> in {text:?})"))
    }
}

fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends `method url` with `headers`; `url`'s path is sent exactly as given.
pub async fn request(method: Method, url: &str, headers: &[(&str, &str)]) -> Fetched {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = client()
        .request(builder.body(Empty::new()).expect("request"))
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let (parts, body) = response.into_parts();
    Fetched {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("body").to_bytes(),
    }
}

/// Sends a request with a body, as built (signed or not) by the caller.
pub async fn send(request: Request<Full<Bytes>>) -> Fetched {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let url = request.uri().to_string();
    let response = client
        .request(request)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let (parts, body) = response.into_parts();
    Fetched {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("body").to_bytes(),
    }
}

/// aws-sigv4's parameters for an S3 request in us-east-1 signed as `identity` at `time`: how
/// the tests sign as an SDK would, independently of the proxy's own signer.
pub fn s3_signing_params<'a>(
    identity: &'a aws_smithy_runtime_api::client::identity::Identity,
    time: std::time::SystemTime,
    settings: aws_sigv4::http_request::SigningSettings,
) -> aws_sigv4::sign::v4::SigningParams<'a, aws_sigv4::http_request::SigningSettings> {
    aws_sigv4::sign::v4::SigningParams::builder()
        .identity(identity)
        .region("us-east-1")
        .name("s3")
        .time(time)
        .settings(settings)
        .build()
        .expect("signing parameters")
}

/// A presigned URL for `method url`, as an application backend mints one with a key the proxy
/// issued: SigV4 in the query, `host` the only signed header, valid for five minutes.
pub fn presign(method: Method, url: &str, access_key_id: &str, secret: &str) -> String {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
        SigningSettings, UriPathNormalizationMode, sign,
    };
    let uri: http::Uri = url.parse().expect("url");
    let host = uri.authority().expect("authority").to_string();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(std::time::Duration::from_secs(300));
    let identity =
        aws_credential_types::Credentials::new(access_key_id, secret, None, None, "test").into();
    let params = s3_signing_params(&identity, std::time::SystemTime::now(), settings).into();
    let signable = SignableRequest::new(
        method.as_str(),
        url,
        [("host", host.as_str())].into_iter(),
        SignableBody::UnsignedPayload,
    )
    .expect("signable");
    let (instructions, _) = sign(signable, &params).expect("signed").into_parts();
    let mut request = Request::builder()
        .method(method)
        .uri(url)
        .body(())
        .expect("request");
    instructions.apply_to_request_http1x(&mut request);
    request.uri().to_string()
}

/// A tenant's bucket as the store itself holds it, seen with the tenant's own role (never
/// through the proxy): `{key: {size, storage_class, metadata, tags, body}}`.
pub async fn store_objects(tenant: &Tenant) -> serde_json::Value {
    store_objects_under(tenant, "").await
}

/// [`store_objects`] for the keys under `prefix` only.
pub async fn store_objects_under(tenant: &Tenant, prefix: &str) -> serde_json::Value {
    store_view(tenant, serde_json::json!({"op": "list", "prefix": prefix}))
        .await
        .get("objects")
        .cloned()
        .expect("objects")
}

/// The grants of `key`'s ACL on the store, read with the tenant's own role, each as
/// "grantee permission" (a group's URI or an account's ID).
pub async fn store_acl(tenant: &Tenant, key: &str) -> Vec<String> {
    let answer = store_view(tenant, serde_json::json!({"op": "acl", "object": key})).await;
    serde_json::from_value(answer["grants"].clone()).expect("grants")
}

/// Stores `data` under `key` in a tenant's bucket, with the tenant's own role.
pub async fn store_put(tenant: &Tenant, key: &str, data: &str) {
    let put = store_view(
        tenant,
        serde_json::json!({"op": "put", "object": key, "data": data}),
    )
    .await;
    assert_eq!(put["status"], 200, "{put}");
}

/// Deletes `key` from a tenant's bucket, with the tenant's own role.
pub async fn store_delete(tenant: &Tenant, key: &str) {
    let deleted = store_view(tenant, serde_json::json!({"op": "delete", "object": key})).await;
    assert_eq!(deleted["status"], 204, "{deleted}");
}

async fn store_view(tenant: &Tenant, op: serde_json::Value) -> serde_json::Value {
    let moto = moto();
    let mut args = serde_json::json!({
        "endpoint": moto.endpoint(),
        "key": moto.proxy_user.access_key_id,
        "secret": moto.proxy_user.secret_access_key,
        "role_arn": tenant.role_arn,
        "external_id": tenant.external_id,
        "bucket": tenant.bucket,
    });
    args.as_object_mut()
        .expect("object")
        .extend(op.as_object().expect("object").clone());
    let mut child = tokio::process::Command::new(python())
        .arg(repo_root().join("tests/support/store_view.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run store_view.py");
    let mut stdin = child.stdin.take().expect("stdin");
    tokio::io::AsyncWriteExt::write_all(&mut stdin, args.to_string().as_bytes())
        .await
        .expect("arguments to store_view.py");
    drop(stdin);
    let output = child.wait_with_output().await.expect("store_view.py ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "store_view.py: {e}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

pub async fn get(url: &str) -> Fetched {
    request(Method::GET, url, &[]).await
}

/// Runs one boto3 call through `s3_client.py` (see there for `args`) and returns its outcome.
/// Async, so the in-process proxy keeps serving while the client runs.
pub async fn boto3(args: serde_json::Value) -> serde_json::Value {
    python_json("s3_client.py", args).await
}

/// Runs one of the Python scripts in `tests/support` with `args` as JSON and returns the one
/// JSON value it prints.
pub async fn python_json(script: &str, args: serde_json::Value) -> serde_json::Value {
    let output = tokio::process::Command::new(python())
        .arg(repo_root().join("tests/support").join(script))
        .arg(args.to_string())
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        // The message shows the arguments, less any secret among them.
        let mut shown = args.clone();
        if let Some(fields) = shown.as_object_mut() {
            for (name, value) in fields.iter_mut() {
                if name.contains("secret") || name == "token" {
                    *value = serde_json::Value::from("(hidden)");
                }
            }
        }
        panic!(
            "{script} {shown}: {e}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

pub fn aws_cli() -> PathBuf {
    python().with_file_name("aws")
}

/// The AWS CLI, path-style in us-east-1, signing for the proxy at `endpoint` with the keys it
/// issued; its config file is written in `dir`, and no profile or shared credentials apply.
/// Add the command's own arguments.
pub fn aws_cli_as(
    dir: &std::path::Path,
    endpoint: &str,
    (key, secret): (&str, &str),
) -> tokio::process::Command {
    let config = dir.join("aws-config");
    std::fs::write(
        &config,
        "[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n",
    )
    .expect("aws config");
    let mut command = tokio::process::Command::new(aws_cli());
    command
        .args(["--endpoint-url", endpoint])
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("none"))
        .env_remove("AWS_PROFILE");
    command
}

/// One boto3 call (`op`, see `s3_client.py`) to the proxy at `endpoint`, signed with the keys
/// it issued, in `style` addressing (`path` or `virtual`).
pub async fn boto3_as(
    endpoint: &str,
    (key, secret): (&str, &str),
    style: &str,
    op: serde_json::Value,
) -> serde_json::Value {
    let mut args =
        serde_json::json!({"endpoint": endpoint, "key": key, "secret": secret, "style": style});
    if let (Some(fields), Some(op)) = (args.as_object_mut(), op.as_object()) {
        fields.extend(op.clone());
    }
    boto3(args).await
}

/// Encodes a key the way a careful client would: everything but letters, digits and `/`.
/// (Deliberately not the proxy's own encoder, which also leaves `-_.~` alone.)
pub fn encode(key: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'/');
    percent_encoding::utf8_percent_encode(key, SET).to_string()
}

/// boto3's `generate_presigned_post` (`tests/support/presigned_post.py`) for `key` in the
/// logical bucket `bucket` at the proxy `endpoint`, signed with `signer`'s key and secret.
pub async fn presigned_post(
    endpoint: &str,
    signer: (&str, &str),
    bucket: &str,
    key: &str,
    expires_in: i64,
    fields: serde_json::Value,
    conditions: serde_json::Value,
) -> serde_json::Value {
    let output = tokio::process::Command::new(repo_root().join(".clients/venv/bin/python"))
        .arg(repo_root().join("tests/support/presigned_post.py"))
        .args([
            endpoint,
            signer.0,
            signer.1,
            bucket,
            key,
            &expires_in.to_string(),
            &fields.to_string(),
            &conditions.to_string(),
        ])
        .output()
        .await
        .expect("run python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}

/// A presigned POST's form fields (`fields` of what [`presigned_post`] printed), in order.
pub fn post_fields(post: &serde_json::Value) -> Vec<(String, String)> {
    post["fields"]
        .as_object()
        .expect("fields")
        .iter()
        .map(|(name, value)| (name.clone(), value.as_str().expect("text").to_string()))
        .collect()
}

/// A multipart/form-data form around a file: its Content-Type, the bytes before the file
/// (each field in order, then the file part's head) and the bytes after it.
pub fn form_framing(fields: &[(String, String)], file_name: &str) -> (String, Vec<u8>, Vec<u8>) {
    let boundary = "----s3sp-test-boundary-7Qx";
    let mut prefix = Vec::new();
    for (name, value) in fields {
        prefix.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    prefix.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    let suffix = format!("\r\n--{boundary}--\r\n").into_bytes();
    (
        format!("multipart/form-data; boundary={boundary}"),
        prefix,
        suffix,
    )
}

/// Runs a Chromium driver in `tests/support` with `args`; returns the JSON it prints.
pub async fn drive_chromium(script: &str, args: &[&str]) -> serde_json::Value {
    let node_path = format!(
        "{}:{}",
        repo_root().join(".browser/node_modules").display(),
        repo_root().join(".clients/node_modules").display()
    );
    let output = tokio::process::Command::new("node")
        .arg(repo_root().join("tests/support").join(script))
        .args(args)
        .env("NODE_PATH", node_path)
        .output()
        .await
        .expect("run node");
    assert!(
        output.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the driver prints JSON")
}

/// The schema platforms run, `deploy/postgres/schema.sql`.
pub fn postgres_schema() -> String {
    std::fs::read_to_string(repo_root().join("deploy/postgres/schema.sql")).expect("the schema")
}

impl Postgres {
    /// A client of the cluster with the schema installed.
    pub async fn with_schema(&self) -> tokio_postgres::Client {
        let db = self.client().await;
        db.batch_execute(&postgres_schema()).await.expect("schema");
        db
    }

    /// A cluster under `target/postgres/`, its log in `target/test-logs/` (searched for secrets).
    pub fn start() -> Postgres {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        Postgres::start_in(
            repo_root()
                .join("target/postgres")
                .join(format!("{pid}-{n}")),
            test_logs().join(format!("postgres-{pid}-{n}.log")),
        )
    }
}

/// A certificate for 127.0.0.1 and localhost and its key (PEM), and the CA that signed it
/// (PEM and DER).
pub type Authority = (
    String,
    String,
    String,
    rustls::pki_types::CertificateDer<'static>,
);

pub fn certificate_authority() -> Authority {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL (Python's ssl) takes a leaf whose issuer is its own subject for
    // a self-signed certificate.
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "s3-signing-proxy test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    (cert.pem(), key.serialize_pem(), ca.pem(), ca.der().clone())
}
