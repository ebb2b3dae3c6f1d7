//! One conformance suite for every storage backend. A backend's tests call
//! [`suite!`] with an expression that yields a fresh, empty store:
//!
//! ```ignore
//! latchkey_store_tests::suite!(fresh_store().await);
//! ```
//!
//! Each case is also a public function, for a backend that wants to wrap it.

// This crate is test code: a case that cannot unwrap has failed.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

mod accounts;
mod console;
mod devices;
mod factors;
mod outbox;
mod passkeys;

pub use accounts::*;
pub use console::*;
pub use devices::*;
pub use factors::*;
pub use outbox::*;
pub use passkeys::*;

use latchkey_core::refresh::TokenHash;
use latchkey_core::rotation::{
    BindingPolicy, Policy, Rejection, RevocationReason, RotationRequest,
};
use latchkey_core::session::{self, NewSession, SessionStart};
use latchkey_core::store::{
    AuditEvent, AuditFilter, Outcome, RefreshRecord, Session, Store, StoreError, User,
};
use latchkey_core::strength::AuthMethod;

const NOW: i64 = 1_800_000_000;

/// The PostgreSQL server the tests use: `LATCHKEY_TEST_POSTGRES_URL`, or the
/// local one `scripts/services.sh` starts.
pub fn postgres_url() -> String {
    std::env::var("LATCHKEY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://latchkey:latchkey@127.0.0.1:5432/latchkey".to_owned())
}

/// A URL for a fresh, empty schema on the test server, so that tests never
/// share state. Without a reachable server this prints that the test skips
/// and returns `None`, except under `CI`, where it fails.
pub async fn postgres_schema_url() -> Option<String> {
    use sqlx::Connection;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let base = postgres_url();
    let mut admin = match sqlx::PgConnection::connect(&base).await {
        Ok(conn) => conn,
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!("PostgreSQL is required under CI but {base} is not reachable: {e}");
            }
            eprintln!(
                "skipping: PostgreSQL not reachable at {base} ({e}); run scripts/services.sh"
            );
            return None;
        }
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let schema = format!("t_{}_{nanos}_{n}", std::process::id());
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .expect("create test schema");
    let separator = if base.contains('?') { '&' } else { '?' };
    Some(format!(
        "{base}{separator}options=-c%20search_path%3D{schema}"
    ))
}

/// Generates one `#[tokio::test]` per case; `$store` must evaluate (in an
/// async context) to a fresh `Option<Arc<dyn Store>>`, `None` meaning that
/// the backend's service is not available and the case is skipped.
#[macro_export]
macro_rules! suite {
    ($store:expr) => {
        $crate::suite!(@cases $store;
            users_are_unique_by_name,
            rotation_consumes_once_and_links_successor,
            concurrent_rotations_have_one_winner,
            reuse_revokes_the_session,
            grace_replays_the_same_successor,
            refusals_change_nothing,
            session_cap_revokes_the_oldest,
            a_new_session_never_evicts_itself,
            a_failed_session_creation_changes_nothing,
            disabling_a_user_revokes_their_sessions,
            first_secret_wins,
            live_sessions_and_revoking_ones_own,
            audit_events_filter_newest_first,
            garbage_collection_marks_expiries_and_keeps_what_detects_reuse,
            adding_a_key_retires_the_active_ones,
            the_revocation_feed_lists_recent_revocations,
            simultaneous_rotations_of_many_sessions_all_commit,
            the_cap_evicts_in_creation_order_within_one_second,
            no_session_outlives_the_disabling_of_its_user,
            a_narrowed_refresh_keeps_the_session_scope,
            deleting_a_user_revokes_everything_and_frees_the_name,
            users_page_by_id,
            audit_pages_by_id_and_time,
            a_code_is_redeemed_once_whatever_arrives_at_once,
            consent_is_remembered_per_user_and_client,
            a_proof_is_recorded_once_whatever_arrives_at_once,
            a_session_bound_to_a_key_refreshes_only_with_it,
            pruning_the_audit_trail_deletes_only_what_is_older,
            a_routine_refresh_writes_no_audit_row_unless_asked,
            one_clients_sessions_never_evict_anothers,
            clients_are_changed_disabled_and_removed,
            a_device_grant_is_answered_once,
            device_polls_are_decided_one_at_a_time,
            an_authenticator_app_is_confirmed_once_and_its_codes_used_once,
            a_second_step_dies_after_its_failures_and_is_spent_once,
            a_passkey_is_registered_once_and_its_counter_only_goes_up,
            a_ceremony_is_taken_once_within_its_life_and_its_cap,
            every_change_writes_its_event,
            an_ended_session_of_a_client_is_told_to_it,
            a_delivery_is_claimed_once_whatever_claims_at_once,
            webhooks_are_capped_whatever_arrives_at_once,
            a_failing_receiver_postpones_its_others,
            addresses_are_unique_without_regard_to_case,
            a_verification_link_is_spent_once_and_dies_with_its_address,
            the_newest_reset_link_wins_and_is_spent_once,
            a_change_keeps_its_session_and_not_me_ends_one,
            a_new_device_is_noticed_and_a_known_one_is_not,
            remembered_devices_are_capped_per_user,
            activity_added_at_once_is_all_counted,
            users_and_live_sessions_are_counted,
            counts_hold_whatever_changes_at_once,
            the_change_log_names_what_ends_sessions,
            collection_marks_every_idle_session_page_by_page,
            users_are_found_by_a_prefix,
        );
    };
    (@cases $store:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                if let Some(store) = $store {
                    $crate::$case(store).await;
                }
            }
        )*
    };
}

fn policy(grace: i64) -> Policy {
    Policy {
        idle_ttl: 3600,
        absolute_ttl: 86400,
        reuse_grace: grace,
        binding_ip: BindingPolicy::Log,
        audit_refreshes: true,
    }
}

fn hash(n: u8) -> TokenHash {
    TokenHash([n; 32])
}

async fn user(store: &dyn Store, name: &str) -> User {
    let user = User {
        id: format!("usr_{name}"),
        username: name.to_owned(),
        password_hash: "$argon2id$placeholder".to_owned(),
        disabled: false,
        created_at: NOW,
        email: None,
        email_verified: false,
        admin: false,
    };
    store.insert_user(&user).await.expect("insert user");
    user
}

