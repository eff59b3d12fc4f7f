//! The answers the proxy gives itself, never asking the store: ListBuckets from the client's
//! bindings, HeadBucket and GetBucketLocation from the config, and the redirect of
//! `delivery = "redirect"`.

use std::time::SystemTime;

use http::{Response, header};

use crate::auth::front_door::Caller;
use crate::config::Integration;
use crate::request::tenants::Tenants;
use crate::s3::body::{self, ProxyBody};
use crate::s3::error::Error;

/// ListBuckets: the logical buckets the caller may reach; an anonymous caller that may reach
/// none is refused, as S3 refuses an anonymous ListBuckets.
pub fn list_buckets(
    tenants: &Tenants,
    caller: &Caller,
    created: SystemTime,
) -> Result<Response<ProxyBody>, Error> {
    let names = tenants.integrations.reachable(caller);
    if names.is_empty() && matches!(caller, Caller::Anonymous) {
        return Err(Error::AccessDenied {
            reason: "Access Denied".to_string(),
        });
    }
    let owner = match caller {
        Caller::Anonymous => "anonymous",
        Caller::Client(client) => client.access_key_id.as_str(),
    };
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let document = crate::s3::documents::bucket_list(owner, &names, created);
    Ok(xml(document))
}

/// What the integration's config answers once its region is known (discovered, for
/// `region = "auto"`): HeadBucket and GetBucketLocation. The proxy and `explain` both ask here.
pub fn after_region(
    operation: crate::s3::route::Operation,
    integration: &Integration,
) -> Option<Response<ProxyBody>> {
    match operation {
        crate::s3::route::Operation::HeadBucket => Some(head_bucket(integration)),
        crate::s3::route::Operation::GetBucketLocation => Some(bucket_location(integration)),
        _ => None,
    }
}

/// HeadBucket: the caller may reach this bucket; it is in the integration's region.
pub fn head_bucket(integration: &Integration) -> Response<ProxyBody> {
    let mut response = Response::new(body::empty());
    if let Ok(region) = http::HeaderValue::from_str(integration.region.signing_name()) {
        response.headers_mut().insert("x-amz-bucket-region", region);
    }
    response
}

/// GetBucketLocation, as S3 answers it (`us-east-1` is the empty constraint).
pub fn bucket_location(integration: &Integration) -> Response<ProxyBody> {
    let constraint = match integration.region.signing_name() {
        "us-east-1" => "",
        region => region,
    };
    xml(crate::s3::xml::Writer::document(
        &crate::s3::xml::Element::text("LocationConstraint", constraint),
    ))
}

/// `307 Temporary Redirect` to an upstream presigned URL; never cached past its validity.
pub fn redirect(location: &http::Uri) -> Result<Response<ProxyBody>, Error> {
    let location =
        http::HeaderValue::from_str(&location.to_string()).map_err(|error| Error::Internal {
            detail: format!("the presigned URL is not a header value: {error}"),
        })?;
    let mut response = Response::new(body::empty());
    *response.status_mut() = http::StatusCode::TEMPORARY_REDIRECT;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    headers.insert(header::CONTENT_LENGTH, http::HeaderValue::from(0));
    Ok(response)
}

fn xml(document: String) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(bytes::Bytes::from(document)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    response
}
