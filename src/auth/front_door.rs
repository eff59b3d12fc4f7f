//! The front door: who is calling. Anonymous, or a client holding keys the proxy issued, proven
//! by a SigV4 signature in the `Authorization` header or in a presigned URL's query, by a
//! signed policy in cookies or the query, or by a form upload's policy (`policies`).
//!
//! Verification follows S3: the canonical request is rebuilt from what arrived (the path decoded
//! once and re-encoded strictly, the query sorted, the signed headers trimmed), the signature is
//! recomputed with the client's secret and compared in constant time. Clock skew beyond 15
//! minutes, expired or over-long presigned URLs, unknown keys and wrong signatures each get S3's
//! own error. Only then does `integration` decide where this caller may go; the client's
//! signature is never forwarded (`sign` makes a new one with the integration's credentials).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, Uri, header};

use crate::config::{Access, ClientConfig, Secret};
use crate::s3::chunked::ChunkSigning;
use crate::s3::error::Error;
mod policies;

use crate::auth::sigv2::SignedRequest;
use crate::s3::sigv4::{
    ALGORITHM, Fold, MAX_CLOCK_SKEW, MAX_PRESIGNED_EXPIRY, SigningKey, constant_time_eq,
    parse_amz_date, parse_query, push_header_line, signature, signing_key,
};

/// The payload hash S3 uses for presigned URLs.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// SHA-256 of no bytes.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// A client the proxy issued keys to.
#[derive(Debug)]
pub struct Client {
    /// The key id the client signs with.
    pub access_key_id: String,
    secret_access_key: Secret,
    /// Integrations this client may reach, each wholly (`None`) or one of its buckets.
    pub bindings: Vec<(String, Option<String>)>,
    /// Whether the client may write.
    pub access: Access,
    /// The key this client's signed policies are verified with ([`crate::auth::policy::policy_key`]).
    policy_key: Vec<u8>,
    /// The signing keys last derived from the secret, by scope (`date/region/service/…`): a
    /// key changes once a day per region, and deriving it is four HMACs.
    keys: std::sync::Mutex<Vec<(String, SigningKey)>>,
}

/// Scopes a client's key cache holds (a few regions or services across a day boundary).
const CACHED_SCOPES: usize = 4;

impl Client {
    /// The SigV4 signing key for `scope`, derived once and then taken from the cache.
    fn signing_key(&self, scope: &str) -> SigningKey {
        if let Ok(keys) = self.keys.lock()
            && let Some((_, key)) = keys.iter().find(|(cached, _)| cached == scope)
        {
            return *key;
        }
        let key = signing_key(self.secret_access_key.expose(), scope);
        if let Ok(mut keys) = self.keys.lock() {
            if keys.len() >= CACHED_SCOPES {
                keys.remove(0);
            }
            keys.push((scope.to_string(), key));
        }
        key
    }

    /// Whether this client may reach `bucket` of `integration`.
    pub fn is_bound_to(&self, integration: &str, bucket: &str) -> bool {
        self.bindings.iter().any(|(name, only)| {
            name == integration && only.as_deref().is_none_or(|only| only == bucket)
        })
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No signature: only public integrations answer.
    Anonymous,
    /// A client whose signature verified.
    Client(Arc<Client>),
}

impl Caller {
    /// The access key id, for logs.
    pub fn key_id(&self) -> &str {
        match self {
            Caller::Anonymous => "-",
            Caller::Client(client) => &client.access_key_id,
        }
    }
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    /// No signature was sent.
    Anonymous,
    /// SigV4 in the `Authorization` header.
    Header,
    /// SigV4 in a presigned URL's `X-Amz-*` query parameters: a link a browser may follow.
    Presigned,
    /// A signed policy ([`crate::auth::policy`]) in cookies or query parameters: reads only, of the
    /// keys the policy names.
    Policy,
    /// A form upload's POST policy signature (in the form's fields).
    Form,
}

/// A signed policy that verified, with what the request presented (the session answer writes
/// it back as cookies).
#[derive(Debug, Clone)]
pub struct Grant {
    /// What the policy allows.
    pub policy: crate::auth::policy::Policy,
    /// The encoded policy and its signature, as verified.
    pub presented: crate::auth::policy::Presented,
    /// Whether it came in the query (rather than in cookies).
    pub in_query: bool,
}

/// What the front door verified: who called, how, and which headers the signature covers.
/// Every later decision that depends on the caller or on an `x-amz-*` header reads this.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Who called.
    pub caller: Caller,
    /// How the caller proved it.
    pub authentication: Authentication,
    /// The header names the signature covers (lower case); none for anonymous callers.
    pub signed_headers: Vec<String>,
    /// What a header-signed request's aws-chunked body signatures chain from.
    pub chunk_signing: Option<ChunkSigning>,
    /// The signed policy a [`Authentication::Policy`] caller presented.
    pub grant: Option<Arc<Grant>>,
}

