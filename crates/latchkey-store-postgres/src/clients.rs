//! Clients ([`latchkey_core::store::ClientStore`]).

use super::*;

#[async_trait]
impl ClientStore for PgStore {
    async fn insert_client(&self, client: &Client) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO clients (id, name, secret_hash, scope, created_at, redirect_uris, first_party, \
             backchannel_logout_uri) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&client.id)
        .bind(&client.name)
        .bind(client.secret_hash.map(|h| h.0.to_vec()))
        .bind(&client.scope)
        .bind(client.created_at)
        .bind(client.redirect_uris.join("\n"))
        .bind(client.first_party)
        .bind(&client.backchannel_logout_uri)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }
    async fn client_by_id(&self, id: &str) -> StoreResult<Option<Client>> {
        let row = sqlx::query(
            "SELECT id, name, secret_hash, scope, created_at, redirect_uris, first_party, disabled, \
             tokens_valid_after, backchannel_logout_uri FROM clients WHERE id = $1 AND removed_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(client_from).transpose()
    }
    async fn list_clients(&self) -> StoreResult<Vec<Client>> {
        let rows = sqlx::query(
            "SELECT id, name, secret_hash, scope, created_at, redirect_uris, first_party, disabled, \
             tokens_valid_after, backchannel_logout_uri FROM clients WHERE removed_at IS NULL ORDER BY name, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(client_from).collect()
    }
    async fn update_client(&self, client: &Client) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE clients SET scope = $1, secret_hash = $2, disabled = $3, tokens_valid_after = $4, \
             backchannel_logout_uri = $5 WHERE id = $6 AND removed_at IS NULL",
        )
        .bind(&client.scope)
        .bind(client.secret_hash.as_ref().map(|h| h.0.to_vec()))
        .bind(client.disabled)
        .bind(client.tokens_valid_after)
        .bind(&client.backchannel_logout_uri)
        .bind(&client.id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
    async fn remove_client(&self, id: &str, now: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE clients SET removed_at = $1, disabled = TRUE WHERE id = $2 AND removed_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
}
