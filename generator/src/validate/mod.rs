//! Validate: every semantic rule of the model, all errors reported at once.

use crate::action::{Action, Family};
use crate::diag::{one_of, Diagnostics, ModelErrors};
use crate::load::Loaded;
use crate::model::{Auth, Cookies, DataObject, Field, Model, Route, Verification};
use heck::{ToKebabCase, ToSnakeCase};
use std::collections::{BTreeMap, BTreeSet};

pub const FIELD_TYPES: &[&str] = &[
    "ID", "String", "Text", "Boolean", "Integer", "Date", "Blob", "Object",
];
const SECOND_FACTOR_MODES: &[&str] = &["off", "optional", "required"];
const SAME_SITE: &[&str] = &["Strict", "Lax", "None"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
const FORMATS: &[&str] = &["email", "url"];
/// Upper bounds of `service.search`: a model cannot make search unbounded.
const SEARCH_MAX_WORDS: u32 = 64;
const SEARCH_MAX_WORD_LENGTH: u32 = 256;
const HASHES: &[&str] = &["argon2id"];
const VIEWS: &[&str] = &["full", "public", "owner"];

/// Fields every object has; the model may not declare them.
pub const SYSTEM_FIELDS: &[&str] = &[
    "id",
    "isActive",
    "recordVersion",
    "createdAt",
    "updatedAt",
    "_owner",
];

/// Module names the generated crate uses for itself.
const RESERVED_MODULES: &[&str] = &[
    "app",
    "auth",
    "config",
    "db",
    "elastic",
    "envelope",
    "error",
    "events",
    "extract",
    "files",
    "health",
    "lib",
    "main",
    "openapi",
    "routes",
    "search",
    "state",
    "topics",
    "verification",
    "validation",
    "views",
];

/// Rust keywords, which cannot be used as generated identifiers.
const RUST_KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true", "type", "unsafe",
    "use", "where", "while", "abstract", "become", "box", "do", "final", "macro", "override",
    "priv", "try", "typeof", "unsized", "virtual", "yield",
];

/// PostgreSQL reserved words that cannot name a table or column unquoted.
const SQL_RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "in",
    "initially",
    "intersect",
    "into",
    "lateral",
    "leading",
    "limit",
    "localtime",
    "localtimestamp",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "placing",
    "primary",
    "references",
    "returning",
    "select",
    "session_user",
    "some",
    "symmetric",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "when",
    "where",
    "window",
    "with",
];

pub fn validate(loaded: &Loaded) -> Result<(), ModelErrors> {
    let mut d = Diagnostics::new(&loaded.file, &loaded.spans);
    let m = &loaded.model;
    service(m, &mut d);
    topics(m, &mut d);
    roles(m, &mut d);
    decisions(m, &mut d);
    let objects: BTreeMap<&str, &DataObject> = m
        .data_objects
        .iter()
        .map(|(n, o)| (n.as_str(), o))
        .collect();
    let mut tables = BTreeMap::new();
    let mut modules = BTreeMap::new();
    for (name, object) in &m.data_objects {
        let path = format!("dataObjects.{name}");
        data_object(&objects, name, object, &path, &mut d);
        if let Some(other) = tables.insert(object.table.as_str(), name) {
            d.at(
                format!("{path}.table"),
                format!(
                    "table \"{}\" is already used by data object \"{other}\"",
                    object.table
                ),
            );
        }
        if let Some(other) = modules.insert(name.to_snake_case(), name) {
            d.at_key(
                &path,
                format!("name collides with data object \"{other}\" after case conversion"),
            );
        }
    }
    routes(m, &objects, &mut d);
    search_indexes(m, &objects, &mut d);
    pointers(m, &objects, &mut d);
    identity(m, &objects, &mut d);
    d.finish()
}

fn is_lower_camel(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric())
}

fn is_kebab(s: &str) -> bool {
    !s.is_empty()
        && s.to_kebab_case() == s
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_snake(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn service(m: &Model, d: &mut Diagnostics) {
    let s = &m.service;
    if !is_kebab(&s.name) {
        d.at("service.name", format!("\"{}\" is not a kebab-case name; expected lower-case words joined by '-', e.g. \"auth-service\"", s.name));
    }
    let parts: Vec<&str> = s.version.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.parse::<u64>().is_err()) {
        d.at(
            "service.version",
            format!(
                "\"{}\" is not a version; expected MAJOR.MINOR.PATCH, e.g. \"1.0.0\"",
                s.version
            ),
        );
    }
    if !s.api_base.starts_with('/') || s.api_base.ends_with('/') || s.api_base.contains('{') {
        d.at("service.apiBase", format!("\"{}\" is not a base path; expected a path that starts with '/' and does not end with one, e.g. \"/v1\"", s.api_base));
    }
    if s.body_limit_bytes < 1024 {
        d.at("service.bodyLimitBytes", "must be at least 1024 bytes");
    }
    let p = &s.paging;
    if p.default_page_row_count == 0 || p.default_page_row_count > p.max_page_row_count {
        d.at(
            "service.paging.defaultPageRowCount",
            format!(
                "must be between 1 and maxPageRowCount ({})",
                p.max_page_row_count
            ),
        );
    }
    let bounds = [
        ("maxWords", s.search.max_words, SEARCH_MAX_WORDS),
        (
            "maxWordLength",
            s.search.max_word_length,
            SEARCH_MAX_WORD_LENGTH,
        ),
    ];
    for (key, value, max) in bounds {
        if value == 0 || value > max {
            d.at(
                format!("service.search.{key}"),
                format!("{value} is out of range; expected 1 to {max}"),
            );
        }
    }
}

/// The placeholders each topic pattern must and may use.
fn topics(m: &Model, d: &mut Diagnostics) {
    let t = &m.topics;
    let checks = [
        ("dbEvent", &t.db_event, &["object", "change"][..]),
        ("indexEvent", &t.index_event, &["object", "change"][..]),
        ("routeEvent", &t.route_event, &["event"][..]),
    ];
    for (key, pattern, required) in checks {
        let path = format!("topics.{key}");
        let mut allowed = vec!["topicPrefix", "searchIndexPrefix"];
        allowed.extend_from_slice(required);
        let used = placeholders(pattern);
        for p in &used {
            if !allowed.contains(&p.as_str()) {
                d.at(
                    &path,
                    format!("unknown placeholder {{{p}}}; {}", one_of(&allowed)),
                );
            }
        }
        for r in required {
            if !used.iter().any(|u| u == r) {
                d.at(
                    &path,
                    format!("pattern must contain {{{r}}}, or its topics would collide"),
                );
            }
        }
    }
    for (key, value) in [
        ("topicPrefix", &t.topic_prefix),
        ("searchIndexPrefix", &t.search_index_prefix),
    ] {
        if value.is_empty()
            || !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            d.at(
                format!("topics.{key}"),
                "a topic name part may contain only letters, digits, '-', '_' and '.'",
            );
        }
    }
    if t.partitions == 0 {
        d.at("topics.partitions", "must be at least 1");
    }
    if t.replication_factor == 0 {
        d.at("topics.replicationFactor", "must be at least 1");
    }
}

