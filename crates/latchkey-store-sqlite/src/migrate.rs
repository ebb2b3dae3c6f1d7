//! Schema migrations: the files of `migrations/`, applied in order, each
//! once. `PRAGMA user_version` records how many have been applied; it lives
//! in the database header and commits with the migration that sets it.

use latchkey_core::store::{StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::backend;

/// Never edit an applied migration: add a new one.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_session_queries.sql"),
    include_str!("../migrations/0003_key_rotation.sql"),
    include_str!("../migrations/0004_token_rows_in_issue_order.sql"),
    include_str!("../migrations/0005_deleted_users.sql"),
    include_str!("../migrations/0006_authorization_code.sql"),
    include_str!("../migrations/0007_dpop.sql"),
    include_str!("../migrations/0008_client_management.sql"),
    include_str!("../migrations/0009_device_grants.sql"),
    include_str!("../migrations/0010_factors.sql"),
    include_str!("../migrations/0011_sign_in_strength.sql"),
    include_str!("../migrations/0012_passkeys.sql"),
    include_str!("../migrations/0013_end_reasons.sql"),
    include_str!("../migrations/0014_outbox.sql"),
    include_str!("../migrations/0015_accounts.sql"),
    include_str!("../migrations/0016_admins.sql"),
    include_str!("../migrations/0017_console.sql"),
    include_str!("../migrations/0018_growth.sql"),
];

/// Brings the schema up to date, in one `IMMEDIATE` transaction, so two
/// processes opening a new file at once migrate it once.
pub(crate) fn run(conn: &mut Connection) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend)?;
    let mut applied: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(backend)?;
    if applied == 0 {
        applied = recorded_by_earlier_versions(&tx)?;
    }
    let known = MIGRATIONS.len() as i64;
    if applied > known {
        return Err(StoreError::Corrupt(format!(
            "the database has {applied} migrations applied, this version knows {known}: \
             it was written by a newer Latchkey"
        )));
    }
    for sql in &MIGRATIONS[applied as usize..] {
        tx.execute_batch(sql).map_err(backend)?;
    }
    // PRAGMA takes no bound parameters; `known` is a constant of this file.
    tx.execute_batch(&format!("PRAGMA user_version = {known}"))
        .map_err(backend)?;
    tx.commit().map_err(backend)
}

/// Databases made before `user_version` was used recorded their migrations
/// in a `_sqlx_migrations` table.
fn recorded_by_earlier_versions(conn: &Connection) -> StoreResult<i64> {
    let exists = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            [],
            |_| Ok(()),
        )
        .optional()
        .map_err(backend)?
        .is_some();
    if !exists {
        return Ok(0);
    }
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success",
        [],
        |r| r.get(0),
    )
    .map_err(backend)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn version(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn migrations_apply_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        run(&mut conn).unwrap();
        assert_eq!(version(&conn), MIGRATIONS.len() as i64);
        // A second run finds nothing to do (re-running 0001 would fail:
        // its tables exist).
        run(&mut conn).unwrap();
        assert_eq!(version(&conn), MIGRATIONS.len() as i64);
    }

    #[test]
    fn migrations_recorded_by_earlier_versions_are_not_reapplied() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, success BOOLEAN NOT NULL); \
             INSERT INTO _sqlx_migrations VALUES (1, TRUE);",
        )
        .unwrap();
        run(&mut conn).unwrap();
        assert_eq!(version(&conn), MIGRATIONS.len() as i64);
        // 0003 ran: its column exists.
        conn.query_row("SELECT COUNT(activates_at) FROM signing_keys", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap();
    }

    #[test]
    fn tokens_keep_their_rows_and_rules_across_the_move_to_issue_order() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 3; \
             INSERT INTO users (id, username, password_hash, disabled, created_at) \
                 VALUES ('usr_a', 'a', 'x', 0, 1); \
             INSERT INTO sessions (id, user_id, client_id, scope, created_at, expires_at, \
                 last_used_at, ip, user_agent) VALUES ('ses_a', 'usr_a', NULL, '', 1, 9, 1, '', ''); \
             INSERT INTO refresh_tokens (hash, session_id, parent_hash, scope, issued_at, \
                 expires_at, used_at, access_jti, ip, user_agent) \
                 VALUES (x'01', 'ses_a', NULL, 'profile', 1, 9, 5, 'j1', '127.0.0.1', 'ua'), \
                        (x'02', 'ses_a', x'01', 'profile', 5, 9, NULL, 'j2', '127.0.0.1', 'ua');",
        )
        .unwrap();
        run(&mut conn).unwrap();
        let kept: (String, Option<Vec<u8>>, Option<i64>, String) = conn
            .query_row(
                "SELECT session_id, parent_hash, used_at, access_jti FROM refresh_tokens WHERE hash = x'02'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(kept, ("ses_a".into(), Some(vec![1]), None, "j2".into()));
        // Still unique by hash, still tied to a session, still deleted with it.
        let again = conn.execute(
            "INSERT INTO refresh_tokens (hash, session_id, scope, issued_at, expires_at, access_jti, ip, user_agent) \
             VALUES (x'02', 'ses_a', '', 1, 9, 'j', '', '')",
            [],
        );
        assert!(again.is_err());
        let orphan = conn.execute(
            "INSERT INTO refresh_tokens (hash, session_id, scope, issued_at, expires_at, access_jti, ip, user_agent) \
             VALUES (x'03', 'ses_none', '', 1, 9, 'j', '', '')",
            [],
        );
        assert!(orphan.is_err());
        conn.execute("DELETE FROM sessions WHERE id = 'ses_a'", [])
            .unwrap();
        let left: i64 = conn
            .query_row("SELECT COUNT(*) FROM refresh_tokens", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        assert!(matches!(run(&mut conn), Err(StoreError::Corrupt(_))));
    }
}
