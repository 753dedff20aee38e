//! Consumers: each one's topics (from the model that publishes them), its
//! dead-letter topic, and what its effect needs: a replica's row and upsert,
//! a route's call, a hook's typed event.

use super::field::{columns_of, field, FieldPlan};
use super::route::{RouteKind, RoutePlan};
use crate::model::{ConsumerDef, Model};
use crate::naming::{camel, change_topic, constant, fill, snake};
use heck::ToKebabCase;

#[derive(Debug)]
pub struct ConsumersPlan {
    /// The consumer group: the service's name.
    pub group: String,
    pub max_attempts: u32,
    pub retry_backoff_ms: u64,
    pub max_retry_backoff_ms: u64,
    pub batch_size: u32,
    pub inbox_retention_secs: u64,
    pub consumers: Vec<ConsumerPlan>,
    /// Some consumer is a hand-written hook (`ConsumerHooks`).
    pub has_hooks: bool,
    /// Some consumer runs a route (it needs the system caller's policy).
    pub has_routes: bool,
    /// Some consumer runs in a batch's transaction (a replica or a hook).
    pub has_batch: bool,
    /// The extractors route consumers build: `ApiPath`, `IfMatch`, `ApiJson`.
    pub extractors: Vec<&'static str>,
    /// The `consumers` module's imports for its row and event types.
    pub type_uses: Vec<&'static str>,
}

impl ConsumersPlan {
    /// The names of the replicas, which `rebuild` takes.
    pub fn replicas(&self) -> Vec<&str> {
        self.consumers
            .iter()
            .filter(|c| c.replica.is_some())
            .map(|c| c.name.as_str())
            .collect()
    }
}

#[derive(Debug)]
pub struct ConsumerPlan {
    pub name: String,
    /// `retire_host`, `RETIRE_HOST`, `RetireHost`.
    pub ident: String,
    pub const_ident: String,
    pub type_ident: String,
    pub index: usize,
    /// `replicate`, `route` or `hook`.
    pub kind: String,
    /// `InBatch` or `Route` (`svcgen_runtime::consume::Effect`).
    pub effect: &'static str,
    pub topics: Vec<ConsumedTopic>,
    pub dead_letter: String,
    pub dead_letter_const: String,
    /// The service whose events it reads, and their object.
    pub source_service: String,
    pub source_object: String,
    /// One line for docs: what it does.
    pub summary: String,
    pub replica: Option<ReplicaPlan>,
    pub route: Option<RouteCallPlan>,
    pub hook: Option<HookCallPlan>,
}

#[derive(Debug)]
pub struct ConsumedTopic {
    pub name: String,
    /// `created`, `updated` or `deleted`.
    pub change: &'static str,
}

#[derive(Debug)]
pub struct ReplicaPlan {
    /// The local object's table and module.
    pub table: String,
    pub module: String,
    /// `HostsRow`: the source's row as its events carry it, the kept fields only.
    pub row_struct: String,
    pub fields: Vec<FieldPlan>,
    pub upsert_sql: String,
    /// The same for many rows at once, from one array per column.
    pub upsert_all_sql: String,
}

#[derive(Debug)]
pub struct RouteCallPlan {
    pub route: String,
    /// `crate::host::retire_host::<crate::hooks::host::Hooks>`.
    pub handler: String,
    /// The payload field that names the row of the route's path, if it has one.
    pub id_from: Option<String>,
    /// `(input name, payload field)` of the body, and the body's type.
    pub body: Vec<(String, String)>,
    pub input_type: Option<String>,
    /// The handler's extractors after `State(app), ctx, caller`.
    pub tail_args: String,
}

#[derive(Debug)]
pub struct HookCallPlan {
    /// The `ConsumerHooks` method, e.g. `city_counts`.
    pub method: String,
    /// `CityCountsEvent`: the fields the hook receives.
    pub event_struct: String,
    pub fields: Vec<FieldPlan>,
}

const CHANGES: [&str; 3] = ["created", "updated", "deleted"];

pub fn consumers(m: &Model, routes: &[RoutePlan]) -> Option<ConsumersPlan> {
    if m.consumers.is_empty() {
        return None;
    }
    let consumers: Vec<ConsumerPlan> = m
        .consumers
        .iter()
        .enumerate()
        .map(|(index, (name, c))| consumer(m, routes, index, name, c))
        .collect();
    Some(ConsumersPlan {
        group: m.service.name.clone(),
        max_attempts: m.consuming.max_attempts,
        retry_backoff_ms: m.consuming.retry_backoff_ms,
        max_retry_backoff_ms: m.consuming.max_retry_backoff_ms,
        batch_size: m.consuming.batch_size,
        inbox_retention_secs: u64::from(m.consuming.inbox_retention_hours) * 3600,
        has_hooks: consumers.iter().any(|c| c.hook.is_some()),
        has_routes: consumers.iter().any(|c| c.route.is_some()),
        has_batch: consumers.iter().any(|c| c.route.is_none()),
        extractors: ["ApiJson", "ApiPath", "IfMatch"]
            .into_iter()
            .filter(|e| {
                consumers
                    .iter()
                    .filter_map(|c| c.route.as_ref())
                    .any(|r| r.tail_args.contains(&format!("{e}(")))
            })
            .collect(),
        type_uses: type_uses(&consumers),
        consumers,
    })
}

