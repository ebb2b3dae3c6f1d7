// Included once per storage backend by tests/dpop.rs; `BACKEND` names it.

use crate::common::{CODE_VERIFIER, PASSWORD, TestApp, claims, error_code, field};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// A client's DPoP key and the proofs it makes.
struct DpopKey {
    encoding: jsonwebtoken::EncodingKey,
    alg: jsonwebtoken::Algorithm,
    jwk: Value,
}

impl DpopKey {
    fn es256() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        Self {
            encoding: jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
            alg: jsonwebtoken::Algorithm::ES256,
            jwk: json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])}),
        }
    }

    fn ed25519() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        Self {
            encoding: jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref()),
            alg: jsonwebtoken::Algorithm::EdDSA,
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())}),
        }
    }

    /// The RFC 7638 thumbprint.
    fn jkt(&self) -> String {
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(self.jwk.clone()).unwrap();
        jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256).unwrap()
    }

    fn proof(&self, method: &str, url: &str, nonce: Option<&str>, access_token: Option<&str>) -> String {
        let mut header = jsonwebtoken::Header::new(self.alg);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(serde_json::from_value(self.jwk.clone()).unwrap());
        let mut claims = json!({
            "jti": format!("{:x}", rand_u64()),
            "htm": method,
            "htu": url,
            "iat": latchkey_server::state::now(),
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        if let Some(token) = access_token {
            claims["ath"] = json!(latchkey_core::dpop::ath(token));
        }
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }
}

fn rand_u64() -> u64 {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    SystemRandom::new().fill(&mut bytes).unwrap();
    u64::from_be_bytes(bytes)
}

/// A login with a proof: the first answer asks for the server's nonce, the
/// second (with it) gives DPoP tokens. The nonce comes back for next time.
async fn dpop_login(app: &TestApp, key: &DpopKey) -> (Value, String) {
    let url = app.url("/auth/login");
    let first = app
        .http
        .post(&url)
        .header("dpop", key.proof("POST", &url, None, None))
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let nonce = first.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    assert_eq!(error_code(first).await, (400, "use_dpop_nonce".into()));
    let second = app
        .http
        .post(&url)
        .header("dpop", key.proof("POST", &url, Some(&nonce), None))
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 200);
    let nonce = second.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    (second.json().await.unwrap(), nonce)
}

