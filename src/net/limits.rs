//! Protection for a public listener: a per-client request rate limit and an idle timeout that
//! closes connections on which no byte has moved for a while.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::RateLimit;

/// Independent parts of the limiter, each with its own lock: callers on different shards
/// never wait for each other.
const SHARDS: usize = 16;
/// The most callers one shard tracks; 16 × 4,096 buckets is about 3 MiB at most.
const SHARD_CAPACITY: usize = 4096;
/// A full shard forgets full buckets at most this often, so no request pays for a scan of
/// the shard more than once per interval, however many callers come and go.
const PRUNE_INTERVAL: Duration = Duration::from_secs(1);

/// Who a rate limit counts: a client by its key id, an anonymous caller by its address. An
/// IPv6 caller is counted by its /64, the smallest network a host is given: one host holds
/// 2^64 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallerKey {
    /// A client, by a hash of its access key id (no allocation per request).
    Client(u64),
    /// An anonymous IPv4 caller.
    V4(u32),
    /// An anonymous IPv6 caller's /64.
    V6(u64),
}

impl CallerKey {
    /// The key of an anonymous caller at `address`.
    pub fn address(address: std::net::IpAddr) -> CallerKey {
        match crate::net::peer::unmapped(address) {
            std::net::IpAddr::V4(v4) => CallerKey::V4(u32::from(v4)),
            std::net::IpAddr::V6(v6) => CallerKey::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// A token bucket per caller, in shards. Memory is bounded: a full shard forgets callers whose
/// buckets have refilled, at most once per [`PRUNE_INTERVAL`]; newcomers to a shard that is
/// still full share one overflow bucket, so a flood of distinct sources is limited together
/// rather than growing the table.
pub struct RateLimiter {
    shards: Vec<Mutex<Shard>>,
    hasher: std::hash::RandomState,
}

#[derive(Default)]
struct Shard {
    buckets: HashMap<CallerKey, Bucket>,
    overflow: Option<Bucket>,
    pruned: Option<Instant>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: std::hash::RandomState::new(),
        }
    }
}

impl RateLimiter {
    /// The key of a client with this access key id.
    pub fn client_key(&self, access_key_id: &str) -> CallerKey {
        CallerKey::Client(self.hasher.hash_one(access_key_id))
    }

    /// Takes one token for `caller` at `now` (the proxy's clock); `Err` carries how long
    /// until one is available.
    pub fn check(&self, caller: CallerKey, limit: RateLimit, now: Instant) -> Result<(), Duration> {
        let shard = self.hasher.hash_one(caller) as usize % SHARDS;
        let Some(Ok(mut shard)) = self.shards.get(shard).map(Mutex::lock) else {
            return Ok(());
        };
        shard.take(caller, limit, now)
    }

    /// How many callers are tracked (for tests and the bench).
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|shard| shard.lock().ok().map(|s| s.buckets.len()))
            .sum()
    }
}

impl Shard {
    fn take(&mut self, caller: CallerKey, limit: RateLimit, now: Instant) -> Result<(), Duration> {
        // A known caller costs one lookup.
        if let Some(bucket) = self.buckets.get_mut(&caller) {
            return bucket.take(limit, now);
        }
        if self.buckets.len() >= SHARD_CAPACITY {
            self.prune(limit, now);
        }
        let full = Bucket {
            tokens: f64::from(limit.burst),
            updated: now,
        };
        let bucket = if self.buckets.len() < SHARD_CAPACITY {
            self.buckets.entry(caller).or_insert(full)
        } else {
            self.overflow.get_or_insert(full)
        };
        bucket.take(limit, now)
    }

    /// Forgets callers whose buckets are full again, at most once per interval.
    fn prune(&mut self, limit: RateLimit, now: Instant) {
        if self
            .pruned
            .is_some_and(|last| now.duration_since(last) < PRUNE_INTERVAL)
        {
            return;
        }
        self.pruned = Some(now);
        self.buckets
            .retain(|_, bucket| bucket.refilled(limit, now) < f64::from(limit.burst));
    }
}

