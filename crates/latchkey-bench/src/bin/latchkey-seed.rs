//! `latchkey-seed`: fills a Latchkey database with sessions, fast, for the
//! memory and growth benchmarks: each session gets one unused refresh token
//! (random 32-byte hash) and belongs to an existing user. With `--history`,
//! each session also has its `login` audit event and every tenth an outbox
//! event already sent, as a server that started them would have; with
//! `--expired`, the sessions ended 40 days ago (past their absolute end,
//! unmarked, as garbage collection finds them).
//!
//! ```text
//! latchkey user add seed --password-stdin <<< 'seed password'
//! latchkey-seed --database-url sqlite://latchkey.db --username seed --sessions 1000000
//! ```
//!
//! The rows are generated inside the database (a recursive CTE on SQLite,
//! `generate_series` on PostgreSQL), in one transaction, numbered from
//! `--first` so that seeding twice adds rows beside the others.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use rusqlite::OptionalExtension;
use sqlx::Connection;

/// Fills a Latchkey database with live sessions.
#[derive(Debug, Parser)]
struct Args {
    /// `sqlite://PATH` or `postgres://…` of a database `latchkey` has migrated.
    #[arg(long)]
    database_url: String,
    /// The user who owns the sessions (must exist).
    #[arg(long, default_value = "seed")]
    username: String,
    /// How many sessions.
    #[arg(long, default_value_t = 1_000_000)]
    sessions: i64,
    /// The number of the first session (ids are `ses_seed_N`).
    #[arg(long, default_value_t = 1)]
    first: i64,
    /// Sessions that ended 40 days ago, unmarked.
    #[arg(long)]
    expired: bool,
    /// An audit event per session and an outbox event per ten.
    #[arg(long)]
    history: bool,
}

// Parameters: 1 how many, 2 the user's name, 3 the sessions' start, 4 the
// first number.
const SQLITE: [&str; 2] = [
    "WITH RECURSIVE n(i) AS (SELECT ?4 UNION ALL SELECT i + 1 FROM n WHERE i < ?4 + ?1 - 1) \
     INSERT INTO sessions (id, user_id, client_id, scope, created_at, expires_at, last_used_at, revoked_at, revoked_reason, ip, user_agent) \
     SELECT 'ses_seed_' || i, (SELECT id FROM users WHERE username = ?2), NULL, 'profile', ?3, ?3 + 2592000, ?3, NULL, NULL, '127.0.0.1', 'latchkey-seed' FROM n",
    "WITH RECURSIVE n(i) AS (SELECT ?4 UNION ALL SELECT i + 1 FROM n WHERE i < ?4 + ?1 - 1) \
     INSERT INTO refresh_tokens (hash, session_id, parent_hash, scope, issued_at, expires_at, used_at, access_jti, ip, user_agent) \
     SELECT randomblob(32), 'ses_seed_' || i, NULL, 'profile', ?3, ?3 + 1209600, NULL, 'seed' || i, '127.0.0.1', 'latchkey-seed' FROM n WHERE ?2 IS NOT NULL",
];

const SQLITE_HISTORY: [&str; 2] = [
    "WITH RECURSIVE n(i) AS (SELECT ?4 UNION ALL SELECT i + 1 FROM n WHERE i < ?4 + ?1 - 1) \
     INSERT INTO audit_events (at, kind, user_id, session_id, client_id, ip, user_agent, detail) \
     SELECT ?3, 'login', (SELECT id FROM users WHERE username = ?2), 'ses_seed_' || i, NULL, '127.0.0.1', 'latchkey-seed', '' FROM n",
    "WITH RECURSIVE n(i) AS (SELECT ?4 UNION ALL SELECT i + 10 FROM n WHERE i + 10 < ?4 + ?1) \
     INSERT INTO outbox (id, type, at, data, dispatched_at) \
     SELECT 'evt_seed_' || i, 'session.started', ?3, '{\"session_id\":\"ses_seed_' || i || '\"}', ?3 FROM n WHERE ?2 IS NOT NULL",
];

