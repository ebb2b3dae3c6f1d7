//! The account role (`AccountStore`, SPEC §13): addresses unique without
//! regard to case, links stored with their events and spent once whatever
//! arrives at once, the newest reset link winning, links dying with their
//! purpose, and devices remembered for new-device notices.

use std::sync::Arc;

use latchkey_core::account::{AccountLink, LinkPurpose, Notice, Sighting, email_key};
use latchkey_core::refresh::TokenHash;
use latchkey_core::rotation::RevocationReason;
use latchkey_core::store::{Store, StoreError};

use super::{NOW, hash, login_start, session, user};

fn link(n: u8, purpose: LinkPurpose, user_id: &str, email: Option<&str>) -> AccountLink {
    AccountLink {
        hash: hash(n),
        purpose,
        user_id: user_id.to_owned(),
        email: email.map(str::to_owned),
        session_id: None,
        created_at: NOW,
        expires_at: NOW + purpose.ttl(),
    }
}

fn event_data(email: &str, n: u8) -> String {
    serde_json::json!({"email": email, "link": format!("http://x/{n}")}).to_string()
}

/// The outbox events of `kind`, oldest first, as JSON.
async fn events(store: &dyn Store, kind: &str) -> Vec<serde_json::Value> {
    while store.dispatch_events(NOW, 100, true).await.unwrap() > 0 {}
    let mut found = Vec::new();
    loop {
        let batch = store.claim_deliveries(NOW, 60, 100).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for d in batch {
            if d.event.kind == kind {
                let mut data: serde_json::Value = serde_json::from_str(&d.event.data).unwrap();
                data["__url"] = serde_json::json!(d.url);
                found.push(data);
            }
        }
    }
    found
}

/// Addresses are unique without regard to case, among live users; a
/// deleted user frees theirs; setting one makes it unverified.
pub async fn addresses_are_unique_without_regard_to_case(store: Arc<dyn Store>) {
    let ann = user(store.as_ref(), "ann").await;
    let bob = user(store.as_ref(), "bob").await;
    assert!(
        store
            .set_email(&ann.id, Some("Ann@Example.com"))
            .await
            .unwrap()
    );
    assert!(matches!(
        store.set_email(&bob.id, Some("ann@EXAMPLE.com")).await,
        Err(StoreError::Conflict)
    ));
    let found = store
        .user_by_email(&email_key("ANN@example.COM"))
        .await
        .unwrap()
        .expect("found without regard to case");
    assert_eq!(found.id, ann.id);
    assert_eq!(found.email.as_deref(), Some("Ann@Example.com"));
    assert!(!found.email_verified);
    assert!(
        store
            .user_by_email("nobody@example.com")
            .await
            .unwrap()
            .is_none()
    );
    store.delete_user(&ann.id, NOW).await.unwrap();
    assert!(
        store
            .user_by_email("ann@example.com")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .set_email(&bob.id, Some("ann@example.com"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_email("usr_nobody", Some("x@example.com"))
            .await
            .unwrap()
    );
}

/// A verification link verifies the address it was made for, once (of
/// spends at once, one wins), and dies when the address changes.
pub async fn a_verification_link_is_spent_once_and_dies_with_its_address(store: Arc<dyn Store>) {
    let ann = user(store.as_ref(), "ann").await;
    store
        .set_email(&ann.id, Some("ann@example.com"))
        .await
        .unwrap();
    let verify = link(
        1,
        LinkPurpose::VerifyEmail,
        &ann.id,
        Some("ann@example.com"),
    );
    assert!(
        store
            .insert_link(&verify, &event_data("ann@example.com", 1))
            .await
            .unwrap()
    );
    // Its event is written with it, and mailed to the address.
    let sent = events(store.as_ref(), "email.verification_requested").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["__url"], "mailto:ann@example.com");
    assert_eq!(
        store.link(&hash(1), NOW).await.unwrap().map(|l| l.purpose),
        Some(LinkPurpose::VerifyEmail)
    );
    assert!(
        store
            .link(&hash(1), NOW + LinkPurpose::VerifyEmail.ttl())
            .await
            .unwrap()
            .is_none()
    );
    let mut spends = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        spends.push(tokio::spawn(async move {
            store.verify_email(&hash(1), NOW).await.unwrap()
        }));
    }
    let mut won = 0;
    for s in spends {
        won += usize::from(s.await.unwrap().is_some());
    }
    assert_eq!(won, 1, "one spend wins");
    assert!(
        store
            .user_by_id(&ann.id)
            .await
            .unwrap()
            .unwrap()
            .email_verified
    );

    // A new address is unverified; the link made for it dies when it
    // changes again before it is used, and the old verified one is told.
    store
        .set_email(&ann.id, Some("ann@new.example"))
        .await
        .unwrap();
    assert!(
        !store
            .user_by_id(&ann.id)
            .await
            .unwrap()
            .unwrap()
            .email_verified
    );
    let told = events(store.as_ref(), "mail.email_changed").await;
    assert_eq!(told.len(), 1);
    assert_eq!(told[0]["email"], "ann@example.com");
    let verify = link(
        2,
        LinkPurpose::VerifyEmail,
        &ann.id,
        Some("ann@new.example"),
    );
    assert!(
        store
            .insert_link(&verify, &event_data("ann@new.example", 2))
            .await
            .unwrap()
    );
    store
        .set_email(&ann.id, Some("ann@third.example"))
        .await
        .unwrap();
    assert!(store.link(&hash(2), NOW).await.unwrap().is_none());
    assert!(store.verify_email(&hash(2), NOW).await.unwrap().is_none());
    // A link for an address the user no longer has is not stored.
    let stale = link(
        3,
        LinkPurpose::VerifyEmail,
        &ann.id,
        Some("ann@new.example"),
    );
    assert!(!store.insert_link(&stale, "{}").await.unwrap());
    assert!(
        !store
            .user_by_id(&ann.id)
            .await
            .unwrap()
            .unwrap()
            .email_verified
    );
}

