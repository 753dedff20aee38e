//! Who calls: the signed-in [`Caller`] of a route and the [`ClientAddr`],
//! extracted from any state that hands out the [`Gate`] (the issuing
//! service's [`AuthState`] or the trusting one's [`TrustState`]) and the pool
//! (axum's `FromRef`), and the rank checks of writes.

use super::rules::{reach, Policy};
use super::trust::TrustState;
use crate::error::ApiError;
use crate::route::{Access, SYSTEM_ROLE};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::sync::Arc;
use uuid::Uuid;
#[cfg(feature = "identity")]
use {
    super::state::AuthState,
    axum::extract::ConnectInfo,
    chrono::{DateTime, Utc},
    ipnet::IpNet,
    sqlx::PgConnection,
    std::net::{IpAddr, SocketAddr},
};

/// How the service knows its callers: it issues their tokens and keeps their
/// sessions, or it trusts another service's tokens. The generated state hands
/// it out (`FromRef`) to the [`Caller`] extractor.
#[derive(Clone, Debug)]
pub enum Gate {
    #[cfg(feature = "identity")]
    Issuer(Arc<AuthState>),
    Trusting(Arc<TrustState>),
}

#[cfg(feature = "identity")]
impl From<Arc<AuthState>> for Gate {
    fn from(auth: Arc<AuthState>) -> Self {
        Self::Issuer(auth)
    }
}

impl From<Arc<TrustState>> for Gate {
    fn from(trust: Arc<TrustState>) -> Self {
        Self::Trusting(trust)
    }
}

/// The signed-in caller of a route, from its access token.
#[derive(Clone)]
pub struct Caller {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub role: String,
    /// When the access token expires (unix seconds), if it came from one:
    /// what lasts beyond a request (the event stream) ends then.
    pub token_expires: Option<i64>,
    /// The model's roles, which the checks below read.
    policy: &'static Policy,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("user_id", &self.user_id)
            .field("session_id", &self.session_id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl<S> FromRequestParts<S> for Caller
where
    Gate: FromRef<S>,
    PgPool: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = Self::admitted(parts, state).await?;
        // The request's span names who called (the role, never the token).
        tracing::Span::current().record("caller.role", caller.role.as_str());
        Ok(caller)
    }
}

impl Caller {
    async fn admitted<S>(parts: &mut Parts, state: &S) -> Result<Self, ApiError>
    where
        Gate: FromRef<S>,
        PgPool: FromRef<S>,
        S: Send + Sync,
    {
        match Gate::from_ref(state) {
            #[cfg(feature = "identity")]
            Gate::Issuer(auth) => Caller::issued(&auth, parts, &PgPool::from_ref(state)).await,
            Gate::Trusting(trust) => {
                let (token, role) = trust.admit(&parts.headers).await?;
                Ok(Caller {
                    token_expires: Some(token.expires),
                    ..Caller::new(token.user_id, token.session_id, role, trust.policy())
                })
            }
        }
    }
}

impl Caller {
    /// The caller of a token this service issued, whose session it keeps.
    #[cfg(feature = "identity")]
    async fn issued(auth: &AuthState, parts: &Parts, db: &PgPool) -> Result<Self, ApiError> {
        let identity = auth.identity;
        let (token, from_cookie) = identity
            .transport
            .presented(&parts.headers)
            .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".into()))?;
        let token = auth.token_facts(db, token.trim()).await?;
        if let Some(cookies) = identity.transport.cookies.as_ref() {
            if from_cookie && !parts.method.is_safe() {
                cookies.check_csrf(&auth.key, &parts.headers, token.session_id)?;
            }
        }
        let role = match auth.live.get(token.session_id, token.user_id) {
            Ok(role) => role,
            Err(generation) => {
                let live: Option<(String, DateTime<Utc>)> = sqlx::query_as(identity.sql.caller)
                    .bind(token.session_id)
                    .bind(token.user_id)
                    .fetch_optional(db)
                    .await?;
                let (role, expires_at) =
                    live.ok_or_else(|| ApiError::Unauthorized("the session has ended".into()))?;
                auth.live.keep(
                    generation,
                    token.session_id,
                    token.user_id,
                    &role,
                    expires_at,
                );
                role
            }
        };
        if role == SYSTEM_ROLE {
            // Only the service itself acts as the system caller.
            return Err(ApiError::Forbidden);
        }
        Ok(Caller {
            token_expires: Some(token.expires),
            ..Caller::new(token.user_id, token.session_id, role, &identity.policy)
        })
    }
}

