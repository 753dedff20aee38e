//! `searchIndexes`: indexed objects exist and have searchable fields;
//! aggregates name link fields that reference the right objects.

use super::{field_names, object_names, Objects};
use crate::diag::{one_of, Diagnostics};
use crate::model::{CountAggregate, DataObject, FieldType, ListAggregate, Model};

pub(super) fn search_indexes(m: &Model, objects: &Objects, d: &mut Diagnostics) {
    for (name, index) in &m.search_indexes {
        let path = format!("searchIndexes.{name}");
        let Some(object) = objects.get(name.as_str()) else {
            d.at_key(
                &path,
                format!(
                    "unknown data object \"{name}\"; {}",
                    one_of(&object_names(objects))
                ),
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
            list_aggregate(objects, name, object, key, list, &lpath, d);
        }
        for (key, count) in &index.counts {
            let cpath = format!("{path}.counts.{key}");
            count_aggregate(objects, name, object, key, count, &cpath, d);
        }
    }
}

/// The object that `field` of `o` references, if it is a reference.
fn reference<'a>(o: &'a DataObject, field: &str) -> Option<&'a str> {
    o.fields
        .iter()
        .find(|(n, _)| n == field)
        .and_then(|(_, f)| f.references.as_deref())
}

/// A list of rows reached through a link object: `from` references the
/// indexed object, `to` the listed one, whose `fields` are indexed.
fn list_aggregate(
    objects: &Objects,
    name: &str,
    object: &DataObject,
    key: &str,
    list: &ListAggregate,
    lpath: &str,
    d: &mut Diagnostics,
) {
    if field_names(object).contains(&key) {
        d.at_key(lpath, format!("\"{key}\" is already a field of {name}"));
    }
    let Some(link) = objects.get(list.through.as_str()) else {
        d.at(
            format!("{lpath}.through"),
            format!(
                "unknown data object \"{}\"; {}",
                list.through,
                one_of(&object_names(objects))
            ),
        );
        return;
    };
    if reference(link, &list.from) != Some(name) {
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
        return;
    };
    let Some(t) = objects.get(target) else {
        return;
    };
    for (i, f) in list.fields.iter().enumerate() {
        match t.fields.iter().find(|(n, _)| n == f) {
            None => d.at(
                format!("{lpath}.fields[{i}]"),
                format!(
                    "unknown field \"{f}\" of {target}; {}",
                    one_of(&field_names(t))
                ),
            ),
            Some((_, tf)) if tf.secret || tf.is(FieldType::Blob) => d.at(
                format!("{lpath}.fields[{i}]"),
                format!("\"{f}\" is a secret or blob field and is never indexed"),
            ),
            _ => {}
        }
    }
}

/// A count of the rows of `of` whose `by` references the indexed object.
fn count_aggregate(
    objects: &Objects,
    name: &str,
    object: &DataObject,
    key: &str,
    count: &CountAggregate,
    cpath: &str,
    d: &mut Diagnostics,
) {
    if field_names(object).contains(&key) {
        d.at_key(cpath, format!("\"{key}\" is already a field of {name}"));
    }
    match objects.get(count.of.as_str()) {
        None => d.at(
            format!("{cpath}.of"),
            format!(
                "unknown data object \"{}\"; {}",
                count.of,
                one_of(&object_names(objects))
            ),
        ),
        Some(o) if reference(o, &count.by) != Some(name) => d.at(
            format!("{cpath}.by"),
            format!(
                "\"{}\" is not a field of {} that references {name}",
                count.by, count.of
            ),
        ),
        _ => {}
    }
}
