//! Shared helpers for end-to-end tests: throwaway databases on the local
//! PostgreSQL and the generated service running on a free port.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};
use std::future::Future;

/// The server that throwaway databases are created on.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database that exists for one test and is dropped after it.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> Self {
        let name = format!("svcgen_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_url();
        let mut conn = PgConnection::connect(&admin)
            .await
            .expect("connect to the local PostgreSQL (is it running?)");
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create database");
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(b, _)| b)
            .to_string();
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }

    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connect to test database")
    }

    pub async fn count(&self, table: &str) -> i64 {
        let mut conn = self.connect().await;
        let (n,): (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut conn)
            .await
            .expect("count");
        n
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Best effort, on a runtime of its own: Drop cannot await.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin_url()).await.ok()?;
                conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// A running service: its base URL and an HTTP client.
pub struct Running {
    pub base: String,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Running {
    /// Serves `serve(addr_tx, shutdown)` on a spawned task once it reports its address.
    pub async fn start<F, Fut>(start: F) -> Self
    where
        F: FnOnce(tokio::sync::oneshot::Receiver<()>) -> Fut,
        Fut: Future<Output = std::net::SocketAddr>,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let addr = start(rx).await;
        Self {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            stop: Some(tx),
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
        if let Some(b) = body {
            req = req.json(&b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.expect("request failed");
        let status = res.status();
        let text = res.text().await.expect("read body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
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
    use airbnb_auth_service::{app::Application, config::Config};
    let db = TestDb::create().await;
    let url = db.url.clone();
    let running = Running::start(|stop| async move {
        let config = Config::from_lookup(|k| match k {
            "DATABASE_URL" => Some(url.clone()),
            "HTTP_ADDR" => Some("127.0.0.1:0".to_string()),
            "DATABASE_MAX_CONNECTIONS" => Some("4".to_string()),
            _ => None,
        })
        .expect("config");
        let app = Application::build(config).await.expect("service starts");
        let addr = app.local_addr().expect("bound address");
        tokio::spawn(app.serve(async move {
            let _ = stop.await;
        }));
        addr
    })
    .await;
    (running, db)
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
