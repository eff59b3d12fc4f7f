//! Routing: which logical bucket and key a request names, and which S3 operation it is.
//!
//! The proxy's URL space is S3 path style, `/{name}/{key}`, and with a base domain also
//! `{name}.{base_domain}/{key}`. `{name}` is a *logical bucket*; `integration` later decides which
//! integration and real bucket it means. The key is percent-decoded exactly once and never
//! normalised: `a/./b` is refused (unless the integration opts in), never rewritten to `a/b`.

use http::Method;

use crate::config::check_bucket_name;
use crate::s3::error::Error;
use crate::s3::sigv4::parse_query;
pub use crate::s3::sigv4::percent_decode;

/// What a request asks for, in S3's terms, before any integration is consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The logical bucket: an integration name or a real bucket name.
    pub name: String,
    /// The decoded object key, relative to the integration (its prefix is not yet applied).
    pub key: String,
    /// The S3 operation, from the method, path and query.
    pub operation: Operation,
    /// Query parameters passed on to the upstream, decoded (`versionId`, `response-*`, …).
    pub query: Vec<(String, String)>,
}

/// The S3 operations the proxy serves, named as S3 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `GET /{name}/{key}`.
    GetObject,
    /// `GET ?attributes`: an object's ETag, checksums, parts, size and storage class.
    GetObjectAttributes,
    /// `HEAD /{name}/{key}`.
    HeadObject,
    /// `PUT /{name}/{key}`.
    PutObject,
    /// `PUT /{name}/{key}` with `x-amz-copy-source`.
    CopyObject,
    /// `DELETE /{name}/{key}`.
    DeleteObject,
    /// `POST /{name}/{key}?uploads`.
    CreateMultipartUpload,
    /// `PUT /{name}/{key}?partNumber&uploadId`.
    UploadPart,
    /// UploadPart with `x-amz-copy-source`.
    UploadPartCopy,
    /// `POST /{name}/{key}?uploadId`.
    CompleteMultipartUpload,
    /// `DELETE /{name}/{key}?uploadId`.
    AbortMultipartUpload,
    /// `GET /{name}/{key}?uploadId`.
    ListParts,
    /// `GET /{name}` (version 1 listing).
    ListObjects,
    /// `GET /{name}?list-type=2`.
    ListObjectsV2,
    /// `GET /{name}?uploads`.
    ListMultipartUploads,
    /// `POST /{name}?delete`.
    DeleteObjects,
    /// Answered by the proxy: the client may reach the bucket.
    HeadBucket,
    /// Answered by the proxy from the integration's region.
    GetBucketLocation,
    /// A CORS preflight (`OPTIONS`), answered by the proxy itself.
    Preflight,
    /// `GET /`: answered by the proxy with the logical buckets the caller may reach.
    ListBuckets,
    /// `GET /{name}/_session?S3SP-Policy=…`: answered by the proxy, which sets a signed
    /// policy's cookies and redirects.
    StartSession,
    /// `POST /{name}` with a `multipart/form-data` body: a browser's form upload (S3's POST
    /// Object), its policy and signature in the form.
    PostObject,
    /// `PUT /{name}`: the bucket exists (the config made it), so the proxy answers what S3
    /// answers its owner, `409 BucketAlreadyOwnedByYou`, to a caller that may write there.
    CreateBucket,
}

impl Operation {
    /// The bucket listings whose `prefix` the integration scopes and whose answers name keys
    /// under it: decided here only (the upstream request, the answer, `explain`).
    pub fn is_listing(self) -> bool {
        matches!(
            self,
            Operation::ListObjects | Operation::ListObjectsV2 | Operation::ListMultipartUploads
        )
    }

    /// The HTTP method the operation is sent upstream with.
    pub fn method(self) -> Method {
        match self {
            Operation::GetObject
            | Operation::GetObjectAttributes
            | Operation::ListParts
            | Operation::ListObjects
            | Operation::ListObjectsV2
            | Operation::ListMultipartUploads
            | Operation::GetBucketLocation
            | Operation::StartSession
            | Operation::ListBuckets => Method::GET,
            Operation::HeadObject | Operation::HeadBucket => Method::HEAD,
            Operation::DeleteObjects | Operation::PostObject => Method::POST,
            Operation::PutObject
            | Operation::CopyObject
            | Operation::UploadPart
            | Operation::UploadPartCopy
            | Operation::CreateBucket => Method::PUT,
            Operation::CreateMultipartUpload | Operation::CompleteMultipartUpload => Method::POST,
            Operation::DeleteObject | Operation::AbortMultipartUpload => Method::DELETE,
            Operation::Preflight => Method::OPTIONS,
        }
    }