pub fn placeholders(pattern: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push(rest[start + 1..start + len].to_string());
        rest = &rest[start + len + 1..];
    }
    out
}

fn roles(m: &Model, d: &mut Diagnostics) {
    let r = &m.roles;
    if r.values.is_empty() {
        d.at("roles.values", "at least one role is needed");
    }
    for (i, v) in r.values.iter().enumerate() {
        if !is_lower_camel(v) {
            d.at(
                format!("roles.values[{i}]"),
                format!("role \"{v}\" must be lowerCamelCase"),
            );
        }
    }
    known_roles(r, "roles.admin", &r.admin, d);
    if !r.values.contains(&r.default) {
        d.at(
            "roles.default",
            format!("unknown role \"{}\"; {}", r.default, one_of(&r.values)),
        );
    }
    for role in r.ranks.keys().filter(|k| !r.values.contains(k)) {
        d.at(
            format!("roles.ranks.{role}"),
            format!("unknown role \"{role}\"; {}", one_of(&r.values)),
        );
    }
    for role in r.values.iter().filter(|v| !r.ranks.contains_key(*v)) {
        d.at(
            "roles.ranks",
            format!("role \"{role}\" has no rank; give every role in roles.values a rank (a higher number outranks a lower one)"),
        );
    }
    known_roles(r, "roles.peerWrites", &r.peer_writes, d);
}

/// Each role listed at `path` must be one of `roles.values`.
fn known_roles(r: &crate::model::Roles, path: &str, listed: &[String], d: &mut Diagnostics) {
    for (i, role) in listed.iter().enumerate() {
        if !r.values.contains(role) {
            d.at(
                format!("{path}[{i}]"),
                format!("unknown role \"{role}\"; {}", one_of(&r.values)),
            );
        }
    }
}

fn decisions(m: &Model, d: &mut Diagnostics) {
    let mut seen = BTreeSet::new();
    for (i, dec) in m.decisions.iter().enumerate() {
        if !seen.insert(dec.id.as_str()) {
            d.at(
                format!("decisions[{i}].id"),
                format!("decision \"{}\" is listed twice", dec.id),
            );
        }
    }
}

fn data_object(
    objects: &BTreeMap<&str, &DataObject>,
    name: &str,
    o: &DataObject,
    path: &str,
    d: &mut Diagnostics,
) {
    if !is_lower_camel(name) {
        d.at_key(
            path,
            format!("data object name \"{name}\" must be lowerCamelCase, e.g. \"userGroup\""),
        );
    } else if RESERVED_MODULES.contains(&name.to_snake_case().as_str())
        || RUST_KEYWORDS.contains(&name)
    {
        d.at_key(
            path,
            format!(
                "\"{name}\" is reserved by the generated crate; {}",
                avoid(RESERVED_MODULES)
            ),
        );
    }
    if !is_snake(&o.table) {
        d.at(
            format!("{path}.table"),
            format!("\"{}\" is not a snake_case table name", o.table),
        );
    } else if crate::migrate::SERVICE_TABLES.contains(&o.table.as_str()) {
        d.at(
            format!("{path}.table"),
            format!(
                "\"{}\" is a table of the generated service itself; choose another name",
                o.table
            ),
        );
    } else if SQL_RESERVED.contains(&o.table.as_str()) {
        d.at(
            format!("{path}.table"),
            format!(
                "\"{}\" is a reserved word in PostgreSQL; choose another table name, e.g. \"{}s\"",
                o.table, o.table
            ),
        );
    }
    if o.fields.is_empty() {
        d.at(
            format!("{path}.fields"),
            "a data object needs at least one field",
        );
    }
    if let Some(view) = &o.view {
        if !VIEWS.contains(&view.as_str()) {
            d.at(
                format!("{path}.view"),
                format!("unknown view \"{view}\"; {}", one_of(VIEWS)),
            );
        } else if view != "full" && !o.fields.iter().any(|(_, f)| f.public) {
            d.at(
                format!("{path}.view"),
                format!("view {view} shows some callers only the fields marked public, and {name} has none; mark fields `public: true` or use view full"),
            );
        }
    }
    let mut columns: BTreeMap<String, String> = SYSTEM_FIELDS
        .iter()
        .map(|f| (f.to_snake_case(), format!("system field {f}")))
        .collect();
    for (fname, f) in &o.fields {
        let fpath = format!("{path}.fields.{fname}");
        if SYSTEM_FIELDS.contains(&fname.as_str()) {
            d.at_key(
                &fpath,
                format!(
                    "\"{fname}\" is a system field that every object has; {}",
                    avoid(SYSTEM_FIELDS)
                ),
            );
            continue;
        }
        if !is_lower_camel(fname) {
            d.at_key(
                &fpath,
                format!("field name \"{fname}\" must be lowerCamelCase, e.g. \"groupName\""),
            );
            continue;
        }
        let snake = fname.to_snake_case();
        if RUST_KEYWORDS.contains(&snake.as_str()) || SQL_RESERVED.contains(&snake.as_str()) {
            d.at_key(
                &fpath,
                format!("\"{fname}\" is a reserved word in Rust or SQL; rename the field"),
            );
        }
        if let Some(other) = columns.insert(snake.clone(), format!("field {fname}")) {
            d.at_key(
                &fpath,
                format!("\"{fname}\" collides with {other} as column \"{snake}\""),
            );
        }
        field(objects, f, &fpath, d);
        computed(o, f, &fpath, d);
        file_keys(o, f, &fpath, d);
    }
    for (i, group) in o.unique_together.iter().enumerate() {
        for (j, f) in group.iter().enumerate() {
            if !o.fields.iter().any(|(n, _)| n == f) {
                d.at(
                    format!("{path}.uniqueTogether[{i}][{j}]"),
                    format!("unknown field \"{f}\"; {}", one_of(&field_names(o))),
                );
            }
        }
    }
}

fn computed(o: &DataObject, f: &Field, path: &str, d: &mut Diagnostics) {
    use crate::model::Computed;
    let path = format!("{path}.computed");
    match &f.computed {
        None => {}
        Some(Computed::Keyword(k)) if k == "randomKey" && f.ty != "String" => {
            d.at(
                &path,
                format!("randomKey fills String fields, not {}", f.ty),
            );
        }
        Some(Computed::Keyword(k)) if k == "randomKey" => {}
        Some(Computed::Keyword(k)) => {
            d.at(&path, format!("unknown computation \"{k}\"; expected \"randomKey\" or {{ sizeOf: <Blob field> }}"));
        }
        Some(Computed::SizeOf { size_of }) => {
            if f.ty != "Integer" {
                d.at(&path, format!("sizeOf fills Integer fields, not {}", f.ty));
            }
            if !o.fields.iter().any(|(n, b)| n == size_of && b.ty == "Blob") {
                d.at(
                    &path,
                    format!("\"{size_of}\" is not a Blob field of this object"),
                );
            }
        }
    }
    if f.computed.is_some() && f.default.is_some() {
        d.at(&path, "a computed field cannot also have a default");
    }
}

