//! The AsyncAPI 3.0 document of every topic the service publishes (and, for a
//! service that trusts another's tokens, the session topic it reads), built
//! from the plan as data. Payload schemas are shared with the OpenAPI document:
//! a route event's payload is the route's answer.

use crate::openapi::{object_schema, session_schema};
use crate::plan::{ConsumerPlan, IdentityPlan, ObjectPlan, Plan, TopicKind, TopicPlan, TrustPlan};
use serde_json::{json, Map, Value};

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// The row as events carry it (blobs are descriptors, as in answers).
fn event_row(o: &ObjectPlan) -> Value {
    let mut s = object_schema(&o.visible);
    let omitted: Vec<&str> = o
        .columns
        .iter()
        .filter(|c| c.secret)
        .map(|c| c.name.as_str())
        .collect();
    if !omitted.is_empty() {
        s["x-omitted-fields"] = json!(omitted);
        s["description"] = json!(format!(
            "Secret fields ({}) are never published.",
            omitted.join(", ")
        ));
    }
    s
}

fn updated(o: &ObjectPlan) -> Value {
    let row = schema_ref(&format!("{}Event", o.struct_name));
    let mut props = Map::new();
    props.insert(format!("old_{}", o.name), row.clone());
    props.insert(o.name.clone(), row);
    let changed = json!({ "type": "object", "description": "The changed fields only" });
    props.insert("oldDataValues".into(), changed.clone());
    props.insert("newDataValues".into(), changed);
    let required: Vec<&String> = props.keys().collect();
    json!({ "type": "object", "properties": props, "required": required })
}

/// A trusting service reads its issuer's session events: what it reads of
/// them is the contract it holds the issuer to.
fn receive_sessions(
    t: &TrustPlan,
    channels: &mut Map<String, Value>,
    operations: &mut Map<String, Value>,
    messages: &mut Map<String, Value>,
    schemas: &mut Map<String, Value>,
) {
    let topic = &t.session_topic;
    let name = format!("{topic}-received");
    schemas.insert(
        "ReceivedSessionEvent".into(),
        json!({
            "type": "object",
            "description": "What this service reads of the issuer's session events; other fields are ignored.",
            "properties": {
                "name": { "enum": ["sessionCreated", "sessionUpdated", "sessionDeleted"] },
                "timestamp": { "type": "string", "format": "date-time" },
                "sessionId": { "type": "string", "format": "uuid" },
                "payload": { "type": "object", "properties": { "session": {
                    "type": "object",
                    "properties": {
                        "sessionId": { "type": "string", "format": "uuid" },
                        "role": { "type": "string", "description": "sessionUpdated: the session's role from now on" },
                    },
                    "required": ["sessionId"],
                } }, "required": ["session"] },
            },
            "required": ["name", "timestamp", "payload"],
        }),
    );
    messages.insert(
        name.clone(),
        json!({
            "name": name,
            "title": format!("session events of {}", t.issuer),
            "summary": "sessionDeleted revokes the session's tokens on every replica; sessionUpdated with a role changes the session's role.",
            "contentType": "application/json",
            "payload": schema_ref("ReceivedSessionEvent"),
            "bindings": { "kafka": { "key": { "type": "string", "description": "The session id" } } },
        }),
    );
    channels.insert(
        topic.clone(),
        json!({
            "address": topic,
            "description": format!("The session topic of {}, read whole by every replica (assigned, no shared consumer group).", t.issuer),
            "messages": { name.clone(): { "$ref": format!("#/components/messages/{name}") } },
        }),
    );
    operations.insert(
        format!("receive-{topic}"),
        json!({
            "action": "receive",
            "channel": { "$ref": format!("#/channels/{topic}") },
            "messages": [{ "$ref": format!("#/channels/{topic}/messages/{name}") }],
        }),
    );
}

