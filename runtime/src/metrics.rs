//! Prometheus metrics, in the text format, on their own address
//! (`METRICS_ADDR`) so that they are never served on the public port by
//! accident. Recorded through the `metrics` facade: without `METRICS_ADDR`
//! no recorder is installed, every counter is the facade's no-op and the
//! request layer passes requests through untimed.
//!
//! What is exported (labels in brackets):
//!
//! - `http_requests_total` and `http_request_duration_seconds` (a histogram)
//!   \[`route`, `method`, `status`\]: recorded by [`track_requests`], a layer
//!   of every service. `route` is the matched route (`/v1/users/{id}`),
//!   never the raw path, and `unmatched` for unknown paths; `method` is one
//!   of the standard ones or `other`: the label values stay bounded.
//! - `db_pool_connections_in_use`, `db_pool_connections_idle`: read at scrape time.
//! - `outbox_pending_events` and `outbox_oldest_pending_age_seconds`: one
//!   query at scrape time, on the pending rows' partial index.
//! - `outbox_relay_published_total` (counted by the outbox as the broker
//!   acknowledges) and `outbox_relay_failures_total` (the relay's failed rounds).
//! - `read_events_dropped_total`: reading-route events the producer's full
//!   queue dropped ([`Publisher::dropped`]).
//! - `db_pool_acquire_seconds` (a histogram): how long requests waited for a
//!   connection where they take one explicitly: every transaction of a
//!   generated or runtime route ([`begin`], whose time includes BEGIN's round
//!   trip, as sqlx sends it with the taking) and the connections of hooks
//!   ([`acquire`]). sqlx counts no waiters and has no hook around the wait,
//!   so reads that run one statement on the pool are not timed; background
//!   work (relay, sweeper, consumers) is not either. A request that found no
//!   connection in `DATABASE_ACQUIRE_TIMEOUT_MS`, on any path, is counted in
//!   `db_pool_acquire_timeouts_total` (where database errors become answers).
//! - `hashing_queue_depth` (secret hashes waiting for one of the
//!   `HASH_CONCURRENCY` permits) and `hashing_wait_seconds` (a histogram of
//!   that wait, one sample a hash).
//! - `realtime_clients`: the open event streams.
//! - `throttle_refusals_total` \[`limit`\]: attempts a limit refused
//!   ([`Limit`]: one value per configured limit, never a bucket), answered
//!   429, except code requests over an account's limit, which get the usual
//!   answer and no code (the answer must not tell whether the account exists).
//! - Where a service consumes events, per `consumer`:
//!   `consumer_applied_total`, `consumer_duplicates_total`,
//!   `consumer_retries_total`, `consumer_dead_letters_total` and the gauge
//!   `consumer_lag_messages` ([`ConsumerStats`]).
//!
//! The recorder is process-wide: services started in one process (tests)
//! share it.

use crate::config::{ConfigError, Env};
use crate::consume::ConsumerStats;
use crate::kafka::Publisher;
use anyhow::Context;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlx::postgres::PgPool;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

// The names, the timed connection helpers and the throttle limits sit below
// the modules that record them (`measure`); this module serves them.
pub use crate::measure::*;

/// How often recorded latencies are folded into their buckets.
const UPKEEP: Duration = Duration::from_secs(5);

/// Latency buckets, in seconds: from a cached read to a slow hash.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Where metrics are served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSettings {
    /// `METRICS_ADDR` (unset: no metrics, no listener).
    pub addr: Option<SocketAddr>,
}

impl MetricsSettings {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let addr = match env.text("METRICS_ADDR") {
            None => None,
            Some(v) => Some(v.trim().parse().map_err(|e| ConfigError::Invalid {
                name: "METRICS_ADDR",
                reason: format!("{v:?}: {e}"),
            })?),
        };
        Ok(Self { addr })
    }
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether this process records metrics (a recorder is installed).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Installs the process's Prometheus recorder, once; later calls answer
/// the same handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            // Every histogram is of seconds: the same buckets for all.
            let recorder = builder
                .set_buckets(LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new())
                .build_recorder();
            let handle = recorder.handle();
            match ::metrics::set_global_recorder(recorder) {
                Ok(()) => ENABLED.store(true, Ordering::Relaxed),
                Err(e) => tracing::warn!(error = %e, "another metrics recorder is installed"),
            }
            handle
        })
        .clone()
}

