//! What changed in the contract between two models: routes, topics and the
//! fields of answers and events. Removals and type changes break consumers;
//! additions do not.

use crate::plan::{FieldPlan, Plan, TopicKind};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub breaking: bool,
    pub text: String,
}

fn change(breaking: bool, text: String) -> Change {
    Change { breaking, text }
}

fn fields(fs: &[FieldPlan]) -> BTreeMap<&str, (&str, bool)> {
    fs.iter()
        .map(|f| (f.name.as_str(), (f.json_type, f.nullable)))
        .collect()
}

/// Every difference that a client or a consumer of events can observe.
pub fn diff(old: &Plan, new: &Plan) -> Vec<Change> {
    let mut out = Vec::new();
    let old_routes: BTreeMap<&str, _> = old.routes.iter().map(|r| (r.name.as_str(), r)).collect();
    let new_routes: BTreeMap<&str, _> = new.routes.iter().map(|r| (r.name.as_str(), r)).collect();
    for (name, r) in &old_routes {
        match new_routes.get(name) {
            None => out.push(change(
                true,
                format!("route {name} ({} {}) was removed", r.method, r.path),
            )),
            Some(n) => {
                if (&n.method, &n.path) != (&r.method, &r.path) {
                    out.push(change(
                        true,
                        format!(
                            "route {name} moved from {} {} to {} {}",
                            r.method, r.path, n.method, n.path
                        ),
                    ));
                }
                if n.auth.summary != r.auth.summary {
                    out.push(change(
                        false,
                        format!(
                            "route {name} is now allowed to {} (was {})",
                            n.auth.summary, r.auth.summary
                        ),
                    ));
                }
                let old_inputs = fields(r.inputs());
                for f in n.inputs() {
                    let required = f.required
                        && f.default_rust.is_none()
                        && n.action == crate::action::Action::Create;
                    if !old_inputs.contains_key(f.name.as_str()) {
                        out.push(change(
                            required,
                            format!(
                                "route {name} accepts {}{}",
                                f.name,
                                if required { " and requires it" } else { "" }
                            ),
                        ));
                    }
                }
                for f in old_inputs.keys() {
                    if !n.inputs().iter().any(|i| i.name == *f) {
                        out.push(change(true, format!("route {name} no longer accepts {f}")));
                    }
                }
            }
        }
    }
    for name in new_routes.keys().filter(|n| !old_routes.contains_key(*n)) {
        let r = new_routes[name];
        out.push(change(
            false,
            format!("route {name} ({} {}) was added", r.method, r.path),
        ));
    }
    let old_topics: BTreeMap<&str, TopicKind> = old
        .topics
        .iter()
        .map(|t| (t.name.as_str(), t.kind))
        .collect();
    let new_topics: BTreeMap<&str, TopicKind> = new
        .topics
        .iter()
        .map(|t| (t.name.as_str(), t.kind))
        .collect();
    for (t, kind) in &old_topics {
        if !new_topics.contains_key(t) {
            out.push(change(
                true,
                format!("topic {t} ({kind}) is no longer published"),
            ));
        }
    }
    for (t, kind) in &new_topics {
        if !old_topics.contains_key(t) {
            out.push(change(false, format!("topic {t} ({kind}) is new")));
        }
    }
    for o in &old.objects {
        let Some(n) = new.objects.iter().find(|n| n.name == o.name) else {
            out.push(change(true, format!("data object {} was removed", o.name)));
            continue;
        };
        let (before, after) = (fields(&o.visible), fields(&n.visible));
        for (f, (ty, nullable)) in &before {
            match after.get(f) {
                None => out.push(change(
                    true,
                    format!("{}.{f} left answers and events", o.name),
                )),
                Some((nty, _)) if nty != ty => {
                    out.push(change(
                        true,
                        format!("{}.{f} changed type from {ty} to {nty}", o.name),
                    ));
                }
                Some((_, nnull)) if *nnull && !nullable => {
                    out.push(change(true, format!("{}.{f} may now be null", o.name)))
                }
                _ => {}
            }
        }
        for f in after.keys().filter(|f| !before.contains_key(*f)) {
            out.push(change(
                false,
                format!("{}.{f} was added to answers and events", o.name),
            ));
        }
    }
    for n in new
        .objects
        .iter()
        .filter(|n| !old.objects.iter().any(|o| o.name == n.name))
    {
        out.push(change(false, format!("data object {} was added", n.name)));
    }
    out.sort_by(|a, b| (!a.breaking, &a.text).cmp(&(!b.breaking, &b.text)));
    out
}

/// The report as text: breaking changes first.
pub fn report(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "the contract did not change\n".to_string();
    }
    let breaking = changes.iter().filter(|c| c.breaking).count();
    let mut out = format!("{} changes, {breaking} breaking\n", changes.len());
    for c in changes {
        out.push_str(&format!(
            "{} {}\n",
            if c.breaking { "BREAKING" } else { "        " },
            c.text
        ));
    }
    out
}
