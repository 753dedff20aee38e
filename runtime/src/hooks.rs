//! What hand-written business logic gets from a generated route.
//!
//! A model names the hook points of a route (`hooks: [input, before, after,
//! committed]`, ...); the generated module declares them as a trait and calls
//! them at those points only, so a route without hooks pays nothing. Hooks
//! that run inside the write get a [`Tx`]: the route's own transaction, so
//! what they write, and the events they publish, commit or roll back with it.

use crate::envelope::RequestContext;
use crate::error::{ApiError, FieldError};
use crate::event::Event;
use sqlx::PgConnection;

/// A write in progress, as a hook inside it sees it.
pub struct Tx<'a> {
    /// The route's transaction: statements here commit or roll back with its own.
    pub conn: &'a mut PgConnection,
    /// The request (its id, the caller's user and session) the write belongs to.
    pub ctx: &'a RequestContext,
}

impl<'a> Tx<'a> {
    pub fn new(conn: &'a mut PgConnection, ctx: &'a RequestContext) -> Self {
        Self { conn, ctx }
    }

    /// Adds `events` to the outbox in this transaction: they are published
    /// when, and only if, the write commits.
    pub async fn publish(&mut self, events: &[Event]) -> Result<(), ApiError> {
        crate::outbox::enqueue(self.conn, self.ctx, events).await
    }
}

/// A refusal that names the field at fault: 409 with the field in the
/// envelope's details (e.g. "this book is already lent").
pub fn conflict(field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Conflict {
        message: message.into(),
        field: Some(field),
    }
}

/// A refusal of the input: 400 with one field error.
pub fn invalid(field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Validation(vec![FieldError::new(field, message)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    #[test]
    fn refusals_are_client_errors_naming_their_field() {
        let conflict = conflict("bookId", "this book is already lent");
        assert_eq!(conflict.status(), axum::http::StatusCode::CONFLICT);
        let invalid = invalid("dueAt", "must be in the future");
        assert_eq!(invalid.status(), axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(
            invalid.into_response().status(),
            axum::http::StatusCode::BAD_REQUEST
        );
    }
}
