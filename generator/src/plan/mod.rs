//! Plan: the validated model lowered to view models that templates only read.
//!
//! Every decision (identifiers, Rust and SQL types, topic names, SQL text,
//! permissions) is made here, so that templates hold shape only. One module
//! per kind of thing planned: fields, objects, routes (reading and writing),
//! the identity, topics; names come from [`crate::naming`].

mod consumers;
mod deploy;
mod field;
mod hooks;
mod identity;
mod imports;
mod object;
mod read;
mod route;
mod search;
mod topics;
mod trust;
mod write;

pub use consumers::{
    ConsumedTopic, ConsumerPlan, ConsumersPlan, HookCallPlan, ReplicaPlan, RouteCallPlan,
};
pub use deploy::{deploy, DeployPlan, EnvValue};
pub use field::FieldPlan;
pub use hooks::{HookMethod, Param, RouteHooks};
pub use identity::{CookiePlan, DeviceFieldPlan, FlowsPlan, IdentityPlan, RuleRow};
pub use object::{
    ChangeTopics, EndpointPlan, ForeignKeyPlan, IndexPlan, ObjectHooks, ObjectPlan, PointerPlan,
    SetterPlan, SortPlan, UniquePlan, ViewPlan,
};
pub use read::{GetPlan, IncludePlan, ListPlan, ReadPlan, SearchRoutePlan};
pub use route::{
    AuthPlan, CustomPlan, DownloadPlan, ExtendPlan, PublishPlan, RouteKind, RoutePlan,
};
pub use search::{FollowPlan, FollowStep, SearchIndexPlan, SearchPlan};
pub use topics::{ConstraintPlan, TopicKind, TopicPlan};
pub use trust::TrustPlan;
pub use write::{CreatePlan, DeletePlan, RankPlan, UpdatePlan, UploadPlan, ValueField};

use crate::action::{Action, Family, View};
use crate::model::Model;
use crate::naming::{camel, snake};

#[derive(Debug)]
pub struct Plan {
    /// The model file, as named in generated headers.
    pub source: String,
    pub service: ServicePlan,
    pub objects: Vec<ObjectPlan>,
    pub routes: Vec<RoutePlan>,
    pub topics: Vec<TopicPlan>,
    pub decisions: Vec<DecisionPlan>,
    pub roles: RolesPlan,
    /// Unique and foreign-key constraints, for mapping database errors to fields.
    pub constraints: Vec<ConstraintPlan>,
    /// The identity this service issues tokens for (`auth:`), or else
    pub identity: Option<IdentityPlan>,
    /// the issuer whose tokens it trusts (`trusts:`).
    pub trust: Option<TrustPlan>,
    /// Search indexes: their SQL, and which changes touch their documents.
    pub search: search::SearchPlan,
    /// `(topic constant, object)` of the index events the search mirror follows.
    pub search_topics: Vec<(String, String)>,
    pub realtime: RealtimePlan,
    pub views: ViewsPlan,
    /// How the generated crate depends on svcgen-runtime.
    pub runtime: RuntimeDep,
    /// The model's `deploy:`, for [`deploy()`] once `config.rs` is rendered.
    pub deploy: crate::model::Deploy,
    /// What the service does with events, when it consumes any.
    pub consumers: Option<ConsumersPlan>,
}

impl Plan {
    /// The one-time-code flows of the identity, when it has them.
    pub fn flows(&self) -> Option<&FlowsPlan> {
        self.identity.as_ref()?.flows.as_ref()
    }

    /// Uploads per signed-in user per window (only a service with an identity uploads).
    pub fn uploads_per_user(&self) -> u32 {
        self.identity
            .as_ref()
            .map_or(u32::MAX, |id| id.uploads_per_user)
    }

    /// Some route calls hand-written code: the crate has a `hooks` module.
    pub fn has_hooks(&self) -> bool {
        self.objects.iter().any(|o| o.hooks.is_some())
            || self.consumers.as_ref().is_some_and(|c| c.has_hooks)
    }
}

/// The generated crate's dependency on svcgen-runtime: a path, and the exact
/// version of the runtime this generator was built with.
#[derive(Debug)]
pub struct RuntimeDep {
    /// Relative to the generated crate.
    pub path: String,
    pub version: &'static str,
    /// The runtime's optional parts this model uses (`files`, `search`, `realtime`).
    pub features: Vec<&'static str>,
}

/// The views of reading routes (what each caller sees), for the permissions listing.
#[derive(Debug)]
pub struct ViewsPlan {
    /// `(route, View variant)` of the reading routes whose view is not
    /// `full`, e.g. `("listUsers", "Owner")`.
    pub routes: Vec<(String, String)>,
}

/// The realtime event stream (a `subscribe` route), if the model serves one.
#[derive(Debug)]
pub struct RealtimePlan {
    pub served: bool,
    pub name: String,
    /// Full path with the API base.
    pub path: String,
}

#[derive(Debug)]
pub struct ServicePlan {
    pub name: String,
    pub crate_ident: String,
    pub title: String,
    pub description: String,
    pub version: String,
    pub body_limit_bytes: u64,
    pub default_page_row_count: u32,
    pub max_page_row_count: u32,
    pub partitions: u32,
    pub replication_factor: u32,
    /// Bounds of a search keyword: its words, and each word's characters.
    pub search_max_words: u32,
    pub search_max_word_length: u32,
    /// Full paths of the download routes (`/v1/files/key/{accessKey}`): the
    /// only relative values a `format: url` field accepts.
    pub download_paths: Vec<String>,
}

