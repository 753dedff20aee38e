//! Data objects: their names and tables, their fields (types, constraints,
//! computed values, files, defaults) and where a file is pointed at.

use super::names::{is_lower_camel, is_snake, RESERVED_MODULES, RUST_KEYWORDS, SQL_RESERVED};
use super::{an, avoid, field_names, object_names, Objects, SYSTEM_FIELDS};
use crate::action::Action;
use crate::diag::{one_of, Diagnostics};
use crate::model::{DataObject, Field, FieldType, Model, View};
use crate::naming;
use std::collections::{BTreeMap, BTreeSet};

const FORMATS: &[&str] = &["email", "url"];
const HASHES: &[&str] = &["argon2id"];

/// Every data object, and the tables and modules they must not share.
pub(super) fn data_objects(m: &Model, objects: &Objects, d: &mut Diagnostics) {
    let mut tables = BTreeMap::new();
    let mut modules = BTreeMap::new();
    for (name, object) in &m.data_objects {
        let path = format!("dataObjects.{name}");
        data_object(objects, name, object, &path, d);
        if let Some(other) = tables.insert(object.table.as_str(), name) {
            d.at(
                format!("{path}.table"),
                format!(
                    "table \"{}\" is already used by data object \"{other}\"",
                    object.table
                ),
            );
        }
        if let Some(other) = modules.insert(naming::snake(name), name) {
            d.at_key(
                &path,
                format!("name collides with data object \"{other}\" after case conversion"),
            );
        }
    }
}

