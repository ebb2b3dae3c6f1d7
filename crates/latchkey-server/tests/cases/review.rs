// Included once per storage backend by tests/review.rs; `BACKEND` names it.

use std::sync::Arc;
use std::time::Duration;

use latchkey_core::clock::ManualClock;

use crate::common::{PASSWORD, TestApp, claims, error_code, field};
use latchkey_core::refresh::RefreshToken;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn description(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
        body["error_description"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Sends many requests at once and counts the answers by status.
async fn at_once(
    app: &TestApp,
    count: usize,
    form: impl Fn(usize) -> Vec<(String, String)>,
) -> std::collections::BTreeMap<u16, usize> {
    let requests: Vec<_> = (0..count)
        .map(|i| {
            let request = app.http.post(app.url("/auth/login")).form(&form(i));
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                if status == 429 || status == 503 {
                    let retry = response.headers().get("retry-after").unwrap();
                    assert!(retry.to_str().unwrap().parse::<i64>().unwrap() >= 1);
                }
                status
            })
        })
        .collect();
    let mut by_status = std::collections::BTreeMap::new();
    for request in requests {
        *by_status.entry(request.await.unwrap()).or_insert(0) += 1;
    }
    by_status
}

/// 400 wrong passwords at once against one account: at most the limit (10)
/// are checked; the rest are refused before any hashing, and the right
/// password is then refused too until the window ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_passwords_are_checked_at_most_the_limit() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let by_status = at_once(&app, 400, |_| {
        vec![
            ("username".into(), "alice".into()),
            ("password".into(), "wrong".into()),
        ]
    })
    .await;
    let checked = by_status.get(&400).copied().unwrap_or(0);
    assert!((1..=10).contains(&checked), "{by_status:?}");
    let refused = by_status.get(&429).copied().unwrap_or(0) + by_status.get(&503).copied().unwrap_or(0);
    assert_eq!(checked + refused, 400, "{by_status:?}");
    let failures = app.audit("login_failed").await;
    assert!(failures.len() <= 10, "{} passwords checked", failures.len());
    let right = app
        .post_form("/auth/login", &[("username", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(right.status(), 429);
}

/// The queue of logins waiting for a hash is bounded: a flood beyond it is
/// answered 503 with Retry-After at once, and such logins do not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_beyond_the_hash_queue_gets_503() {
    let app = start!(&[("LATCHKEY_THROTTLE_IP", "10000/15m")]);
    let by_status = at_once(&app, 300, |i| {
        vec![
            ("username".into(), format!("nobody{i}")),
            ("password".into(), "wrong".into()),
        ]
    })
    .await;
    assert!(by_status.get(&503).copied().unwrap_or(0) > 0, "{by_status:?}");
    assert_eq!(
        by_status.get(&400).copied().unwrap_or(0) + by_status.get(&503).copied().unwrap_or(0),
        300,
        "{by_status:?}"
    );
    // Hashed: at most the queue's bound were waiting at any time, and only
    // hashed attempts were audited.
    let failures = app.audit("login_failed").await.len();
    assert!(failures <= by_status.get(&400).copied().unwrap_or(0));
}

/// An over-long username is refused before it reaches the throttle's tables.
#[tokio::test]
async fn an_over_long_username_is_refused_before_counting() {
    let app = start!(&[]);
    let long = "a".repeat(16 * 1024 - 100);
    let (status, code) = error_code(
        app.post_form("/auth/login", &[("username", &long), ("password", "x")])
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"));
    assert!(app.audit("login_failed").await.is_empty());
}

/// A user disabled by hand (not through Latchkey, so no session was
/// revoked) can no longer refresh.
#[tokio::test]
async fn a_disabled_user_cannot_refresh() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let pair = app.login("alice").await;
    app.execute_sql("UPDATE users SET disabled = TRUE WHERE username = 'alice'")
        .await;
    let (status, code, _) = description(app.refresh(field(&pair, "refresh_token")).await).await;
    assert_eq!((status, code.as_str()), (400, "invalid_grant"));
    assert_eq!(app.audit("refresh_refused").await.len(), 1);
}

/// Any method a client invents is one label, `other`: the metrics cannot
/// be grown by input.
#[tokio::test]
async fn invented_methods_do_not_grow_the_metrics() {
    let app = start!(&[]);
    for i in 0..50 {
        let method = reqwest::Method::from_bytes(format!("FOO{i}").as_bytes()).unwrap();
        app.http.request(method, app.url("/healthz")).send().await.unwrap();
    }
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains("FOO"), "{text}");
    assert!(text.contains("method=\"other\""));
    assert!(app.state.metrics.latency_series() <= 3);
}