/// maxBytes, typeField and nameField: a Blob that holds an uploaded file.
fn file_keys(o: &DataObject, f: &Field, path: &str, d: &mut Diagnostics) {
    for (key, set) in [
        ("maxBytes", f.max_bytes.is_some()),
        ("typeField", f.type_field.is_some()),
        ("nameField", f.name_field.is_some()),
    ] {
        if set && f.ty != "Blob" {
            d.at(
                format!("{path}.{key}"),
                format!("{key} applies to Blob fields only, not {}", f.ty),
            );
            return;
        }
    }
    if f.max_bytes == Some(0) {
        d.at(format!("{path}.maxBytes"), "maxBytes must be at least 1");
    }
    if f.type_field.is_some() != f.max_bytes.is_some() {
        d.at_key(
            path,
            "a file needs both maxBytes (its largest size) and typeField (the field of its content type)",
        );
    }
    if let Some(t) = &f.type_field {
        match o.fields.iter().find(|(n, _)| n == t) {
            Some((_, tf)) if tf.ty == "String" && !tf.allowed_values.is_empty() => {}
            Some(_) => d.at(
                format!("{path}.typeField"),
                format!(
                    "\"{t}\" must be a String field with allowedValues: the content types accepted"
                ),
            ),
            None => d.at(
                format!("{path}.typeField"),
                format!("unknown field \"{t}\"; {}", one_of(&field_names(o))),
            ),
        }
    }
    if let Some(n) = &f.name_field {
        if !o
            .fields
            .iter()
            .any(|(fname, nf)| fname == n && nf.ty == "String")
        {
            d.at(
                format!("{path}.nameField"),
                format!("\"{n}\" is not a String field; {}", one_of(&field_names(o))),
            );
        }
    }
}

/// `word` with its indefinite article: "a get", "an update", "an Object".
fn an(word: &str) -> String {
    let vowel = word
        .chars()
        .next()
        .is_some_and(|c| "aeiouAEIOU".contains(c));
    format!("{} {word}", if vowel { "an" } else { "a" })
}

fn avoid(names: &[&str]) -> String {
    format!("avoid {}", names.join(", "))
}

pub fn field_names(o: &DataObject) -> Vec<&str> {
    o.fields.iter().map(|(n, _)| n.as_str()).collect()
}

fn field(objects: &BTreeMap<&str, &DataObject>, f: &Field, path: &str, d: &mut Diagnostics) {
    let ty = f.ty.as_str();
    if !FIELD_TYPES.contains(&ty) {
        d.at(
            format!("{path}.type"),
            format!("unknown type \"{ty}\"; {}", one_of(FIELD_TYPES)),
        );
        return;
    }
    let textual = matches!(ty, "String" | "Text");
    if let Some(bits) = f.bits {
        if ty != "Integer" {
            d.at(
                format!("{path}.bits"),
                format!("bits applies to Integer fields only, not {ty}"),
            );
        } else if bits != 32 && bits != 64 {
            d.at(
                format!("{path}.bits"),
                format!("unsupported width {bits}; expected 32 or 64"),
            );
        }
    }
    if (f.min_length.is_some() || f.max_length.is_some()) && !textual {
        let key = if f.min_length.is_some() {
            "minLength"
        } else {
            "maxLength"
        };
        d.at(
            format!("{path}.{key}"),
            format!("{key} applies to String and Text fields only, not {ty}"),
        );
    }
    if let (Some(min), Some(max)) = (f.min_length, f.max_length) {
        if min > max {
            d.at(
                format!("{path}.minLength"),
                format!("minLength {min} is greater than maxLength {max}"),
            );
        }
    }
    if f.max_length == Some(0) {
        d.at(format!("{path}.maxLength"), "maxLength must be at least 1");
    }
    if let Some(format) = &f.format {
        if !FORMATS.contains(&format.as_str()) {
            d.at(
                format!("{path}.format"),
                format!("unknown format \"{format}\"; {}", one_of(FORMATS)),
            );
        } else if ty != "String" {
            d.at(
                format!("{path}.format"),
                format!("format applies to String fields only, not {ty}"),
            );
        }
    }
    if !f.allowed_values.is_empty() && ty != "String" {
        d.at(
            format!("{path}.allowedValues"),
            format!("allowedValues applies to String fields only, not {ty}"),
        );
    }
    if let Some(hash) = &f.hash {
        if !HASHES.contains(&hash.as_str()) {
            d.at(
                format!("{path}.hash"),
                format!("unknown hash \"{hash}\"; {}", one_of(HASHES)),
            );
        } else if ty != "String" || !f.secret {
            d.at(
                format!("{path}.hash"),
                "hash applies to secret String fields only; add `secret: true`",
            );
        }
    }
    if f.secret {
        for (flag, on) in [
            ("filterable", f.filterable),
            ("searchable", f.searchable),
            ("sortable", f.sortable),
            ("public", f.public),
            ("unique", f.unique),
        ] {
            if on {
                d.at(
                    format!("{path}.{flag}"),
                    format!("a secret field cannot be {flag}: it never leaves the service"),
                );
            }
        }
    }
    if matches!(ty, "Blob" | "Object") {
        for (flag, on) in [
            ("filterable", f.filterable),
            ("sortable", f.sortable),
            ("unique", f.unique),
        ] {
            if on {
                d.at(
                    format!("{path}.{flag}"),
                    format!("{} field cannot be {flag}", an(ty)),
                );
            }
        }
    }
    if f.searchable && !textual {
        d.at(
            format!("{path}.searchable"),
            format!("only String and Text fields are searchable, not {ty}"),
        );
    }
    if let Some(target) = &f.references {
        if ty != "ID" {
            d.at(
                format!("{path}.references"),
                format!("a reference must be of type ID, not {ty}"),
            );
        }
        if !objects.contains_key(target.as_str()) {
            let names: Vec<&str> = objects.keys().copied().collect();
            d.at(
                format!("{path}.references"),
                format!("unknown data object \"{target}\"; {}", one_of(&names)),
            );
        }
    }
    if let Some(default) = &f.default {
        default_value(f, default, &format!("{path}.default"), d);
    }
    if !f.allowed_values.is_empty() {
        let mut seen = BTreeSet::new();
        for (i, v) in f.allowed_values.iter().enumerate() {
            if !seen.insert(v) {
                d.at(
                    format!("{path}.allowedValues[{i}]"),
                    format!("\"{v}\" is listed twice"),
                );
            }
        }
    }
}

