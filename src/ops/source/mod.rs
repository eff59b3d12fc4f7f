//! Live sources of integrations and clients: a directory of TOML files and a PostgreSQL
//! database, beside the main file. Each source puts *parts* (a file, a row) into the
//! [`Catalog`]; a part is validated whole before it goes in, and a refused part leaves the
//! previous version of it in force. The catalog notes every name a part's change touched, and
//! publishing hands the proxy just those ([`Change`]): its tables take them without being
//! rebuilt, so a changed integration is used by the next request, a request in flight
//! finishes on the one it started with, and the cost of a change does not grow with the
//! number of integrations.

pub mod directory;
pub mod on_demand;
pub mod postgres;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::config::{Config, Fragment, Integration};
use crate::proxy::Proxy;
use crate::request::tenants::Change;

/// What every source holds now, and where each name came from.
pub struct Catalog {
    /// The main file (its integrations and clients are the part named "the main file").
    base: Config,
    /// Parts by origin: `directory:FILE`, `postgres:integration:NAME`, `postgres:client:KEY`.
    parts: BTreeMap<String, Part>,
    /// Integration names and client keys, each with the origin that defines it.
    owners: HashMap<(Kind, String), String>,
    /// What changed since the last publication.
    pending: Change,
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
            pending: Change::default(),
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
        for integration in &fragment.integrations {
            let name = integration.name.clone();
            self.pending
                .integrations
                .insert(name, Some(integration.clone()));
        }
        for client in &fragment.clients {
            let key = client.access_key_id.clone();
            self.pending.clients.insert(key, Some(client.clone()));
        }
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
            let name = integration.name.clone();
            self.owners.remove(&(Kind::Integration, name.clone()));
            self.pending.integrations.insert(name, None);
        }
        for client in &part.fragment.clients {
            let key = client.access_key_id.clone();
            self.owners.remove(&(Kind::Client, key.clone()));
            self.pending.clients.insert(key, None);
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
    /// integrations and clients. The state built from it holds every change so far.
    pub fn config(&mut self) -> Config {
        self.pending = Change::default();
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

/// Publishes what changed in the catalog to the proxy: the next request sees it. Under the
/// catalog's lock, so changes reach the proxy in the order they were made.
pub fn publish(catalog: &Shared, proxy: &Proxy) {
    let mut catalog = lock(catalog);
    let change = std::mem::take(&mut catalog.pending);
    proxy.apply_change(&change);
}

/// Locks the catalog (a panic elsewhere does not stop the sources).
pub fn lock(catalog: &Shared) -> std::sync::MutexGuard<'_, Catalog> {
    catalog
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
