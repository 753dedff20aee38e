//! One-time codes (feature `verification`): confirming an address, resetting
//! a secret, and the second factor of a sign-in.
//!
//! A code is random, valid for a short time, used once, and stored only as a
//! keyed digest; wrong tries are counted and void it past the limit. Codes
//! are delivered by a request on the model's delivery topic (the generated
//! crate publishes [`Delivery`]) and, with SMTP configured, by [`Mailer`].
//! Starting a flow answers before any work that depends on the account, so
//! an unknown account cannot be told from a known one.

use crate::auth::keys::fingerprint;
use crate::auth::sessions::PendingSignIn;
use crate::auth::{throttle, AuthState};
use crate::error::ApiError;
use crate::measure::Limit;
use crate::validation::Validator;
use chrono::{DateTime, Duration as Span, Utc};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Postgres, Row, Transaction};
use std::net::IpAddr;
use uuid::Uuid;

/// A transaction a code check commits itself when it counts a wrong try.
pub type Tx = Transaction<'static, Postgres>;

/// The model's one-time codes: their shape, lifetime and limits, the names of
/// their delivery requests, and the account statements the flows read.
#[derive(Debug)]
pub struct Codes {
    pub digits: u32,
    pub ttl_secs: i64,
    pub max_attempts: i32,
    /// Codes sent to one account, and code requests or checks from one
    /// client address, per throttling window.
    /// (Second-factor challenges count as codes sent.)
    pub requests_per_account: u32,
    pub requests_per_address: u32,
    /// Code checks per account name (or, for a second factor, per account)
    /// and kind per throttling window, across all its codes: new codes do
    /// not buy new guesses.
    pub checks_per_account: u32,
    /// The `kind` of the delivery requests that confirm an address and reset a secret.
    pub verify_kind: &'static str,
    pub reset_kind: &'static str,
    /// The secret's JSON name, as the reset email names it.
    pub secret_name: &'static str,
    /// `id, address, verified, locale` of an active account by its login (`$1`).
    pub recipient_sql: &'static str,
    /// `address, locale` of an active account by id (`$1`).
    pub recipient_by_id_sql: &'static str,
}

/// What [`Codes::limit_address`] counts from an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressLimit {
    /// Asking for a code to be sent.
    CodeRequests,
    /// Sending a code back.
    CodeChecks,
}

/// What a code is for; its `kind` names its delivery request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Verify,
    Reset,
    SecondFactor,
}

/// An account as the flows see it.
#[derive(Debug)]
pub struct Recipient {
    pub id: Uuid,
    pub address: String,
    pub verified: bool,
    pub locale: Option<String>,
}

/// A new code, as stored and as sent.
pub struct Issued {
    pub id: Uuid,
    pub code: String,
    pub expires_at: DateTime<Utc>,
}

/// Never prints the code.
impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("id", &self.id)
            .field("code", &"***")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A stored code, locked for the rest of the transaction.
#[derive(Debug)]
pub struct StoredCode {
    pub id: Uuid,
    pub user_id: Uuid,
    code_digest: String,
    attempts: i32,
    expires_at: DateTime<Utc>,
    pending_sign_in: Option<serde_json::Value>,
}

impl StoredCode {
    fn read(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            code_digest: row.try_get("code_digest")?,
            attempts: row.try_get("attempts")?,
            expires_at: row.try_get("expires_at")?,
            pending_sign_in: row.try_get("pending_sign_in")?,
        })
    }

    /// The sign-in a second-factor challenge completes.
    pub fn pending_sign_in(&self) -> Result<PendingSignIn, ApiError> {
        self.pending_sign_in
            .clone()
            .map(serde_json::from_value)
            .transpose()
            .map_err(ApiError::internal)
            .map(Option::unwrap_or_default)
    }
}