    /// Whether the operation changes objects (and so needs read-write access on both sides).
    pub fn is_write(self) -> bool {
        !matches!(
            self,
            Operation::GetObject
                | Operation::GetObjectAttributes
                | Operation::HeadObject
                | Operation::ListParts
                | Operation::ListObjects
                | Operation::ListObjectsV2
                | Operation::ListMultipartUploads
                | Operation::HeadBucket
                | Operation::GetBucketLocation
                | Operation::Preflight
                | Operation::ListBuckets
                | Operation::StartSession
        )
    }

    /// Whether the operation is on the bucket rather than on one object.
    pub fn is_bucket_level(self) -> bool {
        matches!(
            self,
            Operation::ListObjects
                | Operation::ListObjectsV2
                | Operation::ListMultipartUploads
                | Operation::DeleteObjects
                | Operation::PostObject
                | Operation::HeadBucket
                | Operation::GetBucketLocation
                | Operation::CreateBucket
        )
    }

    /// The operation a PUT is when it carries a copy source the caller signed: a copy reads
    /// another object, so only a verified header may make one.
    pub fn with_copy_source(self, copy_source: bool) -> Operation {
        match (self, copy_source) {
            (Operation::PutObject, true) => Operation::CopyObject,
            (Operation::UploadPart, true) => Operation::UploadPartCopy,
            (operation, _) => operation,
        }
    }

    /// Whether the client's body streams upstream as it is (an object or a part).
    pub fn has_body(self) -> bool {
        matches!(self, Operation::PutObject | Operation::UploadPart)
    }

    /// Whether the client's body is an XML document the proxy parses and writes anew.
    pub fn has_client_document(self) -> bool {
        matches!(
            self,
            Operation::DeleteObjects | Operation::CompleteMultipartUpload
        )
    }

    /// Query parameters this operation passes upstream; everything else is dropped.
    fn query_parameters(self) -> &'static [&'static str] {
        match self {
            Operation::GetObject | Operation::HeadObject => &[
                "versionId",
                "partNumber",
                "response-cache-control",
                "response-content-disposition",
                "response-content-encoding",
                "response-content-language",
                "response-content-type",
                "response-expires",
            ],
            Operation::GetObjectAttributes => &["attributes", "versionId"],
            Operation::DeleteObject => &["versionId"],
            Operation::CreateMultipartUpload => &["uploads"],
            Operation::UploadPart | Operation::UploadPartCopy => &["partNumber", "uploadId"],
            Operation::CompleteMultipartUpload | Operation::AbortMultipartUpload => &["uploadId"],
            Operation::ListParts => &["uploadId", "max-parts", "part-number-marker"],
            Operation::ListObjectsV2 => &[
                "list-type",
                "prefix",
                "delimiter",
                "max-keys",
                "continuation-token",
                "start-after",
                "encoding-type",
                "fetch-owner",
            ],
            Operation::ListObjects => {
                &["prefix", "delimiter", "marker", "max-keys", "encoding-type"]
            }
            Operation::ListMultipartUploads => &[
                "uploads",
                "prefix",
                "delimiter",
                "key-marker",
                "upload-id-marker",
                "max-uploads",
                "encoding-type",
            ],
            Operation::DeleteObjects => &["delete"],
            Operation::PutObject
            | Operation::CopyObject
            | Operation::HeadBucket
            | Operation::GetBucketLocation
            | Operation::Preflight
            | Operation::ListBuckets
            | Operation::StartSession
            | Operation::PostObject
            | Operation::CreateBucket => &[],
        }
    }
}

/// Query parameters that name a sub-resource or an operation the proxy does not serve.
const UNSERVED_SUBRESOURCES: &[&str] = &[
    "acl",
    "cors",
    "legal-hold",
    "lifecycle",
    "object-lock",
    "policy",
    "restore",
    "retention",
    "select",
    "tagging",
    "torrent",
    "versioning",
    "versions",
    "website",
];

