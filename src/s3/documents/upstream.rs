//! The store's documents on the way down: parsed, the integration taken out, written anew.

use crate::s3::error::Error;
use crate::s3::xml::{Element, Writer};

/// How an upstream listing writes keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEncoding {
    Plain,
    /// `encoding-type=url`: keys are URL-encoded, a space as `+` (S3) or `%20` (some stores).
    Url,
}

/// What an upstream document is rewritten against.
pub struct Jail<'a> {
    /// The integration's prefix, which every key the store names must start with.
    pub prefix: &'a str,
    /// The bucket name the client used.
    pub logical_bucket: &'a str,
    pub encoding: KeyEncoding,
    /// The listing prefix the client asked for (relative to the integration): a store that
    /// normalises prefixes may answer wider, and those keys are dropped.
    pub client_prefix: &'a str,
    /// The markers the client sent (relative keys), echoed back as such.
    pub client_markers: &'a [(String, String)],
    /// Strings no message may carry: the real bucket, the prefix, the proxy's access key id.
    pub hidden: &'a [&'a str],
    /// The proxy's id for this request, which an error document names in place of the store's.
    pub request_id: &'a str,
}

/// Elements that echo a marker the client sent, with the query parameter that carried it.
pub const ECHOED_MARKERS: &[(&str, &str)] = &[
    ("StartAfter", "start-after"),
    ("Marker", "marker"),
    ("KeyMarker", "key-marker"),
];

/// A listing's own elements that echo the client's request, with the query parameter that
/// carried it: written back as the client sent it, in the encoding it asked for, never read
/// from the store's echo (which carries the integration's prefix, and which a store may have
/// normalised or encoded its own way).
const ECHOED_REQUEST: &[(&str, &str)] = &[("Prefix", "prefix"), ("Delimiter", "delimiter")];

/// The documents a store answers the proxied operations with.
const RESULT_ROOTS: &[&str] = &[
    "ListBucketResult",
    "ListMultipartUploadsResult",
    "ListPartsResult",
    // moto's name for ListPartsResult.
    "ListPartsResponse",
    "InitiateMultipartUploadResult",
    "CompleteMultipartUploadResult",
    "DeleteResult",
    "CopyObjectResult",
    "CopyPartResult",
    "GetObjectAttributesResponse",
    // What some stores (moto) call GetObjectAttributesResponse.
    "GetObjectAttributesOutput",
    "Error",
];

/// An upstream result document, parsed.
pub struct UpstreamDocument {
    root: Element,
}

/// What became of an upstream document.
pub struct Rewritten {
    pub document: String,
    /// Entries dropped because the store answered beyond the client's listing prefix.
    pub dropped: usize,
}

impl UpstreamDocument {
    /// Parses a document the store sent; a broken one is the store's fault (500, logged).
    pub fn parse(document: &[u8]) -> Result<UpstreamDocument, Error> {
        let root = crate::s3::xml::parse(document).map_err(|e| upstream_fault(e.to_string()))?;
        Ok(UpstreamDocument { root })
    }

    /// Takes the integration out of the document and writes it anew. Only S3's result
    /// documents are passed on; any other root is an upstream fault.
    pub fn rewrite(mut self, jail: &Jail<'_>) -> Result<Rewritten, Error> {
        if !RESULT_ROOTS.contains(&self.root.name.as_str()) {
            return Err(upstream_fault(format!(
                "the upstream answered with a <{}> document",
                self.root.name
            )));
        }
        if self.root.name == "Error" {
            // An error in a 200 (CompleteMultipartUpload, CopyObject): its code, a safe
            // message and the request id, nothing else.
            let code = code_of(&self.root).unwrap_or_else(|| "InternalError".to_string());
            let clean = error_document(&self.root, code, jail.hidden, jail.request_id);
            return Ok(Rewritten {
                document: Writer::document(&clean),
                dropped: 0,
            });
        }
        let mut dropped = 0;
        rewrite_children(&mut self.root, jail, &mut dropped, true)?;
        Ok(Rewritten {
            document: Writer::document(&self.root),
            dropped,
        })
    }
}

