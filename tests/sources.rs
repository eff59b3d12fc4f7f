//! Live sources (`[source]`): integrations and clients added, changed and removed while the
//! proxy serves, from a directory of files and from PostgreSQL, each change seen by the next
//! request within a second, a bad part refused whole with the previous version in force.
//! The integrations are public readers of SeaweedFS, so an anonymous GET says whether an
//! integration is in force and which prefix it has.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{Postgres, ProxyProcess, TempDir, get, metric, seaweedfs};

const SECRET_VAR: &str = "SOURCES_STORE_SECRET";

/// One public `[[integration]]` over SeaweedFS's bucket under `prefix`.
fn integration_toml(name: &str, prefix: &str) -> String {
    let store = seaweedfs();
    format!(
        r#"
[[integration]]
name = "{name}"
bucket = "{bucket}"
prefix = "{prefix}"
region = "us-east-1"
endpoint = "{endpoint}"
public = true
[integration.credentials]
access_key_id = "{key}"
secret_access_key_env = "{SECRET_VAR}"
"#,
        bucket = store.bucket,
        endpoint = store.endpoint(),
        key = store.keys.access_key_id,
    )
}

/// The same integration as a database row's `spec` (no name; the secret inline).
pub(crate) fn integration_spec(prefix: &str) -> serde_json::Value {
    let store = seaweedfs();
    serde_json::json!({
        "bucket": store.bucket, "prefix": prefix, "region": "us-east-1",
        "endpoint": store.endpoint(), "public": true,
        "credentials": {
            "access_key_id": store.keys.access_key_id,
            "secret_access_key": store.keys.secret_access_key,
        },
    })
}

pub(crate) async fn spawn(dir: &Path, source: &str) -> ProxyProcess {
    let config =
        format!("[server]\nlisten = \"LISTEN\"\nadmin_listen = \"ADMIN\"\n\n[source]\n{source}\n");
    let secret = seaweedfs().keys.secret_access_key.clone();
    ProxyProcess::spawn(dir, &config, &[(SECRET_VAR, &secret)]).await
}

/// What `/{name}/{key}` answers now: its body, `None` for NoSuchBucket, or the status and
/// text of anything else.
pub(crate) async fn served(proxy: &ProxyProcess, name: &str, key: &str) -> Option<String> {
    let got = get(&proxy.url(&format!("/{name}/{key}"))).await;
    match got.status.as_u16() {
        200 => Some(got.text()),
        404 if got.error_code() == "NoSuchBucket" => None,
        _ => Some(format!("{} {}", got.status, got.text())),
    }
}

/// Polls `/{name}/{key}` until its answer is `want` (a body, or `None` for NoSuchBucket);
/// how long that took. Fails after 5 s.
pub(crate) async fn until_served(
    proxy: &ProxyProcess,
    name: &str,
    key: &str,
    want: Option<&str>,
) -> Duration {
    let started = Instant::now();
    loop {
        let seen = served(proxy, name, key).await;
        if seen.as_deref() == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "/{name}/{key}: still {seen:?}, want {want:?}\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes a file as config management does: a staged file renamed over the old one.
fn write_atomically(path: &Path, text: &str) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, text).expect("staged");
    std::fs::rename(&staged, path).expect("renamed");
}