/// The method label: a standard method, or `other` (methods are free text).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts and times each request by matched route, method and status; a
/// pass-through when metrics are off. Added with `Router::layer`, so the
/// route is known ([`MatchedPath`]).
pub async fn track_requests(req: Request, next: Next) -> Response {
    if !enabled() {
        return next.run(req).await;
    }
    let path = req.extensions().get::<MatchedPath>().cloned();
    let route = path.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    let method = method_label(req.method());
    let started = Instant::now();
    let res = next.run(req).await;
    let elapsed = started.elapsed().as_secs_f64();
    REQUEST_SERIES.with_borrow_mut(|series| {
        series.record(route, method, res.status().as_u16(), elapsed);
    });
    res
}

/// The request counter and latency histogram of one route, method and status.
struct RequestSeries {
    requests: ::metrics::Counter,
    duration: ::metrics::Histogram,
}

impl RequestSeries {
    fn record(&self, seconds: f64) {
        self.requests.increment(1);
        self.duration.record(seconds);
    }
}

/// The handles of the request series a thread has recorded, so that a
/// request records through them instead of building its labels (three owned
/// strings) and looking both metrics up in the recorder, which cost a cheap
/// route a tenth of its throughput. The labels are bounded (matched routes,
/// standard methods, statuses), and so is this. Per thread, so that
/// recording takes no lock: the handles share the recorder's storage.
#[derive(Default)]
struct SeriesCache {
    /// By route: by method and status.
    by_route: HashMap<Box<str>, Vec<(&'static str, u16, RequestSeries)>>,
}

impl SeriesCache {
    /// Records a request of `seconds`, registering its series the first time.
    fn record(&mut self, route: &str, method: &'static str, status: u16, seconds: f64) {
        let known = |(m, s, _): &&(&str, u16, RequestSeries)| *m == method && *s == status;
        if let Some((_, _, series)) = self
            .by_route
            .get(route)
            .and_then(|of_route| of_route.iter().find(known))
        {
            series.record(seconds);
            return;
        }
        let labels = [
            ("route", route.to_owned()),
            ("method", method.to_owned()),
            ("status", status.to_string()),
        ];
        let series = RequestSeries {
            requests: ::metrics::counter!(HTTP_REQUESTS, &labels),
            duration: ::metrics::histogram!(HTTP_DURATION, &labels),
        };
        series.record(seconds);
        self.by_route
            .entry(route.into())
            .or_default()
            .push((method, status, series));
    }
}

thread_local! {
    static REQUEST_SERIES: RefCell<SeriesCache> = RefCell::default();
}

/// What is read at scrape time.
#[derive(Clone)]
pub struct Sources {
    db: PgPool,
    events: Option<Publisher>,
    consumers: Option<Arc<ConsumerStats>>,
}

impl Sources {
    /// The pool's connections and the outbox's backlog.
    pub fn new(db: PgPool) -> Self {
        Self {
            db,
            events: None,
            consumers: None,
        }
    }

    /// And the read events `events` dropped.
    pub fn events(mut self, events: Publisher) -> Self {
        self.events = Some(events);
        self
    }

    /// And the consumers' counts and lag.
    pub fn consumers(mut self, consumers: Arc<ConsumerStats>) -> Self {
        self.consumers = Some(consumers);
        self
    }

