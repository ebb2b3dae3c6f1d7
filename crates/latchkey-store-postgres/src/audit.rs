//! The audit trail ([`latchkey_core::store::AuditStore`]).

use super::*;

#[async_trait]
impl AuditStore for PgStore {
    async fn append_audit(&self, e: &AuditEvent) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        insert_audit(&mut conn, e).await
    }
    async fn prune_audit(&self, before: i64) -> StoreResult<u64> {
        const BATCH: i64 = 5000;
        let mut pruned = 0;
        loop {
            let done = sqlx::query(
                "DELETE FROM audit_events WHERE id IN \
                 (SELECT id FROM audit_events WHERE at < $1 LIMIT $2)",
            )
            .bind(before)
            .bind(BATCH)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
            pruned += done.rows_affected();
            if done.rows_affected() < BATCH as u64 {
                return Ok(pruned);
            }
        }
    }
    async fn audit_page(&self, filter: &AuditFilter) -> StoreResult<Vec<(i64, AuditEvent)>> {
        let rows = sqlx::query(
            "SELECT id, at, kind, user_id, session_id, client_id, ip, user_agent, detail, actor_id \
             FROM audit_events \
             WHERE ($1::text IS NULL OR user_id = $1 OR actor_id = $1) AND ($2::text IS NULL OR kind = $2) \
             AND ($3::bigint IS NULL OR at >= $3) AND ($4::bigint IS NULL OR at < $4) \
             AND ($5::bigint IS NULL OR id < $5) ORDER BY id DESC LIMIT $6",
        )
        .bind(&filter.user_id)
        .bind(&filter.kind)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.before_id)
        .bind(i64::from(filter.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let event = AuditEvent {
                    at: r.try_get("at").map_err(backend)?,
                    kind: r.try_get("kind").map_err(backend)?,
                    user_id: r.try_get("user_id").map_err(backend)?,
                    session_id: r.try_get("session_id").map_err(backend)?,
                    client_id: r.try_get("client_id").map_err(backend)?,
                    ip: r.try_get("ip").map_err(backend)?,
                    user_agent: r.try_get("user_agent").map_err(backend)?,
                    detail: r.try_get("detail").map_err(backend)?,
                    actor_id: r.try_get("actor_id").map_err(backend)?,
                };
                Ok((r.try_get("id").map_err(backend)?, event))
            })
            .collect()
    }
}
