//! Sessions: signing in, opening a session with its first token pair,
//! refreshing (rotation with a grace window; a later reuse revokes the
//! session), signing out, revocation and expiry, and the session event of
//! each.
//!
//! Every write puts its session events in the outbox in the same
//! transaction (or statement).

use super::caller::Caller;
use super::keys::fingerprint;
use super::state::{AuthState, Identity};
use super::throttle::{self, throttled, Limit};
use super::tokens::{self, cookie, random_token, token_hash};
use crate::envelope::{Reply, RequestContext};
use crate::error::{ApiError, FieldError};
use crate::event::Event;
use crate::measure as metrics;
use crate::outbox::{self, PgQuery};
use crate::route::{RouteInfo, ServiceInfo};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration as Span, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use std::collections::BTreeMap;
use std::net::IpAddr;
use uuid::Uuid;

/// A session as answers and events show it.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The device facts, in the order of [`Identity::device`].
    pub device: Vec<Option<String>>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The account's role when the session was read (`None`: no such account).
    pub role: Option<String>,
}

/// The tokens of a session answer, or their fingerprints in an event.
#[derive(Default)]
pub struct Tokens {
    pub access: Option<String>,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub refresh: Option<String>,
}

/// Never prints a token: a `?tokens` in a log line must not leak one.
impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("access", &crate::config::redacted(&self.access))
            .field("access_expires_at", &self.access_expires_at)
            .field("refresh", &crate::config::redacted(&self.refresh))
            .finish()
    }
}

/// What a sign-in brings besides the credentials: device facts, the client's
/// address and whether it wants cookies. A two-step sign-in keeps it with its
/// challenge.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PendingSignIn {
    /// Device facts by column.
    #[serde(flatten)]
    pub device: BTreeMap<String, Option<String>>,
    pub client_address: String,
    #[serde(default)]
    pub set_cookie: bool,
}

impl PendingSignIn {
    pub fn new<'a>(
        addr: IpAddr,
        set_cookie: bool,
        device: impl IntoIterator<Item = (&'a str, Option<String>)>,
    ) -> Self {
        Self {
            device: device
                .into_iter()
                .map(|(column, value)| (column.to_owned(), value))
                .collect(),
            client_address: addr.to_string(),
            set_cookie,
        }
    }
}

/// The longest device fact a sign-in may bring, in characters: enough for
/// any user agent or place name, small enough that a sign-in cannot store a
/// body-sized value in `sessions` and in every session event.
pub const MAX_DEVICE_FACT_CHARS: usize = 256;

impl Identity {
    /// Refuses device facts (by column, as [`PendingSignIn::new`] takes them)
    /// longer than [`MAX_DEVICE_FACT_CHARS`], naming each by its JSON name.
    pub fn check_device(&self, device: &[(&str, Option<String>)]) -> Result<(), ApiError> {
        let errors: Vec<FieldError> = device
            .iter()
            .filter(|(_, value)| {
                value
                    .as_deref()
                    .is_some_and(|v| v.chars().count() > MAX_DEVICE_FACT_CHARS)
            })
            .map(|(column, _)| {
                let name = self
                    .device
                    .iter()
                    .find(|f| f.column == *column)
                    .map_or(*column, |f| f.name);
                FieldError::new(
                    name,
                    format!("is longer than {MAX_DEVICE_FACT_CHARS} characters"),
                )
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(errors))
        }
    }
}

/// An account whose credentials were checked.
#[derive(Debug)]
pub struct SignedIn {
    pub user_id: Uuid,
    pub role: String,
    /// The sign-in needs its second factor before a session opens.
    pub second_factor: bool,
}

/// What [`AuthState::sign_in`]'s one round trip answers: the address's hits
/// and seconds left, the account's with this attempt reserved, and the
/// account's id, secret hash, role, whether it is verified and whether it
/// has a second factor.
type SignInLookup = (
    i32,
    f64,
    i32,
    f64,
    Option<Uuid>,
    Option<String>,
    Option<String>,
    Option<bool>,
    Option<bool>,
);

impl Identity {
    /// `id, user_id, <device columns>, created_at, expires_at` and the
    /// account's role: what [`Session`]s read.
    pub fn session_columns(&self) -> String {
        let mut columns = vec!["id", "user_id"];
        columns.extend(self.device.iter().map(|f| f.column));
        columns.extend(["created_at", "expires_at"]);
        format!("{}, {} AS role", columns.join(", "), self.sql.session_role)
    }

