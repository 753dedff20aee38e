//! The environment variables a generated service reads: found in its
//! rendered `config.rs` and in the runtime's readers that it calls with the
//! `env` (`KafkaSettings::from_env(env, ..)`, and what those call in turn).
//! A setting added to the runtime thus reaches the deployment files without
//! a hand-kept list.

mod readers;

use std::collections::{BTreeMap, HashMap, HashSet};
use syn::visit::Visit;

/// The runtime's readers as svcgen's build script found them with
/// [`readers::index`]: `(key, body)`.
mod built {
    include!(concat!(env!("OUT_DIR"), "/runtime_readers.rs"));
}

/// One variable the configuration reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub name: String,
    /// The literal default of `env.parse(NAME, "default")`, if it has one.
    pub default: Option<String>,
    /// Kept in a Secret: read with `env.secret` or `env.required` (taken as
    /// given), or named as a key or a password.
    pub secret: bool,
    /// Read with `env.required`: the service does not start without it.
    pub required: bool,
}

/// The `Env` methods that read a variable named by their first argument.
/// (`Env::refused` names a retired variable, which a deployment must not set.)
const READS: &[&str] = &["get", "text", "secret", "required", "parse"];

/// Every variable `config_rs` reads, directly or through the runtime's
/// readers. svcgen's build script indexed them (the runtime's sources are
/// fixed when svcgen is built, and parsing them all would cost each run
/// more than the rest of generation).
pub fn read(config_rs: &str) -> syn::Result<Vec<Setting>> {
    let mut readers: HashMap<String, Vec<syn::Block>> = HashMap::new();
    for (key, block) in built::READERS {
        readers
            .entry(key.to_string())
            .or_default()
            .push(syn::parse_str(block)?);
    }
    scan(config_rs, &readers)
}

/// [`read`] through the readers in `runtime` (its files, `(path, text)`).
pub fn read_by(config_rs: &str, runtime: &[(&str, &str)]) -> syn::Result<Vec<Setting>> {
    let mut readers: HashMap<String, Vec<syn::Block>> = HashMap::new();
    for (path, text) in runtime {
        if !path.ends_with(".rs") {
            continue;
        }
        readers::index(&syn::parse_file(text)?.items, &mut readers);
    }
    scan(config_rs, &readers)
}

fn scan(config_rs: &str, readers: &HashMap<String, Vec<syn::Block>>) -> syn::Result<Vec<Setting>> {
    let config = syn::parse_file(config_rs)?;
    let mut scan = Scan {
        readers,
        visited: HashSet::new(),
        found: BTreeMap::new(),
    };
    scan.visit_file(&config);
    Ok(scan.found.into_values().collect())
}

struct Scan<'a> {
    readers: &'a HashMap<String, Vec<syn::Block>>,
    visited: HashSet<String>,
    found: BTreeMap<String, Setting>,
}

impl Scan<'_> {
    fn record(&mut self, name: String, how: &str, default: Option<String>) {
        let secret = matches!(how, "secret" | "required")
            || ["_PASSWORD", "_PRIVATE_KEY", "_SECRET"]
                .iter()
                .any(|s| name.ends_with(s));
        // The default is the one of the first read: `match env.get(X) {
        // Some(_) => env.parse(X, "1")?, None => .. }` has none to tell.
        let entry = self.found.entry(name.clone()).or_insert(Setting {
            name,
            default,
            secret: false,
            required: false,
        });
        entry.secret |= secret;
        entry.required |= how == "required";
    }

    /// Follows a call that passes the `env` on to a runtime reader.
    fn follow(&mut self, key: String) {
        if !self.visited.insert(key.clone()) {
            return;
        }
        let readers = self.readers;
        for block in readers.get(&key).into_iter().flatten() {
            self.visit_block(block);
        }
    }
}

/// A variable's name: `SCREAMING_SNAKE_CASE`.
fn env_name(e: &syn::Expr) -> Option<String> {
    let syn::Expr::Lit(syn::ExprLit {
        lit: syn::Lit::Str(s),
        ..
    }) = e
    else {
        return None;
    };
    let v = s.value();
    let ok = v.len() > 1
        && v.starts_with(|c: char| c.is_ascii_uppercase())
        && v.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    ok.then_some(v)
}

fn str_lit(e: &syn::Expr) -> Option<String> {
    match e {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => Some(s.value()),
        _ => None,
    }
}

