//! Who may call and where they may go: the client keys and the integration table of one
//! loaded configuration, with the configuration they came from. This is all the request
//! phase reads; the upstream phase's parts (credentials, the connection pool, the region
//! cache) live in the upstream phase's `State`, which holds one of these.

use std::sync::Arc;

use crate::auth::front_door::Clients;
use crate::config::{Config, Limits};
use crate::request::integration::Integrations;
use crate::request::lazy::Lazy;

/// The callers and integrations of one configuration.
pub struct Tenants {
    /// The configuration the tables were built from.
    pub config: Arc<Config>,
    pub(crate) clients: Clients,
    pub(crate) integrations: Integrations,
    /// With `[source] preload = false`: the integrations and clients fetched on demand, kept
    /// from one configuration to the next.
    pub lazy: Option<Arc<Lazy>>,
}

impl Tenants {
    /// Builds the client and integration tables of `config`; with `lazy`, they consult what
    /// it fetched after their own.
    pub fn new(config: Config, lazy: Option<Arc<Lazy>>) -> Self {
        Tenants {
            clients: Clients::new(&config.clients)
                .with_sigv2(config.server.sigv2)
                .with_fetched(lazy.as_ref().map(|lazy| lazy.clients())),
            integrations: Integrations::new(&config.integrations)
                .with_fetched(lazy.as_ref().map(|lazy| lazy.integrations())),
            config: Arc::new(config),
            lazy,
        }
    }

    /// The tables a source that fetches on demand fills ([`Lazy::prepare`]).
    pub fn tables(&self) -> (&Integrations, &Clients) {
        (&self.integrations, &self.clients)
    }

    /// The server's limits.
    pub fn limits(&self) -> &Limits {
        &self.config.server.limits
    }
}
