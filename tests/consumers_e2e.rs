//! Consumers of events, end to end: the listing service keeps a replica of
//! the auth service's users (its hosts), runs `retireHost` when a user is
//! deleted and counts listings per city with a hook. One PostgreSQL (a
//! database per service), one tansu broker, and both services' real binaries.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tests::{
    consume, eventually, expect, free_port, sign_in, Api, Broker, ServiceProcess, TestDb,
    ADMIN_EMAIL, ADMIN_PASSWORD, LISTING_BINARY,
};

const USER_CREATED: &str = "airbnb3-auth-service-dbevent-user-created";
const USER_UPDATED: &str = "airbnb3-auth-service-dbevent-user-updated";
const USER_DELETED: &str = "airbnb3-auth-service-dbevent-user-deleted";
const LISTING_CREATED: &str = "airbnb3-listing-service-dbevent-listing-created";
const HOSTS_DEAD_LETTERS: &str = "airbnb3-listing-service-hosts-dead-letter";
/// `CONSUMER_SESSION_TIMEOUT_MS` of every listing replica here.
const SESSION_TIMEOUT_MS: u64 = 6_000;

/// Each service owns its database, on the one PostgreSQL server.
struct World {
    broker: Broker,
    auth_db: TestDb,
    listing_db: TestDb,
    auth: ServiceProcess,
}

async fn world() -> World {
    let broker = Broker::start().await;
    let (auth_db, listing_db) = (TestDb::create().await, TestDb::create().await);
    let auth = ServiceProcess::start(
        "127.0.0.1",
        free_port(),
        &auth_db.url,
        &[
            ("KAFKA_BROKERS", &broker.brokers()),
            ("KAFKA_LINGER_MS", "0"),
        ],
    )
    .await;
    World {
        broker,
        auth_db,
        listing_db,
        auth,
    }
}

/// A listing service process reading the auth service's events; `extra` over
/// the settings every test uses (short retries, a short session timeout).
async fn listing(w: &World, extra: &[(&str, &str)]) -> ServiceProcess {
    listing_on(&w.broker, &w.listing_db, w.auth.port, extra).await
}

async fn listing_on(
    broker: &Broker,
    db: &TestDb,
    auth_port: u16,
    extra: &[(&str, &str)],
) -> ServiceProcess {
    let brokers = broker.brokers();
    let jwks = format!("http://127.0.0.1:{auth_port}/v1/.well-known/jwks.json");
    let session_timeout = SESSION_TIMEOUT_MS.to_string();
    let mut settings = vec![
        ("KAFKA_BROKERS", brokers.as_str()),
        ("KAFKA_LINGER_MS", "0"),
        ("JWKS_URL", jwks.as_str()),
        ("JWKS_REFRESH_SECS", "1"),
        ("CONSUMER_RETRY_BACKOFF_MS", "50"),
        ("CONSUMER_MAX_RETRY_BACKOFF_MS", "200"),
        ("CONSUMER_SESSION_TIMEOUT_MS", &session_timeout),
        ("RUST_LOG", "info"),
    ];
    settings.extend_from_slice(extra);
    ServiceProcess::start_binary(LISTING_BINARY, "127.0.0.1", free_port(), &db.url, &settings).await
}

/// `(fullname, avatar, recordVersion, isActive)` per user id.
type Copies = BTreeMap<String, (String, Option<String>, i32, bool)>;

/// The auth service's users, the bootstrap super-admin among them.
async fn users(db: &PgPool) -> Copies {
    rows(
        db,
        "SELECT id::text, fullname, avatar, record_version, is_active FROM users",
    )
    .await
}

/// The listing service's replica.
async fn hosts(db: &PgPool) -> Copies {
    rows(
        db,
        "SELECT id::text, fullname, avatar, record_version, is_active FROM hosts",
    )
    .await
}

async fn rows(db: &PgPool, sql: &str) -> Copies {
    let rows: Vec<(String, String, Option<String>, i32, bool)> =
        sqlx::query_as(sql).fetch_all(db).await.expect("rows");
    rows.into_iter()
        .map(|(id, n, a, v, act)| (id, (n, a, v, act)))
        .collect()
}

