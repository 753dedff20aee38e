//! The model's identity as data, the settings read from the environment, and
//! the state every auth check shares: keys, hashing, caches and limits.

use super::hashing::{hash_in, Hashing, Memory};
use super::keys::{fingerprint, KeyRing, SigningKey, KEY_RING_REFRESH};
use super::live::{AccountTopics, LiveSessions};
use super::passwords;
use super::rules::Policy;
use super::throttle::{self, Limit};
use super::tokens::{token_kid, Audience, TokenFacts, TokenTransport, VerifiedTokens};
use crate::config::{redacted, ConfigError, Env};
use crate::error::{ApiError, FieldError};
use crate::validation::{normalize_email, Validator};
use axum::response::Response;
use chrono::Utc;
use ipnet::IpNet;
use sqlx::PgPool;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Who signs in and how, as the model says: the generated crate declares one
/// and the runtime reads every model fact of the auth core from it.
#[derive(Debug)]
pub struct Identity {
    /// The `iss` and `aud` of access tokens.
    pub tokens: Audience,
    /// The `namespace` of session events, and their topic.
    pub session_namespace: &'static str,
    pub session_topic: &'static str,
    /// The account object's change topics: its sessions are forgotten on them.
    pub account_topics: AccountTopics,
    /// The JSON names of the login and secret fields, as bodies and messages name them.
    pub login_field: &'static str,
    pub password_field: &'static str,
    /// Logins are email addresses, compared normalized.
    pub login_email: bool,
    pub sql: AccountSql,
    /// Device facts a sign-in may bring, stored with its session.
    pub device: &'static [DeviceField],
    pub transport: TokenTransport,
    pub policy: Policy,
    /// The most common passwords are refused.
    pub reject_common_passwords: bool,
    /// One-time-code flows, when the model has them.
    pub flows: Option<Flows>,
}

/// The statements that read and write the account object.
#[derive(Debug)]
pub struct AccountSql {
    /// `SELECT id, secret hash, role, verified, second factor` of an active
    /// account by its login (`$1`).
    pub sign_in: &'static str,
    /// The role of a live session's (`$1`) active account (`$2`), and when the session expires.
    pub caller: &'static str,
    /// The role of active account `$1`.
    pub role: &'static str,
    /// The same, locked for the transaction.
    pub role_locked: &'static str,
    /// Whether an active account other than `$2` has role `$1`.
    pub other_top: &'static str,
    /// The role of a `sessions` row's account, archived or not: a scalar
    /// subquery on `sessions.user_id`, read as the column `role`.
    pub session_role: &'static str,
    /// Inserts the bootstrap account (`$1` id, `$2` login, `$3` secret hash)
    /// unless its login is taken.
    pub bootstrap: &'static str,
}

/// A device fact of sessions: its JSON name and its column in `sessions`.
#[derive(Debug)]
pub struct DeviceField {
    pub name: &'static str,
    pub column: &'static str,
}

/// What one-time-code flows ask of a sign-in.
#[derive(Debug)]
pub struct Flows {
    /// A sign-in needs a confirmed account.
    pub require_verified: bool,
    /// Every sign-in needs the second factor.
    pub second_factor_required: bool,
}

impl Identity {
    /// Normalizes a login as stored: email addresses in their canonical form.
    pub fn normalize_login(&self, login: String) -> String {
        if self.login_email {
            normalize_email(login)
        } else {
            login
        }
    }

    /// The credentials of a sign-in body: both required, the login normalized.
    pub fn credentials(
        &self,
        login: Option<String>,
        secret: Option<String>,
    ) -> Result<(String, String), ApiError> {
        let mut v = Validator::default();
        let login = v.required(self.login_field, login.filter(|l| !l.trim().is_empty()));
        let secret = v.required(self.password_field, secret);
        match (login, secret) {
            (Some(login), Some(secret)) => Ok((self.normalize_login(login), secret)),
            _ => Err(v.into_error()),
        }
    }

    /// The model's secret policy beyond length: the most common passwords are refused.
    pub fn check_password_policy(&self, v: &mut Validator, field: &str, value: Option<&str>) {
        if self.reject_common_passwords {
            passwords::check_common(v, field, value);
        }
    }
}

