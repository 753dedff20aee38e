//! rustfmt's outputs kept on disk between runs, so that a run formats only
//! the files whose printed text changed since an earlier run, and prints
//! only the files whose rendered text changed.
//!
//! Two kinds of entry, each named by the SHA-256 of everything its content
//! depends on:
//! - *formatted*: rustfmt's output, named by the layout version of this
//!   cache, rustfmt's version, the config files rustfmt could find, its
//!   command-line options and the exact printed text given to rustfmt;
//! - *printed*: the name of the formatted entry for what svcgen printed
//!   (syn + prettyplease) from a rendered text, named by the same and this
//!   build of svcgen (its executable) and the exact rendered text. A rebuilt
//!   svcgen prints again, and still finds rustfmt's outputs.
//!
//! An entry holds its text behind the text's own SHA-256, so a torn or
//! corrupt entry is a miss (and is rewritten), never wrong output. Entries
//! are written to a temporary file and renamed into place, so a reader,
//! another run at the same time included, never sees half of one.
//!
//! A hit renews its entry's modification time; entries no run used for
//! [`UNUSED_FOR`] are removed, by the first run of a day that opens the cache.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

/// The layout version of entries and keys: bump it when either changes.
const LAYOUT: &str = "1";

/// Entries unused this long are removed: every edit of a model leaves the
/// entries of its former texts behind.
pub const UNUSED_FOR: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// How often a run looks for unused entries (a walk of the whole folder).
const PRUNE_EVERY: Duration = Duration::from_secs(24 * 60 * 60);

/// The file whose modification time is the last pruning's.
const PRUNED: &str = "pruned";

/// Set to `off` (or `0`, `false`) to format everything, every run.
pub const SWITCH: &str = "SVCGEN_FORMAT_CACHE";

/// A folder of rustfmt outputs, for one rustfmt and its config.
pub struct Cache {
    dir: PathBuf,
    /// rustfmt's version and config files, part of every key.
    rustfmt: String,
    /// This build of svcgen (see [`printer`]), when it can be named.
    printer: Option<String>,
    hits: AtomicUsize,
    misses: AtomicUsize,
}

impl Cache {
    /// The cache in `dir` (created on first write) for the rustfmt that
    /// formatting runs, or `None` when [`SWITCH`] turns caching off.
    pub fn open(dir: &Path) -> Result<Option<Cache>> {
        if std::env::var(SWITCH).is_ok_and(|v| matches!(v.trim(), "off" | "0" | "false")) {
            return Ok(None);
        }
        let version = rustfmt_version(&super::rustfmt_program(), dir)?;
        let cache = Cache::for_rustfmt(dir, &format!("{version}\n{}", configs()));
        cache.prune_if_due(SystemTime::now());
        Ok(Some(cache))
    }

    /// Removes the entries unused for [`UNUSED_FOR`] before `now`, unless a
    /// run did so less than [`PRUNE_EVERY`] ago. Returns how many went; a
    /// failure only leaves entries behind.
    pub fn prune_if_due(&self, now: SystemTime) -> usize {
        let marker = self.dir.join(PRUNED);
        let last = std::fs::metadata(&marker).and_then(|m| m.modified());
        if last.is_ok_and(|last| now.duration_since(last).unwrap_or_default() < PRUNE_EVERY) {
            return 0;
        }
        if std::fs::create_dir_all(&self.dir).is_err() || std::fs::write(&marker, "").is_err() {
            return 0;
        }
        let Some(cutoff) = now.checked_sub(UNUSED_FOR) else {
            return 0;
        };
        let mut removed = 0;
        let entries = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|d| d.file_type().is_ok_and(|t| t.is_dir()))
            .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten());
        for entry in entries {
            let unused = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified < cutoff);
            if unused && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// The cache in `dir` with `rustfmt` standing for rustfmt's version and
    /// config in every key: entries made under another stand-in are misses.
    pub fn for_rustfmt(dir: &Path, rustfmt: &str) -> Cache {
        Cache {
            dir: dir.join(format!("v{LAYOUT}")),
            rustfmt: rustfmt.to_string(),
            printer: printer(),
            hits: AtomicUsize::new(0),
            misses: AtomicUsize::new(0),
        }
    }

    /// How many files were found formatted (printed or not), since this
    /// cache was opened.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }

    /// How many files rustfmt had to format, since this cache was opened.
    pub fn misses(&self) -> usize {
        self.misses.load(Ordering::Relaxed)
    }

    /// The entry name for `parts`: their SHA-256, each part behind its
    /// length, so that no two lists of parts hash the same text.
    fn key(parts: &[&str]) -> String {
        let mut key = Sha256::new();
        for part in parts {
            key.update((part.len() as u64).to_le_bytes());
            key.update(part);
        }
        hex(&key.finalize())
    }

    /// The entry that holds rustfmt's output for the printed text `printed`.
    fn formatted_key(&self, printed: &str) -> String {
        let args = super::RUSTFMT_ARGS.join(" ");
        Cache::key(&[LAYOUT, "formatted", &self.rustfmt, &args, printed])
    }

    /// The entry that names, for the rendered text `rendered`, the
    /// [`Cache::formatted_key`] of what this build of svcgen printed from it.
    fn printed_key(&self, printer: &str, rendered: &str) -> String {
        let args = super::RUSTFMT_ARGS.join(" ");
        Cache::key(&[LAYOUT, "printed", printer, &self.rustfmt, &args, rendered])
    }

    fn read(&self, key: &str) -> Option<String> {
        // A key read from an entry is a name in this folder, or nothing.
        if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut file = std::fs::File::open(self.dir.join(&key[..2]).join(&key[2..])).ok()?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).ok()?;
        let text = unseal(&bytes)?;
        // Used now: pruning keeps it. Failing to say so only risks a miss later.
        let _ = file.set_modified(SystemTime::now());
        Some(text)
    }

    /// Writes the entry `key`. A cache that cannot be written only costs the
    /// next run the work, so failures are ignored.
    fn write(&self, key: &str, text: &str) {
        let _ = write_atomically(&self.dir.join(&key[..2]).join(&key[2..]), &seal(text));
    }

    fn count(&self, found: Option<String>) -> Option<String> {
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The formatted text of the rendered text `rendered`, without printing
    /// it, when this very build of svcgen printed it in an earlier run. A
    /// `None` is not yet a miss: the printed text may still be found.
    pub(super) fn by_rendered(&self, rendered: &str) -> Option<String> {
        let printer = self.printer.as_deref()?;
        let found = self.read(&self.read(&self.printed_key(printer, rendered))?)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(found)
    }

    /// rustfmt's output for the printed text `printed` (of `rendered`), if an
    /// earlier run kept it intact; a miss leaves it to rustfmt.
    pub(super) fn by_printed(&self, rendered: &str, printed: &str) -> Option<String> {
        let found = self.count(self.read(&self.formatted_key(printed)));
        if found.is_some() {
            self.keep_printed(rendered, printed);
        }
        found
    }

    /// Keeps rustfmt's output `formatted` for `printed`, printed from `rendered`.
    pub(super) fn keep(&self, rendered: &str, printed: &str, formatted: &str) {
        self.write(&self.formatted_key(printed), formatted);
        self.keep_printed(rendered, printed);
    }

    fn keep_printed(&self, rendered: &str, printed: &str) {
        if let Some(printer) = &self.printer {
            self.write(
                &self.printed_key(printer, rendered),
                &self.formatted_key(printed),
            );
        }
    }
}

