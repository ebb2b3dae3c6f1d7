// Included once per storage backend by tests/tokens.rs; `BACKEND` names it.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crate::common::{PASSWORD, error_code, field};
use latchkey_core::jwt::{AccessClaims, sign};
use serde_json::{Value, json};

fn decode_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn discovery_lists_the_endpoints() {
    let app = start!(&[("LATCHKEY_ISSUER", "https://auth.example.test/")]);
    let doc: Value = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], "https://auth.example.test");
    assert_eq!(
        doc["token_endpoint"],
        "https://auth.example.test/oauth/token"
    );
    assert_eq!(
        doc["revocation_endpoint"],
        "https://auth.example.test/oauth/revoke"
    );
    assert_eq!(
        doc["introspection_endpoint"],
        "https://auth.example.test/oauth/introspect"
    );
    assert_eq!(
        doc["jwks_uri"],
        "https://auth.example.test/.well-known/jwks.json"
    );
    assert_eq!(
        doc["grant_types_supported"],
        json!([
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:device_code"
        ])
    );
    assert_eq!(
        doc["device_authorization_endpoint"],
        "https://auth.example.test/oauth/device_authorization"
    );
    assert!(
        doc["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("client_secret_basic"))
    );

    let jwks: Value = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert!(key.get("d").is_none(), "private key published");
}

#[tokio::test]
async fn login_gives_a_token_pair_in_the_rfc9068_profile() {
    let app = start!(&[
        ("LATCHKEY_AUDIENCE", "api.test"),
        ("LATCHKEY_SCOPES", "profile email"),
    ]);
    let alice = app.add_user("alice").await;
    let response = app
        .post_form(
            "/auth/login",
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("scope", "profile email"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    assert_eq!(body["scope"], "email profile");
    assert!(field(&body, "refresh_token").starts_with("lk_rt_"));

    let access = field(&body, "access_token");
    let header = decode_part(access, 0);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], app.state.issuer.keyring().signing(latchkey_server::state::now()).kid());
    let claims = decode_part(access, 1);
    for name in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "jti",
        "client_id",
        "scope",
        "sid",
        "auth_time",
    ] {
        assert!(claims.get(name).is_some(), "claim {name} missing");
    }
    assert_eq!(claims["sub"], alice.id.as_str());
    assert_eq!(claims["aud"], "api.test");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );

    let me: Value = app.me(access).await.json().await.unwrap();
    assert_eq!(me["sub"], alice.id.as_str());
    assert_eq!(me["username"], "alice");
    assert_eq!(me["scope"], "email profile");
    assert_eq!(me["sid"], claims["sid"]);

    // JSON works as well as a form.
    let response = app
        .http
        .post(app.url("/auth/login"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn es256_and_rs256_are_selectable() {
    for alg in ["ES256", "RS256"] {
        let app = start!(&[("LATCHKEY_SIGNING_ALG", alg)]);
        app.add_user("alice").await;
        let body = app.login("alice").await;
        let access = field(&body, "access_token");
        assert_eq!(decode_part(access, 0)["alg"], alg);
        assert_eq!(app.me(access).await.status(), 200, "{alg}");
    }
}

#[tokio::test]
async fn unknown_user_and_wrong_password_get_the_same_answer() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let wrong = app
        .post_form(
            "/auth/login",
            &[("username", "alice"), ("password", "not the password")],
        )
        .await;
    let unknown = app
        .post_form(
            "/auth/login",
            &[("username", "mallory"), ("password", "not the password")],
        )
        .await;
    assert_eq!(wrong.status(), unknown.status());
    assert_eq!(wrong.status(), 400);
    let wrong: Value = wrong.json().await.unwrap();
    let unknown: Value = unknown.json().await.unwrap();
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["error"], "invalid_grant");
}

#[tokio::test]
async fn rotation_issues_a_new_pair_and_the_old_token_dies() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let first = app.login("alice").await;
    let response = app.refresh(field(&first, "refresh_token")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let second: Value = response.json().await.unwrap();
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_ne!(second["access_token"], first["access_token"]);
    let claims = decode_part(field(&second, "access_token"), 1);
    assert_eq!(
        claims["sid"],
        decode_part(field(&first, "access_token"), 1)["sid"]
    );
    let third = app.refresh(field(&second, "refresh_token")).await;
    assert_eq!(third.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_refreshes_give_exactly_one_success() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let pair = app.login("alice").await;
    let token = field(&pair, "refresh_token").to_owned();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let http = app.http.clone();
        let url = app.url("/oauth/token");
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let response = http
                .post(url)
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                ])
                .send()
                .await
                .unwrap();
            error_code_or_ok(response).await
        }));
    }
    let mut successes = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => successes += 1,
            Err((status, code)) => {
                assert_eq!(status, 400);
                assert_eq!(code, "invalid_grant");
            }
        }
    }
    assert_eq!(successes, 1);
}

