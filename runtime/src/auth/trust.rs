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
//! itself: assigned, without a consumer group, committing nothing. A group
//! would share the partitions out, and each replica would learn only some
//! revocations; sharing them through the database and NOTIFY as the issuer
//! does would add a round trip and a single reader to fail. A replica's
//! memory is its own, rebuilt at every start from the last maximum token
//! lifetime of the topic (an older event concerns no token that still
//! verifies). Until it has read as far as the topic reached when it started,
//! protected routes answer 503: no replica accepts a token revoked before it
//! started.

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
        let positive = |name: &'static str, default: &str| -> Result<u64, ConfigError> {
            match env.parse::<u64>(name, default)? {
                0 => Err(ConfigError::Invalid {
                    name,
                    reason: "must be at least 1".into(),
                }),
                n => Ok(n),
            }
        };
        Ok(Self {
            jwks_url,
            refresh: Duration::from_secs(positive("JWKS_REFRESH_SECS", "300")?),
            refetch_min: Duration::from_secs(env.parse("JWKS_REFETCH_MIN_SECS", "10")?),
            max_token_ttl_secs: positive(
                "TRUST_MAX_TOKEN_TTL_SECS",
                &defaults.max_token_ttl_secs.to_string(),
            )? as i64,
        })
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
                _ = stop.changed() => {}
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
        let mut waiting = false;
        while !*stop.borrow() {
            match self.read_topic(config, stop) {
                Ok(()) => return,
                Err(Failure::NoTopic) => {
                    if !waiting {
                        tracing::info!(%topic, "waiting for the issuer's session topic");
                    }
                    waiting = true;
                }
                Err(Failure::Kafka(e)) => {
                    tracing::warn!(error = %e, %topic, "reading the session topic; retrying");
                }
            }
            let until = Instant::now() + backoff;
            while Instant::now() < until && !*stop.borrow() {
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
        let mut pruned = Instant::now();
        while !*stop.borrow() {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    if let Some(payload) = m.payload() {
                        self.apply_event(payload);
                    }
                    next.insert(m.partition(), m.offset() + 1);
                }
                Some(Err(e)) => tracing::warn!(error = %e, %topic, "reading the session topic"),
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
/// id, security), with no group (partitions are assigned, nothing is
/// committed) and short fetch waits, so that a logout is felt at once.
fn reader_config(kafka: &KafkaSettings, spec: &KafkaSpec, brokers: &str) -> ClientConfig {
    let mut c = kafka.consumer_config(spec, brokers, "");
    c.remove("group.id")
        .set("enable.auto.commit", "false")
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
                keep_room(&mut self.ended, now, |u| *u);
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
                keep_room(&mut self.roles, now, |c| c.until);
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

/// Makes room for one more entry under [`SessionBook::MAX`]: drops what
/// expired, and if every entry is current, the one that expires first
/// (forgetting an ended session early is the lesser harm than forgetting all).
fn keep_room<V>(map: &mut HashMap<Uuid, V>, now: i64, until: impl Fn(&V) -> i64) {
    if map.len() < SessionBook::MAX {
        return;
    }
    map.retain(|_, v| until(v) > now);
    if map.len() >= SessionBook::MAX {
        if let Some(first) = map.iter().min_by_key(|(_, v)| until(v)).map(|(k, _)| *k) {
            tracing::warn!("the session book is full: forgetting the entry that expires first");
            map.remove(&first);
        }
    }
}
