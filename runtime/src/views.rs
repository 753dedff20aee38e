//! What reading routes show each caller (the model's views): every field, or
//! only the fields marked public of the rows the caller may not see in full.
//! Filters, sorts and search matching follow the same line, so that a caller
//! cannot learn a hidden value by asking about it.

use crate::envelope::Filter;
use crate::error::{ApiError, FieldError};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

/// How a reading route narrows what it shows; a route a service does not
/// name in its table of views shows every field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Every field to admins and on the caller's own rows, the public fields elsewhere.
    Owner,
    /// The public fields of every row.
    Public,
}

/// How much of the rows a route reads a caller sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sight {
    /// Every field of every row.
    Full,
    /// Every field of the rows this account owns; the public fields of others.
    Own(Uuid),
    /// The public fields of every row.
    Public,
}

impl Sight {
    /// Under an `owner` view: admins see everything, others their own rows.
    pub fn owner_view(user_id: Uuid, admin: bool) -> Self {
        if admin {
            Sight::Full
        } else {
            Sight::Own(user_id)
        }
    }

    /// Whether every field of a row owned by `owner` is shown.
    pub fn sees_all_of(self, owner: Option<Uuid>) -> bool {
        match self {
            Sight::Full => true,
            Sight::Own(me) => owner == Some(me),
            Sight::Public => false,
        }
    }

    /// Whether every field of every row is shown.
    pub fn is_full(self) -> bool {
        self == Sight::Full
    }

    /// `full` for a caller who sees every field, else `narrowed`.
    pub fn pick<T>(self, full: T, narrowed: T) -> T {
        if self.is_full() {
            full
        } else {
            narrowed
        }
    }

    /// For the permissions listing: `full`, `own` or `public`.
    pub fn name(self) -> &'static str {
        match self {
            Sight::Full => "full",
            Sight::Own(_) => "own",
            Sight::Public => "public",
        }
    }
}

/// What a signed-in caller sees on the route called `route`, for the
/// permissions listing: `views` is the service's table of reading routes
/// whose view is not `full`; `user_id` and `admin` say who the caller is.
pub fn sight_on(views: &[(&str, View)], route: &str, user_id: Uuid, admin: bool) -> Sight {
    match views
        .iter()
        .find(|(name, _)| *name == route)
        .map(|(_, view)| *view)
    {
        Some(View::Public) => Sight::Public,
        Some(View::Owner) => Sight::owner_view(user_id, admin),
        None => Sight::Full,
    }
}

/// Keeps only `keys` of `object`.
pub fn narrow(object: &mut Map<String, Value>, keys: &[&str]) {
    object.retain(|k, _| keys.contains(&k.as_str()));
}

/// Narrows `object` to `keys` unless `sight` shows every field of a row owned by `owner`.
pub fn narrow_unless_owned(
    object: &mut Map<String, Value>,
    sight: Sight,
    owner: Option<Uuid>,
    keys: &[&str],
) {
    if !sight.sees_all_of(owner) {
        narrow(object, keys);
    }
}

/// Narrows a JSON document (a search hit) whose owner's id is under `owner_key`.
pub fn narrow_document(
    document: &mut Map<String, Value>,
    sight: Sight,
    owner_key: &str,
    keys: &[&str],
) {
    if sight == Sight::Full {
        return;
    }
    let owner = document
        .get(owner_key)
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok());
    narrow_unless_owned(document, sight, owner, keys);
}

/// A typed row as `sight` shows it: whole, or only `keys` (through JSON, so
/// only for callers who do not see every field).
pub fn shown<T: Serialize>(
    row: &T,
    sight: Sight,
    owner: Option<Uuid>,
    keys: &[&str],
) -> Result<Value, ApiError> {
    let mut value = serde_json::to_value(row).map_err(ApiError::internal)?;
    if let Value::Object(object) = &mut value {
        narrow_unless_owned(object, sight, owner, keys);
    }
    Ok(value)
}

