//! `uses`, `consuming` and `consumers`: what the service does with events of
//! other services (and its own), checked against the models that publish
//! them, so a wrong topic or field fails here, not silently in production.

use super::names::is_lower_camel;
use super::{field_names, placeholders, SYSTEM_FIELDS};
use crate::action::Action;
use crate::diag::{one_of, Diagnostics};
use crate::model::{ConsumerDef, DataObject, Model};

/// The kinds of consumer.
pub const KINDS: [&str; 3] = ["replicate", "route", "hook"];
/// The changes a database event names.
const CHANGES: [&str; 3] = ["created", "updated", "deleted"];

pub(super) fn consumers(m: &Model, d: &mut Diagnostics) {
    for (name, _) in &m.uses {
        if !is_lower_camel(name) {
            d.at_key(
                format!("uses.{name}"),
                "a used service's short name is lowerCamelCase, e.g. auth",
            );
        }
    }
    consuming(m, d);
    let mut kept: Vec<(&str, &str)> = Vec::new();
    for (name, c) in &m.consumers {
        let path = format!("consumers.{name}");
        if !is_lower_camel(name) {
            d.at_key(&path, "a consumer's name is lowerCamelCase, e.g. hosts");
        }
        if !KINDS.contains(&c.kind.as_str()) {
            d.at(
                format!("{path}.kind"),
                format!("unknown kind \"{}\"; {}", c.kind, one_of(&KINDS)),
            );
            continue;
        }
        let Some(source) = source(m, c, &path, d) else {
            continue;
        };
        only_for(c, &path, d);
        match c.kind.as_str() {
            "replicate" => {
                if let Some(into) = replicate(m, source, c, &path, d) {
                    if let Some((other, _)) = kept.iter().find(|(_, i)| *i == into) {
                        d.at(
                            format!("{path}.into"),
                            format!("{into} is kept by the consumer {other} already; a replica has one source"),
                        );
                    }
                    kept.push((name, into));
                }
            }
            "route" => {
                if let Some(object) = event(source, c, &path, d) {
                    route(m, object, c, &path, d);
                }
            }
            _ => {
                if let Some(object) = event(source, c, &path, d) {
                    hook_fields(source, object, c, &path, d);
                }
            }
        }
    }
}

/// The retry, batch, inbox and dead-letter settings.
fn consuming(m: &Model, d: &mut Diagnostics) {
    let c = &m.consuming;
    if c.max_attempts == 0 {
        d.at("consuming.maxAttempts", "must be at least 1");
    }
    if c.batch_size == 0 || c.batch_size > 10_000 {
        d.at("consuming.batchSize", "must be between 1 and 10000");
    }
    if c.retry_backoff_ms == 0 {
        d.at("consuming.retryBackoffMs", "must be at least 1");
    }
    if c.max_retry_backoff_ms < c.retry_backoff_ms {
        d.at(
            "consuming.maxRetryBackoffMs",
            "must be at least retryBackoffMs",
        );
    }
    if c.inbox_retention_hours == 0 {
        d.at("consuming.inboxRetentionHours", "must be at least 1");
    }
    let allowed = ["topicPrefix", "consumer"];
    for p in placeholders(&c.dead_letter) {
        if !allowed.contains(&p.as_str()) {
            d.at(
                "consuming.deadLetter",
                format!("unknown placeholder {{{p}}}; {}", one_of(&allowed)),
            );
        }
    }
    if !c.dead_letter.contains("{consumer}") && !m.consumers.is_empty() {
        d.at(
            "consuming.deadLetter",
            "must contain {consumer}: each consumer dead-letters to a topic of its own",
        );
    }
}

/// The model the consumer reads events of: `from` (a key of `uses`) or this one.
fn source<'a>(m: &'a Model, c: &ConsumerDef, path: &str, d: &mut Diagnostics) -> Option<&'a Model> {
    let Some(from) = c.from.as_deref() else {
        return Some(m);
    };
    if let Some(source) = m.source(Some(from)) {
        return Some(source);
    }
    if m.uses.iter().any(|(n, _)| n == from) {
        // Named, but not loaded: that model's own error says why.
        return None;
    }
    let names: Vec<&str> = m.uses.iter().map(|(n, _)| n.as_str()).collect();
    let known = if names.is_empty() {
        "the model uses no other service; add it under uses: (a name and the path of its model)"
            .to_string()
    } else {
        one_of(&names)
    };
    d.at(
        format!("{path}.from"),
        format!("unknown service \"{from}\"; {known}"),
    );
    None
}

