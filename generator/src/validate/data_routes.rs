//! A route on a data object: the event it publishes, the object it works on,
//! and the keys only some data actions take (body fields, downloads,
//! callerFields, search, view, include).

use super::names::is_kebab;
use super::{an, field_names, object_names, Objects};
use crate::action::{Action, HookPoint, View};
use crate::diag::{one_of, Diagnostics};
use crate::model::{DataObject, FieldType, Include, Model, Route};
use std::collections::BTreeSet;

/// A route on a data object, with what its checks need to know. Built once
/// the object is known, so the checks on it need not each be handed the
/// same model, route, object and path.
pub(super) struct DataRoute<'a> {
    pub(super) m: &'a Model,
    pub(super) r: &'a Route,
    /// The object's name and definition.
    pub(super) name: &'a str,
    pub(super) object: &'a DataObject,
    /// `routes.<route name>`, where errors are located.
    pub(super) path: &'a str,
}

/// A route on a data object; which checks apply to which data actions reads
/// top to bottom. All but the event need the object, so they stop when the
/// route names none or an unknown one.
pub(super) fn data_route(m: &Model, objects: &Objects, r: &Route, path: &str, d: &mut Diagnostics) {
    event(r, path, d);
    let Some((name, object)) = route_object(objects, r, path, d) else {
        return;
    };
    let route = DataRoute {
        m,
        r,
        name,
        object,
        path,
    };
    route.body_fields(d);
    if r.action == Action::Create {
        route.fills_required(d);
    }
    if r.action == Action::Download {
        route.download(d);
    } else {
        route.no_download_keys(d);
    }
    if r.action == Action::Extend && !m.search_indexes.iter().any(|(n, _)| n == name) {
        d.at(
            format!("{path}.object"),
            format!("{name} is not indexed, so it has no documents to extend; add it under searchIndexes"),
        );
    }
    // Keys that fit some data actions only; each check says which.
    route.caller_fields(d);
    route.search(d);
    route.view(d);
    route.includes(objects, d);
    route.hooks(d);
    route.custom(d);
}

/// The route event: every data action but a download and an extend
/// publishes one of its own.
fn event(r: &Route, path: &str, d: &mut Diagnostics) {
    let action = r.action;
    match &r.event {
        // A download answers bytes, which no event carries; an extend
        // publishes the index's -extended event instead of a route event.
        None if !action.publishes_route_event() => {}
        Some(_) if !action.publishes_route_event() => d.at(
            format!("{path}.event"),
            format!(
                "{} route publishes no route event; remove `event`",
                an(action.name())
            ),
        ),
        None => d.at_key(
            path,
            "a data route needs an `event`: the route event it publishes",
        ),
        Some(e) if !is_kebab(e) => d.at(
            format!("{path}.event"),
            format!("event \"{e}\" must be kebab-case, e.g. \"user-created\""),
        ),
        _ => {}
    }
}

/// The data object the route names, when it names a known one.
fn route_object<'a>(
    objects: &Objects<'a>,
    r: &'a Route,
    path: &str,
    d: &mut Diagnostics,
) -> Option<(&'a str, &'a DataObject)> {
    let Some(object_name) = &r.object else {
        d.at_key(
            path,
            format!(
                "{} route needs an `object`: the data object it works on",
                an(r.action.name())
            ),
        );
        return None;
    };
    let Some(object) = objects.get(object_name.as_str()) else {
        d.at(
            format!("{path}.object"),
            format!(
                "unknown data object \"{object_name}\"; {}",
                one_of(&object_names(objects))
            ),
        );
        return None;
    };
    Some((object_name, object))
}

