//! The generated auth service over HTTP, against a real PostgreSQL: every
//! route of the model, its envelope, and every kind of bad input.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::{auth_service, create_user, error_fields, expect};

/// Keys the seed's envelope shows on every successful answer.
const ENVELOPE_KEYS: &[&str] = &[
    "status",
    "statusCode",
    "elapsedMs",
    "ssoTime",
    "source",
    "cacheKey",
    "userId",
    "sessionId",
    "requestId",
    "dataName",
    "method",
    "action",
    "appVersion",
    "rowCount",
];

/// The stored password hash of user `id`.
async fn stored_hash(db: &tests::TestDb, id: &str) -> String {
    let (hash,): (String,) = sqlx::query_as("SELECT password FROM users WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(&mut db.connect().await)
        .await
        .unwrap();
    hash
}

fn assert_envelope(body: &Value, data_name: &str, method: &str, action: &str, status: &str) {
    for key in ENVELOPE_KEYS {
        assert!(body.get(key).is_some(), "envelope lacks {key}: {body}");
    }
    assert_eq!(body["status"], "OK");
    assert_eq!(body["statusCode"], status);
    assert_eq!(body["dataName"], data_name);
    assert_eq!(body["method"], method);
    assert_eq!(body["action"], action);
    assert_eq!(body["appVersion"], "1.0.0");
    assert!(body.get(data_name).is_some(), "no {data_name} in {body}");
}

#[tokio::test]
async fn user_routes_round_trip_in_the_envelope() {
    let (server, db) = auth_service().await;
    let svc = server.admin().await;
    let created = expect(
        StatusCode::CREATED,
        &svc.post(
            "/v1/users",
            json!({ "email": " Ann@Example.COM ", "password": "correct horse", "fullname": "Ann Lee", "bio": "hi" }),
        )
        .await,
    );
    assert_envelope(&created, "user", "POST", "create", "201");
    let user = &created["user"];
    let id = user["id"].as_str().unwrap().to_string();
    assert_eq!(
        user["email"], "ann@example.com",
        "emails are trimmed and lower-cased"
    );
    assert_eq!(user["roleId"], "user", "the model's default role");
    assert_eq!(user["preferredLanguage"], "en");
    assert_eq!(user["recordVersion"], 1);
    assert_eq!(user["_owner"], user["id"], "a user owns its own record");
    assert!(
        user.get("password").is_none(),
        "the secret never leaves the service: {user}"
    );
    let stored = stored_hash(&db, &id).await;
    assert!(
        stored.starts_with("$argon2id$"),
        "stored as an argon2id hash"
    );

    let got = expect(StatusCode::OK, &svc.get(&format!("/v1/users/{id}")).await);
    assert_envelope(&got, "user", "GET", "get", "200");
    assert_eq!(got["rowCount"], 1);
    assert_eq!(got["user"]["email"], "ann@example.com");

    let updated = expect(
        StatusCode::OK,
        &svc.patch(&format!("/v1/users/{id}"), json!({ "fullname": "Ann L." }))
            .await,
    );
    assert_envelope(&updated, "user", "PATCH", "update", "200");
    assert_eq!(updated["user"]["fullname"], "Ann L.");
    assert_eq!(updated["user"]["recordVersion"], 2);

    // Profile and own-password routes are the user's own.
    let ann = svc.as_user("ann@example.com", "correct horse").await;
    expect(
        StatusCode::FORBIDDEN,
        &svc.patch(
            &format!("/v1/users/{id}/profile"),
            json!({ "bio": "by admin" }),
        )
        .await,
    );
    let profile = expect(
        StatusCode::OK,
        &ann.patch(
            &format!("/v1/users/{id}/profile"),
            json!({ "bio": null, "avatar": "https://x/a.png" }),
        )
        .await,
    );
    assert_eq!(
        profile["user"]["bio"],
        Value::Null,
        "null clears a nullable field"
    );
    assert_eq!(profile["user"]["avatar"], "https://x/a.png");
    assert_eq!(profile["user"]["recordVersion"], 3);

    let role = expect(
        StatusCode::OK,
        &svc.patch(
            &format!("/v1/users/{id}/role"),
            json!({ "roleId": "admin" }),
        )
        .await,
    );
    assert_eq!(role["user"]["roleId"], "admin");

    // The owner proves the current password: missing or wrong is a 400 on that field.
    for body in [
        json!({ "password": "a new secret" }),
        json!({ "password": "a new secret", "currentPassword": "not the one" }),
    ] {
        let refused = expect(
            StatusCode::BAD_REQUEST,
            &ann.patch(&format!("/v1/users/{id}/password"), body).await,
        );
        assert_eq!(error_fields(&refused), ["currentPassword"]);
    }
    let unchanged = stored_hash(&db, &id).await;
    assert_eq!(unchanged, stored, "nothing changed");
    let pw = expect(
        StatusCode::OK,
        &ann.patch(
            &format!("/v1/users/{id}/password"),
            json!({ "password": "a new secret", "currentPassword": "correct horse" }),
        )
        .await,
    );
    assert!(pw["user"].get("password").is_none());
    let after = stored_hash(&db, &id).await;
    assert_ne!(after, stored, "the password changed");
    assert!(after.starts_with("$argon2id$"));
    expect(
        StatusCode::OK,
        &svc.patch(
            &format!("/v1/users/{id}/password-by-admin"),
            json!({ "password": "admin chosen" }),
        )
        .await,
    );

    let brief = expect(
        StatusCode::OK,
        &svc.get(&format!("/v1/users/{id}/brief")).await,
    );
    assert_envelope(&brief, "user", "GET", "get", "200");
    let mut keys: Vec<&str> = brief["user"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["avatar", "fullname", "id", "isActive"],
        "only public fields"
    );

    let deleted = expect(
        StatusCode::OK,
        &svc.delete(&format!("/v1/users/{id}")).await,
    );
    assert_envelope(&deleted, "user", "DELETE", "delete", "200");
    assert_eq!(deleted["user"]["isActive"], false);
    let gone = expect(
        StatusCode::NOT_FOUND,
        &svc.get(&format!("/v1/users/{id}")).await,
    );
    assert_eq!(gone["status"], "ERR");
    assert_eq!(gone["errCode"], "NOT_FOUND");
    expect(
        StatusCode::NOT_FOUND,
        &svc.get(&format!("/v1/users/{id}/brief")).await,
    );
    expect(
        StatusCode::NOT_FOUND,
        &svc.patch(&format!("/v1/users/{id}"), json!({ "fullname": "x" }))
            .await,
    );
    expect(
        StatusCode::NOT_FOUND,
        &svc.delete(&format!("/v1/users/{id}")).await,
    );
    let listed = expect(StatusCode::OK, &svc.get("/v1/users").await);
    let emails: Vec<&str> = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["email"].as_str())
        .collect();
    assert_eq!(emails, ["root@example.com"], "soft-deleted rows are hidden");
    assert_eq!(
        db.count("users").await,
        2,
        "soft delete keeps the row (beside the admin)"
    );

    // The archived email can register again.
    create_user(&svc, "ann@example.com", "Ann Again").await;
}

