//! Passkeys and WebAuthn ceremonies ([`latchkey_core::store::PasskeyStore`]).

use latchkey_core::records::has_expired;
use latchkey_core::store::{PasskeyRecord, WebauthnCeremony};

use super::*;

const PASSKEY_COLUMNS: &str =
    "id, user_id, credential_id, name, credential, counter, created_at, last_used_at";

fn passkey_from(row: &Row<'_>) -> rusqlite::Result<PasskeyRecord> {
    let counter: i64 = row.get("counter")?;
    Ok(PasskeyRecord {
        id: row.get("id")?,
        user_id: row.get("user_id")?,
        credential_id: row.get("credential_id")?,
        name: row.get("name")?,
        credential: row.get("credential")?,
        counter: u32::try_from(counter).map_err(|_| corrupt("passkey counter".into()))?,
        created_at: row.get("created_at")?,
        last_used_at: row.get("last_used_at")?,
    })
}

#[async_trait]
impl PasskeyStore for SqliteStore {
    async fn insert_passkey(
        &self,
        passkey: &PasskeyRecord,
        max_per_user: u32,
    ) -> StoreResult<bool> {
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let (held, taken): (i64, i64) = tx
                .query_row(
                    "SELECT (SELECT COUNT(*) FROM passkeys WHERE user_id = ?1), \
                     (SELECT COUNT(*) FROM passkeys WHERE credential_id = ?2)",
                    params![passkey.user_id, passkey.credential_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(backend)?;
            if held >= i64::from(max_per_user) || taken > 0 {
                return Ok(false);
            }
            tx.execute(
                &format!(
                    "INSERT INTO passkeys ({PASSKEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                params![
                    passkey.id,
                    passkey.user_id,
                    passkey.credential_id,
                    passkey.name,
                    passkey.credential,
                    i64::from(passkey.counter),
                    passkey.created_at,
                    passkey.last_used_at
                ],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(true)
        })
        .await
    }

    async fn passkeys_of(&self, user_id: &str) -> StoreResult<Vec<PasskeyRecord>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE user_id = ? ORDER BY created_at, id"
            ))?
            .query_map([user_id], passkey_from)?
            .collect()
        })
    }

    async fn passkey_by_credential_id(
        &self,
        credential_id: &[u8],
    ) -> StoreResult<Option<PasskeyRecord>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = ?"
            ))?
            .query_row([credential_id], passkey_from)
            .optional()
        })
    }

    async fn record_passkey_use(
        &self,
        id: &str,
        credential: &str,
        counter: u32,
        now: i64,
    ) -> StoreResult<bool> {
        self.write(|conn| {
            let changed = conn
                .execute(
                    "UPDATE passkeys SET credential = ?1, counter = ?2, last_used_at = ?3 \
                     WHERE id = ?4 AND (counter < ?2 OR (counter = 0 AND ?2 = 0))",
                    params![credential, i64::from(counter), now, id],
                )
                .map_err(backend)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn delete_passkey(&self, user_id: &str, id: &str) -> StoreResult<bool> {
        self.write(|conn| {
            let deleted = conn
                .execute(
                    "DELETE FROM passkeys WHERE id = ? AND user_id = ?",
                    [id, user_id],
                )
                .map_err(backend)?;
            Ok(deleted == 1)
        })
        .await
    }

    async fn insert_ceremony(
        &self,
        ceremony: &WebauthnCeremony,
        max_waiting: u64,
        now: i64,
    ) -> StoreResult<bool> {
        let max_waiting = i64::try_from(max_waiting).unwrap_or(i64::MAX);
        self.write(|conn| {
            let inserted = conn
                .execute(
                    "INSERT INTO webauthn_challenges (hash, user_id, state, expires_at) \
                     SELECT ?1, ?2, ?3, ?4 WHERE \
                     (SELECT COUNT(*) FROM webauthn_challenges WHERE expires_at >= ?5) < ?6",
                    params![
                        &ceremony.hash.0[..],
                        ceremony.user_id,
                        ceremony.state,
                        ceremony.expires_at,
                        now,
                        max_waiting
                    ],
                )
                .map_err(backend)?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn take_ceremony(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> StoreResult<Option<WebauthnCeremony>> {
        let hash = *hash;
        self.write(move |conn| {
            conn.prepare_cached(
                "DELETE FROM webauthn_challenges WHERE hash = ? \
                 RETURNING user_id, state, expires_at",
            )
            .and_then(|mut s| {
                s.query_row([&hash.0[..]], |row| {
                    Ok(WebauthnCeremony {
                        hash,
                        user_id: row.get("user_id")?,
                        state: row.get("state")?,
                        expires_at: row.get("expires_at")?,
                    })
                })
                .optional()
            })
            .map(|found| found.filter(|c| !has_expired(c.expires_at, now)))
            .map_err(backend)
        })
        .await
    }

    async fn prune_ceremonies(&self, before: i64) -> StoreResult<u64> {
        self.write(|conn| {
            let deleted = conn
                .execute(
                    "DELETE FROM webauthn_challenges WHERE expires_at < ?",
                    [before],
                )
                .map_err(backend)?;
            Ok(deleted as u64)
        })
        .await
    }
}
