//! What every svcgen-generated service shares and no model changes: the seed's
//! REST envelope, the error type that is the HTTP answer, extractors,
//! validation primitives, events, and the contracts' routes. A generated
//! crate holds only what its model decides and passes those facts in as data
//! (a [`route::ServiceInfo`], [`route::RouteInfo`]s, [`docs::Docs`]).
//!
//! Modules layer without cycles; each imports only those listed before it:
//!
//! 1. [`route`]: facts about the service and its routes, and [`tables`]: the
//!    tables the runtime owns (no imports; the generator reads it too).
//! 2. [`error`]: the error type and its HTTP answer.
//! 3. [`validation`], [`extract`]: checking and reading requests; `files`
//!    (feature `files`): uploads and downloads.
//! 4. [`event`]: events as data, and the [`event::Watcher`] of a request's events.
//! 5. [`envelope`]: the request context and the envelope of every answer.
//! 6. [`views`]: what reading routes show each caller.
//! 7. `search` and its Elasticsearch mirror `elastic` (feature `search`).
//! 8. `auth` (feature `identity`): keys, hashing, the live-session cache,
//!    throttling, tokens, the caller extractors and sessions; its own modules
//!    layer the same way.
//! 9. `verification` (feature `verification`): one-time codes and their mailer.
//! 10. [`docs`]: the contracts' routes.

pub mod route;
pub mod tables;

pub mod error;

pub mod extract;
#[cfg(feature = "files")]
pub mod files;
pub mod validation;

pub mod event;

pub mod envelope;

pub mod views;

#[cfg(feature = "search")]
pub mod elastic;
#[cfg(feature = "search")]
pub mod search;

#[cfg(feature = "identity")]
pub mod auth;
#[cfg(feature = "verification")]
pub mod verification;

pub mod docs;
