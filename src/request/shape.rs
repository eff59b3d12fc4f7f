//! Request shapes a multi-tenant origin refuses before anything else: smuggling shapes,
//! ambiguous `x-amz-*` headers, ACL headers that would publish a tenant's objects, and
//! `response-content-type` overrides to types a browser runs script in (which types those are
//! is decided here, for the response phase too).

use http::{HeaderMap, HeaderValue, header};

use crate::config::{ActiveContent, Integration};
use crate::s3::error::Error;

/// Canned ACLs that keep an object private to the bucket's owner (what cross-account writers
/// send); every other `x-amz-acl` needs `allow_acl_headers`.
const PRIVATE_ACLS: &[&str] = &["private", "bucket-owner-read", "bucket-owner-full-control"];

/// Refuses request shapes used for smuggling or to aim the proxy elsewhere, whatever the
/// HTTP parser let through: an absolute-form target over HTTP/1 (the upstream comes only from
/// the config), both `Content-Length` and `Transfer-Encoding`, repeated `Content-Length`, any
/// transfer coding but a single `chunked`, and a body on a method that takes none.
pub fn check_request_shape<B>(request: &http::Request<B>) -> Result<(), Error> {
    let refuse = |reason: &str| {
        Err(Error::InvalidRequest {
            reason: reason.to_string(),
        })
    };
    if request.version() <= http::Version::HTTP_11 && request.uri().scheme().is_some() {
        return refuse("absolute-form request targets are not served");
    }
    let headers = request.headers();
    // RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host; a cache or balancer in front
    // may key on another Host than the one routed on. Over HTTP/2, a Host beside the
    // authority must name the same (RFC 9113 §8.3.1).
    let hosts: Vec<&HeaderValue> = headers.get_all(header::HOST).iter().collect();
    if hosts.len() > 1 {
        return refuse("Host is repeated");
    }
    if request.version() == http::Version::HTTP_11 && hosts.is_empty() {
        return refuse("an HTTP/1.1 request needs a Host header");
    }
    if let (Some(authority), Some(host)) = (request.uri().authority(), hosts.first())
        && !host
            .as_bytes()
            .eq_ignore_ascii_case(authority.as_str().as_bytes())
    {
        return refuse("Host names another authority than the request's");
    }
    let lengths = headers.get_all(header::CONTENT_LENGTH).iter().count();
    let codings: Vec<&HeaderValue> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    if lengths > 1 {
        return refuse("Content-Length is repeated");
    }
    let bodiless = matches!(
        *request.method(),
        http::Method::GET | http::Method::HEAD | http::Method::DELETE | http::Method::OPTIONS
    );
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() != "0");
    if bodiless && (!codings.is_empty() || declared_length) {
        return refuse("this method takes no request body");
    }
    if !codings.is_empty() {
        if lengths > 0 {
            return refuse("Content-Length and Transfer-Encoding together");
        }
        let only_chunked = codings.len() == 1
            && codings[0]
                .to_str()
                .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        if !only_chunked {
            return refuse("the only transfer coding served is a single chunked");
        }
    }
    Ok(())
}

/// Refuses `x_amz_*` header names (some servers fold `_` into `-`, making two spellings of one
/// header) and repeated `x-amz-*` headers (which value would count is ambiguous).
pub fn check_request_headers(headers: &HeaderMap) -> Result<(), Error> {
    for name in headers.keys() {
        let text = name.as_str();
        if text.starts_with("x_amz") || text.starts_with("x-amz_") {
            return Err(Error::InvalidArgument {
                reason: format!("header {text} is not allowed: use x-amz- with hyphens"),
            });
        }
        if text.starts_with("x-amz-") && headers.get_all(name).iter().nth(1).is_some() {
            return Err(Error::InvalidArgument {
                reason: format!("header {text} is repeated"),
            });
        }
    }
    Ok(())
}

/// Refuses ACL headers that would share objects beyond the bucket's owner, unless the
/// integration allows them.
pub fn check_acl_headers(headers: &HeaderMap, integration: &Integration) -> Result<(), Error> {
    if integration.allow_acl_headers {
        return Ok(());
    }
    for (name, value) in headers {
        let text = name.as_str();
        let refused = match text {
            "x-amz-acl" => value
                .to_str()
                .map(|acl| !PRIVATE_ACLS.contains(&acl.trim()))
                .unwrap_or(true),
            "x-amz-website-redirect-location" => true,
            _ => text.starts_with("x-amz-grant-"),
        };
        if refused {
            return Err(Error::AccessDenied {
                reason: format!(
                    "{text} is not allowed on integration {}; objects stay private to the bucket's owner",
                    integration.name
                ),
            });
        }
    }
    Ok(())
}

/// Types a browser renders as a document that can run script, besides every `+xml` type.
const ACTIVE_TYPES: &[&str] = &[
    "text/html",
    "application/xhtml+xml",
    "image/svg+xml",
    "text/xml",
    "application/xml",
    "text/xsl",
    "application/xslt+xml",
    "text/javascript",
    "application/javascript",
    "application/ecmascript",
    "text/ecmascript",
    "multipart/x-mixed-replace",
];

