//! Validate: every semantic rule of the model, all errors reported at once.
//!
//! One module per kind of thing checked: the service's own settings
//! (`service`), data objects and their fields (`objects`), routes as a set
//! and one by one (`routes`), what a route on a data object may say
//! (`data_routes`) and which fields its answers show (`views`), search
//! indexes (`search`), the auth section (`identity`) and consumers of
//! events (`consumers`); `names` says what a
//! name may be.

mod consumers;
mod data_routes;
mod identity;
mod names;
mod objects;
mod routes;
mod search;
mod service;
mod trust;
mod views;

pub use identity::SESSION_FIELDS;

use crate::diag::{one_of, Diagnostics, ModelErrors};
use crate::load::Loaded;
use crate::model::{DataObject, Roles};
use std::collections::BTreeMap;

/// Fields every object has; the model may not declare them.
pub const SYSTEM_FIELDS: &[&str] = &[
    "id",
    "isActive",
    "recordVersion",
    "createdAt",
    "updatedAt",
    "_owner",
];

/// The model's data objects by name, for looking up what a key refers to.
type Objects<'a> = BTreeMap<&'a str, &'a DataObject>;

pub fn validate(loaded: &Loaded) -> Result<(), ModelErrors> {
    let mut d = Diagnostics::new(&loaded.file, &loaded.spans);
    let m = &loaded.model;
    service::service(m, &mut d);
    service::topics(m, &mut d);
    service::roles(m, &mut d);
    service::decisions(m, &mut d);
    service::deploy(m, &mut d);
    let objects: Objects = m
        .data_objects
        .iter()
        .map(|(n, o)| (n.as_str(), o))
        .collect();
    objects::data_objects(m, &objects, &mut d);
    routes::routes(m, &objects, &mut d);
    search::search_indexes(m, &objects, &mut d);
    objects::pointers(m, &objects, &mut d);
    identity::identity(m, &objects, &mut d);
    consumers::consumers(m, &mut d);
    d.finish()
}

/// The names of the model's data objects, for "expected one of" messages.
fn object_names<'a>(objects: &Objects<'a>) -> Vec<&'a str> {
    objects.keys().copied().collect()
}

pub fn placeholders(pattern: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push(rest[start + 1..start + len].to_string());
        rest = &rest[start + len + 1..];
    }
    out
}

/// Each role listed at `path` must be one of `roles.values`.
fn known_roles(r: &Roles, path: &str, listed: &[String], d: &mut Diagnostics) {
    for (i, role) in listed.iter().enumerate() {
        if !r.values.contains(role) {
            d.at(
                format!("{path}[{i}]"),
                format!("unknown role \"{role}\"; {}", one_of(&r.values)),
            );
        }
    }
}

/// `word` with its indefinite article: "a get", "an update", "an Object".
fn an(word: &str) -> String {
    let vowel = word
        .chars()
        .next()
        .is_some_and(|c| "aeiouAEIOU".contains(c));
    format!("{} {word}", if vowel { "an" } else { "a" })
}

fn avoid(names: &[&str]) -> String {
    format!("avoid {}", names.join(", "))
}

pub fn field_names(o: &DataObject) -> Vec<&str> {
    o.fields.iter().map(|(n, _)| n.as_str()).collect()
}
