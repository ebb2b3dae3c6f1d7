// Included once per storage backend by tests/review3.rs; `BACKEND` names it.

use crate::common::{CODE_VERIFIER, PASSWORD, TestApp, error_code, field};
use latchkey_core::store::{AuditEvent, Client, User};
use serde_json::Value;

const CALLBACK: &str = "https://third.example/cb";

/// Registers the third-party public client `lkc_third` (scope `profile`).
async fn third_party(app: &TestApp) -> Client {
    let client = Client {
        id: "lkc_third".into(),
        name: "Third".into(),
        secret_hash: None,
        scope: "openid profile".into(),
        created_at: 0,
        redirect_uris: vec![CALLBACK.into()],
        first_party: false,
        disabled: false,
        tokens_valid_after: 0,
        backchannel_logout_uri: None,
    };
    app.state.store().insert_client(&client).await.unwrap();
    client
}

/// A token response of `client` for `user` through the code flow.
async fn code_flow(app: &TestApp, user: &User, client: &Client) -> Value {
    let code = app.issue_code(user, client).await;
    let response = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &client.id),
                ("code", &code),
                ("redirect_uri", CALLBACK),
                ("code_verifier", CODE_VERIFIER),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn live_sessions(app: &TestApp, user: &User) -> usize {
    app.state
        .store()
        .live_sessions(&user.id, app.state.now())
        .await
        .unwrap()
        .len()
}

