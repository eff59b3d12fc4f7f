use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Method, header};

use super::*;

const DOCUMENT: &str = r#"{"resource":"/acme/photos/*","expires":1700003600}"#;

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}

fn encoded(document: &str) -> String {
    URL_SAFE_NO_PAD.encode(document)
}

#[test]
fn signatures_match_an_independent_hmac() {
    // Computed with Python's hmac and base64 modules, as README's example does.
    let (text, signature) = sign("s3cr3t", DOCUMENT).expect("signs");
    assert_eq!(
        text,
        "eyJyZXNvdXJjZSI6Ii9hY21lL3Bob3Rvcy8qIiwiZXhwaXJlcyI6MTcwMDAwMzYwMH0"
    );
    assert_eq!(
        signature,
        "fc84e5df8079eaeb37363cd239cb0954a1e31f3aac13546a3b86b371193cefbd"
    );
}

#[test]
fn the_policy_key_is_not_the_secret() {
    // A policy signature made with the raw secret (or a SigV4 key) is not this one.
    let text = encoded(DOCUMENT);
    let raw = signature(b"s3cr3t", &text);
    assert_ne!(raw, signature(&policy_key("s3cr3t"), &text));
}

#[test]
fn policies_parse_into_a_bucket_and_keys() {
    let policy = parse(&encoded(
        r#"{"resource":"/acme/photos/*","expires":20,"starts":10,"ip":"192.0.2.0/24"}"#,
    ))
    .expect("parses");
    assert_eq!(policy.name, "acme");
    assert_eq!(policy.keys, Keys::Prefix("photos/".to_string()));
    assert_eq!((policy.starts, policy.expires), (Some(10), 20));
    let exact = parse(&encoded(r#"{"resource":"/acme/a b.png","expires":20}"#)).expect("ok");
    assert_eq!(exact.keys, Keys::Exact("a b.png".to_string()));
    assert!(exact.covers("a b.png") && !exact.covers("a b.png2"));
}

#[test]
fn malformed_policies_are_refused_with_a_reason() {
    for (document, why) in [
        (r#"{"resource":"/acme/*/x","expires":20}"#, "only end"),
        (r#"{"resource":"/acme/a/../b*","expires":20}"#, "segments"),
        (r#"{"resource":"/acme/","expires":20}"#, "names no key"),
        (r#"{"resource":"acme/x*","expires":20}"#, "start with"),
        (r#"{"resource":"/ac/x*","expires":20}"#, "the name"),
        (r#"{"resource":"/acme/x*"}"#, "expires"),
        (
            r#"{"resource":"/acme/x*","expires":20,"method":"PUT"}"#,
            "unknown field",
        ),
        (
            r#"{"resource":"/acme/x*","expires":20,"starts":20}"#,
            "not before",
        ),
        (
            r#"{"resource":"/acme/x*","expires":20,"ip":"10.0.0.1/8"}"#,
            "host bits",
        ),
    ] {
        let error = parse(&encoded(document)).expect_err(document);
        assert!(error.to_string().contains(why), "{document}: {error}");
    }
    assert!(parse("not base64!").is_err());
    assert!(
        parse(&format!("{}=", encoded(DOCUMENT))).is_err(),
        "padding"
    );
    let long = format!(
        r#"{{"resource":"/acme/{}*","expires":20}}"#,
        "a".repeat(2000)
    );
    assert!(parse(&encoded(&long)).is_err(), "too long");
}

#[test]
fn times_bound_a_policy() {
    let policy = parse(&encoded(
        r#"{"resource":"/acme/x*","expires":1700003600,"starts":1700000000}"#,
    ))
    .expect("parses");
    assert!(policy.check_time(at(1_700_000_000)).is_ok());
    assert_eq!(
        policy.remaining(at(1_700_000_000)),
        Duration::from_secs(3600)
    );
    let expired = policy.check_time(at(1_700_003_600)).expect_err("expired");
    assert!(expired.to_string().contains("expired"), "{expired}");
    assert!(policy.check_time(at(1_699_999_999)).is_err(), "not started");
    let forever = parse(&encoded(r#"{"resource":"/acme/x*","expires":1800000000}"#)).expect("ok");
    assert!(
        forever.check_time(at(1_700_000_000)).is_err(),
        "over 7 days"
    );
}

fn route(method: Method, path: &str) -> Route {
    let (path, query) = path
        .split_once('?')
        .map_or((path, None), |(p, q)| (p, Some(q)));
    crate::s3::route::route(&method, None, path, query, None).expect("routes")
}

#[test]
fn only_reads_of_covered_keys_are_granted() {
    let policy = parse(&encoded(DOCUMENT)).expect("parses");
    assert!(
        policy
            .check_request(&route(Method::GET, "/acme/photos/a.png"), None)
            .is_ok()
    );
    assert!(
        policy
            .check_request(&route(Method::HEAD, "/acme/photos/a.png"), None)
            .is_ok()
    );
    assert!(
        policy
            .check_request(&route(Method::GET, "/acme/_session"), None)
            .is_ok()
    );
    for (method, path, why) in [
        (Method::GET, "/acme/private/a.png", "does not cover"),
        (Method::GET, "/acme/Photos/a.png", "does not cover"),
        (
            Method::GET,
            "/acme/photos%2F..%2Fprivate%2Fa.png",
            "segments",
        ),
        (Method::GET, "/acme/photos/../private/a.png", "segments"),
        (Method::GET, "/other/photos/a.png", "another bucket"),
        (
            Method::PUT,
            "/acme/photos/a.png",
            "never authorises a write",
        ),
        (
            Method::DELETE,
            "/acme/photos/a.png",
            "never authorises a write",
        ),
        (
            Method::GET,
            "/acme?list-type=2&prefix=photos/",
            "object reads only",
        ),
    ] {
        let error = policy
            .check_request(&route(method, path), None)
            .expect_err(path);
        assert!(error.to_string().contains(why), "{path}: {error}");
    }
}

#[test]
fn an_address_range_binds_the_policy_to_its_clients() {
    let policy = parse(&encoded(
        r#"{"resource":"/acme/*","expires":20,"ip":"192.0.2.0/24"}"#,
    ))
    .expect("parses");
    let read = route(Method::GET, "/acme/a");
    assert!(
        policy
            .check_request(&read, "192.0.2.7".parse().ok())
            .is_ok()
    );
    assert!(
        policy
            .check_request(&read, "198.51.100.7".parse().ok())
            .is_err()
    );
    assert!(policy.check_request(&read, None).is_err());
}

#[test]
fn cookies_and_query_parameters_carry_the_three_values() {
    let mut headers = HeaderMap::new();
    headers.append(
        header::COOKIE,
        HeaderValue::from_static("theme=dark; S3SP-Policy=eyJ; S3SP-Signature=ab"),
    );
    headers.append(
        header::COOKIE,
        HeaderValue::from_static("S3SP-Key-Id=AK1; S3SP-Policy=second"),
    );
    let presented = in_cookies(&headers).expect("ok").expect("present");
    assert_eq!(
        (
            presented.policy.as_str(),
            presented.signature.as_str(),
            presented.key_id.as_str()
        ),
        ("eyJ", "ab", "AK1")
    );
    let mut partial = HeaderMap::new();
    partial.insert(header::COOKIE, HeaderValue::from_static("S3SP-Policy=eyJ"));
    assert!(in_cookies(&partial).is_err());
    assert_eq!(in_cookies(&HeaderMap::new()).expect("ok"), None);

    let query = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    let found = in_query(&query(&[(POLICY, "p"), (SIGNATURE, "s"), (KEY_ID, "k")]));
    assert!(found.expect("ok").is_some());
    assert!(
        in_query(&query(&[
            (POLICY, "p"),
            (POLICY, "q"),
            (SIGNATURE, "s"),
            (KEY_ID, "k")
        ]))
        .is_err()
    );
    assert_eq!(in_query(&query(&[("x", "y")])).expect("ok"), None);
}
