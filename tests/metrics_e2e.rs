//! The auth service's Prometheus metrics, scraped from `METRICS_ADDR`
//! around an exact number of requests: the counters move by exactly what
//! the test did, under the matched route's label, and the pool and outbox
//! gauges are there.

use reqwest::StatusCode;
use std::collections::BTreeMap;
use std::time::Duration;
use tests::{create_user, eventually, expect, free_port, start_auth_service, Broker, TestDb};

/// The recorder is the process's: one test at a time, so that one
/// service's scrape-time gauges are not another's.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A sample: its name and labels.
type Key = (String, BTreeMap<String, String>);

/// The samples of a scrape in the Prometheus text format.
fn parse(text: &str) -> BTreeMap<Key, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample and its value");
        let value: f64 = value.parse().expect("a number");
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => (name.to_string(), labels(rest)),
        };
        out.insert((name, labels), value);
    }
    out
}

/// `k="v",k2="v2"}` (values escape `\`, `"` and newlines).
fn labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = text.chars();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let key = key.trim_start_matches(',').to_string();
        if key.is_empty() || key == "}" {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "a quoted value in {text}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key, value);
    }
    out
}

fn sample(samples: &BTreeMap<Key, f64>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples.get(&(name.to_string(), labels)).copied()
}

/// How far the sample `name` with `labels` moved from `before` to `after`
/// (absent before: from zero); it must be there after.
fn moved_between(
    before: &BTreeMap<Key, f64>,
    after: &BTreeMap<Key, f64>,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    let was = sample(before, name, labels).unwrap_or(0.0);
    let is = sample(after, name, labels)
        .unwrap_or_else(|| panic!("{name} {labels:?} after the requests"));
    is - was
}

async fn scrape(addr: &str) -> BTreeMap<Key, f64> {
    let res = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("the metrics listener answers");
    assert_eq!(res.status(), StatusCode::OK);
    let kind = res.headers()["content-type"]
        .to_str()
        .expect("text")
        .to_string();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    parse(&res.text().await.expect("a body"))
}

