//! The outbox role (`OutboxStore`) and the triggers that write events: every
//! change writes its event in its own transaction and a refused change
//! writes none; each event is fanned out once and each delivery claimed by
//! one caller, whatever arrives at once; webhooks are capped.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use latchkey_core::outbox::{Attempt, Channel, DeliveryStatus, DueDelivery, EVENT_TYPES, Webhook};
use latchkey_core::rotation::RevocationReason;
use latchkey_core::store::{Client, Store};

use super::{NOW, hash, session, user};

fn webhook(id: &str, events: &[&str]) -> Webhook {
    Webhook {
        id: id.to_owned(),
        url: format!("http://127.0.0.1:9/{id}"),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        secret: vec![7; 32],
        created_at: NOW,
    }
}

/// Fans out everything and claims every due delivery.
async fn drain(store: &dyn Store, now: i64) -> Vec<DueDelivery> {
    while store.dispatch_events(now, 100, false).await.unwrap() > 0 {}
    let mut all = Vec::new();
    loop {
        let batch = store.claim_deliveries(now, 60, 100).await.unwrap();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

fn data(d: &DueDelivery) -> serde_json::Value {
    serde_json::from_str(&d.event.data).unwrap()
}

/// Each change writes its event (a refused one writes nothing), with the
/// data SPEC §14 names, and a webhook gets only the types it asked for.
pub async fn every_change_writes_its_event(store: Arc<dyn Store>) {
    assert!(
        store
            .insert_webhook(&webhook("wh_all", EVENT_TYPES), 10)
            .await
            .unwrap()
    );
    assert!(
        store
            .insert_webhook(&webhook("wh_ends", &["session.ended"]), 10)
            .await
            .unwrap()
    );
    let alice = user(store.as_ref(), "alice").await;
    session(store.as_ref(), &alice, "ses_1", hash(1), NOW, 10).await;
    session(store.as_ref(), &alice, "ses_2", hash(2), NOW + 1, 10).await;
    assert!(
        store
            .revoke_session("ses_1", RevocationReason::Logout, NOW + 2)
            .await
            .unwrap()
    );
    // Revoking again changes nothing, so tells nothing.
    assert!(
        !store
            .revoke_session("ses_1", RevocationReason::Logout, NOW + 3)
            .await
            .unwrap()
    );
    store
        .set_password(&alice.id, "$argon2id$other")
        .await
        .unwrap();
    store.set_disabled(&alice.id, true, NOW + 4).await.unwrap();
    let due = drain(store.as_ref(), NOW + 10).await;
    let mut all: Vec<(String, serde_json::Value)> = due
        .iter()
        .filter(|d| d.webhook_id.as_deref() == Some("wh_all"))
        .map(|d| (d.event.kind.clone(), data(d)))
        .collect();
    all.sort_by_key(|(k, v)| (k.clone(), v["session_id"].as_str().map(str::to_owned)));
    let kinds: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "password.changed",
            "session.ended",
            "session.ended",
            "session.started",
            "session.started",
            "user.created",
            "user.updated"
        ]
    );
    let ended: BTreeMap<&str, &str> = all
        .iter()
        .filter(|(k, _)| k == "session.ended")
        .map(|(_, v)| {
            (
                v["session_id"].as_str().unwrap(),
                v["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ended,
        BTreeMap::from([("ses_1", "logout"), ("ses_2", "user_disabled")])
    );
    let started: Vec<&serde_json::Value> = all
        .iter()
        .filter(|(k, _)| k == "session.started")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(started[0]["user_id"], alice.id.as_str());
    assert_eq!(
        started[0]["new_device"], true,
        "the first session of this browser"
    );
    assert_eq!(started[1]["new_device"], false, "the same user agent again");
    let ends: Vec<&DueDelivery> = due
        .iter()
        .filter(|d| d.webhook_id.as_deref() == Some("wh_ends"))
        .collect();
    assert_eq!(ends.len(), 2);
    assert!(
        ends.iter()
            .all(|d| d.event.kind == "session.ended" && d.channel == Channel::Webhook)
    );
    // The same event is one message to every webhook: one id.
    let ids: HashSet<&str> = due
        .iter()
        .filter(|d| d.event.kind == "session.ended")
        .map(|d| d.event.id.as_str())
        .collect();
    assert_eq!(ids.len(), 2);

    // A session refused (the user is disabled) writes no event.
    let refused = store
        .create_session(&super::login_start(&alice, "ses_3", hash(3), NOW + 20), 10)
        .await
        .unwrap();
    assert!(refused.is_none());
    assert!(drain(store.as_ref(), NOW + 30).await.is_empty());
}

/// `session.ended` of a session through a client with a back-channel
/// logout URI is one delivery to that URI; a reuse also tells
/// `session.reuse_detected`.
pub async fn an_ended_session_of_a_client_is_told_to_it(store: Arc<dyn Store>) {
    let client = Client {
        id: "lkc_rp".into(),
        name: "rp".into(),
        secret_hash: None,
        scope: "openid".into(),
        created_at: NOW,
        redirect_uris: vec!["https://rp.example/cb".into()],
        first_party: false,
        disabled: false,
        tokens_valid_after: 0,
        backchannel_logout_uri: Some("https://rp.example/logout".into()),
    };
    store.insert_client(&client).await.unwrap();
    let bob = user(store.as_ref(), "bob").await;
    let mut start = super::login_start(&bob, "ses_rp", hash(1), NOW);
    start.session.client_id = Some(client.id.clone());
    store.create_session(&start, 10).await.unwrap().unwrap();
    session(store.as_ref(), &bob, "ses_own", hash(2), NOW, 10).await;
    assert!(
        store
            .insert_webhook(&webhook("wh", &["session.reuse_detected"]), 10)
            .await
            .unwrap()
    );
    store
        .revoke_session("ses_rp", RevocationReason::Reuse, NOW + 1)
        .await
        .unwrap();
    store
        .revoke_session("ses_own", RevocationReason::Logout, NOW + 1)
        .await
        .unwrap();
    let due = drain(store.as_ref(), NOW + 2).await;
    let back: Vec<&DueDelivery> = due
        .iter()
        .filter(|d| d.channel == Channel::Backchannel)
        .collect();
    assert_eq!(
        back.len(),
        1,
        "only the client's session is told to the client"
    );
    assert_eq!(back[0].url, "https://rp.example/logout");
    assert_eq!(back[0].client_id.as_deref(), Some("lkc_rp"));
    assert_eq!(data(back[0])["session_id"], "ses_rp");
    let reuse: Vec<&DueDelivery> = due
        .iter()
        .filter(|d| d.channel == Channel::Webhook)
        .collect();
    assert_eq!(reuse.len(), 1);
    assert_eq!(reuse[0].event.kind, "session.reuse_detected");
}

/// Claimers at once each get different deliveries, every delivery once;
/// a failure is due again at its retry time, a delivered one never; the
/// deliveries view filters by status.
pub async fn a_delivery_is_claimed_once_whatever_claims_at_once(store: Arc<dyn Store>) {
    assert!(
        store
            .insert_webhook(&webhook("wh", &["user.created"]), 10)
            .await
            .unwrap()
    );
    for i in 0..60 {
        user(store.as_ref(), &format!("u{i}")).await;
    }
    // Fan-outs at once: each event once.
    let mut fanouts = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        fanouts.push(tokio::spawn(async move {
            let mut n = 0;
            loop {
                let taken = store.dispatch_events(NOW, 7, false).await.unwrap();
                if taken == 0 {
                    return n;
                }
                n += taken;
            }
        }));
    }
    let mut fanned = 0;
    for f in fanouts {
        fanned += f.await.unwrap();
    }
    assert_eq!(fanned, 60);
    let mut claimers = Vec::new();
    for _ in 0..6 {
        let store = store.clone();
        claimers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store.claim_deliveries(NOW, 60, 5).await.unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|d| d.id));
            }
        }));
    }
    let mut claimed = Vec::new();
    for c in claimers {
        claimed.extend(c.await.unwrap());
    }
    let unique: HashSet<i64> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), 60, "every delivery claimed");
    assert_eq!(unique.len(), 60, "none claimed twice");
    // Leased: not due again before the lease ends.
    assert!(
        store
            .claim_deliveries(NOW + 59, 60, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let (first, second) = (claimed[0], claimed[1]);
    store
        .finish_delivery(first, NOW + 1, &Attempt::Delivered)
        .await
        .unwrap();
    store
        .finish_delivery(
            second,
            NOW + 1,
            &Attempt::Failed {
                error: "HTTP 500".into(),
                retry_at: Some(NOW + 5),
            },
        )
        .await
        .unwrap();
    let again = store.claim_deliveries(NOW + 5, 60, 100).await.unwrap();
    assert_eq!(again.iter().map(|d| d.id).collect::<Vec<_>>(), [second]);
    assert_eq!(again[0].attempts, 2);
    let delivered = store
        .deliveries("wh", Some(DeliveryStatus::Delivered), None, 100)
        .await
        .unwrap();
    assert_eq!(delivered.iter().map(|d| d.id).collect::<Vec<_>>(), [first]);
    let failed = store
        .deliveries("wh", Some(DeliveryStatus::Failed), None, 100)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(
        store.deliveries("wh", None, None, 100).await.unwrap().len(),
        60
    );
    assert_eq!(store.deliveries_waiting().await.unwrap(), 59);
    // Pruning keeps what is still to be tried.
    store
        .finish_delivery(second, NOW + 6, &Attempt::Delivered)
        .await
        .unwrap();
    assert_eq!(store.prune_outbox(NOW + 100).await.unwrap(), 2);
    assert_eq!(
        store.deliveries("wh", None, None, 100).await.unwrap().len(),
        58
    );
    // Removing the webhook removes its deliveries.
    assert!(store.delete_webhook("wh").await.unwrap());
    assert_eq!(store.deliveries_waiting().await.unwrap(), 0);
}

/// The webhook cap holds whatever arrives at once.
pub async fn webhooks_are_capped_whatever_arrives_at_once(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .insert_webhook(&webhook(&format!("wh_{i}"), &["user.created"]), 5)
                .await
                .unwrap()
        }));
    }
    let mut added = 0;
    for t in tasks {
        added += usize::from(t.await.unwrap());
    }
    assert_eq!(added, 5);
    assert_eq!(store.webhooks().await.unwrap().len(), 5);
}

