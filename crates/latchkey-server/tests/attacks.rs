//! The JWT attack catalogue over HTTP (issue 19, part): every forged or
//! misused token against every protected endpoint of this server, and
//! against introspection. Each must be a `401` with a `WWW-Authenticate`
//! challenge (introspection: `{"active": false}`). Token checks do not
//! depend on the storage backend: SQLite only.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

#[macro_use]
mod common;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::{Backend, CODE_VERIFIER, TestApp, claims, field};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

const BACKEND: Backend = Backend::Sqlite;

fn enc(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Signs `header.payload` (raw text, so duplicates and odd shapes survive)
/// with `key` under `alg`.
fn sign_raw(header: &str, payload: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
    format!("{input}.{signature}")
}

/// The server's own signing key (read from the database, as an insider
/// with a stolen dump could): tokens it signs with a forbidden header must
/// still be refused.
async fn server_key(app: &TestApp) -> (EncodingKey, Algorithm, String) {
    let keys = app.state.store().signing_keys().await.unwrap();
    let stored = keys.last().unwrap();
    let pkcs8 = match latchkey_core::seal::open(None, &stored.kid, &stored.private_blob).unwrap() {
        latchkey_core::seal::Opened::Plain(bytes) | latchkey_core::seal::Opened::Sealed(bytes) => {
            bytes
        }
    };
    let (key, alg) = match stored.alg.as_str() {
        "EdDSA" => (EncodingKey::from_ed_der(&pkcs8), Algorithm::EdDSA),
        "ES256" => (EncodingKey::from_ec_der(&pkcs8), Algorithm::ES256),
        other => panic!("unexpected {other}"),
    };
    (key, alg, stored.kid.clone())
}

/// Every forgery, by name.
async fn forgeries(
    app: &TestApp,
    good: &str,
    id_token: Option<&str>,
    refresh: &str,
) -> Vec<(String, String)> {
    let parts: Vec<&str> = good.split('.').collect();
    let (h, c, s) = (parts[0], parts[1], parts[2]);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
    let payload = claims(good);
    let payload_text = payload.to_string();
    let (key, alg, kid) = server_key(app).await;
    let alg_name = header["alg"].as_str().unwrap().to_owned();
    let mut out: Vec<(String, String)> = Vec::new();

    // alg: none, in every casing, with and without the original signature.
    for none in ["none", "None", "NONE", "nOnE"] {
        let mut h2 = header.clone();
        h2["alg"] = json!(none);
        out.push((
            format!("alg {none}, empty signature"),
            format!("{}.{c}.", enc(&h2)),
        ));
        out.push((
            format!("alg {none}, original signature"),
            format!("{}.{c}.{s}", enc(&h2)),
        ));
    }

    // HMAC keyed with the public key, in its JWK, PEM, DER and raw forms.
    let jwks: Value = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = jwks["keys"][0].clone();
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let mut der = if alg_name == "EdDSA" {
        hex("302a300506032b6570032100")
    } else {
        hex("3059301306072a8648ce3d020106082a8648ce3d030107034200")
    };
    if alg_name == "EdDSA" {
        der.extend_from_slice(&x);
    } else {
        der.push(4);
        der.extend_from_slice(&x);
        der.extend_from_slice(&URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
    }
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD.encode(&der)
    );
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("JWK", jwk.to_string().into_bytes()),
        ("PEM", pem.into_bytes()),
        ("DER", der.clone()),
        ("raw", x.clone()),
        ("x text", jwk["x"].as_str().unwrap().as_bytes().to_vec()),
    ];
    for (hs, hs_alg) in [
        ("HS256", Algorithm::HS256),
        ("HS384", Algorithm::HS384),
        ("HS512", Algorithm::HS512),
    ] {
        for (form, secret) in &secrets {
            let mut h2 = header.clone();
            h2["alg"] = json!(hs);
            let token = sign_raw(
                &h2.to_string(),
                &payload_text,
                &EncodingKey::from_secret(secret),
                hs_alg,
            );
            out.push((format!("{hs} keyed with the public key ({form})"), token));
        }
    }

    // A key of the attacker's own, embedded or pointed at.
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let mine = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let mine_pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(mine.as_ref()).unwrap();
    let mine_key = EncodingKey::from_ed_der(mine.as_ref());
    let mine_jwk = json!({"kty": "OKP", "crv": "Ed25519",
        "x": URL_SAFE_NO_PAD.encode(aws_lc_rs::signature::KeyPair::public_key(&mine_pair).as_ref())});
    for (name, extra) in [
        ("embedded jwk", json!({"jwk": mine_jwk})),
        ("jku", json!({"jku": "https://evil.example/jwks.json"})),
        ("x5u", json!({"x5u": "https://evil.example/cert.pem"})),
        (
            "x5c",
            json!({"x5c": [STANDARD.encode(b"not a certificate")]}),
        ),
    ] {
        let mut h2 = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "attacker"});
        for (k, v) in extra.as_object().unwrap() {
            h2[k] = v.clone();
        }
        out.push((
            format!("{name}, signed by the attacker"),
            sign_raw(&h2.to_string(), &payload_text, &mine_key, Algorithm::EdDSA),
        ));
        // The same headers on a token the real key signed are refused too.
        let mut h3 = header.clone();
        for (k, v) in extra.as_object().unwrap() {
            h3[k] = v.clone();
        }
        out.push((
            format!("{name}, signed by the server's key"),
            sign_raw(&h3.to_string(), &payload_text, &key, alg),
        ));
    }
    let mut crit = header.clone();
    crit["crit"] = json!(["exp"]);
    out.push((
        "crit".into(),
        sign_raw(&crit.to_string(), &payload_text, &key, alg),
    ));

    // kid traversal and injection.
    for bad in [
        "../../../../etc/passwd",
        "' OR '1'='1",
        "key\u{0}",
        "kid\"; DROP TABLE signing_keys; --",
        &"k".repeat(5000),
    ] {
        let mut h2 = header.clone();
        h2["kid"] = json!(bad);
        out.push((
            format!("kid {:.40}", bad.escape_debug()),
            sign_raw(&h2.to_string(), &payload_text, &key, alg),
        ));
    }

    // Duplicate JSON keys: a second sub after the real one, signed.
    let duplicated = payload_text.replacen('{', "{\"sub\":\"usr_admin\",", 1);
    out.push((
        "duplicate sub".into(),
        sign_raw(&header.to_string(), &duplicated, &key, alg),
    ));
    let dup_header =
        format!("{{\"alg\":\"{alg_name}\",\"typ\":\"at+jwt\",\"kid\":\"{kid}\",\"alg\":\"none\"}}");
    out.push((
        "duplicate alg".into(),
        sign_raw(&dup_header, &payload_text, &key, alg),
    ));
    // A nested JWT: the payload is a token, the header says so.
    let mut nested = header.clone();
    nested["cty"] = json!("JWT");
    out.push((
        "nested JWT".into(),
        sign_raw(&nested.to_string(), good, &key, alg),
    ));
    // Wrong typ, signed by the server's key.
    for typ in ["JWT", "dpop+jwt", "application/jwt"] {
        let mut h2 = header.clone();
        h2["typ"] = json!(typ);
        out.push((
            format!("typ {typ}"),
            sign_raw(&h2.to_string(), &payload_text, &key, alg),
        ));
    }
    let mut no_typ = header.clone();
    no_typ.as_object_mut().unwrap().remove("typ");
    out.push((
        "no typ".into(),
        sign_raw(&no_typ.to_string(), &payload_text, &key, alg),
    ));
    // Other tokens used as access tokens.
    if let Some(id) = id_token {
        out.push(("an ID token".into(), id.to_owned()));
    }
    out.push(("a refresh token".into(), refresh.to_owned()));
    // Oversized: a valid-looking token padded past 4 KiB, and one signed.
    let mut big = payload.clone();
    big["pad"] = json!("x".repeat(5000));
    out.push((
        "oversized, signed".into(),
        sign_raw(&header.to_string(), &big.to_string(), &key, alg),
    ));
    out.push(("oversized garbage".into(), "a".repeat(10_000)));
    // A tampered payload under the original signature.
    let mut evil = payload.clone();
    evil["sub"] = json!("usr_admin");
    out.push(("tampered payload".into(), format!("{h}.{}.{s}", enc(&evil))));
    out
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Every protected endpoint of this server, as (method, path).
const PROTECTED: [(&str, &str); 7] = [
    ("GET", "/api/me"),
    ("GET", "/sessions"),
    ("DELETE", "/sessions"),
    ("DELETE", "/sessions/ses_x"),
    ("GET", "/oauth/userinfo"),
    ("GET", "/admin/users"),
    ("POST", "/auth/logout"),
];

