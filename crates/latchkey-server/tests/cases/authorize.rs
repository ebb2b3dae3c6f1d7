// Included once per storage backend by tests/authorize.rs; `BACKEND` names it.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::common::agent::{Agent, hidden_fields};
use crate::common::{PASSWORD, TestApp, claims, error_code, field, join_all};
use serde_json::Value;

const SPA: &str = "lkc_spa";
const CALLBACK: &str = "https://app.example/cb";

/// A PKCE pair: (verifier, S256 challenge).
fn pkce() -> (String, String) {
    use base64::Engine;
    let verifier = format!("verifier-{}-{}", std::process::id(), "x".repeat(40));
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    (verifier, base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest))
}

fn authorize_url(client: &str, redirect: &str, challenge: Option<&str>, extra: &[(&str, &str)]) -> String {
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", redirect),
        ("scope", "openid profile"),
        ("state", "st&te=1"),
        ("nonce", "n-0S6_WzA2Mj"),
    ];
    if let Some(challenge) = challenge {
        pairs.push(("code_challenge", challenge));
        pairs.push(("code_challenge_method", "S256"));
    }
    // An extra parameter replaces the one of its name.
    for (k, v) in extra {
        match pairs.iter_mut().find(|(name, _)| name == k) {
            Some(pair) => pair.1 = v,
            None => pairs.push((k, v)),
        }
    }
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        query.append_pair(k, v);
    }
    format!("/oauth/authorize?{}", query.finish())
}

/// The query parameters of a redirect's `Location`.
fn location(response: &reqwest::Response) -> (String, BTreeMap<String, String>) {
    assert_eq!(response.status(), 303, "not a redirect");
    let target = response.headers()["location"].to_str().unwrap();
    let (base, query) = target.split_once('?').unwrap();
    (base.to_owned(), form_urlencoded::parse(query.as_bytes()).into_owned().collect())
}

async fn setup(app: &TestApp) {
    app.add_user("alice").await;
    let client = latchkey_core::store::Client {
        id: SPA.into(),
        name: "Photo <Printer>".into(),
        secret_hash: None,
        scope: "openid profile".into(),
        created_at: 0,
        redirect_uris: vec![CALLBACK.into(), "http://127.0.0.1/callback".into()],
        first_party: false,
        disabled: false,
        tokens_valid_after: 0,
        backchannel_logout_uri: None,
    };
    app.state.store().insert_client(&client).await.unwrap();
}

