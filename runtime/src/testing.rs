//! For tests (the runtime's own, and with feature `testing` the end-to-end
//! tests of generated services): a service and a request to stand in for a
//! generated crate's, and throwaway databases on the local PostgreSQL
//! (`TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`).

use crate::envelope::RequestContext;
use crate::event::Watcher;
use crate::route::ServiceInfo;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection};
use std::sync::Arc;

static SERVICE: ServiceInfo = ServiceInfo {
    app_version: "1.0.0",
    body_limit_bytes: 1024,
    constraints: &[],
};

/// A request (id `req-1`) whose events `watcher` hears of.
pub fn context(watcher: Option<Arc<dyn Watcher>>) -> RequestContext {
    RequestContext {
        request_id: "req-1".into(),
        started: std::time::Instant::now(),
        service: &SERVICE,
        user_id: None,
        session_id: None,
        watcher,
        consumed: None,
        trace: crate::trace::TraceContext::fresh(),
    }
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database that exists for one test and is dropped after it.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// A fresh, empty database.
    pub async fn create() -> Self {
        let name = format!("svcgen_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_url();
        let mut conn = PgConnection::connect(&admin)
            .await
            .expect("connect to the local PostgreSQL (is it running?)");
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create database");
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }

    /// A fresh database holding an empty outbox.
    pub async fn with_outbox() -> Self {
        let db = Self::create().await;
        db.pool()
            .await
            .execute(crate::tables::OUTBOX.create_sql().as_str())
            .await
            .expect("create the outbox");
        db
    }

    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// The rows of `table`.
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

/// The command that runs tansu, the in-memory Kafka-protocol broker the tests
/// use, on `127.0.0.1:port`: `TANSU`, else `~/.cargo/bin/tansu`, else `tansu`
/// on the PATH (`cargo install --locked tansu --features dynostore`).
pub fn tansu_broker(port: u16) -> std::process::Command {
    let program = std::env::var("TANSU")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_default();
            let installed = std::path::Path::new(&home).join(".cargo/bin/tansu");
            if installed.exists() {
                installed
            } else {
                "tansu".into()
            }
        });
    let url = format!("tcp://127.0.0.1:{port}");
    let mut command = std::process::Command::new(program);
    command
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    command
}
