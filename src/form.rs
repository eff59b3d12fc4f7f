//! Form uploads: S3's POST Object. A page posts a file to `POST /{name}` as
//! `multipart/form-data`, with fields an application signed (`generate_presigned_post`,
//! `createPresignedPost`): the proxy reads the fields, verifies the policy's signature with the
//! client key and every condition, jails the key as any other, and streams the file to the
//! store ([`upload`]) before answering as S3 does.
//!
//! Everything but the file's size is checked before the store is contacted; a size outside the
//! policy's range found while streaming aborts the upload.

pub mod conditions;
pub mod multipart;
mod reader;
mod upload;

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, header};

use crate::auth::front_door::Clients;
use crate::config::Integration;
use crate::observe::access::Seen;
use crate::s3::body::{self, ProxyBody};
use crate::s3::error::Error;
use crate::s3::route::{Operation, Route};
use crate::upstream::state::State;
use conditions::Fields;
use multipart::PartHead;
use reader::FormReader;

/// Form fields that become the object's headers, by the same name.
const HEADER_FIELDS: &[&str] = &[
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-type",
    "expires",
    "x-amz-storage-class",
];
/// Form fields the proxy reads itself (the policy, its signature, where to go after).
const CONTROL_FIELDS: &[&str] = &[
    "key",
    "bucket",
    "policy",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-signature",
    "awsaccesskeyid",
    "signature",
    "success_action_status",
    "success_action_redirect",
    "redirect",
    "acl",
];

/// Serves a form upload to the logical bucket `route.name`.
pub async fn post_object(
    state: &State,
    route: Route,
    request: Request<ProxyBody>,
    seen: &mut Seen,
) -> Result<Response<ProxyBody>, Error> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let boundary = multipart::boundary(content_type)?;
    let mut reader = FormReader::new(request.into_body(), &boundary);
    let answer = store_form(state, route, &mut reader, seen).await;
    if answer.is_err() {
        reader.linger();
    }
    answer
}

/// Reads the form's fields, checks its policy and stores its file.
async fn store_form(
    state: &State,
    route: Route,
    reader: &mut FormReader,
    seen: &mut Seen,
) -> Result<Response<ProxyBody>, Error> {
    let (fields, file) = reader.fields().await?;

    if let Some(lazy) = &state.tenants.lazy
        && let Some(key) = Clients::claimed_form_key(|name| fields.get(name))
    {
        lazy.prepare_client(&state.tenants.clients, &key).await?;
    }
    let verified = state
        .tenants
        .clients
        .identify_form(|name| fields.get(name))?;
    seen.client = Some(verified.caller.key_id().to_string());
    let policy = conditions::parse(fields.get("policy").unwrap_or(""))?;
    let range = policy.check(&fields, &route.name, state.tenants.config.clock.now())?;
    let key = object_key(&fields, &file)?;
    let object =
        crate::s3::route::keyed(route.name.clone(), key.clone(), Operation::PutObject, &[])?;
    let target = state
        .tenants
        .integrations
        .resolve(&object, &verified.caller)?;
    seen.integration = Some(target.integration.name.clone());
    let headers = object_headers(&fields, &file, &target.integration)?;
    let success = Success::from_fields(&fields)?;

    let target = state.regions.resolve(state, target).await?;
    let destination = upload::Destination {
        state,
        target: &target,
        headers,
        range,
        answered: Default::default(),
    };
    let stored = upload::store(&destination, reader).await;
    let answered = destination.last_answer();
    seen.upstream_status = answered.status;
    seen.upstream_code = answered.code;
    seen.upstream_request_id = answered.request_id;
    let etag = stored?;
    success.answer(&route.name, &key, &etag)
}

/// The `key` field, with `${filename}` replaced by the file's name (its last path segment, as
/// some browsers send a path).
fn object_key(fields: &Fields, file: &PartHead) -> Result<String, Error> {
    let key = fields.get("key").ok_or_else(|| Error::InvalidArgument {
        reason: "Bucket POST must contain a field named 'key'".to_string(),
    })?;
    let filename = file
        .filename
        .as_deref()
        .unwrap_or("")
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("");
    let key = key.split("${filename}").collect::<Vec<_>>().join(filename);
    if key.is_empty() {
        return Err(Error::InvalidArgument {
            reason: "The form's key is empty".to_string(),
        });
    }
    Ok(key)
}