/// A delivery request, as the mailer reads it from the delivery topic. Its
/// `Debug` leaves the code out; the topic itself is the mailer's.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: Uuid,
    pub kind: &'static str,
    pub recipient: String,
    pub user_id: Uuid,
    pub code: String,
    pub expires_at: DateTime<Utc>,
    pub locale: Option<String>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("recipient", &self.recipient)
            .field("user_id", &self.user_id)
            .field("code", &"***")
            .field("expires_at", &self.expires_at)
            .field("locale", &self.locale)
            .finish()
    }
}

/// The columns of [`StoredCode`].
const CODE_COLUMNS: &str = "id, user_id, code_digest, attempts, expires_at, pending_sign_in";

/// The answer to a code that is wrong, expired, used or void.
pub fn rejected() -> ApiError {
    ApiError::CodeRejected("the code is wrong, expired or already used; ask for a new one".into())
}

impl Codes {
    /// The `kind` of `purpose`'s delivery request (and of its stored codes).
    pub fn kind(&self, purpose: Purpose) -> &'static str {
        match purpose {
            Purpose::Verify => self.verify_kind,
            Purpose::Reset => self.reset_kind,
            Purpose::SecondFactor => "secondFactor",
        }
    }

    /// A uniformly random code of [`Self::digits`] digits.
    pub fn new_code(&self) -> Result<String, ApiError> {
        let modulus = 10u64.pow(self.digits);
        // Rejection sampling keeps every code equally likely.
        let limit = u64::MAX - u64::MAX % modulus;
        let rng = SystemRandom::new();
        loop {
            let mut bytes = [0u8; 8];
            rng.fill(&mut bytes)
                .map_err(|_| ApiError::internal(anyhow::anyhow!("no randomness")))?;
            let n = u64::from_le_bytes(bytes);
            if n < limit {
                return Ok(format!(
                    "{:0width$}",
                    n % modulus,
                    width = self.digits as usize
                ));
            }
        }
    }

    /// What a code's keyed digest covers: its id and purpose, so that a
    /// digest cannot be replayed for another code.
    fn digest_input(&self, id: Uuid, purpose: Purpose, code: &str) -> Vec<u8> {
        format!("code:{}:{id}:{}", self.kind(purpose), code.trim()).into_bytes()
    }

    /// The account whose login is `login`, if active.
    pub async fn recipient(&self, db: &PgPool, login: &str) -> Result<Option<Recipient>, ApiError> {
        let row = sqlx::query(self.recipient_sql)
            .bind(login)
            .fetch_optional(db)
            .await?;
        let read = |row: PgRow| -> Result<Recipient, sqlx::Error> {
            Ok(Recipient {
                id: row.try_get("id")?,
                address: row.try_get("address")?,
                verified: row.try_get("verified")?,
                locale: row.try_get("locale")?,
            })
        };
        Ok(row.map(read).transpose()?)
    }

    /// The address and locale of active account `id`.
    pub async fn address_of(
        &self,
        db: &PgPool,
        id: Uuid,
    ) -> Result<Option<(String, Option<String>)>, ApiError> {
        Ok(sqlx::query_as(self.recipient_by_id_sql)
            .bind(id)
            .fetch_optional(db)
            .await?)
    }

    /// The account name of a flow's body: required, normalized as stored.
    pub fn account_name(
        &self,
        auth: &AuthState,
        v: &mut Validator,
        raw: Option<String>,
    ) -> Option<String> {
        let identity = auth.identity();
        v.required(identity.login_field, raw.filter(|n| !n.trim().is_empty()))
            .map(|name| identity.normalize_login(name))
    }

    /// Counts a code request or a code check (`what`) from `addr`; past the
    /// limit the answer is 429.
    pub async fn limit_address(
        &self,
        auth: &AuthState,
        db: &PgPool,
        what: AddressLimit,
        addr: IpAddr,
    ) -> Result<(), ApiError> {
        let (prefix, limit) = match what {
            AddressLimit::CodeRequests => ("code", Limit::CodeRequestsPerAddress),
            AddressLimit::CodeChecks => ("code-check", Limit::CodeChecksPerAddress),
        };
        let bucket = format!("{prefix}:address:{}", throttle::address_key(addr));
        let limit = (self.requests_per_address, limit);
        throttle::hit(db, &bucket, limit, auth.window_secs()).await
    }

    /// Counts a check of a `purpose` code against the budget of `account`
    /// (a name's fingerprint, or an account's id): past it the answer is 429
    /// with Retry-After, whichever code is tried and whether the account exists.
    async fn limit_checks<'e>(
        &self,
        auth: &AuthState,
        db: impl sqlx::PgExecutor<'e>,
        purpose: Purpose,
        account: &str,
    ) -> Result<(), ApiError> {
        let bucket = self.checks_bucket(purpose, account);
        let limit = (self.checks_per_account, Limit::CodeChecksPerAccount);
        throttle::hit(db, &bucket, limit, auth.window_secs()).await
    }

    fn checks_bucket(&self, purpose: Purpose, account: &str) -> String {
        format!("code-check:{}:{account}", self.kind(purpose))
    }

    /// Counts a second-factor challenge for `account`, like a code sent: past
    /// [`Self::requests_per_account`] the answer is 429 with Retry-After (only
    /// a caller who knows the secret gets here, so it tells nothing new).
    pub async fn limit_challenges(
        &self,
        auth: &AuthState,
        db: &PgPool,
        account: Uuid,
    ) -> Result<(), ApiError> {
        let bucket = format!("code:{}:{account}", self.kind(Purpose::SecondFactor));
        let limit = (self.requests_per_account, Limit::CodeRequestsPerAccount);
        throttle::hit(db, &bucket, limit, auth.window_secs()).await
    }

    /// Checks the body and limits of a completion: the account name and the
    /// code (both required; errors go to `v`), counted as a code check from
    /// `addr` and against the name's budget of `purpose` checks; answers the
    /// account, if any, and the code.
    #[allow(clippy::too_many_arguments)]
    pub async fn completion(
        &self,
        auth: &AuthState,
        db: &PgPool,
        addr: IpAddr,
        purpose: Purpose,
        v: &mut Validator,
        raw_account: Option<String>,
        raw_code: Option<String>,
    ) -> Result<Option<(Option<Recipient>, String)>, ApiError> {
        let name = self.account_name(auth, v, raw_account);
        let code = v.required("code", raw_code.filter(|c| !c.trim().is_empty()));
        let (Some(name), Some(code)) = (name, code) else {
            return Ok(None);
        };
        self.limit_address(auth, db, AddressLimit::CodeChecks, addr)
            .await?;
        // By name, before the lookup: names without an account run out alike.
        self.limit_checks(auth, db, purpose, &fingerprint(name.as_bytes()))
            .await?;
        Ok(Some((self.recipient(db, &name).await?, code)))
    }

    /// The account's part of starting a flow, after the answer: a new code
    /// for the account named `login` and its delivery request, unless there
    /// is no such account, it is already confirmed, or it asked too often.
    pub async fn issue(
        &self,
        auth: &AuthState,
        db: &PgPool,
        login: &str,
        purpose: Purpose,
    ) -> Result<Option<Delivery>, ApiError> {
        let Some(to) = self.recipient(db, login).await? else {
            return Ok(None);
        };
        if purpose == Purpose::Verify && to.verified {
            return Ok(None);
        }
        let kind = self.kind(purpose);
        let bucket = format!("code:{kind}:{}", to.id);
        let limit = (self.requests_per_account, Limit::CodeRequestsPerAccount);
        if throttle::hit(db, &bucket, limit, auth.window_secs())
            .await
            .is_err()
        {
            tracing::info!(kind, "code requests for an account are over the limit");
            return Ok(None);
        }
        let mut tx = db.begin().await?;
        let issued = self.store(auth, &mut tx, to.id, purpose, None).await?;
        tx.commit().await?;
        Ok(Some(
            self.delivery(purpose, to.address, to.id, issued, to.locale),
        ))
    }

    /// The delivery request of an issued code.
    pub fn delivery(
        &self,
        purpose: Purpose,
        recipient: String,
        user_id: Uuid,
        issued: Issued,
        locale: Option<String>,
    ) -> Delivery {
        Delivery {
            id: Uuid::new_v4(),
            kind: self.kind(purpose),
            recipient,
            user_id,
            code: issued.code,
            expires_at: issued.expires_at,
            locale,
        }
    }

    /// Stores a new code for `account_id` (voiding its earlier ones of the
    /// same purpose), with the sign-in it completes for a second factor.
    pub async fn store(
        &self,
        auth: &AuthState,
        tx: &mut PgConnection,
        account_id: Uuid,
        purpose: Purpose,
        pending: Option<&PendingSignIn>,
    ) -> Result<Issued, ApiError> {
        let id = Uuid::new_v4();
        let code = self.new_code()?;
        let expires_at = Utc::now() + Span::seconds(self.ttl_secs);
        let kind = self.kind(purpose);
        sqlx::query("UPDATE verification_codes SET used_at = now() WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL")
            .bind(account_id)
            .bind(kind)
            .execute(&mut *tx)
            .await?;
        let pending = pending
            .map(serde_json::to_value)
            .transpose()
            .map_err(ApiError::internal)?;
        sqlx::query(
            "INSERT INTO verification_codes (id, user_id, purpose, code_digest, pending_sign_in, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(account_id)
        .bind(kind)
        .bind(auth.keyed_digest(&self.digest_input(id, purpose, &code)))
        .bind(pending)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        Ok(Issued {
            id,
            code,
            expires_at,
        })
    }

    /// The live code of `purpose` for an account, locked.
    pub async fn live(
        &self,
        tx: &mut PgConnection,
        account_id: Uuid,
        purpose: Purpose,
    ) -> Result<Option<StoredCode>, ApiError> {
        let sql = format!(
            "SELECT {CODE_COLUMNS} FROM verification_codes
         WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL ORDER BY created_at DESC LIMIT 1 FOR UPDATE"
        );
        let row = sqlx::query(&sql)
            .bind(account_id)
            .bind(self.kind(purpose))
            .fetch_optional(&mut *tx)
            .await?;
        Ok(row.as_ref().map(StoredCode::read).transpose()?)
    }

    /// The unused second-factor challenge `id`, locked, counted against its
    /// account's budget of second-factor checks. The count is written in `tx`
    /// (one connection per check), so it stays when a wrong code commits it.
    pub async fn challenge(
        &self,
        auth: &AuthState,
        tx: &mut PgConnection,
        id: Uuid,
    ) -> Result<Option<StoredCode>, ApiError> {
        let sql = format!(
            "SELECT {CODE_COLUMNS} FROM verification_codes WHERE id = $1 AND purpose = $2 AND used_at IS NULL FOR UPDATE"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(self.kind(Purpose::SecondFactor))
            .fetch_optional(&mut *tx)
            .await?;
        let stored = row.as_ref().map(StoredCode::read).transpose()?;
        if let Some(stored) = &stored {
            let account = stored.user_id.to_string();
            self.limit_checks(auth, &mut *tx, Purpose::SecondFactor, &account)
                .await?;
        }
        Ok(stored)
    }

    /// Checks `code` against the stored one (locked in `tx`) and spends it. A
    /// wrong code counts an attempt, committed although the request fails;
    /// past the limit the code is void.
    pub async fn spend(
        &self,
        auth: &AuthState,
        mut tx: Tx,
        stored: Option<StoredCode>,
        purpose: Purpose,
        code: &str,
    ) -> Result<(Tx, StoredCode), ApiError> {
        let Some(stored) = stored else {
            return Err(rejected());
        };
        if stored.expires_at <= Utc::now() || stored.attempts >= self.max_attempts {
            return Err(rejected());
        }
        if !auth.digest_matches(
            &self.digest_input(stored.id, purpose, code),
            &stored.code_digest,
        ) {
            let attempts = stored.attempts + 1;
            sqlx::query("UPDATE verification_codes SET attempts = $2, used_at = CASE WHEN $2 >= $3 THEN now() END WHERE id = $1")
                .bind(stored.id)
                .bind(attempts)
                .bind(self.max_attempts)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Err(if attempts >= self.max_attempts {
                ApiError::CodeRejected("too many wrong codes; ask for a new one".into())
            } else {
                rejected()
            });
        }
        sqlx::query("UPDATE verification_codes SET used_at = now() WHERE id = $1")
            .bind(stored.id)
            .execute(&mut *tx)
            .await?;
        Ok((tx, stored))
    }
}

/// How the mailer talks to its SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    StartTls,
    Tls,
    /// A relay on a trusted network.
    None,
}