fn default_value(f: &Field, v: &serde_yaml::Value, path: &str, d: &mut Diagnostics) {
    use serde_yaml::Value;
    let ok = match (f.ty.as_str(), v) {
        ("Boolean", Value::Bool(_)) => true,
        ("Integer", Value::Number(n)) => n.as_i64().is_some(),
        ("String" | "Text", Value::String(s)) => {
            if !f.allowed_values.is_empty() && !f.allowed_values.contains(s) {
                d.at(
                    path,
                    format!(
                        "default \"{s}\" is not an allowed value; {}",
                        one_of(&f.allowed_values)
                    ),
                );
            }
            if let Some(max) = f.max_length {
                if s.chars().count() > max as usize {
                    d.at(path, format!("default is longer than maxLength {max}"));
                }
            }
            true
        }
        _ => false,
    };
    if !ok {
        d.at(
            path,
            format!(
                "a default for {} field must be a {}",
                an(&f.ty),
                match f.ty.as_str() {
                    "Boolean" => "boolean (true or false)",
                    "Integer" => "whole number",
                    "String" | "Text" => "string",
                    _ => "value of a type that has defaults (Boolean, Integer, String, Text)",
                }
            ),
        );
    }
}

fn routes(m: &Model, objects: &BTreeMap<&str, &DataObject>, d: &mut Diagnostics) {
    let mut endpoints: BTreeMap<(String, String), &str> = BTreeMap::new();
    let mut events: BTreeMap<&str, &str> = BTreeMap::new();
    let mut handlers: BTreeMap<String, &str> = BTreeMap::new();
    let mut singletons: BTreeMap<Action, &str> = BTreeMap::new();
    for (name, r) in &m.routes {
        let path = format!("routes.{name}");
        if !is_lower_camel(name) {
            d.at_key(
                &path,
                format!("route name \"{name}\" must be lowerCamelCase, e.g. \"getUser\""),
            );
        } else if let Some(other) = handlers.insert(name.to_snake_case(), name) {
            d.at_key(
                &path,
                format!("route name collides with \"{other}\" after case conversion"),
            );
        }
        route(m, objects, r, &path, d);
        let norm = normalize_path(&r.path);
        if let Some(other) = endpoints.insert((r.method.clone(), norm), name) {
            d.at(
                format!("{path}.path"),
                format!(
                    "{} {} is already served by route \"{other}\"",
                    r.method, r.path
                ),
            );
        }
        if let Some(event) = &r.event {
            if let Some(other) = events.insert(event, name) {
                d.at(format!("{path}.event"), format!("event \"{event}\" is already published by route \"{other}\"; each route needs its own topic"));
            }
        }
        if r.action.singleton() {
            if let Some(other) = singletons.insert(r.action, name) {
                d.at(
                    format!("{path}.action"),
                    format!(
                        "action \"{}\" is already taken by route \"{other}\"",
                        r.action
                    ),
                );
            }
        }
    }
    // Route topics must not shadow database or index topics.
    let derived = crate::plan::object_topics(m);
    for (name, r) in &m.routes {
        if let Some(event) = &r.event {
            let topic = crate::plan::route_topic(m, event);
            if derived.contains(&topic) {
                d.at(
                    format!("routes.{name}.event"),
                    format!("topic \"{topic}\" is also a database or index event topic"),
                );
            }
        }
    }
}

/// `/users/{id}` and `/users/{userId}` are the same endpoint.
fn normalize_path(p: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in p.chars() {
        match c {
            '{' => {
                depth += 1;
                out.push_str("{}");
            }
            '}' => depth -= 1,
            _ if depth > 0 => {}
            _ => out.push(c),
        }
    }
    out
}

