//! Clients ([`latchkey_core::store::ClientStore`]).

use super::*;

#[async_trait]
impl ClientStore for SqliteStore {
    async fn insert_client(&self, client: &Client) -> StoreResult<()> {
        self.write(|conn| {
            conn.execute(
                "INSERT INTO clients (id, name, secret_hash, scope, created_at, redirect_uris, first_party, \
                 backchannel_logout_uri) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                params![
                    client.id,
                    client.name,
                    client.secret_hash.as_ref().map(|h| &h.0[..]),
                    client.scope,
                    client.created_at,
                    client.redirect_uris.join("\n"),
                    client.first_party,
                    client.backchannel_logout_uri,
                ],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }
    async fn client_by_id(&self, id: &str) -> StoreResult<Option<Client>> {
        let sql =
            format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE id = ? AND removed_at IS NULL");
        self.read(|conn| {
            conn.prepare_cached(&sql)?
                .query_row([id], client_from)
                .optional()
        })
    }
    async fn list_clients(&self) -> StoreResult<Vec<Client>> {
        let sql = format!(
            "SELECT {CLIENT_COLUMNS} FROM clients WHERE removed_at IS NULL ORDER BY name, id"
        );
        self.read(|conn| conn.prepare(&sql)?.query_map([], client_from)?.collect())
    }
    async fn update_client(&self, client: &Client) -> StoreResult<bool> {
        let secret = client.secret_hash.as_ref().map(|h| h.0.to_vec());
        self.write(|conn| {
            conn.execute(
                "UPDATE clients SET scope = ?, secret_hash = ?, disabled = ?, tokens_valid_after = ?, \
                 backchannel_logout_uri = ? WHERE id = ? AND removed_at IS NULL",
                params![
                    client.scope,
                    secret,
                    client.disabled,
                    client.tokens_valid_after,
                    client.backchannel_logout_uri,
                    client.id
                ],
            )
            .map(|n| n == 1)
            .map_err(backend)
        })
        .await
    }
    async fn remove_client(&self, id: &str, now: i64) -> StoreResult<bool> {
        self.write(|conn| {
            conn.execute(
                "UPDATE clients SET removed_at = ?, disabled = 1 WHERE id = ? AND removed_at IS NULL",
                params![now, id],
            )
            .map(|n| n == 1)
            .map_err(backend)
        })
        .await
    }
}
