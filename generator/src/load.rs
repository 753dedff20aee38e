//! Load: YAML text -> typed model plus the positions of its keys.

use crate::diag::{ModelError, ModelErrors};
use crate::model::{AuthRule, Model};
use crate::spans::{Pos, Spans};
use serde::Deserialize;

pub struct Loaded {
    pub file: String,
    pub model: Model,
    pub spans: Spans,
}

/// Parses `source` (read from `file`, which names it in errors).
pub fn load(file: &str, source: &str) -> Result<Loaded, ModelErrors> {
    let one = |pos: Pos, path: String, message: String| {
        ModelErrors(vec![ModelError {
            file: file.to_string(),
            line: pos.line,
            column: pos.column,
            path,
            message,
        }])
    };
    let spans = Spans::parse(source)
        .map_err(|(pos, msg)| one(pos, "(document)".into(), syntax_message(&msg)))?;
    let model: Model = serde_yaml::from_str(source).map_err(|e| {
        let (pos, path, message) = schema_error(&e, source, &spans);
        one(pos, path, message)
    })?;
    Ok(Loaded {
        file: file.to_string(),
        model,
        spans,
    })
}

/// Loads the models `uses:` names, each relative to the model's own file
/// under `root`, into `loaded.model.used`. A used model must be valid on its
/// own; its own `uses:` are not followed (a consumer reads the topics of the
/// services it names, not theirs). Errors are located at `uses.<name>`.
pub fn load_used(root: &std::path::Path, loaded: &mut Loaded) -> Result<(), ModelErrors> {
    let mut d = crate::diag::Diagnostics::new(&loaded.file, &loaded.spans);
    let mut used = Vec::new();
    for (name, relative) in &loaded.model.uses {
        let display = used_path(&loaded.file, relative);
        let text = match std::fs::read_to_string(root.join(&display)) {
            Ok(text) => text,
            Err(e) => {
                d.at(
                    format!("uses.{name}"),
                    format!("cannot read {display} (relative to this model's folder): {e}"),
                );
                continue;
            }
        };
        let checked = load(&display, &text).and_then(|l| {
            crate::validate::validate(&l)?;
            Ok(l)
        });
        match checked {
            Ok(l) => used.push((name.clone(), l.model)),
            Err(errors) => {
                let first = errors
                    .0
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                d.at(
                    format!("uses.{name}"),
                    format!("{display} is not a valid model: {first}"),
                );
            }
        }
    }
    d.finish()?;
    loaded.model.used = used;
    Ok(())
}

/// `relative` joined to the folder of `file`, with `.` and `..` resolved
/// lexically: `tests/models` + `../../model/a.yaml` is `model/a.yaml`.
pub fn used_path(file: &str, relative: &str) -> String {
    let mut parts: Vec<&str> = file.split('/').collect();
    parts.pop();
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    parts.join("/")
}

/// The YAML parser's message, with a hint where its wording is cryptic.
fn syntax_message(msg: &str) -> String {
    let hint = match msg {
        "mapping values are not allowed in this context" => {
            " (check this line's indentation, or quote a value that contains \": \")"
        }
        _ => "",
    };
    format!("invalid YAML: {msg}{hint}")
}

/// Locates serde_yaml's (first) error and says what was expected.
fn schema_error(e: &serde_yaml::Error, source: &str, spans: &Spans) -> (Pos, String, String) {
    let (path, message) = split_serde_message(&e.to_string());
    if let Some(name) = message.strip_prefix("data did not match any variant of untagged enum ") {
        return untagged(name, &path, source, spans);
    }
    // Keywords parsed at load (an action, an auth keyword): serde locates
    // the route that holds them; point at the value itself.
    for (prefix, key) in [
        ("unknown action ", "action"),
        ("unknown auth rule ", "auth"),
    ] {
        if message.starts_with(prefix) {
            let path = join(&path, key);
            return (spans.value(&path), path, message);
        }
    }
    for prefix in ["duplicate key \"", "duplicate field \""] {
        if let Some(key) = message
            .strip_prefix(prefix)
            .and_then(|r| r.split('"').next())
        {
            let path = join(&path, key);
            let pos = spans.duplicate(&path).unwrap_or_else(|| spans.key(&path));
            let message = format!("duplicate key \"{key}\"; each key may appear only once here");
            return (pos, path, message);
        }
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        // Nothing to point at but the key of the mapping that lacks it.
        return (
            spans.key(&path),
            path,
            format!("missing required key {rest}"),
        );
    }
    let pos = match e.location() {
        Some(l) => Pos {
            line: l.line(),
            column: l.column(),
        },
        None => spans.key(&path),
    };
    (pos, path, message)
}

