// Included once per storage backend by tests/browser.rs; `BACKEND` names it.

use crate::common::{PASSWORD, TestApp, error_code, field};
use serde_json::Value;

const ORIGIN: &str = "http://127.0.0.1:8080";

/// Logs in in browser mode; returns the body and the cookie pair
/// (`name=value`) the server set.
async fn browser_login(app: &TestApp) -> (Value, String, String) {
    let response = app
        .http
        .post(app.url("/auth/login"))
        .header("x-latchkey-browser", "1")
        .header("origin", ORIGIN)
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    let pair = set_cookie.split(';').next().unwrap().to_owned();
    (response.json().await.unwrap(), pair, set_cookie)
}

async fn browser_post(app: &TestApp, path: &str, cookie: &str, origin: Option<&str>) -> reqwest::Response {
    let mut request = app
        .http
        .post(app.url(path))
        .header("x-latchkey-browser", "1")
        .header("cookie", cookie);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn the_refresh_token_travels_only_in_a_hardened_cookie() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let (body, pair, set_cookie) = browser_login(&app).await;
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert!(field(&body, "access_token").contains('.'));
    assert!(pair.starts_with("__Secure-lk_rt=lk_rt_"), "{set_cookie}");
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/auth"] {
        assert!(set_cookie.contains(attribute), "{attribute} missing: {set_cookie}");
    }
    assert_eq!(app.me(field(&body, "access_token")).await.status(), 200);
}

#[tokio::test]
async fn the_cookie_rotates_and_its_reuse_revokes_the_session() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let (_, first, _) = browser_login(&app).await;
    let response = browser_post(&app, "/auth/refresh", &first, Some(ORIGIN)).await;
    assert_eq!(response.status(), 200);
    let second = response.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    assert_ne!(first, second);
    let body: Value = response.json().await.unwrap();
    assert!(body.get("refresh_token").is_none());
    // The rotated cookie again: theft, the whole session ends.
    let reused = browser_post(&app, "/auth/refresh", &first, Some(ORIGIN)).await;
    assert_eq!(error_code(reused).await, (400, "invalid_grant".into()));
    let after = browser_post(&app, "/auth/refresh", &second, Some(ORIGIN)).await;
    assert_eq!(error_code(after).await, (400, "invalid_grant".into()));
    assert_eq!(app.me(field(&body, "access_token")).await.status(), 401);
}

#[tokio::test]
async fn another_origin_or_no_header_cannot_refresh_or_log_out() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let (body, cookie, _) = browser_login(&app).await;
    for origin in [Some("https://evil.example"), None] {
        for path in ["/auth/refresh", "/auth/logout"] {
            let response = browser_post(&app, path, &cookie, origin).await;
            assert_eq!(response.status(), 403, "{path} from {origin:?}");
        }
    }
    // Without the custom header (a cross-site form could send the cookie).
    let plain = app
        .http
        .post(app.url("/auth/refresh"))
        .header("cookie", &cookie)
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 403);
    // Nothing changed: the cookie still refreshes, the session still serves.
    assert_eq!(app.me(field(&body, "access_token")).await.status(), 200);
    assert_eq!(browser_post(&app, "/auth/refresh", &cookie, Some(ORIGIN)).await.status(), 200);
}

#[tokio::test]
async fn logout_revokes_the_session_and_clears_the_cookie() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let (body, cookie, _) = browser_login(&app).await;
    let response = browser_post(&app, "/auth/logout", &cookie, Some(ORIGIN)).await;
    assert_eq!(response.status(), 204);
    let cleared = response.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(app.me(field(&body, "access_token")).await.status(), 401);
    let refresh = browser_post(&app, "/auth/refresh", &cookie, Some(ORIGIN)).await;
    assert_eq!(error_code(refresh).await, (400, "invalid_grant".into()));
}

#[tokio::test]
async fn plain_http_development_drops_secure_and_the_prefix() {
    let app = start!(&[("LATCHKEY_COOKIE_SECURE", "false")]);
    app.add_user("alice").await;
    let (_, pair, set_cookie) = browser_login(&app).await;
    assert!(pair.starts_with("lk_rt=lk_rt_"), "{set_cookie}");
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"));
    assert_eq!(browser_post(&app, "/auth/refresh", &pair, Some(ORIGIN)).await.status(), 200);
}
