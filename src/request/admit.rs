//! The request phase: everything decided from the request alone, before any credentials are
//! fetched or the store is contacted.
//!
//! In order: the target's length and the request's shape ([`crate::request::shape`]), the route
//! ([`crate::s3::route`]), the caller ([`crate::auth::front_door`]), the rate limit, the integration and
//! whether the caller may go there ([`crate::request::integration`]), and the header checks that depend
//! on the integration. The outcome is an [`Admitted`] request for the upstream phase, or an
//! answer the proxy gives itself (a preflight, ListBuckets, CreateBucket, HeadBucket).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use http::{Request, Response, header};

use crate::auth::front_door::{Authentication, Caller, Verified};
use crate::auth::sigv2::SignedRequest;
use crate::config::Integration;
use crate::net::limits::{CallerKey, RateLimiter};
use crate::net::peer::{Peer, browser_used_https};
use crate::observe::access::Seen;
use crate::observe::metrics::Metrics;
use crate::request::integration::Target;
use crate::request::steps::{Head, Observer, Step, observed};
use crate::request::tenants::Tenants;
use crate::request::{cors, session};
use crate::s3::body::ProxyBody;
use crate::s3::error::Error;
use crate::s3::route::{Operation, Route, route_parsed};
use crate::s3::sigv4::parse_query;

/// A request the proxy will send on: what it asks, who asks, and where it goes.
pub struct Admitted<B> {
    pub route: Route,
    pub verified: Verified,
    /// The integration (its region not yet resolved for `region = "auto"`), real bucket and key.
    pub target: Target,
    /// The client's request; an anonymous caller's `x-amz-*` headers are gone.
    pub request: Request<B>,
}

/// What the request phase decided.
pub enum Admission<B> {
    /// The proxy answers itself; the store is never contacted.
    Answered(Response<ProxyBody>),
    /// A form upload: its caller and object are in its body, read by the form module.
    Form(Box<(Route, Request<B>)>),
    Forward(Box<Admitted<B>>),
}

/// Who an answer is for, decided by the request phase and read when the answer's headers are
/// finished (the access line's record, `Seen`, is only what the log says).
#[derive(Default)]
pub struct Audience {
    /// The integration whose CORS rules the answer carries: known from the route, so that a
    /// refusal carries them too.
    pub cors: Option<Arc<Integration>>,
    /// The answer is for one browser's cookies (a signed policy): no shared cache may keep it.
    pub private: bool,
}

/// What the request phase needs from the proxy besides the tenants: the rate limit, the
/// metrics it counts refusals in, and the process start (ListBuckets' creation date).
pub struct Gate<'a> {
    pub rate_limiter: &'a RateLimiter,
    pub metrics: &'a Metrics,
    pub started: SystemTime,
}

/// Runs the request phase. `seen` collects what the log line says, `audience` who the answer
/// is for (set as soon as it is known, so a refusal carries it too). `observer` is told each
/// step's decision (`()` on the hot path; `explain`'s recorder).
pub fn admit<B, O: Observer>(
    tenants: &Tenants,
    mut request: Request<B>,
    peer: Peer,
    gate: &Gate<'_>,
    (seen, audience): (&mut Seen, &mut Audience),
    observer: &mut O,
) -> Result<Admission<B>, Error> {
    observed(observer, Step::Shape, check_shape(tenants, &request))?;
    let Routed {
        mut route,
        virtual_bucket,
        query,
    } = observed(observer, Step::Route, route_request(tenants, &request))?;
    observer.routed(&route);
    seen.bucket = Some(route.name.clone());
    audience.cors = tenants.integrations.integration(&route.name);
    if route.operation == Operation::Preflight {
        let integration = audience.cors.as_ref().ok_or_else(|| Error::NoSuchBucket {
            name: route.name.clone(),
        });
        let answer = integration.and_then(|i| cors::preflight(i, request.headers()));
        let answer = observed(observer, Step::Preflight, answer)?;
        observer.answered(Step::Preflight);
        return Ok(Admission::Answered(answer));
    }
    if route.operation == Operation::PostObject {
        // Who posts is proven by the form's fields; until then, the caller's address.
        let rate = check_rate(tenants, &Caller::Anonymous, peer.client, gate);
        observed(observer, Step::Rate, rate)?;
        observer.answered(Step::Form);
        return Ok(Admission::Form(Box::new((route, request))));
    }

    let verified = identify(
        tenants,
        &mut request,
        (&query, virtual_bucket.as_deref()),
        observer,
    )?;
    let grant = check_grant(&verified, &route, peer.client);
    observed(observer, Step::Policy, grant)?;
    audience.private = verified.authentication == Authentication::Policy;
    route.operation = route
        .operation
        .with_copy_source(verified.signed("x-amz-copy-source"));
    seen.client = Some(verified.caller.key_id().to_string());
    let rate = check_rate(tenants, &verified.caller, peer.client, gate);
    observed(observer, Step::Rate, rate)?;
    let service = answer_for_the_service(tenants, &route, &verified, gate);
    if let Some(answer) = observed(observer, Step::Service, service)? {
        observer.answered(Step::Service);
        return Ok(Admission::Answered(answer));
    }

    let target = tenants.integrations.resolve(&route, &verified.caller);
    let target = observed(observer, Step::Integration, target)?;
    observer.resolved(&route, &verified, &target);
    seen.integration = Some(target.integration.name.clone());
    if let Some(answer) = observed(observer, Step::Config, answer_from_the_config(&route))? {
        observer.answered(Step::Config);
        return Ok(Admission::Answered(answer));
    }
    if route.operation == Operation::StartSession {
        let virtual_host = virtual_bucket.is_some();
        let answer = start_session(tenants, &route, &verified, &request, &peer, virtual_host);
        let answer = observed(observer, Step::Session, answer)?;
        observer.answered(Step::Session);
        return Ok(Admission::Answered(answer));
    }
    let guard = check_headers(&request, &route, &verified, &target.integration);
    observed(observer, Step::Guard, guard)?;
    observer.passed(Step::Guard);
    Ok(Admission::Forward(Box::new(Admitted {
        route,
        verified,
        target,
        request,
    })))
}

