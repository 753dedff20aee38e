//! The `trusts` section of a service that accepts another service's tokens:
//! the issuer's names, where its keys are, its session topic; and what such a
//! service cannot have, since accounts, sessions and secret hashing live at
//! the issuer.

use super::identity::{service_topic, token_header};
use super::Objects;
use crate::action::{Action, Family};
use crate::diag::Diagnostics;
use crate::model::{Model, Trust};

pub(super) fn trust(m: &Model, t: &Trust, objects: &Objects, d: &mut Diagnostics) {
    for (key, value) in [("issuer", &t.issuer), ("audience", &t.audience)] {
        if value.trim().is_empty() || value.chars().any(char::is_whitespace) {
            d.at(
                format!("trusts.{key}"),
                "must be a non-empty name without spaces, as the issuer's tokens carry it",
            );
        }
    }
    if !jwks_url_is_usable(&t.jwks_url) {
        d.at(
            "trusts.jwksUrl",
            format!(
                "\"{}\" is not an http(s) URL with a host, e.g. \"http://auth-service:3000/v1/.well-known/jwks.json\"",
                t.jwks_url
            ),
        );
    }
    service_topic(m, "trusts.sessionTopic", &t.session_topic, d);
    if t.max_token_ttl_seconds == 0 {
        d.at("trusts.maxTokenTtlSeconds", "must be at least 1");
    }
    if let Some(h) = &t.token_header {
        token_header("trusts.tokenHeader", h, d);
    }
    for (name, r) in &m.routes {
        let issuer_only = match r.action.family() {
            Family::Session | Family::Flow | Family::OwnSessions => true,
            // The stream re-checks sessions in the issuer's database.
            Family::Stream => true,
            Family::Data | Family::Permissions => false,
        };
        if issuer_only {
            d.at(
                format!("routes.{name}.action"),
                format!(
                    "action \"{}\" needs an auth section; this service trusts the tokens of {} and serves no sign-in, sessions or stream",
                    r.action, t.issuer
                ),
            );
        }
        let uploads = r.action == Action::Create
            && r.object
                .as_deref()
                .and_then(|o| objects.get(o))
                .and_then(|o| o.file_field())
                .is_some_and(|(blob, _, _)| r.fields.contains(blob));
        if uploads {
            d.at(
                format!("routes.{name}.fields"),
                "uploads are bounded per user by the auth section's throttle; a trusting service takes no files",
            );
        }
        if r.auth.is_public() && r.action.changes_rows() {
            d.at(
                format!("routes.{name}.auth"),
                "a public write is throttled per address by the auth section; in a trusting service writes need a signed-in caller",
            );
        }
        if r.confirm_current {
            d.at(
                format!("routes.{name}.confirmCurrent"),
                "the current secret is checked at the issuer; a trusting service keeps none",
            );
        }
    }
    for (name, o) in &m.data_objects {
        if o.owner_is_self {
            d.at(
                format!("dataObjects.{name}.ownerIsSelf"),
                "a trusting service has no accounts of its own: a row's owner is the token subject that created it",
            );
        }
        for (field, f) in &o.fields {
            if f.hash.is_some() {
                d.at(
                    format!("dataObjects.{name}.fields.{field}.hash"),
                    "secrets are hashed by the auth core; a trusting service has none (keep secrets at the issuer)",
                );
            }
        }
    }
}

/// `http://` or `https://`, then a host.
fn jwks_url_is_usable(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.and_then(|r| r.split(['/', '?', '#']).next())
        .is_some_and(|host| !host.is_empty() && !host.contains(char::is_whitespace))
}

#[cfg(test)]
mod tests {
    use super::jwks_url_is_usable;

    #[test]
    fn a_jwks_url_needs_a_scheme_and_a_host() {
        assert!(jwks_url_is_usable(
            "http://auth:3000/v1/.well-known/jwks.json"
        ));
        assert!(jwks_url_is_usable("https://auth.example.com/jwks"));
        assert!(!jwks_url_is_usable("auth:3000/jwks"));
        assert!(!jwks_url_is_usable("http:///jwks"));
        assert!(!jwks_url_is_usable("ftp://auth/jwks"));
    }
}