impl Verified {
    fn anonymous() -> Verified {
        Verified {
            caller: Caller::Anonymous,
            authentication: Authentication::Anonymous,
            signed_headers: Vec::new(),
            chunk_signing: None,
            grant: None,
        }
    }

    /// Whether the caller's signature covers its `x-amz-*` headers (an anonymous or policy
    /// caller's are nobody's word, and are dropped).
    pub fn vouches_for_headers(&self) -> bool {
        matches!(
            self.authentication,
            Authentication::Header | Authentication::Presigned
        )
    }

    /// Whether the caller signed this header.
    pub fn signed(&self, name: &str) -> bool {
        self.signed_headers.iter().any(|signed| signed == name)
    }
}

/// The issued keys, by access key id: a persistent map, so a live source's change makes a new
/// table sharing every other client (and its derived signing keys) with the previous one.
#[derive(Debug, Clone)]
pub struct Clients {
    by_key: imbl::HashMap<String, Arc<Client>>,
    /// Clients fetched on demand from a live source (`[source] preload = false`), beside the
    /// table: filled before the request phase runs, read here.
    fetched: Option<moka::sync::Cache<String, Arc<Client>>>,
    /// Whether SigV2 signatures are verified (or refused with S3's 400).
    sigv2: bool,
}

impl Client {
    /// The client an issued key describes.
    pub fn new(config: &ClientConfig) -> Arc<Client> {
        Arc::new(Client {
            access_key_id: config.access_key_id.clone(),
            secret_access_key: config.secret_access_key.clone(),
            bindings: config.bindings.clone(),
            access: config.access,
            policy_key: crate::auth::policy::policy_key(config.secret_access_key.expose()),
            keys: std::sync::Mutex::default(),
        })
    }
}

impl Clients {
    /// The table of clients, by key id.
    pub fn new(clients: &[ClientConfig]) -> Self {
        let by_key = clients
            .iter()
            .map(|c| (c.access_key_id.clone(), Client::new(c)))
            .collect();
        Clients {
            by_key,
            fetched: None,
            sigv2: true,
        }
    }

    /// This table with `changes` applied, each key id to its new client (`None`: removed).
    pub fn changed(&self, changes: &BTreeMap<String, Option<ClientConfig>>) -> Self {
        let mut table = self.clone();
        for (key, client) in changes {
            match client {
                Some(client) => table.by_key.insert(key.clone(), Client::new(client)),
                None => table.by_key.remove(key),
            };
        }
        table
    }

    /// How many clients the table holds (not those fetched on demand).
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether the table holds none.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Clients fetched on demand are found in `fetched` too.
    pub fn with_fetched(self, fetched: Option<moka::sync::Cache<String, Arc<Client>>>) -> Self {
        Clients { fetched, ..self }
    }

    /// The client issued `access_key_id`, if any: the table's, or one fetched on demand.
    pub fn client(&self, access_key_id: &str) -> Option<Arc<Client>> {
        match self.by_key.get(access_key_id) {
            Some(client) => Some(client.clone()),
            None => self.fetched.as_ref()?.get(access_key_id),
        }
    }

