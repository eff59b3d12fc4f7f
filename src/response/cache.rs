//! The object cache (`[server.cache] memory`; an integration opts in with `cache_ttl`): whole
//! objects the store answered 200 to a GET, kept in memory and served again without the store
//! while fresh, then revalidated with `If-None-Match`; and the ranges of any object in aligned
//! chunks (`ranges`), so a video's Range requests are served from the chunks they cover.
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
//! `response-*` override). With `cache_stale_if_error`, a revalidation the store or STS fails
//! is answered from the stale entry for that long past its TTL (RFC 5861).

mod keys;
mod ranges;
mod tee;
mod tiers;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use tokio::sync::watch;

pub use keys::{Entry, FillGuard, Key, with_status};
use keys::{Filling, Piece};
pub use ranges::Fetch;
use tiers::Entries;

use crate::config::Integration;
use crate::request::integration::Target;
use crate::s3::body::{self, ProxyBody};
use crate::s3::route::{Operation, Route};

/// What the cache says about an admitted request.
pub enum Lookup {
    /// Answered from fresh entries.
    Hit(Response<ProxyBody>),
    /// A stale entry: ask the store with `If-None-Match` first.
    Revalidate(Key, Arc<Entry>),
    /// Nothing kept: fetch, and keep the answer if it fits (other misses for the object wait
    /// while the guard lives).
    Miss(Key, Option<FillGuard>),
    /// A range whose chunks are not all kept: ask the store for the aligned span instead.
    Ranged(Box<Fetch>),
    /// Not the cache's to answer: forward as if there were none.
    Bypass,
}

/// What a write through the proxy changed, for the cache to drop: one object, or (a form
/// upload, DeleteObjects: their keys are in their bodies) any of the integration's.
pub struct Write {
    integration: String,
    /// The real bucket and upstream key.
    object: Option<(String, String)>,
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
                Some((target.bucket.clone(), target.key.clone()))
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

/// What one look at the cache found: a decision, a fetch of the object under way, or what
/// to ask the disk tier for first.
enum Looked {
    Decided(Box<Lookup>),
    Filling(watch::Receiver<()>),
    Recall(Vec<Key>),
}

/// How long a miss waits for another request's fetch of the same object before fetching it
/// itself.
pub const FILL_WAIT: Duration = Duration::from_secs(10);

/// Per integration: what the cache did.
#[derive(Default, Clone, Copy)]
pub struct Counts {
    pub hits: u64,
    pub misses: u64,
    pub revalidations: u64,
    /// Body bytes served from entries: the egress saved.
    pub bytes_served: u64,
    /// Entries the disk tier gave back to memory.
    pub disk_reads: u64,
}

/// The cache: entries weighed by their bodies, at most the configured memory.
pub struct ObjectCache {
    entries: Entries,
    /// The size of the chunks ranges are kept in.
    chunk: u64,
    filling: Filling,
    counts: Mutex<BTreeMap<String, Counts>>,
    evictions: Arc<AtomicU64>,
}

impl ObjectCache {
    /// A cache holding at most `memory` bytes of bodies and headers, ranges in chunks of
    /// `chunk` bytes; `disk`: a disk tier will be opened behind it ([`ObjectCache::open_disk`]).
    /// Entries age by `clock`.
    pub fn new(memory: u64, chunk: u64, disk: bool, clock: crate::config::Clock) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        let entries = Entries::new(memory, evictions.clone(), (disk, clock));
        ObjectCache {
            entries,
            chunk: chunk.max(1),
            filling: Filling::default(),
            counts: Mutex::default(),
            evictions,
        }
    }

    /// What to do with a request the request phase admitted: `target` is its integration, real
    /// bucket and upstream key. A miss for an object (or a range's first chunk) another request
    /// is already fetching waits for that fetch (at most [`FILL_WAIT`]) and is then answered
    /// from what it kept: any number of concurrent misses for one object make one request to
    /// the store.
    pub async fn lookup(
        &self,
        route: &Route,
        integration: &Integration,
        found: (&str, &str),
        headers: &HeaderMap,
    ) -> Lookup {
        let mut waited = false;
        // What memory misses, the disk tier may hold: asked at most twice (a range's head,
        // then its chunks), and not again once it had nothing.
        let mut recalls = if self.entries.has_disk() { 2 } else { 0 };
        loop {
            let asked = (waited, recalls > 0);
            match self.look(route, integration, found, headers, asked) {
                Looked::Decided(lookup) => return *lookup,
                Looked::Filling(mut done) => {
                    let _ = tokio::time::timeout(FILL_WAIT, done.changed()).await;
                    waited = true;
                }
                Looked::Recall(keys) => {
                    let read = self.entries.recall(&keys).await as u64;
                    self.count(integration, |c| c.disk_reads += read);
                    recalls = if read == 0 { 0 } else { recalls - 1 };
                }
            }
        }
    }

