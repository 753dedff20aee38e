//! The auth section: the user object and its fields, tokens and throttles,
//! the bootstrap super-admin, cookies, verification by one-time codes, the
//! topics the service publishes itself, and the routes sessions and flows need.

use super::names::is_lower_camel;
use super::{avoid, field_names, object_names, Objects};
use crate::action::{Action, Family};
use crate::diag::{one_of, Diagnostics};
use crate::model::{Cookies, DataObject, Field, FieldType, Identity, Model, Verification};
use std::collections::BTreeSet;

const SECOND_FACTOR_MODES: &[&str] = &["off", "optional", "required"];
const SAME_SITE: &[&str] = &["Strict", "Lax", "None"];

/// Keys of a session in its events; device fields may not reuse them.
pub const SESSION_FIELDS: &[&str] = &[
    "sessionId",
    "userId",
    "accessToken",
    "refreshToken",
    "createdAt",
    "expiredAt",
];

/// A service either issues identities (`auth:`) or trusts an issuer (`trusts:`).
pub(super) fn identity(m: &Model, objects: &Objects, d: &mut Diagnostics) {
    match (&m.auth, &m.trusts) {
        (Some(a), None) => issuer(m, a, objects, d),
        (None, Some(t)) => super::trust::trust(m, t, objects, d),
        (Some(_), Some(_)) => d.at_key(
            "trusts",
            "a service either issues identities (auth) or trusts an issuer (trusts), not both",
        ),
        (None, None) => d.at_key(
            "service",
            "the model needs an auth section (this service signs accounts in) or a trusts section (it accepts another service's tokens)",
        ),
    }
}

fn issuer(m: &Model, a: &Identity, objects: &Objects, d: &mut Diagnostics) {
    let Some(user) = objects.get(a.user_object.as_str()) else {
        d.at(
            "auth.userObject",
            format!(
                "unknown data object \"{}\"; {}",
                a.user_object,
                one_of(&object_names(objects))
            ),
        );
        return;
    };
    user_fields(m, a, user, d);
    token_limits(a, d);
    upload_limit(m, a, d);
    service_topic(m, "auth.sessionTopic", &a.session_topic, d);
    device_fields(a, d);
    super_admin_role(m, a, d);
    bootstrap(a, user, d);
    for action in Action::ALL
        .into_iter()
        .filter(|a| a.family() == Family::Session)
    {
        served(m, action, "the auth section", d);
    }
    if let Some(t) = &a.token_header {
        token_header("auth.tokenHeader", t, d);
    }
    if let Some(c) = &a.cookies {
        cookies(c, d);
    }
    match &a.verification {
        Some(v) => verification(m, a, v, user, d),
        None => {
            for (name, r) in &m.routes {
                if r.action.family() == Family::Flow {
                    d.at(
                        format!("routes.{name}.action"),
                        format!("action \"{}\" needs an auth.verification section", r.action),
                    );
                }
            }
        }
    }
}

/// A header that may carry the access token besides `Authorization`.
pub(super) fn token_header(path: &str, t: &str, d: &mut Diagnostics) {
    let valid = !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid || t == "authorization" || t == "cookie" {
        d.at(
            path,
            format!("\"{t}\" is not a usable header name; expected lower-case letters, digits and '-', e.g. \"my-service-access-token\""),
        );
    }
}

/// The field of the user object called `name`.
fn user_field<'a>(user: &'a DataObject, name: &str) -> Option<&'a Field> {
    user.fields.iter().find(|(n, _)| n == name).map(|(_, f)| f)
}

/// The user field that `auth.{key}` names; an error when there is none.
fn named_field<'a>(
    a: &Identity,
    user: &'a DataObject,
    key: &str,
    name: &str,
    d: &mut Diagnostics,
) -> Option<&'a Field> {
    let field = user_field(user, name);
    if field.is_none() {
        d.at(
            format!("auth.{key}"),
            format!(
                "\"{name}\" is not a field of {}; {}",
                a.user_object,
                one_of(&field_names(user))
            ),
        );
    }
    field
}