#[tokio::test]
async fn sources_directory_files_are_applied_one_by_one_within_a_second() {
    let store = seaweedfs();
    store.put("sources/dir/a/photo", "a-one").await;
    store.put("sources/dir/a2/photo", "a-two").await;
    store.put("sources/dir/b/photo", "b-one").await;
    store.put("sources/dir/k8s1/photo", "k8s-one").await;
    store.put("sources/dir/k8s2/photo", "k8s-two").await;
    let dir = TempDir::new("sources-dir");
    let files = dir.0.join("integrations.d");
    std::fs::create_dir_all(&files).expect("dir");
    std::fs::write(
        files.join("a.toml"),
        integration_toml("dir-a", "sources/dir/a/"),
    )
    .expect("a");
    let proxy = spawn(&dir.0, "directory = \"integrations.d\"").await;
    // Loaded before the proxy listened.
    assert_eq!(
        served(&proxy, "dir-a", "photo").await.as_deref(),
        Some("a-one")
    );
    let mut times = Vec::new();

    // A new file (an atomic rename into place).
    write_atomically(
        &files.join("b.toml"),
        &integration_toml("dir-b", "sources/dir/b/"),
    );
    times.push(until_served(&proxy, "dir-b", "photo", Some("b-one")).await);
    // An edit in place: dir-a's prefix moves.
    std::fs::write(
        files.join("a.toml"),
        integration_toml("dir-a", "sources/dir/a2/"),
    )
    .expect("edit");
    times.push(until_served(&proxy, "dir-a", "photo", Some("a-two")).await);

    // A file that fails validation is refused whole; what it held stays as it was.
    let metrics = proxy.admin_url("/metrics");
    let bad = format!(
        "{}\nunknown_setting = 1\n",
        integration_toml("dir-a", "sources/dir/a/")
    );
    std::fs::write(files.join("a.toml"), bad).expect("bad edit");
    crate::support::wait_for_metric(&metrics, "s3sp_source_parts_refused_total", 1.0).await;
    assert_eq!(
        served(&proxy, "dir-a", "photo").await.as_deref(),
        Some("a-two")
    );
    // A name another file defines is refused in the later file.
    std::fs::write(
        files.join("c.toml"),
        integration_toml("dir-b", "sources/dir/a/"),
    )
    .expect("dup");
    let text =
        crate::support::wait_for_metric(&metrics, "s3sp_source_parts_refused_total", 2.0).await;
    crate::support::eventually("the refusal logged", || {
        proxy
            .log()
            .contains("is already defined by directory:b.toml")
            .then_some(())
    })
    .await;
    assert_eq!(
        served(&proxy, "dir-b", "photo").await.as_deref(),
        Some("b-one")
    );
    assert!(
        metric(&text, "s3sp_source_parts_applied_total").is_some_and(|n| n >= 3.0),
        "{text}"
    );

    // A rename keeps the integration; a delete ends it.
    std::fs::rename(files.join("b.toml"), files.join("b-renamed.toml")).expect("rename");
    std::fs::remove_file(files.join("c.toml")).expect("rm c");
    crate::support::wait_for_metric(&metrics, "s3sp_source_parts_applied_total", 4.0).await;
    assert_eq!(
        served(&proxy, "dir-b", "photo").await.as_deref(),
        Some("b-one")
    );
    std::fs::remove_file(files.join("a.toml")).expect("rm a");
    times.push(until_served(&proxy, "dir-a", "photo", None).await);

    // A Kubernetes ConfigMap: files are links through `..data`, swapped by one rename.
    let version = |n: u32, prefix: &str| {
        let folder = files.join(format!("..v{n}"));
        std::fs::create_dir_all(&folder).expect("version dir");
        std::fs::write(folder.join("k8s.toml"), integration_toml("dir-k8s", prefix)).expect("k8s");
    };
    version(1, "sources/dir/k8s1/");
    std::os::unix::fs::symlink("..v1", files.join("..data")).expect("data link");
    std::os::unix::fs::symlink("..data/k8s.toml", files.join("k8s.toml")).expect("file link");
    times.push(until_served(&proxy, "dir-k8s", "photo", Some("k8s-one")).await);
    version(2, "sources/dir/k8s2/");
    std::os::unix::fs::symlink("..v2", files.join("..data_tmp")).expect("tmp link");
    std::fs::rename(files.join("..data_tmp"), files.join("..data")).expect("swap");
    times.push(until_served(&proxy, "dir-k8s", "photo", Some("k8s-two")).await);

    eprintln!("directory source: changes served after {times:?}");
    for time in &times {
        assert!(*time < Duration::from_secs(1), "{times:?}");
    }
}

/// Waits until `proxy` has failed to reach its database, and checks that it says so.
async fn database_down(proxy: &ProxyProcess) {
    let text = crate::support::wait_for_metric(
        &proxy.admin_url("/metrics"),
        "s3sp_source_database_failures_total",
        1.0,
    )
    .await;
    assert_eq!(
        metric(&text, "s3sp_source_database_up"),
        Some(0.0),
        "{text}"
    );
}