/// What a login of `user` at `at` writes: session `id` (scope `email
/// profile`, a day long) and its first token `first` (an hour idle).
fn login_start(user: &User, id: &str, first: TokenHash, at: i64) -> SessionStart {
    session::start(
        &Policy {
            idle_ttl: 3600,
            absolute_ttl: 86400,
            reuse_grace: 0,
            binding_ip: BindingPolicy::Log,
            audit_refreshes: true,
        },
        NewSession {
            id: id.to_owned(),
            user_id: &user.id,
            client_id: None,
            scope: "email profile".into(),
            first_token: first,
            access_jti: "jti0".into(),
            ip: "127.0.0.1",
            user_agent: "suite",
            now: at,
            auth_time: at - 5,
            auth_method: AuthMethod::PasswordAndOtp,
            dpop_jkt: None,
        },
    )
}

async fn session(
    store: &dyn Store,
    user: &User,
    id: &str,
    first: TokenHash,
    at: i64,
    cap: u32,
) -> Vec<String> {
    store
        .create_session(&login_start(user, id, first, at), cap)
        .await
        .expect("create session")
        .expect("the user is enabled")
}

fn request(presented: TokenHash, successor: TokenHash, now: i64) -> RotationRequest {
    RotationRequest {
        presented,
        successor,
        client_id: None,
        expected_session: None,
        scope: None,
        access_jti: "jti".into(),
        ip: "127.0.0.1".into(),
        user_agent: "suite".into(),
        dpop_jkt: None,
        now,
    }
}

async fn is_revoked(store: &dyn Store, id: &str) -> bool {
    let (session, _) = store
        .session_with_user(id)
        .await
        .expect("read")
        .expect("session exists");
    session.revoked_at.is_some()
}

/// A username is unique; lookups by name and id agree.
pub async fn users_are_unique_by_name(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    let again = User {
        id: "usr_other".into(),
        ..alice.clone()
    };
    assert!(matches!(
        store.insert_user(&again).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.user_by_name("alice").await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.user_by_id(&alice.id).await.unwrap(), Some(alice));
    assert_eq!(store.user_by_name("bob").await.unwrap(), None);
}

/// A rotation marks the token used and stores the successor, linked to it.
pub async fn rotation_consumes_once_and_links_successor(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    session(store.as_ref(), &alice, "ses_1", hash(1), NOW, 10).await;
    let outcome = store
        .rotate(&policy(0), &request(hash(1), hash(2), NOW + 5))
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Rotated { .. }), "{outcome:?}");
    let (old, _) = store.refresh_token(&hash(1)).await.unwrap().unwrap();
    assert_eq!(old.used_at, Some(NOW + 5));
    let (new, session) = store.refresh_token(&hash(2)).await.unwrap().unwrap();
    assert_eq!(new.parent, Some(hash(1)));
    assert_eq!(new.used_at, None);
    assert_eq!(new.session_id, "ses_1");
    assert_eq!(session.last_used_at, NOW + 5);
    let audit = AuditFilter {
        kind: Some("refresh".into()),
        limit: 10,
        ..Default::default()
    };
    let events = store.audit_events(&audit).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].session_id.as_deref(), Some("ses_1"));
    assert_eq!(events[0].user_id.as_deref(), Some("usr_alice"));
    assert_eq!(events[0].at, NOW + 5);
    let unknown = store
        .rotate(&policy(0), &request(hash(9), hash(10), NOW))
        .await
        .unwrap();
    assert_eq!(unknown, Outcome::Rejected(Rejection::Unknown));
}

/// Of 20 simultaneous rotations of one token, exactly one succeeds.
pub async fn concurrent_rotations_have_one_winner(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    session(store.as_ref(), &alice, "ses_1", hash(1), NOW, 10).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .rotate(&policy(0), &request(hash(1), hash(2), NOW + 1))
                .await
                .unwrap()
        }));
    }
    let mut rotated = 0;
    for task in tasks {
        match task.await.unwrap() {
            Outcome::Rotated { .. } => rotated += 1,
            Outcome::Revoked { reason, .. } => assert_eq!(reason, RevocationReason::Reuse),
            Outcome::Rejected(why) => assert_eq!(why, Rejection::SessionRevoked),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(rotated, 1);
}

/// Simultaneous rotations of different sessions all succeed and are all
/// stored, whatever refusals run beside them (an unknown token, a reused
/// one): one refusal never undoes another's rotation.
pub async fn simultaneous_rotations_of_many_sessions_all_commit(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    for n in 1..=40u8 {
        session(
            store.as_ref(),
            &alice,
            &format!("ses_{n}"),
            hash(n),
            NOW,
            100,
        )
        .await;
    }
    let mut tasks = Vec::new();
    for n in 1..=40u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let rotated = store
                .rotate(&policy(0), &request(hash(n), hash(100 + n), NOW + 1))
                .await
                .unwrap();
            let unknown = store
                .rotate(&policy(0), &request(hash(250), hash(251), NOW + 1))
                .await
                .unwrap();
            (n, rotated, unknown)
        }));
    }
    for task in tasks {
        let (n, rotated, unknown) = task.await.unwrap();
        assert!(
            matches!(rotated, Outcome::Rotated { .. }),
            "{n}: {rotated:?}"
        );
        assert_eq!(unknown, Outcome::Rejected(Rejection::Unknown));
        let (old, _) = store.refresh_token(&hash(n)).await.unwrap().unwrap();
        assert_eq!(old.used_at, Some(NOW + 1));
        let (new, session) = store.refresh_token(&hash(100 + n)).await.unwrap().unwrap();
        assert_eq!(new.parent, Some(hash(n)));
        assert_eq!(session.id, format!("ses_{n}"));
        assert_eq!(session.revoked_at, None);
    }
    assert!(store.refresh_token(&hash(251)).await.unwrap().is_none());
}

/// Presenting a rotated token revokes the session: the successor dies too.
pub async fn reuse_revokes_the_session(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    session(store.as_ref(), &alice, "ses_1", hash(1), NOW, 10).await;
    store
        .rotate(&policy(0), &request(hash(1), hash(2), NOW + 1))
        .await
        .unwrap();
    let replay = store
        .rotate(&policy(0), &request(hash(1), hash(2), NOW + 2))
        .await
        .unwrap();
    assert!(
        matches!(
            replay,
            Outcome::Revoked {
                reason: RevocationReason::Reuse,
                ..
            }
        ),
        "{replay:?}"
    );
    assert!(is_revoked(store.as_ref(), "ses_1").await);
    let successor = store
        .rotate(&policy(0), &request(hash(2), hash(3), NOW + 3))
        .await
        .unwrap();
    assert_eq!(successor, Outcome::Rejected(Rejection::SessionRevoked));
}

