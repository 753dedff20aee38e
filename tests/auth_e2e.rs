//! Authentication of the generated auth service over HTTP, against
//! PostgreSQL (and the broker for session events): flows, bad tokens,
//! throttling, revocation, and every route's rule.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tests::{
    auth_service_with_broker, consume, expect, start_auth_service, Api, Running, TestDb,
    ADMIN_EMAIL,
};

/// A service whose signing key the test knows, so it can forge tokens.
struct Keyed {
    server: Running,
    db: TestDb,
    pkcs8: Vec<u8>,
}

const KID: &str = "test-key-1";

fn key_pem() -> (String, Vec<u8>) {
    use ring::signature::Ed25519KeyPair;
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
    (pem, pkcs8.as_ref().to_vec())
}

async fn keyed(settings: &[(&str, &str)]) -> Keyed {
    let db = TestDb::create().await;
    let (pem, pkcs8) = key_pem();
    let mut all: Vec<(&str, &str)> = vec![("JWT_PRIVATE_KEY", &pem), ("JWT_KEY_ID", KID)];
    all.extend_from_slice(settings);
    let server = start_auth_service(&db.url, &all).await;
    Keyed { server, db, pkcs8 }
}

async fn register(api: &Api, email: &str, password: &str) -> Value {
    let body = expect(
        StatusCode::CREATED,
        &api.anonymous()
            .post(
                "/v1/register",
                json!({ "email": email, "password": password, "fullname": "Someone" }),
            )
            .await,
    );
    body["user"].clone()
}

/// Neither the session's access token nor its refresh token works any more.
async fn assert_session_ended(api: &Api, session: &Value) {
    let token = session["accessToken"].as_str().unwrap();
    expect(
        StatusCode::UNAUTHORIZED,
        &api.with_token(token).get("/v1/currentuser").await,
    );
    expect(
        StatusCode::UNAUTHORIZED,
        &api.post(
            "/v1/refresh",
            json!({ "refreshToken": session["refreshToken"] }),
        )
        .await,
    );
}

fn claims(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut decode = || {
        serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap())
            .unwrap()
    };
    (decode(), decode())
}

fn sign(pkcs8: &[u8], claims: &Value, kid: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_ed_der(pkcs8),
    )
    .unwrap()
}

