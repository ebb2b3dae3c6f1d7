//! Several `latchkey serve` processes on one PostgreSQL database.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

mod common;

use std::time::Duration;

use common::{Env, PASSWORD, SESSION_LOOKUPS, Server};
use latchkey_core::jwt::Verifier;
use latchkey_core::keys::PublicJwk;
use serde_json::Value;
use sqlx::Connection;

async fn login(http: &reqwest::Client, server: &Server) -> Value {
    login_as(http, server, "alice").await
}

async fn login_as(http: &reqwest::Client, server: &Server, username: &str) -> Value {
    let response = http
        .post(server.url("/auth/login"))
        .form(&[("username", username), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn refresh(http: &reqwest::Client, server: &Server, token: &str) -> reqwest::Response {
    http.post(server.url("/oauth/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap()
}

async fn me(http: &reqwest::Client, server: &Server, token: &str) -> u16 {
    common::bearer_status(http, &server.url("/api/me"), token).await
}

fn s<'a>(value: &'a Value, name: &str) -> &'a str {
    value[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {value}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_refreshes_over_two_instances_give_one_success() {
    let Some(env) = Env::postgres(&[]).await else {
        return;
    };
    env.add_user("alice");
    let a = env.serve();
    let b = env.serve();
    let http = reqwest::Client::new();
    let pair = login(&http, &a).await;
    let token = s(&pair, "refresh_token").to_owned();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let url = if i % 2 == 0 {
            a.url("/oauth/token")
        } else {
            b.url("/oauth/token")
        };
        let http = http.clone();
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
            response.status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 400),
        "{statuses:?}"
    );

    // Never two live refresh tokens in one session.
    let mut db = sqlx::PgConnection::connect(&env.database_url())
        .await
        .unwrap();
    let most: Option<i64> = sqlx::query_scalar(
        "SELECT max(n) FROM (SELECT count(*) AS n FROM refresh_tokens WHERE used_at IS NULL GROUP BY session_id) c",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert!(most.unwrap_or(0) <= 1);
}

#[tokio::test]
async fn replay_on_one_instance_kills_the_session_on_both() {
    let Some(env) = Env::postgres(&[]).await else {
        return;
    };
    env.add_user("alice");
    let a = env.serve();
    let b = env.serve();
    let http = reqwest::Client::new();
    let first = login(&http, &a).await;
    let response = refresh(&http, &b, s(&first, "refresh_token")).await;
    assert_eq!(response.status(), 200);
    let second: Value = response.json().await.unwrap();
    assert_eq!(me(&http, &a, s(&second, "access_token")).await, 200);

    assert_eq!(
        refresh(&http, &a, s(&first, "refresh_token"))
            .await
            .status(),
        400
    );
    for server in [&a, &b] {
        assert_eq!(me(&http, server, s(&second, "access_token")).await, 401);
        assert_eq!(
            refresh(&http, server, s(&second, "refresh_token"))
                .await
                .status(),
            400
        );
    }
}

#[tokio::test]
async fn a_verifier_holding_the_published_jwks_keeps_working_through_a_rotation() {
    let Some(env) = Env::postgres(&[("LATCHKEY_KEYS_REFRESH_INTERVAL", "1s")]).await else {
        return;
    };
    env.add_user("alice");
    let a = env.serve();
    let b = env.serve();
    let http = reqwest::Client::new();
    let before = login(&http, &a).await;

    env.ok(&["keys", "rotate", "--activate-in", "3s"], None);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    // Both instances publish the next key before it signs.
    let mut jwks: Value = Value::Null;
    for server in [&a, &b] {
        jwks = http
            .get(server.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    }
    let mut verifier = Verifier::new("http://127.0.0.1:8080", "latchkey");
    for key in jwks["keys"].as_array().unwrap() {
        verifier
            .insert(&serde_json::from_value::<PublicJwk>(key.clone()).unwrap())
            .unwrap();
    }
    let now = || latchkey_server::state::now();
    let kid = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();

    tokio::time::sleep(Duration::from_millis(3000)).await;
    let after = login(&http, &b).await;
    let after_a = login(&http, &a).await;
    assert_ne!(
        kid(s(&before, "access_token")),
        kid(s(&after, "access_token"))
    );
    assert_eq!(
        kid(s(&after, "access_token")),
        kid(s(&after_a, "access_token"))
    );
    for token in [s(&before, "access_token"), s(&after, "access_token")] {
        assert!(verifier.verify(token, now()).is_ok());
        assert_eq!(me(&http, &a, token).await, 200);
        assert_eq!(me(&http, &b, token).await, 200);
    }
    let listed = env.ok(&["keys", "list"], None);
    assert!(
        listed.contains("retiring") && listed.contains("active"),
        "{listed}"
    );
}

#[tokio::test]
async fn signing_keys_are_sealed_in_the_shared_database() {
    let key = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";
    let Some(mut env) = Env::postgres(&[("LATCHKEY_MASTER_KEY", key)]).await else {
        return;
    };
    env.add_user("alice");
    let a = env.serve();
    let http = reqwest::Client::new();
    login(&http, &a).await;
    let mut db = sqlx::PgConnection::connect(&env.database_url())
        .await
        .unwrap();
    let blobs: Vec<Vec<u8>> = sqlx::query_scalar("SELECT private_blob FROM signing_keys")
        .fetch_all(&mut db)
        .await
        .unwrap();
    let secrets: Vec<Vec<u8>> = sqlx::query_scalar("SELECT value FROM secrets")
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert!(!blobs.is_empty() && !secrets.is_empty());
    for blob in blobs.iter().chain(&secrets) {
        assert!(blob.starts_with(b"lk-sealed-v1:"));
    }
    // An instance with another master key refuses to start.
    env.set("LATCHKEY_MASTER_KEY", &"ab".repeat(32));
    let output = env.cli(&["serve"], None);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("LATCHKEY_MASTER_KEY"));
}

async fn until_refused(http: &reqwest::Client, server: &Server, token: &str) {
    for _ in 0..100 {
        if me(http, server, token).await == 401 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the revoked token is still accepted");
}

/// Alice logs in on A; B reads her session once over 20 requests, then
/// refuses her token after a logout on A without reading it again.
async fn logout_on_a_reaches_b_without_a_lookup(http: &reqwest::Client, a: &Server, b: &Server) {
    let pair = login(http, a).await;
    let token = s(&pair, "access_token");
    for _ in 0..20 {
        assert_eq!(me(http, b, token).await, 200);
    }
    let looked_up = b.metric(SESSION_LOOKUPS).await;
    assert!(looked_up <= 1, "B read the session {looked_up} times");
    let response = http
        .post(a.url("/auth/logout"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    until_refused(http, b, token).await;
    assert_eq!(b.metric(SESSION_LOOKUPS).await, looked_up);
}

#[tokio::test]
async fn with_redis_revocations_reach_every_instance_without_asking_the_database() {
    let Some(env) = Env::postgres(&[]).await else {
        return;
    };
    let Some(env) = env.with_redis().await else {
        return;
    };
    env.add_user("alice");
    let a = env.serve();
    let b = env.serve();
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Logout on A: B refuses the token, having learned it from Redis.
    logout_on_a_reaches_b_without_a_lookup(&http, &a, &b).await;

    // The command line announces too.
    let second = login(&http, &a).await;
    assert_eq!(me(&http, &b, s(&second, "access_token")).await, 200);
    let before = b.metric(SESSION_LOOKUPS).await;
    env.ok(&["sessions", "revoke", "--user", "alice"], None);
    until_refused(&http, &b, s(&second, "access_token")).await;
    assert_eq!(b.metric(SESSION_LOOKUPS).await, before);
}

#[tokio::test]
async fn with_redis_failed_logins_are_counted_across_instances() {
    let Some(env) = Env::postgres(&[("LATCHKEY_THROTTLE_ACCOUNT", "3/1m")]).await else {
        return;
    };
    let Some(env) = env.with_redis().await else {
        return;
    };
    env.add_user("alice");
    let a = env.serve();
    let b = env.serve();
    let http = reqwest::Client::new();
    let attempt = |server: &Server, password: &str| {
        http.post(server.url("/auth/login"))
            .form(&[("username", "alice"), ("password", password)])
            .send()
    };
    assert_eq!(attempt(&a, "wrong password!").await.unwrap().status(), 400);
    assert_eq!(attempt(&b, "wrong password!").await.unwrap().status(), 400);
    assert_eq!(attempt(&a, "wrong password!").await.unwrap().status(), 400);
    let response = attempt(&b, PASSWORD).await.unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
}

/// 200 wrong passwords at once, split over two instances sharing Redis:
/// at most the limit (10) are checked in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_redis_concurrent_wrong_passwords_are_checked_at_most_the_limit() {
    let Some(env) = Env::postgres(&[]).await else {
        return;
    };
    let Some(env) = env.with_redis().await else {
        return;
    };
    env.add_user("alice");
    let a = env.serve();
    let b = env.serve();
    let http = reqwest::Client::new();
    let attempts: Vec<_> = (0..200)
        .map(|i| {
            let server = if i % 2 == 0 { &a } else { &b };
            let request = http
                .post(server.url("/auth/login"))
                .form(&[("username", "alice"), ("password", "wrong password!")]);
            tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut checked = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            400 => checked += 1,
            429 | 503 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert!((1..=10).contains(&checked), "{checked} passwords checked");
}

#[tokio::test]
async fn without_redis_instances_follow_revocations_through_postgresql() {
    let Some(env) = Env::postgres(&[]).await else {
        return;
    };
    env.add_user("alice");
    env.add_user("bob");
    let a = env.serve();
    let b = env.serve();
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Logout on A: the database announces it, and B refuses the token
    // without reading the session again.
    logout_on_a_reaches_b_without_a_lookup(&http, &a, &b).await;

    // The command line, with no Redis to announce through.
    let second = login(&http, &a).await;
    let second = s(&second, "access_token");
    assert_eq!(me(&http, &b, second).await, 200);
    assert_eq!(me(&http, &a, second).await, 200);
    env.ok(&["sessions", "revoke", "--user", "alice"], None);
    until_refused(&http, &b, second).await;
    until_refused(&http, &a, second).await;

    // SQL by hand: disabling a user in the database.
    let bobs = login_as(&http, &a, "bob").await;
    let bobs = s(&bobs, "access_token");
    assert_eq!(me(&http, &b, bobs).await, 200);
    let mut db = sqlx::PgConnection::connect(&env.database_url())
        .await
        .unwrap();
    sqlx::query("UPDATE users SET disabled = TRUE WHERE username = 'bob'")
        .execute(&mut db)
        .await
        .unwrap();
    until_refused(&http, &b, bobs).await;
}