/// Sends delivery requests as email over SMTP.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: lettre::message::Mailbox,
    codes: &'static Codes,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// A mailer through `host:port`, signing in with `credentials` (user
    /// name, secret) when given, sending as `from`.
    pub fn new(
        host: &str,
        port: u16,
        tls: SmtpTls,
        credentials: Option<(String, String)>,
        from: &str,
        codes: &'static Codes,
    ) -> anyhow::Result<Self> {
        let builder = match tls {
            SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?,
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        };
        let mut builder = builder
            .port(port)
            .timeout(Some(std::time::Duration::from_secs(10)));
        if let Some((name, secret)) = credentials {
            builder = builder.credentials(Credentials::new(name, secret));
        }
        Ok(Self {
            transport: builder.build(),
            from: from.parse()?,
            codes,
        })
    }

    /// Sends `d` as a plain-text email.
    pub async fn send(&self, d: &Delivery) -> anyhow::Result<()> {
        let message = Message::builder()
            .from(self.from.clone())
            .to(d.recipient.parse()?)
            .subject(self.subject(d))
            .header(ContentType::TEXT_PLAIN)
            .body(self.body(d))?;
        self.transport.send(message).await?;
        Ok(())
    }

    fn subject(&self, d: &Delivery) -> &'static str {
        self.wording(d).0
    }

    fn body(&self, d: &Delivery) -> String {
        let minutes = (d.expires_at - Utc::now()).num_minutes().max(1);
        let purpose = self.wording(d).1;
        format!("Your code is {}.\n\nUse it within {minutes} minutes to {purpose}. If you did not ask for it, ignore this message.\n", d.code)
    }

    /// The subject and what the code is for, by the delivery's kind.
    fn wording(&self, d: &Delivery) -> (&'static str, String) {
        if d.kind == self.codes.verify_kind {
            ("Confirm your address", "confirm your address".into())
        } else if d.kind == self.codes.reset_kind {
            (
                "Your reset code",
                format!("choose a new {}", self.codes.secret_name),
            )
        } else {
            ("Your sign-in code", "finish signing in".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static CODES: Codes = Codes {
        digits: 6,
        ttl_secs: 600,
        max_attempts: 5,
        requests_per_account: 5,
        requests_per_address: 30,
        checks_per_account: 10,
        verify_kind: "emailVerification",
        reset_kind: "passwordReset",
        secret_name: "password",
        recipient_sql: "SELECT 1",
        recipient_by_id_sql: "SELECT 1",
    };

    #[test]
    fn debug_output_never_shows_a_code() {
        let issued = Issued {
            id: Uuid::nil(),
            code: "493817".into(),
            expires_at: Utc::now(),
        };
        let delivery = Delivery {
            id: Uuid::nil(),
            kind: "emailVerification",
            recipient: "ana@example.com".into(),
            user_id: Uuid::nil(),
            code: "493817".into(),
            expires_at: Utc::now(),
            locale: None,
        };
        let shown = format!("{issued:?} {delivery:?}");
        assert!(!shown.contains("493817"), "{shown}");
        assert!(shown.contains("ana@example.com"), "{shown}");
    }

    #[test]
    fn codes_have_their_digits_with_leading_zeros() {
        for _ in 0..200 {
            let code = CODES.new_code().expect("a code");
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
        }
        let short = Codes { digits: 4, ..CODES };
        assert_eq!(short.new_code().expect("a code").len(), 4);
    }

    #[test]
    fn purposes_are_named_by_the_model() {
        assert_eq!(CODES.kind(Purpose::Verify), "emailVerification");
        assert_eq!(CODES.kind(Purpose::Reset), "passwordReset");
        assert_eq!(CODES.kind(Purpose::SecondFactor), "secondFactor");
    }

    #[test]
    fn check_budgets_span_every_code_of_a_kind_and_no_other_kind() {
        let name = fingerprint(b"ann@example.com");
        let reset = CODES.checks_bucket(Purpose::Reset, &name);
        assert_eq!(reset, format!("code-check:passwordReset:{name}"));
        // No code id in the bucket: a new code does not open a new budget.
        assert_ne!(reset, CODES.checks_bucket(Purpose::Verify, &name));
        assert!(!reset.contains("ann@"), "the name is kept as a fingerprint");
    }

    #[test]
    fn a_digest_covers_the_code_its_id_and_purpose() {
        let id = Uuid::new_v4();
        let input = CODES.digest_input(id, Purpose::Reset, " 123456 ");
        assert_eq!(
            input,
            format!("code:passwordReset:{id}:123456").into_bytes()
        );
        assert_ne!(input, CODES.digest_input(id, Purpose::Verify, "123456"));
        assert_ne!(
            input,
            CODES.digest_input(Uuid::new_v4(), Purpose::Reset, "123456")
        );
    }

    #[test]
    fn deliveries_carry_the_code_for_their_kind() {
        let issued = Issued {
            id: Uuid::new_v4(),
            code: "042424".into(),
            expires_at: Utc::now(),
        };
        let user = Uuid::new_v4();
        let d = CODES.delivery(
            Purpose::Verify,
            "ann@example.com".into(),
            user,
            issued,
            None,
        );
        let json = serde_json::to_value(&d).expect("JSON");
        assert_eq!(json["kind"], "emailVerification");
        assert_eq!(json["code"], "042424");
        assert_eq!(json["userId"], serde_json::json!(user));
        assert!(json.get("expiresAt").is_some() && json.get("locale").is_some());
    }

    #[test]
    fn a_second_factor_challenge_keeps_its_sign_in() {
        let pending = PendingSignIn::new(
            IpAddr::from([192, 0, 2, 1]),
            true,
            [("device_name", Some("phone".to_string()))],
        );
        let stored = StoredCode {
            id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            code_digest: String::new(),
            attempts: 0,
            expires_at: Utc::now(),
            pending_sign_in: Some(serde_json::to_value(&pending).expect("JSON")),
        };
        let back = stored.pending_sign_in().expect("readable");
        assert_eq!(back.client_address, "192.0.2.1");
        assert!(back.set_cookie);
        let none = StoredCode {
            pending_sign_in: None,
            ..stored
        };
        assert_eq!(none.pending_sign_in().expect("readable").client_address, "");
    }

    #[tokio::test]
    async fn emails_say_what_the_code_is_for() {
        let mailer = Mailer::new(
            "localhost",
            2525,
            SmtpTls::None,
            None,
            "Service <no-reply@example.com>",
            &CODES,
        )
        .expect("a mailer");
        let delivery = |kind| Delivery {
            id: Uuid::new_v4(),
            kind,
            recipient: "ann@example.com".into(),
            user_id: Uuid::new_v4(),
            code: "123456".into(),
            expires_at: Utc::now() + Span::minutes(10),
            locale: None,
        };
        let reset = delivery("passwordReset");
        assert_eq!(mailer.subject(&reset), "Your reset code");
        let body = mailer.body(&reset);
        assert!(body.starts_with("Your code is 123456."), "{body}");
        assert!(body.contains("to choose a new password"), "{body}");
        assert_eq!(
            mailer.subject(&delivery("emailVerification")),
            "Confirm your address"
        );
        assert_eq!(
            mailer.subject(&delivery("secondFactor")),
            "Your sign-in code"
        );
        assert!(Mailer::new(
            "localhost",
            25,
            SmtpTls::None,
            None,
            "not an address",
            &CODES
        )
        .is_err());
    }
}
