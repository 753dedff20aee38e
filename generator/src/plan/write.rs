//! Writing routes (create, update, delete): the body they accept, the SQL
//! they run, uploads, the sessions they end and the role ranks they check.

use super::field::{columns_of, field_of, select_list, visible_of, FieldPlan};
use super::route::fields_named;
use super::rust_str_slice;
use crate::action::{Action, Revokes};
use crate::model::{DataObject, Identity, Model, Route};
use crate::naming::{camel, snake};

#[derive(Debug, Clone)]
pub struct CreatePlan {
    /// Body fields the route accepts.
    pub inputs: Vec<FieldPlan>,
    /// Identifiers of the inputs it must receive.
    pub required_inputs: Vec<String>,
    /// Computed fields it fills in.
    pub computed: Vec<FieldPlan>,
    pub insert_sql: String,
    /// Expressions bound to `insert_sql`'s parameters, in order.
    pub insert_binds: Vec<String>,
    /// Receives a file (multipart or JSON with base64).
    pub upload: Option<UploadPlan>,
    /// How `Debug` shows the body, when it carries a secret.
    pub redaction: Option<Redaction>,
    /// Reference fields that are the caller for non-admins.
    pub caller_fields: Vec<String>,
    pub ranks: RankPlan,
    /// The validated input as hooks see it (`LendBookValues`).
    pub values: Vec<ValueField>,
}

/// A field of the struct that carries a route's validated input to its hooks.
#[derive(Debug, Clone)]
pub struct ValueField {
    pub name: String,
    pub ident: String,
    pub ty: String,
}

/// How `Debug` shows a request body that carries secrets (the model's
/// `secret` fields, the current secret a change must prove): its other
/// fields as derived, the secrets only as given or not
/// (`svcgen_runtime::debug_redacted!`), so that a logged body leaks none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    /// Identifiers of the fields shown, comma-separated.
    pub plain: String,
    /// Identifiers of the secrets, comma-separated.
    pub secrets: String,
}

/// The redaction of a body of `inputs` and the `extra` fields (identifier,
/// secret or not) after them; `None` when nothing in it is secret.
pub(super) fn redaction(inputs: &[FieldPlan], extra: &[(&str, bool)]) -> Option<Redaction> {
    let fields = inputs
        .iter()
        .map(|f| (f.ident.as_str(), f.secret))
        .chain(extra.iter().copied());
    let (secrets, plain): (Vec<_>, Vec<_>) = fields.partition(|(_, secret)| *secret);
    let list = |fs: Vec<(&str, bool)>| {
        fs.into_iter()
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
            .join(", ")
    };
    (!secrets.is_empty()).then(|| Redaction {
        plain: list(plain),
        secrets: list(secrets),
    })
}

/// The inputs a create (or custom route) must receive: required, no default.
pub(super) fn required_idents(inputs: &[FieldPlan]) -> Vec<String> {
    inputs
        .iter()
        .filter(|f| f.required && f.default_rust.is_none())
        .map(|f| f.ident.clone())
        .collect()
}