    /// What opening a session writes with its event: the session and its
    /// refresh token's hash, as WITH items before the outbox's insert, and
    /// their placeholder count (see [`SessionWrite::bind`]).
    pub fn open_session_sql(&self) -> (String, usize) {
        let n = self.device.len();
        let columns: String = self
            .device
            .iter()
            .map(|f| format!(", {}", f.column))
            .collect();
        let values: String = (0..n).map(|i| format!(", ${}", i + 3)).collect();
        let sql = format!(
            "session AS (
         INSERT INTO sessions (id, user_id{columns}, client_address, created_at, expires_at)
         VALUES ($1, $2{values}, ${}, ${}, ${})
     ),
     refresh AS (
         INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES (${}, $1, ${})
     ),
     ",
            n + 3,
            n + 4,
            n + 5,
            n + 6,
            n + 5
        );
        (sql, n + 6)
    }

    fn session(&self, row: &PgRow) -> Result<Session, sqlx::Error> {
        Ok(Session {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            device: self
                .device
                .iter()
                .map(|f| row.try_get(f.column))
                .collect::<Result<_, _>>()?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            role: row.try_get("role")?,
        })
    }

    /// The sessions a statement returns (it returns [`Self::session_columns`]).
    async fn sessions(
        &self,
        conn: &mut PgConnection,
        query: PgQuery<'_>,
    ) -> Result<Vec<Session>, ApiError> {
        let rows = query.fetch_all(conn).await?;
        Ok(rows
            .iter()
            .map(|row| self.session(row))
            .collect::<Result<_, _>>()?)
    }

    /// A session as answers show it, with its tokens.
    pub fn session_view(&self, session: &Session, tokens: &Tokens) -> Value {
        let mut view = Map::new();
        view.insert("sessionId".into(), json!(session.id));
        view.insert("userId".into(), json!(session.user_id));
        view.insert("accessToken".into(), json!(tokens.access));
        view.insert(
            "accessTokenExpiresAt".into(),
            json!(tokens.access_expires_at),
        );
        view.insert("refreshToken".into(), json!(tokens.refresh));
        view.insert("refreshTokenExpiresAt".into(), json!(session.expires_at));
        self.device_into(&mut view, session);
        view.insert("createdAt".into(), json!(session.created_at));
        view.insert("expiredAt".into(), json!(session.expires_at));
        Value::Object(view)
    }

    /// A session as its owner's list shows it: no token, ever.
    fn listed_session(
        &self,
        session: &Session,
        refreshed_at: Option<DateTime<Utc>>,
        current: Uuid,
    ) -> Value {
        let mut view = Map::new();
        view.insert("sessionId".into(), json!(session.id));
        self.device_into(&mut view, session);
        view.insert("createdAt".into(), json!(session.created_at));
        view.insert("refreshedAt".into(), json!(refreshed_at));
        view.insert("expiredAt".into(), json!(session.expires_at));
        view.insert("current".into(), json!(session.id == current));
        Value::Object(view)
    }

    fn device_into(&self, view: &mut Map<String, Value>, session: &Session) {
        for (field, value) in self.device.iter().zip(&session.device) {
            view.insert(field.name.into(), json!(value));
        }
    }

    /// The seed's session event `name` (sessionCreated, sessionUpdated,
    /// sessionDeleted): its envelope and `payload.session`. Tokens appear only
    /// as fingerprints.
    pub fn session_event(
        &self,
        session: &Session,
        name: &str,
        ctx: &RequestContext,
        tokens: &Tokens,
    ) -> Result<Event, ApiError> {
        let fp = |t: &Option<String>| {
            t.as_ref()
                .map(|t| format!("sha256:{}", fingerprint(t.as_bytes())))
        };
        let mut shown = Map::new();
        shown.insert("sessionId".into(), json!(session.id));
        shown.insert("userId".into(), json!(session.user_id));
        shown.insert("accessToken".into(), json!(fp(&tokens.access)));
        shown.insert("refreshToken".into(), json!(fp(&tokens.refresh)));
        self.device_into(&mut shown, session);
        shown.insert("createdAt".into(), json!(session.created_at));
        shown.insert("expiredAt".into(), json!(session.expires_at));
        shown.insert("role".into(), json!(session.role));
        let id = Uuid::new_v4();
        let payload = json!({
            "payload": { "session": shown },
            "id": id,
            "version": 1,
            "name": name,
            "namespace": self.session_namespace,
            "parentNamespace": null,
            "timestamp": Utc::now(),
            "clientId": null,
            "userId": session.user_id,
            "traceId": ctx.trace.trace_hex(),
            "sessionId": session.id,
        });
        let mut event = Event::new(self.session_topic, session.id, &payload)?;
        event.id = id;
        event.ends_session = name == "sessionDeleted";
        Ok(event)
    }

    /// sessionDeleted events of `sessions`.
    fn deleted(&self, sessions: &[Session], ctx: &RequestContext) -> Result<Vec<Event>, ApiError> {
        sessions
            .iter()
            .map(|s| self.session_event(s, "sessionDeleted", ctx, &Tokens::default()))
            .collect()
    }

    /// Revokes an account's live sessions (all but `except`) and publishes a
    /// sessionDeleted event for each, in the caller's transaction.
    pub async fn revoke_sessions(
        &self,
        tx: &mut PgConnection,
        ctx: &RequestContext,
        user_id: Uuid,
        except: Option<Uuid>,
        reason: &str,
    ) -> Result<(), ApiError> {
        let sql = format!(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = $3
         WHERE user_id = $1 AND revoked_at IS NULL AND ($2::uuid IS NULL OR id <> $2) RETURNING {}",
            self.session_columns()
        );
        let query = sqlx::query(&sql).bind(user_id).bind(except).bind(reason);
        let revoked = self.sessions(tx, query).await?;
        let events = self.deleted(&revoked, ctx)?;
        if !events.is_empty() {
            outbox::enqueue(tx, ctx, &events).await?;
        }
        Ok(())
    }

    /// Publishes sessionUpdated, with the account's role as `tx` has it now,
    /// for each live session of `user_id`, in the caller's transaction: a
    /// role change reaches the services that trust this one while its users
    /// stay signed in (decision role-changes).
    pub async fn publish_role(
        &self,
        tx: &mut PgConnection,
        ctx: &RequestContext,
        user_id: Uuid,
    ) -> Result<(), ApiError> {
        let sql = format!(
            "SELECT {} FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() ORDER BY created_at, id",
            self.session_columns()
        );
        let live = self.sessions(tx, sqlx::query(&sql).bind(user_id)).await?;
        let events = live
            .iter()
            .map(|s| self.session_event(s, "sessionUpdated", ctx, &Tokens::default()))
            .collect::<Result<Vec<_>, _>>()?;
        if !events.is_empty() {
            outbox::enqueue(tx, ctx, &events).await?;
        }
        Ok(())
    }

    /// Ends up to 500 expired sessions with their sessionDeleted events,
    /// prunes what can no longer be used (see [`PRUNE_SQL`]) and, with
    /// one-time codes, drops codes spent or expired a day ago (kept until then
    /// for support), in one transaction; answers how many sessions ended.
    pub async fn sweep_once(
        &self,
        db: &PgPool,
        service: &'static ServiceInfo,
    ) -> Result<usize, ApiError> {
        let mut tx = db.begin().await?;
        let ctx = RequestContext::system(service);
        let sql = format!(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = 'expired'
         WHERE id IN (SELECT id FROM sessions WHERE revoked_at IS NULL AND expires_at <= now() LIMIT 500 FOR UPDATE SKIP LOCKED)
         RETURNING {}",
            self.session_columns()
        );
        let expired = self.sessions(&mut tx, sqlx::query(&sql)).await?;
        for prune in PRUNE_SQL {
            sqlx::query(prune).execute(&mut *tx).await?;
        }
        if self.flows.is_some() {
            sqlx::query(
                "DELETE FROM verification_codes WHERE expires_at < now() - interval '1 day'",
            )
            .execute(&mut *tx)
            .await?;
        }
        let events = self.deleted(&expired, &ctx)?;
        if !events.is_empty() {
            outbox::enqueue(&mut tx, &ctx, &events).await?;
        }
        tx.commit().await?;
        Ok(events.len())
    }

    /// Sweeps (see [`Self::sweep_once`]) every 30 seconds until `stop`,
    /// logging failures.
    pub async fn sweep_expired(
        &self,
        db: PgPool,
        service: &'static ServiceInfo,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        while !*stop.borrow() {
            if let Err(e) = self.sweep_once(&db, service).await {
                tracing::warn!(error = %e, "sweeping expired sessions failed");
            }
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(30)) => {},
                _ = stop.changed() => {},
            }
        }
    }
}