    /// Sets the scrape-time gauges and counters.
    async fn collect(&self) {
        let size = self.db.size();
        let idle = u32::try_from(self.db.num_idle()).unwrap_or(u32::MAX);
        ::metrics::gauge!(DB_IN_USE).set(f64::from(size.saturating_sub(idle)));
        ::metrics::gauge!(DB_IDLE).set(f64::from(idle));
        let backlog: Result<(i64, Option<f64>), sqlx::Error> = sqlx::query_as(
            "SELECT count(*), EXTRACT(EPOCH FROM now() - min(created_at))::float8
             FROM event_outbox WHERE delivered_at IS NULL",
        )
        .fetch_one(&self.db)
        .await;
        match backlog {
            Ok((pending, oldest)) => {
                ::metrics::gauge!(OUTBOX_PENDING).set(pending as f64);
                ::metrics::gauge!(OUTBOX_OLDEST).set(oldest.unwrap_or(0.0).max(0.0));
            }
            Err(e) => tracing::warn!(error = %e, "reading the outbox backlog for metrics failed"),
        }
        if let Some(events) = &self.events {
            ::metrics::counter!(READ_EVENTS_DROPPED).absolute(events.dropped());
        }
        if let Some(stats) = &self.consumers {
            consumer_metrics(&stats.snapshot());
        }
    }
}

/// The counters and lag of each consumer in `snapshot`
/// ([`ConsumerStats::snapshot`]: `{"running", "partitions", "consumers": {name: ..}}`).
fn consumer_metrics(snapshot: &serde_json::Value) {
    let Some(consumers) = snapshot["consumers"].as_object() else {
        return;
    };
    for (name, c) in consumers {
        let count = |field: &str| c[field].as_u64().unwrap_or(0);
        let label = [("consumer", name.clone())];
        ::metrics::counter!("consumer_applied_total", &label).absolute(count("applied"));
        ::metrics::counter!("consumer_duplicates_total", &label).absolute(count("duplicates"));
        ::metrics::counter!("consumer_retries_total", &label).absolute(count("retries"));
        ::metrics::counter!("consumer_dead_letters_total", &label).absolute(count("deadLettered"));
        ::metrics::gauge!("consumer_lag_messages", &label)
            .set(c["lag"].as_i64().unwrap_or(0) as f64);
    }
}

/// The bound metrics listener, with the recorder installed.
pub struct Exporter {
    listener: TcpListener,
    handle: PrometheusHandle,
}

impl Exporter {
    /// Installs the recorder and binds `METRICS_ADDR`; `None` when it is unset.
    pub async fn bind(settings: &MetricsSettings) -> anyhow::Result<Option<Self>> {
        let Some(addr) = settings.addr else {
            return Ok(None);
        };
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding METRICS_ADDR {addr}"))?;
        Ok(Some(Self {
            listener,
            handle: install(),
        }))
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `GET /metrics` until `stop` turns true.
    pub async fn serve(self, sources: Sources, mut stop: watch::Receiver<bool>) {
        if let Ok(addr) = self.listener.local_addr() {
            tracing::info!(%addr, "serving metrics at /metrics");
        }
        let upkeep = upkeep(self.handle.clone(), stop.clone());
        let app = Router::new()
            .route("/metrics", get(scrape))
            .with_state((self.handle, sources));
        let stopped = async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
        };
        let serve = async {
            if let Err(e) = axum::serve(self.listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!(error = %e, "the metrics listener failed");
            }
        };
        tokio::join!(serve, upkeep);
    }
}

/// Folds the latency samples into their buckets every [`UPKEEP`] until
/// `stop`. The recorder keeps every sample until then: scrapes do it too,
/// but without them (no Prometheus yet, or a down one) memory would grow
/// with every request.
async fn upkeep(handle: PrometheusHandle, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(UPKEEP);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*stop.borrow() {
        tokio::select! {
            _ = every.tick() => handle.run_upkeep(),
            changed = stop.changed() => if changed.is_err() {
                break;
            },
        }
    }
}

async fn scrape(State((handle, sources)): State<(PrometheusHandle, Sources)>) -> Response {
    sources.collect().await;
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    #[test]
    fn metrics_addr_is_optional_and_checked() {
        let none = Env::new(|_: &str| None);
        assert_eq!(MetricsSettings::from_env(&none).expect("unset").addr, None);
        let set = Env::new(|n: &str| (n == "METRICS_ADDR").then(|| "0.0.0.0:9090".to_string()));
        assert_eq!(
            MetricsSettings::from_env(&set).expect("an address").addr,
            Some("0.0.0.0:9090".parse().expect("address"))
        );
        let bad = Env::new(|n: &str| (n == "METRICS_ADDR").then(|| "9090".to_string()));
        let err = MetricsSettings::from_env(&bad).unwrap_err().to_string();
        assert!(err.starts_with("METRICS_ADDR is invalid"), "{err}");
    }

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        let odd = Method::from_bytes(b"BREW").expect("an extension method");
        assert_eq!(method_label(&odd), "other");
    }