/// A list's filters and sort may name only fields the caller sees in every
/// row (`keys`); otherwise the answer would tell hidden values apart. Every
/// offending parameter is named in one 400.
pub fn check_query(
    sight: Sight,
    keys: &[&str],
    filters: &[Filter],
    sort: Option<&str>,
) -> Result<(), ApiError> {
    if sight == Sight::Full {
        return Ok(());
    }
    let mut errors: Vec<FieldError> = filters
        .iter()
        .filter(|f| !keys.contains(&f.field))
        .map(|f| {
            FieldError::new(
                f.field,
                format!(
                    "cannot filter on {}: a field you may not see on every row",
                    f.field
                ),
            )
        })
        .collect();
    if let Some(field) = sort
        .map(|s| s.trim_start_matches('-'))
        .filter(|f| !keys.contains(f))
    {
        errors.push(FieldError::new(
            "sort",
            format!("cannot sort by {field}: a field you may not see on every row"),
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEYS: &[&str] = &["id", "name", "isActive"];

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn owner_view_sees_all_for_admins_and_own_rows_for_others() {
        let me = Uuid::new_v4();
        assert_eq!(Sight::owner_view(me, true), Sight::Full);
        let mine = Sight::owner_view(me, false);
        assert!(mine.sees_all_of(Some(me)));
        assert!(!mine.sees_all_of(Some(Uuid::new_v4())));
        assert!(!mine.sees_all_of(None));
        assert!(Sight::Full.sees_all_of(None) && Sight::Full.is_full() && !mine.is_full());
        assert!(!Sight::Public.sees_all_of(Some(me)));
        assert_eq!(mine.pick("all", "some"), "some");
        assert_eq!(Sight::Full.pick("all", "some"), "all");
        assert_eq!(
            [Sight::Full.name(), mine.name(), Sight::Public.name()],
            ["full", "own", "public"]
        );
    }

    #[test]
    fn the_permissions_listing_names_each_routes_sight() {
        const VIEWS: &[(&str, View)] =
            &[("listUsers", View::Owner), ("getBriefUser", View::Public)];
        let me = Uuid::new_v4();
        assert_eq!(sight_on(VIEWS, "listUsers", me, false), Sight::Own(me));
        assert_eq!(sight_on(VIEWS, "listUsers", me, true), Sight::Full);
        assert_eq!(sight_on(VIEWS, "getBriefUser", me, true), Sight::Public);
        assert_eq!(sight_on(VIEWS, "createUser", me, false), Sight::Full);
    }

    #[test]
    fn narrow_keeps_only_the_named_keys() {
        let mut o = object(json!({ "id": "a", "name": "Ann", "note": "a@x.io", "extends": {} }));
        narrow(&mut o, KEYS);
        assert_eq!(Value::Object(o), json!({ "id": "a", "name": "Ann" }));
    }

    #[test]
    fn documents_are_narrowed_unless_the_caller_owns_them() {
        let me = Uuid::new_v4();
        let doc = json!({ "id": me.to_string(), "name": "Me", "note": "me@x.io", "_score": 1.5 });
        let keys = &["id", "name", "_score"];
        let mut own = object(doc.clone());
        narrow_document(&mut own, Sight::Own(me), "id", keys);
        assert_eq!(Value::Object(own), doc, "the owner sees every field");
        let mut other = object(doc.clone());
        narrow_document(&mut other, Sight::Own(Uuid::new_v4()), "id", keys);
        assert_eq!(
            Value::Object(other),
            json!({ "id": me.to_string(), "name": "Me", "_score": 1.5 })
        );
        let mut unreadable = object(json!({ "id": "not a uuid", "note": "x" }));
        narrow_document(&mut unreadable, Sight::Own(me), "id", keys);
        assert_eq!(Value::Object(unreadable), json!({ "id": "not a uuid" }));
        let mut all = object(doc.clone());
        narrow_document(&mut all, Sight::Full, "id", keys);
        assert_eq!(Value::Object(all), doc);
    }

    #[test]
    fn typed_rows_are_shown_whole_or_narrowed() {
        #[derive(Serialize)]
        struct Row {
            id: u32,
            name: &'static str,
            note: &'static str,
        }
        let row = Row {
            id: 1,
            name: "Ann",
            note: "a@x.io",
        };
        let me = Uuid::new_v4();
        assert_eq!(
            shown(&row, Sight::Own(me), Some(me), KEYS).ok(),
            Some(json!({ "id": 1, "name": "Ann", "note": "a@x.io" }))
        );
        assert_eq!(
            shown(&row, Sight::Public, Some(me), KEYS).ok(),
            Some(json!({ "id": 1, "name": "Ann" }))
        );
    }

    #[test]
    fn filters_and_sorts_on_hidden_fields_are_refused_by_name() {
        let filter = |field: &'static str| Filter {
            field,
            op: "eq",
            value: json!(1),
        };
        let fields = |r: Result<(), ApiError>| match r {
            Err(ApiError::Validation(errors)) => {
                errors.iter().map(|e| e.field.clone()).collect::<Vec<_>>()
            }
            _ => Vec::new(),
        };
        let me = Sight::Own(Uuid::new_v4());
        assert!(check_query(me, KEYS, &[filter("name")], Some("-name")).is_ok());
        assert!(check_query(me, KEYS, &[], None).is_ok());
        assert_eq!(
            fields(check_query(
                me,
                KEYS,
                &[filter("note"), filter("name"), filter("rank")],
                Some("-createdAt")
            )),
            ["note", "rank", "sort"]
        );
        assert_eq!(
            fields(check_query(Sight::Public, KEYS, &[], Some("note"))),
            ["sort"]
        );
        assert!(check_query(Sight::Full, KEYS, &[filter("note")], Some("note")).is_ok());
    }
}
