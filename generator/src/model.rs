//! The typed service model, as written in YAML.
//!
//! Maps are `BTreeMap`s so that everything derived from them comes out in a
//! stable order; objects and routes keep their YAML order separately through
//! `IndexedMap`, because the order the author chose is the order of the docs.

pub use crate::action::{Action, Auth, AuthRule, View};
use serde::Deserialize;
use std::collections::BTreeMap;

/// A map that keeps the YAML order of its keys.
pub type IndexedMap<V> = Vec<(String, V)>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Model {
    pub service: Service,
    pub topics: Topics,
    pub roles: Roles,
    /// Who logs in, and how: the identity this service issues tokens for.
    /// A service has either this or `trusts`.
    #[serde(default)]
    pub auth: Option<Identity>,
    /// The issuer whose tokens this service accepts, when it issues none itself.
    #[serde(default)]
    pub trusts: Option<Trust>,
    #[serde(default)]
    pub decisions: Vec<Decision>,
    #[serde(deserialize_with = "ordered")]
    pub data_objects: IndexedMap<DataObject>,
    #[serde(deserialize_with = "ordered")]
    pub routes: IndexedMap<Route>,
    /// Objects mirrored into search indexes, by object name, and what each
    /// document aggregates from related objects.
    #[serde(default, deserialize_with = "ordered")]
    pub search_indexes: IndexedMap<SearchIndex>,
    /// How the generated Dockerfile and Kubernetes objects run the service.
    #[serde(default)]
    pub deploy: Deploy,
    /// Other services of the project whose events this one consumes, by a
    /// short name: the path of each one's model, relative to this model.
    /// Their topics and payload fields are read from there, so a wrong topic
    /// or field is an error here rather than a silent no-op in production.
    #[serde(default, deserialize_with = "ordered")]
    pub uses: IndexedMap<String>,
    /// How every consumer retries, dead-letters and keeps its inbox.
    #[serde(default)]
    pub consuming: Consuming,
    /// What the service does with events: keep a replica of another
    /// service's object, run one of its routes, or call a hand-written hook.
    #[serde(default, deserialize_with = "ordered")]
    pub consumers: IndexedMap<ConsumerDef>,
    /// The models named under `uses:`, once loaded (see [`crate::load::load_used`]).
    #[serde(skip)]
    pub used: IndexedMap<Model>,
}

/// `consuming:`, every key optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Consuming {
    /// Attempts of one event before it goes to the dead-letter topic.
    pub max_attempts: u32,
    /// The wait after the first failed attempt, doubled after each, up to the most.
    pub retry_backoff_ms: u64,
    pub max_retry_backoff_ms: u64,
    /// Events applied in one transaction at most.
    pub batch_size: u32,
    /// How long an event's inbox row is kept (a redelivery after that would
    /// take effect again; replicas excepted).
    pub inbox_retention_hours: u32,
    /// The dead-letter topic of each consumer: `{topicPrefix}` and `{consumer}`
    /// (the consumer's name in kebab case) are replaced.
    pub dead_letter: String,
}

impl Default for Consuming {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            retry_backoff_ms: 200,
            max_retry_backoff_ms: 10_000,
            batch_size: 500,
            inbox_retention_hours: 168,
            dead_letter: "{topicPrefix}-{consumer}-dead-letter".into(),
        }
    }
}

/// One consumer: `kind: replicate` (`object` of `from` into the local
/// `into`), `route` (`event` runs `route` with `input`) or `hook` (`event`
/// calls a hand-written function with its `fields`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsumerDef {
    /// Kept as text so that an unknown kind is a located error.
    pub kind: String,
    /// A name under `uses:`; this service itself when absent.
    #[serde(default)]
    pub from: Option<String>,
    /// `replicate`: the object of `from` whose database events are followed.
    #[serde(default)]
    pub object: Option<String>,
    /// `replicate`: the local object that is its read-only copy.
    #[serde(default)]
    pub into: Option<String>,
    /// `route`, `hook`: `<object>.<created|updated|deleted>`, a database event of `from`.
    #[serde(default)]
    pub event: Option<String>,
    /// `route`: the route of this service that the event runs.
    #[serde(default)]
    pub route: Option<String>,
    /// `route`: each input field of the route (a path `id` or a body field)
    /// and the payload field it takes its value from.
    #[serde(default, deserialize_with = "ordered")]
    pub input: IndexedMap<String>,
    /// `hook`: the payload fields the hook receives, typed as `from` declares them.
    #[serde(default)]
    pub fields: Vec<String>,
}

