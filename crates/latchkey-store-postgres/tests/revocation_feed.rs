//! The database's revocation feed, on a fresh PostgreSQL schema: every way a
//! session stops being usable is announced when it commits, whoever makes
//! the change; refreshing and collecting garbage are not announced.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use latchkey_core::refresh::TokenHash;
use latchkey_core::rotation::{BindingPolicy, Policy, RevocationReason, RotationRequest};
use latchkey_core::store::roles::*;
use latchkey_core::store::{AuditEvent, Outcome, RefreshRecord, Session, User};
use latchkey_store_postgres::PgStore;
use sqlx::Connection;
use tokio::sync::mpsc;

/// Every session of this test is named so: other tests share the database,
/// and notification channels are per database, not per schema.
const PREFIX: &str = "ses_feedcase_";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn user(store: &PgStore, name: &str) -> User {
    let user = User {
        id: format!("usr_{name}"),
        username: name.to_owned(),
        password_hash: "$argon2id$placeholder".to_owned(),
        disabled: false,
        created_at: now(),
        email: None,
        email_verified: false,
        admin: false,
    };
    store.insert_user(&user).await.unwrap();
    user
}

async fn session(store: &PgStore, user: &User, name: &str, token: u8, expires_at: i64) -> String {
    let id = format!("{PREFIX}{name}");
    let at = now();
    let session = Session {
        id: id.clone(),
        user_id: user.id.clone(),
        client_id: None,
        scope: "profile".into(),
        created_at: at,
        auth_time: at,
        auth_method: latchkey_core::strength::AuthMethod::Password,
        expires_at,
        last_used_at: at,
        revoked_at: None,
        revoked_reason: None,
        ip: "127.0.0.1".into(),
        user_agent: "feed".into(),
        dpop_jkt: None,
    };
    let record = RefreshRecord {
        hash: TokenHash([token; 32]),
        session_id: id.clone(),
        parent: None,
        scope: "profile".into(),
        issued_at: at,
        expires_at: at + 3600,
        used_at: None,
        access_jti: "jti".into(),
        ip: "127.0.0.1".into(),
        user_agent: "feed".into(),
    };
    store
        .create_session(
            &latchkey_core::session::SessionStart {
                audit: AuditEvent::login(&session),
                device: None,
                session: session.clone(),
                first_token: record.clone(),
            },
            100,
        )
        .await
        .unwrap();
    id
}

/// The next announcement of this test's sessions.
async fn next(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    loop {
        let sid = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an announcement within 5 s")
            .expect("the feed is running");
        if sid.starts_with(PREFIX) {
            return sid;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_a_session_ends_is_announced_and_nothing_else() {
    let Some(url) = latchkey_store_tests::postgres_schema_url().await else {
        return;
    };
    let store = PgStore::open(&url).await.unwrap();
    let alice = user(&store, "alice").await;
    let carol = user(&store, "carol").await;
    let later = now() + 86_400;
    let revoked = session(&store, &alice, "revoked", 1, later).await;
    let by_hand = session(&store, &alice, "by_hand", 2, later).await;
    let deleted = session(&store, &alice, "deleted", 3, later).await;
    let shortened = session(&store, &alice, "shortened", 4, later).await;
    let refreshed = session(&store, &alice, "refreshed", 5, later).await;
    let ended = session(&store, &alice, "ended", 6, now() - 10).await;
    let last = session(&store, &alice, "last", 7, later).await;
    let mut carols = vec![
        session(&store, &carol, "carol1", 8, later).await,
        session(&store, &carol, "carol2", 9, later).await,
    ];

    let feed = store.revocation_feed().expect("PostgreSQL has a feed");
    let (connected_tx, mut connected_rx) = mpsc::unbounded_channel();
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let on_connected = move |revoked: Vec<String>| {
            let _ = connected_tx.send(revoked);
        };
        let on_revoked: latchkey_core::coordination::OnRevoked = Box::new(move |sid| {
            let _ = tx.send(sid);
        });
        let _ = feed.listen(&on_connected, &on_revoked).await;
    });
    let handed_over = tokio::time::timeout(Duration::from_secs(5), connected_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(handed_over.is_empty(), "the database itself is the record");

    // Through the store, as a server instance or the command line would.
    assert!(
        store
            .revoke_session(&revoked, RevocationReason::Logout, now())
            .await
            .unwrap()
    );
    assert_eq!(next(&mut rx).await, revoked);
    store.set_disabled(&carol.id, true, now()).await.unwrap();
    let mut announced = vec![next(&mut rx).await, next(&mut rx).await];
    announced.sort();
    carols.sort();
    assert_eq!(announced, carols);

    // By hand.
    let mut sql = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE sessions SET revoked_at = $1, revoked_reason = 'admin' WHERE id = $2")
        .bind(now())
        .bind(&by_hand)
        .execute(&mut sql)
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await, by_hand);
    sqlx::query("DELETE FROM sessions WHERE id = $1")
        .bind(&deleted)
        .execute(&mut sql)
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await, deleted);
    sqlx::query("UPDATE sessions SET expires_at = $1 WHERE id = $2")
        .bind(now())
        .bind(&shortened)
        .execute(&mut sql)
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await, shortened);

    // A refresh is not announced; garbage collection announces the expiries
    // it records (an expiry is an end: `ended`, and `shortened` once its
    // second has passed) and not the deletions that follow.
    let policy = Policy {
        idle_ttl: 3600,
        absolute_ttl: 86_400,
        reuse_grace: 0,
        binding_ip: BindingPolicy::Log,
        audit_refreshes: true,
    };
    let outcome = store
        .rotate(
            &policy,
            &RotationRequest {
                presented: TokenHash([5; 32]),
                successor: TokenHash([50; 32]),
                client_id: None,
                expected_session: None,
                scope: None,
                access_jti: "jti2".into(),
                ip: "127.0.0.1".into(),
                user_agent: "feed".into(),
                now: now(),
                dpop_jkt: None,
            },
        )
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Rotated { .. }), "{outcome:?}");
    let collected = store.collect_garbage(now(), 0, 0).await.unwrap();
    assert!(collected.absolute_expired >= 1, "{collected:?}");
    let (marked, _) = store.session_with_user(&ended).await.unwrap().unwrap();
    assert_eq!(marked.revoked_reason.as_deref(), Some("absolute_expired"));
    let mut announced = Vec::new();
    for _ in 0..collected.absolute_expired {
        announced.push(next(&mut rx).await);
    }
    assert!(announced.contains(&ended), "{announced:?}");
    let collected = store.collect_garbage(now(), now() + 1, 0).await.unwrap();
    assert!(collected.sessions >= 1);
    assert!(store.session_with_user(&ended).await.unwrap().is_none());
    assert!(store.session_with_user(&refreshed).await.unwrap().is_some());
    store
        .revoke_session(&last, RevocationReason::Logout, now())
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await, last);
}
