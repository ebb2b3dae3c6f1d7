//! The OAuth endpoints: token (RFC 6749), device authorization (RFC 8628),
//! revocation (RFC 7009), introspection (RFC 7662) and the revocation feed.
//! Each reads its preamble with an extractor of `client_auth` and calls one
//! flow of `latchkey-app`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use latchkey_app::flows::TokenRequest;
use latchkey_core::refresh::RefreshToken;
use serde::Serialize;
use serde_json::json;

use super::client_auth::{self, ClientForm, TokenPreamble};
use super::extract::Params;
use crate::error::ApiError;
use crate::state::{AppState, Issued};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/oauth/token", post(token))
        .route("/oauth/device_authorization", post(device_authorization))
        .route("/oauth/revoke", post(revoke))
        .route("/oauth/introspect", post(introspect))
        .route("/oauth/revocations", axum::routing::get(revocation_feed))
}

/// RFC 6749 §5.1.
#[derive(Serialize)]
struct TokenResponse<'a> {
    token_type: &'static str,
    access_token: &'a str,
    expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    scope: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<&'a str>,
}

/// The token response with `Cache-Control: no-store` (RFC 6749 §5.1).
pub(crate) fn token_response(issued: &Issued) -> Response {
    let body = TokenResponse {
        token_type: if issued.dpop { "DPoP" } else { "Bearer" },
        access_token: &issued.access_token,
        expires_in: issued.expires_in,
        refresh_token: issued.refresh_token.as_ref().map(RefreshToken::expose),
        scope: &issued.scope,
        id_token: issued.id_token.as_deref(),
    };
    (
        StatusCode::OK,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(body),
    )
        .into_response()
}

async fn token(
    State(state): State<AppState>,
    preamble: TokenPreamble,
) -> Result<Response, ApiError> {
    let request = TokenRequest {
        params: &preamble.params,
        client: preamble.client.as_ref(),
        access_token: preamble.access_token.as_deref(),
        ctx: &preamble.ctx,
    };
    let issued = preamble.grant.grant(&request).await?;
    Ok(super::dpop::with_nonce(
        &state,
        preamble.proof.as_ref(),
        token_response(&issued),
    ))
}

/// RFC 8628 §3.1–3.2: a pair of codes for a device, which then polls the
/// token endpoint while its person answers on `/device`.
async fn device_authorization(
    State(state): State<AppState>,
    form: ClientForm,
) -> Result<Response, ApiError> {
    let Some(client) = form.client else {
        return Err(ApiError::invalid_client(
            "the device authorization needs the client's client_id (and its authentication, if confidential)",
        ));
    };
    let answer = state
        .device
        .start(&client, form.params.get("scope"), &form.ctx)
        .await?;
    Ok((
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(answer),
    )
        .into_response())
}

/// RFC 7009: 200 for every well-formed request; a token of another client
/// is left alone. Revoking either kind of token revokes its session.
async fn revoke(State(state): State<AppState>, form: ClientForm) -> Result<Response, ApiError> {
    let token = form.params.require("token")?;
    let client_id = form.client.as_ref().map(|c| c.id.as_str());
    state.revocation.revoke(token, client_id, &form.ctx).await?;
    Ok((StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response())
}

/// RFC 7662, for authenticated (confidential) clients only. Anything not
/// active, or not this client's to see, is `{"active": false}`.
async fn introspect(State(state): State<AppState>, form: ClientForm) -> Result<Response, ApiError> {
    let Some(caller) = form.client.filter(|c| c.secret_hash.is_some()) else {
        return Err(ApiError::invalid_client(
            "introspection needs client authentication",
        ));
    };
    let token = form.params.require("token")?;
    let answer = state.introspection.introspect(&caller, token).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response())
}

/// How far back each poll of the revocation feed starts again: longer than
/// any revocation takes from its stamp to its commit (a write waits at most
/// 10 s for a database connection, and statements are cut off before this).
const FEED_OVERLAP: i64 = 60;

/// The revocation feed (§3.6), for authenticated confidential clients:
/// sessions revoked since `since` (Unix seconds, inclusive) whose access
/// tokens may still be live, each with the time after which none can be.
/// Poll again with `since` set to the answer's `next_since`; an item may
/// come twice, never not at all.
async fn revocation_feed(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Response, ApiError> {
    let Some(_caller) = client_auth::client(&state, &headers, &Params::default())
        .await?
        .filter(|c| c.secret_hash.is_some())
    else {
        return Err(ApiError::invalid_client(
            "the revocation feed needs client authentication",
        ));
    };
    let query = Params::from_form(query.as_deref().unwrap_or("").as_bytes())?;
    let since = match query.get("since") {
        None => 0,
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| ApiError::invalid_request("since must be Unix seconds"))?,
    };
    let now = state.now();
    let window = state.issuer.deny_ttl();
    let since = since.max(now - window);
    let revoked: Vec<serde_json::Value> = state
        .store()
        .revoked_since(since)
        .await?
        .into_iter()
        .map(|(sid, revoked_at)| json!({"sid": sid, "revoked_at": revoked_at, "exp": revoked_at + window}))
        .collect();
    // A revocation is stamped before its write commits: one stamped at T
    // may become visible after a poll at T + 1. The next poll starts
    // `FEED_OVERLAP` seconds back, so such a revocation is listed then
    // (and some are listed twice, which a follower does not mind).
    let body = json!({
        "revoked": revoked,
        "next_since": now - FEED_OVERLAP,
        "window": window,
    });
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}
