// Included once per storage backend by tests/console.rs; `BACKEND` names it.

use std::sync::Arc;
use std::time::Duration;

use crate::common::receiver::Receiver;
use crate::common::smtp::Smtp;
use crate::common::{PASSWORD, TestApp, claims, error_code, field, join_all};
use latchkey_app::service::Actor;
use latchkey_core::clock::{Clock, ManualClock};
use latchkey_core::totp::{code_at, step_of};
use serde_json::{Value, json};

const ADMIN_SCOPE: &str = "latchkey:admin";

/// Makes `name` an admin (as `latchkey user admin NAME on` does).
async fn make_admin(app: &TestApp, name: &str) -> String {
    let user = app.add_user(name).await;
    app.state.users.set_admin(&user, true, &Actor::cli()).await.unwrap();
    user.id
}

/// Sets up an authenticator app for `name` through the API; its secret.
async fn enrol_app(app: &TestApp, name: &str) -> Vec<u8> {
    let access = field(&app.login(name).await, "access_token").to_owned();
    let setup: Value = app.http.post(app.url("/auth/totp")).bearer_auth(&access).send().await.unwrap().json().await.unwrap();
    let secret = data_encoding::BASE32_NOPAD.decode(field(&setup, "secret").as_bytes()).unwrap();
    let code = code_at(&secret, step_of(app.state.now()));
    let confirmed = app.http.post(app.url("/auth/totp/confirm")).bearer_auth(&access).json(&json!({ "code": code })).send().await.unwrap();
    assert_eq!(confirmed.status(), 200);
    secret
}

/// Signs `name` in as the console does (asking for `latchkey:admin`),
/// taking the second step with `secret`'s code at `at` when asked; the
/// token response.
async fn console_sign_in(app: &TestApp, name: &str, secret: Option<&[u8]>, at: i64) -> Value {
    let response = app.post_form("/auth/login", &[("username", name), ("password", PASSWORD), ("scope", ADMIN_SCOPE)]).await;
    if response.status() == 200 {
        return response.json().await.unwrap();
    }
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "mfa_required", "{body}");
    let code = code_at(secret.expect("a second factor"), step_of(at));
    let response = app.post_form("/auth/login/mfa", &[("mfa_token", field(&body, "mfa_token")), ("otp", &code)]).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn scope_of(tokens: &Value) -> Vec<String> {
    field(tokens, "scope").split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

async fn get(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.http.get(app.url(path)).bearer_auth(token).send().await.unwrap()
}

/// An admin's sign-in gets `latchkey:admin` only with the strength
/// `LATCHKEY_CONSOLE_ACR` asks (default `mfa`); a user who is not an admin
/// never does (the sign-in succeeds, without it, and the admin API answers
/// 403); nor does a sign-in through a client; and the token is checked
/// again on every call, so withdrawing the role ends it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admins_strong_first_party_sign_in_gets_the_admin_scope() {
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(&[], clock.clone());
    let root = make_admin(&app, "root").await;

    // Without a second factor: signed in, but not for the console.
    let weak = console_sign_in(&app, "root", None, clock.now()).await;
    assert!(!scope_of(&weak).iter().any(|s| s == ADMIN_SCOPE), "{weak}");
    let (status, code) = error_code(get(&app, field(&weak, "access_token"), "/admin/overview").await).await;
    assert_eq!((status, code.as_str()), (403, "insufficient_scope"));

    // A user who is not an admin, with a second factor: never.
    app.add_user("bob").await;
    let bobs = enrol_app(&app, "bob").await;
    clock.advance(30);
    let bob = console_sign_in(&app, "bob", Some(&bobs), clock.now()).await;
    assert!(!scope_of(&bob).iter().any(|s| s == ADMIN_SCOPE), "{bob}");
    assert_eq!(get(&app, field(&bob, "access_token"), "/admin/users").await.status(), 403);

    // The admin with a second factor: the console's token.
    let secret = enrol_app(&app, "root").await;
    clock.advance(30);
    let strong = console_sign_in(&app, "root", Some(&secret), clock.now()).await;
    assert!(scope_of(&strong).iter().any(|s| s == ADMIN_SCOPE), "{strong}");
    assert_eq!(claims(field(&strong, "access_token"))["acr"], "mfa");
    let token = field(&strong, "access_token").to_owned();
    assert_eq!(get(&app, &token, "/admin/overview").await.status(), 200);
    // Its refreshed tokens keep it, as the session does.
    let refreshed: Value = app.refresh(field(&strong, "refresh_token")).await.json().await.unwrap();
    assert!(scope_of(&refreshed).iter().any(|s| s == ADMIN_SCOPE), "{refreshed}");

    // Through a registered client, even the admin's strong sign-in: no.
    let (client_id, _) = app.add_client("lkc_app", "openid profile latchkey:admin", false).await;
    let via_client = app.post_form("/auth/login", &[("username", "root"), ("password", PASSWORD), ("scope", ADMIN_SCOPE), ("client_id", &client_id)]).await;
    let (status, code) = error_code(via_client).await;
    assert_eq!((status, code.as_str()), (400, "invalid_scope"));

    // The console makes no sessions for other users.
    let made = app.http.post(app.url("/admin/sessions")).bearer_auth(&token).json(&json!({"user_id": "usr_bob"})).send().await.unwrap();
    assert_eq!(made.status(), 403);

    // Withdrawn: the same, unexpired token is refused at its next call.
    let user = app.state.users.by_id(&root).await.unwrap();
    app.state.users.set_admin(&user, false, &Actor::cli()).await.unwrap();
    assert_eq!(get(&app, &token, "/admin/users").await.status(), 403);
}