/// Unset `LATCHKEY_SCOPES` means the default scope and `openid`; a client
/// caps what logins through it get.
#[tokio::test]
async fn logins_get_only_the_allowed_scopes() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let (status, code) = error_code(
        app.post_form(
            "/auth/login",
            &[("username", "alice"), ("password", PASSWORD), ("scope", "admin")],
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "invalid_scope"));
    let response = app
        .post_form(
            "/auth/login",
            &[("username", "alice"), ("password", PASSWORD), ("scope", "openid profile")],
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["scope"], "openid profile");

    let (client, _) = app.add_client("lkc_app", "profile", false).await;
    let (status, code) = error_code(
        app.post_form(
            "/auth/login",
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("client_id", &client),
                ("scope", "openid"),
            ],
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "invalid_scope"));
    let body: Value = app
        .post_form(
            "/auth/login",
            &[("username", "alice"), ("password", PASSWORD), ("client_id", &client)],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["scope"], "profile");
}

/// A revocation stamped before a poll but committed after it is still
/// listed by the next poll.
#[tokio::test]
async fn the_revocation_feed_lists_a_revocation_that_committed_late() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let (rs, secret) = app.add_client("lkc_feed", "", true).await;
    let secret = secret.unwrap();
    let feed = |since: Option<i64>| {
        let url = match since {
            Some(s) => app.url(&format!("/oauth/revocations?since={s}")),
            None => app.url("/oauth/revocations"),
        };
        let request = app.http.get(url).basic_auth(&rs, Some(&secret));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let pair = app.login("alice").await;
    let sid = claims(field(&pair, "access_token"))["sid"].as_str().unwrap().to_owned();
    let first = feed(None).await;
    let polled_at = latchkey_server::state::now();
    // Stamped a second before the poll, visible only after it.
    app.execute_sql(&format!(
        "UPDATE sessions SET revoked_at = {}, revoked_reason = 'logout' WHERE id = '{sid}'",
        polled_at - 1
    ))
    .await;
    let next = feed(Some(first["next_since"].as_i64().unwrap())).await;
    let listed: Vec<&str> = next["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item["sid"].as_str())
        .collect();
    assert_eq!(listed, [sid.as_str()]);
}

/// A client that sends its headers too slowly is cut off.
#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off() {
    let app = start!(&[("LATCHKEY_REQUEST_TIMEOUT", "1s")]);
    let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(b"POST /auth/login HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection is still open after 5 s");
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
}

/// A client that sends its body too slowly gets 408 and is cut off.
#[tokio::test]
async fn a_client_trickling_its_body_gets_408() {
    let app = start!(&[("LATCHKEY_REQUEST_TIMEOUT", "1s")]);
    let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(
            b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nusername=",
        )
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection is still open after 5 s");
    let answer = String::from_utf8_lossy(&buf);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// Past `LATCHKEY_MAX_CONNECTIONS`, a connection waits until another ends.
#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_slot() {
    let app = start!(&[("LATCHKEY_MAX_CONNECTIONS", "2"), ("LATCHKEY_REQUEST_TIMEOUT", "30s")]);
    let address = app.base.trim_start_matches("http://").to_owned();
    let idle_a = tokio::net::TcpStream::connect(&address).await.unwrap();
    let _idle_b = tokio::net::TcpStream::connect(&address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = tokio::net::TcpStream::connect(&address).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(700), third.read_to_end(&mut buf)).await;
    assert!(early.is_err(), "served beyond the cap: {}", String::from_utf8_lossy(&buf));
    drop(idle_a);
    let served = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut buf)).await;
    assert!(served.is_ok());
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
}

