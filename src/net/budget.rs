//! Bodies on their way through the proxy, in bounded memory.
//!
//! Every frame of an upload body the proxy hands the store is charged to a budget shared by
//! all requests (`max_buffered_body_bytes`) until the upstream connection has written it and
//! dropped it; at the budget's end the next frame waits, so the proxy stops reading upload
//! bodies and TCP pushes back on the clients. Download frames are charged likewise until
//! written to their clients, and a form upload's part buffer while it fills and is sent. Nothing is copied: a frame carries its charge
//! ([`Bytes::from_owner`]) and gives it back when its last reference goes.
//!
//! Each upload also sets how much its client connection may read at a time (the
//! connection's [`ReadWindow`]): a little (8 KiB) while the store lags, and, while
//! everything handed to the store has been written, twice as much with each frame up to
//! `body_buffer_bytes` (large reads cost fewer system calls), for at most `wide_transfers`
//! uploads at once. So an upload whose store stops reading holds a few small frames of the
//! proxy's memory, and the rest of its body waits in the kernel's buffers and the client's.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::PollSemaphore;

use crate::config::Limits;
use crate::net::limits::ReadWindow;
use crate::s3::body::BoxError;

/// What a lagging upload reads at a time.
const NARROW_WINDOW: usize = 8 * 1024;

/// The budget every upload body is charged to, and the wide windows uploads share.
pub struct Budget {
    permits: Arc<Semaphore>,
    total: usize,
    wide_in_use: Arc<AtomicUsize>,
    wide_most: usize,
    wide_window: usize,
}

impl Budget {
    pub fn new(limits: &Limits) -> Budget {
        Budget {
            permits: Arc::new(Semaphore::new(limits.max_buffered_body_bytes)),
            total: limits.max_buffered_body_bytes,
            wide_in_use: Arc::default(),
            wide_most: limits.wide_transfers,
            wide_window: limits.body_buffer_bytes,
        }
    }

    /// Upload body bytes handed to stores and not yet written by them.
    pub fn in_use(&self) -> usize {
        self.total.saturating_sub(self.permits.available_permits())
    }

    /// `body`, charged to the budget as it goes upstream; `window` is its client connection's
    /// read window (`None` for HTTP/2, which has flow control of its own).
    pub fn upload<B>(&self, body: B, window: Option<Arc<ReadWindow>>) -> Budgeted<B> {
        if let Some(window) = &window {
            window.set(NARROW_WINDOW);
        }
        self.charged(body, window)
    }

    fn charged<B>(&self, body: B, window: Option<Arc<ReadWindow>>) -> Budgeted<B> {
        Budgeted {
            inner: body,
            permits: PollSemaphore::new(self.permits.clone()),
            total: self.total,
            waiting: None,
            in_flight: Arc::default(),
            window,
            wide: None,
            wide_in_use: self.wide_in_use.clone(),
            wide_most: self.wide_most,
            wide_window: self.wide_window,
        }
    }
}

impl Budget {
    /// A store's response `body`, its frames charged to the budget until written to the
    /// client: at the budget's end the proxy stops reading from the stores.
    pub fn download<B>(&self, body: B) -> Budgeted<B> {
        self.charged(body, None)
    }

    /// An empty hold on the budget, for a buffer that grows ([`Held::cover`]).
    pub fn hold(&self) -> Held {
        Held {
            permits: self.permits.clone(),
            total: self.total,
            permit: None,
        }
    }
}

/// Budget held for a buffer the proxy fills itself (a form upload's part), given back when
/// dropped.
pub struct Held {
    permits: Arc<Semaphore>,
    total: usize,
    permit: Option<OwnedSemaphorePermit>,
}

impl Held {
    /// Holds at least `bytes` (one whole budget at most), waiting for room if need be.
    pub async fn cover(&mut self, bytes: usize) -> Result<(), BoxError> {
        let held = self.permit.as_ref().map_or(0, |p| p.num_permits());
        let wanted = bytes.min(self.total);
        if wanted <= held {
            return Ok(());
        }
        let more = u32::try_from(wanted - held).map_err(|_| "a buffer past the budget")?;
        let permit = self.permits.clone().acquire_many_owned(more).await?;
        match &mut self.permit {
            Some(held) => held.merge(permit),
            None => self.permit = Some(permit),
        }
        Ok(())
    }
}

/// A body whose frames are charged to the [`Budget`] until written on (an upload's to its
/// store, a download's to its client).
pub struct Budgeted<B> {
    inner: B,
    permits: PollSemaphore,
    total: usize,
    /// A frame read from the client, waiting for room in the budget.
    waiting: Option<Bytes>,
    /// This upload's bytes handed upstream and not yet written.
    in_flight: Arc<AtomicUsize>,
    window: Option<Arc<ReadWindow>>,
    /// Whether this upload holds one of the wide windows.
    wide: Option<WideWindow>,
    wide_in_use: Arc<AtomicUsize>,
    wide_most: usize,
    wide_window: usize,
}

/// One of the wide windows, given back when dropped.
struct WideWindow(Arc<AtomicUsize>);

impl Drop for WideWindow {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A frame's bytes and the budget they are charged to, given back with the last reference.
struct Charged {
    data: Bytes,
    in_flight: Arc<AtomicUsize>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Charged {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Charged {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(self.data.len(), Ordering::Relaxed);
    }
}

impl<B> Budgeted<B> {
    /// The next read's size: wider while the store keeps up (nothing this upload handed it
    /// is still unwritten) and a wide window is free; narrow as soon as it lags.
    fn adapt_window(&mut self) {
        let Some(window) = &self.window else {
            return;
        };
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            self.wide = None;
            window.set(NARROW_WINDOW);
            return;
        }
        let now = window.get();
        if now >= self.wide_window {
            return;
        }
        if self.wide.is_none() {
            let most = self.wide_most;
            let taken =
                self.wide_in_use
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |taken| {
                        (taken < most).then_some(taken + 1)
                    });
            if taken.is_err() {
                return;
            }
            self.wide = Some(WideWindow(self.wide_in_use.clone()));
        }
        window.set((now * 2).min(self.wide_window));
    }

    fn charge(&self, data: Bytes, permit: OwnedSemaphorePermit) -> Bytes {
        self.in_flight.fetch_add(data.len(), Ordering::Relaxed);
        Bytes::from_owner(Charged {
            data,
            in_flight: self.in_flight.clone(),
            _permit: permit,
        })
    }

    /// The permits a frame of `length` bytes takes (one whole budget at most).
    fn cost(&self, length: usize) -> usize {
        length.clamp(1, self.total)
    }
}

impl<B> Drop for Budgeted<B> {
    fn drop(&mut self) {
        // The connection's next request reads as it likes until it says otherwise.
        if let Some(window) = &self.window {
            window.set(usize::MAX);
        }
    }
}

impl<B> Body for Budgeted<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let data = match self.waiting.take() {
            Some(data) => data,
            None => match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                None => return Poll::Ready(None),
                Some(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        self.adapt_window();
                        data
                    }
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
            },
        };
        let cost = self.cost(data.len());
        match self.permits.poll_acquire_many(cx, cost as u32) {
            Poll::Ready(Some(permit)) => {
                Poll::Ready(Some(Ok(Frame::data(self.charge(data, permit)))))
            }
            Poll::Ready(None) => Poll::Ready(Some(Err("the body budget is closed".into()))),
            Poll::Pending => {
                self.waiting = Some(data);
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.waiting.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        if let Some(waiting) = &self.waiting {
            let extra = waiting.len() as u64;
            hint.set_lower(hint.lower() + extra);
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + extra);
            }
        }
        hint
    }
}
