//! The generated contracts against the seeds they honour
//! (`../shared/seeds/`): every topic of the event guide is in asyncapi.json,
//! and every message carries the seed's keys, field for field, less the
//! secrets the document says it omits.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// `SEEDS_DIR`, or `shared/seeds` beside the repository (where CI puts it).
fn seeds() -> PathBuf {
    let dir = std::env::var("SEEDS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/seeds"))
        });
    assert!(
        dir.is_dir(),
        "the seeds are not at {} (set SEEDS_DIR)",
        dir.display()
    );
    dir
}

fn asyncapi() -> Value {
    serde_json::from_str(airbnb_auth_service::spec::DOCS.asyncapi).unwrap()
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// Property names of a schema, through `$ref` and `allOf`.
fn properties(doc: &Value, schema: &Value) -> BTreeSet<String> {
    let s = resolve(doc, schema);
    let mut out: BTreeSet<String> = s["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    if let Some(parts) = s["allOf"].as_array() {
        for p in parts {
            out.extend(properties(doc, p));
        }
    }
    out
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// The fields every message omits on purpose, as the document says.
fn omitted(doc: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for s in doc["components"]["schemas"].as_object().unwrap().values() {
        if let Some(list) = s["x-omitted-fields"].as_array() {
            out.extend(list.iter().filter_map(|v| v.as_str().map(String::from)));
        }
    }
    out
}

/// `(topic, payload line)` pairs of the seed's event guide.
fn seed_events() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(seeds().join("auth-service-event-guide.txt"))
        .expect("../shared/seeds is beside the repository");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(topic) = line
            .strip_prefix("Event topic")
            .map(|t| t.trim_start_matches([' ', ':']).trim())
        else {
            continue;
        };
        if let Some(payload) = lines[i + 1..].iter().take(5).find(|l| l.starts_with('{')) {
            out.push((topic.to_string(), payload.to_string()));
        }
    }
    out
}

