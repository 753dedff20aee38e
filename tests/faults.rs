//! Faults, against real servers: writers racing on one row, PostgreSQL
//! stopped and started again under load (on a throwaway cluster of its own),
//! SIGTERM under load, and property tests (proptest) of the model checker and
//! of the service's JSON body parsing.

use airbnb_auth_service::topics::{
    DBEVENT_USER_GROUP_CREATED, INDEX_USER_GROUP_CREATED, ROUTE_USERGROUP_CREATED,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestCaseError, TestRunner};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tests::{
    auth_service, expect, free_port, service_binary, start_auth_service, Api, ServiceProcess,
    TestDb, ADMIN_EMAIL, ADMIN_PASSWORD,
};

// ---------------------------------------------------------------------------
// 1. Writers racing on one row
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_of_one_row_let_exactly_one_win() {
    let (server, db) = auth_service().await;
    let admin = server.admin().await;
    let created = expect(
        StatusCode::CREATED,
        &admin
            .post("/v1/usergroups", json!({ "groupName": "racers" }))
            .await,
    );
    let id = created["userGroup"]["id"].as_str().unwrap().to_string();
    assert_eq!(created["userGroup"]["recordVersion"], 1);
    let outbox_before = db.count("event_outbox").await;

    const WRITERS: usize = 8;
    let start = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..WRITERS {
        let (admin, start, path) = (admin.clone(), start.clone(), format!("/v1/usergroups/{id}"));
        writers.spawn(async move {
            start.wait().await;
            let answer = admin
                .patch(
                    &path,
                    json!({ "groupName": format!("racer {i}"), "recordVersion": 1 }),
                )
                .await;
            (i, answer)
        });
    }
    let answers = writers.join_all().await;

    let winners: Vec<&(usize, (StatusCode, Value))> = answers
        .iter()
        .filter(|(_, (s, _))| *s == StatusCode::OK)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one writer wins: {answers:?}");
    for (_, (status, body)) in answers.iter().filter(|(_, (s, _))| *s != StatusCode::OK) {
        assert_eq!(*status, StatusCode::CONFLICT, "a loser is a 409: {body}");
        assert_eq!(body["status"], "ERR");
        assert_eq!(body["statusCode"], "409");
        assert_eq!(body["errCode"], "STALE_RECORD_VERSION", "{body}");
    }
    let (winner, (_, won)) = winners[0];
    assert_eq!(won["userGroup"]["recordVersion"], 2);

    let row = expect(
        StatusCode::OK,
        &admin.get(&format!("/v1/usergroups/{id}")).await,
    );
    assert_eq!(row["userGroup"]["recordVersion"], 2, "one update landed");
    assert_eq!(row["userGroup"]["groupName"], format!("racer {winner}"));
    let (version,): (i32,) =
        sqlx::query_as("SELECT record_version FROM user_groups WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&mut db.connect().await)
            .await
            .unwrap();
    assert_eq!(version, 2);
    // One update's events (db, index, route) are all the outbox gained: the
    // losers wrote nothing (reading routes publish without the outbox).
    let updates: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM event_outbox WHERE event_key = $1 AND topic LIKE '%updated'",
    )
    .bind(&id)
    .fetch_one(&mut db.connect().await)
    .await
    .unwrap();
    assert_eq!(updates, 3, "the events of exactly one update");
    assert_eq!(db.count("event_outbox").await - outbox_before, 3);
}

// ---------------------------------------------------------------------------
// Load: writers creating userGroups until told to stop
// ---------------------------------------------------------------------------

/// One answer (or failure) of the load.
#[derive(Debug, Clone)]
struct Answer {
    /// The groupName the request sent.
    name: String,
    /// When the answer (or the failure) arrived.
    at: Instant,
    status: Option<StatusCode>,
    body: Value,
    error: Option<String>,
    timed_out: bool,
    connect_failed: bool,
}

impl Answer {
    fn created_id(&self) -> Option<String> {
        (self.status == Some(StatusCode::CREATED))
            .then(|| self.body["userGroup"]["id"].as_str().map(String::from))
            .flatten()
    }
}

struct Load {
    answers: Arc<Mutex<Vec<Answer>>>,
    stop: Arc<AtomicBool>,
    tasks: tokio::task::JoinSet<()>,
}

