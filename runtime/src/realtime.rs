//! Realtime: a Server-Sent Events stream of the outbox's events to signed-in
//! clients. One [`Hub`] per replica listens for the outbox's NOTIFY (sent by
//! every replica at commit), reads new events in id order and fans them out,
//! so a client on any replica sees every event. A client sees the events of
//! its own rows (or all, see [`Viewer`]), optionally only some topics, and
//! resumes after `Last-Event-ID` for as long as the outbox keeps its events.
//!
//! A stream outlives the check of its caller, so the hub also hears the
//! callers channel (ended sessions, changed accounts; see
//! [`crate::auth::live`]): a stream whose session ended ends, one whose role
//! changed sees from then on what the new role sees, and every stream ends
//! when its access token expires. Streams are bounded per session and per user.

use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::measure as metrics;
use crate::outbox::CHANNEL;
use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::Value;
use sqlx::postgres::{PgListener, PgPool};
use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

/// A hole in the outbox ids (a transaction that took its id but has not
/// committed yet) is waited for this long before it is passed over.
const HOLE_WAIT: Duration = Duration::from_millis(1500);
/// Events read from the outbox at a time.
const PAGE: i64 = 500;
/// Open streams one session may hold on a replica (a few tabs).
pub const STREAMS_PER_SESSION: usize = 4;
/// Open streams one account may hold on a replica, over all its sessions.
pub const STREAMS_PER_USER: usize = 16;

/// The channel on which ended sessions and changed accounts are announced.
#[cfg(feature = "identity")]
const CALLERS: Option<&str> = Some(crate::auth::live::CALLERS_CHANNEL);
#[cfg(not(feature = "identity"))]
const CALLERS: Option<&str> = None;

/// Who asks for the stream, as far as it decides what they see, in the
/// service's state `S`. The service's signed-in caller implements it:
/// extracting it is the route's access check, [`Viewer::recheck`] repeats it
/// while the stream stays open.
pub trait Viewer<S>: Sized + Send + Sync + 'static {
    /// The account whose rows and actions the viewer sees.
    fn user_id(&self) -> Uuid;
    /// The session the viewer signed in with.
    fn session_id(&self) -> Uuid;
    /// Whether the viewer sees every event (admins do).
    fn sees_all(&self) -> bool;
    /// When the viewer's credentials expire (unix seconds): the stream ends then.
    fn expires_at(&self) -> Option<i64>;
    /// Whether a notice on the callers channel may change what the viewer may see.
    fn concerned_by(&self, notice: &str) -> bool;
    /// The viewer as of now: `None` when it may no longer see anything.
    fn recheck(&self, state: &S) -> impl Future<Output = Result<Option<Self>, ApiError>> + Send;
}

/// The stream shows a signed-in caller their own rows and actions, or
/// everything to admins, for as long as its session lives and its token lasts.
#[cfg(feature = "identity")]
impl<S> Viewer<S> for crate::auth::Caller
where
    Arc<crate::auth::AuthState>: FromRef<S>,
    PgPool: FromRef<S>,
    S: Send + Sync,
{
    fn user_id(&self) -> Uuid {
        self.user_id
    }

    fn session_id(&self) -> Uuid {
        self.session_id
    }

    fn sees_all(&self) -> bool {
        self.is_admin()
    }

    fn expires_at(&self) -> Option<i64> {
        self.token_expires
    }

    fn concerned_by(&self, notice: &str) -> bool {
        crate::auth::Caller::concerned_by(self, notice)
    }

    async fn recheck(&self, state: &S) -> Result<Option<Self>, ApiError> {
        let auth = Arc::<crate::auth::AuthState>::from_ref(state);
        self.as_of_now(&auth, &PgPool::from_ref(state)).await
    }
}

/// What a stream hears of its callers.
#[derive(Debug, Clone)]
enum Notice {
    /// A payload of the callers channel.
    Caller(Arc<str>),
    /// The hub (re)connected its listener and may have missed notices: every
    /// stream checks its viewer again.
    Everyone,
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
    /// The callers channel's notices, to every stream.
    notices: broadcast::Sender<Notice>,
    /// The id of the last event fanned out.
    position: AtomicI64,
    /// Set when the service shuts down: streams end so that HTTP can stop.
    closing: watch::Sender<bool>,
    /// Open streams by session and by user.
    open: Mutex<OpenStreams>,
}

#[derive(Default)]
struct OpenStreams {
    sessions: HashMap<Uuid, usize>,
    users: HashMap<Uuid, usize>,
}

