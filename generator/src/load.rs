//! Load: YAML text -> typed model plus the positions of its keys.

use crate::diag::{ModelError, ModelErrors};
use crate::model::Model;
use crate::spans::Spans;

pub struct Loaded {
    pub file: String,
    pub model: Model,
    pub spans: Spans,
}

/// Parses `source` (read from `file`, which names it in errors).
pub fn load(file: &str, source: &str) -> Result<Loaded, ModelErrors> {
    let one = |line, column, path: String, message: String| {
        ModelErrors(vec![ModelError {
            file: file.to_string(),
            line,
            column,
            path,
            message,
        }])
    };
    let spans = Spans::parse(source).map_err(|(pos, msg)| {
        one(
            pos.line,
            pos.column,
            "(document)".into(),
            format!("invalid YAML: {msg}"),
        )
    })?;
    let model: Model = serde_yaml::from_str(source).map_err(|e| {
        let (path, message) = split_serde_message(&e.to_string());
        let (line, column) = match e.location() {
            Some(l) => (l.line(), l.column()),
            None => {
                let p = spans.key(&path);
                (p.line, p.column)
            }
        };
        one(line, column, path, message)
    })?;
    Ok(Loaded {
        file: file.to_string(),
        model,
        spans,
    })
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
            let key = &rest[..end];
            path = if path == "(root)" {
                key.to_string()
            } else {
                format!("{path}.{key}")
            };
        }
    }
    let message = message.replace('`', "\"");
    (path, message)
}
