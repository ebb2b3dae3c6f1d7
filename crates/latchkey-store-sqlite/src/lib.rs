//! SQLite storage for Latchkey: the embedded default. One file in WAL mode,
//! migrated on open. Rotation runs in a `BEGIN IMMEDIATE` transaction, so the
//! read-decide-write of [`latchkey_core::rotation::decide`] is serialised
//! against every other writer of the file, in this process or another.
//!
//! SQLite is a library, not a server: a statement costs microseconds, far
//! less than handing it to another thread and waking the caller again. So
//! statements run on the calling task, through `rusqlite`, on one writer
//! connection (writers of this process queue for it on the async runtime)
//! and a few read-only connections. Work that could run long (garbage
//! collection) goes in bounded batches.
//!
//! Rotations commit in groups: a commit writes every page the transaction
//! touched to the WAL, so rotations waiting for the writer join the
//! transaction of the one holding it, each under its own savepoint, and all
//! get their answer after the one commit that makes them durable.
//!
//! Checkpoints (copying the WAL back into the database file, with an
//! `fsync`) run on a background thread of the store, not inside a writer's
//! commit, so no request waits for one; the writer checkpoints itself only
//! if the WAL grows past [`WAL_BACKSTOP_PAGES`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use latchkey_core::store::Store;
//! let store = latchkey_store_sqlite::SqliteStore::open("sqlite://latchkey.db").await?;
//! let users = store.list_users().await?;
//! # Ok(()) }
//! ```

mod migrate;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use latchkey_core::refresh::TokenHash;
use latchkey_core::rotation::{
    self, Decision, Policy, Rejection, RevocationReason, RotationRequest,
};
use latchkey_core::session::SessionStart;
use latchkey_core::store::{
    AuditEvent, AuditFilter, AuthorizationCode, Client, Collected, Outcome, Redemption,
    RefreshRecord, Session, Store, StoreError, StoreResult, StoredKey, User,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior, params};

/// Read-only connections kept open. Reads never wait on a statement, so a
/// few cover every runtime thread that could be reading at once.
const READERS: usize = 4;

/// How often the background thread checkpoints the WAL.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// WAL pages after which a committing writer checkpoints by itself (SQLite's
/// automatic checkpoint): only reached if the background thread falls behind.
const WAL_BACKSTOP_PAGES: u32 = 20_000;

/// Sessions deleted per garbage-collection transaction: bounds how long one
/// collection holds the writer.
const GC_BATCH: i64 = 500;

/// A Latchkey store on one SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// SQLite has one writer at a time. Writers of this process queue here,
    /// on the async runtime, instead of in SQLite's busy handler, which
    /// sleeps and retries; other processes (the CLI) still meet the busy
    /// timeout.
    writer: tokio::sync::Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    /// Rotations waiting for the writer; whoever holds it runs them all.
    rotations: Mutex<Vec<RotationJob>>,
    /// Dropped with the store: tells the checkpoint thread to stop.
    _checkpointer: std::sync::mpsc::Sender<()>,
}

/// A rotation waiting for the writer, and where its outcome goes.
#[derive(Debug)]
struct RotationJob {
    policy: Policy,
    request: RotationRequest,
    reply: tokio::sync::oneshot::Sender<StoreResult<Outcome>>,
}

fn backend(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(failure, _) = &e
        && matches!(
            failure.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        )
    {
        return StoreError::Conflict;
    }
    StoreError::Backend(Box::new(e))
}

// Sessions and tokens are read by position (a lookup by name compares every
// column's name, a measurable share of a refresh): `session_from` and
// `token_from` read these columns, in this order, from the position given.
const SESSION_COLUMNS: &str = "s.id, s.user_id, s.client_id, s.scope, s.created_at, s.expires_at, \
     s.last_used_at, s.revoked_at, s.revoked_reason, s.ip, s.user_agent, s.dpop_jkt";
const TOKEN_COLUMNS: &str = "t.hash, t.session_id, t.parent_hash, t.scope, t.issued_at, \
     t.expires_at, t.used_at, t.access_jti, t.ip, t.user_agent";