/// A stream's place under the bounds, given back when the stream ends.
struct Admitted {
    hub: Arc<Hub>,
    session_id: Uuid,
    user_id: Uuid,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        ::metrics::gauge!(metrics::REALTIME_CLIENTS).decrement(1.0);
        let mut guard = self.hub.open.lock().unwrap_or_else(PoisonError::into_inner);
        let open = &mut *guard;
        for (map, id) in [
            (&mut open.sessions, self.session_id),
            (&mut open.users, self.user_id),
        ] {
            if let Some(n) = map.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&id);
                }
            }
        }
    }
}

impl Hub {
    /// A hub positioned after the newest event: clients reach older ones by
    /// resuming.
    pub async fn start(db: &PgPool) -> Result<Arc<Self>, sqlx::Error> {
        let newest: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM event_outbox")
            .fetch_one(db)
            .await?;
        let (sender, _) = broadcast::channel(1024);
        let (notices, _) = broadcast::channel(256);
        let (closing, _) = watch::channel(false);
        Ok(Arc::new(Self {
            sender,
            notices,
            position: AtomicI64::new(newest.unwrap_or(0)),
            closing,
            open: Mutex::default(),
        }))
    }

    /// Counts a new stream of `session_id` of `user_id`, or refuses it past
    /// the bounds.
    fn admit(self: &Arc<Self>, session_id: Uuid, user_id: Uuid) -> Result<Admitted, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let of_session = open.sessions.get(&session_id).copied().unwrap_or(0);
        let of_user = open.users.get(&user_id).copied().unwrap_or(0);
        if of_session >= STREAMS_PER_SESSION || of_user >= STREAMS_PER_USER {
            metrics::Limit::RealtimeStreams.refused();
            return Err(ApiError::TooManyRequests { retry_after: 30 });
        }
        *open.sessions.entry(session_id).or_default() += 1;
        *open.users.entry(user_id).or_default() += 1;
        ::metrics::gauge!(metrics::REALTIME_CLIENTS).increment(1.0);
        Ok(Admitted {
            hub: self.clone(),
            session_id,
            user_id,
        })
    }

    /// Ends every stream (at shutdown: open streams would keep it waiting).
    pub fn close(&self) {
        let _ = self.closing.send(true);
    }

    /// Follows the outbox until `stop`: woken by NOTIFY, and every second in
    /// case a notification was missed while reconnecting. Passes the callers
    /// channel's notices to the streams as they come, before the events
    /// committed after them.
    pub async fn run(self: Arc<Self>, db: PgPool, mut stop: watch::Receiver<bool>) {
        let mut listener: Option<PgListener> = None;
        let mut hole: Option<(i64, Instant)> = None;
        while !*stop.borrow() {
            if listener.is_none() {
                listener = listen(&db).await;
                if listener.is_some() {
                    // Notices sent while no one listened are lost: check every viewer.
                    let _ = self.notices.send(Notice::Everyone);
                }
            }
            if let Err(e) = self.fan_out(&db, &mut hole).await {
                tracing::warn!(error = %e, "realtime hub could not read the outbox");
            }
            let tick = tokio::time::sleep(Duration::from_secs(1));
            match listener.as_mut() {
                // try_recv, not recv: recv would reconnect silently, losing notices.
                Some(l) => tokio::select! {
                    n = l.try_recv() => match n {
                        Ok(Some(n)) => if Some(n.channel()) == CALLERS {
                            let _ = self.notices.send(Notice::Caller(n.payload().into()));
                        },
                        Ok(None) | Err(_) => listener = None,
                    },
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

/// A listener on the outbox's channel and the callers channel.
async fn listen(db: &PgPool) -> Option<PgListener> {
    let mut l = PgListener::connect_with(db).await.ok()?;
    let channels: Vec<&str> = [Some(CHANNEL), CALLERS].into_iter().flatten().collect();
    l.listen_all(channels).await.ok()?;
    Some(l)
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
    V: Viewer<S> + FromRequestParts<S>,
{
    Router::new().route(path, get(subscribe::<S, V>))
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
    fn of<S>(viewer: &impl Viewer<S>, topics: Option<BTreeSet<String>>) -> Self {
        Self {
            user_id: viewer.user_id(),
            sees_all: viewer.sees_all(),
            topics,
        }
    }

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
/// it passes next, as long as the client stays and the viewer may see it.
pub async fn subscribe<S, V>(
    State(state): State<S>,
    State(db): State<PgPool>,
    State(hub): State<Arc<Hub>>,
    viewer: V,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError>
where
    S: Clone + Send + Sync + 'static,
    V: Viewer<S>,
{
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| ApiError::BadRequest("Last-Event-ID must be an event id".into()))?,
        ),
        None => q.last_event_id,
    };
    let topics = q.topics.map(|t| {
        t.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let admitted = hub.admit(viewer.session_id(), viewer.user_id())?;
    // Hear notices before checking the viewer once more, past any cache: a
    // change that committed since the extractor ran is seen one way or the other.
    let notices = hub.notices.subscribe();
    let viewer = viewer
        .recheck(&state)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the session has ended".into()))?;
    let audience = Audience::of(&viewer, topics);
    // Subscribe before reading the position, so nothing falls between the
    // replay and the live events.
    let live = hub.sender.subscribe();
    let position = hub.position.load(Ordering::SeqCst);
    let (tx, rx) = mpsc::channel(64);
    let stream = Stream {
        state,
        db,
        hub,
        viewer,
        audience,
        tx,
        live,
        notices,
        _admitted: admitted,
    };
    tokio::spawn(stream.run(resume, position));
    let mut res = Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    // What a viewer sees is theirs alone: no cache keeps it.
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Why a stream ended, told to the client in a last `ended` event.
const SESSION_ENDED: &str = r#"{"reason":"the session has ended"}"#;
const TOKEN_EXPIRED: &str = r#"{"reason":"the access token has expired"}"#;

/// One open stream.
struct Stream<S, V> {
    state: S,
    db: PgPool,
    hub: Arc<Hub>,
    viewer: V,
    audience: Audience,
    tx: mpsc::Sender<Result<SseEvent, Infallible>>,
    live: broadcast::Receiver<Delivered>,
    notices: broadcast::Receiver<Notice>,
    _admitted: Admitted,
}

impl<S: Send + Sync + 'static, V: Viewer<S>> Stream<S, V> {
    async fn run(mut self, resume: Option<i64>, position: i64) {
        let mut sent = resume.unwrap_or(position);
        if resume.is_some() {
            let oldest: Option<i64> = sqlx::query_scalar("SELECT min(id) FROM event_outbox")
                .fetch_one(&self.db)
                .await
                .unwrap_or(None);
            if oldest.is_some_and(|o| o > sent + 1) {
                // Events after the resume point are gone: the client must reload.
                let gone = SseEvent::default()
                    .event("resync")
                    .data(r#"{"reason":"events after Last-Event-ID are no longer kept"}"#);
                if self.tx.send(Ok(gone)).await.is_err() {
                    return;
                }
            }
        }
        // Replay what the hub already passed, then follow it.
        if !replay(&self.db, &self.audience, &self.tx, &mut sent, position).await {
            return;
        }
        let expiry = self.viewer.expires_at().map(|at| {
            let left = at.saturating_sub(chrono::Utc::now().timestamp());
            Duration::from_secs(u64::try_from(left).unwrap_or(0))
        });
        let expired = async move {
            match expiry {
                Some(left) => tokio::time::sleep(left).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        let mut closing = self.hub.closing.subscribe();
        loop {
            // Notices first: a change is applied before the events committed after it.
            tokio::select! {
                biased;
                _ = closing.changed() => return,
                () = self.tx.closed() => return,
                () = &mut expired => {
                    self.end(TOKEN_EXPIRED).await;
                    return;
                }
                notice = self.notices.recv() => {
                    let concerned = match notice {
                        Ok(Notice::Caller(n)) => self.viewer.concerned_by(&n),
                        Ok(Notice::Everyone) | Err(broadcast::error::RecvError::Lagged(_)) => true,
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    if concerned && !self.recheck().await {
                        self.end(SESSION_ENDED).await;
                        return;
                    }
                }
                next = self.live.recv() => match next {
                    Ok(e) if e.id <= sent => {}
                    Ok(e) => {
                        sent = e.id;
                        if self.audience.sees(&e) && self.tx.send(Ok(frame(&e))).await.is_err() {
                            return;
                        }
                    }
                    // Fell behind the hub: catch up from the outbox.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let upto = self.hub.position.load(Ordering::SeqCst);
                        if !replay(&self.db, &self.audience, &self.tx, &mut sent, upto).await {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    /// Checks the viewer again: false when it may see nothing any more (or
    /// cannot be checked: the stream fails closed and the client reconnects).
    async fn recheck(&mut self) -> bool {
        match self.viewer.recheck(&self.state).await {
            Ok(Some(viewer)) => {
                self.audience.sees_all = viewer.sees_all();
                self.viewer = viewer;
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "an event stream's viewer could not be checked again");
                false
            }
        }
    }

    async fn end(&self, reason: &'static str) {
        let _ = self
            .tx
            .send(Ok(SseEvent::default().event("ended").data(reason)))
            .await;
    }
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

    /// A caller named by an `x-user` header (its id, or `admin` for the
    /// admin); the state's accounts say whether it still exists and is an admin.
    #[derive(Clone)]
    struct Caller {
        id: Uuid,
        admin: bool,
        expires: Option<i64>,
    }

    const ADMIN: Uuid = Uuid::from_u128(1);

    impl Viewer<AppState> for Caller {
        fn user_id(&self) -> Uuid {
            self.id
        }
        fn session_id(&self) -> Uuid {
            self.id
        }
        fn sees_all(&self) -> bool {
            self.admin
        }
        fn expires_at(&self) -> Option<i64> {
            self.expires
        }
        fn concerned_by(&self, notice: &str) -> bool {
            notice == self.id.to_string()
        }
        async fn recheck(&self, state: &AppState) -> Result<Option<Self>, ApiError> {
            let accounts = state.accounts.lock().expect("accounts");
            Ok(accounts.get(&self.id).map(|admin| Caller {
                admin: *admin,
                ..self.clone()
            }))
        }
    }

    impl FromRequestParts<AppState> for Caller {
        type Rejection = ApiError;
        async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
            let id = match parts.headers.get("x-user").and_then(|v| v.to_str().ok()) {
                Some("admin") => ADMIN,
                Some(id) => id.parse().map_err(|_| ApiError::Forbidden)?,
                None => return Err(ApiError::Unauthorized("sign in".into())),
            };
            let expires = parts
                .headers
                .get("x-expires")
                .and_then(|v| v.to_str().ok()?.parse().ok());
            let caller = Caller {
                id,
                admin: false,
                expires,
            };
            caller
                .recheck(state)
                .await?
                .ok_or_else(|| ApiError::Unauthorized("gone".into()))
        }
    }

    #[derive(Clone, FromRef)]
    struct AppState {
        db: PgPool,
        hub: Arc<Hub>,
        accounts: Arc<Mutex<HashMap<Uuid, bool>>>,
    }

    fn get_stream(headers: &[(&str, &str)]) -> Request<Body> {
        let mut request = Request::get("/events?topics=topic");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.body(Body::empty()).expect("request")
    }

    async fn app(pool: &PgPool) -> (Router, AppState) {
        let hub = Hub::start(pool).await.expect("hub");
        let state = AppState {
            db: pool.clone(),
            hub,
            accounts: Arc::new(Mutex::new(HashMap::from([(ADMIN, true), (ME, false)]))),
        };
        let app = router::<AppState, Caller>("/events").with_state(state.clone());
        (app, state)
    }

    async fn set_payloads(pool: &PgPool, payloads: &[(i64, Value)]) {
        for (id, payload) in payloads {
            sqlx::query("UPDATE event_outbox SET payload = $2 WHERE id = $1")
                .bind(id)
                .bind(payload.to_string())
                .execute(pool)
                .await
                .expect("payload");
        }
    }

    /// The body of an open stream, read frame by frame.
    struct Body_(axum::body::BodyDataStream, String);

    impl Body_ {
        fn of(answer: Response) -> Self {
            Self(answer.into_body().into_data_stream(), String::new())
        }

        /// Reads until `until` holds of what was read, or the stream ends.
        async fn read_until(&mut self, until: impl Fn(&str) -> bool) -> &str {
            let read = async {
                while !until(&self.1) {
                    match self.0.next().await {
                        Some(chunk) => self
                            .1
                            .push_str(&String::from_utf8_lossy(&chunk.expect("bytes"))),
                        None => break,
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(10), read)
                .await
                .expect("in time");
            &self.1
        }

        async fn ended(&mut self) {
            let rest = async { while self.0.next().await.is_some() {} };
            tokio::time::timeout(Duration::from_secs(10), rest)
                .await
                .expect("the stream ends");
        }
    }

    #[tokio::test]
    async fn the_route_checks_the_caller_first_then_resumes_with_what_they_see() {
        let db = TestDb::with_outbox().await;
        let pool = db.pool().await;
        insert(&pool, &[1, 2, 3]).await;
        let other = Uuid::from_u128(8);
        set_payloads(
            &pool,
            &[
                (1, json!({ "_owner": ME })),
                (2, json!({ "_owner": other })),
                (3, json!({ "userId": ME })),
            ],
        )
        .await;
        let (app, state) = app(&pool).await;

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
        assert_eq!(answer.headers()[header::CACHE_CONTROL], "no-store");
        let mut body = Body_::of(answer);
        let text = body.read_until(|t| t.matches("id: ").count() >= 2).await;
        assert!(
            text.contains("id: 1\n") && text.contains("id: 3\n"),
            "{text}"
        );
        assert!(!text.contains("id: 2\n"), "{text}");
        // Shutdown ends the stream.
        state.hub.close();
        body.ended().await;
    }

    #[tokio::test]
    async fn streams_are_bounded_per_session_and_per_user_and_given_back() {
        let db = TestDb::with_outbox().await;
        let hub = Hub::start(&db.pool().await).await.expect("hub");
        let (session, user) = (Uuid::new_v4(), Uuid::new_v4());
        let mut held: Vec<Admitted> = (0..STREAMS_PER_SESSION)
            .map(|_| hub.admit(session, user).expect("admitted"))
            .collect();
        assert!(matches!(
            hub.admit(session, user),
            Err(ApiError::TooManyRequests { .. })
        ));
        // Other sessions of the user, up to the user's bound.
        for _ in STREAMS_PER_SESSION..STREAMS_PER_USER {
            held.push(hub.admit(Uuid::new_v4(), user).expect("admitted"));
        }
        assert!(hub.admit(Uuid::new_v4(), user).is_err());
        assert!(hub.admit(Uuid::new_v4(), Uuid::new_v4()).is_ok());
        // A stream that ends gives its place back.
        drop(held.swap_remove(0));
        assert!(hub.admit(session, user).is_ok());
        drop(held);
        let open = hub.open.lock().expect("open");
        assert!(open.sessions.is_empty() && open.users.is_empty());
    }

    #[tokio::test]
    async fn a_notice_ends_the_stream_of_a_removed_viewer_and_narrows_a_demoted_one() {
        let db = TestDb::with_outbox().await;
        let pool = db.pool().await;
        let (app, state) = app(&pool).await;
        let me = ME.to_string();
        let mine = app
            .clone()
            .oneshot(get_stream(&[("x-user", &me)]))
            .await
            .expect("answer");
        let all = app
            .oneshot(get_stream(&[("x-user", "admin")]))
            .await
            .expect("answer");
        let (mut mine, mut all) = (Body_::of(mine), Body_::of(all));

        // A notice about someone else changes nothing.
        let _ = state.hub.notices.send(Notice::Caller("someone".into()));
        // The admin is demoted: the notice comes before the events after it.
        state
            .accounts
            .lock()
            .expect("accounts")
            .insert(ADMIN, false);
        let _ = state
            .hub
            .notices
            .send(Notice::Caller(ADMIN.to_string().into()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        insert(&pool, &[1, 2]).await;
        set_payloads(
            &pool,
            &[
                (1, json!({ "_owner": ME })),
                (2, json!({ "_owner": ADMIN })),
            ],
        )
        .await;
        let mut hole = None;
        state.hub.fan_out(&pool, &mut hole).await.expect("fan out");
        let text = all.read_until(|t| t.contains("id: 2\n")).await;
        assert!(!text.contains("id: 1\n"), "no longer everyone's: {text}");
        let text = mine.read_until(|t| t.contains("id: 1\n")).await;
        assert!(!text.contains("ended"), "{text}");

        // The account goes: its stream says so and ends.
        state.accounts.lock().expect("accounts").remove(&ME);
        let _ = state.hub.notices.send(Notice::Caller(me.clone().into()));
        let text = mine.read_until(|t| t.contains("event: ended")).await;
        assert!(text.contains("the session has ended"), "{text}");
        mine.ended().await;

        // A lost listener makes every stream check again.
        state.accounts.lock().expect("accounts").remove(&ADMIN);
        let _ = state.hub.notices.send(Notice::Everyone);
        let text = all.read_until(|t| t.contains("event: ended")).await;
        assert!(text.contains("the session has ended"), "{text}");
        all.ended().await;
    }

    #[tokio::test]
    async fn a_stream_ends_when_its_token_expires() {
        let db = TestDb::with_outbox().await;
        let pool = db.pool().await;
        let (app, _state) = app(&pool).await;
        let soon = (chrono::Utc::now().timestamp() + 1).to_string();
        let answer = app
            .oneshot(get_stream(&[
                ("x-user", &ME.to_string()),
                ("x-expires", &soon),
            ]))
            .await
            .expect("answer");
        let mut body = Body_::of(answer);
        let text = body.read_until(|t| t.contains("event: ended")).await;
        assert!(text.contains("the access token has expired"), "{text}");
        body.ended().await;
    }
}
