//! The object cache against moto, counting the store's requests with a pass-through: a repeat
//! GET is served without the store; after `cache_ttl` one conditional GET revalidates it (304)
//! or brings the changed object, and a deleted one 404s; a write through the proxy is seen at
//! once; ranges and If-None-Match are answered from an entry; two integrations over one bucket
//! and key never share an entry, and a client bound to one gets 403, not a hit, for the
//! other's cached object; 50 concurrent misses for one object make one store request.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;

use crate::support::*;

const CACHED_SECRET: &str = "cache-client-secret-3f9a";
const TWIN_SECRET: &str = "cache-twin-secret-8c21";
const PREFIX: &str = "cache-test/";

/// A GET of `path` (signed as `client` when given), with its extra `headers`.
async fn fetch(
    proxy: &RunningProxy,
    path: &str,
    client: Option<(&str, &str)>,
    headers: &[(&str, &str)],
) -> Fetched {
    let mut builder = http::Request::builder().uri(proxy.url(path));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder.body(Full::new(Bytes::new())).unwrap();
    if let Some((key, secret)) = client {
        sign_as_client(&mut request, key, secret);
    }
    send(request).await
}

/// Integration `name` over tenant W's bucket, its store reached at `store`, with `settings`.
fn tenant_w_integration(name: &str, store: &str, settings: &str) -> String {
    let tenant = &moto().tenant_w;
    role_integration(name, tenant, store, "path", &tenant.external_id, settings)
}