/// What a create's (or custom route's) input holds once validated: required
/// and defaulted fields their type, the others optional; the upload's type
/// field the type sniffed from the bytes.
pub(super) fn validated(inputs: &[FieldPlan], upload: Option<&UploadPlan>) -> Vec<ValueField> {
    inputs
        .iter()
        .map(|f| {
            let sniffed = upload.is_some_and(|u| u.type_ident == f.ident);
            let certain = (f.required && f.default_rust.is_none()) || f.default_call.is_some();
            ValueField {
                name: f.name.clone(),
                ident: f.ident.clone(),
                ty: if sniffed {
                    "String".to_string()
                } else if certain {
                    f.rust_type.clone()
                } else {
                    format!("Option<{}>", f.rust_type)
                },
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct UpdatePlan {
    pub inputs: Vec<FieldPlan>,
    /// The test that the body names no field.
    pub nothing_to_change: String,
    /// The body field carrying the secret's current value ("" when not asked).
    pub confirm_field: String,
    /// `SELECT` of the stored hash of account $1, when `confirm_field` is set.
    pub secret_sql: String,
    /// When the change must prove the secret: a Rust test of the validated
    /// changes (always for the secret itself; for the second factor, when it
    /// is switched off), evaluated before the transaction.
    pub confirm_when: String,
    /// A Rust test, in the transaction with `old` locked, that the change would
    /// switch the second factor on for an unconfirmed address (decision
    /// reauthentication).
    pub second_factor_unverified: Option<String>,
    /// The second factor's body field, named by that refusal.
    pub second_factor_name: String,
    pub revokes: Revokes,
    /// The account's role field (identifier), when the route may change it:
    /// a change publishes sessionUpdated with the new role (decision role-changes).
    pub role_updates: Option<String>,
    pub ranks: RankPlan,
    /// The validated changes as hooks see them (`None`: unchanged).
    pub changes: Vec<ValueField>,
    /// How `Debug` shows the body, when it carries a secret.
    pub redaction: Option<Redaction>,
}

#[derive(Debug, Clone)]
pub struct DeletePlan {
    /// The body field carrying the caller's secret, which the delete must
    /// prove ("" when not asked), and the `SELECT` of its stored hash.
    pub confirm_field: String,
    pub secret_sql: String,
    pub revokes: Revokes,
    pub ranks: RankPlan,
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

pub fn create(m: &Model, r: &Route, name: &str, o: &DataObject) -> CreatePlan {
    let mut inputs = inputs(m, r, name, o);
    let upload = upload(m, r, o, &mut inputs);
    let columns = columns_of(o);
    let computed: Vec<FieldPlan> = columns
        .iter()
        .filter(|c| c.computed_rust.is_some())
        .cloned()
        .collect();
    let select = select_list(&visible_of(m, name, &columns), "t");
    let mut cols = vec!["id".to_string()];
    let mut insert_binds = vec!["id".to_string()];
    for f in inputs.iter().chain(computed.iter()) {
        cols.push(f.column.clone());
        insert_binds.push(f.ident.clone());
    }
    cols.push("_owner".into());
    insert_binds.push(
        if o.owner_is_self {
            "Some(id)"
        } else {
            "ctx.user_id"
        }
        .into(),
    );
    let params = (1..=cols.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    CreatePlan {
        insert_sql: format!(
            "INSERT INTO {} AS t ({}) VALUES ({params}) RETURNING {select}",
            o.table,
            cols.join(", ")
        ),
        insert_binds,
        required_inputs: required_idents(&inputs),
        values: validated(&inputs, upload.as_ref()),
        redaction: redaction(&inputs, &[]),
        inputs,
        computed,
        upload,
        caller_fields: r.caller_fields.iter().map(|f| snake(f)).collect(),
        ranks: ranks(m, r, name, o),
    }
}

/// The body field and `SELECT` of the caller's secret, when the route asks for it.
fn confirmation(m: &Model, r: &Route, o: &DataObject) -> (String, String) {
    let Some(secret) = m.auth.as_ref().map(|a| &a.password_field) else {
        return (String::new(), String::new());
    };
    if r.confirm_current {
        (
            format!("current{}", camel(secret)),
            format!(
                "SELECT t.{} FROM {} AS t WHERE t.id = $1",
                snake(secret),
                o.table
            ),
        )
    } else {
        (String::new(), String::new())
    }
}

pub fn update(m: &Model, r: &Route, name: &str, o: &DataObject) -> UpdatePlan {
    let inputs = inputs(m, r, name, o);
    let auth = m.auth.as_ref();
    let secret = auth.map_or("", |a| a.password_field.as_str());
    let (confirm_field, secret_sql) = confirmation(m, r, o);
    let is_user = m.is_user_object(name);
    let verification = auth
        .and_then(|a| a.verification.as_ref())
        .filter(|_| is_user);
    let second_factor = verification
        .and_then(|v| v.second_factor_field.as_ref())
        .and_then(|f| inputs.iter().find(|i| &i.name == f));
    // Switching the second factor off asks for the secret when it is on now.
    let confirm_when = match second_factor {
        Some(f) if !r.fields.iter().any(|x| x == secret) => {
            let i = &f.ident;
            if f.nullable {
                format!("{i}.is_some_and(|on| on != Some(true)) && fetch(&app.db, id).await?.{i} == Some(true)")
            } else {
                format!("{i} == Some(false) && fetch(&app.db, id).await?.{i}")
            }
        }
        _ => "true".to_string(),
    };
    // Switching it on needs a confirmed address, as it is or as this change sets it.
    let second_factor_unverified = second_factor.zip(verification).map(|(f, v)| {
        let on = if f.nullable {
            format!("{} == Some(Some(true))", f.ident)
        } else {
            format!("{} == Some(true)", f.ident)
        };
        let verified = snake(&v.verified_field);
        let stored_nullable = fields_named(o, std::slice::from_ref(&v.verified_field))
            .first()
            .is_some_and(|f| f.nullable);
        let changed = inputs.iter().any(|i| i.name == v.verified_field);
        let confirmed = match (changed, stored_nullable) {
            (true, true) => format!("{verified}.unwrap_or(old.{verified}) == Some(true)"),
            (true, false) => format!("{verified}.unwrap_or(old.{verified})"),
            (false, true) => format!("old.{verified} == Some(true)"),
            (false, false) => format!("old.{verified}"),
        };
        format!("{on} && !({confirmed})")
    });
    let changes: Vec<ValueField> = inputs
        .iter()
        .map(|f| ValueField {
            name: f.name.clone(),
            ident: f.ident.clone(),
            ty: if f.nullable {
                format!("Option<Option<{}>>", f.rust_type)
            } else {
                format!("Option<{}>", f.rust_type)
            },
        })
        .collect();
    let second_factor_name = second_factor.map(|f| f.name.clone()).unwrap_or_default();
    UpdatePlan {
        changes,
        nothing_to_change: inputs
            .iter()
            .map(|f| format!("input.{}.is_absent()", f.ident))
            .collect::<Vec<_>>()
            .join(" && "),
        redaction: if confirm_field.is_empty() {
            redaction(&inputs, &[("record_version", false)])
        } else {
            redaction(
                &inputs,
                &[("record_version", false), ("current_secret", true)],
            )
        },
        inputs,
        confirm_field,
        secret_sql,
        confirm_when,
        second_factor_unverified,
        second_factor_name,
        revokes: if is_user && r.fields.iter().any(|x| x == secret) {
            Revokes::Others
        } else {
            Revokes::None
        },
        role_updates: auth
            .filter(|a| is_user && r.fields.contains(&a.role_field))
            .map(|a| snake(&a.role_field)),
        ranks: ranks(m, r, name, o),
    }
}

pub fn delete(m: &Model, r: &Route, name: &str, o: &DataObject) -> DeletePlan {
    let (confirm_field, secret_sql) = confirmation(m, r, o);
    DeletePlan {
        confirm_field,
        secret_sql,
        revokes: if m.is_user_object(name) {
            Revokes::All
        } else {
            Revokes::None
        },
        ranks: ranks(m, r, name, o),
    }
}

/// The body fields of a create or update route; the account's secret
/// follows the common-password policy.
fn inputs(m: &Model, r: &Route, name: &str, o: &DataObject) -> Vec<FieldPlan> {
    let mut inputs = fields_named(o, &r.fields);
    if let Some(a) = m.auth.as_ref().filter(|a| a.user_object == name) {
        for f in inputs.iter_mut() {
            f.password_policy = a.reject_common_passwords && f.name == a.password_field;
        }
    }
    inputs
}

/// How a create route that accepts the object's file receives it.
fn upload(m: &Model, r: &Route, o: &DataObject, inputs: &mut [FieldPlan]) -> Option<UploadPlan> {
    let (blob_name, blob, type_field) = o.file_field()?;
    if !r.fields.contains(blob_name) {
        return None;
    }
    // The content type comes from the bytes; a declared one must agree.
    for f in inputs.iter_mut().filter(|f| &f.name == type_field) {
        f.required = false;
    }
    let allowed = field_of(o, type_field)
        .map(|f| f.allowed_values.clone())
        .unwrap_or_default();
    let max_bytes = blob.max_bytes.unwrap_or_default();
    let name_field = blob.name_field.clone().filter(|n| r.fields.contains(n));
    let json_fields: Vec<String> = inputs
        .iter()
        .filter(|f| !f.blob && f.json_type != "string")
        .map(|f| f.name.clone())
        .collect();
    Some(UploadPlan {
        blob_name: blob_name.clone(),
        blob_ident: snake(blob_name),
        type_ident: snake(type_field),
        name_ident: name_field.as_deref().map(snake),
        name_field,
        max_bytes,
        allowed: rust_str_slice(&allowed),
        json_fields: rust_str_slice(&json_fields),
        request_limit: max_bytes.div_ceil(3) * 4 + m.service.body_limit_bytes,
    })
}

/// Which rank checks a write needs: writes of the identity object, and
/// creates and deletes of rows that rewrite an account through `pointedBy`.
fn ranks(m: &Model, r: &Route, name: &str, o: &DataObject) -> RankPlan {
    if r.auth.is_public() {
        return RankPlan::default();
    }
    if let Some(a) = m.auth.as_ref().filter(|a| a.user_object == name) {
        return account_ranks(m, a, r, o);
    }
    RankPlan {
        pointed_account: pointed_account(m, r, o),
        ..RankPlan::default()
    }
}

/// The checks of a write of the identity object.
fn account_ranks(m: &Model, a: &Identity, r: &Route, o: &DataObject) -> RankPlan {
    let action = r.action;
    let sets_role = r.fields.contains(&a.role_field);
    let sets_secret = action == Action::Update && r.fields.contains(&a.password_field);
    let role = snake(&a.role_field);
    // An `Option<&str>` of the role the route sets, unless a create always has one.
    let filled = field_of(o, &a.role_field).is_some_and(|f| f.required || f.default.is_some());
    let optional = !(action == Action::Create && filled);
    let grants = if optional {
        format!("{role}.as_deref()")
    } else {
        format!("&{role}")
    };
    let confirming = m
        .routes
        .iter()
        .find(|(_, c)| c.confirm_current)
        .map(|(n, _)| n);
    RankPlan {
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
    }
}

/// The account a create or delete of a file object rewrites (`pointedBy`).
fn pointed_account(m: &Model, r: &Route, o: &DataObject) -> Option<String> {
    let p = o.pointed_by.as_ref()?;
    let via = field_of(o, &p.via)?;
    if via.references.as_deref() != m.user_object() {
        return None;
    }
    let ident = snake(&p.via);
    let value = match r.action {
        Action::Create if r.fields.contains(&p.via) => ident,
        Action::Delete => format!("old.{ident}"),
        _ => return None,
    };
    Some(if via.required {
        format!("Some({value})")
    } else {
        value
    })
}
