//! `cargo xtask <task>`: the project's chores, in Rust.
//!
//! - `gen`: generate `generated-service/` from `model/auth-service.yaml`.
//! - `check`: fail, naming the files, when `generated-service/` is stale.
//! - `test`: everything CI runs: fmt, clippy, check, and all tests.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every model the repository generates, and where its crate goes: the
/// service itself, and the second model that proves the generator general.
const TARGETS: &[(&str, &str)] = &[
    ("model/auth-service.yaml", "generated-service"),
    ("tests/models/library.yaml", "tests/library-service"),
];

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
    for &(model, out) in TARGETS {
        let files = generator::generate(Path::new(model), model, Path::new(out))?;
        let report = generator::write::write(Path::new(out), &files)?;
        for f in &report.written {
            println!("wrote   {out}/{f}");
        }
        for f in &report.removed {
            println!("removed {out}/{f}");
        }
        println!(
            "{} files from {model}: {} written, {} removed, {} unchanged",
            files.len(),
            report.written.len(),
            report.removed.len(),
            report.unchanged
        );
    }
    Ok(())
}

fn check() -> Result<()> {
    let mut stale_dirs = Vec::new();
    for &(model, out) in TARGETS {
        let files = generator::generate(Path::new(model), model, Path::new(out))?;
        let stale = generator::write::check(Path::new(out), &files)?;
        if stale.is_clean() {
            println!("{out}/ is up to date with {model} ({} files)", files.len());
            continue;
        }
        for f in &stale.differing {
            eprintln!("{out}/{f} was not up-to-date");
        }
        for f in &stale.missing {
            eprintln!("{out}/{f} is missing");
        }
        for f in &stale.extra {
            eprintln!("{out}/{f} is no longer generated");
        }
        stale_dirs.push(out);
    }
    if !stale_dirs.is_empty() {
        bail!(
            "{} differ from what their models produce; run `cargo xtask gen` and commit",
            stale_dirs.join(", ")
        );
    }
    Ok(())
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
