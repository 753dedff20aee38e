//! The library service end to end, against PostgreSQL and a real broker: the
//! business logic hand-written in `tests/library-service/src/hooks/loan.rs`
//! (one open loan per book, a notice after each committed lend, the due list
//! narrowed in SQL, the custom return route) running inside generated routes.

use library_service::hooks::loan::notices_for;
use library_service::topics;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tests::{
    consume, expect, library_as, start_library_service, Api, Broker, Running, TestDb, ADMIN_EMAIL,
    ADMIN_PASSWORD,
};
use uuid::Uuid;

/// A library with its bootstrap librarian signed in.
async fn library(settings: &[(&str, &str)]) -> (TestDb, Running, Api) {
    let db = TestDb::create().await;
    let server = start_library_service(&db.url, settings).await;
    let librarian = library_as(&server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    (db, server, librarian)
}

/// Adds a book and returns its id.
async fn add_book(librarian: &Api, isbn: &str) -> Uuid {
    let body = expect(
        StatusCode::CREATED,
        &librarian
            .post(
                "/api/books",
                json!({ "title": format!("Book {isbn}"), "isbn": isbn }),
            )
            .await,
    );
    id_of(&body["book"])
}

/// Lends `book` to `reader` and returns the loan's id.
async fn lend(librarian: &Api, book: Uuid, reader: &str) -> Uuid {
    let body = expect(
        StatusCode::CREATED,
        &librarian.post("/api/loans", lend_body(book, reader)).await,
    );
    id_of(&body["loan"])
}

fn id_of(row: &Value) -> Uuid {
    row["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("an id")
}

fn lend_body(book: Uuid, reader: &str) -> Value {
    json!({
        "bookId": book,
        "readerEmail": reader,
        "pickupCode": "pickup-123456",
        "dueAt": "2030-01-01T00:00:00Z",
    })
}

/// Events the outbox holds on `topic` (the relay keeps delivered ones for a day).
async fn outbox_events(db: &TestDb, topic: &str) -> i64 {
    let mut conn = db.connect().await;
    sqlx::query_scalar("SELECT count(*) FROM event_outbox WHERE topic = $1")
        .bind(topic)
        .fetch_one(&mut conn)
        .await
        .expect("outbox count")
}

async fn loans_of(db: &TestDb, book: Uuid) -> i64 {
    let mut conn = db.connect().await;
    sqlx::query_scalar("SELECT count(*) FROM loans WHERE book_id = $1")
        .bind(book)
        .fetch_one(&mut conn)
        .await
        .expect("loan count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_open_loan_of_a_book_is_refused_with_nothing_written() {
    let (db, _server, librarian) = library(&[]).await;
    let book = add_book(&librarian, "978-0-00-000001-1").await;
    lend(&librarian, book, "ann@example.com").await;
    let created = outbox_events(&db, topics::DBEVENT_LOAN_CREATED).await;
    let lent = outbox_events(&db, topics::ROUTE_BOOK_LENT).await;

    let refused = librarian
        .post("/api/loans", lend_body(book, "bob@example.com"))
        .await;
    let body = expect(StatusCode::CONFLICT, &refused);
    assert_eq!(body["errCode"], "CONFLICT", "{body}");
    assert_eq!(body["details"][0]["field"], "bookId", "{body}");
    // Nothing written, no event: the hook's refusal rolled the write back.
    assert_eq!(loans_of(&db, book).await, 1);
    assert_eq!(
        outbox_events(&db, topics::DBEVENT_LOAN_CREATED).await,
        created
    );
    assert_eq!(outbox_events(&db, topics::ROUTE_BOOK_LENT).await, lent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_lends_of_one_book_give_exactly_one_loan() {
    let (db, _server, librarian) = library(&[]).await;
    let book = add_book(&librarian, "978-0-00-000002-2").await;
    // Hold writes to the loans table (SHARE mode: reads pass) so that all ten
    // lends wait inside their transactions before any of them inserts: each
    // has checked for an open loan by then unless the hook's lock queued it
    // behind the first, so a check without a lock lets every one of them in.
    let mut gate = db.connect().await;
    sqlx::query("BEGIN")
        .execute(&mut gate)
        .await
        .expect("begin");
    sqlx::query("LOCK TABLE loans IN SHARE MODE")
        .execute(&mut gate)
        .await
        .expect("lock");
    let lends: Vec<_> = (0..10)
        .map(|i| {
            let librarian = librarian.clone();
            tokio::spawn(async move {
                librarian
                    .post(
                        "/api/loans",
                        lend_body(book, &format!("reader{i}@example.com")),
                    )
                    .await
            })
        })
        .collect();
    // Watched from another connection: a transaction sees pg_stat_activity
    // as it was when it first looked.
    let mut watch = db.connect().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watch)
        .await
        .expect("waiting sessions");
        if waiting == 10 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{waiting} of 10 lends waiting"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sqlx::query("COMMIT")
        .execute(&mut gate)
        .await
        .expect("release");
    let mut statuses = Vec::new();
    for lend in lends {
        let (status, body) = lend.await.expect("the lend ran");
        assert!(
            status == StatusCode::CREATED || status == StatusCode::CONFLICT,
            "{status}: {body}"
        );
        statuses.push(status);
    }
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{statuses:?}");
    assert_eq!(loans_of(&db, book).await, 1);
    // The after-commit hook ran for the one committed lend only.
    assert_eq!(notices_for(book), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_after_commit_hook_runs_once_per_committed_lend_and_never_after_a_refusal() {
    let (db, _server, librarian) = library(&[]).await;
    let book = add_book(&librarian, "978-0-00-000003-3").await;
    assert_eq!(notices_for(book), 0);
    let loan = lend(&librarian, book, "ann@example.com").await;
    assert_eq!(notices_for(book), 1);
    // Refused by the before hook: rolled back, no notice.
    expect(
        StatusCode::CONFLICT,
        &librarian
            .post("/api/loans", lend_body(book, "bob@example.com"))
            .await,
    );
    assert_eq!(notices_for(book), 1);
    // Refused by the database after the hooks ran (no such book): no notice.
    let missing = Uuid::new_v4();
    expect(
        StatusCode::UNPROCESSABLE_ENTITY,
        &librarian
            .post("/api/loans", lend_body(missing, "cy@example.com"))
            .await,
    );
    assert_eq!(notices_for(missing), 0);
    // An archived book is refused by the hook, naming the field.
    let archived = add_book(&librarian, "978-0-00-000004-4").await;
    expect(
        StatusCode::OK,
        &librarian.delete(&format!("/api/books/{archived}")).await,
    );
    let body = expect(
        StatusCode::UNPROCESSABLE_ENTITY,
        &librarian
            .post("/api/loans", lend_body(archived, "dee@example.com"))
            .await,
    );
    assert_eq!(body["details"][0]["field"], "bookId", "{body}");
    assert_eq!(notices_for(archived), 0);
    // Once returned, the book lends again: a second committed lend, a second notice.
    expect(
        StatusCode::OK,
        &librarian
            .post(&format!("/api/loans/{loan}/return"), json!({}))
            .await,
    );
    lend(&librarian, book, "eve@example.com").await;
    assert_eq!(notices_for(book), 2);
    assert_eq!(loans_of(&db, book).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returning_a_loan_sets_returned_at_and_publishes_loan_returned() {
    let broker = Broker::start().await;
    let (db, server, librarian) = library(&[
        ("KAFKA_BROKERS", &broker.brokers()),
        ("KAFKA_LINGER_MS", "0"),
    ])
    .await;
    let book = add_book(&librarian, "978-0-00-000005-5").await;
    let loan = lend(&librarian, book, "ann@example.com").await;
    let path = format!("/api/loans/{loan}/return");

    // Only the rule's roles may call the custom route.
    let (status, _) = server.anonymous().post(&path, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    expect(
        StatusCode::CREATED,
        &server
            .post(
                "/api/librarians",
                json!({ "email": "member@example.com", "secret": "member secret" }),
            )
            .await,
    );
    let member = library_as(&server, "member@example.com", "member secret").await;
    expect(StatusCode::FORBIDDEN, &member.post(&path, json!({})).await);

    let returned = expect(StatusCode::OK, &librarian.post(&path, json!({})).await);
    assert_eq!(returned["dataName"], "loan");
    assert_eq!(returned["action"], "custom");
    assert!(returned["loan"]["returnedAt"].is_string(), "{returned}");
    assert_eq!(returned["loan"]["recordVersion"], 2);
    let body = expect(
        StatusCode::CONFLICT,
        &librarian.post(&path, json!({})).await,
    );
    assert_eq!(body["details"][0]["field"], "returnedAt", "{body}");
    let (status, _) = librarian
        .post(&format!("/api/loans/{}/return", Uuid::new_v4()), json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The due list (narrowed by the query hook) no longer shows the loan,
    // and its count agrees.
    let due = expect(
        StatusCode::OK,
        &server.anonymous().get("/api/loans/due").await,
    );
    assert_eq!(due["paging"]["totalRowCount"], 0, "{due}");

    // The custom event, the row's update and the route event reach the broker, once each.
    let wanted = [
        topics::ROUTE_LOAN_RETURNED,
        topics::DBEVENT_LOAN_UPDATED,
        topics::ROUTE_BOOK_RETURNED,
    ];
    let read = consume(
        &broker.brokers(),
        &wanted,
        1,
        Duration::from_secs(30),
        |got| wanted.iter().all(|t| got.iter().any(|m| m.topic == *t)),
    )
    .await;
    for topic in wanted {
        let on_topic: Vec<_> = read.iter().filter(|m| m.topic == topic).collect();
        assert_eq!(on_topic.len(), 1, "{topic}: {on_topic:?}");
        assert_eq!(on_topic[0].key, loan.to_string(), "{topic}");
    }
    let event = read
        .iter()
        .find(|m| m.topic == topics::ROUTE_LOAN_RETURNED)
        .expect("loan-returned");
    assert_eq!(event.payload["id"], loan.to_string());
    assert!(event.payload["returnedAt"].is_string(), "{}", event.payload);
    assert_eq!(
        event.payload["pickupCode"],
        Value::Null,
        "no secret in events"
    );
    let updated = read
        .iter()
        .find(|m| m.topic == topics::DBEVENT_LOAN_UPDATED)
        .expect("updated");
    assert!(
        updated.payload["loan"]["returnedAt"].is_string(),
        "{}",
        updated.payload
    );
    // The refused second return published nothing.
    assert_eq!(outbox_events(&db, topics::ROUTE_LOAN_RETURNED).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_due_list_shows_open_loans_only_with_paging_that_agrees() {
    let (_db, server, librarian) = library(&[]).await;
    let mut loans = Vec::new();
    for i in 0..3 {
        let book = add_book(&librarian, &format!("978-0-00-00001{i}-0")).await;
        loans.push(lend(&librarian, book, "ann@example.com").await);
    }
    expect(
        StatusCode::OK,
        &librarian
            .post(&format!("/api/loans/{}/return", loans[0]), json!({}))
            .await,
    );
    let page = expect(
        StatusCode::OK,
        &server
            .anonymous()
            .get("/api/loans/due?pageRowCount=1")
            .await,
    );
    assert_eq!(page["paging"]["totalRowCount"], 2, "{page}");
    assert_eq!(page["paging"]["pageCount"], 2, "{page}");
    // Past the last page the count comes from the separate count query,
    // which the hook narrows too.
    let past = expect(
        StatusCode::OK,
        &server
            .anonymous()
            .get("/api/loans/due?pageRowCount=1&pageNumber=5")
            .await,
    );
    assert_eq!(past["paging"]["totalRowCount"], 2, "{past}");
    let all = expect(StatusCode::OK, &librarian.get("/api/loans").await);
    assert_eq!(all["paging"]["totalRowCount"], 3, "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_guard_extending_archiving_and_reading_returned_loans() {
    let (db, server, librarian) = library(&[]).await;
    let book = add_book(&librarian, "978-0-00-000006-6").await;
    let loan = lend(&librarian, book, "ann@example.com").await;
    let loan_path = format!("/api/loans/{loan}");

    // The update's input hook: a due date in the past is a field error.
    let body = expect(
        StatusCode::BAD_REQUEST,
        &librarian
            .patch(&loan_path, json!({ "dueAt": "2001-01-01T00:00:00Z" }))
            .await,
    );
    assert_eq!(body["details"][0]["field"], "dueAt", "{body}");
    let extended = expect(
        StatusCode::OK,
        &librarian
            .patch(&loan_path, json!({ "dueAt": "2031-01-01T00:00:00Z" }))
            .await,
    );
    assert_eq!(extended["loan"]["recordVersion"], 2);

    // The delete's before hook: a lent book is not archived, and stays.
    let body = expect(
        StatusCode::CONFLICT,
        &librarian.delete(&format!("/api/books/{book}")).await,
    );
    assert_eq!(body["details"][0]["field"], "id", "{body}");
    expect(
        StatusCode::OK,
        &server.anonymous().get(&format!("/api/books/{book}")).await,
    );

    expect(
        StatusCode::CREATED,
        &server
            .post(
                "/api/librarians",
                json!({ "email": "reader@example.com", "secret": "reader secret" }),
            )
            .await,
    );
    let member = library_as(&server, "reader@example.com", "reader secret").await;
    expect(StatusCode::OK, &member.get(&loan_path).await);

    expect(
        StatusCode::OK,
        &librarian
            .post(&format!("{loan_path}/return"), json!({}))
            .await,
    );
    // The update's before hook sees the returned loan: 409, nothing changed.
    let body = expect(
        StatusCode::CONFLICT,
        &librarian
            .patch(&loan_path, json!({ "dueAt": "2032-01-01T00:00:00Z" }))
            .await,
    );
    assert_eq!(body["details"][0]["field"], "returnedAt", "{body}");
    let mut conn = db.connect().await;
    let version: i32 = sqlx::query_scalar("SELECT record_version FROM loans WHERE id = $1")
        .bind(loan)
        .fetch_one(&mut conn)
        .await
        .expect("version");
    assert_eq!(version, 3, "extended once, returned once");
    // The get's row hook: a returned loan is the librarians' record.
    expect(StatusCode::NOT_FOUND, &member.get(&loan_path).await);
    expect(StatusCode::OK, &librarian.get(&loan_path).await);
    // Returned, the book may go.
    expect(
        StatusCode::OK,
        &librarian.delete(&format!("/api/books/{book}")).await,
    );
}
