//! The S3 documents that cross the jail, as typed values.
//!
//! On the way up, a client's DeleteObjects and CompleteMultipartUpload bodies are parsed
//! ([`crate::xml`]) into [`DeleteRequest`] and [`CompleteRequest`] under S3's schema — unknown
//! or repeated elements are `MalformedXML` — every key goes through the same check as a URL key
//! and gains the integration's prefix, and the proxy writes a fresh document from the values.
//!
//! On the way down, the store's answers (listings, multipart results, DeleteObjects results,
//! error documents sent with a 200) are parsed, their keys lose the prefix, the real bucket
//! becomes the logical one, and they are written anew ([`UpstreamDocument`]). A key outside the
//! prefix is never passed on: the whole answer is refused as an upstream fault.

use crate::error::Error;
use crate::xml::{Element, Writer, XmlError};

/// S3's limit on keys in one DeleteObjects request.
pub const MAX_DELETE_OBJECTS: usize = 1000;
/// S3's limit on parts in one multipart upload.
pub const MAX_PARTS: u32 = 10_000;

fn malformed(detail: impl Into<String>) -> Error {
    Error::MalformedXML {
        detail: detail.into(),
    }
}

fn client_document(document: &[u8], root_name: &str) -> Result<Element, Error> {
    let root = crate::xml::parse(document).map_err(|e: XmlError| malformed(e.to_string()))?;
    if root.name != root_name {
        return Err(malformed(format!(
            "the root element is <{}>, not <{root_name}>",
            root.name
        )));
    }
    Ok(root)
}

/// Reads the text-only children of `element` by name, refusing unknown, repeated and nested
/// ones, and missing `required` ones.
fn fields<'a, const N: usize>(
    element: &'a Element,
    names: [&str; N],
    required: &[&str],
) -> Result<[Option<&'a str>; N], Error> {
    let mut found = [None; N];
    for child in &element.children {
        let slot = names
            .iter()
            .position(|name| *name == child.name)
            .ok_or_else(|| {
                malformed(format!("<{}> may not hold <{}>", element.name, child.name))
            })?;
        if !child.children.is_empty() {
            return Err(malformed(format!("<{}> holds elements", child.name)));
        }
        if found[slot].replace(child.text.as_str()).is_some() {
            return Err(malformed(format!("<{}> is repeated", child.name)));
        }
    }
    for name in required {
        if let Some(slot) = names.iter().position(|n| n == name)
            && found[slot].is_none()
        {
            return Err(malformed(format!("<{}> lacks <{name}>", element.name)));
        }
    }
    Ok(found)
}

/// One object of a DeleteObjects request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectIdentifier {
    pub key: String,
    pub version_id: Option<String>,
    /// Conditional deletes: the object is deleted only if it still matches.
    pub etag: Option<String>,
    pub last_modified_time: Option<String>,
    pub size: Option<u64>,
}

/// A DeleteObjects request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRequest {
    pub objects: Vec<ObjectIdentifier>,
    pub quiet: bool,
}

impl DeleteRequest {
    /// Parses a client's `<Delete>` document. Keys are as the client wrote them: call
    /// [`DeleteRequest::jail`] before sending them anywhere.
    pub fn parse(document: &[u8]) -> Result<DeleteRequest, Error> {
        let root = client_document(document, "Delete")?;
        let mut objects = Vec::new();
        let mut quiet = None;
        for child in &root.children {
            match child.name.as_str() {
                "Object" => objects.push(object_identifier(child)?),
                "Quiet" if quiet.is_none() && child.children.is_empty() => {
                    quiet = Some(parse_bool(&child.text)?);
                }
                other => return Err(malformed(format!("<Delete> may not hold <{other}> here"))),
            }
        }
        if objects.is_empty() || objects.len() > MAX_DELETE_OBJECTS {
            return Err(malformed(format!(
                "a DeleteObjects request names 1 to {MAX_DELETE_OBJECTS} objects, not {}",
                objects.len()
            )));
        }
        Ok(DeleteRequest {
            objects,
            quiet: quiet.unwrap_or(false),
        })
    }

