//! The console's role (`ConsoleStore`, SPEC §15): activity counts that
//! instances add at once without losing any, pruned by age; users and live
//! sessions counted; users found by the start of a name or an address, a
//! page at a time, with `%` and `_` as plain characters.

use std::sync::Arc;

use latchkey_core::rotation::RevocationReason;
use latchkey_core::store::Store;

use super::{NOW, hash, session, user};

/// Twenty instances adding to the same minute at once: every count lands.
pub async fn activity_added_at_once_is_all_counted(store: Arc<dyn Store>) {
    let minute = NOW / 60;
    let adds = (0..20).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let counts = [
                ("logins_succeeded", 1),
                ("refreshes", i),
                ("logins_failed", 0),
            ];
            store.add_activity(minute, &counts).await.unwrap();
        })
    });
    for add in adds.collect::<Vec<_>>() {
        add.await.unwrap();
    }
    store
        .add_activity(minute - 3000, &[("refreshes", 7)])
        .await
        .unwrap();
    let rows = store.activity(minute - 10).await.unwrap();
    let of = |series: &str| {
        rows.iter()
            .filter(|r| r.series == series)
            .map(|r| r.n)
            .sum::<u64>()
    };
    assert_eq!(of("logins_succeeded"), 20);
    assert_eq!(of("refreshes"), (0..20).sum::<u64>());
    assert_eq!(of("logins_failed"), 0, "a zero writes no row");
    assert!(rows.iter().all(|r| r.minute == minute));
    assert_eq!(store.activity(minute - 3000).await.unwrap().len(), 3);
    assert_eq!(store.prune_activity(minute - 2880).await.unwrap(), 1);
    assert_eq!(store.activity(0).await.unwrap().len(), 2);
}

/// Users not deleted, sessions neither revoked nor past their end.
pub async fn users_and_live_sessions_are_counted(store: Arc<dyn Store>) {
    let alice = user(store.as_ref(), "alice").await;
    let bob = user(store.as_ref(), "bob").await;
    user(store.as_ref(), "carol").await;
    session(store.as_ref(), &alice, "ses_a1", hash(1), NOW, 10).await;
    session(store.as_ref(), &alice, "ses_a2", hash(2), NOW, 10).await;
    session(store.as_ref(), &bob, "ses_b1", hash(3), NOW, 10).await;
    assert_eq!(store.count_users().await.unwrap(), 3);
    assert_eq!(store.count_live_sessions(NOW).await.unwrap(), 3);
    store
        .revoke_session("ses_a1", RevocationReason::Logout, NOW)
        .await
        .unwrap();
    assert_eq!(store.count_live_sessions(NOW).await.unwrap(), 2);
    // A day later every session is past its absolute end.
    assert_eq!(store.count_live_sessions(NOW + 86_401).await.unwrap(), 0);
    store.delete_user(&bob.id, NOW).await.unwrap();
    assert_eq!(store.count_users().await.unwrap(), 2);
}

/// By the start of a name or a lower-cased address, by name, a page at a
/// time; a deleted user is never found.
pub async fn users_are_found_by_a_prefix(store: Arc<dyn Store>) {
    for name in ["alice", "alicia", "a_b", "a%c", "bob", "gone"] {
        user(store.as_ref(), name).await;
    }
    store
        .set_email("usr_bob", Some("Alan@Example.com"))
        .await
        .unwrap();
    store.delete_user("usr_gone", NOW).await.unwrap();
    let names = |found: Vec<latchkey_core::store::User>| -> Vec<String> {
        found.into_iter().map(|u| u.username).collect()
    };
    assert_eq!(
        names(store.search_users("al", None, 10).await.unwrap()),
        ["alice", "alicia", "bob"]
    );
    assert_eq!(
        names(store.search_users("a_", None, 10).await.unwrap()),
        ["a_b"]
    );
    assert_eq!(
        names(store.search_users("a%", None, 10).await.unwrap()),
        ["a%c"]
    );
    assert_eq!(
        names(store.search_users("alan@", None, 10).await.unwrap()),
        ["bob"]
    );
    assert!(
        store
            .search_users("gone", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let first = names(store.search_users("a", None, 2).await.unwrap());
    assert_eq!(first, ["a%c", "a_b"]);
    let next = names(store.search_users("a", Some("a_b"), 2).await.unwrap());
    assert_eq!(next, ["alice", "alicia"]);
    let last = names(store.search_users("a", Some("alicia"), 2).await.unwrap());
    assert_eq!(
        last,
        ["bob"],
        "found by the address, after the names before it"
    );
}
