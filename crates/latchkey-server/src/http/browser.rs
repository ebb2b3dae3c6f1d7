//! Browser mode (SPEC §4): the refresh token travels only in an `HttpOnly`
//! cookie scoped to `/auth`, never in a body a script can read. A request in
//! browser mode carries `X-Latchkey-Browser: 1` (which a cross-site form or
//! a simple cross-origin request cannot send) and, on refresh and logout, an
//! `Origin` among `LATCHKEY_ALLOWED_ORIGINS`.

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_core::jwt::AccessClaims;
use latchkey_core::refresh::RefreshToken;
use serde::Serialize;

use crate::error::ApiError;
use crate::state::Issued;
use latchkey_app::config::Config;

/// The header that asks for browser mode.
pub(crate) const BROWSER_HEADER: &str = "x-latchkey-browser";

/// The refresh-token cookie's name: `__Secure-` prefixed unless
/// `LATCHKEY_COOKIE_SECURE=false` (plain-http development).
pub(crate) fn refresh_cookie_name(config: &Config) -> &'static str {
    cookie_name(config)
}

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

/// A request that carries an `Origin` must come from an allowed one, in
/// bearer mode too: a browser sends `Origin` with every cross-site form post,
/// so another site's page cannot spend its visitors' addresses against the
/// per-address login and sign-up limits. Non-browser clients send none.
pub(crate) fn check_origin(headers: &HeaderMap, config: &Config) -> Result<(), ApiError> {
    match headers.get(header::ORIGIN).map(HeaderValue::to_str) {
        None => Ok(()),
        Some(Ok(origin)) if config.allowed_origins.iter().any(|o| o == origin) => Ok(()),
        _ => Err(forbidden("requests from this origin are not allowed here")),
    }
}

fn forbidden(description: &str) -> ApiError {
    ApiError::Plain {
        status: StatusCode::FORBIDDEN,
        code: "invalid_request",
        description: description.into(),
    }
}

/// The value of the request's cookie called `name`. A name sent twice
/// counts as absent: which of two a browser meant (one may have been planted
/// for a narrower path) is not ours to guess.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, value)| value);
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// The refresh token in the request's cookie, if any.
pub(crate) fn refresh_cookie(headers: &HeaderMap, config: &Config) -> Option<String> {
    cookie(headers, cookie_name(config)).map(str::to_owned)
}

fn set_cookie(
    config: &Config,
    name: &str,
    path: &str,
    value: &str,
    max_age: i64,
) -> Result<HeaderValue, ApiError> {
    let secure = if config.cookie_secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly{secure}; SameSite=Strict; Path={path}; Max-Age={max_age}"
    ))
    .map_err(ApiError::internal)
}

/// The fingerprint cookie's name: `__Host-` prefixed (`Secure`, `Path=/`,
/// no `Domain`: no subdomain can set or shadow it) unless
/// `LATCHKEY_COOKIE_SECURE=false`.
fn fingerprint_name(config: &Config) -> &'static str {
    if config.cookie_secure {
        "__Host-lk_fgp"
    } else {
        "lk_fgp"
    }
}

/// Random bytes in a fingerprint.
const FINGERPRINT_BYTES: usize = 32;

/// The browser's fingerprint (OWASP "token sidejacking"): a random value
/// in a hardened cookie whose SHA-256 goes into the access tokens minted
/// for that browser.
pub(crate) struct Fingerprint {
    value: String,
    /// SHA-256 of the value, base64url: what the access token carries.
    pub(crate) hash: String,
}

fn fingerprint_hash(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, value.as_bytes()))
}

/// With fingerprints on: the browser's fingerprint, kept while its cookie
/// holds a well-formed one (so that every tab's tokens stay valid), else a
/// new one.
pub(crate) fn fingerprint(
    headers: &HeaderMap,
    config: &Config,
    rng: &SystemRandom,
) -> Result<Option<Fingerprint>, ApiError> {
    if !config.cookie_fingerprint {
        return Ok(None);
    }
    let kept = cookie(headers, fingerprint_name(config)).filter(|v| {
        v.len() == 43
            && URL_SAFE_NO_PAD
                .decode(v)
                .is_ok_and(|b| b.len() == FINGERPRINT_BYTES)
    });
    let value = match kept {
        Some(value) => value.to_owned(),
        None => {
            let mut bytes = [0u8; FINGERPRINT_BYTES];
            rng.fill(&mut bytes).map_err(ApiError::internal)?;
            URL_SAFE_NO_PAD.encode(bytes)
        }
    };
    Ok(Some(Fingerprint {
        hash: fingerprint_hash(&value),
        value,
    }))
}

/// A token bound to a fingerprint is accepted only beside its cookie.
pub(crate) fn check_fingerprint(
    headers: &HeaderMap,
    config: &Config,
    claims: &AccessClaims,
) -> Result<(), ApiError> {
    let Some(expected) = &claims.fingerprint else {
        return Ok(());
    };
    let presented = cookie(headers, fingerprint_name(config)).map(fingerprint_hash);
    // Both sides are digests of secrets: comparing them leaks nothing useful.
    if presented.as_deref() == Some(expected.as_str()) {
        Ok(())
    } else {
        Err(ApiError::invalid_token(
            "the access token is bound to another browser",
        ))
    }
}

#[derive(Serialize)]
struct BrowserTokens<'a> {
    token_type: &'static str,
    access_token: &'a str,
    expires_in: i64,
    scope: &'a str,
}

/// A token response for a browser: the access token in the body, the
/// refresh token in the cookie only (and the fingerprint, if any, in its own).
pub(crate) fn token_response(
    config: &Config,
    issued: &Issued,
    fingerprint: Option<&Fingerprint>,
) -> Result<Response, ApiError> {
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
            cookie_name(config),
            "/auth",
            RefreshToken::expose(token),
            config.policy.absolute_ttl,
        )?;
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    if let Some(fingerprint) = fingerprint {
        let cookie = set_cookie(
            config,
            fingerprint_name(config),
            "/",
            &fingerprint.value,
            config.policy.absolute_ttl,
        )?;
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `204` that clears the refresh-token cookie (and the fingerprint's).
pub(crate) fn logged_out(config: &Config) -> Result<Response, ApiError> {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(config, cookie_name(config), "/auth", "", 0)?,
    );
    if config.cookie_fingerprint {
        headers.append(
            header::SET_COOKIE,
            set_cookie(config, fingerprint_name(config), "/", "", 0)?,
        );
    }
    Ok(response)
}
