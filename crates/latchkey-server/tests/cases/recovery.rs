// Included once per storage backend by tests/recovery.rs; `BACKEND` names it.

use std::time::{Duration, Instant};

use crate::common::receiver::Receiver;
use crate::common::smtp::Smtp;
use crate::common::{PASSWORD, TestApp, error_code, field, join_all};
use latchkey_core::clock::{Clock, SystemClock};
use latchkey_core::totp::{code_at, step_of};
use serde_json::{Value, json};

const NEW_PASSWORD: &str = "a brand new passphrase";
const MAIL_WAIT: Duration = Duration::from_secs(20);

/// An app whose mail goes to `smtp`, with `env` added.
async fn mailing(smtp: &Smtp, env: &[(&str, &str)]) -> Option<TestApp> {
    let url = smtp.url();
    let mut vars = vec![
        ("LATCHKEY_SMTP_URL", url.as_str()),
        ("LATCHKEY_MAIL_FROM", "Accounts <accounts@example.com>"),
    ];
    vars.extend_from_slice(env);
    TestApp::start(BACKEND, &vars).await
}

macro_rules! smtp_and_app {
    ($env:expr) => {{
        let Some(smtp) = Smtp::start().await else { return };
        let Some(app) = mailing(&smtp, $env).await else { return };
        (smtp, app)
    }};
}