fn data_object(objects: &Objects, name: &str, o: &DataObject, path: &str, d: &mut Diagnostics) {
    object_name(name, path, d);
    table(o, path, d);
    if o.fields.is_empty() {
        d.at(
            format!("{path}.fields"),
            "a data object needs at least one field",
        );
    }
    object_view(name, o, path, d);
    fields(objects, o, path, d);
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

/// The name becomes a module of the generated crate.
fn object_name(name: &str, path: &str, d: &mut Diagnostics) {
    if !is_lower_camel(name) {
        d.at_key(
            path,
            format!("data object name \"{name}\" must be lowerCamelCase, e.g. \"userGroup\""),
        );
    } else if RESERVED_MODULES.contains(&naming::snake(name).as_str())
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
}

fn table(o: &DataObject, path: &str, d: &mut Diagnostics) {
    if !is_snake(&o.table) {
        d.at(
            format!("{path}.table"),
            format!("\"{}\" is not a snake_case table name", o.table),
        );
    } else if crate::migrate::service_tables().any(|t| t == o.table) {
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
}

/// The object's own view, which its reading routes follow unless they name one.
fn object_view(name: &str, o: &DataObject, path: &str, d: &mut Diagnostics) {
    if let Some(view) = &o.view {
        if View::parse(view).is_none() {
            d.at(
                format!("{path}.view"),
                format!("unknown view \"{view}\"; {}", one_of(&View::names())),
            );
        } else if View::parse(view) != Some(View::Full) && !o.fields.iter().any(|(_, f)| f.public) {
            d.at(
                format!("{path}.view"),
                format!("view {view} shows some callers only the fields marked public, and {name} has none; mark fields `public: true` or use view full"),
            );
        }
    }
}

/// Each field, checked in full only when its name is usable.
fn fields(objects: &Objects, o: &DataObject, path: &str, d: &mut Diagnostics) {
    let mut columns: BTreeMap<String, String> = SYSTEM_FIELDS
        .iter()
        .map(|f| (naming::snake(f), format!("system field {f}")))
        .collect();
    for (fname, f) in &o.fields {
        let fpath = format!("{path}.fields.{fname}");
        if !field_name(fname, &fpath, &mut columns, d) {
            continue;
        }
        field(objects, f, &fpath, d);
        computed(o, f, &fpath, d);
        file_keys(o, f, &fpath, d);
    }
}

/// A field's name, which becomes a column in `columns`; false when it is not
/// a name to check the field under at all.
fn field_name(
    fname: &str,
    fpath: &str,
    columns: &mut BTreeMap<String, String>,
    d: &mut Diagnostics,
) -> bool {
    if SYSTEM_FIELDS.contains(&fname) {
        d.at_key(
            fpath,
            format!(
                "\"{fname}\" is a system field that every object has; {}",
                avoid(SYSTEM_FIELDS)
            ),
        );
        return false;
    }
    if !is_lower_camel(fname) {
        d.at_key(
            fpath,
            format!("field name \"{fname}\" must be lowerCamelCase, e.g. \"groupName\""),
        );
        return false;
    }
    let snake = naming::snake(fname);
    if RUST_KEYWORDS.contains(&snake.as_str()) || SQL_RESERVED.contains(&snake.as_str()) {
        d.at_key(
            fpath,
            format!("\"{fname}\" is a reserved word in Rust or SQL; rename the field"),
        );
    }
    if let Some(other) = columns.insert(snake.clone(), format!("field {fname}")) {
        d.at_key(
            fpath,
            format!("\"{fname}\" collides with {other} as column \"{snake}\""),
        );
    }
    true
}

/// One field: a known type, and only the keys that type takes.
fn field(objects: &Objects, f: &Field, path: &str, d: &mut Diagnostics) {
    let ty = f.ty.as_str();
    if f.field_type().is_none() {
        d.at(
            format!("{path}.type"),
            format!("unknown type \"{ty}\"; {}", one_of(&FieldType::names())),
        );
        return;
    }
    sizes(f, path, d);
    string_keys(f, path, d);
    flags(f, path, d);
    if let Some(target) = &f.references {
        if !f.is(FieldType::Id) {
            d.at(
                format!("{path}.references"),
                format!("a reference must be of type ID, not {ty}"),
            );
        }
        if !objects.contains_key(target.as_str()) {
            d.at(
                format!("{path}.references"),
                format!(
                    "unknown data object \"{target}\"; {}",
                    one_of(&object_names(objects))
                ),
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

/// `bits` of an Integer, `minLength` and `maxLength` of a String or Text.
fn sizes(f: &Field, path: &str, d: &mut Diagnostics) {
    let ty = f.ty.as_str();
    if let Some(bits) = f.bits {
        if !f.is(FieldType::Integer) {
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
    if (f.min_length.is_some() || f.max_length.is_some()) && !f.is_text() {
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
}

/// `format`, `allowedValues` and `hash`, which String fields take.
fn string_keys(f: &Field, path: &str, d: &mut Diagnostics) {
    let ty = f.ty.as_str();
    if let Some(format) = &f.format {
        if !FORMATS.contains(&format.as_str()) {
            d.at(
                format!("{path}.format"),
                format!("unknown format \"{format}\"; {}", one_of(FORMATS)),
            );
        } else if !f.is(FieldType::String) {
            d.at(
                format!("{path}.format"),
                format!("format applies to String fields only, not {ty}"),
            );
        }
    }
    if !f.allowed_values.is_empty() && !f.is(FieldType::String) {
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
        } else if !f.is(FieldType::String) || !f.secret {
            d.at(
                format!("{path}.hash"),
                "hash applies to secret String fields only; add `secret: true`",
            );
        }
    }
}

/// The flags a secret, a Blob or Object, or a non-text field cannot carry.
fn flags(f: &Field, path: &str, d: &mut Diagnostics) {
    let ty = f.ty.as_str();
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
    if f.is(FieldType::Blob) || f.is(FieldType::Object) {
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
    if f.searchable && !f.is_text() {
        d.at(
            format!("{path}.searchable"),
            format!("only String and Text fields are searchable, not {ty}"),
        );
    }
}

fn default_value(f: &Field, v: &serde_yaml::Value, path: &str, d: &mut Diagnostics) {
    use serde_yaml::Value;
    let ok = match (f.field_type(), v) {
        (Some(FieldType::Boolean), Value::Bool(_)) => true,
        (Some(FieldType::Integer), Value::Number(n)) => n.as_i64().is_some(),
        (Some(FieldType::String | FieldType::Text), Value::String(s)) => {
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
                match f.field_type() {
                    Some(FieldType::Boolean) => "boolean (true or false)",
                    Some(FieldType::Integer) => "whole number",
                    Some(FieldType::String | FieldType::Text) => "string",
                    _ => "value of a type that has defaults (Boolean, Integer, String, Text)",
                }
            ),
        );
    }
}

fn computed(o: &DataObject, f: &Field, path: &str, d: &mut Diagnostics) {
    use crate::model::Computed;
    let path = format!("{path}.computed");
    match &f.computed {
        None => {}
        Some(Computed::Keyword(k)) if k == "randomKey" && !f.is(FieldType::String) => {
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
            if !f.is(FieldType::Integer) {
                d.at(&path, format!("sizeOf fills Integer fields, not {}", f.ty));
            }
            if !o
                .fields
                .iter()
                .any(|(n, b)| n == size_of && b.is(FieldType::Blob))
            {
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
        if set && !f.is(FieldType::Blob) {
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
            Some((_, tf)) if tf.is(FieldType::String) && !tf.allowed_values.is_empty() => {}
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
            .any(|(fname, nf)| fname == n && nf.is(FieldType::String))
        {
            d.at(
                format!("{path}.nameField"),
                format!("\"{n}\" is not a String field; {}", one_of(&field_names(o))),
            );
        }
    }
}

/// `pointedBy`: a reference field of the object, a String field of the
/// referenced object, and a public download route by key to point at.
pub(super) fn pointers(m: &Model, objects: &Objects, d: &mut Diagnostics) {
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
                .any(|(n, f)| *n == p.field && f.is(FieldType::String))
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
