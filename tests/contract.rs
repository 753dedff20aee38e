//! The running service keeps its OpenAPI contract: schemathesis (PyPI)
//! generates requests from /openapi.json, as an admin and as a user, and
//! checks that no answer is a 500 and every answer conforms to its schema.

use reqwest::StatusCode;
use serde_json::json;
use tests::{auth_service, expect};

/// Operations that end the caller's own session (or account) would leave the
/// rest of the run unauthenticated; the end-to-end tests cover them.
const SESSION_ENDING: &[&str] = &[
    "logout",
    "deleteUser",
    "archiveProfile",
    "updateUserPassword",
    "updateUserPasswordByAdmin",
];

/// Event streams never end, so no request to them completes; their own
/// end-to-end test reads them (tests/realtime_e2e.rs).
const STREAMS: &[&str] = &["subscribeEvents"];

async fn schemathesis(base: &str, token: &str, seconds: u32) -> (bool, String) {
    let mut args = vec![
        "run".to_string(),
        format!("{base}/openapi.json"),
        "--header".into(),
        format!("Authorization: Bearer {token}"),
        "--checks".into(),
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance".into(),
        "--max-time".into(),
        seconds.to_string(),
        // One worker: schemathesis' coverage phase trips a CPython 3.11 thread
        // bug ("AST constructor recursion depth mismatch") with more.
        "--workers".into(),
        "1".into(),
        "--seed".into(),
        "1".into(),
    ];
    for op in SESSION_ENDING.iter().chain(STREAMS) {
        args.extend(["--exclude-operation-id".to_string(), op.to_string()]);
    }
    let out = tokio::process::Command::new("schemathesis")
        .args(&args)
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .expect("schemathesis runs (pip install schemathesis)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_keeps_its_openapi_contract() {
    let (server, _db) = auth_service().await;
    let admin = server.admin().await;
    expect(
        StatusCode::CREATED,
        &server
            .post(
                "/v1/register",
                json!({ "email": "contract@x.io", "password": "a decent secret", "fullname": "C" }),
            )
            .await,
    );
    let user = server.as_user("contract@x.io", "a decent secret").await;
    for (who, api) in [("admin", &admin), ("user", &user)] {
        let (ok, report) = schemathesis(&server.base, api.token.as_deref().unwrap(), 40).await;
        let _ = std::fs::write(
            std::env::temp_dir().join(format!("schemathesis-{who}.txt")),
            &report,
        );
        // The failures and errors come before the warnings; the summary last.
        let failures = report.split("WARNINGS").next().unwrap_or_default();
        let tail: Vec<&str> = report.lines().rev().take(25).collect();
        assert!(
            ok,
            "schemathesis as {who} failed:\n{}\n...\n{}",
            failures
                .lines()
                .rev()
                .take(60)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n"),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        assert!(
            report.contains("passed"),
            "schemathesis as {who} tested nothing:\n{report}"
        );
        // Still signed in: the run did not end its own session.
        expect(StatusCode::OK, &api.get("/v1/currentuser").await);
    }
}