    /// Opens the disk tier (`[server.cache] disk`), at most `size` bytes. Entries up to the
    /// disk's block (16 MiB, or twice the chunk when chunks are larger) are written to it.
    pub async fn open_disk(&self, directory: &std::path::Path, size: u64) -> std::io::Result<()> {
        let block = (16 << 20).max(2 * self.chunk);
        if size < 4 * block {
            return Err(std::io::Error::other(format!(
                "[server.cache] disk_size must hold four blocks of {} MiB",
                block >> 20
            )));
        }
        self.entries.open_disk(directory, size, block).await
    }

    fn look(
        &self,
        route: &Route,
        integration: &Integration,
        (bucket, key): (&str, &str),
        headers: &HeaderMap,
        (waited, recall): (bool, bool),
    ) -> Looked {
        if integration.cache.is_none() {
            return Looked::Decided(Box::new(Lookup::Bypass));
        }
        let reads = matches!(
            route.operation,
            Operation::GetObject | Operation::HeadObject
        );
        // Conditions an entry cannot answer for: the store does.
        let conditions = ["if-match", "if-unmodified-since"]
            .iter()
            .any(|name| headers.contains_key(*name));
        if !reads || !route.query.is_empty() || conditions {
            return Looked::Decided(Box::new(Lookup::Bypass));
        }
        let key = Key::new(integration, bucket, key);
        let range = headers.get(header::RANGE);
        let if_range = headers.get(header::IF_RANGE);
        let validators = headers.contains_key(header::IF_NONE_MATCH)
            || headers.contains_key(header::IF_MODIFIED_SINCE);
        let get = route.operation == Operation::GetObject && !validators;
        let lookup = match self.entries.get(&key) {
            Some(entry) if entry.fresh() => {
                let head = route.operation == Operation::HeadObject;
                // An If-Range naming another version: the whole object instead of the range.
                let range =
                    range.filter(|_| if_range.is_none_or(|v| keys::if_range_holds(&entry, v)));
                match serve(&entry, head, range, headers) {
                    Some(response) => self.hit(integration, response, head),
                    None => Lookup::Bypass,
                }
            }
            Some(entry) if get && range.is_none() && entry.etag().is_some() => {
                Lookup::Revalidate(key, entry)
            }
            // Not in memory: the whole object, or what ranges of it said, may be on disk.
            None if recall => {
                let head = key.piece(Piece::Head);
                return Looked::Recall(vec![key, head]);
            }
            _ if get && range.is_none() => {
                // One fetch per object at a time; after waiting once, a fetch of its own.
                let guard = match self.filling.claim(&key) {
                    Err(done) if !waited => return Looked::Filling(done),
                    Err(_) => None,
                    Ok(guard) => Some(guard),
                };
                self.count(integration, |c| c.misses += 1);
                Lookup::Miss(key, guard)
            }
            // A range: its validators are answered from the kept version, or go to the store.
            _ if route.operation == Operation::GetObject => {
                match range.and_then(|r| r.to_str().ok()) {
                    Some(range) => {
                        let asked = (range, if_range, headers);
                        return self.look_ranged(integration, &key, asked, (waited, recall));
                    }
                    None => Lookup::Bypass,
                }
            }
            _ => Lookup::Bypass,
        };
        Looked::Decided(Box::new(lookup))
    }

    /// A single-range GET of an object not kept whole: answered from its chunks, or a fetch of
    /// the aligned span (one per first chunk at a time).
    fn look_ranged(
        &self,
        integration: &Integration,
        key: &Key,
        range: (&str, Option<&HeaderValue>, &HeaderMap),
        (waited, recall): (bool, bool),
    ) -> Looked {
        let lookup = match ranges::look(&self.entries, key, range, self.chunk) {
            ranges::Ranged::Hit(response, length) => {
                self.count(integration, |c| {
                    c.hits += 1;
                    c.bytes_served += length;
                });
                Lookup::Hit(with_status(response, "hit"))
            }
            ranges::Ranged::Fetch(fetch) if recall => {
                return Looked::Recall(fetch.chunk_keys(self.chunk));
            }
            ranges::Ranged::Fetch(mut fetch) => {
                fetch.guard = match self.filling.claim(&fetch.first_chunk(self.chunk)) {
                    Err(done) if !waited => return Looked::Filling(done),
                    Err(_) => None,
                    Ok(guard) => Some(guard),
                };
                self.count(integration, |c| c.misses += 1);
                Lookup::Ranged(fetch)
            }
            ranges::Ranged::Bypass => Lookup::Bypass,
        };
        Looked::Decided(Box::new(lookup))
    }

