//! The secret scan of `cargo xtask test`: the end-to-end tests log at debug
//! level into one directory and record every secret they used in
//! `secrets-<pid>.txt` files there (tests/common/capture.rs); this searches
//! every log line for every secret, as it is and in the forms a log line
//! could hold it (JSON-escaped, URL-encoded).
//!
//! A secret shorter than [`SHORT`] (a six-digit one-time code) would match
//! unrelated numbers anywhere, so it counts only as a whole word, and only
//! in the files of the process that recorded it (`<pid>-...`): the logs of
//! its in-process services and of the children it started.

use aho_corasick::AhoCorasick;
use anyhow::{Context, Result};
use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Below this length a secret is searched as a word of its process's logs.
const SHORT: usize = 8;

/// A secret the tests recorded.
#[derive(Debug)]
struct Secret {
    kind: String,
    value: String,
    /// The pid of the test process that recorded it.
    pid: String,
}

impl Secret {
    fn short(&self) -> bool {
        self.value.len() < SHORT
    }

    /// The secret as a report may show it: its first two characters and length.
    fn masked(&self) -> String {
        let head: String = self.value.chars().take(2).collect();
        format!("{head}… ({} chars)", self.value.chars().count())
    }
}

/// A log line holding a secret.
#[derive(Debug)]
pub struct Leak {
    pub file: PathBuf,
    pub line: usize,
    pub kind: String,
    pub masked: String,
}

impl std::fmt::Display for Leak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: a {} ({})",
            self.file.display(),
            self.line,
            self.kind,
            self.masked
        )
    }
}

/// What a scan read and found.
#[derive(Debug, Default)]
pub struct Scan {
    pub files: usize,
    pub lines: usize,
    pub bytes: u64,
    pub secrets: usize,
    pub leaks: Vec<Leak>,
}

/// The forms a log line may hold `value` in, itself first.
fn forms(value: &str) -> Vec<String> {
    let json = serde_like_escape(value);
    let url = percent_encode(value, "%20");
    let form = percent_encode(value, "+");
    let mut all = vec![value.to_string()];
    for f in [json, url, form] {
        if !all.contains(&f) {
            all.push(f);
        }
    }
    all
}

/// `value` inside a JSON string (what a JSON log line or a `{:?}` holds).
fn serde_like_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

/// `value` percent-encoded as in a URL, a space as `space`.
fn percent_encode(value: &str, space: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push_str(space),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Reads every `secrets-<pid>.txt` in `dir`: lines of `kind<TAB>value`.
fn secrets(dir: &Path) -> Result<Vec<Secret>> {
    let mut all = Vec::new();
    let mut seen = HashSet::new();
    for path in files(dir)? {
        let Some(pid) = secrets_pid(&path) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
        for line in text.lines() {
            let Some((kind, value)) = line.split_once('\t') else {
                continue;
            };
            let secret = Secret {
                kind: kind.to_string(),
                value: value.to_string(),
                pid: pid.to_string(),
            };
            // A long secret is searched everywhere once; a short one per process.
            let key = (
                secret.short().then(|| pid.to_string()),
                secret.value.clone(),
            );
            if !secret.value.is_empty() && seen.insert(key) {
                all.push(secret);
            }
        }
    }
    Ok(all)
}

fn secrets_pid(path: &Path) -> Option<&str> {
    path.file_name()?
        .to_str()?
        .strip_prefix("secrets-")?
        .strip_suffix(".txt")
}

/// The files of `dir`, sorted.
fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Whether `line[start..end]` is a word of its own: not inside a longer
/// word or number (nor the fraction of one, as in a timestamp's `.123456`).
fn whole_word(line: &[u8], start: usize, end: usize) -> bool {
    let before = start.checked_sub(1).map(|i| line[i]);
    let after = line.get(end).copied();
    !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'.')
        && !after.is_some_and(|b| b.is_ascii_alphanumeric())
}

