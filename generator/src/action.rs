//! What a route does: its action, parsed once at load, and every fact that
//! follows from it (methods, addressing, owner rules, body, events) said here
//! and nowhere else.

use std::fmt;

/// A route's `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum Action {
    Get,
    List,
    Create,
    Update,
    Delete,
    Download,
    Extend,
    Login,
    Refresh,
    Logout,
    CurrentUser,
    PublicKeys,
    VerifyStart,
    VerifyComplete,
    ResetStart,
    ResetComplete,
    SecondFactor,
    Permissions,
    Subscribe,
    /// The caller's own live sessions, without tokens.
    ListSessions,
    /// Ends one of the caller's sessions, by `{id}`.
    EndSession,
    /// Ends every session of the caller but the current one.
    EndOtherSessions,
    /// Method, path, rule, input and answer from the model; the body hand-written.
    Custom,
}

/// The families of actions, which decide what else a route may say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Works on rows of a data object.
    Data,
    /// Sessions: required once each when the service issues tokens.
    Session,
    /// One-time codes by email: served with `auth.verification` and only then.
    Flow,
    /// What the caller may do, per route; optional.
    Permissions,
    /// The service's own realtime stream.
    Stream,
    /// A signed-in user's own sessions, seen and ended; optional.
    OwnSessions,
}

impl Action {
    /// Every action, in the order error messages list them.
    pub const ALL: [Action; 23] = [
        Action::Get,
        Action::List,
        Action::Create,
        Action::Update,
        Action::Delete,
        Action::Download,
        Action::Extend,
        Action::Login,
        Action::Refresh,
        Action::Logout,
        Action::CurrentUser,
        Action::PublicKeys,
        Action::VerifyStart,
        Action::VerifyComplete,
        Action::ResetStart,
        Action::ResetComplete,
        Action::SecondFactor,
        Action::Permissions,
        Action::Subscribe,
        Action::ListSessions,
        Action::EndSession,
        Action::EndOtherSessions,
        Action::Custom,
    ];