fn route(
    m: &Model,
    objects: &BTreeMap<&str, &DataObject>,
    r: &Route,
    path: &str,
    d: &mut Diagnostics,
) {
    let action = r.action;
    if r.confirm_current
        && (action != Action::Update
            || r.object.as_deref() != Some(m.auth.user_object.as_str())
            || !r.fields.contains(&m.auth.password_field))
    {
        d.at(
            format!("{path}.confirmCurrent"),
            format!(
                "only an update route of {} that changes {} can ask for its current value",
                m.auth.user_object, m.auth.password_field
            ),
        );
    }
    if r.auth.is_public()
        && r.object.as_deref() == Some(m.auth.user_object.as_str())
        && r.fields.contains(&m.auth.role_field)
    {
        // An anonymous caller has no rank to grant a role from.
        d.at(
            format!("{path}.fields"),
            format!(
                "a public route cannot set {}.{}: new accounts get roles.default; give the route a rule or drop the field",
                m.auth.user_object, m.auth.role_field
            ),
        );
    }
    let crud = action.on_object();
    if !METHODS.contains(&r.method.as_str()) {
        d.at(
            format!("{path}.method"),
            format!("unknown method \"{}\"; {}", r.method, one_of(METHODS)),
        );
    } else {
        let expected = action.methods();
        if !expected.contains(&r.method.as_str()) {
            d.at(
                format!("{path}.method"),
                format!(
                    "{} route is served with {}, not {}",
                    an(action.name()),
                    expected.join(" or "),
                    r.method
                ),
            );
        }
    }
    if !r.path.starts_with('/')
        || r.path.contains("//")
        || (r.path.len() > 1 && r.path.ends_with('/'))
    {
        d.at(
            format!("{path}.path"),
            format!(
                "\"{}\" is not a route path; expected e.g. \"/users/{{id}}\"",
                r.path
            ),
        );
    }
    let params = placeholders(&r.path);
    let needs_id = action.addresses_row();
    let key = r.by.clone().unwrap_or_else(|| "id".to_string());
    if action == Action::Download {
        if params != [key.as_str()] {
            d.at(
                format!("{path}.path"),
                format!("a download route addresses one file: its path must have exactly one parameter, {{{key}}}"),
            );
        }
    } else if needs_id && params != ["id"] {
        d.at(
            format!("{path}.path"),
            format!(
                "{} route addresses one row: its path must have exactly one parameter, {{id}}",
                an(action.name())
            ),
        );
    } else if !needs_id && !params.is_empty() {
        d.at(
            format!("{path}.path"),
            format!("{} route takes no path parameters", an(action.name())),
        );
    }
    if let Auth::Rule(rule) = &r.auth {
        if rule.roles.is_empty() && !rule.owner {
            d.at(
                format!("{path}.auth"),
                "this rule lets nobody in; name roles, set owner: true, or use `login`",
            );
        }
        known_roles(&m.roles, &format!("{path}.auth.roles"), &rule.roles, d);
        if rule.owner && !action.owner_applies() {
            d.at(
                format!("{path}.auth.owner"),
                format!(
                    "owner applies to get, update, delete, list and download routes, not {action}"
                ),
            );
        }
    }
    if !crud {
        if r.object.is_some() {
            d.at(
                format!("{path}.object"),
                format!(
                    "{} route works on sessions and names no data object",
                    an(action.name())
                ),
            );
        }
        if action == Action::Subscribe && r.auth.is_public() {
            d.at(
                format!("{path}.auth"),
                "the event stream shows each caller what it may see, so it needs a signed-in caller: use `login`",
            );
        }
        for (key, set) in [
            ("fields", !r.fields.is_empty()),
            ("include", !r.include.is_empty()),
            ("search", r.search),
            ("view", r.view.is_some()),
            ("by", r.by.is_some()),
            ("cacheControl", r.cache_control.is_some()),
            ("callerFields", !r.caller_fields.is_empty()),
        ] {
            if set {
                d.at(
                    format!("{path}.{key}"),
                    format!("{key} does not apply to {} route", an(action.name())),
                );
            }
        }
        return;
    }
    match &r.event {
        // A download answers bytes, which no event carries; an extend
        // publishes the index's -extended event instead of a route event.
        None if !action.publishes_route_event() => {}
        Some(_) if !action.publishes_route_event() => d.at(
            format!("{path}.event"),
            format!(
                "{} route publishes no route event; remove `event`",
                an(action.name())
            ),
        ),
        None => d.at_key(
            path,
            "a data route needs an `event`: the route event it publishes",
        ),
        Some(e) if !is_kebab(e) => d.at(
            format!("{path}.event"),
            format!("event \"{e}\" must be kebab-case, e.g. \"user-created\""),
        ),
        _ => {}
    }
    let Some(object_name) = &r.object else {
        d.at_key(
            path,
            format!(
                "{} route needs an `object`: the data object it works on",
                an(action.name())
            ),
        );
        return;
    };
    let Some(object) = objects.get(object_name.as_str()) else {
        let names: Vec<&str> = objects.keys().copied().collect();
        d.at(
            format!("{path}.object"),
            format!("unknown data object \"{object_name}\"; {}", one_of(&names)),
        );
        return;
    };
    let names = field_names(object);
    if !action.writes_fields() && !r.fields.is_empty() {
        d.at(
            format!("{path}.fields"),
            format!(
                "fields lists what a create or update route accepts; {} route accepts no body",
                an(action.name())
            ),
        );
    }
    if action == Action::Update && r.fields.is_empty() {
        d.at_key(
            path,
            "an update route needs `fields`: the fields it may change",
        );
    }
    let mut seen = BTreeSet::new();
    for (i, f) in r.fields.iter().enumerate() {
        if !names.contains(&f.as_str()) {
            d.at(
                format!("{path}.fields[{i}]"),
                format!("unknown field \"{f}\" of {object_name}; {}", one_of(&names)),
            );
        } else if object
            .fields
            .iter()
            .any(|(n, fd)| n == f && fd.computed.is_some())
        {
            d.at(
                format!("{path}.fields[{i}]"),
                format!("\"{f}\" is computed by the service and cannot be accepted from a client"),
            );
        } else if !seen.insert(f) {
            d.at(
                format!("{path}.fields[{i}]"),
                format!("\"{f}\" is listed twice"),
            );
        }
    }
    if action == Action::Create {
        for (fname, f) in &object.fields {
            if f.required
                && f.default.is_none()
                && f.computed.is_none()
                && !r.fields.contains(fname)
            {
                d.at(format!("{path}.fields"), format!("required field \"{fname}\" has no default and is not accepted, so no row could be created; add it to fields"));
            }
        }
    }
    download(r, object_name, object, path, d);
    if action == Action::Extend && !m.search_indexes.iter().any(|(n, _)| n == object_name) {
        d.at(
            format!("{path}.object"),
            format!("{object_name} is not indexed, so it has no documents to extend; add it under searchIndexes"),
        );
    }
    caller_fields(m, r, object_name, object, path, d);
    if r.search && action != Action::List {
        d.at(
            format!("{path}.search"),
            format!("search applies to list routes, not {action}"),
        );
    }
    if r.search && !m.search_indexes.iter().any(|(n, _)| n == object_name) {
        d.at(
            format!("{path}.search"),
            format!("{object_name} is not indexed; add it under searchIndexes"),
        );
    }
    if r.search && !object.fields.iter().any(|(_, f)| f.searchable) {
        d.at(
            format!("{path}.search"),
            format!("{object_name} has no searchable field to search"),
        );
    }
    view(m, r, object_name, object, path, d);
    if !r.include.is_empty() && action != Action::List {
        d.at(
            format!("{path}.include"),
            format!("include applies to list routes, not {action}"),
        );
    }
    for (iname, inc) in &r.include {
        let ipath = format!("{path}.include.{iname}");
        let via = object.fields.iter().find(|(n, _)| *n == inc.via);
        let Some(target) = via.and_then(|(_, f)| f.references.as_deref()) else {
            d.at(
                format!("{ipath}.via"),
                format!("\"{}\" is not a reference field of {object_name}", inc.via),
            );
            continue;
        };
        if names.contains(&iname.as_str()) {
            d.at_key(
                &ipath,
                format!("\"{iname}\" is already a field of {object_name}"),
            );
        }
        if let Some(t) = objects.get(target) {
            let tnames = field_names(t);
            for (i, f) in inc.fields.iter().enumerate() {
                match t.fields.iter().find(|(n, _)| n == f) {
                    None => d.at(
                        format!("{ipath}.fields[{i}]"),
                        format!("unknown field \"{f}\" of {target}; {}", one_of(&tnames)),
                    ),
                    Some((_, tf)) if tf.secret || tf.ty == "Blob" => d.at(
                        format!("{ipath}.fields[{i}]"),
                        format!("\"{f}\" is a secret or blob field and is never sent"),
                    ),
                    _ => {}
                }
            }
            // Joined rows follow their own object's view.
            let view = m.include_view(r, target);
            let public = |f: &String| t.fields.iter().any(|(n, tf)| n == f && tf.public);
            if m.view_narrows(&r.auth, view) && !inc.fields.iter().any(public) {
                d.at(
                    format!("{ipath}.fields"),
                    format!("{target} rows follow view {view}, which shows some callers only public fields, and none of these is public; include one marked `public: true`"),
                );
            }
        }
    }
}

/// Keys of a session in its events; device fields may not reuse them.
pub const SESSION_FIELDS: &[&str] = &[
    "sessionId",
    "userId",
    "accessToken",
    "refreshToken",
    "createdAt",
    "expiredAt",
];

