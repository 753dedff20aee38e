//! Routes: the set (names, endpoints, events and single-route actions each
//! taken once; event topics apart from the derived ones), then each route:
//! what every route must say, and what its action's family allows.

use super::data_routes::data_route;
use super::names::is_lower_camel;
use super::{an, known_roles, placeholders, Objects};
use crate::action::{Action, Auth, Family};
use crate::diag::{one_of, Diagnostics};
use crate::model::{Model, Route};
use crate::naming;
use std::collections::BTreeMap;

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

pub(super) fn routes(m: &Model, objects: &Objects, d: &mut Diagnostics) {
    let mut taken = Taken::default();
    for (name, r) in &m.routes {
        let path = format!("routes.{name}");
        taken.name(name, &path, d);
        route(m, objects, r, &path, d);
        taken.endpoint_event_action(name, r, &path, d);
    }
    event_topics(m, d);
}

/// What the routes so far have taken, which no later route may take again.
#[derive(Default)]
struct Taken<'a> {
    handlers: BTreeMap<String, &'a str>,
    endpoints: BTreeMap<(String, String), &'a str>,
    events: BTreeMap<&'a str, &'a str>,
    singletons: BTreeMap<Action, &'a str>,
}

impl<'a> Taken<'a> {
    /// The route's name, which also names its handler.
    fn name(&mut self, name: &'a str, path: &str, d: &mut Diagnostics) {
        if !is_lower_camel(name) {
            d.at_key(
                path,
                format!("route name \"{name}\" must be lowerCamelCase, e.g. \"getUser\""),
            );
        } else if let Some(other) = self.handlers.insert(naming::snake(name), name) {
            d.at_key(
                path,
                format!("route name collides with \"{other}\" after case conversion"),
            );
        }
    }

    /// Its method and path, its event, and its action when one route at most
    /// may serve it.
    fn endpoint_event_action(
        &mut self,
        name: &'a str,
        r: &'a Route,
        path: &str,
        d: &mut Diagnostics,
    ) {
        let norm = normalize_path(&r.path);
        if let Some(other) = self.endpoints.insert((r.method.clone(), norm), name) {
            d.at(
                format!("{path}.path"),
                format!(
                    "{} {} is already served by route \"{other}\"",
                    r.method, r.path
                ),
            );
        }
        let events = r.event.iter().map(|e| (e, "event".to_string()));
        let custom = (r.publishes.iter().enumerate()).map(|(i, e)| (e, format!("publishes[{i}]")));
        for (event, key) in events.chain(custom) {
            if let Some(other) = self.events.insert(event, name) {
                if other != name {
                    d.at(format!("{path}.{key}"), format!("event \"{event}\" is already published by route \"{other}\"; each route needs its own topic"));
                }
            }
        }
        if r.action.singleton() {
            if let Some(other) = self.singletons.insert(r.action, name) {
                d.at(
                    format!("{path}.action"),
                    format!(
                        "action \"{}\" is already taken by route \"{other}\"",
                        r.action
                    ),
                );
            }
        }
    }
}

/// Route topics must not shadow database or index topics.
fn event_topics(m: &Model, d: &mut Diagnostics) {
    let derived = crate::naming::object_topics(m);
    for (name, r) in &m.routes {
        let events = r.event.iter().map(|e| (e, "event".to_string()));
        let custom = (r.publishes.iter().enumerate()).map(|(i, e)| (e, format!("publishes[{i}]")));
        for (event, key) in events.chain(custom) {
            let topic = crate::naming::route_topic(m, event);
            if derived.contains(&topic) {
                d.at(
                    format!("routes.{name}.{key}"),
                    format!("topic \"{topic}\" is also a database or index event topic"),
                );
            }
        }
    }
}

/// `/users/{id}` and `/users/{userId}` are the same endpoint.
fn normalize_path(p: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in p.chars() {
        match c {
            '{' => {
                depth += 1;
                out.push_str("{}");
            }
            '}' => depth -= 1,
            _ if depth > 0 => {}
            _ => out.push(c),
        }
    }
    out
}

/// One route: what every route must say, then what its action's family allows.
fn route(m: &Model, objects: &Objects, r: &Route, path: &str, d: &mut Diagnostics) {
    account_writes(m, r, path, d);
    method(r, path, d);
    path_shape(r, path, d);
    path_parameters(r, path, d);
    if let Auth::Rule(rule) = &r.auth {
        if rule.roles.is_empty() && !rule.owner && !rule.system {
            d.at(
                format!("{path}.auth"),
                "this rule lets nobody in; name roles, set owner: true, or use `login`",
            );
        }
        known_roles(&m.roles, &format!("{path}.auth.roles"), &rule.roles, d);
        if rule.owner && !r.action.owner_applies() {
            d.at(
                format!("{path}.auth.owner"),
                format!(
                    "owner applies to get, update, delete, list and download routes, not {}",
                    r.action
                ),
            );
        }
    }
    match r.action.family() {
        Family::Data => data_route(m, objects, r, path, d),
        Family::Session
        | Family::Flow
        | Family::Permissions
        | Family::Stream
        | Family::OwnSessions => not_on_object(r, path, d),
    }
}