/// The object's headers, from the fields that describe it: each name checked, each value a
/// valid header value; any other field is refused.
fn object_headers(
    fields: &Fields,
    file: &PartHead,
    integration: &Integration,
) -> Result<HeaderMap, Error> {
    let mut headers = HeaderMap::new();
    let refused = |name: &str| Error::InvalidArgument {
        reason: format!("The form field `{name}` is not supported"),
    };
    for (name, value) in &fields.0 {
        let header_name =
            if HEADER_FIELDS.contains(&name.as_str()) || name.starts_with("x-amz-meta-") {
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| refused(name))?
            } else if name == "acl" {
                HeaderName::from_static("x-amz-acl")
            } else if CONTROL_FIELDS.contains(&name.as_str()) || name.starts_with("x-ignore-") {
                continue;
            } else {
                return Err(refused(name));
            };
        let value = HeaderValue::from_str(value).map_err(|_| Error::InvalidArgument {
            reason: format!("The form field `{name}` is not a valid header value"),
        })?;
        headers.insert(header_name, value);
    }
    if !headers.contains_key(header::CONTENT_TYPE)
        && let Some(value) = file
            .content_type
            .as_deref()
            .and_then(|text| HeaderValue::from_str(text).ok())
    {
        headers.insert(header::CONTENT_TYPE, value);
    }
    crate::request::shape::check_acl_headers(&headers, integration)?;
    Ok(headers)
}

/// What S3 answers a successful form upload with.
enum Success {
    /// `success_action_redirect`: `303` to it, with `bucket`, `key` and `etag` added.
    Redirect(Uri),
    /// `success_action_status`: `200`, `201` (with a `PostResponse` document) or `204`.
    Status(StatusCode),
}

impl Success {
    fn from_fields(fields: &Fields) -> Result<Success, Error> {
        let redirect = fields
            .get("success_action_redirect")
            .or_else(|| fields.get("redirect"));
        if let Some(url) = redirect {
            let uri: Uri = url.parse().map_err(|_| bad_redirect())?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
                return Err(bad_redirect());
            }
            return Ok(Success::Redirect(uri));
        }
        // S3 answers 204 to any other value.
        Ok(Success::Status(match fields.get("success_action_status") {
            Some("200") => StatusCode::OK,
            Some("201") => StatusCode::CREATED,
            _ => StatusCode::NO_CONTENT,
        }))
    }

    fn answer(self, bucket: &str, key: &str, etag: &str) -> Result<Response<ProxyBody>, Error> {
        let location = format!("/{bucket}/{}", crate::s3::sigv4::encode_key(key));
        let (status, body) = match self {
            Success::Redirect(uri) => {
                let query = format!(
                    "bucket={}&key={}&etag={}",
                    crate::s3::sigv4::encode_query(bucket),
                    crate::s3::sigv4::encode_query(key),
                    crate::s3::sigv4::encode_query(etag)
                );
                let separator = if uri.query().is_some() { '&' } else { '?' };
                let mut response = Response::new(body::empty());
                *response.status_mut() = StatusCode::SEE_OTHER;
                response.headers_mut().insert(
                    header::LOCATION,
                    header_value(&format!("{uri}{separator}{query}"))?,
                );
                return Ok(response);
            }
            Success::Status(StatusCode::CREATED) => {
                let document = crate::s3::xml::Writer::document(&crate::s3::xml::Element::parent(
                    "PostResponse",
                    vec![
                        crate::s3::xml::Element::text("Location", location.as_str()),
                        crate::s3::xml::Element::text("Bucket", bucket),
                        crate::s3::xml::Element::text("Key", key),
                        crate::s3::xml::Element::text("ETag", etag),
                    ],
                ));
                (StatusCode::CREATED, body::full(document.into()))
            }
            Success::Status(status) => (status, body::empty()),
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::ETAG, header_value(etag)?);
        headers.insert(header::LOCATION, header_value(&location)?);
        if status == StatusCode::CREATED {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/xml"),
            );
        }
        Ok(response)
    }
}

fn bad_redirect() -> Error {
    Error::InvalidArgument {
        reason: "success_action_redirect is not an http or https URL".to_string(),
    }
}

fn header_value(text: &str) -> Result<HeaderValue, Error> {
    HeaderValue::from_str(text).map_err(|error| Error::Internal {
        detail: format!("a form upload's answer header is not a header value: {error}"),
    })
}
