//! Addresses, the links mailed to users and the devices they sign in from
//! ([`latchkey_core::store::AccountStore`]). Links are deleted when spent,
//! under the write lock, so of spends at once one finds the link.

use latchkey_core::account::{AccountLink, LinkPurpose, MAX_DEVICES_PER_USER, Sighting, email_key};
use latchkey_core::store::AccountStore;

use super::*;

fn link_from(row: &Row<'_>) -> rusqlite::Result<AccountLink> {
    let hash: Vec<u8> = row.get("hash")?;
    let purpose: String = row.get("purpose")?;
    Ok(AccountLink {
        hash: TokenHash::from_slice(&hash).ok_or_else(|| corrupt("link hash".into()))?,
        purpose: LinkPurpose::parse(&purpose)
            .ok_or_else(|| corrupt(format!("link purpose {purpose}")))?,
        user_id: row.get("user_id")?,
        email: row.get("email")?,
        session_id: row.get("session_id")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
    })
}

const LINK_COLUMNS: &str = "hash, purpose, user_id, email, session_id, created_at, expires_at";

/// Takes (deletes) the live link of `purpose` with this hash.
fn take_link(
    conn: &Connection,
    hash: &TokenHash,
    purpose: LinkPurpose,
    now: i64,
) -> rusqlite::Result<Option<AccountLink>> {
    conn.prepare_cached(&format!(
        "DELETE FROM account_links WHERE hash = ? AND purpose = ? AND expires_at > ? RETURNING {LINK_COLUMNS}"
    ))?
    .query_row(params![&hash.0[..], purpose.as_str(), now], link_from)
    .optional()
}

fn insert_link_row(conn: &Connection, link: &AccountLink) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO account_links (hash, purpose, user_id, email, session_id, created_at, expires_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        &link.hash.0[..],
        link.purpose.as_str(),
        link.user_id,
        link.email,
        link.session_id,
        link.created_at,
        link.expires_at
    ])?;
    Ok(())
}

