//! `[integration.credentials]` and `[sts.credentials]` checked into a credential source.

use super::fields::{check_account_id, check_partition, check_role_arn, check_role_name};
use super::problems::Problems;
use super::raw::RawCredentials;
use super::secret::{Secret, SecretLookup, read_secret};
use super::{CredentialSource, StaticKeys};

pub(super) const DEFAULT_SESSION_NAME: &str = "s3-signing-proxy";

/// Exactly one of a role to assume, static keys or the default chain.
/// `region` is the integration's, which names the partition an account-id form defaults to.
pub(super) fn build_credentials(
    mut raw: RawCredentials,
    place: &str,
    region: Option<&str>,
    problems: &mut Problems<'_>,
    secrets: &dyn SecretLookup,
) -> Option<CredentialSource> {
    if raw.account_id.is_some() || raw.role_name.is_some() || raw.partition.is_some() {
        if raw.role_arn.is_some() {
            problems.add(
                place,
                "account_id",
                "give `role_arn`, or `account_id` with `role_name`, not both",
            );
            return None;
        }
        raw.role_arn = Some(role_arn_from_parts(&raw, place, region, problems)?);
    }
    let kinds = [
        raw.role_arn.is_some(),
        raw.access_key_id.is_some(),
        raw.source.is_some(),
    ]
    .iter()
    .filter(|given| **given)
    .count();
    if kinds != 1 {
        problems.add(
            place,
            "role_arn",
            "give exactly one of `role_arn` (STS AssumeRole), `access_key_id` (static keys) or \
             `source = \"default-chain\"`",
        );
        return None;
    }
    if raw.role_arn.is_some() {
        return assume_role(raw, place, problems);
    }
    for (field, given) in [
        ("external_id", raw.external_id.is_some()),
        ("session_name", raw.session_name.is_some()),
    ] {
        if given {
            problems.add(place, field, "only goes with `role_arn`");
        }
    }
    match raw.source.as_deref() {
        Some("default-chain") => Some(CredentialSource::DefaultChain),
        Some(source) => {
            problems.add(
                place,
                "source",
                format!("`{source}` is not \"default-chain\""),
            );
            None
        }
        None => static_keys(raw, place, problems, secrets).map(CredentialSource::Static),
    }
}

/// The role ARN that `account_id`, `role_name` and `partition` (by default the region's)
/// name: the form integration pages that ask for an account and a role name use.
fn role_arn_from_parts(
    raw: &RawCredentials,
    place: &str,
    region: Option<&str>,
    problems: &mut Problems<'_>,
) -> Option<String> {
    let before = problems.list.len();
    let (Some(account_id), Some(role_name)) = (&raw.account_id, &raw.role_name) else {
        problems.add(
            place,
            "role_name",
            "`account_id` and `role_name` go together",
        );
        return None;
    };
    if let Err(reason) = check_account_id(account_id) {
        problems.add(place, "account_id", reason);
    }
    if let Err(reason) = check_role_name(role_name) {
        problems.add(place, "role_name", reason);
    }
    let partition = match (&raw.partition, region) {
        (Some(partition), _) => partition.as_str(),
        (None, Some(region)) if region.starts_with("cn-") => "aws-cn",
        (None, Some(region)) if region.starts_with("us-gov-") => "aws-us-gov",
        (None, _) => "aws",
    };
    if let Err(reason) = check_partition(partition) {
        problems.add(place, "partition", reason);
    }
    (problems.list.len() == before)
        .then(|| format!("arn:{partition}:iam::{account_id}:role/{role_name}"))
}

/// `role_arn` with its ExternalId and session name, each by AWS's rules.
fn assume_role(
    raw: RawCredentials,
    place: &str,
    problems: &mut Problems<'_>,
) -> Option<CredentialSource> {
    let before = problems.list.len();
    let role_arn = raw.role_arn.unwrap_or_default();
    if let Err(reason) = check_role_arn(&role_arn) {
        problems.add(place, "role_arn", reason);
    }
    for (field, given) in [
        ("secret_access_key_env", raw.secret_access_key_env.is_some()),
        (
            "secret_access_key_file",
            raw.secret_access_key_file.is_some(),
        ),
        ("session_token_env", raw.session_token_env.is_some()),
    ] {
        if given {
            problems.add(place, field, "does not go with `role_arn`");
        }
    }
    if let Some(external_id) = &raw.external_id
        && !aws_identifier(external_id, 2..=1224, "+=,.@:/-_")
    {
        problems.add(
            place,
            "external_id",
            "must be 2-1224 characters of letters, digits and +=,.@:/-_ (AWS's rule)",
        );
    }
    let session_name = raw
        .session_name
        .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_string());
    if !aws_identifier(&session_name, 2..=64, "+=,.@-_") {
        problems.add(
            place,
            "session_name",
            "must be 2-64 characters of letters, digits and +=,.@-_ (AWS's rule)",
        );
    }
    (problems.list.len() == before).then_some(CredentialSource::AssumeRole {
        role_arn,
        external_id: raw.external_id,
        session_name,
    })
}

/// Letters, digits and `extra`, with a length in `lengths`: how AWS defines its identifiers.
fn aws_identifier(text: &str, lengths: std::ops::RangeInclusive<usize>, extra: &str) -> bool {
    lengths.contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// An access key id with its secret (and an optional session token), never inline.
fn static_keys(
    raw: RawCredentials,
    place: &str,
    problems: &mut Problems<'_>,
    secrets: &dyn SecretLookup,
) -> Option<StaticKeys> {
    let access_key_id = raw.access_key_id.unwrap_or_default();
    if access_key_id.is_empty() || !access_key_id.chars().all(|c| c.is_ascii_alphanumeric()) {
        problems.add(place, "access_key_id", "must be letters and digits");
    }
    let secret = read_secret(
        "secret_access_key",
        (
            raw.secret_access_key,
            raw.secret_access_key_env,
            raw.secret_access_key_file,
        ),
        place,
        problems,
        secrets,
    );
    let session_token = match raw.session_token_env {
        None => None,
        Some(var) => match secrets.var(&var) {
            Some(value) if !value.is_empty() => Some(Secret::new(value)),
            _ => {
                problems.add(
                    place,
                    "session_token_env",
                    format!("environment variable `{var}` is not set"),
                );
                None
            }
        },
    };
    Some(StaticKeys {
        access_key_id,
        secret_access_key: secret?,
        session_token,
    })
}