/// The media type a browser takes from a `Content-Type` field (all its values joined by
/// `, `), following the Fetch standard's "extract a MIME type": the field is split at commas
/// outside quoted strings, and the last value that parses as `type/subtype` wins (`*/*` never
/// does). Returns the lower-cased essence, or `None` when no value parses.
pub fn extract_media_type(field: &str) -> Option<String> {
    let mut essence = None;
    for value in split_outside_quotes(field) {
        if let Some(parsed) = parse_essence(value)
            && parsed != "*/*"
        {
            essence = Some(parsed);
        }
    }
    essence
}

/// Splits at commas that are not inside a quoted string (a parameter value may hold one).
fn split_outside_quotes(field: &str) -> Vec<&str> {
    let mut values = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (at, c) in field.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                values.push(&field[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    values.push(&field[start..]);
    values
}

/// `type/subtype` of one value, lower-cased, if both are non-empty HTTP tokens.
fn parse_essence(value: &str) -> Option<String> {
    let value = value.trim_matches([' ', '\t', '\r', '\n']);
    let (kind, rest) = value.split_once('/')?;
    let subtype = rest
        .split(';')
        .next()?
        .trim_end_matches([' ', '\t', '\r', '\n']);
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    (token(kind) && token(subtype)).then(|| {
        // Joined and lower-cased in one buffer: this runs on every response.
        let mut essence = [kind, "/", subtype].concat();
        essence.make_ascii_lowercase();
        essence
    })
}

/// Whether a browser could run script in a response with this `Content-Type` field. A field
/// with no type a browser accepts counts as active too: the browser would sniff one.
pub fn is_active_type(content_type: &str) -> bool {
    match extract_media_type(content_type) {
        Some(essence) => ACTIVE_TYPES.contains(&essence.as_str()) || essence.ends_with("+xml"),
        None => true,
    }
}

/// Refuses a `response-content-type` override to an active type on a browser-reachable
/// request (anonymous or presigned): it would turn any object into a page of the origin.
pub fn check_type_override(
    query: &[(String, String)],
    browser_reachable: bool,
    integration: &Integration,
) -> Result<(), Error> {
    if !browser_reachable || integration.active_content == ActiveContent::Allow {
        return Ok(());
    }
    let active = query
        .iter()
        .any(|(name, value)| name == "response-content-type" && is_active_type(value));
    if active {
        return Err(Error::AccessDenied {
            reason: "response-content-type may not name a type browsers run script in".to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_must_be_one_and_agree_with_the_authority() {
        let shape = |version: http::Version, uri: &str, hosts: &[&str]| {
            let mut builder = http::Request::builder().version(version).uri(uri);
            for host in hosts {
                builder = builder.header(header::HOST, *host);
            }
            check_request_shape(&builder.body(()).expect("request")).map_err(|e| e.to_string())
        };
        use http::Version;
        assert!(shape(Version::HTTP_11, "/acme/k", &["p:8080"]).is_ok());
        assert!(shape(Version::HTTP_10, "/acme/k", &[]).is_ok());
        assert!(shape(Version::HTTP_2, "https://p:8080/acme/k", &[]).is_ok());
        assert!(shape(Version::HTTP_2, "https://p:8080/acme/k", &["P:8080"]).is_ok());
        for (version, uri, hosts) in [
            (Version::HTTP_11, "/acme/k", &[][..]),
            (Version::HTTP_11, "/acme/k", &["p", "p"][..]),
            (Version::HTTP_11, "/acme/k", &["p", "q"][..]),
            (
                Version::HTTP_2,
                "https://p:8080/acme/k",
                &["evil.example"][..],
            ),
        ] {
            let refused = shape(version, uri, hosts);
            assert!(refused.is_err(), "{version:?} {uri} {hosts:?}");
        }
    }

    #[test]
    fn ambiguous_amz_headers_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-meta-a", HeaderValue::from_static("1"));
        assert!(check_request_headers(&headers).is_ok());
        headers.append("x-amz-meta-a", HeaderValue::from_static("2"));
        assert!(check_request_headers(&headers).is_err());
        let mut underscored = HeaderMap::new();
        underscored.insert("x_amz_acl", HeaderValue::from_static("public-read"));
        assert!(check_request_headers(&underscored).is_err());
    }

    #[test]
    fn active_types_are_recognised_with_parameters_and_case() {
        for active in [
            "text/html",
            "Text/HTML; charset=utf-8",
            "image/svg+xml",
            "application/xml",
            // Browsers take the last valid type of a comma list.
            "text/plain, text/html",
            "text/plain,text/html;charset=\"a,b\"",
            "image/png, */*, text/html",
            // Every +xml type renders as XML, where XHTML script runs.
            "application/rss+xml",
            "application/mathml+xml",
            "application/x-anything+XML",
            " TEXT/HTML ",
            // Nothing a browser accepts as a type: it would sniff one.
            "",
            "html",
            "/html",
        ] {
            assert!(is_active_type(active), "{active}");
        }
        for passive in [
            "image/png",
            "video/mp4",
            "text/plain",
            "application/octet-stream",
            "text/html, text/plain",
            "text/plain; charset=\"text/html, x\"",
            "image/png, */*",
            "image/png, nonsense",
            "application/xml-dtd-not-really, image/jpeg",
        ] {
            assert!(!is_active_type(passive), "{passive}");
        }
    }
}
