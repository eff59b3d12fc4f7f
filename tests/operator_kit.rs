//! The operator's kit, proved with Prometheus' own tools (Debian's `prometheus` package,
//! installed by scripts/test): the alert and recording rules pass `promtool check rules` and
//! their unit tests (`promtool test rules`), a real `/metrics` answer from a proxy under
//! traffic passes `promtool check metrics` with its labels bounded by the config, and a real
//! Prometheus server scraping that proxy, with the rules loaded, answers every query of every
//! panel of the Grafana dashboard with data.
// This file fills in the dashboard's query variables as Grafana does. .clippy.toml's ban on
// editing text is for the proxy's own code.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{ProxyProcess, TempDir, get, moto, repo_root};

fn deploy(path: &str) -> std::path::PathBuf {
    repo_root().join("deploy").join(path)
}

/// The alert names of alerts.yml, with the group each is in.
fn alerts() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    let mut group = String::new();
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("- name: ") {
            group = name.to_string();
        }
        if let Some(alert) = line.strip_prefix("- alert: ") {
            found.push((group.clone(), alert.to_string()));
        }
    }
    found
}

#[test]
fn operator_kit_alert_rules_pass_promtool_and_their_unit_tests() {
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(deploy("prometheus/alerts.yml"))
        .output()
        .expect("promtool (scripts/test installs Debian's prometheus)");
    let said = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(
        check.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(said.contains("SUCCESS"), "{said}");

    let test = Command::new("promtool")
        .args(["test", "rules", "alerts_test.yml"])
        .current_dir(deploy("prometheus"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(test.status.success(), "{said}");
    assert!(said.contains("SUCCESS"), "{said}");

    // Every alert has a unit test in which it fires (exp_labels under its alertname), a summary
    // and a runbook; an integration's alert names the integration; the monitoring docs list it.
    let alerts = alerts();
    assert!(alerts.len() >= 12, "{alerts:?}");
    let tests = std::fs::read_to_string(deploy("prometheus/alerts_test.yml")).unwrap();
    let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    let readme = crate::support::user_docs();
    for (group, alert) in &alerts {
        let fires = tests.split("- eval_time:").any(|case| {
            case.contains(&format!("alertname: {alert}\n")) && case.contains("exp_labels")
        });
        assert!(fires, "{alert} is never tested firing");
        let (_, rule) = rules.split_once(&format!("- alert: {alert}\n")).unwrap();
        let rule = rule.split("- alert:").next().unwrap();
        assert!(
            rule.contains("summary:") && rule.contains("runbook:"),
            "{alert}"
        );
        if group == "s3sp-integrations" {
            assert!(rule.contains("{{ $labels.integration }}"), "{alert}");
        }
        assert!(
            readme.contains(alert.as_str()),
            "docs/operating.md's Monitoring section lacks {alert}"
        );
    }
}

/// Runs `query` on the Prometheus at `address` until it returns at least one series (30 s).
async fn query_until_data(address: &str, query: &str) -> serde_json::Value {
    let url = format!(
        "http://{address}/api/v1/query?query={}",
        percent_encoding::utf8_percent_encode(query, percent_encoding::NON_ALPHANUMERIC)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = get(&url).await;
        let document: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        // A query that does not parse is a 400 with `status: error`, at once.
        assert_ne!(document["status"], "error", "{query}: {}", answer.text());
        assert!(
            answer.status == 200 || Instant::now() < deadline,
            "{query}: {} {}",
            answer.status,
            answer.text()
        );
        let result = &document["data"]["result"];
        if result.as_array().is_some_and(|series| !series.is_empty()) {
            return result.clone();
        }
        assert!(Instant::now() < deadline, "{query}: no data in 30 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn operator_kit_metrics_pass_promtool_and_prometheus_answers_every_dashboard_query() {
    let moto = moto();
    let dir = TempDir::new("operator-kit");
    // acme keeps its objects in the object cache, so the cache's panel has data too.
    // A store nobody listens on: its requests fail, for the error panels.
    let broken = crate::support::IntegrationFixture::new("broken", "nowhere")
        .set("endpoint", "http://127.0.0.1:1")
        .set("public", true)
        .static_keys("AKIDNOWHERE", "PROXY_USER_SECRET");
    let config = format!(
        "[server]\nlisten = \"LISTEN\"\nadmin_listen = \"ADMIN\"\n[server.cache]\nmemory = \"16MiB\"\n{}{}{}",
        crate::support::sts_section(moto, &moto.endpoint(), ""),
        crate::support::role_integration(
            "acme",
            &moto.tenant_a,
            &moto.endpoint(),
            "path",
            &moto.tenant_a.external_id,
            "cache_ttl = \"60s\"",
        ),
        broken.toml(),
    );
    let env = crate::support::moto_env(moto);
    let proxy = ProxyProcess::spawn(&dir.0, &config, &crate::support::env_refs(&env)).await;
    // Traffic of every kind the dashboard draws: served (through AssumeRole), refused by the
    // store, failing upstream, and unknown names, which must not become labels.
    let urls = [
        proxy.url("/acme/owner.txt"),
        proxy.url("/acme/no-such-key"),
        proxy.url("/broken/x"),
    ];
    for url in &urls {
        get(url).await;
    }
    assert_eq!(get(&proxy.url("/acme/owner.txt")).await.status, 200);
    for n in 0..50 {
        get(&proxy.url(&format!("/made-up-{n}/key"))).await;
    }
    let text = get(&proxy.admin_url("/metrics")).await.text();

    // Prometheus' own lint: names, types, HELP, units.
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut lint.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let lint = lint.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    assert!(
        lint.status.success() && said.trim().is_empty(),
        "promtool check metrics:\n{said}"
    );
    // Every family is there, and the integration label takes only the config's names.
    for family in [
        "s3sp_requests_total",
        "s3sp_upstream_errors_total",
        "s3sp_requests_incomplete_total",
        "s3sp_credentials_expiry_seconds",
        "s3sp_credentials_failing",
        "s3sp_sts_throttled_total",
        "s3sp_max_connections",
        "s3sp_cache_hits_total",
    ] {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
    }
    let labels: BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.split_once("integration=\"")?.1.split_once('"'))
        .map(|(value, _)| value)
        .collect();
    assert_eq!(labels, BTreeSet::from(["-", "acme", "broken"]), "{text}");

    // A real Prometheus scraping the proxy every second, with the rules loaded.
    let port = crate::support::free_address().port();
    let address = format!("127.0.0.1:{port}");
    let prometheus_config = dir.0.join("prometheus.yml");
    std::fs::write(
        &prometheus_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: s3sp\n    static_configs:\n      - targets: ['{}']\n",
            deploy("prometheus/alerts.yml").display(),
            proxy.admin
        ),
    )
    .unwrap();
    let log = std::fs::File::create(
        crate::support::test_logs().join(format!("prometheus-{}.log", std::process::id())),
    )
    .unwrap();
    let mut server = Command::new("prometheus")
        .arg(format!("--config.file={}", prometheus_config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.0.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={address}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus (scripts/test installs Debian's prometheus)");
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(&address).await.is_err() {
        assert!(Instant::now() < deadline, "prometheus did not listen");
        assert!(server.try_wait().unwrap().is_none(), "prometheus stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Listening comes before ready (the TSDB opening): 503 until then.
    while get(&format!("http://{address}/-/ready")).await.status != 200 {
        assert!(Instant::now() < deadline, "prometheus was never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Traffic keeps coming while Prometheus scrapes.
    let background = {
        tokio::spawn(async move {
            loop {
                for url in &urls {
                    get(url).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/dashboard.json")).unwrap())
            .unwrap();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            // What Grafana sends for "All" integrations and its rate window.
            let query = expr
                .replace("$integration", ".*")
                .replace("$__rate_interval", "1m");
            let result = query_until_data(&address, &query).await;
            assert!(
                !result.as_array().unwrap().is_empty(),
                "{}: {query}",
                panel["title"]
            );
            queries += 1;
        }
    }
    background.abort();
    let _ = server.kill();
    let _ = server.wait();
    assert!(queries >= 15, "{queries} queries");
    eprintln!("operator kit: {queries} dashboard queries answered with data");
}
