//! Authorization codes and consents ([`latchkey_core::store::CodeStore`]).

use super::*;

#[async_trait]
impl CodeStore for PgStore {
    async fn insert_code(&self, code: &AuthorizationCode) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO authorization_codes (hash, client_id, user_id, redirect_uri, code_challenge, \
             scope, nonce, auth_time, auth_method, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(code.hash.0.to_vec())
        .bind(&code.client_id)
        .bind(&code.user_id)
        .bind(&code.redirect_uri)
        .bind(&code.code_challenge)
        .bind(&code.scope)
        .bind(&code.nonce)
        .bind(code.auth_time)
        .bind(code.auth_method.as_str())
        .bind(code.expires_at)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }
    async fn redeem_code(
        &self,
        hash: &TokenHash,
        session_id: &str,
        now: i64,
    ) -> StoreResult<Redemption> {
        // One statement: the row lock makes every other redemption wait,
        // then find it used.
        let fresh = sqlx::query(
            "UPDATE authorization_codes SET used_at = $1, session_id = $2 \
             WHERE hash = $3 AND used_at IS NULL \
             RETURNING hash, client_id, user_id, redirect_uri, code_challenge, scope, nonce, auth_time, \
             auth_method, expires_at",
        )
        .bind(now)
        .bind(session_id)
        .bind(hash.0.to_vec())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        if let Some(row) = fresh {
            return Ok(Redemption::Fresh(code_from(&row)?));
        }
        let used: Option<Option<String>> =
            sqlx::query_scalar("SELECT session_id FROM authorization_codes WHERE hash = $1")
                .bind(hash.0.to_vec())
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        Ok(match used {
            Some(session_id) => Redemption::Used { session_id },
            None => Redemption::Unknown,
        })
    }
    async fn consent(&self, user_id: &str, client_id: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }
    async fn grant_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO consents (user_id, client_id, scope, granted_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, client_id) DO UPDATE SET scope = $3, granted_at = $4",
        )
        .bind(user_id)
        .bind(client_id)
        .bind(scope)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }
}
