//! Where a generated crate finds svcgen-runtime, the library of what no model
//! changes. Inside this repository it is the `runtime/` folder beside the
//! generator; the generated crate names it by a relative path.

use std::path::{Component, Path, PathBuf};

/// The runtime's version: versioned with the generator, pinned exactly.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The runtime's folder as seen from a crate generated one level below the
/// repository root (`generated-service/`).
pub const WORKSPACE_PATH: &str = "../runtime";

/// The runtime's folder in this repository.
pub fn folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime")
}

/// The path from the crate in `out` to the runtime, as written in its
/// Cargo.toml (always with `/`).
pub fn path_from(out: &Path) -> std::io::Result<String> {
    let from = normalize(&std::path::absolute(out)?);
    let to = normalize(&std::path::absolute(folder())?);
    Ok(relative(&from, &to))
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
        assert_eq!(
            path_from(&root.join("generated-service")).unwrap(),
            WORKSPACE_PATH
        );
        assert_eq!(
            path_from(&root.join("tests/library-service")).unwrap(),
            "../../runtime"
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