/// The newest reset link wins; spending one sets the password and ends
/// every session (`password_reset`) once, whatever arrives at once; a new
/// password voids reset links.
pub async fn the_newest_reset_link_wins_and_is_spent_once(store: Arc<dyn Store>) {
    let ann = user(store.as_ref(), "ann").await;
    store
        .set_email(&ann.id, Some("ann@example.com"))
        .await
        .unwrap();
    session(store.as_ref(), &ann, "ses_1", hash(101), NOW, 10).await;
    session(store.as_ref(), &ann, "ses_2", hash(102), NOW, 10).await;
    let first = link(1, LinkPurpose::ResetPassword, &ann.id, None);
    let second = link(2, LinkPurpose::ResetPassword, &ann.id, None);
    assert!(
        store
            .insert_link(&first, &event_data("ann@example.com", 1))
            .await
            .unwrap()
    );
    assert!(
        store
            .insert_link(&second, &event_data("ann@example.com", 2))
            .await
            .unwrap()
    );
    assert!(
        store.link(&hash(1), NOW).await.unwrap().is_none(),
        "the older link is void"
    );
    assert!(
        store
            .reset_password(&hash(1), "$argon2id$old", NOW)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        events(store.as_ref(), "password.reset_requested")
            .await
            .len(),
        2
    );

    let mut spends = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        spends.push(tokio::spawn(async move {
            store
                .reset_password(&hash(2), &format!("$argon2id${i}"), NOW)
                .await
                .unwrap()
        }));
    }
    let mut winners = Vec::new();
    for s in spends {
        if let Some(won) = s.await.unwrap() {
            winners.push(won);
        }
    }
    assert_eq!(winners.len(), 1, "one spend wins");
    let (user_id, mut revoked) = winners.remove(0);
    assert_eq!(user_id, ann.id);
    revoked.sort();
    assert_eq!(revoked, ["ses_1", "ses_2"]);
    let (ended, _) = store.session_with_user("ses_1").await.unwrap().unwrap();
    assert_eq!(
        ended.revoked_reason.as_deref(),
        Some(RevocationReason::PasswordReset.as_str())
    );
    assert!(
        store
            .user_by_id(&ann.id)
            .await
            .unwrap()
            .unwrap()
            .password_hash
            .starts_with("$argon2id$")
    );

    // A password set otherwise voids the reset links waiting.
    let third = link(3, LinkPurpose::ResetPassword, &ann.id, None);
    assert!(
        store
            .insert_link(&third, &event_data("ann@example.com", 3))
            .await
            .unwrap()
    );
    assert!(
        store
            .set_password(&ann.id, "$argon2id$admin")
            .await
            .unwrap()
    );
    assert!(store.link(&hash(3), NOW).await.unwrap().is_none());
}

