//! The relay: the background task that carries the outbox to Kafka, woken by
//! the NOTIFY of each commit, reconnecting with backoff when the broker or
//! the database goes away.

use crate::kafka::{KafkaSettings, KafkaSink, KafkaSpec};
use crate::measure;
use crate::outbox::{self, Outbox, OutboxSettings, CHANNEL};
use sqlx::postgres::{PgListener, PgPool};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often delivered events older than the retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The first wait after a failure, and the longest.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The wait after `backoff` failed again: doubled, up to [`MAX_BACKOFF`].
fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(MAX_BACKOFF)
}

/// Between half of `backoff` and all of it, by `random`: the replicas that
/// lost the broker or the database together do not all come back in the
/// same instant and pile onto it again.
fn jittered(backoff: Duration, random: u64) -> Duration {
    let half = backoff / 2;
    let spread = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(random % spread.saturating_add(1))
}

/// Since when the relay has been failing, for `/readyz` (see
/// `health::Readiness`): set at its first failure, cleared by a good round.
#[derive(Debug, Default)]
pub struct RelayHealth(AtomicI64);

impl RelayHealth {
    fn failed(&self) {
        self.failed_at(chrono::Utc::now().timestamp());
    }

    /// Records a failure at `now` (Unix seconds) unless one is recorded already.
    pub(crate) fn failed_at(&self, now: i64) {
        let _ = self
            .0
            .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
    }

    fn recovered(&self) {
        self.0.store(0, Ordering::Release);
    }

    /// How long it has been failing at `now` (Unix seconds), if it is.
    pub fn failing_for(&self, now: i64) -> Option<u64> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            since => Some(u64::try_from(now - since).unwrap_or(0)),
        }
    }
}

/// Publishes the outbox until `stop` turns true.
pub async fn run(
    db: PgPool,
    spec: &'static KafkaSpec,
    kafka: KafkaSettings,
    settings: OutboxSettings,
    stop: watch::Receiver<bool>,
) {
    run_watched(db, spec, kafka, settings, stop, Arc::default()).await;
}

/// [`run`], saying in `health` whether it is failing.
pub async fn run_watched(
    db: PgPool,
    spec: &'static KafkaSpec,
    kafka: KafkaSettings,
    settings: OutboxSettings,
    mut stop: watch::Receiver<bool>,
    health: Arc<RelayHealth>,
) {
    let Some(brokers) = kafka.brokers.clone() else {
        tracing::warn!("KAFKA_BROKERS is not set: events wait in the outbox");
        return;
    };
    // Exported at zero from the start, not from the first event or failure.
    ::metrics::counter!(measure::RELAY_PUBLISHED).increment(0);
    ::metrics::counter!(measure::RELAY_FAILURES).increment(0);
    let mut backoff = FIRST_BACKOFF;
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
            Ok(_) => {
                backoff = FIRST_BACKOFF;
                health.recovered();
            }
            Err(e) => {
                health.failed();
                ::metrics::counter!(measure::RELAY_FAILURES).increment(1);
                let wait = jittered(backoff, uuid::Uuid::new_v4().as_u64_pair().0);
                tracing::warn!(
                    error = format!("{e:#}"),
                    retry_in_ms = wait.as_millis() as u64,
                    "relay failed; backing off"
                );
                relay = None;
                tokio::select! {
                    () = tokio::time::sleep(wait) => {},
                    _ = stop.changed() => {},
                }
                backoff = next_backoff(backoff);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut b = FIRST_BACKOFF;
        let mut seen = Vec::new();
        for _ in 0..8 {
            seen.push(b.as_millis());
            b = next_backoff(b);
        }
        assert_eq!(seen, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }

    #[test]
    fn jitter_keeps_the_wait_between_half_and_all_of_the_backoff() {
        let b = Duration::from_millis(800);
        assert_eq!(jittered(b, 0), Duration::from_millis(400));
        let spread = u64::try_from((b / 2).as_nanos()).unwrap();
        assert_eq!(jittered(b, spread), b);
        for random in [1, 7, 1 << 40, u64::MAX] {
            let w = jittered(b, random);
            assert!(w >= b / 2 && w <= b, "{w:?}");
        }
        assert_ne!(
            jittered(b, 1),
            jittered(b, 1 << 30),
            "different draws, different waits"
        );
    }
}
