//! `cargo xtask <task>`: the project's chores, in Rust.
//!
//! - `gen`: generate `generated-service/` from `model/auth-service.yaml`.
//! - `check`: fail, naming the files, when `generated-service/` is stale.
//! - `test`: everything CI runs: fmt, clippy, check, and all tests.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const MODEL: &str = "model/auth-service.yaml";
const OUT: &str = "generated-service";

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    let root = root();
    std::env::set_current_dir(&root)?;
    match task.as_str() {
        "gen" => gen(),
        "check" => check(),
        "test" => test(),
        _ => {
            eprintln!("usage: cargo xtask <gen|check|test>");
            bail!("unknown task {task:?}")
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn gen() -> Result<()> {
    let files = generator::generate(Path::new(MODEL), MODEL)?;
    let report = generator::write::write(Path::new(OUT), &files)?;
    for f in &report.written {
        println!("wrote   {OUT}/{f}");
    }
    for f in &report.removed {
        println!("removed {OUT}/{f}");
    }
    println!(
        "{} files from {MODEL}: {} written, {} removed, {} unchanged",
        files.len(),
        report.written.len(),
        report.removed.len(),
        report.unchanged
    );
    Ok(())
}

fn check() -> Result<()> {
    let files = generator::generate(Path::new(MODEL), MODEL)?;
    let stale = generator::write::check(Path::new(OUT), &files)?;
    if stale.is_clean() {
        println!("{OUT}/ is up to date with {MODEL} ({} files)", files.len());
        return Ok(());
    }
    for f in &stale.differing {
        eprintln!("{OUT}/{f} was not up-to-date");
    }
    for f in &stale.missing {
        eprintln!("{OUT}/{f} is missing");
    }
    for f in &stale.extra {
        eprintln!("{OUT}/{f} is no longer generated");
    }
    bail!("{OUT}/ differs from what {MODEL} produces; run `cargo xtask gen` and commit")
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    println!("$ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed with {status}", args.join(" "));
    }
    Ok(())
}

fn test() -> Result<()> {
    run("cargo", &["fmt", "--all", "--check"])?;
    check()?;
    run(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    run("cargo", &["test", "--workspace", "--", "--test-threads=2"])
}
