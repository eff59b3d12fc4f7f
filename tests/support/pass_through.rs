//! A pass-through in front of moto that counts what reaches it and injects STS faults.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use s3_signing_proxy::config::Clock;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;

/// A pass-through in front of moto: forwards every request as received (Host header included,
/// so signatures still verify), counts what it saw, and can be switched to fail like an STS
/// outage.
pub struct PassThrough {
    pub address: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    pub assume_role_calls: Arc<AtomicUsize>,
    pub failing: Arc<AtomicBool>,
    /// A fault injected into STS answers (see [`StsFault`]); `failing` wins over it.
    pub fault: Arc<std::sync::atomic::AtomicU8>,
    /// The `Range` header of every request that carried one, in order.
    pub ranges: Arc<std::sync::Mutex<Vec<String>>>,
    /// Every request's path and headers as they arrived, in order: what the store received.
    pub received: Arc<std::sync::Mutex<Vec<(String, http::HeaderMap)>>>,
    /// When set, AssumeRole answers' credentials expire this long after this clock's now:
    /// STS keeping the time a test moved the proxy to (moto keeps the system's).
    issue_on: Arc<std::sync::Mutex<Option<(Clock, Duration)>>>,
    /// AssumeRole calls held by [`StsFault::Hang`] right now.
    pub hanging: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// Faults a real STS can show but cannot be told to produce.
#[derive(Clone, Copy)]
#[repr(u8)]
pub enum StsFault {
    None = 0,
    /// `400 Throttling`, as AWS answers a caller over its request rate.
    Throttling = 1,
    /// No answer for 30 s.
    Hang = 2,
    /// moto's answer, with `Expiration` rewritten to 8 seconds from now.
    ShortLived = 3,
    /// AWS's answer to a role-chained AssumeRole asking for more than an hour:
    /// `400 ValidationError`; calls asking for an hour or less reach moto.
    ChainedLimit = 4,
}

impl PassThrough {
    pub fn inject(&self, fault: StsFault) {
        self.fault.store(fault as u8, Ordering::SeqCst);
    }

