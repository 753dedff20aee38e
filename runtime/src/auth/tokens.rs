//! Access and refresh tokens, and how they travel: `Authorization: Bearer`,
//! the model's token header, or session cookies with a double-submit CSRF
//! token.
//!
//! Access tokens are EdDSA (Ed25519) JWTs that other services verify offline
//! with the JWKS. Refresh tokens are opaque, 256 random bits, stored only as
//! SHA-256 hashes. A trusting service (feature `trust` without `identity`)
//! has only what verifies access tokens and finds them in requests.

use super::bounded::make_room;
use crate::error::ApiError;
use axum::http::{header, HeaderMap};
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use uuid::Uuid;
#[cfg(feature = "identity")]
use {
    super::keys::SigningKey,
    axum::http::{HeaderName, HeaderValue},
    axum::response::AppendHeaders,
    base64::engine::general_purpose::URL_SAFE_NO_PAD,
    base64::Engine,
    chrono::{DateTime, Duration as Span},
    jsonwebtoken::Header,
    ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN},
    ring::rand::SecureRandom,
    sha2::{Digest, Sha256},
};

/// Where access tokens may come from besides `Authorization: Bearer`.
#[derive(Debug)]
pub struct TokenTransport {
    /// A header that may carry the access token.
    pub header: Option<&'static str>,
    /// Session cookies, for browsers.
    pub cookies: Option<Cookies>,
}

/// The session cookies' names and policy.
#[derive(Debug)]
pub struct Cookies {
    pub access: &'static str,
    pub refresh: &'static str,
    pub csrf: &'static str,
    /// The header a cookie-authenticated change repeats the CSRF cookie in.
    pub csrf_header: &'static str,
    pub same_site: &'static str,
    /// The refresh cookie is sent only to the refresh route.
    pub refresh_path: &'static str,
}

/// Set-Cookie headers.
#[cfg(feature = "identity")]
pub type SetCookies = AppendHeaders<Vec<(HeaderName, HeaderValue)>>;

#[cfg(feature = "identity")]
impl Cookies {
    /// The cookies of a fresh token pair: the access token for `access_age`
    /// seconds, the refresh and CSRF tokens for `refresh_age`.
    pub fn issued(
        &self,
        access: &str,
        access_age: i64,
        refresh: &str,
        refresh_age: i64,
        csrf: &str,
    ) -> SetCookies {
        let same_site = self.same_site;
        set_cookies([
            format!("{}={access}; Path=/; Max-Age={access_age}; HttpOnly; Secure; SameSite={same_site}", self.access),
            format!("{}={refresh}; Path={}; Max-Age={refresh_age}; HttpOnly; Secure; SameSite={same_site}", self.refresh, self.refresh_path),
            format!("{}={csrf}; Path=/; Max-Age={refresh_age}; Secure; SameSite={same_site}", self.csrf),
        ])
    }

    /// Expires the session cookies.
    pub fn cleared(&self) -> SetCookies {
        self.issued("", 0, "", 0, "")
    }

    /// Double submit: the CSRF header and cookie must both carry the
    /// session's CSRF token.
    pub fn check_csrf(
        &self,
        key: &SigningKey,
        headers: &HeaderMap,
        session_id: Uuid,
    ) -> Result<(), ApiError> {
        let data = csrf_data(session_id);
        let same = |v: Option<&str>| v.is_some_and(|v| key.digest_matches(data.as_bytes(), v));
        let sent = headers.get(self.csrf_header).and_then(|v| v.to_str().ok());
        if same(sent) && same(cookie(headers, self.csrf).as_deref()) {
            return Ok(());
        }
        Err(ApiError::Denied {
            code: "CSRF_TOKEN_INVALID",
            message: format!(
                "a cookie-authenticated change needs the {} cookie's value in {}",
                self.csrf, self.csrf_header
            ),
        })
    }
}

#[cfg(feature = "identity")]
fn set_cookies(cookies: [String; 3]) -> SetCookies {
    AppendHeaders(
        cookies
            .into_iter()
            .filter_map(|c| HeaderValue::from_str(&c).ok())
            .map(|v| (header::SET_COOKIE, v))
            .collect(),
    )
}

/// What a session's CSRF token is the keyed digest of.
#[cfg(feature = "identity")]
fn csrf_data(session_id: Uuid) -> String {
    format!("csrf:{session_id}")
}

/// The CSRF token of a session.
#[cfg(feature = "identity")]
pub fn csrf_token(key: &SigningKey, session_id: Uuid) -> String {
    key.keyed_digest(csrf_data(session_id).as_bytes())
}

