//! The object cache (`[server.cache] memory`; an integration opts in with `cache_ttl`): whole
//! objects the store answered 200 to a GET, kept in memory and served again without the store
//! while fresh, then revalidated with `If-None-Match`.
//!
//! It is looked at only after the whole request phase admitted the request (shape, route,
//! front door, binding, policy, jail), so a hit is only ever served to a caller that may fetch
//! the object from the store. An entry's key is the integration's identity (its name, how it
//! obtains credentials, its endpoint) and the real bucket and key: two integrations never
//! share an entry, even over one bucket, and an integration whose role or endpoint changed
//! does not see its former entries. A write through the proxy (PUT, DELETE, copy, completed
//! multipart upload; a form upload or DeleteObjects: all of the integration's entries) drops
//! what it changed at once. The store's `Cache-Control: no-store` or `private` is obeyed.
//!
//! Answers carry RFC 9211's `Cache-Status`: `s3-signing-proxy; hit`, `…; fwd=miss` (fetched,
//! and kept when it fits), `…; fwd=stale` (revalidated), `…; fwd=bypass` (a request the cache
//! does not answer: a range or a condition it cannot answer from what it holds, a version, a
//! `response-*` override).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame};
use tokio::sync::watch;

use crate::config::{CredentialSource, Endpoint, Integration};
use crate::request::integration::Target;
use crate::s3::body::{self, BoxError, ProxyBody};
use crate::s3::route::{Operation, Route};

const CACHE_STATUS: &str = "cache-status";

/// Where an entry comes from: the integration's identity and the object upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    integration: String,
    credentials: CredentialSource,
    endpoint: Option<Endpoint>,
    bucket: String,
    key: String,
}

impl Key {
    /// The entry of `key` in `bucket`, as `integration` reaches it.
    pub fn new(integration: &Integration, bucket: &str, key: &str) -> Key {
        Key {
            integration: integration.name.clone(),
            credentials: integration.credentials.clone(),
            endpoint: integration.endpoint.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
        }
    }
}

/// A kept answer: the store's 200 as the response phase made it, and when it was checked.
pub struct Entry {
    headers: HeaderMap,
    body: Bytes,
    checked: Instant,
    ttl: Duration,
}

impl Entry {
    fn fresh(&self) -> bool {
        self.checked.elapsed() < self.ttl
    }

    /// Its ETag, which a revalidation sends as `If-None-Match`.
    pub fn etag(&self) -> Option<&HeaderValue> {
        self.headers.get(header::ETAG)
    }
}

/// What the cache says about an admitted request.
pub enum Lookup {
    /// Answered from a fresh entry.
    Hit(Response<ProxyBody>),
    /// A stale entry: ask the store with `If-None-Match` first.
    Revalidate(Key, Arc<Entry>),
    /// Nothing kept: fetch, and keep the answer if it fits (other misses for the object wait
    /// while the guard lives).
    Miss(Key, Option<FillGuard>),
    /// Not the cache's to answer: forward as if there were none.
    Bypass,
}

/// What a write through the proxy changed, for the cache to drop: one object, or (a form
/// upload, DeleteObjects: their keys are in their bodies) any of the integration's.
pub struct Write {
    integration: String,
    object: Option<Key>,
}

impl Write {
    /// The write `route` makes at `target`, if it is one: PUT, DELETE, copy and a completed
    /// multipart upload change their key; DeleteObjects changes keys its body names.
    pub fn of(route: &Route, target: &Target) -> Option<Write> {
        let object = match route.operation {
            Operation::PutObject
            | Operation::DeleteObject
            | Operation::CopyObject
            | Operation::CompleteMultipartUpload => {
                Some(Key::new(&target.integration, &target.bucket, &target.key))
            }
            Operation::DeleteObjects => None,
            _ => return None,
        };
        Some(Write {
            integration: target.integration.name.clone(),
            object,
        })
    }

    /// A write to objects of `integration` the cache cannot name (a form upload).
    pub fn unnamed(integration: &Integration) -> Write {
        Write {
            integration: integration.name.clone(),
            object: None,
        }
    }
}

/// What one look at the cache found: a decision, or a fetch of the object under way.
enum Looked {
    Decided(Box<Lookup>),
    Filling(watch::Receiver<()>),
}

/// How long a miss waits for another request's fetch of the same object before fetching it
/// itself.
pub const FILL_WAIT: Duration = Duration::from_secs(10);

/// The objects being fetched now, each with a channel that closes when its fetch ends.
#[derive(Default, Clone)]
struct Filling(Arc<Mutex<HashMap<Key, watch::Receiver<()>>>>);

