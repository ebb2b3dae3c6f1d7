//! Accounts ([`latchkey_core::store::UserStore`]).

use super::*;

#[async_trait]
impl UserStore for PgStore {
    async fn insert_user(&self, user: &User) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, disabled, created_at, email, email_key, email_verified, admin) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
            .bind(&user.id)
            .bind(&user.username)
            .bind(&user.password_hash)
            .bind(user.disabled)
            .bind(user.created_at)
            .bind(&user.email)
            .bind(user.email.as_deref().map(latchkey_core::account::email_key))
            .bind(user.email_verified)
            .bind(user.admin)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.username = $1 AND u.deleted_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(user_from).transpose()
    }
    async fn names_that_may_need_folding(&self) -> StoreResult<Vec<(String, String)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, username FROM users WHERE deleted_at IS NULL \
             AND username ~ '[A-Z ]|[^\\x01-\\x7f]'",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows)
    }
    async fn rename_user(&self, user_id: &str, username: &str) -> StoreResult<bool> {
        let renamed =
            sqlx::query("UPDATE users SET username = $1 WHERE id = $2 AND deleted_at IS NULL")
                .bind(username)
                .bind(user_id)
                .execute(&self.pool)
                .await
                .map_err(backend);
        match renamed {
            Ok(done) => Ok(done.rows_affected() == 1),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1 AND u.deleted_at IS NULL");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(user_from).transpose()
    }
    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.deleted_at IS NULL ORDER BY u.username"
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(user_from).collect()
    }
    async fn users_page(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.deleted_at IS NULL \
             AND ($1::text IS NULL OR u.id > $1) ORDER BY u.id LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(user_from).collect()
    }
    async fn set_password(&self, user_id: &str, password_hash: &str) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND deleted_at IS NULL")
                .bind(password_hash)
                .bind(user_id)
                .execute(&self.pool)
                .await
                .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
    async fn delete_user(&self, user_id: &str, now: i64) -> StoreResult<Option<Vec<String>>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // Control characters never occur in a username, so the tombstone's
        // name frees the old one and collides with none.
        let done = sqlx::query(
            "UPDATE users SET disabled = TRUE, deleted_at = $1, username = chr(1) || 'deleted ' || id, email = NULL, email_key = NULL, email_verified = FALSE \
             WHERE id = $2 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let revoked = revoke_all_in(&mut tx, user_id, RevocationReason::UserDeleted, now).await?;
        // Its second factors go with it (garbage collection removes the row
        // itself later).
        for table in [
            "totp_factors",
            "recovery_codes",
            "mfa_challenges",
            "passkeys",
            "webauthn_challenges",
            "account_links",
            "known_devices",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(Some(revoked))
    }
    async fn set_admin(&self, user_id: &str, admin: bool) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE users SET admin = $1 WHERE id = $2 AND deleted_at IS NULL")
            .bind(admin)
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
    async fn set_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        now: i64,
    ) -> StoreResult<Option<Vec<String>>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let done =
            sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2 AND deleted_at IS NULL")
                .bind(disabled)
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let revoked = if disabled {
            revoke_all_in(&mut tx, user_id, RevocationReason::UserDisabled, now).await?
        } else {
            Vec::new()
        };
        tx.commit().await.map_err(backend)?;
        Ok(Some(revoked))
    }
}
