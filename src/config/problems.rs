//! Problems found in a config file, each with its place, and the field readers shared by the
//! parts of the config that report them.

use std::fmt;
use std::time::Duration;

use super::Access;
use super::fields::parse_duration;

/// Collects problems, each prefixed with the file and the place in it.
pub(super) struct Problems<'a> {
    pub(super) origin: &'a str,
    pub(super) list: Vec<String>,
    /// Whether this origin may write secrets inline: a database row may (the platform's
    /// trusted store), a file may not.
    pub(super) inline_secrets: bool,
}

impl Problems<'_> {
    pub(super) fn add(&mut self, place: &str, field: &str, message: impl fmt::Display) {
        self.list.push(format!(
            "{}: {place}: field `{field}`: {message}",
            self.origin
        ));
    }
}

/// `access = "read-only" | "read-write"` (read-only when absent).
pub(super) fn parse_access(text: Option<&str>, place: &str, problems: &mut Problems<'_>) -> Access {
    match text {
        None | Some("read-only") => Access::ReadOnly,
        Some("read-write") => Access::ReadWrite,
        Some(other) => {
            problems.add(
                place,
                "access",
                format!("`{other}` is not \"read-only\" or \"read-write\""),
            );
            Access::ReadOnly
        }
    }
}

/// A duration setting, or its default when absent.
pub(super) fn parse_setting_duration(
    text: Option<&str>,
    default: Duration,
    place: &str,
    field: &str,
    problems: &mut Problems<'_>,
) -> Duration {
    match text {
        None => default,
        Some(text) => parse_duration(text).unwrap_or_else(|| {
            problems.add(
                place,
                field,
                format!("`{text}` is not a duration like 90s, 5m or 1h"),
            );
            default
        }),
    }
}
