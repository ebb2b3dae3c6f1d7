//! Passkeys and WebAuthn ceremonies ([`latchkey_core::store::PasskeyStore`]).

use latchkey_core::records::has_expired;
use latchkey_core::store::{PasskeyRecord, WebauthnCeremony};

use super::*;

const PASSKEY_COLUMNS: &str =
    "id, user_id, credential_id, name, credential, counter, created_at, last_used_at";

/// The advisory lock that orders ceremony inserts, so that their cap holds
/// whatever arrives at once.
const CEREMONY_LOCK: i64 = 0x6c6b_7765_6261_7574;

fn passkey_from(row: &PgRow) -> StoreResult<PasskeyRecord> {
    let counter: i64 = row.try_get("counter").map_err(backend)?;
    Ok(PasskeyRecord {
        id: row.try_get("id").map_err(backend)?,
        user_id: row.try_get("user_id").map_err(backend)?,
        credential_id: row.try_get("credential_id").map_err(backend)?,
        name: row.try_get("name").map_err(backend)?,
        credential: row.try_get("credential").map_err(backend)?,
        counter: u32::try_from(counter)
            .map_err(|_| StoreError::Corrupt("passkey counter".into()))?,
        created_at: row.try_get("created_at").map_err(backend)?,
        last_used_at: row.try_get("last_used_at").map_err(backend)?,
    })
}

#[async_trait]
impl PasskeyStore for PgStore {
    async fn insert_passkey(
        &self,
        passkey: &PasskeyRecord,
        max_per_user: u32,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // The user's row lock orders one user's registrations, so the cap
        // holds.
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
            .bind(&passkey.user_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM passkeys WHERE user_id = $1")
            .bind(&passkey.user_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        if held >= i64::from(max_per_user) {
            return Ok(false);
        }
        let inserted = sqlx::query(&format!(
            "INSERT INTO passkeys ({PASSKEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (credential_id) DO NOTHING"
        ))
        .bind(&passkey.id)
        .bind(&passkey.user_id)
        .bind(&passkey.credential_id)
        .bind(&passkey.name)
        .bind(&passkey.credential)
        .bind(i64::from(passkey.counter))
        .bind(passkey.created_at)
        .bind(passkey.last_used_at)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn passkeys_of(&self, user_id: &str) -> StoreResult<Vec<PasskeyRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY created_at, id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(passkey_from).collect()
    }

    async fn passkey_by_credential_id(
        &self,
        credential_id: &[u8],
    ) -> StoreResult<Option<PasskeyRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = $1"
        ))
        .bind(credential_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(passkey_from).transpose()
    }

    async fn record_passkey_use(
        &self,
        id: &str,
        credential: &str,
        counter: u32,
        now: i64,
    ) -> StoreResult<bool> {
        let changed = sqlx::query(
            "UPDATE passkeys SET credential = $1, counter = $2, last_used_at = $3 \
             WHERE id = $4 AND (counter < $2 OR (counter = 0 AND $2 = 0))",
        )
        .bind(credential)
        .bind(i64::from(counter))
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(changed.rows_affected() == 1)
    }

    async fn delete_passkey(&self, user_id: &str, id: &str) -> StoreResult<bool> {
        let deleted = sqlx::query("DELETE FROM passkeys WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(deleted.rows_affected() == 1)
    }

    async fn insert_ceremony(
        &self,
        ceremony: &WebauthnCeremony,
        max_waiting: u64,
        now: i64,
    ) -> StoreResult<bool> {
        let max_waiting = i64::try_from(max_waiting).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CEREMONY_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let inserted = sqlx::query(
            "INSERT INTO webauthn_challenges (hash, user_id, state, expires_at) \
             SELECT $1, $2, $3, $4 WHERE \
             (SELECT COUNT(*) FROM webauthn_challenges WHERE expires_at >= $5) < $6",
        )
        .bind(ceremony.hash.0.to_vec())
        .bind(&ceremony.user_id)
        .bind(&ceremony.state)
        .bind(ceremony.expires_at)
        .bind(now)
        .bind(max_waiting)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn take_ceremony(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> StoreResult<Option<WebauthnCeremony>> {
        let row = sqlx::query(
            "DELETE FROM webauthn_challenges WHERE hash = $1 RETURNING user_id, state, expires_at",
        )
        .bind(hash.0.to_vec())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let ceremony = WebauthnCeremony {
            hash: *hash,
            user_id: row.try_get("user_id").map_err(backend)?,
            state: row.try_get("state").map_err(backend)?,
            expires_at: row.try_get("expires_at").map_err(backend)?,
        };
        Ok(Some(ceremony).filter(|c| !has_expired(c.expires_at, now)))
    }

    async fn prune_ceremonies(&self, before: i64) -> StoreResult<u64> {
        let deleted = sqlx::query("DELETE FROM webauthn_challenges WHERE expires_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(deleted.rows_affected())
    }
}