/// Inserts, updates or deletes a row and waits until both replicas serve the change; the slower
/// replica's time.
async fn on_both(replicas: &[&ProxyProcess], name: &str, want: Option<&str>) -> Duration {
    let mut slowest = Duration::ZERO;
    for replica in replicas {
        slowest = slowest.max(until_served(replica, name, "photo", want).await);
    }
    slowest
}

#[tokio::test]
async fn sources_postgres_rows_reach_every_replica_within_a_second_and_survive_the_database_going_away()
 {
    let store = seaweedfs();
    for (folder, body) in [("p1", "pg-one"), ("p2", "pg-two"), ("p3", "pg-three")] {
        store.put(&format!("sources/pg/{folder}/photo"), body).await;
    }
    let postgres = Postgres::start();
    let db = postgres.with_schema().await;
    // Idempotent: the same schema again changes nothing and fails nothing.
    db.batch_execute(&crate::support::postgres_schema())
        .await
        .expect("schema again");
    db.execute(
        "INSERT INTO s3sp_integrations (name, spec) VALUES ('pg-a', $1::text::jsonb)",
        &[&integration_spec("sources/pg/p1/").to_string()],
    )
    .await
    .unwrap();

    let url_var = "PLATFORM_DATABASE_URL";
    let dirs = [TempDir::new("sources-pg-1"), TempDir::new("sources-pg-2")];
    let config = format!(
        "[server]\nlisten = \"LISTEN\"\nadmin_listen = \"ADMIN\"\n\n[source]\npostgres_url_env = \"{url_var}\"\n"
    );
    let url = postgres.url();
    let mut replicas = Vec::new();
    for dir in &dirs {
        replicas.push(ProxyProcess::spawn(&dir.0, &config, &[(url_var, &url)]).await);
    }
    let both: Vec<&ProxyProcess> = replicas.iter().collect();
    let mut times = Vec::new();
    // The first load: readiness waits for it.
    times.push(on_both(&both, "pg-a", Some("pg-one")).await);
    for replica in &both {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ready = get(&replica.admin_url("/readyz")).await;
            if ready.status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "{}", ready.text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Insert, update (the prefix), delete: each on both replicas within a second.
    db.execute(
        "INSERT INTO s3sp_integrations (name, spec) VALUES ('pg-b', $1::text::jsonb)",
        &[&integration_spec("sources/pg/p2/").to_string()],
    )
    .await
    .unwrap();
    times.push(on_both(&both, "pg-b", Some("pg-two")).await);
    db.execute(
        "UPDATE s3sp_integrations SET spec = $1::text::jsonb WHERE name = 'pg-a'",
        &[&integration_spec("sources/pg/p3/").to_string()],
    )
    .await
    .unwrap();
    times.push(on_both(&both, "pg-a", Some("pg-three")).await);
    // The admin listener says where pg-a comes from and which version of it is in force.
    let updated: String = db
        .query_one(
            "SELECT updated_at::text FROM s3sp_integrations WHERE name = 'pg-a'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let shown = get(&both[0].admin_url("/integrations/pg-a")).await;
    assert_eq!(shown.status, 200, "{}", shown.text());
    let shown: serde_json::Value = serde_json::from_str(&shown.text()).unwrap();
    assert_eq!(shown["source"], "postgres:integration:pg-a", "{shown:#}");
    assert_eq!(shown["version"], updated.as_str(), "{shown:#}");
    assert_eq!(shown["credentials"], "ok: static keys", "{shown:#}");
    assert_eq!(
        get(&both[0].admin_url("/integrations/pg-nothing"))
            .await
            .status,
        404
    );
    db.execute("DELETE FROM s3sp_integrations WHERE name = 'pg-b'", &[])
        .await
        .unwrap();
    times.push(on_both(&both, "pg-b", None).await);

    // A bad row is refused whole; the previous version of it stays.
    db.execute(
        "UPDATE s3sp_integrations SET spec = '{\"bucket\": \"Not A Bucket\", \"region\": \"us-east-1\"}' WHERE name = 'pg-a'",
        &[],
    )
    .await
    .unwrap();
    for replica in &both {
        crate::support::wait_for_metric(
            &replica.admin_url("/metrics"),
            "s3sp_source_parts_refused_total",
            1.0,
        )
        .await;
        assert_eq!(
            served(replica, "pg-a", "photo").await.as_deref(),
            Some("pg-three")
        );
    }
    // A client row: its inline secret is accepted from the database, never logged.
    db.execute(
        "INSERT INTO s3sp_clients (access_key_id, spec) VALUES ('PGCLIENT1', '{\"secret_access_key\": \"pg-client-secret-5e1f\", \"integrations\": [\"pg-a\"]}')",
        &[],
    )
    .await
    .unwrap();
    crate::support::register_secrets([&"pg-client-secret-5e1f".to_string()]);
    for replica in &both {
        // pg-a, pg-b, pg-a's update and the client.
        crate::support::wait_for_metric(
            &replica.admin_url("/metrics"),
            "s3sp_source_parts_applied_total",
            4.0,
        )
        .await;
        // The proxy knows the key now: signed with it the request passes, signed with another
        // secret it is refused as a bad signature (an unknown key would be InvalidAccessKeyId).
        for (secret, status, code) in [
            ("pg-client-secret-5e1f", 200, ""),
            ("not-the-secret", 403, "SignatureDoesNotMatch"),
        ] {
            let mut request = http::Request::builder()
                .uri(replica.url("/pg-a/photo"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            crate::support::sign_as_client(&mut request, "PGCLIENT1", secret);
            let answer = crate::support::send(request).await;
            assert_eq!(answer.status, status, "{}", answer.text());
            if status != 200 {
                assert_eq!(answer.error_code(), code);
            }
        }
    }

    // The database goes away: both replicas keep serving what they have, and say so.
    postgres.pause();
    for replica in &both {
        database_down(replica).await;
        assert_eq!(
            served(replica, "pg-a", "photo").await.as_deref(),
            Some("pg-three")
        );
        let ready = get(&replica.admin_url("/readyz")).await;
        assert_eq!(ready.status, 200, "readiness stays up: {}", ready.text());
    }
    // It comes back with a change made while the proxies were away: the resync on reconnect
    // finds it (no notification reached them).
    postgres.resume();
    let db = postgres.client().await;
    db.execute(
        "INSERT INTO s3sp_integrations (name, spec) VALUES ('pg-c', $1::text::jsonb)",
        &[&integration_spec("sources/pg/p2/").to_string()],
    )
    .await
    .unwrap();
    for replica in &both {
        until_served(replica, "pg-c", "photo", Some("pg-two")).await;
    }
    eprintln!("database source: changes served on both replicas after {times:?}");
    for time in &times[1..] {
        assert!(*time < Duration::from_secs(1), "{times:?}");
    }
}

/// The docs' SQL example is what a platform would insert: its rows pass the proxy's validation.
#[test]
fn sources_readme_rows_are_valid() {
    use s3_signing_proxy::config::{Bindings, Fragment};
    let readme = crate::support::user_docs();
    let (_, after) = readme
        .split_once("INSERT INTO s3sp_integrations")
        .expect("the docs' SQL example");
    let (example, _) = after.split_once("```").expect("the end of the example");
    // Each statement: `VALUES ('key', '{…}')`.
    let rows: Vec<(String, String)> = example
        .split("VALUES (")
        .skip(1)
        .map(|values| {
            let (key, rest) = values.split_once(',').unwrap();
            let (spec, _) = rest
                .trim()
                .trim_start_matches('\'')
                .split_once("}'")
                .unwrap();
            (
                key.trim().trim_matches('\'').to_string(),
                format!("{spec}}}"),
            )
        })
        .collect();
    assert_eq!(rows.len(), 2, "{example}");
    let secrets = std::collections::BTreeMap::new();
    let integration = Fragment::integration_row(&rows[0].0, &rows[0].1, "README", &secrets)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(integration.integrations[0].name, "acme-media");
    assert_eq!(integration.integrations[0].prefix, "tenant-42/");
    let bindings = Bindings::new(&integration.integrations, true);
    let client = Fragment::client_row(&rows[1].0, &rows[1].1, "README", &bindings, &secrets)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(client.clients[0].access_key_id, "AKACMETOOLS");
    // The Check connection example's candidate is a valid integration too.
    let (_, curl) = readme
        .split_once("/integrations/check?write=true&name=acme-media' -d '")
        .expect("the docs' check example");
    let (candidate, _) = curl.split_once("}}'").unwrap();
    let candidate = format!("{candidate}}}}}");
    let checked = Fragment::integration_row("acme-media", &candidate, "README", &secrets)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(checked.integrations[0].prefix, "tenant-42/");
    // The same client written in a file, secret inline, is refused: only the database may.
    let in_a_file = "[[client]]\naccess_key_id = \"AKACMETOOLS\"\nsecret_access_key = \"x\"\nintegrations = [\"acme-media\"]\n";
    let refused = Fragment::from_toml(in_a_file, "f.toml", &integration.integrations, &secrets)
        .expect_err("inline secret in a file");
    assert!(
        refused.to_string().contains("never written inline"),
        "{refused}"
    );
}

/// POSTs `spec` to the admin listener's Check connection endpoint with `query`; the report.
async fn check_candidate(
    proxy: &ProxyProcess,
    query: &str,
    spec: &serde_json::Value,
    token: &str,
) -> (u16, serde_json::Value) {
    let request = http::Request::post(proxy.admin_url(&format!("/integrations/check{query}")))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(
            spec.to_string(),
        )))
        .unwrap();
    let answer = crate::support::send(request).await;
    let report = serde_json::from_str(&answer.text()).unwrap_or(serde_json::Value::Null);
    (answer.status.as_u16(), report)
}

/// The result and hint of one step of a check report.
fn step(report: &serde_json::Value, name: &str) -> (String, Option<String>) {
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["step"] == name)
        .unwrap_or_else(|| panic!("no {name} step in {report:#}"));
    (
        check["result"].as_str().unwrap().to_string(),
        check["hint"].as_str().map(str::to_string),
    )
}

/// The integration page's Check connection button, as the platform calls it: a candidate that
/// works passes every step, one with the wrong ExternalId is told to fix its trust policy,
/// one whose role may not write is told which permission it lacks, and one that would read the
/// proxy's own environment is refused before anything is called. Nothing is saved: the
/// candidate is not served afterwards.
#[tokio::test]
async fn sources_check_connection_api_runs_the_check_on_a_candidate() {
    let moto = crate::support::moto();
    let endpoint = moto.endpoint();
    let token = "check-api-token-41c7a9";
    crate::support::register_secrets([&token.to_string()]);
    let config = format!(
        "[server]\nlisten = \"LISTEN\"\nadmin_listen = \"ADMIN\"\nadmin_token_env = \"CHECK_TOKEN\"\n{}",
        crate::support::sts_section(moto, &endpoint, "")
    );
    let dir = TempDir::new("sources-check-api");
    let mut env = crate::support::moto_env(moto);
    env.push(("CHECK_TOKEN", token.to_string()));
    let proxy = ProxyProcess::spawn(&dir.0, &config, &crate::support::env_refs(&env)).await;
    let candidate = |tenant: &crate::support::Tenant, external_id: &str| {
        serde_json::json!({
            "bucket": tenant.bucket,
            "region": "us-east-1",
            "endpoint": endpoint,
            "addressing": "path",
            "access": "read-write",
            "credentials": {"role_arn": tenant.role_arn, "external_id": external_id},
        })
    };

    let writer = candidate(&moto.tenant_w, &moto.tenant_w.external_id);
    let (status, report) =
        check_candidate(&proxy, "?write=true&name=new-one", &writer, token).await;
    assert_eq!(status, 200, "{report:#}");
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["failed"], 0, "{report:#}");
    for name in ["credentials", "head-bucket", "list", "put", "delete"] {
        assert_eq!(step(&report, name), ("ok".to_string(), None), "{report:#}");
    }
    assert!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["integration"] == "new-one"),
        "{report:#}"
    );
    // Without ?write the writes are skipped.
    let (_, report) = check_candidate(&proxy, "", &writer, token).await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(
        !report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["step"] == "put"),
        "{report:#}"
    );

    let wrong_id = candidate(&moto.tenant_a, "ext-wrong");
    let (_, report) = check_candidate(&proxy, "", &wrong_id, token).await;
    assert_eq!(report["ok"], false, "{report:#}");
    assert_eq!(
        step(&report, "credentials"),
        ("failed".to_string(), Some("trust-policy".to_string()))
    );
    let reader = candidate(&moto.tenant_a, &moto.tenant_a.external_id);
    let (_, report) = check_candidate(&proxy, "?write=true", &reader, token).await;
    assert_eq!(
        step(&report, "put"),
        ("failed".to_string(), Some("put-permission".to_string()))
    );

    // A candidate naming a variable reads nothing of the proxy's: refused as a spec problem.
    let mut reads_env = writer.clone();
    reads_env["credentials"] = serde_json::json!({
        "access_key_id": moto.proxy_user.access_key_id,
        "secret_access_key_env": "PROXY_USER_SECRET",
    });
    let (status, report) = check_candidate(&proxy, "", &reads_env, token).await;
    assert_eq!(status, 200);
    assert_eq!(report["failed"], 1, "{report:#}");
    assert_eq!(
        step(&report, "spec"),
        ("failed".to_string(), Some("spec".to_string()))
    );
    let (_, report) = check_candidate(&proxy, "", &serde_json::json!({"bucket": "x"}), token).await;
    assert_eq!(step(&report, "spec").0, "failed", "{report:#}");

    // The admin token is required; a document that is not JSON is a 400.
    let (status, _) = check_candidate(&proxy, "", &writer, "not-the-token").await;
    assert_eq!(status, 401);
    let not_json = http::Request::post(proxy.admin_url("/integrations/check"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"{bucket",
        )))
        .unwrap();
    assert_eq!(crate::support::send(not_json).await.status, 400);
    // The candidate was checked, not saved.
    assert_eq!(get(&proxy.url("/new-one/anything")).await.status, 404);
    let shown = crate::support::request(
        http::Method::GET,
        &proxy.admin_url("/integrations/new-one"),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(shown.status, 404);
}

