//! Consuming another service's events (issue 20): the listing service's
//! `hosts` replica, fed from the auth service's user topics, beside a
//! hand-written rdkafka consumer doing the same upserts in the same batch
//! sizes without an inbox, in one run against one database server.
//!
//! 1. Throughput: a fresh broker is pre-filled with created events for
//!    distinct users and updated events for some of them (timed: the bare
//!    producer's rate); each consumer then reads it all with a fresh group
//!    into its own database, one after the other, for at most 60 s (a
//!    consumer that needs longer is reported with what it applied). The
//!    rate counts from the first committed batch to the last; the rate of
//!    the first 4 s and the time to join and commit a first batch are
//!    printed too.
//! 2. Event-to-replica latency at half the lower of our rate and the bare
//!    producer's: each consumer on a fresh broker of its own (so that nothing
//!    is behind), once it has applied a first event; created events are sent
//!    in 5 ms ticks for 10 s, each send instant kept by id, and the replica
//!    table is polled every few milliseconds for the new rows (the events'
//!    `createdAt` is their send time, so a poll reads, by index, only rows
//!    sent since the oldest one not seen yet).
//!
//! For trying things: `BENCH_CONSUME_USERS` (default 50000) sizes the
//! pre-filled topics; `BENCH_BASELINE_CONFIG=key=value,...` adds librdkafka
//! settings to the baseline's consumer (e.g. `fetch.wait.max.ms=10`).

