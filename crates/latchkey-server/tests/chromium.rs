//! The account page in real headless Chromium (Debian's, driven over
//! WebDriver): the form, the cookie no script can read, silent refresh,
//! tabs that share one session, revocation from another browser, and a
//! page on another origin that tries to use the victim's cookie. On SQLite:
//! what the page does is the same on every backend, which the HTTP cases of
//! `tests/browser.rs` check.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

#[macro_use]
mod common;
mod driver;

use std::sync::Arc;
use std::time::Duration;

use common::{Backend, PASSWORD, TestApp};
use driver::Browser;
use latchkey_core::clock::ManualClock;

const BACKEND: Backend = Backend::Sqlite;

/// Past the default ten-minute access token lifetime, well within the
/// refresh token's idle lifetime.
const PAST_ACCESS_EXPIRY: i64 = 11 * 60;

macro_rules! browser {
    () => {
        match Browser::launch().await {
            Some(browser) => browser,
            None => return,
        }
    };
}

/// Refresh-grant tokens this server has issued, from `/metrics`.
async fn refreshes(app: &TestApp) -> u64 {
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("latchkey_tokens_issued_total") && l.contains("grant=\"refresh_token\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// How many live sessions `user` has.
async fn live_sessions(app: &TestApp, user: &str) -> usize {
    app.state
        .store()
        .live_sessions(user, app.state.now())
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_in_through_the_form_keeps_the_refresh_token_from_scripts() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let browser = browser!();

    // A wrong password is said in an alert and signs nobody in.
    browser.goto(&app.url("/")).await;
    browser
        .field("Username")
        .await
        .send_keys("alice")
        .await
        .unwrap();
    browser
        .field("Password")
        .await
        .send_keys("not the password")
        .await
        .unwrap();
    browser.button("Log in").await.click().await.unwrap();
    browser.wait_for_text("invalid").await;
    assert_eq!(live_sessions(&app, "usr_alice").await, 0);
    browser.field("Password").await.clear().await.unwrap();
    browser
        .field("Password")
        .await
        .send_keys(PASSWORD)
        .await
        .unwrap();
    browser.button("Log in").await.click().await.unwrap();
    browser.wait_for_text("Signed in as alice").await;
    browser.wait_for_text("This device").await;
    assert_eq!(live_sessions(&app, "usr_alice").await, 1);

    // The browser holds the refresh token, HttpOnly; the page cannot see it
    // and keeps nothing in storage.
    let cookies = browser.cookies_for(&app.url("/auth/refresh")).await;
    let refresh = cookies.iter().find(|(name, _, _)| name == "__Secure-lk_rt");
    let (_, value, http_only) = refresh.expect("the refresh cookie is set");
    assert!(value.starts_with("lk_rt_"), "{cookies:?}");
    assert!(http_only);
    let visible = browser.eval("return document.cookie").await;
    assert_eq!(visible, "", "scripts see cookies: {visible}");
    let stored = browser
        .eval("return localStorage.length + sessionStorage.length")
        .await;
    assert_eq!(stored, 0);
    let page = browser.client.source().await.unwrap();
    assert!(!page.contains(value.as_str()));

    // The current session has no Revoke button: it is "This device".
    assert!(browser.all_named("button", "Revoke").await.is_empty());

    // Logging out ends the session and clears the cookie.
    browser.button("Log out").await.click().await.unwrap();
    browser.wait_for_text("You have logged out.").await;
    browser.field("Username").await;
    assert_eq!(live_sessions(&app, "usr_alice").await, 0);
    assert!(
        !browser
            .cookies_for(&app.url("/auth/refresh"))
            .await
            .iter()
            .any(|(name, _, _)| name == "__Secure-lk_rt")
    );
    // A reload finds no session to restore.
    browser.goto(&app.url("/")).await;
    browser.field("Username").await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_access_token_is_renewed_through_the_cookie() {
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(&[("LATCHKEY_COOKIE_FINGERPRINT", "true")], clock.clone());
    app.add_user("alice").await;
    let browser = browser!();
    browser.log_in(&app.base, "alice", PASSWORD).await;
    // The fingerprint cookie is hardened too.
    let cookies = browser.cookies_for(&app.url("/api/me")).await;
    assert!(
        cookies
            .iter()
            .any(|(name, _, http_only)| name == "__Host-lk_fgp" && *http_only),
        "{cookies:?}"
    );

    let before = refreshes(&app).await;
    clock.advance(PAST_ACCESS_EXPIRY);
    browser
        .button("Reload sessions")
        .await
        .click()
        .await
        .unwrap();
    wait_until(|| async { refreshes(&app).await == before + 1 }).await;
    browser.wait_for_text("This device").await;
    assert!(browser.text().await.contains("Signed in as alice"));
    assert_eq!(live_sessions(&app, "usr_alice").await, 1);

    // A reload of the page restores the session through the cookie alone.
    browser.goto(&app.url("/")).await;
    browser.wait_for_text("Signed in as alice").await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_refreshing_at_once_keep_the_session() {
    // No grace window (the default): a refresh that sent a rotated cookie
    // would revoke the session. Only the tabs' coordination keeps it alive.
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(&[], clock.clone());
    app.add_user("alice").await;
    let browser = browser!();
    browser.log_in(&app.base, "alice", PASSWORD).await;
    let first = browser.client.window().await.unwrap();
    let second = browser.client.new_window(false).await.unwrap().handle;
    browser
        .client
        .switch_to_window(second.clone())
        .await
        .unwrap();
    browser.goto(&app.url("/")).await;
    browser.wait_for_text("Signed in as alice").await;

    // Both access tokens expire; both tabs then call at the same instant and
    // both need a refresh.
    clock.advance(PAST_ACCESS_EXPIRY);
    let before = refreshes(&app).await;
    let at = browser
        .eval("return Date.now() + 1500")
        .await
        .as_f64()
        .unwrap();
    let click_at = format!(
        "const b = [...document.querySelectorAll('button')].find(b => b.textContent === 'Reload sessions');
         setTimeout(() => b.click(), {at} - Date.now());"
    );
    browser.eval(&click_at).await;
    browser
        .client
        .switch_to_window(first.clone())
        .await
        .unwrap();
    browser.eval(&click_at).await;
    tokio::time::sleep(Duration::from_millis(1800)).await;
    wait_until(|| async { refreshes(&app).await > before }).await;

    for window in [first, second] {
        browser.client.switch_to_window(window).await.unwrap();
        browser.wait_for_text("This device").await;
        assert!(
            browser.text().await.contains("Signed in as alice"),
            "{}",
            browser.text().await
        );
        browser
            .button("Reload sessions")
            .await
            .click()
            .await
            .unwrap();
        browser.wait_for_text("This device").await;
    }
    assert_eq!(
        live_sessions(&app, "usr_alice").await,
        1,
        "the session was revoked"
    );
    assert!(app.audit("reuse_detected").await.is_empty());
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_revoked_from_another_browser_is_logged_out_at_its_next_call() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let laptop = browser!();
    let phone = browser!();
    laptop.log_in(&app.base, "alice", PASSWORD).await;
    phone.log_in(&app.base, "alice", PASSWORD).await;

    // The phone sees both sessions and revokes the laptop's.
    phone.button("Reload sessions").await.click().await.unwrap();
    let revoke = phone.button("Revoke").await;
    assert_eq!(phone.all_named("button", "Revoke").await.len(), 1);
    if let Some(path) = std::env::var_os("LATCHKEY_TEST_SCREENSHOT") {
        std::fs::write(path, phone.client.screenshot().await.unwrap()).unwrap();
    }
    revoke.click().await.unwrap();
    phone.wait_for_text("The session was revoked.").await;
    assert_eq!(live_sessions(&app, "usr_alice").await, 1);
    assert!(phone.all_named("button", "Revoke").await.is_empty());

    // The laptop's next call fails, and so does its refresh: it is signed out.
    laptop
        .button("Reload sessions")
        .await
        .click()
        .await
        .unwrap();
    laptop.wait_for_text("Your session has ended").await;
    laptop.field("Username").await;
    // The phone is still signed in.
    phone.button("Reload sessions").await.click().await.unwrap();
    phone.wait_for_text("This device").await;
    laptop.quit().await;
    phone.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_everywhere_ends_every_browser() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let laptop = browser!();
    let phone = browser!();
    laptop.log_in(&app.base, "alice", PASSWORD).await;
    phone.log_in(&app.base, "alice", PASSWORD).await;
    assert_eq!(live_sessions(&app, "usr_alice").await, 2);

    laptop
        .button("Log out everywhere")
        .await
        .click()
        .await
        .unwrap();
    laptop
        .wait_for_text("You have logged out on every device.")
        .await;
    assert_eq!(live_sessions(&app, "usr_alice").await, 0);
    assert!(
        !laptop
            .cookies_for(&app.url("/auth/refresh"))
            .await
            .iter()
            .any(|(name, _, _)| name == "__Secure-lk_rt")
    );

    phone.button("Reload sessions").await.click().await.unwrap();
    phone.wait_for_text("Your session has ended").await;
    laptop.quit().await;
    phone.quit().await;
}

/// What a hostile page on another origin (`localhost`, another site than
/// `127.0.0.1`) tries against the victim's server.
const HOSTILE_PAGE: &str = r#"<!doctype html>
<title>hostile</title>
<p id="out">running</p>
<form id="f" method="post" target="sink"></form>
<iframe name="sink"></iframe>
<script>
const victim = new URLSearchParams(location.search).get('victim');
const results = [];
async function attempt(name, path, init) {
  try {
    const r = await fetch(victim + path, init);
    results.push(name + ':' + r.type + ':' + r.status);
  } catch (e) {
    results.push(name + ':blocked');
  }
}
(async () => {
  // With the custom header: a preflight the server never grants.
  await attempt('refresh-cors', '/auth/refresh',
    { method: 'POST', credentials: 'include', headers: { 'X-Latchkey-Browser': '1' } });
  await attempt('logout-cors', '/auth/logout',
    { method: 'POST', credentials: 'include', headers: { 'X-Latchkey-Browser': '1' } });
  // Simple requests the browser sends without asking (the answer is opaque).
  await attempt('refresh-simple', '/auth/refresh', { method: 'POST', mode: 'no-cors', credentials: 'include' });
  await attempt('logout-simple', '/auth/logout', { method: 'POST', mode: 'no-cors', credentials: 'include' });
  // A cross-site form post.
  const form = document.getElementById('f');
  form.action = victim + '/auth/logout';
  form.submit();
  await new Promise(r => setTimeout(r, 500));
  document.getElementById('out').textContent = 'done ' + results.join(' ');
})();
</script>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_can_neither_refresh_nor_log_out() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let hostile = serve_hostile_page().await;
    let browser = browser!();
    browser.log_in(&app.base, "alice", PASSWORD).await;
    let cookie_before = refresh_cookie(&browser, &app).await;
    let refreshes_before = refreshes(&app).await;
    let victim = browser.client.window().await.unwrap();

    let tab = browser.client.new_window(true).await.unwrap().handle;
    browser.client.switch_to_window(tab).await.unwrap();
    browser
        .goto(&format!("{hostile}/?victim={}", app.base))
        .await;
    browser.wait_for_text("done").await;
    let report = browser.text().await;
    assert!(report.contains("refresh-cors:blocked"), "{report}");
    assert!(report.contains("logout-cors:blocked"), "{report}");

    // Nothing was refreshed or revoked; the cookie is the one from before.
    assert_eq!(refreshes(&app).await, refreshes_before);
    assert_eq!(live_sessions(&app, "usr_alice").await, 1);
    assert!(app.audit("session_revoked").await.is_empty());
    browser.client.switch_to_window(victim).await.unwrap();
    browser.goto(&app.url("/")).await;
    browser.wait_for_text("Signed in as alice").await;
    assert_eq!(refreshes(&app).await, refreshes_before + 1);
    // The reload rotated the cookie from before, which proves no one else had.
    assert_ne!(refresh_cookie(&browser, &app).await, cookie_before);
    assert!(app.audit("reuse_detected").await.is_empty());
    browser.quit().await;
}

async fn refresh_cookie(browser: &Browser, app: &TestApp) -> String {
    browser
        .cookies_for(&app.url("/auth/refresh"))
        .await
        .into_iter()
        .find(|(name, _, _)| name == "__Secure-lk_rt")
        .map(|(_, value, _)| value)
        .expect("the refresh cookie")
}

/// Serves [`HOSTILE_PAGE`] on a loopback port, reached as `localhost`: a
/// different site from the victim's `127.0.0.1`.
async fn serve_hostile_page() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { axum::response::Html(HOSTILE_PAGE) }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://localhost:{port}")
}

/// Polls `condition` until it holds, for at most a few seconds.
async fn wait_until<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the condition never held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_sign_up_signs_the_new_user_in_from_the_page() {
    let app = start!(&[("LATCHKEY_SIGNUP", "open")]);
    app.add_user("alice").await;
    let browser = browser!();
    browser.goto(&app.url("/")).await;
    browser
        .field("Username")
        .await
        .send_keys("alice")
        .await
        .unwrap();
    browser
        .field("Password")
        .await
        .send_keys(PASSWORD)
        .await
        .unwrap();
    // A taken name is said, and signs nobody in.
    browser.button("Sign up").await.click().await.unwrap();
    browser.wait_for_text("already exists").await;
    browser.field("Username").await.clear().await.unwrap();
    browser
        .field("Username")
        .await
        .send_keys("newcomer")
        .await
        .unwrap();
    browser.button("Sign up").await.click().await.unwrap();
    browser.wait_for_text("Signed in as newcomer").await;
    browser.wait_for_text("This device").await;
    let user = app
        .state
        .store()
        .user_by_name("newcomer")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live_sessions(&app, &user.id).await, 1);
    browser.quit().await;
}

/// A third-party application's callback on a loopback port: the page shows
/// nothing; the test reads the address the browser landed on.
async fn serve_callback() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = axum::Router::new().route(
        "/callback",
        axum::routing::get(|| async {
            axum::response::Html("<!doctype html><title>app</title><p>back in the app</p>")
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://127.0.0.1:{port}/callback")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_pages_sign_in_ask_consent_and_return_a_code() {
    use base64::Engine;
    let app = start!(&[]);
    app.add_user("alice").await;
    let (client_id, secret) = app.add_client("lkc_photos", "openid profile", true).await;
    app.execute_sql(
        "UPDATE clients SET redirect_uris = 'http://127.0.0.1/callback', first_party = FALSE \
         WHERE id = 'lkc_photos'",
    )
    .await;
    let callback = serve_callback().await;
    let verifier = "a-verifier-of-the-browser-test-that-is-long-enough-1234567890";
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", callback.as_str()),
        ("scope", "openid profile"),
        ("state", "xyz"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ] {
        query.append_pair(k, v);
    }
    let authorize = app.url(&format!("/oauth/authorize?{}", query.finish()));

    let browser = browser!();
    browser.goto(&authorize).await;
    browser
        .field("Username")
        .await
        .send_keys("alice")
        .await
        .unwrap();
    browser
        .field("Password")
        .await
        .send_keys(PASSWORD)
        .await
        .unwrap();
    browser.button("Log in").await.click().await.unwrap();
    browser.wait_for_text("to use your account?").await;
    browser.button("Allow").await.click().await.unwrap();
    browser.wait_for_text("back in the app").await;
    let landed = browser.client.current_url().await.unwrap();
    let params: std::collections::HashMap<_, _> = landed.query_pairs().into_owned().collect();
    assert_eq!(params["state"], "xyz");
    assert_eq!(params["iss"], app.base);

    // The application's back end exchanges the code, authenticating itself.
    let tokens: serde_json::Value = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(&client_id, secret.as_deref())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", params["code"].as_str()),
            ("redirect_uri", callback.as_str()),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(tokens["id_token"].is_string(), "{tokens}");

    // Signed in now: the next authorization goes straight back, no page.
    browser.goto(&authorize).await;
    browser.wait_for_text("back in the app").await;
    // The sign-in is a session alice sees on her account page, and revokes
    // like any other: the next authorization asks her to log in again.
    browser.log_in(&app.base, "alice", PASSWORD).await;
    browser
        .button("Reload sessions")
        .await
        .click()
        .await
        .unwrap();
    browser.button("Revoke").await;
    // Two others: the photo application's session, and the sign-in.
    assert_eq!(browser.all_named("button", "Revoke").await.len(), 2);
    assert!(browser.text().await.contains("(through lkc_photos)"));
    browser
        .eval(
            "[...document.querySelectorAll('#session-rows tr')]
               .find(r => r.querySelector('button') && !r.textContent.includes('through'))
               .querySelector('button').click()",
        )
        .await;
    browser.wait_for_text("The session was revoked.").await;
    browser.goto(&authorize).await;
    browser.field("Password").await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_page_takes_the_code_signs_in_and_allows_the_device() {
    let app = start!(&[]);
    app.add_user("alice").await;
    app.add_client("lkc_tv", "openid profile", false).await;
    let codes: serde_json::Value = app
        .post_form(
            "/oauth/device_authorization",
            &[("client_id", "lkc_tv"), ("scope", "openid profile")],
        )
        .await
        .json()
        .await
        .unwrap();
    let user_code = codes["user_code"].as_str().unwrap().to_owned();
    let device_code = codes["device_code"].as_str().unwrap().to_owned();
    let page = app.http.get(app.url("/device")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(!page.text().await.unwrap().contains("<script"));

    let browser = browser!();
    browser.goto(&app.url("/device")).await;
    // Typed in lower case, without the dash, and sent with the Enter key.
    let typed = user_code.replace('-', "").to_lowercase();
    browser
        .field("Code")
        .await
        .send_keys(&format!("{typed}\u{E007}"))
        .await
        .unwrap();
    browser.wait_for_text("Log in to connect lkc_tv").await;
    browser
        .field("Username")
        .await
        .send_keys("alice")
        .await
        .unwrap();
    browser
        .field("Password")
        .await
        .send_keys(PASSWORD)
        .await
        .unwrap();
    browser.button("Log in").await.click().await.unwrap();
    browser.wait_for_text("on your device?").await;
    assert!(browser.text().await.contains(&user_code));
    browser.button("Allow").await.click().await.unwrap();
    browser.wait_for_text("go back to your device").await;

    let tokens: serde_json::Value = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("client_id", "lkc_tv"),
                ("device_code", device_code.as_str()),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["scope"], "openid profile", "{tokens}");
    assert!(tokens["refresh_token"].is_string());

    // verification_uri_complete fills the code in; a signed-in browser goes
    // straight to the question, and a wrong code is said in an alert.
    let again: serde_json::Value = app
        .post_form("/oauth/device_authorization", &[("client_id", "lkc_tv")])
        .await
        .json()
        .await
        .unwrap();
    browser
        .goto(again["verification_uri_complete"].as_str().unwrap())
        .await;
    browser.button("Continue").await.click().await.unwrap();
    browser.wait_for_text("on your device?").await;
    browser.button("Deny").await.click().await.unwrap();
    browser.wait_for_text("You denied the request").await;
    browser.goto(&app.url("/device")).await;
    browser
        .field("Code")
        .await
        .send_keys("BCDF-GHJK")
        .await
        .unwrap();
    browser.button("Continue").await.click().await.unwrap();
    browser.wait_for_text("not valid or has expired").await;
    let alert = browser
        .eval("return document.querySelector('[role=alert]').textContent")
        .await;
    assert!(alert.as_str().unwrap().contains("not valid"), "{alert}");
    browser.quit().await;
}

/// The issuer of the passkey cases: a name, not an IP address.
const LOCALHOST: (&str, &str) = ("LATCHKEY_ISSUER", "http://localhost:{port}");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_is_added_on_the_account_page_signs_in_alone_and_is_removed() {
    let app = start!(&[LOCALHOST]);
    app.add_user("alice").await;
    let site = app.state.config().issuer.clone();
    let browser = browser!();
    let authenticator = browser.add_virtual_authenticator().await;
    browser.log_in(&site, "alice", PASSWORD).await;
    browser
        .wait_for_text("Only your password signs you in.")
        .await;
    browser
        .field("Passkey name")
        .await
        .send_keys("Work laptop")
        .await
        .unwrap();
    browser.button("Add a passkey").await.click().await.unwrap();
    browser
        .wait_for_text("The passkey Work laptop was added.")
        .await;
    let held = browser.virtual_credentials(&authenticator).await;
    assert_eq!(held.len(), 1);
    assert_eq!(
        held[0]["isResidentCredential"], true,
        "a discoverable credential"
    );
    assert_eq!(app.audit("passkey_added").await.len(), 1);

    // Logged out, the passkey signs alice in: no username typed.
    browser.button("Log out").await.click().await.unwrap();
    browser.wait_for_text("You have logged out.").await;
    browser
        .button("Sign in with a passkey")
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for_text("Signed in as alice").await;
    let sessions = app
        .state
        .store()
        .live_sessions("usr_alice", app.state.now())
        .await
        .unwrap();
    assert!(
        sessions
            .iter()
            .any(|s| s.auth_method == latchkey_core::strength::AuthMethod::Passkey),
        "{sessions:?}"
    );

    // Removed from the page, it signs no one in.
    let remove = browser.named("button", "Remove").await;
    remove.click().await.unwrap();
    browser
        .wait_for_text("The passkey Work laptop was removed.")
        .await;
    assert_eq!(app.audit("passkey_removed").await.len(), 1);
    browser.button("Log out").await.click().await.unwrap();
    browser.wait_for_text("You have logged out.").await;
    browser
        .button("Sign in with a passkey")
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_for_text("That passkey was not accepted.")
        .await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticator_app_is_set_up_on_the_account_page_and_asked_for_at_the_next_log_in() {
    use latchkey_core::clock::Clock;
    use latchkey_core::totp::{code_at, step_of};
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(&[], clock.clone());
    app.add_user("alice").await;
    let browser = browser!();
    browser.log_in(&app.base, "alice", PASSWORD).await;
    browser
        .button("Set up an authenticator app")
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for_text("Scan this code").await;
    let secret = browser
        .eval("return document.getElementById('totp-secret').textContent")
        .await;
    let secret = data_encoding::BASE32_NOPAD
        .decode(secret.as_str().unwrap().as_bytes())
        .unwrap();
    let qr = browser
        .eval("return document.getElementById('totp-qr').naturalWidth")
        .await;
    assert!(qr.as_u64().unwrap() > 0, "the QR code is drawn");
    let code = code_at(&secret, step_of(clock.now()));
    browser
        .field("Code from the app")
        .await
        .send_keys(&code)
        .await
        .unwrap();
    browser.button("Confirm").await.click().await.unwrap();
    browser.wait_for_text("Save your recovery codes.").await;
    let shown = browser
        .eval("return document.querySelectorAll('#recovery-list li').length")
        .await;
    assert_eq!(shown, 10);
    browser.wait_for_text("Authenticator app").await;

    // The next log in asks for the code after the password.
    browser.button("Log out").await.click().await.unwrap();
    browser.wait_for_text("You have logged out.").await;
    let username = browser.field("Username").await;
    username.clear().await.unwrap();
    username.send_keys("alice").await.unwrap();
    browser
        .field("Password")
        .await
        .send_keys(PASSWORD)
        .await
        .unwrap();
    browser.button("Log in").await.click().await.unwrap();
    let otp = browser.field("One-time code").await;
    browser.button("Use a recovery code").await;
    otp.send_keys("000000").await.unwrap();
    browser.button("Verify").await.click().await.unwrap();
    browser.wait_for_text("That code is not right.").await;
    clock.advance(30);
    let otp = browser.field("One-time code").await;
    otp.clear().await.unwrap();
    otp.send_keys(&code_at(&secret, step_of(clock.now())))
        .await
        .unwrap();
    browser.button("Verify").await.click().await.unwrap();
    browser.wait_for_text("Signed in as alice").await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_pages_step_a_password_sign_in_up_to_a_passkey() {
    use base64::Engine;
    let app = start!(&[LOCALHOST]);
    app.add_user("alice").await;
    let site = app.state.config().issuer.clone();
    let (client_id, secret) = app.add_client("lkc_bank", "openid profile", true).await;
    app.execute_sql(
        "UPDATE clients SET redirect_uris = 'http://127.0.0.1/callback' WHERE id = 'lkc_bank'",
    )
    .await;
    let callback = serve_callback().await;
    let verifier = "a-verifier-of-the-step-up-test-that-is-long-enough-1234567890";
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", callback.as_str()),
        ("scope", "openid profile"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("acr_values", "phr"),
    ] {
        query.append_pair(k, v);
    }
    let authorize = format!("{site}/oauth/authorize?{}", query.finish());

    let browser = browser!();
    browser.add_virtual_authenticator().await;
    browser.log_in(&site, "alice", PASSWORD).await;
    browser
        .field("Passkey name")
        .await
        .send_keys("Phone")
        .await
        .unwrap();
    browser.button("Add a passkey").await.click().await.unwrap();
    browser.wait_for_text("The passkey Phone was added.").await;

    // A password on the login page is not enough for phr: the page asks
    // for the passkey before any code.
    browser.goto(&authorize).await;
    browser
        .field("Username")
        .await
        .send_keys("alice")
        .await
        .unwrap();
    browser
        .field("Password")
        .await
        .send_keys(PASSWORD)
        .await
        .unwrap();
    browser.button("Log in").await.click().await.unwrap();
    browser
        .wait_for_text("asks you to confirm with a passkey")
        .await;
    browser
        .button("Sign in with a passkey")
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for_text("back in the app").await;
    let landed = browser.client.current_url().await.unwrap();
    let params: std::collections::HashMap<_, _> = landed.query_pairs().into_owned().collect();
    let tokens: serde_json::Value = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(&client_id, secret.as_deref())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", params["code"].as_str()),
            ("redirect_uri", callback.as_str()),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = common::claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["acr"], "phr");
    assert_eq!(id["amr"], serde_json::json!(["hwk", "user", "mfa"]));
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_page_says_in_plain_words_why_sessions_ended() {
    let app = start!(&[]);
    app.add_user("alice").await;
    // Another device, logged out, and another revoked as a theft.
    let phone = app.login("alice").await;
    app.http
        .post(app.url("/auth/logout"))
        .bearer_auth(phone["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let laptop = app.login("alice").await;
    let rotated = app.refresh(laptop["refresh_token"].as_str().unwrap()).await;
    assert_eq!(rotated.status(), 200);
    assert_eq!(
        app.refresh(laptop["refresh_token"].as_str().unwrap())
            .await
            .status(),
        400
    );
    let browser = browser!();
    browser.log_in(&app.base, "alice", PASSWORD).await;
    browser.wait_for_text("Recently ended").await;
    browser.wait_for_text("You logged out.").await;
    browser.wait_for_text("which looks like theft").await;
    browser.quit().await;
}

/// The recovery pages (SPEC §13), driven as a person would: `Forgot
/// password?` from the login form, the mail's link, `New password` and
/// `Set password`; the verification link's `Verify`; on the account page
/// `Current password`, `New password` and `Change password`; and a new
/// device's `This wasn't me`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_is_recovered_and_its_password_changed_through_the_pages() {
    let Some(smtp) = common::smtp::Smtp::start().await else {
        return;
    };
    let smtp_url = smtp.url();
    let app = start!(&[("LATCHKEY_SMTP_URL", smtp_url.as_str())]);
    let alice = app.add_user("alice").await;
    app.state
        .users
        .set_email(
            &alice,
            Some("alice@example.com"),
            &latchkey_app::service::Actor::cli(),
        )
        .await
        .unwrap();
    let wait = Duration::from_secs(20);
    let browser = browser!();

    // The verification link opens a page whose button verifies.
    let mail = smtp
        .wait_for("alice@example.com", "Confirm your e-mail", 1, wait)
        .await;
    browser.goto(&mail[0].link(&app.base)).await;
    browser.button("Verify").await.click().await.unwrap();
    browser.wait_for_text("Address confirmed").await;
    assert!(
        app.state
            .store()
            .user_by_id(&alice.id)
            .await
            .unwrap()
            .unwrap()
            .email_verified
    );

    // Forgot password? from the login form.
    browser.goto(&app.url("/")).await;
    browser
        .named("a", "Forgot password?")
        .await
        .click()
        .await
        .unwrap();
    browser
        .field("Email")
        .await
        .send_keys("alice@example.com")
        .await
        .unwrap();
    browser
        .button("Send reset link")
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for_text("Check your mail").await;
    let mail = smtp
        .wait_for("alice@example.com", "Reset your password", 1, wait)
        .await;
    browser.goto(&mail[0].link(&app.base)).await;
    browser
        .field("New password")
        .await
        .send_keys("a brand new passphrase")
        .await
        .unwrap();
    browser.button("Set password").await.click().await.unwrap();
    browser.wait_for_text("Your password is set").await;

    // The account page changes it again.
    browser
        .log_in(&app.base, "alice", "a brand new passphrase")
        .await;
    browser
        .field("Current password")
        .await
        .send_keys("a brand new passphrase")
        .await
        .unwrap();
    browser
        .field("New password")
        .await
        .send_keys("the third passphrase")
        .await
        .unwrap();
    browser
        .button("Change password")
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for_text("Your password is changed.").await;
    assert_eq!(
        app.post_form(
            "/auth/login",
            &[("username", "alice"), ("password", "the third passphrase")]
        )
        .await
        .status(),
        200
    );

    // Another device's sign-in (the login just above, from another user
    // agent) is told; its page's button ends it.
    let notice = smtp
        .wait_for("alice@example.com", "New sign-in", 1, wait)
        .await;
    browser.goto(&notice[0].link(&app.base)).await;
    browser
        .button("This wasn't me")
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for_text("That sign-in has ended").await;
    browser.named("a", "Reset your password").await;
    browser.quit().await;
}