/// A failed attempt postpones the deliveries waiting for the same URL to
/// its retry time (a receiver that is down costs one attempt per retry),
/// and no other URL's.
pub async fn a_failing_receiver_postpones_its_others(store: Arc<dyn Store>) {
    assert!(
        store
            .insert_webhook(&webhook("wh_down", &["user.created"]), 10)
            .await
            .unwrap()
    );
    assert!(
        store
            .insert_webhook(&webhook("wh_up", &["user.created"]), 10)
            .await
            .unwrap()
    );
    user(store.as_ref(), "p1").await;
    user(store.as_ref(), "p2").await;
    let due = drain(store.as_ref(), NOW).await;
    assert_eq!(due.len(), 4);
    let down: Vec<i64> = due
        .iter()
        .filter(|d| d.webhook_id.as_deref() == Some("wh_down"))
        .map(|d| d.id)
        .collect();
    store
        .finish_delivery(
            down[0],
            NOW + 1,
            &Attempt::Failed {
                error: "connection failed".into(),
                retry_at: Some(NOW + 100),
            },
        )
        .await
        .unwrap();
    // Past the leases: only the other webhook's are due.
    let again = store.claim_deliveries(NOW + 61, 60, 100).await.unwrap();
    assert_eq!(again.len(), 2);
    assert!(
        again
            .iter()
            .all(|d| d.webhook_id.as_deref() == Some("wh_up"))
    );
    let later = store.claim_deliveries(NOW + 100, 60, 100).await.unwrap();
    let mut ids: Vec<i64> = later.iter().map(|d| d.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, down);
}
