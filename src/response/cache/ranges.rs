//! Ranges of objects, cached in aligned chunks: a video's Range requests are answered from the
//! chunks they cover, and a miss asks the store for the aligned span around the client's range,
//! passes the client's bytes on as they arrive and keeps each chunk as it completes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame};

use super::keys::{self, Entry, FillGuard, Key, Piece, Pieces};
use super::tiers::Entries;
use crate::s3::body::{self, BoxError, ProxyBody};

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against `whole` bytes: the first and last byte, or
/// `Err` when unsatisfiable; `None` for anything else (several ranges), which the store answers.
pub fn byte_range(text: &str, whole: u64) -> Option<Result<(u64, u64), ()>> {
    match spec(text)? {
        Spec::Suffix(suffix) => {
            if suffix == 0 || whole == 0 {
                return Some(Err(()));
            }
            Some(Ok((whole.saturating_sub(suffix), whole - 1)))
        }
        Spec::From(first, last) => {
            let last = last.unwrap_or(u64::MAX).min(whole.saturating_sub(1));
            if first >= whole || last < first {
                return Some(Err(()));
            }
            Some(Ok((first, last)))
        }
    }
}

/// One byte range as a client wrote it.
#[derive(Debug, PartialEq)]
enum Spec {
    /// `bytes=a-b` (`None`: `bytes=a-`, to the end).
    From(u64, Option<u64>),
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

fn spec(text: &str) -> Option<Spec> {
    let spec = text.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    match (first.is_empty(), last.is_empty()) {
        (true, false) => Some(Spec::Suffix(last.parse().ok()?)),
        (false, true) => Some(Spec::From(first.parse().ok()?, None)),
        (false, false) => {
            let (first, last) = (first.parse().ok()?, last.parse().ok()?);
            (first <= last).then_some(Spec::From(first, Some(last)))
        }
        (true, true) => None,
    }
}

/// A ranged miss: the client's range, and the aligned span the store is asked for.
pub struct Fetch {
    pub(super) key: Key,
    first: u64,
    last: Option<u64>,
    span_first: u64,
    span_last: Option<u64>,
    pub(super) guard: Option<FillGuard>,
}

impl Fetch {
    /// The `Range` the store is asked for: whole chunks around the client's range.
    pub fn upstream_range(&self) -> HeaderValue {
        let text = match self.span_last {
            Some(last) => format!("bytes={}-{last}", self.span_first),
            None => format!("bytes={}-", self.span_first),
        };
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("bytes=0-"))
    }

    /// The chunks of the span (at most 64), which the disk tier may hold.
    pub(super) fn chunk_keys(&self, chunk: u64) -> Vec<Key> {
        let first = self.span_first / chunk;
        let last = self.span_last.map_or(first, |last| last / chunk);
        (first..=last.min(first + 63))
            .map(|n| self.key.piece(Piece::Chunk(n)))
            .collect()
    }

    /// The chunk whose fetch other misses wait for.
    pub(super) fn first_chunk(&self, chunk: u64) -> Key {
        self.key.piece(Piece::Chunk(self.first / chunk))
    }
}

/// What the chunks say about a single-range GET of the object `key`.
pub enum Ranged {
    /// Every chunk it covers is kept and fresh: the answer, and its body's length.
    Hit(Response<ProxyBody>, u64),
    /// Some are not: fetch the aligned span.
    Fetch(Box<Fetch>),
    /// Not one the chunks can answer or fetch (several ranges; the last bytes of an object
    /// whose size is not known): the store answers it as it is.
    Bypass,
}

