//! What every service does to start, serve and stop, whatever its model:
//! the database pool with its migrations, the layers around every route,
//! and the shutdown signal. The top of the runtime.

use crate::config::{ConfigError, DatabaseSettings, Env};
use crate::envelope;
use crate::event::Watcher;
use crate::health::Draining;
use crate::route::ServiceInfo;
use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{middleware, Extension, Router};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

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
/// made, and echoed), the body limit, the request's span and trace context
/// ([`crate::telemetry::trace_requests`]), the headers that keep
/// answers out of caches and browsers' sniffing ([`private_answers`]), and the
/// `watcher` of the requests' events (the live-session cache), if the service
/// has one; and, when metrics are on, each request counted and timed by route
/// ([`crate::metrics::track_requests`]).
pub fn serve_layers<S: Clone + Send + Sync + 'static>(
    routes: Router<S>,
    service: &'static ServiceInfo,
    watcher: Option<Arc<dyn Watcher>>,
) -> Router<S> {
    // One layer of one stack: each `Router::layer` boxes every route again,
    // and a request clones and drops every box on its way in (a tenth of a
    // cheap read's instructions with eight of them, callgrind, issue 22).
    // Listed outermost first.
    let stack = ServiceBuilder::new()
        // Outermost: every answer is counted with its final status.
        .layer(middleware::from_fn(crate::metrics::track_requests))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
        .layer(middleware::from_fn(crate::telemetry::trace_requests))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(middleware::map_response(private_answers))
        .layer(DefaultBodyLimit::max(service.body_limit_bytes))
        .option_layer(watcher.map(Extension))
        .layer(middleware::from_fn_with_state(
            service,
            envelope::errors_in_envelope,
        ))
        // Inside the envelope: a panic's 500 is answered like every error.
        .layer(CatchPanicLayer::custom(panic_answer));
    routes.fallback(envelope::not_found).layer(stack)
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

/// How the service stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownSettings {
    /// `SHUTDOWN_DRAIN_SECS` (default 0): how long `/readyz` answers 503
    /// while the listener still accepts, so that load balancers (a
    /// Kubernetes Service's endpoints) stop sending before it closes.
    pub drain: Duration,
    /// `SHUTDOWN_TIMEOUT_SECS` (default 20): how long requests in flight may
    /// take to finish once the listener closed; what is left is cut.
    pub limit: Duration,
}

impl ShutdownSettings {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            drain: Duration::from_secs(env.parse("SHUTDOWN_DRAIN_SECS", "0")?),
            limit: Duration::from_secs(env.parse("SHUTDOWN_TIMEOUT_SECS", "20")?),
        })
    }
}

