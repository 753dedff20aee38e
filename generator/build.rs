//! askama compiles the templates into the generator; rebuild when one changes.
//! The runtime's sources (and the data files they include) are embedded too,
//! so that a crate generated outside this repository gets a copy of the
//! runtime it was generated for.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=../templates");
    println!("cargo:rerun-if-changed=../runtime");
    // Read when the script runs, not baked in when it was compiled: cargo
    // shares a compiled build script between checkouts of the workspace.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo");
    let runtime = Path::new(&manifest_dir).join("../runtime");
    let mut files = vec![runtime.join("Cargo.toml")];
    sources(&runtime.join("src"), &mut files);
    files.sort();
    let mut out =
        String::from("/// The runtime's files, relative to its folder, and their text.\n");
    out.push_str("pub const FILES: &[(&str, &str)] = &[\n");
    for f in &files {
        let rel = f.strip_prefix(&runtime).expect("under the runtime");
        let rel = rel.to_string_lossy().replace('\\', "/");
        let abs = f.canonicalize().expect("a runtime file");
        writeln!(out, "    ({rel:?}, include_str!({:?})),", abs.display()).expect("a String");
    }
    out.push_str("];\n");
    let dest =
        PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("runtime_files.rs");
    std::fs::write(dest, out).expect("writing runtime_files.rs");
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("the runtime's src folder");
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs" || e == "txt") {
            out.push(path);
        }
    }
}
