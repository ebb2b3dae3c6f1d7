//! The device authorization role (`DeviceStore`): a grant is answered once,
//! and polls are decided one at a time, whatever arrives at once.

use std::sync::Arc;

use latchkey_core::store::{DeviceGrant, DeviceStatus, Poll, Store, StoreError};
use latchkey_core::strength::AuthMethod;

use super::{NOW, hash};

fn pending(device: u8, user: u8, client: &str) -> DeviceGrant {
    DeviceGrant {
        device_hash: hash(device),
        user_hash: hash(user),
        client_id: client.to_owned(),
        scope: "openid".to_owned(),
        created_at: NOW,
        expires_at: NOW + 600,
        interval: 5,
        last_polled_at: None,
        status: DeviceStatus::Pending,
    }
}

/// A grant is found by its user code (never another's), user codes are
/// unique, and of many answers at once one is recorded; none after the
/// grant has ended.
pub async fn a_device_grant_is_answered_once(store: Arc<dyn Store>) {
    let grant = pending(40, 41, "lkc_tv");
    store.insert_device_grant(&grant).await.unwrap();
    assert_eq!(
        store.device_grant_by_user_code(&hash(41)).await.unwrap(),
        Some(grant.clone())
    );
    assert_eq!(
        store.device_grant_by_user_code(&hash(40)).await.unwrap(),
        None
    );
    let taken = store.insert_device_grant(&pending(42, 41, "lkc_tv")).await;
    assert!(matches!(taken, Err(StoreError::Conflict)), "{taken:?}");

    let answers: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let answer = if i % 2 == 0 {
                    DeviceStatus::Approved {
                        user_id: format!("usr_{i}"),
                        auth_time: NOW,
                        auth_method: AuthMethod::Password,
                    }
                } else {
                    DeviceStatus::Denied
                };
                store
                    .answer_device_grant(&hash(41), &answer, NOW + 1)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut recorded = 0;
    for answer in answers {
        if answer.await.unwrap() {
            recorded += 1;
        }
    }
    assert_eq!(recorded, 1);
    let answered = store
        .device_grant_by_user_code(&hash(41))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(answered.status, DeviceStatus::Pending);

    let late = pending(43, 44, "lkc_tv");
    store.insert_device_grant(&late).await.unwrap();
    assert!(
        !store
            .answer_device_grant(&hash(44), &DeviceStatus::Denied, NOW + 601)
            .await
            .unwrap()
    );
    assert_eq!(
        store.device_grant_by_user_code(&hash(44)).await.unwrap(),
        Some(late)
    );
}

/// Polls follow `device::poll`: pending, slow_down with a longer interval,
/// and of many polls of an approved grant at once, one issues; another
/// client's poll changes nothing; ended grants are pruned.
pub async fn device_polls_are_decided_one_at_a_time(store: Arc<dyn Store>) {
    store
        .insert_device_grant(&pending(50, 51, "lkc_tv"))
        .await
        .unwrap();
    let poll = |client: &'static str, now: i64| {
        let store = store.clone();
        async move {
            store
                .poll_device_grant(&hash(50), client, now, "ses_device")
                .await
                .unwrap()
        }
    };
    assert_eq!(poll("lkc_tv", NOW).await, Some(Poll::Pending));
    assert_eq!(
        poll("lkc_tv", NOW + 1).await,
        Some(Poll::SlowDown { interval: 10 })
    );
    assert_eq!(poll("lkc_other", NOW + 2).await, Some(Poll::OtherClient));
    assert_eq!(poll("lkc_tv", NOW + 12).await, Some(Poll::Pending));
    let approved = DeviceStatus::Approved {
        user_id: "usr_a".into(),
        auth_time: NOW + 3,
        auth_method: AuthMethod::Passkey,
    };
    assert!(
        store
            .answer_device_grant(&hash(51), &approved, NOW + 13)
            .await
            .unwrap()
    );

    let polls: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .poll_device_grant(&hash(50), "lkc_tv", NOW + 14, &format!("ses_{i}"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut issued = 0;
    for poll in polls {
        match poll.await.unwrap() {
            Some(Poll::Issue {
                user_id,
                auth_time,
                auth_method,
                scope,
            }) => {
                assert_eq!(
                    (user_id.as_str(), auth_time, auth_method, scope.as_str()),
                    ("usr_a", NOW + 3, AuthMethod::Passkey, "openid")
                );
                issued += 1;
            }
            other => assert_eq!(other, Some(Poll::Redeemed)),
        }
    }
    assert_eq!(issued, 1);
    let redeemed = store
        .device_grant_by_user_code(&hash(51))
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(redeemed.status, DeviceStatus::Redeemed { .. }),
        "{redeemed:?}"
    );
    assert_eq!(
        store
            .poll_device_grant(&hash(59), "lkc_tv", NOW, "ses_x")
            .await
            .unwrap(),
        None
    );

    store
        .insert_device_grant(&pending(52, 53, "lkc_tv"))
        .await
        .unwrap();
    let mut later = pending(54, 55, "lkc_tv");
    later.expires_at = NOW + 2000;
    store.insert_device_grant(&later).await.unwrap();
    assert_eq!(store.prune_device_grants(NOW + 601).await.unwrap(), 2);
    assert_eq!(
        store.device_grant_by_user_code(&hash(53)).await.unwrap(),
        None
    );
    assert!(
        store
            .device_grant_by_user_code(&hash(55))
            .await
            .unwrap()
            .is_some()
    );
}