/// What the sweeper deletes, in order, so that the tables stop growing with
/// every sign-in and every client address: refresh tokens that expired or
/// whose session ended (either is refused like an unknown token, so reuse
/// detection loses nothing), sessions that ended a day ago (kept until then
/// for support) once their tokens are gone, and throttle buckets whose window
/// began a day ago (no window is that long).
pub const PRUNE_SQL: [&str; 3] = [
    "DELETE FROM refresh_tokens WHERE token_hash IN (SELECT r.token_hash FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id
     WHERE r.expires_at <= now() OR s.revoked_at IS NOT NULL LIMIT 5000)",
    "DELETE FROM sessions WHERE id IN (SELECT s.id FROM sessions s WHERE s.revoked_at < now() - interval '1 day'
     AND NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.session_id = s.id) LIMIT 500)",
    "DELETE FROM throttle_buckets WHERE bucket IN (SELECT bucket FROM throttle_buckets WHERE window_start < now() - interval '1 day' LIMIT 5000)",
];

/// Which of the caller's sessions a user ends.
#[derive(Debug, Clone, Copy)]
pub enum OwnSessions {
    One(Uuid),
    AllButCurrent,
}

/// A session about to open: its answer, its event and its write.
#[derive(Debug)]
struct Opening {
    /// The request, as made in the new session.
    ctx: RequestContext,
    /// sessionCreated, written with [`Self::write`].
    event: Event,
    session: Session,
    tokens: Tokens,
    reply: Reply,
    address: String,
    set_cookie: bool,
}

/// The values of a session's write, bound in the order of
/// [`Identity::open_session_sql`]'s placeholders.
#[derive(Debug)]
struct SessionWrite {
    session: Session,
    address: String,
    refresh_hash: String,
}

impl SessionWrite {
    fn bind<'q>(self, q: PgQuery<'q>) -> PgQuery<'q> {
        let Self {
            session,
            address,
            refresh_hash,
        } = self;
        let q = q.bind(session.id).bind(session.user_id);
        let q = session.device.into_iter().fold(q, |q, value| q.bind(value));
        q.bind(address)
            .bind(session.created_at)
            .bind(session.expires_at)
            .bind(refresh_hash)
    }
}

impl Opening {
    /// The session's write, to bind after the outbox's own placeholders.
    fn write(&self) -> SessionWrite {
        SessionWrite {
            session: self.session.clone(),
            address: self.address.clone(),
            refresh_hash: token_hash(self.tokens.refresh.as_deref().unwrap_or_default()),
        }
    }
}

/// A refresh token as presented, with its session's state: the session,
/// when the token was spent, when it expires, the account, when the session
/// was revoked, and the sealed pair it was spent for.
type PresentedToken = (
    Uuid,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
    Uuid,
    Option<DateTime<Utc>>,
    Option<Vec<u8>>,
);

/// A refresh token from the body, or from the refresh cookie (then the answer
/// renews the cookies).
struct PresentedRefresh {
    token: String,
    from_cookie: bool,
}

/// Never prints the token.
impl std::fmt::Debug for PresentedRefresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedRefresh")
            .field("token", &"***")
            .field("from_cookie", &self.from_cookie)
            .finish()
    }
}

/// What a refresh did in its transaction.
#[derive(Debug)]
enum Refreshed {
    /// A spent token came back after the grace window: its session is
    /// revoked, and `events` say so.
    Reused {
        ctx: RequestContext,
        events: Vec<Event>,
    },
    /// A new token pair.
    Renewed(Box<Renewal>),
}

/// A session's new token pair.
#[derive(Debug)]
struct Renewal {
    /// The request, as made in the session.
    ctx: RequestContext,
    /// sessionUpdated.
    events: Vec<Event>,
    session: Session,
    tokens: Tokens,
    reply: Reply,
    from_cookie: bool,
}

/// The answer to a refresh token that is unknown, spent, expired or revoked.
fn refresh_refused() -> ApiError {
    ApiError::Unauthorized("the refresh token is not valid".into())
}

