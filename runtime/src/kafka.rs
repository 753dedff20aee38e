//! Events on Kafka: records with CloudEvents headers, the model's topics, the
//! [`Publisher`] of reading-route events and the [`KafkaSink`] of the relay.
//!
//! Reading-route events skip the outbox and are produced directly; when the
//! producer's bounded queue is full they are dropped and counted, so reads
//! never wait for the broker. Everything else reaches the broker through the
//! outbox and the relay, at least once: consumers drop duplicates by the
//! `ce_id` header.

use crate::config::{ConfigError, Env};
use crate::envelope::RequestContext;
use crate::event::Event;
use crate::outbox::{Pending, Sink};
use crate::trace::TraceContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The version of the payload schemas (`ce_schemaversion`).
pub const SCHEMA_VERSION: &str = "1";

/// What the model says about the service on the broker.
#[derive(Debug)]
pub struct KafkaSpec {
    /// Where the service says who it is in CloudEvents headers (`/<service>`).
    pub source: &'static str,
    /// The client id the broker sees.
    pub client_id: &'static str,
    /// Every topic the service publishes, created at start when missing.
    pub topics: &'static [&'static str],
}

/// How this deployment reaches the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `KAFKA_BROKERS`, a comma-separated list; events wait in the database without it.
    pub brokers: Option<String>,
    /// `KAFKA_LINGER_MS` (default 5): how long the producer waits to batch.
    pub linger_ms: u64,
    /// `KAFKA_MESSAGE_TIMEOUT_MS` (default 10000): after this an unacknowledged
    /// event counts as failed and the relay backs off and retries.
    pub message_timeout_ms: u64,
    /// `KAFKA_QUEUE_MAX_MESSAGES` (default 10000) and `KAFKA_QUEUE_MAX_KBYTES`
    /// (default 8192): bounds of the read-event queue, in messages and memory.
    pub queue_max_messages: u64,
    pub queue_max_kbytes: u64,
    /// `KAFKA_PARTITIONS` and `KAFKA_REPLICATION_FACTOR` of created topics
    /// (defaults from the model).
    pub partitions: i32,
    pub replication_factor: i32,
    /// How every client authenticates to the broker and checks it.
    pub security: KafkaSecurity,
}

/// The broker's security settings, given to every client the service creates
/// (producer, admin, relay sink; consumers too when a model has them).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaSecurity {
    /// `KAFKA_SECURITY_PROTOCOL`: `plaintext` (librdkafka's default), `ssl`,
    /// `sasl_plaintext` or `sasl_ssl`.
    pub protocol: Option<String>,
    /// `KAFKA_SASL_MECHANISM`: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, ...
    pub sasl_mechanism: Option<String>,
    /// `KAFKA_SASL_USERNAME` and `KAFKA_SASL_PASSWORD`.
    pub sasl_username: Option<String>,
    pub sasl_password: Option<String>,
    /// `KAFKA_SSL_CA_LOCATION`: the CA file that signs the brokers' certificates.
    pub ssl_ca_location: Option<String>,
}

/// Never prints the password.
impl std::fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSecurity")
            .field("protocol", &self.protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field(
                "sasl_password",
                &crate::config::redacted(&self.sasl_password),
            )
            .field("ssl_ca_location", &self.ssl_ca_location)
            .finish()
    }
}

impl KafkaSecurity {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Self {
        Self {
            protocol: env.text("KAFKA_SECURITY_PROTOCOL"),
            sasl_mechanism: env.text("KAFKA_SASL_MECHANISM"),
            sasl_username: env.text("KAFKA_SASL_USERNAME"),
            sasl_password: env.secret("KAFKA_SASL_PASSWORD"),
            ssl_ca_location: env.text("KAFKA_SSL_CA_LOCATION"),
        }
    }

    /// Sets what is configured on `c`; what is not keeps librdkafka's default.
    fn apply(&self, c: &mut ClientConfig) {
        for (key, value) in [
            ("security.protocol", &self.protocol),
            ("sasl.mechanism", &self.sasl_mechanism),
            ("sasl.username", &self.sasl_username),
            ("sasl.password", &self.sasl_password),
            ("ssl.ca.location", &self.ssl_ca_location),
        ] {
            if let Some(value) = value {
                c.set(key, value);
            }
        }
    }
}