    /// Its name in the model (and in the REST envelope).
    pub fn name(self) -> &'static str {
        match self {
            Action::Get => "get",
            Action::List => "list",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Download => "download",
            Action::Extend => "extend",
            Action::Login => "login",
            Action::Refresh => "refresh",
            Action::Logout => "logout",
            Action::CurrentUser => "currentUser",
            Action::PublicKeys => "publicKeys",
            Action::VerifyStart => "verifyStart",
            Action::VerifyComplete => "verifyComplete",
            Action::ResetStart => "resetStart",
            Action::ResetComplete => "resetComplete",
            Action::SecondFactor => "secondFactor",
            Action::Permissions => "permissions",
            Action::Subscribe => "subscribe",
            Action::ListSessions => "listSessions",
            Action::EndSession => "endSession",
            Action::EndOtherSessions => "endOtherSessions",
            Action::Custom => "custom",
        }
    }

    pub fn family(self) -> Family {
        use Action::*;
        match self {
            Get | List | Create | Update | Delete | Download | Extend | Custom => Family::Data,
            Login | Refresh | Logout | CurrentUser | PublicKeys => Family::Session,
            VerifyStart | VerifyComplete | ResetStart | ResetComplete | SecondFactor => {
                Family::Flow
            }
            Permissions => Family::Permissions,
            Subscribe => Family::Stream,
            ListSessions | EndSession | EndOtherSessions => Family::OwnSessions,
        }
    }

    /// Works on a data object (CRUD, files, index extensions).
    pub fn on_object(self) -> bool {
        self.family() == Family::Data
    }

    /// At most one route may serve it: every action that is not on an object.
    pub fn singleton(self) -> bool {
        !self.on_object()
    }

    /// The HTTP methods that may serve it.
    pub fn methods(self) -> &'static [&'static str] {
        use Action::*;
        match self {
            Get | List | Download | Subscribe | CurrentUser | PublicKeys | Permissions
            | ListSessions => &["GET"],
            Update => &["PATCH", "PUT"],
            Delete | EndSession => &["DELETE"],
            EndOtherSessions => &["DELETE", "POST"],
            Custom => &["GET", "POST", "PUT", "PATCH", "DELETE"],
            _ => &["POST"],
        }
    }

    /// Its path names one row by `{id}`.
    pub fn addresses_row(self) -> bool {
        matches!(
            self,
            Action::Get | Action::Update | Action::Delete | Action::Extend
        )
    }

    /// An `owner: true` rule can let a row's owner in (a custom route's only
    /// when its path names a row).
    pub fn owner_applies(self) -> bool {
        matches!(
            self,
            Action::Get
                | Action::Update
                | Action::Delete
                | Action::List
                | Action::Download
                | Action::Custom
        )
    }

    /// It accepts body fields (`fields` lists them).
    pub fn writes_fields(self) -> bool {
        matches!(self, Action::Create | Action::Update | Action::Custom)
    }

    /// It changes rows: publishes database events, checks ranks, is
    /// throttled when public.
    pub fn changes_rows(self) -> bool {
        matches!(self, Action::Create | Action::Update | Action::Delete)
    }

    /// It reads rows, and a view decides which fields each caller sees.
    pub fn reads_rows(self) -> bool {
        matches!(self, Action::Get | Action::List)
    }

    /// A view decides which fields of the rows it answers each caller sees:
    /// reading routes, and custom routes (whose body may answer any row).
    pub fn has_view(self) -> bool {
        self.reads_rows() || self == Action::Custom
    }

    /// A data action that publishes a route event of its own: all but a
    /// download (bytes, which no event carries) and an extend (the index's
    /// `-extended` event instead).
    pub fn publishes_route_event(self) -> bool {
        self.on_object() && !matches!(self, Action::Download | Action::Extend)
    }

    /// Its answer's status on success.
    pub fn success_status(self) -> u16 {
        if self == Action::Create {
            201
        } else {
            200
        }
    }
}

/// Where hand-written code runs in a generated route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    /// A write's input, parsed and validated: may refuse it or change it.
    Input,
    /// Inside the write's transaction, before its statement.
    Before,
    /// Inside the write's transaction, after its statement.
    After,
    /// Once the write committed; cannot fail the request.
    Committed,
    /// A list's query: narrows it in SQL, so counts and pages stay right.
    Query,
    /// A list's rows, before they are answered.
    Rows,
    /// A get's row, read on a connection (no transaction).
    Row,
}

impl HookPoint {
    pub const ALL: [HookPoint; 7] = [
        HookPoint::Input,
        HookPoint::Before,
        HookPoint::After,
        HookPoint::Committed,
        HookPoint::Query,
        HookPoint::Rows,
        HookPoint::Row,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HookPoint::Input => "input",
            HookPoint::Before => "before",
            HookPoint::After => "after",
            HookPoint::Committed => "committed",
            HookPoint::Query => "query",
            HookPoint::Rows => "rows",
            HookPoint::Row => "row",
        }
    }

    pub fn parse(name: &str) -> Option<HookPoint> {
        HookPoint::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The points a route of `action` offers (a custom route's body is always
    /// hand-written; `committed` may follow it).
    pub fn of(action: Action) -> &'static [HookPoint] {
        use HookPoint::*;
        match action {
            Action::Create | Action::Update => &[Input, Before, After, Committed],
            Action::Delete => &[Before, After, Committed],
            Action::List => &[Query, Rows],
            Action::Get => &[Row],
            Action::Custom => &[Committed],
            _ => &[],
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<String> for Action {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        Action::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
                format!("unknown action \"{name}\"; {}", crate::diag::one_of(&names))
            })
    }
}

/// Who may call a route: `public`, `login`, or a rule naming roles and owners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    Public,
    Login,
    Rule(AuthRule),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthRule {
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub owner: bool,
    /// The system caller (work that no user started) may use the route too.
    #[serde(default)]
    pub system: bool,
}

