//! `[source] postgres_url_env`: integrations and clients are rows of the platform's database
//! (`deploy/postgres/schema.sql`). The proxy reads them all on each (re)connect and every
//! `resync_interval`, and `LISTEN`s on `s3sp_changes`, whose trigger names the table and key
//! of each inserted, updated or deleted row: that row alone is read again and applied. While
//! the database is away, what was loaded keeps serving; the connection is retried with backoff.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_postgres::{AsyncMessage, Client};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Shared, lock, on_demand, publish};
use crate::config::{Bindings, Fragment, ProcessEnv, Secret};
use crate::proxy::Proxy;
use crate::request::lazy::Lazy;

/// The channel the schema's trigger notifies.
pub const CHANNEL: &str = "s3sp_changes";
pub(super) const INTEGRATIONS: &str = "s3sp_integrations";
pub(super) const CLIENTS: &str = "s3sp_clients";
const FIRST_RETRY: Duration = Duration::from_millis(250);
const LAST_RETRY: Duration = Duration::from_secs(30);

/// A row as read: its key, its spec as JSON text, and its `updated_at` as text.
pub(super) struct Row {
    pub(super) key: String,
    pub(super) spec: String,
    pub(super) updated_at: String,
}

/// The rows refused, with the digest they were refused at, so a resync does not log them again.
#[derive(Default)]
struct Refused(HashMap<String, String>);

/// What the source keeps in step with the database.
pub enum Mode {
    /// Every row, in the catalog (`preload = true`).
    Preload(Shared),
    /// The rows requests asked for, fetched through the connection this source keeps.
    OnDemand(Arc<Lazy>, Connection),
}

/// The connection on-demand fetches use while this source has one.
pub type Connection = Arc<std::sync::RwLock<Option<Arc<Client>>>>;

/// How the source reaches the database: its URL (whose `sslmode` says whether TLS is used:
/// `disable`, `prefer` by default, or `require`), and the trust its TLS connections verify the
/// server's certificate and name against.
pub struct Database {
    url: Secret,
    tls: MakeRustlsConnect,
}

impl Database {
    /// `url`, with the webpki roots plus the certificates of `ca_file` trusted.
    pub fn new(url: Secret, ca_file: Option<&std::path::Path>) -> Result<Self, String> {
        let extra = match ca_file {
            Some(path) => crate::config::tls::read_ca_file(path)?,
            None => Vec::new(),
        };
        let config = crate::config::tls::client_config(&extra).map_err(|e| e.to_string())?;
        Ok(Database {
            url,
            tls: MakeRustlsConnect::new(config),
        })
    }
}

/// Keeps the catalog (or what was fetched on demand) in step with the database until the
/// proxy stops.
pub async fn run(database: Database, resync: Duration, mode: Mode, proxy: Arc<Proxy>) {
    let mut retry = FIRST_RETRY;
    let mut loaded_once = false;
    let mut refused = Refused::default();
    loop {
        let error = session(
            &database,
            resync,
            &mode,
            &proxy,
            &mut refused,
            &mut loaded_once,
        )
        .await;
        if let Mode::OnDemand(_, connection) = &mode {
            on_demand::set(connection, None);
        }
        if proxy.sources.database_up.swap(0, Ordering::Relaxed) == 1 {
            retry = FIRST_RETRY;
        }
        proxy
            .sources
            .database_failures
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%error, retry_in = ?retry, "database source unreachable; serving what it last loaded");
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(LAST_RETRY);
    }
}

