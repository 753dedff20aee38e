//! Data objects: each object's module (rows, SQL, sorts, constraints,
//! topics, routes, imports) and what file objects point at.

use super::field::{
    active_clause, columns_of, field_of, owner_column, partial_clause, public_columns, select_list,
    visible_of, FieldPlan,
};
use super::hooks::{stub_uses, HookMethod};
use super::imports::Imports;
use super::read::IncludePlan;
use super::route::{PublishPlan, RouteKind, RoutePlan};
use super::rust_str_slice;
use super::search::SearchPlan;
use crate::action::Action;
use crate::model::{DataObject, Model};
use crate::naming::{camel, change_const, change_topic, plural, snake};

#[derive(Debug)]
pub struct ObjectPlan {
    /// Model name, e.g. `userGroup` (the seed's dataName).
    pub name: String,
    /// Plural dataName of list routes, e.g. `userGroups`.
    pub plural: String,
    pub module: String,
    pub struct_name: String,
    pub table: String,
    pub description: String,
    pub soft_delete: bool,
    /// All columns, system ones included, in table order.
    pub columns: Vec<FieldPlan>,
    /// `t.id, t.email, ...`: what reads select (no secrets, no blobs).
    pub select_list: String,
    /// The fields a reader sees, in the same order as `select_list`.
    pub visible: Vec<FieldPlan>,
    /// The public view (fields marked public), when a route uses it.
    pub public_view: Option<ViewPlan>,
    /// `&["id", "fullname", ...]`: the JSON keys of the fields everyone may
    /// see (id, the fields marked public, isActive).
    pub public_keys: String,
    pub public_fields: Vec<String>,
    /// Some route of this object narrows what it shows (`PUBLIC_FIELDS`).
    pub narrowed: bool,
    pub filters: Vec<FieldPlan>,
    /// `(query value, SQL ORDER BY)` pairs that list routes accept.
    pub sorts: Vec<SortPlan>,
    pub search_columns: Vec<String>,
    pub indexes: Vec<IndexPlan>,
    pub foreign_keys: Vec<ForeignKeyPlan>,
    pub db_topics: ChangeTopics,
    pub index_topics: ChangeTopics,
    /// Routes of this object, in model order.
    pub routes: Vec<RoutePlan>,
    pub includes: Vec<IncludePlan>,
    pub endpoints: Vec<EndpointPlan>,
    /// The caller's own account, served by the identity object's module.
    pub current_user: Option<RoutePlan>,
    /// Text fields with rules, for the module's rule constants.
    pub text_rules: Vec<FieldPlan>,
    pub sql_get: String,
    pub sql_lock: String,
    pub sql_get_public: String,
    pub sql_delete: String,
    pub uniques: Vec<UniquePlan>,
    /// The sort key of a list whose client names none.
    pub default_sort: String,
    pub has_list: bool,
    pub has_delete: bool,
    /// The column that names a row's owner: `id` for the user object, else `_owner`.
    pub owner_column: String,
    /// `Some(row.id)` or `row.owner`: the owner of a loaded row.
    pub owner_expr: String,
    /// Some route lets owners of a row in.
    pub has_owner_rules: bool,
    /// Constant names (in `topics.rs`) of the database and index topics.
    pub db_consts: ChangeTopics,
    pub index_consts: ChangeTopics,
    /// Blob fields: events carry a descriptor instead of the bytes.
    pub blobs: Vec<FieldPlan>,
    /// Update or delete routes lock and version-check rows.
    pub has_locking: bool,
    /// The module's `use` lines: exactly what its routes need.
    pub uses: Vec<String>,
    /// Changes of this object touch search documents.
    pub search_followed: bool,
    /// Some route of this object searches its index.
    pub has_search: bool,
    /// A file object whose rows the row they reference points at.
    pub pointer: Option<PointerPlan>,
    /// Fields of this object that files of other objects set (`pointedBy`).
    pub pointer_setters: Vec<SetterPlan>,
    /// Its routes' hand-written code, when some route has hooks or is custom.
    pub hooks: Option<ObjectHooks>,
    /// Events that custom routes' bodies publish.
    pub publishes: Vec<PublishPlan>,
    /// `(constraint, message)` of references to replicas: a row that has not
    /// arrived yet is a retryable 503, not a 422.
    pub pending_refs: Vec<(String, String)>,
    /// A replica of another service's object (`user of airbnb-auth-service`),
    /// kept by a consumer: it publishes no events of its own.
    pub replica_of: Option<String>,
}

