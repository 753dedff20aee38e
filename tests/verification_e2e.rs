//! Account verification and recovery of the generated auth service, over
//! HTTP against PostgreSQL and the broker: email verification, password
//! reset, the email second factor, cookie sessions with CSRF, the
//! permissions listing, and delivery by SMTP to a real SMTP server.
//! Codes are read where a mailer would read them: from the delivery topic.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use tests::{
    auth_service_with_broker, consume, expect, start_auth_service, Api, Broker, Consumed, TestDb,
};

const DELIVERY: &str = "airbnb3-auth-service-verification-delivery";
const PASSWORD: &str = "a long enough secret";

async fn register(api: &Api, email: &str) -> Value {
    let body = expect(
        StatusCode::CREATED,
        &api.anonymous()
            .post(
                "/v1/register",
                json!({ "email": email, "password": PASSWORD, "fullname": "Someone" }),
            )
            .await,
    );
    body["user"].clone()
}

/// The delivery requests for `email` of `kind`, once there are at least `n`.
async fn deliveries(broker: &Broker, email: &str, kind: &str, n: usize) -> Vec<Value> {
    let mine = |m: &Consumed| m.payload["recipient"] == email && m.payload["kind"] == kind;
    let msgs = consume(
        &broker.brokers(),
        &[DELIVERY],
        3,
        Duration::from_secs(20),
        |got| got.iter().filter(|m| mine(m)).count() >= n,
    )
    .await;
    let mut found: Vec<Value> = msgs
        .into_iter()
        .filter(|m| mine(m))
        .map(|m| m.payload)
        .collect();
    found.sort_by_key(|p| p["expiresAt"].as_str().unwrap_or_default().to_string());
    assert!(
        found.len() >= n,
        "expected {n} {kind} deliveries for {email}, got {found:?}"
    );
    found
}

