//! The caller's own sessions ("devices"): list, revoke one, revoke all.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use latchkey_core::jwt::FIRST_PARTY_CLIENT_ID;
use latchkey_core::rotation::RevocationReason;
use serde::Serialize;

use super::extract::{Authenticated, Params};
use crate::error::ApiError;
use crate::state::{AppState, Principal, RequestContext};
use latchkey_app::service::Actor;

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
    #[serde(skip_serializing_if = "Option::is_none")]
    ended_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_reason: Option<String>,
}

/// The most ended sessions one listing shows.
const MAX_ENDED_LISTED: u32 = 100;

/// Whether a listing's query asks for ended sessions too (`include=ended`).
pub(super) fn include_ended(params: &Params) -> Result<bool, ApiError> {
    match params.get("include") {
        None => Ok(false),
        Some("ended") => Ok(true),
        Some(_) => Err(ApiError::invalid_request("include takes one value: ended")),
    }
}

/// The user's sessions that ended in the last 30 days, the latest first.
pub(super) async fn recently_ended(
    state: &AppState,
    user_id: &str,
) -> Result<Vec<latchkey_core::store::Session>, ApiError> {
    let since = state.now() - latchkey_app::maintenance::ENDED_SESSIONS_KEPT;
    Ok(state
        .store()
        .ended_sessions(user_id, since, MAX_ENDED_LISTED)
        .await?)
}

/// The user behind a token of a first-party application. Client tokens
/// have no sessions, and a third-party application's token, whatever its
/// scope, may neither see the user's devices (their addresses and browsers)
/// nor log the user out of them: only the `first-party` client and clients
/// registered `--first-party` may. The client is read at each call, so a
/// client no longer first-party loses the right at once.
pub(super) async fn user_of<'a>(
    state: &AppState,
    principal: &'a Principal,
) -> Result<(&'a str, Option<&'a str>), ApiError> {
    let Some(user) = &principal.user else {
        return Err(ApiError::forbidden("a client's token has no sessions"));
    };
    let client_id = principal.claims.client_id.as_str();
    let first_party = client_id == FIRST_PARTY_CLIENT_ID
        || state
            .store()
            .client_by_id(client_id)
            .await?
            .is_some_and(|client| client.first_party);
    if !first_party {
        return Err(ApiError::forbidden(
            "only first-party applications may manage a user's sessions",
        ));
    }
    Ok((user.id.as_str(), principal.claims.sid.as_deref()))
}

/// The caller's live sessions; with `include=ended`, also those that ended
/// in the last 30 days, with `ended_at` and `end_reason` (SPEC §14).
async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::from_form(raw.as_deref().unwrap_or("").as_bytes())?;
    let ended = include_ended(&params)?;
    let (user_id, current) = user_of(&state, &principal).await?;
    let mut sessions = state.store().live_sessions(user_id, state.now()).await?;
    if ended {
        sessions.extend(recently_ended(&state, user_id).await?);
    }
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
            ended_at: s.revoked_at,
            end_reason: s.revoked_reason,
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
    let (user_id, _) = user_of(&state, &principal).await?;
    super::extract::check_text("session id", &id)?;
    let actor = Actor::request(&ctx, None);
    if !state
        .sessions
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
    let (user_id, _) = user_of(&state, &principal).await?;
    let actor = Actor::request(&ctx, None);
    state
        .sessions
        .revoke_all(user_id, RevocationReason::LogoutEverywhere, &actor)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