/// The hooks of an object's routes: the trait its module declares and the
/// hand-written file (`src/hooks/<module>.rs`) implements.
#[derive(Debug, Clone)]
pub struct ObjectHooks {
    /// `LoanHooks`.
    pub trait_name: String,
    pub methods: Vec<HookMethod>,
    /// The hand-written file's `use` lines, for its stubs.
    pub stub_uses: Vec<String>,
    /// `(route, its hook points)` for the docs, e.g. `("lendBook", "before, committed")`.
    pub points: Vec<(String, String)>,
}

/// How a new or deleted file updates the row it references.
#[derive(Debug, Clone)]
pub struct PointerPlan {
    /// The referenced object's module and its setter function.
    pub module: String,
    pub setter: String,
    /// `Some(row.user_id)` or `row.owner_id`: the referenced row's id.
    pub via_expr: String,
    /// The file row's key field, and the public download path around it.
    pub key_ident: String,
    pub href_prefix: String,
    pub href_suffix: String,
}

/// A setter of a field that files point at.
#[derive(Debug, Clone)]
pub struct SetterPlan {
    pub name: String,
    pub field: String,
    /// Sets the field (`$2`) of row `$1`, only while it holds `$3` when given.
    pub update_sql: String,
}

/// One path and the handlers of its methods, e.g. `routing::get(get_user).patch(update_user)`.
#[derive(Debug, Clone)]
pub struct EndpointPlan {
    pub path: String,
    pub chain: String,
}

#[derive(Debug, Clone)]
pub struct ChangeTopics {
    pub created: String,
    pub updated: String,
    pub deleted: String,
}

impl ChangeTopics {
    fn new(name: impl Fn(&str) -> String) -> Self {
        ChangeTopics {
            created: name("created"),
            updated: name("updated"),
            deleted: name("deleted"),
        }
    }