fn identity(m: &Model, objects: &BTreeMap<&str, &DataObject>, d: &mut Diagnostics) {
    let a = &m.auth;
    let Some(user) = objects.get(a.user_object.as_str()) else {
        let names: Vec<&str> = objects.keys().copied().collect();
        d.at(
            "auth.userObject",
            format!(
                "unknown data object \"{}\"; {}",
                a.user_object,
                one_of(&names)
            ),
        );
        return;
    };
    let field = |name: &str| -> Option<&Field> {
        user.fields.iter().find(|(n, _)| n == name).map(|(_, f)| f)
    };
    match field(&a.login_field) {
        None => d.at(
            "auth.loginField",
            format!(
                "\"{}\" is not a field of {}; {}",
                a.login_field,
                a.user_object,
                one_of(&field_names(user))
            ),
        ),
        Some(f) if f.ty != "String" || !f.unique || !f.required => d.at(
            "auth.loginField",
            "the login field must be a required, unique String",
        ),
        _ => {}
    }
    match field(&a.password_field) {
        None => d.at(
            "auth.passwordField",
            format!(
                "\"{}\" is not a field of {}; {}",
                a.password_field,
                a.user_object,
                one_of(&field_names(user))
            ),
        ),
        Some(f) if !f.secret || f.hash.is_none() || !f.required => d.at(
            "auth.passwordField",
            "the password field must be required, secret and hashed (hash: argon2id)",
        ),
        _ => {}
    }
    match field(&a.role_field) {
        None => d.at(
            "auth.roleField",
            format!(
                "\"{}\" is not a field of {}; {}",
                a.role_field,
                a.user_object,
                one_of(&field_names(user))
            ),
        ),
        Some(f) if f.ty != "String" || !f.required || f.allowed_values.is_empty() => d.at(
            "auth.roleField",
            "the role field must be a required String with allowedValues",
        ),
        Some(f) => {
            for v in &f.allowed_values {
                if !m.roles.values.contains(v) {
                    d.at(
                        "auth.roleField",
                        format!(
                            "allowed value \"{v}\" is not a role; {}",
                            one_of(&m.roles.values)
                        ),
                    );
                }
            }
        }
    }
    if a.access_token_ttl_seconds == 0 || a.access_token_ttl_seconds >= a.refresh_token_ttl_seconds
    {
        d.at(
            "auth.accessTokenTtlSeconds",
            "must be at least 1 and shorter than refreshTokenTtlSeconds",
        );
    }
    for (key, v) in [
        ("windowSeconds", a.throttle.window_seconds),
        ("loginPerAccount", a.throttle.login_per_account),
        ("loginPerAddress", a.throttle.login_per_address),
        (
            "publicWritesPerAddress",
            a.throttle.public_writes_per_address,
        ),
    ] {
        if v == 0 {
            d.at(format!("auth.throttle.{key}"), "must be at least 1");
        }
    }
    service_topic(m, "auth.sessionTopic", &a.session_topic, d);
    let mut seen = BTreeSet::new();
    for (i, f) in a.device_fields.iter().enumerate() {
        if !is_lower_camel(f) {
            d.at(
                format!("auth.deviceFields[{i}]"),
                format!("\"{f}\" must be lowerCamelCase"),
            );
        } else if SESSION_FIELDS.contains(&f.as_str()) {
            d.at(
                format!("auth.deviceFields[{i}]"),
                format!(
                    "\"{f}\" is already a session field; {}",
                    avoid(SESSION_FIELDS)
                ),
            );
        } else if !seen.insert(f) {
            d.at(
                format!("auth.deviceFields[{i}]"),
                format!("\"{f}\" is listed twice"),
            );
        }
    }
    if !m.roles.values.contains(&a.super_admin_role) {
        d.at(
            "auth.superAdminRole",
            format!(
                "unknown role \"{}\"; {}",
                a.super_admin_role,
                one_of(&m.roles.values)
            ),
        );
    } else if let Some(top) = m.roles.ranks.get(&a.super_admin_role) {
        // The last account of the top role is kept: it must be one role.
        let rivals: Vec<&String> = m
            .roles
            .ranks
            .iter()
            .filter(|(r, rank)| *r != &a.super_admin_role && *rank >= top)
            .map(|(r, _)| r)
            .collect();
        if !rivals.is_empty() {
            d.at(
                "auth.superAdminRole",
                format!(
                    "\"{}\" must outrank every other role in roles.ranks, but \"{}\" ranks as high",
                    a.super_admin_role, rivals[0]
                ),
            );
        }
    }
    for name in a.bootstrap_values.keys() {
        match field(name) {
            Some(f) if matches!(f.ty.as_str(), "String" | "Text") && !f.secret => {}
            _ => d.at(
                format!("auth.bootstrapValues.{name}"),
                format!("\"{name}\" is not a text field of {}", a.user_object),
            ),
        }
    }
    for (name, f) in &user.fields {
        let filled = [&a.login_field, &a.password_field, &a.role_field].contains(&name)
            || a.bootstrap_values.contains_key(name);
        if f.required && f.default.is_none() && f.computed.is_none() && !filled {
            d.at(
                "auth.bootstrapValues",
                format!(
                    "required field \"{name}\" of {} needs a value for the bootstrap super-admin",
                    a.user_object
                ),
            );
        }
    }
    for action in Action::ALL
        .into_iter()
        .filter(|a| a.family() == Family::Session)
    {
        if !m.routes.iter().any(|(_, r)| r.action == action) {
            d.at_key(
                "routes",
                format!("no route serves the {action} action; the auth section needs one"),
            );
        }
    }
    if let Some(t) = &a.token_header {
        let valid = !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid || t == "authorization" || t == "cookie" {
            d.at(
                "auth.tokenHeader",
                format!("\"{t}\" is not a usable header name; expected lower-case letters, digits and '-', e.g. \"my-service-access-token\""),
            );
        }
    }
    if let Some(c) = &a.cookies {
        cookies(c, d);
    }
    match &a.verification {
        Some(v) => verification(m, v, &field, d),
        None => {
            for (name, r) in &m.routes {
                if r.action.family() == Family::Flow {
                    d.at(
                        format!("routes.{name}.action"),
                        format!("action \"{}\" needs an auth.verification section", r.action),
                    );
                }
            }
        }
    }
}

/// A topic the service publishes beside the model's derived ones.
fn service_topic(m: &Model, path: &str, topic: &str, d: &mut Diagnostics) {
    if topic.is_empty()
        || !topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        d.at(
            path,
            "a topic name may contain only letters, digits, '-', '_' and '.'",
        );
    } else if crate::plan::object_topics(m).contains(&topic.to_string())
        || m.routes.iter().any(|(_, r)| {
            r.event
                .as_ref()
                .is_some_and(|e| crate::plan::route_topic(m, e) == topic)
        })
    {
        d.at(
            path,
            format!("topic \"{topic}\" is already used by another event"),
        );
    }
}

