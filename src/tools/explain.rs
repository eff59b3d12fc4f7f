//! `s3-signing-proxy explain` and the admin listener's `POST /explain`: one request, taken
//! through the same steps the proxy takes it through, each step's decision reported in the
//! order the request meets them — route, front door, integration, authorisation, guard,
//! credentials, upstream request — and, with `send`, what the store answered.
//!
//! It shows access key ids and credential scopes, never a secret, a session token or a
//! signature of the proxy's: the session token in an upstream canonical request is replaced
//! with `<redacted>`.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, Request};

use crate::auth::front_door::{Authentication, Caller, Clients, Verified};
use crate::config::Integration;
use crate::net::limits::RateLimiter;
use crate::net::peer::Peer;
use crate::observe::access::Seen;
use crate::observe::metrics::Metrics;
use crate::proxy::Proxy;
use crate::request::admit::{self, Admission, Admitted, Gate};
use crate::request::integration::Target;
use crate::request::steps::{self, Head, Observer};
use crate::s3::error::Error;
use crate::s3::route::Route;
use crate::upstream::state::State;

mod render;
mod upstream_steps;

pub use render::{render, render_json};

/// How far `explain` goes.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Sign the request as this issued client first (SigV4 in headers, `UNSIGNED-PAYLOAD`).
    pub client: Option<String>,
    /// Skip STS and the store: credentials are described, not fetched, and the upstream
    /// request is signed with a placeholder key.
    pub offline: bool,
    /// Also send the request through the proxy and report the answer.
    pub send: bool,
    /// The client's own canonical request (from its SDK's debug log), to show the first line
    /// where the proxy's differs.
    pub compare: Option<String>,
}

/// A step's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The step let the request on.
    Passed,
    /// The step refused the request: the answer is the refusal.
    Refused,
    /// The proxy answers the request itself at this step.
    Answered,
    /// Not run (offline, or nothing to do).
    Skipped,
}

/// One step: its name, outcome and what it found, in order.
#[derive(Debug, Clone)]
pub struct Step {
    /// `shape`, `route`, `cors`, `front door`, `service`, `integration`, `authorisation`,
    /// `config`, `guard`, `credentials`, `region`,
    /// `upstream request`, `sent`.
    pub name: &'static str,
    /// What the step decided.
    pub outcome: Outcome,
    /// What it found, as (what, value) pairs; a value may span lines.
    pub facts: Vec<(&'static str, String)>,
}

/// The steps, and the answer the client gets (or would get).
#[derive(Debug, Clone, Default)]
pub struct Explanation {
    /// Each step the request met.
    pub steps: Vec<Step>,
    /// `forwarded to the store`, or the status and S3 error code of the proxy's own answer.
    pub answer: String,
}

impl Explanation {
    fn step(&mut self, name: &'static str, outcome: Outcome, facts: Vec<(&'static str, String)>) {
        self.steps.push(Step {
            name,
            outcome,
            facts,
        });
    }

    /// The proxy answers at `name` itself, with `what`; the store is never asked.
    fn answered(&mut self, name: &'static str, what: &str) {
        self.step(name, Outcome::Answered, vec![("answer", what.to_string())]);
        self.answer = "answered by the proxy".to_string();
    }

    /// A refusal at `name`: the error's code, status and message, and the answer.
    fn refuse(&mut self, name: &'static str, error: &Error) {
        let answer = format!("{} {}", error.status().as_u16(), error.code());
        self.step(
            name,
            Outcome::Refused,
            vec![("error", answer.clone()), ("message", error.to_string())],
        );
        self.answer = answer;
    }
}

