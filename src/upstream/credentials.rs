//! Credentials: the keys each integration's upstream requests are signed with.
//!
//! Static keys are used as configured. Assumed-role and default-chain credentials live in a
//! [moka] cache keyed by the whole identity (role ARN, ExternalId, session name, region), so two
//! integrations share credentials only when STS would hand them the same ones. An entry is fresh
//! until `expiry - refresh_before_expiry` (less up to 10% of its fresh time, so that entries
//! fetched together do not all fall due together). A due entry whose credentials are still valid
//! keeps serving while one background task refreshes it: no request waits for STS then. When
//! that refresh fails, it is retried with jittered exponential backoff. Only a cold or expired
//! entry makes requests wait, and concurrent ones share a single STS call (`try_get_with`
//! coalesces them); a failed cold fetch is remembered for its backoff, so a broken integration
//! (a wrong ExternalId) costs STS one call per backoff period whatever its traffic, and no other
//! integration is affected. Requests never sign with credentials within seconds of expiry: they
//! get `503 ServiceUnavailable` with `Retry-After` instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use moka::Expiry;
use moka::future::Cache;

use crate::config::{
    BaseCredentials, Clock, CredentialSource, DISCOVERY_REGION, Integration, StaticKeys, StsConfig,
};
use crate::s3::error::Error;

/// Credentials with no expiry (from the default chain) are re-read this often.
const UNEXPIRING_REFRESH: Duration = Duration::from_secs(15 * 60);
/// Credentials closer than this to expiry are not used to sign: the request might arrive late.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A broken identity is retried at least this often, so a fixed role recovers quickly.
const MAX_COLD_BACKOFF: Duration = Duration::from_secs(30);
/// An identity's cached credentials are dropped on a store's refusal at most once in this
/// period, however many requests are refused: refusals cannot be turned into STS traffic.
pub const INVALIDATION_DEBOUNCE: Duration = Duration::from_secs(10);

/// The identity a cache entry belongs to: everything that makes STS answer differently.
#[derive(Clone, PartialEq, Eq, Hash)]
enum CredentialKey {
    AssumeRole {
        role_arn: String,
        external_id: Option<String>,
        session_name: String,
        region: String,
    },
    DefaultChain,
}

/// What the last successful fetch returned, kept to serve while a refresh runs or STS is down.
struct LastGood {
    credentials: Credentials,
    /// No STS call before this instant (backoff after a failure).
    retry_at: Option<Instant>,
    backoff: Duration,
    /// A background refresh is running.
    refreshing: bool,
}

/// A failed cold fetch, remembered so a broken identity does not cost an STS call a request.
struct ColdFailure {
    until: Instant,
    reason: String,
    backoff: Duration,
}

/// What is known of an integration's credentials, read from the cache without fetching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialState {
    /// Static keys: nothing to fetch.
    Static,
    /// Obtained and still valid (until `expiry`); `refresh_failing` when the last attempt to
    /// renew them failed and they serve until they expire.
    Valid {
        /// When they expire, if they do.
        expiry: Option<SystemTime>,
        /// The last refresh failed.
        refresh_failing: bool,
    },
    /// The last attempt to obtain them failed, for this reason.
    Failing(String),
    /// Not asked for since the proxy started (no request has needed them).
    NotUsedYet,
}

impl CredentialState {
    /// One line for people: `ok: static keys`, `ok, valid for 52m`, `failing: …`, `not used
    /// yet`.
    pub fn describe(&self, now: SystemTime) -> String {
        match self {
            CredentialState::Static => "ok: static keys".to_string(),
            CredentialState::Valid {
                expiry,
                refresh_failing,
            } => {
                let left = expiry
                    .and_then(|e| e.duration_since(now).ok())
                    .map(|left| format!(", valid for {}m", left.as_secs() / 60))
                    .unwrap_or_default();
                let failing = if *refresh_failing {
                    " (renewal failing: serving these until they expire)"
                } else {
                    ""
                };
                format!("ok{left}{failing}")
            }
            CredentialState::Failing(reason) => format!("failing: {reason}"),
            CredentialState::NotUsedYet => "not used yet".to_string(),
        }
    }
}

/// Credential fetches a warm-up runs at once.
pub const WARM_UP_CONCURRENCY: usize = 4;

