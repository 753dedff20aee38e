//! Business logic of `book`'s routes: the hooks that
//! `crate::book::BookHooks` declares.
//!
//! This file is yours. svcgen created it once and never overwrites it; when a
//! model change adds, renames or retypes a hook of `book`, the compiler
//! names the method here that no longer fits its trait.

use crate::book::{Book, BookHooks};
use svcgen_runtime::auth::Caller;
use svcgen_runtime::error::ApiError;
use svcgen_runtime::hooks::{self, Tx};

/// `book`'s hooks, which the app module wires into its routes.
pub struct Hooks;

impl BookHooks for Hooks {
    /// A book that is out is archived only once it is returned (decision
    /// `returned-loans-are-records`). The route holds the book's row lock, as
    /// a lend does, so no loan opens meanwhile.
    async fn archive_book_before(
        tx: &mut Tx<'_>,
        _caller: &Caller,
        old: &Book,
    ) -> Result<(), ApiError> {
        let out: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM loans WHERE book_id = $1 AND returned_at IS NULL)",
        )
        .bind(old.id)
        .fetch_one(&mut *tx.conn)
        .await?;
        if out {
            return Err(hooks::conflict(
                "id",
                "this book is lent; it can be archived once it is returned",
            ));
        }
        Ok(())
    }
}