#[tokio::test]
async fn archive_profile_and_register() {
    let (server, _db) = auth_service().await;
    let svc = server.admin().await;
    let reg = expect(
        StatusCode::CREATED,
        &svc.post(
            "/v1/register",
            json!({ "email": "reg@x.io", "password": "long enough", "fullname": "Reg" }),
        )
        .await,
    );
    assert_envelope(&reg, "user", "POST", "create", "201");
    assert_eq!(reg["user"]["roleId"], "user");
    let forbidden_field = expect(
        StatusCode::BAD_REQUEST,
        &svc.post(
            "/v1/register",
            json!({ "email": "r2@x.io", "password": "long enough", "fullname": "R", "roleId": "superAdmin" }),
        )
        .await,
    );
    assert_eq!(
        error_fields(&forbidden_field),
        ["roleId"],
        "registration cannot choose a role"
    );
    let id = reg["user"]["id"].as_str().unwrap();
    let reg_user = svc.as_user("reg@x.io", "long enough").await;
    let archived = expect(
        StatusCode::OK,
        &reg_user.delete(&format!("/v1/users/{id}/profile")).await,
    );
    assert_envelope(&archived, "user", "DELETE", "delete", "200");
    assert_eq!(archived["user"]["isActive"], false);
    expect(
        StatusCode::NOT_FOUND,
        &svc.get(&format!("/v1/users/{id}")).await,
    );
}

