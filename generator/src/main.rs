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
    /// Keep rustfmt's outputs in this folder and format only what changed
    /// since an earlier run (`SVCGEN_FORMAT_CACHE=off` turns it off).
    #[arg(long)]
    format_cache: Option<PathBuf>,
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
    let cache = match &cli.format_cache {
        Some(dir) => generator::format::Cache::open(dir)?,
        None => None,
    };
    let files = generator::generate_cached(&cli.model, &name, &cli.out, cache.as_ref())?;
    let out = cli.out.display().to_string();
    if cli.check {
        let s = generator::write::check(&cli.out, &files)?;
        if s.is_clean() {
            println!("{out} is up to date ({} files)", files.len());
            return Ok(ExitCode::SUCCESS);
        }
        for line in s.lines(&out) {
            eprintln!("{line}");
        }
        eprintln!("generated files are not up to date; run the generator and commit");
        return Ok(ExitCode::FAILURE);
    }
    generator::write::write(&cli.out, &files)?.print(&out, &name, files.len());
    Ok(ExitCode::SUCCESS)
}
