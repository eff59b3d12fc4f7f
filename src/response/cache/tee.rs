//! A whole object passed on as the store sends it and kept once all of it passed.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame};

use super::keys::{Entry, FillGuard, Key};
use super::tiers::Entries;
use crate::s3::body::{BoxError, ProxyBody};

/// What a [`Tee`] needs to keep the body it saw.
pub struct Store {
    pub cache: Entries,
    pub key: Key,
    pub headers: HeaderMap,
    pub ttl: Duration,
    /// Released once the entry is kept (or the body broke off): the waiting misses look again.
    pub _guard: Option<FillGuard>,
}

/// A body passed on frame by frame as it arrives, and kept once all of it passed (its
/// `Content-Length`, checked when the body ends or is dropped: hyper stops polling a sized
/// body after its last byte), unless it outgrew the limit or broke off.
pub struct Tee {
    inner: ProxyBody,
    kept: Option<BytesMut>,
    /// The `Content-Length` the store announced.
    length: u64,
    store: Option<Store>,
}

impl Tee {
    /// Passes `inner` on, keeping its `length` bytes as `store` says.
    pub fn new(inner: ProxyBody, length: u64, store: Store) -> Self {
        Tee {
            inner,
            kept: Some(BytesMut::with_capacity(length as usize)),
            length,
            store: Some(store),
        }
    }

    /// Keeps the body if all of it passed; at most once.
    fn finish(&mut self) {
        let whole = self
            .kept
            .as_ref()
            .is_some_and(|kept| kept.len() as u64 == self.length);
        if let (true, Some(kept), Some(store)) = (whole, self.kept.take(), self.store.take()) {
            let entry = Entry {
                headers: store.headers,
                total: kept.len() as u64,
                body: kept.freeze(),
                checked: store.cache.clock().instant(),
                ttl: store.ttl,
                clock: store.cache.clock().clone(),
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
