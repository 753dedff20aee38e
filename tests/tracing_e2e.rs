//! Traces across HTTP and Kafka: both services' real binaries export spans
//! over OTLP http/protobuf to a receiver inside this test, which decodes
//! them with `opentelemetry-proto`. One trace must link the request that
//! registered a user, the outbox event it wrote, the relay's producer span
//! and the listing service's consumer span; the session event of a login
//! names the login's trace; and no span carries a secret.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tests::{
    consume, eventually, expect, free_port, Api, Broker, ServiceProcess, TestDb, LISTING_BINARY,
};

/// A span as the receiver got it, with the service that sent it.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: Vec<(String, String)>,
}

impl Got {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// An OTLP/HTTP receiver on a free port: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`, every span kept.
async fn receiver() -> (String, Arc<Mutex<Vec<Got>>>) {
    let spans: Arc<Mutex<Vec<Got>>> = Arc::default();
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let kept = kept.clone();
                async move {
                    assert_eq!(
                        headers.get("content-type").and_then(|v| v.to_str().ok()),
                        Some("application/x-protobuf"),
                        "OTLP http/protobuf"
                    );
                    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP export");
                    let mut kept = kept.lock().expect("spans");
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|a| a.key == "service.name")
                            .map(|a| text(a.value.as_ref()))
                            .unwrap_or_default();
                        for scope in resource.scope_spans {
                            for s in scope.spans {
                                kept.push(Got {
                                    service: service.clone(),
                                    name: s.name,
                                    kind: s.kind,
                                    trace_id: hex(&s.trace_id),
                                    span_id: hex(&s.span_id),
                                    parent: hex(&s.parent_span_id),
                                    attributes: s
                                        .attributes
                                        .iter()
                                        .map(|a| (a.key.clone(), text(a.value.as_ref())))
                                        .collect(),
                                });
                            }
                        }
                    }
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), spans)
}

