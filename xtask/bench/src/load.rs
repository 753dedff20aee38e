//! Figures under load: the service's routes against the baseline handlers,
//! driven by wrk.

use crate::{baseline, free_port, fresh_database, print, tansu, wait_port, Proc, Row};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::Duration;

const WRK_SECONDS: u32 = 6;

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