/// How many columns `TOKEN_COLUMNS` names: where a session read after a token starts.
const TOKEN_COLUMN_COUNT: usize = 10;
/// How many columns `SESSION_COLUMNS` names.
const SESSION_COLUMN_COUNT: usize = 12;
const USER_COLUMNS: &str =
    "u.id AS u_id, u.username, u.password_hash, u.disabled, u.created_at AS u_created_at";
const CLIENT_COLUMNS: &str = "id, name, secret_hash, scope, created_at, redirect_uris, first_party, disabled, tokens_valid_after";

/// The file named by `sqlite://PATH` (or `sqlite:PATH`). The file is created
/// when missing, so `?mode=rwc` is accepted as saying just that; any other
/// query parameter is refused rather than ignored.
fn path_of(url: &str) -> StoreResult<PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::Corrupt(format!("not a sqlite:// URL: {url}")))?;
    let path = path.strip_suffix("?mode=rwc").unwrap_or(path);
    if path.is_empty() || path.contains('?') || path == ":memory:" {
        return Err(StoreError::Backend(
            format!("expected sqlite://PATH to a file, got {url}").into(),
        ));
    }
    Ok(PathBuf::from(path))
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    // NORMAL is durable across process crashes in WAL mode; only a power
    // loss can drop the last commits.
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `url`
    /// (`sqlite://PATH`).
    pub async fn open(url: &str) -> StoreResult<Self> {
        let path = path_of(url)?;
        let mut writer = Connection::open(&path).map_err(backend)?;
        configure(&writer).map_err(backend)?;
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(backend)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(
                format!("{} cannot use WAL mode (got {mode})", path.display()).into(),
            ));
        }
        writer
            .pragma_update(None, "wal_autocheckpoint", WAL_BACKSTOP_PAGES)
            .map_err(backend)?;
        migrate::run(&mut writer)?;
        let checkpointer = start_checkpointer(&path).map_err(backend)?;
        let readers = (0..READERS)
            .map(|_| {
                let conn = Connection::open_with_flags(
                    &path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                configure(&conn)?;
                Ok(Mutex::new(conn))
            })
            .collect::<rusqlite::Result<_>>()
            .map_err(backend)?;
        Ok(Self {
            inner: Arc::new(Inner {
                writer: tokio::sync::Mutex::new(writer),
                readers,
                rotations: Mutex::default(),
                _checkpointer: checkpointer,
            }),
        })
    }

    /// Checkpoints the WAL into the main file. Connections close when the
    /// last clone of the store is dropped.
    pub async fn close(&self) {
        let conn = self.inner.writer.lock().await;
        // A failed checkpoint only leaves the WAL longer; the next one retries.
        if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
            tracing::warn!(error = %e, "SQLite checkpoint on close failed");
        }
    }

    /// Runs `f` on a free read-only connection. Nothing holding one awaits,
    /// so when all are busy the wait is one statement long.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> StoreResult<T> {
        let readers = &self.inner.readers;
        let conn = readers
            .iter()
            .find_map(|m| m.try_lock().ok())
            .unwrap_or_else(|| relock(&readers[0]));
        f(&conn).map_err(backend)
    }

    /// Runs `f` on the writer connection, after this process's earlier
    /// writers.
    async fn write<T>(&self, f: impl FnOnce(&mut Connection) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.inner.writer.lock().await;
        f(&mut conn)
    }
}

/// Starts the thread that checkpoints the WAL every [`CHECKPOINT_EVERY`]
/// until the returned sender is dropped. `PASSIVE` never waits for writers
/// or readers: it copies what it can.
fn start_checkpointer(path: &std::path::Path) -> rusqlite::Result<std::sync::mpsc::Sender<()>> {
    use std::sync::mpsc::RecvTimeoutError;
    let conn = Connection::open(path)?;
    configure(&conn)?;
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("latchkey-sqlite-checkpoint".into())
        .spawn(move || {
            loop {
                let last = match stopped.recv_timeout(CHECKPOINT_EVERY) {
                    Err(RecvTimeoutError::Timeout) => false,
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
                };
                if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
                    tracing::warn!(error = %e, "SQLite checkpoint failed; the writer's backstop remains");
                }
                if last {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        // Without the thread, the writer's automatic checkpoint still runs.
        tracing::warn!(error = %e, "cannot start the SQLite checkpoint thread");
    }
    Ok(stop)
}

/// A reader poisoned by a panic still holds a usable connection: it never
/// leaves a transaction open.
fn relock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn hash_of(row: &Row<'_>, column: usize) -> rusqlite::Result<TokenHash> {
    let bytes: Vec<u8> = row.get(column)?;
    TokenHash::from_slice(&bytes).ok_or_else(|| corrupt("a token hash is not 32 bytes".to_owned()))
}

fn corrupt(what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Blob,
        Box::new(StoreError::Corrupt(what)),
    )
}

fn user_from(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get("u_id")?,
        username: row.get("username")?,
        password_hash: row.get("password_hash")?,
        disabled: row.get("disabled")?,
        created_at: row.get("u_created_at")?,
    })
}