impl Load {
    /// `writers` loops creating groups through `api`; with `stop_on_error`,
    /// a writer stops at its first transport failure (the server is gone).
    fn start(api: &Api, writers: usize, stop_on_error: bool) -> Self {
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("client");
        for w in 0..writers {
            let (answers, stop, client) = (answers.clone(), stop.clone(), client.clone());
            let url = format!("{}/v1/usergroups", api.base);
            let token = api.token.clone().expect("the load runs signed in");
            tasks.spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let name = format!("load {w}-{i}");
                    let sent = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({ "groupName": name }))
                        .send()
                        .await;
                    let mut answer = match sent {
                        Ok(res) => {
                            let status = res.status();
                            match res.text().await {
                                Ok(text) => Answer {
                                    name: String::new(),
                                    at: Instant::now(),
                                    status: Some(status),
                                    body: serde_json::from_str(&text)
                                        .unwrap_or(Value::String(text)),
                                    error: None,
                                    timed_out: false,
                                    connect_failed: false,
                                },
                                Err(e) => failure(&e),
                            }
                        }
                        Err(e) => failure(&e),
                    };
                    answer.name = name;
                    let failed = answer.error.is_some();
                    answers.lock().unwrap().push(answer);
                    if failed && stop_on_error {
                        break;
                    }
                    if failed {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            });
        }
        Self {
            answers,
            stop,
            tasks,
        }
    }

    fn snapshot(&self) -> Vec<Answer> {
        self.answers.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the answers so far.
    async fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn(&[Answer]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let answers = self.snapshot();
            if done(&answers) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; answers so far: {}",
                summary(&answers)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        while self.tasks.join_next().await.is_some() {}
        self.snapshot()
    }
}

fn failure(e: &reqwest::Error) -> Answer {
    Answer {
        name: String::new(),
        at: Instant::now(),
        status: None,
        body: Value::Null,
        error: Some(format!("{e:?}")),
        timed_out: e.is_timeout(),
        connect_failed: e.is_connect(),
    }
}

/// Counts of answers by status, and of failures by kind.
fn summary(answers: &[Answer]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for a in answers {
        let key = match (a.status, a.timed_out, a.connect_failed) {
            (Some(s), _, _) => s.as_str().to_string(),
            (None, true, _) => "timeout".into(),
            (None, _, true) => "connect failed".into(),
            (None, _, _) => "no answer".into(),
        };
        *counts.entry(key).or_default() += 1;
    }
    format!("{counts:?}")
}

/// Every group the service answered 201 for exists, and every group in the
/// database has exactly its three creation events in the outbox.
async fn assert_groups_complete(database_url: &str, answers: &[Answer]) -> usize {
    let mut conn = PgConnection::connect(database_url)
        .await
        .expect("connect to check");
    let stored: BTreeSet<String> = sqlx::query_scalar("SELECT id::text FROM user_groups")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let answered: Vec<String> = answers.iter().filter_map(Answer::created_id).collect();
    for id in &answered {
        assert!(
            stored.contains(id),
            "group {id} was answered 201 but is not in the database"
        );
    }
    let events: Vec<(String, String)> = sqlx::query_as(
        "SELECT event_key, topic FROM event_outbox WHERE topic = ANY($1) ORDER BY event_key, topic",
    )
    .bind(vec![
        DBEVENT_USER_GROUP_CREATED,
        INDEX_USER_GROUP_CREATED,
        ROUTE_USERGROUP_CREATED,
    ])
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut by_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, topic) in events {
        by_group.entry(key).or_default().push(topic);
    }
    let mut expected = vec![
        DBEVENT_USER_GROUP_CREATED.to_string(),
        INDEX_USER_GROUP_CREATED.to_string(),
        ROUTE_USERGROUP_CREATED.to_string(),
    ];
    expected.sort();
    for id in &stored {
        assert_eq!(
            by_group.get(id),
            Some(&expected),
            "group {id} lacks its creation events (a half-written request)"
        );
    }
    for key in by_group.keys() {
        assert!(
            stored.contains(key),
            "events of a group that is not stored: {key}"
        );
    }
    answered.len()
}

// ---------------------------------------------------------------------------
// 2. PostgreSQL restarted under load
// ---------------------------------------------------------------------------

/// A PostgreSQL cluster of this test alone, in a temporary directory, so that
/// stopping it disturbs no other test. Stopped and removed on drop.
struct PgCluster {
    root: PathBuf,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
}

/// The newest installed PostgreSQL's programs (`PG_BIN` overrides).
fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return dir.into();
    }
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    versions.last().map_or_else(PathBuf::new, |v| {
        PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"))
    })
}