/// One connection: listen, read everything, then apply each notified change and resync on the
/// timer. Returns why it ended.
async fn session(
    database: &Database,
    resync: Duration,
    mode: &Mode,
    proxy: &Proxy,
    refused: &mut Refused,
    loaded_once: &mut bool,
) -> String {
    let connected = tokio_postgres::connect(database.url.expose(), database.tls.clone()).await;
    let (client, mut connection) = match connected {
        Ok(connected) => connected,
        // The driver's message names the host and user, never the password.
        Err(error) => return format!("connecting: {}", with_causes(&error)),
    };
    let (notify, mut notes) = tokio::sync::mpsc::unbounded_channel::<String>();
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(note)) => {
                    let _ = notify.send(note.payload().to_string());
                }
                Ok(_) => {}
                Err(error) => return error.to_string(),
            }
        }
        "the database closed the connection".to_string()
    });
    let client = Arc::new(client);
    let ended = async {
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(|e| e.to_string())?;
        read_again(&client, mode, proxy, refused).await?;
        if let Mode::OnDemand(_, connection) = mode {
            on_demand::set(connection, Some(client.clone()));
        }
        proxy.sources.database_up.store(1, Ordering::Relaxed);
        if !std::mem::replace(loaded_once, true) {
            proxy.sources.loading.fetch_sub(1, Ordering::Relaxed);
        }
        let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + resync, resync);
        loop {
            tokio::select! {
                note = notes.recv() => {
                    let Some(first) = note else { return Err("notifications ended".to_string()) };
                    let mut changed = HashSet::from([first]);
                    while let Ok(more) = notes.try_recv() {
                        changed.insert(more);
                    }
                    match mode {
                        Mode::Preload(catalog) => {
                            apply_notes(&client, changed, catalog, proxy, refused).await?;
                        }
                        Mode::OnDemand(lazy, _) => {
                            on_demand::apply_notes(&client, changed, lazy, proxy).await?;
                        }
                    }
                }
                _ = timer.tick() => read_again(&client, mode, proxy, refused).await?,
            }
        }
    };
    let outcome: Result<(), String> = ended.await;
    driver.abort();
    match (outcome, driver.await) {
        (Err(error), Ok(cause)) => format!("{error} ({cause})"),
        (Err(error), Err(_)) | (Ok(()), Ok(error)) => error,
        (Ok(()), Err(_)) => "the connection ended".to_string(),
    }
}

/// An error and the errors under it (the driver's "error performing TLS handshake" says why
/// only in its source: an unknown issuer, a name mismatch).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text = format!("{text}: {inner}");
        cause = inner.source();
    }
    text
}

/// Reads everything again: the whole tables, or the rows fetched on demand.
async fn read_again(
    client: &Client,
    mode: &Mode,
    proxy: &Proxy,
    refused: &mut Refused,
) -> Result<(), String> {
    match mode {
        Mode::Preload(catalog) => resync_all(client, catalog, proxy, refused).await,
        Mode::OnDemand(lazy, _) => on_demand::resync(client, lazy, proxy).await,
    }
}

