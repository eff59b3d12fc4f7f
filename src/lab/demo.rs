//! The demo: the proxy in front of an embedded S3-compatible store, with no AWS account.
//!
//! [`EmbeddedStore`] runs s3s-fs (a real S3 implementation over a directory, which verifies
//! SigV4) on a loopback port with one generated key pair. [`run`] seeds it with a text file, a
//! PNG, a short MP4 and a page showing them, writes a config naming the store as a custom
//! endpoint with static keys, and serves the proxy in front of it. Tests and benches use
//! [`EmbeddedStore`] as a strict upstream too.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::s3::body::{self, BoxError};

const PAGE: &str = include_str!("../../demo/index.html");
const PNG: &[u8] = include_bytes!("../../demo/pattern.png");
const MP4: &[u8] = include_bytes!("../../demo/clip.mp4");
const TEXT: &str = "Hello from s3-signing-proxy: this object was fetched from an S3-compatible store \
and re-signed by the proxy.\n";

/// An s3s-fs server on 127.0.0.1 that checks every request's SigV4 signature.
pub struct EmbeddedStore {
    /// Where the store listens.
    pub address: SocketAddr,
    /// The store's key id.
    pub access_key_id: String,
    /// The store's secret key (a throwaway for tests and the demo).
    pub secret_access_key: String,
    /// The directory the store keeps its buckets in.
    pub root: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl EmbeddedStore {
    /// Starts the store over `root` (buckets are its sub-directories). `virtual_host_domain`
    /// (e.g. `localhost:PORT`) enables `{bucket}.{domain}` requests; its port must be the one
    /// the store will get, so virtual-host users pass a listener bound beforehand.
    pub async fn start(
        root: &Path,
        listener: Option<TcpListener>,
        virtual_host_domain: Option<String>,
    ) -> Result<Self, BoxError> {
        let listener = match listener {
            Some(listener) => listener,
            None => TcpListener::bind("127.0.0.1:0").await?,
        };
        let address = listener.local_addr()?;
        let access_key_id = format!("DEMO{}", random_hex(8).to_ascii_uppercase());
        let secret_access_key = random_hex(32);
        let mut builder = s3s::service::S3ServiceBuilder::new(
            s3s_fs::FileSystem::new(root).map_err(|error| format!("s3s-fs: {error:?}"))?,
        );
        builder.set_auth(s3s::auth::SimpleAuth::from_single(
            access_key_id.clone(),
            secret_access_key.clone(),
        ));
        if let Some(domain) = virtual_host_domain {
            builder.set_host(s3s::host::MultiDomain::new([domain])?);
        }
        let service = builder.build();
        let task = tokio::spawn(async move {
            let http = auto::Builder::new(TokioExecutor::new());
            while let Ok((stream, _)) = listener.accept().await {
                let connection = http
                    .serve_connection(TokioIo::new(stream), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
        });
        Ok(EmbeddedStore {
            address,
            access_key_id,
            secret_access_key,
            root: root.to_path_buf(),
            task,
        })
    }

    /// `http://127.0.0.1:port`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The store's keys, for an SDK client.
    pub fn credentials(&self) -> Credentials {
        Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.clone(),
            None,
            None,
            "embedded-store",
        )
    }

    /// Creates a bucket (a directory, as s3s-fs stores them).
    pub fn create_bucket(&self, bucket: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(self.root.join(bucket))
    }

    /// Stores an object with a signed PutObject, as any S3 client would.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        bytes: Bytes,
    ) -> Result<(), BoxError> {
        let uri: http::Uri = format!(
            "{}/{bucket}/{}",
            self.endpoint(),
            crate::s3::sigv4::encode_key(key)
        )
        .parse()?;
        let mut request = Request::new(body::full(bytes));
        *request.method_mut() = Method::PUT;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.insert(
            header::HOST,
            HeaderValue::from_str(&self.address.to_string())?,
        );
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type)?);
        crate::upstream::sign::sign_request(
            &mut request,
            &self.credentials(),
            "us-east-1",
            SystemTime::now(),
        )?;
        let upstream = crate::upstream::forward::Upstream::new(&crate::config::Limits::default())?;
        let response = upstream
            .send(request, "embedded-store", None)
            .await?
            .response;
        if !response.status().is_success() {
            return Err(format!("PutObject {bucket}/{key} answered {}", response.status()).into());
        }
        Ok(())
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The demo's own client key: it plays the application backend that mints presigned URLs.
const DEMO_CLIENT_KEY: &str = "DEMOCLIENTKEY";
/// How long the page's presigned URLs live (the longest S3 allows).
const PAGE_URL_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// Runs the demo until `shutdown`: the store, its seed objects and the proxy on `listen`.
/// `cors_origins` may name browser origins allowed to fetch the private media cross-origin.
pub async fn run(
    listen: SocketAddr,
    cors_origins: &[String],
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), BoxError> {
    let root = std::env::temp_dir().join(format!("s3-signing-proxy-demo-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let store = EmbeddedStore::start(&root, None, None).await?;
    let client_secret = random_hex(20);
    let listener = TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    let (page, text_url) = page(address, &client_secret)?;
    seed(&store, page).await?;
    let config = demo_config(&store, cors_origins, &client_secret)?;
    let proxy = std::sync::Arc::new(crate::proxy::Proxy::new(config)?);
    print_welcome(address, &store, &client_secret, &text_url);
    let result = crate::ops::server::run(listener, proxy, None, shutdown).await;
    let _ = std::fs::remove_dir_all(&root);
    Ok(result?)
}

/// The public page, whose media are private objects linked by presigned proxy URLs that this
/// "backend" mints with its issued key; and the text object's URL, for the welcome.
fn page(address: SocketAddr, client_secret: &str) -> Result<(String, String), BoxError> {
    let client = Credentials::new(
        DEMO_CLIENT_KEY,
        client_secret.to_string(),
        None,
        None,
        "demo",
    );
    let presign = |key: &str| -> Result<String, BoxError> {
        let uri = format!(
            "http://{address}/demo-private/{}",
            crate::s3::sigv4::encode_key(key)
        )
        .parse()?;
        let url = crate::upstream::sign::presigned_get_url(
            uri,
            &client,
            "us-east-1",
            SystemTime::now(),
            PAGE_URL_LIFETIME,
        )?;
        Ok(url.to_string())
    };
    let image_url = presign("media/pattern.png")?;
    let video_url = presign("media/clip.mp4")?;
    let text_url = presign("hello.txt")?;
    #[expect(
        clippy::disallowed_methods,
        reason = "fills the demo's own page template, not client structure"
    )]
    let page = PAGE
        .replace("{{IMAGE_URL}}", &escape(&image_url))
        .replace("{{VIDEO_URL}}", &escape(&video_url))
        .replace("{{TEXT_URL}}", &text_url);
    Ok((page, text_url))
}

/// The demo's two buckets and their objects.
async fn seed(store: &EmbeddedStore, page: String) -> Result<(), BoxError> {
    for bucket in ["demo-media", "demo-private"] {
        store.create_bucket(bucket)?;
    }
    let text = Bytes::from_static(TEXT.as_bytes());
    let objects = [
        (
            "demo-media",
            "index.html",
            "text/html; charset=utf-8",
            Bytes::from(page),
        ),
        (
            "demo-media",
            "hello.txt",
            "text/plain; charset=utf-8",
            text.clone(),
        ),
        (
            "demo-private",
            "hello.txt",
            "text/plain; charset=utf-8",
            text,
        ),
        (
            "demo-private",
            "media/pattern.png",
            "image/png",
            Bytes::from_static(PNG),
        ),
        (
            "demo-private",
            "media/clip.mp4",
            "video/mp4",
            Bytes::from_static(MP4),
        ),
    ];
    for (bucket, key, content_type, bytes) in objects {
        store.put_object(bucket, key, content_type, bytes).await?;
    }
    Ok(())
}

/// The proxy's config: the public page's integration, the private media's, and the client.
fn demo_config(
    store: &EmbeddedStore,
    cors_origins: &[String],
    client_secret: &str,
) -> Result<Config, BoxError> {
    let cors = cors_origins
        .iter()
        .map(|origin| format!("{origin:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let config_text = format!(
        r#"
# Repeat views of the private media (the video's ranges in chunks) come from memory.
[server.cache]
memory = "64MiB"

[[integration]]
name = "demo"
bucket = "demo-media"
region = "us-east-1"
endpoint = "{endpoint}"
public = true
# The operator's own page: its script may run with the proxy's origin.
active_content = "allow"
[integration.credentials]
access_key_id = "{key_id}"
secret_access_key_env = "DEMO_STORE_SECRET"

[[integration]]
name = "demo-private"
bucket = "demo-private"
region = "us-east-1"
endpoint = "{endpoint}"
cors_origins = [{cors}]
cache_ttl = "10m"
[integration.credentials]
access_key_id = "{key_id}"
secret_access_key_env = "DEMO_STORE_SECRET"

[[client]]
access_key_id = "{DEMO_CLIENT_KEY}"
secret_access_key_env = "DEMO_CLIENT_SECRET"
integrations = ["demo-private"]
"#,
        endpoint = store.endpoint(),
        key_id = store.access_key_id,
    );
    let secrets = BTreeMap::from([
        (
            "DEMO_STORE_SECRET".to_string(),
            store.secret_access_key.clone(),
        ),
        ("DEMO_CLIENT_SECRET".to_string(), client_secret.to_string()),
    ]);
    Ok(Config::parse(
        &config_text,
        "the demo's generated config",
        &secrets,
    )?)
}

fn print_welcome(address: SocketAddr, store: &EmbeddedStore, client_secret: &str, text_url: &str) {
    let base = format!("http://{address}");
    println!(
        "\ns3-signing-proxy demo\n\
         \n  upstream store : s3s-fs at {store} (verifies SigV4; the proxy signs every request)\
         \n  proxy          : {base}\
         \n  integrations   : demo (public), demo-private (signed requests only)\
         \n  client key     : {DEMO_CLIENT_KEY} / {client_secret}  (bound to demo-private)\n\
         \nOpen in a browser (image and video are private objects behind presigned proxy URLs;\
         \nthe video seeks through Range requests):\
         \n  {base}/demo/index.html\n\
         \nOr try with curl:\
         \n  curl {base}/demo/hello.txt                      # public: no signature needed\
         \n  curl {base}/demo-media/hello.txt                # the real bucket name works too\
         \n  curl {base}/demo-private/hello.txt              # 403 AccessDenied: not public\
         \n  curl '{text_url}'\
         \n  curl --aws-sigv4 aws:amz:us-east-1:s3 --user {DEMO_CLIENT_KEY}:{client_secret} {base}/demo-private/hello.txt\
         \n  curl -r 0-99 -o /dev/null -D - --aws-sigv4 aws:amz:us-east-1:s3 --user {DEMO_CLIENT_KEY}:{client_secret} {base}/demo-private/media/clip.mp4\
         \n  curl {base}/no-such-integration/x               # 404 NoSuchBucket\
         \n\nOr with any S3 client: endpoint {base}, the key above, path-style addressing, e.g.\
         \n  AWS_ACCESS_KEY_ID={DEMO_CLIENT_KEY} AWS_SECRET_ACCESS_KEY={client_secret} \\\
         \n    aws s3 cp s3://demo-private/hello.txt - --endpoint-url {base} --region us-east-1\
         \n\nPress Ctrl-C to stop.\n",
        store = store.endpoint(),
    );
}

fn random_hex(bytes: usize) -> String {
    let mut text = String::with_capacity(bytes * 2);
    while text.len() < bytes * 2 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        text.push_str(&format!("{:016x}", hasher.finish()));
    }
    text.truncate(bytes * 2);
    text
}

/// The text of a URL as it goes in the page's HTML attributes.
fn escape(text: &str) -> String {
    let mut escaped = String::new();
    crate::s3::xml::escape_into(&mut escaped, text);
    escaped
}
