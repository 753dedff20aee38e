//! Plan: the validated model lowered to view models that templates only read.
//!
//! Every decision (identifiers, Rust and SQL types, topic names, SQL text,
//! permissions) is made here, so that templates hold shape only.

use crate::action::{Action, Revokes};
use crate::model::{Auth, DataObject, Field, Model, Route};
use heck::{ToSnakeCase, ToUpperCamelCase};

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
    pub identity: IdentityPlan,
    /// Search indexes: their SQL, and which changes touch their documents.
    pub search: crate::search_plan::SearchPlan,
    /// `(topic constant, object)` of the index events the search mirror follows.
    pub search_topics: Vec<(String, String)>,
    pub realtime: RealtimePlan,
    pub views: ViewsPlan,
}

/// The views of reading routes (what each caller sees), for the permissions listing.
#[derive(Debug)]
pub struct ViewsPlan {
    /// `(route, view)` of the reading routes whose view is not `full`.
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

/// Who logs in and how: everything the auth module needs from the model.
#[derive(Debug)]
pub struct IdentityPlan {
    pub user_module: String,
    pub user_table: String,
    pub login_field: String,
    /// The JSON name of the password field (the login body uses it).
    pub password_field_name: String,
    pub login_email: bool,
    /// Inserts the bootstrap super-admin unless its login is taken.
    pub bootstrap_sql: String,
    /// `SELECT id, password hash, role` of an active account by its login.
    pub login_sql: String,
    /// The role of a live session's active user, and when the session expires.
    pub caller_sql: String,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: u32,
    pub refresh_ttl: u32,
    pub refresh_grace: u32,
    pub live_session_cache: u32,
    pub session_topic_const: String,
    pub session_topic: String,
    /// The field number of `created_at` in session.proto (after the device fields).
    pub proto_created_at: usize,
    pub session_namespace: String,
    pub device_fields: Vec<DeviceFieldPlan>,
    pub throttle_window: u32,
    pub login_per_account: u32,
    pub login_per_address: u32,
    pub public_writes_per_address: u32,
    /// Passwords the policy refuses when the model asks for it.
    pub common_passwords: Vec<&'static str>,
    pub sign_in: RoutePlan,
    pub refresh: RoutePlan,
    pub sign_out: RoutePlan,
    pub current_user: RoutePlan,
    pub public_keys: RoutePlan,
    pub super_admin_role: String,
    /// `&[("superAdmin", 3), ...]`: each role's rank, and the roles whose
    /// holders may write accounts of their own rank.
    pub role_ranks: String,
    pub peer_writers: String,
    /// `&["superAdmin", "admin"]`: the model's admin roles.
    pub admin_roles: String,
    /// For docs: `superAdmin 3, admin 2, user 1; superAdmin may write peers`.
    pub rank_summary: String,
    /// The role of active account $1, and the same locked for the transaction.
    pub role_sql: String,
    pub account_role_sql: String,
    /// Whether an active account other than $2 has role $1.
    pub other_top_sql: String,
    /// A header that may carry the access token besides `Authorization`.
    pub token_header: Option<String>,
    pub cookies: Option<CookiePlan>,
    pub flows: Option<FlowsPlan>,
    pub permissions: Option<RoutePlan>,
    /// Every route with its rule, for the permissions listing.
    pub rules: Vec<RuleRow>,
}

#[derive(Debug)]
pub struct CookiePlan {
    pub access: String,
    pub refresh: String,
    pub csrf: String,
    pub csrf_header: String,
    pub same_site: String,
    /// The refresh cookie is sent only to the refresh route.
    pub refresh_path: String,
}

/// One-time codes by email: verification, password reset, second factor.
#[derive(Debug)]
pub struct FlowsPlan {
    pub require_verified: bool,
    /// Everyone signs in with a second factor.
    pub second_factor_required: bool,
    pub code_digits: u32,
    pub code_ttl: u32,
    pub max_attempts: u32,
    pub requests_per_account: u32,
    pub requests_per_address: u32,
    pub delivery_topic: String,
    pub delivery_topic_const: String,
    /// `SELECT id, login, locale` of an active account by its login.
    pub recipient_sql: String,
    /// Sets the verified flag of account $1, returning the row.
    pub verify_sql: String,
    /// Sets the hashed secret $2 of account $1, returning the row.
    pub reset_sql: String,
    /// The JSON name of the verified flag.
    pub verified_field: String,
    /// The account's row type, e.g. `User`.
    pub account_struct: String,
    /// The rule const of the secret field, if it has text rules.
    pub secret_rule: Option<String>,
    /// `kind` of the delivery requests: e.g. emailVerification, passwordReset.
    pub verify_kind: String,
    pub reset_kind: String,
    /// `login, locale` of an active account by id.
    pub recipient_by_id_sql: String,
    pub verify_start: RoutePlan,
    pub verify_complete: RoutePlan,
    pub reset_start: RoutePlan,
    pub reset_complete: RoutePlan,
    pub second_factor: Option<RoutePlan>,
}

/// A route and its rule, as the permissions listing shows them.
#[derive(Debug)]
pub struct RuleRow {
    pub name: String,
    pub method: String,
    pub path: String,
    pub object: String,
    pub access: String,
}

#[derive(Debug, Clone)]
pub struct DeviceFieldPlan {
    pub name: String,
    pub ident: String,
    /// Its field number in session.proto.
    pub proto_number: usize,
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

#[derive(Debug)]
pub struct TopicPlan {
    /// Rust constant name, e.g. `DBEVENT_USER_CREATED`.
    pub const_name: String,
    pub name: String,
    /// dbEvent, indexEvent or routeEvent.
    pub kind: &'static str,
    /// The data object or route it belongs to.
    pub owner: String,
    /// created, updated or deleted for database and index events; empty otherwise.
    pub change: &'static str,
    pub description: String,
}

#[derive(Debug)]
pub struct ConstraintPlan {
    pub name: String,
    /// The JSON field name a client sees.
    pub field: String,
    /// unique or foreignKey.
    pub kind: &'static str,
}

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
    /// Text fields with rules, for the module's rule constants.
    pub text_rules: Vec<FieldPlan>,
    pub sql_get: String,
    pub sql_lock: String,
    pub sql_get_public: String,
    pub sql_delete: String,
    pub uniques: Vec<UniquePlan>,
    /// The sort keys a list accepts, for error messages.
    pub sort_keys: String,
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

/// A related object joined into list rows.
#[derive(Debug, Clone)]
pub struct IncludePlan {
    /// JSON key and Rust field, e.g. `user`.
    pub name: String,
    pub ident: String,
    pub struct_name: String,
    pub via_column: String,
    pub target_table: String,
    pub target_soft_delete: bool,
    pub fields: Vec<FieldPlan>,
    /// `json_build_object('email', i_user.email, ...)`.
    pub json_sql: String,
    pub alias: String,
    /// The joined object's view: the caller's sight of joined rows as a Rust
    /// expression, "" when every caller sees them whole.
    pub sight: String,
    /// `&["fullname", ...]`: what the others see of a joined row.
    pub public_keys: String,
    pub public_fields: Vec<String>,
    /// The joined object's view on this route.
    pub view: String,
    /// The row field holding the joined row's owner (selected when `sight` is set).
    pub owner_ident: String,
}

#[derive(Debug, Clone)]
pub struct FieldPlan {
    /// JSON name, e.g. `roleId` or `_owner`.
    pub name: String,
    pub ident: String,
    pub column: String,
    /// The Rust type of a present value, e.g. `String`, `Uuid`.
    pub rust_type: String,
    /// `rust_type`, or `Option<rust_type>` when the column is nullable.
    pub row_type: String,
    pub sql_type: String,
    /// The column's SQL default, e.g. `now()` or `'user'`.
    pub sql_default: Option<String>,
    pub nullable: bool,
    pub system: bool,
    pub secret: bool,
    pub blob: bool,
    pub required: bool,
    pub hash: bool,
    /// A Rust expression that produces the default, e.g. `String::from("user")`.
    pub default_rust: Option<String>,
    pub min_length: Option<u32>,
    pub max_length: Option<u32>,
    pub email: bool,
    pub allowed_values: Vec<String>,
    pub references: Option<String>,
    /// JSON Schema type for docs: string, integer, boolean, object.
    pub json_type: &'static str,
    pub json_format: Option<&'static str>,
    /// A Rust expression computing the value on create (random key, blob size).
    pub computed_rust: Option<String>,
    /// The `TextRule { .. }` literal of a String or Text field, and its constant's name.
    pub text_rule: Option<String>,
    pub rule_const: String,
    pub is_object: bool,
    /// `unwrap_or(false)` or `unwrap_or_else(|| String::from("user"))`: fills the default in.
    pub default_call: Option<String>,
    /// An owned copy of `value: &T` in a list filter (normalized for emails).
    pub filter_value: String,
    /// The login password: the common-password policy applies.
    pub password_policy: bool,
    /// What reads select for this field: `t.column`, or an expression aliased to it.
    pub select_expr: Option<String>,
    /// A blob as reads show it: `{"omitted": true, "href": ...}`, never the bytes.
    pub descriptor: bool,
}

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
    pub search: bool,
    pub public_view: bool,
    /// `full`, `public` or `owner`: what the route shows (reading routes).
    pub view: String,
    /// The view in words, for docs.
    pub view_doc: String,
    /// The caller's sight as a Rust expression, "" when the route never
    /// narrows (or narrows in SQL: the public view of a get route).
    pub sight: String,
    /// `&["id", ...]`: the keys a narrowed row or hit keeps.
    pub shown_keys: String,
    /// A search route: the document key holding its owner's id.
    pub owner_key: String,
    /// A search route: the boosted public searchable fields for Elasticsearch,
    /// the weights of their keywords (`B`), and the list query ranking only by
    /// them.
    pub es_public_fields: String,
    pub public_weights: String,
    pub list_sql_narrow: String,
    /// A list route changes its rows after reading them (narrows joined rows).
    pub rows_mut: bool,
    /// Body fields a create or update route accepts.
    pub inputs: Vec<FieldPlan>,
    /// Fields that a create route fills itself (not accepted, but have defaults).
    pub includes: Vec<IncludePlan>,
    pub auth: AuthPlan,
    pub success_status: u16,
    /// The `RouteInfo` static's name, e.g. `GET_USER`.
    pub const_name: String,
    /// Identifiers of the inputs a create route must receive.
    pub required_inputs: Vec<String>,
    /// Computed fields a create route fills in.
    pub computed: Vec<FieldPlan>,
    pub insert_sql: String,
    /// Expressions bound to `insert_sql`'s parameters, in order.
    pub insert_binds: Vec<String>,
    /// A list route's query up to its WHERE clause, and its count query.
    pub list_sql: String,
    pub count_sql: String,
    /// `CreateUserRow`-style row type of list routes.
    pub list_row: String,
    /// An update route's test that the body names no field.
    pub nothing_to_change: String,
    /// Public writes (registration) are throttled per client address.
    pub throttled: bool,
    /// The body field carrying the secret's current value ("" when not asked).
    pub confirm_field: String,
    /// `SELECT` of the stored hash of account $1, when `confirm_field` is set.
    pub secret_sql: String,
    /// Sessions this route revokes: none, others (password changes) or all (deletes).
    pub revokes: Revokes,
    /// The `Access` literal of the route's rule.
    pub access: String,
    /// A create route that receives a file (multipart or JSON with base64).
    pub upload: Option<UploadPlan>,
    /// A create route's reference fields that are the caller for non-admins.
    pub caller_fields: Vec<String>,
    /// A download route: the SQL loading the file by its key, the key's Rust
    /// type, and the Cache-Control of its answers.
    pub download_sql: String,
    pub key_type: String,
    pub cache_control: String,
    /// A search route: the rest of its FROM/WHERE after the bound tsquery.
    pub search_tail: String,
    /// A search route in Elasticsearch: its index, and `&["email^3", ...]`
    /// (the searchable fields, boosted in the order of the model).
    pub index_name: String,
    pub es_fields: String,
    /// An extend route: merges data under a document's `extends`, and the
    /// topic constant of the index's -extended event.
    pub extend_sql: String,
    pub extended_topic_const: String,
    /// What the route publishes, for docs: its topic, session events, or none.
    pub events_doc: String,
    /// What the route checks of the roles and accounts it writes (role ranks).
    pub ranks: RankPlan,
}

/// The role-rank checks of a write route (decision role-ranks): a caller never
/// grants a role above its own, never writes an account that outranks it, and
/// the top role keeps an active account.
#[derive(Debug, Clone, Default)]
pub struct RankPlan {
    /// The expression of the role the route sets, if it sets one: a `&str`,
    /// or an `Option<&str>` when `grant_optional`.
    pub grants: Option<String>,
    pub grant_optional: bool,
    /// An update or delete of an account: the caller must be allowed to
    /// manage the old row's account; `role_ident` names its role field.
    pub account: bool,
    pub role_ident: String,
    /// The route can demote, delete or archive an account of the top role; it
    /// holds the ranks lock alone.
    pub keeps_top: bool,
    /// The route sets the secret without asking for its current value, so it
    /// refuses the caller's own account with this message.
    pub not_self: Option<String>,
    /// A create or delete that rewrites an account (`pointedBy`): the
    /// `Option<Uuid>` expression of that account.
    pub pointed_account: Option<String>,
}

impl RankPlan {
    /// The route checks ranks: it re-reads the caller's role under the ranks lock.
    pub fn checks(&self) -> bool {
        self.grants.is_some() || self.account || self.pointed_account.is_some()
    }
}

/// How a create route receives a file.
#[derive(Debug, Clone)]
pub struct UploadPlan {
    /// JSON name and identifier of the Blob field.
    pub blob_name: String,
    pub blob_ident: String,
    /// Identifier of the field that stores the sniffed content type.
    pub type_ident: String,
    /// Identifier of the field filled from the part's file name, if any.
    pub name_ident: Option<String>,
    /// Its JSON name, for the error when a name is nothing but a path.
    pub name_field: Option<String>,
    pub max_bytes: u64,
    /// `&["image/png", ...]`: the content types accepted.
    pub allowed: String,
    /// `&["metadata"]`: form fields whose text is JSON (not strings).
    pub json_fields: String,
    /// The whole request's limit: the file in base64 plus the other fields.
    pub request_limit: u64,
}

#[derive(Debug, Clone)]
pub struct AuthPlan {
    pub rule: Auth,
    /// For docs: `public`, `signed in`, `superAdmin, admin or owner`.
    pub summary: String,
}

impl AuthPlan {
    pub fn is_public(&self) -> bool {
        self.rule.is_public()
    }

