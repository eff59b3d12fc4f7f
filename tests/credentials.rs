//! The credential cache against moto's real STS, counted by a pass-through in front of it:
//! one AssumeRole however many cold requests wait, renewal before expiry, and service through
//! an STS outage while the cached credentials are still valid.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::Duration;

use http::StatusCode;

use crate::support::*;

/// A proxy for tenant A whose STS calls go through `sts`; credentials last 900 s (AWS's
/// minimum) on the proxy's clock and are renewed `refresh_before_expiry` before that.
async fn proxy_through(sts: &PassThrough, refresh_before_expiry: &str) -> RunningProxy {
    let moto = moto();
    let lifetime =
        format!("duration = \"15m\"\nrefresh_before_expiry = \"{refresh_before_expiry}\"");
    let config = acme_config(&sts.endpoint(), &moto.endpoint(), &lifetime);
    let proxy = start_proxy(&config, &secrets(moto)).await;
    sts.issue_on(&proxy.clock, LIFETIME);
    proxy
}

/// How long STS's credentials last in these tests: AWS's minimum.
const LIFETIME: Duration = Duration::from_secs(900);
/// Past the fresh time of credentials renewed 5 minutes early (at most 600 s, less jitter),
/// and short of their expiry: they are due and still valid.
const DUE: Duration = Duration::from_secs(601);