fn upstream_fault(detail: String) -> Error {
    Error::Internal { detail }
}

/// Rewrites `element`'s children; `top` when `element` is the document's root.
fn rewrite_children(
    element: &mut Element,
    jail: &Jail<'_>,
    dropped: &mut usize,
    top: bool,
) -> Result<(), Error> {
    let mut kept = Vec::with_capacity(element.children.len());
    for mut child in std::mem::take(&mut element.children) {
        let echoed = ECHOED_REQUEST
            .iter()
            .find(|(name, _)| top && *name == child.name);
        if let Some((_, parameter)) = echoed {
            child.children.clear();
            child.text = encode(client_value(jail, parameter), jail.encoding);
            kept.push(child);
            continue;
        }
        if !rewrite_element(&mut child, jail)? {
            *dropped += 1;
            continue;
        }
        rewrite_children(&mut child, jail, dropped, false)?;
        kept.push(child);
    }
    element.children = kept;
    Ok(())
}

/// Rewrites one element's own text; `false` means the element (a listing entry) is dropped.
fn rewrite_element(element: &mut Element, jail: &Jail<'_>) -> Result<bool, Error> {
    let name = element.name.as_str();
    let text_only = || {
        if element.children.is_empty() {
            Ok(())
        } else {
            Err(upstream_fault(format!(
                "<{name}> holds elements in an upstream document"
            )))
        }
    };
    match name {
        "Key" | "Prefix" => {
            text_only()?;
            element.text = strip(&element.text, jail)?;
        }
        "NextMarker" | "NextKeyMarker" => {
            text_only()?;
            // An opaque token in some stores (moto): outside the prefix it is dropped, and
            // clients continue from the last key, as S3 documents.
            element.text = strip(&element.text, jail).unwrap_or_default();
        }
        "Name" | "Bucket" => {
            text_only()?;
            element.text = jail.logical_bucket.to_string();
        }
        // CompleteMultipartUpload's Location is the upstream URL; the logical key is all a
        // client needs.
        "Location" => {
            text_only()?;
            element.text = String::new();
        }
        "Message" => {
            text_only()?;
            if names_hidden(&element.text, jail.hidden) {
                element.text = "The upstream store answered with an error.".to_string();
            }
        }
        "Contents" | "Upload" => return Ok(within_client_prefix(element, "Key", jail)),
        "CommonPrefixes" => return Ok(within_client_prefix(element, "Prefix", jail)),
        _ => {
            if let Some((_, parameter)) = ECHOED_MARKERS.iter().find(|(e, _)| *e == name) {
                text_only()?;
                element.text = encode(client_value(jail, parameter), jail.encoding);
            }
        }
    }
    Ok(true)
}

/// The value of the client's query parameter `parameter` (decoded), or `""`.
fn client_value<'a>(jail: &Jail<'a>, parameter: &str) -> &'a str {
    jail.client_markers
        .iter()
        .find(|(name, _)| name == parameter)
        .map_or("", |(_, value)| value.as_str())
}

/// Whether a listing entry's key (still with the integration's prefix) is within the prefix
/// the client asked for. Entries without that key are kept, and fail later if malformed.
fn within_client_prefix(entry: &Element, key_element: &str, jail: &Jail<'_>) -> bool {
    let Some(key) = entry.children.iter().find(|c| c.name == key_element) else {
        return true;
    };
    match decode(&key.text, jail.encoding) {
        Ok(key) => key
            .strip_prefix(jail.prefix)
            .is_none_or(|relative| relative.starts_with(jail.client_prefix)),
        Err(_) => true,
    }
}

/// An upstream key without the integration's prefix, in the listing's encoding.
fn strip(value: &str, jail: &Jail<'_>) -> Result<String, Error> {
    let key = decode(value, jail.encoding)?;
    // An empty element (`<Marker></Marker>`, `<Prefix></Prefix>`) means "none", not a key.
    if key.is_empty() {
        return Ok(String::new());
    }
    let relative = key
        .strip_prefix(jail.prefix)
        .ok_or_else(|| Error::Internal {
            detail: format!(
                "the upstream named `{}`, outside the integration's prefix",
                key.escape_debug()
            ),
        })?;
    Ok(encode(relative, jail.encoding))
}