/// The auth settings of the service's configuration.
#[derive(Clone)]
pub struct AuthSettings {
    /// The Ed25519 signing key, PKCS#8 PEM; without it a development key is
    /// generated at first start and kept in the database.
    pub jwt_private_key: Option<String>,
    /// The `kid` of that key (default: its fingerprint).
    pub jwt_key_id: Option<String>,
    /// How long a replaced signing key stays in the JWKS and verifies.
    pub key_overlap_secs: u32,
    /// Secret hashes computed at once.
    pub hash_concurrency: usize,
    /// How long a live session may be answered from memory; 0 asks the database every time.
    pub live_session_cache_secs: u32,
    pub limits: Limits,
}

/// What the model sets as the defaults of [`AuthSettings`].
#[derive(Debug, Clone, Copy)]
pub struct AuthDefaults {
    pub access_ttl_secs: u32,
    pub key_overlap_secs: u32,
    pub refresh_ttl_secs: u32,
    pub refresh_grace_secs: u32,
    pub session_lifetime_secs: u32,
    pub session_idle_secs: u32,
    pub live_session_cache_secs: u32,
    pub throttle_window_secs: u32,
    pub login_per_account: u32,
    pub login_per_address: u32,
    pub public_writes_per_address: u32,
}

impl AuthSettings {
    /// `JWT_PRIVATE_KEY`, `JWT_KEY_ID`, `JWT_KEY_OVERLAP_SECS`, `HASH_CONCURRENCY` (default: the CPU
    /// count), `ACCESS_TOKEN_TTL_SECS`, `REFRESH_TOKEN_TTL_SECS`,
    /// `REFRESH_GRACE_SECS`, `SESSION_LIFETIME_SECS`, `SESSION_IDLE_SECS`,
    /// `LIVE_SESSION_CACHE_SECS`, `THROTTLE_WINDOW_SECS`,
    /// `LOGIN_PER_ACCOUNT`, `LOGIN_PER_ADDRESS`, `PUBLIC_WRITES_PER_ADDRESS`
    /// (defaults from the model) and `TRUSTED_PROXIES` (default none).
    pub fn from_env<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
        defaults: &AuthDefaults,
    ) -> Result<Self, ConfigError> {
        let secs = |name: &'static str, default: u32| -> Result<u32, ConfigError> {
            env.parse(name, &default.to_string())
        };
        Ok(Self {
            jwt_private_key: env.text("JWT_PRIVATE_KEY"),
            jwt_key_id: env.text("JWT_KEY_ID"),
            key_overlap_secs: secs("JWT_KEY_OVERLAP_SECS", defaults.key_overlap_secs)?,
            hash_concurrency: match env.get("HASH_CONCURRENCY") {
                Some(_) => env.parse("HASH_CONCURRENCY", "1")?,
                None => std::thread::available_parallelism().map_or(2, usize::from),
            },
            live_session_cache_secs: secs(
                "LIVE_SESSION_CACHE_SECS",
                defaults.live_session_cache_secs,
            )?,
            limits: Limits {
                access_ttl_secs: i64::from(secs(
                    "ACCESS_TOKEN_TTL_SECS",
                    defaults.access_ttl_secs,
                )?),
                refresh_ttl_secs: i64::from(secs(
                    "REFRESH_TOKEN_TTL_SECS",
                    defaults.refresh_ttl_secs,
                )?),
                refresh_grace_secs: i64::from(secs(
                    "REFRESH_GRACE_SECS",
                    defaults.refresh_grace_secs,
                )?),
                session_lifetime_secs: i64::from(secs(
                    "SESSION_LIFETIME_SECS",
                    defaults.session_lifetime_secs,
                )?),
                session_idle_secs: i64::from(secs(
                    "SESSION_IDLE_SECS",
                    defaults.session_idle_secs,
                )?),
                window_secs: secs("THROTTLE_WINDOW_SECS", defaults.throttle_window_secs)?,
                login_per_account: secs("LOGIN_PER_ACCOUNT", defaults.login_per_account)?,
                login_per_address: secs("LOGIN_PER_ADDRESS", defaults.login_per_address)?,
                public_writes_per_address: secs(
                    "PUBLIC_WRITES_PER_ADDRESS",
                    defaults.public_writes_per_address,
                )?,
                trusted_proxies: trusted_proxies(env)?,
            },
        })
    }
}

/// Never prints the signing key.
impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("jwt_private_key", &redacted(&self.jwt_private_key))
            .field("jwt_key_id", &self.jwt_key_id)
            .field("key_overlap_secs", &self.key_overlap_secs)
            .field("hash_concurrency", &self.hash_concurrency)
            .field("live_session_cache_secs", &self.live_session_cache_secs)
            .field("limits", &self.limits)
            .finish()
    }
}