/// `deploy:`, every key optional: ports, replicas, resources, shutdown times.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Deploy {
    /// The container's HTTP port (`HTTP_ADDR=0.0.0.0:<port>`); unprivileged,
    /// since the image runs as a non-root user without capabilities.
    pub http_port: u16,
    /// The port of `METRICS_ADDR`, which Prometheus scrapes.
    pub metrics_port: u16,
    /// Replicas at least, and the HorizontalPodAutoscaler's floor.
    pub replicas: u32,
    pub max_replicas: u32,
    /// The PodDisruptionBudget's `minAvailable`: below `replicas`, so that a
    /// node can be drained.
    pub min_available: u32,
    /// The autoscaler's target, in percent of the CPU request.
    pub cpu_utilization: u32,
    pub cpu_request: String,
    pub cpu_limit: String,
    pub memory_request: String,
    pub memory_limit: String,
    /// `SHUTDOWN_DRAIN_SECS`: `/readyz` is 503 this long before the listener closes.
    pub drain_seconds: u32,
    /// `SHUTDOWN_TIMEOUT_SECS`: how long requests in flight may take then.
    pub shutdown_timeout_seconds: u32,
    /// `LOG_FORMAT` in the manifest's ConfigMap.
    pub log_format: LogFormat,
}

/// How the deployed service writes its logs.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON lines, the request's trace and request ids as fields: what a
    /// cluster's log collector reads without parsing rules.
    Json,
    /// Text lines, for people reading `kubectl logs`.
    Text,
}

impl LogFormat {
    /// The `LOG_FORMAT` value the runtime reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text => "text",
        }
    }
}

impl Default for Deploy {
    fn default() -> Self {
        Self {
            http_port: 8080,
            metrics_port: 9090,
            replicas: 2,
            max_replicas: 6,
            min_available: 1,
            cpu_utilization: 70,
            // Secret hashing (argon2, 19 MiB each) is what takes CPU and memory.
            cpu_request: "250m".into(),
            cpu_limit: "1".into(),
            memory_request: "256Mi".into(),
            memory_limit: "512Mi".into(),
            // Endpoints are removed while the pod is told to stop; proxies learn late.
            drain_seconds: 5,
            shutdown_timeout_seconds: 20,
            log_format: LogFormat::Json,
        }
    }
}

/// One search index: the object's visible fields, plus aggregates.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SearchIndex {
    /// Lists of related rows reached through a link object, e.g. a person's groups.
    #[serde(default, deserialize_with = "ordered")]
    pub lists: IndexedMap<ListAggregate>,
    /// Counts of rows that reference the document's row, e.g. a group's members.
    #[serde(default, deserialize_with = "ordered")]
    pub counts: IndexedMap<CountAggregate>,
}

/// `{ through: link, from: <link field to this object>, to: <link field to the
/// listed object>, fields: [...] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListAggregate {
    pub through: String,
    pub from: String,
    pub to: String,
    pub fields: Vec<String>,
}

/// `{ of: <object>, by: <its field referencing this object> }`: active rows.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountAggregate {
    pub of: String,
    pub by: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Service {
    pub name: String,
    pub title: String,
    pub description: String,
    pub version: String,
    pub api_base: String,
    pub body_limit_bytes: u64,
    pub paging: Paging,
    /// Bounds of a search route's keyword `q`.
    #[serde(default)]
    pub search: SearchLimits,
}

/// How much a search keyword may ask for: past either bound the answer is a
/// 400 naming `q`, on PostgreSQL and on Elasticsearch alike.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SearchLimits {
    /// Words (runs of letters or digits) in one keyword.
    #[serde(default = "default_search_max_words")]
    pub max_words: u32,
    /// Characters in one word.
    #[serde(default = "default_search_max_word_length")]
    pub max_word_length: u32,
}