fn of_trace(spans: &Arc<Mutex<Vec<Got>>>, trace: &str) -> Vec<Got> {
    spans
        .lock()
        .expect("spans")
        .iter()
        .filter(|s| s.trace_id == trace)
        .cloned()
        .collect()
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const LOGIN_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_links_a_request_its_event_and_the_consuming_service() {
    let (endpoint, spans) = receiver().await;
    let broker = Broker::start().await;
    let (auth_db, listing_db) = (TestDb::create().await, TestDb::create().await);
    let brokers = broker.brokers();
    // Short export delays, so the spans arrive while the test waits.
    let tracing = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("KAFKA_BROKERS", brokers.as_str()),
        ("KAFKA_LINGER_MS", "0"),
    ];
    let auth = ServiceProcess::start("127.0.0.1", free_port(), &auth_db.url, &tracing).await;
    let jwks = format!("http://127.0.0.1:{}/v1/.well-known/jwks.json", auth.port);
    let mut listing_settings = tracing.to_vec();
    listing_settings.push(("JWKS_URL", &jwks));
    let listing = ServiceProcess::start_binary(
        LISTING_BINARY,
        "127.0.0.1",
        free_port(),
        &listing_db.url,
        &listing_settings,
    )
    .await;
    let api: Api = auth.api();

    // A registration that arrives inside a caller's trace.
    let password = "traced but never shown";
    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let registered = expect(
        StatusCode::CREATED,
        &api.call(
            Method::POST,
            "/v1/register",
            Some(
                json!({ "email": "tracy@example.com", "password": password, "fullname": "Tracy" }),
            ),
            &[("traceparent", &traceparent)],
        )
        .await,
    );

    // The request, its outbox write, the producer span and the listing
    // service's consumer span, all in the caller's trace.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let seen = of_trace(&spans, TRACE);
        if seen
            .iter()
            .any(|s| s.service == "airbnb-listing-service" && s.kind == SpanKind::Consumer as i32)
        {
            break seen;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no consumer span in the trace within 60 s; in it: {seen:#?}\nall: {:#?}\nauth log: {}\nlisting log: {}",
            spans.lock().expect("spans").iter().map(|s| (&s.service, &s.name, &s.trace_id)).collect::<Vec<_>>(),
            auth.log(),
            listing.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by_id = |id: &str| seen.iter().find(|s| s.span_id == id);
    let server = seen
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap_or_else(|| panic!("a server span: {seen:#?}"));
    assert_eq!(server.service, "airbnb-auth-service");
    assert_eq!(server.name, "POST /v1/register");
    assert_eq!(
        server.parent, CALLER_SPAN,
        "the caller's span is the parent"
    );
    assert_eq!(server.attribute("http.route"), Some("/v1/register"));
    assert_eq!(server.attribute("http.response.status_code"), Some("201"));
    let statements: Vec<&Got> = seen
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32 && s.attribute("db.system.name").is_some())
        .collect();
    assert!(
        statements.iter().any(|s| s
            .attribute("db.query.text")
            .is_some_and(|q| q.contains("INSERT"))),
        "an insert statement's span: {statements:#?} in {:#?}",
        seen.iter()
            .map(|s| (&s.service, &s.name, s.kind, &s.attributes))
            .collect::<Vec<_>>()
    );
    let enqueue = seen
        .iter()
        .find(|s| s.name == "outbox.enqueue")
        .unwrap_or_else(|| panic!("the outbox write: {seen:#?}"));
    let consumer = seen
        .iter()
        .find(|s| s.kind == SpanKind::Consumer as i32)
        .expect("the consumer span");
    assert!(
        consumer.name.ends_with("dbevent-user-created process"),
        "{consumer:?}"
    );
    assert_eq!(consumer.attribute("consumer"), Some("hosts"));
    // consumer -> producer -> enqueue -> ... -> the request.
    let producer = by_id(&consumer.parent)
        .unwrap_or_else(|| panic!("the consumer's parent: {consumer:?} in {seen:#?}"));
    assert_eq!(producer.kind, SpanKind::Producer as i32);
    assert_eq!(producer.service, "airbnb-auth-service");
    assert_eq!(
        producer.parent, enqueue.span_id,
        "the event names the write that made it"
    );
    let mut up = enqueue.clone();
    while up.span_id != server.span_id {
        up = by_id(&up.parent)
            .unwrap_or_else(|| panic!("{up:?} has no parent in the trace"))
            .clone();
    }

    // The record on the broker carries the trace context (the bootstrap
    // admin's user-created event, in a trace of its own, is there too).
    let in_trace =
        |r: &tests::Consumed| r.headers.get("ce_traceid").map(String::as_str) == Some(TRACE);
    let records = consume(
        &brokers,
        &["airbnb3-auth-service-dbevent-user-created"],
        3,
        Duration::from_secs(20),
        |got| got.iter().any(in_trace),
    )
    .await;
    let record = records
        .iter()
        .find(|r| in_trace(r))
        .unwrap_or_else(|| panic!("the registration's record: {records:#?}"));
    let header = record.headers.get("traceparent").expect("traceparent");
    assert_eq!(header, &format!("00-{TRACE}-{}-01", producer.span_id));
    assert_eq!(
        producer.attribute("messaging.message.id"),
        record.headers.get("ce_id").map(String::as_str)
    );
    assert_eq!(record.payload["email"], "tracy@example.com", "{registered}");

    // A login inside another trace: its session event names that trace.
    let answer = api
        .call(
            Method::POST,
            "/v1/login",
            Some(json!({ "email": "tracy@example.com", "password": password })),
            &[("traceparent", &format!("00-{LOGIN_TRACE}-{CALLER_SPAN}-01"))],
        )
        .await;
    let session = &expect(StatusCode::OK, &answer)["session"];
    let token = session["accessToken"]
        .as_str()
        .expect("a token")
        .to_string();
    let me = session["userId"].as_str().expect("the user").to_string();
    let sessions = consume(
        &brokers,
        &[airbnb_auth_service::topics::SESSION],
        3,
        Duration::from_secs(20),
        |got| got.iter().any(|r| r.payload["name"] == "sessionCreated"),
    )
    .await;
    let created = sessions
        .iter()
        .find(|r| r.payload["name"] == "sessionCreated")
        .expect("sessionCreated");
    assert_eq!(created.payload["traceId"], LOGIN_TRACE);

    // A signed-in call's span names the caller's role, never the token.
    let _ = api
        .with_token(&token)
        .call(
            Method::GET,
            &format!("/v1/users/{me}"),
            None,
            &[("traceparent", &format!("00-{LOGIN_TRACE}-{CALLER_SPAN}-01"))],
        )
        .await;
    eventually("the signed-in call's span", Duration::from_secs(30), || {
        let done = of_trace(&spans, LOGIN_TRACE)
            .iter()
            .any(|s| s.kind == SpanKind::Server as i32 && s.attribute("caller.role").is_some());
        async move { done }
    })
    .await;

    // No span anywhere carries the password or the token.
    let all = spans.lock().expect("spans").clone();
    for s in &all {
        for (k, v) in &s.attributes {
            assert!(
                !v.contains(password) && !v.contains(&token),
                "{} span {:?} has a secret in {k}",
                s.service,
                s.name
            );
        }
    }
    drop(listing);
}

/// With no exporter (an in-process service: nothing installs one), the
/// trace context still travels: a login's session event names the
/// caller's trace, or a fresh 32-hex trace when there is none, and each
/// record carries it as `traceparent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_exporter_session_events_still_name_the_trace() {
    let (broker, _db, running) = tests::auth_service_with_broker().await;
    let api = running.api.clone();
    expect(
        StatusCode::CREATED,
        &api.post(
            "/v1/register",
            json!({ "email": "quiet@example.com", "password": "untraced secret", "fullname": "Q" }),
        )
        .await,
    );
    let login = |parent: Option<String>| {
        let api = api.clone();
        async move {
            let headers: Vec<(&str, &str)> = parent
                .as_deref()
                .map(|p| vec![("traceparent", p)])
                .unwrap_or_default();
            let answer = api
                .call(
                    Method::POST,
                    "/v1/login",
                    Some(json!({ "email": "quiet@example.com", "password": "untraced secret" })),
                    &headers,
                )
                .await;
            expect(StatusCode::OK, &answer)["session"]["sessionId"]
                .as_str()
                .expect("a session id")
                .to_string()
        }
    };
    let traced = login(Some(format!("00-{LOGIN_TRACE}-{CALLER_SPAN}-01"))).await;
    let untraced = login(None).await;
    let created = |session: &str| {
        let session = session.to_string();
        move |r: &tests::Consumed| {
            r.payload["name"] == "sessionCreated" && r.payload["sessionId"] == session.as_str()
        }
    };
    let records = consume(
        &broker.brokers(),
        &[airbnb_auth_service::topics::SESSION],
        3,
        Duration::from_secs(20),
        |got| got.iter().any(created(&traced)) && got.iter().any(created(&untraced)),
    )
    .await;
    let traced = records
        .iter()
        .find(|r| created(&traced)(r))
        .expect("traced");
    assert_eq!(traced.payload["traceId"], LOGIN_TRACE);
    let parent = &traced.headers["traceparent"];
    assert!(
        parent.starts_with(&format!("00-{LOGIN_TRACE}-")),
        "{parent}"
    );
    assert!(
        !parent.contains(CALLER_SPAN),
        "the login is a span of its own: {parent}"
    );
    let untraced = records
        .iter()
        .find(|r| created(&untraced)(r))
        .expect("untraced");
    let trace = untraced.payload["traceId"].as_str().expect("a trace id");
    assert_eq!(trace.len(), 32);
    assert!(trace
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_ne!(trace, LOGIN_TRACE);
    assert_eq!(untraced.headers["ce_traceid"], trace);
}