impl AuthState {
    /// Checks an account's credentials: throttled per client address and per
    /// account, the same answer in about the same time for a wrong secret and
    /// an unknown account, and (with one-time codes) a confirmed account.
    pub async fn sign_in(
        &self,
        db: &PgPool,
        login: &str,
        secret: String,
        addr: IpAddr,
    ) -> Result<SignedIn, ApiError> {
        let limits = &self.limits;
        let account_bucket = format!("signin:account:{}", fingerprint(login.as_bytes()));
        // One round trip: the address's hit counted, the account's hits read, the account looked up.
        let (
            address_hits,
            address_left,
            account_hits,
            account_left,
            user_id,
            hash,
            role,
            verified,
            second_factor,
        ): SignInLookup = sqlx::query_as(&self.sign_in_sql)
            .bind(login)
            .bind(format!("signin:address:{}", throttle::address_key(addr)))
            .bind(&account_bucket)
            .bind(f64::from(limits.window_secs))
            .fetch_one(db)
            .await?;
        throttled(
            address_hits,
            address_left,
            i64::from(limits.login_per_address) + 1,
            Limit::SignInPerAddress,
        )?;
        // The attempt is already counted (reserved); success gives it back.
        throttled(
            account_hits,
            account_left,
            i64::from(limits.login_per_account) + 1,
            Limit::SignInPerAccount,
        )?;
        let account = match (user_id, hash, role, verified, second_factor) {
            (Some(user_id), Some(hash), Some(role), Some(verified), Some(second_factor)) => {
                Some((user_id, hash, role, verified, second_factor))
            }
            _ => None,
        };
        let hash = account
            .as_ref()
            .map_or_else(|| self.dummy_hash.clone(), |a| a.1.clone());
        let secret_ok = self.verify_secret(hash, secret).await?;
        let account = account.filter(|_| secret_ok);
        tracing::info!(account = %fingerprint(login.as_bytes()), address = %addr, success = account.is_some(), "sign-in attempt");
        let identity = self.identity;
        let Some((user_id, _, role, verified, second_factor)) = account else {
            return Err(ApiError::Unauthorized(format!(
                "the {} or the {} is wrong",
                identity.login_field, identity.password_field
            )));
        };
        throttle::refund(db, &account_bucket).await?;
        let flows = identity.flows.as_ref();
        if flows.is_some_and(|f| f.require_verified) && !verified {
            return Err(ApiError::Denied {
                code: "NOT_VERIFIED",
                message: format!("confirm the account's {} first", identity.login_field),
            });
        }
        Ok(SignedIn {
            user_id,
            role,
            second_factor: flows.is_some_and(|f| f.second_factor_required) || second_factor,
        })
    }

    /// A new token pair for `session`: a signed access token and a random refresh token.
    fn new_tokens(&self, session: &Session, role: &str) -> Result<Tokens, ApiError> {
        let (access, access_expires_at) = tokens::sign(
            &self.key,
            self.identity.tokens,
            session.user_id,
            session.id,
            role,
            self.limits.access_ttl_secs,
        )?;
        Ok(Tokens {
            access: Some(access),
            access_expires_at: Some(access_expires_at),
            refresh: Some(random_token()?),
        })
    }

    /// Opens a session for an account whose credentials were checked: stores
    /// it with its refresh token and queues sessionCreated, in one statement
    /// on `conn` (a caller's transaction commits it), and answers the token
    /// pair (with the session cookies when the sign-in asked for them).
    pub async fn open_session(
        &self,
        conn: &mut PgConnection,
        ctx: &RequestContext,
        user_id: Uuid,
        role: &str,
        pending: PendingSignIn,
        route: &'static RouteInfo,
    ) -> Result<Response, ApiError> {
        let opening = self.prepare_session(ctx, user_id, role, pending, route)?;
        let (sql, params) = &self.open_session_sql;
        let write = opening.write();
        let event = std::slice::from_ref(&opening.event);
        outbox::enqueue_after(conn, &opening.ctx, event, sql, *params, move |q| {
            write.bind(q)
        })
        .await?;
        Ok(self.opened(opening))
    }

    /// A session's token pair, answer and sessionCreated event, before its
    /// one write. The times are taken here (to the microsecond, as stored) so
    /// that the answer and the event exist before the write.
    fn prepare_session(
        &self,
        ctx: &RequestContext,
        user_id: Uuid,
        role: &str,
        mut pending: PendingSignIn,
        route: &'static RouteInfo,
    ) -> Result<Opening, ApiError> {
        let created_at = Utc::now().trunc_subsecs(6);
        let session = Session {
            id: Uuid::new_v4(),
            user_id,
            device: self
                .identity
                .device
                .iter()
                .map(|f| pending.device.remove(f.column).flatten())
                .collect(),
            created_at,
            expires_at: created_at
                + Span::seconds(
                    self.limits
                        .renewal_secs()
                        .min(self.limits.session_lifetime_secs),
                ),
            role: Some(role.to_owned()),
        };
        let ctx = ctx.signed_in(user_id, session.id);
        let tokens = self.new_tokens(&session, role)?;
        let reply = ctx.reply(
            route,
            StatusCode::OK,
            &self
                .identity
                .session_view(&session, &self.shown(&tokens, pending.set_cookie)),
        )?;
        let event = self
            .identity
            .session_event(&session, "sessionCreated", &ctx, &tokens)?;
        Ok(Opening {
            ctx,
            event,
            session,
            tokens,
            reply,
            address: pending.client_address,
            set_cookie: pending.set_cookie,
        })
    }

    /// The tokens an answer's body shows: none when they travel in the
    /// session cookies (`cookies`, and the model has them), so that a script
    /// that can read the CSRF cookie cannot read the tokens from the body.
    fn shown(&self, tokens: &Tokens, cookies: bool) -> Tokens {
        let in_cookies = cookies && self.identity.transport.cookies.is_some();
        Tokens {
            access: tokens.access.clone().filter(|_| !in_cookies),
            access_expires_at: tokens.access_expires_at,
            refresh: tokens.refresh.clone().filter(|_| !in_cookies),
        }
    }

    /// The answer of an opened session, with its cookies when asked for.
    fn opened(&self, opening: Opening) -> Response {
        self.answer(
            &opening.session,
            &opening.tokens,
            opening.reply,
            opening.set_cookie,
        )
    }

    /// `reply`, with the session cookies of a fresh token pair when `cookies`
    /// (and the model has cookies).
    fn answer(&self, session: &Session, tokens: &Tokens, reply: Reply, cookies: bool) -> Response {
        let Some(jar) = self.identity.transport.cookies.as_ref().filter(|_| cookies) else {
            return reply.into_response();
        };
        let refresh_age = (session.expires_at - Utc::now()).num_seconds().max(0);
        let set = jar.issued(
            tokens.access.as_deref().unwrap_or_default(),
            self.limits.access_ttl_secs,
            tokens.refresh.as_deref().unwrap_or_default(),
            refresh_age,
            &tokens::csrf_token(&self.key, session.id),
        );
        (set, reply).into_response()
    }