/// What a consumer reads of the events of its topics: the fields it decodes
/// (a replica's kept fields, a hook's, a route's inputs), under the object's
/// name for updated events. Other fields are ignored; these are the contract
/// it holds the publishing service to.
fn receive_consumed(
    c: &ConsumerPlan,
    channels: &mut Map<String, Value>,
    operations: &mut Map<String, Value>,
    messages: &mut Map<String, Value>,
) {
    let fields: Vec<(String, &'static str, Option<&'static str>, bool)> =
        match (&c.replica, &c.hook, &c.route) {
            (Some(r), _, _) => r
                .fields
                .iter()
                .map(|f| (f.name.clone(), f.json_type, f.json_format, !f.nullable))
                .collect(),
            (_, Some(h), _) => h
                .fields
                .iter()
                .map(|f| (f.name.clone(), f.json_type, f.json_format, !f.nullable))
                .collect(),
            (_, _, Some(r)) => r
                .id_from
                .iter()
                .map(|f| (f.clone(), "string", Some("uuid"), true))
                .chain(
                    r.body
                        .iter()
                        .map(|(_, f)| (f.clone(), "string", None, false)),
                )
                .collect(),
            _ => Vec::new(),
        };
    let mut props = Map::new();
    for (name, ty, format, _) in &fields {
        let mut p = json!({ "type": ty });
        if let Some(f) = format {
            p["format"] = json!(f);
        }
        props.insert(name.clone(), p);
    }
    let required: Vec<&String> = fields.iter().filter(|f| f.3).map(|f| &f.0).collect();
    let row = json!({ "type": "object", "properties": props, "required": required });
    for t in &c.topics {
        let name = format!("{}-received-by-{}", t.name, c.name);
        let payload = if t.change == "updated" {
            json!({
                "type": "object",
                "properties": { c.source_object.clone(): row.clone() },
                "required": [c.source_object],
            })
        } else {
            row.clone()
        };
        messages.insert(
            name.clone(),
            json!({
                "name": name,
                "title": format!("{} of {} ({} {}), as {} reads it", t.name, c.source_service, c.source_object, t.change, c.name),
                "summary": format!("{}: {}.", c.name, c.summary),
                "contentType": "application/json",
                "headers": { "$ref": "#/components/schemas/CloudEventHeaders" },
                "payload": payload,
            }),
        );
        let channel = channels.entry(t.name.clone()).or_insert_with(|| {
            json!({
                "address": t.name,
                "description": format!("A topic of {}, consumed in this service's consumer group.", c.source_service),
                "messages": {},
            })
        });
        channel["messages"][name.as_str()] =
            json!({ "$ref": format!("#/components/messages/{name}") });
        operations.insert(
            format!("receive-{}-{}", c.name, t.name),
            json!({
                "action": "receive",
                "channel": { "$ref": format!("#/channels/{}", t.name) },
                "messages": [{ "$ref": format!("#/channels/{}/messages/{name}", t.name) }],
                "x-dead-letter": c.dead_letter,
            }),
        );
    }
}

fn session_event(id: &IdentityPlan) -> Value {
    let mut session = session_schema(id);
    if let Some(p) = session["properties"].as_object_mut() {
        p.remove("accessTokenExpiresAt");
        p.remove("refreshTokenExpiresAt");
    }
    session["properties"]["accessToken"] = json!({ "type": ["string", "null"], "description": "sha256:<fingerprint>, never the token" });
    session["properties"]["refreshToken"] = json!({ "type": ["string", "null"], "description": "sha256:<fingerprint>, never the token" });
    // Beyond the seed (which allows more properties): trusting services apply it (decision role-changes).
    session["properties"]["role"] = json!({ "type": ["string", "null"], "description": "the account's role when the event was made" });
    let nullable = json!({ "type": ["string", "null"] });
    json!({
        "type": "object",
        "properties": {
            "payload": { "type": "object", "properties": { "session": session }, "required": ["session"] },
            "id": { "type": "string", "format": "uuid" },
            "version": { "type": "integer" },
            "name": { "enum": ["sessionCreated", "sessionUpdated", "sessionDeleted"] },
            "namespace": { "type": "string" },
            "parentNamespace": nullable,
            "timestamp": { "type": "string", "format": "date-time" },
            "clientId": nullable,
            "userId": { "type": "string", "format": "uuid" },
            "traceId": { "type": "string", "description": "The W3C trace id (32 hex digits) of the request or sweep that changed the session" },
            "sessionId": { "type": "string", "format": "uuid" },
        },
        "required": ["payload", "id", "version", "name", "namespace", "timestamp", "userId", "traceId", "sessionId"],
    })
}

fn headers() -> Value {
    let s = json!({ "type": "string" });
    json!({
        "type": "object",
        "properties": {
            "ce_specversion": { "const": "1.0" },
            "ce_id": { "type": "string", "format": "uuid", "description": "Unique per event: deduplicate by it" },
            "ce_source": s,
            "ce_type": { "type": "string", "description": "The topic" },
            "ce_subject": { "type": "string", "description": "The message key" },
            "ce_time": { "type": "string", "format": "date-time" },
            "ce_requestid": { "type": "string", "description": "The request that caused the event" },
            "ce_traceid": { "type": "string", "description": "The W3C trace id (32 hex digits) of the trace the event belongs to" },
            "ce_schemaversion": s,
            "traceparent": {
                "type": "string",
                "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                "description": "W3C Trace Context: the span that sent the event; a consumer continues the trace under it",
            },
            "tracestate": { "type": "string", "description": "W3C Trace Context: vendors' trace state, when the request carried one" },
            "content-type": { "const": "application/json" },
        },
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type"],
    })
}

