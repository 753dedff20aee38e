//! Log capture for the secret scan of `cargo xtask test`.
//!
//! When `SVCGEN_TEST_LOG_DIR` names a directory, every service a test starts
//! logs at debug level into it (in-process services through this process's
//! subscriber, child processes through their own output), and the helpers
//! here append every secret the tests use to `secrets-<pid>.txt` there. xtask
//! then searches the logs for those secrets. Without the variable (a plain
//! `cargo test`) nothing is captured and recording is a no-op.
//!
//! Every file a process writes starts with its pid (`<pid>-...`), so that a
//! short code is searched only where it could have been logged (see xtask's
//! `logscan`).

use serde_json::Value;
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The variable xtask sets to the run's log directory.
pub const LOG_DIR_VAR: &str = "SVCGEN_TEST_LOG_DIR";

/// What services log at while captured: everything at debug.
pub const LOG_FILTER: &str = "debug";

/// JSON keys whose string values are secrets, wherever they appear in a
/// request or answer body or an event.
const SECRET_KEYS: &[(&str, &str)] = &[
    ("password", "password"),
    ("currentPassword", "password"),
    ("newPassword", "password"),
    ("secret", "password"),
    ("accessToken", "access token"),
    ("refreshToken", "refresh token"),
    ("token", "token"),
    ("resetToken", "reset token"),
    ("csrfToken", "csrf token"),
    ("apiKey", "api key"),
    ("code", "code"),
];

/// Settings whose values are secrets: a key naming one of these.
const SECRET_SETTINGS: &[&str] = &["PASSWORD", "PRIVATE_KEY", "SECRET", "TOKEN", "API_KEY"];

/// A one-time code has six digits: too short to search for everywhere
/// (a six-digit number turns up by chance), so it is kept as its own kind
/// and searched for as a whole word in its own process's logs only.
const CODE_LEN: usize = 6;

/// Shorter values (`"x"`, `"short"`, the refused weak passwords) would match
/// unrelated text and prove nothing.
const MIN_SECRET_LEN: usize = 8;

/// The run's log directory, when capturing.
pub fn log_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(std::env::var_os(LOG_DIR_VAR)?);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("{LOG_DIR_VAR}={}: {e}", dir.display()));
        Some(dir)
    })
    .as_deref()
}

/// A fresh file name in the log directory for this process: `<pid>-<what>`.
pub fn log_file(what: &str) -> Option<PathBuf> {
    Some(log_dir()?.join(format!("{}-{what}", std::process::id())))
}

/// Installs this test binary's subscriber, once: debug lines, plain text,
/// into `<pid>-<test binary>.log`. Services started in process log through it.
pub fn capture_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let exe = std::env::current_exe().ok();
        let name = exe
            .as_deref()
            .and_then(Path::file_stem)
            .map_or_else(|| "tests".into(), |s| s.to_string_lossy().into_owned());
        let Some(path) = log_file(&format!("{name}.log")) else {
            return;
        };
        let file = std::fs::File::create(&path)
            .unwrap_or_else(|e| panic!("log file {}: {e}", path.display()));
        let installed = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(LOG_FILTER))
            .with_ansi(false)
            .with_writer(Mutex::new(file))
            .try_init();
        if let Err(e) = installed {
            eprintln!("log capture: a subscriber was already installed: {e}");
        }
    });
}

/// The settings a child process gets so that it logs like in-process
/// services do, in plain lines without colour codes (nothing when not
/// capturing).
pub fn child_log_env() -> Vec<(&'static str, &'static str)> {
    match log_dir() {
        Some(_) => vec![("RUST_LOG", LOG_FILTER), ("NO_COLOR", "1")],
        None => Vec::new(),
    }
}

/// Keeps what a one-shot run of a service binary printed, under `what`.
pub fn keep_output(what: &str, out: &std::process::Output) {
    let Some(path) = log_file(&format!("{what}-{}.log", next_number())) else {
        return;
    };
    let mut all = out.stdout.clone();
    all.extend_from_slice(&out.stderr);
    if let Err(e) = std::fs::write(&path, all) {
        panic!("log file {}: {e}", path.display());
    }
}

/// A number unique in this process, for file names.
pub fn next_number() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Whether `value` is worth searching for: see [`MIN_SECRET_LEN`] and
/// [`CODE_LEN`]. A lone lowercase word ("password") names things in log
/// lines too, so it is no proof of a leak either.
fn meaningful(kind: &str, value: &str) -> bool {
    if kind == "code" {
        return value.len() == CODE_LEN && value.bytes().all(|b| b.is_ascii_digit());
    }
    value.len() >= MIN_SECRET_LEN && !value.bytes().all(|b| b.is_ascii_lowercase())
}

/// Appends `value` as a secret of `kind` to this process's secrets file
/// (each line of a multi-line value, such as a PEM key, on its own).
pub fn record_secret(kind: &str, value: &str) {
    static SEEN: OnceLock<Mutex<(HashSet<String>, Option<std::fs::File>)>> = OnceLock::new();
    let Some(dir) = log_dir() else { return };
    let lines: Vec<&str> = value
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----") && meaningful(kind, l))
        .collect();
    if lines.is_empty() {
        return;
    }
    let seen = SEEN.get_or_init(|| Mutex::new((HashSet::new(), None)));
    let mut guard = seen.lock().unwrap_or_else(|e| e.into_inner());
    let (known, file) = &mut *guard;
    for line in lines {
        if !known.insert(line.to_string()) {
            continue;
        }
        if file.is_none() {
            let path = dir.join(format!("secrets-{}.txt", std::process::id()));
            let opened = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path);
            *file = Some(opened.unwrap_or_else(|e| panic!("{}: {e}", path.display())));
        }
        if let Some(f) = file {
            writeln!(f, "{kind}\t{line}").expect("secrets file written");
        }
    }
}

/// Records the secrets among a service's settings.
pub fn record_settings<'a>(settings: impl IntoIterator<Item = (&'a str, &'a str)>) {
    for (key, value) in settings {
        if SECRET_SETTINGS.iter().any(|s| key.contains(s)) {
            record_secret(&key.to_ascii_lowercase(), value);
        }
    }
}

/// Records every secret in a JSON body or event, at any depth.
pub fn record_json(value: &Value) {
    if log_dir().is_none() {
        return;
    }
    match value {
        Value::Object(map) => {
            let kind_of = |key: &str| SECRET_KEYS.iter().find(|(k, _)| *k == key).map(|k| k.1);
            // A test that sends a value in the clear beside it (a weak
            // password as the email's name) made it no secret.
            let clear: Vec<&str> = map
                .iter()
                .filter(|(k, _)| kind_of(k).is_none())
                .filter_map(|(_, v)| v.as_str())
                .collect();
            for (key, v) in map {
                match (v, kind_of(key)) {
                    (Value::String(s), Some(kind)) => {
                        if !clear.iter().any(|c| c.contains(s.as_str())) {
                            record_secret(kind, s);
                        }
                    }
                    _ => record_json(v),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(record_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_values_that_prove_a_leak_are_kept() {
        assert!(meaningful("password", "a decent secret"));
        assert!(meaningful("password", "Qwerty12345"));
        assert!(!meaningful("password", "short"));
        assert!(!meaningful("password", "password"), "a word of log lines");
        assert!(meaningful("code", "012345"));
        assert!(!meaningful("code", "12345"));
        assert!(!meaningful("code", "abcdef"));
    }
}
