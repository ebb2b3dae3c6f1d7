// Included once per storage backend by tests/factors.rs; `BACKEND` names it.

use std::sync::Arc;

use crate::common::{PASSWORD, TestApp, error_code, field, join_all};
use latchkey_core::clock::{Clock, ManualClock};
use latchkey_core::totp::{code_at, step_of};
use serde_json::{Value, json};

/// Sets up and confirms an app for alice; her secret and recovery codes.
async fn enrol(app: &TestApp, clock: &ManualClock) -> (Vec<u8>, Vec<String>) {
    let access = field(&app.login("alice").await, "access_token").to_owned();
    let response = app.http.post(app.url("/auth/totp")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let setup: Value = response.json().await.unwrap();
    assert!(field(&setup, "otpauth_uri").starts_with("otpauth://totp/"), "{setup}");
    assert!(field(&setup, "otpauth_uri").contains(field(&setup, "secret")));
    assert!(field(&setup, "qr_svg").contains("<svg"));
    let secret = data_encoding::BASE32_NOPAD.decode(field(&setup, "secret").as_bytes()).unwrap();
    let wrong = app
        .http
        .post(app.url("/auth/totp/confirm"))
        .bearer_auth(&access)
        .json(&json!({"code": "000000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(wrong).await, (400, "invalid_grant".into()));
    let code = code_at(&secret, step_of(clock.now()));
    let confirmed = app
        .http
        .post(app.url("/auth/totp/confirm"))
        .bearer_auth(&access)
        .json(&json!({ "code": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    let codes: Vec<String> = serde_json::from_value(confirmed.json::<Value>().await.unwrap()["recovery_codes"].clone()).unwrap();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

/// A right password: `401 mfa_required` and its token.
async fn mfa_token(app: &TestApp) -> String {
    let response = app.post_form("/auth/login", &[("username", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "mfa_required");
    assert_eq!(body["mfa_methods"], json!(["otp", "recovery_code"]));
    assert!(body.get("access_token").is_none());
    field(&body, "mfa_token").to_owned()
}

async fn second_step(app: &TestApp, token: &str, name: &str, code: &str) -> reqwest::Response {
    app.post_form("/auth/login/mfa", &[("mfa_token", token), (name, code)]).await
}

#[tokio::test]
async fn an_authenticator_app_asks_for_a_second_step_after_the_password() {
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(&[("LATCHKEY_PASSWORD_GRANT", "true")], clock.clone());
    app.add_user("alice").await;
    let (secret, recovery) = enrol(&app, &clock).await;
    assert_eq!(app.audit("totp_added").await.len(), 1);

    // A wrong password is answered as before: nothing about the factor.
    let wrong = app.post_form("/auth/login", &[("username", "alice"), ("password", "not the password")]).await;
    assert_eq!(error_code(wrong).await, (400, "invalid_grant".into()));
    let grant = app
        .post_form("/oauth/token", &[("grant_type", "password"), ("username", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(error_code(grant).await, (401, "mfa_required".into()));

    // The code that confirmed the app is spent; the next step's is good once.
    let token = mfa_token(&app).await;
    let spent = code_at(&secret, step_of(clock.now()));
    assert_eq!(error_code(second_step(&app, &token, "otp", &spent).await).await, (400, "invalid_grant".into()));
    clock.advance(30);
    let next = code_at(&secret, step_of(clock.now()));
    let done = second_step(&app, &token, "otp", &next).await;
    assert_eq!(done.status(), 200);
    let tokens: Value = done.json().await.unwrap();
    assert_eq!(app.me(field(&tokens, "access_token")).await.status(), 200);
    assert_eq!(error_code(second_step(&app, &token, "otp", &next).await).await, (400, "invalid_grant".into()), "spent");
    let again = mfa_token(&app).await;
    assert_eq!(error_code(second_step(&app, &again, "otp", &next).await).await, (400, "invalid_grant".into()), "a code once");

    // A recovery code, typed loosely, works once.
    let typed = recovery[0].to_uppercase().replace('-', " ");
    assert_eq!(second_step(&app, &mfa_token(&app).await, "recovery_code", &typed).await.status(), 200);
    let reused = second_step(&app, &mfa_token(&app).await, "recovery_code", &recovery[0]).await;
    assert_eq!(error_code(reused).await, (400, "invalid_grant".into()));

    // Removing it (with a recovery code) ends the second step.
    let token = mfa_token(&app).await;
    clock.advance(30);
    let done = second_step(&app, &token, "otp", &code_at(&secret, step_of(clock.now()))).await;
    let access = field(&done.json::<Value>().await.unwrap(), "access_token").to_owned();
    let removed = app
        .http
        .delete(app.url("/auth/totp"))
        .bearer_auth(&access)
        .json(&json!({"code": recovery[1]}))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    assert_eq!(app.audit("totp_removed").await.len(), 1);
    app.login("alice").await;
    // Nothing of the factor is stored in plain.
    let stored = app.stored_data().await;
    let b32 = data_encoding::BASE32_NOPAD.encode(&secret);
    for code in recovery.iter().map(String::as_str).chain([b32.as_str()]) {
        assert!(!stored.windows(code.len()).any(|w| w == code.as_bytes()), "{code} is stored");
    }
}

#[tokio::test]
async fn an_mfa_token_dies_at_its_fifth_wrong_code_and_at_its_end() {
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(&[], clock.clone());
    app.add_user("alice").await;
    let (secret, _) = enrol(&app, &clock).await;
    clock.advance(30);
    let token = mfa_token(&app).await;
    for _ in 0..5 {
        assert_eq!(error_code(second_step(&app, &token, "otp", "123456").await).await, (400, "invalid_grant".into()));
    }
    let right = code_at(&secret, step_of(clock.now()));
    assert_eq!(error_code(second_step(&app, &token, "otp", &right).await).await, (400, "invalid_grant".into()));
    let late = mfa_token(&app).await;
    clock.advance(301);
    let right = code_at(&secret, step_of(clock.now()));
    assert_eq!(error_code(second_step(&app, &late, "otp", &right).await).await, (400, "invalid_grant".into()));
    assert_eq!(second_step(&app, &mfa_token(&app).await, "otp", &right).await.status(), 200);
    assert_eq!(
        error_code(app.post_form("/auth/login/mfa", &[("mfa_token", "x")]).await).await,
        (400, "invalid_request".into())
    );
}

#[tokio::test]
async fn wrong_codes_are_throttled_per_user_whatever_arrives_at_once() {
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(&[("LATCHKEY_THROTTLE_ACCOUNT", "5/15m")], clock.clone());
    app.add_user("alice").await;
    let (secret, _) = enrol(&app, &clock).await;
    clock.advance(30);
    let tokens = [mfa_token(&app).await, mfa_token(&app).await, mfa_token(&app).await];
    let guesses = (0..12).map(|i| second_step(&app, &tokens[i % 3], "otp", "999999")).collect();
    let statuses: Vec<u16> = join_all(guesses).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 7, "{statuses:?}");
    let right = code_at(&secret, step_of(clock.now()));
    assert_eq!(second_step(&app, &tokens[2], "otp", &right).await.status(), 429);
    // The five refused here, and the wrong code of the set-up.
    assert_eq!(app.audit("mfa_failed").await.len(), 5 + 1);
}

#[tokio::test]
async fn changing_factors_needs_a_recent_first_party_sign_in() {
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(&[("LATCHKEY_REAUTH_WINDOW", "1m")], clock.clone());
    app.add_user("alice").await;
    let access = field(&app.login("alice").await, "access_token").to_owned();
    clock.advance(61);
    let late = app.http.post(app.url("/auth/totp")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(error_code(late).await, (403, "reauthentication_required".into()));
    let anonymous = app.http.post(app.url("/auth/totp")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let no_app = app
        .http
        .post(app.url("/auth/totp/confirm"))
        .bearer_auth(field(&app.login("alice").await, "access_token"))
        .json(&json!({"code": "123456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(no_app).await, (400, "invalid_request".into()));
}

#[tokio::test]
async fn the_admin_api_lists_and_removes_a_users_factors() {
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(&[], clock.clone());
    app.add_user("alice").await;
    let admin = app.admin_token().await;
    let list = |app: &TestApp, token: String| {
        let request = app.http.get(app.url("/admin/users/usr_alice/factors")).bearer_auth(token);
        async move { request.send().await.unwrap() }
    };
    let none: Value = list(&app, admin.clone()).await.json().await.unwrap();
    assert_eq!(none, json!({"factors": []}));
    let alices = field(&app.login("alice").await, "access_token").to_owned();
    assert_eq!(list(&app, alices).await.status(), 403, "a user's token is not the admin's");
    enrol(&app, &clock).await;
    let listed: Value = list(&app, admin.clone()).await.json().await.unwrap();
    let factors = listed["factors"].as_array().unwrap();
    assert_eq!(factors.len(), 1, "{listed}");
    assert_eq!(factors[0]["kind"], "totp");
    let factor_id = field(&factors[0], "id").to_owned();
    let remove = |path: String| {
        let request = app.http.delete(app.url(&path)).bearer_auth(&admin);
        async move { request.send().await.unwrap() }
    };
    assert_eq!(remove("/admin/users/usr_alice/factors/fac_nope".into()).await.status(), 404);
    assert_eq!(remove(format!("/admin/users/usr_nobody/factors/{factor_id}")).await.status(), 404);
    assert_eq!(remove(format!("/admin/users/usr_alice/factors/{factor_id}")).await.status(), 204);
    let removed = app.audit("totp_removed").await;
    assert_eq!(removed[0].client_id.as_deref(), Some("lkc_admin"));
    app.login("alice").await;
}

/// What an introspecting resource server reads of `token`.
async fn introspect(app: &TestApp, client: (&str, Option<&str>), token: &str) -> Value {
    let response = app
        .http
        .post(app.url("/oauth/introspect"))
        .basic_auth(client.0, client.1)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_session_keeps_the_strength_of_its_sign_in_in_every_token() {
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(&[], clock.clone());
    app.add_user("alice").await;
    let (rs, secret) = app.add_client("lkc_rs", "", true).await;
    let rs = (rs.as_str(), secret.as_deref());

    let password = app.login("alice").await;
    let claims = crate::common::claims(field(&password, "access_token"));
    assert_eq!((claims["amr"].clone(), claims["acr"].clone()), (json!(["pwd"]), json!("pwd")));
    let (secret, recovery) = enrol(&app, &clock).await;

    clock.advance(30);
    let otp = second_step(&app, &mfa_token(&app).await, "otp", &code_at(&secret, step_of(clock.now()))).await;
    let otp: Value = otp.json().await.unwrap();
    let claims = crate::common::claims(field(&otp, "access_token"));
    assert_eq!(claims["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(claims["acr"], "mfa");
    assert_eq!(claims["auth_time"], json!(clock.now()));
    let seen = introspect(&app, rs, field(&otp, "access_token")).await;
    assert_eq!((seen["amr"].clone(), seen["acr"].clone()), (json!(["pwd", "otp", "mfa"]), json!("mfa")));
    let seen = introspect(&app, rs, field(&otp, "refresh_token")).await;
    assert_eq!((seen["amr"].clone(), seen["acr"].clone()), (json!(["pwd", "otp", "mfa"]), json!("mfa")));

    // Refreshed tokens carry the strength and the time of the sign-in.
    let signed_in_at = clock.now();
    clock.advance(120);
    let refreshed: Value = app.refresh(field(&otp, "refresh_token")).await.json().await.unwrap();
    let claims = crate::common::claims(field(&refreshed, "access_token"));
    assert_eq!((claims["amr"].clone(), claims["acr"].clone()), (json!(["pwd", "otp", "mfa"]), json!("mfa")));
    assert_eq!(claims["auth_time"], json!(signed_in_at));

    let recovered = second_step(&app, &mfa_token(&app).await, "recovery_code", &recovery[0]).await;
    let claims = crate::common::claims(field(&recovered.json::<Value>().await.unwrap(), "access_token"));
    assert_eq!((claims["amr"].clone(), claims["acr"].clone()), (json!(["pwd", "mfa"]), json!("mfa")));

    // Discovery names the levels.
    let discovery: Value = app.http.get(app.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(discovery["acr_values_supported"], json!(["pwd", "mfa", "phr"]));
}