impl PgCluster {
    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    /// PostgreSQL refuses to run as root: as root, run its programs as `postgres`.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut c = if Self::is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        c.current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    fn run(&self, what: &str, mut c: Command) {
        let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            out.status.success(),
            "{what} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.root.join("log")).unwrap_or_default()
        );
    }

    fn create() -> Self {
        let root = std::env::temp_dir().join(format!(
            "svcgen-faults-pg-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&root).expect("cluster directory");
        let cluster = Self {
            data: root.join("data"),
            root,
            bin: pg_bin(),
            port: free_port(),
        };
        if Self::is_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&cluster.root)
                .status()
                .expect("chown");
            assert!(
                status.success(),
                "chown postgres {}",
                cluster.root.display()
            );
        }
        let mut initdb = cluster.command("initdb");
        initdb
            .arg("-D")
            .arg(&cluster.data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"]);
        cluster.run("initdb", initdb);
        cluster.start();
        cluster
    }

    fn start(&self) {
        let mut c = self.command("pg_ctl");
        c.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.root.join("log"));
        c.arg("-o").arg(format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.root.display()
        ));
        c.args(["-w", "-t", "30", "start"]);
        self.run("pg_ctl start", c);
    }

    /// A fast shutdown: sessions are ended, what was committed stays.
    fn stop(&self) {
        let mut c = self.command("pg_ctl");
        c.arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "-t", "30", "stop"]);
        self.run("pg_ctl stop", c);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let mut c = self.command("pg_ctl");
        c.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"]);
        let _ = c.status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

async fn readyz(base: &str) -> StatusCode {
    reqwest::Client::new()
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("readyz answers")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_is_503_then_heals_without_losing_writes() {
    let pg = tokio::task::block_in_place(PgCluster::create);
    let server = start_auth_service(&pg.url(), &[("DATABASE_ACQUIRE_TIMEOUT_MS", "500")]).await;
    let admin = server.admin().await;
    let load = Load::start(&admin, 3, false);
    let created = |a: &Answer| a.status == Some(StatusCode::CREATED);
    load.wait_for("groups created", Duration::from_secs(20), |a| {
        a.iter().filter(|a| created(a)).count() >= 10
    })
    .await;

    tokio::task::block_in_place(|| pg.stop());
    let stopped = Instant::now();
    load.wait_for(
        "503s while the database is down",
        Duration::from_secs(20),
        |a| {
            a.iter()
                .filter(|a| a.at > stopped && a.status == Some(StatusCode::SERVICE_UNAVAILABLE))
                .count()
                >= 6
        },
    )
    .await;
    assert_eq!(
        readyz(&server.base).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready while the database is down"
    );
    let (status, body) = admin.get("/v1/usergroups").await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a read too: {body}"
    );
    assert_eq!(body["errCode"], "SERVICE_UNAVAILABLE");

    tokio::task::block_in_place(|| pg.start());
    let restarted = Instant::now();
    load.wait_for(
        "groups created after the restart",
        Duration::from_secs(30),
        |a| a.iter().filter(|a| a.at > restarted && created(a)).count() >= 10,
    )
    .await;
    assert_eq!(readyz(&server.base).await, StatusCode::OK);
    let answers = load.stop().await;
    eprintln!("answers: {}", summary(&answers));

    for a in &answers {
        assert!(a.error.is_none(), "every request was answered: {a:?}");
        match a.status {
            Some(StatusCode::CREATED) => {}
            Some(StatusCode::SERVICE_UNAVAILABLE) => {
                assert_eq!(a.body["status"], "ERR", "{}", a.body);
                assert_eq!(a.body["statusCode"], "503", "{}", a.body);
                assert_eq!(a.body["errCode"], "SERVICE_UNAVAILABLE", "{}", a.body);
                assert!(a.body["requestId"].is_string(), "{}", a.body);
            }
            other => panic!("answered {other:?}, not 201 or 503: {}", a.body),
        }
    }
    let n = assert_groups_complete(&pg.url(), &answers).await;
    assert!(n >= 20, "{n} groups created");
    drop(server);
}

// ---------------------------------------------------------------------------
// 3. SIGTERM under load
// ---------------------------------------------------------------------------

/// A request whose headers are sent now and whose body is finished later:
/// in flight for as long as the test wants.
struct SlowRequest {
    stream: tokio::net::TcpStream,
    rest: Vec<u8>,
}

impl SlowRequest {
    async fn begin(port: u16, token: &str, body: &Value) -> Self {
        use tokio::io::AsyncWriteExt;
        let body = serde_json::to_vec(body).unwrap();
        let head = format!(
            "POST /v1/usergroups HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let half = body.len() / 2;
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body[..half]).await.unwrap();
        stream.flush().await.unwrap();
        Self {
            stream,
            rest: body[half..].to_vec(),
        }
    }

