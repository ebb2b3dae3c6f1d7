//! What the outbox adds to a login and a logout in the storage layer, per
//! backend: a session created (its `login` event and first token, in one
//! transaction) and then revoked, with the event triggers of migration 0014
//! (`with_outbox`) and on the same schema with those triggers dropped
//! (`without_outbox`, the work before the outbox). The rest of a login
//! (Argon2id, signing) and of a logout is untouched by the outbox.
//!
//! ```text
//! cargo bench -p latchkey-store-tests --bench outbox
//! ```
//!
//! PostgreSQL is the local one of `scripts/services.sh` (or
//! `LATCHKEY_TEST_POSTGRES_URL`); without it that backend is skipped.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use latchkey_core::refresh::TokenHash;
use latchkey_core::rotation::{BindingPolicy, Policy, RevocationReason};
use latchkey_core::session::{NewSession, start};
use latchkey_core::store::{Store, User};
use latchkey_core::strength::AuthMethod;
use sqlx::Connection;

const NOW: i64 = 1_800_000_000;

const SESSION_TRIGGERS_SQLITE: &str =
    "DROP TRIGGER sessions_started_event; DROP TRIGGER sessions_ended_event;";
const SESSION_TRIGGERS_POSTGRES: &str = "DROP TRIGGER sessions_started_event ON sessions; \
     DROP TRIGGER sessions_ended_event ON sessions;";

fn hash(n: u64) -> TokenHash {
    let mut bytes = [9u8; 32];
    bytes[..8].copy_from_slice(&n.to_be_bytes());
    TokenHash(bytes)
}

async fn prepare(store: &dyn Store) -> User {
    let user = User {
        id: "usr_bench".into(),
        username: "bench".into(),
        password_hash: "$argon2id$placeholder".into(),
        disabled: false,
        created_at: NOW,
        email: None,
        email_verified: false,
        admin: false,
    };
    store.insert_user(&user).await.expect("user");
    user
}

/// One login's and one logout's storage work.
fn bench_backend(
    c: &mut Criterion,
    name: &str,
    rt: &tokio::runtime::Runtime,
    store: Arc<dyn Store>,
) {
    let user = rt.block_on(prepare(store.as_ref()));
    let policy = Policy {
        idle_ttl: 86400,
        absolute_ttl: 30 * 86400,
        reuse_grace: 0,
        binding_ip: BindingPolicy::Off,
        audit_refreshes: true,
    };
    let mut n = 0u64;
    c.bench_function(&format!("login_and_logout/{name}"), |b| {
        b.iter(|| {
            let id = format!("ses_{name}_{n}");
            let session = start(
                &policy,
                NewSession {
                    id: id.clone(),
                    user_id: &user.id,
                    client_id: None,
                    scope: "profile".into(),
                    first_token: hash(n),
                    access_jti: "jti".into(),
                    ip: "127.0.0.1",
                    user_agent: "bench",
                    now: NOW,
                    auth_time: NOW,
                    auth_method: AuthMethod::Password,
                    dpop_jkt: None,
                },
            );
            rt.block_on(store.create_session(&session, 1_000_000))
                .expect("create")
                .expect("enabled");
            assert!(
                rt.block_on(store.revoke_session(&id, RevocationReason::Logout, NOW + 1))
                    .expect("revoke")
            );
            n += 1;
        })
    });
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let order: &[bool] = if std::env::var_os("OUTBOX_BENCH_REVERSED").is_some() {
        &[false, true]
    } else {
        &[true, false]
    };
    for &outbox in order {
        let label = if outbox {
            "with_outbox"
        } else {
            "without_outbox"
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bench.db");
        let url = format!("sqlite://{}", path.display());
        let sqlite = rt
            .block_on(latchkey_store_sqlite::SqliteStore::open(&url))
            .expect("sqlite");
        if !outbox {
            let conn = rusqlite::Connection::open(&path).expect("open");
            conn.execute_batch(SESSION_TRIGGERS_SQLITE).expect("drop");
        }
        bench_backend(c, &format!("sqlite_{label}"), &rt, Arc::new(sqlite));

        match rt.block_on(latchkey_store_tests::postgres_schema_url()) {
            Some(url) => {
                let pg = rt
                    .block_on(latchkey_store_postgres::PgStore::open(&url))
                    .expect("postgres");
                if !outbox {
                    rt.block_on(async {
                        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
                        sqlx::raw_sql(SESSION_TRIGGERS_POSTGRES)
                            .execute(&mut conn)
                            .await
                            .expect("drop");
                    });
                }
                bench_backend(c, &format!("postgres_{label}"), &rt, Arc::new(pg));
            }
            None => eprintln!("postgres skipped: no PostgreSQL"),
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