/// A password change ends the user's other sessions and keeps the one it
/// came from; a not-me link ends its session once (`not_me`).
pub async fn a_change_keeps_its_session_and_not_me_ends_one(store: Arc<dyn Store>) {
    let ann = user(store.as_ref(), "ann").await;
    session(store.as_ref(), &ann, "ses_1", hash(101), NOW, 10).await;
    session(store.as_ref(), &ann, "ses_2", hash(102), NOW, 10).await;
    session(store.as_ref(), &ann, "ses_3", hash(103), NOW, 10).await;
    let mut revoked = store
        .change_password(&ann.id, "$argon2id$new", Some("ses_2"), NOW)
        .await
        .unwrap()
        .unwrap();
    revoked.sort();
    assert_eq!(revoked, ["ses_1", "ses_3"]);
    let (kept, _) = store.session_with_user("ses_2").await.unwrap().unwrap();
    assert!(kept.revoked_at.is_none());
    let (gone, _) = store.session_with_user("ses_1").await.unwrap().unwrap();
    assert_eq!(
        gone.revoked_reason.as_deref(),
        Some(RevocationReason::PasswordChanged.as_str())
    );
    assert!(
        store
            .change_password("usr_nobody", "x", None, NOW)
            .await
            .unwrap()
            .is_none()
    );

    let mut not_me = link(9, LinkPurpose::NotMe, &ann.id, None);
    not_me.session_id = Some("ses_2".into());
    assert!(store.insert_link(&not_me, "{}").await.unwrap());
    let (user_id, session_id, ended) = store.not_me(&hash(9), NOW).await.unwrap().unwrap();
    assert_eq!(
        (user_id.as_str(), session_id.as_str(), ended),
        (ann.id.as_str(), "ses_2", true)
    );
    let (gone, _) = store.session_with_user("ses_2").await.unwrap().unwrap();
    assert_eq!(
        gone.revoked_reason.as_deref(),
        Some(RevocationReason::NotMe.as_str())
    );
    assert!(
        store.not_me(&hash(9), NOW).await.unwrap().is_none(),
        "spent"
    );
}