/// Signs in through the login page and allows on the consent page; the
/// code.
async fn sign_in_and_allow(agent: &Agent<'_>, challenge: &str) -> String {
    let page = agent.get(&authorize_url(SPA, CALLBACK, Some(challenge), &[])).await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("Log in to continue to Photo &lt;Printer&gt;"), "{page}");
    let consent = agent.submit(&page, &[("username", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(consent.status(), 200);
    let consent = consent.text().await.unwrap();
    assert!(consent.contains("Allow Photo &lt;Printer&gt; to use your account?"), "{consent}");
    assert!(consent.contains("<li>openid</li>") && consent.contains("<li>profile</li>"));
    let done = agent.submit(&consent, &[("decision", "allow")]).await;
    let (target, query) = location(&done);
    assert_eq!(target, CALLBACK);
    assert_eq!(query["state"], "st&te=1");
    assert_eq!(query["iss"], agent.app.base);
    query["code"].clone()
}

async fn exchange(app: &TestApp, client: &str, code: &str, redirect: &str, verifier: &str) -> reqwest::Response {
    app.post_form(
        "/oauth/token",
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ],
    )
    .await
}

#[tokio::test]
async fn the_whole_flow_signs_in_asks_consent_and_issues_tokens_with_an_id_token() {
    let app = start!(&[]);
    setup(&app).await;
    let agent = Agent::new(&app);
    let (verifier, challenge) = pkce();
    let code = sign_in_and_allow(&agent, &challenge).await;
    assert!(code.starts_with("lk_ac_"));

    let response = exchange(&app, SPA, &code, CALLBACK, &verifier).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let tokens: Value = response.json().await.unwrap();
    let access = field(&tokens, "access_token");
    let at = claims(access);
    assert_eq!(at["client_id"], SPA);
    assert_eq!(at["scope"], "openid profile");
    let id = claims(field(&tokens, "id_token"));
    assert_eq!(id["aud"], SPA);
    assert_eq!(id["iss"], app.base);
    assert_eq!(id["sub"], "usr_alice");
    assert_eq!(id["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(id["sid"], at["sid"]);
    assert!(id["at_hash"].is_string() && id["auth_time"].is_i64());
    // An ID token is never an access token.
    assert_eq!(app.me(field(&tokens, "id_token")).await.status(), 401);

    // userinfo: sub and, with profile, the username.
    let info: Value = app.http.get(app.url("/oauth/userinfo")).bearer_auth(access).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["sub"], "usr_alice");
    assert_eq!(info["preferred_username"], "alice");

    // The session's refresh tokens rotate like every other's.
    let refreshed = app
        .post_form("/oauth/token", &[("grant_type", "refresh_token"), ("client_id", SPA), ("refresh_token", field(&tokens, "refresh_token"))])
        .await;
    assert_eq!(refreshed.status(), 200);

    // The browser's sign-in is a listed session of alice's; the next
    // authorization skips both pages (consent is remembered).
    assert!(agent.cookie("__Host-lk_signin").is_some());
    let sessions = app.state.store().live_sessions("usr_alice", app.state.now()).await.unwrap();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let again = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[])).await;
    let (_, query) = location(&again);
    assert_eq!(exchange(&app, SPA, &query["code"], CALLBACK, &verifier).await.status(), 200);
    // A loopback redirect may use any port.
    let loopback = "http://127.0.0.1:53124/callback";
    let native = agent.get(&authorize_url(SPA, loopback, Some(&challenge), &[])).await;
    let (target, query) = location(&native);
    assert_eq!(target, loopback);
    assert_eq!(exchange(&app, SPA, &query["code"], loopback, &verifier).await.status(), 200);
}

#[tokio::test]
async fn a_code_used_twice_revokes_what_it_issued() {
    let app = start!(&[]);
    setup(&app).await;
    let agent = Agent::new(&app);
    let (verifier, challenge) = pkce();
    let code = sign_in_and_allow(&agent, &challenge).await;
    let first: Value = exchange(&app, SPA, &code, CALLBACK, &verifier).await.json().await.unwrap();
    let second = exchange(&app, SPA, &code, CALLBACK, &verifier).await;
    assert_eq!(error_code(second).await, (400, "invalid_grant".into()));
    assert_eq!(app.me(field(&first, "access_token")).await.status(), 401);
    let refresh = app
        .post_form("/oauth/token", &[("grant_type", "refresh_token"), ("client_id", SPA), ("refresh_token", field(&first, "refresh_token"))])
        .await;
    assert_eq!(refresh.status(), 400);
    let told: Value = refresh.json().await.unwrap();
    assert_eq!(told["end_reason"], "code_replayed", "{told}");
    assert!(!app.audit("code_reused").await.is_empty());

    // Many redemptions at once: exactly one succeeds.
    let code = {
        let page = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[])).await;
        location(&page).1["code"].clone()
    };
    let attempts: Vec<_> = (0..10)
        .map(|_| {
            let (app, code, verifier) = (&app, code.clone(), verifier.clone());
            async move { exchange(app, SPA, &code, CALLBACK, &verifier).await.status().as_u16() }
        })
        .collect();
    let statuses = join_all(attempts).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
}


