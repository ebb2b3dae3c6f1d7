//! Second factors ([`latchkey_core::store::FactorStore`]).

use latchkey_core::store::{MfaChallenge, TotpFactor};

use super::*;

const TOTP_COLUMNS: &str = "id, user_id, secret, created_at, confirmed_at, last_step";
const CHALLENGE_COLUMNS: &str = "hash, user_id, client_id, scope, created_at, expires_at, failures";

fn totp_from(row: &PgRow) -> StoreResult<TotpFactor> {
    Ok(TotpFactor {
        id: row.try_get("id").map_err(backend)?,
        user_id: row.try_get("user_id").map_err(backend)?,
        secret: row.try_get("secret").map_err(backend)?,
        created_at: row.try_get("created_at").map_err(backend)?,
        confirmed_at: row.try_get("confirmed_at").map_err(backend)?,
        last_step: row.try_get("last_step").map_err(backend)?,
    })
}

fn challenge_from(row: &PgRow) -> StoreResult<MfaChallenge> {
    Ok(MfaChallenge {
        hash: hash_of(row, "hash")?,
        user_id: row.try_get("user_id").map_err(backend)?,
        client_id: row.try_get("client_id").map_err(backend)?,
        scope: row.try_get("scope").map_err(backend)?,
        created_at: row.try_get("created_at").map_err(backend)?,
        expires_at: row.try_get("expires_at").map_err(backend)?,
        failures: row.try_get("failures").map_err(backend)?,
    })
}

#[async_trait]
impl FactorStore for PgStore {
    async fn put_pending_totp(&self, factor: &TotpFactor) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // The user's row lock orders set-ups of one user one after another.
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
            .bind(&factor.user_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let confirmed: Option<Option<i64>> =
            sqlx::query_scalar("SELECT confirmed_at FROM totp_factors WHERE user_id = $1")
                .bind(&factor.user_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        if matches!(confirmed, Some(Some(_))) {
            return Ok(false);
        }
        sqlx::query("DELETE FROM totp_factors WHERE user_id = $1")
            .bind(&factor.user_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query(&format!(
            "INSERT INTO totp_factors ({TOTP_COLUMNS}) VALUES ($1, $2, $3, $4, NULL, $5)"
        ))
        .bind(&factor.id)
        .bind(&factor.user_id)
        .bind(&factor.secret)
        .bind(factor.created_at)
        .bind(factor.last_step)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn totp_of(&self, user_id: &str) -> StoreResult<Option<TotpFactor>> {
        let row = sqlx::query(&format!(
            "SELECT {TOTP_COLUMNS} FROM totp_factors WHERE user_id = $1"
        ))
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(totp_from).transpose()
    }

    async fn confirm_totp(
        &self,
        user_id: &str,
        factor_id: &str,
        step: i64,
        recovery_codes: &[TokenHash],
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let confirmed = sqlx::query(
            "UPDATE totp_factors SET confirmed_at = $1, last_step = $2 \
             WHERE id = $3 AND user_id = $4 AND confirmed_at IS NULL",
        )
        .bind(now)
        .bind(step)
        .bind(factor_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if confirmed.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        for hash in recovery_codes {
            sqlx::query(
                "INSERT INTO recovery_codes (user_id, hash, used_at) VALUES ($1, $2, NULL)",
            )
            .bind(user_id)
            .bind(hash.0.to_vec())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn use_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool> {
        let changed = sqlx::query(
            "UPDATE totp_factors SET last_step = $1 \
             WHERE user_id = $2 AND confirmed_at IS NOT NULL AND last_step < $1",
        )
        .bind(step)
        .bind(user_id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(changed.rows_affected() == 1)
    }

    async fn use_recovery_code(
        &self,
        user_id: &str,
        hash: &TokenHash,
        now: i64,
    ) -> StoreResult<bool> {
        let changed = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 \
             WHERE user_id = $2 AND hash = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .bind(hash.0.to_vec())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(changed.rows_affected() == 1)
    }

    async fn recovery_codes_left(&self, user_id: &str) -> StoreResult<u32> {
        let left: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        Ok(u32::try_from(left).unwrap_or(u32::MAX))
    }

    async fn remove_totp(&self, user_id: &str) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let removed = sqlx::query("DELETE FROM totp_factors WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(removed.rows_affected() == 1)
    }

    async fn insert_mfa_challenge(&self, challenge: &MfaChallenge) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO mfa_challenges ({CHALLENGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(challenge.hash.0.to_vec())
        .bind(&challenge.user_id)
        .bind(&challenge.client_id)
        .bind(&challenge.scope)
        .bind(challenge.created_at)
        .bind(challenge.expires_at)
        .bind(challenge.failures)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn mfa_challenge(&self, hash: &TokenHash, now: i64) -> StoreResult<Option<MfaChallenge>> {
        let row = sqlx::query(&format!(
            "SELECT {CHALLENGE_COLUMNS} FROM mfa_challenges WHERE hash = $1 AND expires_at >= $2"
        ))
        .bind(hash.0.to_vec())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(challenge_from).transpose()
    }

    async fn fail_mfa_challenge(&self, hash: &TokenHash, max_failures: i64) -> StoreResult<bool> {
        // One statement: the row lock makes concurrent failures count one
        // after another.
        let failures: Option<i64> = sqlx::query_scalar(
            "UPDATE mfa_challenges SET failures = failures + 1 WHERE hash = $1 RETURNING failures",
        )
        .bind(hash.0.to_vec())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        match failures {
            Some(n) if n < max_failures => Ok(true),
            Some(_) => {
                sqlx::query("DELETE FROM mfa_challenges WHERE hash = $1")
                    .bind(hash.0.to_vec())
                    .execute(&self.pool)
                    .await
                    .map_err(backend)?;
                Ok(false)
            }
            None => Ok(false),
        }
    }

    async fn spend_mfa_challenge(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> StoreResult<Option<MfaChallenge>> {
        let row = sqlx::query(&format!(
            "DELETE FROM mfa_challenges WHERE hash = $1 AND expires_at >= $2 RETURNING {CHALLENGE_COLUMNS}"
        ))
        .bind(hash.0.to_vec())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(challenge_from).transpose()
    }

    async fn prune_mfa_challenges(&self, before: i64) -> StoreResult<u64> {
        let deleted = sqlx::query("DELETE FROM mfa_challenges WHERE expires_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(deleted.rows_affected())
    }
}
