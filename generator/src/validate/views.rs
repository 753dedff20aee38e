//! A reading route's view: which fields its answers show each caller.

use super::data_routes::DataRoute;
use crate::diag::{one_of, Diagnostics};
use crate::model::{Field, Route, View};

impl DataRoute<'_> {
    /// A reading route's view: a known one, on a reading route, and one whose
    /// narrowed answers still show something and search only what they show.
    pub(super) fn view(&self, d: &mut Diagnostics) {
        if let Some(view) = &self.r.view {
            if !named_view(self.r, view, self.path, d) {
                return;
            }
        }
        if self.m.narrows(self.r) {
            self.narrowed(d);
        }
    }

    /// A view that shows some callers only the public fields: the object needs
    /// one, and a search may match only public searchable fields.
    fn narrowed(&self, d: &mut Diagnostics) {
        let (r, name, object, path) = (self.r, self.name, self.object, self.path);
        let view = self.m.view_of(r);
        let whose = self.whose();
        let at = if r.view.is_some() {
            format!("{path}.view")
        } else {
            path.to_string()
        };
        let shows = if view == View::Public {
            "shows only the fields marked public"
        } else {
            "shows callers without an admin role only the fields marked public of rows they do not own"
        };
        let mut at_view = |message: String| {
            if r.view.is_some() {
                d.at(at.clone(), message);
            } else {
                d.at_key(at.clone(), message);
            }
        };
        if !object.fields.iter().any(|(_, f)| f.public) {
            at_view(format!(
                "{whose} {shows}, and {name} has none; mark fields `public: true` or use view full"
            ));
            return;
        }
        if !r.search {
            return;
        }
        let searchable: Vec<(&String, &Field)> = object
            .fields
            .iter()
            .filter(|(_, f)| f.searchable)
            .map(|(n, f)| (n, f))
            .collect();
        if !searchable.iter().any(|(_, f)| f.public) {
            at_view(format!("{whose} {shows}, so the keyword matches only public searchable fields, and no searchable field of {name} is; mark one `public: true` or use view full"));
        }
        shared_weight(&searchable, name, &whose, path, d);
    }

    /// The route's view, and where it comes from, for the messages.
    fn whose(&self) -> String {
        let view = self.m.view_of(self.r);
        let object_view = self.m.object_view(self.name);
        let source = match (&self.r.view, &self.object.view) {
            (Some(_), _) => None,
            (None, Some(_)) => Some(format!("the view of {}", self.name)),
            (None, None) => Some("the default of auth.userObject".to_string()),
        };
        match source {
            None => format!("view {view}"),
            Some(s) if view != object_view => {
                format!("view {view} ({s} is {object_view}, {view} on a public route)")
            }
            Some(s) => format!("view {view} ({s})"),
        }
    }
}

/// The view a route names: a known one, on a route that reads rows, and not
/// owner where the caller is unknown. False after an error.
fn named_view(r: &Route, view: &str, path: &str, d: &mut Diagnostics) -> bool {
    let action = r.action;
    let Some(named) = View::parse(view) else {
        d.at(
            format!("{path}.view"),
            format!("unknown view \"{view}\"; {}", one_of(&View::names())),
        );
        return false;
    };
    if !action.has_view() {
        d.at(
            format!("{path}.view"),
            format!("view applies to get, list and custom routes, not {action}"),
        );
        return false;
    }
    if named == View::Owner && r.auth.is_public() {
        d.at(
            format!("{path}.view"),
            "a public route does not know its caller, so it cannot tell the owner; use view public or full",
        );
        return false;
    }
    true
}

/// Searchable fields after the second share one weight in the search
/// vector, which is what restricts matching to the public ones.
fn shared_weight(
    searchable: &[(&String, &Field)],
    object_name: &str,
    whose: &str,
    path: &str,
    d: &mut Diagnostics,
) {
    let shared = searchable.get(2..).unwrap_or_default();
    if let Some((first, f)) = shared.first() {
        for (other, g) in &shared[1..] {
            if g.public != f.public {
                d.at(
                    format!("dataObjects.{object_name}.fields.{other}.searchable"),
                    format!("searchable fields after the second share one search weight, so under {whose} of {} they must all be public or all not; {first} is{} public, {other} is{} public", route_name(path), if f.public { "" } else { " not" }, if g.public { "" } else { " not" }),
                );
            }
        }
    }
}

/// `routes.searchUsers` -> `searchUsers`.
fn route_name(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}