/// The login, password and role fields, each of the shape sign-in needs.
fn user_fields(m: &Model, a: &Identity, user: &DataObject, d: &mut Diagnostics) {
    let login = named_field(a, user, "loginField", &a.login_field, d);
    if login.is_some_and(|f| !f.is(FieldType::String) || !f.unique || !f.required) {
        d.at(
            "auth.loginField",
            "the login field must be a required, unique String",
        );
    }
    let password = named_field(a, user, "passwordField", &a.password_field, d);
    if password.is_some_and(|f| !f.secret || f.hash.is_none() || !f.required) {
        d.at(
            "auth.passwordField",
            "the password field must be required, secret and hashed (hash: argon2id)",
        );
    }
    match named_field(a, user, "roleField", &a.role_field, d) {
        None => {}
        Some(f) if !f.is(FieldType::String) || !f.required || f.allowed_values.is_empty() => d.at(
            "auth.roleField",
            "the role field must be a required String with allowedValues",
        ),
        Some(f) => {
            for v in &f.allowed_values {
                if !m.roles.values.contains(v) {
                    d.at(
                        "auth.roleField",
                        format!(
                            "allowed value \"{v}\" is not a role; {}",
                            one_of(&m.roles.values)
                        ),
                    );
                }
            }
        }
    }
}

/// Token lifetimes and throttle limits.
fn token_limits(a: &Identity, d: &mut Diagnostics) {
    if a.access_token_ttl_seconds == 0 || a.access_token_ttl_seconds >= a.refresh_token_ttl_seconds
    {
        d.at(
            "auth.accessTokenTtlSeconds",
            "must be at least 1 and shorter than refreshTokenTtlSeconds",
        );
    }
    // A token signed just before its key is replaced must verify until it expires.
    if a.key_overlap() < a.access_token_ttl_seconds {
        d.at(
            "auth.keyOverlapSeconds",
            "must be at least accessTokenTtlSeconds: a token signed just before its key is replaced lives that long",
        );
    }
    // A session outlives its access token, and its idle limit fits in its lifetime.
    if a.session_lifetime() <= a.access_token_ttl_seconds {
        d.at(
            "auth.sessionLifetimeSeconds",
            "must be longer than accessTokenTtlSeconds",
        );
    }
    if a.session_idle() <= a.access_token_ttl_seconds || a.session_idle() > a.session_lifetime() {
        d.at(
            "auth.sessionIdleSeconds",
            "must be longer than accessTokenTtlSeconds and at most sessionLifetimeSeconds",
        );
    }
    for (key, v) in [
        ("windowSeconds", a.throttle.window_seconds),
        ("loginPerAccount", a.throttle.login_per_account),
        ("loginPerAddress", a.throttle.login_per_address),
        (
            "publicWritesPerAddress",
            a.throttle.public_writes_per_address,
        ),
    ] {
        if v == 0 {
            d.at(format!("auth.throttle.{key}"), "must be at least 1");
        }
    }
}

/// `throttle.uploadsPerUser`: at least 1, and required once a create route
/// takes a file, so that no model forgets to bound what one user stores.
fn upload_limit(m: &Model, a: &Identity, d: &mut Diagnostics) {
    let uploads = m.routes.iter().any(|(_, r)| {
        r.action == Action::Create
            && r.object
                .as_deref()
                .and_then(|o| m.object(o))
                .and_then(|o| o.file_field())
                .is_some_and(|(blob, _, _)| r.fields.contains(blob))
    });
    match a.throttle.uploads_per_user {
        Some(0) => d.at("auth.throttle.uploadsPerUser", "must be at least 1"),
        None if uploads => d.at(
            "auth.throttle.uploadsPerUser",
            "is required: a create route takes a file (uploads per user per window)",
        ),
        _ => {}
    }
}

