//! The realtime stream end to end: real HTTP clients read Server-Sent Events
//! while other clients change data, on one replica and across two.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tests::{create_user, expect, start_auth_service, Api, TestDb};

/// One Server-Sent Event as read off the wire.
#[derive(Debug, Clone)]
struct Sse {
    id: Option<i64>,
    event: String,
    data: Value,
}

/// An open event stream.
struct Stream {
    res: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(api: &Api, query: &str, last_event_id: Option<i64>) -> Stream {
        let mut req = api.client.get(format!("{}/v1/events{query}", api.base));
        if let Some(t) = &api.token {
            req = req.bearer_auth(t);
        }
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let res = req.send().await.expect("open the stream");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Stream {
            res,
            buffer: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped), or None after `wait`.
    async fn next(&mut self, wait: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::new(), String::new());
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if event.is_empty() && data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some(Sse {
                    id,
                    event,
                    data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
                });
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk())
                .await
                .ok()?;
            let bytes = chunk.expect("read the stream")?;
            self.buffer.push_str(&String::from_utf8_lossy(&bytes));
        }
    }

    /// Events until `n` have topics matching `wanted`, or `wait` passes.
    async fn collect(
        &mut self,
        n: usize,
        wanted: impl Fn(&str) -> bool,
        wait: Duration,
    ) -> Vec<Sse> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        while out.iter().filter(|e: &&Sse| wanted(&e.event)).count() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(e) => out.push(e),
                None => break,
            }
        }
        out
    }
}

const USER_UPDATED: &str = "airbnb3-auth-service-dbevent-user-updated";

fn fullnames(events: &[Sse]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event == USER_UPDATED)
        .map(|e| e.data["user"]["fullname"].as_str().unwrap().to_string())
        .collect()
}

fn assert_ascending(events: &[Sse]) {
    let ids: Vec<i64> = events.iter().filter_map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in order: {ids:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_delivers_in_order_sees_only_its_own_and_resumes() {
    let db = TestDb::create().await;
    let one = start_auth_service(&db.url, &[]).await;
    // A second replica on the same database: its clients see the first's writes.
    let two = start_auth_service(&db.url, &[]).await;
    let admin = one.admin().await;
    let user = create_user(&admin, "u@x.io", "U").await;
    let uid = user["id"].as_str().unwrap().to_string();
    let as_user = one.as_user("u@x.io", "correct horse").await;
    let user_on_two = Api {
        base: two.base.clone(),
        ..as_user.clone()
    };

    expect(
        StatusCode::UNAUTHORIZED,
        &one.anonymous().get("/v1/events").await,
    );
    let mut all = Stream::open(&admin, "", None).await;
    let mut mine = Stream::open(&user_on_two, "", None).await;
    let mut filtered = Stream::open(&as_user, &format!("?topics={USER_UPDATED}"), None).await;

    // Another client changes data: three updates of the user, one group.
    for name in ["v1", "v2", "v3"] {
        expect(
            StatusCode::OK,
            &admin
                .patch(&format!("/v1/users/{uid}"), json!({ "fullname": name }))
                .await,
        );
    }
    expect(
        StatusCode::CREATED,
        &admin
            .post("/v1/usergroups", json!({ "groupName": "g" }))
            .await,
    );

    let wait = Duration::from_secs(10);
    let seen = all
        .collect(1, |t| t.ends_with("dbevent-usergroup-created"), wait)
        .await;
    assert_eq!(fullnames(&seen), ["v1", "v2", "v3"], "in commit order");
    assert_ascending(&seen);
    assert!(seen
        .iter()
        .any(|e| e.event == "elastic-index-airbnb_user-updated"));
    assert!(
        seen.iter()
            .any(|e| e.event == "airbnb3-auth-service-user-updated"),
        "route events too"
    );

    // The user, on the other replica, sees the changes of its own row, in
    // order, and nothing of the admin's group.
    let theirs = mine.collect(3, |t| t == USER_UPDATED, wait).await;
    assert_eq!(fullnames(&theirs), ["v1", "v2", "v3"]);
    assert_ascending(&theirs);
    assert!(
        mine.next(Duration::from_millis(1500))
            .await
            .is_none_or(|e| !e.event.contains("usergroup")),
        "a stranger's rows are not shown"
    );
    assert!(theirs.iter().all(|e| !e.event.contains("usergroup")));

    let only = filtered.collect(3, |t| t == USER_UPDATED, wait).await;
    assert!(only.iter().all(|e| e.event == USER_UPDATED), "{only:?}");
    assert_eq!(fullnames(&only), ["v1", "v2", "v3"]);

    // Resume after the second update: the third comes again, then live ones.
    let second = seen
        .iter()
        .filter(|e| e.event == USER_UPDATED)
        .nth(1)
        .and_then(|e| e.id)
        .unwrap();
    let mut resumed = Stream::open(&admin, "", Some(second)).await;
    let replayed = resumed
        .collect(1, |t| t.ends_with("dbevent-usergroup-created"), wait)
        .await;
    assert_eq!(fullnames(&replayed), ["v3"]);
    assert!(replayed.iter().all(|e| e.id.unwrap() > second));
    assert_ascending(&replayed);
    expect(
        StatusCode::OK,
        &admin
            .patch(&format!("/v1/users/{uid}"), json!({ "fullname": "v4" }))
            .await,
    );
    let live = resumed.collect(1, |t| t == USER_UPDATED, wait).await;
    assert_eq!(fullnames(&live), ["v4"]);
    assert!(live[0].id.unwrap() > replayed.last().unwrap().id.unwrap());

    // Resuming from before what the outbox still keeps says so first.
    let mut conn = db.connect().await;
    sqlx::query("DELETE FROM event_outbox WHERE id <= $1")
        .bind(second)
        .execute(&mut conn)
        .await
        .unwrap();
    let mut stale = Stream::open(&admin, "", Some(1)).await;
    let first = stale.next(wait).await.expect("an event");
    assert_eq!(first.event, "resync");
    let after = stale.next(wait).await.expect("then the kept events");
    assert!(after.id.unwrap() > second);

    // A malformed Last-Event-ID is refused in the envelope.
    let bad = admin
        .call(
            reqwest::Method::GET,
            "/v1/events",
            None,
            &[("Last-Event-ID", "x")],
        )
        .await;
    assert_eq!(bad.0, StatusCode::BAD_REQUEST);
    assert_eq!(bad.1["status"], "ERR");
}

/// Whether the stream ends (after its `ended` event, if any) within `wait`.
async fn ends(stream: &mut Stream, wait: Duration) -> Option<Sse> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut last = None;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            panic!("the stream is still open; last event {last:?}");
        }
        let before = tokio::time::Instant::now();
        match stream.next(left).await {
            Some(e) => last = Some(e),
            // `next` gives None at the end of the stream, or when the wait ran out.
            None if before.elapsed() < left => return last,
            None => panic!("the stream is still open; last event {last:?}"),
        }
    }
}