    /// Sends the rest of the body; the status and body of the answer.
    async fn finish(mut self) -> (u16, Value) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.stream
            .write_all(&self.rest)
            .await
            .expect("send the rest");
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), self.stream.read_to_end(&mut raw))
            .await
            .expect("the answer comes")
            .expect("read the answer");
        let text = String::from_utf8_lossy(&raw);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {text}"));
        let body = text
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        (status, body)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_in_flight_requests_and_exits_0() {
    let db = TestDb::create().await;
    let mut service = ServiceProcess::start("127.0.0.1", free_port(), &db.url, &[]).await;
    let (port, base) = (service.port, service.base.clone());
    let api = Api {
        base,
        client: reqwest::Client::new(),
        token: None,
    };
    let admin = api.admin().await;
    let token = admin.token.clone().unwrap();

    let load = Load::start(&admin, 6, true);
    load.wait_for("groups created", Duration::from_secs(20), |a| {
        a.iter()
            .filter(|a| a.status == Some(StatusCode::CREATED))
            .count()
            >= 20
    })
    .await;
    let slow = SlowRequest::begin(port, &token, &json!({ "groupName": "in flight" })).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    service.sigterm();
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (slow_status, slow_body) = slow.finish().await;
    let exit = tokio::time::timeout(Duration::from_secs(10), service.child.wait())
        .await
        .unwrap_or_else(|_| panic!("no exit 10 s after SIGTERM:\n{}", service.log()))
        .expect("wait");
    let took = signalled.elapsed();
    let answers = load.stop().await;
    eprintln!("exit {exit} after {took:?}; answers: {}", summary(&answers));
    for a in answers
        .iter()
        .filter(|a| a.error.is_some() && !a.connect_failed)
    {
        eprintln!("unanswered: {:?}", a.error);
    }

    assert!(
        exit.success(),
        "exit status 0, not {exit}:\n{}",
        service.log()
    );
    assert!(took < Duration::from_secs(5), "exited after {took:?}");
    assert_eq!(
        slow_status, 201,
        "the request in flight at SIGTERM finished: {slow_body}"
    );
    for a in &answers {
        if let Some(status) = a.status {
            assert_eq!(
                status,
                StatusCode::CREATED,
                "every answer is a 201: {}",
                a.body
            );
        } else {
            // The server stopped accepting: a connection refused, or a
            // keep-alive connection closed before the request was read.
            assert!(!a.timed_out, "no request hangs: {a:?}");
        }
    }
    assert!(
        answers.iter().any(|a| a.error.is_some()),
        "the load ran into the shutdown"
    );
    let mut all = answers.clone();
    all.push(Answer {
        name: "in flight".into(),
        at: Instant::now(),
        status: Some(StatusCode::CREATED),
        body: slow_body,
        error: None,
        timed_out: false,
        connect_failed: false,
    });
    let n = assert_groups_complete(&db.url, &all).await;
    assert!(n >= 21, "{n} groups created");
    // A request without an answer was never read: had the service done it,
    // its answer would have been sent before the connection closed.
    let unanswered: Vec<&str> = answers
        .iter()
        .filter(|a| a.error.is_some())
        .map(|a| a.name.as_str())
        .collect();
    let done: Vec<String> =
        sqlx::query_scalar("SELECT group_name FROM user_groups WHERE group_name = ANY($1)")
            .bind(&unanswered)
            .fetch_all(&mut db.connect().await)
            .await
            .unwrap();
    assert!(done.is_empty(), "done but never answered: {done:?}");
}

/// `<binary> healthcheck` with `HTTP_ADDR` set to `addr`: its exit code and stderr.
async fn healthcheck(db: &TestDb, addr: &str) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(service_binary())
        .arg("healthcheck")
        .env("HTTP_ADDR", addr)
        .env("DATABASE_URL", &db.url)
        .env_remove("SUPERADMIN_EMAIL")
        .env_remove("SUPERADMIN_PASSWORD")
        .envs(tests::child_log_env())
        .output()
        .await
        .expect("the healthcheck runs");
    tests::keep_output("healthcheck", &out);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A relay that cannot reach its broker for longer than `READY_FAILING_SECS`