async fn error_code_or_ok(response: reqwest::Response) -> Result<(), (u16, String)> {
    if response.status() == 200 {
        Ok(())
    } else {
        Err(error_code(response).await)
    }
}

#[tokio::test]
async fn reuse_after_rotation_revokes_the_session_and_its_access_tokens() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let first = app.login("alice").await;
    let second: Value = app
        .refresh(field(&first, "refresh_token"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(app.me(field(&second, "access_token")).await.status(), 200);

    // The thief (or the victim) replays the rotated token.
    let (status, code) = error_code(app.refresh(field(&first, "refresh_token")).await).await;
    assert_eq!((status, code.as_str()), (400, "invalid_grant"));

    // The successor is dead too, and so are the session's access tokens.
    let (status, code) = error_code(app.refresh(field(&second, "refresh_token")).await).await;
    assert_eq!((status, code.as_str()), (400, "invalid_grant"));
    let me = app.me(field(&second, "access_token")).await;
    assert_eq!(me.status(), 401);
    assert!(
        me.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
}

#[tokio::test]
async fn within_the_grace_window_the_same_successor_comes_back() {
    let app = start!(&[("LATCHKEY_REUSE_GRACE", "30s")]);
    app.add_user("alice").await;
    let first = app.login("alice").await;
    let a: Value = app
        .refresh(field(&first, "refresh_token"))
        .await
        .json()
        .await
        .unwrap();
    let b: Value = app
        .refresh(field(&first, "refresh_token"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(a["refresh_token"], b["refresh_token"]);
    assert_ne!(a["access_token"], b["access_token"]);
    assert_eq!(app.me(field(&b, "access_token")).await.status(), 200);
    assert_eq!(app.me(field(&a, "access_token")).await.status(), 200);
    // The session lives on: the successor rotates normally.
    assert_eq!(app.refresh(field(&a, "refresh_token")).await.status(), 200);
}

#[tokio::test]
async fn own_refresh_token_with_another_users_access_token_yields_nothing() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let bob = app.add_user("bob").await;
    let alice_pair = app.login("alice").await;
    let bob_pair = app.login("bob").await;
    // Bob's access token, long expired, re-signed with the server's key.
    let mut claims: AccessClaims =
        serde_json::from_value(decode_part(field(&bob_pair, "access_token"), 1)).unwrap();
    claims.iat -= 7200;
    claims.exp -= 7200;
    let expired_bob = sign(app.state.issuer.keyring().signing(latchkey_server::state::now()), &claims).unwrap();
    assert_eq!(app.me(&expired_bob).await.status(), 401);

    let response = app
        .http
        .post(app.url("/oauth/token"))
        .bearer_auth(&expired_bob)
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", field(&alice_pair, "refresh_token")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert!(body.get("access_token").is_none());
    assert_ne!(claims.sub, "");
    assert_eq!(claims.sub, bob.id);

    // Alice's own pair, sent together, still works: nothing was consumed.
    let response = app
        .http
        .post(app.url("/oauth/token"))
        .bearer_auth(field(&alice_pair, "access_token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", field(&alice_pair, "refresh_token")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_ne!(
        decode_part(field(&body, "access_token"), 1)["sub"],
        bob.id.as_str()
    );
}

#[tokio::test]
async fn forged_and_invalid_access_tokens_get_401_with_a_challenge() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let pair = app.login("alice").await;
    let good = field(&pair, "access_token");
    let [h, c, s]: [&str; 3] = good.split('.').collect::<Vec<_>>().try_into().unwrap();
    let header = decode_part(good, 0);
    let claims = decode_part(good, 1);
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());

    let mut none_header = header.clone();
    none_header["alg"] = json!("none");
    let alg_none = format!("{}.{c}.", enc(&none_header));

    // HS256 keyed with the bytes of the published public key.
    let jwks: Value = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let public = jwks["keys"][0]["x"].as_str().unwrap().to_owned();
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.typ = Some("at+jwt".into());
    hs_header.kid = header["kid"].as_str().map(str::to_owned);
    let hs256 = jsonwebtoken::encode(
        &hs_header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();

    let mut evil = claims.clone();
    evil["sub"] = json!("usr_admin");
    let tampered = format!("{h}.{}.{s}", enc(&evil));

    let signing = app.state.issuer.keyring().signing(latchkey_server::state::now()).clone();
    let mut typed: AccessClaims = serde_json::from_value(claims.clone()).unwrap();
    typed.iat -= 7200;
    typed.exp -= 7200;
    let expired = sign(&signing, &typed).unwrap();

    let mut unknown_header = header.clone();
    unknown_header["kid"] = json!("no-such-key");
    let unknown_kid = format!("{}.{c}.{s}", enc(&unknown_header));

    let mut wrong: AccessClaims = serde_json::from_value(claims.clone()).unwrap();
    wrong.aud = "another-api".into();
    let wrong_aud = sign(&signing, &wrong).unwrap();

    let refresh = field(&pair, "refresh_token").to_owned();
    for (name, token) in [
        ("alg none", alg_none),
        ("HS256 with the public key", hs256),
        ("tampered payload", tampered),
        ("expired", expired),
        ("unknown kid", unknown_kid),
        ("wrong aud", wrong_aud),
        ("a refresh token", refresh),
        ("garbage", "not-a-token".to_owned()),
    ] {
        let response = app.me(&token).await;
        assert_eq!(response.status(), 401, "{name}");
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.starts_with("Bearer"), "{name}: {challenge}");
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{name}: {challenge}"
        );
    }
    // No credentials: a challenge without an error code.
    let response = app.http.get(app.url("/api/me")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"latchkey\""
    );
    // A token in the query string is never accepted.
    let response = app
        .http
        .get(app.url(&format!("/api/me?access_token={good}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn the_database_never_holds_a_plaintext_token_or_password() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let (client_id, secret) = app.add_client("lkc_svc", "read", true).await;
    let first = app.login("alice").await;
    let second: Value = app
        .refresh(field(&first, "refresh_token"))
        .await
        .json()
        .await
        .unwrap();
    let mut secrets: Vec<String> = vec![
        PASSWORD.to_owned(),
        field(&first, "refresh_token").to_owned(),
        field(&second, "refresh_token").to_owned(),
        secret.unwrap(),
    ];
    // The random part alone must not appear either.
    secrets.extend(
        secrets
            .clone()
            .iter()
            .filter_map(|s| s.strip_prefix("lk_rt_").map(str::to_owned)),
    );
    let _ = client_id;
    let stored = app.stored_data().await;
    assert!(stored.len() > 1000, "nothing was read");
    for secret in &secrets {
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        for needle in [secret.as_bytes(), hex.as_bytes()] {
            assert!(!stored.windows(needle.len()).any(|w| w == needle), "the database holds a secret");
        }
    }
}

#[tokio::test]
async fn revocation_follows_rfc7009() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let (client, secret) = app.add_client("lkc_app", "", true).await;
    let secret = secret.unwrap();

    // Revoking a refresh token kills its session, access tokens included.
    let pair = app.login("alice").await;
    let response = app
        .post_form("/oauth/revoke", &[("token", field(&pair, "refresh_token"))])
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.me(field(&pair, "access_token")).await.status(), 401);
    assert_eq!(
        app.refresh(field(&pair, "refresh_token")).await.status(),
        400
    );

    // Unknown tokens: still 200.
    let response = app
        .post_form("/oauth/revoke", &[("token", "lk_rt_unknown")])
        .await;
    assert_eq!(response.status(), 200);
    let response = app
        .post_form("/oauth/revoke", &[("token", "garbage")])
        .await;
    assert_eq!(response.status(), 200);
    // Missing token: a malformed request.
    let (status, code) = error_code(app.post_form("/oauth/revoke", &[]).await).await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"));

    // Revoking with an access token works too.
    let pair = app.login("alice").await;
    let response = app
        .post_form("/oauth/revoke", &[("token", field(&pair, "access_token"))])
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.me(field(&pair, "access_token")).await.status(), 401);

    // Another client's token is left alone, with 200 all the same.
    let response = app
        .http
        .post(app.url("/auth/login"))
        .basic_auth(&client, Some(&secret))
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let client_pair: Value = response.json().await.unwrap();
    let response = app
        .post_form(
            "/oauth/revoke",
            &[("token", field(&client_pair, "refresh_token"))],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.me(field(&client_pair, "access_token")).await.status(),
        200
    );
    // Its own client may revoke it.
    let response = app
        .http
        .post(app.url("/oauth/revoke"))
        .basic_auth(&client, Some(&secret))
        .form(&[("token", field(&client_pair, "refresh_token"))])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.me(field(&client_pair, "access_token")).await.status(),
        401
    );
}

#[tokio::test]
async fn introspection_needs_a_client_and_reflects_revocation_at_once() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let (rs, secret) = app.add_client("lkc_rs", "", true).await;
    let secret = secret.unwrap();
    let pair = app.login("alice").await;
    let access = field(&pair, "access_token");

    let response = app
        .post_form("/oauth/introspect", &[("token", access)])
        .await;
    assert_eq!(response.status(), 401);
    assert_eq!(error_code(response).await.1, "invalid_client");

    let introspect = |token: String| {
        let request = app
            .http
            .post(app.url("/oauth/introspect"))
            .basic_auth(&rs, Some(&secret))
            .form(&[("token", token)]);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let active = introspect(access.to_owned()).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["username"], "alice");
    assert_eq!(active["scope"], "profile");
    let active = introspect(field(&pair, "refresh_token").to_owned()).await;
    assert_eq!(active["active"], true);

    assert_eq!(
        introspect("nonsense".into()).await,
        json!({"active": false})
    );
    assert_eq!(
        introspect("lk_rt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()).await,
        json!({"active": false})
    );

    app.post_form("/oauth/revoke", &[("token", field(&pair, "refresh_token"))])
        .await;
    assert_eq!(
        introspect(access.to_owned()).await,
        json!({"active": false})
    );
    assert_eq!(
        introspect(field(&pair, "refresh_token").to_owned()).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn client_credentials_with_basic_auth() {
    let app = start!(&[]);
    let (id, secret) = app.add_client("lkc_svc", "read write", true).await;
    let secret = secret.unwrap();
    let grant = |user: &str, pass: &str, scope: &str| {
        app.http
            .post(app.url("/oauth/token"))
            .basic_auth(user, Some(pass))
            .form(&[("grant_type", "client_credentials"), ("scope", scope)])
    };
    let response = grant(&id, &secret, "read").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body.get("refresh_token").is_none());
    assert_eq!(body["scope"], "read");
    let me: Value = app
        .me(field(&body, "access_token"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["sub"], id.as_str());
    assert_eq!(me["client_id"], id.as_str());

    let response = grant(&id, "lk_cs_wrong", "read").send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    assert_eq!(error_code(response).await.1, "invalid_client");
    let (status, code) = error_code(grant(&id, &secret, "admin").send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "invalid_scope"));
    let (status, code) = error_code(
        app.post_form("/oauth/token", &[("grant_type", "client_credentials")])
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (401, "invalid_client"));
}

#[tokio::test]
async fn the_password_grant_is_off_unless_enabled() {
    let off = start!(&[]);
    off.add_user("alice").await;
    let form = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", PASSWORD),
    ];
    let (status, code) = error_code(off.post_form("/oauth/token", &form).await).await;
    assert_eq!((status, code.as_str()), (400, "unsupported_grant_type"));

    let on = start!(&[("LATCHKEY_PASSWORD_GRANT", "true")]);
    on.add_user("alice").await;
    let response = on.post_form("/oauth/token", &form).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(field(&body, "refresh_token").starts_with("lk_rt_"));
    let doc: Value = on
        .http
        .get(on.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("password"))
    );
}

