// Included once per storage backend by tests/webhooks.rs; `BACKEND` names it.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::receiver::{Receiver, types};
use crate::common::{PASSWORD, TestApp, claims, error_code, field, join_all};
use latchkey_core::clock::{Clock, SystemClock};
use latchkey_core::outbox::EVENT_TYPES;
use latchkey_core::totp::{code_at, step_of};
use serde_json::{Value, json};

async fn call(app: &TestApp, admin: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = app.http.request(method, app.url(path)).bearer_auth(admin);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// Adds a webhook for `events` at `url`: its id and secret.
async fn add_webhook(app: &TestApp, admin: &str, url: &str, events: &[&str]) -> (String, String) {
    let response = call(app, admin, reqwest::Method::POST, "/admin/webhooks", Some(json!({"url": url, "events": events}))).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["url"], url);
    assert_eq!(body["events"], json!(events));
    (field(&body, "id").to_owned(), field(&body, "secret").to_owned())
}

async fn deliveries(app: &TestApp, admin: &str, id: &str, status: &str) -> Vec<Value> {
    let response = call(app, admin, reqwest::Method::GET, &format!("/admin/webhooks/{id}/deliveries?status={status}"), None).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["deliveries"].as_array().unwrap().clone()
}

/// Every event type of SPEC §14 that a change here makes reaches a webhook
/// that wants them all, each signed so that the Standard Webhooks reference
/// verifier accepts it, as `{"type","timestamp","data"}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_type_arrives_signed() {
    let app = start!(&[("LATCHKEY_THROTTLE_ACCOUNT", "3/15m")]);
    let admin = app.admin_token().await;
    let receiver = Receiver::start().await;
    let (hook, secret) = add_webhook(&app, &admin, &receiver.url("/hook"), EVENT_TYPES).await;
    assert!(secret.starts_with("whsec_"));
    let listed: Value = call(&app, &admin, reqwest::Method::GET, "/admin/webhooks", None).await.json().await.unwrap();
    assert_eq!(listed["webhooks"][0]["id"], hook.as_str());
    assert!(listed["webhooks"][0].get("secret").is_none(), "the secret is shown once");

    // user.created, and email.verification_requested for her address
    let created = call(&app, &admin, reqwest::Method::POST, "/admin/users", Some(json!({"username": "alice", "password": PASSWORD, "email": "alice@example.com"}))).await;
    assert_eq!(created.status(), 201);
    let alice = field(&created.json::<Value>().await.unwrap(), "id").to_owned();
    // password.reset_requested
    let forgot = app.http.post(app.url("/auth/password/forgot")).json(&json!({"email": "alice@example.com"})).send().await.unwrap();
    assert_eq!(forgot.status(), 202);
    // session.started, then a reuse: session.reuse_detected and session.ended
    let pair = app.login("alice").await;
    let first = field(&pair, "refresh_token").to_owned();
    assert_eq!(app.refresh(&first).await.status(), 200);
    assert_eq!(app.refresh(&first).await.status(), 400);
    // factor.added and factor.removed (an authenticator app)
    let access = field(&app.login("alice").await, "access_token").to_owned();
    let setup: Value = app.http.post(app.url("/auth/totp")).bearer_auth(&access).send().await.unwrap().json().await.unwrap();
    let totp = data_encoding::BASE32_NOPAD.decode(field(&setup, "secret").as_bytes()).unwrap();
    let confirmed: Value = app
        .http
        .post(app.url("/auth/totp/confirm"))
        .bearer_auth(&access)
        .json(&json!({"code": code_at(&totp, step_of(SystemClock.now()))}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let recovery = confirmed["recovery_codes"][0].as_str().unwrap().to_owned();
    let removed = app.http.delete(app.url("/auth/totp")).bearer_auth(&access).json(&json!({"code": recovery})).send().await.unwrap();
    assert_eq!(removed.status(), 204);
    // login.failed, then login.throttled
    for _ in 0..4 {
        app.post_form("/auth/login", &[("username", "alice"), ("password", "wrong")]).await;
    }
    // password.changed (and session.ended: password_changed), user.updated, user.deleted
    let user_path = format!("/admin/users/{alice}");
    let changed = call(&app, &admin, reqwest::Method::PATCH, &user_path, Some(json!({"password": "a new and long password"}))).await;
    assert_eq!(changed.status(), 200);
    let disabled = call(&app, &admin, reqwest::Method::PATCH, &user_path, Some(json!({"disabled": true}))).await;
    assert_eq!(disabled.status(), 200);
    assert_eq!(call(&app, &admin, reqwest::Method::DELETE, &user_path, None).await.status(), 204);

    let got = receiver
        .until(Duration::from_secs(30), |got| {
            let seen: BTreeSet<String> = types(got).into_iter().collect();
            EVENT_TYPES.iter().all(|t| seen.contains(*t))
        })
        .await;
    let verifier = standardwebhooks::Webhook::new(&secret).unwrap();
    for r in &got {
        assert_eq!(r.path, "/hook");
        assert_eq!(r.header("content-type"), "application/json");
        assert!(r.header("webhook-id").starts_with("msg_"));
        assert!(r.header("webhook-signature").starts_with("v1,"));
        verifier.verify(&r.body, &r.headers).unwrap_or_else(|e| panic!("{e:?}: {:?}", r.body));
        let body = r.json();
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'), "{body}");
        assert!(body["data"].is_object(), "{body}");
        if body["type"] != "login.throttled" && body["type"] != "login.failed" {
            assert_eq!(body["data"]["user_id"], alice.as_str(), "{body}");
        }
    }
    // A body changed on the way is refused by the same verifier.
    let mut tampered = got[0].body.to_vec();
    tampered.push(b' ');
    assert!(verifier.verify(&tampered, &got[0].headers).is_err());
    let reasons: BTreeSet<String> = got
        .iter()
        .map(|r| r.json())
        .filter(|b| b["type"] == "session.ended")
        .map(|b| b["data"]["reason"].as_str().unwrap().to_owned())
        .collect();
    // The new password ended the sessions left (SPEC §11), before the user
    // was disabled.
    assert!(reasons.contains("reuse_detected") && reasons.contains("password_changed"), "{reasons:?}");
    let started: Vec<Value> = got.iter().map(|r| r.json()).filter(|b| b["type"] == "session.started").collect();
    // Deliveries go out at once, so not in order: one of the two sessions
    // (the first) was a new device, the other the same browser again.
    let mut new_device: Vec<bool> = started.iter().map(|b| b["data"]["new_device"].as_bool().unwrap()).collect();
    new_device.sort_unstable();
    assert_eq!(new_device, [false, true]);
    // The deliveries view tells what went out.
    let delivered = deliveries(&app, &admin, &hook, "delivered").await;
    assert!(delivered.len() >= EVENT_TYPES.len(), "{delivered:?}");
    assert!(delivered.iter().all(|d| d["status"] == "delivered" && d["attempts"] == 1));
}

/// A receiver that answers 500 is retried with growing delays, shown as
/// `failed` meanwhile with what went wrong; once it recovers the event
/// arrives (the same `webhook-id` every time) and shows as `delivered`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_that_fails_then_recovers_gets_the_event() {
    let app = start!(&[]);
    let admin = app.admin_token().await;
    let receiver = Receiver::start().await;
    receiver.fail(true);
    let (hook, _) = add_webhook(&app, &admin, &receiver.url("/down"), &["user.created"]).await;
    app.add_user("bob").await;
    receiver.until(Duration::from_secs(20), |got| got.len() >= 2).await;
    let failed = deliveries(&app, &admin, &hook, "failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["last_error"], "HTTP 500");
    assert!(failed[0]["attempts"].as_u64().unwrap() >= 2);
    assert!(failed[0]["next_attempt_at"].as_i64().is_some(), "still to be retried");
    assert!(deliveries(&app, &admin, &hook, "delivered").await.is_empty());
    receiver.fail(false);
    let mut delivered = Vec::new();
    for _ in 0..300 {
        delivered = deliveries(&app, &admin, &hook, "delivered").await;
        if !delivered.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(delivered.len(), 1, "delivered after the receiver recovered");
    assert!(delivered[0]["next_attempt_at"].is_null());
    let got = receiver.received();
    let ids: BTreeSet<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 1, "every attempt is the same message");
    assert_eq!(types(&got).iter().filter(|t| *t == "user.created").count(), got.len());
}

/// The admin API refuses what is not a webhook, and the cap holds whatever
/// arrives at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_are_checked_and_capped() {
    let app = start!(&[]);
    let admin = app.admin_token().await;
    let post = |body: Value| call(&app, &admin, reqwest::Method::POST, "/admin/webhooks", Some(body));
    for bad in [
        json!({"url": "ftp://example.com/hook", "events": ["user.created"]}),
        json!({"url": "javascript:alert(1)", "events": ["user.created"]}),
        json!({"url": "https://user:pw@example.com/hook", "events": ["user.created"]}),
        json!({"url": "https://example.com/hook", "events": ["user.exploded"]}),
        json!({"url": "https://example.com/hook", "events": []}),
        json!({"url": "https://example.com/hook"}),
        json!({"url": "https://example.com/hook", "events": ["user.created"], "extra": 1}),
    ] {
        assert_eq!(error_code(post(bad.clone()).await).await, (400, "invalid_request".into()), "{bad}");
    }
    let anonymous = app.http.post(app.url("/admin/webhooks")).json(&json!({"url": "https://example.com/h", "events": ["user.created"]})).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let user_token = {
        app.add_user("carol").await;
        field(&app.login("carol").await, "access_token").to_owned()
    };
    assert_eq!(call(&app, &user_token, reqwest::Method::GET, "/admin/webhooks", None).await.status(), 403);
    let statuses = join_all(
        (0..120)
            .map(|i| post(json!({"url": format!("https://example.com/{i}"), "events": ["user.created"]})))
            .collect(),
    )
    .await;
    let created = statuses.iter().filter(|r| r.status() == 201).count();
    assert_eq!(created, 100);
    assert!(statuses.iter().all(|r| r.status() == 201 || r.status() == 409));
    let listed: Value = call(&app, &admin, reqwest::Method::GET, "/admin/webhooks", None).await.json().await.unwrap();
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 100);
    let id = listed["webhooks"][0]["id"].as_str().unwrap().to_owned();
    let bad_status = call(&app, &admin, reqwest::Method::GET, &format!("/admin/webhooks/{id}/deliveries?status=lost"), None).await;
    assert_eq!(error_code(bad_status).await, (400, "invalid_request".into()));
    assert_eq!(call(&app, &admin, reqwest::Method::DELETE, &format!("/admin/webhooks/{id}"), None).await.status(), 204);
    assert_eq!(call(&app, &admin, reqwest::Method::DELETE, &format!("/admin/webhooks/{id}"), None).await.status(), 404);
    let gone = call(&app, &admin, reqwest::Method::GET, &format!("/admin/webhooks/{id}/deliveries"), None).await;
    assert_eq!(gone.status(), 404);
}

