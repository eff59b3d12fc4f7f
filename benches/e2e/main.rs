//! End-to-end benchmark: the same requests straight to a local store and through the proxy,
//! interleaved in one run and reported as medians and proxied/direct ratios (these machines
//! are too noisy for absolute figures to mean much).
//!
//! The store is nginx serving a temp dir laid out as `/{bucket}/{key}`, one worker: it moves
//! GB/s on loopback, so the proxy, not the store, is what the ratios measure (nginx ignores the
//! signatures, which is fine for a speed figure). Uploads go to a sink that reads and discards.
//! A second proxy serves 10,000 integrations and 2,000 clients, to show what a large config
//! costs. A second nginx relays to the store, neither checking nor signing: the proxy against it
//! shows what the proxy adds to what relaying alone costs on this machine, and two bare hyper
//! relays ([`bare`]) what relaying costs with the proxy's own parts. `scripts/bench`
//! installs nginx and runs this.
//!
//! Environment: `BENCH_LARGE_MIB` (default 1024), `BENCH_ROUNDS` (5), `BENCH_SMALL_OBJECTS`
//! (1000), `BENCH_SMALL_REQUESTS` (40000), `BENCH_CONNECTIONS` (64), `BENCH_INTEGRATIONS`
//! (10000), `BENCH_CLIENTS` (2000), `BENCH_RSS_STREAMS` (64), `BENCH_BODY_BUFFER` and
//! `BENCH_WIDE_TRANSFERS` (the proxy's `body_buffer_bytes` and `wide_transfers`),
//! `BENCH_STALLED_UPLOADS` (1000: uploads held by a store that stopped reading),
//! `BENCH_DB_INTEGRATIONS` (100000) and `BENCH_DB_CLIENTS` (20000) in PostgreSQL for the
//! `preload = false` rows ([`database`]).
//! `BENCH_PROXY` runs another build of the proxy than this tree's, and `BENCH_PROXY_B` a
//! second build beside it in the `bare` rounds, for an A/B in one run; `BENCH_BARE_WRAPPER` a
//! program the bare relays run under (a counter); `BENCH_ONLY` (`small`, `large`, `relay`,
//! `bare`, `rss`, `cache`, `database` or `stalled`, comma-separated) runs only those parts, and `BENCH_PROFILE` (`anonymous`,
//! `presigned`, or `many` for the many-integration proxy) only proxied small GETs of that kind,
//! round after round, to profile one of them.
// Tests may search and edit text freely; .clippy.toml's ban is for the proxy's own code.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fails loudly

mod bare;
mod cache;
mod configs;
mod database;
mod load;
mod processes;
mod stalled;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use load::{HttpClient, SmallRun};
use processes::{Killed, cpu_seconds};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One figure measured for a baseline and for the proxy, a value per round.
struct Row {
    name: String,
    unit: &'static str,
    baseline: Vec<f64>,
    proxied: Vec<f64>,
}

impl Row {
    fn new(name: impl Into<String>, unit: &'static str) -> Self {
        Row {
            name: name.into(),
            unit,
            baseline: Vec::new(),
            proxied: Vec::new(),
        }
    }

    /// As [`Row::print`], with the median of the rounds' own ratios as well: each round runs
    /// the two back to back, so that median shrugs off drift between rounds.
    fn print_paired(&self) {
        let ratios: Vec<f64> = self
            .proxied
            .iter()
            .zip(&self.baseline)
            .map(|(proxied, baseline)| proxied / baseline)
            .collect();
        self.print();
        println!(
            "| {}, median of per-round ratios | — | — | {:.3} |",
            self.name,
            median(&ratios)
        );
    }

    fn print(&self) {
        let (baseline, proxied) = (median(&self.baseline), median(&self.proxied));
        println!(
            "| {} | {baseline:.1} {unit} | {proxied:.1} {unit} | {:.2} |",
            self.name,
            proxied / baseline,
            unit = self.unit,
        );
    }
}

/// Whether `BENCH_ONLY` (unset: everything) names this part of the bench.
fn part(name: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|p| p.trim() == name))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// The bench's store: `large.bin`, `medium.bin` (64 MiB: the largest object the cache keeps
/// whole by default) and `small/NNNNN.bin` in `root/bench-bucket`.
fn lay_out_store(root: &Path, large_mib: usize, objects: usize) {
    let bucket = root.join("bench-bucket");
    std::fs::create_dir_all(bucket.join("small")).unwrap();
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    for (name, mib) in [("large.bin", large_mib), ("medium.bin", 64)] {
        let mut file = std::fs::File::create(bucket.join(name)).unwrap();
        for _ in 0..mib {
            std::io::Write::write_all(&mut file, &chunk).unwrap();
        }
    }
    for n in 0..objects {
        std::fs::write(bucket.join(format!("small/{n:05}.bin")), &chunk[..1024]).unwrap();
    }
}