/// takes the replica out of rotation with the reason; the process stays
/// alive (`/healthz`), and reads still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_failing_too_long_turns_readiness_off_with_the_reason() {
    let db = TestDb::create().await;
    let nowhere = format!("127.0.0.1:{}", free_port());
    let service = ServiceProcess::start(
        "127.0.0.1",
        free_port(),
        &db.url,
        &[
            ("KAFKA_BROKERS", nowhere.as_str()),
            ("KAFKA_MESSAGE_TIMEOUT_MS", "1000"),
            ("READY_FAILING_SECS", "1"),
        ],
    )
    .await;
    let api = service.api();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, body) = loop {
        let answer = api.get("/readyz").await;
        if answer.0 != StatusCode::OK || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{body}\n{}",
        service.log()
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("outbox relay has been failing"), "{body}");
    assert_eq!(api.get("/healthz").await.0, StatusCode::OK);
    let admin = api.admin().await;
    expect(StatusCode::OK, &admin.get("/v1/users").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_subcommand_is_0_when_ready_and_1_on_a_closed_port() {
    let db = TestDb::create().await;
    // Listening on every interface: the probe goes through the loopback.
    let service = ServiceProcess::start("0.0.0.0", free_port(), &db.url, &[]).await;
    let (code, said) = healthcheck(&db, &format!("0.0.0.0:{}", service.port)).await;
    assert_eq!(code, Some(0), "{said}\n{}", service.log());
    let closed = free_port();
    let (code, said) = healthcheck(&db, &format!("127.0.0.1:{closed}")).await;
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("not ready") && said.contains("connecting"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_off_while_draining_then_cuts_at_the_limit_and_exits_0() {
    let db = TestDb::create().await;
    let settings = [("SHUTDOWN_DRAIN_SECS", "2"), ("SHUTDOWN_TIMEOUT_SECS", "2")];
    let mut service = ServiceProcess::start("127.0.0.1", free_port(), &db.url, &settings).await;
    let api = Api {
        base: service.base.clone(),
        client: reqwest::Client::new(),
        token: None,
    };
    let admin = api.admin().await;
    // Half a body sent: the request is in flight, and stays so.
    let stuck = SlowRequest::begin(
        service.port,
        admin.token.as_deref().unwrap(),
        &json!({ "groupName": "never finished" }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    service.sigterm();
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Draining: still accepting, and not ready, with the reason.
    let (status, body) = api.anonymous().get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["errCode"], "SERVICE_UNAVAILABLE", "{body}");
    assert_eq!(body["message"], "the service is shutting down", "{body}");
    let (code, said) = healthcheck(&db, &format!("127.0.0.1:{}", service.port)).await;
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("503"), "{said}");
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "still within the drain"
    );

    // After the drain the listener is closed.
    tokio::time::sleep(Duration::from_secs(2) - signalled.elapsed() + Duration::from_millis(500))
        .await;
    let refused = reqwest::Client::new()
        .get(format!("{}/readyz", service.base))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        refused.is_err_and(|e| e.is_connect()),
        "the listener is closed"
    );

    // The stuck request holds the shutdown only until the limit.
    let exit = tokio::time::timeout(Duration::from_secs(10), service.child.wait())
        .await
        .unwrap_or_else(|_| panic!("no exit 10 s after SIGTERM:\n{}", service.log()))
        .expect("wait");
    let took = signalled.elapsed();
    assert!(
        exit.success(),
        "exit status 0, not {exit}:\n{}",
        service.log()
    );
    assert!(
        took >= Duration::from_millis(3_800) && took < Duration::from_secs(7),
        "drain 2 s + limit 2 s, then exit: {took:?}\n{}",
        service.log()
    );
    assert!(
        service.log().contains("shutdown time limit"),
        "{}",
        service.log()
    );
    drop(stuck);
}

// ---------------------------------------------------------------------------
// 4a. Property tests: the model checker never panics
// ---------------------------------------------------------------------------

/// `cases` cases, or `PROPTEST_CASES` of them for a longer search; failures
/// are not persisted (a found case becomes an explicit test here instead).
fn runner(cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    TestRunner::new(PropConfig {
        cases,
        failure_persistence: None,
        ..PropConfig::default()
    })
}

/// Runs `check` for `cases` values of `strategy`; a failure (or panic) is
/// shrunk and reported with its smallest input.
fn check_all<S: Strategy>(
    what: &str,
    cases: u32,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    if let Err(e) = runner(cases).run(&strategy, check) {
        panic!("{what}: {e}");
    }
}

/// The checker must answer every text with a model or with errors; a model
/// it accepts must go through the rest of the pipeline too: plan, templates,
/// contracts, and the migration and contract diffs against `original`.
fn check_model_does_not_panic(text: &str, original: Option<&generator::plan::Plan>) -> bool {
    let loaded = match generator::check_model("m.yaml", text) {
        Ok(loaded) => loaded,
        Err(errors) => {
            let _ = errors.to_string();
            return false;
        }
    };
    let plan = generator::plan::plan("m.yaml", &loaded.model);
    let _ = generator::render::render(&plan);
    let openapi = generator::openapi::document(&plan, "");
    let _ = generator::asyncapi::document(&plan, "", &openapi);
    let schema = generator::migrate::schema(&plan);
    let _ = generator::migrate::initial(&plan, &schema);
    if let Some(old) = original {
        let _ = generator::migrate::diff(&generator::migrate::schema(old), &schema);
        let _ = generator::contract::report(&generator::contract::diff(old, &plan));
    }
    true
}

/// YAML-ish lines: the tokens of models, YAML's syntax and awkward text.
fn yamlish() -> impl Strategy<Value = String> {
    const TOKENS: &[&str] = &[
        "service:",
        "dataObjects:",
        "routes:",
        "fields:",
        "type: String",
        "type: ID",
        "required: true",
        "maxLength: 3",
        "minLength: 9",
        "object: book",
        "action: get",
        "method: GET",
        "path: /x/{id}",
        "auth: public",
        "auth: { roles: [admin] }",
        "- ",
        ": ",
        "? ",
        "---",
        "...",
        "&a ",
        "*a",
        "!!str ",
        "!!int ",
        "{",
        "}",
        "[",
        "]",
        ",",
        "'",
        "\"",
        "#",
        "|",
        ">-",
        "~",
        "null",
        "1e400",
        "-0",
        "0x1F",
        "\t",
        "é",
        "日本",
        "\u{0}",
        "\u{feff}",
        "\r",
        "book",
        "title",
        "x",
        "  ",
    ];
    prop::collection::vec(
        (
            0usize..5,
            prop::collection::vec(prop::sample::select(TOKENS), 1..4),
        ),
        0..24,
    )
    .prop_map(|lines| {
        lines
            .into_iter()
            .map(|(indent, tokens)| format!("{}{}", "  ".repeat(indent), tokens.concat()))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(prop::sample::Index),
    DuplicateLine(prop::sample::Index),
    ReplaceChar(prop::sample::Index, char),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let replacement = prop_oneof![
        prop::sample::select(vec![
            ':', '-', ' ', '\n', '"', '\'', '{', '}', '[', ']', '&', '*', '!', '#', '\t', '0', 'x',
            '|', '>', '%', '@', '`',
        ]),
        any::<char>(),
    ];
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Mutation::DeleteLine),
        any::<prop::sample::Index>().prop_map(Mutation::DuplicateLine),
        (any::<prop::sample::Index>(), replacement).prop_map(|(i, c)| Mutation::ReplaceChar(i, c)),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for m in mutations {
        match m {
            Mutation::DeleteLine(i) if !lines.is_empty() => {
                lines.remove(i.index(lines.len()));
            }
            Mutation::DuplicateLine(i) if !lines.is_empty() => {
                let i = i.index(lines.len());
                lines.insert(i, lines[i].clone());
            }
            Mutation::ReplaceChar(i, c) => {
                let joined = lines.join("\n");
                let mut chars: Vec<char> = joined.chars().collect();
                if !chars.is_empty() {
                    let i = i.index(chars.len());
                    chars[i] = *c;
                }
                lines = chars
                    .into_iter()
                    .collect::<String>()
                    .split('\n')
                    .map(String::from)
                    .collect();
            }
            _ => {}
        }
    }
    lines.join("\n") + "\n"
}

fn model_text(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path))
        .expect("the model")
}