    /// A rule that lets the row's owner in.
    pub fn owner(&self) -> bool {
        self.rule.rule().is_some_and(|r| r.owner)
    }

    /// The roles a rule names; none for `public` and `login`.
    pub fn roles(&self) -> &[String] {
        self.rule.rule().map_or(&[], |r| &r.roles)
    }
}

pub fn plan(source: &str, m: &Model) -> Plan {
    let service = ServicePlan {
        name: m.service.name.clone(),
        crate_ident: m.service.name.to_snake_case(),
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
    };
    let routes: Vec<RoutePlan> = m.routes.iter().map(|(n, r)| route(m, n, r)).collect();
    let search = crate::search_plan::plan(m);
    let mut objects: Vec<ObjectPlan> = m
        .data_objects
        .iter()
        .map(|(n, o)| object(m, n, o, &routes))
        .collect();
    let mut search_topics = Vec::new();
    for o in objects.iter_mut() {
        o.search_followed = search.follows.iter().any(|f| f.object == o.name);
        if o.search_followed {
            for c in [
                &o.index_consts.created,
                &o.index_consts.updated,
                &o.index_consts.deleted,
            ] {
                search_topics.push((c.clone(), o.name.clone()));
            }
        }
    }
    for i in &search.indexes {
        search_topics.push((i.extended_topic_const.clone(), i.object.clone()));
    }
    let mut topics = Vec::new();
    for o in &objects {
        for (kind, set, label) in [
            ("dbEvent", &o.db_topics, "DBEVENT"),
            ("indexEvent", &o.index_topics, "INDEX"),
        ] {
            for (change, name) in [
                ("created", &set.created),
                ("updated", &set.updated),
                ("deleted", &set.deleted),
            ] {
                topics.push(TopicPlan {
                    const_name: format!(
                        "{label}_{}_{}",
                        o.module.to_uppercase(),
                        change.to_uppercase()
                    ),
                    name: name.clone(),
                    kind,
                    change,
                    owner: o.name.clone(),
                    description: format!("A {} row was {change}.", o.name),
                });
            }
        }
    }
    for i in &search.indexes {
        topics.push(TopicPlan {
            const_name: i.extended_topic_const.clone(),
            name: fill(
                &m.topics.index_event,
                m,
                &[("object", &topic_object(&i.object)), ("change", "extended")],
            ),
            kind: "indexEvent",
            change: "extended",
            owner: i.object.clone(),
            description: format!(
                "Another service added data under a {} document's extends; the payload holds only what was added.",
                i.object
            ),
        });
    }
    for r in &routes {
        if let (Some(topic), Some(c)) = (&r.topic, &r.topic_const) {
            topics.push(TopicPlan {
                const_name: c.clone(),
                name: topic.clone(),
                kind: "routeEvent",
                change: "",
                owner: r.name.clone(),
                description: format!("Route {} succeeded.", r.name),
            });
        }
    }
    let mut constraints = Vec::new();
    for o in &objects {
        let field_of_column = |col: &str| {
            o.columns
                .iter()
                .find(|c| c.column == col)
                .map(|c| c.name.clone())
                .unwrap_or_default()
        };
        for u in &o.uniques {
            let last = u.columns.rsplit(", ").next().unwrap_or_default();
            constraints.push(ConstraintPlan {
                name: u.constraint.clone(),
                field: field_of_column(last),
                kind: "unique",
            });
        }
        for fk in &o.foreign_keys {
            constraints.push(ConstraintPlan {
                name: fk.constraint.clone(),
                field: field_of_column(&fk.column),
                kind: "foreignKey",
            });
        }
    }
    let identity = identity(m, &routes);
    topics.push(TopicPlan {
        const_name: identity.session_topic_const.clone(),
        name: m.auth.session_topic.clone(),
        kind: "sessionEvent",
        change: "",
        owner: "sessions".into(),
        description: "A session was created (login), updated (refresh) or deleted (logout, revocation, expiry).".into(),
    });
    if let Some(f) = &identity.flows {
        topics.push(TopicPlan {
            const_name: f.delivery_topic_const.clone(),
            name: f.delivery_topic.clone(),
            kind: "deliveryRequest",
            change: "",
            owner: "verification".into(),
            description:
                "A one-time code to deliver by email (verification, password reset, second factor)."
                    .into(),
        });
    }
    let realtime = {
        let r = routes.iter().find(|r| r.action == Action::Subscribe);
        RealtimePlan {
            served: r.is_some(),
            name: r.map(|r| r.name.clone()).unwrap_or_default(),
            path: r.map(|r| r.path.clone()).unwrap_or_default(),
        }
    };
    let views = ViewsPlan {
        routes: routes
            .iter()
            .filter(|r| r.view != "full")
            .map(|r| (r.name.clone(), r.view.clone()))
            .collect(),
    };
    Plan {
        views,
        identity,
        source: source.to_string(),
        service,
        objects,
        routes,
        topics,
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
        constraints,
        search,
        search_topics,
        realtime,
    }
}

fn field_of<'a>(o: &'a DataObject, name: &str) -> Option<&'a Field> {
    o.fields.iter().find(|(n, _)| n == name).map(|(_, f)| f)
}

