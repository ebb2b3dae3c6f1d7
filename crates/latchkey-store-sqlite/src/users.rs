//! Accounts ([`latchkey_core::store::UserStore`]).

use super::*;

#[async_trait]
impl UserStore for SqliteStore {
    async fn insert_user(&self, user: &User) -> StoreResult<()> {
        self.write(|conn| {
            conn.execute(
                "INSERT INTO users (id, username, password_hash, disabled, created_at, email, email_key, email_verified, admin) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params![
                    user.id,
                    user.username,
                    user.password_hash,
                    user.disabled,
                    user.created_at,
                    user.email,
                    user.email.as_deref().map(latchkey_core::account::email_key),
                    user.email_verified,
                    user.admin
                ],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.username = ? AND u.deleted_at IS NULL"
        );
        self.read(|conn| {
            conn.prepare_cached(&sql)?
                .query_row([username], user_from)
                .optional()
        })
    }
    async fn names_that_may_need_folding(&self) -> StoreResult<Vec<(String, String)>> {
        // Capitals, spaces, or characters beyond ASCII (a name longer in
        // bytes than in characters).
        self.read(|conn| {
            conn.prepare(
                "SELECT id, username FROM users WHERE deleted_at IS NULL \
                 AND (username GLOB '*[A-Z ]*' OR length(CAST(username AS BLOB)) <> length(username))",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
        })
    }
    async fn rename_user(&self, user_id: &str, username: &str) -> StoreResult<bool> {
        let renamed = self
            .write(|conn| {
                conn.execute(
                    "UPDATE users SET username = ? WHERE id = ? AND deleted_at IS NULL",
                    params![username, user_id],
                )
                .map_err(backend)
            })
            .await;
        match renamed {
            Ok(n) => Ok(n == 1),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = ? AND u.deleted_at IS NULL");
        self.read(|conn| {
            conn.prepare_cached(&sql)?
                .query_row([id], user_from)
                .optional()
        })
    }
    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.deleted_at IS NULL ORDER BY u.username"
        );
        self.read(|conn| conn.prepare(&sql)?.query_map([], user_from)?.collect())
    }
    async fn users_page(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.deleted_at IS NULL \
             AND (?1 IS NULL OR u.id > ?1) ORDER BY u.id LIMIT ?2"
        );
        self.read(|conn| {
            conn.prepare_cached(&sql)?
                .query_map(params![after, i64::from(limit)], user_from)?
                .collect()
        })
    }
    async fn set_password(&self, user_id: &str, password_hash: &str) -> StoreResult<bool> {
        self.write(|conn| {
            let done = conn
                .execute(
                    "UPDATE users SET password_hash = ? WHERE id = ? AND deleted_at IS NULL",
                    params![password_hash, user_id],
                )
                .map_err(backend)?;
            Ok(done == 1)
        })
        .await
    }
    async fn delete_user(&self, user_id: &str, now: i64) -> StoreResult<Option<Vec<String>>> {
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            // Control characters never occur in a username, so the
            // tombstone's name frees the old one and collides with none.
            let done = tx
                .execute(
                    "UPDATE users SET disabled = 1, deleted_at = ?1, username = char(1) || 'deleted ' || id, \
                     email = NULL, email_key = NULL, email_verified = 0 \
                     WHERE id = ?2 AND deleted_at IS NULL",
                    params![now, user_id],
                )
                .map_err(backend)?;
            if done != 1 {
                return Ok(None);
            }
            let revoked =
                revoke_all(&tx, user_id, RevocationReason::UserDeleted, now).map_err(backend)?;
            // Its second factors go with it (garbage collection removes the
            // row itself later).
            for table in [
                "totp_factors",
                "recovery_codes",
                "mfa_challenges",
                "passkeys",
                "webauthn_challenges",
                "account_links",
                "known_devices",
            ] {
                tx.execute(&format!("DELETE FROM {table} WHERE user_id = ?"), [user_id])
                    .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(Some(revoked))
        })
        .await
    }
    async fn set_admin(&self, user_id: &str, admin: bool) -> StoreResult<bool> {
        self.write(|conn| {
            let done = conn
                .execute(
                    "UPDATE users SET admin = ? WHERE id = ? AND deleted_at IS NULL",
                    params![admin, user_id],
                )
                .map_err(backend)?;
            Ok(done == 1)
        })
        .await
    }
    async fn set_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        now: i64,
    ) -> StoreResult<Option<Vec<String>>> {
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let done = tx
                .execute(
                    "UPDATE users SET disabled = ? WHERE id = ? AND deleted_at IS NULL",
                    params![disabled, user_id],
                )
                .map_err(backend)?;
            if done != 1 {
                return Ok(None);
            }
            let revoked = if disabled {
                revoke_all(&tx, user_id, RevocationReason::UserDisabled, now).map_err(backend)?
            } else {
                Vec::new()
            };
            tx.commit().map_err(backend)?;
            Ok(Some(revoked))
        })
        .await
    }
}
