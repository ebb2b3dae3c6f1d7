//! Signing keys and the server's own secrets ([`latchkey_core::store::KeyStore`]).

use super::*;

#[async_trait]
impl KeyStore for PgStore {
    async fn signing_keys(&self) -> StoreResult<Vec<StoredKey>> {
        let rows = sqlx::query(
            "SELECT kid, alg, private_blob, public_jwk, created_at, activates_at, retires_at \
             FROM signing_keys ORDER BY activates_at, created_at, kid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(StoredKey {
                    kid: r.try_get("kid").map_err(backend)?,
                    alg: r.try_get("alg").map_err(backend)?,
                    private_blob: r.try_get("private_blob").map_err(backend)?,
                    public_jwk: r.try_get("public_jwk").map_err(backend)?,
                    created_at: r.try_get("created_at").map_err(backend)?,
                    activates_at: r.try_get("activates_at").map_err(backend)?,
                    retires_at: r.try_get("retires_at").map_err(backend)?,
                })
            })
            .collect()
    }
    async fn add_signing_key(
        &self,
        key: &StoredKey,
        retire_others_at: Option<i64>,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        if let Some(at) = retire_others_at {
            sqlx::query(
                "UPDATE signing_keys SET retires_at = $1 WHERE retires_at IS NULL AND activates_at <= $2",
            )
            .bind(at)
            .bind(key.activates_at)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_blob, public_jwk, created_at, activates_at, retires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.private_blob)
        .bind(&key.public_jwk)
        .bind(key.created_at)
        .bind(key.activates_at)
        .bind(key.retires_at)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(())
    }
    async fn secret_or_insert(&self, name: &str, candidate: &[u8]) -> StoreResult<Vec<u8>> {
        sqlx::query(
            "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(candidate)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        sqlx::query_scalar("SELECT value FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)
    }
    async fn replace_key_blob(&self, kid: &str, private_blob: &[u8]) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE signing_keys SET private_blob = $1 WHERE kid = $2")
            .bind(private_blob)
            .bind(kid)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
    async fn replace_secret(&self, name: &str, value: &[u8]) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE secrets SET value = $1 WHERE name = $2")
            .bind(value)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
}