/// Looks up the chunks a GET's `Range` covers. With `If-Range`, only when the kept version is
/// the one it names; otherwise (or with no kept version to compare) the store answers.
pub fn look(
    entries: &Entries,
    key: &Key,
    (range, if_range, headers): (&str, Option<&HeaderValue>, &HeaderMap),
    chunk: u64,
) -> Ranged {
    let Some(spec) = spec(range) else {
        return Ranged::Bypass;
    };
    let head = entries.get(&key.piece(Piece::Head)).filter(|h| h.fresh());
    if let Some(if_range) = if_range
        && !head
            .as_ref()
            .is_some_and(|head| keys::if_range_holds(head, if_range))
    {
        return Ranged::Bypass;
    }
    // The client's validators against the kept version (without one, the store answers them).
    if let Some(head) = &head {
        match keys::not_modified(head, headers) {
            Some(true) => return Ranged::Hit(keys::unchanged(head), 0),
            Some(false) => {}
            None => return Ranged::Bypass,
        }
    }
    let (first, last) = match (&spec, &head) {
        (_, Some(head)) => match byte_range(range, head.total) {
            Some(Ok((first, last))) => (first, Some(last)),
            // Unsatisfiable against the size we know: the store says so itself.
            _ => return Ranged::Bypass,
        },
        (Spec::From(first, last), None) => (*first, *last),
        (Spec::Suffix(_), None) => return Ranged::Bypass,
    };
    if let (Some(head), Some(last)) = (&head, last)
        && let Some(pieces) = covered(entries, key, head, (first, last), chunk)
    {
        let length = last - first + 1;
        let response = keys::answer(head, StatusCode::OK, body::stream(Pieces(pieces)));
        return Ranged::Hit(keys::ranged(response, (first, length), head.total), length);
    }
    let span_last = last.map(|last| {
        let end = (last / chunk + 1) * chunk - 1;
        head.as_ref()
            .map_or(end, |head| end.min(head.total.saturating_sub(1)))
    });
    Ranged::Fetch(Box::new(Fetch {
        key: key.clone(),
        first,
        last,
        span_first: first / chunk * chunk,
        span_last,
        guard: None,
    }))
}

/// The slices of the kept chunks that make bytes `first..=last`, if every chunk is kept, fresh
/// and of the same version as `head`.
fn covered(
    entries: &Entries,
    key: &Key,
    head: &Entry,
    (first, last): (u64, u64),
    chunk: u64,
) -> Option<VecDeque<Bytes>> {
    let mut pieces = VecDeque::new();
    for n in first / chunk..=last / chunk {
        let entry = entries.get(&key.piece(Piece::Chunk(n)))?;
        if !entry.fresh() || entry.etag() != head.etag() {
            return None;
        }
        let start = n * chunk;
        let from = first.max(start) - start;
        let to = (last.min(start + chunk - 1) - start + 1).min(entry.body.len() as u64);
        if from >= to {
            return None;
        }
        pieces.push_back(entry.body.slice(from as usize..to as usize));
    }
    Some(pieces)
}

/// `Content-Range: bytes a-b/total` of a store's 206.
fn content_range(headers: &HeaderMap) -> Option<(u64, u64, u64)> {
    let text = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let (span, total) = text.strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?, total.parse().ok()?))
}

/// The store's answer to a ranged miss (after the response phase): its 206 for the aligned span
/// becomes the client's 206 for its own range, passed on as it arrives, each whole chunk kept
/// (unless the store forbids keeping it): the answer, and whether it keeps chunks. Anything
/// but a 206 for the span is passed on as it is.
pub fn fill(
    entries: &Entries,
    fetch: Fetch,
    (chunk, ttl): (u64, Duration),
    response: Response<ProxyBody>,
) -> (Response<ProxyBody>, bool) {
    let Some((start, end, total)) = content_range(response.headers()).filter(|(start, _, _)| {
        response.status() == StatusCode::PARTIAL_CONTENT && *start == fetch.span_first
    }) else {
        return (response, false);
    };
    let last = fetch.last.unwrap_or(u64::MAX).min(end);
    if fetch.first > last {
        let refused = crate::s3::error::Error::InvalidRange.into_response("", false);
        return (refused, false);
    }
    let (mut parts, inner) = response.into_parts();
    let mut headers = parts.headers.clone();
    headers.remove(header::CONTENT_RANGE);
    headers.remove(header::CONTENT_LENGTH);
    let keeper = (!keys::forbidden(&headers)).then(|| {
        let head = Entry {
            headers,
            body: Bytes::new(),
            total,
            checked: entries.clock().instant(),
            ttl,
            clock: entries.clock().clone(),
        };
        let replaced = entries.get(&fetch.key.piece(Piece::Head));
        if replaced.is_some_and(|old| old.etag() != head.etag()) {
            // Another version of the object: its kept chunks are not this one's.
            for n in 0..total.div_ceil(chunk) {
                entries.invalidate(&fetch.key.piece(Piece::Chunk(n)));
            }
        }
        let head = Arc::new(head);
        entries.insert(fetch.key.piece(Piece::Head), head.clone());
        Keeper {
            entries: entries.clone(),
            key: fetch.key.clone(),
            head,
            chunk,
            buffer: BytesMut::new(),
            buffer_start: start,
            _guard: fetch.guard,
        }
    });
    let length = last - fetch.first + 1;
    let keeps = keeper.is_some();
    parts.headers.remove(header::CONTENT_RANGE);
    let window = Window {
        inner: Some(inner),
        position: start,
        window: (fetch.first, last),
        end,
        keeper,
    };
    let response = Response::from_parts(parts, body::stream(window));
    (keys::ranged(response, (fetch.first, length), total), keeps)
}

