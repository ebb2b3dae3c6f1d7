//! The `latchkey` binary from the outside: what an operator and a newcomer do.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

mod common;

use common::{Env, PASSWORD, bearer_status as me_status};
use oauth2::basic::BasicClient;
use oauth2::{
    ClientId, ClientSecret, RefreshToken, ResourceOwnerPassword, ResourceOwnerUsername,
    TokenResponse, TokenUrl,
};
use serde_json::Value;

async fn login(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    http.post(format!("{base}/auth/login"))
        .form(&[("username", user), ("password", password)])
        .send()
        .await
        .unwrap()
}

async fn json(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

fn s<'a>(value: &'a Value, name: &str) -> &'a str {
    value[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {value}"))
}

#[tokio::test]
async fn the_readme_walkthrough_works() {
    let env = Env::new(&[]);
    env.add_user("alice");
    let server = env.serve();
    assert!(
        server.start_line.contains("database sqlite://"),
        "{}",
        server.start_line
    );
    assert!(
        server.start_line.contains("signing key"),
        "{}",
        server.start_line
    );
    let http = reqwest::Client::new();

    let pair = json(login(&http, &server.base, "alice", PASSWORD).await).await;
    let me = http
        .get(server.url("/api/me"))
        .bearer_auth(s(&pair, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(json(me).await["username"], "alice");

    let refresh = |token: String| {
        http.post(server.url("/oauth/token"))
            .form(&[
                ("grant_type", "refresh_token".to_owned()),
                ("refresh_token", token),
            ])
            .send()
    };
    let next = refresh(s(&pair, "refresh_token").to_owned()).await.unwrap();
    assert_eq!(next.status(), 200);
    let next = json(next).await;
    let replay = refresh(s(&pair, "refresh_token").to_owned()).await.unwrap();
    assert_eq!(replay.status(), 400);
    assert_eq!(json(replay).await["error"], "invalid_grant");
    assert_eq!(
        me_status(&http, &server.url("/api/me"), s(&next, "access_token")).await,
        401
    );
    assert_eq!(
        refresh(s(&next, "refresh_token").to_owned())
            .await
            .unwrap()
            .status(),
        400
    );
}

#[tokio::test]
async fn cli_changes_reach_a_running_server_without_restart() {
    let env = Env::new(&[]);
    let server = env.serve();
    let http = reqwest::Client::new();
    env.add_user("bob");
    let pair = json(login(&http, &server.base, "bob", PASSWORD).await).await;
    assert!(env.ok(&["user", "list"], None).contains("bob"));

    env.ok(
        &["user", "passwd", "bob", "--password-stdin"],
        Some("a brand new password\n"),
    );
    assert_eq!(
        login(&http, &server.base, "bob", PASSWORD).await.status(),
        400
    );
    assert_eq!(
        login(&http, &server.base, "bob", "a brand new password")
            .await
            .status(),
        200
    );

    // Read once, so that the server holds the session in memory: the
    // command line's change must still reach it at once.
    assert_eq!(
        me_status(&http, &server.url("/api/me"), s(&pair, "access_token")).await,
        200
    );
    env.ok(&["user", "disable", "bob"], None);
    assert_eq!(
        me_status(&http, &server.url("/api/me"), s(&pair, "access_token")).await,
        401
    );
    assert_eq!(
        login(&http, &server.base, "bob", "a brand new password")
            .await
            .status(),
        400
    );
    let users: Value = serde_json::from_str(&env.ok(&["user", "list", "--json"], None)).unwrap();
    assert_eq!(users[0]["disabled"], true);

    // Deleting (the admin API's operation, from the command line) frees
    // the name and leaves the running server nothing to accept.
    env.ok(&["user", "enable", "bob"], None);
    let pair = json(login(&http, &server.base, "bob", "a brand new password").await).await;
    env.ok(&["user", "delete", "bob"], None);
    assert_eq!(
        me_status(&http, &server.url("/api/me"), s(&pair, "access_token")).await,
        401
    );
    assert!(!env.ok(&["user", "list"], None).contains("bob"));
    env.add_user("bob");
    assert_eq!(
        login(&http, &server.base, "bob", PASSWORD).await.status(),
        200
    );
}

#[tokio::test]
async fn password_stdin_reads_one_line_without_its_newline() {
    let env = Env::new(&[]);
    env.ok(
        &["user", "add", "carol", "--password-stdin"],
        Some("pass word with spaces \r\nsecond line\n"),
    );
    let server = env.serve();
    let http = reqwest::Client::new();
    assert_eq!(
        login(&http, &server.base, "carol", "pass word with spaces ")
            .await
            .status(),
        200
    );
    assert_eq!(
        login(&http, &server.base, "carol", "pass word with spaces \r")
            .await
            .status(),
        400
    );

    let short = env.cli(
        &["user", "add", "dave", "--password-stdin"],
        Some("short\n"),
    );
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 8"));
    let duplicate = env.cli(
        &["user", "add", "carol", "--password-stdin"],
        Some("another password\n"),
    );
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already exists"));
}

/// `user add --email --admin`, `user admin NAME on|off` (SPEC §13, §15).
#[tokio::test]
async fn users_get_an_address_and_the_admin_role_from_the_command_line() {
    let env = Env::new(&[]);
    let added = env.ok(
        &[
            "user",
            "add",
            "erin",
            "--password-stdin",
            "--email",
            "Erin@Example.com",
            "--admin",
        ],
        Some("a long enough password\n"),
    );
    assert!(added.contains("an admin"), "{added}");
    assert!(
        added.contains("a verification link was sent to Erin@Example.com"),
        "{added}"
    );
    let users: Value = serde_json::from_str(&env.ok(&["user", "list", "--json"], None)).unwrap();
    assert_eq!(users[0]["email"], "Erin@Example.com");
    assert_eq!(users[0]["email_verified"], false);
    assert_eq!(users[0]["admin"], true);
    env.ok(&["user", "admin", "erin", "off"], None);
    let users: Value = serde_json::from_str(&env.ok(&["user", "list", "--json"], None)).unwrap();
    assert_eq!(users[0]["admin"], false);
    let bad = env.cli(&["user", "admin", "erin", "maybe"], None);
    assert!(!bad.status.success());
    let taken = env.cli(
        &[
            "user",
            "add",
            "frank",
            "--password-stdin",
            "--email",
            "erin@example.COM",
        ],
        Some("a long enough password\n"),
    );
    assert!(!taken.status.success());
    assert!(
        String::from_utf8_lossy(&taken.stderr).contains("another user has this e-mail address")
    );
    let malformed = env.cli(&["user", "add", "gina", "--email", "no address"], None);
    assert!(!malformed.status.success());
}

#[tokio::test]
async fn keys_and_sessions_survive_kill_9() {
    let env = Env::new(&[]);
    env.add_user("alice");
    let http = reqwest::Client::new();
    let server = env.serve();
    let pair = json(login(&http, &server.base, "alice", PASSWORD).await).await;
    let jwks_before = json(
        http.get(server.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    server.kill9();

    let server = env.serve();
    assert_eq!(
        me_status(&http, &server.url("/api/me"), s(&pair, "access_token")).await,
        200
    );
    let jwks_after = json(
        http.get(server.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(jwks_before, jwks_after);
    let refreshed = http
        .post(server.url("/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", s(&pair, "refresh_token")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
}

#[test]
fn bad_configuration_stops_start_up_with_one_clear_message() {
    let cases: Vec<(&str, &str, &str)> = vec![
        ("LATCHKEY_ACCESS_TTL", "soon", "LATCHKEY_ACCESS_TTL"),
        ("LATCHKEY_LISTEN", "nowhere", "LATCHKEY_LISTEN"),
        ("LATCHKEY_SIGNING_ALG", "HS256", "LATCHKEY_SIGNING_ALG"),
        ("LATCHKEY_MASTER_KEY", "not-hex", "LATCHKEY_MASTER_KEY"),
        (
            "LATCHKEY_DATABASE_URL",
            "sqlite:///no/such/dir/latchkey.db",
            "LATCHKEY_DATABASE_URL",
        ),
        (
            "LATCHKEY_PASSWORD_GRANT",
            "perhaps",
            "LATCHKEY_PASSWORD_GRANT",
        ),
    ];
    for (name, value, expected) in cases {
        let mut env = Env::new(&[]);
        env.set(name, value);
        let output = env.cli(&["serve"], None);
        assert!(!output.status.success(), "{name}={value} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{name}={value}: {stderr}");
    }

    let env = Env::new(&[]);
    let config = env.dir.path().join("latchkey.toml");
    std::fs::write(&config, "acces_ttl = \"5m\"\n").unwrap();
    let output = env.cli(&["--config", config.to_str().unwrap(), "serve"], None);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("acces_ttl") && stderr.contains("unknown setting"),
        "{stderr}"
    );
}

#[tokio::test]
async fn config_file_and_environment_both_apply() {
    let mut env = Env::new(&[]);
    let config = env.dir.path().join("latchkey.toml");
    std::fs::write(&config, "access_ttl = \"2m\"\naudience = \"from-file\"\n").unwrap();
    env.set("LATCHKEY_AUDIENCE", "from-env");
    env.set("LATCHKEY_CONFIG", config.to_str().unwrap());
    env.add_user("alice");
    let server = env.serve();
    let http = reqwest::Client::new();
    let pair = json(login(&http, &server.base, "alice", PASSWORD).await).await;
    assert_eq!(pair["expires_in"], 120);
    let introspected = pair["access_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_owned();
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(introspected)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], "from-env");
}

#[tokio::test]
async fn a_wrong_master_key_refuses_to_start() {
    let key_a = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    let key_b = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    let mut env = Env::new(&[("LATCHKEY_MASTER_KEY", key_a)]);
    env.add_user("alice");
    drop(env.serve());
    let db = std::fs::read(env.db_path()).unwrap();
    assert!(
        !db.windows(11).any(|w| w == b"lk-plain-v1"),
        "secrets stored unsealed"
    );

    env.set("LATCHKEY_MASTER_KEY", key_b);
    let output = env.cli(&["serve"], None);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("LATCHKEY_MASTER_KEY"));
    env.vars.retain(|(k, _)| k != "LATCHKEY_MASTER_KEY");
    let output = env.cli(&["serve"], None);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("LATCHKEY_MASTER_KEY"));
}

#[tokio::test]
async fn client_add_prints_the_secret_once_and_it_works() {
    let env = Env::new(&[]);
    let out = env.ok(
        &["client", "add", "billing", "--scope", "invoices:read"],
        None,
    );
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
    assert!(secret.starts_with("lk_cs_"));
    let listed = env.ok(&["client", "list"], None);
    assert!(listed.contains(&id) && !listed.contains(&secret));
    let as_json: Value =
        serde_json::from_str(&env.ok(&["client", "add", "other", "--json"], None)).unwrap();
    assert!(s(&as_json, "client_secret").starts_with("lk_cs_"));

    let server = env.serve();
    let response = reqwest::Client::new()
        .post(server.url("/oauth/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["scope"], "invoices:read");
}

/// L9: an operator narrows, re-keys, disables and removes a client from the
/// command line while a server runs; each takes effect at once.
#[tokio::test]
async fn clients_are_managed_from_the_command_line() {
    let env = Env::new(&[]);
    let added: Value = serde_json::from_str(&env.ok(
        &[
            "client",
            "add",
            "billing",
            "--scope",
            "invoices:read invoices:write",
            "--json",
        ],
        None,
    ))
    .unwrap();
    let id = s(&added, "client_id").to_owned();
    let secret = s(&added, "client_secret").to_owned();
    let server = env.serve();
    let http = reqwest::Client::new();
    let status = |secret: &str, scope: &'static str| {
        let request = http
            .post(server.url("/oauth/token"))
            .basic_auth(&id, Some(secret))
            .form(&[("grant_type", "client_credentials"), ("scope", scope)]);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(&secret, "invoices:write").await, 200);
    let out = env.ok(&["client", "set-scope", &id, "invoices:read"], None);
    assert!(out.contains("invoices:read"), "{out}");
    assert_eq!(status(&secret, "invoices:write").await, 400);
    let rotated: Value =
        serde_json::from_str(&env.ok(&["client", "rotate-secret", &id, "--json"], None)).unwrap();
    let new_secret = s(&rotated, "client_secret").to_owned();
    assert_ne!(new_secret, secret);
    assert_eq!(status(&secret, "invoices:read").await, 401);
    assert_eq!(status(&new_secret, "invoices:read").await, 200);
    for (command, expected) in [("disable", 401), ("enable", 200), ("remove", 401)] {
        env.ok(&["client", command, &id], None);
        assert_eq!(
            status(&new_secret, "invoices:read").await,
            expected,
            "{command}"
        );
    }
    assert!(!env.ok(&["client", "list"], None).contains(&id));
    let unknown = env.cli(&["client", "remove", "lkc_nobody"], None);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no client"));
    let audit = env.ok(&["audit", "--limit", "50"], None);
    for kind in [
        "client_scope_changed",
        "client_secret_rotated",
        "client_disabled",
        "client_enabled",
        "client_removed",
    ] {
        assert!(audit.contains(kind), "{kind} not in {audit}");
    }
}

#[tokio::test]
async fn a_stock_oauth2_client_works_unmodified() {
    let env = Env::new(&[("LATCHKEY_PASSWORD_GRANT", "true")]);
    env.add_user("alice");
    let out = env.ok(&["client", "add", "stock", "--scope", "read"], None);
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
    let server = env.serve();
    let http = oauth2::reqwest::Client::builder()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let client = BasicClient::new(ClientId::new(id))
        .set_client_secret(ClientSecret::new(secret))
        .set_token_uri(TokenUrl::new(server.url("/oauth/token")).unwrap());

    let token = client
        .exchange_password(
            &ResourceOwnerUsername::new("alice".into()),
            &ResourceOwnerPassword::new(PASSWORD.into()),
        )
        .request_async(&http)
        .await
        .expect("password grant");
    let first_refresh = token.refresh_token().expect("refresh token").clone();
    assert!(first_refresh.secret().starts_with("lk_rt_"));

    let rotated = client
        .exchange_refresh_token(&first_refresh)
        .request_async(&http)
        .await
        .expect("refresh grant");
    assert_ne!(
        rotated.refresh_token().unwrap().secret(),
        first_refresh.secret()
    );

    let replay = client
        .exchange_refresh_token(&RefreshToken::new(first_refresh.secret().clone()))
        .request_async(&http)
        .await;
    match replay {
        Err(oauth2::RequestTokenError::ServerResponse(e)) => {
            assert_eq!(
                e.error(),
                &oauth2::basic::BasicErrorResponseType::InvalidGrant
            );
        }
        other => panic!("replay should be invalid_grant: {other:?}"),
    }

    let service = client
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .expect("client credentials");
    assert!(service.refresh_token().is_none());
    assert_eq!(service.expires_in().map(|d| d.as_secs()), Some(600));
}

#[tokio::test]
async fn operators_list_and_revoke_sessions_and_read_the_audit_trail() {
    let env = Env::new(&[]);
    env.add_user("alice");
    let server = env.serve();
    let http = reqwest::Client::new();
    let pair = json(login(&http, &server.base, "alice", PASSWORD).await).await;
    assert_eq!(
        login(&http, &server.base, "alice", "not the password")
            .await
            .status(),
        400
    );

    let listed: Value =
        serde_json::from_str(&env.ok(&["sessions", "list", "--user", "alice", "--json"], None))
            .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let sid = s(&listed[0], "id").to_owned();
    assert!(
        env.ok(&["sessions", "list", "--user", "alice"], None)
            .contains(&sid)
    );

    // The server has read the session (and may hold it in memory) before
    // another process revokes it.
    for _ in 0..3 {
        assert_eq!(
            me_status(&http, &server.url("/api/me"), s(&pair, "access_token")).await,
            200
        );
    }
    env.ok(&["sessions", "revoke", &sid], None);
    assert_eq!(
        me_status(&http, &server.url("/api/me"), s(&pair, "access_token")).await,
        401
    );

    let second = json(login(&http, &server.base, "alice", PASSWORD).await).await;
    assert_eq!(
        me_status(&http, &server.url("/api/me"), s(&second, "access_token")).await,
        200
    );
    env.ok(&["sessions", "revoke", "--user", "alice"], None);
    assert_eq!(
        me_status(&http, &server.url("/api/me"), s(&second, "access_token")).await,
        401
    );

    let text = env.ok(&["audit", "--user", "alice"], None);
    for kind in ["login", "login_failed", "session_revoked"] {
        assert!(text.contains(kind), "{kind} missing from\n{text}");
    }
    let failed = env.ok(&["audit", "--kind", "login_failed", "--json"], None);
    let events: Vec<Value> = failed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["kind"], "login_failed");
    assert_eq!(events[0]["ip"], "127.0.0.1");
}

#[tokio::test]
async fn logs_never_hold_a_token_or_a_password() {
    let env = Env::new(&[("LATCHKEY_LOG", "debug"), ("LATCHKEY_LOG_FORMAT", "json")]);
    env.add_user("alice");
    let server = env.serve();
    let http = reqwest::Client::new();
    assert_eq!(
        login(&http, &server.base, "alice", "wrong password!")
            .await
            .status(),
        400
    );
    let pair = json(login(&http, &server.base, "alice", PASSWORD).await).await;
    let refresh = |token: String| {
        http.post(server.url("/oauth/token"))
            .form(&[
                ("grant_type", "refresh_token".to_owned()),
                ("refresh_token", token),
            ])
            .send()
    };
    let next = json(refresh(s(&pair, "refresh_token").to_owned()).await.unwrap()).await;
    refresh(s(&pair, "refresh_token").to_owned()).await.unwrap();
    http.get(server.url("/api/me"))
        .bearer_auth(s(&next, "access_token"))
        .send()
        .await
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = server.log_text();
    assert!(log.contains("reuse_detected"), "{log}");
    for secret in [
        PASSWORD,
        "wrong password!",
        s(&pair, "refresh_token"),
        s(&next, "refresh_token"),
        s(&pair, "access_token"),
        s(&next, "access_token"),
    ] {
        assert!(!log.contains(secret), "the log holds a secret");
    }
}

const MASTER_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

#[tokio::test]
async fn keys_rotate_without_the_master_key_never_adds_a_plain_key_beside_sealed_ones() {
    let mut env = Env::new(&[("LATCHKEY_MASTER_KEY", MASTER_KEY)]);
    drop(env.serve());
    env.vars.retain(|(k, _)| k != "LATCHKEY_MASTER_KEY");
    let output = env.cli(&["keys", "rotate"], None);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("LATCHKEY_MASTER_KEY"));
    let db = std::fs::read(env.db_path()).unwrap();
    assert!(
        !db.windows(11).any(|w| w == b"lk-plain-v1"),
        "a plain key was stored"
    );
    env.set("LATCHKEY_MASTER_KEY", MASTER_KEY);
    env.ok(&["keys", "rotate"], None);
}

#[tokio::test]
async fn a_server_with_a_master_key_refuses_plain_keys_until_they_are_sealed() {
    let mut env = Env::new(&[]);
    env.add_user("alice");
    let server = env.serve();
    let http = reqwest::Client::new();
    let before = json(login(&http, &server.base, "alice", PASSWORD).await).await;
    drop(server);

    env.set("LATCHKEY_MASTER_KEY", MASTER_KEY);
    let output = env.cli(&["serve"], None);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("keys seal"));
    let sealed = env.ok(&["keys", "seal"], None);
    assert!(
        sealed.contains("signing key") && sealed.contains("refresh-token key"),
        "{sealed}"
    );
    assert!(env.ok(&["keys", "seal"], None).contains("sealed already"));

    // Sealed, not replaced: the session from before still refreshes.
    let server = env.serve();
    let refreshed = http
        .post(server.url("/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", before["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
}

#[tokio::test]
async fn user_passwd_keeps_sessions_unless_asked_to_revoke_them() {
    let env = Env::new(&[]);
    env.add_user("alice");
    let server = env.serve();
    let http = reqwest::Client::new();
    let first = json(login(&http, &server.base, "alice", PASSWORD).await).await;
    let me = |token: String| {
        let request = http.get(server.url("/api/me")).bearer_auth(token);
        async move { request.send().await.unwrap().status() }
    };
    let access = |pair: &Value| pair["access_token"].as_str().unwrap().to_owned();

    let out = env.ok(
        &["user", "passwd", "alice", "--password-stdin"],
        Some("second password here\n"),
    );
    assert!(out.contains("stay"), "{out}");
    assert_eq!(me(access(&first)).await, 200);

    let second = json(login(&http, &server.base, "alice", "second password here").await).await;
    let out = env.ok(
        &[
            "user",
            "passwd",
            "alice",
            "--password-stdin",
            "--revoke-sessions",
        ],
        Some("third password here\n"),
    );
    assert!(out.contains("2 session(s) revoked"), "{out}");
    assert_eq!(me(access(&first)).await, 401);
    assert_eq!(me(access(&second)).await, 401);
    assert_eq!(
        login(&http, &server.base, "alice", "third password here")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn the_command_line_refuses_control_characters_in_names() {
    let env = Env::new(&[]);
    for (args, why) in [
        (
            vec!["user", "add", "al\u{7}ice", "--password-stdin"],
            "U+0007",
        ),
        (
            vec!["client", "add", "bad\u{1b}[2Jname"],
            "control characters",
        ),
    ] {
        let output = env.cli(&args, Some(&format!("{PASSWORD}\n")));
        assert!(!output.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(why),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(!env.ok(&["user", "list"], None).contains("al"));
}

/// L4: the command line folds names like the server, and names stored
/// before names were folded are folded when the database is next opened,
/// unless that would make two accounts one (then the later one keeps its
/// spelling, and still logs in with it exactly).
#[tokio::test]
async fn names_are_folded_on_the_command_line_and_in_existing_databases() {
    let env = Env::new(&[]);
    let added = env.ok(
        &["user", "add", "Alice", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(added.contains("user alice added"), "{added}");
    let twin = env.cli(
        &["user", "add", "ＡＬＩＣＥ", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(!twin.status.success());
    assert!(String::from_utf8_lossy(&twin.stderr).contains("already exists"));
    env.add_user("carol");
    env.add_user("dave");
    env.add_user("eve");
    // As an earlier version stored them: spellings of their own.
    let db = rusqlite::Connection::open(env.db_path()).unwrap();
    db.execute(
        "UPDATE users SET username = 'Carol' WHERE username = 'carol'",
        [],
    )
    .unwrap();
    db.execute(
        "UPDATE users SET username = 'Dave' WHERE username = 'eve'",
        [],
    )
    .unwrap();
    drop(db);
    let list = env.ok(&["user", "list"], None);
    assert!(list.contains("carol") && !list.contains("Carol"), "{list}");
    assert!(list.contains("Dave") && list.contains("dave"), "{list}");
    let server = env.serve();
    let http = reqwest::Client::new();
    for (name, user) in [("CAROL", "carol"), ("Dave", "Dave"), ("DAVE", "dave")] {
        let pair = json(login(&http, &server.base, name, PASSWORD).await).await;
        let me = http
            .get(server.url("/api/me"))
            .bearer_auth(s(&pair, "access_token"))
            .send()
            .await
            .unwrap();
        assert_eq!(json(me).await["username"], user, "{name}");
    }
}

#[tokio::test]
async fn clients_register_redirect_uris_and_first_party_trust() {
    let env = Env::new(&[]);
    let added: Value = serde_json::from_str(&env.ok(
        &[
            "client",
            "add",
            "Photos",
            "--public",
            "--first-party",
            "--scope",
            "openid profile",
            "--redirect-uri",
            "https://photos.example/cb",
            "--redirect-uri",
            "http://127.0.0.1/cb",
            "--redirect-uri",
            "com.example.photos:/cb",
            "--json",
        ],
        None,
    ))
    .unwrap();
    assert_eq!(added["first_party"], true);
    assert_eq!(added["redirect_uris"].as_array().unwrap().len(), 3);
    assert!(added.get("client_secret").is_none());
    let listed: Value = serde_json::from_str(&env.ok(&["client", "list", "--json"], None)).unwrap();
    assert_eq!(listed[0]["redirect_uris"], added["redirect_uris"]);
    // http only on loopback, no fragment, nothing relative.
    for bad in [
        "http://photos.example/cb",
        "https://photos.example/cb#x",
        "/cb",
        "javascript:alert(1)",
    ] {
        let out = env.cli(
            &["client", "add", "Bad", "--public", "--redirect-uri", bad],
            None,
        );
        assert!(!out.status.success(), "{bad} was accepted");
    }
    let listed: Value = serde_json::from_str(&env.ok(&["client", "list", "--json"], None)).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
}
