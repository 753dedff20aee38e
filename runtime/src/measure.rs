//! What the modules that record metrics share, below all of them: the
//! metric names, the connection helpers that time the pool's waits, and the
//! throttle limits as label values. Recording goes through the `metrics`
//! facade (a no-op until the `metrics` module installs the recorder); serving
//! and what is read at scrape time live there.

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, Postgres};
use sqlx::Transaction;
use std::time::Instant;

pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_DURATION: &str = "http_request_duration_seconds";
pub const DB_IN_USE: &str = "db_pool_connections_in_use";
pub const DB_IDLE: &str = "db_pool_connections_idle";
pub const OUTBOX_PENDING: &str = "outbox_pending_events";
pub const OUTBOX_OLDEST: &str = "outbox_oldest_pending_age_seconds";
/// Counted in `outbox` (as the broker acknowledges) and `relay` (failed rounds).
pub const RELAY_PUBLISHED: &str = "outbox_relay_published_total";
pub const RELAY_FAILURES: &str = "outbox_relay_failures_total";
pub const READ_EVENTS_DROPPED: &str = "read_events_dropped_total";
pub const DB_ACQUIRE: &str = "db_pool_acquire_seconds";
pub const DB_ACQUIRE_TIMEOUTS: &str = "db_pool_acquire_timeouts_total";
pub const HASHING_QUEUE: &str = "hashing_queue_depth";
pub const HASHING_WAIT: &str = "hashing_wait_seconds";
pub const REALTIME_CLIENTS: &str = "realtime_clients";
pub const THROTTLE_REFUSALS: &str = "throttle_refusals_total";

/// The route label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// A connection of `db`, the wait for it recorded in [`DB_ACQUIRE`].
pub async fn acquire(db: &PgPool) -> Result<PoolConnection<Postgres>, sqlx::Error> {
    timed_acquire(db.acquire()).await
}

/// A transaction on `db`, the wait for its connection recorded in
/// [`DB_ACQUIRE`]; sqlx takes the connection and sends `BEGIN` in one call,
/// so the time includes BEGIN's round trip.
pub async fn begin(db: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    timed_acquire(db.begin()).await
}

async fn timed_acquire<T>(acquiring: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let acquired = acquiring.await;
    ::metrics::histogram!(DB_ACQUIRE).record(started.elapsed().as_secs_f64());
    acquired
}

/// What a throttle refused: the `limit` label of [`THROTTLE_REFUSALS`], one
/// per limit a service configures (a bounded set, whatever the buckets are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    SignInPerAddress,
    SignInPerAccount,
    PublicWritesPerAddress,
    UploadsPerUser,
    SecretConfirmationsPerAccount,
    CodeRequestsPerAddress,
    CodeRequestsPerAccount,
    CodeChecksPerAddress,
    CodeChecksPerAccount,
    RealtimeStreams,
}

impl Limit {
    pub const fn label(self) -> &'static str {
        match self {
            Self::SignInPerAddress => "sign_in_per_address",
            Self::SignInPerAccount => "sign_in_per_account",
            Self::PublicWritesPerAddress => "public_writes_per_address",
            Self::UploadsPerUser => "uploads_per_user",
            Self::SecretConfirmationsPerAccount => "secret_confirmations_per_account",
            Self::CodeRequestsPerAddress => "code_requests_per_address",
            Self::CodeRequestsPerAccount => "code_requests_per_account",
            Self::CodeChecksPerAddress => "code_checks_per_address",
            Self::CodeChecksPerAccount => "code_checks_per_account",
            Self::RealtimeStreams => "realtime_streams",
        }
    }

    /// Counts a refusal by this limit.
    pub fn refused(self) {
        ::metrics::counter!(THROTTLE_REFUSALS, "limit" => self.label()).increment(1);
    }
}