/// `chrono` and `uuid` imports, as the rows and events need them.
fn type_uses(consumers: &[ConsumerPlan]) -> Vec<&'static str> {
    let types: Vec<&str> = consumers
        .iter()
        .flat_map(|c| {
            let replica = c.replica.iter().flat_map(|r| &r.fields);
            let hook = c.hook.iter().flat_map(|h| &h.fields);
            replica.chain(hook).map(|f| f.rust_type.as_str())
        })
        .collect();
    let mut uses = Vec::new();
    if types.iter().any(|t| t.contains("DateTime")) {
        uses.push("chrono::{DateTime, Utc}");
    }
    let route_ids = consumers
        .iter()
        .any(|c| c.route.as_ref().is_some_and(|r| r.id_from.is_some()));
    if route_ids || types.iter().any(|t| t.contains("Uuid")) {
        uses.push("uuid::Uuid");
    }
    uses
}

/// The dead-letter topic of consumer `name`.
pub fn dead_letter(m: &Model, name: &str) -> String {
    fill(
        &m.consuming.dead_letter,
        m,
        &[("consumer", &name.to_kebab_case())],
    )
}

/// The constant of consumer `name`'s dead-letter topic.
pub fn dead_letter_const(name: &str) -> String {
    format!("DEAD_LETTER_{}", constant(name))
}

fn consumer(
    m: &Model,
    routes: &[RoutePlan],
    index: usize,
    name: &str,
    c: &ConsumerDef,
) -> ConsumerPlan {
    let source = m.source(c.from.as_deref()).unwrap_or(m);
    let (object, changes): (String, Vec<&'static str>) = match c.kind.as_str() {
        "replicate" => (c.object.clone().unwrap_or_default(), CHANGES.to_vec()),
        _ => {
            let event = c.event.as_deref().unwrap_or_default();
            let (object, change) = event.split_once('.').unwrap_or((event, "created"));
            let change = CHANGES
                .into_iter()
                .find(|c| *c == change)
                .unwrap_or("created");
            (object.to_string(), vec![change])
        }
    };
    let topics = changes
        .into_iter()
        .map(|change| ConsumedTopic {
            name: change_topic(&source.topics.db_event, source, &object, change),
            change,
        })
        .collect();
    let source_object = source.object(&object);
    let kept = |names: &[String]| -> Vec<FieldPlan> {
        let mut fields: Vec<FieldPlan> = Vec::new();
        for n in names {
            if let Some(f) =
                source_object.and_then(|o| o.fields.iter().find(|(fname, _)| fname == n))
            {
                fields.push(field(n, &f.1));
            } else if let Some(sys) = source_object
                .map(columns_of)
                .and_then(|cols| cols.into_iter().find(|col| col.system && col.name == *n))
            {
                fields.push(sys);
            }
        }
        fields
    };
    // The change a route or hook consumer's event names.
    let change = c
        .event
        .as_deref()
        .and_then(|e| e.split_once('.'))
        .map_or("", |(_, ch)| ch);
    let summary;
    let (mut replica, mut route, mut hook) = (None, None, None);
    match c.kind.as_str() {
        "replicate" => {
            let into = c.into.clone().unwrap_or_default();
            summary = format!(
                "keeps {into}, a read-only copy of {object} of {}, from its database events",
                source.service.name
            );
            replica = m.object(&into).map(|local| {
                let mut names = vec!["id".to_string()];
                names.extend(local.fields.iter().map(|(n, _)| n.clone()));
                names.extend(
                    ["isActive", "recordVersion", "createdAt", "updatedAt"].map(String::from),
                );
                let mut fields = kept(&names);
                // The copy's optionality is the replica's own (a required copy of a required field).
                for f in &mut fields {
                    if let Some((_, lf)) = local.fields.iter().find(|(n, _)| *n == f.name) {
                        f.nullable = !lf.required;
                        f.row_type = if f.nullable {
                            format!("Option<{}>", f.rust_type)
                        } else {
                            f.rust_type.clone()
                        };
                    }
                }
                ReplicaPlan {
                    table: local.table.clone(),
                    module: snake(&into),
                    row_struct: format!("{}Row", camel(name)),
                    upsert_sql: upsert_sql(&local.table, &fields),
                    upsert_all_sql: upsert_all_sql(&local.table, &fields),
                    fields,
                }
            });
        }
        "route" => {
            let route_name = c.route.clone().unwrap_or_default();
            summary = format!(
                "runs {route_name} for each {object} {change} at {}",
                source.service.name
            );
            route = routes
                .iter()
                .find(|r| r.name == route_name)
                .map(|r| route_call(r, c));
        }
        _ => {
            summary = format!(
                "calls a hand-written hook for each {object} {change} at {}",
                source.service.name
            );
            let mut fields = kept(&c.fields);
            for f in &mut fields {
                // A hook sees what the event carries, as the source declares it.
                f.nullable = f.nullable || !f.required && !f.system;
                f.row_type = if f.nullable {
                    format!("Option<{}>", f.rust_type)
                } else {
                    f.rust_type.clone()
                };
            }
            hook = Some(HookCallPlan {
                method: snake(name),
                event_struct: format!("{}Event", camel(name)),
                fields,
            });
        }
    }
    ConsumerPlan {
        name: name.to_string(),
        ident: snake(name),
        const_ident: constant(name),
        type_ident: camel(name),
        index,
        kind: c.kind.clone(),
        effect: if c.kind == "route" {
            "Route"
        } else {
            "InBatch"
        },
        topics,
        dead_letter: dead_letter(m, name),
        dead_letter_const: dead_letter_const(name),
        source_service: source.service.name.clone(),
        source_object: object,
        summary,
        replica,
        route,
        hook,
    }
}