    /// Puts every key under the integration: `upstream_key` checks a client key and returns
    /// it with the prefix (or refuses it, refusing the whole request).
    pub fn jail(
        mut self,
        upstream_key: impl Fn(&str) -> Result<String, Error>,
    ) -> Result<DeleteRequest, Error> {
        for object in &mut self.objects {
            object.key = upstream_key(&object.key)?;
        }
        Ok(self)
    }

    /// The document the proxy sends.
    pub fn to_xml(&self) -> String {
        let mut children: Vec<Element> = self
            .objects
            .iter()
            .map(|object| {
                let mut fields = vec![Element::text("Key", object.key.as_str())];
                let optional = [
                    ("VersionId", object.version_id.clone()),
                    ("ETag", object.etag.clone()),
                    ("LastModifiedTime", object.last_modified_time.clone()),
                    ("Size", object.size.map(|s| s.to_string())),
                ];
                for (name, value) in optional {
                    if let Some(value) = value {
                        fields.push(Element::text(name, value));
                    }
                }
                Element::parent("Object", fields)
            })
            .collect();
        if self.quiet {
            children.push(Element::text("Quiet", "true"));
        }
        Writer::document(&Element::parent("Delete", children))
    }
}

fn object_identifier(object: &Element) -> Result<ObjectIdentifier, Error> {
    let [key, version_id, etag, last_modified_time, size] = fields(
        object,
        ["Key", "VersionId", "ETag", "LastModifiedTime", "Size"],
        &["Key"],
    )?;
    let size = size
        .map(|s| s.trim().parse::<u64>())
        .transpose()
        .map_err(|_| malformed("<Size> is not a number of bytes"))?;
    Ok(ObjectIdentifier {
        key: key.unwrap_or_default().to_string(),
        version_id: version_id.map(str::to_string),
        etag: etag.map(str::to_string),
        last_modified_time: last_modified_time.map(str::to_string),
        size,
    })
}

fn parse_bool(text: &str) -> Result<bool, Error> {
    match text.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(malformed(format!("`{other}` is not true or false"))),
    }
}

/// The checksum elements a completed part may carry.
const PART_CHECKSUMS: [&str; 5] = [
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumCRC64NVME",
    "ChecksumSHA1",
    "ChecksumSHA256",
];

/// One part of a CompleteMultipartUpload request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    pub part_number: u32,
    pub etag: String,
    /// `(element name, value)` for each checksum given, in [`PART_CHECKSUMS`] order.
    pub checksums: Vec<(&'static str, String)>,
}

/// A CompleteMultipartUpload request body. It names no key, but it is written anew all the
/// same: no client document reaches the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteRequest {
    pub parts: Vec<CompletedPart>,
}

impl CompleteRequest {
    pub fn parse(document: &[u8]) -> Result<CompleteRequest, Error> {
        let root = client_document(document, "CompleteMultipartUpload")?;
        let mut parts = Vec::new();
        for child in &root.children {
            if child.name != "Part" {
                return Err(malformed(format!(
                    "<CompleteMultipartUpload> may not hold <{}>",
                    child.name
                )));
            }
            parts.push(completed_part(child)?);
        }
        if parts.is_empty() {
            return Err(malformed("a CompleteMultipartUpload request names no part"));
        }
        Ok(CompleteRequest { parts })
    }

    pub fn to_xml(&self) -> String {
        let parts = self
            .parts
            .iter()
            .map(|part| {
                let mut fields = vec![
                    Element::text("PartNumber", part.part_number.to_string()),
                    Element::text("ETag", part.etag.as_str()),
                ];
                for (name, value) in &part.checksums {
                    fields.push(Element::text(name, value.as_str()));
                }
                Element::parent("Part", fields)
            })
            .collect();
        Writer::document(&Element::parent("CompleteMultipartUpload", parts))
    }
}