/// The keywords `auth` accepts besides a rule.
pub const AUTH_KEYWORDS: &[&str] = &["public", "login"];

impl Auth {
    pub fn is_public(&self) -> bool {
        matches!(self, Auth::Public)
    }

    pub fn rule(&self) -> Option<&AuthRule> {
        match self {
            Auth::Rule(rule) => Some(rule),
            _ => None,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Auth {
    /// A keyword or a rule mapping; the loader words the errors of both.
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Auth {
            Keyword(String),
            Rule(AuthRule),
        }
        match Auth::deserialize(de)? {
            Auth::Keyword(k) if k == "public" => Ok(self::Auth::Public),
            Auth::Keyword(k) if k == "login" => Ok(self::Auth::Login),
            Auth::Keyword(k) => Err(serde::de::Error::custom(format!(
                "unknown auth rule \"{k}\"; {}, or a rule {{ roles: [...], owner: true, system: true }}",
                crate::diag::one_of(AUTH_KEYWORDS)
            ))),
            Auth::Rule(rule) => Ok(self::Auth::Rule(rule)),
        }
    }
}

/// What a reading route shows each caller (decision route-views): `full`
/// every field to every caller it lets in; `public` only the fields marked
/// public (with id and isActive); `owner` every field to callers with an
/// admin role and to the row's owner, the public fields to others.
///
/// Kept as text in the model so that each unknown view is its own located
/// error among the others; parsed once validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Full,
    Public,
    Owner,
}

impl View {
    pub const ALL: [View; 3] = [View::Full, View::Public, View::Owner];

    pub fn name(self) -> &'static str {
        match self {
            View::Full => "full",
            View::Public => "public",
            View::Owner => "owner",
        }
    }

    pub fn parse(name: &str) -> Option<View> {
        View::ALL.into_iter().find(|v| v.name() == name)
    }

    /// The names, for messages.
    pub fn names() -> Vec<&'static str> {
        View::ALL.iter().map(|v| v.name()).collect()
    }
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which sessions a write ends (decision: a changed password or a deleted
/// account logs its sessions out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Revokes {
    #[default]
    None,
    /// Every session of the account but the caller's own.
    Others,
    /// Every session of the account.
    All,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Action::ALL {
            assert_eq!(Action::try_from(a.name().to_string()), Ok(a));
        }
    }

    #[test]
    fn unknown_action_lists_the_known_ones() {
        let err = Action::try_from("archive".to_string()).unwrap_err();
        assert!(err.starts_with("unknown action \"archive\"; expected one of \"get\", \"list\""));
        assert!(err.ends_with("\"endOtherSessions\", \"custom\""));
    }

    #[test]
    fn hook_points_parse_by_name_and_fit_their_actions() {
        for p in HookPoint::ALL {
            assert_eq!(HookPoint::parse(p.name()), Some(p));
        }
        assert_eq!(HookPoint::parse("afterCommit"), None);
        assert!(HookPoint::of(Action::Create).contains(&HookPoint::Input));
        assert!(!HookPoint::of(Action::Delete).contains(&HookPoint::Input));
        assert_eq!(HookPoint::of(Action::Get), [HookPoint::Row]);
        assert!(HookPoint::of(Action::Login).is_empty());
    }

    #[test]
    fn views_parse_by_name_only() {
        for v in View::ALL {
            assert_eq!(View::parse(v.name()), Some(v));
        }
        assert_eq!(View::parse("mine"), None);
        assert_eq!(View::names(), ["full", "public", "owner"]);
    }

    #[test]
    fn every_action_has_a_method_and_only_data_actions_are_repeatable() {
        for a in Action::ALL {
            assert!(!a.methods().is_empty());
            assert_eq!(a.singleton(), a.family() != Family::Data);
        }
    }
}
