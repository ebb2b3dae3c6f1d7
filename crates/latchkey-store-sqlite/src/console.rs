//! What the operator's console reads ([`latchkey_core::store::ConsoleStore`]):
//! activity per minute, counts, and users found by a prefix.

use latchkey_core::store::{Activity, ConsoleStore};

use super::*;

/// The first string after every string that starts with `prefix`, in
/// SQLite's binary (code point) order: a range scan of an index finds them.
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

#[async_trait]
impl ConsoleStore for SqliteStore {
    async fn add_activity(&self, minute: i64, counts: &[(&str, u64)]) -> StoreResult<()> {
        let counts: Vec<(String, i64)> = counts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(series, n)| ((*series).to_owned(), i64::try_from(*n).unwrap_or(i64::MAX)))
            .collect();
        if counts.is_empty() {
            return Ok(());
        }
        self.write(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            {
                let mut add = tx
                    .prepare_cached(
                        "INSERT INTO activity (minute, series, n) VALUES (?, ?, ?) \
                         ON CONFLICT (minute, series) DO UPDATE SET n = n + excluded.n",
                    )
                    .map_err(backend)?;
                for (series, n) in &counts {
                    add.execute(params![minute, series, n]).map_err(backend)?;
                }
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn activity(&self, since: i64) -> StoreResult<Vec<Activity>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT minute, series, n FROM activity WHERE minute >= ? ORDER BY minute",
            )?
            .query_map([since], |row| {
                Ok(Activity {
                    minute: row.get(0)?,
                    series: row.get(1)?,
                    n: u64::try_from(row.get::<_, i64>(2)?).unwrap_or_default(),
                })
            })?
            .collect()
        })
    }

    async fn prune_activity(&self, before: i64) -> StoreResult<u64> {
        self.write(|conn| {
            let gone = conn
                .execute("DELETE FROM activity WHERE minute < ?", [before])
                .map_err(backend)?;
            Ok(gone as u64)
        })
        .await
    }

    async fn count_users(&self) -> StoreResult<u64> {
        self.read(|conn| {
            // Kept by triggers (migration 0018): no rows are counted.
            conn.prepare_cached("SELECT n FROM tallies WHERE name = 'users'")?
                .query_row([], |row| row.get::<_, i64>(0))
        })
        .map(|n| u64::try_from(n).unwrap_or_default())
    }

    async fn count_live_sessions(&self, now: i64) -> StoreResult<u64> {
        self.read(|conn| {
            // The hours to come from their tallies, the current hour from
            // the index of live sessions (migration 0018).
            conn.prepare_cached(
                "SELECT (SELECT coalesce(sum(n), 0) FROM session_expiries WHERE hour > ?1 / 3600) \
                      + (SELECT count(*) FROM sessions WHERE revoked_at IS NULL \
                           AND expires_at > ?1 AND expires_at < (?1 / 3600 + 1) * 3600)",
            )?
            .query_row([now], |row| row.get::<_, i64>(0))
        })
        .map(|n| u64::try_from(n).unwrap_or_default())
    }

    async fn search_users(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<User>> {
        let end = prefix_end(prefix);
        // One index range per column, each cut to a page before the two
        // are merged: a broad prefix costs a page, not every match.
        let sql = format!(
            "SELECT * FROM ( \
               SELECT * FROM (SELECT {USER_COLUMNS} FROM users u WHERE u.deleted_at IS NULL \
                 AND u.username >= ?1 AND u.username < ?2 AND (?3 IS NULL OR u.username > ?3) \
                 ORDER BY u.username LIMIT ?4) \
               UNION \
               SELECT * FROM (SELECT {USER_COLUMNS} FROM users u WHERE u.deleted_at IS NULL \
                 AND u.email_key >= ?1 AND u.email_key < ?2 AND (?3 IS NULL OR u.username > ?3) \
                 ORDER BY u.username LIMIT ?4)) \
             ORDER BY username LIMIT ?4"
        );
        self.read(|conn| {
            conn.prepare_cached(&sql)?
                .query_map(params![prefix, end, after, i64::from(limit)], user_from)?
                .collect()
        })
    }
}