/// The payload schema of a topic, and what fires it.
fn payload(plan: &Plan, t: &TopicPlan) -> (Value, String) {
    let object = || plan.objects.iter().find(|o| o.name == t.owner);
    match (t.kind, object()) {
        (TopicKind::RouteEvent, _) => {
            let r = plan.routes.iter().find(|r| r.name == t.owner);
            let prefix = r.map(|r| r.type_prefix.clone()).unwrap_or_default();
            (
                schema_ref(&format!("{prefix}Response")),
                format!(
                    "Route {} succeeded; the payload is its REST answer.",
                    t.owner
                ),
            )
        }
        (TopicKind::SessionEvent, _) => (schema_ref("SessionEvent"), t.description.clone()),
        (TopicKind::DeadLetter, _) => (
            json!({ "description": "The original event's payload, unchanged" }),
            t.description.clone(),
        ),
        (TopicKind::DeliveryRequest, _) => (schema_ref("DeliveryRequest"), t.description.clone()),
        (TopicKind::DbEvent, Some(o)) if t.change == "updated" => (
            schema_ref(&format!("{}Updated", o.struct_name)),
            t.description.clone(),
        ),
        (_, Some(o)) => (
            schema_ref(&format!("{}Event", o.struct_name)),
            t.description.clone(),
        ),
        _ => (json!({}), t.description.clone()),
    }
}

/// The document, with `marker` as its `x-generated` note; its schemas start
/// from those of `openapi`, the service's OpenAPI document.
pub fn document(plan: &Plan, marker: &str, openapi: &Value) -> Value {
    let mut schemas = openapi["components"]["schemas"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for o in &plan.objects {
        schemas.insert(format!("{}Event", o.struct_name), event_row(o));
        schemas.insert(format!("{}Updated", o.struct_name), updated(o));
    }
    if let Some(id) = &plan.identity {
        schemas.insert("SessionEvent".into(), session_event(id));
    }
    if let Some(f) = plan.flows() {
        schemas.insert(
            "DeliveryRequest".into(),
            json!({
                "type": "object",
                "description": "A one-time code for a mailer to send. Never stored in the outbox: it goes straight to the broker.",
                "properties": {
                    "id": { "type": "string", "format": "uuid" },
                    "kind": { "type": "string", "enum": [f.verify_kind, f.reset_kind, "secondFactor"] },
                    "recipient": { "type": "string" },
                    "userId": { "type": "string", "format": "uuid" },
                    "code": { "type": "string" },
                    "expiresAt": { "type": "string", "format": "date-time" },
                    "locale": { "type": ["string", "null"] }
                },
                "required": ["id", "kind", "recipient", "userId", "code", "expiresAt", "locale"]
            }),
        );
    }
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    for t in &plan.topics {
        let (payload, summary) = payload(plan, t);
        let key = match t.kind {
            TopicKind::RouteEvent => "The object's id; the request id for list routes",
            TopicKind::SessionEvent => "The session id",
            TopicKind::DeliveryRequest => "The account's id",
            TopicKind::DbEvent | TopicKind::IndexEvent | TopicKind::CustomEvent => {
                "The object's id"
            }
            TopicKind::DeadLetter => "The original event's key",
        };
        messages.insert(
            t.name.clone(),
            json!({
                "name": t.name,
                "title": format!("{} of {}", t.kind, t.owner),
                "summary": summary,
                "contentType": "application/json",
                "headers": { "$ref": "#/components/schemas/CloudEventHeaders" },
                "payload": payload,
                "bindings": { "kafka": { "key": { "type": "string", "description": key } } },
            }),
        );
        channels.insert(
            t.name.clone(),
            json!({
                "address": t.name,
                "description": summary,
                "messages": { t.name.clone(): { "$ref": format!("#/components/messages/{}", t.name) } },
            }),
        );
        operations.insert(
            format!("send-{}", t.name),
            json!({
                "action": "send",
                "channel": { "$ref": format!("#/channels/{}", t.name) },
                "messages": [{ "$ref": format!("#/channels/{}/messages/{}", t.name, t.name) }],
            }),
        );
    }
    if let Some(t) = &plan.trust {
        receive_sessions(
            t,
            &mut channels,
            &mut operations,
            &mut messages,
            &mut schemas,
        );
    }
    if let Some(cs) = &plan.consumers {
        for c in &cs.consumers {
            receive_consumed(c, &mut channels, &mut operations, &mut messages);
        }
    }
    schemas.insert("CloudEventHeaders".into(), headers());
    let mut doc = json!({
        "x-generated": marker,
        "asyncapi": "3.0.0",
        "info": {
            "title": plan.service.title,
            "version": plan.service.version,
            "description": format!(
                "{}. Events are delivered at least once: deduplicate by the ce_id header. \
                 Index updates are published on the -updated topics.",
                plan.service.description
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": { "host": "localhost:9092", "protocol": "kafka", "description": "Set by KAFKA_BROKERS" }
        },
        "channels": {},
        "operations": {},
        "components": { "messages": {}, "schemas": {} },
    });
    // Moved in rather than interpolated: json! would copy them value by value.
    doc["channels"] = channels.into();
    doc["operations"] = operations.into();
    doc["components"]["messages"] = messages.into();
    doc["components"]["schemas"] = schemas.into();
    doc
}
