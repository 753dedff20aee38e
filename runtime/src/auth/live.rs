//! Sessions recently found live, with their account's role, so that most
//! requests skip that query (decision live-session-cache).
//!
//! Whatever ends a session or changes an account publishes an event through
//! the outbox; the outbox shows a request's events to [`LiveSessions`] (an
//! [`event::Watcher`](crate::event::Watcher)), which marks the session or
//! account before the transaction commits and answers a NOTIFY on
//! [`CALLERS_CHANNEL`] to send in it, on which every replica forgets it
//! ([`watch_callers`]). A marked id is read from the database until its
//! notification arrives. Nothing is remembered while the listener is down.

use super::bounded::make_room;
use crate::event::{Event, Notices, Watcher};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The NOTIFY channel on which replicas hear of ended sessions and changed accounts.
pub const CALLERS_CHANNEL: &str = "auth_callers";

/// The topics on which the account object's changes are published: an
/// update or a deletion may change what its sessions may do.
#[derive(Debug, Clone, Copy)]
pub struct AccountTopics {
    pub updated: &'static str,
    pub deleted: &'static str,
}

/// A session or an account that changed, as named in a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerChange {
    Session(Uuid),
    Account(Uuid),
}

impl CallerChange {
    /// The change an outbox event stands for, if it can affect callers: an
    /// ended session (keyed by session), or any update or deletion of an
    /// account (keyed by account). New and refreshed sessions change nothing
    /// a replica remembers.
    pub fn of(event: &Event, account: &AccountTopics) -> Option<Self> {
        let id = Uuid::parse_str(&event.key).ok()?;
        if event.ends_session {
            Some(Self::Session(id))
        } else if event.topic == account.updated || event.topic == account.deleted {
            Some(Self::Account(id))
        } else {
            None
        }
    }

    pub fn to_payload(self) -> String {
        match self {
            Self::Session(id) => format!("s:{id}"),
            Self::Account(id) => format!("a:{id}"),
        }
    }

    pub fn parse(payload: &str) -> Option<Self> {
        let (kind, id) = payload.split_once(':')?;
        let id = Uuid::parse_str(id).ok()?;
        match kind {
            "s" => Some(Self::Session(id)),
            "a" => Some(Self::Account(id)),
            _ => None,
        }
    }

    fn id(self) -> Uuid {
        match self {
            Self::Session(id) | Self::Account(id) => id,
        }
    }
}

/// The cache of live sessions; see the module's documentation.
pub struct LiveSessions {
    ttl: Duration,
    account: AccountTopics,
    state: Mutex<LiveState>,
}

#[derive(Default)]
struct LiveState {
    sessions: HashMap<Uuid, LiveSession>,
    /// Changed sessions and accounts whose notification has not arrived yet,
    /// until when (a transaction that rolled back sends none).
    marked: HashMap<Uuid, Instant>,
    /// Moves on with every notification: a read that began before is not kept.
    generation: u64,
    listening: bool,
}

struct LiveSession {
    user_id: Uuid,
    role: String,
    expires_at: DateTime<Utc>,
    until: Instant,
}

/// Before an event that ends a session or changes an account commits, this
/// replica forgets it at once and the others hear of it by NOTIFY.
impl Watcher for LiveSessions {
    fn before_commit(&self, events: &[Event]) -> Option<Notices> {
        let changes: Vec<CallerChange> = events
            .iter()
            .filter_map(|e| CallerChange::of(e, &self.account))
            .collect();
        if changes.is_empty() {
            return None;
        }
        self.mark(&changes);
        Some(Notices {
            channel: CALLERS_CHANNEL,
            payloads: changes.into_iter().map(CallerChange::to_payload).collect(),
        })
    }
}

