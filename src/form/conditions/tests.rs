use std::time::{Duration, SystemTime};

use super::*;

fn encode(json: &str) -> String {
    aws_smithy_types::base64::encode(json.as_bytes())
}

const POLICY: &str = r#"{"expiration": "2026-11-29T12:00:00.000Z", "conditions": [
    {"bucket": "acme"}, ["starts-with", "$key", "uploads/"], ["content-length-range", 1, 1000],
    ["starts-with", "$Content-Type", "image/"], {"x-amz-meta-note": "hi"},
    {"success_action_status": "201"}]}"#;

fn fields(pairs: &[(&str, &str)]) -> Fields {
    let mut fields = Fields::default();
    for (name, value) in pairs {
        fields.add(name, value.to_string()).expect("distinct");
    }
    fields
}

fn before_expiry() -> SystemTime {
    crate::s3::sigv4::parse_amz_date("20261129T115959Z").expect("a date")
}

fn good() -> Vec<(&'static str, &'static str)> {
    vec![
        ("key", "uploads/${filename}"),
        ("Content-Type", "image/png"),
        ("x-amz-meta-note", "hi"),
        ("success_action_status", "201"),
        ("policy", "…"),
        ("x-amz-signature", "…"),
        ("x-ignore-tracking", "1"),
    ]
}

#[test]
fn a_form_that_meets_every_condition_passes_with_its_size_range() {
    let policy = parse(&encode(POLICY)).expect("parses");
    assert_eq!(policy.conditions.len(), 6);
    let range = policy
        .check(&fields(&good()), "acme", before_expiry())
        .expect("passes");
    assert_eq!(range, (1, 1000));
}

#[test]
fn each_violated_condition_is_refused() {
    let policy = parse(&encode(POLICY)).expect("parses");
    let with = |name: &str, value: &'static str| {
        let mut pairs = good();
        pairs.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        pairs.push((Box::leak(name.to_string().into_boxed_str()), value));
        fields(&pairs)
    };
    for (form, bucket, why) in [
        (with("key", "elsewhere/a.png"), "acme", "$key"),
        (with("Content-Type", "text/html"), "acme", "$content-type"),
        (
            with("Content-Type", "image/png, text/html"),
            "acme",
            "$content-type",
        ),
        (with("x-amz-meta-note", "other"), "acme", "x-amz-meta-note"),
        (
            with("x-amz-meta-extra", "planted"),
            "acme",
            "Extra input fields: x-amz-meta-extra",
        ),
        (with("bucket", "other"), "acme", "another bucket"),
        (fields(&good()), "other-bucket", "$bucket"),
    ] {
        let error = policy.check(&form, bucket, before_expiry()).expect_err(why);
        assert!(error.to_string().contains(why), "{why}: {error}");
        assert_eq!(error.code(), "AccessDenied");
    }
    let expired = policy
        .check(
            &fields(&good()),
            "acme",
            before_expiry() + Duration::from_secs(1),
        )
        .expect_err("expired");
    assert!(expired.to_string().contains("Policy expired"), "{expired}");
}

#[test]
fn malformed_policies_are_refused() {
    for document in [
        r#"{"conditions": []}"#,
        r#"{"expiration": "tomorrow", "conditions": []}"#,
        r#"{"expiration": "2026-11-29T12:00:00Z", "conditions": {}}"#,
        r#"{"expiration": "2026-11-29T12:00:00Z", "conditions": [["in", "$key", "a"]]}"#,
        r#"{"expiration": "2026-11-29T12:00:00Z", "conditions": [["eq", "key", "a"]]}"#,
        r#"{"expiration": "2026-11-29T12:00:00Z", "conditions": [{"a": "1", "b": "2"}]}"#,
        r#"{"expiration": "2026-11-29T12:00:00Z", "conditions": [["content-length-range", 9, 1]]}"#,
        r#"{"expiration": "2026-11-29T12:00:00Z", "conditions": [], "extra": 1}"#,
    ] {
        assert!(parse(&encode(document)).is_err(), "{document}");
    }
    assert!(parse("not base64!").is_err());
}

#[test]
fn a_field_given_twice_is_refused() {
    let mut form = Fields::default();
    form.add("Key", "a".to_string()).expect("first");
    assert!(form.add("key", "b".to_string()).is_err());
}