#[test]
fn every_seed_topic_is_in_the_asyncapi_document() {
    let doc = asyncapi();
    let events = seed_events();
    assert!(
        events.len() > 60,
        "the seed was read: {} events",
        events.len()
    );
    let channels: BTreeSet<&str> = doc["channels"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|c| c["address"].as_str())
        .collect();
    let mut missing = Vec::new();
    for (topic, _) in &events {
        // -extended topics exist for the objects the model indexes.
        if !channels.contains(topic.as_str()) && !topic.ends_with("-extended") {
            missing.push(topic.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "seed topics the service does not publish: {missing:?}"
    );
    for object in ["user", "usergroup"] {
        assert!(channels.contains(format!("elastic-index-airbnb_{object}-extended").as_str()));
    }
    // The copy error of the guide: index updates have their own topic.
    for object in ["user", "usergroup", "usergroupmember", "useravatarsfile"] {
        assert!(channels.contains(format!("elastic-index-airbnb_{object}-updated").as_str()));
    }
}

#[test]
fn every_message_carries_the_seed_keys_less_the_omitted_secrets() {
    let doc = asyncapi();
    let omitted = omitted(&doc);
    assert_eq!(
        omitted,
        ["password".to_string()].into(),
        "the document names what it never publishes"
    );
    // The model's decisions, where fields added beyond the seed are explained.
    let model = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/auth-service.yaml"),
    )
    .unwrap();
    let decisions =
        &model[model.find("\ndecisions:").unwrap()..model.find("\ndataObjects:").unwrap()];
    let mut checked = 0;
    for (topic, line) in seed_events() {
        let Ok(seed) = serde_json::from_str::<Value>(&line) else {
            continue; // the multi-line updated payloads are checked below
        };
        let Some(message) = doc["components"]["messages"].get(&topic) else {
            continue;
        };
        let schema = &message["payload"];
        let ours = properties(&doc, schema);
        let seed_keys: BTreeSet<String> = keys(&seed).difference(&omitted).cloned().collect();
        if seed.get("dataName").is_some() {
            // A route event: the envelope, and the data under dataName.
            let data_name = seed["dataName"].as_str().unwrap();
            for k in &seed_keys {
                assert!(
                    ours.contains(k),
                    "{topic}: envelope key {k} missing from {ours:?}"
                );
            }
            let data_schema = &resolve(&doc, schema)["properties"][data_name];
            let data_schema = data_schema.get("items").unwrap_or(data_schema);
            let data_props = properties(&doc, data_schema);
            let seed_data = match &seed[data_name] {
                Value::Array(items) => items[0].clone(),
                other => other.clone(),
            };
            let seed_data_keys: BTreeSet<String> =
                keys(&seed_data).difference(&omitted).cloned().collect();
            let absent: Vec<&String> = seed_data_keys.difference(&data_props).collect();
            assert!(
                absent.is_empty(),
                "{topic}: {data_name} lacks seed keys {absent:?}"
            );
        } else {
            // A database or index event: the row at the root, field for field.
            let absent: Vec<&String> = seed_keys.difference(&ours).collect();
            assert!(absent.is_empty(), "{topic}: lacks seed keys {absent:?}");
            // What we add beyond the seed is isActive, which the seed shows on some of
            // the same object's payloads, or a field a decision of the model names.
            let added: Vec<&String> = ours
                .difference(&seed_keys)
                .filter(|k| *k != "isActive" && !decisions.contains(k.as_str()))
                .collect();
            assert!(
                added.is_empty(),
                "{topic}: undocumented additions {added:?}"
            );
        }
        checked += 1;
    }
    assert!(checked > 50, "checked {checked} messages");
}

#[test]
fn updated_database_events_carry_old_and_new_values() {
    let doc = asyncapi();
    for (object, name) in [
        ("user", "user"),
        ("usergroup", "userGroup"),
        ("usergroupmember", "userGroupMember"),
        ("useravatarsfile", "userAvatarsFile"),
    ] {
        let topic = format!("airbnb3-auth-service-dbevent-{object}-updated");
        let ours = properties(&doc, &doc["components"]["messages"][&topic]["payload"]);
        let want: BTreeSet<String> = [
            format!("old_{name}"),
            name.to_string(),
            "oldDataValues".into(),
            "newDataValues".into(),
        ]
        .into();
        assert_eq!(ours, want, "{topic}");
    }
}

#[test]
fn session_events_carry_the_session_seed_fields() {
    let doc = asyncapi();
    let text = std::fs::read_to_string(seeds().join("session-events-asyncapi.txt")).unwrap();
    // The seed's table rows read `payload.session.deviceIdstring----` or `traceIdstring----`.
    let mut session_fields = BTreeSet::new();
    let mut envelope_fields = BTreeSet::new();
    for line in text.lines() {
        let Some(name) = line
            .strip_suffix("string----")
            .or_else(|| line.strip_suffix("integer----"))
        else {
            continue;
        };
        let name = name.split("string--format").next().unwrap();
        match name.strip_prefix("payload.session.") {
            Some(f) => session_fields.insert(f.to_string()),
            None => envelope_fields.insert(name.to_string()),
        };
    }
    for line in text.lines().filter(|l| l.contains("--format (date-time)-")) {
        let name = line.split("string--format").next().unwrap();
        match name.strip_prefix("payload.session.") {
            Some(f) => session_fields.insert(f.to_string()),
            None => envelope_fields.insert(name.to_string()),
        };
    }
    assert!(
        session_fields.len() >= 14 && envelope_fields.len() >= 9,
        "{session_fields:?} {envelope_fields:?}"
    );
    let event = &doc["components"]["schemas"]["SessionEvent"];
    let ours = keys(&event["properties"]);
    let mut want = envelope_fields.clone();
    want.insert("payload".into());
    assert_eq!(ours, want, "the session envelope");
    // The seed allows additional properties: the account's role is the one
    // added (decision role-changes).
    assert!(text.contains("payload.sessionobject---additional properties are allowed"));
    let mut with_role = session_fields.clone();
    with_role.insert("role".into());
    assert_eq!(
        keys(&event["properties"]["payload"]["properties"]["session"]["properties"]),
        with_role,
        "payload.session"
    );
    let proto = airbnb_auth_service::spec::DOCS
        .session_proto
        .expect("the auth service publishes session events");
    for f in session_fields.iter().chain(envelope_fields.iter()) {
        let snake: String = f
            .chars()
            .flat_map(|c| {
                if c.is_uppercase() {
                    vec!['_', c.to_ascii_lowercase()]
                } else {
                    vec![c]
                }
            })
            .collect();
        assert!(
            proto.contains(&format!(" {snake} = ")),
            "session.proto lacks {snake}"
        );
    }
}