fn cache_status(fetched: &Fetched) -> String {
    fetched
        .headers
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn cache_serves_repeats_without_the_store_revalidates_and_keeps_integrations_apart() {
    let moto = moto();
    let tenant = &moto.tenant_w;
    let s3 = PassThrough::start(moto.address()).await;
    let integration = |name: &str, extra: &str| {
        tenant_w_integration(
            name,
            &s3.endpoint(),
            &format!(
                "access = \"read-write\"\npublic = false\nprefix = \"{PREFIX}\"\ncache_ttl = \"1s\"\n{extra}"
            ),
        )
    };
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.cache]\nmemory = \"16MiB\"\n{}{}{}{}",
        sts_section(moto, &moto.endpoint(), ""),
        integration("cached", ""),
        integration("twin", ""),
        ClientFixture::toml(&[
            ClientFixture::new("AKCACHED", "CACHED_SECRET", &["cached"], "read-write"),
            ClientFixture::new("AKTWIN", "TWIN_SECRET", &["twin"], "read-only"),
        ]),
    );
    let mut env = secrets(moto);
    env.insert("CACHED_SECRET".to_string(), CACHED_SECRET.to_string());
    env.insert("TWIN_SECRET".to_string(), TWIN_SECRET.to_string());
    register_secrets([&CACHED_SECRET.to_string(), &TWIN_SECRET.to_string()]);
    let proxy = start_proxy(&config, &env).await;
    store_put(tenant, &format!("{PREFIX}photo.txt"), "first version").await;
    let cached = Some(("AKCACHED", CACHED_SECRET));
    let twin = Some(("AKTWIN", TWIN_SECRET));

    // A miss goes to the store and is kept; the repeat is served without it.
    let first = fetch(&proxy, "/cached/photo.txt", cached, &[]).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.text(), "first version");
    assert_eq!(cache_status(&first), "s3-signing-proxy; fwd=miss; stored");
    let seen = s3.requests();
    let again = fetch(&proxy, "/cached/photo.txt", cached, &[]).await;
    assert_eq!(again.text(), "first version");
    assert_eq!(cache_status(&again), "s3-signing-proxy; hit");
    assert!(again.headers.contains_key("etag"), "{:?}", again.headers);
    // A range and a matching If-None-Match, from the entry too.
    let range = fetch(
        &proxy,
        "/cached/photo.txt",
        cached,
        &[("range", "bytes=6-12")],
    )
    .await;
    assert_eq!(range.status, 206);
    assert_eq!(range.text(), "version");
    assert_eq!(range.headers["content-range"], "bytes 6-12/13");
    let etag = again.headers["etag"].to_str().unwrap().to_string();
    let unchanged = fetch(
        &proxy,
        "/cached/photo.txt",
        cached,
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(unchanged.status, 304);
    assert_eq!(s3.requests(), seen, "hits reached the store");

    // The other integration over the same bucket and key: its own entry, never this one.
    let other = fetch(&proxy, "/twin/photo.txt", twin, &[]).await;
    assert_eq!(cache_status(&other), "s3-signing-proxy; fwd=miss; stored");
    assert_eq!(s3.requests(), seen + 1);
    assert_eq!(
        cache_status(&fetch(&proxy, "/twin/photo.txt", twin, &[]).await),
        "s3-signing-proxy; hit"
    );
    // A client bound to `cached` is refused twin's cached object by the request phase.
    let refused = fetch(&proxy, "/twin/photo.txt", cached, &[]).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(refused.error_code(), "AccessDenied");
    assert!(cache_status(&refused).is_empty());
    // Anonymous callers of a private integration likewise.
    assert_eq!(
        fetch(&proxy, "/cached/photo.txt", None, &[]).await.status,
        403
    );
    assert_eq!(s3.requests(), seen + 1);

    // After the TTL: one conditional GET, answered 304, and the entry serves again.
    let before = s3.requests();
    // The proxy's clock past the TTL, rather than waiting for it.
    let past_the_ttl = Duration::from_millis(1100);
    proxy.clock.advance(past_the_ttl);
    let revalidated = fetch(&proxy, "/cached/photo.txt", cached, &[]).await;
    assert_eq!(cache_status(&revalidated), "s3-signing-proxy; fwd=stale");
    assert_eq!(revalidated.text(), "first version");
    assert_eq!(s3.requests(), before + 1);

    // Changed on the store: served new once the entry is stale.
    store_put(tenant, &format!("{PREFIX}photo.txt"), "second version!").await;
    let fresh = fetch(&proxy, "/cached/photo.txt", cached, &[]).await;
    assert_eq!(fresh.text(), "first version", "served from the fresh entry");
    proxy.clock.advance(past_the_ttl);
    let got = fetch(&proxy, "/cached/photo.txt", cached, &[]).await;
    assert_eq!(got.text(), "second version!");
    assert_eq!(cache_status(&got), "s3-signing-proxy; fwd=stale; stored");

    // A PUT through the proxy is seen at once.
    let mut put = http::Request::builder()
        .method("PUT")
        .uri(proxy.url("/cached/photo.txt"))
        .body(Full::new(Bytes::from_static(b"third, through the proxy")))
        .unwrap();
    sign_as_client(&mut put, "AKCACHED", CACHED_SECRET);
    assert_eq!(send(put).await.status, 200);
    let after_put = fetch(&proxy, "/cached/photo.txt", cached, &[]).await;
    assert_eq!(after_put.text(), "third, through the proxy");
    assert_eq!(
        cache_status(&after_put),
        "s3-signing-proxy; fwd=miss; stored"
    );

    // Deleted on the store: a 404 once the entry is stale, and the entry is gone.
    store_delete(tenant, &format!("{PREFIX}photo.txt")).await;
    proxy.clock.advance(past_the_ttl);
    let got = fetch(&proxy, "/cached/photo.txt", cached, &[]).await;
    assert_eq!(got.status, 404);
    assert_eq!(got.error_code(), "NoSuchKey");
    let gone = fetch(&proxy, "/cached/photo.txt", cached, &[]).await;
    assert_eq!(gone.status, 404);
    assert_ne!(cache_status(&gone), "s3-signing-proxy; hit");

    // 50 concurrent first GETs of one object: one request reaches the store, and all 50 get
    // the object (one fetched it, the others waited for its entry).
    store_put(tenant, &format!("{PREFIX}crowd.txt"), "wanted by many").await;
    let before = s3.requests();
    let mut crowd = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let url = proxy.url("/cached/crowd.txt");
        crowd.spawn(async move {
            let mut request = http::Request::builder()
                .uri(url)
                .body(Full::new(Bytes::new()))
                .unwrap();
            sign_as_client(&mut request, "AKCACHED", CACHED_SECRET);
            let got = send(request).await;
            (got.text(), cache_status(&got))
        });
    }
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    while let Some(answer) = crowd.join_next().await {
        let (text, status) = answer.unwrap();
        assert_eq!(text, "wanted by many");
        *statuses.entry(status).or_default() += 1;
    }
    assert_eq!(s3.requests(), before + 1, "{statuses:?}");
    assert_eq!(
        statuses.get("s3-signing-proxy; fwd=miss; stored"),
        Some(&1),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.get("s3-signing-proxy; hit"),
        Some(&49),
        "{statuses:?}"
    );
}