/// A field every caller may see.
fn is_public(o: &DataObject, name: &str) -> bool {
    field_of(o, name).is_some_and(|f| f.public && !f.secret)
}

/// What every caller may see of a row: id, the fields marked public, isActive.
fn public_columns(o: &DataObject) -> Vec<FieldPlan> {
    columns_of(o)
        .into_iter()
        .filter(|c| c.name == "id" || c.name == "isActive" || is_public(o, &c.name))
        .collect()
}

/// The caller's sight under `view` (which narrows), as a Rust expression.
fn sight_expr(view: &str) -> String {
    match view {
        "public" => "crate::views::Sight::Public".into(),
        _ => "crate::views::owner_sight(&caller)".into(),
    }
}

/// `userGroupMember` -> `usergroupmember`, as the seed's topics spell objects.
fn topic_object(name: &str) -> String {
    name.to_lowercase()
}

fn fill(pattern: &str, m: &Model, pairs: &[(&str, &str)]) -> String {
    let mut out = pattern
        .replace("{topicPrefix}", &m.topics.topic_prefix)
        .replace("{searchIndexPrefix}", &m.topics.search_index_prefix);
    for (k, v) in pairs {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

pub fn route_topic(m: &Model, event: &str) -> String {
    fill(&m.topics.route_event, m, &[("event", event)])
}

fn change_topics(pattern: &str, m: &Model, object: &str) -> ChangeTopics {
    let o = topic_object(object);
    let t = |change: &str| fill(pattern, m, &[("object", &o), ("change", change)]);
    ChangeTopics {
        created: t("created"),
        updated: t("updated"),
        deleted: t("deleted"),
    }
}

/// Every database and index topic of the model.
pub fn object_topics(m: &Model) -> Vec<String> {
    let mut out = Vec::new();
    for (name, _) in &m.data_objects {
        for p in [&m.topics.db_event, &m.topics.index_event] {
            let t = change_topics(p, m, name);
            out.extend([t.created, t.updated, t.deleted]);
        }
    }
    out
}

fn plural(name: &str) -> String {
    if name.ends_with('s') {
        format!("{name}es")
    } else if let Some(stem) = name.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{name}s")
    }
}

fn system_fields() -> Vec<FieldPlan> {
    let sys = |name: &str,
               column: &str,
               rust: &str,
               sql: &str,
               default: Option<&str>,
               nullable: bool,
               json: &'static str,
               fmt: Option<&'static str>| FieldPlan {
        name: name.into(),
        ident: column.trim_start_matches('_').into(),
        column: column.into(),
        rust_type: rust.into(),
        row_type: if nullable {
            format!("Option<{rust}>")
        } else {
            rust.into()
        },
        sql_type: sql.into(),
        sql_default: default.map(String::from),
        nullable,
        system: true,
        secret: false,
        blob: false,
        required: false,
        hash: false,
        default_rust: None,
        min_length: None,
        max_length: None,
        email: false,
        allowed_values: vec![],
        references: None,
        json_type: json,
        json_format: fmt,
        computed_rust: None,
        text_rule: None,
        rule_const: column.trim_start_matches('_').to_uppercase(),
        is_object: false,
        default_call: None,
        password_policy: false,
        select_expr: None,
        descriptor: false,
        filter_value: if rust == "String" {
            "value.clone()".into()
        } else {
            "*value".into()
        },
    };
    vec![
        sys(
            "id",
            "id",
            "Uuid",
            "uuid",
            Some("gen_random_uuid()"),
            false,
            "string",
            Some("uuid"),
        ),
        sys(
            "isActive",
            "is_active",
            "bool",
            "boolean",
            Some("true"),
            false,
            "boolean",
            None,
        ),
        sys(
            "recordVersion",
            "record_version",
            "i32",
            "integer",
            Some("1"),
            false,
            "integer",
            None,
        ),
        sys(
            "createdAt",
            "created_at",
            "DateTime<Utc>",
            "timestamptz",
            Some("now()"),
            false,
            "string",
            Some("date-time"),
        ),
        sys(
            "updatedAt",
            "updated_at",
            "DateTime<Utc>",
            "timestamptz",
            Some("now()"),
            false,
            "string",
            Some("date-time"),
        ),
        sys(
            "_owner",
            "_owner",
            "Uuid",
            "uuid",
            None,
            true,
            "string",
            Some("uuid"),
        ),
    ]
}

