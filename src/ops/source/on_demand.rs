//! `[source] preload = false`: the database source fetches one integration or client by its
//! key when a request first names it ([`crate::request::lazy`] keeps what was fetched), and
//! keeps what was fetched current: a notified row that was fetched is read again and replaces
//! it, a deleted one is dropped, a refused one leaves the previous version in force. After a
//! reconnect and every `resync_interval`, every fetched row is read again and every
//! remembered absence forgotten.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_postgres::Client;

use super::postgres::{CLIENTS, Connection, INTEGRATIONS, Row, Rows, origin, parse_note, read};
use crate::config::{Bindings, ClientConfig, Fragment, Integration, ProcessEnv};
use crate::observe::metrics::SourceStats;
use crate::proxy::Proxy;
use crate::request::lazy::{Fetch, Fetched, Lazy};

/// Fetches rows through the source's connection.
pub struct Fetcher {
    /// The connection, while the source has one.
    pub connection: Connection,
    /// Where refused rows are counted.
    pub stats: Arc<SourceStats>,
}

/// Puts the source's connection in use for fetches, or takes it away.
pub fn set(connection: &Connection, client: Option<Arc<Client>>) {
    match connection.write() {
        Ok(mut slot) => *slot = client,
        Err(poisoned) => *poisoned.into_inner() = client,
    }
}

impl Fetcher {
    fn connected(&self) -> Result<Arc<Client>, String> {
        let slot = match self.connection.read() {
            Ok(slot) => slot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        slot.ok_or_else(|| "the database is not connected".to_string())
    }
}

impl Fetch for Fetcher {
    fn integration(&self, name: &str) -> Fetched<Arc<Integration>> {
        let (client, name, stats) = (self.connected(), name.to_string(), self.stats.clone());
        Box::pin(async move {
            let rows = read(&*client?, INTEGRATIONS, Rows::Key(&name)).await?;
            Ok(rows.first().and_then(|row| {
                let built = integration(row);
                count(&stats, &built, row);
                built.ok()
            }))
        })
    }

    fn client(&self, access_key_id: &str) -> Fetched<ClientConfig> {
        let (client, key, stats) = (
            self.connected(),
            access_key_id.to_string(),
            self.stats.clone(),
        );
        Box::pin(async move {
            let rows = read(&*client?, CLIENTS, Rows::Key(&key)).await?;
            Ok(rows.first().and_then(|row| {
                let built = client_config(row);
                count(&stats, &built, row);
                built.ok()
            }))
        })
    }
}

/// A row of `s3sp_integrations`, validated by the rules every source uses.
fn integration(row: &Row) -> Result<Arc<Integration>, String> {
    let origin = origin(INTEGRATIONS, &row.key);
    let fragment = Fragment::integration_row(&row.key, &row.spec, &origin, &ProcessEnv)
        .map_err(|error| error.to_string())?;
    fragment
        .integrations
        .into_iter()
        .next()
        .ok_or_else(|| format!("{origin}: no integration"))
}

/// A row of `s3sp_clients`; the integrations it names are bound by name (they are fetched
/// when a request names them).
fn client_config(row: &Row) -> Result<ClientConfig, String> {
    let origin = origin(CLIENTS, &row.key);
    let bindings = Bindings::new(std::iter::empty(), true);
    let fragment = Fragment::client_row(&row.key, &row.spec, &origin, &bindings, &ProcessEnv)
        .map_err(|error| error.to_string())?;
    fragment
        .clients
        .into_iter()
        .next()
        .ok_or_else(|| format!("{origin}: no client"))
}

/// Counts a row applied or refused, and logs a refused one with its problems.
fn count<T>(stats: &SourceStats, built: &Result<T, String>, row: &Row) {
    match built {
        Ok(_) => {
            stats.applied.fetch_add(1, Ordering::Relaxed);
        }
        Err(problems) => {
            tracing::warn!(row = %row.key, %problems, "database row refused; its previous version stays");
            stats.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Reads again each notified row (`table:key`) and brings what was fetched up to date.
pub async fn apply_notes(
    client: &Client,
    notes: HashSet<String>,
    lazy: &Lazy,
    proxy: &Proxy,
) -> Result<(), String> {
    for (table, key) in notes.iter().filter_map(|note| parse_note(note)) {
        let rows = read(client, table, Rows::Key(key)).await?;
        apply(table, key, rows.first(), lazy, &proxy.sources).await;
    }
    Ok(())
}

/// One row's news: `None` when it is gone.
async fn apply(table: &str, key: &str, row: Option<&Row>, lazy: &Lazy, stats: &SourceStats) {
    if table == INTEGRATIONS {
        match row.map(|row| (integration(row), row)) {
            None => lazy.integration_changed(key, None).await,
            Some((Ok(now), _)) => {
                stats.applied.fetch_add(1, Ordering::Relaxed);
                lazy.integration_changed(key, Some(now)).await;
            }
            Some((refused, row)) => count(stats, &refused, row),
        }
    } else {
        match row.map(|row| (client_config(row), row)) {
            None => lazy.client_changed(key, None).await,
            Some((Ok(now), _)) => {
                stats.applied.fetch_add(1, Ordering::Relaxed);
                lazy.client_changed(key, Some(&now)).await;
            }
            Some((refused, row)) => count(stats, &refused, row),
        }
    }
}

/// After a (re)connect and every `resync_interval`: forgets every remembered absence, and reads
/// every fetched row again in one query per table.
pub async fn resync(client: &Client, lazy: &Lazy, proxy: &Proxy) -> Result<(), String> {
    lazy.forget_answers();
    let (integrations, clients) = lazy.fetched();
    for (table, keys) in [(INTEGRATIONS, integrations), (CLIENTS, clients)] {
        if keys.is_empty() {
            continue;
        }
        let rows = read(client, table, Rows::Keys(&keys)).await?;
        for key in &keys {
            let row = rows.iter().find(|row| &row.key == key);
            apply(table, key, row, lazy, &proxy.sources).await;
        }
    }
    Ok(())
}