#[tokio::test]
async fn requests_move_the_counters_by_exactly_what_was_done() {
    let _one = ONE_AT_A_TIME.lock().await;
    let db = TestDb::create().await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let server = start_auth_service(&db.url, &[("METRICS_ADDR", &metrics)]).await;
    let admin = server.admin().await;
    // An event waits in the outbox: there is no broker.
    let user = create_user(&admin, "metered@example.com", "Meg Meter").await;
    let id = user["id"].as_str().expect("an id");

    let before = scrape(&metrics).await;
    for _ in 0..7 {
        expect(StatusCode::OK, &admin.get(&format!("/v1/users/{id}")).await);
    }
    for _ in 0..3 {
        let missing = uuid::Uuid::new_v4();
        let (status, body) = admin.get(&format!("/v1/users/{missing}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    for i in 0..2 {
        let (status, _) = admin.get(&format!("/nowhere/{i}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    // Never on the public listener.
    let (status, _) = server.get("/metrics").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let after = scrape(&metrics).await;

    let moved = |name: &str, labels: &[(&str, &str)]| moved_between(&before, &after, name, labels);
    let route = |status| {
        [
            ("route", "/v1/users/{id}"),
            ("method", "GET"),
            ("status", status),
        ]
    };
    assert_eq!(moved("http_requests_total", &route("200")), 7.0);
    assert_eq!(moved("http_requests_total", &route("404")), 3.0);
    assert_eq!(
        moved("http_request_duration_seconds_count", &route("200")),
        7.0
    );
    assert_eq!(
        moved("http_request_duration_seconds_count", &route("404")),
        3.0
    );
    let mut bucket = route("200").to_vec();
    bucket.push(("le", "+Inf"));
    assert_eq!(moved("http_request_duration_seconds_bucket", &bucket), 7.0);
    let unmatched = [("route", "unmatched"), ("method", "GET"), ("status", "404")];
    // `/metrics` on the public port was unmatched too.
    assert_eq!(moved("http_requests_total", &unmatched), 3.0);
    // Bounded labels: no raw path, no id.
    for (name, labels) in after.keys() {
        if let Some(route) = labels.get("route") {
            assert!(
                !route.contains(id) && !route.starts_with("/nowhere"),
                "{name} {labels:?}"
            );
        }
    }

    for gauge in [
        "db_pool_connections_in_use",
        "db_pool_connections_idle",
        "outbox_oldest_pending_age_seconds",
        "read_events_dropped_total",
    ] {
        let v = sample(&after, gauge, &[]).unwrap_or_else(|| panic!("{gauge} in the scrape"));
        assert!(v >= 0.0, "{gauge} {v}");
    }
    let pending = sample(&after, "outbox_pending_events", &[]).expect("the outbox backlog");
    let (rows,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM event_outbox WHERE delivered_at IS NULL")
            .fetch_one(&mut db.connect().await)
            .await
            .expect("the backlog");
    assert!(rows >= 1);
    assert_eq!(pending, rows as f64);
    let idle = sample(&after, "db_pool_connections_idle", &[]).expect("idle");
    let in_use = sample(&after, "db_pool_connections_in_use", &[]).expect("in use");
    assert!(
        idle + in_use >= 1.0 && idle + in_use <= 4.0,
        "{idle} + {in_use}"
    );
}

/// The events not yet delivered.
async fn pending(db: &TestDb) -> i64 {
    let (rows,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM event_outbox WHERE delivered_at IS NULL")
            .fetch_one(&mut db.connect().await)
            .await
            .expect("the backlog");
    rows
}

#[tokio::test]
async fn the_relay_counts_every_event_it_published() {
    let _one = ONE_AT_A_TIME.lock().await;
    let broker = Broker::start().await;
    let db = TestDb::create().await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let server = start_auth_service(
        &db.url,
        &[
            ("KAFKA_BROKERS", &broker.brokers()),
            ("KAFKA_LINGER_MS", "0"),
            ("METRICS_ADDR", &metrics),
        ],
    )
    .await;
    let admin = server.admin().await;
    let limit = Duration::from_secs(30);
    eventually("the bootstrap events are published", limit, || async {
        pending(&db).await == 0
    })
    .await;
    let (last,): (i64,) = sqlx::query_as("SELECT coalesce(max(id), 0) FROM event_outbox")
        .fetch_one(&mut db.connect().await)
        .await
        .expect("the last event");
    let before = scrape(&metrics).await;
    for i in 0..3 {
        create_user(&admin, &format!("relayed{i}@example.com"), "Rel Ayed").await;
    }
    let (written,): (i64,) = sqlx::query_as("SELECT count(*) FROM event_outbox WHERE id > $1")
        .bind(last)
        .fetch_one(&mut db.connect().await)
        .await
        .expect("the new events");
    assert!(written >= 3, "{written}");
    eventually("the new events are published", limit, || async {
        pending(&db).await == 0
    })
    .await;
    let after = scrape(&metrics).await;
    let published = |s: &BTreeMap<Key, f64>| sample(s, "outbox_relay_published_total", &[]);
    assert_eq!(
        published(&after).expect("published") - published(&before).expect("published"),
        written as f64
    );
    assert_eq!(sample(&after, "outbox_pending_events", &[]), Some(0.0));
    assert_eq!(
        sample(&after, "outbox_oldest_pending_age_seconds", &[]),
        Some(0.0)
    );
    assert!(sample(&after, "outbox_relay_failures_total", &[]).is_some());
}

/// A Server-Sent Events stream of `api`'s caller, open while it is kept.
async fn open_stream(api: &tests::Api) -> reqwest::Response {
    api.client
        .get(format!("{}/v1/events", api.base))
        .bearer_auth(api.token.as_deref().expect("signed in"))
        .send()
        .await
        .expect("the stream answers")
}

/// Posts `body(i)` to `path` three times: the first two answer `passing`,
/// the third 429 (a limit of two in the window).
async fn two_pass_then_throttled(
    api: &tests::Api,
    path: &str,
    passing: StatusCode,
    body: impl Fn(usize) -> serde_json::Value,
) {
    for i in 0..3 {
        let (status, answer) = api.post(path, body(i)).await;
        let wanted = if i < 2 {
            passing
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(status, wanted, "{path} #{i}: {answer}");
    }
}

#[tokio::test]
async fn waits_streams_and_refusals_move_by_exactly_what_was_done() {
    let _one = ONE_AT_A_TIME.lock().await;
    let db = TestDb::create().await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let server = start_auth_service(
        &db.url,
        &[
            ("METRICS_ADDR", &metrics),
            ("PUBLIC_WRITES_PER_ADDRESS", "2"),
            ("LOGIN_PER_ACCOUNT", "2"),
        ],
    )
    .await;
    let admin = server.admin().await;
    let before = scrape(&metrics).await;

    // Three creates: a hash and a transaction each.
    for i in 0..3 {
        create_user(&admin, &format!("waited{i}@example.com"), "Wai Ted").await;
    }
    // Two registrations pass (a hash and a transaction each), the third is
    // refused before either.
    two_pass_then_throttled(&server, "/v1/register", StatusCode::CREATED, |i| {
        serde_json::json!({ "email": format!("joiner{i}@example.com"), "password": "a decent secret", "fullname": "Jo Iner" })
    })
    .await;
    // Two wrong secrets are hashed and refused; the third is throttled unhashed.
    two_pass_then_throttled(
        &server,
        "/v1/login",
        StatusCode::UNAUTHORIZED,
        |_| serde_json::json!({ "email": "waited0@example.com", "password": "not the secret" }),
    )
    .await;
    // A session holds four streams at most: the fifth is refused.
    let mut streams = Vec::new();
    for _ in 0..4 {
        let stream = open_stream(&admin).await;
        assert_eq!(stream.status(), StatusCode::OK);
        streams.push(stream);
    }
    assert_eq!(
        open_stream(&admin).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let after = scrape(&metrics).await;

    let moved = |name: &str, labels: &[(&str, &str)]| moved_between(&before, &after, name, labels);
    assert_eq!(moved("db_pool_acquire_seconds_count", &[]), 5.0);
    assert_eq!(moved("hashing_wait_seconds_count", &[]), 7.0);
    assert_eq!(sample(&after, "hashing_queue_depth", &[]), Some(0.0));
    assert_eq!(moved("realtime_clients", &[]), 4.0);
    for (limit, refused) in [
        ("public_writes_per_address", 1.0),
        ("sign_in_per_account", 1.0),
        ("realtime_streams", 1.0),
    ] {
        assert_eq!(
            moved("throttle_refusals_total", &[("limit", limit)]),
            refused,
            "{limit}"
        );
    }
    assert_eq!(
        sample(&after, "db_pool_acquire_timeouts_total", &[]).unwrap_or(0.0),
        sample(&before, "db_pool_acquire_timeouts_total", &[]).unwrap_or(0.0),
        "no request waited for a connection in vain"
    );

    // Closed streams leave the gauge as they found it.
    let clients = sample(&before, "realtime_clients", &[]).unwrap_or(0.0);
    drop(streams);
    eventually(
        "the closed streams are no longer counted",
        Duration::from_secs(30),
        || async { sample(&scrape(&metrics).await, "realtime_clients", &[]) == Some(clients) },
    )
    .await;
}
