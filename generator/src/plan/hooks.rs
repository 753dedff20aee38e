//! Hooks: where a route calls hand-written code, as the methods of its
//! object's hooks trait (`LoanHooks`), their calls in the generated handler,
//! and the stubs of the hand-written file (`src/hooks/loan.rs`).
//!
//! A method's parameters are decided once here, for the trait, the stub and
//! the call alike, so the three cannot disagree.

use super::route::{RouteKind, RoutePlan};
use crate::action::HookPoint;
use std::collections::{BTreeMap, BTreeSet};

/// The hook calls of one route; `None` where the route has no such hook.
#[derive(Debug, Clone, Default)]
pub struct RouteHooks {
    /// `<H: LoanHooks>` on a handler that calls hooks, else empty.
    pub generic: String,
    pub input: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub committed: Option<String>,
    /// A list's query hook, on the page's query and on the separate count.
    pub query: Option<String>,
    pub query_count: Option<String>,
    pub rows: Option<String>,
    pub row: Option<String>,
    /// A custom route's hand-written body.
    pub body: Option<String>,
    /// The methods of the object's trait these calls use, in order.
    pub methods: Vec<HookMethod>,
}

impl RouteHooks {
    pub fn any(&self) -> bool {
        !self.methods.is_empty()
    }

    /// The input hooks see the validated input as a struct (`values`).
    pub fn window_in(&self) -> bool {
        self.input.is_some()
    }

    pub fn window_before(&self) -> bool {
        self.before.is_some()
    }
}

/// One method of an object's hooks trait.
#[derive(Debug, Clone)]
pub struct HookMethod {
    pub name: String,
    pub doc: String,
    /// What the stub's body says to fill in.
    pub hint: String,
    pub params: Vec<Param>,
    /// `Result<(), ApiError>`, `()` or `Result<Loan, ApiError>`.
    pub output: String,
    pub is_async: bool,
    /// The stub's body: the default behaviour.
    pub stub_body: String,
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: &'static str,
    pub ty: String,
}

/// What a route's hooks work on, from its object's module.
pub struct Types<'a> {
    pub trait_name: &'a str,
    /// The object's row type, e.g. `Loan`.
    pub row: &'a str,
}

