//! The issuer a trusting service accepts tokens from: what its `auth` module
//! declares for the runtime (`svcgen_runtime::auth::trust`), and the policy
//! its routes are checked against.

use super::identity::{optional_route, rank_summary, role_ranks, RuleRow};
use super::route::RoutePlan;
use super::rust_str_slice;
use crate::action::Action;
use crate::model::{Model, Trust};

/// What the `auth` module of a trusting service needs from the model.
#[derive(Debug)]
pub struct TrustPlan {
    pub issuer: String,
    pub audience: String,
    /// The JWKS address when `JWKS_URL` is not set.
    pub jwks_url: String,
    pub session_topic: String,
    pub max_token_ttl: u32,
    /// A header that may carry the access token besides `Authorization`.
    pub token_header: Option<String>,
    /// `&[("admin", 2), ...]`, the roles writing peers, the admin roles.
    pub role_ranks: String,
    pub peer_writers: String,
    pub admin_roles: String,
    /// The highest-ranked role: the policy's top role.
    pub top_role: String,
    /// For docs: `admin 2, user 1`.
    pub rank_summary: String,
    pub permissions: Option<RoutePlan>,
    /// Every route with its rule, for the permissions listing.
    pub rules: Vec<RuleRow>,
}

pub fn trust(m: &Model, t: &Trust, routes: &[RoutePlan]) -> TrustPlan {
    let top_role = m
        .roles
        .ranks
        .iter()
        .max_by_key(|(role, rank)| (**rank, std::cmp::Reverse(role.as_str())))
        .map(|(role, _)| role.clone())
        .unwrap_or_default();
    TrustPlan {
        issuer: t.issuer.clone(),
        audience: t.audience.clone(),
        jwks_url: t.jwks_url.clone(),
        session_topic: t.session_topic.clone(),
        max_token_ttl: t.max_token_ttl_seconds,
        token_header: t.token_header.clone(),
        role_ranks: role_ranks(m),
        peer_writers: rust_str_slice(&m.roles.peer_writes),
        admin_roles: rust_str_slice(&m.roles.admin),
        top_role,
        rank_summary: rank_summary(m),
        permissions: optional_route(routes, Action::Permissions),
        rules: routes.iter().map(RuleRow::from).collect(),
    }
}