#[test]
fn the_model_checker_never_panics_on_arbitrary_text() {
    check_all("arbitrary strings", 256, any::<String>(), |text| {
        check_model_does_not_panic(&text, None);
        Ok(())
    });
    check_all("YAML-ish text", 256, yamlish(), |text| {
        check_model_does_not_panic(&text, None);
        Ok(())
    });
}

#[test]
fn the_model_checker_never_panics_on_mutated_models() {
    for model in ["tests/models/library.yaml", "model/auth-service.yaml"] {
        let text = model_text(model);
        let original = generator::plan_str(model, &text).expect("the model itself is valid");
        let cases = if model.starts_with("tests/") { 256 } else { 64 };
        let accepted = std::sync::atomic::AtomicUsize::new(0);
        check_all(
            model,
            cases,
            prop::collection::vec(mutation(), 1..6),
            |mutations| {
                if check_model_does_not_panic(&mutate(&text, &mutations), Some(&original)) {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            },
        );
        eprintln!(
            "{model}: {} mutated models were valid and went through the pipeline",
            accepted.into_inner()
        );
    }
}

// ---------------------------------------------------------------------------
// 4b. Property tests: JSON bodies never break the service
// ---------------------------------------------------------------------------

fn json_string() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => any::<String>(),
        4 => "\\PC{1,12}",
        1 => Just("\u{0}".to_string()),
        1 => "[a-z]{0,3}\u{0}[a-z]{0,3}",
        1 => Just("\\u0000".to_string()),
        1 => "[a-zé日🎉 ]{95,105}",
        1 => "[a-z]{1,8}@[a-z]{1,8}\\.[a-z]{2,3}",
        1 => Just(String::new()),
    ]
}

