//! Integrations and clients from one part of a live source: a file of the directory source, or
//! one row of the database source. Each part is validated whole, by the same rules as the main
//! file, and is applied whole or not at all.

use std::sync::Arc;

use super::build::{Bindings, build_client, check_names_unique};
use super::integration_entry::build_integration;
use super::problems::Problems;
use super::raw::{RawClient, RawFragment, RawIntegration};
use super::{ClientConfig, ConfigError, Integration, SecretLookup};

/// The integrations and clients one part of a source defines.
#[derive(Debug, Clone, Default)]
pub struct Fragment {
    /// Its integrations.
    pub integrations: Vec<Arc<Integration>>,
    /// Its clients.
    pub clients: Vec<ClientConfig>,
}

impl Fragment {
    /// A file of the directory source: `[[integration]]` and `[[client]]` tables in the main
    /// file's syntax, nothing else. `others` are the integrations in force elsewhere, so a
    /// client may name a bucket one of them scopes.
    pub fn from_toml(
        text: &str,
        origin: &str,
        others: &[Arc<Integration>],
        secrets: &dyn SecretLookup,
    ) -> Result<Fragment, ConfigError> {
        let raw: RawFragment = toml::from_str(text).map_err(|error| ConfigError {
            problems: vec![format!("{origin}: {}", error.to_string().trim_end())],
        })?;
        let problems = Problems {
            origin,
            list: Vec::new(),
            inline_secrets: false,
        };
        build(
            raw.integrations,
            raw.clients,
            problems,
            Others::Listed(others),
            secrets,
        )
    }

    /// One row of `s3sp_integrations`: `spec` is one `[[integration]]` table as JSON, without
    /// the name (the row's key). Secrets may be inline: the database is the platform's
    /// trusted store.
    pub fn integration_row(
        name: &str,
        spec: &str,
        origin: &str,
        secrets: &dyn SecretLookup,
    ) -> Result<Fragment, ConfigError> {
        let raw: RawIntegration = from_row(spec, "name", name, origin)?;
        build(
            vec![raw],
            Vec::new(),
            row_problems(origin),
            Others::Listed(&[]),
            secrets,
        )
    }

    /// One row of `s3sp_clients`: `spec` is one `[[client]]` table as JSON, without the
    /// access key id (the row's key). `bindings` index the integrations in force, built once
    /// for all the rows read together.
    pub fn client_row(
        access_key_id: &str,
        spec: &str,
        origin: &str,
        bindings: &Bindings,
        secrets: &dyn SecretLookup,
    ) -> Result<Fragment, ConfigError> {
        let raw: RawClient = from_row(spec, "access_key_id", access_key_id, origin)?;
        let others = Others::Indexed(bindings);
        build(Vec::new(), vec![raw], row_problems(origin), others, secrets)
    }
}

fn row_problems(origin: &str) -> Problems<'_> {
    Problems {
        origin,
        list: Vec::new(),
        inline_secrets: true,
    }
}

/// A row's `spec` with its key put back in, read as the TOML table would be.
fn from_row<T: serde::de::DeserializeOwned>(
    spec: &str,
    key_field: &str,
    key: &str,
    origin: &str,
) -> Result<T, ConfigError> {
    let refuse = |problem: String| ConfigError {
        problems: vec![format!("{origin}: {problem}")],
    };
    let mut table = match serde_json::from_str(spec) {
        Ok(serde_json::Value::Object(table)) => table,
        Ok(_) => return Err(refuse("spec must be a JSON object".to_string())),
        Err(error) => return Err(refuse(format!("spec is not JSON: {error}"))),
    };
    if table.contains_key(key_field) {
        return Err(refuse(format!(
            "spec repeats `{key_field}`: it is the row's key"
        )));
    }
    table.insert(key_field.to_string(), key.into());
    serde_json::from_value(serde_json::Value::Object(table))
        .map_err(|error| refuse(error.to_string()))
}

/// What a part's clients may name besides the part's own integrations.
enum Others<'a> {
    /// The integrations in force elsewhere; the part's own are added to them.
    Listed(&'a [Arc<Integration>]),
    /// An index built once for many client rows (which hold no integration).
    Indexed(&'a Bindings),
}

fn build(
    raw_integrations: Vec<RawIntegration>,
    raw_clients: Vec<RawClient>,
    mut problems: Problems<'_>,
    others: Others<'_>,
    secrets: &dyn SecretLookup,
) -> Result<Fragment, ConfigError> {
    let mut integrations = Vec::new();
    for (index, raw) in raw_integrations.into_iter().enumerate() {
        if let Some(integration) = build_integration(index, raw, &mut problems, secrets) {
            integrations.push(Arc::new(integration));
        }
    }
    check_names_unique(&integrations, &mut problems);
    let own;
    let bindings = match others {
        Others::Indexed(bindings) => bindings,
        Others::Listed(others) => {
            own = Bindings::new(others.iter().chain(&integrations), true);
            &own
        }
    };
    let mut clients: Vec<ClientConfig> = Vec::new();
    for (index, raw) in raw_clients.into_iter().enumerate() {
        if let Some(client) = build_client(index, raw, bindings, &mut problems, secrets) {
            if clients
                .iter()
                .any(|c| c.access_key_id == client.access_key_id)
            {
                problems.add(
                    &format!("client \"{}\"", client.access_key_id),
                    "access_key_id",
                    "is defined twice",
                );
            }
            clients.push(client);
        }
    }
    if problems.list.is_empty() {
        Ok(Fragment {
            integrations,
            clients,
        })
    } else {
        Err(ConfigError {
            problems: problems.list,
        })
    }
}
