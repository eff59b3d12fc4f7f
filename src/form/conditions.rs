//! S3's POST policy: a base64 JSON document with an `expiration` and `conditions`, each a form
//! field's exact value (`{"key": "a.png"}`, `["eq", "$key", "a.png"]`), its start
//! (`["starts-with", "$key", "uploads/"]`) or the file's size (`["content-length-range", 0,
//! 1048576]`). Every field of the form but the signature, the policy, the file and `x-ignore-*`
//! must be named by a condition, and every condition must hold.

use std::time::SystemTime;

use serde_json::Value;

use crate::s3::error::Error;

/// The longest policy document accepted (S3's own limit is 20 KiB of form fields).
const MAX_POLICY_BYTES: usize = 20 * 1024;

/// One condition of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The field (lower case) has exactly this value.
    Eq(String, String),
    /// The field's value starts with this (any value for `""`).
    StartsWith(String, String),
    /// The file's size in bytes lies in this range, both ends included.
    LengthRange(u64, u64),
}

/// A parsed POST policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostPolicy {
    /// Seconds since the epoch after which the policy is void.
    pub expiration: SystemTime,
    /// What the form must meet.
    pub conditions: Vec<Condition>,
}

/// The form's fields (before the file), names in lower case as S3 compares them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// A field's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }

    /// Adds a field; a name given twice is refused.
    pub fn add(&mut self, name: &str, value: String) -> Result<(), Error> {
        let name = name.to_ascii_lowercase();
        if self.get(&name).is_some() {
            return Err(Error::InvalidArgument {
                reason: format!("The form field `{name}` is given twice"),
            });
        }
        self.0.push((name, value));
        Ok(())
    }
}

/// Fields no condition needs to name: the signature, the policy, and `x-ignore-*`.
fn exempt(name: &str) -> bool {
    matches!(
        name,
        "policy" | "x-amz-signature" | "signature" | "awsaccesskeyid" | "file"
    ) || name.starts_with("x-ignore-")
}

fn malformed(why: impl std::fmt::Display) -> Error {
    Error::InvalidArgument {
        reason: format!("Invalid Policy: {why}"),
    }
}

fn failed(why: impl std::fmt::Display) -> Error {
    Error::AccessDenied {
        reason: format!("Invalid according to Policy: {why}"),
    }
}

/// Decodes and parses the form's `policy` field.
pub fn parse(policy: &str) -> Result<PostPolicy, Error> {
    if policy.len() > MAX_POLICY_BYTES {
        return Err(malformed("longer than 20 KiB"));
    }
    let json = aws_smithy_types::base64::decode(policy.trim())
        .map_err(|_| malformed("the policy is not base64"))?;
    let document: Value =
        serde_json::from_slice(&json).map_err(|error| malformed(format_args!("{error}")))?;
    let object = document
        .as_object()
        .ok_or_else(|| malformed("the policy is not a JSON object"))?;
    if let Some(extra) = object
        .keys()
        .find(|key| !matches!(key.as_str(), "expiration" | "conditions"))
    {
        return Err(malformed(format_args!("unknown field `{extra}`")));
    }
    let expiration = object
        .get("expiration")
        .and_then(Value::as_str)
        .and_then(parse_expiration)
        .ok_or_else(|| malformed("`expiration` is not a time like 2026-11-29T12:00:00Z"))?;
    let conditions = object
        .get("conditions")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("`conditions` is not a list"))?
        .iter()
        .map(parse_condition)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PostPolicy {
        expiration,
        conditions,
    })
}

/// `2026-11-29T12:00:00Z`, with or without fractional seconds.
fn parse_expiration(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (seconds, _fraction) = text.split_once('.').unwrap_or((text, ""));
    let (date, time) = seconds.split_once('T')?;
    let numbers = |text: &str, separator: char, widths: [usize; 3]| -> Option<[u32; 3]> {
        let parts: Vec<&str> = text.split(separator).collect();
        let [a, b, c] = parts[..] else { return None };
        let mut out = [0; 3];
        for ((slot, part), width) in out.iter_mut().zip([a, b, c]).zip(widths) {
            if part.len() != width || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *slot = part.parse().ok()?;
        }
        Some(out)
    };
    let [year, month, day] = numbers(date, '-', [4, 2, 2])?;
    let [hour, minute, second] = numbers(time, ':', [2, 2, 2])?;
    let compact = format!("{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}Z");
    crate::s3::sigv4::parse_amz_date(&compact)
}

