//! Liveness and readiness probes, for any state that holds the database pool
//! and the [`Publisher`].

use crate::kafka::Publisher;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use sqlx::PgPool;

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
/// because the broker was slower than the load.
async fn healthz(State(events): State<Publisher>) -> Json<Value> {
    Json(json!({ "status": "OK", "readEventsDropped": events.dropped() }))
}

/// The process can serve: the database answers.
async fn readyz(State(db): State<PgPool>) -> (StatusCode, Json<Value>) {
    match sqlx::query("SELECT 1").execute(&db).await {
        Ok(_) => (
            StatusCode::OK,
            Json(json!({ "status": "OK", "database": "up" })),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "ERR", "database": "down" })),
            )
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

    #[tokio::test]
    async fn alive_with_the_dropped_read_events() {
        let (status, body) = answer(app("postgres://nobody@127.0.0.1:1/none"), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({ "status": "OK", "readEventsDropped": 0 }));
    }

    #[tokio::test]
    async fn not_ready_while_the_database_is_down() {
        let (status, body) = answer(app("postgres://nobody@127.0.0.1:1/none"), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, json!({ "status": "ERR", "database": "down" }));
    }

    #[tokio::test]
    async fn ready_when_the_database_answers() {
        let db = crate::testing::TestDb::with_outbox().await;
        let (status, body) = answer(app(&db.url), "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({ "status": "OK", "database": "up" }));
    }
}
