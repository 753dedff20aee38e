//! Realtime: a Server-Sent Events stream of the outbox's events to signed-in
//! clients. One [`Hub`] per replica listens for the outbox's NOTIFY (sent by
//! every replica at commit), reads new events in id order and fans them out,
//! so a client on any replica sees every event. A client sees the events of
//! its own rows (or all, see [`Viewer`]), optionally only some topics, and
//! resumes after `Last-Event-ID` for as long as the outbox keeps its events.

use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::outbox::CHANNEL;
use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::Value;
use sqlx::postgres::{PgListener, PgPool};
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

/// A hole in the outbox ids (a transaction that took its id but has not
/// committed yet) is waited for this long before it is passed over.
const HOLE_WAIT: Duration = Duration::from_millis(1500);
/// Events read from the outbox at a time.
const PAGE: i64 = 500;

/// Who asks for the stream, as far as it decides what they see. The
/// service's signed-in caller implements it: extracting it is the route's
/// access check.
pub trait Viewer {
    /// The account whose rows and actions the viewer sees.
    fn user_id(&self) -> Uuid;
    /// Whether the viewer sees every event (admins do).
    fn sees_all(&self) -> bool;
}

/// The stream shows a signed-in caller their own rows and actions, or
/// everything to admins.
#[cfg(feature = "identity")]
impl Viewer for crate::auth::Caller {
    fn user_id(&self) -> Uuid {
        self.user_id
    }

    fn sees_all(&self) -> bool {
        self.is_admin()
    }
}

/// One outbox event, as the stream sends it.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub id: i64,
    pub topic: String,
    pub payload: Arc<str>,
}

/// The replica's fan-out of new outbox events.
pub struct Hub {
    sender: broadcast::Sender<Delivered>,
    /// The id of the last event fanned out.
    position: AtomicI64,
    /// Set when the service shuts down: streams end so that HTTP can stop.
    closing: watch::Sender<bool>,
}

impl Hub {
    /// A hub positioned after the newest event: clients reach older ones by
    /// resuming.
    pub async fn start(db: &PgPool) -> Result<Arc<Self>, sqlx::Error> {
        let newest: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM event_outbox")
            .fetch_one(db)
            .await?;
        let (sender, _) = broadcast::channel(1024);
        let (closing, _) = watch::channel(false);
        Ok(Arc::new(Self {
            sender,
            position: AtomicI64::new(newest.unwrap_or(0)),
            closing,
        }))
    }

    /// Ends every stream (at shutdown: open streams would keep it waiting).
    pub fn close(&self) {
        let _ = self.closing.send(true);
    }

    /// Follows the outbox until `stop`: woken by NOTIFY, and every second in
    /// case a notification was missed while reconnecting.
    pub async fn run(self: Arc<Self>, db: PgPool, mut stop: watch::Receiver<bool>) {
        let mut listener: Option<PgListener> = None;
        let mut hole: Option<(i64, Instant)> = None;
        while !*stop.borrow() {
            if listener.is_none() {
                listener = match PgListener::connect_with(&db).await {
                    Ok(mut l) => l.listen(CHANNEL).await.ok().map(|()| l),
                    Err(_) => None,
                };
            }
            if let Err(e) = self.fan_out(&db, &mut hole).await {
                tracing::warn!(error = %e, "realtime hub could not read the outbox");
            }
            let tick = tokio::time::sleep(Duration::from_secs(1));
            match listener.as_mut() {
                Some(l) => tokio::select! {
                    n = l.recv() => if n.is_err() { listener = None },
                    () = tick => {},
                    _ = stop.changed() => {},
                },
                None => tokio::select! {
                    () = tick => {},
                    _ = stop.changed() => {},
                },
            }
        }
    }

    /// Sends the events after the position, in id order, stopping at a hole
    /// until it fills or has waited long enough (then it is a rolled-back id).
    async fn fan_out(
        &self,
        db: &PgPool,
        hole: &mut Option<(i64, Instant)>,
    ) -> Result<(), sqlx::Error> {
        loop {
            let after = self.position.load(Ordering::SeqCst);
            let rows = read_after(db, after, PAGE).await?;
            if rows.is_empty() {
                return Ok(());
            }
            let mut last = after;
            for row in &rows {
                if row.id != last + 1 {
                    match hole {
                        Some((at, since)) if *at == last + 1 && since.elapsed() >= HOLE_WAIT => {}
                        Some((at, _)) if *at == last + 1 => return Ok(()),
                        _ => {
                            *hole = Some((last + 1, Instant::now()));
                            return Ok(());
                        }
                    }
                }
                *hole = None;
                last = row.id;
                self.position.store(last, Ordering::SeqCst);
                // No subscriber is not an error.
                let _ = self.sender.send(row.clone());
            }
            if rows.len() < PAGE as usize {
                return Ok(());
            }
        }
    }
}

