//! Settings from the environment: a reader that names the variable at fault,
//! and the settings every service has. The generated `config.rs` gathers
//! these and the model's own, with the model's defaults.

use std::fmt;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Reads variables through a lookup: the process environment, or a test's map.
pub struct Env<F: Fn(&str) -> Option<String>> {
    get: F,
}

impl Env<fn(&str) -> Option<String>> {
    /// The process environment.
    pub fn process() -> Self {
        Self {
            get: |name| std::env::var(name).ok(),
        }
    }
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn new(get: F) -> Self {
        Self { get }
    }

    /// The raw value, if set.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.get)(name)
    }

    /// A value that counts as unset when blank (a URL, a list, a name).
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.trim().is_empty())
    }

    /// A secret: taken as given, unset only when empty.
    pub fn secret(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// A value the service cannot start without.
    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.secret(name).ok_or(ConfigError::Missing(name))
    }

    /// A retired variable: an error naming `instead` when it is set, so a
    /// deployment that still sets it hears of it. Deployment files never
    /// list it (svcgen reads the `Env` calls of the config to list them).
    pub fn refused(&self, name: &'static str, instead: &str) -> Result<(), ConfigError> {
        match self.text(name) {
            Some(_) => Err(ConfigError::Invalid {
                name,
                reason: instead.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// A value parsed as `T`, `default` when unset.
    pub fn parse<T: std::str::FromStr>(
        &self,
        name: &'static str,
        default: &str,
    ) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        let raw = self.get(name).unwrap_or_else(|| default.to_string());
        raw.parse().map_err(|e: T::Err| ConfigError::Invalid {
            name,
            reason: format!("{raw:?}: {e}"),
        })
    }
}

/// How the service reaches PostgreSQL.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    /// `DATABASE_URL` (required).
    pub url: String,
    /// `DATABASE_MAX_CONNECTIONS` (default 10).
    pub max_connections: u32,
    /// `DATABASE_ACQUIRE_TIMEOUT_MS` (default 5000): how long a request waits
    /// for a database connection before it is answered 503.
    pub acquire_timeout: Duration,
}

impl DatabaseSettings {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            url: env.required("DATABASE_URL")?,
            max_connections: env.parse("DATABASE_MAX_CONNECTIONS", "10")?,
            acquire_timeout: Duration::from_millis(
                env.parse("DATABASE_ACQUIRE_TIMEOUT_MS", "5000")?,
            ),
        })
    }
}

/// Never prints the credentials in the URL.
impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = match self.url.rsplit_once('@') {
            Some((_, host)) => format!("postgres://***@{host}"),
            None => self.url.clone(),
        };
        f.debug_struct("DatabaseSettings")
            .field("url", &url)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish()
    }
}

/// Prints `***` for a secret that is set (a setting, a token, a request
/// body's password), never its value.
pub fn redacted(secret: &impl Given) -> Option<&'static str> {
    secret.given().then_some("***")
}

/// A value that may be absent: a setting left unset, a body field left out.
pub trait Given {
    fn given(&self) -> bool;
}

impl<T> Given for Option<T> {
    fn given(&self) -> bool {
        self.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Env<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::new(move |name| map.get(name).cloned())
    }

    #[test]
    fn values_parse_or_name_the_variable_at_fault() {
        let e = env(&[("PORT", "80"), ("BAD", "x")]);
        assert_eq!(e.parse::<u16>("PORT", "1").unwrap(), 80);
        assert_eq!(e.parse::<u16>("UNSET", "7").unwrap(), 7);
        let err = e.parse::<u16>("BAD", "1").unwrap_err().to_string();
        assert!(err.starts_with("BAD is invalid: \"x\""), "{err}");
    }

    #[test]
    fn blank_text_is_unset_but_a_blank_secret_is_kept() {
        let e = env(&[("URL", "  "), ("SECRET", " ")]);
        assert_eq!(e.text("URL"), None);
        assert_eq!(e.secret("SECRET").as_deref(), Some(" "));
        assert!(matches!(
            e.required("NONE"),
            Err(ConfigError::Missing("NONE"))
        ));
    }

    #[test]
    fn a_retired_variable_is_refused_only_when_set() {
        assert!(env(&[("OLD", " ")]).refused("OLD", "use NEW").is_ok());
        let err = env(&[("OLD", "1")]).refused("OLD", "use NEW").unwrap_err();
        assert_eq!(err.to_string(), "OLD is invalid: use NEW");
    }

    #[test]
    fn the_database_url_is_required_and_never_printed_with_credentials() {
        assert!(DatabaseSettings::from_env(&env(&[])).is_err());
        let db = DatabaseSettings::from_env(&env(&[(
            "DATABASE_URL",
            "postgres://ann:s3cret@db:5432/app",
        )]))
        .unwrap();
        assert_eq!(db.max_connections, 10);
        assert_eq!(db.acquire_timeout, Duration::from_millis(5000));
        let shown = format!("{db:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("db:5432/app"),
            "{shown}"
        );
    }
}
