// Included once per storage backend by tests/sessions.rs; `BACKEND` names it.

use std::sync::Arc;

use latchkey_core::clock::ManualClock;

use crate::common::{PASSWORD, TestApp, error_code, field};
use latchkey_core::refresh::RefreshToken;
use serde_json::Value;

async fn sessions(app: &TestApp, access: &str) -> Vec<Value> {
    let response = app
        .http
        .get(app.url("/sessions"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["sessions"].as_array().unwrap().clone()
}

async fn login_as(app: &TestApp, http: &reqwest::Client, user: &str, agent: &str) -> Value {
    let response = http
        .post(app.url("/auth/login"))
        .header("user-agent", agent)
        .form(&[("username", user), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_user_lists_and_revokes_their_own_sessions() {
    let app = start!(&[]);
    app.add_user("alice").await;
    app.add_user("bob").await;
    let laptop = login_as(&app, &app.http, "alice", "laptop-browser").await;
    let phone = login_as(&app, &app.http, "alice", "phone-app").await;
    let bob = app.login("bob").await;

    let list = sessions(&app, field(&laptop, "access_token")).await;
    assert_eq!(list.len(), 2);
    let current: Vec<&Value> = list.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["user_agent"], "laptop-browser");
    for s in &list {
        for key in ["id", "created_at", "last_used_at", "ip", "user_agent"] {
            assert!(s.get(key).is_some(), "{key} missing");
        }
        assert_eq!(s["ip"], "127.0.0.1");
    }
    let phone_id = list
        .iter()
        .find(|s| s["user_agent"] == "phone-app")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Someone else's session: 404, and nothing happens to it.
    let bob_sid = sessions(&app, field(&bob, "access_token")).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app
        .http
        .delete(app.url(&format!("/sessions/{bob_sid}")))
        .bearer_auth(field(&laptop, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(app.me(field(&bob, "access_token")).await.status(), 200);

    // One's own: 204, and that device is logged out.
    let response = app
        .http
        .delete(app.url(&format!("/sessions/{phone_id}")))
        .bearer_auth(field(&laptop, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(app.me(field(&phone, "access_token")).await.status(), 401);
    assert_eq!(
        app.refresh(field(&phone, "refresh_token")).await.status(),
        400
    );
    assert_eq!(app.me(field(&laptop, "access_token")).await.status(), 200);
    assert_eq!(
        sessions(&app, field(&laptop, "access_token")).await.len(),
        1
    );

    // Log out everywhere.
    let _again = login_as(&app, &app.http, "alice", "tablet").await;
    let response = app
        .http
        .delete(app.url("/sessions"))
        .bearer_auth(field(&laptop, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(app.me(field(&laptop, "access_token")).await.status(), 401);
    assert_eq!(
        app.refresh(field(&_again, "refresh_token")).await.status(),
        400
    );
    assert_eq!(app.me(field(&bob, "access_token")).await.status(), 200);

    // Without a token: a challenge.
    assert_eq!(
        app.http
            .get(app.url("/sessions"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn the_idle_timeout_expires_an_unused_refresh_token() {
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(&[("LATCHKEY_REFRESH_IDLE_TTL", "2s")], clock.clone());
    app.add_user("alice").await;
    let pair = app.login("alice").await;
    let fresh = app.login("alice").await;
    let next: Value = app
        .refresh(field(&fresh, "refresh_token"))
        .await
        .json()
        .await
        .unwrap();
    clock.advance(3);
    let (status, code) = error_code(app.refresh(field(&pair, "refresh_token")).await).await;
    assert_eq!((status, code.as_str()), (400, "invalid_grant"));
    let (status, _) = error_code(app.refresh(field(&next, "refresh_token")).await).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn rotation_never_extends_the_absolute_lifetime() {
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(
        &[
            ("LATCHKEY_REFRESH_ABSOLUTE_TTL", "3s"),
            ("LATCHKEY_REFRESH_IDLE_TTL", "1h"),
        ],
        clock.clone()
    );
    app.add_user("alice").await;
    let mut pair = app.login("alice").await;
    clock.advance(1);
    let response = app.refresh(field(&pair, "refresh_token")).await;
    assert_eq!(response.status(), 200);
    pair = response.json().await.unwrap();
    clock.advance(3);
    // Used 3 s ago, idle lifetime 1 h: only the absolute lifetime ends it.
    let (status, code) = error_code(app.refresh(field(&pair, "refresh_token")).await).await;
    assert_eq!((status, code.as_str()), (400, "invalid_grant"));
}

#[tokio::test]
async fn past_the_session_cap_the_oldest_session_is_revoked() {
    let app = start!(&[("LATCHKEY_MAX_SESSIONS_PER_USER", "2")]);
    app.add_user("alice").await;
    // All three in the same second, most likely: the order of creation
    // decides, not the clock.
    let first = app.login("alice").await;
    let second = app.login("alice").await;
    let third = app.login("alice").await;
    assert_eq!(app.me(field(&first, "access_token")).await.status(), 401);
    assert_eq!(
        app.refresh(field(&first, "refresh_token")).await.status(),
        400
    );
    assert_eq!(app.me(field(&second, "access_token")).await.status(), 200);
    assert_eq!(sessions(&app, field(&third, "access_token")).await.len(), 2);
    let revoked = app.audit("session_revoked").await;
    assert!(
        revoked.iter().any(|e| e.detail == "session_cap"),
        "{revoked:?}"
    );
}

#[tokio::test]
async fn ip_binding_revoke_kills_a_session_refreshed_from_elsewhere() {
    let app = start!(&[("LATCHKEY_BINDING_IP", "revoke")]);
    app.add_user("alice").await;
    let pair = app.login("alice").await;
    let elsewhere = TestApp::client_from("127.0.0.2");
    let response = elsewhere
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", field(&pair, "refresh_token")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response).await,
        (400, "invalid_grant".to_owned())
    );
    assert_eq!(app.me(field(&pair, "access_token")).await.status(), 401);
    assert_eq!(
        app.refresh(field(&pair, "refresh_token")).await.status(),
        400
    );
    let revoked = app.audit("session_revoked").await;
    assert!(
        revoked
            .iter()
            .any(|e| e.detail == "ip_changed" && e.ip.as_deref() == Some("127.0.0.2")),
        "{revoked:?}"
    );
}

#[tokio::test]
async fn ip_binding_log_records_and_off_ignores() {
    let elsewhere = TestApp::client_from("127.0.0.2");
    for (policy, expect_event) in [("log", true), ("off", false)] {
        let app = start!(&[("LATCHKEY_BINDING_IP", policy)]);
        app.add_user("alice").await;
        let pair = app.login("alice").await;
        let response = elsewhere
            .post(app.url("/oauth/token"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", field(&pair, "refresh_token")),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{policy}");
        let events = app.audit("binding_mismatch").await;
        assert_eq!(!events.is_empty(), expect_event, "{policy}: {events:?}");
        if expect_event {
            assert_eq!(events[0].ip.as_deref(), Some("127.0.0.2"));
            assert!(events[0].detail.contains("127.0.0.1"));
        }
    }
}

#[tokio::test]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    let trusting = start!(&[("LATCHKEY_TRUSTED_PROXIES", "127.0.0.1")]);
    let direct = start!(&[]);
    for (app, expected) in [(&trusting, "203.0.113.9"), (&direct, "127.0.0.1")] {
        app.add_user("alice").await;
        let response = app
            .http
            .post(app.url("/auth/login"))
            .header("x-forwarded-for", "203.0.113.9")
            .form(&[("username", "alice"), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        let pair: Value = response.json().await.unwrap();
        let list = sessions(app, field(&pair, "access_token")).await;
        assert_eq!(list[0]["ip"], expected);
    }
}

#[tokio::test]
async fn failed_logins_are_throttled_per_account_and_per_ip() {
    let app = start!(&[
        ("LATCHKEY_THROTTLE_ACCOUNT", "3/1m"),
        ("LATCHKEY_THROTTLE_IP", "5/1m"),
    ]);
    app.add_user("alice").await;
    app.add_user("bob").await;
    let attempt = |user: &'static str, password: &'static str| {
        let request = app
            .http
            .post(app.url("/auth/login"))
            .form(&[("username", user), ("password", password)]);
        async move { request.send().await.unwrap() }
    };
    for _ in 0..3 {
        assert_eq!(attempt("alice", "wrong password!").await.status(), 400);
    }
    // Even the right password waits now.
    let response = attempt("alice", PASSWORD).await;
    assert_eq!(response.status(), 429);
    let retry: i64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another account is not affected…
    assert_eq!(attempt("bob", PASSWORD).await.status(), 200);
    // …until this IP has failed too often.
    assert_eq!(attempt("bob", "wrong password!").await.status(), 400);
    assert_eq!(attempt("carol", "wrong password!").await.status(), 400);
    assert_eq!(attempt("bob", PASSWORD).await.status(), 429);
    assert!(!app.audit("throttled").await.is_empty());
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("latchkey_throttled_total 2"), "{metrics}");
}

#[tokio::test]
async fn oversized_tokens_are_refused_before_parsing() {
    let app = start!(&[]);
    let huge = format!("eyJ{}", "A".repeat(9000));
    let response = app.me(&huge).await;
    assert_eq!(response.status(), 401);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let (status, code) =
        error_code(app.refresh(&format!("lk_rt_{}", "A".repeat(9000))).await).await;
    assert_eq!((status, code.as_str()), (400, "invalid_grant"));
}

#[tokio::test]
async fn the_audit_trail_records_security_events() {
    let app = start!(&[("LATCHKEY_AUDIT_REFRESHES", "true")]);
    let alice = app.add_user("alice").await;
    let bad = app
        .post_form(
            "/auth/login",
            &[("username", "alice"), ("password", "wrong password!")],
        )
        .await;
    assert_eq!(bad.status(), 400);
    let pair = login_as(&app, &app.http, "alice", "audit-agent").await;
    let next: Value = app
        .refresh(field(&pair, "refresh_token"))
        .await
        .json()
        .await
        .unwrap();
    app.refresh(field(&pair, "refresh_token")).await;
    let _ = next;
    for kind in ["login_failed", "login", "refresh", "reuse_detected"] {
        let events = app.audit(kind).await;
        assert!(!events.is_empty(), "no {kind} event");
        let e = &events[0];
        assert_eq!(e.user_id.as_deref(), Some(alice.id.as_str()), "{kind}");
        assert_eq!(e.ip.as_deref(), Some("127.0.0.1"), "{kind}");
        assert!(e.at > 0);
    }
    let login = &app.audit("login").await[0];
    assert_eq!(login.user_agent.as_deref(), Some("audit-agent"));
    assert!(login.session_id.is_some());
    let all = app
        .state
        .store()
        .audit_events(&latchkey_core::store::AuditFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let text = format!("{all:?}");
    assert!(!text.contains(PASSWORD) && !text.contains("wrong password!"));
    assert!(
        !text.contains(field(&pair, "refresh_token"))
            && !text.contains(field(&pair, "access_token"))
    );
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let app = start!(&[]);
    app.add_user("alice").await;
    app.post_form(
        "/auth/login",
        &[("username", "alice"), ("password", "wrong password!")],
    )
    .await;
    let pair = app.login("alice").await;
    app.refresh(field(&pair, "refresh_token")).await;
    app.refresh(field(&pair, "refresh_token")).await;
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for line in [
        "latchkey_tokens_issued_total{grant=\"login\"} 1",
        "latchkey_tokens_issued_total{grant=\"refresh_token\"} 1",
        "latchkey_refreshes_total{outcome=\"rotated\"} 1",
        "latchkey_refreshes_total{outcome=\"revoked\"} 1",
        "latchkey_reuse_detected_total 1",
        "latchkey_sessions_revoked_total{reason=\"reuse_detected\"} 1",
        "latchkey_login_failures_total 1",
        "latchkey_http_request_duration_seconds_count{method=\"POST\",route=\"/oauth/token\"} 2",
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
}

fn stored_hash(app: &TestApp, token: &str) -> latchkey_core::refresh::TokenHash {
    app.state
        .issuer.refresh_keys()
        .hash(&RefreshToken::parse(token).unwrap())
}

#[tokio::test]
async fn garbage_collection_deletes_dead_sessions_only() {
    // A session past its absolute end is marked so at once, its end told for
    // 30 days, then deleted, used tokens and all.
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(&[("LATCHKEY_REFRESH_ABSOLUTE_TTL", "2s")], clock.clone());
    app.add_user("alice").await;
    let pair = app.login("alice").await;
    let next: Value = app
        .refresh(field(&pair, "refresh_token"))
        .await
        .json()
        .await
        .unwrap();
    let ends_at = app.state.now() + 2;
    clock.advance(3);
    latchkey_app::maintenance::collect(app.state.app()).await;
    let (_, session) = app
        .state
        .store()
        .refresh_token(&stored_hash(&app, field(&next, "refresh_token")))
        .await
        .unwrap()
        .expect("kept while its end is told");
    assert_eq!(session.revoked_reason.as_deref(), Some("absolute_expired"));
    assert!(session.revoked_at.is_some_and(|at| (ends_at - 1..=ends_at).contains(&at)), "{session:?}");
    let told: Value = app.refresh(field(&next, "refresh_token")).await.json().await.unwrap();
    assert_eq!(told["end_reason"], "absolute_expired");
    clock.advance(30 * 86_400);
    latchkey_app::maintenance::collect(app.state.app()).await;
    for token in [field(&pair, "refresh_token"), field(&next, "refresh_token")] {
        assert!(
            app.state
                .store()
                .refresh_token(&stored_hash(&app, token))
                .await
                .unwrap()
                .is_none()
        );
    }

    // A live session keeps its used tokens through collections: reuse is still caught.
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(&[], clock.clone());
    app.add_user("alice").await;
    let pair = app.login("alice").await;
    let next: Value = app
        .refresh(field(&pair, "refresh_token"))
        .await
        .json()
        .await
        .unwrap();
    // Later, within the access tokens' lifetime: a collection keeps the
    // used token of the live session.
    clock.advance(60);
    latchkey_app::maintenance::collect(app.state.app()).await;
    let (used, _) = app
        .state
        .store()
        .refresh_token(&stored_hash(&app, field(&pair, "refresh_token")))
        .await
        .unwrap()
        .unwrap();
    assert!(used.used_at.is_some());
    assert_eq!(
        app.refresh(field(&pair, "refresh_token")).await.status(),
        400
    );
    assert_eq!(app.me(field(&next, "access_token")).await.status(), 401);
    assert!(!app.audit("reuse_detected").await.is_empty());
}
