//! Role ranks against the running auth service: every route that writes the
//! identity object, or a row that rewrites an account (`pointedBy`), called by
//! every role on its own account and on accounts ranked below, level with and
//! above it. The table is read from the model, so a new route joins it; each
//! refusal is a 403 with nothing written and no event.

use base64::Engine;
use generator::model::{Action, Auth, DataObject, Identity, Model, Route};
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};
use std::cmp::Ordering;
use tests::*;

const PASSWORD: &str = "correct horse battery";

fn model() -> Model {
    let file = "model/auth-service.yaml";
    let source = std::fs::read_to_string(format!("{}/../{file}", env!("CARGO_MANIFEST_DIR")))
        .expect("read the auth model");
    generator::check_model(file, &source)
        .expect("the auth model is valid")
        .model
}

/// Whose account (or, for a create, which role) a case aims at, relative to
/// the caller.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Own,
    Lower,
    Equal,
    Higher,
}

const TARGETS: [Target; 4] = [Target::Own, Target::Lower, Target::Equal, Target::Higher];

struct Roles<'m> {
    model: &'m Model,
}

impl Roles<'_> {
    fn rank(&self, role: &str) -> u32 {
        self.model.roles.ranks[role]
    }

    /// A role standing in `target`'s relation to `mine`, if the model has one.
    fn relative(&self, mine: &str, target: Target) -> Option<String> {
        let wanted = match target {
            Target::Own | Target::Equal => Ordering::Equal,
            Target::Lower => Ordering::Less,
            Target::Higher => Ordering::Greater,
        };
        self.model
            .roles
            .values
            .iter()
            .find(|r| self.rank(r).cmp(&self.rank(mine)) == wanted)
            .cloned()
    }

    fn is_admin(&self, role: &str) -> bool {
        self.model.roles.admin.iter().any(|a| a == role)
    }
}

/// What a write route needs to know of the object it writes.
struct Writes<'m> {
    name: &'m str,
    route: &'m Route,
    object: &'m DataObject,
    /// The route writes an account row (else a row pointing at one).
    account: bool,
}

/// Every signed-in write of the identity object, and creates and deletes of
/// the objects that rewrite an account through `pointedBy`.
fn write_routes(m: &Model) -> Vec<Writes<'_>> {
    let user = &identity(m).user_object;
    m.routes
        .iter()
        .filter(|(_, r)| !r.auth.is_public())
        .filter_map(|(name, r)| {
            let o = m.object(r.object.as_deref()?).expect("a route's object");
            let account = r.object.as_deref() == Some(user.as_str());
            let pointing = o.pointed_by.as_ref().is_some_and(|p| {
                o.fields
                    .iter()
                    .any(|(n, f)| n == &p.via && f.references.as_deref() == Some(user.as_str()))
            });
            let writes = match r.action {
                Action::Create | Action::Delete => account || pointing,
                Action::Update => account,
                _ => false,
            };
            writes.then_some(Writes {
                name,
                route: r,
                object: o,
                account,
            })
        })
        .collect()
}

/// The outcome the rules promise: the route's own rule, then the ranks.
fn expected(m: &Model, w: &Writes, caller: &str, target: Target) -> bool {
    let roles = Roles { model: m };
    let own = target == Target::Own;
    let admitted = match &w.route.auth {
        // Any signed-in caller, but only admins act for others (callerFields).
        Auth::Public | Auth::Login => {
            w.route.caller_fields.is_empty() || roles.is_admin(caller) || own
        }
        Auth::Rule(r) => r.roles.iter().any(|x| x == caller) || (r.owner && own),
    };
    if !admitted {
        return false;
    }
    let creates_account = w.account && w.route.action == Action::Create;
    let sets_secret_unconfirmed = w.route.action == Action::Update
        && w.route.fields.contains(&identity(m).password_field)
        && !w.route.confirm_current;
    match target {
        Target::Own => !(w.account && sets_secret_unconfirmed),
        // A create grants a role: at most the caller's own.
        _ if creates_account => target != Target::Higher,
        Target::Lower => true,
        Target::Equal => m.roles.peer_writes.iter().any(|p| p == caller),
        Target::Higher => false,
    }
}