    /// Spends the refresh token (the body's, else with cookies the refresh
    /// cookie's) and answers a new pair; a refresh by cookie renews the
    /// cookies. A spent token used again within the grace window gets the
    /// pair it was spent for (two tabs); later, the reuse revokes the session.
    pub async fn refresh(
        &self,
        db: &PgPool,
        ctx: &RequestContext,
        body: Option<String>,
        headers: &HeaderMap,
        route: &'static RouteInfo,
    ) -> Result<Response, ApiError> {
        let presented = self.presented_refresh(body, headers)?;
        let mut tx = metrics::begin(db).await?;
        match self.renew(&mut tx, ctx, &presented, headers, route).await? {
            Refreshed::Reused { ctx, events } => {
                outbox::enqueue(&mut tx, &ctx, &events).await?;
                tx.commit().await?;
                Err(refresh_refused())
            }
            Refreshed::Renewed(renewal) => {
                if !renewal.events.is_empty() {
                    outbox::enqueue(&mut tx, &renewal.ctx, &renewal.events).await?;
                }
                tx.commit().await?;
                Ok(self.renewed(*renewal))
            }
        }
    }

    /// The refresh token of a refresh request: the body's, else (with
    /// cookies) the refresh cookie's.
    fn presented_refresh(
        &self,
        body: Option<String>,
        headers: &HeaderMap,
    ) -> Result<PresentedRefresh, ApiError> {
        if let Some(token) = body.filter(|t| !t.is_empty()) {
            return Ok(PresentedRefresh {
                token,
                from_cookie: false,
            });
        }
        let Some(cookies) = self.identity.transport.cookies.as_ref() else {
            return Err(ApiError::Validation(vec![FieldError::new(
                "refreshToken",
                "is required",
            )]));
        };
        match cookie(headers, cookies.refresh) {
            Some(token) => Ok(PresentedRefresh {
                token,
                from_cookie: true,
            }),
            None => Err(ApiError::Validation(vec![FieldError::new(
                "refreshToken",
                format!("is required (or the {} cookie)", cookies.refresh),
            )])),
        }
    }