/// This build of svcgen, which prints with syn and prettyplease, named by
/// its executable's path, size and modification time: any rebuild, of the
/// printing code or of those crates, gives another name.
fn printer() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let m = std::fs::metadata(&exe).ok()?;
    let modified = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(format!(
        "{}\n{}\n{}",
        exe.display(),
        m.len(),
        modified.as_nanos()
    ))
}

/// `text` behind a line holding its SHA-256.
fn seal(text: &str) -> Vec<u8> {
    format!("{}\n{text}", hex(&Sha256::digest(text))).into_bytes()
}

/// The text [`seal`] kept in `bytes`, unless they are not what it wrote.
fn unseal(bytes: &[u8]) -> Option<String> {
    let (sum, text) = std::str::from_utf8(bytes).ok()?.split_once('\n')?;
    (sum == hex(&Sha256::digest(text))).then(|| text.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over
/// `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = std::fs::write(&temp, bytes).and_then(|()| std::fs::rename(&temp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// `rustfmt --version`. Starting rustfmt costs tens of milliseconds, so the
/// answer of a toolchain's own binary is kept in `dir` under its path, size
/// and modification time (a toolchain update replaces the binary). A rustup
/// proxy (beside `rustup`) may run another toolchain each time: it is asked.
fn rustfmt_version(program: &Path, dir: &Path) -> Result<String> {
    let memo = std::fs::metadata(program)
        .ok()
        .filter(|_| program.is_absolute() && !program.with_file_name("rustup").exists())
        .and_then(|m| {
            let modified = m
                .modified()
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?;
            let stamp = format!(
                "{}\n{}\n{}",
                program.display(),
                m.len(),
                modified.as_nanos()
            );
            Some(dir.join(format!("rustfmt-{}", hex(&Sha256::digest(stamp)))))
        });
    if let Some(version) = memo
        .as_ref()
        .and_then(|m| std::fs::read(m).ok())
        .and_then(|bytes| unseal(&bytes))
    {
        return Ok(version);
    }
    let output = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .context("running rustfmt (install it with `rustup component add rustfmt`)")?;
    if !output.status.success() {
        bail!(
            "rustfmt --version failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if let Some(memo) = memo {
        let _ = write_atomically(&memo, &seal(&version));
    }
    Ok(version)
}

/// The rustfmt config files that could apply to files formatted under the
/// temporary folder, each named with its contents. rustfmt takes the first
/// it finds in the file's folder and its parents, then the home folder,
/// then the user's config folder; every one that exists is named here, since
/// one too many only costs misses.
fn configs() -> String {
    let temp = std::env::temp_dir();
    let temp = std::fs::canonicalize(&temp).unwrap_or(temp);
    let var = |name: &str| std::env::var_os(name).map(PathBuf::from);
    let home = var("HOME").or_else(|| var("USERPROFILE"));
    let config_dirs = [
        var("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config"))),
        home.as_ref()
            .map(|h| h.join("Library").join("Application Support")),
        var("APPDATA"),
    ];
    let dirs = temp
        .ancestors()
        .map(Path::to_path_buf)
        .chain(home.clone())
        .chain(config_dirs.into_iter().flatten().map(|c| c.join("rustfmt")));
    let mut named = String::new();
    for dir in dirs {
        for name in [".rustfmt.toml", "rustfmt.toml"] {
            let path = dir.join(name);
            if let Ok(text) = std::fs::read_to_string(&path) {
                let _ = write!(named, "{}\n{}\n{text}\n", path.display(), text.len());
            }
        }
    }
    named
}
