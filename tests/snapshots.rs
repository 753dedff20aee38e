//! The generator's output: a snapshot of every file, determinism, freshness
//! of the committed crates, templates free of the auth model, quiet writes.

use generator::GeneratedFile;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The crate a model generates into.
fn out_dir(model: &str) -> PathBuf {
    root().join(match model {
        "model/auth-service.yaml" => "generated-service",
        "tests/models/listing.yaml" => "tests/listing-service",
        _ => "tests/library-service",
    })
}

/// Generates `model` against the migration history of its committed crate.
fn generate(model: &str) -> Vec<GeneratedFile> {
    generator::generate(&root().join(model), model, &out_dir(model)).expect("the model generates")
}

#[test]
fn every_generated_file_matches_its_snapshot() {
    let files = generate("model/auth-service.yaml");
    assert!(
        files.len() >= 17,
        "expected the whole crate, got {} files",
        files.len()
    );
    for f in &files {
        let name = format!("auth_service__{}", f.path.replace(['/', '.'], "_"));
        insta::assert_snapshot!(name, &f.contents);
    }
}

/// A service that trusts the auth service's tokens: what differs from an
/// issuer (its auth module, state, wiring, config, docs and contracts).
#[test]
fn the_trusting_service_matches_its_snapshots() {
    let files = generate("tests/models/listing.yaml");
    let mut seen = 0;
    for f in files
        .iter()
        .filter(|f| !f.path.starts_with(generator::runtime::COPY_DIR))
    {
        let name = format!("listing__{}", f.path.replace(['/', '.'], "_"));
        insta::assert_snapshot!(name, &f.contents);
        seen += 1;
    }
    assert!(seen >= 15, "expected the whole crate, got {seen} files");
    assert!(
        !files.iter().any(|f| f.path == "proto/session.proto"),
        "a trusting service publishes no session events"
    );
}

/// The hooks of the library model: the trait its loan module declares, the
/// generated `hooks` module, and the stub svcgen writes once for the user.
#[test]
fn hook_stubs_and_the_modules_they_implement_match_their_snapshots() {
    let files = generate("tests/models/library.yaml");
    for path in [
        "src/hooks.rs",
        "src/hooks/book.rs",
        "src/hooks/loan.rs",
        "src/loan.rs",
    ] {
        let f = files.iter().find(|f| f.path == path).expect(path);
        let name = format!("library__{}", path.replace(['/', '.'], "_"));
        insta::assert_snapshot!(name, &f.contents);
    }
}

/// Hand-written files (created once) are the only ones without the generated
/// marker, so no later run removes or overwrites them.
#[test]
fn hand_written_files_are_the_only_unmarked_ones() {
    let files = generate("tests/models/library.yaml");
    let once: Vec<&str> = files
        .iter()
        .filter(|f| f.once)
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(once, ["src/hooks/book.rs", "src/hooks/loan.rs"]);
    for f in &files {
        let marked = f.contents.lines().take(2).any(|l| l.contains("@generated"));
        assert_eq!(marked, !f.once, "{}", f.path);
    }
}

#[test]
fn no_snapshot_outlives_its_file() {
    for (model, prefix) in [
        ("model/auth-service.yaml", "auth_service"),
        ("tests/models/listing.yaml", "listing"),
    ] {
        let names: Vec<String> = generate(model)
            .iter()
            .map(|f| {
                format!(
                    "snapshots__{prefix}__{}.snap",
                    f.path.replace(['/', '.'], "_")
                )
            })
            .collect();
        let prefix = format!("snapshots__{prefix}__");
        for entry in std::fs::read_dir(root().join("tests/snapshots")).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                assert!(
                    names.contains(&name),
                    "{name} has no generated file; delete it"
                );
            }
        }
    }
}

/// What both models render alike belongs in svcgen-runtime, not in a
/// template: every Rust file a template renders for both models differs
/// beyond its header. build.rs is no template but the generator's one fixed
/// file (sqlx's `migrate!` needs it to rebuild when a migration is added).
#[test]
fn templates_render_only_what_the_model_decides() {
    let auth = generate("model/auth-service.yaml");
    let library = generate("tests/models/library.yaml");
    let body = |f: &GeneratedFile| f.contents.split_once('\n').map(|(_, b)| b.to_string());
    let mut same = Vec::new();
    for a in auth
        .iter()
        .filter(|f| f.path.ends_with(".rs") && f.path != "build.rs")
    {
        if a.path.starts_with(generator::runtime::COPY_DIR) {
            continue;
        }
        if let Some(l) = library.iter().find(|l| l.path == a.path) {
            if body(a) == body(l) {
                same.push(a.path.as_str());
            }
        }
    }
    assert!(same.is_empty(), "rendered alike for both models: {same:?}");
}

#[test]
fn two_runs_give_identical_bytes() {
    for model in [
        "model/auth-service.yaml",
        "tests/models/library.yaml",
        "tests/models/listing.yaml",
    ] {
        let a = generate(model);
        let b = generate(model);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.path, y.path);
            assert!(
                x.contents == y.contents,
                "{model}: {} differs between runs",
                x.path
            );
        }
    }
}

