//! The identity the service issues tokens for: who logs in and how, the
//! session and auth routes, role ranks, cookies and one-time-code flows.

use super::field::{active_clause, columns_of, field, field_of, select_list, visible_of};
use super::route::RoutePlan;
use super::{rust_str_slice, sql_text};
use crate::action::Action;
use crate::model::{Cookies, DataObject, Identity, Model, Verification};
use crate::naming::{camel, change_const, snake};

/// Who logs in and how: everything the auth module needs from the model.
#[derive(Debug)]
pub struct IdentityPlan {
    pub user_module: String,
    pub user_table: String,
    pub login_field: String,
    /// The JSON name of the password field (the login body uses it).
    pub password_field_name: String,
    pub login_email: bool,
    /// Inserts the bootstrap super-admin unless its login is taken.
    pub bootstrap_sql: String,
    /// `SELECT id, password hash, role` of an active account by its login.
    pub login_sql: String,
    /// The role of a live session's active user, and when the session expires.
    pub caller_sql: String,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: u32,
    /// How long a replaced signing key stays in the JWKS and verifies.
    pub key_overlap: u32,
    pub refresh_ttl: u32,
    pub refresh_grace: u32,
    pub session_lifetime: u32,
    pub session_idle: u32,
    pub live_session_cache: u32,
    pub session_topic_const: String,
    pub session_topic: String,
    /// The field number of `created_at` in session.proto (after the device fields).
    pub proto_created_at: usize,
    pub session_namespace: String,
    pub device_fields: Vec<DeviceFieldPlan>,
    pub throttle_window: u32,
    pub login_per_account: u32,
    pub login_per_address: u32,
    pub public_writes_per_address: u32,
    /// Uploads per signed-in user per window (validated present when a route uploads).
    pub uploads_per_user: u32,
    /// The runtime's list of common passwords is refused.
    pub reject_common_passwords: bool,
    /// The account object's update and delete topic constants: its sessions
    /// are forgotten when they carry the account.
    pub account_updated_const: String,
    pub account_deleted_const: String,
    /// The setting that names the bootstrap account's login, e.g. `SUPERADMIN_EMAIL`.
    pub bootstrap_login_env: String,
    /// `SUPERADMIN_EMAIL`, also read when the login is an email address under
    /// another name.
    pub bootstrap_login_alias: Option<String>,
    pub sign_in: RoutePlan,
    pub refresh: RoutePlan,
    pub sign_out: RoutePlan,
    pub current_user: RoutePlan,
    pub public_keys: RoutePlan,
    pub super_admin_role: String,
    /// `&[("superAdmin", 3), ...]`: each role's rank, and the roles whose
    /// holders may write accounts of their own rank.
    pub role_ranks: String,
    pub peer_writers: String,
    /// `&["superAdmin", "admin"]`: the model's admin roles.
    pub admin_roles: String,
    /// For docs: `superAdmin 3, admin 2, user 1; superAdmin may write peers`.
    pub rank_summary: String,
    /// The role of active account $1, and the same locked for the transaction.
    pub role_sql: String,
    pub account_role_sql: String,
    /// The role of a `sessions` row's account, as a column of what reads sessions.
    pub session_role_sql: String,
    /// Whether an active account other than $2 has role $1.
    pub other_top_sql: String,
    /// A header that may carry the access token besides `Authorization`.
    pub token_header: Option<String>,
    pub cookies: Option<CookiePlan>,
    pub flows: Option<FlowsPlan>,
    pub permissions: Option<RoutePlan>,
    /// The routes on a user's own sessions, when the model serves them.
    pub list_sessions: Option<RoutePlan>,
    pub end_session: Option<RoutePlan>,
    pub end_other_sessions: Option<RoutePlan>,
    /// Every route with its rule, for the permissions listing.
    pub rules: Vec<RuleRow>,
}

#[derive(Debug)]
pub struct CookiePlan {
    pub access: String,
    pub refresh: String,
    pub csrf: String,
    pub csrf_header: String,
    pub same_site: String,
    /// The refresh cookie is sent only to the refresh route.
    pub refresh_path: String,
}

