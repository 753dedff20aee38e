//! Fields and columns: each field's Rust, SQL and JSON types, its rules,
//! and what reads select of it.

use super::sql_text;
use crate::action::Action;
use crate::model::{Computed, DataObject, Field, FieldType, Model};
use crate::naming::snake;

#[derive(Debug, Clone, Default)]
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

/// The Rust, SQL and JSON Schema types of a field, and its JSON format.
struct Types {
    rust: &'static str,
    sql: &'static str,
    json: &'static str,
    format: Option<&'static str>,
}

/// `(name, column, rust, sql, default, nullable, json, format)` of the
/// columns every table has.
type System = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    bool,
    &'static str,
    Option<&'static str>,
);

// A table reads best as a table.
#[rustfmt::skip]
const SYSTEM: [System; 6] = [
    ("id", "id", "Uuid", "uuid", Some("gen_random_uuid()"), false, "string", Some("uuid")),
    ("isActive", "is_active", "bool", "boolean", Some("true"), false, "boolean", None),
    ("recordVersion", "record_version", "i32", "integer", Some("1"), false, "integer", None),
    ("createdAt", "created_at", "DateTime<Utc>", "timestamptz", Some("now()"), false, "string", Some("date-time")),
    ("updatedAt", "updated_at", "DateTime<Utc>", "timestamptz", Some("now()"), false, "string", Some("date-time")),
    ("_owner", "_owner", "Uuid", "uuid", None, true, "string", Some("uuid")),
];

fn system_field(&(name, column, rust, sql, default, nullable, json, format): &System) -> FieldPlan {
    let ident = column.trim_start_matches('_');
    FieldPlan {
        name: name.into(),
        ident: ident.into(),
        column: column.into(),
        rust_type: rust.into(),
        row_type: row_type(rust, nullable),
        sql_type: sql.into(),
        sql_default: default.map(String::from),
        nullable,
        system: true,
        json_type: json,
        json_format: format,
        rule_const: ident.to_uppercase(),
        filter_value: if rust == "String" {
            "value.clone()".into()
        } else {
            "*value".into()
        },
        ..FieldPlan::default()
    }
}

fn row_type(rust: &str, nullable: bool) -> String {
    if nullable {
        format!("Option<{rust}>")
    } else {
        rust.into()
    }
}

fn types(f: &Field) -> Types {
    let t = |rust, sql, json, format| Types {
        rust,
        sql,
        json,
        format,
    };
    match f.field_type() {
        Some(FieldType::Id) => t("Uuid", "uuid", "string", Some("uuid")),
        Some(FieldType::String | FieldType::Text) => {
            let format = match f.format.as_deref() {
                Some("email") => Some("email"),
                // Absolute http(s) URLs and the service's own download paths.
                Some("url") => Some("uri-reference"),
                _ => None,
            };
            t("String", "text", "string", format)
        }
        Some(FieldType::Boolean) => t("bool", "boolean", "boolean", None),
        Some(FieldType::Integer) if f.bits == Some(64) => {
            t("i64", "bigint", "integer", Some("int64"))
        }
        Some(FieldType::Integer) => t("i32", "integer", "integer", Some("int32")),
        Some(FieldType::Date) => t("DateTime<Utc>", "timestamptz", "string", Some("date-time")),
        Some(FieldType::Blob) => t("Vec<u8>", "bytea", "string", Some("byte")),
        _ => t("serde_json::Value", "jsonb", "object", None),
    }
}

/// A model field, planned.
pub fn field(name: &str, f: &Field) -> FieldPlan {
    let Types {
        rust,
        sql,
        json,
        format,
    } = types(f);
    let column = snake(name);
    let nullable = !f.required && f.default.is_none();
    let default_rust = f.default.as_ref().map(|v| match v {
        serde_yaml::Value::String(s) => format!("String::from({s:?})"),
        serde_yaml::Value::Bool(b) => b.to_string(),
        serde_yaml::Value::Number(n) => n.to_string(),
        _ => String::new(),
    });
    FieldPlan {
        name: name.to_string(),
        ident: column.clone(),
        rust_type: rust.into(),
        row_type: row_type(rust, nullable),
        sql_type: sql.into(),
        sql_default: f.default.as_ref().map(default_sql),
        nullable,
        secret: f.secret,
        blob: f.is(FieldType::Blob),
        required: f.required,
        hash: f.hash.is_some(),
        default_call: default_rust.as_ref().map(|d| match rust {
            "String" => format!("unwrap_or_else(|| {d})"),
            _ => format!("unwrap_or({d})"),
        }),
        default_rust,
        min_length: f.min_length,
        max_length: f.max_length,
        email: f.format.as_deref() == Some("email"),
        allowed_values: f.allowed_values.clone(),
        references: f.references.clone(),
        json_type: json,
        json_format: format,
        computed_rust: f.computed.as_ref().map(|c| computed_rust(c, rust)),
        text_rule: f.is_text().then(|| text_rule(f)),
        rule_const: column.to_uppercase(),
        is_object: f.is(FieldType::Object),
        filter_value: match rust {
            "String" if f.format.as_deref() == Some("email") => {
                "validation::normalize_email(value.clone())".into()
            }
            "String" | "serde_json::Value" | "Vec<u8>" => "value.clone()".into(),
            _ => "*value".into(),
        },
        column,
        ..FieldPlan::default()
    }
}