/// How long a working own identity is believed before readiness asks STS again.
const IDENTITY_OK_FOR: Duration = Duration::from_secs(60);
/// How long a failing own identity is reported before readiness asks STS again.
const IDENTITY_FAILING_FOR: Duration = Duration::from_secs(10);

/// Gets, caches and refreshes integration credentials.
pub struct CredentialCache {
    /// The last check of the proxy's own identity: when, and what STS said.
    identity: tokio::sync::Mutex<Option<(Instant, Result<String, String>)>>,
    fresh: Cache<CredentialKey, Fresh>,
    last_good: Mutex<HashMap<CredentialKey, LastGood>>,
    cold_failures: Mutex<HashMap<CredentialKey, ColdFailure>>,
    /// When each identity's credentials were last dropped (or a drop was considered).
    invalidated: Mutex<HashMap<CredentialKey, Instant>>,
    sts: StsConfig,
    http_client: SharedHttpClient,
    sts_clients: Mutex<HashMap<String, aws_sdk_sts::Client>>,
    default_chain: tokio::sync::OnceCell<Option<SharedCredentialsProvider>>,
    /// Set once STS said the proxy's identity is itself a role session: AssumeRole is then
    /// role chaining, capped at one hour, so every later call asks for one hour at most.
    chained: std::sync::atomic::AtomicBool,
    pub stats: CredentialStats,
    /// The time every age, backoff and expiry here is judged by.
    clock: Clock,
}