/// The front door: who the caller is. Nobody vouches for an anonymous or policy caller's
/// `x-amz-*` headers: none goes further.
fn identify<B, O: Observer>(
    tenants: &Tenants,
    request: &mut Request<B>,
    (query, virtual_bucket): (&[(String, String)], Option<&str>),
    observer: &mut O,
) -> Result<Verified, Error> {
    let signed = SignedRequest {
        method: request.method(),
        uri: request.uri(),
        headers: request.headers(),
        query,
        virtual_bucket,
    };
    let verified = tenants
        .clients
        .identify_parsed(&signed, tenants.config.clock.now());
    let head = Head {
        method: request.method(),
        uri: request.uri(),
        headers: request.headers(),
    };
    observer.front_door(head, verified.as_ref());
    let verified = verified?;
    if !verified.vouches_for_headers() {
        strip_amz_headers(request.headers_mut());
    }
    Ok(verified)
}

/// A signed policy's session: its cookies, scoped to the name's path (or the whole host, for
/// a virtual-host name), `Secure` when the browser used HTTPS.
fn start_session<B>(
    tenants: &Tenants,
    route: &Route,
    verified: &Verified,
    request: &Request<B>,
    peer: &Peer,
    virtual_host: bool,
) -> Result<Response<ProxyBody>, Error> {
    let scope = session::CookieScope {
        path: if virtual_host {
            "/".to_string()
        } else {
            format!("/{}/", route.name)
        },
        secure: browser_used_https(&tenants.config.server, peer.socket, request.headers()),
        same_site: tenants.config.server.cookie_same_site,
    };
    session::answer(route, verified, request, &scope, tenants.config.clock.now())
}

/// What a signed policy allows: checked against the route, and the caller's address.
pub(crate) fn check_grant(
    verified: &Verified,
    route: &Route,
    client_ip: Option<IpAddr>,
) -> Result<(), Error> {
    match &verified.grant {
        Some(grant) => grant.policy.check_request(route, client_ip),
        None if route.operation == Operation::StartSession => Err(Error::AccessDenied {
            reason: format!(
                "`{}` takes a signed policy in the {}, {} and {} query parameters",
                crate::s3::route::SESSION_KEY,
                crate::auth::policy::POLICY,
                crate::auth::policy::SIGNATURE,
                crate::auth::policy::KEY_ID
            ),
        }),
        None => Ok(()),
    }
}

/// What routing a request found.
pub(crate) struct Routed {
    /// From the absolute-form authority or `Host`, the path and the query.
    pub route: Route,
    /// The bucket a virtual-host request names (which SigV2 signs).
    pub virtual_bucket: Option<String>,
    /// The query, parsed once for the route and the front door alike.
    pub query: Vec<(String, String)>,
}

/// The names a request reaches for, read by the request phase's own steps (the shape, the
/// route, the key the signature claims) and nothing verified: what a source that fetches
/// integrations and clients on demand must have fetched before [`admit`] runs. A request the
/// shape or route refuses names nothing ([`admit`] refuses it the same way).
pub fn named<B>(tenants: &Tenants, request: &Request<B>) -> (Option<String>, Option<String>) {
    if check_shape(tenants, request).is_err() {
        return (None, None);
    }
    let Ok(Routed {
        route,
        virtual_bucket,
        query,
    }) = route_request(tenants, request)
    else {
        return (None, None);
    };
    let signed = SignedRequest {
        method: request.method(),
        uri: request.uri(),
        headers: request.headers(),
        query: &query,
        virtual_bucket: virtual_bucket.as_deref(),
    };
    let now = tenants.config.clock.now();
    let key = crate::auth::front_door::Clients::claimed_key(&signed, now);
    let name = (!route.name.is_empty()).then_some(route.name);
    (name, key)
}

