//! The OAuth endpoints: token (RFC 6749), revocation (RFC 7009) and
//! introspection (RFC 7662).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use latchkey_core::jwt::FIRST_PARTY_CLIENT_ID;
use latchkey_core::refresh::RefreshToken;
use latchkey_core::rotation::{RevocationReason, has_expired};
use serde::Serialize;
use serde_json::json;

use super::client_auth;
use super::extract::{self, Authorization, Params};
use crate::error::ApiError;
use crate::state::{AppState, Issued, RequestContext};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/oauth/token", post(token))
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
    mut ctx: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = Params::from_body(&headers, &body, false)?;
    let grant_type = params.require("grant_type")?;
    let known = [
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "password",
    ];
    if !known.contains(&grant_type) || (grant_type == "password" && !state.config().password_grant)
    {
        return Err(ApiError::unsupported_grant_type(format!(
            "grant_type {grant_type} is not supported"
        )));
    }
    // A bearer (access) token in the header is not client authentication;
    // on refresh it must belong to the same session (§3.3).
    let access_token = match extract::authorization(&headers) {
        Authorization::Bearer(token) => Some(token),
        _ => None,
    };
    let client = client_auth::client(&state, &headers, &params)
        .await?
        .map(|c| c.client);
    let proof = super::dpop::token_proof(&state, &headers, "/oauth/token").await?;
    super::dpop::bind(&mut ctx, proof.as_ref(), client.as_ref());
    let issued = match grant_type {
        "refresh_token" => {
            let presented = params.require("refresh_token")?;
            let expected_session = match access_token {
                Some(token) => {
                    let claims = state
                        .tokens()
                        .verify_jwt_ignoring_expiry(token)
                        .await
                        .map_err(|_| {
                            ApiError::invalid_grant("the access token sent along is invalid")
                        })?;
                    Some(claims.sid.ok_or_else(|| {
                        ApiError::invalid_grant("access token belongs to another session")
                    })?)
                }
                None => None,
            };
            state
                .tokens()
                .refresh(
                    presented,
                    client.as_ref().map(|c| c.id.as_str()),
                    expected_session,
                    params.get("scope"),
                    &ctx,
                )
                .await?
        }
        "authorization_code" => {
            let Some(client) = client else {
                return Err(ApiError::invalid_client(
                    "authorization_code needs the client's client_id (and its authentication, if confidential)",
                ));
            };
            state
                .tokens()
                .exchange_code(
                    params.require("code")?,
                    &client,
                    params.require("redirect_uri")?,
                    params.require("code_verifier")?,
                    &ctx,
                )
                .await?
        }
        "client_credentials" => {
            let Some(client) = client.filter(|c| c.secret_hash.is_some()) else {
                return Err(ApiError::invalid_client(
                    "client_credentials needs a confidential client's authentication",
                ));
            };
            state.tokens().client_token(
                &client,
                params.get("scope"),
                proof.as_ref().map(|p| p.jkt.as_str()),
            )?
        }
        _ => {
            let username = params.require("username")?;
            let password = params.require("password")?;
            state
                .tokens()
                .login(
                    username,
                    password,
                    params.get("scope"),
                    client.as_ref(),
                    &ctx,
                )
                .await?
        }
    };
    Ok(super::dpop::with_nonce(
        &state,
        proof.as_ref(),
        token_response(&issued),
    ))
}

/// RFC 7009: 200 for every well-formed request; a token of another client
/// is left alone. Revoking either kind of token revokes its session.
async fn revoke(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = Params::from_body(&headers, &body, false)?;
    let client = client_auth::client(&state, &headers, &params)
        .await?
        .map(|c| c.client.id);
    let token = params.require("token")?;
    let owner = |session_client: Option<&str>| session_client == client.as_deref();
    let target = if let Some(refresh) = RefreshToken::parse(token) {
        match state
            .store()
            .refresh_token(&state.tokens().refresh_keys().hash(&refresh))
            .await?
        {
            Some((_, session)) if owner(session.client_id.as_deref()) => {
                Some((session.id, session.user_id))
            }
            _ => None,
        }
    } else {
        match state.tokens().verify_jwt_ignoring_expiry(token).await {
            Ok(claims) => {
                let token_client =
                    Some(claims.client_id.as_str()).filter(|c| *c != FIRST_PARTY_CLIENT_ID);
                match claims.sid {
                    Some(sid) if owner(token_client) => Some((sid, claims.sub)),
                    _ => None,
                }
            }
            Err(_) => None,
        }
    };
    if let Some((sid, user_id)) = target {
        state
            .tokens()
            .revoke_session(
                &sid,
                &user_id,
                RevocationReason::Logout,
                client.as_deref(),
                &ctx,
            )
            .await?;
    }
    Ok((StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response())
}

/// RFC 7662, for authenticated (confidential) clients only. Anything not
/// active, or not this client's to see, is `{"active": false}`.
async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = Params::from_body(&headers, &body, false)?;
    let Some(caller) = client_auth::client(&state, &headers, &params)
        .await?
        .map(|c| c.client)
        .filter(|c| c.secret_hash.is_some())
    else {
        return Err(ApiError::invalid_client(
            "introspection needs client authentication",
        ));
    };
    let token = params.require("token")?;
    let inactive = || json!({ "active": false });
    let answer = if let Some(refresh) = RefreshToken::parse(token) {
        match state
            .store()
            .refresh_token(&state.tokens().refresh_keys().hash(&refresh))
            .await?
        {
            Some((record, session))
                if record.used_at.is_none()
                    && !has_expired(record.expires_at, state.now())
                    && session.revoked_at.is_none()
                    && !has_expired(session.expires_at, state.now())
                    && session.client_id.as_deref().is_none_or(|c| c == caller.id) =>
            {
                let username = state
                    .store()
                    .user_by_id(&session.user_id)
                    .await?
                    .map(|u| u.username);
                json!({
                    "active": true,
                    "token_type": "refresh_token",
                    "scope": record.scope,
                    "client_id": session.client_id.as_deref().unwrap_or(FIRST_PARTY_CLIENT_ID),
                    "username": username,
                    "sub": session.user_id,
                    "sid": session.id,
                    "iss": state.config().issuer,
                    "iat": record.issued_at,
                    "exp": record.expires_at.min(session.expires_at),
                })
            }
            _ => inactive(),
        }
    } else {
        match state.tokens().authenticate(token).await {
            Ok(principal) => {
                let c = principal.claims;
                // RFC 9449 §6.2: a bound token says so, and names its key.
                let token_type = if c.cnf.is_some() { "DPoP" } else { "Bearer" };
                let mut answer = json!({
                    "active": true,
                    "token_type": token_type,
                    "scope": c.scope,
                    "client_id": c.client_id,
                    "username": principal.user.map(|u| u.username),
                    "sub": c.sub,
                    "aud": c.aud,
                    "iss": c.iss,
                    "exp": c.exp,
                    "iat": c.iat,
                    "jti": c.jti,
                    "sid": c.sid,
                });
                if let Some(cnf) = c.cnf {
                    answer["cnf"] = cnf;
                }
                answer
            }
            Err(e @ crate::service::Refusal::Internal(_)) => return Err(e.into()),
            Err(_) => inactive(),
        }
    };
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
        .map(|c| c.client)
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
    let window = state.tokens().deny_ttl();
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
