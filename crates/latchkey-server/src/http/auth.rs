//! First-party login, refresh and logout: bearer mode (tokens in JSON) and
//! browser mode (the refresh token in a cookie, see [`super::browser`]).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use latchkey_app::flows::SecondFactor;
use latchkey_core::rotation::RevocationReason;

use super::browser;
use super::client_auth;
use super::extract::Params;
use super::oauth::token_response;
use crate::error::ApiError;
use crate::state::{AppState, Issued, RequestContext};
use latchkey_core::refresh::RefreshToken;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/auth/signup", post(signup))
        .route("/auth/login/mfa", post(login_mfa))
        .route("/auth/passkey/options", post(passkey_options))
        .route("/auth/passkey/login", post(passkey_login))
}

/// How a new session's tokens go back: all in the body (bearer mode), or
/// the refresh token in a cookie and the access token bound to the
/// browser's fingerprint, if fingerprints are on (browser mode).
struct Delivery {
    browser: bool,
    fingerprint: Option<browser::Fingerprint>,
}

impl Delivery {
    fn of(
        state: &AppState,
        headers: &HeaderMap,
        ctx: &mut RequestContext,
    ) -> Result<Self, ApiError> {
        browser::check_origin(headers, state.config())?;
        if !browser::requested(headers) {
            return Ok(Self {
                browser: false,
                fingerprint: None,
            });
        }
        browser::check(headers, state.config(), false)?;
        let fingerprint = browser::fingerprint(headers, state.config(), state.issuer.rng())?;
        ctx.fingerprint = fingerprint.as_ref().map(|f| f.hash.clone());
        Ok(Self {
            browser: true,
            fingerprint,
        })
    }

    fn respond(&self, state: &AppState, issued: &Issued) -> Result<Response, ApiError> {
        if self.browser {
            browser::token_response(state.config(), issued, self.fingerprint.as_ref())
        } else {
            Ok(token_response(issued))
        }
    }
}