/// Parses the request target into a [`Route`].
///
/// `host` is the `Host` header (or the HTTP/2 authority); `path` and `query` are the raw,
/// still-encoded request target. Headers play no part: a PUT is a PutObject or UploadPart
/// until [`Operation::with_copy_source`] is told of a signed `x-amz-copy-source`.
pub fn route(
    method: &Method,
    host: Option<&str>,
    path: &str,
    query: Option<&str>,
    base_domain: Option<&str>,
) -> Result<Route, Error> {
    let pairs = parse_query(query.unwrap_or(""))?;
    route_parsed(method, host, path, &pairs, base_domain)
}

/// [`route`] over a query already split and decoded by [`parse_query`]: the request phase
/// parses it once, for the route and the front door alike.
pub fn route_parsed(
    method: &Method,
    host: Option<&str>,
    path: &str,
    pairs: &[(String, String)],
    base_domain: Option<&str>,
) -> Result<Route, Error> {
    let (name, raw_key) = match name_from_host(host, base_domain) {
        Some(name) => (name, path.strip_prefix('/').unwrap_or(path)),
        None => {
            let rest = path
                .strip_prefix('/')
                .ok_or_else(|| Error::InvalidRequest {
                    reason: "The request target must be an absolute path".to_string(),
                })?;
            let (raw_name, raw_key) = rest.split_once('/').unwrap_or((rest, ""));
            if raw_name.is_empty() {
                return service_level(method, raw_key);
            }
            (decode_bucket_name(raw_name)?, raw_key)
        }
    };
    if let Some((name, _)) = pairs
        .iter()
        .find(|(n, _)| UNSERVED_SUBRESOURCES.contains(&n.as_str()))
    {
        return Err(Error::NotImplemented {
            operation: format!("The `{name}` sub-resource"),
        });
    }

    let operation = if *method == Method::OPTIONS {
        // A preflight may be for any path of a bucket, its listing included.
        Operation::Preflight
    } else if raw_key.is_empty() {
        bucket_operation(method, pairs)?
    } else {
        object_operation(method, pairs)?
    };

    keyed(name, percent_decode(raw_key)?, operation, pairs)
}

/// A decoded key in the logical bucket `name` as the route `operation` takes it there: the
/// one way a key becomes a route, for a URL's key ([`route_parsed`]) and a form's final key
/// alike, so both meet the same reserved names here and the same key rules in
/// the integration step (`Integrations::resolve`).
pub fn keyed(
    name: String,
    key: String,
    operation: Operation,
    pairs: &[(String, String)],
) -> Result<Route, Error> {
    let operation = session_operation(&key, operation)?;
    let query = forwarded_query(pairs, operation)?;
    Ok(Route {
        name,
        key,
        operation,
        query,
    })
}

/// The key the proxy reserves in every bucket for setting a signed policy's cookies.
pub const SESSION_KEY: &str = "_session";

/// `GET /{name}/_session` starts a session; any other request for that key is refused, so no
/// client can write an object the proxy would shadow.
fn session_operation(key: &str, operation: Operation) -> Result<Operation, Error> {
    if key != SESSION_KEY || operation == Operation::Preflight {
        return Ok(operation);
    }
    if operation == Operation::GetObject {
        return Ok(Operation::StartSession);
    }
    Err(Error::InvalidKey {
        reason: format!("`{SESSION_KEY}` is reserved by the proxy for signed-policy sessions"),
    })
}

/// The operation on a bucket (an empty key).
fn bucket_operation(method: &Method, pairs: &[(String, String)]) -> Result<Operation, Error> {
    let has = |name: &str| pairs.iter().any(|(n, _)| n == name);
    Ok(match *method {
        Method::GET if has("list-type") => Operation::ListObjectsV2,
        Method::GET if has("uploads") => Operation::ListMultipartUploads,
        Method::GET if has("location") => Operation::GetBucketLocation,
        Method::GET => Operation::ListObjects,
        Method::HEAD => Operation::HeadBucket,
        Method::POST if has("delete") => Operation::DeleteObjects,
        Method::POST if pairs.is_empty() => Operation::PostObject,
        // Sub-resources the proxy serves are all GETs or POSTs: a PUT with any query
        // (`?acl`, `?policy`, …) configures the bucket and stays refused.
        Method::PUT if pairs.is_empty() => Operation::CreateBucket,
        _ => return Err(bucket_level(method)),
    })
}

