//! Routes: what every route has (name, method, path, rule, topic), and what
//! its kind adds, in [`RouteKind`]: each kind carries only its own facts.

use super::field::{active_clause, field_of, owner_column, FieldPlan};
use super::hooks::{route_hooks, RouteHooks, Types};
use super::read::{GetPlan, IncludePlan, ListPlan, ReadPlan};
use super::write::{
    redaction, required_idents, validated, CreatePlan, DeletePlan, Redaction, UpdatePlan,
    UploadPlan, ValueField,
};
use crate::action::{Action, Auth, HookPoint, View};
use crate::model::{DataObject, Model, Route};
use crate::naming::{
    camel, change_const, constant, index_name, plural, route_event_const, route_topic, snake,
};

#[derive(Debug, Clone)]
pub struct RoutePlan {
    pub name: String,
    pub handler: String,
    /// `GetUser`, used for per-route type names.
    pub type_prefix: String,
    pub action: Action,
    pub method: String,
    /// axum route method function: get, post, patch, put, delete.
    pub method_fn: String,
    /// Full path with the API base, in axum syntax (`/v1/users/{id}`).
    pub path: String,
    pub object: Option<String>,
    pub data_name: String,
    pub event: Option<String>,
    pub topic: Option<String>,
    pub topic_const: Option<String>,
    pub auth: AuthPlan,
    /// The `Access` literal of the route's rule.
    pub access: String,
    pub success_status: u16,
    /// The `RouteInfo` static's name, e.g. `GET_USER`.
    pub const_name: String,
    /// What the route publishes, for docs: its topic, session events, or none.
    pub events_doc: String,
    /// Public writes (registration) are throttled per client address.
    pub throttled: bool,
    pub kind: RouteKind,
    /// Where the route calls hand-written code.
    pub hooks: RouteHooks,
    /// `pub(crate) ` when a consumer calls the handler, else empty.
    pub visibility: &'static str,
}

/// What a route does, with the facts only that kind of route has.
#[derive(Debug, Clone)]
pub enum RouteKind {
    Get(GetPlan),
    List(ListPlan),
    Create(CreatePlan),
    Update(UpdatePlan),
    Delete(DeletePlan),
    Download(DownloadPlan),
    Extend(ExtendPlan),
    Custom(CustomPlan),
    /// Sessions, one-time codes, permissions and the event stream: the auth,
    /// verification and realtime modules serve them from the identity plan.
    Service,
}

/// A download route: the file's bytes by its key.
#[derive(Debug, Clone)]
pub struct DownloadPlan {
    /// The SQL loading the file by its key, and the key's Rust type.
    pub download_sql: String,
    pub key_type: String,
    pub cache_control: String,
}

/// A custom route: declared in the model, its body hand-written.
#[derive(Debug, Clone)]
pub struct CustomPlan {
    /// Its path names a row by `{id}`.
    pub has_id: bool,
    /// Body fields it accepts (validated as a create validates them).
    pub inputs: Vec<FieldPlan>,
    pub required_inputs: Vec<String>,
    /// The validated input its body receives (`ReturnBookValues`).
    pub values: Vec<ValueField>,
    /// How `Debug` shows the body, when it carries a secret.
    pub redaction: Option<Redaction>,
    /// The events its body publishes.
    pub publishes: Vec<PublishPlan>,
    /// What the answer shows each caller (the body may answer any row).
    pub read: ReadPlan,
}

/// An event a custom route's body publishes, on a topic of its own.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    pub event: String,
    pub topic: String,
    pub topic_const: String,
    /// The module function that makes the event from a row: `loan_returned`.
    pub maker: String,
}

/// An extend route: merges data under a document's `extends`.
#[derive(Debug, Clone)]
pub struct ExtendPlan {
    pub extend_sql: String,
    /// The topic constant of the index's -extended event.
    pub extended_topic_const: String,
}

#[derive(Debug, Clone)]
pub struct AuthPlan {
    pub rule: Auth,
    /// For docs: `public`, `signed in`, `superAdmin, admin or owner`.
    pub summary: String,
}

impl AuthPlan {
    fn new(auth: &Auth) -> Self {
        let summary = match auth {
            Auth::Public => "public".into(),
            Auth::Login => "any signed-in user".into(),
            Auth::Rule(rule) => {
                let mut who: Vec<String> = rule.roles.clone();
                if rule.owner {
                    who.push("the owner".into());
                }
                if rule.system {
                    who.push("the system caller".into());
                }
                who.join(", ")
            }
        };
        AuthPlan {
            rule: auth.clone(),
            summary,
        }
    }

    pub fn is_public(&self) -> bool {
        self.rule.is_public()
    }

    /// A rule that lets the row's owner in.
    pub fn owner(&self) -> bool {
        self.rule.rule().is_some_and(|r| r.owner)
    }