/// Within the grace window a retry gets the same successor; after it, theft.
pub async fn grace_replays_the_same_successor(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    session(store.as_ref(), &alice, "ses_1", hash(1), NOW, 10).await;
    store
        .rotate(&policy(10), &request(hash(1), hash(2), NOW))
        .await
        .unwrap();
    let retry = store
        .rotate(&policy(10), &request(hash(1), hash(2), NOW + 10))
        .await
        .unwrap();
    assert!(matches!(retry, Outcome::Replayed { .. }), "{retry:?}");
    assert!(!is_revoked(store.as_ref(), "ses_1").await);
    // The successor stands as stored: a retry naming another one gets
    // nothing, and no second token was stored.
    let other = store
        .rotate(&policy(10), &request(hash(1), hash(7), NOW + 10))
        .await
        .unwrap();
    assert_eq!(other, Outcome::Rejected(Rejection::Unknown));
    assert!(store.refresh_token(&hash(7)).await.unwrap().is_none());
    let (successor, _) = store.refresh_token(&hash(2)).await.unwrap().unwrap();
    assert_eq!(successor.parent, Some(hash(1)));
    assert_eq!(successor.used_at, None);
    let next = store
        .rotate(&policy(10), &request(hash(2), hash(3), NOW + 11))
        .await
        .unwrap();
    assert!(matches!(next, Outcome::Rotated { .. }), "{next:?}");
    let late = store
        .rotate(&policy(10), &request(hash(1), hash(2), NOW + 11))
        .await
        .unwrap();
    assert!(matches!(late, Outcome::Revoked { .. }), "{late:?}");
}

/// A refused rotation leaves the token usable.
pub async fn refusals_change_nothing(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    session(store.as_ref(), &alice, "ses_1", hash(1), NOW, 10).await;
    let wrong_session = RotationRequest {
        expected_session: Some("ses_other".into()),
        ..request(hash(1), hash(2), NOW)
    };
    assert_eq!(
        store.rotate(&policy(0), &wrong_session).await.unwrap(),
        Outcome::Rejected(Rejection::SessionMismatch)
    );
    // A first-party token presented by a client.
    let wrong_client = RotationRequest {
        client_id: Some("lkc_x".into()),
        ..request(hash(1), hash(2), NOW)
    };
    assert_eq!(
        store.rotate(&policy(0), &wrong_client).await.unwrap(),
        Outcome::Rejected(Rejection::ClientMismatch)
    );
    let (untouched, its_session) = store.refresh_token(&hash(1)).await.unwrap().unwrap();
    assert_eq!(untouched.used_at, None);
    assert!(its_session.revoked_at.is_none());
    assert!(store.refresh_token(&hash(2)).await.unwrap().is_none());
    // Still usable by its rightful holder.
    assert!(matches!(
        store
            .rotate(&policy(0), &request(hash(1), hash(2), NOW))
            .await
            .unwrap(),
        Outcome::Rotated { .. }
    ));
    // Expired: idle lifetime passed.
    session(store.as_ref(), &alice, "ses_2", hash(5), NOW, 10).await;
    // Issued in second NOW with an idle lifetime of 3600 s: usable through
    // second NOW + 3600, expired from NOW + 3601 on.
    let late = request(hash(5), hash(6), NOW + 3601);
    assert_eq!(
        store.rotate(&policy(0), &late).await.unwrap(),
        Outcome::Rejected(Rejection::TokenExpired)
    );
    let (token, _) = store.refresh_token(&hash(5)).await.unwrap().unwrap();
    assert_eq!(token.used_at, None);
    assert!(store.refresh_token(&hash(6)).await.unwrap().is_none());
}

/// Past the cap, the oldest live sessions are revoked.
pub async fn session_cap_revokes_the_oldest(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    for i in 0..3u8 {
        let evicted = session(
            store.as_ref(),
            &alice,
            &format!("ses_{i}"),
            hash(i + 1),
            NOW + i64::from(i),
            3,
        )
        .await;
        assert!(evicted.is_empty());
    }
    let evicted = session(store.as_ref(), &alice, "ses_3", hash(4), NOW + 3, 3).await;
    assert_eq!(evicted, vec!["ses_0".to_string()]);
    assert!(is_revoked(store.as_ref(), "ses_0").await);
    assert!(!is_revoked(store.as_ref(), "ses_1").await);
    assert!(!is_revoked(store.as_ref(), "ses_3").await);
    // Each creation and each revocation by the cap is in the audit trail,
    // written with the session.
    let events = |kind: &str| AuditFilter {
        user_id: Some(alice.id.clone()),
        kind: Some(kind.into()),
        limit: 10,
        ..AuditFilter::default()
    };
    let logins = store.audit_events(&events("login")).await.unwrap();
    let ids: Vec<_> = logins
        .iter()
        .filter_map(|e| e.session_id.as_deref())
        .collect();
    assert_eq!(ids, ["ses_3", "ses_2", "ses_1", "ses_0"]);
    assert_eq!(logins[0].at, NOW + 3);
    assert_eq!(logins[0].ip.as_deref(), Some("127.0.0.1"));
    let revoked = store
        .audit_events(&events("session_revoked"))
        .await
        .unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].session_id.as_deref(), Some("ses_0"));
    assert_eq!(revoked[0].detail, "session_cap");
    assert_eq!(revoked[0].at, NOW + 3);
}

/// The cap is per user and client: sessions through a third-party client
/// evict only that client's oldest, never the user's own first-party ones.
pub async fn one_clients_sessions_never_evict_anothers(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    let client = latchkey_core::store::Client {
        id: "lkc_third".into(),
        name: "third".into(),
        secret_hash: None,
        scope: "profile".into(),
        created_at: NOW,
        redirect_uris: vec!["https://third.example/cb".into()],
        first_party: false,
        disabled: false,
        tokens_valid_after: 0,
        backchannel_logout_uri: None,
    };
    store.insert_client(&client).await.unwrap();
    for i in 0..2u8 {
        session(
            store.as_ref(),
            &alice,
            &format!("own_{i}"),
            hash(i + 1),
            NOW,
            2,
        )
        .await;
    }
    let mut evicted = Vec::new();
    for i in 0..5u8 {
        let mut start = login_start(&alice, &format!("third_{i}"), hash(i + 10), NOW + 1);
        start.session.client_id = Some("lkc_third".into());
        evicted.extend(
            store
                .create_session(&start, 2)
                .await
                .unwrap()
                .expect("enabled"),
        );
    }
    assert_eq!(evicted, ["third_0", "third_1", "third_2"]);
    assert!(!is_revoked(store.as_ref(), "own_0").await);
    assert!(!is_revoked(store.as_ref(), "own_1").await);
    assert!(!is_revoked(store.as_ref(), "third_4").await);
    // And the user's own sessions evict only their own.
    let evicted = session(store.as_ref(), &alice, "own_2", hash(30), NOW + 2, 2).await;
    assert_eq!(evicted, ["own_0"]);
    assert!(!is_revoked(store.as_ref(), "third_3").await);
}