async fn me_with(app: &TestApp, scheme: &str, token: &str, proof: Option<String>) -> reqwest::Response {
    let mut request = app.http.get(app.url("/api/me")).header("authorization", format!("{scheme} {token}"));
    if let Some(proof) = proof {
        request = request.header("dpop", proof);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_login_with_a_proof_gets_tokens_bound_to_the_key() {
    let app = start!(&[]);
    app.add_user("alice").await;
    for key in [DpopKey::es256(), DpopKey::ed25519()] {
        let (tokens, _) = dpop_login(&app, &key).await;
        assert_eq!(tokens["token_type"], "DPoP");
        let access = field(&tokens, "access_token");
        assert_eq!(claims(access)["cnf"]["jkt"], key.jkt());

        // With a fresh proof for this request, the API answers.
        let url = app.url("/api/me");
        let ok = me_with(&app, "DPoP", access, Some(key.proof("GET", &url, None, Some(access)))).await;
        assert_eq!(ok.status(), 200);
        // Stolen, the token is useless: as Bearer, without a proof, with
        // another key's proof, with a proof for another method, URL or token.
        let bearer = me_with(&app, "Bearer", access, None).await;
        assert_eq!(bearer.status(), 401);
        assert!(bearer.headers()["www-authenticate"].to_str().unwrap().starts_with("DPoP "));
        assert_eq!(me_with(&app, "DPoP", access, None).await.status(), 401);
        let thief = DpopKey::es256();
        let refused = me_with(&app, "DPoP", access, Some(thief.proof("GET", &url, None, Some(access)))).await;
        assert_eq!(refused.status(), 401);
        assert!(refused.headers()["www-authenticate"].to_str().unwrap().contains("invalid_dpop_proof"));
        for proof in [
            key.proof("POST", &url, None, Some(access)),
            key.proof("GET", &app.url("/sessions"), None, Some(access)),
            key.proof("GET", &url, None, Some("another token")),
            key.proof("GET", &url, None, None),
        ] {
            assert_eq!(me_with(&app, "DPoP", access, Some(proof)).await.status(), 401);
        }
        // A proof used once is refused the second time.
        let once = key.proof("GET", &url, None, Some(access));
        assert_eq!(me_with(&app, "DPoP", access, Some(once.clone())).await.status(), 200);
        assert_eq!(me_with(&app, "DPoP", access, Some(once)).await.status(), 401);
    }
    // Introspection names the key (RFC 9449 §6.2).
    let (rs, secret) = app.add_client("lkc_rs", "", true).await;
    let (tokens, _) = dpop_login(&app, &DpopKey::es256()).await;
    let introspected: Value = app
        .http
        .post(app.url("/oauth/introspect"))
        .basic_auth(&rs, secret.as_deref())
        .form(&[("token", field(&tokens, "access_token"))])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(introspected["token_type"], "DPoP");
    assert!(introspected["cnf"]["jkt"].is_string());
    // A bearer token may not pretend to be bound.
    let plain = app.login("alice").await;
    assert_eq!(plain["token_type"], "Bearer");
    assert_eq!(me_with(&app, "DPoP", field(&plain, "access_token"), None).await.status(), 401);
}

#[tokio::test]
async fn a_bound_refresh_token_needs_a_proof_of_its_key() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let key = DpopKey::es256();
    let (tokens, nonce) = dpop_login(&app, &key).await;
    let refresh = field(&tokens, "refresh_token");
    let url = app.url("/oauth/token");
    let send = |proof: Option<String>| {
        let mut request = app.http.post(&url).form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)]);
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        request.send()
    };
    // Stolen without the key: refused, and nothing changes.
    assert_eq!(error_code(send(None).await.unwrap()).await, (400, "invalid_grant".into()));
    let thief = DpopKey::es256();
    let stolen = send(Some(thief.proof("POST", &url, Some(&nonce), None))).await.unwrap();
    assert_eq!(error_code(stolen).await, (400, "invalid_grant".into()));
    assert!(app.audit("reuse_detected").await.is_empty());
    // A proof for another endpoint, or without the nonce.
    let elsewhere = send(Some(key.proof("POST", &app.url("/auth/login"), Some(&nonce), None))).await.unwrap();
    assert_eq!(error_code(elsewhere).await, (400, "invalid_dpop_proof".into()));
    let no_nonce = send(Some(key.proof("POST", &url, None, None))).await.unwrap();
    assert_eq!(error_code(no_nonce).await, (400, "use_dpop_nonce".into()));
    // The owner, with the key: rotated, still bound.
    let proof = key.proof("POST", &url, Some(&nonce), None);
    let rotated = send(Some(proof.clone())).await.unwrap();
    assert_eq!(rotated.status(), 200);
    let rotated: Value = rotated.json().await.unwrap();
    assert_eq!(rotated["token_type"], "DPoP");
    assert_eq!(claims(field(&rotated, "access_token"))["cnf"]["jkt"], key.jkt());
    // The same proof again is a replay.
    let replayed = app
        .http
        .post(&url)
        .header("dpop", proof)
        .form(&[("grant_type", "refresh_token"), ("refresh_token", field(&rotated, "refresh_token"))])
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(replayed).await, (400, "invalid_dpop_proof".into()));
}

