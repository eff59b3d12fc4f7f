//! Integrations and clients fetched on demand (`[source] preload = false`): nothing is loaded
//! at start; the first request that names an integration or a client key the tables do not
//! hold has it fetched by its key from the source, and kept (at most `cache_entries` of each).
//! A key the source does not hold is remembered as absent for `absent_for`, and concurrent
//! requests for one key share one fetch, so a flood of unknown names costs the source at most
//! one query per name per period. The source keeps what was fetched current: it replaces a
//! changed entry, and drops a deleted one, as its notifications arrive.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::auth::front_door::{Client, Clients};
use crate::config::{ClientConfig, Integration};
use crate::request::integration::Integrations;
use crate::s3::error::Error;

/// What a fetch answers: the row, `None` when the source holds no such key, or why the source
/// could not be read.
pub type Fetched<T> = Pin<Box<dyn Future<Output = Result<Option<T>, String>> + Send>>;

/// Reads one integration or client by its key from a live source.
pub trait Fetch: Send + Sync {
    /// The integration named `name`.
    fn integration(&self, name: &str) -> Fetched<Arc<Integration>>;
    /// The client issued `access_key_id`.
    fn client(&self, access_key_id: &str) -> Fetched<ClientConfig>;
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Integration(String),
    Client(String),
}

#[derive(Clone)]
enum Found {
    Integration(Arc<Integration>),
    Client(Arc<Client>),
    Absent,
}

/// The fetched integrations and clients, and the recent answers of the source.
pub struct Lazy {
    integrations: moka::sync::Cache<String, Arc<Integration>>,
    clients: moka::sync::Cache<String, Arc<Client>>,
    /// Recent answers by key (present or absent), for `absent_for`; one fetch per key at a time.
    answers: moka::future::Cache<Key, Found>,
    fetch: Arc<dyn Fetch>,
    /// Queries sent to the source.
    pub queries: AtomicU64,
    /// Of those, the ones that found no such key.
    pub absent: AtomicU64,
}

impl Lazy {
    /// Keeps at most `entries` integrations and as many clients; remembers answers (an absent
    /// key's above all) for `absent_for`.
    pub fn new(entries: u64, absent_for: Duration, fetch: Arc<dyn Fetch>) -> Self {
        Lazy {
            integrations: moka::sync::Cache::new(entries),
            clients: moka::sync::Cache::new(entries),
            answers: moka::future::Cache::builder()
                .max_capacity(entries)
                .time_to_live(absent_for)
                .build(),
            fetch,
            queries: AtomicU64::new(0),
            absent: AtomicU64::new(0),
        }
    }

    /// The fetched integrations, which the integration table consults after its own.
    pub fn integrations(&self) -> moka::sync::Cache<String, Arc<Integration>> {
        self.integrations.clone()
    }

    /// The fetched clients, which the client table consults after its own.
    pub fn clients(&self) -> moka::sync::Cache<String, Arc<Client>> {
        self.clients.clone()
    }

    /// Before the request phase: fetches the integration and the client key a request names
    /// (the request phase's `admit::named`), unless the tables hold them already. A source that
    /// cannot be read is a 503; a name it does not hold is left for the request phase to
    /// refuse as it refuses any unknown name.
    pub async fn prepare(
        &self,
        (integrations, clients): (&Integrations, &Clients),
        (name, key): (Option<String>, Option<String>),
    ) -> Result<(), Error> {
        if let Some(name) = name
            && integrations.integration(&name).is_none()
        {
            self.load(Key::Integration(name)).await?;
        }
        if let Some(key) = key {
            self.prepare_client(clients, &key).await?;
        }
        Ok(())
    }

    /// The client `key` names (a form upload's, named in its body once the form is read).
    pub async fn prepare_client(&self, clients: &Clients, key: &str) -> Result<(), Error> {
        if clients.client(key).is_none() {
            self.load(Key::Client(key.to_string())).await?;
        }
        Ok(())
    }

    async fn load(&self, key: Key) -> Result<(), Error> {
        let fetch = async {
            self.queries.fetch_add(1, Ordering::Relaxed);
            let found = match &key {
                Key::Integration(name) => {
                    self.fetch.integration(name).await?.map(Found::Integration)
                }
                Key::Client(id) => self
                    .fetch
                    .client(id)
                    .await?
                    .map(|config| Found::Client(Client::new(&config))),
            };
            if found.is_none() {
                self.absent.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, String>(found.unwrap_or(Found::Absent))
        };
        let found = self
            .answers
            .try_get_with(key.clone(), fetch)
            .await
            .map_err(|reason| {
                let what = match &key {
                    Key::Integration(name) => format!("integration {name}"),
                    Key::Client(id) => format!("client {id}"),
                };
                tracing::warn!(%what, %reason, "integration source unreadable");
                Error::SourceUnavailable { what }
            })?;
        match (key, found) {
            (Key::Integration(name), Found::Integration(integration)) => {
                self.integrations.insert(name, integration);
            }
            (Key::Client(id), Found::Client(client)) => self.clients.insert(id, client),
            _ => {}
        }
        Ok(())
    }

    /// The source changed integration `name`: `Some` replaces it if it was fetched, `None`
    /// (deleted) drops it. Either way its last answer is forgotten, so a name that was absent
    /// is fetched again by the next request that names it.
    pub async fn integration_changed(&self, name: &str, now: Option<Arc<Integration>>) {
        self.answers
            .invalidate(&Key::Integration(name.to_string()))
            .await;
        match now {
            Some(integration) if self.integrations.contains_key(name) => {
                self.integrations.insert(name.to_string(), integration);
            }
            Some(_) => {}
            None => self.integrations.invalidate(name),
        }
    }

    /// The source changed client `access_key_id`, as [`Lazy::integration_changed`].
    pub async fn client_changed(&self, access_key_id: &str, now: Option<&ClientConfig>) {
        self.answers
            .invalidate(&Key::Client(access_key_id.to_string()))
            .await;
        match now {
            Some(config) if self.clients.contains_key(access_key_id) => {
                self.clients
                    .insert(access_key_id.to_string(), Client::new(config));
            }
            Some(_) => {}
            None => self.clients.invalidate(access_key_id),
        }
    }

    /// The names of the integrations and the keys of the clients fetched so far, for the
    /// source to read again after it lost its notifications.
    pub fn fetched(&self) -> (Vec<String>, Vec<String>) {
        (
            self.integrations
                .iter()
                .map(|(k, _)| k.as_ref().clone())
                .collect(),
            self.clients
                .iter()
                .map(|(k, _)| k.as_ref().clone())
                .collect(),
        )
    }

    /// Forgets every remembered answer (absent keys above all): after the source lost its
    /// notifications, a key inserted meanwhile must not stay absent.
    pub fn forget_answers(&self) {
        self.answers.invalidate_all();
    }

    /// How many integrations and clients are held.
    pub fn held(&self) -> (u64, u64) {
        self.integrations.run_pending_tasks();
        self.clients.run_pending_tasks();
        (self.integrations.entry_count(), self.clients.entry_count())
    }
}
