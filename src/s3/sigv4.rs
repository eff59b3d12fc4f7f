//! SigV4's maths, shared by the front door (verifying clients), the aws-chunked decoder
//! (verifying chunk signatures) and the signer (the upstream URL): the strict percent-encodings
//! S3 canonicalises with, the query parser, the signing key and signature, the `x-amz-date`
//! parser and a constant-time comparison. Pure functions; nothing here knows a request's route
//! or integration.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

use crate::s3::error::Error;

/// The most a request's clock may differ from the proxy's.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);
/// The longest a presigned URL may live: 7 days.
pub const MAX_PRESIGNED_EXPIRY: u64 = 7 * 24 * 3600;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// What a request's `x-amz-content-sha256` says of its body: the one place the header is
/// read (the front door's canonical request, the body plan, the aws-chunked decoder and the
/// upstream payload all ask this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentSha256<'a> {
    /// No header.
    Absent,
    /// `UNSIGNED-PAYLOAD`.
    Unsigned,
    /// A SHA-256 of the body, as 64 hex digits.
    Sha256(&'a str),
    /// An aws-chunked body: `STREAMING-…`, the kind as sent.
    Streaming(&'a str),
    /// Any other text.
    Other(&'a str),
    /// A value that is not ASCII text.
    NotText,
}

impl<'a> ContentSha256<'a> {
    /// Reads the header of `headers`.
    pub fn of(headers: &'a http::HeaderMap) -> ContentSha256<'a> {
        let Some(value) = headers.get("x-amz-content-sha256") else {
            return ContentSha256::Absent;
        };
        match value.to_str() {
            Err(_) => ContentSha256::NotText,
            Ok("UNSIGNED-PAYLOAD") => ContentSha256::Unsigned,
            Ok(hash) if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
                ContentSha256::Sha256(hash)
            }
            Ok(streaming) if streaming.starts_with("STREAMING-") => {
                ContentSha256::Streaming(streaming)
            }
            Ok(other) => ContentSha256::Other(other),
        }
    }

    /// The text the client sent and signed, if any.
    pub fn text(self) -> Option<&'a str> {
        match self {
            ContentSha256::Absent | ContentSha256::NotText => None,
            ContentSha256::Unsigned => Some("UNSIGNED-PAYLOAD"),
            ContentSha256::Sha256(text)
            | ContentSha256::Streaming(text)
            | ContentSha256::Other(text) => Some(text),
        }
    }
}
/// Bytes S3 leaves unencoded in a canonical URI path (RFC 3986 unreserved, plus `/`).
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');
/// Query names and values: unreserved only.
const QUERY: &AsciiSet = &PATH.add(b'/');

/// A key as it goes in an upstream path: every byte but `A-Z a-z 0-9 - _ . ~ /` as `%XX`.
pub fn encode_key(key: &str) -> String {
    Cow::from(utf8_percent_encode(key, PATH)).into_owned()
}

/// A decoded path, canonical as S3 expects it: encoded once, strictly (see [`encode_key`]).
pub fn encode_path(bytes: &[u8]) -> String {
    Cow::from(percent_encoding::percent_encode(bytes, PATH)).into_owned()
}

/// A query name or value, canonical: every byte but `A-Z a-z 0-9 - _ . ~` as `%XX`.
///
/// Borrowed when nothing needs encoding, as most names and values of a signed query.
pub fn encode_query(text: &str) -> Cow<'_, str> {
    // Through `Cow`, not `Display`: the formatter's per-piece calls cost more than the encoding.
    Cow::from(utf8_percent_encode(text, QUERY))
}

/// Whether `text` is already what encoding its decoding gives: every byte unreserved (or a `/`,
/// with `slash_kept`, as [`encode_path`] keeps it), or a `%XX` escape with upper-case digits
/// of a byte that encoding escapes. A canonical request can then borrow `text` as it came.
pub fn is_canonical(text: &str, slash_kept: bool) -> bool {
    let kept = |byte: u8| UNRESERVED[usize::from(byte)] || (slash_kept && byte == b'/');
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        if kept(byte) {
            at += 1;
            continue;
        }
        if !starts_with_canonical_escape(bytes.get(at..).unwrap_or_default(), kept) {
            return false;
        }
        at += 3;
    }
    true
}