fn decode(value: &str, encoding: KeyEncoding) -> Result<String, Error> {
    match encoding {
        KeyEncoding::Plain => Ok(value.to_string()),
        // S3 writes a space as `+` and a plus as `%2B`; `%20` (moto) decodes the same.
        KeyEncoding::Url => {
            let spaced: String = value
                .chars()
                .map(|c| if c == '+' { ' ' } else { c })
                .collect();
            crate::s3::route::percent_decode(&spaced)
        }
        .map_err(|e| upstream_fault(format!("an upstream URL-encoded key: {e}"))),
    }
}

/// A relative key in the client's encoding: URL-encoded keys use `%20` for a space and `%2B`
/// for a plus, which every decoder reads the same way.
fn encode(key: &str, encoding: KeyEncoding) -> String {
    match encoding {
        KeyEncoding::Plain => key.to_string(),
        KeyEncoding::Url => crate::s3::sigv4::encode_key(key),
    }
}

fn names_hidden(text: &str, hidden: &[&str]) -> bool {
    hidden
        .iter()
        .filter(|h| h.len() >= 3)
        .any(|h| text.contains(h))
}

/// The `<Code>` of an `<Error>` element, if it is a plain S3 error code.
pub fn code_of(error: &Element) -> Option<String> {
    error
        .children
        .iter()
        .find(|c| c.name == "Code" && c.children.is_empty())
        .and_then(|c| error_code(Some(&c.text)))
}

/// The store's own `RequestId` of an `<Error>` (for the proxy's log line only), if it is a
/// plain token.
pub fn request_id_of(error: &Element) -> Option<String> {
    error
        .children
        .iter()
        .find(|c| (c.name == "RequestId" || c.name == "RequestID") && c.children.is_empty())
        .map(|c| c.text.trim())
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
}

/// Rebuilds an upstream `<Error>` as `code` (its own, or the caller's default), a `Message`
/// that names none of `hidden`, and the proxy's `request_id` (the one its log line carries;
/// the store's is logged beside it); `CanonicalRequest`, `StringToSign`, `AWSAccessKeyId`,
/// `Key`, `BucketName` and the rest stay behind.
pub fn error_document(error: &Element, code: String, hidden: &[&str], request_id: &str) -> Element {
    let text = |name: &str| {
        error
            .children
            .iter()
            .find(|c| c.name == name && c.children.is_empty())
            .map(|c| c.text.clone())
    };
    let message = text("Message")
        .filter(|m| !names_hidden(m, hidden))
        .unwrap_or_else(|| format!("The upstream store answered {code}."));
    Element::parent(
        "Error",
        vec![
            Element::text("Code", code),
            Element::text("Message", message),
            Element::text("RequestId", request_id),
        ],
    )
}

/// ListBuckets' answer: the logical `names` as buckets, `owner` (the caller's key id, or
/// `anonymous`) as their owner, and `created` as every creation date (the proxy does not know
/// the stores' own, and the names are the proxy's).
pub fn bucket_list(owner: &str, names: &[&str], created: std::time::SystemTime) -> String {
    let created = aws_smithy_types::DateTime::from(created)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default();
    let buckets = names
        .iter()
        .map(|name| {
            Element::parent(
                "Bucket",
                vec![
                    Element::text("Name", *name),
                    Element::text("CreationDate", created.clone()),
                ],
            )
        })
        .collect();
    Writer::document(&Element::parent(
        "ListAllMyBucketsResult",
        vec![
            Element::parent(
                "Owner",
                vec![
                    Element::text("ID", owner),
                    Element::text("DisplayName", owner),
                ],
            ),
            Element::parent("Buckets", buckets),
        ],
    ))
}

/// An S3 error code is a plain word; anything else is not passed on.
pub fn error_code(code: Option<&str>) -> Option<String> {
    code.map(str::trim)
        .filter(|c| {
            !c.is_empty()
                && c.len() <= 64
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
        })
        .map(str::to_string)
}