#[tokio::test]
async fn every_rule_refuses_what_breaks_it() {
    let clock = Arc::new(latchkey_core::clock::ManualClock::at_system_time());
    let app = start!(&[], clock.clone());
    setup(&app).await;
    app.add_client("lkc_other", "openid profile", false).await;
    let agent = Agent::new(&app);
    let (verifier, challenge) = pkce();

    // Unknown client, unregistered redirect: a page here, never a redirect.
    for url in [
        authorize_url("lkc_nobody", CALLBACK, Some(&challenge), &[]),
        authorize_url(SPA, "https://evil.example/cb", Some(&challenge), &[]),
        authorize_url(SPA, "https://app.example/cb/../evil", Some(&challenge), &[]),
        authorize_url(SPA, "http://localhost:5000/callback", Some(&challenge), &[]),
    ] {
        let response = agent.get(&url).await;
        assert_eq!(response.status(), 400, "{url}");
        assert!(response.headers().get("location").is_none());
    }
    // Missing or plain PKCE, another response type: back to the client.
    let missing = agent.get(&authorize_url(SPA, CALLBACK, None, &[])).await;
    assert_eq!(location(&missing).1["error"], "invalid_request");
    let plain = agent
        .get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[("code_challenge_method", "plain")]))
        .await;
    assert_eq!(location(&plain).1["error"], "invalid_request");
    let token = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[("response_type", "token")])).await;
    assert_eq!(location(&token).1["error"], "unsupported_response_type");
    let wide = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[("scope", "admin")])).await;
    assert_eq!(location(&wide).1["error"], "invalid_scope");
    let repeated = agent.get(&format!("{}&state=again", authorize_url(SPA, CALLBACK, Some(&challenge), &[]))).await;
    assert_eq!(repeated.status(), 400, "a repeated parameter is malformed");
    assert!(repeated.headers().get("location").is_none());

    // prompt=none without a sign-in.
    let silent = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[("prompt", "none")])).await;
    let (_, query) = location(&silent);
    assert_eq!(query["error"], "login_required");
    assert_eq!(query["state"], "st&te=1");

    // A form without its CSRF token, or from another origin, changes nothing.
    let page = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[])).await.text().await.unwrap();
    let mut forged: Vec<(String, String)> = hidden_fields(&page).into_iter().filter(|(k, _)| k != "csrf").collect();
    forged.push(("username".into(), "alice".into()));
    forged.push(("password".into(), PASSWORD.into()));
    assert_eq!(agent.post("/oauth/authorize", &forged).await.status(), 403);
    let cross = app
        .http
        .post(app.url("/oauth/authorize"))
        .header("cookie", agent.cookie_header())
        .header("origin", "https://evil.example")
        .form(&[hidden_fields(&page), vec![("username".into(), "alice".into()), ("password".into(), PASSWORD.into())]].concat())
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    assert!(agent.cookie("__Host-lk_signin").is_none());
    // A wrong password is said on the page.
    let wrong = agent.submit(&page, &[("username", "alice"), ("password", "nope nope nope")]).await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.unwrap().contains("Wrong username or password."));

    // Signed in, consent not given: prompt=none says so; deny goes back.
    let consent = agent.submit(&page, &[("username", "alice"), ("password", PASSWORD)]).await.text().await.unwrap();
    let silent = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[("prompt", "none")])).await;
    assert_eq!(location(&silent).1["error"], "consent_required");
    let denied = agent.submit(&consent, &[("decision", "deny")]).await;
    let (target, query) = location(&denied);
    assert_eq!(target, CALLBACK);
    assert_eq!(query["error"], "access_denied");
    assert_eq!(query["iss"], app.base);
    // prompt=login shows the form although signed in.
    let forced = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[("prompt", "login")])).await;
    assert_eq!(forced.status(), 200);
    assert!(forced.text().await.unwrap().contains("name=\"password\""));

    // The token request: wrong verifier, another client, another redirect
    // URI, an expired code. Each burns the code.
    let allow = |consent: String| {
        let agent = &agent;
        async move { location(&agent.submit(&consent, &[("decision", "allow")]).await).1["code"].clone() }
    };
    let code = allow(consent.clone()).await;
    let wrong = exchange(&app, SPA, &code, CALLBACK, &format!("{verifier}x")).await;
    assert_eq!(error_code(wrong).await, (400, "invalid_grant".into()));
    let code = location(&agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[])).await).1["code"].clone();
    let other = exchange(&app, "lkc_other", &code, CALLBACK, &verifier).await;
    assert_eq!(error_code(other).await, (400, "invalid_grant".into()));
    let code = location(&agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[])).await).1["code"].clone();
    let moved = exchange(&app, SPA, &code, "http://127.0.0.1:9/callback", &verifier).await;
    assert_eq!(error_code(moved).await, (400, "invalid_grant".into()));
    let code = location(&agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[])).await).1["code"].clone();
    clock.advance(61);
    let late = exchange(&app, SPA, &code, CALLBACK, &verifier).await;
    assert_eq!(error_code(late).await, (400, "invalid_grant".into()));
    let unknown = exchange(&app, SPA, "lk_ac_nothing", CALLBACK, &verifier).await;
    assert_eq!(error_code(unknown).await, (400, "invalid_grant".into()));
    let anonymous = app
        .post_form("/oauth/token", &[("grant_type", "authorization_code"), ("code", "x"), ("redirect_uri", CALLBACK), ("code_verifier", &verifier)])
        .await;
    assert_eq!(error_code(anonymous).await, (401, "invalid_client".into()));
}