fn cookies(c: &Cookies, d: &mut Diagnostics) {
    let names = [
        ("access", &c.access),
        ("refresh", &c.refresh),
        ("csrf", &c.csrf),
        ("csrfHeader", &c.csrf_header),
    ];
    let mut seen = BTreeSet::new();
    for (key, name) in names {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_'));
        if !valid {
            d.at(
                format!("auth.cookies.{key}"),
                format!("\"{name}\" is not a usable name; expected letters, digits, '-' and '_'"),
            );
        } else if key != "csrfHeader" && !seen.insert(name.as_str()) {
            d.at(
                format!("auth.cookies.{key}"),
                format!("cookie \"{name}\" is named twice"),
            );
        }
    }
    if !SAME_SITE.contains(&c.same_site.as_str()) {
        d.at(
            "auth.cookies.sameSite",
            format!(
                "unknown SameSite \"{}\"; {}",
                c.same_site,
                one_of(SAME_SITE)
            ),
        );
    }
}

fn verification<'a>(
    m: &Model,
    v: &Verification,
    field: &dyn Fn(&str) -> Option<&'a Field>,
    d: &mut Diagnostics,
) {
    let user = &m.auth.user_object;
    let boolean = |key: &str, name: &str, d: &mut Diagnostics| match field(name) {
        Some(f) if f.ty == "Boolean" && !f.required && f.default.is_some() => {}
        _ => d.at(
            format!("auth.verification.{key}"),
            format!("\"{name}\" must be an optional Boolean field of {user} with a default"),
        ),
    };
    boolean("verifiedField", &v.verified_field, d);
    if !SECOND_FACTOR_MODES.contains(&v.second_factor.as_str()) {
        d.at(
            "auth.verification.secondFactor",
            format!(
                "unknown mode \"{}\"; {}",
                v.second_factor,
                one_of(SECOND_FACTOR_MODES)
            ),
        );
    }
    match (&v.second_factor_field, v.second_factor.as_str()) {
        (Some(f), _) => boolean("secondFactorField", f, d),
        (None, "optional") => d.at(
            "auth.verification.secondFactor",
            "an optional second factor needs secondFactorField, the Boolean that switches it on",
        ),
        _ => {}
    }
    if let Some(name) = &v.locale_field {
        if field(name).is_none_or(|f| f.ty != "String") {
            d.at(
                "auth.verification.localeField",
                format!("\"{name}\" is not a String field of {user}"),
            );
        }
    }
    if !(4..=10).contains(&v.code_digits) {
        d.at("auth.verification.codeDigits", "must be between 4 and 10");
    }
    for (key, n) in [
        ("codeTtlSeconds", v.code_ttl_seconds),
        ("maxAttempts", v.max_attempts),
        ("requestsPerAccount", v.requests_per_account),
        ("requestsPerAddress", v.requests_per_address),
    ] {
        if n == 0 {
            d.at(format!("auth.verification.{key}"), "must be at least 1");
        }
    }
    service_topic(m, "auth.verification.deliveryTopic", &v.delivery_topic, d);
    if v.delivery_topic == m.auth.session_topic {
        d.at(
            "auth.verification.deliveryTopic",
            "must differ from auth.sessionTopic",
        );
    }
    for action in Action::ALL
        .into_iter()
        .filter(|a| a.family() == Family::Flow)
    {
        if action == Action::SecondFactor && v.second_factor == "off" {
            continue;
        }
        if !m.routes.iter().any(|(_, r)| r.action == action) {
            d.at_key(
                "routes",
                format!("no route serves the {action} action; auth.verification needs one"),
            );
        }
    }
}

/// A reading route's view: a known one, on a reading route, and one whose
/// narrowed answers still show something and search only what they show.
fn view(
    m: &Model,
    r: &Route,
    object_name: &str,
    object: &DataObject,
    path: &str,
    d: &mut Diagnostics,
) {
    let action = r.action;
    if let Some(view) = &r.view {
        if !VIEWS.contains(&view.as_str()) {
            d.at(
                format!("{path}.view"),
                format!("unknown view \"{view}\"; {}", one_of(VIEWS)),
            );
            return;
        }
        if !action.reads_rows() {
            d.at(
                format!("{path}.view"),
                format!("view applies to get and list routes, not {action}"),
            );
            return;
        }
        if view == "owner" && r.auth.is_public() {
            d.at(
                format!("{path}.view"),
                "a public route does not know its caller, so it cannot tell the owner; use view public or full",
            );
            return;
        }
    }
    if !m.narrows(r) {
        return;
    }
    let view = m.view_of(r);
    // Where the view comes from, for the messages.
    let object_view = m.object_view(object_name);
    let source = match (&r.view, &object.view) {
        (Some(_), _) => None,
        (None, Some(_)) => Some(format!("the view of {object_name}")),
        (None, None) => Some("the default of auth.userObject".to_string()),
    };
    let whose = match source {
        None => format!("view {view}"),
        Some(s) if view != object_view => {
            format!("view {view} ({s} is {object_view}, {view} on a public route)")
        }
        Some(s) => format!("view {view} ({s})"),
    };
    let at = if r.view.is_some() {
        format!("{path}.view")
    } else {
        path.to_string()
    };
    let shows = if view == "public" {
        "shows only the fields marked public"
    } else {
        "shows callers without an admin role only the fields marked public of rows they do not own"
    };
    let mut at_view = |message: String| {
        if r.view.is_some() {
            d.at(at.clone(), message);
        } else {
            d.at_key(at.clone(), message);
        }
    };
    if !object.fields.iter().any(|(_, f)| f.public) {
        at_view(format!("{whose} {shows}, and {object_name} has none; mark fields `public: true` or use view full"));
        return;
    }
    if !r.search {
        return;
    }
    let searchable: Vec<(&String, &Field)> = object
        .fields
        .iter()
        .filter(|(_, f)| f.searchable)
        .map(|(n, f)| (n, f))
        .collect();
    if !searchable.iter().any(|(_, f)| f.public) {
        at_view(format!("{whose} {shows}, so the keyword matches only public searchable fields, and no searchable field of {object_name} is; mark one `public: true` or use view full"));
    }
    // Searchable fields after the second share one weight in the search
    // vector, which is what restricts matching to the public ones.
    let shared = searchable.get(2..).unwrap_or_default();
    if let Some((first, f)) = shared.first() {
        for (other, g) in &shared[1..] {
            if g.public != f.public {
                d.at(
                    format!("dataObjects.{object_name}.fields.{other}.searchable"),
                    format!("searchable fields after the second share one search weight, so under {whose} of {} they must all be public or all not; {first} is{} public, {other} is{} public", route_name(path), if f.public { "" } else { " not" }, if g.public { "" } else { " not" }),
                );
            }
        }
    }
}

