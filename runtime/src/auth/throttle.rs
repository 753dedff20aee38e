//! Throttling in fixed windows kept in the database (`throttle_buckets`), so
//! that every replica counts the same hits.

use crate::error::ApiError;
use sqlx::PgPool;

/// Counts a hit on bucket `$1` in a window of `$2` seconds: answers the hits
/// and the seconds left in the window.
pub const HIT_SQL: &str = "INSERT INTO throttle_buckets AS b (bucket, window_start, hits) VALUES ($1, now(), 1)
     ON CONFLICT (bucket) DO UPDATE SET
         hits = CASE WHEN b.window_start <= now() - make_interval(secs => $2) THEN 1 ELSE b.hits + 1 END,
         window_start = CASE WHEN b.window_start <= now() - make_interval(secs => $2) THEN now() ELSE b.window_start END
     RETURNING hits, EXTRACT(EPOCH FROM window_start + make_interval(secs => $2) - now())::float8";

/// Bucket `$1`'s hits and seconds left, when its window of `$2` seconds is open.
pub const CHECK_SQL: &str =
    "SELECT hits, EXTRACT(EPOCH FROM window_start + make_interval(secs => $2) - now())::float8
     FROM throttle_buckets WHERE bucket = $1 AND window_start > now() - make_interval(secs => $2)";

/// The sign-in's first round trip: counts a hit on the address's bucket
/// (`$2`), reads the account's bucket (`$3`), both in windows of `$4`
/// seconds, and looks the account (`$1`) up with `account_sql`.
pub fn sign_in_lookup_sql(account_sql: &str) -> String {
    let address = HIT_SQL.replace("$2", "$4").replace("$1", "$2");
    let account = CHECK_SQL.replace("$2", "$4").replace("$1", "$3");
    format!(
        "WITH address AS ({address}), account_bucket AS ({account})
     SELECT address.*, account_bucket.*, account.* FROM address
     LEFT JOIN account_bucket ON TRUE LEFT JOIN LATERAL ({account_sql}) AS account ON TRUE"
    )
}

/// 429 when a bucket's `hits` (with `remaining` seconds in its window) reached `limit`.
pub fn throttled(hits: i32, remaining: f64, limit: i64) -> Result<(), ApiError> {
    if i64::from(hits) >= limit {
        return Err(ApiError::TooManyRequests {
            retry_after: retry_after(remaining),
        });
    }
    Ok(())
}

/// Whole seconds until the window ends, at least one.
fn retry_after(remaining: f64) -> u64 {
    remaining.ceil().max(1.0) as u64
}

/// Counts a hit on `bucket`; past `limit` in the window the answer is 429.
pub async fn hit(db: &PgPool, bucket: &str, limit: u32, window_secs: u32) -> Result<(), ApiError> {
    let (hits, remaining): (i32, f64) = sqlx::query_as(HIT_SQL)
        .bind(bucket)
        .bind(f64::from(window_secs))
        .fetch_one(db)
        .await?;
    throttled(hits, remaining, i64::from(limit) + 1)
}

/// 429 when `bucket` already reached `limit` in its window (without counting).
pub async fn check(
    db: &PgPool,
    bucket: &str,
    limit: u32,
    window_secs: u32,
) -> Result<(), ApiError> {
    let row: Option<(i32, f64)> = sqlx::query_as(CHECK_SQL)
        .bind(bucket)
        .bind(f64::from(window_secs))
        .fetch_optional(db)
        .await?;
    row.map_or(Ok(()), |(hits, remaining)| {
        throttled(hits, remaining, i64::from(limit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(result: Result<(), ApiError>) -> Option<u64> {
        match result {
            Ok(()) => None,
            Err(ApiError::TooManyRequests { retry_after }) => Some(retry_after),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn a_bucket_is_throttled_once_it_reaches_the_limit() {
        assert_eq!(retry(throttled(4, 10.0, 5)), None);
        assert_eq!(retry(throttled(5, 10.0, 5)), Some(10));
        assert_eq!(retry(throttled(6, 10.0, 5)), Some(10));
    }

    #[test]
    fn a_hit_counts_itself_so_the_limit_is_inclusive() {
        // `hit` passes limit + 1: the limit-th hit passes, the next one does not.
        let limit = 3u32;
        assert_eq!(retry(throttled(3, 1.0, i64::from(limit) + 1)), None);
        assert!(retry(throttled(4, 1.0, i64::from(limit) + 1)).is_some());
        // u32::MAX never overflows: counting without a limit.
        assert_eq!(
            retry(throttled(i32::MAX, 1.0, i64::from(u32::MAX) + 1)),
            None
        );
    }

    #[test]
    fn retry_after_rounds_up_to_at_least_a_second() {
        assert_eq!(retry_after(0.2), 1);
        assert_eq!(retry_after(1.0), 1);
        assert_eq!(retry_after(1.01), 2);
        assert_eq!(retry_after(59.5), 60);
        assert_eq!(retry_after(0.0), 1);
        assert_eq!(retry_after(-3.0), 1);
        assert_eq!(retry_after(f64::NAN), 1);
    }

    #[test]
    fn the_sign_in_lookup_renumbers_the_bucket_statements() {
        let sql = sign_in_lookup_sql("SELECT t.id FROM users AS t WHERE t.email = $1");
        assert!(sql.starts_with("WITH address AS (INSERT INTO throttle_buckets AS b (bucket, window_start, hits) VALUES ($2, now(), 1)"));
        assert!(sql.contains("make_interval(secs => $4)"));
        assert!(sql.contains("WHERE bucket = $3 AND"));
        let (buckets, _) = sql
            .split_once("LEFT JOIN LATERAL")
            .expect("the account's join");
        assert!(!buckets.contains("$1") && !buckets.contains("=> $2"));
        assert!(sql.ends_with(
            "LEFT JOIN LATERAL (SELECT t.id FROM users AS t WHERE t.email = $1) AS account ON TRUE"
        ));
    }
}