/// One-time codes by email: verification, password reset, second factor.
#[derive(Debug)]
pub struct FlowsPlan {
    pub require_verified: bool,
    /// Everyone signs in with a second factor.
    pub second_factor_required: bool,
    pub code_digits: u32,
    pub code_ttl: u32,
    pub max_attempts: u32,
    pub requests_per_account: u32,
    pub requests_per_address: u32,
    pub checks_per_account: u32,
    pub delivery_topic: String,
    pub delivery_topic_const: String,
    /// `SELECT id, login, locale` of an active account by its login.
    pub recipient_sql: String,
    /// Sets the verified flag of account $1, returning the row.
    pub verify_sql: String,
    /// Sets the hashed secret $2 of account $1, returning the row.
    pub reset_sql: String,
    /// The JSON name of the verified flag.
    pub verified_field: String,
    /// The account's row type, e.g. `User`.
    pub account_struct: String,
    /// The rule const of the secret field, if it has text rules.
    pub secret_rule: Option<String>,
    /// `kind` of the delivery requests: e.g. emailVerification, passwordReset.
    pub verify_kind: String,
    pub reset_kind: String,
    /// `login, locale` of an active account by id.
    pub recipient_by_id_sql: String,
    pub verify_start: RoutePlan,
    pub verify_complete: RoutePlan,
    pub reset_start: RoutePlan,
    pub reset_complete: RoutePlan,
    pub second_factor: Option<RoutePlan>,
}

/// A route and its rule, as the permissions listing shows them.
#[derive(Debug)]
pub struct RuleRow {
    pub name: String,
    pub method: String,
    pub path: String,
    pub object: String,
    pub access: String,
}

#[derive(Debug, Clone)]
pub struct DeviceFieldPlan {
    pub name: String,
    pub ident: String,
    /// Its field number in session.proto.
    pub proto_number: usize,
}

pub fn identity(m: &Model, a: &Identity, routes: &[RoutePlan]) -> IdentityPlan {
    let user = m.object(&a.user_object).expect("validated user object");
    let sql = AccountSql::new(a, user);
    let route = |action| route_of(routes, action);
    let login_email =
        field_of(user, &a.login_field).is_some_and(|f| f.format.as_deref() == Some("email"));
    let bootstrap_login_env = bootstrap_login_env(&a.login_field);
    let mut current_user = route(Action::CurrentUser);
    current_user.data_name = a.user_object.clone();
    IdentityPlan {
        password_field_name: a.password_field.clone(),
        bootstrap_sql: bootstrap_sql(a, user),
        user_module: snake(&a.user_object),
        user_table: user.table.clone(),
        login_field: a.login_field.clone(),
        login_email,
        login_sql: sql.login,
        caller_sql: sql.caller,
        issuer: a.issuer.clone(),
        audience: a.audience.clone(),
        access_ttl: a.access_token_ttl_seconds,
        key_overlap: a.key_overlap(),
        refresh_ttl: a.refresh_token_ttl_seconds,
        refresh_grace: a.refresh_grace_seconds,
        session_lifetime: a.session_lifetime(),
        session_idle: a.session_idle(),
        live_session_cache: a.live_session_cache_seconds,
        session_topic_const: "SESSION".into(),
        session_namespace: a.session_namespace.clone(),
        device_fields: device_fields(a),
        proto_created_at: a.device_fields.len() + 5,
        session_topic: a.session_topic.clone(),
        throttle_window: a.throttle.window_seconds,
        login_per_account: a.throttle.login_per_account,
        login_per_address: a.throttle.login_per_address,
        public_writes_per_address: a.throttle.public_writes_per_address,
        uploads_per_user: a.throttle.uploads_per_user.unwrap_or(u32::MAX),
        reject_common_passwords: a.reject_common_passwords,
        account_updated_const: change_const("DBEVENT", &a.user_object, "updated"),
        account_deleted_const: change_const("DBEVENT", &a.user_object, "deleted"),
        bootstrap_login_alias: (login_email && bootstrap_login_env != EMAIL_LOGIN_ENV)
            .then(|| EMAIL_LOGIN_ENV.to_string()),
        bootstrap_login_env,
        sign_in: route(Action::Login),
        refresh: route(Action::Refresh),
        sign_out: route(Action::Logout),
        current_user,
        public_keys: route(Action::PublicKeys),
        super_admin_role: a.super_admin_role.clone(),
        role_ranks: role_ranks(m),
        peer_writers: rust_str_slice(&m.roles.peer_writes),
        admin_roles: rust_str_slice(&m.roles.admin),
        rank_summary: rank_summary(m),
        account_role_sql: format!("{} FOR UPDATE", sql.role),
        role_sql: sql.role,
        session_role_sql: sql.session_role,
        other_top_sql: sql.other_top,
        token_header: a.token_header.clone(),
        cookies: a.cookies.as_ref().map(|c| {
            let refresh_path = route(Action::Refresh).path;
            CookiePlan {
                refresh: prefixed(&c.refresh, &refresh_path),
                refresh_path,
                ..CookiePlan::from(c)
            }
        }),
        flows: a
            .verification
            .as_ref()
            .map(|v| flows(m, a, v, user, routes)),
        permissions: optional_route(routes, Action::Permissions),
        list_sessions: optional_route(routes, Action::ListSessions),
        end_session: optional_route(routes, Action::EndSession),
        end_other_sessions: optional_route(routes, Action::EndOtherSessions),
        rules: routes.iter().map(RuleRow::from).collect(),
    }
}