/// `LATCHKEY_CONSOLE_ACR=phr` asks for a passkey: a password and a code
/// are not enough; `pwd` takes a password alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_asks_the_strength_its_setting_names() {
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(&[("LATCHKEY_CONSOLE_ACR", "phr")], clock.clone());
    make_admin(&app, "root").await;
    let secret = enrol_app(&app, "root").await;
    clock.advance(30);
    let mfa = console_sign_in(&app, "root", Some(&secret), clock.now()).await;
    assert!(!scope_of(&mfa).iter().any(|s| s == ADMIN_SCOPE), "{mfa}");

    let app = start!(&[("LATCHKEY_CONSOLE_ACR", "pwd")]);
    make_admin(&app, "root").await;
    let pwd = console_sign_in(&app, "root", None, 0).await;
    assert!(scope_of(&pwd).iter().any(|s| s == ADMIN_SCOPE), "{pwd}");
    assert_eq!(get(&app, field(&pwd, "access_token"), "/admin/overview").await.status(), 200);
}

/// What an admin does through the console is audited with their user id
/// (`actor_id`) beside the user acted on, and the audit filter by user
/// finds it under either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_actions_are_audited_with_the_admins_user_id() {
    let app = start!(&[("LATCHKEY_CONSOLE_ACR", "pwd")]);
    let root = make_admin(&app, "root").await;
    let bob = app.add_user("bob").await;
    let token = field(&console_sign_in(&app, "root", None, 0).await, "access_token").to_owned();
    let disabled = app.http.patch(app.url(&format!("/admin/users/{}", bob.id))).bearer_auth(&token).json(&json!({"disabled": true})).send().await.unwrap();
    assert_eq!(disabled.status(), 200);
    let revoked = app.http.delete(app.url(&format!("/admin/users/{}/sessions", bob.id))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(revoked.status(), 204);
    let events: Value = get(&app, &token, &format!("/admin/audit?user_id={root}")).await.json().await.unwrap();
    let acted: Vec<&Value> = events["events"].as_array().unwrap().iter().filter(|e| e["actor_id"] == root.as_str()).collect();
    assert!(acted.iter().any(|e| e["kind"] == "user_disabled" && e["user_id"] == bob.id.as_str()), "{events}");
    let stored = app.audit("user_disabled").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].actor_id.as_deref(), Some(root.as_str()));
    assert_eq!(stored[0].user_id.as_deref(), Some(bob.id.as_str()));
    // A client's own token acts as the client, with no admin user.
    let client = app.admin_token().await;
    let enabled = app.http.patch(app.url(&format!("/admin/users/{}", bob.id))).bearer_auth(&client).json(&json!({"disabled": false})).send().await.unwrap();
    assert_eq!(enabled.status(), 200);
    let stored = app.audit("user_enabled").await;
    assert_eq!(stored[0].actor_id, None);
    assert_eq!(stored[0].client_id.as_deref(), Some("lkc_admin"));
}