    /// The `Access` literal of the rule.
    fn access(&self) -> String {
        match &self.rule {
            Auth::Public => "Access::Public".to_string(),
            Auth::Login => "Access::Login".to_string(),
            Auth::Rule(rule) => format!(
                "Access::Rule {{ roles: &[{}], owner: {} }}",
                rule.roles
                    .iter()
                    .map(String::as_str)
                    .chain(rule.system.then_some("system"))
                    .map(|r| format!("{r:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                rule.owner
            ),
        }
    }
}

/// What the docs and the object module ask of any route, whatever its kind.
impl RoutePlan {
    pub fn read(&self) -> Option<&ReadPlan> {
        match &self.kind {
            RouteKind::Get(g) => Some(&g.read),
            RouteKind::List(l) => Some(&l.read),
            RouteKind::Custom(c) => Some(&c.read),
            _ => None,
        }
    }

    /// What the route shows; `full` unless it reads rows.
    pub fn view(&self) -> View {
        self.read().map_or(View::Full, |r| r.view)
    }

    pub fn view_doc(&self) -> &str {
        self.read().map_or("", |r| r.view_doc.as_str())
    }

    /// The caller's sight as a Rust expression, "" when the route never narrows.
    pub fn sight(&self) -> &str {
        self.read().map_or("", |r| r.sight.as_str())
    }

    /// A get route that reads the public view in SQL.
    pub fn public_view(&self) -> bool {
        matches!(&self.kind, RouteKind::Get(g) if g.public_view)
    }

    pub fn list(&self) -> Option<&ListPlan> {
        match &self.kind {
            RouteKind::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn searches(&self) -> bool {
        self.list().is_some_and(|l| l.search.is_some())
    }

    pub fn includes(&self) -> &[IncludePlan] {
        self.list().map_or(&[], |l| &l.includes)
    }

    /// Body fields a create, update or custom route accepts.
    pub fn inputs(&self) -> &[FieldPlan] {
        match &self.kind {
            RouteKind::Create(c) => &c.inputs,
            RouteKind::Update(u) => &u.inputs,
            RouteKind::Custom(c) => &c.inputs,
            _ => &[],
        }
    }

    pub fn upload(&self) -> Option<&UploadPlan> {
        match &self.kind {
            RouteKind::Create(c) => c.upload.as_ref(),
            _ => None,
        }
    }

    /// A create route's reference fields that are the caller for non-admins.
    pub fn caller_fields(&self) -> &[String] {
        match &self.kind {
            RouteKind::Create(c) => &c.caller_fields,
            _ => &[],
        }
    }

    /// The body field carrying the secret's current value ("" when not asked).
    /// Whether every call must carry [`Self::confirm_field`] (not only those
    /// that switch the second factor off).
    pub fn confirm_always(&self) -> bool {
        match &self.kind {
            RouteKind::Update(u) => u.confirm_when == "true",
            _ => true,
        }
    }

    pub fn confirm_field(&self) -> &str {
        match &self.kind {
            RouteKind::Update(u) => &u.confirm_field,
            RouteKind::Delete(d) => &d.confirm_field,
            _ => "",
        }
    }
}

pub fn route(m: &Model, name: &str, r: &Route) -> RoutePlan {
    let object = r.object.as_deref().and_then(|n| Some((n, m.object(n)?)));
    let auth = AuthPlan::new(&r.auth);
    let topic = r.event.as_ref().map(|e| route_topic(m, e));
    let mut plan = RoutePlan {
        kind: kind(m, name, r, object),
        events_doc: events_doc(topic.as_deref(), r.action),
        throttled: r.auth.is_public() && r.action.changes_rows(),
        access: auth.access(),
        auth,
        name: name.to_string(),
        handler: snake(name),
        type_prefix: camel(name),
        const_name: constant(name),
        action: r.action,
        method: r.method.clone(),
        method_fn: r.method.to_lowercase(),
        path: format!("{}{}", m.service.api_base, r.path),
        object: r.object.clone(),
        data_name: data_name(m, r, object.map(|(n, _)| n)),
        event: r.event.clone(),
        topic,
        topic_const: r.event.as_deref().map(route_event_const),
        success_status: r.action.success_status(),
        hooks: RouteHooks::default(),
        visibility: "",
    };
    if let Some((object, _)) = object {
        let row = camel(object);
        let trait_name = format!("{row}Hooks");
        let points: Vec<HookPoint> = r.hooks.iter().filter_map(|h| HookPoint::parse(h)).collect();
        plan.hooks = route_hooks(
            &plan,
            &points,
            &Types {
                trait_name: &trait_name,
                row: &row,
            },
        );
    }
    plan
}

fn kind(m: &Model, route: &str, r: &Route, object: Option<(&str, &DataObject)>) -> RouteKind {
    let Some((name, o)) = object else {
        return RouteKind::Service;
    };
    match r.action {
        Action::Get => RouteKind::Get(super::read::get(m, r, o)),
        Action::List => RouteKind::List(super::read::list(m, route, r, name, o)),
        Action::Create => RouteKind::Create(super::write::create(m, r, name, o)),
        Action::Update => RouteKind::Update(super::write::update(m, r, name, o)),
        Action::Delete => RouteKind::Delete(super::write::delete(m, r, name, o)),
        Action::Download => RouteKind::Download(download(m, r, o)),
        Action::Extend => RouteKind::Extend(extend(m, name)),
        Action::Custom => RouteKind::Custom(custom(m, r, o)),
        _ => RouteKind::Service,
    }
}

/// The dataName of the route's answers and events.
fn data_name(m: &Model, r: &Route, object: Option<&str>) -> String {
    match (object, r.action) {
        (Some(n), Action::List) => plural(n),
        (Some(n), _) => n.to_string(),
        (None, Action::VerifyStart | Action::ResetStart) => "verification".to_string(),
        (None, Action::VerifyComplete | Action::ResetComplete) => {
            m.user_object().unwrap_or_default().to_string()
        }
        (None, Action::Permissions) => "permissions".to_string(),
        (None, Action::ListSessions) => "sessions".to_string(),
        (None, _) => "session".to_string(),
    }
}

fn events_doc(topic: Option<&str>, action: Action) -> String {
    match (topic, action) {
        (Some(t), _) => format!("`{t}`"),
        (None, Action::Download) => "none (answers bytes)".to_string(),
        (None, Action::Extend) => "the index's `-extended` topic".to_string(),
        (None, Action::Subscribe) => "none (streams the events)".to_string(),
        (None, _) => "session events".to_string(),
    }
}

fn download(m: &Model, r: &Route, o: &DataObject) -> DownloadPlan {
    let cache_control = r.cache_control.clone().unwrap_or_else(|| {
        if r.auth.is_public() {
            "public, max-age=3600".to_string()
        } else {
            "private, no-cache".to_string()
        }
    });
    let Some((blob_name, blob, type_field)) = o.file_field() else {
        return DownloadPlan {
            download_sql: String::new(),
            key_type: String::new(),
            cache_control,
        };
    };
    let key = snake(r.by.as_deref().unwrap_or("id"));
    let name = blob
        .name_field
        .as_ref()
        .map(|n| format!("t.{}", snake(n)))
        .unwrap_or_else(|| "NULL::text".to_string());
    let owner = owner_column(o);
    DownloadPlan {
        download_sql: format!(
            "SELECT t.id, t.record_version, t.{} AS content_type, {name} AS file_name, t.{} AS bytes, t.{owner} AS owner FROM {} AS t WHERE t.{key} = $1{}{}",
            snake(type_field),
            snake(blob_name),
            o.table,
            active_clause(o),
            accounts_active(m, o)
        ),
        key_type: if key == "id" { "Uuid" } else { "String" }.to_string(),
        cache_control,
    }
}

/// The file's accounts (its required references to the user object) are
/// active: an archived account's files are no longer served, by key either.
fn accounts_active(m: &Model, o: &DataObject) -> String {
    let Some((account, user)) = m
        .user_object()
        .and_then(|n| Some((n, m.object(n)?)))
        .filter(|(_, u)| u.soft_delete)
    else {
        return String::new();
    };
    o.fields
        .iter()
        .filter(|(_, f)| f.required && f.references.as_deref() == Some(account))
        .map(|(name, _)| {
            format!(
                " AND EXISTS (SELECT 1 FROM {} AS a WHERE a.id = t.{} AND a.is_active)",
                user.table,
                snake(name)
            )
        })
        .collect()
}

fn custom(m: &Model, r: &Route, o: &DataObject) -> CustomPlan {
    let inputs = fields_named(o, &r.fields);
    CustomPlan {
        read: super::read::read(m, r, o, &[], true),
        has_id: r.path.contains("{id}"),
        required_inputs: required_idents(&inputs),
        values: validated(&inputs, None),
        redaction: redaction(&inputs, &[]),
        inputs,
        publishes: r
            .publishes
            .iter()
            .map(|event| PublishPlan {
                topic: route_topic(m, event),
                topic_const: route_event_const(event),
                maker: snake(event),
                event: event.clone(),
            })
            .collect(),
    }
}

fn extend(m: &Model, object: &str) -> ExtendPlan {
    ExtendPlan {
        extended_topic_const: change_const("INDEX", object, "extended"),
        extend_sql: format!(
            "UPDATE search_documents AS d SET extends = d.extends || $2, updated_at = now() WHERE d.index_name = '{}' AND d.id = $1 RETURNING d.doc || jsonb_build_object('extends', d.extends)",
            index_name(m, object)
        ),
    }
}

/// The fields of `o` that `names` lists, planned.
pub(super) fn fields_named(o: &DataObject, names: &[String]) -> Vec<FieldPlan> {
    names
        .iter()
        .filter_map(|f| field_of(o, f).map(|fd| super::field::field(f, fd)))
        .collect()
}
