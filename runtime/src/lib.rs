//! What every svcgen-generated service shares and no model changes: the seed's
//! REST envelope, the error type that is the HTTP answer, extractors,
//! validation primitives, events and their way to Kafka, the realtime
//! stream, health probes and the contracts' routes. A generated crate holds only what its model decides and passes
//! those facts in as data (a [`route::ServiceInfo`], [`route::RouteInfo`]s,
//! a [`kafka::KafkaSpec`], [`docs::Docs`]).
//!
//! Modules layer without cycles; each imports only those listed before it:
//!
//! 1. [`config`]: settings from the environment; [`route`]: facts about the
//!    service and its routes; [`tables`]: the tables the runtime owns (no
//!    imports; the generator reads it too); [`trace`]: W3C trace context;
//!    [`measure`]: metric names, timed connections, throttle limits.
//! 2. [`error`]: the error type and its HTTP answer.
//! 3. [`validation`], [`extract`]: checking and reading requests; `files`
//!    (feature `files`): uploads and downloads.
//! 4. [`event`]: events as data, and the [`event::Watcher`] of a request's events.
//! 5. [`envelope`]: the request context and the envelope of every answer.
//! 6. [`views`]: what reading routes show each caller; [`outbox`]: events
//!    written with the change, and the relay's side of the table; [`hooks`]:
//!    what hand-written business logic gets from a generated route.
//! 7. [`kafka`]: records, topics, the producer of reading-route events and the
//!    relay's sink; `search` and its Elasticsearch mirror `elastic` (feature
//!    `search`); `auth` (feature `trust`, all of it with `identity`): rules,
//!    tokens, the caller extractors, the issuer's keys and revocations for a
//!    trusting service; keys, hashing, the live-session cache, throttling and
//!    sessions for an issuing one (its own modules layer the same way).
//! 8. [`relay`]: the task that carries the outbox to Kafka; [`consume`]: the
//!    consumer group that applies events with an inbox, retries and dead letters; `realtime` (feature
//!    `realtime`): the Server-Sent Events stream of the outbox;
//!    `verification` (feature `verification`): one-time codes and their mailer.
//! 9. [`health`], [`docs`]: the probes and the contracts' routes;
//!    [`metrics`]: the Prometheus recorder, its listener, the request layer
//!    and what is read at scrape time (`outbox` and `relay` count through
//!    the `metrics` facade without importing it).
//! 10. [`telemetry`]: logs, the span exporter and the request span;
//!     [`server`]: start, the layers around every route, and shutdown.

pub mod config;
pub mod measure;
pub mod route;
pub mod tables;
pub mod trace;

pub mod error;

pub mod extract;
#[cfg(feature = "files")]
pub mod files;
pub mod validation;

pub mod event;

pub mod envelope;

pub mod hooks;
pub mod outbox;
pub mod views;

pub mod kafka;

#[cfg(feature = "search")]
pub mod elastic;
#[cfg(feature = "search")]
pub mod search;

#[cfg(feature = "trust")]
pub mod auth;

pub mod consume;
#[cfg(feature = "realtime")]
pub mod realtime;
pub mod relay;
#[cfg(feature = "verification")]
pub mod verification;

pub mod docs;
pub mod health;
pub mod metrics;
pub mod server;
pub mod telemetry;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