impl KafkaSettings {
    /// `KAFKA_*`; created topics get the model's `partitions` and
    /// `replication_factor` unless the environment says otherwise.
    pub fn from_env<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
        partitions: i32,
        replication_factor: i32,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            brokers: env.text("KAFKA_BROKERS"),
            linger_ms: env.parse("KAFKA_LINGER_MS", "5")?,
            message_timeout_ms: env.parse("KAFKA_MESSAGE_TIMEOUT_MS", "10000")?,
            queue_max_messages: env.parse("KAFKA_QUEUE_MAX_MESSAGES", "10000")?,
            queue_max_kbytes: env.parse("KAFKA_QUEUE_MAX_KBYTES", "8192")?,
            partitions: env.parse("KAFKA_PARTITIONS", &partitions.to_string())?,
            replication_factor: env
                .parse("KAFKA_REPLICATION_FACTOR", &replication_factor.to_string())?,
            security: KafkaSecurity::from_env(env),
        })
    }

    /// What every client shares: the brokers, the service's name, the
    /// security settings. Every client of the service starts from it.
    fn client_config(&self, spec: &KafkaSpec, brokers: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", brokers)
            .set("client.id", spec.client_id);
        self.security.apply(&mut c);
        c
    }

    /// The producer of reading-route events and one-time code deliveries
    /// ([`Publisher`]): bounded, dropping when full. Public so that the
    /// bench's contract-equivalent baseline produces exactly as ours does.
    pub fn publisher_config(&self, spec: &KafkaSpec, brokers: &str) -> ClientConfig {
        let mut c = self.producer_config(spec, brokers);
        c.set(
            "queue.buffering.max.messages",
            self.queue_max_messages.to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            self.queue_max_kbytes.to_string(),
        );
        c
    }

    /// The relay's producer ([`KafkaSink`]): idempotent, every replica acknowledges.
    pub(crate) fn sink_config(&self, spec: &KafkaSpec, brokers: &str) -> ClientConfig {
        let mut c = self.producer_config(spec, brokers);
        c.set("enable.idempotence", "true").set("acks", "all");
        c
    }

    fn producer_config(&self, spec: &KafkaSpec, brokers: &str) -> ClientConfig {
        let mut c = self.client_config(spec, brokers);
        c.set("linger.ms", self.linger_ms.to_string())
            .set("message.timeout.ms", self.message_timeout_ms.to_string());
        c
    }

    /// The admin client that creates the model's topics.
    fn admin_config(&self, spec: &KafkaSpec, brokers: &str) -> ClientConfig {
        self.client_config(spec, brokers)
    }

    /// A consumer in `group`, with the security settings of every client.
    pub fn consumer_config(&self, spec: &KafkaSpec, brokers: &str, group: &str) -> ClientConfig {
        let mut c = self.client_config(spec, brokers);
        c.set("group.id", group);
        c
    }
}

/// What a record says of an event besides its id, topic, key and payload.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordMeta<'a> {
    /// The request that caused the event (`ce_requestid`).
    pub request_id: Option<&'a str>,
    /// The W3C trace context (`traceparent`, `tracestate`); its trace id is
    /// also `ce_traceid`.
    pub traceparent: Option<&'a str>,
    pub tracestate: Option<&'a str>,
    /// When the event happened (`ce_time`, RFC 3339).
    pub time: &'a str,
}

/// An event as a Kafka record from `source`, with its CloudEvents headers.
pub fn record<'a>(
    source: &str,
    id: Uuid,
    topic: &'a str,
    key: &'a str,
    payload: &'a str,
    meta: &RecordMeta<'_>,
) -> FutureRecord<'a, str, str> {
    FutureRecord::to(topic)
        .key(key)
        .payload(payload)
        .headers(headers(source, id, topic, key, meta))
}