/// The request `explain` is asked about: `method url` with `Name: value` headers. A URL that
/// is only a path is sent to `listen`; `Host` is the URL's authority unless a header sets it.
pub fn request(
    method: &str,
    url: &str,
    headers: &[String],
    listen: std::net::SocketAddr,
) -> Result<Request<()>, String> {
    let url = if url.starts_with('/') {
        format!("http://{listen}{url}")
    } else {
        url.to_string()
    };
    let uri: http::Uri = url.parse().map_err(|e| format!("the URL {url}: {e}"))?;
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|e| format!("the method {method}: {e}"))?;
    // A client sends the path and query, and names the host in `Host`.
    let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let mut request = Request::builder().method(method).uri(target);
    let mut has_host = false;
    for header in headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("the header {header:?} is not `Name: value`"))?;
        has_host |= name.trim().eq_ignore_ascii_case("host");
        request = request.header(name.trim(), value.trim());
    }
    if !has_host {
        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        request = request.header(http::header::HOST, authority);
    }
    request.body(()).map_err(|e| format!("the request: {e}"))
}

/// Explains `request` as `proxy` would handle it now. Fails only when `options` name an
/// unknown client.
pub async fn explain(
    proxy: &Proxy,
    mut request: Request<()>,
    options: &Options,
) -> Result<Explanation, String> {
    let state = proxy.state();
    if let Some(lazy) = &state.tenants.lazy {
        // What the proxy fetches on demand before the request phase, fetched here the same way.
        if let Some(client) = &options.client {
            lazy.prepare_client(&state.tenants.clients, client)
                .await
                .map_err(|error| error.to_string())?;
        }
        let names = crate::request::admit::named(&state.tenants, &request);
        lazy.prepare(state.tenants.tables(), names)
            .await
            .map_err(|error| error.to_string())?;
    }
    if let Some(client) = &options.client {
        sign_as(&state.tenants.clients, client, &mut request)?;
    }
    let original = request.clone();
    let mut explanation = Explanation::default();
    if let Some(admitted) = request_phase(proxy, &state, request, options, &mut explanation) {
        upstream_steps::upstream_phase(&state, admitted, options, &mut explanation).await;
    }
    if options.send {
        send(proxy, original, &mut explanation).await;
    }
    Ok(explanation)
}

/// Signs `request` as the issued client `key_id`, as an SDK pointed at the proxy would.
fn sign_as(clients: &Clients, key_id: &str, request: &mut Request<()>) -> Result<(), String> {
    let secret = clients
        .secret_of(key_id)
        .ok_or_else(|| format!("no client has the access key id {key_id}"))?;
    let credentials = aws_credential_types::Credentials::new(key_id, secret, None, None, "explain");
    crate::upstream::sign::sign_request(request, &credentials, "us-east-1", SystemTime::now())
        .map_err(|error| error.to_string())
}

/// The request phase, run by [`admit::admit`] itself with a recorder as its observer: what
/// it hands on, or `None` once a step refused or answered. `explain` has no client address
/// (a policy limited to a range of addresses is refused), and its own rate limiter (it spends
/// none of the caller's tokens).
fn request_phase(
    proxy: &Proxy,
    state: &State,
    request: Request<()>,
    options: &Options,
    explanation: &mut Explanation,
) -> Option<Admitted<()>> {
    let (rate_limiter, metrics) = (RateLimiter::default(), Metrics::default());
    let gate = Gate {
        rate_limiter: &rate_limiter,
        metrics: &metrics,
        started: proxy.gate().started,
    };
    let peer = Peer {
        socket: None,
        client: None,
    };
    let mut recorder = Recorder {
        explanation,
        options,
    };
    let (mut seen, mut audience) = (Seen::default(), admit::Audience::default());
    match admit::admit(
        &state.tenants,
        request,
        peer,
        &gate,
        (&mut seen, &mut audience),
        &mut recorder,
    ) {
        Ok(Admission::Forward(admitted)) => Some(*admitted),
        Ok(Admission::Answered(_) | Admission::Form(_)) | Err(_) => None,
    }
}

/// Writes each step the request phase reports as explain's steps.
struct Recorder<'a> {
    explanation: &'a mut Explanation,
    options: &'a Options,
}

