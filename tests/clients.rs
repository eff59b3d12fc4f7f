//! The compatibility matrix: real clients (`tests/clients/matrix.py`, installed by
//! `scripts/clients`) list, read, range, write, stream, upload in parts, presign, use an awkward
//! key and delete through the proxy, against SeaweedFS and against moto, each effect checked on
//! the store itself. Every cell must be `ok`, or `n/a` where the client has no such operation.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::BTreeMap;

use serde_json::json;

use crate::support::*;

const CLIENT: &str = "AKPROXYMATRIX";
const CLIENT_SECRET: &str = "matrix-client-secret-4d7a";

/// One proxy for both stores: `weed` (SeaweedFS, static keys) and `moto` (tenant W's role),
/// both read-write under the prefix `matrix`, path style and `{name}.localhost`.
async fn start() -> RunningProxy {
    let store = seaweedfs();
    let moto = moto();
    let weed = IntegrationFixture::new("weed", &store.bucket)
        .set("prefix", "matrix")
        .set("endpoint", store.endpoint())
        .set("access", "read-write")
        .static_keys(&store.keys.access_key_id, "STORE_SECRET");
    let client = ClientFixture::new(CLIENT, "CLIENT_SECRET", &["weed", "moto"], "read-write");
    let config = format!(
        "[server]\nbase_domain = \"localhost\"\n{}{}{}{}",
        sts_section(moto, &moto.endpoint(), ""),
        weed.toml(),
        ClientFixture::toml(&[client]),
        role_integration(
            "moto",
            &moto.tenant_w,
            &moto.endpoint(),
            "path",
            &moto.tenant_w.external_id,
            "public = false\naccess = \"read-write\"\nprefix = \"matrix\"",
        ),
    );
    let mut secrets = secrets(moto);
    secrets.insert(
        "STORE_SECRET".to_string(),
        store.keys.secret_access_key.clone(),
    );
    secrets.insert("CLIENT_SECRET".to_string(), CLIENT_SECRET.to_string());
    start_proxy(&config, &secrets).await
}

/// Runs the matrix for `bucket` with the store seen as `store`; returns client → op → outcome.
async fn matrix(
    proxy: &RunningProxy,
    bucket: &str,
    store: serde_json::Value,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let port = proxy.address.port();
    let args = json!({
        "proxy": format!("http://127.0.0.1:{port}"),
        "virtual_proxy": format!("http://localhost:{port}"),
        "key": CLIENT, "secret": CLIENT_SECRET, "bucket": bucket, "store": store,
        "aws": aws_cli(), "clients_dir": repo_root().join(".clients"),
        "big_mib": 64, "parallel": 3,
    });
    let output = tokio::process::Command::new(repo_root().join(".clients/venv/bin/python"))
        .arg(repo_root().join("tests/clients/matrix.py"))
        .arg(args.to_string())
        .output()
        .await
        .expect("run matrix.py (scripts/clients installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let parsed: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "matrix.py: {e}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let results: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_value(parsed["results"].clone()).expect("results");
    // Kept for README's table.
    let path = repo_root().join(format!("target/client-matrix-{bucket}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&results).unwrap()).expect("write");
    results
}

/// Every cell `ok` or `n/a`, but for the store's `known` faults (client, operation), which
/// fail straight to the store as well; counts the `ok`s, so a matrix that skipped everything
/// fails.
fn assert_all_pass(
    store: &str,
    results: &BTreeMap<String, BTreeMap<String, String>>,
    known: &[(&str, &str)],
) {
    let failures: Vec<String> = results
        .iter()
        .flat_map(|(client, ops)| {
            ops.iter()
                .filter(|(_, outcome)| !(outcome == &"ok" || outcome.starts_with("n/a")))
                .filter(move |(op, _)| !known.contains(&(client.as_str(), op.as_str())))
                .map(move |(op, outcome)| format!("{client} {op}: {outcome}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{store}: {} failing cells:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let ok = results
        .values()
        .flat_map(|ops| ops.values())
        .filter(|outcome| *outcome == "ok")
        .count();
    assert_eq!(results.len(), 12, "{store}: every client ran");
    assert!(ok >= 100, "{store}: only {ok} cells ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_works_against_seaweedfs() {
    let store = seaweedfs();
    let proxy = start().await;
    let results = matrix(
        &proxy,
        "weed",
        json!({"endpoint": store.endpoint(), "key": store.keys.access_key_id,
               "secret": store.keys.secret_access_key, "bucket": store.bucket,
               "prefix": "matrix/"}),
    )
    .await;
    assert_all_pass("seaweedfs", &results, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_works_against_moto() {
    let moto = moto();
    let proxy = start().await;
    let results = matrix(
        &proxy,
        "moto",
        json!({"endpoint": moto.endpoint(), "key": moto.proxy_user.access_key_id,
               "secret": moto.proxy_user.secret_access_key, "bucket": moto.tenant_w.bucket,
               "role_arn": moto.tenant_w.role_arn, "external_id": moto.tenant_w.external_id,
               "prefix": "matrix/"}),
    )
    .await;
    // After a streamed upload, rclone reads the object back with `HEAD ?versionId=null`
    // (moto reports the version `null`), which moto then refuses with 400 on its unversioned
    // bucket: straight to moto too, so it is moto's, not the proxy's (SeaweedFS passes).
    assert_all_pass("moto", &results, &[("rclone", "stream")]);
}
