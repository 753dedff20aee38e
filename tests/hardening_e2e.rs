//! Hardening of the auth service's answers and of its sensitive account
//! changes, over HTTP against PostgreSQL: no answer that carries tokens or
//! personal data may be cached or sniffed; turning the second factor off and
//! archiving one's own account ask for the current password.

use reqwest::StatusCode;
use serde_json::json;
use tests::{auth_service, Api, ADMIN_EMAIL, ADMIN_PASSWORD};

/// Sends a request and returns the status and the two headers that matter here.
async fn headers_of(req: reqwest::RequestBuilder) -> (StatusCode, String, String) {
    let res = req.send().await.expect("request");
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    (
        res.status(),
        header("cache-control"),
        header("x-content-type-options"),
    )
}

#[tokio::test]
async fn answers_with_tokens_or_personal_data_are_neither_stored_nor_sniffed() {
    let (server, _db) = auth_service().await;
    let client = &server.client;
    let base = &server.base;
    let login = client
        .post(format!("{base}/v1/login"))
        .json(&json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD }));
    let (status, cache, sniff) = headers_of(login).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((cache.as_str(), sniff.as_str()), ("no-store", "nosniff"));

    let admin = server.admin().await;
    let token = admin.token.clone().expect("a token");
    // A profile, a list, the stream, and refusals alike.
    for path in ["/v1/users", "/v1/events", "/v1/permissions"] {
        let (status, cache, sniff) =
            headers_of(client.get(format!("{base}{path}")).bearer_auth(&token)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(
            (cache.as_str(), sniff.as_str()),
            ("no-store", "nosniff"),
            "{path}"
        );
    }
    let (status, cache, sniff) = headers_of(client.get(format!("{base}/v1/users"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!((cache.as_str(), sniff.as_str()), ("no-store", "nosniff"));
}

/// The field names of an error answer.
fn fields_of(answer: &(StatusCode, serde_json::Value)) -> Vec<String> {
    assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{}", answer.1);
    tests::error_fields(&answer.1)
}

const PASSWORD: &str = "a decent secret";

/// A fresh service, its admin, and a registered account: as that account, and its id.
async fn with_account() -> (tests::Running, tests::TestDb, Api, Api, String) {
    let (server, db) = auth_service().await;
    let admin = server.admin().await;
    let (user, uid) = tests::register(&server, "me@x.io", "Me").await;
    (server, db, admin, user, uid)
}

/// Confirms the account's address and switches its second factor on.
async fn second_factor_on(admin: &Api, user: &Api, uid: &str) {
    tests::expect(
        StatusCode::OK,
        &admin
            .patch(
                &format!("/v1/users/{uid}"),
                json!({ "emailVerified": true }),
            )
            .await,
    );
    tests::expect(
        StatusCode::OK,
        &user
            .patch(
                &format!("/v1/users/{uid}/profile"),
                json!({ "emailTwoFactor": true }),
            )
            .await,
    );
}

/// A change that switches the second factor off, with `current` as the password.
fn off(current: Option<&str>) -> serde_json::Value {
    let mut body = json!({ "emailTwoFactor": false, "fullname": "Me" });
    if let Some(c) = current {
        body["currentPassword"] = json!(c);
    }
    body
}

#[tokio::test]
async fn switching_the_second_factor_on_needs_a_confirmed_address() {
    let (_server, _db, admin, user, uid) = with_account().await;
    let profile = format!("/v1/users/{uid}/profile");
    let on = json!({ "emailTwoFactor": true });
    assert_eq!(
        fields_of(&user.patch(&profile, on.clone()).await),
        ["emailTwoFactor"]
    );
    // An admin too, unless the same change confirms the address.
    let by_admin = format!("/v1/users/{uid}");
    assert_eq!(
        fields_of(&admin.patch(&by_admin, on).await),
        ["emailTwoFactor"]
    );
    let both = json!({ "emailTwoFactor": true, "emailVerified": true });
    tests::expect(StatusCode::OK, &admin.patch(&by_admin, both).await);
}

#[tokio::test]
async fn switching_the_second_factor_off_asks_for_the_current_password() {
    let (_server, _db, admin, user, uid) = with_account().await;
    second_factor_on(&admin, &user, &uid).await;
    let profile = format!("/v1/users/{uid}/profile");
    assert_eq!(
        fields_of(&user.patch(&profile, off(None)).await),
        ["currentPassword"]
    );
    assert_eq!(
        fields_of(&user.patch(&profile, off(Some("not it"))).await),
        ["currentPassword"]
    );
    let row = tests::expect(
        StatusCode::OK,
        &user.patch(&profile, off(Some(PASSWORD))).await,
    );
    assert_eq!(row["user"]["emailTwoFactor"], false);
    // Already off: other changes need no password.
    tests::expect(StatusCode::OK, &user.patch(&profile, off(None)).await);

    // An admin switching another account's second factor off proves their own password.
    second_factor_on(&admin, &user, &uid).await;
    let by_admin = format!("/v1/users/{uid}");
    assert_eq!(
        fields_of(&admin.patch(&by_admin, off(None)).await),
        ["currentPassword"]
    );
    assert_eq!(
        fields_of(&admin.patch(&by_admin, off(Some(PASSWORD))).await),
        ["currentPassword"],
        "the account's password is not the admin's"
    );
    tests::expect(
        StatusCode::OK,
        &admin.patch(&by_admin, off(Some(ADMIN_PASSWORD))).await,
    );
}

#[tokio::test]
async fn archiving_ones_own_account_asks_for_the_current_password() {
    let (_server, _db, _admin, user, uid) = with_account().await;
    let profile = format!("/v1/users/{uid}/profile");
    let archive = |body: Option<serde_json::Value>| {
        let user = user.clone();
        let profile = profile.clone();
        async move {
            user.call(reqwest::Method::DELETE, &profile, body, &[])
                .await
        }
    };
    assert_eq!(archive(None).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        fields_of(&archive(Some(json!({}))).await),
        ["currentPassword"]
    );
    assert_eq!(
        fields_of(&archive(Some(json!({ "currentPassword": "not it" }))).await),
        ["currentPassword"]
    );
    // Refused without writing anything: the account still signs in.
    tests::expect(StatusCode::OK, &user.get(&format!("/v1/users/{uid}")).await);
    let archived = tests::expect(
        StatusCode::OK,
        &archive(Some(json!({ "currentPassword": PASSWORD }))).await,
    );
    assert_eq!(archived["user"]["isActive"], false);
}

/// `{:?}` of `body` parsed as `T`: what a hook logging it would write.
fn debug_of<T: serde::de::DeserializeOwned + std::fmt::Debug>(body: serde_json::Value) -> String {
    format!(
        "{:?}",
        serde_json::from_value::<T>(body).expect("a valid body")
    )
}

#[test]
fn request_bodies_with_secrets_never_show_them_in_debug() {
    use airbnb_auth_service::{auth, user, verification};
    let secret = "Sekrit-Value-42";
    let shown = [
        debug_of::<auth::LoginInput>(json!({ "email": "a@b.io", "password": secret })),
        debug_of::<auth::RefreshInput>(json!({ "refreshToken": secret })),
        debug_of::<user::CreateUserInput>(
            json!({ "email": "a@b.io", "password": secret, "fullname": "A" }),
        ),
        debug_of::<user::UpdateUserPasswordInput>(
            json!({ "password": secret, "currentPassword": secret }),
        ),
        debug_of::<user::ArchiveProfileInput>(json!({ "currentPassword": secret })),
        debug_of::<verification::ResetInput>(
            json!({ "email": "a@b.io", "code": secret, "password": secret }),
        ),
        debug_of::<verification::SecondFactorInput>(json!({ "code": secret })),
        debug_of::<library_service::loan::LendBookInput>(
            json!({ "readerEmail": "a@b.io", "pickupCode": secret }),
        ),
    ];
    for shown in shown {
        assert!(!shown.contains(secret), "a secret in {shown}");
        assert!(shown.contains(r#"Some("***")"#), "{shown}");
    }
    // The other fields still show, as derived.
    let login = debug_of::<auth::LoginInput>(json!({ "email": "a@b.io", "password": secret }));
    assert!(login.contains(r#"account: Some("a@b.io")"#), "{login}");
}