/// Records that the session's user signed in from `sighting.device`, and,
/// if the device is new to them (not seen for [`DEVICE_MEMORY`]) while they
/// have signed in from another before and have a verified address, stores
/// the not-me link and the notice's event. Part of the session's
/// transaction.
///
/// [`DEVICE_MEMORY`]: latchkey_core::account::DEVICE_MEMORY
pub(crate) fn sight_device(
    conn: &Connection,
    session: &latchkey_core::store::Session,
    sighting: &Sighting,
) -> rusqlite::Result<()> {
    let now = session.created_at;
    let since = now - latchkey_core::account::DEVICE_MEMORY;
    let seen: Option<i64> = conn
        .prepare_cached("SELECT last_seen_at FROM known_devices WHERE user_id = ? AND device = ?")?
        .query_row(params![session.user_id, &sighting.device.0[..]], |r| {
            r.get(0)
        })
        .optional()?;
    let known = seen.is_some_and(|at| at >= since);
    if seen.is_some() {
        conn.prepare_cached(
            "UPDATE known_devices SET last_seen_at = max(last_seen_at, ?) WHERE user_id = ? AND device = ?",
        )?
        .execute(params![now, session.user_id, &sighting.device.0[..]])?;
    }
    if known {
        return Ok(());
    }
    let others: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM known_devices WHERE user_id = ? AND device <> ? AND last_seen_at >= ?)",
        )?
        .query_row(
            params![session.user_id, &sighting.device.0[..], since],
            |r| r.get(0),
        )?;
    if seen.is_none() {
        conn.prepare_cached(
            "INSERT INTO known_devices (user_id, device, last_seen_at) VALUES (?, ?, ?)",
        )?
        .execute(params![session.user_id, &sighting.device.0[..], now])?;
        // The least recently seen beyond the cap go.
        conn.prepare_cached(
            "DELETE FROM known_devices WHERE user_id = ?1 AND device NOT IN \
             (SELECT device FROM known_devices WHERE user_id = ?1 ORDER BY last_seen_at DESC LIMIT ?2)",
        )?
        .execute(params![session.user_id, MAX_DEVICES_PER_USER])?;
    }
    let Some(notice) = sighting.notice.as_ref().filter(|_| others) else {
        // A user's first device (nothing to compare it with), or no mail.
        return Ok(());
    };
    let inserted = conn
        .prepare_cached(
            "INSERT INTO account_links (hash, purpose, user_id, email, session_id, created_at, expires_at) \
             SELECT ?1, 'not_me', id, NULL, ?2, ?3, ?4 FROM users \
             WHERE id = ?5 AND email IS NOT NULL AND email_verified AND deleted_at IS NULL",
        )?
        .execute(params![
            &notice.link_hash.0[..],
            session.id,
            now,
            notice.link_expires_at,
            session.user_id
        ])?;
    if inserted == 1 {
        conn.prepare_cached(
            "INSERT INTO outbox (id, type, at, data) SELECT \
             'msg_' || lower(hex(randomblob(16))), 'mail.new_device', ?1, \
             json_object('user_id', id, 'username', username, 'email', email, 'link', ?2, \
             'session_id', ?3, 'ip', ?4, 'user_agent', ?5, 'at', ?1) FROM users WHERE id = ?6",
        )?
        .execute(params![
            now,
            notice.link,
            session.id,
            session.ip,
            session.user_agent,
            session.user_id
        ])?;
    }
    Ok(())
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn user_by_email(&self, key: &str) -> StoreResult<Option<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.email_key = ? AND u.deleted_at IS NULL"
        );
        self.read(|conn| {
            conn.prepare_cached(&sql)?
                .query_row([key], user_from)
                .optional()
        })
    }

    async fn set_email(&self, user_id: &str, email: Option<&str>) -> StoreResult<bool> {
        let key = email.map(email_key);
        self.write(|conn| {
            let done = conn
                .execute(
                    "UPDATE users SET email = ?, email_key = ?, \
                     email_verified = CASE WHEN email_key IS ? THEN email_verified ELSE 0 END \
                     WHERE id = ? AND deleted_at IS NULL",
                    params![email, key, key, user_id],
                )
                .map_err(backend)?;
            Ok(done == 1)
        })
        .await
    }

    async fn insert_link(&self, link: &AccountLink, event_data: &str) -> StoreResult<bool> {
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let alive: bool = tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1 AND deleted_at IS NULL \
                     AND (?2 IS NULL OR email_key = ?2))",
                )
                .and_then(|mut s| {
                    s.query_row(
                        params![link.user_id, link.email.as_deref().map(email_key)],
                        |r| r.get(0),
                    )
                })
                .map_err(backend)?;
            if !alive {
                return Ok(false);
            }
            tx.prepare_cached("DELETE FROM account_links WHERE user_id = ? AND purpose = ?")
                .and_then(|mut s| s.execute(params![link.user_id, link.purpose.as_str()]))
                .map_err(backend)?;
            insert_link_row(&tx, link).map_err(backend)?;
            tx.prepare_cached(
                "INSERT INTO outbox (id, type, at, data) VALUES ('msg_' || lower(hex(randomblob(16))), ?, ?, ?)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    link.purpose.event_type(),
                    link.created_at,
                    event_data
                ])
            })
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(true)
        })
        .await
    }

    async fn link(&self, hash: &TokenHash, now: i64) -> StoreResult<Option<AccountLink>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {LINK_COLUMNS} FROM account_links WHERE hash = ? AND expires_at > ?"
            ))?
            .query_row(params![&hash.0[..], now], link_from)
            .optional()
        })
    }

    async fn verify_email(&self, hash: &TokenHash, now: i64) -> StoreResult<Option<String>> {
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let Some(link) = take_link(&tx, hash, LinkPurpose::VerifyEmail, now).map_err(backend)?
            else {
                return Ok(None);
            };
            let key = link.email.as_deref().map(email_key);
            let done = tx
                .execute(
                    "UPDATE users SET email_verified = 1 WHERE id = ? AND email_key = ? AND deleted_at IS NULL",
                    params![link.user_id, key],
                )
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok((done == 1).then_some(link.user_id))
        })
        .await
    }

    async fn reset_password(
        &self,
        hash: &TokenHash,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<Option<(String, Vec<String>)>> {
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let Some(link) =
                take_link(&tx, hash, LinkPurpose::ResetPassword, now).map_err(backend)?
            else {
                return Ok(None);
            };
            let done = tx
                .execute(
                    "UPDATE users SET password_hash = ? WHERE id = ? AND deleted_at IS NULL",
                    params![password_hash, link.user_id],
                )
                .map_err(backend)?;
            if done != 1 {
                return Ok(None);
            }
            let revoked = revoke_all(&tx, &link.user_id, RevocationReason::PasswordReset, now)
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(Some((link.user_id, revoked)))
        })
        .await
    }

    async fn change_password(
        &self,
        user_id: &str,
        password_hash: &str,
        keep: Option<&str>,
        now: i64,
    ) -> StoreResult<Option<Vec<String>>> {
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let done = tx
                .execute(
                    "UPDATE users SET password_hash = ? WHERE id = ? AND deleted_at IS NULL",
                    params![password_hash, user_id],
                )
                .map_err(backend)?;
            if done != 1 {
                return Ok(None);
            }
            let revoked: Vec<String> = tx
                .prepare_cached(
                    "UPDATE sessions SET revoked_at = ?, revoked_reason = ? \
                     WHERE user_id = ? AND revoked_at IS NULL AND id IS NOT ? RETURNING id",
                )
                .and_then(|mut s| {
                    s.query_map(
                        params![
                            now,
                            RevocationReason::PasswordChanged.as_str(),
                            user_id,
                            keep
                        ],
                        |r| r.get(0),
                    )?
                    .collect()
                })
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(Some(revoked))
        })
        .await
    }

    async fn not_me(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> StoreResult<Option<(String, String, bool)>> {
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let Some(link) = take_link(&tx, hash, LinkPurpose::NotMe, now).map_err(backend)? else {
                return Ok(None);
            };
            let session_id = link.session_id.unwrap_or_default();
            let revoked =
                revoke(&tx, &session_id, RevocationReason::NotMe, now).map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(Some((link.user_id, session_id, revoked)))
        })
        .await
    }

    async fn known_device(
        &self,
        username: &str,
        device: &TokenHash,
        since: i64,
    ) -> StoreResult<bool> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM known_devices d JOIN users u ON u.id = d.user_id \
                 WHERE u.username = ? AND u.deleted_at IS NULL AND d.device = ? AND d.last_seen_at >= ?)",
            )?
            .query_row(params![username, &device.0[..], since], |r| r.get(0))
        })
    }

    async fn prune_accounts(&self, now: i64, devices_before: i64) -> StoreResult<u64> {
        self.write(|conn| {
            let links = conn
                .execute("DELETE FROM account_links WHERE expires_at <= ?", [now])
                .map_err(backend)?;
            let devices = conn
                .execute(
                    "DELETE FROM known_devices WHERE last_seen_at < ?",
                    [devices_before],
                )
                .map_err(backend)?;
            Ok((links + devices) as u64)
        })
        .await
    }
}
