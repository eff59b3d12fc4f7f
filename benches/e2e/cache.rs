//! The object cache (`BENCH_ONLY=cache`): a proxy whose bench integration has `cache_ttl`, its
//! small GETs answered from memory, against the nginx relay and the proxy without the cache in
//! the same rounds; and 256 KiB ranges of `large.bin` (kept in 1 MiB chunks) against the proxy
//! without the cache. Then the disk tier: a proxy with 4 MiB of memory and a disk tier, whose
//! small objects and chunks are read back from disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::load::{self, HttpClient};
use crate::processes::{self, Killed};
use crate::{Row, configs, small_run, small_urls};

/// The size of each ranged GET.
const RANGE: u64 = 256 << 10;
/// Distinct ranges, spread over the first MiBs of `large.bin`.
const RANGES: u64 = 256;

/// Ranged GETs of `url`, `connections` at a time: requests per second.
async fn ranged_gets(client: &HttpClient, url: &str, requests: usize, connections: usize) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (client, next, url) = (client.clone(), next.clone(), url.to_string());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= requests {
                        return;
                    }
                    // Ranges that start inside a chunk and may end in the next.
                    let first = (n as u64 % RANGES) * (RANGE + 4096);
                    let request = http::Request::get(url.as_str())
                        .header("range", format!("bytes={first}-{}", first + RANGE - 1))
                        .body(http_body_util::Empty::new())
                        .unwrap();
                    let response = client.request(request).await.unwrap();
                    assert_eq!(response.status(), 206, "{url}");
                    let body = http_body_util::BodyExt::collect(response.into_body())
                        .await
                        .unwrap()
                        .to_bytes();
                    assert_eq!(body.len() as u64, RANGE);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    requests as f64 / started.elapsed().as_secs_f64()
}

