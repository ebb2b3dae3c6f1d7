//! The columns of each table as this backend reads them, the readers that
//! turn a row into a record, and the writes several roles share.

use super::*;

pub(crate) const USER_COLUMNS: &str = "u.id AS u_id, u.username, u.password_hash, u.disabled, u.created_at AS u_created_at, u.email, u.email_verified, u.admin";

pub(crate) fn hash_of(row: &PgRow, column: &str) -> StoreResult<TokenHash> {
    let bytes: Vec<u8> = row.try_get(column).map_err(backend)?;
    TokenHash::from_slice(&bytes)
        .ok_or_else(|| StoreError::Corrupt(format!("{column} is not 32 bytes")))
}

pub(crate) fn user_from(row: &PgRow) -> StoreResult<User> {
    Ok(User {
        id: row.try_get("u_id").map_err(backend)?,
        username: row.try_get("username").map_err(backend)?,
        password_hash: row.try_get("password_hash").map_err(backend)?,
        disabled: row.try_get("disabled").map_err(backend)?,
        created_at: row.try_get("u_created_at").map_err(backend)?,
        email: row.try_get("email").map_err(backend)?,
        email_verified: row.try_get("email_verified").map_err(backend)?,
        admin: row.try_get("admin").map_err(backend)?,
    })
}

pub(crate) fn client_from(row: &PgRow) -> StoreResult<Client> {
    let secret: Option<Vec<u8>> = row.try_get("secret_hash").map_err(backend)?;
    Ok(Client {
        id: row.try_get("id").map_err(backend)?,
        name: row.try_get("name").map_err(backend)?,
        secret_hash: match secret {
            Some(bytes) => Some(
                TokenHash::from_slice(&bytes)
                    .ok_or_else(|| StoreError::Corrupt("client secret hash".into()))?,
            ),
            None => None,
        },
        scope: row.try_get("scope").map_err(backend)?,
        created_at: row.try_get("created_at").map_err(backend)?,
        redirect_uris: row
            .try_get::<String, _>("redirect_uris")
            .map_err(backend)?
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        first_party: row.try_get("first_party").map_err(backend)?,
        disabled: row.try_get("disabled").map_err(backend)?,
        tokens_valid_after: row.try_get("tokens_valid_after").map_err(backend)?,
        backchannel_logout_uri: row.try_get("backchannel_logout_uri").map_err(backend)?,
    })
}

pub(crate) fn code_from(row: &PgRow) -> StoreResult<AuthorizationCode> {
    let hash: Vec<u8> = row.try_get("hash").map_err(backend)?;
    Ok(AuthorizationCode {
        hash: TokenHash::from_slice(&hash)
            .ok_or_else(|| StoreError::Corrupt("code hash".into()))?,
        client_id: row.try_get("client_id").map_err(backend)?,
        user_id: row.try_get("user_id").map_err(backend)?,
        redirect_uri: row.try_get("redirect_uri").map_err(backend)?,
        code_challenge: row.try_get("code_challenge").map_err(backend)?,
        scope: row.try_get("scope").map_err(backend)?,
        nonce: row.try_get("nonce").map_err(backend)?,
        auth_time: row.try_get("auth_time").map_err(backend)?,
        auth_method: method_from(row, "auth_method")?,
        expires_at: row.try_get("expires_at").map_err(backend)?,
    })
}

/// A sign-in's method; an unknown name (which no version wrote) reads as
/// the weakest, a password, so that it never grants more.
pub(crate) fn method_from(row: &PgRow, column: &str) -> StoreResult<AuthMethod> {
    let name: String = row.try_get(column).map_err(backend)?;
    Ok(AuthMethod::parse(&name).unwrap_or_default())
}

pub(crate) fn session_from(row: &PgRow) -> StoreResult<Session> {
    Ok(Session {
        id: row.try_get("id").map_err(backend)?,
        user_id: row.try_get("user_id").map_err(backend)?,
        client_id: row.try_get("client_id").map_err(backend)?,
        scope: row.try_get("scope").map_err(backend)?,
        created_at: row.try_get("created_at").map_err(backend)?,
        expires_at: row.try_get("expires_at").map_err(backend)?,
        last_used_at: row.try_get("last_used_at").map_err(backend)?,
        revoked_at: row.try_get("revoked_at").map_err(backend)?,
        revoked_reason: row.try_get("revoked_reason").map_err(backend)?,
        ip: row.try_get("ip").map_err(backend)?,
        user_agent: row.try_get("user_agent").map_err(backend)?,
        dpop_jkt: row.try_get("dpop_jkt").map_err(backend)?,
        auth_time: row.try_get("auth_time").map_err(backend)?,
        auth_method: method_from(row, "auth_method")?,
    })
}

pub(crate) fn token_from(row: &PgRow) -> StoreResult<RefreshRecord> {
    let parent: Option<Vec<u8>> = row.try_get("t_parent_hash").map_err(backend)?;
    Ok(RefreshRecord {
        hash: hash_of(row, "t_hash")?,
        session_id: row.try_get("t_session_id").map_err(backend)?,
        parent: parent.as_deref().and_then(TokenHash::from_slice),
        scope: row.try_get("t_scope").map_err(backend)?,
        issued_at: row.try_get("t_issued_at").map_err(backend)?,
        expires_at: row.try_get("t_expires_at").map_err(backend)?,
        used_at: row.try_get("t_used_at").map_err(backend)?,
        access_jti: row.try_get("t_access_jti").map_err(backend)?,
        ip: row.try_get("t_ip").map_err(backend)?,
        user_agent: row.try_get("t_user_agent").map_err(backend)?,
    })
}

pub(crate) async fn insert_token(conn: &mut PgConnection, t: &RefreshRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (hash, session_id, parent_hash, scope, issued_at, expires_at, \
         used_at, access_jti, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&t.hash.0[..])
    .bind(&t.session_id)
    .bind(t.parent.as_ref().map(|p| p.0.to_vec()))
    .bind(&t.scope)
    .bind(t.issued_at)
    .bind(t.expires_at)
    .bind(t.used_at)
    .bind(&t.access_jti)
    .bind(&t.ip)
    .bind(&t.user_agent)
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(())
}

pub(crate) async fn insert_audit(conn: &mut PgConnection, e: &AuditEvent) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_events (at, kind, user_id, session_id, client_id, ip, user_agent, detail, \
         actor_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(e.at)
    .bind(&e.kind)
    .bind(&e.user_id)
    .bind(&e.session_id)
    .bind(&e.client_id)
    .bind(&e.ip)
    .bind(&e.user_agent)
    .bind(&e.detail)
    .bind(&e.actor_id)
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(())
}
