//! Hand-written code survives regeneration, and the compiler checks that it
//! still fits: each test copies the library service (with its hand-written
//! `src/hooks/loan.rs`) into a scratch folder, regenerates it there from a
//! changed model, and runs `cargo check` on the copy with this workspace's
//! Cargo.lock and target directory (so nothing is downloaded and little rebuilt).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MODEL: &str = include_str!("models/library.yaml");
const HOOKS: &str = "src/hooks/loan.rs";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("scratch folder");
    for entry in std::fs::read_dir(from).expect("readable crate") {
        let entry = entry.expect("entry");
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&src, &dst);
            }
        } else {
            std::fs::copy(&src, &dst).expect("copied");
        }
    }
}

/// A scratch copy of the committed library crate, removed on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("svcgen-hooks-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(
            &root().join("tests/library-service"),
            &dir.join("library-service"),
        );
        Self { dir }
    }

    fn crate_dir(&self) -> PathBuf {
        self.dir.join("library-service")
    }

    /// Generates the crate from `model`, as `cargo xtask gen` would.
    fn regenerate(&self, model: &str) -> generator::write::Report {
        let path = self.dir.join("library.yaml");
        std::fs::write(&path, model).expect("model written");
        let files = generator::generate(&path, "tests/models/library.yaml", &self.crate_dir())
            .expect("the changed model generates");
        generator::write::write(&self.crate_dir(), &files).expect("written")
    }

    fn cargo_check(&self) -> Output {
        self.cargo(&["check", "--message-format=short"])
    }

    /// Runs cargo (`check`, `clippy`, ...) on the copy.
    fn cargo(&self, args: &[&str]) -> Output {
        let crate_dir = self.crate_dir();
        std::fs::copy(root().join("Cargo.lock"), crate_dir.join("Cargo.lock")).expect("lock");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("target"));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        Command::new(cargo)
            .args(&args[..1])
            .arg("--manifest-path")
            .arg(crate_dir.join("Cargo.toml"))
            .args(&args[1..])
            .env("CARGO_TARGET_DIR", target)
            .env_remove("RUSTFLAGS")
            .output()
            .expect("cargo runs")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn replaced(text: &str, find: &str, replace: &str) -> String {
    assert_eq!(
        text.matches(find).count(),
        1,
        "{find:?} occurs once in the model"
    );
    text.replacen(find, replace, 1)
}

#[test]
fn regenerating_after_a_model_change_keeps_hand_written_files_and_compiles() {
    let scratch = Scratch::new("change");
    let committed = std::fs::read(root().join("tests/library-service").join(HOOKS)).unwrap();
    // A field added to book, accepted by addBook.
    let model = replaced(
        MODEL,
        "      details:\n        type: Object\n",
        "      details:\n        type: Object\n      publisher:\n        type: String\n        maxLength: 200\n",
    );
    let model = replaced(
        &model,
        "fields: [title, isbn, pages, shelf, details]",
        "fields: [title, isbn, pages, shelf, details, publisher]",
    );
    let report = scratch.regenerate(&model);
    assert!(
        report.written.iter().any(|f| f == "src/book.rs"),
        "{:?}",
        report.written
    );
    assert!(!report.written.iter().any(|f| f.starts_with("src/hooks/")));
    let after = std::fs::read(scratch.crate_dir().join(HOOKS)).expect("still there");
    assert!(after == committed, "{HOOKS} changed on regeneration");
    let out = scratch.cargo_check();
    assert!(
        out.status.success(),
        "the regenerated crate does not compile:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn renaming_a_hooked_route_is_a_compile_error_naming_the_hook() {
    let scratch = Scratch::new("rename");
    let model = replaced(MODEL, "  lendBook:\n", "  lendOut:\n");
    scratch.regenerate(&model);
    let out = scratch.cargo_check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a renamed hooked route still compiled"
    );
    // The hand-written method of the old name no longer fits the trait, and
    // the new name's hook is missing.
    assert!(
        stderr.contains("method `lend_book_before` is not a member of trait `LoanHooks`"),
        "{stderr}"
    );
    assert!(stderr.contains("lend_out_before"), "{stderr}");
    assert!(stderr.contains("src/hooks/loan.rs"), "{stderr}");
}

/// Every hook point of every kind of route, on public routes and ruled ones,
/// and custom routes with and without input (one answering through the owner
/// view): the generated calls and the stubs svcgen writes compile, clippy-clean.
#[test]
fn every_hook_point_and_its_stub_compile_clippy_clean() {
    let scratch = Scratch::new("every");
    let mut model = MODEL.to_string();
    for (find, replace) in [
        (
            "    fields: [email, secret]\n    auth: public",
            "    fields: [email, secret]\n    hooks: [input, before, after, committed]\n    auth: public",
        ),
        (
            "    event: book-fetched\n    auth: public",
            "    event: book-fetched\n    hooks: [row]\n    auth: public",
        ),
        (
            "    fields: [shelf]\n",
            "    fields: [shelf]\n    hooks: [input, before, after, committed]\n",
        ),
        ("    hooks: [before]\n", "    hooks: [before, after, committed]\n"),
        (
            "    hooks: [before, committed]\n",
            "    hooks: [input, before, after, committed]\n",
        ),
        ("    hooks: [input, before]\n", "    hooks: [input, before, after, committed]\n"),
        (
            "      book: { via: bookId, fields: [title, isbn] }\n",
            "      book: { via: bookId, fields: [title, isbn] }\n    hooks: [query, rows]\n",
        ),
        (
            "    publishes: [loan-returned]\n",
            "    publishes: [loan-returned]\n    hooks: [committed]\n",
        ),
        (
            "\nsearchIndexes:",
            "  renewLoans:\n    object: loan\n    action: custom\n    method: POST\n    path: /loans/renewals\n    event: loans-renewed\n    fields: [readerEmail, dueAt]\n    view: owner\n    auth: login\n\nsearchIndexes:",
        ),
    ] {
        model = replaced(&model, find, replace);
    }
    for hooks in ["loan", "book"] {
        std::fs::remove_file(scratch.crate_dir().join(format!("src/hooks/{hooks}.rs")))
            .expect("removed");
    }
    let report = scratch.regenerate(&model);
    for stub in [
        "src/hooks/librarian.rs",
        "src/hooks/book.rs",
        "src/hooks/loan.rs",
    ] {
        assert!(
            report.written.iter().any(|f| f == stub),
            "{stub}: {:?}",
            report.written
        );
    }
    let out = scratch.cargo(&["clippy", "--message-format=short", "--", "-D", "warnings"]);
    assert!(
        out.status.success(),
        "every hook stubbed does not compile clippy-clean:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