impl TokenTransport {
    /// The access token and whether it came from the cookie: from
    /// `Authorization: Bearer`, the token header or the access cookie.
    pub fn presented(&self, headers: &HeaderMap) -> Option<(String, bool)> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        if let Some(token) = bearer {
            return Some((token.to_string(), false));
        }
        let from_header = self
            .header
            .and_then(|h| headers.get(h))
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.trim().is_empty());
        if let Some(token) = from_header {
            return Some((token.to_string(), false));
        }
        let cookies = self.cookies.as_ref()?;
        cookie(headers, cookies.access).map(|token| (token, true))
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.to_string())
}

/// Who access tokens are issued by and for.
#[derive(Debug, Clone, Copy)]
pub struct Audience {
    pub issuer: &'static str,
    pub audience: &'static str,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: Uuid,
    iat: i64,
    exp: i64,
    /// The session the token belongs to.
    sid: Uuid,
    role: String,
    jti: Uuid,
}

/// What a verified access token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFacts {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub expires: i64,
    /// The account's role when the token was signed.
    pub role: String,
    /// The key it was signed with.
    pub kid: String,
}

/// Signs an access token for `session_id` of `user_id`, valid for `ttl_secs`.
#[cfg(feature = "identity")]
pub fn sign(
    key: &SigningKey,
    who: Audience,
    user_id: Uuid,
    session_id: Uuid,
    role: &str,
    ttl_secs: i64,
) -> Result<(String, DateTime<Utc>), ApiError> {
    let now = Utc::now();
    let exp = now + Span::seconds(ttl_secs);
    let claims = Claims {
        iss: who.issuer.into(),
        aud: who.audience.into(),
        sub: user_id,
        iat: now.timestamp(),
        exp: exp.timestamp(),
        sid: session_id,
        role: role.into(),
        jti: Uuid::new_v4(),
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    let token =
        jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(ApiError::internal)?;
    Ok((token, exp))
}

/// Checks an access token: signed (EdDSA only) by the key its `kid` names
/// (`lookup` finds it), issuer, audience, expiry (no leeway) and every claim
/// a token carries. The one check of both issuing and trusting services.
pub fn verify_with<'k>(
    lookup: impl Fn(&str) -> Option<&'k DecodingKey>,
    who: Audience,
    token: &str,
) -> Result<TokenFacts, ApiError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| ApiError::Unauthorized("the token is malformed".into()))?;
    let kid = header
        .kid
        .filter(|_| header.alg == Algorithm::EdDSA)
        .ok_or_else(|| ApiError::Unauthorized("the token is not signed by the issuer".into()))?;
    let key = lookup(&kid)
        .ok_or_else(|| ApiError::Unauthorized("the token is signed by an unknown key".into()))?;
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_issuer(&[who.issuer]);
    v.set_audience(&[who.audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.leeway = 0;
    let claims = jsonwebtoken::decode::<Claims>(token, key, &v)
        .map(|d| d.claims)
        .map_err(|e| ApiError::Unauthorized(format!("the token is not valid: {e}")))?;
    Ok(TokenFacts {
        user_id: claims.sub,
        session_id: claims.sid,
        expires: claims.exp,
        role: claims.role,
        kid,
    })
}

/// [`verify_with`] the one signing key.
#[cfg(feature = "identity")]
pub fn verify(key: &SigningKey, who: Audience, token: &str) -> Result<TokenFacts, ApiError> {
    verify_with(|kid| (kid == key.kid).then_some(&key.decoding), who, token)
}

/// The `kid` a token names, unverified.
pub fn token_kid(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok()?.kid
}

/// Access tokens whose signature and claims were checked, kept until they
/// expire, so that a client's next requests skip the Ed25519 check. A token
/// cannot change: what was verified once holds until its `exp`. Whether its
/// session is still live is checked on every request all the same.
#[derive(Debug, Default)]
pub struct VerifiedTokens(Mutex<HashMap<String, TokenFacts>>);

impl VerifiedTokens {
    /// Bounds the memory: about 400 bytes a token.
    const MAX: usize = 10_000;

    /// What `token` says, verified with the one signing key now or by an
    /// earlier request.
    #[cfg(feature = "identity")]
    pub fn facts(
        &self,
        key: &SigningKey,
        who: Audience,
        token: &str,
    ) -> Result<TokenFacts, ApiError> {
        self.facts_with(|kid| (kid == key.kid).then_some(&key.decoding), who, token)
    }

    /// What `token` says, verified ([`verify_with`]) now or by an earlier
    /// request; a remembered token fails once `lookup` no longer knows its key.
    pub fn facts_with<'k>(
        &self,
        lookup: impl Fn(&str) -> Option<&'k DecodingKey>,
        who: Audience,
        token: &str,
    ) -> Result<TokenFacts, ApiError> {
        let now = Utc::now().timestamp();
        if let Some(facts) = self.get(token, now) {
            if lookup(&facts.kid).is_some() {
                return Ok(facts);
            }
        }
        let facts = verify_with(lookup, who, token)?;
        self.put(token, facts.clone(), now);
        Ok(facts)
    }

    fn get(&self, token: &str, now: i64) -> Option<TokenFacts> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(token).filter(|f| f.expires > now).cloned()
    }

    fn put(&self, token: &str, facts: TokenFacts, now: i64) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        make_room(&mut map, Self::MAX, |f| f.expires > now);
        map.insert(token.to_owned(), facts);
    }
}

