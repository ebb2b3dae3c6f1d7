//! Recognised browsers (SPEC §13, OWASP's "device cookies"): a long-lived
//! random `__Host-` cookie that the server sets the first time a browser
//! signs in. Its hash names the device: a sign-in from a device the user has
//! not used for 90 days sends a new-device notice, and a browser that signed
//! in to an account before keeps its own failed-login budget for it, so
//! that an attacker elsewhere cannot lock the owner out.
//!
//! Only sign-ins (a `POST` to a route that signs in, whose answer sets the
//! refresh-token or sign-in cookie) get the cookie; a request without one
//! is given a candidate value, which its sign-in records and the answer
//! then sets. The layer wraps only the routes that sign in.

use aws_lc_rs::rand::SecureRandom;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_core::refresh::TokenHash;

use super::browser::cookie;
use crate::config::Config;
use crate::state::AppState;

/// A device cookie lives 400 days (the most a browser keeps one).
pub(crate) const DEVICE_COOKIE_AGE: i64 = 400 * 86_400;

/// The cookie's name: `__Host-` prefixed unless `LATCHKEY_COOKIE_SECURE=false`.
pub(crate) fn device_cookie_name(config: &Config) -> &'static str {
    if config.cookie_secure {
        "__Host-lk_device"
    } else {
        "lk_device"
    }
}

/// A new device value for a request that came without one.
#[derive(Clone)]
pub(crate) struct NewDevice(String);

fn well_formed(value: &str) -> bool {
    value.len() == 43 && URL_SAFE_NO_PAD.decode(value).is_ok_and(|b| b.len() == 32)
}

/// The device of a request, for its context: its cookie's, or, from a
/// browser without one, the value its answer will set.
pub(crate) fn device_of(
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
    config: &Config,
) -> Option<TokenHash> {
    if let Some(value) = cookie(headers, device_cookie_name(config)).filter(|v| well_formed(v)) {
        return Some(latchkey_core::account::device_of_cookie(value));
    }
    let fresh = extensions.get::<NewDevice>()?;
    let browser = super::browser::requested(headers)
        || headers
            .get("sec-fetch-mode")
            .is_some_and(|v| v.as_bytes() == b"navigate");
    browser.then(|| latchkey_core::account::device_of_cookie(&fresh.0))
}

/// The paths whose `POST`s never sign a browser in (the hot ones among
/// them): no candidate value is drawn for them.
fn never_signs_in(path: &str) -> bool {
    matches!(
        path,
        "/oauth/token" | "/auth/refresh" | "/oauth/introspect" | "/oauth/revoke" | "/auth/logout"
    ) || path.starts_with("/admin/")
}

/// The middleware: draws a candidate for a `POST` without a device cookie,
/// and sets it on an answer that signs the browser in.
pub(crate) async fn device_cookie(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let config = state.config();
    let name = device_cookie_name(config);
    let candidate = if request.method() == Method::POST
        && !never_signs_in(request.uri().path())
        && cookie(request.headers(), name).is_none_or(|v| !well_formed(v))
    {
        let mut bytes = [0u8; 32];
        match state.issuer.rng().fill(&mut bytes) {
            Ok(()) => Some(URL_SAFE_NO_PAD.encode(bytes)),
            Err(_) => None,
        }
    } else {
        None
    };
    if let Some(value) = &candidate {
        request.extensions_mut().insert(NewDevice(value.clone()));
    }
    let mut response = next.run(request).await;
    if let Some(value) = candidate
        && signs_in(&response, config)
    {
        response.headers_mut().append(
            header::SET_COOKIE,
            super::pages::host_cookie(config, name, &value, "Lax", Some(DEVICE_COOKIE_AGE)),
        );
    }
    response
}

/// Whether an answer signs a browser in: it sets a refresh-token or sign-in
/// cookie to a value.
fn signs_in(response: &Response, config: &Config) -> bool {
    let names = [
        super::browser::refresh_cookie_name(config),
        super::pages::sign_in_cookie_name(config),
    ];
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .any(|(n, value)| !value.is_empty() && names.contains(&n))
}