fn completed_part(part: &Element) -> Result<CompletedPart, Error> {
    let [number, etag, crc32, crc32c, crc64nvme, sha1, sha256] = fields(
        part,
        [
            "PartNumber",
            "ETag",
            PART_CHECKSUMS[0],
            PART_CHECKSUMS[1],
            PART_CHECKSUMS[2],
            PART_CHECKSUMS[3],
            PART_CHECKSUMS[4],
        ],
        &["PartNumber", "ETag"],
    )?;
    let part_number = number
        .unwrap_or_default()
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_PARTS).contains(n))
        .ok_or_else(|| malformed(format!("<PartNumber> must be 1 to {MAX_PARTS}")))?;
    let checksums = PART_CHECKSUMS
        .iter()
        .zip([crc32, crc32c, crc64nvme, sha1, sha256])
        .filter_map(|(name, value)| Some((*name, value?.trim().to_string())))
        .collect();
    Ok(CompletedPart {
        part_number,
        etag: etag.unwrap_or_default().to_string(),
        checksums,
    })
}

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
        let root = crate::xml::parse(document).map_err(|e| upstream_fault(e.to_string()))?;
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
        rewrite_children(&mut self.root, jail, &mut dropped)?;
        Ok(Rewritten {
            document: Writer::document(&self.root),
            dropped,
        })
    }
}

fn upstream_fault(detail: String) -> Error {
    Error::Internal { detail }
}

fn rewrite_children(
    element: &mut Element,
    jail: &Jail<'_>,
    dropped: &mut usize,
) -> Result<(), Error> {
    let mut kept = Vec::with_capacity(element.children.len());
    for mut child in std::mem::take(&mut element.children) {
        if !rewrite_element(&mut child, jail)? {
            *dropped += 1;
            continue;
        }
        rewrite_children(&mut child, jail, dropped)?;
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
                let sent = jail
                    .client_markers
                    .iter()
                    .find(|(n, _)| n == parameter)
                    .map(|(_, v)| v.as_str())
                    .unwrap_or_default();
                element.text = encode(sent, jail.encoding);
            }
        }
    }
    Ok(true)
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
            crate::route::percent_decode(&spaced)
        }
        .map_err(|e| upstream_fault(format!("an upstream URL-encoded key: {e}"))),
    }
}