use crate::{acknowledged, free_port, fresh_database, print, tansu, wait_port, Proc, Row};
use airbnb_auth_service::topics::{
    DBEVENT_USER_CREATED as CREATED, DBEVENT_USER_DELETED as DELETED,
    DBEVENT_USER_UPDATED as UPDATED,
};
use anyhow::{bail, Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{DeliveryFuture, FutureProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{json, Value};
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Users created in the pre-filled topics (`BENCH_CONSUME_USERS`, for a
/// quick try), and how many of them are updated then.
fn sizes() -> (usize, usize) {
    let users = std::env::var("BENCH_CONSUME_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000usize)
        .max(100);
    (users, users / 5)
}
/// The listing service's default `CONSUMER_BATCH_SIZE`.
const BATCH_SIZE: usize = 500;
const LATENCY_SECONDS: u64 = 10;
/// How often the latency phase looks for new rows.
const LATENCY_POLL: Duration = Duration::from_millis(3);
const PREFILL_CREATED_AT: &str = "2020-01-01T00:00:00Z";

/// The listing service's `HOSTS_UPSERT` (tests/listing-service/src/consumers.rs).
const HOSTS_UPSERT: &str = "INSERT INTO hosts AS t (id, fullname, avatar, is_active, record_version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET fullname = EXCLUDED.fullname, avatar = EXCLUDED.avatar, is_active = EXCLUDED.is_active, record_version = EXCLUDED.record_version, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at WHERE t.record_version <= EXCLUDED.record_version";

/// The listing service's `hosts` table and its index, for the baseline's database.
const HOSTS_TABLE: &[&str] = &[
    "CREATE TABLE hosts (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        fullname text NOT NULL,
        avatar text,
        is_active boolean NOT NULL DEFAULT true,
        record_version integer NOT NULL DEFAULT 1,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        _owner uuid
    )",
    "CREATE INDEX hosts_created_at_idx ON hosts (created_at, id) WHERE is_active",
];

/// A user row as the auth service's database events carry it.
fn user_row(id: Uuid, version: i32, created_at: &str, updated_at: &str) -> Value {
    json!({
        "id": id, "email": format!("{}@example.com", id.simple()), "fullname": format!("User {version}"),
        "avatar": null, "roleId": "user", "emailVerified": true, "preferredLanguage": "en",
        "bio": "x".repeat(200), "isActive": true, "recordVersion": version,
        "createdAt": created_at, "updatedAt": updated_at, "_owner": null
    })
}

fn producer(brokers: &str) -> Result<FutureProducer> {
    // As the relay's bare-producer baseline (load.rs): idempotent, all acks, no linger.
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "0")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?)
}

fn send(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &str,
    time: &str,
) -> Result<DeliveryFuture> {
    let record = svcgen_runtime::kafka::record(
        airbnb_auth_service::spec::KAFKA.source,
        Uuid::new_v4(),
        topic,
        key,
        payload,
        &svcgen_runtime::kafka::RecordMeta {
            request_id: Some("bench"),
            // As the relay's records: every outbox row has a trace context.
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            tracestate: None,
            time,
        },
    );
    producer
        .send_result(record)
        .map_err(|(e, _)| anyhow::anyhow!("enqueue: {e}"))
}

/// The auth service's user topics, 3 partitions each.
async fn create_topics(brokers: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let topics: Vec<NewTopic> = [CREATED, UPDATED, DELETED]
        .iter()
        .map(|t| NewTopic::new(t, 3, TopicReplication::Fixed(1)))
        .collect();
    for r in admin.create_topics(&topics, &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    Ok(())
}

/// Creates the user topics (3 partitions each) and fills them: created
/// events of `users`, then updated events of the first `updates` of them.
/// Returns the bare producer's rate, in events/s.
async fn prefill(brokers: &str, (users, updates): (usize, usize)) -> Result<f64> {
    create_topics(brokers).await?;
    let producer = producer(brokers)?;
    let time = Utc::now().to_rfc3339();
    let ids: Vec<Uuid> = (0..users).map(|_| Uuid::new_v4()).collect();
    let created: Vec<(String, String)> = ids
        .iter()
        .map(|id| {
            let row = user_row(*id, 1, PREFILL_CREATED_AT, PREFILL_CREATED_AT);
            (id.to_string(), row.to_string())
        })
        .collect();
    let updated: Vec<(String, String)> = ids[..updates]
        .iter()
        .map(|id| {
            let old = user_row(*id, 1, PREFILL_CREATED_AT, PREFILL_CREATED_AT);
            let new = user_row(*id, 2, PREFILL_CREATED_AT, "2020-01-02T00:00:00Z");
            (
                id.to_string(),
                json!({ "old_user": old, "user": new }).to_string(),
            )
        })
        .collect();
    // Warm the connections and the topics' leaders first.
    let mut warm = Vec::new();
    for (key, payload) in created.iter().take(50) {
        warm.push(send(&producer, CREATED, key, payload, &time)?);
    }
    acknowledged(warm).await?;
    let started = Instant::now();
    let mut pending = Vec::with_capacity(users + updates);
    for (key, payload) in created.iter().skip(50) {
        pending.push(send(&producer, CREATED, key, payload, &time)?);
    }
    for (key, payload) in &updated {
        pending.push(send(&producer, UPDATED, key, payload, &time)?);
    }
    let sent = pending.len();
    acknowledged(pending).await?;
    Ok(sent as f64 / started.elapsed().as_secs_f64())
}

/// What one consumer did with the pre-filled topics.
struct Throughput {
    /// Events/s from the first committed batch to the last sample.
    rate: f64,
    /// Seconds from the consumer's start to its first committed batch.
    first_commit_s: f64,
    /// Events applied when the measurement ended: all of them, or what a
    /// consumer too slow for the time limit had done by then.
    applied: u64,
    seconds: f64,
    /// Events/s over the first `EARLY` after the first committed batch.
    early_rate: f64,
}

/// The window of [`Throughput::early_rate`]: shorter than the runtime's
/// 5 s between lag measurements, so it shows the rate without them.
const EARLY: Duration = Duration::from_secs(4);

/// How long a consumer may take over the pre-filled topics.
const THROUGHPUT_LIMIT: Duration = Duration::from_secs(60);

/// Samples `applied()` every 20 ms until it reaches `total`, or until
/// `limit` has passed since `started` (the figure then says so).
async fn timed<F, Fut>(
    started: Instant,
    total: u64,
    limit: Duration,
    mut applied: F,
) -> Result<Throughput>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64>>,
{
    let mut first: Option<(Instant, u64)> = None;
    let mut early: Option<f64> = None;
    loop {
        let n = applied().await.unwrap_or(0);
        let now = Instant::now();
        if n > 0 && first.is_none() {
            first = Some((now, n));
        }
        if let Some((at, n0)) = first {
            let secs = now.duration_since(at).as_secs_f64();
            if early.is_none() && (secs >= EARLY.as_secs_f64() || n >= total) && secs > 0.0 {
                early = Some(n.saturating_sub(n0) as f64 / secs);
            }
        }
        if n >= total || now > started + limit {
            let Some((at, n0)) = first else {
                bail!("nothing applied in {limit:?}");
            };
            let secs = now.duration_since(at).as_secs_f64();
            return Ok(Throughput {
                rate: if secs > 0.0 {
                    n.saturating_sub(n0) as f64 / secs
                } else {
                    f64::NAN
                },
                first_commit_s: at.duration_since(started).as_secs_f64(),
                applied: n,
                seconds: now.duration_since(started).as_secs_f64(),
                early_rate: early.unwrap_or(f64::NAN),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The replica holds every user once, the updated ones at version 2.
async fn check_replica(db: &PgPool, (users, updates): (usize, usize), who: &str) -> Result<()> {
    let (rows, updated): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE record_version = 2) FROM hosts")
            .fetch_one(db)
            .await?;
    if rows != users as i64 || updated != updates as i64 {
        bail!(
            "{who}: hosts has {rows} rows, {updated} at version 2; expected {users} and {updates}"
        );
    }
    Ok(())
}

fn listing_service(bin: &str, url: &str, http_port: u16, brokers: &str) -> Result<Proc> {
    Ok(Proc(
        Command::new(bin)
            .env("DATABASE_URL", url)
            .env("HTTP_ADDR", format!("127.0.0.1:{http_port}"))
            .env("KAFKA_BROKERS", brokers)
            .env("CONSUMER_GROUP", format!("bench-ours-{}", Uuid::new_v4()))
            .env("CONSUMER_BATCH_SIZE", BATCH_SIZE.to_string())
            // Only the consumer path is measured: nothing needs the keys.
            .env("JWKS_URL", "http://127.0.0.1:9/jwks.json")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .context("starting the listing service")?,
    ))
}

/// The listing service's `/healthz` report of its `hosts` consumer.
async fn hosts_health(http: &reqwest::Client, url: &str) -> Result<Value> {
    let body: Value = http.get(url).send().await?.json().await?;
    Ok(body["consuming"]["consumers"]["hosts"].clone())
}

pub async fn consume_figures() -> Result<()> {
    let listing_bin = std::env::var("BENCH_LISTING_BIN")
        .context("BENCH_LISTING_BIN: run through `cargo xtask bench`")?;
    let port = free_port();
    let broker = tansu(port)?;
    wait_port(port).await?;
    let brokers = format!("127.0.0.1:{port}");
    let sizes = sizes();
    let (users, updates) = sizes;
    let bare = prefill(&brokers, sizes)
        .await
        .context("pre-filling the topics")?;
    let total = (users + updates) as u64;

    // The baseline first (stopped before ours starts), with a group of its
    // own, into a database of its own.
    let base_url = fresh_database().await?;
    let base_db = PgPoolOptions::new()
        .max_connections(2)
        .connect(&base_url)
        .await?;
    for statement in HOSTS_TABLE {
        sqlx::query(statement).execute(&base_db).await?;
    }
    let started = Instant::now();
    let baseline = Baseline::start(&brokers, &base_db)?;
    let theirs = timed(started, total, THROUGHPUT_LIMIT, baseline.counter())
        .await
        .context("the baseline consuming")?;
    baseline.stop().await?;
    if theirs.applied >= total {
        check_replica(&base_db, sizes, "baseline").await?;
    }

    // Ours: the listing service's release binary, a fresh database and group.
    let ours_url = fresh_database().await?;
    let http_port = free_port();
    let health = format!("http://127.0.0.1:{http_port}/healthz");
    let http = reqwest::Client::new();
    let hosts = || hosts_health(&http, &health);
    let applied = || async { Ok(hosts().await?["applied"].as_u64().unwrap_or(0)) };
    let started = Instant::now();
    let service = listing_service(&listing_bin, &ours_url, http_port, &brokers)?;
    let ours = timed(started, total, THROUGHPUT_LIMIT, applied)
        .await
        .context("the listing service consuming")?;
    let ours_db = PgPoolOptions::new()
        .max_connections(2)
        .connect(&ours_url)
        .await?;
    if ours.applied >= total {
        check_replica(&ours_db, sizes, "listing service").await?;
    }
    let h = hosts().await?;
    drop(service);
    drop(broker);

    let done = |t: &Throughput| {
        if t.applied >= total {
            String::new()
        } else {
            format!(" (only {} of {total} in {:.0} s)", t.applied, t.seconds)
        }
    };
    print(Row {
        figure: "consume: replica events/s, pre-filled topics",
        ours: ours.rate,
        baseline: Some(theirs.rate),
        unit: "ev/s",
        target: ">= 0.8x, >= 5000",
        met: Some(ours.applied >= total && ours.rate >= 0.8 * theirs.rate && ours.rate >= 5000.0),
    });
    print(Row {
        figure: "consume: replica events/s, first 4 s after 1st batch",
        ours: ours.early_rate,
        baseline: Some(theirs.early_rate),
        unit: "ev/s",
        target: "",
        met: None,
    });
    print(Row {
        figure: "consume: start to first committed batch (s)",
        ours: ours.first_commit_s,
        baseline: Some(theirs.first_commit_s),
        unit: "s",
        target: "",
        met: None,
    });
    println!(
        "  ({users} created + {updates} updated events, 3 partitions a topic, batches of {BATCH_SIZE}, from the first committed batch; bare producer {bare:.0} ev/s; ours{}, baseline{}; listing service's hosts: applied {}, duplicates {}, retries {}, dead letters {})",
        done(&ours), done(&theirs), h["applied"], h["duplicates"], h["retries"], h["deadLettered"]
    );

    // Latency, at half the lower of our rate and the bare producer's; each
    // consumer on a fresh broker of its own (nothing behind to catch up on),
    // once it has applied a first event.
    let rate = (ours.rate.min(bare) / 2.0).max(100.0);
    let ours_lat = {
        let (_broker, brokers) = empty_broker().await?;
        let _service = listing_service(&listing_bin, &ours_url, http_port, &brokers)?;
        latency(&brokers, &ours_db, rate, || async {
            Ok(hosts().await?["applied"].as_u64().unwrap_or(0))
        })
        .await
        .context("our latency")?
    };
    let base_lat = {
        let (_broker, brokers) = empty_broker().await?;
        let baseline = Baseline::start(&brokers, &base_db)?;
        let lat = latency(&brokers, &base_db, rate, baseline.counter())
            .await
            .context("the baseline's latency")?;
        baseline.stop().await?;
        lat
    };
    for (name, ours, theirs, target) in [
        ("p50", ours_lat.p50, base_lat.p50, ""),
        ("p99", ours_lat.p99, base_lat.p99, "< 200 ms"),
    ] {
        print(Row {
            figure: &format!(
                "consume: event-to-replica at {:.0} ev/s, {name} (ms)",
                ours_lat.rate
            ),
            ours,
            baseline: Some(theirs),
            unit: "ms",
            target,
            met: (!target.is_empty()).then_some(ours < 200.0),
        });
    }
    println!(
        "  (max {:.1} ms ours, {:.1} ms baseline; never arrived within {} s of the last send: {} of {} ours, {} of {} baseline, counted as that long; offered half of min(ours {:.0}, bare producer {bare:.0}) ev/s for {LATENCY_SECONDS} s in 5 ms ticks; rows polled every {} ms)",
        ours_lat.max,
        base_lat.max,
        ARRIVAL_LIMIT.as_secs(),
        ours_lat.missing,
        ours_lat.sent,
        base_lat.missing,
        base_lat.sent,
        ours.rate,
        LATENCY_POLL.as_millis()
    );
    Ok(())
}

/// A fresh broker with the user topics, for a latency phase.
async fn empty_broker() -> Result<(Proc, String)> {
    let port = free_port();
    let broker = tansu(port)?;
    wait_port(port).await?;
    let brokers = format!("127.0.0.1:{port}");
    create_topics(&brokers).await?;
    Ok((broker, brokers))
}

/// The latency phase's figures.
struct Latency {
    sent: usize,
    /// Events that never arrived within `ARRIVAL_LIMIT`.
    missing: usize,
    rate: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

/// Events of the latency phase, in send order, and when each arrived.
#[derive(Default)]
struct Sent {
    order: Vec<(Uuid, Instant, DateTime<Utc>)>,
    index: HashMap<Uuid, usize>,
    arrived: Vec<Option<Instant>>,
    /// Every event before this one has arrived.
    oldest_pending: usize,
}

/// How long after the last send of a latency phase its events may arrive.
const ARRIVAL_LIMIT: Duration = Duration::from_secs(20);

/// Once the consumer has applied a first event (`applied()` counts what it
/// applied), sends created events at `rate` for `LATENCY_SECONDS` in 5 ms
/// ticks, and polls `db`'s hosts for them: the time from each send to its
/// row. An event not there `ARRIVAL_LIMIT` after the last send counts as
/// late as the time from its send to then.
async fn latency<F, Fut>(brokers: &str, db: &PgPool, rate: f64, mut applied: F) -> Result<Latency>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64>>,
{
    let producer = producer(brokers)?;
    let first = Uuid::new_v4();
    let row = user_row(first, 1, PREFILL_CREATED_AT, PREFILL_CREATED_AT).to_string();
    acknowledged(vec![send(
        &producer,
        CREATED,
        &first.to_string(),
        &row,
        PREFILL_CREATED_AT,
    )?])
    .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while applied().await.unwrap_or(0) == 0 {
        if Instant::now() > deadline {
            bail!("the consumer applied no event in 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let sent = Arc::new(Mutex::new(Sent::default()));
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let poller = tokio::spawn(poll_arrivals(db.clone(), sent.clone(), done_rx));
    let tick = Duration::from_millis(5);
    let per_tick = (rate * tick.as_secs_f64()).round().max(1.0) as usize;
    let started = Instant::now();
    let mut next = started;
    let mut pending = Vec::new();
    let mut count = 0;
    while started.elapsed() < Duration::from_secs(LATENCY_SECONDS) {
        for _ in 0..per_tick {
            let id = Uuid::new_v4();
            let wall = Utc::now();
            let at = wall.to_rfc3339_opts(SecondsFormat::Micros, true);
            let payload = user_row(id, 1, &at, &at).to_string();
            let key = id.to_string();
            {
                let mut s = sent.lock().unwrap_or_else(|e| e.into_inner());
                let i = s.order.len();
                s.order.push((id, Instant::now(), wall));
                s.index.insert(id, i);
                s.arrived.push(None);
            }
            pending.push(send(&producer, CREATED, &key, &payload, &at)?);
            count += 1;
        }
        next += tick;
        tokio::time::sleep_until(next.into()).await;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    acknowledged(pending).await?;
    let deadline = Instant::now() + ARRIVAL_LIMIT;
    while Instant::now() < deadline {
        let left = {
            let s = sent.lock().unwrap_or_else(|e| e.into_inner());
            s.order.len() - s.oldest_pending
        };
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = done_tx.send(true);
    poller.await??;
    let gave_up = Instant::now();
    let s = sent.lock().unwrap_or_else(|e| e.into_inner());
    let mut missing = 0;
    let mut ms: Vec<f64> = s
        .order
        .iter()
        .zip(&s.arrived)
        .map(|((_, at, _), arrived)| {
            let end = arrived.unwrap_or_else(|| {
                missing += 1;
                gave_up
            });
            end.duration_since(*at).as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
    Ok(Latency {
        sent: count,
        missing,
        rate,
        p50: pct(0.50),
        p99: pct(0.99),
        max: ms.last().copied().unwrap_or(f64::NAN),
    })
}

/// Marks the rows of `sent` that appear in `db`'s hosts, every `LATENCY_POLL`.
async fn poll_arrivals(
    db: PgPool,
    sent: Arc<Mutex<Sent>>,
    mut done: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let mut conn = db.acquire().await?;
    while !*done.borrow() {
        let since = {
            let s = sent.lock().unwrap_or_else(|e| e.into_inner());
            s.order.get(s.oldest_pending).map(|(_, _, wall)| *wall)
        };
        if let Some(since) = since {
            // Stored to the microsecond: the oldest pending row is at or after it, truncated.
            let since = since - chrono::Duration::microseconds(1);
            let ids: Vec<Uuid> =
                sqlx::query_scalar("SELECT id FROM hosts WHERE is_active AND created_at >= $1")
                    .bind(since)
                    .fetch_all(&mut *conn)
                    .await?;
            let now = Instant::now();
            let mut s = sent.lock().unwrap_or_else(|e| e.into_inner());
            for id in ids {
                if let Some(&i) = s.index.get(&id) {
                    if s.arrived[i].is_none() {
                        s.arrived[i] = Some(now);
                    }
                }
            }
            while s.oldest_pending < s.order.len() && s.arrived[s.oldest_pending].is_some() {
                s.oldest_pending += 1;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(LATENCY_POLL) => {}
            _ = done.changed() => {}
        }
    }
    Ok(())
}

/// A user as the baseline decodes it: the fields the replica keeps.
#[derive(serde::Deserialize)]
struct Host {
    id: Uuid,
    fullname: String,
    #[serde(default)]
    avatar: Option<String>,
    #[serde(rename = "isActive")]
    is_active: bool,
    #[serde(rename = "recordVersion")]
    record_version: i32,
    #[serde(rename = "createdAt")]
    created_at: DateTime<Utc>,
    #[serde(rename = "updatedAt")]
    updated_at: DateTime<Utc>,
}

#[derive(serde::Deserialize)]
struct UpdatedUser {
    user: Host,
}

/// The hand-written consumer: a StreamConsumer in a group of its own; reads
/// what is waiting up to a batch, upserts it in one transaction, commits the
/// offsets after the transaction. No inbox, no retries, no dead letters.
struct Baseline {
    applied: Arc<AtomicU64>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Baseline {
    /// Starts it in a fresh group.
    fn start(brokers: &str, db: &PgPool) -> Result<Self> {
        let group = format!("bench-baseline-{}", Uuid::new_v4());
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest");
        if let Ok(extra) = std::env::var("BENCH_BASELINE_CONFIG") {
            for kv in extra.split(',').filter(|kv| !kv.is_empty()) {
                if let Some((k, v)) = kv.split_once('=') {
                    config.set(k, v);
                }
            }
        }
        let consumer: StreamConsumer = config.create()?;
        consumer.subscribe(&[CREATED, UPDATED, DELETED])?;
        let applied = Arc::new(AtomicU64::new(0));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(baseline_loop(
            consumer,
            db.clone(),
            applied.clone(),
            stop_rx,
        ));
        Ok(Self {
            applied,
            stop,
            task,
        })
    }

    /// How many events it has applied, for [`timed`].
    fn counter(&self) -> impl FnMut() -> std::future::Ready<Result<u64>> {
        let applied = self.applied.clone();
        move || std::future::ready(Ok(applied.load(Ordering::Relaxed)))
    }

    async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        self.task.await?
    }
}

async fn baseline_loop(
    consumer: StreamConsumer,
    db: PgPool,
    applied: Arc<AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let decode = |m: &rdkafka::message::BorrowedMessage<'_>| -> Result<(Host, bool)> {
        let payload = m.payload().unwrap_or_default();
        Ok(match m.topic() {
            UPDATED => (serde_json::from_slice::<UpdatedUser>(payload)?.user, false),
            DELETED => (serde_json::from_slice(payload)?, true),
            _ => (serde_json::from_slice(payload)?, false),
        })
    };
    while !*stop.borrow() {
        let first = tokio::select! {
            m = consumer.recv() => m,
            _ = stop.changed() => break,
        };
        let mut rows = Vec::with_capacity(BATCH_SIZE);
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut take = |m: &rdkafka::message::BorrowedMessage<'_>| -> Result<()> {
            rows.push(decode(m)?);
            let at = next
                .entry((m.topic().to_string(), m.partition()))
                .or_insert(0);
            *at = (*at).max(m.offset() + 1);
            Ok(())
        };
        match first {
            Ok(m) => take(&m)?,
            Err(e) => {
                eprintln!("baseline: reading events: {e}");
                continue;
            }
        }
        let mut n = 1;
        while n < BATCH_SIZE {
            match tokio::time::timeout(Duration::ZERO, consumer.recv()).await {
                Ok(Ok(m)) => take(&m)?,
                _ => break,
            }
            n += 1;
        }
        let mut tx = db.begin().await?;
        for (row, deleted) in rows {
            sqlx::query(HOSTS_UPSERT)
                .bind(row.id)
                .bind(row.fullname)
                .bind(row.avatar)
                .bind(row.is_active && !deleted)
                .bind(row.record_version)
                .bind(row.created_at)
                .bind(row.updated_at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        applied.fetch_add(n as u64, Ordering::Relaxed);
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            tpl.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
        }
        consumer.commit(&tpl, CommitMode::Async)?;
    }
    Ok(())
}
