// Included once per storage backend by tests/admin.rs; `BACKEND` names it.

use crate::common::{PASSWORD, TestApp, claims, error_code, field, join_all};
use serde_json::{Value, json};

const NEW_PASSWORD: &str = "a much longer passphrase";

/// An admin client's access token.
async fn admin_token(app: &TestApp) -> String {
    app.admin_token().await
}

async fn client_token(app: &TestApp, id: &str, secret: &str, scope: &str) -> String {
    let response = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    field(&body, "access_token").to_owned()
}

/// An admin call with a JSON body (or none).
async fn call(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn get_json(app: &TestApp, token: &str, path: &str) -> Value {
    let response = call(app, token, reqwest::Method::GET, path, None).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

async fn create(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    call(app, token, reqwest::Method::POST, "/admin/users", Some(body)).await
}

async fn login_as(app: &TestApp, name: &str, password: &str) -> reqwest::Response {
    app.post_form("/auth/login", &[("username", name), ("password", password)]).await
}

/// The admin role (SPEC §15): given at creation, shown, changed.
#[tokio::test]
async fn the_admin_role_is_given_shown_and_withdrawn() {
    let app = start!(&[]);
    let admin = admin_token(&app).await;
    let created = create(&app, &admin, json!({"username": "olga", "password": PASSWORD, "admin": true})).await;
    assert_eq!(created.status(), 201);
    let olga: Value = created.json().await.unwrap();
    assert_eq!(olga["admin"], true);
    let plain: Value = create(&app, &admin, json!({"username": "pete", "password": PASSWORD})).await.json().await.unwrap();
    assert_eq!(plain["admin"], false);
    let path = format!("/admin/users/{}", field(&olga, "id"));
    let changed = call(&app, &admin, reqwest::Method::PATCH, &path, Some(json!({"admin": false}))).await;
    assert_eq!(changed.status(), 200);
    assert_eq!(get_json(&app, &admin, &path).await["admin"], false);
    let bad = call(&app, &admin, reqwest::Method::PATCH, &path, Some(json!({"admin": "yes"}))).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(app.audit("admin_granted").await.len(), 1);
    assert_eq!(app.audit("admin_withdrawn").await.len(), 1);
}

#[tokio::test]
async fn the_admin_api_needs_an_admin_clients_token() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let none = app.http.get(app.url("/admin/users")).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer realm=\"latchkey\"");
    let forged = call(&app, "not.a.token", reqwest::Method::GET, "/admin/users", None).await;
    assert_eq!(forged.status(), 401);
    // A user's token, and another client's, are refused with 403.
    let user = app.login("alice").await;
    let mine = call(&app, field(&user, "access_token"), reqwest::Method::GET, "/admin/users", None).await;
    assert_eq!(mine.status(), 403);
    assert!(mine.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));
    let (id, secret) = app.add_client("lkc_api", "reports", true).await;
    let other = client_token(&app, &id, &secret.unwrap(), "reports").await;
    assert_eq!(call(&app, &other, reqwest::Method::GET, "/admin/users", None).await.status(), 403);
    let before = app.state.store().list_users().await.unwrap().len();
    let refused = create(&app, &other, json!({"username": "mallory", "password": PASSWORD})).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(app.state.store().list_users().await.unwrap().len(), before);
    // An admin token works.
    let admin = admin_token(&app).await;
    assert_eq!(get_json(&app, &admin, "/admin/users").await["users"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn users_are_created_read_changed_and_deleted() {
    let app = start!(&[]);
    let admin = admin_token(&app).await;
    let created = create(&app, &admin, json!({"username": "carol", "password": PASSWORD})).await;
    assert_eq!(created.status(), 201);
    let carol: Value = created.json().await.unwrap();
    let id = field(&carol, "id").to_owned();
    assert_eq!(carol["username"], "carol");
    assert_eq!(carol["disabled"], false);
    assert!(carol["created_at"].as_i64().unwrap() > 0);
    assert!(carol.get("password_hash").is_none());
    let taken = create(&app, &admin, json!({"username": "carol", "password": PASSWORD})).await;
    assert_eq!(error_code(taken).await, (409, "conflict".into()));
    assert_eq!(get_json(&app, &admin, &format!("/admin/users/{id}")).await, carol);
    let missing = call(&app, &admin, reqwest::Method::GET, "/admin/users/usr_nobody", None).await;
    assert_eq!(missing.status(), 404);

    // Carol logs in; disabling her revokes that session at once.
    let pair: Value = login_as(&app, "carol", PASSWORD).await.json().await.unwrap();
    let path = format!("/admin/users/{id}");
    let disabled = call(&app, &admin, reqwest::Method::PATCH, &path, Some(json!({"disabled": true}))).await;
    assert_eq!(disabled.status(), 200);
    assert_eq!(disabled.json::<Value>().await.unwrap()["disabled"], true);
    assert_eq!(app.me(field(&pair, "access_token")).await.status(), 401);
    assert_eq!(app.refresh(field(&pair, "refresh_token")).await.status(), 400);
    assert_eq!(login_as(&app, "carol", PASSWORD).await.status(), 400);
    let enabled = call(&app, &admin, reqwest::Method::PATCH, &path, Some(json!({"disabled": false}))).await;
    assert_eq!(enabled.status(), 200);

    // A new password revokes every session (SPEC §11: `password_changed`)
    // and applies to the next login.
    let before: Value = login_as(&app, "carol", PASSWORD).await.json().await.unwrap();
    let changed = call(&app, &admin, reqwest::Method::PATCH, &path, Some(json!({"password": NEW_PASSWORD}))).await;
    assert_eq!(changed.status(), 200);
    assert_eq!(app.me(field(&before, "access_token")).await.status(), 401);
    let ended: Value = app.refresh(field(&before, "refresh_token")).await.json().await.unwrap();
    assert_eq!(ended["end_reason"], "password_changed");
    assert_eq!(login_as(&app, "carol", PASSWORD).await.status(), 400);
    let pair: Value = login_as(&app, "carol", NEW_PASSWORD).await.json().await.unwrap();
    assert_eq!(app.me(field(&pair, "access_token")).await.status(), 200);

    // Deleting revokes every session and frees the name; the trail stays.
    let deleted = call(&app, &admin, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(app.me(field(&pair, "access_token")).await.status(), 401);
    assert_eq!(app.refresh(field(&pair, "refresh_token")).await.status(), 400);
    assert_eq!(call(&app, &admin, reqwest::Method::GET, &path, None).await.status(), 404);
    assert_eq!(call(&app, &admin, reqwest::Method::DELETE, &path, None).await.status(), 404);
    assert_eq!(login_as(&app, "carol", NEW_PASSWORD).await.status(), 400);
    assert!(app.state.store().live_sessions(&id, app.state.now()).await.unwrap().is_empty());
    let again = create(&app, &admin, json!({"username": "carol", "password": PASSWORD})).await;
    assert_eq!(again.status(), 201);
    assert_ne!(again.json::<Value>().await.unwrap()["id"], id.as_str());

    // Every change is audited with the admin client's id.
    for kind in ["user_added", "user_disabled", "user_enabled", "password_changed", "user_deleted"] {
        let events = app.audit(kind).await;
        assert!(!events.is_empty(), "no {kind}");
        assert!(events.iter().all(|e| e.client_id.as_deref() == Some("lkc_admin")), "{kind}: {events:?}");
    }
    let trail = get_json(&app, &admin, &format!("/admin/audit?user_id={id}")).await;
    let kinds: Vec<&str> = trail["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"user_deleted") && kinds.contains(&"user_added"), "{kinds:?}");
}

#[tokio::test]
async fn a_user_without_a_password_cannot_log_in_with_one() {
    let app = start!(&[]);
    let admin = admin_token(&app).await;
    let created = create(&app, &admin, json!({"username": "sso-user"})).await;
    assert_eq!(created.status(), 201);
    assert_eq!(login_as(&app, "sso-user", "").await.status(), 400);
    assert_eq!(login_as(&app, "sso-user", PASSWORD).await.status(), 400);
}

#[tokio::test]
async fn users_list_in_pages_with_a_cursor() {
    let app = start!(&[]);
    let admin = admin_token(&app).await;
    for name in ["u1", "u2", "u3", "u4", "u5"] {
        assert_eq!(create(&app, &admin, json!({"username": name, "password": PASSWORD})).await.status(), 201);
    }
    let mut names = Vec::new();
    let mut path = "/admin/users?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = get_json(&app, &admin, &path).await;
        pages += 1;
        let users = page["users"].as_array().unwrap();
        assert!(users.len() <= 2);
        names.extend(users.iter().map(|u| u["username"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/admin/users?limit=2&cursor={cursor}"),
            None => {
                assert!(page["next_cursor"].is_null());
                break;
            }
        }
    }
    names.sort();
    assert_eq!(names, ["u1", "u2", "u3", "u4", "u5"]);
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn a_users_sessions_are_listed_and_revoked() {
    let app = start!(&[]);
    let user = app.add_user("alice").await;
    let admin = admin_token(&app).await;
    let first = app.login("alice").await;
    let second = app.login("alice").await;
    let sessions = get_json(&app, &admin, &format!("/admin/users/{}/sessions", user.id)).await;
    let list = sessions["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|s| s["user_id"] == user.id.as_str() && s["scope"].is_string()));

    // Revoke one: its tokens die, the other's live.
    let first_sid = claims(field(&first, "access_token"))["sid"].as_str().unwrap().to_owned();
    let revoked = call(&app, &admin, reqwest::Method::DELETE, &format!("/admin/sessions/{first_sid}"), None).await;
    assert_eq!(revoked.status(), 204);
    assert_eq!(app.me(field(&first, "access_token")).await.status(), 401);
    assert_eq!(app.refresh(field(&first, "refresh_token")).await.status(), 400);
    assert_eq!(app.me(field(&second, "access_token")).await.status(), 200);
    let unknown = call(&app, &admin, reqwest::Method::DELETE, "/admin/sessions/ses_nothing", None).await;
    assert_eq!(unknown.status(), 404);
    assert!(app.audit("session_revoked").await.iter().any(|e| e.client_id.as_deref() == Some("lkc_admin")));

    // Revoke all.
    let all = call(&app, &admin, reqwest::Method::DELETE, &format!("/admin/users/{}/sessions", user.id), None).await;
    assert_eq!(all.status(), 204);
    assert_eq!(app.me(field(&second, "access_token")).await.status(), 401);
    let none = get_json(&app, &admin, &format!("/admin/users/{}/sessions", user.id)).await;
    assert_eq!(none["sessions"], json!([]));
    let nobody = call(&app, &admin, reqwest::Method::GET, "/admin/users/usr_nobody/sessions", None).await;
    assert_eq!(nobody.status(), 404);
}

#[tokio::test]
async fn an_application_session_rotates_is_reuse_detected_and_dies_with_its_user() {
    let app = start!(&[]);
    let admin = admin_token(&app).await;
    let created = create(&app, &admin, json!({"username": "app-user"})).await;
    let user_id = field(&created.json::<Value>().await.unwrap(), "id").to_owned();
    let (feed_client, feed_secret) = app.add_client("lkc_feed", "", true).await;
    let feed_secret = feed_secret.unwrap();
    let new_session = |body: Value| call(&app, &admin, reqwest::Method::POST, "/admin/sessions", Some(body));

    // A token pair for a user the application authenticated itself.
    let response = new_session(json!({"user_id": user_id})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let pair: Value = response.json().await.unwrap();
    assert_eq!(pair["token_type"], "Bearer");
    let me: Value = app.me(field(&pair, "access_token")).await.json().await.unwrap();
    assert_eq!(me["username"], "app-user");
    assert_eq!(me["client_id"], "first-party");
    assert!(app.audit("admin_session_created").await.iter().any(|e| e.client_id.as_deref() == Some("lkc_admin")));

    // It rotates, and a reuse revokes it, like every other session.
    let rotated = app.refresh(field(&pair, "refresh_token")).await;
    assert_eq!(rotated.status(), 200);
    let successor: Value = rotated.json().await.unwrap();
    assert_ne!(successor["refresh_token"], pair["refresh_token"]);
    assert_eq!(app.refresh(field(&pair, "refresh_token")).await.status(), 400);
    assert_eq!(app.refresh(field(&successor, "refresh_token")).await.status(), 400);
    assert!(!app.audit("reuse_detected").await.is_empty());

    // Through a registered client, within its scopes.
    app.add_client("lkc_spa", "profile email", false).await;
    let scoped = new_session(json!({"user_id": user_id, "client_id": "lkc_spa", "scope": "profile"})).await;
    assert_eq!(scoped.status(), 200);
    let scoped: Value = scoped.json().await.unwrap();
    assert_eq!(claims(field(&scoped, "access_token"))["client_id"], "lkc_spa");
    let wider = new_session(json!({"user_id": user_id, "client_id": "lkc_spa", "scope": "admin"})).await;
    assert_eq!(error_code(wider).await, (400, "invalid_scope".into()));
    let no_client = new_session(json!({"user_id": user_id, "client_id": "lkc_none"})).await;
    assert_eq!(no_client.status(), 400);
    let no_user = new_session(json!({"user_id": "usr_nobody"})).await;
    assert_eq!(no_user.status(), 404);

    // Deleting the user revokes the live session at once, and in the feed.
    let live = new_session(json!({"user_id": user_id})).await.json::<Value>().await.unwrap();
    let sid = claims(field(&live, "access_token"))["sid"].as_str().unwrap().to_owned();
    let since = app.state.now() - 1;
    let deleted = call(&app, &admin, reqwest::Method::DELETE, &format!("/admin/users/{user_id}"), None).await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(app.me(field(&live, "access_token")).await.status(), 401);
    let refused = app
        .post_form("/oauth/token", &[("grant_type", "refresh_token"), ("refresh_token", field(&live, "refresh_token"))])
        .await;
    assert_eq!(error_code(refused).await, (400, "invalid_grant".into()));
    let feed: Value = app
        .http
        .get(app.url(&format!("/oauth/revocations?since={since}")))
        .basic_auth(&feed_client, Some(&feed_secret))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let announced: Vec<&str> = feed["revoked"].as_array().unwrap().iter().map(|r| r["sid"].as_str().unwrap()).collect();
    assert!(announced.contains(&sid.as_str()), "{feed}");
    let gone = new_session(json!({"user_id": user_id})).await;
    assert_eq!(gone.status(), 404);
}

#[tokio::test]
async fn the_audit_trail_is_queried_by_user_kind_and_time_in_pages() {
    let app = start!(&[]);
    let alice = app.add_user("alice").await;
    app.add_user("bob").await;
    let admin = admin_token(&app).await;
    for _ in 0..3 {
        app.login("alice").await;
    }
    app.login("bob").await;
    let path = format!("/admin/audit?user_id={}&kind=login&limit=2", alice.id);
    let first = get_json(&app, &admin, &path).await;
    let events = first["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e["user_id"] == alice.id.as_str() && e["kind"] == "login"));
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = get_json(&app, &admin, &format!("{path}&cursor={cursor}")).await;
    assert_eq!(second["events"].as_array().unwrap().len(), 1);
    assert!(second["next_cursor"].is_null());
    let at = events[0]["at"].as_i64().unwrap();
    let later = get_json(&app, &admin, &format!("/admin/audit?kind=login&since={}", at + 1000)).await;
    assert_eq!(later["events"], json!([]));
    let earlier = get_json(&app, &admin, &format!("/admin/audit?kind=login&until={}", at + 1000)).await;
    assert_eq!(earlier["events"].as_array().unwrap().len(), 4);
    for bad in ["cursor=%%%", "cursor=bm90LWEtbnVtYmVy", "limit=0", "limit=100000", "limit=x", "since=soon", "colour=red", "kind=a&kind=b", "kind=a%00"] {
        let response = call(&app, &admin, reqwest::Method::GET, &format!("/admin/audit?{bad}"), None).await;
        assert_eq!(error_code(response).await, (400, "invalid_request".into()), "{bad}");
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let app = start!(&[]);
    let user = app.add_user("alice").await;
    let admin = admin_token(&app).await;
    let before = all_users(&app).await;
    let raw = |content_type: &'static str, body: &'static str| {
        app.http
            .post(app.url("/admin/users"))
            .bearer_auth(&admin)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    for (content_type, body) in [
        ("application/x-www-form-urlencoded", "username=eve&password=correct+horse+battery"),
        ("text/plain", r#"{"username":"eve","password":"correct horse battery"}"#),
        ("application/json", ""),
        ("application/json", "{"),
        ("application/json", r#"["eve"]"#),
        ("application/json", r#"{"username":"eve","password":"correct horse battery","role":"admin"}"#),
        ("application/json", r#"{"username":"eve","password":"correct horse battery","admin":"yes"}"#),
        ("application/json", r#"{"username":"eve","username":"mallory","password":"correct horse battery"}"#),
        ("application/json", r#"{"username":"e\u0000ve","password":"correct horse battery"}"#),
        ("application/json", r#"{"username":"eve","password":"short"}"#),
        ("application/json", r#"{"username":42,"password":"correct horse battery"}"#),
        ("application/json", r#"{"username":"","password":"correct horse battery"}"#),
        ("application/json", r#"{"password":"correct horse battery"}"#),
    ] {
        let response = raw(content_type, body).await.unwrap();
        assert_eq!(error_code(response).await, (400, "invalid_request".into()), "{content_type} {body}");
    }
    let long = create(&app, &admin, json!({"username": "x".repeat(257), "password": PASSWORD})).await;
    assert_eq!(long.status(), 400);
    assert_eq!(all_users(&app).await, before);

    // Changes: nothing to change, wrong types, a short password.
    let path = format!("/admin/users/{}", user.id);
    for body in [json!({}), json!({"disabled": "yes"}), json!({"password": "short"}), json!({"disabled": true, "role": "admin"})] {
        let response = call(&app, &admin, reqwest::Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!(response.status(), 400, "{body}");
    }
    assert_eq!(all_users(&app).await, before);
    assert_eq!(login_as(&app, "alice", PASSWORD).await.status(), 200);
    // Ids: unknown ones are 404, a NUL is 400, bad cursors 400.
    let unknown = call(&app, &admin, reqwest::Method::PATCH, "/admin/users/usr_nobody", Some(json!({"disabled": true}))).await;
    assert_eq!(unknown.status(), 404);
    let nul = call(&app, &admin, reqwest::Method::GET, "/admin/users/usr%00x", None).await;
    assert_eq!(nul.status(), 400);
    for bad in ["cursor=%%%", "cursor=AA", "limit=-1", "limit=201"] {
        let response = call(&app, &admin, reqwest::Method::GET, &format!("/admin/users?{bad}"), None).await;
        assert_eq!(response.status(), 400, "{bad}");
    }
    let session = call(&app, &admin, reqwest::Method::POST, "/admin/sessions", Some(json!({"user_id": user.id, "ip": "1.2.3.4"}))).await;
    assert_eq!(session.status(), 400);
    assert!(app.state.store().live_sessions(&user.id, app.state.now()).await.unwrap().len() == 1);
}

#[tokio::test]
async fn one_name_created_at_once_many_times_is_created_once() {
    let app = start!(&[]);
    let admin = admin_token(&app).await;
    let attempts = (0..16).map(|_| create(&app, &admin, json!({"username": "dup", "password": PASSWORD})));
    let statuses: Vec<u16> = futures_statuses(attempts).await;
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 201 || *s == 409), "{statuses:?}");
}

async fn futures_statuses(
    requests: impl Iterator<Item = impl std::future::Future<Output = reqwest::Response>>,
) -> Vec<u16> {
    let handles: Vec<_> = requests.map(|r| async move { r.await.status().as_u16() }).collect();
    let mut statuses = Vec::new();
    for status in join_all(handles).await {
        statuses.push(status);
    }
    statuses
}


#[tokio::test]
async fn sign_up_is_off_unless_open() {
    let app = start!(&[]);
    let response = app.post_form("/auth/signup", &[("username", "dave"), ("password", PASSWORD)]).await;
    assert_eq!(response.status(), 404);
    assert!(app.state.store().user_by_name("dave").await.unwrap().is_none());
    let page = app.http.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("Sign up"));
}

#[tokio::test]
async fn an_open_sign_up_answers_like_a_login() {
    let app = start!(&[("LATCHKEY_SIGNUP", "open")]);
    let response = app.post_form("/auth/signup", &[("username", "dave"), ("password", PASSWORD)]).await;
    assert_eq!(response.status(), 200);
    let pair: Value = response.json().await.unwrap();
    assert!(field(&pair, "refresh_token").starts_with("lk_rt_"));
    let me: Value = app.me(field(&pair, "access_token")).await.json().await.unwrap();
    assert_eq!(me["username"], "dave");
    assert_eq!(app.refresh(field(&pair, "refresh_token")).await.status(), 200);
    assert_eq!(login_as(&app, "dave", PASSWORD).await.status(), 200);
    // JSON, the same rules as the command line, and a taken name is a 409.
    let json_signup = app.http.post(app.url("/auth/signup")).json(&json!({"username": "erin", "password": PASSWORD})).send().await.unwrap();
    assert_eq!(json_signup.status(), 200);
    let taken = app.post_form("/auth/signup", &[("username", "dave"), ("password", PASSWORD)]).await;
    assert_eq!(error_code(taken).await, (409, "conflict".into()));
    for (name, password) in [("frank", "short"), ("", PASSWORD), ("fr\0ank", PASSWORD), ("fr\nank", PASSWORD)] {
        let response = app.post_form("/auth/signup", &[("username", name), ("password", password)]).await;
        assert_eq!(error_code(response).await, (400, "invalid_request".into()), "{name:?} {password:?}");
    }
    assert_eq!(app.state.store().list_users().await.unwrap().len(), 2);
    // Browser mode: the refresh token in the cookie only.
    let browser = app
        .http
        .post(app.url("/auth/signup"))
        .header("x-latchkey-browser", "1")
        .header("origin", &app.base)
        .form(&[("username", "grace"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), 200);
    assert!(browser.headers()["set-cookie"].to_str().unwrap().starts_with("__Secure-lk_rt=lk_rt_"));
    assert!(browser.json::<Value>().await.unwrap().get("refresh_token").is_none());
    // The account page offers it.
    let page = app.http.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(">Sign up</button>"));
}

#[tokio::test]
async fn sign_ups_from_one_address_at_once_stop_at_the_limit() {
    let app = start!(&[("LATCHKEY_SIGNUP", "open"), ("LATCHKEY_THROTTLE_IP", "5/15m")]);
    let signups = (0..30).map(|i| {
        let name = format!("user{i}");
        let app = &app;
        async move { app.post_form("/auth/signup", &[("username", name.as_str()), ("password", PASSWORD)]).await }
    });
    let statuses = futures_statuses(signups).await;
    let created = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(created, 5, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429 || *s == 503), "{statuses:?}");
    assert_eq!(app.state.store().list_users().await.unwrap().len(), 5);
}

async fn all_users(app: &TestApp) -> Vec<latchkey_core::store::User> {
    app.state.store().list_users().await.unwrap()
}

/// L4: one account per visible name, through sign-up and the admin API
/// alike: case, compatibility forms and invisible characters cannot make a
/// second `alice`, and any spelling of the name logs in.
#[tokio::test]
async fn names_that_look_alike_are_one_account() {
    let app = start!(&[("LATCHKEY_SIGNUP", "open")]);
    let token = admin_token(&app).await;
    let made = create(&app, &token, json!({"username": "Alice", "password": PASSWORD})).await;
    assert_eq!(made.status(), 201);
    let body: Value = made.json().await.unwrap();
    assert_eq!(body["username"], "alice", "stored in its canonical form");
    for twin in ["alice", "ALICE", "ａｌｉｃｅ", "Ａｌｉｃｅ"] {
        let again = create(&app, &token, json!({"username": twin, "password": PASSWORD})).await;
        assert_eq!(again.status(), 409, "{twin:?}");
        let signup = app.post_form("/auth/signup", &[("username", twin), ("password", PASSWORD)]).await;
        assert_eq!(signup.status(), 409, "{twin:?}");
    }
    for invisible in ["alice\u{200b}", " alice", "alice ", "\u{202e}ecila", "al\u{2066}ice", "ali\u{ad}ce"] {
        let (status, code) = error_code(create(&app, &token, json!({"username": invisible, "password": PASSWORD})).await).await;
        assert_eq!((status, code.as_str()), (400, "invalid_request"), "{invisible:?}");
        let (status, _) = error_code(app.post_form("/auth/signup", &[("username", invisible), ("password", PASSWORD)]).await).await;
        assert_eq!(status, 400, "{invisible:?}");
    }
    let users = get_json(&app, &token, "/admin/users?limit=100").await;
    let names: Vec<&str> = users["users"].as_array().unwrap().iter().filter_map(|u| u["username"].as_str()).collect();
    assert_eq!(names, ["alice"]);
    for spelling in ["alice", "ALICE", "ａｌｉｃｅ"] {
        assert_eq!(login_as(&app, spelling, PASSWORD).await.status(), 200, "{spelling:?}");
    }
}