impl Caller {
    pub fn new(user_id: Uuid, session_id: Uuid, role: String, policy: &'static Policy) -> Self {
        Self {
            user_id,
            session_id,
            role,
            token_expires: None,
            policy,
        }
    }

    /// Whether a notice on the callers channel ([`super::live::CallerChange`])
    /// names this caller's session or account.
    #[cfg(feature = "identity")]
    pub fn concerned_by(&self, notice: &str) -> bool {
        use super::live::CallerChange;
        match CallerChange::parse(notice) {
            Some(CallerChange::Session(id)) => id == self.session_id,
            Some(CallerChange::Account(id)) => id == self.user_id,
            None => false,
        }
    }

    /// The caller as the database has it now, past the live-session cache
    /// (which may not have heard of the change yet): `None` once its session
    /// ended or its account went; its role may have changed.
    #[cfg(feature = "identity")]
    pub async fn as_of_now(
        &self,
        auth: &AuthState,
        db: &PgPool,
    ) -> Result<Option<Caller>, ApiError> {
        let live: Option<(String, DateTime<Utc>)> = sqlx::query_as(auth.identity.sql.caller)
            .bind(self.session_id)
            .bind(self.user_id)
            .fetch_optional(db)
            .await?;
        Ok(live
            .filter(|(role, _)| role != SYSTEM_ROLE)
            .map(|(role, _)| Caller {
                role,
                ..self.clone()
            }))
    }

    /// The system caller: for work that no user started. It passes only the
    /// rules that name it, owns no row, and is no admin.
    pub fn system(policy: &'static Policy) -> Self {
        Self::new(Uuid::nil(), Uuid::nil(), SYSTEM_ROLE.to_string(), policy)
    }

    pub fn is_system(&self) -> bool {
        self.role == SYSTEM_ROLE
    }

    pub fn has_role(&self, roles: &[&str]) -> bool {
        roles.contains(&self.role.as_str())
    }

    /// Admins see every row and field and act for others.
    pub fn is_admin(&self) -> bool {
        self.policy.is_admin(&self.role)
    }

    /// What the caller may do on a route: `all` rows, only its `own`, or `none`.
    pub fn reach(&self, access: &Access) -> &'static str {
        reach(Some(&self.role), access)
    }

    /// Every route of the model with what the caller may do there and what
    /// it sees of the rows (`sight`, by route name, where it may do anything).
    pub fn permissions(&self, sight: impl Fn(&str) -> &'static str) -> Value {
        let routes: Vec<Value> = self
            .policy
            .rules
            .iter()
            .map(|rule| {
                let access = self.reach(&rule.access);
                // A route the caller cannot use shows it nothing.
                let view = if access == "none" {
                    "none"
                } else {
                    sight(rule.name)
                };
                json!({
                    "name": rule.name,
                    "method": rule.method,
                    "path": rule.path,
                    "object": rule.object,
                    "access": access,
                    "view": view,
                })
            })
            .collect();
        json!({ "role": self.role, "routes": routes })
    }

    /// Checks a route's rule; `owner` is the owner of the row the route addresses.
    pub fn allow(&self, access: &Access, owner: Option<Uuid>) -> Result<(), ApiError> {
        match access {
            Access::Public | Access::Login => Ok(()),
            Access::Rule {
                roles,
                owner: owners,
            } => {
                if self.has_role(roles) || (*owners && owner == Some(self.user_id)) {
                    Ok(())
                } else {
                    Err(ApiError::Forbidden)
                }
            }
        }
    }

    /// Whether the rule can let this caller in at all, before any row is read.
    pub fn may_try(&self, access: &Access) -> Result<(), ApiError> {
        match access {
            Access::Rule {
                roles,
                owner: false,
            } if !self.has_role(roles) => Err(ApiError::Forbidden),
            _ => Ok(()),
        }
    }

    /// Whether only ownership of the row can let this caller in.
    pub fn must_own(&self, access: &Access) -> bool {
        matches!(access, Access::Rule { roles, owner: true } if !self.has_role(roles))
    }

    /// For a list: `Some(caller)` when the caller may see only their own rows.
    pub fn list_scope(&self, access: &Access) -> Result<Option<Uuid>, ApiError> {
        self.may_try(access)?;
        Ok(match access {
            Access::Rule { roles, owner: true } if !self.has_role(roles) => Some(self.user_id),
            _ => None,
        })
    }

    /// Refuses to grant `role` when it ranks above the caller's own role.
    pub fn may_grant(&self, role: &str) -> Result<(), ApiError> {
        self.policy.may_grant(&self.role, role)
    }

    /// Refuses writes to `account` (whose role is `role`) when it outranks the
    /// caller, or ranks the same and the caller's role is not a peer writer.
    /// The caller's own account always passes.
    pub fn may_manage(&self, account: Uuid, role: &str) -> Result<(), ApiError> {
        if account == self.user_id {
            return Ok(());
        }
        self.policy.may_write(&self.role, role)
    }
}

