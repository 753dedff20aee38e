//! The auth core (feature `identity`): signing keys, access and refresh
//! tokens, sessions and their events, the rule of every route, secret hashing
//! and throttling.
//!
//! The generated crate declares its model's [`Identity`] (who signs in and
//! how, the account's SQL, roles and rules, cookies) and hands it, with the
//! [`AuthSettings`] read from its configuration, to [`AuthState::load`]. The
//! extractors [`Caller`] and [`ClientAddr`] read the state through axum's
//! `FromRef`, so they never name the generated state struct.
//!
//! Access tokens are EdDSA (Ed25519) JWTs that other services verify offline
//! with the JWKS; this service also checks on every request that the token's
//! session is live, so signing out and revocation act at once (from memory of
//! recent answers, which every change to a session or account clears on every
//! replica: [`live::LiveSessions`]).
//!
//! Modules layer without cycles; each imports only those listed before it:
//!
//! 1. [`rules`]: roles, ranks and route rules as data; `bounded`: size
//!    bounds of the in-memory caches.
//! 2. [`passwords`]: the common-password policy.
//! 3. [`keys`]: the signing key, its JWKS and keyed digests.
//! 4. [`hashing`]: argon2id, bounded and off the async runtime.
//! 5. [`throttle`]: fixed-window buckets in the database.
//! 6. [`tokens`]: access and refresh tokens, cookies and CSRF.
//! 7. [`live`]: the live-session cache and its notifications.
//! 8. [`state`]: the model's [`Identity`], the settings and [`AuthState`].
//! 9. [`caller`]: the [`Caller`] and [`ClientAddr`] extractors, rank checks.
//! 10. [`sessions`]: signing in, opening, refreshing and ending sessions.

mod bounded;
pub mod rules;

pub mod passwords;

pub mod keys;

pub mod hashing;

pub mod throttle;

pub mod tokens;

pub mod live;

pub mod state;

pub mod caller;

pub mod sessions;

pub use caller::{Caller, ClientAddr};
pub use state::{
    AccountSql, AuthDefaults, AuthSettings, AuthState, DeviceField, Flows, Identity, Limits,
};