#[tokio::test]
async fn every_validation_failure_is_a_400_naming_its_fields() {
    let (server, db) = auth_service().await;
    let svc = server.admin().await;
    let all = expect(
        StatusCode::BAD_REQUEST,
        &svc.post("/v1/users", json!({ "email": "not-an-email", "password": "x7q", "roleId": "king", "bio": "x".repeat(4001) }))
            .await,
    );
    assert_eq!(all["status"], "ERR");
    assert_eq!(all["statusCode"], "400");
    assert_eq!(all["errCode"], "VALIDATION_FAILED");
    assert!(all["requestId"].is_string());
    let mut fields = error_fields(&all);
    fields.sort();
    assert_eq!(
        fields,
        ["bio", "email", "fullname", "password", "roleId"],
        "{all}"
    );

    let unknown = expect(
        StatusCode::BAD_REQUEST,
        &svc.post(
            "/v1/users",
            json!({ "email": "a@b.co", "password": "long enough pw", "fullname": "A", "nickname": "x" }),
        )
        .await,
    );
    assert_eq!(error_fields(&unknown), ["nickname"]);
    let wrong_type = expect(
        StatusCode::BAD_REQUEST,
        &svc.post(
            "/v1/users",
            json!({ "email": 5, "password": "long enough pw", "fullname": "A" }),
        )
        .await,
    );
    assert_eq!(error_fields(&wrong_type), ["email"]);
    let bad_bool = expect(
        StatusCode::BAD_REQUEST,
        &svc.post("/v1/users", json!({ "email": "b@b.co", "password": "long enough pw", "fullname": "A", "emailVerified": "yes" }))
            .await,
    );
    assert_eq!(error_fields(&bad_bool), ["emailVerified"]);

    let (status, body) = svc
        .call(
            Method::POST,
            "/v1/users",
            None,
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let malformed = svc
        .client
        .post(format!("{}/v1/users", svc.base))
        .bearer_auth(svc.token.as_deref().unwrap_or_default())
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let text = svc
        .client
        .post(format!("{}/v1/users", svc.base))
        .bearer_auth(svc.token.as_deref().unwrap_or_default())
        .body("email=a")
        .send()
        .await
        .unwrap();
    assert_eq!(
        text.status(),
        StatusCode::BAD_REQUEST,
        "a body that is not JSON"
    );

    let bad_id = expect(
        StatusCode::BAD_REQUEST,
        &svc.get("/v1/users/not-a-uuid").await,
    );
    assert_eq!(bad_id["status"], "ERR");

    let user = create_user(&svc, "val@x.io", "Val").await;
    let id = user["id"].as_str().unwrap();
    let null_required = expect(
        StatusCode::BAD_REQUEST,
        &svc.patch(&format!("/v1/users/{id}"), json!({ "fullname": null }))
            .await,
    );
    assert_eq!(error_fields(&null_required), ["fullname"]);
    let empty = expect(
        StatusCode::BAD_REQUEST,
        &svc.patch(&format!("/v1/users/{id}"), json!({})).await,
    );
    assert_eq!(error_fields(&empty), ["body"]);
    let not_allowed_here = expect(
        StatusCode::BAD_REQUEST,
        &svc.patch(
            &format!("/v1/users/{id}/profile"),
            json!({ "roleId": "admin" }),
        )
        .await,
    );
    assert_eq!(
        error_fields(&not_allowed_here),
        ["roleId"],
        "updateProfile accepts profile fields only"
    );
    let bad_role = expect(
        StatusCode::BAD_REQUEST,
        &svc.patch(&format!("/v1/users/{id}/role"), json!({ "roleId": "god" }))
            .await,
    );
    assert_eq!(error_fields(&bad_role), ["roleId"]);

    let huge = "x".repeat(1_100_000);
    let too_large = expect(
        StatusCode::PAYLOAD_TOO_LARGE,
        &svc.post(
            "/v1/users",
            json!({ "email": "big@x.io", "password": "long enough pw", "fullname": huge }),
        )
        .await,
    );
    assert_eq!(too_large["statusCode"], "413");
    assert_eq!(too_large["status"], "ERR");

    let unknown_route = expect(StatusCode::NOT_FOUND, &svc.get("/v1/nothing-here").await);
    assert_eq!(unknown_route["errCode"], "ROUTE_NOT_FOUND");
    let wrong_method = expect(
        StatusCode::METHOD_NOT_ALLOWED,
        &svc.call(Method::PUT, "/v1/users", None, &[]).await,
    );
    assert_eq!(wrong_method["status"], "ERR");

    let fresh = svc.get(&format!("/v1/users/{id}")).await.1;
    assert_eq!(
        fresh["user"]["recordVersion"], 1,
        "failed requests changed nothing"
    );
    assert_eq!(
        db.count("users").await,
        2,
        "failed requests wrote nothing (the admin and one user)"
    );
}

#[tokio::test]
async fn conflicts_duplicate_email_and_stale_versions() {
    let (server, db) = auth_service().await;
    let svc = server.admin().await;
    let user = create_user(&svc, "dup@x.io", "Dup").await;
    let id = user["id"].as_str().unwrap();
    let dup = expect(
        StatusCode::CONFLICT,
        &svc.post(
            "/v1/users",
            json!({ "email": "DUP@x.io", "password": "long enough pw", "fullname": "Other" }),
        )
        .await,
    );
    assert_eq!(error_fields(&dup), ["email"]);
    assert_eq!(db.count("users").await, 2);

    expect(
        StatusCode::OK,
        &svc.patch(
            &format!("/v1/users/{id}"),
            json!({ "bio": "v2", "recordVersion": 1 }),
        )
        .await,
    );
    let stale = expect(
        StatusCode::CONFLICT,
        &svc.patch(
            &format!("/v1/users/{id}"),
            json!({ "bio": "lost update", "recordVersion": 1 }),
        )
        .await,
    );
    assert_eq!(stale["errCode"], "STALE_RECORD_VERSION");
    let stale_header = expect(
        StatusCode::CONFLICT,
        &svc.call(
            Method::PATCH,
            &format!("/v1/users/{id}"),
            Some(json!({ "bio": "lost" })),
            &[("if-match", "\"1\"")],
        )
        .await,
    );
    assert_eq!(stale_header["errCode"], "STALE_RECORD_VERSION");
    let disagree = expect(
        StatusCode::BAD_REQUEST,
        &svc.call(
            Method::PATCH,
            &format!("/v1/users/{id}"),
            Some(json!({ "bio": "x", "recordVersion": 2 })),
            &[("if-match", "3")],
        )
        .await,
    );
    assert_eq!(error_fields(&disagree), ["recordVersion"]);
    let now = expect(StatusCode::OK, &svc.get(&format!("/v1/users/{id}")).await);
    assert_eq!(now["user"]["bio"], "v2", "a stale write changed nothing");
    assert_eq!(now["user"]["recordVersion"], 2);
    expect(
        StatusCode::OK,
        &svc.call(
            Method::PATCH,
            &format!("/v1/users/{id}"),
            Some(json!({ "bio": "v3" })),
            &[("if-match", "\"2\"")],
        )
        .await,
    );
    expect(
        StatusCode::CONFLICT,
        &svc.call(
            Method::DELETE,
            &format!("/v1/users/{id}"),
            None,
            &[("if-match", "2")],
        )
        .await,
    );
    expect(
        StatusCode::OK,
        &svc.call(
            Method::DELETE,
            &format!("/v1/users/{id}"),
            None,
            &[("if-match", "3")],
        )
        .await,
    );
}

#[tokio::test]
async fn lists_page_sort_filter_and_search() {
    let (server, _db) = auth_service().await;
    let svc = server.admin().await;
    for name in ["delta", "alpha", "echo", "charlie", "bravo"] {
        let g = expect(
            StatusCode::CREATED,
            &svc.post("/v1/usergroups", json!({ "groupName": name }))
                .await,
        );
        assert_envelope(&g, "userGroup", "POST", "create", "201");
    }
    let page1 = expect(
        StatusCode::OK,
        &svc.get("/v1/usergroups?pageRowCount=2&sort=groupName")
            .await,
    );
    assert_envelope(&page1, "userGroups", "GET", "list", "200");
    assert_eq!(page1["rowCount"], 2);
    assert_eq!(
        page1["paging"],
        json!({ "pageNumber": 1, "pageRowCount": 2, "totalRowCount": 5, "pageCount": 3 })
    );
    assert_eq!(page1["filters"], json!([]));
    // The admin may use every route of the object.
    let ui = page1["uiPermissions"].as_array().unwrap();
    for name in [
        "createUserGroup",
        "updateUserGroup",
        "deleteUserGroup",
        "getUserGroup",
        "listUserGroups",
    ] {
        assert!(ui.contains(&json!(name)), "{name} in {ui:?}");
    }
    let names = |b: &Value| -> Vec<String> {
        b["userGroups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["groupName"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&page1), ["alpha", "bravo"]);
    let last = expect(
        StatusCode::OK,
        &svc.get("/v1/usergroups?pageRowCount=2&pageNumber=3&sort=groupName")
            .await,
    );
    assert_eq!(names(&last), ["echo"]);
    let past = expect(
        StatusCode::OK,
        &svc.get("/v1/usergroups?pageRowCount=2&pageNumber=9").await,
    );
    assert_eq!(past["userGroups"], json!([]));
    assert_eq!(past["rowCount"], 0);
    assert_eq!(
        past["paging"]["totalRowCount"], 5,
        "the total is known past the last page"
    );
    let desc = expect(
        StatusCode::OK,
        &svc.get("/v1/usergroups?sort=-groupName&pageRowCount=1")
            .await,
    );
    assert_eq!(names(&desc), ["echo"]);
    let filtered = expect(
        StatusCode::OK,
        &svc.get("/v1/usergroups?groupName=charlie").await,
    );
    assert_eq!(names(&filtered), ["charlie"]);
    assert_eq!(
        filtered["filters"],
        json!([{ "field": "groupName", "op": "eq", "value": "charlie" }])
    );

    for bad in [
        "/v1/usergroups?pageRowCount=101",
        "/v1/usergroups?pageRowCount=0",
        "/v1/usergroups?pageNumber=0",
        "/v1/usergroups?pageNumber=-1",
        "/v1/usergroups?sort=secret",
        "/v1/usergroups?color=red",
    ] {
        let body = expect(StatusCode::BAD_REQUEST, &svc.get(bad).await);
        assert_eq!(body["status"], "ERR", "{bad}");
    }
    let max = expect(
        StatusCode::OK,
        &svc.get("/v1/usergroups?pageRowCount=100").await,
    );
    assert_eq!(max["rowCount"], 5);

    create_user(&svc, "ann@x.io", "Ann Smith").await;
    create_user(&svc, "bob@x.io", "Bob 100%").await;
    let found = expect(StatusCode::OK, &svc.get("/v1/users/search?q=SMITH").await);
    assert_envelope(&found, "users", "GET", "list", "200");
    assert_eq!(found["rowCount"], 1);
    assert_eq!(found["users"][0]["email"], "ann@x.io");
    let by_email = expect(StatusCode::OK, &svc.get("/v1/users/search?q=bob@").await);
    assert_eq!(by_email["rowCount"], 1);
    // Only letters and digits are keywords: "%" alone searches for nothing.
    let symbols = expect(
        StatusCode::BAD_REQUEST,
        &svc.get("/v1/users/search?q=%25").await,
    );
    assert_eq!(error_fields(&symbols), ["q"]);
    let missing = expect(StatusCode::BAD_REQUEST, &svc.get("/v1/users/search").await);
    assert_eq!(error_fields(&missing), ["q"]);
    let role = expect(
        StatusCode::OK,
        &svc.get("/v1/users?roleId=user&emailVerified=false").await,
    );
    assert_eq!(role["rowCount"], 2);
    let none = expect(StatusCode::OK, &svc.get("/v1/users?roleId=admin").await);
    assert_eq!(none["rowCount"], 0);
    expect(
        StatusCode::BAD_REQUEST,
        &svc.get("/v1/users?emailVerified=maybe").await,
    );
}

#[tokio::test]
async fn group_members_join_their_users() {
    let (server, db) = auth_service().await;
    let svc = server.admin().await;
    let ann = create_user(&svc, "ann@m.io", "Ann").await;
    let bob = create_user(&svc, "bob@m.io", "Bob").await;
    let group = expect(
        StatusCode::CREATED,
        &svc.post("/v1/usergroups", json!({ "groupName": "crew" }))
            .await,
    )["userGroup"]
        .clone();
    let gid = group["id"].as_str().unwrap();
    let mut member_ids = Vec::new();
    for u in [&ann, &bob] {
        let m = expect(
            StatusCode::CREATED,
            &svc.post(
                "/v1/usergroupmembers",
                json!({ "groupId": gid, "userId": u["id"], "ownerId": ann["id"] }),
            )
            .await,
        );
        assert_envelope(&m, "userGroupMember", "POST", "create", "201");
        member_ids.push(m["userGroupMember"]["id"].as_str().unwrap().to_string());
    }
    let again = expect(
        StatusCode::CONFLICT,
        &svc.post(
            "/v1/usergroupmembers",
            json!({ "groupId": gid, "userId": ann["id"] }),
        )
        .await,
    );
    assert_eq!(
        error_fields(&again),
        ["userId"],
        "a user is in a group once"
    );
    let ghost = expect(
        StatusCode::UNPROCESSABLE_ENTITY,
        &svc.post(
            "/v1/usergroupmembers",
            json!({ "groupId": gid, "userId": uuid::Uuid::new_v4() }),
        )
        .await,
    );
    assert_eq!(error_fields(&ghost), ["userId"]);
    let bad_ref = expect(
        StatusCode::BAD_REQUEST,
        &svc.post(
            "/v1/usergroupmembers",
            json!({ "groupId": "nope", "userId": ann["id"] }),
        )
        .await,
    );
    assert_eq!(error_fields(&bad_ref), ["groupId"]);
    assert_eq!(db.count("user_group_members").await, 2);

    let got = expect(
        StatusCode::OK,
        &svc.get(&format!("/v1/usergroupmembers/{}", member_ids[0]))
            .await,
    );
    assert_envelope(&got, "userGroupMember", "GET", "get", "200");
    let list = expect(
        StatusCode::OK,
        &svc.get(&format!(
            "/v1/usergroupmembers?groupId={gid}&sort=createdAt"
        ))
        .await,
    );
    assert_envelope(&list, "userGroupMembers", "GET", "list", "200");
    assert_eq!(list["rowCount"], 2);
    assert_eq!(
        list["userGroupMembers"][0]["user"],
        json!({ "email": "ann@m.io", "fullname": "Ann", "avatar": null })
    );
    assert_eq!(list["userGroupMembers"][1]["user"]["email"], "bob@m.io");
    assert_eq!(list["userGroupMembers"][0]["groupId"], gid);

    let del = expect(
        StatusCode::OK,
        &svc.delete(&format!("/v1/usergroupmembers/{}", member_ids[1]))
            .await,
    );
    assert_envelope(&del, "userGroupMember", "DELETE", "delete", "200");
    let list = expect(StatusCode::OK, &svc.get("/v1/usergroupmembers").await);
    assert_eq!(list["rowCount"], 1);
    // Bob may join again once his membership is deleted.
    expect(
        StatusCode::CREATED,
        &svc.post(
            "/v1/usergroupmembers",
            json!({ "groupId": gid, "userId": bob["id"] }),
        )
        .await,
    );

    let renamed = expect(
        StatusCode::OK,
        &svc.patch(
            &format!("/v1/usergroups/{gid}"),
            json!({ "groupName": "team" }),
        )
        .await,
    );
    assert_envelope(&renamed, "userGroup", "PATCH", "update", "200");
    assert_eq!(
        expect(
            StatusCode::OK,
            &svc.get(&format!("/v1/usergroups/{gid}")).await
        )["userGroup"]["groupName"],
        "team"
    );
    let gone = expect(
        StatusCode::OK,
        &svc.delete(&format!("/v1/usergroups/{gid}")).await,
    );
    assert_envelope(&gone, "userGroup", "DELETE", "delete", "200");
    expect(
        StatusCode::NOT_FOUND,
        &svc.get(&format!("/v1/usergroups/{gid}")).await,
    );
}

#[tokio::test]
async fn avatar_files_keep_their_bytes_out_of_json() {
    let (server, db) = auth_service().await;
    let svc = server.admin().await;
    let owner = create_user(&svc, "pic@x.io", "Pic").await;
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let created = expect(
        StatusCode::CREATED,
        &svc.post(
            "/v1/useravatarsfiles",
            json!({ "fileName": "me.png", "mimeType": "image/png", "fileData": png, "userId": owner["id"], "metadata": { "w": 1 } }),
        )
        .await,
    );
    assert_envelope(&created, "userAvatarsFile", "POST", "create", "201");
    let file = &created["userAvatarsFile"];
    assert_eq!(file["fileSize"], 70, "computed from the decoded bytes");
    assert_eq!(file["accessKey"].as_str().unwrap().len(), 64);
    let id = file["id"].as_str().unwrap();
    assert_eq!(
        file["fileData"],
        json!({ "omitted": true, "href": format!("/v1/useravatarsfiles/{id}/file") }),
        "bytes never appear in JSON; a descriptor says where the row is"
    );

    for (body, field) in [
        (
            json!({ "fileName": "a.svg", "mimeType": "image/svg+xml", "fileData": png, "userId": owner["id"] }),
            "mimeType",
        ),
        (
            json!({ "fileName": "a.png", "mimeType": "image/png", "fileData": "***", "userId": owner["id"] }),
            "fileData",
        ),
        (
            json!({ "fileName": "a.png", "mimeType": "image/png", "fileData": png, "userId": owner["id"], "metadata": [1] }),
            "metadata",
        ),
        (
            json!({ "fileName": "a.png", "mimeType": "image/png", "fileData": png, "userId": owner["id"], "fileSize": 1 }),
            "fileSize",
        ),
    ] {
        let bad = expect(
            StatusCode::BAD_REQUEST,
            &svc.post("/v1/useravatarsfiles", body).await,
        );
        assert_eq!(error_fields(&bad), [field]);
    }

    let got = expect(
        StatusCode::OK,
        &svc.get(&format!("/v1/useravatarsfiles/{id}")).await,
    );
    assert_envelope(&got, "userAvatarsFile", "GET", "get", "200");
    let list = expect(
        StatusCode::OK,
        &svc.get(&format!(
            "/v1/useravatarsfiles?userId={}",
            owner["id"].as_str().unwrap()
        ))
        .await,
    );
    assert_envelope(&list, "userAvatarsFiles", "GET", "list", "200");
    assert_eq!(list["rowCount"], 1);
    let del = expect(
        StatusCode::OK,
        &svc.delete(&format!("/v1/useravatarsfiles/{id}")).await,
    );
    assert_envelope(&del, "userAvatarsFile", "DELETE", "delete", "200");
    expect(
        StatusCode::NOT_FOUND,
        &svc.get(&format!("/v1/useravatarsfiles/{id}")).await,
    );
    assert_eq!(
        db.count("user_avatars_files").await,
        0,
        "files are hard-deleted"
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let (svc, _db) = auth_service().await;
    assert_eq!(
        expect(StatusCode::OK, &svc.get("/healthz").await)["status"],
        "OK"
    );
    assert_eq!(
        expect(StatusCode::OK, &svc.get("/readyz").await)["database"],
        "up"
    );
}

#[tokio::test]
async fn openapi_documents_exactly_the_served_routes() {
    let (svc, _db) = auth_service().await;
    let doc = expect(StatusCode::OK, &svc.get("/openapi.json").await);
    assert_eq!(doc["openapi"], "3.1.0");
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../model/auth-service.yaml"
    ))
    .unwrap();
    let model = generator::check_model("model/auth-service.yaml", &source)
        .unwrap()
        .model;
    let mut expected: Vec<String> = model.routes.iter().map(|(n, _)| n.clone()).collect();
    expected.sort();
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented.push(op["operationId"].as_str().unwrap().to_string());
            let method: Method = method.to_uppercase().parse().unwrap();
            let body = matches!(method, Method::POST | Method::PATCH).then(|| json!({}));
            let url = path.replace("{id}", &uuid::Uuid::new_v4().to_string());
            let (status, answer) = svc.call(method.clone(), &url, body, &[]).await;
            assert_ne!(
                answer["errCode"], "ROUTE_NOT_FOUND",
                "{method} {path} is documented but not served"
            );
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                status.is_client_error() || status.is_success(),
                "{method} {path}: {status}"
            );
        }
    }
    documented.sort();
    assert_eq!(
        documented, expected,
        "operationIds are the model's route names, every one"
    );
    let ok = &doc["components"]["schemas"]["GetUserResponse"]["required"];
    for key in [
        "status",
        "statusCode",
        "requestId",
        "dataName",
        "rowCount",
        "user",
    ] {
        assert!(
            ok.as_array().unwrap().iter().any(|k| k == key),
            "{key} required in {ok}"
        );
    }
}