    /// `(change, name)` of each change.
    pub fn each(&self) -> [(&'static str, &String); 3] {
        [
            ("created", &self.created),
            ("updated", &self.updated),
            ("deleted", &self.deleted),
        ]
    }
}

#[derive(Debug, Clone)]
pub struct ViewPlan {
    pub struct_name: String,
    pub fields: Vec<FieldPlan>,
    pub select_list: String,
}

#[derive(Debug, Clone)]
pub struct SortPlan {
    pub key: String,
    pub order_by: String,
    /// The same order in Elasticsearch: the field (text on its `.keyword`
    /// sub-field) and `asc` or `desc`.
    pub es_field: String,
    pub es_order: &'static str,
}

#[derive(Debug, Clone)]
pub struct UniquePlan {
    pub constraint: String,
    pub columns: String,
    pub partial: String,
}

#[derive(Debug, Clone)]
pub struct IndexPlan {
    pub name: String,
    pub columns: String,
    pub partial: String,
}

#[derive(Debug, Clone)]
pub struct ForeignKeyPlan {
    pub constraint: String,
    pub column: String,
    pub target_table: String,
}

pub fn object(
    m: &Model,
    name: &str,
    o: &DataObject,
    routes: &[RoutePlan],
    search: &SearchPlan,
) -> ObjectPlan {
    let columns = columns_of(o);
    let visible = visible_of(m, name, &columns);
    let select = select_list(&visible, "t");
    let struct_name = camel(name);
    let current_user = routes
        .iter()
        .find(|r| r.action == Action::CurrentUser && m.is_user_object(name))
        .map(|r| RoutePlan {
            data_name: name.to_string(),
            ..r.clone()
        });
    let routes: Vec<RoutePlan> = routes
        .iter()
        .filter(|r| r.object.as_deref() == Some(name))
        .cloned()
        .collect();
    let served: Vec<RoutePlan> = routes.iter().chain(&current_user).cloned().collect();
    let public_fields: Vec<String> = public_columns(o).into_iter().map(|f| f.name).collect();
    let public_view = routes
        .iter()
        .any(|r| r.public_view())
        .then(|| public_view(o, &struct_name));
    let includes = includes(&routes);
    let sorts = sorts(o, &columns);
    let sql = Sql::new(o, &select, public_view.as_ref());
    let has = |a: Action| routes.iter().any(|r| r.action == a);
    let search_followed = search.follows.iter().any(|f| f.object == name);
    let hooks = object_hooks(&snake(name), &struct_name, &routes);
    ObjectPlan {
        owner_column: owner_column(o).into(),
        owner_expr: if o.owner_is_self {
            "Some(row.id)"
        } else {
            "row.owner"
        }
        .into(),
        has_owner_rules: routes.iter().any(asks_owner),
        narrowed: routes.iter().any(|r| !r.sight().is_empty()),
        public_keys: rust_str_slice(&public_fields),
        public_fields,
        db_consts: ChangeTopics::new(|c| change_const("DBEVENT", name, c)),
        index_consts: ChangeTopics::new(|c| change_const("INDEX", name, c)),
        blobs: columns.iter().filter(|c| c.blob).cloned().collect(),
        has_list: has(Action::List),
        has_delete: has(Action::Delete),
        // Custom routes on a row get `lock` for their hand-written bodies.
        has_locking: has(Action::Update)
            || has(Action::Delete)
            || routes
                .iter()
                .any(|r| matches!(&r.kind, RouteKind::Custom(c) if c.has_id)),
        uses: imports(&served, &visible, &includes, search_followed)
            .lines()
            .into_iter()
            // A replica publishes no events of its own.
            .filter(|u| !(m.replica_source(name).is_some() && u.contains("ObjectTopics")))
            .collect(),
        search_followed,
        has_search: routes.iter().any(|r| r.searches()),
        pointer: pointer_of(m, name, o),
        pointer_setters: pointer_setters(m, name, o, &select),
        name: name.to_string(),
        plural: plural(name),
        module: snake(name),
        struct_name,
        table: o.table.clone(),
        description: o.description.clone(),
        soft_delete: o.soft_delete,
        text_rules: text_rules(&columns, &routes),
        sql_lock: format!("{} FOR UPDATE", sql.get),
        sql_get: sql.get,
        sql_get_public: sql.get_public,
        sql_delete: sql.delete,
        select_list: select,
        filters: filters(o, &columns),
        visible,
        public_view,
        default_sort: "-createdAt".to_string(),
        sorts,
        search_columns: search_columns(o),
        uniques: uniques(o, &columns),
        indexes: indexes(o, &columns),
        foreign_keys: foreign_keys(m, o, &columns),
        db_topics: ChangeTopics::new(|c| change_topic(&m.topics.db_event, m, name, c)),
        index_topics: ChangeTopics::new(|c| change_topic(&m.topics.index_event, m, name, c)),
        endpoints: endpoints(&served),
        hooks,
        pending_refs: o
            .fields
            .iter()
            .filter_map(|(field, f)| {
                let target = f.references.as_deref()?;
                m.replica_source(target)?;
                Some((
                    format!("{}_{}_fkey", o.table, snake(field)),
                    format!("{field} names a {target} this service has not heard of yet"),
                ))
            })
            .collect(),
        replica_of: m.replica_source(name).map(|c| {
            let service = c
                .from
                .as_deref()
                .and_then(|f| m.source(Some(f)))
                .map_or(m.service.name.as_str(), |s| s.service.name.as_str());
            format!("{} of {service}", c.object.as_deref().unwrap_or_default())
        }),
        publishes: routes
            .iter()
            .filter_map(|r| match &r.kind {
                RouteKind::Custom(c) => Some(c.publishes.clone()),
                _ => None,
            })
            .flatten()
            .collect(),
        current_user,
        columns,
        routes,
        includes,
    }
}

/// The public view (fields marked public) that get routes read in SQL.
fn public_view(o: &DataObject, struct_name: &str) -> ViewPlan {
    let fields = public_columns(o);
    ViewPlan {
        struct_name: format!("{struct_name}Public"),
        select_list: select_list(&fields, "t"),
        fields,
    }
}

/// Whether a route asks who owns the rows it reads or writes: an owner
/// rule, or a view that narrows rows not owned (a search narrows documents).
fn asks_owner(r: &RoutePlan) -> bool {
    (r.auth.owner() && r.action != Action::List) || (!r.sight().is_empty() && !r.searches())
}

/// Text fields with rules that some route accepts.
fn text_rules(columns: &[FieldPlan], routes: &[RoutePlan]) -> Vec<FieldPlan> {
    let accepted = |c: &FieldPlan| {
        routes
            .iter()
            .any(|r| r.inputs().iter().any(|i| i.name == c.name))
    };
    columns
        .iter()
        .filter(|c| c.text_rule.is_some() && accepted(c))
        .cloned()
        .collect()
}

fn filters(o: &DataObject, columns: &[FieldPlan]) -> Vec<FieldPlan> {
    columns
        .iter()
        .filter(|c| field_of(o, &c.name).is_some_and(|f| f.filterable))
        .cloned()
        .collect()
}

fn search_columns(o: &DataObject) -> Vec<String> {
    o.fields
        .iter()
        .filter(|(_, f)| f.searchable)
        .map(|(n, _)| format!("t.{}", snake(n)))
        .collect()
}

/// The statements every object module has.
struct Sql {
    get: String,
    get_public: String,
    delete: String,
}

impl Sql {
    fn new(o: &DataObject, select: &str, public_view: Option<&ViewPlan>) -> Sql {
        let active = active_clause(o);
        let table = &o.table;
        Sql {
            get: format!("SELECT {select} FROM {table} AS t WHERE t.id = $1{active}"),
            get_public: public_view
                .map(|v| {
                    format!(
                        "SELECT {} FROM {table} AS t WHERE t.id = $1{active}",
                        v.select_list
                    )
                })
                .unwrap_or_default(),
            delete: if o.soft_delete {
                format!("UPDATE {table} AS t SET is_active = false, record_version = t.record_version + 1, updated_at = now() WHERE t.id = $1 RETURNING {select}")
            } else {
                format!("DELETE FROM {table} AS t WHERE t.id = $1 RETURNING {select}")
            },
        }
    }
}

/// The `(key, ORDER BY)` pairs list routes accept: each sortable column and
/// the timestamps, ascending and descending, ties broken by id.
fn sorts(o: &DataObject, columns: &[FieldPlan]) -> Vec<SortPlan> {
    let sortable = columns.iter().filter(|c| {
        c.name == "createdAt"
            || c.name == "updatedAt"
            || field_of(o, &c.name).is_some_and(|f| f.sortable)
    });
    let mut sorts = Vec::new();
    for c in sortable {
        let es_field = if c.json_type == "string" && c.json_format != Some("date-time") {
            format!("{}.keyword", c.name)
        } else {
            c.name.clone()
        };
        sorts.push(SortPlan {
            key: c.name.clone(),
            order_by: format!("t.{} ASC, t.id ASC", c.column),
            es_field: es_field.clone(),
            es_order: "asc",
        });
        sorts.push(SortPlan {
            key: format!("-{}", c.name),
            order_by: format!("t.{} DESC, t.id DESC", c.column),
            es_field,
            es_order: "desc",
        });
    }
    sorts
}

/// Unique fields and groups; among active rows only, with soft delete.
fn uniques(o: &DataObject, columns: &[FieldPlan]) -> Vec<UniquePlan> {
    let partial = partial_clause(o);
    let single = columns
        .iter()
        .filter(|c| field_of(o, &c.name).is_some_and(|f| f.unique))
        .map(|c| vec![c.column.clone()]);
    let groups = o
        .unique_together
        .iter()
        .map(|group| group.iter().map(|g| snake(g)).collect::<Vec<_>>());
    single
        .chain(groups)
        .map(|cols| UniquePlan {
            constraint: format!("{}_{}_key", o.table, cols.join("_")),
            columns: cols.join(", "),
            partial: partial.into(),
        })
        .collect()
}

/// Indexes of the columns lists filter, sort or join on, and of the default order.
fn indexes(o: &DataObject, columns: &[FieldPlan]) -> Vec<IndexPlan> {
    let partial = partial_clause(o);
    let mut indexes: Vec<IndexPlan> = columns
        .iter()
        .filter(|c| {
            field_of(o, &c.name).is_some_and(|f| {
                (f.filterable || f.sortable || f.references.is_some()) && !f.unique
            })
        })
        .map(|c| IndexPlan {
            name: format!("{}_{}_idx", o.table, c.column),
            columns: c.column.clone(),
            partial: partial.into(),
        })
        .collect();
    indexes.push(IndexPlan {
        name: format!("{}_created_at_idx", o.table),
        columns: "created_at, id".into(),
        partial: partial.into(),
    });
    indexes
}

fn foreign_keys(m: &Model, o: &DataObject, columns: &[FieldPlan]) -> Vec<ForeignKeyPlan> {
    columns
        .iter()
        .filter_map(|c| {
            let target = field_of(o, &c.name)?.references.as_deref()?;
            Some(ForeignKeyPlan {
                constraint: format!("{}_{}_fkey", o.table, c.column),
                column: c.column.clone(),
                target_table: m
                    .object(target)
                    .map(|t| t.table.clone())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The joined objects of the module's list routes, each once.
fn includes(routes: &[RoutePlan]) -> Vec<IncludePlan> {
    let mut includes: Vec<IncludePlan> = Vec::new();
    for i in routes.iter().flat_map(|r| r.includes()) {
        match includes.iter_mut().find(|a| a.struct_name == i.struct_name) {
            // A route that joins it whole needs its typed struct.
            Some(a) if !a.sight.is_empty() && i.sight.is_empty() => *a = i.clone(),
            Some(_) => {}
            None => includes.push(i.clone()),
        }
    }
    includes
}

/// The hooks trait of an object whose routes call hand-written code.
fn object_hooks(module: &str, struct_name: &str, routes: &[RoutePlan]) -> Option<ObjectHooks> {
    let hooked: Vec<&RoutePlan> = routes.iter().filter(|r| r.hooks.any()).collect();
    if hooked.is_empty() {
        return None;
    }
    let trait_name = format!("{struct_name}Hooks");
    let methods: Vec<HookMethod> = hooked
        .iter()
        .flat_map(|r| r.hooks.methods.clone())
        .collect();
    Some(ObjectHooks {
        stub_uses: stub_uses(module, &trait_name, &methods),
        points: hooked
            .iter()
            .map(|r| {
                let prefix = format!("{}_", r.handler);
                let points: Vec<&str> = r
                    .hooks
                    .methods
                    .iter()
                    .map(|m| m.name.strip_prefix(&prefix).unwrap_or("body"))
                    .collect();
                (r.name.clone(), points.join(", "))
            })
            .collect(),
        trait_name,
        methods,
    })
}

/// Each path once, with the handlers of its methods chained.
fn endpoints(routes: &[RoutePlan]) -> Vec<EndpointPlan> {
    let mut endpoints: Vec<EndpointPlan> = Vec::new();
    for r in routes {
        let handler = if r.hooks.any() {
            format!("{}::<H>", r.handler)
        } else {
            r.handler.clone()
        };
        let call = match r.upload() {
            // The upload's own limit replaces the service's body limit.
            Some(u) => format!(
                "{}(axum::handler::Handler::layer({handler}, axum::extract::DefaultBodyLimit::max({})))",
                r.method_fn, u.request_limit
            ),
            None => format!("{}({handler})", r.method_fn),
        };
        match endpoints.iter_mut().find(|e| e.path == r.path) {
            Some(e) => e.chain = format!("{}.{call}", e.chain),
            None => endpoints.push(EndpointPlan {
                path: r.path.clone(),
                chain: format!("routing::{call}"),
            }),
        }
    }
    endpoints
}

/// What the module's code uses, from what its routes do.
fn imports(
    routes: &[RoutePlan],
    visible: &[FieldPlan],
    includes: &[IncludePlan],
    search_followed: bool,
) -> Imports {
    let mut uses = Imports::default();
    for path in [
        "svcgen_runtime::event::ObjectTopics",
        "crate::state::AppState",
        "svcgen_runtime::error::ApiError",
        "axum::Router",
        "serde::Serialize",
        "uuid::Uuid",
        "svcgen_runtime::route::Access",
    ] {
        uses.path(path);
    }
    if visible.iter().any(|c| c.rust_type.contains("DateTime")) {
        uses.items("chrono", &["DateTime", "Utc"]);
    }
    if !routes.is_empty() {
        uses.path("axum::extract::State")
            .path("axum::routing")
            .items("svcgen_runtime::envelope", &["Reply", "RequestContext"])
            .path("svcgen_runtime::route::RouteInfo");
    }
    if !includes.is_empty() {
        uses.path("serde::Deserialize");
    }
    // Writes refresh the search documents their changes touch.
    if search_followed {
        uses.path("crate::search::SEARCH");
    }
    // Answers of one row name their status; pages of rows do not.
    if routes.iter().any(|r| r.action != Action::List) {
        uses.path("axum::http::StatusCode");
    }
    for r in routes {
        route_imports(&mut uses, r);
    }
    uses
}

/// What one route's handler uses.
fn route_imports(uses: &mut Imports, r: &RoutePlan) {
    if !r.auth.is_public() {
        uses.path("svcgen_runtime::auth::Caller");
    }
    if r.throttled {
        uses.path("svcgen_runtime::auth::ClientAddr");
    }
    // Narrowing what a caller sees of the rows read, or of joined rows.
    if !r.sight().is_empty() || r.includes().iter().any(|i| !i.sight.is_empty()) {
        uses.path("svcgen_runtime::views");
    }
    if r.action.addresses_row() || r.action == Action::Download {
        uses.path("svcgen_runtime::extract::ApiPath");
    }
    match &r.kind {
        RouteKind::List(l) => {
            if l.search.is_some() {
                uses.path("crate::search::SEARCH")
                    .path("svcgen_runtime::elastic");
            }
            uses.items(
                "svcgen_runtime::envelope",
                &["Filter", "ListMeta", "Paging"],
            )
            .path("svcgen_runtime::extract::ApiQuery")
            .items("sqlx", &["Postgres", "QueryBuilder"])
            .path("serde::Deserialize")
            .path("svcgen_runtime::validation");
        }
        RouteKind::Create(c) => {
            uses.path("serde::Deserialize")
                .path("svcgen_runtime::validation")
                .path("svcgen_runtime::validation::Validator");
            match c.upload {
                Some(_) => uses.path("svcgen_runtime::files"),
                None => uses.path("svcgen_runtime::extract::ApiJson"),
            };
        }
        RouteKind::Update(_) => {
            uses.items("sqlx", &["Postgres", "QueryBuilder"])
                .path("serde::Deserialize")
                .path("svcgen_runtime::validation")
                .path("svcgen_runtime::validation::Validator")
                .path("svcgen_runtime::extract::ApiJson")
                .path("svcgen_runtime::validation::Patch")
                .path("svcgen_runtime::extract::IfMatch");
        }
        RouteKind::Delete(_) => {
            uses.path("svcgen_runtime::extract::IfMatch")
                .path("svcgen_runtime::validation");
        }
        RouteKind::Download(_) => {
            uses.path("axum::http::HeaderMap")
                .path("svcgen_runtime::files");
        }
        RouteKind::Extend(_) => {
            // Its body is any JSON object, refused with a field error otherwise.
            uses.path("svcgen_runtime::extract::ApiJson")
                .path("svcgen_runtime::error::FieldError");
        }
        RouteKind::Custom(c) => {
            if c.has_id {
                uses.path("svcgen_runtime::extract::ApiPath");
            }
            if !c.inputs.is_empty() {
                uses.path("serde::Deserialize")
                    .path("svcgen_runtime::validation")
                    .path("svcgen_runtime::validation::Validator")
                    .path("svcgen_runtime::extract::ApiJson");
            }
            if !c.publishes.is_empty() {
                uses.path("svcgen_runtime::event::Event");
            }
        }
        RouteKind::Get(_) | RouteKind::Service => {}
    }
    // Hooks: the trait's futures, and what its methods are handed.
    if r.hooks.any() {
        uses.path("std::future::Future");
    }
    let h = &r.hooks;
    if h.before.is_some() || h.after.is_some() || h.body.is_some() {
        uses.path("svcgen_runtime::hooks::Tx");
    }
    if h.row.is_some() {
        uses.path("sqlx::PgConnection");
    }
    if h.query.is_some() {
        uses.items("sqlx", &["Postgres", "QueryBuilder"]);
    }
}

/// The `pointedBy` of a file object, lowered.
fn pointer_of(m: &Model, name: &str, o: &DataObject) -> Option<PointerPlan> {
    let p = o.pointed_by.as_ref()?;
    let via = field_of(o, &p.via)?;
    let target = via.references.as_deref()?;
    let (_, download) = m.routes.iter().find(|(_, r)| {
        r.object.as_deref() == Some(name)
            && r.action == Action::Download
            && r.by.is_some()
            && r.auth.is_public()
    })?;
    let key = download.by.as_deref()?;
    let path = format!("{}{}", m.service.api_base, download.path);
    let (prefix, suffix) = path.split_once(&format!("{{{key}}}"))?;
    let via_ident = snake(&p.via);
    Some(PointerPlan {
        module: snake(target),
        setter: format!("point_{}", snake(&p.field)),
        via_expr: if via.required {
            format!("Some(row.{via_ident})")
        } else {
            format!("row.{via_ident}")
        },
        key_ident: snake(key),
        href_prefix: prefix.to_string(),
        href_suffix: suffix.to_string(),
    })
}

/// Setters of this object's fields that files of other objects point at.
fn pointer_setters(m: &Model, name: &str, o: &DataObject, select: &str) -> Vec<SetterPlan> {
    m.data_objects
        .iter()
        .filter_map(|(_, other)| other.pointed_by.as_ref().map(|p| (other, p)))
        .filter(|(other, p)| field_of(other, &p.via).is_some_and(|f| f.references.as_deref() == Some(name)))
        .map(|(_, p)| {
            let column = snake(&p.field);
            SetterPlan {
                name: format!("point_{column}"),
                field: p.field.clone(),
                update_sql: format!(
                    "UPDATE {} AS t SET {column} = $2, record_version = t.record_version + 1, updated_at = now() WHERE t.id = $1{} AND ($3::text IS NULL OR t.{column} = $3) AND t.{column} IS DISTINCT FROM $2 RETURNING {select}",
                    o.table,
                    active_clause(o)
                ),
            }
        })
        .collect()
}