    /// `response`, made from a fresh entry, counted and marked as a hit.
    fn hit(&self, integration: &Integration, response: Response<ProxyBody>, head: bool) -> Lookup {
        let sent = if head {
            0
        } else {
            keys::content_length(&response).unwrap_or(0)
        };
        self.count(integration, |c| {
            c.hits += 1;
            c.bytes_served += sent;
        });
        Lookup::Hit(with_status(response, "hit"))
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
            total: entry.total,
            checked: entry.clock.instant(),
            ttl: entry.ttl,
            clock: entry.clock.clone(),
        });
        self.entries.insert(key, renewed.clone());
        let response = whole(&renewed, renewed.body.clone());
        let sent = renewed.body.len() as u64;
        self.count(integration, |c| {
            c.revalidations += 1;
            c.bytes_served += sent;
        });
        with_status(response, "fwd=stale")
    }

    /// A revalidation failed (`status`: the store's 5xx, or the proxy's own error for a store
    /// it could not reach or credentials it could not get): the stale entry answers if it is
    /// within `cache_stale_if_error` past its TTL.
    pub fn stale_if_error(
        &self,
        integration: &Integration,
        entry: &Entry,
        status: StatusCode,
    ) -> Option<Response<ProxyBody>> {
        let policy = integration.cache?;
        if entry.age() >= entry.ttl + policy.stale_if_error {
            return None;
        }
        let sent = entry.body.len() as u64;
        self.count(integration, |c| {
            c.hits += 1;
            c.bytes_served += sent;
        });
        let detail = format!(
            "hit; fwd=stale; fwd-status={}; detail=stale-if-error",
            status.as_u16()
        );
        Some(with_status(whole(entry, entry.body.clone()), &detail))
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
                self.forget_object(&key);
            }
            return with_status(response, detail);
        }
        let length = keys::content_length(&response).unwrap_or(0);
        let (parts, inner) = response.into_parts();
        let store = tee::Store {
            cache: self.entries.clone(),
            key,
            headers: parts.headers.clone(),
            ttl: policy.ttl,
            _guard: guard,
        };
        let tee = tee::Tee::new(inner, length, store);
        with_status(
            Response::from_parts(parts, body::stream(tee)),
            &format!("{detail}; stored"),
        )
    }

    /// The store's answer to a ranged miss: the client's range of it, each chunk kept as it
    /// passes (or, when the store did not answer the span with a 206, its answer as it is).
    pub fn fill_ranged(
        &self,
        integration: &Integration,
        fetch: Box<Fetch>,
        response: Response<ProxyBody>,
    ) -> Response<ProxyBody> {
        let Some(policy) = integration.cache else {
            return response;
        };
        if response.status() == StatusCode::NOT_FOUND {
            self.forget_object(&fetch.key);
        }
        match ranges::fill(&self.entries, *fetch, (self.chunk, policy.ttl), response) {
            (response, true) => with_status(response, "fwd=miss; stored"),
            (response, false) => with_status(response, "fwd=miss"),
        }
    }

    /// The store says `key`'s object is gone: its entries go (whole, head and chunks).
    fn forget_object(&self, key: &Key) {
        let object = Some((Some(key.bucket.as_str()), key.key.as_str()));
        self.entries.forget(&key.integration, object);
    }

    /// A write through the proxy happened: what it changed goes (the object whole and its
    /// chunks).
    pub fn written(&self, write: &Write) {
        let object = write
            .object
            .as_ref()
            .map(|(bucket, key)| (Some(bucket.as_str()), key.as_str()));
        self.entries.forget(&write.integration, object);
    }

    /// Drops an integration's entries, or those of one upstream key of it; how many objects
    /// memory held. (From the disk tier, a purge drops all the integration's entries: the
    /// bucket of the key is not named.)
    pub fn purge(&self, integration: &str, key: Option<&str>) -> u64 {
        let matching = self.entries.objects(integration, key);
        self.entries.forget(integration, key.map(|key| (None, key)));
        matching
    }

    /// Each integration's counts, the entries' weight and the evictions so far.
    pub fn stats(&self) -> (BTreeMap<String, Counts>, u64, u64) {
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
    let length = keys::content_length(response);
    response.status() == StatusCode::OK
        && length.is_some_and(|l| l <= max_object)
        && !keys::forbidden(response.headers())
}

/// A whole entry's 200 with `body` (empty for a HEAD).
fn whole(entry: &Entry, body: Bytes) -> Response<ProxyBody> {
    let length = entry.body.len();
    let mut response = keys::answer(entry, StatusCode::OK, body::full(body));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

/// A whole entry's answer to a GET or HEAD: whole, a single byte range of it, or 304 when the
/// client's `If-None-Match` names its ETag (or, without one, its `If-Modified-Since` is not
/// older than its `Last-Modified`). `None` when the range is not one the cache serves
/// (several ranges): the store answers it.
fn serve(
    entry: &Entry,
    head: bool,
    range: Option<&HeaderValue>,
    headers: &HeaderMap,
) -> Option<Response<ProxyBody>> {
    if keys::not_modified(entry, headers)? {
        return Some(keys::unchanged(entry));
    }
    let Some(range) = range else {
        let body = if head {
            Bytes::new()
        } else {
            entry.body.clone()
        };
        return Some(whole(entry, body));
    };
    match ranges::byte_range(range.to_str().ok()?, entry.total)? {
        Ok((first, last)) => {
            let body = if head {
                Bytes::new()
            } else {
                entry.body.slice(first as usize..=last as usize)
            };
            let response = keys::answer(entry, StatusCode::OK, body::full(body));
            Some(keys::ranged(
                response,
                (first, last - first + 1),
                entry.total,
            ))
        }
        Err(()) => Some(crate::s3::error::Error::InvalidRange.into_response("", head)),
    }
}