async fn attack(app: &TestApp, forgeries: &[(String, String)]) {
    let (rs, secret) = app.add_client("lkc_rs", "", true).await;
    let secret = secret.unwrap();
    for (name, token) in forgeries {
        for (method, path) in PROTECTED {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let response = app
                .http
                .request(method.clone(), app.url(path))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401, "{name} at {method} {path}");
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            assert!(
                challenge.is_some_and(|c| c.contains("invalid_token")),
                "{name} at {method} {path}"
            );
        }
        let introspected: Value = app
            .http
            .post(app.url("/oauth/introspect"))
            .basic_auth(&rs, Some(&secret))
            .form(&[("token", token.as_str())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if name != "a refresh token" {
            assert_eq!(
                introspected,
                json!({"active": false}),
                "{name} at introspection"
            );
        }
    }
}

#[tokio::test]
async fn every_forgery_is_refused_everywhere_with_eddsa() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let pair = app.login("alice").await;
    let good = field(&pair, "access_token");
    assert_eq!(app.me(good).await.status(), 200);
    let all = forgeries(&app, good, None, field(&pair, "refresh_token")).await;
    assert!(all.len() > 40, "{}", all.len());
    attack(&app, &all).await;
    // The genuine token still works: nothing above changed anything.
    assert_eq!(app.me(good).await.status(), 200);
}

#[tokio::test]
async fn every_forgery_and_the_zero_signature_are_refused_with_es256() {
    let app = start!(&[("LATCHKEY_SIGNING_ALG", "ES256")]);
    app.add_user("alice").await;
    let pair = app.login("alice").await;
    let good = field(&pair, "access_token");
    assert_eq!(claims(good)["sub"], "usr_alice");
    let mut all = forgeries(&app, good, None, field(&pair, "refresh_token")).await;
    // CVE-2022-21449: r = s = 0.
    let parts: Vec<&str> = good.split('.').collect();
    all.push((
        "all-zero ECDSA signature".into(),
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            URL_SAFE_NO_PAD.encode([0u8; 64])
        ),
    ));
    attack(&app, &all).await;
    assert_eq!(app.me(good).await.status(), 200);
}

#[tokio::test]
async fn an_id_token_is_not_an_access_token() {
    let app = start!(&[]);
    let alice = app.add_user("alice").await;
    let code = app
        .code_for(&alice, "lkc_app", "https://app.example/cb")
        .await;
    let tokens: Value = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "lkc_app"),
                ("code", code.as_str()),
                ("redirect_uri", "https://app.example/cb"),
                ("code_verifier", CODE_VERIFIER),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    let id_token = field(&tokens, "id_token").to_owned();
    attack(&app, &[("an ID token".into(), id_token)]).await;
}