#[tokio::test]
async fn the_contracts_and_docs_are_served_and_work_offline() {
    let (server, _db) = auth_service().await;
    let get_text = |path: &'static str| {
        let (client, base) = (server.client.clone(), server.base.clone());
        async move {
            let res = client.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            let kind = res.headers()["content-type"].to_str().unwrap().to_string();
            (kind, res.text().await.unwrap())
        }
    };
    let (kind, page) = get_text("/docs").await;
    assert!(kind.starts_with("text/html"));
    assert!(
        page.contains("/openapi.json"),
        "the page reads the service's own document"
    );
    for external in ["src=\"http", "href=\"http", "url(http", "import "] {
        assert!(
            !page.contains(external),
            "the docs page must not load {external}… from the network"
        );
    }
    let (kind, asyncapi) = get_text("/asyncapi.json").await;
    assert_eq!(kind, "application/json");
    let doc: Value = serde_json::from_str(&asyncapi).unwrap();
    assert_eq!(doc["asyncapi"], "3.0.0");
    let (_, proto) = get_text("/session.proto").await;
    assert!(proto.contains("message SessionEvent"));
    let (_, guide) = get_text("/docs/event-guide.md").await;
    for channel in doc["channels"].as_object().unwrap().values() {
        let topic = channel["address"].as_str().unwrap();
        assert!(
            guide.contains(&format!("`{topic}`")),
            "the event guide covers {topic}"
        );
    }
}

