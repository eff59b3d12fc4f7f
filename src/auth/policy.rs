//! Signed policies: one signature that lets a browser read everything under a prefix, with
//! stable URLs its cache can keep.
//!
//! An application backend holding a client key signs a small JSON policy:
//!
//! ```json
//! {"resource": "/acme/photos/*", "expires": 1764403200, "starts": 1764399600, "ip": "192.0.2.0/24"}
//! ```
//!
//! The policy travels base64url-encoded (no padding) with its signature and the key id, as the
//! cookies `S3SP-Policy`, `S3SP-Signature` and `S3SP-Key-Id`, or as query parameters of the
//! same names. The signature is `hex(HMAC-SHA256(K, policy_text))` over the encoded text, where
//! `K = HMAC-SHA256(secret, "s3-signing-proxy policy v1")`: a key derived with a label, so a
//! policy signature can never stand in for a SigV4 one, nor the other way round.
//!
//! A verified policy grants reads (GetObject, HeadObject) of the keys it names, to the client
//! that signed it, within that client's bindings and the integration's read rules. It never
//! grants a write, a listing or anything outside its resource, matched against the key after
//! routing's one decoding.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, header};
use serde::Deserialize;

use crate::config::{IpNet, check_bucket_name};
use crate::s3::error::Error;
use crate::s3::route::{Operation, Route, check_key};

/// The cookie (and query parameter) carrying the encoded policy.
pub const POLICY: &str = "S3SP-Policy";
/// The cookie (and query parameter) carrying the policy's signature, in hex.
pub const SIGNATURE: &str = "S3SP-Signature";
/// The cookie (and query parameter) naming the client key that signed the policy.
pub const KEY_ID: &str = "S3SP-Key-Id";
/// The label the policy key is derived with.
const LABEL: &[u8] = b"s3-signing-proxy policy v1";
/// The longest encoded policy accepted: a resource, three times and a range fit in far less.
pub const MAX_POLICY_BYTES: usize = 2048;
/// The longest a policy may still run: S3's limit for presigned URLs.
pub const MAX_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// A policy as the client's JSON writes it: unknown fields are refused, so a misspelt `ip`
/// never silently widens what a policy allows.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    resource: String,
    expires: u64,
    #[serde(default)]
    starts: Option<u64>,
    #[serde(default)]
    ip: Option<String>,
}

/// The keys a policy names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keys {
    /// One key.
    Exact(String),
    /// Every key starting with this (possibly empty) prefix: a resource ending in `*`.
    Prefix(String),
}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The logical bucket (`/{name}/…`).
    pub name: String,
    /// The keys in it the policy covers.
    pub keys: Keys,
    /// Seconds since the epoch after which the policy is void.
    pub expires: u64,
    /// Seconds since the epoch before which the policy is not yet valid.
    pub starts: Option<u64>,
    /// The client addresses the policy is for.
    pub ip: Option<IpNet>,
}

/// A policy, its signature and key id as a request presented them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// The encoded policy, exactly as signed.
    pub policy: String,
    /// The signature, hex as sent.
    pub signature: String,
    /// The client key the policy claims to be signed with.
    pub key_id: String,
}

/// The three query parameters, if the query carries any of them.
pub fn in_query(query: &[(String, String)]) -> Result<Option<Presented>, Error> {
    let get = |name: &str| {
        let mut values = query.iter().filter(|(n, _)| n == name).map(|(_, v)| v);
        match (values.next(), values.next()) {
            (value, None) => Ok(value.cloned()),
            (Some(_), Some(_)) => Err(Error::InvalidArgument {
                reason: format!("The query parameter `{name}` is given twice"),
            }),
            (None, Some(_)) => unreachable!("a second value needs a first"),
        }
    };
    together(get(POLICY)?, get(SIGNATURE)?, get(KEY_ID)?)
}

/// The three cookies, if the request carries any of them. A browser sends the most specific
/// path's cookie first, so the first value of each name is the one taken.
pub fn in_cookies(headers: &HeaderMap) -> Result<Option<Presented>, Error> {
    let mut found: [Option<String>; 3] = [None, None, None];
    let pairs = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='));
    for (name, value) in pairs {
        let slot = match name.trim() {
            POLICY => &mut found[0],
            SIGNATURE => &mut found[1],
            KEY_ID => &mut found[2],
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value.trim().trim_matches('"').to_string());
        }
    }
    let [policy, signature, key_id] = found;
    together(policy, signature, key_id)
}

fn together(
    policy: Option<String>,
    signature: Option<String>,
    key_id: Option<String>,
) -> Result<Option<Presented>, Error> {
    match (policy, signature, key_id) {
        (None, None, None) => Ok(None),
        (Some(policy), Some(signature), Some(key_id)) => Ok(Some(Presented {
            policy,
            signature,
            key_id,
        })),
        _ => Err(Error::InvalidArgument {
            reason: format!("{POLICY}, {SIGNATURE} and {KEY_ID} go together: one is missing"),
        }),
    }
}

/// The key policies are signed with, derived from a client's secret.
pub fn policy_key(secret: &str) -> Vec<u8> {
    crate::s3::sigv4::hmac_sha256(secret.as_bytes(), LABEL).to_vec()
}

/// The hex signature of an encoded policy under a key from [`policy_key`].
pub fn signature(policy_key: &[u8], policy_text: &str) -> String {
    crate::s3::sigv4::hmac_hex(policy_key, policy_text.as_bytes())
}