/// The CloudEvents (Kafka binding) headers of an event, and its trace
/// context as the W3C headers that tracing consumers read.
fn headers(source: &str, id: Uuid, topic: &str, key: &str, meta: &RecordMeta<'_>) -> OwnedHeaders {
    let id = id.to_string();
    let mut h = OwnedHeaders::new()
        .insert(header("ce_specversion", "1.0"))
        .insert(header("ce_id", &id))
        .insert(header("ce_source", source))
        .insert(header("ce_type", topic))
        .insert(header("ce_subject", key))
        .insert(header("ce_time", meta.time))
        .insert(header("ce_schemaversion", SCHEMA_VERSION))
        .insert(header("content-type", "application/json"));
    if let Some(r) = meta.request_id {
        h = h.insert(header("ce_requestid", r));
    }
    // `00-<trace id>-<span id>-<flags>`: the trace id is its second field.
    let trace_id = meta.traceparent.and_then(|t| t.split('-').nth(1));
    if let Some(t) = trace_id.or(meta.request_id) {
        h = h.insert(header("ce_traceid", t));
    }
    if let Some(t) = meta.traceparent {
        h = h.insert(header("traceparent", t));
    }
    if let Some(t) = meta.tracestate {
        h = h.insert(header("tracestate", t));
    }
    h
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

/// Produces reading-route events directly, without waiting for the broker.
#[derive(Clone)]
pub struct Publisher {
    producer: Option<FutureProducer>,
    source: &'static str,
    dropped: Arc<AtomicU64>,
}

impl Publisher {
    /// A publisher on the configured brokers; without brokers it drops every
    /// event (and counts nothing: there is no queue to overflow).
    pub fn new(spec: &'static KafkaSpec, settings: &KafkaSettings) -> anyhow::Result<Self> {
        let producer = match &settings.brokers {
            Some(brokers) => Some(settings.publisher_config(spec, brokers).create()?),
            None => None,
        };
        Ok(Self {
            producer,
            source: spec.source,
            dropped: Arc::default(),
        })
    }

    /// Queues the event; a full queue or no broker drops it (counted).
    pub fn publish(&self, ctx: &RequestContext, event: Option<Event>) {
        let (Some(producer), Some(event)) = (&self.producer, event) else {
            return;
        };
        let time = chrono::Utc::now().to_rfc3339();
        let record = self.record(ctx, &event, &time);
        if let Err((e, _)) = producer.send_result(record) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(error = %e, dropped = n, "read event dropped: the producer queue is full");
            }
        }
    }

    /// Publishes the event and waits for the broker's acknowledgement (one-time
    /// code deliveries, which never pass through the outbox).
    pub async fn send(&self, ctx: &RequestContext, event: Event) -> Result<(), String> {
        let Some(producer) = &self.producer else {
            return Err("no broker is configured (KAFKA_BROKERS)".into());
        };
        let time = chrono::Utc::now().to_rfc3339();
        let record = self.record(ctx, &event, &time);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e.to_string())
    }

    fn record<'a>(
        &self,
        ctx: &RequestContext,
        event: &'a Event,
        time: &str,
    ) -> FutureRecord<'a, str, str> {
        let trace = ctx.trace.here();
        let traceparent = trace.traceparent();
        record(
            self.source,
            event.id,
            event.topic,
            &event.key,
            &event.payload,
            &RecordMeta {
                request_id: Some(&ctx.request_id),
                traceparent: Some(&traceparent),
                tracestate: trace.state.as_deref(),
                time,
            },
        )
    }

    /// Read events dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Creates every topic of the model that the broker does not have yet.
pub async fn ensure_topics(
    spec: &KafkaSpec,
    settings: &KafkaSettings,
    brokers: &str,
) -> anyhow::Result<()> {
    ensure_named(spec, settings, brokers, spec.topics).await
}

