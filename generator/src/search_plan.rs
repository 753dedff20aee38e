//! Plan of the search indexes: the SQL that builds each index's documents
//! from the tables, and which documents a change of each object touches.
//!
//! Documents live in the service table `search_documents` (jsonb with a
//! tsvector under a GIN index); index names follow the topics' pattern
//! `{searchIndexPrefix}_{object}`, e.g. `airbnb_user`.

use crate::model::{DataObject, Model};
use heck::ToSnakeCase;

#[derive(Debug, Clone, Default)]
pub struct SearchPlan {
    pub indexes: Vec<SearchIndexPlan>,
    /// For each object whose changes touch documents, how to find them.
    pub follows: Vec<FollowPlan>,
}

#[derive(Debug, Clone)]
pub struct SearchIndexPlan {
    /// `airbnb_user`.
    pub name: String,
    /// The indexed object's model name and its module.
    pub object: String,
    pub module: String,
    /// `USER`: the Rust constant of the index in `search.rs`.
    pub const_name: String,
    /// Builds the documents of the rows whose ids are `$1` (an array).
    pub upsert_sql: String,
    /// Removes the documents of `$1` whose rows are gone or inactive.
    pub prune_sql: String,
    /// Builds every document from the table.
    pub rebuild_sql: String,
    /// Topic constant of the `-extended` index event.
    pub extended_topic_const: String,
}

#[derive(Debug, Clone)]
pub struct FollowPlan {
    pub object: String,
    pub steps: Vec<FollowStep>,
}

/// One set of documents a change touches: ids read from the changed rows'
/// JSON (`field`), or found with `sql` from the changed rows' ids.
#[derive(Debug, Clone)]
pub struct FollowStep {
    pub index_const: String,
    pub field: String,
    pub sql: String,
}

fn object<'a>(m: &'a Model, name: &str) -> Option<&'a DataObject> {
    m.data_objects
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, o)| o)
}

fn active(o: &DataObject, alias: &str) -> String {
    if o.soft_delete {
        format!(" AND {alias}.is_active")
    } else {
        String::new()
    }
}

fn reference<'a>(o: &'a DataObject, field: &str) -> Option<&'a str> {
    o.fields
        .iter()
        .find(|(n, _)| n == field)
        .and_then(|(_, f)| f.references.as_deref())
}

/// The index name of `object`: `{searchIndexPrefix}_{object lower-cased}`.
pub fn index_name(m: &Model, object: &str) -> String {
    format!("{}_{}", m.topics.search_index_prefix, object.to_lowercase())
}

/// `'key', expr` pairs of an object's indexed fields (no secrets, no bytes).
fn field_pairs(o: &DataObject, alias: &str) -> Vec<String> {
    let mut pairs = vec![format!("'id', {alias}.id")];
    for (n, f) in &o.fields {
        if f.secret || f.ty == "Blob" {
            continue;
        }
        pairs.push(format!("'{n}', {alias}.{}", n.to_snake_case()));
    }
    for (n, c) in [
        ("isActive", "is_active"),
        ("recordVersion", "record_version"),
        ("createdAt", "created_at"),
        ("updatedAt", "updated_at"),
        ("_owner", "_owner"),
    ] {
        pairs.push(format!("'{n}', {alias}.{c}"));
    }
    pairs
}

