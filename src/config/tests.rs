//! The configuration as a whole: every problem reported, typed values out, secrets hidden.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;

use super::credential_source::DEFAULT_SESSION_NAME;
use super::fields::check_prefix;
use super::*;

fn secrets() -> BTreeMap<String, String> {
    BTreeMap::from([("MINIO_SECRET".to_string(), "minio-secret".to_string())])
}

const GOOD: &str = r#"
    [server]
    listen = "127.0.0.1:0"
    base_domain = "media.example.com"

    [sts]
    endpoint = "http://127.0.0.1:5000"
    refresh_before_expiry = "5m"
    duration = "1h"

    [[integration]]
    name = "acme-media"
    bucket = "acme-prod-media"
    prefix = "labelling"
    region = "us-west-2"
    [integration.credentials]
    role_arn = "arn:aws:iam::111122223333:role/Integration"
    external_id = "acme-external-id"

    [[integration]]
    name = "local"
    bucket = "local-bucket"
    region = "us-east-1"
    endpoint = "http://127.0.0.1:9000"
    public = true
    [integration.credentials]
    access_key_id = "minioadmin"
    secret_access_key_env = "MINIO_SECRET"

    [[integration]]
    name = "kolena-default"
    default = true
    buckets = ["bucket-one", "bucket-two"]
    region = "eu-west-1"
    [integration.credentials]
    source = "default-chain"
"#;

#[test]
fn parses_a_full_config_into_typed_values() {
    let config = Config::parse(GOOD, "good.toml", &secrets()).expect("valid");
    assert_eq!(
        config.server.base_domain.as_deref(),
        Some("media.example.com")
    );
    assert_eq!(config.sts.duration, Duration::from_secs(3600));
    let acme = &config.integrations[0];
    assert_eq!(acme.prefix, "labelling/", "a prefix is a directory");
    assert_eq!(acme.addressing, Addressing::VirtualHost);
    assert!(matches!(
        &acme.credentials,
        CredentialSource::AssumeRole { session_name, external_id: Some(id), .. }
            if session_name == DEFAULT_SESSION_NAME && id == "acme-external-id"
    ));
    let local = &config.integrations[1];
    assert_eq!(
        local.addressing,
        Addressing::Path,
        "custom endpoints default to path style"
    );
    assert_eq!(
        local.endpoint.as_ref().map(Endpoint::url).as_deref(),
        Some("http://127.0.0.1:9000")
    );
    match &local.credentials {
        CredentialSource::Static(keys) => {
            assert_eq!(keys.secret_access_key.expose(), "minio-secret");
            assert!(!format!("{keys:?}").contains("minio-secret"));
        }
        other => panic!("expected static keys, got {other:?}"),
    }
    assert_eq!(
        config.integrations[2].buckets,
        Buckets::Permitted(vec!["bucket-one".into(), "bucket-two".into()])
    );
}

#[test]
fn reports_every_problem_with_file_integration_and_field() {
    let text = r#"
        [[integration]]
        name = "Bad_Name"
        bucket = "ok-bucket"
        region = "us-east-1"
        [integration.credentials]
        role_arn = "arn:aws:iam::12:role/x"

        [[integration]]
        name = "second"
        bucket = "other-bucket"
        region = "us-east-1"
        addressing = "sideways"
        [integration.credentials]
        access_key_id = "AK"
        secret_access_key_env = "UNSET_VARIABLE"
    "#;
    let error = Config::parse(text, "bad.toml", &secrets()).expect_err("invalid");
    let all = error.to_string();
    assert!(
        all.contains("bad.toml: integration \"Bad_Name\": field `name`"),
        "{all}"
    );
    assert!(
        all.contains("integration \"Bad_Name\": credentials: field `role_arn`"),
        "{all}"
    );
    assert!(
        all.contains("integration \"second\": field `addressing`"),
        "{all}"
    );
    assert!(
        all.contains("integration \"second\": credentials: field `secret_access_key_env`: environment variable `UNSET_VARIABLE` is not set"),
        "{all}"
    );
    assert_eq!(error.problems.len(), 4, "{all}");
}