/// The operator's side: per-integration counts on `/metrics`, the access line's `cache`
/// field, and `POST /cache/purge` dropping one key's entry.
#[tokio::test]
async fn cache_is_counted_and_purged_from_the_admin_listener() {
    let moto = moto();
    let tenant = &moto.tenant_w;
    let config = format!(
        "[server]\nlisten = \"LISTEN\"\nadmin_listen = \"ADMIN\"\n[server.cache]\nmemory = \"16MiB\"\n{}{}",
        sts_section(moto, &moto.endpoint(), ""),
        tenant_w_integration(
            "purged",
            &moto.endpoint(),
            "prefix = \"cache-purge/\"\ncache_ttl = \"60s\"",
        ),
    );
    store_put(tenant, "cache-purge/page.txt", "twelve bytes").await;
    let dir = TempDir::new("cache-purge");
    let env = moto_env(moto);
    let proxy = ProxyProcess::spawn(&dir.0, &config, &env_refs(&env)).await;
    let url = proxy.url("/purged/page.txt");
    for _ in 0..3 {
        assert_eq!(get(&url).await.text(), "twelve bytes");
    }
    let text = wait_for_metric(
        &proxy.admin_url("/metrics"),
        "s3sp_cache_hits_total{integration=\"purged\"}",
        2.0,
    )
    .await;
    assert_eq!(
        metric(&text, "s3sp_cache_misses_total{integration=\"purged\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "s3sp_cache_served_bytes_total{integration=\"purged\"}"
        ),
        Some(24.0)
    );
    assert!(metric(&text, "s3sp_cache_bytes").is_some_and(|bytes| bytes >= 12.0));
    eventually("the access lines' cache field", || {
        let log = proxy.log();
        (log.contains("cache=\"miss\"") && log.contains("cache=\"hit\"")).then_some(())
    })
    .await;

    let purge = http::Request::post(proxy.admin_url("/cache/purge"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"integration": "purged", "key": "page.txt"}"#,
        )))
        .unwrap();
    let purged = send(purge).await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    let purged: serde_json::Value = serde_json::from_slice(&purged.body).unwrap();
    assert_eq!(purged["purged"], 1);
    let after = get(&url).await;
    assert_eq!(cache_status(&after), "s3-signing-proxy; fwd=miss; stored");
}

/// The same cache in front of SeaweedFS, a local store with its own ETags and conditional
/// requests: a repeat GET is served without it; after the TTL one conditional request
/// revalidates the entry; a changed object is served new.
#[tokio::test]
async fn cache_revalidates_against_seaweedfs() {
    let store = seaweedfs();
    let s3 = PassThrough::start(std::net::SocketAddr::from(([127, 0, 0, 1], store.port))).await;
    store.put("cache-local/clip.txt", "local one").await;
    let local = IntegrationFixture::new("local", &store.bucket)
        .set("prefix", "cache-local/")
        .set("endpoint", s3.endpoint())
        .set("public", true)
        .set("cache_ttl", "1s")
        .static_keys(&store.keys.access_key_id, "LOCAL_SECRET");
    let server = fixtures::settings("listen = \"127.0.0.1:0\"\n[cache]\nmemory = \"16MiB\"");
    let config = fixtures::config(server, &[local], &[]);
    let env = std::collections::BTreeMap::from([(
        "LOCAL_SECRET".to_string(),
        store.keys.secret_access_key.clone(),
    )]);
    let proxy = start_proxy(&config, &env).await;
    let first = fetch(&proxy, "/local/clip.txt", None, &[]).await;
    assert_eq!(first.text(), "local one");
    assert_eq!(cache_status(&first), "s3-signing-proxy; fwd=miss; stored");
    let seen = s3.requests();
    let again = fetch(&proxy, "/local/clip.txt", None, &[]).await;
    assert_eq!(cache_status(&again), "s3-signing-proxy; hit");
    assert_eq!(again.text(), "local one");
    assert_eq!(s3.requests(), seen);

    // Past the TTL: one conditional request, and the entry serves again.
    proxy.clock.advance(Duration::from_millis(1100));
    let stale = fetch(&proxy, "/local/clip.txt", None, &[]).await;
    assert_eq!(stale.text(), "local one");
    assert_eq!(cache_status(&stale), "s3-signing-proxy; fwd=stale");
    assert_eq!(s3.requests(), seen + 1);

    store.put("cache-local/clip.txt", "local two").await;
    assert_eq!(
        fetch(&proxy, "/local/clip.txt", None, &[]).await.text(),
        "local one",
        "served from the fresh entry"
    );
    proxy.clock.advance(Duration::from_millis(1100));
    let changed = fetch(&proxy, "/local/clip.txt", None, &[]).await;
    assert_eq!(changed.text(), "local two");
    assert_eq!(
        cache_status(&changed),
        "s3-signing-proxy; fwd=stale; stored"
    );
}

