//! Consuming events: of other services (replicas of their objects, routes and
//! hooks run for their events) and of this service itself.
//!
//! One consumer group per service reads every topic its consumers name. An
//! effect and the event's inbox row (consumer, event id) commit in one
//! transaction, and offsets are committed only after it: a redelivered event
//! (a crash, a rebalance, a replay) finds its inbox row and changes nothing.
//!
//! A batch of messages is first applied in one transaction: every effect that
//! runs in a transaction the consumer owns (replicas, hooks). When one of them
//! fails the batch rolls back, and its events are applied one at a time, each
//! retried with backoff and, when it keeps failing, published to its
//! consumer's dead-letter topic with the error, the attempts and the original
//! headers; then the partition moves on. A route runs in its own transaction,
//! one event at a time, and records the inbox row with its first outbox write
//! (see [`Consumed`]). Order per key holds: a partition's messages take
//! effect in offset order, each only after the one before it took effect or
//! was dead-lettered.

use crate::config::{ConfigError, Env};
use crate::envelope::RequestContext;
use crate::error::{ApiError, FieldError};
use crate::event::Consumed;
use crate::kafka::{self, KafkaSettings, KafkaSpec};
use crate::outbox::record_inbox;
use crate::route::ServiceInfo;
use crate::trace::TraceContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use sqlx::postgres::PgPool;
use sqlx::PgConnection;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::Instrument;

/// How often librdkafka reports each partition's lag (its statistics, from
/// what fetches already told it: no request of its own), how long an idle
/// consumer waits for an event before it looks at its chores, and how often
/// old inbox rows are deleted.
const STATS_EVERY_MS: &str = "5000";
const IDLE_WAKE: Duration = Duration::from_secs(1);
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// How long one metadata or watermark request may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(5);
/// Waits between attempts to reach the broker or find the topics.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where a consumer's effect runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// In a transaction the consumer owns, beside other events' effects
    /// (a replica's upsert, a hook).
    InBatch,
    /// A route of the service: in its own transaction, one event at a time.
    Route,
}

/// One consumer of the model.
#[derive(Debug)]
pub struct ConsumerSpec {
    pub name: &'static str,
    /// `replicate`, `route` or `hook`, for the health report and the rebuild.
    pub kind: &'static str,
    pub topics: &'static [&'static str],
    pub dead_letter: &'static str,
    pub effect: Effect,
}

/// What the model says about the service's consumers.
#[derive(Debug)]
pub struct ConsumeSpec {
    pub service: &'static ServiceInfo,
    pub consumers: &'static [ConsumerSpec],
}

impl ConsumeSpec {
    /// Every topic some consumer reads, once each.
    pub fn topics(&self) -> Vec<&'static str> {
        let mut topics: Vec<&'static str> = Vec::new();
        for t in self.consumers.iter().flat_map(|c| c.topics) {
            if !topics.contains(t) {
                topics.push(t);
            }
        }
        topics
    }

    /// The consumer called `name`, with its index.
    pub fn consumer(&self, name: &str) -> Option<(usize, &'static ConsumerSpec)> {
        self.consumers
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
    }
}

/// The model's `consuming:` settings, the defaults of [`ConsumeSettings`].
#[derive(Debug, Clone, Copy)]
pub struct ConsumeDefaults {
    /// The consumer group: the service's name.
    pub group: &'static str,
    pub max_attempts: u32,
    pub retry_backoff_ms: u64,
    pub max_retry_backoff_ms: u64,
    pub batch_size: usize,
    pub inbox_retention_secs: u64,
}

/// How this deployment consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumeSettings {
    /// `CONSUMER_GROUP` (default: the service's name).
    pub group: String,
    /// `CONSUMER_MAX_ATTEMPTS`: attempts of one event before it is dead-lettered.
    pub max_attempts: u32,
    /// `CONSUMER_RETRY_BACKOFF_MS` and `CONSUMER_MAX_RETRY_BACKOFF_MS`: the
    /// wait after the first failed attempt, doubled after each, up to the most.
    pub retry_backoff_ms: u64,
    pub max_retry_backoff_ms: u64,
    /// `CONSUMER_BATCH_SIZE`: events applied in one transaction at most.
    pub batch_size: usize,
    /// `CONSUMER_FETCH_WAIT_MS` (default 20): the longest a fetch waits at
    /// the broker for new events. Kafka answers as soon as one arrives; a
    /// broker that waits out the whole time (tansu) adds it to an event's
    /// latency. The cost: an idle member fetches up to 50 times a second.
    pub fetch_wait_ms: u64,
    /// `CONSUMER_SESSION_TIMEOUT_MS` (default 45000): how long the group waits
    /// for a member that stopped answering before its partitions move.
    pub session_timeout_ms: u64,
    /// `INBOX_RETENTION_SECS`: how long inbox rows are kept. A redelivery
    /// older than this would take effect again (replicas excepted: their
    /// versions keep them right).
    pub inbox_retention_secs: u64,
}

impl ConsumeSettings {
    pub fn from_env<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
        d: &ConsumeDefaults,
    ) -> Result<Self, ConfigError> {
        let settings = Self {
            group: env
                .text("CONSUMER_GROUP")
                .unwrap_or_else(|| d.group.to_string()),
            max_attempts: env.parse("CONSUMER_MAX_ATTEMPTS", &d.max_attempts.to_string())?,
            retry_backoff_ms: env
                .parse("CONSUMER_RETRY_BACKOFF_MS", &d.retry_backoff_ms.to_string())?,
            max_retry_backoff_ms: env.parse(
                "CONSUMER_MAX_RETRY_BACKOFF_MS",
                &d.max_retry_backoff_ms.to_string(),
            )?,
            batch_size: env.parse("CONSUMER_BATCH_SIZE", &d.batch_size.to_string())?,
            session_timeout_ms: env.parse("CONSUMER_SESSION_TIMEOUT_MS", "45000")?,
            fetch_wait_ms: env.parse("CONSUMER_FETCH_WAIT_MS", "20")?,
            inbox_retention_secs: env
                .parse("INBOX_RETENTION_SECS", &d.inbox_retention_secs.to_string())?,
        };
        if settings.max_attempts == 0 {
            return Err(ConfigError::Invalid {
                name: "CONSUMER_MAX_ATTEMPTS",
                reason: "must be at least 1".into(),
            });
        }
        if settings.batch_size == 0 {
            return Err(ConfigError::Invalid {
                name: "CONSUMER_BATCH_SIZE",
                reason: "must be at least 1".into(),
            });
        }
        Ok(settings)
    }

    /// The wait after failed attempt `attempt` (1-based).
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u64 << attempt.saturating_sub(1).min(20);
        Duration::from_millis(
            self.retry_backoff_ms
                .saturating_mul(factor)
                .min(self.max_retry_backoff_ms),
        )
    }
}