/// Which rows of a table to read.
pub(super) enum Rows<'a> {
    All,
    Key(&'a str),
    Keys(&'a [String]),
}

pub(super) async fn read(
    client: &Client,
    table: &str,
    which: Rows<'_>,
) -> Result<Vec<Row>, String> {
    let column = if table == INTEGRATIONS {
        "name"
    } else {
        "access_key_id"
    };
    let select = format!("SELECT {column}, spec::text, updated_at::text FROM {table}");
    let rows = match which {
        Rows::All => client.query(&select, &[]).await,
        Rows::Key(key) => {
            let one = format!("{select} WHERE {column} = $1");
            client.query(&one, &[&key]).await
        }
        Rows::Keys(keys) => {
            let some = format!("{select} WHERE {column} = ANY($1)");
            client.query(&some, &[&keys]).await
        }
    }
    .map_err(|error| format!("reading {table}: {error}"))?;
    Ok(rows
        .iter()
        .map(|row| Row {
            key: row.get(0),
            spec: row.get(1),
            updated_at: row.get(2),
        })
        .collect())
}

/// Reads both tables whole and makes the catalog's database parts match them.
async fn resync_all(
    client: &Client,
    catalog: &Shared,
    proxy: &Proxy,
    refused: &mut Refused,
) -> Result<(), String> {
    let integrations = read(client, INTEGRATIONS, Rows::All).await?;
    let clients = read(client, CLIENTS, Rows::All).await?;
    let mut changed = false;
    {
        let mut held = lock(catalog);
        for (table, rows) in [(INTEGRATIONS, &integrations), (CLIENTS, &clients)] {
            let present: HashSet<String> = rows.iter().map(|r| origin(table, &r.key)).collect();
            for gone in held.origins(&origin(table, "")) {
                if !present.contains(&gone) {
                    changed |= held.remove(&gone);
                }
            }
        }
    }
    changed |= apply_rows(INTEGRATIONS, &integrations, catalog, proxy, refused);
    changed |= apply_rows(CLIENTS, &clients, catalog, proxy, refused);
    if changed {
        publish(catalog, proxy);
    }
    tracing::debug!(
        integrations = integrations.len(),
        clients = clients.len(),
        "database source read"
    );
    Ok(())
}

/// Reads again each row a notification named (`table:key`) and applies it, or removes it.
async fn apply_notes(
    client: &Client,
    notes: HashSet<String>,
    catalog: &Shared,
    proxy: &Proxy,
    refused: &mut Refused,
) -> Result<(), String> {
    let mut changed = false;
    for (table, key) in notes.iter().filter_map(|note| parse_note(note)) {
        let rows = read(client, table, Rows::Key(key)).await?;
        if rows.is_empty() {
            changed |= lock(catalog).remove(&origin(table, key));
            refused.0.remove(&origin(table, key));
        } else {
            changed |= apply_rows(table, &rows, catalog, proxy, refused);
        }
    }
    if changed {
        publish(catalog, proxy);
    }
    Ok(())
}

/// Validates and puts each changed row; a refused row is logged and counted once, and its
/// previous version stays. Whether the catalog changed.
fn apply_rows(
    table: &str,
    rows: &[Row],
    catalog: &Shared,
    proxy: &Proxy,
    refused: &mut Refused,
) -> bool {
    let mut catalog = lock(catalog);
    let bindings = if table == CLIENTS {
        Bindings::new(catalog.integrations(), true)
    } else {
        Bindings::default()
    };
    let mut changed = false;
    for row in rows {
        let origin = origin(table, &row.key);
        let digest = hex::encode(Sha256::digest(row.spec.as_bytes()));
        let unchanged = catalog
            .part(&origin)
            .is_some_and(|part| part.digest == digest && part.version == row.updated_at);
        if unchanged || refused.0.get(&origin) == Some(&digest) {
            continue;
        }
        let built = if table == INTEGRATIONS {
            Fragment::integration_row(&row.key, &row.spec, &origin, &ProcessEnv)
        } else {
            Fragment::client_row(&row.key, &row.spec, &origin, &bindings, &ProcessEnv)
        };
        let outcome = built
            .map_err(|error| error.to_string())
            .and_then(|fragment| {
                catalog.put(&origin, fragment, row.updated_at.clone(), digest.clone())
            });
        match outcome {
            Ok(()) => {
                refused.0.remove(&origin);
                proxy.sources.applied.fetch_add(1, Ordering::Relaxed);
                changed = true;
            }
            Err(problems) => {
                tracing::warn!(row = %origin, %problems, "database row refused; its previous version stays");
                proxy.sources.refused.fetch_add(1, Ordering::Relaxed);
                refused.0.insert(origin, digest);
            }
        }
    }
    changed
}

/// A notification's payload, `table:key`, for one of the two tables; anything else is ignored.
pub(super) fn parse_note(note: &str) -> Option<(&str, &str)> {
    let (table, key) = note.split_once(':')?;
    (table == INTEGRATIONS || table == CLIENTS).then_some((table, key))
}

pub(super) fn origin(table: &str, key: &str) -> String {
    let kind = if table == INTEGRATIONS {
        "integration"
    } else {
        "client"
    };
    format!("postgres:{kind}:{key}")
}