    /// The key id a request claims to be signed with, read by the parsers
    /// [`Clients::identify_parsed`] uses (SigV4 header or query, SigV2, a signed policy in the
    /// query or a cookie), without verifying anything: what a source that fetches clients on
    /// demand must fetch before the request is identified. `None` for an anonymous request or
    /// one too malformed to name a key (identifying it refuses it).
    pub fn claimed_key(request: &SignedRequest<'_>, now: SystemTime) -> Option<String> {
        let headers = request.headers;
        if let Some(form) = crate::auth::sigv2::form(headers, request.query) {
            let claim = match form {
                crate::auth::sigv2::Form::Header => crate::auth::sigv2::from_header(request, now),
                crate::auth::sigv2::Form::Query => crate::auth::sigv2::from_query(request, now),
            };
            return claim.ok().map(|claim| claim.access_key_id);
        }
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let value = value.to_str().ok()?;
            let signed = from_header(value, request.method, headers, now).ok()?;
            return Some(signed.access_key_id.to_string());
        }
        if request
            .query
            .iter()
            .any(|(name, _)| name.starts_with("X-Amz-"))
        {
            let signed = from_query(request.query, now).ok()?;
            return Some(signed.access_key_id.to_string());
        }
        let presented = match crate::auth::policy::in_query(request.query).ok()? {
            Some(presented) => presented,
            None => crate::auth::policy::in_cookies(headers).ok()??,
        };
        Some(presented.key_id)
    }

    /// With `false`, SigV2 signatures are refused (`[server] sigv2 = false`).
    pub fn with_sigv2(self, sigv2: bool) -> Self {
        Clients { sigv2, ..self }
    }

    /// Identifies the caller of a request, verifying its signature if it carries one. A signed
    /// request must sign every `x-amz-*` header it carries, as S3 requires: an unsigned one
    /// could turn a presigned upload into a copy, or set a storage class nobody agreed to.
    ///
    /// `virtual_bucket` is the bucket the `Host` named (virtual-host style), which a SigV2
    /// signature covers.
    pub fn identify(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        now: SystemTime,
        virtual_bucket: Option<&str>,
    ) -> Result<Verified, Error> {
        let query = parse_query(uri.query().unwrap_or(""))?;
        let request = SignedRequest {
            method,
            uri,
            headers,
            query: &query,
            virtual_bucket,
        };
        self.identify_parsed(&request, now)
    }

    /// [`Clients::identify`] with the request's query already parsed ([`parse_query`]).
    pub fn identify_parsed(
        &self,
        request: &SignedRequest<'_>,
        now: SystemTime,
    ) -> Result<Verified, Error> {
        let &SignedRequest {
            method,
            uri,
            headers,
            query,
            ..
        } = request;
        let presigned = query.iter().any(|(name, _)| name.starts_with("X-Amz-"));
        let authorization = headers.get(header::AUTHORIZATION);
        let sigv2 = crate::auth::sigv2::form(headers, query);
        let policy_in_query = crate::auth::policy::in_query(query)?;
        let mechanisms = usize::from(authorization.is_some())
            + usize::from(presigned)
            + usize::from(crate::auth::sigv2::in_query(query))
            + usize::from(policy_in_query.is_some());
        if mechanisms > 1 {
            return Err(Error::InvalidArgument {
                reason: "Only one auth mechanism allowed; only the X-Amz-Algorithm query \
                         parameter, Signature query string parameter or the Authorization \
                         header should be specified"
                    .to_string(),
            });
        }
        if let Some(form) = sigv2 {
            return self.identify_v2(form, request, now);
        }
        let (signed, authentication) = match (authorization, presigned) {
            // Cookies are sent with every request to their path, so they count only when the
            // request carries no signature of its own.
            (None, false) => match policy_in_query {
                Some(presented) => return self.identify_policy(presented, true, now),
                None => match crate::auth::policy::in_cookies(headers)? {
                    Some(presented) => return self.identify_policy(presented, false, now),
                    None => return Ok(Verified::anonymous()),
                },
            },
            (Some(_), true) => unreachable!("refused above as two mechanisms"),
            (Some(value), false) => {
                let value = value.to_str().map_err(|_| malformed("is not ASCII"))?;
                (
                    from_header(value, method, headers, now)?,
                    Authentication::Header,
                )
            }
            (None, true) => (from_query(query, now)?, Authentication::Presigned),
        };
        check_amz_headers_signed(headers, signed.signed_headers)?;
        let client = self
            .client(signed.access_key_id)
            .ok_or(Error::InvalidAccessKeyId)?;
        let canonical = claimed_canonical_request(&signed, method, uri, query, headers)?;
        let signing_key = client.signing_key(signed.scope);
        let expected = signature(&signing_key, signed.time_text, signed.scope, &canonical);
        if !constant_time_eq(expected.as_bytes(), signed.signature.as_bytes()) {
            return Err(Error::SignatureDoesNotMatch);
        }
        let chunk_signing = (authentication == Authentication::Header).then(|| ChunkSigning {
            signing_key,
            time_text: signed.time_text.to_string(),
            scope: signed.scope.to_string(),
            seed_signature: signed.signature.to_string(),
        });
        Ok(Verified {
            caller: Caller::Client(client.clone()),
            authentication,
            signed_headers: signed.signed_headers.names().map(str::to_string).collect(),
            chunk_signing,
            grant: None,
        })
    }
}