const GROUP_CREATED: &str = "airbnb3-auth-service-dbevent-usergroup-created";

/// Two replicas on one database, and the super-admin on the first.
async fn two_replicas() -> (TestDb, tests::Running, tests::Running, Api) {
    let db = TestDb::create().await;
    let one = start_auth_service(&db.url, &[]).await;
    let two = start_auth_service(&db.url, &[]).await;
    let root = one.admin().await;
    (db, one, two, root)
}

/// An open stream checks its caller again when the caller's account changes,
/// on whichever replica the change happens: a demoted admin's stream narrows.
#[tokio::test(flavor = "multi_thread")]
async fn a_demoted_admins_open_stream_narrows_on_every_replica() {
    let (_db, _one, two, root) = two_replicas().await;
    let wait = Duration::from_secs(10);

    // An admin streams on replica two and sees everyone's rows.
    let admin = create_user(&root, "a@x.io", "A").await;
    let aid = admin["id"].as_str().unwrap().to_string();
    expect(
        StatusCode::OK,
        &root
            .patch(
                &format!("/v1/users/{aid}/role"),
                json!({ "roleId": "admin" }),
            )
            .await,
    );
    let admin_on_two = two.as_user("a@x.io", "correct horse").await;
    let mut watching = Stream::open(&admin_on_two, "", None).await;
    expect(
        StatusCode::CREATED,
        &root
            .post("/v1/usergroups", json!({ "groupName": "g1" }))
            .await,
    );
    let seen = watching.collect(1, |t| t == GROUP_CREATED, wait).await;
    assert!(seen.iter().any(|e| e.event == GROUP_CREATED), "{seen:?}");

    // Demoted on replica one: from then on only their own rows.
    expect(
        StatusCode::OK,
        &root
            .patch(
                &format!("/v1/users/{aid}/role"),
                json!({ "roleId": "user" }),
            )
            .await,
    );
    expect(
        StatusCode::CREATED,
        &root
            .post("/v1/usergroups", json!({ "groupName": "g2" }))
            .await,
    );
    expect(
        StatusCode::OK,
        &root
            .patch(
                &format!("/v1/users/{aid}"),
                json!({ "fullname": "still me" }),
            )
            .await,
    );
    // Their own row's updates still come: the role, then the name.
    let after = watching.collect(2, |t| t == USER_UPDATED, wait).await;
    assert!(
        after.iter().all(|e| e.event != GROUP_CREATED),
        "a demoted admin sees others' rows: {after:?}"
    );
    assert_eq!(
        fullnames(&after).last().map(String::as_str),
        Some("still me")
    );
}

