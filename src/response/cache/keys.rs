//! What the object cache keeps and how it names it: an entry's key (the integration's identity
//! and the object upstream, and which piece of it), the entry itself, the fetches under way,
//! and the answers an entry makes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use tokio::sync::watch;

use crate::config::{Clock, CredentialSource, Endpoint, Integration};
use crate::s3::body::{self, ProxyBody};

const CACHE_STATUS: &str = "cache-status";

/// Which piece of an object an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Piece {
    /// The whole object, as a 200 brought it.
    Whole,
    /// What ranged answers said about the object (its size and headers), without a body.
    Head,
    /// The `n`th aligned chunk of the object (`[server.cache] chunk` bytes; the last may be
    /// shorter).
    Chunk(u64),
}

/// How an integration obtains credentials and where its store is: two integrations (or two
/// versions of one) that differ in either never share an entry.
pub type Identity = Arc<(CredentialSource, Option<Endpoint>)>;

/// Where an entry comes from: the integration's identity and the object upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub(super) integration: String,
    /// How the integration obtains credentials and where its store is.
    pub(super) identity: Identity,
    pub(super) bucket: String,
    pub(super) key: String,
    pub(super) piece: Piece,
}

impl Key {
    /// The entry of `key` in `bucket`, as `integration` reaches it.
    pub fn new(integration: &Integration, bucket: &str, key: &str) -> Key {
        Key {
            integration: integration.name.clone(),
            identity: Arc::new((
                integration.credentials.clone(),
                integration.endpoint.clone(),
            )),
            bucket: bucket.to_string(),
            key: key.to_string(),
            piece: Piece::Whole,
        }
    }

    /// The same object's `piece`.
    pub fn piece(&self, piece: Piece) -> Key {
        Key {
            piece,
            ..self.clone()
        }
    }
}

/// A kept answer: the store's headers as the response phase made them (without
/// `Content-Range` for pieces of ranged answers), a body, and when it was checked.
pub struct Entry {
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
    /// The object's size (a whole entry's is its body's).
    pub(super) total: u64,
    pub(super) checked: Instant,
    pub(super) ttl: Duration,
    /// The proxy's clock, which `checked` was read from.
    pub(super) clock: Clock,
}

impl Entry {
    pub(super) fn fresh(&self) -> bool {
        self.age() < self.ttl
    }

    /// How long since the store last confirmed it.
    pub(super) fn age(&self) -> Duration {
        self.clock.instant().saturating_duration_since(self.checked)
    }

    /// Its ETag, which a revalidation sends as `If-None-Match`.
    pub fn etag(&self) -> Option<&HeaderValue> {
        self.headers.get(header::ETAG)
    }

    /// How much it weighs in the cache's budget.
    pub(super) fn weight(&self) -> u32 {
        let size = self.body.len() + 64 * self.headers.len() + 256;
        u32::try_from(size).unwrap_or(u32::MAX)
    }
}

/// The objects being fetched now, each with a channel that closes when its fetch ends.
#[derive(Default, Clone)]
pub struct Filling(Arc<Mutex<HashMap<Key, watch::Receiver<()>>>>);

impl Filling {
    /// The guard of a new fetch of `key`, or the channel of the one under way.
    pub fn claim(&self, key: &Key) -> Result<FillGuard, watch::Receiver<()>> {
        let Ok(mut filling) = self.0.lock() else {
            return Err(watch::channel(()).1);
        };
        if let Some(done) = filling.get(key)
            && done.has_changed().is_ok()
        {
            return Err(done.clone());
        }
        let (sender, done) = watch::channel(());
        filling.insert(key.clone(), done);
        Ok(FillGuard {
            filling: self.clone(),
            key: key.clone(),
            _sender: sender,
        })
    }
}

/// A fetch under way: while it lives, other misses for the object wait; dropped (the entry kept,
/// or the fetch failed or was not keepable), they look again.
pub struct FillGuard {
    filling: Filling,
    key: Key,
    _sender: watch::Sender<()>,
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        if let Ok(mut filling) = self.filling.0.lock() {
            filling.remove(&self.key);
        }
    }
}