/// What the front door computed to verify a SigV4 signature, for `explain`: enough to compare
/// with what the client computed, and nothing a signature could be made from.
#[derive(Debug, Clone)]
pub struct SignatureView {
    /// The key id the signature claims.
    pub access_key_id: String,
    /// `date/region/service/aws4_request`.
    pub scope: String,
    /// The canonical request as the proxy builds it from the request it received.
    pub canonical_request: String,
    /// The string to sign built from it.
    pub string_to_sign: String,
}

impl Clients {
    /// The secret of an issued key, for `explain --client` to sign a request as that client.
    pub(crate) fn secret_of(&self, access_key_id: &str) -> Option<String> {
        let client = self.client(access_key_id)?;
        Some(client.secret_access_key.expose().to_string())
    }

    /// The canonical request and string to sign the proxy computes for a SigV4-signed request
    /// (`None` for other requests, or one too malformed to get that far).
    pub(crate) fn signature_view(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Option<SignatureView> {
        let query = parse_query(uri.query().unwrap_or("")).ok()?;
        let signed = match headers.get(header::AUTHORIZATION) {
            Some(value) => from_header(value.to_str().ok()?, method, headers, now).ok()?,
            None => from_query(&query, now).ok()?,
        };
        let canonical_request =
            claimed_canonical_request(&signed, method, uri, &query, headers).ok()?;
        let string_to_sign =
            crate::s3::sigv4::string_to_sign(signed.time_text, signed.scope, &canonical_request);
        Some(SignatureView {
            access_key_id: signed.access_key_id.to_string(),
            scope: signed.scope.to_string(),
            canonical_request,
            string_to_sign,
        })
    }
}

impl Clients {
    /// Verifies a SigV2 signature: the same key table, bindings and constant-time comparison
    /// as SigV4, and every `x-amz-*` header signed by construction.
    fn identify_v2(
        &self,
        form: crate::auth::sigv2::Form,
        request: &SignedRequest<'_>,
        now: SystemTime,
    ) -> Result<Verified, Error> {
        if !self.sigv2 {
            return Err(Error::SignatureVersionNotSupported);
        }
        let (claim, authentication) = match form {
            crate::auth::sigv2::Form::Header => (
                crate::auth::sigv2::from_header(request, now)?,
                Authentication::Header,
            ),
            crate::auth::sigv2::Form::Query => (
                crate::auth::sigv2::from_query(request, now)?,
                Authentication::Presigned,
            ),
        };
        let client = self
            .client(&claim.access_key_id)
            .ok_or(Error::InvalidAccessKeyId)?;
        let expected =
            crate::auth::sigv2::signature(client.secret_access_key.expose(), &claim.string_to_sign);
        if !constant_time_eq(expected.as_bytes(), claim.signature.as_bytes()) {
            return Err(Error::SignatureDoesNotMatch);
        }
        let mut signed_headers: Vec<String> = request
            .headers
            .keys()
            .map(|name| name.as_str().to_string())
            .filter(|name| {
                name.starts_with("x-amz-") || name == "content-md5" || name == "content-type"
            })
            .collect();
        signed_headers.sort_unstable();
        signed_headers.dedup();
        Ok(Verified {
            caller: Caller::Client(client.clone()),
            authentication,
            signed_headers,
            chunk_signing: None,
            grant: None,
        })
    }
}

/// The canonical request of `method uri` over the headers and payload hash a signature claims.
fn claimed_canonical_request(
    signed: &SignedParts,
    method: &Method,
    uri: &Uri,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Result<String, Error> {
    canonical_request(
        method.as_str(),
        uri.path(),
        query,
        signed.signed_headers,
        headers,
        uri,
        signed.payload_hash,
    )
}

/// S3's rule: every `x-amz-*` header of a signed request is covered by its signature.
fn check_amz_headers_signed(
    headers: &HeaderMap,
    signed_headers: SignedHeaders<'_>,
) -> Result<(), Error> {
    let unsigned: Vec<&str> = headers
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|name| name.starts_with("x-amz-") && !signed_headers.names().any(|s| s == *name))
        .collect();
    if unsigned.is_empty() {
        return Ok(());
    }
    Err(Error::AccessDenied {
        reason: format!(
            "There were headers present in the request which were not signed: {}",
            unsigned.join(", ")
        ),
    })
}

/// What a signature claims, from the header or the query, borrowed from the request.
struct SignedParts<'a> {
    access_key_id: &'a str,
    /// `date/region/service/aws4_request`
    scope: &'a str,
    time_text: &'a str,
    signed_headers: SignedHeaders<'a>,
    signature: &'a str,
    payload_hash: &'a str,
}

