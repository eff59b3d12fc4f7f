//! One loaded configuration, ready to serve: its tenants (client keys and integrations), the
//! credential cache, the upstream pool and the region cache. The proxy swaps it whole on reload;
//! requests in flight keep the state they started with. Every `impl State` is here; what
//! the proxy asks the store of its own accord (a bucket's region, `check`'s probes) is in
//! `region` and `probe`, as functions of a state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::config::{Config, Limits};
use crate::request::tenants::Tenants;
use crate::upstream::credentials::{CredentialCache, sdk_http_client};
use crate::upstream::forward::Upstream;

pub struct State {
    /// The callers and integrations: all the request phase reads.
    pub tenants: Tenants,
    pub credentials: Arc<CredentialCache>,
    pub(crate) upstream: Arc<Upstream>,
    /// Buckets' discovered regions (`region = "auto"`), kept across reloads: the one cache
    /// requests, form uploads, `check` and `explain` all ask.
    pub(crate) regions: Arc<Regions>,
}

/// Regions discovered for `region = "auto"` integrations: (endpoint, bucket) → region. The
/// cache lives with the state; `region` fills and reads it.
#[derive(Default)]
pub struct Regions {
    pub(crate) known: Mutex<HashMap<(String, String), String>>,
}

impl State {
    /// Builds the state for `config`, keeping from `previous` what still fits: the credential
    /// cache when STS is reached the same way (its keys are whole identities, so a changed or
    /// removed integration cannot reuse another's), and the upstream pool when its limits
    /// are the same. A reloaded config keeps the proxy's clock.
    pub fn new(mut config: Config, previous: Option<&State>) -> std::io::Result<Self> {
        if let Some(previous) = previous {
            config.clock = previous.tenants.config.clock.clone();
        }
        let credentials = match previous {
            Some(previous) if previous.credentials.serves(&config.sts) => {
                previous.credentials.clone()
            }
            _ => Arc::new(CredentialCache::new(
                config.sts.clone(),
                sdk_http_client(),
                config.clock.clone(),
            )),
        };
        let upstream = match previous {
            Some(previous) if previous.upstream.fits(&config.server.limits) => {
                previous.upstream.forget_ca_bundles();
                previous.upstream.clone()
            }
            _ => Arc::new(Upstream::new(&config.server.limits).map_err(std::io::Error::other)?),
        };
        let regions = previous.map_or_else(Arc::default, |previous| previous.regions.clone());
        Ok(State {
            tenants: Tenants::new(config, previous.and_then(|p| p.tenants.lazy.clone())),
            credentials,
            upstream,
            regions,
        })
    }

    /// The state `previous` becomes with other `tenants`: the same credential cache,
    /// upstream pool and region cache.
    pub fn with_tenants(previous: &State, tenants: Tenants) -> Self {
        State {
            tenants,
            credentials: previous.credentials.clone(),
            upstream: previous.upstream.clone(),
            regions: previous.regions.clone(),
        }
    }

    pub fn limits(&self) -> &Limits {
        self.tenants.limits()
    }
}
