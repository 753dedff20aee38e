//! askama compiles the templates into the generator; rebuild when one changes.
//! The runtime's sources (and the data files they include) are embedded too,
//! so that a crate generated outside this repository gets a copy of the
//! runtime it was generated for, with an index of its functions that read
//! settings (`settings::read`), made here once instead of in every run.

#[path = "src/settings/readers.rs"]
mod readers;

use std::collections::HashMap;
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
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    std::fs::write(out_dir.join("runtime_files.rs"), out).expect("writing runtime_files.rs");
    std::fs::write(out_dir.join("runtime_readers.rs"), reader_index(&files))
        .expect("writing runtime_readers.rs");
}

/// `READERS`: the bodies of the runtime's functions that take an `Env`,
/// by key, as Rust text, in the order `readers::index` finds them.
fn reader_index(files: &[PathBuf]) -> String {
    let mut index: HashMap<String, Vec<syn::Block>> = HashMap::new();
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "rs"))
    {
        let text = std::fs::read_to_string(f).expect("a runtime file");
        // A file that never names `Env` has no reader: skip parsing it.
        if text.contains("Env") {
            let parsed = syn::parse_file(&text).expect("the runtime's sources parse");
            readers::index(&parsed.items, &mut index);
        }
    }
    let mut keys: Vec<&String> = index.keys().collect();
    keys.sort();
    let mut out = String::from("pub const READERS: &[(&str, &str)] = &[\n");
    for key in keys {
        for block in &index[key] {
            let body = quote::ToTokens::to_token_stream(block).to_string();
            writeln!(out, "    ({key:?}, {body:?}),").expect("a String");
        }
    }
    out.push_str("];\n");
    out
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