#[tokio::test]
async fn a_first_party_client_skips_consent() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let client = latchkey_core::store::Client {
        id: "lkc_web".into(),
        name: "Our web app".into(),
        secret_hash: None,
        scope: "openid profile".into(),
        created_at: 0,
        redirect_uris: vec![CALLBACK.into()],
        first_party: true,
        disabled: false,
        tokens_valid_after: 0,
        backchannel_logout_uri: None,
    };
    app.state.store().insert_client(&client).await.unwrap();
    let agent = Agent::new(&app);
    let (verifier, challenge) = pkce();
    let page = agent.get(&authorize_url("lkc_web", CALLBACK, Some(&challenge), &[])).await.text().await.unwrap();
    let done = agent.submit(&page, &[("username", "alice"), ("password", PASSWORD)]).await;
    let (_, query) = location(&done);
    assert_eq!(exchange(&app, "lkc_web", &query["code"], CALLBACK, &verifier).await.status(), 200);
}

#[tokio::test]
async fn logout_from_the_application_ends_its_session_and_the_sign_in() {
    let app = start!(&[]);
    setup(&app).await;
    let agent = Agent::new(&app);
    let (verifier, challenge) = pkce();
    let code = sign_in_and_allow(&agent, &challenge).await;
    let tokens: Value = exchange(&app, SPA, &code, CALLBACK, &verifier).await.json().await.unwrap();
    let hint = field(&tokens, "id_token");
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("id_token_hint", hint);
    query.append_pair("post_logout_redirect_uri", "https://evil.example/");
    let refused = agent.get(&format!("/oauth/logout?{}", query.finish())).await;
    assert_eq!(refused.status(), 400);
    assert_eq!(app.me(field(&tokens, "access_token")).await.status(), 200);
    assert_eq!(agent.get("/oauth/logout").await.status(), 400);

    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("id_token_hint", hint);
    query.append_pair("post_logout_redirect_uri", CALLBACK);
    query.append_pair("state", "bye");
    let logout_url = format!("/oauth/logout?{}", query.finish());
    // A GET asks to confirm and changes nothing (an image on another site
    // cannot log anyone out).
    let page = agent.get(&logout_url).await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains(">Log out</button>"), "{page}");
    assert_eq!(app.me(field(&tokens, "access_token")).await.status(), 200);
    assert!(agent.cookie("__Host-lk_signin").is_some());
    // A form posted without the page's CSRF token does nothing either.
    let forged: Vec<(String, String)> = hidden_fields(&page).into_iter().filter(|(k, _)| k != "csrf").collect();
    assert_eq!(agent.post("/oauth/logout", &forged).await.status(), 403);
    assert_eq!(app.me(field(&tokens, "access_token")).await.status(), 200);

    let out = agent.post("/oauth/logout", &hidden_fields(&page)).await;
    let (target, back) = location(&out);
    assert_eq!(target, CALLBACK);
    assert_eq!(back["state"], "bye");
    assert_eq!(app.me(field(&tokens, "access_token")).await.status(), 401);
    assert!(agent.cookie("__Host-lk_signin").is_none());
    assert!(app.state.store().live_sessions("usr_alice", app.state.now()).await.unwrap().is_empty());
    let refresh = app
        .post_form("/oauth/token", &[("grant_type", "refresh_token"), ("client_id", SPA), ("refresh_token", field(&tokens, "refresh_token"))])
        .await;
    let told: Value = refresh.json().await.unwrap();
    assert_eq!(told["end_reason"], "backchannel", "an application's logout: {told}");
    // The next authorization asks to log in again.
    let next = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[("prompt", "none")])).await;
    assert_eq!(location(&next).1["error"], "login_required");

    // The hint's session is gone: the same request is refused, and does
    // nothing to a new sign-in of the same user.
    let login = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[])).await.text().await.unwrap();
    let done = agent.submit(&login, &[("username", "alice"), ("password", PASSWORD)]).await;
    assert!(location(&done).1.contains_key("code"), "consent was remembered");
    assert_eq!(agent.get(&logout_url).await.status(), 400);
    assert_eq!(agent.post("/oauth/logout", &hidden_fields(&page)).await.status(), 400);
    assert!(agent.cookie("__Host-lk_signin").is_some());
    let still = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[("prompt", "none")])).await;
    assert!(location(&still).1.contains_key("code"), "the new sign-in is untouched");
}