impl Observer for Recorder<'_> {
    fn passed(&mut self, step: steps::Step) {
        if step == steps::Step::Guard {
            self.explanation.step("guard", Outcome::Passed, Vec::new());
        }
    }

    fn refused(&mut self, step: steps::Step, error: &Error) {
        // The front door reports its own refusal, with what it computed.
        if step != steps::Step::FrontDoor {
            self.explanation.refuse(step_name(step, Some(error)), error);
        }
    }

    fn answered(&mut self, step: steps::Step) {
        let what = match step {
            steps::Step::Preflight => "a CORS preflight, answered from the config",
            // Its caller, policy and key are in the form, which explain does not read.
            steps::Step::Form => "a form upload, verified from the fields in its body",
            steps::Step::Service => "the buckets this caller reaches",
            steps::Step::Session => "the signed policy's cookies, set by the proxy",
            _ => "from the integration's config",
        };
        self.explanation.answered(step_name(step, None), what);
        if step == steps::Step::Form {
            // What a form upload becomes is decided by its body.
            self.explanation.answer = "handed to the form upload".to_string();
        }
    }

    fn routed(&mut self, route: &Route) {
        self.explanation
            .step("route", Outcome::Passed, route_facts(route));
    }

    fn front_door(&mut self, head: Head<'_>, caller: Result<&Verified, &Error>) {
        front_door(head, caller, self.options, self.explanation);
    }

    fn resolved(&mut self, route: &Route, verified: &Verified, target: &Target) {
        self.explanation
            .step("integration", Outcome::Passed, target_facts(target));
        let rule = rule(&verified.caller, route, &target.integration);
        self.explanation
            .step("authorisation", Outcome::Passed, vec![("allowed by", rule)]);
    }
}

/// The name explain gives a step. A refusal to let this caller do this is `authorisation`,
/// whichever step found it.
fn step_name(step: steps::Step, error: Option<&Error>) -> &'static str {
    match (step, error) {
        (steps::Step::Service | steps::Step::Integration, Some(Error::AccessDenied { .. })) => {
            "authorisation"
        }
        (steps::Step::Shape, _) => "shape",
        (steps::Step::Route, _) => "route",
        (steps::Step::Preflight, _) => "cors",
        (steps::Step::Form, _) => "form",
        (steps::Step::FrontDoor, _) => "front door",
        (steps::Step::Policy, _) => "policy",
        (steps::Step::Rate, _) => "rate",
        (steps::Step::Service, _) => "service",
        (steps::Step::Integration, _) => "integration",
        (steps::Step::Config, _) => "config",
        (steps::Step::Session, _) => "session",
        (steps::Step::Guard, _) => "guard",
    }
}

fn route_facts(route: &Route) -> Vec<(&'static str, String)> {
    let mut facts = vec![
        ("bucket", route.name.clone()),
        ("key", route.key.clone()),
        ("operation", format!("{:?}", route.operation)),
    ];
    if !route.query.is_empty() {
        let query: Vec<String> = route
            .query
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        facts.push(("query", query.join("&")));
    }
    facts
}

/// Who the caller is, and how they proved it; on a SigV4 mismatch, what the proxy computed.
fn front_door(
    head: Head<'_>,
    caller: Result<&Verified, &Error>,
    options: &Options,
    explanation: &mut Explanation,
) {
    let view = Clients::signature_view(head.method, head.uri, head.headers, SystemTime::now());
    let mut facts = Vec::new();
    if let Some(view) = &view {
        facts.push(("signed with", view.access_key_id.clone()));
        facts.push(("scope", view.scope.clone()));
    }
    match caller {
        Ok(verified) => {
            facts.insert(0, ("caller", describe_caller(verified)));
            explanation.step("front door", Outcome::Passed, facts);
        }
        Err(error) => {
            explanation.refuse("front door", error);
            if let (Error::SignatureDoesNotMatch, Some(view), Some(step)) =
                (error, view, explanation.steps.last_mut())
            {
                step.facts.extend(facts);
                step.facts
                    .push(("canonical request", redact(&view.canonical_request)));
                step.facts.push(("string to sign", view.string_to_sign));
                if let Some(theirs) = &options.compare {
                    let first = first_difference(&view.canonical_request, theirs);
                    step.facts.push(("compared", first));
                }
            }
        }
    }
}