#[tokio::test]
async fn login_refresh_logout_and_current_user() {
    let k = keyed(&[("REFRESH_GRACE_SECS", "1")]).await;
    let api = &k.server.api;
    let user = register(api, "flow@x.io", "a decent secret").await;
    let uid = user["id"].as_str().unwrap();

    let device = json!({ "email": "FLOW@x.io", "password": "a decent secret", "deviceId": "d-1", "deviceType": "phone",
        "deviceName": "Pixel", "deviceOrigin": "app", "deviceOs": "android", "city": "Izmir", "state": "35", "country": "TR" });
    let login = expect(StatusCode::OK, &api.post("/v1/login", device).await);
    assert_eq!(login["dataName"], "session");
    assert_eq!(login["userId"], uid, "the envelope names the caller");
    let s = &login["session"];
    assert_eq!(s["userId"], uid);
    assert_eq!(login["sessionId"], s["sessionId"]);
    for key in [
        "sessionId",
        "accessToken",
        "refreshToken",
        "accessTokenExpiresAt",
        "refreshTokenExpiresAt",
        "createdAt",
        "expiredAt",
    ] {
        assert!(!s[key].is_null(), "{key} in {s}");
    }
    assert_eq!(s["deviceName"], "Pixel");
    assert_eq!(s["country"], "TR");
    let refresh = s["refreshToken"].as_str().unwrap().to_string();
    assert!(
        URL_SAFE_NO_PAD.decode(&refresh).unwrap().len() >= 16,
        "at least 128 random bits"
    );
    let access = s["accessToken"].as_str().unwrap().to_string();
    let (header, body) = claims(&access);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], KID);
    assert_eq!(body["iss"], "airbnb-auth-service");
    assert_eq!(body["aud"], "airbnb");
    assert_eq!(body["sub"], uid);
    assert_eq!(body["sid"], s["sessionId"]);
    assert_eq!(body["role"], "user");
    assert!(body["exp"].as_i64().unwrap() > chrono::Utc::now().timestamp());

    // Another service verifies the token offline with the JWKS.
    let jwks = expect(StatusCode::OK, &api.get("/v1/.well-known/jwks.json").await);
    let jwk = &jwks["keys"][0];
    assert_eq!(jwk["kid"], KID);
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    let key = jsonwebtoken::DecodingKey::from_ed_components(jwk["x"].as_str().unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    v.set_audience(&["airbnb"]);
    v.set_issuer(&["airbnb-auth-service"]);
    assert!(
        jsonwebtoken::decode::<Value>(&access, &key, &v).is_ok(),
        "the JWKS verifies the token"
    );

    let me_api = api.with_token(&access);
    let me = expect(StatusCode::OK, &me_api.get("/v1/currentuser").await);
    assert_eq!(me["user"]["email"], "flow@x.io");
    assert!(me["user"].get("password").is_none());

    // Refresh: a new pair; the old refresh token is spent.
    let renewed = expect(
        StatusCode::OK,
        &api.post("/v1/refresh", json!({ "refreshToken": refresh }))
            .await,
    );
    let r2 = &renewed["session"];
    assert_eq!(r2["sessionId"], s["sessionId"], "the session lives on");
    assert_ne!(r2["refreshToken"], s["refreshToken"]);
    // A second tab refreshing with the same token at once gets the same pair.
    let tab = expect(
        StatusCode::OK,
        &api.post("/v1/refresh", json!({ "refreshToken": refresh }))
            .await,
    );
    assert_eq!(tab["session"]["refreshToken"], r2["refreshToken"]);
    let newest = r2["accessToken"].as_str().unwrap().to_string();
    expect(
        StatusCode::OK,
        &api.with_token(&newest).get("/v1/currentuser").await,
    );

    // After the grace window, reuse of the spent token revokes the whole session.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    expect(
        StatusCode::UNAUTHORIZED,
        &api.post("/v1/refresh", json!({ "refreshToken": refresh }))
            .await,
    );
    let ended = expect(
        StatusCode::UNAUTHORIZED,
        &api.with_token(&newest).get("/v1/currentuser").await,
    );
    assert_eq!(ended["errCode"], "UNAUTHORIZED");
    expect(
        StatusCode::UNAUTHORIZED,
        &api.post("/v1/refresh", json!({ "refreshToken": r2["refreshToken"] }))
            .await,
    );

    // Logout ends a fresh session at once.
    let again = api.login("flow@x.io", "a decent secret").await;
    let token = again["accessToken"].as_str().unwrap();
    let bye = expect(
        StatusCode::OK,
        &api.with_token(token).post("/v1/logout", json!({})).await,
    );
    assert_eq!(bye["session"]["sessionId"], again["sessionId"]);
    assert_session_ended(api, &again).await;
}

