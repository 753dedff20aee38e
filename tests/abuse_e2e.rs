//! Abuse limits of the generated auth service, tried as an attacker would
//! (issue 17): code budgets per account name, the atomic login throttle, the
//! client address behind trusted proxies, the reset's timing, the common
//! password list and the upload quota.

use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tests::{auth_service, expect, start_auth_service, Api, TestDb};

const PASSWORD: &str = "a long enough secret";

async fn register(api: &Api, email: &str) -> String {
    let body = expect(
        StatusCode::CREATED,
        &api.anonymous()
            .post(
                "/v1/register",
                json!({ "email": email, "password": PASSWORD, "fullname": "Someone" }),
            )
            .await,
    );
    body["user"]["id"].as_str().expect("an id").to_string()
}

/// POSTs `body` to `path` from behind a proxy that forwarded `forwarded`:
/// the status and the Retry-After header.
async fn post_raw(
    api: &Api,
    path: &str,
    body: Value,
    forwarded: Option<&str>,
) -> (StatusCode, Option<u64>) {
    let mut req = api.client.post(format!("{}{path}", api.base)).json(&body);
    if let Some(hops) = forwarded {
        req = req.header("x-forwarded-for", hops);
    }
    let res = req.send().await.expect("request");
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (res.status(), retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_codes_have_a_budget_per_account_name_across_codes() {
    let (server, _db) = auth_service().await;
    register(&server, "victim@example.com").await;
    let start = || {
        server.post(
            "/v1/password-reset/start",
            json!({ "email": "victim@example.com" }),
        )
    };
    let guess = |email: &'static str| {
        let api = server.api.clone();
        async move {
            post_raw(
                &api,
                "/v1/password-reset/complete",
                json!({ "email": email, "code": "000000", "password": "a brand new secret" }),
                None,
            )
            .await
        }
    };
    // Five wrong codes void a code; a new one must not bring five more guesses each.
    for round in 0..2 {
        expect(StatusCode::ACCEPTED, &start().await);
        for _ in 0..5 {
            let (status, _) = guess("victim@example.com").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "round {round}");
        }
    }
    expect(StatusCode::ACCEPTED, &start().await);
    let (status, retry) = guess("victim@example.com").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the 11th check");
    assert!(retry.is_some_and(|s| s >= 1), "Retry-After: {retry:?}");

    // A name without an account runs out the same way, so the 429 tells nothing.
    for _ in 0..10 {
        assert_eq!(guess("nobody@example.com").await.0, StatusCode::BAD_REQUEST);
    }
    let (status, retry) = guess("nobody@example.com").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry.is_some());
    // Other names keep their own budget.
    assert_eq!(guess("third@example.com").await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_factor_challenges_and_checks_have_a_budget_per_account() {
    let (server, db) = auth_service().await;
    let id = register(&server, "twofa@example.com").await;
    sqlx::query("UPDATE users SET email_two_factor = TRUE WHERE id = $1::uuid")
        .bind(&id)
        .execute(&mut db.connect().await)
        .await
        .expect("second factor on");
    let login = || {
        post_raw(
            &server,
            "/v1/login",
            json!({ "email": "twofa@example.com", "password": PASSWORD }),
            None,
        )
    };
    let challenge = || async {
        let (status, body) = server
            .post(
                "/v1/login",
                json!({ "email": "twofa@example.com", "password": PASSWORD }),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["session"]["challengeId"].clone()
    };
    let check = |challenge: Value| {
        let api = server.api.clone();
        async move {
            post_raw(
                &api,
                "/v1/login/second-factor",
                json!({ "challengeId": challenge, "code": "000000" }),
                None,
            )
            .await
        }
    };
    // Wrong codes count per account across challenges: two voided challenges
    // use the ten checks, and a third challenge gets none.
    for _ in 0..2 {
        let c = challenge().await;
        for _ in 0..5 {
            assert_eq!(check(c.clone()).await.0, StatusCode::BAD_REQUEST);
        }
    }
    let third = challenge().await;
    let (status, retry) = check(third).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the 11th wrong code");
    assert!(retry.is_some());
    // Challenges (codes mailed to the victim) are five per window.
    for _ in 0..2 {
        challenge().await;
    }
    let (status, retry) = login().await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the 6th challenge");
    assert!(retry.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_passwords_cannot_pass_the_account_limit() {
    let (server, _db) = auth_service().await;
    register(&server, "target@example.com").await;
    let attempts = (0..25).map(|i| {
        let server = server.api.clone();
        async move {
            server
                .post(
                    "/v1/login",
                    json!({ "email": "target@example.com", "password": format!("guess number {i}") }),
                )
                .await
                .0
        }
    });
    let statuses = futures_join(attempts).await;
    let tried = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(tried + refused, 25, "{statuses:?}");
    assert_eq!(tried, 10, "exactly the limit was hashed: {statuses:?}");

    // Right passwords give their attempt back: a user who signs in often is never locked out.
    register(&server, "regular@example.com").await;
    for _ in 0..12 {
        server.login("regular@example.com", PASSWORD).await;
    }
}

/// Runs `futures` at once and collects their outputs in order.
async fn futures_join<F: std::future::Future<Output = StatusCode> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<StatusCode> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("a request task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_trusted_proxies_the_client_is_the_rightmost_untrusted_hop() {
    let db = TestDb::create().await;
    let server = start_auth_service(
        &db.url,
        &[
            ("TRUSTED_PROXIES", "127.0.0.1/32, 10.0.0.0/8"),
            ("LOGIN_PER_ADDRESS", "3"),
        ],
    )
    .await;
    let login = |hops: String| {
        let server = server.api.clone();
        async move {
            post_raw(
                &server,
                "/v1/login",
                json!({ "email": "nobody@example.com", "password": "not it at all" }),
                Some(&hops),
            )
            .await
            .0
        }
    };
    // A client that invents a new leftmost hop each time is still 198.51.100.7.
    for i in 0..3 {
        let hops = format!("203.0.113.{i}, 198.51.100.7, 10.1.2.3");
        assert_eq!(login(hops).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        login("203.0.113.99, 198.51.100.7".into()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the same proxy has its own bucket.
    assert_eq!(
        login("198.51.100.7, 198.51.100.8".into()).await,
        StatusCode::UNAUTHORIZED
    );
    // IPv6 clients count by their /64.
    for host in 1..=3 {
        let hops = format!("2001:db8:0:1::{host}");
        assert_eq!(login(hops).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        login("2001:db8:0:1::ffff".into()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login("2001:db8:0:2::1".into()).await,
        StatusCode::UNAUTHORIZED
    );

    // The old switch trusted the leftmost hop: it is refused, not ignored.
    use airbnb_auth_service::config::Config;
    let Err(err) = Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(db.url.clone()),
        "TRUST_FORWARDED_FOR" => Some("true".into()),
        _ => None,
    }) else {
        panic!("TRUST_FORWARDED_FOR is accepted");
    };
    let err = err.to_string();
    assert!(err.contains("TRUST_FORWARDED_FOR"), "{err}");
}

/// The fastest of three timings of `call`.
async fn fastest<F, Fut>(mut call: F) -> Duration
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = StatusCode>,
{
    let mut best = Duration::MAX;
    for i in 0..3 {
        let t = Instant::now();
        assert_eq!(call(i).await, StatusCode::BAD_REQUEST);
        best = best.min(t.elapsed());
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_for_an_unknown_account_takes_as_long_as_a_wrong_code() {
    let (server, _db) = auth_service().await;
    register(&server, "known@example.com").await;
    let complete = |email: String| {
        let server = server.api.clone();
        async move {
            server
                .post(
                    "/v1/password-reset/complete",
                    json!({ "email": email, "code": "000000", "password": "a brand new secret" }),
                )
                .await
                .0
        }
    };
    let known = fastest(|_| complete("known@example.com".into())).await;
    let unknown = fastest(|i| complete(format!("ghost{i}@example.com"))).await;
    // The new password's hash dominates both (tens of milliseconds); without it
    // an unknown account answered in a few.
    assert!(
        unknown * 2 >= known,
        "unknown {unknown:?} against known {known:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn common_passwords_are_refused_and_the_bootstrap_secret_too() {
    let (server, db) = auth_service().await;
    for weak in ["zaq12wsx", "11223344", "qwerty12345"] {
        let (status, body) = server
            .post(
                "/v1/register",
                json!({ "email": format!("{weak}@example.com"), "password": weak, "fullname": "W" }),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{weak}: {body}");
        assert!(body.to_string().contains("most common"), "{body}");
    }
    use airbnb_auth_service::{app::Application, config::Config};
    tests::capture_logs();
    tests::record_secret("superadmin_password", "Qwerty12345");
    let url = db.url.clone();
    let config = Config::from_lookup(move |k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "HTTP_ADDR" => Some("127.0.0.1:0".into()),
        "SUPERADMIN_EMAIL" => Some("boss@example.com".into()),
        "SUPERADMIN_PASSWORD" => Some("Qwerty12345".into()),
        _ => None,
    })
    .expect("config");
    let err = Application::build(config)
        .await
        .err()
        .expect("a common bootstrap secret stops the start");
    assert!(
        format!("{err:#}").contains("SUPERADMIN_PASSWORD"),
        "{err:#}"
    );
    let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE email = $1")
        .bind("boss@example.com")
        .fetch_one(&mut db.connect().await)
        .await
        .expect("count");
    assert_eq!(admins, 0);
}

/// A file that sniffs as PNG.
fn png() -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((0..256).map(|i| (i * 31 % 251) as u8));
    bytes
}

async fn upload(api: &Api) -> (StatusCode, Value) {
    let form = Form::new().part("fileData", Part::bytes(png()).file_name("a.png"));
    let res = api
        .client
        .post(format!("{}/v1/useravatarsfiles", api.base))
        .bearer_auth(api.token.as_deref().expect("signed in"))
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_have_a_quota_and_a_deleted_users_files_are_not_served() {
    let (server, _db) = auth_service().await;
    let id = register(&server, "uploader@example.com").await;
    let me = server.as_user("uploader@example.com", PASSWORD).await;
    let mut keys = Vec::new();
    for _ in 0..10 {
        let created = expect(StatusCode::CREATED, &upload(&me).await);
        keys.push(
            created["userAvatarsFile"]["accessKey"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let (status, body) = upload(&me).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the 11th upload: {body}"
    );

    let by_key = format!("/v1/useravatarsfiles/key/{}", keys[0]);
    assert_eq!(server.get(&by_key).await.0, StatusCode::OK);
    let admin = server.admin().await;
    let (status, body) = admin.delete(&format!("/v1/users/{id}")).await;
    assert!(status.is_success(), "{status} {body}");
    let (status, _) = server.get(&by_key).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the deleted user's file");
}
