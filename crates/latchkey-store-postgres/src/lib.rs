//! PostgreSQL storage for Latchkey: one database shared by any number of
//! stateless server instances. Migrated on open (concurrent first starts are
//! serialised by sqlx's migration lock). Plain rotations are made in batches
//! (see `batch`): one read and one guarded write statement for every rotation
//! waiting, where each token is consumed only if still unused, checked under
//! its row lock. Anything else (reuse, a grace replay, a guard that refused)
//! locks the presented token's row (`SELECT … FOR UPDATE`) and decides again,
//! so the read-decide-write of [`latchkey_core::rotation::decide`] is atomic
//! against every other instance either way.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use latchkey_core::store::Store;
//! let store = latchkey_store_postgres::PgStore::open("postgres://latchkey@localhost/latchkey").await?;
//! let users = store.list_users().await?;
//! # Ok(()) }
//! ```

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use latchkey_core::coordination::{OnConnected, OnRevoked, RevocationFeed};
use latchkey_core::refresh::TokenHash;
use latchkey_core::rotation::{
    self, Decision, Policy, Rejection, RevocationReason, RotationRequest,
};
use latchkey_core::session::SessionStart;
use latchkey_core::store::{
    AuditEvent, AuditFilter, AuthorizationCode, Client, Collected, Outcome, Redemption,
    RefreshRecord, Session, Store, StoreError, StoreResult, StoredKey, User,
};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{PgConnection, Row};
use tokio::sync::{mpsc, oneshot};

mod batch;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A Latchkey store on a PostgreSQL database.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// The batch task's queue of rotations ([`batch`]).
    rotations: mpsc::UnboundedSender<batch::Job>,
}

pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        return StoreError::Conflict;
    }
    StoreError::Backend(Box::new(e))
}

pub(crate) const SESSION_COLUMNS: &str = "s.id, s.user_id, s.client_id, s.scope, s.created_at, s.expires_at, \
     s.last_used_at, s.revoked_at, s.revoked_reason, s.ip, s.user_agent, s.dpop_jkt";
// Token columns are aliased: they are always read joined with a session.
pub(crate) const TOKEN_COLUMNS: &str = "t.hash AS t_hash, t.session_id AS t_session_id, \
     t.parent_hash AS t_parent_hash, t.scope AS t_scope, t.issued_at AS t_issued_at, \
     t.expires_at AS t_expires_at, t.used_at AS t_used_at, t.access_jti AS t_access_jti, \
     t.ip AS t_ip, t.user_agent AS t_user_agent";
const USER_COLUMNS: &str =
    "u.id AS u_id, u.username, u.password_hash, u.disabled, u.created_at AS u_created_at";

/// Revokes every live session of `user_id` inside `tx`; their ids.
async fn revoke_all_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    user_id: &str,
    reason: RevocationReason,
    now: i64,
) -> StoreResult<Vec<String>> {
    sqlx::query_scalar(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE user_id = $3 AND revoked_at IS NULL RETURNING id",
    )
    .bind(now)
    .bind(reason.as_str())
    .bind(user_id)
    .fetch_all(&mut **tx)
    .await
    .map_err(backend)
}

impl PgStore {
    /// Connects to `url` (`postgres://…`; `?options=-c search_path=…` selects
    /// a schema) and migrates the database.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url).map_err(backend)?;
        Self::connect(options).await
    }

    /// Connects with explicit options and migrates the database.
    pub async fn connect(options: PgConnectOptions) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(backend)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        let rotations = batch::spawn(&pool);
        Ok(Self { pool, rotations })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The channel migration `0003_revocation_feed` announces sessions on.
pub const REVOCATION_CHANNEL: &str = "latchkey_revocations";

/// How often the feed's connection is shown to be alive, and how long the
/// proof may take.
const FEED_HEARTBEAT: Duration = Duration::from_secs(5);

/// The database's revocation feed: `LISTEN latchkey_revocations` on a
/// connection of its own. A session revoked, disabled with its user,
/// shortened or deleted is announced by triggers when the change commits.
#[derive(Clone, Debug)]
pub struct PgRevocationFeed {
    pool: PgPool,
}