/// Waits until the proxy's credential cache has seen `count` failed STS fetches.
async fn wait_for_failures(proxy: &RunningProxy, count: u64) {
    let failures = || {
        let state = proxy.proxy.state();
        state
            .credentials
            .stats
            .failures
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    eventually("the STS fetch failed", || {
        (failures() >= count).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_cold_requests_make_one_assume_role_call() {
    let sts = PassThrough::start(moto().address()).await;
    let proxy = proxy_through(&sts, "5m").await;
    let url = proxy.url("/acme/owner.txt");
    let requests: Vec<_> = (0..1000)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    let mut ok = 0;
    for request in requests {
        let fetched = request.await.expect("task");
        assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text());
        assert_eq!(fetched.text(), "tenant a\n");
        ok += 1;
    }
    assert_eq!(ok, 1000);
    assert_eq!(
        sts.assume_role_calls(),
        1,
        "concurrent misses share one STS call"
    );
}

#[tokio::test]
async fn credentials_are_renewed_before_they_expire() {
    let sts = PassThrough::start(moto().address()).await;
    let proxy = proxy_through(&sts, "5m").await;
    let url = proxy.url("/acme/owner.txt");
    assert_eq!(get(&url).await.status, StatusCode::OK);
    assert_eq!(get(&url).await.status, StatusCode::OK);
    assert_eq!(sts.assume_role_calls(), 1, "fresh credentials are reused");
    proxy.clock.advance(DUE);
    // Due: this request is served at once, and the renewal runs in the background.
    assert_eq!(get(&url).await.status, StatusCode::OK);
    wait_for_calls(&sts, 2).await;
    assert_eq!(get(&url).await.status, StatusCode::OK);
    assert_eq!(
        sts.assume_role_calls(),
        2,
        "renewed once they were due, before expiry"
    );
}

/// Waits (up to 5 s) until STS has seen `count` AssumeRole calls.
async fn wait_for_calls(sts: &PassThrough, count: usize) {
    eventually(&format!("{count} AssumeRole calls"), || {
        (sts.assume_role_calls() >= count).then_some(())
    })
    .await;
}

#[tokio::test]
async fn requests_keep_succeeding_through_an_sts_outage_while_credentials_are_valid() {
    let sts = PassThrough::start(moto().address()).await;
    let proxy = proxy_through(&sts, "5m").await;
    let url = proxy.url("/acme/owner.txt");
    assert_eq!(get(&url).await.status, StatusCode::OK);
    assert_eq!(sts.assume_role_calls(), 1);

    sts.failing.store(true, std::sync::atomic::Ordering::SeqCst);
    proxy.clock.advance(DUE);
    let during = get(&url).await;
    assert_eq!(during.status, StatusCode::OK, "{}", during.text());
    assert_eq!(during.text(), "tenant a\n");
    // The background renewal (with the SDK's own retries) ends in failure.
    wait_for_failures(&proxy, 1).await;
    let attempts = sts.assume_role_calls();
    assert!(attempts >= 2, "a renewal was attempted");

    // Backing off: the next requests do not call the failing STS again.
    for _ in 0..20 {
        assert_eq!(get(&url).await.status, StatusCode::OK);
    }
    assert_eq!(
        sts.assume_role_calls(),
        attempts,
        "STS calls for 20 requests while backing off"
    );
    // Once the backoff (at most 1 s at first) has passed, the next request tries again.
    proxy.clock.advance(Duration::from_secs(1));
    assert_eq!(get(&url).await.status, StatusCode::OK);
    wait_for_failures(&proxy, 2).await;
    assert!(
        sts.assume_role_calls() > attempts,
        "retried after the backoff"
    );

    sts.failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
}

#[tokio::test]
async fn with_no_credentials_to_fall_back_on_an_outage_is_service_unavailable() {
    let sts = PassThrough::start(moto().address()).await;
    sts.failing.store(true, std::sync::atomic::Ordering::SeqCst);
    let proxy = proxy_through(&sts, "5m").await;
    let fetched = get(&proxy.url("/acme/owner.txt")).await;
    assert_eq!(fetched.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(fetched.error_code(), "ServiceUnavailable");
    assert!(
        fetched.text().contains("integration acme"),
        "{}",
        fetched.text()
    );
}

#[tokio::test]
async fn one_role_with_two_external_ids_never_shares_credentials() {
    let moto = moto();
    let sts = PassThrough::start(moto.address()).await;
    let endpoint = moto.endpoint();
    let config = format!(
        "{}{}{}",
        sts_section(moto, &sts.endpoint(), ""),
        role_integration(
            "right",
            &moto.tenant_a,
            &endpoint,
            "path",
            &moto.tenant_a.external_id,
            ""
        ),
        // Same role ARN and bucket (so each is reached by its name), another ExternalId.
        role_integration(
            "wrong",
            &moto.tenant_a,
            &endpoint,
            "path",
            "someone-elses-id",
            ""
        ),
    );
    let proxy = start_proxy(&config, &secrets(moto)).await;
    assert_eq!(
        get(&proxy.url("/right/owner.txt")).await.status,
        StatusCode::OK
    );
    let wrong = get(&proxy.url("/wrong/owner.txt")).await;
    assert_eq!(
        wrong.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        wrong.text()
    );
    assert!(wrong.text().contains("AccessDenied"), "{}", wrong.text());
    // Exactly two, as SECURITY.md promises: one per identity, and the refusal remembered.
    assert_eq!(
        sts.assume_role_calls(),
        2,
        "each identity asked STS itself, once"
    );
}

#[tokio::test]
async fn the_proxys_own_identity_comes_from_the_standard_aws_chain() {
    let moto = moto();
    let dir = TempDir::new("default-chain");
    let own = IntegrationFixture::new("own-identity", &moto.tenant_a.bucket)
        .set("endpoint", moto.endpoint())
        .set("public", true)
        .set(
            "credentials",
            fixtures::settings("source = \"default-chain\""),
        );
    let config = fixtures::config(fixtures::settings("listen = \"LISTEN\""), &[own], &[]);
    // The environment provider is the chain's first link; nothing else may answer instead.
    let missing = dir.0.join("absent");
    let missing = missing.to_str().unwrap();
    let env = [
        (
            "AWS_ACCESS_KEY_ID",
            moto.static_reader.access_key_id.as_str(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            moto.static_reader.secret_access_key.as_str(),
        ),
        ("AWS_CONFIG_FILE", missing),
        ("AWS_SHARED_CREDENTIALS_FILE", missing),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let proxy = ProxyProcess::spawn(&dir.0, &config, &env).await;
    let fetched = get(&proxy.url("/own-identity/owner.txt")).await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text());
    assert_eq!(fetched.text(), "tenant a\n");
    assert!(!proxy.log().contains(&moto.static_reader.secret_access_key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_faults_while_credentials_are_valid_never_delay_a_request() {
    for fault in [StsFault::Throttling, StsFault::Hang] {
        let sts = PassThrough::start(moto().address()).await;
        let proxy = proxy_through(&sts, "5m").await;
        let url = proxy.url("/acme/owner.txt");
        assert_eq!(get(&url).await.status, StatusCode::OK);
        sts.inject(fault);
        proxy.clock.advance(DUE);
        // Due, and STS throttles or hangs: every request is still served from the previous
        // credentials, none waits for STS. With a hanging STS that shows as answers arriving
        // while its call is still held (the SDK would give up on it after 5 s).
        let hanging = || sts.hanging.load(std::sync::atomic::Ordering::SeqCst);
        for at in 0..5 {
            let fetched = get(&url).await;
            assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text());
            if let StsFault::Hang = fault {
                if at == 0 {
                    eventually("the renewal reaches STS", || (hanging() == 1).then_some(())).await;
                }
                assert_eq!(hanging(), 1, "answered while the renewal is held");
            }
        }
        assert!(sts.assume_role_calls() >= 2, "a refresh was attempted");
    }
}

#[tokio::test]
async fn a_cold_sts_failure_is_remembered_and_answered_503_with_retry_after() {
    let sts = PassThrough::start(moto().address()).await;
    sts.inject(StsFault::Throttling);
    let proxy = proxy_through(&sts, "5m").await;
    let url = proxy.url("/acme/owner.txt");
    let refused = get(&url).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.error_code(), "ServiceUnavailable");
    assert!(refused.text().contains("Throttling"), "{}", refused.text());
    assert!(refused.headers.contains_key("retry-after"));
    let calls = sts.assume_role_calls();
    for _ in 0..10 {
        assert_eq!(get(&url).await.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(
        sts.assume_role_calls(),
        calls,
        "a throttled identity is not asked again at once"
    );
    // Once the backoff (at most 1 s at first) has passed and STS answers again, the
    // integration recovers.
    sts.inject(StsFault::None);
    proxy.clock.advance(Duration::from_millis(1100));
    assert_eq!(get(&url).await.status, StatusCode::OK);
}

#[tokio::test]
async fn expired_credentials_are_never_used_to_sign() {
    let moto = moto();
    let sts = PassThrough::start(moto.address()).await;
    let s3 = PassThrough::start(moto.address()).await;
    sts.inject(StsFault::ShortLived);
    let config = acme_config(&sts.endpoint(), &s3.endpoint(), "duration = \"15m\"");
    let proxy = start_proxy(&config, &secrets(moto)).await;
    sts.issue_on(&proxy.clock, LIFETIME);
    let url = proxy.url("/acme/owner.txt");
    assert_eq!(get(&url).await.status, StatusCode::OK);
    // STS goes down; the 8-second credentials serve until 5 s before they expire.
    sts.failing.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(get(&url).await.status, StatusCode::OK);
    proxy.clock.advance(Duration::from_secs(4));
    let reached = s3.requests();
    let refused = get(&url).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text()
    );
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(
        s3.requests(),
        reached,
        "a request was signed with expiring credentials"
    );
}

/// A client request signed by the test as an SDK would (UNSIGNED-PAYLOAD), sent to `url`.
async fn signed(
    method: http::Method,
    url: &str,
    body: bytes::Bytes,
) -> http::Response<hyper::body::Incoming> {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let uri: http::Uri = url.parse().unwrap();
    let mut request = http::Request::new(());
    *request.method_mut() = method;
    let headers = request.headers_mut();
    headers.insert("host", uri.authority().unwrap().as_str().parse().unwrap());
    if !body.is_empty() {
        headers.insert("content-length", body.len().to_string().parse().unwrap());
    }
    *request.uri_mut() = uri;
    sign_as_client(&mut request, EXPIRY_CLIENT, EXPIRY_SECRET);
    let (parts, ()) = request.into_parts();
    let client: Client<_, http_body_util::Full<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    client
        .request(http::Request::from_parts(
            parts,
            http_body_util::Full::new(body),
        ))
        .await
        .unwrap()
}

async fn text_of(response: http::Response<hyper::body::Incoming>) -> (StatusCode, String) {
    use http_body_util::BodyExt;
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

const EXPIRY_CLIENT: &str = "AKEXPIRYCLIENT";
const EXPIRY_SECRET: &str = "expiry-client-secret-31d4";

/// Byte `i` of the objects this test writes.
fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(31) % 251) as u8
}

/// S3 checks a signature when a request starts, so a download that outlives the credentials
/// it was signed with must finish whole; and a multipart part sent after they expired is
/// signed with fresh ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_outlives_its_credentials_and_a_later_part_gets_fresh_ones() {
    use http::Method;
    use http_body_util::BodyExt;
    let moto = moto();
    let sts = PassThrough::start(moto.address()).await;
    // Every AssumeRole answer lasts 8 s, and none is used within 5 s of its end.
    sts.inject(StsFault::ShortLived);
    let w = &moto.tenant_w;
    let client = ClientFixture::new(EXPIRY_CLIENT, "EXPIRY_SECRET", &["expiry"], "read-write");
    let config = format!(
        "{}{}{}",
        sts_section(moto, &sts.endpoint(), "duration = \"15m\""),
        role_integration(
            "expiry",
            w,
            &moto.endpoint(),
            "path",
            &w.external_id,
            "public = false\naccess = \"read-write\"\nprefix = \"expiry\"",
        ),
        ClientFixture::toml(&[client]),
    );
    let mut secrets = secrets(moto);
    secrets.insert("EXPIRY_SECRET".into(), EXPIRY_SECRET.into());
    let proxy = start_proxy(&config, &secrets).await;
    sts.issue_on(&proxy.clock, LIFETIME);

    // A 64 MiB object: far more than loopback socket buffers hold, so the download below
    // really is in flight while its credentials run out.
    const SIZE: usize = 64 << 20;
    let object: bytes::Bytes = (0..SIZE).map(pattern).collect::<Vec<u8>>().into();
    let (status, text) =
        text_of(signed(Method::PUT, &proxy.url("/expiry/big.bin"), object).await).await;
    assert_eq!(status, StatusCode::OK, "{text}");

    // A multipart upload whose first part goes now.
    let (status, text) = text_of(
        signed(
            Method::POST,
            &proxy.url("/expiry/parts.bin?uploads"),
            bytes::Bytes::new(),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let upload_id = text
        .split("<UploadId>")
        .nth(1)
        .and_then(|rest| rest.split("</UploadId>").next())
        .expect("an UploadId")
        .to_string();
    let part_url = |n: u32| {
        proxy.url(&format!(
            "/expiry/parts.bin?partNumber={n}&uploadId={upload_id}"
        ))
    };
    let first: bytes::Bytes = (0..5 << 20).map(pattern).collect::<Vec<u8>>().into();
    let response = signed(Method::PUT, &part_url(1), first).await;
    assert_eq!(response.status(), StatusCode::OK);
    let etag1 = response.headers()["etag"].to_str().unwrap().to_string();
    let calls_before = sts.assume_role_calls();

    // Start the download, then let the credentials that signed it expire (on the proxy's
    // clock) before reading the rest.
    let response = signed(
        Method::GET,
        &proxy.url("/expiry/big.bin"),
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let (mut received, mut mismatches, mut expired_at) = (0usize, 0usize, None);
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("the download never breaks");
        if let Some(data) = frame.data_ref() {
            mismatches += data
                .iter()
                .enumerate()
                .filter(|(i, b)| **b != pattern(received + i))
                .count();
            received += data.len();
        }
        if expired_at.is_none() && received > 0 {
            proxy.clock.advance(Duration::from_secs(9));
            expired_at = Some(received);
        }
    }
    let expired_at = expired_at.expect("a first frame");
    assert!(
        SIZE - expired_at > 32 << 20,
        "the download was in flight when its 8 s credentials expired ({expired_at} bytes read)"
    );
    assert_eq!(received, SIZE, "the download ended short");
    assert_eq!(mismatches, 0, "every byte as stored");

    // The credentials that signed part 1 and the download have expired: part 2 and the
    // completion succeed, so they were signed with new ones.
    let last: bytes::Bytes = (5 << 20..(5 << 20) + 1000)
        .map(pattern)
        .collect::<Vec<u8>>()
        .into();
    let response = signed(Method::PUT, &part_url(2), last).await;
    assert_eq!(response.status(), StatusCode::OK);
    let etag2 = response.headers()["etag"].to_str().unwrap().to_string();
    let complete = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag1}</ETag></Part><Part><PartNumber>2</PartNumber><ETag>{etag2}</ETag></Part></CompleteMultipartUpload>"
    );
    let (status, text) = text_of(
        signed(
            Method::POST,
            &proxy.url(&format!("/expiry/parts.bin?uploadId={upload_id}")),
            complete.into(),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        sts.assume_role_calls() > calls_before,
        "new credentials were fetched after the first ones expired"
    );
    let response = signed(
        Method::GET,
        &proxy.url("/expiry/parts.bin"),
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let whole = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(whole.len(), (5 << 20) + 1000);
    assert!(
        whole.iter().enumerate().all(|(i, b)| *b == pattern(i)),
        "the completed upload holds both parts in order"
    );
}

/// A wrong ExternalId is AccessDenied from moto's STS: remembered for a while (one STS call
/// however many requests arrive) and confined to its own integration.
#[tokio::test]
async fn access_denied_for_one_integration_is_remembered_and_leaves_the_others_alone() {
    let moto = moto();
    let sts = PassThrough::start(moto.address()).await;
    let config = format!(
        "{}{}{}",
        sts_section(moto, &sts.endpoint(), ""),
        role_integration(
            "acme",
            &moto.tenant_a,
            &moto.endpoint(),
            "path",
            &moto.tenant_a.external_id,
            ""
        ),
        role_integration(
            "broken",
            &moto.tenant_b,
            &moto.endpoint(),
            "path",
            "ext-b-wrong",
            ""
        ),
    );
    let proxy = start_proxy(&config, &secrets(moto)).await;
    for _ in 0..5 {
        let refused = get(&proxy.url("/broken/owner.txt")).await;
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            refused.text().contains("AccessDenied"),
            "{}",
            refused.text()
        );
        assert!(refused.headers.contains_key("retry-after"));
    }
    assert_eq!(
        sts.assume_role_calls(),
        1,
        "a denied identity is not asked again at once"
    );
    let fetched = get(&proxy.url("/acme/owner.txt")).await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text());
    assert_eq!(fetched.text(), "tenant a\n");
    assert_eq!(sts.assume_role_calls(), 2, "acme asked STS for itself");
    assert_eq!(
        get(&proxy.url("/broken/owner.txt")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(sts.assume_role_calls(), 2);
}

/// When the proxy's own identity is a role session (an instance or pod role), AssumeRole is
/// role chaining and AWS refuses more than an hour: the proxy asks for the hour instead, and
/// keeps asking for it.
#[tokio::test]
async fn a_chained_session_over_an_hour_falls_back_to_one_hour() {
    let moto = moto();
    let sts = PassThrough::start(moto.address()).await;
    sts.inject(StsFault::ChainedLimit);
    let config = acme_config(
        &sts.endpoint(),
        &moto.endpoint(),
        "duration = \"2h\"\nrefresh_before_expiry = \"5m\"",
    );
    let proxy = start_proxy(&config, &secrets(moto)).await;
    sts.issue_on(&proxy.clock, Duration::from_secs(3600));
    let url = proxy.url("/acme/owner.txt");
    let fetched = get(&url).await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text());
    assert_eq!(fetched.text(), "tenant a\n");
    assert_eq!(
        sts.assume_role_calls(),
        2,
        "refused at 2h, then granted at 1h"
    );
    // One-hour credentials renewed 5 minutes early are due after at most 3,300 s: the
    // renewal asks for the hour at once.
    proxy.clock.advance(Duration::from_secs(3301));
    assert_eq!(get(&url).await.status, StatusCode::OK);
    wait_for_calls(&sts, 3).await;
    assert_eq!(get(&url).await.status, StatusCode::OK);
    assert_eq!(sts.assume_role_calls(), 3, "no second refusal");
}

/// `count` integrations of tenant A, each its own STS identity (its own session name).
fn many_integrations(moto: &Moto, count: usize) -> String {
    let tenant = &moto.tenant_a;
    (0..count)
        .map(|n| {
            let name = format!("tenant-{n:04}");
            let mut credentials = toml::Table::new();
            credentials.insert("role_arn".into(), tenant.role_arn.as_str().into());
            credentials.insert("external_id".into(), tenant.external_id.as_str().into());
            credentials.insert("session_name".into(), name.as_str().into());
            IntegrationFixture::new(&name, &tenant.bucket)
                .set("endpoint", moto.endpoint())
                .set("public", true)
                .set("credentials", credentials)
                .toml()
        })
        .collect()
}

/// The `/integrations` lines that end as `state` says.
fn lines_saying(page: &str, state: &str) -> usize {
    page.lines().filter(|l| l.contains(state)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_makes_no_assume_role_calls_and_warm_up_is_opt_in_and_paced() {
    let moto = moto();
    let sts = PassThrough::start(moto.address()).await;
    let count = 60;
    let config = |sts_extra: &str| {
        format!(
            "[server]\nlisten = \"LISTEN\"\nadmin_listen = \"ADMIN\"\n{}{}",
            sts_section(moto, &sts.endpoint(), sts_extra),
            many_integrations(moto, count)
        )
    };
    let env: Vec<(&str, &str)> = vec![(
        "PROXY_USER_SECRET",
        moto.proxy_user.secret_access_key.as_str(),
    )];

    // Without warm-up: readiness asks STS who the proxy is (once, then believes it for a
    // minute) and no integration's credentials are fetched until a request needs them.
    let dir = TempDir::new("creds-ready");
    let proxy = ProxyProcess::spawn(&dir.0, &config(""), &env).await;
    for _ in 0..5 {
        let ready = get(&proxy.admin_url("/readyz")).await;
        assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
        assert!(ready.text().contains("arn:aws:"), "{}", ready.text());
    }
    assert_eq!(sts.assume_role_calls(), 0);
    assert_eq!(sts.requests(), 1, "one GetCallerIdentity for five probes");
    let page = get(&proxy.admin_url("/integrations")).await.text();
    assert_eq!(lines_saying(&page, ": not used yet"), count, "{page}");
    assert_eq!(
        get(&proxy.url("/tenant-0007/owner.txt")).await.status,
        StatusCode::OK
    );
    let page = get(&proxy.admin_url("/integrations")).await.text();
    assert!(page.contains("tenant-0007: ok, valid for"), "{page}");
    assert_eq!(lines_saying(&page, ": not used yet"), count - 1, "{page}");
    assert_eq!(sts.assume_role_calls(), 1);
    drop(proxy);

    // With warm-up at 40 calls a second: every identity once, in the background.
    let calls_before = sts.assume_role_calls();
    let dir = TempDir::new("creds-warm");
    let proxy = ProxyProcess::spawn(&dir.0, &config("warm_up_per_second = 40"), &env).await;
    let mut page = String::new();
    for _ in 0..100 {
        page = get(&proxy.admin_url("/integrations")).await.text();
        if lines_saying(&page, ": ok, valid for") == count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lines_saying(&page, ": ok, valid for"), count, "{page}");
    assert_eq!(sts.assume_role_calls() - calls_before, count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_given_as_account_and_name_assumes_the_same_role_as_its_arn() {
    let moto = moto();
    let sts = PassThrough::start(moto.address()).await;
    let role_arn = &moto.tenant_a.role_arn;
    let (account_id, role_name) = role_arn
        .strip_prefix("arn:aws:iam::")
        .and_then(|rest| rest.split_once(":role/"))
        .expect("a role ARN");
    let by_arn = IntegrationFixture::tenant("by-arn", &moto.tenant_a, &moto.endpoint());
    let mut credentials = toml::Table::new();
    credentials.insert("account_id".into(), account_id.into());
    credentials.insert("role_name".into(), role_name.into());
    credentials.insert(
        "external_id".into(),
        moto.tenant_a.external_id.as_str().into(),
    );
    let by_parts = IntegrationFixture::tenant("by-parts", &moto.tenant_a, &moto.endpoint())
        .set("credentials", credentials);
    let config = format!(
        "{}{}{}",
        sts_section(moto, &sts.endpoint(), ""),
        by_arn.toml(),
        by_parts.toml()
    );
    let proxy = start_proxy(&config, &secrets(moto)).await;
    for name in ["by-parts", "by-arn"] {
        let fetched = get(&proxy.url(&format!("/{name}/owner.txt"))).await;
        assert_eq!(fetched.status, StatusCode::OK, "{name}: {}", fetched.text());
        assert_eq!(fetched.text(), "tenant a\n");
    }
    // One identity: the second integration's credentials came from the first one's call.
    assert_eq!(sts.assume_role_calls(), 1);
}

/// A store that answers every request with `400 ExpiredToken`, as S3 does for a session token
/// past its expiry; counts the requests.
async fn expired_token_store() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>ExpiredToken</Code>\
                    <Message>The provided token has expired.</Message></Error>";
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let answer = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: application/xml\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    (address, requests)
}

/// SECURITY.md: a store's `ExpiredToken` drops the identity's cached credentials at once (the
/// next request assumes the role again), at most once per 10 s however many refusals follow,
/// and both are counted on `/metrics`. The client gets 503, never the store's document.
#[tokio::test]
async fn an_expired_token_refusal_drops_the_credentials_once_and_is_counted() {
    let moto = moto();
    let sts = PassThrough::start(moto.address()).await;
    let (store, store_requests) = expired_token_store().await;
    let config = format!(
        "[server]\nlisten = \"LISTEN\"\nadmin_listen = \"ADMIN\"\n{}",
        acme_config(&sts.endpoint(), &format!("http://{store}"), "")
    );
    let dir = TempDir::new("credentials-expired-token");
    let env = moto_env(moto);
    let proxy = ProxyProcess::spawn(&dir.0, &config, &env_refs(&env)).await;
    let url = proxy.url("/acme/owner.txt");
    let metrics = proxy.admin_url("/metrics");

    let refused = get(&url).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text()
    );
    assert_eq!(refused.error_code(), "ServiceUnavailable");
    assert!(
        !refused.text().contains("ExpiredToken"),
        "{}",
        refused.text()
    );
    assert_eq!(sts.assume_role_calls(), 1);
    let text = wait_for_metric(&metrics, "s3sp_credential_invalidations_total", 1.0).await;
    assert_eq!(
        metric(&text, "s3sp_credential_invalidations_debounced_total"),
        Some(0.0)
    );

    // Dropped: the next request assumes the role again; its refusal, within 10 s of the drop,
    // does not drop the new credentials.
    assert_eq!(get(&url).await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        sts.assume_role_calls(),
        2,
        "the dropped credentials were fetched again"
    );
    let text = wait_for_metric(
        &metrics,
        "s3sp_credential_invalidations_debounced_total",
        1.0,
    )
    .await;
    assert_eq!(
        metric(&text, "s3sp_credential_invalidations_total"),
        Some(1.0)
    );
    assert_eq!(get(&url).await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        sts.assume_role_calls(),
        2,
        "kept within the debounce period"
    );
    assert_eq!(store_requests.load(std::sync::atomic::Ordering::SeqCst), 3);
    let text = get(&metrics).await.text();
    assert_eq!(
        metric(
            &text,
            "s3sp_upstream_errors_total{integration=\"acme\",code=\"ExpiredToken\"}"
        ),
        Some(3.0)
    );
}

/// A form upload takes the same path as any request when the store refuses the proxy's
/// credentials: the identity's cached credentials are dropped (and counted), the client gets
/// 503, and the access line shows the store's answer.
#[tokio::test]
async fn a_form_upload_refused_for_expired_credentials_drops_them_too() {
    let moto = moto();
    let sts = PassThrough::start(moto.address()).await;
    let (store, _) = expired_token_store().await;
    let form_secret = "form-expired-secret-2b7d";
    let config = format!(
        "[server]\nlisten = \"LISTEN\"\nadmin_listen = \"ADMIN\"\n{}{}{}",
        sts_section(moto, &sts.endpoint(), ""),
        role_integration(
            "uploads",
            &moto.tenant_w,
            &format!("http://{store}"),
            "path",
            &moto.tenant_w.external_id,
            "access = \"read-write\"\npublic = false",
        ),
        ClientFixture::toml(&[ClientFixture::new(
            "AKFORMEXPIRED",
            "FORM_SECRET",
            &["uploads"],
            "read-write",
        )]),
    );
    register_secrets([&form_secret.to_string()]);
    let dir = TempDir::new("credentials-expired-form");
    let mut env = moto_env(moto);
    env.push(("FORM_SECRET", form_secret.to_string()));
    let proxy = ProxyProcess::spawn(&dir.0, &config, &env_refs(&env)).await;
    let post = presigned_post(
        &proxy.url(""),
        ("AKFORMEXPIRED", form_secret),
        "uploads",
        "in/${filename}",
        600,
        serde_json::json!({}),
        serde_json::json!([["starts-with", "$key", "in/"]]),
    )
    .await;
    let fields = post_fields(&post);
    let (content_type, mut body, suffix) = form_framing(&fields, "note.txt");
    body.extend_from_slice(b"a small note");
    body.extend_from_slice(&suffix);
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(post["url"].as_str().unwrap())
        .header("content-type", content_type)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let refused = send(request).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text()
    );
    assert!(
        !refused.text().contains("ExpiredToken"),
        "{}",
        refused.text()
    );
    assert_eq!(sts.assume_role_calls(), 1);
    wait_for_metric(
        &proxy.admin_url("/metrics"),
        "s3sp_credential_invalidations_total",
        1.0,
    )
    .await;
    let id = refused.headers["x-amz-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let line = eventually("the upload's access line", || {
        proxy
            .log()
            .lines()
            .find(|line| line.contains(&format!("request_id={id}")) && line.contains("access"))
            .map(str::to_string)
    })
    .await;
    assert!(
        line.contains("upstream_status=400") && line.contains("ExpiredToken"),
        "{line}"
    );
}