/// The calls and methods of `r`'s hooks (`points`, in the model's order; a
/// custom route's body first).
pub fn route_hooks(r: &RoutePlan, points: &[HookPoint], t: &Types) -> RouteHooks {
    let mut h = RouteHooks::default();
    let custom = matches!(r.kind, RouteKind::Custom(_));
    if points.is_empty() && !custom {
        return h;
    }
    h.generic = format!("<H: {}>", t.trait_name);
    let public = r.auth.is_public();
    let (who_params, who_args) = if public {
        (vec![param("ctx", "&RequestContext")], "&ctx")
    } else {
        (
            vec![param("ctx", "&RequestContext"), param("caller", "&Caller")],
            "&ctx, &caller",
        )
    };
    let caller_param = (!public).then(|| param("caller", "&Caller"));
    let caller_arg = if public { "" } else { ", &caller" };
    let tx_arg = "&mut Tx::new(&mut tx, &ctx)";
    let row = format!("&{}", t.row);
    let p = &r.type_prefix;
    let values = format!("{p}Values");
    let changes = format!("{p}Changes");
    let name = |point: &str| format!("{}_{point}", r.handler);
    let result = "Result<(), ApiError>".to_string();
    let refuse = "refuse with an `ApiError` (e.g. `svcgen_runtime::hooks::conflict(\"field\", \"why\")`): nothing is written and no event published";

    if let RouteKind::Custom(c) = &r.kind {
        let mut params = vec![param("tx", "&mut Tx<'_>")];
        params.extend(caller_param.clone());
        let mut args = vec![tx_arg.to_string()];
        if !public {
            args.push("&caller".into());
        }
        if c.has_id {
            params.push(param("id", "Uuid"));
            args.push("id".into());
        }
        if !c.inputs.is_empty() {
            params.push(param("input", &values));
            args.push("values".into());
        }
        h.body = Some(format!("H::{}({}).await?", r.handler, args.join(", ")));
        h.methods.push(HookMethod {
            name: r.handler.clone(),
            doc: format!(
                "`{}`: {} {}, the route's body, inside its transaction. Events published on `tx` go out with the route's event if it commits.",
                r.name, r.method, r.path
            ),
            hint: format!("do the route's work on `tx` and answer the {} it changed; {refuse}", t.row),
            params,
            output: format!("Result<{}, ApiError>", t.row),
            is_async: true,
            stub_body: format!("Err(ApiError::NotImplemented(\"{}\"))", r.name),
        });
    }

    for &point in points {
        let method = name(point.name());
        let mut params: Vec<Param> = Vec::new();
        let (doc, hint, output, is_async) = match (point, &r.kind) {
            (HookPoint::Input, RouteKind::Create(_) | RouteKind::Update(_)) => {
                let ty = match r.kind {
                    RouteKind::Create(_) => &values,
                    _ => &changes,
                };
                params.push(param("app", "&AppState"));
                params.extend(who_params.clone());
                params.push(param("input", &format!("&mut {ty}")));
                h.input = Some(format!(
                    "H::{method}(&app, {who_args}, &mut values).await?;"
                ));
                (
                    "after its input is validated, before any transaction: may refuse it or change it (secrets are not hashed yet)",
                    "check or change `input`; refuse with `Err(svcgen_runtime::hooks::invalid(\"field\", \"why\"))`",
                    result.clone(),
                    true,
                )
            }
            (HookPoint::Before, kind) => {
                params.push(param("tx", "&mut Tx<'_>"));
                params.extend(caller_param.clone());
                let args = match kind {
                    RouteKind::Create(_) => {
                        params.push(param("input", &format!("&{values}")));
                        "&values".to_string()
                    }
                    RouteKind::Update(_) => {
                        params.push(param("old", &row));
                        params.push(param("input", &format!("&{changes}")));
                        "&old, &values".to_string()
                    }
                    _ => {
                        params.push(param("old", &row));
                        "&old".to_string()
                    }
                };
                h.before = Some(format!("H::{method}({tx_arg}{caller_arg}, {args}).await?;"));
                (
                    "inside the write's transaction, before its statement: may read and write other tables and publish events on `tx`",
                    "lock what the rule reads (`SELECT ... FOR UPDATE`), check it, write and publish on `tx`; refuse with an `ApiError` to roll everything back",
                    result.clone(),
                    true,
                )
            }
            (HookPoint::After, kind) => {
                params.push(param("tx", "&mut Tx<'_>"));
                params.extend(caller_param.clone());
                let args = if matches!(kind, RouteKind::Update(_)) {
                    params.push(param("old", &row));
                    params.push(param("row", &row));
                    "&old, &row"
                } else {
                    params.push(param("row", &row));
                    "&row"
                };
                h.after = Some(format!("H::{method}({tx_arg}{caller_arg}, {args}).await?;"));
                (
                    "inside the write's transaction, after its statement (`row` is what it wrote): may read and write other tables and publish events on `tx`",
                    "write and publish on `tx`; refuse with an `ApiError` to roll everything back",
                    result.clone(),
                    true,
                )
            }
            (HookPoint::Committed, _) => {
                params.push(param("app", "&AppState"));
                params.push(param("ctx", "&RequestContext"));
                params.push(param("row", &row));
                h.committed = Some(format!("H::{method}(&app, &ctx, &row).await;"));
                (
                    "once the write committed, exactly once per committed write and never after a rollback; it cannot fail the request",
                    "tell the world (a mail, a cache, a metric); errors here are yours to log",
                    "()".to_string(),
                    true,
                )
            }
            (HookPoint::Query, RouteKind::List(_)) => {
                params.extend(who_params.clone());
                params.push(param("query", &format!("&{p}Query")));
                params.push(param("sql", "&mut QueryBuilder<'static, Postgres>"));
                h.query = Some(format!("H::{method}({who_args}, &q, &mut sql)?;"));
                h.query_count = Some(format!("H::{method}({who_args}, &q, &mut count)?;"));
                (
                    "narrows the list in SQL: push ` AND ...` conditions (with `push_bind` for values) onto its WHERE clause; the count and the pages follow",
                    "push conditions, e.g. `sql.push(\" AND t.column = \").push_bind(value);`",
                    result.clone(),
                    false,
                )
            }
            (HookPoint::Rows, RouteKind::List(l)) => {
                params.push(param("app", "&AppState"));
                params.extend(who_params.clone());
                params.push(param("rows", &format!("&mut [{}]", l.list_row)));
                h.rows = Some(format!("H::{method}(&app, {who_args}, &mut rows).await?;"));
                (
                    "shapes the page's rows before they are answered (and published); rows cannot be added or removed, so paging stays right",
                    "change what `rows` show",
                    result.clone(),
                    true,
                )
            }
            (HookPoint::Row, RouteKind::Get(_)) => {
                params.push(param("conn", "&mut PgConnection"));
                params.extend(who_params.clone());
                params.push(param("row", &format!("&mut {}", t.row)));
                h.row = Some(format!(
                    "H::{method}(&mut conn, {who_args}, &mut row).await?;"
                ));
                (
                    "the row read, on the connection that read it (no transaction): may refuse it or change what is answered",
                    "read more on `conn`, change `row`, or refuse with an `ApiError`",
                    result.clone(),
                    true,
                )
            }
            // Validation allows only the points a route's kind offers.
            _ => continue,
        };
        h.methods.push(HookMethod {
            name: method,
            doc: format!("`{}`, {doc}.", r.name),
            hint: hint.to_string(),
            params,
            stub_body: if output == "()" {
                String::new()
            } else {
                "Ok(())".to_string()
            },
            output,
            is_async,
        });
    }
    h
}

