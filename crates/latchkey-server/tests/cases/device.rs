// Included once per storage backend by tests/device.rs; `BACKEND` names it.

use std::sync::Arc;

use crate::common::agent::Agent;
use crate::common::{PASSWORD, TestApp, claims, error_code, field, join_all};
use latchkey_core::clock::ManualClock;
use serde_json::Value;

const TV: &str = "lkc_tv";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

async fn start_device(app: &TestApp, client: &str, scope: &str) -> Value {
    let response = app
        .post_form("/oauth/device_authorization", &[("client_id", client), ("scope", scope)])
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

async fn poll(app: &TestApp, client: &str, device_code: &str) -> reqwest::Response {
    app.post_form(
        "/oauth/token",
        &[("grant_type", DEVICE_GRANT), ("client_id", client), ("device_code", device_code)],
    )
    .await
}

/// The person's side: the code, the sign-in, then `decision`.
async fn answer(agent: &Agent<'_>, user_code: &str, decision: &str) -> String {
    let page = agent.get("/device").await.text().await.unwrap();
    assert!(page.contains(r#"<label for="user_code">Code</label>"#), "{page}");
    assert!(page.contains(">Continue</button>"), "{page}");
    let login = agent.submit(&page, &[("user_code", user_code)]).await;
    assert_eq!(login.status(), 200);
    let login = login.text().await.unwrap();
    assert!(login.contains(r#"name="password""#), "{login}");
    let confirm = agent.submit(&login, &[("username", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(confirm.status(), 200);
    let confirm = confirm.text().await.unwrap();
    assert!(confirm.contains(r#"name="decision" value="allow""#), "{confirm}");
    let letters = user_code.replace('-', "").to_uppercase();
    let shown = format!("{}-{}", &letters[..4], &letters[4..]);
    assert!(confirm.contains(&shown), "the confirmation shows the code: {confirm}");
    let done = agent.submit(&confirm, &[("decision", decision)]).await;
    assert_eq!(done.status(), 200);
    done.text().await.unwrap()
}

async fn setup(app: &TestApp) {
    app.add_user("alice").await;
    app.add_client(TV, "openid profile", false).await;
}

#[tokio::test]
async fn a_device_polls_its_person_allows_and_it_gets_a_session_once() {
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(&[], clock.clone());
    setup(&app).await;
    let codes = start_device(&app, TV, "openid").await;
    let user_code = field(&codes, "user_code").to_owned();
    let device_code = field(&codes, "device_code").to_owned();
    let letters = "BCDFGHJKLMNPQRSTVWXZ";
    assert_eq!(user_code.len(), 9);
    assert_eq!(&user_code[4..5], "-");
    assert!(user_code.chars().filter(|c| *c != '-').all(|c| letters.contains(c)), "{user_code}");
    assert_eq!(codes["verification_uri"], app.url("/device"));
    assert_eq!(codes["verification_uri_complete"], app.url(&format!("/device?user_code={user_code}")));
    assert_eq!(codes["expires_in"], 600);
    assert_eq!(codes["interval"], 5);

    // Before anyone answers: pending, and too fast is slow_down (+5 s).
    assert_eq!(error_code(poll(&app, TV, &device_code).await).await, (400, "authorization_pending".into()));
    assert_eq!(error_code(poll(&app, TV, &device_code).await).await, (400, "slow_down".into()));
    clock.advance(6);
    assert_eq!(error_code(poll(&app, TV, &device_code).await).await, (400, "slow_down".into()), "the interval grew to 10 s");
    clock.advance(11);
    assert_eq!(error_code(poll(&app, TV, &device_code).await).await, (400, "slow_down".into()), "and then to 15 s");
    clock.advance(20);
    assert_eq!(error_code(poll(&app, TV, &device_code).await).await, (400, "authorization_pending".into()));

    // The person types it in lower case without the dash.
    let typed = user_code.replace('-', "").to_lowercase();
    let done = answer(&Agent::at(&app, "/device"), &typed, "allow").await;
    assert!(done.contains("go back to your device"), "{done}");
    assert_eq!(app.audit("device_allowed").await.len(), 1);

    let response = poll(&app, TV, &device_code).await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    let access = claims(field(&tokens, "access_token"));
    assert_eq!(access["sub"], "usr_alice");
    assert_eq!(access["client_id"], TV);
    assert_eq!(tokens["scope"], "openid");
    // A session like any other: it rotates, and its old token is dead.
    let refreshed = app
        .post_form(
            "/oauth/token",
            &[("grant_type", "refresh_token"), ("client_id", TV), ("refresh_token", field(&tokens, "refresh_token"))],
        )
        .await;
    assert_eq!(refreshed.status(), 200);
    // Redeemed once.
    assert_eq!(error_code(poll(&app, TV, &device_code).await).await, (400, "invalid_grant".into()));
    // Neither code is stored in plain.
    let stored = app.stored_data().await;
    for secret in [device_code.as_str(), user_code.as_str(), &user_code.replace('-', "")] {
        assert!(!stored.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} is stored");
    }
}

#[tokio::test]
async fn polls_at_once_of_an_allowed_device_redeem_it_once() {
    let app = start!(&[]);
    setup(&app).await;
    let codes = start_device(&app, TV, "openid").await;
    answer(&Agent::at(&app, "/device"), field(&codes, "user_code"), "allow").await;
    let device_code = field(&codes, "device_code");
    let polls = (0..8).map(|_| poll(&app, TV, device_code)).collect();
    let statuses: Vec<u16> = join_all(polls).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 7, "{statuses:?}");
    let sessions = app.state.store().live_sessions("usr_alice", app.state.now()).await.unwrap();
    // The page's sign-in, and the one session of the device.
    assert_eq!(sessions.iter().filter(|s| s.client_id.as_deref() == Some(TV)).count(), 1);
}

#[tokio::test]
async fn a_denied_device_is_told_so_and_an_expired_code_is_expired() {
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(&[], clock.clone());
    setup(&app).await;
    let denied = start_device(&app, TV, "openid").await;
    let done = answer(&Agent::at(&app, "/device"), field(&denied, "user_code"), "deny").await;
    assert!(done.contains("You denied"), "{done}");
    assert_eq!(error_code(poll(&app, TV, field(&denied, "device_code")).await).await, (400, "access_denied".into()));
    assert_eq!(app.audit("device_denied").await.len(), 1);

    let late = start_device(&app, TV, "openid").await;
    clock.advance(601);
    assert_eq!(error_code(poll(&app, TV, field(&late, "device_code")).await).await, (400, "expired_token".into()));
    // Nor can a person answer it any more.
    let agent = Agent::at(&app, "/device");
    let page = agent.get("/device").await.text().await.unwrap();
    let refused = agent.submit(&page, &[("user_code", field(&late, "user_code"))]).await;
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("not valid or has expired"));
}

#[tokio::test]
async fn only_its_own_client_redeems_a_device_code() {
    let app = start!(&[]);
    setup(&app).await;
    let (other, secret) = app.add_client("lkc_other", "openid", true).await;
    let codes = start_device(&app, TV, "openid").await;
    answer(&Agent::at(&app, "/device"), field(&codes, "user_code"), "allow").await;
    let device_code = field(&codes, "device_code");
    let stolen = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(&other, secret.as_deref())
        .form(&[("grant_type", DEVICE_GRANT), ("device_code", device_code)])
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(stolen).await, (400, "invalid_grant".into()));
    assert_eq!(poll(&app, TV, device_code).await.status(), 200, "the theft changed nothing");
}

#[tokio::test]
async fn bad_requests_are_refused_clearly() {
    let app = start!(&[]);
    setup(&app).await;
    let (confidential, _) = app.add_client("lkc_box", "openid", true).await;
    let start = |form: Vec<(&'static str, String)>| {
        let app = &app;
        async move { error_code(app.http.post(app.url("/oauth/device_authorization")).form(&form).send().await.unwrap()).await }
    };
    assert_eq!(start(vec![("scope", "openid".into())]).await, (401, "invalid_client".into()));
    assert_eq!(start(vec![("client_id", "lkc_nobody".into())]).await, (401, "invalid_client".into()));
    assert_eq!(start(vec![("client_id", confidential.clone())]).await, (401, "invalid_client".into()));
    assert_eq!(start(vec![("client_id", TV.into()), ("scope", "latchkey:admin".into())]).await, (400, "invalid_scope".into()));
    assert_eq!(
        error_code(app.post_form("/oauth/token", &[("grant_type", DEVICE_GRANT), ("client_id", TV)]).await).await,
        (400, "invalid_request".into())
    );
    assert_eq!(error_code(poll(&app, TV, "lk_dc_nothing").await).await, (400, "invalid_grant".into()));
    assert_eq!(error_code(poll(&app, "lkc_nobody", "lk_dc_nothing").await).await, (401, "invalid_client".into()));
    // A form without the page's CSRF token changes nothing.
    let codes = start_device(&app, TV, "openid").await;
    let forged = app
        .http
        .post(app.url("/device"))
        .form(&[("user_code", field(&codes, "user_code")), ("username", "alice"), ("password", PASSWORD), ("decision", "allow")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(error_code(poll(&app, TV, field(&codes, "device_code")).await).await, (400, "authorization_pending".into()));
}

#[tokio::test]
async fn guessing_user_codes_is_throttled_per_address() {
    let app = start!(&[("LATCHKEY_THROTTLE_IP", "5/15m")]);
    setup(&app).await;
    let codes = start_device(&app, TV, "openid").await;
    let guesser = Agent::from_address(&app, "/device", "127.0.0.7");
    let page = guesser.get("/device").await.text().await.unwrap();
    let guesses = (0..12).map(|_| guesser.submit(&page, &[("user_code", "BCDF-GHJK")])).collect();
    let statuses: Vec<u16> = join_all(guesses).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 7, "{statuses:?}");
    // Even the right code, from that address, waits now.
    let right = guesser.submit(&page, &[("user_code", field(&codes, "user_code"))]).await;
    assert_eq!(right.status(), 429);
    assert_eq!(app.audit("throttled").await.len(), 1);
    // Another address goes on, and finding a code gives its attempt back.
    let person = Agent::from_address(&app, "/device", "127.0.0.8");
    for _ in 0..8 {
        let page = person.get("/device").await.text().await.unwrap();
        let found = person.submit(&page, &[("user_code", field(&codes, "user_code"))]).await;
        assert_eq!(found.status(), 200);
    }
}

#[tokio::test]
async fn the_device_page_asks_for_the_second_step_and_the_device_gets_its_strength() {
    use latchkey_core::clock::Clock;
    use latchkey_core::totp::{code_at, step_of};
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(&[], clock.clone());
    setup(&app).await;
    // Alice has an authenticator app.
    let access = field(&app.login("alice").await, "access_token").to_owned();
    let setup: Value = app.http.post(app.url("/auth/totp")).bearer_auth(&access).send().await.unwrap().json().await.unwrap();
    let secret = data_encoding::BASE32_NOPAD.decode(field(&setup, "secret").as_bytes()).unwrap();
    let confirm = serde_json::json!({"code": code_at(&secret, step_of(clock.now()))});
    let confirmed = app.http.post(app.url("/auth/totp/confirm")).bearer_auth(&access).json(&confirm).send().await.unwrap();
    assert_eq!(confirmed.status(), 200);

    let codes = start_device(&app, TV, "openid").await;
    let agent = Agent::at(&app, "/device");
    let page = agent.get("/device").await.text().await.unwrap();
    let login = agent.submit(&page, &[("user_code", field(&codes, "user_code"))]).await.text().await.unwrap();
    let step = agent.submit(&login, &[("username", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(step.status(), 200);
    let step = step.text().await.unwrap();
    assert!(step.contains(r#"<label for="otp">One-time code</label>"#) && step.contains(">Verify</button>"), "{step}");
    clock.advance(30);
    let allow = agent.submit(&step, &[("otp", &code_at(&secret, step_of(clock.now())))]).await.text().await.unwrap();
    assert!(allow.contains(r#"name="decision" value="allow""#), "{allow}");
    agent.submit(&allow, &[("decision", "allow")]).await;
    clock.advance(6);
    let tokens: Value = poll(&app, TV, field(&codes, "device_code")).await.json().await.unwrap();
    let signed = claims(field(&tokens, "access_token"));
    assert_eq!((signed["acr"].as_str(), signed["amr"].clone()), (Some("mfa"), serde_json::json!(["pwd", "otp", "mfa"])));
}
