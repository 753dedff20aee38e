//! Trusting an issuer: a service that verifies another service's access
//! tokens offline instead of issuing its own.
//!
//! Keys: the issuer's JWKS, fetched at start (retried with backoff until it
//! answers; protected routes answer 503 until then), refreshed every
//! `JWKS_REFRESH_SECS`, and fetched again when a token names an unknown `kid`
//! (at most once every `JWKS_REFETCH_MIN_SECS`, one fetch at a time). A key
//! gone from the JWKS stops verifying, remembered tokens included.
//!
//! Revocations: the issuer publishes `sessionDeleted` on its session topic
//! when a session ends, and `sessionUpdated` with the session's role when its
//! account's role changes. Every replica reads every partition of the topic
//! itself: it assigns them all to itself, joins no consumer group and commits
//! nothing. A shared group would split the partitions among the replicas,
//! each learning only some revocations; one reader sharing them through the
//! database and NOTIFY, as the issuer does, would add a round trip, a
//! database to a service that may need none for this, and a single reader
//! to fail. A replica's memory is its own, rebuilt at every start from the
//! last maximum token lifetime of the topic (an older event concerns no token
//! that still verifies). Until it has read as far as the topic reached when
//! it started, protected routes answer 503: no replica accepts a token
//! revoked before it started.

use super::rules::Policy;
use super::tokens::{Audience, TokenFacts, TokenTransport, VerifiedTokens};
use crate::config::{ConfigError, Env};
use crate::error::ApiError;
use crate::kafka::{KafkaSettings, KafkaSpec};
use crate::route::SYSTEM_ROLE;
use axum::http::HeaderMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use uuid::Uuid;

/// The model's facts about the issuer it trusts.
#[derive(Debug)]
pub struct Trust {
    /// The `iss` and `aud` its access tokens must carry.
    pub tokens: Audience,
    /// The issuer's session topic: ended sessions and role changes.
    pub session_topic: &'static str,
    /// Where tokens come from (no cookies: those are the issuer's).
    pub transport: TokenTransport,
    /// The issuer's roles and this service's rules.
    pub policy: Policy,
}

/// What the model sets as the defaults of [`TrustSettings`].
#[derive(Debug, Clone, Copy)]
pub struct TrustDefaults {
    pub jwks_url: &'static str,
    /// The longest an access token of the issuer lives.
    pub max_token_ttl_secs: u32,
}

/// The trust settings of the service's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustSettings {
    /// `JWKS_URL`: the issuer's JWKS.
    pub jwks_url: String,
    /// `JWKS_REFRESH_SECS` (default 300): how often the JWKS is fetched again.
    pub refresh: Duration,
    /// `JWKS_REFETCH_MIN_SECS` (default 10): a token of an unknown key fetches
    /// the JWKS again at most this often.
    pub refetch_min: Duration,
    /// `TRUST_MAX_TOKEN_TTL_SECS`: the longest an issuer's token lives, so
    /// the longest an ended session must be remembered.
    pub max_token_ttl_secs: i64,
}

impl TrustSettings {
    pub fn from_env<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
        defaults: &TrustDefaults,
    ) -> Result<Self, ConfigError> {
        let jwks_url = env
            .text("JWKS_URL")
            .unwrap_or_else(|| defaults.jwks_url.to_string());
        match url::Url::parse(&jwks_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                return Err(ConfigError::Invalid {
                    name: "JWKS_URL",
                    reason: format!("{jwks_url:?} is no http(s) URL"),
                })
            }
        }
        let refresh: u64 = env.parse("JWKS_REFRESH_SECS", "300")?;
        let refetch_min: u64 = env.parse("JWKS_REFETCH_MIN_SECS", "10")?;
        let max_ttl: u64 = env.parse(
            "TRUST_MAX_TOKEN_TTL_SECS",
            &defaults.max_token_ttl_secs.to_string(),
        )?;
        Ok(Self {
            jwks_url,
            refresh: Duration::from_secs(at_least_one("JWKS_REFRESH_SECS", refresh)?),
            refetch_min: Duration::from_secs(refetch_min),
            max_token_ttl_secs: at_least_one("TRUST_MAX_TOKEN_TTL_SECS", max_ttl)? as i64,
        })
    }
}

/// `n`, unless it is 0: a setting that must be positive.
fn at_least_one(name: &'static str, n: u64) -> Result<u64, ConfigError> {
    match n {
        0 => Err(ConfigError::Invalid {
            name,
            reason: "must be at least 1".into(),
        }),
        n => Ok(n),
    }
}

/// The issuer's verifying keys by `kid`.
type Keys = HashMap<String, DecodingKey>;

/// The first wait before fetching the JWKS or reading the topic again; it
/// doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a request waits for a refetch of the JWKS that another one started.
const REFETCH_WAIT: Duration = Duration::from_secs(3);
/// A JWKS larger than this is refused.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// How long the reader waits for the broker's answers about the topic.
const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

/// The issuer's keys, the sessions it ended and the roles it changed, as far
/// as this replica knows.
pub struct TrustState {
    trust: &'static Trust,
    settings: TrustSettings,
    http: reqwest::Client,
    /// `None` until the first JWKS arrived.
    keys: RwLock<Option<Arc<Keys>>>,
    verified: VerifiedTokens,
    sessions: Mutex<SessionBook>,
    /// The session reader has read as far as the topic reached when it started.
    caught_up: AtomicBool,
    /// When the last refetch for an unknown key started; held while it runs.
    refetched: tokio::sync::Mutex<Option<Instant>>,
    /// JWKS fetches started, for the logs and tests.
    fetches: AtomicU64,
}

impl std::fmt::Debug for TrustState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustState")
            .field("settings", &self.settings)
            .field("caught_up", &self.caught_up)
            .finish_non_exhaustive()
    }
}