impl Bucket {
    fn refilled(&self, limit: RateLimit, now: Instant) -> f64 {
        let elapsed = now.duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * limit.per_second).min(f64::from(limit.burst))
    }

    fn take(&mut self, limit: RateLimit, now: Instant) -> Result<(), Duration> {
        self.tokens = self.refilled(limit, now);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / limit.per_second;
            Err(Duration::from_secs_f64(wait.max(0.001)))
        }
    }
}

/// Milliseconds since the process's first use of this clock.
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// How much a client connection may read from its socket at a time: no limit unless an
/// upload going upstream sets one (the upload budget, `budget`), so that an upload whose store stops
/// reading has only a little of its body read off the socket. The rest waits in the kernel's
/// buffers, and then in the client's (TCP backpressure).
#[derive(Debug)]
pub struct ReadWindow(std::sync::atomic::AtomicUsize);

impl ReadWindow {
    /// No limit.
    pub fn unlimited() -> Arc<ReadWindow> {
        Arc::new(ReadWindow(std::sync::atomic::AtomicUsize::new(usize::MAX)))
    }

    /// The most one read may take now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Lets one read take at most `bytes` (at least one).
    pub fn set(&self, bytes: usize) {
        self.0.store(bytes.max(1), Ordering::Relaxed);
    }
}

/// An I/O stream that notes when bytes last moved, for [`idle`], and reads at most its
/// [`ReadWindow`] at a time.
pub struct ActivityIo<T> {
    inner: T,
    last: Arc<AtomicU64>,
    window: Arc<ReadWindow>,
}