/// The stored form of a refresh token: its SHA-256, hex.
#[cfg(feature = "identity")]
pub fn token_hash(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

/// A new refresh token: 256 random bits, base64url.
#[cfg(feature = "identity")]
pub fn random_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ApiError::internal(anyhow::anyhow!("no randomness")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The token pair a refresh token was spent for, kept with the spent token
/// so that a reuse inside the grace window answers the same pair.
#[cfg(feature = "identity")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Successor {
    pub access: String,
    pub access_expires_at: DateTime<Utc>,
    pub refresh: String,
}

/// The key a spent token's successor is sealed under: derived from the spent
/// token itself (256 random bits), which the database never holds, so a copy
/// of the database opens no successor.
#[cfg(feature = "identity")]
fn successor_key(spent: &str) -> Result<LessSafeKey, ApiError> {
    let digest = Sha256::new()
        .chain_update(b"svcgen refresh successor\0")
        .chain_update(spent.as_bytes())
        .finalize();
    UnboundKey::new(&CHACHA20_POLY1305, &digest)
        .map(LessSafeKey::new)
        .map_err(|_| ApiError::internal(anyhow::anyhow!("successor key")))
}

/// Seals `successor` under the spent token's key: a random nonce, then the
/// ciphertext and its tag.
#[cfg(feature = "identity")]
pub fn seal_successor(spent: &str, successor: &Successor) -> Result<Vec<u8>, ApiError> {
    let key = successor_key(spent)?;
    let mut nonce = [0u8; NONCE_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| ApiError::internal(anyhow::anyhow!("no randomness")))?;
    let mut sealed = serde_json::to_vec(successor).map_err(ApiError::internal)?;
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::empty(),
        &mut sealed,
    )
    .map_err(|_| ApiError::internal(anyhow::anyhow!("sealing the successor")))?;
    Ok([nonce.as_slice(), &sealed].concat())
}

/// Opens what [`seal_successor`] sealed for `spent`; `None` when it was
/// sealed for another token or changed.
#[cfg(feature = "identity")]
pub fn open_successor(spent: &str, sealed: &[u8]) -> Option<Successor> {
    let key = successor_key(spent).ok()?;
    let nonce = Nonce::try_assume_unique_for_key(sealed.get(..NONCE_LEN)?).ok()?;
    let mut data = sealed.get(NONCE_LEN..)?.to_vec();
    let plain = key.open_in_place(nonce, Aad::empty(), &mut data).ok()?;
    serde_json::from_slice(plain).ok()
}

#[cfg(all(test, feature = "identity"))]
pub(crate) mod tests {
    use super::*;
    use crate::auth::keys::tests::test_key;

