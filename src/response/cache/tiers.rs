//! Where entries are kept: memory (moka, weighed by their bodies, at most `[server.cache]
//! memory`) and, with `[server.cache] disk`, a second tier on disk (foyer's hybrid cache, at
//! most `disk_size`). Every entry kept in memory is written to disk too; a lookup that misses
//! memory asks the disk ([`Entries::recall`]) and brings what it finds back into memory.
//!
//! The disk tier starts empty at every start (nothing is recovered), so what it holds was
//! kept by this process under the rules of this process. Its keys carry no secret: the
//! integration's identity (how it obtains credentials, where its store is) is a number this
//! process gave it. A write drops the object's whole and head entries from both tiers at once
//! (kept chunks are of a version, checked against the head's ETag before any is served); a
//! write the cache cannot name (a form upload, DeleteObjects, a purge) moves the integration
//! to a new generation, which no entry on disk is under.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::keys::{Entry, Identity, Key, Piece};
use crate::config::Clock;

/// The memory tier.
type Memory = moka::sync::Cache<Key, Arc<Entry>>;

/// The entries, in memory and (once opened) on disk.
#[derive(Clone)]
pub struct Entries {
    memory: Memory,
    disk: Arc<OnceLock<Disk>>,
    /// What entries age by.
    clock: Clock,
}

impl Entries {
    /// At most `budget` bytes in memory; `evictions` counts what memory had to drop. With a
    /// disk tier behind it (`disk`), memory keeps the most recently used entries (whatever it
    /// drops is on disk, and an entry the disk gives back must be admitted); without one,
    /// moka's TinyLFU, which keeps a one-off scan from pushing out what is used often.
    pub fn new(budget: u64, evictions: Arc<AtomicU64>, (disk, clock): (bool, Clock)) -> Self {
        let policy = if disk {
            moka::policy::EvictionPolicy::lru()
        } else {
            moka::policy::EvictionPolicy::tiny_lfu()
        };
        let memory = moka::sync::Cache::builder()
            .max_capacity(budget)
            .eviction_policy(policy)
            .weigher(|_key: &Key, entry: &Arc<Entry>| entry.weight())
            .eviction_listener(move |_, _, cause| {
                if cause.was_evicted() {
                    evictions.fetch_add(1, Ordering::Relaxed);
                }
            })
            .support_invalidation_closures()
            .build();
        Entries {
            memory,
            disk: Arc::default(),
            clock,
        }
    }

    /// The clock entries are kept by.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Opens the disk tier in `directory`, at most `size` bytes, entries of at most `block`
    /// bytes (larger ones stay in memory only). Once: a second call changes nothing.
    pub async fn open_disk(&self, directory: &Path, size: u64, block: u64) -> std::io::Result<()> {
        if self.disk.get().is_some() {
            return Ok(());
        }
        let disk = Disk::open(directory, size, block, self.clock.clone()).await?;
        let _ = self.disk.set(disk);
        Ok(())
    }

    /// What memory holds for `key`.
    pub fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        self.memory.get(key)
    }

    /// Keeps `entry` in memory, and on disk.
    pub fn insert(&self, key: Key, entry: Arc<Entry>) {
        if let Some(disk) = self.disk.get() {
            disk.insert(&key, &entry);
        }
        self.memory.insert(key, entry);
        // Evictions are done now, not when moka next gets to them: the budget holds, and
        // what memory gives up is found on disk from the next request on.
        self.memory.run_pending_tasks();
    }

    /// Drops `key` from both tiers (a chunk of a version no longer kept).
    pub fn invalidate(&self, key: &Key) {
        self.memory.invalidate(key);
        if let Some(disk) = self.disk.get() {
            disk.remove(key);
        }
    }

    /// Drops an integration's entries, or those of one upstream key of it. From disk: the
    /// object's whole and head entries when its bucket is known (its chunks are checked
    /// against the head's ETag), else everything the integration kept, by a new generation.
    pub fn forget(&self, integration: &str, object: Option<(Option<&str>, &str)>) {
        // moka never returns an entry the predicate matches, though it removes them later.
        let name = integration.to_string();
        let object_key = object.map(|(_, key)| key.to_string());
        let _ = self.memory.invalidate_entries_if(move |k, _| {
            k.integration == name && object_key.as_ref().is_none_or(|key| *key == k.key)
        });
        if let Some(disk) = self.disk.get() {
            match object {
                Some((Some(bucket), key)) => disk.forget_object(integration, bucket, key),
                _ => disk.next_generation(integration),
            }
        }
    }

    /// How many whole objects (their whole or head entries) memory holds for `integration`
    /// (one key of it, with `key`).
    pub fn objects(&self, integration: &str, key: Option<&str>) -> u64 {
        self.memory
            .iter()
            .filter(|(k, _)| k.integration == integration && key.is_none_or(|key| key == k.key))
            .filter(|(k, _)| matches!(k.piece, Piece::Whole | Piece::Head))
            .count() as u64
    }

    /// Brings what the disk holds of `keys` back into memory; how many it found.
    pub async fn recall(&self, keys: &[Key]) -> usize {
        let Some(disk) = self.disk.get() else {
            return 0;
        };
        let mut found = 0;
        for key in keys {
            if self.memory.contains_key(key) {
                continue;
            }
            if let Some(entry) = disk.get(key).await {
                self.memory.insert(key.clone(), Arc::new(entry));
                found += 1;
            }
        }
        self.memory.run_pending_tasks();
        found
    }

    /// Whether a disk tier is open.
    pub fn has_disk(&self) -> bool {
        self.disk.get().is_some()
    }

    /// The memory tier's weight, once its pending work is done.
    pub fn weighted_size(&self) -> u64 {
        self.memory.run_pending_tasks();
        self.memory.weighted_size()
    }
}