/// Token lifetimes and throttling.
#[derive(Debug, Clone)]
pub struct Limits {
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
    pub refresh_grace_secs: i64,
    /// A session ends this long after its sign-in, however often it is refreshed.
    pub session_lifetime_secs: i64,
    /// A session ends when it was not refreshed for this long.
    pub session_idle_secs: i64,
    pub window_secs: u32,
    pub login_per_account: u32,
    pub login_per_address: u32,
    pub public_writes_per_address: u32,
    /// The proxies in front of the service: the client is the rightmost
    /// `X-Forwarded-For` hop outside these networks.
    pub trusted_proxies: Vec<IpNet>,
}

/// `TRUSTED_PROXIES`: networks in CIDR (a bare address is one host), comma
/// separated. `TRUST_FORWARDED_FOR` trusted whatever hop came first, so it is
/// refused rather than ignored: a deployment that set it must name its proxies.
fn trusted_proxies<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Vec<IpNet>, ConfigError> {
    env.refused(
        "TRUST_FORWARDED_FOR",
        "replaced by TRUSTED_PROXIES, the proxies' networks in CIDR",
    )?;
    let raw = env.text("TRUSTED_PROXIES").unwrap_or_default();
    raw.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            n.parse::<IpNet>()
                .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                .map_err(|e| ConfigError::Invalid {
                    name: "TRUSTED_PROXIES",
                    reason: format!("{n:?}: {e}"),
                })
        })
        .collect()
}

impl Limits {
    /// How long a session (and its newest refresh token) lives past a sign-in
    /// or a refresh, before the absolute lifetime: the refresh token's
    /// lifetime, at most the idle limit.
    pub fn renewal_secs(&self) -> i64 {
        self.refresh_ttl_secs.min(self.session_idle_secs)
    }
}

/// Keys, the bound on concurrent secret hashes, caches and limits.
pub struct AuthState {
    pub(super) identity: &'static Identity,
    /// The key this replica signs with.
    pub(super) key: SigningKey,
    /// The public keys every replica verifies with (see [`KeyRing`]).
    pub(super) ring: KeyRing,
    pub(super) hashing: Hashing,
    /// Verified against when an account does not exist, so that an unknown
    /// account name costs the same time as a wrong secret.
    pub(super) dummy_hash: String,
    pub(super) limits: Limits,
    pub(super) verified: VerifiedTokens,
    /// The sign-in's one round trip: throttling and the account's lookup.
    pub(super) sign_in_sql: String,
    /// What opening a session writes, and its placeholder count.
    pub(super) open_session_sql: (String, usize),
    /// Sessions known to be live, shared with every request's context.
    pub live: Arc<LiveSessions>,
}

