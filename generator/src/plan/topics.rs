//! Every topic the service publishes, and the database constraints whose
//! violations name a field.

use super::identity::IdentityPlan;
use super::object::ObjectPlan;
use super::route::{RouteKind, RoutePlan};
use super::search::SearchPlan;
use crate::model::Model;
use crate::naming::change_topic;

#[derive(Debug)]
pub struct TopicPlan {
    /// Rust constant name, e.g. `DBEVENT_USER_CREATED`.
    pub const_name: String,
    pub name: String,
    pub kind: TopicKind,
    /// The data object or route it belongs to.
    pub owner: String,
    /// created, updated or deleted for database and index events; empty otherwise.
    pub change: &'static str,
    pub description: String,
}

/// What a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    /// A row was created, updated or deleted.
    DbEvent,
    /// A search document changed, or was extended by another service.
    IndexEvent,
    /// A route succeeded; the payload is its answer.
    RouteEvent,
    /// A session was created, updated or deleted.
    SessionEvent,
    /// A one-time code for a mailer to deliver.
    DeliveryRequest,
    /// A custom route's hand-written body published it; the payload is a row.
    CustomEvent,
    /// An event a consumer gave up on: the original record, with `dlq_*` headers.
    DeadLetter,
}

impl TopicKind {
    /// Its name in the docs and the AsyncAPI document.
    pub fn name(self) -> &'static str {
        match self {
            TopicKind::DbEvent => "dbEvent",
            TopicKind::IndexEvent => "indexEvent",
            TopicKind::RouteEvent => "routeEvent",
            TopicKind::SessionEvent => "sessionEvent",
            TopicKind::DeliveryRequest => "deliveryRequest",
            TopicKind::CustomEvent => "customEvent",
            TopicKind::DeadLetter => "deadLetter",
        }
    }
}

impl std::fmt::Display for TopicKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug)]
pub struct ConstraintPlan {
    pub name: String,
    /// The JSON field name a client sees.
    pub field: String,
    /// unique or foreignKey.
    pub kind: &'static str,
}

/// Database and index events of each object, the indexes' -extended events,
/// route events, then session and delivery events.
pub fn topics(
    m: &Model,
    objects: &[ObjectPlan],
    search: &SearchPlan,
    routes: &[RoutePlan],
    identity: Option<&IdentityPlan>,
) -> Vec<TopicPlan> {
    let mut topics: Vec<TopicPlan> = objects
        .iter()
        .filter(|o| o.replica_of.is_none())
        .flat_map(change_topics)
        .collect();
    topics.extend(search.indexes.iter().map(|i| TopicPlan {
        const_name: i.extended_topic_const.clone(),
        name: change_topic(&m.topics.index_event, m, &i.object, "extended"),
        kind: TopicKind::IndexEvent,
        change: "extended",
        owner: i.object.clone(),
        description: format!(
            "Another service added data under a {} document's extends; the payload holds only what was added.",
            i.object
        ),
    }));
    topics.extend(routes.iter().filter_map(|r| {
        Some(TopicPlan {
            const_name: r.topic_const.clone()?,
            name: r.topic.clone()?,
            kind: TopicKind::RouteEvent,
            change: "",
            owner: r.name.clone(),
            description: format!("Route {} succeeded.", r.name),
        })
    }));
    for r in routes {
        if let (RouteKind::Custom(c), Some(object)) = (&r.kind, &r.object) {
            topics.extend(c.publishes.iter().map(|p| TopicPlan {
                const_name: p.topic_const.clone(),
                name: p.topic.clone(),
                kind: TopicKind::CustomEvent,
                change: "",
                owner: object.clone(),
                description: format!(
                    "Route {} published `{}`; the payload is the {object} row.",
                    r.name, p.event
                ),
            }));
        }
    }
    for (name, _) in &m.consumers {
        topics.push(TopicPlan {
            const_name: super::consumers::dead_letter_const(name),
            name: super::consumers::dead_letter(m, name),
            kind: TopicKind::DeadLetter,
            owner: name.clone(),
            change: "",
            description: "Events this consumer gave up on after its attempts: the original key, payload and headers, with dlq_error, dlq_attempts, dlq_consumer, dlq_topic, dlq_partition and dlq_offset.".into(),
        });
    }
    // A trusting service reads its issuer's session topic; it publishes none.
    let Some(identity) = identity else {
        return topics;
    };
    topics.push(TopicPlan {
        const_name: identity.session_topic_const.clone(),
        name: identity.session_topic.clone(),
        kind: TopicKind::SessionEvent,
        change: "",
        owner: "sessions".into(),
        description: "A session was created (login), updated (refresh) or deleted (logout, revocation, expiry).".into(),
    });
    if let Some(f) = &identity.flows {
        topics.push(TopicPlan {
            const_name: f.delivery_topic_const.clone(),
            name: f.delivery_topic.clone(),
            kind: TopicKind::DeliveryRequest,
            change: "",
            owner: "verification".into(),
            description:
                "A one-time code to deliver by email (verification, password reset, second factor)."
                    .into(),
        });
    }
    topics
}

/// The database and index events of one object.
fn change_topics(o: &ObjectPlan) -> Vec<TopicPlan> {
    let mut out = Vec::new();
    for (kind, names, consts) in [
        (TopicKind::DbEvent, &o.db_topics, &o.db_consts),
        (TopicKind::IndexEvent, &o.index_topics, &o.index_consts),
    ] {
        for ((change, name), (_, const_name)) in names.each().into_iter().zip(consts.each()) {
            out.push(TopicPlan {
                const_name: const_name.clone(),
                name: name.clone(),
                kind,
                change,
                owner: o.name.clone(),
                description: format!("A {} row was {change}.", o.name),
            });
        }
    }
    out
}

/// Unique and foreign-key constraints, for mapping database errors to fields.
pub fn constraints(objects: &[ObjectPlan]) -> Vec<ConstraintPlan> {
    let mut constraints = Vec::new();
    for o in objects {
        let field_of_column = |col: &str| {
            o.columns
                .iter()
                .find(|c| c.column == col)
                .map(|c| c.name.clone())
                .unwrap_or_default()
        };
        for u in &o.uniques {
            let last = u.columns.rsplit(", ").next().unwrap_or_default();
            constraints.push(ConstraintPlan {
                name: u.constraint.clone(),
                field: field_of_column(last),
                kind: "unique",
            });
        }
        for fk in &o.foreign_keys {
            constraints.push(ConstraintPlan {
                name: fk.constraint.clone(),
                field: field_of_column(&fk.column),
                kind: "foreignKey",
            });
        }
    }
    constraints
}