/// The platform's database over TLS (`sslmode=require`, as Amazon RDS requires by default):
/// with the database's CA in `postgres_ca_file` the proxy connects over TLS (the server's own
/// `pg_stat_ssl` says so) and serves the rows; without it, the certificate is refused and
/// nothing is loaded.
#[tokio::test]
async fn sources_postgres_over_tls_verifies_the_servers_certificate() {
    let store = seaweedfs();
    store.put("sources/pg/tls/photo", "over-tls").await;
    let postgres = Postgres::start();
    let (cert, key, ca_pem, _) = crate::support::certificate_authority();
    postgres.install_certificate(&cert, &key);
    let db = postgres.client().await;
    db.batch_execute("ALTER SYSTEM SET ssl = 'on'")
        .await
        .unwrap();
    db.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    db.batch_execute(&crate::support::postgres_schema())
        .await
        .unwrap();
    db.execute(
        "INSERT INTO s3sp_integrations (name, spec) VALUES ('pg-tls', $1::text::jsonb)",
        &[&integration_spec("sources/pg/tls/").to_string()],
    )
    .await
    .unwrap();

    let dir = TempDir::new("sources-pg-tls");
    let ca_file = dir.0.join("database-ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let url = format!("{}?sslmode=require", postgres.url());
    let config = |ca: &str| {
        format!(
            "[server]\nlisten = \"LISTEN\"\nadmin_listen = \"ADMIN\"\n\n[source]\n\
             postgres_url_env = \"TLS_DATABASE_URL\"\n{ca}"
        )
    };
    let trusted = ProxyProcess::spawn(
        &dir.0,
        &config(&format!("postgres_ca_file = \"{}\"\n", ca_file.display())),
        &[("TLS_DATABASE_URL", &url)],
    )
    .await;
    until_served(&trusted, "pg-tls", "photo", Some("over-tls")).await;
    let encrypted: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE ssl AND backend_type = 'client backend'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted >= 1, "the proxy's connection is not encrypted");

    let other = TempDir::new("sources-pg-tls-untrusted");
    let untrusting =
        ProxyProcess::spawn(&other.0, &config(""), &[("TLS_DATABASE_URL", &url)]).await;
    database_down(&untrusting).await;
    assert_eq!(served(&untrusting, "pg-tls", "photo").await, None);
    assert_eq!(get(&untrusting.admin_url("/readyz")).await.status, 503);
    // The log says why (the line follows the metric by moments).
    crate::support::eventually("the log names the certificate problem", || {
        untrusting.log().contains("UnknownIssuer").then_some(())
    })
    .await;
}