/// A valid value of every field the route accepts.
fn body(m: &Model, w: &Writes, caller_role: &str, target_id: &str, grant: &str) -> Value {
    let mut out = Map::new();
    for name in &w.route.fields {
        let (_, f) = w
            .object
            .fields
            .iter()
            .find(|(n, _)| n == name)
            .expect("route field");
        let value = if w.account && name == &identity(m).role_field {
            json!(if w.route.action == Action::Create {
                grant
            } else {
                caller_role
            })
        } else if w.account && name == &identity(m).password_field {
            json!("another good password")
        } else {
            match (f.ty.as_str(), f.format.as_deref()) {
                (_, Some("email")) => {
                    json!(format!("{}@example.com", uuid::Uuid::new_v4().simple()))
                }
                (_, Some("url")) => json!("https://example.com/picture.png"),
                ("String", _) if !f.allowed_values.is_empty() => json!(f.allowed_values[0]),
                ("String" | "Text", _) => json!("Some text"),
                // Off: switching a second factor on needs a confirmed address.
                ("Boolean", _) => json!(false),
                ("Integer", _) => json!(1),
                ("ID", _) if f.references.as_deref() == Some(identity(m).user_object.as_str()) => {
                    json!(target_id)
                }
                ("Blob", _) => json!(base64::engine::general_purpose::STANDARD
                    .encode(b"\x89PNG\r\n\x1a\nsome picture bytes")),
                ("Object", _) => json!({ "from": "roles_e2e" }),
                _ => continue,
            }
        };
        out.insert(name.clone(), value);
    }
    if w.route.confirm_current {
        let current = format!(
            "current{}{}",
            identity(m).password_field[..1].to_uppercase(),
            &identity(m).password_field[1..]
        );
        out.insert(current, json!(PASSWORD));
    }
    Value::Object(out)
}

/// Everything a refused write must leave as it was: every table of the model
/// and the outbox.
async fn state(db: &TestDb, m: &Model) -> Vec<String> {
    let mut conn = db.connect().await;
    let mut out = Vec::new();
    for (_, o) in &m.data_objects {
        let sql = format!(
            "SELECT coalesce(md5(string_agg(t::text, ',' ORDER BY t.id)), '') FROM {} AS t",
            o.table
        );
        out.push(
            sqlx::query_scalar(&sql)
                .fetch_one(&mut conn)
                .await
                .expect("table digest"),
        );
    }
    let events: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM event_outbox")
        .fetch_one(&mut conn)
        .await
        .expect("outbox");
    out.push(events.to_string());
    out
}

/// A new account with `role`, made by the bootstrap super-admin.
async fn account(root: &Api, role: &str) -> (String, String) {
    let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    let created = expect(
        StatusCode::CREATED,
        &root
            .post(
                "/v1/users",
                json!({ "email": email, "password": PASSWORD, "fullname": "Someone", "roleId": role }),
            )
            .await,
    );
    (
        created["user"]["id"].as_str().expect("id").to_string(),
        email,
    )
}

async fn signed_in(svc: &Api, root: &Api, role: &str) -> (String, Api) {
    let (id, email) = account(root, role).await;
    (id, svc.as_user(&email, PASSWORD).await)
}

