//! The outbox relay's figures: into tansu against the outbox's own floor (a
//! hand-written loop that claims the same rows, produces them and marks them
//! delivered) and against a bare producer that never touches a database, then
//! into a sink that only counts. `OUTBOX_BATCH_SIZE` (default 500) sets the
//! batches of the relay and the floor alike.

use crate::{acknowledged, free_port, fresh_database, median, print, tansu, wait_port, Row};
use airbnb_auth_service::config::Config;
use airbnb_auth_service::spec::KAFKA;
use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use serde_json::json;
use sqlx::PgPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use svcgen_runtime::kafka::{record, RecordMeta};
use svcgen_runtime::outbox::{Outbox, Pending, Sink};

/// Events per relay measurement: enough that the timing's 10 ms polling is noise.
const EVENTS: usize = 20_000;
/// Rounds of the bare producer, the relay and the floor, alternating; each
/// figure is the median of its rounds.
const ROUNDS: usize = 3;
/// Every outbox row the service writes carries the trace context of its write.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn payload() -> String {
    json!({
        "id": uuid::Uuid::new_v4(), "email": "someone@example.com", "fullname": "Some One", "avatar": null,
        "roleId": "user", "emailVerified": false, "preferredLanguage": "en", "bio": "x".repeat(200),
        "isActive": true, "recordVersion": 1, "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-01T00:00:00Z", "_owner": null
    })
    .to_string()
}

/// A producer with the relay's settings (`KafkaSettings::sink_config` with the
/// bench's `KAFKA_LINGER_MS=0`): idempotent, every replica acknowledges.
fn relay_producer(brokers: &str) -> Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("client.id", KAFKA.client_id)
        .set("linger.ms", "0")
        .set("message.timeout.ms", "10000")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?)
}

/// The same records as the relay's (payload, key, CloudEvents headers), from
/// memory: what the broker and the producer cost without a database.
async fn bare_producer_rate(producer: &FutureProducer) -> Result<f64> {
    let body = payload();
    let time = chrono::Utc::now().to_rfc3339();
    let send_all = |n: usize| {
        let mut pending = Vec::with_capacity(n);
        for i in 0..n {
            let key = format!("k{}", i % 100);
            let meta = RecordMeta {
                request_id: Some("bench"),
                traceparent: Some(TRACEPARENT),
                tracestate: None,
                time: &time,
            };
            let record = record(
                KAFKA.source,
                uuid::Uuid::new_v4(),
                "bench-bare",
                &key,
                &body,
                &meta,
            );
            pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
        }
        Ok::<_, anyhow::Error>(pending)
    };
    acknowledged(send_all(50)?).await?;
    let started = Instant::now();
    acknowledged(send_all(EVENTS)?).await?;
    Ok(EVENTS as f64 / started.elapsed().as_secs_f64())
}