fn default_sql(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::Bool(b) => b.to_string(),
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::String(s) => sql_text(s),
        _ => String::new(),
    }
}

fn computed_rust(c: &Computed, rust: &str) -> String {
    match c {
        Computed::SizeOf { size_of } => format!(
            "{rust}::try_from({}.len()).unwrap_or({rust}::MAX)",
            snake(size_of)
        ),
        Computed::Keyword(_) => "svcgen_runtime::validation::random_key()".to_string(),
    }
}

/// The `TextRule { .. }` literal of a String or Text field.
fn text_rule(f: &Field) -> String {
    let opt = |v: Option<u32>| v.map_or("None".to_string(), |n| format!("Some({n})"));
    let allowed = f
        .allowed_values
        .iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let format = match f.format.as_deref() {
        Some("email") => "Email",
        Some("url") => "Url { local_paths: crate::spec::DOWNLOAD_PATHS }",
        _ => "Any",
    };
    format!(
        "TextRule {{ min_length: {}, max_length: {}, format: svcgen_runtime::validation::TextFormat::{format}, allowed: &[{allowed}] }}",
        opt(f.min_length),
        opt(f.max_length),
    )
}

pub fn field_of<'a>(o: &'a DataObject, name: &str) -> Option<&'a Field> {
    o.fields.iter().find(|(n, _)| n == name).map(|(_, f)| f)
}

/// A field every caller may see.
pub fn is_public(o: &DataObject, name: &str) -> bool {
    field_of(o, name).is_some_and(|f| f.public && !f.secret)
}

/// All columns of an object, system ones included, in table order.
pub fn columns_of(o: &DataObject) -> Vec<FieldPlan> {
    let mut columns = vec![system_field(&SYSTEM[0])];
    columns.extend(o.fields.iter().map(|(n, f)| field(n, f)));
    columns.extend(SYSTEM[1..].iter().map(system_field));
    columns
}

/// What every caller may see of a row: id, the fields marked public, isActive.
pub fn public_columns(o: &DataObject) -> Vec<FieldPlan> {
    columns_of(o)
        .into_iter()
        .filter(|c| c.name == "id" || c.name == "isActive" || is_public(o, &c.name))
        .collect()
}

pub fn select_list(fields: &[FieldPlan], alias: &str) -> String {
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

/// What reads return: everything but secrets; blobs as a descriptor that
/// says where the row is fetched, never their bytes.
pub fn visible_of(m: &Model, object: &str, columns: &[FieldPlan]) -> Vec<FieldPlan> {
    let href = blob_href(m, object);
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

/// Where a row's bytes are fetched, as SQL: the bytes' own route when there
/// is one, else the row's.
fn blob_href(m: &Model, object: &str) -> String {
    let of_object = |action: Action| {
        m.routes.iter().find(|(_, r)| {
            r.object.as_deref() == Some(object)
                && r.action == action
                && r.view.is_none()
                && r.by.is_none()
        })
    };
    of_object(Action::Download)
        .or_else(|| of_object(Action::Get))
        .map(|(_, r)| {
            let path = format!("{}{}", m.service.api_base, r.path);
            let (before, after) = path.split_once("{id}").unwrap_or((path.as_str(), ""));
            format!("{} || t.id || {}", sql_text(before), sql_text(after))
        })
        .unwrap_or_else(|| "NULL".to_string())
}

/// The column naming a row's owner: `id` where the row is its own owner
/// (the user object), else `_owner`.
pub fn owner_column(o: &DataObject) -> &'static str {
    if o.owner_is_self {
        "id"
    } else {
        "_owner"
    }
}

/// The `WHERE` of an index or unique constraint that holds among active rows only.
pub fn partial_clause(o: &DataObject) -> &'static str {
    if o.soft_delete {
        " WHERE is_active"
    } else {
        ""
    }
}

pub fn active_clause(o: &DataObject) -> &'static str {
    if o.soft_delete {
        " AND t.is_active"
    } else {
        ""
    }
}
