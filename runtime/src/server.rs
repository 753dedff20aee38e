//! What every service does to start, serve and stop, whatever its model:
//! the database pool with its migrations, the layers around every route,
//! logging, and the shutdown signal. The top of the runtime.

use crate::config::DatabaseSettings;
use crate::envelope;
use crate::event::Watcher;
use crate::route::ServiceInfo;
use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{middleware, Extension, Router};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::sync::Arc;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Connects to PostgreSQL and applies the service's pending migrations.
pub async fn connect(settings: &DatabaseSettings, migrator: &Migrator) -> anyhow::Result<PgPool> {
    let db = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect(&settings.url)
        .await
        .context("connecting to the database")?;
    migrator.run(&db).await.context("applying migrations")?;
    Ok(db)
}

/// Wraps a service's routes in what every answer needs: unknown paths and
/// every error in the envelope, the request id (taken from `x-request-id` or
/// made, and echoed), the body limit, request tracing, the headers that keep
/// answers out of caches and browsers' sniffing ([`private_answers`]), and the
/// `watcher` of the requests' events (the live-session cache), if the service has one.
pub fn serve_layers<S: Clone + Send + Sync + 'static>(
    routes: Router<S>,
    service: &'static ServiceInfo,
    watcher: Option<Arc<dyn Watcher>>,
) -> Router<S> {
    let routes = routes
        .fallback(envelope::not_found)
        // Inside the envelope: a panic's 500 is answered like every error.
        .layer(CatchPanicLayer::custom(panic_answer))
        .layer(middleware::from_fn_with_state(
            service,
            envelope::errors_in_envelope,
        ));
    let routes = match watcher {
        Some(w) => routes.layer(Extension(w)),
        None => routes,
    };
    routes
        .layer(DefaultBodyLimit::max(service.body_limit_bytes))
        .layer(middleware::map_response(private_answers))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
}

/// Answers carry tokens and personal data (sign-in, profiles, lists, the event
/// stream): no cache may keep them (`Cache-Control: no-store`) unless the route
/// chose its own policy (a download's `cacheControl`), and no browser may read
/// an answer as another type than it says (`X-Content-Type-Options: nosniff`).
async fn private_answers(mut res: Response) -> Response {
    let headers = res.headers_mut();
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

/// A handler (or a hand-written hook) that panicked: logged as an internal
/// error and answered 500, while the connection and the service go on.
fn panic_answer(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_string(),
        (_, Some(s)) => s.clone(),
        _ => "a panic without a message".to_string(),
    };
    crate::error::ApiError::internal(anyhow::anyhow!("a handler panicked: {what}")).into_response()
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

/// Logs as JSON when `LOG_FORMAT=json`; the level comes from `RUST_LOG` (default info).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = if std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if let Err(e) = result {
        eprintln!("tracing already initialised: {e}");
    }
}

/// Keeps large allocations (hashing a secret takes 19 MiB) out of glibc's
/// heap, so memory freed after a burst of logins goes back to the system.
pub fn return_large_allocations_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter, under glibc's own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{to_bytes, Body};
    use axum::extract::Request;
    use axum::routing::post;
    use tower::ServiceExt;

    static SERVICE: ServiceInfo = ServiceInfo {
        app_version: "1.2.3",
        body_limit_bytes: 16,
        constraints: &[],
    };

    async fn call(req: Request) -> (axum::http::StatusCode, axum::http::HeaderMap, String) {
        let app = serve_layers(
            Router::new()
                .route("/echo", post(|b: String| async { b }))
                .route(
                    "/panic",
                    post(|| async {
                        if true {
                            panic!("a bug in a hook");
                        }
                    }),
                ),
            &SERVICE,
            None,
        );
        let res = app.oneshot(req).await.expect("infallible");
        let (parts, body) = res.into_parts();
        let body = to_bytes(body, 1 << 16).await.expect("a body");
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_in_the_envelope() {
        let req = Request::post("/panic")
            .header("x-request-id", "boom")
            .body(Body::empty())
            .expect("request");
        let (status, headers, body) = call(req).await;
        assert_eq!(status.as_u16(), 500);
        assert!(body.contains("\"errCode\":\"INTERNAL_ERROR\""), "{body}");
        assert!(
            !body.contains("a bug in a hook"),
            "no detail to the client: {body}"
        );
        assert_eq!(headers["x-request-id"], "boom");
    }

    #[tokio::test]
    async fn a_request_id_is_made_or_echoed() {
        let req = Request::post("/echo")
            .body(Body::from("hi"))
            .expect("request");
        let (status, headers, body) = call(req).await;
        assert_eq!((status.as_u16(), body.as_str()), (200, "hi"));
        assert!(headers.contains_key("x-request-id"));
        let req = Request::post("/echo")
            .header("x-request-id", "abc")
            .body(Body::from("hi"))
            .expect("request");
        assert_eq!(call(req).await.1["x-request-id"], "abc");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_and_an_unknown_path_are_answered_in_the_envelope() {
        let req = Request::post("/echo")
            .body(Body::from("x".repeat(17)))
            .expect("request");
        let (status, _, body) = call(req).await;
        assert_eq!(status.as_u16(), 413);
        assert!(body.contains("\"errCode\":\"PAYLOAD_TOO_LARGE\""), "{body}");
        assert!(body.contains("\"appVersion\":\"1.2.3\""), "{body}");
        let req = Request::get("/nowhere")
            .body(Body::empty())
            .expect("request");
        let (status, _, body) = call(req).await;
        assert_eq!(status.as_u16(), 404);
        assert!(body.contains("ROUTE_NOT_FOUND"), "{body}");
    }

    #[tokio::test]
    async fn answers_are_kept_out_of_caches_unless_the_route_chose_and_never_sniffed() {
        let req = Request::post("/echo")
            .body(Body::from("hi"))
            .expect("request");
        let headers = call(req).await.1;
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        // Errors in the envelope too.
        let req = Request::get("/nowhere")
            .body(Body::empty())
            .expect("request");
        let headers = call(req).await.1;
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        // A route's own policy stays.
        let cached = Router::new().route(
            "/file",
            axum::routing::get(|| async { ([(header::CACHE_CONTROL, "public, max-age=60")], "f") }),
        );
        let res = serve_layers(cached, &SERVICE, None)
            .oneshot(Request::get("/file").body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        assert_eq!(res.headers()[header::CACHE_CONTROL], "public, max-age=60");
    }
}