/// What a route may write to the user object: only an update may ask for the
/// current password, and only a route with a rule may set roles.
fn account_writes(m: &Model, r: &Route, path: &str, d: &mut Diagnostics) {
    // A trusting service has no accounts (its own checks are in `trust`).
    let Some(a) = &m.auth else {
        return;
    };
    let second_factor = a
        .verification
        .as_ref()
        .and_then(|v| v.second_factor_field.as_ref());
    let of_account = r.object.as_deref() == Some(a.user_object.as_str());
    let sensitive = match r.action {
        Action::Update => {
            r.fields.contains(&a.password_field)
                || second_factor.is_some_and(|f| r.fields.contains(f))
        }
        Action::Delete => true,
        _ => false,
    };
    if r.confirm_current && (!of_account || !sensitive || r.auth.is_public()) {
        let changes = match second_factor {
            Some(f) => format!("{} or {f}", a.password_field),
            None => a.password_field.clone(),
        };
        d.at(
            format!("{path}.confirmCurrent"),
            format!(
                "only a signed-in route of {} that changes {changes}, or deletes the account, can ask for the caller's current {}",
                a.user_object, a.password_field
            ),
        );
    }
    if r.auth.is_public()
        && r.object.as_deref() == Some(a.user_object.as_str())
        && r.fields.contains(&a.role_field)
    {
        // An anonymous caller has no rank to grant a role from.
        d.at(
            format!("{path}.fields"),
            format!(
                "a public route cannot set {}.{}: new accounts get roles.default; give the route a rule or drop the field",
                a.user_object, a.role_field
            ),
        );
    }
}

/// A known method, and one that serves the route's action.
fn method(r: &Route, path: &str, d: &mut Diagnostics) {
    if !METHODS.contains(&r.method.as_str()) {
        d.at(
            format!("{path}.method"),
            format!("unknown method \"{}\"; {}", r.method, one_of(METHODS)),
        );
        return;
    }
    let expected = r.action.methods();
    if !expected.contains(&r.method.as_str()) {
        d.at(
            format!("{path}.method"),
            format!(
                "{} route is served with {}, not {}",
                an(r.action.name()),
                expected.join(" or "),
                r.method
            ),
        );
    }
}

fn path_shape(r: &Route, path: &str, d: &mut Diagnostics) {
    if !r.path.starts_with('/')
        || r.path.contains("//")
        || (r.path.len() > 1 && r.path.ends_with('/'))
    {
        d.at(
            format!("{path}.path"),
            format!(
                "\"{}\" is not a route path; expected e.g. \"/users/{{id}}\"",
                r.path
            ),
        );
    }
}

/// A download names its file by `{id}` or by its `by` key, a route on one row
/// names the row by `{id}`, and every other route takes no parameters.
fn path_parameters(r: &Route, path: &str, d: &mut Diagnostics) {
    let action = r.action;
    let params = placeholders(&r.path);
    // endSession names the session it ends.
    let needs_id = action.addresses_row() || action == Action::EndSession;
    if action == Action::Download {
        let key = r.by.as_deref().unwrap_or("id");
        if params != [key] {
            d.at(
                format!("{path}.path"),
                format!("a download route addresses one file: its path must have exactly one parameter, {{{key}}}"),
            );
        }
    } else if action == Action::Custom {
        if !params.is_empty() && params != ["id"] {
            d.at(
                format!("{path}.path"),
                "a custom route's path names one row by {id}, or takes no parameters",
            );
        }
        let owner = r.auth.rule().is_some_and(|rule| rule.owner);
        if owner && params.is_empty() {
            d.at(
                format!("{path}.auth.owner"),
                "owner applies to a custom route only when its path names a row by {id}",
            );
        }
    } else if needs_id && params != ["id"] {
        d.at(
            format!("{path}.path"),
            format!(
                "{} route addresses one row: its path must have exactly one parameter, {{id}}",
                an(action.name())
            ),
        );
    } else if !needs_id && !params.is_empty() {
        d.at(
            format!("{path}.path"),
            format!("{} route takes no path parameters", an(action.name())),
        );
    }
}

/// A route not on a data object (sessions, flows, permissions, the event
/// stream): it names no object and takes none of the keys of a data route.
/// A route on the caller's own sessions needs a signed-in caller.
fn own_sessions(r: &Route, path: &str, d: &mut Diagnostics) {
    if r.auth.is_public() {
        d.at(
            format!("{path}.auth"),
            format!(
                "{} route works on the caller's own sessions, so it needs a signed-in caller: use `login`",
                an(r.action.name())
            ),
        );
    }
}

fn not_on_object(r: &Route, path: &str, d: &mut Diagnostics) {
    let action = r.action;
    if r.object.is_some() {
        d.at(
            format!("{path}.object"),
            format!(
                "{} route works on sessions and names no data object",
                an(action.name())
            ),
        );
    }
    if action == Action::Subscribe && r.auth.is_public() {
        d.at(
            format!("{path}.auth"),
            "the event stream shows each caller what it may see, so it needs a signed-in caller: use `login`",
        );
    }
    if action.family() == Family::OwnSessions {
        own_sessions(r, path, d);
    }
    for (key, set) in [
        ("fields", !r.fields.is_empty()),
        ("include", !r.include.is_empty()),
        ("search", r.search),
        ("view", r.view.is_some()),
        ("by", r.by.is_some()),
        ("cacheControl", r.cache_control.is_some()),
        ("callerFields", !r.caller_fields.is_empty()),
        ("hooks", !r.hooks.is_empty()),
        ("publishes", !r.publishes.is_empty()),
        ("answer", r.answer.is_some()),
    ] {
        if set {
            d.at(
                format!("{path}.{key}"),
                format!("{key} does not apply to {} route", an(action.name())),
            );
        }
    }
}