    /// Spends the refresh token and renews the session, in `tx`.
    async fn renew(
        &self,
        tx: &mut PgConnection,
        ctx: &RequestContext,
        presented: &PresentedRefresh,
        headers: &HeaderMap,
        route: &'static RouteInfo,
    ) -> Result<Refreshed, ApiError> {
        let identity = self.identity;
        let hashed = token_hash(&presented.token);
        let found: Option<PresentedToken> = sqlx::query_as(
            "SELECT r.session_id, r.spent_at, r.expires_at, s.user_id, s.revoked_at, r.successor FROM refresh_tokens r
         JOIN sessions s ON s.id = r.session_id WHERE r.token_hash = $1 FOR UPDATE OF r, s",
        )
        .bind(&hashed)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((session_id, spent_at, expires_at, user_id, revoked_at, successor)) = found else {
            return Err(refresh_refused());
        };
        if revoked_at.is_some() || expires_at <= Utc::now() {
            return Err(refresh_refused());
        }
        if let Some(cookies) = identity.transport.cookies.as_ref() {
            if presented.from_cookie {
                cookies.check_csrf(&self.key, headers, session_id)?;
            }
        }
        let ctx = ctx.signed_in(user_id, session_id);
        let columns = identity.session_columns();
        if let Some(spent) = spent_at {
            if Utc::now() - spent > Span::seconds(self.limits.refresh_grace_secs) {
                tracing::warn!(session = %session_id, "a spent refresh token was used again: revoking the session");
                sqlx::query("UPDATE sessions SET revoked_at = now(), revoked_reason = 'refresh token reuse' WHERE id = $1 AND revoked_at IS NULL")
                    .bind(session_id)
                    .execute(&mut *tx)
                    .await?;
                let sql = format!("SELECT {columns} FROM sessions WHERE id = $1");
                let revoked = identity
                    .sessions(tx, sqlx::query(&sql).bind(session_id))
                    .await?;
                let events = identity.deleted(&revoked, &ctx)?;
                return Ok(Refreshed::Reused { ctx, events });
            }
            // Inside the grace window (two tabs, a retried request) the
            // answer is the pair this token was already spent for: no new
            // pair, no second sessionUpdated.
            let successor = successor
                .and_then(|sealed| tokens::open_successor(&presented.token, &sealed))
                .ok_or_else(refresh_refused)?;
            let sql = format!("SELECT {columns} FROM sessions WHERE id = $1");
            let session = identity
                .sessions(tx, sqlx::query(&sql).bind(session_id))
                .await?
                .pop()
                .ok_or_else(refresh_refused)?;
            let tokens = Tokens {
                access: Some(successor.access),
                access_expires_at: Some(successor.access_expires_at),
                refresh: Some(successor.refresh),
            };
            return self.renewal(ctx, session, tokens, Vec::new(), presented, route);
        }
        let live: Option<(String, DateTime<Utc>)> = sqlx::query_as(identity.sql.caller)
            .bind(session_id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some((role, _)) = live else {
            return Err(refresh_refused());
        };
        // The idle limit moves with each refresh; the absolute lifetime from
        // the sign-in does not. The caller check and the live-session cache
        // read expires_at, so no request writes, and the sweeper ends the
        // session with its sessionDeleted event.
        let sql = format!(
            "UPDATE sessions SET refreshed_at = now(),
             expires_at = LEAST(now() + make_interval(secs => $2), created_at + make_interval(secs => $3))
             WHERE id = $1 RETURNING {columns}"
        );
        let query = sqlx::query(&sql)
            .bind(session_id)
            .bind(self.limits.renewal_secs() as f64)
            .bind(self.limits.session_lifetime_secs as f64);
        let session = identity
            .sessions(tx, query)
            .await?
            .pop()
            .ok_or(sqlx::Error::RowNotFound)?;
        let tokens = self.new_tokens(&session, &role)?;
        let sealed = tokens::seal_successor(
            &presented.token,
            &tokens::Successor {
                access: tokens.access.clone().unwrap_or_default(),
                access_expires_at: tokens.access_expires_at.unwrap_or(session.expires_at),
                refresh: tokens.refresh.clone().unwrap_or_default(),
            },
        )?;
        sqlx::query(
            "UPDATE refresh_tokens SET spent_at = now(), successor = $2 WHERE token_hash = $1",
        )
        .bind(&hashed)
        .bind(sealed)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(token_hash(tokens.refresh.as_deref().unwrap_or_default()))
        .bind(session.id)
        .bind(session.expires_at)
        .execute(&mut *tx)
        .await?;
        let events = vec![identity.session_event(&session, "sessionUpdated", &ctx, &tokens)?];
        self.renewal(ctx, session, tokens, events, presented, route)
    }

    /// A renewal answering `tokens` for `session`, with `events` to publish.
    fn renewal(
        &self,
        ctx: RequestContext,
        session: Session,
        tokens: Tokens,
        events: Vec<Event>,
        presented: &PresentedRefresh,
        route: &'static RouteInfo,
    ) -> Result<Refreshed, ApiError> {
        let reply = ctx.reply(
            route,
            StatusCode::OK,
            &self
                .identity
                .session_view(&session, &self.shown(&tokens, presented.from_cookie)),
        )?;
        Ok(Refreshed::Renewed(Box::new(Renewal {
            ctx,
            events,
            session,
            tokens,
            reply,
            from_cookie: presented.from_cookie,
        })))
    }

    /// The answer of a renewed session; a refresh by cookie renews the cookies.
    fn renewed(&self, renewal: Renewal) -> Response {
        self.answer(
            &renewal.session,
            &renewal.tokens,
            renewal.reply,
            renewal.from_cookie,
        )
    }

    /// Ends the caller's session; its access token stops working at once.
    pub async fn sign_out(
        &self,
        db: &PgPool,
        ctx: &RequestContext,
        caller: &Caller,
        route: &'static RouteInfo,
    ) -> Result<Response, ApiError> {
        let identity = self.identity;
        let mut tx = metrics::begin(db).await?;
        let ctx = ctx.signed_in(caller.user_id, caller.session_id);
        let sql = format!(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = 'signed out' WHERE id = $1 AND revoked_at IS NULL RETURNING {}",
            identity.session_columns()
        );
        let session = identity
            .sessions(&mut tx, sqlx::query(&sql).bind(caller.session_id))
            .await?
            .pop()
            .ok_or_else(|| ApiError::Unauthorized("the session has ended".into()))?;
        let none = Tokens::default();
        let reply = ctx.reply(
            route,
            StatusCode::OK,
            &identity.session_view(&session, &none),
        )?;
        let event = identity.session_event(&session, "sessionDeleted", &ctx, &none)?;
        outbox::enqueue(&mut tx, &ctx, &[event]).await?;
        tx.commit().await?;
        Ok(self.signed_out(reply))
    }

    /// The caller's live sessions, newest first: device facts, createdAt,
    /// refreshedAt and expiredAt, and which one is the caller's; never tokens.
    pub async fn list_sessions(
        &self,
        db: &PgPool,
        ctx: &RequestContext,
        caller: &Caller,
        route: &'static RouteInfo,
    ) -> Result<Reply, ApiError> {
        let identity = self.identity;
        let ctx = ctx.signed_in(caller.user_id, caller.session_id);
        let sql = format!(
            "SELECT {}, refreshed_at FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
             ORDER BY created_at DESC, id",
            identity.session_columns()
        );
        let rows = sqlx::query(&sql).bind(caller.user_id).fetch_all(db).await?;
        let listed = rows
            .iter()
            .map(|row| {
                let session = identity.session(row)?;
                let refreshed_at: Option<DateTime<Utc>> = row.try_get("refreshed_at")?;
                Ok(identity.listed_session(&session, refreshed_at, caller.session_id))
            })
            .collect::<Result<Vec<Value>, sqlx::Error>>()?;
        ctx.reply(route, StatusCode::OK, &listed)
    }

    /// Ends the caller's sessions `which`, each with its sessionDeleted
    /// event. Ending one answers it without tokens (404 for a session that
    /// is not the caller's or not live); ending all others answers how many
    /// ended.
    pub async fn end_sessions(
        &self,
        db: &PgPool,
        ctx: &RequestContext,
        caller: &Caller,
        which: OwnSessions,
        route: &'static RouteInfo,
    ) -> Result<Reply, ApiError> {
        let identity = self.identity;
        let ctx = ctx.signed_in(caller.user_id, caller.session_id);
        let (one, except) = match which {
            OwnSessions::One(id) => (Some(id), None),
            OwnSessions::AllButCurrent => (None, Some(caller.session_id)),
        };
        let mut tx = metrics::begin(db).await?;
        let sql = format!(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = 'ended by the user'
             WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
             AND ($2::uuid IS NULL OR id = $2) AND ($3::uuid IS NULL OR id <> $3) RETURNING {}",
            identity.session_columns()
        );
        let query = sqlx::query(&sql)
            .bind(caller.user_id)
            .bind(one)
            .bind(except);
        let ended = identity.sessions(&mut tx, query).await?;
        let answer = match which {
            OwnSessions::One(_) => {
                let session = ended.first().ok_or(ApiError::NotFound)?;
                identity.listed_session(session, None, caller.session_id)
            }
            OwnSessions::AllButCurrent => json!({ "ended": ended.len() }),
        };
        let reply = ctx.reply(route, StatusCode::OK, &answer)?;
        let events = identity.deleted(&ended, &ctx)?;
        if !events.is_empty() {
            outbox::enqueue(&mut tx, &ctx, &events).await?;
        }
        tx.commit().await?;
        Ok(reply)
    }

    /// Revokes an account's live sessions (see [`Identity::revoke_sessions`]).
    pub async fn revoke_sessions(
        &self,
        tx: &mut PgConnection,
        ctx: &RequestContext,
        user_id: Uuid,
        except: Option<Uuid>,
        reason: &str,
    ) -> Result<(), ApiError> {
        self.identity
            .revoke_sessions(tx, ctx, user_id, except, reason)
            .await
    }

    /// Publishes the account's new role to its live sessions (see [`Identity::publish_role`]).
    pub async fn role_changed(
        &self,
        tx: &mut PgConnection,
        ctx: &RequestContext,
        user_id: Uuid,
    ) -> Result<(), ApiError> {
        self.identity.publish_role(tx, ctx, user_id).await
    }

    /// The answer of a sign-out, expiring the session cookies when the model has them.
    fn signed_out(&self, reply: Reply) -> Response {
        match self.identity.transport.cookies.as_ref() {
            Some(cookies) => (cookies.cleared(), reply).into_response(),
            None => reply.into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::state::tests::{test_state, IDENTITY};
    use crate::route::{Access, ServiceInfo};
    use axum::http::{header, HeaderValue};
    use sqlx::{Arguments, Execute};

    static SERVICE: ServiceInfo = ServiceInfo {
        app_version: "1.0.0",
        body_limit_bytes: 1024,
        constraints: &[],
    };

    #[test]
    fn debug_output_never_shows_a_token() {
        let tokens = Tokens {
            access: Some("access-token-value".into()),
            access_expires_at: None,
            refresh: Some("refresh-token-value".into()),
        };
        let presented = PresentedRefresh {
            token: "presented-refresh-value".into(),
            from_cookie: true,
        };
        let shown = format!("{tokens:?} {presented:?}");
        for secret in [
            "access-token-value",
            "refresh-token-value",
            "presented-refresh-value",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("from_cookie: true"), "{shown}");
    }

    static SIGN_IN: RouteInfo = RouteInfo {
        name: "signIn",
        data_name: "session",
        method: "POST",
        action: "login",
        topic: None,
        access: Access::Public,
    };

    fn session() -> Session {
        let created_at = Utc::now().trunc_subsecs(6);
        Session {
            id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            device: vec![Some("phone".into()), None],
            created_at,
            expires_at: created_at + Span::hours(1),
            role: Some("user".into()),
        }
    }

    fn pending(set_cookie: bool) -> PendingSignIn {
        PendingSignIn::new(
            IpAddr::from([192, 0, 2, 1]),
            set_cookie,
            [("device_name", Some("phone".to_string())), ("city", None)],
        )
    }

    fn open(state: &AuthState, user: Uuid, role: &str, pending: PendingSignIn) -> Opening {
        let ctx = RequestContext::system(&SERVICE);
        state
            .prepare_session(&ctx, user, role, pending, &SIGN_IN)
            .expect("opened")
    }

    #[test]
    fn device_facts_past_the_bound_are_refused_by_name() {
        let fits = "d".repeat(MAX_DEVICE_FACT_CHARS);
        assert!(IDENTITY
            .check_device(&[("device_name", Some(fits.clone())), ("city", None)])
            .is_ok());
        let long = format!("{fits}d");
        let Err(ApiError::Validation(errors)) =
            IDENTITY.check_device(&[("device_name", Some(long.clone())), ("city", Some(long))])
        else {
            panic!("too long facts are refused");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["deviceName", "city"]);
    }

    #[test]
    fn sessions_read_their_device_columns() {
        assert_eq!(
            IDENTITY.session_columns(),
            "id, user_id, device_name, city, created_at, expires_at, NULL::text AS role"
        );
    }

    #[test]
    fn opening_a_session_binds_every_placeholder_in_order() {
        let (sql, params) = IDENTITY.open_session_sql();
        assert_eq!(params, 8);
        assert!(sql.contains("INSERT INTO sessions (id, user_id, device_name, city, client_address, created_at, expires_at)"));
        assert!(sql.contains("VALUES ($1, $2, $3, $4, $5, $6, $7)"));
        assert!(sql.contains("VALUES ($8, $1, $7)"));
        assert!(sql.trim_end().ends_with(','), "WITH items end with a comma");
        let state = test_state();
        let opening = open(&state, Uuid::new_v4(), "user", pending(false));
        let mut query = opening.write().bind(sqlx::query(&sql));
        let arguments = query.take_arguments().expect("bound").expect("arguments");
        assert_eq!(arguments.len(), params);
    }

    #[test]
    fn an_opened_session_answers_its_tokens_and_device() {
        let state = test_state();
        let user = Uuid::new_v4();
        let opening = open(&state, user, "admin", pending(false));
        assert_eq!(opening.ctx.user_id, Some(user));
        assert_eq!(opening.ctx.session_id, Some(opening.session.id.to_string()));
        assert_eq!(opening.session.device, [Some("phone".to_string()), None]);
        assert!(!opening.event.ends_session);
        let reply: Value = serde_json::from_str(opening.reply.json()).expect("JSON");
        let data = &reply[SIGN_IN.data_name];
        assert_eq!(data["deviceName"], "phone");
        assert_eq!(data["city"], Value::Null);
        assert_eq!(data["userId"], json!(user));
        let access = data["accessToken"].as_str().expect("an access token");
        let facts = tokens::verify(&state.key, IDENTITY.tokens, access).expect("a valid token");
        assert_eq!(facts.session_id, opening.session.id);
        assert_eq!(data["refreshToken"].as_str().map(str::len), Some(43));
        let response = state.opened(opening);
        assert!(response.headers().get(header::SET_COOKIE).is_none());
    }

    #[test]
    fn a_session_opens_for_the_shortest_of_its_limits() {
        let mut state = test_state();
        let opening = open(&state, Uuid::new_v4(), "user", pending(false));
        let lives = opening.session.expires_at - opening.session.created_at;
        assert_eq!(lives.num_seconds(), state.limits.session_idle_secs);
        state.limits.session_lifetime_secs = 60;
        let opening = open(&state, Uuid::new_v4(), "user", pending(false));
        let lives = opening.session.expires_at - opening.session.created_at;
        assert_eq!(lives.num_seconds(), 60);
    }

    #[test]
    fn a_cookie_sign_in_gets_the_session_cookies() {
        let state = test_state();
        let opening = open(&state, Uuid::new_v4(), "user", pending(true));
        let session_id = opening.session.id;
        // In cookie mode the body shows no token: only the cookies carry them.
        let reply: Value = serde_json::from_str(opening.reply.json()).expect("JSON");
        let data = &reply[SIGN_IN.data_name];
        assert_eq!(
            (&data["accessToken"], &data["refreshToken"]),
            (&Value::Null, &Value::Null)
        );
        assert!(data["accessTokenExpiresAt"].is_string());
        let response = state.opened(opening);
        let cookies: Vec<&str> = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(cookies.len(), 3);
        assert!(cookies[0].starts_with("svc-access=ey"));
        assert!(cookies[1].contains("Path=/v1/refresh"));
        let csrf = tokens::csrf_token(&state.key, session_id);
        assert!(cookies[2].starts_with(&format!("svc-csrf={csrf};")));
    }

    #[test]
    fn session_events_show_token_fingerprints_only() {
        let s = session();
        let ctx = RequestContext::system(&SERVICE);
        let tokens = Tokens {
            access: Some("access".into()),
            access_expires_at: None,
            refresh: Some("refresh".into()),
        };
        let created = IDENTITY
            .session_event(&s, "sessionCreated", &ctx, &tokens)
            .expect("an event");
        assert_eq!(
            (created.topic, created.key.clone()),
            ("svc.sessions", s.id.to_string())
        );
        assert!(!created.ends_session);
        let payload: Value = serde_json::from_str(&created.payload).expect("JSON");
        assert_eq!(payload["id"], json!(created.id));
        assert_eq!(payload["namespace"], "svc");
        assert_eq!(payload["traceId"], json!(ctx.trace.trace_hex()));
        assert_eq!(ctx.trace.trace_hex().len(), 32);
        let shown = &payload["payload"]["session"];
        assert_eq!(
            shown["accessToken"],
            format!("sha256:{}", fingerprint(b"access"))
        );
        assert_eq!(
            shown["refreshToken"],
            format!("sha256:{}", fingerprint(b"refresh"))
        );
        assert_eq!(shown["deviceName"], "phone");
        assert_eq!(shown["role"], "user");
        assert!(!created.payload.contains("\"access\""));
        let deleted = IDENTITY
            .session_event(&s, "sessionDeleted", &ctx, &Tokens::default())
            .expect("an event");
        assert!(deleted.ends_session);
    }

    #[test]
    fn listed_sessions_show_device_facts_and_times_but_no_token() {
        let s = session();
        let listed = IDENTITY.listed_session(&s, None, s.id);
        // Sorted: serde_json keeps insertion order only with `preserve_order`,
        // which the workspace turns on and the runtime alone does not.
        let mut keys: Vec<&str> = listed
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "city",
                "createdAt",
                "current",
                "deviceName",
                "expiredAt",
                "refreshedAt",
                "sessionId"
            ]
        );
        assert_eq!(listed["current"], true);
        assert_eq!(
            IDENTITY.listed_session(&s, None, Uuid::nil())["current"],
            false
        );
    }

    #[test]
    fn session_answers_carry_every_key_of_the_contract() {
        let view = IDENTITY.session_view(&session(), &Tokens::default());
        let keys: Vec<&str> = view
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        for key in [
            "sessionId",
            "userId",
            "accessToken",
            "accessTokenExpiresAt",
            "refreshToken",
            "refreshTokenExpiresAt",
            "deviceName",
            "city",
            "createdAt",
            "expiredAt",
        ] {
            assert!(keys.contains(&key), "{key} in {keys:?}");
        }
        assert_eq!(keys.len(), 10);
    }

    #[test]
    fn pending_sign_ins_keep_their_stored_form() {
        // As the generated struct stored it: device facts by column.
        let stored = json!({ "device_name": "phone", "city": null, "client_address": "192.0.2.1", "set_cookie": true });
        let read: PendingSignIn = serde_json::from_value(stored.clone()).expect("readable");
        assert_eq!(
            read.device.get("device_name"),
            Some(&Some("phone".to_string()))
        );
        assert!(read.set_cookie);
        assert_eq!(serde_json::to_value(&read).expect("writable"), stored);
        let without_cookies: PendingSignIn =
            serde_json::from_value(json!({ "client_address": "192.0.2.1" })).expect("readable");
        assert!(!without_cookies.set_cookie && without_cookies.device.is_empty());
    }

    #[test]
    fn refresh_tokens_come_from_the_body_or_the_cookie() {
        let state = test_state();
        let mut headers = HeaderMap::new();
        let body = state
            .presented_refresh(Some("t1".into()), &headers)
            .expect("from the body");
        assert_eq!((body.token.as_str(), body.from_cookie), ("t1", false));
        let Err(ApiError::Validation(missing)) =
            state.presented_refresh(Some(String::new()), &headers)
        else {
            panic!("an empty token is missing");
        };
        assert_eq!(
            missing[0].message,
            "is required (or the svc-refresh cookie)"
        );
        headers.insert(header::COOKIE, HeaderValue::from_static("svc-refresh=t2"));
        let jar = state
            .presented_refresh(None, &headers)
            .expect("from the cookie");
        assert_eq!((jar.token.as_str(), jar.from_cookie), ("t2", true));
    }

    #[test]
    fn signing_out_expires_the_cookies() {
        let state = test_state();
        let reply = RequestContext::system(&SERVICE)
            .reply(&SIGN_IN, StatusCode::OK, &json!({}))
            .expect("a reply");
        let response = state.signed_out(reply);
        let cleared = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .count();
        assert_eq!(cleared, 3);
    }
}
