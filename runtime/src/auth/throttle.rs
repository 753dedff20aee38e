//! Throttling in fixed windows kept in the database (`throttle_buckets`), so
//! that every replica counts the same hits.

use crate::error::ApiError;
pub use crate::measure::Limit;
use sqlx::{PgExecutor, PgPool};
use std::net::{IpAddr, Ipv6Addr};

/// Counts a hit on bucket `$1` in a window of `$2` seconds: answers the hits
/// and the seconds left in the window.
pub const HIT_SQL: &str = "INSERT INTO throttle_buckets AS b (bucket, window_start, hits) VALUES ($1, now(), 1)
     ON CONFLICT (bucket) DO UPDATE SET
         hits = CASE WHEN b.window_start <= now() - make_interval(secs => $2) THEN 1 ELSE b.hits + 1 END,
         window_start = CASE WHEN b.window_start <= now() - make_interval(secs => $2) THEN now() ELSE b.window_start END
     RETURNING hits, EXTRACT(EPOCH FROM window_start + make_interval(secs => $2) - now())::float8";

/// Gives back a hit reserved on bucket `$1` (an attempt that succeeded).
pub const REFUND_SQL: &str =
    "UPDATE throttle_buckets SET hits = hits - 1 WHERE bucket = $1 AND hits > 0";

/// The sign-in's first round trip: counts a hit on the address's bucket
/// (`$2`) and reserves one on the account's (`$3`), both in windows of `$4`
/// seconds, and looks the account (`$1`) up with `account_sql`. The
/// account's hit is taken before the secret is hashed, in the same atomic
/// upsert as its count, so parallel guesses cannot all pass the limit.
pub fn sign_in_lookup_sql(account_sql: &str) -> String {
    let address = HIT_SQL.replace("$2", "$4").replace("$1", "$2");
    let account = HIT_SQL.replace("$2", "$4").replace("$1", "$3");
    format!(
        "WITH address AS ({address}), account_bucket AS ({account})
     SELECT address.*, account_bucket.*, account.* FROM address
     LEFT JOIN account_bucket ON TRUE LEFT JOIN LATERAL ({account_sql}) AS account ON TRUE"
    )
}

/// 429 when a bucket's `hits` (with `remaining` seconds in its window) reached
/// `limit`; the refusal is counted as `what`'s.
pub fn throttled(hits: i32, remaining: f64, limit: i64, what: Limit) -> Result<(), ApiError> {
    if i64::from(hits) >= limit {
        what.refused();
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

/// Counts a hit on `bucket`, on the pool or in a transaction; past `limit`
/// (`what`) in the window the answer is 429.
pub async fn hit<'e>(
    db: impl PgExecutor<'e>,
    bucket: &str,
    (limit, what): (u32, Limit),
    window_secs: u32,
) -> Result<(), ApiError> {
    let (hits, remaining): (i32, f64) = sqlx::query_as(HIT_SQL)
        .bind(bucket)
        .bind(f64::from(window_secs))
        .fetch_one(db)
        .await?;
    throttled(hits, remaining, i64::from(limit) + 1, what)
}

/// Reserves an attempt on `bucket` before the work it limits: past `limit`
/// in the window the answer is 429. [`refund`] gives it back on success, so
/// that only failed attempts count, without a window between read and count.
pub async fn reserve(
    db: &PgPool,
    bucket: &str,
    limit: (u32, Limit),
    window_secs: u32,
) -> Result<(), ApiError> {
    hit(db, bucket, limit, window_secs).await
}

/// Gives back an attempt [`reserve`]d on `bucket`.
pub async fn refund(db: &PgPool, bucket: &str) -> Result<(), ApiError> {
    sqlx::query(REFUND_SQL).bind(bucket).execute(db).await?;
    Ok(())
}

/// The part of a client address its buckets count: an IPv4 address, or the
/// /64 of an IPv6 one (a single host is usually given a whole /64).
pub fn address_key(addr: IpAddr) -> String {
    match addr.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let net = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", Ipv6Addr::from(net))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST: Limit = Limit::UploadsPerUser;

    fn retry(result: Result<(), ApiError>) -> Option<u64> {
        match result {
            Ok(()) => None,
            Err(ApiError::TooManyRequests { retry_after }) => Some(retry_after),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn a_bucket_is_throttled_once_it_reaches_the_limit() {
        assert_eq!(retry(throttled(4, 10.0, 5, TEST)), None);
        assert_eq!(retry(throttled(5, 10.0, 5, TEST)), Some(10));
        assert_eq!(retry(throttled(6, 10.0, 5, TEST)), Some(10));
    }

    #[test]
    fn a_hit_counts_itself_so_the_limit_is_inclusive() {
        // `hit` passes limit + 1: the limit-th hit passes, the next one does not.
        let limit = 3u32;
        assert_eq!(retry(throttled(3, 1.0, i64::from(limit) + 1, TEST)), None);
        assert!(retry(throttled(4, 1.0, i64::from(limit) + 1, TEST)).is_some());
        // u32::MAX never overflows: counting without a limit.
        assert_eq!(
            retry(throttled(i32::MAX, 1.0, i64::from(u32::MAX) + 1, TEST)),
            None
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), "2001:db8:1:2::/64");
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));
        assert_eq!(address_key(IpAddr::from([198, 51, 100, 7])), "198.51.100.7");
        let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        assert_eq!(address_key(mapped), "198.51.100.7");
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
        assert!(sql.contains("account_bucket AS (INSERT INTO throttle_buckets AS b (bucket, window_start, hits) VALUES ($3, now(), 1)"));
        let (buckets, _) = sql
            .split_once("LEFT JOIN LATERAL")
            .expect("the account's join");
        assert!(!buckets.contains("$1") && !buckets.contains("=> $2"));
        assert!(sql.ends_with(
            "LEFT JOIN LATERAL (SELECT t.id FROM users AS t WHERE t.email = $1) AS account ON TRUE"
        ));
    }
}