/// The newest code of `kind` sent to `email`, once `n` were sent.
async fn code(broker: &Broker, email: &str, kind: &str, n: usize) -> String {
    let found = deliveries(broker, email, kind, n).await;
    let last = found.last().unwrap();
    assert_eq!(last["locale"], "en", "the user's preferredLanguage");
    let code = last["code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 6, "six digits: {code}");
    assert!(code.chars().all(|c| c.is_ascii_digit()));
    code
}

/// The parts of a start answer that do not vary per request.
fn stable(answer: &(StatusCode, Value)) -> (StatusCode, Value) {
    let mut body = answer.1.clone();
    for key in ["requestId", "elapsedMs"] {
        body.as_object_mut().unwrap().remove(key);
    }
    (answer.0, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_verification_confirms_once_and_publishes_the_change() {
    let (broker, db, server) = auth_service_with_broker().await;
    let user = register(&server, "verify@example.com").await;
    assert_eq!(user["emailVerified"], false);

    let known = server
        .post(
            "/v1/verification/email/start",
            json!({ "email": "Verify@Example.com" }),
        )
        .await;
    let unknown = server
        .post(
            "/v1/verification/email/start",
            json!({ "email": "nobody@example.com" }),
        )
        .await;
    assert_eq!(known.0, StatusCode::ACCEPTED, "{}", known.1);
    assert_eq!(
        stable(&known),
        stable(&unknown),
        "an unknown account cannot be told apart"
    );
    let code = code(&broker, "verify@example.com", "emailVerification", 1).await;

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let refused = expect(
        StatusCode::BAD_REQUEST,
        &server
            .post(
                "/v1/verification/email/complete",
                json!({ "email": "verify@example.com", "code": wrong }),
            )
            .await,
    );
    assert_eq!(refused["errCode"], "CODE_REJECTED");

    let done = expect(
        StatusCode::OK,
        &server
            .post(
                "/v1/verification/email/complete",
                json!({ "email": "verify@example.com", "code": code }),
            )
            .await,
    );
    assert_eq!(done["user"]["emailVerified"], true);
    assert_eq!(done["user"]["id"], user["id"]);
    assert!(done["user"].get("password").is_none());

    // Single use.
    let reused = expect(
        StatusCode::BAD_REQUEST,
        &server
            .post(
                "/v1/verification/email/complete",
                json!({ "email": "verify@example.com", "code": code }),
            )
            .await,
    );
    assert_eq!(reused["errCode"], "CODE_REJECTED");

    // A verified account gets no new code.
    server
        .post(
            "/v1/verification/email/start",
            json!({ "email": "verify@example.com" }),
        )
        .await;

    // The change is published like any other: dbevent, index event, route events.
    let topics = [
        "airbnb3-auth-service-dbevent-user-updated",
        "elastic-index-airbnb_user-updated",
        "airbnb3-auth-service-emailverification-started",
        "airbnb3-auth-service-emailverification-completed",
    ];
    let msgs = consume(
        &broker.brokers(),
        &topics,
        3,
        Duration::from_secs(20),
        |got| {
            topics.iter().all(|t| got.iter().any(|m| m.topic == *t))
                && got.iter().filter(|m| m.topic == topics[2]).count() >= 3
        },
    )
    .await;
    let db_event = msgs
        .iter()
        .find(|m| m.topic == topics[0])
        .expect("a dbevent");
    assert_eq!(db_event.payload["newDataValues"]["emailVerified"], true);
    assert_eq!(db_event.key, user["id"].as_str().unwrap());
    assert!(
        !db_event.payload.to_string().contains("password\""),
        "no secret in the event"
    );
    assert!(msgs.iter().any(|m| m.topic == topics[1]));
    assert_eq!(msgs.iter().filter(|m| m.topic == topics[2]).count(), 3);
    let completed = msgs.iter().find(|m| m.topic == topics[3]).unwrap();
    assert_eq!(completed.payload["user"]["emailVerified"], true);

    // Only the first request of the verified account was delivered.
    let sent = deliveries(&broker, "verify@example.com", "emailVerification", 1).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    // Codes are stored only as digests.
    let stored: Vec<(String,)> = sqlx::query_as("SELECT code_digest FROM verification_codes")
        .fetch_all(&mut db.connect().await)
        .await
        .unwrap();
    assert!(!stored.is_empty() && stored.iter().all(|(d,)| !d.contains(&code)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_reset_sets_the_secret_and_ends_every_session() {
    let (broker, _db, server) = auth_service_with_broker().await;
    register(&server, "reset@example.com").await;
    let session = server.login("reset@example.com", PASSWORD).await;
    let token = session["accessToken"].as_str().unwrap();

    let known = server
        .post(
            "/v1/password-reset/start",
            json!({ "email": "reset@example.com" }),
        )
        .await;
    let unknown = server
        .post(
            "/v1/password-reset/start",
            json!({ "email": "unknown@example.com" }),
        )
        .await;
    assert_eq!(known.0, StatusCode::ACCEPTED);
    assert_eq!(stable(&known), stable(&unknown));
    let code = code(&broker, "reset@example.com", "passwordReset", 1).await;

    // The new secret follows the model's policy.
    let weak = expect(
        StatusCode::BAD_REQUEST,
        &server
            .post(
                "/v1/password-reset/complete",
                json!({ "email": "reset@example.com", "code": code, "password": "password" }),
            )
            .await,
    );
    assert_eq!(weak["errCode"], "VALIDATION_FAILED");
    // A code for an unknown account is refused like a wrong one.
    let stranger = expect(
        StatusCode::BAD_REQUEST,
        &server
            .post(
                "/v1/password-reset/complete",
                json!({ "email": "unknown@example.com", "code": code, "password": "another fine secret" }),
            )
            .await,
    );
    assert_eq!(stranger["errCode"], "CODE_REJECTED");

    let done = expect(
        StatusCode::OK,
        &server
            .post(
                "/v1/password-reset/complete",
                json!({ "email": "reset@example.com", "code": code, "password": "another fine secret" }),
            )
            .await,
    );
    assert_eq!(done["user"]["email"], "reset@example.com");

    // Every session ended; the old secret no longer works, the new one does.
    expect(
        StatusCode::UNAUTHORIZED,
        &server.with_token(token).get("/v1/currentuser").await,
    );
    expect(
        StatusCode::UNAUTHORIZED,
        &server
            .post(
                "/v1/login",
                json!({ "email": "reset@example.com", "password": PASSWORD }),
            )
            .await,
    );
    server
        .login("reset@example.com", "another fine secret")
        .await;

    let msgs = consume(
        &broker.brokers(),
        &["session", "airbnb3-auth-service-passwordreset-completed"],
        3,
        Duration::from_secs(20),
        |got| {
            got.iter().any(|m| m.payload["name"] == "sessionDeleted")
                && got
                    .iter()
                    .any(|m| m.topic.ends_with("passwordreset-completed"))
        },
    )
    .await;
    let ended = msgs
        .iter()
        .find(|m| m.payload["name"] == "sessionDeleted")
        .expect("sessionDeleted");
    assert_eq!(
        ended.payload["payload"]["session"]["sessionId"],
        session["sessionId"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_codes_and_too_many_attempts_are_refused() {
    let (broker, db, server) = auth_service_with_broker().await;
    register(&server, "tries@example.com").await;
    let start = || {
        server.post(
            "/v1/verification/email/start",
            json!({ "email": "tries@example.com" }),
        )
    };

    // Expired: the clock is moved by ageing the stored code.
    expect(StatusCode::ACCEPTED, &start().await);
    let first = code(&broker, "tries@example.com", "emailVerification", 1).await;
    sqlx::query("UPDATE verification_codes SET expires_at = now() - interval '1 second'")
        .execute(&mut db.connect().await)
        .await
        .unwrap();
    let complete = |code: String| {
        server.post(
            "/v1/verification/email/complete",
            json!({ "email": "tries@example.com", "code": code }),
        )
    };
    let expired = expect(StatusCode::BAD_REQUEST, &complete(first.clone()).await);
    assert_eq!(expired["errCode"], "CODE_REJECTED");

    // Five wrong tries void the code: the right one no longer works.
    expect(StatusCode::ACCEPTED, &start().await);
    let second = code(&broker, "tries@example.com", "emailVerification", 2).await;
    let wrong = if second == "123456" {
        "654321"
    } else {
        "123456"
    };
    let mut last = Value::Null;
    for _ in 0..5 {
        last = expect(StatusCode::BAD_REQUEST, &complete(wrong.to_string()).await);
    }
    assert!(
        last["message"].as_str().unwrap().contains("too many"),
        "{last}"
    );
    let void = expect(StatusCode::BAD_REQUEST, &complete(second).await);
    assert_eq!(void["errCode"], "CODE_REJECTED");
    let verified: (bool,) = sqlx::query_as("SELECT email_verified FROM users WHERE email = $1")
        .bind("tries@example.com")
        .fetch_one(&mut db.connect().await)
        .await
        .unwrap();
    assert!(!verified.0, "nothing was confirmed");

    // A new code replaces the old one and works.
    expect(StatusCode::ACCEPTED, &start().await);
    let third = code(&broker, "tries@example.com", "emailVerification", 3).await;
    expect(StatusCode::OK, &complete(third).await);

    // The sweeper drops codes a day after they expired, and keeps younger ones.
    let mut conn = db.connect().await;
    sqlx::query(
        "UPDATE verification_codes SET expires_at = now() - interval '2 days' WHERE attempts > 0",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    airbnb_auth_service::auth::sweep_once(&pool).await.unwrap();
    let left: (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE attempts > 0) FROM verification_codes",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(left, (2, 0), "the voided code is gone, the other two stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_requests_are_throttled_per_account_and_per_address() {
    let (broker, _db, server) = auth_service_with_broker().await;
    register(&server, "many@example.com").await;
    for _ in 0..7 {
        expect(
            StatusCode::ACCEPTED,
            &server
                .post(
                    "/v1/password-reset/start",
                    json!({ "email": "many@example.com" }),
                )
                .await,
        );
    }
    // Five per account in the window, although every request was answered alike.
    let sent = deliveries(&broker, "many@example.com", "passwordReset", 5).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = deliveries(&broker, "many@example.com", "passwordReset", 5).await;
    assert_eq!(sent.len(), 5);
    assert_eq!(again.len(), 5, "the sixth and seventh were not sent");

    // Thirty per client address: the next one is 429.
    let mut status = StatusCode::ACCEPTED;
    for i in 0..30 {
        status = server
            .post(
                "/v1/password-reset/start",
                json!({ "email": format!("other{i}@example.com") }),
            )
            .await
            .0;
    }
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_factor_blocks_a_password_only_login() {
    let (broker, _db, server) = auth_service_with_broker().await;
    let user = register(&server, "twofa@example.com").await;
    let me = server.as_user("twofa@example.com", PASSWORD).await;
    let id = user["id"].as_str().unwrap();
    // The second factor needs a confirmed address.
    expect(
        StatusCode::OK,
        &server
            .admin()
            .await
            .patch(&format!("/v1/users/{id}"), json!({ "emailVerified": true }))
            .await,
    );
    expect(
        StatusCode::OK,
        &me.patch(
            &format!("/v1/users/{id}/profile"),
            json!({ "emailTwoFactor": true }),
        )
        .await,
    );

    let (status, first) = server
        .post(
            "/v1/login",
            json!({ "email": "twofa@example.com", "password": PASSWORD, "deviceName": "laptop" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let challenge = &first["session"];
    assert_eq!(challenge["secondFactorRequired"], true);
    assert!(
        challenge.get("accessToken").is_none(),
        "no token before the second factor"
    );
    let code = code(&broker, "twofa@example.com", "secondFactor", 1).await;

    let wrong = if code == "000000" { "999999" } else { "000000" };
    expect(
        StatusCode::BAD_REQUEST,
        &server
            .post(
                "/v1/login/second-factor",
                json!({ "challengeId": challenge["challengeId"], "code": wrong }),
            )
            .await,
    );
    let done = expect(
        StatusCode::OK,
        &server
            .post(
                "/v1/login/second-factor",
                json!({ "challengeId": challenge["challengeId"], "code": code }),
            )
            .await,
    );
    let session = &done["session"];
    assert_eq!(session["userId"], user["id"]);
    assert_eq!(session["deviceName"], "laptop", "the login's device facts");
    let token = session["accessToken"].as_str().unwrap();
    expect(
        StatusCode::OK,
        &server.with_token(token).get("/v1/currentuser").await,
    );
    // The challenge is spent.
    expect(
        StatusCode::BAD_REQUEST,
        &server
            .post(
                "/v1/login/second-factor",
                json!({ "challengeId": challenge["challengeId"], "code": code }),
            )
            .await,
    );
    let msgs = consume(
        &broker.brokers(),
        &["session"],
        3,
        Duration::from_secs(20),
        |got| {
            got.iter()
                .any(|m| m.payload["sessionId"] == session["sessionId"])
        },
    )
    .await;
    let created = msgs
        .iter()
        .find(|m| m.payload["sessionId"] == session["sessionId"])
        .expect("sessionCreated of the second step");
    assert_eq!(created.payload["name"], "sessionCreated");
}

/// `Set-Cookie` values of an answer, by cookie name.
fn set_cookies(res: &reqwest::Response) -> Vec<(String, String)> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| {
            let v = v.to_str().unwrap();
            tests::record_set_cookie(v);
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.split_once('=').unwrap();
            (name.to_string(), format!("{value};{attrs}"))
        })
        .collect()
}

fn cookie_value<'a>(cookies: &'a [(String, String)], name: &str) -> &'a str {
    let (_, v) = cookies
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("cookie {name} in {cookies:?}"));
    v.split(';').next().unwrap()
}

/// The session cookies' names (decision cookies): `__Host-` where the path is
/// `/`, `__Secure-` for the refresh cookie, whose path is the refresh route's.
const ACCESS_COOKIE: &str = "__Host-airbnb-auth-service-access-token";
const REFRESH_COOKIE: &str = "__Secure-airbnb-auth-service-refresh-token";
const CSRF_COOKIE: &str = "__Host-airbnb-auth-service-csrf";

/// In cookie mode the body carries no token: a script that reads the CSRF
/// cookie cannot read them there.
fn assert_tokens_only_in_cookies(answer: &Value) {
    let session = &answer["session"];
    assert!(session["sessionId"].is_string(), "{answer}");
    assert_eq!(session["accessToken"], Value::Null, "{answer}");
    assert_eq!(session["refreshToken"], Value::Null, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_sessions_need_the_csrf_token_to_change_state() {
    let db = TestDb::create().await;
    let server = start_auth_service(&db.url, &[]).await;
    let user = register(&server, "cookie@example.com").await;
    let id = user["id"].as_str().unwrap();
    let client = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", server.base);

    let res = client
        .post(url("/v1/login"))
        .json(&json!({ "email": "cookie@example.com", "password": PASSWORD, "setCookie": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cookies = set_cookies(&res);
    let signed_in: Value = res.json().await.unwrap();
    assert_tokens_only_in_cookies(&signed_in);
    let (_, access_attrs) = cookies.iter().find(|(n, _)| n == ACCESS_COOKIE).unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(access_attrs.contains(attr), "{attr} in {access_attrs}");
    }
    let (_, refresh_attrs) = cookies.iter().find(|(n, _)| n == REFRESH_COOKIE).unwrap();
    assert!(refresh_attrs.contains("Path=/v1/refresh") && refresh_attrs.contains("HttpOnly"));
    let (_, csrf_attrs) = cookies.iter().find(|(n, _)| n == CSRF_COOKIE).unwrap();
    assert!(
        !csrf_attrs.contains("HttpOnly"),
        "the page reads the CSRF cookie"
    );
    let access = cookie_value(&cookies, ACCESS_COOKIE).to_string();
    let refresh = cookie_value(&cookies, REFRESH_COOKIE).to_string();
    let csrf = cookie_value(&cookies, CSRF_COOKIE).to_string();
    let jar = format!("{ACCESS_COOKIE}={access}; {CSRF_COOKIE}={csrf}");

    // Reading with the cookie alone works.
    let api = Api {
        token: None,
        ..server.api.clone()
    };
    let (status, me) = api
        .call(Method::GET, "/v1/currentuser", None, &[("cookie", &jar)])
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"]["id"], user["id"]);

    // Changing state with the cookie needs the CSRF header.
    let path = format!("/v1/users/{id}/profile");
    let change = json!({ "bio": "changed by cookie" });
    let (status, refused) = api
        .call(
            Method::PATCH,
            &path,
            Some(change.clone()),
            &[("cookie", &jar)],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["errCode"], "CSRF_TOKEN_INVALID");
    let (status, _) = api
        .call(
            Method::PATCH,
            &path,
            Some(change.clone()),
            &[("cookie", &jar), ("x-csrf-token", "forged")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, changed) = api
        .call(
            Method::PATCH,
            &path,
            Some(change),
            &[("cookie", &jar), ("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["user"]["bio"], "changed by cookie");

    // The service-named header carries a token too, with no CSRF needed.
    let (status, _) = api
        .call(
            Method::PATCH,
            &path,
            Some(json!({ "bio": "by header" })),
            &[("airbnb-auth-service-access-token", &access)],
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Refresh from the cookie needs the CSRF header and renews the cookies.
    let refresh_jar = format!("{REFRESH_COOKIE}={refresh}; {CSRF_COOKIE}={csrf}");
    let res = client
        .post(url("/v1/refresh"))
        .header("cookie", &refresh_jar)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = client
        .post(url("/v1/refresh"))
        .header("cookie", &refresh_jar)
        .header("x-csrf-token", &csrf)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let renewed = set_cookies(&res);
    let refreshed: Value = res.json().await.unwrap();
    assert_tokens_only_in_cookies(&refreshed);
    let new_access = cookie_value(&renewed, ACCESS_COOKIE).to_string();
    assert_ne!(new_access, access);

    // Logout (state-changing: CSRF too) clears the cookies; the old cookie is dead.
    let new_jar = format!("{ACCESS_COOKIE}={new_access}; {CSRF_COOKIE}={csrf}");
    let res = client
        .post(url("/v1/logout"))
        .header("cookie", &new_jar)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cleared = set_cookies(&res);
    assert_eq!(cleared.len(), 3);
    assert!(cleared
        .iter()
        .all(|(_, v)| v.starts_with(';') && v.contains("Max-Age=0")));
    let (status, _) = api
        .call(
            Method::GET,
            "/v1/currentuser",
            None,
            &[("cookie", &new_jar)],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_list_what_the_caller_may_do() {
    let db = TestDb::create().await;
    let server = start_auth_service(&db.url, &[]).await;
    register(&server, "perm@example.com").await;
    let user = server.as_user("perm@example.com", PASSWORD).await;
    let admin = server.admin().await;

    let access = |body: &Value| -> std::collections::BTreeMap<String, String> {
        body["permissions"]["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap().to_string(),
                    r["access"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let mine = expect(StatusCode::OK, &user.get("/v1/permissions").await);
    assert_eq!(mine["permissions"]["role"], "user");
    let mine = access(&mine);
    assert_eq!(mine["getUser"], "own");
    assert_eq!(mine["updateProfile"], "own");
    assert_eq!(mine["listUsers"], "none");
    assert_eq!(mine["createUserGroup"], "none");
    assert_eq!(mine["updateUserRole"], "none");
    assert_eq!(mine["getUserGroup"], "all");
    assert_eq!(mine["login"], "all");
    let theirs = access(&expect(StatusCode::OK, &admin.get("/v1/permissions").await));
    assert_eq!(theirs["listUsers"], "all");
    assert_eq!(theirs["getUser"], "all");
    assert_eq!(theirs["updateUserRole"], "all", "superAdmin");
    assert_eq!(mine.len(), theirs.len(), "every route is listed");
    expect(
        StatusCode::UNAUTHORIZED,
        &server.get("/v1/permissions").await,
    );

    // List answers carry the object's routes the caller may use.
    let list = expect(StatusCode::OK, &user.get("/v1/usergroups").await);
    let ui: Vec<&str> = list["uiPermissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(ui.contains(&"listUserGroups") && ui.contains(&"getUserGroup"));
    assert!(!ui.contains(&"createUserGroup"), "{ui:?}");
    let list = expect(StatusCode::OK, &admin.get("/v1/usergroups").await);
    assert!(list["uiPermissions"]
        .as_array()
        .unwrap()
        .contains(&json!("createUserGroup")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_are_also_sent_by_smtp() {
    // Python's standard SMTP server (smtpd, 3.11) prints every message it receives.
    let port = tests::free_port();
    let mut smtp = std::process::Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-u",
            "-m",
            "smtpd",
            "-n",
            "-c",
            "DebuggingServer",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 -m smtpd");
    let stdout = smtp.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            // Without decoding, it prints each line as a Python bytes literal: b'...'.
            let line = match line.strip_prefix("b'").and_then(|l| l.strip_suffix('\'')) {
                Some(inner) => inner.to_string(),
                None => line,
            };
            let _ = tx.send(line);
        }
    });
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let db = TestDb::create().await;
    let port_text = port.to_string();
    let server = start_auth_service(
        &db.url,
        &[
            ("SMTP_HOST", "127.0.0.1"),
            ("SMTP_PORT", &port_text),
            ("SMTP_TLS", "none"),
            ("SMTP_FROM", "Auth <no-reply@example.com>"),
        ],
    )
    .await;
    register(&server, "mail@example.com").await;
    expect(
        StatusCode::ACCEPTED,
        &server
            .post(
                "/v1/verification/email/start",
                json!({ "email": "mail@example.com" }),
            )
            .await,
    );
    let mut message = Vec::new();
    let code = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = rx.recv().await {
            message.push(line.clone());
            if let Some(rest) = line.strip_prefix("Your code is ") {
                return rest.trim_end_matches('.').to_string();
            }
        }
        panic!("the SMTP server stopped");
    })
    .await
    .expect("an email with the code");
    let _ = smtp.kill();
    let _ = smtp.wait();
    let text = message.join("\n");
    assert!(text.contains("To: mail@example.com"), "{text}");
    assert!(text.contains("From: Auth <no-reply@example.com>"), "{text}");
    let done = expect(
        StatusCode::OK,
        &server
            .post(
                "/v1/verification/email/complete",
                json!({ "email": "mail@example.com", "code": code }),
            )
            .await,
    );
    assert_eq!(done["user"]["emailVerified"], true);
}