    /// From now on, credentials STS hands out last `lifetime` on `clock` (the proxy's), and
    /// [`StsFault::ShortLived`] ones 8 s on it.
    pub fn issue_on(&self, clock: &Clock, lifetime: Duration) {
        *self.issue_on.lock().expect("issue_on") = Some((clock.clone(), lifetime));
    }
}

impl PassThrough {
    pub async fn start(upstream: SocketAddr) -> PassThrough {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let requests = Arc::new(AtomicUsize::new(0));
        let assume_role_calls = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let fault = Arc::new(std::sync::atomic::AtomicU8::new(0));
        let ranges = Arc::new(std::sync::Mutex::new(Vec::new()));
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let issue_on: Arc<std::sync::Mutex<Option<(Clock, Duration)>>> = Arc::default();
        let hanging = Arc::new(AtomicUsize::new(0));
        let counters = (
            requests.clone(),
            assume_role_calls.clone(),
            failing.clone(),
            fault.clone(),
            (ranges.clone(), received.clone()),
            (issue_on.clone(), hanging.clone()),
        );
        let task = tokio::spawn(async move {
            let client: Client<HttpConnector, Full<Bytes>> =
                Client::builder(TokioExecutor::new()).build_http();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let client = client.clone();
                let (
                    requests,
                    assume_role_calls,
                    failing,
                    fault,
                    (ranges, received),
                    (issue_on, hanging),
                ) = counters.clone();
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let client = client.clone();
                    let (requests, assume_role_calls, failing, fault) = (
                        requests.clone(),
                        assume_role_calls.clone(),
                        failing.clone(),
                        fault.clone(),
                    );
                    let (issue_on, hanging) = (issue_on.clone(), hanging.clone());
                    if let Some(range) = request.headers().get("range") {
                        let range = String::from_utf8_lossy(range.as_bytes()).into_owned();
                        ranges.lock().expect("ranges").push(range);
                    }
                    let path = request.uri().path().to_string();
                    let headers = request.headers().clone();
                    received.lock().expect("received").push((path, headers));
                    async move {
                        requests.fetch_add(1, Ordering::SeqCst);
                        let (mut parts, body) = request.into_parts();
                        let body = body.collect().await?.to_bytes();
                        let assume_role =
                            String::from_utf8_lossy(&body).contains("Action=AssumeRole");
                        if assume_role {
                            assume_role_calls.fetch_add(1, Ordering::SeqCst);
                        }
                        if failing.load(Ordering::SeqCst) {
                            return Ok::<_, hyper::Error>(outage());
                        }
                        let fault = if assume_role {
                            fault.load(Ordering::SeqCst)
                        } else {
                            0
                        };
                        if fault == StsFault::Throttling as u8 {
                            return Ok(throttling());
                        }
                        if fault == StsFault::ChainedLimit as u8 && asks_over_an_hour(&body) {
                            return Ok(chained_limit());
                        }
                        if fault == StsFault::Hang as u8 {
                            hanging.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                            hanging.fetch_sub(1, Ordering::SeqCst);
                            return Ok(outage());
                        }
                        let path = parts
                            .uri
                            .path_and_query()
                            .map(|p| p.as_str())
                            .unwrap_or("/");
                        parts.uri = format!("http://{upstream}{path}").parse().expect("uri");
                        let response = match client
                            .request(Request::from_parts(parts, Full::new(body)))
                            .await
                        {
                            Ok(response) => response,
                            Err(_) => return Ok(outage()),
                        };
                        let (mut parts, body) = response.into_parts();
                        let mut body = body.collect().await?.to_bytes();
                        let issue_on = issue_on.lock().expect("issue_on").clone();
                        let (now, lifetime) = issue_on
                            .map_or((SystemTime::now(), None), |(clock, lifetime)| {
                                (clock.now(), Some(lifetime))
                            });
                        let lifetime = if fault == StsFault::ShortLived as u8 {
                            Some(Duration::from_secs(8))
                        } else {
                            lifetime
                        };
                        if let (true, Some(lifetime)) = (assume_role, lifetime) {
                            body = expiring_at(&body, now + lifetime);
                            parts.headers.remove("content-length");
                        }
                        Ok(Response::from_parts(parts, Full::new(body)))
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        PassThrough {
            address,
            requests,
            assume_role_calls,
            failing,
            fault,
            ranges,
            received,
            issue_on,
            hanging,
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn assume_role_calls(&self) -> usize {
        self.assume_role_calls.load(Ordering::SeqCst)
    }
}

impl Drop for PassThrough {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn throttling() -> Response<Full<Bytes>> {
    sts_error(
        StatusCode::BAD_REQUEST,
        "Sender",
        "Throttling",
        "Rate exceeded",
    )
}

/// An STS error document, shaped as AWS sends them.
fn sts_error(status: StatusCode, kind: &str, code: &str, message: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(format!(
            "<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error></ErrorResponse>"
        ))))
        .expect("response")
}

/// Whether an AssumeRole form asks for `DurationSeconds` over 3600.
fn asks_over_an_hour(form: &[u8]) -> bool {
    String::from_utf8_lossy(form)
        .split('&')
        .filter_map(|pair| pair.strip_prefix("DurationSeconds="))
        .any(|seconds| seconds.parse::<u32>().is_ok_and(|s| s > 3600))
}

fn chained_limit() -> Response<Full<Bytes>> {
    sts_error(
        StatusCode::BAD_REQUEST,
        "Sender",
        "ValidationError",
        "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
    )
}

/// An AssumeRole answer whose credentials expire 8 seconds from now.
/// An STS answer with its credentials' `Expiration` rewritten to `at`.
fn expiring_at(body: &[u8], at: SystemTime) -> Bytes {
    let text = String::from_utf8_lossy(body);
    let (Some(start), Some(end)) = (text.find("<Expiration>"), text.find("</Expiration>")) else {
        return Bytes::copy_from_slice(body);
    };
    let seconds = at
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let rewritten = format!(
        "{}<Expiration>{}</Expiration>{}",
        &text[..start],
        iso8601(seconds),
        &text[end + "</Expiration>".len()..]
    );
    Bytes::from(rewritten)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since 1970 (civil-from-days, proleptic Gregorian).
fn iso8601(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn outage() -> Response<Full<Bytes>> {
    sts_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Receiver",
        "ServiceUnavailable",
        "injected outage",
    )
}
