//! The signing key of access tokens, the key ring every replica verifies
//! with and publishes as its JWKS, and the keyed digests derived from the
//! signing key (one-time codes and CSRF tokens are checked against those).
//!
//! The ring lives in `signing_keys`: every key's public half and when it was
//! replaced; the development key's private half too, never a configured
//! key's. A replica starting with a key the ring does not know makes it
//! current and marks the previous current key replaced; a replaced key stays
//! in the JWKS and verifies for the overlap, then retires. Replicas re-read
//! the ring every [`KEY_RING_REFRESH`], and at once (at most every
//! [`KEY_RING_REREAD_MIN`]) on a token whose `kid` they do not know and
//! before answering the JWKS.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration as Span, Utc};
use jsonwebtoken::{DecodingKey, EncodingKey};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// How often a replica re-reads the key ring.
pub const KEY_RING_REFRESH: Duration = Duration::from_secs(30);
/// A token with an unknown `kid` re-reads the ring at most this often.
pub const KEY_RING_REREAD_MIN: Duration = Duration::from_secs(5);

/// An Ed25519 key pair, as access tokens are signed and verified with it.
pub struct SigningKey {
    pub(super) kid: String,
    pub(super) encoding: EncodingKey,
    pub(super) decoding: DecodingKey,
    /// The raw public key (the JWKS's `x`, base64url).
    public: Vec<u8>,
    /// Keys the digests of one-time codes and CSRF tokens.
    digest_key: ring::hmac::Key,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The configured key (`JWT_PRIVATE_KEY`, PKCS#8 PEM, with `JWT_KEY_ID` or
    /// its fingerprint as `kid`), or the development key kept in the
    /// database, generated at first start; either is recorded in the ring
    /// (a key the ring does not know becomes current).
    pub async fn load(
        db: &PgPool,
        private_key_pem: Option<&str>,
        key_id: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut tx = db.begin().await?;
        // One starting replica at a time: two new keys never both stay current.
        sqlx::query("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let key = match private_key_pem {
            Some(pem_text) => {
                let (kid, pkcs8) = configured(pem_text, key_id)?;
                let key = Self::from_pkcs8(kid, &pkcs8)?;
                record(&mut tx, &key, None).await?;
                key
            }
            None => development_key(&mut tx).await?,
        };
        tx.commit().await?;
        Ok(key)
    }

    /// The key of an Ed25519 PKCS#8 document.
    pub fn from_pkcs8(kid: String, pkcs8: &[u8]) -> anyhow::Result<Self> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|e| anyhow::anyhow!("invalid Ed25519 key: {e}"))?;
        let public = pair.public_key().as_ref();
        let digest_seed = Sha256::new()
            .chain_update(b"svcgen digest key")
            .chain_update(pkcs8)
            .finalize();
        Ok(Self {
            kid,
            encoding: EncodingKey::from_ed_der(pkcs8),
            decoding: DecodingKey::from_ed_der(public),
            public: public.to_vec(),
            digest_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &digest_seed),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A keyed digest (HMAC-SHA256, base64url) of `data`: one-time codes and
    /// CSRF tokens are checked against it, never stored in the clear.
    pub fn keyed_digest(&self, data: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(ring::hmac::sign(&self.digest_key, data).as_ref())
    }

    /// Whether `digest` is the keyed digest of `data`, compared in constant time.
    pub fn digest_matches(&self, data: &[u8], digest: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(digest)
            .is_ok_and(|tag| ring::hmac::verify(&self.digest_key, data, &tag).is_ok())
    }
}

fn configured(pem_text: &str, key_id: Option<&str>) -> anyhow::Result<(String, Vec<u8>)> {
    let der = pem::parse(pem_text.as_bytes())?.into_contents();
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
        .map_err(|e| anyhow::anyhow!("JWT_PRIVATE_KEY is not an Ed25519 PKCS#8 key: {e}"))?;
    let kid = key_id.map_or_else(|| fingerprint(pair.public_key().as_ref()), str::to_owned);
    Ok((kid, der))
}

/// Records `key` in the ring (with `private`, the development key's PKCS#8,
/// only for that key). A key the ring does not know becomes current and the
/// current keys are marked replaced now; a known key changes nothing, so a
/// replica of the previous release restarting mid-rollout never retires the
/// new key. A known key that has been replaced still signs (its tokens verify
/// until its overlap ends); to bring a replaced key back, give it a new
/// `JWT_KEY_ID`. A `kid` naming another public key is refused.
async fn record(
    tx: &mut PgConnection,
    key: &SigningKey,
    private: Option<&[u8]>,
) -> anyhow::Result<()> {
    let known: Option<(Vec<u8>, Option<DateTime<Utc>>)> =
        sqlx::query_as("SELECT public_key, replaced_at FROM signing_keys WHERE kid = $1")
            .bind(&key.kid)
            .fetch_optional(&mut *tx)
            .await?;
    match known {
        Some((public, _)) if public != key.public => anyhow::bail!(
            "the signing key's kid {:?} names another key in signing_keys: give the new key another JWT_KEY_ID",
            key.kid
        ),
        Some((_, Some(replaced_at))) => {
            tracing::warn!(kid = %key.kid, %replaced_at, "this signing key was replaced: its tokens stop verifying once its overlap ends; configure the current key");
        }
        Some((_, None)) => {}
        None => {
            sqlx::query("UPDATE signing_keys SET replaced_at = now() WHERE replaced_at IS NULL")
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO signing_keys (kid, private_pkcs8, public_key) VALUES ($1, $2, $3)",
            )
            .bind(&key.kid)
            .bind(private)
            .bind(&key.public)
            .execute(&mut *tx)
            .await?;
            tracing::info!(kid = %key.kid, "a new signing key is current; the previous one verifies for the overlap");
        }
    }
    Ok(())
}

