//! Hardening of the auth service's answers and of its sensitive account
//! changes, over HTTP against PostgreSQL: no answer that carries tokens or
//! personal data may be cached or sniffed; turning the second factor off and
//! archiving one's own account ask for the current password.

use reqwest::StatusCode;
use serde_json::json;
use tests::{auth_service, ADMIN_EMAIL, ADMIN_PASSWORD};

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