/// `consuming.consumers.<name>` of the listing service's `/healthz`.
async fn consumer_health(listing: &Api, name: &str) -> Value {
    let (status, body) = listing.get("/healthz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["consuming"]["consumers"][name].clone()
}

fn count(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_default()
}

/// Creates a listing, retrying while the host's row is on its way (503).
async fn create_listing(listing: &Api, token: &str, title: &str, city: &str) -> Value {
    let api = listing.with_token(token);
    let body = json!({ "title": title, "city": city, "pricePerNight": 80, "maxGuests": 2 });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, answer) = api.post("/v1/listings", body.clone()).await;
        if status != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
            return expect(StatusCode::CREATED, &(status, answer))["listing"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A record on `topic` as another service of the project would produce it.
async fn produce(brokers: &str, topic: &str, key: &str, payload: &str, event_id: &str) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "ce_id",
            value: Some(event_id),
        })
        .insert(Header {
            key: "ce_type",
            value: Some(topic),
        });
    producer
        .send(
            FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
}

async fn register(auth: &Api, email: &str, fullname: &str) -> (String, String) {
    let password = "a decent secret";
    expect(
        StatusCode::CREATED,
        &auth
            .post(
                "/v1/register",
                json!({ "email": email, "password": password, "fullname": fullname }),
            )
            .await,
    );
    sign_in(auth, email, password).await
}