fn passes_env<'e>(mut args: impl Iterator<Item = &'e syn::Expr>) -> bool {
    args.any(|a| match a {
        syn::Expr::Path(p) => p.path.is_ident("env"),
        syn::Expr::Reference(r) => {
            matches!(&*r.expr, syn::Expr::Path(p) if p.path.is_ident("env"))
        }
        _ => false,
    })
}

impl<'ast> Visit<'ast> for Scan<'_> {
    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        let how = call.method.to_string();
        if READS.contains(&how.as_str()) {
            if let Some(name) = call.args.first().and_then(env_name) {
                let default = if how == "parse" {
                    call.args.iter().nth(1).and_then(str_lit)
                } else {
                    None
                };
                self.record(name, &how, default);
            }
        }
        syn::visit::visit_expr_method_call(self, call);
    }

    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        if let syn::Expr::Path(p) = &*call.func {
            let segments: Vec<String> = p
                .path
                .segments
                .iter()
                .map(|s| s.ident.to_string())
                .collect();
            // A local reader closure: `get("NAME")`, `secs("NAME", default)`.
            if segments.len() == 1 {
                if let Some(name) = call.args.first().and_then(env_name) {
                    self.record(name, "get", None);
                }
            }
            if passes_env(call.args.iter()) {
                let key = segments[segments.len().saturating_sub(2)..].join("::");
                self.follow(key);
            }
        }
        syn::visit::visit_expr_call(self, call);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNTIME: &str = r#"
        impl Db {
            pub fn from_env<F>(env: &Env<F>) -> Result<Self, E> {
                Ok(Self { url: env.required("DATABASE_URL")?, n: env.parse("DB_MAX", "10")?, p: proxies(env)? })
            }
        }
        fn proxies<F>(env: &Env<F>) -> Result<u8, E> {
            env.refused("OLD_NAME", "gone")?;
            Ok(env.text("PROXIES").len())
        }
        impl Unused { pub fn from_env<F>(env: &Env<F>) -> Self { env.get("NEVER") } }
        #[cfg(test)]
        mod tests { fn from_env(env: &Env<F>) { env.get("TEST_ONLY") } }
    "#;

    const CONFIG: &str = r#"
        fn read<F>(env: &Env<F>) -> Result<Config, E> {
            let get = |name: &str| env.get(name);
            let login = get("ADMIN_LOGIN");
            Ok(Config {
                addr: env.parse("HTTP_ADDR", "127.0.0.1:3000")?,
                db: Db::from_env(env)?,
                key: env.text("JWT_PRIVATE_KEY"),
                word: env.secret("SMTP_PASSWORD"),
                n: match env.get("THREADS") { Some(_) => env.parse("THREADS", "1")?, None => 4 },
                from: env.text("SMTP_FROM").ok_or(ConfigError::Missing("SMTP_FROM"))?,
            })
        }
    "#;

    #[test]
    fn the_readers_indexed_at_build_time_find_what_parsing_the_runtime_finds() {
        let config = include_str!("../../generated-service/src/config.rs");
        let built = read(config).expect("parses");
        assert!(built.iter().any(|s| s.name == "DATABASE_URL"), "{built:?}");
        assert_eq!(
            built,
            read_by(config, crate::runtime::sources()).expect("parses")
        );
    }

    #[test]
    fn reads_are_found_through_the_runtime_readers_the_config_calls() {
        let found = read_by(CONFIG, &[("src/db.rs", RUNTIME)]).expect("parses");
        let names: Vec<&str> = found.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ADMIN_LOGIN",
                "DATABASE_URL",
                "DB_MAX",
                "HTTP_ADDR",
                "JWT_PRIVATE_KEY",
                "PROXIES",
                "SMTP_FROM",
                "SMTP_PASSWORD",
                "THREADS"
            ]
        );
        let by = |n: &str| found.iter().find(|s| s.name == n).expect(n).clone();
        assert_eq!(by("HTTP_ADDR").default.as_deref(), Some("127.0.0.1:3000"));
        assert_eq!(by("THREADS").default, None, "read first without a default");
        assert!(by("DATABASE_URL").secret && by("DATABASE_URL").required);
        assert!(by("JWT_PRIVATE_KEY").secret && by("SMTP_PASSWORD").secret);
        assert!(!by("SMTP_FROM").secret && !by("ADMIN_LOGIN").secret);
    }
}