/// A session with a client's tokens ends: the client's back-channel logout
/// URI gets a `logout_token` that verifies against the JWKS, with the
/// claims of Back-Channel Logout 1.0 and the ID token's `sid`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_hears_of_its_sessions_ending() {
    let app = start!(&[]);
    let admin = app.admin_token().await;
    let receiver = Receiver::start().await;
    let discovery: Value = app.http.get(app.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(discovery["backchannel_logout_supported"], true);
    assert_eq!(discovery["backchannel_logout_session_supported"], true);
    let rp = latchkey_core::store::Client {
        id: "lkc_rp".into(),
        name: "rp".into(),
        secret_hash: None,
        scope: "openid profile".into(),
        created_at: 0,
        redirect_uris: vec!["https://rp.example/cb".into()],
        first_party: false,
        disabled: false,
        tokens_valid_after: 0,
        backchannel_logout_uri: Some(receiver.url("/backchannel")),
    };
    latchkey_core::store::ClientStore::insert_client(app.state.store(), &rp).await.unwrap();
    let dave = app.add_user("dave").await;
    let issued = call(&app, &admin, reqwest::Method::POST, "/admin/sessions", Some(json!({"user_id": dave.id, "client_id": "lkc_rp"}))).await;
    assert_eq!(issued.status(), 200);
    let sid = claims(field(&issued.json::<Value>().await.unwrap(), "access_token"))["sid"].as_str().unwrap().to_owned();
    // A first-party session of the same user is not the client's business.
    app.login("dave").await;
    assert_eq!(call(&app, &admin, reqwest::Method::DELETE, &format!("/admin/sessions/{sid}"), None).await.status(), 204);
    let got = receiver.until(Duration::from_secs(20), |got| !got.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1, "one logout, for the client's session only");
    assert_eq!(got[0].header("content-type"), "application/x-www-form-urlencoded");
    let form: Vec<(String, String)> = form_urlencoded::parse(&got[0].body).into_owned().collect();
    assert_eq!(form.len(), 1);
    assert_eq!(form[0].0, "logout_token");
    let token = &form[0].1;
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    let jwks: jsonwebtoken::jwk::JwkSet = app.http.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).expect("the signing key is published");
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&["lkc_rp"]);
    validation.set_issuer(&[app.url("")]);
    validation.set_required_spec_claims(&["iss", "aud", "iat", "exp", "sub"]);
    let verified = jsonwebtoken::decode::<Value>(token, &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(), &validation).unwrap();
    let c = verified.claims;
    assert_eq!(c["sub"], dave.id.as_str());
    assert_eq!(c["sid"], sid.as_str());
    assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert!(c.get("nonce").is_none());
    assert_eq!(c["events"], json!({"http://schemas.openid.net/event/backchannel-logout": {}}));
}