/// Scenarios 1-3 and 6 of the consumers issue: a registered user appears as
/// a host and their listing shows their name; a profile change follows in
/// version order; replays, duplicates and older versions change nothing; a
/// deleted user's listings are archived once; cities count once per listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_follow_the_auth_services_users_and_replays_change_nothing() {
    let w = world().await;
    let listing = listing(&w, &[]).await;
    let (auth, api) = (w.auth.api(), listing.api());
    let (auth_pool, listing_pool) = (w.auth_db.pool().await, w.listing_db.pool().await);

    // 1. A registered user becomes a host; their first listing shows their name.
    let (token, user_id) = register(&auth, "ana@example.com", "Ana Host").await;
    eventually("the host's row arrives", Duration::from_secs(30), || {
        let pool = listing_pool.clone();
        let id = user_id.clone();
        async move { hosts(&pool).await.contains_key(&id) }
    })
    .await;
    let first = create_listing(&api, &token, "Sunny loft", "Porto").await;
    assert_eq!(first["hostId"], user_id.as_str(), "{first}");
    let page = expect(StatusCode::OK, &api.get("/v1/listings").await);
    assert_eq!(
        page["listings"][0]["host"]["fullname"], "Ana Host",
        "{page}"
    );

    // A listing naming a host this service has not heard of yet is retryable.
    let (admin, _) = sign_in(&auth, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let unknown = json!({ "hostId": uuid::Uuid::new_v4(), "title": "Nobody's", "city": "Porto", "pricePerNight": 1, "maxGuests": 1 });
    let (status, body) = api.with_token(&admin).post("/v1/listings", unknown).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("hostId"),
        "{body}"
    );

    // 2. A profile change follows, in recordVersion order.
    let ana = auth.with_token(&token);
    expect(
        StatusCode::OK,
        &ana.patch(
            &format!("/v1/users/{user_id}/profile"),
            json!({ "fullname": "Ana Q. Host" }),
        )
        .await,
    );
    expect(
        StatusCode::OK,
        &ana.patch(
            &format!("/v1/users/{user_id}/profile"),
            json!({ "avatar": "https://example.com/ana.png" }),
        )
        .await,
    );
    eventually(
        "the replica equals the auth service's users",
        Duration::from_secs(30),
        || {
            let (a, l) = (auth_pool.clone(), listing_pool.clone());
            async move { users(&a).await == hosts(&l).await }
        },
    )
    .await;
    let copy = hosts(&listing_pool).await[&user_id].clone();
    assert_eq!(copy.0, "Ana Q. Host");
    assert_eq!(copy.1.as_deref(), Some("https://example.com/ana.png"));
    assert_eq!(copy.2, 3, "created, then two updates");
    let page = expect(StatusCode::OK, &api.get("/v1/listings").await);
    assert_eq!(
        page["listings"][0]["host"]["fullname"], "Ana Q. Host",
        "{page}"
    );

    // 3. The user topics delivered again (same event ids), and an older
    // version under a new event id after the newer one: nothing changes.
    let delivered = consume(
        &w.broker.brokers(),
        &[USER_CREATED, USER_UPDATED],
        3,
        Duration::from_secs(20),
        |m| m.iter().filter(|m| m.key == user_id).count() >= 3,
    )
    .await;
    let ana_events: Vec<_> = delivered.iter().filter(|m| m.key == user_id).collect();
    assert_eq!(ana_events.len(), 3, "{ana_events:?}");
    let before = consumer_health(&api, "hosts").await;
    for m in &ana_events {
        produce(
            &w.broker.brokers(),
            &m.topic,
            &m.key,
            &m.payload.to_string(),
            &m.headers["ce_id"],
        )
        .await;
    }
    let created = ana_events
        .iter()
        .find(|m| m.topic == USER_CREATED)
        .expect("created event");
    let stale = json!({ "old_user": created.payload, "user": created.payload });
    produce(
        &w.broker.brokers(),
        USER_UPDATED,
        &user_id,
        &stale.to_string(),
        &uuid::Uuid::new_v4().to_string(),
    )
    .await;
    eventually(
        "the consumer took in the replays",
        Duration::from_secs(30),
        || {
            let api = api.clone();
            let before = before.clone();
            async move {
                let now = consumer_health(&api, "hosts").await;
                count(&now, "duplicates") >= count(&before, "duplicates") + 3
                    && count(&now, "applied") > count(&before, "applied")
            }
        },
    )
    .await;
    assert_eq!(
        hosts(&listing_pool).await,
        users(&auth_pool).await,
        "replays change nothing"
    );
    assert_eq!(
        hosts(&listing_pool).await[&user_id].2,
        3,
        "the older version was not applied"
    );

    // The rebuild command replays the topics beside the running service.
    let rebuilt = tokio::process::Command::new(tests::service_binary_of(LISTING_BINARY))
        .arg("rebuild")
        .arg("hosts")
        .env("DATABASE_URL", &w.listing_db.url)
        .env("KAFKA_BROKERS", w.broker.brokers())
        .env("RUST_LOG", "info")
        .envs(tests::child_log_env())
        .output()
        .await
        .expect("rebuild runs");
    tests::keep_output("rebuild", &rebuilt);
    let said = String::from_utf8_lossy(&rebuilt.stdout).to_string()
        + &String::from_utf8_lossy(&rebuilt.stderr);
    assert!(rebuilt.status.success(), "{said}");
    assert!(said.contains("rebuilt"), "{said}");
    assert_eq!(
        hosts(&listing_pool).await,
        users(&auth_pool).await,
        "a rebuild ends where the topics end"
    );
    let refused = tokio::process::Command::new(tests::service_binary_of(LISTING_BINARY))
        .args(["rebuild", "cityCounts"])
        .env("DATABASE_URL", &w.listing_db.url)
        .env("KAFKA_BROKERS", w.broker.brokers())
        .envs(tests::child_log_env())
        .output()
        .await
        .expect("rebuild runs");
    tests::keep_output("rebuild", &refused);
    assert!(!refused.status.success(), "a hook consumer is not replayed");

    // 6. A second listing in Porto: the city hook counted each listing once,
    // whatever was redelivered.
    create_listing(&api, &token, "Quiet room", "Porto").await;
    eventually("both listings are counted", Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            let (_, body) = api.get("/v1/cities").await;
            body["cities"][0]["listingsOffered"] == 2
        }
    })
    .await;
    // Both listing-created events delivered again, with their event ids:
    // the hook does not count them twice.
    let created = consume(
        &w.broker.brokers(),
        &[LISTING_CREATED],
        3,
        Duration::from_secs(20),
        |m| m.len() >= 2,
    )
    .await;
    assert_eq!(created.len(), 2, "{created:?}");
    let before = consumer_health(&api, "cityCounts").await;
    for m in &created {
        produce(
            &w.broker.brokers(),
            LISTING_CREATED,
            &m.key,
            &m.payload.to_string(),
            &m.headers["ce_id"],
        )
        .await;
    }
    eventually("the redeliveries are seen", Duration::from_secs(30), || {
        let api = api.clone();
        let before = before.clone();
        async move {
            let now = consumer_health(&api, "cityCounts").await;
            count(&now, "duplicates") >= count(&before, "duplicates") + 2
        }
    })
    .await;
    let porto: i32 = sqlx::query_scalar("SELECT listings_offered FROM cities WHERE name = 'Porto'")
        .fetch_one(&listing_pool)
        .await
        .expect("Porto");
    assert_eq!(porto, 2, "each listing counted once");

    // The user archives their account: the replica keeps them inactive, and
    // retireHost archives their listings once, with one deleted event each.
    expect(
        StatusCode::OK,
        &ana.call(
            reqwest::Method::DELETE,
            &format!("/v1/users/{user_id}/profile"),
            Some(json!({ "currentPassword": "a decent secret" })),
            &[],
        )
        .await,
    );
    eventually(
        "the host's listings are archived",
        Duration::from_secs(30),
        || {
            let pool = listing_pool.clone();
            let id = user_id.clone();
            async move {
                let active: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM listings WHERE host_id = $1::uuid AND is_active",
                )
                .bind(&id)
                .fetch_one(&pool)
                .await
                .expect("count");
                active == 0
            }
        },
    )
    .await;
    assert!(
        !hosts(&listing_pool).await[&user_id].3,
        "the host is inactive"
    );
    // Deliver the deletion again: retireHost does nothing more.
    let deletion = consume(
        &w.broker.brokers(),
        &[USER_DELETED],
        3,
        Duration::from_secs(20),
        |m| m.iter().any(|m| m.key == user_id),
    )
    .await;
    let deletion = deletion
        .iter()
        .find(|m| m.key == user_id)
        .expect("the deleted event");
    let before = consumer_health(&api, "retireHost").await;
    produce(
        &w.broker.brokers(),
        USER_DELETED,
        &user_id,
        &deletion.payload.to_string(),
        &deletion.headers["ce_id"],
    )
    .await;
    eventually("the redelivery is seen", Duration::from_secs(30), || {
        let api = api.clone();
        let before = before.clone();
        async move {
            count(&consumer_health(&api, "retireHost").await, "duplicates")
                > count(&before, "duplicates")
        }
    })
    .await;
    let archived_events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM event_outbox WHERE topic = 'airbnb3-listing-service-dbevent-listing-deleted'",
    )
    .fetch_one(&listing_pool)
    .await
    .expect("count");
    assert_eq!(archived_events, 2, "each of the two listings archived once");
    let retired: i64 =
        sqlx::query_scalar("SELECT count(*) FROM consumer_inbox WHERE consumer = 'retireHost'")
            .fetch_one(&listing_pool)
            .await
            .expect("count");
    assert_eq!(retired, 1, "one inbox row for the one deletion");
    assert_eq!(hosts(&listing_pool).await, users(&auth_pool).await);
}