fn field(name: &str, f: &Field) -> FieldPlan {
    let (rust, sql, json, fmt): (&str, &str, &'static str, Option<&'static str>) =
        match f.ty.as_str() {
            "ID" => ("Uuid", "uuid", "string", Some("uuid")),
            "String" | "Text" => (
                "String",
                "text",
                "string",
                match f.format.as_deref() {
                    Some("email") => Some("email"),
                    // Absolute http(s) URLs and the service's own download paths.
                    Some("url") => Some("uri-reference"),
                    _ => None,
                },
            ),
            "Boolean" => ("bool", "boolean", "boolean", None),
            "Integer" if f.bits == Some(64) => ("i64", "bigint", "integer", Some("int64")),
            "Integer" => ("i32", "integer", "integer", Some("int32")),
            "Date" => ("DateTime<Utc>", "timestamptz", "string", Some("date-time")),
            "Blob" => ("Vec<u8>", "bytea", "string", Some("byte")),
            _ => ("serde_json::Value", "jsonb", "object", None),
        };
    let column = name.to_snake_case();
    let nullable = !f.required && f.default.is_none();
    let default_sql = f.default.as_ref().map(|v| match v {
        serde_yaml::Value::Bool(b) => b.to_string(),
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::String(s) => format!("'{}'", s.replace('\'', "''")),
        _ => String::new(),
    });
    let default_rust = f.default.as_ref().map(|v| match v {
        serde_yaml::Value::String(s) => format!("String::from({s:?})"),
        serde_yaml::Value::Bool(b) => b.to_string(),
        serde_yaml::Value::Number(n) => n.to_string(),
        _ => String::new(),
    });
    FieldPlan {
        name: name.to_string(),
        ident: column.clone(),
        column,
        rust_type: rust.into(),
        row_type: if nullable {
            format!("Option<{rust}>")
        } else {
            rust.into()
        },
        sql_type: sql.into(),
        sql_default: default_sql,
        nullable,
        system: false,
        secret: f.secret,
        blob: f.ty == "Blob",
        required: f.required,
        hash: f.hash.is_some(),
        default_rust: default_rust.clone(),
        min_length: f.min_length,
        max_length: f.max_length,
        email: f.format.as_deref() == Some("email"),
        allowed_values: f.allowed_values.clone(),
        references: f.references.clone(),
        json_type: json,
        json_format: fmt,
        computed_rust: f.computed.as_ref().map(|c| match c {
            crate::model::Computed::SizeOf { size_of } => format!(
                "{rust}::try_from({}.len()).unwrap_or({rust}::MAX)",
                size_of.to_snake_case()
            ),
            crate::model::Computed::Keyword(_) => "crate::validation::random_key()".to_string(),
        }),
        text_rule: matches!(f.ty.as_str(), "String" | "Text").then(|| {
            let opt = |v: Option<u32>| v.map_or("None".to_string(), |n| format!("Some({n})"));
            let allowed = f
                .allowed_values
                .iter()
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            let format = match f.format.as_deref() {
                Some("email") => "Email",
                Some("url") => "Url",
                _ => "Any",
            };
            format!(
                "TextRule {{ min_length: {}, max_length: {}, format: crate::validation::TextFormat::{format}, allowed: &[{allowed}] }}",
                opt(f.min_length),
                opt(f.max_length),
            )
        }),
        rule_const: name.to_snake_case().to_uppercase(),
        is_object: f.ty == "Object",
        default_call: default_rust.as_ref().map(|d| {
            if rust == "String" {
                format!("unwrap_or_else(|| {d})")
            } else {
                format!("unwrap_or({d})")
            }
        }),
        password_policy: false,
        select_expr: None,
        descriptor: false,
        filter_value: match rust {
            "String" if f.format.as_deref() == Some("email") => {
                "validation::normalize_email(value.clone())".into()
            }
            "String" | "serde_json::Value" | "Vec<u8>" => "value.clone()".into(),
            _ => "*value".into(),
        },
    }
}