/// The current development key: the oldest with its private key kept that
/// was not replaced, or a new one (which replaces the current keys).
async fn development_key(tx: &mut PgConnection) -> anyhow::Result<SigningKey> {
    let existing: Option<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT kid, private_pkcs8 FROM signing_keys WHERE private_pkcs8 IS NOT NULL AND replaced_at IS NULL
         ORDER BY created_at, kid LIMIT 1",
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((kid, pkcs8)) = existing {
        tracing::warn!(%kid, "using the development signing key kept in the database; set JWT_PRIVATE_KEY in production");
        return SigningKey::from_pkcs8(kid, &pkcs8);
    }
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|e| anyhow::anyhow!("generating a key: {e}"))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let kid = format!("dev-{}", fingerprint(pair.public_key().as_ref()));
    let key = SigningKey::from_pkcs8(kid, pkcs8.as_ref())?;
    record(tx, &key, Some(pkcs8.as_ref())).await?;
    tracing::warn!(kid = %key.kid, "generated a development signing key; set JWT_PRIVATE_KEY in production");
    Ok(key)
}

/// A public key of the ring.
#[derive(Clone)]
pub struct RingKey {
    pub kid: String,
    /// The raw public key (the JWKS's `x`, base64url).
    public: Vec<u8>,
    decoding: DecodingKey,
    /// When a newer key took its place (`None`: it is current).
    pub replaced_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for RingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingKey")
            .field("kid", &self.kid)
            .field("replaced_at", &self.replaced_at)
            .finish_non_exhaustive()
    }
}

impl RingKey {
    fn new(kid: String, public: Vec<u8>, replaced_at: Option<DateTime<Utc>>) -> Self {
        Self {
            decoding: DecodingKey::from_ed_der(&public),
            kid,
            public,
            replaced_at,
        }
    }
}

/// The ring as read once: its keys and the overlap they verify for once replaced.
#[derive(Debug, Clone)]
pub struct RingKeys {
    keys: Vec<RingKey>,
    overlap: Span,
}

impl RingKeys {
    /// Whether `key` verifies at `now`: it is current, or was replaced less than the overlap ago.
    fn in_force(&self, key: &RingKey, now: DateTime<Utc>) -> bool {
        key.replaced_at.is_none_or(|at| at + self.overlap > now)
    }

