//! The rate limit's cost per request when one caller is tracked, against the same check with
//! 100,000 distinct callers coming and going (a flood of source addresses), in the same run.
//! The printed ratio should stay near 1: no request pays for the number of callers. The
//! tracked count after the flood shows the memory bound.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fails loudly

use std::hint::black_box;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use s3_signing_proxy::config::RateLimit;
use s3_signing_proxy::net::limits::{CallerKey, RateLimiter};

const CALLERS: u32 = 100_000;

fn limit() -> RateLimit {
    RateLimit {
        per_second: 1000.0,
        burst: 2000,
    }
}

/// An IPv6 caller per /64: each is a distinct key.
fn caller(n: u32) -> CallerKey {
    let address = Ipv6Addr::new(0x2001, 0xdb8, (n >> 16) as u16, n as u16, 0, 0, 0, 1);
    CallerKey::address(IpAddr::V6(address))
}

fn rate_limit(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit");
    let one = RateLimiter::default();
    let key = caller(0);
    group.bench_function("one caller", |b| {
        b.iter(|| black_box(one.check(black_box(key), limit(), Instant::now())))
    });
    let many = RateLimiter::default();
    let mut n = 0u32;
    group.bench_function("100k distinct callers", |b| {
        b.iter(|| {
            n = (n + 1) % CALLERS;
            black_box(many.check(caller(n), limit(), Instant::now()))
        })
    });
    group.finish();

    // The same two loops timed side by side for the ratio, and the table's size after.
    let rounds = 2_000_000u32;
    let started = Instant::now();
    for _ in 0..rounds {
        black_box(one.check(key, limit(), Instant::now())).ok();
    }
    let single = started.elapsed().as_nanos() as f64 / f64::from(rounds);
    let flood = RateLimiter::default();
    let started = Instant::now();
    for i in 0..rounds {
        black_box(flood.check(caller(i % CALLERS), limit(), Instant::now())).ok();
    }
    let spread = started.elapsed().as_nanos() as f64 / f64::from(rounds);
    println!(
        "rate limit: {single:.0} ns per check for one caller, {spread:.0} ns with {CALLERS} \
         distinct callers (ratio {:.2}); {} callers tracked after the flood",
        spread / single,
        flood.tracked()
    );
}

criterion_group!(benches, rate_limit);
criterion_main!(benches);
