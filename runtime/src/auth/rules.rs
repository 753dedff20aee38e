//! The model's roles and route rules as data, and what they allow: ranks
//! (decision role-ranks), admin roles, and what a role may do on each route.

use crate::error::ApiError;
use crate::route::Access;

/// A route and its rule, for the permissions listing.
#[derive(Debug)]
pub struct RouteRule {
    pub name: &'static str,
    pub method: &'static str,
    pub path: &'static str,
    /// The data object it works on, or "".
    pub object: &'static str,
    pub access: Access,
}

/// The model's roles: ranks, admin roles, peer writers, the top role, and
/// every route's rule.
#[derive(Debug)]
pub struct Policy {
    /// Each role's rank: a higher one outranks a lower one.
    pub ranks: &'static [(&'static str, u32)],
    /// Admin roles see every row and field and act for others.
    pub admin_roles: &'static [&'static str],
    /// Roles whose holders may write accounts of their own rank.
    pub peer_writers: &'static [&'static str],
    /// Its last active account is never demoted, deleted or archived.
    pub top_role: &'static str,
    /// Every route of the model with its rule.
    pub rules: &'static [RouteRule],
}

/// What a caller may do on a route: all rows, only their own, or nothing.
pub fn reach(role: Option<&str>, access: &Access) -> &'static str {
    match (access, role) {
        (Access::Public, _) => "all",
        (_, None) => "none",
        (Access::Login, Some(_)) => "all",
        (Access::Rule { roles, .. }, Some(r)) if roles.contains(&r) => "all",
        (Access::Rule { owner: true, .. }, Some(_)) => "own",
        _ => "none",
    }
}

impl Policy {
    /// The rank of `role`; an unknown role ranks below every role of the model.
    pub fn rank(&self, role: &str) -> u32 {
        self.ranks
            .iter()
            .find(|(r, _)| *r == role)
            .map_or(0, |(_, n)| *n)
    }

    pub fn is_admin(&self, role: &str) -> bool {
        self.admin_roles.contains(&role)
    }

    /// Refuses to grant `role` when it ranks above `mine`.
    pub fn may_grant(&self, mine: &str, role: &str) -> Result<(), ApiError> {
        if self.rank(role) > self.rank(mine) {
            return Err(outranked(format!("a {mine} cannot grant the role {role}")));
        }
        Ok(())
    }

    /// Refuses writes by `mine` to an account whose role is `theirs` when it
    /// outranks `mine`, or ranks the same and `mine` is not a peer writer.
    pub fn may_write(&self, mine: &str, theirs: &str) -> Result<(), ApiError> {
        let (my_rank, their_rank) = (self.rank(mine), self.rank(theirs));
        if their_rank < my_rank || (their_rank == my_rank && self.peer_writers.contains(&mine)) {
            return Ok(());
        }
        Err(outranked(format!(
            "a {mine} cannot change an account whose role is {theirs}"
        )))
    }

    /// The names of an object's routes a caller with `role` (or an anonymous
    /// client) may use: a list answer's uiPermissions.
    pub fn ui_permissions(&self, role: Option<&str>, object: &str) -> Vec<&'static str> {
        self.rules
            .iter()
            .filter(|r| r.object == object && reach(role, &r.access) != "none")
            .map(|r| r.name)
            .collect()
    }

    /// Refuses to demote, delete or archive an account of `role` when no other
    /// active account has the top role (`others`).
    pub fn keeps_top_role(&self, role: &str, others: bool) -> Result<(), ApiError> {
        if role != self.top_role || others {
            return Ok(());
        }
        Err(ApiError::Denied {
            code: "LAST_TOP_ROLE",
            message: format!(
                "this is the last active {} account; give another account that role first",
                self.top_role
            ),
        })
    }
}

fn outranked(message: String) -> ApiError {
    ApiError::Denied {
        code: "OUTRANKED",
        message,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const POLICY: Policy = Policy {
        ranks: &[("superAdmin", 3), ("admin", 2), ("user", 1)],
        admin_roles: &["superAdmin", "admin"],
        peer_writers: &["superAdmin"],
        top_role: "superAdmin",
        rules: &[
            RouteRule {
                name: "getUser",
                method: "GET",
                path: "/users/{id}",
                object: "user",
                access: Access::Rule {
                    roles: &["admin"],
                    owner: true,
                },
            },
            RouteRule {
                name: "listUsers",
                method: "GET",
                path: "/users",
                object: "user",
                access: Access::Rule {
                    roles: &["admin"],
                    owner: false,
                },
            },
            RouteRule {
                name: "register",
                method: "POST",
                path: "/users",
                object: "user",
                access: Access::Public,
            },
            RouteRule {
                name: "listBooks",
                method: "GET",
                path: "/books",
                object: "book",
                access: Access::Login,
            },
        ],
    };

    #[test]
    fn nobody_grants_or_writes_above_their_rank() {
        for (mine, my_rank) in POLICY.ranks {
            for (theirs, their_rank) in POLICY.ranks {
                assert_eq!(
                    POLICY.may_grant(mine, theirs).is_ok(),
                    their_rank <= my_rank,
                    "{mine} grants {theirs}"
                );
                let peer = their_rank == my_rank && POLICY.peer_writers.contains(mine);
                assert_eq!(
                    POLICY.may_write(mine, theirs).is_ok(),
                    their_rank < my_rank || peer,
                    "{mine} writes {theirs}"
                );
            }
        }
    }

    #[test]
    fn an_unknown_role_ranks_lowest() {
        assert_eq!(POLICY.rank("no such role"), 0);
        assert!(POLICY.may_grant("no such role", "user").is_err());
        assert!(POLICY.may_grant("user", "no such role").is_ok());
    }

    #[test]
    fn reach_follows_the_rule() {
        let owners = Access::Rule {
            roles: &["admin"],
            owner: true,
        };
        assert_eq!(reach(None, &Access::Public), "all");
        assert_eq!(reach(None, &Access::Login), "none");
        assert_eq!(reach(Some("user"), &Access::Login), "all");
        assert_eq!(reach(Some("admin"), &owners), "all");
        assert_eq!(reach(Some("user"), &owners), "own");
        assert_eq!(reach(None, &owners), "none");
        let admins = Access::Rule {
            roles: &["admin"],
            owner: false,
        };
        assert_eq!(reach(Some("user"), &admins), "none");
    }

    #[test]
    fn ui_permissions_list_the_object_routes_a_role_may_use() {
        assert_eq!(
            POLICY.ui_permissions(Some("admin"), "user"),
            ["getUser", "listUsers", "register"]
        );
        assert_eq!(
            POLICY.ui_permissions(Some("user"), "user"),
            ["getUser", "register"]
        );
        assert_eq!(POLICY.ui_permissions(None, "user"), ["register"]);
        assert_eq!(POLICY.ui_permissions(None, "book"), Vec::<&str>::new());
    }

    #[test]
    fn the_last_top_role_account_stays() {
        assert!(POLICY.keeps_top_role("superAdmin", true).is_ok());
        assert!(POLICY.keeps_top_role("admin", false).is_ok());
        let err = POLICY.keeps_top_role("superAdmin", false).unwrap_err();
        assert!(matches!(
            err,
            ApiError::Denied {
                code: "LAST_TOP_ROLE",
                ..
            }
        ));
    }
}
