//! Migrations: the model's schema, and the SQL that takes a database from the
//! schema of the last generated migration to it.
//!
//! Migrations already generated are history: they are passed through byte for
//! byte and never edited. `migrations/schema.lock.json` records the schema they
//! produce; when the model's schema differs, a new migration is added.

use crate::plan::{IdentityPlan, Plan};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Where the lock lives, relative to the crate.
pub const LOCK: &str = "migrations/schema.lock.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub tables: Vec<Table>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    pub indexes: Vec<Index>,
    pub foreign_keys: Vec<ForeignKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub not_null: bool,
    pub default: Option<String>,
    pub primary_key: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub name: String,
    pub unique: bool,
    pub columns: String,
    pub partial: String,
    /// ` USING gin`, or empty for a btree.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub using: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKey {
    pub name: String,
    pub column: String,
    pub target: String,
}

/// Migrations already in the output directory, read by the caller.
#[derive(Debug, Default)]
pub struct History {
    /// `(path, contents)` of each `migrations/NNNN_*.sql`, in order.
    pub migrations: Vec<(String, String)>,
    pub lock: Option<Schema>,
}

/// One migration to render: a title and its statements.
#[derive(Debug)]
pub struct MigrationPlan {
    pub title: String,
    pub statements: Vec<Statement>,
}

#[derive(Debug)]
pub struct Statement {
    pub comment: String,
    pub sql: String,
}

pub fn schema(plan: &Plan) -> Schema {
    let tables = plan
        .objects
        .iter()
        .map(|o| Table {
            name: o.table.clone(),
            columns: o
                .columns
                .iter()
                .map(|c| Column {
                    name: c.column.clone(),
                    ty: c.sql_type.clone(),
                    not_null: !c.nullable && c.name != "id",
                    default: c.sql_default.clone(),
                    primary_key: c.name == "id",
                })
                .collect(),
            indexes: o
                .uniques
                .iter()
                .map(|u| Index {
                    name: u.constraint.clone(),
                    unique: true,
                    columns: u.columns.clone(),
                    partial: u.partial.clone(),
                    using: String::new(),
                })
                .chain(o.indexes.iter().map(|i| Index {
                    name: i.name.clone(),
                    unique: false,
                    columns: i.columns.clone(),
                    partial: i.partial.clone(),
                    using: String::new(),
                }))
                .collect(),
            foreign_keys: o
                .foreign_keys
                .iter()
                .map(|f| ForeignKey {
                    name: f.constraint.clone(),
                    column: f.column.clone(),
                    target: f.target_table.clone(),
                })
                .collect(),
        })
        .collect::<Vec<_>>();
    let mut tables = tables;
    tables.push(table(&runtime_tables::OUTBOX, ""));
    tables.push(table(&runtime_tables::SEARCH_DOCUMENTS, ""));
    if let Some(id) = &plan.identity {
        tables.extend(auth_tables(id));
    }
    if plan.consumers.is_some() {
        tables.push(table(&runtime_tables::INBOX, ""));
    }
    Schema { tables }
}

/// The runtime's tables, declared once in the runtime (a file without
/// imports, so the generator can include it).
#[path = "../../runtime/src/tables.rs"]
#[allow(dead_code)]
mod runtime_tables;

use runtime_tables::{TableDef, ACCOUNTS};

/// Tables the generated service owns beside the model's.
pub fn service_tables() -> impl Iterator<Item = &'static str> {
    runtime_tables::ALL.iter().map(|t| t.name)
}

/// A runtime table as the schema holds it; `accounts` is the model's
/// account table.
fn table(def: &TableDef, accounts: &str) -> Table {
    Table {
        name: def.name.into(),
        columns: def
            .columns
            .iter()
            .map(|c| Column {
                name: c.name.into(),
                ty: c.ty.into(),
                not_null: c.not_null,
                default: c.default.map(String::from),
                primary_key: c.primary_key,
            })
            .collect(),
        indexes: def
            .indexes
            .iter()
            .map(|i| Index {
                name: i.name.into(),
                unique: i.unique,
                columns: i.columns.into(),
                partial: i.partial.into(),
                using: i.using.into(),
            })
            .collect(),
        foreign_keys: def
            .foreign_keys
            .iter()
            .map(|f| ForeignKey {
                name: f.name.into(),
                column: f.column.into(),
                target: if f.target == ACCOUNTS {
                    accounts.into()
                } else {
                    f.target.into()
                },
            })
            .collect(),
    }
}

/// Sessions (with the model's device fields), rotating refresh tokens,
/// throttling counters and signing keys: state every replica shares; and
/// one-time codes when the model has verification flows.
fn auth_tables(id: &IdentityPlan) -> Vec<Table> {
    let accounts = id.user_table.as_str();
    let mut sessions = table(&runtime_tables::SESSIONS, accounts);
    let device = id.device_fields.iter().map(|f| Column {
        name: f.ident.clone(),
        ty: "text".into(),
        not_null: false,
        default: None,
        primary_key: false,
    });
    let at = runtime_tables::SESSION_DEVICE_COLUMNS_AT;
    sessions.columns.splice(at..at, device);
    let mut tables = vec![
        sessions,
        table(&runtime_tables::REFRESH_TOKENS, accounts),
        table(&runtime_tables::THROTTLE_BUCKETS, accounts),
        table(&runtime_tables::SIGNING_KEYS, accounts),
    ];
    if id.flows.is_some() {
        tables.push(table(&runtime_tables::VERIFICATION_CODES, accounts));
    }
    tables
}

fn column_decl(c: &Column) -> String {
    runtime_tables::column_sql(
        &c.name,
        &c.ty,
        c.primary_key,
        c.not_null,
        c.default.as_deref(),
    )
}

