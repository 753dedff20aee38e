//! The listing service (`tests/models/listing.yaml`), a service that trusts the
//! auth service's tokens, end to end: one PostgreSQL, one tansu broker, the
//! real auth service binary, and the listing service's replicas in process.
//!
//! The auth service signs with a key the test made (`JWT_PRIVATE_KEY`), so the
//! test can also forge what an attacker would try: another issuer, another
//! audience, an expired token, the system role, an unknown key.

use reqwest::StatusCode;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use svcgen_runtime::auth::keys::SigningKey;
use svcgen_runtime::auth::tokens::{sign, Audience};
use tests::{
    eventually, expect, free_port, sign_in, Api, Broker, ServiceProcess, TestDb, ADMIN_EMAIL,
    ADMIN_PASSWORD,
};
use uuid::Uuid;

const ISSUER: Audience = Audience {
    issuer: "airbnb-auth-service",
    audience: "airbnb",
};

/// An Ed25519 key as the auth service is configured with it: PKCS#8 PEM and `kid`.
struct TestKey {
    kid: String,
    pem: String,
    key: SigningKey,
}

impl TestKey {
    fn new(kid: &str) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("a key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("valid");
        assert_eq!(pair.public_key().as_ref().len(), 32);
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
        Self {
            kid: kid.to_string(),
            pem,
            key: SigningKey::from_pkcs8(kid.to_string(), pkcs8.as_ref()).expect("key"),
        }
    }

    /// A token this key signs, as the auth service would, for `ttl_secs`.
    fn token(&self, who: Audience, user: Uuid, session: Uuid, role: &str, ttl_secs: i64) -> String {
        sign(&self.key, who, user, session, role, ttl_secs)
            .expect("signed")
            .0
    }
}

/// The auth service binary on a fixed port, so that it can be restarted
/// where the listing service expects its JWKS.
struct AuthProcess {
    port: u16,
    database_url: String,
    brokers: String,
    process: Option<ServiceProcess>,
}

impl AuthProcess {
    async fn start(
        port: u16,
        db: &TestDb,
        broker: &Broker,
        key: &TestKey,
        extra: &[(&str, &str)],
    ) -> Self {
        let mut p = Self {
            port,
            database_url: db.url.clone(),
            brokers: broker.brokers(),
            process: None,
        };
        p.restart(key, extra).await;
        p
    }

    /// Starts the binary (again) with `key` as its signing key.
    async fn restart(&mut self, key: &TestKey, extra: &[(&str, &str)]) {
        if let Some(old) = self.process.take() {
            old.stop().await;
        }
        let mut settings = vec![
            ("DATABASE_MAX_CONNECTIONS", "6"),
            ("KAFKA_BROKERS", self.brokers.as_str()),
            ("KAFKA_LINGER_MS", "0"),
            ("JWT_PRIVATE_KEY", key.pem.as_str()),
            ("JWT_KEY_ID", key.kid.as_str()),
        ];
        settings.extend_from_slice(extra);
        let process =
            ServiceProcess::start("127.0.0.1", self.port, &self.database_url, &settings).await;
        self.process = Some(process);
    }

    fn api(&self) -> Api {
        self.process.as_ref().expect("running").api()
    }
}

