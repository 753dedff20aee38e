//! The `use` lines of a generated module, built as sets of paths rather than
//! by string bookkeeping.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct Imports {
    /// Paths imported on a line of their own: `crate::auth::Caller`.
    paths: BTreeSet<&'static str>,
    /// Modules whose items share one line: `crate::envelope::{Paging, Reply}`.
    grouped: BTreeMap<&'static str, BTreeSet<&'static str>>,
}

impl Imports {
    /// Imports `path` on a line of its own.
    pub fn path(&mut self, path: &'static str) -> &mut Self {
        self.paths.insert(path);
        self
    }

    /// Imports `items` from `module` on one line shared with its other items.
    pub fn items(&mut self, module: &'static str, items: &[&'static str]) -> &mut Self {
        self.grouped.entry(module).or_default().extend(items);
        self
    }

    /// The `use` paths, sorted.
    pub fn lines(&self) -> Vec<String> {
        let grouped = self
            .grouped
            .iter()
            .filter(|(_, items)| !items.is_empty())
            .map(|(module, items)| {
                let items: Vec<&str> = items.iter().copied().collect();
                format!("{module}::{{{}}}", items.join(", "))
            });
        let mut lines: Vec<String> = self
            .paths
            .iter()
            .map(|p| p.to_string())
            .chain(grouped)
            .collect();
        lines.sort_unstable();
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_items_of_one_module_and_sorts_lines() {
        let mut i = Imports::default();
        i.items("crate::envelope", &["Reply", "Paging"])
            .path("axum::Router")
            .items("crate::envelope", &["Filter", "Reply"])
            .path("crate::auth::Caller")
            .path("axum::Router");
        assert_eq!(
            i.lines(),
            [
                "axum::Router",
                "crate::auth::Caller",
                "crate::envelope::{Filter, Paging, Reply}",
            ]
        );
    }

    #[test]
    fn a_group_with_nothing_imported_gives_no_line() {
        let mut i = Imports::default();
        i.items("crate::envelope", &[]);
        assert!(i.lines().is_empty());
    }
}