#[test]
fn sts_durations_keep_to_aws_limits() {
    let sts = |duration: &str, token: bool| {
        let token = if token {
            "session_token_env = \"TOKEN\"\n"
        } else {
            ""
        };
        format!(
            "[sts]\nduration = \"{duration}\"\n[sts.credentials]\naccess_key_id = \"AK\"\nsecret_access_key_env = \"MINIO_SECRET\"\n{token}"
        )
    };
    let mut secrets = secrets();
    secrets.insert("TOKEN".to_string(), "session-token".to_string());
    for (duration, token, problem) in [
        ("10m", false, Some("must be between 15m and 12h")),
        ("13h", false, Some("must be between 15m and 12h")),
        ("12h", false, None),
        ("1h", true, None),
        (
            "2h",
            true,
            Some("must be at most 1h when [sts.credentials] has a session token"),
        ),
    ] {
        let outcome = Config::parse(&sts(duration, token), "sts.toml", &secrets);
        match (problem, outcome) {
            (None, Ok(config)) => assert_eq!(
                Some(config.sts.duration),
                parse_duration(duration),
                "{duration}"
            ),
            (Some(problem), Err(error)) => {
                let all = error.to_string();
                assert!(all.contains("sts.toml: [sts]: field `duration`"), "{all}");
                assert!(all.contains(problem), "{duration}, token {token}: {all}");
            }
            (expected, outcome) => {
                panic!("{duration}, token {token}: expected {expected:?}, got {outcome:?}")
            }
        }
    }
}

#[test]
fn unknown_keys_are_refused_with_the_file_named() {
    let error = Config::parse("[server]\nlisten_on = \"x\"\n", "typo.toml", &secrets())
        .expect_err("unknown key");
    let text = error.to_string();
    assert!(
        text.contains("typo.toml") && text.contains("listen_on"),
        "{text}"
    );
}

#[test]
fn an_integration_name_cannot_be_another_integrations_bucket() {
    let text = r#"
        [[integration]]
        name = "one"
        bucket = "shared-bucket"
        region = "us-east-1"
        [integration.credentials]
        source = "default-chain"

        [[integration]]
        name = "shared-bucket"
        bucket = "another"
        region = "us-east-1"
        [integration.credentials]
        source = "default-chain"
    "#;
    let error = Config::parse(text, "dup.toml", &secrets()).expect_err("conflict");
    assert!(
        error
            .to_string()
            .contains("`shared-bucket` is the name of integration \"shared-bucket\""),
        "{error}"
    );
}

#[test]
fn two_default_integrations_cannot_permit_one_bucket() {
    let text = r#"
        [[integration]]
        name = "first"
        default = true
        buckets = ["data-bucket"]
        region = "us-east-1"
        [integration.credentials]
        source = "default-chain"

        [[integration]]
        name = "second"
        default = true
        buckets = ["data-bucket", "other-bucket"]
        region = "us-east-1"
        [integration.credentials]
        source = "default-chain"
    "#;
    let error = Config::parse(text, "dup.toml", &secrets()).expect_err("ambiguous");
    assert!(
        error
            .to_string()
            .contains("also permitted by default integration \"first\""),
        "{error}"
    );
}

#[test]
fn tenants_may_share_a_bucket_under_their_own_prefixes() {
    let text = r#"
        [[integration]]
        name = "tenant-a"
        bucket = "shared-bucket"
        prefix = "a/"
        region = "us-east-1"
        [integration.credentials]
        source = "default-chain"

        [[integration]]
        name = "tenant-b"
        bucket = "shared-bucket"
        prefix = "b/"
        region = "us-east-1"
        [integration.credentials]
        source = "default-chain"
    "#;
    assert!(Config::parse(text, "shared.toml", &secrets()).is_ok());

    // A client names the tenant; the bucket alone would be ambiguous.
    let mut secrets = secrets();
    secrets.insert("CLIENT_SECRET".into(), "client-secret".into());
    let client = |bound: &str| {
        format!(
            "{text}\n[[client]]\naccess_key_id = \"AKTENANT\"\nsecret_access_key_env = \"CLIENT_SECRET\"\nintegrations = [{bound}]\n"
        )
    };
    let config = Config::parse(&client("\"tenant-b\""), "shared.toml", &secrets).expect("valid");
    assert_eq!(
        config.clients[0].bindings,
        vec![("tenant-b".to_string(), None)]
    );
    let error = Config::parse(&client("\"shared-bucket\""), "shared.toml", &secrets)
        .expect_err("ambiguous");
    assert!(
        error.to_string().contains(
            "bucket `shared-bucket` is shared by several integrations; name the integration"
        ),
        "{error}"
    );
}

