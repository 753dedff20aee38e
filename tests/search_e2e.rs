//! Search indexes in PostgreSQL end to end: documents follow every change in
//! the change's transaction, searchUsers ranks, filters and pages, the
//! extends mechanism, and rebuilds from the tables.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Row;
use tests::{auth_service, expect, Api, TestDb};

/// Creates an account and returns its id.
async fn create_user(svc: &Api, email: &str, fullname: &str) -> String {
    tests::create_user(svc, email, fullname).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The stored document of `id` in `index`, with its extends; None when absent.
async fn document(db: &TestDb, index: &str, id: &str) -> Option<Value> {
    let mut conn = db.connect().await;
    sqlx::query(
        "SELECT (doc || jsonb_build_object('extends', extends))::text AS d FROM search_documents WHERE index_name = $1 AND id = $2::uuid",
    )
    .bind(index)
    .bind(id)
    .fetch_optional(&mut conn)
    .await
    .expect("read document")
    .map(|r| serde_json::from_str(r.get::<String, _>("d").as_str()).unwrap())
}

fn names(body: &Value) -> Vec<String> {
    body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["fullname"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn index_documents_follow_every_change() {
    let (server, db) = auth_service().await;
    let svc = server.admin().await;
    let root = expect(
        StatusCode::OK,
        &svc.get(&format!("/v1/users?email={}", tests::ADMIN_EMAIL))
            .await,
    );
    let root_id = root["users"][0]["id"].as_str().unwrap();
    assert!(
        document(&db, "airbnb_user", root_id).await.is_some(),
        "rows written before the index was built are indexed at start"
    );

    let ann = create_user(&svc, "ann@example.com", "Ann Lee").await;
    let doc = document(&db, "airbnb_user", &ann)
        .await
        .expect("indexed on create");
    assert_eq!(doc["email"], "ann@example.com");
    assert_eq!(doc["fullname"], "Ann Lee");
    assert_eq!(doc["groups"], json!([]));
    assert_eq!(doc["extends"], json!({}));
    assert!(doc.get("password").is_none(), "secrets are never indexed");

    let group = expect(
        StatusCode::CREATED,
        &svc.post("/v1/usergroups", json!({ "groupName": "Climbers" }))
            .await,
    )["userGroup"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        document(&db, "airbnb_usergroup", &group).await.unwrap()["memberCount"],
        0
    );
    let member = expect(
        StatusCode::CREATED,
        &svc.post(
            "/v1/usergroupmembers",
            json!({ "groupId": group, "userId": ann }),
        )
        .await,
    )["userGroupMember"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let doc = document(&db, "airbnb_user", &ann).await.unwrap();
    assert_eq!(doc["groups"][0]["id"], group.as_str());
    assert_eq!(doc["groups"][0]["groupName"], "Climbers");
    assert_eq!(
        document(&db, "airbnb_usergroup", &group).await.unwrap()["memberCount"],
        1,
        "a membership counts in the group's document"
    );

    // Renaming the group reaches the documents that list it.
    expect(
        StatusCode::OK,
        &svc.patch(
            &format!("/v1/usergroups/{group}"),
            json!({ "groupName": "Boulderers" }),
        )
        .await,
    );
    assert_eq!(
        document(&db, "airbnb_user", &ann).await.unwrap()["groups"][0]["groupName"],
        "Boulderers"
    );
    // Updating the user.
    expect(
        StatusCode::OK,
        &svc.patch(
            &format!("/v1/users/{ann}"),
            json!({ "fullname": "Ann Climber" }),
        )
        .await,
    );
    let doc = document(&db, "airbnb_user", &ann).await.unwrap();
    assert_eq!(doc["fullname"], "Ann Climber");
    assert_eq!(doc["recordVersion"], 2);

    // Leaving the group.
    expect(
        StatusCode::OK,
        &svc.delete(&format!("/v1/usergroupmembers/{member}")).await,
    );
    assert_eq!(
        document(&db, "airbnb_user", &ann).await.unwrap()["groups"],
        json!([])
    );
    assert_eq!(
        document(&db, "airbnb_usergroup", &group).await.unwrap()["memberCount"],
        0
    );

    // Deleting (archiving) the user and the group removes their documents.
    expect(
        StatusCode::OK,
        &svc.delete(&format!("/v1/users/{ann}")).await,
    );
    assert!(document(&db, "airbnb_user", &ann).await.is_none());
    expect(
        StatusCode::OK,
        &svc.delete(&format!("/v1/usergroups/{group}")).await,
    );
    assert!(document(&db, "airbnb_usergroup", &group).await.is_none());

    // A failed change leaves the index as it was: a duplicate email is a 409.
    let bob = create_user(&svc, "bob@example.com", "Bob").await;
    expect(
        StatusCode::CONFLICT,
        &svc.post(
            "/v1/users",
            json!({ "email": "bob@example.com", "password": "correct horse", "fullname": "Other Bob" }),
        )
        .await,
    );
    let mut conn = db.connect().await;
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM search_documents WHERE index_name = 'airbnb_user' AND doc->>'fullname' = 'Other Bob'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(n, 0);
    assert!(document(&db, "airbnb_user", &bob).await.is_some());
}

#[tokio::test]
async fn search_users_ranks_filters_and_pages() {
    let (server, _db) = auth_service().await;
    let svc = server.admin().await;
    // "ann" in the email (weight A) and the name (weight B) outranks "ann"
    // in the name only.
    let zed = create_user(&svc, "zed@x.io", "Ann Zed").await;
    let best = create_user(&svc, "ann@x.io", "Ann Best").await;
    create_user(&svc, "nobody@x.io", "Someone Else").await;
    let hits = expect(StatusCode::OK, &svc.get("/v1/users/search?q=ann").await);
    assert_eq!(hits["dataName"], "users");
    assert_eq!(hits["rowCount"], 2);
    assert_eq!(hits["users"][0]["id"], best.as_str(), "{hits}");
    assert_eq!(hits["users"][1]["id"], zed.as_str());
    let s0 = hits["users"][0]["_score"].as_f64().unwrap();
    let s1 = hits["users"][1]["_score"].as_f64().unwrap();
    assert!(s0 > s1, "ranked: {s0} > {s1}");
    assert!(hits["users"][0].get("password").is_none());
    assert_eq!(hits["users"][0]["groups"], json!([]), "hits are documents");
    assert_eq!(
        hits["filters"],
        json!([{ "field": "q", "op": "matches", "value": "ann" }])
    );

    // Every word is a prefix: "ann be" finds only Ann Best; email parts match.
    let hits = expect(
        StatusCode::OK,
        &svc.get("/v1/users/search?q=ann%20be").await,
    );
    assert_eq!(names(&hits), ["Ann Best"]);
    let hits = expect(StatusCode::OK, &svc.get("/v1/users/search?q=x.io").await);
    assert_eq!(hits["paging"]["totalRowCount"], 3);

    // Filters narrow the hits; an explicit sort replaces the rank.
    expect(
        StatusCode::OK,
        &svc.patch(
            &format!("/v1/users/{zed}/role"),
            json!({ "roleId": "admin" }),
        )
        .await,
    );
    let hits = expect(
        StatusCode::OK,
        &svc.get("/v1/users/search?q=ann&roleId=admin").await,
    );
    assert_eq!(names(&hits), ["Ann Zed"]);
    let hits = expect(
        StatusCode::OK,
        &svc.get("/v1/users/search?q=ann&sort=-fullname").await,
    );
    assert_eq!(names(&hits), ["Ann Zed", "Ann Best"]);

    // Paging: five equal hits over three pages, none twice, none lost.
    for i in 0..5 {
        create_user(&svc, &format!("pager{i}@p.io"), &format!("Pager {i}")).await;
    }
    let mut seen = Vec::new();
    for page in 1..=3 {
        let hits = expect(
            StatusCode::OK,
            &svc.get(&format!(
                "/v1/users/search?q=pager&pageRowCount=2&pageNumber={page}"
            ))
            .await,
        );
        assert_eq!(hits["paging"]["totalRowCount"], 5);
        assert_eq!(hits["paging"]["pageCount"], 3);
        assert_eq!(hits["rowCount"], if page < 3 { 2 } else { 1 });
        seen.extend(names(&hits));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5, "{seen:?}");
    let past = expect(
        StatusCode::OK,
        &svc.get("/v1/users/search?q=pager&pageRowCount=2&pageNumber=9")
            .await,
    );
    assert_eq!(past["rowCount"], 0);
    assert_eq!(past["paging"]["totalRowCount"], 5);

    // A keyword is required, and only its letters and digits count.
    for q in ["", "%20", "%26%7C!"] {
        let bad = expect(
            StatusCode::BAD_REQUEST,
            &svc.get(&format!("/v1/users/search?q={q}")).await,
        );
        assert_eq!(tests::error_fields(&bad), ["q"]);
    }
    expect(StatusCode::BAD_REQUEST, &svc.get("/v1/users/search").await);
    // Any signed-in user may search; anonymous callers may not.
    expect(
        StatusCode::UNAUTHORIZED,
        &server.anonymous().get("/v1/users/search?q=ann").await,
    );
}

#[tokio::test]
async fn search_keywords_are_bounded() {
    let (server, _db) = auth_service().await;
    let svc = server.admin().await;
    create_user(&svc, "ann@x.io", "Ann Lee").await;
    let at_bounds = tests::keywords_past_bounds_are_refused(&svc).await;
    let none = expect(
        StatusCode::OK,
        &svc.get(&format!("/v1/users/search?q={at_bounds}")).await,
    );
    assert_eq!(none["rowCount"], 0);
    let hit = expect(
        StatusCode::OK,
        &svc.get("/v1/users/search?q=ann%20lee").await,
    );
    assert_eq!(hit["rowCount"], 1);
}

/// Keys of a user document that only admins and the user see (decision route-views).
const PRIVATE_KEYS: &[&str] = &[
    "email",
    "roleId",
    "emailVerified",
    "emailTwoFactor",
    "preferredLanguage",
    "bio",
    "groups",
    "extends",
    "recordVersion",
    "createdAt",
    "updatedAt",
    "_owner",
];

/// Keys every signed-in caller sees of a user hit.
const PUBLIC_HIT_KEYS: &[&str] = &["_score", "avatar", "fullname", "id", "isActive"];

/// The hit of `id` in a search answer.
fn hit<'a>(body: &'a Value, id: &str) -> &'a Value {
    body["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == id)
        .unwrap_or_else(|| panic!("no hit {id} in {body}"))
}

#[tokio::test]
async fn search_users_shows_others_only_public_fields() {
    let (server, _db) = auth_service().await;
    let admin = server.admin().await;
    let (ursula, me) = tests::register(&server, "ursula@x.io", "Ursula Ann").await;
    // "ann" in the public name of one, only in the hidden email of another,
    // in both for a third.
    let lee = create_user(&admin, "lee@x.io", "Ann Lee").await;
    let moe = create_user(&admin, "ann.moe@x.io", "Ann Moe").await;
    let hidden = create_user(&admin, "annika@x.io", "Otto Other").await;
    expect(
        StatusCode::OK,
        &admin
            .post(
                &format!("/v1/users/{lee}/extends"),
                json!({ "bookings_count": 2 }),
            )
            .await,
    );
    expect(
        StatusCode::OK,
        &admin
            .patch(
                &format!("/v1/users/{hidden}/role"),
                json!({ "roleId": "superAdmin" }),
            )
            .await,
    );

    // An ordinary user: others' hits carry the public fields only; their own
    // hit every field. The hidden email matches nothing, and ranks nothing.
    let hits = expect(StatusCode::OK, &ursula.get("/v1/users/search?q=ann").await);
    let mut found: Vec<&str> = hits["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    found.sort();
    let mut want = vec![me.as_str(), lee.as_str(), moe.as_str()];
    want.sort();
    assert_eq!(found, want, "no match on the hidden email of Otto: {hits}");
    assert_eq!(hits["paging"]["totalRowCount"], 3);
    for other in [&lee, &moe] {
        assert_eq!(
            tests::sorted_keys(hit(&hits, other)),
            PUBLIC_HIT_KEYS,
            "{hits}"
        );
    }
    let own = hit(&hits, &me);
    for k in PRIVATE_KEYS {
        assert!(own.get(*k).is_some(), "the owner sees its own {k}: {own}");
    }
    assert_eq!(own["email"], "ursula@x.io");
    assert_eq!(
        hit(&hits, &lee)["_score"],
        hit(&hits, &moe)["_score"],
        "ranked by the public name only, not by the hidden email"
    );
    let nothing = expect(
        StatusCode::OK,
        &ursula.get("/v1/users/search?q=annika").await,
    );
    assert_eq!(nothing["rowCount"], 0, "{nothing}");
    let by_domain = expect(
        StatusCode::OK,
        &ursula.get("/v1/users/search?q=x%20io").await,
    );
    assert_eq!(
        by_domain["rowCount"], 0,
        "email parts are hidden: {by_domain}"
    );

    // Filters and sorts on fields she cannot see on every row: a 400 naming them.
    for (filter, value) in [
        ("email", "annika@x.io"),
        ("roleId", "superAdmin"),
        ("emailVerified", "false"),
    ] {
        let bad = expect(
            StatusCode::BAD_REQUEST,
            &ursula
                .get(&format!("/v1/users/search?q=ann&{filter}={value}"))
                .await,
        );
        assert_eq!(tests::error_fields(&bad), [filter], "{bad}");
        assert!(bad["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains(filter));
    }
    for sort in [
        "email",
        "-email",
        "createdAt",
        "-createdAt",
        "updatedAt",
        "-updatedAt",
    ] {
        let bad = expect(
            StatusCode::BAD_REQUEST,
            &ursula
                .get(&format!("/v1/users/search?q=ann&sort={sort}"))
                .await,
        );
        assert_eq!(tests::error_fields(&bad), ["sort"], "{bad}");
        assert!(bad["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains(sort.trim_start_matches('-')));
    }
    let sorted = expect(
        StatusCode::OK,
        &ursula.get("/v1/users/search?q=ann&sort=-fullname").await,
    );
    assert_eq!(names(&sorted), ["Ursula Ann", "Ann Moe", "Ann Lee"]);
    assert_eq!(
        tests::sorted_keys(&sorted["users"][1]),
        PUBLIC_HIT_KEYS,
        "sorted hits are narrowed too"
    );

    // An admin sees every field of every hit, matches on emails, and may
    // filter and sort on any filterable or sortable field.
    let hits = expect(StatusCode::OK, &admin.get("/v1/users/search?q=ann").await);
    assert_eq!(hits["rowCount"], 4, "Otto by his email too: {hits}");
    for id in [&me, &lee, &moe, &hidden] {
        let h = hit(&hits, id);
        for k in PRIVATE_KEYS {
            assert!(h.get(*k).is_some(), "an admin sees {k}: {h}");
        }
    }
    assert_eq!(hit(&hits, &lee)["extends"], json!({ "bookings_count": 2 }));
    let s_moe = hit(&hits, &moe)["_score"].as_f64().unwrap();
    let s_lee = hit(&hits, &lee)["_score"].as_f64().unwrap();
    assert!(
        s_moe > s_lee,
        "for admins the email still ranks: {s_moe} > {s_lee}"
    );
    let supers = expect(
        StatusCode::OK,
        &admin
            .get("/v1/users/search?q=annika&roleId=superAdmin")
            .await,
    );
    assert_eq!(supers["users"][0]["id"], hidden.as_str());
    for query in [
        "email=annika@x.io",
        "emailVerified=false",
        "sort=email",
        "sort=-createdAt",
        "sort=updatedAt",
    ] {
        expect(
            StatusCode::OK,
            &admin.get(&format!("/v1/users/search?q=ann&{query}")).await,
        );
    }

    // getPermissions says what each caller sees.
    let view = |body: &Value, route: &str| {
        body["permissions"]["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == route)
            .map(|r| r["view"].clone())
            .unwrap()
    };
    let mine = expect(StatusCode::OK, &ursula.get("/v1/permissions").await);
    assert_eq!(view(&mine, "searchUsers"), "own");
    assert_eq!(
        view(&mine, "listUsers"),
        "none",
        "a route she cannot use shows her nothing"
    );
    assert_eq!(view(&mine, "getBriefUser"), "public");
    assert_eq!(view(&mine, "listUserGroups"), "full");
    let all = expect(StatusCode::OK, &admin.get("/v1/permissions").await);
    assert_eq!(view(&all, "searchUsers"), "full");
    assert_eq!(view(&all, "getBriefUser"), "public");
}

#[tokio::test]
async fn group_members_show_emails_only_to_admins_and_to_the_member() {
    let (server, _db) = auth_service().await;
    let admin = server.admin().await;
    let (ursula, me) = tests::register(&server, "ursula@x.io", "Ursula").await;
    let (olaf, olaf_id) = tests::register(&server, "olaf@x.io", "Olaf").await;
    let group = expect(
        StatusCode::CREATED,
        &admin
            .post("/v1/usergroups", json!({ "groupName": "crew" }))
            .await,
    )["userGroup"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for user in [&me, &olaf_id] {
        expect(
            StatusCode::CREATED,
            &admin
                .post(
                    "/v1/usergroupmembers",
                    json!({ "groupId": group, "userId": user }),
                )
                .await,
        );
    }
    let joined = |body: &Value, user: &str| {
        body["userGroupMembers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["userId"] == user)
            .map(|m| m["user"].clone())
            .unwrap_or_else(|| panic!("no member {user} in {body}"))
    };
    let path = format!("/v1/usergroupmembers?groupId={group}");
    // Each member sees their own email and only the other's public card.
    for (api, mine, other, other_name) in [
        (&ursula, &me, &olaf_id, "Olaf"),
        (&olaf, &olaf_id, &me, "Ursula"),
    ] {
        let list = expect(StatusCode::OK, &api.get(&path).await);
        assert_eq!(list["rowCount"], 2);
        assert!(joined(&list, mine)["email"].is_string(), "{list}");
        assert_eq!(
            joined(&list, other),
            json!({ "fullname": other_name, "avatar": null }),
            "{list}"
        );
    }
    let list = expect(StatusCode::OK, &admin.get(&path).await);
    assert_eq!(joined(&list, &me)["email"], "ursula@x.io");
    assert_eq!(joined(&list, &olaf_id)["email"], "olaf@x.io");
}

#[tokio::test(flavor = "multi_thread")]
async fn extends_are_merged_kept_and_published_alone() {
    let (broker, db, server) = tests::auth_service_with_broker().await;
    let svc = server.admin().await;
    let ann = create_user(&svc, "ann@example.com", "Ann Lee").await;
    let added = json!({ "bookings": [{ "id": "b1" }], "bookings_count": 1 });
    let answer = expect(
        StatusCode::OK,
        &svc.post(&format!("/v1/users/{ann}/extends"), added.clone())
            .await,
    );
    assert_eq!(answer["user"]["extends"], added);
    assert_eq!(answer["user"]["fullname"], "Ann Lee");
    expect(
        StatusCode::OK,
        &svc.post(
            &format!("/v1/users/{ann}/extends"),
            json!({ "reviews_count": 4 }),
        )
        .await,
    );
    // A change of the row keeps what others added.
    expect(
        StatusCode::OK,
        &svc.patch(&format!("/v1/users/{ann}"), json!({ "bio": "climbs" }))
            .await,
    );
    let doc = document(&db, "airbnb_user", &ann).await.unwrap();
    assert_eq!(
        doc["extends"],
        json!({ "bookings": [{ "id": "b1" }], "bookings_count": 1, "reviews_count": 4 })
    );
    assert_eq!(doc["bio"], "climbs");
    // The -extended event, in the outbox with the change, holds only what was added.
    let mut conn = db.connect().await;
    let payloads: Vec<String> = sqlx::query_scalar(
        "SELECT payload FROM event_outbox WHERE topic = 'elastic-index-airbnb_user-extended' ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let first: Value = serde_json::from_str(&payloads[0]).unwrap();
    assert_eq!(first, json!({ "id": ann, "extends": added }));
    assert_eq!(payloads.len(), 2);
    // And they reach the broker on the seed's -extended topic, keyed by the id.
    let msgs = tests::consume(
        &broker.brokers(),
        &["elastic-index-airbnb_user-extended"],
        3,
        std::time::Duration::from_secs(30),
        |m| m.len() >= 2,
    )
    .await;
    assert_eq!(msgs.len(), 2);
    let first = msgs
        .iter()
        .find(|m| m.payload["extends"].get("bookings").is_some())
        .expect("the first extension");
    assert_eq!(first.payload, json!({ "id": ann, "extends": added }));
    assert_eq!(first.key, ann);

    // Not an admin: 403; no document: 404; nothing to add: 400.
    let (status, _) = svc
        .anonymous()
        .post(
            "/v1/register",
            json!({ "email": "u@x.io", "password": "a decent secret", "fullname": "U" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let user = server.as_user("u@x.io", "a decent secret").await;
    expect(
        StatusCode::FORBIDDEN,
        &user
            .post(&format!("/v1/users/{ann}/extends"), json!({ "x": 1 }))
            .await,
    );
    expect(
        StatusCode::NOT_FOUND,
        &svc.post(
            &format!("/v1/users/{}/extends", uuid::Uuid::new_v4()),
            json!({ "x": 1 }),
        )
        .await,
    );
    expect(
        StatusCode::BAD_REQUEST,
        &svc.post(&format!("/v1/users/{ann}/extends"), json!({}))
            .await,
    );
}

#[tokio::test]
async fn reindex_rebuilds_an_index_from_the_tables() {
    let (server, db) = auth_service().await;
    let svc = server.admin().await;
    let ann = create_user(&svc, "ann@example.com", "Ann Lee").await;
    expect(
        StatusCode::OK,
        &svc.post(&format!("/v1/users/{ann}/extends"), json!({ "n_count": 1 }))
            .await,
    );
    // The index drifts: a document is damaged, one is lost, a stale one stays.
    let mut conn = db.connect().await;
    sqlx::query("UPDATE search_documents SET doc = '{}' WHERE id = $1::uuid")
        .bind(&ann)
        .execute(&mut conn)
        .await
        .unwrap();
    let bob = create_user(&svc, "bob@example.com", "Bob").await;
    sqlx::query("DELETE FROM search_documents WHERE id = $1::uuid")
        .bind(&bob)
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO search_documents (index_name, id, doc, search) VALUES ('airbnb_user', gen_random_uuid(), '{}', ''::tsvector)",
    )
    .execute(&mut conn)
    .await
    .unwrap();

    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    airbnb_auth_service::search::SEARCH
        .reindex(&pool, &["airbnb_user".to_string()])
        .await
        .expect("reindex");
    let users = db.count("users").await;
    let (docs,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM search_documents WHERE index_name = 'airbnb_user'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        docs, users,
        "one document per active user, the stale one gone"
    );
    let doc = document(&db, "airbnb_user", &ann).await.unwrap();
    assert_eq!(doc["fullname"], "Ann Lee");
    assert_eq!(doc["extends"], json!({ "n_count": 1 }), "extends survive");
    assert!(document(&db, "airbnb_user", &bob).await.is_some());
    let unknown = airbnb_auth_service::search::SEARCH
        .reindex(&pool, &["nope".to_string()])
        .await;
    assert!(unknown
        .unwrap_err()
        .to_string()
        .contains("airbnb_usergroup"));
}

#[tokio::test]
async fn the_reindex_command_rebuilds_and_exits() {
    let (server, db) = auth_service().await;
    let svc = server.admin().await;
    create_user(&svc, "ann@example.com", "Ann Lee").await;
    let mut conn = db.connect().await;
    sqlx::query("DELETE FROM search_documents")
        .execute(&mut conn)
        .await
        .unwrap();
    let out = std::process::Command::new(tests::service_binary())
        .args(["reindex", "airbnb_user", "airbnb_usergroup"])
        .env("DATABASE_URL", &db.url)
        .envs(tests::child_log_env())
        .output()
        .expect("run the service binary");
    tests::keep_output("reindex", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("airbnb_user: 2 documents"), "{stdout}");
    assert!(stdout.contains("airbnb_usergroup: 0 documents"), "{stdout}");
    let (docs,): (i64,) = sqlx::query_as("SELECT count(*) FROM search_documents")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(docs, 2, "the admin and Ann");
    let bad = std::process::Command::new(tests::service_binary())
        .args(["reindex", "nope"])
        .env("DATABASE_URL", &db.url)
        .envs(tests::child_log_env())
        .output()
        .unwrap();
    tests::keep_output("reindex", &bad);
    assert!(!bad.status.success());
}
