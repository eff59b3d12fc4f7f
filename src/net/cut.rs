//! Upstream HTTP/1 connections that the request on them can cut.
//!
//! When the request an upload belongs to is dropped (its client left, or a timeout fired),
//! hyper closes the store connection gracefully: it first flushes what it has buffered, and
//! against a store that stopped reading that flush never ends, so the connection, its socket
//! buffers and the body would stay until the store reads again. Every upstream connection is
//! made through [`Cuttable`], whose stream carries a [`Cut`]; a request with a body holds a
//! [`CutUnlessAnswered`] guard while it waits for the store's answer, and if it is dropped
//! before then, it cuts its connection: the next read or write fails, and hyper drops it at
//! once. HTTP/2 connections are shared by many requests and are never cut.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{CaptureConnection, Connected, Connection};

/// The switch one connection's stream watches.
#[derive(Debug, Default)]
pub struct Cut {
    cut: AtomicBool,
    /// The connection task, to wake when cut while its stream waits.
    waker: Mutex<Option<Waker>>,
}

impl Cut {
    /// Fails the connection's next read or write, and wakes it to find out.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        if let Some(waker) = self.waker.lock().ok().and_then(|mut w| w.take()) {
            waker.wake();
        }
    }

    /// Whether the connection was cut; if not, remembers whom to wake.
    fn check(&self, cx: &Context<'_>) -> io::Result<()> {
        if self.cut.load(Ordering::Acquire) {
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        if let Ok(mut waker) = self.waker.lock() {
            match &*waker {
                Some(known) if known.will_wake(cx.waker()) => {}
                _ => *waker = Some(cx.waker().clone()),
            }
        }
        Ok(())
    }
}

/// A connector whose connections can be cut: wraps `C`'s streams in [`CuttableIo`].
#[derive(Clone)]
pub struct Cuttable<C>(pub C);

impl<C> tower_service::Service<Uri> for Cuttable<C>
where
    C: tower_service::Service<Uri>,
    C::Future: Send + 'static,
{
    type Response = CuttableIo<C::Response>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, C::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            Ok(CuttableIo {
                inner: connecting.await?,
                cut: Arc::new(Cut::default()),
            })
        })
    }
}

/// A stream that fails once its [`Cut`] is set; the connection's metadata carries the `Cut`.
pub struct CuttableIo<T> {
    inner: T,
    cut: Arc<Cut>,
}

/// What [`Connected`] carries for [`CutUnlessAnswered`] to find.
#[derive(Clone)]
struct CutHandle(Arc<Cut>);

impl<T: Connection> Connection for CuttableIo<T> {
    fn connected(&self) -> Connected {
        self.inner.connected().extra(CutHandle(self.cut.clone()))
    }
}

impl<T: Read + Unpin> Read for CuttableIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        self.cut.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for CuttableIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.cut.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.cut.check(cx)?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.cut.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.cut.check(cx)?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Held while a request with a body waits for its answer: dropped before [`answered`]
/// (`CutUnlessAnswered::answered`), it cuts the HTTP/1 connection the request went out on.
pub struct CutUnlessAnswered(Option<CaptureConnection>);

impl CutUnlessAnswered {
    /// Watches the connection `request` will be sent on.
    pub fn new<B>(request: &mut http::Request<B>) -> Self {
        CutUnlessAnswered(Some(
            hyper_util::client::legacy::connect::capture_connection(request),
        ))
    }

    /// The answer came: the connection is hyper's to keep or close.
    pub fn answered(mut self) {
        self.0 = None;
    }
}

impl Drop for CutUnlessAnswered {
    fn drop(&mut self) {
        let Some(captured) = self.0.take() else {
            return;
        };
        let metadata = captured.connection_metadata();
        let Some(connected) = metadata.as_ref().filter(|c| !c.is_negotiated_h2()) else {
            return;
        };
        let mut extras = http::Extensions::new();
        connected.get_extras(&mut extras);
        if let Some(CutHandle(cut)) = extras.get::<CutHandle>() {
            cut.cut();
        }
    }
}
