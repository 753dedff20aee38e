//! The Elasticsearch backend, against a stand-in that speaks the documented
//! HTTP API (no Elasticsearch runs on this machine): it records the `_bulk`
//! and `_search` requests the service sends and answers the documented
//! response bodies. What is checked is the wire format the service produces
//! and how it reads the answers, including catching up after an outage.

use axum::extract::{Path, State};
use axum::http::StatusCode as Status;
use axum::routing::post;
use axum::{Json, Router};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tests::{create_user, expect, start_auth_service, TestDb};

#[derive(Default)]
struct Recorded {
    bulks: Mutex<Vec<String>>,
    searches: Mutex<Vec<(String, Value)>>,
    /// `_bulk` calls still to refuse with 503 (an outage).
    refuse: AtomicUsize,
    /// The id of the second hit `_search` answers (the caller's own, when set).
    own_id: Mutex<Option<String>>,
}

/// A whole user document as the index holds it, as `_source` carries it.
fn user_source(id: &str, email: &str, fullname: &str) -> Value {
    json!({
        "id": id, "email": email, "fullname": fullname, "avatar": null, "roleId": "admin",
        "emailVerified": true, "emailTwoFactor": false, "preferredLanguage": "en", "bio": "private words",
        "groups": [{ "id": "g", "groupName": "Climbers", "avatar": null }], "isActive": true,
        "recordVersion": 1, "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z",
        "_owner": id, "extends": { "bookings_count": 1 }
    })
}

/// `POST /_bulk`: the documented answer, `{"took", "errors", "items"}` with
/// one item per action.
async fn bulk(State(r): State<Arc<Recorded>>, body: String) -> (Status, Json<Value>) {
    if r.refuse
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (
            Status::SERVICE_UNAVAILABLE,
            Json(json!({ "error": { "type": "cluster_block_exception" }, "status": 503 })),
        );
    }
    let mut items = Vec::new();
    for line in body.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        for action in ["index", "delete"] {
            if let Some(meta) = v.get(action) {
                let (status, result) = if action == "index" {
                    (201, "created")
                } else {
                    (404, "not_found")
                };
                items.push(json!({ action: { "_index": meta["_index"], "_id": meta["_id"], "status": status, "result": result } }));
            }
        }
    }
    r.bulks.lock().unwrap().push(body);
    // A delete of a missing document is reported as an error item of 404.
    let errors = items.iter().any(|i| i.get("delete").is_some());
    (
        Status::OK,
        Json(json!({ "took": 3, "errors": errors, "items": items })),
    )
}

/// `POST /{index}/_search`: the documented answer shape with two hits.
async fn search(
    State(r): State<Arc<Recorded>>,
    Path(index): Path<String>,
    Json(body): Json<Value>,
) -> Json<Value> {
    r.searches.lock().unwrap().push((index.clone(), body));
    let own = r
        .own_id
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| "b".into());
    Json(json!({
        "took": 2,
        "timed_out": false,
        "_shards": { "total": 1, "successful": 1, "skipped": 0, "failed": 0 },
        "hits": {
            "total": { "value": 7, "relation": "eq" },
            "max_score": 2.5,
            "hits": [
                { "_index": index, "_id": "a", "_score": 2.5, "_source": user_source("a", "ann@x.io", "Ann Lee") },
                { "_index": index, "_id": own, "_score": 1.25, "_source": user_source(&own, "me@x.io", "Ann Zed") }
            ]
        }
    }))
}

async fn stand_in() -> (String, Arc<Recorded>) {
    let recorded = Arc::new(Recorded::default());
    let app = Router::new()
        .route("/_bulk", post(bulk))
        .route("/{index}/_search", post(search))
        .with_state(recorded.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, recorded)
}

