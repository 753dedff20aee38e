//! Events of the generated auth service on a real Kafka-protocol broker
//! (tansu): the seed's topics and payloads, the outbox's delivery guarantees.

use airbnb_auth_service::topics;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tests::{consume, expect, start_auth_service, Broker, Consumed, Running, TestDb};

const PARTITIONS: i32 = 3;

/// The seed's user keys, less the secret password.
const USER_KEYS: &[&str] = &[
    "id",
    "email",
    "fullname",
    "avatar",
    "roleId",
    "emailVerified",
    "preferredLanguage",
    "bio",
    "isActive",
    "recordVersion",
    "createdAt",
    "updatedAt",
    "_owner",
];
const GROUP_KEYS: &[&str] = &[
    "id",
    "groupName",
    "avatar",
    "isActive",
    "recordVersion",
    "createdAt",
    "updatedAt",
    "_owner",
];
const MEMBER_KEYS: &[&str] = &[
    "id",
    "groupId",
    "userId",
    "ownerId",
    "isActive",
    "recordVersion",
    "createdAt",
    "updatedAt",
    "_owner",
];
const FILE_KEYS: &[&str] = &[
    "id",
    "fileName",
    "mimeType",
    "fileSize",
    "accessKey",
    "ownerId",
    "fileData",
    "metadata",
    "userId",
    "recordVersion",
    "createdAt",
    "updatedAt",
    "_owner",
    "isActive",
];

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

async fn with_broker() -> (Broker, TestDb, Running) {
    let broker = Broker::start().await;
    let db = TestDb::create().await;
    let svc = start_auth_service(
        &db.url,
        &[
            ("KAFKA_BROKERS", &broker.brokers()),
            ("KAFKA_LINGER_MS", "0"),
        ],
    )
    .await;
    (broker, db, svc)
}

fn on<'a>(msgs: &'a [Consumed], topic: &str) -> Vec<&'a Consumed> {
    msgs.iter().filter(|m| m.topic == topic).collect()
}

