//! The outbox: events written in the transaction of the change itself, and
//! the relay's side of the table that carries them to a [`Sink`].
//!
//! Database, index and writing-route events are appended to the
//! `event_outbox` table in the transaction of the change, so a change and its
//! events commit together or not at all. The relay publishes them in order
//! per key, marks them delivered only after the sink acknowledged them, and is
//! woken by NOTIFY [`CHANNEL`] at commit. Delivery is at least once: consumers
//! drop duplicates by the event id.

use crate::config::{ConfigError, Env};
use crate::envelope::RequestContext;
use crate::error::ApiError;
use crate::event::{Consumed, Event, Notices};
use crate::trace::TraceContext;
use sqlx::postgres::PgPool;
use sqlx::PgConnection;
use std::sync::atomic::Ordering;
use tracing::Instrument;
use uuid::Uuid;

/// The NOTIFY channel of new outbox events (the relay and the realtime hub listen).
pub const CHANNEL: &str = "event_outbox";
/// Work is split into lanes by key: one relay at a time drains a lane, so
/// events of one key keep their order across replicas.
const LANES: u32 = 16;
/// Namespace of the relay's advisory locks (one per lane).
const LOCK_CLASS: i32 = 0x5356_4547;

/// How the relay works through the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxSettings {
    /// `OUTBOX_BATCH_SIZE` (default 500): events the relay sends per round.
    pub batch_size: i64,
    /// `OUTBOX_RETENTION_SECS` (default 86400): how long delivered events are kept.
    pub retention_secs: u64,
}

impl OutboxSettings {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            batch_size: env.parse("OUTBOX_BATCH_SIZE", "500")?,
            retention_secs: env.parse("OUTBOX_RETENTION_SECS", "86400")?,
        })
    }
}

/// A stable lane for a key (FNV-1a), the same on every replica and release:
/// a change would split a key's events across two lanes while both drain.
fn lane(key: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    i32::try_from(h % LANES).unwrap_or(0)
}

/// Appends `events` to the outbox inside the caller's transaction; the
/// NOTIFY reaches the relay when the transaction commits. The request's
/// [`Watcher`](crate::event::Watcher), if any, hears of the events first and
/// its notices are sent in the same transaction.
pub async fn enqueue(
    tx: &mut PgConnection,
    ctx: &RequestContext,
    events: &[Event],
) -> Result<(), ApiError> {
    enqueue_after(tx, ctx, events, "", 0, |q| q).await
}

/// A statement under construction, for [`enqueue_after`].
pub type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Appends `events` to the outbox in the same statement as `ctes`: WITH items
/// (each followed by a comma) that write with placeholders `$1` to
/// `$params`, bound by `bind`. One round trip then writes both, atomically
/// even outside a transaction.
pub async fn enqueue_after(
    conn: &mut PgConnection,
    ctx: &RequestContext,
    events: &[Event],
    ctes: &str,
    params: usize,
    bind: impl for<'q> FnOnce(PgQuery<'q>) -> PgQuery<'q>,
) -> Result<(), ApiError> {
    // A span of its own when spans are exported: the relay's producer spans
    // hang under it, so a trace shows where each event was written.
    let span = tracing::debug_span!("outbox.enqueue", events = events.len());
    let trace = TraceContext::of_span(&span).unwrap_or_else(|| ctx.trace.here());
    async {
    if let Some(consumed) = &ctx.consumed {
        record_consumed(conn, consumed).await?;
    }
    let notices = ctx
        .watcher
        .as_ref()
        .and_then(|w| w.before_commit(events))
        .unwrap_or(Notices {
            channel: CHANNEL,
            payloads: Vec::new(),
        });
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let topics: Vec<&str> = events.iter().map(|e| e.topic).collect();
    let keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
    let lanes: Vec<i32> = events.iter().map(|e| lane(&e.key)).collect();
    let payloads: Vec<&str> = events.iter().map(|e| e.payload.as_str()).collect();
    let p = |i: usize| params + i;
    let sql = format!(
        "WITH {ctes}added AS (
             INSERT INTO event_outbox (event_id, topic, event_key, lane, payload, request_id, traceparent, tracestate)
             SELECT e.*, ${}, ${}, ${} FROM UNNEST(${}::uuid[], ${}::text[], ${}::text[], ${}::int[], ${}::text[]) AS e
             RETURNING 1
         )
         SELECT pg_notify(${}, '') FROM (SELECT 1 FROM added LIMIT 1) AS any_added
         UNION ALL SELECT pg_notify(${}, c) FROM unnest(${}::text[]) AS c",
        p(6),
        p(10),
        p(11),
        p(1),
        p(2),
        p(3),
        p(4),
        p(5),
        p(7),
        p(8),
        p(9),
    );
    bind(sqlx::query(&sql))
        .bind(&ids)
        .bind(&topics)
        .bind(&keys)
        .bind(&lanes)
        .bind(&payloads)
        .bind(&ctx.request_id)
        .bind(CHANNEL)
        .bind(notices.channel)
        .bind(&notices.payloads)
        .bind(trace.traceparent())
        .bind(trace.state.as_deref())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
    .instrument(span)
    .await
}