/// M1: a third-party application's token, whatever its scope, can neither
/// list the user's devices nor log the user out of them.
#[tokio::test]
async fn a_third_party_token_cannot_see_or_end_the_users_sessions() {
    let app = start!(&[]);
    let alice = app.add_user("alice").await;
    let own = app.login("alice").await;
    let client = third_party(&app).await;
    let theirs = code_flow(&app, &alice, &client).await;
    let token = field(&theirs, "access_token");

    let list = app.http.get(app.url("/sessions")).bearer_auth(token).send().await.unwrap();
    assert_eq!(list.status(), 403);
    let text = list.text().await.unwrap();
    assert!(!text.contains("127.0.0.1"), "{text}");
    let all = app.http.delete(app.url("/sessions")).bearer_auth(token).send().await.unwrap();
    assert_eq!(all.status(), 403);
    let sid = crate::common::claims(field(&own, "access_token"))["sid"].as_str().unwrap().to_owned();
    let one = app
        .http
        .delete(app.url(&format!("/sessions/{sid}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 403);
    assert_eq!(live_sessions(&app, &alice).await, 2);
    assert_eq!(app.me(field(&own, "access_token")).await.status(), 200);

    // The user's own (first-party) token manages them.
    let list = app
        .http
        .get(app.url("/sessions"))
        .bearer_auth(field(&own, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let body: Value = list.json().await.unwrap();
    assert_eq!(body["sessions"].as_array().unwrap().len(), 2);
}

/// L10: `/auth/login` mints tokens only for first-party clients; a third
/// party must go through the authorization pages and consent.
#[tokio::test]
async fn a_third_party_client_cannot_log_users_in_with_a_password() {
    let app = start!(&[]);
    app.add_user("alice").await;
    third_party(&app).await;
    let (status, code) = error_code(
        app.post_form(
            "/auth/login",
            &[("username", "alice"), ("password", PASSWORD), ("client_id", "lkc_third")],
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "unauthorized_client"));
    assert!(app.audit("login").await.is_empty(), "no session was started");
    let (first, _) = app.add_client("lkc_ours", "profile", false).await;
    let ok = app
        .post_form(
            "/auth/login",
            &[("username", "alice"), ("password", PASSWORD), ("client_id", &first)],
        )
        .await;
    assert_eq!(ok.status(), 200);
}

/// L3: a cross-site form post (a browser sends `Origin`) to the login or
/// sign-up endpoint is refused before anything is counted or created;
/// clients that send no `Origin`, and allowed origins, go on.
#[tokio::test]
async fn cross_site_posts_to_login_and_signup_are_refused() {
    let app = start!(&[("LATCHKEY_SIGNUP", "open"), ("LATCHKEY_THROTTLE_IP", "3/15m")]);
    app.add_user("alice").await;
    for _ in 0..5 {
        for path in ["/auth/login", "/auth/signup"] {
            let response = app
                .http
                .post(app.url(path))
                .header("origin", "https://evil.example")
                .form(&[("username", "mallory"), ("password", "a long enough password")])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 403, "{path}");
        }
    }
    assert!(app.state.store().user_by_name("mallory").await.unwrap().is_none());
    assert!(app.audit("login_failed").await.is_empty());
    // The address's attempts were not spent: a login and a sign-up go on.
    let login = app
        .http
        .post(app.url("/auth/login"))
        .header("origin", &app.base)
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let signup = app
        .post_form("/auth/signup", &[("username", "bob"), ("password", "a long enough password")])
        .await;
    assert_eq!(signup.status(), 200);
}

/// M2: a flood of refused logins writes one audit row for the account
/// becoming blocked (per window), and counts every refusal in the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_locked_account_is_audited_once_per_window_not_per_attempt() {
    let app = start!(&[("LATCHKEY_THROTTLE_ACCOUNT", "3/15m")]);
    app.add_user("alice").await;
    for _ in 0..3 {
        let wrong = app.post_form("/auth/login", &[("username", "alice"), ("password", "wrong")]).await;
        assert_eq!(wrong.status(), 400);
    }
    let attempts: Vec<_> = (0..300)
        .map(|_| {
            let request = app
                .http
                .post(app.url("/auth/login"))
                .form(&[("username", "alice"), ("password", "wrong")]);
            tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut refused = 0;
    for attempt in attempts {
        if attempt.await.unwrap() == 429 {
            refused += 1;
        }
    }
    assert_eq!(refused, 300);
    assert_eq!(app.audit("throttled").await.len(), 1, "one row per blocked key and window");
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("latchkey_throttled_total 300"), "{metrics}");
}

/// M2: routine refreshes are counted, not stored, unless the operator asks;
/// reuse is stored whatever the setting.
#[tokio::test]
async fn routine_refreshes_are_audited_only_when_asked() {
    for (setting, stored) in [("false", false), ("true", true)] {
        let app = start!(&[("LATCHKEY_AUDIT_REFRESHES", setting)]);
        app.add_user("alice").await;
        let pair = app.login("alice").await;
        let mut token = field(&pair, "refresh_token").to_owned();
        let first = token.clone();
        for _ in 0..5 {
            let next: Value = app.refresh(&token).await.json().await.unwrap();
            token = field(&next, "refresh_token").to_owned();
        }
        let refreshes = app.audit("refresh").await.len();
        assert_eq!(refreshes, if stored { 5 } else { 0 }, "LATCHKEY_AUDIT_REFRESHES={setting}");
        let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("latchkey_refreshes_total{outcome=\"rotated\"} 5"), "{metrics}");
        assert_eq!(app.refresh(&first).await.status(), 400);
        assert_eq!(app.audit("reuse_detected").await.len(), 1);
        assert_eq!(app.audit("login").await.len(), 1);
    }
}

/// M2: audit events past `LATCHKEY_AUDIT_RETENTION` are deleted by garbage
/// collection; newer ones stay.
#[tokio::test]
async fn garbage_collection_enforces_the_audit_retention() {
    let app = start!(&[("LATCHKEY_AUDIT_RETENTION", "30d")]);
    let now = app.state.now();
    for (age_days, detail) in [(40, "old"), (31, "older than the window"), (29, "recent"), (0, "now")] {
        app.state
            .store()
            .append_audit(&AuditEvent {
                at: now - age_days * 86_400,
                kind: "admin".into(),
                user_id: None,
                session_id: None,
                client_id: None,
                ip: None,
                user_agent: None,
                detail: detail.into(),
                actor_id: None,
            })
            .await
            .unwrap();
    }
    latchkey_app::maintenance::collect(app.state.app()).await;
    let left: Vec<String> = app.audit("admin").await.into_iter().map(|e| e.detail).collect();
    assert_eq!(left, ["now", "recent"]);
}

/// M3: logging out on the account page (browser mode) also ends this
/// browser's sign-in for the authorization pages, and clears its cookie.
#[tokio::test]
async fn browser_logout_also_ends_the_sign_in_of_the_authorization_pages() {
    let app = start!(&[]);
    let alice = app.add_user("alice").await;
    let (_, refresh_cookie, _) = app.browser_login().await;
    // The authorization pages' sign-in: a first-party session of alice's
    // whose refresh token the `__Host-lk_signin` cookie holds.
    let sign_in = app.login("alice").await;
    let sign_in_token = field(&sign_in, "refresh_token");
    assert_eq!(live_sessions(&app, &alice).await, 2);

    let out = app
        .http
        .post(app.url("/auth/logout"))
        .header("x-latchkey-browser", "1")
        .header("origin", &app.base)
        .header("cookie", format!("{refresh_cookie}; __Host-lk_signin={sign_in_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    let cleared: Vec<&str> = out.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(
        cleared.iter().any(|c| c.starts_with("__Host-lk_signin=;") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    assert_eq!(live_sessions(&app, &alice).await, 0);
    assert_eq!(app.refresh(sign_in_token).await.status(), 400);
}

/// M3: another user's sign-in in the same browser is not ended by this
/// user's logout.
#[tokio::test]
async fn browser_logout_leaves_another_users_sign_in_alone() {
    let app = start!(&[]);
    let alice = app.add_user("alice").await;
    let bob = app.add_user("bob").await;
    let (_, refresh_cookie, _) = app.browser_login().await;
    let bobs = app.login("bob").await;
    let out = app
        .http
        .post(app.url("/auth/logout"))
        .header("x-latchkey-browser", "1")
        .header("origin", &app.base)
        .header("cookie", format!("{refresh_cookie}; __Host-lk_signin={}", field(&bobs, "refresh_token")))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert_eq!(live_sessions(&app, &alice).await, 0);
    assert_eq!(live_sessions(&app, &bob).await, 1);
}

/// L5: the session cap is per user and client: a third-party client's
/// silent authorizations evict only its own oldest sessions.
#[tokio::test]
async fn one_applications_sessions_never_evict_the_users_own() {
    let app = start!(&[("LATCHKEY_MAX_SESSIONS_PER_USER", "2")]);
    let alice = app.add_user("alice").await;
    let first = app.login("alice").await;
    let second = app.login("alice").await;
    let client = third_party(&app).await;
    let mut theirs = Vec::new();
    for _ in 0..5 {
        theirs.push(code_flow(&app, &alice, &client).await);
    }
    assert_eq!(app.me(field(&first, "access_token")).await.status(), 200);
    assert_eq!(app.me(field(&second, "access_token")).await.status(), 200);
    assert_eq!(app.refresh(field(&first, "refresh_token")).await.status(), 200);
    // The client's own oldest went; its newest two stay.
    assert_eq!(app.me(field(&theirs[0], "access_token")).await.status(), 401);
    assert_eq!(app.me(field(&theirs[4], "access_token")).await.status(), 200);
    assert_eq!(live_sessions(&app, &alice).await, 4);
}

/// A client's own token by `client_credentials`.
async fn client_token(app: &TestApp, id: &str, secret: &str, scope: &str) -> reqwest::Response {
    app.http
        .post(app.url("/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await
        .unwrap()
}

async fn token_of(app: &TestApp, id: &str, secret: &str, scope: &str) -> String {
    let response = client_token(app, id, secret, scope).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    field(&body, "access_token").to_owned()
}

async fn admin_call(app: &TestApp, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// Whether introspection (by `by`) says `token` is active.
async fn active(app: &TestApp, by: (&str, &str), token: &str) -> bool {
    let body: Value = app
        .http
        .post(app.url("/oauth/introspect"))
        .basic_auth(by.0, Some(by.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["active"] == true
}

/// L9: an admin client is removed, disabled, narrowed and re-keyed through
/// the admin API; each change ends the client's tokens at once at the
/// admin API and introspection, and is audited with the acting admin.
#[tokio::test]
async fn clients_are_removed_disabled_narrowed_and_rekeyed_with_immediate_effect() {
    let app = start!(&[]);
    let (admin, admin_secret) = app.add_client("lkc_admin", "latchkey:admin", true).await;
    let admin_secret = admin_secret.unwrap();
    let admin_token = token_of(&app, &admin, &admin_secret, "latchkey:admin").await;
    let (other, other_secret) = app.add_client("lkc_other", "latchkey:admin reports", true).await;
    let other_secret = other_secret.unwrap();
    let (rs, rs_secret) = app.add_client("lkc_rs", "", true).await;
    let rs_secret = rs_secret.unwrap();
    let by = (rs.as_str(), rs_secret.as_str());

    // Narrowed: the scope goes, and the tokens that held it stop at once.
    let other_token = token_of(&app, &other, &other_secret, "latchkey:admin reports").await;
    assert!(active(&app, by, &other_token).await);
    let narrowed = admin_call(&app, &admin_token, reqwest::Method::PATCH, "/admin/clients/lkc_other", Some(serde_json::json!({"scope": "reports"}))).await;
    assert_eq!(narrowed.status(), 200);
    let body: Value = narrowed.json().await.unwrap();
    assert_eq!(body["scope"], "reports");
    assert!(!active(&app, by, &other_token).await);
    let refused = admin_call(&app, &other_token, reqwest::Method::GET, "/admin/users", None).await;
    assert_eq!(refused.status(), 401);
    let (status, code) = error_code(client_token(&app, &other, &other_secret, "latchkey:admin").await).await;
    assert_eq!((status, code.as_str()), (400, "invalid_scope"));

    // Re-keyed: the old secret and the tokens minted with it stop.
    let reports = token_of(&app, &other, &other_secret, "reports").await;
    assert!(active(&app, by, &reports).await);
    // Times are whole seconds: a token of the rotation's own second may
    // predate it and is let be; this one is a second older.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let rotated = admin_call(&app, &admin_token, reqwest::Method::PATCH, "/admin/clients/lkc_other", Some(serde_json::json!({"rotate_secret": true}))).await;
    assert_eq!(rotated.status(), 200);
    assert_eq!(rotated.headers()["cache-control"], "no-store");
    let body: Value = rotated.json().await.unwrap();
    let new_secret = field(&body, "client_secret").to_owned();
    assert!(!active(&app, by, &reports).await);
    let (status, code) = error_code(client_token(&app, &other, &other_secret, "reports").await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_client"));
    let fresh = token_of(&app, &other, &new_secret, "reports").await;
    assert!(active(&app, by, &fresh).await);
    let read: Value = admin_call(&app, &admin_token, reqwest::Method::GET, "/admin/clients/lkc_other", None).await.json().await.unwrap();
    assert!(read.get("client_secret").is_none(), "{read}");

    // Disabled, then enabled.
    let off = admin_call(&app, &admin_token, reqwest::Method::PATCH, "/admin/clients/lkc_other", Some(serde_json::json!({"disabled": true}))).await;
    assert_eq!(off.status(), 200);
    assert!(!active(&app, by, &fresh).await);
    let (status, _) = error_code(client_token(&app, &other, &new_secret, "reports").await).await;
    assert_eq!(status, 401);
    let on = admin_call(&app, &admin_token, reqwest::Method::PATCH, "/admin/clients/lkc_other", Some(serde_json::json!({"disabled": false}))).await;
    assert_eq!(on.status(), 200);
    token_of(&app, &other, &new_secret, "reports").await;

    // Removed: gone for good.
    let again = token_of(&app, &other, &new_secret, "reports").await;
    let removed = admin_call(&app, &admin_token, reqwest::Method::DELETE, "/admin/clients/lkc_other", None).await;
    assert_eq!(removed.status(), 204);
    assert!(!active(&app, by, &again).await);
    let (status, _) = error_code(client_token(&app, &other, &new_secret, "reports").await).await;
    assert_eq!(status, 401);
    let gone = admin_call(&app, &admin_token, reqwest::Method::GET, "/admin/clients/lkc_other", None).await;
    assert_eq!(gone.status(), 404);
    let list: Value = admin_call(&app, &admin_token, reqwest::Method::GET, "/admin/clients", None).await.json().await.unwrap();
    assert!(list["clients"].as_array().unwrap().iter().all(|c| c["client_id"] != "lkc_other"));

    // An admin client cannot remove or disable itself over the API.
    let itself = admin_call(&app, &admin_token, reqwest::Method::DELETE, "/admin/clients/lkc_admin", None).await;
    assert_eq!(itself.status(), 400);
    // Bad input changes nothing.
    for body in [serde_json::json!({}), serde_json::json!({"scope": "bad\"scope"}), serde_json::json!({"name": "x"})] {
        let bad = admin_call(&app, &admin_token, reqwest::Method::PATCH, "/admin/clients/lkc_rs", Some(body)).await;
        assert_eq!(bad.status(), 400);
    }
    for kind in ["client_scope_changed", "client_secret_rotated", "client_disabled", "client_enabled", "client_removed"] {
        let events = app.audit(kind).await;
        assert_eq!(events.len(), 1, "{kind}");
        assert_eq!(events[0].client_id.as_deref(), Some("lkc_admin"), "{kind}");
        assert!(events[0].detail.starts_with("lkc_other"), "{kind}: {}", events[0].detail);
    }
}

/// L9: disabling or removing a client the users signed in through revokes
/// those sessions at once.
#[tokio::test]
async fn removing_a_client_ends_its_users_sessions() {
    let app = start!(&[]);
    let (admin, admin_secret) = app.add_client("lkc_admin", "latchkey:admin", true).await;
    let admin_token = token_of(&app, &admin, &admin_secret.unwrap(), "latchkey:admin").await;
    let alice = app.add_user("alice").await;
    let own = app.login("alice").await;
    let client = third_party(&app).await;
    let theirs = code_flow(&app, &alice, &client).await;
    assert_eq!(app.me(field(&theirs, "access_token")).await.status(), 200);
    let removed = admin_call(&app, &admin_token, reqwest::Method::DELETE, "/admin/clients/lkc_third", None).await;
    assert_eq!(removed.status(), 204);
    assert_eq!(app.me(field(&theirs, "access_token")).await.status(), 401);
    let refresh = app
        .post_form("/oauth/token", &[("grant_type", "refresh_token"), ("refresh_token", field(&theirs, "refresh_token")), ("client_id", "lkc_third")])
        .await;
    assert_eq!(refresh.status(), 401);
    assert_eq!(app.me(field(&own, "access_token")).await.status(), 200);
    let revoked = app.audit("session_revoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].detail, "revoked_by_admin");
}