#[test]
fn committed_crates_are_what_the_models_produce() {
    for (model, out) in [
        ("model/auth-service.yaml", "generated-service"),
        ("tests/models/library.yaml", "tests/library-service"),
        ("tests/models/listing.yaml", "tests/listing-service"),
    ] {
        let stale = generator::write::check(&root().join(out), &generate(model)).expect("check");
        assert_eq!(out_dir(model), root().join(out));
        assert!(
            stale.is_clean(),
            "{out} is stale ({stale:?}); run `cargo xtask gen`"
        );
    }
}

#[test]
fn every_file_says_it_is_generated_and_from_what() {
    for f in generate("model/auth-service.yaml") {
        // JSON has no comments: its note is the second line's `x-generated` key.
        let head: Vec<&str> = f.contents.lines().take(2).collect();
        assert!(
            head.iter()
                .any(|l| l.contains("@generated by svcgen from model/auth-service.yaml")),
            "{} starts with {head:?}",
            f.path
        );
    }
}

/// Names of the auth model that only the model may contain.
fn auth_model_names() -> Vec<String> {
    let source = std::fs::read_to_string(root().join("model/auth-service.yaml")).unwrap();
    let loaded = generator::check_model("model/auth-service.yaml", &source).expect("valid model");
    let m = &loaded.model;
    let mut names = vec![
        m.service.name.clone(),
        m.topics.topic_prefix.clone(),
        m.topics.search_index_prefix.clone(),
    ];
    for (name, o) in &m.data_objects {
        names.push(name.clone());
        names.push(o.table.clone());
        names.extend(o.fields.iter().map(|(f, _)| f.clone()));
    }
    for (name, r) in &m.routes {
        names.push(name.clone());
        names.extend(r.event.clone());
    }
    // `email` is also the name of a field format; `userId` a key of the seed's
    // response envelope (the caller); the session seed's keys (`refreshToken`,
    // ...) are a contract of the generator. Templates may use those.
    names.retain(|n| {
        n != "email" && n != "userId" && !generator::validate::SESSION_FIELDS.contains(&n.as_str())
    });
    names
}

fn contains_word(text: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

#[test]
fn no_template_names_the_auth_model() {
    let names = auth_model_names();
    assert!(
        names.iter().any(|n| n == "userGroupMember"),
        "the model's names were read"
    );
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(root().join("templates")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        // Words of a format's own vocabulary that a model happens to use too.
        let vocabulary: &[(&str, &str)] = &[("kubernetes.yaml.j2", "metadata")];
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default();
        for name in &names {
            if vocabulary.contains(&(file, name.as_str())) {
                continue;
            }
            if contains_word(&text, name) {
                hits.push(format!("{} names {name:?}", path.display()));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "templates must take every name from the model:\n{}",
        hits.join("\n")
    );
}

#[test]
fn writes_touch_only_changed_files_and_remove_stale_ones() {
    let dir = std::env::temp_dir().join(format!("svcgen-write-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let files = generate("tests/models/library.yaml");
    let first = generator::write::write(&dir, &files).unwrap();
    assert_eq!(first.written.len(), files.len());

    let again = generator::write::write(&dir, &files).unwrap();
    assert!(
        again.written.is_empty() && again.removed.is_empty(),
        "{again:?}"
    );
    assert_eq!(again.unchanged, files.len());

    std::fs::write(dir.join("src/book.rs"), "// edited by hand\n").unwrap();
    let stale_header = &files[0].contents.lines().next().unwrap().to_string();
    std::fs::write(
        dir.join("src/old_object.rs"),
        format!("{stale_header}\npub struct Old;\n"),
    )
    .unwrap();
    std::fs::write(dir.join("src/hand_written.rs"), "pub struct Mine;\n").unwrap();
    let check = generator::write::check(&dir, &files).unwrap();
    assert_eq!(check.differing, ["src/book.rs"]);
    assert_eq!(check.extra, ["src/old_object.rs"]);

    let repair = generator::write::write(&dir, &files).unwrap();
    assert_eq!(repair.written, ["src/book.rs"]);
    assert_eq!(repair.removed, ["src/old_object.rs"]);
    assert!(
        dir.join("src/hand_written.rs").exists(),
        "files without the marker are never removed"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_contract_report_names_breaking_changes_first() {
    let old = std::fs::read_to_string(root().join("tests/models/library.yaml")).unwrap();
    let mut new = old.replacen(
        "      pages:\n        type: Integer\n        filterable: true\n",
        "",
        1,
    );
    new = new.replacen(
        "fields: [title, isbn, pages, shelf, details]",
        "fields: [title, isbn, shelf, details, subtitle]",
        1,
    );
    new = new.replacen(
        "      details:\n        type: Object\n",
        "      details:\n        type: Object\n      subtitle:\n        type: String\n",
        1,
    );
    new = new.replacen("event: books-found", "event: books-searched", 1);
    let plan = |text: &str| generator::plan_str("library.yaml", text).expect("valid model");
    let changes = generator::contract::diff(&plan(&old), &plan(&new));
    assert!(
        generator::contract::diff(&plan(&old), &plan(&old)).is_empty(),
        "a model does not differ from itself"
    );
    let breaking: Vec<&str> = changes
        .iter()
        .filter(|c| c.breaking)
        .map(|c| c.text.as_str())
        .collect();
    assert_eq!(
        breaking,
        [
            "book.pages left answers and events",
            "route addBook no longer accepts pages",
            "topic library.route.books-found (routeEvent) is no longer published"
        ]
    );
    insta::assert_snapshot!("contract_report", generator::contract::report(&changes));
}
