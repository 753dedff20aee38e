//! svcgen: generates an event-driven Rust microservice (axum, sqlx, rdkafka)
//! from one YAML model.
//!
//! The pipeline is pure up to the last step:
//! load -> validate -> plan -> render -> format, returning the files;
//! only [`write`] touches the disk.

pub mod action;
pub mod asyncapi;
pub mod contract;
pub mod diag;
pub mod format;
pub mod load;
pub mod migrate;
pub mod model;
pub mod naming;
pub mod openapi;
pub mod plan;
pub mod render;
pub mod runtime;
pub mod settings;
pub mod spans;
pub mod validate;
pub mod write;

pub use diag::{ModelError, ModelErrors};
pub use format::GeneratedFile;

use anyhow::{Context, Result};
use std::path::Path;

/// Load and validate a model; every problem is reported at once. The
/// models it `uses:` are read relative to `file` in the working directory.
pub fn check_model(file: &str, source: &str) -> Result<load::Loaded, ModelErrors> {
    check_model_in(Path::new(""), file, source)
}

/// [`check_model`], with `file` (and the models it uses) relative to `root`.
pub fn check_model_in(root: &Path, file: &str, source: &str) -> Result<load::Loaded, ModelErrors> {
    let mut loaded = load::load(file, source)?;
    load::load_used(root, &mut loaded)?;
    validate::validate(&loaded)?;
    Ok(loaded)
}

/// The plan of a valid model, for tools that compare models.
pub fn plan_str(file: &str, source: &str) -> Result<plan::Plan, ModelErrors> {
    let loaded = check_model(file, source)?;
    Ok(plan::plan(file, &loaded.model))
}

/// The whole pipeline on a model's text; `file` names it in errors and
/// headers, `history` holds the migrations already generated, `runtime` is
/// the path from the generated crate to svcgen-runtime.
pub fn generate_str(
    file: &str,
    source: &str,
    history: &migrate::History,
    runtime: &str,
) -> Result<Vec<GeneratedFile>> {
    generate_in(Path::new(""), file, source, history, runtime, None)
}

/// [`generate_str`], with `file` (and the models it uses) relative to `root`,
/// and rustfmt's outputs taken from and kept in `cache` when there is one.
pub fn generate_in(
    root: &Path,
    file: &str,
    source: &str,
    history: &migrate::History,
    runtime: &str,
    cache: Option<&format::Cache>,
) -> Result<Vec<GeneratedFile>> {
    let loaded = check_model_in(root, file, source)?;
    let mut plan = plan::plan(file, &loaded.model);
    plan.runtime.path = runtime.to_string();
    let mut rendered = render::render(&plan).context("rendering templates")?;
    let note = format::note(file);
    let doc = openapi::document(&plan, &note);
    rendered.push(render::Rendered {
        path: "openapi.json".into(),
        template: "openapi.rs",
        text: serde_json::to_string_pretty(&doc)? + "\n",
        once: false,
    });
    let events_doc = asyncapi::document(&plan, &note, &doc);
    rendered.push(render::Rendered {
        path: "asyncapi.json".into(),
        template: "asyncapi.rs",
        text: serde_json::to_string_pretty(&events_doc)? + "\n",
        once: false,
    });
    let schema = migrate::schema(&plan);
    let mut kept = Vec::new();
    match &history.lock {
        // No lock yet: the schema starts here, with one initial migration.
        None => rendered.push(render::migration(
            "migrations/0001_init.sql".into(),
            &migrate::initial(&plan, &schema),
        )?),
        Some(lock) => {
            kept.extend(
                history
                    .migrations
                    .iter()
                    .map(|(path, contents)| GeneratedFile {
                        path: path.clone(),
                        contents: contents.clone(),
                        once: false,
                    }),
            );
            let statements = migrate::diff(lock, &schema)?;
            if !statements.is_empty() {
                let path = format!(
                    "migrations/{:04}_{}.sql",
                    history.migrations.len() + 1,
                    migrate::slug(lock, &schema)
                );
                let m = migrate::MigrationPlan {
                    title: format!(
                        "Changes of the model since the previous migration of {}.",
                        plan.service.name
                    ),
                    statements,
                };
                rendered.push(render::migration(path, &m)?);
            }
        }
    }
    let lock = serde_json::json!({ "x-generated": note, "tables": schema.tables });
    rendered.push(render::Rendered {
        path: migrate::LOCK.into(),
        template: "migrate.rs",
        text: serde_json::to_string_pretty(&lock)? + "\n",
        once: false,
    });
    let mut files = format::format_all(rendered, file, cache)?;
    files.extend(kept);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Reads the model at `path` (named as `display` in errors and headers) and
/// the migration history of the crate in `out`.
pub fn generate(path: &Path, display: &str, out: &Path) -> Result<Vec<GeneratedFile>> {
    generate_cached(path, display, out, None)
}

/// [`generate`], with rustfmt's outputs taken from and kept in `cache`.
pub fn generate_cached(
    path: &Path,
    display: &str,
    out: &Path,
    cache: Option<&format::Cache>,
) -> Result<Vec<GeneratedFile>> {
    let source =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let history = write::read_history(out)?;
    let runtime = runtime::Link::for_crate(out).context("locating svcgen-runtime")?;
    // `path` is `display` under some root: the models it uses are read from there.
    let root = path
        .to_str()
        .and_then(|p| p.strip_suffix(display))
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    let mut files = generate_in(&root, display, &source, &history, runtime.path(), cache)?;
    files.extend(runtime.files());
    Ok(files)
}
