//! `[source] preload = false`: nothing is loaded at start; an integration or a client is read
//! from PostgreSQL by its key when a request first names it, kept, and kept current by the
//! notifications; a name the database does not hold is remembered as absent for `absent_for`,
//! so a flood of unknown names costs the database one query per name (counted in the
//! database's own statement log, not only in the proxy's metric).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::{Duration, Instant};

use crate::sources::{integration_spec, served, until_served};
use crate::support::{Postgres, ProxyProcess, TempDir, get, metric, seaweedfs};

const URL_VAR: &str = "ON_DEMAND_DATABASE_URL";
const CLIENT_SECRET: &str = "on-demand-client-secret-77ab";

/// The proxy's `/metrics` value of `series` (0 when absent).
async fn series(proxy: &ProxyProcess, series: &str) -> f64 {
    let text = get(&proxy.admin_url("/metrics")).await.text();
    metric(&text, series).unwrap_or(0.0)
}

/// How many times the database was asked for `key` ($1 of a logged statement).
fn asked_for(log: &std::path::Path, key: &str) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let wanted = format!("parameters: $1 = '{key}'");
    text.lines().filter(|line| line.contains(&wanted)).count()
}

/// A GET of `/{name}/photo` signed as the on-demand client with `secret`.
async fn signed_get(proxy: &ProxyProcess, key_id: &str, secret: &str) -> crate::support::Fetched {
    let mut request = http::Request::builder()
        .uri(proxy.url("/od-a/photo"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    crate::support::sign_as_client(&mut request, key_id, secret);
    crate::support::send(request).await
}

#[tokio::test]
async fn sources_on_demand_fetches_by_key_remembers_absence_and_follows_changes() {
    let store = seaweedfs();
    for (folder, body) in [("p1", "pg-one"), ("p2", "pg-two"), ("p3", "pg-three")] {
        store.put(&format!("sources/pg/{folder}/photo"), body).await;
    }
    let postgres = Postgres::start();
    let db = postgres.with_schema().await;
    // The proxy's statements in the server's log, with their parameters (keys, never specs):
    // the database's own count of what it was asked. This session's own statements, which
    // carry specs and their secrets, stay out of it.
    db.batch_execute("SET log_statement = 'none'")
        .await
        .unwrap();
    db.batch_execute("ALTER SYSTEM SET log_statement = 'all'")
        .await
        .unwrap();
    db.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    db.execute(
        "INSERT INTO s3sp_integrations (name, spec) VALUES ('od-a', $1::text::jsonb)",
        &[&integration_spec("sources/pg/p1/").to_string()],
    )
    .await
    .unwrap();
    let client_spec = serde_json::json!({
        "secret_access_key": CLIENT_SECRET, "integrations": ["od-a"],
    });
    db.execute(
        "INSERT INTO s3sp_clients (access_key_id, spec) VALUES ('ODCLIENT1', $1::text::jsonb)",
        &[&client_spec.to_string()],
    )
    .await
    .unwrap();
    crate::support::register_secrets([&CLIENT_SECRET.to_string()]);

    let dir = TempDir::new("sources-on-demand");
    let config = format!(
        "[server]\nlisten = \"LISTEN\"\nadmin_listen = \"ADMIN\"\n\n[source]\n\
         postgres_url_env = \"{URL_VAR}\"\npreload = false\ncache_entries = 1000\nabsent_for = \"2s\"\n"
    );
    let url = postgres.url();
    let proxy = ProxyProcess::spawn(&dir.0, &config, &[(URL_VAR, &url)]).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&proxy.admin_url("/readyz")).await.status != 200 {
        assert!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing was read at start.
    let held = "s3sp_source_fetched_entries{kind=\"integration\"}";
    assert_eq!(series(&proxy, held).await, 0.0);
    assert_eq!(series(&proxy, "s3sp_source_lookups_total").await, 0.0);

    // The first request fetches od-a; the next ones use what was fetched.
    assert_eq!(
        served(&proxy, "od-a", "photo").await.as_deref(),
        Some("pg-one")
    );
    assert_eq!(
        served(&proxy, "od-a", "photo").await.as_deref(),
        Some("pg-one")
    );
    assert_eq!(series(&proxy, "s3sp_source_lookups_total").await, 1.0);
    assert_eq!(series(&proxy, held).await, 1.0);
    // A client fetched on demand: its key verifies, another secret does not, an unknown key is
    // unknown.
    let answer = signed_get(&proxy, "ODCLIENT1", CLIENT_SECRET).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let answer = signed_get(&proxy, "ODCLIENT1", "not-the-secret").await;
    assert_eq!(answer.error_code(), "SignatureDoesNotMatch");
    let answer = signed_get(&proxy, "ODNOBODY", "whatever").await;
    assert_eq!(answer.error_code(), "InvalidAccessKeyId");

    // A flood: 20 unknown names, 10 concurrent requests each. Each is refused as unknown, and
    // the database is asked once per name.
    let before = series(&proxy, "s3sp_source_lookups_total").await;
    let mut flood = tokio::task::JoinSet::new();
    for name in 0..20 {
        for _ in 0..10 {
            let url = proxy.url(&format!("/flood-{name}/photo"));
            flood.spawn(async move { get(&url).await.error_code() });
        }
    }
    let mut refused = 0;
    while let Some(code) = flood.join_next().await {
        assert_eq!(code.unwrap(), "NoSuchBucket");
        refused += 1;
    }
    assert_eq!(refused, 200);
    assert_eq!(
        series(&proxy, "s3sp_source_lookups_total").await - before,
        20.0
    );
    assert_eq!(
        series(&proxy, "s3sp_source_lookups_absent_total").await,
        21.0
    );
    let log = postgres.log_path();
    for name in 0..20 {
        assert_eq!(asked_for(&log, &format!("flood-{name}")), 1, "flood-{name}");
    }

    // An absence is remembered for absent_for (2 s here), then the database is asked again.
    let asked = asked_for(&log, "flood-7");
    let started = Instant::now();
    while asked_for(&log, "flood-7") == asked {
        assert_eq!(served(&proxy, "flood-7", "photo").await, None);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never asked again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(asked_for(&log, "flood-7"), asked + 1);

    // A row inserted for a name remembered as absent is served within a second: the
    // notification drops the remembered absence.
    db.execute(
        "INSERT INTO s3sp_integrations (name, spec) VALUES ('flood-3', $1::text::jsonb)",
        &[&integration_spec("sources/pg/p2/").to_string()],
    )
    .await
    .unwrap();
    let mut times = vec![until_served(&proxy, "flood-3", "photo", Some("pg-two")).await];
    // A changed row replaces what was fetched; a bad one is refused and the previous version
    // stays; a deleted one is gone.
    db.execute(
        "UPDATE s3sp_integrations SET spec = $1::text::jsonb WHERE name = 'od-a'",
        &[&integration_spec("sources/pg/p3/").to_string()],
    )
    .await
    .unwrap();
    times.push(until_served(&proxy, "od-a", "photo", Some("pg-three")).await);
    let refused_before = series(&proxy, "s3sp_source_parts_refused_total").await;
    db.execute(
        "UPDATE s3sp_integrations SET spec = '{\"bucket\": \"Not A Bucket\"}' WHERE name = 'od-a'",
        &[],
    )
    .await
    .unwrap();
    crate::support::wait_for_metric(
        &proxy.admin_url("/metrics"),
        "s3sp_source_parts_refused_total",
        refused_before + 1.0,
    )
    .await;
    assert_eq!(
        served(&proxy, "od-a", "photo").await.as_deref(),
        Some("pg-three")
    );
    db.execute(
        "DELETE FROM s3sp_clients WHERE access_key_id = 'ODCLIENT1'",
        &[],
    )
    .await
    .unwrap();
    let started = Instant::now();
    while signed_get(&proxy, "ODCLIENT1", CLIENT_SECRET).await.status == 200 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the client stays"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    times.push(started.elapsed());
    db.execute("DELETE FROM s3sp_integrations WHERE name = 'od-a'", &[])
        .await
        .unwrap();
    times.push(until_served(&proxy, "od-a", "photo", None).await);
    eprintln!("on demand: changes served after {times:?}");
    for time in &times {
        assert!(*time < Duration::from_secs(1), "{times:?}");
    }

    // The database goes away: what was fetched keeps serving; a name never fetched is a 503
    // (not remembered as absent), and is served once the database is back.
    db.execute(
        "INSERT INTO s3sp_integrations (name, spec) VALUES ('od-late', $1::text::jsonb)",
        &[&integration_spec("sources/pg/p1/").to_string()],
    )
    .await
    .unwrap();
    postgres.pause();
    crate::support::wait_for_metric(
        &proxy.admin_url("/metrics"),
        "s3sp_source_database_failures_total",
        1.0,
    )
    .await;
    assert_eq!(
        served(&proxy, "flood-3", "photo").await.as_deref(),
        Some("pg-two")
    );
    let unavailable = get(&proxy.url("/od-late/photo")).await;
    assert_eq!(unavailable.status, 503, "{}", unavailable.text());
    assert_eq!(unavailable.error_code(), "ServiceUnavailable");
    postgres.resume();
    until_served(&proxy, "od-late", "photo", Some("pg-one")).await;
}
