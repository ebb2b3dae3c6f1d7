//! What the server's own pages share (the authorization pages, the device
//! page): the page frame and its headers (a strict CSP, no script), the
//! CSRF token and its `SameSite=Strict` cookie, and the browser's sign-in,
//! an `HttpOnly` cookie holding the refresh token of a session of the user.

use aws_lc_rs::rand::SecureRandom;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_app::service::{Issued, Refusal};
use latchkey_core::refresh::RefreshToken;
use latchkey_core::rotation::RevocationReason;
use latchkey_core::store::{Session, User};

use super::browser::cookie;
use super::extract::Params;
use crate::config::Config;
use crate::error::ApiError;
use crate::state::{AppState, RequestContext};

pub(super) fn sign_in_cookie_name(config: &Config) -> &'static str {
    if config.cookie_secure {
        "__Host-lk_signin"
    } else {
        "lk_signin"
    }
}

pub(super) fn csrf_cookie_name(config: &Config) -> &'static str {
    if config.cookie_secure {
        "__Host-lk_csrf"
    } else {
        "lk_csrf"
    }
}

/// A cookie for the whole origin: `__Host-` when secure. The sign-in cookie
/// is `SameSite=Lax`, since a client sends the browser here by a cross-site
/// navigation; the CSRF cookie `Strict`, since only this server's own forms
/// post back.
pub(super) fn host_cookie(
    config: &Config,
    name: &str,
    value: &str,
    same_site: &str,
    max_age: Option<i64>,
) -> HeaderValue {
    let secure = if config.cookie_secure { "; Secure" } else { "" };
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    let text = format!("{name}={value}; HttpOnly{secure}; SameSite={same_site}; Path=/{age}");
    HeaderValue::from_str(&text)
        .unwrap_or_else(|_| HeaderValue::from_static("lk_invalid=; Max-Age=0"))
}

/// Ends this browser's sign-in for the authorization pages (the session its
/// cookie names) and clears the cookie on `response`, unless the sign-in is
/// another user's than `user_id` (`None`: whoever's). Both logouts, the
/// account page's and an application's, end it this way.
pub(super) async fn end_sign_in(
    state: &AppState,
    headers: &HeaderMap,
    user_id: Option<&str>,
    ctx: &RequestContext,
    response: &mut Response,
) -> Result<(), ApiError> {
    let config = state.config();
    if cookie(headers, sign_in_cookie_name(config)).is_none() {
        return Ok(());
    }
    if let Some((session, user)) = signed_in(state, headers).await? {
        if user_id.is_some_and(|id| id != user.id) {
            return Ok(());
        }
        state
            .issuer
            .revoke_session(&session.id, &user.id, RevocationReason::Logout, None, ctx)
            .await?;
    }
    response.headers_mut().append(
        header::SET_COOKIE,
        host_cookie(config, sign_in_cookie_name(config), "", "Lax", Some(0)),
    );
    Ok(())
}

pub(super) async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(Session, User)>, ApiError> {
    match cookie(headers, sign_in_cookie_name(state.config())) {
        Some(value) => Ok(state.authorizations.signed_in(value).await?),
        None => Ok(None),
    }
}

/// The form's CSRF token matches its cookie, and `Origin`, if sent, is one
/// this server allows.
pub(super) fn same_origin_form(state: &AppState, headers: &HeaderMap, params: &Params) -> bool {
    let config = state.config();
    let origin_ok = match headers.get(header::ORIGIN).map(HeaderValue::to_str) {
        None => true,
        Some(Ok(origin)) => config.allowed_origins.iter().any(|o| o == origin),
        Some(Err(_)) => false,
    };
    let csrf = cookie(headers, csrf_cookie_name(config));
    let matches = match (csrf, params.get("csrf")) {
        (Some(a), Some(b)) => {
            a.len() == b.len()
                && a.bytes()
                    .zip(b.bytes())
                    .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                    == 0
        }
        _ => false,
    };
    origin_ok && matches
}

/// The browser's CSRF token: kept while its cookie holds one, else new.
pub(super) fn csrf_token(state: &AppState, headers: &HeaderMap) -> Option<String> {
    if let Some(value) = cookie(headers, csrf_cookie_name(state.config()))
        && value.len() == 43
        && URL_SAFE_NO_PAD.decode(value).is_ok()
    {
        return Some(value.to_owned());
    }
    let mut bytes = [0u8; 32];
    state.issuer.rng().fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// Escapes text for HTML content and attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn html_page(
    status: StatusCode,
    title: &str,
    body: &str,
    form_action: &str,
) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<link rel=\"stylesheet\" href=\"/assets/account.css\">\n</head>\n\
         <body>\n<main>\n{body}\n</main>\n</body>\n</html>\n",
        escape(title)
    );
    let policy = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action {form_action}; \
         base-uri 'none'; frame-ancestors 'none'"
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: under it a browser sends `Origin: null` with the
    // page's own form, which the origin check must refuse.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(super) fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>This request cannot go on</h1>\n<p role=\"alert\">{}</p>",
        escape(message)
    );
    html_page(status, "Error", &body, "'none'")
}

pub(super) fn with_csrf_cookie(state: &AppState, mut response: Response, csrf: &str) -> Response {
    let config = state.config();
    response.headers_mut().append(
        header::SET_COOKIE,
        host_cookie(config, csrf_cookie_name(config), csrf, "Strict", None),
    );
    response
}

/// Remembers the sign-in `issued` started in this browser (the cookie
/// holds its refresh token, never rotated), on `response`.
pub(super) fn remember_sign_in(state: &AppState, issued: &Issued, response: &mut Response) {
    if let Some(token) = &issued.refresh_token {
        let config = state.config();
        response.headers_mut().append(
            header::SET_COOKIE,
            host_cookie(
                config,
                sign_in_cookie_name(config),
                RefreshToken::expose(token),
                "Lax",
                Some(config.policy.absolute_ttl),
            ),
        );
    }
}

/// Signs a person in with `username` and `password` (a first-party session,
/// the browser's sign-in): the session, its user and what was issued, or
/// the message the form shows.
pub(super) async fn sign_in(
    state: &AppState,
    ctx: &RequestContext,
    username: &str,
    password: &str,
) -> Result<(Session, User, Issued), &'static str> {
    let issued = state
        .login
        .login(username, password, None, None, ctx)
        .await
        .map_err(|refusal| match refusal {
            Refusal::InvalidGrant(_) | Refusal::InvalidRequest(_) => "Wrong username or password.",
            Refusal::TooManyRequests { .. } => "Too many attempts. Wait a while, then try again.",
            _ => "Signing in is not possible right now. Try again in a moment.",
        })?;
    let found = match issued.session_id.as_deref() {
        Some(sid) => state.store().session_with_user(sid).await.ok().flatten(),
        None => None,
    };
    let (session, user) =
        found.ok_or("Signing in is not possible right now. Try again in a moment.")?;
    Ok((session, user, issued))
}

/// The username and password inputs of a sign-in form.
pub(super) const LOGIN_FIELDS: &str = r#"<p><label for="username">Username</label>
<input id="username" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" required maxlength="256"></p>
<p><label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required maxlength="1024"></p>"#;

/// A scope as the items of a list, one `<li>` per scope.
pub(super) fn scope_items(scope: &latchkey_core::scope::Scope) -> String {
    scope
        .to_string()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| format!("<li>{}</li>", escape(s)))
        .collect()
}
