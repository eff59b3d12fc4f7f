//! Keeps a client inside its integration in S3's XML: listing requests get the integration's
//! prefix added, DeleteObjects keys get it too, and responses have it (and the real bucket
//! name) stripped, so a client sees the integration as if it were its own bucket, never the
//! names around it.
//!
//! These documents are small (a listing page is at most 1,000 keys), so they are the one kind
//! of body the proxy collects, capped at [`MAX_DOCUMENT`]. Elements are rewritten by name:
//! S3's response elements carry no attributes and never nest an element in one of the same
//! name, so a scan for `<Key>…</Key>` is exact.

use crate::error::{Error, xml_escape};
use crate::route::percent_decode;
use crate::sign::encode_key;

/// The largest XML document (request or response) the proxy reads into memory.
pub const MAX_DOCUMENT: usize = 8 << 20;

/// Elements whose text is a key or a key prefix the upstream chose.
const KEY_ELEMENTS: &[&str] = &["Key", "Prefix"];
/// Where to continue a listing: a key in S3, an opaque token in some stores (moto). Outside
/// the prefix it is dropped, and clients continue from the last key, as S3 documents.
const NEXT_MARKERS: &[&str] = &["NextMarker", "NextKeyMarker"];
/// Elements that echo a marker the client sent, with the query parameter that carried it.
/// They are answered with the client's own value, never with the upstream's text.
pub const ECHOED_MARKERS: &[(&str, &str)] = &[
    ("StartAfter", "start-after"),
    ("Marker", "marker"),
    ("KeyMarker", "key-marker"),
];
/// Elements whose text is the bucket name.
const BUCKET_ELEMENTS: &[&str] = &["Name", "Bucket"];

/// How a response's keys are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEncoding {
    Plain,
    /// `encoding-type=url`: keys are percent-encoded.
    Url,
}

/// Rewrites a response document: keys lose the integration's `prefix`, the real bucket name
/// becomes the logical one, echoed markers are the client's own (`client_query`), and
/// `<Location>` is emptied. A key outside the prefix is never passed on.
pub fn response(
    document: &str,
    prefix: &str,
    logical_bucket: &str,
    encoding: KeyEncoding,
    client_query: &[(String, String)],
) -> Result<String, Error> {
    let mut text = document.to_string();
    for element in KEY_ELEMENTS {
        text = map_elements(&text, element, upstream_fault, |value| {
            strip(value, prefix, encoding)
        })?;
    }
    for element in NEXT_MARKERS {
        text = map_elements(&text, element, upstream_fault, |value| {
            Ok(strip(value, prefix, encoding).unwrap_or_default())
        })?;
    }
    for (element, parameter) in ECHOED_MARKERS {
        let sent = client_query
            .iter()
            .find(|(name, _)| name == parameter)
            .map(|(_, value)| value.as_str())
            .unwrap_or_default();
        let echoed = match encoding {
            KeyEncoding::Plain => xml_escape(sent),
            KeyEncoding::Url => xml_escape(&encode_key(sent)),
        };
        text = map_elements(&text, element, upstream_fault, |_| Ok(echoed.clone()))?;
    }
    for element in BUCKET_ELEMENTS {
        text = map_elements(&text, element, upstream_fault, |_| {
            Ok(xml_escape(logical_bucket))
        })?;
    }
    // CompleteMultipartUpload's Location is the upstream URL; the logical key is all a client
    // needs.
    text = map_elements(&text, "Location", upstream_fault, |_| Ok(String::new()))?;
    Ok(text)
}

/// Adds the integration's prefix to every `<Key>` of a DeleteObjects request, refusing keys
/// the integration would refuse on their own.
pub fn delete_request(
    document: &str,
    prefix: &str,
    check: impl Fn(&str) -> Result<(), Error>,
) -> Result<String, Error> {
    // The client wrote this document: a broken one is its MalformedXML, not our fault.
    map_elements(
        document,
        "Key",
        |_| Error::MalformedXML,
        |value| {
            let key = xml_unescape(value)?;
            check(&key)?;
            Ok(xml_escape(&format!("{prefix}{key}")))
        },
    )
}

