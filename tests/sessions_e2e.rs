//! Sessions of the generated auth service over HTTP, against PostgreSQL:
//! refresh reuse inside the grace window, bounded device facts, bounded
//! session lifetimes, the sessions a user sees and ends, and what the
//! sweeper prunes.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use tests::{expect, register, start_auth_service, Running, TestDb};

const SECRET: &str = "a decent secret";

async fn service(settings: &[(&str, &str)]) -> (Running, TestDb, PgPool) {
    let db = TestDb::create().await;
    let server = start_auth_service(&db.url, settings).await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    (server, db, pool)
}

/// The names of the session events queued for `session`, in order.
async fn session_events(pool: &PgPool, session: &Value) -> Vec<String> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT payload FROM event_outbox WHERE topic = 'session' AND event_key = $1 ORDER BY id",
    )
    .bind(session["sessionId"].as_str().unwrap())
    .fetch_all(pool)
    .await
    .unwrap();
    rows.iter()
        .map(|(p,)| {
            serde_json::from_str::<Value>(p).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

async fn refresh(server: &Running, token: &Value) -> (StatusCode, Value) {
    server
        .post("/v1/refresh", json!({ "refreshToken": token }))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_reused_in_the_grace_window_gets_the_pair_it_was_spent_for() {
    let (server, _db, pool) = service(&[("REFRESH_GRACE_SECS", "30")]).await;
    register(&server, "grace@x.io", "Grace").await;
    let session = server.login("grace@x.io", SECRET).await;
    let first = expect(
        StatusCode::OK,
        &refresh(&server, &session["refreshToken"]).await,
    );
    let again = expect(
        StatusCode::OK,
        &refresh(&server, &session["refreshToken"]).await,
    );
    let (first, again) = (&first["session"], &again["session"]);
    assert_eq!(again["refreshToken"], first["refreshToken"], "no new pair");
    assert_eq!(again["accessToken"], first["accessToken"]);
    let (tokens,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM refresh_tokens WHERE session_id = $1::uuid")
            .bind(session["sessionId"].as_str().unwrap())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(tokens, 2, "the spent token and its one successor");
    assert_eq!(
        session_events(&pool, &session).await,
        ["sessionCreated", "sessionUpdated"],
        "no second sessionUpdated"
    );
    // The database holds no usable successor: only its sealed form.
    let (sealed,): (Vec<u8>,) = sqlx::query_as(
        "SELECT successor FROM refresh_tokens WHERE session_id = $1::uuid AND spent_at IS NOT NULL",
    )
    .bind(session["sessionId"].as_str().unwrap())
    .fetch_one(&pool)
    .await
    .unwrap();
    let successor = first["refreshToken"].as_str().unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains(successor));
    // The successor still works, and spending it is a refresh like any other.
    let next = expect(
        StatusCode::OK,
        &refresh(&server, &first["refreshToken"]).await,
    );
    assert_ne!(next["session"]["refreshToken"], first["refreshToken"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_facts_past_their_bound_are_refused_and_nothing_is_stored() {
    let (server, _db, pool) = service(&[]).await;
    register(&server, "device@x.io", "Device").await;
    let huge = "x".repeat(512 * 1024);
    for (field, value) in [("deviceName", "x".repeat(257)), ("city", huge)] {
        let mut body = json!({ "email": "device@x.io", "password": SECRET });
        body[field] = json!(value);
        let (status, refused) = server.post("/v1/login", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {refused}");
        assert_eq!(tests::error_fields(&refused), [field]);
    }
    let (stored,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM sessions WHERE length(device_name) > 256 OR length(city) > 256",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stored, 0);
    let fits = json!({ "email": "device@x.io", "password": SECRET, "deviceName": "x".repeat(256) });
    let ok = expect(StatusCode::OK, &server.post("/v1/login", fits).await);
    assert_eq!(
        ok["session"]["deviceName"].as_str().map(str::len),
        Some(256)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_prunes_throttle_buckets_refresh_tokens_and_ended_sessions() {
    let (server, db, pool) = service(&[]).await;
    register(&server, "sweep@x.io", "Sweep").await;
    let ended = server.login("sweep@x.io", SECRET).await;
    let live = server.login("sweep@x.io", SECRET).await;
    let spent = expect(
        StatusCode::OK,
        &refresh(&server, &live["refreshToken"]).await,
    );
    let as_ended = server.with_token(ended["accessToken"].as_str().unwrap());
    expect(
        StatusCode::OK,
        &as_ended.post("/v1/logout", json!({})).await,
    );
    // The ended session ended two days ago; a bucket's window began as long ago.
    sqlx::query("UPDATE sessions SET revoked_at = now() - interval '2 days' WHERE id = $1::uuid")
        .bind(ended["sessionId"].as_str().unwrap())
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO throttle_buckets (bucket, window_start, hits) VALUES ('old', now() - interval '2 days', 3)")
        .execute(&pool)
        .await
        .unwrap();
    // The spent token expired.
    sqlx::query("UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE spent_at IS NOT NULL")
        .execute(&pool)
        .await
        .unwrap();
    airbnb_auth_service::auth::sweep_once(&pool).await.unwrap();
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
            n
        }
    };
    assert_eq!(
        count("SELECT count(*) FROM throttle_buckets WHERE bucket = 'old'").await,
        0
    );
    assert!(
        count("SELECT count(*) FROM throttle_buckets").await > 0,
        "live windows stay"
    );
    let sessions_of = |session: &Value| {
        let (pool, id) = (
            pool.clone(),
            session["sessionId"].as_str().unwrap().to_string(),
        );
        async move {
            let (n, tokens): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM sessions WHERE id = $1::uuid), (SELECT count(*) FROM refresh_tokens WHERE session_id = $1::uuid)",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
            (n, tokens)
        }
    };
    assert_eq!(
        sessions_of(&ended).await,
        (0, 0),
        "the ended session is gone"
    );
    assert_eq!(
        sessions_of(&live).await,
        (1, 1),
        "the live session keeps its unspent token"
    );
    expect(
        StatusCode::OK,
        &refresh(&server, &spent["session"]["refreshToken"]).await,
    );
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_at_their_idle_limit_and_their_lifetime_with_a_session_deleted_event() {
    let (server, _db, pool) =
        service(&[("SESSION_LIFETIME_SECS", "4"), ("SESSION_IDLE_SECS", "2")]).await;
    register(&server, "life@x.io", "Life").await;
    let idle = server.login("life@x.io", SECRET).await;
    let busy = server.login("life@x.io", SECRET).await;
    // `busy` refreshes every second: the idle limit never passes.
    let mut latest = busy.clone();
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(900)).await;
        let renewed = expect(
            StatusCode::OK,
            &refresh(&server, &latest["refreshToken"]).await,
        );
        latest = renewed["session"].clone();
    }
    // `idle` was not refreshed for over two seconds.
    let (status, _) = refresh(&server, &idle["refreshToken"]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "idle past its limit");
    let as_busy = server.with_token(latest["accessToken"].as_str().unwrap());
    expect(StatusCode::OK, &as_busy.get("/v1/currentuser").await);
    // Four seconds after its sign-in `busy` ends too, however fresh its tokens.
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    let (status, _) = refresh(&server, &latest["refreshToken"]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "past its lifetime");
    expect(
        StatusCode::UNAUTHORIZED,
        &as_busy.get("/v1/currentuser").await,
    );
    airbnb_auth_service::auth::sweep_once(&pool).await.unwrap();
    for session in [&idle, &busy] {
        let events = session_events(&pool, session).await;
        assert_eq!(events.first().map(String::as_str), Some("sessionCreated"));
        assert_eq!(
            events.last().map(String::as_str),
            Some("sessionDeleted"),
            "{events:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_list_their_sessions_without_tokens_and_end_one_or_all_others() {
    let (server, _db, pool) = service(&[]).await;
    let (first, _) = register(&server, "mine@x.io", "Mine").await;
    register(&server, "other@x.io", "Other").await;
    let phone =
        json!({ "email": "mine@x.io", "password": SECRET, "deviceName": "phone", "city": "Izmir" });
    let phone = expect(StatusCode::OK, &server.post("/v1/login", phone).await)["session"].clone();
    let laptop = server.login("mine@x.io", SECRET).await;
    let me = server.with_token(laptop["accessToken"].as_str().unwrap());

    let listed = expect(StatusCode::OK, &me.get("/v1/sessions").await);
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3, "{listed}");
    let text = listed.to_string();
    for token in [
        &phone["accessToken"],
        &phone["refreshToken"],
        &laptop["refreshToken"],
    ] {
        assert!(
            !text.contains(token.as_str().unwrap()),
            "no token is listed"
        );
    }
    assert!(!text.contains("sha256:"), "nor a fingerprint");
    let shown = sessions
        .iter()
        .find(|s| s["sessionId"] == phone["sessionId"])
        .unwrap();
    assert_eq!(
        (shown["deviceName"].as_str(), shown["city"].as_str()),
        (Some("phone"), Some("Izmir"))
    );
    assert_eq!(shown["createdAt"], phone["createdAt"]);
    assert!(shown.get("refreshedAt").is_some() && shown.get("accessToken").is_none());
    let current: Vec<&Value> = sessions
        .iter()
        .filter(|s| s["current"] == true)
        .map(|s| &s["sessionId"])
        .collect();
    assert_eq!(current, [&laptop["sessionId"]]);
    // Refreshing shows in refreshedAt.
    let refreshed = expect(
        StatusCode::OK,
        &refresh(&server, &phone["refreshToken"]).await,
    );
    let listed = expect(StatusCode::OK, &me.get("/v1/sessions").await);
    let shown = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sessionId"] == phone["sessionId"])
        .unwrap()
        .clone();
    assert!(shown["refreshedAt"].is_string(), "{shown}");

    // Another user cannot end them, nor see them.
    let other = server.as_user("other@x.io", SECRET).await;
    let phone_path = format!("/v1/sessions/{}", phone["sessionId"].as_str().unwrap());
    expect(StatusCode::NOT_FOUND, &other.delete(&phone_path).await);
    let theirs = expect(StatusCode::OK, &other.get("/v1/sessions").await);
    assert_eq!(
        theirs["sessions"].as_array().unwrap().len(),
        2,
        "their own two"
    );
    expect(
        StatusCode::BAD_REQUEST,
        &me.delete("/v1/sessions/not-a-uuid").await,
    );

    // Ending one: its tokens stop working at once; ending it again is a 404.
    let ended = expect(StatusCode::OK, &me.delete(&phone_path).await);
    assert_eq!(ended["session"]["sessionId"], phone["sessionId"]);
    let as_phone = server.with_token(refreshed["session"]["accessToken"].as_str().unwrap());
    expect(
        StatusCode::UNAUTHORIZED,
        &as_phone.get("/v1/currentuser").await,
    );
    expect(StatusCode::NOT_FOUND, &me.delete(&phone_path).await);

    // Ending all others: the first session ends, the current one lives on.
    let all = expect(StatusCode::OK, &me.delete("/v1/sessions").await);
    assert_eq!(all["session"]["ended"], 1, "{all}");
    expect(
        StatusCode::UNAUTHORIZED,
        &first.get("/v1/currentuser").await,
    );
    expect(StatusCode::OK, &me.get("/v1/currentuser").await);
    let left = expect(StatusCode::OK, &me.get("/v1/sessions").await);
    assert_eq!(left["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(
        session_events(&pool, &phone).await,
        ["sessionCreated", "sessionUpdated", "sessionDeleted"]
    );
    let (first_events,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM event_outbox o JOIN sessions s ON s.id::text = o.event_key
         WHERE o.topic = 'session' AND o.payload::jsonb->>'name' = 'sessionDeleted' AND s.revoked_reason = 'ended by the user'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        first_events, 2,
        "each ended session published sessionDeleted"
    );

    // The routes are in /permissions like every other.
    let permissions = expect(StatusCode::OK, &me.get("/v1/permissions").await);
    let names: Vec<&str> = permissions["permissions"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["access"] == "all")
        .filter_map(|r| r["name"].as_str())
        .collect();
    for route in ["listSessions", "endSession", "endOtherSessions"] {
        assert!(names.contains(&route), "{route} in {names:?}");
    }
}