/// Whether `bytes` starts with a `%XX` escape as canonical text writes it: upper-case digits,
/// of a byte that is not `kept` (one encoding escapes).
fn starts_with_canonical_escape(bytes: &[u8], kept: impl Fn(u8) -> bool) -> bool {
    match bytes {
        [b'%', high, low, ..] if is_upper_hex(*high) && is_upper_hex(*low) => {
            hex_byte(&[*high, *low]).is_some_and(|decoded| !kept(decoded))
        }
        _ => false,
    }
}

/// RFC 3986's unreserved bytes, `A-Z a-z 0-9 - _ . ~`, by value.
const UNRESERVED: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        byte += 1;
    }
    table
};

/// A raw query's `(name, value)` pairs as they came, when every name and value is canonical
/// ([`is_canonical`]); `None` when any is not. For a query [`parse_query`] accepts, these are
/// exactly its decoded pairs encoded again ([`encode_query`]), without decoding or encoding.
pub fn canonical_raw_pairs(query: &str) -> Option<Vec<(&str, &str)>> {
    // One walk that splits and checks at once: the pieces are those of [`raw_pairs`], and
    // each byte is what `is_canonical` accepts, with one `=` allowed per pair to split it.
    let kept = |byte: u8| UNRESERVED[usize::from(byte)];
    let bytes = query.as_bytes();
    let mut pairs = Vec::new();
    let (mut start, mut equals, mut at) = (0, None, 0);
    loop {
        match bytes.get(at) {
            Some(&byte) if kept(byte) => at += 1,
            Some(b'=') if equals.is_none() => {
                equals = Some(at);
                at += 1;
            }
            Some(b'%')
                if starts_with_canonical_escape(bytes.get(at..).unwrap_or_default(), kept) =>
            {
                at += 3;
            }
            Some(b'&') | None => {
                if at > start {
                    // Every byte before `at` is ASCII, so these cuts fall between characters.
                    pairs.push(match equals {
                        Some(cut) => (query.get(start..cut)?, query.get(cut + 1..at)?),
                        None => (query.get(start..at)?, ""),
                    });
                }
                if at >= bytes.len() {
                    return Some(pairs);
                }
                at += 1;
                (start, equals) = (at, None);
            }
            Some(_) => return None,
        }
    }
}

/// A hex digit as S3's canonical escapes write it: `0-9` or `A-F`.
fn is_upper_hex(digit: u8) -> bool {
    digit.is_ascii_digit() || (b'A'..=b'F').contains(&digit)
}

/// A raw query's `(name, value)` pieces, in order, as they came: split at each `&`, then at
/// the first `=` (a piece without one has an empty value), empty pieces skipped. The one
/// splitter under [`parse_query`], and what [`canonical_raw_pairs`] splits into.
pub fn raw_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = query;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() {
                return None;
            }
            // `&` and `=` are ASCII, so every cut below falls between characters.
            let end = rest.bytes().position(|b| b == b'&').unwrap_or(rest.len());
            let (pair, next) = rest.split_at(end);
            rest = next.get(1..).unwrap_or_default();
            if pair.is_empty() {
                continue;
            }
            return Some(match pair.bytes().position(|b| b == b'=') {
                Some(at) => {
                    let (name, value) = pair.split_at(at);
                    (name, value.get(1..).unwrap_or_default())
                }
                None => (pair, ""),
            });
        }
    })
}

/// The start of a canonical request: the method, the canonical path and the query, its
/// `(name, value)` pairs encoded ([`encode_query`]) and sorted, each line ended.
pub fn start_canonical_request<S: AsRef<str> + Ord>(
    method: &str,
    path: &str,
    mut pairs: Vec<(S, S)>,
) -> String {
    pairs.sort_unstable();
    let mut out = String::with_capacity(512 + path.len());
    out.push_str(method);
    out.push('\n');
    out.push_str(path);
    out.push('\n');
    for (at, (name, value)) in pairs.iter().enumerate() {
        if at > 0 {
            out.push('&');
        }
        out.push_str(name.as_ref());
        out.push('=');
        out.push_str(value.as_ref());
    }
    out.push('\n');
    out
}

/// How a canonical header line folds a value's whitespace. SigV4 trims each value and writes
/// each inner run as one space; which characters count differs between signers: clients'
/// SDKs fold any whitespace (botocore splits on it), aws-sigv4 folds spaces only. The front
/// door reads what clients signed; the upstream signer writes what aws-sigv4 writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// Any whitespace, as clients' SDKs fold it.
    Whitespace,
    /// Spaces only, as aws-sigv4 folds them.
    Spaces,
}