pub fn plan(m: &Model) -> SearchPlan {
    let mut indexes = Vec::new();
    let mut follows: Vec<FollowPlan> = Vec::new();
    let mut follow =
        |object: &str, step: FollowStep| match follows.iter_mut().find(|f| f.object == object) {
            Some(f) => f.steps.push(step),
            None => follows.push(FollowPlan {
                object: object.to_string(),
                steps: vec![step],
            }),
        };
    for (name, index) in &m.search_indexes {
        let Some(o) = object(m, name) else { continue };
        let idx = index_name(m, name);
        let const_name = name.to_snake_case().to_uppercase();
        let mut pairs = field_pairs(o, "t");
        follow(
            name,
            FollowStep {
                index_const: const_name.clone(),
                field: "id".into(),
                sql: String::new(),
            },
        );
        for (key, list) in &index.lists {
            let (Some(link), Some(target_name)) = (
                object(m, &list.through),
                object(m, &list.through).and_then(|l| reference(l, &list.to)),
            ) else {
                continue;
            };
            let Some(target) = object(m, target_name) else {
                continue;
            };
            let items: Vec<String> = std::iter::once("'id', x.id".to_string())
                .chain(
                    list.fields
                        .iter()
                        .map(|f| format!("'{f}', x.{}", f.to_snake_case())),
                )
                .collect();
            let (from, to) = (list.from.to_snake_case(), list.to.to_snake_case());
            pairs.push(format!(
                "'{key}', COALESCE((SELECT jsonb_agg(jsonb_build_object({}) ORDER BY x.id) FROM {} AS l JOIN {} AS x ON x.id = l.{to}{} WHERE l.{from} = t.id{}), '[]'::jsonb)",
                items.join(", "),
                link.table,
                target.table,
                active(target, "x"),
                active(link, "l"),
            ));
            // A link row changes: the documents it points from.
            follow(
                &list.through,
                FollowStep {
                    index_const: const_name.clone(),
                    field: list.from.clone(),
                    sql: String::new(),
                },
            );
            // A listed row changes: every document that lists it.
            follow(
                target_name,
                FollowStep {
                    index_const: const_name.clone(),
                    field: "id".into(),
                    sql: format!(
                        "SELECT DISTINCT l.{from} FROM {} AS l WHERE l.{to} = ANY($1)",
                        link.table
                    ),
                },
            );
        }
        for (key, count) in &index.counts {
            let Some(of) = object(m, &count.of) else {
                continue;
            };
            pairs.push(format!(
                "'{key}', (SELECT count(*) FROM {} AS c WHERE c.{} = t.id{})",
                of.table,
                count.by.to_snake_case(),
                active(of, "c")
            ));
            follow(
                &count.of,
                FollowStep {
                    index_const: const_name.clone(),
                    field: count.by.clone(),
                    sql: String::new(),
                },
            );
        }
        // Keywords: each searchable field, weighted by its order (A, B, then
        // C), with email-like text also split at its punctuation.
        let vectors: Vec<String> = o
            .fields
            .iter()
            .filter(|(_, f)| f.searchable)
            .enumerate()
            .map(|(i, (n, _))| {
                let col = format!("coalesce(t.{}, '')", n.to_snake_case());
                let weight = weight(i);
                format!(
                    "setweight(to_tsvector('simple', {col} || ' ' || translate({col}, '@._-', '    ')), '{weight}')"
                )
            })
            .collect();
        let search = if vectors.is_empty() {
            "''::tsvector".to_string()
        } else {
            vectors.join(" || ")
        };
        let head = format!(
            "INSERT INTO search_documents AS d (index_name, id, doc, search, updated_at) SELECT '{idx}', t.id, jsonb_build_object({}), {search}, now() FROM {} AS t WHERE",
            pairs.join(", "),
            o.table
        );
        let tail = " ON CONFLICT (index_name, id) DO UPDATE SET doc = excluded.doc, search = excluded.search, updated_at = now()";
        indexes.push(SearchIndexPlan {
            upsert_sql: format!("{head} t.id = ANY($1){}{tail}", active(o, "t")),
            rebuild_sql: format!("{head} TRUE{}{tail}", active(o, "t")),
            prune_sql: format!(
                "DELETE FROM search_documents AS d WHERE d.index_name = '{idx}' AND d.id = ANY($1) AND NOT EXISTS (SELECT 1 FROM {} AS t WHERE t.id = d.id{})",
                o.table,
                active(o, "t")
            ),
            extended_topic_const: format!("INDEX_{const_name}_EXTENDED"),
            name: idx,
            object: name.clone(),
            module: name.to_snake_case(),
            const_name,
        });
    }
    SearchPlan { indexes, follows }
}

/// The weight of the keywords of the `i`-th searchable field: A, B, then C
/// (its rank, and what narrowed searches match on).
pub fn weight(i: usize) -> &'static str {
    ["A", "B"].get(i).copied().unwrap_or("C")
}

/// The FROM and WHERE of a search route over `object`'s index, split where
/// the keyword's tsquery is bound: `(before, after)`.
pub fn search_from(m: &Model, object: &str, table: &str, soft_delete: bool) -> (String, String) {
    let idx = index_name(m, object);
    let live = if soft_delete { "t.is_active" } else { "TRUE" };
    (
        format!(" FROM {table} AS t JOIN search_documents AS d ON d.index_name = '{idx}' AND d.id = t.id CROSS JOIN to_tsquery('simple', "),
        format!(") AS q(query) WHERE {live} AND d.search @@ q.query"),
    )
}