/// Scenario 4: a malformed event is retried, then dead-lettered with its
/// error, attempts and original headers; the partition moves on. The
/// listing service starts before the user topics exist, and waits for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_event_is_dead_lettered_and_later_events_of_its_partition_still_apply() {
    let broker = Broker::start().await;
    let db = TestDb::create().await;
    // No auth service: the test produces the user events itself, onto
    // topics that do not exist when the listing service starts.
    let metrics = format!("127.0.0.1:{}", free_port());
    let listing = listing_on(&broker, &db, free_port(), &[("METRICS_ADDR", &metrics)]).await;
    let api = listing.api();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let health = consumer_health(&api, "hosts").await;
    assert_eq!(count(&health, "applied"), 0, "{health}");
    create_topics(
        &broker.brokers(),
        &[USER_CREATED, USER_UPDATED, USER_DELETED],
    )
    .await;

    let key = uuid::Uuid::new_v4().to_string();
    produce(
        &broker.brokers(),
        USER_CREATED,
        &key,
        r#"{"id": "not a uuid", "fullname": 7}"#,
        "bad-1",
    )
    .await;
    let row = json!({
        "id": key, "fullname": "Late Larry", "avatar": null, "isActive": true, "recordVersion": 1,
        "createdAt": "2026-12-01T10:00:00Z", "updatedAt": "2026-12-01T10:00:00Z",
        "email": "larry@example.com", "roleId": "user"
    });
    produce(
        &broker.brokers(),
        USER_CREATED,
        &key,
        &row.to_string(),
        "good-1",
    )
    .await;

    let pool = db.pool().await;
    eventually(
        "the later event of the partition applies",
        Duration::from_secs(60),
        || {
            let pool = pool.clone();
            let key = key.clone();
            async move {
                hosts(&pool)
                    .await
                    .get(&key)
                    .is_some_and(|h| h.0 == "Late Larry")
            }
        },
    )
    .await;
    let dead = consume(
        &broker.brokers(),
        &[HOSTS_DEAD_LETTERS],
        3,
        Duration::from_secs(20),
        |m| !m.is_empty(),
    )
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = &dead[0];
    assert_eq!(d.key, key);
    assert_eq!(d.headers["ce_id"], "bad-1", "the original headers stay");
    assert_eq!(d.headers["dlq_attempts"], "4", "{:?}", d.headers);
    assert_eq!(d.headers["dlq_consumer"], "hosts");
    assert_eq!(d.headers["dlq_topic"], USER_CREATED);
    assert!(
        d.headers["dlq_error"].contains("payload.id"),
        "{:?}",
        d.headers
    );
    let health = consumer_health(&api, "hosts").await;
    assert_eq!(count(&health, "deadLettered"), 1, "{health}");
    assert_eq!(count(&health, "retries"), 3, "{health}");
    assert_eq!(count(&health, "applied"), 1, "{health}");
    // The same counts in the Prometheus metrics.
    let scraped = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .expect("the metrics listener answers")
        .text()
        .await
        .expect("a body");
    for line in [
        r#"consumer_dead_letters_total{consumer="hosts"} 1"#,
        r#"consumer_retries_total{consumer="hosts"} 3"#,
        r#"consumer_applied_total{consumer="hosts"} 1"#,
        r#"consumer_duplicates_total{consumer="hosts"} 0"#,
    ] {
        assert!(scraped.lines().any(|l| l == line), "{line} in\n{scraped}");
    }
    assert!(
        scraped.contains("consumer_lag_messages{consumer=\"hosts\"}"),
        "{scraped}"
    );
    // The dead letter is remembered: its redelivery is not dead-lettered twice.
    let dead_rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM consumer_inbox WHERE consumer = 'hosts' AND dead_lettered",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(dead_rows, 1);
}