/// Waits until a recorded `_bulk` body satisfies `pred`.
async fn bulk_where(r: &Recorded, pred: impl Fn(&str) -> bool) -> String {
    for _ in 0..100 {
        if let Some(b) = r.bulks.lock().unwrap().iter().find(|b| pred(b)) {
            return b.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no _bulk request matched; got {:?}",
        r.bulks.lock().unwrap()
    );
}

#[tokio::test]
async fn documents_reach_elasticsearch_through_bulk_and_catch_up_after_an_outage() {
    let (url, recorded) = stand_in().await;
    // Elasticsearch is down for the first three requests.
    recorded.refuse.store(3, Ordering::SeqCst);
    let db = TestDb::create().await;
    let server = start_auth_service(&db.url, &[("ELASTICSEARCH_URL", &url)]).await;
    let svc = server.admin().await;
    let ann = create_user(&svc, "ann@example.com", "Ann Lee").await;
    let id = ann["id"].as_str().unwrap().to_string();

    let body = bulk_where(&recorded, |b| b.contains(&id)).await;
    assert_eq!(
        recorded.refuse.load(Ordering::SeqCst),
        0,
        "the refused requests were retried"
    );
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let at = lines
        .iter()
        .position(|l| l["index"]["_id"] == id.as_str())
        .expect("an index action for the new user");
    assert_eq!(lines[at]["index"]["_index"], "airbnb_user");
    let doc = &lines[at + 1];
    assert_eq!(doc["email"], "ann@example.com");
    assert_eq!(
        doc["groups"],
        json!([]),
        "the aggregated document, not the row"
    );
    assert_eq!(doc["extends"], json!({}));
    assert!(doc.get("password").is_none());
    assert!(body.ends_with('\n'), "NDJSON ends with a newline");

    // A group membership sends both documents again.
    let group = expect(
        StatusCode::CREATED,
        &svc.post("/v1/usergroups", json!({ "groupName": "Climbers" }))
            .await,
    )["userGroup"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    expect(
        StatusCode::CREATED,
        &svc.post(
            "/v1/usergroupmembers",
            json!({ "groupId": group, "userId": id }),
        )
        .await,
    );
    bulk_where(&recorded, |b| b.contains("\"memberCount\":1")).await;
    bulk_where(&recorded, |b| b.contains("Climbers") && b.contains(&id)).await;

    // Archiving the user deletes its document.
    expect(
        StatusCode::OK,
        &svc.delete(&format!("/v1/users/{id}")).await,
    );
    let body = bulk_where(&recorded, |b| b.contains("\"delete\"") && b.contains(&id)).await;
    let delete: Value = serde_json::from_str(
        body.lines()
            .find(|l| l.contains("\"delete\"") && l.contains(&id))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        delete,
        json!({ "delete": { "_index": "airbnb_user", "_id": id } })
    );

    // Every index event was mirrored, and marked so only once accepted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut conn = db.connect().await;
    let (left,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM event_outbox WHERE topic LIKE 'elastic-index-%' AND topic NOT LIKE '%useravatarsfile%' AND search_synced_at IS NULL",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn search_users_asks_elasticsearch_and_reads_its_answer() {
    let (url, recorded) = stand_in().await;
    let db = TestDb::create().await;
    let server = start_auth_service(&db.url, &[("ELASTICSEARCH_URL", &url)]).await;
    let svc = server.admin().await;
    let hits = expect(
        StatusCode::OK,
        &svc.get("/v1/users/search?q=Ann%20le&roleId=admin&emailVerified=false&pageRowCount=2&pageNumber=2")
            .await,
    );
    assert_eq!(hits["rowCount"], 2);
    assert_eq!(hits["users"][0]["fullname"], "Ann Lee");
    assert_eq!(hits["users"][0]["_score"], 2.5);
    assert_eq!(hits["users"][1]["_score"], 1.25);
    assert_eq!(hits["paging"]["totalRowCount"], 7, "hits.total.value");
    assert_eq!(hits["paging"]["pageCount"], 4);

    let (index, body) = recorded.searches.lock().unwrap()[0].clone();
    assert_eq!(index, "airbnb_user");
    assert_eq!(
        body,
        json!({
            "from": 2,
            "size": 2,
            "track_total_hits": true,
            "query": { "bool": {
                "must": [{ "multi_match": {
                    "query": "Ann le", "type": "bool_prefix", "operator": "and",
                    "fields": ["email^3", "fullname^2"]
                } }],
                "filter": [
                    { "term": { "roleId.keyword": "admin" } },
                    { "term": { "emailVerified": false } }
                ]
            } },
            "sort": [{ "_score": "desc" }, { "id.keyword": "asc" }]
        })
    );

    // An explicit sort replaces the score.
    expect(
        StatusCode::OK,
        &svc.get("/v1/users/search?q=ann&sort=-createdAt").await,
    );
    let (_, body) = recorded.searches.lock().unwrap()[1].clone();
    assert_eq!(
        body["sort"],
        json!([{ "createdAt": "desc" }, { "id.keyword": "asc" }])
    );
    let bad = expect(
        StatusCode::BAD_REQUEST,
        &svc.get("/v1/users/search?q=ann&sort=password").await,
    );
    assert_eq!(tests::error_fields(&bad), ["sort"]);
}

#[tokio::test]
async fn elasticsearch_searches_are_bounded_like_postgresql() {
    let (url, recorded) = stand_in().await;
    let db = TestDb::create().await;
    let server = start_auth_service(&db.url, &[("ELASTICSEARCH_URL", &url)]).await;
    let svc = server.admin().await;
    let at_bounds = tests::keywords_past_bounds_are_refused(&svc).await;
    assert!(
        recorded.searches.lock().unwrap().is_empty(),
        "Elasticsearch was never asked"
    );
    expect(
        StatusCode::OK,
        &svc.get(&format!("/v1/users/search?q={at_bounds}")).await,
    );
    assert_eq!(recorded.searches.lock().unwrap().len(), 1);
}

/// The fields a `_search` body matches the keyword in.
fn queried_fields(body: &Value) -> Value {
    body["query"]["bool"]["must"][0]["multi_match"]["fields"].clone()
}

#[tokio::test]
async fn elasticsearch_searches_show_ordinary_users_only_public_fields() {
    let (url, recorded) = stand_in().await;
    let db = TestDb::create().await;
    let server = start_auth_service(&db.url, &[("ELASTICSEARCH_URL", &url)]).await;
    let (user, me) = tests::register(&server, "me@x.io", "Ann Zed").await;
    *recorded.own_id.lock().unwrap() = Some(me.clone());
    let searches = || recorded.searches.lock().unwrap().clone();

    // An ordinary user: only the public searchable field is queried, and the
    // hidden keys of others' hits are removed; their own hit stays whole.
    let hits = expect(
        StatusCode::OK,
        &user.get("/v1/users/search?q=ann&sort=-fullname").await,
    );
    let (_, body) = searches().last().cloned().unwrap();
    assert_eq!(queried_fields(&body), json!(["fullname^2"]));
    assert_eq!(body["query"]["bool"]["filter"], json!([]));
    assert_eq!(
        body["sort"],
        json!([{ "fullname.keyword": "desc" }, { "id.keyword": "asc" }])
    );
    for hidden in ["email", "roleId", "emailVerified", "bio", "createdAt"] {
        assert!(
            !body.to_string().contains(hidden),
            "{hidden} is not queried: {body}"
        );
    }
    let other = &hits["users"][0];
    assert_eq!(
        tests::sorted_keys(other),
        ["_score", "avatar", "fullname", "id", "isActive"],
        "{hits}"
    );
    assert_eq!(other["fullname"], "Ann Lee");
    assert_eq!(other["_score"], 2.5);
    let own = &hits["users"][1];
    assert_eq!(own["id"], me.as_str());
    assert_eq!(own["email"], "me@x.io");
    assert_eq!(own["extends"], json!({ "bookings_count": 1 }));
    assert_eq!(own["groups"][0]["groupName"], "Climbers");

    // Filters and sorts on hidden fields: a 400 naming them, and
    // Elasticsearch is not asked at all.
    let asked = searches().len();
    for (query, field) in [
        ("roleId=superAdmin", "roleId"),
        ("email=ann@x.io", "email"),
        ("emailVerified=true", "emailVerified"),
        ("sort=email", "sort"),
        ("sort=-createdAt", "sort"),
    ] {
        let bad = expect(
            StatusCode::BAD_REQUEST,
            &user.get(&format!("/v1/users/search?q=ann&{query}")).await,
        );
        assert_eq!(tests::error_fields(&bad), [field], "{bad}");
    }
    assert_eq!(
        searches().len(),
        asked,
        "refused before Elasticsearch is asked"
    );

    // An admin: every searchable field is queried and every hit is whole.
    let admin = server.admin().await;
    let hits = expect(
        StatusCode::OK,
        &admin.get("/v1/users/search?q=ann&roleId=admin").await,
    );
    let (_, body) = searches().last().cloned().unwrap();
    assert_eq!(queried_fields(&body), json!(["email^3", "fullname^2"]));
    assert_eq!(
        body["query"]["bool"]["filter"],
        json!([{ "term": { "roleId.keyword": "admin" } }])
    );
    for h in hits["users"].as_array().unwrap() {
        assert!(h["email"].is_string() && h["extends"].is_object(), "{h}");
    }
}
