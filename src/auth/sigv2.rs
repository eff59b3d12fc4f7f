//! SigV2: S3's older HMAC-SHA1 signatures, as `s3cmd signurl`, boto3's presigner with a custom
//! endpoint and older tools still make them, in the `Authorization: AWS KEY:SIGNATURE` header
//! and in the `AWSAccessKeyId`, `Expires`, `Signature` query form.
//!
//! What is signed (S3's "string to sign"): the method, `Content-MD5`, `Content-Type`, the date
//! (the `Date` header, empty when `x-amz-date` is sent, `Expires` in the query form), every
//! `x-amz-*` header, and the resource: the bucket and the path as sent, with the
//! sub-resources and response overrides of the query. The body is not signed (as in S3); a
//! `Content-MD5` or `x-amz-content-sha256` the client sends is signed and checked by the store.
//!
//! The front door applies the same rules as to SigV4: the clock skew, a week's longest
//! expiry, the client's bindings, a constant-time comparison. `[server] sigv2 = false` refuses
//! both forms with S3's `400 InvalidRequest`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, Method, Uri};

use crate::s3::error::Error;
use crate::s3::sigv4::{MAX_CLOCK_SKEW, MAX_PRESIGNED_EXPIRY, parse_amz_date};

/// Query parameters that are part of the signed resource (S3's list of sub-resources and
/// response overrides); every other parameter is left out, as S3 leaves it out.
const SIGNED_PARAMETERS: &[&str] = &[
    "accelerate",
    "acl",
    "attributes",
    "cors",
    "delete",
    "encryption",
    "legal-hold",
    "lifecycle",
    "location",
    "logging",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "retention",
    "select",
    "select-type",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// Which SigV2 form a request carries, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Header,
    Query,
}

/// Whether a request carries a SigV2 signature, and in which form (the header's, if it
/// carries both: the front door refuses that as two mechanisms before asking).
pub fn form(headers: &HeaderMap, query: &[(String, String)]) -> Option<Form> {
    let header = headers
        .get(http::header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes().starts_with(b"AWS "));
    match (header, in_query(query)) {
        (true, _) => Some(Form::Header),
        (false, true) => Some(Form::Query),
        (false, false) => None,
    }
}

/// Whether the query carries SigV2 parameters.
pub fn in_query(query: &[(String, String)]) -> bool {
    query
        .iter()
        .any(|(name, _)| name == "AWSAccessKeyId" || name == "Signature")
}

/// What a SigV2 signature claims, checked for its time (not yet for its signature).
pub struct Claim {
    pub access_key_id: String,
    /// The base64 signature as sent.
    pub signature: String,
    pub string_to_sign: String,
}

/// The request as SigV2 signs it.
pub struct SignedRequest<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    /// The request's decoded query pairs.
    pub query: &'a [(String, String)],
    /// The bucket named by the `Host` (virtual-host style), which the resource starts with.
    pub virtual_bucket: Option<&'a str>,
}

/// Reads a header-form signature (`AWS KEY:SIGNATURE`) and checks the request's date.
pub fn from_header(request: &SignedRequest<'_>, now: SystemTime) -> Result<Claim, Error> {
    let malformed = |why: &str| Error::AuthorizationHeaderMalformed {
        reason: format!("The authorization header {why}"),
    };
    let value = request
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| malformed("is not ASCII"))?;
    let (access_key_id, signature) = value
        .strip_prefix("AWS ")
        .and_then(|rest| rest.split_once(':'))
        .filter(|(key, signature)| !key.is_empty() && !signature.is_empty())
        .ok_or_else(|| malformed("is not AWS KEY:SIGNATURE"))?;
    let amz_date = text(request.headers, "x-amz-date");
    let date = amz_date.or_else(|| text(request.headers, "date"));
    let time = date
        .and_then(parse_date)
        .ok_or_else(|| Error::AccessDenied {
            reason: "AWS authentication requires a valid Date or x-amz-date header".to_string(),
        })?;
    let skew = match now.duration_since(time) {
        Ok(behind) => behind,
        Err(ahead) => ahead.duration(),
    };
    if skew > MAX_CLOCK_SKEW {
        return Err(Error::RequestTimeTooSkewed);
    }
    // With x-amz-date, the Date line is empty (x-amz-date is signed among the amz headers).
    let date_line = if amz_date.is_some() {
        ""
    } else {
        date.unwrap_or_default()
    };
    Ok(Claim {
        access_key_id: access_key_id.to_string(),
        signature: signature.to_string(),
        string_to_sign: string_to_sign(request, date_line),
    })
}