/// The operation on an object.
fn object_operation(method: &Method, pairs: &[(String, String)]) -> Result<Operation, Error> {
    let has = |name: &str| pairs.iter().any(|(n, _)| n == name);
    Ok(match *method {
        Method::GET if has("uploadId") => Operation::ListParts,
        Method::GET if has("attributes") => Operation::GetObjectAttributes,
        Method::GET => Operation::GetObject,
        Method::HEAD => Operation::HeadObject,
        Method::PUT if has("uploadId") => Operation::UploadPart,
        Method::PUT => Operation::PutObject,
        Method::POST if has("uploads") => Operation::CreateMultipartUpload,
        Method::POST if has("uploadId") => Operation::CompleteMultipartUpload,
        Method::POST => {
            return Err(Error::NotImplemented {
                operation: "This POST operation".to_string(),
            });
        }
        Method::DELETE if has("uploadId") => Operation::AbortMultipartUpload,
        Method::DELETE => Operation::DeleteObject,
        _ => {
            return Err(Error::MethodNotAllowed {
                method: method.to_string(),
            });
        }
    })
}

/// Requests for the service itself (`/`, no bucket named): only ListBuckets.
fn service_level(method: &Method, raw_key: &str) -> Result<Route, Error> {
    if !raw_key.is_empty() {
        return Err(Error::InvalidBucketName {
            reason: "the bucket name is empty".to_string(),
        });
    }
    match *method {
        Method::GET => Ok(Route {
            name: String::new(),
            key: String::new(),
            operation: Operation::ListBuckets,
            query: Vec::new(),
        }),
        _ => Err(Error::MethodNotAllowed {
            method: method.to_string(),
        }),
    }
}

/// Requests for a bucket itself (`/{name}` or `/{name}/`) that the proxy does not serve:
/// integrations are provisioned in the config, so clients never delete or configure buckets.
fn bucket_level(method: &Method) -> Error {
    match *method {
        Method::PUT | Method::DELETE => Error::AccessDenied {
            reason: "buckets are provisioned in the proxy's configuration, not by clients"
                .to_string(),
        },
        Method::POST => Error::NotImplemented {
            operation: "This bucket POST operation".to_string(),
        },
        _ => Error::MethodNotAllowed {
            method: method.to_string(),
        },
    }
}

/// `{name}.{base_domain}` → `name`; anything else (the bare base domain, an IP, another host)
/// means path style.
pub fn name_from_host(host: Option<&str>, base_domain: Option<&str>) -> Option<String> {
    let base_domain = base_domain?;
    let host = host?;
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let name = host.strip_suffix(base_domain)?.strip_suffix('.')?;
    (!name.is_empty()).then(|| name.to_string())
}

fn decode_bucket_name(raw: &str) -> Result<String, Error> {
    let decoded = percent_decode(raw)?;
    check_bucket_name(&decoded).map_err(|reason| Error::InvalidBucketName {
        reason: format!("`{}`: {reason}", decoded.escape_debug()),
    })?;
    Ok(decoded)
}

/// Checks a decoded key against the rules every integration enforces; `allow_unusual` lets
/// `.`/`..` and empty segments through for integrations that really store such keys.
pub fn check_key(key: &str, allow_unusual: bool) -> Result<(), Error> {
    if key.chars().any(char::is_control) {
        return Err(Error::InvalidKey {
            reason: "keys may not contain control characters".to_string(),
        });
    }
    if allow_unusual {
        return Ok(());
    }
    if key.starts_with('/') {
        return Err(Error::InvalidKey {
            reason: "keys may not start with `/` (an empty first segment)".to_string(),
        });
    }
    if key.contains("//") {
        return Err(Error::InvalidKey {
            reason: "keys may not contain empty segments (`//`)".to_string(),
        });
    }
    if key
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(Error::InvalidKey {
            reason: "keys may not contain `.` or `..` segments".to_string(),
        });
    }
    Ok(())
}

