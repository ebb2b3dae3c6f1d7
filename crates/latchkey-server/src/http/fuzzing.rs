//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): the
//! parsers of attacker-controlled bytes, called as the endpoints call them
//! but without a router in between, so that a target runs many times
//! faster than through HTTP. Each returns what the parser accepted, for the
//! target to check the promises the endpoint relies on.

use axum::http::{HeaderMap, HeaderValue, header};
use latchkey_core::store::Client;

use super::extract::Params;
use crate::state::AppState;

fn with_header(name: header::HeaderName, value: &[u8]) -> Option<HeaderMap> {
    let value = HeaderValue::from_bytes(value).ok()?;
    let mut headers = HeaderMap::new();
    headers.insert(name, value);
    Some(headers)
}

/// The token-endpoint, login, sign-up and authorize-form parser
/// (`Content-Type` picks form or JSON): the parameters accepted, each name
/// once, or `None` when refused.
pub fn request_params(
    content_type: &[u8],
    body: &[u8],
    json_allowed: bool,
) -> Option<Vec<(String, String)>> {
    let headers = with_header(header::CONTENT_TYPE, content_type)?;
    let params = Params::from_body(&headers, body, json_allowed).ok()?;
    let names: Vec<String> = params.names().map(str::to_owned).collect();
    Some(
        names
            .into_iter()
            .map(|name| {
                let value = params.get(&name).unwrap_or_default().to_owned();
                (name, value)
            })
            .collect(),
    )
}

/// The value of cookie `name` in a `Cookie` header, as the browser-mode
/// refresh, the sign-in and the CSRF checks read it.
pub fn cookie(header_value: &[u8], name: &str) -> Option<String> {
    let headers = with_header(header::COOKIE, header_value)?;
    super::browser::cookie(&headers, name).map(str::to_owned)
}

/// The credentials an `Authorization` header carries: `(scheme, value)`
/// with scheme `basic`, `bearer` or `dpop`, or `None`.
pub fn authorization(header_value: &[u8]) -> Option<(&'static str, String)> {
    let headers = with_header(header::AUTHORIZATION, header_value)?;
    match super::extract::authorization(&headers) {
        super::extract::Authorization::Basic(v) => Some(("basic", v.to_owned())),
        super::extract::Authorization::Bearer(v) => Some(("bearer", v.to_owned())),
        super::extract::Authorization::Dpop(v) => Some(("dpop", v.to_owned())),
        _ => None,
    }
}

/// An admin API body (`which` picks the endpoint, see `admin.rs`) with
/// `Content-Type: application/json`: whether it was accepted.
pub fn admin_body(which: u8, body: &[u8]) -> bool {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    super::admin::parse_for_fuzzing(which, &headers, body).is_ok()
}

/// A `GET /oauth/authorize` query checked as the endpoint checks it: the
/// client, redirect URI and PKCE challenge it accepted.
pub async fn authorize_query(state: &AppState, query: &[u8]) -> Option<(Client, String, String)> {
    super::authorize::validate_for_fuzzing(state, query).await
}