/// An assumed-role integration over moto as a row's `spec`: tenant B's bucket, reached with
/// `role_arn` and `external_id`.
fn role_spec(role_arn: &str, external_id: &str) -> String {
    let moto = crate::support::moto();
    serde_json::json!({
        "bucket": moto.tenant_b.bucket, "region": "us-east-1", "endpoint": moto.endpoint(),
        "addressing": "path", "public": true,
        "credentials": {"role_arn": role_arn, "external_id": external_id},
    })
    .to_string()
}

/// A changed role or ExternalId is used by the next request: the credentials cache is keyed
/// by the whole identity, so the old role's credentials never serve the new one. Moto enforces
/// IAM: tenant A's role may not read tenant B's bucket, tenant B's may.
#[tokio::test]
async fn sources_postgres_changed_role_and_external_id_are_used_by_the_next_request() {
    let moto = crate::support::moto();
    let postgres = Postgres::start();
    let db = postgres.with_schema().await;
    let (a, b) = (&moto.tenant_a, &moto.tenant_b);
    db.execute(
        "INSERT INTO s3sp_integrations (name, spec) VALUES ('pg-role', $1::text::jsonb)",
        &[&role_spec(&a.role_arn, &a.external_id)],
    )
    .await
    .unwrap();
    let url_var = "PLATFORM_DATABASE_URL";
    let dir = TempDir::new("sources-pg-role");
    let config = format!(
        "[server]\nlisten = \"LISTEN\"\nadmin_listen = \"ADMIN\"\n{}\n[source]\npostgres_url_env = \"{url_var}\"\n",
        crate::support::sts_section(moto, &moto.endpoint(), "")
    );
    let mut env = crate::support::moto_env(moto);
    env.push((url_var, postgres.url()));
    let proxy = ProxyProcess::spawn(&dir.0, &config, &crate::support::env_refs(&env)).await;
    let owner = || async { served(&proxy, "pg-role", "owner.txt").await };
    // The first load: until then the name is unknown (NoSuchBucket).
    let started = Instant::now();
    let first = loop {
        match owner().await {
            Some(answer) => break answer,
            None => assert!(
                started.elapsed() < Duration::from_secs(5),
                "{}",
                proxy.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        first.starts_with("403 ") && first.contains("AccessDenied"),
        "tenant A's role must not read tenant B's bucket: {first}"
    );

    // Tenant B's role and ExternalId: the next request assumes it and reads.
    db.execute(
        "UPDATE s3sp_integrations SET spec = $1::text::jsonb, updated_at = now() WHERE name = 'pg-role'",
        &[&role_spec(&b.role_arn, &b.external_id)],
    )
    .await
    .unwrap();
    let took = until_served(&proxy, "pg-role", "owner.txt", Some("tenant b\n")).await;
    assert!(took < Duration::from_secs(1), "{took:?}");

    // The same role with an ExternalId its trust policy does not name: the credentials just
    // obtained for tenant B's identity are not used for it; STS refuses the new one.
    db.execute(
        "UPDATE s3sp_integrations SET spec = $1::text::jsonb, updated_at = now() WHERE name = 'pg-role'",
        &[&role_spec(&b.role_arn, "not-the-external-id")],
    )
    .await
    .unwrap();
    let started = Instant::now();
    let refused = loop {
        let answer = owner().await.unwrap_or_default();
        if answer != "tenant b\n" {
            break answer;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        refused.starts_with("503 ") && refused.contains("STS AssumeRole refused: AccessDenied"),
        "{refused}"
    );
    let shown = get(&proxy.admin_url("/integrations/pg-role")).await;
    let shown: serde_json::Value = serde_json::from_str(&shown.text()).unwrap();
    assert!(
        shown["credentials"].as_str().unwrap_or("").contains("fail"),
        "{shown:#}"
    );
}
