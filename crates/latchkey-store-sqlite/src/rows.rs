//! The columns of each table as this backend reads them, the readers that
//! turn a row into a record, and the writes several roles share.

use super::*;

// Sessions and tokens are read by position (a lookup by name compares every
// column's name, a measurable share of a refresh): `session_from` and
// `token_from` read these columns, in this order, from the position given.
pub(crate) const SESSION_COLUMNS: &str = "s.id, s.user_id, s.client_id, s.scope, s.created_at, s.expires_at, \
     s.last_used_at, s.revoked_at, s.revoked_reason, s.ip, s.user_agent, s.dpop_jkt, s.auth_time, \
     s.auth_method";

pub(crate) const TOKEN_COLUMNS: &str = "t.hash, t.session_id, t.parent_hash, t.scope, t.issued_at, \
     t.expires_at, t.used_at, t.access_jti, t.ip, t.user_agent";

/// How many columns `TOKEN_COLUMNS` names: where a session read after a token starts.
pub(crate) const TOKEN_COLUMN_COUNT: usize = 10;

/// How many columns `SESSION_COLUMNS` names.
pub(crate) const SESSION_COLUMN_COUNT: usize = 14;

pub(crate) const USER_COLUMNS: &str = "u.id AS u_id, u.username, u.password_hash, u.disabled, u.created_at AS u_created_at, u.email, u.email_verified, u.admin";

pub(crate) const CLIENT_COLUMNS: &str = "id, name, secret_hash, scope, created_at, redirect_uris, first_party, disabled, tokens_valid_after, backchannel_logout_uri";

pub(crate) fn hash_of(row: &Row<'_>, column: usize) -> rusqlite::Result<TokenHash> {
    let bytes: Vec<u8> = row.get(column)?;
    TokenHash::from_slice(&bytes).ok_or_else(|| corrupt("a token hash is not 32 bytes".to_owned()))
}

pub(crate) fn corrupt(what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Blob,
        Box::new(StoreError::Corrupt(what)),
    )
}

pub(crate) fn user_from(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get("u_id")?,
        username: row.get("username")?,
        password_hash: row.get("password_hash")?,
        disabled: row.get("disabled")?,
        created_at: row.get("u_created_at")?,
        email: row.get("email")?,
        email_verified: row.get("email_verified")?,
        admin: row.get("admin")?,
    })
}

pub(crate) fn client_from(row: &Row<'_>) -> rusqlite::Result<Client> {
    let secret: Option<Vec<u8>> = row.get("secret_hash")?;
    Ok(Client {
        id: row.get("id")?,
        name: row.get("name")?,
        secret_hash: match secret {
            Some(bytes) => Some(
                TokenHash::from_slice(&bytes)
                    .ok_or_else(|| corrupt("client secret hash".into()))?,
            ),
            None => None,
        },
        scope: row.get("scope")?,
        created_at: row.get("created_at")?,
        redirect_uris: split_lines(&row.get::<_, String>("redirect_uris")?),
        first_party: row.get("first_party")?,
        disabled: row.get("disabled")?,
        tokens_valid_after: row.get("tokens_valid_after")?,
        backchannel_logout_uri: row.get("backchannel_logout_uri")?,
    })
}

/// Redirect URIs are stored one per line (a URI holds no line break).
pub(crate) fn split_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(crate) fn code_from(row: &Row<'_>) -> rusqlite::Result<AuthorizationCode> {
    let hash: Vec<u8> = row.get("hash")?;
    Ok(AuthorizationCode {
        hash: TokenHash::from_slice(&hash).ok_or_else(|| corrupt("code hash".into()))?,
        client_id: row.get("client_id")?,
        user_id: row.get("user_id")?,
        redirect_uri: row.get("redirect_uri")?,
        code_challenge: row.get("code_challenge")?,
        scope: row.get("scope")?,
        nonce: row.get("nonce")?,
        auth_time: row.get("auth_time")?,
        auth_method: method_from(row, "auth_method")?,
        expires_at: row.get("expires_at")?,
    })
}

/// A sign-in's method; an unknown name (which no version wrote) reads as
/// the weakest, a password, so that it never grants more.
pub(crate) fn method_from<I: rusqlite::RowIndex>(
    row: &Row<'_>,
    column: I,
) -> rusqlite::Result<AuthMethod> {
    let name: String = row.get(column)?;
    Ok(AuthMethod::parse(&name).unwrap_or_default())
}

