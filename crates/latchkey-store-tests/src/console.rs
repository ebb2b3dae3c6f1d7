//! The console's role (`ConsoleStore`, SPEC §15): activity counts that
//! instances add at once without losing any, pruned by age; users and live
//! sessions counted; users found by the start of a name or an address, a
//! page at a time, with `%` and `_` as plain characters.

use std::sync::Arc;

use latchkey_core::rotation::RevocationReason;
use latchkey_core::store::Store;

use latchkey_core::refresh::TokenHash;
use latchkey_core::store::Outcome;

use super::{NOW, hash, policy, request, session, user};

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

/// The counts are kept as rows change, by whatever changes them, at once:
/// users signed up together, sessions started together across many hours,
/// some revoked, some collected; at every moment asked about, the live
/// sessions counted are those a scan finds.
pub async fn counts_hold_whatever_changes_at_once(store: Arc<dyn Store>) {
    let users = (0..20).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { user(store.as_ref(), &format!("u{i}")).await })
    });
    let mut people = Vec::new();
    for u in users.collect::<Vec<_>>() {
        people.push(u.await.unwrap());
    }
    assert_eq!(store.count_users().await.unwrap(), 20);
    // Forty sessions, ten minutes apart: their ends fall in seven hours.
    let starts: Vec<(String, i64)> = (0..40)
        .map(|i| (format!("ses_{i}"), NOW - i * 600))
        .collect();
    let started = starts.iter().enumerate().map(|(i, (id, at))| {
        let store = store.clone();
        let owner = people[i % 20].clone();
        let (id, at) = (id.clone(), *at);
        tokio::spawn(async move {
            session(store.as_ref(), &owner, &id, hash(i as u8 + 1), at, 10).await;
        })
    });
    for s in started.collect::<Vec<_>>() {
        s.await.unwrap();
    }
    let revoked: [&'static str; 3] = ["ses_3", "ses_17", "ses_30"];
    let revokes = revoked.into_iter().map(|id| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .revoke_session(id, RevocationReason::Logout, NOW)
                .await
                .unwrap()
        })
    });
    for r in revokes.collect::<Vec<_>>() {
        assert!(r.await.unwrap());
    }
    // Several sessions ended by one statement, beside a single one.
    let (bulk, single) = tokio::join!(
        store.revoke_user_sessions(&people[2].id, RevocationReason::Logout, NOW),
        store.revoke_session("ses_9", RevocationReason::Logout, NOW),
    );
    let mut bulk = bulk.unwrap();
    bulk.sort();
    assert_eq!(bulk, ["ses_2", "ses_22"]);
    assert!(single.unwrap());
    let revoked = [revoked.as_slice(), &["ses_2", "ses_22", "ses_9"]].concat();
    let expected = |t: i64| {
        starts
            .iter()
            .filter(|(id, at)| !revoked.contains(&id.as_str()) && at + 86_400 > t)
            .count() as u64
    };
    for t in [
        NOW,
        NOW + 86_400 - 23_400,
        NOW + 86_400 - 3_601,
        NOW + 86_400 - 3_600,
        NOW + 86_400 - 1,
        NOW + 86_400,
    ] {
        assert_eq!(
            store.count_live_sessions(t).await.unwrap(),
            expected(t),
            "at {t}"
        );
    }
    // Collected half an hour after the newest start: the sessions whose
    // only token (an hour idle) has expired are marked `idle_expired`.
    let later = NOW + 1_800;
    store.collect_garbage(later, later, later).await.unwrap();
    let idle = |at: i64| at + 3_600 < later;
    let expected = |t: i64| {
        starts
            .iter()
            .filter(|(id, at)| !revoked.contains(&id.as_str()) && !idle(*at) && at + 86_400 > t)
            .count() as u64
    };
    for t in [later, NOW + 86_400 - 3_600, NOW + 86_400 - 1, NOW + 86_400] {
        assert_eq!(
            store.count_live_sessions(t).await.unwrap(),
            expected(t),
            "at {t}"
        );
    }
    store.delete_user(&people[0].id, NOW).await.unwrap();
    store.set_disabled(&people[1].id, true, NOW).await.unwrap();
    assert_eq!(store.count_users().await.unwrap(), 19);
    let gone = |id: &str| {
        let n: usize = id[4..].parse().unwrap();
        revoked.contains(&id) || n % 20 < 2
    };
    let at = NOW + 86_400 - 3_600;
    let left = starts
        .iter()
        .filter(|(id, start)| !gone(id) && !idle(*start) && start + 86_400 > at)
        .count() as u64;
    assert_eq!(store.count_live_sessions(at).await.unwrap(), left);
}

