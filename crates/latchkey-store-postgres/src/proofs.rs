//! Single-use proofs (DPoP `jti`s) ([`latchkey_core::store::ProofStore`]).

use super::*;

#[async_trait]
impl ProofStore for PgStore {
    async fn record_proof(&self, id: &str, expires_at: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO dpop_proofs (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
}