/// The outbox's floor: the simplest correct relay, by hand. Each round claims
/// the oldest pending rows in a transaction (`FOR UPDATE SKIP LOCKED`: another
/// worker skips them, and a crash before the commit leaves them pending),
/// produces them in id order (so in order per key, with one worker) with the
/// relay's producer settings and records, waits for every acknowledgement,
/// marks them delivered and commits. Answers how many it delivered once
/// nothing is pending.
async fn floor_drain(db: PgPool, producer: FutureProducer, batch: i64) -> Result<usize> {
    let mut total = 0;
    loop {
        let mut tx = db.begin().await?;
        let rows: Vec<Pending> = sqlx::query_as(
            "SELECT id, event_id, topic, event_key, payload, request_id, traceparent, tracestate, created_at
             FROM event_outbox WHERE delivered_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(total);
        }
        let mut pending = Vec::with_capacity(rows.len());
        for row in &rows {
            let time = row.created_at.to_rfc3339();
            let meta = RecordMeta {
                request_id: row.request_id.as_deref(),
                traceparent: row.traceparent.as_deref(),
                tracestate: row.tracestate.as_deref(),
                time: &time,
            };
            let record = record(
                KAFKA.source,
                row.event_id,
                &row.topic,
                &row.event_key,
                &row.payload,
                &meta,
            );
            pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
        }
        acknowledged(pending).await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        sqlx::query("UPDATE event_outbox SET delivered_at = now() WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        total += rows.len();
    }
}

/// Acknowledges every event at once and counts them.
#[derive(Default)]
struct CountingSink(AtomicUsize);

impl Sink for CountingSink {
    async fn publish(&self, batch: &[Pending]) -> (usize, Option<anyhow::Error>) {
        self.0.fetch_add(batch.len(), Ordering::Relaxed);
        (batch.len(), None)
    }
}

async fn insert_events(db: &sqlx::PgPool, n: usize) -> Result<()> {
    sqlx::query(
        "WITH added AS (
             INSERT INTO event_outbox (event_id, topic, event_key, lane, payload, request_id, traceparent)
             SELECT gen_random_uuid(), $1, 'k' || (g % 100), g % 16, $2, 'bench', $4 FROM generate_series(1, $3) AS g
             RETURNING 1)
         SELECT pg_notify('event_outbox', '') FROM (SELECT 1 FROM added LIMIT 1) AS any_added",
    )
    .bind(airbnb_auth_service::topics::DBEVENT_USER_CREATED)
    .bind(payload())
    .bind(n as i32)
    .bind(TRACEPARENT)
    .execute(db)
    .await?;
    Ok(())
}

async fn drained(db: &sqlx::PgPool, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM event_outbox WHERE delivered_at IS NULL")
                .fetch_one(db)
                .await?;
        if pending == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("the relay did not drain the outbox in {limit:?}")
}

/// The service's relay, running and connected: it creates the model's topics
/// when it connects, which must not count in a figure.
async fn connected_relay(
    db: &sqlx::PgPool,
    config: &Arc<Config>,
) -> Result<(
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
)> {
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let relay = tokio::spawn(svcgen_runtime::relay::run(
        db.clone(),
        &KAFKA,
        config.kafka.clone(),
        config.outbox.clone(),
        stop_rx,
    ));
    insert_events(db, 10).await?;
    drained(db, Duration::from_secs(60)).await?;
    Ok((stop, relay))
}

/// Starts the next round from an empty table, as the first one did.
async fn emptied(db: &PgPool) -> Result<()> {
    sqlx::query("DELETE FROM event_outbox").execute(db).await?;
    sqlx::query("VACUUM event_outbox").execute(db).await?;
    Ok(())
}

/// The relay's rate, from the commit of [`EVENTS`] events to their last
/// acknowledgement marked delivered.
async fn relay_rate(db: &PgPool, config: &Arc<Config>) -> Result<f64> {
    let (stop, relay) = connected_relay(db, config).await?;
    insert_events(db, EVENTS).await?;
    let started = Instant::now();
    drained(db, Duration::from_secs(120)).await?;
    let rate = EVENTS as f64 / started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let _ = relay.await;
    Ok(rate)
}

/// The floor's rate, timed as the relay's: from the commit to the poll that
/// finds nothing pending.
async fn floor_rate(db: &PgPool, producer: &FutureProducer, batch: i64) -> Result<f64> {
    // Connected first, as the relay is.
    insert_events(db, 10).await?;
    floor_drain(db.clone(), producer.clone(), batch).await?;
    insert_events(db, EVENTS).await?;
    let started = Instant::now();
    let floor = tokio::spawn(floor_drain(db.clone(), producer.clone(), batch));
    drained(db, Duration::from_secs(120)).await?;
    let rate = EVENTS as f64 / started.elapsed().as_secs_f64();
    let delivered = floor.await??;
    if delivered != EVENTS {
        bail!("the floor delivered {delivered} of {EVENTS} events");
    }
    Ok(rate)
}

