//! A signed-in user's sign-in factors (SPEC §12): setting up, confirming and
//! removing an authenticator app; registering, listing and removing
//! passkeys. Only first-party tokens; every change only with a sign-in
//! younger than `LATCHKEY_REAUTH_WINDOW`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use latchkey_app::flows::{FactorView, SecondFactor};
use latchkey_app::service::{Principal, Refusal};
use latchkey_core::store::User;
use serde_json::json;

use super::extract::{Authenticated, Params};
use crate::error::ApiError;
use crate::state::{AppState, RequestContext};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/totp", post(start).delete(remove))
        .route("/auth/totp/confirm", post(confirm))
        .route("/auth/passkeys/options", post(passkey_options))
        .route("/auth/passkeys", post(add_passkey).get(passkeys))
        .route("/auth/passkeys/{id}", delete(remove_passkey))
        .route("/auth/factors", get(own_factors))
}

/// A user's factors: the authenticator app (once confirmed) and every
/// passkey, as the account page and the admin API list them.
pub(super) async fn factors_of(
    state: &AppState,
    user_id: &str,
) -> Result<Vec<FactorView>, ApiError> {
    let mut factors = state.apps.factors_of(user_id).await?;
    factors.extend(
        state
            .passkeys
            .list(user_id)
            .await?
            .into_iter()
            .map(|p| FactorView {
                id: p.id,
                kind: "passkey",
                name: p.name,
                created_at: p.created_at,
            }),
    );
    Ok(factors)
}

/// `GET /auth/factors`: the signed-in user's factors.
async fn own_factors(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Response, ApiError> {
    super::sessions::user_of(&state, &principal).await?;
    let Some(user) = &principal.user else {
        return Err(ApiError::forbidden("a client's token has no user"));
    };
    let factors = factors_of(&state, &user.id).await?;
    Ok(no_store(json!({ "factors": factors })))
}

/// The signed-in user, if their token is a first-party one whose sign-in is
/// recent enough to change their factors.
async fn recent_user<'a>(state: &AppState, principal: &'a Principal) -> Result<&'a User, ApiError> {
    super::sessions::user_of(state, principal).await?;
    let Some(user) = &principal.user else {
        return Err(ApiError::forbidden("a client's token has no user"));
    };
    let signed_in = principal.claims.auth_time.unwrap_or(i64::MIN);
    if state.now().saturating_sub(signed_in) > state.config().reauth_window {
        return Err(Refusal::ReauthenticationRequired(
            "changing sign-in factors needs a recent sign-in: log in again".into(),
        )
        .into());
    }
    Ok(user)
}

pub(super) fn no_store(body: serde_json::Value) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// `POST /auth/totp`: a new app's secret, `otpauth://` URI and QR code.
async fn start(
    State(state): State<AppState>,
    ctx: RequestContext,
    Authenticated(principal): Authenticated,
) -> Result<Response, ApiError> {
    let user = recent_user(&state, &principal).await?;
    let setup = state.apps.start(user, &ctx).await?;
    Ok(no_store(json!(setup)))
}

/// `POST /auth/totp/confirm` `{"code"}`: the ten recovery codes, once.
async fn confirm(
    State(state): State<AppState>,
    ctx: RequestContext,
    Authenticated(principal): Authenticated,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = recent_user(&state, &principal).await?;
    let params = Params::from_body(&headers, &body, true)?;
    let codes = state
        .apps
        .confirm(user, params.require("code")?, &ctx)
        .await?;
    Ok(no_store(json!({ "recovery_codes": codes })))
}

/// `DELETE /auth/totp` `{"code"}`: a current code or a recovery code.
async fn remove(
    State(state): State<AppState>,
    ctx: RequestContext,
    Authenticated(principal): Authenticated,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = recent_user(&state, &principal).await?;
    let params = Params::from_body(&headers, &body, true)?;
    let code = params.require("code")?;
    let code = if code.bytes().all(|b| b.is_ascii_digit() || b == b' ') {
        SecondFactor::Otp(code)
    } else {
        SecondFactor::RecoveryCode(code)
    };
    state.apps.remove(user, code, &ctx).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /auth/passkeys/options`: creation options for a new passkey.
async fn passkey_options(
    State(state): State<AppState>,
    ctx: RequestContext,
    Authenticated(principal): Authenticated,
) -> Result<Response, ApiError> {
    let user = recent_user(&state, &principal).await?;
    let options = state.passkeys.registration_options(user, &ctx).await?;
    Ok(no_store(options))
}

/// `POST /auth/passkeys` `{"name", "credential"}`: `201` and the passkey.
async fn add_passkey(
    State(state): State<AppState>,
    ctx: RequestContext,
    Authenticated(principal): Authenticated,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = recent_user(&state, &principal).await?;
    if body.len() > latchkey_app::flows::MAX_CREDENTIAL_BYTES {
        return Err(ApiError::invalid_request("the credential is too large"));
    }
    let (params, credential) = Params::from_json_with_object(&body, "credential")?;
    let credential = serde_json::from_value(credential).map_err(|_| {
        ApiError::invalid_request("credential is not a WebAuthn registration response")
    })?;
    let added = state
        .passkeys
        .register(user, params.require("name")?, &credential, &ctx)
        .await?;
    let body = json!({ "id": added.id, "name": added.name, "created_at": added.created_at });
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response())
}

/// `GET /auth/passkeys`: the signed-in user's passkeys.
async fn passkeys(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Response, ApiError> {
    super::sessions::user_of(&state, &principal).await?;
    let Some(user) = &principal.user else {
        return Err(ApiError::forbidden("a client's token has no user"));
    };
    let listed = state.passkeys.list(&user.id).await?;
    Ok(no_store(json!({ "passkeys": listed })))
}

/// `DELETE /auth/passkeys/{id}`: `204`, or `404` if it is not theirs.
async fn remove_passkey(
    State(state): State<AppState>,
    ctx: RequestContext,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user = recent_user(&state, &principal).await?;
    if !state
        .passkeys
        .remove(&user.id, &id, &ctx.actor(None))
        .await?
    {
        return Err(ApiError::not_found("no such passkey"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
