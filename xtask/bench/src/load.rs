//! Figures under load: the outbox relay against a bare producer, and the
//! service's routes against the baseline handlers, driven by wrk.

use crate::{baseline, free_port, fresh_database, print, tansu, wait_port, Proc, Row};
use airbnb_auth_service::config::Config;
use airbnb_auth_service::spec::KAFKA;
use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use svcgen_runtime::outbox::{Outbox, Pending, Sink};

/// Events per relay measurement: enough that the timing's 10 ms polling is noise.
const EVENTS: usize = 20_000;
const WRK_SECONDS: u32 = 6;

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

/// What wrk measured.
pub(crate) struct Measured {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn duration_ms(text: &str) -> f64 {
    let (num, factor) = if let Some(v) = text.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = text.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = text.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (text, 1.0)
    };
    num.parse::<f64>().unwrap_or(f64::NAN) * factor
}

/// Runs wrk against `url`; `script` is Lua for POST bodies.
fn wrk_command(
    url: &str,
    connections: u32,
    token: Option<&str>,
    script: Option<&str>,
    seconds: u32,
) -> Result<Command> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(lua) = script {
        let path = std::env::temp_dir().join(format!(
            "svcgen-bench-{}.lua",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(&path, lua)?;
        cmd.arg("-s").arg(path);
    }
    cmd.arg(url).stdout(Stdio::piped()).stderr(Stdio::piped());
    Ok(cmd)
}

fn parse_wrk(out: &str) -> Result<Measured> {
    let mut m = Measured {
        rps: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
    };
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            m.rps = v.trim().parse().unwrap_or(f64::NAN);
        } else if let Some(v) = line.strip_prefix("50%") {
            m.p50_ms = duration_ms(v.trim());
        } else if let Some(v) = line.strip_prefix("99%") {
            m.p99_ms = duration_ms(v.trim());
        }
    }
    if m.rps.is_nan() {
        bail!("wrk printed no rate:\n{out}");
    }
    if out.contains("Non-2xx or 3xx responses") {
        bail!("wrk saw error answers:\n{out}");
    }
    Ok(m)
}

pub(crate) async fn wrk(
    url: &str,
    connections: u32,
    token: Option<&str>,
    script: Option<&str>,
) -> Result<Measured> {
    wrk_for(url, connections, token, script, WRK_SECONDS).await
}

async fn wrk_for(
    url: &str,
    connections: u32,
    token: Option<&str>,
    script: Option<&str>,
    seconds: u32,
) -> Result<Measured> {
    let out = tokio::process::Command::from(wrk_command(url, connections, token, script, seconds)?)
        .output()
        .await
        .context("running wrk (apt-get install wrk)")?;
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

/// Creates users with emails unique to this run (`tag`): the two runs share a database.
fn create_lua(tag: &str) -> String {
    format!(
        r#"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{{"email":"{tag}%d-%d@x.io","password":"correct horse battery","fullname":"B"}}', counter, math.random(1, 2000000000))
  return wrk.format(nil, nil, nil, body)
end
"#
    )
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// The largest resident size of `pid`, sampled every 50 ms until `stop`.
async fn sample_rss(pid: u32, mut stop: tokio::sync::watch::Receiver<bool>) -> f64 {
    let mut peak: f64 = 0.0;
    while !*stop.borrow() {
        peak = peak.max(rss_mib(pid));
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(50)) => {},
            _ = stop.changed() => {},
        }
    }
    peak
}

pub(crate) fn pair(figure: &str, ours: &Measured, base: &Measured, target: f64) {
    print(Row {
        figure: &format!("{figure}: req/s"),
        ours: ours.rps,
        baseline: Some(base.rps),
        unit: "req/s",
        target: &format!(">= {target}x"),
        met: Some(ours.rps >= target * base.rps),
    });
    print(Row {
        figure: &format!("{figure}: p50 (ms)"),
        ours: ours.p50_ms,
        baseline: Some(base.p50_ms),
        unit: "ms",
        target: "",
        met: None,
    });
    print(Row {
        figure: &format!("{figure}: p99 (ms)"),
        ours: ours.p99_ms,
        baseline: Some(base.p99_ms),
        unit: "ms",
        target: "",
        met: None,
    });
}