/// A run of small GETs, with the CPU that `pid` spent on each request, in µs.
async fn small_run(
    client: &HttpClient,
    urls: &Arc<Vec<String>>,
    requests: usize,
    connections: usize,
    pid: u32,
) -> (SmallRun, f64) {
    let before = cpu_seconds(pid);
    let run = load::small_gets(client, urls.clone(), requests, connections).await;
    let cpu = (cpu_seconds(pid) - before) / requests as f64 * 1e6;
    (run, cpu)
}

fn small_urls(base: &str, objects: usize) -> Arc<Vec<String>> {
    Arc::new(
        (0..objects)
            .map(|n| format!("{base}/small/{n:05}.bin"))
            .collect(),
    )
}

/// The proxy's runs of small GETs in a round.
#[derive(Clone, Copy)]
enum Run {
    Anonymous,
    Many,
    Presigned,
}

struct Bench {
    large_mib: usize,
    rounds: usize,
    requests: usize,
    connections: usize,
    direct: String,
    proxied: String,
    sink: String,
    proxied_sink: String,
    relay: String,
    objects: usize,
    integrations: usize,
    /// The run's temp dir: the store's files, configs and logs.
    work: std::path::PathBuf,
}

impl Bench {
    async fn small_requests(&self, nginx_worker: u32, proxy: &Killed, big: (&Killed, &str)) {
        let client = load::http_client(self.connections);
        let direct = small_urls(&self.direct, self.objects);
        let proxied = small_urls(&self.proxied, self.objects);
        let presigned = Arc::new(proxied.iter().map(|u| load::presigned(u)).collect());
        let big_urls = small_urls(big.1, self.objects);
        let mut rate = Row::new("1 KiB GET, req/s", "req/s");
        let mut cpu = Row::new("CPU per 1 KiB GET (nginx worker / proxy)", "µs");
        let mut p99 = Row::new("p99 latency, 1 KiB GET", "ms");
        let mut signed = Row::new("CPU per 1 KiB GET, presigned vs anonymous", "µs");
        let mut many = Row::new(
            format!("1 KiB GET, {} integrations vs 1", self.integrations),
            "req/s",
        );
        let mut many_cpu = Row::new(
            format!("CPU per 1 KiB GET, {} integrations vs 1", self.integrations),
            "µs",
        );
        let (n, c) = (self.requests, self.connections);
        if let Ok(which) = std::env::var("BENCH_PROFILE") {
            // One kind of request, round after round, for a profiler attached to the proxy
            // (`many`: anonymous GETs to the proxy with many integrations).
            let (urls, pid) = match which.as_str() {
                "presigned" => (&presigned, proxy.pid()),
                "many" => (&big_urls, big.0.pid()),
                _ => (&proxied, proxy.pid()),
            };
            for _ in 0..self.rounds {
                let (run, spent) = small_run(&client, urls, n, c, pid).await;
                println!(
                    "{which}: {:.0} req/s, {spent:.1} µs CPU each",
                    run.per_second
                );
            }
            return;
        }
        for round in 0..self.rounds {
            let (run, spent) = small_run(&client, &direct, n, c, nginx_worker).await;
            rate.baseline.push(run.per_second);
            p99.baseline.push(run.p99.as_secs_f64() * 1e3);
            cpu.baseline.push(spent);
            // The proxy's three runs take turns at each place in the round, so that none
            // gains from its place (the 10,000-integration ratio moved 0.86-1.09, the
            // presigned one 1.03-1.37, with places fixed).
            let mut order = [Run::Anonymous, Run::Many, Run::Presigned];
            order.rotate_left(round % 3);
            for kind in order {
                match kind {
                    Run::Anonymous => {
                        let (run, spent) = small_run(&client, &proxied, n, c, proxy.pid()).await;
                        rate.proxied.push(run.per_second);
                        many.baseline.push(run.per_second);
                        p99.proxied.push(run.p99.as_secs_f64() * 1e3);
                        cpu.proxied.push(spent);
                        signed.baseline.push(spent);
                        many_cpu.baseline.push(spent);
                    }
                    Run::Many => {
                        let (run, spent) = small_run(&client, &big_urls, n, c, big.0.pid()).await;
                        many.proxied.push(run.per_second);
                        many_cpu.proxied.push(spent);
                    }
                    Run::Presigned => {
                        let (_, spent) = small_run(&client, &presigned, n, c, proxy.pid()).await;
                        signed.proxied.push(spent);
                    }
                }
            }
        }
        for row in [rate, cpu, p99, signed, many, many_cpu] {
            row.print();
        }
    }

