//! `cargo xtask <task>`: the project's chores, in Rust.
//!
//! - `gen`: generate `generated-service/` from `model/auth-service.yaml`.
//! - `check`: fail, naming the files, when `generated-service/` is stale.
//! - `test`: everything CI runs: fmt, clippy, check, `elsewhere`, and all tests,
//!   whose services log at debug level; then no log line may hold a secret the
//!   tests used (`logscan`).
//! - `scan-logs [DIR]`: that scan alone, of DIR or of the last run's logs.
//! - `elsewhere`: generate each model outside this repository, as a user would,
//!   and `cargo check` the crate there (with its copy of the runtime).
//! - `dev`: PostgreSQL, a local Kafka broker, a database, and the service running.
//! - `bench [generator|relay|service|trust|login]`: our figures beside baselines measured in the
//!   same run (release builds); all groups unless some are named.
//! - `contract-diff OLD NEW`: what changed in the contract between two models;
//!   exits non-zero when a change breaks clients or consumers.

mod logscan;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every model the repository generates, and where its crate goes: the
/// service itself, and the second model that proves the generator general.
const TARGETS: &[(&str, &str)] = &[
    ("model/auth-service.yaml", "generated-service"),
    ("tests/models/library.yaml", "tests/library-service"),
    ("tests/models/listing.yaml", "tests/listing-service"),
];

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    let invoked_in = std::env::current_dir()?;
    let root = root();
    std::env::set_current_dir(&root)?;
    match task.as_str() {
        "gen" => gen(),
        "check" => check(),
        "test" => test(),
        "scan-logs" => scan_logs_task(&invoked_in),
        "elsewhere" => elsewhere(),
        "dev" => dev(),
        "contract-diff" => contract_diff(&invoked_in),
        "bench" => bench(),
        _ => {
            eprintln!("usage: cargo xtask <gen|check|test|scan-logs [DIR]|elsewhere|dev|bench [generator|relay|service|trust|login]|contract-diff OLD NEW>");
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

/// Cargo's target directory for this workspace.
fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target"))
}

/// rustfmt's outputs from earlier runs, so that `gen` and `check` format
/// only the files whose text changed (`SVCGEN_FORMAT_CACHE=off` turns it off).
fn format_cache() -> Result<Option<generator::format::Cache>> {
    generator::format::Cache::open(&target_dir().join("svcgen-format-cache"))
}

fn gen() -> Result<()> {
    let cache = format_cache()?;
    for &(model, out) in TARGETS {
        let files =
            generator::generate_cached(Path::new(model), model, Path::new(out), cache.as_ref())?;
        generator::write::write(Path::new(out), &files)?.print(out, model, files.len());
    }
    Ok(())
}

fn check() -> Result<()> {
    let mut stale_dirs = Vec::new();
    let cache = format_cache()?;
    for &(model, out) in TARGETS {
        let files =
            generator::generate_cached(Path::new(model), model, Path::new(out), cache.as_ref())?;
        let stale = generator::write::check(Path::new(out), &files)?;
        if stale.is_clean() {
            println!("{out}/ is up to date with {model} ({} files)", files.len());
            continue;
        }
        for line in stale.lines(out) {
            eprintln!("{line}");
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

/// Generates every model into a fresh folder outside the repository with the
/// `svcgen` command, as a user would, and checks that the crate builds there
/// on its own: with its copy of the runtime, this workspace's Cargo.lock
/// (so no dependency moves) and target directory (so little is rebuilt).
fn elsewhere() -> Result<()> {
    let target = target_dir();
    run(
        "cargo",
        &["build", "--package", "generator", "--bin", "svcgen"],
    )?;
    let svcgen = target.join("debug/svcgen");
    for &(model, _) in TARGETS {
        let dir = std::env::temp_dir().join(format!("svcgen-elsewhere-{}", std::process::id()));
        let crate_dir = dir.join("service");
        let result = (|| {
            std::fs::create_dir_all(&dir)?;
            let out = crate_dir.to_string_lossy();
            run(&svcgen.to_string_lossy(), &[model, "--out", &out])?;
            std::fs::copy(root().join("Cargo.lock"), crate_dir.join("Cargo.lock"))?;
            let manifest = crate_dir.join("Cargo.toml");
            run(
                "cargo",
                &[
                    "check",
                    "--all-targets",
                    "--manifest-path",
                    &manifest.to_string_lossy(),
                ],
            )
        })();
        std::fs::remove_dir_all(&dir).ok();
        result.with_context(|| format!("{model} generated outside the repository"))?;
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
    elsewhere()?;
    // The fault and consumer tests run services as processes, to signal,
    // kill and restart them.
    run(
        "cargo",
        &[
            "build",
            "--package",
            "airbnb-auth-service",
            "--bin",
            "airbnb-auth-service",
            "--package",
            "airbnb-listing-service",
            "--bin",
            "airbnb-listing-service",
        ],
    )?;
    let logs = test_log_dir()?;
    let args = ["test", "--workspace", "--", "--test-threads=2"];
    println!(
        "$ {}={} cargo {}",
        LOG_DIR_VAR,
        logs.display(),
        args.join(" ")
    );
    let status = Command::new("cargo")
        .args(args)
        .env(LOG_DIR_VAR, &logs)
        .status()
        .context("running cargo test")?;
    if !status.success() {
        bail!(
            "`cargo {}` failed with {status} (the services' logs are in {})",
            args.join(" "),
            logs.display()
        );
    }
    scan_logs(&logs)
}

/// Where each run of the tests keeps its services' logs.
fn test_logs_root() -> PathBuf {
    target_dir().join("svcgen-test-logs")
}

/// Where the tests' services log, read by tests/common/capture.rs.
const LOG_DIR_VAR: &str = "SVCGEN_TEST_LOG_DIR";

/// A fresh log directory for this run of the tests,
/// `<target>/svcgen-test-logs/<unix time>`; earlier runs' go, so the logs of
/// the last run stay to be read and no more.
fn test_log_dir() -> Result<PathBuf> {
    let all = test_logs_root();
    if all.exists() {
        std::fs::remove_dir_all(&all).with_context(|| format!("{}", all.display()))?;
    }
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let dir = all.join(started.to_string());
    std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
    Ok(dir)
}

/// `cargo xtask scan-logs [DIR]`: DIR, or the newest run under the target directory.
fn scan_logs_task(invoked_in: &Path) -> Result<()> {
    let dir = match std::env::args().nth(2) {
        Some(dir) => invoked_in.join(dir),
        None => {
            let all = test_logs_root();
            let mut runs: Vec<PathBuf> = std::fs::read_dir(&all)
                .with_context(|| format!("no test logs in {}", all.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            runs.sort();
            runs.pop()
                .with_context(|| format!("no run in {}", all.display()))?
        }
    };
    scan_logs(&dir)
}

/// Fails, naming file, line and kind, when a log line holds a recorded secret.
fn scan_logs(dir: &Path) -> Result<()> {
    let scan = logscan::scan(dir)?;
    for leak in &scan.leaks {
        eprintln!("{leak}");
    }
    println!(
        "secret scan: {} log lines ({:.1} MB, {} files) checked for {} secrets: {} found",
        scan.lines,
        scan.bytes as f64 / 1e6,
        scan.files,
        scan.secrets,
        scan.leaks.len()
    );
    if !scan.leaks.is_empty() {
        bail!(
            "{} log lines hold a secret the tests used (logs in {})",
            scan.leaks.len(),
            dir.display()
        );
    }
    Ok(())
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Brings the whole thing up on this machine and runs the service.
fn dev() -> Result<()> {
    const DB: &str = "airbnb_auth_dev";
    const BROKER_PORT: u16 = 9092;
    if !succeeds("pg_isready", &["-h", "127.0.0.1", "-p", "5432"]) {
        println!("starting the local PostgreSQL cluster");
        let version = std::fs::read_dir("/etc/postgresql")
            .context("PostgreSQL is not running and no local cluster is installed")?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .next()
            .context("no cluster under /etc/postgresql")?;
        run(
            "pg_ctlcluster",
            &["--skip-systemctl-redirect", &version, "main", "start"],
        )?;
    }
    let exists = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-tAc",
            &format!("SELECT 1 FROM pg_database WHERE datname = '{DB}'"),
            "postgres",
        ])
        .output()
        .context("running psql")?;
    if String::from_utf8_lossy(&exists.stdout).trim() != "1" {
        run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-c",
                &format!("CREATE DATABASE {DB}"),
                "postgres",
            ],
        )?;
    }
    if !port_open(BROKER_PORT) {
        let home = std::env::var("HOME").unwrap_or_default();
        let tansu = Path::new(&home).join(".cargo/bin/tansu");
        if !tansu.exists() && !succeeds("tansu", &["--version"]) {
            println!("installing the tansu broker (about 15 minutes, once)");
            run(
                "cargo",
                &["install", "--locked", "tansu", "--features", "dynostore"],
            )?;
        }
        let program = if tansu.exists() {
            tansu.display().to_string()
        } else {
            "tansu".to_string()
        };
        let url = format!("tcp://127.0.0.1:{BROKER_PORT}");
        std::fs::create_dir_all("target/dev")?;
        let log = std::fs::File::create("target/dev/tansu.log")?;
        Command::new(program)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting tansu")?;
        for _ in 0..100 {
            if port_open(BROKER_PORT) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        println!(
            "tansu broker on 127.0.0.1:{BROKER_PORT} (in memory; log in target/dev/tansu.log)"
        );
    }
    // Metrics on their own port; traces only where a collector is configured.
    let metrics = std::env::var("METRICS_ADDR").unwrap_or_else(|_| "127.0.0.1:9090".to_string());
    let traces = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) => format!(
            "traces:   OTLP http/protobuf to {}/v1/traces",
            endpoint.trim_end_matches('/')
        ),
        Err(_) => "traces:   off (set OTEL_EXPORTER_OTLP_ENDPOINT to a collector to export them)"
            .to_string(),
    };
    println!(
        "\nservice:  http://127.0.0.1:3000  (health: /healthz, /readyz; API document: /openapi.json)\n\
         metrics:  http://{metrics}/metrics  (Prometheus text format)\n\
         {traces}\n\
         topics:   python3 tests/kafka_python_read.py 127.0.0.1:{BROKER_PORT} airbnb3-auth-service-dbevent-user-created 1000 3\n\
         try:      curl -s -XPOST localhost:3000/v1/register -H 'content-type: application/json' \\\n\
                   -d '{{\"email\":\"me@example.com\",\"password\":\"correct horse\",\"fullname\":\"Me\"}}'\n"
    );
    let status = Command::new("cargo")
        .args(["run", "-p", "airbnb-auth-service"])
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:5432/{DB}"),
        )
        .env("KAFKA_BROKERS", format!("127.0.0.1:{BROKER_PORT}"))
        .env("HTTP_ADDR", "127.0.0.1:3000")
        .env("METRICS_ADDR", &metrics)
        .status()?;
    if !status.success() {
        bail!("the service exited with {status}");
    }
    Ok(())
}

/// Compares the contracts two models generate (run from the workspace root;
/// `OLD` may be `git show HEAD~1:model/auth-service.yaml > old.yaml`).
fn contract_diff(invoked_in: &Path) -> Result<()> {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let [old, new] = args.as_slice() else {
        bail!("usage: cargo xtask contract-diff OLD_MODEL NEW_MODEL");
    };
    let plan = |path: &str| -> Result<generator::plan::Plan> {
        let source = std::fs::read_to_string(invoked_in.join(path))
            .with_context(|| format!("reading {path}"))?;
        Ok(generator::plan_str(path, &source)?)
    };
    let changes = generator::contract::diff(&plan(old)?, &plan(new)?);
    print!("{}", generator::contract::report(&changes));
    if changes.iter().any(|c| c.breaking) {
        bail!("the new model breaks the contract");
    }
    Ok(())
}

/// Builds the service and the bench harness in release and runs the harness.
fn bench() -> Result<()> {
    run(
        "cargo",
        &[
            "build",
            "--release",
            "--package",
            "airbnb-auth-service",
            "--package",
            "airbnb-listing-service",
            "--package",
            "svcgen-bench",
        ],
    )?;
    let target = target_dir();
    let release = target.join("release");
    let status = Command::new(release.join("svcgen-bench"))
        .args(std::env::args().skip(2))
        .env("BENCH_SERVICE_BIN", release.join("airbnb-auth-service"))
        .env("BENCH_LISTING_BIN", release.join("airbnb-listing-service"))
        .status()
        .context("running the bench harness")?;
    if !status.success() {
        bail!("the bench harness failed with {status}");
    }
    Ok(())
}
