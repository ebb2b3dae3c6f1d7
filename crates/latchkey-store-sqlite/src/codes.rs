//! Authorization codes and consents ([`latchkey_core::store::CodeStore`]).

use super::*;

#[async_trait]
impl CodeStore for SqliteStore {
    async fn insert_code(&self, code: &AuthorizationCode) -> StoreResult<()> {
        self.write(|conn| {
            conn.prepare_cached(
                "INSERT INTO authorization_codes (hash, client_id, user_id, redirect_uri, code_challenge, \
                 scope, nonce, auth_time, auth_method, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    &code.hash.0[..],
                    code.client_id,
                    code.user_id,
                    code.redirect_uri,
                    code.code_challenge,
                    code.scope,
                    code.nonce,
                    code.auth_time,
                    code.auth_method.as_str(),
                    code.expires_at,
                ])
            })
            .map_err(backend)?;
            Ok(())
        })
        .await
    }
    async fn redeem_code(
        &self,
        hash: &TokenHash,
        session_id: &str,
        now: i64,
    ) -> StoreResult<Redemption> {
        let hash = hash.0;
        let session_id = session_id.to_owned();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let found = tx
                .prepare_cached(
                    "SELECT hash, client_id, user_id, redirect_uri, code_challenge, scope, nonce, \
                     auth_time, auth_method, expires_at, used_at, session_id FROM authorization_codes \
                     WHERE hash = ?",
                )
                .and_then(|mut s| {
                    s.query_row([&hash[..]], |row| {
                        Ok((
                            code_from(row)?,
                            row.get::<_, Option<i64>>("used_at")?,
                            row.get::<_, Option<String>>("session_id")?,
                        ))
                    })
                    .optional()
                })
                .map_err(backend)?;
            let redemption = match found {
                None => Redemption::Unknown,
                Some((_, Some(_), session_id)) => Redemption::Used { session_id },
                Some((code, None, _)) => {
                    tx.execute(
                        "UPDATE authorization_codes SET used_at = ?, session_id = ? WHERE hash = ?",
                        params![now, session_id, &hash[..]],
                    )
                    .map_err(backend)?;
                    Redemption::Fresh(code)
                }
            };
            tx.commit().map_err(backend)?;
            Ok(redemption)
        })
        .await
    }
    async fn consent(&self, user_id: &str, client_id: &str) -> StoreResult<Option<String>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT scope FROM consents WHERE user_id = ? AND client_id = ?")?
                .query_row([user_id, client_id], |r| r.get(0))
                .optional()
        })
    }
    async fn grant_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        now: i64,
    ) -> StoreResult<()> {
        self.write(|conn| {
            conn.execute(
                "INSERT INTO consents (user_id, client_id, scope, granted_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (user_id, client_id) DO UPDATE SET scope = ?3, granted_at = ?4",
                params![user_id, client_id, scope, now],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }
}