/// `deviceFields`: keys a session records beside its own.
fn device_fields(a: &Identity, d: &mut Diagnostics) {
    let mut seen = BTreeSet::new();
    for (i, f) in a.device_fields.iter().enumerate() {
        if !is_lower_camel(f) {
            d.at(
                format!("auth.deviceFields[{i}]"),
                format!("\"{f}\" must be lowerCamelCase"),
            );
        } else if SESSION_FIELDS.contains(&f.as_str()) {
            d.at(
                format!("auth.deviceFields[{i}]"),
                format!(
                    "\"{f}\" is already a session field; {}",
                    avoid(SESSION_FIELDS)
                ),
            );
        } else if !seen.insert(f) {
            d.at(
                format!("auth.deviceFields[{i}]"),
                format!("\"{f}\" is listed twice"),
            );
        }
    }
}

fn super_admin_role(m: &Model, a: &Identity, d: &mut Diagnostics) {
    if !m.roles.values.contains(&a.super_admin_role) {
        d.at(
            "auth.superAdminRole",
            format!(
                "unknown role \"{}\"; {}",
                a.super_admin_role,
                one_of(&m.roles.values)
            ),
        );
    } else if let Some(top) = m.roles.ranks.get(&a.super_admin_role) {
        // The last account of the top role is kept: it must be one role.
        let rivals: Vec<&String> = m
            .roles
            .ranks
            .iter()
            .filter(|(r, rank)| *r != &a.super_admin_role && *rank >= top)
            .map(|(r, _)| r)
            .collect();
        if !rivals.is_empty() {
            d.at(
                "auth.superAdminRole",
                format!(
                    "\"{}\" must outrank every other role in roles.ranks, but \"{}\" ranks as high",
                    a.super_admin_role, rivals[0]
                ),
            );
        }
    }
}

/// `bootstrapValues`: text fields of the user object, and a value for every
/// required field the bootstrap super-admin would otherwise lack.
fn bootstrap(a: &Identity, user: &DataObject, d: &mut Diagnostics) {
    for name in a.bootstrap_values.keys() {
        match user_field(user, name) {
            Some(f) if f.is_text() && !f.secret => {}
            _ => d.at(
                format!("auth.bootstrapValues.{name}"),
                format!("\"{name}\" is not a text field of {}", a.user_object),
            ),
        }
    }
    for (name, f) in &user.fields {
        let filled = [&a.login_field, &a.password_field, &a.role_field].contains(&name)
            || a.bootstrap_values.contains_key(name);
        if f.required && f.default.is_none() && f.computed.is_none() && !filled {
            d.at(
                "auth.bootstrapValues",
                format!(
                    "required field \"{name}\" of {} needs a value for the bootstrap super-admin",
                    a.user_object
                ),
            );
        }
    }
}

/// Some route must serve `action`, which `needs` says who needs.
fn served(m: &Model, action: Action, needs: &str, d: &mut Diagnostics) {
    if !m.routes.iter().any(|(_, r)| r.action == action) {
        d.at_key(
            "routes",
            format!("no route serves the {action} action; {needs} needs one"),
        );
    }
}

/// A topic the service publishes beside the model's derived ones.
pub(super) fn service_topic(m: &Model, path: &str, topic: &str, d: &mut Diagnostics) {
    if topic.is_empty()
        || !topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        d.at(
            path,
            "a topic name may contain only letters, digits, '-', '_' and '.'",
        );
    } else if crate::naming::object_topics(m).contains(&topic.to_string())
        || m.routes.iter().any(|(_, r)| {
            r.event
                .as_ref()
                .is_some_and(|e| crate::naming::route_topic(m, e) == topic)
        })
    {
        d.at(
            path,
            format!("topic \"{topic}\" is already used by another event"),
        );
    }
}

