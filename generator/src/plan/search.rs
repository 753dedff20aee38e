//! Plan of the search indexes: the SQL that builds each index's documents
//! from the tables, and which documents a change of each object touches.
//!
//! Documents live in the service table `search_documents` (jsonb with a
//! tsvector under a GIN index); index names follow the topics' pattern
//! `{searchIndexPrefix}_{object}`, e.g. `airbnb_user`.

use crate::model::{DataObject, FieldType, ListAggregate, Model, SearchIndex};
use crate::naming::{change_const, constant, index_name, snake};

#[derive(Debug, Clone, Default)]
pub struct SearchPlan {
    pub indexes: Vec<SearchIndexPlan>,
    /// For each object whose changes touch documents, how to find them.
    pub follows: Vec<FollowPlan>,
}

impl SearchPlan {
    /// The model has search indexes: the generated crate holds them, and uses
    /// the runtime's `search` feature.
    pub fn is_used(&self) -> bool {
        !self.indexes.is_empty()
    }
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

/// `'key', expr` pairs of an object's indexed fields (no secrets, no bytes).
fn field_pairs(o: &DataObject, alias: &str) -> Vec<String> {
    let mut pairs = vec![format!("'id', {alias}.id")];
    for (n, f) in &o.fields {
        if f.secret || f.is(FieldType::Blob) {
            continue;
        }
        pairs.push(format!("'{n}', {alias}.{}", snake(n)));
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

/// The documents each object's changes touch, in the order first met.
#[derive(Default)]
struct Follows(Vec<FollowPlan>);

impl Follows {
    fn add(&mut self, object: &str, index_const: &str, field: &str, sql: String) {
        let step = FollowStep {
            index_const: index_const.to_string(),
            field: field.to_string(),
            sql,
        };
        match self.0.iter_mut().find(|f| f.object == object) {
            Some(f) => f.steps.push(step),
            None => self.0.push(FollowPlan {
                object: object.to_string(),
                steps: vec![step],
            }),
        }
    }
}

pub fn plan(m: &Model) -> SearchPlan {
    let mut follows = Follows::default();
    let indexes = m
        .search_indexes
        .iter()
        .filter_map(|(name, index)| Some(index_plan(m, name, m.object(name)?, index, &mut follows)))
        .collect();
    SearchPlan {
        indexes,
        follows: follows.0,
    }
}

fn index_plan(
    m: &Model,
    name: &str,
    o: &DataObject,
    index: &SearchIndex,
    follows: &mut Follows,
) -> SearchIndexPlan {
    let idx = index_name(m, name);
    let const_name = constant(name);
    let mut pairs = field_pairs(o, "t");
    follows.add(name, &const_name, "id", String::new());
    for (key, list) in &index.lists {
        pairs.extend(list_pair(m, key, list, &const_name, follows));
    }
    for (key, count) in &index.counts {
        let Some(of) = m.object(&count.of) else {
            continue;
        };
        pairs.push(format!(
            "'{key}', (SELECT count(*) FROM {} AS c WHERE c.{} = t.id{})",
            of.table,
            snake(&count.by),
            active(of, "c")
        ));
        follows.add(&count.of, &const_name, &count.by, String::new());
    }
    let head = format!(
        "INSERT INTO search_documents AS d (index_name, id, doc, search, updated_at) SELECT '{idx}', t.id, jsonb_build_object({}), {}, now() FROM {} AS t WHERE",
        pairs.join(", "),
        keywords(o),
        o.table
    );
    let tail = " ON CONFLICT (index_name, id) DO UPDATE SET doc = excluded.doc, search = excluded.search, updated_at = now()";
    SearchIndexPlan {
        upsert_sql: format!("{head} t.id = ANY($1){}{tail}", active(o, "t")),
        rebuild_sql: format!("{head} TRUE{}{tail}", active(o, "t")),
        prune_sql: format!(
            "DELETE FROM search_documents AS d WHERE d.index_name = '{idx}' AND d.id = ANY($1) AND NOT EXISTS (SELECT 1 FROM {} AS t WHERE t.id = d.id{})",
            o.table,
            active(o, "t")
        ),
        extended_topic_const: change_const("INDEX", name, "extended"),
        name: idx,
        object: name.to_string(),
        module: snake(name),
        const_name,
    }
}

/// The `'key', (list of related rows)` pair of a list aggregate, and the
/// changes that touch it: a link row (the documents it points from) and a
/// listed row (every document that lists it).
fn list_pair(
    m: &Model,
    key: &str,
    list: &ListAggregate,
    const_name: &str,
    follows: &mut Follows,
) -> Option<String> {
    let link = m.object(&list.through)?;
    let target_name = reference(link, &list.to)?;
    let target = m.object(target_name)?;
    let items: Vec<String> = std::iter::once("'id', x.id".to_string())
        .chain(list.fields.iter().map(|f| format!("'{f}', x.{}", snake(f))))
        .collect();
    let (from, to) = (snake(&list.from), snake(&list.to));
    follows.add(&list.through, const_name, &list.from, String::new());
    follows.add(
        target_name,
        const_name,
        "id",
        format!(
            "SELECT DISTINCT l.{from} FROM {} AS l WHERE l.{to} = ANY($1)",
            link.table
        ),
    );
    Some(format!(
        "'{key}', COALESCE((SELECT jsonb_agg(jsonb_build_object({}) ORDER BY x.id) FROM {} AS l JOIN {} AS x ON x.id = l.{to}{} WHERE l.{from} = t.id{}), '[]'::jsonb)",
        items.join(", "),
        link.table,
        target.table,
        active(target, "x"),
        active(link, "l"),
    ))
}

/// Keywords: each searchable field, weighted by its order (A, B, then C),
/// with email-like text also split at its punctuation.
fn keywords(o: &DataObject) -> String {
    let vectors: Vec<String> = o
        .fields
        .iter()
        .filter(|(_, f)| f.searchable)
        .enumerate()
        .map(|(i, (n, _))| {
            let col = format!("coalesce(t.{}, '')", snake(n));
            let weight = weight(i);
            format!(
                "setweight(to_tsvector('simple', {col} || ' ' || translate({col}, '@._-', '    ')), '{weight}')"
            )
        })
        .collect();
    if vectors.is_empty() {
        "''::tsvector".to_string()
    } else {
        vectors.join(" || ")
    }
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
