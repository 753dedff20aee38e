//! svcgen: generates an event-driven Rust microservice (axum, sqlx, rdkafka)
//! from one YAML model.
//!
//! The pipeline is pure up to the last step:
//! load -> validate -> plan -> render -> format, returning the files;
//! only [`write`] touches the disk.

pub mod diag;
pub mod format;
pub mod load;
pub mod model;
pub mod openapi;
pub mod plan;
pub mod render;
pub mod spans;
pub mod validate;
pub mod write;

pub use diag::{ModelError, ModelErrors};
pub use format::GeneratedFile;

use anyhow::{Context, Result};
use std::path::Path;

/// Load and validate a model; every problem is reported at once.
pub fn check_model(file: &str, source: &str) -> Result<load::Loaded, ModelErrors> {
    let loaded = load::load(file, source)?;
    validate::validate(&loaded)?;
    Ok(loaded)
}

/// The whole pipeline on a model's text; `file` names it in errors and headers.
pub fn generate_str(file: &str, source: &str) -> Result<Vec<GeneratedFile>> {
    let loaded = check_model(file, source)?;
    let plan = plan::plan(file, &loaded.model);
    let mut rendered = render::render(&plan).context("rendering templates")?;
    let doc = openapi::document(&plan, &format::note(file));
    rendered.push(render::Rendered {
        path: "openapi.json".into(),
        template: "openapi.rs",
        text: serde_json::to_string_pretty(&doc)? + "\n",
    });
    rendered
        .into_iter()
        .map(|r| format::format(r, file))
        .collect()
}

/// Reads the model at `path` (named as `display` in errors and headers).
pub fn generate(path: &Path, display: &str) -> Result<Vec<GeneratedFile>> {
    let source =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    generate_str(display, &source)
}