fn cookies(c: &Cookies, d: &mut Diagnostics) {
    let names = [
        ("access", &c.access),
        ("refresh", &c.refresh),
        ("csrf", &c.csrf),
        ("csrfHeader", &c.csrf_header),
    ];
    let mut seen = BTreeSet::new();
    for (key, name) in names {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_'));
        if !valid {
            d.at(
                format!("auth.cookies.{key}"),
                format!("\"{name}\" is not a usable name; expected letters, digits, '-' and '_'"),
            );
        } else if key != "csrfHeader" && !seen.insert(name.as_str()) {
            d.at(
                format!("auth.cookies.{key}"),
                format!("cookie \"{name}\" is named twice"),
            );
        }
    }
    if !SAME_SITE.contains(&c.same_site.as_str()) {
        d.at(
            "auth.cookies.sameSite",
            format!(
                "unknown SameSite \"{}\"; {}",
                c.same_site,
                one_of(SAME_SITE)
            ),
        );
    }
}

/// `auth.verification`: one-time codes by email, the user fields they
/// switch, their limits, the topic that delivers them and the routes of the
/// flows.
fn verification(m: &Model, a: &Identity, v: &Verification, user: &DataObject, d: &mut Diagnostics) {
    let user_object = &a.user_object;
    let login = &a.login_field;
    // Codes are sent to the login: it must be an email address.
    if user_field(user, login).is_some_and(|f| f.format.as_deref() != Some("email")) {
        d.at(
            "auth.loginField",
            format!("auth.verification sends one-time codes by email: the login field \"{login}\" needs format: email"),
        );
    }
    optional_boolean(user, user_object, "verifiedField", &v.verified_field, d);
    if !SECOND_FACTOR_MODES.contains(&v.second_factor.as_str()) {
        d.at(
            "auth.verification.secondFactor",
            format!(
                "unknown mode \"{}\"; {}",
                v.second_factor,
                one_of(SECOND_FACTOR_MODES)
            ),
        );
    }
    match (&v.second_factor_field, v.second_factor.as_str()) {
        (Some(f), _) => optional_boolean(user, user_object, "secondFactorField", f, d),
        (None, "optional") => d.at(
            "auth.verification.secondFactor",
            "an optional second factor needs secondFactorField, the Boolean that switches it on",
        ),
        _ => {}
    }
    if let Some(name) = &v.locale_field {
        if user_field(user, name).is_none_or(|f| !f.is(FieldType::String)) {
            d.at(
                "auth.verification.localeField",
                format!("\"{name}\" is not a String field of {user_object}"),
            );
        }
    }
    if !(4..=10).contains(&v.code_digits) {
        d.at("auth.verification.codeDigits", "must be between 4 and 10");
    }
    for (key, n) in [
        ("codeTtlSeconds", v.code_ttl_seconds),
        ("maxAttempts", v.max_attempts),
        ("requestsPerAccount", v.requests_per_account),
        ("requestsPerAddress", v.requests_per_address),
        ("checksPerAccount", v.checks_per_account),
    ] {
        if n == 0 {
            d.at(format!("auth.verification.{key}"), "must be at least 1");
        }
    }
    service_topic(m, "auth.verification.deliveryTopic", &v.delivery_topic, d);
    if v.delivery_topic == a.session_topic {
        d.at(
            "auth.verification.deliveryTopic",
            "must differ from auth.sessionTopic",
        );
    }
    for action in Action::ALL
        .into_iter()
        .filter(|a| a.family() == Family::Flow)
    {
        if action == Action::SecondFactor && v.second_factor == "off" {
            continue;
        }
        served(m, action, "auth.verification", d);
    }
}

/// A Boolean of the user object that verification switches: optional, with
/// a default.
fn optional_boolean(
    user: &DataObject,
    user_object: &str,
    key: &str,
    name: &str,
    d: &mut Diagnostics,
) {
    match user_field(user, name) {
        Some(f) if f.is(FieldType::Boolean) && !f.required && f.default.is_some() => {}
        _ => d.at(
            format!("auth.verification.{key}"),
            format!("\"{name}\" must be an optional Boolean field of {user_object} with a default"),
        ),
    }
}