/// Scenario 5: two replicas of the listing service share the consumer group;
/// one is killed with SIGKILL while users stream in, and a replacement starts
/// (as an orchestrator would). At the end the replica holds exactly the auth
/// service's users, each event recorded once in the inbox.
///
/// What tansu 0.6's group coordinator does with a member killed without
/// leaving (read in its source, `coordinator/group/administrator.rs`, and
/// seen here): it drops the member once it missed `session.timeout.ms` of
/// heartbeats, checked when another member calls, but starts no rebalance,
/// so the dead member's partitions wait until a member joins; Kafka's
/// coordinator rebalances at the timeout. A replacement that joins before
/// the timeout puts the dead member into the new generation, and its
/// partitions wait for the next join. So the replacement here starts after
/// the timeout, as a pod restarted by its Deployment usually does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_killed_mid_stream_end_with_exactly_the_users_once_each() {
    let w = world().await;
    let first = listing(&w, &[]).await;
    let mut second = listing(&w, &[]).await;
    let admin = w.auth.api().admin().await;
    let (auth_pool, listing_pool) = (w.auth_db.pool().await, w.listing_db.pool().await);
    // Both replicas have partitions before the stream starts.
    for replica in [&first, &second] {
        let api = replica.api();
        eventually(
            "each replica has partitions",
            Duration::from_secs(60),
            || {
                let api = api.clone();
                async move {
                    let (_, body) = api.get("/healthz").await;
                    body["consuming"]["partitions"]
                        .as_array()
                        .is_some_and(|p| !p.is_empty())
                }
            },
        )
        .await;
    }
    // Users stream in until the second replica has applied events of its
    // partitions; then it dies without a word, mid-stream, and a replacement
    // starts; more users follow.
    let mut users_total = 0;
    loop {
        create_and_update(&admin, users_total).await;
        users_total += 1;
        let applied = count(&consumer_health(&second.api(), "hosts").await, "applied");
        if users_total >= 4 && applied > 0 {
            break;
        }
        assert!(
            users_total < 200,
            "the second replica never applied an event"
        );
    }
    second.child.start_kill().expect("SIGKILL");
    let _ = second.child.wait().await;
    for _ in 0..3 {
        create_and_update(&admin, users_total).await;
        users_total += 1;
    }
    // The replacement comes up after the session timeout, as a restarted
    // pod would: see the test's doc for why it matters here.
    tokio::time::sleep(Duration::from_millis(SESSION_TIMEOUT_MS + 2_000)).await;
    let _replacement = listing(&w, &[]).await;
    for _ in 0..3 {
        create_and_update(&admin, users_total).await;
        users_total += 1;
    }
    let converging = Instant::now();
    eventually(
        "the replica equals the auth service's users",
        Duration::from_secs(90),
        || {
            let (a, l) = (auth_pool.clone(), listing_pool.clone());
            async move { users(&a).await == hosts(&l).await }
        },
    )
    .await;
    println!(
        "the replica converged {:?} after the last write",
        converging.elapsed()
    );
    let copies = hosts(&listing_pool).await;
    assert_eq!(
        copies.len(),
        users_total + 1,
        "the users and the super-admin: {copies:?}"
    );
    let updated = copies.values().filter(|c| c.2 == 3).count();
    assert_eq!(updated, users_total, "each user created and updated twice");
    // Every user event is in the inbox exactly once (the key is unique; the
    // count says none is missing).
    let events = consume(
        &w.broker.brokers(),
        &[USER_CREATED, USER_UPDATED, USER_DELETED],
        3,
        Duration::from_secs(20),
        |m| m.len() > users_total * 3,
    )
    .await;
    assert_eq!(
        events.len(),
        users_total * 3 + 1,
        "with the super-admin's creation"
    );
    let expected = i64::try_from(events.len()).expect("small");
    eventually(
        "every event is recorded once",
        Duration::from_secs(30),
        || {
            let pool = listing_pool.clone();
            async move {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM consumer_inbox WHERE consumer = 'hosts'",
                )
                .fetch_one(&pool)
                .await
                .expect("count");
                n == expected
            }
        },
    )
    .await;
    drop(first);
}

/// Creates user `i` at the auth service and updates it twice: three events.
async fn create_and_update(admin: &Api, i: usize) {
    let user =
        tests::create_user(admin, &format!("host{i}@example.com"), &format!("Host {i}")).await;
    let id = user["id"].as_str().expect("id").to_string();
    for round in 0..2 {
        expect(
            StatusCode::OK,
            &admin
                .patch(
                    &format!("/v1/users/{id}"),
                    json!({ "bio": format!("round {round}") }),
                )
                .await,
        );
    }
}

/// Creates `topics` as the other service would at its start.
async fn create_topics(brokers: &str, topics: &[&str]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin");
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, 3, TopicReplication::Fixed(1)))
        .collect();
    for r in admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .expect("created")
    {
        r.expect("topic created");
    }
}