/// A client's scope, secret and state change in place; a removed client is
/// never found again, and revoking its sessions touches no other's.
pub async fn clients_are_changed_disabled_and_removed(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    let mut client = latchkey_core::store::Client {
        id: "lkc_app".into(),
        name: "app".into(),
        secret_hash: Some(hash(40)),
        scope: "read".into(),
        created_at: NOW,
        redirect_uris: vec!["https://app.example/cb".into()],
        first_party: false,
        disabled: false,
        tokens_valid_after: 0,
        backchannel_logout_uri: None,
    };
    store.insert_client(&client).await.unwrap();
    client.scope = "read write".into();
    client.secret_hash = Some(hash(41));
    client.disabled = true;
    client.tokens_valid_after = NOW + 5;
    assert!(store.update_client(&client).await.unwrap());
    assert_eq!(
        store.client_by_id("lkc_app").await.unwrap(),
        Some(client.clone())
    );

    let mut start = login_start(&alice, "through_app", hash(1), NOW);
    start.session.client_id = Some("lkc_app".into());
    store.create_session(&start, 10).await.unwrap().unwrap();
    session(store.as_ref(), &alice, "own", hash(2), NOW, 10).await;
    let revoked = store
        .revoke_client_sessions("lkc_app", RevocationReason::Admin, NOW + 10)
        .await
        .unwrap();
    assert_eq!(revoked, [("through_app".to_owned(), alice.id.clone())]);
    assert!(is_revoked(store.as_ref(), "through_app").await);
    assert!(!is_revoked(store.as_ref(), "own").await);

    assert!(store.remove_client("lkc_app", NOW + 20).await.unwrap());
    assert_eq!(store.client_by_id("lkc_app").await.unwrap(), None);
    assert!(store.list_clients().await.unwrap().is_empty());
    assert!(!store.remove_client("lkc_app", NOW + 30).await.unwrap());
    assert!(!store.update_client(&client).await.unwrap());
    // Its id stays taken.
    assert!(store.insert_client(&client).await.is_err());
}

/// A session that cannot be stored leaves no trace: not the session, no
/// audit event, no revocation by the cap. Here its first token's hash is
/// already taken, which fails after the session's own row was written.
pub async fn a_failed_session_creation_changes_nothing(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    session(store.as_ref(), &alice, "ses_1", hash(1), NOW, 1).await;
    let second = Session {
        id: "ses_2".into(),
        user_id: alice.id.clone(),
        client_id: None,
        scope: "profile".into(),
        created_at: NOW + 1,
        auth_time: NOW + 1,
        auth_method: AuthMethod::Password,
        expires_at: NOW + 86400,
        last_used_at: NOW + 1,
        revoked_at: None,
        revoked_reason: None,
        ip: "127.0.0.2".into(),
        user_agent: "again".into(),
        dpop_jkt: None,
    };
    let taken = RefreshRecord {
        hash: hash(1),
        session_id: "ses_2".into(),
        parent: None,
        scope: "profile".into(),
        issued_at: NOW + 1,
        expires_at: NOW + 3600,
        used_at: None,
        access_jti: "jti".into(),
        ip: "127.0.0.2".into(),
        user_agent: "again".into(),
    };
    let created = AuditEvent::login(&second);
    assert!(
        store
            .create_session(
                &latchkey_core::session::SessionStart {
                    session: second.clone(),
                    first_token: taken.clone(),
                    audit: created.clone(),
                    device: None,
                },
                1,
            )
            .await
            .is_err()
    );
    assert!(store.session_with_user("ses_2").await.unwrap().is_none());
    assert!(!is_revoked(store.as_ref(), "ses_1").await);
    let filter = AuditFilter {
        user_id: Some(alice.id.clone()),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(store.audit_events(&filter).await.unwrap().len(), 1);
}

/// The cap never revokes the session just created, even when the user's
/// other sessions began in the same second (times are whole seconds).
pub async fn a_new_session_never_evicts_itself(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    for (i, id) in ["ses_z1", "ses_z2", "ses_z3"].into_iter().enumerate() {
        let first = hash(u8::try_from(i).unwrap_or(0) + 1);
        assert!(
            session(store.as_ref(), &alice, id, first, NOW, 3)
                .await
                .is_empty()
        );
    }
    let evicted = session(store.as_ref(), &alice, "ses_a", hash(9), NOW, 3).await;
    assert_eq!(evicted.len(), 1, "{evicted:?}");
    assert_ne!(evicted[0], "ses_a");
    assert!(!is_revoked(store.as_ref(), "ses_a").await);
    assert!(is_revoked(store.as_ref(), &evicted[0]).await);
    let live = store.live_sessions(&alice.id, NOW).await.unwrap();
    assert_eq!(live.len(), 3);
}

/// Disabling a user revokes every session of theirs.
pub async fn disabling_a_user_revokes_their_sessions(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    let bob = user(store.as_ref(), "bob").await;
    session(store.as_ref(), &alice, "ses_a1", hash(1), NOW, 10).await;
    session(store.as_ref(), &alice, "ses_a2", hash(2), NOW, 10).await;
    session(store.as_ref(), &bob, "ses_b", hash(3), NOW, 10).await;
    let mut revoked = store
        .set_disabled(&alice.id, true, NOW + 1)
        .await
        .unwrap()
        .unwrap();
    revoked.sort();
    assert_eq!(revoked, ["ses_a1", "ses_a2"]);
    assert!(
        store
            .set_disabled("usr_nobody", true, NOW)
            .await
            .unwrap()
            .is_none()
    );
    assert!(is_revoked(store.as_ref(), "ses_a1").await);
    assert!(is_revoked(store.as_ref(), "ses_a2").await);
    assert!(!is_revoked(store.as_ref(), "ses_b").await);
    assert!(store.user_by_id(&alice.id).await.unwrap().unwrap().disabled);
}

/// Concurrent first starts agree on one secret.
pub async fn first_secret_wins(store: Arc<dyn Store>) {
    let starts: Vec<_> = (0u8..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.secret_or_insert("k", &[i; 4]).await.unwrap() })
        })
        .collect();
    let mut seen = Vec::new();
    for start in starts {
        seen.push(start.await.unwrap());
    }
    let first = seen[0].clone();
    assert!(seen.iter().all(|s| *s == first), "{seen:?}");
    assert_eq!(store.secret_or_insert("k", b"late").await.unwrap(), first);
}