/// Every route driven once; returns the HTTP answers by route name.
async fn drive_every_route(svc: &Running) -> BTreeMap<&'static str, Value> {
    let mut a = BTreeMap::new();
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let user = expect(
        StatusCode::CREATED,
        &svc.post(
            "/v1/users",
            json!({ "email": "ev@x.io", "password": "long secret", "fullname": "Eve" }),
        )
        .await,
    );
    let uid = user["user"]["id"].as_str().unwrap().to_string();
    a.insert("createUser", user);
    a.insert(
        "getUser",
        expect(StatusCode::OK, &svc.get(&format!("/v1/users/{uid}")).await),
    );
    a.insert(
        "updateUser",
        expect(
            StatusCode::OK,
            &svc.patch(&format!("/v1/users/{uid}"), json!({ "bio": "hello" }))
                .await,
        ),
    );
    a.insert(
        "updateProfile",
        expect(
            StatusCode::OK,
            &svc.patch(
                &format!("/v1/users/{uid}/profile"),
                json!({ "fullname": "Eve E." }),
            )
            .await,
        ),
    );
    a.insert(
        "updateUserRole",
        expect(
            StatusCode::OK,
            &svc.patch(
                &format!("/v1/users/{uid}/role"),
                json!({ "roleId": "admin" }),
            )
            .await,
        ),
    );
    a.insert(
        "updateUserPassword",
        expect(
            StatusCode::OK,
            &svc.patch(
                &format!("/v1/users/{uid}/password"),
                json!({ "password": "another secret" }),
            )
            .await,
        ),
    );
    a.insert(
        "updateUserPasswordByAdmin",
        expect(
            StatusCode::OK,
            &svc.patch(
                &format!("/v1/users/{uid}/password-by-admin"),
                json!({ "password": "third secret" }),
            )
            .await,
        ),
    );
    a.insert(
        "getBriefUser",
        expect(
            StatusCode::OK,
            &svc.get(&format!("/v1/users/{uid}/brief")).await,
        ),
    );
    a.insert(
        "listUsers",
        expect(StatusCode::OK, &svc.get("/v1/users").await),
    );
    a.insert(
        "searchUsers",
        expect(StatusCode::OK, &svc.get("/v1/users/search?q=eve").await),
    );
    let reg = expect(
        StatusCode::CREATED,
        &svc.post(
            "/v1/register",
            json!({ "email": "reg@x.io", "password": "long secret", "fullname": "Reg" }),
        )
        .await,
    );
    let rid = reg["user"]["id"].as_str().unwrap().to_string();
    a.insert("registerUser", reg);

    let group = expect(
        StatusCode::CREATED,
        &svc.post("/v1/usergroups", json!({ "groupName": "crew" }))
            .await,
    );
    let gid = group["userGroup"]["id"].as_str().unwrap().to_string();
    a.insert("createUserGroup", group);
    a.insert(
        "updateUserGroup",
        expect(
            StatusCode::OK,
            &svc.patch(
                &format!("/v1/usergroups/{gid}"),
                json!({ "groupName": "team" }),
            )
            .await,
        ),
    );
    a.insert(
        "getUserGroup",
        expect(
            StatusCode::OK,
            &svc.get(&format!("/v1/usergroups/{gid}")).await,
        ),
    );
    a.insert(
        "listUserGroups",
        expect(StatusCode::OK, &svc.get("/v1/usergroups").await),
    );
    let member = expect(
        StatusCode::CREATED,
        &svc.post(
            "/v1/usergroupmembers",
            json!({ "groupId": gid, "userId": uid }),
        )
        .await,
    );
    let mid = member["userGroupMember"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    a.insert("createUserGroupMember", member);
    a.insert(
        "getUserGroupMember",
        expect(
            StatusCode::OK,
            &svc.get(&format!("/v1/usergroupmembers/{mid}")).await,
        ),
    );
    a.insert(
        "listUserGroupMembers",
        expect(StatusCode::OK, &svc.get("/v1/usergroupmembers").await),
    );
    a.insert(
        "deleteUserGroupMember",
        expect(
            StatusCode::OK,
            &svc.delete(&format!("/v1/usergroupmembers/{mid}")).await,
        ),
    );
    a.insert(
        "deleteUserGroup",
        expect(
            StatusCode::OK,
            &svc.delete(&format!("/v1/usergroups/{gid}")).await,
        ),
    );

    let file = expect(
        StatusCode::CREATED,
        &svc.post(
            "/v1/useravatarsfiles",
            json!({ "fileName": "a.png", "mimeType": "image/png", "fileData": png, "userId": uid }),
        )
        .await,
    );
    let fid = file["userAvatarsFile"]["id"].as_str().unwrap().to_string();
    a.insert("createUserAvatarsFile", file);
    a.insert(
        "getUserAvatarsFile",
        expect(
            StatusCode::OK,
            &svc.get(&format!("/v1/useravatarsfiles/{fid}")).await,
        ),
    );
    a.insert(
        "listUserAvatarsFiles",
        expect(StatusCode::OK, &svc.get("/v1/useravatarsfiles").await),
    );
    a.insert(
        "deleteUserAvatarsFile",
        expect(
            StatusCode::OK,
            &svc.delete(&format!("/v1/useravatarsfiles/{fid}")).await,
        ),
    );

    a.insert(
        "archiveProfile",
        expect(
            StatusCode::OK,
            &svc.delete(&format!("/v1/users/{rid}/profile")).await,
        ),
    );
    a.insert(
        "deleteUser",
        expect(
            StatusCode::OK,
            &svc.delete(&format!("/v1/users/{uid}")).await,
        ),
    );
    a
}