/// Keeps the operation's own parameters (once each) and drops the rest: cache busters like
/// `?v=3`, and any `X-Amz-*` signing parameters, which are never forwarded.
fn forwarded_query(
    pairs: &[(String, String)],
    operation: Operation,
) -> Result<Vec<(String, String)>, Error> {
    let allowed = operation.query_parameters();
    let mut kept: Vec<(String, String)> = Vec::new();
    for (name, value) in pairs {
        if allowed.contains(&name.as_str()) {
            if kept.iter().any(|(seen, _)| seen == name) {
                return Err(Error::InvalidRequest {
                    reason: format!("The query parameter `{name}` is given twice"),
                });
            }
            kept.push((name.clone(), value.clone()));
        }
    }
    kept.sort();
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Result<Route, Error> {
        let (path, query) = path
            .split_once('?')
            .map_or((path, None), |(p, q)| (p, Some(q)));
        route(&Method::GET, Some("127.0.0.1:8080"), path, query, None)
    }

    #[test]
    fn path_style_names_bucket_then_key() {
        let r = get("/my-bucket/a/b.png").expect("routes");
        assert_eq!((r.name.as_str(), r.key.as_str()), ("my-bucket", "a/b.png"));
        assert_eq!(r.operation, Operation::GetObject);
    }

    #[test]
    fn keys_are_decoded_exactly_once() {
        let r = get("/b-1/a%20b%2Bc+d%2520e%E2%9C%93").expect("routes");
        assert_eq!(r.key, "a b+c+d%20e✓");
        let r = get("/b-1/dir/").expect("routes");
        assert_eq!(r.key, "dir/", "a trailing slash is part of the key");
    }

    #[test]
    fn virtual_host_front_door_with_base_domain() {
        let r = route(
            &Method::HEAD,
            Some("acme-media.media.example.com:8443"),
            "/x/y.mp4",
            None,
            Some("media.example.com"),
        )
        .expect("routes");
        assert_eq!((r.name.as_str(), r.key.as_str()), ("acme-media", "x/y.mp4"));
        assert_eq!(r.operation, Operation::HeadObject);
        // The bare base domain (or any other host) is path style.
        let r = route(
            &Method::GET,
            Some("media.example.com"),
            "/b-1/k",
            None,
            Some("media.example.com"),
        )
        .expect("routes");
        assert_eq!((r.name.as_str(), r.key.as_str()), ("b-1", "k"));
        let r = route(
            &Method::GET,
            Some("evil-media.example.com"),
            "/b-1/k",
            None,
            Some("media.example.com"),
        )
        .expect("routes");
        assert_eq!(
            r.name, "b-1",
            "a host that merely ends with the domain text is not a subdomain"
        );
    }

    #[test]
    fn encoded_slash_in_bucket_name_is_not_a_bucket() {
        let error = get("/bucket-a%2Fbucket-b/key").expect_err("refused");
        assert_eq!(error.code(), "InvalidBucketName");
        let error = get("/UPPER/key").expect_err("refused");
        assert_eq!(error.code(), "InvalidBucketName");
    }

    #[test]
    fn unusual_keys_are_refused_unless_allowed() {
        for key in ["a/../b", "./a", "a/.", "/lead", "a//b", ".."] {
            assert_eq!(
                check_key(key, false).map_err(|e| e.code()),
                Err("InvalidArgument"),
                "{key}"
            );
            assert!(check_key(key, true).is_ok(), "{key}");
        }
        assert!(
            check_key("a\u{0}b", true).is_err(),
            "control characters never pass"
        );
        assert!(
            check_key("a.b/..c/d..", false).is_ok(),
            "dots inside names are fine"
        );
        assert_eq!(
            get("/b-1/a%ZZ").map_err(|e| e.code()),
            Err("InvalidArgument")
        );
        assert_eq!(
            get("/b-1/%FF").map_err(|e| e.code()),
            Err("InvalidArgument")
        );
    }

    #[test]
    fn queries_keep_object_parameters_and_refuse_subresources() {
        let r = get("/b-1/k?versionId=v%2B1&v=cachebuster&X-Amz-Signature=abc&response-content-type=text%2Fplain")
            .expect("routes");
        assert_eq!(
            r.query,
            vec![
                (
                    "response-content-type".to_string(),
                    "text/plain".to_string()
                ),
                ("versionId".to_string(), "v+1".to_string()),
            ]
        );
        assert_eq!(
            get("/b-1/k?acl").map_err(|e| e.code()),
            Err("NotImplemented")
        );
        assert_eq!(
            get("/b-1/k?tagging=").map_err(|e| e.code()),
            Err("NotImplemented")
        );
        assert_eq!(
            get("/b-1/k?versionId=1&versionId=2").map_err(|e| e.code()),
            Err("InvalidRequest")
        );
    }

    #[test]
    fn methods_and_bucket_level_requests() {
        assert_eq!(
            get("/?max-buckets=10").map(|r| r.operation).ok(),
            Some(Operation::ListBuckets)
        );
        assert_eq!(get("//k").map_err(|e| e.code()), Err("InvalidBucketName"));
        assert_eq!(
            get("/b-1").map(|r| r.operation).ok(),
            Some(Operation::ListObjects)
        );
        assert_eq!(
            get("/b-1/?list-type=2&prefix=a%2F&x-id=ListObjectsV2")
                .map(|r| (r.operation, r.query))
                .ok(),
            Some((
                Operation::ListObjectsV2,
                vec![
                    ("list-type".to_string(), "2".to_string()),
                    ("prefix".to_string(), "a/".to_string())
                ]
            ))
        );
        let operation = |method: Method, path: &str, query: Option<&str>| {
            route(&method, None, path, query, None)
                .map(|r| r.operation)
                .ok()
        };
        assert_eq!(
            operation(Method::GET, "/b-1", Some("location")),
            Some(Operation::GetBucketLocation)
        );
        assert_eq!(
            operation(Method::GET, "/b-1", Some("uploads")),
            Some(Operation::ListMultipartUploads)
        );
        assert_eq!(
            operation(Method::HEAD, "/b-1", None),
            Some(Operation::HeadBucket)
        );
        assert_eq!(
            operation(Method::POST, "/b-1/", Some("delete")),
            Some(Operation::DeleteObjects)
        );
        assert_eq!(
            operation(Method::PUT, "/b-1", None),
            Some(Operation::CreateBucket)
        );
        for (method, query) in [
            (Method::DELETE, None),
            (Method::PUT, Some("versioning")),
            (Method::PUT, Some("ownershipControls")),
        ] {
            let refused = route(&method, None, "/b-1", query, None).map_err(|e| e.code());
            assert!(
                matches!(refused, Err("AccessDenied" | "NotImplemented")),
                "{method} {query:?} on a bucket: {refused:?}"
            );
        }
        let patch =
            route(&Method::PATCH, None, "/b-1/k", None, None).map_err(|e| e.status().as_u16());
        assert_eq!(patch, Err(405));
    }

    #[test]
    fn object_operations_follow_method_query_and_copy_source() {
        let operation = |method: Method, query: Option<&str>, is_copy: bool| {
            route(&method, None, "/b-1/k", query, None)
                .map(|r| (r.operation.with_copy_source(is_copy), r.query))
        };
        let owned = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            operation(Method::PUT, Some("x-id=PutObject"), false).ok(),
            Some((Operation::PutObject, vec![]))
        );
        assert_eq!(
            operation(Method::PUT, None, true).ok(),
            Some((Operation::CopyObject, vec![]))
        );
        assert_eq!(
            operation(Method::GET, Some("attributes&versionId=v&v=3"), false).ok(),
            Some((
                Operation::GetObjectAttributes,
                owned(&[("attributes", ""), ("versionId", "v")])
            ))
        );
        assert_eq!(
            operation(Method::GET, Some("attributes"), true)
                .map(|o| o.0)
                .ok(),
            Some(Operation::GetObjectAttributes),
            "a copy source makes no read a copy"
        );
        assert_eq!(
            operation(Method::POST, Some("uploads"), false).ok(),
            Some((Operation::CreateMultipartUpload, owned(&[("uploads", "")])))
        );
        assert_eq!(
            operation(Method::PUT, Some("partNumber=2&uploadId=u%2B1"), false).ok(),
            Some((
                Operation::UploadPart,
                owned(&[("partNumber", "2"), ("uploadId", "u+1")])
            ))
        );
        assert_eq!(
            operation(Method::PUT, Some("partNumber=2&uploadId=u"), true)
                .map(|o| o.0)
                .ok(),
            Some(Operation::UploadPartCopy)
        );
        assert_eq!(
            operation(Method::POST, Some("uploadId=u"), false)
                .map(|o| o.0)
                .ok(),
            Some(Operation::CompleteMultipartUpload)
        );
        assert_eq!(
            operation(Method::DELETE, Some("uploadId=u"), false)
                .map(|o| o.0)
                .ok(),
            Some(Operation::AbortMultipartUpload)
        );
        assert_eq!(
            operation(Method::GET, Some("uploadId=u&max-parts=5"), false).ok(),
            Some((
                Operation::ListParts,
                owned(&[("max-parts", "5"), ("uploadId", "u")])
            ))
        );
        assert_eq!(
            operation(Method::DELETE, Some("versionId=3"), false).ok(),
            Some((Operation::DeleteObject, owned(&[("versionId", "3")])))
        );
        assert_eq!(
            operation(Method::PUT, Some("tagging"), false).map_err(|e| e.code()),
            Err("NotImplemented")
        );
    }
}
