//! Resolution: which integration and which real bucket a logical bucket name means, and what a
//! caller may do there.
//!
//! A logical name is an integration's name (its scoped bucket is implied), a bucket an
//! integration is scoped to, or a bucket a default integration permits. The table is built once
//! from the validated config (which already refused two integrations claiming one name), so a
//! lookup is a single map access and a caller can never name a bucket outside the table.

use std::collections::HashMap;
use std::sync::Arc;

use crate::auth::front_door::Caller;
use crate::config::{Access, Buckets, Integration};
use crate::s3::error::Error;
use crate::s3::route::{Operation, Route, check_key};

/// A request mapped onto its integration: everything `sign` needs to build the upstream request.
#[derive(Debug, Clone)]
pub struct Target {
    /// The integration the request was mapped to.
    pub integration: Arc<Integration>,
    /// The real bucket upstream.
    pub bucket: String,
    /// The upstream key: the integration's prefix followed by the caller's key.
    pub key: String,
}

/// The longest key S3 accepts, in UTF-8 bytes.
const MAX_KEY_BYTES: usize = 1024;

/// Logical bucket name → (integration, real bucket).
#[derive(Debug, Default)]
pub struct Integrations {
    by_name: HashMap<String, (Arc<Integration>, Option<String>)>,
    /// Integrations fetched on demand from a live source (`[source] preload = false`), by
    /// name alone: filled before the request phase runs, read here.
    fetched: Option<moka::sync::Cache<String, Arc<Integration>>>,
}

impl Integrations {
    /// Builds the table from validated integrations (see `config` for the rules that keep it
    /// unambiguous): names first, then buckets scoped by exactly one integration, then buckets
    /// a default integration permits and no integration is scoped to.
    pub fn new(integrations: &[Arc<Integration>]) -> Self {
        let mut by_name = HashMap::new();
        let mut scoped: HashMap<&str, Vec<&Arc<Integration>>> = HashMap::new();
        for integration in integrations {
            let bucket = match &integration.buckets {
                Buckets::Scoped(bucket) => {
                    scoped.entry(bucket).or_default().push(integration);
                    Some(bucket.clone())
                }
                // The name alone does not say which bucket: only bucket names route there.
                Buckets::Permitted(_) => None,
            };
            by_name.insert(integration.name.clone(), (integration.clone(), bucket));
        }
        for (bucket, owners) in &scoped {
            match owners.as_slice() {
                [only] => {
                    by_name
                        .entry(bucket.to_string())
                        .or_insert(((*only).clone(), Some(bucket.to_string())));
                }
                _ => tracing::info!(
                    bucket,
                    "bucket is shared by several integrations; reach each by its name"
                ),
            }
        }
        for integration in integrations {
            if let Buckets::Permitted(buckets) = &integration.buckets {
                for bucket in buckets {
                    if !scoped.contains_key(bucket.as_str()) {
                        by_name
                            .entry(bucket.clone())
                            .or_insert((integration.clone(), Some(bucket.clone())));
                    }
                }
            }
        }
        Integrations {
            by_name,
            fetched: None,
        }
    }

    /// Integrations fetched on demand are found in `fetched` too, by their names.
    pub fn with_fetched(
        self,
        fetched: Option<moka::sync::Cache<String, Arc<Integration>>>,
    ) -> Self {
        Integrations { fetched, ..self }
    }

    /// The integration a logical name means and the real bucket it names (`None` for a
    /// multi-bucket integration's own name): the table's, or one fetched on demand.
    fn entry(&self, name: &str) -> Option<(Arc<Integration>, Option<String>)> {
        if let Some(found) = self.by_name.get(name) {
            return Some(found.clone());
        }
        let integration = self.fetched.as_ref()?.get(name)?;
        let bucket = match &integration.buckets {
            Buckets::Scoped(bucket) => Some(bucket.clone()),
            Buckets::Permitted(_) => None,
        };
        Some((integration, bucket))
    }

