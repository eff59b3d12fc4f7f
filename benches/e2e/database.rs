//! The database source with `preload = false`: 100,000 integrations and 20,000 clients in a
//! throwaway PostgreSQL (`BENCH_DB_INTEGRATIONS`, `BENCH_DB_CLIENTS`), none loaded at start.
//! Measured: RSS at start and after 10,000 distinct integrations were used, the latency of an
//! integration's first request (fetched from the database) against its next ones, and the
//! small-GET rate of a hot integration against the file-configured proxy in the same rounds.
//! Then the same tables with `preload = true`: the time to read them all, RSS, and how long a
//! changed row takes to be served (`UPDATE` to the first answer that shows it) with every
//! integration in the proxy's tables, against the same with a hundred of them.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[allow(dead_code)] // the tests use more of it than the bench does
#[path = "../../tests/support/postgres.rs"]
mod postgres;

use crate::load::{self, HttpClient};
use crate::processes::{self, Killed};
use crate::{Row, setting, small_run, small_urls};

/// Integrations used one after another to time first requests.
const COLD: usize = 1000;
/// Distinct integrations used before RSS is read again.
const USED: usize = 10_000;

/// Fills the tables with `integrations` public integrations over the bench's bucket (`tenant-0`,
/// `tenant-1`, …) and `clients` clients, one bound to each of the first integrations.
async fn fill(db: &tokio_postgres::Client, store: u16, integrations: usize, clients: usize) {
    let schema = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/postgres/schema.sql"),
    )
    .unwrap();
    db.batch_execute(&schema).await.unwrap();
    let endpoint = format!("http://127.0.0.1:{store}");
    db.execute(
        "INSERT INTO s3sp_integrations (name, spec)
         SELECT 'tenant-' || n, jsonb_build_object(
           'bucket', 'bench-bucket', 'region', 'us-east-1', 'endpoint', $1::text,
           'public', true, 'credentials', jsonb_build_object(
             'access_key_id', 'AKIDBENCH',
             'secret_access_key', 'bench-secret-not-checked-by-the-store'))
         FROM generate_series(0, $2::int - 1) AS n",
        &[&endpoint, &(integrations as i32)],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO s3sp_clients (access_key_id, spec)
         SELECT 'AKDB' || n, jsonb_build_object(
           'secret_access_key', 'bench-db-client-' || n,
           'integrations', jsonb_build_array('tenant-' || n))
         FROM generate_series(0, $1::int - 1) AS n",
        &[&(clients as i32)],
    )
    .await
    .unwrap();
}

/// Each URL fetched once, one after another: the latencies, sorted.
async fn timed(client: &HttpClient, urls: &[String]) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(urls.len());
    for url in urls {
        let sent = Instant::now();
        assert_eq!(load::download(client, url).await, 1024);
        latencies.push(sent.elapsed());
    }
    latencies.sort_unstable();
    latencies
}