/// Up to `limit` events after `after`, oldest first.
async fn read_after(db: &PgPool, after: i64, limit: i64) -> Result<Vec<Delivered>, sqlx::Error> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT id, topic, payload FROM event_outbox WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, topic, payload)| Delivered {
            id,
            topic,
            payload: payload.into(),
        })
        .collect())
}

/// The stream at `path`, for any signed-in `V`.
pub fn router<S, V>(path: &str) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    PgPool: FromRef<S>,
    Arc<Hub>: FromRef<S>,
    V: Viewer + FromRequestParts<S> + Send + 'static,
{
    Router::new().route(path, get(subscribe::<V>))
}

/// Query parameters of the stream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Comma-separated topics to receive; all when absent.
    pub topics: Option<String>,
    /// Resume after this event id (as the `Last-Event-ID` header does).
    #[serde(rename = "lastEventId")]
    pub last_event_id: Option<i64>,
}

/// Who receives what.
#[derive(Debug, Clone)]
struct Audience {
    user_id: Uuid,
    sees_all: bool,
    topics: Option<BTreeSet<String>>,
}

impl Audience {
    /// Viewers who see all see every event; others those that carry a row
    /// they own (its `_owner`, at the top or one level down) or that they
    /// caused (`userId` of a route's answer or a session event).
    fn sees(&self, e: &Delivered) -> bool {
        if self.topics.as_ref().is_some_and(|t| !t.contains(&e.topic)) {
            return false;
        }
        if self.sees_all {
            return true;
        }
        let Ok(payload) = serde_json::from_str::<Value>(&e.payload) else {
            return false;
        };
        let me = self.user_id.to_string();
        let is_me = |v: &Value| v.as_str() == Some(me.as_str());
        is_me(&payload["_owner"])
            || is_me(&payload["userId"])
            || payload
                .as_object()
                .is_some_and(|m| m.values().any(|v| is_me(&v["_owner"])))
    }
}

fn frame(e: &Delivered) -> SseEvent {
    SseEvent::default()
        .id(e.id.to_string())
        .event(e.topic.clone())
        .data(&*e.payload)
}