fn total(chart: &Value, series: &str) -> u64 {
    chart["series"][series].as_array().map_or(0, |c| c.iter().map(|n| n.as_u64().unwrap()).sum())
}

/// The overview counts logins, failures, refreshes and ends from every
/// instance into the database: another instance shows the same numbers;
/// reading it many times at once counts nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_overview_counts_what_every_instance_did_once() {
    let app = start!(&[("LATCHKEY_CONSOLE_ACR", "pwd")]);
    let other = app.beside(&[("LATCHKEY_CONSOLE_ACR", "pwd")]).await;
    app.add_user("alice").await;
    make_admin(&app, "root").await;
    let admin = app.admin_token().await;
    let first = app.login("alice").await;
    app.login("alice").await;
    other.login("alice").await;
    let wrong = app.post_form("/auth/login", &[("username", "alice"), ("password", "not the password")]).await;
    assert_eq!(wrong.status(), 400);
    let refreshed: Value = app.refresh(field(&first, "refresh_token")).await.json().await.unwrap();
    let everywhere = app.http.delete(app.url("/sessions")).bearer_auth(field(&refreshed, "access_token")).send().await.unwrap();
    assert!(everywhere.status().is_success(), "{}", everywhere.status());

    // Each instance adds what it counted when its overview is read (and
    // every few seconds when serving); many reads at once add it once.
    let reads = join_all((0..8).map(|_| get(&app, &admin, "/admin/overview")).collect()).await;
    assert!(reads.iter().all(|r| r.status() == 200));
    let overview: Value = get(&other, &admin, "/admin/overview").await.json().await.unwrap();
    for chart in [&overview["hour"], &overview["day"]] {
        assert_eq!(total(chart, "logins_succeeded"), 3, "{chart}");
        assert_eq!(total(chart, "sessions_started"), 3, "{chart}");
        assert_eq!(total(chart, "logins_failed"), 1, "{chart}");
        assert_eq!(total(chart, "refreshes"), 1, "{chart}");
        assert_eq!(total(chart, "reuse_detected"), 0, "{chart}");
        assert_eq!(total(chart, "ended:logout_everywhere"), 3, "{chart}");
    }
    assert_eq!(overview["hour"]["series"]["refreshes"].as_array().unwrap().len(), 60);
    assert_eq!(overview["day"]["series"]["refreshes"].as_array().unwrap().len(), 24);
    assert_eq!(overview["users"], 2);
    assert_eq!(overview["live_sessions"], 0);
    let again: Value = get(&app, &admin, "/admin/overview").await.json().await.unwrap();
    assert_eq!(again["hour"], overview["hour"]);
    assert_eq!(get(&app, &admin, "/admin/overview?x=1").await.status(), 400);
}

/// `Search users`: by the start of a name or an address, without regard
/// to case, paginated; `%` and `_` are plain characters; a bad query is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_found_by_the_start_of_their_name_or_address() {
    let app = start!(&[]);
    let admin = app.admin_token().await;
    for name in ["alice", "alicia", "bob", "a_b"] {
        app.add_user(name).await;
    }
    let bob = app.state.users.by_name("bob").await.unwrap();
    app.state.users.set_email(&bob, Some("Robert@Example.com"), &Actor::cli()).await.unwrap();
    let names = |body: Value| -> Vec<String> {
        body["users"].as_array().unwrap().iter().map(|u| field(u, "username").to_owned()).collect()
    };
    let search = |q: &str, more: &str| {
        let path = format!("/admin/users?q={q}{more}");
        let (app, admin) = (&app, &admin);
        async move { get(app, admin, &path).await }
    };
    assert_eq!(names(search("ALI", "").await.json().await.unwrap()), ["alice", "alicia"]);
    assert_eq!(names(search("robert%40ex", "").await.json().await.unwrap()), ["bob"]);
    assert_eq!(names(search("a_", "").await.json().await.unwrap()), ["a_b"]);
    assert!(names(search("a%25", "").await.json().await.unwrap()).is_empty());
    assert!(names(search("zed", "").await.json().await.unwrap()).is_empty());
    let page: Value = search("a", "&limit=2").await.json().await.unwrap();
    assert_eq!(names(page.clone()), ["a_b", "alice"]);
    let cursor = field(&page, "next_cursor").to_owned();
    let rest: Value = search("a", &format!("&limit=2&cursor={cursor}")).await.json().await.unwrap();
    assert_eq!(names(rest.clone()), ["alicia"]);
    assert!(rest["next_cursor"].is_null());
    let (status, code) = error_code(search("a%01", "").await).await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"));
    let long = "a".repeat(400);
    assert_eq!(search(&long, "").await.status(), 400);
}