/// One replica of the listing service, in process, trusting the auth service on `auth_port`.
async fn listing_replica(db: &TestDb, broker: &Broker, auth_port: u16) -> tests::Running {
    use airbnb_listing_service::{app::Application, config::Config};
    let jwks = format!("http://127.0.0.1:{auth_port}/v1/.well-known/jwks.json");
    let env: std::collections::HashMap<String, String> = [
        ("DATABASE_URL", db.url.as_str()),
        ("HTTP_ADDR", "127.0.0.1:0"),
        ("DATABASE_MAX_CONNECTIONS", "4"),
        ("KAFKA_BROKERS", &broker.brokers()),
        ("KAFKA_LINGER_MS", "0"),
        ("JWKS_URL", &jwks),
        ("JWKS_REFRESH_SECS", "1"),
        ("JWKS_REFETCH_MIN_SECS", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    tests::Running::start(|stop| async move {
        let config = Config::from_lookup(|k| env.get(k).cloned()).expect("config");
        let app = Application::build(config)
            .await
            .expect("listing service starts");
        let addr = app.local_addr().expect("bound address");
        tokio::spawn(app.serve(async move {
            let _ = stop.await;
        }));
        addr
    })
    .await
}

/// Registers an account at the auth service and signs it in.
async fn new_user(auth: &Api, email: &str) -> (String, String) {
    let password = "a decent secret";
    expect(
        StatusCode::CREATED,
        &auth
            .post(
                "/v1/register",
                json!({ "email": email, "password": password, "fullname": "Test Host" }),
            )
            .await,
    );
    sign_in(auth, email, password).await
}

fn listing_body(title: &str) -> Value {
    json!({ "title": title, "city": "Lisbon", "pricePerNight": 120, "maxGuests": 4, "checkInNotes": "key under the mat" })
}

/// Creating a listing right after registering: the host's row reaches the
/// listing service's replica shortly after, and until then the answer is
/// 503 with Retry-After (decision host-replica). Retried like a client would.
trait PostListing {
    async fn post_listing(&self, body: Value) -> (StatusCode, Value);
}

impl PostListing for Api {
    async fn post_listing(&self, body: Value) -> (StatusCode, Value) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = self.post("/v1/listings", body.clone()).await;
            if answer.0 != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits until the replica has the issuer's keys and sessions: a signed-in
/// route stops answering 503.
async fn until_trusting(listing: &Api, token: &str) {
    let api = listing.with_token(token);
    eventually(
        "the listing service trusts the auth service",
        Duration::from_secs(30),
        || {
            let api = api.clone();
            async move { api.get("/v1/my/listings").await.0 != StatusCode::SERVICE_UNAVAILABLE }
        },
    )
    .await;
}

/// Each service owns its database, on the one PostgreSQL server.
struct World {
    db: TestDb,
    _auth_db: TestDb,
    broker: Broker,
    key: TestKey,
    auth: AuthProcess,
}

async fn world() -> World {
    let broker = Broker::start().await;
    let (db, auth_db) = (TestDb::create().await, TestDb::create().await);
    let key = TestKey::new("key-a");
    let auth = AuthProcess::start(free_port(), &auth_db, &broker, &key, &[]).await;
    World {
        db,
        _auth_db: auth_db,
        broker,
        key,
        auth,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_service_tokens_create_listings_only_the_host_changes_them_and_foreign_tokens_are_refused(
) {
    let w = world().await;
    let listing = listing_replica(&w.db, &w.broker, w.auth.port).await;
    let auth = w.auth.api();
    let (host, host_id) = new_user(&auth, "host@example.com").await;
    let (guest, _) = new_user(&auth, "guest@example.com").await;
    until_trusting(&listing, &host).await;

    let created = expect(
        StatusCode::CREATED,
        &listing
            .with_token(&host)
            .post_listing(listing_body("Sea view flat"))
            .await,
    );
    let id = created["listing"]["id"].as_str().expect("id").to_string();
    assert_eq!(
        created["listing"]["checkInNotes"], "key under the mat",
        "{created}"
    );

    // Anyone reads the public fields; only the host and admins the rest.
    let public = expect(
        StatusCode::OK,
        &listing.anonymous().get(&format!("/v1/listings/{id}")).await,
    );
    assert_eq!(public["listing"]["title"], "Sea view flat");
    assert!(public["listing"].get("checkInNotes").is_none(), "{public}");
    let mine = expect(
        StatusCode::OK,
        &listing.with_token(&host).get("/v1/my/listings").await,
    );
    assert_eq!(
        mine["listings"][0]["checkInNotes"], "key under the mat",
        "{mine}"
    );
    let theirs = expect(
        StatusCode::OK,
        &listing.with_token(&guest).get("/v1/my/listings").await,
    );
    assert_eq!(
        theirs["listings"].as_array().map(Vec::len),
        Some(0),
        "{theirs}"
    );

    // Another user cannot change or archive it; the host and an admin can.
    let path = format!("/v1/listings/{id}");
    expect(
        StatusCode::FORBIDDEN,
        &listing
            .with_token(&guest)
            .patch(&path, json!({ "pricePerNight": 1 }))
            .await,
    );
    expect(
        StatusCode::FORBIDDEN,
        &listing.with_token(&guest).delete(&path).await,
    );
    let changed = expect(
        StatusCode::OK,
        &listing
            .with_token(&host)
            .patch(&path, json!({ "pricePerNight": 99 }))
            .await,
    );
    assert_eq!(changed["listing"]["pricePerNight"], 99);
    let (admin, _) = sign_in(&auth, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    expect(
        StatusCode::OK,
        &listing
            .with_token(&admin)
            .patch(&path, json!({ "pricePerNight": 98 }))
            .await,
    );

    // What an attacker would try, each signed with a key the listing service
    // trusts unless said otherwise.
    let user = Uuid::parse_str(&host_id).expect("uuid");
    let session = Uuid::new_v4();
    let other_issuer = Audience {
        issuer: "someone-else",
        audience: "airbnb",
    };
    let other_audience = Audience {
        issuer: "airbnb-auth-service",
        audience: "another-project",
    };
    let stranger = TestKey::new("key-a");
    let unknown = TestKey::new("never-published");
    let forged = [
        (
            "another issuer",
            w.key.token(other_issuer, user, session, "user", 300),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "another audience",
            w.key.token(other_audience, user, session, "user", 300),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "expired",
            w.key.token(ISSUER, user, session, "user", -60),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "the right kid, another key",
            stranger.token(ISSUER, user, session, "user", 300),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "an unknown key",
            unknown.token(ISSUER, user, session, "user", 300),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "the system role",
            w.key.token(ISSUER, user, session, "system", 300),
            StatusCode::FORBIDDEN,
        ),
        (
            "a role of no one",
            w.key.token(ISSUER, user, session, "root", 300),
            StatusCode::FORBIDDEN,
        ),
        (
            "no signature",
            unsigned(&w.key.token(ISSUER, user, session, "admin", 300)),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (what, token, status) in forged {
        let (got, body) = listing
            .with_token(&token)
            .patch(&path, json!({ "pricePerNight": 5 }))
            .await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["status"], "ERR", "{what}: {body}");
    }
    // Nothing forged changed the row.
    let now = expect(StatusCode::OK, &listing.anonymous().get(&path).await);
    assert_eq!(now["listing"]["pricePerNight"], 98);
}

/// `token` with its header swapped for `alg: none` and its signature dropped.
fn unsigned(token: &str) -> String {
    use base64::Engine;
    let claims = token.split('.').nth(1).expect("claims");
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(br#"{"alg":"none","typ":"JWT","kid":"key-a"}"#);
    format!("{header}.{claims}.")
}

/// p50, p99 and the largest of `times`.
fn percentiles(mut times: Vec<Duration>) -> (Duration, Duration, Duration) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99), times[times.len() - 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_at_the_auth_service_is_refused_on_both_replicas_at_once() {
    let w = world().await;
    let replicas = [
        listing_replica(&w.db, &w.broker, w.auth.port).await,
        listing_replica(&w.db, &w.broker, w.auth.port).await,
    ];
    let auth = w.auth.api();
    let password = "a decent secret";
    new_user(&auth, "traveller@example.com").await;
    let mut times = Vec::new();
    for trial in 0..60 {
        let (token, _) = sign_in(&auth, "traveller@example.com", password).await;
        for r in &replicas {
            until_trusting(r, &token).await;
            expect(
                StatusCode::OK,
                &r.with_token(&token).get("/v1/my/listings").await,
            );
        }
        expect(
            StatusCode::OK,
            &auth.with_token(&token).post("/v1/logout", json!({})).await,
        );
        let logged_out = Instant::now();
        for r in &replicas {
            let api = r.with_token(&token);
            eventually(
                &format!("trial {trial}: the ended session is refused"),
                Duration::from_secs(10),
                || {
                    let api = api.clone();
                    async move { api.get("/v1/my/listings").await.0 == StatusCode::UNAUTHORIZED }
                },
            )
            .await;
        }
        times.push(logged_out.elapsed());
    }
    let (p50, p99, max) = percentiles(times);
    // Reported, not asserted: the machine's load decides the figure.
    println!(
        "logout to refusal on both replicas over 60 trials: p50 {p50:?}, p99 {p99:?}, max {max:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_and_an_archived_account_reach_the_listing_service() {
    let w = world().await;
    let listing = listing_replica(&w.db, &w.broker, w.auth.port).await;
    let auth = w.auth.api();
    let (admin, _) = sign_in(&auth, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (host, _) = new_user(&auth, "host@example.com").await;
    let (editor, editor_id) = new_user(&auth, "editor@example.com").await;
    until_trusting(&listing, &host).await;
    let created = expect(
        StatusCode::CREATED,
        &listing
            .with_token(&host)
            .post_listing(listing_body("Cabin"))
            .await,
    );
    let path = format!(
        "/v1/listings/{}",
        created["listing"]["id"].as_str().expect("id")
    );
    expect(
        StatusCode::FORBIDDEN,
        &listing
            .with_token(&editor)
            .patch(&path, json!({ "title": "Edited" }))
            .await,
    );

    // The editor becomes an admin at the auth service; the same token acts as one here.
    expect(
        StatusCode::OK,
        &auth
            .with_token(&admin)
            .patch(
                &format!("/v1/users/{editor_id}/role"),
                json!({ "roleId": "admin" }),
            )
            .await,
    );
    let api = listing.with_token(&editor);
    let promoted = eventually("the new role applies", Duration::from_secs(10), || {
        let api = api.clone();
        let path = path.clone();
        async move { api.patch(&path, json!({ "title": "Edited" })).await.0 == StatusCode::OK }
    })
    .await;
    println!("role change to effect: {promoted:?}");

    // And back: demoted, the token loses what the role gave at once.
    expect(
        StatusCode::OK,
        &auth
            .with_token(&admin)
            .patch(
                &format!("/v1/users/{editor_id}/role"),
                json!({ "roleId": "user" }),
            )
            .await,
    );
    eventually("the demotion applies", Duration::from_secs(10), || {
        let api = api.clone();
        let path = path.clone();
        async move { api.patch(&path, json!({ "title": "Again" })).await.0 == StatusCode::FORBIDDEN }
    })
    .await;

    // An archived account's sessions end everywhere.
    expect(
        StatusCode::OK,
        &auth
            .with_token(&admin)
            .delete(&format!("/v1/users/{editor_id}"))
            .await,
    );
    eventually(
        "the archived account is refused",
        Duration::from_secs(10),
        || {
            let api = api.clone();
            async move { api.get("/v1/my/listings").await.0 == StatusCode::UNAUTHORIZED }
        },
    )
    .await;
    // The host was not touched.
    expect(
        StatusCode::OK,
        &listing.with_token(&host).get("/v1/my/listings").await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_key_rotation_old_tokens_verify_during_the_overlap_only() {
    let mut w = world().await;
    let listing = listing_replica(&w.db, &w.broker, w.auth.port).await;
    let auth = w.auth.api();
    let (old, _) = new_user(&auth, "host@example.com").await;
    until_trusting(&listing, &old).await;
    expect(
        StatusCode::OK,
        &listing.with_token(&old).get("/v1/my/listings").await,
    );

    // The auth service restarts with a new key; the old one stays in its JWKS for 6 s.
    let new_key = TestKey::new("key-b");
    let overlap_secs = 6;
    let overlap = overlap_secs.to_string();
    // Taken before the restart: the old key is replaced no earlier, so its
    // overlap cannot end sooner than `overlap_secs` after this.
    let rotating = Instant::now();
    w.auth
        .restart(&new_key, &[("JWT_KEY_OVERLAP_SECS", &overlap)])
        .await;
    let (new, _) = sign_in(&auth, "host@example.com", "a decent secret").await;
    let jwks = expect(StatusCode::OK, &auth.get("/v1/.well-known/jwks.json").await);
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert!(kids.contains(&"key-a") && kids.contains(&"key-b"), "{jwks}");

    // Both verify during the overlap: the new kid makes the listing service read the JWKS again.
    expect(
        StatusCode::OK,
        &listing.with_token(&new).get("/v1/my/listings").await,
    );
    expect(
        StatusCode::OK,
        &listing.with_token(&old).get("/v1/my/listings").await,
    );
    assert!(
        rotating.elapsed() < Duration::from_secs(overlap_secs),
        "the checks above took the whole overlap"
    );

    // After it, the old key's token fails here and at the auth service; the new one works.
    let api = listing.with_token(&old);
    eventually(
        "the retired key stops verifying",
        Duration::from_secs(overlap_secs + 10),
        || {
            let api = api.clone();
            async move { api.get("/v1/my/listings").await.0 == StatusCode::UNAUTHORIZED }
        },
    )
    .await;
    assert!(
        rotating.elapsed() >= Duration::from_secs(overlap_secs),
        "refused before the overlap ended"
    );
    expect(
        StatusCode::UNAUTHORIZED,
        &auth.with_token(&old).get("/v1/permissions").await,
    );
    expect(
        StatusCode::OK,
        &listing.with_token(&new).get("/v1/my/listings").await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_service_started_before_the_auth_service_comes_up_by_itself() {
    let broker = Broker::start().await;
    let (db, auth_db) = (TestDb::create().await, TestDb::create().await);
    let auth_port = free_port();
    let listing = listing_replica(&db, &broker, auth_port).await;
    let key = TestKey::new("key-a");
    let early = key.token(ISSUER, Uuid::new_v4(), Uuid::new_v4(), "user", 300);

    // No JWKS and no session topic yet: protected routes say so, public ones answer.
    let (status, body) = listing.with_token(&early).get("/v1/my/listings").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "ERR", "{body}");
    expect(
        StatusCode::OK,
        &listing.anonymous().get("/v1/listings").await,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    expect(
        StatusCode::SERVICE_UNAVAILABLE,
        &listing.with_token(&early).get("/v1/my/listings").await,
    );

    // The auth service comes up: the listing service trusts it without a restart.
    let auth = AuthProcess::start(auth_port, &auth_db, &broker, &key, &[]).await;
    let (token, _) = new_user(&auth.api(), "late@example.com").await;
    let api = listing.with_token(&token);
    let took = eventually(
        "the listing service trusts the late auth service",
        Duration::from_secs(30),
        || {
            let api = api.clone();
            async move { api.get("/v1/my/listings").await.0 == StatusCode::OK }
        },
    )
    .await;
    println!("auth service up to trusted: {took:?}");
    expect(
        StatusCode::CREATED,
        &api.post_listing(listing_body("Late but fine")).await,
    );
}