#[derive(Debug)]
pub struct RolesPlan {
    pub values: Vec<String>,
    pub admin: Vec<String>,
    pub default: String,
}

#[derive(Debug)]
pub struct DecisionPlan {
    pub id: String,
    pub text: String,
}

pub fn plan(source: &str, m: &Model) -> Plan {
    let mut routes: Vec<RoutePlan> = m
        .routes
        .iter()
        .map(|(n, r)| route::route(m, n, r))
        .collect();
    let consumers = consumers::consumers(m, &routes);
    // A consumer calls the handlers of the routes it runs.
    for called in consumers
        .iter()
        .flat_map(|c| &c.consumers)
        .filter_map(|c| c.route.as_ref())
    {
        if let Some(r) = routes.iter_mut().find(|r| r.name == called.route) {
            r.visibility = "pub(crate) ";
        }
    }
    let search = search::plan(m);
    let objects: Vec<ObjectPlan> = m
        .data_objects
        .iter()
        .map(|(n, o)| object::object(m, n, o, &routes, &search))
        .collect();
    let identity = m.auth.as_ref().map(|a| identity::identity(m, a, &routes));
    let trust = m.trusts.as_ref().map(|t| trust::trust(m, t, &routes));
    let realtime = routes.iter().find(|r| r.action == Action::Subscribe);
    let realtime = RealtimePlan {
        served: realtime.is_some(),
        name: realtime.map(|r| r.name.clone()).unwrap_or_default(),
        path: realtime.map(|r| r.path.clone()).unwrap_or_default(),
    };
    Plan {
        source: source.to_string(),
        deploy: m.deploy.clone(),
        service: service(m),
        runtime: RuntimeDep {
            path: crate::runtime::WORKSPACE_PATH.to_string(),
            version: crate::runtime::VERSION,
            features: runtime_features(m, &routes, &search, &realtime),
        },
        topics: topics::topics(m, &objects, &search, &routes, identity.as_ref()),
        consumers,
        constraints: topics::constraints(&objects),
        search_topics: search_topics(&objects, &search),
        realtime,
        views: ViewsPlan {
            routes: routes
                .iter()
                .filter(|r| r.view() != View::Full)
                .map(|r| (r.name.clone(), camel(r.view().name())))
                .collect(),
        },
        decisions: m
            .decisions
            .iter()
            .map(|d| DecisionPlan {
                id: d.id.clone(),
                text: d.text.clone(),
            })
            .collect(),
        roles: RolesPlan {
            values: m.roles.values.clone(),
            admin: m.roles.admin.clone(),
            default: m.roles.default.clone(),
        },
        identity,
        trust,
        search,
        objects,
        routes,
    }
}

fn service(m: &Model) -> ServicePlan {
    ServicePlan {
        name: m.service.name.clone(),
        crate_ident: snake(&m.service.name),
        title: m.service.title.clone(),
        description: m.service.description.clone(),
        version: m.service.version.clone(),
        body_limit_bytes: m.service.body_limit_bytes,
        default_page_row_count: m.service.paging.default_page_row_count,
        max_page_row_count: m.service.paging.max_page_row_count,
        partitions: m.topics.partitions,
        replication_factor: m.topics.replication_factor,
        search_max_words: m.service.search.max_words,
        search_max_word_length: m.service.search.max_word_length,
        download_paths: m
            .routes
            .iter()
            .filter(|(_, r)| r.action == Action::Download)
            .map(|(_, r)| format!("{}{}", m.service.api_base, r.path))
            .collect(),
    }
}

/// The optional parts of svcgen-runtime the model uses: `files` for uploads
/// and downloads, `identity` for the auth core of a service that signs its
/// accounts in, `trust` for one that trusts another's tokens, `search` for search indexes (and their mirror), `realtime`
/// for the event stream, `verification` for one-time codes.
fn runtime_features(
    m: &Model,
    routes: &[RoutePlan],
    search: &search::SearchPlan,
    realtime: &RealtimePlan,
) -> Vec<&'static str> {
    let mut features = Vec::new();
    if routes
        .iter()
        .any(|r| r.upload().is_some() || r.action == Action::Download)
    {
        features.push("files");
    }
    features.push(if m.auth.is_some() {
        "identity"
    } else {
        "trust"
    });
    if search.is_used() {
        features.push("search");
    }
    if realtime.served {
        features.push("realtime");
    }
    if routes.iter().any(|r| r.action.family() == Family::Flow) {
        features.push("verification");
    }
    features
}

/// `(topic constant, object)` of the index events the search mirror follows.
fn search_topics(objects: &[ObjectPlan], search: &search::SearchPlan) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for o in objects.iter().filter(|o| o.search_followed) {
        for (_, c) in o.index_consts.each() {
            out.push((c.clone(), o.name.clone()));
        }
    }
    for i in &search.indexes {
        out.push((i.extended_topic_const.clone(), i.object.clone()));
    }
    out
}

/// `&["a", "b"]`: a Rust slice of string literals.
fn rust_str_slice(values: &[String]) -> String {
    format!(
        "&[{}]",
        values
            .iter()
            .map(|v| format!("{v:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A SQL string literal.
fn sql_text(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}
