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
use s3_signing_proxy::auth::front_door::{Caller, Clients};
use s3_signing_proxy::request::integration::Integrations;
use s3_signing_proxy::s3::route::{Operation, route};
use s3_signing_proxy::upstream::sign::{
    Payload, UpstreamParts, presigned_get_url, signed_request, upstream_uri,
};

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

/// Temporary credentials, with a session token as long as STS's.
fn session_credentials() -> Credentials {
    Credentials::new(
        "ASIAEXAMPLE",
        "secret",
        Some("token".repeat(80)),
        None,
        "bench",
    )
}

fn request_path(c: &mut Criterion) {
    let secrets = BTreeMap::from([("SECRET".to_string(), "wJalrXUtnFEMI/K7MDENG".to_string())]);
    let config = Config::parse(CONFIG, "bench", &secrets).unwrap();
    let integrations = Integrations::new(&config.integrations);
    let credentials = session_credentials();
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
                        client_headers: client_headers.clone(),
                        extra_headers: Vec::new(),
                        body: s3_signing_proxy::s3::body::empty(),
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

/// The front door verifying a client's presigned GET: the anonymous path (no signature) is
/// the baseline, so the ratio is what verification adds.
fn client_verification(c: &mut Criterion) {
    let secrets = BTreeMap::from([
        ("SECRET".to_string(), "wJalrXUtnFEMI/K7MDENG".to_string()),
        ("CLIENT_SECRET".to_string(), "client-secret-key".to_string()),
    ]);
    let text = format!(
        "{CONFIG}\n[[client]]\naccess_key_id = \"AKCLIENT\"\nsecret_access_key_env = \"CLIENT_SECRET\"\nintegrations = [\"acme-media\"]\n"
    );
    let config = Config::parse(&text, "bench", &secrets).unwrap();
    let clients = Clients::new(&config.clients);
    let client = Credentials::new("AKCLIENT", "client-secret-key", None, None, "bench");
    let now = SystemTime::now();
    let plain: http::Uri = "http://proxy/acme-media/projects/42/images/frame%20000123.png"
        .parse()
        .unwrap();
    let presigned = presigned_get_url(
        plain.clone(),
        &client,
        "us-east-1",
        now,
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("proxy"));
    let mut group = c.benchmark_group("client verification");
    group.bench_function("anonymous GET (baseline)", |b| {
        b.iter(|| black_box(clients.identify(&Method::GET, &plain, &headers, now, None)))
    });
    group.bench_function("presigned GET", |b| {
        b.iter(|| {
            let verified = clients.identify(&Method::GET, &presigned, &headers, now, None);
            assert!(verified.is_ok());
            black_box(verified)
        })
    });
    group.finish();
}

/// A/B of the hand-written upstream signer against the library it replaced: the same unsigned
/// upstream GET (its `Host` and `Range`), signed by `sign_request` (the proxy's, with its
/// signing-key cache) and by aws-sigv4 with the proxy's settings (a unit test holds the two
/// to the same output). The difference is what keeping the signer saves per request.
fn signer_against_aws_sigv4(c: &mut Criterion) {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
        UriPathNormalizationMode, sign,
    };
    use aws_sigv4::sign::v4;
    let credentials = session_credentials();
    let mut unsigned = http::Request::new(());
    *unsigned.uri_mut() =
        "https://acme-prod-media.s3.us-west-2.amazonaws.com/labelling/projects/42/images/frame%20000123.png"
            .parse()
            .unwrap();
    let headers = unsigned.headers_mut();
    headers.insert(
        "host",
        HeaderValue::from_static("acme-prod-media.s3.us-west-2.amazonaws.com"),
    );
    headers.insert("range", HeaderValue::from_static("bytes=0-1048575"));
    let now = SystemTime::now();
    let mut group = c.benchmark_group("upstream signer");
    group.bench_function("the proxy's signer (sign_request)", |b| {
        b.iter(|| {
            let mut request = unsigned.clone();
            s3_signing_proxy::upstream::sign::sign_request(
                &mut request,
                &credentials,
                "us-west-2",
                now,
            )
            .unwrap();
            black_box(request)
        })
    });
    let identity = credentials.clone().into();
    group.bench_function("aws-sigv4 (the library it replaced)", |b| {
        b.iter(|| {
            let mut request = unsigned.clone();
            let mut settings = SigningSettings::default();
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
            let params = v4::SigningParams::builder()
                .identity(&identity)
                .region("us-west-2")
                .name("s3")
                .time(now)
                .settings(settings)
                .build()
                .unwrap()
                .into();
            let uri = request.uri().to_string();
            let headers: Vec<(&str, &str)> = request
                .headers()
                .iter()
                .map(|(name, value)| (name.as_str(), value.to_str().unwrap()))
                .collect();
            let signable = SignableRequest::new(
                request.method().as_str(),
                &uri,
                headers.into_iter(),
                SignableBody::UnsignedPayload,
            )
            .unwrap();
            let (instructions, _) = sign(signable, &params).unwrap().into_parts();
            instructions.apply_to_request_http1x(&mut request);
            black_box(request)
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    request_path,
    client_verification,
    signer_against_aws_sigv4
);
criterion_main!(benches);
