//! `cargo xtask bench`: each figure of ours beside a baseline measured in the
//! same run, and their ratio. Figures, never assertions: a missed target is
//! printed as such.
//!
//! Needs PostgreSQL on 127.0.0.1:5432, `wrk` (Debian) and `tansu`. The
//! service runs as its release binary (built by xtask), the baselines in
//! this process.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

mod baseline;
mod consume;
mod load;
mod relay;
mod trust;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One printed figure.
pub struct Row<'a> {
    pub figure: &'a str,
    pub ours: f64,
    pub baseline: Option<f64>,
    pub unit: &'a str,
    /// The ratio (or, without a baseline, the value) the target asks for.
    pub target: &'a str,
    pub met: Option<bool>,
}

pub fn print(row: Row) {
    let ratio = row.baseline.map(|b| row.ours / b);
    println!(
        "{:<52} {:>11.1} {:<5} {:>11} {:>7} {:<16} {}",
        row.figure,
        row.ours,
        row.unit,
        row.baseline.map_or("-".to_string(), |b| format!("{b:.1}")),
        ratio.map_or("-".to_string(), |r| format!("{r:.2}x")),
        row.target,
        match row.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        }
    );
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A model of `n` objects with CRUD routes, for showing that cost grows linearly.
fn synthetic_model(n: usize) -> String {
    let auth =
        std::fs::read_to_string(root().join("tests/models/library.yaml")).unwrap_or_default();
    // The library model's header and auth section, with its own objects and routes replaced.
    let head = auth
        .split("dataObjects:")
        .next()
        .unwrap_or_default()
        .to_string();
    let mut objects = String::from("dataObjects:\n");
    let mut routes = String::from("routes:\n");
    objects.push_str(
        "  librarian:\n    description: Signs in.\n    table: librarians\n    softDelete: true\n    ownerIsSelf: true\n    fields:\n      email: { type: String, required: true, unique: true, format: email }\n      secret: { type: String, required: true, secret: true, hash: argon2id, minLength: 8 }\n      role: { type: String, required: true, allowedValues: [librarian, member], default: member }\n",
    );
    for (name, action, method, path) in [
        ("signIn", "login", "POST", "/sign-in"),
        ("renew", "refresh", "POST", "/renew"),
        ("signOut", "logout", "POST", "/sign-out"),
        ("whoAmI", "currentUser", "GET", "/me"),
        ("keys", "publicKeys", "GET", "/keys"),
    ] {
        routes.push_str(&format!(
            "  {name}: {{ action: {action}, method: {method}, path: {path}, auth: public }}\n"
        ));
    }
    for i in 0..n {
        objects.push_str(&format!(
            "  thing{i}:\n    description: Thing {i}.\n    table: things{i}\n    softDelete: true\n    fields:\n      title: {{ type: String, required: true, maxLength: 100, filterable: true, sortable: true }}\n      amount: {{ type: Integer, filterable: true }}\n      done: {{ type: Boolean, default: false }}\n      notes: {{ type: Text }}\n"
        ));
        for (verb, action, method, path) in [
            ("create", "create", "POST", format!("/things{i}")),
            ("get", "get", "GET", format!("/things{i}/{{id}}")),
            ("list", "list", "GET", format!("/things{i}")),
            ("update", "update", "PATCH", format!("/things{i}/{{id}}")),
            ("delete", "delete", "DELETE", format!("/things{i}/{{id}}")),
        ] {
            let fields = match action {
                "create" => ", fields: [title, amount, done, notes]",
                "update" => ", fields: [title, amount, done]",
                _ => "",
            };
            routes.push_str(&format!(
                "  {verb}Thing{i}: {{ object: thing{i}, action: {action}, method: {method}, path: \"{path}\", event: thing{i}-{verb}d{fields}, auth: login }}\n"
            ));
        }
    }
    format!("{head}{objects}\n{routes}")
}

/// The median time of `runs` generations of `source`; each run's model is
/// `edit(source, run)`.
fn time_generation(
    source: &str,
    runs: usize,
    edit: impl Fn(&str, usize) -> Result<String>,
) -> Result<f64> {
    Ok(time_cached(source, runs, None, edit)?.0)
}

/// [`time_generation`] with rustfmt's outputs kept in `cache`, opened in
/// each run as each `cargo xtask gen` opens it; also how many Rust files
/// the last run formatted, of how many.
fn time_cached(
    source: &str,
    runs: usize,
    cache: Option<&Path>,
    edit: impl Fn(&str, usize) -> Result<String>,
) -> Result<(f64, usize, usize)> {
    let mut samples = Vec::new();
    let (mut formatted, mut files) = (0, 0);
    for run in 0..runs {
        let model = edit(source, run)?;
        let started = Instant::now();
        let opened = match cache {
            Some(dir) => match generator::format::Cache::open(dir)? {
                None => bail!(
                    "{} turns the format cache off; unset it to measure with the cache",
                    generator::format::cache::SWITCH
                ),
                some => some,
            },
            None => None,
        };
        generator::generate_in(
            Path::new(""),
            "bench.yaml",
            &model,
            &generator::migrate::History::default(),
            generator::runtime::WORKSPACE_PATH,
            opened.as_ref(),
        )?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        if let Some(c) = &opened {
            (formatted, files) = (c.misses(), c.hits() + c.misses());
        }
    }
    Ok((median(samples), formatted, files))
}

fn unchanged(source: &str, _run: usize) -> Result<String> {
    Ok(source.to_string())
}

/// The auth model with one field of one object changed, differently in each
/// run: what a developer's edit before `cargo xtask gen` looks like.
fn edit_one_field(source: &str, run: usize) -> Result<String> {
    let field =
        "      groupName:\n        type: String\n        required: true\n        maxLength: 100\n";
    if !source.contains(field) {
        bail!("the auth model no longer has userGroup.groupName with maxLength 100 to edit");
    }
    Ok(source.replacen(field, &field.replace("100", &(101 + run).to_string()), 1))
}

