//! One refresh-token rotation in the storage layer, per backend: the
//! `IMMEDIATE` (SQLite) or `FOR UPDATE` (PostgreSQL) transaction that reads
//! the token and its session, decides, marks it used, stores its successor,
//! touches the session and appends the audit row. One caller, one rotation
//! at a time, so this is the latency of a lone rotation, commit included.
//!
//! ```text
//! cargo bench -p latchkey-store-tests --bench rotation
//! ```
//!
//! PostgreSQL is the local one of `scripts/services.sh` (or
//! `LATCHKEY_TEST_POSTGRES_URL`); without it that backend is skipped.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use latchkey_core::refresh::TokenHash;
use latchkey_core::rotation::{BindingPolicy, Policy, RotationRequest};
use latchkey_core::store::{AuditEvent, Outcome, RefreshRecord, Session, Store, User};

const NOW: i64 = 1_800_000_000;

fn hash(n: u64) -> TokenHash {
    let mut bytes = [7u8; 32];
    bytes[..8].copy_from_slice(&n.to_be_bytes());
    TokenHash(bytes)
}

/// A store with one user and one session whose first token is `hash(0)`.
async fn prepare(store: &dyn Store) {
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
    let session = Session {
        id: "ses_bench".into(),
        user_id: user.id.clone(),
        client_id: None,
        scope: "profile".into(),
        created_at: NOW,
        auth_time: NOW,
        auth_method: latchkey_core::strength::AuthMethod::Password,
        expires_at: NOW + 30 * 86400,
        last_used_at: NOW,
        revoked_at: None,
        revoked_reason: None,
        ip: "127.0.0.1".into(),
        user_agent: "bench".into(),
        dpop_jkt: None,
    };
    let token = RefreshRecord {
        hash: hash(0),
        session_id: session.id.clone(),
        parent: None,
        scope: "profile".into(),
        issued_at: NOW,
        expires_at: NOW + 14 * 86400,
        used_at: None,
        access_jti: "jti".into(),
        ip: "127.0.0.1".into(),
        user_agent: "bench".into(),
    };
    store
        .create_session(
            &latchkey_core::session::SessionStart {
                audit: AuditEvent::login(&session),
                device: None,
                session: session.clone(),
                first_token: token.clone(),
            },
            10,
        )
        .await
        .expect("session");
}

fn bench_backend(
    c: &mut Criterion,
    name: &str,
    rt: &tokio::runtime::Runtime,
    store: Arc<dyn Store>,
) {
    rt.block_on(prepare(store.as_ref()));
    let policy = Policy {
        idle_ttl: 86400,
        absolute_ttl: 30 * 86400,
        reuse_grace: 0,
        binding_ip: BindingPolicy::Off,
        audit_refreshes: true,
    };
    let mut n = 0u64;
    c.bench_function(&format!("rotation/{name}"), |b| {
        b.iter(|| {
            let request = RotationRequest {
                presented: hash(n),
                successor: hash(n + 1),
                client_id: None,
                expected_session: None,
                scope: None,
                access_jti: format!("jti{n}"),
                ip: "127.0.0.1".into(),
                user_agent: "bench".into(),
                now: NOW + 1,
                dpop_jkt: None,
            };
            let outcome = rt
                .block_on(store.rotate(&policy, &request))
                .expect("rotate");
            assert!(matches!(outcome, Outcome::Rotated { .. }), "{outcome:?}");
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
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let sqlite = rt
        .block_on(latchkey_store_sqlite::SqliteStore::open(&url))
        .expect("sqlite");
    bench_backend(c, "sqlite", &rt, Arc::new(sqlite));

    match rt.block_on(latchkey_store_tests::postgres_schema_url()) {
        Some(url) => {
            let pg = rt
                .block_on(latchkey_store_postgres::PgStore::open(&url))
                .expect("postgres");
            bench_backend(c, "postgres", &rt, Arc::new(pg));
        }
        None => eprintln!("rotation/postgres skipped: no PostgreSQL"),
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