/// Credentials and when they fall due (on the proxy's clock). moka drops the entry after
/// `fresh_for` of real time; a read past `until` treats it as due, so a test that moves the
/// clock sees what a later request would.
#[derive(Clone)]
struct Fresh {
    credentials: Credentials,
    until: Instant,
    fresh_for: Duration,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct CredentialStats {
    /// STS (or default chain) calls made.
    pub calls: AtomicU64,
    /// Of those, the ones that failed.
    pub failures: AtomicU64,
    /// Of the failures, the ones STS refused as throttled (its `Throttling` error).
    pub throttled: AtomicU64,
    /// Requests answered from the cache without waiting for a call.
    pub cache_hits: AtomicU64,
    /// Cached credentials dropped because the store refused them.
    pub invalidations: AtomicU64,
    /// Refusals that did not drop credentials: the identity's were dropped moments before.
    pub invalidations_debounced: AtomicU64,
}

impl CredentialStats {
    /// Counts a failed fetch, and whether STS throttled it (`Throttling`, as its error names
    /// it in the reason).
    fn failed(&self, reason: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if reason.contains("Throttling") {
            self.throttled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An entry leaves the cache when it falls due ([`CredentialCache::fresh_entry`]).
struct RefreshPolicy;

impl Expiry<CredentialKey, Fresh> for RefreshPolicy {
    fn expire_after_create(
        &self,
        _key: &CredentialKey,
        entry: &Fresh,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(entry.fresh_for)
    }
}

impl CredentialCache {
    /// A cache for STS reached as `sts` says, judging time by `clock`.
    pub fn new(sts: StsConfig, http_client: SharedHttpClient, clock: Clock) -> Self {
        let fresh = Cache::builder()
            .max_capacity(100_000)
            .expire_after(RefreshPolicy)
            .build();
        CredentialCache {
            identity: tokio::sync::Mutex::new(None),
            fresh,
            last_good: Mutex::new(HashMap::new()),
            cold_failures: Mutex::new(HashMap::new()),
            invalidated: Mutex::new(HashMap::new()),
            sts,
            http_client,
            sts_clients: Mutex::new(HashMap::new()),
            default_chain: tokio::sync::OnceCell::new(),
            chained: std::sync::atomic::AtomicBool::new(false),
            stats: CredentialStats::default(),
            clock,
        }
    }

    /// Fresh until `expiry - refresh_before_expiry`, less up to 10% of that (see the module).
    fn fresh_entry(&self, credentials: Credentials) -> Fresh {
        let fresh_for = match credentials.expiry() {
            Some(expiry) => expiry
                .duration_since(self.clock.now())
                .unwrap_or_default()
                .saturating_sub(self.sts.refresh_before_expiry),
            None => UNEXPIRING_REFRESH,
        };
        let fresh_for = fresh_for.mul_f64(1.0 - 0.1 * jitter());
        Fresh {
            credentials,
            until: self.clock.instant() + fresh_for,
            fresh_for,
        }
    }

    /// The entry for `key`, if it is not yet due; a due one is dropped.
    async fn fresh(&self, key: &CredentialKey) -> Option<Credentials> {
        let entry = self.fresh.get(key).await?;
        if self.clock.instant() < entry.until {
            return Some(entry.credentials);
        }
        self.fresh.invalidate(key).await;
        None
    }

    /// Whether the cache was built for these STS settings (a reload keeps it only then).
    pub fn serves(&self, sts: &StsConfig) -> bool {
        // The warm-up rate is how the cache is filled, not what it holds.
        self.sts.endpoint == sts.endpoint
            && self.sts.refresh_before_expiry == sts.refresh_before_expiry
            && self.sts.duration == sts.duration
            && self.sts.credentials == sts.credentials
    }

    /// Obtains the credentials of `integrations` that no request has needed yet, in the
    /// background: at most `per_second` STS calls a second, [`WARM_UP_CONCURRENCY`] at once.
    /// Integrations sharing an identity cost one call.
    pub fn warm_up(self: &Arc<Self>, integrations: Vec<Arc<Integration>>, per_second: f64) {
        let cache = self.clone();
        tokio::spawn(async move {
            let slots = Arc::new(tokio::sync::Semaphore::new(WARM_UP_CONCURRENCY));
            let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
            let mut fetches = tokio::task::JoinSet::new();
            for integration in integrations {
                if cache.state(&integration) != CredentialState::NotUsedYet {
                    continue;
                }
                pace.tick().await;
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                // A fetch for an identity another integration already warmed is a cache hit.
                let cache = cache.clone();
                fetches.spawn(async move {
                    let _slot = slot;
                    let _ = cache.credentials(&integration).await;
                });
            }
            while fetches.join_next().await.is_some() {}
            tracing::info!("credential warm-up done");
        });
    }

    /// Whether a store's refusal may drop this integration's credentials now: at most once per
    /// identity per [`INVALIDATION_DEBOUNCE`]. Claiming the slot counts as a drop for the
    /// debounce, so a caller may first spend an upstream request confirming the refusal.
    /// Static keys are never dropped.
    pub fn may_invalidate(&self, integration: &Integration) -> bool {
        let Some(key) = credential_key(integration) else {
            return false;
        };
        let Ok(mut invalidated) = self.invalidated.lock() else {
            return false;
        };
        let now = self.clock.instant();
        if invalidated
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < INVALIDATION_DEBOUNCE)
        {
            self.stats
                .invalidations_debounced
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        invalidated.insert(key, now);
        true
    }

    /// Forgets this integration's credentials (the store refused them, and the refusal was
    /// judged to be about them): the next request fetches new ones instead of riding out an
    /// outage on them. Call after [`CredentialCache::may_invalidate`] said yes.
    pub async fn invalidate(&self, integration: &Integration) {
        if let Some(key) = credential_key(integration) {
            self.fresh.invalidate(&key).await;
            if let Ok(mut last_good) = self.last_good.lock() {
                last_good.remove(&key);
            }
            self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// When this integration's last obtained credentials expire, without fetching any: `None`
    /// for static keys, credentials never obtained, or ones without expiry.
    pub fn expiry(&self, integration: &Integration) -> Option<SystemTime> {
        let key = credential_key(integration)?;
        let last_good = self.last_good.lock().ok()?;
        last_good.get(&key)?.credentials.expiry()
    }

    /// This integration's credentials as the cache knows them; never calls STS.
    pub fn state(&self, integration: &Integration) -> CredentialState {
        let Some(key) = credential_key(integration) else {
            return CredentialState::Static;
        };
        if let Ok(last_good) = self.last_good.lock()
            && let Some(entry) = last_good.get(&key)
            && still_valid(&entry.credentials, self.clock.now())
        {
            return CredentialState::Valid {
                expiry: entry.credentials.expiry(),
                refresh_failing: entry.retry_at.is_some(),
            };
        }
        if let Ok(failures) = self.cold_failures.lock()
            && let Some(failure) = failures.get(&key)
        {
            return CredentialState::Failing(failure.reason.clone());
        }
        CredentialState::NotUsedYet
    }

    /// Whether the proxy's own identity works: STS GetCallerIdentity, asked at most once a
    /// minute while it works (every 10 s while it fails), so readiness probes do not become
    /// STS traffic. `Ok` names the identity's ARN.
    pub async fn check_identity(&self) -> Result<String, String> {
        let mut last = self.identity.lock().await;
        if let Some((at, result)) = last.as_ref() {
            let believed = if result.is_ok() {
                IDENTITY_OK_FOR
            } else {
                IDENTITY_FAILING_FOR
            };
            if self.clock.instant().saturating_duration_since(*at) < believed {
                return result.clone();
            }
        }
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let result = match self.sts_client(DISCOVERY_REGION).await {
            Ok(client) => client
                .get_caller_identity()
                .send()
                .await
                .map(|output| output.arn.unwrap_or_default())
                .map_err(|error| sts_failure(&error)),
            Err(reason) => Err(reason),
        };
        if let Err(reason) = &result {
            self.stats.failed(reason);
        }
        *last = Some((self.clock.instant(), result.clone()));
        result
    }

    /// The credentials to sign this integration's next upstream request with.
    pub async fn credentials(
        self: &Arc<Self>,
        integration: &Integration,
    ) -> Result<Credentials, Error> {
        let Some(key) = credential_key(integration) else {
            if let CredentialSource::Static(keys) = &integration.credentials {
                return Ok(static_credentials(keys));
            }
            return Err(Error::Internal {
                detail: "an integration with neither static keys nor a cache key".to_string(),
            });
        };
        if let Some(credentials) = self.fresh(&key).await {
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(credentials);
        }
        // Due: valid previous credentials serve while a background task refreshes them.
        if let Some(previous) = self.still_usable(&key) {
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            self.refresh_in_background(&key, &integration.name);
            return Ok(previous);
        }
        let unavailable = |reason: String| Error::CredentialsUnavailable {
            integration: integration.name.clone(),
            reason,
        };
        if let Some(reason) = self.recent_cold_failure(&key) {
            return Err(unavailable(reason));
        }
        // Cold or expired: this request waits, and concurrent ones share the call. The STS
        // call's future is large and rare: boxed, it does not size every request's future.
        match self
            .fresh
            .try_get_with(key.clone(), Box::pin(self.fetch_and_remember(&key)))
            .await
        {
            Ok(entry) => Ok(entry.credentials),
            Err(reason) => {
                tracing::warn!(integration = %integration.name, %reason, "no credentials");
                self.remember_cold_failure(&key, &reason);
                Err(unavailable(reason.to_string()))
            }
        }
    }

    /// Starts one refresh of a due entry, unless one is running or the backoff forbids it.
    fn refresh_in_background(self: &Arc<Self>, key: &CredentialKey, integration: &str) {
        {
            let Ok(mut last_good) = self.last_good.lock() else {
                return;
            };
            let Some(entry) = last_good.get_mut(key) else {
                return;
            };
            let now = self.clock.instant();
            if entry.refreshing || entry.retry_at.is_some_and(|at| now < at) {
                return;
            }
            entry.refreshing = true;
        }
        let cache = self.clone();
        let key = key.clone();
        let integration = integration.to_string();
        tokio::spawn(async move {
            let result = cache
                .fresh
                .try_get_with(key.clone(), cache.fetch_and_remember(&key))
                .await;
            let Ok(mut last_good) = cache.last_good.lock() else {
                return;
            };
            if let Some(entry) = last_good.get_mut(&key) {
                entry.refreshing = false;
                if let Err(reason) = result {
                    let wait = entry.backoff.mul_f64(0.5 + 0.5 * jitter());
                    entry.retry_at = Some(cache.clock.instant() + wait);
                    entry.backoff = (entry.backoff * 2).min(MAX_BACKOFF);
                    tracing::warn!(
                        %integration,
                        %reason,
                        retry_in_ms = wait.as_millis() as u64,
                        "credential refresh failed; serving the previous credentials until they expire"
                    );
                }
            }
        });
    }

    /// The previous credentials, if they are still safe to sign with.
    fn still_usable(&self, key: &CredentialKey) -> Option<Credentials> {
        let last_good = self.last_good.lock().ok()?;
        let entry = last_good.get(key)?;
        still_valid(&entry.credentials, self.clock.now()).then(|| entry.credentials.clone())
    }

    fn recent_cold_failure(&self, key: &CredentialKey) -> Option<String> {
        let failures = self.cold_failures.lock().ok()?;
        let failure = failures.get(key)?;
        (self.clock.instant() < failure.until).then(|| failure.reason.clone())
    }

    fn remember_cold_failure(&self, key: &CredentialKey, reason: &str) {
        let Ok(mut failures) = self.cold_failures.lock() else {
            return;
        };
        let backoff = failures
            .get(key)
            .map_or(FIRST_BACKOFF, |f| (f.backoff * 2).min(MAX_COLD_BACKOFF));
        failures.insert(
            key.clone(),
            ColdFailure {
                until: self.clock.instant() + backoff.mul_f64(0.5 + 0.5 * jitter()),
                reason: reason.to_string(),
                backoff,
            },
        );
    }

    /// One fetch per miss; the result is remembered for outages.
    async fn fetch_and_remember(&self, key: &CredentialKey) -> Result<Fresh, String> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let credentials = self
            .fetch(key)
            .await
            .inspect_err(|reason| self.stats.failed(reason))?;
        if let Ok(mut last_good) = self.last_good.lock() {
            last_good.insert(
                key.clone(),
                LastGood {
                    credentials: credentials.clone(),
                    retry_at: None,
                    backoff: FIRST_BACKOFF,
                    refreshing: false,
                },
            );
        }
        if let Ok(mut failures) = self.cold_failures.lock() {
            failures.remove(key);
        }
        Ok(self.fresh_entry(credentials))
    }

    async fn fetch(&self, key: &CredentialKey) -> Result<Credentials, String> {
        match key {
            CredentialKey::AssumeRole {
                role_arn,
                external_id,
                session_name,
                region,
            } => {
                let client = self.sts_client(region).await?;
                let configured = i32::try_from(self.sts.duration.as_secs()).unwrap_or(3600);
                let assume = |duration_seconds: i32| {
                    client
                        .assume_role()
                        .role_arn(role_arn)
                        .role_session_name(session_name)
                        .set_external_id(external_id.clone())
                        .duration_seconds(duration_seconds)
                        .send()
                };
                let duration_seconds = if self.chained.load(Ordering::Relaxed) {
                    configured.min(CHAINED_MAX_SECONDS)
                } else {
                    configured
                };
                let output = match assume(duration_seconds).await {
                    // The proxy's own identity (an instance or pod role, say) is a role session:
                    // STS refuses more than an hour. Ask for the hour, and from now on.
                    Err(error)
                        if duration_seconds > CHAINED_MAX_SECONDS && is_chaining_limit(&error) =>
                    {
                        tracing::warn!(
                            configured_seconds = configured,
                            "the proxy's identity is a role session, so AssumeRole is role chaining, \
                             capped at 1h by AWS: asking for 1h (set [sts] duration = \"1h\")"
                        );
                        self.chained.store(true, Ordering::Relaxed);
                        assume(CHAINED_MAX_SECONDS).await
                    }
                    result => result,
                }
                .map_err(|error| {
                    tracing::debug!(error = %DisplayErrorContext(&error), "AssumeRole failed");
                    sts_failure(&error)
                })?;
                let assumed = output
                    .credentials
                    .ok_or_else(|| "STS AssumeRole returned no credentials".to_string())?;
                let expiry = SystemTime::try_from(assumed.expiration).map_err(|error| {
                    format!("STS AssumeRole returned an unusable expiration: {error}")
                })?;
                if expiry <= self.clock.now() + EXPIRY_MARGIN {
                    return Err("STS AssumeRole returned credentials that already expired".into());
                }
                Ok(Credentials::new(
                    assumed.access_key_id,
                    assumed.secret_access_key,
                    Some(assumed.session_token),
                    Some(expiry),
                    "sts-assume-role",
                ))
            }
            CredentialKey::DefaultChain => self
                .default_chain()
                .await?
                .provide_credentials()
                .await
                .map_err(|error| {
                    tracing::debug!(error = %DisplayErrorContext(&error), "default chain failed");
                    "the proxy's own AWS identity could not be loaded".to_string()
                }),
        }
    }

    async fn sts_client(&self, region: &str) -> Result<aws_sdk_sts::Client, String> {
        if let Some(client) = self
            .sts_clients
            .lock()
            .ok()
            .and_then(|c| c.get(region).cloned())
        {
            return Ok(client);
        }
        let provider = match &self.sts.credentials {
            BaseCredentials::Static(keys) => {
                SharedCredentialsProvider::new(static_credentials(keys))
            }
            BaseCredentials::DefaultChain => self.default_chain().await?,
        };
        let mut builder = aws_sdk_sts::Config::builder()
            .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
            .region(aws_sdk_sts::config::Region::new(region.to_string()))
            .credentials_provider(provider)
            .http_client(self.http_client.clone())
            .timeout_config(
                aws_sdk_sts::config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(15))
                    .build(),
            );
        if let Some(endpoint) = &self.sts.endpoint {
            builder = builder.endpoint_url(endpoint.url());
        }
        let client = aws_sdk_sts::Client::from_conf(builder.build());
        if let Ok(mut clients) = self.sts_clients.lock() {
            clients.insert(region.to_string(), client.clone());
        }
        Ok(client)
    }

    /// The proxy's own identity, loaded once from the standard AWS chain.
    async fn default_chain(&self) -> Result<SharedCredentialsProvider, String> {
        self.default_chain
            .get_or_init(|| async {
                aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .http_client(self.http_client.clone())
                    .load()
                    .await
                    .credentials_provider()
            })
            .await
            .clone()
            .ok_or_else(|| "the proxy has no AWS identity of its own".to_string())
    }
}

/// The cache key of an integration's credentials; `None` for static keys (never cached).
fn credential_key(integration: &Integration) -> Option<CredentialKey> {
    match &integration.credentials {
        CredentialSource::Static(_) => None,
        CredentialSource::AssumeRole {
            role_arn,
            external_id,
            session_name,
        } => Some(CredentialKey::AssumeRole {
            role_arn: role_arn.clone(),
            external_id: external_id.clone(),
            session_name: session_name.clone(),
            region: integration.region.signing_name().to_string(),
        }),
        CredentialSource::DefaultChain => Some(CredentialKey::DefaultChain),
    }
}

/// AWS's cap on DurationSeconds for a role assumed with a role session's credentials.
const CHAINED_MAX_SECONDS: i32 = 3600;

/// Whether STS refused a DurationSeconds over the role-chaining cap.
fn is_chaining_limit<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    let SdkError::ServiceError(service) = error else {
        return false;
    };
    service.err().code() == Some("ValidationError")
        && service
            .err()
            .message()
            .is_some_and(|message| message.contains("role chaining"))
}

/// Why an STS call failed, in words safe to show a caller: the STS error code, or which kind of
/// transport failure it was. Never the request, the role ARN or the ExternalId.
fn sts_failure<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> String {
    match error {
        SdkError::ServiceError(service) => {
            // STS-compatible servers do not all shape errors as AWS does (moto wraps them in
            // `<Errors>`), so read `<Code>` from the raw body when the SDK found none.
            let raw_code = || {
                let body = std::str::from_utf8(service.raw().body().bytes()?).ok()?;
                let (_, rest) = body.split_once("<Code>")?;
                let (code, _) = rest.split_once("</Code>")?;
                code.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.')
                    .then(|| code.to_string())
            };
            match service.err().code().map(str::to_string).or_else(raw_code) {
                Some(code) => format!("STS AssumeRole refused: {code}"),
                None => format!(
                    "STS AssumeRole refused with HTTP status {}",
                    service.raw().status().as_u16()
                ),
            }
        }
        SdkError::TimeoutError(_) => "STS did not answer in time".to_string(),
        SdkError::DispatchFailure(_) => "STS could not be reached".to_string(),
        SdkError::ResponseError(_) => "STS sent a response that could not be read".to_string(),
        _ => "STS AssumeRole failed".to_string(),
    }
}

/// A number in [0, 1), different on every call: enough randomness to spread refreshes.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether `credentials` may sign a request at `now`.
fn still_valid(credentials: &Credentials, now: SystemTime) -> bool {
    credentials
        .expiry()
        .is_none_or(|expiry| expiry > now + EXPIRY_MARGIN)
}

fn static_credentials(keys: &StaticKeys) -> Credentials {
    Credentials::new(
        keys.access_key_id.clone(),
        keys.secret_access_key.expose().to_string(),
        keys.session_token.as_ref().map(|t| t.expose().to_string()),
        None,
        "static",
    )
}

/// The HTTPS client the AWS SDK uses for STS and the default chain: rustls on ring, like the
/// proxy's own upstream client.
pub fn sdk_http_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}
