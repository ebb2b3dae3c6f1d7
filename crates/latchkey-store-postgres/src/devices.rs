//! Device authorizations ([`latchkey_core::store::DeviceStore`]).

use latchkey_core::device;
use latchkey_core::store::{DeviceGrant, DeviceStatus, Poll};

use super::*;

const DEVICE_COLUMNS: &str = "device_hash, user_hash, client_id, scope, created_at, expires_at, \
     interval_secs, last_polled_at, status, user_id, auth_time, session_id, auth_method";

fn device_from(row: &PgRow) -> StoreResult<DeviceGrant> {
    let get_text = |c: &str| -> StoreResult<Option<String>> { row.try_get(c).map_err(backend) };
    let status: String = row.try_get("status").map_err(backend)?;
    let auth_time: Option<i64> = row.try_get("auth_time").map_err(backend)?;
    let (user_id, session_id) = (get_text("user_id")?, get_text("session_id")?);
    let auth_method = get_text("auth_method")?;
    let status = DeviceStatus::from_columns(
        &status,
        user_id,
        auth_time,
        session_id,
        auth_method.as_deref(),
    )
    .ok_or_else(|| StoreError::Corrupt(format!("device grant status {status}")))?;
    Ok(DeviceGrant {
        device_hash: hash_of(row, "device_hash")?,
        user_hash: hash_of(row, "user_hash")?,
        client_id: row.try_get("client_id").map_err(backend)?,
        scope: row.try_get("scope").map_err(backend)?,
        created_at: row.try_get("created_at").map_err(backend)?,
        expires_at: row.try_get("expires_at").map_err(backend)?,
        interval: row.try_get("interval_secs").map_err(backend)?,
        last_polled_at: row.try_get("last_polled_at").map_err(backend)?,
        status,
    })
}

#[async_trait]
impl DeviceStore for PgStore {
    async fn insert_device_grant(&self, grant: &DeviceGrant) -> StoreResult<()> {
        let (status, user_id, auth_time, session_id, auth_method) = grant.status.columns();
        sqlx::query(&format!(
            "INSERT INTO device_grants ({DEVICE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(grant.device_hash.0.to_vec())
        .bind(grant.user_hash.0.to_vec())
        .bind(&grant.client_id)
        .bind(&grant.scope)
        .bind(grant.created_at)
        .bind(grant.expires_at)
        .bind(grant.interval)
        .bind(grant.last_polled_at)
        .bind(status)
        .bind(user_id)
        .bind(auth_time)
        .bind(session_id)
        .bind(auth_method)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn device_grant_by_user_code(
        &self,
        user_hash: &TokenHash,
    ) -> StoreResult<Option<DeviceGrant>> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM device_grants WHERE user_hash = $1"
        ))
        .bind(user_hash.0.to_vec())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(device_from).transpose()
    }

    async fn answer_device_grant(
        &self,
        user_hash: &TokenHash,
        answer: &DeviceStatus,
        now: i64,
    ) -> StoreResult<bool> {
        let (status, user_id, auth_time, _, auth_method) = answer.columns();
        let changed = sqlx::query(
            "UPDATE device_grants SET status = $1, user_id = $2, auth_time = $3, auth_method = $6 \
             WHERE user_hash = $4 AND status = 'pending' AND expires_at >= $5",
        )
        .bind(status)
        .bind(user_id)
        .bind(auth_time)
        .bind(user_hash.0.to_vec())
        .bind(now)
        .bind(auth_method)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(changed.rows_affected() == 1)
    }

    async fn poll_device_grant(
        &self,
        device_hash: &TokenHash,
        client_id: &str,
        now: i64,
        session_id: &str,
    ) -> StoreResult<Option<Poll>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // The row lock makes concurrent polls decide one after another.
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM device_grants WHERE device_hash = $1 FOR UPDATE"
        ))
        .bind(device_hash.0.to_vec())
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let grant = device_from(&row)?;
        let (answer, next) = device::poll(&grant, client_id, now, session_id);
        if next != grant {
            let (status, user_id, auth_time, session_id, auth_method) = next.status.columns();
            sqlx::query(
                "UPDATE device_grants SET interval_secs = $1, last_polled_at = $2, status = $3, \
                 user_id = $4, auth_time = $5, session_id = $6, auth_method = $8 \
                 WHERE device_hash = $7",
            )
            .bind(next.interval)
            .bind(next.last_polled_at)
            .bind(status)
            .bind(user_id)
            .bind(auth_time)
            .bind(session_id)
            .bind(device_hash.0.to_vec())
            .bind(auth_method)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(Some(answer))
    }

    async fn prune_device_grants(&self, before: i64) -> StoreResult<u64> {
        let deleted = sqlx::query("DELETE FROM device_grants WHERE expires_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(deleted.rows_affected())
    }
}