/// The event stream: what the hub passed after the resume point, then what
/// it passes next, as long as the client stays.
pub async fn subscribe<V: Viewer>(
    State(db): State<PgPool>,
    State(hub): State<Arc<Hub>>,
    viewer: V,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| ApiError::BadRequest("Last-Event-ID must be an event id".into()))?,
        ),
        None => q.last_event_id,
    };
    let audience = Audience {
        user_id: viewer.user_id(),
        sees_all: viewer.sees_all(),
        topics: q.topics.map(|t| {
            t.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        }),
    };
    // Subscribe before reading the position, so nothing falls between the
    // replay and the live events.
    let mut live = hub.sender.subscribe();
    let position = hub.position.load(Ordering::SeqCst);
    let (tx, rx) = mpsc::channel(64);
    let mut closing = hub.closing.subscribe();
    tokio::spawn(async move {
        let mut sent = resume.unwrap_or(position);
        if resume.is_some() {
            let oldest: Option<i64> = sqlx::query_scalar("SELECT min(id) FROM event_outbox")
                .fetch_one(&db)
                .await
                .unwrap_or(None);
            if oldest.is_some_and(|o| o > sent + 1) {
                // Events after the resume point are gone: the client must reload.
                let gone = SseEvent::default()
                    .event("resync")
                    .data(r#"{"reason":"events after Last-Event-ID are no longer kept"}"#);
                if tx.send(Ok(gone)).await.is_err() {
                    return;
                }
            }
        }
        // Replay what the hub already passed, then follow it.
        if !replay(&db, &audience, &tx, &mut sent, position).await {
            return;
        }
        loop {
            let next = tokio::select! {
                next = live.recv() => next,
                _ = closing.changed() => return,
            };
            match next {
                Ok(e) if e.id <= sent => {}
                Ok(e) => {
                    sent = e.id;
                    if audience.sees(&e) && tx.send(Ok(frame(&e))).await.is_err() {
                        return;
                    }
                }
                // Fell behind the hub: catch up from the outbox.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let upto = hub.position.load(Ordering::SeqCst);
                    if !replay(&db, &audience, &tx, &mut sent, upto).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let stream = Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)));
    Ok(stream.into_response())
}

/// Sends the events in `(sent, upto]` that the audience sees; false once the
/// client is gone.
async fn replay(
    db: &PgPool,
    audience: &Audience,
    tx: &mpsc::Sender<Result<SseEvent, Infallible>>,
    sent: &mut i64,
    upto: i64,
) -> bool {
    while *sent < upto {
        let Ok(rows) = read_after(db, *sent, PAGE).await else {
            return true;
        };
        if rows.is_empty() {
            break;
        }
        for e in rows.iter().filter(|e| e.id <= upto) {
            *sent = e.id;
            if audience.sees(e) && tx.send(Ok(frame(e))).await.is_err() {
                return false;
            }
        }
        if rows.last().is_some_and(|e| e.id >= upto) {
            break;
        }
    }
    *sent = (*sent).max(upto);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDb;
    use axum::body::Body;
    use axum::http::request::Parts;
    use axum::http::{Request, StatusCode};
    use serde_json::json;
    use tokio_stream::StreamExt;
    use tower::ServiceExt;

    const ME: Uuid = Uuid::from_u128(7);

    fn delivered(topic: &str, payload: Value) -> Delivered {
        Delivered {
            id: 1,
            topic: topic.into(),
            payload: payload.to_string().into(),
        }
    }

    fn audience(sees_all: bool, topics: Option<&[&str]>) -> Audience {
        Audience {
            user_id: ME,
            sees_all,
            topics: topics.map(|t| t.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn a_viewer_sees_their_rows_and_their_actions() {
        let me = ME.to_string();
        let other = Uuid::from_u128(8).to_string();
        let a = audience(false, None);
        assert!(a.sees(&delivered("t", json!({ "_owner": me }))));
        assert!(a.sees(&delivered("t", json!({ "userId": me }))));
        assert!(a.sees(&delivered("t", json!({ "book": { "_owner": me } }))));
        assert!(!a.sees(&delivered("t", json!({ "_owner": other }))));
        assert!(!a.sees(&delivered("t", json!({ "a": { "b": { "_owner": me } } }))));
        assert!(!a.sees(&Delivered {
            id: 1,
            topic: "t".into(),
            payload: "not json".into(),
        }));
    }

    #[test]
    fn a_viewer_who_sees_all_sees_others_rows_within_the_topics_asked() {
        let other = json!({ "_owner": Uuid::from_u128(8) });
        assert!(audience(true, None).sees(&delivered("t", other.clone())));
        let narrowed = audience(true, Some(&["u"]));
        assert!(!narrowed.sees(&delivered("t", other.clone())));
        assert!(narrowed.sees(&delivered("u", other)));
        let mine = json!({ "_owner": ME });
        assert!(!audience(false, Some(&["u"])).sees(&delivered("t", mine)));
    }

    async fn insert(db: &PgPool, ids: &[i64]) {
        sqlx::query(
            "INSERT INTO event_outbox (id, event_id, topic, event_key, lane, payload)
             SELECT id, gen_random_uuid(), 'topic', 'key', 0, '{}' FROM unnest($1::bigint[]) AS id",
        )
        .bind(ids)
        .execute(db)
        .await
        .expect("insert events");
    }

    fn received(rx: &mut broadcast::Receiver<Delivered>) -> Vec<i64> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|d| d.id)
            .collect()
    }

    #[tokio::test]
    async fn the_hub_starts_after_the_newest_event_and_fans_out_in_order() {
        let db = TestDb::with_outbox().await;
        let pool = db.pool().await;
        insert(&pool, &[1, 2]).await;
        let hub = Hub::start(&pool).await.expect("hub");
        let mut rx = hub.sender.subscribe();
        insert(&pool, &[3, 4, 5]).await;
        let mut hole = None;
        hub.fan_out(&pool, &mut hole).await.expect("fan out");
        assert_eq!(received(&mut rx), [3, 4, 5]);
        assert_eq!(hub.position.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_hole_is_waited_for_then_passed_over() {
        let db = TestDb::with_outbox().await;
        let pool = db.pool().await;
        let hub = Hub::start(&pool).await.expect("hub");
        let mut rx = hub.sender.subscribe();
        // 2 is taken by a transaction that has not committed yet.
        insert(&pool, &[1, 3]).await;
        let mut hole = None;
        hub.fan_out(&pool, &mut hole).await.expect("fan out");
        assert_eq!(received(&mut rx), [1]);
        assert_eq!(hole.map(|(at, _)| at), Some(2));
        // It commits in time: nothing is passed over.
        insert(&pool, &[2]).await;
        hub.fan_out(&pool, &mut hole).await.expect("fan out");
        assert_eq!(received(&mut rx), [2, 3]);
        assert_eq!(hole, None);
        // 4 never commits: 5 waits out the hole, then goes.
        insert(&pool, &[5]).await;
        hub.fan_out(&pool, &mut hole).await.expect("fan out");
        assert!(received(&mut rx).is_empty());
        hole =
            hole.map(|(at, since)| (at, since.checked_sub(HOLE_WAIT).expect("an older instant")));
        hub.fan_out(&pool, &mut hole).await.expect("fan out");
        assert_eq!(received(&mut rx), [5]);
    }

    #[tokio::test]
    async fn a_replay_sends_what_the_audience_sees_up_to_the_position() {
        let db = TestDb::with_outbox().await;
        let pool = db.pool().await;
        insert(&pool, &[1, 2, 3, 4]).await;
        sqlx::query("UPDATE event_outbox SET topic = 'other' WHERE id = 2")
            .execute(&pool)
            .await
            .expect("update");
        let (tx, mut rx) = mpsc::channel(8);
        let mut sent = 0;
        let a = audience(true, Some(&["topic"]));
        assert!(replay(&pool, &a, &tx, &mut sent, 3).await);
        assert_eq!(sent, 3);
        drop(tx);
        let mut frames = 0;
        while rx.recv().await.is_some() {
            frames += 1;
        }
        assert_eq!(frames, 2);
    }

    /// A caller named by an `x-user` header: `admin`, or the user id.
    struct Caller(Option<Uuid>);

    impl Viewer for Caller {
        fn user_id(&self) -> Uuid {
            self.0.unwrap_or_default()
        }
        fn sees_all(&self) -> bool {
            self.0.is_none()
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for Caller {
        type Rejection = ApiError;
        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
            match parts.headers.get("x-user").and_then(|v| v.to_str().ok()) {
                Some("admin") => Ok(Self(None)),
                Some(id) => Ok(Self(id.parse().ok())),
                None => Err(ApiError::Unauthorized("sign in".into())),
            }
        }
    }

    #[derive(Clone, FromRef)]
    struct AppState {
        db: PgPool,
        hub: Arc<Hub>,
    }

    fn get_stream(headers: &[(&str, &str)]) -> Request<Body> {
        let mut request = Request::get("/events?topics=topic");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.body(Body::empty()).expect("request")
    }

    #[tokio::test]
    async fn the_route_checks_the_caller_first_then_resumes_with_what_they_see() {
        let db = TestDb::with_outbox().await;
        let pool = db.pool().await;
        insert(&pool, &[1, 2, 3]).await;
        let other = Uuid::from_u128(8);
        for (id, payload) in [
            (1, json!({ "_owner": ME })),
            (2, json!({ "_owner": other })),
            (3, json!({ "userId": ME })),
        ] {
            sqlx::query("UPDATE event_outbox SET payload = $2 WHERE id = $1")
                .bind(id)
                .bind(payload.to_string())
                .execute(&pool)
                .await
                .expect("payload");
        }
        let hub = Hub::start(&pool).await.expect("hub");
        let app = router::<AppState, Caller>("/events").with_state(AppState {
            db: pool,
            hub: hub.clone(),
        });

        let anonymous = app
            .clone()
            .oneshot(get_stream(&[("last-event-id", "x")]))
            .await;
        assert_eq!(
            anonymous.expect("answer").status(),
            StatusCode::UNAUTHORIZED
        );
        let me = ME.to_string();
        let malformed = app
            .clone()
            .oneshot(get_stream(&[("x-user", &me), ("last-event-id", "x")]))
            .await;
        assert_eq!(malformed.expect("answer").status(), StatusCode::BAD_REQUEST);

        let answer = app
            .oneshot(get_stream(&[("x-user", &me), ("last-event-id", "0")]))
            .await
            .expect("answer");
        assert_eq!(answer.status(), StatusCode::OK);
        let mut body = answer.into_body().into_data_stream();
        let mut text = String::new();
        let frames = async {
            while text.matches("id: ").count() < 2 {
                let chunk = body.next().await.expect("a frame").expect("bytes");
                text.push_str(&String::from_utf8_lossy(&chunk));
            }
        };
        tokio::time::timeout(Duration::from_secs(10), frames)
            .await
            .expect("two frames in time");
        assert!(
            text.contains("id: 1\n") && text.contains("id: 3\n"),
            "{text}"
        );
        assert!(!text.contains("id: 2\n"), "{text}");
        // Shutdown ends the stream.
        hub.close();
        let ended = async { while body.next().await.is_some() {} };
        tokio::time::timeout(Duration::from_secs(10), ended)
            .await
            .expect("the stream ends");
    }
}