/// A receiver that never answers is given up on after the 10-second
/// timeout (and tried again later), and holds no one else's deliveries
/// meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_that_hangs_times_out_and_delays_no_one_else() {
    let app = start!(&[]);
    let admin = app.admin_token().await;
    let receiver = Receiver::start().await;
    let (hanging, _) = add_webhook(&app, &admin, &receiver.url("/hang"), &["user.created"]).await;
    add_webhook(&app, &admin, &receiver.url("/ok"), &["user.created"]).await;
    let started = std::time::Instant::now();
    app.add_user("erin").await;
    receiver.until(Duration::from_secs(20), |got| got.iter().any(|r| r.path == "/hang")).await;
    // A later event for the other webhook goes out while that attempt hangs.
    app.add_user("frank").await;
    receiver.until(Duration::from_secs(20), |got| got.iter().filter(|r| r.path == "/ok").count() == 2).await;
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    let mut failed = Vec::new();
    for _ in 0..300 {
        failed = deliveries(&app, &admin, &hanging, "failed").await;
        if !failed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!failed.is_empty(), "given up after the timeout");
    assert!(failed.iter().all(|d| d["last_error"] == "timed out"), "{failed:?}");
    assert!(started.elapsed() >= Duration::from_secs(10));
    assert!(failed[0]["next_attempt_at"].as_i64().is_some(), "and tried again later");
}
