//! Counters for `/metrics`, rendered in Prometheus' text format.
//!
//! Labels only ever take values from the config (integration names) or small fixed sets
//! (methods, status classes), so a caller cannot grow the label space.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the upstream latency histogram's buckets.
const LATENCY_BOUNDS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The integration label of requests refused before an integration was known.
pub const NO_INTEGRATION: &str = "-";

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    pub open_connections: AtomicI64,
    pub connections_total: AtomicU64,
    pub rate_limited: AtomicU64,
}

/// The live sources' counters (`[source]`).
#[derive(Default)]
pub struct SourceStats {
    /// Parts (files, rows) applied.
    pub applied: AtomicU64,
    /// Parts refused: invalid, or defining a name another part defines.
    pub refused: AtomicU64,
    /// New states published from the sources.
    pub published: AtomicU64,
    /// Whether the database connection is up now (1) or not (0).
    pub database_up: AtomicI64,
    /// Database connection attempts that failed, and connections lost.
    pub database_failures: AtomicU64,
    /// Sources that have not loaded once yet: readiness waits for them.
    pub loading: AtomicI64,
}

#[derive(Default)]
struct Inner {
    /// integration → (method, status class) → count.
    requests: BTreeMap<String, BTreeMap<(&'static str, &'static str), u64>>,
    bytes_in: BTreeMap<String, u64>,
    bytes_out: BTreeMap<String, u64>,
    upstream_latency: BTreeMap<String, Histogram>,
    /// integration → answers whose body did not reach the client whole.
    incomplete: BTreeMap<String, u64>,
    /// integration → the store's error code (one of [`STORE_CODES`] or `other`) → count.
    store_errors: BTreeMap<String, BTreeMap<&'static str, u64>>,
}

/// The store's error codes counted by name in `s3sp_upstream_errors_total`: what an operator
/// acts on (a revoked role, a changed bucket policy, a deleted bucket, throttling). Any other
/// code counts as `other`, so a store cannot grow the label space.
pub const STORE_CODES: &[&str] = &[
    "AccessDenied",
    "AllAccessDisabled",
    "NoSuchBucket",
    "PermanentRedirect",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "InvalidToken",
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
];

/// One finished request, as the access line saw it.
pub struct Outcome<'a> {
    /// Its integration, or [`NO_INTEGRATION`].
    pub integration: &'a str,
    pub method: &'static str,
    /// The status the client got.
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Whether the answer's body reached the client whole.
    pub complete: bool,
    /// The store's status and error code, when the store answered.
    pub upstream_status: Option<u16>,
    pub upstream_code: Option<&'a str>,
}

#[derive(Default)]
struct Histogram {
    buckets: [u64; LATENCY_BOUNDS.len()],
    count: u64,
    sum: f64,
}