fn json_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (0i64..4).prop_map(Value::from),
    ]
}

/// Any JSON value: nested objects and arrays of strings, numbers, bools, nulls.
fn json_value(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_number(),
        json_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((json_key(keys), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A key: mostly the route's own fields, so that bodies reach validation and
/// the database, sometimes anything.
fn json_key(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        9 => prop::sample::select(keys).prop_map(String::from),
        1 => json_string(),
    ]
}

/// A field's value: mostly of a type some field has, sometimes anything.
fn field_value(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => json_string().prop_map(Value::String),
        1 => prop::sample::select(vec!["en", "tr", "de", "https://x/a.png", "Ann"])
            .prop_map(Value::from),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => (-2i64..4).prop_map(Value::from),
        1 => Just(Value::Null),
        1 => json_value(keys),
    ]
}

/// An object of the route's fields.
fn json_object(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::collection::vec((json_key(keys), field_value(keys)), 0..5)
        .prop_map(|kv| Value::Object(kv.into_iter().collect()))
}

/// Raw bytes: arbitrary ones, and JSON texts with bytes changed or cut.
fn raw_body(keys: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        (
            json_object(keys),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            any::<prop::sample::Index>(),
            any::<bool>(),
        )
            .prop_map(|(v, changes, cut, truncate)| {
                let mut bytes = serde_json::to_vec(&v).unwrap();
                for (i, b) in changes {
                    let i = i.index(bytes.len());
                    bytes[i] = b;
                }
                if truncate {
                    bytes.truncate(cut.index(bytes.len() + 1));
                }
                bytes
            }),
    ]
}

/// A status below 500 and a body in the envelope, OK or ERR.
fn check_answer(status: StatusCode, text: &str) -> Result<(), String> {
    if status.is_server_error() {
        return Err(format!("answered {status}: {text}"));
    }
    let body: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e}): {text}"))?;
    match body["status"].as_str() {
        Some("OK") if status.is_success() => Ok(()),
        Some("ERR") if !status.is_success() => {
            if body["statusCode"] != status.as_str() || !body["errCode"].is_string() {
                return Err(format!("a broken error envelope for {status}: {body}"));
            }
            Ok(())
        }
        _ => Err(format!("not an envelope for {status}: {body}")),
    }
}

/// One in-process service and the admin's session, for many cases.
struct Target {
    rt: tokio::runtime::Runtime,
    admin: Api,
    admin_id: String,
    /// How many answers of each status, to show what the cases reached.
    statuses: Mutex<BTreeMap<u16, usize>>,
    _server: tests::Running,
    _db: TestDb,
}

impl Target {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (server, db) = rt.block_on(auth_service());
        let session = rt.block_on(server.login(ADMIN_EMAIL, ADMIN_PASSWORD));
        let admin = server.with_token(session["accessToken"].as_str().unwrap());
        let admin_id = session["userId"].as_str().unwrap().to_string();
        Self {
            rt,
            admin,
            admin_id,
            statuses: Mutex::default(),
            _server: server,
            _db: db,
        }
    }

    fn send(&self, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, String) {
        self.rt.block_on(async {
            let res = self
                .admin
                .client
                .request(method, format!("{}{path}", self.admin.base))
                .bearer_auth(self.admin.token.as_deref().unwrap_or_default())
                .header("content-type", "application/json")
                .timeout(Duration::from_secs(10))
                .body(body)
                .send()
                .await
                .expect("the service answers");
            let status = res.status();
            (status, res.text().await.unwrap_or_default())
        })
    }

    fn routes(&self) -> [(Method, String, &'static [&'static str]); 2] {
        [
            (
                Method::POST,
                "/v1/usergroups".to_string(),
                &["groupName", "avatar"],
            ),
            (
                Method::PATCH,
                format!("/v1/users/{}", self.admin_id),
                &[
                    "fullname",
                    "avatar",
                    "emailVerified",
                    "preferredLanguage",
                    "bio",
                    "recordVersion",
                ],
            ),
        ]
    }

    fn check(&self, method: &Method, path: &str, body: Vec<u8>) -> Result<(), TestCaseError> {
        let (status, text) = self.send(method.clone(), path, body);
        *self
            .statuses
            .lock()
            .unwrap()
            .entry(status.as_u16())
            .or_default() += 1;
        check_answer(status, &text)
            .map_err(|e| TestCaseError::fail(format!("{method} {path}: {e}")))
    }
}