#[async_trait]
impl RevocationFeed for PgRevocationFeed {
    async fn listen(&self, on_connected: &OnConnected, on_revoked: &OnRevoked) -> StoreResult<()> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(backend)?;
        // A lost connection ends this subscription (the caller starts a new
        // one), rather than being replaced behind the caller's back.
        listener.eager_reconnect(false);
        listener.listen(REVOCATION_CHANNEL).await.map_err(backend)?;
        // The database holds every revocation made before this point.
        on_connected(Vec::new());
        let mut heartbeat = tokio::time::interval(FEED_HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        loop {
            // `try_recv` is cancel-safe: a heartbeat drops it between messages.
            tokio::select! {
                received = listener.try_recv() => match received.map_err(backend)? {
                    Some(notification) => on_revoked(notification.payload().to_owned()),
                    None => return Err(StoreError::Backend("the feed's connection was lost".into())),
                },
                _ = heartbeat.tick() => {
                    // A connection that cannot answer may be missing
                    // announcements: end the subscription rather than trust it.
                    let alive = tokio::time::timeout(
                        FEED_HEARTBEAT,
                        sqlx::query("SELECT 1").execute(&mut listener),
                    )
                    .await;
                    match alive {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err(backend(e)),
                        Err(_) => {
                            return Err(StoreError::Backend(
                                "the feed's connection did not answer".into(),
                            ));
                        }
                    }
                }
            }
        }
    }
}

fn hash_of(row: &PgRow, column: &str) -> StoreResult<TokenHash> {
    let bytes: Vec<u8> = row.try_get(column).map_err(backend)?;
    TokenHash::from_slice(&bytes)
        .ok_or_else(|| StoreError::Corrupt(format!("{column} is not 32 bytes")))
}

fn user_from(row: &PgRow) -> StoreResult<User> {
    Ok(User {
        id: row.try_get("u_id").map_err(backend)?,
        username: row.try_get("username").map_err(backend)?,
        password_hash: row.try_get("password_hash").map_err(backend)?,
        disabled: row.try_get("disabled").map_err(backend)?,
        created_at: row.try_get("u_created_at").map_err(backend)?,
    })
}

fn client_from(row: &PgRow) -> StoreResult<Client> {
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
    })
}

fn code_from(row: &PgRow) -> StoreResult<AuthorizationCode> {
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
        expires_at: row.try_get("expires_at").map_err(backend)?,
    })
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

