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
//! `fsync`) run on a background thread of the store, beside the writer. The
//! WAL starts again from its beginning only after a checkpoint has copied
//! all of it, which that thread never manages while commits keep coming (the
//! writer appends as it copies); so once the WAL passes
//! `WAL_BACKSTOP_PAGES` the writer checkpoints itself, after a commit:
//! it copies the pages the thread has not yet copied and waits for their
//! `fsync`, and the WAL starts again. Under continuous refreshes that is a
//! short wait every few tenths of a second (BENCHMARKS.md).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use latchkey_core::store::roles::*;
//! let store = latchkey_store_sqlite::SqliteStore::open("sqlite://latchkey.db").await?;
//! let users = store.list_users().await?;
//! # Ok(()) }
//! ```

// One module per storage role (each an `impl` of its trait), beside the
// row readers and writers they share and the grouped rotation.
mod accounts;
mod audit;
mod clients;
mod codes;
mod console;
mod devices;
mod factors;
mod grouped;
mod keys;
mod migrate;
mod outbox;
mod passkeys;
mod proofs;
mod rows;
mod sessions;
mod users;

use grouped::*;
use rows::*;
use sessions::*;

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
    RefreshRecord, Session, SessionChanges, StoreError, StoreResult, StoredKey, User, roles::*,
};
use latchkey_core::strength::AuthMethod;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior, params};

/// Read-only connections kept open. Reads never wait on a statement, so a
/// few cover every runtime thread that could be reading at once.
const READERS: usize = 4;

/// How often the background thread checkpoints the WAL.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// WAL pages after which a committing writer checkpoints by itself (SQLite's
/// automatic checkpoint), so that the WAL starts again: about 80 MB. Under a
/// steady stream of commits it is reached whatever the background thread
/// does; a larger value makes the writer's waits rarer but longer.
const WAL_BACKSTOP_PAGES: u32 = 20_000;

/// Sessions marked or deleted per garbage-collection transaction: bounds
/// how long one collection holds the writer (a few milliseconds).
const GC_BATCH: i64 = 100;

/// Sessions read per transaction of the collection's walk for idle ones.
const GC_SCAN: i64 = 100;

/// Changes kept in the change log past each garbage collection. An
/// instance that falls further behind forgets the sessions it cached.
const SESSION_CHANGES_KEPT: i64 = 10_000;

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
            email: None,
            email_verified: false,
            admin: false,
        };
        store.insert_user(&user).await.unwrap();
        let session = Session {
            id: "ses_1".into(),
            user_id: user.id.clone(),
            client_id: None,
            scope: "profile".into(),
            created_at: 100,
            auth_time: 100,
            auth_method: latchkey_core::strength::AuthMethod::Password,
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
                    device: None,
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
