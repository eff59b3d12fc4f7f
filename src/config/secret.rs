//! Secrets: never inline in the file, read from the environment or a file, never shown.

use std::collections::BTreeMap;
use std::fmt;

use super::problems::Problems;

/// A secret value (secret access key, session token). Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret read from its source.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that signs with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(** redacted **)")
    }
}

/// Where `*_env` settings are looked up: the environment in production, a map in tests.
pub trait SecretLookup {
    /// The variable's value, if it is set.
    fn var(&self, name: &str) -> Option<String>;
}

/// Reads `*_env` settings from the process environment.
pub struct ProcessEnv;

impl SecretLookup for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl SecretLookup for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl std::hash::Hash for Secret {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}
/// A secret from an environment variable or a file: exactly one of the two, never inline.
/// `setting` names the pair as the config spells it (`secret_access_key` for
/// `secret_access_key_env` / `secret_access_key_file`).
pub(super) fn read_secret(
    setting: &str,
    (inline, env, file): (Option<String>, Option<String>, Option<String>),
    place: &str,
    problems: &mut Problems<'_>,
    secrets: &dyn SecretLookup,
) -> Option<Secret> {
    if let Some(value) = inline {
        if !problems.inline_secrets {
            problems.add(
                place,
                setting,
                "secrets are never written inline in a file: use `_env` or `_file`",
            );
            return None;
        }
        if env.is_some() || file.is_some() || value.is_empty() {
            problems.add(place, setting, "give the secret once, and not empty");
            return None;
        }
        return Some(Secret::new(value));
    }
    match (env, file) {
        (Some(var), None) => match secrets.var(&var) {
            Some(value) if !value.is_empty() => Some(Secret::new(value)),
            _ => {
                problems.add(
                    place,
                    &format!("{setting}_env"),
                    format!("environment variable `{var}` is not set"),
                );
                None
            }
        },
        (None, Some(file)) => match std::fs::read_to_string(&file) {
            Ok(value) if !value.trim().is_empty() => Some(Secret::new(value.trim())),
            Ok(_) => {
                problems.add(
                    place,
                    &format!("{setting}_file"),
                    format!("`{file}` is empty"),
                );
                None
            }
            Err(error) => {
                problems.add(
                    place,
                    &format!("{setting}_file"),
                    format!("cannot read `{file}`: {error}"),
                );
                None
            }
        },
        _ => {
            problems.add(
                place,
                &format!("{setting}_env"),
                format!(
                    "give exactly one of `{setting}_env` or `{setting}_file` (secrets are never \
                     written inline)"
                ),
            );
            None
        }
    }
}
