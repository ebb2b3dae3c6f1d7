// Included once per storage backend by tests/passkeys.rs; `BACKEND` names it.

use std::sync::Arc;

use crate::common::authenticator::Authenticator;
use crate::common::{TestApp, claims, error_code, field, join_all};
use latchkey_core::clock::ManualClock;
use serde_json::{Value, json};

/// Passkeys need a name, not an IP address: the issuer is `localhost`.
const LOCALHOST: (&str, &str) = ("LATCHKEY_ISSUER", "http://localhost:{port}");

fn authenticator(app: &TestApp) -> Authenticator {
    Authenticator::new(&app.state.config().issuer)
}

async fn post_json(app: &TestApp, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = app.http.post(app.url(path)).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn options(app: &TestApp, path: &str, token: Option<&str>) -> Value {
    let response = post_json(app, path, token, &json!({})).await;
    assert_eq!(response.status(), 200, "{path}");
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

/// Registers a passkey named `name` for the holder of `access`; its id.
async fn register(app: &TestApp, key: &mut Authenticator, access: &str, name: &str) -> String {
    let creation = options(app, "/auth/passkeys/options", Some(access)).await;
    let credential = key.create(&creation);
    let added = post_json(app, "/auth/passkeys", Some(access), &json!({"name": name, "credential": credential})).await;
    assert_eq!(added.status(), 201);
    let added: Value = added.json().await.unwrap();
    assert_eq!(added["name"], name);
    assert!(added["created_at"].is_i64());
    field(&added, "id").to_owned()
}

/// A sign-in with the authenticator's newest passkey: the response.
async fn sign_in(app: &TestApp, key: &mut Authenticator) -> reqwest::Response {
    let request = options(app, "/auth/passkey/options", None).await;
    let assertion = key.get(&request);
    post_json(app, "/auth/passkey/login", None, &json!({"credential": assertion})).await
}

async fn listed(app: &TestApp, access: &str) -> Vec<Value> {
    let response = app.http.get(app.url("/auth/passkeys")).bearer_auth(access).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["passkeys"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_passkey_is_added_signs_in_alone_and_is_removed() {
    let app = start!(&[LOCALHOST]);
    let alice = app.add_user("alice").await;
    let access = field(&app.login("alice").await, "access_token").to_owned();
    let mut key = authenticator(&app);

    let creation = options(&app, "/auth/passkeys/options", Some(&access)).await;
    let public_key = &creation["publicKey"];
    assert_eq!(public_key["rp"]["id"], "localhost");
    assert_eq!(public_key["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(public_key["authenticatorSelection"]["userVerification"], "required");
    assert!(!public_key["user"]["id"].as_str().unwrap().contains(&alice.id), "the handle names no one");
    let credential = key.create(&creation);
    let body = json!({"name": "  Laptop ", "credential": credential});
    let added = post_json(&app, "/auth/passkeys", Some(&access), &body).await;
    assert_eq!(added.status(), 201);
    let id = field(&added.json::<Value>().await.unwrap(), "id").to_owned();
    assert!(id.starts_with("pk_"));
    assert_eq!(app.audit("passkey_added").await.len(), 1);
    // The same answer again: its ceremony is spent.
    let again = post_json(&app, "/auth/passkeys", Some(&access), &body).await;
    assert_eq!(error_code(again).await, (400, "invalid_grant".into()));
    let keys = listed(&app, &access).await;
    assert_eq!(keys.len(), 1);
    assert_eq!((keys[0]["id"].as_str(), keys[0]["name"].as_str()), (Some(id.as_str()), Some("Laptop")));
    assert!(keys[0]["last_used_at"].is_null());

    // Anyone signs in with it, no username typed; the tokens say how.
    let request = options(&app, "/auth/passkey/options", None).await;
    assert_eq!(request["publicKey"]["userVerification"], "required");
    assert!(request["publicKey"]["allowCredentials"].as_array().is_none_or(Vec::is_empty));
    let assertion = key.get(&request);
    let done = post_json(&app, "/auth/passkey/login", None, &json!({"credential": assertion})).await;
    assert_eq!(done.status(), 200);
    let tokens: Value = done.json().await.unwrap();
    let signed = claims(field(&tokens, "access_token"));
    assert_eq!(signed["sub"], alice.id.as_str());
    assert_eq!(signed["amr"], json!(["hwk", "user", "mfa"]));
    assert_eq!(signed["acr"], "phr");
    assert!(tokens["refresh_token"].is_string());
    assert_eq!(app.me(field(&tokens, "access_token")).await.status(), 200);
    // Its refreshed tokens keep the strength.
    let refreshed: Value = app.refresh(field(&tokens, "refresh_token")).await.json().await.unwrap();
    assert_eq!(claims(field(&refreshed, "access_token"))["acr"], "phr");
    // The same assertion again: its challenge is spent.
    let replay = post_json(&app, "/auth/passkey/login", None, &json!({"credential": assertion})).await;
    assert_eq!(error_code(replay).await, (400, "invalid_grant".into()));
    assert!(listed(&app, &access).await[0]["last_used_at"].is_i64());

    // Removed: it signs no one in any more.
    let nobody = app.http.delete(app.url("/auth/passkeys/pk_nope")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(nobody.status(), 404);
    let removed = app.http.delete(app.url(&format!("/auth/passkeys/{id}"))).bearer_auth(&access).send().await.unwrap();
    assert_eq!(removed.status(), 204);
    assert_eq!(app.audit("passkey_removed").await.len(), 1);
    assert!(listed(&app, &access).await.is_empty());
    assert_eq!(error_code(sign_in(&app, &mut key).await).await, (400, "invalid_grant".into()));
}

#[tokio::test]
async fn a_signature_counter_that_goes_backwards_is_refused_and_audited() {
    let app = start!(&[LOCALHOST]);
    app.add_user("alice").await;
    let access = field(&app.login("alice").await, "access_token").to_owned();
    let mut key = authenticator(&app);
    register(&app, &mut key, &access, "Phone").await;
    assert_eq!(sign_in(&app, &mut key).await.status(), 200);
    assert_eq!(sign_in(&app, &mut key).await.status(), 200);
    // A clone of the authenticator, taken when its counter was 1.
    key.credentials[0].counter = 0;
    assert_eq!(error_code(sign_in(&app, &mut key).await).await, (400, "invalid_grant".into()));
    let audited = app.audit("passkey_counter_regressed").await;
    assert_eq!(audited.len(), 1);
    assert!(audited[0].detail.contains("cloned"), "{:?}", audited[0].detail);
    // The real one, further on, still works.
    key.credentials[0].counter = 2;
    assert_eq!(sign_in(&app, &mut key).await.status(), 200);

    // An authenticator that keeps no counter (always 0) signs in each time.
    let mut synced = authenticator(&app);
    synced.counts = false;
    register(&app, &mut synced, &access, "Synced").await;
    for _ in 0..3 {
        assert_eq!(sign_in(&app, &mut synced).await.status(), 200);
    }
}

#[tokio::test]
async fn a_ceremony_is_used_once_within_five_minutes_by_any_instance() {
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(&[LOCALHOST], clock.clone());
    app.add_user("alice").await;
    app.add_user("bob").await;
    let access = field(&app.login("alice").await, "access_token").to_owned();
    let mut key = authenticator(&app);
    register(&app, &mut key, &access, "Laptop").await;

    // Started on one instance, finished on another.
    let issuer = app.state.config().issuer.clone();
    let other = app.beside(&[("LATCHKEY_ISSUER", issuer.as_str())]).await;
    let request = options(&app, "/auth/passkey/options", None).await;
    let assertion = key.get(&request);
    let done = post_json(&other, "/auth/passkey/login", None, &json!({"credential": assertion})).await;
    assert_eq!(done.status(), 200);

    // The same answer sent many times at once signs in once.
    let request = options(&app, "/auth/passkey/options", None).await;
    let assertion = key.get(&request);
    let body = json!({"credential": assertion});
    let answers = join_all((0..8).map(|_| post_json(&app, "/auth/passkey/login", None, &body)).collect()).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");

    // Five minutes, then the challenge is gone.
    let request = options(&app, "/auth/passkey/options", None).await;
    clock.advance(301);
    let late = post_json(&app, "/auth/passkey/login", None, &json!({"credential": key.get(&request)})).await;
    assert_eq!(error_code(late).await, (400, "invalid_grant".into()));

    // Alice's registration cannot be finished by Bob.
    let bobs = field(&app.login("bob").await, "access_token").to_owned();
    let creation = options(&app, "/auth/passkeys/options", Some(&access)).await;
    let credential = key.create(&creation);
    let stolen = post_json(&app, "/auth/passkeys", Some(&bobs), &json!({"name": "x", "credential": credential})).await;
    assert_eq!(error_code(stolen).await, (400, "invalid_grant".into()));
    assert!(listed(&app, &bobs).await.is_empty());
}

#[tokio::test]
async fn an_answer_for_another_origin_or_a_forged_signature_is_refused() {
    let app = start!(&[LOCALHOST]);
    app.add_user("alice").await;
    let access = field(&app.login("alice").await, "access_token").to_owned();
    let mut key = authenticator(&app);
    register(&app, &mut key, &access, "Laptop").await;

    key.origin = "http://localhost.evil.example".into();
    assert_eq!(error_code(sign_in(&app, &mut key).await).await, (400, "invalid_grant".into()));
    key.origin = app.state.config().issuer.clone();

    let request = options(&app, "/auth/passkey/options", None).await;
    let mut assertion = key.get(&request);
    assertion["response"]["signature"] = json!("MEUCIQDr");
    let forged = post_json(&app, "/auth/passkey/login", None, &json!({"credential": assertion})).await;
    assert_eq!(error_code(forged).await, (400, "invalid_grant".into()));
    assert!(app.audit("login_failed").await.len() >= 2);

    // Malformed bodies are refused before anything is looked up.
    for body in [json!({}), json!({"credential": "text"}), json!({"credential": {"id": 1}})] {
        let refused = post_json(&app, "/auth/passkey/login", None, &body).await;
        assert_eq!(error_code(refused).await, (400, "invalid_request".into()), "{body}");
    }
    let huge = json!({"credential": {"id": "x".repeat(20_000)}});
    assert_eq!(error_code(post_json(&app, "/auth/passkey/login", None, &huge).await).await, (413, "invalid_request".into()));
    let nameless = post_json(&app, "/auth/passkeys", Some(&access), &json!({"name": "", "credential": {"id": "x"}})).await;
    assert_eq!(error_code(nameless).await.0, 400);
}

#[tokio::test]
async fn adding_a_passkey_needs_a_recent_sign_in_and_option_requests_are_throttled() {
    let clock = Arc::new(ManualClock::at_system_time());
    let env = [LOCALHOST, ("LATCHKEY_THROTTLE_IP", "5/15m"), ("LATCHKEY_ACCESS_TTL", "1h")];
    let app = start!(&env, clock.clone());
    app.add_user("alice").await;
    let access = field(&app.login("alice").await, "access_token").to_owned();
    clock.advance(11 * 60);
    let login = app.login("alice").await;
    let late = post_json(&app, "/auth/passkeys/options", Some(&access), &json!({})).await;
    assert_eq!(error_code(late).await, (403, "reauthentication_required".into()));
    // Option requests at once from one address: no more than its limit.
    let fresh = field(&login, "access_token").to_owned();
    let empty = json!({});
    let answers = join_all((0..12).map(|_| post_json(&app, "/auth/passkey/options", None, &empty)).collect()).await;
    let ok = answers.iter().filter(|r| r.status() == 200).count();
    let throttled = answers.iter().filter(|r| r.status() == 429).count();
    assert_eq!((ok, throttled), (5, 7));
    assert_eq!(post_json(&app, "/auth/passkeys/options", Some(&fresh), &json!({})).await.status(), 429);
}

#[tokio::test]
async fn passkeys_are_off_with_an_ip_address_for_an_issuer_and_say_why() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let access = field(&app.login("alice").await, "access_token").to_owned();
    for (path, token) in [("/auth/passkey/options", None), ("/auth/passkeys/options", Some(access.as_str()))] {
        let response = post_json(&app, path, token, &json!({})).await;
        assert_eq!(response.status(), 404);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "passkeys_unavailable");
        assert!(field(&body, "error_description").contains("IP address"), "{body}");
    }
}

#[tokio::test]
async fn the_admin_api_lists_and_removes_passkeys() {
    let app = start!(&[LOCALHOST]);
    app.add_user("alice").await;
    let access = field(&app.login("alice").await, "access_token").to_owned();
    let mut key = authenticator(&app);
    let id = register(&app, &mut key, &access, "Laptop").await;
    let admin = app.admin_token().await;
    let listed: Value = app.http.get(app.url("/admin/users/usr_alice/factors")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["factors"][0]["kind"], "passkey", "{listed}");
    assert_eq!(listed["factors"][0]["id"], id.as_str());
    assert_eq!(listed["factors"][0]["name"], "Laptop");
    let removed = app.http.delete(app.url(&format!("/admin/users/usr_alice/factors/{id}"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(removed.status(), 204);
    assert_eq!(app.audit("passkey_removed").await[0].client_id.as_deref(), Some("lkc_admin"));
    assert_eq!(error_code(sign_in(&app, &mut key).await).await, (400, "invalid_grant".into()));
}
