//! Client authentication (RFC 6749 §2.3): who is calling the token,
//! revocation and introspection endpoints and the revocation feed.

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use latchkey_core::jwt::FIRST_PARTY_CLIENT_ID;
use latchkey_core::store::Client;

use super::extract::{Authorization, Params, authorization, check_text, form_decode};
use crate::error::ApiError;
use crate::state::AppState;

/// A client that identified itself, and whether it proved it.
pub(crate) struct CallingClient {
    pub(crate) client: Client,
}

/// RFC 6749 §2.3: HTTP Basic (`client_secret_basic`), or `client_id` and
/// `client_secret` in the body (`client_secret_post`), or a public client's
/// bare `client_id`. A confidential client must authenticate. `Ok(None)`
/// when the request names no client.
pub(crate) async fn client(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Option<CallingClient>, ApiError> {
    let (id, secret) = match authorization(headers) {
        Authorization::Basic(encoded) => {
            if params.get("client_secret").is_some() {
                return Err(ApiError::invalid_request(
                    "use one client authentication method",
                ));
            }
            let decoded = STANDARD
                .decode(encoded)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::invalid_client("malformed Basic credentials"))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| ApiError::invalid_client("malformed Basic credentials"))?;
            // The parts are form-urlencoded (RFC 6749 §2.3.1).
            let malformed = |_| ApiError::invalid_client("malformed Basic credentials");
            let id = form_decode(id.as_bytes()).map_err(malformed)?;
            let secret = form_decode(secret.as_bytes()).map_err(malformed)?;
            check_text("client_id", &id)?;
            check_text("client_secret", &secret)?;
            if params.get("client_id").is_some_and(|body_id| body_id != id) {
                return Err(ApiError::invalid_request(
                    "client_id differs from the authenticated client",
                ));
            }
            (id, Some(secret))
        }
        _ => match params.get("client_id") {
            Some(id) => (
                id.to_owned(),
                params.get("client_secret").map(str::to_owned),
            ),
            None if params.get("client_secret").is_some() => {
                return Err(ApiError::invalid_request("client_secret without client_id"));
            }
            None => return Ok(None),
        },
    };
    // The `client_id` first-party access tokens carry names the first-party
    // public client: no client at all (§3.3).
    if id == FIRST_PARTY_CLIENT_ID {
        if secret.is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::invalid_client("a public client has no secret"));
        }
        return Ok(None);
    }
    let found = if id.len() > 128 {
        None
    } else {
        state.store().client_by_id(&id).await?
    };
    // A disabled client is refused like an unknown one, after the same work.
    let Some(client) = found.filter(|c| !c.disabled) else {
        return Err(ApiError::invalid_client("client authentication failed"));
    };
    match (&client.secret_hash, secret) {
        (Some(stored), Some(secret)) => {
            let presented = state.tokens().refresh_keys().client_secret_hash(&secret);
            if !stored.ct_eq(&presented) {
                return Err(ApiError::invalid_client("client authentication failed"));
            }
        }
        (Some(_), None) => return Err(ApiError::invalid_client("client authentication required")),
        (None, Some(_)) => return Err(ApiError::invalid_client("a public client has no secret")),
        (None, None) => {}
    }
    Ok(Some(CallingClient { client }))
}
