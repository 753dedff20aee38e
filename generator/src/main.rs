//! The svcgen command line: generate any model into any directory.

use anyhow::Result;
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "svcgen",
    about = "Generate a Rust microservice from a YAML model"
)]
struct Cli {
    /// The model file.
    model: PathBuf,
    /// The directory of the generated crate.
    #[arg(long, short)]
    out: PathBuf,
    /// Do not write; fail and name the stale files when `out` differs.
    #[arg(long)]
    check: bool,
    /// How the model is named in errors and file headers (default: its path).
    #[arg(long)]
    display_name: Option<String>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let name = cli
        .display_name
        .unwrap_or_else(|| cli.model.display().to_string());
    let files = generator::generate(&cli.model, &name, &cli.out)?;
    if cli.check {
        let s = generator::write::check(&cli.out, &files)?;
        if s.is_clean() {
            println!(
                "{} is up to date ({} files)",
                cli.out.display(),
                files.len()
            );
            return Ok(ExitCode::SUCCESS);
        }
        for (what, list) in [
            ("differs", &s.differing),
            ("is missing", &s.missing),
            ("is no longer generated", &s.extra),
        ] {
            for f in list {
                eprintln!("{}/{f} {what}", cli.out.display());
            }
        }
        eprintln!("generated files are not up to date; run `cargo xtask gen` and commit");
        return Ok(ExitCode::FAILURE);
    }
    let r = generator::write::write(&cli.out, &files)?;
    for f in &r.written {
        println!("wrote   {}/{f}", cli.out.display());
    }
    for f in &r.removed {
        println!("removed {}/{f}", cli.out.display());
    }
    println!(
        "{} files: {} written, {} removed, {} unchanged",
        files.len(),
        r.written.len(),
        r.removed.len(),
        r.unchanged
    );
    Ok(ExitCode::SUCCESS)
}