/// Inserts the row, or overwrites the copy when the event's version is at
/// least the copy's: older events (out of order, replayed) change nothing,
/// and the same version again writes the same values.
fn upsert_sql(table: &str, fields: &[FieldPlan]) -> String {
    let columns: Vec<&str> = fields.iter().map(|f| f.column.as_str()).collect();
    let values: Vec<String> = (1..=fields.len()).map(|i| format!("${i}")).collect();
    let sets: Vec<String> = columns
        .iter()
        .filter(|c| **c != "id")
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    format!(
        "INSERT INTO {table} AS t ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {} WHERE t.record_version <= EXCLUDED.record_version",
        columns.join(", "),
        values.join(", "),
        sets.join(", ")
    )
}

/// [`upsert_sql`] for a batch: one array per column, unnested. The rows
/// must name each id once (a statement may touch a row once).
fn upsert_all_sql(table: &str, fields: &[FieldPlan]) -> String {
    let single = upsert_sql(table, fields);
    let arrays: Vec<String> = fields
        .iter()
        .enumerate()
        .map(|(i, f)| format!("${}::{}[]", i + 1, f.sql_type))
        .collect();
    let values: Vec<String> = (1..=fields.len()).map(|i| format!("${i}")).collect();
    single.replace(
        &format!("VALUES ({})", values.join(", ")),
        &format!("SELECT * FROM UNNEST({})", arrays.join(", ")),
    )
}

/// How a consumer calls a route's handler: the extractors it would get from
/// a request, made from the event.
fn route_call(r: &RoutePlan, c: &ConsumerDef) -> RouteCallPlan {
    let module = snake(r.object.as_deref().unwrap_or_default());
    let turbofish = if r.hooks.generic.is_empty() {
        String::new()
    } else {
        format!("::<crate::hooks::{module}::Hooks>")
    };
    let handler = format!("crate::{module}::{}{turbofish}", r.handler);
    let id_from = c
        .input
        .iter()
        .find(|(n, _)| n == "id")
        .map(|(_, f)| f.clone());
    let body: Vec<(String, String)> = c.input.iter().filter(|(n, _)| n != "id").cloned().collect();
    let mut tail: Vec<String> = Vec::new();
    let mut input_type = None;
    let has_body = match &r.kind {
        RouteKind::Create(_) => true,
        RouteKind::Update(_) => true,
        RouteKind::Custom(cu) => !cu.inputs.is_empty(),
        _ => false,
    };
    if id_from.is_some() {
        tail.push("ApiPath(call.id)".into());
    }
    if matches!(r.kind, RouteKind::Update(_) | RouteKind::Delete(_)) {
        tail.push("IfMatch(None)".into());
    }
    if has_body {
        tail.push("ApiJson(call.input)".into());
        input_type = Some(format!("crate::{module}::{}Input", r.type_prefix));
    }
    RouteCallPlan {
        route: r.name.clone(),
        handler,
        id_from,
        body,
        input_type,
        tail_args: tail.join(", "),
    }
}
