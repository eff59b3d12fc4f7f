//! One `[[integration]]` entry checked into an [`Integration`]: each field by a function of
//! its own, every problem collected with the integration's place.

use std::path::PathBuf;
use std::time::Duration;

use super::credential_source::build_credentials;
use super::fields::{check_bucket_name, check_prefix, parse_duration, parse_endpoint, parse_size};
use super::problems::{Problems, parse_access, parse_setting_duration};
use super::raw::RawIntegration;
use super::secret::SecretLookup;
use super::{
    ActiveContent, Addressing, Buckets, CachePolicy, Delivery, Endpoint, Integration, Region,
    Scheme,
};

/// The longest an S3 presigned URL may live.
const MAX_PRESIGN_SECONDS: u64 = 7 * 24 * 3600;

/// Checks the `index`th `[[integration]]`; `None` when it has any problem.
pub(super) fn build_integration(
    index: usize,
    raw: RawIntegration,
    problems: &mut Problems<'_>,
    secrets: &dyn SecretLookup,
) -> Option<Integration> {
    let name = raw.name.clone().unwrap_or_default();
    let place = if name.is_empty() {
        format!("integration #{}", index + 1)
    } else {
        format!("integration \"{name}\"")
    };
    let before = problems.list.len();
    let mut check = Check {
        place: &place,
        problems,
    };
    check.name(&name);
    let buckets = check.buckets(&raw);
    let prefix = check.prefix(raw.prefix.as_deref());
    let region = check.region(raw.region.as_deref());
    let raw_region = raw.region.clone();
    let endpoint = raw.endpoint.as_deref().and_then(|text| {
        parse_endpoint(text)
            .map_err(|reason| check.problems.add(&place, "endpoint", reason))
            .ok()
    });
    let ca_file = check.ca_file(raw.ca_file.as_deref(), endpoint.as_ref());
    let addressing = check.addressing(raw.addressing.as_deref(), endpoint.as_ref(), &buckets);
    let access = parse_access(raw.access.as_deref(), &place, check.problems);
    let active_content = check.active_content(raw.active_content.as_deref());
    let cors_origins = check.cors_origins(raw.cors_origins.clone().unwrap_or_default(), raw.public);
    let delivery = check.delivery(raw.delivery.as_deref(), raw.redirect_expires.as_deref());
    let cache = check.cache(
        raw.cache_ttl.as_deref(),
        raw.cache_max_object.as_deref(),
        raw.cache_stale_if_error.as_deref(),
    );
    let credentials = match raw.credentials {
        None => {
            problems.add(
                &place,
                "credentials",
                "is required: [integration.credentials] with role_arn, access_key_id or source",
            );
            None
        }
        Some(raw) => {
            let place = format!("{place}: credentials");
            let region = raw_region.as_deref();
            build_credentials(raw, &place, region, problems, secrets)
        }
    };

    if problems.list.len() > before {
        return None;
    }
    Some(Integration {
        name,
        buckets: buckets?,
        prefix,
        region: region?,
        endpoint,
        ca_file,
        addressing,
        access,
        public: raw.public,
        allow_unusual_keys: raw.allow_unusual_keys,
        allow_acl_headers: raw.allow_acl_headers,
        active_content,
        credentials: credentials?,
        cors_origins,
        delivery,
        cache,
    })
}

/// The checks of one integration's fields, reporting at its place.
struct Check<'p, 'o> {
    place: &'p str,
    problems: &'p mut Problems<'o>,
}

impl Check<'_, '_> {
    /// `cache_ttl` (caching on for this integration), `cache_max_object` (64 MiB) and
    /// `cache_stale_if_error` (0: off).
    fn cache(
        &mut self,
        ttl: Option<&str>,
        max_object: Option<&str>,
        stale_if_error: Option<&str>,
    ) -> Option<CachePolicy> {
        let stale_if_error = match stale_if_error.map(|text| (text, parse_duration(text))) {
            None => Duration::ZERO,
            Some((_, Some(duration))) => duration,
            Some((text, None)) => {
                self.add(
                    "cache_stale_if_error",
                    format!("`{text}` is not a duration like \"5m\""),
                );
                return None;
            }
        };
        let max_object = match max_object.map(|text| (text, parse_size(text))) {
            None => 64 << 20,
            Some((_, Some(bytes))) if bytes > 0 => bytes,
            Some((text, _)) => {
                self.add(
                    "cache_max_object",
                    format!("`{text}` is not a size like \"64MiB\""),
                );
                return None;
            }
        };
        let text = ttl?;
        match parse_duration(text) {
            Some(ttl) if !ttl.is_zero() => Some(CachePolicy {
                ttl,
                max_object,
                stale_if_error,
            }),
            _ => {
                self.add(
                    "cache_ttl",
                    format!("`{text}` is not a duration like \"60s\""),
                );
                None
            }
        }
    }

    fn add(&mut self, field: &str, message: impl std::fmt::Display) {
        self.problems.add(self.place, field, message);
    }

    fn name(&mut self, name: &str) {
        if name.is_empty() {
            self.add("name", "is required");
        } else if let Err(reason) = check_bucket_name(name) {
            self.add(
                "name",
                format!("is used as a logical bucket name in URLs and {reason}"),
            );
        }
    }