/// A policy document (JSON) encoded and signed with `secret`: what `sign-policy` prints and
/// what an application backend computes with any HMAC library.
pub fn sign(secret: &str, document: &str) -> Result<(String, String), Error> {
    let text = URL_SAFE_NO_PAD.encode(document.as_bytes());
    parse(&text)?;
    let signature = signature(&policy_key(secret), &text);
    Ok((text, signature))
}

fn malformed(why: impl std::fmt::Display) -> Error {
    Error::InvalidArgument {
        reason: format!("{POLICY} is malformed: {why}"),
    }
}

/// Decodes and parses an encoded policy.
pub fn parse(text: &str) -> Result<Policy, Error> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(malformed(format_args!(
            "longer than {MAX_POLICY_BYTES} bytes"
        )));
    }
    let json = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| malformed("not base64url without padding"))?;
    let raw: RawPolicy = serde_json::from_slice(&json).map_err(malformed)?;
    let (name, keys) = parse_resource(&raw.resource)?;
    let ip = raw
        .ip
        .as_deref()
        .map(IpNet::parse)
        .transpose()
        .map_err(malformed)?;
    if raw.starts.is_some_and(|starts| starts >= raw.expires) {
        return Err(malformed("`starts` is not before `expires`"));
    }
    Ok(Policy {
        name,
        keys,
        expires: raw.expires,
        starts: raw.starts,
        ip,
    })
}

/// `/{name}/{key}` or `/{name}/{prefix}*`: the name a bucket name, `*` only at the end, and the
/// key (or prefix) one that the key checks accept, written as routing decodes it.
fn parse_resource(resource: &str) -> Result<(String, Keys), Error> {
    let rest = resource
        .strip_prefix('/')
        .ok_or_else(|| malformed("the resource must start with `/{name}/`"))?;
    let (name, pattern) = rest
        .split_once('/')
        .ok_or_else(|| malformed("the resource must start with `/{name}/`"))?;
    check_bucket_name(name).map_err(|why| malformed(format_args!("the name `{name}` {why}")))?;
    let keys = match pattern.strip_suffix('*') {
        Some(prefix) => Keys::Prefix(prefix.to_string()),
        None if pattern.is_empty() => {
            return Err(malformed(
                "the resource names no key: end it with `*` for all",
            ));
        }
        None => Keys::Exact(pattern.to_string()),
    };
    let key = match &keys {
        Keys::Exact(key) | Keys::Prefix(key) => key,
    };
    if key.contains('*') {
        return Err(malformed("`*` may only end the resource"));
    }
    check_key(key, false).map_err(|error| malformed(format_args!("its key {error}")))?;
    Ok((name.to_string(), keys))
}

/// Seconds since the epoch.
fn epoch_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

impl Policy {
    /// Whether the policy is valid at `now`: started, not expired, and not running for longer
    /// than a presigned URL may.
    pub fn check_time(&self, now: SystemTime) -> Result<(), Error> {
        let now = epoch_seconds(now);
        if now >= self.expires {
            return Err(Error::AccessDenied {
                reason: "Request has expired".to_string(),
            });
        }
        if self.starts.is_some_and(|starts| now < starts) {
            return Err(Error::AccessDenied {
                reason: "Request is not valid yet".to_string(),
            });
        }
        if self.expires - now > MAX_LIFETIME.as_secs() {
            return Err(Error::AccessDenied {
                reason: "The policy expires more than 7 days from now".to_string(),
            });
        }
        Ok(())
    }

    /// Whether the policy lets `route` be read from `client_ip`: a GET or HEAD of an object it
    /// names, and nothing else.
    pub fn check_request(&self, route: &Route, client_ip: Option<IpAddr>) -> Result<(), Error> {
        if let Some(range) = &self.ip
            && !client_ip.is_some_and(|address| range.contains(address))
        {
            return Err(Error::AccessDenied {
                reason: "The policy is for other client addresses".to_string(),
            });
        }
        if route.name != self.name {
            return Err(outside("names another bucket"));
        }
        if check_key(&route.key, false).is_err() {
            // Even where the integration stores such keys: a store that normalises paths
            // could read `photos/../secret` as `secret`.
            return Err(outside(
                "does not cover keys with `.`, `..` or empty segments",
            ));
        }
        match route.operation {
            Operation::StartSession => Ok(()),
            Operation::GetObject | Operation::HeadObject if self.covers(&route.key) => Ok(()),
            Operation::GetObject | Operation::HeadObject => Err(outside("does not cover this key")),
            operation if operation.is_write() => Err(Error::AccessDenied {
                reason: "A signed policy never authorises a write".to_string(),
            }),
            _ => Err(outside("grants object reads only")),
        }
    }

    /// Whether `key` (decoded once, as routing decodes it) is one the policy names.
    pub fn covers(&self, key: &str) -> bool {
        match &self.keys {
            Keys::Exact(exact) => key == exact,
            Keys::Prefix(prefix) => key.starts_with(prefix.as_str()),
        }
    }

    /// How long from `now` until the policy expires.
    pub fn remaining(&self, now: SystemTime) -> Duration {
        Duration::from_secs(self.expires.saturating_sub(epoch_seconds(now)))
    }
}

fn outside(why: &str) -> Error {
    Error::AccessDenied {
        reason: format!("The signed policy {why}"),
    }
}

#[cfg(test)]
mod tests;