/// One event as read from its topic.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The `ce_id` header; `<topic>/<partition>/<offset>` for a record
    /// without one (a producer that does not speak CloudEvents).
    pub event_id: String,
    /// The `ce_requestid` header: the request that caused the event.
    pub request_id: Option<String>,
    /// The `traceparent` and `tracestate` headers: the trace the event is part of.
    pub trace: Option<TraceContext>,
}

impl Delivery {
    pub fn from_message(m: &impl Message) -> Self {
        let headers: Vec<(String, Vec<u8>)> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let (event_id, request_id) = (header("ce_id"), header("ce_requestid"));
        let trace = header("traceparent")
            .and_then(|t| TraceContext::parse(&t, header("tracestate").as_deref()));
        Self {
            event_id: event_id
                .unwrap_or_else(|| format!("{}/{}/{}", m.topic(), m.partition(), m.offset())),
            request_id,
            trace,
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers,
        }
    }

    /// The payload as `T`; a payload that is not one is a 400 naming where
    /// it broke, which the dead letter carries.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        decode(&self.payload)
    }

    /// The row a database event carries: the payload itself for created and
    /// deleted events; `payload[object]` (the row after the change) for
    /// updated ones, which also carry the row before it.
    pub fn row<T: DeserializeOwned>(&self, updated_of: Option<&str>) -> Result<T, ApiError> {
        let Some(object) = updated_of else {
            return self.decode();
        };
        let mut payload: Value = self.decode()?;
        match payload.get_mut(object).map(Value::take) {
            Some(row @ Value::Object(_)) => serde_json::from_value(row)
                .map_err(|e| ApiError::BadRequest(format!("payload.{object}: {e}"))),
            _ => Err(ApiError::BadRequest(format!(
                "payload: an updated event carries the row under \"{object}\""
            ))),
        }
    }

    fn context(
        &self,
        service: &'static ServiceInfo,
        consumed: Option<Arc<Consumed>>,
    ) -> RequestContext {
        let request_id = self
            .request_id
            .clone()
            .unwrap_or_else(|| format!("event-{}", self.event_id));
        // Inside the event's span when spans are exported; else one step
        // further in the event's trace (or a trace of its own).
        let trace = self
            .trace
            .as_ref()
            .map_or_else(TraceContext::fresh, TraceContext::child)
            .here();
        RequestContext::consuming(service, request_id, consumed, trace)
    }

    /// When spans are exported: the consumer span of `consumer`'s work on
    /// the event, under the producer span the record names.
    fn span(&self, consumer: &'static str) -> tracing::Span {
        if !crate::trace::exporting() {
            return tracing::Span::none();
        }
        let span = tracing::debug_span!(
            parent: None,
            "consume",
            otel.name = format!("{} process", self.topic),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            consumer,
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.destination.name = %self.topic,
            messaging.destination.partition.id = self.partition,
            messaging.kafka.offset = self.offset,
            messaging.message.id = %self.event_id,
        );
        if let Some(parent) = &self.trace {
            parent.adopt(&span);
        }
        span
    }
}

/// The uuid in `payload[field]`: the row a route consumer's path names.
pub fn uuid_at(payload: &Value, field: &str) -> Result<uuid::Uuid, ApiError> {
    payload
        .get(field)
        .and_then(Value::as_str)
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
        .ok_or_else(|| ApiError::BadRequest(format!("payload.{field}: expected a uuid")))
}

/// A route's body made of payload fields: `(input, payload field)` pairs.
pub fn input_from<T: DeserializeOwned>(
    payload: &Value,
    pairs: &[(&str, &str)],
) -> Result<T, ApiError> {
    let mut body = serde_json::Map::new();
    for (input, field) in pairs {
        if let Some(v) = payload.get(*field) {
            body.insert((*input).to_string(), v.clone());
        }
    }
    serde_json::from_value(Value::Object(body))
        .map_err(|e| ApiError::BadRequest(format!("the route's input from the payload: {e}")))
}

fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ApiError> {
    // The common case costs one parse; a payload that fails is parsed again
    // to name where it broke.
    if let Ok(value) = serde_json::from_slice(payload) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(payload);
    serde_path_to_error::deserialize(&mut de)
        .map_err(|e| ApiError::BadRequest(format!("payload.{}: {}", e.path(), e.inner())))
}