impl<T> ActivityIo<T> {
    /// Wraps `inner`; the counter holds the time bytes last moved.
    pub fn new(inner: T, window: Arc<ReadWindow>) -> (Self, Arc<AtomicU64>) {
        let last = Arc::new(AtomicU64::new(now_ms()));
        (
            ActivityIo {
                inner,
                last: last.clone(),
                window,
            },
            last,
        )
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let window = self.window.get();
        if window < buf.remaining() {
            // Read into the first `window` bytes only (initialised first: no unsafe code).
            let mut limited = ReadBuf::new(buf.initialize_unfilled_to(window));
            let poll = Pin::new(&mut self.inner).poll_read(cx, &mut limited);
            let read = limited.filled().len();
            if matches!(poll, Poll::Ready(Ok(()))) && read > 0 {
                buf.advance(read);
                self.last.store(now_ms(), Ordering::Relaxed);
            }
            return poll;
        }
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.last.store(now_ms(), Ordering::Relaxed);
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.last.store(now_ms(), Ordering::Relaxed);
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.last.store(now_ms(), Ordering::Relaxed);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Completes once no byte has moved on the connection for `timeout`.
pub async fn idle(last: Arc<AtomicU64>, timeout: Duration) {
    let timeout_ms = timeout.as_millis() as u64;
    loop {
        let quiet = now_ms().saturating_sub(last.load(Ordering::Relaxed));
        if quiet >= timeout_ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis(timeout_ms - quiet)).await;
    }
}

/// Completes when the client has reset its connection, whether or not the request in flight
/// has read its body: hyper notices a client leaving only when it reads, and it stops reading
/// an upload whose store stopped reading ([`ReadWindow`]), so such a request would otherwise
/// hold its store connection until the idle timeout. A client that closes normally (a FIN) is
/// left to hyper, which reads what the client sent before it and then the end: a FIN can sit
/// behind body bytes the proxy has yet to read, and a client that half-closes after its
/// request still gets its answer read to it in full. (Behind a zero window, as with a stalled
/// upload, a FIN cannot even arrive; such a connection ends at the idle timeout.)
///
/// The watch is kept on a duplicate of the socket's descriptor (one more descriptor per
/// connection), registered with the runtime on its own: every new arrival on the socket wakes
/// it once, and then it waits for the next. If the descriptor cannot be duplicated (the
/// process is out of descriptors), the connection is served without the watch.
pub fn reset_by_client(stream: &tokio::net::TcpStream) -> impl Future<Output = ()> + use<> {
    use std::os::fd::AsFd;
    let watched = stream
        .as_fd()
        .try_clone_to_owned()
        .map(std::net::TcpStream::from)
        .and_then(tokio::net::TcpStream::from_std);
    async move {
        let Ok(watched) = watched else {
            return std::future::pending().await;
        };
        let interest = tokio::io::Interest::READABLE;
        loop {
            match watched.ready(interest).await {
                Ok(ready) if !ready.is_read_closed() => {
                    // Bytes for hyper to read: forget this arrival (without reading it) and
                    // wait for the next, or for the end.
                    let _ =
                        watched.try_io(interest, || Err::<(), _>(io::ErrorKind::WouldBlock.into()));
                }
                // The end: a reset leaves its error on the socket (or fails even a peek, once
                // nothing is left to read); a FIN is hyper's to read.
                Ok(_) => {
                    if !matches!(watched.take_error(), Ok(None)) {
                        return;
                    }
                    match watched.peek(&mut [0u8; 1]).await {
                        Err(_) => return,
                        Ok(_) => return std::future::pending().await,
                    }
                }
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_with_a_wait() {
        let limiter = RateLimiter::default();
        let limit = RateLimit {
            per_second: 1.0,
            burst: 3,
        };
        let a = limiter.client_key("a");
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(a, limit, start).is_ok());
        }
        let wait = limiter.check(a, limit, start).expect_err("over the burst");
        assert_eq!(wait, Duration::from_secs(1));
        // Another caller has its own bucket.
        assert!(limiter.check(limiter.client_key("b"), limit, start).is_ok());
        // A second later one token is back, and only one.
        let later = start + Duration::from_secs(1);
        assert!(limiter.check(a, limit, later).is_ok());
        assert!(limiter.check(a, limit, later).is_err());
    }

    #[test]
    fn an_ipv6_host_is_one_caller_and_ipv4_ones_are_each_their_own() {
        let key = |text: &str| CallerKey::address(text.parse().expect("address"));
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
        let limiter = RateLimiter::default();
        let limit = RateLimit {
            per_second: 1.0,
            burst: 1,
        };
        assert!(
            limiter
                .check(key("2001:db8::1"), limit, Instant::now())
                .is_ok()
        );
        assert!(
            limiter
                .check(key("2001:db8::2"), limit, Instant::now())
                .is_err(),
            "same /64"
        );
        assert!(
            limiter
                .check(key("2001:db8:0:1::1"), limit, Instant::now())
                .is_ok()
        );
    }

    #[test]
    fn a_flood_of_sources_stays_bounded_and_shares_one_overflow_bucket() {
        let limiter = RateLimiter::default();
        let limit = RateLimit {
            per_second: 1.0,
            burst: 2,
        };
        let mut admitted = 0;
        let mut refused = 0;
        for n in 0..200_000u32 {
            match limiter.check(CallerKey::V4(n), limit, Instant::now()) {
                Ok(()) => admitted += 1,
                Err(_) => refused += 1,
            }
        }
        let bound = SHARDS * SHARD_CAPACITY;
        assert!(limiter.tracked() <= bound, "{} tracked", limiter.tracked());
        // Every tracked caller got its burst's first token; the untracked rest share one
        // bucket per shard (2 tokens each), so most of the flood is refused.
        assert!(admitted >= limiter.tracked(), "{admitted} admitted");
        assert!(admitted <= bound + SHARDS * 2, "{admitted} admitted");
        assert!(refused >= 200_000 - bound - SHARDS * 2, "{refused} refused");
        // A caller tracked before the flood keeps its own bucket.
        let early = CallerKey::V4(0);
        assert!(limiter.check(early, limit, Instant::now()).is_ok());
    }
}