/// The session whose `SESSION_COLUMNS` start at column `at`.
pub(crate) fn session_from(row: &Row<'_>, at: usize) -> rusqlite::Result<Session> {
    Ok(Session {
        id: row.get(at)?,
        user_id: row.get(at + 1)?,
        client_id: row.get(at + 2)?,
        scope: row.get(at + 3)?,
        created_at: row.get(at + 4)?,
        expires_at: row.get(at + 5)?,
        last_used_at: row.get(at + 6)?,
        revoked_at: row.get(at + 7)?,
        revoked_reason: row.get(at + 8)?,
        ip: row.get(at + 9)?,
        user_agent: row.get(at + 10)?,
        dpop_jkt: row.get(at + 11)?,
        auth_time: row.get(at + 12)?,
        auth_method: method_from(row, at + 13)?,
    })
}

/// The token whose `TOKEN_COLUMNS` start at column `at`.
pub(crate) fn token_from(row: &Row<'_>, at: usize) -> rusqlite::Result<RefreshRecord> {
    let parent: Option<Vec<u8>> = row.get(at + 2)?;
    Ok(RefreshRecord {
        hash: hash_of(row, at)?,
        session_id: row.get(at + 1)?,
        parent: parent.as_deref().and_then(TokenHash::from_slice),
        scope: row.get(at + 3)?,
        issued_at: row.get(at + 4)?,
        expires_at: row.get(at + 5)?,
        used_at: row.get(at + 6)?,
        access_jti: row.get(at + 7)?,
        ip: row.get(at + 8)?,
        user_agent: row.get(at + 9)?,
    })
}

pub(crate) fn audit_from(row: &Row<'_>) -> rusqlite::Result<AuditEvent> {
    Ok(AuditEvent {
        at: row.get("at")?,
        kind: row.get("kind")?,
        user_id: row.get("user_id")?,
        session_id: row.get("session_id")?,
        client_id: row.get("client_id")?,
        ip: row.get("ip")?,
        user_agent: row.get("user_agent")?,
        detail: row.get("detail")?,
        actor_id: row.get("actor_id")?,
    })
}

pub(crate) fn key_from(row: &Row<'_>) -> rusqlite::Result<StoredKey> {
    Ok(StoredKey {
        kid: row.get("kid")?,
        alg: row.get("alg")?,
        private_blob: row.get("private_blob")?,
        public_jwk: row.get("public_jwk")?,
        created_at: row.get("created_at")?,
        activates_at: row.get("activates_at")?,
        retires_at: row.get("retires_at")?,
    })
}

/// The stored token `hash` with its session.
pub(crate) fn token_with_session(
    conn: &Connection,
    hash: &TokenHash,
) -> rusqlite::Result<Option<(RefreshRecord, Session)>> {
    Ok(token_with_session_and_user(conn, hash)?.map(|(t, s, _)| (t, s)))
}

/// The stored token `hash` with its session, and whether its user is disabled.
pub(crate) fn token_with_session_and_user(
    conn: &Connection,
    hash: &TokenHash,
) -> rusqlite::Result<Option<(RefreshRecord, Session, bool)>> {
    let sql = format!(
        "SELECT {TOKEN_COLUMNS}, {SESSION_COLUMNS}, u.disabled FROM refresh_tokens t \
         JOIN sessions s ON s.id = t.session_id JOIN users u ON u.id = s.user_id WHERE t.hash = ?"
    );
    conn.prepare_cached(&sql)?
        .query_row([&hash.0[..]], |r| {
            Ok((
                token_from(r, 0)?,
                session_from(r, TOKEN_COLUMN_COUNT)?,
                r.get(TOKEN_COLUMN_COUNT + SESSION_COLUMN_COUNT)?,
            ))
        })
        .optional()
}

pub(crate) fn insert_token(conn: &Connection, t: &RefreshRecord) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO refresh_tokens (hash, session_id, parent_hash, scope, issued_at, expires_at, \
         used_at, access_jti, ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        &t.hash.0[..],
        t.session_id,
        t.parent.as_ref().map(|p| &p.0[..]),
        t.scope,
        t.issued_at,
        t.expires_at,
        t.used_at,
        t.access_jti,
        t.ip,
        t.user_agent,
    ])?;
    Ok(())
}

pub(crate) fn insert_audit(conn: &Connection, e: &AuditEvent) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit_events (at, kind, user_id, session_id, client_id, ip, user_agent, detail, \
         actor_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        e.at,
        e.kind,
        e.user_id,
        e.session_id,
        e.client_id,
        e.ip,
        e.user_agent,
        e.detail,
        e.actor_id,
    ])?;
    Ok(())
}