/// Creates each of `topics` that the broker does not have yet, with the
/// deployment's partitions and replication factor.
pub async fn ensure_named(
    spec: &KafkaSpec,
    settings: &KafkaSettings,
    brokers: &str,
    topics: &[&str],
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = settings.admin_config(spec, brokers).create()?;
    let topics: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                t,
                settings.partitions,
                TopicReplication::Fixed(settings.replication_factor),
            )
        })
        .collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&topics, &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("creating topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// The broker as a sink: an idempotent producer with acks=all.
pub struct KafkaSink {
    producer: FutureProducer,
    source: &'static str,
}

impl KafkaSink {
    /// Creates the model's topics the broker lacks and connects the producer.
    pub async fn connect(
        spec: &'static KafkaSpec,
        settings: &KafkaSettings,
        brokers: &str,
    ) -> anyhow::Result<Self> {
        ensure_topics(spec, settings, brokers).await?;
        let producer = settings.sink_config(spec, brokers).create()?;
        Ok(Self {
            producer,
            source: spec.source,
        })
    }
}

impl Sink for KafkaSink {
    async fn publish(&self, batch: &[Pending]) -> (usize, Option<anyhow::Error>) {
        // Enqueue in id order, then wait for every acknowledgement.
        let mut failure: Option<anyhow::Error> = None;
        let mut deliveries = Vec::with_capacity(batch.len());
        for row in batch {
            let time = row.created_at.to_rfc3339();
            let (span, trace) = producer_span(row);
            let traceparent = trace.as_ref().map(TraceContext::traceparent);
            let meta = RecordMeta {
                request_id: row.request_id.as_deref(),
                traceparent: traceparent.as_deref().or(row.traceparent.as_deref()),
                tracestate: row.tracestate.as_deref(),
                time: &time,
            };
            let record = record(
                self.source,
                row.event_id,
                &row.topic,
                &row.event_key,
                &row.payload,
                &meta,
            );
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push((delivery, span)),
                Err((e, _)) => {
                    failure = Some(anyhow::Error::new(e).context("enqueueing to Kafka"));
                    break;
                }
            }
        }
        let mut acknowledged = 0;
        for (delivery, span) in deliveries {
            match delivery.await {
                Ok(Ok(_)) if failure.is_none() => acknowledged += 1,
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    span.record("otel.status_code", "ERROR");
                    failure.get_or_insert(anyhow::Error::new(e).context("publishing to Kafka"));
                }
                Err(_) => {
                    span.record("otel.status_code", "ERROR");
                    failure.get_or_insert(
                        anyhow::Error::new(KafkaError::Canceled).context("publishing to Kafka"),
                    );
                }
            }
        }
        (acknowledged, failure)
    }
}