/// The header names a signature covers, as it lists them (`host;x-amz-date`): checked to be
/// lower-case names that include `host` ([`SignedHeaders::parse`]).
#[derive(Clone, Copy)]
struct SignedHeaders<'a>(&'a str);

impl<'a> SignedHeaders<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let names = SignedHeaders(text);
        let well_formed = names.names().all(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
        (well_formed && names.names().any(|n| n == "host")).then_some(names)
    }

    fn names(self) -> impl Iterator<Item = &'a str> {
        self.0.split(';')
    }
}

fn malformed(why: &str) -> Error {
    Error::AuthorizationHeaderMalformed {
        reason: format!("The authorization header {why}"),
    }
}

fn from_header<'a>(
    value: &'a str,
    method: &Method,
    headers: &'a HeaderMap,
    now: SystemTime,
) -> Result<SignedParts<'a>, Error> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| Error::InvalidArgument {
            reason: "Only AWS4-HMAC-SHA256 signatures are accepted".to_string(),
        })?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        match part.split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => return Err(malformed("is malformed")),
        }
    }
    let (credential, signed_headers, signature) = match (credential, signed_headers, signature) {
        (Some(c), Some(h), Some(s)) => (c, h, s),
        _ => return Err(malformed("lacks Credential, SignedHeaders or Signature")),
    };
    let time_text = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::AccessDenied {
            reason: "AWS authentication requires a valid x-amz-date header".to_string(),
        })?;
    let time = parse_amz_date(time_text).ok_or_else(|| Error::AccessDenied {
        reason: "AWS authentication requires a valid x-amz-date header".to_string(),
    })?;
    check_skew(time, now)?;
    let (access_key_id, scope) = parse_credential(credential, time_text, malformed)?;
    let signed_headers =
        SignedHeaders::parse(signed_headers).ok_or_else(|| malformed("has bad SignedHeaders"))?;
    let payload_hash = match crate::s3::sigv4::ContentSha256::of(headers) {
        crate::s3::sigv4::ContentSha256::NotText => {
            return Err(malformed("has a non-ASCII x-amz-content-sha256"));
        }
        sent @ (crate::s3::sigv4::ContentSha256::Unsigned
        | crate::s3::sigv4::ContentSha256::Sha256(_)
        | crate::s3::sigv4::ContentSha256::Streaming(_)
        | crate::s3::sigv4::ContentSha256::Other(_)) => {
            if !signed_headers.names().any(|h| h == "x-amz-content-sha256") {
                return Err(malformed("must sign x-amz-content-sha256"));
            }
            sent.text().unwrap_or_default()
        }
        // Generic SigV4 signers (curl before 8) hash the empty body and send no header; that
        // is only true of requests without one.
        crate::s3::sigv4::ContentSha256::Absent
            if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) =>
        {
            EMPTY_SHA256
        }
        crate::s3::sigv4::ContentSha256::Absent => {
            return Err(Error::InvalidRequest {
                reason: "Missing required header for this request: x-amz-content-sha256"
                    .to_string(),
            });
        }
    };
    Ok(SignedParts {
        access_key_id,
        scope,
        time_text,
        signed_headers,
        signature,
        payload_hash,
    })
}