/// Keeps each whole chunk of a span as it passes.
struct Keeper {
    entries: Entries,
    key: Key,
    head: Arc<Entry>,
    chunk: u64,
    buffer: BytesMut,
    /// The offset of the buffer's first byte (a chunk's first).
    buffer_start: u64,
    /// Released when the span ends or breaks off: misses waiting for it look again.
    _guard: Option<FillGuard>,
}

impl Keeper {
    /// Takes the bytes at `offset`; keeps each chunk they complete.
    fn take(&mut self, offset: u64, data: &[u8]) {
        debug_assert_eq!(offset, self.buffer_start + self.buffer.len() as u64);
        self.buffer.extend_from_slice(data);
        while self.buffer.len() as u64 >= self.chunk {
            let piece = self.buffer.split_to(self.chunk as usize).freeze();
            self.keep(piece);
        }
        if self.buffer_start + self.buffer.len() as u64 == self.head.total
            && !self.buffer.is_empty()
        {
            // The object's last, shorter chunk.
            let piece = self.buffer.split().freeze();
            self.keep(piece);
        }
    }

    fn keep(&mut self, body: Bytes) {
        let n = self.buffer_start / self.chunk;
        self.buffer_start += body.len() as u64;
        let entry = Entry {
            headers: self.head.headers.clone(),
            total: self.head.total,
            body,
            checked: self.head.checked,
            ttl: self.head.ttl,
            clock: self.head.clock.clone(),
        };
        self.entries
            .insert(self.key.piece(Piece::Chunk(n)), Arc::new(entry));
    }
}

/// The store's span passed on as the client's window of it; with a keeper, the chunks are kept
/// as they pass. Once the window is sent, hyper stops polling (the length is announced): what
/// is left of the window's last chunk is read in the background, so that chunk is kept too.
struct Window {
    inner: Option<ProxyBody>,
    /// The offset of the next byte the store sends.
    position: u64,
    /// The client's first and last byte.
    window: (u64, u64),
    /// The span's last byte.
    end: u64,
    keeper: Option<Keeper>,
}

impl Body for Window {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let (first, last) = this.window;
        loop {
            if this.position > last {
                return Poll::Ready(None);
            }
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match std::pin::Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let at = this.position;
                    this.position += data.len() as u64;
                    if let Some(keeper) = this.keeper.as_mut() {
                        keeper.take(at, &data);
                    }
                    let from = first.max(at);
                    let to = last.min(this.position.saturating_sub(1));
                    if from <= to && !data.is_empty() {
                        let slice = data.slice((from - at) as usize..=(to - at) as usize);
                        return Poll::Ready(Some(Ok(Frame::data(slice))));
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    this.keeper = None;
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(None) => {
                    this.inner = None;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.position > self.window.1 || self.inner.is_none()
    }
}

/// How long the rest of a window's last chunk may take to arrive once the client has its bytes.
const FINISH_CHUNK: Duration = Duration::from_secs(30);

impl Drop for Window {
    fn drop(&mut self) {
        // The client got its whole window and the span goes on to the end of a chunk: read that
        // rest (less than one chunk) so the chunk is kept. A client that left early gets nothing
        // more read for it.
        let done = self.position > self.window.1;
        let (Some(mut inner), Some(mut keeper)) = (self.inner.take(), self.keeper.take()) else {
            return;
        };
        if !done || self.position > self.end {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut position = self.position;
        runtime.spawn(async move {
            let rest = async {
                while let Some(Ok(frame)) = http_body_util::BodyExt::frame(&mut inner).await {
                    if let Ok(data) = frame.into_data() {
                        keeper.take(position, &data);
                        position += data.len() as u64;
                    }
                }
            };
            let _ = tokio::time::timeout(FINISH_CHUNK, rest).await;
        });
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
        assert_eq!(byte_range("bytes=5-1", 100), None);
        assert_eq!(byte_range("bytes=0-1,5-6", 100), None);
        assert_eq!(byte_range("items=0-1", 100), None);
    }
}
