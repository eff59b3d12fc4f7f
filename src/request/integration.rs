//! Resolution: which integration and which real bucket a logical bucket name means, and what a
//! caller may do there.
//!
//! A logical name is an integration's name (its scoped bucket is implied), a bucket an
//! integration is scoped to, or a bucket a default integration permits. The table is built once
//! from the validated config (which already refused two integrations claiming one name), so a
//! lookup is a single map access and a caller can never name a bucket outside the table.

use std::collections::BTreeMap;
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
///
/// Persistent maps (`imbl`): a live source's change makes a new table that shares everything
/// it did not change with the previous one, so applying a row costs a few map operations
/// whatever the number of integrations, and a request holding the previous table keeps it.
#[derive(Debug, Default, Clone)]
pub struct Integrations {
    /// Integrations by their names.
    names: imbl::HashMap<String, Arc<Integration>>,
    /// The integrations scoped to each bucket, by name: a bucket with exactly one is reached by
    /// its own name too.
    scoped: imbl::HashMap<String, imbl::OrdSet<String>>,
    /// The default integrations permitting each bucket, in the order they came in: the first
    /// serves the bucket by its name when no integration is scoped to it.
    permitted: imbl::HashMap<String, imbl::Vector<String>>,
    /// Integrations fetched on demand from a live source (`[source] preload = false`), by
    /// name alone: filled before the request phase runs, read here.
    fetched: Option<moka::sync::Cache<String, Arc<Integration>>>,
}

impl Integrations {
    /// Builds the table from validated integrations (see `config` for the rules that keep it
    /// unambiguous): names first, then buckets scoped by exactly one integration, then buckets
    /// a default integration permits and no integration is scoped to.
    pub fn new(integrations: &[Arc<Integration>]) -> Self {
        let mut table = Integrations::default();
        for integration in integrations {
            table.insert(integration.clone());
        }
        for (bucket, owners) in &table.scoped {
            if owners.len() > 1 {
                tracing::info!(
                    bucket,
                    "bucket is shared by several integrations; reach each by its name"
                );
            }
        }
        table
    }

    /// This table with `changes` applied, each integration name to its new version (`None`:
    /// removed). The previous table is untouched.
    pub fn changed(&self, changes: &BTreeMap<String, Option<Arc<Integration>>>) -> Self {
        let mut table = self.clone();
        for (name, integration) in changes {
            table.remove(name);
            if let Some(integration) = integration {
                table.insert(integration.clone());
            }
        }
        table
    }

    fn insert(&mut self, integration: Arc<Integration>) {
        let name = integration.name.clone();
        self.remove(&name);
        match &integration.buckets {
            Buckets::Scoped(bucket) => {
                self.scoped
                    .entry(bucket.clone())
                    .or_default()
                    .insert(name.clone());
            }
            Buckets::Permitted(buckets) => {
                for bucket in buckets {
                    self.permitted
                        .entry(bucket.clone())
                        .or_default()
                        .push_back(name.clone());
                }
            }
        }
        self.names.insert(name, integration);
    }

    fn remove(&mut self, name: &str) {
        let Some(integration) = self.names.remove(name) else {
            return;
        };
        match &integration.buckets {
            Buckets::Scoped(bucket) => {
                if let Some(owners) = self.scoped.get_mut(bucket) {
                    owners.remove(name);
                    if owners.is_empty() {
                        self.scoped.remove(bucket);
                    }
                }
            }
            Buckets::Permitted(buckets) => {
                for bucket in buckets {
                    if let Some(owners) = self.permitted.get_mut(bucket) {
                        owners.retain(|owner| owner != name);
                        if owners.is_empty() {
                            self.permitted.remove(bucket);
                        }
                    }
                }
            }
        }
    }