impl std::fmt::Debug for LiveSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSessions")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl LiveSessions {
    /// Bounds the memory and the cost of forgetting an account (a scan).
    const MAX: usize = 10_000;
    /// How long a mark waits for its notification.
    const MARK_TTL: Duration = Duration::from_secs(30);

    /// Remembers sessions for `ttl` (zero: never); `account` names the
    /// account object's change topics.
    pub fn new(ttl: Duration, account: AccountTopics) -> Self {
        Self {
            ttl,
            account,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The role of a live session from memory, or the generation to pass to
    /// [`Self::keep`] after reading the database.
    pub fn get(&self, session_id: Uuid, user_id: Uuid) -> Result<String, u64> {
        let state = self.state();
        let now = Instant::now();
        match state.sessions.get(&session_id) {
            Some(s)
                if s.user_id == user_id
                    && s.until > now
                    && s.expires_at > Utc::now()
                    && !state.marked(session_id, user_id, now) =>
            {
                Ok(s.role.clone())
            }
            _ => Err(state.generation),
        }
    }

    /// Remembers a session read from the database, unless a notification or a
    /// mark came since the read began.
    pub fn keep(
        &self,
        generation: u64,
        session_id: Uuid,
        user_id: Uuid,
        role: &str,
        expires_at: DateTime<Utc>,
    ) {
        let mut state = self.state();
        let now = Instant::now();
        if self.ttl.is_zero()
            || !state.listening
            || state.generation != generation
            || state.marked(session_id, user_id, now)
        {
            return;
        }
        make_room(&mut state.sessions, Self::MAX, |s| s.until > now);
        let until = now + self.ttl;
        state.sessions.insert(
            session_id,
            LiveSession {
                user_id,
                role: role.to_owned(),
                expires_at,
                until,
            },
        );
    }

    /// Forgets what `changes` name and reads them from the database until
    /// their notification arrives: called before the change commits.
    pub fn mark(&self, changes: &[CallerChange]) {
        let mut state = self.state();
        let now = Instant::now();
        state.marked.retain(|_, until| *until > now);
        for change in changes {
            state.marked.insert(change.id(), now + Self::MARK_TTL);
            state.forget(*change);
        }
    }

    /// A notification: the change committed (on this replica or another).
    fn heard(&self, change: CallerChange) {
        let mut state = self.state();
        state.marked.remove(&change.id());
        state.forget(change);
        state.generation += 1;
    }

    pub(super) fn set_listening(&self, listening: bool) {
        let mut state = self.state();
        state.listening = listening;
        state.sessions.clear();
        state.generation += 1;
    }
}

impl LiveState {
    /// Whether the session or its account changed and its notification is awaited.
    fn marked(&self, session_id: Uuid, user_id: Uuid, now: Instant) -> bool {
        [session_id, user_id]
            .iter()
            .any(|id| self.marked.get(id).is_some_and(|until| *until > now))
    }

    fn forget(&mut self, change: CallerChange) {
        match change {
            CallerChange::Session(id) => {
                self.sessions.remove(&id);
            }
            CallerChange::Account(id) => self.sessions.retain(|_, s| s.user_id != id),
        }
    }
}

/// Listens for [`CALLERS_CHANNEL`] until `stop`, so that every replica forgets
/// ended sessions and changed accounts; reconnects when the connection drops.
pub async fn watch_callers(
    db: PgPool,
    live: Arc<LiveSessions>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // Its own connection, outside the pool that requests use.
    let own = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with((*db.connect_options()).clone());
    let mut backoff = Duration::from_millis(100);
    while !*stop.borrow() {
        let listened = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&own).await?;
            listener.listen(CALLERS_CHANNEL).await?;
            live.set_listening(true);
            backoff = Duration::from_millis(100);
            // try_recv, not recv: recv would reconnect silently, losing what was sent meanwhile.
            while let Some(note) = listener.try_recv().await? {
                if let Some(change) = CallerChange::parse(note.payload()) {
                    live.heard(change);
                }
            }
            anyhow::bail!("the connection was lost")
        };
        let result: anyhow::Result<()> = tokio::select! {
            r = listened => r,
            _ = stop.changed() => Ok(()),
        };
        live.set_listening(false);
        if let Err(e) = result {
            tracing::warn!(
                error = format!("{e:#}"),
                "session listener lost; asking the database every time until it is back"
            );
            tokio::select! {
                () = tokio::time::sleep(backoff) => {},
                _ = stop.changed() => {},
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: AccountTopics = AccountTopics {
        updated: "user-updated",
        deleted: "user-deleted",
    };

    fn listening() -> LiveSessions {
        let live = LiveSessions::new(Duration::from_secs(60), ACCOUNT);
        live.set_listening(true);
        live
    }

    fn later() -> DateTime<Utc> {
        Utc::now() + chrono::Duration::hours(1)
    }

    /// Reads a session as a request does: memory, else "the database" then keep.
    fn read(live: &LiveSessions, session: Uuid, user: Uuid, role: &str) -> Option<String> {
        match live.get(session, user) {
            Ok(role) => Some(role),
            Err(generation) => {
                live.keep(generation, session, user, role, later());
                None
            }
        }
    }

    #[test]
    fn a_kept_session_is_answered_from_memory() {
        let live = listening();
        let (s, u) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(read(&live, s, u, "admin"), None);
        assert_eq!(live.get(s, u), Ok("admin".into()));
        // Another account presenting the session id is not answered.
        assert!(live.get(s, Uuid::new_v4()).is_err());
    }

    #[test]
    fn nothing_is_kept_while_not_listening_or_with_no_ttl() {
        let deaf = LiveSessions::new(Duration::from_secs(60), ACCOUNT);
        let (s, u) = (Uuid::new_v4(), Uuid::new_v4());
        read(&deaf, s, u, "user");
        assert!(deaf.get(s, u).is_err());
        let uncached = LiveSessions::new(Duration::ZERO, ACCOUNT);
        uncached.set_listening(true);
        read(&uncached, s, u, "user");
        assert!(uncached.get(s, u).is_err());
    }

    #[test]
    fn an_expired_session_is_not_answered() {
        let live = listening();
        let (s, u) = (Uuid::new_v4(), Uuid::new_v4());
        let generation = live.get(s, u).unwrap_err();
        live.keep(
            generation,
            s,
            u,
            "user",
            Utc::now() - chrono::Duration::seconds(1),
        );
        assert!(live.get(s, u).is_err());
    }

    #[test]
    fn a_read_that_began_before_a_notification_is_not_kept() {
        let live = listening();
        let (s, u) = (Uuid::new_v4(), Uuid::new_v4());
        let generation = live.get(s, u).unwrap_err();
        // The session ends (elsewhere) while this request reads the database.
        live.heard(CallerChange::Session(s));
        live.keep(generation, s, u, "user", later());
        assert!(live.get(s, u).is_err());
        // A read that begins after is kept.
        read(&live, s, u, "user");
        assert_eq!(live.get(s, u), Ok("user".into()));
    }

    #[test]
    fn a_marked_session_or_account_is_read_until_its_notification() {
        let live = listening();
        let (s, u) = (Uuid::new_v4(), Uuid::new_v4());
        read(&live, s, u, "user");
        live.mark(&[CallerChange::Account(u)]);
        // Forgotten at once, and not kept again while the mark waits.
        assert!(live.get(s, u).is_err());
        read(&live, s, u, "user");
        assert!(live.get(s, u).is_err());
        // The notification lifts the mark.
        live.heard(CallerChange::Account(u));
        read(&live, s, u, "admin");
        assert_eq!(live.get(s, u), Ok("admin".into()));
    }

    #[test]
    fn forgetting_an_account_forgets_all_its_sessions_only() {
        let live = listening();
        let (u, other) = (Uuid::new_v4(), Uuid::new_v4());
        let (s1, s2, s3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        for (s, user) in [(s1, u), (s2, u), (s3, other)] {
            read(&live, s, user, "user");
        }
        live.heard(CallerChange::Account(u));
        assert!(live.get(s1, u).is_err());
        assert!(live.get(s2, u).is_err());
        // A notification moves the generation on but leaves other accounts' sessions.
        assert_eq!(live.get(s3, other), Ok("user".into()));
    }

    #[test]
    fn losing_the_listener_forgets_everything() {
        let live = listening();
        let (s, u) = (Uuid::new_v4(), Uuid::new_v4());
        read(&live, s, u, "user");
        live.set_listening(false);
        assert!(live.get(s, u).is_err());
    }

    #[test]
    fn events_name_the_changes_that_affect_callers() {
        let id = Uuid::new_v4();
        let mut ended = Event::raw("sessions", id, "{}".into());
        ended.ends_session = true;
        assert_eq!(
            CallerChange::of(&ended, &ACCOUNT),
            Some(CallerChange::Session(id))
        );
        let updated = Event::raw("user-updated", id, "{}".into());
        assert_eq!(
            CallerChange::of(&updated, &ACCOUNT),
            Some(CallerChange::Account(id))
        );
        let deleted = Event::raw("user-deleted", id, "{}".into());
        assert_eq!(
            CallerChange::of(&deleted, &ACCOUNT),
            Some(CallerChange::Account(id))
        );
        let created = Event::raw("sessions", id, "{}".into());
        assert_eq!(CallerChange::of(&created, &ACCOUNT), None);
        let unkeyed = Event::raw("user-updated", "not a uuid", "{}".into());
        assert_eq!(CallerChange::of(&unkeyed, &ACCOUNT), None);
    }

    #[test]
    fn the_watcher_marks_and_answers_notices() {
        let live = listening();
        let (s, u) = (Uuid::new_v4(), Uuid::new_v4());
        read(&live, s, u, "user");
        let unrelated = Event::raw("books", Uuid::new_v4(), "{}".into());
        assert_eq!(live.before_commit(std::slice::from_ref(&unrelated)), None);
        let updated = Event::raw("user-updated", u, "{}".into());
        let notices = live.before_commit(&[unrelated, updated]).expect("notices");
        assert_eq!(notices.channel, CALLERS_CHANNEL);
        assert_eq!(notices.payloads, [format!("a:{u}")]);
        assert!(live.get(s, u).is_err());
    }

    #[test]
    fn payloads_round_trip() {
        let id = Uuid::new_v4();
        for change in [CallerChange::Session(id), CallerChange::Account(id)] {
            assert_eq!(CallerChange::parse(&change.to_payload()), Some(change));
        }
        for bad in ["", "s", "x:1", &format!("x:{id}"), "s:not-a-uuid"] {
            assert_eq!(CallerChange::parse(bad), None, "{bad:?}");
        }
    }
}
