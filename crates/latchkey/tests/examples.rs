//! The examples, run against a real Latchkey process.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Env, PASSWORD, Server};
use latchkey_client::{MemoryStore, TokenClient, TokenPair, TokenStore};
use serde_json::Value;

/// `cargo test` builds the examples next to the test binaries.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Latchkey on a known port, so that its issuer is its real address.
fn latchkey() -> (Env, Server) {
    latchkey_with(&[("LATCHKEY_SCOPES", "profile email")])
}

/// The same, with more settings.
fn latchkey_with(extra: &[(&str, &str)]) -> (Env, Server) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let issuer = format!("http://{listen}");
    let mut env = Env::new(&[("LATCHKEY_LISTEN", &listen), ("LATCHKEY_ISSUER", &issuer)]);
    for (name, value) in extra {
        env.set(name, value);
    }
    env.add_user("alice");
    let server = env.serve();
    (env, server)
}

fn resource_server(issuer: &str, feed: Option<(&str, &str)>) -> (Running, String) {
    let mut command = Command::new(example("resource_server"));
    command
        .env("ISSUER", issuer)
        .env("LISTEN", "127.0.0.1:0")
        .env("FEED_INTERVAL_MS", "300");
    if let Some((id, secret)) = feed {
        command
            .env("FEED_CLIENT_ID", id)
            .env("FEED_CLIENT_SECRET", secret);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run the example (built by cargo test)");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .expect("the example's first line")
        .to_owned();
    (Running(child), base)
}

#[tokio::test]
async fn the_resource_server_example_accepts_tokens_and_follows_revocations() {
    let (env, server) = latchkey();
    let out = env.ok(&["client", "add", "resource-server"], None);
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("client_id: "))
        .unwrap()
        .to_owned();
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap()
        .to_owned();
    let (_rs, api) = resource_server(&server.base, Some((&id, &secret)));
    let http = reqwest::Client::new();

    let pair: Value = http
        .post(server.url("/auth/login"))
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = pair["access_token"].as_str().unwrap();
    let hello = http
        .get(format!("{api}/hello"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(hello.status(), 200);
    assert!(hello.text().await.unwrap().starts_with("hello usr_"));

    let anonymous = http.get(format!("{api}/hello")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    let forged = format!("{}x", &token[..token.len() - 1]);
    assert_eq!(
        http.get(format!("{api}/hello"))
            .bearer_auth(&forged)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // Logout at the issuer: the resource server, which never calls it per
    // request, refuses the token once the feed has told it.
    let logged_out = Instant::now();
    http.post(server.url("/auth/logout"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let mut refused = false;
    for _ in 0..100 {
        if http
            .get(format!("{api}/hello"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            == 401
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "the revoked token is still accepted");
    eprintln!(
        "revocation reached the resource server after {:?}",
        logged_out.elapsed()
    );
}

#[tokio::test]
async fn a_token_without_the_required_scope_is_forbidden() {
    let (_env, server) = latchkey();
    let (_rs, api) = resource_server(&server.base, None);
    let http = reqwest::Client::new();
    let pair: Value = http
        .post(server.url("/auth/login"))
        .form(&[
            ("username", "alice"),
            ("password", PASSWORD),
            ("scope", "email"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let response = http
        .get(format!("{api}/hello"))
        .bearer_auth(pair["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
}

#[tokio::test]
async fn the_client_example_calls_the_resource_server() {
    let (_env, server) = latchkey();
    let (_rs, api) = resource_server(&server.base, None);
    let output = Command::new(example("client"))
        .env("ISSUER", &server.base)
        .env("API", format!("{api}/hello"))
        .env("USERNAME", "alice")
        .env("PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("200 hello usr_"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_requests_on_an_expired_token_cause_one_refresh() {
    let (_env, server) = latchkey();
    let (_rs, api) = resource_server(&server.base, None);
    // A fresh pair that the client believes expired.
    let fresh = login_pair(&server).await;
    let pair = TokenPair {
        access_token: fresh["access_token"].as_str().unwrap().to_owned(),
        refresh_token: fresh["refresh_token"].as_str().unwrap().to_owned(),
        expires_at: 0,
        dpop_key: None,
    };
    let store = Arc::new(MemoryStore::default());
    store.save(pair.clone()).await;
    let client = Arc::new(TokenClient::new(&server.base, store.clone()));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let client = client.clone();
        let url = format!("{api}/hello");
        tasks.push(tokio::spawn(async move {
            client
                .send(|http| http.get(&url))
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(client.refresh_count(), 1);
    // The server saw one rotation, not a hundred (and no reuse).
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("latchkey_refreshes_total{outcome=\"rotated\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("latchkey_reuse_detected_total 0"),
        "{metrics}"
    );
    assert_ne!(
        store.load().await.unwrap().refresh_token,
        pair.refresh_token
    );
}

#[tokio::test]
async fn the_client_retries_once_after_a_401() {
    let (_env, server) = latchkey();
    let (_rs, api) = resource_server(&server.base, None);
    let store = Arc::new(MemoryStore::default());
    // A token the client believes valid, but the API refuses.
    let fresh = login_pair(&server).await;
    store
        .save(TokenPair {
            access_token: "not-a-valid-token".into(),
            refresh_token: fresh["refresh_token"].as_str().unwrap().to_owned(),
            expires_at: i64::MAX / 2,
            dpop_key: None,
        })
        .await;
    let client = TokenClient::new(&server.base, store);
    let response = client
        .send(|http| http.get(format!("{api}/hello")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(client.refresh_count(), 1);
}

async fn jwks_fetches(server: &Server) -> u64 {
    server
        .metric(r#"latchkey_http_request_duration_seconds_count{method="GET",route="/.well-known/jwks.json"}"#)
        .await
}

async fn login_pair(server: &Server) -> Value {
    reqwest::Client::new()
        .post(server.url("/auth/login"))
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn access_token(server: &Server) -> String {
    login_pair(server).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn invented_kids_cannot_make_the_verifier_hammer_the_issuer() {
    let (_env, server) = latchkey();
    let verifier = latchkey_verify::RemoteVerifier::discover(&server.base, "latchkey")
        .await
        .unwrap();
    let token = access_token(&server).await;
    assert!(verifier.verify(&token).await.is_ok());
    let before = jwks_fetches(&server).await;
    // The same token with kids nobody published (and so an invalid signature).
    let rest = token.split_once('.').unwrap().1;
    for i in 0..20 {
        let forged_header =
            format!("{{\"typ\":\"at+jwt\",\"alg\":\"EdDSA\",\"kid\":\"invented-{i}\"}}");
        use base64::Engine;
        let forged = format!(
            "{}.{rest}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged_header)
        );
        assert!(verifier.verify(&forged).await.is_err());
    }
    assert!(jwks_fetches(&server).await - before <= 1);
}

#[tokio::test]
async fn a_verifier_started_before_a_key_rotation_learns_the_new_key() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let issuer = format!("http://{listen}");
    let env = Env::new(&[
        ("LATCHKEY_LISTEN", &listen),
        ("LATCHKEY_ISSUER", &issuer),
        ("LATCHKEY_KEYS_REFRESH_INTERVAL", "1s"),
    ]);
    env.add_user("alice");
    let server = env.serve();
    let verifier = latchkey_verify::RemoteVerifier::discover_with(
        &server.base,
        "latchkey",
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    let old = access_token(&server).await;
    env.ok(&["keys", "rotate", "--activate-in", "2s"], None);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let new = access_token(&server).await;
    assert_ne!(
        jsonwebtoken::decode_header(&old).unwrap().kid,
        jsonwebtoken::decode_header(&new).unwrap().kid
    );
    assert!(
        verifier.verify(&new).await.is_ok(),
        "the new key was not fetched"
    );
    assert!(
        verifier.verify(&old).await.is_ok(),
        "the old key must stay trusted until its tokens expire"
    );
}

/// Latchkey on a known port that re-reads its keys every second.
fn latchkey_reloading_keys() -> (Env, Server) {
    latchkey_with(&[("LATCHKEY_KEYS_REFRESH_INTERVAL", "1s")])
}

#[tokio::test]
async fn a_key_withdrawn_from_the_jwks_stops_verifying_after_its_max_age() {
    let (env, server) = latchkey_reloading_keys();
    let options = latchkey_verify::Options::default()
        .refetch_interval(Duration::from_millis(200))
        .max_key_age(Duration::from_secs(1));
    let verifier =
        latchkey_verify::RemoteVerifier::discover_with_options(&server.base, "latchkey", options)
            .await
            .unwrap();
    let token = access_token(&server).await;
    assert!(verifier.verify(&token).await.is_ok());
    // Withdrawn after a compromise: retired at once, by hand.
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    let db = rusqlite::Connection::open(env.db_path()).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute(
        "UPDATE signing_keys SET retires_at = 1 WHERE kid = ?",
        [&kid],
    )
    .unwrap();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let jwks: Value = http
            .get(server.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !jwks.to_string().contains(&kid) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server still publishes the key"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        verifier.verify(&token).await.unwrap_err(),
        latchkey_verify::Rejection::Invalid(latchkey_core::jwt::VerifyError::UnknownKey)
    );
}

#[tokio::test]
async fn a_fail_closed_feed_follower_refuses_tokens_once_polls_fail() {
    let (env, server) = latchkey_reloading_keys();
    let client: Value =
        serde_json::from_str(&env.ok(&["client", "add", "api", "--json"], None)).unwrap();
    let (id, secret) = (
        client["client_id"].as_str().unwrap(),
        client["client_secret"].as_str().unwrap(),
    );
    let strict = latchkey_verify::RemoteVerifier::discover(&server.base, "latchkey")
        .await
        .unwrap();
    let lenient = latchkey_verify::RemoteVerifier::discover(&server.base, "latchkey")
        .await
        .unwrap();
    let interval = Duration::from_millis(200);
    let options = latchkey_verify::FeedOptions::every(interval).fail_closed_after(2);
    let _strict_feed = strict.follow_revocations_with(id, secret, options);
    let _lenient_feed = lenient.follow_revocations(id, secret, interval);
    let token = access_token(&server).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while strict.last_feed_poll().is_none() || lenient.last_feed_poll().is_none() {
        assert!(Instant::now() < deadline, "no successful poll");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let polled = strict.last_feed_poll().unwrap();
    assert!(polled.elapsed().unwrap() < Duration::from_secs(2));
    assert!(strict.verify(&token).await.is_ok());

    drop(server);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        strict.verify(&token).await.unwrap_err(),
        latchkey_verify::Rejection::RevocationsUnknown
    );
    assert!(
        lenient.verify(&token).await.is_ok(),
        "fail-open is the default"
    );
    assert!(strict.last_feed_poll().unwrap() <= std::time::SystemTime::now());
}

/// A caller that gives up on a refresh (its future dropped at any moment)
/// never loses a pair the server already rotated: the next refresh works
/// and the session stays alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_refresh_never_loses_the_rotated_pair() {
    let (_env, server) = latchkey();
    let pair = login_pair(&server).await;
    let store = Arc::new(MemoryStore::default());
    store
        .save(TokenPair {
            access_token: pair["access_token"].as_str().unwrap().to_owned(),
            refresh_token: pair["refresh_token"].as_str().unwrap().to_owned(),
            expires_at: 0,
            dpop_key: None,
        })
        .await;
    let client = TokenClient::new(&server.base, store.clone());
    let mut completed = 0;
    for delay_us in (0..6_000).step_by(40) {
        let current = store.load().await.unwrap().access_token;
        // Dropped after `delay_us` microseconds (a thread's sleep: finer
        // than the runtime's millisecond timers).
        let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_micros(delay_us));
            let _ = cancel.send(());
        });
        tokio::select! {
            done = client.refresh(&current) => {
                done.unwrap();
                completed += 1;
            }
            _ = cancelled => {}
        }
        // Whatever the cancelled refresh did, the client's pair still works.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let current = store.load().await.unwrap().access_token;
        client
            .refresh(&current)
            .await
            .unwrap_or_else(|e| panic!("after a refresh cancelled at {delay_us} µs: {e}"));
    }
    assert!(completed < 150, "no refresh was cancelled");
    let me = reqwest::Client::new()
        .get(server.url("/api/me"))
        .bearer_auth(store.load().await.unwrap().access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
}

/// An ES256 DPoP key of a client, and its proofs.
struct ProofKey {
    encoding: jsonwebtoken::EncodingKey,
    jwk: Value,
}

impl ProofKey {
    fn new() -> Self {
        use aws_lc_rs::signature::{self, KeyPair};
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        Self {
            encoding: jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: serde_json::json!({"kty": "EC", "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])}),
        }
    }

    fn proof(&self, method: &str, url: &str, access_token: Option<&str>) -> String {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(serde_json::from_value(self.jwk.clone()).unwrap());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = serde_json::json!({
            "jti": format!("{}-{}", std::process::id(), COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
            "htm": method, "htu": url, "iat": now,
        });
        if let Some(token) = access_token {
            claims["ath"] = serde_json::json!(latchkey_core::dpop::ath(token));
        }
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }
}

#[tokio::test]
async fn the_resource_server_needs_a_proof_for_a_dpop_bound_token() {
    let (_env, server) = latchkey_with(&[("LATCHKEY_DPOP_NONCE", "optional")]);
    let (_rs, api) = resource_server(&server.base, None);
    let http = reqwest::Client::new();
    let key = ProofKey::new();
    let login = server.url("/auth/login");
    let pair: Value = http
        .post(&login)
        .header("dpop", key.proof("POST", &login, None))
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pair["token_type"], "DPoP");
    let token = pair["access_token"].as_str().unwrap();
    let hello = format!("{api}/hello");
    let call = |scheme: &'static str, proof: Option<String>| {
        let mut request = http
            .get(&hello)
            .header("authorization", format!("{scheme} {token}"));
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        request.send()
    };
    // Presented as a bearer token, or without a proof: refused.
    let bearer = call("Bearer", None).await.unwrap();
    assert_eq!(bearer.status(), 401);
    assert!(
        bearer.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("DPoP")
    );
    assert_eq!(call("DPoP", None).await.unwrap().status(), 401);
    // With a proof of its key for this request: accepted, once.
    let proof = key.proof("GET", &hello, Some(token));
    assert_eq!(
        call("DPoP", Some(proof.clone())).await.unwrap().status(),
        200
    );
    assert_eq!(call("DPoP", Some(proof)).await.unwrap().status(), 401);
    // Another key's proof, or one for another URL or token: refused.
    let thief = ProofKey::new();
    for proof in [
        thief.proof("GET", &hello, Some(token)),
        key.proof("GET", &format!("{api}/other"), Some(token)),
        key.proof("GET", &hello, Some("another token")),
    ] {
        assert_eq!(call("DPoP", Some(proof)).await.unwrap().status(), 401);
    }
}

#[tokio::test]
async fn the_client_proves_its_key_with_every_request_and_refresh() {
    let (_env, server) = latchkey_with(&[("LATCHKEY_ACCESS_TTL", "40s")]);
    let (_rs, api) = resource_server(&server.base, None);
    // The server asks for its nonce first; the client follows.
    let client = TokenClient::login_with_dpop(&server.base, "alice", PASSWORD)
        .await
        .unwrap();
    let hello = format!("{api}/hello");
    let first = client.send(|http| http.get(&hello)).await.unwrap();
    assert_eq!(first.status(), 200);
    let me = client
        .send(|http| http.get(server.url("/api/me")))
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    // The token is bound: without the key it does not serve.
    let token = client.access_token().await.unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(claims["cnf"]["jkt"].is_string());
    let stolen = reqwest::Client::new()
        .get(&hello)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(stolen.status(), 401);
    // A refresh proves the key too (the refresh token is bound to it).
    let fresh = client.refresh(&token).await.unwrap();
    assert_ne!(fresh, token);
    assert_eq!(client.refresh_count(), 1);
    let again = client.send(|http| http.get(&hello)).await.unwrap();
    assert_eq!(again.status(), 200);
}

/// L8: a verifier checks a proof's `htu` against its own public URL only,
/// never the request's `Host`, so a proof captured at another service that
/// trusts the same issuer is refused; and without a public URL it refuses
/// DPoP-bound tokens outright.
#[tokio::test]
async fn a_dpop_proof_for_another_service_is_refused_whatever_the_host_says() {
    let (_env, server) = latchkey_with(&[("LATCHKEY_DPOP_NONCE", "optional")]);
    let http = reqwest::Client::new();
    let key = ProofKey::new();
    let login = server.url("/auth/login");
    let pair: Value = http
        .post(&login)
        .header("dpop", key.proof("POST", &login, None))
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = pair["access_token"].as_str().unwrap();
    let request = |host: &str, proof: String| {
        let mut headers = http::HeaderMap::new();
        headers.insert("host", host.parse().unwrap());
        headers.insert("authorization", format!("DPoP {token}").parse().unwrap());
        headers.insert("dpop", proof.parse().unwrap());
        headers
    };
    let uri: http::Uri = "/hello".parse().unwrap();
    let here = latchkey_verify::RemoteVerifier::discover_with_options(
        &server.base,
        "latchkey",
        latchkey_verify::Options::default().public_url("https://api.example"),
    )
    .await
    .unwrap();
    // A proof made for (and captured at) another service, replayed here
    // with that service's Host: refused.
    let captured = key.proof("GET", "https://other.example/hello", Some(token));
    assert_eq!(
        here.verify_request(
            &http::Method::GET,
            &uri,
            &request("other.example", captured)
        )
        .await
        .unwrap_err(),
        latchkey_verify::Rejection::InvalidProof
    );
    // A proof for this service's public URL: accepted, whatever the Host.
    let mine = key.proof("GET", "https://api.example/hello", Some(token));
    assert!(
        here.verify_request(&http::Method::GET, &uri, &request("10.0.0.7:3000", mine))
            .await
            .is_ok()
    );
    // No public URL: a DPoP-bound token cannot be checked, so it is refused.
    let unset = latchkey_verify::RemoteVerifier::discover(&server.base, "latchkey")
        .await
        .unwrap();
    let proof = key.proof("GET", "http://api.example/hello", Some(token));
    let refused = unset
        .verify_request(&http::Method::GET, &uri, &request("api.example", proof))
        .await
        .unwrap_err();
    assert_eq!(refused, latchkey_verify::Rejection::DpopUnavailable);
    assert_eq!(refused.into_response::<String>(&[]).status(), 401);
}

#[tokio::test]
async fn a_route_that_needs_two_factors_asks_a_password_token_to_step_up() {
    use latchkey_core::totp::{code_at, step_of};
    let (_env, server) = latchkey();
    let (_rs, api) = resource_server(&server.base, None);
    let http = reqwest::Client::new();
    let access = access_token(&server).await;
    let weak = http
        .get(format!("{api}/payments"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(weak.status(), 401);
    let challenge = weak.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("error=\"insufficient_user_authentication\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("acr_values=\"mfa\"") && challenge.contains("max_age=300"),
        "{challenge}"
    );
    let body: Value = weak.json().await.unwrap();
    assert_eq!(body["error"], "insufficient_user_authentication");
    assert_eq!(
        http.get(format!("{api}/hello"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // With an authenticator app, the second step's token is strong enough
    // (`acr` mfa, whether by a code or a recovery code).
    let setup: Value = http
        .post(server.url("/auth/totp"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = data_encoding::BASE32_NOPAD
        .decode(setup["secret"].as_str().unwrap().as_bytes())
        .unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let confirmed = http
        .post(server.url("/auth/totp/confirm"))
        .bearer_auth(&access)
        .json(&serde_json::json!({ "code": code_at(&secret, step_of(now())) }))
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    let recovery: Value = confirmed.json().await.unwrap();
    let step: Value = http
        .post(server.url("/auth/login"))
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(step["error"], "mfa_required");
    // (A recovery code: the confirming code's step is spent.)
    let strong: Value = http
        .post(server.url("/auth/login/mfa"))
        .form(&[
            ("mfa_token", step["mfa_token"].as_str().unwrap()),
            (
                "recovery_code",
                recovery["recovery_codes"][0].as_str().unwrap(),
            ),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let strong = strong["access_token"].as_str().unwrap();
    let paid = http
        .get(format!("{api}/payments"))
        .bearer_auth(strong)
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    assert!(paid.text().await.unwrap().starts_with("payments of usr_"));
}

#[tokio::test]
async fn the_client_tells_its_caller_why_the_session_ended() {
    let (_env, server) = latchkey();
    let client = TokenClient::login(&server.base, "alice", PASSWORD)
        .await
        .unwrap();
    let access = client.access_token().await.unwrap();
    let http = reqwest::Client::new();
    let out = http
        .post(server.url("/auth/logout"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    let ended = client.refresh(&access).await.unwrap_err();
    assert_eq!(ended.end_reason(), Some("logout"), "{ended:?}");
    assert!(
        matches!(&ended, latchkey_client::Error::Refused { status: 400, code, .. } if code == "invalid_grant")
    );
}