/// Keys that only some kinds take.
fn only_for(c: &ConsumerDef, path: &str, d: &mut Diagnostics) {
    let keys: [(&str, bool, &[&str]); 6] = [
        ("object", c.object.is_some(), &["replicate"]),
        ("into", c.into.is_some(), &["replicate"]),
        ("event", c.event.is_some(), &["route", "hook"]),
        ("route", c.route.is_some(), &["route"]),
        ("input", !c.input.is_empty(), &["route"]),
        ("fields", !c.fields.is_empty(), &["hook"]),
    ];
    for (key, given, kinds) in keys {
        if given && !kinds.contains(&c.kind.as_str()) {
            d.at(
                format!("{path}.{key}"),
                format!(
                    "{key} applies to {} consumers, not {}",
                    kinds.join(" and "),
                    c.kind
                ),
            );
        }
    }
}

/// A replica: `object` of the source, kept in the local object `into`, whose
/// fields the source's rows carry with the same types. Returns `into`.
fn replicate<'a>(
    m: &Model,
    source: &Model,
    c: &'a ConsumerDef,
    path: &str,
    d: &mut Diagnostics,
) -> Option<&'a str> {
    let Some(object) = c.object.as_deref() else {
        d.at(path, "a replicate consumer names the object it copies (object) and the local object that keeps it (into)");
        return None;
    };
    let from = source_object(source, object, &format!("{path}.object"), d)?;
    let Some(into) = c.into.as_deref() else {
        d.at(
            path,
            "a replicate consumer names the local object that keeps the copy (into)",
        );
        return None;
    };
    let Some(local) = m.object(into) else {
        let names: Vec<&str> = m.data_objects.iter().map(|(n, _)| n.as_str()).collect();
        d.at(
            format!("{path}.into"),
            format!("unknown object \"{into}\"; {}", one_of(&names)),
        );
        return None;
    };
    if std::ptr::eq(source, m) && object == into {
        d.at(
            format!("{path}.into"),
            "an object cannot be its own replica",
        );
    }
    replica_object(m, into, local, source, object, from, d);
    Some(into)
}

/// What a replica object may be: read-only, soft-deleted (a deleted row of
/// the source stays, inactive, for the rows that reference it), with fields
/// the source's events carry, of the same types, without unique values
/// (events of two rows may arrive out of order).
fn replica_object(
    m: &Model,
    name: &str,
    local: &DataObject,
    source: &Model,
    object: &str,
    from: &DataObject,
    d: &mut Diagnostics,
) {
    let base = format!("dataObjects.{name}");
    if !local.soft_delete {
        d.at(
            format!("{base}.softDelete"),
            "a replica keeps deleted rows inactive (rows here may reference them): set softDelete: true",
        );
    }
    for (field, f) in &local.fields {
        let at = format!("{base}.fields.{field}");
        match from.fields.iter().find(|(n, _)| n == field) {
            None => d.at_key(
                &at,
                format!(
                    "{object} of {} has no field \"{field}\"; {}",
                    source.service.name,
                    one_of(&field_names(from))
                ),
            ),
            Some((_, sf)) if sf.secret || sf.hash.is_some() => d.at_key(
                &at,
                format!(
                    "{object}.{field} is a secret of {}: its events never carry it",
                    source.service.name
                ),
            ),
            Some((_, sf)) if sf.ty != f.ty => d.at(
                format!("{at}.type"),
                format!(
                    "{object}.{field} of {} is {}; a replica keeps the same type",
                    source.service.name, sf.ty
                ),
            ),
            Some((_, sf)) if f.required && !sf.required => d.at(
                format!("{at}.required"),
                format!(
                    "{object}.{field} is optional at {}, so its copy cannot be required",
                    source.service.name
                ),
            ),
            Some(_) => {}
        }
        if f.unique {
            d.at(
                format!("{at}.unique"),
                "a replica's fields are not unique here: events of two rows may arrive out of order",
            );
        }
        if f.computed.is_some() || f.references.is_some() {
            d.at_key(
                &at,
                "a replica's fields are copies: not computed, no references",
            );
        }
    }
    // A custom route may answer a replica's row (its hand-written body must
    // not change it); generated writes may not.
    for (route, r) in &m.routes {
        let writes = r.object.as_deref() == Some(name)
            && matches!(r.action, Action::Create | Action::Update | Action::Delete);
        if writes {
            d.at(
                format!("routes.{route}.action"),
                format!("{name} is a replica of {object} of {}: it changes only with that service's events", source.service.name),
            );
        }
    }
}