/// The first device of a user is remembered without a notice; another
/// device, with a verified address and mail on, writes the not-me link and
/// the notice (mailed); a device seen before writes nothing; a browser that
/// signed in is known for that user only.
pub async fn a_new_device_is_noticed_and_a_known_one_is_not(store: Arc<dyn Store>) {
    let ann = user(store.as_ref(), "ann").await;
    store
        .set_email(&ann.id, Some("ann@example.com"))
        .await
        .unwrap();
    let verify = link(
        1,
        LinkPurpose::VerifyEmail,
        &ann.id,
        Some("ann@example.com"),
    );
    store.insert_link(&verify, "{}").await.unwrap();
    store.verify_email(&hash(1), NOW).await.unwrap().unwrap();
    let sign_in = |id: &str, device: u8, notice: u8| {
        let mut start = login_start(&ann, id, hash(100 + notice), NOW + i64::from(notice));
        start.device = Some(Sighting {
            device: TokenHash([device; 32]),
            notice: Some(Notice {
                link_hash: hash(200 + notice),
                link: format!("http://x/not-me/{notice}"),
                link_expires_at: NOW + 3600,
            }),
        });
        start
    };
    let store = store.as_ref();
    store
        .create_session(&sign_in("ses_1", 7, 1), 10)
        .await
        .unwrap()
        .unwrap();
    assert!(
        events(store, "mail.new_device").await.is_empty(),
        "a first device is nobody's news"
    );
    assert!(store.link(&hash(201), NOW).await.unwrap().is_none());
    store
        .create_session(&sign_in("ses_2", 7, 2), 10)
        .await
        .unwrap()
        .unwrap();
    assert!(
        events(store, "mail.new_device").await.is_empty(),
        "a known device is no news"
    );
    store
        .create_session(&sign_in("ses_3", 8, 3), 10)
        .await
        .unwrap()
        .unwrap();
    let notices = events(store, "mail.new_device").await;
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0]["email"], "ann@example.com");
    assert_eq!(notices[0]["link"], "http://x/not-me/3");
    assert_eq!(notices[0]["session_id"], "ses_3");
    assert_eq!(notices[0]["__url"], "mailto:ann@example.com");
    let not_me = store
        .link(&hash(203), NOW)
        .await
        .unwrap()
        .expect("the link is stored");
    assert_eq!(not_me.session_id.as_deref(), Some("ses_3"));

    let since = NOW - 10;
    assert!(
        store
            .known_device("ann", &TokenHash([7; 32]), since)
            .await
            .unwrap()
    );
    assert!(
        !store
            .known_device("ann", &TokenHash([9; 32]), since)
            .await
            .unwrap()
    );
    assert!(
        !store
            .known_device("bob", &TokenHash([7; 32]), since)
            .await
            .unwrap()
    );
    assert!(
        !store
            .known_device("ann", &TokenHash([7; 32]), NOW + 100)
            .await
            .unwrap()
    );
    // Pruning forgets devices not seen since, and ended links.
    assert!(store.prune_accounts(NOW + 7200, NOW + 100).await.unwrap() >= 2);
    assert!(
        !store
            .known_device("ann", &TokenHash([7; 32]), 0)
            .await
            .unwrap()
    );
}

/// A user's remembered devices have a bound: past
/// [`MAX_DEVICES_PER_USER`](latchkey_core::account::MAX_DEVICES_PER_USER),
/// the least recently seen is forgotten, whatever arrives at once.
pub async fn remembered_devices_are_capped_per_user(store: Arc<dyn Store>) {
    let cap = latchkey_core::account::MAX_DEVICES_PER_USER;
    let ann = user(store.as_ref(), "ann").await;
    let total = cap + 10;
    let mut sign_ins = Vec::new();
    for i in 0..total {
        let store = store.clone();
        let ann = ann.clone();
        sign_ins.push(tokio::spawn(async move {
            let n = u8::try_from(i).unwrap();
            let mut start = login_start(&ann, &format!("ses_{i}"), hash(n), NOW + i64::from(n));
            start.device = Some(Sighting {
                device: TokenHash([n; 32]),
                notice: None,
            });
            store.create_session(&start, 1000).await.unwrap().unwrap();
        }));
    }
    for s in sign_ins {
        s.await.unwrap();
    }
    let mut known = 0;
    for i in 0..total {
        let n = u8::try_from(i).unwrap();
        if store
            .known_device("ann", &TokenHash([n; 32]), 0)
            .await
            .unwrap()
        {
            known += 1;
        }
    }
    assert_eq!(known, cap, "{total} devices, at most {cap} remembered");
}