impl IdentityPlan {
    /// The routes on a user's own sessions the model serves.
    pub fn own_session_routes(&self) -> Vec<&RoutePlan> {
        [
            &self.list_sessions,
            &self.end_session,
            &self.end_other_sessions,
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl From<&RoutePlan> for RuleRow {
    fn from(r: &RoutePlan) -> Self {
        RuleRow {
            name: r.name.clone(),
            method: r.method.clone(),
            path: r.path.clone(),
            object: r.object.clone().unwrap_or_default(),
            access: r.access.clone(),
        }
    }
}

/// A cookie's name as set (decision cookies): `__Host-` for cookies on path
/// `/` (the browser then refuses them from a subdomain or without Secure),
/// `__Secure-` for the refresh cookie, whose narrower path `__Host-` forbids.
fn prefixed(name: &str, path: &str) -> String {
    if name.starts_with("__Host-") || name.starts_with("__Secure-") {
        return name.to_string();
    }
    let prefix = if path == "/" { "__Host-" } else { "__Secure-" };
    format!("{prefix}{name}")
}

impl From<&Cookies> for CookiePlan {
    /// The cookies' names and policy; `refresh_path` is the refresh route's.
    fn from(c: &Cookies) -> Self {
        CookiePlan {
            access: prefixed(&c.access, "/"),
            refresh: c.refresh.clone(),
            csrf: prefixed(&c.csrf, "/"),
            csrf_header: c.csrf_header.clone(),
            same_site: c.same_site.clone(),
            refresh_path: String::new(),
        }
    }
}

/// Device facts a login may carry, numbered after the session's own fields in session.proto.
fn device_fields(a: &Identity) -> Vec<DeviceFieldPlan> {
    a.device_fields
        .iter()
        .enumerate()
        .map(|(i, f)| DeviceFieldPlan {
            name: f.clone(),
            ident: snake(f),
            proto_number: i + 5,
        })
        .collect()
}

/// `&[("superAdmin", 3), ...]`: each role's rank.
pub(super) fn role_ranks(m: &Model) -> String {
    let pairs: Vec<String> = m
        .roles
        .values
        .iter()
        .map(|r| format!("({r:?}, {})", rank(m, r)))
        .collect();
    format!("&[{}]", pairs.join(", "))
}

/// The route serving `action`, which validation made sure exists.
fn route_of(routes: &[RoutePlan], action: Action) -> RoutePlan {
    routes
        .iter()
        .find(|r| r.action == action)
        .cloned()
        .expect("validated auth route")
}

/// The route serving `action`, when the model has one.
pub(super) fn optional_route(routes: &[RoutePlan], action: Action) -> Option<RoutePlan> {
    routes.iter().find(|r| r.action == action).cloned()
}

fn rank(m: &Model, role: &str) -> u32 {
    m.roles.ranks.get(role).copied().unwrap_or_default()
}

/// For docs: `superAdmin 3, admin 2, user 1; superAdmin may write peers`.
pub(super) fn rank_summary(m: &Model) -> String {
    let ranks: Vec<String> = m
        .roles
        .values
        .iter()
        .map(|r| format!("`{r}` {}", rank(m, r)))
        .collect();
    match m.roles.peer_writes.as_slice() {
        [] => format!(
            "{}; nobody writes accounts of their own rank",
            ranks.join(", ")
        ),
        peers => format!(
            "{}; {} may write accounts of their own rank",
            ranks.join(", "),
            peers
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The bootstrap login's setting before it followed the login field; still
/// read for email logins.
const EMAIL_LOGIN_ENV: &str = "SUPERADMIN_EMAIL";

/// `SUPERADMIN_<LOGIN FIELD>`: the setting that names the bootstrap account's
/// login, e.g. `SUPERADMIN_EMAIL` or `SUPERADMIN_USER_NAME`.
pub fn bootstrap_login_env(login_field: &str) -> String {
    format!("SUPERADMIN_{}", snake(login_field).to_uppercase())
}

/// Inserts the bootstrap super-admin unless its login is taken.
fn bootstrap_sql(a: &Identity, user: &DataObject) -> String {
    let mut cols = vec![
        "id".to_string(),
        snake(&a.login_field),
        snake(&a.password_field),
        snake(&a.role_field),
    ];
    let mut values = vec![
        "$1".to_string(),
        "$2".to_string(),
        "$3".to_string(),
        sql_text(&a.super_admin_role),
    ];
    for (f, v) in &a.bootstrap_values {
        cols.push(snake(f));
        values.push(sql_text(v));
    }
    if user.owner_is_self {
        cols.push("_owner".into());
        values.push("$1".into());
    }
    format!(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING",
        user.table,
        cols.join(", "),
        values.join(", ")
    )
}

/// The statements that read accounts: login, the caller of a session, roles.
struct AccountSql {
    login: String,
    caller: String,
    role: String,
    other_top: String,
    session_role: String,
}

impl AccountSql {
    fn new(a: &Identity, user: &DataObject) -> Self {
        let active = active_clause(user);
        let (table, role) = (&user.table, snake(&a.role_field));
        let verified = a.verification.as_ref();
        AccountSql {
            login: format!(
                "SELECT t.id, t.{}, t.{role}, {}, {} FROM {table} AS t WHERE t.{} = $1{active}",
                snake(&a.password_field),
                verified.map_or("TRUE".to_string(), |v| format!("t.{}", snake(&v.verified_field))),
                verified
                    .and_then(|v| v.second_factor_field.as_ref())
                    .map_or("FALSE".to_string(), |f| format!("t.{}", snake(f))),
                snake(&a.login_field)
            ),
            caller: format!(
                "SELECT t.{role}, s.expires_at FROM sessions AS s JOIN {table} AS t ON t.id = s.user_id \
                 WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL AND s.expires_at > now(){active}"
            ),
            role: format!("SELECT t.{role} FROM {table} AS t WHERE t.id = $1{active}"),
            other_top: format!(
                "SELECT EXISTS (SELECT 1 FROM {table} AS t WHERE t.{role} = $1 AND t.id <> $2{active})"
            ),
            // Archived accounts too: their sessions' last events carry the role they had.
            session_role: format!(
                "(SELECT t.{role} FROM {table} AS t WHERE t.id = sessions.user_id)"
            ),
        }
    }
}

/// One-time codes by email: verification, reset and the second factor.
fn flows(
    m: &Model,
    a: &Identity,
    v: &Verification,
    user: &DataObject,
    routes: &[RoutePlan],
) -> FlowsPlan {
    let active = active_clause(user);
    let select = select_list(&visible_of(m, &a.user_object, &columns_of(user)), "t");
    let update = |set: String| {
        format!(
            "UPDATE {} AS t SET record_version = t.record_version + 1, updated_at = now(), {set} \
             WHERE t.id = $1 RETURNING {select}",
            user.table
        )
    };
    let locale = v
        .locale_field
        .as_ref()
        .map_or("NULL::text".to_string(), |f| format!("t.{}", snake(f)));
    let login = snake(&a.login_field);
    let route = |action| route_of(routes, action);
    FlowsPlan {
        require_verified: v.require_verified_login,
        second_factor_required: v.second_factor == "required",
        code_digits: v.code_digits,
        code_ttl: v.code_ttl_seconds,
        max_attempts: v.max_attempts,
        requests_per_account: v.requests_per_account,
        requests_per_address: v.requests_per_address,
        checks_per_account: v.checks_per_account,
        delivery_topic: v.delivery_topic.clone(),
        delivery_topic_const: "DELIVERY".into(),
        recipient_sql: format!(
            "SELECT t.id, t.{login} AS address, t.{} AS verified, {locale} AS locale FROM {} AS t WHERE t.{login} = $1{active}",
            snake(&v.verified_field),
            user.table,
        ),
        verify_sql: update(format!("{} = TRUE", snake(&v.verified_field))),
        reset_sql: update(format!("{} = $2", snake(&a.password_field))),
        verified_field: v.verified_field.clone(),
        account_struct: camel(&a.user_object),
        secret_rule: field_of(user, &a.password_field)
            .map(|fd| field(&a.password_field, fd))
            .filter(|f| f.text_rule.is_some())
            .map(|f| f.rule_const),
        verify_kind: format!("{}Verification", a.login_field),
        reset_kind: format!("{}Reset", a.password_field),
        recipient_by_id_sql: format!("SELECT t.{login}, {locale} FROM {} AS t WHERE t.id = $1{active}", user.table),
        verify_start: route(Action::VerifyStart),
        verify_complete: route(Action::VerifyComplete),
        reset_start: route(Action::ResetStart),
        reset_complete: route(Action::ResetComplete),
        second_factor: optional_route(routes, Action::SecondFactor),
    }
}

#[cfg(test)]
mod tests {
    use super::prefixed;

    #[test]
    fn cookie_names_take_the_strongest_prefix_their_path_allows() {
        assert_eq!(prefixed("svc-access", "/"), "__Host-svc-access");
        assert_eq!(
            prefixed("svc-refresh", "/v1/refresh"),
            "__Secure-svc-refresh"
        );
        assert_eq!(prefixed("__Host-named", "/"), "__Host-named");
        assert_eq!(prefixed("__Secure-named", "/"), "__Secure-named");
    }
}
