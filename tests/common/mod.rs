//! Shared helpers for end-to-end tests: throwaway databases on the local
//! PostgreSQL and the generated service running on a free port.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::future::Future;

mod capture;
pub use capture::{
    capture_logs, child_log_env, keep_output, log_dir, record_json, record_secret, record_settings,
    LOG_DIR_VAR,
};

/// Throwaway databases on the local PostgreSQL, one per test.
pub use svcgen_runtime::testing::TestDb;

/// The bootstrap super-admin every test service starts with.
pub const ADMIN_EMAIL: &str = "root@example.com";
pub const ADMIN_PASSWORD: &str = "root admin password";

/// A way to call a running service, anonymously or with a bearer token.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    pub token: Option<String>,
}

impl Api {
    /// The same service, called with `token`.
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    /// The same service, called anonymously.
    pub fn anonymous(&self) -> Api {
        Api {
            token: None,
            ..self.clone()
        }
    }

    /// Sends a request and returns the status and the JSON body (Null when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            record_secret("access token", t);
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            record_json(&b);
            req = req.json(&b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.expect("request failed");
        let status = res.status();
        for cookie in res.headers().get_all(reqwest::header::SET_COOKIE) {
            record_set_cookie(cookie.to_str().unwrap_or_default());
        }
        let text = res.text().await.expect("read body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        record_json(&json);
        (status, json)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body), &[]).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body), &[]).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None, &[]).await
    }

    /// Logs in and returns the session of the answer (tokens included).
    pub async fn login(&self, email: &str, password: &str) -> Value {
        let (status, body) = self
            .anonymous()
            .post(
                "/v1/login",
                serde_json::json!({ "email": email, "password": password }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login of {email} failed: {body}");
        body["session"].clone()
    }

    /// The service as `email`, logged in.
    pub async fn as_user(&self, email: &str, password: &str) -> Api {
        let session = self.login(email, password).await;
        self.with_token(session["accessToken"].as_str().expect("access token"))
    }

    /// The service as the bootstrap super-admin.
    pub async fn admin(&self) -> Api {
        self.as_user(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }
}

/// Records the value of a `Set-Cookie` header (session cookies carry tokens).
pub fn record_set_cookie(header: &str) {
    let pair = header.split(';').next().unwrap_or_default();
    if let Some((name, value)) = pair.split_once('=') {
        record_secret(&format!("cookie {}", name.trim()), value.trim());
    }
}

/// A running service; calls through it are anonymous.
pub struct Running {
    pub api: Api,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::ops::Deref for Running {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Running {
    /// Serves what `start` starts once it reports its address.
    pub async fn start<F, Fut>(start: F) -> Self
    where
        F: FnOnce(tokio::sync::oneshot::Receiver<()>) -> Fut,
        Fut: Future<Output = std::net::SocketAddr>,
    {
        capture_logs();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let addr = start(rx).await;
        Self {
            api: Api {
                base: format!("http://{addr}"),
                client: reqwest::Client::new(),
                token: None,
            },
            stop: Some(tx),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The auth service on a free port against a fresh database.
pub async fn auth_service() -> (Running, TestDb) {
    let db = TestDb::create().await;
    let running = start_auth_service(&db.url, &[]).await;
    (running, db)
}

/// A test service's settings: `database_url`, a free port, a pool of
/// `connections`, the bootstrap admin, then `settings` over them.
fn service_env(
    database_url: &str,
    connections: &str,
    settings: &[(&str, &str)],
) -> std::collections::HashMap<String, String> {
    let defaults = [
        ("DATABASE_URL", database_url),
        ("HTTP_ADDR", "127.0.0.1:0"),
        ("DATABASE_MAX_CONNECTIONS", connections),
        ("SUPERADMIN_EMAIL", ADMIN_EMAIL),
        ("SUPERADMIN_PASSWORD", ADMIN_PASSWORD),
    ];
    record_settings(defaults.iter().chain(settings).copied());
    defaults
        .iter()
        .chain(settings)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The auth service on a free port against `database_url`, with extra settings.
pub async fn start_auth_service(database_url: &str, settings: &[(&str, &str)]) -> Running {
    use airbnb_auth_service::{app::Application, config::Config};
    let env = service_env(database_url, "4", settings);
    Running::start(|stop| async move {
        let config = Config::from_lookup(|k| env.get(k).cloned()).expect("config");
        let app = Application::build(config).await.expect("service starts");
        let addr = app.local_addr().expect("bound address");
        tokio::spawn(app.serve(async move {
            let _ = stop.await;
        }));
        addr
    })
    .await
}

/// The library service (`tests/models/library.yaml`, with its hand-written
/// hooks) on a free port against `database_url`, with extra settings; its
/// bootstrap librarian is `ADMIN_EMAIL`.
pub async fn start_library_service(database_url: &str, settings: &[(&str, &str)]) -> Running {
    use library_service::{app::Application, config::Config};
    let env = service_env(database_url, "12", settings);
    Running::start(|stop| async move {
        let config = Config::from_lookup(|k| env.get(k).cloned()).expect("config");
        let app = Application::build(config)
            .await
            .expect("library service starts");
        let addr = app.local_addr().expect("bound address");
        tokio::spawn(app.serve(async move {
            let _ = stop.await;
        }));
        addr
    })
    .await
}

/// Signs in to the library service and returns it called as that librarian or member.
pub async fn library_as(server: &Api, email: &str, secret: &str) -> Api {
    let (status, body) = server
        .anonymous()
        .post(
            "/api/sign-in",
            serde_json::json!({ "email": email, "secret": secret }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "sign-in of {email} failed: {body}");
    server.with_token(
        body["session"]["accessToken"]
            .as_str()
            .expect("access token"),
    )
}

/// A broker, a database, and the auth service publishing to the broker.
pub async fn auth_service_with_broker() -> (Broker, TestDb, Running) {
    let broker = Broker::start().await;
    let db = TestDb::create().await;
    let server = start_auth_service(
        &db.url,
        &[
            ("KAFKA_BROKERS", &broker.brokers()),
            ("KAFKA_LINGER_MS", "0"),
        ],
    )
    .await;
    (broker, db, server)
}

/// Creates an account (as `svc`, an admin) and returns its row.
pub async fn create_user(svc: &Api, email: &str, fullname: &str) -> Value {
    let body = expect(
        StatusCode::CREATED,
        &svc.post(
            "/v1/users",
            serde_json::json!({ "email": email, "password": "correct horse", "fullname": fullname }),
        )
        .await,
    );
    body["user"].clone()
}

/// Registers an ordinary account (public registration) and returns the
/// service as that account, signed in, and its id.
pub async fn register(server: &Api, email: &str, fullname: &str) -> (Api, String) {
    let password = "a decent secret";
    let body = expect(
        StatusCode::CREATED,
        &server
            .anonymous()
            .post(
                "/v1/register",
                serde_json::json!({ "email": email, "password": password, "fullname": fullname }),
            )
            .await,
    );
    let id = body["user"]["id"].as_str().unwrap_or_default().to_string();
    (server.as_user(email, password).await, id)
}

/// Asserts an answer's status, printing the body when it differs.
#[track_caller]
pub fn expect(status: StatusCode, answer: &(StatusCode, Value)) -> Value {
    assert_eq!(answer.0, status, "unexpected answer: {}", answer.1);
    answer.1.clone()
}

/// The field names of an error answer's details.
pub fn error_fields(body: &Value) -> Vec<String> {
    body["details"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|e| e["field"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Asks searchUsers for keywords past the auth model's bounds
/// (`service.search`: 10 words of at most 64 characters), each of which must
/// be a 400 naming `q`; returns a (URL-encoded) keyword exactly at them.
pub async fn keywords_past_bounds_are_refused(api: &Api) -> String {
    let words = |n: usize, len: usize| vec!["a".repeat(len); n];
    let past = [
        words(11, 2).join("%20"),
        words(1500, 3).join("%20"),
        // Punctuation separates words as well as spaces do.
        words(11, 2).join("."),
        words(1, 65).join(""),
        format!("ann%20{}", "b".repeat(65)),
    ];
    for q in past {
        let bad = expect(
            StatusCode::BAD_REQUEST,
            &api.get(&format!("/v1/users/search?q={q}")).await,
        );
        assert_eq!(error_fields(&bad), ["q"], "{q}: {bad}");
        assert_eq!(bad["statusCode"], "400");
    }
    words(10, 64).join("%20")
}

/// The keys of a JSON object, sorted.
pub fn sorted_keys(object: &Value) -> Vec<String> {
    let mut keys: Vec<String> = object
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort_unstable();
    keys
}

/// A Kafka-protocol broker (tansu, in memory) on a free loopback port.
pub struct Broker {
    pub port: u16,
    child: Option<std::process::Child>,
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Broker {
    pub async fn start() -> Self {
        let mut b = Self {
            port: free_port(),
            child: None,
        };
        b.restart().await;
        b
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port; the in-memory broker starts empty.
    pub async fn restart(&mut self) {
        self.stop();
        let child = svcgen_runtime::testing::tansu_broker(self.port)
            .spawn()
            .expect("tansu starts (cargo install --locked tansu --features dynostore)");
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("tansu did not listen on {}", self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A message read back from the broker.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub payload: Value,
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Reads every message on `topics` (partitions `0..partitions`) from the
/// beginning, until `done` holds for what was read or `timeout` passes.
pub async fn consume(
    brokers: &str,
    topics: &[&str],
    partitions: i32,
    timeout: std::time::Duration,
    done: impl Fn(&[Consumed]) -> bool,
) -> Vec<Consumed> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for p in 0..partitions {
            tpl.add_partition_offset(t, p, Offset::Beginning)
                .expect("partition");
        }
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = std::time::Instant::now() + timeout;
    let mut out = Vec::new();
    tokio::task::block_in_place(|| {
        while std::time::Instant::now() < deadline && !done(&out) {
            let Some(result) = consumer.poll(std::time::Duration::from_millis(200)) else {
                continue;
            };
            let Ok(m) = result else { continue };
            let mut headers = std::collections::BTreeMap::new();
            if let Some(h) = m.headers() {
                for header in h.iter() {
                    headers.insert(
                        header.key.to_string(),
                        String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned(),
                    );
                }
            }
            let payload =
                serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or(Value::Null);
            // Mail deliveries carry one-time codes.
            record_json(&payload);
            out.push(Consumed {
                topic: m.topic().to_string(),
                partition: m.partition(),
                offset: m.offset(),
                key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                payload,
                headers,
            });
        }
    });
    out
}

/// The auth service binary as a process on `host:port`, its output in a
/// log file; both go when it is dropped (the log stays when captured for
/// the secret scan).
pub struct ServiceProcess {
    pub child: tokio::process::Child,
    pub port: u16,
    /// `http://127.0.0.1:<port>`: the probes go to the loopback.
    pub base: String,
    log_path: std::path::PathBuf,
    /// Whether the log is the scan's, to keep.
    captured: bool,
}

impl ServiceProcess {
    /// Starts the binary against `database_url` with the bootstrap admin, no
    /// broker and `settings` over them, and waits until `/readyz` answers 200.
    pub async fn start(
        host: &str,
        port: u16,
        database_url: &str,
        settings: &[(&str, &str)],
    ) -> Self {
        Self::start_binary(AUTH_BINARY, host, port, database_url, settings).await
    }

    /// [`ServiceProcess::start`] for another generated service's binary.
    pub async fn start_binary(
        binary: Binary,
        host: &str,
        port: u16,
        database_url: &str,
        settings: &[(&str, &str)],
    ) -> Self {
        let captured = capture::log_file(&format!(
            "{}-{port}-{}.log",
            binary.name,
            capture::next_number()
        ));
        let log_path = captured
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(format!("svcgen-service-{port}.log")));
        let log = std::fs::File::create(&log_path).expect("log file");
        record_settings(settings.iter().copied());
        record_secret("superadmin_password", ADMIN_PASSWORD);
        let mut command = tokio::process::Command::new(service_binary_of(binary));
        command
            .env("HTTP_ADDR", format!("{host}:{port}"))
            .env("DATABASE_URL", database_url)
            .env("DATABASE_MAX_CONNECTIONS", "4")
            .env("SUPERADMIN_EMAIL", ADMIN_EMAIL)
            .env("SUPERADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("RUST_LOG", "warn")
            .env_remove("KAFKA_BROKERS")
            .env_remove("LOG_FORMAT");
        for (k, v) in settings {
            command.env(k, v);
        }
        // Captured, the service logs at the level of the scan whatever a test asked.
        command.envs(child_log_env());
        let child = command
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("the service starts");
        let mut service = Self {
            child,
            port,
            base: format!("http://127.0.0.1:{port}"),
            log_path,
            captured: captured.is_some(),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(status) = service.child.try_wait().expect("the child's status") {
                panic!(
                    "the service exited with {status} at start:\n{}",
                    service.log()
                );
            }
            let ready = reqwest::Client::new()
                .get(format!("{}/readyz", service.base))
                .timeout(std::time::Duration::from_secs(2))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
                return service;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not ready in 30 s:\n{}",
                service.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// What the service wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn sigterm(&self) {
        let pid = i32::try_from(self.child.id().expect("running")).expect("a pid");
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM sent");
    }

    /// Kills the process and waits for it, so that its port is free again.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }

    /// The service, called anonymously.
    pub fn api(&self) -> Api {
        Api {
            base: self.base.clone(),
            client: reqwest::Client::new(),
            token: None,
        }
    }
}

impl Drop for ServiceProcess {
    /// The process goes with it (`kill_on_drop`), and so does its log.
    fn drop(&mut self) {
        if !self.captured {
            let _ = std::fs::remove_file(&self.log_path);
        }
    }
}

/// A generated service's binary, and its crate relative to this one.
#[derive(Debug, Clone, Copy)]
pub struct Binary {
    pub name: &'static str,
    pub crate_dir: &'static str,
}

/// The auth service (`model/auth-service.yaml`).
pub const AUTH_BINARY: Binary = Binary {
    name: "airbnb-auth-service",
    crate_dir: "../generated-service",
};

/// The listing service (`tests/models/listing.yaml`).
pub const LISTING_BINARY: Binary = Binary {
    name: "airbnb-listing-service",
    crate_dir: "listing-service",
};

/// The auth service binary next to this test's: <target>/debug/deps/faults-* ->
/// <target>/debug/airbnb-auth-service.
pub fn service_binary() -> std::path::PathBuf {
    service_binary_of(AUTH_BINARY)
}

/// `binary` next to this test's, built no earlier than its crate's sources.
pub fn service_binary_of(binary: Binary) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("<target>/<profile>/deps");
    let bin = profile_dir.join(format!("{}{}", binary.name, std::env::consts::EXE_SUFFIX));
    let build = format!(
        "cargo build -p {0} --bin {0} (cargo xtask test does)",
        binary.name
    );
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} is missing: {build}", bin.display()));
    // A binary older than the crate's sources would test old code.
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(binary.crate_dir);
    for dir in ["src", "migrations"] {
        for entry in std::fs::read_dir(crate_dir.join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(changed) = entry.metadata().and_then(|m| m.modified()) {
                assert!(
                    changed <= built,
                    "{} is older than {}: {build}",
                    bin.display(),
                    entry.path().display()
                );
            }
        }
    }
    bin
}

/// Waits until `check` holds, polling every 20 ms; panics with `what` after `limit`.
pub async fn eventually<F, Fut>(
    what: &str,
    limit: std::time::Duration,
    mut check: F,
) -> std::time::Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Signs in at the auth service; answers the access token and the user id.
pub async fn sign_in(auth: &Api, email: &str, password: &str) -> (String, String) {
    let session = auth.login(email, password).await;
    let token = session["accessToken"]
        .as_str()
        .expect("access token")
        .to_string();
    let user = session["userId"].as_str().expect("user id").to_string();
    (token, user)
}
