// Included once per storage backend by tests/browser.rs; `BACKEND` names it.

use crate::common::{PASSWORD, TestApp, claims, error_code, field};
use serde_json::Value;

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
    let (body, pair, set_cookie) = app.browser_login().await;
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
    let (_, first, _) = app.browser_login().await;
    let response = browser_post(&app, "/auth/refresh", &first, Some(&app.base)).await;
    assert_eq!(response.status(), 200);
    let second = response.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    assert_ne!(first, second);
    let body: Value = response.json().await.unwrap();
    assert!(body.get("refresh_token").is_none());
    // The rotated cookie again: theft, the whole session ends.
    let reused = browser_post(&app, "/auth/refresh", &first, Some(&app.base)).await;
    assert_eq!(error_code(reused).await, (400, "invalid_grant".into()));
    let after = browser_post(&app, "/auth/refresh", &second, Some(&app.base)).await;
    assert_eq!(error_code(after).await, (400, "invalid_grant".into()));
    assert_eq!(app.me(field(&body, "access_token")).await.status(), 401);
}

#[tokio::test]
async fn another_origin_or_no_header_cannot_refresh_or_log_out() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let (body, cookie, _) = app.browser_login().await;
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
        .header("origin", &app.base)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 403);
    // Nothing changed: the cookie still refreshes, the session still serves.
    assert_eq!(app.me(field(&body, "access_token")).await.status(), 200);
    assert_eq!(browser_post(&app, "/auth/refresh", &cookie, Some(&app.base)).await.status(), 200);
}

#[tokio::test]
async fn logout_revokes_the_session_and_clears_the_cookie() {
    let app = start!(&[]);
    app.add_user("alice").await;
    let (body, cookie, _) = app.browser_login().await;
    let response = browser_post(&app, "/auth/logout", &cookie, Some(&app.base)).await;
    assert_eq!(response.status(), 204);
    let cleared = response.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(app.me(field(&body, "access_token")).await.status(), 401);
    let refresh = browser_post(&app, "/auth/refresh", &cookie, Some(&app.base)).await;
    assert_eq!(error_code(refresh).await, (400, "invalid_grant".into()));
}

#[tokio::test]
async fn plain_http_development_drops_secure_and_the_prefix() {
    let app = start!(&[("LATCHKEY_COOKIE_SECURE", "false")]);
    app.add_user("alice").await;
    let (_, pair, set_cookie) = app.browser_login().await;
    assert!(pair.starts_with("lk_rt=lk_rt_"), "{set_cookie}");
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"));
    assert_eq!(browser_post(&app, "/auth/refresh", &pair, Some(&app.base)).await.status(), 200);
}

/// Every `Set-Cookie` of a response, as `(name=value, whole header)`.
fn set_cookies(response: &reqwest::Response) -> Vec<(String, String)> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| {
            let whole = v.to_str().unwrap().to_owned();
            (whole.split(';').next().unwrap().to_owned(), whole)
        })
        .collect()
}

#[tokio::test]
async fn a_fingerprinted_access_token_serves_only_beside_its_cookie() {
    use base64::Engine;
    let app = start!(&[("LATCHKEY_COOKIE_FINGERPRINT", "true")]);
    app.add_user("alice").await;
    let response = app
        .http
        .post(app.url("/auth/login"))
        .header("x-latchkey-browser", "1")
        .header("origin", &app.base)
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookies = set_cookies(&response);
    let (refresh, _) = cookies.iter().find(|(p, _)| p.starts_with("__Secure-lk_rt=")).unwrap().clone();
    let (fingerprint, whole) = cookies.iter().find(|(p, _)| p.starts_with("__Host-lk_fgp=")).unwrap().clone();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/;"] {
        assert!(whole.contains(attribute), "{attribute} missing: {whole}");
    }
    let body: Value = response.json().await.unwrap();
    let token = field(&body, "access_token").to_owned();
    let value = fingerprint.split_once('=').unwrap().1;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    assert_eq!(claims(&token)["lk_fgp"], expected.as_str());

    let me = |cookie: Option<String>| {
        let mut request = app.http.get(app.url("/api/me")).bearer_auth(&token);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };
    // Stolen without its cookie, or beside another browser's, the token is dead.
    let alone = me(None).await.unwrap();
    assert_eq!(alone.status(), 401);
    assert!(alone.headers().contains_key("www-authenticate"));
    let other = format!("__Host-lk_fgp={}", "A".repeat(43));
    assert_eq!(me(Some(other)).await.unwrap().status(), 401);
    assert_eq!(me(Some(fingerprint.clone())).await.unwrap().status(), 200);

    // A refresh keeps the browser's fingerprint, so every tab's token stays good.
    let refreshed = browser_post(&app, "/auth/refresh", &format!("{refresh}; {fingerprint}"), Some(&app.base)).await;
    assert_eq!(refreshed.status(), 200);
    let kept = set_cookies(&refreshed);
    assert!(kept.iter().any(|(p, _)| *p == fingerprint), "{kept:?}");
    let body: Value = refreshed.json().await.unwrap();
    assert_eq!(claims(field(&body, "access_token"))["lk_fgp"], expected.as_str());
    // Logging out clears both cookies.
    let new_refresh = kept.iter().find(|(p, _)| p.starts_with("__Secure-lk_rt=")).unwrap().0.clone();
    let out = browser_post(&app, "/auth/logout", &format!("{new_refresh}; {fingerprint}"), Some(&app.base)).await;
    assert_eq!(out.status(), 204);
    let cleared = set_cookies(&out);
    assert_eq!(cleared.len(), 2, "{cleared:?}");
    assert!(cleared.iter().all(|(_, whole)| whole.contains("Max-Age=0")), "{cleared:?}");
}

#[tokio::test]
async fn the_account_page_is_served_under_a_strict_policy() {
    let app = start!(&[]);
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/assets/account.js", "text/javascript; charset=utf-8"),
        ("/assets/passkey.js", "text/javascript; charset=utf-8"),
        ("/assets/account.css", "text/css; charset=utf-8"),
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        let policy = headers["content-security-policy"].to_str().unwrap();
        for directive in ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"] {
            assert!(policy.contains(directive), "{directive} missing: {policy}");
        }
        assert!(!policy.contains("unsafe"), "{policy}");
    }
    // Every script and style the page loads is its own, and nothing is inline.
    let page = app.http.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("style="), "inline style");
    assert!(!page.contains("<style"), "inline style");
    assert_eq!(page.matches("<script").count(), 2);
    assert!(page.contains(r#"<script src="/assets/passkey.js" defer></script>"#));
    assert!(page.contains(r#"<script src="/assets/account.js" defer></script>"#));
    assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("//cdn"));
    for control in [r#"<label for="username">Username</label>"#, r#"<label for="password">Password</label>"#, ">Log in</button>", ">Log out</button>", ">Log out everywhere</button>"] {
        assert!(page.contains(control), "{control} missing");
    }
}
