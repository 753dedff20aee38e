//! Logs and traces: the process's `tracing` subscriber, the OpenTelemetry
//! exporter behind it, and the span of every request.
//!
//! - Logs go to stdout as text, or as JSON lines (`LOG_FORMAT=json`) that
//!   carry the request's `request_id`, `trace_id` and `span_id` (fields of
//!   the request span, listed under `spans`). `RUST_LOG` filters them
//!   (default `info`).
//! - Traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are exported over
//!   OTLP http/protobuf to `<endpoint>/v1/traces` in batches, from a thread
//!   of the SDK's own; with it unset no exporter exists and nothing is
//!   recorded. Exported: a server span per request (route, method, status,
//!   caller role: never a token, a body or a query string), a client span
//!   per SQL statement (its text with placeholders, never the values), the
//!   outbox's write, the relay's producer span per event and the consumers'
//!   spans per event ([`crate::trace`] carries the context between them).
//!   `OTEL_TRACES_SAMPLER_ARG` samples new traces (parent-based: a request
//!   that arrives sampled stays sampled).

use crate::config::{ConfigError, Env};
use crate::trace::{self, TraceContext};
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::trace::{Span as _, SpanKind, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Empty, Field, Visit};
use tracing::{Instrument, Level, Subscriber};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("{other:?} is not text or json")),
        }
    }
}