/// Writes the inbox row of the event a consumer runs a route for, once per
/// attempt: when another delivery of the event wrote it first, the route's
/// transaction must not commit ([`ApiError::AlreadyConsumed`]).
async fn record_consumed(conn: &mut PgConnection, consumed: &Consumed) -> Result<(), ApiError> {
    if consumed.recorded.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    let c = consumed;
    let added = record_inbox(
        conn,
        c.consumer,
        &c.event_id,
        &c.topic,
        c.partition,
        c.offset,
        false,
    )
    .await?;
    if !added {
        return Err(ApiError::AlreadyConsumed);
    }
    Ok(())
}

/// Records that `consumer` took in the event `event_id` (read from `topic`
/// at `partition` and `offset`), or dead-lettered it; `false`, and no row
/// written, when it had one already.
pub async fn record_inbox(
    conn: &mut PgConnection,
    consumer: &str,
    event_id: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    dead: bool,
) -> Result<bool, ApiError> {
    let added = sqlx::query(
        "INSERT INTO consumer_inbox (consumer, event_id, topic, kafka_partition, kafka_offset, dead_lettered) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (consumer, event_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id)
    .bind(topic)
    .bind(partition)
    .bind(offset)
    .bind(dead)
    .execute(conn)
    .await?;
    Ok(added.rows_affected() == 1)
}

/// An outbox row waiting for the sink.
#[derive(Debug, sqlx::FromRow)]
pub struct Pending {
    pub id: i64,
    pub event_id: Uuid,
    pub topic: String,
    pub event_key: String,
    pub payload: String,
    pub request_id: Option<String>,
    /// The W3C trace context of the write that made it.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Where the relay sends events: the broker in production. The bench
/// measures the relay's own ceiling with a sink that only counts.
pub trait Sink: Sync {
    /// Sends `batch` in order. Answers how many of its first events were
    /// acknowledged, and the error that stopped the rest.
    fn publish(
        &self,
        batch: &[Pending],
    ) -> impl std::future::Future<Output = (usize, Option<anyhow::Error>)> + Send;
}

/// The relay's side of the outbox: the connection that holds lane locks,
/// and the batch size.
pub struct Outbox {
    locks: sqlx::pool::PoolConnection<sqlx::Postgres>,
    batch: i64,
}

impl Outbox {
    pub async fn new(db: &PgPool, batch: i64) -> anyhow::Result<Self> {
        Ok(Self {
            locks: db.acquire().await?,
            batch,
        })
    }

    /// Publishes what is pending in every lane this relay can lock: all of
    /// them at once, in one query per batch. Answers how many were delivered.
    pub async fn drain(&mut self, db: &PgPool, sink: &impl Sink) -> anyhow::Result<usize> {
        let lanes: Vec<i32> = sqlx::query_scalar(
            "SELECT lane FROM (SELECT DISTINCT lane FROM event_outbox WHERE delivered_at IS NULL) AS pending
             WHERE pg_try_advisory_lock($1, lane)",
        )
        .bind(LOCK_CLASS)
        .fetch_all(&mut *self.locks)
        .await?;
        if lanes.is_empty() {
            return Ok(0);
        }
        let result = self.drain_lanes(db, sink, &lanes).await;
        sqlx::query("SELECT pg_advisory_unlock($1, lane) FROM unnest($2::int[]) AS lane")
            .bind(LOCK_CLASS)
            .bind(&lanes)
            .execute(&mut *self.locks)
            .await?;
        result
    }

    /// Sends the locked lanes' events in id order (so in order per key) until
    /// none is pending. Pipelined: while the sink sends one batch, the next is
    /// read and the one before is marked delivered.
    async fn drain_lanes(
        &self,
        db: &PgPool,
        sink: &impl Sink,
        lanes: &[i32],
    ) -> anyhow::Result<usize> {
        let mut rows = self.fetch(db, lanes, 0).await?;
        let mut acknowledged: Vec<i64> = Vec::new();
        let mut total = 0;
        while !rows.is_empty() {
            let after = rows.last().map_or(0, |r| r.id);
            // A batch that was not full was all there was; later commits notify.
            let full = i64::try_from(rows.len()).is_ok_and(|n| n >= self.batch);
            let next = async {
                if full {
                    self.fetch(db, lanes, after).await
                } else {
                    Ok(Vec::new())
                }
            };
            let previous = std::mem::take(&mut acknowledged);
            let ((sent, failure), next, marked) =
                tokio::join!(sink.publish(&rows), next, mark_delivered(db, &previous));
            marked?;
            // Only the acknowledged prefix counts: the rest is sent again, in order.
            acknowledged = rows[..sent].iter().map(|r| r.id).collect();
            total += sent;
            // Counted as acknowledged, so a round that fails later still counts them.
            ::metrics::counter!(crate::measure::RELAY_PUBLISHED).increment(sent as u64);
            match (failure, next) {
                (None, Ok(next)) => rows = next,
                (Some(e), _) | (None, Err(e)) => {
                    mark_delivered(db, &acknowledged).await?;
                    return Err(e);
                }
            }
        }
        mark_delivered(db, &acknowledged).await?;
        Ok(total)
    }

    /// The next batch of the lanes' pending events after id `after`.
    async fn fetch(&self, db: &PgPool, lanes: &[i32], after: i64) -> anyhow::Result<Vec<Pending>> {
        Ok(sqlx::query_as(
            "SELECT id, event_id, topic, event_key, payload, request_id, traceparent, tracestate, created_at FROM event_outbox
             WHERE delivered_at IS NULL AND lane = ANY($1) AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(lanes)
        .bind(after)
        .bind(self.batch)
        .fetch_all(db)
        .await?)
    }
}

async fn mark_delivered(db: &PgPool, ids: &[i64]) -> anyhow::Result<()> {
    if !ids.is_empty() {
        sqlx::query("UPDATE event_outbox SET delivered_at = now() WHERE id = ANY($1)")
            .bind(ids)
            .execute(db)
            .await?;
    }
    Ok(())
}

/// Deletes events delivered longer than `retention_secs` ago. A failure is
/// only logged: the next round tries again.
pub async fn prune(db: &PgPool, retention_secs: u64) {
    let result = sqlx::query(
        "DELETE FROM event_outbox WHERE delivered_at < now() - make_interval(secs => $1)",
    )
    .bind(retention_secs as f64)
    .execute(db)
    .await;
    match result {
        Ok(r) if r.rows_affected() > 0 => {
            tracing::debug!(rows = r.rows_affected(), "pruned delivered events")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "pruning the outbox failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Watcher;
    use crate::testing::{context, TestDb};
    use std::sync::{Arc, Mutex};

    #[test]
    fn lanes_are_fnv1a_of_the_key_modulo_16() {
        // Published FNV-1a (32-bit) vectors: "" 0x811c9dc5, "a" 0xe40c292c,
        // "foobar" 0xbf9cf968.
        assert_eq!(lane(""), 0x5);
        assert_eq!(lane("a"), 0xc);
        assert_eq!(lane("foobar"), 0x8);
        let key = "0b4e7a0e-5d1c-4b6e-9d7a-3f1c2e4b5a69";
        assert_eq!(lane(key), lane(key));
        assert!((0..16).contains(&lane(key)));
    }

    #[test]
    fn keys_spread_over_every_lane() {
        let used: std::collections::BTreeSet<i32> =
            (0..1000).map(|i| lane(&format!("key-{i}"))).collect();
        assert_eq!(used.len(), 16);
    }

    /// Records what it is sent; acknowledges at most `budget` events in all,
    /// then fails.
    #[derive(Default)]
    struct Recording {
        batches: Mutex<Vec<Vec<i64>>>,
        budget: Mutex<Option<usize>>,
    }

    impl Sink for Recording {
        async fn publish(&self, batch: &[Pending]) -> (usize, Option<anyhow::Error>) {
            self.batches
                .lock()
                .expect("lock")
                .push(batch.iter().map(|p| p.id).collect());
            let mut budget = self.budget.lock().expect("lock");
            match budget.as_mut() {
                Some(left) if *left < batch.len() => {
                    let sent = std::mem::take(left);
                    (sent, Some(anyhow::anyhow!("the broker went away")))
                }
                Some(left) => {
                    *left -= batch.len();
                    (batch.len(), None)
                }
                None => (batch.len(), None),
            }
        }
    }

    impl Recording {
        fn sent(&self) -> Vec<i64> {
            self.batches.lock().expect("lock").concat()
        }
    }

    fn events(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| {
                Event::raw(
                    "topic-a",
                    format!("key-{}", i % 7),
                    format!("{{\"n\":{i}}}"),
                )
            })
            .collect()
    }

    async fn enqueue_events(db: &PgPool, events: &[Event]) {
        let mut tx = db.begin().await.expect("begin");
        enqueue(&mut tx, &context(None), events)
            .await
            .expect("enqueue");
        tx.commit().await.expect("commit");
    }

    async fn undelivered(db: &PgPool) -> Vec<i64> {
        sqlx::query_scalar("SELECT id FROM event_outbox WHERE delivered_at IS NULL ORDER BY id")
            .fetch_all(db)
            .await
            .expect("pending ids")
    }

    #[tokio::test]
    async fn enqueued_events_carry_their_lane_and_request() {
        let db = TestDb::with_outbox().await;
        let pool = db.pool().await;
        let sent = events(3);
        enqueue_events(&pool, &sent).await;
        let rows: Vec<(Uuid, String, String, i32, String, Option<String>)> = sqlx::query_as(
            "SELECT event_id, topic, event_key, lane, payload, request_id FROM event_outbox ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .expect("rows");
        assert_eq!(rows.len(), 3);
        for (row, event) in rows.iter().zip(&sent) {
            assert_eq!(row.0, event.id);
            assert_eq!(
                (row.1.as_str(), row.2.as_str()),
                (event.topic, event.key.as_str())
            );
            assert_eq!(row.3, lane(&event.key));
            assert_eq!(row.4, event.payload);
            assert_eq!(row.5.as_deref(), Some("req-1"));
        }
    }

    #[derive(Debug)]
    struct Announcing;

    impl Watcher for Announcing {
        fn before_commit(&self, events: &[Event]) -> Option<Notices> {
            Some(Notices {
                channel: "watchers",
                payloads: events.iter().map(|e| e.key.clone()).collect(),
            })
        }
    }

    #[tokio::test]
    async fn the_outbox_and_the_watcher_are_notified_at_commit() {
        let db = TestDb::with_outbox().await;
        let pool = db.pool().await;
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
            .await
            .expect("listener");
        listener
            .listen_all([CHANNEL, "watchers"])
            .await
            .expect("listen");
        let mut tx = pool.begin().await.expect("begin");
        let watcher: Arc<dyn Watcher> = Arc::new(Announcing);
        enqueue(&mut tx, &context(Some(watcher)), &events(2))
            .await
            .expect("enqueue");
        tx.commit().await.expect("commit");
        let mut heard = Vec::new();
        for _ in 0..3 {
            let n = listener.recv().await.expect("notification");
            heard.push((n.channel().to_string(), n.payload().to_string()));
        }
        heard.sort();
        let expected = [(CHANNEL, ""), ("watchers", "key-0"), ("watchers", "key-1")];
        assert_eq!(heard, expected.map(|(c, p)| (c.to_string(), p.to_string())));
    }

    #[tokio::test]
    async fn a_drain_sends_everything_in_id_order_in_batches() {
        let db = TestDb::with_outbox().await;
        let pool = db.pool().await;
        enqueue_events(&pool, &events(23)).await;
        let all = undelivered(&pool).await;
        let sink = Recording::default();
        let mut outbox = Outbox::new(&pool, 5).await.expect("outbox");
        assert_eq!(outbox.drain(&pool, &sink).await.expect("drain"), 23);
        assert_eq!(sink.sent(), all);
        let sizes: Vec<usize> = sink
            .batches
            .lock()
            .expect("lock")
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [5, 5, 5, 5, 3]);
        assert!(undelivered(&pool).await.is_empty());
        // Nothing left: the next drain sends nothing.
        assert_eq!(outbox.drain(&pool, &sink).await.expect("drain"), 0);
    }

    #[tokio::test]
    async fn after_a_failure_only_the_acknowledged_prefix_is_delivered() {
        let db = TestDb::with_outbox().await;
        let pool = db.pool().await;
        enqueue_events(&pool, &events(12)).await;
        let all = undelivered(&pool).await;
        let failing = Recording {
            budget: Mutex::new(Some(7)),
            ..Recording::default()
        };
        let mut outbox = Outbox::new(&pool, 5).await.expect("outbox");
        let err = outbox
            .drain(&pool, &failing)
            .await
            .expect_err("the sink fails");
        assert_eq!(err.to_string(), "the broker went away");
        assert_eq!(undelivered(&pool).await, all[7..]);
        // The rest goes out again, in order, once the sink is back.
        let sink = Recording::default();
        assert_eq!(outbox.drain(&pool, &sink).await.expect("drain"), 5);
        assert_eq!(sink.sent(), all[7..]);
    }

    #[tokio::test]
    async fn a_lane_locked_elsewhere_is_left_to_its_holder() {
        let db = TestDb::with_outbox().await;
        let pool = db.pool().await;
        let sent = events(14);
        enqueue_events(&pool, &sent).await;
        // Another replica holds the lane of key-0.
        let held = lane("key-0");
        let mut other = pool.acquire().await.expect("connection");
        sqlx::query("SELECT pg_advisory_lock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(held)
            .execute(&mut *other)
            .await
            .expect("lock");
        let sink = Recording::default();
        let mut outbox = Outbox::new(&pool, 100).await.expect("outbox");
        let elsewhere = sent.iter().filter(|e| lane(&e.key) == held).count();
        let drained = outbox.drain(&pool, &sink).await.expect("drain");
        assert_eq!(drained, sent.len() - elsewhere);
        assert_eq!(undelivered(&pool).await.len(), elsewhere);
    }

    #[tokio::test]
    async fn prune_keeps_what_is_pending_or_recent() {
        let db = TestDb::with_outbox().await;
        let pool = db.pool().await;
        enqueue_events(&pool, &events(3)).await;
        let ids = undelivered(&pool).await;
        sqlx::query(
            "UPDATE event_outbox SET delivered_at = now() - interval '2 hours' WHERE id = $1",
        )
        .bind(ids[0])
        .execute(&pool)
        .await
        .expect("delivered long ago");
        mark_delivered(&pool, &ids[1..2])
            .await
            .expect("delivered now");
        prune(&pool, 3600).await;
        let left: Vec<i64> = sqlx::query_scalar("SELECT id FROM event_outbox ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("ids");
        assert_eq!(left, ids[1..]);
    }
}