    /// Every integration in the table (not those fetched on demand), in no particular order.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Integration>> {
        self.names.values()
    }

    /// Every integration in the table, by name.
    pub fn sorted(&self) -> Vec<&Arc<Integration>> {
        let mut all: Vec<_> = self.names.values().collect();
        all.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// How many integrations the table holds.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the table holds none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Integrations fetched on demand are found in `fetched` too, by their names.
    pub fn with_fetched(
        self,
        fetched: Option<moka::sync::Cache<String, Arc<Integration>>>,
    ) -> Self {
        Integrations { fetched, ..self }
    }

    /// The integration serving a bucket by the bucket's own name: the one integration scoped
    /// to it, or (when none is) the first default integration permitting it.
    fn by_bucket(&self, bucket: &str) -> Option<Arc<Integration>> {
        let scoped = self
            .scoped
            .get(bucket)
            .map(|owners| (owners.len(), owners.get_min()));
        let permitting = self.permitted.get(bucket).and_then(|owners| owners.front());
        let owner = match crate::config::bucket_name(scoped, permitting) {
            crate::config::BucketName::Scoped(owner)
            | crate::config::BucketName::Permitted(owner) => owner,
            crate::config::BucketName::Shared | crate::config::BucketName::Unknown => return None,
        };
        self.names.get(owner).cloned()
    }

    /// The integration a logical name means and the real bucket it names (`None` for a
    /// multi-bucket integration's own name): the table's, or one fetched on demand.
    fn entry(&self, name: &str) -> Option<(Arc<Integration>, Option<String>)> {
        let integration = match self.names.get(name) {
            Some(integration) => integration.clone(),
            None => match self.by_bucket(name) {
                Some(integration) => return Some((integration, Some(name.to_string()))),
                None => self.fetched.as_ref()?.get(name)?,
            },
        };
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
            cache
                .iter()
                .filter(|(name, _)| !self.names.contains_key(name.as_str()))
                .map(|(_, integration)| integration)
        });
        let table = self.names.values().cloned();
        let mut names: Vec<String> = Vec::new();
        for integration in table.chain(fetched) {
            let may = |bucket: &str| match caller {
                Caller::Client(client) => client.is_bound_to(&integration.name, bucket),
                Caller::Anonymous => integration.public,
            };
            match &integration.buckets {
                Buckets::Scoped(bucket) => {
                    if may(bucket) {
                        names.push(integration.name.clone());
                    }
                }
                Buckets::Permitted(buckets) => {
                    for bucket in buckets {
                        let serves = self
                            .by_bucket(bucket)
                            .is_some_and(|owner| owner.name == integration.name);
                        if serves && may(bucket) {
                            names.push(bucket.clone());
                        }
                    }
                }
            }
        }
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

    /// A change applied to a table gives what building the table whole from the changed list
    /// gives (names, buckets reached by their own name, ListBuckets), and leaves the previous
    /// table as it was.
    #[test]
    fn a_change_gives_what_a_rebuild_gives() {
        let config = Config::parse(
            r#"
            [[integration]]
            name = "tenant-a"
            bucket = "shared-bucket"
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

            [[integration]]
            name = "second-fallback"
            default = true
            buckets = ["other-bucket"]
            region = "us-east-1"
            public = true
            [integration.credentials]
            source = "default-chain"
            "#,
            "shared.toml",
            &NoSecrets,
        )
        .expect("valid");
        let all = config.integrations;
        let names = [
            "shared-bucket",
            "open-bucket",
            "other-bucket",
            "tenant-a",
            "tenant-b",
        ];
        let view = |table: &Integrations| {
            let owners: Vec<Option<String>> = names
                .iter()
                .map(|name| table.integration(name).map(|i| i.name.clone()))
                .collect();
            (owners, table.reachable(&Caller::Anonymous))
        };
        let full = Integrations::new(&all);
        let before = view(&full);
        assert_eq!(before.0[0], None, "two tenants share the bucket");
        // Each subset of the four, reached by changes from the full table, against a rebuild.
        for mask in 0..16u32 {
            let kept: Vec<Arc<Integration>> = (0..4)
                .filter(|bit| mask & (1 << bit) != 0)
                .map(|bit| all[bit].clone())
                .collect();
            let changes: BTreeMap<String, Option<Arc<Integration>>> = (0..4)
                .filter(|bit| mask & (1 << bit) == 0)
                .map(|bit| (all[bit].name.clone(), None))
                .collect();
            let changed = full.changed(&changes);
            assert_eq!(
                view(&changed),
                view(&Integrations::new(&kept)),
                "{mask:04b}"
            );
            assert_eq!(changed.len(), kept.len());
            // And back again: adding the removed ones restores the full table.
            let restore = changes
                .keys()
                .map(|name| {
                    let integration = all.iter().find(|i| &i.name == name).cloned();
                    (name.clone(), integration)
                })
                .collect();
            let restored = changed.changed(&restore);
            let (owners, listed) = view(&restored);
            assert_eq!(owners, before.0, "{mask:04b}");
            assert_eq!(listed, before.1, "{mask:04b}");
        }
        assert_eq!(view(&full), before, "the previous table is untouched");
        let open = |table: &Integrations| table.integration("open-bucket").map(|i| i.name.clone());
        assert_eq!(open(&full).as_deref(), Some("fallback"));
        let without_a = full.changed(&BTreeMap::from([("tenant-a".to_string(), None)]));
        assert_eq!(
            without_a
                .integration("shared-bucket")
                .map(|i| i.name.clone())
                .as_deref(),
            Some("tenant-b"),
            "a bucket left with one tenant is reached by its name"
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