    /// The proxy against nginx relaying the same requests to the same store: how far the proxy
    /// is from what relaying alone costs here.
    async fn against_relay(&self, relay_worker: u32, proxy: &Killed) {
        let client = load::http_client(self.connections);
        let relayed = small_urls(&self.relay, self.objects);
        let proxied = small_urls(&self.proxied, self.objects);
        let mut rate = Row::new("1 KiB GET, nginx relay / proxy", "req/s");
        let mut cpu = Row::new("CPU per 1 KiB GET, nginx relay worker / proxy", "µs");
        let mut large = Row::new(
            format!(
                "{} MiB GET, one stream, nginx relay / proxy",
                self.large_mib
            ),
            "MiB/s",
        );
        let (n, c) = (self.requests, self.connections);
        let (relayed_large, proxied_large) = (
            format!("{}/large.bin", self.relay),
            format!("{}/large.bin", self.proxied),
        );
        let large_client = load::http_client(8);
        for _ in 0..self.rounds {
            let (run, spent) = small_run(&client, &relayed, n, c, relay_worker).await;
            rate.baseline.push(run.per_second);
            cpu.baseline.push(spent);
            let (run, spent) = small_run(&client, &proxied, n, c, proxy.pid()).await;
            rate.proxied.push(run.per_second);
            cpu.proxied.push(spent);
            large
                .baseline
                .push(load::downloads(&large_client, &relayed_large, 1).await);
            large
                .proxied
                .push(load::downloads(&large_client, &proxied_large, 1).await);
        }
        for row in [rate, cpu, large] {
            row.print();
        }
    }

    /// CPU per small GET of the nginx relay, the two bare hyper relays ([`bare`]) and the
    /// proxy, interleaved: what relaying costs with the proxy's parts, before its own work.
    ///
    /// With `BENCH_PROXY_B` set to another build of the proxy, that build runs in the same
    /// rounds too, and a row compares the two: an A/B in one run, against the same noise.
    async fn against_bare(&self, relay_worker: u32, proxy: &Killed, (store, sink): (u16, u16)) {
        let relays = ["pooled", "paired"].map(|kind| {
            let port = processes::free_port();
            (kind, port, bare::start(kind, port, store))
        });
        for (_, port, _) in &relays {
            processes::wait_for(*port).await;
        }
        let other = self.start_build_b(store, sink).await;
        let mut versus = other.as_ref().map(|(port, b)| {
            let urls = small_urls(&format!("http://127.0.0.1:{port}/bench"), self.objects);
            (
                b.pid(),
                urls,
                Row::new("CPU per 1 KiB GET, proxy B / proxy", "µs"),
            )
        });
        let client = load::http_client(self.connections);
        let (n, c) = (self.requests, self.connections);
        let nginx = small_urls(&self.relay, self.objects);
        let proxied = small_urls(&self.proxied, self.objects);
        let mut rows = relays.each_ref().map(|(kind, port, relay)| {
            let urls = small_urls(
                &format!("http://127.0.0.1:{port}/bench-bucket"),
                self.objects,
            );
            let name = format!("CPU per 1 KiB GET, nginx relay / hyper relay ({kind})");
            (relay.pid(), urls, Row::new(name, "µs"))
        });
        let mut own = Row::new("CPU per 1 KiB GET, nginx relay / proxy", "µs");
        for _ in 0..self.rounds {
            let (_, spent) = small_run(&client, &nginx, n, c, relay_worker).await;
            own.baseline.push(spent);
            for (pid, urls, row) in &mut rows {
                row.baseline.push(spent);
                row.proxied
                    .push(small_run(&client, urls, n, c, *pid).await.1);
            }
            // Build B goes before the proxy in odd rounds, after it in even ones.
            let b_first = own.proxied.len() % 2 == 1;
            let mut b_spent = None;
            if let Some((pid, urls, _)) = versus.as_ref().filter(|_| b_first) {
                b_spent = Some(small_run(&client, urls, n, c, *pid).await.1);
            }
            let spent = small_run(&client, &proxied, n, c, proxy.pid()).await.1;
            own.proxied.push(spent);
            if let Some((pid, urls, row)) = &mut versus {
                let b_spent = match b_spent {
                    Some(b_spent) => b_spent,
                    None => small_run(&client, urls, n, c, *pid).await.1,
                };
                row.proxied.push(spent);
                row.baseline.push(b_spent);
            }
        }
        for (_, _, row) in &rows {
            row.print();
        }
        own.print();
        if let Some((_, _, row)) = &versus {
            row.print_paired();
        }
    }

