//! First-party login and logout.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use latchkey_core::rotation::RevocationReason;

use super::client_auth;
use super::extract::{Authenticated, Params};
use super::oauth::token_response;
use crate::error::ApiError;
use crate::state::{AppState, RequestContext};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
}

/// `username`, `password`, optional `scope` and `client_id`; form or JSON.
async fn login(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = Params::from_body(&headers, &body, true)?;
    let client = client_auth::client(&state, &headers, &params)
        .await?
        .map(|c| c.client);
    let username = params.require("username")?;
    let password = params.require("password")?;
    let issued = state
        .login(
            username,
            password,
            params.get("scope"),
            client.as_ref(),
            &ctx,
        )
        .await?;
    Ok(token_response(&issued))
}

/// Bearer mode: revokes the session of the access token presented.
async fn logout(
    State(state): State<AppState>,
    ctx: RequestContext,
    Authenticated(principal): Authenticated,
) -> Result<Response, ApiError> {
    if let Some(sid) = principal.claims.sid.as_deref() {
        state
            .revoke_session(
                sid,
                &principal.claims.sub,
                RevocationReason::Logout,
                None,
                &ctx,
            )
            .await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
