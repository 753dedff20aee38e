//! What every svcgen-generated service shares and no model changes: the seed's
//! REST envelope, the error type that is the HTTP answer, extractors,
//! validation primitives, events and their way to Kafka, the realtime
//! stream, health probes and the contracts' routes. A generated crate holds only what its model decides and passes
//! those facts in as data (a [`route::ServiceInfo`], [`route::RouteInfo`]s,
//! a [`kafka::KafkaSpec`], [`docs::Docs`]).
//!
//! Modules layer without cycles; each imports only those listed before it:
//!
//! 1. [`route`]: facts about the service and its routes (no imports).
//! 2. [`error`]: the error type and its HTTP answer.
//! 3. [`validation`], [`extract`]: checking and reading requests.
//! 4. [`event`]: events as data, and the [`event::Watcher`] of a request's events.
//! 5. [`envelope`]: the request context and the envelope of every answer.
//! 6. [`outbox`]: events written with the change, and the relay's side of the table.
//! 7. [`kafka`]: records, topics, the producer of reading-route events and the relay's sink.
//! 8. [`relay`]: the task that carries the outbox to Kafka; `realtime` (feature
//!    `realtime`): the Server-Sent Events stream of the outbox.
//! 9. [`health`], [`docs`]: the probes and the contracts' routes.

pub mod route;

pub mod error;

pub mod extract;
pub mod validation;

pub mod event;

pub mod envelope;

pub mod outbox;

pub mod kafka;

#[cfg(feature = "realtime")]
pub mod realtime;
pub mod relay;

pub mod docs;
pub mod health;

#[cfg(test)]
mod testing;
