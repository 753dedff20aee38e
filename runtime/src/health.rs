//! Liveness and readiness probes, for any state that holds the database pool
//! and the [`Publisher`]; the shutdown's [`Draining`] flag; and the
//! `healthcheck` probe of images without a shell or curl.

use crate::config::{ConfigError, Env};
use crate::consume::ConsumerStats;
use crate::error::ErrorInfo;
use crate::kafka::Publisher;
use crate::relay::RelayHealth;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET /healthz` and `GET /readyz`.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    PgPool: FromRef<S>,
    Publisher: FromRef<S>,
{
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process is up; also how many reading-route events were dropped
/// because the broker was slower than the load, and, in a service that
/// consumes events, what each consumer has done and how far behind it is.
async fn healthz(
    State(events): State<Publisher>,
    consumers: Option<Extension<Arc<ConsumerStats>>>,
) -> Json<Value> {
    let mut body = json!({ "status": "OK", "readEventsDropped": events.dropped() });
    if let Some(Extension(stats)) = consumers {
        body["consuming"] = stats.snapshot();
    }
    Json(body)
}

/// Set when shutdown begins: `/readyz` answers 503 from then on, so load
/// balancers stop sending before the listener closes. `server::serve` puts
/// it in every request's extensions.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn begin(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// `READY_FAILING_SECS` (default 120): how long the outbox relay, or a
/// consumer, may keep failing before `/readyz` says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessSettings {
    pub failing_secs: u64,
}

impl ReadinessSettings {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            failing_secs: env.parse("READY_FAILING_SECS", "120")?,
        })
    }
}

/// What `/readyz` checks beside the database and shutdown: the relay and
/// the consumers, each failing for longer than the settings allow.
#[derive(Debug)]
pub struct Readiness {
    settings: ReadinessSettings,
    relay: Arc<RelayHealth>,
    consumers: Option<Arc<ConsumerStats>>,
}

impl Readiness {
    pub fn new(settings: ReadinessSettings, consumers: Option<Arc<ConsumerStats>>) -> Arc<Self> {
        Arc::new(Self {
            settings,
            relay: Arc::default(),
            consumers,
        })
    }

    /// What the relay reports to ([`crate::relay::run_watched`]).
    pub fn relay(&self) -> Arc<RelayHealth> {
        self.relay.clone()
    }

    /// Why the service is not ready at `now` (Unix seconds), if it is not.
    fn reason(&self, now: i64) -> Option<String> {
        let limit = self.settings.failing_secs;
        if let Some(secs) = self.relay.failing_for(now).filter(|s| *s > limit) {
            return Some(format!("the outbox relay has been failing for {secs} s"));
        }
        let (consumer, secs) = self.consumers.as_ref()?.failing(now)?;
        (secs > limit).then(|| format!("the consumer {consumer} has been failing for {secs} s"))
    }
}

/// The process can serve: it is not shutting down, the database answers,
/// and neither the relay nor a consumer has been failing too long.
async fn readyz(
    State(db): State<PgPool>,
    draining: Option<Extension<Draining>>,
    readiness: Option<Extension<Arc<Readiness>>>,
) -> Response {
    if draining.is_some_and(|Extension(d)| d.is_on()) {
        return not_ready("the service is shutting down");
    }
    let now = chrono::Utc::now().timestamp();
    if let Some(reason) = readiness.and_then(|Extension(r)| r.reason(now)) {
        return not_ready(&reason);
    }
    match sqlx::query("SELECT 1").execute(&db).await {
        Ok(_) => (
            StatusCode::OK,
            Json(json!({ "status": "OK", "database": "up" })),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            not_ready("the database is unreachable")
        }
    }
}

/// A 503 whose reason the envelope middleware writes as the message.
fn not_ready(reason: &str) -> Response {
    let mut res = StatusCode::SERVICE_UNAVAILABLE.into_response();
    res.extensions_mut().insert(ErrorInfo {
        code: "SERVICE_UNAVAILABLE",
        message: reason.to_string(),
        details: Vec::new(),
        violation: None,
    });
    res
}

/// The address a probe on this machine reaches the service at: a listener
/// on every interface (`0.0.0.0`, `::`) is reached through the loopback.
pub fn probe_address(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// `GET /readyz` over plain HTTP/1.1 on the service at `listen`: `Ok` on a
/// 200 within `timeout`, otherwise why not. No HTTP client: the image has
/// neither a shell nor curl, and the probe needs nothing more.
pub async fn probe(listen: SocketAddr, timeout: Duration) -> Result<(), String> {
    let addr = probe_address(listen);
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let request = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("sending to {addr}: {e}"))?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("reading from {addr}: {e}"))?;
        Ok::<_, String>(answer)
    };
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer from {addr} in {timeout:?}"))??;
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next().unwrap_or_default();
    match status_line.split(' ').nth(1) {
        Some("200") => Ok(()),
        _ => Err(format!("{addr}/readyz answered {status_line:?}")),
    }
}

/// The `healthcheck` subcommand: exit code 0 when the service at `listen` is
/// ready, 1 otherwise, with the reason on stderr.
pub async fn healthcheck(listen: SocketAddr) -> ExitCode {
    match probe(listen, Duration::from_secs(3)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("not ready: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::{KafkaSettings, KafkaSpec};
    use axum::body::{to_bytes, Body};
    use axum::http::Request;
    use sqlx::postgres::PgPoolOptions;
    use std::time::Duration;
    use tower::ServiceExt;

    static SPEC: KafkaSpec = KafkaSpec {
        source: "/s",
        client_id: "s",
        topics: &[],
    };

    #[derive(Clone, FromRef)]
    struct AppState {
        db: PgPool,
        events: Publisher,
    }

    fn app(database_url: &str) -> Router {
        let settings = KafkaSettings {
            brokers: None,
            linger_ms: 5,
            message_timeout_ms: 10_000,
            queue_max_messages: 10_000,
            queue_max_kbytes: 8192,
            partitions: 1,
            replication_factor: 1,
            security: Default::default(),
        };
        let state = AppState {
            db: PgPoolOptions::new()
                .acquire_timeout(Duration::from_millis(500))
                .connect_lazy(database_url)
                .expect("pool options"),
            events: Publisher::new(&SPEC, &settings).expect("publisher"),
        };
        router().with_state(state)
    }

    async fn answer(app: Router, uri: &str) -> (StatusCode, Value) {
        let request = Request::get(uri).body(Body::empty()).expect("request");
        let response = app.oneshot(request).await.expect("answer");
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 16).await.expect("body");
        (status, serde_json::from_slice(&body).expect("JSON"))
    }

    #[test]
    fn a_relay_or_consumer_failing_past_the_limit_is_the_reason_not_to_be_ready() {
        let readiness = Readiness::new(ReadinessSettings { failing_secs: 60 }, None);
        assert_eq!(readiness.reason(1_000), None);
        readiness.relay.failed_at(1_000);
        assert_eq!(readiness.reason(1_060), None, "at the limit, still ready");
        assert_eq!(
            readiness.reason(1_061).as_deref(),
            Some("the outbox relay has been failing for 61 s")
        );
        let env = Env::new(|k: &str| (k == "READY_FAILING_SECS").then(|| "5".to_string()));
        assert_eq!(
            ReadinessSettings::from_env(&env)
                .expect("valid")
                .failing_secs,
            5
        );
    }

    /// `/readyz` is 503: the reason left for the envelope middleware.
    async fn not_ready_reason(app: Router) -> ErrorInfo {
        let request = Request::get("/readyz")
            .body(Body::empty())
            .expect("request");
        let res = app.oneshot(request).await.expect("answer");
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        res.extensions()
            .get::<ErrorInfo>()
            .expect("a reason")
            .clone()
    }

    #[tokio::test]
    async fn alive_with_the_dropped_read_events() {
        let (status, body) = answer(app("postgres://nobody@127.0.0.1:1/none"), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({ "status": "OK", "readEventsDropped": 0 }));
    }

    #[tokio::test]
    async fn not_ready_while_the_database_is_down() {
        let info = not_ready_reason(app("postgres://nobody@127.0.0.1:1/none")).await;
        assert_eq!(info.message, "the database is unreachable");
    }

    #[tokio::test]
    async fn not_ready_once_draining_even_with_the_database_up() {
        let db = crate::testing::TestDb::with_outbox().await;
        let draining = Draining::default();
        let app = app(&db.url).layer(Extension(draining.clone()));
        let (status, _) = answer(app.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        draining.begin();
        let info = not_ready_reason(app).await;
        assert_eq!(
            (info.code, info.message.as_str()),
            ("SERVICE_UNAVAILABLE", "the service is shutting down")
        );
    }

    #[test]
    fn every_interface_is_probed_through_the_loopback() {
        let probed = |a: &str| probe_address(a.parse().expect("address")).to_string();
        assert_eq!(probed("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(probed("[::]:8080"), "[::1]:8080");
        assert_eq!(probed("10.1.2.3:80"), "10.1.2.3:80");
    }

    /// A one-shot server that answers `status_line` to its first request.
    async fn answering(status_line: &'static str) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.expect("read");
            assert!(buf[..n].starts_with(b"GET /readyz HTTP/1.1\r\n"));
            let body = "{}";
            let answer = format!(
                "{status_line}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(answer.as_bytes()).await.expect("write");
        });
        addr
    }

    #[tokio::test]
    async fn the_probe_passes_on_200_only() {
        let ok = answering("HTTP/1.1 200 OK").await;
        assert_eq!(probe(ok, Duration::from_secs(2)).await, Ok(()));
        let down = answering("HTTP/1.1 503 Service Unavailable").await;
        let err = probe(down, Duration::from_secs(2)).await.unwrap_err();
        assert!(err.contains("503"), "{err}");
    }

    #[tokio::test]
    async fn the_probe_fails_on_a_closed_port_and_on_silence() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("address")
        };
        let err = probe(closed, Duration::from_secs(2)).await.unwrap_err();
        assert!(err.starts_with("connecting to"), "{err}");
        assert_eq!(healthcheck(closed).await, ExitCode::FAILURE);
        // Accepts but never answers: the timeout ends the probe.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = silent.local_addr().expect("address");
        let err = probe(addr, Duration::from_millis(300)).await.unwrap_err();
        assert!(err.starts_with("no answer"), "{err}");
        drop(silent);
    }

    #[tokio::test]
    async fn ready_when_the_database_answers() {
        let db = crate::testing::TestDb::with_outbox().await;
        let (status, body) = answer(app(&db.url), "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({ "status": "OK", "database": "up" }));
    }
}