    #[test]
    fn a_successor_opens_only_with_the_spent_token() {
        let successor = Successor {
            access: "access".into(),
            access_expires_at: Utc::now(),
            refresh: random_token().unwrap(),
        };
        let spent = random_token().unwrap();
        let sealed = seal_successor(&spent, &successor).unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains(&successor.refresh));
        assert_eq!(open_successor(&spent, &sealed), Some(successor));
        assert_eq!(open_successor(&random_token().unwrap(), &sealed), None);
        let mut changed = sealed.clone();
        if let Some(last) = changed.last_mut() {
            *last ^= 1;
        }
        assert_eq!(open_successor(&spent, &changed), None);
        assert_eq!(open_successor(&spent, &sealed[..5]), None);
    }

    const WHO: Audience = Audience {
        issuer: "svc",
        audience: "aud",
    };

    pub(crate) const COOKIES: Cookies = Cookies {
        access: "svc-access",
        refresh: "svc-refresh",
        csrf: "svc-csrf",
        csrf_header: "x-csrf-token",
        same_site: "Strict",
        refresh_path: "/v1/refresh",
    };

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("a header value"));
        }
        map
    }

    #[test]
    fn a_signed_token_verifies_with_its_facts() {
        let key = test_key();
        let (user, session) = (Uuid::new_v4(), Uuid::new_v4());
        let (token, exp) = sign(&key, WHO, user, session, "admin", 60).expect("signed");
        let facts = verify(&key, WHO, &token).expect("valid");
        assert_eq!(facts.user_id, user);
        assert_eq!(facts.session_id, session);
        assert_eq!(facts.expires, exp.timestamp());
        assert_eq!((facts.role.as_str(), facts.kid.as_str()), ("admin", "test"));
    }

    #[test]
    fn tokens_of_other_keys_issuers_audiences_or_past_are_refused() {
        let key = test_key();
        let (user, session) = (Uuid::new_v4(), Uuid::new_v4());
        let other_key = SigningKey::from_pkcs8("other".into(), &{
            let rng = ring::rand::SystemRandom::new();
            ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
                .expect("a key")
                .as_ref()
                .to_vec()
        })
        .expect("a key");
        let (foreign, _) = sign(&other_key, WHO, user, session, "user", 60).expect("signed");
        let issuer = Audience {
            issuer: "else",
            ..WHO
        };
        let (wrong_issuer, _) = sign(&key, issuer, user, session, "user", 60).expect("signed");
        let audience = Audience {
            audience: "else",
            ..WHO
        };
        let (wrong_audience, _) = sign(&key, audience, user, session, "user", 60).expect("signed");
        let (expired, _) = sign(&key, WHO, user, session, "user", -1).expect("signed");
        for token in [
            foreign,
            wrong_issuer,
            wrong_audience,
            expired,
            "garbage".into(),
        ]
        .into_iter()
        .chain(forged(WHO, "test").into_iter().map(|(_, t)| t))
        {
            assert!(
                matches!(verify(&key, WHO, &token), Err(ApiError::Unauthorized(_))),
                "{token}"
            );
        }
    }

    /// Tokens that name `kid` but are not EdDSA-signed by it: unsigned
    /// (`alg: none`), HMAC-signed (HS256), and without a `kid`.
    pub(crate) fn forged(who: Audience, kid: &str) -> Vec<(&'static str, String)> {
        let claims = Claims {
            iss: who.issuer.into(),
            aud: who.audience.into(),
            sub: Uuid::new_v4(),
            iat: Utc::now().timestamp(),
            exp: Utc::now().timestamp() + 60,
            sid: Uuid::new_v4(),
            role: "admin".into(),
            jti: Uuid::new_v4(),
        };
        let part = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let body = part(serde_json::to_value(&claims).expect("claims"));
        let none = format!(
            "{}.{body}.",
            part(serde_json::json!({"alg": "none", "kid": kid}))
        );
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some(kid.into());
        let hmac =
            jsonwebtoken::encode(&hs, &claims, &jsonwebtoken::EncodingKey::from_secret(b"k"))
                .expect("signed");
        let test = super::super::keys::tests::test_key();
        let no_kid = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &test.encoding)
            .expect("signed");
        vec![("alg none", none), ("HS256", hmac), ("no kid", no_kid)]
    }

    #[test]
    fn verified_tokens_are_remembered_until_they_expire() {
        let key = test_key();
        let cache = VerifiedTokens::default();
        let (token, _) =
            sign(&key, WHO, Uuid::new_v4(), Uuid::new_v4(), "user", 60).expect("signed");
        let facts = cache.facts(&key, WHO, &token).expect("valid");
        let now = Utc::now().timestamp();
        assert_eq!(cache.get(&token, now), Some(facts.clone()));
        assert_eq!(cache.get(&token, facts.expires), None);
        // A remembered token is not verified again while its key is known.
        assert_eq!(
            cache.facts(&test_key(), WHO, &token).expect("remembered"),
            facts
        );
        // Once its key is gone, it is checked again, and fails.
        let gone = cache.facts_with(|_| None, WHO, &token).unwrap_err();
        assert!(matches!(gone, ApiError::Unauthorized(m) if m.contains("unknown key")));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = VerifiedTokens::default();
        let facts = |expires| TokenFacts {
            user_id: Uuid::nil(),
            session_id: Uuid::nil(),
            expires,
            role: "user".into(),
            kid: "k".into(),
        };
        for i in 0..VerifiedTokens::MAX {
            cache.put(
                &format!("t{i}"),
                facts(if i % 2 == 0 { 10 } else { 100 }),
                0,
            );
        }
        // Full: the expired half goes.
        cache.put("next", facts(100), 50);
        let len = cache.0.lock().expect("lock").len();
        assert_eq!(len, VerifiedTokens::MAX / 2 + 1);
    }

    #[test]
    fn tokens_come_from_bearer_then_header_then_cookie() {
        let transport = TokenTransport {
            header: Some("x-access-token"),
            cookies: None,
        };
        let both = headers(&[("authorization", "Bearer a"), ("x-access-token", "b")]);
        assert_eq!(transport.presented(&both), Some(("a".into(), false)));
        let lower = headers(&[("authorization", "bearer a")]);
        assert_eq!(transport.presented(&lower), Some(("a".into(), false)));
        let header_only = headers(&[("x-access-token", "b")]);
        assert_eq!(transport.presented(&header_only), Some(("b".into(), false)));
        let blank = headers(&[("x-access-token", "  ")]);
        assert_eq!(transport.presented(&blank), None);
        let basic = headers(&[("authorization", "Basic abc")]);
        assert_eq!(transport.presented(&basic), None);
        let cookie_only = headers(&[("cookie", "svc-access=c")]);
        assert_eq!(transport.presented(&cookie_only), None);

        let browsers = TokenTransport {
            header: None,
            cookies: Some(COOKIES),
        };
        assert_eq!(browsers.presented(&cookie_only), Some(("c".into(), true)));
        assert_eq!(browsers.presented(&header_only), None);
    }

    #[test]
    fn cookies_are_found_across_headers() {
        let h = headers(&[("cookie", "a=1; b="), ("cookie", " c=3;d=4")]);
        assert_eq!(cookie(&h, "a").as_deref(), Some("1"));
        assert_eq!(cookie(&h, "b"), None);
        assert_eq!(cookie(&h, "c").as_deref(), Some("3"));
        assert_eq!(cookie(&h, "d").as_deref(), Some("4"));
        assert_eq!(cookie(&h, "e"), None);
    }

    #[test]
    fn csrf_needs_the_session_token_in_both_header_and_cookie() {
        let key = test_key();
        let session = Uuid::new_v4();
        let token = csrf_token(&key, session);
        let cookie = format!("svc-csrf={token}");
        let good = headers(&[("x-csrf-token", &token), ("cookie", &cookie)]);
        assert!(COOKIES.check_csrf(&key, &good, session).is_ok());
        assert!(COOKIES.check_csrf(&key, &good, Uuid::new_v4()).is_err());
        let header_only = headers(&[("x-csrf-token", &token)]);
        assert!(COOKIES.check_csrf(&key, &header_only, session).is_err());
        let cookie_only = headers(&[("cookie", &cookie)]);
        let err = COOKIES.check_csrf(&key, &cookie_only, session).unwrap_err();
        assert!(matches!(
            err,
            ApiError::Denied {
                code: "CSRF_TOKEN_INVALID",
                ..
            }
        ));
    }

    #[test]
    fn session_cookies_are_set_and_cleared() {
        let AppendHeaders(set) = COOKIES.issued("acc", 600, "ref", 3600, "tok");
        let values: Vec<&str> = set
            .iter()
            .map(|(_, v)| v.to_str().expect("ASCII"))
            .collect();
        assert_eq!(
            values,
            [
                "svc-access=acc; Path=/; Max-Age=600; HttpOnly; Secure; SameSite=Strict",
                "svc-refresh=ref; Path=/v1/refresh; Max-Age=3600; HttpOnly; Secure; SameSite=Strict",
                "svc-csrf=tok; Path=/; Max-Age=3600; Secure; SameSite=Strict",
            ]
        );
        let AppendHeaders(cleared) = COOKIES.cleared();
        assert!(cleared.iter().all(|(name, v)| name == header::SET_COOKIE
            && v.to_str()
                .is_ok_and(|v| v.contains("=; Path=") && v.contains("Max-Age=0;"))));
    }

    #[test]
    fn refresh_tokens_are_random_and_stored_hashed() {
        let (a, b) = (
            random_token().expect("random"),
            random_token().expect("random"),
        );
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).expect("base64url").len(), 32);
        assert_eq!(token_hash(&a).len(), 64);
        assert_eq!(token_hash(&a), token_hash(&a));
    }
}
