//! Hand-written consumers: the hooks that `crate::consumers::ConsumerHooks`
//! declares, each called once per event in the transaction that records the
//! event in the inbox.
//!
//! This file is yours. svcgen created it once and never overwrites it; when a
//! model change adds, renames or retypes a hook consumer, the compiler names
//! the method here that no longer fits its trait.

use crate::consumers::{CityCountsEvent, ConsumerHooks};
use svcgen_runtime::error::ApiError;
use svcgen_runtime::hooks::Tx;

/// The consumer hooks, which the app module wires into the consumer group.
pub struct Hooks;

impl ConsumerHooks for Hooks {
    /// Counts a listing offered in its city. The inbox makes it once per
    /// event: a redelivered listing-created event does not count twice.
    async fn city_counts(tx: &mut Tx<'_>, event: &CityCountsEvent) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO cities AS t (name, listings_offered) VALUES ($1, 1)
             ON CONFLICT (name) DO UPDATE
             SET listings_offered = t.listings_offered + 1,
                 record_version = t.record_version + 1,
                 updated_at = now()",
        )
        .bind(&event.city)
        .execute(&mut *tx.conn)
        .await?;
        Ok(())
    }
}