#[tokio::test]
async fn url_fields_take_http_urls_and_own_download_paths_only() {
    let (server, _db) = auth_service().await;
    let svc = server.admin().await;
    let user = create_user(&svc, "url@x.io", "Url").await;
    let path = format!("/v1/users/{}", user["id"].as_str().unwrap());
    for bad in [
        "javascript:alert(1)",
        "JavaScript:alert(document.domain)",
        "java\tscript:alert(1)",
        " javascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "//evil.example/a.png",
        "https://trusted.example@evil.example/a.png",
        "https://example.com/a b.png",
        "a.png",
        "/v1/users",
        "/v1/useravatarsfiles/key/abc/../../../users",
        "/v1/useravatarsfiles/key/abc?x=<script>",
        // Markup, parser confusion and invisible characters: only RFC 3986 characters.
        "https://example.com/\"><script>alert(1)</script>",
        "https://example.com/'onerror='alert(1)",
        "https://evil.com\\@good.com/",
        "http://@evil.com/",
        "https://exa\u{200b}mple.com/",
        "http://ev\u{00ad}il.com/",
        "https://example.com/\u{202e}gnp.exe",
        "https://bücher.example/",
    ] {
        let answer = expect(
            StatusCode::BAD_REQUEST,
            &svc.patch(&path, json!({ "avatar": bad })).await,
        );
        assert_eq!(error_fields(&answer), ["avatar"], "{bad:?}: {answer}");
    }
    // The create routes check the same, for every object with such a field.
    let register = expect(
        StatusCode::BAD_REQUEST,
        &server
            .post(
                "/v1/register",
                json!({ "email": "js@x.io", "password": "long enough", "fullname": "Js", "avatar": "javascript:alert(1)" }),
            )
            .await,
    );
    assert_eq!(error_fields(&register), ["avatar"]);
    let group = expect(
        StatusCode::BAD_REQUEST,
        &svc.post(
            "/v1/usergroups",
            json!({ "groupName": "G", "avatar": "javascript:alert(1)" }),
        )
        .await,
    );
    assert_eq!(error_fields(&group), ["avatar"]);

    let file_id = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
    for good in [
        "https://cdn.example.com/a.png".to_string(),
        "HTTP://example.com/a.png?size=64#top".to_string(),
        "https://xn--bcher-kva.example/%C3%A9t%C3%A9.png".to_string(),
        "/v1/useravatarsfiles/key/0123abcdef".to_string(),
        format!("/v1/useravatarsfiles/{file_id}/file"),
    ] {
        let answer = expect(
            StatusCode::OK,
            &svc.patch(&path, json!({ "avatar": good })).await,
        );
        assert_eq!(answer["user"]["avatar"], good.as_str());
    }

    // What an upload writes into avatar (the file's public path) is taken back as it is.
    let owner = create_user(&svc, "pic@x.io", "Pic").await;
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    expect(
        StatusCode::CREATED,
        &svc.post(
            "/v1/useravatarsfiles",
            json!({ "fileName": "me.png", "fileData": png, "userId": owner["id"] }),
        )
        .await,
    );
    let owner_path = format!("/v1/users/{}", owner["id"].as_str().unwrap());
    let shown = expect(StatusCode::OK, &svc.get(&owner_path).await);
    let avatar = shown["user"]["avatar"].as_str().unwrap().to_string();
    assert!(avatar.starts_with("/v1/useravatarsfiles/key/"), "{avatar}");
    let again = expect(
        StatusCode::OK,
        &svc.patch(&owner_path, json!({ "avatar": avatar, "bio": "kept" }))
            .await,
    );
    assert_eq!(again["user"]["avatar"], avatar.as_str());
}