/// The client a first-party sign-in names, if any. A third-party
/// application never signs users in here (it never sees a password): it
/// uses the authorization code flow and its consent page.
async fn first_party_client(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Option<latchkey_core::store::Client>, ApiError> {
    let client = client_auth::client(state, headers, params).await?;
    if client.as_ref().is_some_and(|c| !c.first_party) {
        return Err(ApiError::unauthorized_client(
            "only first-party clients may log users in here; use the authorization code flow",
        ));
    }
    Ok(client)
}

/// `username`, `password`, optional `scope` and `client_id`; form or JSON.
async fn login(
    State(state): State<AppState>,
    mut ctx: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let delivery = Delivery::of(&state, &headers, &mut ctx)?;
    let params = Params::from_body(&headers, &body, true)?;
    let client = first_party_client(&state, &headers, &params).await?;
    let proof = super::dpop::token_proof(&state, &headers, "/auth/login").await?;
    super::dpop::bind(&mut ctx, proof.as_ref(), client.as_ref());
    let username = params.require("username")?;
    let password = params.require("password")?;
    let issued = state
        .login
        .login(
            username,
            password,
            params.get("scope"),
            client.as_ref(),
            &ctx,
        )
        .await?;
    let response = delivery.respond(&state, &issued)?;
    Ok(super::dpop::with_nonce(&state, proof.as_ref(), response))
}

/// The second step of a password sign-in (SPEC §12): `mfa_token` and
/// `otp` or `recovery_code`; form or JSON; answered like a login.
async fn login_mfa(
    State(state): State<AppState>,
    mut ctx: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let delivery = Delivery::of(&state, &headers, &mut ctx)?;
    let params = Params::from_body(&headers, &body, true)?;
    let mfa_token = params.require("mfa_token")?;
    let code = match (params.get("otp"), params.get("recovery_code")) {
        (Some(otp), None) => SecondFactor::Otp(otp),
        (None, Some(code)) => SecondFactor::RecoveryCode(code),
        _ => {
            return Err(ApiError::invalid_request(
                "send either otp or recovery_code",
            ));
        }
    };
    let issued = state.apps.finish(mfa_token, code, &ctx).await?;
    delivery.respond(&state, &issued)
}

/// `POST /auth/passkey/options`: request options for a sign-in with a
/// passkey, for anyone.
async fn passkey_options(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    browser::check_origin(&headers, state.config())?;
    let options = state.passkeys.sign_in_options(&ctx).await?;
    Ok(super::factors::no_store(options))
}

/// `POST /auth/passkey/login` `{"credential", "scope"?, "client_id"?}`: a
/// sign-in with a passkey alone, answered like a login, in bearer or
/// browser mode.
async fn passkey_login(
    State(state): State<AppState>,
    mut ctx: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let delivery = Delivery::of(&state, &headers, &mut ctx)?;
    if body.len() > latchkey_app::flows::MAX_CREDENTIAL_BYTES {
        return Err(ApiError::invalid_request("the credential is too large"));
    }
    let (params, credential) = Params::from_json_with_object(&body, "credential")?;
    let credential = serde_json::from_value(credential)
        .map_err(|_| ApiError::invalid_request("credential is not a WebAuthn assertion"))?;
    let client = first_party_client(&state, &headers, &params).await?;
    let issued = state
        .passkeys
        .sign_in(&credential, params.get("scope"), client.as_ref(), &ctx)
        .await?;
    delivery.respond(&state, &issued)
}

/// Self-service sign-up (`LATCHKEY_SIGNUP=open`): `username`, `password`,
/// optional `scope`; answered like a login, in bearer or browser mode.
async fn signup(
    State(state): State<AppState>,
    mut ctx: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !state.config().signup_open {
        return Err(ApiError::not_found("sign-up is not open"));
    }
    let delivery = Delivery::of(&state, &headers, &mut ctx)?;
    let params = Params::from_body(&headers, &body, true)?;
    let username = params.require("username")?;
    let password = params.require("password")?;
    let issued = state
        .signup
        .sign_up(
            username,
            password.to_owned(),
            params.get("email"),
            params.get("scope"),
            &ctx,
        )
        .await?;
    delivery.respond(&state, &issued)
}

/// Browser mode: rotates the refresh token in the cookie.
async fn refresh(
    State(state): State<AppState>,
    mut ctx: RequestContext,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    browser::check(&headers, state.config(), true)?;
    let Some(token) = browser::refresh_cookie(&headers, state.config()) else {
        return Err(ApiError::invalid_grant("no refresh token cookie"));
    };
    let fingerprint = browser::fingerprint(&headers, state.config(), state.issuer.rng())?;
    ctx.fingerprint = fingerprint.as_ref().map(|f| f.hash.clone());
    let issued = state
        .refresh
        .refresh(&token, None, None, None, &ctx)
        .await?;
    browser::token_response(state.config(), &issued, fingerprint.as_ref())
}

/// Revokes the caller's session: in browser mode the cookie's (and clears
/// it), else the bearer access token's.
async fn logout(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if browser::requested(&headers) {
        browser::check(&headers, state.config(), true)?;
        let mut account_user = None;
        if let Some(token) = browser::refresh_cookie(&headers, state.config())
            .as_deref()
            .and_then(RefreshToken::parse)
            && let Some((_, session)) = state
                .store()
                .refresh_token(&state.issuer.refresh_keys().hash(&token))
                .await?
            && session.client_id.is_none()
        {
            state
                .issuer
                .revoke_session(
                    &session.id,
                    &session.user_id,
                    RevocationReason::Logout,
                    None,
                    &ctx,
                )
                .await?;
            account_user = Some(session.user_id);
        }
        // Logging out of this browser also ends its sign-in for the
        // authorization pages (else the next person at a shared computer
        // would get codes for this user), unless that sign-in is another
        // user's.
        let mut response = browser::logged_out(state.config())?;
        super::pages::end_sign_in(
            &state,
            &headers,
            account_user.as_deref(),
            &ctx,
            &mut response,
        )
        .await?;
        return Ok(response);
    }
    let principal =
        super::extract::authenticate(&state, &headers, &axum::http::Method::POST, "/auth/logout")
            .await?;
    if let Some(sid) = principal.claims.sid.as_deref() {
        state
            .issuer
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