#[tokio::test]
async fn bad_tokens_are_rejected() {
    let k = keyed(&[]).await;
    let api = &k.server.api;
    let user = register(api, "tok@x.io", "a decent secret").await;
    let session = api.login("tok@x.io", "a decent secret").await;
    let good = session["accessToken"].as_str().unwrap().to_string();
    expect(
        StatusCode::OK,
        &api.with_token(&good).get("/v1/currentuser").await,
    );
    let (_, body) = claims(&good);

    let now = chrono::Utc::now().timestamp();
    let mut expired = body.clone();
    expired["exp"] = json!(now - 10);
    let mut wrong_aud = body.clone();
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = body.clone();
    wrong_iss["iss"] = json!("evil");
    let mut other_user = body.clone();
    other_user["sub"] = json!(uuid::Uuid::new_v4());
    let parts: Vec<&str> = good.split('.').collect();
    let mut forged_role = body.clone();
    forged_role["role"] = json!("superAdmin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(forged_role.to_string()),
        parts[2]
    );
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    // HS256 with the public key as the shared secret: the classic confusion.
    let jwks = api.get("/v1/.well-known/jwks.json").await.1;
    let public = URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some(KID.into());
    let hs256 = jsonwebtoken::encode(
        &hs_header,
        &body,
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .unwrap();
    let (_, stranger_key) = key_pem();

    let cases: Vec<(&str, String)> = vec![
        ("expired", sign(&k.pkcs8, &expired, KID)),
        ("wrong audience", sign(&k.pkcs8, &wrong_aud, KID)),
        ("wrong issuer", sign(&k.pkcs8, &wrong_iss, KID)),
        (
            "another user's claim on this session",
            sign(&k.pkcs8, &other_user, KID),
        ),
        ("tampered payload", tampered),
        ("alg none", none),
        ("HS256 with the public key", hs256),
        ("signed by another key", sign(&stranger_key, &body, KID)),
        ("unknown kid", sign(&k.pkcs8, &body, "other-kid")),
        ("garbage", "not.a.jwt".to_string()),
    ];
    for (name, token) in cases {
        let answer = api.with_token(&token).get("/v1/currentuser").await;
        assert_eq!(answer.0, StatusCode::UNAUTHORIZED, "{name}: {}", answer.1);
        assert_eq!(answer.1["status"], "ERR");
    }
    let (status, _) = api
        .call(
            Method::GET,
            "/v1/currentuser",
            None,
            &[("authorization", "Basic abc")],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api.get("/v1/currentuser").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The forged role changes nothing: roles come from the database.
    let forged = sign(&k.pkcs8, &forged_role, KID);
    let as_forged = expect(
        StatusCode::FORBIDDEN,
        &api.with_token(&forged).get("/v1/users").await,
    );
    assert_eq!(as_forged["errCode"], "FORBIDDEN");
    let _ = user;
}

#[tokio::test]
async fn unknown_account_and_wrong_password_answer_alike() {
    let k = keyed(&[]).await;
    let api = &k.server.api;
    register(api, "real@x.io", "a decent secret").await;
    let wrong = expect(
        StatusCode::UNAUTHORIZED,
        &api.post(
            "/v1/login",
            json!({ "email": "real@x.io", "password": "not it at all" }),
        )
        .await,
    );
    let unknown = expect(
        StatusCode::UNAUTHORIZED,
        &api.post(
            "/v1/login",
            json!({ "email": "ghost@x.io", "password": "not it at all" }),
        )
        .await,
    );
    for key in ["status", "statusCode", "errCode", "message", "details"] {
        assert_eq!(wrong[key], unknown[key], "{key}");
    }
    let common = expect(
        StatusCode::BAD_REQUEST,
        &api.post(
            "/v1/register",
            json!({ "email": "c@x.io", "password": "password123", "fullname": "C" }),
        )
        .await,
    );
    assert_eq!(common["details"][0]["field"], "password");
    let short = expect(
        StatusCode::BAD_REQUEST,
        &api.post(
            "/v1/register",
            json!({ "email": "c@x.io", "password": "short", "fullname": "C" }),
        )
        .await,
    );
    assert_eq!(short["details"][0]["field"], "password");
    expect(
        StatusCode::BAD_REQUEST,
        &api.post("/v1/login", json!({ "email": "real@x.io" })).await,
    );
}

#[tokio::test]
async fn throttling_triggers_and_releases() {
    let k = keyed(&[
        ("LOGIN_PER_ACCOUNT", "3"),
        ("LOGIN_PER_ADDRESS", "8"),
        ("PUBLIC_WRITES_PER_ADDRESS", "3"),
        ("THROTTLE_WINDOW_SECS", "2"),
    ])
    .await;
    let api = &k.server.api;
    register(api, "t@x.io", "a decent secret").await;
    for _ in 0..3 {
        expect(
            StatusCode::UNAUTHORIZED,
            &api.post(
                "/v1/login",
                json!({ "email": "t@x.io", "password": "wrong guess!" }),
            )
            .await,
        );
    }
    let (status, body) = api
        .post(
            "/v1/login",
            json!({ "email": "t@x.io", "password": "a decent secret" }),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["errCode"], "TOO_MANY_REQUESTS");
    let res = api
        .client
        .post(format!("{}/v1/login", api.base))
        .json(&json!({ "email": "t@x.io", "password": "x" }))
        .send()
        .await
        .unwrap();
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // Another account from the same address is limited only by the address bucket.
    register(api, "u@x.io", "a decent secret").await;
    expect(
        StatusCode::OK,
        &api.post(
            "/v1/login",
            json!({ "email": "u@x.io", "password": "a decent secret" }),
        )
        .await,
    );
    // Registrations per address: the fourth in the window is refused.
    register(api, "v@x.io", "a decent secret").await;
    let fourth = api
        .post(
            "/v1/register",
            json!({ "email": "x@x.io", "password": "a decent secret", "fullname": "X" }),
        )
        .await;
    assert_eq!(fourth.0, StatusCode::TOO_MANY_REQUESTS, "{}", fourth.1);

    tokio::time::sleep(Duration::from_millis(2300)).await;
    expect(
        StatusCode::OK,
        &api.post(
            "/v1/login",
            json!({ "email": "t@x.io", "password": "a decent secret" }),
        )
        .await,
    );
    register(api, "w@x.io", "a decent secret").await;
    // The address limit: 8 attempts in a window, whatever the account.
    let mut statuses = Vec::new();
    for _ in 0..9 {
        statuses.push(
            api.post(
                "/v1/login",
                json!({ "email": "nobody@x.io", "password": "wrong guess!" }),
            )
            .await
            .0,
        );
    }
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn password_changes_and_deletes_revoke_sessions() {
    let k = keyed(&[]).await;
    let api = &k.server.api;
    let admin = api.admin().await;
    let user = register(api, "rev@x.io", "a decent secret").await;
    let uid = user["id"].as_str().unwrap().to_string();
    let phone = api.as_user("rev@x.io", "a decent secret").await;
    let laptop = api.as_user("rev@x.io", "a decent secret").await;
    expect(
        StatusCode::OK,
        &phone
            .patch(
                &format!("/v1/users/{uid}/password"),
                json!({ "password": "a newer secret", "currentPassword": "a decent secret" }),
            )
            .await,
    );
    expect(StatusCode::OK, &phone.get("/v1/currentuser").await);
    expect(
        StatusCode::UNAUTHORIZED,
        &laptop.get("/v1/currentuser").await,
    );
    expect(
        StatusCode::UNAUTHORIZED,
        &api.post(
            "/v1/login",
            json!({ "email": "rev@x.io", "password": "a decent secret" }),
        )
        .await,
    );
    let tablet = api.as_user("rev@x.io", "a newer secret").await;
    expect(
        StatusCode::OK,
        &admin
            .patch(
                &format!("/v1/users/{uid}/password-by-admin"),
                json!({ "password": "admin chose this" }),
            )
            .await,
    );
    expect(
        StatusCode::UNAUTHORIZED,
        &phone.get("/v1/currentuser").await,
    );
    expect(
        StatusCode::UNAUTHORIZED,
        &tablet.get("/v1/currentuser").await,
    );
    expect(StatusCode::OK, &admin.get("/v1/currentuser").await);
    let last = api.as_user("rev@x.io", "admin chose this").await;
    expect(
        StatusCode::OK,
        &admin.delete(&format!("/v1/users/{uid}")).await,
    );
    expect(StatusCode::UNAUTHORIZED, &last.get("/v1/currentuser").await);
    expect(
        StatusCode::UNAUTHORIZED,
        &api.post(
            "/v1/login",
            json!({ "email": "rev@x.io", "password": "admin chose this" }),
        )
        .await,
    );
}

#[tokio::test]
async fn the_bootstrap_super_admin_exists_once() {
    let db = TestDb::create().await;
    let first = start_auth_service(&db.url, &[]).await;
    let admin = first.admin().await;
    let me = expect(StatusCode::OK, &admin.get("/v1/currentuser").await);
    assert_eq!(me["user"]["roleId"], "superAdmin");
    assert_eq!(me["user"]["email"], ADMIN_EMAIL);
    drop(first);
    let _second = start_auth_service(&db.url, &[]).await;
    assert_eq!(
        db.count("users").await,
        1,
        "a restart does not create it again"
    );
}

/// What the rule of an operation (`x-access` of /openapi.json) lets a caller
/// do. A list whose rule lets owners in serves everyone their own rows.
fn allowed(access: &Value, role: &str, owns: bool, list: bool) -> bool {
    match access {
        Value::String(s) if s == "public" || s == "login" => true,
        Value::Object(rule) => {
            rule["roles"].as_array().unwrap().iter().any(|r| r == role)
                || (rule["owner"] == true && (owns || list))
        }
        other => panic!("unknown access {other}"),
    }
}

#[tokio::test]
async fn every_route_enforces_its_rule_for_every_kind_of_caller() {
    let k = keyed(&[
        ("PUBLIC_WRITES_PER_ADDRESS", "1000"),
        ("LOGIN_PER_ADDRESS", "1000"),
    ])
    .await;
    let api = &k.server.api;
    let admin_root = api.admin().await;
    // An admin (role admin) and another user; for each call a fresh owner
    // (role user) with fresh rows, so that deletes and revocations by one call
    // change nothing for the next.
    register(api, "adm@x.io", "a decent secret").await;
    register(api, "oth@x.io", "a decent secret").await;
    let adm_id = admin_root.get("/v1/users?email=adm@x.io").await.1["users"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    expect(
        StatusCode::OK,
        &admin_root
            .patch(
                &format!("/v1/users/{adm_id}/role"),
                json!({ "roleId": "admin" }),
            )
            .await,
    );
    let other = api.as_user("oth@x.io", "a decent secret").await;
    let admin = api.as_user("adm@x.io", "a decent secret").await;
    let group = expect(
        StatusCode::CREATED,
        &admin_root
            .post("/v1/usergroups", json!({ "groupName": "g" }))
            .await,
    )["userGroup"]
        .clone();
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let doc = expect(StatusCode::OK, &api.get("/openapi.json").await);
    let mut table: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut n = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let name = op["operationId"].as_str().unwrap().to_string();
            if matches!(name.as_str(), "login" | "refreshToken" | "getPublicKeys") {
                continue; // public session routes, tested on their own
            }
            for who in ["anonymous", "user", "owner", "admin"] {
                n += 1;
                let email = format!("own{n}@x.io");
                let owner_row = register(api, &email, "a decent secret").await;
                let owner = api.as_user(&email, "a decent secret").await;
                let file = expect(
                    StatusCode::CREATED,
                    &owner.post("/v1/useravatarsfiles", json!({ "fileName": "a.png", "mimeType": "image/png", "fileData": png, "userId": owner_row["id"] })).await,
                )["userAvatarsFile"]
                    .clone();
                let member = expect(
                    StatusCode::CREATED,
                    &admin_root
                        .post(
                            "/v1/usergroupmembers",
                            json!({ "groupId": group["id"], "userId": owner_row["id"] }),
                        )
                        .await,
                )["userGroupMember"]
                    .clone();
                let id = match op["tags"][0].as_str().unwrap() {
                    "userGroup" => group["id"].clone(),
                    "userGroupMember" => member["id"].clone(),
                    "userAvatarsFile" => file["id"].clone(),
                    _ => owner_row["id"].clone(),
                };
                let url = path
                    .replace("{id}", id.as_str().unwrap())
                    .replace("{accessKey}", file["accessKey"].as_str().unwrap());
                let method: Method = method.to_uppercase().parse().unwrap();
                let body = (matches!(method, Method::POST | Method::PATCH)
                    || op.get("requestBody").is_some())
                .then(|| json!({}));
                let (caller, role, owns) = match who {
                    "anonymous" => (api.anonymous(), "", false),
                    "user" => (other.clone(), "user", false),
                    "owner" => (owner.clone(), "user", true),
                    _ => (admin.clone(), "admin", false),
                };
                // Logging out must not end a session the next call needs.
                let caller = if name == "logout" && who != "anonymous" {
                    api.as_user(&email, "a decent secret").await
                } else {
                    caller
                };
                let streams = op["responses"]["200"]["content"]
                    .get("text/event-stream")
                    .is_some();
                let status = if streams {
                    // An event stream never ends: only its status is read.
                    let mut req = caller.client.get(format!("{}{url}", caller.base));
                    if let Some(t) = &caller.token {
                        req = req.bearer_auth(t);
                    }
                    req.send().await.expect("request").status()
                } else {
                    caller.call(method.clone(), &url, body, &[]).await.0
                };
                let public = op["x-access"] == "public";
                let list = method == Method::GET && !path.contains("{id}");
                let expected_ok =
                    public || (who != "anonymous" && allowed(&op["x-access"], role, owns, list));
                let got_ok = status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN;
                table
                    .entry(name.clone())
                    .or_default()
                    .push(format!("{who}:{}", status.as_u16()));
                assert_eq!(
                    got_ok, expected_ok,
                    "{name} as {who}: {status} (rule {})",
                    op["x-access"]
                );
                if !expected_ok {
                    let want = if who == "anonymous" {
                        StatusCode::UNAUTHORIZED
                    } else {
                        StatusCode::FORBIDDEN
                    };
                    assert_eq!(status, want, "{name} as {who}");
                }
            }
        }
    }
    assert!(
        table.len() >= 28,
        "every data route and the session routes: {}",
        table.len()
    );

    // Lists that let owners in show them only their own rows, counted in SQL.
    let owner_row = register(api, "lister@x.io", "a decent secret").await;
    let owner = api.as_user("lister@x.io", "a decent secret").await;
    for _ in 0..3 {
        expect(
            StatusCode::CREATED,
            &owner.post("/v1/useravatarsfiles", json!({ "fileName": "a.png", "mimeType": "image/png", "fileData": png, "userId": owner_row["id"] })).await,
        );
    }
    let mine = expect(
        StatusCode::OK,
        &owner.get("/v1/useravatarsfiles?pageRowCount=2").await,
    );
    let theirs = expect(StatusCode::OK, &other.get("/v1/useravatarsfiles").await);
    let all = expect(StatusCode::OK, &admin.get("/v1/useravatarsfiles").await);
    assert_eq!(mine["paging"]["totalRowCount"], 3, "{mine}");
    assert_eq!(mine["rowCount"], 2);
    assert_eq!(theirs["paging"]["totalRowCount"], 0, "{theirs}");
    assert!(
        all["paging"]["totalRowCount"].as_i64().unwrap() > 3,
        "admins see every file"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn session_events_reach_the_broker_in_the_seed_shape() {
    let (broker, _db, server) = auth_service_with_broker().await;
    let api = &server.api;
    register(api, "ev@x.io", "a decent secret").await;
    let login = expect(
        StatusCode::OK,
        &api.post("/v1/login", json!({ "email": "ev@x.io", "password": "a decent secret", "deviceId": "dev-9", "city": "Ankara" })).await,
    )["session"]
        .clone();
    let renewed = expect(
        StatusCode::OK,
        &api.post(
            "/v1/refresh",
            json!({ "refreshToken": login["refreshToken"] }),
        )
        .await,
    )["session"]
        .clone();
    expect(
        StatusCode::OK,
        &api.with_token(renewed["accessToken"].as_str().unwrap())
            .post("/v1/logout", json!({}))
            .await,
    );

    let msgs = consume(
        &broker.brokers(),
        &["session"],
        3,
        Duration::from_secs(30),
        |m| m.len() >= 4,
    )
    .await;
    // The bootstrap admin never logged in here: login, refresh, logout.
    let mine: Vec<_> = msgs
        .iter()
        .filter(|m| m.key == login["sessionId"].as_str().unwrap())
        .collect();
    let names: Vec<&str> = mine
        .iter()
        .map(|m| m.payload["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["sessionCreated", "sessionUpdated", "sessionDeleted"]
    );
    let envelope_keys = [
        "payload",
        "id",
        "version",
        "name",
        "namespace",
        "parentNamespace",
        "timestamp",
        "clientId",
        "userId",
        "traceId",
        "sessionId",
    ];
    let session_keys = [
        "sessionId",
        "userId",
        "accessToken",
        "refreshToken",
        "deviceId",
        "deviceType",
        "deviceName",
        "deviceOrigin",
        "deviceOs",
        "city",
        "state",
        "country",
        "createdAt",
        "expiredAt",
        // Beyond the seed (decision role-changes).
        "role",
    ];
    for m in &mine {
        let mut keys: Vec<&str> = m
            .payload
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut want = envelope_keys.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want);
        let mut got: Vec<&str> = m.payload["payload"]["session"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        got.sort_unstable();
        let mut want = session_keys.to_vec();
        want.sort_unstable();
        assert_eq!(got, want);
        assert_eq!(m.payload["sessionId"], login["sessionId"]);
        assert_eq!(m.payload["version"], 1);
        assert_eq!(m.payload["namespace"], "airbnb-auth-service");
        assert_eq!(m.headers["ce_id"], m.payload["id"]);
        let text = m.payload.to_string();
        for token in [
            &login["accessToken"],
            &login["refreshToken"],
            &renewed["accessToken"],
            &renewed["refreshToken"],
        ] {
            assert!(
                !text.contains(token.as_str().unwrap()),
                "a raw token went on Kafka"
            );
        }
    }
    let created = &mine[0].payload["payload"]["session"];
    assert_eq!(created["deviceId"], "dev-9");
    assert!(mine
        .iter()
        .all(|m| m.payload["payload"]["session"]["role"] == "user"));
    assert_eq!(created["city"], "Ankara");
    assert!(created["accessToken"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(created["refreshToken"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(
        mine[2].payload["payload"]["session"]["accessToken"],
        Value::Null
    );
}

#[tokio::test]
async fn expired_sessions_end_with_a_session_deleted_event() {
    let k = keyed(&[("REFRESH_TOKEN_TTL_SECS", "1")]).await;
    let api = &k.server.api;
    register(api, "exp@x.io", "a decent secret").await;
    let session = api.login("exp@x.io", "a decent secret").await;
    let token = session["accessToken"].as_str().unwrap();
    expect(
        StatusCode::OK,
        &api.with_token(token).get("/v1/currentuser").await,
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_session_ended(api, &session).await;
    let pool = sqlx::PgPool::connect(&k.db.url).await.unwrap();
    let swept = airbnb_auth_service::auth::sweep_once(&pool).await.unwrap();
    assert!(swept >= 1, "the expired session was ended");
    let (reason,): (String,) =
        sqlx::query_as("SELECT revoked_reason FROM sessions WHERE id = $1::uuid")
            .bind(session["sessionId"].as_str().unwrap())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(reason, "expired");
    let events: Vec<(String,)> = sqlx::query_as(
        "SELECT payload FROM event_outbox WHERE topic = 'session' AND event_key = $1 ORDER BY id",
    )
    .bind(session["sessionId"].as_str().unwrap())
    .fetch_all(&pool)
    .await
    .unwrap();
    let names: Vec<String> = events
        .iter()
        .map(|(p,)| {
            serde_json::from_str::<Value>(p).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["sessionCreated", "sessionDeleted"]);
    assert_eq!(
        airbnb_auth_service::auth::sweep_once(&pool).await.unwrap(),
        0,
        "each session ends once"
    );
}

/// Replicas remember live sessions (decision live-session-cache): ending a
/// session or changing an account on one replica acts at once there and, by
/// NOTIFY, on the other.
#[tokio::test(flavor = "multi_thread")]
async fn ended_sessions_and_changed_roles_reach_every_replica() {
    let db = TestDb::create().await;
    let a = start_auth_service(&db.url, &[]).await;
    let b = start_auth_service(&db.url, &[]).await;
    let admin = a.admin().await;
    let user = register(&a, "replicas@x.io", "a decent secret").await;
    let uid = user["id"].as_str().unwrap().to_string();

    // Signed out on A: refused on A at once, every time, and soon on B.
    for _ in 0..5 {
        let session = a.login("replicas@x.io", "a decent secret").await;
        let token = session["accessToken"].as_str().unwrap();
        // Both replicas now remember the session.
        expect(
            StatusCode::OK,
            &a.with_token(token).get("/v1/currentuser").await,
        );
        expect(
            StatusCode::OK,
            &b.with_token(token).get("/v1/currentuser").await,
        );
        expect(
            StatusCode::OK,
            &a.with_token(token).post("/v1/logout", json!({})).await,
        );
        expect(
            StatusCode::UNAUTHORIZED,
            &a.with_token(token).get("/v1/currentuser").await,
        );
        let refused = eventually(|| async {
            b.with_token(token).get("/v1/currentuser").await.0 == StatusCode::UNAUTHORIZED
        })
        .await;
        assert!(refused, "replica B still accepts a signed-out session");
    }

    // A role granted on A: B lets the user into an admin route soon after.
    let session = a.login("replicas@x.io", "a decent secret").await;
    let on_b = b.with_token(session["accessToken"].as_str().unwrap());
    expect(StatusCode::FORBIDDEN, &on_b.get("/v1/users").await);
    expect(
        StatusCode::OK,
        &admin
            .patch(
                &format!("/v1/users/{uid}/role"),
                json!({ "roleId": "admin" }),
            )
            .await,
    );
    assert!(
        eventually(|| async { on_b.get("/v1/users").await.0 == StatusCode::OK }).await,
        "replica B kept the old role"
    );

    // Deleted on A: the account's sessions end on B.
    expect(
        StatusCode::OK,
        &admin.delete(&format!("/v1/users/{uid}")).await,
    );
    assert!(
        eventually(|| async { on_b.get("/v1/currentuser").await.0 == StatusCode::UNAUTHORIZED })
            .await,
        "replica B accepts a deleted account's session"
    );
}

/// Polls `check` for up to two seconds.
async fn eventually<F, Fut>(check: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
