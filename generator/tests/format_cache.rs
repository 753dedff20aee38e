//! The format cache changes no byte of the output: a cached run equals an
//! uncached one, a corrupt entry is formatted again, and entries made for
//! another rustfmt are not used.

use generator::format::Cache;
use generator::GeneratedFile;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn generate(model: &str, cache: Option<&Cache>) -> Vec<(String, String)> {
    let source = std::fs::read_to_string(root().join(model)).expect("the model");
    let files = generator::generate_in(
        &root(),
        model,
        &source,
        &generator::migrate::History::default(),
        generator::runtime::WORKSPACE_PATH,
        cache,
    )
    .expect("the model generates");
    files
        .into_iter()
        .map(|GeneratedFile { path, contents, .. }| (path, contents))
        .collect()
}

fn rust_files(files: &[(String, String)]) -> usize {
    files.iter().filter(|(p, _)| p.ends_with(".rs")).count()
}

/// A fresh folder for one test's cache, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("svcgen-format-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Dir(dir)
    }

    fn entries(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.0, &mut out);
        out
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn cached_output_is_byte_for_byte_the_uncached_output() {
    for (name, model) in [
        ("auth", "model/auth-service.yaml"),
        ("library", "tests/models/library.yaml"),
    ] {
        let dir = Dir::new(name);
        let plain = generate(model, None);
        let n = rust_files(&plain);
        // The first run fills the cache, the second takes every file from it.
        let cold = Cache::open(&dir.0).expect("rustfmt answers").expect("on");
        assert_eq!(generate(model, Some(&cold)), plain, "{model}, cold cache");
        assert_eq!((cold.hits(), cold.misses()), (0, n), "{model}");
        let warm = Cache::open(&dir.0).expect("rustfmt answers").expect("on");
        assert_eq!(generate(model, Some(&warm)), plain, "{model}, warm cache");
        assert_eq!((warm.hits(), warm.misses()), (n, 0), "{model}");
    }
}

/// The library model, a fresh cache folder for `test`, the model's output
/// without a cache and how many Rust files it has.
fn library(test: &str) -> (&'static str, Dir, Vec<(String, String)>, usize) {
    let model = "tests/models/library.yaml";
    let plain = generate(model, None);
    let n = rust_files(&plain);
    (model, Dir::new(test), plain, n)
}