/// Only live sessions are listed; a user revokes only their own.
pub async fn live_sessions_and_revoking_ones_own(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    let bob = user(store.as_ref(), "bob").await;
    session(store.as_ref(), &alice, "ses_a1", hash(1), NOW, 10).await;
    session(store.as_ref(), &alice, "ses_a2", hash(2), NOW + 1, 10).await;
    session(store.as_ref(), &bob, "ses_b", hash(3), NOW, 10).await;
    let live = store.live_sessions(&alice.id, NOW + 2).await.unwrap();
    let ids: Vec<&str> = live.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["ses_a2", "ses_a1"]);
    // Idle-expired (the newest token is past its expiry): not live.
    assert!(
        store
            .live_sessions(&alice.id, NOW + 3601)
            .await
            .unwrap()
            .iter()
            .all(|s| s.id != "ses_a1")
    );

    assert!(
        !store
            .revoke_own_session(&alice.id, "ses_b", RevocationReason::UserRevoked, NOW)
            .await
            .unwrap()
    );
    assert!(!is_revoked(store.as_ref(), "ses_b").await);
    assert!(
        store
            .revoke_own_session(&alice.id, "ses_a1", RevocationReason::UserRevoked, NOW)
            .await
            .unwrap()
    );
    let live = store.live_sessions(&alice.id, NOW + 2).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(
        store
            .revoke_user_sessions(&alice.id, RevocationReason::LogoutEverywhere, NOW)
            .await
            .unwrap(),
        ["ses_a2"]
    );
    assert!(
        store
            .live_sessions(&alice.id, NOW + 2)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.live_sessions(&bob.id, NOW + 2).await.unwrap().len(),
        1
    );
}

/// The audit trail filters by user and kind, newest first.
pub async fn audit_events_filter_newest_first(store: Arc<dyn Store>) {
    for (i, (kind, user)) in [
        ("login", "usr_a"),
        ("login_failed", "usr_a"),
        ("login", "usr_b"),
    ]
    .iter()
    .enumerate()
    {
        let event = AuditEvent {
            at: NOW + i as i64,
            kind: (*kind).into(),
            user_id: Some((*user).into()),
            session_id: None,
            client_id: None,
            ip: Some("127.0.0.1".into()),
            user_agent: None,
            detail: String::new(),
            actor_id: None,
        };
        store.append_audit(&event).await.unwrap();
    }
    let all = store
        .audit_events(&AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].at, NOW + 2);
    let by_user = AuditFilter {
        user_id: Some("usr_a".into()),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(store.audit_events(&by_user).await.unwrap().len(), 2);
    let by_kind = AuditFilter {
        kind: Some("login".into()),
        limit: 10,
        ..Default::default()
    };
    let logins = store.audit_events(&by_kind).await.unwrap();
    assert_eq!(logins.len(), 2);
    assert!(logins.iter().all(|e| e.kind == "login"));
    let one = AuditFilter {
        limit: 1,
        ..Default::default()
    };
    assert_eq!(store.audit_events(&one).await.unwrap().len(), 1);
}