#[test]
fn json_bodies_never_break_the_service() {
    let target = Target::start();
    for (method, path, keys) in target.routes() {
        check_all(
            &format!("{method} {path}: any JSON value"),
            64,
            json_value(keys),
            |v| target.check(&method, &path, serde_json::to_vec(&v).unwrap()),
        );
        check_all(
            &format!("{method} {path}: objects of its fields"),
            64,
            json_object(keys),
            |v| target.check(&method, &path, serde_json::to_vec(&v).unwrap()),
        );
        check_all(
            &format!("{method} {path}: raw bytes"),
            64,
            raw_body(keys),
            |bytes| target.check(&method, &path, bytes),
        );
    }
    let statuses = target.statuses.lock().unwrap().clone();
    eprintln!("answers by status: {statuses:?}");
    assert!(
        statuses.keys().any(|s| *s < 300),
        "some bodies were valid and written: {statuses:?}"
    );
}

/// Bodies that are easy to get wrong, kept explicit (and every case proptest
/// ever found is added here).
#[test]
fn awkward_json_bodies_are_answered_in_the_envelope() {
    let target = Target::start();
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let awkward: Vec<Vec<u8>> = vec![
        br#"{"groupName": "\ud800"}"#.to_vec(),
        br#"{"groupName": "\udc00\ud800"}"#.to_vec(),
        br#"{"groupName": "a\u0000b"}"#.to_vec(),
        br#"{"groupName": "a\\u0000b"}"#.to_vec(),
        br#"{"fullname": "\u0000"}"#.to_vec(),
        br#"{"groupName": "a", "groupName": "b"}"#.to_vec(),
        br#"{"recordVersion": 1e400}"#.to_vec(),
        br#"{"recordVersion": 99999999999999999999}"#.to_vec(),
        br#"{"recordVersion": -2147483649}"#.to_vec(),
        br#"{"bio": "x"} trailing"#.to_vec(),
        b"\xef\xbb\xbf{\"groupName\": \"bom\"}".to_vec(),
        b"{\"groupName\": \"\xff\xfe\"}".to_vec(),
        b"{\"groupName\": \"\xc3\"}".to_vec(),
        deep.into_bytes(),
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\"groupName\"".to_vec(),
        format!("{{\"groupName\": \"{}\"}}", "é".repeat(100)).into_bytes(),
        format!("{{\"groupName\": \"{}\"}}", "é".repeat(101)).into_bytes(),
        format!("{{\"bio\": \"{}\"}}", "x".repeat(300_000)).into_bytes(),
    ];
    for (method, path, _) in target.routes() {
        for body in &awkward {
            if let Err(e) = target.check(&method, &path, body.clone()) {
                panic!(
                    "{}: {e}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                );
            }
        }
    }
}

/// Found while writing the body properties: the NUL check looked for the six bytes
/// `\u0000` anywhere, so the text `\u0000` (an escaped backslash, then
/// `u0000`) was refused as if it held a NUL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escaped_backslash_before_u0000_is_text_not_a_nul() {
    let (server, _db) = auth_service().await;
    let admin = server.admin().await;
    for text in ["a\\u0000b", "\\u0000", "\\\\u0000"] {
        let created = expect(
            StatusCode::CREATED,
            &admin
                .post("/v1/usergroups", json!({ "groupName": text }))
                .await,
        );
        assert_eq!(created["userGroup"]["groupName"], text);
    }
    for text in ["a\u{0}b", "\u{0}", "x\\\u{0}"] {
        let refused = expect(
            StatusCode::BAD_REQUEST,
            &admin
                .post("/v1/usergroups", json!({ "groupName": text }))
                .await,
        );
        assert_eq!(refused["errCode"], "BAD_REQUEST");
        assert!(
            refused["message"].as_str().unwrap().contains("NUL"),
            "{refused}"
        );
    }
}