fn select_list(fields: &[FieldPlan], alias: &str) -> String {
    fields
        .iter()
        .map(|f| {
            f.select_expr
                .clone()
                .unwrap_or_else(|| format!("{alias}.{}", f.column))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// All columns of an object, system ones included, in table order.
fn columns_of(o: &DataObject) -> Vec<FieldPlan> {
    let sys = system_fields();
    let mut columns: Vec<FieldPlan> = vec![sys[0].clone()];
    columns.extend(o.fields.iter().map(|(n, f)| field(n, f)));
    columns.extend(sys[1..].iter().cloned());
    columns
}

/// What reads return: everything but secrets; blobs as a descriptor that
/// says where the row is fetched, never their bytes.
fn visible_of(m: &Model, object: &str, columns: &[FieldPlan]) -> Vec<FieldPlan> {
    let of_object = |action: Action| {
        m.routes.iter().find(|(_, r)| {
            r.object.as_deref() == Some(object)
                && r.action == action
                && r.view.is_none()
                && r.by.is_none()
        })
    };
    // The bytes' own route when there is one, else the row's.
    let href = of_object(Action::Download)
        .or_else(|| of_object(Action::Get))
        .map(|(_, r)| {
            let path = format!("{}{}", m.service.api_base, r.path);
            let (before, after) = path.split_once("{id}").unwrap_or((path.as_str(), ""));
            format!("{} || t.id || {}", sql_text(before), sql_text(after))
        })
        .unwrap_or_else(|| "NULL".to_string());
    columns
        .iter()
        .filter(|c| !c.secret)
        .cloned()
        .map(|mut c| {
            if c.blob {
                c.select_expr = Some(format!(
                    "json_build_object('omitted', true, 'href', {href}) AS {}",
                    c.column
                ));
                c.rust_type = "sqlx::types::Json<serde_json::Value>".into();
                c.row_type = c.rust_type.clone();
                c.nullable = false;
                c.descriptor = true;
            }
            c
        })
        .collect()
}

fn active_clause(o: &DataObject) -> &'static str {
    if o.soft_delete {
        " AND t.is_active"
    } else {
        ""
    }
}

fn object(m: &Model, name: &str, o: &DataObject, routes: &[RoutePlan]) -> ObjectPlan {
    let columns = columns_of(o);
    let visible = visible_of(m, name, &columns);
    let select = select_list(&visible, "t");
    let struct_name = name.to_upper_camel_case();
    let my_routes: Vec<RoutePlan> = routes
        .iter()
        .filter(|r| r.object.as_deref() == Some(name))
        .cloned()
        .collect();
    let public_fields = public_columns(o);
    let public_names: Vec<String> = public_fields.iter().map(|f| f.name.clone()).collect();
    let public_keys = rust_str_slice(&public_names);
    let public_view = my_routes.iter().any(|r| r.public_view).then(|| {
        let fields = public_fields.clone();
        ViewPlan {
            struct_name: format!("{struct_name}Public"),
            select_list: select_list(&fields, "t"),
            fields,
        }
    });
    let filters: Vec<FieldPlan> = columns
        .iter()
        .filter(|c| field_of(o, &c.name).is_some_and(|f| f.filterable))
        .cloned()
        .collect();
    let mut sorts: Vec<SortPlan> = Vec::new();
    for c in columns.iter().filter(|c| {
        c.name == "createdAt"
            || c.name == "updatedAt"
            || field_of(o, &c.name).is_some_and(|f| f.sortable)
    }) {
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
    let search_columns = o
        .fields
        .iter()
        .filter(|(_, f)| f.searchable)
        .map(|(n, _)| format!("t.{}", n.to_snake_case()))
        .collect();
    let partial = if o.soft_delete {
        " WHERE is_active"
    } else {
        ""
    };
    let mut uniques = Vec::new();
    for c in columns
        .iter()
        .filter(|c| field_of(o, &c.name).is_some_and(|f| f.unique))
    {
        uniques.push(UniquePlan {
            constraint: format!("{}_{}_key", o.table, c.column),
            columns: c.column.clone(),
            partial: partial.into(),
        });
    }
    for group in &o.unique_together {
        let cols: Vec<String> = group.iter().map(|g| g.to_snake_case()).collect();
        uniques.push(UniquePlan {
            constraint: format!("{}_{}_key", o.table, cols.join("_")),
            columns: cols.join(", "),
            partial: partial.into(),
        });
    }
    let mut indexes = Vec::new();
    let mut foreign_keys = Vec::new();
    for c in &columns {
        let Some(f) = field_of(o, &c.name) else {
            continue;
        };
        if let Some(target) = f.references.as_deref() {
            let target_table = m
                .data_objects
                .iter()
                .find(|(n, _)| n == target)
                .map(|(_, t)| t.table.clone())
                .unwrap_or_default();
            foreign_keys.push(ForeignKeyPlan {
                constraint: format!("{}_{}_fkey", o.table, c.column),
                column: c.column.clone(),
                target_table,
            });
        }
        if (f.filterable || f.sortable || f.references.is_some()) && !f.unique {
            indexes.push(IndexPlan {
                name: format!("{}_{}_idx", o.table, c.column),
                columns: c.column.clone(),
                partial: partial.into(),
            });
        }
    }
    indexes.push(IndexPlan {
        name: format!("{}_created_at_idx", o.table),
        columns: "created_at, id".into(),
        partial: partial.into(),
    });
    let mut includes: Vec<IncludePlan> = Vec::new();
    for i in my_routes.iter().flat_map(|r| r.includes.iter()) {
        match includes.iter_mut().find(|a| a.struct_name == i.struct_name) {
            // A route that joins it whole needs its typed struct.
            Some(a) if !a.sight.is_empty() && i.sight.is_empty() => *a = i.clone(),
            Some(_) => {}
            None => includes.push(i.clone()),
        }
    }
    let mut endpoints: Vec<EndpointPlan> = Vec::new();
    for r in &my_routes {
        let call = match &r.upload {
            // The upload's own limit replaces the service's body limit.
            Some(u) => format!(
                "{}(axum::handler::Handler::layer({}, axum::extract::DefaultBodyLimit::max({})))",
                r.method_fn, r.handler, u.request_limit
            ),
            None => format!("{}({})", r.method_fn, r.handler),
        };
        match endpoints.iter_mut().find(|e| e.path == r.path) {
            Some(e) => e.chain = format!("{}.{call}", e.chain),
            None => endpoints.push(EndpointPlan {
                path: r.path.clone(),
                chain: format!("routing::{call}"),
            }),
        }
    }
    let active = active_clause(o);
    let sql_get = format!(
        "SELECT {select} FROM {} AS t WHERE t.id = $1{active}",
        o.table
    );
    let sql_get_public = public_view
        .as_ref()
        .map(|v| {
            format!(
                "SELECT {} FROM {} AS t WHERE t.id = $1{active}",
                v.select_list, o.table
            )
        })
        .unwrap_or_default();
    let sql_delete = if o.soft_delete {
        format!("UPDATE {} AS t SET is_active = false, record_version = t.record_version + 1, updated_at = now() WHERE t.id = $1 RETURNING {select}", o.table)
    } else {
        format!(
            "DELETE FROM {} AS t WHERE t.id = $1 RETURNING {select}",
            o.table
        )
    };
    let has = |a: Action| my_routes.iter().any(|r| r.action == a);
    let (has_list, has_create, has_update, has_delete) = (
        has(Action::List),
        has(Action::Create),
        has(Action::Update),
        has(Action::Delete),
    );
    let mut uses: Vec<&str> = vec![
        "crate::events::ObjectTopics",
        "crate::app::AppState",
        "crate::error::ApiError",
        "axum::Router",
        "serde::Serialize",
        "uuid::Uuid",
    ];
    let mut envelope = vec![];
    if !my_routes.is_empty() {
        uses.extend([
            "axum::extract::State",
            "axum::http::StatusCode",
            "axum::routing",
        ]);
        envelope.extend(["Reply", "RequestContext", "RouteInfo"]);
    }
    if visible.iter().any(|c| c.rust_type.contains("DateTime")) {
        uses.push("chrono::{DateTime, Utc}");
    }
    if my_routes.iter().any(|r| {
        matches!(r.action, Action::Get | Action::Download | Action::Extend)
            || has_update
            || has_delete
    }) {
        uses.push("crate::extract::ApiPath");
    }
    if has_list {
        envelope.extend(["Filter", "ListMeta", "Paging"]);
        uses.extend(["crate::error::FieldError", "crate::extract::ApiQuery"]);
    }
    if has_list || has_update {
        uses.push("sqlx::{Postgres, QueryBuilder}");
    }
    if has_list || has_create || has_update || !includes.is_empty() {
        uses.push("serde::Deserialize");
    }
    if has_list || has_create || has_update {
        uses.push("crate::validation");
    }
    if has_create || has_update {
        uses.push("crate::validation::Validator");
    }
    let has_extend = has(Action::Extend);
    if has_update
        || has_extend
        || my_routes
            .iter()
            .any(|r| r.action == Action::Create && r.upload.is_none())
    {
        uses.push("crate::extract::ApiJson");
    }
    if has_extend && !has_list {
        uses.push("crate::error::FieldError");
    }
    if has(Action::Download) {
        uses.push("axum::http::HeaderMap");
    }
    if has_update {
        uses.push("crate::validation::Patch");
    }
    if has_update || has_delete {
        uses.push("crate::extract::IfMatch");
    }
    if my_routes.iter().any(|r| !r.auth.is_public()) {
        uses.push("crate::auth::Caller");
    }
    if my_routes.iter().any(|r| r.throttled) {
        uses.push("crate::auth::ClientAddr");
    }
    uses.push("crate::auth::Access");
    if !envelope.is_empty() {
        envelope.sort_unstable();
        uses.push(Box::leak(
            format!("crate::envelope::{{{}}}", envelope.join(", ")).into_boxed_str(),
        ));
    }
    uses.sort_unstable();
    let uses: Vec<String> = uses.into_iter().map(String::from).collect();
    let consts = |label: &str| {
        let c = |change: &str| {
            format!(
                "{label}_{}_{}",
                name.to_snake_case().to_uppercase(),
                change.to_uppercase()
            )
        };
        ChangeTopics {
            created: c("created"),
            updated: c("updated"),
            deleted: c("deleted"),
        }
    };
    ObjectPlan {
        owner_column: if o.owner_is_self {
            "id".into()
        } else {
            "_owner".into()
        },
        owner_expr: if o.owner_is_self {
            "Some(row.id)".into()
        } else {
            "row.owner".into()
        },
        // Narrowing a row read by a get or list route asks who owns it.
        has_owner_rules: my_routes
            .iter()
            .any(|r| (r.auth.owner() && r.action != Action::List) || (!r.sight.is_empty() && !r.search)),
        narrowed: my_routes.iter().any(|r| !r.sight.is_empty()),
        public_keys,
        public_fields: public_names,
        db_consts: consts("DBEVENT"),
        index_consts: consts("INDEX"),
        blobs: columns.iter().filter(|c| c.blob).cloned().collect(),
        has_list,
        has_delete,
        has_locking: has_update || has_delete,
        uses,
        search_followed: false,
        has_search: my_routes.iter().any(|r| r.search),
        pointer: pointer_of(m, name, o),
        pointer_setters: m
            .data_objects
            .iter()
            .filter_map(|(_, other)| other.pointed_by.as_ref().map(|p| (other, p)))
            .filter(|(other, p)| {
                other
                    .fields
                    .iter()
                    .any(|(n, f)| *n == p.via && f.references.as_deref() == Some(name))
            })
            .map(|(_, p)| {
                let column = p.field.to_snake_case();
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
            .collect(),
        name: name.to_string(),
        plural: plural(name),
        module: name.to_snake_case(),
        struct_name,
        table: o.table.clone(),
        description: o.description.clone(),
        soft_delete: o.soft_delete,
        text_rules: columns
            .iter()
            .filter(|c| {
                c.text_rule.is_some()
                    && my_routes
                        .iter()
                        .any(|r| r.inputs.iter().any(|i| i.name == c.name))
            })
            .cloned()
            .collect(),
        sql_lock: format!("{sql_get} FOR UPDATE"),
        sql_get,
        sql_get_public,
        sql_delete,
        select_list: select,
        visible,
        columns,
        public_view,
        filters,
        sort_keys: sorts
            .iter()
            .map(|s| s.key.clone())
            .collect::<Vec<_>>()
            .join(", "),
        default_sort: "-createdAt".to_string(),
        sorts,
        search_columns,
        uniques,
        indexes,
        foreign_keys,
        db_topics: change_topics(&m.topics.db_event, m, name),
        index_topics: change_topics(&m.topics.index_event, m, name),
        routes: my_routes,
        includes,
        endpoints,
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
    let via_ident = p.via.to_snake_case();
    Some(PointerPlan {
        module: target.to_snake_case(),
        setter: format!("point_{}", p.field.to_snake_case()),
        via_expr: if via.required {
            format!("Some(row.{via_ident})")
        } else {
            format!("row.{via_ident}")
        },
        key_ident: key.to_snake_case(),
        href_prefix: prefix.to_string(),
        href_suffix: suffix.to_string(),
    })
}

/// Which rank checks a route needs: routes that write the identity object,
/// and creates and deletes of rows that rewrite an account through `pointedBy`.
fn rank_plan(m: &Model, r: &Route) -> RankPlan {
    let a = &m.auth;
    let Some((object_name, o)) = r.object.as_deref().and_then(|n| Some((n, m.object(n)?))) else {
        return RankPlan::default();
    };
    let action = r.action;
    if r.auth.is_public() || !action.changes_rows() {
        return RankPlan::default();
    }
    if object_name == a.user_object {
        let sets_role = r.fields.contains(&a.role_field);
        let sets_secret = action == Action::Update && r.fields.contains(&a.password_field);
        let confirming = m
            .routes
            .iter()
            .find(|(_, c)| c.confirm_current)
            .map(|(n, _)| n);
        let role = a.role_field.to_snake_case();
        // An `Option<&str>` of the role the route sets.
        let filled = field_of(o, &a.role_field).is_some_and(|f| f.required || f.default.is_some());
        let optional = !(action == Action::Create && filled);
        let grants = if optional {
            format!("{role}.as_deref()")
        } else {
            format!("&{role}")
        };
        return RankPlan {
            grants: sets_role.then_some(grants),
            grant_optional: optional,
            account: action != Action::Create,
            role_ident: role,
            keeps_top: action == Action::Delete || (action == Action::Update && sets_role),
            not_self: (sets_secret && !r.confirm_current).then(|| match confirming {
                Some(route) => format!(
                    "change your own {} through {route}, which asks for the current one",
                    a.password_field
                ),
                None => format!("a caller cannot set their own {} here", a.password_field),
            }),
            pointed_account: None,
        };
    }
    let pointed = o.pointed_by.as_ref().and_then(|p| {
        let via = field_of(o, &p.via)?;
        (via.references.as_deref() == Some(a.user_object.as_str())).then_some((p, via))
    });
    let pointed_account = match (pointed, action) {
        (Some((p, via)), Action::Create) if r.fields.contains(&p.via) => Some(if via.required {
            format!("Some({})", p.via.to_snake_case())
        } else {
            p.via.to_snake_case()
        }),
        (Some((p, via)), Action::Delete) => Some(if via.required {
            format!("Some(old.{})", p.via.to_snake_case())
        } else {
            format!("old.{}", p.via.to_snake_case())
        }),
        _ => None,
    };
    RankPlan {
        pointed_account,
        ..RankPlan::default()
    }
}

fn route(m: &Model, name: &str, r: &Route) -> RoutePlan {
    let object = r
        .object
        .as_deref()
        .and_then(|o| m.data_objects.iter().find(|(n, _)| n == o));
    let data_name = match (object, r.action) {
        (Some((n, _)), Action::List) => plural(n),
        (Some((n, _)), _) => n.clone(),
        (None, Action::VerifyStart | Action::ResetStart) => "verification".to_string(),
        (None, Action::VerifyComplete | Action::ResetComplete) => m.auth.user_object.clone(),
        (None, Action::Permissions) => "permissions".to_string(),
        (None, _) => "session".to_string(),
    };
    let inputs: Vec<FieldPlan> = object
        .map(|(_, o)| {
            r.fields
                .iter()
                .filter_map(|f| field_of(o, f).map(|fd| field(f, fd)))
                .collect()
        })
        .unwrap_or_default();
    let includes: Vec<IncludePlan> = object
        .map(|(on, o)| {
            r.include
                .iter()
                .filter_map(|(iname, inc)| {
                    let target = field_of(o, &inc.via)?.references.as_deref()?;
                    let (_, t) = m.data_objects.iter().find(|(n, _)| n == target)?;
                    let alias = format!("i_{}", iname.to_snake_case());
                    let fields: Vec<FieldPlan> = inc.fields.iter().filter_map(|f| field_of(t, f).map(|fd| field(f, fd))).collect();
                    let pairs = fields.iter().map(|f| format!("'{}', {alias}.{}", f.name, f.column)).collect::<Vec<_>>().join(", ");
                    let ident = iname.to_snake_case();
                    let mut json_sql = format!("CASE WHEN {alias}.id IS NULL THEN NULL ELSE json_build_object({pairs}) END AS {ident}");
                    // Joined rows follow their own object's view.
                    let view = m.include_view(r, target);
                    let sight = if m.view_narrows(&r.auth, view) { sight_expr(view) } else { String::new() };
                    let owner_ident = format!("{ident}_owner");
                    if !sight.is_empty() {
                        let owner = if t.owner_is_self { "id" } else { "_owner" };
                        json_sql.push_str(&format!(", {alias}.{owner} AS {owner_ident}"));
                    }
                    let public: Vec<String> = inc.fields.iter().filter(|f| is_public(t, f)).cloned().collect();
                    Some(IncludePlan {
                        sight,
                        public_keys: rust_str_slice(&public),
                        public_fields: public,
                        view: view.to_string(),
                        owner_ident,
                        name: iname.clone(),
                        ident,
                        struct_name: format!("{}{}", on.to_upper_camel_case(), iname.to_upper_camel_case()),
                        via_column: inc.via.to_snake_case(),
                        target_table: t.table.clone(),
                        target_soft_delete: t.soft_delete,
                        json_sql,
                        fields,
                        alias,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let auth = AuthPlan {
        summary: match &r.auth {
            Auth::Public => "public".into(),
            Auth::Login => "any signed-in user".into(),
            Auth::Rule(rule) => {
                let mut who: Vec<String> = rule.roles.clone();
                if rule.owner {
                    who.push("the owner".into());
                }
                who.join(", ")
            }
        },
        rule: r.auth.clone(),
    };
    let mut computed = Vec::new();
    let (mut search_tail, mut extend_sql, mut extended_topic_const) =
        (String::new(), String::new(), String::new());
    let (mut index_name, mut es_fields) = (String::new(), String::new());
    let (mut es_public_fields, mut public_weights, mut list_sql_narrow) =
        (String::new(), String::new(), String::new());
    let (mut insert_sql, mut insert_binds, mut list_sql, mut count_sql) =
        (String::new(), Vec::new(), String::new(), String::new());
    if let Some((_, o)) = object {
        let columns = columns_of(o);
        let select = select_list(
            &visible_of(m, r.object.as_deref().unwrap_or_default(), &columns),
            "t",
        );
        computed = columns
            .iter()
            .filter(|c| c.computed_rust.is_some())
            .cloned()
            .collect();
        if r.action == Action::Create {
            let mut cols = vec!["id".to_string()];
            insert_binds.push("id".to_string());
            for f in inputs.iter().chain(computed.iter()) {
                cols.push(f.column.clone());
                insert_binds.push(f.ident.clone());
            }
            cols.push("_owner".into());
            insert_binds.push(if o.owner_is_self {
                "Some(id)".into()
            } else {
                "ctx.user_id".into()
            });
            let params = (1..=cols.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            insert_sql = format!(
                "INSERT INTO {} AS t ({}) VALUES ({params}) RETURNING {select}",
                o.table,
                cols.join(", ")
            );
        }
        if r.action == Action::List {
            let mut head = format!("SELECT {select}");
            for i in &includes {
                head.push_str(&format!(", {}", i.json_sql));
            }
            head.push_str(&format!(
                ", count(*) OVER () AS total_row_count FROM {} AS t",
                o.table
            ));
            for i in &includes {
                let live = if i.target_soft_delete {
                    format!(" AND {}.is_active", i.alias)
                } else {
                    String::new()
                };
                head.push_str(&format!(
                    " LEFT JOIN {} AS {} ON {}.id = t.{}{live}",
                    i.target_table, i.alias, i.alias, i.via_column
                ));
            }
            let filter = if o.soft_delete {
                " WHERE t.is_active"
            } else {
                " WHERE TRUE"
            };
            list_sql = format!("{head}{filter}");
            count_sql = format!("SELECT count(*) FROM {} AS t{filter}", o.table);
            if r.search {
                let (from, tail) = crate::search_plan::search_from(
                    m,
                    r.object.as_deref().unwrap_or_default(),
                    &o.table,
                    o.soft_delete,
                );
                let select = |rank: &str| {
                    format!("SELECT d.doc || jsonb_build_object('extends', d.extends) AS document, ts_rank({rank}, q.query) AS rank, count(*) OVER () AS total_row_count{from}")
                };
                list_sql = select("d.search");
                count_sql = format!("SELECT count(*){from}");
                search_tail = tail;
                index_name =
                    crate::search_plan::index_name(m, r.object.as_deref().unwrap_or_default());
                let searchable: Vec<(usize, &String, bool)> = o
                    .fields
                    .iter()
                    .filter(|(_, f)| f.searchable)
                    .enumerate()
                    .map(|(i, (n, f))| (i, n, f.public))
                    .collect();
                let boosted = |public_only: bool| {
                    let fields: Vec<String> = searchable
                        .iter()
                        .filter(|(_, _, public)| *public || !public_only)
                        .map(|(i, n, _)| format!("{n}^{}", 3usize.saturating_sub(*i).max(1)))
                        .collect();
                    rust_str_slice(&fields)
                };
                es_fields = boosted(false);
                es_public_fields = boosted(true);
                // Callers who see only public fields match, and are ranked,
                // only by the keywords of the public searchable fields.
                let mut weights: Vec<&str> = searchable
                    .iter()
                    .filter(|(_, _, public)| *public)
                    .map(|(i, _, _)| crate::search_plan::weight(*i))
                    .collect();
                weights.dedup();
                public_weights = weights.concat();
                list_sql_narrow = select(&format!(
                    "ts_filter(d.search, '{{{}}}')",
                    weights.join(",").to_lowercase()
                ));
            }
        }
        if r.action == Action::Extend {
            let object_name = r.object.as_deref().unwrap_or_default();
            extended_topic_const = format!(
                "INDEX_{}_EXTENDED",
                object_name.to_snake_case().to_uppercase()
            );
            extend_sql = format!(
                "UPDATE search_documents AS d SET extends = d.extends || $2, updated_at = now() WHERE d.index_name = '{}' AND d.id = $1 RETURNING d.doc || jsonb_build_object('extends', d.extends)",
                crate::search_plan::index_name(m, object_name)
            );
        }
    }
    let path = format!("{}{}", m.service.api_base, r.path);
    let is_user = r.object.as_deref() == Some(m.auth.user_object.as_str());
    let mut inputs = inputs;
    for f in inputs.iter_mut() {
        f.password_policy =
            is_user && m.auth.reject_common_passwords && f.name == m.auth.password_field;
    }
    let revokes = match r.action {
        Action::Update if is_user && r.fields.contains(&m.auth.password_field) => Revokes::Others,
        Action::Delete if is_user => Revokes::All,
        _ => Revokes::None,
    };
    let access = match &r.auth {
        Auth::Public => "Access::Public".to_string(),
        Auth::Login => "Access::Login".to_string(),
        Auth::Rule(rule) => format!(
            "Access::Rule {{ roles: &[{}], owner: {} }}",
            rule.roles
                .iter()
                .map(|r| format!("{r:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            rule.owner
        ),
    };
    let throttled = r.auth.is_public() && r.action.changes_rows();
    let mut upload = None;
    let (mut download_sql, mut key_type) = (String::new(), String::new());
    if let Some((_, o)) = object {
        let blob = o
            .fields
            .iter()
            .find(|(_, f)| f.ty == "Blob" && f.type_field.is_some());
        if let (Some((bname, bf)), Some(type_field)) =
            (blob, blob.and_then(|(_, f)| f.type_field.as_ref()))
        {
            if r.action == Action::Create && r.fields.contains(bname) {
                // The content type comes from the bytes; a declared one must agree.
                for f in inputs.iter_mut().filter(|f| &f.name == type_field) {
                    f.required = false;
                }
                let allowed = field_of(o, type_field)
                    .map(|f| f.allowed_values.clone())
                    .unwrap_or_default();
                let max_bytes = bf.max_bytes.unwrap_or_default();
                upload = Some(UploadPlan {
                    blob_name: bname.clone(),
                    blob_ident: bname.to_snake_case(),
                    type_ident: type_field.to_snake_case(),
                    name_ident: bf
                        .name_field
                        .as_ref()
                        .filter(|n| r.fields.contains(n))
                        .map(|n| n.to_snake_case()),
                    name_field: bf.name_field.clone().filter(|n| r.fields.contains(n)),
                    max_bytes,
                    allowed: rust_str_slice(&allowed),
                    json_fields: rust_str_slice(
                        &inputs
                            .iter()
                            .filter(|f| !f.blob && f.json_type != "string")
                            .map(|f| f.name.clone())
                            .collect::<Vec<_>>(),
                    ),
                    request_limit: max_bytes.div_ceil(3) * 4 + m.service.body_limit_bytes,
                });
            }
            if r.action == Action::Download {
                let key = r.by.as_deref().unwrap_or("id").to_snake_case();
                key_type = if key == "id" { "Uuid" } else { "String" }.to_string();
                let name = bf
                    .name_field
                    .as_ref()
                    .map(|n| format!("t.{}", n.to_snake_case()))
                    .unwrap_or_else(|| "NULL::text".to_string());
                let owner = if o.owner_is_self { "id" } else { "_owner" };
                download_sql = format!(
                    "SELECT t.id, t.record_version, t.{} AS content_type, {name} AS file_name, t.{} AS bytes, t.{owner} AS owner FROM {} AS t WHERE t.{key} = $1{}",
                    type_field.to_snake_case(),
                    bname.to_snake_case(),
                    o.table,
                    active_clause(o)
                );
            }
        }
    }
    let cache_control = r.cache_control.clone().unwrap_or_else(|| {
        if r.auth.is_public() {
            "public, max-age=3600".to_string()
        } else {
            "private, no-cache".to_string()
        }
    });
    let nothing_to_change = inputs
        .iter()
        .map(|f| format!("input.{}.is_absent()", f.ident))
        .collect::<Vec<_>>()
        .join(" && ");
    let topic = r.event.as_ref().map(|e| route_topic(m, e));
    let events_doc = match (&topic, r.action) {
        (Some(t), _) => format!("`{t}`"),
        (None, Action::Download) => "none (answers bytes)".to_string(),
        (None, Action::Extend) => "the index's `-extended` topic".to_string(),
        (None, Action::Subscribe) => "none (streams the events)".to_string(),
        (None, _) => "session events".to_string(),
    };
    let (confirm_field, secret_sql) = if r.confirm_current {
        (
            format!("current{}", m.auth.password_field.to_upper_camel_case()),
            object.map_or(String::new(), |(_, o)| {
                format!(
                    "SELECT t.{} FROM {} AS t WHERE t.id = $1",
                    m.auth.password_field.to_snake_case(),
                    o.table
                )
            }),
        )
    } else {
        (String::new(), String::new())
    };
    // What the route shows (decision route-views).
    let view = m.view_of(r).to_string();
    let public_view = view == "public" && r.action == Action::Get;
    let narrows = m.narrows(r);
    let sight = if narrows && !public_view {
        sight_expr(&view)
    } else {
        String::new()
    };
    let (mut shown_keys, mut owner_key, mut view_doc) =
        (String::new(), String::new(), String::new());
    if let Some((_, o)) = object {
        let mut keys: Vec<String> = public_columns(o).into_iter().map(|c| c.name).collect();
        let public = keys.join(", ");
        // Joined rows stay, narrowed by their own view; a hit keeps its rank.
        keys.extend(includes.iter().map(|i| i.name.clone()));
        if r.search {
            keys.push("_score".into());
        }
        shown_keys = rust_str_slice(&keys);
        owner_key = if o.owner_is_self { "id" } else { "_owner" }.to_string();
        let admins = m.roles.admin.join(", ");
        view_doc = match (r.action.reads_rows(), view.as_str()) {
            (true, "public") => format!("public fields only ({public})"),
            (true, "owner") if narrows => format!(
                "every field to {admins} and on the caller's own rows; elsewhere public fields only ({public})"
            ),
            (true, _) => "every field".to_string(),
            (false, _) => String::new(),
        };
        for i in includes.iter().filter(|i| !i.sight.is_empty()) {
            let public = i.public_fields.join(", ");
            view_doc.push_str(&match i.view.as_str() {
                "public" => format!("; joined {}: {public}", i.name),
                _ => format!(
                    "; joined {}: every field to {admins} and when it is the caller's own, else {public}",
                    i.name
                ),
            });
        }
    }
    RoutePlan {
        ranks: rank_plan(m, r),
        rows_mut: (r.search && !sight.is_empty()) || includes.iter().any(|i| !i.sight.is_empty()),
        view,
        view_doc,
        sight,
        shown_keys,
        owner_key,
        es_public_fields,
        public_weights,
        list_sql_narrow,
        confirm_field,
        secret_sql,
        search_tail,
        index_name,
        es_fields,
        extend_sql,
        extended_topic_const,
        events_doc,
        upload,
        caller_fields: r.caller_fields.iter().map(|f| f.to_snake_case()).collect(),
        download_sql,
        key_type,
        cache_control,
        throttled,
        revokes,
        access,
        nothing_to_change,
        name: name.to_string(),
        handler: name.to_snake_case(),
        type_prefix: name.to_upper_camel_case(),
        const_name: name.to_snake_case().to_uppercase(),
        action: r.action,
        method: r.method.clone(),
        method_fn: r.method.to_lowercase(),
        path,
        object: r.object.clone(),
        data_name,
        event: r.event.clone(),
        topic,
        topic_const: r
            .event
            .as_ref()
            .map(|e| format!("ROUTE_{}", e.to_snake_case().to_uppercase())),
        search: r.search,
        public_view,
        required_inputs: inputs
            .iter()
            .filter(|f| f.required && f.default_rust.is_none())
            .map(|f| f.ident.clone())
            .collect(),
        inputs,
        includes,
        auth,
        success_status: r.action.success_status(),
        computed,
        insert_sql,
        insert_binds,
        list_sql,
        count_sql,
        list_row: format!("{}Row", name.to_upper_camel_case()),
    }
}

fn identity(m: &Model, routes: &[RoutePlan]) -> IdentityPlan {
    let a = &m.auth;
    let (_, user) = m
        .data_objects
        .iter()
        .find(|(n, _)| n == &a.user_object)
        .expect("validated user object");
    let col = |f: &str| f.to_snake_case();
    let active = if user.soft_delete {
        " AND t.is_active"
    } else {
        ""
    };
    let route = |action: Action| {
        routes
            .iter()
            .find(|r| r.action == action)
            .cloned()
            .expect("validated auth route")
    };
    let mut cols = vec![
        "id".to_string(),
        col(&a.login_field),
        col(&a.password_field),
        col(&a.role_field),
    ];
    let mut values = vec![
        "$1".to_string(),
        "$2".to_string(),
        "$3".to_string(),
        sql_text(&a.super_admin_role),
    ];
    for (f, v) in &a.bootstrap_values {
        cols.push(col(f));
        values.push(sql_text(v));
    }
    if user.owner_is_self {
        cols.push("_owner".into());
        values.push("$1".into());
    }
    let role_sql = format!(
        "SELECT t.{} FROM {} AS t WHERE t.id = $1{active}",
        col(&a.role_field),
        user.table
    );
    let mut current_user = route(Action::CurrentUser);
    current_user.data_name = a.user_object.clone();
    IdentityPlan {
        password_field_name: a.password_field.clone(),
        bootstrap_sql: format!(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING",
            user.table,
            cols.join(", "),
            values.join(", ")
        ),
        user_module: a.user_object.to_snake_case(),
        user_table: user.table.clone(),
        login_field: a.login_field.clone(),
        login_email: field_of(user, &a.login_field).is_some_and(|f| f.format.as_deref() == Some("email")),
        login_sql: format!(
            "SELECT t.id, t.{}, t.{}, {}, {} FROM {} AS t WHERE t.{} = $1{active}",
            col(&a.password_field),
            col(&a.role_field),
            a.verification.as_ref().map_or("TRUE".to_string(), |v| format!("t.{}", col(&v.verified_field))),
            a.verification
                .as_ref()
                .and_then(|v| v.second_factor_field.as_ref())
                .map_or("FALSE".to_string(), |f| format!("t.{}", col(f))),
            user.table,
            col(&a.login_field)
        ),
        caller_sql: format!(
            "SELECT t.{}, s.expires_at FROM sessions AS s JOIN {} AS t ON t.id = s.user_id \
             WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL AND s.expires_at > now(){active}",
            col(&a.role_field),
            user.table
        ),
        issuer: a.issuer.clone(),
        audience: a.audience.clone(),
        access_ttl: a.access_token_ttl_seconds,
        refresh_ttl: a.refresh_token_ttl_seconds,
        refresh_grace: a.refresh_grace_seconds,
        live_session_cache: a.live_session_cache_seconds,
        session_topic_const: "SESSION".into(),
        session_namespace: a.session_namespace.clone(),
        device_fields: a
            .device_fields
            .iter()
            .enumerate()
            .map(|(i, f)| DeviceFieldPlan { name: f.clone(), ident: f.to_snake_case(), proto_number: i + 5 })
            .collect(),
        proto_created_at: a.device_fields.len() + 5,
        session_topic: a.session_topic.clone(),
        throttle_window: a.throttle.window_seconds,
        login_per_account: a.throttle.login_per_account,
        login_per_address: a.throttle.login_per_address,
        public_writes_per_address: a.throttle.public_writes_per_address,
        common_passwords: if a.reject_common_passwords { COMMON_PASSWORDS.to_vec() } else { Vec::new() },
        sign_in: route(Action::Login),
        refresh: route(Action::Refresh),
        sign_out: route(Action::Logout),
        current_user,
        public_keys: route(Action::PublicKeys),
        super_admin_role: a.super_admin_role.clone(),
        role_ranks: format!(
            "&[{}]",
            m.roles
                .values
                .iter()
                .map(|r| format!("({r:?}, {})", m.roles.ranks.get(r).copied().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        peer_writers: rust_str_slice(&m.roles.peer_writes),
        admin_roles: rust_str_slice(&m.roles.admin),
        rank_summary: {
            let ranks: Vec<String> = m
                .roles
                .values
                .iter()
                .map(|r| format!("`{r}` {}", m.roles.ranks.get(r).copied().unwrap_or_default()))
                .collect();
            match m.roles.peer_writes.as_slice() {
                [] => format!("{}; nobody writes accounts of their own rank", ranks.join(", ")),
                peers => format!(
                    "{}; {} may write accounts of their own rank",
                    ranks.join(", "),
                    peers.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
                ),
            }
        },
        account_role_sql: format!("{role_sql} FOR UPDATE"),
        role_sql,
        other_top_sql: format!(
            "SELECT EXISTS (SELECT 1 FROM {} AS t WHERE t.{} = $1 AND t.id <> $2{active})",
            user.table,
            col(&a.role_field)
        ),
        token_header: a.token_header.clone(),
        cookies: a.cookies.as_ref().map(|c| CookiePlan {
            access: c.access.clone(),
            refresh: c.refresh.clone(),
            csrf: c.csrf.clone(),
            csrf_header: c.csrf_header.clone(),
            same_site: c.same_site.clone(),
            refresh_path: route(Action::Refresh).path,
        }),
        flows: a.verification.as_ref().map(|v| {
            let select = select_list(&visible_of(m, &a.user_object, &columns_of(user)), "t");
            let update = |set: String| {
                format!(
                    "UPDATE {} AS t SET record_version = t.record_version + 1, updated_at = now(), {set} \
                     WHERE t.id = $1 RETURNING {select}",
                    user.table
                )
            };
            FlowsPlan {
                require_verified: v.require_verified_login,
                second_factor_required: v.second_factor == "required",
                code_digits: v.code_digits,
                code_ttl: v.code_ttl_seconds,
                max_attempts: v.max_attempts,
                requests_per_account: v.requests_per_account,
                requests_per_address: v.requests_per_address,
                delivery_topic: v.delivery_topic.clone(),
                delivery_topic_const: "DELIVERY".into(),
                recipient_sql: format!(
                    "SELECT t.id, t.{} AS address, t.{} AS verified, {} AS locale FROM {} AS t WHERE t.{} = $1{active}",
                    col(&a.login_field),
                    col(&v.verified_field),
                    v.locale_field.as_ref().map_or("NULL::text".to_string(), |f| format!("t.{}", col(f))),
                    user.table,
                    col(&a.login_field)
                ),
                verify_sql: update(format!("{} = TRUE", col(&v.verified_field))),
                reset_sql: update(format!("{} = $2", col(&a.password_field))),
                verified_field: v.verified_field.clone(),
                account_struct: a.user_object.to_upper_camel_case(),
                secret_rule: field_of(user, &a.password_field)
                    .map(|fd| field(&a.password_field, fd))
                    .filter(|f| f.text_rule.is_some())
                    .map(|f| f.rule_const),
                verify_kind: format!("{}Verification", a.login_field),
                reset_kind: format!("{}Reset", a.password_field),
                recipient_by_id_sql: format!(
                    "SELECT t.{}, {} FROM {} AS t WHERE t.id = $1{active}",
                    col(&a.login_field),
                    v.locale_field.as_ref().map_or("NULL::text".to_string(), |f| format!("t.{}", col(f))),
                    user.table
                ),
                verify_start: route(Action::VerifyStart),
                verify_complete: route(Action::VerifyComplete),
                reset_start: route(Action::ResetStart),
                reset_complete: route(Action::ResetComplete),
                second_factor: routes.iter().find(|r| r.action == Action::SecondFactor).cloned(),
            }
        }),
        permissions: routes.iter().find(|r| r.action == Action::Permissions).cloned(),
        rules: routes
            .iter()
            .map(|r| RuleRow {
                name: r.name.clone(),
                method: r.method.clone(),
                path: r.path.clone(),
                object: r.object.clone().unwrap_or_default(),
                access: r.access.clone(),
            })
            .collect(),
    }
}

/// A SQL string literal.
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

fn sql_text(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// The 100 most common passwords (NCSC's list of breached passwords, SecLists).
const COMMON_PASSWORDS: &[&str] = &[
    "123456",
    "123456789",
    "qwerty",
    "password",
    "12345678",
    "111111",
    "123123",
    "1234567890",
    "1234567",
    "qwerty123",
    "000000",
    "1q2w3e",
    "aa12345678",
    "abc123",
    "password1",
    "1234",
    "qwertyuiop",
    "123321",
    "password123",
    "1q2w3e4r5t",
    "iloveyou",
    "654321",
    "666666",
    "987654321",
    "123",
    "123456a",
    "qwe123",
    "1q2w3e4r",
    "7777777",
    "1qaz2wsx",
    "123qwe",
    "zxcvbnm",
    "121212",
    "asdasd",
    "a123456",
    "555555",
    "dragon",
    "112233",
    "123123123",
    "monkey",
    "11111111",
    "qazwsx",
    "159753",
    "asdfghjkl",
    "222222",
    "1234qwer",
    "qwerty1",
    "123654",
    "123abc",
    "asdfgh",
    "777777",
    "aaaaaa",
    "myspace1",
    "88888888",
    "fuckyou",
    "123456789a",
    "999999",
    "888888",
    "football",
    "princess",
    "789456123",
    "147258369",
    "1111111",
    "sunshine",
    "michael",
    "computer",
    "qwer1234",
    "daniel",
    "789456",
    "11111",
    "abcd1234",
    "q1w2e3r4",
    "shadow",
    "159357",
    "123456q",
    "1111",
    "samsung",
    "killer",
    "asd123",
    "superman",
    "master",
    "12345",
    "azerty",
    "zxcvbn",
    "qazwsxedc",
    "131313",
    "ashley",
    "target123",
    "987654",
    "baseball",
    "qwertyui",
    "welcome",
    "passw0rd",
    "charlie",
    "letmein",
    "trustno1",
    "hello123",
    "whatever",
    "jordan23",
    "1qaz2wsx3edc",
];
