//! The relay: the background task that carries the outbox to Kafka, woken by
//! the NOTIFY of each commit, reconnecting with backoff when the broker or
//! the database goes away.

use crate::kafka::{KafkaSettings, KafkaSink, KafkaSpec};
use crate::outbox::{self, Outbox, OutboxSettings, CHANNEL};
use sqlx::postgres::{PgListener, PgPool};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often delivered events older than the retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Publishes the outbox until `stop` turns true.
pub async fn run(
    db: PgPool,
    spec: &'static KafkaSpec,
    kafka: KafkaSettings,
    settings: OutboxSettings,
    mut stop: watch::Receiver<bool>,
) {
    let Some(brokers) = kafka.brokers.clone() else {
        tracing::warn!("KAFKA_BROKERS is not set: events wait in the outbox");
        return;
    };
    let mut backoff = Duration::from_millis(100);
    let mut relay: Option<Relay> = None;
    let mut pruned = Instant::now();
    while !*stop.borrow() {
        let step = async {
            if relay.is_none() {
                relay = Some(Relay::start(&db, spec, &kafka, &settings, &brokers).await?);
            }
            let r = relay
                .as_mut()
                .ok_or_else(|| anyhow::anyhow!("relay not started"))?;
            r.outbox.drain(&db, &r.sink).await
        };
        // After a drain, wait for the next commit's NOTIFY (or a second, for
        // lanes another replica let go of).
        match step.await {
            Ok(_) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    retry_in_ms = backoff.as_millis() as u64,
                    "relay failed; backing off"
                );
                relay = None;
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {},
                    _ = stop.changed() => {},
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        }
        if pruned.elapsed() > PRUNE_EVERY {
            pruned = Instant::now();
            outbox::prune(&db, settings.retention_secs).await;
        }
        let Some(r) = relay.as_mut() else { continue };
        tokio::select! {
            n = r.listener.recv() => match n {
                // One drain serves every commit notified so far.
                Ok(_) => while r.listener.next_buffered().is_some() {},
                Err(e) => {
                    tracing::warn!(error = %e, "outbox listener lost; reconnecting");
                    relay = None;
                }
            },
            () = tokio::time::sleep(Duration::from_secs(1)) => {},
            _ = stop.changed() => {},
        }
    }
}

/// A connected relay: the broker, the NOTIFY listener and the outbox.
struct Relay {
    sink: KafkaSink,
    listener: PgListener,
    outbox: Outbox,
}

impl Relay {
    async fn start(
        db: &PgPool,
        spec: &'static KafkaSpec,
        kafka: &KafkaSettings,
        settings: &OutboxSettings,
        brokers: &str,
    ) -> anyhow::Result<Self> {
        let sink = KafkaSink::connect(spec, kafka, brokers).await?;
        let mut listener = PgListener::connect_with(db).await?;
        listener.listen(CHANNEL).await?;
        let outbox = Outbox::new(db, settings.batch_size).await?;
        tracing::info!(brokers, "relay connected");
        Ok(Self {
            sink,
            listener,
            outbox,
        })
    }
}