/// Appends one canonical header line, for both directions: `name:`, then `values` (a
/// repeated header's, in order) each trimmed and folded as `fold` says and joined by `,`,
/// then the line's end.
pub fn push_header_line<S: AsRef<str>>(
    out: &mut String,
    name: &str,
    values: impl IntoIterator<Item = S>,
    fold: Fold,
) {
    out.push_str(name);
    out.push(':');
    for (at, value) in values.into_iter().enumerate() {
        if at > 0 {
            out.push(',');
        }
        let value = value.as_ref();
        let words: &mut dyn Iterator<Item = &str> = match fold {
            Fold::Whitespace => &mut value.split_whitespace(),
            Fold::Spaces => &mut value.split(' ').filter(|word| !word.is_empty()),
        };
        for (at, word) in words.enumerate() {
            if at > 0 {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    out.push('\n');
}

/// The end of a canonical request, after its header lines: the signed header names joined
/// with `;`, and the payload hash.
pub fn finish_canonical_request(out: &mut String, signed_headers: &str, payload_hash: &str) {
    out.push('\n');
    out.push_str(signed_headers);
    out.push('\n');
    out.push_str(payload_hash);
}

/// Splits a raw query into (name, value) pairs, in order, each decoded once and strictly
/// ([`percent_decode`]): the one query parser, for routing and for checking signatures, so
/// both read the same parameters.
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, Error> {
    raw_pairs(query)
        .map(|(name, value)| Ok((percent_decode(name)?, percent_decode(value)?)))
        .collect()
}

/// Decodes `%XX` escapes once; refuses stray `%` and non-UTF-8 results.
///
/// A `%` not followed by two hex digits is an error, not a literal: S3 would refuse such a
/// target, and so do we, so that one key has exactly one spelling. Text without `%` is copied
/// as it is (every query parameter and most keys), without a byte-by-byte walk.
pub fn percent_decode(raw: &str) -> Result<String, Error> {
    let bytes = raw.as_bytes();
    if !bytes.contains(&b'%') {
        return Ok(raw.to_owned());
    }
    let stray = || Error::InvalidKey {
        reason: "a `%` must start a %XX escape".to_string(),
    };
    // Every piece after a `%` starts with the escape's two hex digits; the text between
    // escapes is copied in one go.
    let mut pieces = bytes.split(|&byte| byte == b'%');
    let mut decoded = Vec::with_capacity(bytes.len());
    decoded.extend_from_slice(pieces.next().unwrap_or_default());
    for piece in pieces {
        let (digits, rest) = piece.split_at_checked(2).ok_or_else(stray)?;
        decoded.push(hex_byte(digits).ok_or_else(stray)?);
        decoded.extend_from_slice(rest);
    }
    String::from_utf8(decoded).map_err(|_| Error::InvalidKey {
        reason: "keys must be UTF-8 once percent-decoded".to_string(),
    })
}

/// The byte two hex digits spell, in either case.
fn hex_byte(digits: &[u8]) -> Option<u8> {
    let digit = |d: u8| char::from(d).to_digit(16);
    match digits {
        [high, low] => Some((digit(*high)? * 16 + digit(*low)?) as u8),
        _ => None,
    }
}

/// Signing keys derived so far, by a hash of (secret, scope); each entry keeps both to confirm
/// a hit. A key changes once a day per region and service, and deriving it costs four HMACs.
static SIGNING_KEYS: std::sync::OnceLock<SigningKeys> = std::sync::OnceLock::new();
/// Past this many keys (identities × regions × days) the cache starts over.
const MAX_SIGNING_KEYS: usize = 16_384;

struct SigningKeys {
    hasher: std::hash::RandomState,
    keys: std::sync::Mutex<std::collections::HashMap<u64, CachedKey>>,
}

/// A derived key with the secret and scope it was derived from.
type CachedKey = (String, String, SigningKey);

/// A SigV4 signing key: an HMAC-SHA256 output, so 32 bytes, kept and passed by value.
pub type SigningKey = [u8; 32];

/// [`signing_key`], derived once per (secret, scope) and then taken from a process-wide cache.
pub fn cached_signing_key(secret: &str, scope: &str) -> SigningKey {
    use std::hash::BuildHasher;
    let cache = SIGNING_KEYS.get_or_init(|| SigningKeys {
        hasher: std::hash::RandomState::new(),
        keys: std::sync::Mutex::default(),
    });
    let hash = cache.hasher.hash_one((secret, scope));
    if let Ok(keys) = cache.keys.lock()
        && let Some((cached_secret, cached_scope, key)) = keys.get(&hash)
        && cached_secret == secret
        && cached_scope == scope
    {
        return *key;
    }
    let key = signing_key(secret, scope);
    if let Ok(mut keys) = cache.keys.lock() {
        if keys.len() >= MAX_SIGNING_KEYS {
            keys.clear();
        }
        keys.insert(hash, (secret.to_string(), scope.to_string(), key));
    }
    key
}

/// The SigV4 signing key for `scope` (`date/region/service/aws4_request`): four HMACs chained
/// from `AWS4` and the secret, as aws-sigv4's `generate_signing_key` derives it (a test
/// compares the two).
pub fn signing_key(secret: &str, scope: &str) -> SigningKey {
    let mut fields = scope.split('/');
    let mut key = hmac_sha256(
        format!("AWS4{secret}").as_bytes(),
        fields.next().unwrap_or_default().as_bytes(),
    );
    for field in [fields.next(), fields.next()] {
        key = hmac_sha256(&key, field.unwrap_or_default().as_bytes());
    }
    hmac_sha256(&key, b"aws4_request")
}

/// The SigV4 signature of a canonical request: the HMAC of the string to sign
/// ([`string_to_sign`]), fed to the HMAC piece by piece rather than built first.
pub fn signature(
    signing_key: &SigningKey,
    time_text: &str,
    scope: &str,
    canonical_request: &str,
) -> String {
    let hash = hex_digits(&Sha256::digest(canonical_request.as_bytes()).into());
    let mac = hmac_sha256_of_pieces(
        signing_key,
        &[
            ALGORITHM.as_bytes(),
            b"\n",
            time_text.as_bytes(),
            b"\n",
            scope.as_bytes(),
            b"\n",
            &hash,
        ],
    );
    let mut hex = String::with_capacity(64);
    push_hex(&mut hex, &mac);
    hex
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`, by the `hmac` crate: signatures, the
/// policy key and policy signatures all go through here.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    hmac_sha256_of_pieces(key, &[message])
}

/// [`hmac_sha256`] of the pieces of `message` one after another, without joining them.
fn hmac_sha256_of_pieces(key: &[u8], message: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for piece in message {
        mac.update(piece);
    }
    mac.finalize().into_bytes().into()
}

/// [`hmac_sha256`] in lowercase hex: what aws-sigv4's `calculate_signature` gives (a test
/// compares the two), with the hex written by [`push_hex`].
pub fn hmac_hex(key: &[u8], message: &[u8]) -> String {
    let mut hex = String::with_capacity(64);
    push_hex(&mut hex, &hmac_sha256(key, message));
    hex
}

/// What a SigV4 signature signs: the algorithm, the time, the scope and the canonical
/// request's hash.
pub fn string_to_sign(time_text: &str, scope: &str, canonical_request: &str) -> String {
    let mut out = [ALGORITHM, time_text, scope, ""].join("\n");
    push_hex(
        &mut out,
        &Sha256::digest(canonical_request.as_bytes()).into(),
    );
    out
}

/// Appends a hash or MAC in lowercase hex ([`hex_digits`]).
pub fn push_hex(out: &mut String, hash: &[u8; 32]) {
    out.push_str(std::str::from_utf8(&hex_digits(hash)).unwrap_or_default());
}

/// A hash in lowercase hex, on the stack, written by the `hex` crate into the buffer
/// (`hex::encode` would build a `String` through a `char` iterator).
fn hex_digits(hash: &[u8; 32]) -> [u8; 64] {
    let mut hex = [0; 64];
    // 32 bytes always fill 64 digits.
    let _ = hex::encode_to_slice(hash, &mut hex);
    hex
}

/// Compares without stopping at the first difference, so timing tells nothing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `YYYYMMDDTHHMMSSZ` in UTC, as `x-amz-date` carries it.
pub fn format_amz_date(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    // Through the formatter: writing the digits by hand measured within the noise of an A/B
    // (docs/benchmarks.md), so the library's way stays.
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The (year, month, day) of a day counted from 1970-01-01 (proleptic Gregorian).
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = text.get(range)?;
        digits
            .bytes()
            .all(|d| d.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), then seconds.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    u64::try_from(seconds)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

#[cfg(test)]
mod tests {

    #[test]
    fn content_sha256_is_read_into_one_of_its_kinds() {
        let read = |value: Option<&[u8]>| {
            let mut headers = http::HeaderMap::new();
            if let Some(value) = value {
                let value = http::HeaderValue::from_bytes(value).unwrap();
                headers.insert("x-amz-content-sha256", value);
            }
            format!("{:?}", ContentSha256::of(&headers))
        };
        let hash = "E3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(read(None), "Absent");
        assert_eq!(read(Some(b"UNSIGNED-PAYLOAD")), "Unsigned");
        assert_eq!(read(Some(hash.as_bytes())), format!("Sha256({hash:?})"));
        assert_eq!(
            read(Some(b"STREAMING-UNSIGNED-PAYLOAD-TRAILER")),
            "Streaming(\"STREAMING-UNSIGNED-PAYLOAD-TRAILER\")"
        );
        assert_eq!(
            read(Some(&hash.as_bytes()[1..])),
            format!("Other({:?})", &hash[1..])
        );
        assert_eq!(
            read(Some(b"unsigned-payload")),
            "Other(\"unsigned-payload\")"
        );
        assert_eq!(read(Some(b"\xe9t\xe9")), "NotText");
    }
    use super::*;

    #[test]
    fn header_lines_fold_as_each_direction_signs() {
        let line = |values: &[&str], fold| {
            let mut out = String::new();
            push_header_line(&mut out, "x-amz-meta-note", values.iter().copied(), fold);
            out
        };
        let values = ["  a   b\tc  ", "d"];
        assert_eq!(line(&values, Fold::Whitespace), "x-amz-meta-note:a b c,d\n");
        assert_eq!(line(&values, Fold::Spaces), "x-amz-meta-note:a b\tc,d\n");
        assert_eq!(line(&[""], Fold::Spaces), "x-amz-meta-note:\n");
    }

    /// `push_hex` against the `hex` crate, over every byte value and a run of digests.
    #[test]
    fn push_hex_agrees_with_the_hex_crate() {
        let every_byte: Vec<u8> = (0..=255).collect();
        let mut inputs: Vec<[u8; 32]> = every_byte
            .chunks_exact(32)
            .map(|chunk| chunk.try_into().expect("32 bytes"))
            .collect();
        inputs.extend((0..64u32).map(|n| -> [u8; 32] { Sha256::digest(n.to_le_bytes()).into() }));
        assert_eq!(inputs.len(), 8 + 64);
        for bytes in &inputs {
            let mut out = "prefix".to_string();
            push_hex(&mut out, bytes);
            assert_eq!(out, format!("prefix{}", hex::encode(bytes)));
        }
    }

    /// Texts of fewer than `most` of `pieces` each, chosen by a xorshift from `seed`: the
    /// same texts on every run.
    fn joined_pieces<'a>(pieces: &'a [&'a str], seed: u64, most: u64) -> impl FnMut() -> String {
        let mut seed = seed;
        move || {
            let mut text = String::new();
            for _ in 0..(seed % most) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            }
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text
        }
    }

    /// `raw_pairs` against `str::split` and `split_once`, the splitter it replaced, over
    /// queries built from `&`, `=`, empty pieces and multi-byte characters.
    #[test]
    fn raw_pairs_split_as_split_and_split_once_do() {
        let pieces = [
            "a", "&", "=", "&&", "==", "é", "%26", "b=c", "", "x-id", "€=",
        ];
        let mut generate = joined_pieces(&pieces, 0x9E37_79B9_7F4A_7C15, 9);
        let mut pairs_seen = 0;
        for _ in 0..20_000 {
            let query = generate();
            let reference: Vec<(&str, &str)> = query
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
                .collect();
            let got: Vec<(&str, &str)> = raw_pairs(&query).collect();
            assert_eq!(got, reference, "{query:?}");
            pairs_seen += got.len();
        }
        assert!(pairs_seen > 20_000, "only {pairs_seen} pairs compared");
    }

    /// `percent_decode` against the `percent_encoding` crate's decoder (which passes a stray `%`
    /// through, so stray ones are told apart first): every escape case, stray and truncated
    /// `%`, non-UTF-8 results. Counts both outcomes so it cannot pass by refusing everything.
    #[test]
    fn percent_decode_agrees_with_the_percent_encoding_crate() {
        let pieces = [
            "a", "/", "%2F", "%2f", "%41", "%", "%4", "%G1", "%zz", "+", "é", "%C3%A9", "%C3",
            "%FF", "%00", "~", " ", "%25", "=", "%%41",
        ];
        let (mut accepted, mut refused) = (0, 0);
        let mut generate = joined_pieces(&pieces, 0x2545_F491_4F6C_DD1D, 7);
        for _ in 0..20_000 {
            let raw = generate();
            let bytes = raw.as_bytes();
            let stray = bytes.iter().enumerate().any(|(at, &b)| {
                b == b'%'
                    && !(bytes.get(at + 1).is_some_and(u8::is_ascii_hexdigit)
                        && bytes.get(at + 2).is_some_and(u8::is_ascii_hexdigit))
            });
            let reference: Vec<u8> = percent_encoding::percent_decode_str(&raw).collect();
            let expected = (!stray)
                .then(|| String::from_utf8(reference).ok())
                .flatten();
            let got = percent_decode(&raw).ok();
            assert_eq!(got, expected, "{raw:?}");
            if got.is_some() {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        assert!(
            accepted > 5_000 && refused > 5_000,
            "{accepted} / {refused}"
        );
    }

    /// Raw text taken as it came ([`is_canonical`], [`canonical_raw_pairs`]) is what the long
    /// way gives, decoding and encoding again, on generated paths and queries; both ways are
    /// taken often, so neither side passes by being skipped.
    #[test]
    fn canonical_text_is_what_decoding_and_encoding_again_gives() {
        let pieces = [
            "a",
            "Z9",
            "-_.~",
            "/",
            "%2F",
            "%2f",
            "%41",
            "%7E",
            "%20",
            "%25",
            "%3D",
            "%26",
            "%C3%A9",
            "%",
            "%G1",
            "+",
            "=",
            "&",
            " ",
            "é",
            "*",
            "%E2%9C%93",
        ];
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |modulo: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % modulo as u64) as usize
        };
        let (mut paths_as_they_came, mut paths_redone) = (0, 0);
        let (mut queries_as_they_came, mut queries_redone) = (0, 0);
        for _ in 0..20_000 {
            let raw: String = (0..next(8)).map(|_| pieces[next(pieces.len())]).collect();
            let decoded: Vec<u8> = percent_encoding::percent_decode_str(&raw).collect();
            if is_canonical(&raw, true) {
                assert_eq!(raw, encode_path(&decoded), "{raw:?}");
                paths_as_they_came += 1;
            } else {
                paths_redone += 1;
            }
            // The one-walk split and check says what splitting, then checking each piece, says.
            let two_passes: Option<Vec<(&str, &str)>> = raw_pairs(&raw)
                .map(|(n, v)| (is_canonical(n, false) && is_canonical(v, false)).then_some((n, v)))
                .collect();
            assert_eq!(canonical_raw_pairs(&raw), two_passes, "{raw:?}");
            let Ok(pairs) = parse_query(&raw) else {
                continue;
            };
            let redone: Vec<(String, String)> = pairs
                .iter()
                .map(|(n, v)| (encode_query(n).into_owned(), encode_query(v).into_owned()))
                .collect();
            match canonical_raw_pairs(&raw) {
                Some(borrowed) => {
                    let borrowed: Vec<(String, String)> = borrowed
                        .into_iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect();
                    assert_eq!(borrowed, redone, "{raw:?}");
                    queries_as_they_came += 1;
                }
                None => queries_redone += 1,
            }
        }
        for count in [
            paths_as_they_came,
            paths_redone,
            queries_as_they_came,
            queries_redone,
        ] {
            assert!(
                count > 1_000,
                "{paths_as_they_came} {paths_redone} {queries_as_they_came} {queries_redone}"
            );
        }
    }

    /// `hmac_hex` against aws-sigv4's `calculate_signature`, over keys shorter than, as long as
    /// and longer than SHA-256's block, and messages of every length across two blocks.
    /// `signature`, which feeds the string to sign to the HMAC in pieces, against the HMAC of
    /// `string_to_sign` (what `explain` shows) and aws-sigv4's `calculate_signature` of it.
    #[test]
    fn signatures_are_the_hmac_of_the_string_to_sign() {
        let key = signing_key("secret", "20240102/us-east-1/s3/aws4_request");
        let mut compared = 0;
        for canonical in [
            "",
            "GET\n/\n\nhost:x\n\nhost\nUNSIGNED-PAYLOAD",
            &"é".repeat(300),
        ] {
            for time_text in ["20240102T030405Z", ""] {
                let scope = "20240102/us-east-1/s3/aws4_request";
                let string = string_to_sign(time_text, scope, canonical);
                let expected = aws_sigv4::sign::v4::calculate_signature(key, string.as_bytes());
                assert_eq!(signature(&key, time_text, scope, canonical), expected);
                assert_eq!(hmac_hex(&key, string.as_bytes()), expected);
                compared += 1;
            }
        }
        assert_eq!(compared, 6);
    }

    /// `signing_key` against aws-sigv4's `generate_signing_key`, over secrets of several
    /// lengths and characters, days, regions and services.
    #[test]
    fn signing_keys_agree_with_aws_sigv4() {
        let mut compared = 0;
        for secret in [
            "",
            "s",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            &"é".repeat(70),
        ] {
            for seconds in [0, 1_440_938_160, 1_709_164_800, 4_102_444_799] {
                let day = UNIX_EPOCH + Duration::from_secs(seconds);
                let date = &format_amz_date(day)[..8];
                for (region, service) in [("us-east-1", "s3"), ("eu-west-3", "sts"), ("x", "y")] {
                    let reference =
                        aws_sigv4::sign::v4::generate_signing_key(secret, day, region, service);
                    let scope = format!("{date}/{region}/{service}/aws4_request");
                    assert_eq!(
                        &signing_key(secret, &scope)[..],
                        reference.as_ref(),
                        "{scope}"
                    );
                    assert_eq!(
                        cached_signing_key(secret, &scope),
                        signing_key(secret, &scope)
                    );
                    compared += 1;
                }
            }
        }
        assert_eq!(compared, 4 * 4 * 3);
    }

    #[test]
    fn hmac_agrees_with_aws_sigv4() {
        let mut compared = 0;
        for key_length in [0, 1, 32, 63, 64, 65, 200] {
            let key: Vec<u8> = (0..key_length).map(|n| (n * 7 + 3) as u8).collect();
            for message_length in 0..=130 {
                let message: Vec<u8> = (0..message_length).map(|n| (n * 13) as u8).collect();
                assert_eq!(
                    hmac_hex(&key, &message),
                    aws_sigv4::sign::v4::calculate_signature(&key, &message),
                    "key {key_length} bytes, message {message_length}"
                );
                compared += 1;
            }
        }
        assert_eq!(compared, 7 * 131);
    }

    #[test]
    fn amz_dates_parse() {
        assert_eq!(
            parse_amz_date("20150830T123600Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_440_938_160))
        );
        assert_eq!(
            parse_amz_date("20240229T000000Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_709_164_800))
        );
        for bad in [
            "2015-08-30T12:36:00Z",
            "20151330T000000Z",
            "20150830T123600",
            "2015083XT123600Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    /// The digit-by-digit date says what the formatter and the parser say, every week or so
    /// from 1970 to the end of 9999.
    #[test]
    fn amz_dates_format_as_the_formatter_does_and_parse_back() {
        let mut seconds = 0u64;
        let mut checked = 0;
        while seconds < 253_402_300_800 {
            let time = UNIX_EPOCH + Duration::from_secs(seconds);
            let formatted = format_amz_date(time);
            let (days, rest) = (seconds / 86_400, seconds % 86_400);
            let (year, month, day) = civil_from_days(days as i64);
            let expected = format!(
                "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
                rest / 3600,
                rest % 3600 / 60,
                rest % 60
            );
            assert_eq!(formatted, expected);
            assert_eq!(parse_amz_date(&formatted), Some(time), "{formatted}");
            checked += 1;
            seconds += 86_399 * 7 + 3_607;
        }
        assert_eq!(format_amz_date(UNIX_EPOCH), "19700101T000000Z");
        assert!(checked > 400_000, "{checked}");
    }

    #[test]
    fn constant_time_comparison_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