    /// The key `kid` names, while it verifies.
    pub fn verifying(&self, kid: &str, now: DateTime<Utc>) -> Option<&DecodingKey> {
        self.keys
            .iter()
            .find(|k| k.kid == kid && self.in_force(k, now))
            .map(|k| &k.decoding)
    }

    /// Whether the ring has `kid` at all, in force or retired.
    pub fn knows(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid == kid)
    }

    /// The keys in force at `now`, current first, then the most recently replaced.
    pub fn in_force_at(&self, now: DateTime<Utc>) -> Vec<&RingKey> {
        let mut keys: Vec<&RingKey> = self.keys.iter().filter(|k| self.in_force(k, now)).collect();
        keys.sort_by(|a, b| match (a.replaced_at, b.replaced_at) {
            (None, None) => a.kid.cmp(&b.kid),
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => y.cmp(&x).then_with(|| a.kid.cmp(&b.kid)),
        });
        keys
    }

    /// The JWKS other services verify access tokens with: the keys in force
    /// at `now`, cacheable for five minutes.
    pub fn jwks(&self, now: DateTime<Utc>) -> Response {
        let keys: Vec<serde_json::Value> = self
            .in_force_at(now)
            .into_iter()
            .map(|k| {
                json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(&k.public),
                    "kid": k.kid,
                    "alg": "EdDSA",
                    "use": "sig",
                })
            })
            .collect();
        let body = json!({ "keys": keys });
        ([(header::CACHE_CONTROL, "public, max-age=300")], Json(body)).into_response()
    }
}

/// The key ring of one replica: what it last read of `signing_keys`.
#[derive(Debug)]
pub struct KeyRing {
    keys: RwLock<Arc<RingKeys>>,
    /// When the ring was last re-read for an unknown `kid`.
    reread_at: Mutex<Option<Instant>>,
}

impl KeyRing {
    /// A ring of `key` alone, current, with the given overlap.
    pub fn of(key: &SigningKey, overlap_secs: u32) -> Self {
        Self::with(RingKeys {
            keys: vec![RingKey::new(key.kid.clone(), key.public.clone(), None)],
            overlap: Span::seconds(i64::from(overlap_secs)),
        })
    }

    fn with(keys: RingKeys) -> Self {
        Self {
            keys: RwLock::new(Arc::new(keys)),
            reread_at: Mutex::new(None),
        }
    }

    /// The ring as `signing_keys` has it.
    pub async fn read(db: &PgPool, overlap_secs: u32) -> Result<Self, sqlx::Error> {
        Ok(Self::with(
            read_keys(db, Span::seconds(i64::from(overlap_secs))).await?,
        ))
    }

    /// What the ring holds now.
    pub fn snapshot(&self) -> Arc<RingKeys> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads `signing_keys` again.
    pub async fn reload(&self, db: &PgPool) -> Result<(), sqlx::Error> {
        let overlap = self.snapshot().overlap;
        let keys = read_keys(db, overlap).await?;
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        Ok(())
    }

    /// Whether a token naming `kid` should re-read the ring now: the ring does
    /// not know it and was not re-read on demand in the last [`KEY_RING_REREAD_MIN`].
    pub fn reread_for(&self, kid: &str) -> bool {
        !self.snapshot().knows(kid) && self.reread_due()
    }

    /// Whether an on-demand re-read may happen now (at most every
    /// [`KEY_RING_REREAD_MIN`]); if so, it counts as done.
    pub fn reread_due(&self) -> bool {
        let mut at = self
            .reread_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if at.is_some_and(|t| now.duration_since(t) < KEY_RING_REREAD_MIN) {
            return false;
        }
        *at = Some(now);
        true
    }
}