/// The transaction-scoped advisory lock of rank checks: writes that check ranks
/// hold it shared, writes that change a role or end an account hold it alone.
#[cfg(feature = "identity")]
const RANKS_LOCK: i64 = 0x7376_6367_7261_6e6b;

impl TrustState {
    /// The names of an object's routes the caller (or an anonymous client)
    /// may use: a list answer's uiPermissions.
    pub fn ui_permissions(&self, caller: Option<&Caller>, object: &str) -> Vec<&'static str> {
        self.policy()
            .ui_permissions(caller.map(|c| c.role.as_str()), object)
    }
}

#[cfg(feature = "identity")]
impl AuthState {
    /// The names of an object's routes the caller (or an anonymous client)
    /// may use: a list answer's uiPermissions.
    pub fn ui_permissions(&self, caller: Option<&Caller>, object: &str) -> Vec<&'static str> {
        self.identity
            .policy
            .ui_permissions(caller.map(|c| c.role.as_str()), object)
    }

    /// Refuses a write that rewrites `account` (a file that becomes its
    /// picture, say) unless the caller may manage that account. The account
    /// stays locked until the transaction ends, so its role cannot change
    /// underneath.
    pub async fn guard_account(
        &self,
        tx: &mut PgConnection,
        caller: &Caller,
        account: Option<Uuid>,
    ) -> Result<(), ApiError> {
        let Some(account) = account.filter(|a| *a != caller.user_id) else {
            return Ok(());
        };
        let role: Option<String> = sqlx::query_scalar(self.identity.sql.role_locked)
            .bind(account)
            .fetch_optional(&mut *tx)
            .await?;
        // An unknown account fails later, on its reference.
        match role {
            Some(role) => caller.may_manage(account, &role),
            None => Ok(()),
        }
    }

    /// Takes the ranks lock (alone when `exclusive`) as the transaction's
    /// first step and answers the caller with its role as of now. The role
    /// the request started with may have been removed since (the caller
    /// demoted or deleted while the request waited); every rank check of the
    /// write uses this one, so a removed role never authorizes a write that
    /// commits after its removal.
    pub async fn lock_ranks(
        &self,
        tx: &mut PgConnection,
        caller: &Caller,
        exclusive: bool,
    ) -> Result<Caller, ApiError> {
        let lock = if exclusive {
            "SELECT pg_advisory_xact_lock($1)"
        } else {
            "SELECT pg_advisory_xact_lock_shared($1)"
        };
        sqlx::query(lock).bind(RANKS_LOCK).execute(&mut *tx).await?;
        let role: Option<String> = sqlx::query_scalar(self.identity.sql.role)
            .bind(caller.user_id)
            .fetch_optional(&mut *tx)
            .await?;
        let role = role.ok_or_else(|| ApiError::Unauthorized("the session has ended".into()))?;
        Ok(Caller {
            role,
            ..caller.clone()
        })
    }

    /// Refuses to demote, delete or archive `account` (whose role is `role`)
    /// when it is the last active account of the top role. Call it in the
    /// write's transaction after [`Self::lock_ranks`] with `exclusive`, so
    /// that two such changes cannot each leave the other as the last.
    pub async fn keep_top_role(
        &self,
        tx: &mut PgConnection,
        account: Uuid,
        role: &str,
    ) -> Result<(), ApiError> {
        let policy = &self.identity.policy;
        if role != policy.top_role {
            return Ok(());
        }
        let others: bool = sqlx::query_scalar(self.identity.sql.other_top)
            .bind(policy.top_role)
            .bind(account)
            .fetch_one(&mut *tx)
            .await?;
        policy.keeps_top_role(role, others)
    }
}