/// The disk tier.
struct Disk {
    cache: foyer::HybridCache<DiskKey, DiskEntry>,
    /// A number for each integration name and identity an entry was kept under (no secret
    /// goes to disk).
    identities: Mutex<HashMap<(String, Identity), u64>>,
    /// Each integration's generation: a write the cache cannot name moves it on.
    generations: Mutex<HashMap<String, u64>>,
    /// What entries' times are counted from.
    base: Instant,
    clock: Clock,
}

impl Disk {
    async fn open(directory: &Path, size: u64, block: u64, clock: Clock) -> std::io::Result<Disk> {
        use foyer::{BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCacheBuilder};
        std::fs::create_dir_all(directory)?;
        let capacity = usize::try_from(size).unwrap_or(usize::MAX);
        let device = FsDeviceBuilder::new(directory)
            .with_capacity(capacity)
            .build()
            .map_err(std::io::Error::other)?;
        let block = usize::try_from(block).unwrap_or(16 << 20);
        let cache = HybridCacheBuilder::new()
            .with_name("s3sp-object-cache")
            .with_policy(foyer::HybridCachePolicy::WriteOnInsertion)
            // The memory tier is moka's; foyer's own holds little beyond what it is writing.
            .memory(1 << 20)
            .with_weighter(|_key: &DiskKey, entry: &DiskEntry| entry.body.len() + 256)
            .storage()
            .with_engine_config(BlockEngineConfig::new(device).with_block_size(block))
            .with_recover_mode(foyer::RecoverMode::None)
            .build()
            .await
            .map_err(std::io::Error::other)?;
        Ok(Disk {
            cache,
            identities: Mutex::default(),
            generations: Mutex::default(),
            base: clock.instant(),
            clock,
        })
    }

    /// `key` as the disk names it now.
    fn key(&self, key: &Key) -> Option<DiskKey> {
        let identity = {
            let mut identities = self.identities.lock().ok()?;
            let next = identities.len() as u64;
            *identities
                .entry((key.integration.clone(), key.identity.clone()))
                .or_insert(next)
        };
        let generation = self.generation(&key.integration);
        Some(DiskKey {
            integration: key.integration.clone(),
            identity,
            generation,
            bucket: key.bucket.clone(),
            key: key.key.clone(),
            piece: key.piece,
        })
    }

    fn insert(&self, key: &Key, entry: &Entry) {
        let Some(disk_key) = self.key(key) else {
            return;
        };
        let stored = DiskEntry {
            headers: entry.headers.clone(),
            body: entry.body.clone(),
            total: entry.total,
            checked: entry.checked.saturating_duration_since(self.base),
            ttl: entry.ttl,
        };
        self.cache.insert(disk_key, stored);
    }

    fn remove(&self, key: &Key) {
        if let Some(disk_key) = self.key(key) {
            self.cache.remove(&disk_key);
        }
    }

    async fn get(&self, key: &Key) -> Option<Entry> {
        let disk_key = self.key(key)?;
        let found = self.cache.get(&disk_key).await.ok()??;
        let stored = found.value();
        Some(Entry {
            headers: stored.headers.clone(),
            body: stored.body.clone(),
            total: stored.total,
            checked: self.base + stored.checked,
            ttl: stored.ttl,
            clock: self.clock.clone(),
        })
    }

    /// Drops one object's whole and head entries, under every identity `integration` kept
    /// entries under.
    fn forget_object(&self, integration: &str, bucket: &str, key: &str) {
        let numbers: Vec<u64> = match self.identities.lock() {
            Ok(identities) => identities
                .iter()
                .filter(|((name, _), _)| name == integration)
                .map(|(_, number)| *number)
                .collect(),
            Err(_) => return,
        };
        let generation = self.generation(integration);
        for identity in numbers {
            for piece in [Piece::Whole, Piece::Head] {
                self.cache.remove(&DiskKey {
                    integration: integration.to_string(),
                    identity,
                    generation,
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                    piece,
                });
            }
        }
    }

