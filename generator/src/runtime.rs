//! Where a generated crate finds svcgen-runtime, the library of what no model
//! changes. Inside this repository it is the `runtime/` folder beside the
//! generator, named by a relative path. A crate generated anywhere else gets
//! a copy of the runtime's sources (embedded in svcgen when it was built) in
//! its own `svcgen-runtime/` folder, as progenitor ships its client code:
//! the crate then builds on its own, with the runtime it was generated for.

use crate::format::{GeneratedFile, MARKER};
use std::path::{Component, Path, PathBuf};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/runtime_files.rs"));
}

/// The runtime's version: versioned with the generator, pinned exactly.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The runtime's folder as seen from a crate generated one level below the
/// repository root (`generated-service/`).
pub const WORKSPACE_PATH: &str = "../runtime";

/// The runtime's folder in this repository.
pub fn folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime")
}

/// The folder, inside a crate generated outside this repository, that holds
/// its copy of the runtime.
pub const COPY_DIR: &str = "svcgen-runtime";

/// The runtime's files, `(path relative to its folder, text)`: what a
/// generated crate builds with, by path or as a copy.
pub fn sources() -> &'static [(&'static str, &'static str)] {
    embedded::FILES
}

/// How a generated crate gets the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// The repository's `runtime/`, by a path relative to the crate.
    Path(String),
    /// A copy written into the crate's [`COPY_DIR`].
    Copy,
}

impl Link {
    /// How the crate in `out` gets the runtime: by path inside this
    /// repository, by a copy anywhere else.
    pub fn for_crate(out: &Path) -> std::io::Result<Self> {
        let from = normalize(&std::path::absolute(out)?);
        let runtime = normalize(&std::path::absolute(folder())?);
        let repository = runtime.parent().unwrap_or(&runtime);
        Ok(if from.starts_with(repository) {
            Self::Path(relative(&from, &runtime))
        } else {
            Self::Copy
        })
    }

    /// The path written in the crate's Cargo.toml (always with `/`).
    pub fn path(&self) -> &str {
        match self {
            Self::Path(p) => p,
            Self::Copy => COPY_DIR,
        }
    }

    /// The files to write beside the crate's own: the runtime's sources for a
    /// copy, each marked as generated so that an edit is overwritten and a
    /// file the runtime dropped is removed.
    pub fn files(&self) -> Vec<GeneratedFile> {
        if *self != Self::Copy {
            return Vec::new();
        }
        let note = format!(
            "{MARKER}: svcgen-runtime {VERSION}, copied for this crate. Do not edit: generate again."
        );
        embedded::FILES
            .iter()
            .map(|(path, text)| {
                let comment = if path.ends_with(".rs") { "//" } else { "#" };
                GeneratedFile {
                    path: format!("{COPY_DIR}/{path}"),
                    contents: format!("{comment} {note}\n\n{text}"),
                    once: false,
                }
            })
            .collect()
    }
}

/// `path` without `.` and `..` components (lexically: svcgen's own paths
/// hold no symbolic links that would change the answer).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn relative(from: &Path, to: &Path) -> String {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let ups = std::iter::repeat_n("..".to_string(), from.len() - common);
    let downs = to[common..]
        .iter()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    let parts: Vec<String> = ups.chain(downs).collect();
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crates_in_the_repository_name_the_runtime_relatively() {
        let root = folder().join("..");
        let link = |p: &str| Link::for_crate(&root.join(p)).unwrap();
        assert_eq!(link("generated-service").path(), WORKSPACE_PATH);
        assert_eq!(link("tests/library-service").path(), "../../runtime");
        assert!(link("generated-service").files().is_empty());
    }

    #[test]
    fn crates_elsewhere_get_a_marked_copy_of_the_whole_runtime() {
        let link = Link::for_crate(&std::env::temp_dir().join("svcgen-out")).unwrap();
        assert_eq!(link, Link::Copy);
        assert_eq!(link.path(), COPY_DIR);
        let files = link.files();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert!(paths.contains(&"svcgen-runtime/Cargo.toml"), "{paths:?}");
        assert!(paths.contains(&"svcgen-runtime/src/lib.rs"), "{paths:?}");
        let on_disk = std::fs::read_to_string(folder().join("src/envelope.rs")).unwrap();
        let copy = files
            .iter()
            .find(|f| f.path == "svcgen-runtime/src/envelope.rs")
            .unwrap();
        assert!(copy.contents.starts_with(&format!("// {MARKER}")));
        assert!(
            copy.contents.ends_with(&on_disk),
            "the copy is the runtime's text"
        );
    }

    #[test]
    fn relative_paths_climb_then_descend() {
        assert_eq!(relative(Path::new("/a/b/c"), Path::new("/a/x")), "../../x");
        assert_eq!(relative(Path::new("/a"), Path::new("/a/x/y")), "x/y");
        assert_eq!(relative(Path::new("/a"), Path::new("/a")), ".");
    }

    #[test]
    fn the_runtime_is_versioned_with_the_generator() {
        let manifest = std::fs::read_to_string(folder().join("Cargo.toml")).unwrap();
        let version = manifest
            .lines()
            .find_map(|l| l.strip_prefix("version = "))
            .map(|v| v.trim_matches('"'));
        assert_eq!(version, Some(VERSION));
    }
}