fn param(name: &'static str, ty: &str) -> Param {
    Param {
        name,
        ty: ty.to_string(),
    }
}

/// The `use` lines of a hand-written hooks file: what its stubs name.
pub fn stub_uses(module: &str, trait_name: &str, methods: &[HookMethod]) -> Vec<String> {
    let mut grouped: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut add = |path: &str, item: &str| {
        grouped
            .entry(path.to_string())
            .or_default()
            .insert(item.to_string());
    };
    add(&format!("crate::{module}"), trait_name);
    for m in methods {
        let types = m.params.iter().map(|p| p.ty.as_str());
        for ty in types.chain([m.output.as_str()]) {
            for word in ty.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                match word {
                    "" | "mut" | "static" | "Result" => {}
                    "AppState" => add("crate::state", word),
                    "RequestContext" => add("svcgen_runtime::envelope", word),
                    "Caller" => add("svcgen_runtime::auth", word),
                    "ApiError" => add("svcgen_runtime::error", word),
                    "Tx" => add("svcgen_runtime::hooks", word),
                    "PgConnection" | "Postgres" | "QueryBuilder" => add("sqlx", word),
                    "Uuid" => add("uuid", word),
                    w if w.starts_with(char::is_uppercase) => add(&format!("crate::{module}"), w),
                    _ => {}
                }
            }
        }
    }
    grouped
        .into_iter()
        .map(|(path, items)| {
            let items: Vec<String> = items.into_iter().collect();
            if items.len() == 1 {
                format!("{path}::{}", items[0])
            } else {
                format!("{path}::{{{}}}", items.join(", "))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stub_uses_name_each_type_once_grouped_by_module() {
        let m = HookMethod {
            name: "lend_book_before".into(),
            doc: String::new(),
            hint: String::new(),
            params: vec![
                param("tx", "&mut Tx<'_>"),
                param("caller", "&Caller"),
                param("input", "&LendBookValues"),
                param("row", "&Loan"),
            ],
            output: "Result<(), ApiError>".into(),
            is_async: true,
            stub_body: "Ok(())".into(),
        };
        assert_eq!(
            stub_uses("loan", "LoanHooks", &[m]),
            [
                "crate::loan::{LendBookValues, Loan, LoanHooks}",
                "svcgen_runtime::auth::Caller",
                "svcgen_runtime::error::ApiError",
                "svcgen_runtime::hooks::Tx",
            ]
        );
    }
}
