//! Addresses, the links mailed to users and the devices they sign in from
//! ([`latchkey_core::store::AccountStore`]). A link is spent by deleting
//! its row: of spends at once, one deletes it, the others find nothing.

use latchkey_core::account::{
    AccountLink, DEVICE_MEMORY, LinkPurpose, MAX_DEVICES_PER_USER, Sighting, email_key,
};
use latchkey_core::store::{AccountStore, Session};

use super::*;

const LINK_COLUMNS: &str = "hash, purpose, user_id, email, session_id, created_at, expires_at";

fn link_from(row: &PgRow) -> StoreResult<AccountLink> {
    let purpose: String = row.try_get("purpose").map_err(backend)?;
    Ok(AccountLink {
        hash: hash_of(row, "hash")?,
        purpose: LinkPurpose::parse(&purpose)
            .ok_or_else(|| StoreError::Corrupt(format!("link purpose {purpose}")))?,
        user_id: row.try_get("user_id").map_err(backend)?,
        email: row.try_get("email").map_err(backend)?,
        session_id: row.try_get("session_id").map_err(backend)?,
        created_at: row.try_get("created_at").map_err(backend)?,
        expires_at: row.try_get("expires_at").map_err(backend)?,
    })
}

/// Takes (deletes) the live link of `purpose` with this hash.
async fn take_link(
    conn: &mut PgConnection,
    hash: &TokenHash,
    purpose: LinkPurpose,
    now: i64,
) -> StoreResult<Option<AccountLink>> {
    let row = sqlx::query(&format!(
        "DELETE FROM account_links WHERE hash = $1 AND purpose = $2 AND expires_at > $3 RETURNING {LINK_COLUMNS}"
    ))
    .bind(&hash.0[..])
    .bind(purpose.as_str())
    .bind(now)
    .fetch_optional(conn)
    .await
    .map_err(backend)?;
    row.as_ref().map(link_from).transpose()
}