async fn insert_token(conn: &mut PgConnection, t: &RefreshRecord) -> StoreResult<()> {
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

async fn insert_audit(conn: &mut PgConnection, e: &AuditEvent) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_events (at, kind, user_id, session_id, client_id, ip, user_agent, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(e.at)
    .bind(&e.kind)
    .bind(&e.user_id)
    .bind(&e.session_id)
    .bind(&e.client_id)
    .bind(&e.ip)
    .bind(&e.user_agent)
    .bind(&e.detail)
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(())
}

async fn revoke(
    conn: &mut PgConnection,
    id: &str,
    reason: RevocationReason,
    now: i64,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(reason.as_str())
    .bind(id)
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(done.rows_affected() == 1)
}

#[async_trait]
impl Store for PgStore {
    async fn insert_user(&self, user: &User) -> StoreResult<()> {
        sqlx::query("INSERT INTO users (id, username, password_hash, disabled, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&user.id)
            .bind(&user.username)
            .bind(&user.password_hash)
            .bind(user.disabled)
            .bind(user.created_at)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.username = $1 AND u.deleted_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn names_that_may_need_folding(&self) -> StoreResult<Vec<(String, String)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, username FROM users WHERE deleted_at IS NULL \
             AND username ~ '[A-Z ]|[^\\x01-\\x7f]'",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows)
    }

    async fn rename_user(&self, user_id: &str, username: &str) -> StoreResult<bool> {
        let renamed =
            sqlx::query("UPDATE users SET username = $1 WHERE id = $2 AND deleted_at IS NULL")
                .bind(username)
                .bind(user_id)
                .execute(&self.pool)
                .await
                .map_err(backend);
        match renamed {
            Ok(done) => Ok(done.rows_affected() == 1),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1 AND u.deleted_at IS NULL");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.deleted_at IS NULL ORDER BY u.username"
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(user_from).collect()
    }

    async fn users_page(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.deleted_at IS NULL \
             AND ($1::text IS NULL OR u.id > $1) ORDER BY u.id LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(user_from).collect()
    }

    async fn delete_user(&self, user_id: &str, now: i64) -> StoreResult<Option<Vec<String>>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // Control characters never occur in a username, so the tombstone's
        // name frees the old one and collides with none.
        let done = sqlx::query(
            "UPDATE users SET disabled = TRUE, deleted_at = $1, username = chr(1) || 'deleted ' || id \
             WHERE id = $2 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let revoked = revoke_all_in(&mut tx, user_id, RevocationReason::UserDeleted, now).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(revoked))
    }

    async fn set_password(&self, user_id: &str, password_hash: &str) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND deleted_at IS NULL")
                .bind(password_hash)
                .bind(user_id)
                .execute(&self.pool)
                .await
                .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        now: i64,
    ) -> StoreResult<Option<Vec<String>>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let done =
            sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2 AND deleted_at IS NULL")
                .bind(disabled)
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let revoked = if disabled {
            revoke_all_in(&mut tx, user_id, RevocationReason::UserDisabled, now).await?
        } else {
            Vec::new()
        };
        tx.commit().await.map_err(backend)?;
        Ok(Some(revoked))
    }

    async fn insert_client(&self, client: &Client) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO clients (id, name, secret_hash, scope, created_at, redirect_uris, first_party) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&client.id)
        .bind(&client.name)
        .bind(client.secret_hash.map(|h| h.0.to_vec()))
        .bind(&client.scope)
        .bind(client.created_at)
        .bind(client.redirect_uris.join("\n"))
        .bind(client.first_party)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn client_by_id(&self, id: &str) -> StoreResult<Option<Client>> {
        let row = sqlx::query(
            "SELECT id, name, secret_hash, scope, created_at, redirect_uris, first_party, disabled, \
             tokens_valid_after FROM clients WHERE id = $1 AND removed_at IS NULL",
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
             tokens_valid_after FROM clients WHERE removed_at IS NULL ORDER BY name, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(client_from).collect()
    }

    async fn update_client(&self, client: &Client) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE clients SET scope = $1, secret_hash = $2, disabled = $3, tokens_valid_after = $4 \
             WHERE id = $5 AND removed_at IS NULL",
        )
        .bind(&client.scope)
        .bind(client.secret_hash.as_ref().map(|h| h.0.to_vec()))
        .bind(client.disabled)
        .bind(client.tokens_valid_after)
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

    async fn revoke_client_sessions(
        &self,
        client_id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<Vec<(String, String)>> {
        sqlx::query_as(
            "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
             WHERE client_id = $3 AND revoked_at IS NULL RETURNING id, user_id",
        )
        .bind(now)
        .bind(reason.as_str())
        .bind(client_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)
    }

    async fn create_session(
        &self,
        start: &SessionStart,
        max_sessions: u32,
    ) -> StoreResult<Option<Vec<String>>> {
        let (session, token, created) = (&start.session, &start.first_token, &start.audit);
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // Concurrent logins of one user apply the cap one after another; and
        // disabling the user (an UPDATE of this row) waits for this session
        // to commit, then revokes it, or commits first and is seen here.
        let disabled: Option<bool> =
            sqlx::query_scalar("SELECT disabled FROM users WHERE id = $1 FOR UPDATE")
                .bind(&session.user_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        if disabled != Some(false) {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO sessions (id, user_id, client_id, scope, created_at, expires_at, last_used_at, \
             revoked_at, revoked_reason, ip, user_agent, dpop_jkt) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $8, $9, $10)",
        )
        .bind(&session.id)
        .bind(&session.user_id)
        .bind(&session.client_id)
        .bind(&session.scope)
        .bind(session.created_at)
        .bind(session.expires_at)
        .bind(session.last_used_at)
        .bind(&session.ip)
        .bind(&session.user_agent)
        .bind(&session.dpop_jkt)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        insert_token(&mut tx, token).await?;
        insert_audit(&mut tx, created).await?;
        // The other live sessions beyond the cap (the new one counts first),
        // newest first: by time, then by `created_seq`, which the logins of
        // one user (serialised by the lock above) take in order.
        let others: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at >= $2 \
             AND id <> $3 AND client_id IS NOT DISTINCT FROM $4 \
             ORDER BY created_at DESC, created_seq DESC",
        )
        .bind(&session.user_id)
        .bind(session.created_at)
        .bind(&session.id)
        .bind(&session.client_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let evictions = latchkey_core::session::evictions(start, others, max_sessions);
        for eviction in &evictions {
            revoke(
                &mut tx,
                &eviction.session_id,
                RevocationReason::SessionCap,
                session.created_at,
            )
            .await?;
            insert_audit(&mut tx, &eviction.audit).await?;
        }
        let evicted: Vec<String> = evictions.into_iter().map(|e| e.session_id).collect();
        tx.commit().await.map_err(backend)?;
        Ok(Some(evicted))
    }

    async fn session_with_user(&self, id: &str) -> StoreResult<Option<(Session, User)>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS}, {USER_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| Ok((session_from(&r)?, user_from(&r)?)))
            .transpose()
    }

    async fn revoke_session(
        &self,
        id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<bool> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        revoke(&mut conn, id, reason, now).await
    }

    async fn live_sessions(&self, user_id: &str, now: i64) -> StoreResult<Vec<Session>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.user_id = $1 AND s.revoked_at IS NULL \
             AND s.expires_at >= $2 AND EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.session_id = s.id \
             AND t.used_at IS NULL AND t.expires_at >= $3) ORDER BY s.created_at DESC, s.created_seq DESC"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .bind(now)
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(session_from).collect()
    }

    async fn revoke_own_session(
        &self,
        user_id: &str,
        session_id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
             WHERE id = $3 AND user_id = $4 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(reason.as_str())
        .bind(session_id)
        .bind(user_id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(
            "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE user_id = $3 AND revoked_at IS NULL RETURNING id",
        )
        .bind(now)
        .bind(reason.as_str())
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)
    }

    async fn revoked_since(&self, since: i64) -> StoreResult<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT id, revoked_at FROM sessions WHERE revoked_at >= $1 ORDER BY revoked_at, id",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id").map_err(backend)?,
                    r.try_get("revoked_at").map_err(backend)?,
                ))
            })
            .collect()
    }

    async fn refresh_token(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<(RefreshRecord, Session)>> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS}, {SESSION_COLUMNS} FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id WHERE t.hash = $1"
        );
        let row = sqlx::query(&sql)
            .bind(&hash.0[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| Ok((token_from(&r)?, session_from(&r)?)))
            .transpose()
    }

    async fn rotate(&self, policy: &Policy, req: &RotationRequest) -> StoreResult<Outcome> {
        // The common case: a plain rotation, made in a batch with others.
        let (reply, answer) = oneshot::channel();
        let job = batch::Job {
            policy: *policy,
            req: req.clone(),
            reply,
        };
        if self.rotations.send(job).is_ok() {
            match answer.await {
                Ok(Ok(Some(rotated))) => return Ok(rotated),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(StoreError::Backend("the rotation task stopped".into())),
            }
        }
        // FOR UPDATE locks the presented token: a concurrent rotation of it
        // waits, then sees it used. The decision below is made on data no
        // other instance can change before this commits.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let sql = format!(
            "SELECT {TOKEN_COLUMNS}, {SESSION_COLUMNS}, u.disabled AS u_disabled FROM refresh_tokens t \
             JOIN sessions s ON s.id = t.session_id JOIN users u ON u.id = s.user_id WHERE t.hash = $1 \
             FOR UPDATE OF t"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(&req.presented.0[..])
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
        else {
            return Ok(Outcome::Rejected(Rejection::Unknown));
        };
        let (token, session) = (token_from(&row)?, session_from(&row)?);
        let user_disabled: bool = row.try_get("u_disabled").map_err(backend)?;
        let outcome = match rotation::decide(policy, &token, &session, user_disabled, req) {
            Decision::Reject(why) => return Ok(Outcome::Rejected(why)),
            Decision::Replay { scope } => {
                let successor: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM refresh_tokens WHERE hash = $1")
                        .bind(&req.successor.0[..])
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(backend)?;
                match successor {
                    Some(_) => Outcome::Replayed { session, scope },
                    None => return Ok(Outcome::Rejected(Rejection::Unknown)),
                }
            }
            Decision::Revoke(reason) => {
                revoke(&mut tx, &session.id, reason, req.now).await?;
                Outcome::Revoked { session, reason }
            }
            Decision::Rotate {
                scope,
                binding_mismatch,
                writes,
            } => {
                let rotated = batch::write_rotations(&mut tx, &[&writes])
                    .await
                    .map_err(backend)?;
                if !rotated.contains(&req.presented.0) {
                    // The token is locked, so only its session can have
                    // changed: revoked since the read. Nothing was written.
                    return Ok(Outcome::Rejected(Rejection::SessionRevoked));
                }
                Outcome::Rotated {
                    session,
                    scope,
                    binding_mismatch,
                }
            }
        };
        tx.commit().await.map_err(backend)?;
        Ok(outcome)
    }

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

    async fn insert_code(&self, code: &AuthorizationCode) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO authorization_codes (hash, client_id, user_id, redirect_uri, code_challenge, \
             scope, nonce, auth_time, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(code.hash.0.to_vec())
        .bind(&code.client_id)
        .bind(&code.user_id)
        .bind(&code.redirect_uri)
        .bind(&code.code_challenge)
        .bind(&code.scope)
        .bind(&code.nonce)
        .bind(code.auth_time)
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
             RETURNING hash, client_id, user_id, redirect_uri, code_challenge, scope, nonce, auth_time, expires_at",
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

    async fn append_audit(&self, e: &AuditEvent) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        insert_audit(&mut conn, e).await
    }

    async fn prune_audit(&self, before: i64) -> StoreResult<u64> {
        const BATCH: i64 = 5000;
        let mut pruned = 0;
        loop {
            let done = sqlx::query(
                "DELETE FROM audit_events WHERE id IN \
                 (SELECT id FROM audit_events WHERE at < $1 LIMIT $2)",
            )
            .bind(before)
            .bind(BATCH)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
            pruned += done.rows_affected();
            if done.rows_affected() < BATCH as u64 {
                return Ok(pruned);
            }
        }
    }

    async fn audit_page(&self, filter: &AuditFilter) -> StoreResult<Vec<(i64, AuditEvent)>> {
        let rows = sqlx::query(
            "SELECT id, at, kind, user_id, session_id, client_id, ip, user_agent, detail FROM audit_events \
             WHERE ($1::text IS NULL OR user_id = $1) AND ($2::text IS NULL OR kind = $2) \
             AND ($3::bigint IS NULL OR at >= $3) AND ($4::bigint IS NULL OR at < $4) \
             AND ($5::bigint IS NULL OR id < $5) ORDER BY id DESC LIMIT $6",
        )
        .bind(&filter.user_id)
        .bind(&filter.kind)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.before_id)
        .bind(i64::from(filter.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let event = AuditEvent {
                    at: r.try_get("at").map_err(backend)?,
                    kind: r.try_get("kind").map_err(backend)?,
                    user_id: r.try_get("user_id").map_err(backend)?,
                    session_id: r.try_get("session_id").map_err(backend)?,
                    client_id: r.try_get("client_id").map_err(backend)?,
                    ip: r.try_get("ip").map_err(backend)?,
                    user_agent: r.try_get("user_agent").map_err(backend)?,
                    detail: r.try_get("detail").map_err(backend)?,
                };
                Ok((r.try_get("id").map_err(backend)?, event))
            })
            .collect()
    }

    async fn collect_garbage(
        &self,
        now: i64,
        revoked_before: i64,
        idle_before: i64,
    ) -> StoreResult<Collected> {
        // Refresh tokens go with their session (ON DELETE CASCADE).
        let done = sqlx::query(
            "DELETE FROM sessions WHERE expires_at < $1 \
             OR (revoked_at IS NOT NULL AND revoked_at <= $2) \
             OR (revoked_at IS NULL AND last_used_at <= $3 AND NOT EXISTS ( \
                 SELECT 1 FROM refresh_tokens t WHERE t.session_id = sessions.id \
                 AND t.used_at IS NULL AND t.expires_at >= $1))",
        )
        .bind(now)
        .bind(revoked_before)
        .bind(idle_before)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        sqlx::query("DELETE FROM authorization_codes WHERE expires_at < $1")
            .bind(revoked_before)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM dpop_proofs WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        let users = sqlx::query(
            "DELETE FROM users WHERE deleted_at IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.user_id = users.id)",
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(Collected {
            sessions: done.rows_affected(),
            users: users.rows_affected(),
        })
    }

    fn revocation_feed(&self) -> Option<std::sync::Arc<dyn RevocationFeed>> {
        Some(std::sync::Arc::new(PgRevocationFeed {
            pool: self.pool.clone(),
        }))
    }
}
