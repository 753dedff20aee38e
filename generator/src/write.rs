//! Write: the only step that touches the output directory.
//!
//! Writes only files whose bytes changed, removes generated files that the
//! model no longer produces, and in check mode reports what is stale.

use crate::format::{GeneratedFile, MARKER};
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
pub struct Report {
    pub written: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
}

impl Report {
    /// Prints what was written and removed under `out`, and a summary line.
    pub fn print(&self, out: &str, source: &str, total: usize) {
        for f in &self.written {
            println!("wrote   {out}/{f}");
        }
        for f in &self.removed {
            println!("removed {out}/{f}");
        }
        println!(
            "{total} files from {source}: {} written, {} removed, {} unchanged",
            self.written.len(),
            self.removed.len(),
            self.unchanged
        );
    }
}

/// Differences between `dir` and the files the model produces.
#[derive(Debug, Default)]
pub struct Staleness {
    pub differing: Vec<String>,
    pub missing: Vec<String>,
    pub extra: Vec<String>,
}

impl Staleness {
    pub fn is_clean(&self) -> bool {
        self.differing.is_empty() && self.missing.is_empty() && self.extra.is_empty()
    }

    /// One line per stale file under `out`.
    pub fn lines(&self, out: &str) -> Vec<String> {
        let mut lines = Vec::new();
        for (what, list) in [
            ("was not up-to-date", &self.differing),
            ("is missing", &self.missing),
            ("is no longer generated", &self.extra),
        ] {
            lines.extend(list.iter().map(|f| format!("{out}/{f} {what}")));
        }
        lines
    }
}

/// Writes `files` into `dir`: generated files where their bytes changed,
/// hand-written ones (`once`) only where no file is yet.
pub fn write(dir: &Path, files: &[GeneratedFile]) -> Result<Report> {
    let mut report = Report::default();
    for f in files {
        let path = dir.join(&f.path);
        if f.once && path.exists() {
            report.unchanged += 1;
            continue;
        }
        if fs::read(&path).ok().as_deref() == Some(f.contents.as_bytes()) {
            report.unchanged += 1;
            continue;
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&path, &f.contents).with_context(|| format!("writing {}", path.display()))?;
        report.written.push(f.path.clone());
    }
    for extra in orphans(dir, files)? {
        fs::remove_file(dir.join(&extra)).with_context(|| format!("removing {extra}"))?;
        report.removed.push(extra);
    }
    Ok(report)
}

/// What differs between `dir` and `files`; a hand-written file only when missing.
pub fn check(dir: &Path, files: &[GeneratedFile]) -> Result<Staleness> {
    let mut s = Staleness::default();
    for f in files {
        match fs::read(dir.join(&f.path)) {
            // A hand-written file is the user's once it exists.
            Ok(_) if f.once => {}
            Ok(bytes) if bytes == f.contents.as_bytes() => {}
            Ok(_) => s.differing.push(f.path.clone()),
            Err(_) => s.missing.push(f.path.clone()),
        }
    }
    s.extra = orphans(dir, files)?;
    Ok(s)
}

/// Generated files (carrying the marker) in `dir` that `files` does not contain.
fn orphans(dir: &Path, files: &[GeneratedFile]) -> Result<Vec<String>> {
    let wanted: BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            let rel = path.strip_prefix(dir)?.to_string_lossy().replace('\\', "/");
            if path.is_dir() {
                if rel != "target" && !rel.starts_with('.') {
                    stack.push(path);
                }
            } else if !wanted.contains(rel.as_str()) && is_generated(&path) {
                out.push(rel);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn is_generated(path: &Path) -> bool {
    fs::read_to_string(path)
        // JSON has no comments: its marker is a key on the second line.
        .map(|text| text.lines().take(2).any(|l| l.contains(MARKER)))
        .unwrap_or(false)
}

/// The migrations already generated into `dir`, and their schema lock.
pub fn read_history(dir: &Path) -> Result<crate::migrate::History> {
    let mut history = crate::migrate::History::default();
    let lock_path = dir.join(crate::migrate::LOCK);
    if let Ok(text) = fs::read_to_string(&lock_path) {
        history.lock = Some(
            serde_json::from_str(&text)
                .with_context(|| format!("reading {}", lock_path.display()))?,
        );
    }
    let Ok(entries) = fs::read_dir(dir.join("migrations")) else {
        return Ok(history);
    };
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if name.ends_with(".sql") {
            history
                .migrations
                .push((format!("migrations/{name}"), fs::read_to_string(&path)?));
        }
    }
    history.migrations.sort();
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, contents: &str, once: bool) -> GeneratedFile {
        GeneratedFile {
            path: path.into(),
            contents: contents.into(),
            once,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("svcgen-write-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn a_hand_written_file_is_created_once_and_never_overwritten() {
        let dir = scratch("once");
        let stub = file("src/hooks/loan.rs", "pub struct Hooks;\n", true);
        let generated = file("src/loan.rs", &format!("// {MARKER} from m.yaml\n"), false);
        let files = [stub, generated];
        assert_eq!(write(&dir, &files).expect("written").written.len(), 2);
        let mine = "pub struct Hooks; // with my business logic\n";
        fs::write(dir.join("src/hooks/loan.rs"), mine).expect("edited");
        fs::write(dir.join("src/loan.rs"), "edited by hand").expect("edited");
        let report = write(&dir, &files).expect("written again");
        assert_eq!(report.written, ["src/loan.rs"]);
        let kept = fs::read_to_string(dir.join("src/hooks/loan.rs")).expect("kept");
        assert_eq!(kept, mine);
        fs::remove_dir_all(&dir).expect("cleaned up");
    }

    #[test]
    fn check_reports_a_hand_written_file_only_when_it_is_missing() {
        let dir = scratch("check");
        let files = [file("src/hooks/loan.rs", "pub struct Hooks;\n", true)];
        let missing = check(&dir, &files).expect("checked");
        assert_eq!(missing.missing, ["src/hooks/loan.rs"]);
        fs::create_dir_all(dir.join("src/hooks")).expect("dir");
        fs::write(dir.join("src/hooks/loan.rs"), "pub struct Hooks; // mine\n").expect("written");
        let present = check(&dir, &files).expect("checked");
        assert!(present.is_clean(), "{:?}", present.lines("out"));
        // Hand-written files carry no marker, so no model change removes one.
        assert!(orphans(&dir, &[]).expect("listed").is_empty());
        fs::remove_dir_all(&dir).expect("cleaned up");
    }
}