fn strip(value: &str, prefix: &str, encoding: KeyEncoding) -> Result<String, Error> {
    // The detail goes to the log only; the caller sees a plain InternalError.
    let leaked = || Error::Internal {
        detail: format!("the upstream listed `{value}`, outside the integration's prefix"),
    };
    let key = match encoding {
        KeyEncoding::Plain => xml_unescape(value)?,
        KeyEncoding::Url => percent_decode(&xml_unescape(value)?)?,
    };
    // An empty element (`<Marker></Marker>`, `<Prefix></Prefix>`) means "none", not a key.
    if key.is_empty() {
        return Ok(String::new());
    }
    let relative = key.strip_prefix(prefix).ok_or_else(leaked)?;
    Ok(match encoding {
        KeyEncoding::Plain => xml_escape(relative),
        KeyEncoding::Url => xml_escape(&encode_key(relative)),
    })
}

/// Replaces the text of every `<name>…</name>` with `f(text)`; `<name/>` stays as it is. A
/// document in which such an element holds markup, or is left open, is refused whole with
/// `malformed(detail)`.
fn map_elements(
    document: &str,
    name: &str,
    malformed: fn(String) -> Error,
    mut f: impl FnMut(&str) -> Result<String, Error>,
) -> Result<String, Error> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut out = String::with_capacity(document.len());
    let mut rest = document;
    while let Some(start) = rest.find(&open) {
        let value_start = start + open.len();
        let Some(length) = rest[value_start..].find(&close) else {
            return Err(malformed(format!(
                "unterminated <{name}> in an S3 XML document"
            )));
        };
        let value = &rest[value_start..value_start + length];
        // These elements hold text only; a `<` inside means elements overlap (a truncated or
        // crafted document), and rewriting it could swallow the keys in between.
        if value.contains('<') {
            return Err(malformed(format!(
                "<{name}> holds markup in an S3 XML document"
            )));
        }
        out.push_str(&rest[..value_start]);
        out.push_str(&f(value)?);
        out.push_str(&close);
        rest = &rest[value_start + length + close.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A broken document from the upstream: the client gets a plain InternalError, the detail is
/// logged.
fn upstream_fault(detail: String) -> Error {
    Error::Internal { detail }
}

/// Undoes XML escaping: the five entities and numeric character references.
pub fn xml_unescape(text: &str) -> Result<String, Error> {
    let malformed = || Error::MalformedXML;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let end = rest[at..].find(';').ok_or_else(malformed)? + at;
        let entity = &rest[at + 1..end];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(decimal) = entity.strip_prefix('#') {
                    decimal.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32).ok_or_else(malformed)?
            }
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>real-bucket</Name><Prefix>tenant/photos/</Prefix><KeyCount>2</KeyCount><Delimiter>/</Delimiter><Contents><Key>tenant/photos/a&amp;b.png</Key><Size>3</Size></Contents><Contents><Key>tenant/photos/ü.png</Key></Contents><CommonPrefixes><Prefix>tenant/photos/2024/</Prefix></CommonPrefixes><StartAfter>tenant/photos/0</StartAfter><NextContinuationToken>opaque+token=</NextContinuationToken></ListBucketResult>";

    #[test]
    fn listings_lose_the_prefix_and_the_real_bucket_name() {
        let client = [("start-after".to_string(), "photos/0".to_string())];
        let rewritten =
            response(LISTING, "tenant/", "acme", KeyEncoding::Plain, &client).expect("rewrites");
        assert!(rewritten.contains("<Name>acme</Name>"), "{rewritten}");
        assert!(
            rewritten.contains("<Prefix>photos/</Prefix>"),
            "{rewritten}"
        );
        assert!(
            rewritten.contains("<Key>photos/a&amp;b.png</Key>"),
            "{rewritten}"
        );
        assert!(rewritten.contains("<Key>photos/ü.png</Key>"), "{rewritten}");
        assert!(
            rewritten.contains("<Prefix>photos/2024/</Prefix>"),
            "{rewritten}"
        );
        assert!(
            rewritten.contains("<StartAfter>photos/0</StartAfter>"),
            "{rewritten}"
        );
        assert!(rewritten.contains("<NextContinuationToken>opaque+token=</NextContinuationToken>"));
        assert!(!rewritten.contains("tenant/") && !rewritten.contains("real-bucket"));
    }

    #[test]
    fn url_encoded_listings_are_decoded_stripped_and_encoded_again() {
        let listing = "<ListBucketResult><EncodingType>url</EncodingType><Prefix>tenant%2F</Prefix><Contents><Key>tenant/with%20space%2Bplus.txt</Key></Contents></ListBucketResult>";
        let rewritten =
            response(listing, "tenant/", "acme", KeyEncoding::Url, &[]).expect("rewrites");
        assert!(
            rewritten.contains("<Key>with%20space%2Bplus.txt</Key>"),
            "{rewritten}"
        );
        assert!(rewritten.contains("<Prefix></Prefix>"), "{rewritten}");
    }

    #[test]
    fn overlapping_elements_refuse_the_document_rather_than_swallow_keys() {
        // Found by the `listing` fuzz target: a marker left open up to a later one spans a
        // `<Key>`; rewriting the marker as one value would have dropped that key.
        let listing = "<ListMultipartUploadsResult><NextKeyMarker>tenant/a<Upload><Key>tenant/b</Key></Upload><NextKeyMarker>tenant/c</NextKeyMarker></ListMultipartUploadsResult>";
        assert!(matches!(
            response(listing, "tenant/", "acme", KeyEncoding::Plain, &[]),
            Err(Error::Internal { .. })
        ));
        let nested = "<ListBucketResult><Contents><Key>tenant/<Name>x</Name></Key></Contents></ListBucketResult>";
        assert!(response(nested, "tenant/", "acme", KeyEncoding::Plain, &[]).is_err());
    }

    #[test]
    fn a_broken_delete_request_is_the_clients_malformed_xml() {
        for body in [
            "<Delete><Object><Key>a<b</Key></Object></Delete>",
            "<Delete><Object><Key>a</Object></Delete>",
        ] {
            assert!(
                matches!(
                    delete_request(body, "tenant/", |_| Ok(())),
                    Err(Error::MalformedXML)
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn markers_echo_the_client_and_empty_elements_stay_empty() {
        // An upstream that echoes an opaque token as a marker (moto does) shows only what the
        // client sent.
        let listing = "<ListBucketResult><Marker></Marker><StartAfter>4888b79b</StartAfter><Prefix>tenant/</Prefix></ListBucketResult>";
        let rewritten =
            response(listing, "tenant/", "acme", KeyEncoding::Plain, &[]).expect("rewrites");
        assert_eq!(
            rewritten,
            "<ListBucketResult><Marker></Marker><StartAfter></StartAfter><Prefix></Prefix></ListBucketResult>"
        );
    }

    #[test]
    fn a_key_outside_the_prefix_is_never_passed_on() {
        let listing = "<ListBucketResult><Contents><Key>tenant-other/secret.txt</Key></Contents></ListBucketResult>";
        assert!(response(listing, "tenant/", "acme", KeyEncoding::Plain, &[]).is_err());
    }

    #[test]
    fn delete_requests_gain_the_prefix_and_keep_escaping() {
        let request = "<Delete><Object><Key>a&amp;b.txt</Key></Object><Object><Key>x/y</Key><VersionId>3</VersionId></Object><Quiet>true</Quiet></Delete>";
        let rewritten = delete_request(request, "tenant/", |_| Ok(())).expect("rewrites");
        assert_eq!(
            rewritten,
            "<Delete><Object><Key>tenant/a&amp;b.txt</Key></Object><Object><Key>tenant/x/y</Key><VersionId>3</VersionId></Object><Quiet>true</Quiet></Delete>"
        );
        let refused = delete_request(request, "tenant/", |key| {
            if key.contains('&') {
                Err(Error::InvalidKey {
                    reason: "no".into(),
                })
            } else {
                Ok(())
            }
        });
        assert!(refused.is_err());
    }

    #[test]
    fn entities_unescape() {
        assert_eq!(
            xml_unescape("a&amp;&lt;&#x41;&#66;").expect("valid"),
            "a&<AB"
        );
        assert!(xml_unescape("a&bogus;").is_err());
    }
}