/// Route name -> route event topic, from the generated crate's route facts.
fn route_topics() -> Vec<(&'static str, &'static str)> {
    use airbnb_auth_service::{
        user, user_avatars_file as f, user_group as g, user_group_member as m,
    };
    [
        &user::GET_USER,
        &user::UPDATE_USER,
        &user::UPDATE_PROFILE,
        &user::CREATE_USER,
        &user::DELETE_USER,
        &user::ARCHIVE_PROFILE,
        &user::LIST_USERS,
        &user::SEARCH_USERS,
        &user::UPDATE_USER_ROLE,
        &user::UPDATE_USER_PASSWORD,
        &user::UPDATE_USER_PASSWORD_BY_ADMIN,
        &user::GET_BRIEF_USER,
        &user::REGISTER_USER,
        &g::CREATE_USER_GROUP,
        &g::UPDATE_USER_GROUP,
        &g::DELETE_USER_GROUP,
        &g::GET_USER_GROUP,
        &g::LIST_USER_GROUPS,
        &m::GET_USER_GROUP_MEMBER,
        &m::CREATE_USER_GROUP_MEMBER,
        &m::DELETE_USER_GROUP_MEMBER,
        &m::LIST_USER_GROUP_MEMBERS,
        &f::CREATE_USER_AVATARS_FILE,
        &f::GET_USER_AVATARS_FILE,
        &f::LIST_USER_AVATARS_FILES,
        &f::DELETE_USER_AVATARS_FILE,
    ]
    .iter()
    .map(|r| (r.name, r.topic))
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_topic_carries_the_seed_payloads() {
    let (broker, db, svc) = with_broker().await;
    let answers = drive_every_route(&svc).await;
    let routes = route_topics();
    assert_eq!(routes.len(), 26, "the 25 seed routes and the avatar upload");
    // 16 writing routes publish a route, a database and an index event; 10 reads one each.
    let expected = 16 * 3 + 10;
    let msgs = consume(
        &broker.brokers(),
        topics::ALL,
        PARTITIONS,
        Duration::from_secs(60),
        |m| m.len() >= expected,
    )
    .await;
    assert_eq!(
        msgs.len(),
        expected,
        "every event arrived once: {:#?}",
        msgs.iter().map(|m| &m.topic).collect::<Vec<_>>()
    );

    // Exact topic names of the seed, typos included.
    for t in [
        "airbnb3-auth-service-user-retrived",
        "airbnb3-auth-service-usergroupmembers-listed",
        "airbnb3-auth-service-briefuser-retrived",
    ] {
        assert_eq!(on(&msgs, t).len(), 1, "{t}");
    }

    // Route events: the REST answer itself, keyed by the object (lists: the request).
    for (name, topic) in &routes {
        let got = on(&msgs, topic);
        assert_eq!(got.len(), 1, "{name} publishes once on {topic}");
        let answer = &answers[name];
        assert_eq!(&got[0].payload, answer, "{name}: the event is the answer");
        let expected_key = match answer.get(answer["dataName"].as_str().unwrap()) {
            Some(Value::Array(_)) => answer["requestId"].as_str().unwrap().to_string(),
            Some(obj) => obj["id"].as_str().unwrap().to_string(),
            None => panic!("{name}: no data"),
        };
        assert_eq!(got[0].key, expected_key, "{name}: key");
    }

    // Database and index events of each object.
    for (object, fields, plural) in [
        ("user", USER_KEYS, "user"),
        ("usergroup", GROUP_KEYS, "userGroup"),
        ("usergroupmember", MEMBER_KEYS, "userGroupMember"),
        ("useravatarsfile", FILE_KEYS, "userAvatarsFile"),
    ] {
        let created = on(
            &msgs,
            &format!("airbnb3-auth-service-dbevent-{object}-created"),
        );
        assert!(!created.is_empty(), "{object} created");
        for m in &created {
            assert_eq!(
                keys(&m.payload),
                set(fields),
                "{object}-created carries the row at the root"
            );
            assert_eq!(m.key, m.payload["id"].as_str().unwrap());
        }
        let deleted = on(
            &msgs,
            &format!("airbnb3-auth-service-dbevent-{object}-deleted"),
        );
        assert!(!deleted.is_empty(), "{object} deleted");
        for m in &deleted {
            assert_eq!(keys(&m.payload), set(fields));
        }
        let index_created = on(&msgs, &format!("elastic-index-airbnb_{object}-created"));
        assert_eq!(index_created.len(), created.len(), "{object} index-created");
        assert_eq!(
            on(&msgs, &format!("elastic-index-airbnb_{object}-deleted")).len(),
            deleted.len()
        );
        let updated = on(
            &msgs,
            &format!("airbnb3-auth-service-dbevent-{object}-updated"),
        );
        assert_eq!(
            on(&msgs, &format!("elastic-index-airbnb_{object}-updated")).len(),
            updated.len(),
            "index updates go on -updated"
        );
        for m in &updated {
            let mut expect_keys = set(&["oldDataValues", "newDataValues", plural]);
            expect_keys.insert(format!("old_{plural}"));
            assert_eq!(keys(&m.payload), expect_keys);
            assert_eq!(keys(&m.payload[plural]), set(fields));
            assert_eq!(keys(&m.payload[format!("old_{plural}")]), set(fields));
        }
    }
    let user_deleted = on(&msgs, "airbnb3-auth-service-dbevent-user-deleted");
    assert!(
        user_deleted.iter().all(|m| m.payload["isActive"] == false),
        "soft deletes show isActive false"
    );
    let user_updates = on(&msgs, "airbnb3-auth-service-dbevent-user-updated");
    assert_eq!(user_updates.len(), 5);
    let bio = user_updates
        .iter()
        .find(|m| m.payload["newDataValues"].get("bio").is_some())
        .expect("the bio update");
    assert_eq!(bio.payload["oldDataValues"]["bio"], Value::Null);
    assert_eq!(bio.payload["newDataValues"]["bio"], "hello");
    assert_eq!(bio.payload["oldDataValues"]["recordVersion"], 1);
    assert_eq!(bio.payload["newDataValues"]["recordVersion"], 2);
    assert!(
        bio.payload["newDataValues"].get("email").is_none(),
        "only changed fields"
    );
    // No group member or file route updates a row: those topics exist and stay empty.
    for t in [
        "airbnb3-auth-service-dbevent-usergroupmember-updated",
        "airbnb3-auth-service-dbevent-useravatarsfile-updated",
    ] {
        assert!(on(&msgs, t).is_empty());
    }

    // Secrets and blob bytes never go on Kafka.
    for m in &msgs {
        let text = m.payload.to_string();
        assert!(!text.contains("\"password\""), "{}: {text}", m.topic);
        assert!(!text.contains("$argon2"), "{}", m.topic);
        assert!(!text.contains("iVBORw0KGgo"), "{}: blob bytes", m.topic);
    }
    let file = &on(
        &msgs,
        "airbnb3-auth-service-dbevent-useravatarsfile-created",
    )[0]
    .payload;
    assert_eq!(file["fileData"]["omitted"], true);
    assert_eq!(
        file["fileData"]["href"],
        format!("/v1/useravatarsfiles/{}", file["id"].as_str().unwrap())
    );

    // CloudEvents headers on every message; ids are unique.
    let mut ids = BTreeSet::new();
    for m in &msgs {
        assert_eq!(m.headers["ce_specversion"], "1.0");
        assert_eq!(m.headers["ce_type"], m.topic);
        assert_eq!(m.headers["ce_source"], "/airbnb-auth-service");
        assert_eq!(m.headers["ce_schemaversion"], "1");
        assert_eq!(m.headers["content-type"], "application/json");
        assert!(m.headers.contains_key("ce_time") && m.headers.contains_key("ce_requestid"));
        assert!(ids.insert(m.headers["ce_id"].clone()), "duplicate ce_id");
    }
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM event_outbox WHERE delivered_at IS NULL")
            .fetch_one(&mut db.connect().await)
            .await
            .unwrap();
    assert_eq!(pending, 0, "every outbox row is marked delivered");
}