impl TrustState {
    pub fn new(trust: &'static Trust, settings: TrustSettings) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .timeout(BROKER_TIMEOUT)
            .build()
            .unwrap_or_default();
        Arc::new(Self {
            trust,
            settings,
            http,
            keys: RwLock::new(None),
            verified: VerifiedTokens::default(),
            sessions: Mutex::default(),
            caught_up: AtomicBool::new(false),
            refetched: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
        })
    }

    pub fn trust(&self) -> &'static Trust {
        self.trust
    }

    pub fn policy(&self) -> &'static Policy {
        &self.trust.policy
    }

    /// Whether protected routes can be answered: the issuer's keys are known
    /// and its revocations read.
    pub fn ready(&self) -> bool {
        self.current_keys().is_some() && self.caught_up.load(Ordering::Acquire)
    }

    fn current_keys(&self) -> Option<Arc<Keys>> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The request's token, verified, and the caller's role now: the latest
    /// role the issuer gave its session, else the token's. Refuses tokens of
    /// ended sessions, the system role and roles the model does not know;
    /// answers 503 before the issuer's keys and revocations are known.
    pub async fn admit(&self, headers: &HeaderMap) -> Result<(TokenFacts, String), ApiError> {
        let keys = self
            .current_keys()
            .ok_or(ApiError::Unavailable("the issuer's keys are not known yet"))?;
        if !self.caught_up.load(Ordering::Acquire) {
            return Err(ApiError::Unavailable(
                "the issuer's ended sessions are not known yet",
            ));
        }
        // Cookies belong to the issuer's origin: a trusting service takes none.
        let token = match self.trust.transport.presented(headers) {
            Some((token, false)) => token,
            _ => return Err(ApiError::Unauthorized("a bearer token is required".into())),
        };
        let token = token.trim();
        let facts = match self.verify(&keys, token) {
            Err(_) if names_unknown_key(&keys, token) => {
                self.refetch_keys().await;
                let keys = self.current_keys().unwrap_or(keys);
                self.verify(&keys, token)?
            }
            verified => verified?,
        };
        let now = Utc::now().timestamp();
        let role = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .standing(facts.session_id, now)?
            .unwrap_or_else(|| facts.role.clone());
        // Only the service itself acts as the system caller.
        if role == SYSTEM_ROLE || !self.policy().ranks.iter().any(|(r, _)| *r == role) {
            return Err(ApiError::Forbidden);
        }
        Ok((facts, role))
    }

    fn verify(&self, keys: &Keys, token: &str) -> Result<TokenFacts, ApiError> {
        self.verified
            .facts_with(|kid| keys.get(kid), self.trust.tokens, token)
    }

    /// Fetches the JWKS for a token of an unknown key, unless a fetch ran
    /// less than `JWKS_REFETCH_MIN_SECS` ago; waits for one already running.
    async fn refetch_keys(&self) {
        let Ok(mut last) = tokio::time::timeout(REFETCH_WAIT, self.refetched.lock()).await else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < self.settings.refetch_min) {
            return;
        }
        *last = Some(Instant::now());
        match tokio::time::timeout(REFETCH_WAIT, self.fetch_keys()).await {
            Ok(Ok(n)) => tracing::info!(keys = n, "fetched the issuer's JWKS for an unknown key"),
            Ok(Err(e)) => tracing::warn!(error = format!("{e:#}"), "fetching the issuer's JWKS"),
            Err(_) => tracing::warn!("fetching the issuer's JWKS timed out"),
        }
    }

    /// Fetches the JWKS and keeps its Ed25519 keys; a JWKS that cannot be
    /// fetched or has none leaves the keys as they were.
    async fn fetch_keys(&self) -> anyhow::Result<usize> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let response = self
            .http
            .get(&self.settings.jwks_url)
            .send()
            .await?
            .error_for_status()?;
        let body = response.bytes().await?;
        anyhow::ensure!(body.len() <= MAX_JWKS_BYTES, "the JWKS is too large");
        let keys = parse_jwks(&serde_json::from_slice(&body)?);
        anyhow::ensure!(!keys.is_empty(), "the JWKS has no Ed25519 signing key");
        let n = keys.len();
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(keys));
        Ok(n)
    }

    /// Fetches the JWKS at start, again and again with a growing wait until it
    /// has keys, then every `JWKS_REFRESH_SECS`, until `stop` turns true.
    pub async fn keep_keys(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff = FIRST_BACKOFF;
        let mut failing = false;
        while !*stop.borrow() {
            let wait = match self.fetch_keys().await {
                Ok(n) => {
                    if failing {
                        tracing::info!(keys = n, "fetched the issuer's JWKS");
                    }
                    failing = false;
                    backoff = FIRST_BACKOFF;
                    self.settings.refresh
                }
                Err(e) => {
                    if !failing {
                        let url = &self.settings.jwks_url;
                        tracing::warn!(error = format!("{e:#}"), %url, "fetching the issuer's JWKS; retrying");
                    }
                    failing = true;
                    if self.current_keys().is_some() {
                        self.settings.refresh
                    } else {
                        let wait = backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        wait
                    }
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                changed = stop.changed() => {
                    // No sender left: nobody can stop it any more, nor wants it running.
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Reads the issuer's session topic, every partition, until `stop` turns
    /// true: ended sessions and role changes (see the module's doc). Without
    /// brokers nothing ends a session here before its tokens expire.
    pub async fn follow_sessions(
        self: Arc<Self>,
        spec: &'static KafkaSpec,
        kafka: KafkaSettings,
        stop: watch::Receiver<bool>,
    ) {
        let Some(brokers) = kafka.brokers.as_deref() else {
            tracing::warn!("KAFKA_BROKERS is not set: sessions the issuer ends are not felt here; their tokens hold until they expire");
            self.caught_up.store(true, Ordering::Release);
            return;
        };
        let config = reader_config(&kafka, spec, brokers);
        // librdkafka's calls block: the reader has a thread of its own.
        let reader = tokio::task::spawn_blocking(move || self.read_sessions(&config, &stop));
        if let Err(e) = reader.await {
            tracing::error!(error = %e, "the session reader failed");
        }
    }

    /// Reads the topic, starting over after a failure, until `stop`.
    fn read_sessions(&self, config: &ClientConfig, stop: &watch::Receiver<bool>) {
        let topic = self.trust.session_topic;
        let mut backoff = FIRST_BACKOFF;
        let (mut waiting, mut failing) = (false, false);
        while !stopping(stop) {
            match self.read_topic(config, stop) {
                Ok(()) => return,
                Err(Failure::NoTopic) => {
                    if !waiting {
                        tracing::info!(%topic, "waiting for the issuer's session topic");
                    }
                    waiting = true;
                }
                Err(Failure::Kafka(e)) if failing => {
                    tracing::debug!(error = %e, %topic, "reading the session topic; retrying");
                }
                Err(Failure::Kafka(e)) => {
                    tracing::warn!(error = %e, %topic, "reading the session topic; retrying");
                    failing = true;
                }
            }
            let until = Instant::now() + backoff;
            while Instant::now() < until && !stopping(stop) {
                std::thread::sleep(Duration::from_millis(50));
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Assigns every partition of the topic from the events of the last
    /// maximum token lifetime and reads until `stop`.
    fn read_topic(
        &self,
        config: &ClientConfig,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), Failure> {
        let topic = self.trust.session_topic;
        let consumer: BaseConsumer = config.create()?;
        let metadata = consumer.fetch_metadata(Some(topic), BROKER_TIMEOUT)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        if partitions.is_empty() {
            return Err(Failure::NoTopic);
        }
        // Where each partition ends now: read up to there, the replica is caught up.
        let mut ends = HashMap::new();
        for &p in &partitions {
            ends.insert(p, consumer.fetch_watermarks(topic, p, BROKER_TIMEOUT)?);
        }
        let since_ms = (Utc::now().timestamp() - self.settings.max_token_ttl_secs) * 1000;
        let mut by_time = TopicPartitionList::new();
        for &p in &partitions {
            by_time.add_partition_offset(topic, p, Offset::Offset(since_ms))?;
        }
        let starts = consumer
            .offsets_for_times(by_time, BROKER_TIMEOUT)
            .map_err(|e| tracing::info!(error = %e, "the broker cannot find offsets by time; reading the session topic from its beginning"))
            .ok();
        let mut assignment = TopicPartitionList::new();
        let mut next = HashMap::new();
        for &p in &partitions {
            let (low, high) = ends[&p];
            let by_time = starts
                .as_ref()
                .and_then(|s| s.find_partition(topic, p))
                .filter(|e| e.error().is_ok())
                .map(|e| e.offset());
            let start = match by_time {
                Some(Offset::Offset(n)) => n.max(low),
                // Nothing as recent: only what comes after the end now.
                Some(Offset::End) => high,
                _ => low,
            };
            assignment.add_partition_offset(topic, p, Offset::Offset(start))?;
            next.insert(p, start);
        }
        consumer.assign(&assignment)?;
        tracing::info!(%topic, partitions = partitions.len(), "reading the issuer's session topic");
        let mut caught_up = self.caught_up.load(Ordering::Acquire);
        let (mut pruned, mut errors) = (Instant::now(), 0u64);
        while !stopping(stop) {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    if let Some(payload) = m.payload() {
                        self.apply_event(payload);
                    }
                    next.insert(m.partition(), m.offset() + 1);
                }
                Some(Err(e)) => {
                    // librdkafka reconnects by itself: say so now and then, not at every poll.
                    errors += 1;
                    if errors.is_power_of_two() {
                        tracing::warn!(error = %e, errors, %topic, "reading the session topic");
                    }
                }
                None => {}
            }
            if !caught_up {
                // Positions pass records no message shows (transaction markers).
                if let Ok(positions) = consumer.position() {
                    for e in positions.elements() {
                        if let Offset::Offset(n) = e.offset() {
                            let at = next.entry(e.partition()).or_insert(n);
                            *at = (*at).max(n);
                        }
                    }
                }
                if ends
                    .iter()
                    .all(|(p, (_, high))| next.get(p).is_some_and(|n| n >= high))
                {
                    caught_up = true;
                    self.caught_up.store(true, Ordering::Release);
                    tracing::info!(%topic, "read the issuer's ended sessions");
                }
            }
            if pruned.elapsed() > Duration::from_secs(30) {
                pruned = Instant::now();
                self.book().prune(Utc::now().timestamp());
            }
        }
        Ok(())
    }

    fn book(&self) -> std::sync::MutexGuard<'_, SessionBook> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes an ended session or a changed role from an event of the topic;
    /// anything else, or older than a token lives, is ignored.
    fn apply_event(&self, payload: &[u8]) {
        let Ok(event) = serde_json::from_slice::<SessionEvent>(payload) else {
            tracing::debug!("an event of the session topic that is not a session event");
            return;
        };
        let ttl = self.settings.max_token_ttl_secs;
        self.book().apply(&event, Utc::now().timestamp(), ttl);
    }
}

/// Whether `stop` turned true, or nobody is left to turn it.
fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Whether the token is EdDSA-signed by a key the set does not have.
fn names_unknown_key(keys: &Keys, token: &str) -> bool {
    jsonwebtoken::decode_header(token)
        .ok()
        .filter(|h| h.alg == Algorithm::EdDSA)
        .and_then(|h| h.kid)
        .is_some_and(|kid| !keys.contains_key(&kid))
}

/// A key of a JWKS (RFC 7517), as far as an Ed25519 key has it.
#[derive(Deserialize)]
struct Jwk {
    kty: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
}

/// The Ed25519 signature keys of a JWKS by `kid`; other keys are left out.
fn parse_jwks(jwks: &Value) -> Keys {
    let listed = jwks["keys"].as_array().map_or(&[][..], Vec::as_slice);
    listed
        .iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter(|k| k.kty.as_deref() == Some("OKP") && k.crv.as_deref() == Some("Ed25519"))
        .filter(|k| matches!(k.alg.as_deref(), None | Some("EdDSA")))
        .filter(|k| matches!(k.usage.as_deref(), None | Some("sig")))
        .filter_map(|k| {
            let x = URL_SAFE_NO_PAD
                .decode(k.x?)
                .ok()
                .filter(|x| x.len() == 32)?;
            Some((k.kid?, DecodingKey::from_ed_der(&x)))
        })
        .collect()
}

/// The reader's client: the service's consumer settings (brokers, client
/// id, security), and short fetch waits, so that a logout is felt at once.
/// librdkafka assigns partitions only to a consumer with a `group.id`; this
/// one is the replica's own, never joined (no subscription) nor committed to.
fn reader_config(kafka: &KafkaSettings, spec: &KafkaSpec, brokers: &str) -> ClientConfig {
    let group = format!("{}-trust-{}", spec.client_id, Uuid::new_v4());
    let mut c = kafka.consumer_config(spec, brokers, &group);
    c.set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("allow.auto.create.topics", "false")
        .set("fetch.wait.max.ms", "50")
        .set("fetch.error.backoff.ms", "100");
    c
}

enum Failure {
    /// The topic does not exist (yet).
    NoTopic,
    Kafka(KafkaError),
}

impl From<KafkaError> for Failure {
    fn from(e: KafkaError) -> Self {
        Self::Kafka(e)
    }
}

/// An event of the session topic, as far as trust needs it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionEvent {
    name: String,
    timestamp: DateTime<Utc>,
    session_id: Option<Uuid>,
    payload: Option<EventPayload>,
}

#[derive(Deserialize)]
struct EventPayload {
    session: Option<EventSession>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventSession {
    session_id: Option<Uuid>,
    role: Option<String>,
}

impl SessionEvent {
    fn session(&self) -> Option<&EventSession> {
        self.payload.as_ref()?.session.as_ref()
    }
}

/// A role the issuer gave a session.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RoleChange {
    /// When, by the event (milliseconds): the newest wins.
    at_ms: i64,
    /// Kept until a token signed before it expired (unix seconds).
    until: i64,
    role: String,
}

/// Sessions the issuer ended and roles it changed, each kept as long as a
/// token signed before the event may still verify.
#[derive(Debug, Default)]
struct SessionBook {
    /// Ended sessions and until when (unix seconds).
    ended: HashMap<Uuid, i64>,
    roles: HashMap<Uuid, RoleChange>,
}

impl SessionBook {
    /// Bounds the memory: about 100 bytes an entry.
    const MAX: usize = 500_000;

    fn apply(&mut self, event: &SessionEvent, now: i64, ttl: i64) {
        let until = event.timestamp.timestamp() + ttl;
        let session = event
            .session()
            .and_then(|s| s.session_id)
            .or(event.session_id);
        let Some(session) = session.filter(|_| until > now) else {
            return;
        };
        match event.name.as_str() {
            "sessionDeleted" => {
                keep_room(&mut self.ended, Self::MAX, now, |u| *u);
                let kept = self.ended.entry(session).or_insert(until);
                *kept = (*kept).max(until);
                self.roles.remove(&session);
            }
            "sessionUpdated" => {
                let Some(role) = event.session().and_then(|s| s.role.clone()) else {
                    return;
                };
                let change = RoleChange {
                    at_ms: event.timestamp.timestamp_millis(),
                    until,
                    role,
                };
                if self.ended.contains_key(&session)
                    || self
                        .roles
                        .get(&session)
                        .is_some_and(|c| c.at_ms > change.at_ms)
                {
                    return;
                }
                keep_room(&mut self.roles, Self::MAX, now, |c| c.until);
                self.roles.insert(session, change);
            }
            _ => {}
        }
    }

    /// Refuses an ended session; else the role the issuer last gave it, if any.
    fn standing(&self, session: Uuid, now: i64) -> Result<Option<String>, ApiError> {
        if self.ended.get(&session).is_some_and(|until| *until > now) {
            return Err(ApiError::Unauthorized("the session has ended".into()));
        }
        Ok(self
            .roles
            .get(&session)
            .filter(|c| c.until > now)
            .map(|c| c.role.clone()))
    }

    fn prune(&mut self, now: i64) {
        self.ended.retain(|_, until| *until > now);
        self.roles.retain(|_, c| c.until > now);
    }
}

/// Makes room for one more entry under `max`: drops what
/// expired, and if every entry is current, the one that expires first
/// (forgetting an ended session early is the lesser harm than forgetting all).
fn keep_room<V>(map: &mut HashMap<Uuid, V>, max: usize, now: i64, until: impl Fn(&V) -> i64) {
    if map.len() < max {
        return;
    }
    map.retain(|_, v| until(v) > now);
    if map.len() >= max {
        if let Some(first) = map.iter().min_by_key(|(_, v)| until(v)).map(|(k, _)| *k) {
            tracing::warn!("the session book is full: forgetting the entry that expires first");
            map.remove(&first);
        }
    }
}

#[cfg(all(test, feature = "identity"))]
mod tests {
    use super::*;
    use crate::auth::keys::{tests::test_key, SigningKey};
    use crate::auth::rules::tests::POLICY;
    use crate::auth::tokens::sign;
    use crate::auth::tokens::tests::{forged, COOKIES};
    use axum::http::{HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::get;
    use axum::{Json, Router};
    use serde_json::json;
    use std::sync::atomic::AtomicUsize;

    const WHO: Audience = Audience {
        issuer: "auth-service",
        audience: "airbnb",
    };

    static TRUST: Trust = Trust {
        tokens: WHO,
        session_topic: "auth-service-session",
        transport: TokenTransport {
            header: Some("x-access-token"),
            cookies: Some(COOKIES),
        },
        policy: POLICY,
    };

    const TTL: i64 = 900;

    /// A stand-in for the issuer's JWKS route: what it serves can change, it
    /// counts its requests and can fail the next few.
    struct Issuer {
        url: String,
        jwks: Arc<Mutex<Vec<Value>>>,
        fetches: Arc<AtomicUsize>,
        failing: Arc<AtomicUsize>,
    }

    impl Issuer {
        async fn serving(keys: &[&SigningKey]) -> Self {
            let mut served = Vec::new();
            for key in keys {
                served.push(jwk(key).await);
            }
            let jwks = Arc::new(Mutex::new(served));
            let (fetches, failing) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let route = {
                let (jwks, fetches, failing) = (jwks.clone(), fetches.clone(), failing.clone());
                get(move || {
                    let (jwks, fetches, failing) = (jwks.clone(), fetches.clone(), failing.clone());
                    async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        let failed =
                            failing.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                n.checked_sub(1)
                            });
                        if failed.is_ok() {
                            return StatusCode::SERVICE_UNAVAILABLE.into_response();
                        }
                        let keys = jwks.lock().expect("jwks").clone();
                        Json(json!({ "keys": keys })).into_response()
                    }
                })
            };
            let app = Router::new().route("/v1/.well-known/jwks.json", route);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a port");
            let url = format!(
                "http://{}/v1/.well-known/jwks.json",
                listener.local_addr().expect("an address")
            );
            tokio::spawn(async move { axum::serve(listener, app).await });
            Self {
                url,
                jwks,
                fetches,
                failing,
            }
        }

        async fn serve(&self, keys: &[&SigningKey]) {
            let mut served = Vec::new();
            for key in keys {
                served.push(jwk(key).await);
            }
            *self.jwks.lock().expect("jwks") = served;
        }

        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }

        /// A trusting state of this issuer that has read the session topic.
        fn state(&self, refetch_min: Duration) -> Arc<TrustState> {
            let state = TrustState::new(
                &TRUST,
                TrustSettings {
                    jwks_url: self.url.clone(),
                    refresh: Duration::from_secs(300),
                    refetch_min,
                    max_token_ttl_secs: TTL,
                },
            );
            state.caught_up.store(true, Ordering::Release);
            state
        }
    }

    /// The key as the issuer's JWKS route shows it.
    async fn jwk(key: &SigningKey) -> Value {
        let jwks = super::super::keys::KeyRing::of(key, 60)
            .snapshot()
            .jwks(Utc::now());
        let body = axum::body::to_bytes(jwks.into_body(), usize::MAX)
            .await
            .expect("a body");
        let jwks: Value = serde_json::from_slice(&body).expect("JSON");
        jwks["keys"][0].clone()
    }

    fn named(kid: &str) -> SigningKey {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("a key");
        SigningKey::from_pkcs8(kid.into(), pkcs8.as_ref()).expect("a valid key")
    }

    fn token(key: &SigningKey, session: Uuid, role: &str) -> String {
        sign(key, WHO, Uuid::new_v4(), session, role, 60)
            .expect("signed")
            .0
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("a header");
        h.insert("authorization", value);
        h
    }

    fn unauthorized(r: Result<(TokenFacts, String), ApiError>) -> bool {
        matches!(r, Err(ApiError::Unauthorized(_)))
    }

    #[tokio::test]
    async fn tokens_verify_once_the_jwks_is_fetched_despite_early_failures() {
        let key = test_key();
        let issuer = Issuer::serving(&[&key]).await;
        issuer.failing.store(2, Ordering::SeqCst);
        let state = issuer.state(Duration::from_secs(10));
        let session = Uuid::new_v4();
        let t = token(&key, session, "admin");
        let early = state.admit(&bearer(&t)).await.unwrap_err();
        assert!(matches!(early, ApiError::Unavailable(_)), "{early:?}");
        let (stop_tx, stop) = watch::channel(false);
        let keeper = tokio::spawn(state.clone().keep_keys(stop));
        let started = Instant::now();
        while !state.ready() {
            assert!(started.elapsed() < Duration::from_secs(5), "no keys");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(issuer.fetches(), 3, "two failures, then the keys");
        let (facts, role) = state.admit(&bearer(&t)).await.expect("admitted");
        assert_eq!((facts.session_id, role.as_str()), (session, "admin"));
        assert_eq!(facts.kid, "test");
        stop_tx.send(true).expect("stop");
        keeper.await.expect("the keeper stops");
    }

    #[tokio::test]
    async fn an_unknown_key_fetches_the_jwks_again_at_most_once_a_while() {
        let (k1, k2, k3) = (test_key(), named("k2"), named("k3"));
        let issuer = Issuer::serving(&[&k1]).await;
        let state = issuer.state(Duration::from_secs(60));
        state.fetch_keys().await.expect("keys");
        assert_eq!(issuer.fetches(), 1);
        issuer.serve(&[&k1, &k2]).await;
        // Requests with a new key at once: one fetch, all wait for it.
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (state, t) = (state.clone(), token(&k2, Uuid::new_v4(), "user"));
            requests.spawn(async move { state.admit(&bearer(&t)).await.map(|(_, role)| role) });
        }
        while let Some(admitted) = requests.join_next().await {
            assert_eq!(admitted.expect("joined").expect("admitted"), "user");
        }
        assert_eq!(issuer.fetches(), 2);
        // Another unknown key within the interval fetches nothing.
        issuer.serve(&[&k1, &k2, &k3]).await;
        let t3 = token(&k3, Uuid::new_v4(), "user");
        assert!(unauthorized(state.admit(&bearer(&t3)).await));
        assert_eq!(issuer.fetches(), 2);
        // Once the interval has passed, it does.
        *state.refetched.lock().await = Some(Instant::now() - Duration::from_secs(61));
        assert!(state.admit(&bearer(&t3)).await.is_ok());
        assert_eq!(issuer.fetches(), 3);
    }

    #[tokio::test]
    async fn a_key_gone_from_the_jwks_stops_verifying_after_a_refresh() {
        let (old, new) = (test_key(), named("new"));
        let issuer = Issuer::serving(&[&old, &new]).await;
        let state = issuer.state(Duration::from_secs(60));
        state.fetch_keys().await.expect("keys");
        let (t_old, t_new) = (
            token(&old, Uuid::new_v4(), "user"),
            token(&new, Uuid::new_v4(), "user"),
        );
        assert!(state.admit(&bearer(&t_old)).await.is_ok());
        issuer.serve(&[&new]).await;
        state.fetch_keys().await.expect("refreshed");
        // Remembered as verified, but its key is gone.
        assert!(unauthorized(state.admit(&bearer(&t_old)).await));
        assert!(state.admit(&bearer(&t_new)).await.is_ok());
        // A JWKS that fails or has no Ed25519 key leaves the keys as they were.
        issuer.failing.store(1, Ordering::SeqCst);
        assert!(state.fetch_keys().await.is_err());
        issuer.serve(&[]).await;
        assert!(state.fetch_keys().await.is_err());
        assert!(state.admit(&bearer(&t_new)).await.is_ok());
    }

    #[tokio::test]
    async fn tokens_of_other_issuers_audiences_past_or_forged_are_refused() {
        let key = test_key();
        let issuer = Issuer::serving(&[&key]).await;
        let state = issuer.state(Duration::from_secs(60));
        state.fetch_keys().await.expect("keys");
        let (user, session) = (Uuid::new_v4(), Uuid::new_v4());
        let other = |who| {
            sign(&key, who, user, session, "user", 60)
                .expect("signed")
                .0
        };
        let mut refused = vec![
            (
                "issuer",
                other(Audience {
                    issuer: "else",
                    ..WHO
                }),
            ),
            (
                "audience",
                other(Audience {
                    audience: "else",
                    ..WHO
                }),
            ),
            (
                "expired",
                sign(&key, WHO, user, session, "user", -1)
                    .expect("signed")
                    .0,
            ),
            // Same kid, another key.
            ("impostor", token(&test_key(), session, "user")),
            ("garbage", "garbage".into()),
        ];
        refused.extend(forged(WHO, "test"));
        for (what, t) in refused {
            assert!(unauthorized(state.admit(&bearer(&t)).await), "{what}");
        }
        assert!(state
            .admit(&bearer(&token(&key, session, "user")))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn protected_routes_answer_503_until_keys_and_ended_sessions_are_known() {
        let key = test_key();
        let issuer = Issuer::serving(&[&key]).await;
        let state = issuer.state(Duration::from_secs(60));
        state.caught_up.store(false, Ordering::Release);
        let t = bearer(&token(&key, Uuid::new_v4(), "user"));
        let no_keys = state.admit(&t).await.unwrap_err();
        assert_eq!(
            no_keys.into_response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.fetch_keys().await.expect("keys");
        assert!(!state.ready());
        let unread = state.admit(&t).await.unwrap_err();
        assert!(matches!(unread, ApiError::Unavailable(m) if m.contains("ended sessions")));
        state.caught_up.store(true, Ordering::Release);
        assert!(state.ready() && state.admit(&t).await.is_ok());
    }

    #[tokio::test]
    async fn without_brokers_the_reader_does_not_hold_requests_back() {
        let issuer = Issuer::serving(&[&test_key()]).await;
        let state = issuer.state(Duration::from_secs(60));
        state.caught_up.store(false, Ordering::Release);
        static SPEC: KafkaSpec = KafkaSpec {
            source: "/listing-service",
            client_id: "listing-service",
            topics: &[],
        };
        let kafka = KafkaSettings::from_env(&Env::new(|_: &str| None), 1, 1).expect("settings");
        let (_stop_tx, stop) = watch::channel(false);
        state.clone().follow_sessions(&SPEC, kafka, stop).await;
        assert!(state.caught_up.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn tokens_come_from_bearer_or_the_header_never_from_cookies() {
        let key = test_key();
        let issuer = Issuer::serving(&[&key]).await;
        let state = issuer.state(Duration::from_secs(60));
        state.fetch_keys().await.expect("keys");
        let t = token(&key, Uuid::new_v4(), "user");
        let mut header = HeaderMap::new();
        header.insert(
            "x-access-token",
            HeaderValue::from_str(&t).expect("a header"),
        );
        assert!(state.admit(&header).await.is_ok());
        let mut cookie = HeaderMap::new();
        let value = HeaderValue::from_str(&format!("{}={t}", COOKIES.access)).expect("a header");
        cookie.insert("cookie", value);
        assert!(unauthorized(state.admit(&cookie).await));
    }

    /// An event of the issuer's session topic, as `session_event` writes it,
    /// with the session's role.
    fn event(name: &str, session: Uuid, at: DateTime<Utc>, role: Option<&str>) -> Vec<u8> {
        let user = Uuid::new_v4();
        let mut shown = json!({
            "sessionId": session,
            "userId": user,
            "accessToken": null,
            "refreshToken": null,
            "createdAt": at,
            "expiredAt": at,
        });
        if let Some(role) = role {
            shown["role"] = json!(role);
        }
        json!({
            "payload": { "session": shown },
            "id": Uuid::new_v4(),
            "version": 1,
            "name": name,
            "namespace": "auth",
            "parentNamespace": null,
            "timestamp": at,
            "clientId": null,
            "userId": user,
            "traceId": "trace",
            "sessionId": session,
        })
        .to_string()
        .into_bytes()
    }

    #[tokio::test]
    async fn an_ended_session_is_refused_as_long_as_its_tokens_live() {
        let key = test_key();
        let issuer = Issuer::serving(&[&key]).await;
        let state = issuer.state(Duration::from_secs(60));
        state.fetch_keys().await.expect("keys");
        let (ended, other) = (Uuid::new_v4(), Uuid::new_v4());
        let now = Utc::now();
        state.apply_event(&event("sessionDeleted", ended, now, Some("user")));
        let refused = state.admit(&bearer(&token(&key, ended, "user"))).await;
        assert!(matches!(refused, Err(ApiError::Unauthorized(m)) if m == "the session has ended"));
        assert!(state
            .admit(&bearer(&token(&key, other, "user")))
            .await
            .is_ok());
        // A later role change does not bring it back.
        state.apply_event(&event("sessionUpdated", ended, now, Some("admin")));
        assert!(unauthorized(
            state.admit(&bearer(&token(&key, ended, "user"))).await
        ));

        let mut book = state.book();
        let until = now.timestamp() + TTL;
        assert!(book.standing(ended, until - 1).is_err());
        assert_eq!(book.standing(ended, until).expect("expired"), None);
        book.prune(until);
        assert!(book.ended.is_empty() && book.roles.is_empty());
        // An event older than a token lives concerns no token that verifies.
        let old = now - chrono::Duration::seconds(TTL + 1);
        let stale: SessionEvent =
            serde_json::from_slice(&event("sessionDeleted", ended, old, None)).expect("event");
        book.apply(&stale, now.timestamp(), TTL);
        assert!(book.ended.is_empty());
    }

    #[tokio::test]
    async fn the_newest_role_change_wins_whatever_order_it_arrives_in() {
        let key = test_key();
        let issuer = Issuer::serving(&[&key]).await;
        let state = issuer.state(Duration::from_secs(60));
        state.fetch_keys().await.expect("keys");
        let session = Uuid::new_v4();
        let t = bearer(&token(&key, session, "admin"));
        let role = |state: &TrustState| {
            let state = state.book();
            state
                .standing(session, Utc::now().timestamp())
                .expect("live")
        };
        let now = Utc::now();
        // Without a role the event changes nothing.
        state.apply_event(&event("sessionUpdated", session, now, None));
        assert_eq!(state.admit(&t).await.expect("admitted").1, "admin");
        state.apply_event(&event("sessionUpdated", session, now, Some("user")));
        let earlier = now - chrono::Duration::seconds(5);
        state.apply_event(&event(
            "sessionUpdated",
            session,
            earlier,
            Some("superAdmin"),
        ));
        assert_eq!(role(&state).as_deref(), Some("user"));
        let (facts, caller_role) = state.admit(&t).await.expect("admitted");
        assert_eq!(
            (facts.role.as_str(), caller_role.as_str()),
            ("admin", "user")
        );
        // Created and other events carry no role change.
        let later = now + chrono::Duration::seconds(5);
        state.apply_event(&event("sessionCreated", session, later, Some("admin")));
        assert_eq!(role(&state).as_deref(), Some("user"));
        // Roles the model does not know, and the system's, are refused.
        state.apply_event(&event("sessionUpdated", session, later, Some(SYSTEM_ROLE)));
        assert!(matches!(state.admit(&t).await, Err(ApiError::Forbidden)));
        for claimed in ["ghost", SYSTEM_ROLE] {
            let t = bearer(&token(&key, Uuid::new_v4(), claimed));
            assert!(
                matches!(state.admit(&t).await, Err(ApiError::Forbidden)),
                "{claimed}"
            );
        }
        // Not a session event at all: ignored.
        state.apply_event(b"{\"name\": 1}");
        assert_eq!(role(&state).as_deref(), Some(SYSTEM_ROLE));
    }

    #[test]
    fn a_full_book_forgets_what_expires_first() {
        let mut map: HashMap<Uuid, i64> = (0..4).map(|i| (Uuid::new_v4(), 10 + i)).collect();
        keep_room(&mut map, 5, 0, |u| *u);
        assert_eq!(map.len(), 4, "room left: nothing goes");
        keep_room(&mut map, 4, 11, |u| *u);
        assert_eq!(map.len(), 2, "the expired go first");
        keep_room(&mut map, 2, 0, |u| *u);
        assert_eq!(map.values().copied().collect::<Vec<_>>(), [13]);
    }

    #[test]
    fn the_jwks_gives_only_ed25519_signature_keys() {
        let x = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let jwks = json!({ "keys": [
            { "kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB" },
            { "kty": "OKP", "crv": "X25519", "kid": "x", "x": x },
            { "kty": "OKP", "crv": "Ed25519", "kid": "rs", "x": x, "alg": "RS256" },
            { "kty": "OKP", "crv": "Ed25519", "kid": "enc", "x": x, "use": "enc" },
            { "kty": "OKP", "crv": "Ed25519", "x": x },
            { "kty": "OKP", "crv": "Ed25519", "kid": "short", "x": "AAAA" },
            { "kty": "OKP", "crv": "Ed25519", "kid": 7, "x": x },
            { "kty": "OKP", "crv": "Ed25519", "kid": "bare", "x": x },
            { "kty": "OKP", "crv": "Ed25519", "kid": "full", "x": x, "alg": "EdDSA", "use": "sig" },
        ]});
        let mut kids: Vec<String> = parse_jwks(&jwks).into_keys().collect();
        kids.sort();
        assert_eq!(kids, ["bare", "full"]);
        assert!(parse_jwks(&json!({ "keys": "none" })).is_empty());
    }

    #[test]
    fn settings_come_from_the_environment_with_the_model_defaults() {
        let defaults = TrustDefaults {
            jwks_url: "http://auth-service:8080/v1/.well-known/jwks.json",
            max_token_ttl_secs: 900,
        };
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            Env::new(move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            })
        };
        let s = TrustSettings::from_env(&env(&[]), &defaults).expect("defaults");
        assert_eq!(s.jwks_url, defaults.jwks_url);
        assert_eq!(
            (s.refresh, s.refetch_min, s.max_token_ttl_secs),
            (Duration::from_secs(300), Duration::from_secs(10), 900)
        );
        let set = env(&[
            ("JWKS_URL", "https://auth.example/jwks.json"),
            ("JWKS_REFRESH_SECS", "60"),
            ("JWKS_REFETCH_MIN_SECS", "2"),
            ("TRUST_MAX_TOKEN_TTL_SECS", "300"),
        ]);
        let s = TrustSettings::from_env(&set, &defaults).expect("set");
        assert_eq!(s.jwks_url, "https://auth.example/jwks.json");
        assert_eq!(
            (s.refresh, s.refetch_min, s.max_token_ttl_secs),
            (Duration::from_secs(60), Duration::from_secs(2), 300)
        );
        for (bad, name) in [
            (&[("JWKS_URL", "ftp://x/jwks")][..], "JWKS_URL"),
            (&[("JWKS_REFRESH_SECS", "0")][..], "JWKS_REFRESH_SECS"),
            (
                &[("TRUST_MAX_TOKEN_TTL_SECS", "x")][..],
                "TRUST_MAX_TOKEN_TTL_SECS",
            ),
        ] {
            let err = TrustSettings::from_env(&env(bad), &defaults).unwrap_err();
            assert!(err.to_string().starts_with(name), "{err}");
        }
    }

    #[test]
    fn the_reader_has_a_group_of_its_own_and_waits_briefly_for_events() {
        let env = Env::new(|name: &str| {
            (name == "KAFKA_SECURITY_PROTOCOL").then(|| "sasl_ssl".to_string())
        });
        let kafka = KafkaSettings::from_env(&env, 1, 1).expect("settings");
        static SPEC: KafkaSpec = KafkaSpec {
            source: "/listing-service",
            client_id: "listing-service",
            topics: &[],
        };
        let c = reader_config(&kafka, &SPEC, "broker:9092");
        let group = c.get("group.id").expect("a group id");
        assert!(group.starts_with("listing-service-trust-"), "{group}");
        assert_ne!(
            reader_config(&kafka, &SPEC, "b:9092").get("group.id"),
            Some(group)
        );
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("fetch.wait.max.ms"), Some("50"));
        assert_eq!(c.get("client.id"), Some("listing-service"));
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
    }

    /// The in-memory tansu broker the end-to-end tests use, on a free port.
    struct Broker(std::process::Child, String);

    impl Broker {
        async fn start() -> Self {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let child = crate::testing::tansu_broker(port)
                .spawn()
                .expect("tansu starts (cargo install --locked tansu --features dynostore)");
            for _ in 0..100 {
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Self(child, format!("127.0.0.1:{port}"))
        }
    }

    impl Drop for Broker {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_replica_reads_every_partition_of_the_session_topic() {
        use rdkafka::producer::FutureProducer;
        static SPEC: KafkaSpec = KafkaSpec {
            source: "/auth-service",
            client_id: "trust-test",
            topics: &["auth-service-session"],
        };
        let broker = Broker::start().await;
        let env = Env::new(|name: &str| (name == "KAFKA_BROKERS").then(|| broker.1.clone()));
        let kafka = KafkaSettings::from_env(&env, 3, 1).expect("settings");
        let key = test_key();
        let issuer = Issuer::serving(&[&key]).await;
        let (_stop_tx, stop) = watch::channel(false);
        let replica = || {
            let state = issuer.state(Duration::from_secs(60));
            state.caught_up.store(false, Ordering::Release);
            let follow = state
                .clone()
                .follow_sessions(&SPEC, kafka.clone(), stop.clone());
            tokio::spawn(follow);
            state
        };
        // One replica starts before the issuer made its topic: it waits.
        let early = replica();
        early.fetch_keys().await.expect("keys");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t = bearer(&token(&key, Uuid::new_v4(), "user"));
        assert!(matches!(
            early.admit(&t).await,
            Err(ApiError::Unavailable(_))
        ));
        crate::kafka::ensure_topics(&SPEC, &kafka, &broker.1)
            .await
            .expect("the topic");
        let producer: FutureProducer = kafka
            .consumer_config(&SPEC, &broker.1, "")
            .remove("group.id")
            .create()
            .expect("a producer");
        let publish = |name: &'static str, session: Uuid, partition: i32, role: Option<&str>| {
            let payload = String::from_utf8(event(name, session, Utc::now(), role)).expect("UTF-8");
            let producer = producer.clone();
            async move {
                let key = session.to_string();
                let now = Utc::now().to_rfc3339();
                let r = crate::kafka::record(
                    "/auth-service",
                    Uuid::new_v4(),
                    TRUST.session_topic,
                    &key,
                    &payload,
                    &crate::kafka::RecordMeta {
                        time: &now,
                        ..Default::default()
                    },
                )
                .partition(partition);
                producer
                    .send(r, Duration::from_secs(5))
                    .await
                    .expect("published");
            }
        };
        // Before the second replica starts: an ended session and a changed role.
        let (ended, demoted) = (Uuid::new_v4(), Uuid::new_v4());
        publish("sessionDeleted", ended, 2, None).await;
        publish("sessionUpdated", demoted, 1, Some("user")).await;
        // The other starts now: once ready, it knows them at once.
        let late = replica();
        late.fetch_keys().await.expect("keys");
        let started = Instant::now();
        while !late.ready() {
            assert!(started.elapsed() < Duration::from_secs(20), "caught up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (ended_token, demoted_token) = (
            bearer(&token(&key, ended, "user")),
            bearer(&token(&key, demoted, "admin")),
        );
        let knows = |r: Arc<TrustState>| {
            let (ended_token, demoted_token) = (ended_token.clone(), demoted_token.clone());
            async move {
                let role = r.admit(&demoted_token).await.map(|(_, role)| role);
                unauthorized(r.admit(&ended_token).await) && role.is_ok_and(|r| r == "user")
            }
        };
        assert!(knows(late.clone()).await);
        // The early one may have caught up before they were published: it
        // learns them as they come.
        let started = Instant::now();
        while !knows(early.clone()).await {
            assert!(started.elapsed() < Duration::from_secs(20), "learnt");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let replicas = [early, late];
        // Sessions ending now, on every partition: each replica refuses each.
        let sessions: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        let started = Instant::now();
        for (p, s) in sessions.iter().enumerate() {
            publish("sessionDeleted", *s, p as i32, None).await;
        }
        for r in &replicas {
            for s in &sessions {
                let t = bearer(&token(&key, *s, "user"));
                while r.admit(&t).await.is_ok() {
                    assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "the logout was felt"
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        eprintln!(
            "every replica refused every ended session after {:?}",
            started.elapsed()
        );
    }
}
