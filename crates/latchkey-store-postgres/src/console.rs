//! What the operator's console reads ([`latchkey_core::store::ConsoleStore`]):
//! activity per minute, counts, and users found by a prefix.

use latchkey_core::store::{Activity, ConsoleStore};

use super::*;

/// The first string after every string that starts with `prefix`, in the
/// byte order of the `"C"` collation: a range scan of an index finds them,
/// whatever the database's own collation, with a generic plan too.
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

#[async_trait]
impl ConsoleStore for PgStore {
    async fn add_activity(&self, minute: i64, counts: &[(&str, u64)]) -> StoreResult<()> {
        let (series, ns): (Vec<&str>, Vec<i64>) = counts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| (*s, i64::try_from(*n).unwrap_or(i64::MAX)))
            .unzip();
        if series.is_empty() {
            return Ok(());
        }
        // One statement; the series are sorted so that instances adding at
        // once take their row locks in one order.
        sqlx::query(
            "INSERT INTO activity (minute, series, n) \
             SELECT $1, s, n FROM unnest($2::text[], $3::bigint[]) AS t(s, n) ORDER BY s \
             ON CONFLICT (minute, series) DO UPDATE SET n = activity.n + excluded.n",
        )
        .bind(minute)
        .bind(&series)
        .bind(&ns)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn activity(&self, since: i64) -> StoreResult<Vec<Activity>> {
        let rows = sqlx::query(
            "SELECT minute, series, n FROM activity WHERE minute >= $1 ORDER BY minute",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(Activity {
                    minute: r.try_get("minute").map_err(backend)?,
                    series: r.try_get("series").map_err(backend)?,
                    n: count(r.try_get("n").map_err(backend)?),
                })
            })
            .collect()
    }

    async fn prune_activity(&self, before: i64) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM activity WHERE minute < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn count_users(&self) -> StoreResult<u64> {
        // Kept by a trigger (migration 0018): no rows are counted.
        let n: i64 = sqlx::query_scalar("SELECT n FROM tallies WHERE name = 'users'")
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(count(n))
    }

    async fn count_live_sessions(&self, now: i64) -> StoreResult<u64> {
        // The hours to come from their tallies, the current hour from the
        // index of live sessions (migration 0018).
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT coalesce(sum(n), 0) FROM session_expiries WHERE hour > $1 / 3600)::BIGINT \
                  + (SELECT count(*) FROM sessions WHERE revoked_at IS NULL \
                       AND expires_at > $1 AND expires_at < ($1 / 3600 + 1) * 3600)",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        Ok(count(n))
    }

    async fn search_users(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<User>> {
        // One index range per column, each cut to a page before the two
        // are merged: a broad prefix costs a page, not every match.
        let sql = format!(
            "SELECT * FROM ( \
               (SELECT {USER_COLUMNS} FROM users u WHERE u.deleted_at IS NULL \
                 AND u.username COLLATE \"C\" >= $1 AND u.username COLLATE \"C\" < $2 \
                 AND ($3::text IS NULL OR u.username COLLATE \"C\" > $3) \
                 ORDER BY u.username COLLATE \"C\" LIMIT $4) \
               UNION \
               (SELECT {USER_COLUMNS} FROM users u WHERE u.deleted_at IS NULL \
                 AND u.email_key COLLATE \"C\" >= $1 AND u.email_key COLLATE \"C\" < $2 \
                 AND ($3::text IS NULL OR u.username COLLATE \"C\" > $3) \
                 ORDER BY u.username COLLATE \"C\" LIMIT $4)) AS found \
             ORDER BY username COLLATE \"C\" LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(prefix)
            .bind(prefix_end(prefix))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(user_from).collect()
    }
}
