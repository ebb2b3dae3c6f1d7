//! Single-use proofs (DPoP `jti`s) ([`latchkey_core::store::ProofStore`]).

use super::*;

#[async_trait]
impl ProofStore for SqliteStore {
    async fn record_proof(&self, id: &str, expires_at: i64) -> StoreResult<bool> {
        self.write(|conn| {
            conn.prepare_cached(
                "INSERT INTO dpop_proofs (id, expires_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![id, expires_at]))
            .map(|n| n == 1)
            .map_err(backend)
        })
        .await
    }
}