/// The service under test, with its broker, serving `base`; killed when dropped.
pub(crate) struct Service {
    pub(crate) base: String,
    url: String,
    svc: Proc,
    /// `127.0.0.1:<port>` of its broker, for services beside it.
    pub(crate) brokers: String,
    broker: Proc,
}

fn login_body() -> Value {
    json!({ "email": "root@example.com", "password": "root admin password" })
}

/// Starts tansu, a fresh database and the service, and signs in as the superadmin.
pub(crate) async fn start_service(http: &reqwest::Client) -> Result<(Service, Value)> {
    let bin = std::env::var("BENCH_SERVICE_BIN")
        .context("BENCH_SERVICE_BIN: run through `cargo xtask bench`")?;
    let broker_port = free_port();
    let broker = tansu(broker_port)?;
    wait_port(broker_port).await?;
    let url = fresh_database().await?;
    let port = free_port();
    let svc = Proc(
        Command::new(&bin)
            .env("DATABASE_URL", &url)
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("KAFKA_BROKERS", format!("127.0.0.1:{broker_port}"))
            .env("SUPERADMIN_EMAIL", "root@example.com")
            .env("SUPERADMIN_PASSWORD", "root admin password")
            // Throttling out of the way: the bench logs in thousands of times.
            .env("LOGIN_PER_ACCOUNT", "1000000000")
            .env("LOGIN_PER_ADDRESS", "1000000000")
            .env("PUBLIC_WRITES_PER_ADDRESS", "1000000000")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .context("starting the service")?,
    );
    wait_port(port).await?;
    let base = format!("http://127.0.0.1:{port}");
    let session: Value = http
        .post(format!("{base}/v1/login"))
        .json(&login_body())
        .send()
        .await?
        .json()
        .await?;
    Ok((
        Service {
            base,
            url,
            svc,
            brokers: format!("127.0.0.1:{broker_port}"),
            broker,
        },
        session,
    ))
}

pub async fn service_figures() -> Result<()> {
    let http = reqwest::Client::new();
    let (service, session) = start_service(&http).await?;
    let (base, url, svc) = (&service.base, &service.url, &service.svc);
    let token = session["session"]["accessToken"]
        .as_str()
        .context("login")?
        .to_string();
    let mut ids = Vec::new();
    for i in 0..50 {
        let body = json!({ "email": format!("seed{i}@x.io"), "password": "correct horse battery", "fullname": "Seed" });
        let created: Value = http
            .post(format!("{base}/v1/users"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        ids.push(
            created["user"]["id"]
                .as_str()
                .context("seed user")?
                .to_string(),
        );
    }
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(10)
        .connect(url)
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bport = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, baseline::router(db)).await });
    let bbase = format!("http://127.0.0.1:{bport}");

    let id = &ids[0];
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(sample_rss(svc.0.id(), stop_rx));
    let ours = wrk(&format!("{base}/v1/users/{id}"), 16, Some(&token), None).await?;
    let _ = stop.send(true);
    let rss = sampler.await.unwrap_or(f64::NAN);
    let theirs = wrk(&format!("{bbase}/users/{id}"), 16, None, None).await?;
    pair("getUser", &ours, &theirs, 0.8);
    print(Row {
        figure: "service: peak RSS during the getUser load (MiB)",
        ours: rss,
        baseline: None,
        unit: "MiB",
        target: "< 64 MiB",
        met: Some(rss < 64.0),
    });

    let ours = wrk(
        &format!("{base}/v1/users?pageRowCount=20"),
        16,
        Some(&token),
        None,
    )
    .await?;
    let theirs = wrk(&format!("{bbase}/users"), 16, None, None).await?;
    pair("listUsers (20 rows)", &ours, &theirs, 0.8);

    let ours = wrk(
        &format!("{base}/v1/users"),
        8,
        Some(&token),
        Some(&create_lua("ours")),
    )
    .await?;
    let theirs = wrk(
        &format!("{bbase}/users"),
        8,
        None,
        Some(&create_lua("base")),
    )
    .await?;
    pair("createUser (argon2id + outbox)", &ours, &theirs, 0.6);

    login_rounds(&service, &token, id).await?;
    let health: Value = http
        .get(format!("{base}/healthz"))
        .send()
        .await?
        .json()
        .await?;
    print(Row {
        figure: "read events dropped (bounded producer queue)",
        ours: health["readEventsDropped"].as_f64().unwrap_or(f64::NAN),
        baseline: None,
        unit: "ev",
        target: "counted, bounded",
        met: None,
    });
    drop(service);
    Ok(())
}