/// `routes.searchUsers` -> `searchUsers`.
fn route_name(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// The keys of download routes: an object with a file, a `by` field that is an
/// unguessable key, and a Cache-Control value.
fn download(r: &Route, object_name: &str, object: &DataObject, path: &str, d: &mut Diagnostics) {
    if r.action != Action::Download {
        for (key, set) in [
            ("by", r.by.is_some()),
            ("cacheControl", r.cache_control.is_some()),
        ] {
            if set {
                d.at(
                    format!("{path}.{key}"),
                    format!("{key} applies to download routes, not {}", r.action),
                );
            }
        }
        return;
    }
    if !object
        .fields
        .iter()
        .any(|(_, f)| f.ty == "Blob" && f.type_field.is_some())
    {
        d.at(
            format!("{path}.object"),
            format!("{object_name} holds no file: give one of its Blob fields a typeField"),
        );
    }
    if let Some(by) = &r.by {
        let unguessable = object.fields.iter().any(|(n, f)| {
            n == by && matches!(&f.computed, Some(crate::model::Computed::Keyword(k)) if k == "randomKey")
        });
        if !unguessable {
            d.at(
                format!("{path}.by"),
                format!("\"{by}\" is not a randomKey field of {object_name}; a file is fetched by id or by an unguessable key"),
            );
        }
    }
    if r.cache_control
        .as_deref()
        .is_some_and(|c| c.trim().is_empty() || c.contains(['\r', '\n', '"']))
    {
        d.at(
            format!("{path}.cacheControl"),
            "not a Cache-Control value; expected e.g. \"private, no-cache\"",
        );
    }
}

/// `callerFields` of create routes: reference fields of the object.
fn caller_fields(
    m: &Model,
    r: &Route,
    object_name: &str,
    object: &DataObject,
    path: &str,
    d: &mut Diagnostics,
) {
    if r.caller_fields.is_empty() {
        return;
    }
    if r.action != Action::Create {
        d.at(
            format!("{path}.callerFields"),
            format!("callerFields applies to create routes, not {}", r.action),
        );
        return;
    }
    for (i, f) in r.caller_fields.iter().enumerate() {
        let refs_caller = object
            .fields
            .iter()
            .any(|(n, fd)| n == f && fd.references.as_deref() == Some(m.auth.user_object.as_str()));
        if !refs_caller {
            d.at(
                format!("{path}.callerFields[{i}]"),
                format!(
                    "\"{f}\" is not a field of {object_name} that references {}",
                    m.auth.user_object
                ),
            );
        } else if !r.fields.contains(f) {
            d.at(
                format!("{path}.callerFields[{i}]"),
                format!("\"{f}\" is not accepted by this route; add it to fields"),
            );
        }
    }
}

/// `searchIndexes`: indexed objects exist and have searchable fields;
/// aggregates name link fields that reference the right objects.
fn search_indexes(m: &Model, objects: &BTreeMap<&str, &DataObject>, d: &mut Diagnostics) {
    let names: Vec<&str> = objects.keys().copied().collect();
    let reference = |o: &DataObject, field: &str| -> Option<String> {
        o.fields
            .iter()
            .find(|(n, _)| n == field)
            .and_then(|(_, f)| f.references.clone())
    };
    for (name, index) in &m.search_indexes {
        let path = format!("searchIndexes.{name}");
        let Some(object) = objects.get(name.as_str()) else {
            d.at_key(
                &path,
                format!("unknown data object \"{name}\"; {}", one_of(&names)),
            );
            continue;
        };
        if !object.fields.iter().any(|(_, f)| f.searchable) {
            d.at_key(
                &path,
                format!("{name} has no searchable field: mark the fields keywords match"),
            );
        }
        for (key, list) in &index.lists {
            let lpath = format!("{path}.lists.{key}");
            if field_names(object).contains(&key.as_str()) {
                d.at_key(&lpath, format!("\"{key}\" is already a field of {name}"));
            }
            let Some(link) = objects.get(list.through.as_str()) else {
                d.at(
                    format!("{lpath}.through"),
                    format!(
                        "unknown data object \"{}\"; {}",
                        list.through,
                        one_of(&names)
                    ),
                );
                continue;
            };
            if reference(link, &list.from).as_deref() != Some(name.as_str()) {
                d.at(
                    format!("{lpath}.from"),
                    format!(
                        "\"{}\" is not a field of {} that references {name}",
                        list.from, list.through
                    ),
                );
            }
            let Some(target) = reference(link, &list.to) else {
                d.at(
                    format!("{lpath}.to"),
                    format!(
                        "\"{}\" is not a reference field of {}",
                        list.to, list.through
                    ),
                );
                continue;
            };
            if let Some(t) = objects.get(target.as_str()) {
                for (i, f) in list.fields.iter().enumerate() {
                    match t.fields.iter().find(|(n, _)| n == f) {
                        None => d.at(
                            format!("{lpath}.fields[{i}]"),
                            format!(
                                "unknown field \"{f}\" of {target}; {}",
                                one_of(&field_names(t))
                            ),
                        ),
                        Some((_, tf)) if tf.secret || tf.ty == "Blob" => d.at(
                            format!("{lpath}.fields[{i}]"),
                            format!("\"{f}\" is a secret or blob field and is never indexed"),
                        ),
                        _ => {}
                    }
                }
            }
        }
        for (key, count) in &index.counts {
            let cpath = format!("{path}.counts.{key}");
            if field_names(object).contains(&key.as_str()) {
                d.at_key(&cpath, format!("\"{key}\" is already a field of {name}"));
            }
            match objects.get(count.of.as_str()) {
                None => d.at(
                    format!("{cpath}.of"),
                    format!("unknown data object \"{}\"; {}", count.of, one_of(&names)),
                ),
                Some(o) if reference(o, &count.by).as_deref() != Some(name.as_str()) => d.at(
                    format!("{cpath}.by"),
                    format!(
                        "\"{}\" is not a field of {} that references {name}",
                        count.by, count.of
                    ),
                ),
                _ => {}
            }
        }
    }
}

/// `pointedBy`: a reference field of the object, a String field of the
/// referenced object, and a public download route by key to point at.
fn pointers(m: &Model, objects: &BTreeMap<&str, &DataObject>, d: &mut Diagnostics) {
    for (name, o) in &m.data_objects {
        let Some(p) = &o.pointed_by else { continue };
        let path = format!("dataObjects.{name}.pointedBy");
        let target = o
            .fields
            .iter()
            .find(|(n, _)| *n == p.via)
            .and_then(|(_, f)| f.references.as_deref());
        let Some(target) = target else {
            d.at(
                format!("{path}.via"),
                format!("\"{}\" is not a reference field of {name}", p.via),
            );
            continue;
        };
        if let Some(t) = objects.get(target) {
            if !t
                .fields
                .iter()
                .any(|(n, f)| *n == p.field && f.ty == "String")
            {
                d.at(
                    format!("{path}.field"),
                    format!(
                        "\"{}\" is not a String field of {target}; {}",
                        p.field,
                        one_of(&field_names(t))
                    ),
                );
            }
        }
        let public_download = m.routes.iter().any(|(_, r)| {
            r.object.as_deref() == Some(name.as_str())
                && r.action == Action::Download
                && r.by.is_some()
                && r.auth.is_public()
        });
        if !public_download {
            d.at_key(
                &path,
                format!(
                    "{name} has no public download route by key for {target}.{} to point at",
                    p.field
                ),
            );
        }
    }
}