    /// The build `BENCH_PROXY_B` names, serving the one-integration config, and its port.
    async fn start_build_b(&self, store: u16, sink: u16) -> Option<(u16, Killed)> {
        let binary = std::env::var_os("BENCH_PROXY_B")?;
        let port = processes::free_port();
        let config = configs::proxy(port, store, sink, 0);
        let started =
            processes::start_proxy_build(&self.work, "b", &config, load::CLIENT_SECRET, &binary);
        processes::wait_for(port).await;
        Some((port, started))
    }

    async fn large_bodies(&self) {
        let client = load::http_client(8);
        let (direct, proxied) = (
            format!("{}/large.bin", self.direct),
            format!("{}/large.bin", self.proxied),
        );
        let uploader = load::upload_client();
        let body = Bytes::from(vec![7u8; self.large_mib << 20]);
        let mib = self.large_mib;
        let mut one = Row::new(format!("{mib} MiB GET, one stream"), "MiB/s");
        let mut four = Row::new(format!("{mib} MiB GET, 4 in parallel"), "MiB/s");
        let mut put = Row::new(format!("{mib} MiB PUT to a discarding sink"), "MiB/s");
        load::download(&client, &direct).await; // the page cache and the connections
        for _ in 0..self.rounds {
            one.baseline
                .push(load::downloads(&client, &direct, 1).await);
            one.proxied
                .push(load::downloads(&client, &proxied, 1).await);
            four.baseline
                .push(load::downloads(&client, &direct, 4).await);
            four.proxied
                .push(load::downloads(&client, &proxied, 4).await);
            let (sink, proxied_sink) = (
                format!("{}/up", self.sink),
                format!("{}/up", self.proxied_sink),
            );
            put.baseline
                .push(load::uploads(&uploader, &sink, &body, 1, false).await);
            put.proxied
                .push(load::uploads(&uploader, &proxied_sink, &body, 1, true).await);
        }
        for row in [one, four, put] {
            row.print();
        }
    }
}

/// Peak RSS while `streams` clients download the large object at once, each reading slowly
/// enough that the proxy's buffers, not the client's speed, decide the figure.
async fn peak_rss_under_downloads(proxy: &Killed, proxied: &str, streams: usize) -> f64 {
    processes::reset_peak_rss(proxy.pid());
    let client = load::http_client(streams);
    load::downloads(&client, &format!("{proxied}/large.bin"), streams).await;
    processes::peak_rss_mib(proxy.pid())
}

/// Peak RSS while `streams` clients upload `mib` MiB each at once through the proxy to the
/// discarding sink.
async fn peak_rss_under_uploads(
    proxy: &Killed,
    proxied_sink: &str,
    streams: usize,
    mib: usize,
) -> f64 {
    processes::reset_peak_rss(proxy.pid());
    let body = bytes::Bytes::from(vec![7u8; mib << 20]);
    load::uploads(&load::upload_client(), proxied_sink, &body, streams, true).await;
    processes::peak_rss_mib(proxy.pid())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test harness probes
    }
    bare::serve_if_asked();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench());
}

