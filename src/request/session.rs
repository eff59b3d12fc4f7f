//! `GET /{name}/_session`: a page sends the browser here with a signed policy in the query;
//! the proxy verifies it (the front door did), sets it as three cookies scoped to the bucket's
//! path, and sends the browser on to a path on the same origin.
//!
//! The cookies are `HttpOnly` (no script reads them), `SameSite` as `[server]
//! cookie_same_site` says (`Lax` by default), `Secure` unless the listener is plain HTTP on
//! loopback, and expire with the policy.

use std::time::SystemTime;

use http::{HeaderValue, Request, Response, StatusCode, header, uri::PathAndQuery};

use crate::auth::front_door::{Caller, Verified};
use crate::auth::policy::{KEY_ID, POLICY, SIGNATURE};
use crate::config::SameSite;
use crate::s3::body::{self, ProxyBody};
use crate::s3::error::Error;
use crate::s3::route::Route;

/// Where cookies go and how: what the session answer needs besides the request.
pub struct CookieScope {
    /// `/{name}/` in path style, `/` on the bucket's own host.
    pub path: String,
    pub secure: bool,
    pub same_site: SameSite,
}

/// The session answer: `303 See Other` to `next` (or `204` without it), with the cookies.
pub fn answer<B>(
    route: &Route,
    verified: &Verified,
    request: &Request<B>,
    scope: &CookieScope,
    now: SystemTime,
) -> Result<Response<ProxyBody>, Error> {
    let (Some(grant), Caller::Client(client)) = (&verified.grant, &verified.caller) else {
        return Err(not_a_session());
    };
    if !grant.in_query {
        return Err(not_a_session());
    }
    let next = next_location(request.uri().query().unwrap_or(""))?;
    let max_age = grant.policy.remaining(now).as_secs();
    let mut response = Response::new(body::empty());
    *response.status_mut() = match next {
        Some(_) => StatusCode::SEE_OTHER,
        None => StatusCode::NO_CONTENT,
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (POLICY, grant.presented.policy.as_str()),
        (SIGNATURE, grant.presented.signature.as_str()),
        (KEY_ID, client.access_key_id.as_str()),
    ] {
        headers.append(header::SET_COOKIE, cookie(name, value, scope, max_age)?);
    }
    if let Some(next) = next {
        headers.insert(header::LOCATION, header_value(next.as_str())?);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    tracing::debug!(bucket = %route.name, max_age, "session cookies set");
    Ok(response)
}

fn not_a_session() -> Error {
    Error::AccessDenied {
        reason: format!(
            "`{}` takes a signed policy in the {POLICY}, {SIGNATURE} and {KEY_ID} query \
             parameters",
            crate::s3::route::SESSION_KEY
        ),
    }
}

/// One `Set-Cookie` value. `value` is base64url, hex or an issued key id: none needs quoting.
fn cookie(
    name: &str,
    value: &str,
    scope: &CookieScope,
    max_age: u64,
) -> Result<HeaderValue, Error> {
    // `SameSite=None` cookies are dropped by browsers unless `Secure`.
    let secure = scope.secure || scope.same_site == SameSite::None;
    let text = format!(
        "{name}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite={}{}",
        scope.path,
        scope.same_site.as_str(),
        if secure { "; Secure" } else { "" }
    );
    header_value(&text)
}

fn header_value(text: &str) -> Result<HeaderValue, Error> {
    HeaderValue::from_str(text).map_err(|error| Error::Internal {
        detail: format!("a session header is not a header value: {error}"),
    })
}

/// The `next` query parameter: a path on this origin (`/…`, never `//host` or `/\host`,
/// which browsers read as another origin), parsed and written anew.
fn next_location(query: &str) -> Result<Option<PathAndQuery>, Error> {
    let pairs = crate::s3::sigv4::parse_query(query)?;
    let Some((_, next)) = pairs.iter().find(|(name, _)| name == "next") else {
        return Ok(None);
    };
    let refused = |why: &str| Error::InvalidArgument {
        reason: format!("`next` {why}"),
    };
    if !next.starts_with('/') {
        return Err(refused("must be a path on this origin, starting with `/`"));
    }
    if next[1..].starts_with(['/', '\\']) || next.contains('\\') {
        return Err(refused("must not name another host (`//` or `\\`)"));
    }
    let parsed: PathAndQuery = next
        .parse()
        .map_err(|_| refused("is not a valid path and query"))?;
    Ok(Some(parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_a_path_on_this_origin() {
        let ok = next_location("next=%2Facme%2Fgallery%2Findex.html%3Fpage%3D2").expect("ok");
        assert_eq!(
            ok.map(|p| p.to_string()).as_deref(),
            Some("/acme/gallery/index.html?page=2")
        );
        assert_eq!(next_location("a=b").expect("ok"), None);
        for bad in [
            "next=https%3A%2F%2Fevil.example%2F",
            "next=%2F%2Fevil.example%2F",
            "next=%2F%5Cevil.example",
            "next=%2Fa%5Cb",
            "next=evil",
            "next=%2Fa%0D%0ASet-Cookie%3A%20x%3Dy",
        ] {
            assert!(next_location(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn cookies_are_http_only_scoped_and_secure_unless_loopback_http() {
        let scope = CookieScope {
            path: "/acme/".to_string(),
            secure: false,
            same_site: SameSite::Lax,
        };
        let value = cookie(POLICY, "eyJy", &scope, 60).expect("a value");
        assert_eq!(
            value,
            "S3SP-Policy=eyJy; Path=/acme/; Max-Age=60; HttpOnly; SameSite=Lax"
        );
        let none = CookieScope {
            same_site: SameSite::None,
            ..scope
        };
        let value = cookie(KEY_ID, "AK", &none, 60).expect("a value");
        assert!(
            value
                .to_str()
                .expect("text")
                .ends_with("SameSite=None; Secure")
        );
    }
}