/// A printed entry holds the name of a formatted one: 64 hex digits.
fn is_printed_entry(path: &Path) -> bool {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_once('\n')
        .is_some_and(|(_, name)| name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[test]
fn a_rebuilt_svcgen_prints_again_and_finds_rustfmts_outputs() {
    let (model, dir, plain, n) = library("rebuilt");
    generate(model, Some(&Cache::for_rustfmt(&dir.0, "rustfmt")));
    let (printed, formatted): (Vec<_>, Vec<_>) =
        dir.entries().into_iter().partition(|e| is_printed_entry(e));
    assert_eq!((printed.len(), formatted.len()), (n, n));
    // Another build names itself otherwise: none of this build's printed
    // entries is found, as if they were gone.
    for entry in &printed {
        std::fs::remove_file(entry).expect("removed");
    }
    let rebuilt = Cache::for_rustfmt(&dir.0, "rustfmt");
    assert_eq!(generate(model, Some(&rebuilt)), plain);
    assert_eq!((rebuilt.hits(), rebuilt.misses()), (n, 0));
    assert_eq!(dir.entries().len(), 2 * n, "printed entries written again");
}

#[test]
fn a_corrupt_entry_is_a_miss_and_is_written_again() {
    let (model, dir, plain, n) = library("corrupt");
    let cache = || Cache::for_rustfmt(&dir.0, "rustfmt under test");
    generate(model, Some(&cache()));
    let entries = dir.entries();
    assert_eq!(entries.len(), 2 * n);
    // Each entry damaged its own way: emptied, cut short, one byte of its
    // text changed, not UTF-8.
    for (k, entry) in entries.iter().enumerate() {
        let bytes = std::fs::read(entry).expect("an entry");
        let damaged = match k % 4 {
            0 => Vec::new(),
            1 => bytes[..bytes.len() / 2].to_vec(),
            2 => {
                let mut b = bytes.clone();
                let last = b.len() - 2;
                b[last] = if b[last] == b'0' { b'1' } else { b'0' };
                b
            }
            _ => vec![0xff, 0xfe, b'\n', 0xff],
        };
        std::fs::write(entry, damaged).expect("damaged");
    }
    let damaged = cache();
    assert_eq!(generate(model, Some(&damaged)), plain);
    assert_eq!((damaged.hits(), damaged.misses()), (0, n));
    let mended = cache();
    assert_eq!(generate(model, Some(&mended)), plain);
    assert_eq!((mended.hits(), mended.misses()), (n, 0), "written again");
    // An entry that cannot be read or written at all (a folder in its
    // place) is a miss in every run.
    for entry in dir.entries() {
        std::fs::remove_file(&entry).expect("removed");
        std::fs::create_dir(&entry).expect("a folder");
    }
    let blocked = cache();
    assert_eq!(generate(model, Some(&blocked)), plain);
    assert_eq!((blocked.hits(), blocked.misses()), (0, n));
}

#[test]
fn entries_made_for_another_rustfmt_are_misses() {
    let (model, dir, plain, n) = library("version");
    generate(model, Some(&Cache::for_rustfmt(&dir.0, "rustfmt 1.0.0")));
    let same = Cache::for_rustfmt(&dir.0, "rustfmt 1.0.0");
    generate(model, Some(&same));
    assert_eq!((same.hits(), same.misses()), (n, 0));
    let other = Cache::for_rustfmt(&dir.0, "rustfmt 1.0.1");
    assert_eq!(generate(model, Some(&other)), plain);
    assert_eq!((other.hits(), other.misses()), (0, n));
}

/// Sets `path`'s modification time `ago` before now.
fn age(path: &Path, ago: std::time::Duration) {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("an entry");
    file.set_modified(std::time::SystemTime::now() - ago)
        .expect("a time");
}

#[test]
fn entries_no_run_used_for_a_month_are_pruned_once_a_day() {
    let model = "tests/models/listing.yaml";
    let day = std::time::Duration::from_secs(24 * 60 * 60);
    let dir = Dir::new("prune");
    let plain = generate(model, None);
    let filled = Cache::for_rustfmt(&dir.0, "a rustfmt");
    assert_eq!(generate(model, Some(&filled)), plain);
    // Every entry looks two months old; then a run uses them again.
    let used = dir.entries();
    for entry in &used {
        age(entry, 60 * day);
    }
    let stale = dir.0.join("v1").join("00").join("0".repeat(62));
    std::fs::create_dir_all(stale.parent().expect("a folder")).expect("a folder");
    std::fs::write(&stale, "an entry of a model since edited").expect("written");
    age(&stale, 31 * day);
    let again = Cache::for_rustfmt(&dir.0, "a rustfmt");
    assert_eq!(generate(model, Some(&again)), plain);
    assert_eq!(again.misses(), 0);

    let now = std::time::SystemTime::now();
    assert_eq!(again.prune_if_due(now), 1, "only the unused entry goes");
    assert!(!stale.exists());
    assert!(used.iter().all(|e| e.exists()), "used entries stay");
    // Pruned less than a day ago: not looked at again, however old.
    age(&used[0], 60 * day);
    assert_eq!(again.prune_if_due(now + day / 2), 0);
    assert!(used[0].exists());
    assert_eq!(again.prune_if_due(now + 2 * day), 1);
    assert!(!used[0].exists());
    // What is left still gives the same output; the pruned file is made again.
    let after = Cache::for_rustfmt(&dir.0, "a rustfmt");
    assert_eq!(generate(model, Some(&after)), plain);
}
