//! The per-request work the proxy adds before any byte moves: route, resolve, sign. Measured
//! against a baseline in the same run, building the same upstream request without a
//! signature, so the printed ratio is what SigV4 costs on top of the rest.
// Tests may search and edit text freely; .clippy.toml's ban is for the proxy's own code.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fails loudly

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use s3_signing_proxy::Config;
use s3_signing_proxy::front_door::Caller;
use s3_signing_proxy::integration::Integrations;
use s3_signing_proxy::route::{Operation, route};
use s3_signing_proxy::sign::{Payload, UpstreamParts, signed_request, upstream_uri};

const CONFIG: &str = r#"
[[integration]]
name = "acme-media"
bucket = "acme-prod-media"
prefix = "labelling/"
region = "us-west-2"
public = true
[integration.credentials]
access_key_id = "AKIDEXAMPLE"
secret_access_key_env = "SECRET"
"#;

fn request_path(c: &mut Criterion) {
    let secrets = BTreeMap::from([("SECRET".to_string(), "wJalrXUtnFEMI/K7MDENG".to_string())]);
    let config = Config::parse(CONFIG, "bench", &secrets).unwrap();
    let integrations = Integrations::new(&config.integrations);
    let credentials = Credentials::new(
        "ASIAEXAMPLE",
        "secret",
        Some("token".repeat(80)),
        None,
        "bench",
    );
    let mut client_headers = HeaderMap::new();
    client_headers.insert("range", HeaderValue::from_static("bytes=0-1048575"));
    let path = "/acme-media/projects/42/images/frame%20000123.png";

    let prepare = || {
        let r = route(&Method::GET, Some("proxy"), path, None, None).unwrap();
        let target = integrations.resolve(&r, &Caller::Anonymous).unwrap();
        let uri = upstream_uri(&target, &r.query).unwrap();
        (target, uri)
    };
    let mut group = c.benchmark_group("request path");
    group.bench_function("route + resolve + upstream URL (baseline)", |b| {
        b.iter(|| black_box(prepare()))
    });
    group.bench_function("route + resolve + upstream URL + SigV4", |b| {
        b.iter(|| {
            let (target, uri) = prepare();
            black_box(
                signed_request(
                    uri,
                    UpstreamParts {
                        operation: Operation::GetObject,
                        client_headers: &client_headers,
                        extra_headers: Vec::new(),
                        body: s3_signing_proxy::body::empty(),
                        payload: Payload::Unsigned,
                    },
                    &credentials,
                    target.integration.region.signing_name(),
                    SystemTime::now(),
                )
                .unwrap(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, request_path);
criterion_main!(benches);