/// `len` bytes of text that differ from one offset to the next.
fn video_text(len: usize) -> String {
    (0..len)
        .map(|i| char::from(b'a' + ((i * 7 + i / 26) % 26) as u8))
        .collect()
}

/// Ranges from aligned chunks (64 KiB here): a first `bytes=0-` fills every chunk as it
/// streams, later ranges anywhere in the object are served from them; concurrent ranged misses
/// make one store request; the store is asked for whole chunks. A fresh entry answers
/// `If-Modified-Since`; a failed revalidation is answered from the stale entry within
/// `cache_stale_if_error`, and is an error without it.
#[tokio::test]
async fn cache_serves_ranges_from_chunks_answers_validators_and_serves_stale_on_error() {
    let moto = moto();
    let tenant = &moto.tenant_w;
    let s3 = PassThrough::start(moto.address()).await;
    let prefix = "cache-ranges/";
    let integration = |name: &str, extra: &str| {
        tenant_w_integration(
            name,
            &s3.endpoint(),
            &format!("prefix = \"{prefix}\"\n{extra}"),
        )
    };
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.cache]\nmemory = \"16MiB\"\nchunk = \"64KiB\"\n{}{}{}{}{}",
        sts_section(moto, &moto.endpoint(), ""),
        integration("video", "cache_ttl = \"1h\""),
        integration("video-twin", "cache_ttl = \"1h\""),
        integration("flaky", "cache_ttl = \"1s\"\ncache_stale_if_error = \"1h\""),
        integration("strict", "cache_ttl = \"1s\""),
    );
    let proxy = start_proxy(&config, &secrets(moto)).await;
    let video = video_text(200_000);
    store_put(tenant, &format!("{prefix}clip.webm"), &video).await;
    let ranged = |path: &'static str, range: String| {
        let proxy = &proxy;
        async move { fetch(proxy, path, None, &[("range", &range)]).await }
    };

    // The first view: all of it, passed on as it streams and kept chunk by chunk.
    let before = s3.requests();
    let whole = ranged("/video/clip.webm", "bytes=0-".into()).await;
    assert_eq!(whole.status, 206, "{}", whole.text());
    assert_eq!(whole.headers["content-range"], "bytes 0-199999/200000");
    assert_eq!(whole.text(), video);
    assert_eq!(cache_status(&whole), "s3-signing-proxy; fwd=miss; stored");
    assert_eq!(s3.requests(), before + 1);
    assert_eq!(s3.ranges.lock().unwrap().last().unwrap(), "bytes=0-");

    // Seeks anywhere, the last bytes, a range across three chunks: none reaches the store.
    for (range, first, last) in [
        ("bytes=70000-140000", 70_000, 140_000),
        ("bytes=-500", 199_500, 199_999),
        ("bytes=199990-", 199_990, 199_999),
        ("bytes=65535-131072", 65_535, 131_072),
        ("bytes=0-0", 0, 0),
    ] {
        let got = ranged("/video/clip.webm", range.into()).await;
        assert_eq!(got.status, 206, "{range}: {}", got.text());
        assert_eq!(cache_status(&got), "s3-signing-proxy; hit", "{range}");
        assert_eq!(got.text(), video[first..=last], "{range}");
        assert_eq!(
            got.headers["content-range"],
            format!("bytes {first}-{last}/200000"),
            "{range}"
        );
        assert_eq!(
            got.headers["content-length"],
            (last - first + 1).to_string()
        );
    }
    // A browser revalidating its copy of a range (Chromium sends both validators): 304 from
    // the kept version; If-Range naming it, the range; naming another, the store answers.
    let etag = whole.headers["etag"].to_str().unwrap().to_string();
    let modified = whole.headers["last-modified"].to_str().unwrap().to_string();
    let revalidated = fetch(
        &proxy,
        "/video/clip.webm",
        None,
        &[
            ("range", "bytes=327-400"),
            ("if-none-match", &etag),
            ("if-modified-since", &modified),
        ],
    )
    .await;
    assert_eq!(revalidated.status, 304);
    assert_eq!(cache_status(&revalidated), "s3-signing-proxy; hit");
    let if_range = fetch(
        &proxy,
        "/video/clip.webm",
        None,
        &[("range", "bytes=327-400"), ("if-range", &etag)],
    )
    .await;
    assert_eq!(
        (if_range.status.as_u16(), if_range.text()),
        (206, video[327..=400].to_string())
    );
    assert_eq!(cache_status(&if_range), "s3-signing-proxy; hit");
    assert_eq!(s3.requests(), before + 1, "hits reached the store");
    let other_version = fetch(
        &proxy,
        "/video/clip.webm",
        None,
        &[
            ("range", "bytes=327-400"),
            ("if-range", "\"another-version\""),
        ],
    )
    .await;
    // (moto ignores If-Range and answers the range; S3 too: it is the store's to say.)
    assert_eq!(cache_status(&other_version), "s3-signing-proxy; fwd=bypass");
    assert_eq!(s3.requests(), before + 2);
    let before = before + 1;

    // The other integration over the same bucket and key keeps its own chunks.
    let twin = ranged("/video-twin/clip.webm", "bytes=10-19".into()).await;
    assert_eq!(twin.text(), video[10..20]);
    assert_eq!(cache_status(&twin), "s3-signing-proxy; fwd=miss; stored");
    assert_eq!(s3.requests(), before + 2);
    assert_eq!(s3.ranges.lock().unwrap().last().unwrap(), "bytes=0-65535");

    // 20 concurrent misses for one range of a new object: one store request for its chunk.
    let other = video_text(100_000).to_uppercase();
    store_put(tenant, &format!("{prefix}other.webm"), &other).await;
    let before = s3.requests();
    let mut crowd = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let url = proxy.url("/video/other.webm");
        crowd.spawn(async move {
            let request = http::Request::builder()
                .uri(url)
                .header("range", "bytes=70000-70999")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let got = send(request).await;
            (got.status, got.text(), cache_status(&got))
        });
    }
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    while let Some(answer) = crowd.join_next().await {
        let (status, text, cache) = answer.unwrap();
        assert_eq!(
            (status.as_u16(), text.as_str()),
            (206, &other[70_000..71_000])
        );
        *statuses.entry(cache).or_default() += 1;
    }
    assert_eq!(s3.requests(), before + 1, "{statuses:?}");
    assert_eq!(
        statuses.get("s3-signing-proxy; hit"),
        Some(&19),
        "{statuses:?}"
    );
    assert_eq!(
        s3.ranges.lock().unwrap().last().unwrap(),
        "bytes=65536-131071"
    );

    // A range ending inside a chunk: the rest of that chunk is read after the client has its
    // bytes, so the next range in it is a hit.
    let first = ranged("/video/other.webm", "bytes=0-99".into()).await;
    assert_eq!(first.text(), other[..100]);
    let started = Instant::now();
    loop {
        let next = ranged("/video/other.webm", "bytes=60000-60099".into()).await;
        assert_eq!(next.text(), other[60_000..60_100]);
        if cache_status(&next) == "s3-signing-proxy; hit" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "chunk 0 never kept"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Validators from a fresh whole entry: If-Modified-Since at its Last-Modified is 304,
    // an earlier one is the object.
    store_put(tenant, &format!("{prefix}poster.txt"), "poster").await;
    let poster = fetch(&proxy, "/video/poster.txt", None, &[]).await;
    assert_eq!(cache_status(&poster), "s3-signing-proxy; fwd=miss; stored");
    let modified = poster.headers["last-modified"]
        .to_str()
        .unwrap()
        .to_string();
    let before = s3.requests();
    let not_modified = fetch(
        &proxy,
        "/video/poster.txt",
        None,
        &[("if-modified-since", &modified)],
    )
    .await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(cache_status(&not_modified), "s3-signing-proxy; hit");
    let earlier = fetch(
        &proxy,
        "/video/poster.txt",
        None,
        &[("if-modified-since", "Thu, 01 Jan 2015 00:00:00 GMT")],
    )
    .await;
    assert_eq!(
        (earlier.status.as_u16(), earlier.text().as_str()),
        (200, "poster")
    );
    assert_eq!(s3.requests(), before);

    // The store fails while entries are stale: `flaky` answers from its stale entry, `strict`
    // (no cache_stale_if_error) passes the failure on.
    for name in ["flaky", "strict"] {
        let got = fetch(&proxy, &format!("/{name}/poster.txt"), None, &[]).await;
        assert_eq!(cache_status(&got), "s3-signing-proxy; fwd=miss; stored");
    }
    s3.failing.store(true, std::sync::atomic::Ordering::SeqCst);
    // Both entries past their one-second TTL, by the proxy's clock.
    proxy.clock.advance(Duration::from_millis(1100));
    let stale = fetch(&proxy, "/flaky/poster.txt", None, &[]).await;
    assert_eq!(
        (stale.status.as_u16(), stale.text().as_str()),
        (200, "poster")
    );
    assert_eq!(
        cache_status(&stale),
        "s3-signing-proxy; hit; fwd=stale; fwd-status=503; detail=stale-if-error"
    );
    let strict = fetch(&proxy, "/strict/poster.txt", None, &[]).await;
    assert_eq!(strict.status, 503, "{}", strict.text());
    s3.failing.store(false, std::sync::atomic::Ordering::SeqCst);
}