#[test]
fn clients_bind_to_integrations_or_single_permitted_buckets() {
    let mut secrets = secrets();
    secrets.insert("CLIENT_SECRET".into(), "client-secret".into());
    let text = format!(
        "{GOOD}{}",
        r#"
        [[client]]
        access_key_id = "AKCLIENT1"
        secret_access_key_env = "CLIENT_SECRET"
        integrations = ["acme-media", "local-bucket", "bucket-two"]
        access = "read-write"
        "#
    );
    let config = Config::parse(&text, "clients.toml", &secrets).expect("valid");
    let client = &config.clients[0];
    assert_eq!(
        client.bindings,
        vec![
            ("acme-media".to_string(), None),
            ("local".to_string(), None),
            ("kolena-default".to_string(), Some("bucket-two".to_string())),
        ]
    );
    assert_eq!(client.access, Access::ReadWrite);
    assert!(!format!("{client:?}").contains("client-secret"));

    let unknown = format!(
        "{GOOD}{}",
        r#"
        [[client]]
        access_key_id = "AKCLIENT2"
        secret_access_key = "inline-secret"
        integrations = ["nowhere"]
        "#
    );
    let error = Config::parse(&unknown, "clients.toml", &secrets).expect_err("invalid");
    assert!(
        error
            .to_string()
            .contains("secrets are never written inline in a file"),
        "{error}"
    );
    let unknown = unknown.replace(
        "secret_access_key = \"inline-secret\"",
        "secret_access_key_env = \"CLIENT_SECRET\"",
    );
    let error = Config::parse(&unknown, "clients.toml", &secrets).expect_err("invalid");
    assert!(
        error.to_string().contains(
            "client \"AKCLIENT2\": field `integrations`: `nowhere` is not an integration"
        ),
        "{error}"
    );
}

#[test]
fn cors_wildcards_are_for_public_integrations_only() {
    let private = GOOD.replace(
        "prefix = \"labelling\"",
        "prefix = \"labelling\"\ncors_origins = [\"*\", \"https://App.example.com/\"]",
    );
    let error = Config::parse(&private, "cors.toml", &secrets()).expect_err("invalid");
    let text = error.to_string();
    assert!(
        text.contains("`*` is only for public integrations"),
        "{text}"
    );
    assert!(
        text.contains("must be written as a browser sends it"),
        "{text}"
    );
}

