//! Signing keys and the server's own secrets ([`latchkey_core::store::KeyStore`]).

use super::*;

#[async_trait]
impl KeyStore for SqliteStore {
    async fn signing_keys(&self) -> StoreResult<Vec<StoredKey>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT kid, alg, private_blob, public_jwk, created_at, activates_at, retires_at \
                 FROM signing_keys ORDER BY activates_at, created_at, kid",
            )?
            .query_map([], key_from)?
            .collect()
        })
    }
    async fn add_signing_key(
        &self,
        key: &StoredKey,
        retire_others_at: Option<i64>,
    ) -> StoreResult<()> {
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            if let Some(at) = retire_others_at {
                tx.execute(
                    "UPDATE signing_keys SET retires_at = ? WHERE retires_at IS NULL AND activates_at <= ?",
                    params![at, key.activates_at],
                )
                .map_err(backend)?;
            }
            tx.execute(
                "INSERT INTO signing_keys (kid, alg, private_blob, public_jwk, created_at, activates_at, retires_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
                params![
                    key.kid,
                    key.alg,
                    key.private_blob,
                    key.public_jwk,
                    key.created_at,
                    key.activates_at,
                    key.retires_at,
                ],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }
    async fn secret_or_insert(&self, name: &str, candidate: &[u8]) -> StoreResult<Vec<u8>> {
        self.write(|conn| {
            conn.execute(
                "INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                params![name, candidate],
            )
            .map_err(backend)?;
            conn.query_row("SELECT value FROM secrets WHERE name = ?", [name], |r| {
                r.get(0)
            })
            .map_err(backend)
        })
        .await
    }
    async fn replace_key_blob(&self, kid: &str, private_blob: &[u8]) -> StoreResult<bool> {
        self.write(|conn| {
            conn.execute(
                "UPDATE signing_keys SET private_blob = ? WHERE kid = ?",
                params![private_blob, kid],
            )
            .map(|n| n == 1)
            .map_err(backend)
        })
        .await
    }
    async fn replace_secret(&self, name: &str, value: &[u8]) -> StoreResult<bool> {
        self.write(|conn| {
            conn.execute(
                "UPDATE secrets SET value = ? WHERE name = ?",
                params![value, name],
            )
            .map(|n| n == 1)
            .map_err(backend)
        })
        .await
    }
}