/// Reads a query-form signature and checks its expiry: not past, not over a week away.
pub fn from_query(request: &SignedRequest<'_>, now: SystemTime) -> Result<Claim, Error> {
    let get = |name: &str| {
        request
            .query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let (Some(access_key_id), Some(signature), Some(expires)) =
        (get("AWSAccessKeyId"), get("Signature"), get("Expires"))
    else {
        return Err(Error::AccessDenied {
            reason: "Query-string authentication requires the Signature, Expires and \
                     AWSAccessKeyId parameters"
                .to_string(),
        });
    };
    let bad = |why: &str| Error::AuthorizationQueryParametersError {
        reason: format!("Query-string authentication {why}"),
    };
    let expires_at: u64 = expires
        .parse()
        .map_err(|_| bad("needs Expires to be a time in seconds since 1970"))?;
    let expires_at = UNIX_EPOCH + Duration::from_secs(expires_at);
    if now > expires_at {
        return Err(Error::AccessDenied {
            reason: "Request has expired".to_string(),
        });
    }
    if expires_at > now + Duration::from_secs(MAX_PRESIGNED_EXPIRY) {
        return Err(bad(
            "needs Expires to be less than a week (604800 seconds) away",
        ));
    }
    if access_key_id.is_empty() {
        return Err(bad("has no AWSAccessKeyId"));
    }
    Ok(Claim {
        access_key_id: access_key_id.to_string(),
        signature: signature.to_string(),
        string_to_sign: string_to_sign(request, expires),
    })
}

/// S3's SigV2 string to sign, with `date_line` as the date.
pub fn string_to_sign(request: &SignedRequest<'_>, date_line: &str) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(request.method.as_str());
    out.push('\n');
    for name in ["content-md5", "content-type"] {
        out.push_str(text(request.headers, name).unwrap_or_default().trim());
        out.push('\n');
    }
    out.push_str(date_line);
    out.push('\n');
    out.push_str(&amz_headers(request.headers));
    out.push_str(&resource(request));
    out
}

/// Every `x-amz-*` header, by name, its values trimmed and joined with commas.
fn amz_headers(headers: &HeaderMap) -> String {
    let mut names: Vec<&str> = headers
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|name| name.starts_with("x-amz-"))
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut out = String::new();
    for name in names {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
            .collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out
}

/// `/bucket/key` as sent (the bucket from the `Host` in virtual-host style; the bucket alone
/// as `/bucket/`), then the signed sub-resources, sorted, with their decoded values.
fn resource(request: &SignedRequest<'_>) -> String {
    let mut out = String::new();
    let path = request.uri.path();
    if let Some(bucket) = request.virtual_bucket {
        out.push('/');
        out.push_str(bucket);
        out.push_str(path);
    } else {
        out.push_str(path);
        // The bucket itself is `/bucket/`, however the path spelled it (as S3 and every
        // SigV2 signer write it). The service itself (ListBuckets) is `/`.
        if path.len() > 1 && !path[1..].contains('/') {
            out.push('/');
        }
    }
    let mut signed: Vec<&(String, String)> = request
        .query
        .iter()
        .filter(|(name, _)| SIGNED_PARAMETERS.contains(&name.as_str()))
        .collect();
    signed.sort();
    for (at, (name, value)) in signed.into_iter().enumerate() {
        out.push(if at == 0 { '?' } else { '&' });
        out.push_str(name);
        if !value.is_empty() {
            out.push('=');
            out.push_str(value);
        }
    }
    out
}

/// The base64 HMAC-SHA1 of `string_to_sign` with `secret`.
pub fn signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(string_to_sign.as_bytes());
    aws_smithy_types::base64::encode(mac.finalize().into_bytes())
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, also with `+0000` as s3cmd writes it) or
/// SigV4's `YYYYMMDDTHHMMSSZ`.
fn parse_date(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if let Some(time) = parse_amz_date(text) {
        return Some(time);
    }
    let normalised = match text.strip_suffix(" +0000") {
        Some(rest) => format!("{rest} GMT"),
        None => text.to_string(),
    };
    httpdate::parse_http_date(&normalised).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn request<'a>(
        method: &'a Method,
        uri: &'a Uri,
        headers: &'a HeaderMap,
        query: &'a [(String, String)],
    ) -> SignedRequest<'a> {
        SignedRequest {
            method,
            uri,
            headers,
            query,
            virtual_bucket: None,
        }
    }

    /// The example of S3's SigV2 documentation ("Object GET"): a virtual-host request for
    /// `/photos/puppy.jpg` in bucket `awsexamplebucket1`, with its published signature.
    #[test]
    fn the_documented_example_signs_as_published() {
        let method = Method::GET;
        let uri: Uri = "/photos/puppy.jpg".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "date",
            HeaderValue::from_static("Tue, 27 Mar 2007 19:36:42 +0000"),
        );
        let mut signed = request(&method, &uri, &headers, &[]);
        signed.virtual_bucket = Some("awsexamplebucket1");
        let string_to_sign = string_to_sign(&signed, "Tue, 27 Mar 2007 19:36:42 +0000");
        assert_eq!(
            string_to_sign,
            "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg"
        );
        assert_eq!(
            signature("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &string_to_sign),
            "qgk2+6Sv9/oM7G3qLEjTH1a1l1g="
        );
    }

    #[test]
    fn amz_headers_and_sub_resources_are_signed_in_order() {
        let method = Method::PUT;
        let uri: Uri = "/b/k?uploadId=u1&partNumber=2&cache-buster=3"
            .parse()
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers.insert("x-amz-meta-b", HeaderValue::from_static(" two "));
        headers.append("x-amz-meta-a", HeaderValue::from_static("1"));
        headers.append("x-amz-meta-a", HeaderValue::from_static("2"));
        headers.insert(
            "x-amz-date",
            HeaderValue::from_static("Tue, 27 Mar 2007 19:36:42 +0000"),
        );
        let query = crate::s3::sigv4::parse_query(uri.query().unwrap()).unwrap();
        let text = string_to_sign(&request(&method, &uri, &headers, &query), "");
        assert_eq!(
            text,
            "PUT\n\ntext/plain\n\nx-amz-date:Tue, 27 Mar 2007 19:36:42 +0000\n\
             x-amz-meta-a:1,2\nx-amz-meta-b:two\n/b/k?partNumber=2&uploadId=u1"
        );
    }

    #[test]
    fn a_bucket_is_signed_with_its_slash_in_either_style() {
        let method = Method::GET;
        let headers = HeaderMap::new();
        for (path, virtual_bucket) in [("/acme", None), ("/acme/", None), ("/", Some("acme"))] {
            let uri: Uri = format!("{path}?list-type=2&prefix=a%2F").parse().unwrap();
            let query = crate::s3::sigv4::parse_query(uri.query().unwrap()).unwrap();
            let mut signed = request(&method, &uri, &headers, &query);
            signed.virtual_bucket = virtual_bucket;
            assert_eq!(string_to_sign(&signed, "D"), "GET\n\n\nD\n/acme/", "{path}");
        }
        // ListBuckets: the service's resource is `/`, not `//`.
        let uri: Uri = "/".parse().unwrap();
        let signed = request(&method, &uri, &headers, &[]);
        assert_eq!(string_to_sign(&signed, "D"), "GET\n\n\nD\n/");
    }

    #[test]
    fn dates_parse_in_the_forms_clients_send() {
        let expected = UNIX_EPOCH + Duration::from_secs(1_175_024_202);
        for text in [
            "Tue, 27 Mar 2007 19:36:42 +0000",
            "Tue, 27 Mar 2007 19:36:42 GMT",
            "20070327T193642Z",
        ] {
            assert_eq!(parse_date(text), Some(expected), "{text}");
        }
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn query_expiry_is_bounded_both_ways() {
        let method = Method::GET;
        let uri: Uri = "/b/k".parse().unwrap();
        let headers = HeaderMap::new();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let claim = |expires: u64| {
            let query = vec![
                ("AWSAccessKeyId".to_string(), "AK".to_string()),
                ("Signature".to_string(), "x".to_string()),
                ("Expires".to_string(), expires.to_string()),
            ];
            from_query(&request(&method, &uri, &headers, &query), now)
                .map(|c| c.string_to_sign)
                .map_err(|e| e.code())
        };
        assert_eq!(
            claim(1_800_000_060),
            Ok("GET\n\n\n1800000060\n/b/k".to_string())
        );
        assert_eq!(claim(1_799_999_999), Err("AccessDenied"));
        assert_eq!(
            claim(1_800_000_000 + MAX_PRESIGNED_EXPIRY + 1),
            Err("AuthorizationQueryParametersError")
        );
    }
}
