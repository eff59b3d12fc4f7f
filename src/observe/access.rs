//! One access-log line and one metrics record per request, written when both of its bodies are
//! done — the response's sent whole or dropped because the client or the upstream went away,
//! and the request's read to its end or dropped — so the line carries the bytes that really
//! moved both ways, whether the transfer completed, and how long all of it took. (A store may
//! answer an upload before it has read it: the line then waits for the upload to end.)

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::observe::logging::line::Value;
use crate::observe::metrics::{Metrics, NO_INTEGRATION, Outcome};
use crate::s3::body::BoxError;

/// What the phases learn of a request as it goes, for its log line and its answer's headers.
#[derive(Default)]
pub struct Seen {
    pub client: Option<String>,
    pub bucket: Option<String>,
    pub integration: Option<String>,
    pub upstream_status: Option<u16>,
    /// The store's error code and its own request id, when it answered with an error.
    pub upstream_code: Option<String>,
    pub upstream_request_id: Option<String>,
    /// What the object cache did: `hit`, `miss`, `stale` (changed), `revalidated` (304),
    /// `bypass`; `None` for an integration without caching.
    pub cache: Option<&'static str>,
}

/// What is known of a request by the time its response starts.
pub struct RequestLog {
    pub request_id: String,
    pub method: &'static str,
    pub client: String,
    /// The caller's address: the peer's, or the client's behind a trusted front proxy.
    pub client_ip: Option<std::net::IpAddr>,
    pub bucket: String,
    pub integration: Option<String>,
    pub status: u16,
    /// The S3 error code of an answer the proxy produced itself.
    pub code: Option<&'static str>,
    pub upstream_status: Option<u16>,
    /// The store's error code and request id, when it answered with an error.
    pub upstream_code: Option<String>,
    pub upstream_request_id: Option<String>,
    /// What the object cache did ([`Seen::cache`]).
    pub cache: Option<&'static str>,
    pub started: Instant,
    pub bytes_in: Arc<AtomicU64>,
    pub metrics: Arc<Metrics>,
    /// Where the line waits for the request body's end.
    pub gate: Arc<LineGate>,
}

/// A request's access line, written when the last of its two bodies is done: the response's
/// ([`LoggedBody`]) and the request's ([`CountingBody`]).
pub struct LineGate {
    bodies_left: AtomicUsize,
    finished: Mutex<Option<Finished>>,
}

/// The response's part of the line, kept until the request body is done too.
struct Finished {
    log: RequestLog,
    bytes_out: u64,
    complete: bool,
}

impl LineGate {
    /// A gate waiting for both bodies.
    pub fn new() -> Arc<Self> {
        Arc::new(LineGate {
            bodies_left: AtomicUsize::new(2),
            finished: Mutex::new(None),
        })
    }

    /// One body is done; the second writes the line.
    fn body_done(&self) {
        if self.bodies_left.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let finished = self.finished.lock().ok().and_then(|mut f| f.take());
        if let Some(finished) = finished {
            finished.write();
        }
    }
}

/// A response body that counts what it sends and writes the request's log line at its end.
pub struct LoggedBody<B> {
    inner: B,
    log: Option<RequestLog>,
    bytes_out: u64,
    complete: bool,
}

impl<B: Body> LoggedBody<B> {
    pub fn new(inner: B, log: RequestLog) -> Self {
        // A body that is empty from the start may never be polled: it is complete already.
        let complete = inner.is_end_stream();
        LoggedBody {
            inner,
            log: Some(log),
            bytes_out: 0,
            complete,
        }
    }
}

impl<B> Body for LoggedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        match &poll {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes_out += data.len() as u64;
                }
                // hyper stops polling a body of known length once it has all of it.
                if self.inner.is_end_stream() {
                    self.complete = true;
                }
            }
            Poll::Ready(None) => self.complete = true,
            _ => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for LoggedBody<B> {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            response_done(log, self.bytes_out, self.complete);
        }
    }
}

/// The response's part of the line is known: it waits for the request body's end, if that
/// has not come yet.
fn response_done(log: RequestLog, bytes_out: u64, complete: bool) {
    let gate = log.gate.clone();
    if let Ok(mut finished) = gate.finished.lock() {
        *finished = Some(Finished {
            log,
            bytes_out,
            complete,
        });
    }
    gate.body_done();
}

/// The line of a request whose client left before its answer was ready: no response body
/// will ever be sent, so the transfer is incomplete.
pub fn abandoned(log: RequestLog) {
    response_done(log, 0, false);
}

impl Finished {
    fn write(self) {
        let Finished {
            log,
            bytes_out,
            complete,
        } = self;
        let bytes_in = log.bytes_in.load(Ordering::Relaxed);
        let integration = log.integration.as_deref().unwrap_or(NO_INTEGRATION);
        log.metrics.request(&Outcome {
            integration,
            method: log.method,
            status: log.status,
            bytes_in,
            bytes_out,
            complete,
            upstream_status: log.upstream_status,
            upstream_code: log.upstream_code.as_deref(),
        });
        if !tracing::enabled!(target: "access", tracing::Level::INFO) {
            return;
        }
        let upstream_status = log.upstream_status.map(i64::from).unwrap_or(-1);
        let duration_ms = log.started.elapsed().as_millis() as u64;
        let client_ip = ClientIp(log.client_ip);
        crate::observe::logging::line::access(&[
            ("request_id", Value::Bare(&log.request_id)),
            ("method", Value::Text(log.method)),
            ("client", Value::Bare(&log.client)),
            ("client_ip", Value::Shown(&client_ip)),
            ("bucket", Value::Bare(&log.bucket)),
            ("integration", Value::Text(integration)),
            ("status", Value::Unsigned(log.status.into())),
            ("code", Value::Text(log.code.unwrap_or("-"))),
            ("upstream_status", Value::Signed(upstream_status)),
            ("upstream_code", Value::Text(or_dash(&log.upstream_code))),
            (
                "upstream_request_id",
                Value::Text(or_dash(&log.upstream_request_id)),
            ),
            ("bytes_in", Value::Unsigned(bytes_in)),
            ("bytes_out", Value::Unsigned(bytes_out)),
            ("duration_ms", Value::Unsigned(duration_ms)),
            ("complete", Value::Flag(complete)),
            ("cache", Value::Text(log.cache.unwrap_or("-"))),
        ]);
    }
}

/// An optional field's text, or `-`.
fn or_dash(text: &Option<String>) -> &str {
    text.as_deref().unwrap_or("-")
}

/// The access line's `client_ip`: the address, or `-` for a request with no peer.
struct ClientIp(Option<std::net::IpAddr>);

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(address) => address.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// A request body that counts the bytes it yields and, once dropped, lets the access line
/// be written.
pub struct CountingBody<B> {
    inner: B,
    count: Arc<AtomicU64>,
    gate: Arc<LineGate>,
}

impl<B> CountingBody<B> {
    /// Counts into `count`; the line waits at `gate` for this body to be done.
    pub fn new(inner: B, count: Arc<AtomicU64>, gate: Arc<LineGate>) -> Self {
        CountingBody { inner, count, gate }
    }
}

impl<B> Drop for CountingBody<B> {
    fn drop(&mut self) {
        self.gate.body_done();
    }
}

impl<B> Body for CountingBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &poll
            && let Some(data) = frame.data_ref()
        {
            self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