#[tokio::test]
async fn bad_token_requests_get_rfc6749_errors_and_change_nothing() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let pair = app.login("alice").await;
    let rt = field(&pair, "refresh_token");
    type Form<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(Form, u16, &str)> = vec![
        (vec![], 400, "invalid_request"),
        (
            vec![("grant_type", "implicit")],
            400,
            "unsupported_grant_type",
        ),
        (
            vec![("grant_type", "authorization_code")],
            401,
            "invalid_client",
        ),
        (
            vec![("grant_type", "refresh_token")],
            400,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", "lk_rt_nope"),
            ],
            400,
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", rt),
                ("scope", "profile admin"),
            ],
            400,
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", rt),
                ("client_id", "lkc_nobody"),
            ],
            401,
            "invalid_client",
        ),
    ];
    for (form, status, code) in cases {
        let got = error_code(app.post_form("/oauth/token", &form).await).await;
        assert_eq!(got, (status, code.to_owned()), "{form:?}");
    }
    let response = app
        .http
        .post(app.url("/oauth/token"))
        .json(&json!({"grant_type": "refresh_token", "refresh_token": rt}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response).await,
        (400, "invalid_request".to_owned())
    );
    let duplicated = app
        .http
        .post(app.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=refresh_token&refresh_token={rt}&refresh_token={rt}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(duplicated).await,
        (400, "invalid_request".to_owned())
    );
    // None of that used the token up.
    assert_eq!(app.refresh(rt).await.status(), 200);

    let huge = "x".repeat(64 * 1024);
    let response = app
        .post_form(
            "/oauth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", &huge)],
        )
        .await;
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn a_token_issued_to_a_client_needs_that_client_on_refresh() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let (public, _) = app.add_client("lkc_cli", "", false).await;
    let response = app
        .post_form(
            "/auth/login",
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("client_id", &public),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let pair: Value = response.json().await.unwrap();
    assert_eq!(
        decode_part(field(&pair, "access_token"), 1)["client_id"],
        public.as_str()
    );
    let rt = field(&pair, "refresh_token");
    assert_eq!(
        error_code(app.refresh(rt).await).await,
        (400, "invalid_grant".to_owned())
    );
    let response = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt),
                ("client_id", &public),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn logout_and_disabling_revoke_sessions_at_once() {
    let app = start!(&[]);
    let alice = app.add_user("alice").await;
    let pair = app.login("alice").await;
    let response = app
        .http
        .post(app.url("/auth/logout"))
        .bearer_auth(field(&pair, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(app.me(field(&pair, "access_token")).await.status(), 401);
    assert_eq!(
        app.refresh(field(&pair, "refresh_token")).await.status(),
        400
    );

    let pair = app.login("alice").await;
    app.state
        .store()
        .set_disabled(&alice.id, true, 0)
        .await
        .unwrap();
    assert_eq!(app.me(field(&pair, "access_token")).await.status(), 401);
    assert_eq!(
        app.refresh(field(&pair, "refresh_token")).await.status(),
        400
    );
    let response = app
        .post_form(
            "/auth/login",
            &[("username", "alice"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(
        error_code(response).await,
        (400, "invalid_grant".to_owned())
    );
}

#[tokio::test]
async fn every_jti_is_unique() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let mut seen = HashSet::new();
    let mut pair = app.login("alice").await;
    for _ in 0..5 {
        let jti = decode_part(field(&pair, "access_token"), 1)["jti"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(seen.insert(jti));
        pair = app
            .refresh(field(&pair, "refresh_token"))
            .await
            .json()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_revocation_feed_lists_revoked_sessions_for_clients() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let (rs, secret) = app.add_client("lkc_feed", "", true).await;
    let secret = secret.unwrap();
    let doc: Value = app.http.get(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    assert!(doc["revocation_feed_endpoint"].as_str().unwrap().ends_with("/oauth/revocations"));

    let feed = |since: Option<i64>| {
        let url = match since {
            Some(s) => app.url(&format!("/oauth/revocations?since={s}")),
            None => app.url("/oauth/revocations"),
        };
        let request = app.http.get(url).basic_auth(&rs, Some(&secret));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(app.http.get(app.url("/oauth/revocations")).send().await.unwrap().status(), 401);
    let empty = feed(None).await;
    assert_eq!(empty["revoked"], json!([]));
    let cursor = empty["next_since"].as_i64().unwrap();

    let pair = app.login("alice").await;
    let sid = decode_part(field(&pair, "access_token"), 1)["sid"].clone();
    app.http.post(app.url("/auth/logout")).bearer_auth(field(&pair, "access_token")).send().await.unwrap();
    let after = feed(Some(cursor)).await;
    let items = after["revoked"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["sid"], sid);
    let exp = items[0]["exp"].as_i64().unwrap();
    let access_exp = decode_part(field(&pair, "access_token"), 1)["exp"].as_i64().unwrap();
    assert!(exp >= access_exp, "the feed must cover the last access token");
    // Polls from past its revocation do not repeat it.
    let later = feed(Some(items[0]["revoked_at"].as_i64().unwrap() + 1)).await;
    assert_eq!(later["revoked"], json!([]));
    let (status, code) = error_code(app.http.get(app.url("/oauth/revocations?since=soon")).basic_auth(&rs, Some(&secret)).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"));
}