/// Sessions that ended by expiry are marked with their reason at the moment
/// they ended (SPEC §14) and listed among the ended; ended sessions are
/// deleted, tokens and all, only once they ended before the cut-off; a live
/// session keeps its used tokens, so that their reuse is still detected.
pub async fn garbage_collection_marks_expiries_and_keeps_what_detects_reuse(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    // Live, with one rotated token.
    session(store.as_ref(), &alice, "ses_live", hash(1), NOW, 10).await;
    store
        .rotate(&policy(0), &request(hash(1), hash(2), NOW + 10))
        .await
        .unwrap();
    // Revoked long ago.
    session(store.as_ref(), &alice, "ses_revoked", hash(3), NOW, 10).await;
    store
        .revoke_session("ses_revoked", RevocationReason::Logout, NOW)
        .await
        .unwrap();
    // Revoked just now: kept while its end is told.
    session(store.as_ref(), &alice, "ses_recent", hash(4), NOW, 10).await;
    store
        .revoke_session("ses_recent", RevocationReason::UserRevoked, NOW + 3400)
        .await
        .unwrap();
    // Idle: its only token expired at NOW + 3500 without being used.
    session(store.as_ref(), &alice, "ses_idle", hash(5), NOW - 100, 10).await;
    // Short: its absolute end (NOW + 3550) came before any idle end.
    let mut short = login_start(&alice, "ses_short", hash(6), NOW);
    short.session.expires_at = NOW + 3550;
    short.first_token.expires_at = NOW + 3550;
    store.create_session(&short, 10).await.unwrap().unwrap();

    let now = NOW + 3601;
    let collected = store
        .collect_garbage(now, now - 600, now - 600)
        .await
        .unwrap();
    assert_eq!(
        (
            collected.sessions,
            collected.idle_expired,
            collected.absolute_expired
        ),
        (1, 1, 1),
        "{collected:?}"
    );
    assert!(
        store
            .session_with_user("ses_revoked")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.refresh_token(&hash(3)).await.unwrap().is_none());
    let ended = |id: &'static str| {
        let store = store.clone();
        async move {
            let (session, _) = store.session_with_user(id).await.unwrap().expect(id);
            (session.revoked_reason, session.revoked_at)
        }
    };
    assert_eq!(
        ended("ses_idle").await,
        (Some("idle_expired".into()), Some(NOW + 3500))
    );
    assert_eq!(
        ended("ses_short").await,
        (Some("absolute_expired".into()), Some(NOW + 3550))
    );
    assert_eq!(
        ended("ses_recent").await,
        (Some("revoked".into()), Some(NOW + 3400))
    );
    assert_eq!(ended("ses_live").await, (None, None));
    let listed: Vec<_> = store
        .ended_sessions(&alice.id, NOW + 1, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.id, s.revoked_reason.unwrap_or_default()))
        .collect();
    assert_eq!(
        listed,
        [
            ("ses_short".to_owned(), "absolute_expired".to_owned()),
            ("ses_idle".to_owned(), "idle_expired".to_owned()),
            ("ses_recent".to_owned(), "revoked".to_owned()),
        ]
    );
    assert_eq!(
        store
            .ended_sessions(&alice.id, NOW + 1, 1)
            .await
            .unwrap()
            .len(),
        1
    );
    let events = store
        .audit_events(&AuditFilter {
            kind: Some("session_ended".into()),
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let mut marked: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.session_id.clone().unwrap_or_default(),
                e.detail.clone(),
                e.at,
            )
        })
        .collect();
    marked.sort();
    assert_eq!(
        marked,
        [
            ("ses_idle".to_owned(), "idle_expired".to_owned(), NOW + 3500),
            (
                "ses_short".to_owned(),
                "absolute_expired".to_owned(),
                NOW + 3550
            ),
        ]
    );
    // Marked once: a second collection marks nothing more.
    let again = store
        .collect_garbage(now, now - 600, now - 600)
        .await
        .unwrap();
    assert_eq!((again.idle_expired, again.absolute_expired), (0, 0));

    let (used, _) = store
        .refresh_token(&hash(1))
        .await
        .unwrap()
        .expect("used token kept");
    assert!(used.used_at.is_some());
    let replay = store
        .rotate(&policy(0), &request(hash(1), hash(2), now))
        .await
        .unwrap();
    assert!(
        matches!(
            replay,
            Outcome::Revoked {
                reason: RevocationReason::Reuse,
                ..
            }
        ),
        "{replay:?}"
    );

    // Past the cut-off, every ended session goes.
    let collected = store
        .collect_garbage(NOW + 86401, NOW + 86400, NOW)
        .await
        .unwrap();
    assert_eq!(collected.sessions, 4);
    assert!(store.refresh_token(&hash(1)).await.unwrap().is_none());
    assert!(
        store
            .ended_sessions(&alice.id, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A new key retires the keys active before it, not the ones after it.
pub async fn adding_a_key_retires_the_active_ones(store: Arc<dyn Store>) {
    let key = |kid: &str, activates_at: i64| latchkey_core::store::StoredKey {
        kid: kid.into(),
        alg: "EdDSA".into(),
        private_blob: b"lk-plain-v1:x".to_vec(),
        public_jwk: "{}".into(),
        created_at: NOW,
        activates_at,
        retires_at: None,
    };
    store.add_signing_key(&key("k1", NOW), None).await.unwrap();
    store
        .add_signing_key(&key("k3", NOW + 500), None)
        .await
        .unwrap();
    store
        .add_signing_key(&key("k2", NOW + 100), Some(NOW + 700))
        .await
        .unwrap();
    let keys = store.signing_keys().await.unwrap();
    let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(kids, ["k1", "k2", "k3"]);
    assert_eq!(keys[0].retires_at, Some(NOW + 700));
    assert_eq!(keys[1].retires_at, None);
    assert_eq!(keys[2].retires_at, None);
}

/// The feed lists sessions revoked since a time, oldest first.
pub async fn the_revocation_feed_lists_recent_revocations(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    for (i, id) in ["ses_1", "ses_2", "ses_3"].iter().enumerate() {
        session(store.as_ref(), &alice, id, hash(i as u8 + 1), NOW, 10).await;
    }
    store
        .revoke_session("ses_2", RevocationReason::Logout, NOW + 10)
        .await
        .unwrap();
    store
        .revoke_session("ses_1", RevocationReason::Logout, NOW + 20)
        .await
        .unwrap();
    let all = store.revoked_since(NOW).await.unwrap();
    assert_eq!(
        all,
        [
            ("ses_2".to_string(), NOW + 10),
            ("ses_1".to_string(), NOW + 20)
        ]
    );
    assert_eq!(
        store.revoked_since(NOW + 20).await.unwrap(),
        [("ses_1".to_string(), NOW + 20)]
    );
    assert!(store.revoked_since(NOW + 21).await.unwrap().is_empty());
}

/// The cap revokes the oldest session in the order of creation, even when
/// every session began in the same second and their ids sort the other way.
pub async fn the_cap_evicts_in_creation_order_within_one_second(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    // Created in this order; ids in reverse alphabetical order.
    for (i, id) in ["ses_c", "ses_b"].into_iter().enumerate() {
        let first = hash(u8::try_from(i).unwrap_or(0) + 1);
        assert!(
            session(store.as_ref(), &alice, id, first, NOW, 2)
                .await
                .is_empty()
        );
    }
    let evicted = session(store.as_ref(), &alice, "ses_a", hash(9), NOW, 2).await;
    assert_eq!(evicted, ["ses_c"], "the first session created goes first");
    assert!(!is_revoked(store.as_ref(), "ses_b").await);
}

/// A session is never created for a disabled user, and disabling a user
/// while logins commit leaves none of theirs alive.
pub async fn no_session_outlives_the_disabling_of_its_user(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    let logins: Vec<_> = (0u8..20)
        .map(|i| {
            let store = store.clone();
            let start = login_start(&alice, &format!("ses_{i}"), hash(i + 1), NOW);
            tokio::spawn(async move { store.create_session(&start, 100).await.unwrap() })
        })
        .collect();
    let disabling = {
        let store = store.clone();
        let id = alice.id.clone();
        tokio::spawn(async move { store.set_disabled(&id, true, NOW).await.unwrap() })
    };
    for login in logins {
        login.await.unwrap();
    }
    disabling.await.unwrap().unwrap();
    assert!(
        store
            .live_sessions(&alice.id, NOW)
            .await
            .unwrap()
            .is_empty()
    );
    // Now disabled: nothing is written at all.
    let late = login_start(&alice, "ses_late", hash(99), NOW);
    assert_eq!(store.create_session(&late, 100).await.unwrap(), None);
    assert!(store.session_with_user("ses_late").await.unwrap().is_none());
    assert!(store.refresh_token(&hash(99)).await.unwrap().is_none());
}

/// A refresh that narrows the scope narrows the access token only: the
/// successor keeps the session's scope (RFC 6749 §6).
pub async fn a_narrowed_refresh_keeps_the_session_scope(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    session(store.as_ref(), &alice, "ses_1", hash(1), NOW, 10).await;
    let narrow = RotationRequest {
        scope: Some(latchkey_core::scope::Scope::parse("profile").unwrap()),
        ..request(hash(1), hash(2), NOW + 1)
    };
    let outcome = store.rotate(&policy(0), &narrow).await.unwrap();
    match outcome {
        Outcome::Rotated { scope, .. } => assert_eq!(scope, "profile"),
        other => panic!("{other:?}"),
    }
    let (successor, _) = store.refresh_token(&hash(2)).await.unwrap().unwrap();
    assert_eq!(successor.scope, "email profile");
    // The next refresh, without a scope, gets the whole scope back.
    let outcome = store
        .rotate(&policy(0), &request(hash(2), hash(3), NOW + 2))
        .await
        .unwrap();
    match outcome {
        Outcome::Rotated { scope, .. } => assert_eq!(scope, "email profile"),
        other => panic!("{other:?}"),
    }
}

/// Deleting a user revokes every session in the same transaction (the ids
/// come back for the feed), hides the user from every lookup, frees the
/// name, and leaves nothing that can be refreshed or started again; the
/// row goes with its last session, the audit trail stays.
pub async fn deleting_a_user_revokes_everything_and_frees_the_name(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    let bob = user(store.as_ref(), "bob").await;
    session(store.as_ref(), &alice, "ses_a1", hash(1), NOW, 10).await;
    session(store.as_ref(), &alice, "ses_a2", hash(2), NOW, 10).await;
    session(store.as_ref(), &bob, "ses_b", hash(3), NOW, 10).await;
    let mut revoked = store
        .delete_user(&alice.id, NOW + 1)
        .await
        .unwrap()
        .unwrap();
    revoked.sort();
    assert_eq!(revoked, ["ses_a1", "ses_a2"]);
    assert!(is_revoked(store.as_ref(), "ses_a1").await);
    assert!(!is_revoked(store.as_ref(), "ses_b").await);
    // Gone from every lookup; a second delete, a password or a disable
    // finds no one.
    assert_eq!(store.user_by_id(&alice.id).await.unwrap(), None);
    assert_eq!(store.user_by_name("alice").await.unwrap(), None);
    assert!(
        !store
            .list_users()
            .await
            .unwrap()
            .iter()
            .any(|u| u.id == alice.id)
    );
    assert!(
        !store
            .users_page(None, 10)
            .await
            .unwrap()
            .iter()
            .any(|u| u.id == alice.id)
    );
    assert!(
        store
            .delete_user(&alice.id, NOW + 2)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!store.set_password(&alice.id, "$argon2id$x").await.unwrap());
    assert!(
        store
            .set_disabled(&alice.id, false, NOW + 2)
            .await
            .unwrap()
            .is_none()
    );
    // Nothing refreshes, nothing starts.
    let outcome = store
        .rotate(&policy(0), &request(hash(1), hash(9), NOW + 2))
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Rejected(_)), "{outcome:?}");
    let start = login_start(&alice, "ses_a3", hash(4), NOW + 2);
    assert!(store.create_session(&start, 10).await.unwrap().is_none());
    // The feed still announces the revocations.
    let announced = store.revoked_since(NOW).await.unwrap();
    assert!(
        announced.iter().any(|(id, _)| id == "ses_a1"),
        "{announced:?}"
    );
    // The name is free again, for a new account.
    let again = User {
        id: "usr_alice2".into(),
        ..alice.clone()
    };
    store.insert_user(&again).await.unwrap();
    assert_eq!(store.user_by_name("alice").await.unwrap(), Some(again));
    store
        .append_audit(&AuditEvent {
            at: NOW + 1,
            kind: "user_deleted".into(),
            user_id: Some(alice.id.clone()),
            session_id: None,
            client_id: Some("cli_admin".into()),
            ip: None,
            user_agent: None,
            detail: String::new(),
            actor_id: None,
        })
        .await
        .unwrap();
    // Garbage collection keeps the row while a revoked session points to
    // it, then removes both; the audit trail stays.
    let kept = store
        .collect_garbage(NOW + 2, NOW, NOW - 3600)
        .await
        .unwrap();
    assert_eq!(kept.users, 0);
    let collected = store
        .collect_garbage(NOW + 2, NOW + 1, NOW - 3600)
        .await
        .unwrap();
    assert_eq!(collected.users, 1);
    let trail = store
        .audit_events(&AuditFilter {
            user_id: Some(alice.id.clone()),
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let kinds: Vec<_> = trail.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["user_deleted", "login", "login"]);
    assert!(store.user_by_id(&bob.id).await.unwrap().is_some());
}

/// Users page by id: every user once, in order, whatever the page size.
pub async fn users_page_by_id(store: Arc<dyn Store>) {
    for name in ["e", "b", "d", "a", "c"] {
        user(store.as_ref(), name).await;
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.users_page(after.as_deref(), 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        seen.extend(page.into_iter().map(|u| u.id));
    }
    assert_eq!(seen, ["usr_a", "usr_b", "usr_c", "usr_d", "usr_e"]);
}

/// The audit trail pages newest first by id, within a time range.
pub async fn audit_pages_by_id_and_time(store: Arc<dyn Store>) {
    for i in 0..6 {
        store
            .append_audit(&AuditEvent {
                at: NOW + i,
                kind: if i % 2 == 0 { "login" } else { "login_failed" }.into(),
                user_id: Some("usr_a".into()),
                session_id: None,
                client_id: None,
                ip: None,
                user_agent: None,
                detail: i.to_string(),
                actor_id: None,
            })
            .await
            .unwrap();
    }
    let page = |before_id: Option<i64>, since: Option<i64>, until: Option<i64>| AuditFilter {
        user_id: Some("usr_a".into()),
        since,
        until,
        before_id,
        limit: 2,
        ..AuditFilter::default()
    };
    let first = store.audit_page(&page(None, None, None)).await.unwrap();
    let details: Vec<_> = first.iter().map(|(_, e)| e.detail.as_str()).collect();
    assert_eq!(details, ["5", "4"]);
    let next = store
        .audit_page(&page(Some(first[1].0), None, None))
        .await
        .unwrap();
    let details: Vec<_> = next.iter().map(|(_, e)| e.detail.as_str()).collect();
    assert_eq!(details, ["3", "2"]);
    // since is inclusive, until exclusive.
    let ranged = store
        .audit_page(&AuditFilter {
            limit: 10,
            ..page(None, Some(NOW + 1), Some(NOW + 4))
        })
        .await
        .unwrap();
    let details: Vec<_> = ranged.iter().map(|(_, e)| e.detail.as_str()).collect();
    assert_eq!(details, ["3", "2", "1"]);
}

/// Pruning deletes the events before the cut, however many (more than one
/// batch), and nothing after it.
pub async fn pruning_the_audit_trail_deletes_only_what_is_older(store: Arc<dyn Store>) {
    for i in 0..1203 {
        store
            .append_audit(&AuditEvent {
                at: NOW + i,
                kind: "login".into(),
                user_id: Some("usr_a".into()),
                session_id: None,
                client_id: None,
                ip: None,
                user_agent: None,
                detail: i.to_string(),
                actor_id: None,
            })
            .await
            .unwrap();
    }
    assert_eq!(store.prune_audit(NOW + 1200).await.unwrap(), 1200);
    let left = store
        .audit_events(&AuditFilter {
            limit: 100,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let details: Vec<_> = left.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(details, ["1202", "1201", "1200"]);
    assert_eq!(store.prune_audit(NOW + 1200).await.unwrap(), 0);
}

/// With routine refreshes left out of the audit trail, a rotation writes
/// no audit row, and reuse is still audited.
pub async fn a_routine_refresh_writes_no_audit_row_unless_asked(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    session(store.as_ref(), &alice, "ses_1", hash(1), NOW, 10).await;
    let quiet = Policy {
        audit_refreshes: false,
        ..policy(0)
    };
    let outcome = store
        .rotate(&quiet, &request(hash(1), hash(2), NOW + 5))
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Rotated { .. }), "{outcome:?}");
    let refreshes = AuditFilter {
        kind: Some("refresh".into()),
        limit: 10,
        ..Default::default()
    };
    assert!(store.audit_events(&refreshes).await.unwrap().is_empty());
    let (new, _) = store.refresh_token(&hash(2)).await.unwrap().unwrap();
    assert_eq!(new.parent, Some(hash(1)), "the rotation itself was made");
}

/// Of many redemptions of one code at once, exactly one finds it fresh;
/// the others learn which session that one started. Clients keep their
/// redirect URIs and first-party trust.
pub async fn a_code_is_redeemed_once_whatever_arrives_at_once(store: Arc<dyn Store>) {
    let client = latchkey_core::store::Client {
        id: "lkc_app".into(),
        name: "app".into(),
        secret_hash: None,
        scope: "openid profile".into(),
        created_at: NOW,
        redirect_uris: vec![
            "https://app.example/cb".into(),
            "http://127.0.0.1/cb".into(),
        ],
        first_party: true,
        disabled: false,
        tokens_valid_after: 0,
        backchannel_logout_uri: None,
    };
    store.insert_client(&client).await.unwrap();
    assert_eq!(store.client_by_id("lkc_app").await.unwrap(), Some(client));
    let code = latchkey_core::store::AuthorizationCode {
        hash: hash(7),
        client_id: "lkc_app".into(),
        user_id: "usr_alice".into(),
        redirect_uri: "https://app.example/cb".into(),
        code_challenge: "challenge".into(),
        scope: "openid".into(),
        nonce: Some("n-0S6_WzA2Mj".into()),
        auth_time: NOW,
        auth_method: AuthMethod::Passkey,
        expires_at: NOW + 60,
    };
    store.insert_code(&code).await.unwrap();
    let redemptions: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .redeem_code(&hash(7), &format!("ses_{i}"), NOW + 1)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut fresh = 0;
    let mut used = Vec::new();
    for r in redemptions {
        match r.await.unwrap() {
            latchkey_core::store::Redemption::Fresh(found) => {
                assert_eq!(found, code);
                fresh += 1;
            }
            latchkey_core::store::Redemption::Used { session_id } => used.push(session_id.unwrap()),
            latchkey_core::store::Redemption::Unknown => panic!("the code exists"),
        }
    }
    assert_eq!(fresh, 1);
    assert_eq!(used.len(), 15);
    assert!(used.windows(2).all(|w| w[0] == w[1]), "{used:?}");
    assert_eq!(
        store.redeem_code(&hash(8), "ses_x", NOW).await.unwrap(),
        latchkey_core::store::Redemption::Unknown
    );
}

/// Consent is kept per user and client, and replaced by the next grant.
pub async fn consent_is_remembered_per_user_and_client(store: Arc<dyn Store>) {
    assert_eq!(store.consent("usr_a", "lkc_1").await.unwrap(), None);
    store
        .grant_consent("usr_a", "lkc_1", "openid", NOW)
        .await
        .unwrap();
    store
        .grant_consent("usr_a", "lkc_1", "openid profile", NOW + 1)
        .await
        .unwrap();
    assert_eq!(
        store.consent("usr_a", "lkc_1").await.unwrap().as_deref(),
        Some("openid profile")
    );
    assert_eq!(store.consent("usr_a", "lkc_2").await.unwrap(), None);
    assert_eq!(store.consent("usr_b", "lkc_1").await.unwrap(), None);
}

/// Of one DPoP proof recorded many times at once, exactly one is first;
/// garbage collection forgets it once expired.
pub async fn a_proof_is_recorded_once_whatever_arrives_at_once(store: Arc<dyn Store>) {
    let attempts: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.record_proof("jkt:jti-1", NOW + 60).await.unwrap() })
        })
        .collect();
    let mut firsts = 0;
    for a in attempts {
        if a.await.unwrap() {
            firsts += 1;
        }
    }
    assert_eq!(firsts, 1);
    assert!(store.record_proof("jkt:jti-2", NOW + 60).await.unwrap());
    store
        .collect_garbage(NOW + 61, NOW - 3600, NOW - 3600)
        .await
        .unwrap();
    assert!(store.record_proof("jkt:jti-1", NOW + 200).await.unwrap());
}