impl std::fmt::Debug for AuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthState")
            .field("key", &self.key)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl AuthState {
    /// Loads the signing key (see [`SigningKey::load`]) and the key ring, and prepares the rest.
    pub async fn load(
        db: &PgPool,
        identity: &'static Identity,
        settings: AuthSettings,
    ) -> anyhow::Result<Self> {
        let key = SigningKey::load(
            db,
            settings.jwt_private_key.as_deref(),
            settings.jwt_key_id.as_deref(),
        )
        .await?;
        let ring = KeyRing::read(db, settings.key_overlap_secs).await?;
        let dummy_hash = tokio::task::spawn_blocking(|| {
            hash_in(&mut Memory::default(), b"an account that does not exist")
        })
        .await?
        .map_err(|e| anyhow::anyhow!("hashing: {e}"))?;
        let cache = Duration::from_secs(u64::from(settings.live_session_cache_secs));
        Ok(Self {
            identity,
            key,
            ring,
            hashing: Hashing::new(settings.hash_concurrency),
            dummy_hash,
            limits: settings.limits,
            verified: VerifiedTokens::default(),
            sign_in_sql: throttle::sign_in_lookup_sql(identity.sql.sign_in),
            open_session_sql: identity.open_session_sql(),
            live: Arc::new(LiveSessions::new(cache, identity.account_topics)),
        })
    }

    pub fn identity(&self) -> &'static Identity {
        self.identity
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// A keyed digest of `data` (see [`SigningKey::keyed_digest`]).
    pub fn keyed_digest(&self, data: &[u8]) -> String {
        self.key.keyed_digest(data)
    }

    /// Whether `digest` is the keyed digest of `data`, compared in constant time.
    pub fn digest_matches(&self, data: &[u8], digest: &str) -> bool {
        self.key.digest_matches(data, digest)
    }

    /// The throttling window, in seconds.
    pub fn window_secs(&self) -> u32 {
        self.limits.window_secs
    }

    /// The JWKS route's answer: the current key and those still in their
    /// overlap, the ring re-read first (at most every few seconds): a service
    /// refetching for a new kid must find it whichever replica answers.
    pub async fn jwks(&self, db: &PgPool) -> Response {
        if self.ring.reread_due() {
            if let Err(e) = self.ring.reload(db).await {
                tracing::warn!(error = %e, "re-reading the key ring failed");
            }
        }
        self.ring.snapshot().jwks(Utc::now())
    }

    /// What an access token says, once its signature (by a key of the ring
    /// in force), issuer, audience and expiry are checked, from memory when
    /// an earlier request verified it. A `kid` the ring does not know re-reads
    /// the ring first (rate-limited): another replica may have started with a new key.
    pub async fn token_facts(&self, db: &PgPool, token: &str) -> Result<TokenFacts, ApiError> {
        let facts = self.verified_now(token);
        if facts.is_ok() {
            return facts;
        }
        // Only a token that failed has its header decoded again: every
        // request's token would otherwise cost a base64 and JSON decode.
        match token_kid(token) {
            Some(kid) if self.ring.reread_for(&kid) => {
                if let Err(e) = self.ring.reload(db).await {
                    tracing::warn!(error = %e, "re-reading the key ring failed");
                    return facts;
                }
                self.verified_now(token)
            }
            _ => facts,
        }
    }

    fn verified_now(&self, token: &str) -> Result<TokenFacts, ApiError> {
        let (keys, now) = (self.ring.snapshot(), Utc::now());
        self.verified
            .facts_with(|kid| keys.verifying(kid, now), self.identity.tokens, token)
    }

    /// Re-reads the key ring every [`KEY_RING_REFRESH`] until `stop`, so that
    /// a replica learns keys other replicas started with, and when they were replaced.
    pub async fn keep_keys(
        self: Arc<Self>,
        db: PgPool,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        while !*stop.borrow() {
            tokio::select! {
                () = tokio::time::sleep(KEY_RING_REFRESH) => {},
                _ = stop.changed() => break,
            }
            if let Err(e) = self.ring.reload(&db).await {
                tracing::warn!(error = %e, "re-reading the key ring failed");
            }
        }
    }

    /// Hashes a secret with argon2id off the async runtime, a bounded number at a time.
    pub async fn hash_secret(&self, secret: String) -> Result<String, ApiError> {
        self.hashing.hash(secret).await
    }

    /// Whether `secret` matches the stored `hash`.
    pub async fn verify_secret(&self, hash: String, secret: String) -> Result<bool, ApiError> {
        self.hashing.verify(hash, secret).await
    }

    /// The model's secret policy beyond length (see [`Identity::check_password_policy`]).
    pub fn check_password_policy(&self, v: &mut Validator, field: &str, value: Option<&str>) {
        self.identity.check_password_policy(v, field, value);
    }

    /// Limits public writes (registration) per client address.
    pub async fn throttle_public_write(
        &self,
        db: &PgPool,
        addr: IpAddr,
        route: &str,
    ) -> Result<(), ApiError> {
        let l = &self.limits;
        throttle::hit(
            db,
            &format!("write:{route}:{}", throttle::address_key(addr)),
            (l.public_writes_per_address, Limit::PublicWritesPerAddress),
            l.window_secs,
        )
        .await
    }

    /// Limits a user's uploads to `per_window` in each throttling window.
    pub async fn throttle_uploads(
        &self,
        db: &PgPool,
        user: Uuid,
        route: &str,
        per_window: u32,
    ) -> Result<(), ApiError> {
        let bucket = format!("upload:{route}:{user}");
        throttle::hit(
            db,
            &bucket,
            (per_window, Limit::UploadsPerUser),
            self.limits.window_secs,
        )
        .await
    }

    /// Checks the current value of an account's secret (read by `sql`), sent
    /// again to change it. Wrong values are counted per account like sign-ins.
    pub async fn confirm_secret(
        &self,
        db: &PgPool,
        account: Uuid,
        sql: &str,
        secret: String,
        field: &'static str,
    ) -> Result<(), ApiError> {
        let l = &self.limits;
        let bucket = format!("confirm:{account}");
        let limit = (l.login_per_account, Limit::SecretConfirmationsPerAccount);
        throttle::reserve(db, &bucket, limit, l.window_secs).await?;
        let hash: Option<String> = sqlx::query_scalar(sql)
            .bind(account)
            .fetch_optional(db)
            .await?;
        let hash = hash.ok_or(ApiError::NotFound)?;
        if self.verify_secret(hash, secret).await? {
            return throttle::refund(db, &bucket).await;
        }
        Err(ApiError::Validation(vec![FieldError::new(
            field,
            "does not match the current value",
        )]))
    }

    /// The bootstrap secret meets the policy every other secret meets.
    fn bootstrap_secret_allowed(&self, secret: &str) -> anyhow::Result<()> {
        let mut v = Validator::default();
        self.check_password_policy(&mut v, "SUPERADMIN_PASSWORD", Some(secret));
        match v.finish() {
            Ok(()) => Ok(()),
            Err(_) => anyhow::bail!(
                "SUPERADMIN_PASSWORD is one of the most common passwords; choose another"
            ),
        }
    }

    /// Creates the first account of the top role from the bootstrap settings
    /// (`login`, `secret`) when no account has that login yet, on `conn` (the
    /// caller's transaction, which also announces it); answers its id when
    /// it was created.
    pub async fn bootstrap_admin(
        &self,
        conn: &mut sqlx::PgConnection,
        login: Option<&str>,
        secret: Option<&str>,
    ) -> anyhow::Result<Option<Uuid>> {
        let (Some(login), Some(secret)) = (login, secret) else {
            return Ok(None);
        };
        self.bootstrap_secret_allowed(secret)?;
        let login = self.identity.normalize_login(login.to_owned());
        let hash = self
            .hash_secret(secret.to_owned())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let id = Uuid::new_v4();
        let created = sqlx::query(self.identity.sql.bootstrap)
            .bind(id)
            .bind(&login)
            .bind(hash)
            .execute(conn)
            .await?;
        if created.rows_affected() == 0 {
            return Ok(None);
        }
        tracing::info!(account = %fingerprint(login.as_bytes()), "created the bootstrap super-admin");
        Ok(Some(id))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::auth::rules::tests::POLICY;
    use crate::auth::tokens::tests::COOKIES;

    const DEFAULTS: AuthDefaults = AuthDefaults {
        access_ttl_secs: 900,
        key_overlap_secs: 1_800,
        refresh_ttl_secs: 86_400,
        refresh_grace_secs: 10,
        session_lifetime_secs: 86_400,
        session_idle_secs: 3_600,
        live_session_cache_secs: 60,
        throttle_window_secs: 300,
        login_per_account: 10,
        login_per_address: 100,
        public_writes_per_address: 20,
    };

    #[test]
    fn auth_settings_take_the_models_defaults_unless_the_environment_says_otherwise() {
        let env = Env::new(|name| match name {
            "ACCESS_TOKEN_TTL_SECS" => Some("60".to_string()),
            "JWT_KEY_OVERLAP_SECS" => Some("3".to_string()),
            "JWT_PRIVATE_KEY" => Some("-----BEGIN PRIVATE KEY-----".to_string()),
            "HASH_CONCURRENCY" => Some("3".to_string()),
            _ => None,
        });
        let s = AuthSettings::from_env(&env, &DEFAULTS).unwrap();
        assert_eq!((s.limits.access_ttl_secs, s.key_overlap_secs), (60, 3));
        let model = AuthSettings::from_env(&Env::new(|_| None), &DEFAULTS).unwrap();
        assert_eq!(model.key_overlap_secs, 1_800);
        assert_eq!(s.limits.refresh_ttl_secs, 86_400);
        assert_eq!(
            (s.limits.session_lifetime_secs, s.limits.session_idle_secs),
            (86_400, 3_600)
        );
        assert_eq!((s.limits.login_per_account, s.hash_concurrency), (10, 3));
        assert!(s.limits.trusted_proxies.is_empty());
        assert!(
            !format!("{s:?}").contains("BEGIN"),
            "the key is never printed"
        );
        let bad = Env::new(|name| (name == "REFRESH_GRACE_SECS").then(|| "-1".to_string()));
        let err = AuthSettings::from_env(&bad, &DEFAULTS)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("REFRESH_GRACE_SECS is invalid"), "{err}");
    }

    /// An identity like a small model's; whether logins are email addresses
    /// and how tokens travel vary.
    pub(crate) const fn identity(login_email: bool, transport: TokenTransport) -> Identity {
        Identity {
            tokens: Audience {
                issuer: "svc",
                audience: "aud",
            },
            session_namespace: "svc",
            session_topic: "svc.sessions",
            account_topics: AccountTopics {
                updated: "user-updated",
                deleted: "user-deleted",
            },
            login_field: "email",
            password_field: "password",
            login_email,
            sql: AccountSql {
                sign_in: "SELECT 1",
                caller: "SELECT 1",
                role: "SELECT 1",
                role_locked: "SELECT 1",
                other_top: "SELECT 1",
                session_role: "NULL::text",
                bootstrap: "SELECT 1",
            },
            device: &[
                DeviceField {
                    name: "deviceName",
                    column: "device_name",
                },
                DeviceField {
                    name: "city",
                    column: "city",
                },
            ],
            transport,
            policy: POLICY,
            reject_common_passwords: true,
            flows: None,
        }
    }

    /// Email logins, with cookies and a token header.
    pub(crate) static IDENTITY: Identity = identity(
        true,
        TokenTransport {
            header: Some("x-access-token"),
            cookies: Some(COOKIES),
        },
    );

    const BEARER_ONLY: TokenTransport = TokenTransport {
        header: None,
        cookies: None,
    };

    /// The state of [`IDENTITY`] with a fresh key, as `load` makes it without a database.
    pub(crate) fn test_state() -> AuthState {
        let key = crate::auth::keys::tests::test_key();
        AuthState {
            identity: &IDENTITY,
            ring: KeyRing::of(&key, 60),
            key,
            hashing: Hashing::new(1),
            dummy_hash: String::new(),
            limits: Limits {
                access_ttl_secs: 600,
                refresh_ttl_secs: 3600,
                refresh_grace_secs: 5,
                session_lifetime_secs: 7_200,
                session_idle_secs: 1_800,
                window_secs: 60,
                login_per_account: 5,
                login_per_address: 50,
                public_writes_per_address: 10,
                trusted_proxies: Vec::new(),
            },
            verified: VerifiedTokens::default(),
            sign_in_sql: String::new(),
            open_session_sql: IDENTITY.open_session_sql(),
            live: Arc::new(LiveSessions::new(
                Duration::from_secs(60),
                IDENTITY.account_topics,
            )),
        }
    }

    #[test]
    fn trusted_proxies_are_networks_and_the_old_switch_is_refused() {
        let env = Env::new(|name| {
            (name == "TRUSTED_PROXIES").then(|| "10.0.0.0/8, 192.0.2.1 ,fd00::/8".to_string())
        });
        let s = AuthSettings::from_env(&env, &DEFAULTS).unwrap();
        let nets: Vec<String> = s
            .limits
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.1/32", "fd00::/8"]);
        for (name, value) in [
            ("TRUSTED_PROXIES", "10.0.0.0/33"),
            ("TRUST_FORWARDED_FOR", "true"),
        ] {
            let bad = Env::new(|n| (n == name).then(|| value.to_string()));
            let err = AuthSettings::from_env(&bad, &DEFAULTS)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(&format!("{name} is invalid")), "{err}");
        }
    }

    #[test]
    fn the_bootstrap_secret_meets_the_password_policy() {
        let state = test_state();
        assert!(state
            .bootstrap_secret_allowed("root admin password")
            .is_ok());
        let err = state
            .bootstrap_secret_allowed("Qwerty12345")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("SUPERADMIN_PASSWORD is one of the most common"),
            "{err}"
        );
    }

    #[test]
    fn credentials_are_both_required_and_logins_normalized() {
        let (login, secret) = IDENTITY
            .credentials(Some(" Ann@Example.COM ".into()), Some("s".into()))
            .expect("both given");
        assert_eq!(login, normalize_email(" Ann@Example.COM ".into()));
        assert_eq!(secret, "s");
        let Err(ApiError::Validation(errors)) = IDENTITY.credentials(Some("  ".into()), None)
        else {
            panic!("a blank login and no secret are refused");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["email", "password"]);
    }

    #[test]
    fn logins_other_than_email_are_kept_as_given() {
        let plain = identity(false, BEARER_ONLY);
        assert_eq!(plain.normalize_login(" Ann ".into()), " Ann ");
    }

    #[test]
    fn the_password_policy_follows_the_model() {
        let mut v = Validator::default();
        IDENTITY.check_password_policy(&mut v, "password", Some("letmein"));
        assert!(v.finish().is_err());
        let lenient = Identity {
            reject_common_passwords: false,
            ..identity(true, BEARER_ONLY)
        };
        let mut v = Validator::default();
        lenient.check_password_policy(&mut v, "password", Some("letmein"));
        assert!(v.finish().is_ok());
    }
}