/// Deserializes one form of an untagged enum, for the error it gives.
type Refine = fn(&str) -> Option<serde_yaml::Error>;

/// An untagged enum accepts a keyword or a mapping; serde only says that
/// neither matched, and locates the enclosing mapping. This names the key,
/// says what is allowed and, for a mapping, reports the mapping's own error.
fn untagged(name: &str, path: &str, source: &str, spans: &Spans) -> (Pos, String, String) {
    let (key, expected, refine): (&str, &str, Refine) = match name {
        "Auth" => (
            "auth",
            "expected \"public\", \"login\", or a rule { roles: [...], owner: true }",
            |text| serde_yaml::from_str::<AuthRule>(text).err(),
        ),
        "Computed" => (
            "computed",
            "expected \"randomKey\" or { sizeOf: <Blob field> }",
            |text| serde_yaml::from_str::<SizeOf>(text).err(),
        ),
        _ => ("", "", |_| None),
    };
    let path = join(path, key);
    let value = serde_yaml::from_str::<serde_yaml::Value>(source)
        .ok()
        .and_then(|doc| lookup(&doc, &path).cloned());
    if let Some(value @ serde_yaml::Value::Mapping(_)) = value {
        let inner = serde_yaml::to_string(&value).ok().and_then(|t| refine(&t));
        if let Some(inner) = inner {
            let (sub, message) = split_serde_message(&inner.to_string());
            if sub == "(root)" {
                return (spans.value(&path), path, message);
            }
            let full = join(&path, &sub);
            let pos = if message.starts_with("unknown key") {
                spans.key(&full)
            } else {
                spans.value(&full)
            };
            return (pos, full, message);
        }
    }
    let message = if expected.is_empty() {
        format!("no form of {name} matches this value")
    } else {
        expected.to_string()
    };
    (spans.value(&path), path, message)
}

/// Mirrors `Computed::SizeOf`, to explain why a mapping is not one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SizeOf {
    #[serde(rename = "sizeOf")]
    _size_of: String,
}

/// The node at a dotted key path (mapping keys only).
fn lookup<'v>(doc: &'v serde_yaml::Value, path: &str) -> Option<&'v serde_yaml::Value> {
    path.split('.').try_fold(doc, |node, key| node.get(key))
}

fn join(base: &str, key: &str) -> String {
    if base == "(root)" || base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// Rewords serde's messages in the model's terms: YAML keys rather than
/// struct fields, and no Rust type names.
fn humanize(message: &str) -> String {
    let message = message
        .replace("unknown field \"", "unknown key \"")
        .replace("expected u64", "expected a whole number, 0 or more")
        .replace("expected u32", "expected a whole number, 0 or more");
    if let Some(rest) = message.strip_prefix("invalid type: integer \"-") {
        if let Some((number, expected)) = rest.split_once("\", ") {
            return format!("-{number} is negative; {expected}");
        }
    }
    message
}

/// serde_yaml says `a.b: unknown field `x`, expected ... at line 3 column 5`;
/// this returns the key path (with the unknown key appended) and the message.
fn split_serde_message(text: &str) -> (String, String) {
    let text = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => text,
    };
    let (mut path, message) = match text.split_once(": ") {
        Some((p, m)) if !p.contains(' ') => (p.to_string(), m.to_string()),
        _ => ("(root)".to_string(), text.to_string()),
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some(end) = rest.find('`') {
            path = join(&path, &rest[..end]);
        }
    }
    let message = humanize(&message.replace('`', "\""));
    (path, message)
}