#[test]
fn bucket_names_follow_s3_rules() {
    assert!(check_bucket_name("my-bucket.v2").is_ok());
    for bad in [
        "ab",
        "Upper",
        "-dash",
        "dash-",
        "a..b",
        "has_underscore",
        "slash/x",
    ] {
        assert!(check_bucket_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn durations_and_endpoints_parse() {
    assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
    assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
    assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
    assert_eq!(parse_duration("5 minutes"), None);
    assert!(parse_endpoint("ftp://x").is_err());
    assert!(parse_endpoint("http://user:pw@host:9000").is_err());
    assert!(parse_endpoint("http://host:9000/path").is_err());
    let endpoint = parse_endpoint("https://S3.Example.com").expect("valid");
    assert_eq!(endpoint.authority(), "s3.example.com");
}

#[test]
fn prefixes_are_directories() {
    assert_eq!(check_prefix("tenant").as_deref(), Ok("tenant/"));
    assert_eq!(check_prefix("a/b/").as_deref(), Ok("a/b/"));
    assert!(check_prefix("/abs").is_err());
    assert!(check_prefix("a/../b").is_err());
}

#[test]
fn front_proxies_are_ranges_with_clear_host_bits() {
    let server = |lines: &str| {
        GOOD.replace(
            "base_domain = \"media.example.com\"",
            &format!("base_domain = \"media.example.com\"\n{lines}"),
        )
    };
    let config = Config::parse(
        &server("trusted_proxies = [\"10.0.0.0/8\", \"fd00::/8\", \"192.0.2.7\"]\nproxy_protocol = true\nclient_ip_header = \"forwarded\""),
        "f.toml",
        &secrets(),
    )
    .expect("valid");
    let front = &config.server.front;
    assert_eq!(front.trusted.len(), 3);
    assert!(front.trusted[0].contains("10.200.0.1".parse().expect("ip")));
    assert!(!front.trusted[0].contains("11.0.0.1".parse().expect("ip")));
    assert!(front.trusted[1].contains("fd12::1".parse().expect("ip")));
    assert!(front.trusted[2].contains("192.0.2.7".parse().expect("ip")));
    assert!(!front.trusted[2].contains("192.0.2.8".parse().expect("ip")));
    assert!(front.proxy_protocol);
    assert_eq!(front.header, ForwardedHeader::Forwarded);

    let error = Config::parse(
        &server("trusted_proxies = [\"10.0.0.1/8\", \"10.0.0.0/33\", \"::1/129\", \"proxy.local\"]\nclient_ip_header = \"x-real-ip\""),
        "f.toml",
        &secrets(),
    )
    .expect_err("invalid")
    .to_string();
    for expected in [
        "`10.0.0.1/8` has host bits set",
        "`10.0.0.0/33`: the prefix length must be 0-32",
        "`::1/129`: the prefix length must be 0-128",
        "`proxy.local` is not an address range",
        "`x-real-ip` is not",
    ] {
        assert!(error.contains(expected), "{expected}\n{error}");
    }
    // A PROXY header is believed from listed balancers only, so the list is required.
    let unlisted = Config::parse(&server("proxy_protocol = true"), "f.toml", &secrets())
        .expect_err("invalid")
        .to_string();
    assert!(
        unlisted.contains("field `trusted_proxies`: `proxy_protocol = true` needs"),
        "{unlisted}"
    );
    // None by default: no header is believed.
    let plain = Config::parse(GOOD, "f.toml", &secrets()).expect("valid");
    assert_eq!(plain.server.front, FrontProxies::default());
}

/// `GOOD` with its first integration's `role_arn` line replaced by `credentials`, in `region`.
fn with_credentials(credentials: &str, region: &str) -> String {
    GOOD.replace(
        "role_arn = \"arn:aws:iam::111122223333:role/Integration\"",
        credentials,
    )
    .replace("region = \"us-west-2\"", &format!("region = \"{region}\""))
}

#[test]
fn a_role_given_as_account_and_name_is_the_same_role_as_its_arn() {
    let with = with_credentials;
    let arn_of = |text: &str| {
        let config = Config::parse(text, "f.toml", &secrets()).expect("valid");
        match &config.integrations[0].credentials {
            CredentialSource::AssumeRole { role_arn, .. } => role_arn.clone(),
            other => panic!("{other:?}"),
        }
    };
    let parts = "account_id = \"111122223333\"\n    role_name = \"Integration\"";
    assert_eq!(
        arn_of(&with(parts, "us-west-2")),
        "arn:aws:iam::111122223333:role/Integration"
    );
    assert_eq!(arn_of(GOOD), arn_of(&with(parts, "us-west-2")));
    // The partition follows the region unless given.
    assert_eq!(
        arn_of(&with(parts, "cn-north-1")),
        "arn:aws-cn:iam::111122223333:role/Integration"
    );
    assert_eq!(
        arn_of(&with(parts, "us-gov-west-1")),
        "arn:aws-us-gov:iam::111122223333:role/Integration"
    );
    assert_eq!(
        arn_of(&with(
            &format!("{parts}\n    partition = \"aws\""),
            "cn-north-1"
        )),
        "arn:aws:iam::111122223333:role/Integration"
    );
    // A role path in an ARN is fine.
    assert_eq!(
        arn_of(&with(
            "role_arn = \"arn:aws:iam::111122223333:role/service-role/Integration\"",
            "us-west-2"
        )),
        "arn:aws:iam::111122223333:role/service-role/Integration"
    );
}

#[test]
fn a_role_in_either_form_is_checked_by_aws_rules() {
    let with = with_credentials;
    for (credentials, expected) in [
        (
            "account_id = \"1111-2222-3333\"\n    role_name = \"Integration\"",
            "field `account_id`: the account id `1111-2222-3333` is not 12 digits",
        ),
        (
            "account_id = \"111122223333\"\n    role_name = \"has space\"",
            "field `role_name`: the role name `has space` must be 1-64",
        ),
        (
            "account_id = \"111122223333\"",
            "field `role_name`: `account_id` and `role_name` go together",
        ),
        (
            "account_id = \"111122223333\"\n    role_name = \"R\"\n    partition = \"aws-mars\"",
            "field `partition`: the partition `aws-mars` is not one of",
        ),
        (
            "role_arn = \"arn:aws:iam::111122223333:role/x\"\n    account_id = \"111122223333\"\n    role_name = \"x\"",
            "not both",
        ),
        (
            "role_arn = \"arn:awsx:iam::111122223333:role/x\"",
            "the partition `awsx` is not one of",
        ),
        (
            "role_arn = \"arn:aws:iam::111122223333:role/\"",
            "is not an IAM role ARN",
        ),
    ] {
        let text = with(credentials, "us-west-2");
        let error = Config::parse(&text, "f.toml", &secrets())
            .expect_err(credentials)
            .to_string();
        assert!(error.contains(expected), "{expected}\n{error}");
    }
}

#[test]
fn limits_take_what_is_given_and_report_what_is_under_its_floor() {
    let minimal = "[[integration]]\nname = \"limits\"\nbucket = \"limits-bucket\"\nregion = \"us-east-1\"\n\
                   [integration.credentials]\nrole_arn = \"arn:aws:iam::111122223333:role/r\"\n";
    let given = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.limits]\nmax_header_bytes = 9000\n\
         max_headers = 9\nmax_uri_bytes = 300\nbody_buffer_bytes = 10000\nwide_transfers = 0\n\
         max_buffered_body_bytes = 2000000\nmax_connections = 2\nheader_read_timeout = \"1s\"\nidle_timeout = \"2s\"\n\
         upstream_connect_timeout = \"3s\"\nupstream_first_byte_timeout = \"4s\"\n\
         shutdown_deadline = \"5s\"\nrate_limit = 0\n{minimal}"
    );
    let limits = Config::parse(&given, "limits.toml", &secrets())
        .expect("valid")
        .server
        .limits;
    let seconds = Duration::from_secs;
    assert_eq!(
        limits,
        Limits {
            max_header_bytes: 9000,
            max_headers: 9,
            max_uri_bytes: 300,
            body_buffer_bytes: 10000,
            wide_transfers: 0,
            max_buffered_body_bytes: 2_000_000,
            max_connections: 2,
            header_read_timeout: seconds(1),
            idle_timeout: seconds(2),
            upstream_connect_timeout: seconds(3),
            upstream_first_byte_timeout: seconds(4),
            shutdown_deadline: seconds(5),
            rate_limit: None,
        }
    );
    assert_eq!(
        limits.narrow_body_buffer(),
        10000,
        "never wider than the wide one"
    );
    assert_eq!(Limits::default().narrow_body_buffer(), 64 * 1024);
    let defaulted = format!("[server]\nlisten = \"127.0.0.1:0\"\n{minimal}");
    let config = Config::parse(&defaulted, "defaults.toml", &secrets()).expect("valid");
    assert_eq!(config.server.limits, Limits::default());

    let under = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.limits]\nmax_header_bytes = 100\n\
         max_headers = 1\nmax_uri_bytes = 10\nbody_buffer_bytes = 1024\nmax_connections = 0\n\
         idle_timeout = \"0s\"\nshutdown_deadline = \"0s\"\n{minimal}"
    );
    let error = Config::parse(&under, "under.toml", &secrets()).expect_err("invalid");
    let all = error.to_string();
    for field in [
        "max_header_bytes`: must be at least 8192",
        "max_headers`: must be at least 8",
        "max_uri_bytes`: must be at least 256",
        "body_buffer_bytes`: must be at least 8192",
        "max_connections`: must be at least 1",
        "idle_timeout`: must be more than 0",
        "shutdown_deadline`: must be more than 0",
    ] {
        assert!(all.contains(field), "{field} in {all}");
    }
    assert_eq!(error.problems.len(), 7, "{all}");
}