/// The client's address: the socket peer, or, when the peer is a trusted
/// proxy (`TRUSTED_PROXIES`), the rightmost `X-Forwarded-For` hop outside the
/// trusted networks: hops left of it are whatever the client chose to send.
#[cfg(feature = "identity")]
#[derive(Debug, Clone)]
pub struct ClientAddr(pub IpAddr);

#[cfg(feature = "identity")]
impl<S> FromRequestParts<S> for ClientAddr
where
    Arc<AuthState>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Arc::<AuthState>::from_ref(state);
        Ok(ClientAddr(client_addr(parts, &auth.limits.trusted_proxies)))
    }
}

/// The socket peer, or the rightmost hop that no trusted proxy added.
#[cfg(feature = "identity")]
fn client_addr(parts: &Parts, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip().to_canonical());
    if !is_trusted(&client) {
        return client;
    }
    // Several header lines read as one list, in order.
    let hops: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for hop in hops.iter().rev() {
        // A hop that is no address ends the chain: what is left of it cannot be trusted.
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip.to_canonical();
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

#[cfg(all(test, feature = "identity"))]
mod tests {
    use super::*;
    use crate::auth::rules::tests::POLICY;
    use crate::auth::state::tests::test_state;
    use crate::auth::tokens::{csrf_token, sign};
    use axum::http::Request;

    #[test]
    fn a_caller_is_concerned_by_notices_of_its_session_or_account_only() {
        use crate::auth::live::CallerChange;
        let c = caller("user");
        let mine = [
            CallerChange::Session(c.session_id),
            CallerChange::Account(c.user_id),
        ];
        for change in mine {
            assert!(c.concerned_by(&change.to_payload()), "{change:?}");
        }
        let other = Uuid::new_v4();
        for change in [CallerChange::Session(other), CallerChange::Account(other)] {
            assert!(!c.concerned_by(&change.to_payload()), "{change:?}");
        }
        assert!(!c.concerned_by("garbage"));
    }

    fn caller(role: &str) -> Caller {
        Caller::new(Uuid::new_v4(), Uuid::new_v4(), role.to_string(), &POLICY)
    }

    const OWNERS: Access = Access::Rule {
        roles: &["admin"],
        owner: true,
    };
    const ADMINS: Access = Access::Rule {
        roles: &["admin"],
        owner: false,
    };

    #[test]
    fn nobody_manages_accounts_above_their_rank_but_their_own() {
        for (mine, my_rank) in POLICY.ranks {
            let me = caller(mine);
            for (theirs, their_rank) in POLICY.ranks {
                assert_eq!(
                    me.may_grant(theirs).is_ok(),
                    their_rank <= my_rank,
                    "{mine} grants {theirs}"
                );
                let peer = their_rank == my_rank && POLICY.peer_writers.contains(mine);
                assert_eq!(
                    me.may_manage(Uuid::new_v4(), theirs).is_ok(),
                    their_rank < my_rank || peer,
                    "{mine} writes {theirs}"
                );
                assert!(
                    me.may_manage(me.user_id, theirs).is_ok(),
                    "{mine} writes their own account"
                );
            }
        }
        assert!(caller("no such role").may_grant(POLICY.top_role).is_err());
    }

    #[test]
    fn rules_let_roles_and_owners_in() {
        let (admin, user) = (caller("admin"), caller("user"));
        assert!(admin.is_admin() && !user.is_admin());
        assert!(admin.allow(&OWNERS, None).is_ok());
        assert!(user.allow(&OWNERS, Some(user.user_id)).is_ok());
        assert!(user.allow(&OWNERS, Some(Uuid::new_v4())).is_err());
        assert!(user.allow(&OWNERS, None).is_err());
        assert!(user.allow(&ADMINS, Some(user.user_id)).is_err());
        assert!(user.allow(&Access::Login, None).is_ok());
        assert!(user.may_try(&ADMINS).is_err());
        assert!(user.may_try(&OWNERS).is_ok());
        assert!(user.must_own(&OWNERS) && !admin.must_own(&OWNERS));
        assert_eq!(
            user.list_scope(&OWNERS).expect("owners may list"),
            Some(user.user_id)
        );
        assert_eq!(admin.list_scope(&OWNERS).expect("admins may list"), None);
        assert!(user.list_scope(&ADMINS).is_err());
        assert_eq!(user.reach(&OWNERS), "own");
    }

    #[test]
    fn the_system_caller_passes_only_rules_that_name_it() {
        const WITH_SYSTEM: Access = Access::Rule {
            roles: &["admin", SYSTEM_ROLE],
            owner: false,
        };
        let system = Caller::system(&POLICY);
        assert!(system.is_system() && !system.is_admin());
        assert!(!caller("admin").is_system());
        assert!(system.may_try(&WITH_SYSTEM).is_ok());
        assert!(system.allow(&WITH_SYSTEM, None).is_ok());
        assert_eq!(system.list_scope(&WITH_SYSTEM).expect("named"), None);
        assert!(system.may_try(&ADMINS).is_err());
        // An owners' rule does not make the system caller the owner of anything.
        assert!(system.must_own(&OWNERS));
        assert!(system.allow(&OWNERS, Some(Uuid::new_v4())).is_err());
        assert!(system.may_grant(POLICY.top_role).is_err());
    }

    #[test]
    fn permissions_list_every_route_with_reach_and_sight() {
        let user = caller("user");
        let listed = user.permissions(|route| if route == "getUser" { "own" } else { "full" });
        assert_eq!(listed["role"], "user");
        let routes = listed["routes"].as_array().expect("routes");
        assert_eq!(routes.len(), POLICY.rules.len());
        assert_eq!(routes[0]["name"], "getUser");
        assert_eq!(
            (routes[0]["access"].as_str(), routes[0]["view"].as_str()),
            (Some("own"), Some("own"))
        );
        assert_eq!(
            (routes[1]["access"].as_str(), routes[1]["view"].as_str()),
            (Some("none"), Some("none"))
        );
        assert_eq!(
            (routes[2]["access"].as_str(), routes[2]["view"].as_str()),
            (Some("all"), Some("full"))
        );
        assert_eq!(routes[1]["path"], "/users");
    }

    fn parts(request: Request<()>) -> Parts {
        request.into_parts().0
    }

    fn forwarded(peer: [u8; 4], hops: &[&str]) -> Parts {
        let mut request = Request::builder();
        for h in hops {
            request = request.header("x-forwarded-for", *h);
        }
        let mut request = request.body(()).expect("a request");
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((peer, 4000))));
        parts(request)
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("a network")).collect()
    }

    #[test]
    fn the_client_is_the_peer_unless_it_is_a_trusted_proxy() {
        let p = forwarded([192, 0, 2, 1], &["203.0.113.7, 10.0.0.1"]);
        assert_eq!(client_addr(&p, &[]), IpAddr::from([192, 0, 2, 1]));
        assert_eq!(
            client_addr(&p, &nets(&["10.0.0.0/8"])),
            IpAddr::from([192, 0, 2, 1]),
            "an untrusted peer's header is ignored"
        );
        let bare = parts(Request::new(()));
        assert_eq!(
            client_addr(&bare, &nets(&["0.0.0.0/0"])),
            IpAddr::from([0, 0, 0, 0])
        );
    }

    #[test]
    fn behind_trusted_proxies_the_client_is_the_rightmost_untrusted_hop() {
        let trusted = nets(&["10.0.0.0/8", "192.0.2.1/32"]);
        // The client may prepend anything; only the hop the proxy added counts.
        let p = forwarded([192, 0, 2, 1], &["1.1.1.1, 198.51.100.9, 10.0.0.3"]);
        assert_eq!(client_addr(&p, &trusted), IpAddr::from([198, 51, 100, 9]));
        let lines = forwarded([192, 0, 2, 1], &["1.1.1.1", "198.51.100.9"]);
        assert_eq!(
            client_addr(&lines, &trusted),
            IpAddr::from([198, 51, 100, 9])
        );
        // Every hop trusted: the leftmost one is the client.
        let inside = forwarded([192, 0, 2, 1], &["10.0.0.7, 10.0.0.3"]);
        assert_eq!(client_addr(&inside, &trusted), IpAddr::from([10, 0, 0, 7]));
        // A hop that is no address stops the walk at the last trusted one.
        let junk = forwarded([192, 0, 2, 1], &["1.1.1.1, junk, 10.0.0.3"]);
        assert_eq!(client_addr(&junk, &trusted), IpAddr::from([10, 0, 0, 3]));
        let v6 = forwarded([192, 0, 2, 1], &["::ffff:198.51.100.9"]);
        assert_eq!(client_addr(&v6, &trusted), IpAddr::from([198, 51, 100, 9]));
    }

    /// A state with the pool `FromRef` needs; the pool never connects.
    #[derive(Clone)]
    struct TestState {
        auth: Arc<AuthState>,
        db: PgPool,
    }

    impl FromRef<TestState> for Gate {
        fn from_ref(s: &TestState) -> Self {
            Gate::Issuer(s.auth.clone())
        }
    }

    impl FromRef<TestState> for PgPool {
        fn from_ref(s: &TestState) -> Self {
            s.db.clone()
        }
    }

    fn test_app() -> TestState {
        let db = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("a lazy pool");
        TestState {
            auth: Arc::new(test_state()),
            db,
        }
    }

    async fn extract(app: &TestState, request: Request<()>) -> Result<Caller, ApiError> {
        Caller::from_request_parts(&mut parts(request), app).await
    }

    /// An access token of a session this replica knows to be live.
    fn live_token(app: &TestState, user: Uuid, session: Uuid, role: &str) -> String {
        let (token, _) = sign(
            &app.auth.key,
            app.auth.identity.tokens,
            user,
            session,
            role,
            60,
        )
        .expect("signed");
        app.auth.live.set_listening(true);
        let generation = app.auth.live.get(session, user).unwrap_err();
        let expires = Utc::now() + chrono::Duration::hours(1);
        app.auth.live.keep(generation, session, user, role, expires);
        token
    }

    #[tokio::test]
    async fn a_live_session_in_memory_needs_no_database() {
        let app = test_app();
        let (user, session) = (Uuid::new_v4(), Uuid::new_v4());
        let token = live_token(&app, user, session, "admin");
        let request = Request::builder()
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .expect("a request");
        let caller = extract(&app, request).await.expect("a caller");
        assert_eq!((caller.user_id, caller.session_id), (user, session));
        assert!(caller.is_admin());
    }

    #[tokio::test]
    async fn no_token_makes_its_bearer_the_system_caller() {
        let app = test_app();
        let token = live_token(&app, Uuid::new_v4(), Uuid::new_v4(), SYSTEM_ROLE);
        let request = Request::builder()
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .expect("a request");
        assert!(matches!(
            extract(&app, request).await,
            Err(ApiError::Forbidden)
        ));
    }

    #[tokio::test]
    async fn requests_without_a_valid_token_are_refused() {
        let app = test_app();
        let none = extract(&app, Request::new(())).await.unwrap_err();
        assert!(matches!(none, ApiError::Unauthorized(m) if m == "a bearer token is required"));
        let request = Request::builder()
            .header("authorization", "Bearer not-a-jwt")
            .body(())
            .expect("a request");
        assert!(matches!(
            extract(&app, request).await,
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[tokio::test]
    async fn cookie_callers_need_the_csrf_token_to_change_things() {
        let app = test_app();
        let (user, session) = (Uuid::new_v4(), Uuid::new_v4());
        let token = live_token(&app, user, session, "user");
        let cookie = format!("svc-access={token}");
        let post = |csrf: Option<String>| {
            let mut b = Request::builder()
                .method("POST")
                .header("cookie", cookie.clone());
            if let Some(csrf) = csrf {
                b = b
                    .header("x-csrf-token", csrf.clone())
                    .header("cookie", format!("svc-csrf={csrf}"));
            }
            b.body(()).expect("a request")
        };
        let refused = extract(&app, post(None)).await.unwrap_err();
        assert!(matches!(
            refused,
            ApiError::Denied {
                code: "CSRF_TOKEN_INVALID",
                ..
            }
        ));
        let csrf = csrf_token(&app.auth.key, session);
        assert!(extract(&app, post(Some(csrf))).await.is_ok());
        let get = Request::builder()
            .header("cookie", cookie.clone())
            .body(())
            .expect("a request");
        assert!(extract(&app, get).await.is_ok(), "reads need no CSRF token");
    }
}
