//! Every name the generator derives from the model's names: Rust modules,
//! identifiers, types and constants, SQL columns, list names, topics and
//! search indexes. One place, so that two derivations never disagree.

use crate::model::Model;
use heck::{ToSnakeCase, ToUpperCamelCase};

/// `userGroup` -> `user_group`: a module, function, field identifier or
/// SQL column.
pub fn snake(name: &str) -> String {
    name.to_snake_case()
}

/// `userGroup` -> `UserGroup`: a Rust type.
pub fn camel(name: &str) -> String {
    name.to_upper_camel_case()
}

/// `userGroup` -> `USER_GROUP`: a Rust constant or static.
pub fn constant(name: &str) -> String {
    name.to_snake_case().to_uppercase()
}

/// `userGroup` -> `userGroups`: the dataName of a list route.
pub fn plural(name: &str) -> String {
    if name.ends_with('s') {
        format!("{name}es")
    } else if let Some(stem) = name.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{name}s")
    }
}

/// `userGroupMember` -> `usergroupmember`, as the seed's topics spell objects.
pub fn topic_object(name: &str) -> String {
    name.to_lowercase()
}

/// The search index of `object`: `{searchIndexPrefix}_{object lower-cased}`.
pub fn index_name(m: &Model, object: &str) -> String {
    format!("{}_{}", m.topics.search_index_prefix, object.to_lowercase())
}

/// A topic pattern with the model's prefixes and `pairs` filled in.
pub fn fill(pattern: &str, m: &Model, pairs: &[(&str, &str)]) -> String {
    let mut out = pattern
        .replace("{topicPrefix}", &m.topics.topic_prefix)
        .replace("{searchIndexPrefix}", &m.topics.search_index_prefix);
    for (k, v) in pairs {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// The topic of a route's event.
pub fn route_topic(m: &Model, event: &str) -> String {
    fill(&m.topics.route_event, m, &[("event", event)])
}

/// The topic of `change` (created, updated, ...) of `object` under a
/// database or index event pattern.
pub fn change_topic(pattern: &str, m: &Model, object: &str, change: &str) -> String {
    fill(
        pattern,
        m,
        &[("object", &topic_object(object)), ("change", change)],
    )
}

/// The changes that database and index events report.
pub const CHANGES: [&str; 3] = ["created", "updated", "deleted"];

/// Every database and index topic of the model.
pub fn object_topics(m: &Model) -> Vec<String> {
    let mut out = Vec::new();
    for (name, _) in &m.data_objects {
        for pattern in [&m.topics.db_event, &m.topics.index_event] {
            out.extend(CHANGES.map(|c| change_topic(pattern, m, name, c)));
        }
    }
    out
}

/// `DBEVENT_USER_CREATED`: the constant of a change topic in `topics.rs`.
pub fn change_const(label: &str, object: &str, change: &str) -> String {
    format!("{label}_{}_{}", constant(object), change.to_uppercase())
}

/// `ROUTE_USER_CREATED`: the constant of a route event's topic.
pub fn route_event_const(event: &str) -> String {
    format!("ROUTE_{}", constant(event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_one_convention() {
        assert_eq!(snake("userGroupMember"), "user_group_member");
        assert_eq!(camel("userGroupMember"), "UserGroupMember");
        assert_eq!(constant("user-created"), "USER_CREATED");
        assert_eq!(
            change_const("INDEX", "userGroup", "extended"),
            "INDEX_USER_GROUP_EXTENDED"
        );
        assert_eq!(route_event_const("user-created"), "ROUTE_USER_CREATED");
    }

    #[test]
    fn plurals() {
        assert_eq!(plural("user"), "users");
        assert_eq!(plural("address"), "addresses");
        assert_eq!(plural("property"), "properties");
    }
}