/// Sign-out, a password change and deletion end the open streams of the
/// sessions they end, on whichever replica they happen.
#[tokio::test(flavor = "multi_thread")]
async fn an_open_stream_ends_with_its_session_on_every_replica() {
    let (_db, one, two, root) = two_replicas().await;
    let wait = Duration::from_secs(10);
    let user = create_user(&root, "u@x.io", "U").await;
    let uid = user["id"].as_str().unwrap().to_string();
    // A bystander's stream stays open throughout.
    let bid = create_user(&root, "b@x.io", "B").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bystander = Stream::open(&two.as_user("b@x.io", "correct horse").await, "", None).await;

    // Sign-out on replica one ends the stream on replica two.
    let user_one = one.as_user("u@x.io", "correct horse").await;
    let user_on_two = Api {
        base: two.base.clone(),
        ..user_one.clone()
    };
    let mut stream = Stream::open(&user_on_two, "", None).await;
    expect(
        StatusCode::OK,
        &user_one.post("/v1/logout", json!({})).await,
    );
    let last = ends(&mut stream, wait).await.expect("an ended event");
    assert_eq!(last.event, "ended");
    assert_eq!(last.data["reason"], "the session has ended");

    // A password change ends the streams of the account's other sessions.
    let other_session = two.as_user("u@x.io", "correct horse").await;
    let changing = one.as_user("u@x.io", "correct horse").await;
    let mut stream = Stream::open(&other_session, "", None).await;
    expect(
        StatusCode::OK,
        &changing
            .patch(
                &format!("/v1/users/{uid}/password"),
                json!({ "password": "a newer secret", "currentPassword": "correct horse" }),
            )
            .await,
    );
    assert_eq!(ends(&mut stream, wait).await.expect("ended").event, "ended");

    // Deleting the account ends the streams of every session it had.
    let mut stream = Stream::open(&changing, "", None).await;
    expect(
        StatusCode::OK,
        &root.delete(&format!("/v1/users/{uid}")).await,
    );
    assert_eq!(ends(&mut stream, wait).await.expect("ended").event, "ended");

    // The bystander's stream stayed open all along.
    expect(
        StatusCode::OK,
        &root
            .patch(&format!("/v1/users/{bid}"), json!({ "fullname": "open" }))
            .await,
    );
    let still = bystander.collect(1, |t| t == USER_UPDATED, wait).await;
    assert_eq!(fullnames(&still).last().map(String::as_str), Some("open"));
}

/// A stream lasts no longer than its access token.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_ends_when_its_access_token_expires() {
    let db = TestDb::create().await;
    let server = start_auth_service(&db.url, &[("ACCESS_TOKEN_TTL_SECS", "2")]).await;
    let mut stream = Stream::open(&server.admin().await, "", None).await;
    let last = ends(&mut stream, Duration::from_secs(10))
        .await
        .expect("an ended event");
    assert_eq!(last.event, "ended");
    assert_eq!(last.data["reason"], "the access token has expired");
}

/// One session holds only a few streams at once; a closed one gives its place back.
#[tokio::test(flavor = "multi_thread")]
async fn open_streams_are_bounded_per_session() {
    let db = TestDb::create().await;
    let server = start_auth_service(&db.url, &[]).await;
    let admin = server.admin().await;
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(Stream::open(&admin, "", None).await);
    }
    let open = || async {
        admin
            .client
            .get(format!("{}/v1/events", admin.base))
            .bearer_auth(admin.token.as_deref().unwrap())
            .send()
            .await
            .expect("open")
    };
    let fifth = open().await;
    assert_eq!(fifth.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(fifth.headers().contains_key("retry-after"));
    // A closed stream gives its place back.
    drop(streams.pop());
    let mut reopened = None;
    let since = std::time::Instant::now();
    while reopened.is_none() && since.elapsed() < Duration::from_secs(20) {
        let res = open().await;
        if res.status() == StatusCode::OK {
            reopened = Some(res);
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(reopened.is_some(), "a place freed by a closed stream");
}
