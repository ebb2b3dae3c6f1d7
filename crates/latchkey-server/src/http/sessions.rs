//! The caller's own sessions ("devices"): list, revoke one, revoke all.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use latchkey_core::rotation::RevocationReason;
use serde::Serialize;

use super::extract::Authenticated;
use crate::error::ApiError;
use crate::service::Actor;
use crate::state::{AppState, Principal, RequestContext};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/sessions", get(list).delete(revoke_all))
        .route("/sessions/{id}", delete(revoke_one))
}

#[derive(Serialize)]
struct SessionView {
    id: String,
    created_at: i64,
    last_used_at: i64,
    expires_at: i64,
    ip: String,
    user_agent: String,
    client_id: Option<String>,
    scope: String,
    current: bool,
}

/// The user behind a token; client tokens have no sessions.
fn user_of(principal: &Principal) -> Result<(&str, Option<&str>), ApiError> {
    match &principal.user {
        Some(user) => Ok((user.id.as_str(), principal.claims.sid.as_deref())),
        None => Err(ApiError::forbidden("a client's token has no sessions")),
    }
}

async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Response, ApiError> {
    let (user_id, current) = user_of(&principal)?;
    let sessions = state.store().live_sessions(user_id, state.now()).await?;
    let views: Vec<SessionView> = sessions
        .into_iter()
        .map(|s| SessionView {
            current: Some(s.id.as_str()) == current,
            id: s.id,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at: s.expires_at,
            ip: s.ip,
            user_agent: s.user_agent,
            client_id: s.client_id,
            scope: s.scope,
        })
        .collect();
    Ok(Json(serde_json::json!({ "sessions": views })).into_response())
}

/// Someone else's session id is a 404 and revokes nothing.
async fn revoke_one(
    State(state): State<AppState>,
    ctx: RequestContext,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (user_id, _) = user_of(&principal)?;
    super::extract::check_text("session id", &id)?;
    let actor = Actor::request(&ctx, None);
    if !state
        .sessions()
        .revoke_own(user_id, &id, RevocationReason::UserRevoked, &actor)
        .await?
    {
        return Err(ApiError::not_found("no such session"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Log out everywhere.
async fn revoke_all(
    State(state): State<AppState>,
    ctx: RequestContext,
    Authenticated(principal): Authenticated,
) -> Result<Response, ApiError> {
    let (user_id, _) = user_of(&principal)?;
    let actor = Actor::request(&ctx, None);
    state
        .sessions()
        .revoke_all(user_id, RevocationReason::LogoutEverywhere, &actor)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
