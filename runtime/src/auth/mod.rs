//! The auth core. With feature `trust`, what a service that trusts another
//! one's tokens needs: rules, token verification and transport, the issuer's
//! JWKS and revocations ([`trust`]) and the [`Caller`] extractor. With feature
//! `identity` (which implies `trust`), what a service that issues identities
//! needs besides: signing keys, access and refresh tokens, sessions and their
//! events, secret hashing and throttling.
//!
//! The generated crate declares its model's [`Identity`] (who signs in and
//! how, the account's SQL, roles and rules, cookies) and hands it, with the
//! [`AuthSettings`] read from its configuration, to [`AuthState::load`]; or,
//! trusting an issuer, its [`trust::Trust`] to [`trust::TrustState::new`].
//! The extractors [`Caller`] and [`ClientAddr`] read the state through axum's
//! `FromRef` (the [`Gate`]), so they never name the generated state struct.
//!
//! Access tokens are EdDSA (Ed25519) JWTs that other services verify offline
//! with the JWKS; the issuing service also checks on every request that the
//! token's session is live, so signing out and revocation act at once (from
//! memory of recent answers, which every change to a session or account
//! clears on every replica: [`live::LiveSessions`]); a trusting service
//! learns ended sessions from the issuer's session topic.
//!
//! Modules layer without cycles; each imports only those listed before it
//! (those marked * only with `identity`):
//!
//! 1. [`rules`]: roles, ranks and route rules as data; `bounded`: size
//!    bounds of the in-memory caches.
//! 2. `passwords`*: the common-password policy.
//! 3. `keys`*: the signing key, its JWKS and keyed digests.
//! 4. `hashing`*: argon2id, bounded and off the async runtime.
//! 5. `throttle`*: fixed-window buckets in the database.
//! 6. [`tokens`]: verifying access tokens and how they travel; signing them,
//!    refresh tokens, cookies and CSRF*.
//! 7. [`trust`]: the issuer's JWKS, revocations and role changes from its
//!    session topic, for a trusting service.
//! 8. `live`*: the live-session cache and its notifications.
//! 9. `state`*: the model's [`Identity`], the settings and [`AuthState`].
//! 10. [`caller`]: the [`Gate`], the [`Caller`] and [`ClientAddr`]*
//!     extractors, rank checks.
//! 11. `sessions`*: signing in, opening, refreshing and ending sessions.

mod bounded;
pub mod rules;

#[cfg(feature = "identity")]
pub mod passwords;

#[cfg(feature = "identity")]
pub mod keys;

#[cfg(feature = "identity")]
pub mod hashing;

#[cfg(feature = "identity")]
pub mod throttle;

pub mod tokens;

pub mod trust;

#[cfg(feature = "identity")]
pub mod live;

#[cfg(feature = "identity")]
pub mod state;

pub mod caller;

#[cfg(feature = "identity")]
pub mod sessions;

#[cfg(feature = "identity")]
pub use caller::ClientAddr;
pub use caller::{Caller, Gate};
#[cfg(feature = "identity")]
pub use state::{
    AccountSql, AuthDefaults, AuthSettings, AuthState, DeviceField, Flows, Identity, Limits,
};