/// When spans are exported: a producer span for the event, under the span
/// that wrote it to the outbox, lasting until the broker acknowledges; the
/// record names it as the consumer's parent.
fn producer_span(row: &Pending) -> (tracing::Span, Option<TraceContext>) {
    if !crate::trace::exporting() {
        return (tracing::Span::none(), None);
    }
    let span = tracing::debug_span!(
        parent: None,
        "outbox.publish",
        otel.name = format!("{} publish", row.topic),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        messaging.system = "kafka",
        messaging.operation.type = "send",
        messaging.destination.name = %row.topic,
        messaging.message.id = %row.event_id,
    );
    let written = row
        .traceparent
        .as_deref()
        .and_then(|t| TraceContext::parse(t, row.tracestate.as_deref()));
    if let Some(parent) = written {
        parent.adopt(&span);
    }
    let trace = TraceContext::of_span(&span);
    (span, trace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Headers;

    fn pairs(h: &OwnedHeaders) -> Vec<(String, String)> {
        h.iter()
            .map(|h| {
                let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                (h.key.to_string(), value.into_owned())
            })
            .collect()
    }

    #[test]
    fn an_event_carries_the_cloudevents_headers_in_order() {
        let id = Uuid::nil();
        let h = headers(
            "/library-service",
            id,
            "library-service-book-created",
            "book-1",
            &RecordMeta {
                request_id: Some("req-7"),
                traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                tracestate: Some("congo=t61rcWkgMzE"),
                time: "2026-01-01T00:00:00+00:00",
            },
        );
        let expected = [
            ("ce_specversion", "1.0"),
            ("ce_id", "00000000-0000-0000-0000-000000000000"),
            ("ce_source", "/library-service"),
            ("ce_type", "library-service-book-created"),
            ("ce_subject", "book-1"),
            ("ce_time", "2026-01-01T00:00:00+00:00"),
            ("ce_schemaversion", "1"),
            ("content-type", "application/json"),
            ("ce_requestid", "req-7"),
            ("ce_traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "congo=t61rcWkgMzE"),
        ];
        assert_eq!(
            pairs(&h),
            expected.map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn without_a_request_or_a_trace_there_is_no_request_or_trace_id() {
        let meta = RecordMeta {
            time: "now",
            ..RecordMeta::default()
        };
        let h = headers("/s", Uuid::nil(), "t", "k", &meta);
        let keys: Vec<String> = pairs(&h).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys.len(), 8);
        assert!(!keys
            .iter()
            .any(|k| k == "ce_requestid" || k == "ce_traceid" || k == "traceparent"));
        // Without a request (the sweeper's events) the trace still names one.
        let meta = RecordMeta {
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ..meta
        };
        let h = pairs(&headers("/s", Uuid::nil(), "t", "k", &meta));
        assert!(h.contains(&(
            "ce_traceid".into(),
            "4bf92f3577b34da6a3ce929d0e0e4736".into()
        )));
        assert!(!h.iter().any(|(k, _)| k == "ce_requestid"));
    }

    static SPEC: KafkaSpec = KafkaSpec {
        source: "/library-service",
        client_id: "library-service",
        topics: &["a", "b"],
    };

    fn settings(brokers: Option<&str>) -> KafkaSettings {
        KafkaSettings {
            brokers: brokers.map(String::from),
            linger_ms: 5,
            message_timeout_ms: 10_000,
            queue_max_messages: 10_000,
            queue_max_kbytes: 8192,
            partitions: 3,
            replication_factor: 1,
            security: KafkaSecurity::default(),
        }
    }

    #[tokio::test]
    async fn without_brokers_events_are_dropped_and_sends_refused() {
        let publisher = Publisher::new(&SPEC, &settings(None)).expect("publisher");
        let ctx = crate::testing::context(None);
        publisher.publish(&ctx, Some(Event::raw("a", "k", "{}".into())));
        assert_eq!(publisher.dropped(), 0);
        let refused = publisher
            .send(&ctx, Event::raw("a", "k", "{}".into()))
            .await
            .expect_err("no broker");
        assert_eq!(refused, "no broker is configured (KAFKA_BROKERS)");
    }

    #[test]
    fn the_producers_name_the_service_and_the_settings() {
        let s = settings(Some("127.0.0.1:9092"));
        for c in [
            s.publisher_config(&SPEC, "127.0.0.1:9092"),
            s.sink_config(&SPEC, "127.0.0.1:9092"),
        ] {
            assert_eq!(c.get("bootstrap.servers"), Some("127.0.0.1:9092"));
            assert_eq!(c.get("client.id"), Some("library-service"));
            assert_eq!(c.get("linger.ms"), Some("5"));
            assert_eq!(c.get("message.timeout.ms"), Some("10000"));
        }
        let sink = s.sink_config(&SPEC, "b:9092");
        assert_eq!(sink.get("acks"), Some("all"));
        assert_eq!(sink.get("enable.idempotence"), Some("true"));
        let publisher = s.publisher_config(&SPEC, "b:9092");
        assert_eq!(publisher.get("queue.buffering.max.messages"), Some("10000"));
    }

    const SECURE: [(&str, &str); 5] = [
        ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
        ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
        ("KAFKA_SASL_USERNAME", "auth-service"),
        ("KAFKA_SASL_PASSWORD", "s3cret"),
        ("KAFKA_SSL_CA_LOCATION", "/etc/kafka/ca.pem"),
    ];

    #[test]
    fn every_client_carries_the_security_settings_from_the_environment() {
        let env = Env::new(|name: &str| {
            SECURE
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        });
        let s = KafkaSettings::from_env(&env, 3, 1).expect("settings");
        let b = "broker:9093";
        // The producer of read events and deliveries, the relay's sink, the
        // admin that creates topics, and a consumer.
        let clients = [
            ("publisher", s.publisher_config(&SPEC, b)),
            ("sink", s.sink_config(&SPEC, b)),
            ("admin", s.admin_config(&SPEC, b)),
            ("consumer", s.consumer_config(&SPEC, b, "g")),
        ];
        for (client, c) in &clients {
            for (key, value) in [
                ("security.protocol", "sasl_ssl"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.username", "auth-service"),
                ("sasl.password", "s3cret"),
                ("ssl.ca.location", "/etc/kafka/ca.pem"),
            ] {
                assert_eq!(c.get(key), Some(value), "{client}: {key}");
            }
        }
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn unset_security_settings_leave_the_defaults() {
        let s = KafkaSettings::from_env(&Env::new(|_: &str| None), 3, 1).expect("settings");
        assert_eq!(s.security, KafkaSecurity::default());
        let c = s.publisher_config(&SPEC, "b:9092");
        assert_eq!(c.get("security.protocol"), None);
        assert_eq!(c.get("sasl.password"), None);
    }
}