#[tokio::test]
async fn discovery_lists_the_flow_and_openid_connect() {
    let app = start!(&[]);
    for path in ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"] {
        let doc: Value = app.http.get(app.url(path)).send().await.unwrap().json().await.unwrap();
        assert_eq!(doc["issuer"], app.base);
        assert_eq!(doc["authorization_endpoint"], format!("{}/oauth/authorize", app.base));
        assert_eq!(doc["userinfo_endpoint"], format!("{}/oauth/userinfo", app.base));
        assert_eq!(doc["end_session_endpoint"], format!("{}/oauth/logout", app.base));
        assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(doc["code_challenge_methods_supported"], serde_json::json!(["S256"]));
        assert!(doc["grant_types_supported"].as_array().unwrap().contains(&"authorization_code".into()));
    }
    let oidc: Value = app.http.get(app.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(oidc["id_token_signing_alg_values_supported"], serde_json::json!(["EdDSA"]));
    assert_eq!(oidc["subject_types_supported"], serde_json::json!(["public"]));
}

#[tokio::test]
async fn stock_clients_run_the_flow_unmodified() {
    use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
    use openidconnect::{
        AccessTokenHash, AuthorizationCode, ClientId, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
        PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
    };
    let app = start!(&[]);
    setup(&app).await;
    let http = openidconnect::reqwest::Client::builder()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(app.base.clone()).unwrap(), &http)
        .await
        .unwrap();
    let client = CoreClient::from_provider_metadata(metadata, ClientId::new(SPA.into()), None)
        .set_redirect_uri(RedirectUrl::new(CALLBACK.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let agent = Agent::new(&app);
    let page = agent.get(url.as_str()).await.text().await.unwrap();
    let consent = agent.submit(&page, &[("username", "alice"), ("password", PASSWORD)]).await.text().await.unwrap();
    let (_, query) = location(&agent.submit(&consent, &[("decision", "allow")]).await);
    assert_eq!(&query["state"], csrf.secret());
    let answer = client
        .exchange_code(AuthorizationCode::new(query["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let id_token = answer.id_token().unwrap();
    let verifier = client.id_token_verifier();
    let id = id_token.claims(&verifier, &nonce).unwrap();
    assert_eq!(id.subject().as_str(), "usr_alice");
    let expected = AccessTokenHash::from_token(
        answer.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(id.access_token_hash(), Some(&expected));
    assert!(answer.refresh_token().is_some());

    // The plain OAuth client, with PKCE, against the same server.
    use oauth2::basic::BasicClient;
    use oauth2::{AuthUrl, TokenUrl};
    let plain = BasicClient::new(oauth2::ClientId::new(SPA.into()))
        .set_auth_uri(AuthUrl::new(format!("{}/oauth/authorize", app.base)).unwrap())
        .set_token_uri(TokenUrl::new(format!("{}/oauth/token", app.base)).unwrap())
        .set_redirect_uri(oauth2::RedirectUrl::new(CALLBACK.into()).unwrap());
    let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    let (url, _) = plain
        .authorize_url(oauth2::CsrfToken::new_random)
        .add_scope(oauth2::Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let (_, query) = location(&agent.get(url.as_str()).await);
    let answer = plain
        .exchange_code(oauth2::AuthorizationCode::new(query["code"].clone()))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(claims(answer.access_token().secret())["scope"], "profile");
}

/// Sets up and confirms an authenticator app for alice through the API;
/// its secret.
async fn enrol_app(app: &TestApp) -> Vec<u8> {
    use latchkey_core::totp::{code_at, step_of};
    let access = field(&app.login("alice").await, "access_token").to_owned();
    let setup: Value = app.http.post(app.url("/auth/totp")).bearer_auth(&access).send().await.unwrap().json().await.unwrap();
    let secret = data_encoding::BASE32_NOPAD.decode(field(&setup, "secret").as_bytes()).unwrap();
    let code = code_at(&secret, step_of(app.state.now()));
    let confirmed = app
        .http
        .post(app.url("/auth/totp/confirm"))
        .bearer_auth(&access)
        .json(&serde_json::json!({ "code": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    secret
}

/// The ID token a code redeems for.
async fn id_claims(app: &TestApp, code: &str, verifier: &str) -> Value {
    let tokens: Value = exchange(app, SPA, code, CALLBACK, verifier).await.json().await.unwrap();
    claims(field(&tokens, "id_token"))
}

#[tokio::test]
async fn the_login_page_asks_for_the_one_time_code_after_the_password() {
    use latchkey_core::clock::{Clock, ManualClock};
    use latchkey_core::totp::{code_at, step_of};
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(&[], clock.clone());
    setup(&app).await;
    let secret = enrol_app(&app).await;
    let agent = Agent::new(&app);
    let (verifier, challenge) = pkce();
    let page = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[])).await.text().await.unwrap();
    // A wrong password is answered as before, with nothing of the factor.
    let wrong = agent.submit(&page, &[("username", "alice"), ("password", "not it")]).await;
    assert_eq!(wrong.status(), 401);
    assert!(!wrong.text().await.unwrap().contains("One-time code"));
    let step = agent.submit(&page, &[("username", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(step.status(), 200);
    let step = step.text().await.unwrap();
    assert!(step.contains(r#"<label for="otp">One-time code</label>"#), "{step}");
    assert!(step.contains(">Verify</button>") && step.contains(">Use a recovery code</button>"));
    assert!(agent.cookie("__Host-lk_signin").is_none(), "not signed in before the code");
    let retry = agent.submit(&step, &[("otp", "000000")]).await;
    assert_eq!(retry.status(), 401);
    let retry = retry.text().await.unwrap();
    assert!(retry.contains("not right"), "{retry}");
    // The switch to a recovery code keeps the sign-in.
    let recovery = agent.submit(&retry, &[("use", "recovery")]).await.text().await.unwrap();
    assert!(recovery.contains(r#"<label for="recovery_code">Recovery code</label>"#), "{recovery}");
    let back = agent.submit(&recovery, &[("use", "otp")]).await.text().await.unwrap();
    clock.advance(30);
    let code = code_at(&secret, step_of(clock.now()));
    let consent = agent.submit(&back, &[("otp", &code)]).await.text().await.unwrap();
    assert!(consent.contains("Allow Photo"), "{consent}");
    let (_, query) = location(&agent.submit(&consent, &[("decision", "allow")]).await);
    let id = id_claims(&app, &query["code"], &verifier).await;
    assert_eq!((id["amr"].clone(), id["acr"].clone()), (serde_json::json!(["pwd", "otp", "mfa"]), "mfa".into()));
}

#[tokio::test]
async fn acr_values_and_max_age_ask_for_what_is_missing_before_a_code() {
    use latchkey_core::clock::{Clock, ManualClock};
    use latchkey_core::totp::{code_at, step_of};
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(&[], clock.clone());
    setup(&app).await;
    let agent = Agent::new(&app);
    let (verifier, challenge) = pkce();
    // Signed in with a password alone, consent given.
    let code = sign_in_and_allow(&agent, &challenge).await;
    assert_eq!(id_claims(&app, &code, &verifier).await["acr"], "pwd");

    // No factor can reach mfa yet: the client hears so, and with prompt=none
    // it hears that interaction is needed.
    let unmet = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[("acr_values", "mfa")])).await;
    assert_eq!(location(&unmet).1["error"], "unmet_authentication_requirements");
    let silent = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[("acr_values", "mfa"), ("prompt", "none")])).await;
    assert_eq!(location(&silent).1["error"], "interaction_required");
    // A level it already has, or one nobody knows, asks nothing.
    let known = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[("acr_values", "pwd")])).await;
    assert!(location(&known).1.contains_key("code"));
    let unknown = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[("acr_values", "urn:x:gold")])).await;
    assert!(location(&unknown).1.contains_key("code"));

    // With an app, the page steps the sign-in up to it.
    let secret = enrol_app(&app).await;
    let step = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[("acr_values", "mfa phr")])).await;
    assert_eq!(step.status(), 200);
    let step = step.text().await.unwrap();
    assert!(step.contains("One-time code") && step.contains("asks you to confirm"), "{step}");
    let old_cookie = agent.cookie("__Host-lk_signin").unwrap();
    clock.advance(30);
    let done = agent.submit(&step, &[("otp", &code_at(&secret, step_of(clock.now())))]).await;
    let (_, query) = location(&done);
    let id = id_claims(&app, &query["code"], &verifier).await;
    assert_eq!(id["acr"], "mfa");
    assert_ne!(agent.cookie("__Host-lk_signin").unwrap(), old_cookie, "the sign-in was replaced");
    // The stronger sign-in is kept: the next request asks nothing.
    let again = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[("acr_values", "mfa")])).await;
    assert_eq!(id_claims(&app, &location(&again).1["code"], &verifier).await["acr"], "mfa");
    let signed_in_at = clock.now();

    // Older than max_age: the sign-in again, the password then the code.
    clock.advance(120);
    let fresh = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[("max_age", "60")])).await;
    assert_eq!(fresh.status(), 200);
    let fresh = fresh.text().await.unwrap();
    assert!(fresh.contains("Sign in again to continue."), "{fresh}");
    let silent = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[("max_age", "60"), ("prompt", "none")])).await;
    assert_eq!(location(&silent).1["error"], "login_required");
    let step = agent.submit(&fresh, &[("username", "alice"), ("password", PASSWORD)]).await.text().await.unwrap();
    clock.advance(30);
    let done = agent.submit(&step, &[("otp", &code_at(&secret, step_of(clock.now())))]).await;
    let id = id_claims(&app, &location(&done).1["code"], &verifier).await;
    assert!(id["auth_time"].as_i64().unwrap() > signed_in_at);
    let young = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[("max_age", "60")])).await;
    assert!(location(&young).1.contains_key("code"));
    let malformed = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[("max_age", "-1")])).await;
    assert_eq!(location(&malformed).1["error"], "invalid_request");
    // Discovery names the levels it honours.
    let discovery: Value = app.http.get(app.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(discovery["acr_values_supported"], serde_json::json!(["pwd", "mfa", "phr"]));
}