/// A relative key in the client's encoding: URL-encoded keys use `%20` for a space and `%2B`
/// for a plus, which every decoder reads the same way.
fn encode(key: &str, encoding: KeyEncoding) -> String {
    match encoding {
        KeyEncoding::Plain => key.to_string(),
        KeyEncoding::Url => crate::sigv4::encode_key(key),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn jail<'a>(
        encoding: KeyEncoding,
        client_prefix: &'a str,
        markers: &'a [(String, String)],
    ) -> Jail<'a> {
        Jail {
            prefix: "tenant/",
            logical_bucket: "acme",
            encoding,
            client_prefix,
            client_markers: markers,
            hidden: &["real-bucket", "tenant/"],
            request_id: "PROXY1",
        }
    }

    fn prefixed(key: &str) -> Result<String, Error> {
        crate::route::check_key(key, false)?;
        Ok(format!("tenant/{key}"))
    }

    #[test]
    fn the_bucket_list_says_what_a_second_parser_reads() {
        let names = ["acme", "a&b<c>\"'"];
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_764_000_000);
        let text = bucket_list("AKCLIENT", &names, at);
        let document = roxmltree::Document::parse(&text).expect("well-formed");
        let root = document.root_element();
        assert_eq!(root.tag_name().name(), "ListAllMyBucketsResult");
        assert_eq!(
            root.tag_name().namespace(),
            Some("http://s3.amazonaws.com/doc/2006-03-01/")
        );
        let read: Vec<&str> = root
            .descendants()
            .filter(|n| n.has_tag_name("Name"))
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(read, names);
        let dates: Vec<&str> = root
            .descendants()
            .filter(|n| n.has_tag_name("CreationDate"))
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(dates, ["2025-11-24T16:00:00Z"; 2]);
        let owner = root
            .descendants()
            .find(|n| n.has_tag_name("ID"))
            .and_then(|n| n.text());
        assert_eq!(owner, Some("AKCLIENT"));
    }

    #[test]
    fn delete_requests_are_written_anew_with_every_key_under_the_prefix() {
        let body = "\u{FEFF}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n <Object><Key >a&amp;b.txt</Key ></Object>\n <Object><Key><![CDATA[x/y]]></Key><VersionId>3</VersionId></Object>\n <Quiet>true</Quiet>\n</Delete>";
        let request = DeleteRequest::parse(body.as_bytes())
            .expect("parses")
            .jail(prefixed)
            .expect("jails");
        assert_eq!(
            request.to_xml(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Object><Key>tenant/a&amp;b.txt</Key></Object><Object><Key>tenant/x/y</Key><VersionId>3</VersionId></Object><Quiet>true</Quiet></Delete>"
        );
    }

    #[test]
    fn delete_requests_outside_s3s_schema_are_malformed() {
        for body in [
            "<Delete><Object><Key>a</Key><Key>b</Key></Object></Delete>",
            "<Delete><Object><VersionId>1</VersionId></Object></Delete>",
            "<Delete><Object><Key>a</Key><Other/></Object></Delete>",
            "<Delete><Object><Key><Key>a</Key></Key></Object></Delete>",
            "<Delete><Quiet>true</Quiet><Quiet>false</Quiet><Object><Key>a</Key></Object></Delete>",
            "<Delete><Quiet>yes</Quiet><Object><Key>a</Key></Object></Delete>",
            "<Delete></Delete>",
            "<Remove><Object><Key>a</Key></Object></Remove>",
            "<Delete><Object><Key>a<b</Key></Object></Delete>",
            "<Delete><Object><Key>a</Object></Delete>",
        ] {
            assert!(
                matches!(
                    DeleteRequest::parse(body.as_bytes()),
                    Err(Error::MalformedXML { .. })
                ),
                "{body}"
            );
        }
        let many = format!(
            "<Delete>{}</Delete>",
            "<Object><Key>a</Key></Object>".repeat(1001)
        );
        assert!(DeleteRequest::parse(many.as_bytes()).is_err());
    }

    #[test]
    fn a_refused_key_refuses_the_whole_delete_request() {
        for key in ["../other-tenant/secret.txt", "/root.txt", "a//b", "a\u{1}"] {
            let body = format!(
                "<Delete><Object><Key>ok</Key></Object><Object><Key>{key}</Key></Object></Delete>"
            );
            let parsed = DeleteRequest::parse(body.as_bytes());
            assert!(parsed.and_then(|r| r.jail(prefixed)).is_err(), "{key}");
        }
    }

    #[test]
    fn complete_requests_are_written_anew() {
        let body = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Part><ETag>\"e1\"</ETag><PartNumber>1</PartNumber><ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part><Part><PartNumber>2</PartNumber><ETag>&quot;e2&quot;</ETag></Part></CompleteMultipartUpload>";
        let request = CompleteRequest::parse(body.as_bytes()).expect("parses");
        assert_eq!(
            request.to_xml(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Part><PartNumber>1</PartNumber><ETag>&quot;e1&quot;</ETag><ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part><Part><PartNumber>2</PartNumber><ETag>&quot;e2&quot;</ETag></Part></CompleteMultipartUpload>"
        );
        for bad in [
            "<CompleteMultipartUpload/>",
            "<CompleteMultipartUpload><Part><PartNumber>0</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>",
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>",
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag><Key>k</Key></Part></CompleteMultipartUpload>",
        ] {
            assert!(CompleteRequest::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    const LISTING: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>real-bucket</Name><Prefix>tenant/photos/</Prefix><KeyCount>2</KeyCount><Delimiter>/</Delimiter><Contents><Key>tenant/photos/a&amp;b.png</Key><Size>3</Size></Contents><Contents><Key>tenant/photos/ü.png</Key></Contents><CommonPrefixes><Prefix>tenant/photos/2024/</Prefix></CommonPrefixes><StartAfter>tenant/photos/0</StartAfter><NextContinuationToken>opaque+token=</NextContinuationToken></ListBucketResult>";

    fn rewrite(document: &str, jail: &Jail<'_>) -> Result<Rewritten, Error> {
        UpstreamDocument::parse(document.as_bytes())?.rewrite(jail)
    }

    #[test]
    fn listings_lose_the_prefix_and_the_real_bucket_name() {
        let markers = [("start-after".to_string(), "photos/0".to_string())];
        let rewritten = rewrite(LISTING, &jail(KeyEncoding::Plain, "photos/", &markers))
            .expect("rewrites")
            .document;
        for expected in [
            "<Name>acme</Name>",
            "<Prefix>photos/</Prefix>",
            "<Key>photos/a&amp;b.png</Key>",
            "<Key>photos/ü.png</Key>",
            "<Prefix>photos/2024/</Prefix>",
            "<StartAfter>photos/0</StartAfter>",
            "<NextContinuationToken>opaque+token=</NextContinuationToken>",
        ] {
            assert!(rewritten.contains(expected), "{expected} in {rewritten}");
        }
        assert!(!rewritten.contains("tenant/") && !rewritten.contains("real-bucket"));
    }

    #[test]
    fn url_encoded_listings_read_a_plus_as_a_space() {
        // S3 and SeaweedFS encode a space as `+` and a plus as `%2B`; moto a space as `%20`.
        let listing = "<ListBucketResult><EncodingType>url</EncodingType><Prefix>tenant%2F</Prefix><Contents><Key>tenant/a+b%2Bc.txt</Key></Contents><Contents><Key>tenant/d%20e.txt</Key></Contents></ListBucketResult>";
        let rewritten = rewrite(listing, &jail(KeyEncoding::Url, "", &[]))
            .expect("rewrites")
            .document;
        assert!(
            rewritten.contains("<Key>a%20b%2Bc.txt</Key>"),
            "{rewritten}"
        );
        assert!(rewritten.contains("<Key>d%20e.txt</Key>"), "{rewritten}");
        assert!(rewritten.contains("<Prefix></Prefix>"), "{rewritten}");
    }

    #[test]
    fn a_key_outside_the_prefix_refuses_the_answer() {
        let listing = "<ListBucketResult><Contents><Key>tenant-other/secret.txt</Key></Contents></ListBucketResult>";
        assert!(matches!(
            rewrite(listing, &jail(KeyEncoding::Plain, "", &[])),
            Err(Error::Internal { .. })
        ));
        let nested = "<ListBucketResult><Contents><Key>tenant/<Name>x</Name></Key></Contents></ListBucketResult>";
        assert!(rewrite(nested, &jail(KeyEncoding::Plain, "", &[])).is_err());
    }

    #[test]
    fn entries_beyond_the_clients_prefix_are_dropped() {
        // A store that reads `tenant//` as `tenant/` answers every key under the prefix.
        let listing = "<ListBucketResult><Prefix>tenant//</Prefix><Contents><Key>tenant/b/a/r</Key></Contents><Contents><Key>tenant/g</Key></Contents><CommonPrefixes><Prefix>tenant/b/</Prefix></CommonPrefixes></ListBucketResult>";
        let rewritten = rewrite(listing, &jail(KeyEncoding::Plain, "/", &[])).expect("rewrites");
        assert_eq!(rewritten.dropped, 3);
        assert!(
            !rewritten.document.contains("<Key>"),
            "{}",
            rewritten.document
        );
        assert!(
            rewritten.document.contains("<Prefix>/</Prefix>"),
            "{}",
            rewritten.document
        );
    }

    #[test]
    fn markers_echo_the_client_and_empty_elements_stay_empty() {
        let listing = "<ListBucketResult><Marker></Marker><StartAfter>4888b79b</StartAfter><Prefix>tenant/</Prefix></ListBucketResult>";
        let rewritten = rewrite(listing, &jail(KeyEncoding::Plain, "", &[]))
            .expect("rewrites")
            .document;
        assert!(
            rewritten.ends_with("<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Marker></Marker><StartAfter></StartAfter><Prefix></Prefix></ListBucketResult>"),
            "{rewritten}"
        );
    }

    #[test]
    fn an_error_sent_with_a_200_is_cleaned() {
        let document = "<Error><Code>InternalError</Code><Message>failed for real-bucket/tenant/x</Message><Key>tenant/x</Key><RequestId>R1</RequestId></Error>";
        let rewritten = rewrite(document, &jail(KeyEncoding::Plain, "", &[]))
            .expect("rewrites")
            .document;
        assert!(
            rewritten.contains("<Code>InternalError</Code>"),
            "{rewritten}"
        );
        assert!(
            rewritten.contains("<RequestId>PROXY1</RequestId>") && !rewritten.contains("R1<"),
            "{rewritten}"
        );
        assert!(
            !rewritten.contains("tenant") && !rewritten.contains("real-bucket"),
            "{rewritten}"
        );
    }
}