#[tokio::test]
async fn email_fields_take_plain_addresses_only() {
    let (server, db) = auth_service().await;
    let svc = server.admin().await;
    let users_before = db.count("users").await;
    for bad in [
        "<svg/onload=alert(1)>@a.bc",
        "<img src=x onerror=alert(1)>@x.io",
        "ann@x.io<script>",
        "\"ann lee\"@x.io",
        "ann(comment)@x.io",
        "a,b@x.io",
        "a;b@x.io",
        "a\\b@x.io",
        "ann@[127.0.0.1]",
        "ann@127.0.0.1",
        "ann@localhost",
        "ann..lee@x.io",
        "ann@x_y.io",
        "ann\u{7}@x.io",
    ] {
        let answer = expect(
            StatusCode::BAD_REQUEST,
            &svc.post(
                "/v1/users",
                json!({ "email": bad, "password": "long enough", "fullname": "Bad" }),
            )
            .await,
        );
        assert_eq!(error_fields(&answer), ["email"], "{bad:?}: {answer}");
    }
    // Registration, a public route, checks the same.
    let register = expect(
        StatusCode::BAD_REQUEST,
        &server
            .post(
                "/v1/register",
                json!({ "email": "<svg/onload=alert(1)>@a.bc", "password": "long enough", "fullname": "X" }),
            )
            .await,
    );
    assert_eq!(error_fields(&register), ["email"]);
    assert_eq!(db.count("users").await, users_before, "nothing was written");

    // Plain addresses pass, trimmed and lower-cased.
    let ok = create_user(&svc, " Ann.O'Neil+Tag@Mail.Example.COM ", "Ann").await;
    assert_eq!(ok["email"], "ann.o'neil+tag@mail.example.com");
}

#[tokio::test]
async fn registering_a_taken_email_is_a_409() {
    let (server, db) = auth_service().await;
    expect(
        StatusCode::CREATED,
        &server
            .post(
                "/v1/register",
                json!({ "email": "taken@x.io", "password": "long enough", "fullname": "First" }),
            )
            .await,
    );
    let users = db.count("users").await;
    // Decision register-conflict: the seed's clients rely on the 409, in any letter case.
    for email in ["taken@x.io", "Taken@X.IO"] {
        let conflict = expect(
            StatusCode::CONFLICT,
            &server
                .post(
                    "/v1/register",
                    json!({ "email": email, "password": "long enough", "fullname": "Second" }),
                )
                .await,
        );
        assert_eq!(conflict["status"], "ERR");
        assert_eq!(conflict["statusCode"], "409");
        assert_eq!(error_fields(&conflict), ["email"], "{conflict}");
    }
    assert_eq!(db.count("users").await, users);
}