impl Filling {
    /// The guard of a new fetch of `key`, or the channel of the one under way.
    fn claim(&self, key: &Key) -> Result<FillGuard, watch::Receiver<()>> {
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

/// Per integration: what the cache did.
#[derive(Default, Clone, Copy)]
pub struct Counts {
    pub hits: u64,
    pub misses: u64,
    pub revalidations: u64,
    /// Body bytes served from entries: the egress saved.
    pub bytes_served: u64,
}

/// The cache: entries weighed by their bodies, at most the configured memory.
pub struct ObjectCache {
    entries: moka::sync::Cache<Key, Arc<Entry>>,
    filling: Filling,
    counts: Mutex<BTreeMap<String, Counts>>,
    evictions: Arc<AtomicU64>,
}

impl ObjectCache {
    /// A cache holding at most `memory` bytes of bodies and headers.
    pub fn new(memory: u64) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        let counted = evictions.clone();
        let entries = moka::sync::Cache::builder()
            .max_capacity(memory)
            .weigher(|_key: &Key, entry: &Arc<Entry>| {
                let size = entry.body.len() + 64 * entry.headers.len() + 256;
                u32::try_from(size).unwrap_or(u32::MAX)
            })
            .eviction_listener(move |_, _, cause| {
                if cause.was_evicted() {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            })
            .support_invalidation_closures()
            .build();
        ObjectCache {
            entries,
            filling: Filling::default(),
            counts: Mutex::default(),
            evictions,
        }
    }

    /// What to do with a request the request phase admitted: `target` is its integration, real
    /// bucket and upstream key. A miss for an object another request is already fetching
    /// waits for that fetch (at most [`FILL_WAIT`]) and is then answered from its entry: any
    /// number of concurrent misses for one object make one request to the store.
    pub async fn lookup(
        &self,
        route: &Route,
        integration: &Integration,
        found: (&str, &str),
        headers: &HeaderMap,
    ) -> Lookup {
        let mut waited = false;
        loop {
            match self.look(route, integration, found, headers, waited) {
                Looked::Decided(lookup) => return *lookup,
                Looked::Filling(mut done) => {
                    let _ = tokio::time::timeout(FILL_WAIT, done.changed()).await;
                    waited = true;
                }
            }
        }
    }

    fn look(
        &self,
        route: &Route,
        integration: &Integration,
        (bucket, key): (&str, &str),
        headers: &HeaderMap,
        waited: bool,
    ) -> Looked {
        if integration.cache.is_none() {
            return Looked::Decided(Box::new(Lookup::Bypass));
        }
        let reads = matches!(
            route.operation,
            Operation::GetObject | Operation::HeadObject
        );
        let conditions = ["if-match", "if-modified-since", "if-unmodified-since"]
            .iter()
            .any(|name| headers.contains_key(*name));
        if !reads || !route.query.is_empty() || conditions {
            return Looked::Decided(Box::new(Lookup::Bypass));
        }
        let key = Key::new(integration, bucket, key);
        let range = headers.get(header::RANGE);
        let plain_get = route.operation == Operation::GetObject
            && range.is_none()
            && !headers.contains_key(header::IF_NONE_MATCH);
        let lookup = match self.entries.get(&key) {
            Some(entry) if entry.fresh() => {
                let head = route.operation == Operation::HeadObject;
                match serve(&entry, head, range, headers.get(header::IF_NONE_MATCH)) {
                    Some(response) => {
                        let sent = if head {
                            0
                        } else {
                            content_length(&response).unwrap_or(0)
                        };
                        self.count(integration, |c| {
                            c.hits += 1;
                            c.bytes_served += sent;
                        });
                        Lookup::Hit(with_status(response, "hit"))
                    }
                    None => Lookup::Bypass,
                }
            }
            Some(entry) if plain_get && entry.etag().is_some() => Lookup::Revalidate(key, entry),
            _ if plain_get => {
                // One fetch per object at a time; after waiting once, a fetch of its own.
                let guard = match self.filling.claim(&key) {
                    Err(done) if !waited => return Looked::Filling(done),
                    Err(_) => None,
                    Ok(guard) => Some(guard),
                };
                self.count(integration, |c| c.misses += 1);
                Lookup::Miss(key, guard)
            }
            _ => Lookup::Bypass,
        };
        Looked::Decided(Box::new(lookup))
    }

    /// The store answered a revalidation `304 Not Modified`: the entry is fresh again, and
    /// answers the request.
    pub fn refreshed(
        &self,
        integration: &Integration,
        key: Key,
        entry: &Entry,
    ) -> Response<ProxyBody> {
        let renewed = Arc::new(Entry {
            headers: entry.headers.clone(),
            body: entry.body.clone(),
            checked: Instant::now(),
            ttl: entry.ttl,
        });
        self.entries.insert(key, renewed.clone());
        let response = answer(&renewed, StatusCode::OK, renewed.body.clone());
        let sent = renewed.body.len() as u64;
        self.count(integration, |c| {
            c.revalidations += 1;
            c.bytes_served += sent;
        });
        with_status(response, "fwd=stale")
    }

    /// The store's answer to a miss or a revalidation that changed: passed on as it streams,
    /// and kept once whole if it is a 200 that fits and may be kept.
    pub fn fill(
        &self,
        integration: &Integration,
        (key, guard): (Key, Option<FillGuard>),
        revalidated: bool,
        response: Response<ProxyBody>,
    ) -> Response<ProxyBody> {
        let detail = if revalidated { "fwd=stale" } else { "fwd=miss" };
        let Some(policy) = integration.cache else {
            return response;
        };
        if !keepable(&response, policy.max_object) {
            if response.status() == StatusCode::NOT_FOUND {
                self.entries.invalidate(&key);
            }
            return with_status(response, detail);
        }
        let length = content_length(&response).unwrap_or(0);
        let (parts, inner) = response.into_parts();
        let tee = Tee {
            inner,
            kept: Some(BytesMut::with_capacity(length as usize)),
            length,
            store: Some(Store {
                cache: self.entries.clone(),
                key,
                headers: parts.headers.clone(),
                ttl: policy.ttl,
                _guard: guard,
            }),
        };
        with_status(
            Response::from_parts(parts, body::stream(tee)),
            &format!("{detail}; stored"),
        )
    }

    /// A write through the proxy happened: what it changed goes.
    pub fn written(&self, write: &Write) {
        match &write.object {
            Some(key) => self.entries.invalidate(key),
            None => self.forget(&write.integration, None),
        }
    }

    /// Drops an integration's entries, or those of one upstream key of it; how many went.
    pub fn purge(&self, integration: &str, key: Option<&str>) -> u64 {
        let matching = self
            .entries
            .iter()
            .filter(|(k, _)| k.integration == integration && key.is_none_or(|key| key == k.key))
            .count() as u64;
        self.forget(integration, key);
        matching
    }

    /// Drops an integration's entries, or those of one upstream key of it.
    fn forget(&self, integration: &str, key: Option<&str>) {
        let (integration, key) = (integration.to_string(), key.map(str::to_string));
        let _ = self.entries.invalidate_entries_if(move |k, _| {
            k.integration == integration && key.as_ref().is_none_or(|key| *key == k.key)
        });
    }

    /// Each integration's counts, the entries' weight and the evictions so far.
    pub fn stats(&self) -> (BTreeMap<String, Counts>, u64, u64) {
        self.entries.run_pending_tasks();
        let counts = self.counts.lock().map(|c| c.clone()).unwrap_or_default();
        (
            counts,
            self.entries.weighted_size(),
            self.evictions.load(Ordering::Relaxed),
        )
    }

    fn count(&self, integration: &Integration, change: impl FnOnce(&mut Counts)) {
        if let Ok(mut counts) = self.counts.lock() {
            change(counts.entry(integration.name.clone()).or_default());
        }
    }
}

/// Whether the store's answer may be kept: a 200 with its length known and within the limit,
/// and no `Cache-Control: no-store` or `private`.
fn keepable(response: &Response<ProxyBody>, max_object: u64) -> bool {
    let length = content_length(response);
    let forbidden = response
        .headers()
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|directive| {
            let directive = directive.trim().to_ascii_lowercase();
            directive == "no-store" || directive == "private"
        });
    response.status() == StatusCode::OK && length.is_some_and(|l| l <= max_object) && !forbidden
}

/// An entry's answer to a GET or HEAD: whole, a single byte range of it, or 304 when the
/// client's `If-None-Match` names its ETag. `None` when the range is not one the cache serves
/// (several ranges): the store answers it.
fn serve(
    entry: &Entry,
    head: bool,
    range: Option<&HeaderValue>,
    if_none_match: Option<&HeaderValue>,
) -> Option<Response<ProxyBody>> {
    if let (Some(wanted), Some(etag)) = (if_none_match, entry.etag()) {
        let matches = wanted.to_str().ok()?.split(',').any(|tag| {
            tag.trim() == "*"
                || tag.trim().trim_start_matches("W/") == etag.to_str().unwrap_or_default()
        });
        if matches {
            let mut response = Response::new(body::empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response.headers_mut().insert(header::ETAG, etag.clone());
            return Some(response);
        }
    }
    let whole = entry.body.len() as u64;
    let Some(range) = range else {
        let body = if head {
            Bytes::new()
        } else {
            entry.body.clone()
        };
        return Some(answer(entry, StatusCode::OK, body));
    };
    match byte_range(range.to_str().ok()?, whole)? {
        Ok((first, last)) => {
            let body = if head {
                Bytes::new()
            } else {
                entry.body.slice(first as usize..=last as usize)
            };
            let mut response = answer(entry, StatusCode::PARTIAL_CONTENT, body);
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(last - first + 1));
            let content_range = format!("bytes {first}-{last}/{whole}");
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&content_range).ok()?,
            );
            Some(response)
        }
        Err(()) => Some(crate::s3::error::Error::InvalidRange.into_response("", head)),
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against `whole` bytes: the first and last byte, or
/// `Err` when unsatisfiable; `None` for anything else (several ranges), which the store answers.
fn byte_range(text: &str, whole: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = text.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let range = match (first.is_empty(), last.is_empty()) {
        (true, false) => {
            let suffix: u64 = last.parse().ok()?;
            if suffix == 0 || whole == 0 {
                return Some(Err(()));
            }
            (whole.saturating_sub(suffix), whole - 1)
        }
        (false, _) => {
            let first: u64 = first.parse().ok()?;
            let last = if last.is_empty() {
                whole.saturating_sub(1)
            } else {
                last.parse::<u64>().ok()?.min(whole.saturating_sub(1))
            };
            if first >= whole || last < first {
                return Some(Err(()));
            }
            (first, last)
        }
        (true, true) => return None,
    };
    Some(Ok(range))
}

fn answer(entry: &Entry, status: StatusCode, body: Bytes) -> Response<ProxyBody> {
    let length = body.len();
    let mut response = Response::new(body::full(body));
    *response.status_mut() = status;
    *response.headers_mut() = entry.headers.clone();
    let age = entry.checked.elapsed().as_secs();
    response
        .headers_mut()
        .insert(header::AGE, HeaderValue::from(age));
    if status == StatusCode::OK && length as u64 == entry.body.len() as u64 {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    response
}

fn content_length(response: &Response<ProxyBody>) -> Option<u64> {
    response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// `response` with its `Cache-Status` (`s3-signing-proxy; DETAIL`).
pub fn with_status(mut response: Response<ProxyBody>, detail: &str) -> Response<ProxyBody> {
    if let Ok(value) = HeaderValue::from_str(&format!("s3-signing-proxy; {detail}")) {
        response.headers_mut().insert(CACHE_STATUS, value);
    }
    response
}

/// What a [`Tee`] needs to keep the body it saw.
struct Store {
    cache: moka::sync::Cache<Key, Arc<Entry>>,
    key: Key,
    headers: HeaderMap,
    ttl: Duration,
    /// Released once the entry is kept (or the body broke off): the waiting misses look again.
    _guard: Option<FillGuard>,
}

/// A body passed on frame by frame as it arrives, and kept once all of it passed (its
/// `Content-Length`, checked when the body ends or is dropped: hyper stops polling a sized
/// body after its last byte), unless it outgrew the limit or broke off.
struct Tee {
    inner: ProxyBody,
    kept: Option<BytesMut>,
    /// The `Content-Length` the store announced.
    length: u64,
    store: Option<Store>,
}

impl Tee {
    /// Keeps the body if all of it passed; at most once.
    fn finish(&mut self) {
        let whole = self
            .kept
            .as_ref()
            .is_some_and(|kept| kept.len() as u64 == self.length);
        if let (true, Some(kept), Some(store)) = (whole, self.kept.take(), self.store.take()) {
            let entry = Entry {
                headers: store.headers,
                body: kept.freeze(),
                checked: Instant::now(),
                ttl: store.ttl,
            };
            store.cache.insert(store.key, Arc::new(entry));
        }
    }
}

impl Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(kept), Some(data)) = (this.kept.as_mut(), frame.data_ref()) {
                    if kept.len() as u64 + data.len() as u64 > this.length {
                        this.kept = None;
                    } else {
                        kept.extend_from_slice(data);
                    }
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(Some(Err(_))) => this.kept = None,
            Poll::Ready(None) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_byte_ranges_are_served_and_others_left_to_the_store() {
        assert_eq!(byte_range("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(byte_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(byte_range("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(byte_range("bytes=95-200", 100), Some(Ok((95, 99))));
        assert_eq!(byte_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(byte_range("bytes=5-1", 100), Some(Err(())));
        assert_eq!(byte_range("bytes=0-1,5-6", 100), None);
        assert_eq!(byte_range("items=0-1", 100), None);
    }
}