/// `Send password reset` mails the user a reset link (202); a user without
/// an address gets 409 and nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn send_password_reset_mails_the_user_a_link() {
    let Some(smtp) = Smtp::start().await else { return };
    let url = smtp.url();
    let app = start!(&[("LATCHKEY_SMTP_URL", url.as_str()), ("LATCHKEY_CONSOLE_ACR", "pwd")]);
    let root = make_admin(&app, "root").await;
    let token = field(&console_sign_in(&app, "root", None, 0).await, "access_token").to_owned();
    let alice = app.add_user("alice").await;
    app.state.users.set_email(&alice, Some("alice@example.com"), &Actor::cli()).await.unwrap();
    let bob = app.add_user("bob").await;
    let sent = app.http.post(app.url(&format!("/admin/users/{}/password-reset", alice.id))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(sent.status(), 202);
    let mail = smtp.wait_for("alice@example.com", "Reset", 1, Duration::from_secs(20)).await;
    assert!(mail[0].token(&app.base).starts_with("lk_ln_"));
    let (status, code) = error_code(app.http.post(app.url(&format!("/admin/users/{}/password-reset", bob.id))).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (409, "conflict"));
    let audited = app.audit("password_reset_sent").await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].actor_id.as_deref(), Some(root.as_str()));
}

