//! The auth service as the issuer other services trust, over HTTP against
//! PostgreSQL (and the broker for session events): signing-key rotation with
//! an overlap, across a restart and across replicas, and role changes and
//! account ends reaching the session topic.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::Duration;
use tests::{
    auth_service_with_broker, consume, expect, register, start_auth_service, Api, Running, TestDb,
};

const SECRET: &str = "a decent secret";
/// The overlap of the rotation tests: long enough for a debug build's
/// sign-ins inside it, short enough to wait out.
const OVERLAP_SECS: i64 = 5;

/// A fresh Ed25519 key, as `JWT_PRIVATE_KEY` carries it.
fn key_pem() -> String {
    use ring::signature::Ed25519KeyPair;
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()))
}

async fn start_with_key(db: &TestDb, pem: &str, kid: &str) -> Running {
    let overlap = OVERLAP_SECS.to_string();
    start_auth_service(
        &db.url,
        &[
            ("JWT_PRIVATE_KEY", pem),
            ("JWT_KEY_ID", kid),
            ("JWT_KEY_OVERLAP_SECS", &overlap),
        ],
    )
    .await
}

/// The kids the JWKS lists, in order.
async fn jwks_kids(api: &Api) -> Vec<String> {
    let (status, body) = api.get("/v1/.well-known/jwks.json").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_string())
        .collect()
}

/// The `kid` in a token's header.
fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("a JWT")
        .kid
        .expect("a kid")
}

/// A signed-in caller's access token, from `api`.
async fn token_of(api: &Api, email: &str) -> String {
    api.login(email, SECRET).await["accessToken"]
        .as_str()
        .expect("access token")
        .to_string()
}

async fn status_of(api: &Api, token: &str) -> StatusCode {
    api.with_token(token).get("/v1/currentuser").await.0
}

/// When `kid` was replaced, as the ring has it.
async fn replaced_at(pool: &PgPool, kid: &str) -> DateTime<Utc> {
    sqlx::query_scalar::<_, Option<DateTime<Utc>>>(
        "SELECT replaced_at FROM signing_keys WHERE kid = $1",
    )
    .bind(kid)
    .fetch_one(pool)
    .await
    .expect("the key's row")
    .expect("replaced")
}