/// A method as a label: S3's methods by name, anything else as `OTHER`.
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::PUT => "PUT",
        http::Method::POST => "POST",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl Metrics {
    /// Records one finished request.
    pub fn request(&self, outcome: &Outcome<'_>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let integration = outcome.integration;
        if let Some(counts) = slot(&mut inner.requests, integration) {
            *counts
                .entry((outcome.method, status_class(outcome.status)))
                .or_default() += 1;
        }
        if let Some(total) = slot(&mut inner.bytes_in, integration) {
            *total += outcome.bytes_in;
        }
        if let Some(total) = slot(&mut inner.bytes_out, integration) {
            *total += outcome.bytes_out;
        }
        if !outcome.complete
            && let Some(total) = slot(&mut inner.incomplete, integration)
        {
            *total += 1;
        }
        if outcome.upstream_status.is_some_and(|status| status >= 400)
            && let Some(codes) = slot(&mut inner.store_errors, integration)
        {
            let code = outcome.upstream_code.unwrap_or_default();
            let code = STORE_CODES
                .iter()
                .find(|known| **known == code)
                .copied()
                .unwrap_or("other");
            *codes.entry(code).or_default() += 1;
        }
    }

    /// Records how long the upstream took to send response headers.
    pub fn upstream_latency(&self, integration: &str, elapsed: Duration) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let Some(histogram) = slot(&mut inner.upstream_latency, integration) else {
            return;
        };
        let seconds = elapsed.as_secs_f64();
        for (bucket, bound) in histogram.buckets.iter_mut().zip(LATENCY_BOUNDS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// Appends the request, byte, latency and connection metrics to `out`.
    pub fn render(&self, out: &mut String) {
        let Ok(inner) = self.inner.lock() else {
            return;
        };
        render_requests(out, &inner.requests);
        for (name, help, map) in [
            (
                "s3sp_request_bytes_total",
                "Request body bytes received from clients, by integration.",
                &inner.bytes_in,
            ),
            (
                "s3sp_response_bytes_total",
                "Response body bytes sent to clients, by integration.",
                &inner.bytes_out,
            ),
        ] {
            family(out, name, "counter", help);
            for (integration, bytes) in map {
                let _ = writeln!(
                    out,
                    "{name}{{integration=\"{}\"}} {bytes}",
                    label(integration)
                );
            }
        }
        render_outcomes(out, &inner);
        family(
            out,
            "s3sp_upstream_latency_seconds",
            "histogram",
            "Time from sending a request upstream to its response headers.",
        );
        for (integration, histogram) in &inner.upstream_latency {
            let integration = label(integration);
            for (bound, count) in LATENCY_BOUNDS.iter().zip(histogram.buckets) {
                let _ = writeln!(
                    out,
                    "s3sp_upstream_latency_seconds_bucket{{integration=\"{integration}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "s3sp_upstream_latency_seconds_bucket{{integration=\"{integration}\",le=\"+Inf\"}} {}\n\
                 s3sp_upstream_latency_seconds_sum{{integration=\"{integration}\"}} {}\n\
                 s3sp_upstream_latency_seconds_count{{integration=\"{integration}\"}} {}",
                histogram.count, histogram.sum, histogram.count
            );
        }
        drop(inner);
        gauge(
            out,
            "s3sp_open_connections",
            "Client connections open now.",
            self.open_connections.load(Ordering::Relaxed),
        );
        counter(
            out,
            "s3sp_connections_total",
            "Client connections accepted.",
            self.connections_total.load(Ordering::Relaxed),
        );
        counter(
            out,
            "s3sp_rate_limited_total",
            "Requests refused with 429 SlowDown.",
            self.rate_limited.load(Ordering::Relaxed),
        );
    }
}

/// The incomplete answers (every integration with requests has the series) and the store's
/// error answers by code.
fn render_outcomes(out: &mut String, inner: &Inner) {
    family(
        out,
        "s3sp_requests_incomplete_total",
        "counter",
        "Answers whose body did not reach the client whole (the client left, or the store broke off), by integration.",
    );
    // Every integration with requests has the series, at 0 until one is incomplete.
    for integration in inner.requests.keys() {
        let count = inner.incomplete.get(integration).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "s3sp_requests_incomplete_total{{integration=\"{}\"}} {count}",
            label(integration)
        );
    }
    family(
        out,
        "s3sp_upstream_errors_total",
        "counter",
        "Error answers from the store, by integration and S3 error code (other codes as other).",
    );
    for (integration, codes) in &inner.store_errors {
        for (code, count) in codes {
            let _ = writeln!(
                out,
                "s3sp_upstream_errors_total{{integration=\"{}\",code=\"{code}\"}} {count}",
                label(integration)
            );
        }
    }
}

/// The value under `key`, made the first time: the key is copied then, not on every request.
fn slot<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> Option<&'m mut V> {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key)
}

fn render_requests(
    out: &mut String,
    requests: &BTreeMap<String, BTreeMap<(&'static str, &'static str), u64>>,
) {
    family(
        out,
        "s3sp_requests_total",
        "counter",
        "Requests answered, by integration, method and status class.",
    );
    for (integration, counts) in requests {
        for ((method, class), count) in counts {
            let _ = writeln!(
                out,
                "s3sp_requests_total{{integration=\"{}\",method=\"{method}\",status=\"{class}\"}} {count}",
                label(integration)
            );
        }
    }
}

pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

pub fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    family(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

pub fn gauge(out: &mut String, name: &str, help: &str, value: i64) {
    family(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

/// Escapes a label value as the text format requires.
pub fn label(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let metrics = Metrics::default();
        let outcome = |integration, method, status, bytes_in, bytes_out| Outcome {
            integration,
            method,
            status,
            bytes_in,
            bytes_out,
            complete: status != 206,
            upstream_status: (status == 206).then_some(403),
            upstream_code: Some("Revoked<"),
        };
        metrics.request(&outcome("acme", "GET", 200, 0, 1024));
        metrics.request(&outcome("acme", "GET", 206, 0, 10));
        metrics.request(&outcome(NO_INTEGRATION, "PUT", 403, 5, 0));
        metrics.upstream_latency("acme", Duration::from_millis(20));
        metrics.upstream_latency("acme", Duration::from_secs(3));
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(
            out.contains(
                "s3sp_requests_total{integration=\"acme\",method=\"GET\",status=\"2xx\"} 2"
            )
        );
        assert!(
            out.contains("s3sp_requests_total{integration=\"-\",method=\"PUT\",status=\"4xx\"} 1")
        );
        assert!(out.contains("s3sp_response_bytes_total{integration=\"acme\"} 1034"));
        assert!(out.contains("s3sp_request_bytes_total{integration=\"-\"} 5"));
        assert!(
            out.contains(
                "s3sp_upstream_latency_seconds_bucket{integration=\"acme\",le=\"0.01\"} 0"
            )
        );
        assert!(
            out.contains(
                "s3sp_upstream_latency_seconds_bucket{integration=\"acme\",le=\"0.025\"} 1"
            )
        );
        assert!(
            out.contains("s3sp_upstream_latency_seconds_bucket{integration=\"acme\",le=\"5\"} 2")
        );
        assert!(out.contains("s3sp_upstream_latency_seconds_count{integration=\"acme\"} 2"));
        // A code the store made up is counted as `other`; the label space stays fixed.
        assert!(out.contains("s3sp_upstream_errors_total{integration=\"acme\",code=\"other\"} 1"));
        assert!(!out.contains("Revoked"));
        assert!(out.contains("s3sp_requests_incomplete_total{integration=\"acme\"} 1"));
        assert!(out.contains("s3sp_requests_incomplete_total{integration=\"-\"} 0"));
        metrics.request(&Outcome {
            upstream_code: Some("AccessDenied"),
            ..outcome("acme", "GET", 206, 0, 0)
        });
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(
            out.contains(
                "s3sp_upstream_errors_total{integration=\"acme\",code=\"AccessDenied\"} 1"
            )
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
