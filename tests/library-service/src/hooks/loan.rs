//! Business logic of `loan`'s routes: the hooks that
//! `crate::loan::LoanHooks` declares.
//!
//! This file is yours. svcgen created it once and never overwrites it; when a
//! model change adds, renames or retypes a hook of `loan`, the compiler
//! names the method here that no longer fits its trait.
//!
//! The library's rules (decisions `one-open-loan-per-book` and `loans-returned`):
//! a book has at most one open loan, a loan is open until it is returned, and
//! the reader hears of each loan once it is made.

use crate::loan::{self, ExtendLoanChanges, LendBookValues, ListDueLoansQuery, Loan, LoanHooks};
use crate::state::AppState;
use chrono::Utc;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use std::sync::Mutex;
use svcgen_runtime::auth::Caller;
use svcgen_runtime::envelope::RequestContext;
use svcgen_runtime::error::ApiError;
use svcgen_runtime::hooks::{self, Tx};
use uuid::Uuid;

/// `loan`'s hooks, which the app module wires into its routes.
pub struct Hooks;

/// The books whose readers were told of a new loan, one entry per notice: a
/// stand-in for the mail a real library would send once a lend commits.
static NOTICES: Mutex<Vec<Uuid>> = Mutex::new(Vec::new());

/// How many loan notices went out for `book`.
pub fn notices_for(book: Uuid) -> usize {
    let notices = NOTICES.lock().unwrap_or_else(|e| e.into_inner());
    notices.iter().filter(|b| **b == book).count()
}

impl LoanHooks for Hooks {
    /// A book is lent only while no loan of it is open. The book's row is
    /// locked first, so concurrent lends of one book queue behind each other
    /// and each sees the loan the one before it made.
    async fn lend_book_before(
        tx: &mut Tx<'_>,
        _caller: &Caller,
        input: &LendBookValues,
    ) -> Result<(), ApiError> {
        let shelved: Option<bool> =
            sqlx::query_scalar("SELECT is_active FROM books WHERE id = $1 FOR UPDATE")
                .bind(input.book_id)
                .fetch_optional(&mut *tx.conn)
                .await?;
        if shelved == Some(false) {
            return Err(ApiError::Unprocessable {
                message: "this book is archived".into(),
                field: Some("bookId"),
            });
        }
        // An unknown book is left to the loan's foreign key (422).
        let out: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM loans WHERE book_id = $1 AND returned_at IS NULL)",
        )
        .bind(input.book_id)
        .fetch_one(&mut *tx.conn)
        .await?;
        if out {
            return Err(hooks::conflict(
                "bookId",
                "this book is already lent; it must be returned first",
            ));
        }
        Ok(())
    }

    /// Tells the reader of the loan, once it is certain to exist.
    async fn lend_book_committed(_app: &AppState, ctx: &RequestContext, row: &Loan) {
        tracing::info!(loan = %row.id, book = %row.book_id, request = %ctx.request_id, "loan notice sent");
        NOTICES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(row.book_id);
    }

    /// A new due date lies ahead.
    async fn extend_loan_input(
        _app: &AppState,
        _ctx: &RequestContext,
        _caller: &Caller,
        input: &mut ExtendLoanChanges,
    ) -> Result<(), ApiError> {
        match input.due_at {
            Some(due) if due <= Utc::now() => Err(hooks::invalid("dueAt", "must lie ahead")),
            _ => Ok(()),
        }
    }

    /// A returned loan is a record: it is not extended.
    async fn extend_loan_before(
        _tx: &mut Tx<'_>,
        _caller: &Caller,
        old: &Loan,
        _input: &ExtendLoanChanges,
    ) -> Result<(), ApiError> {
        if old.returned_at.is_some() {
            return Err(hooks::conflict(
                "returnedAt",
                "this loan was returned; it cannot be extended",
            ));
        }
        Ok(())
    }

    /// Returned loans are the librarians' records: others do not see them.
    async fn get_loan_row(
        _conn: &mut PgConnection,
        _ctx: &RequestContext,
        caller: &Caller,
        row: &mut Loan,
    ) -> Result<(), ApiError> {
        if row.returned_at.is_some() && !caller.has_role(&["librarian"]) {
            return Err(ApiError::NotFound);
        }
        Ok(())
    }

    /// Only books that are out: loans not yet returned.
    fn list_due_loans_query(
        _ctx: &RequestContext,
        _query: &ListDueLoansQuery,
        sql: &mut QueryBuilder<'static, Postgres>,
    ) -> Result<(), ApiError> {
        sql.push(" AND t.returned_at IS NULL");
        Ok(())
    }

    /// Returns a loan: sets returnedAt, publishes the row's update and
    /// `loan-returned`. A loan is returned once.
    async fn return_book(tx: &mut Tx<'_>, _caller: &Caller, id: Uuid) -> Result<Loan, ApiError> {
        let old = loan::lock(&mut *tx.conn, id).await?;
        if old.returned_at.is_some() {
            return Err(hooks::conflict(
                "returnedAt",
                "this loan was already returned",
            ));
        }
        let sql = format!(
            "UPDATE loans AS t SET returned_at = now(), record_version = t.record_version + 1, updated_at = now() WHERE t.id = $1 RETURNING {}",
            loan::SELECT
        );
        let row: Loan = sqlx::query_as(&sql)
            .bind(id)
            .fetch_one(&mut *tx.conn)
            .await?;
        let (before, after) = (loan::event_row(&old)?, loan::event_row(&row)?);
        let mut events = Vec::from(loan::TOPICS.updated(id, &before, &after)?);
        events.push(loan::loan_returned(&row)?);
        tx.publish(&events).await?;
        Ok(row)
    }
}
