//! Reading routes (get and list): what each caller sees of the rows they
//! read (decision route-views), the list queries, joined rows and search.

use super::field::{
    columns_of, field_of, is_public, owner_column, public_columns, select_list, visible_of,
    FieldPlan,
};
use super::rust_str_slice;
use crate::model::{DataObject, Model, Route, View};
use crate::naming::{camel, index_name, snake};

/// What a reading route shows each caller.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    pub view: View,
    /// The view in words, for docs.
    pub view_doc: String,
    /// The caller's sight as a Rust expression, "" when the route never
    /// narrows (or narrows in SQL: the public view of a get route).
    pub sight: String,
    /// `&["id", ...]`: the keys a narrowed row or hit keeps.
    pub shown_keys: String,
}

#[derive(Debug, Clone)]
pub struct GetPlan {
    pub read: ReadPlan,
    /// Reads the public view in SQL (`GET_PUBLIC_SQL`).
    pub public_view: bool,
}

#[derive(Debug, Clone)]
pub struct ListPlan {
    pub read: ReadPlan,
    pub includes: Vec<IncludePlan>,
    /// The query up to its WHERE clause, and its count query.
    pub list_sql: String,
    pub count_sql: String,
    /// `ListUsersRow`: the type of one row (or hit).
    pub list_row: String,
    /// Changes its rows after reading them (narrows hits or joined rows).
    pub rows_mut: bool,
    pub search: Option<SearchRoutePlan>,
}

/// A list route that searches its object's index.
#[derive(Debug, Clone)]
pub struct SearchRoutePlan {
    /// The rest of its FROM/WHERE after the bound tsquery.
    pub search_tail: String,
    /// Its index in Elasticsearch, and `&["email^3", ...]` (the searchable
    /// fields, boosted in the order of the model).
    pub index_name: String,
    pub es_fields: String,
    /// The boosted public searchable fields, the weights of their keywords
    /// (`B`), and the query ranking only by them.
    pub es_public_fields: String,
    pub public_weights: String,
    pub list_sql_narrow: String,
    /// The document key holding its owner's id.
    pub owner_key: String,
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
    pub view: View,
    /// The row field holding the joined row's owner (selected when `sight` is set).
    pub owner_ident: String,
}

/// The caller's sight under `view` (which narrows), as a Rust expression.
fn sight_expr(view: View) -> String {
    match view {
        View::Public => "views::Sight::Public".into(),
        _ => "views::Sight::owner_view(caller.user_id, caller.is_admin())".into(),
    }
}

pub fn get(m: &Model, r: &Route, o: &DataObject) -> GetPlan {
    let public_view = m.view_of(r) == View::Public;
    GetPlan {
        // The public view of a get route narrows in SQL.
        read: read(m, r, o, &[], !public_view),
        public_view,
    }
}

pub fn list(m: &Model, route: &str, r: &Route, name: &str, o: &DataObject) -> ListPlan {
    let includes = includes(m, r, o);
    let read = read(m, r, o, &includes, true);
    // A search reads the index's documents, a list the table's rows.
    let (list_sql, count_sql, search) = if r.search {
        let (list, count, plan) = search(m, name, o);
        (list, count, Some(plan))
    } else {
        let select = select_list(&visible_of(m, name, &columns_of(o)), "t");
        let (list, count) = list_sql(o, &select, &includes);
        (list, count, None)
    };
    ListPlan {
        rows_mut: (r.search && !read.sight.is_empty())
            || includes.iter().any(|i| !i.sight.is_empty()),
        read,
        includes,
        list_sql,
        count_sql,
        list_row: format!("{}Row", camel(route)),
        search,
    }
}

/// The route's view, its sight (when `narrows_in_code`), the keys a
/// narrowed row keeps, and the view in words.
pub(super) fn read(
    m: &Model,
    r: &Route,
    o: &DataObject,
    includes: &[IncludePlan],
    narrows_in_code: bool,
) -> ReadPlan {
    let view = m.view_of(r);
    let narrows = m.narrows(r);
    let sight = if narrows && narrows_in_code {
        sight_expr(view)
    } else {
        String::new()
    };
    let mut keys: Vec<String> = public_columns(o).into_iter().map(|c| c.name).collect();
    let public = keys.join(", ");
    // Joined rows stay, narrowed by their own view; a hit keeps its rank.
    keys.extend(includes.iter().map(|i| i.name.clone()));
    if r.search {
        keys.push("_score".into());
    }
    ReadPlan {
        view_doc: view_doc(m, view, narrows, &public, includes),
        view,
        sight,
        shown_keys: rust_str_slice(&keys),
    }
}

