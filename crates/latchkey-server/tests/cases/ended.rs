// Included once per storage backend by tests/ended.rs; `BACKEND` names it.

use std::sync::Arc;

use crate::common::{TestApp, claims, field};
use latchkey_core::clock::{Clock, ManualClock};
use serde_json::{Value, json};

/// What a refresh with `token` answers: its status and `end_reason`.
async fn refused(app: &TestApp, token: &str) -> (u16, Value) {
    let response = app.refresh(token).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    if status == 400 {
        assert_eq!(body["error"], "invalid_grant", "{body}");
        assert!(body["error_description"].is_string());
    }
    (status, body["end_reason"].clone())
}

#[tokio::test]
async fn a_refresh_of_an_ended_session_says_why() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let admin = app.admin_token().await;

    let pair = app.login("alice").await;
    let out = app.http.post(app.url("/auth/logout")).bearer_auth(field(&pair, "access_token")).send().await.unwrap();
    assert_eq!(out.status(), 204);
    assert_eq!(refused(&app, field(&pair, "refresh_token")).await, (400, json!("logout")));

    let pair = app.login("alice").await;
    let next: Value = app.refresh(field(&pair, "refresh_token")).await.json().await.unwrap();
    assert_eq!(refused(&app, field(&pair, "refresh_token")).await, (400, json!("reuse_detected")));
    assert_eq!(refused(&app, field(&next, "refresh_token")).await, (400, json!("reuse_detected")));

    let mine = app.login("alice").await;
    let other = app.login("alice").await;
    let sid = claims(field(&other, "access_token"))["sid"].as_str().unwrap().to_owned();
    let revoked = app.http.delete(app.url(&format!("/sessions/{sid}"))).bearer_auth(field(&mine, "access_token")).send().await.unwrap();
    assert_eq!(revoked.status(), 204);
    assert_eq!(refused(&app, field(&other, "refresh_token")).await, (400, json!("revoked")));

    let everywhere = app.http.delete(app.url("/sessions")).bearer_auth(field(&mine, "access_token")).send().await.unwrap();
    assert_eq!(everywhere.status(), 204);
    assert_eq!(refused(&app, field(&mine, "refresh_token")).await, (400, json!("logout_everywhere")));

    let pair = app.login("alice").await;
    let sid = claims(field(&pair, "access_token"))["sid"].as_str().unwrap().to_owned();
    let by_admin = app.http.delete(app.url(&format!("/admin/sessions/{sid}"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(by_admin.status(), 204);
    assert_eq!(refused(&app, field(&pair, "refresh_token")).await, (400, json!("revoked_by_admin")));

    let pair = app.login("alice").await;
    let disabled = app
        .http
        .patch(app.url("/admin/users/usr_alice"))
        .bearer_auth(&admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 200);
    assert_eq!(refused(&app, field(&pair, "refresh_token")).await, (400, json!("user_disabled")));

    // Introspection says nothing more than that it is not active.
    let (rs, secret) = app.add_client("lkc_rs", "", true).await;
    let seen: Value = app
        .http
        .post(app.url("/oauth/introspect"))
        .basic_auth(&rs, secret.as_deref())
        .form(&[("token", field(&pair, "refresh_token"))])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen, json!({"active": false}));
    // An unknown token has no reason to give.
    assert_eq!(refused(&app, "lk_rt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await, (400, Value::Null));
}

#[tokio::test]
async fn expiry_is_recorded_when_a_refresh_or_a_collection_notices_it() {
    let clock = Arc::new(ManualClock::at_system_time());
    let env = [("LATCHKEY_REFRESH_IDLE_TTL", "1h"), ("LATCHKEY_REFRESH_ABSOLUTE_TTL", "3h")];
    let app = start!(&env, clock.clone());
    app.add_user("alice").await;

    // Idle, noticed by a refresh: ended when its token expired.
    let idle = app.login("alice").await;
    let idle_ends = clock.now() + 3600;
    // Idle, noticed by a collection.
    let quiet = app.login("alice").await;
    // Absolute: refreshed within the idle time until the absolute end.
    let mut busy = app.login("alice").await;
    let busy_ends = clock.now() + 3 * 3600;
    for _ in 0..3 {
        clock.advance(3000);
        busy = app.refresh(field(&busy, "refresh_token")).await.json().await.unwrap();
    }
    clock.advance(3 * 3600);
    assert_eq!(refused(&app, field(&idle, "refresh_token")).await, (400, json!("idle_expired")));
    assert_eq!(refused(&app, field(&busy, "refresh_token")).await, (400, json!("absolute_expired")));
    latchkey_app::maintenance::collect(app.state.app()).await;
    assert_eq!(refused(&app, field(&quiet, "refresh_token")).await, (400, json!("idle_expired")));

    // Listed among the ended, at the moment each ended.
    let fresh = app.login("alice").await;
    let listed: Value = app
        .http
        .get(app.url("/sessions?include=ended"))
        .bearer_auth(field(&fresh, "access_token"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sessions = listed["sessions"].as_array().unwrap();
    let of = |pair: &Value| {
        let sid = claims(field(pair, "access_token"))["sid"].as_str().unwrap().to_owned();
        sessions.iter().find(|s| s["id"] == sid.as_str()).cloned().unwrap_or(Value::Null)
    };
    assert_eq!((of(&idle)["end_reason"].clone(), of(&idle)["ended_at"].clone()), (json!("idle_expired"), json!(idle_ends)));
    assert_eq!((of(&busy)["end_reason"].clone(), of(&busy)["ended_at"].clone()), (json!("absolute_expired"), json!(busy_ends)));
    assert_eq!(of(&quiet)["end_reason"], "idle_expired");
    assert!(of(&fresh)["end_reason"].is_null() && of(&fresh)["current"] == true);

    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("latchkey_sessions_ended_total{reason=\"idle_expired\"} 2"), "{metrics}");
    assert!(metrics.contains("latchkey_sessions_ended_total{reason=\"absolute_expired\"} 1"), "{metrics}");
    let audited = app.audit("session_ended").await;
    assert_eq!(audited.len(), 3, "{audited:?}");
}

#[tokio::test]
async fn ended_sessions_are_listed_only_when_asked_and_only_to_their_user() {
    let app = start!(&[]);
    app.add_user("alice").await;
    app.add_user("bob").await;
    let admin = app.admin_token().await;
    let gone = app.login("alice").await;
    app.http.post(app.url("/auth/logout")).bearer_auth(field(&gone, "access_token")).send().await.unwrap();
    let alice = app.login("alice").await;
    let list = |path: &str, token: &str| {
        let request = app.http.get(app.url(path)).bearer_auth(token.to_owned());
        async move { request.send().await.unwrap() }
    };
    let live: Value = list("/sessions", field(&alice, "access_token")).await.json().await.unwrap();
    assert_eq!(live["sessions"].as_array().unwrap().len(), 1, "{live}");
    assert!(live["sessions"][0].get("end_reason").is_none());
    let all: Value = list("/sessions?include=ended", field(&alice, "access_token")).await.json().await.unwrap();
    let ended: Vec<_> = all["sessions"].as_array().unwrap().iter().filter(|s| s["end_reason"].is_string()).collect();
    assert_eq!(ended.len(), 1, "{all}");
    assert_eq!(ended[0]["end_reason"], "logout");
    assert!(ended[0]["ended_at"].is_i64());
    assert_eq!(list("/sessions?include=everything", field(&alice, "access_token")).await.status(), 400);
    let bob = app.login("bob").await;
    let bobs: Value = list("/sessions?include=ended", field(&bob, "access_token")).await.json().await.unwrap();
    assert_eq!(bobs["sessions"].as_array().unwrap().len(), 1, "bob sees only his own: {bobs}");

    let by_admin: Value = list("/admin/users/usr_alice/sessions?include=ended", &admin).await.json().await.unwrap();
    let reasons: Vec<_> = by_admin["sessions"].as_array().unwrap().iter().map(|s| s["end_reason"].clone()).collect();
    assert!(reasons.contains(&json!("logout")) && reasons.contains(&Value::Null), "{by_admin}");
    assert_eq!(list("/admin/users/usr_alice/sessions?include=x", &admin).await.status(), 400);
}

#[tokio::test]
async fn the_cap_an_address_change_and_a_deleted_user_end_sessions_for_their_reasons() {
    let app = start!(&[("LATCHKEY_MAX_SESSIONS_PER_USER", "1"), ("LATCHKEY_BINDING_IP", "revoke")]);
    app.add_user("alice").await;
    let admin = app.admin_token().await;
    let first = app.login("alice").await;
    let second = app.login("alice").await;
    assert_eq!(refused(&app, field(&first, "refresh_token")).await, (400, json!("session_cap")));

    let elsewhere = TestApp::client_from("127.0.0.2")
        .post(app.url("/oauth/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", field(&second, "refresh_token"))])
        .send()
        .await
        .unwrap();
    let told: Value = elsewhere.json().await.unwrap();
    assert_eq!(told["end_reason"], "ip_changed", "{told}");

    let last = app.login("alice").await;
    let deleted = app.http.delete(app.url("/admin/users/usr_alice")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(refused(&app, field(&last, "refresh_token")).await, (400, json!("user_deleted")));
}