/// A NUL byte in any text input is a 400 on every backend, and changes
/// nothing.
#[tokio::test]
async fn nul_bytes_are_refused_with_400() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let (status, code) = error_code(
        app.post_form("/auth/login", &[("username", "al\0ice"), ("password", PASSWORD)])
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"));
    let json_login = app
        .http
        .post(app.url("/auth/login"))
        .json(&json!({"username": "alice\u{0}", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(json_login).await, (400, "invalid_request".into()));
    let pair = app.login("alice").await;
    for form in [
        vec![("grant_type", "refresh_token"), ("refresh_token", field(&pair, "refresh_token")), ("client_id", "lkc\0x")],
        vec![("grant_type", "refresh_token"), ("refresh_token", "lk_rt_\0")],
        vec![("grant_type", "client_credentials"), ("client_id", "\0"), ("client_secret", "x")],
    ] {
        let (status, code) = error_code(app.post_form("/oauth/token", &form).await).await;
        assert_eq!((status, code.as_str()), (400, "invalid_request"), "{form:?}");
    }
    let basic = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth("lkc_\0", Some("secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(basic).await, (400, "invalid_request".into()));
    let sessions = app
        .http
        .delete(app.url("/sessions/ses_%00"))
        .bearer_auth(field(&pair, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(sessions).await, (400, "invalid_request".into()));
    // Nothing changed: the pair still works, nothing was audited as failed.
    assert_eq!(app.refresh(field(&pair, "refresh_token")).await.status(), 200);
    assert!(app.audit("login_failed").await.is_empty());
}

/// A grace-window replay from another address under `BINDING_IP=revoke`
/// revokes the session instead of handing out the successor.
#[tokio::test]
async fn a_grace_replay_meets_the_ip_binding() {
    let app = start!(&[("LATCHKEY_REUSE_GRACE", "30s"), ("LATCHKEY_BINDING_IP", "revoke")]);
    app.add_user("alice").await;
    let pair = app.login("alice").await;
    let old = field(&pair, "refresh_token");
    let rotated: Value = app.refresh(old).await.json().await.unwrap();
    let elsewhere = TestApp::client_from("127.0.0.2");
    let replay = elsewhere
        .post(app.url("/oauth/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", old)])
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(replay).await, (400, "invalid_grant".into()));
    // The session is gone: the successor is dead too.
    let successor = app.refresh(field(&rotated, "refresh_token")).await;
    assert_eq!(error_code(successor).await, (400, "invalid_grant".into()));
}

/// A grace-window replay past the session's absolute end is refused.
#[tokio::test]
async fn a_grace_replay_meets_the_absolute_lifetime() {
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(
        &[("LATCHKEY_REUSE_GRACE", "30s"), ("LATCHKEY_REFRESH_ABSOLUTE_TTL", "60s")],
        clock.clone()
    );
    app.add_user("alice").await;
    let pair = app.login("alice").await;
    let old = field(&pair, "refresh_token");
    assert_eq!(app.refresh(old).await.status(), 200);
    clock.advance(10);
    assert_eq!(app.refresh(old).await.status(), 200, "a replay within the grace window");
    clock.advance(51);
    let replay = app.refresh(old).await;
    assert_eq!(error_code(replay).await, (400, "invalid_grant".into()));
}

/// Narrowing the scope on refresh narrows the access token, not the
/// refresh token (RFC 6749 §6).
#[tokio::test]
async fn a_narrowed_refresh_keeps_the_refresh_tokens_scope() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let body: Value = app
        .post_form(
            "/auth/login",
            &[("username", "alice"), ("password", PASSWORD), ("scope", "openid profile")],
        )
        .await
        .json()
        .await
        .unwrap();
    let narrowed: Value = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", field(&body, "refresh_token")),
                ("scope", "profile"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(narrowed["scope"], "profile");
    assert_eq!(claims(field(&narrowed, "access_token"))["scope"], "profile");
    let next: Value = app.refresh(field(&narrowed, "refresh_token")).await.json().await.unwrap();
    assert_eq!(next["scope"], "openid profile");
}

/// `client_id=first-party`, which first-party access tokens carry, names
/// the first-party public client at the token and revocation endpoints.
#[tokio::test]
async fn first_party_is_a_client_id_the_endpoints_accept() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let pair = app.login("alice").await;
    assert_eq!(claims(field(&pair, "access_token"))["client_id"], "first-party");
    let refreshed = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", field(&pair, "refresh_token")),
                ("client_id", "first-party"),
            ],
        )
        .await;
    assert_eq!(refreshed.status(), 200);
    let refreshed: Value = refreshed.json().await.unwrap();
    let revoked = app
        .post_form(
            "/oauth/revoke",
            &[("token", field(&refreshed, "refresh_token")), ("client_id", "first-party")],
        )
        .await;
    assert_eq!(revoked.status(), 200);
    assert_eq!(app.me(field(&refreshed, "access_token")).await.status(), 401);
}