fn view_doc(
    m: &Model,
    view: View,
    narrows: bool,
    public: &str,
    includes: &[IncludePlan],
) -> String {
    let admins = m.roles.admin.join(", ");
    let mut doc = match view {
        View::Public => format!("public fields only ({public})"),
        View::Owner if narrows => format!(
            "every field to {admins} and on the caller's own rows; elsewhere public fields only ({public})"
        ),
        _ => "every field".to_string(),
    };
    for i in includes.iter().filter(|i| !i.sight.is_empty()) {
        let public = i.public_fields.join(", ");
        doc.push_str(&match i.view {
            View::Public => format!("; joined {}: {public}", i.name),
            _ => format!(
                "; joined {}: every field to {admins} and when it is the caller's own, else {public}",
                i.name
            ),
        });
    }
    doc
}

/// The list query up to its WHERE clause (with joined rows), and its count.
fn list_sql(o: &DataObject, select: &str, includes: &[IncludePlan]) -> (String, String) {
    let mut head = format!("SELECT {select}");
    for i in includes {
        head.push_str(&format!(", {}", i.json_sql));
    }
    head.push_str(&format!(
        ", count(*) OVER () AS total_row_count FROM {} AS t",
        o.table
    ));
    for i in includes {
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
    (
        format!("{head}{filter}"),
        format!("SELECT count(*) FROM {} AS t{filter}", o.table),
    )
}

/// A search route's queries (list and count) and its plan.
fn search(m: &Model, name: &str, o: &DataObject) -> (String, String, SearchRoutePlan) {
    let (from, tail) = super::search::search_from(m, name, &o.table, o.soft_delete);
    let select = |rank: &str| {
        format!("SELECT d.doc || jsonb_build_object('extends', d.extends) AS document, ts_rank({rank}, q.query) AS rank, count(*) OVER () AS total_row_count{from}")
    };
    // (position among the searchable fields, name, public)
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
    // Callers who see only public fields match, and are ranked, only by
    // the keywords of the public searchable fields.
    let mut weights: Vec<&str> = searchable
        .iter()
        .filter(|(_, _, public)| *public)
        .map(|(i, _, _)| super::search::weight(*i))
        .collect();
    weights.dedup();
    let plan = SearchRoutePlan {
        search_tail: tail,
        index_name: index_name(m, name),
        es_fields: boosted(false),
        es_public_fields: boosted(true),
        public_weights: weights.concat(),
        list_sql_narrow: select(&format!(
            "ts_filter(d.search, '{{{}}}')",
            weights.join(",").to_lowercase()
        )),
        owner_key: owner_column(o).to_string(),
    };
    (select("d.search"), format!("SELECT count(*){from}"), plan)
}

/// The related rows a list route joins in, each under its own object's view.
fn includes(m: &Model, r: &Route, o: &DataObject) -> Vec<IncludePlan> {
    r.include
        .iter()
        .filter_map(|(name, inc)| {
            let target = field_of(o, &inc.via)?.references.as_deref()?;
            let t = m.object(target)?;
            Some(include(m, r, name, &inc.via, &inc.fields, target, t))
        })
        .collect()
}

fn include(
    m: &Model,
    r: &Route,
    name: &str,
    via: &str,
    names: &[String],
    target: &str,
    t: &DataObject,
) -> IncludePlan {
    let alias = format!("i_{}", snake(name));
    let fields = super::route::fields_named(t, names);
    let pairs = fields
        .iter()
        .map(|f| format!("'{}', {alias}.{}", f.name, f.column))
        .collect::<Vec<_>>()
        .join(", ");
    let ident = snake(name);
    let mut json_sql = format!(
        "CASE WHEN {alias}.id IS NULL THEN NULL ELSE json_build_object({pairs}) END AS {ident}"
    );
    // Joined rows follow their own object's view.
    let view = m.include_view(r, target);
    let sight = if m.view_narrows(&r.auth, view) {
        sight_expr(view)
    } else {
        String::new()
    };
    let owner_ident = format!("{ident}_owner");
    if !sight.is_empty() {
        json_sql.push_str(&format!(", {alias}.{} AS {owner_ident}", owner_column(t)));
    }
    let public: Vec<String> = names.iter().filter(|f| is_public(t, f)).cloned().collect();
    IncludePlan {
        sight,
        public_keys: rust_str_slice(&public),
        public_fields: public,
        view,
        owner_ident,
        name: name.to_string(),
        ident,
        struct_name: format!(
            "{}{}",
            camel(r.object.as_deref().unwrap_or_default()),
            camel(name)
        ),
        via_column: snake(via),
        target_table: t.table.clone(),
        target_soft_delete: t.soft_delete,
        json_sql,
        fields,
        alias,
    }
}
