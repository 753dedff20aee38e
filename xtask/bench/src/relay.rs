//! The outbox relay's figures: into tansu against a bare producer, and into
//! a sink that only counts.

use crate::{free_port, fresh_database, print, tansu, wait_port, Row};
use airbnb_auth_service::config::Config;
use airbnb_auth_service::spec::KAFKA;
use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use svcgen_runtime::outbox::{Outbox, Pending, Sink};

/// Events per relay measurement: enough that the timing's 10 ms polling is noise.
const EVENTS: usize = 20_000;

fn payload() -> String {
    json!({
        "id": uuid::Uuid::new_v4(), "email": "someone@example.com", "fullname": "Some One", "avatar": null,
        "roleId": "user", "emailVerified": false, "preferredLanguage": "en", "bio": "x".repeat(200),
        "isActive": true, "recordVersion": 1, "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-01T00:00:00Z", "_owner": null
    })
    .to_string()
}

async fn bare_producer_rate(brokers: &str) -> Result<f64> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    admin
        .create_topics(
            &[NewTopic::new("bench-bare", 3, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "0")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    let body = payload();
    let time = chrono::Utc::now().to_rfc3339();
    let send_all = |n: usize| {
        let mut pending = Vec::with_capacity(n);
        for i in 0..n {
            // The relay's own record: same payload, key and CloudEvents headers.
            let key = format!("k{}", i % 100);
            let record = svcgen_runtime::kafka::record(
                KAFKA.source,
                uuid::Uuid::new_v4(),
                "bench-bare",
                &key,
                &body,
                &svcgen_runtime::kafka::RecordMeta {
                    request_id: Some("bench"),
                    // As the relay's records: every outbox row has a trace context.
                    traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                    tracestate: None,
                    time: &time,
                },
            );
            match producer.send_result(record) {
                Ok(d) => pending.push(d),
                Err((e, _)) => return Err(anyhow::anyhow!("enqueue: {e}")),
            }
        }
        Ok(pending)
    };
    for d in send_all(50)? {
        d.await?.map_err(|(e, _)| e)?;
    }
    let started = Instant::now();
    for d in send_all(EVENTS)? {
        d.await?.map_err(|(e, _)| e)?;
    }
    Ok(EVENTS as f64 / started.elapsed().as_secs_f64())
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
             INSERT INTO event_outbox (event_id, topic, event_key, lane, payload, request_id)
             SELECT gen_random_uuid(), $1, 'k' || (g % 100), g % 16, $2, 'bench' FROM generate_series(1, $3) AS g
             RETURNING 1)
         SELECT pg_notify('event_outbox', '') FROM (SELECT 1 FROM added LIMIT 1) AS any_added",
    )
    .bind(airbnb_auth_service::topics::DBEVENT_USER_CREATED)
    .bind(payload())
    .bind(n as i32)
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

pub async fn relay_figures() -> Result<()> {
    let port = free_port();
    let _broker = tansu(port)?;
    wait_port(port).await?;
    let brokers = format!("127.0.0.1:{port}");
    let bare = bare_producer_rate(&brokers)
        .await
        .context("bare producer")?;

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
        _ => None,
    })?;
    let config = Arc::new(config);
    let (stop, relay) = connected_relay(&db, &config).await?;
    insert_events(&db, EVENTS).await?;
    let started = Instant::now();
    drained(&db, Duration::from_secs(120)).await?;
    let ours = EVENTS as f64 / started.elapsed().as_secs_f64();
    print(Row {
        figure: "relay: events/s, commit to broker ack (tansu)",
        ours,
        baseline: Some(bare),
        unit: "ev/s",
        target: ">= 0.8x",
        met: Some(ours >= 0.8 * bare),
    });

    // The relay's own ceiling: the same outbox work with a sink that only counts.
    let _ = stop.send(true);
    let _ = relay.await;
    sqlx::query("DELETE FROM event_outbox").execute(&db).await?;
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