impl DataRoute<'_> {
    /// `fields`: what a create or update accepts, which an update must list;
    /// each a field of the object a client may set, listed once.
    fn body_fields(&self, d: &mut Diagnostics) {
        let (r, path) = (self.r, self.path);
        let action = r.action;
        let names = field_names(self.object);
        if !action.writes_fields() && !r.fields.is_empty() {
            d.at(
                format!("{path}.fields"),
                format!(
                    "fields lists what a create, update or custom route accepts; {} route accepts no body",
                    an(action.name())
                ),
            );
        }
        if action == Action::Update && r.fields.is_empty() {
            d.at_key(
                path,
                "an update route needs `fields`: the fields it may change",
            );
        }
        let mut seen = BTreeSet::new();
        for (i, f) in r.fields.iter().enumerate() {
            if !names.contains(&f.as_str()) {
                d.at(
                    format!("{path}.fields[{i}]"),
                    format!("unknown field \"{f}\" of {}; {}", self.name, one_of(&names)),
                );
            } else if self
                .object
                .fields
                .iter()
                .any(|(n, fd)| n == f && fd.computed.is_some())
            {
                d.at(
                    format!("{path}.fields[{i}]"),
                    format!(
                        "\"{f}\" is computed by the service and cannot be accepted from a client"
                    ),
                );
            } else if !seen.insert(f) {
                d.at(
                    format!("{path}.fields[{i}]"),
                    format!("\"{f}\" is listed twice"),
                );
            }
        }
    }

    /// `hooks`: points this kind of route offers, each named once; a search
    /// list (answered by Elasticsearch when mirrored) and a get of the public
    /// view (its own row type) take none.
    fn hooks(&self, d: &mut Diagnostics) {
        let (r, path) = (self.r, self.path);
        let offered = HookPoint::of(r.action);
        let names: Vec<&str> = offered.iter().map(|p| p.name()).collect();
        let mut seen = BTreeSet::new();
        for (i, h) in r.hooks.iter().enumerate() {
            let at = format!("{path}.hooks[{i}]");
            match HookPoint::parse(h) {
                _ if offered.is_empty() => d.at(
                    at,
                    format!("{} route has no hook points", an(r.action.name())),
                ),
                Some(p) if offered.contains(&p) => {
                    if !seen.insert(p.name()) {
                        d.at(at, format!("hook \"{h}\" is listed twice"));
                    }
                }
                _ => d.at(
                    at,
                    format!(
                        "unknown hook \"{h}\" for {} route; {}",
                        an(r.action.name()),
                        one_of(&names)
                    ),
                ),
            }
        }
        if !r.hooks.is_empty() && r.search {
            d.at(
                format!("{path}.hooks"),
                "a search list takes no hooks: the Elasticsearch mirror answers it without them",
            );
        }
        if !r.hooks.is_empty() && r.action == Action::Get && self.m.view_of(r) == View::Public {
            d.at(
                format!("{path}.hooks"),
                "a get of the public view takes no hooks; hook a get with the full or owner view",
            );
        }
    }

    /// `publishes` and `answer`: a custom route's events (kebab-case, each
    /// once) and what it answers (`object`).
    fn custom(&self, d: &mut Diagnostics) {
        let (r, path) = (self.r, self.path);
        if r.action != Action::Custom {
            if !r.publishes.is_empty() {
                d.at(
                    format!("{path}.publishes"),
                    "publishes lists a custom route's own events; other routes publish what their action does",
                );
            }
            if r.answer.is_some() {
                d.at(
                    format!("{path}.answer"),
                    "answer applies to custom routes; other routes answer what their action does",
                );
            }
            return;
        }
        let mut seen = BTreeSet::new();
        for (i, e) in r.publishes.iter().enumerate() {
            let at = format!("{path}.publishes[{i}]");
            if !is_kebab(e) {
                d.at(
                    at,
                    format!("event \"{e}\" must be kebab-case, e.g. \"loan-returned\""),
                );
            } else if Some(e) == r.event.as_ref() {
                d.at(
                    at,
                    format!("\"{e}\" is the route's own event; publishes lists the others its body publishes"),
                );
            } else if !seen.insert(e) {
                d.at(at, format!("event \"{e}\" is listed twice"));
            }
        }
        if let Some(answer) = &r.answer {
            if answer != "object" {
                d.at(
                    format!("{path}.answer"),
                    format!(
                        "unknown answer \"{answer}\"; expected \"object\" (a row of {})",
                        self.name
                    ),
                );
            }
        }
    }

    /// A create must accept every required field the service does not fill.
    fn fills_required(&self, d: &mut Diagnostics) {
        for (fname, f) in &self.object.fields {
            if f.required
                && f.default.is_none()
                && f.computed.is_none()
                && !self.r.fields.contains(fname)
            {
                d.at(format!("{}.fields", self.path), format!("required field \"{fname}\" has no default and is not accepted, so no row could be created; add it to fields"));
            }
        }
    }

    /// The keys of download routes: an object with a file, a `by` field that is an
    /// unguessable key, and a Cache-Control value.
    fn download(&self, d: &mut Diagnostics) {
        let (r, object, path) = (self.r, self.object, self.path);
        if object.file_field().is_none() {
            d.at(
                format!("{path}.object"),
                format!(
                    "{} holds no file: give one of its Blob fields a typeField",
                    self.name
                ),
            );
        }
        if let Some(by) = &r.by {
            let unguessable = object.fields.iter().any(|(n, f)| {
                n == by && matches!(&f.computed, Some(crate::model::Computed::Keyword(k)) if k == "randomKey")
            });
            if !unguessable {
                d.at(
                    format!("{path}.by"),
                    format!("\"{by}\" is not a randomKey field of {}; a file is fetched by id or by an unguessable key", self.name),
                );
            }
        }
        if r.cache_control
            .as_deref()
            .is_some_and(|c| c.trim().is_empty() || c.contains(['\r', '\n', '"']))
        {
            d.at(
                format!("{path}.cacheControl"),
                "not a Cache-Control value; expected e.g. \"private, no-cache\"",
            );
        }
    }

    /// `by` and `cacheControl` belong to download routes only.
    fn no_download_keys(&self, d: &mut Diagnostics) {
        let r = self.r;
        for (key, set) in [
            ("by", r.by.is_some()),
            ("cacheControl", r.cache_control.is_some()),
        ] {
            if set {
                d.at(
                    format!("{}.{key}", self.path),
                    format!("{key} applies to download routes, not {}", r.action),
                );
            }
        }
    }

    /// `callerFields` of create routes: reference fields of the object.
    fn caller_fields(&self, d: &mut Diagnostics) {
        let (r, path) = (self.r, self.path);
        if r.caller_fields.is_empty() {
            return;
        }
        let Some(user_object) = self.m.caller_object() else {
            // A replica whose source is itself in error is reported at its
            // consumer; saying it again here would only repeat that.
            let unresolved = r.caller_fields.iter().any(|f| {
                let target = self
                    .object
                    .fields
                    .iter()
                    .find(|(n, _)| n == f)
                    .and_then(|(_, fd)| fd.references.as_deref());
                target
                    .and_then(|t| self.m.replica_source(t))
                    .is_some_and(|c| {
                        let object = c.object.as_deref().unwrap_or_default();
                        self.m
                            .source(c.from.as_deref())
                            .and_then(|s| s.object(object))
                            .is_none()
                    })
            });
            // Without auth or trusts the service's own error says what is missing.
            if unresolved || (self.m.auth.is_none() && self.m.trusts.is_none()) {
                return;
            }
            d.at(
                format!("{path}.callerFields"),
                "callerFields name references to the account object: of a service with an auth section, or the replica of the issuer's accounts that a trusting service keeps (consumers); rows record their creator in _owner",
            );
            return;
        };
        if r.action != Action::Create {
            d.at(
                format!("{path}.callerFields"),
                format!("callerFields applies to create routes, not {}", r.action),
            );
            return;
        }
        for (i, f) in r.caller_fields.iter().enumerate() {
            let refs_caller = self
                .object
                .fields
                .iter()
                .any(|(n, fd)| n == f && fd.references.as_deref() == Some(user_object));
            if !refs_caller {
                d.at(
                    format!("{path}.callerFields[{i}]"),
                    format!(
                        "\"{f}\" is not a field of {} that references {user_object}",
                        self.name
                    ),
                );
            } else if !r.fields.contains(f) {
                d.at(
                    format!("{path}.callerFields[{i}]"),
                    format!("\"{f}\" is not accepted by this route; add it to fields"),
                );
            }
        }
    }

    /// `search`: a list route's keyword, over an indexed object's searchable fields.
    fn search(&self, d: &mut Diagnostics) {
        let (r, name, path) = (self.r, self.name, self.path);
        if !r.search {
            return;
        }
        if r.action != Action::List {
            d.at(
                format!("{path}.search"),
                format!("search applies to list routes, not {}", r.action),
            );
        }
        if !self.m.search_indexes.iter().any(|(n, _)| n == name) {
            d.at(
                format!("{path}.search"),
                format!("{name} is not indexed; add it under searchIndexes"),
            );
        }
        if !self.object.fields.iter().any(|(_, f)| f.searchable) {
            d.at(
                format!("{path}.search"),
                format!("{name} has no searchable field to search"),
            );
        }
    }

    /// `include`: rows a list route joins through the object's reference fields.
    fn includes(&self, objects: &Objects, d: &mut Diagnostics) {
        let (r, name, path) = (self.r, self.name, self.path);
        if !r.include.is_empty() && r.action != Action::List {
            d.at(
                format!("{path}.include"),
                format!("include applies to list routes, not {}", r.action),
            );
        }
        let names = field_names(self.object);
        for (iname, inc) in &r.include {
            let ipath = format!("{path}.include.{iname}");
            let via = self.object.fields.iter().find(|(n, _)| *n == inc.via);
            let Some(target) = via.and_then(|(_, f)| f.references.as_deref()) else {
                d.at(
                    format!("{ipath}.via"),
                    format!("\"{}\" is not a reference field of {name}", inc.via),
                );
                continue;
            };
            if names.contains(&iname.as_str()) {
                d.at_key(&ipath, format!("\"{iname}\" is already a field of {name}"));
            }
            if let Some(t) = objects.get(target) {
                self.included_fields(target, t, inc, &ipath, d);
            }
        }
    }

    /// The fields of joined rows: sent ones, and one the rows' view shows.
    fn included_fields(
        &self,
        target: &str,
        t: &DataObject,
        inc: &Include,
        ipath: &str,
        d: &mut Diagnostics,
    ) {
        let tnames = field_names(t);
        for (i, f) in inc.fields.iter().enumerate() {
            match t.fields.iter().find(|(n, _)| n == f) {
                None => d.at(
                    format!("{ipath}.fields[{i}]"),
                    format!("unknown field \"{f}\" of {target}; {}", one_of(&tnames)),
                ),
                Some((_, tf)) if tf.secret || tf.is(FieldType::Blob) => d.at(
                    format!("{ipath}.fields[{i}]"),
                    format!("\"{f}\" is a secret or blob field and is never sent"),
                ),
                _ => {}
            }
        }
        // Joined rows follow their own object's view.
        let view = self.m.include_view(self.r, target);
        let public = |f: &String| t.fields.iter().any(|(n, tf)| n == f && tf.public);
        if self.m.view_narrows(&self.r.auth, view) && !inc.fields.iter().any(public) {
            d.at(
                format!("{ipath}.fields"),
                format!("{target} rows follow view {view}, which shows some callers only public fields, and none of these is public; include one marked `public: true`"),
            );
        }
    }
}