/// Where logs and traces go.
#[derive(Clone, PartialEq)]
pub struct TelemetrySettings {
    /// `LOG_FORMAT`: `text` (default) or `json`.
    pub log_format: LogFormat,
    /// `RUST_LOG`: which log lines are written (default `info`).
    pub log_filter: String,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector's base URL; spans are
    /// exported only when it is set.
    pub otlp_endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_HEADERS`: `key=value,...` sent with each export
    /// (a collector's API key: kept in the Secret).
    pub otlp_headers: Option<String>,
    /// `OTEL_SERVICE_NAME` (default the service's name).
    pub service_name: Option<String>,
    /// `OTEL_TRACES_SAMPLER_ARG` (default 1): the share of new traces sampled.
    pub sample_ratio: f64,
}

/// Never prints the exporter's headers.
impl std::fmt::Debug for TelemetrySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetrySettings")
            .field("log_format", &self.log_format)
            .field("log_filter", &self.log_filter)
            .field("otlp_endpoint", &self.otlp_endpoint)
            .field("otlp_headers", &crate::config::redacted(&self.otlp_headers))
            .field("service_name", &self.service_name)
            .field("sample_ratio", &self.sample_ratio)
            .finish()
    }
}

impl TelemetrySettings {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let log_filter = env.text("RUST_LOG").unwrap_or_else(|| "info".to_string());
        if let Err(e) = EnvFilter::try_new(&log_filter) {
            return Err(ConfigError::Invalid {
                name: "RUST_LOG",
                reason: format!("{log_filter:?}: {e}"),
            });
        }
        let otlp_endpoint = env.text("OTEL_EXPORTER_OTLP_ENDPOINT");
        if let Some(e) = &otlp_endpoint {
            let parsed = url::Url::parse(e).map_err(|err| ConfigError::Invalid {
                name: "OTEL_EXPORTER_OTLP_ENDPOINT",
                reason: format!("{e:?}: {err}"),
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(ConfigError::Invalid {
                    name: "OTEL_EXPORTER_OTLP_ENDPOINT",
                    reason: format!("{e:?}: an http or https URL is expected"),
                });
            }
        }
        let otlp_headers = env.secret("OTEL_EXPORTER_OTLP_HEADERS");
        if let Some(h) = &otlp_headers {
            if parse_headers(h).is_none() {
                return Err(ConfigError::Invalid {
                    name: "OTEL_EXPORTER_OTLP_HEADERS",
                    reason: "expected key=value pairs separated by commas".into(),
                });
            }
        }
        let sample_ratio: f64 = env.parse("OTEL_TRACES_SAMPLER_ARG", "1")?;
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(ConfigError::Invalid {
                name: "OTEL_TRACES_SAMPLER_ARG",
                reason: format!("{sample_ratio} is not between 0 and 1"),
            });
        }
        Ok(Self {
            log_format: env.parse("LOG_FORMAT", "text")?,
            log_filter,
            otlp_endpoint,
            otlp_headers,
            service_name: env.text("OTEL_SERVICE_NAME"),
            sample_ratio,
        })
    }

    /// Where spans go, for the start-up log and `cargo xtask dev`.
    pub fn traces_url(&self) -> Option<String> {
        self.otlp_endpoint
            .as_deref()
            .map(|e| format!("{}/v1/traces", e.trim_end_matches('/')))
    }
}

/// `key=value,key2=value2` (values percent-decoded, as the OTLP spec says).
fn parse_headers(s: &str) -> Option<HashMap<String, String>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let k = k.trim();
            if k.is_empty() {
                return None;
            }
            let v = url::form_urlencoded::parse(format!("v={}", v.trim()).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())?;
            Some((k.to_string(), v))
        })
        .collect()
}

/// The installed subscriber's exporter; [`Telemetry::shutdown`] sends what
/// is still buffered.
#[must_use = "shut it down before exiting, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            // The SDK's shutdown blocks until its export thread is done, and
            // that thread's requests run on this runtime: off the workers.
            let stopped = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = stopped {
                eprintln!("exporting the last spans failed: {e}");
            }
        }
    }
}

/// Installs the process's subscriber: logs as `settings` say and, with an
/// OTLP endpoint, the span exporter. `service` names the spans' source
/// unless `OTEL_SERVICE_NAME` does. Call it once, inside the runtime.
pub fn init(settings: &TelemetrySettings, service: &str) -> Telemetry {
    let filter =
        EnvFilter::try_new(&settings.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = log_layer(settings.log_format, filter, std::io::stdout);
    let service = settings
        .service_name
        .clone()
        .unwrap_or_else(|| service.to_string());
    let provider = match &settings.otlp_endpoint {
        Some(_) => match tracer_provider(settings, &service) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("traces are not exported: {e:#}");
                None
            }
        },
        None => None,
    };
    let spans = provider.as_ref().map(|p| {
        // Statements become spans of their own (`SqlSpans`), not span events.
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(service))
            .with_filter(filter_fn(|m| {
                !m.target().starts_with("sqlx") && exported(m)
            }))
            .and_then(
                SqlSpans {
                    tracer: p.tracer("sqlx"),
                }
                // It sees the spans the exporter sees (to find a statement's
                // parent) and of the events only sqlx's statements.
                // (`enabled!` asks with hint metadata, which is no span either).
                .with_filter(filter_fn(|m| {
                    if m.is_span() {
                        exported(m)
                    } else {
                        m.target() == "sqlx::query"
                    }
                })),
            )
    });
    match tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
    {
        Ok(()) => {
            if provider.is_some() {
                // For `SqlSpans` (an optional layer is not told of its dispatch).
                tracing::dispatcher::get_default(|d| {
                    let _ = DISPATCH.set(d.downgrade());
                });
                trace::set_exporting();
                if let Some(url) = settings.traces_url() {
                    tracing::info!(%url, "exporting traces");
                }
            }
        }
        Err(e) => eprintln!("tracing already initialised: {e}"),
    }
    Telemetry { provider }
}

/// Log lines in `format` to `writer`, as `filter` chooses. JSON lines list
/// the spans they were written in, with their fields: the request span's
/// `request_id`, `trace_id` and `span_id` among them.
fn log_layer<S, W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .with_filter(filter)
            .boxed(),
    }
}

/// What is exported: info and above, and the runtime's own spans (the
/// outbox, the relay, consumers), which are debug spans so that they cost
/// nothing unless spans are exported or logs ask for them.
fn exported(m: &tracing::Metadata<'_>) -> bool {
    let level = *m.level();
    level <= Level::INFO || (level <= Level::DEBUG && m.target().starts_with("svcgen_runtime"))
}

fn tracer_provider(
    settings: &TelemetrySettings,
    service: &str,
) -> anyhow::Result<SdkTracerProvider> {
    let url = settings
        .traces_url()
        .ok_or_else(|| anyhow::anyhow!("no OTLP endpoint"))?;
    let client = ExportClient {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
        runtime: tokio::runtime::Handle::try_current()?,
    };
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(Duration::from_secs(10))
        .with_http_client(client);
    if let Some(headers) = settings.otlp_headers.as_deref().and_then(parse_headers) {
        exporter = exporter.with_headers(headers);
    }
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name(service.to_string())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter.build()?)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// The exporter's HTTP client: the SDK exports from a thread of its own,
/// outside the runtime, so each request runs on the runtime and the thread
/// waits for its answer.
#[derive(Debug)]
struct ExportClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let (parts, body) = request.into_parts();
        let http = self.http.clone();
        // Built on the runtime too: the request's timeout is a runtime timer.
        let (status, body) = self
            .runtime
            .spawn(async move {
                let answer = http
                    .request(parts.method, parts.uri.to_string())
                    .headers(parts.headers)
                    .body(body)
                    .send()
                    .await?;
                let status = answer.status();
                Ok::<_, reqwest::Error>((status, answer.bytes().await?))
            })
            .await??;
        Ok(opentelemetry_http::Response::builder()
            .status(status)
            .body(body)?)
    }
}

/// Turns sqlx's statement log lines into client spans under the span that
/// ran them, timed by the statement's own clock.
struct SqlSpans {
    tracer: SdkTracer,
}

/// The installed subscriber, which `SqlSpans` asks for a span's context.
static DISPATCH: OnceLock<WeakDispatch> = OnceLock::new();

#[derive(Default)]
struct Statement {
    summary: String,
    text: String,
    elapsed_secs: f64,
    rows_affected: u64,
    rows_returned: u64,
}

impl Visit for Statement {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = value;
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "rows_affected" => self.rows_affected = value,
            "rows_returned" => self.rows_returned = value,
            _ => {}
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => self.summary = value.to_string(),
            "db.statement" => self.text = value.trim().to_string(),
            _ => {}
        }
    }
    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl<S> Layer<S> for SqlSpans
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut statement = Statement::default();
        event.record(&mut statement);
        let parent = ctx
            .event_span(event)
            .zip(DISPATCH.get().and_then(WeakDispatch::upgrade))
            .and_then(|(span, dispatch)| {
                tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)
            });
        let Some(parent) = parent else {
            // A statement outside any span (the relay's polling, pruning):
            // a root span each would only be noise.
            return;
        };
        let end = SystemTime::now();
        let start = end
            .checked_sub(Duration::from_secs_f64(statement.elapsed_secs.max(0.0)))
            .unwrap_or(end);
        // The summary has the statement's verb and table; the full text
        // is there when the summary shortened it.
        let text = if statement.text.is_empty() {
            statement.summary.clone()
        } else {
            statement.text
        };
        let mut span = self
            .tracer
            .span_builder(statement.summary)
            .with_kind(SpanKind::Client)
            .with_start_time(start)
            .with_attributes([
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("db.query.text", text),
                KeyValue::new("db.response.returned_rows", statement.rows_returned as i64),
                KeyValue::new("db.rows_affected", statement.rows_affected as i64),
            ])
            .start_with_context(&self.tracer, &parent);
        span.end_with_timestamp(end);
    }
}

/// The request's span and trace context, around everything else a route
/// does: the incoming `traceparent` continued (or a new trace), the
/// [`TraceContext`] in the request's extensions for the handler's events,
/// and the status recorded when the answer is ready.
pub async fn trace_requests(mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(crate::measure::UNMATCHED, MatchedPath::as_str);
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        http.request.method = %req.method(),
        http.route = route,
        http.response.status_code = Empty,
        request_id,
        trace_id = Empty,
        span_id = Empty,
        caller.role = Empty,
        otel.name = Empty,
        otel.kind = "server",
        otel.status_code = Empty,
    );
    let incoming = incoming(req.headers());
    let context = if trace::exporting() && !span.is_disabled() {
        if let Some(parent) = &incoming {
            parent.adopt(&span);
        }
        span.record("otel.name", format!("{} {route}", req.method()));
        TraceContext::of_span(&span)
    } else {
        None
    }
    .unwrap_or_else(|| incoming.map_or_else(TraceContext::fresh, |t| t.child()));
    if !span.is_disabled() {
        span.record("trace_id", context.trace_hex());
        span.record("span_id", context.span_hex());
    }
    req.extensions_mut().insert(context);
    let res = next.run(req).instrument(span.clone()).await;
    let status = res.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    tracing::debug!(parent: &span, status = status.as_u16(), "answered");
    res
}

/// The request's `traceparent` and `tracestate`, when well formed.
fn incoming(headers: &axum::http::HeaderMap) -> Option<TraceContext> {
    let parent = headers.get("traceparent")?.to_str().ok()?;
    let state = headers.get("tracestate").and_then(|v| v.to_str().ok());
    TraceContext::parse(parent, state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;

    fn settings(vars: &[(&str, &str)]) -> Result<TelemetrySettings, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TelemetrySettings::from_env(&Env::new(|k| vars.get(k).cloned()))
    }

    #[test]
    fn by_default_logs_are_text_at_info_and_nothing_is_exported() {
        let s = settings(&[]).expect("defaults");
        assert_eq!(s.log_format, LogFormat::Text);
        assert_eq!(s.log_filter, "info");
        assert_eq!(s.traces_url(), None);
        assert_eq!(s.sample_ratio, 1.0);
    }

    #[test]
    fn the_endpoint_names_the_traces_path_and_bad_settings_are_refused() {
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cr%3Dt,x=y"),
            ("LOG_FORMAT", "json"),
        ])
        .expect("valid");
        assert_eq!(
            s.traces_url().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(s.log_format, LogFormat::Json);
        let headers = parse_headers(s.otlp_headers.as_deref().unwrap_or_default()).expect("pairs");
        assert_eq!(headers["api-key"], "s3cr=t");
        assert!(!format!("{s:?}").contains("s3cr"), "{s:?}");
        for bad in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://collector"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "no-pair"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
            ("LOG_FORMAT", "xml"),
            ("RUST_LOG", "info,[unclosed"),
        ] {
            assert!(settings(&[bad]).is_err(), "{bad:?} was taken");
        }
    }

    #[tokio::test]
    async fn json_log_lines_carry_the_request_and_trace_ids() {
        use axum::routing::get;
        use std::sync::{Arc, Mutex};
        use tower::ServiceExt;
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("lines").extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry().with(log_layer(
            LogFormat::Json,
            EnvFilter::new("info"),
            move || writer.clone(),
        ));
        let _default = tracing::subscriber::set_default(subscriber);
        async fn handler() -> &'static str {
            tracing::info!("inside the handler");
            "ok"
        }
        let app = axum::Router::new()
            .route("/things/{id}", get(handler))
            .layer(axum::middleware::from_fn(trace_requests));
        let req = Request::builder()
            .uri("/things/7")
            .header("x-request-id", "req-42")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .body(axum::body::Body::empty())
            .expect("request");
        app.oneshot(req).await.expect("answer");
        let text = String::from_utf8(lines.0.lock().expect("lines").clone()).expect("UTF-8");
        let line: serde_json::Value = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .find(|l: &serde_json::Value| l["fields"]["message"] == "inside the handler")
            .unwrap_or_else(|| panic!("the handler's line in {text}"));
        let request = &line["spans"][0];
        assert_eq!(request["name"], "request", "{line}");
        assert_eq!(request["request_id"], "req-42");
        assert_eq!(request["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(request["http.route"], "/things/{id}");
        let span = request["span_id"].as_str().expect("a span id");
        assert_eq!(span.len(), 16);
        assert_ne!(span, "00f067aa0ba902b7");
    }

    #[tokio::test]
    async fn a_request_continues_the_incoming_trace_or_starts_one() {
        use axum::routing::get;
        use tower::ServiceExt;
        async fn seen(axum::Extension(t): axum::Extension<TraceContext>) -> String {
            format!("{} {}", t.trace_hex(), t.span_hex())
        }
        let app = axum::Router::new()
            .route("/", get(seen))
            .layer(axum::middleware::from_fn(trace_requests));
        let call = |parent: Option<&str>| {
            let mut req = Request::builder().uri("/");
            if let Some(p) = parent {
                req = req.header("traceparent", p);
            }
            app.clone()
                .oneshot(req.body(axum::body::Body::empty()).expect("request"))
        };
        let body = |res: Response| async {
            let bytes = axum::body::to_bytes(res.into_body(), 1024)
                .await
                .expect("body");
            String::from_utf8(bytes.to_vec()).expect("text")
        };
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let continued = body(call(Some(parent)).await.expect("answer")).await;
        let (trace, span) = continued.split_once(' ').expect("two ids");
        assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(span, "00f067aa0ba902b7", "the request is a span of its own");
        let fresh = body(call(Some("garbage")).await.expect("answer")).await;
        assert_ne!(fresh.split_once(' ').map(|p| p.0), Some(trace));
        assert_eq!(fresh.len(), 32 + 1 + 16);
    }
}