fn from_query(query: &[(String, String)], now: SystemTime) -> Result<SignedParts<'_>, Error> {
    let bad = |why: &str| Error::AuthorizationQueryParametersError {
        reason: format!("Query-string authentication {why}"),
    };
    let [
        algorithm,
        credential,
        time_text,
        expires,
        signed_headers,
        signature,
    ] = presigned_parameters(query);
    if algorithm != Some(ALGORITHM) {
        return Err(bad("requires X-Amz-Algorithm=AWS4-HMAC-SHA256"));
    }
    let (Some(credential), Some(time_text), Some(expires), Some(signed_headers), Some(signature)) =
        (credential, time_text, expires, signed_headers, signature)
    else {
        return Err(bad(
            "requires X-Amz-Credential, X-Amz-Date, X-Amz-Expires, X-Amz-SignedHeaders and X-Amz-Signature",
        ));
    };
    let time = parse_amz_date(time_text).ok_or_else(|| bad("has a malformed X-Amz-Date"))?;
    let expires: u64 = expires
        .parse()
        .ok()
        .filter(|e| *e >= 1)
        .ok_or_else(|| bad("needs X-Amz-Expires to be a positive number of seconds"))?;
    if expires > MAX_PRESIGNED_EXPIRY {
        return Err(bad(
            "X-Amz-Expires must be less than a week (604800 seconds)",
        ));
    }
    if time > now + MAX_CLOCK_SKEW {
        return Err(Error::AccessDenied {
            reason: "Request is not valid yet".to_string(),
        });
    }
    if now > time + Duration::from_secs(expires) {
        return Err(Error::AccessDenied {
            reason: "Request has expired".to_string(),
        });
    }
    let (access_key_id, scope) = parse_credential(credential, time_text, |why| bad(why))?;
    let signed_headers =
        SignedHeaders::parse(signed_headers).ok_or_else(|| bad("has bad X-Amz-SignedHeaders"))?;
    Ok(SignedParts {
        access_key_id,
        scope,
        time_text,
        signed_headers,
        signature,
        payload_hash: UNSIGNED_PAYLOAD,
    })
}

/// The value of the first of each of a presigned URL's signature parameters, in the order
/// [`from_query`] reads them (algorithm, credential, date, expiry, signed headers, signature),
/// from one pass over the query.
fn presigned_parameters(query: &[(String, String)]) -> [Option<&str>; 6] {
    let mut found = [None; 6];
    for (name, value) in query {
        let at = match name.strip_prefix("X-Amz-") {
            Some("Algorithm") => 0,
            Some("Credential") => 1,
            Some("Date") => 2,
            Some("Expires") => 3,
            Some("SignedHeaders") => 4,
            Some("Signature") => 5,
            _ => continue,
        };
        if let Some(slot @ None) = found.get_mut(at) {
            *slot = Some(value.as_str());
        }
    }
    found
}

fn check_skew(time: SystemTime, now: SystemTime) -> Result<(), Error> {
    let skew = match now.duration_since(time) {
        Ok(behind) => behind,
        Err(ahead) => ahead.duration(),
    };
    if skew > MAX_CLOCK_SKEW {
        return Err(Error::RequestTimeTooSkewed);
    }
    Ok(())
}

