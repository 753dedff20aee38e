//! Business logic of `host`'s routes: the hooks that
//! `crate::host::HostHooks` declares.
//!
//! This file is yours. svcgen created it once and never overwrites it; when a
//! model change adds, renames or retypes a hook of `host`, the compiler
//! names the method here that no longer fits its trait.
//!
//! Decision `host-retired`: a host whose account the auth service deleted
//! offers nothing any more.

use crate::host::{self, Host, HostHooks};
use crate::listing::{self, Listing};
use svcgen_runtime::auth::Caller;
use svcgen_runtime::error::ApiError;
use svcgen_runtime::event::Event;
use svcgen_runtime::hooks::Tx;
use uuid::Uuid;

/// `host`'s hooks, which the app module wires into its routes.
pub struct Hooks;

impl HostHooks for Hooks {
    /// Archives every active listing of the host, each with its deleted
    /// events, and answers the host's copy as it stands (active or not: the
    /// consumer runs this after the user's deletion reached the replica).
    async fn retire_host(tx: &mut Tx<'_>, _caller: &Caller, id: Uuid) -> Result<Host, ApiError> {
        let sql = format!("SELECT {} FROM hosts AS t WHERE t.id = $1", host::SELECT);
        let host: Host = sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&mut *tx.conn)
            .await?
            .ok_or(ApiError::NotFound)?;
        let sql = format!(
            "UPDATE listings AS t SET is_active = false, record_version = t.record_version + 1, updated_at = now() WHERE t.host_id = $1 AND t.is_active RETURNING {}",
            listing::SELECT
        );
        let archived: Vec<Listing> = sqlx::query_as(&sql)
            .bind(id)
            .fetch_all(&mut *tx.conn)
            .await?;
        let mut events: Vec<Event> = Vec::with_capacity(archived.len() * 2);
        for row in &archived {
            events.extend(listing::TOPICS.deleted(row.id, &listing::event_row(row)?)?);
        }
        tx.publish(&events).await?;
        Ok(host)
    }
}