/// A session bound to a DPoP key keeps its key, and refreshes only with a
/// proof of it; without one, nothing changes (not even reuse detection).
pub async fn a_session_bound_to_a_key_refreshes_only_with_it(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    let mut start = login_start(&alice, "ses_1", hash(1), NOW);
    start.session.dpop_jkt = Some("thumb".into());
    store.create_session(&start, 10).await.unwrap().unwrap();
    let (_, session) = store.refresh_token(&hash(1)).await.unwrap().unwrap();
    assert_eq!(session.dpop_jkt.as_deref(), Some("thumb"));
    let keyless = store
        .rotate(&policy(0), &request(hash(1), hash(2), NOW + 1))
        .await
        .unwrap();
    assert_eq!(keyless, Outcome::Rejected(Rejection::DpopKeyMismatch));
    let mut other = request(hash(1), hash(2), NOW + 1);
    other.dpop_jkt = Some("another".into());
    assert_eq!(
        store.rotate(&policy(0), &other).await.unwrap(),
        Outcome::Rejected(Rejection::DpopKeyMismatch)
    );
    let mut proven = request(hash(1), hash(2), NOW + 1);
    proven.dpop_jkt = Some("thumb".into());
    assert!(matches!(
        store.rotate(&policy(0), &proven).await.unwrap(),
        Outcome::Rotated { .. }
    ));
    // The rotated token again, without the key: refused, the session lives.
    let replay = store
        .rotate(&policy(0), &request(hash(1), hash(3), NOW + 2))
        .await
        .unwrap();
    assert_eq!(replay, Outcome::Rejected(Rejection::DpopKeyMismatch));
    assert!(!is_revoked(store.as_ref(), "ses_1").await);
}