fn client_from(row: &Row<'_>) -> rusqlite::Result<Client> {
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
    })
}

/// Redirect URIs are stored one per line (a URI holds no line break).
fn split_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn code_from(row: &Row<'_>) -> rusqlite::Result<AuthorizationCode> {
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
        expires_at: row.get("expires_at")?,
    })
}

/// The session whose `SESSION_COLUMNS` start at column `at`.
fn session_from(row: &Row<'_>, at: usize) -> rusqlite::Result<Session> {
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
    })
}

/// The token whose `TOKEN_COLUMNS` start at column `at`.
fn token_from(row: &Row<'_>, at: usize) -> rusqlite::Result<RefreshRecord> {
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

fn audit_from(row: &Row<'_>) -> rusqlite::Result<AuditEvent> {
    Ok(AuditEvent {
        at: row.get("at")?,
        kind: row.get("kind")?,
        user_id: row.get("user_id")?,
        session_id: row.get("session_id")?,
        client_id: row.get("client_id")?,
        ip: row.get("ip")?,
        user_agent: row.get("user_agent")?,
        detail: row.get("detail")?,
    })
}

fn key_from(row: &Row<'_>) -> rusqlite::Result<StoredKey> {
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
fn token_with_session(
    conn: &Connection,
    hash: &TokenHash,
) -> rusqlite::Result<Option<(RefreshRecord, Session)>> {
    Ok(token_with_session_and_user(conn, hash)?.map(|(t, s, _)| (t, s)))
}

/// The stored token `hash` with its session, and whether its user is disabled.
fn token_with_session_and_user(
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

fn insert_token(conn: &Connection, t: &RefreshRecord) -> rusqlite::Result<()> {
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

fn insert_audit(conn: &Connection, e: &AuditEvent) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit_events (at, kind, user_id, session_id, client_id, ip, user_agent, detail) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
    ])?;
    Ok(())
}

fn revoke(
    conn: &Connection,
    id: &str,
    reason: RevocationReason,
    now: i64,
) -> rusqlite::Result<bool> {
    let done = conn
        .prepare_cached(
            "UPDATE sessions SET revoked_at = ?, revoked_reason = ? WHERE id = ? AND revoked_at IS NULL",
        )?
        .execute(params![now, reason.as_str(), id])?;
    Ok(done == 1)
}

/// Revokes every live session of `user_id`; returns their ids.
fn revoke_all(
    conn: &Connection,
    user_id: &str,
    reason: RevocationReason,
    now: i64,
) -> rusqlite::Result<Vec<String>> {
    conn.prepare_cached(
        "UPDATE sessions SET revoked_at = ?, revoked_reason = ? WHERE user_id = ? AND revoked_at IS NULL RETURNING id",
    )?
    .query_map(params![now, reason.as_str(), user_id], |r| r.get(0))?
    .collect()
}

/// The read-decide-write of one rotation, inside the caller's `IMMEDIATE`
/// transaction.
fn rotate_in(conn: &Connection, policy: &Policy, req: &RotationRequest) -> StoreResult<Outcome> {
    let Some((token, session, user_disabled)) =
        token_with_session_and_user(conn, &req.presented).map_err(backend)?
    else {
        return Ok(Outcome::Rejected(Rejection::Unknown));
    };
    Ok(
        match rotation::decide(policy, &token, &session, user_disabled, req) {
            Decision::Reject(why) => Outcome::Rejected(why),
            Decision::Replay { scope } => {
                let successor: Option<i64> = conn
                    .prepare_cached("SELECT 1 FROM refresh_tokens WHERE hash = ?")
                    .and_then(|mut s| s.query_row([&req.successor.0[..]], |r| r.get(0)).optional())
                    .map_err(backend)?;
                match successor {
                    Some(_) => Outcome::Replayed { session, scope },
                    None => Outcome::Rejected(Rejection::Unknown),
                }
            }
            Decision::Revoke(reason) => {
                revoke(conn, &session.id, reason, req.now).map_err(backend)?;
                Outcome::Revoked { session, reason }
            }
            Decision::Rotate {
                scope,
                binding_mismatch,
                writes,
            } => {
                // Read and written under one write lock: the token is unused.
                let consumed = conn
                    .prepare_cached(
                        "UPDATE refresh_tokens SET used_at = ? WHERE hash = ? AND used_at IS NULL",
                    )
                    .and_then(|mut s| s.execute(params![writes.at, &writes.consumed.0[..]]))
                    .map_err(backend)?;
                if consumed != 1 {
                    return Err(StoreError::Corrupt("rotation lost its write lock".into()));
                }
                insert_token(conn, &writes.successor).map_err(backend)?;
                // Unix seconds: a session refreshed again within the same second
                // already says so, and its row is not written again.
                conn.prepare_cached(
                    "UPDATE sessions SET last_used_at = ?1 WHERE id = ?2 AND last_used_at < ?1",
                )
                .and_then(|mut s| s.execute(params![writes.at, session.id]))
                .map_err(backend)?;
                if let Some(audit) = &writes.audit {
                    insert_audit(conn, audit).map_err(backend)?;
                }
                Outcome::Rotated {
                    session,
                    scope,
                    binding_mismatch,
                }
            }
        },
    )
}

fn group_lost() -> StoreError {
    StoreError::Backend("the rotation's group ended without an answer".into())
}

/// Runs `jobs` in one `IMMEDIATE` transaction, each under a savepoint so a
/// failed or refused rotation leaves no trace, and answers them after the
/// commit (or with its error).
fn rotate_group(conn: &mut Connection, jobs: Vec<RotationJob>) {
    if jobs.is_empty() {
        return;
    }
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let e = e.to_string();
            for job in jobs {
                let _ = job.reply.send(Err(StoreError::Backend(e.clone().into())));
            }
            return;
        }
    };
    let mut answers = Vec::with_capacity(jobs.len());
    for job in jobs {
        // A caller that has gone (its request was cancelled while it queued)
        // gets no rotation: its token must stay usable, as it would have if
        // its own transaction had been cancelled.
        if job.reply.is_closed() {
            continue;
        }
        let outcome = match tx.savepoint() {
            Ok(sp) => match rotate_in(&sp, &job.policy, &job.request) {
                Ok(outcome @ Outcome::Rejected(_)) => Ok(outcome), // dropped: rolled back
                Ok(outcome) => sp.commit().map(|()| outcome).map_err(backend),
                Err(e) => Err(e),
            },
            Err(e) => Err(backend(e)),
        };
        answers.push((job.reply, outcome));
    }
    match tx.commit() {
        Ok(()) => {
            for (reply, outcome) in answers {
                // A caller that went away (client disconnected) needs no answer.
                let _ = reply.send(outcome);
            }
        }
        Err(e) => {
            let e = e.to_string();
            for (reply, _) in answers {
                let _ = reply.send(Err(StoreError::Backend(e.clone().into())));
            }
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_user(&self, user: &User) -> StoreResult<()> {
        self.write(|conn| {
            conn.execute(
                "INSERT INTO users (id, username, password_hash, disabled, created_at) VALUES (?, ?, ?, ?, ?)",
                params![user.id, user.username, user.password_hash, user.disabled, user.created_at],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.username = ? AND u.deleted_at IS NULL"
        );
        self.read(|conn| {
            conn.prepare_cached(&sql)?
                .query_row([username], user_from)
                .optional()
        })
    }

    async fn names_that_may_need_folding(&self) -> StoreResult<Vec<(String, String)>> {
        // Capitals, spaces, or characters beyond ASCII (a name longer in
        // bytes than in characters).
        self.read(|conn| {
            conn.prepare(
                "SELECT id, username FROM users WHERE deleted_at IS NULL \
                 AND (username GLOB '*[A-Z ]*' OR length(CAST(username AS BLOB)) <> length(username))",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
        })
    }

    async fn rename_user(&self, user_id: &str, username: &str) -> StoreResult<bool> {
        let renamed = self
            .write(|conn| {
                conn.execute(
                    "UPDATE users SET username = ? WHERE id = ? AND deleted_at IS NULL",
                    params![username, user_id],
                )
                .map_err(backend)
            })
            .await;
        match renamed {
            Ok(n) => Ok(n == 1),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = ? AND u.deleted_at IS NULL");
        self.read(|conn| {
            conn.prepare_cached(&sql)?
                .query_row([id], user_from)
                .optional()
        })
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.deleted_at IS NULL ORDER BY u.username"
        );
        self.read(|conn| conn.prepare(&sql)?.query_map([], user_from)?.collect())
    }

    async fn users_page(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.deleted_at IS NULL \
             AND (?1 IS NULL OR u.id > ?1) ORDER BY u.id LIMIT ?2"
        );
        self.read(|conn| {
            conn.prepare_cached(&sql)?
                .query_map(params![after, i64::from(limit)], user_from)?
                .collect()
        })
    }

    async fn delete_user(&self, user_id: &str, now: i64) -> StoreResult<Option<Vec<String>>> {
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            // Control characters never occur in a username, so the
            // tombstone's name frees the old one and collides with none.
            let done = tx
                .execute(
                    "UPDATE users SET disabled = 1, deleted_at = ?1, username = char(1) || 'deleted ' || id \
                     WHERE id = ?2 AND deleted_at IS NULL",
                    params![now, user_id],
                )
                .map_err(backend)?;
            if done != 1 {
                return Ok(None);
            }
            let revoked =
                revoke_all(&tx, user_id, RevocationReason::UserDeleted, now).map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(Some(revoked))
        })
        .await
    }

    async fn set_password(&self, user_id: &str, password_hash: &str) -> StoreResult<bool> {
        self.write(|conn| {
            let done = conn
                .execute(
                    "UPDATE users SET password_hash = ? WHERE id = ? AND deleted_at IS NULL",
                    params![password_hash, user_id],
                )
                .map_err(backend)?;
            Ok(done == 1)
        })
        .await
    }

    async fn set_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        now: i64,
    ) -> StoreResult<Option<Vec<String>>> {
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let done = tx
                .execute(
                    "UPDATE users SET disabled = ? WHERE id = ? AND deleted_at IS NULL",
                    params![disabled, user_id],
                )
                .map_err(backend)?;
            if done != 1 {
                return Ok(None);
            }
            let revoked = if disabled {
                revoke_all(&tx, user_id, RevocationReason::UserDisabled, now).map_err(backend)?
            } else {
                Vec::new()
            };
            tx.commit().map_err(backend)?;
            Ok(Some(revoked))
        })
        .await
    }

    async fn insert_client(&self, client: &Client) -> StoreResult<()> {
        self.write(|conn| {
            conn.execute(
                "INSERT INTO clients (id, name, secret_hash, scope, created_at, redirect_uris, first_party) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
                params![
                    client.id,
                    client.name,
                    client.secret_hash.as_ref().map(|h| &h.0[..]),
                    client.scope,
                    client.created_at,
                    client.redirect_uris.join("\n"),
                    client.first_party,
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
                "UPDATE clients SET scope = ?, secret_hash = ?, disabled = ?, tokens_valid_after = ? \
                 WHERE id = ? AND removed_at IS NULL",
                params![
                    client.scope,
                    secret,
                    client.disabled,
                    client.tokens_valid_after,
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

    async fn revoke_client_sessions(
        &self,
        client_id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<Vec<(String, String)>> {
        self.write(|conn| {
            let revoke = || -> rusqlite::Result<Vec<(String, String)>> {
                conn.prepare_cached(
                    "UPDATE sessions SET revoked_at = ?, revoked_reason = ? \
                     WHERE client_id = ? AND revoked_at IS NULL RETURNING id, user_id",
                )?
                .query_map(params![now, reason.as_str(), client_id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect()
            };
            revoke().map_err(backend)
        })
        .await
    }

    async fn create_session(
        &self,
        start: &SessionStart,
        max_sessions: u32,
    ) -> StoreResult<Option<Vec<String>>> {
        let (session, token, created) = (&start.session, &start.first_token, &start.audit);
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            // Under the write lock: a user disabled before this commits was
            // disabled before this read.
            let disabled: Option<bool> = tx
                .prepare_cached("SELECT disabled FROM users WHERE id = ?")
                .and_then(|mut s| s.query_row([&session.user_id], |r| r.get(0)).optional())
                .map_err(backend)?;
            if disabled != Some(false) {
                return Ok(None);
            }
            tx.prepare_cached(
                "INSERT INTO sessions (id, user_id, client_id, scope, created_at, expires_at, last_used_at, \
                 revoked_at, revoked_reason, ip, user_agent, dpop_jkt) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    session.id,
                    session.user_id,
                    session.client_id,
                    session.scope,
                    session.created_at,
                    session.expires_at,
                    session.last_used_at,
                    session.ip,
                    session.user_agent,
                    session.dpop_jkt,
                ])
            })
            .map_err(backend)?;
            insert_token(&tx, token).map_err(backend)?;
            insert_audit(&tx, created).map_err(backend)?;
            // The user's other live sessions through the same client (the
            // cap is per user and client, so that one application's sessions
            // never evict another's), newest first: by time, then by rowid,
            // which grows with every insert, so logins of one second keep
            // their order.
            let others: Vec<String> = tx
                .prepare_cached(
                    "SELECT id FROM sessions WHERE user_id = ? AND revoked_at IS NULL AND expires_at >= ? \
                     AND id <> ? AND client_id IS ? ORDER BY created_at DESC, rowid DESC",
                )
                .and_then(|mut s| {
                    s.query_map(
                        params![
                            session.user_id,
                            session.created_at,
                            session.id,
                            session.client_id
                        ],
                        |r| r.get(0),
                    )?
                    .collect()
                })
                .map_err(backend)?;
            let evictions = latchkey_core::session::evictions(start, others, max_sessions);
            for eviction in &evictions {
                revoke(
                    &tx,
                    &eviction.session_id,
                    RevocationReason::SessionCap,
                    session.created_at,
                )
                .map_err(backend)?;
                insert_audit(&tx, &eviction.audit).map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(Some(evictions.into_iter().map(|e| e.session_id).collect()))
        })
        .await
    }

    async fn session_with_user(&self, id: &str) -> StoreResult<Option<(Session, User)>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS}, {USER_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?"
        );
        self.read(|conn| {
            conn.prepare_cached(&sql)?
                .query_row([id], |r| Ok((session_from(r, 0)?, user_from(r)?)))
                .optional()
        })
    }

    async fn revoke_session(
        &self,
        id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<bool> {
        self.write(|conn| revoke(conn, id, reason, now).map_err(backend))
            .await
    }

    async fn live_sessions(&self, user_id: &str, now: i64) -> StoreResult<Vec<Session>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.user_id = ?1 AND s.revoked_at IS NULL \
             AND s.expires_at >= ?2 AND EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.session_id = s.id \
             AND t.used_at IS NULL AND t.expires_at >= ?2) ORDER BY s.created_at DESC, s.rowid DESC"
        );
        self.read(|conn| {
            conn.prepare_cached(&sql)?
                .query_map(params![user_id, now], |r| session_from(r, 0))?
                .collect()
        })
    }

    async fn revoke_own_session(
        &self,
        user_id: &str,
        session_id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<bool> {
        self.write(|conn| {
            let done = conn
                .execute(
                    "UPDATE sessions SET revoked_at = ?, revoked_reason = ? \
                     WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
                    params![now, reason.as_str(), session_id, user_id],
                )
                .map_err(backend)?;
            Ok(done == 1)
        })
        .await
    }

    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<Vec<String>> {
        self.write(|conn| revoke_all(conn, user_id, reason, now).map_err(backend))
            .await
    }

    async fn revoked_since(&self, since: i64) -> StoreResult<Vec<(String, i64)>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT id, revoked_at FROM sessions WHERE revoked_at >= ? ORDER BY revoked_at, id",
            )?
            .query_map([since], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
        })
    }

    async fn refresh_token(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<(RefreshRecord, Session)>> {
        self.read(|conn| token_with_session(conn, hash))
    }

    async fn rotate(&self, policy: &Policy, req: &RotationRequest) -> StoreResult<Outcome> {
        let (reply, mut outcome) = tokio::sync::oneshot::channel();
        self.inner
            .rotations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(RotationJob {
                policy: *policy,
                request: req.clone(),
                reply,
            });
        tokio::select! {
            // An earlier holder of the writer ran this rotation in its group.
            done = &mut outcome => done.unwrap_or_else(|_| Err(group_lost())),
            mut conn = self.inner.writer.lock() => {
                let jobs = std::mem::take(
                    &mut *self.inner.rotations.lock().unwrap_or_else(PoisonError::into_inner),
                );
                rotate_group(&mut conn, jobs);
                drop(conn);
                outcome.await.unwrap_or_else(|_| Err(group_lost()))
            }
        }
    }

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

    async fn insert_code(&self, code: &AuthorizationCode) -> StoreResult<()> {
        self.write(|conn| {
            conn.prepare_cached(
                "INSERT INTO authorization_codes (hash, client_id, user_id, redirect_uri, code_challenge, \
                 scope, nonce, auth_time, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                     auth_time, expires_at, used_at, session_id FROM authorization_codes WHERE hash = ?",
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

    async fn append_audit(&self, e: &AuditEvent) -> StoreResult<()> {
        self.write(|conn| insert_audit(conn, e).map_err(backend))
            .await
    }

    async fn prune_audit(&self, before: i64) -> StoreResult<u64> {
        let mut pruned = 0;
        loop {
            let deleted = self
                .write(|conn| {
                    conn.prepare_cached(
                        "DELETE FROM audit_events WHERE id IN \
                         (SELECT id FROM audit_events WHERE at < ?1 LIMIT ?2)",
                    )
                    .and_then(|mut s| s.execute(params![before, GC_BATCH]))
                    .map_err(backend)
                })
                .await?;
            pruned += deleted as u64;
            if (deleted as i64) < GC_BATCH {
                return Ok(pruned);
            }
            tokio::task::yield_now().await;
        }
    }

    async fn audit_page(&self, filter: &AuditFilter) -> StoreResult<Vec<(i64, AuditEvent)>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT id, at, kind, user_id, session_id, client_id, ip, user_agent, detail FROM audit_events \
                 WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR kind = ?2) \
                 AND (?3 IS NULL OR at >= ?3) AND (?4 IS NULL OR at < ?4) AND (?5 IS NULL OR id < ?5) \
                 ORDER BY id DESC LIMIT ?6",
            )?
            .query_map(
                params![
                    filter.user_id,
                    filter.kind,
                    filter.since,
                    filter.until,
                    filter.before_id,
                    i64::from(filter.limit)
                ],
                |row| Ok((row.get("id")?, audit_from(row)?)),
            )?
            .collect()
        })
    }

    async fn collect_garbage(
        &self,
        now: i64,
        revoked_before: i64,
        idle_before: i64,
    ) -> StoreResult<Collected> {
        let mut collected = Collected::default();
        loop {
            // Refresh tokens go with their session (ON DELETE CASCADE).
            let deleted = self
                .write(|conn| {
                    conn.prepare_cached(
                        "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at < ?1 \
                         OR (revoked_at IS NOT NULL AND revoked_at <= ?2) \
                         OR (revoked_at IS NULL AND last_used_at <= ?3 AND NOT EXISTS ( \
                             SELECT 1 FROM refresh_tokens t WHERE t.session_id = sessions.id \
                             AND t.used_at IS NULL AND t.expires_at >= ?1)) LIMIT ?4)",
                    )
                    .and_then(|mut s| s.execute(params![now, revoked_before, idle_before, GC_BATCH]))
                    .map_err(backend)
                })
                .await?;
            collected.sessions += deleted as u64;
            if (deleted as i64) < GC_BATCH {
                break;
            }
            // Let this process's other writers in between batches.
            tokio::task::yield_now().await;
        }
        self.write(|conn| {
            conn.prepare_cached("DELETE FROM authorization_codes WHERE expires_at < ?")
                .and_then(|mut s| s.execute([revoked_before]))
                .and_then(|_| {
                    conn.prepare_cached("DELETE FROM dpop_proofs WHERE expires_at < ?")?
                        .execute([now])
                })
                .map_err(backend)
        })
        .await?;
        collected.users = self
            .write(|conn| {
                conn.prepare_cached(
                    "DELETE FROM users WHERE deleted_at IS NOT NULL \
                     AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.user_id = users.id)",
                )
                .and_then(|mut s| s.execute([]))
                .map_err(backend)
            })
            .await? as u64;
        Ok(collected)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use latchkey_core::rotation::BindingPolicy;

    #[test]
    fn positional_readers_match_the_column_lists() {
        assert_eq!(TOKEN_COLUMNS.split(',').count(), TOKEN_COLUMN_COUNT);
        assert_eq!(SESSION_COLUMNS.split(',').count(), SESSION_COLUMN_COUNT);
    }

    #[tokio::test]
    async fn a_rotation_whose_caller_has_gone_is_not_made() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        let user = User {
            id: "usr_1".into(),
            username: "alice".into(),
            password_hash: "$argon2id$placeholder".into(),
            disabled: false,
            created_at: 100,
        };
        store.insert_user(&user).await.unwrap();
        let session = Session {
            id: "ses_1".into(),
            user_id: user.id.clone(),
            client_id: None,
            scope: "profile".into(),
            created_at: 100,
            expires_at: 100_000,
            last_used_at: 100,
            revoked_at: None,
            revoked_reason: None,
            ip: "127.0.0.1".into(),
            user_agent: "t".into(),
            dpop_jkt: None,
        };
        let first = RefreshRecord {
            hash: TokenHash([1; 32]),
            session_id: session.id.clone(),
            parent: None,
            scope: "profile".into(),
            issued_at: 100,
            expires_at: 50_000,
            used_at: None,
            access_jti: "jti".into(),
            ip: "127.0.0.1".into(),
            user_agent: "t".into(),
        };
        store
            .create_session(
                &latchkey_core::session::SessionStart {
                    audit: AuditEvent::login(&session),
                    session: session.clone(),
                    first_token: first.clone(),
                },
                10,
            )
            .await
            .unwrap();
        let request = |hash: u8| RotationRequest {
            presented: TokenHash([hash; 32]),
            successor: TokenHash([hash + 1; 32]),
            client_id: None,
            expected_session: None,
            scope: None,
            access_jti: "jti2".into(),
            ip: "127.0.0.1".into(),
            user_agent: "t".into(),
            now: 200,
            dpop_jkt: None,
        };
        let policy = Policy {
            idle_ttl: 10_000,
            absolute_ttl: 100_000,
            reuse_grace: 0,
            binding_ip: BindingPolicy::Off,
            audit_refreshes: true,
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        drop(answer);
        let mut conn = store.inner.writer.lock().await;
        rotate_group(
            &mut conn,
            vec![RotationJob {
                policy,
                request: request(1),
                reply,
            }],
        );
        drop(conn);
        let (token, _) = store
            .refresh_token(&TokenHash([1; 32]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(token.used_at, None, "nobody was waiting: no rotation");
        // The token still rotates for a caller who waits.
        let outcome = store.rotate(&policy, &request(1)).await.unwrap();
        assert!(matches!(outcome, Outcome::Rotated { .. }), "{outcome:?}");
    }

    #[test]
    fn database_urls_name_a_file() {
        let ok = |url: &str| path_of(url).map(|p| p.display().to_string()).ok();
        assert_eq!(ok("sqlite://latchkey.db").as_deref(), Some("latchkey.db"));
        assert_eq!(
            ok("sqlite:///var/lib/l.db").as_deref(),
            Some("/var/lib/l.db")
        );
        assert_eq!(ok("sqlite:l.db").as_deref(), Some("l.db"));
        assert_eq!(ok("sqlite://l.db?mode=rwc").as_deref(), Some("l.db"));
        for bad in [
            "sqlite://",
            "sqlite::memory:",
            "sqlite://l.db?mode=ro",
            "postgres://x/y",
        ] {
            assert!(path_of(bad).is_err(), "{bad}");
        }
    }
}