/// Records that the session's user signed in from `sighting.device`, and,
/// if the device is new to them (not seen for [`DEVICE_MEMORY`]) while they
/// have signed in from another before and have a verified address, stores
/// the not-me link and the notice's event. Part of the session's
/// transaction.
pub(crate) async fn sight_device(
    conn: &mut PgConnection,
    session: &Session,
    sighting: &Sighting,
) -> StoreResult<()> {
    let now = session.created_at;
    let since = now - DEVICE_MEMORY;
    let device = &sighting.device.0[..];
    // The last sighting before this one, and this one recorded.
    let seen: Option<i64> = sqlx::query_scalar(
        "WITH before AS (SELECT last_seen_at FROM known_devices WHERE user_id = $1 AND device = $2), \
         up AS (INSERT INTO known_devices (user_id, device, last_seen_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, device) DO UPDATE SET last_seen_at = GREATEST(known_devices.last_seen_at, $3)) \
         SELECT last_seen_at FROM before",
    )
    .bind(&session.user_id)
    .bind(device)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?;
    if seen.is_some_and(|at| at >= since) {
        return Ok(());
    }
    if seen.is_none() {
        sqlx::query(
            "DELETE FROM known_devices WHERE user_id = $1 AND device NOT IN \
             (SELECT device FROM known_devices WHERE user_id = $1 ORDER BY last_seen_at DESC LIMIT $2)",
        )
        .bind(&session.user_id)
        .bind(i64::from(MAX_DEVICES_PER_USER))
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    }
    let others: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM known_devices WHERE user_id = $1 AND device <> $2 AND last_seen_at >= $3)",
    )
    .bind(&session.user_id)
    .bind(device)
    .bind(since)
    .fetch_one(&mut *conn)
    .await
    .map_err(backend)?;
    let Some(notice) = sighting.notice.as_ref().filter(|_| others) else {
        // A user's first device (nothing to compare it with), or no mail.
        return Ok(());
    };
    sqlx::query(
        "WITH link AS (INSERT INTO account_links (hash, purpose, user_id, email, session_id, created_at, expires_at) \
         SELECT $1, 'not_me', id, NULL, $2, $3, $4 FROM users \
         WHERE id = $5 AND email IS NOT NULL AND email_verified AND deleted_at IS NULL RETURNING user_id) \
         INSERT INTO outbox (id, type, at, data) SELECT \
         'msg_' || replace(gen_random_uuid()::text, '-', ''), 'mail.new_device', $3, json_build_object( \
         'user_id', u.id, 'username', u.username, 'email', u.email, 'link', $6::text, 'session_id', $2::text, \
         'ip', $7::text, 'user_agent', $8::text, 'at', $3::bigint)::text FROM link JOIN users u ON u.id = link.user_id",
    )
    .bind(&notice.link_hash.0[..])
    .bind(&session.id)
    .bind(now)
    .bind(notice.link_expires_at)
    .bind(&session.user_id)
    .bind(&notice.link)
    .bind(&session.ip)
    .bind(&session.user_agent)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl AccountStore for PgStore {
    async fn user_by_email(&self, key: &str) -> StoreResult<Option<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.email_key = $1 AND u.deleted_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn set_email(&self, user_id: &str, email: Option<&str>) -> StoreResult<bool> {
        let key = email.map(email_key);
        let done = sqlx::query(
            "UPDATE users SET email = $1, email_key = $2, \
             email_verified = CASE WHEN email_key IS NOT DISTINCT FROM $2 THEN email_verified ELSE FALSE END \
             WHERE id = $3 AND deleted_at IS NULL",
        )
        .bind(email)
        .bind(key)
        .bind(user_id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_link(&self, link: &AccountLink, event_data: &str) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // The user's row is locked, so links of one purpose are replaced
        // one request at a time: the newest wins.
        let alive: Option<String> = sqlx::query_scalar(
            "SELECT id FROM users WHERE id = $1 AND deleted_at IS NULL \
             AND ($2::text IS NULL OR email_key = $2) FOR UPDATE",
        )
        .bind(&link.user_id)
        .bind(link.email.as_deref().map(email_key))
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        if alive.is_none() {
            return Ok(false);
        }
        sqlx::query("DELETE FROM account_links WHERE user_id = $1 AND purpose = $2")
            .bind(&link.user_id)
            .bind(link.purpose.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query(
            "INSERT INTO account_links (hash, purpose, user_id, email, session_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&link.hash.0[..])
        .bind(link.purpose.as_str())
        .bind(&link.user_id)
        .bind(&link.email)
        .bind(&link.session_id)
        .bind(link.created_at)
        .bind(link.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query(
            "INSERT INTO outbox (id, type, at, data) VALUES \
             ('msg_' || replace(gen_random_uuid()::text, '-', ''), $1, $2, $3)",
        )
        .bind(link.purpose.event_type())
        .bind(link.created_at)
        .bind(event_data)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn link(&self, hash: &TokenHash, now: i64) -> StoreResult<Option<AccountLink>> {
        let row = sqlx::query(&format!(
            "SELECT {LINK_COLUMNS} FROM account_links WHERE hash = $1 AND expires_at > $2"
        ))
        .bind(&hash.0[..])
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(link_from).transpose()
    }

    async fn verify_email(&self, hash: &TokenHash, now: i64) -> StoreResult<Option<String>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let Some(link) = take_link(&mut tx, hash, LinkPurpose::VerifyEmail, now).await? else {
            return Ok(None);
        };
        let done = sqlx::query(
            "UPDATE users SET email_verified = TRUE WHERE id = $1 AND email_key = $2 AND deleted_at IS NULL",
        )
        .bind(&link.user_id)
        .bind(link.email.as_deref().map(email_key))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok((done.rows_affected() == 1).then_some(link.user_id))
    }

    async fn reset_password(
        &self,
        hash: &TokenHash,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<Option<(String, Vec<String>)>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let Some(link) = take_link(&mut tx, hash, LinkPurpose::ResetPassword, now).await? else {
            return Ok(None);
        };
        let done =
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND deleted_at IS NULL")
                .bind(password_hash)
                .bind(&link.user_id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let revoked =
            revoke_all_in(&mut tx, &link.user_id, RevocationReason::PasswordReset, now).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some((link.user_id, revoked)))
    }

    async fn change_password(
        &self,
        user_id: &str,
        password_hash: &str,
        keep: Option<&str>,
        now: i64,
    ) -> StoreResult<Option<Vec<String>>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let done =
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND deleted_at IS NULL")
                .bind(password_hash)
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let revoked: Vec<String> = sqlx::query_scalar(
            "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
             WHERE user_id = $3 AND revoked_at IS NULL AND id IS DISTINCT FROM $4 RETURNING id",
        )
        .bind(now)
        .bind(RevocationReason::PasswordChanged.as_str())
        .bind(user_id)
        .bind(keep)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(revoked))
    }

    async fn not_me(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> StoreResult<Option<(String, String, bool)>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let Some(link) = take_link(&mut tx, hash, LinkPurpose::NotMe, now).await? else {
            return Ok(None);
        };
        let session_id = link.session_id.unwrap_or_default();
        let revoked = revoke(&mut tx, &session_id, RevocationReason::NotMe, now).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some((link.user_id, session_id, revoked)))
    }

    async fn known_device(
        &self,
        username: &str,
        device: &TokenHash,
        since: i64,
    ) -> StoreResult<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM known_devices d JOIN users u ON u.id = d.user_id \
             WHERE u.username = $1 AND u.deleted_at IS NULL AND d.device = $2 AND d.last_seen_at >= $3)",
        )
        .bind(username)
        .bind(&device.0[..])
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)
    }

    async fn prune_accounts(&self, now: i64, devices_before: i64) -> StoreResult<u64> {
        let links = sqlx::query("DELETE FROM account_links WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        let devices = sqlx::query("DELETE FROM known_devices WHERE last_seen_at < $1")
            .bind(devices_before)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(links.rows_affected() + devices.rows_affected())
    }
}
