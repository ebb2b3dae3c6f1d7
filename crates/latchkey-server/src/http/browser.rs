//! Browser mode (SPEC §4): the refresh token travels only in an `HttpOnly`
//! cookie scoped to `/auth`, never in a body a script can read. A request in
//! browser mode carries `X-Latchkey-Browser: 1` (which a cross-site form or
//! a simple cross-origin request cannot send) and, on refresh and logout, an
//! `Origin` among `LATCHKEY_ALLOWED_ORIGINS`.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::refresh::RefreshToken;
use serde::Serialize;

use crate::config::Config;
use crate::error::ApiError;
use crate::state::Issued;

/// The header that asks for browser mode.
pub(crate) const BROWSER_HEADER: &str = "x-latchkey-browser";

/// The refresh-token cookie's name: `__Secure-` prefixed unless
/// `LATCHKEY_COOKIE_SECURE=false` (plain-http development).
fn cookie_name(config: &Config) -> &'static str {
    if config.cookie_secure {
        "__Secure-lk_rt"
    } else {
        "lk_rt"
    }
}

/// Whether the request asks for browser mode.
pub(crate) fn requested(headers: &HeaderMap) -> bool {
    headers
        .get(BROWSER_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1")
}

/// Refuses a request without the custom header, or whose `Origin` is not
/// allowed: what keeps another site from refreshing or logging out a
/// victim's browser session. `Origin` must be present when `required`.
pub(crate) fn check(headers: &HeaderMap, config: &Config, required: bool) -> Result<(), ApiError> {
    if !requested(headers) {
        return Err(forbidden(
            "browser mode needs the X-Latchkey-Browser: 1 header",
        ));
    }
    match headers.get(header::ORIGIN).map(HeaderValue::to_str) {
        Some(Ok(origin)) if config.allowed_origins.iter().any(|o| o == origin) => Ok(()),
        None if !required => Ok(()),
        _ => Err(forbidden("this origin may not use browser mode")),
    }
}

fn forbidden(description: &str) -> ApiError {
    ApiError::Plain {
        status: StatusCode::FORBIDDEN,
        code: "invalid_request",
        description: description.into(),
    }
}

/// The refresh token in the request's cookie, if any.
pub(crate) fn refresh_cookie(headers: &HeaderMap, config: &Config) -> Option<String> {
    let name = cookie_name(config);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned())
}

fn set_cookie(config: &Config, value: &str, max_age: i64) -> Result<HeaderValue, ApiError> {
    let secure = if config.cookie_secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{}={value}; HttpOnly{secure}; SameSite=Strict; Path=/auth; Max-Age={max_age}",
        cookie_name(config)
    ))
    .map_err(ApiError::internal)
}

#[derive(Serialize)]
struct BrowserTokens<'a> {
    token_type: &'static str,
    access_token: &'a str,
    expires_in: i64,
    scope: &'a str,
}

/// A token response for a browser: the access token in the body, the
/// refresh token in the cookie only.
pub(crate) fn token_response(config: &Config, issued: &Issued) -> Result<Response, ApiError> {
    let body = BrowserTokens {
        token_type: "Bearer",
        access_token: &issued.access_token,
        expires_in: issued.expires_in,
        scope: &issued.scope,
    };
    let mut response = (
        StatusCode::OK,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(body),
    )
        .into_response();
    if let Some(token) = &issued.refresh_token {
        let cookie = set_cookie(
            config,
            RefreshToken::expose(token),
            config.policy.absolute_ttl,
        )?;
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `204` that clears the refresh-token cookie.
pub(crate) fn logged_out(config: &Config) -> Result<Response, ApiError> {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie(config, "", 0)?);
    Ok(response)
}
