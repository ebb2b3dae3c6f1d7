//! `latchkey-seed` on a SQLite database the store has migrated: the rows it
//! promises, no backlog of waiting events, and the `session.started`
//! trigger as it was.

use std::process::Command;

use latchkey_core::store::{User, UserStore};
use latchkey_store_sqlite::SqliteStore;

#[tokio::test]
async fn seeding_sqlite_leaves_no_waiting_events_and_keeps_the_trigger() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("latchkey.db");
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::open(&url).await.expect("open and migrate");
    store
        .insert_user(&User {
            id: "usr_seed".to_owned(),
            username: "seed".to_owned(),
            password_hash: "$argon2id$placeholder".to_owned(),
            disabled: false,
            created_at: 1_700_000_000,
            email: None,
            email_verified: false,
            admin: false,
        })
        .await
        .expect("insert the seed user");
    drop(store);

    let status = Command::new(env!("CARGO_BIN_EXE_latchkey-seed"))
        .args([
            "--database-url",
            &url,
            "--username",
            "seed",
            "--sessions",
            "50",
            "--history",
        ])
        .status()
        .expect("run latchkey-seed");
    assert!(status.success(), "latchkey-seed failed: {status}");

    let db = rusqlite::Connection::open(&path).expect("open the seeded file");
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).expect(sql) };
    assert_eq!(
        count("SELECT count(*) FROM sessions WHERE user_id = 'usr_seed'"),
        50
    );
    assert_eq!(count("SELECT count(*) FROM refresh_tokens"), 50);
    assert_eq!(
        count("SELECT count(*) FROM audit_events WHERE kind = 'login'"),
        50
    );
    // One event per ten sessions, already sent; none waiting.
    assert_eq!(
        count("SELECT count(*) FROM outbox WHERE type = 'session.started'"),
        5
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM outbox WHERE type = 'session.started' AND dispatched_at IS NULL"
        ),
        0
    );

    // The trigger is back: a session started after the seed has its event.
    db.execute_batch(
        "CREATE TEMP TABLE one AS SELECT * FROM sessions LIMIT 1;
         UPDATE one SET id = 'ses_after_seed';
         INSERT INTO sessions SELECT * FROM one;",
    )
    .expect("start a session");
    assert_eq!(
        count(
            "SELECT count(*) FROM outbox WHERE type = 'session.started' AND dispatched_at IS NULL \
             AND json_extract(data, '$.session_id') = 'ses_after_seed'"
        ),
        1
    );
}