    fn generation(&self, integration: &str) -> u64 {
        self.generations
            .lock()
            .map(|generations| generations.get(integration).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn next_generation(&self, integration: &str) {
        if let Ok(mut generations) = self.generations.lock() {
            *generations.entry(integration.to_string()).or_default() += 1;
        }
    }
}

/// An entry's name on disk.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DiskKey {
    integration: String,
    identity: u64,
    generation: u64,
    bucket: String,
    key: String,
    piece: Piece,
}

/// An entry on disk: its time counted from the tier's start.
struct DiskEntry {
    headers: HeaderMap,
    body: Bytes,
    total: u64,
    checked: Duration,
    ttl: Duration,
}

/// Entries on disk are read back by this process only, but a short or damaged read must fail
/// rather than allocate what a length claims: no field is longer than this.
const MAX_FIELD: u64 = 1 << 30;

fn put_u64(writer: &mut impl Write, value: u64) -> foyer::Result<()> {
    writer
        .write_all(&value.to_le_bytes())
        .map_err(foyer::Error::io_error)
}

fn put_bytes(writer: &mut impl Write, bytes: &[u8]) -> foyer::Result<()> {
    put_u64(writer, bytes.len() as u64)?;
    writer.write_all(bytes).map_err(foyer::Error::io_error)
}

fn take_u64(reader: &mut impl Read) -> foyer::Result<u64> {
    let mut bytes = [0u8; 8];
    reader
        .read_exact(&mut bytes)
        .map_err(foyer::Error::io_error)?;
    Ok(u64::from_le_bytes(bytes))
}

fn take_bytes(reader: &mut impl Read) -> foyer::Result<Vec<u8>> {
    let length = take_u64(reader)?;
    if length > MAX_FIELD {
        return Err(damaged("a field longer than any the cache writes"));
    }
    let mut bytes = vec![0u8; length as usize];
    reader
        .read_exact(&mut bytes)
        .map_err(foyer::Error::io_error)?;
    Ok(bytes)
}

fn take_string(reader: &mut impl Read) -> foyer::Result<String> {
    String::from_utf8(take_bytes(reader)?).map_err(|_| damaged("a name that is not UTF-8"))
}

fn damaged(what: &str) -> foyer::Error {
    foyer::Error::new(
        foyer::ErrorKind::Parse,
        format!("a damaged cache entry: {what}"),
    )
}

fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl foyer::Code for DiskKey {
    fn encode(&self, writer: &mut impl Write) -> foyer::Result<()> {
        put_bytes(writer, self.integration.as_bytes())?;
        put_u64(writer, self.identity)?;
        put_u64(writer, self.generation)?;
        put_bytes(writer, self.bucket.as_bytes())?;
        put_bytes(writer, self.key.as_bytes())?;
        let piece = match self.piece {
            Piece::Whole => u64::MAX,
            Piece::Head => u64::MAX - 1,
            Piece::Chunk(n) => n,
        };
        put_u64(writer, piece)
    }

    fn decode(reader: &mut impl Read) -> foyer::Result<Self> {
        let integration = take_string(reader)?;
        let identity = take_u64(reader)?;
        let generation = take_u64(reader)?;
        let bucket = take_string(reader)?;
        let key = take_string(reader)?;
        let piece = match take_u64(reader)? {
            u64::MAX => Piece::Whole,
            n if n == u64::MAX - 1 => Piece::Head,
            n => Piece::Chunk(n),
        };
        Ok(DiskKey {
            integration,
            identity,
            generation,
            bucket,
            key,
            piece,
        })
    }

    fn estimated_size(&self) -> usize {
        6 * 8 + self.integration.len() + self.bucket.len() + self.key.len()
    }
}

impl foyer::Code for DiskEntry {
    fn encode(&self, writer: &mut impl Write) -> foyer::Result<()> {
        put_u64(writer, self.headers.len() as u64)?;
        for (name, value) in &self.headers {
            put_bytes(writer, name.as_str().as_bytes())?;
            put_bytes(writer, value.as_bytes())?;
        }
        put_bytes(writer, &self.body)?;
        put_u64(writer, self.total)?;
        put_u64(writer, duration_nanos(self.checked))?;
        put_u64(writer, duration_nanos(self.ttl))
    }

    fn decode(reader: &mut impl Read) -> foyer::Result<Self> {
        let count = take_u64(reader)?;
        if count > 10_000 {
            return Err(damaged("more headers than any answer has"));
        }
        let mut headers = HeaderMap::new();
        for _ in 0..count {
            let name = HeaderName::from_bytes(&take_bytes(reader)?)
                .map_err(|_| damaged("a header name"))?;
            let value = HeaderValue::from_bytes(&take_bytes(reader)?)
                .map_err(|_| damaged("a header value"))?;
            headers.append(name, value);
        }
        let body = Bytes::from(take_bytes(reader)?);
        let total = take_u64(reader)?;
        let checked = Duration::from_nanos(take_u64(reader)?);
        let ttl = Duration::from_nanos(take_u64(reader)?);
        Ok(DiskEntry {
            headers,
            body,
            total,
            checked,
            ttl,
        })
    }

    fn estimated_size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| 16 + name.as_str().len() + value.len())
            .sum();
        8 + headers + 8 + self.body.len() + 3 * 8
    }
}
