//! Second factors ([`latchkey_core::store::FactorStore`]).

use latchkey_core::store::{MfaChallenge, TotpFactor};

use super::*;

fn totp_from(row: &Row<'_>) -> rusqlite::Result<TotpFactor> {
    Ok(TotpFactor {
        id: row.get("id")?,
        user_id: row.get("user_id")?,
        secret: row.get("secret")?,
        created_at: row.get("created_at")?,
        confirmed_at: row.get("confirmed_at")?,
        last_step: row.get("last_step")?,
    })
}

fn challenge_from(row: &Row<'_>) -> rusqlite::Result<MfaChallenge> {
    let hash: Vec<u8> = row.get("hash")?;
    Ok(MfaChallenge {
        hash: TokenHash::from_slice(&hash).ok_or_else(|| corrupt("mfa challenge hash".into()))?,
        user_id: row.get("user_id")?,
        client_id: row.get("client_id")?,
        scope: row.get("scope")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        failures: row.get("failures")?,
    })
}

const CHALLENGE_COLUMNS: &str = "hash, user_id, client_id, scope, created_at, expires_at, failures";

#[async_trait]
impl FactorStore for SqliteStore {
    async fn put_pending_totp(&self, factor: &TotpFactor) -> StoreResult<bool> {
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let confirmed: Option<Option<i64>> = tx
                .query_row(
                    "SELECT confirmed_at FROM totp_factors WHERE user_id = ?",
                    [&factor.user_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            if matches!(confirmed, Some(Some(_))) {
                return Ok(false);
            }
            tx.execute(
                "DELETE FROM totp_factors WHERE user_id = ?",
                [&factor.user_id],
            )
            .map_err(backend)?;
            tx.execute(
                "INSERT INTO totp_factors (id, user_id, secret, created_at, confirmed_at, last_step) \
                 VALUES (?, ?, ?, ?, NULL, ?)",
                params![
                    factor.id,
                    factor.user_id,
                    factor.secret,
                    factor.created_at,
                    factor.last_step
                ],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(true)
        })
        .await
    }

    async fn totp_of(&self, user_id: &str) -> StoreResult<Option<TotpFactor>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT id, user_id, secret, created_at, confirmed_at, last_step \
                 FROM totp_factors WHERE user_id = ?",
            )?
            .query_row([user_id], totp_from)
            .optional()
        })
    }

    async fn confirm_totp(
        &self,
        user_id: &str,
        factor_id: &str,
        step: i64,
        recovery_codes: &[TokenHash],
        now: i64,
    ) -> StoreResult<bool> {
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let confirmed = tx
                .execute(
                    "UPDATE totp_factors SET confirmed_at = ?, last_step = ? \
                     WHERE id = ? AND user_id = ? AND confirmed_at IS NULL",
                    params![now, step, factor_id, user_id],
                )
                .map_err(backend)?;
            if confirmed != 1 {
                return Ok(false);
            }
            tx.execute("DELETE FROM recovery_codes WHERE user_id = ?", [user_id])
                .map_err(backend)?;
            for hash in recovery_codes {
                tx.execute(
                    "INSERT INTO recovery_codes (user_id, hash, used_at) VALUES (?, ?, NULL)",
                    params![user_id, &hash.0[..]],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(true)
        })
        .await
    }

    async fn use_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool> {
        self.write(|conn| {
            let changed = conn
                .execute(
                    "UPDATE totp_factors SET last_step = ? \
                     WHERE user_id = ? AND confirmed_at IS NOT NULL AND last_step < ?",
                    params![step, user_id, step],
                )
                .map_err(backend)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn use_recovery_code(
        &self,
        user_id: &str,
        hash: &TokenHash,
        now: i64,
    ) -> StoreResult<bool> {
        self.write(|conn| {
            let changed = conn
                .execute(
                    "UPDATE recovery_codes SET used_at = ? \
                     WHERE user_id = ? AND hash = ? AND used_at IS NULL",
                    params![now, user_id, &hash.0[..]],
                )
                .map_err(backend)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn recovery_codes_left(&self, user_id: &str) -> StoreResult<u32> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT COUNT(*) FROM recovery_codes WHERE user_id = ? AND used_at IS NULL",
            )?
            .query_row([user_id], |r| r.get(0))
        })
    }

    async fn remove_totp(&self, user_id: &str) -> StoreResult<bool> {
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let removed = tx
                .execute("DELETE FROM totp_factors WHERE user_id = ?", [user_id])
                .map_err(backend)?;
            tx.execute("DELETE FROM recovery_codes WHERE user_id = ?", [user_id])
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(removed == 1)
        })
        .await
    }

    async fn insert_mfa_challenge(&self, challenge: &MfaChallenge) -> StoreResult<()> {
        self.write(|conn| {
            conn.execute(
                &format!(
                    "INSERT INTO mfa_challenges ({CHALLENGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                ),
                params![
                    &challenge.hash.0[..],
                    challenge.user_id,
                    challenge.client_id,
                    challenge.scope,
                    challenge.created_at,
                    challenge.expires_at,
                    challenge.failures
                ],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn mfa_challenge(&self, hash: &TokenHash, now: i64) -> StoreResult<Option<MfaChallenge>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {CHALLENGE_COLUMNS} FROM mfa_challenges WHERE hash = ? AND expires_at >= ?"
            ))?
            .query_row(params![&hash.0[..], now], challenge_from)
            .optional()
        })
    }

    async fn fail_mfa_challenge(&self, hash: &TokenHash, max_failures: i64) -> StoreResult<bool> {
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            tx.execute(
                "UPDATE mfa_challenges SET failures = failures + 1 WHERE hash = ?",
                [&hash.0[..]],
            )
            .map_err(backend)?;
            tx.execute(
                "DELETE FROM mfa_challenges WHERE hash = ? AND failures >= ?",
                params![&hash.0[..], max_failures],
            )
            .map_err(backend)?;
            let alive: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM mfa_challenges WHERE hash = ?)",
                    [&hash.0[..]],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(alive)
        })
        .await
    }

    async fn spend_mfa_challenge(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> StoreResult<Option<MfaChallenge>> {
        self.write(|conn| {
            conn.prepare_cached(&format!(
                "DELETE FROM mfa_challenges WHERE hash = ? AND expires_at >= ? RETURNING {CHALLENGE_COLUMNS}"
            ))
            .and_then(|mut s| s.query_row(params![&hash.0[..], now], challenge_from).optional())
            .map_err(backend)
        })
        .await
    }

    async fn prune_mfa_challenges(&self, before: i64) -> StoreResult<u64> {
        self.write(|conn| {
            let deleted = conn
                .execute("DELETE FROM mfa_challenges WHERE expires_at < ?", [before])
                .map_err(backend)?;
            Ok(deleted as u64)
        })
        .await
    }
}
