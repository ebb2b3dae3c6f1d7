//! The audit trail ([`latchkey_core::store::AuditStore`]).

use super::*;

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, e: &AuditEvent) -> StoreResult<()> {
        self.write(|conn| insert_audit(conn, e).map_err(backend))
            .await
    }
    async fn prune_audit(&self, before: i64) -> StoreResult<u64> {
        let mut pruned = 0;
        loop {
            let deleted = self
                .write(|conn| {
                    conn.prepare_cached(
                        "DELETE FROM audit_events WHERE id IN \
                         (SELECT id FROM audit_events WHERE at < ?1 LIMIT ?2)",
                    )
                    .and_then(|mut s| s.execute(params![before, GC_BATCH]))
                    .map_err(backend)
                })
                .await?;
            pruned += deleted as u64;
            if (deleted as i64) < GC_BATCH {
                return Ok(pruned);
            }
            tokio::task::yield_now().await;
        }
    }
    async fn audit_page(&self, filter: &AuditFilter) -> StoreResult<Vec<(i64, AuditEvent)>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT id, at, kind, user_id, session_id, client_id, ip, user_agent, detail, actor_id \
                 FROM audit_events WHERE (?1 IS NULL OR user_id = ?1 OR actor_id = ?1) AND (?2 IS NULL OR kind = ?2) \
                 AND (?3 IS NULL OR at >= ?3) AND (?4 IS NULL OR at < ?4) AND (?5 IS NULL OR id < ?5) \
                 ORDER BY id DESC LIMIT ?6",
            )?
            .query_map(
                params![
                    filter.user_id,
                    filter.kind,
                    filter.since,
                    filter.until,
                    filter.before_id,
                    i64::from(filter.limit)
                ],
                |row| Ok((row.get("id")?, audit_from(row)?)),
            )?
            .collect()
        })
    }
}