fn generator_figures() -> Result<()> {
    let auth = std::fs::read_to_string(root().join("model/auth-service.yaml"))?;
    let cold = time_generation(&auth, 7, unchanged)?;
    print(Row {
        figure: "generator: auth model, load to formatted, no cache",
        ours: cold,
        baseline: None,
        unit: "ms",
        target: "",
        met: None,
    });
    let dir = |k: usize| {
        std::env::temp_dir().join(format!("svcgen-bench-format-{}-{k}", std::process::id()))
    };
    let cached = (|| {
        // The first run with the cache: every file formatted and kept.
        let mut first = Vec::new();
        for k in 1..=3 {
            first.push(time_cached(&auth, 1, Some(&dir(k)), unchanged)?.0);
        }
        // The cache as the last `cargo xtask gen` left it; each timed run
        // then changes one field, as a developer does before the next gen.
        let edited = time_cached(&auth, 7, Some(&dir(1)), edit_one_field)?;
        let unedited = time_cached(&auth, 7, Some(&dir(1)), unchanged)?;
        anyhow::Ok((median(first), edited, unedited))
    })();
    for k in 1..=3 {
        let _ = std::fs::remove_dir_all(dir(k));
    }
    let (first, (edited, formatted, files), (unedited, ..)) = cached?;
    print(Row {
        figure: "generator: auth model, empty cache (first run)",
        ours: first,
        baseline: None,
        unit: "ms",
        target: "",
        met: None,
    });
    print(Row {
        figure: &format!("generator: auth, one field edited ({formatted}/{files} rustfmt)"),
        ours: edited,
        baseline: None,
        unit: "ms",
        target: "< 100 ms",
        met: Some(edited < 100.0),
    });
    print(Row {
        figure: "generator: auth model, unchanged, cache warm",
        ours: unedited,
        baseline: None,
        unit: "ms",
        target: "",
        met: None,
    });
    let small = time_generation(&synthetic_model(50), 3, unchanged)?;
    let large = time_generation(&synthetic_model(500), 1, unchanged)?;
    print(Row {
        figure: "generator: 50 objects (ms)",
        ours: small,
        baseline: None,
        unit: "ms",
        target: "",
        met: None,
    });
    // Linear growth: 500 objects cost 10x what 50 do; the baseline is that 10x.
    print(Row {
        figure: "generator: 500 objects vs 10 x 50 objects (ms)",
        ours: large,
        baseline: Some(small * 10.0),
        unit: "ms",
        target: "~1.0x (linear)",
        met: Some(large <= small * 10.0 * 1.5),
    });
    Ok(())
}

/// Waits for every acknowledgement; the first failure is the error.
pub async fn acknowledged(pending: Vec<rdkafka::producer::DeliveryFuture>) -> Result<()> {
    for d in pending {
        d.await?.map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

pub async fn wait_port(port: u16) -> Result<()> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("nothing listens on {port}")
}

pub fn tansu(port: u16) -> Result<Proc> {
    let home = std::env::var("HOME").unwrap_or_default();
    let bin = Path::new(&home).join(".cargo/bin/tansu");
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(if bin.exists() { bin } else { "tansu".into() })
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting tansu")?;
    Ok(Proc(child))
}

/// Every database the run created, dropped when it ends ([`DropDatabases`]).
static DATABASES: Mutex<Vec<String>> = Mutex::new(Vec::new());

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A new empty database, dropped at the end of the run.
pub async fn fresh_database() -> Result<String> {
    use sqlx::{Connection, Executor};
    let name = format!("svcgen_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(ADMIN_URL).await?;
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    DATABASES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(name.clone());
    Ok(format!("postgres://postgres@127.0.0.1:5432/{name}"))
}

/// Drops the databases the run created when dropped, with whatever is still
/// connected to them.
struct DropDatabases;

impl Drop for DropDatabases {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *DATABASES.lock().unwrap_or_else(PoisonError::into_inner));
        if names.is_empty() {
            return;
        }
        let dropped = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(drop_databases(&names)));
        if let Err(e) = dropped {
            eprintln!("dropping the bench's databases {names:?}: {e:#}");
        }
    }
}

async fn drop_databases(names: &[String]) -> Result<()> {
    use sqlx::{Connection, Executor};
    let mut conn = sqlx::PgConnection::connect(ADMIN_URL).await?;
    for name in names {
        conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await?;
    }
    Ok(())
}

fn main() -> Result<()> {
    println!(
        "{:<52} {:>11} {:<5} {:>11} {:>7} {:<16}",
        "figure", "ours", "unit", "baseline", "ratio", "target"
    );
    // Groups named on the command line, or all of them.
    let named: Vec<String> = std::env::args().skip(1).collect();
    let wanted = |group: &str| named.is_empty() || named.iter().any(|n| n == group);
    if wanted("generator") {
        generator_figures()?;
    }
    // Declared before the runtime, so dropped after it: the figures' services
    // and tasks are gone by then, also after an error or a panic.
    let _databases = DropDatabases;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        if wanted("relay") {
            relay::relay_figures().await.context("relay figures")?;
        }
        if wanted("service") {
            load::service_figures().await.context("service figures")?;
        }
        if wanted("trust") {
            trust::trust_figures().await.context("trust figures")?;
        }
        if wanted("consume") {
            consume::consume_figures()
                .await
                .context("consume figures")?;
        }
        // Only the login figures (a subset of `service`); run when named.
        if named.iter().any(|n| n == "login") {
            load::login_figures().await.context("login figures")?;
        }
        Ok(())
    })
}