impl Default for SearchLimits {
    fn default() -> Self {
        Self {
            max_words: default_search_max_words(),
            max_word_length: default_search_max_word_length(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Paging {
    pub default_page_row_count: u32,
    pub max_page_row_count: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Topics {
    pub topic_prefix: String,
    pub search_index_prefix: String,
    pub db_event: String,
    pub index_event: String,
    pub route_event: String,
    pub partitions: u32,
    pub replication_factor: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Roles {
    pub values: Vec<String>,
    pub admin: Vec<String>,
    pub default: String,
    /// Each role's rank: a caller never grants a role ranked above its own nor
    /// writes an account that outranks it.
    pub ranks: BTreeMap<String, u32>,
    /// Roles whose holders may write accounts of their own rank (other than
    /// their own); by default nobody may.
    #[serde(default)]
    pub peer_writes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Identity {
    /// The data object people log in as.
    pub user_object: String,
    /// Its field that names the account (unique), e.g. an email.
    pub login_field: String,
    /// Its secret, hashed field checked at login.
    pub password_field: String,
    /// Its field holding the role (one of `roles.values`).
    pub role_field: String,
    pub issuer: String,
    pub audience: String,
    pub access_token_ttl_seconds: u32,
    pub refresh_token_ttl_seconds: u32,
    /// How long a replaced signing key stays in the JWKS and verifies (at
    /// least the access token's lifetime); by default that lifetime.
    #[serde(default)]
    pub key_overlap_seconds: Option<u32>,
    /// A spent refresh token used again within this window gets the pair it
    /// was spent for (two tabs refreshing at once); later, the reuse revokes
    /// the session.
    pub refresh_grace_seconds: u32,
    /// A session ends this long after its sign-in, however often it is
    /// refreshed; by default the refresh token's lifetime.
    #[serde(default)]
    pub session_lifetime_seconds: Option<u32>,
    /// A session ends when it was not refreshed for this long; by default
    /// the refresh token's lifetime.
    #[serde(default)]
    pub session_idle_seconds: Option<u32>,
    /// How long a replica may answer from memory that a session is live
    /// (0: ask the database on every request). Ended sessions and changed
    /// accounts are dropped from every replica's memory at once by NOTIFY;
    /// this bounds an entry's life should a notification be lost.
    #[serde(default = "default_live_session_cache_seconds")]
    pub live_session_cache_seconds: u32,
    #[serde(default)]
    pub reject_common_passwords: bool,
    /// The topic of the session events (the seed's channel `session`).
    pub session_topic: String,
    /// The `namespace` of session events.
    pub session_namespace: String,
    /// Device facts a login may carry; stored with the session and in its events.
    pub device_fields: Vec<String>,
    pub throttle: Throttle,
    /// The role of the account created from SUPERADMIN_EMAIL at first start.
    pub super_admin_role: String,
    /// Values for the other required fields of that account.
    #[serde(default)]
    pub bootstrap_values: BTreeMap<String, String>,
    /// A header that may carry the access token besides `Authorization`.
    #[serde(default)]
    pub token_header: Option<String>,
    /// Cookie sessions, set at login when the client asks for them.
    #[serde(default)]
    pub cookies: Option<Cookies>,
    /// One-time codes by email: verification, password reset, second factor.
    #[serde(default)]
    pub verification: Option<Verification>,
}

impl Identity {
    /// `keyOverlapSeconds`, or the access token's lifetime.
    pub fn key_overlap(&self) -> u32 {
        self.key_overlap_seconds
            .unwrap_or(self.access_token_ttl_seconds)
    }

    /// `sessionLifetimeSeconds`, or the refresh token's lifetime.
    pub fn session_lifetime(&self) -> u32 {
        self.session_lifetime_seconds
            .unwrap_or(self.refresh_token_ttl_seconds)
    }

    /// `sessionIdleSeconds`, or the refresh token's lifetime.
    pub fn session_idle(&self) -> u32 {
        self.session_idle_seconds
            .unwrap_or(self.refresh_token_ttl_seconds)
    }
}

/// A service that trusts another one's tokens: it verifies them offline with
/// the issuer's JWKS and follows its session topic for revocations and role
/// changes; it has no accounts, sign-in or sessions of its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Trust {
    /// The `iss` and `aud` its tokens must carry.
    pub issuer: String,
    pub audience: String,
    /// Where the issuer publishes its JWKS (overridable by `JWKS_URL`).
    pub jwks_url: String,
    /// The issuer's session topic: `sessionDeleted` revokes a session's
    /// tokens, `sessionUpdated` carries its account's new role.
    pub session_topic: String,
    /// The longest an access token of the issuer lives: how long a revoked
    /// session is remembered, and how far back the session topic is read.
    pub max_token_ttl_seconds: u32,
    /// A header that may carry the access token besides `Authorization`.
    #[serde(default)]
    pub token_header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cookies {
    pub access: String,
    pub refresh: String,
    pub csrf: String,
    pub csrf_header: String,
    pub same_site: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Verification {
    /// The user object's Boolean field that confirming an email sets.
    pub verified_field: String,
    /// The user object's Boolean field that switches the second factor on.
    #[serde(default)]
    pub second_factor_field: Option<String>,
    /// The user object's field with the language deliveries are written in.
    #[serde(default)]
    pub locale_field: Option<String>,
    #[serde(default)]
    pub require_verified_login: bool,
    /// `off`, `optional` (per user) or `required` (everyone).
    pub second_factor: String,
    pub code_digits: u32,
    pub code_ttl_seconds: u32,
    pub max_attempts: u32,
    pub requests_per_account: u32,
    pub requests_per_address: u32,
    /// Code checks per account name and kind per window, across all its codes.
    pub checks_per_account: u32,
    /// The topic a mailer consumes delivery requests from.
    pub delivery_topic: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Throttle {
    pub window_seconds: u32,
    pub login_per_account: u32,
    pub login_per_address: u32,
    /// Calls of public writing routes (registration) per client address.
    pub public_writes_per_address: u32,
    /// Uploads per signed-in user per window; required when a route uploads files.
    #[serde(default)]
    pub uploads_per_user: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub id: String,
    pub text: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DataObject {
    pub description: String,
    pub table: String,
    pub soft_delete: bool,
    /// The row's owner is the row itself (a user owns its own record).
    #[serde(default)]
    pub owner_is_self: bool,
    /// What its reading routes show by default: `full`, `public` or `owner`
    /// (see [`Model::view_of`]); `owner` for `auth.userObject`, else `full`.
    #[serde(default)]
    pub view: Option<String>,
    #[serde(default)]
    pub unique_together: Vec<Vec<String>>,
    #[serde(deserialize_with = "ordered")]
    pub fields: IndexedMap<Field>,
    /// A file object whose new rows are shown by the row they reference: its
    /// `field` is set to the file's public download path on upload, and
    /// cleared when that file is deleted.
    #[serde(default)]
    pub pointed_by: Option<PointedBy>,
}

/// `{ via: <reference field of this object>, field: <String field of the referenced object> }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointedBy {
    pub via: String,
    pub field: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Field {
    /// Kept as text so that an unknown type is a located semantic error.
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default)]
    pub bits: Option<u32>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub unique: bool,
    #[serde(default)]
    pub min_length: Option<u32>,
    #[serde(default)]
    pub max_length: Option<u32>,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub allowed_values: Vec<String>,
    #[serde(default)]
    pub default: Option<serde_yaml::Value>,
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub hash: Option<String>,
    #[serde(default)]
    pub references: Option<String>,
    #[serde(default)]
    pub filterable: bool,
    #[serde(default)]
    pub searchable: bool,
    #[serde(default)]
    pub sortable: bool,
    #[serde(default)]
    pub public: bool,
    /// Filled by the service, never accepted from a client.
    #[serde(default)]
    pub computed: Option<Computed>,
    /// A Blob holding an uploaded file: its largest size in bytes (413 above).
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// A Blob holding an uploaded file: the String field that stores its
    /// content type. The type is sniffed from the bytes and must be one of
    /// that field's allowedValues (415 otherwise).
    #[serde(default)]
    pub type_field: Option<String>,
    /// A Blob holding an uploaded file: the String field filled from the
    /// uploaded part's file name when the form does not give it.
    #[serde(default)]
    pub name_field: Option<String>,
}

/// A field's type. Kept as text in the model so that each unknown type is
/// its own located error among the others; read through [`Field::is`] once
/// validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Id,
    String,
    Text,
    Boolean,
    Integer,
    Date,
    Blob,
    Object,
}

impl FieldType {
    pub const ALL: [FieldType; 8] = [
        FieldType::Id,
        FieldType::String,
        FieldType::Text,
        FieldType::Boolean,
        FieldType::Integer,
        FieldType::Date,
        FieldType::Blob,
        FieldType::Object,
    ];

    /// Its name in the model.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Id => "ID",
            FieldType::String => "String",
            FieldType::Text => "Text",
            FieldType::Boolean => "Boolean",
            FieldType::Integer => "Integer",
            FieldType::Date => "Date",
            FieldType::Blob => "Blob",
            FieldType::Object => "Object",
        }
    }

    pub fn parse(name: &str) -> Option<FieldType> {
        FieldType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The names, for messages.
    pub fn names() -> Vec<&'static str> {
        FieldType::ALL.iter().map(|t| t.name()).collect()
    }
}

impl Field {
    /// Its type; `None` for a name validation refuses.
    pub fn field_type(&self) -> Option<FieldType> {
        FieldType::parse(&self.ty)
    }

    pub fn is(&self, ty: FieldType) -> bool {
        self.field_type() == Some(ty)
    }

    /// A String or a Text.
    pub fn is_text(&self) -> bool {
        self.is(FieldType::String) || self.is(FieldType::Text)
    }
}

/// `randomKey` (an unguessable token) or `{ sizeOf: <blob field> }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Computed {
    Keyword(String),
    SizeOf {
        #[serde(rename = "sizeOf")]
        size_of: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Route {
    #[serde(default)]
    pub object: Option<String>,
    pub action: Action,
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub search: bool,
    /// A reading route: which fields a caller sees (`full`, `public`, `owner`);
    /// the object's view when absent.
    #[serde(default)]
    pub view: Option<String>,
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default, deserialize_with = "ordered")]
    pub include: IndexedMap<Include>,
    /// An update of the auth secret asks for its current value too.
    #[serde(default)]
    pub confirm_current: bool,
    /// A download route: the field its path names the row by (an unguessable
    /// randomKey field); `id` when absent.
    #[serde(default)]
    pub by: Option<String>,
    /// A download route: its Cache-Control header.
    #[serde(default)]
    pub cache_control: Option<String>,
    /// A create route: reference fields that are the caller for callers
    /// without an admin role (another value is 403); admins may set them.
    #[serde(default)]
    pub caller_fields: Vec<String>,
    /// Where hand-written code runs in this route (`input`, `before`, `after`,
    /// `committed` for writes; `query`, `rows` for lists; `row` for gets).
    #[serde(default)]
    pub hooks: Vec<String>,
    /// A custom route: the events its hand-written body publishes, each on a
    /// topic of its own (named like route events) carrying a row of the object.
    #[serde(default)]
    pub publishes: Vec<String>,
    /// A custom route: what it answers; `object` (a row of its object) when absent.
    #[serde(default)]
    pub answer: Option<String>,
    pub auth: Auth,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Include {
    pub via: String,
    pub fields: Vec<String>,
}

impl DataObject {
    /// The object's file: its Blob field that has a type field, with the
    /// Blob's name and definition and the type field's name.
    pub fn file_field(&self) -> Option<(&String, &Field, &String)> {
        self.fields.iter().find_map(|(n, f)| {
            let type_field = f.type_field.as_ref()?;
            f.is(FieldType::Blob).then_some((n, f, type_field))
        })
    }
}

impl Model {
    /// The model `from` names (a key of `uses:`), or this one when `None`.
    pub fn source(&self, from: Option<&str>) -> Option<&Model> {
        match from {
            None => Some(self),
            Some(name) => self.used.iter().find(|(n, _)| n == name).map(|(_, m)| m),
        }
    }

    /// The object that stands for callers in reference fields
    /// (`callerFields`): the account object of a service that issues
    /// identities; in a trusting service, the local replica of the issuer's
    /// account object, when one is kept.
    pub fn caller_object(&self) -> Option<&str> {
        if let Some(user) = self.user_object() {
            return Some(user);
        }
        let issuer = &self.trusts.as_ref()?.issuer;
        self.consumers.iter().find_map(|(_, c)| {
            let source = self.source(Some(c.from.as_deref()?))?;
            let accounts = source.service.name == *issuer
                && c.kind == "replicate"
                && source.user_object().is_some()
                && source.user_object() == c.object.as_deref();
            accounts.then_some(c.into.as_deref()).flatten()
        })
    }

    /// The `replicate` consumer that keeps `object` (a replica), if any.
    pub fn replica_source(&self, object: &str) -> Option<&ConsumerDef> {
        self.consumers
            .iter()
            .map(|(_, c)| c)
            .find(|c| c.kind == "replicate" && c.into.as_deref() == Some(object))
    }

    /// The account object, when this service issues identities.
    pub fn user_object(&self) -> Option<&str> {
        self.auth.as_ref().map(|a| a.user_object.as_str())
    }

    /// Whether `name` is the account object.
    pub fn is_user_object(&self, name: &str) -> bool {
        self.user_object() == Some(name)
    }

    pub fn object(&self, name: &str) -> Option<&DataObject> {
        self.data_objects
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, o)| o)
    }

    /// The view of an object's reading routes that name none: its own, else
    /// `owner` for the identity object (people's records are personal) and
    /// `full` for the others.
    pub fn object_view(&self, name: &str) -> View {
        match self.object(name).and_then(|o| o.view.as_deref()) {
            Some(v) => view_named(v),
            None if self.is_user_object(name) => View::Owner,
            None => View::Full,
        }
    }

    /// The view of a reading route (get or list; `full` for the others):
    /// `full` shows every field to every caller it lets in; `public` only the
    /// fields marked public (with id and isActive); `owner` every field to
    /// callers with an admin role and to the row's owner, the public fields to
    /// others.
    pub fn view_of(&self, r: &Route) -> View {
        let Some(object) = r.object.as_deref().filter(|_| r.action.has_view()) else {
            return View::Full;
        };
        let view = match r.view.as_deref() {
            Some(v) => view_named(v),
            None => self.object_view(object),
        };
        on_route(&r.auth, view)
    }

    /// The view of `object` rows joined into a route's answers: the object's own.
    pub fn include_view(&self, r: &Route, object: &str) -> View {
        on_route(&r.auth, self.object_view(object))
    }

    /// Whether some caller the route lets in sees less than every field of
    /// some row it reads: the route must narrow what it answers.
    pub fn narrows(&self, r: &Route) -> bool {
        self.view_narrows(&r.auth, self.view_of(r))
    }

    /// Whether `view` hides fields from some caller that `auth` lets in.
    pub fn view_narrows(&self, auth: &Auth, view: View) -> bool {
        match (view, auth) {
            (View::Public, _) => true,
            // A rule's callers without an admin role see only rows they own,
            // unless a role of the rule lets them reach others.
            (View::Owner, Auth::Rule(rule)) => rule
                .roles
                .iter()
                .any(|role| !self.roles.admin.contains(role)),
            (View::Owner, Auth::Public | Auth::Login) => true,
            _ => false,
        }
    }
}

/// A view named in the model; one validation refused counts as `full`: it
/// narrows nothing.
fn view_named(name: &str) -> View {
    View::parse(name).unwrap_or(View::Full)
}

/// A public route knows no caller, so it cannot tell the owner: `owner` is `public` there.
fn on_route(auth: &Auth, view: View) -> View {
    match (auth, view) {
        (Auth::Public, View::Owner) => View::Public,
        _ => view,
    }
}

/// Deserializes a YAML mapping into a `Vec` that keeps the document's order.
fn ordered<'de, D, V>(de: D) -> Result<IndexedMap<V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Visitor<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<V> {
        type Value = IndexedMap<V>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a mapping")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            let mut seen = BTreeMap::new();
            while let Some((k, v)) = map.next_entry::<String, V>()? {
                if seen.insert(k.clone(), ()).is_some() {
                    return Err(serde::de::Error::custom(format!("duplicate key `{k}`")));
                }
                out.push((k, v));
            }
            Ok(out)
        }
    }
    de.deserialize_map(Visitor(std::marker::PhantomData))
}

fn default_live_session_cache_seconds() -> u32 {
    60
}

fn default_search_max_words() -> u32 {
    10
}

fn default_search_max_word_length() -> u32 {
    64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_types_parse_by_their_model_names() {
        for t in FieldType::ALL {
            assert_eq!(FieldType::parse(t.name()), Some(t));
        }
        assert_eq!(FieldType::parse("Number"), None);
        assert_eq!(FieldType::parse("id"), None);
    }
}