/// Searches every log file in `dir` for every secret recorded there.
pub fn scan(dir: &Path) -> Result<Scan> {
    let secrets = secrets(dir)?;
    // Every form of every secret, and which secret it is a form of.
    let mut patterns = Vec::new();
    let mut owner = Vec::new();
    for (i, s) in secrets.iter().enumerate() {
        for form in forms(&s.value) {
            patterns.push(form);
            owner.push(i);
        }
    }
    let matcher = AhoCorasick::new(&patterns).context("building the secret matcher")?;
    let mut scan = Scan {
        secrets: secrets.len(),
        ..Scan::default()
    };
    for path in files(dir)? {
        if secrets_pid(&path).is_some() {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = std::fs::File::open(&path).with_context(|| format!("{}", path.display()))?;
        scan.files += 1;
        scan.bytes += file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut reader = std::io::BufReader::new(file);
        let mut line = Vec::new();
        let mut number = 0;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            number += 1;
            let mut reported = HashSet::new();
            for m in matcher.find_overlapping_iter(&line) {
                let secret = &secrets[owner[m.pattern().as_usize()]];
                let counts = !secret.short()
                    || (name.starts_with(&format!("{}-", secret.pid))
                        && whole_word(&line, m.start(), m.end()));
                if counts && reported.insert(owner[m.pattern().as_usize()]) {
                    scan.leaks.push(Leak {
                        file: path.clone(),
                        line: number,
                        kind: secret.kind.clone(),
                        masked: secret.masked(),
                    });
                }
            }
        }
        scan.lines += number;
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch log directory, removed when dropped.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("svcgen-logscan-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("scratch dir");
            Self(dir)
        }

        fn write(&self, name: &str, text: &str) {
            std::fs::write(self.0.join(name), text).expect("scratch file");
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_planted_secret_is_found_with_its_file_line_and_kind() {
        let dir = Dir::new("planted");
        dir.write(
            "secrets-41.txt",
            "password\ta decent secret\naccess token\teyJhbGciOi.x.y\n",
        );
        dir.write(
            "41-auth_e2e.log",
            "DEBUG sqlx::query: SELECT 1\nDEBUG login body={\"password\":\"a decent secret\"}\n",
        );
        dir.write("57-airbnb-auth-service-1.log", "INFO started\n");
        let scan = scan(&dir.0).expect("scan");
        assert_eq!((scan.files, scan.lines, scan.secrets), (2, 3, 2));
        assert_eq!(scan.leaks.len(), 1, "{:?}", scan.leaks);
        let leak = &scan.leaks[0];
        assert!(leak.file.ends_with("41-auth_e2e.log"));
        assert_eq!((leak.line, leak.kind.as_str()), (2, "password"));
        let shown = leak.to_string();
        assert!(!shown.contains("decent"), "the report hides it: {shown}");
    }

    #[test]
    fn escaped_and_url_encoded_forms_are_found_in_other_processes_logs() {
        let dir = Dir::new("forms");
        dir.write(
            "secrets-41.txt",
            "password\tsay \"hi\" now\nrefresh token\ta bc/de=fg\n",
        );
        dir.write(
            "57-airbnb-auth-service-1.log",
            "{\"fields\":{\"body\":\"say \\\"hi\\\" now\"}}\nGET /x?t=a+bc%2Fde%3Dfg\nGET /x?t=a%20bc%2Fde%3Dfg\nclean\n",
        );
        let scan = scan(&dir.0).expect("scan");
        let lines: Vec<(usize, &str)> = scan
            .leaks
            .iter()
            .map(|l| (l.line, l.kind.as_str()))
            .collect();
        assert_eq!(
            lines,
            [(1, "password"), (2, "refresh token"), (3, "refresh token")]
        );
    }

    #[test]
    fn a_code_counts_as_a_whole_word_in_its_own_processs_logs_only() {
        let dir = Dir::new("codes");
        dir.write("secrets-41.txt", "code\t123456\n");
        dir.write(
            "41-verification_e2e.log",
            "at 2026-12-01T09:00:00.123456Z\nid 91234567\nmailed: your code is 123456.\n",
        );
        dir.write("57-verification_e2e.log", "code=123456\n");
        let scan = scan(&dir.0).expect("scan");
        assert_eq!(scan.leaks.len(), 1, "{:?}", scan.leaks);
        assert!(scan.leaks[0].file.ends_with("41-verification_e2e.log"));
        assert_eq!(scan.leaks[0].line, 3);
    }

    #[test]
    fn no_secrets_and_clean_logs_find_nothing() {
        let dir = Dir::new("clean");
        dir.write("secrets-41.txt", "password\tlong enough\n");
        dir.write("41-x.log", "a line\nanother\n");
        let scan = scan(&dir.0).expect("scan");
        assert!(scan.leaks.is_empty());
        assert_eq!(scan.lines, 2);
    }
}