/// The console in headless Chromium: an admin signs in with a password and
/// a code; the overview shows the numbers and charts; a user is found,
/// disabled, enabled, their sessions revoked and, after a confirmation,
/// deleted; the audit is filtered by kind; a failing webhook shows its
/// failure. A user who is not an admin is told the sign-in does not open
/// the console and sees no data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_in_chromium() {
    let clock = Arc::new(ManualClock::at_system_time());
    let receiver = Receiver::start().await;
    receiver.fail(true);
    let app = start!(&[], clock.clone());
    let root = make_admin(&app, "root").await;
    let secret = enrol_app(&app, "root").await;
    app.add_user("alice").await;
    app.login("alice").await;
    let wrong = app.post_form("/auth/login", &[("username", "alice"), ("password", "not the password")]).await;
    assert_eq!(wrong.status(), 400);
    let admin = app.admin_token().await;
    let hook = app.http.post(app.url("/admin/webhooks")).bearer_auth(&admin)
        .json(&json!({"url": receiver.url("/hook"), "events": ["user.updated"]})).send().await.unwrap();
    assert_eq!(hook.status(), 201);
    clock.advance(30);

    let Some(browser) = crate::driver::Browser::launch().await else { return };
    // Not an admin: no data.
    browser.goto(&app.url("/console")).await;
    browser.field("Username").await.send_keys("alice").await.unwrap();
    browser.field("Password").await.send_keys(PASSWORD).await.unwrap();
    browser.button("Log in").await.click().await.unwrap();
    browser.wait_for_text("This sign-in does not open the console").await;
    let shown = browser.text().await;
    assert!(!shown.contains("Live sessions") || browser.eval("return document.getElementById('view-overview').hidden").await == true);
    assert_eq!(browser.eval("return document.getElementById('tabs').hidden").await, true);
    browser.button("Log out").await.click().await.unwrap();
    browser.wait_for_text("You have logged out.").await;

    // The admin: password, then the code.
    let username = browser.field("Username").await;
    username.clear().await.unwrap();
    username.send_keys("root").await.unwrap();
    browser.field("Password").await.send_keys(PASSWORD).await.unwrap();
    browser.button("Log in").await.click().await.unwrap();
    let otp = browser.field("One-time code").await;
    otp.send_keys(&code_at(&secret, step_of(clock.now()))).await.unwrap();
    browser.button("Verify").await.click().await.unwrap();
    browser.wait_for_text("Signed in as root").await;
    browser.wait_for_text("Logins failed").await;
    for tab in ["Overview", "Users", "Audit", "Webhooks"] {
        let link = browser.named("a", tab).await;
        assert_eq!(browser.accessible_name(&link).await.as_deref(), Some(tab));
    }
    assert_eq!(browser.eval("return document.getElementById('total-users').textContent").await, "2");
    let charts = browser.eval("return document.querySelectorAll('#hour-charts svg[role=img]').length").await;
    assert!(charts.as_u64().unwrap() >= 6, "{charts}");
    let label = browser.eval("return document.querySelector('#hour-charts figure.alarm svg').getAttribute('aria-label')").await;
    assert!(label.as_str().unwrap().starts_with("Logins failed: 1 in all"), "{label}");
    if let Ok(path) = std::env::var("LATCHKEY_SCREENSHOT") {
        let png = browser.client.screenshot().await.unwrap();
        std::fs::write(path, png).unwrap();
    }

    // Users: search, open, act.
    browser.named("a", "Users").await.click().await.unwrap();
    browser.field("Search users").await.send_keys("ali").await.unwrap();
    browser.button("Search").await.click().await.unwrap();
    browser.wait_for_text("alice").await;
    browser.named("a", "alice").await.click().await.unwrap();
    browser.wait_for_text("Second factors").await;
    browser.button("Disable").await.click().await.unwrap();
    browser.wait_for_text("alice is disabled").await;
    assert!(app.state.users.by_name("alice").await.unwrap().disabled);
    browser.wait_for_text("disabled").await;
    browser.button("Enable").await.click().await.unwrap();
    browser.wait_for_text("alice is enabled").await;
    assert!(!app.state.users.by_name("alice").await.unwrap().disabled);
    app.login("alice").await;
    browser.button("Revoke all sessions").await.click().await.unwrap();
    browser.wait_for_text("Every session of alice was revoked").await;
    browser.wait_for_text("revoked by an administrator").await;
    browser.button("Delete").await.click().await.unwrap();
    browser.wait_for_text("This cannot be undone").await;
    browser.button("Cancel").await.click().await.unwrap();
    assert!(app.state.users.by_name("alice").await.is_ok(), "cancelled: still there");
    browser.button("Delete").await.click().await.unwrap();
    browser.button("Yes, delete").await.click().await.unwrap();
    browser.wait_for_text("alice was deleted").await;
    assert!(app.state.users.by_name("alice").await.is_err());

    // Audit, filtered by kind: the admin's id beside each action.
    browser.named("a", "Audit").await.click().await.unwrap();
    browser.field("Kind").await.send_keys("user_disabled").await.unwrap();
    browser.button("Filter").await.click().await.unwrap();
    browser.wait_for_text(&root).await;
    browser
        .wait_for_value(
            "return [...document.querySelectorAll('#audit-rows tr td:nth-child(2)')].map(td => td.textContent)",
            &json!(["user_disabled"]),
        )
        .await;

    // Webhooks: the failing receiver's failure.
    browser.named("a", "Webhooks").await.click().await.unwrap();
    browser.wait_for_text(&receiver.url("/hook")).await;
    browser.wait_for_text("user.updated").await;
    browser.wait_for_text("HTTP 500").await;
    browser.quit().await;
}

/// `GET /console` and its parts are served from this origin under the
/// account page's strict policy, and name nothing from elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_under_the_account_pages_policy() {
    let app = start!(&[]);
    let account = app.http.get(app.url("/")).send().await.unwrap();
    let policy = account.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    for (path, kind) in [("/console", "text/html"), ("/assets/console.js", "text/javascript"), ("/assets/console.css", "text/css")] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-security-policy"].to_str().unwrap(), policy, "{path}");
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind), "{path}");
        assert_eq!(headers["x-frame-options"], "DENY");
        let body = response.text().await.unwrap();
        for outside in ["src=\"http", "href=\"http", "url(http", "fetch('http", "//cdn"] {
            assert!(!body.contains(outside), "{path} names {outside}");
        }
    }
}