    /// The integration a logical bucket name means, if any (CORS needs it even when the
    /// request itself is refused).
    pub fn integration(&self, name: &str) -> Option<Arc<Integration>> {
        self.entry(name).map(|(integration, _)| integration)
    }

    /// The logical bucket names `caller` may list or read, sorted, for ListBuckets: each
    /// integration scoped to one bucket by its name, and each bucket a multi-bucket integration
    /// permits by the bucket's name. An anonymous caller sees the public ones.
    pub fn reachable(&self, caller: &Caller) -> Vec<String> {
        let fetched = self.fetched.iter().flat_map(|cache| {
            cache.iter().filter_map(|(name, integration)| {
                let Buckets::Scoped(bucket) = &integration.buckets else {
                    return None;
                };
                let bucket = Some(bucket.clone());
                Some((name.as_ref().clone(), (integration, bucket)))
            })
        });
        let table = self.by_name.iter().map(|(name, (integration, bucket))| {
            (name.clone(), (integration.clone(), bucket.clone()))
        });
        let mut names: Vec<String> = table
            .chain(fetched)
            .filter_map(|(name, (integration, bucket))| {
                let bucket = bucket.as_deref()?;
                let canonical = match integration.buckets {
                    Buckets::Scoped(_) => name == integration.name,
                    Buckets::Permitted(_) => name == bucket,
                };
                let may = match caller {
                    Caller::Client(client) => client.is_bound_to(&integration.name, bucket),
                    Caller::Anonymous => integration.public,
                };
                (canonical && may).then_some(name)
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Maps a route to its target, or says why the caller may not go there. Nothing here
    /// contacts the upstream, so a refused request never reaches it.
    pub fn resolve(&self, route: &Route, caller: &Caller) -> Result<Target, Error> {
        let (integration, bucket) = self.entry(&route.name).ok_or_else(|| Error::NoSuchBucket {
            name: route.name.clone(),
        })?;
        let bucket = bucket.ok_or_else(|| Error::InvalidRequest {
            reason: format!(
                "Integration {} serves several buckets; address one of them by its bucket name",
                integration.name
            ),
        })?;
        debug_assert!(integration.permits_bucket(&bucket));

        authorise(&integration, &bucket, route.operation, caller)?;

        // Bucket-level operations name no key; their prefix goes in the query (`server`).
        let key = if route.operation.is_bucket_level() {
            String::new()
        } else {
            self.upstream_key(&integration, &route.key)?
        };
        Ok(Target {
            integration: integration.clone(),
            bucket,
            key,
        })
    }

    /// The upstream key for a client's key: checked as the integration requires, under its
    /// prefix, within S3's length limit.
    pub fn upstream_key(&self, integration: &Integration, key: &str) -> Result<String, Error> {
        check_key(key, integration.allow_unusual_keys)?;
        let full_key = format!("{}{key}", integration.prefix);
        if full_key.len() > MAX_KEY_BYTES {
            return Err(Error::KeyTooLong {
                length: full_key.len(),
            });
        }
        Ok(full_key)
    }

    /// Rewrites a CopyObject/UploadPartCopy `x-amz-copy-source` (`[/]name/key[?versionId=…]`,
    /// key URL-encoded) to the real bucket and prefixed key. The source must be in the same
    /// integration: one set of upstream credentials cannot be assumed to reach another's bucket.
    pub fn copy_source(&self, header: &str, target: &Target) -> Result<String, Error> {
        let (path, version) = match header.split_once("?versionId=") {
            Some((path, version)) => (path, Some(version)),
            None => (header, None),
        };
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(path).collect();
        let decoded = String::from_utf8(decoded).map_err(|_| Error::InvalidArgument {
            reason: "x-amz-copy-source must be UTF-8 once decoded".to_string(),
        })?;
        let decoded = decoded.strip_prefix('/').unwrap_or(&decoded);
        let (name, key) = decoded
            .split_once('/')
            .ok_or_else(|| Error::InvalidArgument {
                reason: "x-amz-copy-source must be bucket/key".to_string(),
            })?;
        let (source, bucket) = self.entry(name).ok_or_else(|| Error::NoSuchBucket {
            name: name.to_string(),
        })?;
        let bucket = bucket.ok_or_else(|| Error::InvalidRequest {
            reason: format!(
                "Integration {} serves several buckets; name one",
                source.name
            ),
        })?;
        if source.name != target.integration.name {
            return Err(Error::NotImplemented {
                operation: format!(
                    "CopyObject from integration {} into integration {} (copies stay inside one integration)",
                    source.name, target.integration.name
                ),
            });
        }
        let full_key = self.upstream_key(&source, key)?;
        let mut rewritten = format!("/{bucket}/{}", crate::s3::sigv4::encode_key(&full_key));
        if let Some(version) = version {
            // Decoded and encoded again by the proxy: no client text goes into the header.
            let version = crate::s3::route::percent_decode(version)?;
            rewritten.push_str("?versionId=");
            rewritten.push_str(&crate::s3::sigv4::encode_query(&version));
        }
        Ok(rewritten)
    }
}

/// Whether `caller` may do `operation` on `bucket` of `integration`. A client reaches only the
/// integrations (or single buckets) it is bound to, whatever name or host it used to get here,
/// and writes only where both it and the integration are read-write; anyone may read objects
/// of a public integration.
fn authorise(
    integration: &Integration,
    bucket: &str,
    operation: Operation,
    caller: &Caller,
) -> Result<(), Error> {
    let public_read = matches!(operation, Operation::GetObject | Operation::HeadObject);
    match caller {
        Caller::Client(client) if client.is_bound_to(&integration.name, bucket) => {
            if !operation.is_write() {
                Ok(())
            } else if integration.access != Access::ReadWrite {
                Err(Error::AccessDenied {
                    reason: format!("integration {} is read-only", integration.name),
                })
            } else if client.access != Access::ReadWrite {
                Err(Error::AccessDenied {
                    reason: format!("client {} may only read", client.access_key_id),
                })
            } else {
                Ok(())
            }
        }
        _ if public_read && integration.public => Ok(()),
        Caller::Anonymous => Err(Error::AccessDenied {
            reason: format!(
                "integration {} does not allow anonymous {operation:?}",
                integration.name
            ),
        }),
        Caller::Client(client) => Err(Error::AccessDenied {
            reason: format!(
                "client {} may not reach integration {}",
                client.access_key_id, integration.name
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, SecretLookup};
    use http::Method;

    struct NoSecrets;
    impl SecretLookup for NoSecrets {
        fn var(&self, _: &str) -> Option<String> {
            None
        }
    }

    fn table() -> Integrations {
        let config = Config::parse(
            r#"
            [[integration]]
            name = "acme"
            bucket = "acme-bucket"
            prefix = "tenant"
            region = "us-east-1"
            public = true
            [integration.credentials]
            source = "default-chain"

            [[integration]]
            name = "private"
            bucket = "private-bucket"
            region = "us-east-1"
            [integration.credentials]
            source = "default-chain"

            [[integration]]
            name = "kolena"
            default = true
            buckets = ["data-one", "data-two"]
            region = "us-east-1"
            public = true
            [integration.credentials]
            source = "default-chain"
            "#,
            "test.toml",
            &NoSecrets,
        )
        .expect("valid");
        Integrations::new(&config.integrations)
    }

    fn resolve(path: &str) -> Result<Target, Error> {
        let route = crate::s3::route::route(&Method::GET, None, path, None, None)?;
        table().resolve(&route, &Caller::Anonymous)
    }

    #[test]
    fn anonymous_callers_list_the_public_names_once_each() {
        // `acme` is public (by its name, not again by its bucket); `private` is not; the
        // default integration's buckets are listed by their own names.
        assert_eq!(
            table().reachable(&Caller::Anonymous),
            ["acme", "data-one", "data-two"]
        );
    }

    #[test]
    fn integration_name_and_scoped_bucket_reach_the_same_target() {
        for path in ["/acme/a/b.png", "/acme-bucket/a/b.png"] {
            let target = resolve(path).expect("resolves");
            assert_eq!(target.integration.name, "acme");
            assert_eq!(target.bucket, "acme-bucket");
            assert_eq!(target.key, "tenant/a/b.png");
        }
    }

    #[test]
    fn default_integration_serves_each_permitted_bucket_by_name() {
        let target = resolve("/data-two/x").expect("resolves");
        assert_eq!(
            (target.integration.name.as_str(), target.bucket.as_str()),
            ("kolena", "data-two")
        );
        assert_eq!(
            resolve("/kolena/x").map_err(|e| e.code()).err(),
            Some("InvalidRequest")
        );
        assert_eq!(
            resolve("/data-three/x").map_err(|e| e.code()).err(),
            Some("NoSuchBucket")
        );
    }

    #[test]
    fn prefix_boundary_cannot_be_crossed() {
        // `tenant` is a directory: the final key always starts with `tenant/`.
        for path in ["/acme/-x", "/acme/..%2Fother", "/acme/%2E%2E/x"] {
            match resolve(path) {
                Ok(target) => assert!(target.key.starts_with("tenant/"), "{}", target.key),
                Err(error) => assert_eq!(error.code(), "InvalidArgument", "{path}"),
            }
        }
        assert_eq!(
            resolve("/acme/../x").map_err(|e| e.code()).err(),
            Some("InvalidArgument")
        );
    }

    #[test]
    fn a_bucket_shared_by_tenants_is_reached_only_through_their_names() {
        let config = Config::parse(
            r#"
            [[integration]]
            name = "tenant-a"
            bucket = "shared-bucket"
            prefix = "a/"
            region = "us-east-1"
            public = true
            [integration.credentials]
            source = "default-chain"

            [[integration]]
            name = "tenant-b"
            bucket = "shared-bucket"
            prefix = "b/"
            region = "us-east-1"
            public = true
            [integration.credentials]
            source = "default-chain"

            [[integration]]
            name = "fallback"
            default = true
            buckets = ["shared-bucket", "open-bucket"]
            region = "us-east-1"
            public = true
            [integration.credentials]
            source = "default-chain"
            "#,
            "shared.toml",
            &NoSecrets,
        )
        .expect("valid");
        let table = Integrations::new(&config.integrations);
        let resolve = |path: &str| {
            let route = crate::s3::route::route(&Method::GET, None, path, None, None)?;
            table.resolve(&route, &Caller::Anonymous)
        };
        let a = resolve("/tenant-a/k").expect("resolves");
        assert_eq!(
            (a.bucket.as_str(), a.key.as_str()),
            ("shared-bucket", "a/k")
        );
        let b = resolve("/tenant-b/k").expect("resolves");
        assert_eq!(b.key, "b/k");
        assert_eq!(
            resolve("/shared-bucket/k").map_err(|e| e.code()).err(),
            Some("NoSuchBucket"),
            "neither tenant nor the default integration may claim a bucket tenants share"
        );
        assert_eq!(
            resolve("/open-bucket/k")
                .expect("resolves")
                .integration
                .name,
            "fallback"
        );
    }

    #[test]
    fn private_integrations_refuse_anonymous_callers() {
        assert_eq!(
            resolve("/private/k").map_err(|e| e.code()).err(),
            Some("AccessDenied")
        );
    }

    #[test]
    fn keys_over_the_s3_limit_under_the_prefix_are_refused() {
        let long = "k".repeat(1020);
        assert_eq!(
            resolve(&format!("/acme/{long}"))
                .map_err(|e| e.code())
                .err(),
            Some("KeyTooLongError")
        );
        assert!(resolve(&format!("/data-one/{}", "k".repeat(1024))).is_ok());
    }
}