/// The docs' cache example, completed with what every integration needs, is a valid
/// configuration with the settings it describes.
#[test]
fn cache_readme_example_is_valid() {
    let readme = user_docs();
    let (_, after) = readme
        .split_once("```toml\n[server.cache]")
        .expect("the docs' cache example");
    let (example, _) = after.split_once("```").unwrap();
    let text = format!(
        "[server.cache]{example}bucket = \"acme-media-bucket\"\nregion = \"us-east-1\"\n\
         [integration.credentials]\nsource = \"default-chain\"\n"
    );
    let secrets = std::collections::BTreeMap::<String, String>::new();
    let config = s3_signing_proxy::config::Config::parse(&text, "README", &secrets)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config.server.cache_memory, Some(512 << 20));
    assert_eq!(config.server.cache_chunk, 1 << 20);
    assert_eq!(
        config.server.cache_disk,
        Some(("/var/cache/s3sp".into(), 50 << 30))
    );
    let policy = config.integrations[0].cache.expect("cache_ttl");
    assert_eq!(policy.ttl, Duration::from_secs(60));
    assert_eq!(policy.max_object, 64 << 20);
    assert_eq!(policy.stale_if_error, Duration::from_secs(300));
}

const DISK_SECRET: &str = "cache-disk-writer-secret-51d7";