fn percentile(sorted: &[Duration], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// `/metrics` of the proxy's admin listener.
async fn metrics(client: &HttpClient, admin: u16) -> String {
    let response = client
        .get(format!("http://127.0.0.1:{admin}/metrics").parse().unwrap())
        .await
        .unwrap();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// The rows of this part; `file_proxy` serves the bench's integration from its config file.
pub async fn run(bench: &crate::Bench, store: u16, file_proxy: &Killed) {
    let integrations = setting("BENCH_DB_INTEGRATIONS", 100_000);
    let clients = setting("BENCH_DB_CLIENTS", 20_000);
    let database =
        postgres::Postgres::start_in(bench.work.join("postgres"), bench.work.join("postgres.log"));
    let db = database.client().await;
    let filled = Instant::now();
    fill(&db, store, integrations, clients).await;
    let filled = filled.elapsed();
    let url_file = bench.work.join("database-url");
    std::fs::write(&url_file, database.url()).unwrap();
    let [port, admin] = [(); 2].map(|()| processes::free_port());
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
         [server.limits]\nrate_limit = 0\n\n[source]\npostgres_url_file = \"{}\"\n\
         preload = false\ncache_entries = {USED}\n",
        url_file.display()
    );
    let proxy = processes::start_proxy(&bench.work, "database", &config, load::CLIENT_SECRET);
    processes::wait_for(port).await;
    let client = load::http_client(bench.connections);
    while !metrics(&client, admin)
        .await
        .contains("s3sp_source_database_up 1")
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rss_start = processes::rss_mib(proxy.pid());
    let base = format!("http://127.0.0.1:{port}");
    let object = |n: usize| format!("{base}/tenant-{n}/small/{:05}.bin", n % bench.objects);

    // First requests of cold integrations, then the same requests again.
    let urls: Vec<String> = (1..=COLD).map(object).collect();
    let cold = timed(&client, &urls).await;
    let warm = timed(&client, &urls).await;
    // 10,000 distinct integrations used, 16 at a time.
    let rest: Arc<Vec<String>> = Arc::new((COLD + 1..=USED).map(object).collect());
    load::small_gets(&client, rest.clone(), rest.len(), 16).await;
    let rss_used = processes::rss_mib(proxy.pid());
    let text = metrics(&client, admin).await;
    let lookups = text
        .lines()
        .find_map(|line| line.strip_prefix("s3sp_source_lookups_total "))
        .unwrap_or("?")
        .to_string();

    // A hot integration's small GETs against the file-configured proxy's, interleaved.
    let hot = small_urls(&format!("{base}/tenant-0"), bench.objects);
    let file = small_urls(&bench.proxied, bench.objects);
    let (n, c) = (bench.requests, bench.connections);
    let mut rate = Row::new(
        "1 KiB GET of a hot integration, file config / database (preload = false)",
        "req/s",
    );
    let mut cpu = Row::new(
        "CPU per 1 KiB GET, file config / database (preload = false)",
        "µs",
    );
    for round in 0..bench.rounds {
        let runs = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for from_file in runs {
            let (urls, pid) = if from_file {
                (&file, file_proxy.pid())
            } else {
                (&hot, proxy.pid())
            };
            let (run, spent) = small_run(&client, urls, n, c, pid).await;
            let (rates, cpus) = if from_file {
                (&mut rate.baseline, &mut cpu.baseline)
            } else {
                (&mut rate.proxied, &mut cpu.proxied)
            };
            rates.push(run.per_second);
            cpus.push(spent);
        }
    }
    rate.print_paired();
    cpu.print();
    println!(
        "| first request of a cold integration (fetched from the database), p50 / p99 | {:.2} / {:.2} ms warm | {:.2} / {:.2} ms cold | {:.2} (p50) |",
        percentile(&warm, 50),
        percentile(&warm, 99),
        percentile(&cold, 50),
        percentile(&cold, 99),
        percentile(&cold, 50) / percentile(&warm, 50),
    );
    println!(
        "| RSS, {integrations} integrations + {clients} clients in the database: at start / after {USED} used | {rss_start:.1} MiB | {rss_used:.1} MiB | {lookups} database lookups |"
    );
    println!(
        "| filling the database ({integrations} + {clients} rows) | — | {:.1} s | — |",
        filled.as_secs_f64()
    );
    drop(proxy);
    preloaded(bench, &db, &url_file, &client, integrations).await;
}

/// Integrations changed one after another to time how long a change takes to be served.
const CHANGES: usize = 40;

/// Starts a proxy that reads the whole tables (`preload = true`): how long until it is up,
/// and its RSS.
async fn start_preloaded(
    bench: &crate::Bench,
    name: &str,
    url_file: &Path,
    client: &HttpClient,
) -> (Killed, u16, f64, f64) {
    let [port, admin] = [(); 2].map(|()| processes::free_port());
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
         [server.limits]\nrate_limit = 0\n\n[source]\npostgres_url_file = \"{}\"\n",
        url_file.display()
    );
    let started = Instant::now();
    let proxy = processes::start_proxy(&bench.work, name, &config, load::CLIENT_SECRET);
    processes::wait_for(port).await;
    while !metrics(client, admin)
        .await
        .contains("s3sp_source_database_up 1")
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let loaded = started.elapsed().as_secs_f64();
    let rss = processes::rss_mib(proxy.pid());
    (proxy, port, loaded, rss)
}

/// `CHANGES` times: points integration `tenant-{n}` at another prefix and polls it until an
/// answer shows the change (the object under the old prefix is gone: 404). The latencies,
/// sorted.
async fn changes_served(
    db: &tokio_postgres::Client,
    client: &HttpClient,
    port: u16,
    first: usize,
) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(CHANGES);
    for n in first..first + CHANGES {
        let url = format!("http://127.0.0.1:{port}/tenant-{n}/small/00000.bin");
        assert_eq!(
            load::status(client, &url).await,
            200,
            "{url} before its change"
        );
        let changed = Instant::now();
        db.execute(
            "UPDATE s3sp_integrations SET spec = spec || '{\"prefix\": \"moved/\"}', updated_at = now() WHERE name = $1",
            &[&format!("tenant-{n}")],
        )
        .await
        .unwrap();
        while load::status(client, &url).await != 404 {
            assert!(
                changed.elapsed() < Duration::from_secs(10),
                "{url} never changed"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        latencies.push(changed.elapsed());
    }
    latencies.sort_unstable();
    latencies
}

/// The `preload = true` rows: all the tables, then a hundred rows of them.
async fn preloaded(
    bench: &crate::Bench,
    db: &tokio_postgres::Client,
    url_file: &Path,
    client: &HttpClient,
    integrations: usize,
) {
    let (proxy, port, loaded, rss) = start_preloaded(bench, "preloaded", url_file, client).await;
    let many = changes_served(db, client, port, 0).await;
    drop(proxy);
    // The same changes with a hundred integrations in the tables: the rest are deleted.
    db.execute(
        "DELETE FROM s3sp_integrations WHERE substr(name, 8)::int >= $1",
        &[&((CHANGES * 2 + 20) as i32)],
    )
    .await
    .unwrap();
    db.execute("DELETE FROM s3sp_clients", &[]).await.unwrap();
    let (proxy, port, small_loaded, small_rss) =
        start_preloaded(bench, "preloaded-small", url_file, client).await;
    let few = changes_served(db, client, port, CHANGES).await;
    drop(proxy);
    println!(
        "| a changed row served (`preload = true`), p50 / p99: {} integrations / {} | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.2} (p50) |",
        CHANGES * 2 + 20,
        integrations,
        percentile(&few, 50),
        percentile(&few, 99),
        percentile(&many, 50),
        percentile(&many, 99),
        percentile(&many, 50) / percentile(&few, 50),
    );
    println!(
        "| `preload = true`: up with every row read, and RSS: {} / {} integrations | {small_loaded:.2} s, {small_rss:.1} MiB | {loaded:.2} s, {rss:.1} MiB | — |",
        CHANGES * 2 + 20,
        integrations,
    );
}