/// Serves `router` on `listener` until `signal` resolves, then stops in
/// order: `/readyz` turns 503 ([`Draining`]) while the listener still
/// accepts for `settings.drain`; `closing` runs (it ends what would hold the
/// shutdown open, such as realtime streams); the listener closes; requests in
/// flight get `settings.limit` to finish, and are cut after it.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    signal: impl Future<Output = ()> + Send + 'static,
    closing: impl FnOnce() + Send + 'static,
    settings: &ShutdownSettings,
) -> std::io::Result<()> {
    let draining = Draining::default();
    let router = router.layer(Extension(draining.clone()));
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    let drain = settings.drain;
    let shutdown = async move {
        signal.await;
        draining.begin();
        tracing::info!(drain_secs = drain.as_secs(), "not ready any more; draining");
        tokio::time::sleep(drain).await;
        closing();
        let _ = closed_tx.send(());
    };
    let served = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .into_future();
    let limit = settings.limit;
    let cut_off = async move {
        match closed_rx.await {
            Ok(()) => tokio::time::sleep(limit).await,
            // Serving ended before shutdown began: `served` has the answer.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        served = served => served,
        () = cut_off => {
            tracing::warn!(limit_secs = limit.as_secs(), "requests still in flight at the shutdown time limit were cut");
            Ok(())
        }
    }
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

/// The allocator a generated binary declares (`#[global_allocator]`):
/// mimalloc, whose per-thread free lists make the many small allocations of a
/// request (headers, rows, JSON, the event record) much cheaper than glibc's.
pub use mimalloc::MiMalloc as Allocator;

/// Keeps the process's resident memory close to what it uses; `main` calls
/// it first.
/// - No transparent huge pages for this process. Where the kernel's setting
///   is `always` (as on many distributions), each touched 2 MiB stretch of
///   the allocator's arenas became a whole huge page: the auth service held
///   35 MiB under a read load instead of 20, at the same rate (issue 22).
///   The flag covers mappings made before the call too.
/// - Large allocations out of glibc's heap, which still serves the C
///   libraries (librdkafka's buffers), so memory freed after a burst goes
///   back to the system.
pub fn limit_resident_memory() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE sets one flag of this process and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
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

    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_gets_no_transparent_huge_pages() {
        limit_resident_memory();
        // SAFETY: PR_GET_THP_DISABLE only reads the flag.
        assert_eq!(
            unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) },
            1
        );
    }

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

    /// A service with a route that takes `slow`, serving until `stop` fires.
    async fn slow_service(
        slow: Duration,
        settings: ShutdownSettings,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        use axum::routing::get;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let router = Router::new()
            .route(
                "/slow",
                get(move || async move {
                    tokio::time::sleep(slow).await;
                    "done"
                }),
            )
            .route(
                "/ready",
                get(|d: Extension<Draining>| async move {
                    if d.is_on() {
                        "draining"
                    } else {
                        "ready"
                    }
                }),
            );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve(
                listener,
                router,
                async move {
                    let _ = stopped.await;
                },
                || {},
                &settings,
            )
            .await
        });
        (addr, stop, task)
    }

    async fn get_text(addr: SocketAddr, path: &str) -> std::io::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn draining_keeps_accepting_then_the_limit_cuts_what_is_left() {
        let settings = ShutdownSettings {
            drain: Duration::from_millis(600),
            limit: Duration::from_millis(500),
        };
        let (addr, stop, task) = slow_service(Duration::from_secs(60), settings).await;
        let stuck = tokio::spawn(get_text(addr, "/slow"));
        assert!(get_text(addr, "/ready")
            .await
            .expect("answer")
            .ends_with("ready"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let began = std::time::Instant::now();
        stop.send(()).expect("serving");
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Draining: still accepting, and saying so.
        let during = get_text(addr, "/ready")
            .await
            .expect("accepted while draining");
        assert!(during.ends_with("draining"), "{during}");
        let served = tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .expect("stopped within the limit")
            .expect("no panic");
        assert!(served.is_ok());
        let took = began.elapsed();
        assert!(
            took >= Duration::from_millis(1100),
            "drain then limit: {took:?}"
        );
        assert!(
            get_text(addr, "/ready").await.is_err(),
            "the listener is closed"
        );
        // Serving returned though the slow request still runs: in the
        // binary, `main` returns and the runtime drops its connection.
        assert!(!stuck.is_finished());
        stuck.abort();
    }

    #[tokio::test]
    async fn requests_in_flight_finish_within_the_limit() {
        let settings = ShutdownSettings {
            drain: Duration::ZERO,
            limit: Duration::from_secs(10),
        };
        let (addr, stop, task) = slow_service(Duration::from_millis(500), settings).await;
        let slow = tokio::spawn(get_text(addr, "/slow"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let began = std::time::Instant::now();
        stop.send(()).expect("serving");
        task.await.expect("no panic").expect("served");
        assert!(began.elapsed() < Duration::from_secs(5));
        let answer = slow.await.expect("no panic").expect("answered");
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("done"),
            "{answer}"
        );
    }

    #[test]
    fn shutdown_settings_default_to_no_drain_and_20_seconds() {
        let none = Env::new(|_: &str| None);
        let s = ShutdownSettings::from_env(&none).expect("defaults");
        assert_eq!(
            (s.drain, s.limit),
            (Duration::ZERO, Duration::from_secs(20))
        );
        let set = Env::new(|n: &str| (n == "SHUTDOWN_TIMEOUT_SECS").then(|| "x".to_string()));
        let err = ShutdownSettings::from_env(&set).unwrap_err().to_string();
        assert!(err.starts_with("SHUTDOWN_TIMEOUT_SECS is invalid"), "{err}");
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
