//! Who may call and where they may go: the client keys and the integration table, with the
//! settings of the configuration they came from. This is all the request phase reads; the
//! upstream phase's parts (credentials, the connection pool, the region cache) live in the
//! upstream phase's `State`, which holds one of these.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::auth::front_door::Clients;
use crate::config::{ClientConfig, Config, Integration, Limits};
use crate::request::integration::Integrations;
use crate::request::lazy::Lazy;

/// The callers and integrations in force.
pub struct Tenants {
    /// The configuration's settings. Its integration and client lists are empty: the tables
    /// hold them, and a live source's change reaches only the tables.
    pub config: Arc<Config>,
    pub(crate) clients: Clients,
    pub(crate) integrations: Integrations,
    /// With `[source] preload = false`: the integrations and clients fetched on demand, kept
    /// from one configuration to the next.
    pub lazy: Option<Arc<Lazy>>,
}

/// What a live source changed since it last published: each integration name and client key
/// to its new version, `None` where it was removed.
#[derive(Default, Debug)]
pub struct Change {
    pub integrations: BTreeMap<String, Option<Arc<Integration>>>,
    pub clients: BTreeMap<String, Option<ClientConfig>>,
}

impl Change {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.integrations.is_empty() && self.clients.is_empty()
    }
}

impl Tenants {
    /// Builds the client and integration tables of `config`; with `lazy`, they consult what
    /// it fetched after their own.
    pub fn new(mut config: Config, lazy: Option<Arc<Lazy>>) -> Self {
        let clients = Clients::new(&std::mem::take(&mut config.clients));
        let integrations = Integrations::new(&std::mem::take(&mut config.integrations));
        Tenants {
            clients,
            integrations,
            config: Arc::new(config),
            lazy: None,
        }
        .with_lazy(lazy)
    }

    /// These tenants with `lazy`'s fetched integrations and clients consulted after the
    /// tables' own.
    pub fn with_lazy(self, lazy: Option<Arc<Lazy>>) -> Self {
        Tenants {
            clients: self
                .clients
                .with_sigv2(self.config.server.sigv2)
                .with_fetched(lazy.as_ref().map(|lazy| lazy.clients())),
            integrations: self
                .integrations
                .with_fetched(lazy.as_ref().map(|lazy| lazy.integrations())),
            config: self.config,
            lazy,
        }
    }

    /// These tenants with a live source's `change` applied: the tables share everything it
    /// did not touch, and the settings are the same.
    pub fn changed(&self, change: &Change) -> Self {
        Tenants {
            config: self.config.clone(),
            clients: self.clients.changed(&change.clients),
            integrations: self.integrations.changed(&change.integrations),
            lazy: self.lazy.clone(),
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