    /// The recorder, the layer and the rendering together: counts by the
    /// matched route, never the path; unknown paths share one label.
    #[tokio::test]
    async fn requests_are_counted_by_matched_route_method_and_status() {
        let handle = install();
        assert!(enabled());
        let app = Router::new()
            .route("/things/{id}", get(|| async { "thing" }))
            .layer(axum::middleware::from_fn(track_requests));
        for path in ["/things/1", "/things/2", "/things/3", "/nowhere/x"] {
            let res = app
                .clone()
                .oneshot(Request::get(path).body(Body::empty()).expect("request"))
                .await
                .expect("infallible");
            assert!(res.status().is_success() || res.status().as_u16() == 404);
        }
        let text = handle.render();
        assert!(
            text.contains(
                r#"http_requests_total{route="/things/{id}",method="GET",status="200"} 3"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"http_request_duration_seconds_count{route="/things/{id}",method="GET",status="200"} 3"#),
            "{text}"
        );
        assert!(!text.contains("/things/1"), "{text}");
        assert!(!text.contains("/nowhere"), "{text}");
    }

    #[test]
    fn each_series_is_registered_once_and_recorded_through_its_handles() {
        let handle = install();
        let mut cache = SeriesCache::default();
        for _ in 0..3 {
            cache.record("/cached/{id}", "GET", 200, 0.002);
        }
        cache.record("/cached/{id}", "GET", 404, 0.001);
        cache.record("/cached/{id}", "POST", 200, 0.001);
        assert_eq!(cache.by_route.len(), 1);
        assert_eq!(cache.by_route["/cached/{id}"].len(), 3);
        let text = handle.render();
        for line in [
            r#"http_requests_total{route="/cached/{id}",method="GET",status="200"} 3"#,
            r#"http_requests_total{route="/cached/{id}",method="GET",status="404"} 1"#,
            r#"http_requests_total{route="/cached/{id}",method="POST",status="200"} 1"#,
            r#"http_request_duration_seconds_count{route="/cached/{id}",method="GET",status="200"} 3"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    /// The value of the sample `series` (name and labels as rendered) in `text`.
    fn rendered(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn pool_timeouts_are_counted_where_errors_are_mapped() {
        let handle = install();
        let was = rendered(&handle.render(), DB_ACQUIRE_TIMEOUTS).unwrap_or(0.0);
        let answer = crate::error::ApiError::from(sqlx::Error::PoolTimedOut);
        assert!(matches!(
            answer,
            crate::error::ApiError::ServiceUnavailable(_)
        ));
        let _ = crate::error::ApiError::from(sqlx::Error::RowNotFound);
        let is = rendered(&handle.render(), DB_ACQUIRE_TIMEOUTS).expect("counted");
        assert_eq!(is - was, 1.0);
    }

    #[test]
    fn refusals_are_counted_by_limit() {
        let handle = install();
        let series = r#"throttle_refusals_total{limit="code_checks_per_account"}"#;
        let was = rendered(&handle.render(), series).unwrap_or(0.0);
        Limit::CodeChecksPerAccount.refused();
        Limit::CodeChecksPerAccount.refused();
        assert_eq!(
            rendered(&handle.render(), series).expect("counted") - was,
            2.0
        );
    }

    #[test]
    fn consumers_are_exported_per_consumer() {
        let handle = install();
        consumer_metrics(&serde_json::json!({
            "running": true,
            "partitions": ["users/0"],
            "consumers": {
                "replicaOfUsers": {"kind": "replica", "applied": 5, "duplicates": 1, "retries": 2, "deadLettered": 0, "lag": 7, "lastFailure": null},
            },
        }));
        let text = handle.render();
        for line in [
            r#"consumer_applied_total{consumer="replicaOfUsers"} 5"#,
            r#"consumer_retries_total{consumer="replicaOfUsers"} 2"#,
            r#"consumer_dead_letters_total{consumer="replicaOfUsers"} 0"#,
            r#"consumer_lag_messages{consumer="replicaOfUsers"} 7"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        for key in ["running", "partitions", "consumers"] {
            assert!(!text.contains(&format!("consumer=\"{key}\"")), "{text}");
        }
    }
}