pub async fn relay_figures() -> Result<()> {
    let port = free_port();
    let _broker = tansu(port)?;
    wait_port(port).await?;
    let brokers = format!("127.0.0.1:{port}");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()?;
    admin
        .create_topics(
            &[NewTopic::new("bench-bare", 3, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?;
    let producer = relay_producer(&brokers)?;

    let url = fresh_database().await?;
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(6)
        .connect(&url)
        .await?;
    airbnb_auth_service::app::MIGRATOR.run(&db).await?;
    let config = Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "KAFKA_BROKERS" => Some(brokers.clone()),
        "KAFKA_LINGER_MS" => Some("0".into()),
        // For trying other batch sizes (the relay's and the floor's alike).
        "OUTBOX_BATCH_SIZE" => std::env::var(k).ok(),
        _ => None,
    })?;
    let config = Arc::new(config);
    let batch = config.outbox.batch_size;
    let (mut bare, mut ours, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        bare.push(
            bare_producer_rate(&producer)
                .await
                .context("bare producer")?,
        );
        // Each goes first every other round: the broker slows as its topic fills.
        for first in [round % 2 == 0, round % 2 != 0] {
            emptied(&db).await?;
            if first {
                ours.push(relay_rate(&db, &config).await.context("relay")?);
            } else {
                floor.push(floor_rate(&db, &producer, batch).await.context("floor")?);
            }
        }
    }
    let rounds = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let by_round = format!(
        "  (ev/s by round: ours {}; floor {}; bare producer {}; batches of {batch})",
        rounds(&ours),
        rounds(&floor),
        rounds(&bare)
    );
    let (bare, ours, floor) = (median(bare), median(ours), median(floor));
    print(Row {
        figure: "relay: ev/s, commit to ack vs the outbox's floor",
        ours,
        baseline: Some(floor),
        unit: "ev/s",
        target: ">= 0.8x",
        met: Some(ours >= 0.8 * floor),
    });
    print(Row {
        figure: "relay: ev/s, commit to ack vs a bare producer",
        ours,
        baseline: Some(bare),
        unit: "ev/s",
        target: "(no database)",
        met: None,
    });
    println!("{by_round}");

    // The relay's own ceiling: the same outbox work with a sink that only counts.
    emptied(&db).await?;
    insert_events(&db, EVENTS).await?;
    let sink = CountingSink::default();
    let mut outbox = Outbox::new(&db, config.outbox.batch_size).await?;
    let started = Instant::now();
    let mut sent = 0;
    while sent < EVENTS {
        sent += outbox.drain(&db, &sink).await?;
    }
    let ceiling = EVENTS as f64 / started.elapsed().as_secs_f64();
    print(Row {
        figure: "relay: events/s, commit to a counting sink",
        ours: ceiling,
        baseline: None,
        unit: "ev/s",
        target: ">= 10000 ev/s",
        met: Some(ceiling >= 10_000.0 && sink.0.load(Ordering::Relaxed) == EVENTS),
    });

    // Commit-to-acknowledgement latency at half the rate the pipeline sustains
    // (the lower of the broker's and the relay's), offered in 5 ms ticks.
    let (stop, relay) = connected_relay(&db, &config).await?;
    sqlx::query("DELETE FROM event_outbox").execute(&db).await?;
    let rate = (bare.min(ours) / 2.0).max(200.0);
    let tick = Duration::from_millis(5);
    let per_tick = (rate * tick.as_secs_f64()).round().max(1.0) as usize;
    let started = Instant::now();
    let mut next = Instant::now();
    let mut offered = 0;
    while started.elapsed() < Duration::from_secs(4) {
        insert_events(&db, per_tick).await?;
        offered += per_tick;
        next += tick;
        tokio::time::sleep_until(next.into()).await;
    }
    let rate = offered as f64 / started.elapsed().as_secs_f64();
    drained(&db, Duration::from_secs(60)).await?;
    let p99: f64 = sqlx::query_scalar(
        "SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM delivered_at - created_at) * 1000)::float8 FROM event_outbox",
    )
    .fetch_one(&db)
    .await?;
    print(Row {
        figure: &format!("relay: commit-to-ack p99 at {rate:.0} ev/s (ms)"),
        ours: p99,
        baseline: None,
        unit: "ms",
        target: "< 100 ms",
        met: Some(p99 < 100.0),
    });
    let _ = stop.send(true);
    let _ = relay.await;
    Ok(())
}