#[tokio::test]
async fn every_grant_and_the_admin_api_bind_to_a_proof() {
    let app = start!(&[("LATCHKEY_DPOP_NONCE", "optional")]);
    let alice = app.add_user("alice").await;
    let key = DpopKey::ed25519();
    let url = app.url("/oauth/token");
    // client_credentials: a confidential client's token bound to its key.
    let (id, secret) = app.add_client("lkc_svc", "reports latchkey:admin", true).await;
    let secret = secret.unwrap();
    let response = app
        .http
        .post(&url)
        .basic_auth(&id, Some(&secret))
        .header("dpop", key.proof("POST", &url, None, None))
        .form(&[("grant_type", "client_credentials"), ("scope", "reports")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("dpop-nonce"));
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["token_type"], "DPoP");
    assert_eq!(claims(field(&tokens, "access_token"))["cnf"]["jkt"], key.jkt());
    // Without the nonce requirement, a proof without one is accepted.
    let (login, _) = {
        let login_url = app.url("/auth/login");
        let response = app
            .http
            .post(&login_url)
            .header("dpop", key.proof("POST", &login_url, None, None))
            .form(&[("username", "alice"), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        (response.json::<Value>().await.unwrap(), ())
    };
    assert_eq!(login["token_type"], "DPoP");
    // An application's session for its user, bound to the user's key.
    let admin_token = {
        let response = app
            .http
            .post(&url)
            .basic_auth(&id, Some(&secret))
            .form(&[("grant_type", "client_credentials"), ("scope", "latchkey:admin")])
            .send()
            .await
            .unwrap();
        field(&response.json::<Value>().await.unwrap(), "access_token").to_owned()
    };
    let user_key = DpopKey::es256();
    let admin_url = app.url("/admin/sessions");
    let session: Value = app
        .http
        .post(&admin_url)
        .bearer_auth(&admin_token)
        .header("dpop", user_key.proof("POST", &admin_url, None, None))
        .json(&json!({"user_id": alice.id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["token_type"], "DPoP");
    let refresh = app
        .http
        .post(&url)
        .form(&[("grant_type", "refresh_token"), ("refresh_token", field(&session, "refresh_token"))])
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(refresh).await, (400, "invalid_grant".into()));
    // Discovery lists the algorithms.
    let doc: Value = app.http.get(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["dpop_signing_alg_values_supported"], json!(["ES256", "EdDSA"]));
}

#[tokio::test]
async fn a_proof_replayed_to_another_instance_is_refused() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let other = app.beside(&[]).await;
    let key = DpopKey::es256();
    let (tokens, _) = dpop_login(&app, &key).await;
    let access = field(&tokens, "access_token");
    // The proof names the public URL (the issuer), whichever instance serves.
    let proof = key.proof("GET", &app.url("/api/me"), None, Some(access));
    assert_eq!(me_with(&app, "DPoP", access, Some(proof.clone())).await.status(), 200);
    let replayed = other
        .http
        .get(other.url("/api/me"))
        .header("authorization", format!("DPoP {access}"))
        .header("dpop", proof)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 401);
    let fresh = other
        .http
        .get(other.url("/api/me"))
        .header("authorization", format!("DPoP {access}"))
        .header("dpop", key.proof("GET", &app.url("/api/me"), None, Some(access)))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);
    // A nonce from one instance is good at the other.
    let url = app.url("/auth/login");
    let asked = app
        .http
        .post(&url)
        .header("dpop", key.proof("POST", &url, None, None))
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let nonce = asked.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    let elsewhere = other
        .http
        .post(other.url("/auth/login"))
        .header("dpop", key.proof("POST", &url, Some(&nonce), None))
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 200);
}

#[tokio::test]
async fn an_authorization_code_exchanged_with_a_proof_binds_the_session() {
    let app = start!(&[("LATCHKEY_DPOP_NONCE", "optional")]);
    let alice = app.add_user("alice").await;
    let code = app.code_for(&alice, "lkc_native", "http://127.0.0.1:4000/cb").await;
    let key = DpopKey::ed25519();
    let url = app.url("/oauth/token");
    let tokens: Value = app
        .http
        .post(&url)
        .header("dpop", key.proof("POST", &url, None, None))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "lkc_native"),
            ("code", code.as_str()),
            ("redirect_uri", "http://127.0.0.1:4000/cb"),
            ("code_verifier", CODE_VERIFIER),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["token_type"], "DPoP", "{tokens}");
    assert_eq!(claims(field(&tokens, "access_token"))["cnf"]["jkt"], key.jkt());
    // A public client's refresh token is bound too.
    let stolen = app
        .http
        .post(&url)
        .form(&[("grant_type", "refresh_token"), ("client_id", "lkc_native"), ("refresh_token", field(&tokens, "refresh_token"))])
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(stolen).await, (400, "invalid_grant".into()));
}