async fn bench() {
    let large_mib = setting("BENCH_LARGE_MIB", 1024);
    let objects = setting("BENCH_SMALL_OBJECTS", 1000);
    let integrations = setting("BENCH_INTEGRATIONS", 10_000);
    let clients = setting("BENCH_CLIENTS", 2_000);
    let work = std::env::temp_dir().join(format!("s3sp-bench-{}", std::process::id()));
    let root = work.join("root");
    lay_out_store(&root, large_mib, objects);
    // nginx's worker drops root: let it read the bench's own temp tree.
    for path in [&work, &root, &root.join("bench-bucket")] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
    }

    let [store, sink, proxy_port, big_port, relay] = [(); 5].map(|()| processes::free_port());
    let nginx = processes::start_nginx(&root, &work, store);
    let nginx_relay = processes::start_nginx_relay(&work, relay, store);
    processes::start_sink(sink);
    for port in [store, sink, relay] {
        processes::wait_for(port).await;
    }
    let nginx_worker = processes::nginx_worker(nginx.pid());
    let relay_worker = processes::nginx_worker(nginx_relay.pid());

    let small = configs::proxy(proxy_port, store, sink, 0);
    let large = configs::proxy(big_port, store, sink, integrations - 1)
        + &configs::clients(clients, integrations);
    let proxy = processes::start_proxy(&work, "one", &small, load::CLIENT_SECRET);
    let one_load = processes::wait_for(proxy_port).await;
    let big = processes::start_proxy(&work, "many", &large, load::CLIENT_SECRET);
    let big_load = processes::wait_for(big_port).await;
    let big_rss = processes::rss_mib(big.pid());
    let reload = configs::reload(&big, &work.join("many.log")).await;
    let big_rss_reloaded = processes::rss_mib(big.pid());

    println!(
        "s3-signing-proxy end-to-end benchmark: medians of {} interleaved rounds (store: nginx, one worker, on loopback; 2 cores shared by client, proxy and store)",
        setting("BENCH_ROUNDS", 5)
    );
    println!("| figure | baseline | proxy | ratio |\n|---|---|---|---|");
    let bench = Bench {
        large_mib,
        rounds: setting("BENCH_ROUNDS", 5),
        requests: setting("BENCH_SMALL_REQUESTS", 40_000),
        connections: setting("BENCH_CONNECTIONS", 64),
        direct: format!("http://127.0.0.1:{store}/bench-bucket"),
        proxied: format!("http://127.0.0.1:{proxy_port}/bench"),
        sink: format!("http://127.0.0.1:{sink}/bench-bucket"),
        proxied_sink: format!("http://127.0.0.1:{proxy_port}/sink"),
        relay: format!("http://127.0.0.1:{relay}/bench-bucket"),
        objects,
        integrations,
        work: work.clone(),
    };
    let big_base = format!("http://127.0.0.1:{big_port}/bench");
    if part("small") {
        bench
            .small_requests(nginx_worker, &proxy, (&big, &big_base))
            .await;
    }
    if part("large") {
        bench.large_bodies().await;
    }
    if part("relay") {
        bench.against_relay(relay_worker, &proxy).await;
    }
    if part("bare") {
        bench
            .against_bare(relay_worker, &proxy, (store, sink))
            .await;
    }
    if part("rss") {
        let streams = setting("BENCH_RSS_STREAMS", 64);
        let rss = peak_rss_under_downloads(&proxy, &bench.proxied, streams).await;
        println!("| peak RSS, {streams} concurrent {large_mib} MiB GETs | — | {rss:.1} MiB | — |");
        let mib = (large_mib / 4).max(1);
        let sink = format!("{}/up", bench.proxied_sink);
        let rss = peak_rss_under_uploads(&proxy, &sink, streams, mib).await;
        println!("| peak RSS, {streams} concurrent {mib} MiB PUTs | — | {rss:.1} MiB | — |");
    }
    if part("cache") {
        cache::run(&bench, (store, sink), relay_worker, &proxy).await;
    }
    if part("database") {
        database::run(&bench, store, &proxy).await;
    }
    if part("stalled") {
        let uploads = setting("BENCH_STALLED_UPLOADS", 1000);
        let [port, stalled_store] = [(); 2].map(|()| processes::free_port());
        let heads = stalled::stalling_store(stalled_store).await;
        let config = configs::proxy(port, store, stalled_store, 0);
        let stalling = processes::start_proxy(&work, "stalled", &config, load::CLIENT_SECRET);
        processes::wait_for(port).await;
        let [idle, held, after] = stalled::rss(&stalling, port, &heads, uploads).await;
        println!(
            "| RSS, {uploads} 8 MiB uploads to a store that stopped reading: idle / stalled / 30 s after | {idle:.1} MiB | {held:.1} MiB | {after:.1} MiB after |"
        );
    }
    println!(
        "| config load to listening, {integrations} integrations + {clients} clients vs 1 | {:.0} ms | {:.0} ms | {:.2} |",
        one_load.as_secs_f64() * 1e3,
        big_load.as_secs_f64() * 1e3,
        big_load.as_secs_f64() / one_load.as_secs_f64()
    );
    println!(
        "| reload (SIGHUP to reloaded), {integrations} integrations | — | {:.0} ms | — |",
        reload.as_secs_f64() * 1e3
    );
    println!(
        "| RSS with {integrations} integrations: loaded / after one reload | {big_rss:.1} MiB | {big_rss_reloaded:.1} MiB | — |"
    );
    drop((proxy, big, nginx, nginx_relay));
    let _ = std::fs::remove_dir_all(&work);
}
