//! The client's documents on the way up: DeleteObjects and CompleteMultipartUpload, parsed
//! under S3's schema and written anew with every key jailed.

use crate::s3::error::Error;
use crate::s3::xml::{Element, Writer, XmlError};

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
    let root = crate::s3::xml::parse(document).map_err(|e: XmlError| malformed(e.to_string()))?;
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