/// Whether an `If-Range` validator names `entry`'s version: its strong ETag, or exactly its
/// `Last-Modified` (RFC 9110 13.1.5). When it does not, the range is not served.
pub fn if_range_holds(entry: &Entry, value: &HeaderValue) -> bool {
    let named = value.as_bytes();
    if named.starts_with(b"\"") {
        return entry.etag().is_some_and(|etag| etag.as_bytes() == named);
    }
    let since = value
        .to_str()
        .ok()
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let modified = (entry.headers.get(header::LAST_MODIFIED))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    since.is_some() && since == modified
}

/// Whether the client's validators say its copy is current: `If-None-Match` against the
/// entry's ETag, else `If-Modified-Since` against its `Last-Modified` (RFC 9110 13.2.2).
/// `None` when a validator cannot be read.
pub fn not_modified(entry: &Entry, headers: &HeaderMap) -> Option<bool> {
    if let Some(wanted) = headers.get(header::IF_NONE_MATCH) {
        let etag = entry.etag().and_then(|e| e.to_str().ok());
        return Some(wanted.to_str().ok()?.split(',').any(|tag| {
            let tag = tag.trim();
            tag == "*" || Some(tag.trim_start_matches("W/")) == etag
        }));
    }
    let Some(since) = headers.get(header::IF_MODIFIED_SINCE) else {
        return Some(false);
    };
    let since = httpdate::parse_http_date(since.to_str().ok()?).ok()?;
    let modified = entry.headers.get(header::LAST_MODIFIED)?.to_str().ok()?;
    Some(httpdate::parse_http_date(modified).ok()? <= since)
}

/// `304 Not Modified` for `entry`, with its validators.
pub fn unchanged(entry: &Entry) -> Response<ProxyBody> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    for name in [header::ETAG, header::LAST_MODIFIED] {
        if let Some(value) = entry.headers.get(&name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

/// An answer made from `entry`'s headers with `body`, and its age.
pub fn answer(entry: &Entry, status: StatusCode, body: ProxyBody) -> Response<ProxyBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = entry.headers.clone();
    let age = entry.age().as_secs();
    response
        .headers_mut()
        .insert(header::AGE, HeaderValue::from(age));
    response
}

/// `response` with `length` bytes of `Content-Range: bytes first-…/total`.
pub fn ranged(
    mut response: Response<ProxyBody>,
    (first, length): (u64, u64),
    total: u64,
) -> Response<ProxyBody> {
    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    let last = first + length.saturating_sub(1);
    if let Ok(value) = HeaderValue::from_str(&format!("bytes {first}-{last}/{total}")) {
        headers.insert(header::CONTENT_RANGE, value);
    }
    response
}

/// A response's `Content-Length`, when it announces one.
pub fn content_length(response: &Response<ProxyBody>) -> Option<u64> {
    response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Whether the store's answer says it must not be kept (`Cache-Control: no-store` or
/// `private`).
pub fn forbidden(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|directive| {
            let directive = directive.trim().to_ascii_lowercase();
            directive == "no-store" || directive == "private"
        })
}

/// `response` with its `Cache-Status` (`s3-signing-proxy; DETAIL`).
pub fn with_status(mut response: Response<ProxyBody>, detail: &str) -> Response<ProxyBody> {
    if let Ok(value) = HeaderValue::from_str(&format!("s3-signing-proxy; {detail}")) {
        response.headers_mut().insert(CACHE_STATUS, value);
    }
    response
}

/// A body of several pieces of memory, sent one after another.
pub struct Pieces(pub std::collections::VecDeque<Bytes>);

impl http_body::Body for Pieces {
    type Data = Bytes;
    type Error = body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, body::BoxError>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0.iter().map(|b| b.len() as u64).sum())
    }
}