fn parse_condition(condition: &Value) -> Result<Condition, Error> {
    if let Some(object) = condition.as_object() {
        let [(name, value)] = object.iter().collect::<Vec<_>>()[..] else {
            return Err(malformed("an exact-match condition names one field"));
        };
        let value = value
            .as_str()
            .ok_or_else(|| malformed(format_args!("the condition on `{name}` is not text")))?;
        return Ok(Condition::Eq(name.to_ascii_lowercase(), value.to_string()));
    }
    let Some([operator, first, second]) = condition.as_array().map(Vec::as_slice) else {
        return Err(malformed("a condition is an object or a list of three"));
    };
    match operator.as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("content-length-range") => {
            let (Some(min), Some(max)) = (first.as_u64(), second.as_u64()) else {
                return Err(malformed("content-length-range takes two sizes"));
            };
            if min > max {
                return Err(malformed(
                    "content-length-range's minimum is above its maximum",
                ));
            }
            Ok(Condition::LengthRange(min, max))
        }
        Some(operator @ ("eq" | "starts-with")) => {
            let field = first
                .as_str()
                .and_then(|field| field.strip_prefix('$'))
                .ok_or_else(|| malformed(format_args!("{operator} names a `$field`")))?
                .to_ascii_lowercase();
            let value = second
                .as_str()
                .ok_or_else(|| malformed(format_args!("the {operator} value is not text")))?
                .to_string();
            Ok(match operator {
                "eq" => Condition::Eq(field, value),
                _ => Condition::StartsWith(field, value),
            })
        }
        _ => Err(malformed(
            "a condition is eq, starts-with or content-length-range",
        )),
    }
}

impl PostPolicy {
    /// Checks the form against the policy at `now`: not expired, every condition met by the
    /// fields (`bucket` by the bucket the form was posted to), every field named by a
    /// condition. Returns the size range the file must fall in.
    pub fn check(
        &self,
        fields: &Fields,
        bucket: &str,
        now: SystemTime,
    ) -> Result<(u64, u64), Error> {
        if now >= self.expiration {
            return Err(failed("Policy expired."));
        }
        let value_of = |field: &str| match field {
            "bucket" => Some(bucket),
            _ => fields.get(field),
        };
        let mut range = (0, u64::MAX);
        for condition in &self.conditions {
            match condition {
                Condition::Eq(field, expected) => {
                    if value_of(field).unwrap_or("") != expected {
                        return Err(failed(format_args!(
                            "Policy Condition failed: [\"eq\", \"${field}\", \"{expected}\"]"
                        )));
                    }
                }
                Condition::StartsWith(field, prefix) => {
                    if !starts_with(field, value_of(field).unwrap_or(""), prefix) {
                        return Err(failed(format_args!(
                            "Policy Condition failed: [\"starts-with\", \"${field}\", \"{prefix}\"]"
                        )));
                    }
                }
                Condition::LengthRange(min, max) => range = (range.0.max(*min), range.1.min(*max)),
            }
        }
        if let Some(field) = fields.get("bucket")
            && field != bucket
        {
            return Err(failed("the bucket field names another bucket"));
        }
        let named = |name: &str| {
            self.conditions.iter().any(|condition| match condition {
                Condition::Eq(field, _) | Condition::StartsWith(field, _) => field == name,
                Condition::LengthRange(..) => false,
            })
        };
        if let Some((extra, _)) = fields
            .0
            .iter()
            .find(|(name, _)| !exempt(name) && !named(name))
        {
            return Err(failed(format_args!("Extra input fields: {extra}")));
        }
        Ok(range)
    }
}

/// `starts-with`; a `Content-Type` may list several types, each of which must match.
fn starts_with(field: &str, value: &str, prefix: &str) -> bool {
    if field == "content-type" {
        value.split(',').all(|one| one.trim().starts_with(prefix))
    } else {
        value.starts_with(prefix)
    }
}

#[cfg(test)]
mod tests;