async fn read_keys(db: &PgPool, overlap: Span) -> Result<RingKeys, sqlx::Error> {
    let rows: Vec<(String, Vec<u8>, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT kid, public_key, replaced_at FROM signing_keys ORDER BY created_at, kid",
    )
    .fetch_all(db)
    .await?;
    Ok(RingKeys {
        keys: rows
            .into_iter()
            .map(|(kid, public, replaced_at)| RingKey::new(kid, public, replaced_at))
            .collect(),
        overlap,
    })
}

/// A short, stable SHA-256 fingerprint: logs and events show it, never the secret.
pub fn fingerprint(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh key, as the development key is made.
    pub(crate) fn test_key() -> SigningKey {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("a key");
        SigningKey::from_pkcs8("test".into(), pkcs8.as_ref()).expect("a valid key")
    }

    #[test]
    fn fingerprints_are_short_and_stable() {
        let a = fingerprint(b"secret");
        assert_eq!(a.len(), 32);
        assert_eq!(a, fingerprint(b"secret"));
        assert_ne!(a, fingerprint(b"secret2"));
    }

    #[test]
    fn keyed_digests_match_only_their_data_and_key() {
        let (key, other) = (test_key(), test_key());
        let digest = key.keyed_digest(b"code:1234");
        assert!(key.digest_matches(b"code:1234", &digest));
        assert!(!key.digest_matches(b"code:1235", &digest));
        assert!(!other.digest_matches(b"code:1234", &digest));
        assert!(!key.digest_matches(b"code:1234", "not base64 !"));
    }

    #[test]
    fn a_configured_key_is_named_by_its_fingerprint_unless_given_an_id() {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("a key");
        let pem_text = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
        let (kid, der) = configured(&pem_text, None).expect("a valid PEM");
        assert_eq!(der, pkcs8.as_ref());
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a key pair");
        assert_eq!(kid, fingerprint(pair.public_key().as_ref()));
        assert_eq!(configured(&pem_text, Some("k1")).expect("valid").0, "k1");
        assert!(configured("not a key", None).is_err());
    }

    /// A fresh key as `JWT_PRIVATE_KEY` carries it.
    fn pem_key() -> String {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("a key");
        pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()))
    }

    async fn ring_db() -> (crate::testing::TestDb, PgPool) {
        let db = crate::testing::TestDb::create().await;
        let pool = db.pool().await;
        sqlx::query(&crate::tables::SIGNING_KEYS.create_sql())
            .execute(&pool)
            .await
            .expect("signing_keys");
        (db, pool)
    }

    /// `(kid, replaced, private kept)` of every row, oldest first.
    async fn rows(pool: &PgPool) -> Vec<(String, bool, bool)> {
        sqlx::query_as(
            "SELECT kid, replaced_at IS NOT NULL, private_pkcs8 IS NOT NULL FROM signing_keys ORDER BY created_at, kid",
        )
        .fetch_all(pool)
        .await
        .expect("rows")
    }

    #[tokio::test]
    async fn a_new_configured_key_replaces_the_current_one_and_a_known_key_changes_nothing() {
        let (_db, pool) = ring_db().await;
        let (a, b) = (pem_key(), pem_key());
        let key_a = SigningKey::load(&pool, Some(&a), Some("a"))
            .await
            .expect("A");
        assert_eq!(key_a.kid(), "a");
        assert_eq!(rows(&pool).await, [("a".into(), false, false)]);
        SigningKey::load(&pool, Some(&b), Some("b"))
            .await
            .expect("B");
        let after_b = [("a".into(), true, false), ("b".into(), false, false)];
        assert_eq!(rows(&pool).await, after_b);
        // A replica of the previous release restarting mid-rollout retires nothing.
        SigningKey::load(&pool, Some(&a), Some("a"))
            .await
            .expect("A again");
        SigningKey::load(&pool, Some(&b), Some("b"))
            .await
            .expect("B again");
        assert_eq!(rows(&pool).await, after_b);
        // A kid is one public key for good.
        let err = SigningKey::load(&pool, Some(&pem_key()), Some("a"))
            .await
            .expect_err("another key under kid a");
        assert!(err.to_string().contains("another JWT_KEY_ID"), "{err}");
        let ring = KeyRing::read(&pool, 60).await.expect("ring").snapshot();
        let kids: Vec<&str> = ring
            .in_force_at(Utc::now())
            .iter()
            .map(|k| k.kid.as_str())
            .collect();
        assert_eq!(kids, ["b", "a"]);
        let retired = KeyRing::read(&pool, 0).await.expect("ring");
        assert!(retired.snapshot().verifying("a", Utc::now()).is_none());
        assert!(retired.snapshot().verifying("b", Utc::now()).is_some());
    }

    #[tokio::test]
    async fn the_development_key_is_shared_and_steps_aside_for_a_configured_one() {
        let (_db, pool) = ring_db().await;
        let first = SigningKey::load(&pool, None, None).await.expect("dev key");
        let again = SigningKey::load(&pool, None, None).await.expect("dev key");
        assert_eq!(first.kid(), again.kid());
        assert!(first.kid().starts_with("dev-"));
        assert_eq!(again.keyed_digest(b"x"), first.keyed_digest(b"x"));
        assert_eq!(rows(&pool).await, [(first.kid.clone(), false, true)]);
        SigningKey::load(&pool, Some(&pem_key()), Some("prod"))
            .await
            .expect("configured");
        // Without configuration again: a new development key, not the replaced one.
        let later = SigningKey::load(&pool, None, None).await.expect("dev key");
        assert_ne!(later.kid(), first.kid());
        let rows = rows(&pool).await;
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], (first.kid.clone(), true, true));
        assert!(rows[1].1, "prod was replaced");
        assert!(!rows[1].2, "a configured private key is never stored");
        assert_eq!(rows[2], (later.kid.clone(), false, true));
    }

    fn ring_key(kid: &str, replaced_secs_ago: Option<i64>) -> RingKey {
        let key = test_key();
        RingKey::new(
            kid.into(),
            key.public.clone(),
            replaced_secs_ago.map(|s| Utc::now() - Span::seconds(s)),
        )
    }

    #[tokio::test]
    async fn the_ring_verifies_and_publishes_the_current_key_and_those_in_their_overlap() {
        let ring = RingKeys {
            keys: vec![
                ring_key("old", Some(100)),
                ring_key("previous", Some(30)),
                ring_key("before", Some(50)),
                ring_key("current", None),
            ],
            overlap: Span::seconds(60),
        };
        let now = Utc::now();
        let in_force: Vec<&str> = ring
            .in_force_at(now)
            .iter()
            .map(|k| k.kid.as_str())
            .collect();
        assert_eq!(in_force, ["current", "previous", "before"]);
        assert!(ring.verifying("current", now).is_some());
        assert!(ring.verifying("previous", now).is_some());
        assert!(ring.verifying("old", now).is_none(), "retired");
        assert!(ring.knows("old") && !ring.knows("unknown"));
        // 20 s later "before" has retired too.
        let later = now + Span::seconds(20);
        assert!(ring.verifying("before", later).is_none());
        assert!(ring.verifying("previous", later).is_some());

        let response = ring.jwks(now);
        assert_eq!(
            response.headers()[header::CACHE_CONTROL],
            "public, max-age=300"
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a body");
        let jwks: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k["kid"].as_str().expect("kid"))
            .collect();
        assert_eq!(kids, ["current", "previous", "before"]);
        assert_eq!(
            jwks["keys"][0]["x"],
            URL_SAFE_NO_PAD.encode(&ring.keys[3].public)
        );
        assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    }

    #[test]
    fn an_unknown_kid_rereads_the_ring_at_most_every_few_seconds() {
        let key = test_key();
        let ring = KeyRing::of(&key, 60);
        assert!(!ring.reread_for("test"), "a known kid never re-reads");
        assert!(ring.reread_for("new"));
        assert!(!ring.reread_for("new"), "rate-limited");
        assert!(!ring.reread_for("other"), "whatever the kid");
        *ring.reread_at.lock().expect("lock") = Some(Instant::now() - KEY_RING_REREAD_MIN);
        assert!(ring.reread_for("new"));
    }
}