    fn buckets(&mut self, raw: &RawIntegration) -> Option<Buckets> {
        let buckets = match (&raw.bucket, &raw.buckets, raw.default) {
            (Some(bucket), None, false) => Buckets::Scoped(bucket.clone()),
            (None, Some(list), true) if !list.is_empty() => Buckets::Permitted(list.clone()),
            (None, Some(_), true) => {
                self.add("buckets", "must name at least one bucket");
                return None;
            }
            (None, Some(_), false) => {
                self.add("default", "`buckets = [...]` needs `default = true`");
                return None;
            }
            (Some(_), _, true) | (Some(_), Some(_), _) => {
                self.add(
                    "bucket",
                    "give either `bucket` (only this bucket) or `buckets` with `default = true` \
                     (every permitted bucket), not both",
                );
                return None;
            }
            (None, None, _) => {
                self.add("bucket", "is required (or `buckets` with `default = true`)");
                return None;
            }
        };
        let list: Vec<&String> = match &buckets {
            Buckets::Scoped(bucket) => vec![bucket],
            Buckets::Permitted(list) => list.iter().collect(),
        };
        for bucket in list {
            if let Err(reason) = check_bucket_name(bucket) {
                self.add("bucket", format!("`{bucket}` {reason}"));
            }
        }
        Some(buckets)
    }

    fn prefix(&mut self, prefix: Option<&str>) -> String {
        match prefix.map(check_prefix) {
            None => String::new(),
            Some(Ok(prefix)) => prefix,
            Some(Err(reason)) => {
                self.add("prefix", reason);
                String::new()
            }
        }
    }

    fn region(&mut self, region: Option<&str>) -> Option<Region> {
        match region {
            None => {
                self.add("region", "is required (e.g. \"us-east-1\")");
                None
            }
            Some("auto") => Some(Region::Auto),
            Some(region)
                if !region.is_empty()
                    && region
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
            {
                Some(Region::Named(region.to_string()))
            }
            Some(region) => {
                self.add(
                    "region",
                    format!("`{region}` is not a region name like us-west-2"),
                );
                None
            }
        }
    }

    fn ca_file(&mut self, ca_file: Option<&str>, endpoint: Option<&Endpoint>) -> Option<PathBuf> {
        let path = PathBuf::from(ca_file?);
        if endpoint.is_none_or(|e| e.scheme != Scheme::Https) {
            self.add(
                "ca_file",
                "is for an `https://` endpoint (AWS is verified against the system's roots)",
            );
        } else if let Err(error) = crate::config::tls::read_ca_file(&path) {
            self.add("ca_file", error);
        }
        Some(path)
    }

    fn addressing(
        &mut self,
        addressing: Option<&str>,
        endpoint: Option<&Endpoint>,
        buckets: &Option<Buckets>,
    ) -> Addressing {
        let addressing = match addressing {
            None if endpoint.is_some() => Addressing::Path,
            None => Addressing::VirtualHost,
            Some("path") => Addressing::Path,
            Some("virtual-host") => Addressing::VirtualHost,
            Some(other) => {
                self.add(
                    "addressing",
                    format!("`{other}` is not \"virtual-host\" or \"path\""),
                );
                Addressing::Path
            }
        };
        if let (Addressing::VirtualHost, Some(Buckets::Scoped(bucket))) = (addressing, buckets)
            && bucket.contains('.')
            && endpoint.is_none_or(|e| e.scheme == Scheme::Https)
        {
            self.add(
                "addressing",
                "a bucket name with dots cannot be reached virtual-host style over TLS (its name \
                 breaks the certificate match); use addressing = \"path\"",
            );
        }
        addressing
    }

    fn active_content(&mut self, text: Option<&str>) -> ActiveContent {
        match text {
            None | Some("sandbox") => ActiveContent::Sandbox,
            Some("attachment") => ActiveContent::Attachment,
            Some("allow") => ActiveContent::Allow,
            Some(other) => {
                self.add(
                    "active_content",
                    format!("`{other}` is not \"sandbox\", \"attachment\" or \"allow\""),
                );
                ActiveContent::Sandbox
            }
        }
    }

    fn cors_origins(&mut self, origins: Vec<String>, public: bool) -> Vec<String> {
        for origin in &origins {
            if origin == "*" {
                if !public {
                    self.add(
                        "cors_origins",
                        "`*` is only for public integrations; list the exact origins",
                    );
                }
            } else if let Err(reason) = check_origin(origin) {
                self.add("cors_origins", reason);
            }
        }
        origins
    }

    fn delivery(&mut self, delivery: Option<&str>, redirect_expires: Option<&str>) -> Delivery {
        let delivery = match delivery {
            None | Some("stream") => Delivery::Stream,
            Some("redirect") => Delivery::Redirect {
                expires: parse_setting_duration(
                    redirect_expires,
                    Duration::from_secs(300),
                    self.place,
                    "redirect_expires",
                    self.problems,
                ),
            },
            Some(other) => {
                self.add(
                    "delivery",
                    format!("`{other}` is not \"stream\" or \"redirect\""),
                );
                Delivery::Stream
            }
        };
        if let Delivery::Redirect { expires } = delivery
            && !(1..=MAX_PRESIGN_SECONDS).contains(&expires.as_secs())
        {
            self.add("redirect_expires", "must be between 1s and 7 days");
        }
        delivery
    }
}

/// `https://app.example.com[:port]`: what a browser sends as `Origin`.
fn check_origin(origin: &str) -> Result<(), String> {
    let endpoint = parse_endpoint(origin)
        .map_err(|_| format!("`{origin}` is not an origin like https://app.example.com"))?;
    if endpoint.url() != origin.to_ascii_lowercase() {
        return Err(format!(
            "`{origin}` must be written as a browser sends it: scheme://host[:port], lower case, no `/`"
        ));
    }
    Ok(())
}
