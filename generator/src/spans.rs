//! Positions of every key and value in the model's YAML, by key path.
//!
//! serde_yaml locates only its first deserialization error; validation errors
//! found later are pointed at their line through this map, which a second,
//! span-keeping parse (yaml-rust2) builds.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Default)]
pub struct Spans {
    keys: BTreeMap<String, Pos>,
    values: BTreeMap<String, Pos>,
    /// The second occurrence of a key that a mapping repeats.
    duplicates: BTreeMap<String, Pos>,
}

impl Spans {
    /// Parses `source`; a YAML syntax error is returned with its position.
    pub fn parse(source: &str) -> Result<Self, (Pos, String)> {
        let mut builder = Builder::default();
        Parser::new_from_str(source)
            .load(&mut builder, false)
            .map_err(|e| (pos(e.marker()), e.info().to_string()))?;
        Ok(builder.spans)
    }

    /// Where the value at `path` starts; falls back to its key, then to the
    /// nearest enclosing path that is in the document.
    pub fn value(&self, path: &str) -> Pos {
        self.lookup(path, true)
    }

    /// Where the key of `path` stands (for errors about the key itself).
    pub fn key(&self, path: &str) -> Pos {
        self.lookup(path, false)
    }

    /// Where `path`'s key stands the second time, if its mapping repeats it.
    pub fn duplicate(&self, path: &str) -> Option<Pos> {
        self.duplicates.get(path).copied()
    }

    fn lookup(&self, path: &str, prefer_value: bool) -> Pos {
        let mut p = path;
        loop {
            let found = if prefer_value {
                self.values.get(p).or_else(|| self.keys.get(p))
            } else {
                self.keys.get(p).or_else(|| self.values.get(p))
            };
            if let Some(pos) = found {
                return *pos;
            }
            match parent(p) {
                Some(up) => p = up,
                None => return Pos { line: 1, column: 1 },
            }
        }
    }
}

/// `a.b[2]` -> `a.b`, `a.b` -> `a`, `a` -> None.
fn parent(path: &str) -> Option<&str> {
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut])
}

fn pos(m: &Marker) -> Pos {
    Pos {
        line: m.line(),
        column: m.col() + 1,
    }
}

enum Frame {
    Mapping { key: Option<String> },
    Sequence { index: usize },
}

#[derive(Default)]
struct Builder {
    spans: Spans,
    stack: Vec<(String, Frame)>,
}

impl Builder {
    /// The path of a node that starts now, or None when it is a mapping key.
    fn node_path(&mut self, ev: &Event, mark: Marker) -> Option<String> {
        let Some((base, frame)) = self.stack.last_mut() else {
            return Some(String::new());
        };
        match frame {
            Frame::Mapping { key: key @ None } => {
                let name = match ev {
                    Event::Scalar(s, ..) => s.clone(),
                    _ => String::from("?"),
                };
                let path = join(base, &name);
                match self.spans.keys.entry(path) {
                    Entry::Vacant(slot) => {
                        slot.insert(pos(&mark));
                    }
                    Entry::Occupied(first) => {
                        let path = first.key().clone();
                        self.spans.duplicates.entry(path).or_insert(pos(&mark));
                    }
                }
                *key = Some(name);
                None
            }
            Frame::Mapping { key: Some(k) } => Some(join(base, k)),
            Frame::Sequence { index } => Some(format!("{base}[{index}]")),
        }
    }

    /// Marks the current node of the enclosing collection as complete.
    fn finish_node(&mut self) {
        match self.stack.last_mut() {
            Some((_, Frame::Mapping { key })) => *key = None,
            Some((_, Frame::Sequence { index })) => *index += 1,
            None => {}
        }
    }
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match &ev {
            Event::Scalar(..) | Event::Alias(_) => {
                if let Some(path) = self.node_path(&ev, mark) {
                    self.spans.values.entry(path).or_insert(pos(&mark));
                    self.finish_node();
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = self.node_path(&ev, mark).unwrap_or_default();
                self.spans.values.entry(path.clone()).or_insert(pos(&mark));
                let frame = if matches!(ev, Event::MappingStart(..)) {
                    Frame::Mapping { key: None }
                } else {
                    Frame::Sequence { index: 0 }
                };
                self.stack.push((path, frame));
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.finish_node();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_keys_values_and_items() {
        let src = "a:\n  b: 1\n  c: [x, y]\nd:\n  - e: 2\n";
        let s = Spans::parse(src).unwrap();
        assert_eq!(s.key("a.b"), Pos { line: 2, column: 3 });
        assert_eq!(s.value("a.b"), Pos { line: 2, column: 6 });
        assert_eq!(
            s.value("a.c[1]"),
            Pos {
                line: 3,
                column: 10
            }
        );
        assert_eq!(s.value("d[0].e"), Pos { line: 5, column: 8 });
        assert_eq!(s.value("a.missing"), s.value("a"));
        assert_eq!(s.duplicate("a.b"), None);
    }

    #[test]
    fn locates_a_repeated_key() {
        let s = Spans::parse("a:\n  b: 1\n  c: 2\n  b: 3\n").unwrap();
        assert_eq!(s.key("a.b"), Pos { line: 2, column: 3 });
        assert_eq!(s.duplicate("a.b"), Some(Pos { line: 4, column: 3 }));
    }
}