/// `[server.cache] disk`: with 1 MiB of memory, twenty objects of 200 KiB are all served again
/// without the store (memory holds five; the disk tier, whose own memory holds five more, gives
/// them back, counted on `/metrics`), and so is a range of one only the disk holds; a write
/// through the proxy is seen at once, though its old version was on disk; a purge drops the
/// integration's entries from disk too.
#[tokio::test]
async fn cache_disk_tier_serves_what_memory_cannot_hold_and_forgets_writes() {
    let moto = moto();
    let tenant = &moto.tenant_w;
    let s3 = PassThrough::start(moto.address()).await;
    let dir = TempDir::new("cache-disk");
    let config = format!(
        "[server]\nlisten = \"LISTEN\"\nadmin_listen = \"ADMIN\"\n[server.cache]\n\
         memory = \"1MiB\"\ndisk = \"{disk}\"\ndisk_size = \"64MiB\"\n{}{}{}",
        sts_section(moto, &moto.endpoint(), ""),
        tenant_w_integration(
            "disked",
            &s3.endpoint(),
            "access = \"read-write\"\nprefix = \"cache-disk/\"\ncache_ttl = \"60s\"",
        ),
        ClientFixture::toml(&[ClientFixture::new(
            "AKDISK",
            "DISK_SECRET",
            &["disked"],
            "read-write"
        )]),
        disk = dir.0.join("disk").display(),
    );
    let body = |n: usize| format!("{n:02}").repeat(100 << 10);
    const OBJECTS: usize = 20;
    for n in 0..OBJECTS {
        store_put(tenant, &format!("cache-disk/{n}.bin"), &body(n)).await;
    }
    let mut env = moto_env(moto);
    env.push(("DISK_SECRET", DISK_SECRET.to_string()));
    register_secrets([&DISK_SECRET.to_string()]);
    let proxy = ProxyProcess::spawn(&dir.0, &config, &env_refs(&env)).await;
    let url = |n: usize| proxy.url(&format!("/disked/{n}.bin"));

    let before = s3.requests();
    for n in 0..OBJECTS {
        let first = get(&url(n)).await;
        assert_eq!(first.status, 200, "{}", first.text());
        assert_eq!(cache_status(&first), "s3-signing-proxy; fwd=miss; stored");
    }
    assert_eq!(s3.requests(), before + OBJECTS);
    for n in 0..OBJECTS {
        let again = get(&url(n)).await;
        assert_eq!(again.text(), body(n), "object {n}");
        assert_eq!(cache_status(&again), "s3-signing-proxy; hit", "object {n}");
    }
    // A range of the object used longest ago, which only the disk holds now.
    let range = send(
        http::Request::get(url(0))
            .header("range", "bytes=10-19")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(range.status, 206);
    assert_eq!(range.text(), "0000000000");
    assert_eq!(cache_status(&range), "s3-signing-proxy; hit");
    assert_eq!(s3.requests(), before + OBJECTS, "hits reached the store");
    // 4 MiB of bodies through 1 MiB of memory: most came back from the disk tier.
    let metrics = send(
        http::Request::get(proxy.admin_url("/metrics"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
    .text();
    let reads = metric(
        &metrics,
        "s3sp_cache_disk_reads_total{integration=\"disked\"}",
    );
    assert!(reads.is_some_and(|reads| reads >= 16.0), "{reads:?}");

    // A PUT through the proxy: its object's next GET is the new version, from the store.
    let mut put = http::Request::put(url(0))
        .body(Full::new(Bytes::from_static(b"rewritten")))
        .unwrap();
    sign_as_client(&mut put, "AKDISK", DISK_SECRET);
    assert_eq!(send(put).await.status, 200);
    let seen = s3.requests();
    let rewritten = get(&url(0)).await;
    assert_eq!(rewritten.text(), "rewritten");
    assert_eq!(
        cache_status(&rewritten),
        "s3-signing-proxy; fwd=miss; stored"
    );
    assert_eq!(s3.requests(), seen + 1);

    // A purge of the integration: nothing of it is served from either tier.
    let purge = http::Request::post(proxy.admin_url("/cache/purge"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"integration": "disked"}"#,
        )))
        .unwrap();
    assert_eq!(send(purge).await.status, 200);
    for n in 1..OBJECTS {
        let after = get(&url(n)).await;
        assert_eq!(after.text(), body(n));
        assert_eq!(
            cache_status(&after),
            "s3-signing-proxy; fwd=miss; stored",
            "object {n}"
        );
    }
    assert_eq!(s3.requests(), seen + OBJECTS);
}