/// `event: <object>.<change>`, a database event of the source. Returns the object.
fn event<'a>(
    source: &'a Model,
    c: &ConsumerDef,
    path: &str,
    d: &mut Diagnostics,
) -> Option<&'a DataObject> {
    let Some(event) = c.event.as_deref() else {
        d.at(
            path,
            format!(
                "a {} consumer names its event: <object>.<created|updated|deleted>",
                c.kind
            ),
        );
        return None;
    };
    let Some((object, change)) = event.split_once('.') else {
        d.at(
            format!("{path}.event"),
            format!("\"{event}\" is not <object>.<change>, e.g. user.deleted"),
        );
        return None;
    };
    let o = source_object(source, object, &format!("{path}.event"), d)?;
    if !CHANGES.contains(&change) {
        d.at(
            format!("{path}.event"),
            format!("unknown change \"{change}\"; {}", one_of(&CHANGES)),
        );
        return None;
    }
    Some(o)
}

/// The object `object` of the source model; an error at `at` when it has none.
fn source_object<'m>(
    source: &'m Model,
    object: &str,
    at: &str,
    d: &mut Diagnostics,
) -> Option<&'m DataObject> {
    let found = source.object(object);
    if found.is_none() {
        let names: Vec<&str> = source
            .data_objects
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        d.at(
            at,
            format!(
                "{} has no object \"{object}\"; {}",
                source.service.name,
                one_of(&names)
            ),
        );
    }
    found
}

/// The fields an event of `o` carries: its own that are not secret, and the system fields.
fn payload_fields(o: &DataObject) -> Vec<&str> {
    let mut out: Vec<&str> = o
        .fields
        .iter()
        .filter(|(_, f)| !f.secret && f.hash.is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    out.extend(SYSTEM_FIELDS.iter().filter(|f| **f != "_owner"));
    out
}

/// A route consumer: a writing route of this service that the system caller
/// may use, and each input it is given from a payload field.
fn route(m: &Model, object: &DataObject, c: &ConsumerDef, path: &str, d: &mut Diagnostics) {
    let Some(name) = c.route.as_deref() else {
        d.at(path, "a route consumer names the route it runs (route)");
        return;
    };
    let Some((_, r)) = m.routes.iter().find(|(n, _)| n == name) else {
        let names: Vec<&str> = m.routes.iter().map(|(n, _)| n.as_str()).collect();
        d.at(
            format!("{path}.route"),
            format!("unknown route \"{name}\"; {}", one_of(&names)),
        );
        return;
    };
    if !matches!(
        r.action,
        Action::Create | Action::Update | Action::Delete | Action::Custom
    ) {
        d.at(
            format!("{path}.route"),
            format!(
                "{name} is {}: a consumer runs create, update, delete and custom routes",
                super::an(&r.action.to_string())
            ),
        );
        return;
    }
    if !r.auth.rule().is_some_and(|rule| rule.system) {
        d.at(
            format!("{path}.route"),
            format!("{name} does not let the system caller in: add system: true to its auth rule"),
        );
    }
    if r.confirm_current {
        d.at(
            format!("{path}.route"),
            format!("{name} asks for a current secret, which no event carries"),
        );
    }
    let has_id = r.path.contains("{id}");
    let mut inputs: Vec<&str> = r.fields.iter().map(String::as_str).collect();
    if has_id {
        inputs.push("id");
    }
    let payload = payload_fields(object);
    for (input, from) in &c.input {
        if !inputs.contains(&input.as_str()) {
            d.at_key(
                format!("{path}.input.{input}"),
                format!("{name} takes no input \"{input}\"; {}", one_of(&inputs)),
            );
        }
        if !payload.contains(&from.as_str()) {
            d.at(
                format!("{path}.input.{input}"),
                format!(
                    "the event carries no field \"{from}\"; {}",
                    one_of(&payload)
                ),
            );
        }
    }
    if has_id && !c.input.iter().any(|(n, _)| n == "id") {
        d.at(
            path,
            format!(
                "{name}'s path names a row: map its id from the event (input: {{ id: <field> }})"
            ),
        );
    }
}

/// A hook's fields: carried by the event.
fn hook_fields(
    source: &Model,
    object: &DataObject,
    c: &ConsumerDef,
    path: &str,
    d: &mut Diagnostics,
) {
    if c.fields.is_empty() {
        d.at(
            path,
            "a hook consumer lists the event's fields its hook receives (fields)",
        );
    }
    let payload = payload_fields(object);
    for (i, f) in c.fields.iter().enumerate() {
        if !payload.contains(&f.as_str()) {
            d.at(
                format!("{path}.fields[{i}]"),
                format!(
                    "events of {} carry no field \"{f}\"; {}",
                    source.service.name,
                    one_of(&payload)
                ),
            );
        }
    }
}