/// Sleeps until `at` has passed by a little.
async fn wait_past(at: DateTime<Utc>) {
    let left = (at - Utc::now()).num_milliseconds().max(0) as u64 + 300;
    tokio::time::sleep(Duration::from_millis(left)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_verifies_for_its_overlap_and_is_refused_after_it() {
    let db = TestDb::create().await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    let (pem_a, pem_b) = (key_pem(), key_pem());

    let first = start_with_key(&db, &pem_a, "key-a").await;
    register(&first, "rotate@x.io", "Rotating").await;
    let old = token_of(&first, "rotate@x.io").await;
    assert_eq!(kid_of(&old), "key-a");
    assert_eq!(jwks_kids(&first).await, ["key-a"]);
    drop(first);

    let server = start_with_key(&db, &pem_b, "key-b").await;
    let retires = replaced_at(&pool, "key-a").await + chrono::Duration::seconds(OVERLAP_SECS);
    // Inside the overlap: both keys are published and verify.
    assert_eq!(jwks_kids(&server).await, ["key-b", "key-a"]);
    assert_eq!(status_of(&server, &old).await, StatusCode::OK);
    let new = token_of(&server, "rotate@x.io").await;
    assert_eq!(kid_of(&new), "key-b");
    assert_eq!(status_of(&server, &new).await, StatusCode::OK);
    assert_eq!(status_of(&server, &old).await, StatusCode::OK);
    assert!(
        Utc::now() < retires,
        "the checks inside the overlap took longer than it"
    );

    wait_past(retires).await;
    assert_eq!(jwks_kids(&server).await, ["key-b"]);
    // Refused although this replica had verified and remembered it.
    let (status, body) = server.with_token(&old).get("/v1/currentuser").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(status_of(&server, &new).await, StatusCode::OK);

    // The ring keeps public keys only: a configured private key never reaches the database.
    let stored: Vec<(String, bool)> = sqlx::query_as(
        "SELECT kid, private_pkcs8 IS NULL FROM signing_keys ORDER BY created_at, kid",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        stored,
        [("key-a".to_string(), true), ("key-b".to_string(), true)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_still_serving_the_old_key_learns_the_new_one_at_once() {
    let db = TestDb::create().await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    let old_replica = start_with_key(&db, &key_pem(), "key-a").await;
    register(&old_replica, "replica@x.io", "Replica").await;
    let old = token_of(&old_replica, "replica@x.io").await;
    // Verified and remembered by the old replica before the rotation.
    assert_eq!(status_of(&old_replica, &old).await, StatusCode::OK);

    let new_replica = start_with_key(&db, &key_pem(), "key-b").await;
    let retires = replaced_at(&pool, "key-a").await + chrono::Duration::seconds(OVERLAP_SECS);
    let new = token_of(&new_replica, "replica@x.io").await;
    // The old replica has not re-read the ring yet: the unknown kid makes it.
    assert_eq!(status_of(&old_replica, &new).await, StatusCode::OK);
    assert_eq!(jwks_kids(&old_replica).await, ["key-b", "key-a"]);
    assert_eq!(status_of(&new_replica, &old).await, StatusCode::OK);
    assert!(
        Utc::now() < retires,
        "the checks inside the overlap took longer than it"
    );

    wait_past(retires).await;
    for replica in [&old_replica, &new_replica] {
        assert_eq!(jwks_kids(replica).await, ["key-b"]);
        assert_eq!(status_of(replica, &old).await, StatusCode::UNAUTHORIZED);
        assert_eq!(status_of(replica, &new).await, StatusCode::OK);
    }
}

/// The session events of account `user` read back from the broker, as
/// `(name, session id, role)`, once `done` holds for them.
async fn session_events(
    broker: &str,
    user: &str,
    done: impl Fn(&[(String, String, Value)]) -> bool,
) -> Vec<(String, String, Value)> {
    let pick = |msgs: &[tests::Consumed]| -> Vec<(String, String, Value)> {
        msgs.iter()
            .filter(|m| m.payload["userId"] == user)
            .map(|m| {
                (
                    m.payload["name"].as_str().unwrap_or_default().to_string(),
                    m.key.clone(),
                    m.payload["payload"]["session"]["role"].clone(),
                )
            })
            .collect()
    };
    let msgs = consume(broker, &["session"], 3, Duration::from_secs(30), |m| {
        done(&pick(m))
    })
    .await;
    pick(&msgs)
}

/// `(session id, role)` of the events named `name`, sorted by session.
fn named(events: &[(String, String, Value)], name: &str) -> Vec<(String, Value)> {
    let mut found: Vec<(String, Value)> = events
        .iter()
        .filter(|(n, _, _)| n == name)
        .map(|(_, s, role)| (s.clone(), role.clone()))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_updates_each_live_session_and_archiving_ends_each() {
    let (broker, _db, server) = auth_service_with_broker().await;
    let admin = server.admin().await;
    // Registering signs in once; two more sign-ins, and a third that signs out.
    let (on_first, id) = register(&server, "promoted@x.io", "Promoted").await;
    server.login("promoted@x.io", SECRET).await;
    server.login("promoted@x.io", SECRET).await;
    let ended = server.login("promoted@x.io", SECRET).await;
    let ended_id = ended["sessionId"].as_str().unwrap().to_string();
    expect(
        StatusCode::OK,
        &server
            .with_token(ended["accessToken"].as_str().unwrap())
            .post("/v1/logout", json!({}))
            .await,
    );
    expect(StatusCode::FORBIDDEN, &on_first.get("/v1/users").await);

    expect(
        StatusCode::OK,
        &admin
            .patch(
                &format!("/v1/users/{id}/role"),
                json!({ "roleId": "admin" }),
            )
            .await,
    );
    // Still signed in, with the new role at once.
    expect(StatusCode::OK, &on_first.get("/v1/users").await);
    // The same role again is no change: nothing more is published.
    expect(
        StatusCode::OK,
        &admin
            .patch(
                &format!("/v1/users/{id}/role"),
                json!({ "roleId": "admin" }),
            )
            .await,
    );

    // Every event these calls made, whichever partition it is on: the
    // sign-ins, the sign-out and the role change's updates.
    let events = session_events(&broker.brokers(), &id, |e| {
        named(e, "sessionCreated").len() >= 4
            && !named(e, "sessionDeleted").is_empty()
            && named(e, "sessionUpdated").len() >= 3
    })
    .await;
    let created = named(&events, "sessionCreated");
    assert_eq!(created.len(), 4, "{events:?}");
    // Every event carries the role the account had when it was made.
    assert!(
        created.iter().all(|(_, role)| role == "user"),
        "{created:?}"
    );
    assert_eq!(
        named(&events, "sessionDeleted"),
        [(ended_id.clone(), json!("user"))]
    );
    let live: Vec<String> = created
        .iter()
        .map(|(s, _)| s.clone())
        .filter(|s| *s != ended_id)
        .collect();
    let promoted: Vec<(String, Value)> = live.iter().map(|s| (s.clone(), json!("admin"))).collect();
    assert_eq!(named(&events, "sessionUpdated"), promoted);

    // Archived by an admin: each live session ends, with the role it had.
    expect(
        StatusCode::OK,
        &admin.delete(&format!("/v1/users/{id}")).await,
    );
    expect(
        StatusCode::UNAUTHORIZED,
        &on_first.get("/v1/currentuser").await,
    );
    let events = session_events(&broker.brokers(), &id, |e| {
        named(e, "sessionDeleted").len() >= 4 && named(e, "sessionUpdated").len() >= 3
    })
    .await;
    let mut deleted = promoted.clone();
    deleted.push((ended_id, json!("user")));
    deleted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(named(&events, "sessionDeleted"), deleted);
    assert_eq!(
        named(&events, "sessionUpdated").len(),
        3,
        "no sessionUpdated without a role change"
    );
}