const POSTGRES: [&str; 2] = [
    "INSERT INTO sessions (id, user_id, client_id, scope, created_at, expires_at, last_used_at, revoked_at, revoked_reason, ip, user_agent) \
     SELECT 'ses_seed_' || i, (SELECT id FROM users WHERE username = $2), NULL, 'profile', $3, $3 + 2592000, $3, NULL, NULL, '127.0.0.1', 'latchkey-seed' \
     FROM generate_series($4, $4 + $1 - 1) AS i",
    "INSERT INTO refresh_tokens (hash, session_id, parent_hash, scope, issued_at, expires_at, used_at, access_jti, ip, user_agent) \
     SELECT decode(md5(random()::text) || md5(random()::text), 'hex'), 'ses_seed_' || i, NULL, 'profile', $3, $3 + 1209600, NULL, 'seed' || i, '127.0.0.1', 'latchkey-seed' \
     FROM generate_series($4, $4 + $1 - 1) AS i WHERE $2::text IS NOT NULL",
];

const POSTGRES_HISTORY: [&str; 2] = [
    "INSERT INTO audit_events (at, kind, user_id, session_id, client_id, ip, user_agent, detail) \
     SELECT $3, 'login', (SELECT id FROM users WHERE username = $2), 'ses_seed_' || i, NULL, '127.0.0.1', 'latchkey-seed', '' \
     FROM generate_series($4, $4 + $1 - 1) AS i",
    "INSERT INTO outbox (id, type, at, data, dispatched_at) \
     SELECT 'evt_seed_' || i, 'session.started', $3, '{\"session_id\":\"ses_seed_' || i || '\"}', $3 \
     FROM generate_series($4, $4 + $1 - 1, 10) AS i WHERE $2::text IS NOT NULL",
];

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    // Started 70 days ago, the sessions (30 days long) ended 40 days ago.
    let start = if args.expired { now - 70 * 86_400 } else { now };
    let started = Instant::now();
    if args.database_url.starts_with("sqlite:") {
        let path = args
            .database_url
            .trim_start_matches("sqlite:")
            .trim_start_matches("//");
        let mut db = rusqlite::Connection::open(path).context("open the database")?;
        let tx = db.transaction()?;
        // The trigger that writes each new session's `session.started`
        // event would leave one waiting event per seeded session, a backlog
        // the server's dispatcher then works through beside the benchmark's
        // load (ten million at the largest size). SQLite cannot disable a
        // trigger: it is dropped while seeding and created again from its
        // own text. `--history` writes the outbox rows itself.
        let started_event: Option<String> = tx
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'sessions_started_event'",
                [],
                |row| row.get(0),
            )
            .optional()?;
        if started_event.is_some() {
            tx.execute("DROP TRIGGER sessions_started_event", [])?;
        }
        let history: &[&str] = if args.history { &SQLITE_HISTORY } else { &[] };
        for sql in SQLITE.iter().chain(history) {
            tx.execute(
                sql,
                rusqlite::params![args.sessions, args.username, start, args.first],
            )?;
        }
        if let Some(sql) = started_event {
            tx.execute(&sql, [])?;
        }
        tx.commit()?;
    } else if args.database_url.starts_with("postgres") {
        let mut db = sqlx::PgConnection::connect(&args.database_url)
            .await
            .context("open the database")?;
        let mut tx = db.begin().await?;
        // The trigger that writes each new session's `session.started` event
        // asks whether the user had a session from that agent before; every
        // seeded session is the same user's, and once its plan is cached it
        // reads all of them, each time. Off while seeding: `--history`
        // writes the outbox rows itself.
        sqlx::query("ALTER TABLE sessions DISABLE TRIGGER sessions_started_event")
            .execute(&mut *tx)
            .await?;
        let history: &[&str] = if args.history { &POSTGRES_HISTORY } else { &[] };
        for sql in POSTGRES.iter().chain(history) {
            sqlx::query(sql)
                .bind(args.sessions)
                .bind(&args.username)
                .bind(start)
                .bind(args.first)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("ALTER TABLE sessions ENABLE TRIGGER sessions_started_event")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    } else {
        bail!("--database-url must be sqlite://… or postgres://…");
    }
    println!(
        "seeded {} sessions in {:.1} s",
        args.sessions,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
