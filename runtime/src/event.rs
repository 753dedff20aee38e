//! Events as data: what a route or a change publishes, before any transport.
//! The outbox and the relay (above) carry them to Kafka.

use crate::error::ApiError;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

/// One event to publish.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Uuid,
    pub topic: &'static str,
    pub key: String,
    pub payload: String,
    /// Set on events that end a session, so replicas forget it (see [`Watcher`]).
    pub ends_session: bool,
}

impl Event {
    pub fn new(
        topic: &'static str,
        key: impl ToString,
        payload: &impl Serialize,
    ) -> Result<Self, ApiError> {
        let payload = serde_json::to_string(payload).map_err(ApiError::internal)?;
        Ok(Self::raw(topic, key, payload))
    }
    /// An event whose payload is already JSON text (a route's answer).
    pub fn raw(topic: &'static str, key: impl ToString, payload: String) -> Self {
        Self {
            id: Uuid::new_v4(),
            topic,
            key: key.to_string(),
            payload,
            ends_session: false,
        }
    }
}

/// An event a consumer is running a route for: the route's first outbox
/// write records it in the inbox, in the route's own transaction, so that a
/// redelivery of the event finds it there and changes nothing.
#[derive(Debug)]
pub struct Consumed {
    pub consumer: &'static str,
    pub event_id: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Whether this attempt wrote the inbox row already (a custom route may
    /// publish more than once in its transaction).
    pub recorded: std::sync::atomic::AtomicBool,
}

/// The database and index topics of one data object.
#[derive(Debug)]
pub struct ObjectTopics {
    /// The object's name, e.g. `bookLoan`: updated events carry `old_<name>` and `<name>`.
    pub name: &'static str,
    pub db_created: &'static str,
    pub db_updated: &'static str,
    pub db_deleted: &'static str,
    pub index_created: &'static str,
    pub index_updated: &'static str,
    pub index_deleted: &'static str,
}

impl ObjectTopics {
    /// The row at the root, on the database and the index topic.
    pub fn created(&self, id: Uuid, row: &Value) -> Result<[Event; 2], ApiError> {
        Ok([
            Event::new(self.db_created, id, row)?,
            Event::new(self.index_created, id, row)?,
        ])
    }
    /// `old_<name>`, `<name>` and the changed fields before and after.
    pub fn updated(&self, id: Uuid, old: &Value, new: &Value) -> Result<[Event; 2], ApiError> {
        let (before, after) = changes(old, new);
        let mut payload = Map::new();
        payload.insert(format!("old_{}", self.name), old.clone());
        payload.insert(self.name.to_string(), new.clone());
        payload.insert("oldDataValues".into(), before);
        payload.insert("newDataValues".into(), after);
        Ok([
            Event::new(self.db_updated, id, &payload)?,
            Event::new(self.index_updated, id, new)?,
        ])
    }
    /// The row as it was deleted (soft deletes show `isActive: false`).
    pub fn deleted(&self, id: Uuid, row: &Value) -> Result<[Event; 2], ApiError> {
        Ok([
            Event::new(self.db_deleted, id, row)?,
            Event::new(self.index_deleted, id, row)?,
        ])
    }
}

/// The fields whose values differ, before and after.
pub fn changes(old: &Value, new: &Value) -> (Value, Value) {
    let (mut before, mut after) = (Map::new(), Map::new());
    if let (Some(o), Some(n)) = (old.as_object(), new.as_object()) {
        for (k, v) in n {
            let was = o.get(k).unwrap_or(&Value::Null);
            if was != v {
                before.insert(k.clone(), was.clone());
                after.insert(k.clone(), v.clone());
            }
        }
    }
    (Value::Object(before), Value::Object(after))
}

/// What must hear of events before their transaction commits, and tell the
/// other replicas once it has: the live-session cache forgets ended sessions
/// and changed accounts this way. The outbox sends the returned notices by
/// NOTIFY in the same transaction.
pub trait Watcher: Send + Sync + std::fmt::Debug {
    fn before_commit(&self, events: &[Event]) -> Option<Notices>;
}

/// NOTIFY payloads on one channel, sent when the transaction commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notices {
    pub channel: &'static str,
    pub payloads: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_hold_only_the_fields_that_differ() {
        let old = json!({"id": 1, "name": "Ann", "age": 30});
        let new = json!({"id": 1, "name": "Anne", "age": 30, "city": "Oslo"});
        let (before, after) = changes(&old, &new);
        assert_eq!(before, json!({"name": "Ann", "city": null}));
        assert_eq!(after, json!({"name": "Anne", "city": "Oslo"}));
    }

    #[test]
    fn an_update_carries_both_rows_and_the_change() {
        let topics = ObjectTopics {
            name: "bookLoan",
            db_created: "c",
            db_updated: "db-updated",
            db_deleted: "d",
            index_created: "ic",
            index_updated: "index-updated",
            index_deleted: "id",
        };
        let id = Uuid::new_v4();
        let [db, index] = topics
            .updated(id, &json!({"due": 1}), &json!({"due": 2}))
            .expect("rows serialize");
        assert_eq!((db.topic, index.topic), ("db-updated", "index-updated"));
        assert_eq!(db.key, id.to_string());
        let payload: Value = serde_json::from_str(&db.payload).expect("JSON payload");
        assert_eq!(payload["old_bookLoan"], json!({"due": 1}));
        assert_eq!(payload["bookLoan"], json!({"due": 2}));
        assert_eq!(payload["oldDataValues"], json!({"due": 1}));
        assert_eq!(payload["newDataValues"], json!({"due": 2}));
        assert_eq!(index.payload, r#"{"due":2}"#);
    }
}