/// The rows of this part.
pub async fn run(
    bench: &crate::Bench,
    (store, sink): (u16, u16),
    relay_worker: u32,
    proxy: &Killed,
) {
    let port = processes::free_port();
    let config = configs::proxy(port, store, sink, 0).replacen(
        "name = \"bench\"\n",
        "name = \"bench\"\ncache_ttl = \"1h\"\n",
        1,
    ) + "\n[server.cache]\nmemory = \"512MiB\"\n";
    let cached = processes::start_proxy(&bench.work, "cached", &config, load::CLIENT_SECRET);
    processes::wait_for(port).await;
    let base = format!("http://127.0.0.1:{port}/bench");
    let client = load::http_client(bench.connections);
    let hits = small_urls(&base, bench.objects);
    // Every object once: the rounds below are all hits.
    load::small_gets(&client, hits.clone(), hits.len(), 16).await;
    let relayed = small_urls(&bench.relay, bench.objects);
    let proxied = small_urls(&bench.proxied, bench.objects);
    let ranged_client = load::http_client(16);
    let (large_cached, large_proxied) = (
        format!("{base}/large.bin"),
        format!("{}/large.bin", bench.proxied),
    );
    ranged_gets(&ranged_client, &large_cached, RANGES as usize, 16).await;

    let disked = disk_tier(bench, (store, sink)).await;
    let (disk_hits, large_disked) = (
        small_urls(&disked.1, bench.objects),
        format!("{}/large.bin", disked.1),
    );
    load::small_gets(&client, disk_hits.clone(), disk_hits.len(), 16).await;
    ranged_gets(&ranged_client, &large_disked, RANGES as usize, 16).await;
    let mut disk_rate = Row::new(
        "1 KiB GET, proxy / proxy with a disk tier behind 4 MiB of memory (the small objects fit: memory hits)",
        "req/s",
    );
    let mut disk_ranges = Row::new(
        "256 KiB ranges, proxy / proxy with 1 MiB chunks read back from the disk tier",
        "req/s",
    );

    let medium_cached = format!("{base}/medium.bin");
    let medium_relayed = format!("{}/medium.bin", bench.relay);
    load::downloads(&client, &medium_cached, 1).await;
    let mut medium = Row::new(
        "64 MiB GET, 4 at a time, nginx relay / proxy with cache hits",
        "MiB/s",
    );

    let mut relay_rate = Row::new("1 KiB GET, nginx relay / proxy with cache hits", "req/s");
    let mut relay_cpu = Row::new(
        "CPU per 1 KiB GET, nginx relay worker / proxy with cache hits",
        "µs",
    );
    let mut own_rate = Row::new("1 KiB GET, proxy / proxy with cache hits", "req/s");
    let mut ranges = Row::new(
        "256 KiB ranges of a large object, proxy / proxy with cached chunks",
        "req/s",
    );
    let (n, c) = (bench.requests, bench.connections);
    for _ in 0..bench.rounds {
        let (run, spent) = small_run(&client, &relayed, n, c, relay_worker).await;
        relay_rate.baseline.push(run.per_second);
        relay_cpu.baseline.push(spent);
        let (run, _) = small_run(&client, &proxied, n, c, proxy.pid()).await;
        own_rate.baseline.push(run.per_second);
        let (run, spent) = small_run(&client, &hits, n, c, cached.pid()).await;
        relay_rate.proxied.push(run.per_second);
        relay_cpu.proxied.push(spent);
        own_rate.proxied.push(run.per_second);
        let requests = (n / 20).max(RANGES as usize);
        ranges
            .baseline
            .push(ranged_gets(&ranged_client, &large_proxied, requests, 16).await);
        ranges
            .proxied
            .push(ranged_gets(&ranged_client, &large_cached, requests, 16).await);
        medium
            .baseline
            .push(load::downloads(&client, &medium_relayed, 4).await);
        medium
            .proxied
            .push(load::downloads(&client, &medium_cached, 4).await);
        disk_rate
            .baseline
            .push(own_rate.baseline[own_rate.baseline.len() - 1]);
        let (run, _) = small_run(&client, &disk_hits, n, c, disked.0.pid()).await;
        disk_rate.proxied.push(run.per_second);
        disk_ranges
            .baseline
            .push(ranges.baseline[ranges.baseline.len() - 1]);
        disk_ranges
            .proxied
            .push(ranged_gets(&ranged_client, &large_disked, requests, 16).await);
    }
    relay_rate.print_paired();
    relay_cpu.print();
    own_rate.print_paired();
    ranges.print_paired();
    println!(
        "| RSS of the proxy with the cache: {} small objects and {} MiB of chunks kept | — | {:.1} MiB | — |",
        bench.objects,
        (RANGES * (RANGE + 4096)).div_ceil(1 << 20),
        processes::rss_mib(cached.pid())
    );
    medium.print_paired();
    processes::reset_peak_rss(cached.pid());
    let downloads = load::http_client(64);
    load::downloads(&downloads, &medium_cached, 64).await;
    println!(
        "| peak RSS, 64 concurrent cached 64 MiB GETs (memory budget 512 MiB) | — | {:.1} MiB | — |",
        processes::peak_rss_mib(cached.pid())
    );
    disk_rate.print_paired();
    disk_ranges.print_paired();
    println!(
        "| RSS of the proxy with 4 MiB of memory and the disk tier holding the same | — | {:.1} MiB | — |",
        processes::rss_mib(disked.0.pid())
    );
}

/// A proxy whose cache has 4 MiB of memory and a 1 GiB disk tier in the bench's directory,
/// and its bench integration's base URL.
async fn disk_tier(bench: &crate::Bench, (store, sink): (u16, u16)) -> (Killed, String) {
    let port = processes::free_port();
    let disk = bench.work.join("disk-tier");
    let config = configs::proxy(port, store, sink, 0).replacen(
        "name = \"bench\"\n",
        "name = \"bench\"\ncache_ttl = \"1h\"\n",
        1,
    ) + &format!(
        "\n[server.cache]\nmemory = \"4MiB\"\ndisk = \"{}\"\ndisk_size = \"1GiB\"\n",
        disk.display()
    );
    let proxy = processes::start_proxy(&bench.work, "disked", &config, load::CLIENT_SECRET);
    processes::wait_for(port).await;
    (proxy, format!("http://127.0.0.1:{port}/bench"))
}
