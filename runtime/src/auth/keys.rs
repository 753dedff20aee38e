//! The signing key of access tokens, its JWKS, and the keyed digests derived
//! from it (one-time codes and CSRF tokens are checked against those).

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{DecodingKey, EncodingKey};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// An Ed25519 key pair, as access tokens are signed and verified with it.
pub struct SigningKey {
    pub(super) kid: String,
    pub(super) encoding: EncodingKey,
    pub(super) decoding: DecodingKey,
    /// The public key, base64url: the JWKS's `x`.
    public_x: String,
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
    /// database, generated at first start.
    pub async fn load(
        db: &PgPool,
        private_key_pem: Option<&str>,
        key_id: Option<&str>,
    ) -> anyhow::Result<Self> {
        let (kid, pkcs8) = match private_key_pem {
            Some(pem_text) => configured(pem_text, key_id)?,
            None => development_key(db).await?,
        };
        Self::from_pkcs8(kid, &pkcs8)
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
            public_x: URL_SAFE_NO_PAD.encode(public),
            digest_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &digest_seed),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWKS other services verify access tokens with, cacheable for five minutes.
    pub fn jwks(&self) -> Response {
        let keys = json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "x": self.public_x,
                "kid": self.kid,
                "alg": "EdDSA",
                "use": "sig",
            }]
        });
        ([(header::CACHE_CONTROL, "public, max-age=300")], Json(keys)).into_response()
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

const OLDEST_KEY_SQL: &str =
    "SELECT kid, private_pkcs8 FROM signing_keys ORDER BY created_at, kid LIMIT 1";

async fn development_key(db: &PgPool) -> anyhow::Result<(String, Vec<u8>)> {
    let existing: Option<(String, Vec<u8>)> =
        sqlx::query_as(OLDEST_KEY_SQL).fetch_optional(db).await?;
    if let Some(key) = existing {
        tracing::warn!(kid = %key.0, "using the development signing key kept in the database; set JWT_PRIVATE_KEY in production");
        return Ok(key);
    }
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|e| anyhow::anyhow!("generating a key: {e}"))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let kid = format!("dev-{}", fingerprint(pair.public_key().as_ref()));
    sqlx::query("INSERT INTO signing_keys (kid, private_pkcs8, public_key) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(&kid)
        .bind(pkcs8.as_ref())
        .bind(pair.public_key().as_ref())
        .execute(db)
        .await?;
    tracing::warn!(%kid, "generated a development signing key; set JWT_PRIVATE_KEY in production");
    // Replicas starting together each insert one; all use the oldest.
    Ok(sqlx::query_as(OLDEST_KEY_SQL).fetch_one(db).await?)
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

    #[tokio::test]
    async fn the_jwks_names_the_key() {
        let key = test_key();
        let response = key.jwks();
        assert_eq!(
            response.headers()[header::CACHE_CONTROL],
            "public, max-age=300"
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a body");
        let jwks: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(jwks["keys"][0]["kid"], "test");
        assert_eq!(jwks["keys"][0]["x"], key.public_x);
    }
}