/// Nothing expires before its lifetime: with whole-second times, a token
/// issued late in a second used to die up to a second early. Issued in
/// second T (really anywhere in [T, T + 1)) with an idle lifetime of 2 s, it
/// is usable through second T + 2 and expired from T + 3.
#[tokio::test]
async fn a_refresh_token_lives_its_whole_idle_lifetime() {
    let clock = Arc::new(ManualClock::at_system_time());
    let app = start!(&[("LATCHKEY_REFRESH_IDLE_TTL", "2s")], clock.clone());
    app.add_user("alice").await;
    let pair = app.login("alice").await;
    clock.advance(2);
    let response = app.refresh(field(&pair, "refresh_token")).await;
    assert_eq!(response.status(), 200);
    let next: Value = response.json().await.unwrap();
    clock.advance(3);
    let late = app.refresh(field(&next, "refresh_token")).await;
    assert_eq!(error_code(late).await, (400, "invalid_grant".into()));
}

/// A refresh with the wrong client, or with another session's access
/// token, is audited and answered like any other refusal.
#[tokio::test]
async fn refused_refreshes_are_audited_and_tell_nothing() {
    let app = start!(&[]);
    app.add_user("alice").await;
    app.add_user("bob").await;
    let (client, _) = app.add_client("lkc_app", "profile", false).await;
    let alice: Value = app
        .post_form(
            "/auth/login",
            &[("username", "alice"), ("password", PASSWORD), ("client_id", &client)],
        )
        .await
        .json()
        .await
        .unwrap();
    let bob = app.login("bob").await;
    let without_client = description(app.refresh(field(&alice, "refresh_token")).await).await;
    let other_session = description(
        app.http
            .post(app.url("/oauth/token"))
            .bearer_auth(field(&alice, "access_token"))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", field(&bob, "refresh_token"))])
            .send()
            .await
            .unwrap(),
    )
    .await;
    let unknown = description(app.refresh(&format!("lk_rt_{}", "A".repeat(43))).await).await;
    assert_eq!(without_client.1, "invalid_grant");
    assert_eq!(without_client, other_session);
    assert_eq!(without_client, unknown);
    let refused = app.audit("refresh_refused").await;
    assert_eq!(refused.len(), 2, "{refused:?}");
    // Both tokens still work for their rightful holders.
    let alice_again = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", field(&alice, "refresh_token")),
                ("client_id", &client),
            ],
        )
        .await;
    assert_eq!(alice_again.status(), 200);
    assert_eq!(app.refresh(field(&bob, "refresh_token")).await.status(), 200);
}

/// Without a grace window, a successor is drawn at random: the hashing
/// key's derivation of the parent is not it.
#[tokio::test]
async fn successors_are_random_without_a_grace_window() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let pair = app.login("alice").await;
    let old = RefreshToken::parse(field(&pair, "refresh_token")).unwrap();
    let next: Value = app.refresh(old.expose()).await.json().await.unwrap();
    let derived = app.state.issuer.refresh_keys().successor(&old);
    assert_ne!(derived.expose(), field(&next, "refresh_token"));

    let graced = start!(&[("LATCHKEY_REUSE_GRACE", "10s")]);
    graced.add_user("alice").await;
    let pair = graced.login("alice").await;
    let old = RefreshToken::parse(field(&pair, "refresh_token")).unwrap();
    let next: Value = graced.refresh(old.expose()).await.json().await.unwrap();
    let derived = graced.state.issuer.refresh_keys().successor(&old);
    assert_eq!(derived.expose(), field(&next, "refresh_token"));
}

/// IPv6 clients are counted by their /64: walking through one's own
/// addresses does not get around the per-address limit.
#[tokio::test]
async fn ipv6_clients_are_throttled_by_their_64() {
    let app = start!(&[
        ("LATCHKEY_TRUSTED_PROXIES", "127.0.0.1"),
        ("LATCHKEY_THROTTLE_IP", "2/15m"),
    ]);
    let attempt = |from: &'static str, user: &'static str| {
        app.http
            .post(app.url("/auth/login"))
            .header("x-forwarded-for", from)
            .form(&[("username", user), ("password", "wrong")])
            .send()
    };
    assert_eq!(attempt("2001:db8:0:7::1", "u1").await.unwrap().status(), 400);
    assert_eq!(attempt("2001:db8:0:7::2", "u2").await.unwrap().status(), 400);
    assert_eq!(attempt("2001:db8:0:7:ffff::3", "u3").await.unwrap().status(), 429);
    assert_eq!(attempt("2001:db8:0:8::1", "u4").await.unwrap().status(), 400);
}
