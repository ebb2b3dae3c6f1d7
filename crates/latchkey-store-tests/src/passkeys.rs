//! The passkey role (`PasskeyStore`): a credential id is registered once
//! and a user holds at most the cap, a use is recorded only over a smaller
//! counter, and a ceremony is taken once, within its life and its cap,
//! whatever arrives at once.

use std::sync::Arc;

use latchkey_core::store::{PasskeyRecord, Store, WebauthnCeremony};

use super::{NOW, hash, user};

fn passkey(id: &str, user_id: &str, credential_id: u8) -> PasskeyRecord {
    PasskeyRecord {
        id: id.to_owned(),
        user_id: user_id.to_owned(),
        credential_id: vec![credential_id; 16],
        name: format!("key {id}"),
        credential: format!(r#"{{"cred":"{id}"}}"#),
        counter: 0,
        created_at: NOW,
        last_used_at: None,
    }
}

async fn trues(tasks: Vec<tokio::task::JoinHandle<bool>>) -> usize {
    let mut yes = 0;
    for task in tasks {
        yes += usize::from(task.await.unwrap());
    }
    yes
}

/// Registered once per credential id, at most the cap per user even when
/// they arrive at once; listed, found by credential id, removed by their
/// user only; a use recorded only when the counter moves on.
pub async fn a_passkey_is_registered_once_and_its_counter_only_goes_up(store: Arc<dyn Store>) {
    let ada = user(store.as_ref(), "ada").await;
    let bob = user(store.as_ref(), "bob").await;
    assert!(
        store
            .insert_passkey(&passkey("pk_1", &ada.id, 1), 3)
            .await
            .unwrap()
    );
    assert!(
        !store
            .insert_passkey(&passkey("pk_2", &bob.id, 1), 3)
            .await
            .unwrap(),
        "a credential id belongs to one passkey"
    );
    let tasks = (0..8u8)
        .map(|i| {
            let store = store.clone();
            let uid = ada.id.clone();
            tokio::spawn(async move {
                store
                    .insert_passkey(&passkey(&format!("pk_c{i}"), &uid, 10 + i), 3)
                    .await
                    .unwrap()
            })
        })
        .collect();
    assert_eq!(trues(tasks).await, 2, "the cap holds at once");
    let held = store.passkeys_of(&ada.id).await.unwrap();
    assert_eq!(held.len(), 3);
    assert_eq!(held[0], passkey("pk_1", &ada.id, 1));
    assert!(store.passkeys_of(&bob.id).await.unwrap().is_empty());
    let found = store.passkey_by_credential_id(&[1; 16]).await.unwrap();
    assert_eq!(found.map(|p| p.id), Some("pk_1".to_owned()));
    assert_eq!(
        store.passkey_by_credential_id(&[2; 16]).await.unwrap(),
        None
    );

    // Zero after zero is an authenticator without a counter; otherwise the
    // counter must grow, and of the same counter at once one is recorded.
    assert!(
        store
            .record_passkey_use("pk_1", "{}", 0, NOW + 1)
            .await
            .unwrap()
    );
    assert!(
        store
            .record_passkey_use("pk_1", "{\"n\":5}", 5, NOW + 2)
            .await
            .unwrap()
    );
    let tasks = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .record_passkey_use("pk_1", "{\"n\":6}", 6, NOW + 3)
                    .await
                    .unwrap()
            })
        })
        .collect();
    assert_eq!(trues(tasks).await, 1);
    for stale in [6, 3, 0] {
        assert!(
            !store
                .record_passkey_use("pk_1", "{}", stale, NOW + 4)
                .await
                .unwrap()
        );
    }
    let used = store
        .passkey_by_credential_id(&[1; 16])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (used.counter, used.credential.as_str(), used.last_used_at),
        (6, "{\"n\":6}", Some(NOW + 3))
    );

    assert!(
        !store.delete_passkey(&bob.id, "pk_1").await.unwrap(),
        "not bob's"
    );
    assert!(store.delete_passkey(&ada.id, "pk_1").await.unwrap());
    assert!(!store.delete_passkey(&ada.id, "pk_1").await.unwrap());
    assert!(
        store
            .insert_passkey(&passkey("pk_1b", &ada.id, 1), 3)
            .await
            .unwrap()
    );
    // Deleting the user deletes their passkeys.
    store.delete_user(&ada.id, NOW + 5).await.unwrap();
    assert!(store.passkeys_of(&ada.id).await.unwrap().is_empty());
    assert_eq!(
        store.passkey_by_credential_id(&[1; 16]).await.unwrap(),
        None
    );
}

fn ceremony(n: u8, expires_at: i64) -> WebauthnCeremony {
    WebauthnCeremony {
        hash: hash(n),
        user_id: n.is_multiple_of(2).then(|| "usr_x".to_owned()),
        state: format!(r#"{{"state":{n}}}"#),
        expires_at,
    }
}

/// Taken once, whatever arrives at once; not after its end; no more waiting
/// than the cap, even when they arrive at once; pruned after their end.
pub async fn a_ceremony_is_taken_once_within_its_life_and_its_cap(store: Arc<dyn Store>) {
    assert!(
        store
            .insert_ceremony(&ceremony(1, NOW + 300), 10, NOW)
            .await
            .unwrap()
    );
    let tasks = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .take_ceremony(&hash(1), NOW + 1)
                    .await
                    .unwrap()
                    .is_some()
            })
        })
        .collect();
    assert_eq!(trues(tasks).await, 1);
    assert!(
        store
            .insert_ceremony(&ceremony(2, NOW + 300), 10, NOW)
            .await
            .unwrap()
    );
    assert_eq!(
        store.take_ceremony(&hash(2), NOW + 2).await.unwrap(),
        Some(ceremony(2, NOW + 300))
    );
    assert!(
        store
            .insert_ceremony(&ceremony(3, NOW + 300), 10, NOW)
            .await
            .unwrap()
    );
    assert_eq!(
        store.take_ceremony(&hash(3), NOW + 301).await.unwrap(),
        None,
        "ended"
    );
    assert_eq!(
        store.take_ceremony(&hash(3), NOW).await.unwrap(),
        None,
        "and gone"
    );

    let tasks = (10..30u8)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .insert_ceremony(&ceremony(n, NOW + 300), 5, NOW)
                    .await
                    .unwrap()
            })
        })
        .collect();
    assert_eq!(trues(tasks).await, 5, "the cap holds at once");
    // Ended ones do not count against it, and are pruned.
    assert!(
        store
            .insert_ceremony(&ceremony(40, NOW + 600), 5, NOW + 301)
            .await
            .unwrap()
    );
    assert_eq!(store.prune_ceremonies(NOW + 301).await.unwrap(), 5);
    assert!(
        store
            .take_ceremony(&hash(40), NOW + 302)
            .await
            .unwrap()
            .is_some()
    );
}
