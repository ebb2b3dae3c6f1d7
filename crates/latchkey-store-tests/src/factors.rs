//! The second-factor role (`FactorStore`): an app is confirmed once, a code
//! step and a recovery code are used once, and a sign-in waiting for its
//! second step dies after its failures and is spent once, whatever arrives
//! at once.

use std::sync::Arc;

use latchkey_core::store::{MfaChallenge, Store, TotpFactor};

use super::{NOW, hash, user};

fn factor(id: &str, user_id: &str) -> TotpFactor {
    TotpFactor {
        id: id.to_owned(),
        user_id: user_id.to_owned(),
        secret: vec![7; 40],
        created_at: NOW,
        confirmed_at: None,
        last_step: 0,
    }
}

fn challenge(n: u8, user_id: &str) -> MfaChallenge {
    MfaChallenge {
        hash: hash(n),
        user_id: user_id.to_owned(),
        client_id: None,
        scope: "profile".to_owned(),
        created_at: NOW,
        expires_at: NOW + 300,
        failures: 0,
    }
}

/// Counts the `true`s of `n` copies of `call` run at once.
async fn at_once<F, Fut>(n: usize, call: F) -> usize
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(call())).collect();
    let mut yes = 0;
    for task in tasks {
        if task.await.unwrap() {
            yes += 1;
        }
    }
    yes
}

/// An app is pending until confirmed once; a confirmed one is not replaced;
/// each code step and each recovery code is accepted once; removing it
/// removes its codes; deleting the user removes both.
pub async fn an_authenticator_app_is_confirmed_once_and_its_codes_used_once(store: Arc<dyn Store>) {
    let tia = user(store.as_ref(), "tia").await;
    let uid = tia.id.clone();
    assert!(
        store
            .put_pending_totp(&factor("fac_1", &uid))
            .await
            .unwrap()
    );
    assert!(
        store
            .put_pending_totp(&factor("fac_2", &uid))
            .await
            .unwrap()
    );
    assert_eq!(
        store.totp_of(&uid).await.unwrap(),
        Some(factor("fac_2", &uid))
    );
    let codes: Vec<_> = (1..=10).map(hash).collect();
    assert!(
        !store
            .confirm_totp(&uid, "fac_1", 100, &codes, NOW)
            .await
            .unwrap()
    );
    assert!(
        !store.use_totp_step(&uid, 100).await.unwrap(),
        "a pending app accepts no code"
    );

    let confirmed = at_once(8, || {
        let (store, uid, codes) = (store.clone(), uid.clone(), codes.clone());
        async move {
            store
                .confirm_totp(&uid, "fac_2", 100, &codes, NOW + 1)
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(confirmed, 1);
    let app = store.totp_of(&uid).await.unwrap().unwrap();
    assert_eq!((app.confirmed_at, app.last_step), (Some(NOW + 1), 100));
    assert!(
        !store
            .put_pending_totp(&factor("fac_3", &uid))
            .await
            .unwrap()
    );
    assert_eq!(store.totp_of(&uid).await.unwrap().unwrap().id, "fac_2");

    assert!(
        !store.use_totp_step(&uid, 100).await.unwrap(),
        "the confirming code is spent"
    );
    let used = at_once(8, || {
        let (store, uid) = (store.clone(), uid.clone());
        async move { store.use_totp_step(&uid, 101).await.unwrap() }
    })
    .await;
    assert_eq!(used, 1);
    assert!(
        !store.use_totp_step(&uid, 100).await.unwrap(),
        "never an earlier step"
    );
    assert!(store.use_totp_step(&uid, 102).await.unwrap());

    assert_eq!(store.recovery_codes_left(&uid).await.unwrap(), 10);
    let spent = at_once(8, || {
        let (store, uid) = (store.clone(), uid.clone());
        async move {
            store
                .use_recovery_code(&uid, &hash(3), NOW + 2)
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(spent, 1);
    assert_eq!(store.recovery_codes_left(&uid).await.unwrap(), 9);
    assert!(!store.use_recovery_code(&uid, &hash(40), NOW).await.unwrap());
    let other = user(store.as_ref(), "other").await;
    assert!(
        !store
            .use_recovery_code(&other.id, &hash(4), NOW)
            .await
            .unwrap()
    );

    assert!(store.remove_totp(&uid).await.unwrap());
    assert_eq!(store.totp_of(&uid).await.unwrap(), None);
    assert_eq!(store.recovery_codes_left(&uid).await.unwrap(), 0);
    assert!(!store.remove_totp(&uid).await.unwrap());

    assert!(
        store
            .put_pending_totp(&factor("fac_4", &other.id))
            .await
            .unwrap()
    );
    assert!(
        store
            .confirm_totp(&other.id, "fac_4", 5, &codes, NOW)
            .await
            .unwrap()
    );
    store
        .insert_mfa_challenge(&challenge(60, &other.id))
        .await
        .unwrap();
    assert!(
        store
            .delete_user(&other.id, NOW + 3)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.totp_of(&other.id).await.unwrap(), None);
    assert_eq!(store.recovery_codes_left(&other.id).await.unwrap(), 0);
    assert_eq!(store.mfa_challenge(&hash(60), NOW).await.unwrap(), None);
}

/// A sign-in waiting for its second step lives until its end, dies at its
/// fifth wrong code however many arrive at once, and is spent once.
pub async fn a_second_step_dies_after_its_failures_and_is_spent_once(store: Arc<dyn Store>) {
    store
        .insert_mfa_challenge(&challenge(50, "usr_m"))
        .await
        .unwrap();
    assert_eq!(
        store.mfa_challenge(&hash(50), NOW + 300).await.unwrap(),
        Some(challenge(50, "usr_m"))
    );
    assert_eq!(
        store.mfa_challenge(&hash(50), NOW + 301).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .spend_mfa_challenge(&hash(50), NOW + 301)
            .await
            .unwrap(),
        None
    );

    store
        .insert_mfa_challenge(&challenge(51, "usr_m"))
        .await
        .unwrap();
    let alive = at_once(12, || {
        let store = store.clone();
        async move { store.fail_mfa_challenge(&hash(51), 5).await.unwrap() }
    })
    .await;
    assert_eq!(alive, 4, "the fifth failure ends it");
    assert_eq!(store.mfa_challenge(&hash(51), NOW).await.unwrap(), None);

    store
        .insert_mfa_challenge(&challenge(52, "usr_m"))
        .await
        .unwrap();
    assert!(store.fail_mfa_challenge(&hash(52), 5).await.unwrap());
    let spends: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .spend_mfa_challenge(&hash(52), NOW + 10)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut spent = Vec::new();
    for spend in spends {
        spent.extend(spend.await.unwrap());
    }
    assert_eq!(spent.len(), 1);
    assert_eq!(spent[0].failures, 1);
    assert_eq!(spent[0].user_id, "usr_m");

    store
        .insert_mfa_challenge(&challenge(53, "usr_m"))
        .await
        .unwrap();
    let mut later = challenge(54, "usr_m");
    later.expires_at = NOW + 900;
    store.insert_mfa_challenge(&later).await.unwrap();
    assert_eq!(store.prune_mfa_challenges(NOW + 301).await.unwrap(), 2);
    assert!(
        store
            .mfa_challenge(&hash(54), NOW + 301)
            .await
            .unwrap()
            .is_some()
    );
}
