//! Live sources of integrations and clients: a directory of TOML files and a PostgreSQL
//! database, beside the main file. Each source puts *parts* (a file, a row) into the
//! [`Catalog`]; a part is validated whole before it goes in, and a refused part leaves the
//! previous version of it in force. What the catalog holds is published to the proxy as one
//! new state that keeps the credential cache, the upstream pool and the region cache, so a
//! changed integration is used by the next request and a request in flight finishes on the
//! one it started with.

pub mod directory;
pub mod on_demand;
pub mod postgres;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::config::{Config, Fragment, Integration};
use crate::proxy::Proxy;

/// What every source holds now, and where each name came from.
pub struct Catalog {
    /// The main file (its integrations and clients are the part named "the main file").
    base: Config,
    /// Parts by origin: `directory:FILE`, `postgres:integration:NAME`, `postgres:client:KEY`.
    parts: BTreeMap<String, Part>,
    /// Integration names and client keys, each with the origin that defines it.
    owners: HashMap<(Kind, String), String>,
}

/// A part in force, with when it was last changed (a row's `updated_at`, a file's content).
pub struct Part {
    /// Its integrations and clients.
    pub fragment: Fragment,
    /// The version it was read at: a row's `updated_at`, a file's content hash.
    pub version: String,
    /// A hash of the text it was read from.
    pub digest: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Integration,
    Client,
}

const MAIN_FILE: &str = "the main file";

/// The catalog, shared by the sources and the admin listener.
pub type Shared = Arc<Mutex<Catalog>>;

impl Catalog {
    /// A catalog holding the main file alone.
    pub fn new(base: Config) -> Self {
        let mut catalog = Catalog {
            base: Config {
                integrations: Vec::new(),
                clients: Vec::new(),
                ..base.clone()
            },
            parts: BTreeMap::new(),
            owners: HashMap::new(),
        };
        let fragment = Fragment {
            integrations: base.integrations,
            clients: base.clients,
        };
        catalog.own(MAIN_FILE, &fragment);
        catalog.parts.insert(
            MAIN_FILE.to_string(),
            Part {
                fragment,
                version: String::new(),
                digest: String::new(),
            },
        );
        catalog
    }

    /// The main file was read again: its settings and its own part are replaced, every
    /// source's parts stay.
    pub fn set_base(&mut self, base: Config) -> Result<(), String> {
        let fragment = Fragment {
            integrations: base.integrations.clone(),
            clients: base.clients.clone(),
        };
        self.put(MAIN_FILE, fragment, String::new(), String::new())?;
        self.base = Config {
            integrations: Vec::new(),
            clients: Vec::new(),
            ..base
        };
        Ok(())
    }

    /// The integrations in force outside `origin`.
    pub fn others(&self, origin: &str) -> Vec<Arc<Integration>> {
        self.parts
            .iter()
            .filter(|(o, _)| o.as_str() != origin)
            .flat_map(|(_, part)| part.fragment.integrations.iter().cloned())
            .collect()
    }

    /// Every integration in force.
    pub fn integrations(&self) -> impl Iterator<Item = &Arc<Integration>> {
        self.parts
            .values()
            .flat_map(|part| part.fragment.integrations.iter())
    }

    /// The part `origin` holds, if any.
    pub fn part(&self, origin: &str) -> Option<&Part> {
        self.parts.get(origin)
    }

    /// The origin defining integration `name`, and its part.
    pub fn integration_origin(&self, name: &str) -> Option<(&str, &Part)> {
        let origin = self.owners.get(&(Kind::Integration, name.to_string()))?;
        Some((origin.as_str(), self.parts.get(origin)?))
    }

    /// Puts `fragment` in force as `origin`'s part, replacing what it held, unless it defines
    /// an integration name or a client key another origin defines (the later part is refused).
    pub fn put(
        &mut self,
        origin: &str,
        fragment: Fragment,
        version: String,
        digest: String,
    ) -> Result<(), String> {
        let taken = |kind, name: &str| {
            self.owners
                .get(&(kind, name.to_string()))
                .filter(|owner| owner.as_str() != origin)
        };
        let mut problems = Vec::new();
        for integration in &fragment.integrations {
            if let Some(owner) = taken(Kind::Integration, &integration.name) {
                problems.push(format!(
                    "{origin}: integration \"{}\" is already defined by {owner}",
                    integration.name
                ));
            }
        }
        for client in &fragment.clients {
            if let Some(owner) = taken(Kind::Client, &client.access_key_id) {
                problems.push(format!(
                    "{origin}: client \"{}\" is already defined by {owner}",
                    client.access_key_id
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        self.remove(origin);
        self.own(origin, &fragment);
        let part = Part {
            fragment,
            version,
            digest,
        };
        self.parts.insert(origin.to_string(), part);
        Ok(())
    }

    /// Takes `origin`'s part out of force; whether it held one.
    pub fn remove(&mut self, origin: &str) -> bool {
        let Some(part) = self.parts.remove(origin) else {
            return false;
        };
        for integration in &part.fragment.integrations {
            self.owners
                .remove(&(Kind::Integration, integration.name.clone()));
        }
        for client in &part.fragment.clients {
            self.owners
                .remove(&(Kind::Client, client.access_key_id.clone()));
        }
        true
    }

    /// The origins whose name starts with `prefix` (a source's own parts).
    pub fn origins(&self, prefix: &str) -> Vec<String> {
        self.parts
            .keys()
            .filter(|origin| origin.starts_with(prefix))
            .cloned()
            .collect()
    }

    fn own(&mut self, origin: &str, fragment: &Fragment) {
        for integration in &fragment.integrations {
            self.owners.insert(
                (Kind::Integration, integration.name.clone()),
                origin.to_string(),
            );
        }
        for client in &fragment.clients {
            self.owners.insert(
                (Kind::Client, client.access_key_id.clone()),
                origin.to_string(),
            );
        }
    }

    /// The configuration all parts make together: the main file's settings, every part's
    /// integrations and clients.
    pub fn config(&self) -> Config {
        let mut config = self.base.clone();
        for part in self.parts.values() {
            config
                .integrations
                .extend(part.fragment.integrations.iter().cloned());
            config.clients.extend(part.fragment.clients.iter().cloned());
        }
        config
    }
}

/// Publishes what the catalog holds to the proxy: the next request sees it.
pub fn publish(catalog: &Shared, proxy: &Proxy) {
    let config = lock(catalog).config();
    proxy.apply_tenants(config);
}

/// Locks the catalog (a panic elsewhere does not stop the sources).
pub fn lock(catalog: &Shared) -> std::sync::MutexGuard<'_, Catalog> {
    catalog
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