/// The service's effects, generated from its consumers.
pub trait Effects: Send + Sync + 'static {
    /// Applies `event` for consumer `consumer` (an index into the spec's
    /// consumers, of effect [`Effect::InBatch`]) inside `tx`.
    fn apply(
        &self,
        consumer: usize,
        tx: &mut PgConnection,
        ctx: &RequestContext,
        event: &Delivery,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Applies `events` (in offset order per partition) for consumer
    /// `consumer` at once inside `tx`, when it can (a replica's one
    /// statement); `None` when its events go one by one through [`Effects::apply`].
    fn apply_all(
        &self,
        consumer: usize,
        tx: &mut PgConnection,
        events: &[&Delivery],
    ) -> impl Future<Output = Option<Result<(), ApiError>>> + Send;
    /// Runs the route of consumer `consumer` (of effect [`Effect::Route`])
    /// for `event`, as the system caller; `ctx` records the inbox row.
    fn run(
        &self,
        consumer: usize,
        ctx: RequestContext,
        event: &Delivery,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}

/// What each consumer has done since start, for `/healthz`.
#[derive(Debug)]
pub struct ConsumerStats {
    spec: &'static ConsumeSpec,
    counters: Vec<Counters>,
    /// Messages behind the end, per topic and partition this replica reads.
    lag: Mutex<BTreeMap<(String, i32), i64>>,
    /// The group has given this replica its partitions at least once.
    running: AtomicBool,
    /// `topic/partition` of what the group assigned this replica now.
    assigned: Mutex<Vec<String>>,
}

#[derive(Debug, Default)]
struct Counters {
    applied: AtomicU64,
    duplicates: AtomicU64,
    retries: AtomicU64,
    dead_lettered: AtomicU64,
    last_failure: Mutex<Option<String>>,
    failing_since: AtomicI64,
}

impl ConsumerStats {
    pub fn new(spec: &'static ConsumeSpec) -> Arc<Self> {
        Arc::new(Self {
            spec,
            counters: spec.consumers.iter().map(|_| Counters::default()).collect(),
            lag: Mutex::new(BTreeMap::new()),
            running: AtomicBool::new(false),
            assigned: Mutex::new(Vec::new()),
        })
    }

    /// Per consumer: its kind, events applied, duplicates skipped, retries,
    /// dead letters, the last failure, and the lag of its topics' partitions
    /// that this replica reads.
    pub fn snapshot(&self) -> Value {
        let lag = self.lag.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut out = serde_json::Map::new();
        for (spec, c) in self.spec.consumers.iter().zip(&self.counters) {
            let behind: i64 = lag
                .iter()
                .filter(|((t, _), _)| spec.topics.contains(&t.as_str()))
                .map(|(_, n)| *n)
                .sum();
            let last_failure = c
                .last_failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            out.insert(
                spec.name.to_string(),
                json!({
                    "kind": spec.kind,
                    "applied": c.applied.load(Ordering::Relaxed),
                    "duplicates": c.duplicates.load(Ordering::Relaxed),
                    "retries": c.retries.load(Ordering::Relaxed),
                    "deadLettered": c.dead_lettered.load(Ordering::Relaxed),
                    "lag": behind,
                    "lastFailure": last_failure,
                }),
            );
        }
        let assigned = self
            .assigned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        json!({
            "running": self.running.load(Ordering::Relaxed),
            "partitions": assigned,
            "consumers": out,
        })
    }

    /// The consumer `name`'s counters: applied, duplicates, retries, dead letters.
    pub fn counts(&self, name: &str) -> Option<[u64; 4]> {
        let (i, _) = self.spec.consumer(name)?;
        let c = &self.counters[i];
        Some([
            c.applied.load(Ordering::Relaxed),
            c.duplicates.load(Ordering::Relaxed),
            c.retries.load(Ordering::Relaxed),
            c.dead_lettered.load(Ordering::Relaxed),
        ])
    }

    fn failed(&self, consumer: usize, error: &str) {
        let c = &self.counters[consumer];
        *c.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_string());
        let _ = c.failing_since.compare_exchange(
            0,
            chrono::Utc::now().timestamp(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// The consumer failing the longest at `now` (Unix seconds), and for how long.
    pub fn failing(&self, now: i64) -> Option<(&'static str, u64)> {
        self.spec
            .consumers
            .iter()
            .zip(&self.counters)
            .filter_map(|(spec, c)| match c.failing_since.load(Ordering::Acquire) {
                0 => None,
                since => Some((spec.name, u64::try_from(now - since).unwrap_or(0))),
            })
            .max_by_key(|(_, secs)| *secs)
    }

    fn recovered(&self, consumer: usize) {
        self.counters[consumer]
            .failing_since
            .store(0, Ordering::Release);
    }
}

/// Why a batch was not finished.
#[derive(Debug)]
enum Halt {
    /// Shutdown began while an event was retried; its offset is not committed.
    Stopping,
}

/// Applies batches of events: the part of the consumer that is the same for
/// the group member and for a replay.
struct Worker<E> {
    spec: &'static ConsumeSpec,
    settings: ConsumeSettings,
    db: PgPool,
    effects: Arc<E>,
    stats: Arc<ConsumerStats>,
    dead_letters: Option<FutureProducer>,
    source: &'static str,
    stop: watch::Receiver<bool>,
    /// Only these consumers (a replay of one of them); all when `None`.
    only: Option<usize>,
}

impl<E: Effects> Worker<E> {
    /// The consumers of `topic`, in model order.
    fn consumers_of<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = usize> + 'a {
        self.spec
            .consumers
            .iter()
            .enumerate()
            .filter(move |(i, c)| {
                c.topics.contains(&topic) && self.only.is_none_or(|only| only == *i)
            })
            .map(|(i, _)| i)
    }

    /// Applies `batch` in offset order per partition (see the module's doc).
    async fn process(&self, batch: &[Delivery]) -> Result<(), Halt> {
        let units: Vec<(usize, usize)> = batch
            .iter()
            .enumerate()
            .flat_map(|(i, d)| self.consumers_of(&d.topic).map(move |c| (i, c)))
            .collect();
        let in_batch: Vec<(usize, usize)> = units
            .iter()
            .copied()
            .filter(|(_, c)| self.spec.consumers[*c].effect == Effect::InBatch)
            .collect();
        let mut one_by_one = false;
        if !in_batch.is_empty() {
            if let Err(e) = self.apply_batch(batch, &in_batch).await {
                tracing::debug!(error = %describe(&e), events = batch.len(), "a batch failed; applying its events one at a time");
                one_by_one = true;
            }
        }
        for (i, c) in units {
            if one_by_one || self.spec.consumers[c].effect == Effect::Route {
                self.apply_retrying(c, &batch[i]).await?;
            }
        }
        Ok(())
    }

    /// Every in-transaction effect of the batch, with the inbox rows, in one
    /// transaction: one statement writes the inbox rows and says which
    /// events are new.
    async fn apply_batch(
        &self,
        batch: &[Delivery],
        units: &[(usize, usize)],
    ) -> Result<(), ApiError> {
        let mut tx = self.db.begin().await?;
        let fresh = record_many(&mut tx, self.spec, batch, units).await?;
        let n = self.spec.consumers.len();
        let mut applied = vec![0u64; n];
        // Each consumer's new events, in batch order (a key's events keep theirs).
        let mut done: HashSet<(usize, &str)> = HashSet::new();
        let mut new: Vec<Vec<&Delivery>> = vec![Vec::new(); n];
        for &(i, c) in units {
            let d = &batch[i];
            if fresh.contains(&(self.spec.consumers[c].name, d.event_id.as_str()))
                && done.insert((c, d.event_id.as_str()))
            {
                new[c].push(d);
            }
        }
        // Each event's span lasts until the batch commits.
        let mut spans: Vec<tracing::Span> = Vec::new();
        for (c, events) in new.iter().enumerate().filter(|(_, e)| !e.is_empty()) {
            let name = self.spec.consumers[c].name;
            let first = spans.len();
            spans.extend(events.iter().map(|d| d.span(name)));
            // A replica takes the batch in one statement; others one by one.
            match self.effects.apply_all(c, &mut tx, events).await {
                Some(done) => done?,
                None => {
                    for (d, span) in events.iter().zip(&spans[first..]) {
                        let ctx = span.in_scope(|| d.context(self.spec.service, None));
                        self.effects
                            .apply(c, &mut tx, &ctx, d)
                            .instrument(span.clone())
                            .await?;
                    }
                }
            }
            applied[c] += events.len() as u64;
        }
        tx.commit().await?;
        drop(spans);
        for (c, n) in applied.into_iter().enumerate() {
            let counters = &self.stats.counters[c];
            counters.applied.fetch_add(n, Ordering::Relaxed);
            self.stats.recovered(c);
        }
        let total = units.len() as u64;
        let new = fresh.len() as u64;
        if total > new {
            // Inbox hits: each unit whose row existed.
            for &(i, c) in units {
                if !fresh.contains(&(self.spec.consumers[c].name, batch[i].event_id.as_str())) {
                    self.stats.counters[c]
                        .duplicates
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    /// One event for one consumer: attempts with backoff, then the dead letter.
    async fn apply_retrying(&self, c: usize, d: &Delivery) -> Result<(), Halt> {
        let spec = &self.spec.consumers[c];
        let counters = &self.stats.counters[c];
        let mut attempt = 1;
        loop {
            match self.apply_once(c, d).await {
                Ok(true) => {
                    counters.applied.fetch_add(1, Ordering::Relaxed);
                    self.stats.recovered(c);
                    return Ok(());
                }
                Ok(false) | Err(ApiError::AlreadyConsumed) => {
                    counters.duplicates.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) => {
                    let error = describe(&e);
                    self.stats.failed(c, &error);
                    if attempt >= self.settings.max_attempts {
                        tracing::warn!(consumer = spec.name, topic = %d.topic, partition = d.partition, offset = d.offset, event = %d.event_id, attempts = attempt, %error, "dead-lettering an event");
                        return self.dead_letter(c, d, &error, attempt).await;
                    }
                    tracing::info!(consumer = spec.name, topic = %d.topic, partition = d.partition, offset = d.offset, event = %d.event_id, attempt, %error, "an event failed; retrying");
                    counters.retries.fetch_add(1, Ordering::Relaxed);
                    self.pause(self.settings.backoff(attempt)).await?;
                    attempt += 1;
                }
            }
        }
    }

    /// One attempt; `Ok(false)` when the event had taken effect already.
    async fn apply_once(&self, c: usize, d: &Delivery) -> Result<bool, ApiError> {
        let span = d.span(self.spec.consumers[c].name);
        let applied = self.apply_once_in(c, d).instrument(span.clone()).await;
        if applied.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        applied
    }

    async fn apply_once_in(&self, c: usize, d: &Delivery) -> Result<bool, ApiError> {
        let spec = &self.spec.consumers[c];
        match spec.effect {
            Effect::InBatch => {
                let mut tx = self.db.begin().await?;
                if !record(&mut tx, spec.name, d, false).await? {
                    return Ok(false);
                }
                let ctx = d.context(self.spec.service, None);
                self.effects.apply(c, &mut tx, &ctx, d).await?;
                tx.commit().await?;
                Ok(true)
            }
            Effect::Route => {
                let consumed = Arc::new(Consumed {
                    consumer: spec.name,
                    event_id: d.event_id.clone(),
                    topic: d.topic.clone(),
                    partition: d.partition,
                    offset: d.offset,
                    recorded: AtomicBool::new(false),
                });
                let ctx = d.context(self.spec.service, Some(consumed.clone()));
                self.effects.run(c, ctx, d).await?;
                if !consumed.recorded.load(Ordering::Acquire) {
                    // The route wrote nothing (nothing to change): say so in the inbox.
                    let mut conn = self.db.acquire().await?;
                    record(&mut conn, spec.name, d, false).await?;
                }
                Ok(true)
            }
        }
    }

    /// Publishes `d` to the consumer's dead-letter topic, with the original
    /// key, payload and headers and `dlq_*` headers saying why; retried until
    /// the broker has it or shutdown begins. Then the inbox remembers it, so
    /// that a redelivery is not dead-lettered twice.
    async fn dead_letter(
        &self,
        c: usize,
        d: &Delivery,
        error: &str,
        attempts: u32,
    ) -> Result<(), Halt> {
        let spec = &self.spec.consumers[c];
        let Some(producer) = &self.dead_letters else {
            tracing::error!(consumer = spec.name, event = %d.event_id, %error, "no broker to dead-letter to; the event is skipped");
            return Ok(());
        };
        let (partition, offset, attempts) = (
            d.partition.to_string(),
            d.offset.to_string(),
            attempts.to_string(),
        );
        let mut backoff = FIRST_BACKOFF;
        loop {
            let mut headers = OwnedHeaders::new_with_capacity(d.headers.len() + 7);
            for (k, v) in &d.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            for (k, v) in [
                ("dlq_error", error),
                ("dlq_attempts", attempts.as_str()),
                ("dlq_consumer", spec.name),
                ("dlq_source", self.source),
                ("dlq_topic", d.topic.as_str()),
                ("dlq_partition", partition.as_str()),
                ("dlq_offset", offset.as_str()),
            ] {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            let mut record = FutureRecord::<[u8], [u8]>::to(spec.dead_letter)
                .payload(&d.payload)
                .headers(headers);
            if let Some(key) = &d.key {
                record = record.key(key);
            }
            match producer.send(record, Duration::from_secs(10)).await {
                Ok(_) => break,
                Err((e, _)) => {
                    tracing::warn!(error = %e, topic = spec.dead_letter, "publishing a dead letter; retrying");
                    self.pause(backoff).await?;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        self.stats.counters[c]
            .dead_lettered
            .fetch_add(1, Ordering::Relaxed);
        // Its partition moves on: the consumer is no longer stuck on it.
        self.stats.recovered(c);
        loop {
            let written = async {
                let mut conn = self.db.acquire().await?;
                record(&mut conn, spec.name, d, true).await
            };
            match written.await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, "recording a dead letter in the inbox; retrying");
                    self.pause(backoff).await?;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Sleeps `d`, or less when shutdown begins.
    async fn pause(&self, d: Duration) -> Result<(), Halt> {
        let mut stop = self.stop.clone();
        if *stop.borrow() {
            return Err(Halt::Stopping);
        }
        tokio::select! {
            () = tokio::time::sleep(d) => Ok(()),
            _ = stop.changed() => Err(Halt::Stopping),
        }
    }
}

/// Writes one inbox row; `false` when the event had one already.
async fn record(
    conn: &mut PgConnection,
    consumer: &str,
    d: &Delivery,
    dead: bool,
) -> Result<bool, ApiError> {
    record_inbox(
        conn,
        consumer,
        &d.event_id,
        &d.topic,
        d.partition,
        d.offset,
        dead,
    )
    .await
}

/// Writes the inbox rows of `units` in one statement; returns the
/// `(consumer, event id)` pairs that were new.
async fn record_many<'b>(
    conn: &mut PgConnection,
    spec: &ConsumeSpec,
    batch: &'b [Delivery],
    units: &[(usize, usize)],
) -> Result<HashSet<(&'static str, &'b str)>, ApiError> {
    let consumers: Vec<&str> = units.iter().map(|(_, c)| spec.consumers[*c].name).collect();
    let ids: Vec<&str> = units
        .iter()
        .map(|(i, _)| batch[*i].event_id.as_str())
        .collect();
    let topics: Vec<&str> = units
        .iter()
        .map(|(i, _)| batch[*i].topic.as_str())
        .collect();
    let partitions: Vec<i32> = units.iter().map(|(i, _)| batch[*i].partition).collect();
    let offsets: Vec<i64> = units.iter().map(|(i, _)| batch[*i].offset).collect();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO consumer_inbox (consumer, event_id, topic, kafka_partition, kafka_offset)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[])
         ON CONFLICT (consumer, event_id) DO NOTHING
         RETURNING consumer, event_id",
    )
    .bind(&consumers)
    .bind(&ids)
    .bind(&topics)
    .bind(&partitions)
    .bind(&offsets)
    .fetch_all(&mut *conn)
    .await?;
    // Back to borrowed names, so that the caller compares without allocating.
    let ids: HashMap<&str, &'b str> = batch
        .iter()
        .map(|d| (d.event_id.as_str(), d.event_id.as_str()))
        .collect();
    let mut fresh = HashSet::with_capacity(rows.len());
    for (consumer, id) in rows {
        let consumer = spec
            .consumers
            .iter()
            .find(|c| c.name == consumer)
            .map(|c| c.name);
        let id = ids.get(id.as_str()).copied();
        if let (Some(c), Some(i)) = (consumer, id) {
            fresh.insert((c, i));
        }
    }
    Ok(fresh)
}

/// The error as the dead letter and the health report say it: the message,
/// and each field's problem for a validation error.
pub fn describe(e: &ApiError) -> String {
    match e {
        ApiError::Validation(fields) => {
            let each: Vec<String> = fields
                .iter()
                .map(|FieldError { field, message }| format!("{field}: {message}"))
                .collect();
            format!("{e}: {}", each.join("; "))
        }
        ApiError::Internal(inner) => format!("internal error: {inner:#}"),
        _ => format!("{} {}", e.status().as_u16(), e),
    }
}

/// Consumes until `stop` turns true: joins the group once every topic
/// exists, and starts over with backoff when the broker goes away.
#[allow(clippy::too_many_arguments)]
pub async fn run<E: Effects>(
    spec: &'static ConsumeSpec,
    kafka_spec: &'static KafkaSpec,
    kafka: KafkaSettings,
    settings: ConsumeSettings,
    db: PgPool,
    effects: Arc<E>,
    stats: Arc<ConsumerStats>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(brokers) = kafka.brokers.clone() else {
        tracing::warn!("KAFKA_BROKERS is not set: no events are consumed");
        return;
    };
    let mut pruned = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    while !*stop.borrow() {
        let member =
            Member::join(spec, kafka_spec, &kafka, &settings, &brokers, &stop, &stats).await;
        let result = match member {
            Ok(Some(member)) => {
                backoff = FIRST_BACKOFF;
                let worker = Worker {
                    spec,
                    settings: settings.clone(),
                    db: db.clone(),
                    effects: effects.clone(),
                    stats: stats.clone(),
                    dead_letters: Some(member.dead_letters.clone()),
                    source: kafka_spec.source,
                    stop: stop.clone(),
                    only: None,
                };
                member.consume(&worker, &mut pruned).await
            }
            Ok(None) => return,
            Err(e) => Err(e),
        };
        stats.running.store(false, Ordering::Relaxed);
        stats
            .assigned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        if let Err(e) = result {
            tracing::warn!(error = %e, "consuming events; starting over");
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Says when the group gives this replica partitions or takes them away,
/// and keeps the assignment for the health report.
struct GroupLog(Arc<ConsumerStats>);

impl rdkafka::client::ClientContext for GroupLog {
    /// Keeps the lag of each partition assigned here, as librdkafka counts
    /// it (the end of the partition minus the committed offset).
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut lag = BTreeMap::new();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if p.desired && *partition >= 0 && p.consumer_lag >= 0 {
                    lag.insert((topic.clone(), *partition), p.consumer_lag);
                }
            }
        }
        *self.0.lag.lock().unwrap_or_else(|e| e.into_inner()) = lag;
    }
}

impl rdkafka::consumer::ConsumerContext for GroupLog {
    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        use rdkafka::consumer::Rebalance;
        let describe = |tpl: &TopicPartitionList| {
            tpl.elements()
                .iter()
                .map(|e| format!("{}/{}", e.topic(), e.partition()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut assigned = self.0.assigned.lock().unwrap_or_else(|e| e.into_inner());
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = %describe(tpl), "the group assigned partitions");
                assigned.extend(
                    tpl.elements()
                        .iter()
                        .map(|e| format!("{}/{}", e.topic(), e.partition())),
                );
                assigned.sort();
                assigned.dedup();
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = %describe(tpl), "the group revoked partitions");
                let gone: HashSet<String> = tpl
                    .elements()
                    .iter()
                    .map(|e| format!("{}/{}", e.topic(), e.partition()))
                    .collect();
                assigned.retain(|p| !gone.contains(p));
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "the group's rebalance failed"),
        }
    }
}

type GroupConsumer = StreamConsumer<GroupLog>;

/// A member of the service's consumer group.
struct Member {
    consumer: Arc<GroupConsumer>,
    dead_letters: FutureProducer,
}

impl Member {
    /// Creates the dead-letter topics, waits until every topic read exists
    /// (another service may not have started yet), and subscribes. `None`
    /// when shutdown began meanwhile.
    async fn join(
        spec: &'static ConsumeSpec,
        kafka_spec: &'static KafkaSpec,
        kafka: &KafkaSettings,
        settings: &ConsumeSettings,
        brokers: &str,
        stop: &watch::Receiver<bool>,
        stats: &Arc<ConsumerStats>,
    ) -> anyhow::Result<Option<Self>> {
        let dead: Vec<&str> = spec.consumers.iter().map(|c| c.dead_letter).collect();
        kafka::ensure_named(kafka_spec, kafka, brokers, &dead).await?;
        let dead_letters: FutureProducer = kafka.sink_config(kafka_spec, brokers).create()?;
        let mut config = kafka.consumer_config(kafka_spec, brokers, &settings.group);
        config
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                settings.session_timeout_ms.to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (settings.session_timeout_ms / 3).max(100).to_string(),
            )
            .set("topic.metadata.refresh.interval.ms", "10000")
            .set("statistics.interval.ms", STATS_EVERY_MS)
            .set("fetch.wait.max.ms", settings.fetch_wait_ms.to_string());
        let consumer: Arc<GroupConsumer> =
            Arc::new(config.create_with_context(GroupLog(stats.clone()))?);
        let topics = spec.topics();
        let mut waited = false;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let missing = missing_topics(&consumer, &topics).await?;
            if missing.is_empty() {
                break;
            }
            if !waited {
                tracing::info!(?missing, "waiting for the topics this service consumes");
                waited = true;
            }
            let mut stop = stop.clone();
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return Ok(None),
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        consumer.subscribe(&topics)?;
        tracing::info!(group = %settings.group, ?topics, "consuming");
        Ok(Some(Self {
            consumer,
            dead_letters,
        }))
    }

    /// Reads batches and applies them until shutdown.
    async fn consume<E: Effects>(
        &self,
        worker: &Worker<E>,
        pruned: &mut Instant,
    ) -> anyhow::Result<()> {
        let mut stop = worker.stop.clone();
        let mut errors = 0u64;
        while !*stop.borrow() {
            let first = tokio::select! {
                m = tokio::time::timeout(IDLE_WAKE, self.consumer.recv()) => m,
                _ = stop.changed() => break,
            };
            let mut batch = Vec::new();
            match first {
                Ok(Ok(m)) => batch.push(Delivery::from_message(&m)),
                Ok(Err(e)) => {
                    errors += 1;
                    if errors.is_power_of_two() {
                        tracing::warn!(error = %e, errors, "reading events");
                    }
                }
                Err(_) => {}
            }
            // Whatever else is waiting already, up to a batch.
            while !batch.is_empty() && batch.len() < worker.settings.batch_size {
                match tokio::time::timeout(Duration::ZERO, self.consumer.recv()).await {
                    Ok(Ok(m)) => batch.push(Delivery::from_message(&m)),
                    _ => break,
                }
            }
            if !batch.is_empty() {
                worker.stats.running.store(true, Ordering::Relaxed);
                match worker.process(&batch).await {
                    Ok(()) => self.commit(&batch),
                    Err(Halt::Stopping) => break,
                }
            }
            if pruned.elapsed() >= PRUNE_EVERY {
                *pruned = Instant::now();
                prune(&worker.db, worker.settings.inbox_retention_secs).await;
            }
        }
        Ok(())
    }

    /// Commits, per partition, the offset after the batch's last event.
    fn commit(&self, batch: &[Delivery]) {
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for d in batch {
            let at = next.entry((d.topic.as_str(), d.partition)).or_insert(0);
            *at = (*at).max(d.offset + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            if tpl
                .add_partition_offset(topic, partition, Offset::Offset(offset))
                .is_err()
            {
                return;
            }
        }
        // A lost commit costs a redelivery, which the inbox absorbs.
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "committing offsets");
        }
    }
}

/// The topics of `topics` the broker does not have (yet).
async fn missing_topics(
    consumer: &Arc<GroupConsumer>,
    topics: &[&'static str],
) -> anyhow::Result<Vec<&'static str>> {
    let consumer = consumer.clone();
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || {
        let metadata = consumer.fetch_metadata(None, BROKER_TIMEOUT)?;
        let present: HashSet<&str> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.name())
            .collect();
        Ok(topics
            .into_iter()
            .filter(|t| !present.contains(t))
            .collect())
    })
    .await?
}

/// Deletes inbox rows older than the retention.
pub async fn prune(db: &PgPool, retention_secs: u64) {
    let secs = i64::try_from(retention_secs).unwrap_or(i64::MAX);
    let pruned = sqlx::query(
        "DELETE FROM consumer_inbox WHERE consumed_at < now() - make_interval(secs => $1::double precision)",
    )
    .bind(secs as f64)
    .execute(db)
    .await;
    match pruned {
        Ok(done) if done.rows_affected() > 0 => {
            tracing::debug!(rows = done.rows_affected(), "pruned the consumer inbox");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "pruning the consumer inbox"),
    }
}

/// What a replay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    pub read: u64,
    pub applied: u64,
    pub dead_lettered: u64,
}

/// Rebuilds replica `consumer`: forgets its inbox rows and applies every
/// event of its topics again, from the start of each partition to where it
/// ends now. The replica's rows stay (local rows may reference them): each
/// event applies only when it is as new as the row, so the rows end at the
/// newest version the topics hold. The group's own reading goes on meanwhile.
pub async fn replay<E: Effects>(
    spec: &'static ConsumeSpec,
    kafka_spec: &'static KafkaSpec,
    kafka: &KafkaSettings,
    settings: ConsumeSettings,
    db: PgPool,
    effects: Arc<E>,
    consumer: &str,
) -> anyhow::Result<Replayed> {
    let Some((index, c)) = spec.consumer(consumer) else {
        let names: Vec<&str> = spec.consumers.iter().map(|c| c.name).collect();
        anyhow::bail!("no consumer {consumer:?}; the consumers are {names:?}");
    };
    if c.kind != "replicate" {
        anyhow::bail!("{consumer} is a {} consumer: only replicas are rebuilt (a replay would run its effects again)", c.kind);
    }
    let brokers = kafka
        .brokers
        .clone()
        .ok_or_else(|| anyhow::anyhow!("KAFKA_BROKERS is not set"))?;
    sqlx::query("DELETE FROM consumer_inbox WHERE consumer = $1")
        .bind(c.name)
        .execute(&db)
        .await?;
    // A group of its own that never commits: the service's group is not disturbed.
    let group = format!("{}-replay-{}", settings.group, uuid::Uuid::new_v4());
    let mut config = kafka.consumer_config(kafka_spec, &brokers, &group);
    config.set("enable.auto.commit", "false");
    let reader: Arc<StreamConsumer> = Arc::new(config.create()?);
    let topics: Vec<&'static str> = c.topics.to_vec();
    let ends = {
        let reader = reader.clone();
        tokio::task::spawn_blocking(
            move || -> anyhow::Result<BTreeMap<(String, i32), (i64, i64)>> {
                let metadata = reader.fetch_metadata(None, BROKER_TIMEOUT)?;
                let mut ends = BTreeMap::new();
                for t in metadata
                    .topics()
                    .iter()
                    .filter(|t| topics.contains(&t.name()))
                {
                    for p in t.partitions() {
                        let marks = reader.fetch_watermarks(t.name(), p.id(), BROKER_TIMEOUT)?;
                        ends.insert((t.name().to_string(), p.id()), marks);
                    }
                }
                Ok(ends)
            },
        )
        .await??
    };
    let mut assignment = TopicPartitionList::new();
    for ((topic, partition), (low, high)) in &ends {
        if high > low {
            assignment.add_partition_offset(topic, *partition, Offset::Offset(*low))?;
        }
    }
    let (_stop_tx, stop) = watch::channel(false);
    let stats = ConsumerStats::new(spec);
    let worker = Worker {
        spec,
        settings: settings.clone(),
        db,
        effects,
        stats: stats.clone(),
        dead_letters: Some(kafka.sink_config(kafka_spec, &brokers).create()?),
        source: kafka_spec.source,
        stop,
        only: Some(index),
    };
    let mut remaining: HashSet<(String, i32)> = ends
        .iter()
        .filter(|(_, (low, high))| high > low)
        .map(|(k, _)| k.clone())
        .collect();
    reader.assign(&assignment)?;
    let mut read = 0u64;
    while !remaining.is_empty() {
        let mut batch = Vec::new();
        let m = tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no events for 30 s while {} partitions were unread",
                    remaining.len()
                )
            })??;
        batch.push(Delivery::from_message(&m));
        while batch.len() < settings.batch_size {
            match tokio::time::timeout(Duration::ZERO, reader.recv()).await {
                Ok(Ok(m)) => batch.push(Delivery::from_message(&m)),
                _ => break,
            }
        }
        // Only what was there at the start.
        batch.retain(|d| {
            ends.get(&(d.topic.clone(), d.partition))
                .is_some_and(|(_, high)| d.offset < *high)
        });
        for d in &batch {
            if let Some((_, high)) = ends.get(&(d.topic.clone(), d.partition)) {
                if d.offset + 1 >= *high {
                    remaining.remove(&(d.topic.clone(), d.partition));
                }
            }
        }
        read += batch.len() as u64;
        if worker.process(&batch).await.is_err() {
            anyhow::bail!("stopped");
        }
    }
    let [applied, _, _, dead_lettered] = stats.counts(c.name).unwrap_or_default();
    Ok(Replayed {
        read,
        applied,
        dead_lettered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::OwnedMessage;
    use rdkafka::Timestamp;

    static SERVICE: ServiceInfo = ServiceInfo {
        app_version: "1",
        body_limit_bytes: 1024,
        constraints: &[],
    };

    static SPEC: ConsumeSpec = ConsumeSpec {
        service: &SERVICE,
        consumers: &[
            ConsumerSpec {
                name: "hosts",
                kind: "replicate",
                topics: &["user-created", "user-updated", "user-deleted"],
                dead_letter: "listing-hosts-dead-letter",
                effect: Effect::InBatch,
            },
            ConsumerSpec {
                name: "retireHost",
                kind: "route",
                topics: &["user-deleted"],
                dead_letter: "listing-retire-host-dead-letter",
                effect: Effect::Route,
            },
        ],
    };

    const DEFAULTS: ConsumeDefaults = ConsumeDefaults {
        group: "listing-service",
        max_attempts: 5,
        retry_backoff_ms: 100,
        max_retry_backoff_ms: 1000,
        batch_size: 200,
        inbox_retention_secs: 3600,
    };

    fn message(headers: OwnedHeaders, payload: &str) -> OwnedMessage {
        OwnedMessage::new(
            Some(payload.as_bytes().to_vec()),
            Some(b"k1".to_vec()),
            "user-updated".into(),
            Timestamp::NotAvailable,
            2,
            41,
            Some(headers),
        )
    }

    #[tokio::test]
    async fn inbox_rows_older_than_the_retention_are_pruned() {
        let db = crate::testing::TestDb::create().await;
        let pool = db.pool().await;
        sqlx::query(&crate::tables::INBOX.create_sql())
            .execute(&pool)
            .await
            .expect("inbox");
        sqlx::query(
            "INSERT INTO consumer_inbox (consumer, event_id, topic, kafka_partition, kafka_offset, consumed_at)
             VALUES ('hosts', 'old', 't', 0, 1, now() - interval '2 hours'),
                    ('hosts', 'new', 't', 0, 2, now() - interval '10 minutes')",
        )
        .execute(&pool)
        .await
        .expect("rows");
        prune(&pool, 3600).await;
        let left: Vec<String> = sqlx::query_scalar("SELECT event_id FROM consumer_inbox")
            .fetch_all(&pool)
            .await
            .expect("rows");
        assert_eq!(left, ["new"]);
    }

    #[test]
    fn the_consumer_failing_the_longest_is_reported_until_it_recovers() {
        let stats = ConsumerStats::new(&SPEC);
        let now = chrono::Utc::now().timestamp();
        assert_eq!(stats.failing(now), None);
        stats.failed(1, "503 the database is unavailable");
        let (name, secs) = stats.failing(now + 100).expect("failing");
        assert_eq!(name, "retireHost");
        assert!((99..=101).contains(&secs), "{secs}");
        stats.recovered(1);
        assert_eq!(stats.failing(now + 100), None);
    }

    #[test]
    fn settings_default_to_the_model_and_refuse_zero_attempts() {
        let env = Env::new(|_: &str| None);
        let s = ConsumeSettings::from_env(&env, &DEFAULTS).expect("defaults");
        assert_eq!(
            (s.group.as_str(), s.max_attempts, s.batch_size),
            ("listing-service", 5, 200)
        );
        assert_eq!(s.session_timeout_ms, 45_000);
        let env = Env::new(|k: &str| (k == "CONSUMER_MAX_ATTEMPTS").then(|| "0".to_string()));
        assert!(ConsumeSettings::from_env(&env, &DEFAULTS).is_err());
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let env = Env::new(|_: &str| None);
        let s = ConsumeSettings::from_env(&env, &DEFAULTS).expect("defaults");
        let waits: Vec<u128> = (1..=6).map(|a| s.backoff(a).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn topics_are_listed_once_and_consumers_found_by_name() {
        assert_eq!(
            SPEC.topics(),
            ["user-created", "user-updated", "user-deleted"]
        );
        assert_eq!(SPEC.consumer("retireHost").map(|(i, _)| i), Some(1));
        assert!(SPEC.consumer("nobody").is_none());
    }

    #[test]
    fn a_delivery_takes_its_id_and_request_from_the_cloudevents_headers() {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "ce_id",
                value: Some("e-1"),
            })
            .insert(Header {
                key: "ce_requestid",
                value: Some("req-9"),
            });
        let d = Delivery::from_message(&message(headers, "{}"));
        assert_eq!(
            (d.event_id.as_str(), d.request_id.as_deref()),
            ("e-1", Some("req-9"))
        );
        assert_eq!(
            (d.partition, d.offset, d.key.as_deref()),
            (2, 41, Some(&b"k1"[..]))
        );
        let bare = Delivery::from_message(&message(OwnedHeaders::new(), "{}"));
        assert_eq!(bare.event_id, "user-updated/2/41");
        assert_eq!(bare.request_id, None);
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Row {
        id: String,
        #[serde(rename = "recordVersion")]
        record_version: i32,
    }

    #[test]
    fn rows_come_from_the_payload_or_from_under_the_object_of_an_update() {
        let created = Delivery::from_message(&message(
            OwnedHeaders::new(),
            r#"{"id":"a","recordVersion":1}"#,
        ));
        assert_eq!(
            created.row::<Row>(None).expect("row"),
            Row {
                id: "a".into(),
                record_version: 1
            }
        );
        let updated = Delivery::from_message(&message(
            OwnedHeaders::new(),
            r#"{"old_user":{"id":"a","recordVersion":1},"user":{"id":"a","recordVersion":2}}"#,
        ));
        assert_eq!(
            updated
                .row::<Row>(Some("user"))
                .expect("row")
                .record_version,
            2
        );
        let wrong = updated
            .row::<Row>(Some("listing"))
            .expect_err("no such object");
        assert!(
            describe(&wrong).contains("\"listing\""),
            "{}",
            describe(&wrong)
        );
    }

    #[test]
    fn a_malformed_payload_is_a_client_error_naming_where_it_broke() {
        let bad = Delivery::from_message(&message(
            OwnedHeaders::new(),
            r#"{"id":"a","recordVersion":"two"}"#,
        ));
        let e = bad.row::<Row>(None).expect_err("a string is not a version");
        let said = describe(&e);
        assert!(said.starts_with("400 payload.recordVersion:"), "{said}");
        let not_json = Delivery::from_message(&message(OwnedHeaders::new(), "not json"));
        assert!(
            describe(&not_json.decode::<Row>().expect_err("not JSON")).starts_with("400 payload")
        );
    }

    #[test]
    fn the_health_report_counts_per_consumer_and_sums_its_topics_lag() {
        let stats = ConsumerStats::new(&SPEC);
        stats.counters[0].applied.fetch_add(3, Ordering::Relaxed);
        stats.counters[1]
            .dead_lettered
            .fetch_add(1, Ordering::Relaxed);
        stats.failed(1, "404 not found");
        {
            let mut lag = stats.lag.lock().expect("lag");
            lag.insert(("user-created".into(), 0), 4);
            lag.insert(("user-deleted".into(), 1), 2);
        }
        let s = stats.snapshot();
        assert_eq!(s["consumers"]["hosts"]["applied"], 3);
        assert_eq!(s["consumers"]["hosts"]["lag"], 6);
        assert_eq!(s["consumers"]["retireHost"]["lag"], 2);
        assert_eq!(s["consumers"]["retireHost"]["deadLettered"], 1);
        assert_eq!(s["consumers"]["retireHost"]["lastFailure"], "404 not found");
        assert_eq!(stats.counts("hosts"), Some([3, 0, 0, 0]));
    }
}