pub(crate) fn route_request<B>(tenants: &Tenants, request: &Request<B>) -> Result<Routed, Error> {
    let query = parse_query(request.uri().query().unwrap_or(""))?;
    let host = request.uri().authority().map(|a| a.as_str()).or_else(|| {
        request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    let base_domain = tenants.config.server.base_domain.as_deref();
    let route = route_parsed(
        request.method(),
        host,
        request.uri().path(),
        &query,
        base_domain,
    )?;
    Ok(Routed {
        route,
        virtual_bucket: crate::s3::route::name_from_host(host, base_domain),
        query,
    })
}

/// ListBuckets, and CreateBucket of a name no integration knows: answered before any
/// integration is chosen.
pub(crate) fn answer_for_the_service(
    tenants: &Tenants,
    route: &Route,
    verified: &Verified,
    gate: &Gate<'_>,
) -> Result<Option<Response<ProxyBody>>, Error> {
    match route.operation {
        Operation::ListBuckets => {
            crate::request::answers::list_buckets(tenants, &verified.caller, gate.started).map(Some)
        }
        Operation::CreateBucket if tenants.integrations.integration(&route.name).is_none() => {
            Err(Error::AccessDenied {
                reason: "buckets are provisioned in the proxy's configuration, not by clients"
                    .to_string(),
            })
        }
        _ => Ok(None),
    }
}

/// What the integration's config answers without the store before its region is known (the
/// rest, HeadBucket and GetBucketLocation, once it is: [`crate::request::answers::after_region`]).
pub(crate) fn answer_from_the_config(route: &Route) -> Result<Option<Response<ProxyBody>>, Error> {
    match route.operation {
        // The caller may write here (`resolve` checked): the bucket is as good as its own.
        Operation::CreateBucket => Err(Error::BucketAlreadyOwnedByYou),
        _ => Ok(None),
    }
}

/// The headers the integration's rules govern: ACLs on writes, type overrides on GETs a
/// browser can reach.
pub(crate) fn check_headers<B>(
    request: &Request<B>,
    route: &Route,
    verified: &Verified,
    integration: &Integration,
) -> Result<(), Error> {
    if route.operation.is_write() {
        crate::request::shape::check_acl_headers(request.headers(), integration)?;
    }
    if route.operation == Operation::GetObject {
        // A link a browser can follow: no header of the caller's own is needed.
        let browser_reachable = matches!(
            verified.authentication,
            Authentication::Anonymous | Authentication::Presigned | Authentication::Policy
        );
        crate::request::shape::check_type_override(&route.query, browser_reachable, integration)?;
    }
    Ok(())
}

/// The request target's length, and the shapes and headers refused whatever the route.
pub(crate) fn check_shape<B>(tenants: &Tenants, request: &Request<B>) -> Result<(), Error> {
    let limits = tenants.limits();
    let target_length = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if target_length > limits.max_uri_bytes {
        return Err(Error::UriTooLong {
            limit: limits.max_uri_bytes,
        });
    }
    if head_length(request) > limits.max_header_bytes {
        return Err(Error::HeadersTooLarge {
            limit: limits.max_header_bytes,
        });
    }
    crate::request::shape::check_request_shape(request)?;
    crate::request::shape::check_request_headers(request.headers())
}

/// The request head's length as HTTP/1 sends it: `METHOD target HTTP/1.1`, then `name: value`
/// per header, each line with its CRLF. (hyper's buffer, which must also hold body chunks, is
/// larger than `max_header_bytes`, so the limit is checked here.)
fn head_length<B>(request: &Request<B>) -> usize {
    let target = request
        .uri()
        .path_and_query()
        .map_or(1, |p| p.as_str().len());
    let request_line = request.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + ": ".len() + value.len() + "\r\n".len())
        .sum();
    request_line + headers + "\r\n".len()
}

/// The rate limit: a client by its key, an anonymous caller by its address.
fn check_rate(
    tenants: &Tenants,
    caller: &Caller,
    client_ip: Option<IpAddr>,
    gate: &Gate<'_>,
) -> Result<(), Error> {
    let Some(limit) = tenants.limits().rate_limit else {
        return Ok(());
    };
    let who = match (caller, client_ip) {
        (Caller::Client(client), _) => gate.rate_limiter.client_key(&client.access_key_id),
        (Caller::Anonymous, Some(address)) => CallerKey::address(address),
        (Caller::Anonymous, None) => gate.rate_limiter.client_key("-"),
    };
    let now = tenants.config.clock.instant();
    gate.rate_limiter.check(who, limit, now).map_err(|wait| {
        gate.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
        Error::SlowDown {
            retry_after_seconds: wait.as_secs().max(1),
        }
    })
}

/// Removes every `x-amz-*` header.
pub(crate) fn strip_amz_headers(headers: &mut http::HeaderMap) {
    let amz: Vec<http::HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-amz-"))
        .cloned()
        .collect();
    for name in amz {
        headers.remove(name);
    }
}

/// The integration of an admitted request, for the phases after.
impl<B> Admitted<B> {
    pub fn integration(&self) -> &Arc<crate::config::Integration> {
        &self.target.integration
    }
}