/// `AKID/20150830/us-east-1/s3/aws4_request` → (key id, scope). Any region is accepted (the
/// proxy serves every region); the service must be `s3` and the date that of the request.
fn parse_credential<'a>(
    credential: &'a str,
    time_text: &str,
    error: impl Fn(&str) -> Error,
) -> Result<(&'a str, &'a str), Error> {
    let mut parts = credential.splitn(2, '/');
    let access_key_id = parts.next().unwrap_or_default();
    let scope = parts.next().unwrap_or_default();
    let mut fields = scope.splitn(5, '/');
    let fields = [(); 5].map(|()| fields.next());
    match fields {
        [
            Some(date),
            Some(region),
            Some("s3"),
            Some("aws4_request"),
            None,
        ] if time_text.starts_with(date) && date.len() == 8 && !region.is_empty() => {}
        [Some(_), Some(_), Some("s3"), Some("aws4_request"), None] => {
            return Err(error(
                "has a credential date that is not the request's date",
            ));
        }
        _ => {
            return Err(error(
                "has a credential scope that is not date/region/s3/aws4_request",
            ));
        }
    }
    if access_key_id.is_empty() {
        return Err(error("has no access key id"));
    }
    Ok((access_key_id, scope))
}

/// S3's canonical request: method, path (decoded once, re-encoded strictly), sorted query
/// without the signature, the signed headers' trimmed values, their names, the payload hash.
fn canonical_request(
    method: &str,
    raw_path: &str,
    query: &[(String, String)],
    signed_headers: SignedHeaders<'_>,
    headers: &HeaderMap,
    uri: &Uri,
    payload_hash: &str,
) -> Result<String, Error> {
    let mut out = canonical_target(method, raw_path, uri.query().unwrap_or(""), query);
    for name in signed_headers.names() {
        if name == "host" && !headers.contains_key(header::HOST) {
            // HTTP/2 carries the host as the :authority pseudo-header.
            let authority = uri.authority().ok_or(Error::SignatureDoesNotMatch)?;
            push_header_line(&mut out, name, [authority.as_str()], Fold::Whitespace);
            continue;
        }
        let values = headers.get_all(name);
        if values.iter().next().is_none() {
            return Err(Error::SignatureDoesNotMatch);
        }
        let texts = values
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()));
        push_header_line(&mut out, name, texts, Fold::Whitespace);
    }
    crate::s3::sigv4::finish_canonical_request(&mut out, signed_headers.0, payload_hash);
    Ok(out)
}

/// A canonical request's first three lines: the method, the path and the query (`query` is
/// `raw_query` decoded), each encoded as SigV4 does. What the client sent already in that form
/// (what SDKs send) is used as it came; anything else is decoded and encoded again.
fn canonical_target(
    method: &str,
    raw_path: &str,
    raw_query: &str,
    query: &[(String, String)],
) -> String {
    let canonical_path = if crate::s3::sigv4::is_canonical(raw_path, true) {
        Cow::Borrowed(raw_path)
    } else {
        let path_bytes: Vec<u8> = percent_encoding::percent_decode_str(raw_path).collect();
        Cow::Owned(crate::s3::sigv4::encode_path(&path_bytes))
    };
    let signed = |name: &str| name != "X-Amz-Signature";
    if let Some(mut pairs) = crate::s3::sigv4::canonical_raw_pairs(raw_query) {
        pairs.retain(|(name, _)| signed(name));
        return crate::s3::sigv4::start_canonical_request(method, &canonical_path, pairs);
    }
    let pairs = query
        .iter()
        .filter(|(name, _)| signed(name))
        .map(|(name, value)| {
            (
                crate::s3::sigv4::encode_query(name),
                crate::s3::sigv4::encode_query(value),
            )
        })
        .collect();
    crate::s3::sigv4::start_canonical_request(method, &canonical_path, pairs)
}

#[cfg(test)]
mod tests;
