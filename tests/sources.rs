//! Live sources (`[source]`): integrations and clients added, changed and removed while the
//! proxy serves, from a directory of files and from PostgreSQL, each change seen by the next
//! request within a second, a bad part refused whole with the previous version in force.
//! The integrations are public readers of SeaweedFS, so an anonymous GET says whether an
//! integration is in force and which prefix it has.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{Postgres, ProxyProcess, TempDir, free_address, get, metric, seaweedfs};

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
fn integration_spec(prefix: &str) -> serde_json::Value {
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

async fn spawn(dir: &Path, source: &str) -> ProxyProcess {
    let config =
        format!("[server]\nlisten = \"LISTEN\"\nadmin_listen = \"ADMIN\"\n\n[source]\n{source}\n");
    let secret = seaweedfs().keys.secret_access_key.clone();
    ProxyProcess::spawn(dir, &config, &[(SECRET_VAR, &secret)]).await
}

/// What `/{name}/{key}` answers now: its body, `None` for NoSuchBucket, or the status and
/// text of anything else.
async fn served(proxy: &ProxyProcess, name: &str, key: &str) -> Option<String> {
    let got = get(&proxy.url(&format!("/{name}/{key}"))).await;
    match got.status.as_u16() {
        200 => Some(got.text()),
        404 if got.error_code() == "NoSuchBucket" => None,
        _ => Some(format!("{} {}", got.status, got.text())),
    }
}

/// Polls `/{name}/{key}` until its answer is `want` (a body, or `None` for NoSuchBucket);
/// how long that took. Fails after 5 s.
async fn until_served(proxy: &ProxyProcess, name: &str, key: &str, want: Option<&str>) -> Duration {
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