#[tokio::test]
async fn a_passkey_signs_in_on_the_login_page_and_steps_a_password_up() {
    use crate::common::authenticator::Authenticator;
    let app = start!(&[("LATCHKEY_ISSUER", "http://localhost:{port}")]);
    setup(&app).await;
    let access = field(&app.login("alice").await, "access_token").to_owned();
    let mut key = Authenticator::new(&app.state.config().issuer);
    let creation: Value = app.http.post(app.url("/auth/passkeys/options")).bearer_auth(&access).send().await.unwrap().json().await.unwrap();
    let credential = key.create(&creation);
    let added = app
        .http
        .post(app.url("/auth/passkeys"))
        .bearer_auth(&access)
        .json(&serde_json::json!({"name": "Laptop", "credential": credential}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    let options = || async {
        app.http.post(app.url("/auth/passkey/options")).send().await.unwrap().json::<Value>().await.unwrap()
    };

    // The login page offers the passkey; its answer signs alice in at phr.
    let agent = Agent::new(&app);
    let (verifier, challenge) = pkce();
    let page = agent.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[])).await;
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{csp}");
    let page = page.text().await.unwrap();
    assert!(page.contains(">Sign in with a passkey</button>") && page.contains("/assets/passkey.js"), "{page}");
    let consent = agent.submit_passkey(&page, &key.get(&options().await)).await.text().await.unwrap();
    assert!(consent.contains("Allow Photo"), "{consent}");
    let (_, query) = location(&agent.submit(&consent, &[("decision", "allow")]).await);
    let id = id_claims(&app, &query["code"], &verifier).await;
    assert_eq!((id["amr"].clone(), id["acr"].clone()), (serde_json::json!(["hwk", "user", "mfa"]), "phr".into()));
    // A replayed answer signs no one in.
    let page = Agent::new(&app).get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[])).await.text().await.unwrap();
    let other = Agent::new(&app);
    let stale = key.get(&options().await);
    let page2 = other.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[])).await.text().await.unwrap();
    assert_eq!(other.submit_passkey(&page2, &stale).await.status(), 303, "consent is remembered");
    let replay = Agent::new(&app);
    let page3 = replay.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[])).await.text().await.unwrap();
    let refused = replay.submit_passkey(&page3, &stale).await;
    assert_eq!(refused.status(), 401);
    assert!(refused.text().await.unwrap().contains("not accepted"));
    drop(page);

    // Signed in with a password, a request for phr steps up to the passkey.
    let browser = Agent::new(&app);
    let login = browser.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[])).await.text().await.unwrap();
    browser.submit(&login, &[("username", "alice"), ("password", PASSWORD)]).await;
    let step = browser.get(&authorize_url(SPA, CALLBACK, Some(&challenge), &[("acr_values", "phr")])).await;
    assert_eq!(step.status(), 200);
    let step = step.text().await.unwrap();
    assert!(step.contains("confirm with a passkey") && step.contains(">Sign in with a passkey</button>"), "{step}");
    let done = browser.submit_passkey(&step, &key.get(&options().await)).await;
    let id = id_claims(&app, &location(&done).1["code"], &verifier).await;
    assert_eq!(id["acr"], "phr");
}