fn create_index(table: &str, i: &Index) -> Statement {
    let unique = if i.unique { "UNIQUE " } else { "" };
    Statement {
        comment: String::new(),
        sql: format!(
            "CREATE {unique}INDEX {} ON {table}{} ({}){};",
            i.name, i.using, i.columns, i.partial
        ),
    }
}

fn add_fk(table: &str, f: &ForeignKey) -> Statement {
    Statement {
        comment: String::new(),
        sql: format!(
            "ALTER TABLE {table} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} (id);",
            f.name, f.column, f.target
        ),
    }
}

fn create_table(t: &Table, comment: String) -> Vec<Statement> {
    let cols: Vec<String> = t
        .columns
        .iter()
        .map(|c| format!("    {}", column_decl(c)))
        .collect();
    let mut out = vec![Statement {
        comment,
        sql: format!("CREATE TABLE {} (\n{}\n);", t.name, cols.join(",\n")),
    }];
    out.extend(t.indexes.iter().map(|i| create_index(&t.name, i)));
    out
}

/// The migration that creates `schema` from nothing.
pub fn initial(plan: &Plan, schema: &Schema) -> MigrationPlan {
    let mut statements = Vec::new();
    for t in &schema.tables {
        let comment = match plan.objects.iter().find(|o| o.table == t.name) {
            Some(o) => format!("{}: {}", o.name, o.description),
            None => format!("{}: owned by the service itself", t.name),
        };
        statements.extend(create_table(t, comment));
    }
    for t in &schema.tables {
        statements.extend(t.foreign_keys.iter().map(|f| add_fk(&t.name, f)));
    }
    MigrationPlan {
        title: format!("Tables of {}.", plan.service.name),
        statements,
    }
}

/// The statements that take a database from `old` to `new`; none when equal.
pub fn diff(old: &Schema, new: &Schema) -> Result<Vec<Statement>> {
    let mut out = Vec::new();
    let mut fks = Vec::new();
    let find = |s: &Schema, name: &str| s.tables.iter().find(|t| t.name == name).cloned();
    for t in &new.tables {
        let Some(o) = find(old, &t.name) else {
            out.extend(create_table(t, format!("new table {}", t.name)));
            fks.extend(t.foreign_keys.iter().map(|f| add_fk(&t.name, f)));
            continue;
        };
        for f in &o.foreign_keys {
            if !t.foreign_keys.contains(f) {
                out.push(Statement {
                    comment: String::new(),
                    sql: format!("ALTER TABLE {} DROP CONSTRAINT {};", t.name, f.name),
                });
            }
        }
        for i in &o.indexes {
            if !t.indexes.contains(i) {
                out.push(Statement {
                    comment: String::new(),
                    sql: format!("DROP INDEX {};", i.name),
                });
            }
        }
        for c in &t.columns {
            match o.columns.iter().find(|oc| oc.name == c.name) {
                None => {
                    if c.not_null && c.default.is_none() {
                        bail!(
                            "the model adds required column {}.{} with no default, which existing rows cannot have; \
                             give the field a default, or add it as optional first",
                            t.name,
                            c.name
                        );
                    }
                    out.push(Statement {
                        comment: String::new(),
                        sql: format!("ALTER TABLE {} ADD COLUMN {};", t.name, column_decl(c)),
                    });
                }
                Some(oc) => out.extend(alter_column(&t.name, oc, c)),
            }
        }
        for oc in &o.columns {
            if !t.columns.iter().any(|c| c.name == oc.name) {
                out.push(Statement {
                    comment: format!("{}.{} left the model: its data is dropped", t.name, oc.name),
                    sql: format!("ALTER TABLE {} DROP COLUMN {};", t.name, oc.name),
                });
            }
        }
        for i in &t.indexes {
            if !o.indexes.contains(i) {
                out.push(create_index(&t.name, i));
            }
        }
        for f in &t.foreign_keys {
            if !o.foreign_keys.contains(f) {
                fks.push(add_fk(&t.name, f));
            }
        }
    }
    for o in &old.tables {
        if find(new, &o.name).is_none() {
            out.push(Statement {
                comment: format!("{} left the model: its data is dropped", o.name),
                sql: format!("DROP TABLE {} CASCADE;", o.name),
            });
        }
    }
    out.extend(fks);
    Ok(out)
}

fn alter_column(table: &str, old: &Column, new: &Column) -> Vec<Statement> {
    let alter = |what: String| Statement {
        comment: String::new(),
        sql: format!("ALTER TABLE {table} ALTER COLUMN {} {what};", new.name),
    };
    let mut out = Vec::new();
    if old.ty != new.ty {
        out.push(alter(format!(
            "TYPE {} USING {}::{}",
            new.ty, new.name, new.ty
        )));
    }
    if old.default != new.default {
        out.push(alter(match &new.default {
            Some(d) => format!("SET DEFAULT {d}"),
            None => "DROP DEFAULT".to_string(),
        }));
    }
    if old.not_null != new.not_null && !new.primary_key {
        out.push(alter(if new.not_null {
            "SET NOT NULL".into()
        } else {
            "DROP NOT NULL".into()
        }));
    }
    out
}

/// A file name part from the tables a change touches.
pub fn slug(old: &Schema, new: &Schema) -> String {
    let mut names: Vec<&str> = new
        .tables
        .iter()
        .filter(|t| !old.tables.contains(t))
        .map(|t| t.name.as_str())
        .collect();
    names.extend(
        old.tables
            .iter()
            .filter(|o| !new.tables.iter().any(|t| t.name == o.name))
            .map(|t| t.name.as_str()),
    );
    if names.is_empty() {
        "schema".to_string()
    } else {
        format!("alter_{}", names.join("_"))
    }
}
