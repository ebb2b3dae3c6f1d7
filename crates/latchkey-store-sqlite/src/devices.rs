//! Device authorizations ([`latchkey_core::store::DeviceStore`]).

use latchkey_core::device;
use latchkey_core::store::{DeviceGrant, DeviceStatus, Poll};

use super::*;

const DEVICE_COLUMNS: &str = "device_hash, user_hash, client_id, scope, created_at, expires_at, \
     interval_secs, last_polled_at, status, user_id, auth_time, session_id, auth_method";

fn hash_from(row: &Row<'_>, column: &str) -> rusqlite::Result<TokenHash> {
    let bytes: Vec<u8> = row.get(column)?;
    TokenHash::from_slice(&bytes).ok_or_else(|| corrupt(format!("device grant {column}")))
}

fn device_from(row: &Row<'_>) -> rusqlite::Result<DeviceGrant> {
    let status: String = row.get("status")?;
    let user_id: Option<String> = row.get("user_id")?;
    let auth_time: Option<i64> = row.get("auth_time")?;
    let session_id: Option<String> = row.get("session_id")?;
    let auth_method: Option<String> = row.get("auth_method")?;
    let status = DeviceStatus::from_columns(
        &status,
        user_id,
        auth_time,
        session_id,
        auth_method.as_deref(),
    )
    .ok_or_else(|| corrupt(format!("device grant status {status}")))?;
    Ok(DeviceGrant {
        device_hash: hash_from(row, "device_hash")?,
        user_hash: hash_from(row, "user_hash")?,
        client_id: row.get("client_id")?,
        scope: row.get("scope")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        interval: row.get("interval_secs")?,
        last_polled_at: row.get("last_polled_at")?,
        status,
    })
}

#[async_trait]
impl DeviceStore for SqliteStore {
    async fn insert_device_grant(&self, grant: &DeviceGrant) -> StoreResult<()> {
        let (status, user_id, auth_time, session_id, auth_method) = grant.status.columns();
        self.write(|conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO device_grants ({DEVICE_COLUMNS}) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .and_then(|mut s| {
                s.execute(params![
                    &grant.device_hash.0[..],
                    &grant.user_hash.0[..],
                    grant.client_id,
                    grant.scope,
                    grant.created_at,
                    grant.expires_at,
                    grant.interval,
                    grant.last_polled_at,
                    status,
                    user_id,
                    auth_time,
                    session_id,
                    auth_method,
                ])
            })
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn device_grant_by_user_code(
        &self,
        user_hash: &TokenHash,
    ) -> StoreResult<Option<DeviceGrant>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM device_grants WHERE user_hash = ?"
            ))?
            .query_row([&user_hash.0[..]], device_from)
            .optional()
        })
    }

    async fn answer_device_grant(
        &self,
        user_hash: &TokenHash,
        answer: &DeviceStatus,
        now: i64,
    ) -> StoreResult<bool> {
        let (status, user_id, auth_time, _, auth_method) = answer.columns();
        self.write(|conn| {
            let changed = conn
                .execute(
                    "UPDATE device_grants SET status = ?, user_id = ?, auth_time = ?, auth_method = ? \
                     WHERE user_hash = ? AND status = 'pending' AND expires_at >= ?",
                    params![status, user_id, auth_time, auth_method, &user_hash.0[..], now],
                )
                .map_err(backend)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn poll_device_grant(
        &self,
        device_hash: &TokenHash,
        client_id: &str,
        now: i64,
        session_id: &str,
    ) -> StoreResult<Option<Poll>> {
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let found = tx
                .prepare_cached(&format!(
                    "SELECT {DEVICE_COLUMNS} FROM device_grants WHERE device_hash = ?"
                ))
                .and_then(|mut s| s.query_row([&device_hash.0[..]], device_from).optional())
                .map_err(backend)?;
            let Some(grant) = found else {
                return Ok(None);
            };
            let (answer, next) = device::poll(&grant, client_id, now, session_id);
            if next != grant {
                let (status, user_id, auth_time, session_id, auth_method) = next.status.columns();
                tx.execute(
                    "UPDATE device_grants SET interval_secs = ?, last_polled_at = ?, status = ?, \
                     user_id = ?, auth_time = ?, session_id = ?, auth_method = ? WHERE device_hash = ?",
                    params![
                        next.interval,
                        next.last_polled_at,
                        status,
                        user_id,
                        auth_time,
                        session_id,
                        auth_method,
                        &device_hash.0[..]
                    ],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(Some(answer))
        })
        .await
    }

    async fn prune_device_grants(&self, before: i64) -> StoreResult<u64> {
        self.write(|conn| {
            let deleted = conn
                .execute("DELETE FROM device_grants WHERE expires_at < ?", [before])
                .map_err(backend)?;
            Ok(deleted as u64)
        })
        .await
    }
}