fn describe_caller(verified: &Verified) -> String {
    let how = match verified.authentication {
        Authentication::Anonymous => return "anonymous: no signature".to_string(),
        Authentication::Header => "a signature in the Authorization header",
        Authentication::Presigned => "a presigned URL",
        Authentication::Policy => "a signed policy",
        Authentication::Form => "a form upload's policy",
    };
    format!("client {} by {how}", verified.caller.key_id())
}

/// Where the first line of the proxy's canonical request differs from the client's.
fn first_difference(ours: &str, theirs: &str) -> String {
    let theirs = theirs.trim_end_matches('\n');
    let (ours_lines, theirs_lines): (Vec<&str>, Vec<&str>) =
        (ours.lines().collect(), theirs.lines().collect());
    for line in 0..ours_lines.len().max(theirs_lines.len()) {
        let (a, b) = (ours_lines.get(line), theirs_lines.get(line));
        if a != b {
            return format!(
                "line {}: the proxy has {:?}, the client has {:?}",
                line + 1,
                a.copied().unwrap_or("(nothing)"),
                b.copied().unwrap_or("(nothing)")
            );
        }
    }
    "the canonical requests are the same: the signing key differs (a wrong secret, or \
     another date, region or service in the scope)"
        .to_string()
}

fn target_facts(target: &Target) -> Vec<(&'static str, String)> {
    let integration = &target.integration;
    let endpoint = integration
        .endpoint
        .as_ref()
        .map_or_else(|| "AWS S3".to_string(), |e| e.url());
    vec![
        ("integration", integration.name.clone()),
        ("bucket", target.bucket.clone()),
        ("upstream key", target.key.clone()),
        ("region", integration.region.to_string()),
        ("endpoint", endpoint),
    ]
}

/// The rule that let the caller through.
fn rule(caller: &Caller, route: &Route, integration: &Arc<Integration>) -> String {
    let what = if route.operation.is_write() {
        "a write"
    } else {
        "a read"
    };
    match caller {
        Caller::Anonymous => {
            format!(
                "{what} by anyone: integration {} is public",
                integration.name
            )
        }
        Caller::Client(client) => format!(
            "{what} by client {}, which is bound to integration {} ({} for the client, {} for the integration)",
            client.access_key_id,
            integration.name,
            client.access.as_str(),
            integration.access.as_str()
        ),
    }
}

/// Sends the request through the proxy as a client would, and reports its answer.
async fn send(proxy: &Proxy, request: Request<()>, explanation: &mut Explanation) {
    let request = request.map(|()| http_body_util::Empty::<Bytes>::new());
    let response = proxy.handle(request, None).await;
    let status = response.status().as_u16();
    let request_id = header_text(response.headers(), "x-amz-request-id");
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let code = crate::s3::xml::parse(&body)
        .ok()
        .and_then(|root| root.children.into_iter().find(|c| c.name == "Code"))
        .map(|code| code.text);
    let mut facts = vec![("status", status.to_string())];
    facts.extend(code.map(|code| ("error", code)));
    facts.push(("request id", request_id));
    explanation.step("sent", Outcome::Passed, facts);
}

fn header_text(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string()
}

/// A canonical request with any session token's value replaced.
fn redact(canonical_request: &str) -> String {
    let mut out = String::with_capacity(canonical_request.len());
    for line in canonical_request.split_inclusive('\n') {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("x-amz-security-token:") {
            out.push_str("x-amz-security-token:<redacted>\n");
        } else if lower.contains("x-amz-security-token=") {
            out.push_str(&redact_query_token(line));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// A canonical query line with its `X-Amz-Security-Token` value replaced.
fn redact_query_token(line: &str) -> String {
    let ending = if line.ends_with('\n') { "\n" } else { "" };
    let pairs: Vec<String> = line
        .trim_end_matches('\n')
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name.eq_ignore_ascii_case("x-amz-security-token") => {
                format!("{name}=<redacted>")
            }
            _ => pair.to_string(),
        })
        .collect();
    format!("{}{ending}", pairs.join("&"))
}