fn login_lua() -> String {
    format!(
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = '{}'\n",
        login_body()
    )
}

/// A login flood beside readers: the readers' p99 (getUser `id`).
async fn login_flood(base: &str, token: &str, id: &str) -> Result<()> {
    let login_lua = login_lua();
    let flood = tokio::spawn({
        let (url, lua) = (format!("{base}/v1/login"), login_lua.clone());
        async move { wrk(&url, 8, None, Some(&lua)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let readers = wrk(&format!("{base}/v1/users/{id}"), 4, Some(token), None).await?;
    let _ = flood.await;
    print(Row {
        figure: "getUser p99 during a login flood (ms)",
        ours: readers.p99_ms,
        baseline: None,
        unit: "ms",
        target: "< 50 ms",
        met: Some(readers.p99_ms < 50.0),
    });
    Ok(())
}

/// CPU seconds (user + system) that process `pid` has used.
fn cpu_secs(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // The fields after the command name: utime and stime are the 12th and 13th.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        })
        .map_or(0.0, |ticks| ticks / 100.0)
}

/// The CPU seconds the service's PostgreSQL backends have used.
async fn backends_cpu(db: &mut sqlx::PgConnection) -> Result<f64> {
    let pids: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(db)
    .await?;
    Ok(pids.iter().map(|p| cpu_secs(&p.to_string())).sum())
}

/// Only the login figures, on a fresh service (`bench login`).
pub async fn login_figures() -> Result<()> {
    let http = reqwest::Client::new();
    let (service, session) = start_service(&http).await?;
    let token = session["session"]["accessToken"]
        .as_str()
        .context("login")?;
    let user = session["session"]["userId"].as_str().context("login")?;
    login_rounds(&service, token, user).await
}

/// The login figures: the rate beside argon2id verification alone, then the
/// readers' p99 (getUser `id`) during a login flood. Other load on the
/// machine moves both rates, so ours and argon2id alone are measured in
/// alternating rounds and the ratio is the median of the rounds' ratios; each
/// round also shows the CPU milliseconds a login costs where it is spent.
async fn login_rounds(service: &Service, token: &str, id: &str) -> Result<()> {
    use sqlx::Connection;
    const ROUNDS: usize = 5;
    const ROUND_SECONDS: u32 = 3;
    let mut db = sqlx::PgConnection::connect(&service.url).await?;
    let (svc, broker) = (
        service.svc.0.id().to_string(),
        service.broker.0.id().to_string(),
    );
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let url = format!("{}/v1/login", service.base);
    let lua = login_lua();
    let (mut ours, mut alone, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let before = (
            cpu_secs(&svc),
            backends_cpu(&mut db).await?,
            cpu_secs(&broker),
        );
        let m = wrk_for(&url, 8, None, Some(&lua), ROUND_SECONDS).await?;
        let after = (
            cpu_secs(&svc),
            backends_cpu(&mut db).await?,
            cpu_secs(&broker),
        );
        let logins = m.rps * f64::from(ROUND_SECONDS);
        let per_login = |a: f64, b: f64| (a - b) * 1000.0 / logins;
        let own = cpu_secs("self");
        let verify = baseline::verify_rate(workers, u64::from(ROUND_SECONDS)).await;
        let per_verify = (cpu_secs("self") - own) * 1000.0 / (verify * f64::from(ROUND_SECONDS));
        println!(
            "  round {round}: login {:.1} req/s, verify alone {verify:.1}/s, {:.2}x; CPU ms a login: service {:.1}, postgres {:.1}, tansu {:.1}; a verify alone {per_verify:.1}",
            m.rps,
            m.rps / verify,
            per_login(after.0, before.0),
            per_login(after.1, before.1),
            per_login(after.2, before.2),
        );
        ours.push(m.rps);
        alone.push(verify);
        ratios.push(m.rps / verify);
    }
    let ratio = crate::median(ratios);
    print(Row {
        figure: &format!("login: req/s vs argon2id verify alone ({workers} at once)"),
        ours: crate::median(ours),
        baseline: Some(crate::median(alone)),
        unit: "req/s",
        target: &format!(">= 0.9x (median of {ROUNDS} rounds: {ratio:.2}x)"),
        met: Some(ratio >= 0.9),
    });
    login_flood(&service.base, token, id).await
}