/// A backend that logs changes for caching instances names every session
/// revoked and every user changed, and nothing that leaves a session as it
/// was (a new session, a rotation); more changes than one read holds say so.
pub async fn the_change_log_names_what_ends_sessions(store: Arc<dyn Store>) {
    let Some(start) = store.session_changes(0).await.unwrap() else {
        return; // this backend announces revocations on a feed instead
    };
    let alice = user(store.as_ref(), "alice").await;
    let bob = user(store.as_ref(), "bob").await;
    session(store.as_ref(), &alice, "ses_a", hash(1), NOW, 2000).await;
    session(store.as_ref(), &bob, "ses_b", hash(2), NOW, 2000).await;
    let rotated = store
        .rotate(&policy(0), &request(hash(1), hash(3), NOW + 5))
        .await
        .unwrap();
    assert!(matches!(rotated, Outcome::Rotated { .. }));
    let quiet = store.session_changes(start.upto).await.unwrap().unwrap();
    assert!(quiet.complete);
    assert!(
        quiet.sessions.is_empty() && quiet.users.is_empty(),
        "{quiet:?}"
    );
    store
        .revoke_session("ses_a", RevocationReason::Logout, NOW + 6)
        .await
        .unwrap();
    store.set_disabled(&bob.id, true, NOW + 7).await.unwrap();
    let changed = store.session_changes(quiet.upto).await.unwrap().unwrap();
    assert!(changed.complete);
    assert!(
        changed.sessions.contains(&"ses_a".to_owned()),
        "{changed:?}"
    );
    assert!(
        changed.sessions.contains(&"ses_b".to_owned()),
        "{changed:?}"
    );
    assert!(changed.users.contains(&bob.id), "{changed:?}");
    assert!(changed.upto > quiet.upto);
    let none = store.session_changes(changed.upto).await.unwrap().unwrap();
    assert_eq!(none.upto, changed.upto);
    assert!(none.sessions.is_empty() && none.users.is_empty());
    // More than one read holds: the reader is told to forget everything.
    let carol = user(store.as_ref(), "carol").await;
    for i in 0..latchkey_core::store::SessionChanges::MAX + 10 {
        let id = format!("ses_c{i}");
        let mut first = [7u8; 32];
        first[..8].copy_from_slice(&(i as u64).to_be_bytes());
        store
            .create_session(
                &super::login_start(&carol, &id, TokenHash(first), NOW),
                5000,
            )
            .await
            .unwrap();
    }
    store
        .revoke_user_sessions(&carol.id, RevocationReason::Logout, NOW + 8)
        .await
        .unwrap();
    let many = store.session_changes(none.upto).await.unwrap().unwrap();
    assert!(!many.complete);
    assert!(many.upto >= none.upto + latchkey_core::store::SessionChanges::MAX as u64);
    let after = store.session_changes(many.upto).await.unwrap().unwrap();
    assert!(after.complete && after.sessions.is_empty());
}

/// Garbage collection reads idle candidates a page at a time: every page is
/// read (more candidates than one page holds are all marked) and a session
/// used since `idle_before` is left alone.
pub async fn collection_marks_every_idle_session_page_by_page(store: Arc<dyn Store>) {
    let dana = user(store.as_ref(), "dana").await;
    let token = |n: u32| {
        let mut first = [9u8; 32];
        first[..4].copy_from_slice(&n.to_be_bytes());
        TokenHash(first)
    };
    // 250 sessions last used (and begun) before NOW + 400, their only token
    // an hour idle; 30 begun at NOW + 1000.
    for n in 0..280u32 {
        let at = if n < 250 {
            NOW + i64::from(n % 50)
        } else {
            NOW + 1000
        };
        let id = format!("ses_d{n}");
        store
            .create_session(&super::login_start(&dana, &id, token(n), at), 5000)
            .await
            .unwrap()
            .unwrap();
    }
    let now = NOW + 4000;
    let collected = store.collect_garbage(now, NOW, now - 3600).await.unwrap();
    assert_eq!(collected.idle_expired, 250);
    assert_eq!(collected.absolute_expired, 0);
    for n in [0, 99, 100, 249] {
        let (session, _) = store
            .session_with_user(&format!("ses_d{n}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            session.revoked_reason.as_deref(),
            Some("idle_expired"),
            "ses_d{n}"
        );
        assert_eq!(session.revoked_at, Some(session.created_at + 3600));
    }
    for n in 250..280 {
        let (session, _) = store
            .session_with_user(&format!("ses_d{n}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(session.revoked_at, None, "ses_d{n} is live");
    }
    let again = store.collect_garbage(now, NOW, now - 3600).await.unwrap();
    assert_eq!((again.idle_expired, again.absolute_expired), (0, 0));
}