#[tokio::test]
async fn every_account_write_respects_role_ranks() {
    let m = model();
    let roles = Roles { model: &m };
    let db = TestDb::create().await;
    let svc = start_auth_service(
        &db.url,
        &[
            ("LOGIN_PER_ADDRESS", "100000"),
            ("LOGIN_PER_ACCOUNT", "100000"),
        ],
    )
    .await;
    let root = svc.admin().await;
    let routes = write_routes(&m);
    let names: Vec<&str> = routes.iter().map(|w| w.name).collect();
    for must in [
        "createUser",
        "updateUserRole",
        "updateUserPasswordByAdmin",
        "deleteUser",
        "createUserAvatarsFile",
        "deleteUserAvatarsFile",
    ] {
        assert!(
            names.contains(&must),
            "{must} is missing from the table {names:?}"
        );
    }
    let mut callers = std::collections::HashMap::new();
    for role in &m.roles.values {
        callers.insert(role.clone(), signed_in(&svc, &root, role).await);
    }
    let mut checked = 0;
    for w in &routes {
        for caller_role in &m.roles.values {
            for target in TARGETS {
                let Some(target_role) = roles.relative(caller_role, target) else {
                    continue;
                };
                let creates_account = w.account && w.route.action == Action::Create;
                if creates_account && target == Target::Own {
                    continue;
                }
                // A case that may change the caller's own account gets a caller of its own.
                let (caller_id, caller) = if target == Target::Own {
                    signed_in(&svc, &root, caller_role).await
                } else {
                    callers[caller_role].clone()
                };
                let target_id = match (creates_account, target) {
                    (true, _) => String::new(),
                    (false, Target::Own) => caller_id.clone(),
                    (false, _) => account(&root, &target_role).await.0,
                };
                let mut path = format!("{}{}", m.service.api_base, w.route.path);
                if w.route.action == Action::Delete && !w.account {
                    // The target's own file, uploaded by the target.
                    let owner = if target == Target::Own {
                        caller.clone()
                    } else {
                        let email: String =
                            sqlx::query_scalar("SELECT email FROM users WHERE id = $1::uuid")
                                .bind(&target_id)
                                .fetch_one(&mut db.connect().await)
                                .await
                                .expect("the target's email");
                        svc.as_user(&email, PASSWORD).await
                    };
                    let upload = routes
                        .iter()
                        .find(|u| {
                            u.route.action == Action::Create && u.route.object == w.route.object
                        })
                        .expect("an upload route");
                    let uploaded = expect(
                        StatusCode::CREATED,
                        &owner
                            .post(
                                &format!("{}{}", m.service.api_base, upload.route.path),
                                body(&m, upload, caller_role, &target_id, ""),
                            )
                            .await,
                    );
                    let id = uploaded[w.route.object.as_deref().expect("object")]["id"]
                        .as_str()
                        .expect("file id")
                        .to_string();
                    path = path.replace("{id}", &id);
                } else {
                    path = path.replace("{id}", &target_id);
                }
                let method = Method::from_bytes(w.route.method.as_bytes()).expect("method");
                // A delete takes a body only to prove the caller's password.
                let payload = (w.route.action != Action::Delete || w.route.confirm_current)
                    .then(|| body(&m, w, caller_role, &target_id, &target_role));
                let before = state(&db, &m).await;
                let (status, answer) = caller.call(method, &path, payload, &[]).await;
                let allowed = expected(&m, w, caller_role, target);
                let case = format!("{} by {caller_role} on {target:?} ({target_role})", w.name);
                if allowed {
                    assert!(
                        status.is_success(),
                        "{case}: expected success, got {status}: {answer}"
                    );
                } else {
                    assert_eq!(
                        status,
                        StatusCode::FORBIDDEN,
                        "{case}: expected 403, got {answer}"
                    );
                    assert_eq!(
                        answer["status"], "ERR",
                        "{case}: not in the envelope: {answer}"
                    );
                    assert_eq!(
                        state(&db, &m).await,
                        before,
                        "{case}: a refused write changed something"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= routes.len() * 6, "only {checked} cases ran");
}

/// The bootstrap super-admin's id.
async fn root_id(db: &TestDb) -> uuid::Uuid {
    sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(ADMIN_EMAIL)
        .fetch_one(&mut db.connect().await)
        .await
        .expect("root's id")
}

/// A role other than the top one.
fn other_role(m: &Model) -> &str {
    m.roles
        .values
        .iter()
        .find(|r| **r != identity(m).super_admin_role)
        .expect("a second role")
}

async fn active_top_accounts(db: &TestDb, m: &Model) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM users WHERE role_id = $1 AND is_active")
        .bind(&identity(m).super_admin_role)
        .fetch_one(&mut db.connect().await)
        .await
        .expect("count top-role accounts")
}

/// Both answers of two concurrent writes that could each leave the other
/// account as the last of the top role: exactly one may succeed. The other is
/// refused (403), or finds its caller's account already deleted (401).
fn one_of_two(a: (StatusCode, Value), b: (StatusCode, Value)) {
    let (won, lost) = if a.0 == StatusCode::OK {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(
        won.0,
        StatusCode::OK,
        "neither succeeded: {} / {}",
        won.1,
        lost.1
    );
    assert!(
        [StatusCode::FORBIDDEN, StatusCode::UNAUTHORIZED].contains(&lost.0),
        "both succeeded or the other failed otherwise: {} / {}",
        won.1,
        lost.1
    );
}

#[tokio::test]
async fn the_last_top_role_account_is_kept() {
    let m = model();
    let (svc, db) = auth_service().await;
    let root = svc.admin().await;
    let root_id = root_id(&db).await;
    let top = identity(&m).super_admin_role.as_str();
    let lower = other_role(&m);

    // Alone in the top role: no demotion, deletion or archiving of oneself.
    let before = state(&db, &m).await;
    for (method, path, body) in [
        (
            Method::PATCH,
            format!("/v1/users/{root_id}/role"),
            Some(json!({ "roleId": lower })),
        ),
        (Method::DELETE, format!("/v1/users/{root_id}"), None),
        (
            Method::DELETE,
            format!("/v1/users/{root_id}/profile"),
            Some(json!({ "currentPassword": tests::ADMIN_PASSWORD })),
        ),
    ] {
        let answer = root.call(method, &path, body, &[]).await;
        let refused = expect(StatusCode::FORBIDDEN, &answer);
        assert_eq!(refused["errCode"], "LAST_TOP_ROLE", "{path}: {refused}");
    }
    assert_eq!(
        state(&db, &m).await,
        before,
        "a refused change wrote something"
    );

    // Two top-role accounts demoting each other at once: one of them stays.
    let (other_id, other) = signed_in(&svc, &root, top).await;
    let (demote_other, demote_root) = (
        format!("/v1/users/{other_id}/role"),
        format!("/v1/users/{root_id}/role"),
    );
    let (a, b) = tokio::join!(
        root.patch(&demote_other, json!({ "roleId": lower })),
        other.patch(&demote_root, json!({ "roleId": lower })),
    );
    one_of_two(a, b);
    assert_eq!(active_top_accounts(&db, &m).await, 1);

    // The same with deletions, by whichever account kept the role.
    let survivor: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM users WHERE role_id = $1 AND is_active")
            .bind(top)
            .fetch_one(&mut db.connect().await)
            .await
            .expect("the remaining top-role account");
    let survivor_api = if survivor == root_id {
        root.clone()
    } else {
        other.clone()
    };
    let (third_id, third) = signed_in(&svc, &survivor_api, top).await;
    let (delete_third, delete_survivor) = (
        format!("/v1/users/{third_id}"),
        format!("/v1/users/{survivor}"),
    );
    let (a, b) = tokio::join!(
        survivor_api.delete(&delete_third),
        third.delete(&delete_survivor),
    );
    one_of_two(a, b);
    assert_eq!(active_top_accounts(&db, &m).await, 1);
}

/// Waits until `n` queries of the test database wait on a lock.
async fn waiting_on_locks(db: &TestDb, n: i64) {
    let mut conn = db.connect().await;
    for _ in 0..200 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut conn)
        .await
        .expect("pg_stat_activity");
        if waiting >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{n} queries never waited on a lock");
}

/// The outbox id of the first event on the route topic ending in `event`.
async fn event_id(db: &TestDb, event: &str) -> i64 {
    sqlx::query_scalar("SELECT min(id) FROM event_outbox WHERE topic LIKE '%-' || $1")
        .bind(event)
        .fetch_one(&mut db.connect().await)
        .await
        .expect("an event of the route")
}

#[tokio::test]
async fn a_role_removed_while_a_write_waits_no_longer_authorizes_it() {
    let m = model();
    let (svc, db) = auth_service().await;
    let root = svc.admin().await;
    let top = identity(&m).super_admin_role.as_str();
    let lower = other_role(&m).to_string();
    let root_id = root_id(&db).await;
    let (other_id, other) = signed_in(&svc, &root, top).await;

    // Hold root's row, so that the other top-role account's reset of root's
    // password waits inside its transaction, past every check made at the
    // start of its request.
    let mut holder = db.connect().await;
    let mut held = sqlx::Connection::begin(&mut holder).await.expect("begin");
    sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
        .bind(root_id)
        .execute(&mut *held)
        .await
        .expect("lock root's row");
    let reset = tokio::spawn(async move {
        other
            .patch(
                &format!("/v1/users/{root_id}/password-by-admin"),
                json!({ "password": "taken over password" }),
            )
            .await
    });
    waiting_on_locks(&db, 1).await;
    // Root demotes the resetting account meanwhile; give the demotion time
    // to commit if nothing holds it back.
    let demote_path = format!("/v1/users/{other_id}/role");
    let demote_root = root.clone();
    let demote = tokio::spawn(async move {
        demote_root
            .patch(&demote_path, json!({ "roleId": lower }))
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    held.rollback().await.expect("release root's row");

    let demoted = expect(StatusCode::OK, &demote.await.expect("demotion"));
    assert_eq!(demoted["user"]["roleId"], other_role(&m));
    let (status, answer) = reset.await.expect("reset");
    if status == StatusCode::OK {
        // Allowed only as a write made before the role was taken away.
        assert!(
            event_id(&db, "userpasswordbyadmin-updated").await
                < event_id(&db, "userrole-updated").await,
            "the reset committed after its caller lost the role that allowed it: {answer}"
        );
    } else {
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    }
}

/// The auth model's identity section.
fn identity(m: &Model) -> &Identity {
    m.auth.as_ref().expect("the auth model issues identities")
}