/// Adds a user through the admin API with `email`; their id.
async fn add_user(app: &TestApp, admin: &str, name: &str, email: &str) -> String {
    let response = app
        .http
        .post(app.url("/admin/users"))
        .bearer_auth(admin)
        .json(&json!({"username": name, "password": PASSWORD, "email": email}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["email"], email);
    assert_eq!(body["email_verified"], false);
    field(&body, "id").to_owned()
}

async fn user_view(app: &TestApp, admin: &str, id: &str) -> Value {
    let response = app.http.get(app.url(&format!("/admin/users/{id}"))).bearer_auth(admin).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn post_json(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.http.post(app.url(path)).json(&body).send().await.unwrap()
}

/// Verifies `name`'s address by the mail's link.
async fn verify(app: &TestApp, smtp: &Smtp, email: &str) {
    let mail = smtp.wait_for(email, "Confirm your e-mail", 1, MAIL_WAIT).await;
    let token = mail[0].token(&app.base);
    assert_eq!(post_json(app, "/auth/email/verify", json!({"token": token})).await.status(), 200);
}

/// A new address gets a verification mail (plain text and HTML, from
/// `LATCHKEY_MAIL_FROM`, its link under the issuer); opening the link
/// changes nothing; its button verifies, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_address_is_verified_by_the_button_of_its_link() {
    let (smtp, app) = smtp_and_app!(&[]);
    let admin = app.admin_token().await;
    let id = add_user(&app, &admin, "alice", "Alice@Example.com").await;
    let mail = smtp.wait_for("Alice@Example.com", "Confirm your e-mail", 1, MAIL_WAIT).await;
    let mail = &mail[0];
    assert!(mail.from.contains("accounts@example.com"), "{}", mail.from);
    assert!(mail.raw.contains("multipart/alternative"), "plain text with an HTML alternative");
    assert!(mail.html.contains("<a href="));
    let link = mail.link(&app.base);
    assert!(link.starts_with(&format!("{}/auth/email/verify?token=lk_ln_", app.base)), "{link}");
    assert!(mail.html.contains(&link.replace('&', "&amp;")));

    // Opening the link (as a mail scanner would) changes nothing.
    let before = app.snapshot(&["audit_events"]).await;
    let page = app.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'"));
    let html = page.text().await.unwrap();
    assert!(html.contains(">Verify</button>"));
    assert_eq!(app.snapshot(&["audit_events"]).await, before);
    assert_eq!(user_view(&app, &admin, &id).await["email_verified"], false);

    let token = mail.token(&app.base);
    assert_eq!(post_json(&app, "/auth/email/verify", json!({"token": token})).await.status(), 200);
    assert_eq!(user_view(&app, &admin, &id).await["email_verified"], true);
    let again = post_json(&app, "/auth/email/verify", json!({"token": token})).await;
    assert_eq!(error_code(again).await, (400, "invalid_grant".into()));
    // The address is unique without regard to case.
    let taken = app
        .http
        .post(app.url("/admin/users"))
        .bearer_auth(&admin)
        .json(&json!({"username": "mallory", "password": PASSWORD, "email": "alice@example.COM"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(taken).await, (409, "conflict".into()));
    let bad = app
        .http
        .post(app.url("/admin/users"))
        .bearer_auth(&admin)
        .json(&json!({"username": "bob", "password": PASSWORD, "email": "not an address"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(bad).await, (400, "invalid_request".into()));

    // A changed address is unverified again, gets its own link, and the old
    // (verified) one is told.
    let changed = app
        .http
        .patch(app.url(&format!("/admin/users/{id}")))
        .bearer_auth(&admin)
        .json(&json!({"email": "alice@new.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().await.unwrap();
    assert_eq!(changed["email"], "alice@new.example");
    assert_eq!(changed["email_verified"], false);
    smtp.wait_for("alice@new.example", "Confirm your e-mail", 1, MAIL_WAIT).await;
    smtp.wait_for("Alice@Example.com", "was changed", 1, MAIL_WAIT).await;
}

/// `forgot` answers 202 with the same body for any address; the mail's
/// link opens the reset page (changing nothing); a newer request voids the
/// older link; a weak password is refused and the link still works; the
/// reset ends every session (`password_reset`) and the new password logs
/// in; the link works once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forgotten_password_is_reset_by_the_newest_link_once() {
    let (smtp, app) = smtp_and_app!(&[]);
    let admin = app.admin_token().await;
    add_user(&app, &admin, "alice", "alice@example.com").await;
    let before_reset = app.login("alice").await;

    let known = post_json(&app, "/auth/password/forgot", json!({"email": "alice@example.com"})).await;
    assert_eq!(known.status(), 202);
    let known_body: Value = known.json().await.unwrap();
    let unknown = post_json(&app, "/auth/password/forgot", json!({"email": "nobody@example.com"})).await;
    assert_eq!(unknown.status(), 202);
    assert_eq!(unknown.json::<Value>().await.unwrap(), known_body, "the same answer");
    // A second request once the first one's mail is out: its link replaces the first's.
    smtp.wait_for("alice@example.com", "Reset your password", 1, MAIL_WAIT).await;
    let form = app.post_form("/auth/password/forgot", &[("email", "alice@example.com")]).await;
    assert_eq!(form.status(), 202, "a form works too");
    let bad = post_json(&app, "/auth/password/forgot", json!({"email": "nope"})).await;
    assert_eq!(error_code(bad).await, (400, "invalid_request".into()));

    let mails = smtp.wait_for("alice@example.com", "Reset your password", 2, MAIL_WAIT).await;
    assert!(smtp.messages().iter().all(|m| !m.to.contains(&"nobody@example.com".to_owned())));
    let old = mails[0].token(&app.base);
    let new = mails[1].token(&app.base);
    assert_ne!(old, new);
    let stale = post_json(&app, "/auth/password/reset", json!({"token": old, "password": NEW_PASSWORD})).await;
    assert_eq!(error_code(stale).await, (400, "invalid_grant".into()), "a newer request voids older links");

    let page = app.http.get(mails[1].link(&app.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<label for=\"password\">New password</label>"));
    assert!(html.contains(">Set password</button>"));
    assert!(!html.contains("One-time code"), "no app, no code asked");
    let dead = app.http.get(app.url("/auth/password/reset?token=lk_ln_nothing")).send().await.unwrap();
    assert_eq!(dead.status(), 400);

    let weak = post_json(&app, "/auth/password/reset", json!({"token": new, "password": "short"})).await;
    assert_eq!(error_code(weak).await, (400, "invalid_request".into()));
    let done = post_json(&app, "/auth/password/reset", json!({"token": new, "password": NEW_PASSWORD})).await;
    assert_eq!(done.status(), 200);
    let again = post_json(&app, "/auth/password/reset", json!({"token": new, "password": NEW_PASSWORD})).await;
    assert_eq!(error_code(again).await, (400, "invalid_grant".into()), "once");

    let ended = app.refresh(field(&before_reset, "refresh_token")).await;
    assert_eq!(ended.status(), 400);
    let ended: Value = ended.json().await.unwrap();
    assert_eq!(ended["error"], "invalid_grant");
    assert_eq!(ended["end_reason"], "password_reset");
    let old_login = app.post_form("/auth/login", &[("username", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(old_login.status(), 400);
    let new_login = app.post_form("/auth/login", &[("username", "alice"), ("password", NEW_PASSWORD)]).await;
    assert_eq!(new_login.status(), 200);
}

/// A user with an authenticator app must give a current or recovery code
/// to reset: recovery never bypasses a second factor.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reset_still_needs_the_second_factor() {
    let (smtp, app) = smtp_and_app!(&[]);
    let admin = app.admin_token().await;
    add_user(&app, &admin, "alice", "alice@example.com").await;
    let access = field(&app.login("alice").await, "access_token").to_owned();
    let setup: Value = app.http.post(app.url("/auth/totp")).bearer_auth(&access).send().await.unwrap().json().await.unwrap();
    let secret = data_encoding::BASE32_NOPAD.decode(field(&setup, "secret").as_bytes()).unwrap();
    let now = SystemClock.now();
    let confirmed = app
        .http
        .post(app.url("/auth/totp/confirm"))
        .bearer_auth(&access)
        .json(&json!({"code": code_at(&secret, step_of(now))}))
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    let codes: Vec<String> = serde_json::from_value(confirmed.json::<Value>().await.unwrap()["recovery_codes"].clone()).unwrap();

    assert_eq!(post_json(&app, "/auth/password/forgot", json!({"email": "alice@example.com"})).await.status(), 202);
    let mail = smtp.wait_for("alice@example.com", "Reset your password", 1, MAIL_WAIT).await;
    let token = mail[0].token(&app.base);
    let page = app.http.get(mail[0].link(&app.base)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("<label for=\"otp\">One-time code</label>"));

    let without = post_json(&app, "/auth/password/reset", json!({"token": token, "password": NEW_PASSWORD})).await;
    assert_eq!(error_code(without).await, (400, "invalid_request".into()));
    let wrong = post_json(&app, "/auth/password/reset", json!({"token": token, "password": NEW_PASSWORD, "otp": "000000"})).await;
    assert_eq!(error_code(wrong).await, (400, "invalid_grant".into()));
    let with_code = post_json(
        &app,
        "/auth/password/reset",
        json!({"token": token, "password": NEW_PASSWORD, "recovery_code": codes[0]}),
    )
    .await;
    assert_eq!(with_code.status(), 200);
    // The second factor still guards the new password.
    let login = app.post_form("/auth/login", &[("username", "alice"), ("password", NEW_PASSWORD)]).await;
    assert_eq!(login.status(), 401);
}

/// `POST /auth/password`: the current password is checked, the other
/// sessions end (`password_changed`) and this one stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_ends_the_other_sessions_and_keeps_this_one() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let this = app.login("alice").await;
    let other = app.login("alice").await;
    let access = field(&this, "access_token");
    let change = |current: &'static str, new: &'static str| {
        app.http
            .post(app.url("/auth/password"))
            .bearer_auth(access)
            .json(&json!({"current_password": current, "new_password": new}))
            .send()
    };
    assert_eq!(error_code(change("wrong password!", NEW_PASSWORD).await.unwrap()).await, (400, "invalid_grant".into()));
    assert_eq!(error_code(change(PASSWORD, "short").await.unwrap()).await, (400, "invalid_request".into()));
    assert_eq!(change(PASSWORD, NEW_PASSWORD).await.unwrap().status(), 204);
    let ended: Value = app.refresh(field(&other, "refresh_token")).await.json().await.unwrap();
    assert_eq!(ended["end_reason"], "password_changed");
    assert_eq!(app.refresh(field(&this, "refresh_token")).await.status(), 200);
    let unsigned = app.http.post(app.url("/auth/password")).json(&json!({"current_password": NEW_PASSWORD, "new_password": PASSWORD})).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
}

/// A sign-in from a device new to the user sends their verified address a
/// notice naming the device, address and time; its `This wasn't me` page
/// changes nothing until its button ends that session (`not_me`) and
/// offers a reset. A device seen before sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_device_is_told_and_this_wasnt_me_ends_it() {
    let (smtp, app) = smtp_and_app!(&[]);
    let admin = app.admin_token().await;
    add_user(&app, &admin, "alice", "alice@example.com").await;
    verify(&app, &smtp, "alice@example.com").await;
    let login = |agent: &'static str| {
        app.http
            .post(app.url("/auth/login"))
            .header("user-agent", agent)
            .form(&[("username", "alice"), ("password", PASSWORD)])
            .send()
    };
    let laptop: Value = login("Laptop/1.0").await.unwrap().json().await.unwrap();
    let again = login("Laptop/1.0").await.unwrap();
    assert_eq!(again.status(), 200);
    let stranger: Value = login("Stranger/6.6").await.unwrap().json().await.unwrap();
    let notices = smtp.wait_for("alice@example.com", "New sign-in", 1, MAIL_WAIT).await;
    assert_eq!(notices.len(), 1, "only the new device is news");
    let notice = &notices[0];
    assert!(notice.text.contains("Stranger/6.6"), "{}", notice.text);
    assert!(notice.text.contains("127.0.0.1"));
    let link = notice.link(&app.base);
    assert!(link.starts_with(&format!("{}/auth/not-me?token=", app.base)));

    let before = app.snapshot(&["audit_events"]).await;
    let page = app.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains(">This wasn&#39;t me</button>"));
    assert_eq!(app.snapshot(&["audit_events"]).await, before, "opening the link changes nothing");
    let done = post_json(&app, "/auth/not-me", json!({"token": notice.token(&app.base)})).await;
    assert_eq!(done.status(), 200);
    let ended: Value = app.refresh(field(&stranger, "refresh_token")).await.json().await.unwrap();
    assert_eq!(ended["error"], "invalid_grant");
    assert_eq!(ended["end_reason"], "not_me");
    let again = post_json(&app, "/auth/not-me", json!({"token": notice.token(&app.base)})).await;
    assert_eq!(error_code(again).await, (400, "invalid_grant".into()));
    assert_eq!(app.refresh(field(&laptop, "refresh_token")).await.status(), 200, "the owner's own device stays");
}

/// With the mail server down, nothing is lost: the mail waits in the
/// database and goes out once the server is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mail_waits_out_an_smtp_outage() {
    let (mut smtp, app) = smtp_and_app!(&[]);
    smtp.stop().await;
    let admin = app.admin_token().await;
    add_user(&app, &admin, "alice", "alice@example.com").await;
    assert_eq!(post_json(&app, "/auth/password/forgot", json!({"email": "alice@example.com"})).await.status(), 202);
    // Attempts fail meanwhile (connection refused), and are retried.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(smtp.messages().is_empty());
    smtp.resume().await;
    smtp.wait_for("alice@example.com", "Confirm your e-mail", 1, MAIL_WAIT).await;
    smtp.wait_for("alice@example.com", "Reset your password", 1, MAIL_WAIT).await;
}

/// Without SMTP no mail is sent, and the events carry each link, which
/// works: an application can send its own mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_smtp_the_events_carry_the_links() {
    let app = start!(&[]);
    let admin = app.admin_token().await;
    let receiver = Receiver::start().await;
    let hook = app
        .http
        .post(app.url("/admin/webhooks"))
        .bearer_auth(&admin)
        .json(&json!({"url": receiver.url("/hook"), "events": ["email.verification_requested", "password.reset_requested"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status(), 201);
    let id = add_user(&app, &admin, "alice", "alice@example.com").await;
    assert_eq!(post_json(&app, "/auth/password/forgot", json!({"email": "alice@example.com"})).await.status(), 202);
    let got = receiver.until(Duration::from_secs(20), |got| got.len() >= 2).await;
    let by_type = |t: &str| got.iter().map(|r| r.json()).find(|b| b["type"] == t).unwrap_or_else(|| panic!("no {t}"));
    let verification = by_type("email.verification_requested");
    assert_eq!(verification["data"]["user_id"], id.as_str());
    assert_eq!(verification["data"]["email"], "alice@example.com");
    let link = field(&verification["data"], "link").to_owned();
    assert!(link.starts_with(&format!("{}/auth/email/verify?token=", app.base)));
    let reset = by_type("password.reset_requested");
    let reset_link = field(&reset["data"], "link").to_owned();
    assert!(reset_link.starts_with(&format!("{}/auth/password/reset?token=", app.base)));
    let token = link.split("token=").nth(1).unwrap();
    assert_eq!(post_json(&app, "/auth/email/verify", json!({"token": token})).await.status(), 200);
    let token = reset_link.split("token=").nth(1).unwrap();
    assert_eq!(post_json(&app, "/auth/password/reset", json!({"token": token, "password": NEW_PASSWORD})).await.status(), 200);
}

/// `forgot` takes about the same time for an address that is an account's
/// and one that is not: the account's work happens after the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forgot_takes_the_same_time_for_known_and_unknown_addresses() {
    let (_smtp, app) = smtp_and_app!(&[("LATCHKEY_THROTTLE_RESET", "1000/1h"), ("LATCHKEY_THROTTLE_IP", "1000/1h")]);
    let admin = app.admin_token().await;
    for i in 0..20 {
        add_user(&app, &admin, &format!("user{i}"), &format!("user{i}@example.com")).await;
    }
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for round in 0..3 {
        for i in 0..20 {
            for (address, times) in [
                (format!("user{i}@example.com"), &mut known),
                (format!("ghost{i}.{round}@example.com"), &mut unknown),
            ] {
                let started = Instant::now();
                let response = post_json(&app, "/auth/password/forgot", json!({"email": address})).await;
                times.push(started.elapsed());
                assert_eq!(response.status(), 202);
            }
        }
    }
    known.sort();
    unknown.sort();
    let (k, u) = (known[known.len() / 2], unknown[unknown.len() / 2]);
    let gap = k.abs_diff(u);
    assert!(
        gap < Duration::from_millis(3),
        "median {k:?} for accounts' addresses, {u:?} for others: the answer tells them apart"
    );
}

/// The limit per address holds under requests at once, and answers alike
/// whether the address is an account's: of 20 at once with a limit of 3,
/// 3 are accepted and 17 refused, and at most 3 mails go out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forgot_is_throttled_per_address_whatever_arrives_at_once() {
    let (smtp, app) = smtp_and_app!(&[("LATCHKEY_THROTTLE_RESET", "3/1h")]);
    let admin = app.admin_token().await;
    add_user(&app, &admin, "alice", "alice@example.com").await;
    for address in ["alice@example.com", "ALICE@example.com", "ghost@example.com"] {
        let attempts = (0..20).map(|_| post_json(&app, "/auth/password/forgot", json!({"email": address}))).collect();
        let statuses: Vec<u16> = join_all(attempts).await.into_iter().map(|r| r.status().as_u16()).collect();
        let accepted = statuses.iter().filter(|s| **s == 202).count();
        let refused = statuses.iter().filter(|s| **s == 429).count();
        let expected = if address == "ALICE@example.com" { 0 } else { 3 };
        assert_eq!((accepted, refused), (expected, 20 - expected), "{address}: {statuses:?}");
    }
    smtp.wait_for("alice@example.com", "Reset your password", 3, MAIL_WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resets = smtp.messages().into_iter().filter(|m| m.subject.contains("Reset")).count();
    assert_eq!(resets, 3);
}

/// Review finding L12: a browser that signed in before keeps its own
/// failed-login budget, so failures elsewhere cannot lock its owner out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recognised_browser_keeps_its_own_budget() {
    let app = start!(&[("LATCHKEY_THROTTLE_ACCOUNT", "3/15m")]);
    app.add_user("alice").await;
    let signed_in = app
        .http
        .post(app.url("/auth/login"))
        .header("x-latchkey-browser", "1")
        .header("origin", &app.base)
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    let device = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("__Host-lk_device="))
        .expect("a device cookie")
        .to_owned();
    assert!(device.contains("HttpOnly") && device.contains("Secure") && device.contains("Path=/"));
    assert!(device.contains("Max-Age=34560000"));
    let pair = device.split(';').next().unwrap().to_owned();

    // An attacker elsewhere uses up the account's budget.
    for _ in 0..3 {
        let wrong = app.post_form("/auth/login", &[("username", "alice"), ("password", "not her password")]).await;
        assert_eq!(wrong.status(), 400);
    }
    let locked = app.post_form("/auth/login", &[("username", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(locked.status(), 429, "the account's budget is spent");
    let forged = app
        .http
        .post(app.url("/auth/login"))
        .header("cookie", format!("__Host-lk_device={}", "A".repeat(43)))
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 429, "a device cookie never seen is no way around it");
    let owner = app
        .http
        .post(app.url("/auth/login"))
        .header("x-latchkey-browser", "1")
        .header("origin", &app.base)
        .header("cookie", &pair)
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(owner.status(), 200, "her own browser still signs her in");
    // Its own budget is a budget too.
    for _ in 0..3 {
        let wrong = app
            .http
            .post(app.url("/auth/login"))
            .header("cookie", &pair)
            .form(&[("username", "alice"), ("password", "not her password")])
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 400);
    }
    let spent = app
        .http
        .post(app.url("/auth/login"))
        .header("cookie", &pair)
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(spent.status(), 429);
}

/// Links, and the mail they ride in, never store their token: the
/// database holds only hashes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_link_token_is_stored_only_hashed() {
    let (smtp, app) = smtp_and_app!(&[]);
    let admin = app.admin_token().await;
    add_user(&app, &admin, "alice", "alice@example.com").await;
    let mail = smtp.wait_for("alice@example.com", "Confirm your e-mail", 1, MAIL_WAIT).await;
    let token = mail[0].token(&app.base);
    let rows = app.snapshot(&["outbox"]).await.join("\n");
    assert!(!rows.contains(&token), "the token is in a table");
    let stored = latchkey_core::account::LinkToken::parse(&token).unwrap().hash();
    let link = app.state.store().link(&stored, SystemClock.now()).await.unwrap();
    assert!(link.is_some(), "its hash is what is stored");
}