#[test]
fn the_cache_disk_tier_needs_a_directory_and_a_budget_of_64mib_or_more() {
    let with = |cache: &str| {
        format!(
            "[server.cache]\nmemory = \"1MiB\"\n{cache}\n[[integration]]\nname = \"acme\"\n\
             bucket = \"a-bucket\"\nregion = \"us-east-1\"\n[integration.credentials]\n\
             source = \"default-chain\"\n"
        )
    };
    let good = Config::parse(
        &with("disk = \"/tmp/s3sp\"\ndisk_size = \"64MiB\""),
        "c.toml",
        &secrets(),
    )
    .expect("valid");
    assert_eq!(good.server.cache_disk, Some(("/tmp/s3sp".into(), 64 << 20)));
    for (cache, field) in [
        ("disk = \"/tmp/s3sp\"", "field `disk_size`"),
        ("disk_size = \"1GiB\"", "field `disk`"),
        (
            "disk = \"/tmp/s3sp\"\ndisk_size = \"63MiB\"",
            "field `disk_size`",
        ),
    ] {
        let error = Config::parse(&with(cache), "c.toml", &secrets()).expect_err(cache);
        assert!(error.to_string().contains(field), "{cache}: {error}");
    }
}

#[test]
fn a_buckets_own_name_means_its_one_scoped_integration_else_the_first_default() {
    use super::{BucketName, bucket_name};
    assert_eq!(
        bucket_name(Some((1, Some("a"))), Some("d")),
        BucketName::Scoped("a")
    );
    assert_eq!(
        bucket_name(Some((2, Some("a"))), Some("d")),
        BucketName::Shared
    );
    assert_eq!(bucket_name(None, Some("d")), BucketName::Permitted("d"));
    // An empty owner set (every scoped integration removed) is no owner at all.
    assert_eq!(
        bucket_name(Some((0, None)), Some("d")),
        BucketName::Permitted("d")
    );
    assert_eq!(bucket_name::<&str>(None, None), BucketName::Unknown);
}
