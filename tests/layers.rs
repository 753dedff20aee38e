//! The modules of the runtime and of each generated crate layer without
//! cycles: a module names (`crate::x`) only modules below it. Run with
//! `--nocapture` to print each crate's layers, bottom first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Each module of the crate whose sources are in `src` (`auth::live` for
/// `src/auth/live.rs`), and the other modules it names.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    collect(src, &mut files);
    let module_of = |file: &Path| -> String {
        let rel = file
            .strip_prefix(src)
            .expect("under src")
            .with_extension("");
        let rel = rel.to_string_lossy().replace('\\', "/");
        rel.trim_end_matches("/mod").replace('/', "::")
    };
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| module_of(f))
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let from = module_of(file);
        if !modules.contains(&from) {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("a source file");
        let mut names = BTreeSet::new();
        // `super::x` in `a::b` names `a::x`; in a test module, `super::*` is
        // the file's own module.
        let parent = from.rsplit_once("::").map_or("", |(p, _)| p);
        let base = if parent.is_empty() {
            String::new()
        } else {
            format!("{parent}::")
        };
        let paths = text
            .match_indices("crate::")
            .map(|(i, m)| (i + m.len(), String::new()))
            .chain(
                text.match_indices("super::")
                    .map(|(i, m)| (i + m.len(), base.clone())),
            );
        for (start, prefix) in paths {
            let rest: String = text[start..]
                .chars()
                .take_while(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == ':'
                })
                .collect();
            let path = format!("{prefix}{rest}");
            // The longest module the path starts with.
            let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            let named = (1..=segments.len())
                .rev()
                .map(|n| segments[..n].join("::"))
                .find(|m| modules.contains(m));
            if let Some(to) = named {
                if to != from && !from.starts_with(&format!("{to}::")) {
                    names.insert(to);
                }
            }
        }
        graph.insert(from, names);
    }
    graph
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The modules in layers (each names only modules of lower layers), or a
/// cycle.
fn layers(graph: &BTreeMap<String, BTreeSet<String>>) -> Result<Vec<Vec<String>>, Vec<String>> {
    let mut placed: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out: Vec<Vec<String>> = Vec::new();
    while placed.len() < graph.len() {
        let layer: Vec<&String> = graph
            .iter()
            .filter(|(m, _)| !placed.contains_key(m.as_str()))
            .filter(|(_, names)| names.iter().all(|n| placed.contains_key(n.as_str())))
            .map(|(m, _)| m)
            .collect();
        if layer.is_empty() {
            return Err(cycle(graph, &placed));
        }
        for m in &layer {
            placed.insert(m, out.len());
        }
        out.push(layer.into_iter().cloned().collect());
    }
    Ok(out)
}

/// One cycle among the modules not placed in a layer.
fn cycle(
    graph: &BTreeMap<String, BTreeSet<String>>,
    placed: &BTreeMap<&str, usize>,
) -> Vec<String> {
    let left = |m: &str| !placed.contains_key(m);
    let mut path: Vec<String> = vec![graph.keys().find(|m| left(m)).cloned().unwrap_or_default()];
    loop {
        let last = path.last().cloned().unwrap_or_default();
        let next = graph[&last]
            .iter()
            .find(|n| left(n))
            .cloned()
            .unwrap_or_default();
        if let Some(i) = path.iter().position(|m| *m == next) {
            let mut cycle = path[i..].to_vec();
            cycle.push(next);
            return cycle;
        }
        path.push(next);
    }
}

fn assert_layered(crate_dir: &str) {
    let graph = graph(&root().join(crate_dir).join("src"));
    match layers(&graph) {
        Ok(layers) => {
            println!("{crate_dir}, bottom first:");
            for (i, layer) in layers.iter().enumerate() {
                println!("  {}: {}", i + 1, layer.join(", "));
            }
        }
        Err(cycle) => panic!("{crate_dir} has an import cycle: {}", cycle.join(" -> ")),
    }
}

#[test]
fn the_runtime_has_no_import_cycle() {
    assert_layered("runtime");
}

#[test]
fn the_auth_service_has_no_import_cycle() {
    assert_layered("generated-service");
}

#[test]
fn the_library_service_has_no_import_cycle() {
    assert_layered("tests/library-service");
}

#[test]
fn the_trusting_listing_service_has_no_import_cycle() {
    assert_layered("tests/listing-service");
}

#[test]
fn a_cycle_is_found_and_named() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("config", vec![]),
        ("app", vec!["auth", "config"]),
        ("auth", vec!["user"]),
        ("user", vec!["auth", "config"]),
    ]
    .into_iter()
    .map(|(m, n)| (m.to_string(), n.into_iter().map(String::from).collect()))
    .collect();
    let cycle = layers(&g).unwrap_err();
    assert_eq!(cycle.first(), cycle.last());
    assert!(cycle.contains(&"auth".to_string()) && cycle.contains(&"user".to_string()));
    assert!(!cycle.contains(&"config".to_string()));
}
